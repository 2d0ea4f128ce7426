"""The machinery behind ``Collection.search``: a query mapped into the collection's space, the table's
vectors held in memory per version (each row checked against its checksum), the ``where=`` mask, the scans of
int8 and binary collections, the ANN index's hits, and the hits built from the rows."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from zoo.data.store import kernels
from zoo.data.store._layout import _CHECKSUM, _Snapshot
from zoo.data.store.kernels import _BLOCK_FLOATS, _scan_topk, _signs, _words, hamming_topk
from zoo.data.store.results import Hit, SearchResults
from zoo.data.store.rows import _ids_array, _matrix, _order
from zoo.embeddings import Embeddings
from zoo.errors import SpaceMismatchError


class _Searching:
    """Collection's reading and searching machinery (a mixin: it works on the Collection's own attributes)."""

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
        if kernels._faiss() is None:  # numpy's scan runs over the bits as 64-bit words: made once per snapshot
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
