"""Stitches in the zoo: fit between two models, register, save and find, and compare across spaces with them."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import zoo
from zoo import stitching
from zoo.align import AnchorSet, Stitch
from zoo.embeddings import Embeddings
from zoo.errors import InvalidInputError, RegistryError, SpaceMismatchError

DIM_A, DIM_B = 12, 16


class RotatedModel:
    """A stand-in embedder: space B is a fixed random rotation of space A's 12 dims into 16, plus noise."""

    def __init__(self, space: str, rotate: bool):
        self.space, self.name, self.rotate = space, space, rotate
        rng = np.random.default_rng(0)
        self.map = np.linalg.qr(rng.normal(size=(DIM_B, DIM_B)))[0][:DIM_A]

    def _base(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        return np.random.default_rng(seed).normal(size=DIM_A)

    def embed(self, items, **_):
        x = np.stack([self._base(t) for t in items])
        if self.rotate:
            x = x @ self.map + np.random.default_rng(1).normal(size=(len(items), DIM_B)) * 0.01
        return Embeddings(x.astype(np.float32), space=self.space, model=self.name, modality="text", normalized=False)


@pytest.fixture
def clean_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(stitching, "_stitches", {})
    monkeypatch.setattr(stitching, "_scanned", set())
    return tmp_path


def _texts(n: int, offset: int = 0) -> list[str]:
    return [f"item number {i} of the set" for i in range(offset, offset + n)]


def test_stitch_fits_measures_registers_and_similarity_uses_it(clean_registry):
    a, b = RotatedModel("space-a", rotate=False), RotatedModel("space-b", rotate=True)
    test = _texts(60, offset=500)
    st = zoo.stitch(a, b, anchors=_texts(200), test=test)
    assert (st.source.space, st.target.space) == ("space-a", "space-b")
    assert st.anchors.count == 200 and st.anchors.hash == AnchorSet(tuple(_texts(200))).hash
    assert st.quality["recall_at_1"] > 0.95
    ea, eb = a.embed(test), b.embed(test)
    sims = zoo.similarity(ea, eb)
    assert sims.stitch == "space-a__space-b"
    assert (np.asarray(sims).argmax(axis=1) == np.arange(60)).mean() > 0.95
    back = zoo.similarity(eb, ea)  # the reverse direction maps b's partner side with the same stitch
    assert back.stitch == "space-a__space-b" and np.allclose(back, np.asarray(sims).T, atol=1e-6)
    same = zoo.similarity(ea, ea)
    assert same.stitch is None
    with pytest.raises(SpaceMismatchError, match="stitch=False"):
        zoo.similarity(ea, eb, stitch=False)


def test_without_a_stitch_other_spaces_are_refused_with_the_fix(clean_registry):
    ea = RotatedModel("space-a", rotate=False).embed(["x"])
    ec = RotatedModel("space-c", rotate=True).embed(["x"])
    with pytest.raises(SpaceMismatchError, match=r"zoo.stitch\('space-a', 'space-c'"):
        zoo.similarity(ea, ec)


def test_saved_stitches_are_found_by_name_and_by_space(clean_registry):
    a, b = RotatedModel("space-a", rotate=False), RotatedModel("space-b", rotate=True)
    st = zoo.stitch(a, b, anchors=_texts(100), register=False, save=True, name="a-to-b")
    assert (stitching.stitch_dir() / "a-to-b" / "stitch.toml").is_file()
    assert stitching.registered_stitches().keys() == {"a-to-b"}
    loaded = stitching.load_stitch("a-to-b")
    assert isinstance(loaded, Stitch) and np.array_equal(loaded.weight, st.weight)
    assert zoo.similarity(a.embed(["q"]), b.embed(["q"]), stitch="a-to-b").stitch == "a-to-b"
    with pytest.raises(RegistryError, match="no stitch named 'nope'"):
        stitching.load_stitch("nope")
    other = RotatedModel("space-c", rotate=True)
    with pytest.raises(SpaceMismatchError, match="does not join"):
        zoo.similarity(a.embed(["q"]), other.embed(["q"]), stitch="a-to-b")


def test_best_held_out_stitch_wins_and_names_are_not_overwritten(clean_registry):
    a, b = RotatedModel("space-a", rotate=False), RotatedModel("space-b", rotate=True)
    good = zoo.stitch(a, b, anchors=_texts(100), test=_texts(30, 900), register=False)
    bad = good.with_quality({**good.quality, "recall_at_1": 0.1})
    stitching.register_stitch(bad, "bad")
    stitching.register_stitch(good, "good")
    assert stitching.find_stitch("space-a", "space-b")[0] == "good"
    with pytest.raises(RegistryError, match="already registered"):
        stitching.register_stitch(good, "good")


def test_test_items_must_be_held_out(clean_registry):
    a, b = RotatedModel("space-a", rotate=False), RotatedModel("space-b", rotate=True)
    with pytest.raises(InvalidInputError, match="held out"):
        zoo.stitch(a, b, anchors=_texts(50), test=_texts(5))
