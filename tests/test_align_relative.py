"""zoo.align relative representations and anchor sets.

The paper's key property is checked directly: a space and a rotated, rescaled copy of it give
the same relative representation. Anchor sets are checked for hashing, file round trips and
refusals; the selection strategies for what they promise (pool members, medoids, extremes).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.align import (
    AnchorSet,
    RelativeProjector,
    farthest_point,
    kmeans_medoids,
    random_anchors,
    recall_at_k,
    relative_projection,
    relative_representation,
    select_anchors,
)
from zoo.errors import CardError, InvalidInputError


def _rng(seed=0):
    return np.random.default_rng(seed)


def _rotation(d, seed):
    q, r = np.linalg.qr(_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def _space(seed=0, n=120, d=16, m=20):
    rng = _rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(m, d))


# ------------------------------------------------------------------------- relative representations


def test_cosine_relative_projection_is_the_cosine_to_each_anchor():
    x, a = _space(n=5, m=3)
    expected = np.array([[xi @ aj / np.linalg.norm(xi) / np.linalg.norm(aj) for aj in a] for xi in x])
    np.testing.assert_allclose(relative_projection(x, a), expected, rtol=1e-5, atol=1e-6)
    ang = relative_projection(x, a, similarity="angular")
    np.testing.assert_allclose(ang, 1 - np.arccos(np.clip(expected, -1, 1)) / np.pi, atol=1e-5)
    euc = relative_projection(x, a, similarity="euclidean")
    np.testing.assert_allclose(euc, -np.linalg.norm(x[:, None] - a[None], axis=2), rtol=1e-4, atol=1e-4)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), d=st.integers(2, 24), scale=st.floats(0.01, 100.0),
       similarity=st.sampled_from(["cosine", "angular"]),
       normalization=st.sampled_from(["none", "l2", "layernorm", "standardize"]))
def test_rotated_and_rescaled_space_has_the_same_relative_representation(seed, d, scale, similarity,
                                                                          normalization):
    x, a = _space(seed, d=d)
    r = _rotation(d, seed + 1)
    rel = relative_representation(x, a, similarity=similarity, normalization=normalization)
    moved = relative_representation(scale * x @ r, scale * a @ r, similarity=similarity,
                                    normalization=normalization)
    np.testing.assert_allclose(moved, rel, atol=1e-5)


def test_the_absolute_vectors_differ_while_the_relative_ones_agree():
    x, a = _space(1)
    r = _rotation(16, 2)
    assert np.abs(x - 3 * x @ r).max() > 1
    np.testing.assert_allclose(relative_projection(3 * x @ r, 3 * a @ r), relative_projection(x, a), atol=1e-5)


def test_euclidean_is_invariant_to_isometries_and_with_normalization_to_scale():
    x, a = _space(3)
    r, shift = _rotation(16, 4), _rng(5).normal(size=16) * 10
    rel = relative_projection(x, a, similarity="euclidean")
    np.testing.assert_allclose(relative_projection(x @ r + shift, a @ r + shift, similarity="euclidean"), rel,
                               rtol=1e-4, atol=1e-3)
    scaled = relative_projection(4 * x, 4 * a, similarity="euclidean")
    assert not np.allclose(scaled, rel)
    np.testing.assert_allclose(relative_representation(4 * x, 4 * a, similarity="euclidean", normalization="l2"),
                               relative_representation(x, a, similarity="euclidean", normalization="l2"), atol=1e-5)


def test_centering_adds_translation_invariance_to_cosine():
    x, a = _space(6)
    shift = _rng(7).normal(size=16) * 5
    assert not np.allclose(relative_projection(x + shift, a + shift), relative_projection(x, a), atol=1e-3)
    np.testing.assert_allclose(relative_projection(x + shift, a + shift, center=True),
                               relative_projection(x, a, center=True), atol=1e-4)


def test_relative_representations_let_two_unrelated_coordinate_systems_retrieve_each_other():
    # two "models" of the same 300 items: one is a rotated, rescaled, slightly noisy copy of the other
    rng = _rng(8)
    x = rng.normal(size=(300, 32))
    y = 2.5 * x @ _rotation(32, 9) + 0.05 * rng.normal(size=(300, 32))
    anchors = np.arange(40)
    assert recall_at_k(x, y, np.arange(300)) < 0.05  # absolute coordinates do not line up
    rx = relative_representation(x, x[anchors])
    ry = relative_representation(y, y[anchors])
    assert recall_at_k(rx, ry, np.arange(300)) > 0.95


def test_projector_standardize_needs_fit_and_stores_statistics(tmp_path):
    x, a = _space(10)
    proj = RelativeProjector(a, normalization="standardize", anchor_hash="ab" * 32, space="s")
    with pytest.raises(InvalidInputError, match="fit"):
        proj.transform(x)
    fitted = proj.fit(x)
    out = fitted.transform(x)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=0), 1, atol=1e-4)
    # the statistics are kept: new vectors are standardized with the reference's mean and std
    np.testing.assert_allclose(fitted.transform(x[:3]), out[:3], atol=1e-6)
    path = fitted.save(tmp_path / "p.safetensors")
    loaded = RelativeProjector.load(path)
    np.testing.assert_array_equal(loaded.transform(x), out)
    assert (loaded.similarity, loaded.normalization, loaded.anchor_hash, loaded.space) == ("cosine", "standardize",
                                                                                          "ab" * 32, "s")


def test_projector_file_refusals(tmp_path):
    from safetensors.numpy import save_file

    _, a = _space(11)
    good = RelativeProjector(a, similarity="angular", center=True).save(tmp_path / "good.safetensors")
    assert RelativeProjector.load(good).center is True
    meta = {"format": "zoo.relative", "format_version": "1", "similarity": "cosine", "normalization": "none",
            "center": "false", "anchor_hash": "", "space": ""}
    cases = {
        "extra metadata": ({"anchors": a.astype(np.float32)}, meta | {"note": "x"}),
        "bad similarity": ({"anchors": a.astype(np.float32)}, meta | {"similarity": "dot"}),
        "extra tensor": ({"anchors": a.astype(np.float32), "w": np.ones(2, np.float32)}, meta),
        "stats shape": ({"anchors": a.astype(np.float32), "mean": np.ones(3, np.float32),
                         "std": np.ones(3, np.float32)}, meta | {"normalization": "standardize"}),
    }
    for name, (tensors, md) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(tensors, str(path), metadata=md)
        with pytest.raises(CardError):
            RelativeProjector.load(path)
    pickled = tmp_path / "pickled.safetensors"
    pickled.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
    with pytest.raises(CardError, match="not a valid safetensors"):
        RelativeProjector.load(pickled)


def test_relative_input_errors():
    x, a = _space(12)
    with pytest.raises(InvalidInputError, match="dim"):
        relative_projection(x, a[:, :4])
    with pytest.raises(InvalidInputError, match="similarity"):
        relative_projection(x, a, similarity="dot")
    with pytest.raises(InvalidInputError, match="2 rows"):
        relative_representation(x[:1], a, normalization="standardize")


# --------------------------------------------------------------------------------------- anchor sets


def test_anchor_hash_covers_items_in_order_and_nothing_else():
    a = AnchorSet(("a dog", "a cat", "a car"), version="1", name="x")
    assert a.hash == AnchorSet(("a dog", "a cat", "a car"), version="2", name="y").hash
    assert a.hash != AnchorSet(("a cat", "a dog", "a car")).hash
    assert a.hash != AnchorSet(("a dog", "a cat", "a cars")).hash
    assert AnchorSet(("ab", "c")).hash != AnchorSet(("a", "bc")).hash  # item boundaries count
    assert len(a.hash) == 64 and len(a) == 3


@settings(max_examples=40, deadline=None)
@given(items=st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=12, unique=True))
def test_anchor_set_json_round_trip(tmp_path_factory, items):
    path = tmp_path_factory.mktemp("anchors") / "a.json"
    a = AnchorSet(tuple(items), version="v3", name="n", selection={"strategy": "random", "seed": 1})
    b = AnchorSet.load(a.save(path))
    assert b == a and b.hash == a.hash


def test_anchor_set_refusals(tmp_path):
    with pytest.raises(InvalidInputError) as err:
        AnchorSet(("a", "b", "a"))
    assert err.value.index == 2
    with pytest.raises(InvalidInputError):
        AnchorSet(())
    path = AnchorSet(("a", "b")).save(tmp_path / "a.json")
    doc = json.loads(path.read_text())
    for name, edit in {"edited items": {"items": ["a", "c"]}, "unknown field": {"extra": 1},
                       "wrong format": {"format": "other"}}.items():
        bad = tmp_path / f"{name}.json"
        bad.write_text(json.dumps(doc | edit))
        with pytest.raises(CardError):
            AnchorSet.load(bad)
    (tmp_path / "junk.json").write_bytes(b"\x80\x04not json")
    with pytest.raises(CardError):
        AnchorSet.load(tmp_path / "junk.json")


def test_file_anchors_hash_the_file_contents(tmp_path):
    (tmp_path / "one.bin").write_bytes(b"same bytes")
    (tmp_path / "two.bin").write_bytes(b"same bytes")
    (tmp_path / "three.bin").write_bytes(b"other bytes")
    a = AnchorSet.from_files([tmp_path / "one.bin", tmp_path / "three.bin"], version="1")
    b = AnchorSet.from_files([tmp_path / "two.bin", tmp_path / "three.bin"], version="1")
    assert a.kind == "file" and a.hash == b.hash and a.labels != b.labels
    import hashlib

    assert a.items[0] == hashlib.sha256(b"same bytes").hexdigest()
    with pytest.raises(InvalidInputError):  # the same file twice is a duplicate anchor
        AnchorSet.from_files([tmp_path / "one.bin", tmp_path / "two.bin"])


# ----------------------------------------------------------------------------------------- selection


def _blobs(seed=0, k=6, per=40, d=5):
    rng = _rng(seed)
    centers = rng.normal(size=(k, d)) * 20
    x = np.concatenate([c + rng.normal(size=(per, d)) for c in centers])
    return x, np.repeat(np.arange(k), per)


def test_random_anchors_are_seeded_and_distinct():
    a, b = random_anchors(1000, 50, seed=3), random_anchors(1000, 50, seed=3)
    np.testing.assert_array_equal(a, b)
    assert len(set(a)) == 50 and a.max() < 1000
    assert not np.array_equal(a, random_anchors(1000, 50, seed=4))


def test_kmeans_medoids_are_the_medoids_of_well_separated_clusters():
    x, labels = _blobs()
    idx = kmeans_medoids(x, 6, seed=0, metric="euclidean")
    assert sorted(labels[idx]) == list(range(6))  # one anchor per true cluster
    for i in idx:  # each is the pool member with the least total distance to its cluster
        members = np.flatnonzero(labels == labels[i])
        totals = np.linalg.norm(x[members][:, None] - x[members][None], axis=2).sum(axis=1)
        assert i == members[np.argmin(totals)]
    np.testing.assert_array_equal(idx, kmeans_medoids(x, 6, seed=0, metric="euclidean"))


def test_kmeans_medoids_are_pool_members_also_for_large_clusters():
    x = _rng(1).normal(size=(2000, 8))
    idx = kmeans_medoids(x, 3, seed=1)  # clusters of ~700 points: medoid searched among candidates
    assert len(set(idx)) == 3 and all(0 <= i < 2000 for i in idx)


def test_farthest_point_picks_the_corners_of_a_square():
    grid = np.array([(i, j) for i in np.linspace(-1, 1, 7) for j in np.linspace(-1, 1, 7)])
    idx = farthest_point(grid, 4, metric="euclidean")
    assert {tuple(p) for p in grid[idx]} == {(-1, -1), (-1, 1), (1, -1), (1, 1)}
    fifth = farthest_point(grid, 5, metric="euclidean")[-1]
    assert tuple(grid[fifth]) == (0, 0)  # the point farthest from all four corners is the centre


def test_farthest_point_refuses_too_few_distinct_points():
    with pytest.raises(InvalidInputError, match="distinct"):
        farthest_point(np.array([[0.0, 1], [0, 1], [1, 0]]), 3, metric="euclidean")


def test_select_builds_an_anchor_set_from_a_pool():
    x, _ = _blobs(2)
    items = [f"item {i}" for i in range(len(x))]
    a = AnchorSet.select(items, x, 6, strategy="kmeans", seed=0, metric="euclidean", version="1", name="blobs")
    assert len(a) == 6 and set(a.items) <= set(items)
    assert a.selection == {"strategy": "kmeans", "seed": 0, "metric": "euclidean", "pool_size": len(x)}
    assert a.hash == AnchorSet.select(items, x, 6, strategy="kmeans", seed=0, metric="euclidean").hash
    for strategy in ("random", "farthest"):
        assert len(set(select_anchors(x, 10, strategy=strategy))) == 10
    with pytest.raises(InvalidInputError, match="strategy"):
        select_anchors(x, 3, strategy="best")
    with pytest.raises(InvalidInputError, match="cannot choose"):
        select_anchors(x, len(x) + 1, strategy="random")
