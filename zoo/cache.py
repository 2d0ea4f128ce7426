"""A content-addressed embedding cache: the same content in the same space is embedded once.

A cached vector's key is the sha256 of the item's content (a text's UTF-8 bytes, a file's
bytes, an array's dtype, shape and bytes...) together with the *space fingerprint* of the call:
the model's name and card (weights pins, revision, preprocessing options, pooling), the
instruction or prompt, the modality, normalization, ``dim`` and ``precision``. Change any of
them and the cache misses; a path whose file changed misses too, because files are keyed by
their bytes, not their names.

Entries live in one SQLite file (stdlib ``sqlite3``, write-ahead log). Every batch of new
entries is one transaction, so a process killed mid-write leaves the earlier entries intact
and no partial one. Use it with ``embed(..., cache=EmbeddingCache(path))``; dataset jobs and
the demo gallery use it by default.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import InvalidInputError

_SCHEMA = "CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, dtype TEXT NOT NULL, vector BLOB NOT NULL)"


def content_key(item: Any) -> str:
    """sha256 hex of an item's content; the same content gives the same key whatever its form."""
    h = hashlib.sha256()
    _feed(h, item)
    return h.hexdigest()


def _feed(h, item: Any) -> None:
    if isinstance(item, str):
        h.update(b"text\0" + item.encode("utf-8"))
    elif isinstance(item, os.PathLike):
        h.update(b"file\0")
        with open(item, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    elif isinstance(item, (bytes, bytearray, memoryview)):
        h.update(b"file\0" + bytes(item))  # raw bytes are a file's content
    elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], int):
        h.update(b"wave\0" + str(item[1]).encode())
        _feed(h, np.asarray(item[0]))
    elif isinstance(item, dict):
        h.update(b"dict\0")
        for k in sorted(item):
            h.update(str(k).encode() + b"\0")
            _feed(h, item[k])
    elif type(item).__module__.startswith("PIL."):
        h.update(b"pil\0" + f"{item.mode}{item.size}".encode() + item.tobytes())
    elif hasattr(item, "shape") and hasattr(item, "dtype"):
        a = np.ascontiguousarray(item.detach().cpu().numpy() if hasattr(item, "detach") else item)
        h.update(b"array\0" + f"{a.dtype.str}{a.shape}".encode() + a.tobytes())
    else:
        raise InvalidInputError(f"cannot key {type(item).__name__} items for the embedding cache")


def space_fingerprint(model, **call: Any) -> str:
    """sha256 hex of everything besides the content that decides a vector: model, card and call options."""
    card = model.card
    facts = {
        "model": card.name,
        "card": card.to_dict() | {"path": ""},  # the card's whole content: sources, pins, options, pooling
        "revision": getattr(model.resolved, "revision", ""),
        "origin": getattr(model.resolved, "origin", ""),
        "call": call,
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()


class EmbeddingCache:
    """Vectors by (content, space fingerprint), in a SQLite file that survives crashes.

    Args:
        path: the database file (created with its folder).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self.hits = self.misses = 0

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.path)!r}, entries={len(self)})"

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def key(content: str, fingerprint: str) -> str:
        return hashlib.sha256(f"{fingerprint}:{content}".encode()).hexdigest()

    def get_many(self, keys: list[str]) -> dict[str, np.ndarray]:
        """The cached vectors of those keys that have one."""
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                rows = self._db.execute(f"SELECT key, dtype, vector FROM entries WHERE key IN "
                                        f"({','.join('?' * len(chunk))})", chunk).fetchall()
                for key, dtype, blob in rows:
                    found[key] = np.frombuffer(blob, dtype=np.dtype(dtype)).copy()
        return found

    def put_many(self, entries: Iterable[tuple[str, np.ndarray]]) -> None:
        """Store vectors, all in one transaction (all of them are written, or none)."""
        rows = [(k, np.asarray(v).dtype.str, np.ascontiguousarray(v).tobytes()) for k, v in entries]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?)", rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
