"""zoo.store: LanceDB collections of one space, exact cosine search, the IVF-PQ path, stitches, bad inputs, and the
space check of raw-array queries (a warning once per collection, or ``space=``)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("lancedb")

import zoo.store  # noqa: E402
from zoo import stitching  # noqa: E402
from zoo.align import fit_stitch  # noqa: E402
from zoo.embeddings import Embeddings  # noqa: E402
from zoo.errors import InvalidInputError, SpaceMismatchError  # noqa: E402
from zoo.store import VectorStore, exact_topk  # noqa: E402

DIM = 24


def _emb(vectors: np.ndarray, space: str = "space-a", model: str = "model-a") -> Embeddings:
    return Embeddings(np.asarray(vectors, dtype=np.float32), space=space, model=model, modality="text",
                      normalized=False)


def _data(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    """Clustered, unnormalized vectors (the store normalizes; scores must still be cosines)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((8, dim))
    return (centers[rng.integers(0, 8, n)] + 0.5 * rng.standard_normal((n, dim))) * rng.uniform(0.5, 3, (n, 1))


def _cosine(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    q64, x64 = q.astype(np.float64), x.astype(np.float64)
    return (q64 / np.linalg.norm(q64, axis=1, keepdims=True)) @ (x64 / np.linalg.norm(x64, axis=1, keepdims=True)).T


@pytest.fixture
def clean_stitches(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(stitching, "_stitches", {})
    monkeypatch.setattr(stitching, "_scanned", set())


def test_exact_search_scores_are_numpy_cosines_in_order_and_survive_reopening(tmp_path):
    x, q = _data(500), _data(7, seed=1)
    coll = VectorStore(tmp_path / "db").collection("docs")
    ids = coll.add(_emb(x[:300]), [f"doc {i}" for i in range(300)], [{"n": i} for i in range(300)])
    ids += coll.add(_emb(x[300:]), [f"doc {i}" for i in range(300, 500)])
    assert ids == list(range(500)) and len(coll) == 500 and coll.space == "space-a" and coll.dim == DIM
    listed = coll.rows()
    assert [r[0] for r in listed] == ids
    assert listed[7] == (7, "doc 7", {"n": 7}) and listed[400] == (400, "doc 400", {})

    expected = _cosine(q, x)
    for hits_of in (coll.search(_emb(q), k=10), VectorStore(tmp_path / "db").collection("docs").search(q, k=10)):
        assert hits_of.exact and hits_of.stitch is None and len(hits_of) == len(q)
        for i, hits in enumerate(hits_of):
            want = np.argsort(-expected[i], kind="stable")[:10]
            assert [h.id for h in hits] == want.tolist()
            np.testing.assert_allclose([h.score for h in hits], expected[i, want], rtol=0, atol=2e-6)
            assert all(h.item == f"doc {h.id}" for h in hits)
            assert all(h.metadata == ({"n": h.id} if h.id < 300 else {}) for h in hits)


def test_a_stored_row_finds_itself_and_k_is_capped_by_the_collection(tmp_path):
    x = _data(20)
    coll = VectorStore(tmp_path).collection("small")
    coll.add(_emb(x), [f"/data/img_{i}.png" for i in range(20)])
    hits = coll.search(x[5], k=50)[0]
    assert len(hits) == 20 and hits[0].id == 5 and hits[0].item == "/data/img_5.png"
    assert hits[0].score == pytest.approx(1.0, abs=1e-6)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_ties_come_back_by_id():
    x = np.array([[1, 0], [0, 1], [1, 0], [1, 0]], dtype=np.float32)
    top, scores = exact_topk(np.array([[1, 0]], dtype=np.float32), x, 3)
    assert top.tolist() == [[0, 2, 3]] and scores.tolist() == [[1, 1, 1]]


def test_store_lists_and_drops_collections_and_an_empty_one_returns_nothing(tmp_path):
    store = VectorStore(tmp_path)
    assert store.collection("none").search(_data(2), k=3) == [[], []]
    assert store.collection("none").search(np.zeros((0, DIM))) == []
    store.collection("a").add(_emb(_data(3)), ["x", "y", "z"])
    assert store.collections() == ["a"]
    store.drop("a")
    assert store.collections() == [] and len(store.collection("a")) == 0


@pytest.mark.parametrize(("kind", "min_recall"), [("ivf_flat", 1.0), ("ivf_pq", 0.9)])
def test_the_ann_index_is_built_used_and_keeps_ids_and_exact_scores(tmp_path, monkeypatch, kind, min_recall):
    x, q = _data(2000, dim=32), _data(20, seed=3, dim=32)
    coll = VectorStore(tmp_path).collection("big")
    coll.add(_emb(x), [str(i) for i in range(2000)])
    assert not coll.indexed
    coll.create_index(kind, num_partitions=4, num_sub_vectors=16)
    assert coll.index_type.lower() == kind.replace("_", "")
    coll.nprobes = 4  # every partition: only PQ codes (re-ranked on the full vectors) can lose a neighbour
    ann, exact = coll.search(q, k=10, exact=False), coll.search(q, k=10)
    assert not ann.exact and exact.exact  # 2,000 rows is below ANN_THRESHOLD: the default stays exact
    recall = np.mean([len({h.id for h in a} & {h.id for h in e}) / 10 for a, e in zip(ann, exact, strict=True)])
    assert recall >= min_recall
    expected = _cosine(q, x)
    for i, hits in enumerate(ann):
        assert all(h.item == str(h.id) for h in hits)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        np.testing.assert_allclose([h.score for h in hits], expected[i, [h.id for h in hits]], atol=1e-5)
    with pytest.raises(InvalidInputError, match="kind"):
        coll.create_index("hnsw")

    monkeypatch.setattr(zoo.store.collection, "ANN_THRESHOLD", 1000)  # at the threshold the index answers by default
    new_ids = coll.add(_emb(q[:3]), ["new 0", "new 1", "new 2"])  # rows added after the index are found too
    result = coll.search(q[:3], k=1)
    assert not result.exact and [hits[0].id for hits in result] == new_ids
    assert [hits[0].item for hits in result] == ["new 0", "new 1", "new 2"]


def test_other_spaces_are_refused_unless_a_registered_stitch_joins_them(tmp_path, clean_stitches):
    rng = np.random.default_rng(7)
    rotation = np.linalg.qr(rng.standard_normal((DIM, DIM)))[0]
    x = _data(200)
    coll = VectorStore(tmp_path).collection("b-space")
    coll.add(_emb(x @ rotation, space="space-b", model="model-b"), [str(i) for i in range(200)])
    query = _emb(x[:5], space="space-a")

    with pytest.raises(SpaceMismatchError, match="space-a"):
        coll.search(query)
    with pytest.raises(SpaceMismatchError):
        coll.add(query, ["a"] * 5)
    backward = fit_stitch(_emb(x[:100] @ rotation, space="space-b"), _emb(x[:100], space="space-a"))
    stitching.register_stitch(backward, "b-to-a")
    with pytest.raises(SpaceMismatchError, match="b-to-a"):
        coll.search(query)  # a stitch into the query's space does not help: the query must move

    forward = fit_stitch(_emb(x[:100], space="space-a"), _emb(x[:100] @ rotation, space="space-b"))
    stitching.register_stitch(forward, "a-to-b")
    result = coll.search(query, k=3)
    assert result.stitch == "a-to-b" and all(h.stitch == "a-to-b" for hits in result for h in hits)
    assert [hits[0].id for hits in result] == [0, 1, 2, 3, 4]  # the rotation is recovered: each row finds itself
    expected = _cosine(forward.apply(x[:5]), x @ rotation)
    for i, hits in enumerate(result):
        np.testing.assert_allclose([h.score for h in hits], expected[i, [h.id for h in hits]], atol=2e-6)


def test_bad_inputs_are_refused_with_the_row_named(tmp_path):
    coll = VectorStore(tmp_path).collection("c")
    coll.add(_emb(_data(4)), list("abcd"))
    nan = _data(3)
    nan[1, 2] = np.nan
    cases = [
        (lambda: coll.add(_emb(_data(2, dim=8)), ["a", "b"]), "dim 8", None),
        (lambda: coll.add(_emb(nan), list("xyz")), "NaN", 1),
        (lambda: coll.add(_emb(np.zeros((2, DIM))), ["a", "b"]), "zeros", 0),
        (lambda: coll.add(_emb(_data(3)), ["a", "b"]), "2 items for 3 vectors", None),
        (lambda: coll.add(_emb(_data(2)), ["a", 5]), "path or a text", 1),
        (lambda: coll.add(_emb(_data(2)), ["a", "b"], [{}]), "1 metadata", None),
        (lambda: coll.add(_emb(_data(2)), ["a", "b"], [{}, {"x": object()}]), "'x'", 1),
        (lambda: coll.add(_data(2), ["a", "b"]), "Embeddings", None),
        (lambda: coll.search(_data(1, dim=8)), "dim 8", None),
        (lambda: coll.search(nan), "NaN", 1),
        (lambda: coll.search(_data(1), k=0), "k must be", None),
        (lambda: coll.search(_data(1), exact=False), "create_index", None),
        (lambda: coll.create_index(), "256 rows", None),
        (lambda: VectorStore(tmp_path).collection("../up"), "collection names", None),
    ]
    for call, message, index in cases:
        with pytest.raises(InvalidInputError, match=message) as info:
            call()
        assert info.value.index == index, message
    assert len(coll) == 4  # nothing bad was written


def test_a_raw_array_query_warns_once_per_collection_and_space_states_its_space(tmp_path, clean_stitches):
    x = _data(50)
    store = VectorStore(tmp_path)
    docs, other = store.collection("docs"), store.collection("other")
    docs.add(_emb(x), [str(i) for i in range(50)])
    other.add(_emb(x), [str(i) for i in range(50)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = docs.search(x[:3], k=2)
        docs.search(x[:3], k=2)
        store.collection("docs").search(x[3], k=2)  # the same collection object: still once
        assert [str(w.message) for w in caught if "docs" in str(w.message)] == [str(caught[0].message)]
        assert "could not be checked" in str(caught[0].message) and caught[0].category is UserWarning
        assert caught[0].filename == __file__  # points at the caller
        other.search(x[:3], k=2)
        assert len(caught) == 2 and "'other'" in str(caught[1].message)
        stated = VectorStore(tmp_path).collection("docs").search(x[:3], k=2, space="space-a")
        assert len(caught) == 2  # space= makes the check: no warning
    assert [[h.id for h in hits] for hits in stated] == [[h.id for h in hits] for hits in first]
    with pytest.raises(SpaceMismatchError, match="space-z"):
        docs.search(x[:1], space="space-z")
    with pytest.raises(SpaceMismatchError, match="space-b"):
        docs.search(_emb(x[:1]), space="space-b")  # Embeddings say otherwise

    rng = np.random.default_rng(7)
    rotation = np.linalg.qr(rng.standard_normal((DIM, DIM)))[0]
    b = store.collection("b")
    b.add(_emb(x @ rotation, space="space-b", model="model-b"), [str(i) for i in range(50)])
    forward = fit_stitch(_emb(x, space="space-a"), _emb(x @ rotation, space="space-b"))
    stitching.register_stitch(forward, "a-to-b")
    result = b.search(x[:4], k=1, space="space-a")  # a stated space can be stitched like Embeddings
    assert result.stitch == "a-to-b" and [hits[0].id for hits in result] == [0, 1, 2, 3]
