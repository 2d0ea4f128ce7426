"""zoo.shapes: every class builds, seeds fix the result, augmentations do what they say."""

from __future__ import annotations

import io

import numpy as np
import pytest
import trimesh

from zoo import shapes
from zoo.shapes import CLASSES, make_dataset, make_mesh, make_shape, rotate_each, shape_rng

REQUIRED = {"box", "sphere", "cylinder", "cone", "torus", "capsule", "pyramid", "icosahedron", "ring", "plane",
            "helix", "cross"}


def test_the_classes_are_the_issues_and_plain_words():
    assert set(CLASSES) >= REQUIRED and len(CLASSES) >= 12
    assert len(set(CLASSES)) == len(CLASSES)
    assert all(name.isalpha() and name.islower() for name in CLASSES), "class names double as text labels"


@pytest.mark.parametrize("name", CLASSES)
def test_every_class_gives_a_valid_mesh_and_cloud(name):
    mesh = make_mesh(name, 0)
    assert len(mesh.faces) > 0 and np.isfinite(mesh.vertices).all() and mesh.area > 0
    np.testing.assert_allclose(mesh.bounds.mean(axis=0), 0.0, atol=1e-9)  # canonical: centred
    assert 1.0 < mesh.extents.max() <= 3.0
    shape = make_shape(name, 0, n_points=300)
    assert shape.name == name and shape.label == CLASSES.index(name)
    assert shape.points.shape == (300, 3) and shape.points.dtype == np.float32
    assert np.isfinite(shape.points).all()


@pytest.mark.parametrize("name", ["cross", "star", "tetrahedron", "box"])
def test_closed_solids_face_outward(name):
    mesh = make_mesh(name, 3)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0


def test_the_same_seed_gives_the_same_shape_and_another_seed_does_not():
    a, b = make_shape("torus", 7), make_shape("torus", 7)
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.mesh.vertices, b.mesh.vertices)
    assert not np.allclose(make_shape("torus", 8).points, a.points)
    from_generator = make_mesh("helix", np.random.default_rng(5))
    np.testing.assert_array_equal(from_generator.vertices, make_mesh("helix", 5).vertices)


def test_a_dataset_is_fixed_by_its_seed_and_grouped_by_class():
    ds = make_dataset(11, 3, n_points=128)
    assert ds.points.shape == (3 * len(CLASSES), 128, 3) and len(ds) == 3 * len(CLASSES)
    assert list(ds.labels) == [i for i in range(len(CLASSES)) for _ in range(3)]
    assert ds.names[:4] == ["box", "box", "box", "sphere"] and ds.classes == CLASSES
    np.testing.assert_array_equal(make_dataset(11, 3, n_points=128).points, ds.points)
    assert not np.allclose(make_dataset(12, 3, n_points=128).points, ds.points)


def test_shapes_do_not_depend_on_the_other_classes_or_the_count():
    full = make_dataset(4, 2, n_points=64)
    cones = make_dataset(4, 5, n_points=64, classes=("cone",))
    cone = CLASSES.index("cone")
    np.testing.assert_array_equal(cones.points[:2], full.points[full.labels == cone])
    assert list(cones.labels) == [0] * 5 and cones.classes == ("cone",)
    np.testing.assert_array_equal(make_shape("cone", shape_rng(4, "cone", 3), n_points=64).points, cones.points[3])


def test_clean_canonical_shapes_have_their_defining_geometry():
    plane = make_shape("plane", 0, pose="none", augment=False).points
    np.testing.assert_allclose(plane[:, 2], 0.0, atol=1e-6)  # flat, in the XY plane
    sphere = make_shape("sphere", 0, pose="none", augment=False).points
    np.testing.assert_allclose(np.linalg.norm(sphere, axis=1), 1.0, atol=0.02)  # an icosphere of radius 1
    torus = make_shape("torus", 0, pose="none", augment=False).points
    assert np.abs(np.linalg.norm(torus[:, :2], axis=1) - 1.0).max() <= 0.45 + 1e-6  # tube around the unit circle
    ring = make_shape("ring", 0, pose="none", augment=False).points
    r = np.linalg.norm(ring[:, :2], axis=1)
    assert r.min() >= 0.6 - 1e-6 and r.max() <= 1.0 + 1e-6 and np.ptp(ring[:, 2]) <= 0.15 + 1e-6


def test_upright_poses_keep_z_up_and_any_poses_do_not():
    def worst_tilt(pose: str) -> float:
        """Largest angle (degrees) between a plane's normal and Z over eight posed planes."""
        tilts = []
        for i in range(8):
            pts = make_shape("plane", i, pose=pose, augment=False).points
            normal = np.linalg.eigh(np.cov((pts - pts.mean(axis=0)).T))[1][:, 0]  # least-variance direction
            tilts.append(np.degrees(np.arccos(min(1.0, abs(normal[2])))))
        return max(tilts)

    assert worst_tilt("none") < 1e-3
    assert worst_tilt("upright") <= shapes.TILT_DEGREES + 1e-3
    assert worst_tilt("any") > 45.0


def test_augmentation_keeps_the_count_and_adds_noise():
    clean = make_shape("box", 1, pose="none", augment=False).points
    noisy = make_shape("box", 1, n_points=1024).points
    assert noisy.shape == clean.shape == (1024, 3)
    half = np.abs(clean).max(axis=0)
    on_faces = np.isclose(np.abs(clean), half, atol=1e-6).any(axis=1)
    assert on_faces.all(), "clean box points lie on the faces"
    assert not np.allclose(noisy, clean)


def test_dropout_refills_with_copies_of_kept_points():
    pts = np.arange(30, dtype=float).reshape(10, 3)
    out = shapes._drop_points(pts, 0.3, np.random.default_rng(0))
    assert out.shape == pts.shape
    assert len({tuple(p) for p in out}) == 7  # three dropped, three repeats
    assert {tuple(p) for p in out} <= {tuple(p) for p in pts}


def test_rotate_each_is_a_seeded_rigid_motion_per_cloud():
    ds = make_dataset(0, 1, n_points=200)
    rot = rotate_each(ds.points, 9)
    np.testing.assert_array_equal(rot, rotate_each(ds.points, 9))
    assert not np.allclose(rot, rotate_each(ds.points, 10))
    centre = ds.points.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(rot.mean(axis=1, keepdims=True), centre, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(rot - centre, axis=2), np.linalg.norm(ds.points - centre, axis=2),
                               atol=1e-4)
    assert not np.allclose(rot, ds.points)


def test_random_rotations_are_proper_rotations():
    rng = np.random.default_rng(0)
    for _ in range(20):
        r = shapes.random_rotation(rng)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.isclose(np.linalg.det(r), 1.0)


@pytest.mark.parametrize("file_type", ["glb", "obj"])
def test_meshes_export_for_a_demo(file_type):
    mesh = make_shape("star", 2).mesh
    data = mesh.export(file_type=file_type)
    back = trimesh.load(io.BytesIO(data if isinstance(data, bytes) else data.encode()), file_type=file_type,
                        force="mesh")
    assert len(back.faces) == len(mesh.faces)
    np.testing.assert_allclose(back.area, mesh.area, rtol=1e-5)


def test_unknown_names_and_poses_are_refused():
    with pytest.raises(ValueError, match="unknown shape class 'teapot'"):
        make_mesh("teapot", 0)
    with pytest.raises(ValueError, match="unknown shape class"):
        make_shape("teapot", 0)
    with pytest.raises(ValueError, match="pose must be"):
        make_shape("box", 0, pose="sideways")
