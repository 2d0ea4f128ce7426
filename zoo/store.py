"""A vector store for zoo embeddings: named collections on disk, searched by cosine similarity.

Storage is LanceDB (the ``store`` extra), embedded: a folder on disk, no server. Each
collection is one LanceDB table with the columns

- ``id`` (int64): stable row ids, 0, 1, 2, ... in insertion order (rows are never deleted);
- ``item`` (string): the path or text the vector was made from;
- ``metadata`` (string): the row's metadata dict as JSON;
- ``vector`` (fixed-size list of float32): the vector, L2-normalized on ``add``, so that the
  cosine of two rows is their dot product (cosine is all this store answers);
- ``checksum`` (int64): CRC-32 of the row's id, vector, item and metadata, checked on every row
  that exact search loads, on every hit of an ANN search and by :meth:`Collection.verify`
  (collections made before this column existed are read without the check).

Writers are serialized per collection: a thread lock within the process and, on POSIX, an
``fcntl.flock`` on ``.zoo-locks/<name>.lock`` in the store folder across processes, held while
``add`` creates or opens the table, allocates the next ids (the latest row count) and commits
the rows. LanceDB commits an append atomically (a new manifest), so a writer killed at any point
leaves either all of an ``add``'s rows or none, and the kernel releases its lock. Damaged files
(bytes changed, a file cut short) surface as :class:`CollectionCorruptError` naming the
collection instead of as wrong hits (a CRC-32 per row: damage that keeps it matching is a 1 in
2^32 chance; damage in an ANN index file can still lose recall unnoticed); other collections
live in their own folders and are not affected. Durability is LanceDB's: no fsync is forced, so
a power cut or OS crash (unlike a killed process) may lose the last commits.

The table's schema metadata records the embedding space id (and the model and dim that made
the first rows). Vectors compare only within one space: adding rows of another space is
refused, and so is a query from another space, unless a registered stitch
(:mod:`zoo.stitching`) maps the query's space into the collection's; the result then names
the stitch it used.

Two ways to search, chosen per call:

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
"""

from __future__ import annotations

import json
import math
import re
import threading
import zlib
from collections.abc import Iterator
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

__all__ = ["ANN_THRESHOLD", "Collection", "CollectionCorruptError", "Hit", "SearchResults", "VectorStore"]

ANN_THRESHOLD = 50_000
"""Collections with fewer rows are always searched exactly; at or above it an index is used when built."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_META_SPACE, _META_MODEL, _META_DIM = b"zoo.space", b"zoo.model", b"zoo.dim"
_BLOCK_FLOATS = 1 << 25  # scores held at once by exact search: 128 MB of float32
_LOCK_DIR = ".zoo-locks"  # in the store folder: one lock file per collection (LanceDB lists only *.lance)
_CHECKSUM = "checksum"
_thread_locks: dict[tuple[str, str], threading.Lock] = {}
_thread_locks_guard = threading.Lock()


class CollectionCorruptError(IntegrityError):
    """A collection whose files on disk are damaged: unreadable, or rows that fail their checksum.

    Attributes:
        collection: the collection's name.
        ids: ids of the rows found damaged (empty when the files could not be read at all).
    """

    def __init__(self, message: str, *, collection: str, ids=(), path: str | None = None):
        self.collection = collection
        self.ids = [int(i) for i in ids]
        super().__init__(message, path=path)


def _thread_lock(path: Path, name: str) -> threading.Lock:
    """One lock per (store folder, collection) in this process, shared by every Collection object."""
    key = (str(path.resolve()), name)
    with _thread_locks_guard:
        return _thread_locks.setdefault(key, threading.Lock())


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result: the row's stable id, its item, its cosine similarity to the query, its metadata."""

    id: int
    item: str
    score: float
    metadata: dict = field(default_factory=dict)
    stitch: str | None = None  # the stitch that mapped the query into the collection's space, if any


class SearchResults(list):
    """One list of Hits per query, best first; says how the search ran.

    Attributes:
        stitch: name of the registered stitch that mapped the queries into the collection's space, or None.
        exact: True for exact search, False when the ANN index answered.
    """

    def __init__(self, hits=(), *, stitch: str | None = None, exact: bool = True):
        super().__init__(hits)
        self.stitch = stitch
        self.exact = exact


@dataclass
class _Snapshot:
    """One table version in memory, in scan order: row ids, unit vectors, and items and metadata as Arrow
    columns (compact; a hit's row is a take from them instead of a read from disk)."""

    version: int
    ids: np.ndarray
    vectors: np.ndarray
    rows: Any  # pyarrow Table of id, item, metadata

    def __post_init__(self) -> None:
        self.by_position = bool(np.array_equal(self.ids, np.arange(len(self.ids))))  # as ``add`` numbers rows

    def take(self, ids: np.ndarray) -> dict[int, tuple[str, str]] | None:
        """id -> (item, metadata JSON), or None unless the ids are the row positions."""
        if not self.by_position:
            return None
        got = self.rows.take(ids)
        return dict(zip(got["id"].to_pylist(), zip(got["item"].to_pylist(), got["metadata"].to_pylist(),
                                                   strict=True), strict=True))


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

    def __init__(self, store: VectorStore, name: str):
        self.store, self.name = store, name
        self._table = None
        self._schema_meta: dict[bytes, bytes] | None = None  # set when the table is created; never changes
        self._facts: tuple[int, int, str | None] | None = None  # (version, rows, index type) of the latest read
        self._snapshot: _Snapshot | None = None
        self._checked = True  # whether the table has the checksum column (set when it is opened)
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
                names = tbl.schema.names
                missing = {"id", "item", "metadata", "vector"} - set(names)
                if missing:
                    raise self._corrupt(f"its table lacks the columns {sorted(missing)}")
                self._checked = _CHECKSUM in names
                self._table = tbl
        return self._table

    def _corrupt(self, what: str, ids=()) -> CollectionCorruptError:
        return CollectionCorruptError(
            f"collection {self.name!r} in {str(self.store.path)!r} is damaged: {what}. Other collections are not "
            f"affected; drop and rebuild this one, or restore its folder {self.name}.lance from a backup",
            collection=self.name, ids=ids, path=f"{self.name}.lance")

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Turn LanceDB's errors on reading damaged files into CollectionCorruptError naming the collection."""
        try:
            yield
        except (ZooError, KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError):
            raise
        except BaseException as exc:  # lance raises OSError / RuntimeError / ValueError, or a Rust panic
            raise self._corrupt(f"{action} failed: {type(exc).__name__}: {exc}") from exc

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

    def __len__(self) -> int:
        return self._latest()[1]

    def __repr__(self) -> str:
        return f"Collection({self.name!r}, rows={len(self)}, space={self.space!r}, indexed={self.indexed})"

    # -- adding ------------------------------------------------------------------------------------------------
    def add(self, embeddings: Embeddings, items: list[str], metadata: list[dict] | None = None) -> list[int]:
        """Append rows; returns their ids. Row i is ``embeddings`` row i, ``items[i]``, ``metadata[i]``."""
        if not isinstance(embeddings, Embeddings):
            raise InvalidInputError("add needs zoo Embeddings (they carry the space id), not "
                                    f"{type(embeddings).__name__}")
        vectors = _unit_rows(_float_rows(embeddings, "embeddings"), "embeddings")
        items = _items(items, len(vectors))
        metas = _metadata(metadata, len(vectors))
        with self._writing():  # no other thread or process allocates ids or commits rows until this one has
            start = self._append(embeddings, items, metas, vectors)
        return list(range(start, start + len(vectors)))

    def _append(self, embeddings: Embeddings, items: list[str], metas: list[str], vectors: np.ndarray) -> int:
        """Commit the rows under the write lock; returns the first id. Ids continue from the latest row count."""
        n = len(vectors)
        if self._table is not None and self.name not in self.store._table_names():
            self._table, self._schema_meta, self._facts, self._snapshot = None, None, None, None  # dropped
        for attempt in range(2):
            tbl = self._tbl()
            if tbl is not None:
                self._check_space(embeddings.space, "add")
                self._check_dim(vectors.shape[1], "embeddings")
                start = self._latest()[1]
                if n:
                    tbl.add(_arrow_rows(np.arange(start, start + n, dtype=np.int64), items, metas, vectors,
                                        checksums=self._checked))
                return start
            data = _arrow_rows(np.arange(n, dtype=np.int64), items, metas, vectors)
            schema = data.schema.with_metadata({_META_SPACE: embeddings.space, _META_MODEL: embeddings.model,
                                                _META_DIM: str(vectors.shape[1])})
            try:
                self._table = self.store._db.create_table(self.name, data.cast(schema), schema=schema)
            except ValueError as exc:  # a writer without the file lock (another OS) created it first: open it
                if "already exists" not in str(exc) or attempt:
                    raise
                continue
            self._checked = True
            return 0
        raise AssertionError("unreachable")

    def rows(self) -> list[tuple[int, str, dict]]:
        """Every row's id, item and metadata, in id order (the vectors are left on disk)."""
        if self._tbl() is None:
            return []
        with self._guard("reading its rows"):
            data = self._tbl().search().select(["id", "item", "metadata"]).limit(None).to_arrow()
        rows = zip(data["id"].to_pylist(), data["item"].to_pylist(), data["metadata"].to_pylist(), strict=True)
        return sorted((i, item, json.loads(meta)) for i, item, meta in rows)

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
        once the collection has at least ANN_THRESHOLD rows (or with ``exact=False``).
        """
        from lancedb.index import IvfFlat, IvfPq

        if kind not in ("ivf_flat", "ivf_pq"):
            raise InvalidInputError(f"kind must be 'ivf_flat' or 'ivf_pq', not {kind!r}")
        tbl = self._tbl()
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
    def search(self, query: Embeddings | np.ndarray, k: int = 10, *, exact: bool | None = None) -> SearchResults:
        """The ``k`` rows nearest each query row by cosine similarity, best first (ties: lower id first).

        ``query``: Embeddings (of the collection's space, or of a space a registered stitch maps into
        it) or an (m, dim) / (dim,) array taken to be in the collection's space. ``exact``: None picks
        the ANN index when built and the collection has at least ANN_THRESHOLD rows; True / False force.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidInputError(f"k must be a positive int, not {k!r}")
        query, stitch = self._into_space(query)
        q = _unit_rows(_float_rows(query, "query"), "query")
        if self._tbl() is None or not len(q):
            return SearchResults([[] for _ in q], stitch=stitch)
        self._check_dim(q.shape[1], "query vectors")
        version, rows, index_type = self._latest()
        if exact is None:
            exact = not (rows >= ANN_THRESHOLD and index_type)
        elif exact is False and not index_type:
            raise InvalidInputError(f"exact=False needs an index: call create_index() on {self.name!r} first")
        qi, ids, scores, rows = self._exact(q, k, version) if exact else self._ann(q, k, index_type)
        return self._hits(len(q), qi, ids, scores, rows, stitch, exact)

    def _into_space(self, query) -> tuple[Any, str | None]:
        """The query in the collection's space, and the name of the stitch that put it there (or None)."""
        space = self.space
        if not isinstance(query, Embeddings) or space is None or query.space == space:
            return query, None
        from zoo import stitching

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

    def _vectors(self, version: int) -> _Snapshot:
        """The table's unit vectors in memory, re-read when the table has a newer version; every row's checksum
        is checked as it is read."""
        snap = self._snapshot
        if snap is not None and snap.version >= version:
            return snap
        self._snapshot = None  # free the old copy before reading the new one
        tbl = self._tbl()
        columns = ["id", "item", "metadata", "vector"] + ([_CHECKSUM] if self._checked else [])
        with self._guard("reading its vectors"):
            while True:  # another thread's add may move the shared table handle on during the read: label it right
                before = tbl.version
                data = tbl.search().select(columns).limit(None).to_arrow()
                if tbl.version == before:
                    break
        flat = data["vector"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
        vectors = np.ascontiguousarray(flat, dtype=np.float32).reshape(data.num_rows, -1)
        ids = data["id"].to_numpy()
        if self._checked:
            self._check_rows(ids, data["item"].to_pylist(), data["metadata"].to_pylist(), vectors,
                             data[_CHECKSUM].to_numpy())
        rows = data.select(["id", "item", "metadata"]).combine_chunks()
        self._snapshot = snap = _Snapshot(before, ids, vectors, rows)
        return snap

    def _check_rows(self, ids, items, metas, vectors, stored) -> None:
        bad = np.flatnonzero(_checksums(ids, items, metas, vectors) != stored)
        if len(bad):
            raise self._corrupt(f"{len(bad)} row(s) fail their checksum (ids {ids[bad[:10]].tolist()}"
                                f"{', ...' if len(bad) > 10 else ''})", ids=ids[bad])

    def verify(self) -> int:
        """Read every row and check it against its checksum, and the ids (0 .. rows-1, each once); returns the
        row count, or raises CollectionCorruptError naming the collection and the damaged rows' ids."""
        tbl = self._tbl()
        if tbl is None:
            return 0
        version, _, index_type = self._latest()
        self._snapshot = None  # read the files afresh: they may have changed since the last search
        snap = self._vectors(version)
        ids = np.sort(snap.ids)
        if not np.array_equal(ids, np.arange(len(ids))):
            dup = ids[1:][ids[1:] == ids[:-1]]
            raise self._corrupt(f"its ids are not 0 .. {len(ids) - 1}, each once (repeated: {dup[:10].tolist()})",
                                ids=dup)
        if index_type and len(snap.ids):
            with self._guard("searching its index"):
                tbl.search(snap.vectors[0]).distance_type("cosine").limit(1).nprobes(1).select(["id"]).to_arrow()
        return len(ids)

    def _exact(self, q: np.ndarray, k: int, version: int):
        snap = self._vectors(version)
        top, scores = exact_topk(q, snap.vectors, k, tiebreak=snap.ids)
        ids = snap.ids[top].ravel()
        rows = snap.take(np.unique(ids))
        if rows is None:
            rows = self._rows(np.unique(ids))
        return np.repeat(np.arange(len(q)), top.shape[1]), ids, scores.ravel(), rows

    def probes(self) -> int:
        """The number of IVF partitions an ANN search visits (see ``nprobes``)."""
        return self.nprobes or max(20, math.ceil(math.sqrt(len(self)) / 10))

    def _ann(self, q: np.ndarray, k: int, index_type: str):
        """The index's hits with their rows, each checked against its checksum."""
        tbl = self._tbl()
        search = tbl.search(q if len(q) > 1 else q[0]).distance_type("cosine").limit(k).nprobes(self.probes())
        if self.refine_factor and "pq" in index_type.lower():
            search = search.refine_factor(self.refine_factor)
        columns = ["id", "item", "metadata"] + (["vector", _CHECKSUM] if self._checked else [])
        with self._guard("searching its index"):
            data = search.select(columns).to_arrow()
        qi = data["query_index"].to_numpy() if "query_index" in data.column_names else np.zeros(data.num_rows, int)
        ids, scores = data["id"].to_numpy(), 1.0 - data["_distance"].to_numpy().astype(np.float64)
        items, metas = data["item"].to_pylist(), data["metadata"].to_pylist()
        if self._checked:
            flat = data["vector"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
            self._check_rows(ids, items, metas, np.asarray(flat, dtype=np.float32).reshape(data.num_rows, -1),
                             data[_CHECKSUM].to_numpy())
        rows = dict(zip(ids.tolist(), zip(items, metas, strict=True), strict=True))
        order = np.lexsort((ids, -scores, qi))  # per query: best first, ties by id
        return qi[order], ids[order], scores[order], rows

    def _hits(self, m: int, qi, ids, scores, rows, stitch: str | None, exact: bool) -> SearchResults:
        out: list[list[Hit]] = [[] for _ in range(m)]
        for i, row_id, score in zip(qi.tolist(), ids.tolist(), scores.tolist(), strict=True):
            item, meta = rows[row_id]
            out[i].append(Hit(row_id, item, float(score), json.loads(meta) if meta != "{}" else {}, stitch))
        return SearchResults(out, stitch=stitch, exact=exact)

    def _rows(self, ids: np.ndarray) -> dict[int, tuple[str, str]]:
        """id -> (item, metadata JSON) for the given ids, read from disk (when the snapshot's ids are not its
        row positions, which ``add`` never makes): a filter on the id column."""
        if not len(ids):
            return {}
        where = f"id IN ({', '.join(str(int(i)) for i in ids)})"
        with self._guard("reading rows"):
            data = self._tbl().search().where(where).select(["id", "item", "metadata"]).limit(None).to_arrow()
        return dict(zip(data["id"].to_pylist(), zip(data["item"].to_pylist(), data["metadata"].to_pylist(),
                                                     strict=True), strict=True))


def exact_topk(q: np.ndarray, x: np.ndarray, k: int, *, tiebreak: np.ndarray | None = None):
    """Exact top-k rows of ``x`` by dot product with each row of ``q``: (positions (m, k'), scores (m, k')).

    Blocks of queries keep the score matrix under _BLOCK_FLOATS floats; ``argpartition`` picks each
    row's k best, which are then sorted by score (ties by ``tiebreak``, default the position).
    """
    n = len(x)
    k = min(k, n)
    tiebreak = np.arange(n) if tiebreak is None else tiebreak
    top = np.empty((len(q), k), dtype=np.int64)
    scores = np.empty((len(q), k), dtype=np.float32)
    step = max(1, _BLOCK_FLOATS // max(n, 1))
    for s in range(0, len(q), step):
        block = q[s:s + step] @ x.T
        part = np.argpartition(block, n - k, axis=1)[:, n - k:]  # the k best, unordered, at the end
        part_scores = np.take_along_axis(block, part, axis=1)
        order = np.lexsort((tiebreak[part], -part_scores), axis=-1)
        top[s:s + step] = np.take_along_axis(part, order, axis=1)
        scores[s:s + step] = np.take_along_axis(part_scores, order, axis=1)
    return top, scores


# -- input checks ---------------------------------------------------------------------------------------------
def _float_rows(x, what: str) -> np.ndarray:
    """(n, d) float32 rows of Embeddings or an array; quantized Embeddings are refused."""
    if isinstance(x, Embeddings) and x.precision not in ("float32", "float16"):
        raise InvalidInputError(f"{what}: the store keeps float vectors, not precision {x.precision!r}")
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


def _metadata(metadata, n: int) -> list[str]:
    """Each row's metadata as JSON ({} when none is given)."""
    if metadata is None:
        return ["{}"] * n
    if isinstance(metadata, dict) or not hasattr(metadata, "__len__"):
        raise InvalidInputError("metadata must be a list of dicts, one per vector")
    if len(metadata) != n:
        raise InvalidInputError(f"{len(metadata)} metadata dicts for {n} vectors: give one per vector")
    out = []
    for i, meta in enumerate(metadata):
        if not isinstance(meta, dict):
            raise InvalidInputError(f"metadata must be a dict, not {type(meta).__name__}", index=i)
        try:
            out.append(json.dumps(meta, allow_nan=False, sort_keys=True))
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"metadata is not JSON-serializable: {exc}", index=i) from exc
    return out


def _checksums(ids: np.ndarray, items: list[str], metas: list[str], vectors: np.ndarray) -> np.ndarray:
    """Each row's CRC-32 of its id (int64 LE), vector (float32 LE), item (length-prefixed UTF-8), metadata."""
    id_bytes = memoryview(np.ascontiguousarray(ids, dtype="<i8").tobytes())
    vec_bytes = memoryview(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
    width = vectors.shape[1] * 4 if vectors.ndim == 2 else 0
    out = np.empty(len(items), dtype=np.int64)
    crc = zlib.crc32
    for i, (item, meta) in enumerate(zip(items, metas, strict=True)):
        item_b = item.encode()
        c = crc(vec_bytes[i * width:(i + 1) * width], crc(id_bytes[i * 8:i * 8 + 8]))
        out[i] = crc(meta.encode(), crc(item_b, crc(len(item_b).to_bytes(8, "little"), c)))
    return out


def _arrow_rows(ids: np.ndarray, items: list[str], metas: list[str], vectors: np.ndarray, *,
                checksums: bool = True):
    import pyarrow as pa

    flat = pa.array(vectors.ravel(), type=pa.float32())
    columns = {
        "id": pa.array(ids, type=pa.int64()),
        "item": pa.array(items, type=pa.string()),
        "metadata": pa.array(metas, type=pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]),
    }
    if checksums:
        columns[_CHECKSUM] = pa.array(_checksums(ids, items, metas, vectors), type=pa.int64())
    return pa.table(columns)
