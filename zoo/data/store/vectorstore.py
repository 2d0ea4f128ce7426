"""``VectorStore``: a folder of collections, each opened (or started) by name."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from zoo.data.store.collection import Collection
from zoo.errors import InvalidInputError, require

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


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
