"""Byte-level fuzzing of the files the zoo reads about spaces: user model cards, stitch cards and weights,
anchor sets and relative projectors. Property: a typed zoo error (ZooError) or a valid result, never another
exception. Derandomized, so a run is reproducible; the whole file takes well under a minute.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoo import registry
from zoo.align import AnchorSet, RelativeProjector, Stitch, fit_stitch
from zoo.errors import ZooError

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

_CARD = b'''adapter = "text"
modalities = ["text"]
dim = 8
description = "a user card"
license = "mit"
offline_note = "test"
pooling = "mean"
prompts = { query = "query: " }
matryoshka_dims = [4, 8]
options = { padding_side = "right" }
[[sources]]
kind = "hub"
repo = "org/user-model"
revision = "0123456789abcdef0123456789abcdef01234567"
files = ["model.safetensors"]
sha256 = { "model.safetensors" = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" }
'''


@st.composite
def mutated(draw, data: bytes):
    """``data`` with a few byte-level edits: flips, deletions, insertions, truncation, duplication."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "duplicate", "replace"]))
        pos = draw(st.integers(0, max(0, len(out) - 1)))
        if op == "flip" and out:
            out[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "delete" and out:
            del out[pos:pos + draw(st.integers(1, 16))]
        elif op == "insert":
            out[pos:pos] = draw(st.sampled_from([b"\x00", b"\xff", b"[", b"]", b'"', b"=", b"\n", b"{", b"-1",
                                                 b"1e309", b"nan", b"true", b"[[", b"\\u0000", b"9" * 25]))
        elif op == "truncate":
            del out[pos:]
        elif op == "duplicate" and out:
            end = pos + draw(st.integers(1, 40))
            out[end:end] = out[pos:end]
        elif op == "replace":
            out[pos:pos + 1] = bytes([draw(st.integers(0, 255))])
    return bytes(out)


def _typed_or_valid(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn()
        except ZooError:
            return None


# ------------------------------------------------------------------------------------------ user cards


@pytest.fixture
def cards_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    (tmp_path / "cards").mkdir()
    yield tmp_path / "cards"
    monkeypatch.undo()
    registry.reload()


@SETTINGS
@given(data=mutated(_CARD))
def test_fuzzed_user_cards_never_break_the_registry(cards_home, data):
    (cards_home / "user-model.toml").write_bytes(data)
    registry.reload()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = registry.list_models()
    assert "e5-small-v2" in names
    _typed_or_valid(lambda: registry.card("user-model"))


# ------------------------------------------------------------------------------------ stitch files


def _saved_stitch(folder: Path) -> tuple[bytes, bytes]:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(45, 5)), rng.normal(size=(45, 4))
    anchors = AnchorSet(tuple(f"item {i}" for i in range(20)))
    st_ = fit_stitch(x[:20], y[:20], source="space-a", target="space-b", anchors=anchors, test=(x[20:], y[20:]),
                     method="ridge", alpha=0.5)
    card = st_.save(folder)
    return card.read_bytes(), (folder / "stitch.safetensors").read_bytes()


_STITCH_CACHE: dict[str, tuple[bytes, bytes]] = {}


def _originals(tmp_path_factory) -> tuple[bytes, bytes]:
    if "x" not in _STITCH_CACHE:
        _STITCH_CACHE["x"] = _saved_stitch(tmp_path_factory.mktemp("orig"))
    return _STITCH_CACHE["x"]


@SETTINGS
@given(data=st.data())
def test_fuzzed_stitch_cards_are_typed_errors_or_load(tmp_path_factory, data):
    card, weights = _originals(tmp_path_factory)
    folder = tmp_path_factory.mktemp("stitch")
    (folder / "stitch.toml").write_bytes(data.draw(mutated(card)))
    (folder / "stitch.safetensors").write_bytes(weights)
    loaded = _typed_or_valid(lambda: Stitch.load(folder))
    if loaded is not None:  # only an unedited card (a no-op mutation) may load
        assert (folder / "stitch.toml").read_bytes() == card or loaded.fit.method == "ridge"


@SETTINGS
@given(data=st.data())
def test_fuzzed_stitch_weights_are_typed_errors_or_load(tmp_path_factory, data):
    card, weights = _originals(tmp_path_factory)
    folder = tmp_path_factory.mktemp("stitch")
    (folder / "stitch.toml").write_bytes(card)
    mutated_weights = data.draw(mutated(weights))
    (folder / "stitch.safetensors").write_bytes(mutated_weights)
    loaded = _typed_or_valid(lambda: Stitch.load(folder))
    assert loaded is None or mutated_weights == weights  # the weights are pinned by sha256


# ------------------------------------------------------------------------------- anchors and projectors

_ANCHORS: dict[str, bytes] = {}


@SETTINGS
@given(data=st.data())
def test_fuzzed_anchor_files_are_typed_errors_or_load(tmp_path_factory, data):
    if "json" not in _ANCHORS:
        path = tmp_path_factory.mktemp("anchors") / "a.json"
        AnchorSet(("a dog", "a cat", "ünïcode"), name="x", labels=("1", "2", "3"),
                  selection={"strategy": "random", "seed": 0}).save(path)
        _ANCHORS["json"] = path.read_bytes()
    path = tmp_path_factory.mktemp("anchors") / "a.json"
    path.write_bytes(data.draw(mutated(_ANCHORS["json"])))
    loaded = _typed_or_valid(lambda: AnchorSet.load(path))
    if loaded is not None:
        assert loaded.hash == AnchorSet(loaded.items).hash


@SETTINGS
@given(data=st.data())
def test_fuzzed_relative_projector_files_are_typed_errors_or_load(tmp_path_factory, data):
    if "proj" not in _ANCHORS:
        path = tmp_path_factory.mktemp("proj") / "p.safetensors"
        a = np.random.default_rng(1).normal(size=(5, 4))
        RelativeProjector(a, normalization="standardize").fit(a).save(path)
        _ANCHORS["proj"] = path.read_bytes()
    path = tmp_path_factory.mktemp("proj") / "p.safetensors"
    path.write_bytes(data.draw(mutated(_ANCHORS["proj"])))
    loaded = _typed_or_valid(lambda: RelativeProjector.load(path))
    if loaded is not None:
        _typed_or_valid(lambda: loaded.transform(np.ones((2, loaded.anchors.shape[1]))))


@SETTINGS
@given(data=st.data())
def test_fuzzed_npy_vectors_are_typed_errors_or_valid(tmp_path_factory, data):
    """Vectors read from ``.npy`` (allow_pickle=False) and handed to the space utilities."""
    import io

    from zoo.align import relative_projection

    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(2).normal(size=(6, 4)).astype(np.float32))
    raw = data.draw(mutated(buf.getvalue()))
    try:
        arr = np.load(io.BytesIO(raw), allow_pickle=False)
    except Exception:  # noqa: BLE001 - numpy refuses the file itself (even SyntaxError); nothing of ours ran
        return
    anchors = np.ones((3, 4), np.float32)
    _typed_or_valid(lambda: relative_projection(arr, anchors))
    _typed_or_valid(lambda: fit_stitch(arr, arr))
    from zoo.embeddings import similarity

    _typed_or_valid(lambda: similarity(arr, arr))
