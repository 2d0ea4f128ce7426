"""A collection's rows in and out of Arrow: metadata checked and typed (or JSON, in an older zoo's collections),
each row's CRC-32 checksum, the Arrow table an add commits, and Arrow columns read back as numpy arrays."""

from __future__ import annotations

import json
import math
import re
import zlib

import numpy as np

from zoo.data.store._layout import _CHECKSUM, _RESERVED, _Layout
from zoo.errors import InvalidInputError

_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")  # a metadata key: a plain SQL identifier


def _matrix(column, dtype) -> np.ndarray:
    """A fixed-size-list Arrow column as an (n, width) numpy matrix."""
    col = column.combine_chunks()
    width = col.type.list_size
    flat = col.flatten().to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat, dtype=dtype).reshape(len(col), width)


def _ids_array(column) -> np.ndarray:
    import pyarrow as pa

    if pa.types.is_string(column.type):
        return np.array(column.to_pylist(), dtype=object)
    return column.to_numpy()


def _order(column, ids: np.ndarray) -> np.ndarray:
    """A tie-break key that sorts like the ids: the ids themselves, or the rank of string ids."""
    if ids.dtype != object:
        return ids
    import pyarrow.compute as pc

    return pc.rank(column.combine_chunks() if hasattr(column, "combine_chunks") else column,
                   sort_keys="ascending", tiebreaker="first").to_numpy().astype(np.int64)


def _metadata(metadata, n: int) -> list[str]:
    """Each row's metadata as JSON ({} when none is given): collections made by an older zoo."""
    if metadata is None:
        return ["{}"] * n
    out = []
    for i, meta in enumerate(metadata):
        if not isinstance(meta, dict):
            raise InvalidInputError(f"metadata must be a dict, not {type(meta).__name__}", index=i)
        try:
            out.append(json.dumps(meta, allow_nan=False, sort_keys=True))
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"metadata is not JSON-serializable: {exc}", index=i) from exc
    return out


def _kind(value, key: str, index: int) -> str | None:
    """The metadata type of one value ("str", "int", "float", "bool"), None for None."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, np.integer)):
        return "int"
    if isinstance(value, (float, np.floating)):
        return "float"
    if isinstance(value, str):
        return "str"
    raise InvalidInputError(f"metadata key {key!r}: values must be str, int, float or bool (or None), not "
                            f"{type(value).__name__}", index=index)


def _check_key(key, index: int) -> str:
    if not isinstance(key, str) or not _KEY.match(key):
        raise InvalidInputError(f"metadata key {key!r}: keys are 1-64 letters, digits and '_', starting with a "
                                "letter (they become columns that where= filters name)", index=index)
    if key.lower() in _RESERVED:
        raise InvalidInputError(f"metadata key {key!r} is reserved (the store's own columns: "
                                f"{', '.join(sorted(_RESERVED))})", index=index)
    return key


def _infer_keys(metadata, n: int) -> dict[str, str]:
    """The metadata keys and types of a collection's first add: each key's values are all of one type (ints
    and floats together make a float key)."""
    if metadata is None:
        return {}
    kinds: dict[str, set[str]] = {}
    for i, meta in enumerate(metadata):
        if not isinstance(meta, dict):
            raise InvalidInputError(f"metadata must be a dict, not {type(meta).__name__}", index=i)
        for key, value in meta.items():
            found = kinds.setdefault(_check_key(key, i), set())
            kind = _kind(value, key, i)
            if kind:
                found.add(kind)
    folded = {k.lower(): k for k in kinds}
    if len(folded) != len(kinds):
        twins = sorted(k for k in kinds if folded[k.lower()] != k)
        raise InvalidInputError(f"metadata keys {twins[0]!r} and {folded[twins[0].lower()]!r} differ only in case "
                                "(filters do not tell them apart)")
    out = {}
    for key, found in sorted(kinds.items()):
        if found == {"int", "float"}:
            found = {"float"}
        if len(found) > 1:
            raise InvalidInputError(f"metadata key {key!r} has values of types {', '.join(sorted(found))}: a key "
                                    "keeps one type")
        if not found:
            raise InvalidInputError(f"metadata key {key!r} has no value but None in the collection's first add, "
                                    "which fixes each key's type: give it a value")
        out[key] = found.pop()
    return out


def _typed_metadata(metadata, n: int, keys: dict[str, str]) -> tuple[dict[str, list], list[str]]:
    """(column per key, each row's metadata JSON for its checksum), the values checked against ``keys``."""
    columns: dict[str, list] = {key: [None] * n for key in keys}
    if metadata is None:
        return columns, ["{}"] * n
    metas = []
    for i, meta in enumerate(metadata):
        if not isinstance(meta, dict):
            raise InvalidInputError(f"metadata must be a dict, not {type(meta).__name__}", index=i)
        row = {}
        for key, value in meta.items():
            if key not in keys:
                known = ", ".join(f"{k} ({t})" for k, t in sorted(keys.items())) or "none"
                raise InvalidInputError(f"metadata key {key!r} is not one of the collection's keys, which its first "
                                        f"add fixed: {known}", index=i)
            kind, want = _kind(value, key, i), keys[key]
            if kind is None:
                continue
            if kind != want and not (kind == "int" and want == "float"):
                raise InvalidInputError(f"metadata key {key!r} holds {want} values, not {kind} ({value!r:.40})",
                                        index=i)
            if want == "float":
                value = float(value)
                if not math.isfinite(value):
                    raise InvalidInputError(f"metadata key {key!r}: {value} is not a finite number", index=i)
            elif want == "int":
                value = int(value)
                if not -(1 << 63) <= value < 1 << 63:
                    raise InvalidInputError(f"metadata key {key!r}: {value} does not fit in int64", index=i)
            elif want == "bool":
                value = bool(value)
            columns[key][i] = row[key] = value
        metas.append(_canonical(row))
    return columns, metas


def _canonical(meta: dict) -> str:
    """A row's metadata as the JSON its checksum covers: sorted keys, keys without a value left out."""
    row = {k: v for k, v in meta.items() if v is not None}
    return json.dumps(row, sort_keys=True) if row else "{}"


def _checksums(ids: np.ndarray, items: list[str], metas: list[str], vectors: np.ndarray,
               extra: np.ndarray | None = None) -> np.ndarray:
    """Each row's CRC-32 of its id (int64 LE, or length-prefixed UTF-8), vector (float32 LE / int8 / packed
    bytes), rescore vector (if any), item (length-prefixed UTF-8) and metadata JSON."""
    n = len(items)
    if ids.dtype == object:
        id_parts = [len(b).to_bytes(8, "little") + b for b in (str(i).encode() for i in ids)]
    else:
        raw = memoryview(np.ascontiguousarray(ids, dtype="<i8").tobytes())
        id_parts = [raw[i * 8:i * 8 + 8] for i in range(n)]
    vec_bytes, width = _row_bytes(vectors)
    if extra is not None:
        ext_bytes, ext_width = _row_bytes(extra)
    out = np.empty(n, dtype=np.int64)
    crc = zlib.crc32
    for i, (item, meta) in enumerate(zip(items, metas, strict=True)):
        item_b = item.encode()
        c = crc(vec_bytes[i * width:(i + 1) * width], crc(id_parts[i]))
        if extra is not None:
            c = crc(ext_bytes[i * ext_width:(i + 1) * ext_width], c)
        out[i] = crc(meta.encode(), crc(item_b, crc(len(item_b).to_bytes(8, "little"), c)))
    return out


def _row_bytes(rows: np.ndarray) -> tuple[memoryview, int]:
    """The rows' bytes (float32 little-endian, or the int8 / uint8 codes) without a copy, and bytes per row."""
    rows = np.ascontiguousarray(rows, dtype="<f4" if rows.dtype.kind == "f" else rows.dtype)
    width = rows.itemsize * rows.shape[1] if rows.ndim == 2 else 0
    return memoryview(rows.reshape(-1).view(np.uint8)), width


def _arrow_rows(layout: _Layout, ids: list, items: list[str], columns: dict[str, list] | None, metas: list[str],
                vectors: np.ndarray, extra: tuple[str, np.ndarray] | None, schema=None):
    """The rows as an Arrow table in the collection's layout (cast to ``schema``, the table's, when given)."""
    import pyarrow as pa

    id_array = np.array(ids, dtype=object) if layout.id_kind == "str" else np.asarray(ids, dtype=np.int64)
    value_type = {"float32": pa.float32(), "int8": pa.int8(), "binary": pa.uint8()}[layout.precision]
    data = {"id": pa.array(ids, type=pa.string() if layout.id_kind == "str" else pa.int64()),
            "item": pa.array(items, type=pa.string())}
    if layout.typed:
        types = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
        for key in sorted(layout.keys):
            data[key] = pa.array(columns[key], type=types[layout.keys[key]])
    else:
        data["metadata"] = pa.array(metas, type=pa.string())
    data["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel(), type=value_type), vectors.shape[1])
    if extra is not None:
        kind, rows = extra
        data["rescore"] = pa.FixedSizeListArray.from_arrays(
            pa.array(rows.ravel(), type=pa.int8() if kind == "int8" else pa.float32()), rows.shape[1])
    if layout.checked:
        data[_CHECKSUM] = pa.array(_checksums(id_array, items, metas, vectors, extra[1] if extra else None),
                                   type=pa.int64())
    table = pa.table(data)
    return table.select(schema.names).cast(schema) if schema is not None else table
