"""Size checks every decoder of untrusted files shares: a file must exist, be non-empty and under a cap.

Used by zoo.images, zoo.audio and zoo.points before any decoder sees a byte. Errors name the
item's index, the limit and what kind of input it was ("image", "audio", "point-cloud").
Also the file suffixes of each modality, for code that picks files or guesses what a path holds.
Standard library only.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from zoo.errors import InputTooLargeError, InvalidInputError

#: File suffixes by modality: what dataset jobs collect from a folder and what a path is taken to hold.
FILE_SUFFIXES = {
    "image": (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"),
    "audio": (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus"),
    "points": (".npy", ".ply", ".obj", ".stl", ".glb", ".gltf", ".off"),
    "video": (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"),
    "document": (".pdf",),
}


def shown(item: Any, width: int = 120) -> str:
    """``repr(item)`` cut to ``width`` characters, for error messages about untrusted input."""
    text = repr(str(item) if isinstance(item, os.PathLike) else item)
    return text if len(text) <= width else f"{text[:width - 20]}...({len(text):,} chars)"


def regular_file(item: str | os.PathLike, index: int | None = None, *, what: str = "input") -> os.stat_result:
    """The stat of ``item``, which must name a regular file (symlinks followed); nothing is opened.

    FIFOs, devices (``/dev/zero``), sockets and directories are refused before anyone reads them:
    reading one would block or never end. An unusable path (too long, a loop, no permission) is
    an InvalidInputError naming it, never a raw OSError.
    """
    try:
        st = os.stat(item)
    except FileNotFoundError:
        raise InvalidInputError(f"no such {what} file: {shown(item)}", index=index) from None
    except (OSError, ValueError) as exc:  # ENAMETOOLONG, ELOOP, EACCES, an embedded NUL...
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InvalidInputError(f"cannot use {what} path {shown(item)}: {reason}", index=index) from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a special file")
        raise InvalidInputError(f"{what} path {shown(item)} is {kind}, not a regular file", index=index)
    return st


def checked_path(item: str | os.PathLike, index: int, *, what: str, limit: int) -> Path:
    """``item`` as a Path to an existing, non-empty regular file of at most ``limit`` bytes (not read)."""
    size = regular_file(item, index, what=what).st_size
    path = Path(item)
    if size > limit:
        raise InputTooLargeError(f"{what} file is {size:,} bytes, over the limit of {limit:,}", index=index,
                                 limit=limit)
    if size == 0:
        raise InvalidInputError(f"{what} file {shown(path)} is empty", index=index)
    return path


def checked_bytes(data: Any, index: int, *, what: str, limit: int) -> bytes:
    """``data`` (bytes-like) as bytes, non-empty and at most ``limit`` long."""
    data = bytes(data)
    if len(data) > limit:
        raise InputTooLargeError(f"{what} data is {len(data):,} bytes, over the limit of {limit:,}", index=index,
                                 limit=limit)
    if not data:
        raise InvalidInputError(f"{what} data is empty", index=index)
    return data


def read_checked(item: Any, index: int, *, what: str, limit: int) -> bytes:
    """The bytes of a path or bytes-like item, with the checks above (re-checked after reading).

    A path must stay a regular file until it is read: it may be swapped for a FIFO (or a symlink to
    ``/dev/zero``) after ``checked_path``, so it is opened with ``O_NONBLOCK``, the open descriptor
    must still be a regular file, and at most ``limit + 1`` bytes are read.
    """
    if isinstance(item, (str, os.PathLike)):
        path = checked_path(item, index, what=what, limit=limit)
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(path, flags)
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"cannot open {what} path {shown(path)}: {exc}", index=index) from None
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise InvalidInputError(f"{what} path {shown(path)} is not a regular file", index=index)
            item = f.read(limit + 1)
    return checked_bytes(item, index, what=what, limit=limit)
