"""``Collection``: one collection of a VectorStore, with its public methods (add, delete, rows, create_index,
search, verify); the machinery under them lives in ``_table``, ``_adding`` and ``_searching``."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np

from zoo.data.store._adding import _Adding
from zoo.data.store._layout import _META_DIM, _META_NEXT_ID, _META_SPACE, _Layout, _Snapshot
from zoo.data.store._searching import _Searching
from zoo.data.store._table import _Table, _thread_lock
from zoo.data.store.checks import (
    _check_where,
    _float_rows,
    _items,
    _kind_of_ids,
    _rescore_vectors,
    _row_ids,
    _sql_literal,
    _stored_vectors,
    _unit_rows,
)
from zoo.data.store.kernels import exact_topk
from zoo.data.store.results import SearchResults
from zoo.embeddings import Embeddings
from zoo.errors import InvalidInputError, SpaceMismatchError

if TYPE_CHECKING:
    from zoo.data.store.vectorstore import VectorStore

ANN_THRESHOLD = 50_000
"""Collections with fewer rows are always searched exactly; at or above it an index is used when built."""


class Collection(_Searching, _Adding, _Table):
    """Vectors of one embedding space with their items and metadata; see the docstring of zoo.data.store."""

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

    def probes(self) -> int:
        """The number of IVF partitions an ANN search visits (see ``nprobes``)."""
        return self.nprobes or max(20, math.ceil(math.sqrt(len(self)) / 10))
