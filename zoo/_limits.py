"""Size checks every decoder of untrusted files shares: a file must exist, be non-empty and under a cap.

Used by zoo.images, zoo.audio and zoo.points before any decoder sees a byte. Errors name the
item's index, the limit and what kind of input it was ("image", "audio", "point-cloud").
Also the file suffixes of each modality, for code that picks files or guesses what a path holds.
Standard library only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from zoo.errors import InputTooLargeError, InvalidInputError

#: File suffixes by modality: what dataset jobs collect from a folder and what a path is taken to hold.
FILE_SUFFIXES = {
    "image": (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"),
    "audio": (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus"),
    "points": (".npy", ".ply", ".obj", ".stl", ".glb", ".gltf", ".off"),
}


def checked_path(item: str | os.PathLike, index: int, *, what: str, limit: int) -> Path:
    """``item`` as a Path to an existing, non-empty file of at most ``limit`` bytes (not read)."""
    path = Path(item)
    if not path.is_file():
        raise InvalidInputError(f"no such {what} file: {str(path)!r}", index=index)
    size = path.stat().st_size
    if size > limit:
        raise InputTooLargeError(f"{what} file is {size:,} bytes, over the limit of {limit:,}", index=index,
                                 limit=limit)
    if size == 0:
        raise InvalidInputError(f"{what} file {str(path)!r} is empty", index=index)
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
    """The bytes of a path or bytes-like item, with the checks above (re-checked after reading)."""
    if isinstance(item, (str, os.PathLike)):
        item = checked_path(item, index, what=what, limit=limit).read_bytes()  # the file may change meanwhile
    return checked_bytes(item, index, what=what, limit=limit)
