"""Safe point-cloud input: arrays, ``.npy``, ``.ply`` and meshes, checked and sampled to a model's point count.

Every point model in the zoo takes a fixed number of points per cloud; this module turns one
user item into exactly that many rows of ``x, y, z, r, g, b`` (float32, rgb in [0, 1]) or
raises an error that names the item:

- arrays or tensors of shape (N, 3) or (N, 6); colours in [0, 1], or 0..255 (divided by 255);
- ``.npy`` files, read with ``allow_pickle=False`` after the header has been checked (shape,
  dtype, size) so a file that declares a billion points is refused before anything is read;
- ``.ply`` point clouds (plyfile), header checked the same way; a PLY with faces is a mesh;
- meshes (``.obj``, ``.stl``, ``.glb``/``.gltf``, ``.off``, ``.ply`` with faces, via trimesh),
  sampled evenly over their surface (``trimesh.sample.sample_surface_even``, topped up with
  plain area-weighted samples where the even sampler returns fewer).

Clouds with more points than the model wants are cut to a seeded random subset (in the
original order); clouds with fewer keep every point plus seeded random repeats. The seed
never depends on the item's position, so a cloud gives the same points anywhere in a batch.
Coordinates come back as given: models centre and scale them (``normalize_unit_sphere``)
and swap axes as their training data needed.

Refused: empty or one-point clouds, clouds whose points are all the same, NaN or infinite
values, wrong shapes and dtypes, ragged point lists, pickled ``.npy`` files, files over
``MAX_FILE_BYTES`` (meshes over ``MAX_MESH_BYTES``), clouds or headers with more than
``MAX_POINTS`` points (``MAX_FACES`` faces), and paths that are not regular files (FIFOs,
devices, directories). Every size a file declares (``.npy`` shape, PLY element counts in ASCII
and binary, OFF counts, glTF accessor and buffer-view sizes) is checked against the file's own
size before anything is allocated for it, and meshes whose faces point outside their vertices
are refused. Errors from numpy, plyfile and trimesh come back as InvalidInputError naming the item.
"""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import InputTooLargeError, InvalidInputError, require
from zoo.inputs.limits import read_checked, shown

#: Largest point or mesh file read, in bytes.
MAX_FILE_BYTES = 256 * 1024 * 1024
#: Meshes are parsed into Python objects by trimesh: a tighter cap keeps parsing time bounded.
MAX_MESH_BYTES = 64 * 1024 * 1024
#: Most points a file may declare (a ``.npy`` or ``.ply`` header), before any is read.
MAX_POINTS = 50_000_000
#: Largest coordinate magnitude: clouds are float32 (a larger float64 value would become infinite).
_FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Most faces a mesh may have.
MAX_FACES = 5_000_000

MESH_SUFFIXES = (".obj", ".stl", ".glb", ".gltf", ".off", ".ply")
CLOUD_SUFFIXES = (".npy", ".ply")
_PLY_HEADER_LIMIT = 64 * 1024
_NPY_HEADER_LIMIT = 10_000
_PLY_SIZES = {"char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2, "int16": 2, "uint16": 2,
              "int": 4, "uint": 4, "int32": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8}


# ---------------------------------------------------------------------------- arrays
def _as_cloud(a: Any, index: int) -> np.ndarray:
    """Validate an (N, 3) / (N, 6) array and return it as float64 xyz[rgb]."""
    try:
        if type(a).__module__ == "torch" and hasattr(a, "detach"):
            a = a.detach().cpu()
            a = (a.float() if str(a.dtype) == "torch.bfloat16" else a).numpy()
        a = np.asarray(a)
    except (ValueError, TypeError, OverflowError, RuntimeError) as exc:  # ragged lists, unconvertible tensors
        raise InvalidInputError(f"a point cloud must be a rectangular (N, 3) or (N, 6) array of numbers "
                                f"({type(exc).__name__}: {str(exc)[:200]})", index=index) from None
    if a.dtype == object or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise InvalidInputError(f"point coordinates must be numbers, not {a.dtype}", index=index)
    if a.ndim != 2 or a.shape[1] not in (3, 6):
        raise InvalidInputError(f"a point cloud must have shape (N, 3) or (N, 6), got {a.shape}", index=index)
    if a.shape[0] < 2:
        raise InvalidInputError(f"a point cloud needs at least 2 points, got {a.shape[0]}", index=index)
    if a.shape[0] > MAX_POINTS:
        raise InputTooLargeError(f"point cloud has {a.shape[0]:,} points, over the limit of {MAX_POINTS:,}",
                                 index=index, limit=MAX_POINTS)
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise InvalidInputError("point cloud has NaN or infinite values", index=index)
    if np.abs(a).max() > _FLOAT32_MAX:  # finite as float64, infinite once made float32
        raise InvalidInputError(f"point cloud has values beyond float32's range (|v| <= {_FLOAT32_MAX:.4g})",
                                index=index)
    xyz = a[:, :3]
    if not (xyz != xyz[0]).any():
        raise InvalidInputError("every point of the cloud is the same point: it has no shape", index=index)
    if a.shape[1] == 6:
        rgb = a[:, 3:]
        if rgb.min() < 0 or rgb.max() > 255:
            raise InvalidInputError("colours must be in [0, 1] or 0..255", index=index)
        if rgb.max() > 1:
            a[:, 3:] = rgb / 255.0
    return a


def _resample(cloud: np.ndarray, n_points: int, seed: int) -> np.ndarray:
    """Exactly ``n_points`` rows: a seeded subset (original order kept) or every row plus seeded repeats."""
    n = len(cloud)
    if n == n_points:
        return cloud
    rng = np.random.default_rng(seed)
    if n > n_points:
        idx = np.sort(rng.choice(n, n_points, replace=False))
    else:
        idx = np.concatenate([np.arange(n), rng.choice(n, n_points - n, replace=True)])
    return cloud[idx]


def _with_colour(cloud: np.ndarray, default_rgb: float) -> np.ndarray:
    if cloud.shape[1] == 6:
        return cloud
    return np.concatenate([cloud, np.full((len(cloud), 3), default_rgb)], axis=1)


# ---------------------------------------------------------------------------- files
def _read_bytes(item: Any, index: int) -> tuple[bytes, str]:
    """The item's bytes and its lower-case suffix ('' for raw bytes), with the size cap applied."""
    suffix = Path(item).suffix.lower() if isinstance(item, (str, os.PathLike)) else ""
    if suffix and suffix not in CLOUD_SUFFIXES + MESH_SUFFIXES:
        raise InvalidInputError(f"unsupported point-cloud file type {suffix!r} "
                                f"(use one of {', '.join(CLOUD_SUFFIXES + MESH_SUFFIXES[:-1])})", index=index)
    return read_checked(item, index, what="point-cloud", limit=MAX_FILE_BYTES), suffix


def _sniff(data: bytes) -> str:
    """Guess a file type from its first bytes (raw bytes have no name to go by)."""
    head = data[:256]
    if head.startswith(b"\x93NUMPY"):
        return ".npy"
    if head.startswith(b"ply"):
        return ".ply"
    if head.startswith(b"glTF"):
        return ".glb"
    if head.lstrip().startswith(b"OFF"):
        return ".off"
    if len(data) >= 84 and 84 + 50 * int.from_bytes(data[80:84], "little") == len(data):
        return ".stl"  # binary STL: 80-byte header, face count, 50 bytes per face
    if head.lstrip().startswith(b"solid"):
        return ".stl"
    if re.search(rb"(?m)^\s*v\s", data[:65536]):
        return ".obj"
    return ""


def _npy(data: bytes, index: int) -> np.ndarray:
    """A ``.npy`` array, its header checked against the file's size before any allocation; pickles are refused."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream, max_header_size=_NPY_HEADER_LIMIT)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream, max_header_size=_NPY_HEADER_LIMIT)
    except Exception as exc:  # numpy's header parser raises ValueError, SyntaxError, tokenize.TokenError...
        raise InvalidInputError(f"not a valid .npy file: {str(exc)[:200]}", index=index) from None
    if dtype.hasobject:
        raise InvalidInputError(".npy holds Python objects (a pickle); only numeric arrays are read", index=index)
    if len(shape) != 2 or shape[1] not in (3, 6) or shape[0] < 0:
        raise InvalidInputError(f".npy array must have shape (N, 3) or (N, 6), got {shape}", index=index)
    if shape[0] > MAX_POINTS:
        raise InputTooLargeError(f".npy declares {shape[0]:,} points, over the limit of {MAX_POINTS:,}",
                                 index=index, limit=MAX_POINTS)
    if dtype.kind not in "iuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise InvalidInputError(f".npy point coordinates must be plain numbers, not {dtype}", index=index)
    offset, count = stream.tell(), shape[0] * shape[1]
    if count * dtype.itemsize > len(data) - offset:
        raise InvalidInputError(f".npy declares {shape[0]:,} points but the file is too short to hold them",
                                index=index)
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)


def _ply_header(data: bytes, index: int) -> tuple[Any, int]:
    """(plyfile's parse of the header, offset of the body), every declared size checked against the file's size.

    plyfile's own header parser is used (on at most the first 64 KiB) so the counts checked are
    the counts it would read; nothing is allocated for them until they fit in the file.
    """
    plyfile = require("plyfile", extra="points", purpose="reading .ply files")
    if b"end_header" not in data[:_PLY_HEADER_LIMIT]:
        raise InvalidInputError(f"PLY header has no end_header in its first {_PLY_HEADER_LIMIT:,} bytes",
                                index=index)
    head = io.BytesIO(data[:_PLY_HEADER_LIMIT])
    try:
        header = plyfile.PlyData._parse_header(head)
    except (plyfile.PlyParseError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise InvalidInputError(f"not a readable PLY header ({type(exc).__name__}: {str(exc)[:200]})",
                                index=index) from None
    body = len(data) - head.tell()
    counts = {el.name: el.count for el in header.elements}
    n, faces = counts.get("vertex", 0), counts.get("face", 0)
    if n > MAX_POINTS:
        raise InputTooLargeError(f"PLY declares {n:,} points, over the limit of {MAX_POINTS:,}",
                                 index=index, limit=MAX_POINTS)
    if faces > MAX_FACES:
        raise InputTooLargeError(f"PLY declares {faces:,} faces, over the limit of {MAX_FACES:,}",
                                 index=index, limit=MAX_FACES)
    need, list_rows = 0, 0
    for el in header.elements:
        if el.count < 0:
            raise InvalidInputError(f"PLY element {el.name!r} has a negative count", index=index)
        lists = [p for p in el.properties if isinstance(p, plyfile.PlyListProperty)]
        list_rows += el.count if lists else 0
        if header.text:  # every value is at least one character and one separator
            row = 2 * len(el.properties)
        else:  # fixed-size values, and at least the length field of each list
            row = sum(np.dtype(p.len_dtype if isinstance(p, plyfile.PlyListProperty) else p.val_dtype).itemsize
                      for p in el.properties)
        need += el.count * max(1, row)
    if need > body + 1:
        raise InvalidInputError(f"PLY declares {n:,} points (and {need:,} bytes of rows) but the file is too short "
                                f"to hold them ({body:,} bytes after the header)", index=index)
    if list_rows > MAX_FACES:  # every list row is a Python object in plyfile and trimesh
        raise InputTooLargeError(f"PLY declares {list_rows:,} rows of lists, over the limit of {MAX_FACES:,}",
                                 index=index, limit=MAX_FACES)
    return header, len(data) - body


def _ply_cloud(data: bytes, header: Any, offset: int, index: int) -> np.ndarray:
    """Vertices (and colours) of a PLY point cloud; fixed-size binary rows are read straight from the bytes."""
    plyfile = require("plyfile", extra="points", purpose="reading .ply files")
    if "vertex" not in [el.name for el in header.elements]:
        raise InvalidInputError("PLY has no vertex element", index=index)
    try:
        before = header.elements[:[el.name for el in header.elements].index("vertex") + 1]
        if not header.text and not any(isinstance(p, plyfile.PlyListProperty) for el in before
                                       for p in el.properties):
            dtypes = [el.dtype(header.byte_order) for el in before]
            start = offset + sum(el.count * dt.itemsize for el, dt in zip(before[:-1], dtypes[:-1], strict=True))
            rows = np.frombuffer(data, dtype=dtypes[-1], count=before[-1].count, offset=start)
        else:
            rows = plyfile.PlyData.read(io.BytesIO(data))["vertex"].data
        names = rows.dtype.names or ()
        xyz = np.stack([np.asarray(rows[c], dtype=np.float64) for c in "xyz"], axis=1)
        if {"red", "green", "blue"} <= set(names):
            rgb = np.stack([np.asarray(rows[c], dtype=np.float64) for c in ("red", "green", "blue")], axis=1)
            if np.issubdtype(rows.dtype["red"], np.integer):
                rgb = rgb / 255.0
            return np.concatenate([xyz, rgb], axis=1)
        return xyz
    except (plyfile.PlyParseError, KeyError, ValueError, IndexError, TypeError, EOFError, OverflowError) as exc:
        raise InvalidInputError(f"not a readable PLY point cloud ({type(exc).__name__}: {str(exc)[:200]})",
                                index=index) from None


def _off_check(data: bytes, index: int) -> None:
    """An OFF file's declared vertex and face counts, checked against its size before trimesh reads it."""
    text = "\n".join(line.split("#", 1)[0] for line in data[:_PLY_HEADER_LIMIT].decode("utf-8", "replace")
                     .splitlines())
    found = re.search(r"(?:COFF|OFF)\s+(-?\d+)\s+(-?\d+)", text)
    if not found:
        return  # trimesh refuses it
    nv, nf = int(found.group(1)), int(found.group(2))
    if nv < 0 or nf < 0:
        raise InvalidInputError(f"OFF declares negative counts ({nv}, {nf})", index=index)
    if nv > MAX_POINTS:
        raise InputTooLargeError(f"OFF declares {nv:,} vertices, over the limit of {MAX_POINTS:,}", index=index,
                                 limit=MAX_POINTS)
    if nf > MAX_FACES:
        raise InputTooLargeError(f"OFF declares {nf:,} faces, over the limit of {MAX_FACES:,}", index=index,
                                 limit=MAX_FACES)
    if 6 * nv + 2 * nf > len(data) + 1:  # "x y z\n" per vertex, at least "0\n" per face
        raise InvalidInputError(f"OFF declares {nv:,} vertices and {nf:,} faces but the file is too short "
                                f"to hold them", index=index)


_GLTF_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_GLTF_SIZES = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}


def _gltf_check(data: bytes, suffix: str, index: int) -> None:
    """A glTF's accessor and buffer-view sizes, checked against the file's size before trimesh allocates them."""
    try:
        if suffix == ".glb":
            length = int.from_bytes(data[12:16], "little")
            tree = json.loads(data[20:20 + length])
        else:
            tree = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise InvalidInputError(f"not a readable {suffix} file ({type(exc).__name__}: {str(exc)[:200]})",
                                index=index) from None
    if not isinstance(tree, dict):
        raise InvalidInputError(f"not a readable {suffix} file (its JSON is not an object)", index=index)

    def number(value: Any, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= len(data):
            raise InvalidInputError(f"{suffix} {what} is {shown(value, 40)}: not a size that fits in the file "
                                    f"of {len(data):,} bytes", index=index)
        return value

    for key in ("accessors", "bufferViews", "buffers"):
        if not isinstance(tree.get(key, []), list) or not all(isinstance(x, dict) for x in tree.get(key, [])):
            raise InvalidInputError(f"{suffix} {key} is not a list of objects", index=index)
    for i, acc in enumerate(tree.get("accessors", [])):
        count = number(acc.get("count", 0), f"accessor {i} count")
        per = _GLTF_COMPONENTS.get(acc.get("type"), 16) * _GLTF_SIZES.get(acc.get("componentType"), 8)
        number(count * per, f"accessor {i} size in bytes")
        number(acc.get("byteOffset", 0), f"accessor {i} byteOffset")
        sparse = acc.get("sparse", {})
        number(sparse.get("count", 0) if isinstance(sparse, dict) else -1, f"accessor {i} sparse count")
    for i, view in enumerate(tree.get("bufferViews", [])):
        for field in ("byteLength", "byteOffset", "byteStride"):
            number(view.get(field, 0), f"bufferView {i} {field}")
        stride = view.get("byteStride", 0)
        for acc in tree.get("accessors", []):
            if acc.get("bufferView") == i and stride:
                number(acc.get("count", 0) * stride, f"accessor on bufferView {i} strided size")


def _mesh_cloud(data: bytes, suffix: str, n_points: int, seed: int, index: int) -> np.ndarray:
    """Points sampled evenly over a mesh's surface."""
    if len(data) > MAX_MESH_BYTES:
        raise InputTooLargeError(f"mesh file is {len(data):,} bytes, over the limit of {MAX_MESH_BYTES:,}",
                                 index=index, limit=MAX_MESH_BYTES)
    if suffix == ".off":
        _off_check(data, index)
    if suffix in (".glb", ".gltf"):
        _gltf_check(data, suffix, index)
    trimesh = require("trimesh", extra="points", purpose="reading meshes")
    extra = {"skip_materials": True} if suffix in (".glb", ".gltf", ".obj") else {}  # no texture images decoded
    try:
        mesh = trimesh.load(io.BytesIO(data), file_type=suffix.lstrip("."), force="mesh", process=False, **extra)
    except Exception as exc:  # trimesh raises many types for malformed files; report them all as bad input
        raise InvalidInputError(f"not a readable {suffix} mesh ({type(exc).__name__}: {str(exc)[:200]})",
                                index=index) from None
    faces = getattr(mesh, "faces", None)
    if faces is None or len(faces) == 0:
        raise InvalidInputError(f"{suffix} mesh has no faces", index=index)
    if len(faces) > MAX_FACES:
        raise InputTooLargeError(f"mesh has {len(faces):,} faces, over the limit of {MAX_FACES:,}",
                                 index=index, limit=MAX_FACES)
    faces, vertices = np.asarray(faces), np.asarray(mesh.vertices)
    if vertices.ndim != 2 or vertices.shape[1:] != (3,) or faces.ndim != 2 or faces.shape[1:] != (3,):
        raise InvalidInputError(f"{suffix} mesh is not made of triangles over 3-D vertices", index=index)
    if not np.issubdtype(faces.dtype, np.integer) or faces.min() < 0 or faces.max() >= len(vertices):
        raise InvalidInputError(f"{suffix} mesh has faces that point outside its {len(vertices):,} vertices",
                                index=index)
    if not np.isfinite(vertices).all():
        raise InvalidInputError("mesh has NaN or infinite vertices", index=index)
    with np.errstate(all="ignore"):
        area = float(mesh.area)
    if not (area > 0 and np.isfinite(area)):
        raise InvalidInputError("mesh has no finite surface area", index=index)
    return sample_mesh(mesh, n_points, seed=seed)


def sample_mesh(mesh: Any, n_points: int, *, seed: int = 0) -> np.ndarray:
    """``n_points`` points spread evenly over a trimesh mesh's surface, (n_points, 3) float64.

    ``sample_surface_even`` rejects points closer than a radius, so it may return fewer than
    asked for; the rest are plain area-weighted samples with the same seed.
    """
    import trimesh

    points, _ = trimesh.sample.sample_surface_even(mesh, n_points, seed=seed)
    if len(points) < n_points:
        extra, _ = trimesh.sample.sample_surface(mesh, n_points - len(points), seed=seed + 1)
        points = np.concatenate([points, extra]) if len(points) else extra
    return np.asarray(points, dtype=np.float64)


def _file_cloud(item: Any, n_points: int, seed: int, index: int) -> np.ndarray:
    data, suffix = _read_bytes(item, index)
    kind = _sniff(data)
    if suffix in (".npy", ".ply", ".glb") and kind != suffix:
        raise InvalidInputError(f"file content is not {suffix} (named {suffix}, looks like {kind or 'nothing known'})",
                                index=index)
    suffix = suffix or kind
    if not suffix:
        raise InvalidInputError("unrecognised point-cloud data (expected .npy, .ply, .obj, .stl, .glb or .off)",
                                index=index)
    if suffix == ".npy":
        return _npy(data, index)
    if suffix == ".ply":
        header, offset = _ply_header(data, index)
        if not any(el.name == "face" and el.count > 0 for el in header.elements):
            return _ply_cloud(data, header, offset, index)
    return _mesh_cloud(data, suffix, n_points, seed, index)


# ---------------------------------------------------------------------------- public API
def as_cloud_list(inputs: Any) -> list:
    """The caller's point inputs as a list: a (B, N, C) array or tensor is B clouds, an (N, C) one is one cloud."""
    if getattr(inputs, "ndim", None) == 3 and not isinstance(inputs, (list, tuple)):
        return list(inputs)
    if getattr(inputs, "ndim", None) == 2 or isinstance(inputs, (str, os.PathLike, bytes, bytearray, memoryview)):
        return [inputs]
    return list(inputs) if hasattr(inputs, "__iter__") else [inputs]


def load_point_cloud(item: Any, *, n_points: int, index: int = 0, default_rgb: float = 0.4,
                     seed: int = 0) -> np.ndarray:
    """One item as ``(n_points, 6)`` float32: xyz as given (not centred or scaled), rgb in [0, 1].

    Args:
        item: an (N, 3) or (N, 6) array or tensor, or a path / bytes of a ``.npy``, ``.ply``,
            ``.obj``, ``.stl``, ``.glb`` or ``.off`` file.
        n_points: the number of points the model takes.
        index: the item's position in the caller's list, named in errors.
        default_rgb: the grey level given to every point of a cloud without colours.
        seed: seeds subsampling, repeats and mesh sampling (the same for every item).
    """
    if isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 1:
        raise InvalidInputError(f"n_points must be a positive integer, not {n_points!r}")
    if isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
        raw = _file_cloud(item, n_points, seed, index)
    elif hasattr(item, "shape") or isinstance(item, (list, tuple)):
        raw = item
    else:
        raise InvalidInputError(f"expected a point cloud (an (N, 3) or (N, 6) array, or a .npy/.ply/mesh file), "
                                f"got {type(item).__name__}", index=index)
    cloud = _as_cloud(raw, index)
    return _with_colour(_resample(cloud, n_points, seed), default_rgb).astype(np.float32)


def load_point_clouds(items: list, *, n_points: int, default_rgb: float = 0.4, seed: int = 0) -> list[np.ndarray]:
    """Load every item up front, so a bad one fails before any model work is done."""
    return [load_point_cloud(it, n_points=n_points, index=i, default_rgb=default_rgb, seed=seed)
            for i, it in enumerate(items)]


def normalize_unit_sphere(xyz: np.ndarray) -> np.ndarray:
    """(N, 3) -> float32, centred at the centroid and scaled so the farthest point has norm 1."""
    xyz = np.asarray(xyz, dtype=np.float64)
    centred = xyz - xyz.mean(axis=0)
    radius = np.sqrt((centred**2).sum(axis=1)).max()
    if not radius > 0:
        raise InvalidInputError("every point of the cloud is the same point: it has no shape")
    return (centred / radius).astype(np.float32)
