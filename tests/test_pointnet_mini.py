"""pointnet-mini on its real bundled weights: the card's accuracies recomputed, embeddings, inputs, refusals.

The held-out sets are regenerated from the seeds and counts the card states in ``options`` (the
card is the single source of those numbers), pushed through ``zoo.load("pointnet-mini")`` and
scored; the result must match the card's figures to within a point (float rounding differs a
little between CPUs). Nothing here trains; everything runs in a few seconds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import zoo
from zoo.adapters.pointnet import PointNetEmbedder
from zoo.points import normalize_unit_sphere
from zoo.shapes import CLASSES, make_dataset, make_shape, rotate_each
from zoo.sources import sha256_file

NAME = "pointnet-mini"
CARD = zoo.card(NAME)
OPTS = CARD.options


@pytest.fixture(scope="module")
def model() -> PointNetEmbedder:
    return zoo.load(NAME)


@pytest.fixture(scope="module")
def held_out():
    """The card's held-out set: (points, labels, rotated points)."""
    ds = make_dataset(OPTS["eval_seed"], OPTS["eval_per_class"], n_points=OPTS["n_points"])
    return ds.points, ds.labels, rotate_each(ds.points, OPTS["rotation_seed"])


def _accuracy(model: PointNetEmbedder, points: np.ndarray, labels: np.ndarray) -> float:
    probs = model.class_probabilities(points)
    return 100.0 * float((probs.argmax(axis=1) == labels).mean())


def _nearest_neighbour_accuracy(model: PointNetEmbedder, points: np.ndarray, labels: np.ndarray) -> float:
    """Percent of clouds whose most similar other cloud (cosine of embeddings) has the same class."""
    v = model.embed(points).vectors
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    return 100.0 * float((labels[sims.argmax(axis=1)] == labels).mean())


# -- the card ------------------------------------------------------------------------------------
def test_the_card_is_bundled_pinned_and_offline_ready(model):
    (src,) = CARD.sources
    assert (src.kind, src.subdir) == ("bundled", "weights/pointnet-mini")
    assert CARD.offline_ready and CARD.license == "apache-2.0" and CARD.modalities == ("points",)
    assert model.resolved.origin == "bundled"
    for rel, digest in src.sha256.items():
        assert sha256_file(model.resolved.path / rel) == digest
    files = {p.name for p in model.resolved.path.iterdir() if p.is_file()}
    assert files == set(src.sha256), "every shipped file is pinned"
    assert (model.resolved.path / "model.safetensors").stat().st_size < 3_000_000


def test_the_weights_carry_their_classes_and_architecture(model):
    from safetensors import safe_open

    with safe_open(str(model.resolved.path / "model.safetensors"), framework="pt") as fh:
        meta = fh.metadata()
    assert json.loads(meta["classes"]) == list(CLASSES) == list(model.class_names)
    assert int(meta["n_points"]) == OPTS["n_points"] and meta["normalization"] == "zoo.points.normalize_unit_sphere"
    assert sum(p.numel() for p in model.model.parameters()) == CARD.params
    assert model.model.embedding_dim == CARD.dim


def test_held_out_accuracy_matches_the_card(model, held_out):
    points, labels, _ = held_out
    assert len(labels) == OPTS["eval_per_class"] * len(CLASSES)
    acc = _accuracy(model, points, labels)
    assert acc == pytest.approx(OPTS["held_out_accuracy"], abs=1.0)


def test_rotated_held_out_accuracy_matches_the_card(model, held_out):
    points, labels, rotated = held_out
    acc = _accuracy(model, rotated, labels)
    assert acc == pytest.approx(OPTS["rotated_accuracy"], abs=1.0)
    assert not np.allclose(rotated, points)


def test_nearest_neighbour_accuracy_matches_the_card(model, held_out):
    points, labels, rotated = held_out
    assert _nearest_neighbour_accuracy(model, points, labels) == pytest.approx(OPTS["held_out_nn_accuracy"], abs=1.0)
    assert _nearest_neighbour_accuracy(model, rotated, labels) == pytest.approx(OPTS["rotated_nn_accuracy"], abs=1.0)


# -- embeddings ----------------------------------------------------------------------------------
def test_embeddings_are_finite_vectors_of_the_cards_dim(model, held_out):
    points = held_out[0][:: OPTS["eval_per_class"]]  # one shape per class
    e = model.embed(points)
    assert e.vectors.shape == (len(CLASSES), CARD.dim) and e.vectors.dtype == np.float32
    assert np.isfinite(e.vectors).all() and (e.space, e.modality) == (NAME, "points") and e.normalized
    np.testing.assert_allclose(np.linalg.norm(e.vectors, axis=1), 1.0, atol=1e-5)
    raw = model.embed(list(points), normalize=False)
    assert not raw.normalized and not np.allclose(np.linalg.norm(raw.vectors, axis=1), 1.0, atol=0.1)
    assert raw.vectors.min() >= 0.0  # the embedding layer ends in a ReLU
    np.testing.assert_allclose(raw.vectors / np.linalg.norm(raw.vectors, axis=1, keepdims=True), e.vectors,
                               atol=1e-5)
    assert model.embed([]).vectors.shape == (0, CARD.dim)


def test_the_embedding_is_what_the_classifier_reads(model, held_out):
    points = held_out[0][:3]
    x = torch.from_numpy(np.stack([normalize_unit_sphere(p) for p in points]))
    net = model.model
    with torch.inference_mode():
        pooled = net.pool(x)
        feats = net.embedding(pooled)
        logits = net.classifier[-1](feats)  # dropout is the identity in eval mode
    assert pooled.shape == (3, net.pooled_dim) and feats.shape == (3, CARD.dim)
    np.testing.assert_allclose(model.embed(points, normalize=False).vectors, feats.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.class_probabilities(points), torch.softmax(logits, -1).numpy(), atol=1e-6)


def test_point_order_position_and_size_do_not_matter(model):
    pts = make_shape("helix", 5, n_points=OPTS["n_points"]).points
    shuffled = pts[np.random.default_rng(0).permutation(len(pts))]
    moved = pts * 3.5 + np.array([10.0, -4.0, 2.0], dtype=np.float32)
    v = model.embed([pts, shuffled, moved]).vectors
    np.testing.assert_allclose(v[1], v[0], atol=1e-5)
    np.testing.assert_allclose(v[2], v[0], atol=1e-4)


def test_the_same_shape_twice_is_closer_than_two_different_classes(model):
    """Each class's shape sampled twice (other points, another random pose) vs shapes of other classes."""
    n = OPTS["n_points"]
    first, second = [], []
    for name in CLASSES:
        shape = make_shape(name, 100, n_points=n)
        first.append(shape.points)
        again = shape.mesh.sample(n, seed=1)
        second.append(rotate_each(again[None].astype(np.float32), 5)[0])
    a, b = model.embed(first).vectors, model.embed(second).vectors
    sims = a @ b.T
    same = np.diag(sims).mean()
    different = sims[~np.eye(len(CLASSES), dtype=bool)].mean()
    assert same > different + 0.3, (same, different)  # here about 0.85 vs 0.31
    assert (sims.argmax(axis=1) == np.arange(len(CLASSES))).mean() >= 0.8


# -- inputs --------------------------------------------------------------------------------------
def test_npy_ply_meshes_and_tensors_are_read(model, tmp_path):
    from plyfile import PlyData, PlyElement

    shape = make_shape("torus", 3, n_points=OPTS["n_points"])
    np.save(tmp_path / "torus.npy", shape.points)
    vertex = np.array([tuple(p) for p in shape.points], dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(tmp_path / "torus.ply"))
    shape.mesh.export(tmp_path / "torus.obj")
    glb = shape.mesh.export(file_type="glb")  # bytes, recognised by their content
    inputs = [shape.points, torch.from_numpy(shape.points), tmp_path / "torus.npy", str(tmp_path / "torus.ply"),
              tmp_path / "torus.obj", glb]
    v = model.embed(inputs).vectors
    for row in v[1:4]:
        np.testing.assert_allclose(row, v[0], atol=1e-6)  # the same points, exactly
    assert (v[4:] @ v[0]).min() > 0.9  # the mesh, sampled by the loader: other points, the same torus
    assert [top[0][0] for top in model.classify(inputs, top_k=1)] == ["torus"] * len(inputs)


def test_meshes_of_every_class_are_recognized(model, tmp_path):
    """One .obj per class, read and sampled by zoo.points (evenly, unlike training): most land in their class."""
    paths = []
    for name in CLASSES:
        path = tmp_path / f"{name}.obj"
        make_shape(name, 42).mesh.export(path)
        paths.append(path)
    top = [classes[0][0] for classes in model.classify(paths, top_k=1)]
    right = sum(t == name for t, name in zip(top, CLASSES, strict=True))
    assert right >= len(CLASSES) - 2, dict(zip(CLASSES, top, strict=True))


def test_a_batch_array_is_many_clouds(model, held_out):
    batch = held_out[0][:4]
    assert model.embed(batch).vectors.shape == (4, CARD.dim)
    assert model.embed(batch[0]).vectors.shape == (1, CARD.dim)
    np.testing.assert_allclose(model.embed(batch, batch_size=3).vectors, model.embed(list(batch)).vectors, atol=1e-5)


def test_classify_and_embed_and_classify_agree(model, held_out):
    points, labels, _ = held_out
    pick = points[:: OPTS["eval_per_class"]]
    top = model.classify(pick, top_k=3)
    assert all(len(row) == 3 and row[0][1] >= row[1][1] >= row[2][1] for row in top)
    emb, both = model.embed_and_classify(pick, top_k=3)
    assert both == top and emb.vectors.shape == (len(pick), CARD.dim)
    probs = model.class_probabilities(pick)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert model.class_probabilities([]).shape == (0, len(CLASSES))


# -- refusals ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((50, 2), dtype=np.float32), "shape"),
        (np.full((50, 3), np.nan, dtype=np.float32), "NaN"),
        (np.ones((50, 3), dtype=np.float32), "same point"),
        ("/no/such/cloud.ply", "no such"),
        (b"definitely not a point cloud", "unrecognised"),
        (12, "expected a point cloud"),
    ],
)
def test_bad_inputs_are_refused_naming_their_index(model, bad, match):
    good = make_shape("cone", 0, n_points=64).points
    with pytest.raises(zoo.InvalidInputError, match=match) as info:
        model.embed([good, good, bad])
    assert info.value.index == 2 and "input[2]" in str(info.value)
    with pytest.raises(zoo.InvalidInputError, match=r"input\[1\]"):
        model.classify([good, bad])


def test_bad_options_are_refused(model):
    good = make_shape("cone", 0, n_points=64).points
    with pytest.raises(zoo.InvalidInputError, match="top_k"):
        model.classify(good, top_k=0)
    with pytest.raises(zoo.InvalidInputError, match="does not embed"):
        model.embed([good], modality="text")


def test_a_weight_file_that_differs_from_the_pin_is_refused():
    import dataclasses

    from zoo.sources import resolve

    (src,) = CARD.sources
    wrong = dataclasses.replace(src, sha256={"model.safetensors": "0" * 64})
    with pytest.raises(zoo.IntegrityError, match="model.safetensors"):
        resolve(dataclasses.replace(CARD, sources=(wrong,)))
