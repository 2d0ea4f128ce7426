"""What the store gives back: the hits of a search, one list of them per query, and the error that names a
damaged collection."""

from __future__ import annotations

from dataclasses import dataclass, field

from zoo.errors import IntegrityError


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


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result: the row's id, its item, its score against the query, its metadata.

    ``score`` is the cosine similarity in float collections; see the docstring of zoo.data.store for quantized ones.
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
