"""zoo.store upserts and deletes: ids given by the caller (strings or ints) replace their rows instead of
doubling them, deletes by id or by filter, auto ids after the largest id, ``verify`` and the per-row checksum
after both, bad ids refused, and threads upserting the same ids at once."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("lancedb")

from zoo.embeddings import Embeddings  # noqa: E402
from zoo.errors import InvalidInputError  # noqa: E402
from zoo.store import CollectionCorruptError, VectorStore  # noqa: E402

DIM = 12


def _emb(vectors: np.ndarray) -> Embeddings:
    return Embeddings(np.asarray(vectors, dtype=np.float32), space="space-a", model="model-a", modality="text",
                      normalized=False)


def _vec(*seeds: int) -> np.ndarray:
    return np.stack([np.random.default_rng(s).standard_normal(DIM) for s in seeds])


def _first(coll, vectors: np.ndarray) -> list:
    return [hits[0].id for hits in coll.search(_emb(vectors), k=1)]


def test_adding_the_same_rows_twice_with_the_same_ids_keeps_one_copy(tmp_path):
    coll = VectorStore(tmp_path).collection("docs")
    ids = ["readme.md", "guide/intro.md", "it's.md"]
    metadata = [{"rev": 1}, {"rev": 1}, {"rev": 1}]
    assert coll.add(_emb(_vec(1, 2, 3)), ["a", "b", "c"], metadata, ids=ids) == ids
    assert coll.add(_emb(_vec(1, 2, 3)), ["a", "b", "c"], metadata, ids=ids) == ids
    assert len(coll) == 3 and sorted(r[0] for r in coll.rows()) == sorted(ids)
    assert _first(coll, _vec(1, 2, 3)) == ids

    # a changed row replaces the old one: new vector, item and metadata; the others stay
    assert coll.add(_emb(_vec(9)), ["b, edited"], [{"rev": 2}], ids=["guide/intro.md"]) == ["guide/intro.md"]
    assert len(coll) == 3
    assert dict((r[0], (r[1], r[2])) for r in coll.rows())["guide/intro.md"] == ("b, edited", {"rev": 2})
    hit = coll.search(_emb(_vec(9)), k=1)[0][0]
    assert (hit.id, hit.item, hit.metadata) == ("guide/intro.md", "b, edited", {"rev": 2})
    assert hit.score == pytest.approx(1.0, abs=1e-6)
    assert coll.search(_emb(_vec(2)), k=1)[0][0].score < 0.9  # the old vector is gone
    # new and existing ids in one add
    assert coll.add(_emb(_vec(4, 1)), ["d", "a2"], ids=["new.md", "readme.md"]) == ["new.md", "readme.md"]
    assert len(coll) == 4 and coll.verify() == 4
    reopened = VectorStore(tmp_path).collection("docs")
    assert _first(reopened, _vec(4, 1, 3)) == ["new.md", "readme.md", "it's.md"]


def test_int_ids_upsert_and_add_without_ids_continues_after_the_largest_id(tmp_path):
    coll = VectorStore(tmp_path).collection("ints")
    assert coll.add(_emb(_vec(0, 1, 2, 3, 4)), list("abcde")) == [0, 1, 2, 3, 4]
    assert coll.add(_emb(_vec(22)), ["c2"], ids=[2]) == [2] and len(coll) == 5
    assert coll.add(_emb(_vec(100)), ["far"], ids=[100]) == [100]
    assert coll.add(_emb(_vec(5, 6)), ["f", "g"]) == [101, 102]
    other = VectorStore(tmp_path).collection("ints")  # another handle reads the largest id from disk
    assert other.add(_emb(_vec(7)), ["h"]) == [103]
    assert coll.add(_emb(_vec(8)), ["i"]) == [104]  # and this one sees the other's row
    assert [r[0] for r in coll.rows()] == [0, 1, 2, 3, 4, 100, 101, 102, 103, 104]
    assert _first(coll, _vec(22, 100, 7, 8)) == [2, 100, 103, 104]
    assert coll.verify() == 10


def test_delete_by_ids_and_by_filter(tmp_path):
    coll = VectorStore(tmp_path).collection("del")
    coll.add(_emb(_vec(*range(20))), [f"item {i}" for i in range(20)], [{"n": i} for i in range(20)])
    assert len(coll.search(_emb(_vec(0)), k=30)[0]) == 20  # the snapshot is in memory now
    assert coll.delete([3, 4, 99]) == 2  # ids that are not there are skipped
    assert coll.delete(where="n >= 15 OR item = 'item 0'") == 6
    assert coll.delete([3]) == 0 and coll.delete([]) == 0
    left = [i for i in range(20) if i not in (0, 3, 4, 15, 16, 17, 18, 19)]
    assert [r[0] for r in coll.rows()] == left and len(coll) == len(left)
    result = coll.search(_emb(_vec(*range(20))), k=30)
    assert all(sorted(h.id for h in hits) == left for hits in result)  # deleted rows never come back
    assert _first(coll, _vec(*left)) == left
    assert coll.verify() == len(left)
    assert coll.add(_emb(_vec(30)), ["after"]) == [20]  # ids go on after the largest, 19 was deleted: 20
    assert VectorStore(tmp_path).collection("del").verify() == len(left) + 1
    assert VectorStore(tmp_path).collection("empty").delete([1]) == 0


def test_bad_ids_are_refused(tmp_path):
    store = VectorStore(tmp_path)
    strs, ints = store.collection("strs"), store.collection("ints")
    strs.add(_emb(_vec(1)), ["a"], ids=["a"])
    ints.add(_emb(_vec(1)), ["a"])
    cases = [
        (lambda: strs.add(_emb(_vec(1, 2)), ["x", "y"], ids=["k", "k"]), "'k' is given twice", 1),
        (lambda: strs.add(_emb(_vec(1, 2)), ["x", "y"], ids=["k", 2]), "mix", None),
        (lambda: strs.add(_emb(_vec(1)), ["x"], ids=[""]), "empty", 0),
        (lambda: strs.add(_emb(_vec(1)), ["x"], ids=[True]), "bool", 0),
        (lambda: strs.add(_emb(_vec(1)), ["x"], ids=[1.5]), "float", 0),
        (lambda: strs.add(_emb(_vec(1)), ["x"], ids=["a", "b"]), "2 ids for 1", None),
        (lambda: strs.add(_emb(_vec(1)), ["x"], ids="a"), "list", None),
        (lambda: strs.add(_emb(_vec(1)), ["x"]), "give ids=", None),
        (lambda: strs.add(_emb(_vec(1)), ["x"], ids=[7]), "str ids", None),
        (lambda: ints.add(_emb(_vec(1)), ["x"], ids=["seven"]), "int ids", None),
        (lambda: ints.add(_emb(_vec(1)), ["x"], ids=[1 << 64]), "int64", 0),
        (lambda: ints.delete(["seven"]), "int ids", None),
        (lambda: ints.delete("abc"), "list", None),
        (lambda: ints.delete(), "one of them", None),
        (lambda: ints.delete([1], where="id = 1"), "one of them", None),
    ]
    for call, message, index in cases:
        with pytest.raises(InvalidInputError, match=message) as info:
            call()
        assert info.value.index == index, message
    assert len(strs) == 1 and len(ints) == 1


def test_verify_after_upserts_and_deletes_still_finds_a_damaged_row(tmp_path):
    coll = VectorStore(tmp_path).collection("v")
    ids = [f"key-{i:03d}" for i in range(30)]
    coll.add(_emb(_vec(*range(30))), [f"item-{i:03d}" for i in range(30)], ids=ids)
    coll.add(_emb(_vec(*range(100, 110))), [f"edit-{i:03d}" for i in range(10)], ids=ids[:10])
    coll.delete(ids[10:15])
    assert coll.verify() == 25
    damaged = [f for f in (tmp_path / "v.lance" / "data").glob("*.lance") if b"edit-004" in f.read_bytes()]
    assert len(damaged) == 1
    data = damaged[0].read_bytes()
    assert data.count(b"edit-004") == 1
    damaged[0].write_bytes(data.replace(b"edit-004", b"edit-009"))
    with pytest.raises(CollectionCorruptError, match="'v'") as info:
        VectorStore(tmp_path).collection("v").verify()
    assert info.value.ids == ["key-004"]


def test_threads_upserting_the_same_ids_leave_one_row_per_id(tmp_path):
    coll = VectorStore(tmp_path).collection("race")
    other = VectorStore(tmp_path).collection("race")
    ids = [f"doc-{i}" for i in range(12)]
    barrier, errors = threading.Barrier(6), []

    def writer(t: int) -> None:
        try:
            target = coll if t % 2 else other
            barrier.wait()
            for j in range(4):
                chosen = ids[(t + j) % 4::2]
                target.add(_emb(_vec(*(1000 * t + 10 * j + k for k in range(len(chosen))))),
                           [f"t{t}-{j}"] * len(chosen), [{"writer": t}] * len(chosen), ids=chosen)
        except BaseException as exc:  # noqa: BLE001 - re-raised below in the test's thread
            errors.append(exc)

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    rows = VectorStore(tmp_path).collection("race").rows()
    assert sorted(r[0] for r in rows) == sorted(ids)
    assert coll.verify() == 12 and len(other) == 12


def test_an_upsert_through_a_handle_opened_before_another_commit_replaces_the_row(tmp_path):
    """Two stores on one folder (two processes, or two VectorStore objects): the second opened the table
    before the first upserted a new id; upserting that id through the second must replace the row, not
    plan against the version it read and insert the id a second time."""
    first, second = VectorStore(tmp_path).collection("c"), VectorStore(tmp_path).collection("c")
    first.add(_emb(_vec(1)), ["one"], ids=["x"])
    assert len(second) == 1  # the second handle now stands at the first version
    first.add(_emb(_vec(2)), ["two"], ids=["y"])
    second.add(_emb(_vec(3)), ["three"], ids=["y"])
    rows = VectorStore(tmp_path).collection("c").rows()
    assert [(r[0], r[1]) for r in rows] == [("x", "one"), ("y", "three")]
    assert second.verify() == 2


def test_rows_shows_what_another_store_committed_since(tmp_path):
    first, second = VectorStore(tmp_path).collection("c"), VectorStore(tmp_path).collection("c")
    first.add(_emb(_vec(1)), ["one"], ids=["x"])
    assert [r[0] for r in second.rows()] == ["x"]
    first.add(_emb(_vec(2)), ["two"], ids=["y"])
    assert [r[0] for r in second.rows()] == ["x", "y"]
