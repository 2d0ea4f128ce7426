"""File helpers for zoo.align: reading safetensors strictly, writing small TOML documents, hashing.

The stitch card is TOML. Python reads TOML (``tomllib``) but does not write it, and the zoo
adds no dependency for that, so :func:`dump_toml` writes the one shape we need: top-level
scalars followed by tables of scalars (str, bool, int, finite float). Strings are TOML basic
strings with every control character escaped, floats use ``repr`` (shortest round-trip
form), so ``tomllib.loads(dump_toml(doc)) == doc`` for every document of that shape.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
from pathlib import Path

import numpy as np

from zoo.errors import CardError

#: Largest stitch card or anchor-set file read (bytes); weights files are memory-mapped, not read whole.
MAX_CARD_BYTES = 64 * 2**20

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def regular_file(path: Path, what: str, *, limit: int | None = None) -> int:
    """Size of ``path``, which must be a regular file (not a FIFO, device or folder) of at most ``limit`` bytes.

    Raises CardError naming the file otherwise, never a raw OSError; nothing is opened.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CardError(f"{path}: no such {what} file") from None
    except (OSError, ValueError) as exc:
        raise CardError(f"{path}: cannot use this {what} file ({getattr(exc, 'strerror', None) or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise CardError(f"{path}: not a regular file; a {what} is a plain file")
    if limit is not None and st.st_size > limit:
        raise CardError(f"{path}: {st.st_size:,} bytes, over the {limit:,}-byte limit of a {what} file")
    return st.st_size


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of a small regular file; any problem is a CardError naming it."""
    regular_file(path, what, limit=MAX_CARD_BYTES)
    try:
        return path.read_bytes()[:MAX_CARD_BYTES + 1].decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CardError(f"{path}: not a readable {what} ({exc})") from None


def canonical_sha256(doc) -> str:
    """sha256 hex of ``doc`` (dicts of str, bool, int, finite float, lists) as sorted, compact JSON."""
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def read_safetensors(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Header metadata and tensors of a safetensors file; any other format raises CardError."""
    from safetensors import SafetensorError, safe_open

    regular_file(path, "safetensors")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (a handle, not a dict)
    except (SafetensorError, OSError, ValueError, TypeError, OverflowError, MemoryError) as exc:
        raise CardError(f"{path}: not a valid safetensors file ({exc}); zoo.align reads only safetensors, "
                        "never pickle") from None
    return meta, tensors


def sha256_file(path: Path) -> str:
    """sha256 hex of a file's bytes (raises OSError for an unreadable one)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _toml_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            raise ValueError(f"TOML value must be finite, not {value!r}")
        return repr(float(value))  # numpy floats repr as "np.float64(...)"
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table (inside arrays)
        return "{ " + ", ".join(f"{_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} to a card: only str, bool, int, float, lists and tables")


def _key(key: str) -> str:
    """A bare key where TOML allows one, else a quoted key ("model.safetensors")."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"card keys must be non-empty strings, not {key!r}")
    return key if _BARE_KEY.match(key) else _toml_string(key)


def dump_toml(doc: dict, _prefix: tuple[str, ...] = ()) -> str:
    """TOML text for ``doc``: its plain values first, then one ``[table]`` (``[a.b]`` when nested) per dict."""
    lines = [f"{_key(k)} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for name, table in doc.items():
        if isinstance(table, dict):
            header = ".".join(_key(p) for p in (*_prefix, name))
            body = dump_toml(table, (*_prefix, name)).rstrip("\n")
            lines += ["", f"[{header}]", *([body] if body else [])]
    return "\n".join(lines).lstrip("\n") + "\n"
