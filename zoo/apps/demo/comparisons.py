"""What the Spaces tab computes (:class:`Comparisons`, a part of :class:`~zoo.apps.demo.app.DemoApp`): the
compatibility heatmap of chosen text models and a stitch between two of them, over standard-library sentences,
each model's lock held while it embeds."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np

from zoo.apps.demo.gallery import stdlib_sentences
from zoo.errors import ZooError


class Comparisons:
    """The Spaces tab's logic; mixed into DemoApp, whose ``model``, ``model_lock``, ``unavailable_reason`` and
    ``plots_dir`` it uses."""

    def heatmap(self, models: Sequence[str], n_sentences: int = 120) -> tuple[str, list[list]]:
        from zoo.spaces.compat import METRICS, compatibility

        if len(models) < 2:
            raise ValueError("choose at least two models")
        self._require_available(models)
        embedders = [self.model(m) for m in models]
        sentences = stdlib_sentences(n_sentences)
        with _locks_of(self, models):
            result = compatibility(embedders, sentences, test_fraction=0.5, seed=0, modality="text")
        self.plots_dir.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(json.dumps([list(models), n_sentences]).encode()).hexdigest()[:12]
        png = result.plot(self.plots_dir / f"compat-{digest}.png")
        rows = [[r["model_a"], r["model_b"], *(round(r[m], 3) for m in METRICS)]
                for r in result.rows() if r["model_a"] != r["model_b"]]
        return str(png), rows

    def stitch(self, model_a: str, model_b: str, n_anchors: int = 80) -> dict:
        """Fit a Procrustes stitch A -> B on ``n_anchors`` sentences; quality on the rest (held out)."""
        from zoo.spaces.stitching import stitch

        if model_a == model_b:
            raise ValueError("pick two different models")
        self._require_available([model_a, model_b])
        sentences = stdlib_sentences()
        if not 8 <= n_anchors <= len(sentences) - 8:
            raise ValueError(f"anchors must be between 8 and {len(sentences) - 8}")
        order = np.random.default_rng(0).permutation(len(sentences))
        anchors = [sentences[i] for i in order[:n_anchors]]
        test = [sentences[i] for i in order[n_anchors:]]
        a, b = self.model(model_a), self.model(model_b)
        with _locks_of(self, [model_a, model_b]):
            fitted = stitch(a, b, anchors, test=test, modality="text", register=False)
        return {"anchors": len(anchors), "held_out": len(test), **dict(fitted.quality or {})}

    def _require_available(self, names: Sequence[str]) -> None:
        """Raise ZooError naming every model whose weights are not on this machine, before any model loads."""
        reasons = [r for r in dict.fromkeys(self.unavailable_reason(n) for n in names) if r]
        if reasons:
            raise ZooError(" ".join(reasons))


class _locks_of:
    """Hold the locks of several models, in name order (no deadlock between two requests)."""

    def __init__(self, app: Comparisons, names: Sequence[str]):
        self.locks = [app.model_lock(n) for n in sorted(set(names))]

    def __enter__(self):
        for lock in self.locks:
            lock.acquire()

    def __exit__(self, *exc):
        for lock in reversed(self.locks):
            lock.release()
