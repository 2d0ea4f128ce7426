"""Safe point-cloud input: arrays, .npy, .ply and meshes to a fixed point count, and refusals that name the item."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
import trimesh
from plyfile import PlyData, PlyElement

from zoo import points
from zoo.errors import InputTooLargeError, InvalidInputError
from zoo.points import load_point_cloud, load_point_clouds, normalize_unit_sphere

N = 1000


def _cloud(n: int = 500, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3))


def _npy(a: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, **kw)
    return buf.getvalue()


def _ply(xyz: np.ndarray, rgb: np.ndarray | None = None, text: bool = False) -> bytes:
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if rgb is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    rows = np.empty(len(xyz), dtype=fields)
    for i, c in enumerate("xyz"):
        rows[c] = xyz[:, i]
    if rgb is not None:
        for i, c in enumerate(("red", "green", "blue")):
            rows[c] = rgb[:, i]
    buf = io.BytesIO()
    PlyData([PlyElement.describe(rows, "vertex")], text=text).write(buf)
    return buf.getvalue()


# ---------------------------------------------------------------- arrays
def test_arrays_and_tensors_come_back_at_the_model_count_with_default_colour():
    a = _cloud()
    for form in (a, a.astype(np.float32), torch.from_numpy(a), a.tolist()):
        out = load_point_cloud(form, n_points=N)
        assert out.shape == (N, 6) and out.dtype == np.float32
        assert np.all(out[:, 3:] == np.float32(0.4))
    assert np.all(load_point_cloud(a, n_points=N, default_rgb=1.0)[:, 3:] == 1.0)


def test_colours_in_0_255_are_scaled_and_bad_colours_refused():
    a = np.concatenate([_cloud(), np.full((500, 3), 255.0)], axis=1)
    assert np.allclose(load_point_cloud(a, n_points=500)[:, 3:], 1.0)
    a[0, 3] = -1
    with pytest.raises(InvalidInputError, match="colours"):
        load_point_cloud(a, n_points=500)


def test_big_clouds_are_a_seeded_ordered_subset_and_small_ones_keep_every_point():
    a = _cloud(5000)
    sub = load_point_cloud(a, n_points=N)[:, :3]
    rows = {tuple(r) for r in a.astype(np.float32)}
    assert all(tuple(r) in rows for r in sub)
    idx = [int(np.flatnonzero((a.astype(np.float32) == r).all(axis=1))[0]) for r in sub[:50]]
    assert idx == sorted(idx)  # original order kept
    assert np.array_equal(sub, load_point_cloud(a, n_points=N)[:, :3])  # deterministic
    assert not np.array_equal(sub, load_point_cloud(a, n_points=N, seed=1)[:, :3])
    small = load_point_cloud(a[:300], n_points=N)[:, :3]
    assert np.array_equal(small[:300], a[:300].astype(np.float32))
    assert len(np.unique(small, axis=0)) == 300


def test_the_same_cloud_gives_the_same_points_anywhere_in_a_batch():
    a, b = _cloud(3000, 1), _cloud(3000, 2)
    first, second = load_point_clouds([a, b], n_points=N), load_point_clouds([b, a], n_points=N)
    assert np.array_equal(first[0], second[1]) and np.array_equal(first[1], second[0])


@pytest.mark.parametrize(("bad", "match"), [
    (np.zeros((0, 3)), "at least 2 points"),
    (np.ones((1, 3)), "at least 2 points"),
    (np.ones((100, 3)), "same point"),
    (np.array([[0.0, 0.0, np.nan], [1.0, 1.0, 1.0]]), "NaN"),
    (np.array([[0.0, 0.0, np.inf], [1.0, 1.0, 1.0]]), "NaN"),
    (np.array([[0.0, 0.0, 1e39], [1.0, 1.0, 1.0]]), "beyond float32's range"),  # found by the .npy fuzz suite
    (np.zeros((10, 4)), r"\(N, 3\) or \(N, 6\)"),
    (np.zeros((10, 3, 1)), r"\(N, 3\) or \(N, 6\)"),
    (np.zeros(30), r"\(N, 3\) or \(N, 6\)"),
    (np.array([["a", "b", "c"]] * 3), "numbers"),
    (np.ones((5, 3), dtype=bool), "numbers"),
    (42, "expected a point cloud"),
])
def test_bad_clouds_are_refused_naming_the_item(bad, match):
    with pytest.raises(InvalidInputError, match=match) as err:
        load_point_clouds([_cloud(), bad], n_points=N)
    assert err.value.index == 1 and str(err.value).startswith("input[1]: ")


def test_n_points_must_be_a_positive_integer():
    for bad in (0, -5, 2.5, True):
        with pytest.raises(InvalidInputError, match="n_points"):
            load_point_cloud(_cloud(), n_points=bad)


# ---------------------------------------------------------------- .npy
def test_npy_files_and_bytes(tmp_path):
    a = _cloud()
    path = tmp_path / "c.npy"
    path.write_bytes(_npy(a))
    for form in (path, str(path), _npy(a)):
        assert np.array_equal(load_point_cloud(form, n_points=500)[:, :3], a.astype(np.float32))


def test_pickled_npy_is_refused_without_unpickling(tmp_path, monkeypatch):
    obj = np.empty(2, dtype=object)
    obj[:] = [{"xyz": _cloud()}, None]
    data = _npy(obj, allow_pickle=True)
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    with pytest.raises(InvalidInputError):
        load_point_cloud(data, n_points=N)
    obj2 = np.empty((4, 3), dtype=object)
    with pytest.raises(InvalidInputError, match="pickle"):
        load_point_cloud(_npy(obj2, allow_pickle=True), n_points=N)


def test_npy_declaring_a_billion_points_is_refused_before_reading():
    header = _npy(np.zeros((2, 3), dtype=np.float32)).replace(b"(2, 3)", b"(2000000000, 3)")
    with pytest.raises(InputTooLargeError, match="2,000,000,000 points") as err:
        load_point_cloud(header, n_points=N)
    assert err.value.limit == points.MAX_POINTS


def test_truncated_npy_is_invalid():
    with pytest.raises(InvalidInputError):
        load_point_cloud(_npy(_cloud())[:200], n_points=N)


# ---------------------------------------------------------------- .ply
@pytest.mark.parametrize("text", [False, True])
def test_ply_clouds_with_and_without_colour(text):
    xyz = _cloud().astype(np.float32)
    rgb = np.random.default_rng(3).integers(0, 256, size=(500, 3)).astype(np.uint8)
    out = load_point_cloud(_ply(xyz, rgb, text=text), n_points=500)
    assert np.allclose(out[:, :3], xyz, atol=1e-6)
    assert np.allclose(out[:, 3:], rgb / 255.0, atol=1e-6)
    assert np.all(load_point_cloud(_ply(xyz, text=text), n_points=500)[:, 3:] == np.float32(0.4))


def test_ply_headers_that_lie_are_refused():
    data = _ply(_cloud().astype(np.float32))
    huge = data.replace(b"element vertex 500", b"element vertex 900000000")
    with pytest.raises(InputTooLargeError, match="900,000,000 points"):
        load_point_cloud(huge, n_points=N)
    short = data.replace(b"element vertex 500", b"element vertex 5000")
    with pytest.raises(InvalidInputError, match="too short"):
        load_point_cloud(short, n_points=N)
    with pytest.raises(InvalidInputError, match="end_header"):
        load_point_cloud(b"ply\nformat ascii 1.0\n" + b"comment x\n" * 10000, n_points=N)


# ---------------------------------------------------------------- meshes
@pytest.mark.parametrize("ext", ["obj", "stl", "glb", "off", "ply"])
def test_meshes_are_sampled_evenly_over_their_surface(ext, tmp_path):
    mesh = trimesh.creation.box(extents=(2.0, 1.0, 0.5))
    data = mesh.export(file_type=ext)
    data = data.encode() if isinstance(data, str) else data
    path = tmp_path / f"box.{ext}"
    path.write_bytes(data)
    for form in (path, data):
        out = load_point_cloud(form, n_points=2000)
        xyz = out[:, :3].astype(np.float64)
        assert out.shape == (2000, 6)
        # every sample lies on the box's surface: on one of its six faces
        on_face = np.isclose(np.abs(xyz), [1.0, 0.5, 0.25], atol=1e-5).any(axis=1)
        assert on_face.all()
        # evenly: the two big faces (2 x 1 each, 56% of the area) get about that share
        share = np.isclose(np.abs(xyz[:, 2]), 0.25, atol=1e-5).mean()
        assert 0.5 < share < 0.62
    assert np.array_equal(load_point_cloud(path, n_points=2000), load_point_cloud(path, n_points=2000))


def test_broken_and_empty_meshes_are_refused(tmp_path):
    cases = {
        "garbage.obj": b"this is not a mesh at all\n",
        "empty.off": b"OFF\n0 0 0\n",
        "flat.obj": b"v 0 0 0\nv 0 0 0\nv 0 0 0\nf 1 2 3\n",
        "notglb.glb": b"glTF" + b"\xff" * 40,
        "named.npy": b"not numpy",
        "shape.xyz": b"1 2 3\n",
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(InvalidInputError) as err:
            load_point_clouds([_cloud(), path], n_points=N)
        assert err.value.index == 1, name
    with pytest.raises(InvalidInputError, match="no such"):
        load_point_cloud(tmp_path / "missing.ply", n_points=N)
    with pytest.raises(InvalidInputError, match="empty"):
        load_point_cloud(b"", n_points=N)
    with pytest.raises(InvalidInputError, match="unrecognised"):
        load_point_cloud(b"\x00\x01 random bytes", n_points=N)


def test_file_size_caps(tmp_path, monkeypatch):
    path = tmp_path / "c.npy"
    path.write_bytes(_npy(_cloud()))
    monkeypatch.setattr(points, "MAX_FILE_BYTES", 1000)
    with pytest.raises(InputTooLargeError, match="over the limit of 1,000") as err:
        load_point_cloud(path, n_points=N)
    assert err.value.limit == 1000
    monkeypatch.setattr(points, "MAX_FILE_BYTES", 10**9)
    monkeypatch.setattr(points, "MAX_MESH_BYTES", 100)
    with pytest.raises(InputTooLargeError, match="mesh file"):
        load_point_cloud(trimesh.creation.icosphere().export(file_type="stl"), n_points=N)


# ---------------------------------------------------------------- normalization
def test_normalize_unit_sphere_centres_and_scales():
    xyz = _cloud() * 7 + 3
    out = normalize_unit_sphere(xyz)
    assert out.dtype == np.float32
    assert np.allclose(out.mean(axis=0), 0, atol=1e-6)
    assert np.isclose(np.linalg.norm(out, axis=1).max(), 1.0)
    with pytest.raises(InvalidInputError):
        normalize_unit_sphere(np.ones((5, 3)))


def test_cloud_lists_take_batches_single_clouds_and_files():
    from zoo.points import as_cloud_list

    batch = np.zeros((4, 100, 3))
    assert len(as_cloud_list(batch)) == 4 and len(as_cloud_list(torch.zeros(2, 10, 6))) == 2
    assert len(as_cloud_list(np.zeros((100, 3)))) == 1
    assert as_cloud_list("shape.ply") == ["shape.ply"] and as_cloud_list(b"ply") == [b"ply"]
    assert len(as_cloud_list([np.zeros((5, 3)), "a.obj"])) == 2
