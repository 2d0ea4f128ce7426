"""The commit behind ``Collection.add``, under the write lock: the first add creates the table (and fixes its
layout), later ones append or upsert in the layout there is; and the next id an add without ``ids=`` gives."""

from __future__ import annotations

import numpy as np

from zoo.data.store._layout import (
    _LAYOUT,
    _META_DIM,
    _META_LAYOUT,
    _META_MODEL,
    _META_NEXT_ID,
    _META_PRECISION,
    _META_SPACE,
    _Layout,
)
from zoo.data.store.checks import _kind_of_ids
from zoo.data.store.rows import _arrow_rows, _infer_keys, _metadata, _typed_metadata
from zoo.embeddings import Embeddings
from zoo.errors import InvalidInputError


class _Adding:
    """Collection's writing machinery (a mixin: it works on the Collection's own attributes)."""

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
