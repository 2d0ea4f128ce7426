"""A content-addressed embedding cache: the same content in the same space is embedded once.

A cached vector's key is the sha256 of the item's content (a text's UTF-8 bytes, a file's
bytes, an array's dtype, shape and bytes...) together with the *space fingerprint* of the call:
the model's name and card (weights pins, revision, preprocessing options, pooling), the
instruction or prompt, the modality, normalization, ``dim`` and ``precision``. Change any of
them and the cache misses; a path whose file changed misses too, because files are keyed by
their bytes, not their names.

Entries live in one SQLite file (stdlib ``sqlite3``, write-ahead log, a busy timeout), which
several processes may read and write at once. Every batch of new entries is one transaction,
so a process killed mid-write leaves the earlier entries intact and no partial one. Use it with
``embed(..., cache=EmbeddingCache(path))``; dataset jobs and the demo gallery use it by default.

A damaged cache never gives a wrong vector and never fails an embed. Every vector is stored with
its dim and a checksum over its key, dtype, dim and bytes; a row that fails the check (or an
older row stored without one) is a miss: it is deleted and recomputed. On open the file gets
``PRAGMA quick_check``; a file that fails it, is not a database, or raises SQLite's "malformed"
error later on is moved aside as ``<name>.corrupt-<UTC time>`` with a :class:`CacheCorruptionWarning`
naming both files, and a fresh cache takes its place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import stat
import threading
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import InvalidInputError
from zoo.inputs.limits import regular_file, shown

# ``entries`` keeps the layout of the first release, so older versions sharing a file still read and write it;
# ``checks`` holds each vector's dim and checksum. A row an older version wrote has no (matching) check: a miss.
_SCHEMA = ("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, dtype TEXT NOT NULL, vector BLOB NOT NULL)",
           "CREATE TABLE IF NOT EXISTS checks (key TEXT PRIMARY KEY, dim INTEGER NOT NULL, checksum BLOB NOT NULL)")
_BUSY_TIMEOUT_S = 60.0  # how long a writer waits for another process's transaction before "database is locked"
_DAMAGED_CODES = (11, 26)  # SQLITE_CORRUPT ("disk image is malformed"), SQLITE_NOTADB ("file is not a database")
_VECTOR_KINDS = "fiu"  # float, signed and unsigned int vectors (float32/16, int8, packed binary)


class CacheCorruptionWarning(RuntimeWarning):
    """A damaged cache file was moved aside, or cached vectors failed their check; they are recomputed."""


def content_key(item: Any, index: int | None = None) -> str:
    """sha256 hex of an item's content; the same content gives the same key whatever its form.

    A path is hashed by its file's bytes; it must name a regular file (a FIFO, a device such as
    ``/dev/zero``, a directory or a symlink to one is refused, never read). Errors are
    InvalidInputError carrying ``index``, the item's position in the caller's list.
    """
    h = hashlib.sha256()
    _feed(h, item, index)
    return h.hexdigest()


def _hash_file(h, path: os.PathLike, index: int | None) -> None:
    regular_file(path, index, what="input")  # refuses FIFOs, devices, directories before anything opens them
    try:  # non-blocking open and fstat: a path swapped for a FIFO since the check neither blocks nor is read
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise InvalidInputError(f"cannot read input file {shown(path)}: {exc.strerror or exc}", index=index) from None
    with open(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise InvalidInputError(f"input path {shown(path)} is not a regular file", index=index)
        try:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        except OSError as exc:
            raise InvalidInputError(f"cannot read input file {shown(path)}: {exc.strerror or exc}",
                                    index=index) from None


def _feed(h, item: Any, index: int | None = None) -> None:
    if isinstance(item, str):  # surrogatepass: a lone surrogate keys (distinctly); the model refuses it later
        h.update(b"text\0" + item.encode("utf-8", "surrogatepass"))
    elif isinstance(item, os.PathLike):
        h.update(b"file\0")
        _hash_file(h, item, index)
    elif isinstance(item, (bytes, bytearray, memoryview)):
        h.update(b"file\0" + bytes(item))  # raw bytes are a file's content
    elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], int):
        h.update(b"wave\0" + str(item[1]).encode())
        _feed(h, np.asarray(item[0]), index)
    elif isinstance(item, dict):
        h.update(b"dict\0")
        for k in sorted(item):
            h.update(str(k).encode("utf-8", "surrogatepass") + b"\0")
            _feed(h, item[k], index)
    elif type(item).__module__.startswith("PIL."):
        h.update(b"pil\0" + f"{item.mode}{item.size}".encode() + item.tobytes())
    elif hasattr(item, "shape") and hasattr(item, "dtype"):
        a = np.ascontiguousarray(item.detach().cpu().numpy() if hasattr(item, "detach") else item)
        h.update(b"array\0" + f"{a.dtype.str}{a.shape}".encode() + a.tobytes())
    else:
        raise InvalidInputError(f"cannot key {type(item).__name__} items for the embedding cache", index=index)


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




def _checksum(key: str, dtype: str, dim: int, blob: bytes) -> bytes:
    """A row's checksum: a 16-byte blake2b of its key, dtype, dim and vector bytes (damage, not forgery)."""
    h = hashlib.blake2b(f"{key}\0{dtype}\0{dim}\0".encode("utf-8", "surrogatepass"), digest_size=16)
    h.update(blob)
    return h.digest()


def _decode(key: Any, dtype: Any, blob: Any, dim: Any, checksum: Any) -> np.ndarray | None:
    """A stored row's vector, or None where the row fails any check (type, dtype, dim, length, checksum)."""
    if not (isinstance(key, str) and isinstance(dtype, str) and isinstance(blob, bytes) and type(dim) is int
            and isinstance(checksum, bytes)):
        return None  # includes rows without a check (written before checks existed, or by an older version)
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError):
        return None
    if dt.kind not in _VECTOR_KINDS or dt.shape or dim < 1 or len(blob) != dim * dt.itemsize:
        return None
    if checksum != _checksum(key, dtype, dim, blob):
        return None
    return np.frombuffer(blob, dtype=dt).copy()


def _damage(exc: BaseException) -> str | None:
    """What is wrong with the file, where ``exc`` says it is damaged (malformed, not a database); else None."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return str(exc) if code & 0xFF in _DAMAGED_CODES else None
    text = str(exc)  # a Python without error codes (< 3.11)
    return text if "malformed" in text or "not a database" in text else None


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at ``path`` now, or None where there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _rollback(db: sqlite3.Connection) -> None:
    try:
        if db.in_transaction:
            db.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # a damaged or closed file: closing the connection drops the transaction anyway


class _Damaged(Exception):
    """PRAGMA quick_check found a problem."""


class EmbeddingCache:
    """Vectors by (content, space fingerprint), in a SQLite file that survives crashes, damage and sharing.

    Several processes (and threads) may use one file at once. Every vector is checked when read
    (dim, dtype, checksum); a failing row is a miss, deleted and recomputed. A damaged file (on
    open, by ``PRAGMA quick_check``, or later, when SQLite reports it malformed) is renamed to
    ``<name>.corrupt-<UTC time>`` with a :class:`CacheCorruptionWarning`, and a fresh file is used.

    Args:
        path: the database file (created with its folder).
        quick_check: run ``PRAGMA quick_check`` on open (reads the whole file once; the per-row checks
            stay on without it).

    Attributes:
        hits, misses: counts kept by ``embed(..., cache=...)``.
        quarantined: the damaged files this object moved aside, oldest first.
    """

    def __init__(self, path: str | os.PathLike, *, quick_check: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._quick_check = quick_check
        self._identity: tuple[int, int] | None = None  # the file the connection has open; None: in memory
        self.quarantined: list[Path] = []
        self._db = self._open()
        self.hits = self.misses = 0

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.path)!r}, entries={len(self)})"

    def __len__(self) -> int:
        return int(self._run(lambda db: db.execute("SELECT COUNT(*) FROM entries").fetchone()[0], fallback=0))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def key(content: str, fingerprint: str) -> str:
        return hashlib.sha256(f"{fingerprint}:{content}".encode("utf-8", "surrogatepass")).hexdigest()

    def get_many(self, keys: list[str]) -> dict[str, np.ndarray]:
        """The cached vectors of those keys that have one that passes its checks (the others are misses)."""

        def read(db: sqlite3.Connection) -> dict[str, np.ndarray]:
            found: dict[str, np.ndarray] = {}
            bad: list[str] = []
            damaged = 0
            for start in range(0, len(keys), 500):
                chunk = keys[start:start + 500]
                rows = db.execute("SELECT e.key, e.dtype, e.vector, c.dim, c.checksum FROM entries AS e "
                                  "LEFT JOIN checks AS c ON c.key = e.key "
                                  f"WHERE e.key IN ({','.join('?' * len(chunk))})", chunk).fetchall()
                for key, dtype, blob, dim, checksum in rows:
                    vector = _decode(key, dtype, blob, dim, checksum)
                    if vector is not None:
                        found[key] = vector
                    elif checksum is not None:  # a checked row that fails: damage (unchecked rows are old ones)
                        bad.append(key)
                        damaged += 1
            if bad:
                self._delete(db, bad)
                warnings.warn(f"embedding cache {str(self.path)!r}: {damaged} cached vector(s) failed their "
                              "integrity check (dim, dtype or checksum); they were dropped and are recomputed",
                              CacheCorruptionWarning, stacklevel=3)
            return found

        return self._run(read, fallback={})

    def put_many(self, entries: Iterable[tuple[str, np.ndarray]]) -> None:
        """Store vectors with their checks, all in one transaction (all of them are written, or none)."""
        rows, checks = [], []
        for key, vector in entries:
            a = np.ascontiguousarray(vector).reshape(-1)
            if a.dtype.kind not in _VECTOR_KINDS:
                raise InvalidInputError(f"cannot cache vectors of dtype {a.dtype}")
            dtype, blob = a.dtype.str, a.tobytes()
            rows.append((key, dtype, blob))
            checks.append((key, a.size, _checksum(key, dtype, a.size, blob)))

        def write(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?)", rows)
                db.executemany("INSERT OR REPLACE INTO checks VALUES (?, ?, ?)", checks)
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise

        self._run(write, fallback=None)

    # -- opening, damage and recovery

    def _run(self, op, *, fallback: Any) -> Any:
        """``op(connection)`` under the lock. A file replaced since it was opened (another process moved a
        damaged one aside) is reopened first; a damaged one met here is quarantined, a fresh one opened and
        ``op`` run again. Where even that fails with damage, ``fallback`` is returned: a cache never fails a call.
        """
        with self._lock:
            if self._identity is not None and _identity(self.path) != self._identity:
                self._reopen(None)
            try:
                return op(self._db)
            except sqlite3.DatabaseError as exc:
                reason = _damage(exc)  # None: not damage; reopen only where the file was moved away under us
                if reason is None and (self._identity is None or _identity(self.path) == self._identity):
                    raise
                self._reopen(reason)
            try:
                return op(self._db)
            except sqlite3.DatabaseError as exc:
                if _damage(exc) is None:
                    raise
                warnings.warn(f"embedding cache {str(self.path)!r} is still damaged after a reopen ({exc}); "
                              "this call goes without it", CacheCorruptionWarning, stacklevel=3)
                return fallback

    def _reopen(self, reason: str | None) -> None:
        """Close the connection; quarantine its file where ``reason`` says it is damaged; open afresh."""
        identity = self._identity
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        if reason is not None and identity is not None:
            self._quarantine(reason, identity)
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        """A verified connection to the file; a damaged file is quarantined and a fresh one made in its place.

        Where the damaged file cannot be moved aside (no permission), the cache lives in memory for this
        object, with a warning.
        """
        for _ in range(3):  # a fresh file after each quarantine; a file another process replaces meanwhile
            identity = _identity(self.path)
            try:
                return self._connect()
            except (sqlite3.DatabaseError, _Damaged) as exc:
                reason = str(exc) if isinstance(exc, _Damaged) else _damage(exc)
                if reason is None:
                    raise
                if identity is None:  # a file made by another process during our open; look again
                    continue
                if not self._quarantine(reason, identity):
                    break
        warnings.warn(f"embedding cache {str(self.path)!r} is damaged and could not be replaced by a fresh file; "
                      "this cache keeps its vectors in memory only", CacheCorruptionWarning, stacklevel=3)
        self._identity = None
        db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        for statement in _SCHEMA:
            db.execute(statement)
        return db

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                db.execute(statement)
            if self._quick_check:
                problems = [row[0] for row in db.execute("PRAGMA quick_check(1)")]
                if problems != ["ok"]:
                    raise _Damaged(f"quick_check: {'; '.join(map(str, problems))[:300]}")
            self._identity = _identity(self.path)
        except BaseException:
            db.close()
            raise
        return db

    def _quarantine(self, reason: str, identity: tuple[int, int]) -> bool:
        """Rename the damaged file (and its write-ahead log) aside, with a warning naming both names.

        Nothing is renamed where the file at ``path`` is no longer the damaged one (another process moved it
        aside already). False where it cannot be renamed.
        """
        if _identity(self.path) != identity:
            return True
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists() or Path(f"{target}-wal").exists():
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
            n += 1
        try:
            os.replace(self.path, target)
        except OSError:
            return False
        for suffix in ("-wal", "-journal"):  # moved with it: never replayed into the fresh file
            with contextlib.suppress(OSError):
                os.replace(f"{self.path}{suffix}", f"{target}{suffix}")
        with contextlib.suppress(OSError):
            os.unlink(f"{self.path}-shm")  # the shared-memory index of the old log
        self.quarantined.append(target)
        warnings.warn(f"embedding cache {str(self.path)!r} is damaged ({reason}); it was moved aside to "
                      f"{str(target)!r} and a fresh cache is used (its vectors are recomputed)",
                      CacheCorruptionWarning, stacklevel=3)
        return True

    @staticmethod
    def _delete(db: sqlite3.Connection, keys: list[str]) -> None:
        """Drop rows that failed their checks (best effort: a read-only file keeps them, still never served)."""
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("DELETE FROM entries WHERE key = ?", [(k,) for k in keys])
            db.executemany("DELETE FROM checks WHERE key = ?", [(k,) for k in keys])
            db.execute("COMMIT")
        except sqlite3.Error:
            _rollback(db)
