"""The embedding cache: hits give the same bytes, any change to the space misses, and a crash leaves no bad entry."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

import zoo
from zoo.cache import EmbeddingCache, content_key

TEXTS = ["a dog runs in the park", "the stock market fell", "a dog runs in the park", "fresh bread"]


@pytest.fixture(scope="module")
def minilm():
    return zoo.load("all-minilm-l6-v2")


def test_second_call_hits_and_gives_the_same_bytes(minilm, tmp_path):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    first = minilm.embed(TEXTS, cache=cache)
    assert first.info["cache_misses"] == 3 and first.info["cache_hits"] == 1  # the repeated text is embedded once
    assert np.array_equal(first.vectors, minilm.embed(TEXTS).vectors)
    again = minilm.embed(TEXTS[::-1] + ["new text"], cache=cache)
    assert again.info["cache_hits"] == 4 and again.info["cache_misses"] == 1
    assert np.array_equal(again.vectors[:4], first.vectors[::-1])
    assert len(cache) == 4 and again.space == first.space and again.normalized
    reopened = EmbeddingCache(tmp_path / "c.sqlite")  # entries survive the process
    assert minilm.embed(TEXTS, cache=reopened).info["cache_hits"] == 4


@pytest.mark.parametrize("options", [dict(normalize=False), dict(dim=128, force_dim=True), dict(precision="int8"),
                                     dict(precision="binary"), dict(truncate=False)])
def test_every_change_to_the_space_misses(minilm, tmp_path, options):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    minilm.embed(TEXTS, cache=cache)
    changed = minilm.embed(TEXTS, cache=cache, **options)
    assert changed.info["cache_misses"] == 3
    direct = minilm.embed(TEXTS, **options)
    assert np.array_equal(changed.vectors, direct.vectors) and changed.precision == direct.precision
    assert changed.dim == direct.dim
    assert minilm.embed(TEXTS, cache=cache, **options).info["cache_hits"] == 4


def test_another_model_misses(minilm, tmp_path):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    minilm.embed(TEXTS, cache=cache)
    other = zoo.load("paraphrase-minilm-l3-v2").embed(TEXTS, cache=cache)
    assert other.info["cache_misses"] == 3 and other.space == "paraphrase-minilm-l3-v2"


def test_files_are_keyed_by_their_bytes_not_their_names(tmp_path):
    lite = zoo.load("efficientnet-lite0")
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    path = tmp_path / "photo.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(path)
    red = lite.embed([path], cache=cache)
    assert lite.embed([str(path)], cache=cache).info["cache_hits"] == 1
    Image.new("RGB", (64, 48), (30, 30, 200)).save(path)  # same name, new content
    blue = lite.embed([path], cache=cache)
    assert blue.info["cache_misses"] == 1 and not np.array_equal(blue.vectors, red.vectors)
    with pytest.raises(zoo.InvalidInputError) as err:
        lite.embed([path, tmp_path / "missing.png"], cache=cache)
    assert err.value.index == 1


def test_content_keys_depend_on_content_only(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    assert content_key(a) == content_key(a.copy()) != content_key(a.astype(np.float64))
    assert content_key("x") != content_key(b"x")  # a text and a file holding it are different items
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    assert content_key(p) == content_key(b"abc")
    with pytest.raises(zoo.InvalidInputError):
        content_key(object())


def test_a_crash_mid_write_leaves_no_partial_entry(tmp_path):
    db = tmp_path / "c.sqlite"
    script = textwrap.dedent(f"""
        import os, numpy as np
        from zoo.cache import EmbeddingCache
        cache = EmbeddingCache({str(db)!r})
        cache.put_many([("done-%d" % i, np.full(384, i, np.float32)) for i in range(10)])
        cache._db.execute("BEGIN IMMEDIATE")
        cache._db.executemany("INSERT INTO entries VALUES (?, ?, ?)",
                              [("half-%d" % i, "<f4", b"\\0" * 1536) for i in range(1000)])
        os._exit(9)  # killed before COMMIT
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    cache = EmbeddingCache(db)
    assert len(cache) == 10
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    got = cache.get_many(["done-3", "half-0"])
    assert list(got) == ["done-3"] and np.all(got["done-3"] == 3)
