"""embed(progress=True) shows one bar per call for every modality, counting the call's items to the end."""

from __future__ import annotations

import numpy as np
import pytest

import zoo
from zoo.adapters import _progress, base


@pytest.fixture
def bars(monkeypatch):
    """Every bar the calls open: (total, desc, unit, counts passed to update, closed)."""
    made = []

    class Recorder:
        def __init__(self, total, desc, unit):
            self.total, self.desc, self.unit, self.n, self.updates, self.closed = total, desc, unit, 0, [], False
            made.append(self)

        def update(self, n):
            self.updates.append(n)
            self.n += n

        def close(self):
            self.closed = True

    monkeypatch.setattr(_progress, "_new_bar", Recorder)
    return made


def _items(modality: str):
    from zoo import gallery
    from zoo.shapes import make_dataset

    if modality == "image":
        return [str(p.path) for p in gallery.photos()[:5]]
    if modality == "audio":
        return [str(c.path) for c in gallery.speech_clips()[:3]]
    if modality == "points":
        return list(make_dataset(1, 1, n_points=1024).points[:5])
    return ["a dog", "a cat", "fresh bread", "the stock market", "rain tomorrow"]


@pytest.mark.parametrize(("name", "modality", "batch"), [
    ("all-minilm-l6-v2", "text", 2), ("paraphrase-minilm-l3-v2", "text", 2), ("efficientnet-lite0", "image", 2),
    ("whisper-tiny-en", "audio", 1), ("pointnet-mini", "points", 2), ("zoo-bind-mini", "image", None),
    ("zoo-bind-mini", "points", None),
])
def test_every_modality_shows_a_bar_to_the_end(bars, name, modality, batch):
    model = zoo.load(name)
    items = _items(modality)
    quiet = model.embed(items, modality=modality, batch_size=batch)
    assert not bars  # progress=None with a few items on a pipe: no bar
    shown = model.embed(items, modality=modality, batch_size=batch, progress=True)
    assert np.array_equal(shown.vectors, quiet.vectors)  # the bar changes nothing
    (bar,) = bars
    assert bar.total == len(items) and bar.n == len(items) and bar.closed
    assert bar.desc == f"embed {name}" and bar.unit == base._UNITS[modality]
    if name in ("all-minilm-l6-v2", "efficientnet-lite0", "pointnet-mini", "whisper-tiny-en"):
        assert len(bar.updates) > 1, bar.updates  # counted batch by batch, not only at the end


def test_a_failing_call_closes_its_bar(bars):
    model = zoo.load("all-minilm-l6-v2")
    with pytest.raises(zoo.InputTooLargeError):
        model.embed(["short", "word " * 2000], truncate=False, progress=True)
    assert all(b.closed for b in bars)
