"""The machinery under a Collection's table: opening it and reading its layout, the write lock (a thread lock
per collection and, on POSIX, an ``fcntl.flock`` across processes), LanceDB's errors turned into
CollectionCorruptError, the latest version's facts, the space and dim checks, and each row's metadata decoded
(and checked against its checksum) in the table's layout."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from zoo.data.store._layout import _CHECKSUM, _META_LAYOUT, _META_PRECISION, _RESERVED, _Layout
from zoo.data.store.results import CollectionCorruptError
from zoo.data.store.rows import _canonical, _checksums
from zoo.errors import InvalidInputError, SpaceMismatchError, ZooError

try:
    import fcntl
except ImportError:  # not POSIX (Windows): writers are serialized within one process only
    fcntl = None

_LOCK_DIR = ".zoo-locks"  # in the store folder: one lock file per collection (LanceDB lists only *.lance)
_thread_locks: dict[tuple[str, str], threading.Lock] = {}
_thread_locks_guard = threading.Lock()


def _thread_lock(path: Path, name: str) -> threading.Lock:
    """One lock per (store folder, collection) in this process, shared by every Collection object."""
    key = (str(path.resolve()), name)
    with _thread_locks_guard:
        return _thread_locks.setdefault(key, threading.Lock())


class _Table:
    """Collection's table machinery (a mixin: it works on the Collection's own attributes)."""

    def _tbl(self):
        """The LanceDB table, or None while the collection has no rows on disk."""
        if self._table is None and self.name in self.store._table_names():
            with self._guard("open"):
                try:
                    tbl = self.store._db.open_table(self.name)
                except ValueError as exc:
                    if "not found" in str(exc):
                        return None  # a folder with no committed version: a creator was killed before its commit
                    raise
                layout = self._read_layout(tbl.schema)
                self._table, self._layout = tbl, layout
        return self._table

    def _read_layout(self, schema) -> _Layout:
        import pyarrow as pa

        names = set(schema.names)
        meta = dict(schema.metadata or {})
        typed = meta.get(_META_LAYOUT) is not None
        missing = {"id", "item", "vector"} - names if typed else {"id", "item", "metadata", "vector"} - names
        if missing:
            raise self._corrupt(f"its table lacks the columns {sorted(missing)}")
        precision = (meta.get(_META_PRECISION) or b"float32").decode()
        id_type = schema.field("id").type
        keys = {}
        if typed:
            kinds = {pa.string(): "str", pa.int64(): "int", pa.float64(): "float", pa.bool_(): "bool"}
            for f in schema:
                if f.name not in _RESERVED:
                    if f.type not in kinds:
                        raise self._corrupt(f"its metadata column {f.name!r} has type {f.type}")
                    keys[f.name] = kinds[f.type]
        rescore = None
        if "rescore" in names:
            rescore = "int8" if pa.types.is_int8(schema.field("rescore").type.value_type) else "float32"
        return _Layout(typed=typed, id_kind="str" if pa.types.is_string(id_type) else "int", keys=keys,
                       precision=precision, rescore=rescore, checked=_CHECKSUM in names)

    def _corrupt(self, what: str, ids=()) -> CollectionCorruptError:
        return CollectionCorruptError(
            f"collection {self.name!r} in {str(self.store.path)!r} is damaged: {what}. Other collections are not "
            f"affected; drop and rebuild this one, or restore its folder {self.name}.lance from a backup",
            collection=self.name, ids=ids, path=f"{self.name}.lance")

    @contextmanager
    def _guard(self, action: str, where: str | None = None) -> Iterator[None]:
        """Turn LanceDB's errors on reading damaged files into CollectionCorruptError naming the collection; with
        ``where``, LanceDB's complaints about the filter become an InvalidInputError instead."""
        try:
            yield
        except (ZooError, KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError):
            raise
        except BaseException as exc:  # lance raises OSError / RuntimeError / ValueError, or a Rust panic
            if where is not None and isinstance(exc, ValueError) and str(exc).startswith("Invalid input"):
                raise self._bad_filter(where, exc) from None
            raise self._corrupt(f"{action} failed: {type(exc).__name__}: {exc}") from exc

    def _bad_filter(self, where: str, exc: Exception) -> InvalidInputError:
        layout = self._layout
        columns = ["id", "item"] + (sorted(layout.keys) if layout and layout.typed else [])
        hint = ("; this collection was made by an older zoo and keeps its metadata as one JSON column, so "
                "filters can use id and item only") if layout and not layout.typed else ""
        message = " ".join(str(exc).split())
        message = re.sub(r",? ?/\S+\.rs:\d+:\d+", "", message)  # the Rust source location LanceDB appends
        return InvalidInputError(f"where={where!r} is not a filter on collection {self.name!r} (columns: "
                                 f"{', '.join(columns)}): {message}{hint}")

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the collection's write lock: the thread lock, then (POSIX) an flock on its lock file."""
        with self._lock:
            if fcntl is None:
                yield
                return
            folder = self.store.path / _LOCK_DIR
            folder.mkdir(exist_ok=True)
            with open(folder / f"{self.name}.lock", "ab") as fh:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # released by the kernel should this process die
                try:
                    yield
                finally:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _meta(self, key: bytes) -> str | None:
        if self._schema_meta is None and self._tbl() is not None:
            self._schema_meta = dict(self._tbl().schema.metadata or {})
        value = (self._schema_meta or {}).get(key)
        return value.decode() if value is not None else None

    def _latest(self) -> tuple[int, int, str | None]:
        """(version, rows, vector index type) of the table's latest version on disk, read once per version."""
        tbl = self._tbl()
        if tbl is None:
            return 0, 0, None
        with self._guard("reading its latest version"):
            tbl.checkout_latest()
            version = tbl.version
            facts = self._facts
            if facts is None or facts[0] != version:
                kinds = [ix.index_type for ix in tbl.list_indices() if "vector" in ix.columns]
                self._facts = facts = (version, tbl.count_rows(), kinds[0] if kinds else None)
        return facts

    def _check_space(self, space: str, action: str) -> None:
        if space != self.space:
            raise SpaceMismatchError(f"collection {self.name!r} holds vectors of space {self.space!r}; cannot "
                                     f"{action} vectors of space {space!r}")

    def _check_dim(self, dim: int, what: str) -> None:
        if dim != self.dim:
            raise InvalidInputError(f"{what} have dim {dim}, but collection {self.name!r} has dim {self.dim}")

    def _check_rows(self, ids, items, metas, vectors, stored, extra=None) -> None:
        bad = np.flatnonzero(_checksums(ids, items, metas, vectors, extra) != stored)
        if len(bad):
            raise self._corrupt(f"{len(bad)} row(s) fail their checksum (ids {ids[bad[:10]].tolist()}"
                                f"{', ...' if len(bad) > 10 else ''})", ids=ids[bad])

    def _meta_json(self, data) -> list[str]:
        """Each row's metadata in the JSON its checksum covers."""
        if not self._layout.typed:
            return data["metadata"].to_pylist()
        keys = sorted(self._layout.keys)
        if not keys:
            return ["{}"] * data.num_rows
        columns = [data[key].to_pylist() for key in keys]
        return [_canonical(dict(zip(keys, values, strict=True))) for values in zip(*columns, strict=True)]

    def _meta_dicts(self, data) -> list[dict]:
        """Each row's metadata dict (keys without a value left out)."""
        if not self._layout.typed:
            return [json.loads(m) if m != "{}" else {} for m in data["metadata"].to_pylist()]
        keys = sorted(self._layout.keys)
        if not keys:
            return [{} for _ in range(data.num_rows)]
        columns = [data[key].to_pylist() for key in keys]
        return [{k: v for k, v in zip(keys, values, strict=True) if v is not None}
                for values in zip(*columns, strict=True)]
