"""The embedding cache under damage, odd inputs and sharing: never a wrong vector, never a failed embed."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sqlite3
import time
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

import zoo
from zoo import cache as zcache
from zoo.cache import EmbeddingCache, content_key

TEXTS = ["a dog runs in the park", "the stock market fell", "a dog runs in the park", "fresh bread"]


@pytest.fixture(scope="module")
def minilm():
    return zoo.load("all-minilm-l6-v2")


def _vec(key: str, dim: int = 64) -> np.ndarray:
    """The one right vector of a test key."""
    return np.random.default_rng(zlib.crc32(key.encode())).standard_normal(dim).astype(np.float32)


@contextmanager
def _deadline(seconds: float):
    """Fail instead of hanging (a FIFO open blocks, /dev/zero never ends)."""
    def expired(*_):
        raise TimeoutError(f"hung for {seconds}s")
    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _filled(path: Path, n: int = 200) -> list[str]:
    cache = EmbeddingCache(path)
    keys = [f"k{i}" for i in range(n)]
    cache.put_many([(k, _vec(k)) for k in keys])
    cache.close()  # checkpoints the log into the file
    return keys


def _damage(path: Path, how: str) -> None:
    size = path.stat().st_size
    if how == "junk":
        path.write_bytes(random.Random(0).randbytes(size))
    elif how == "truncated":
        os.truncate(path, size // 2)
    elif how == "damaged-page":  # a b-tree page header overwritten
        with open(path, "r+b") as fh:
            fh.seek(4096)
            fh.write(b"\xff" * 64)


@pytest.mark.parametrize("how", ["junk", "truncated", "damaged-page"])
def test_a_damaged_file_is_quarantined_and_the_embed_recomputes(minilm, tmp_path, how):
    db = tmp_path / "c.sqlite"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cache = EmbeddingCache(db)
        minilm.embed(TEXTS, cache=cache)
        cache.put_many([(f"filler-{i}", _vec(f"filler-{i}", 384)) for i in range(300)])  # a file of many pages
        cache.close()
    _damage(db, how)
    damaged = db.read_bytes()
    with pytest.warns(RuntimeWarning, match=str(db)) as record:
        cache = EmbeddingCache(db)
    assert all(issubclass(w.category, zcache.CacheCorruptionWarning) for w in record)
    assert len(cache.quarantined) == 1 and cache.quarantined[0].name.startswith("c.sqlite.corrupt-")
    assert cache.quarantined[0].read_bytes() == damaged and str(cache.quarantined[0]) in str(record[0].message)
    out = minilm.embed(TEXTS, cache=cache)
    assert out.info["cache_misses"] == 3 and np.array_equal(out.vectors, minilm.embed(TEXTS).vectors)
    assert minilm.embed(TEXTS, cache=EmbeddingCache(db)).info["cache_hits"] == 4  # the fresh file works


def test_damage_met_mid_use_is_quarantined_and_the_embed_recomputes(minilm, tmp_path):
    db = tmp_path / "c.sqlite"
    cache = EmbeddingCache(db)
    minilm.embed(TEXTS, cache=cache)
    cache.put_many([(f"filler-{i}", _vec(f"filler-{i}", 384)) for i in range(300)])
    cache.close()
    cache = EmbeddingCache(db)  # open and checked; the file is cut short while in use
    os.truncate(db, db.stat().st_size // 2)
    with pytest.warns(RuntimeWarning, match="damaged"):
        out = minilm.embed(TEXTS, cache=cache)
    assert np.array_equal(out.vectors, minilm.embed(TEXTS).vectors)
    assert len(cache.quarantined) == 1 and cache.quarantined[0].exists()


def test_altered_rows_are_misses_deleted_and_recomputed(minilm, tmp_path):
    db = tmp_path / "c.sqlite"
    cache = EmbeddingCache(db)
    fresh = minilm.embed(TEXTS, cache=cache).vectors
    with sqlite3.connect(db) as raw:
        keys = [k for (k,) in raw.execute("SELECT key FROM entries ORDER BY key")]
        raw.execute("UPDATE entries SET dtype = '<f8' WHERE key = ?", (keys[0],))  # 384 f4 read as 192 f8
        raw.execute("UPDATE entries SET vector = substr(vector, 1, 400) WHERE key = ?", (keys[1],))  # 100-d
        raw.execute("UPDATE entries SET vector = zeroblob(1536) WHERE key = ?", (keys[2],))  # same size, wrong
    with pytest.warns(RuntimeWarning, match=str(db)):
        out = minilm.embed(TEXTS, cache=cache)
    assert out.vectors.shape == (4, 384) and out.vectors.dtype == np.float32
    assert np.array_equal(out.vectors, fresh) and out.info["cache_misses"] == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert minilm.embed(TEXTS, cache=cache).info["cache_hits"] == 4  # recomputed rows were stored again


def test_vector_bytes_damaged_on_disk_are_caught_by_the_checksum(tmp_path):
    db = tmp_path / "c.sqlite"
    cache = EmbeddingCache(db)
    marked = np.arange(64, dtype=np.float32) + 1000.0
    cache.put_many([("marked", marked), ("other", _vec("other"))])
    cache.close()
    data = bytearray(db.read_bytes())
    at = data.find(marked.tobytes())
    assert at > 0
    data[at + 40:at + 44] = np.float32(7.0).tobytes()  # one element changed: a valid file, a wrong vector
    db.write_bytes(bytes(data))
    assert sqlite3.connect(db).execute("PRAGMA quick_check").fetchone()[0] == "ok"
    cache = EmbeddingCache(db)
    with pytest.warns(RuntimeWarning, match="integrity check"):
        got = cache.get_many(["marked", "other"])
    assert list(got) == ["other"] and np.array_equal(got["other"], _vec("other"))
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM entries WHERE key = 'marked'").fetchone()[0] == 0


def test_rows_written_without_checks_are_misses_then_rewritten(tmp_path):
    db = tmp_path / "c.sqlite"  # the first release's layout, with a row whose length was altered
    with sqlite3.connect(db) as raw:
        raw.execute("CREATE TABLE entries (key TEXT PRIMARY KEY, dtype TEXT NOT NULL, vector BLOB NOT NULL)")
        raw.execute("INSERT INTO entries VALUES ('old', '<f4', ?)", (_vec("old")[:25].tobytes(),))
    cache = EmbeddingCache(db)
    assert cache.get_many(["old"]) == {}
    cache.put_many([("old", _vec("old"))])
    assert np.array_equal(cache.get_many(["old"])["old"], _vec("old"))


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "symlink-to-dev-zero", "symlink-to-fifo", "directory",
                                  "too-long"])
def test_content_key_refuses_special_files_without_hanging(tmp_path, kind):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    target = {"fifo": fifo, "dev-zero": Path("/dev/zero"), "directory": tmp_path,
              "too-long": tmp_path / ("x" * 5000)}.get(kind)
    if kind.startswith("symlink"):
        target = tmp_path / "link"
        target.symlink_to("/dev/zero" if kind.endswith("dev-zero") else fifo)
    with _deadline(5), pytest.raises(zoo.InvalidInputError) as err:
        content_key(target, index=3)
    assert err.value.index == 3


def test_lone_surrogates_key_distinctly():
    keys = {content_key(t) for t in ["\ud800", "\udfff", "\ud800\udc00", "\U00010000", "\ufffd", "a\ud800b"]}
    assert len(keys) == 6
    assert content_key({"\ud800": "x"}) != content_key({"\ud801": "x"})
    assert EmbeddingCache.key("\ud800", "fp") != EmbeddingCache.key("\ud801", "fp")


def _writer(path: str, worker: int, batches: int, opened) -> None:
    warnings.simplefilter("error")  # a quarantine (a false alarm of damage) fails the writer
    cache = EmbeddingCache(path)
    opened.set()
    for b in range(batches):
        keys = [f"w{worker}-{b}-{j}" for j in range(20)] + [f"shared-{b}-{j}" for j in range(5)]
        cache.put_many([(k, _vec(k)) for k in keys])
        got = cache.get_many(keys)
        assert len(got) == 25 and all(np.array_equal(v, _vec(k)) for k, v in got.items())


def _lock_holder(path: str, seconds: float, ready, opened) -> None:
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("BEGIN IMMEDIATE")
    raw.execute("INSERT INTO entries VALUES ('held', '<f4', x'00000000')")
    ready.set()
    for event in opened:
        event.wait(60)
    time.sleep(seconds)  # every writer is now waiting for the lock
    raw.execute("ROLLBACK")


def test_concurrent_writers_lose_nothing_and_wait_for_a_long_transaction(tmp_path):
    db = tmp_path / "c.sqlite"
    EmbeddingCache(db).close()
    ctx = multiprocessing.get_context("spawn")
    ready, opened = ctx.Event(), [ctx.Event() for _ in range(4)]
    holder = ctx.Process(target=_lock_holder, args=(str(db), 6, ready, opened))  # longer than sqlite3's 5 s default
    holder.start()
    assert ready.wait(60)
    writers = [ctx.Process(target=_writer, args=(str(db), w, 15, opened[w])) for w in range(4)]
    for p in writers:
        p.start()
    for p in [holder, *writers]:
        p.join(120)
    assert [p.exitcode for p in writers] == [0, 0, 0, 0] and holder.exitcode == 0
    keys = [f"w{w}-{b}-{j}" for w in range(4) for b in range(15) for j in range(20)]
    keys += [f"shared-{b}-{j}" for b in range(15) for j in range(5)]
    got = EmbeddingCache(db).get_many(keys)
    assert len(got) == len(keys) and all(np.array_equal(got[k], _vec(k)) for k in keys)
    assert not list(tmp_path.glob("*.corrupt-*"))


def _endless_writer(path: str, seed: int, started) -> None:
    started.set()
    cache = EmbeddingCache(path)
    rng = random.Random(seed)
    while True:
        keys = [f"r{seed}-{rng.randrange(10**9)}" for _ in range(rng.randrange(1, 400))]
        cache.put_many([(k, _vec(k, 384)) for k in keys])


def test_a_writer_killed_at_random_points_leaves_only_correct_vectors(tmp_path):
    db = tmp_path / "c.sqlite"
    ctx = multiprocessing.get_context("spawn")
    rng = random.Random(1)
    stored = 0
    for round_ in range(10):
        started = ctx.Event()
        p = ctx.Process(target=_endless_writer, args=(str(db), round_, started))
        p.start()
        assert started.wait(60)
        time.sleep(rng.uniform(0.0, 0.6))
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a killed writer is no damage: nothing is quarantined
            cache = EmbeddingCache(db)
            keys = [k for (k,) in cache._db.execute("SELECT key FROM entries")]
            got = cache.get_many(keys)
        assert len(got) == len(keys) >= stored
        assert all(np.array_equal(v, _vec(k, 384)) for k, v in got.items())
        stored = len(keys)
        cache.close()
    assert stored > 0 and not list(tmp_path.glob("*.corrupt-*"))
