"""Seeded, labelled 3D shapes: meshes and point clouds for training, tests, demos and evaluations.

The zoo trains one small point encoder itself (``pointnet-mini``) and needs data whose labels are
true by construction, that anyone can regenerate bit for bit from a seed, and whose class names
read as plain words ("torus", "cone", ...) so they can serve as text labels later. This module
makes such shapes with trimesh:

- :func:`make_mesh` builds one shape of a class in its canonical pose (Z up, centred) with random
  proportions (a box's sides, a torus's tube, a helix's turns, ...);
- :func:`make_shape` poses that mesh (anisotropic stretch, rotation, scale, offset) and samples a
  point cloud from its surface, with Gaussian point noise and random point dropout;
- :func:`make_dataset` makes ``per_class`` shapes of every class from one seed;
- :func:`rotate_each` gives each cloud of a set an extra, uniformly random 3D rotation (the
  "rotated" evaluation of pointnet-mini).

Determinism: every shape draws from its own generator, ``shape_rng(seed, name, index)``, keyed by
the class *name* (not its position), so shape ``i`` of class "cone" is the same whatever other
classes or counts a dataset asks for. Only numpy and trimesh are used; the results are the same
on any machine with the pinned versions (float rounding aside).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
import trimesh

#: Class names, in label order. New classes go at the end so existing labels keep their numbers.
CLASSES: tuple[str, ...] = (
    "box", "sphere", "cylinder", "cone", "torus", "capsule", "pyramid", "icosahedron",
    "ring", "plane", "helix", "cross", "tetrahedron", "bowl", "star",
)

#: What people call each class, for text models that do not know the geometric word (a text
#: model puts "torus" near "cone"; "a ring-shaped donut" is what it understands). Written once by
#: hand; ConSE experts may use them as the class labels (zoo-bind-mini does, see its card).
EVERYDAY_NAMES: dict[str, str] = {
    "box": "box or cube",
    "sphere": "sphere or ball",
    "cylinder": "cylinder, like a can or a pipe",
    "cone": "cone, like a traffic cone",
    "torus": "torus, a ring-shaped donut",
    "capsule": "capsule, like a pill",
    "pyramid": "pyramid",
    "icosahedron": "icosahedron, a twenty-faced polyhedron",
    "ring": "ring, a thin flat washer",
    "plane": "flat plane, a sheet",
    "helix": "helix, a coiled spring",
    "cross": "cross, a plus sign",
    "tetrahedron": "tetrahedron, a triangular pyramid",
    "bowl": "bowl or dish",
    "star": "star",
}

Pose = Literal["upright", "any", "none"]

#: Default augmentation ranges (see :func:`make_shape`).
SCALE = (0.5, 2.0)  # overall size factor
STRETCH = 0.2  # each axis is scaled by exp(U(-STRETCH, STRETCH)): at most about x1.22
TILT_DEGREES = 15.0  # "upright" pose: random heading, tilted at most this far from Z up
NOISE = (0.0, 0.01)  # Gaussian point noise, sigma as a fraction of the shape's radius
DROPOUT = (0.0, 0.15)  # fraction of points dropped (and refilled with copies of kept points)


# -- building blocks ----------------------------------------------------------------------------
def _prism(polygon: np.ndarray, height: float) -> trimesh.Trimesh:
    """Extrude a 2-D polygon (K, 2), counter-clockwise and star-shaped around the origin, along Z.

    The caps are fans from the origin, which is exact for star-shaped outlines (a cross, a star)
    and needs no triangulation library.
    """
    k = len(polygon)
    ring = np.arange(k)
    nxt = (ring + 1) % k
    z0, z1 = -height / 2, height / 2
    verts = np.vstack([
        np.c_[polygon, np.full(k, z0)], np.c_[polygon, np.full(k, z1)], [[0, 0, z0], [0, 0, z1]],
    ])
    bottom_c, top_c = 2 * k, 2 * k + 1
    faces = np.vstack([
        np.c_[ring, nxt + k, ring + k], np.c_[ring, nxt, nxt + k],  # sides (outward)
        np.c_[np.full(k, bottom_c), nxt, ring],  # bottom cap, facing -Z
        np.c_[np.full(k, top_c), ring + k, nxt + k],  # top cap, facing +Z
    ])
    return trimesh.Trimesh(verts, faces, process=False)


def _tube(path: np.ndarray, radius: float, sections: int = 12) -> trimesh.Trimesh:
    """An open tube of ``radius`` around a 3-D polyline ``path`` (K, 3), with parallel-transported frames."""
    tangents = np.gradient(path, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    normal = np.cross(tangents[0], [0.0, 0.0, 1.0] if abs(tangents[0][2]) < 0.9 else [1.0, 0.0, 0.0])
    normal /= np.linalg.norm(normal)
    normals = []
    for t in tangents:  # parallel transport: remove the tangent component, renormalize
        normal = normal - t * (normal @ t)
        normal /= np.linalg.norm(normal)
        normals.append(normal)
    normals = np.array(normals)
    binormals = np.cross(tangents, normals)
    angles = np.linspace(0, 2 * np.pi, sections, endpoint=False)
    circle = np.cos(angles)[None, :, None] * normals[:, None] + np.sin(angles)[None, :, None] * binormals[:, None]
    verts = (path[:, None] + radius * circle).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(len(path) - 1), np.arange(sections), indexing="ij")
    a, b = i * sections + j, i * sections + (j + 1) % sections
    faces = np.vstack([np.c_[a.ravel(), b.ravel(), (b + sections).ravel()],
                       np.c_[a.ravel(), (b + sections).ravel(), (a + sections).ravel()]])
    return trimesh.Trimesh(verts, faces, process=False)


def _rectangle(width: float, depth: float) -> trimesh.Trimesh:
    """A flat rectangle in the XY plane (two triangles): a plane with no thickness."""
    x, y = width / 2, depth / 2
    verts = np.array([[-x, -y, 0], [x, -y, 0], [x, y, 0], [-x, y, 0]], dtype=float)
    return trimesh.Trimesh(verts, [[0, 1, 2], [0, 2, 3]], process=False)


def _star_outline(points: int, outer: float, inner: float) -> np.ndarray:
    angles = np.pi / 2 + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.c_[radii * np.cos(angles), radii * np.sin(angles)]


def _cross_outline(arm: float, half_width: float) -> np.ndarray:
    a, w = arm, half_width
    return np.array([[w, -w], [a, -w], [a, w], [w, w], [w, a], [-w, a], [-w, w], [-a, w],
                     [-a, -w], [-w, -w], [-w, -a], [w, -a]])


# -- one mesh per class -------------------------------------------------------------------------
def _build(name: str, rng: np.random.Generator) -> trimesh.Trimesh:
    """The class's mesh with random proportions, about 2 units across, before centring."""
    u = rng.uniform
    if name == "box":
        return trimesh.creation.box(extents=u(0.6, 2.0, size=3))
    if name == "sphere":
        return trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    if name == "cylinder":
        return trimesh.creation.cylinder(radius=u(0.4, 1.0), height=u(1.0, 2.5), sections=48)
    if name == "cone":
        return trimesh.creation.cone(radius=u(0.5, 1.0), height=u(1.0, 2.2), sections=48)
    if name == "torus":
        return trimesh.creation.torus(major_radius=1.0, minor_radius=u(0.25, 0.45))
    if name == "capsule":
        r = u(0.3, 0.6)
        return trimesh.creation.capsule(height=r * u(2.0, 4.0), radius=r, count=[24, 24])
    if name == "pyramid":  # a square base: a four-sided cone
        return trimesh.creation.cone(radius=1.0, height=u(1.0, 2.2), sections=4)
    if name == "icosahedron":
        return trimesh.creation.icosahedron()
    if name == "ring":  # a flat washer: thinner than any torus's tube, so a squashed torus is still a torus
        return trimesh.creation.annulus(r_min=u(0.6, 0.85), r_max=1.0, height=u(0.05, 0.15), sections=64)
    if name == "plane":
        return _rectangle(u(1.2, 2.0), u(1.2, 2.0))
    if name == "helix":
        turns, pitch = u(2.5, 5.0), u(0.35, 0.7)
        t = np.linspace(0, 2 * np.pi * turns, int(48 * turns))
        path = np.c_[np.cos(t), np.sin(t), pitch * t / (2 * np.pi)]
        return _tube(path, radius=u(0.05, 0.1))  # coils stay at least 0.15 apart
    if name == "cross":  # a plus sign, as thick as its arms are wide
        w = u(0.15, 0.3)
        return _prism(_cross_outline(arm=1.0, half_width=w), height=2 * w * u(0.8, 1.2))
    if name == "tetrahedron":
        verts = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float) / np.sqrt(3)
        return trimesh.Trimesh(verts, [[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]], process=False)
    if name == "bowl":  # an open spherical cap: from the bottom pole to a rim 40 deg below .. 20 deg above the equator
        t = np.linspace(-np.pi / 2, np.radians(u(-40.0, 20.0)), 24)
        return trimesh.creation.revolve(np.c_[np.cos(t), np.sin(t)], sections=48)  # profile (radius, height)
    if name == "star":  # a five-pointed star slab
        outline = _star_outline(5, outer=1.0, inner=u(0.35, 0.5))
        return _prism(outline, height=u(0.2, 0.45))
    raise ValueError(f"unknown shape class {name!r}; the classes are {', '.join(CLASSES)}")


def make_mesh(name: str, rng: np.random.Generator | int) -> trimesh.Trimesh:
    """One mesh of class ``name`` in its canonical pose: Z up, bounding box centred on the origin.

    Proportions are random (drawn from ``rng``, a Generator or an int seed); size is about 2
    units across. Export with ``mesh.export("shape.glb")`` or ``.obj``.
    """
    rng = np.random.default_rng(rng)
    mesh = _build(name, rng)
    mesh.apply_translation(-mesh.bounds.mean(axis=0))
    return mesh


# -- poses and point clouds ---------------------------------------------------------------------
def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3-D rotation matrix (3, 3), from a normalized Gaussian quaternion."""
    w, x, y, z = (q := rng.normal(size=4)) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _axis_rotation(axis: int, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    rot = np.eye(3)
    rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
    return rot


def _pose_rotation(pose: Pose, rng: np.random.Generator) -> np.ndarray:
    if pose == "none":
        return np.eye(3)
    if pose == "any":
        return random_rotation(rng)
    if pose == "upright":  # tilt about a random horizontal axis, then a random heading about Z
        tilt = _axis_rotation(0, np.radians(rng.uniform(0, TILT_DEGREES)))
        spin = _axis_rotation(2, rng.uniform(0, 2 * np.pi))
        return spin @ tilt @ _axis_rotation(2, rng.uniform(0, 2 * np.pi))
    raise ValueError(f"pose must be 'upright', 'any' or 'none', not {pose!r}")


@dataclass(frozen=True)
class Shape:
    """One generated shape: its class, its posed mesh and a point cloud sampled from it."""

    name: str
    label: int  # index in CLASSES
    mesh: trimesh.Trimesh  # posed (stretched, rotated, scaled, moved); no noise
    points: np.ndarray  # (n_points, 3) float32, with noise and dropout


def _drop_points(points: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Drop a random ``fraction`` of the points and refill with copies of kept ones (count unchanged)."""
    n = len(points)
    n_drop = int(round(fraction * n))
    if n_drop == 0:
        return points
    order = rng.permutation(n)
    kept = order[n_drop:]
    refill = rng.choice(kept, size=n_drop)
    return points[np.concatenate([kept, refill])]


def make_shape(
    name: str,
    rng: np.random.Generator | int,
    *,
    n_points: int = 1024,
    pose: Pose = "upright",
    augment: bool = True,
) -> Shape:
    """Make one random shape of class ``name``: a posed mesh and ``n_points`` surface points.

    Args:
        name: one of :data:`CLASSES`.
        rng: a numpy Generator or an int seed; the result depends only on it.
        n_points: points sampled from the surface (area-weighted).
        pose: "upright" (random heading, tilt up to ``TILT_DEGREES`` from Z up), "any" (uniform
            random 3-D rotation) or "none" (canonical pose).
        augment: apply the random stretch, scale, offset, noise and dropout (see the module's
            constants); False gives the clean canonical-size shape in the chosen pose.
    """
    if name not in CLASSES:
        raise ValueError(f"unknown shape class {name!r}; the classes are {', '.join(CLASSES)}")
    rng = np.random.default_rng(rng)
    mesh = make_mesh(name, rng)
    transform = np.eye(4)
    stretch = np.exp(rng.uniform(-STRETCH, STRETCH, size=3)) if augment else np.ones(3)
    scale = rng.uniform(*SCALE) if augment else 1.0
    transform[:3, :3] = scale * _pose_rotation(pose, rng) @ np.diag(stretch)
    transform[:3, 3] = rng.uniform(-1.0, 1.0, size=3) if augment else 0.0
    mesh.apply_transform(transform)
    points = trimesh.sample.sample_surface(mesh, n_points, seed=int(rng.integers(2**31)))[0]
    if augment:
        radius = np.linalg.norm(points - points.mean(axis=0), axis=1).max()
        points = points + rng.normal(scale=rng.uniform(*NOISE) * radius, size=points.shape)
        points = _drop_points(points, rng.uniform(*DROPOUT), rng)
    return Shape(name=name, label=CLASSES.index(name), mesh=mesh, points=points.astype(np.float32))


# -- data sets ----------------------------------------------------------------------------------
def shape_rng(seed: int, name: str, index: int) -> np.random.Generator:
    """The generator of shape ``index`` of class ``name`` in the data set of ``seed``."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), index])


@dataclass(frozen=True)
class ShapeSet:
    """Point clouds with integer labels: ``points`` (N, n_points, 3) float32, ``labels`` (N,) int64."""

    points: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        """The class name of every cloud."""
        return [self.classes[i] for i in self.labels]

    def __len__(self) -> int:
        return len(self.labels)


def make_dataset(
    seed: int,
    per_class: int,
    *,
    n_points: int = 1024,
    classes: tuple[str, ...] = CLASSES,
    pose: Pose = "upright",
    augment: bool = True,
) -> ShapeSet:
    """``per_class`` shapes of every class, grouped by class; the same for the same arguments.

    Labels index ``classes`` (default :data:`CLASSES`). Shape ``i`` of a class comes from
    ``shape_rng(seed, name, i)``, so a larger ``per_class`` only appends shapes.
    """
    points, labels = [], []
    for label, name in enumerate(classes):
        for i in range(per_class):
            shape = make_shape(name, shape_rng(seed, name, i), n_points=n_points, pose=pose, augment=augment)
            points.append(shape.points)
            labels.append(label)
    stacked = np.stack(points) if points else np.zeros((0, n_points, 3), dtype=np.float32)
    return ShapeSet(points=stacked, labels=np.asarray(labels, dtype=np.int64), classes=tuple(classes))


def rotate_each(points: np.ndarray, seed: int) -> np.ndarray:
    """Rotate every cloud of ``points`` (N, P, 3) about its centroid by its own uniformly random rotation.

    Cloud ``i`` gets the rotation drawn from ``default_rng([seed, i])``.
    """
    out = np.empty_like(points)
    for i, cloud in enumerate(points):
        rot = random_rotation(np.random.default_rng([seed, i]))
        centre = cloud.mean(axis=0)
        out[i] = (cloud - centre) @ rot.T + centre
    return out
