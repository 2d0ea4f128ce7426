"""A collection's table as the store's modules share it: the reserved column names and schema metadata keys,
the record of its layout read from the schema, and the record of one table version held in memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

_RESERVED = frozenset({"id", "item", "metadata", "vector", "rescore", "checksum", "query_index"})
_META_SPACE, _META_MODEL, _META_DIM = b"zoo.space", b"zoo.model", b"zoo.dim"
_META_PRECISION, _META_LAYOUT, _META_NEXT_ID = b"zoo.precision", b"zoo.layout", b"zoo.next_id"
_LAYOUT = "2"  # typed metadata columns; collections without zoo.layout keep one JSON metadata column
_CHECKSUM = "checksum"


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
