"""File helpers for zoo.align: reading safetensors strictly, writing small TOML documents, hashing.

The stitch card is TOML. Python reads TOML (``tomllib``) but does not write it, and the zoo
adds no dependency for that, so :func:`dump_toml` writes the one shape we need: top-level
scalars followed by tables of scalars (str, bool, int, finite float). Strings are TOML basic
strings with every control character escaped, floats use ``repr`` (shortest round-trip
form), so ``tomllib.loads(dump_toml(doc)) == doc`` for every document of that shape.
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import numpy as np

from zoo.errors import CardError

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def read_safetensors(path: Path) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Header metadata and tensors of a safetensors file; any other format raises CardError."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise CardError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (a handle, not a dict)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CardError(f"{path}: not a valid safetensors file ({exc}); zoo.align reads only safetensors, "
                        "never pickle") from None
    return meta, tensors


def sha256_file(path: Path) -> str:
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
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"TOML value must be finite, not {value!r}")
        return repr(value)
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
