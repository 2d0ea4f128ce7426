"""A vector store for zoo embeddings: named collections on disk, searched by cosine similarity.

Storage is LanceDB (the ``store`` extra), embedded: a folder on disk, no server. Each
collection is one LanceDB table with the columns

- ``id`` (int64, or string): the row's id. ``add`` numbers rows 0, 1, 2, ... (on from the largest
  id the collection has had: ``delete`` records it first, so deleted ids are not given again)
  unless ``ids=`` are given; given ids may be ints or strings (the first add fixes which), and
  adding a row whose id exists replaces that row (an upsert, one ``merge_insert``);
- ``item`` (string): the path or text the vector was made from;
- one typed column per metadata key (string, int64, float64 or bool; null where a row has no
  value), the set of keys and their types fixed by the collection's first ``add``, so that
  ``search(..., where="year > 2000 AND kind = 'image'")`` can filter with LanceDB's SQL;
  collections made by an older zoo keep a ``metadata`` column of JSON instead and are read as
  before (their filters can use ``id`` and ``item`` only);
- ``vector``: the vector. Float collections keep float32 rows, L2-normalized on ``add``, so that
  the cosine of two rows is their dot product. Quantized collections keep what ``add`` was
  given: int8 codes (uint8 codes are stored shifted to int8, as ``zoo.embeddings.quantize`` relates
  them) or packed sign bits (binary / ubinary, stored as the ubinary bytes);
- ``rescore`` (binary collections added with ``rescore=``): int8 codes or unit float32 rows of
  the same items, used to rescore the candidates of the Hamming search;
- ``checksum`` (int64): CRC-32 of the row's id, vector (and rescore vector), item and metadata,
  checked on every row that exact search loads, on every hit of an ANN search and by
  :meth:`Collection.verify` (collections made before this column existed are read without the
  check). Typed metadata is checked as the row's metadata dict in JSON (sorted keys, nulls left
  out), the same bytes the older JSON column held.

Writers are serialized per collection: a thread lock within the process and, on POSIX, an
``fcntl.flock`` on ``.zoo-locks/<name>.lock`` in the store folder across processes, held while
``add`` / ``delete`` create or open the table, allocate the next ids and commit the rows.
LanceDB commits an append, an upsert (``merge_insert``) and a delete atomically (a new
manifest), so a writer killed at any point leaves either all of a call's changes or none, and
the kernel releases its lock. Damaged files (bytes changed, a file cut short) surface as
:class:`CollectionCorruptError` naming the collection instead of as wrong hits (a CRC-32 per
row: damage that keeps it matching is a 1 in 2^32 chance; damage in an ANN index file can still
lose recall unnoticed); other collections live in their own folders and are not affected.
Durability is LanceDB's: no fsync is forced, so a power cut or OS crash (unlike a killed
process) may lose the last commits.

The table's schema metadata records the embedding space id (and the model and dim that made
the first rows, the stored precision and the layout version). Vectors compare only within one
space: adding rows of another space is refused, and so is a query from another space, unless a
registered stitch (:mod:`zoo.stitching`) maps the query's space into the collection's; the
result then names the stitch it used. A raw numpy query carries no space: the first such search
of a collection warns that nothing was checked, and ``space=`` states the query's space.

Ways to search, chosen per call:

- exact (below :data:`ANN_THRESHOLD` rows, without an index, or ``exact=True``): the
  collection's unit vectors are read once per table version into memory (4 * dim bytes a
  row: 1.5 GB for a million 384-dim rows), with the items and metadata as Arrow columns so
  that hits need no second read, and searched with a blocked matmul and ``argpartition``.
  Scores are numpy's cosine. LanceDB's own flat scan
  (``bypass_vector_index``) passes over the table once per query vector, which a BLAS
  matmul over the whole query batch beats; ``bench/search.py`` measures both.
- approximate (``create_index()`` built and at least ANN_THRESHOLD rows, or ``exact=False``):
  a LanceDB IVF index with cosine distance. The default is IVF-FLAT: k-means partitions
  (sqrt(rows) of them) holding the full vectors, of which a query visits ``nprobes``; its
  scores are exact cosines and only recall is approximate. It trains fastest (a trial on 2
  cores with 100,000 x 384 rows: IVF-FLAT 6 s, IVF-PQ 58 s, IVF-HNSW-SQ over 3 min; IVF-FLAT
  on a million rows about a minute), at the cost of a second full copy of the vectors on
  disk. ``create_index(kind="ivf_pq")`` builds the compressed IVF-PQ instead; its candidates
  are re-ranked on the full vectors (``refine_factor``), without which recall@10 on clustered
  384-dim data was about 0.2. Rows added after the index was built are still found (LanceDB
  scans them flat).
- binary collections, as in sentence-transformers' embedding-quantization guide: the float
  query's sign bits are compared with every row's packed bits by Hamming distance (faiss's
  popcount kernel where faiss is installed, numpy's over 64-bit words otherwise; the rows split
  over threads), and the ``rescore_multiplier * k`` nearest are rescored with the float query
  against the row's rescore vector (``rescore=``: int8 codes or float rows) or, without one,
  against its bits unpacked to +-1. Scores: the cosine of
  the query with the +-1 vector, the query's dot product with the int8 codes (as
  sentence-transformers rescores), or the cosine with the float rescore row. ``exact=True``
  rescores every row instead of the Hamming candidates. Memory: dim / 8 bytes a row for the
  bits (48 MB for a million 384-dim rows), plus the rescore vectors.
- int8 collections: the float query's dot product with every row's codes (exact over the codes).

``where=`` (a LanceDB SQL filter over ``id``, ``item`` and the metadata columns) restricts every
kind of search to the matching rows before the nearest are taken (a prefilter), so ``k`` hits
come back whenever at least ``k`` rows match.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo.embeddings import Embeddings
from zoo.errors import IntegrityError, InvalidInputError, SpaceMismatchError, ZooError, require

try:
    import fcntl
except ImportError:  # not POSIX (Windows): writers are serialized within one process only
    fcntl = None

__all__ = ["ANN_THRESHOLD", "Collection", "CollectionCorruptError", "Hit", "SearchResults", "VectorStore",
           "exact_topk", "hamming_topk"]

ANN_THRESHOLD = 50_000
"""Collections with fewer rows are always searched exactly; at or above it an index is used when built."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")  # a metadata key: a plain SQL identifier
_RESERVED = frozenset({"id", "item", "metadata", "vector", "rescore", "checksum", "query_index"})
_META_SPACE, _META_MODEL, _META_DIM = b"zoo.space", b"zoo.model", b"zoo.dim"
_META_PRECISION, _META_LAYOUT, _META_NEXT_ID = b"zoo.precision", b"zoo.layout", b"zoo.next_id"
_LAYOUT = "2"  # typed metadata columns; collections without zoo.layout keep one JSON metadata column
_BLOCK_FLOATS = 1 << 25  # scores held at once by exact search: 128 MB of float32
_SCAN_ROWS = 1 << 15  # rows converted to float32 at once when scanning int8 codes or unpacked bits
_HAMMING_ROWS = 1 << 15  # rows per block of the Hamming scan (their words, 256 KB each, stay in cache)
_LOCK_DIR = ".zoo-locks"  # in the store folder: one lock file per collection (LanceDB lists only *.lance)
_CHECKSUM = "checksum"
_STORED = {"float32": "float32", "float16": "float32", "int8": "int8", "uint8": "int8", "binary": "binary",
           "ubinary": "binary"}  # precision of Embeddings -> what a collection stores
_thread_locks: dict[tuple[str, str], threading.Lock] = {}
_thread_locks_guard = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_guard = threading.Lock()
_faiss_module = None  # faiss once imported, False when it is not installed


class CollectionCorruptError(IntegrityError):
    """A collection whose files on disk are damaged: unreadable, or rows that fail their checksum.

    Attributes:
        collection: the collection's name.
        ids: ids of the rows found damaged (empty when the files could not be read at all).
    """

    def __init__(self, message: str, *, collection: str, ids=(), path: str | None = None):
        self.collection = collection
        self.ids = [i if isinstance(i, str) else int(i) for i in ids]
        super().__init__(message, path=path)


def _thread_lock(path: Path, name: str) -> threading.Lock:
    """One lock per (store folder, collection) in this process, shared by every Collection object."""
    key = (str(path.resolve()), name)
    with _thread_locks_guard:
        return _thread_locks.setdefault(key, threading.Lock())


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result: the row's id, its item, its score against the query, its metadata.

    ``score`` is the cosine similarity in float collections; see the module docstring for quantized ones.
    """

    id: int | str
    item: str
    score: float
    metadata: dict = field(default_factory=dict)
    stitch: str | None = None  # the stitch that mapped the query into the collection's space, if any


class SearchResults(list):
    """One list of Hits per query, best first; says how the search ran.

    Attributes:
        stitch: name of the registered stitch that mapped the queries into the collection's space, or None.
        exact: True for exact search, False when an ANN index or a binary collection's Hamming search answered.
    """

    def __init__(self, hits=(), *, stitch: str | None = None, exact: bool = True):
        super().__init__(hits)
        self.stitch = stitch
        self.exact = exact


@dataclass(frozen=True)
class _Layout:
    """How a collection's table is laid out, read from its schema when it is opened or created."""

    typed: bool  # metadata as typed columns (else one JSON column: an older zoo's collection)
    id_kind: str  # "int" | "str"
    keys: dict[str, str]  # metadata key -> "str" | "int" | "float" | "bool" (typed layout)
    precision: str  # "float32" | "int8" | "binary"
    rescore: str | None  # binary collections: "int8" | "float32" rescore vectors, or None
    checked: bool  # the table has the checksum column

    @property
    def meta_columns(self) -> list[str]:
        return sorted(self.keys) if self.typed else ["metadata"]


@dataclass
class _Snapshot:
    """One table version in memory, in scan order: row ids, vectors, and ids, items and metadata as Arrow
    columns (compact; a hit's row is a take from them by position instead of a read from disk)."""

    version: int
    ids: np.ndarray  # int64, or object (str ids)
    order: np.ndarray  # int64: sorts like the ids (ties in scores go to the lower id)
    vectors: np.ndarray  # float32 unit rows | int8 codes | uint8 packed bits
    rows: Any  # pyarrow Table of id, item and the metadata column(s)
    rescore: np.ndarray | None = None  # binary: int8 codes or float32 unit rows for rescoring
    words: np.ndarray | None = None  # binary without faiss: the bits as (words, rows) uint64, made on first search


class VectorStore:
    """A folder of collections. ``VectorStore(path).collection("docs")`` opens (or starts) one."""

    def __init__(self, path: str | Path):
        lancedb = require("lancedb", extra="store", purpose="the vector store")
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._db = lancedb.connect(str(self.path))
        self._open: dict[str, Collection] = {}
        self._open_lock = threading.Lock()

    def collection(self, name: str) -> Collection:
        """The collection ``name``; it is created on disk by its first ``add``."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidInputError(f"collection names are 1-128 letters, digits, '_', '.', '-'; not {name!r}")
        with self._open_lock:
            if name not in self._open:
                self._open[name] = Collection(self, name)
            return self._open[name]

    def collections(self) -> list[str]:
        """Names of the collections on disk."""
        return sorted(self._table_names())

    def drop(self, name: str) -> None:
        """Delete a collection and its files (waiting for its writers, in this and other processes)."""
        if name in self._table_names():
            with Collection(self, name)._writing():
                if name in self._table_names():
                    self._db.drop_table(name)
        self._open.pop(name, None)

    def _table_names(self) -> list[str]:
        names, token = [], None
        while True:
            page = self._db.list_tables(page_token=token)
            names.extend(page.tables)
            token = page.page_token
            if not token:
                return names

    def __repr__(self) -> str:
        return f"VectorStore({str(self.path)!r}, collections={self.collections()})"


class Collection:
    """Vectors of one embedding space with their items and metadata; see the module docstring."""

    nprobes: int | None = None
    """IVF partitions the ANN search visits per query; None: a tenth of sqrt(rows) (the default partition
    count), at least 20. On clustered data at a million rows (bench/search.py) 20 of 1,000 partitions found
    82% of the true top-10, 100 found 95%, at about a quarter of the speed."""
    refine_factor = 10
    """An IVF-PQ search re-ranks ``k * refine_factor`` candidates on the full vectors (IVF-FLAT needs none)."""
    rescore_multiplier = 4
    """A binary collection's search rescores the ``rescore_multiplier * k`` rows nearest by Hamming distance
    (sentence-transformers' default, 4). More candidates raise recall when the rescore vectors are int8 or
    float (bench/binary_search.py measures it); against +-1 bits they gain little."""

    def __init__(self, store: VectorStore, name: str):
        self.store, self.name = store, name
        self._table = None
        self._schema_meta: dict[bytes, bytes] | None = None  # set when the table is created; never changes
        self._layout: _Layout | None = None  # set when the table is opened or created
        self._facts: tuple[int, int, str | None] | None = None  # (version, rows, index type) of the latest read
        self._snapshot: _Snapshot | None = None
        self._next_id: tuple[int, int] | None = None  # (version, the id an add without ids= gives next)
        self._warned_raw = False  # whether a search with a raw array has warned (once per collection)
        self._lock = _thread_lock(store.path, name)

    # -- the table ---------------------------------------------------------------------------------------------
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

    @property
    def space(self) -> str | None:
        """The embedding space id of the collection's vectors (None while it is empty)."""
        return self._meta(_META_SPACE)

    @property
    def dim(self) -> int | None:
        value = self._meta(_META_DIM)
        return int(value) if value is not None else None

    @property
    def precision(self) -> str | None:
        """What the rows store: "float32", "int8" or "binary" (None while the collection is empty)."""
        return self._layout.precision if self._tbl() is not None else None

    @property
    def metadata_types(self) -> dict[str, str]:
        """The metadata keys and their types ("str", "int", "float", "bool"), fixed by the first add."""
        return dict(self._layout.keys) if self._tbl() is not None else {}

    def __len__(self) -> int:
        return self._latest()[1]

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, rows={len(self)}, space={self.space!r}, indexed={self.indexed})"

    # -- adding ------------------------------------------------------------------------------------------------
    def add(self, embeddings: Embeddings, items: list[str], metadata: list[dict] | None = None, *,
            ids: list[str] | list[int] | None = None, rescore: Embeddings | None = None) -> list:
        """Add rows; returns their ids. Row i is ``embeddings`` row i, ``items[i]``, ``metadata[i]``.

        ``metadata``: one dict per row of str / int / float / bool values (None: no value). The first add
        fixes the keys and their types (an int is taken into a float key); a later add with another key or
        a value of another type is refused, naming the key. ``ids``: the rows' ids (all str or all int, as
        the collection's first add had them); a row whose id is already there replaces it, so adding the
        same rows again with the same ids leaves one copy. Without ``ids`` rows are numbered on from the
        largest id (int-id collections only). ``embeddings`` may be float (stored as unit rows) or, in a
        collection of that precision, int8 / uint8 codes or binary / ubinary packed bits; a binary add may
        bring ``rescore``: int8 / uint8 codes or float vectors of the same rows (every add of the collection
        then does), used to rescore its Hamming search.
        """
        if not isinstance(embeddings, Embeddings):
            raise InvalidInputError("add needs zoo Embeddings (they carry the space id), not "
                                    f"{type(embeddings).__name__}")
        precision, vectors = _stored_vectors(embeddings, "embeddings")
        items = _items(items, len(vectors))
        row_ids = _row_ids(ids, len(vectors))
        if metadata is not None and (isinstance(metadata, dict) or not hasattr(metadata, "__len__")):
            raise InvalidInputError("metadata must be a list of dicts, one per vector")
        if metadata is not None and len(metadata) != len(vectors):
            raise InvalidInputError(f"{len(metadata)} metadata dicts for {len(vectors)} vectors: give one per vector")
        extra = None
        if rescore is not None:
            if precision != "binary":
                raise InvalidInputError("rescore= vectors go with binary / ubinary embeddings only")
            extra = _rescore_vectors(rescore, embeddings, len(vectors))
        with self._writing():  # no other thread or process allocates ids or commits rows until this one has
            return self._append(embeddings, precision, items, metadata, vectors, row_ids, extra)

    def _append(self, embeddings: Embeddings, precision: str, items: list[str], metadata, vectors: np.ndarray,
                row_ids: list | None, extra: tuple[str, np.ndarray] | None) -> list:
        """Commit the rows under the write lock; returns their ids."""
        n = len(vectors)
        if self._table is not None and self.name not in self.store._table_names():  # dropped
            self._table, self._schema_meta, self._layout, self._facts, self._snapshot, self._next_id = (None,) * 6
        for attempt in range(2):
            tbl = self._tbl()
            if tbl is not None:
                layout = self._layout
                self._check_space(embeddings.space, "add")
                if precision != layout.precision:
                    raise InvalidInputError(f"collection {self.name!r} stores {layout.precision} vectors; cannot add "
                                            f"{embeddings.precision} ones")
                self._check_dim(embeddings.dim if precision != "float32" else vectors.shape[1], "embeddings")
                if (extra is None) != (layout.rescore is None):
                    raise InvalidInputError(f"collection {self.name!r} " + (
                        f"keeps {layout.rescore} rescore vectors: give rescore= with every add" if layout.rescore
                        else "has no rescore vectors (its first add gave none): leave rescore= out"))
                if extra is not None and extra[0] != layout.rescore:
                    raise InvalidInputError(f"collection {self.name!r} keeps {layout.rescore} rescore vectors, "
                                            f"not {extra[0]}")
                columns, metas = _typed_metadata(metadata, n, layout.keys) if layout.typed else \
                    (None, _metadata(metadata, n))
                if row_ids is not None and (row_ids and _kind_of_ids(row_ids) != layout.id_kind):
                    raise InvalidInputError(f"collection {self.name!r} has {layout.id_kind} ids; ids= gave "
                                            f"{_kind_of_ids(row_ids)} ones")
                if row_ids is None and layout.id_kind == "str":
                    raise InvalidInputError(f"collection {self.name!r} has string ids: give ids= with every add")
                if not n:
                    return []
                with self._guard("adding rows"):
                    if row_ids is None:
                        start = self._next_row_id()
                        row_ids = list(range(start, start + n))
                        tbl.add(_arrow_rows(layout, row_ids, items, columns, metas, vectors, extra, tbl.schema))
                        self._next_id = (tbl.version, start + n)
                    else:
                        data = _arrow_rows(layout, row_ids, items, columns, metas, vectors, extra, tbl.schema)
                        # the handle may stand at an older version than another handle (or process) has since
                        # committed; an upsert planned against that version inserts rows whose ids are already
                        # there. Under the write lock no one commits between this checkout and the upsert.
                        tbl.checkout_latest()
                        tbl.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(data)
                return list(row_ids)
            if not n:
                return []  # an empty add creates nothing: the first add with rows fixes the collection's layout
            keys = _infer_keys(metadata, n)
            columns, metas = _typed_metadata(metadata, n, keys)
            layout = _Layout(typed=True, id_kind=_kind_of_ids(row_ids) if row_ids else "int", keys=keys,
                             precision=precision, rescore=extra[0] if extra else None, checked=True)
            row_ids = row_ids if row_ids is not None else list(range(n))
            data = _arrow_rows(layout, row_ids, items, columns, metas, vectors, extra)
            dim = embeddings.dim if precision != "float32" else vectors.shape[1]
            schema = data.schema.with_metadata({_META_SPACE: embeddings.space, _META_MODEL: embeddings.model,
                                                _META_DIM: str(dim), _META_PRECISION: precision,
                                                _META_LAYOUT: _LAYOUT})
            try:
                self._table = self.store._db.create_table(self.name, data.cast(schema), schema=schema)
            except ValueError as exc:  # a writer without the file lock (another OS) created it first: open it
                if "already exists" not in str(exc) or attempt:
                    raise
                continue
            self._layout = layout
            self._next_id = (self._table.version, n) if layout.id_kind == "int" else None
            return list(row_ids)
        raise AssertionError("unreachable")

    def _next_row_id(self) -> int:
        """The id an add without ids= gives its first row: one past the largest id there is or was (a delete
        first records the mark in the id column's field metadata, so deleted ids are not given again)."""
        version, count, _ = self._latest()
        if self._next_id is not None and self._next_id[0] == version:
            return self._next_id[1]
        import pyarrow.compute as pc

        tbl = self._tbl()
        with self._guard("reading its ids"):
            mark = int((tbl.schema.field("id").metadata or {}).get(_META_NEXT_ID, b"0"))
            largest = pc.max(tbl.search().select(["id"]).limit(None).to_arrow()["id"]).as_py() if count else None
        return max(mark, largest + 1 if largest is not None else 0)

    def delete(self, ids: list[str] | list[int] | None = None, *, where: str | None = None) -> int:
        """Delete the rows with these ids, or the rows matching the SQL filter ``where``; returns how many
        were deleted (ids that are not there are skipped). One atomic commit, under the write lock."""
        if (ids is None) == (where is None):
            raise InvalidInputError("delete takes ids or where=, one of them")
        if where is not None:
            _check_where(where)
        row_ids = _row_ids(ids, -1, unique=False) if ids is not None else None
        with self._writing():
            tbl = self._tbl()
            if tbl is None or (row_ids is not None and not row_ids):
                return 0
            if row_ids is not None:
                kind = _kind_of_ids(row_ids)
                if kind != self._layout.id_kind:
                    raise InvalidInputError(f"collection {self.name!r} has {self._layout.id_kind} ids, not {kind}")
                where_sql = f"id IN ({', '.join(_sql_literal(i) for i in dict.fromkeys(row_ids))})"
            else:
                where_sql = where
            before = self._latest()[1]
            if self._layout.id_kind == "int":  # keep the next id past the rows about to go
                mark, stored = self._next_row_id(), (tbl.schema.field("id").metadata or {}).get(_META_NEXT_ID)
                if stored is None or int(stored) < mark:
                    with self._guard("recording its next id"):
                        tbl.update_field_metadata({"path": "id", "metadata": {_META_NEXT_ID.decode(): str(mark)}})
            with self._guard("deleting rows", where):
                result = tbl.delete(where_sql)
            deleted = getattr(result, "num_deleted_rows", None)
            return int(deleted) if deleted is not None else before - self._latest()[1]

    def rows(self) -> list[tuple[int | str, str, dict]]:
        """Every row's id, item and metadata, in id order (the vectors are left on disk)."""
        if self._tbl() is None:
            return []
        with self._guard("reading its rows"):
            self._tbl().checkout_latest()  # what other handles and processes have committed since this one read
            data = self._tbl().search().select(["id", "item", *self._layout.meta_columns]).limit(None).to_arrow()
        rows = zip(data["id"].to_pylist(), data["item"].to_pylist(), self._meta_dicts(data), strict=True)
        return sorted(rows, key=lambda r: r[0])

    def _check_space(self, space: str, action: str) -> None:
        if space != self.space:
            raise SpaceMismatchError(f"collection {self.name!r} holds vectors of space {self.space!r}; cannot "
                                     f"{action} vectors of space {space!r}")

    def _check_dim(self, dim: int, what: str) -> None:
        if dim != self.dim:
            raise InvalidInputError(f"{what} have dim {dim}, but collection {self.name!r} has dim {self.dim}")

    # -- the ANN index -----------------------------------------------------------------------------------------
    def create_index(self, kind: str = "ivf_flat", *, num_partitions: int | None = None,
                     num_sub_vectors: int | None = None) -> None:
        """Build (or rebuild) the ANN index over the vectors, cosine distance.

        ``kind``: "ivf_flat" (default) or "ivf_pq". ``num_partitions`` defaults to sqrt(rows) (LanceDB's
        rule); IVF-PQ uses ``num_sub_vectors`` (default dim / 16) codes of 8 bits. Search uses the index
        once the collection has at least ANN_THRESHOLD rows (or with ``exact=False``). Float collections
        only: a binary collection's Hamming scan is its index.
        """
        from lancedb.index import IvfFlat, IvfPq

        if kind not in ("ivf_flat", "ivf_pq"):
            raise InvalidInputError(f"kind must be 'ivf_flat' or 'ivf_pq', not {kind!r}")
        tbl = self._tbl()
        if tbl is not None and self._layout.precision != "float32":
            raise InvalidInputError(f"collection {self.name!r} stores {self._layout.precision} vectors: an IVF index "
                                    "is for float collections (binary ones are searched by Hamming distance)")
        if tbl is None or len(self) < 256:
            raise InvalidInputError(f"an IVF index needs at least 256 rows to train on; collection {self.name!r} "
                                    f"has {len(self)} (small collections are searched exactly anyway)")
        partitions = num_partitions or max(1, round(math.sqrt(len(self))))
        if kind == "ivf_flat":
            config = IvfFlat(distance_type="cosine", num_partitions=partitions)
        else:
            config = IvfPq(distance_type="cosine", num_partitions=partitions, num_sub_vectors=num_sub_vectors)
        tbl.create_index("vector", config=config, replace=True)

    @property
    def index_type(self) -> str | None:
        """LanceDB's name of the vector index ("IvfFlat", "IvfPq"), or None when there is none."""
        return self._latest()[2]

    @property
    def indexed(self) -> bool:
        return self.index_type is not None

    # -- searching ---------------------------------------------------------------------------------------------
    def search(self, query: Embeddings | np.ndarray, k: int = 10, *, exact: bool | None = None,
               where: str | None = None, space: str | None = None,
               rescore_multiplier: int | None = None) -> SearchResults:
        """The ``k`` rows nearest each query row, best first (ties: lower id first).

        ``query``: float Embeddings (of the collection's space, or of a space a registered stitch maps into
        it), or an (m, dim) / (dim,) array. An array carries no space: ``space=`` names it (checked like an
        Embeddings' space); without it the first such search of the collection warns that no check was
        possible. ``exact``: None picks the ANN index when built and the collection has at least
        ANN_THRESHOLD rows; True / False force (in a binary collection True rescores every row instead of
        the Hamming candidates). ``where``: a LanceDB SQL filter over id, item and the metadata keys, e.g.
        ``"year > 2000 AND kind = 'image'"``, applied before the nearest are taken. ``rescore_multiplier``:
        binary collections, see :attr:`rescore_multiplier`.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidInputError(f"k must be a positive int, not {k!r}")
        if where is not None:
            _check_where(where)
        if space is not None and (not isinstance(space, str) or not space):
            raise InvalidInputError(f"space must be a space id (a non-empty str), not {space!r}")
        multiplier = self.rescore_multiplier if rescore_multiplier is None else rescore_multiplier
        if isinstance(multiplier, bool) or not isinstance(multiplier, (int, np.integer)) or multiplier < 1:
            raise InvalidInputError(f"rescore_multiplier must be a positive int, not {multiplier!r}")
        unchecked = False
        if isinstance(query, Embeddings):
            if space is not None and space != query.space:
                raise SpaceMismatchError(f"space={space!r}, but the query Embeddings are of space {query.space!r}")
        elif space is not None:
            arr = _float_rows(query, "query")
            query = Embeddings(arr, space=space, model="(array)", modality="vector", normalized=False)
        else:
            unchecked = True
        query, stitch = self._into_space(query)
        q = _unit_rows(_float_rows(query, "query"), "query")
        if self._tbl() is None or not len(q):
            return SearchResults([[] for _ in q], stitch=stitch)
        if unchecked and not self._warned_raw:
            self._warned_raw = True
            warnings.warn(f"collection {self.name!r} holds space {self.space!r}; the query is a plain array, whose "
                          "space could not be checked: search with Embeddings, or pass space= to state it",
                          UserWarning, stacklevel=2)
        self._check_dim(q.shape[1], "query vectors")
        version, rows, index_type = self._latest()
        layout = self._layout
        if layout.precision != "float32":
            if exact is False and layout.precision == "int8":
                raise InvalidInputError(f"collection {self.name!r} stores int8 codes, which are searched exactly")
            snap, allowed = self._filtered(where, version)
            if layout.precision == "int8" or exact:
                qi, pos, scores = self._scan(q, k, snap, allowed)
                return self._hits_at(len(q), qi, pos, scores, snap, stitch, exact=True)
            qi, pos, scores = self._binary(q, k, snap, allowed, int(multiplier))
            return self._hits_at(len(q), qi, pos, scores, snap, stitch, exact=False)
        if exact is None:
            exact = not (rows >= ANN_THRESHOLD and index_type)
        elif exact is False and not index_type:
            raise InvalidInputError(f"exact=False needs an index: call create_index() on {self.name!r} first")
        if not exact:
            return self._ann(q, k, index_type, where, stitch)
        snap, allowed = self._filtered(where, version)
        top, scores = exact_topk(q, snap.vectors, k, tiebreak=snap.order, mask=allowed)
        qi = np.repeat(np.arange(len(q)), top.shape[1])
        return self._hits_at(len(q), qi, top.ravel(), scores.ravel(), snap, stitch, exact=True)

    def _into_space(self, query) -> tuple[Any, str | None]:
        """The query in the collection's space, and the name of the stitch that put it there (or None)."""
        space = self.space
        if not isinstance(query, Embeddings) or space is None or query.space == space:
            return query, None
        from zoo.spaces import stitching

        found = stitching.find_stitch(query.space, space)
        if found is None:
            backward = stitching.find_stitch(space, query.space)
            hint = (f"; stitch {backward[0]!r} maps the other way, but a query needs one from its space into the "
                    "collection's") if backward else ", or fit and register a stitch between the spaces (zoo.stitch)"
            raise SpaceMismatchError(f"collection {self.name!r} holds space {space!r}; the query is from space "
                                     f"{query.space!r} (model {query.model}): embed it with the collection's model"
                                     + hint)
        name, st = found
        return st.apply(query), name

    def _filtered(self, where: str | None, version: int) -> tuple[_Snapshot, np.ndarray | None]:
        """The snapshot of the table, and (with ``where``) a mask of its rows that match, both of one version."""
        if where is None:
            return self._vectors(version), None
        import pyarrow.compute as pc

        tbl = self._tbl()
        while True:
            with self._guard("filtering its rows", where):
                tbl.checkout_latest()
                before = tbl.version
                data = tbl.search().where(where).select(["id"]).limit(None).to_arrow()
            if tbl.version != before:
                continue  # another thread's add moved the shared handle on during the read
            snap = self._vectors(before)
            if snap.version == before:
                break
        allowed = np.zeros(len(snap.ids), dtype=bool)
        found = pc.index_in(data["id"], value_set=snap.rows["id"].combine_chunks()).to_numpy(zero_copy_only=False)
        allowed[found[~np.isnan(found)].astype(np.int64) if found.dtype.kind == "f" else found] = True
        return snap, allowed

    def _vectors(self, version: int) -> _Snapshot:
        """The table's vectors in memory, re-read when the table has a newer version; every row's checksum
        is checked as it is read."""
        snap = self._snapshot
        if snap is not None and snap.version >= version:
            return snap
        self._snapshot = None  # free the old copy before reading the new one
        tbl, layout = self._tbl(), self._layout
        meta_columns = layout.meta_columns
        columns = ["id", "item", *meta_columns, "vector", *(["rescore"] if layout.rescore else []),
                   *([_CHECKSUM] if layout.checked else [])]
        with self._guard("reading its vectors"):
            while True:  # another thread's add may move the shared table handle on during the read: label it right
                before = tbl.version
                data = tbl.search().select(columns).limit(None).to_arrow()
                if tbl.version == before:
                    break
        vectors = _matrix(data["vector"], {"float32": np.float32, "int8": np.int8, "binary": np.uint8}[
            layout.precision])
        extra = _matrix(data["rescore"], np.int8 if layout.rescore == "int8" else np.float32) \
            if layout.rescore else None
        ids = _ids_array(data["id"])
        if layout.checked:
            self._check_rows(ids, data["item"].to_pylist(), self._meta_json(data), vectors,
                             data[_CHECKSUM].to_numpy(), extra)
        rows = data.select(["id", "item", *meta_columns]).combine_chunks()
        self._snapshot = snap = _Snapshot(before, ids, _order(data["id"], ids), vectors, rows, rescore=extra)
        return snap

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

    def verify(self) -> int:
        """Read every row and check it against its checksum, and that no id is there twice; returns the row
        count, or raises CollectionCorruptError naming the collection and the damaged rows' ids."""
        tbl = self._tbl()
        if tbl is None:
            return 0
        version, _, index_type = self._latest()
        self._snapshot = None  # read the files afresh: they may have changed since the last search
        snap = self._vectors(version)
        ids = np.sort(snap.ids)
        if len(ids) > 1 and (ids[1:] == ids[:-1]).any():
            dup = ids[1:][ids[1:] == ids[:-1]]
            raise self._corrupt(f"some ids are there more than once: {dup[:10].tolist()}", ids=dup)
        if index_type and len(snap.ids):
            with self._guard("searching its index"):
                tbl.search(snap.vectors[0]).distance_type("cosine").limit(1).nprobes(1).select(["id"]).to_arrow()
        return len(ids)

    def _scan(self, q: np.ndarray, k: int, snap: _Snapshot, allowed: np.ndarray | None):
        """Exact search of a quantized collection: the float query against every (allowed) row's int8 codes,
        or in a binary collection its rescore vector or its bits unpacked to +-1."""
        dim, layout = self.dim, self._layout
        if layout.precision == "int8":
            def block(s: int, e: int) -> np.ndarray:
                return snap.vectors[s:e].astype(np.float32)
        elif snap.rescore is not None:
            def block(s: int, e: int) -> np.ndarray:
                return np.asarray(snap.rescore[s:e], dtype=np.float32)
        else:
            def block(s: int, e: int) -> np.ndarray:
                return _signs(snap.vectors[s:e], dim)
        top, scores = _scan_topk(q, len(snap.ids), k, block, snap.order, allowed)
        if layout.precision == "binary" and snap.rescore is None:
            scores = scores / np.float32(math.sqrt(dim))
        return np.repeat(np.arange(len(q)), top.shape[1]), top.ravel(), scores.ravel()

    def _binary(self, q: np.ndarray, k: int, snap: _Snapshot, allowed: np.ndarray | None, multiplier: int):
        """Hamming distance between the query's sign bits and every (allowed) row's bits, then the
        ``multiplier * k`` nearest rescored with the float query; the best k by the rescored score."""
        dim = self.dim
        subset = np.flatnonzero(allowed) if allowed is not None else None
        bits = snap.vectors if subset is None else snap.vectors[subset]
        words = None
        if _faiss() is None:  # numpy's scan runs over the bits as 64-bit words: made once per snapshot
            if snap.words is None:
                snap.words = _words(snap.vectors)
            words = snap.words if subset is None else np.ascontiguousarray(snap.words[:, subset])
        cand, _ = hamming_topk(np.packbits(q > 0, axis=1), bits, multiplier * k, words=words)
        if subset is not None:
            cand = subset[cand]
        m, c = cand.shape
        if not c:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        scores = np.empty((m, c), dtype=np.float32)
        step = max(1, _BLOCK_FLOATS // 4 // (c * dim))
        for s in range(0, m, step):
            rows = cand[s:s + step]
            if snap.rescore is not None:
                vecs = np.asarray(snap.rescore[rows], dtype=np.float32)
            else:
                vecs = _signs(snap.vectors[rows.ravel()], dim).reshape(len(rows), c, dim)
            scores[s:s + step] = np.matmul(vecs, q[s:s + step, :, None])[..., 0]
        if snap.rescore is None:
            scores /= np.float32(math.sqrt(dim))
        kk = min(k, c)
        order = np.lexsort((snap.order[cand], -scores), axis=-1)[:, :kk]
        top = np.take_along_axis(cand, order, axis=1)
        return np.repeat(np.arange(m), kk), top.ravel(), np.take_along_axis(scores, order, axis=1).ravel()

    def probes(self) -> int:
        """The number of IVF partitions an ANN search visits (see ``nprobes``)."""
        return self.nprobes or max(20, math.ceil(math.sqrt(len(self)) / 10))

    def _ann(self, q: np.ndarray, k: int, index_type: str, where: str | None, stitch: str | None) -> SearchResults:
        """The index's hits with their rows, each checked against its checksum."""
        tbl, layout = self._tbl(), self._layout
        search = tbl.search(q if len(q) > 1 else q[0]).distance_type("cosine").limit(k).nprobes(self.probes())
        if where is not None:
            search = search.where(where, prefilter=True)
        if self.refine_factor and "pq" in index_type.lower():
            search = search.refine_factor(self.refine_factor)
        columns = ["id", "item", *layout.meta_columns] + (["vector", _CHECKSUM] if layout.checked else [])
        with self._guard("searching its index", where):
            data = search.select(columns).to_arrow()
        qi = data["query_index"].to_numpy() if "query_index" in data.column_names else np.zeros(data.num_rows, int)
        scores = 1.0 - data["_distance"].to_numpy().astype(np.float64)
        if layout.checked:
            self._check_rows(_ids_array(data["id"]), data["item"].to_pylist(), self._meta_json(data),
                             _matrix(data["vector"], np.float32), data[_CHECKSUM].to_numpy())
        ids = data["id"].to_pylist()
        order = sorted(range(len(ids)), key=lambda i: (qi[i], -scores[i], ids[i]))  # per query: best first, ties by id
        return self._hits(len(q), qi[order], data.take(order), scores[order], stitch, exact=False)

    def _hits_at(self, m: int, qi, positions, scores, snap: _Snapshot, stitch: str | None, exact: bool):
        return self._hits(m, qi, snap.rows.take(np.asarray(positions, dtype=np.int64)), scores, stitch, exact)

    def _hits(self, m: int, qi, table, scores, stitch: str | None, exact: bool) -> SearchResults:
        out: list[list[Hit]] = [[] for _ in range(m)]
        rows = zip(np.asarray(qi).tolist(), table["id"].to_pylist(), table["item"].to_pylist(),
                   self._meta_dicts(table), np.asarray(scores).tolist(), strict=True)
        for i, row_id, item, meta, score in rows:
            out[i].append(Hit(row_id, item, float(score), meta, stitch))
        return SearchResults(out, stitch=stitch, exact=exact)


def exact_topk(q: np.ndarray, x: np.ndarray, k: int, *, tiebreak: np.ndarray | None = None,
               mask: np.ndarray | None = None):
    """Exact top-k rows of ``x`` by dot product with each row of ``q``: (positions (m, k'), scores (m, k')).

    Blocks of queries keep the score matrix under _BLOCK_FLOATS floats; ``argpartition`` picks each
    row's k best, which are then sorted by score (ties by ``tiebreak``, default the position). ``mask``
    (bool per row of ``x``) leaves out the rows where it is False.
    """
    n = len(x)
    k = min(k, n if mask is None else int(np.count_nonzero(mask)))
    tiebreak = np.arange(n) if tiebreak is None else tiebreak
    top = np.empty((len(q), k), dtype=np.int64)
    scores = np.empty((len(q), k), dtype=np.float32)
    if not k:
        return top, scores
    hidden = np.flatnonzero(~mask) if mask is not None else None
    step = max(1, _BLOCK_FLOATS // max(n, 1))
    for s in range(0, len(q), step):
        block = q[s:s + step] @ x.T
        if hidden is not None and len(hidden):
            block[:, hidden] = -np.inf
        part = np.argpartition(block, n - k, axis=1)[:, n - k:]  # the k best, unordered, at the end
        part_scores = np.take_along_axis(block, part, axis=1)
        order = np.lexsort((tiebreak[part], -part_scores), axis=-1)
        top[s:s + step] = np.take_along_axis(part, order, axis=1)
        scores[s:s + step] = np.take_along_axis(part_scores, order, axis=1)
    return top, scores


def _scan_topk(q: np.ndarray, n: int, k: int, block: Callable[[int, int], np.ndarray], tiebreak: np.ndarray,
               mask: np.ndarray | None):
    """exact_topk over rows made float32 a block at a time by ``block(start, stop)``, the blocks' bests merged."""
    tops, scores = [], []
    for s in range(0, n, _SCAN_ROWS):
        e = min(n, s + _SCAN_ROWS)
        top, sc = exact_topk(q, block(s, e), k, tiebreak=tiebreak[s:e], mask=None if mask is None else mask[s:e])
        tops.append(top + s)
        scores.append(sc)
    top = np.concatenate(tops, axis=1) if tops else np.zeros((len(q), 0), np.int64)
    sc = np.concatenate(scores, axis=1) if scores else np.zeros((len(q), 0), np.float32)
    order = np.lexsort((tiebreak[top], -sc), axis=-1)[:, :k]
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(sc, order, axis=1)


def hamming_topk(queries: np.ndarray, bits: np.ndarray, c: int, *,
                 words: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``c`` rows nearest each query by Hamming distance: (positions (m, c'), distances (m, c')).

    ``queries``: (m, b) uint8, each query's packed bits; ``bits``: (n, b) uint8, the rows' packed bits.
    Ties go to the lower position; c' is min(c, n). With faiss installed (``pip install faiss-cpu``, part
    of the ``store`` extra) its popcount kernel scans the rows; without it numpy does, over ``words``
    (``_words(bits)``, computed here when not given). Either way row ranges are scanned on a thread pool
    when there are fewer queries than threads (both release the GIL in their loops).
    """
    m, n = len(queries), len(bits)
    c = min(int(c), n)
    if not c or not m:
        return np.zeros((m, 0), np.int64), np.zeros((m, 0), np.uint16)
    faiss = _faiss()
    if faiss is not None:
        threads = 1 if m >= _threads() else min(_threads(), max(1, n // (1 << 16)))
        queries = np.ascontiguousarray(queries, dtype=np.uint8)

        def scan(start: int, stop: int):
            dist, pos = faiss.knn_hamming(queries, np.ascontiguousarray(bits[start:stop]), min(c, stop - start))
            return np.repeat(np.arange(m), pos.shape[1]), pos.ravel() + start, dist.ravel().astype(np.uint16)
    else:
        if words is None:
            words = _words(bits)
        qwords = _words(queries).T.copy()
        threads = min(_threads(), max(1, n // (1 << 16)))

        def scan(start: int, stop: int):
            return _hamming_range(qwords, words, start, stop, c)
    bounds = np.linspace(0, n, threads + 1).astype(np.int64)
    if threads == 1:
        parts = [scan(0, n)]
    else:
        parts = list(_thread_pool().map(lambda r: scan(int(r[0]), int(r[1])),
                                        zip(bounds[:-1], bounds[1:], strict=True)))
    qi, pos, dist = (np.concatenate(arrays) for arrays in zip(*parts, strict=True))
    qi, pos, dist = _keep_nearest(qi, pos, dist, c, m)
    return pos.reshape(m, c), dist.reshape(m, c)


def _faiss():
    """The faiss module, or None where it is not installed (the Hamming scan then runs on numpy)."""
    global _faiss_module
    if _faiss_module is None:
        try:
            import faiss
        except ImportError:
            faiss = False
        _faiss_module = faiss
    return _faiss_module or None


def _hamming_range(qwords: np.ndarray, words: np.ndarray, start: int, stop: int, c: int):
    """(query, position, distance) of each query's ``c`` nearest rows in [start, stop) (all of them where the
    range has fewer), by (distance, position). Rows go a block at a time (its words stay in cache) and within
    a block one query at a time: numpy's loops over one contiguous row of words with a scalar are the fastest
    it has. A query keeps the rows within its bound: its c-th nearest distance so far."""
    m, nwords = qwords.shape
    xor = np.empty(_HAMMING_ROWS, dtype=np.uint64)
    bits = np.empty(_HAMMING_ROWS, dtype=np.uint8)
    dist = np.empty(_HAMMING_ROWS, dtype=np.uint16)
    scalars = [[qwords.dtype.type(v) for v in row] for row in qwords]
    limit = [None] * m  # a query's bound: rows farther than it cannot be among its c nearest
    closed = [False] * m  # the query holds c rows at distance 0 before this block: nothing later can enter
    found_pos: list[list[np.ndarray]] = [[] for _ in range(m)]
    found_dist: list[list[np.ndarray]] = [[] for _ in range(m)]
    held = [0] * m
    for s in range(start, stop, _HAMMING_ROWS):
        e = min(stop, s + _HAMMING_ROWS)
        x, b, d = xor[:e - s], bits[:e - s], dist[:e - s]
        rows = [words[w, s:e] for w in range(nwords)]
        for i in range(m):
            if closed[i]:
                continue
            for w in range(nwords):
                np.bitwise_xor(rows[w], scalars[i][w], out=x)
                np.bitwise_count(x, out=b)
                if w:
                    np.add(d, b, out=d)
                else:
                    np.copyto(d, b)
            if limit[i] is None and e - s >= c:
                limit[i] = int(np.partition(d, c - 1)[c - 1])
            hit = np.flatnonzero(d <= limit[i]) if limit[i] is not None else np.arange(e - s)
            if not len(hit):
                continue
            found_pos[i].append(hit + s)
            found_dist[i].append(d[hit])
            held[i] += len(hit)
            if held[i] > max(4 * c, 4096):
                pos, dd = _nearest(np.concatenate(found_pos[i]), np.concatenate(found_dist[i]), c)
                found_pos[i], found_dist[i], held[i] = [pos], [dd], len(pos)
                # later rows have larger positions: a tie with the c-th nearest cannot displace it
                closed[i] = dd[-1] == 0
                limit[i] = int(dd[-1]) - 1
    qi, pos, dd = [], [], []
    for i in range(m):
        if held[i]:
            p, d = _nearest(np.concatenate(found_pos[i]), np.concatenate(found_dist[i]), c)
            qi.append(np.full(len(p), i, dtype=np.int64))
            pos.append(p)
            dd.append(d)
    if not qi:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint16)
    return np.concatenate(qi), np.concatenate(pos), np.concatenate(dd)


def _nearest(pos: np.ndarray, dist: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``c`` of (position, distance) pairs by (distance, position)."""
    order = np.lexsort((pos, dist))[:c]
    return pos[order], dist[order]


def _keep_nearest(qi, pos, dist, c: int, m: int):
    """Each query's first ``c`` entries by (distance, position), sorted by query."""
    order = np.lexsort((pos, dist, qi))
    qi, pos, dist = qi[order], pos[order], dist[order]
    keep = np.arange(len(qi)) - np.searchsorted(qi, np.arange(m))[qi] < c
    return qi[keep], pos[keep], dist[keep]


def _threads() -> int:
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except (AttributeError, OSError):
        return max(1, min(8, os.cpu_count() or 1))


def _thread_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_guard:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_threads(), thread_name_prefix="zoo-hamming",
                                       initializer=_one_omp_thread)
        return _pool


def _one_omp_thread() -> None:
    """Each pool thread scans its own rows: faiss's OpenMP team inside it would only contend with the
    others for the cores (a 1M-row scan on 2 cores went from 5.4 to 3.3 ms)."""
    faiss = _faiss()
    if faiss is not None:
        faiss.omp_set_num_threads(1)


def _words(packed: np.ndarray) -> np.ndarray:
    """Packed bits (n, bytes) as (words, n) uint64: zero bytes pad each row to whole words."""
    n, width = packed.shape
    nwords = max(1, -(-width // 8))
    padded = np.zeros((n, nwords * 8), dtype=np.uint8)
    padded[:, :width] = packed
    return np.ascontiguousarray(padded.view("<u8").T)


def _signs(packed: np.ndarray, dim: int) -> np.ndarray:
    """Packed bits as float32 +-1 vectors of ``dim`` entries."""
    out = np.unpackbits(packed, axis=-1, count=dim).astype(np.float32)
    out *= 2
    out -= 1
    return out


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


# -- input checks ---------------------------------------------------------------------------------------------
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
