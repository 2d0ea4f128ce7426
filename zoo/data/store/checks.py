"""The checks of what ``add``, ``delete`` and ``search`` are given: vectors (float rows made unit length,
quantized codes and packed bits as stored, rescore vectors), items, ids and filters."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zoo.embeddings import Embeddings
from zoo.errors import InvalidInputError, SpaceMismatchError

_STORED = {"float32": "float32", "float16": "float32", "int8": "int8", "uint8": "int8", "binary": "binary",
           "ubinary": "binary"}  # precision of Embeddings -> what a collection stores


def _float_rows(x, what: str) -> np.ndarray:
    """(n, d) float32 rows of Embeddings or an array; quantized Embeddings are refused."""
    if isinstance(x, Embeddings) and x.precision not in ("float32", "float16"):
        raise InvalidInputError(f"{what}: needs float vectors, not precision {x.precision!r} (a quantized "
                                "collection is searched with a float query, which rescores its candidates)")
    try:
        arr = np.asarray(x.vectors if isinstance(x, Embeddings) else x, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} must be numeric vectors: {exc}") from exc
    if arr.ndim == 1 and not isinstance(x, Embeddings):
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise InvalidInputError(f"{what} must be an (n, dim) matrix, not shape {arr.shape}")
    return arr


def _unit_rows(arr: np.ndarray, what: str) -> np.ndarray:
    """Rows scaled to unit length; NaN / infinite / zero rows have no direction and are refused."""
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise InvalidInputError(f"{what} row has NaN or infinite values", index=int(np.argmax(bad)))
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if (norms == 0).any():
        raise InvalidInputError(f"{what} row is all zeros (no direction to compare)", index=int(np.argmin(norms)))
    return np.ascontiguousarray(arr / norms, dtype=np.float32)


def _stored_vectors(e: Embeddings, what: str) -> tuple[str, np.ndarray]:
    """(what the collection stores, the rows as stored): unit float32 rows, int8 codes or ubinary bytes."""
    stored = _STORED.get(e.precision)
    if stored is None:
        raise InvalidInputError(f"{what}: unknown precision {e.precision!r}")
    if stored == "float32":
        return stored, _unit_rows(_float_rows(e, what), what)
    arr = np.asarray(e.vectors)
    if arr.dtype.kind not in "iu":
        raise InvalidInputError(f"{what}: precision {e.precision} needs integer codes, not dtype {arr.dtype}")
    lo, hi = (-128, 127) if e.precision in ("int8", "binary") else (0, 255)
    if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
        raise InvalidInputError(f"{what}: {e.precision} values must lie in {lo}..{hi}")
    if stored == "int8":
        if arr.shape[1] != e.dim:
            raise InvalidInputError(f"{what}: {e.precision} codes have {arr.shape[1]} columns for dim {e.dim}")
        codes = arr.astype(np.int16) - (128 if e.precision == "uint8" else 0)
        return stored, np.ascontiguousarray(codes, dtype=np.int8)
    if arr.shape[1] != -(-e.dim // 8):
        raise InvalidInputError(f"{what}: {e.precision} rows of dim {e.dim} pack into {-(-e.dim // 8)} bytes, "
                                f"not {arr.shape[1]} (is Embeddings.dim the unpacked dimension?)")
    if e.dim >= 1 << 16:
        raise InvalidInputError(f"{what}: binary vectors of dim {e.dim}: at most 65535 bits are supported")
    packed = arr.astype(np.int16) + (128 if e.precision == "binary" else 0)
    return stored, np.ascontiguousarray(packed, dtype=np.uint8)


def _rescore_vectors(rescore, embeddings: Embeddings, n: int) -> tuple[str, np.ndarray]:
    """("int8" | "float32", rows) of the rescore vectors given with a binary add."""
    if not isinstance(rescore, Embeddings):
        raise InvalidInputError(f"rescore= takes zoo Embeddings, not {type(rescore).__name__}")
    if rescore.space != embeddings.space:
        raise SpaceMismatchError(f"rescore= vectors are of space {rescore.space!r}, the embeddings of "
                                 f"{embeddings.space!r}")
    kind, rows = _stored_vectors(rescore, "rescore")
    if kind == "binary":
        raise InvalidInputError("rescore= vectors must be int8 / uint8 codes or float vectors, not binary")
    if len(rows) != n or rows.shape[1] != embeddings.dim:
        raise InvalidInputError(f"rescore= has shape {rows.shape}; the embeddings need ({n}, {embeddings.dim})")
    return kind, rows


def _items(items, n: int) -> list[str]:
    if isinstance(items, (str, bytes)) or not hasattr(items, "__len__"):
        raise InvalidInputError("items must be a list of paths or texts, one per vector")
    if len(items) != n:
        raise InvalidInputError(f"{len(items)} items for {n} vectors: give one item per vector")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, (str, Path)):
            raise InvalidInputError(f"an item must be a path or a text, not {type(item).__name__}", index=i)
        out.append(str(item))
    return out


def _row_ids(ids, n: int, *, unique: bool = True) -> list | None:
    """The given ids as a list of str or of int (all one kind; each once unless ``unique`` is False)."""
    if ids is None:
        return None
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__len__"):
        raise InvalidInputError("ids must be a list of str or int ids, one per vector")
    ids = list(ids)
    if n >= 0 and len(ids) != n:
        raise InvalidInputError(f"{len(ids)} ids for {n} vectors: give one id per vector")
    out: list = []
    for i, value in enumerate(ids):
        if isinstance(value, str):
            if not value:
                raise InvalidInputError("an id must not be empty", index=i)
            out.append(value)
        elif isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            if not -(1 << 63) <= int(value) < 1 << 63:
                raise InvalidInputError(f"id {int(value)} does not fit in int64", index=i)
            out.append(int(value))
        else:
            raise InvalidInputError(f"an id must be a str or an int, not {type(value).__name__}", index=i)
    if out and len({type(v) for v in out}) > 1:
        raise InvalidInputError("ids must be all str or all int, not a mix")
    if unique and len(set(out)) != len(out):
        seen: set = set()
        for i, value in enumerate(out):
            if value in seen:
                raise InvalidInputError(f"id {value!r} is given twice in one add", index=i)
            seen.add(value)
    return out


def _kind_of_ids(ids: list) -> str:
    return "str" if isinstance(ids[0], str) else "int"


def _sql_literal(value: int | str) -> str:
    return str(int(value)) if isinstance(value, int) else "'" + value.replace("'", "''") + "'"


def _check_where(where) -> None:
    if not isinstance(where, str) or not where.strip():
        raise InvalidInputError(f"where must be a SQL filter (a non-empty str), not {where!r}")
