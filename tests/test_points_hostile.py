"""Hostile point-cloud and mesh inputs: declared sizes checked before allocation, library errors named per item."""

from __future__ import annotations

import io
import json
import os
import struct
import tracemalloc

import numpy as np
import pytest
import trimesh

from zoo import points
from zoo.errors import InputTooLargeError, InvalidInputError
from zoo.points import load_point_cloud, load_point_clouds

N = 64
GOOD = np.random.default_rng(0).normal(size=(50, 3))
XYZ = b"property float x\nproperty float y\nproperty float z\n"


def _refused(item, match: str | None = None, *, peak_mb: float | None = None) -> InvalidInputError:
    """``item`` as the second of two items is refused with an InvalidInputError naming index 1."""
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInputError, match=match) as err:
            load_point_clouds([GOOD, item], n_points=N)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    assert err.value.index == 1 and str(err.value).startswith("input[1]: ")
    if peak_mb is not None:
        assert peak < peak_mb, f"{peak:.0f} MiB allocated before refusing"
    return err.value


# ---------------------------------------------------------------- declared sizes against the file's size
def test_ascii_ply_declaring_49_million_vertices_with_one_row_is_refused_before_allocating():
    data = b"ply\nformat ascii 1.0\nelement vertex 49000000\n" + XYZ + b"end_header\n0 0 0\n"
    _refused(data, "too short", peak_mb=50)


def test_ply_declared_sizes_of_every_element_are_checked():
    lists = b"ply\nformat binary_little_endian 1.0\nelement junk 4000000\nproperty list uchar int a\n"
    _refused(lists + b"element vertex 3\n" + XYZ + b"end_header\n" + b"\0" * 64, "too short", peak_mb=50)
    ascii_faces = b"ply\nformat ascii 1.0\nelement vertex 3\n" + XYZ + (
        b"element face 4000000\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    _refused(ascii_faces, "too short", peak_mb=50)
    too_many_faces = ascii_faces.replace(b"face 4000000", b"face 6000000")
    assert isinstance(_refused(too_many_faces, "faces"), InputTooLargeError)


def test_a_fake_end_header_in_a_comment_does_not_hide_a_huge_element():
    data = (b"ply\nformat ascii 1.0\ncomment end_header\nelement vertex 49000000\n" + XYZ
            + b"end_header\n0 0 0\n1 1 1\n")
    _refused(data, "too short", peak_mb=50)


def test_npy_header_shape_is_checked_against_the_file_size_before_allocating():
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (40000000, 3), }"
    header = header.ljust(118) + "\n"
    header = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()
    _refused(header + b"\0" * 48, "too short", peak_mb=50)
    buf = io.BytesIO()
    np.save(buf, np.zeros((4, 3), dtype="U40"))
    _refused(buf.getvalue(), "numbers")


def test_off_and_glb_counts_are_checked_against_the_file_size():
    _refused(b"OFF\n40000000 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "too short")
    glb = trimesh.creation.box().export(file_type="glb")
    jlen = struct.unpack("<I", glb[12:16])[0]
    tree = json.loads(glb[20:20 + jlen])
    tree["accessors"][0]["count"] = 10**9
    body = json.dumps(tree).encode()
    body += b" " * (-len(body) % 4)
    chunk = struct.pack("<I", len(body)) + b"JSON" + body + glb[20 + jlen:]
    _refused(b"glTF" + struct.pack("<II", 2, 12 + len(chunk)) + chunk, "accessor 0 count")


# ---------------------------------------------------------------- library errors become InvalidInputError
@pytest.mark.parametrize("data", [
    b"ply\nformat ascii 1.0\nelement vertex 3\nproperty floot x\nend_header\n0\n1\n2\n",
    b"ply\nformat weird 1.0\nelement vertex 3\nproperty float x\nend_header\n0\n1\n2\n",
    b"ply\nformat ascii 1.0\nelement vertex 3\n" + XYZ + b"end_header\n0 0 0\n1 1\nfoo 2 2\n",
    b"ply\nformat ascii 1.0\nelement vertex 2\n" + XYZ + b"end_header\n0 0 0\n1 1 x\n",
], ids=["bad-type", "bad-format", "short-row", "bad-value"])
def test_plyfile_header_and_row_errors_name_the_item(data):
    _refused(data)


def test_glb_whose_indices_point_outside_its_vertices_is_refused():
    glb = bytearray(trimesh.creation.box().export(file_type="glb"))
    jlen = struct.unpack("<I", glb[12:16])[0]
    tree = json.loads(glb[20:20 + jlen])
    view = tree["bufferViews"][tree["accessors"][tree["meshes"][0]["primitives"][0]["indices"]]["bufferView"]]
    start = 20 + jlen + 8 + view.get("byteOffset", 0)
    glb[start:start + 4] = struct.pack("<I", 999_999)
    _refused(bytes(glb), "outside")


@pytest.mark.parametrize("ragged", [[[0, 0, 0], [1, 2], [3, 4, 5]], [[0, 0, 0], [1, 2, 3, 4], [3, 4, 5]],
                                    [[0, 0, 0], [1, [2], 3]]])
def test_ragged_point_lists_are_refused(ragged):
    _refused(ragged, "rectangular|numbers")


def test_clouds_over_the_point_limit_are_refused(monkeypatch):
    monkeypatch.setattr(points, "MAX_POINTS", 10)
    with pytest.raises(InputTooLargeError, match="over the limit of 10"):
        load_point_cloud(GOOD, n_points=N)


# ---------------------------------------------------------------- paths that must not be read
def test_a_5000_character_path_is_invalid_input():
    _refused("/tmp/" + "a" * 5000 + ".ply", "cannot use point-cloud path")


def test_fifos_and_devices_are_refused_before_anything_reads_them(tmp_path):
    fifo = tmp_path / "cloud.ply"
    os.mkfifo(fifo)  # opening it would block forever
    _refused(fifo, "FIFO")
    link = tmp_path / "zeros.npy"
    link.symlink_to("/dev/zero")  # reading it would never end
    _refused(link, "device")
    _refused("/dev/zero", "device")
    _refused(tmp_path, "directory")


def test_valid_files_still_load_after_the_checks(tmp_path):
    for text in (False, True):
        mesh = trimesh.creation.icosphere(subdivisions=1)
        data = mesh.export(file_type="ply", encoding="ascii" if text else "binary")
        assert load_point_cloud(data, n_points=N).shape == (N, 6)
    buf = io.BytesIO()
    np.save(buf, np.asfortranarray(GOOD.astype(np.float32)))
    assert np.allclose(load_point_cloud(buf.getvalue(), n_points=50)[:, :3], GOOD, atol=1e-6)


# ---------------------------------------------------------------- found by tests/test_fuzz_points.py
def test_npy_header_that_breaks_numpys_tokenizer_is_invalid_input():
    header = "{'descr': '<f8'{, 'fortran_order': False, 'shape': (20, 6), }".ljust(118) + "\n"
    _refused(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\0" * 960)


def test_ascii_ply_colour_out_of_its_type_range_is_invalid_input():
    data = (b"ply\nformat ascii 1.0\nelement vertex 2\n" + XYZ
            + b"property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
            + b"0 0 0 9112 0 0\n1 1 1 0 0 0\n")
    _refused(data)
