"""Property-based fuzzing of the point-cloud and mesh decoders (zoo.points) with byte-level mutations.

Valid files of every format the decoder takes (.npy, ascii and binary .ply, .obj, .stl, .off, .glb)
are flipped, cut, spliced and given lying headers. Property: the decoder returns a finite float32
(n_points, 6) array or raises a ZooError subclass; never another exception, never a hang, never
unbounded memory. Decoding runs in one worker subprocess under RLIMIT_AS, each case bounded by a
timeout; a worker that dies (MemoryError kills, segfaults) or stalls fails the test.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import trimesh
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

N_POINTS = 32
CASE_TIMEOUT_S = 20
MEMORY_LIMIT = 3 * 2**30
EXAMPLES = int(os.environ.get("ZOO_FUZZ_EXAMPLES", "250"))  # per format: about 40 s in all on 2 busy cores

WORKER = textwrap.dedent(f"""
    import json, math, os, resource, sys, tempfile
    resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))
    import numpy as np
    from zoo.errors import ZooError
    from zoo.points import load_point_cloud
    folder = tempfile.mkdtemp()
    out = sys.stdout
    sys.stdout = sys.stderr
    for line in sys.stdin:
        case = json.loads(line)
        data = bytes.fromhex(case["data"])
        item = data
        if case["as_path"]:
            item = os.path.join(folder, "case" + case["suffix"])
            with open(item, "wb") as f:
                f.write(data)
        try:
            cloud = load_point_cloud(item, n_points={N_POINTS})
            ok = (isinstance(cloud, np.ndarray) and cloud.shape == ({N_POINTS}, 6) and cloud.dtype == np.float32
                  and bool(np.isfinite(cloud).all()))
            reply = {{"kind": "ok" if ok else "bad-array", "what": repr(getattr(cloud, "shape", None))}}
        except ZooError as exc:
            reply = {{"kind": "zoo", "what": type(exc).__name__ + ": " + str(exc)[:300]}}
        except BaseException as exc:  # the property forbids these
            reply = {{"kind": "other", "what": type(exc).__module__ + "." + type(exc).__name__ + ": "
                     + str(exc)[:300]}}
        out.write(json.dumps(reply) + "\\n")
        out.flush()
""")


class Worker:
    """One decoding subprocess for many cases; restarted after a failure."""

    def __init__(self):
        self.proc = None

    def decode(self, data: bytes, suffix: str, as_path: bool) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            self.proc = subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=root,
                                         env={**os.environ, "PYTHONPATH": root, "OMP_NUM_THREADS": "1"})
        self.proc.stdin.write(json.dumps({"data": data.hex(), "suffix": suffix, "as_path": as_path}) + "\n")
        self.proc.stdin.flush()
        import selectors

        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(CASE_TIMEOUT_S):
                self.close()
                return {"kind": "hang", "what": f"no answer in {CASE_TIMEOUT_S} s"}
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self.proc = None
            return {"kind": "died", "what": f"worker exited with {code}"}
        return json.loads(line)

    def close(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.close()


# ---------------------------------------------------------------- valid seeds
def _seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    mesh = trimesh.creation.icosphere(subdivisions=1)
    out = {}
    buf = io.BytesIO()
    np.save(buf, rng.normal(size=(40, 3)).astype(np.float32))
    out["npy"] = buf.getvalue()
    buf = io.BytesIO()
    np.save(buf, np.concatenate([rng.normal(size=(20, 3)), rng.uniform(size=(20, 3))], axis=1))
    out["npy6"] = buf.getvalue()
    from plyfile import PlyData, PlyElement

    rows = np.empty(30, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"),
                               ("blue", "u1")])
    for c in ("x", "y", "z"):
        rows[c] = rng.normal(size=30)
    for c in ("red", "green", "blue"):
        rows[c] = rng.integers(0, 256, size=30)
    for text in (False, True):
        buf = io.BytesIO()
        PlyData([PlyElement.describe(rows, "vertex")], text=text).write(buf)
        out["ply-cloud-" + ("ascii" if text else "binary")] = buf.getvalue()
    out["ply-mesh-binary"] = mesh.export(file_type="ply", encoding="binary")
    out["ply-mesh-ascii"] = mesh.export(file_type="ply", encoding="ascii")
    for ext in ("obj", "off", "glb"):
        data = mesh.export(file_type=ext)
        out[ext] = data.encode() if isinstance(data, str) else data
    out["stl"] = mesh.export(file_type="stl")
    out["stl-ascii"] = trimesh.exchange.stl.export_stl_ascii(mesh).encode()
    return out


SEEDS = _seeds()
SUFFIX = {"npy": ".npy", "npy6": ".npy", "ply-cloud-ascii": ".ply", "ply-cloud-binary": ".ply",
          "ply-mesh-binary": ".ply", "ply-mesh-ascii": ".ply", "obj": ".obj", "off": ".off", "glb": ".glb",
          "stl": ".stl", "stl-ascii": ".stl"}
HEADER_LIES = [b"4294967295", b"2147483648", b"49000000", b"-1", b"0", b"999999999999999999999", b"1e9", b"nan"]


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """``data`` with a few byte-level mutations: flips, inserts, deletes, truncation, lying numbers."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "byte", "insert", "delete", "truncate", "number", "dup"]))
        at = draw(st.integers(0, max(0, len(buf) - 1)))
        head = draw(st.booleans())  # headers hold the sizes: mutate near the start half of the time
        if head:
            at = min(at, 200, max(0, len(buf) - 1))
        if op == "flip" and buf:
            buf[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and buf:
            buf[at] = draw(st.integers(0, 255))
        elif op == "insert":
            buf[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del buf[at:at + draw(st.integers(1, 32))]
        elif op == "truncate":
            del buf[at:]
        elif op == "dup":
            buf[at:at] = buf[at:at + draw(st.integers(1, 64))] * draw(st.integers(1, 8))
        elif op == "number":  # replace a run of digits (a count, a size) with a lie
            digits = [i for i in range(min(len(buf), 400)) if 48 <= buf[i] <= 57]
            if digits:
                i = draw(st.sampled_from(digits))
                j = i
                while j < len(buf) and 48 <= buf[j] <= 57:
                    j += 1
                buf[i:j] = draw(st.sampled_from(HEADER_LIES))
            elif len(buf) >= 4:  # binary: a 32-bit little-endian size
                i = draw(st.integers(0, min(len(buf), 200) - 4))
                buf[i:i + 4] = struct.pack("<I", draw(st.sampled_from([0, 1, 2**31, 2**32 - 1, 49_000_000])))
    return bytes(buf)


FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


def _check(reply: dict, name: str, data: bytes):
    assert reply["kind"] in ("ok", "zoo"), f"{name} ({len(data)} bytes, {data[:80]!r}...): {reply}"


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_valid_seeds_decode(worker, name):
    for as_path in (False, True):
        assert worker.decode(SEEDS[name], SUFFIX[name], as_path)["kind"] == "ok", name


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_mutated_files_decode_or_raise_a_zoo_error(worker, name):
    @FUZZ
    @given(data=mutated(SEEDS[name]), as_path=st.booleans())
    def run(data, as_path):
        _check(worker.decode(data, SUFFIX[name], as_path), name, data)

    run()


@FUZZ
@given(data=st.binary(max_size=300), suffix=st.sampled_from(["", ".npy", ".ply", ".obj", ".stl", ".off", ".glb"]))
def test_random_bytes_with_a_known_magic_decode_or_raise_a_zoo_error(worker, data, suffix):
    magic = {".npy": b"\x93NUMPY\x01\x00", ".ply": b"ply\n", ".glb": b"glTF\x02\x00\x00\x00", ".off": b"OFF\n",
             ".obj": b"v ", ".stl": b"solid ", "": b""}[suffix]
    _check(worker.decode(magic + data, suffix, bool(suffix)), suffix, magic + data)
