"""Can two embedding spaces talk? The compatibility matrix of a set of models over shared items.

For every ordered pair of models (A, B) over the same items, :func:`compatibility` reports

- linear CKA (Kornblith et al. 2019) of their vectors of the held-out items: 1 when one space
  is a rotation and scaling of the other;
- mutual-kNN: the mean share of each item's 10 nearest neighbours the two spaces agree on;
- stitched recall@1: a Procrustes stitch from A to B fitted on the anchor items, then each
  held-out item's A-vector, stitched, must find its own B-vector among all held-out B-vectors.

CKA and mutual-kNN are symmetric; stitched recall is not (A -> B can work better than B -> A).
``zoo compat MODELS... --anchors FILE`` writes the table as CSV and the three matrices as a
heatmap PNG.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.errors import InvalidInputError

METRICS = ("linear_cka", "mutual_knn", "stitched_recall_at_1")


@dataclass(frozen=True)
class Compatibility:
    """The matrices (models x models) of every metric, row = source model, column = target model."""

    models: tuple[str, ...]
    matrices: dict[str, np.ndarray]
    n_anchors: int
    n_test: int

    def rows(self) -> list[dict]:
        out = []
        for i, a in enumerate(self.models):
            for j, b in enumerate(self.models):
                out.append({"model_a": a, "model_b": b, **{m: round(float(self.matrices[m][i, j]), 6)
                                                            for m in METRICS}})
        return out

    def to_csv(self, path: str | Path) -> Path:
        path = Path(path)
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["model_a", "model_b", *METRICS])
            writer.writeheader()
            writer.writerows(self.rows())
        return path

    def plot(self, path: str | Path) -> Path:
        """One heatmap per metric, side by side, values written in the cells."""
        from zoo.errors import require

        require("matplotlib", extra="plots", purpose="compatibility heatmaps")
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n = len(self.models)
        fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 1.2 + 0.55 * n + 1.5),
                                 constrained_layout=True)
        for ax, metric in zip(axes, METRICS, strict=True):
            m = self.matrices[metric]
            ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
            ax.set_title(metric.replace("_", " "))
            ax.set_xticks(range(n), self.models, rotation=45, ha="right", fontsize=8)
            ax.set_yticks(range(n), self.models, fontsize=8)
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=8,
                            color="black" if m[i, j] > 0.6 else "white")
        axes[0].set_ylabel("source (A)")
        for ax in axes:
            ax.set_xlabel("target (B)")
        fig.suptitle(f"embedding-space compatibility: {self.n_anchors} anchors, {self.n_test} held-out items")
        path = Path(path)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def split_items(items: Sequence, test_fraction: float = 0.5, seed: int = 0) -> tuple[list, list]:
    """A seeded split of items into (anchors, held-out)."""
    if not 0 < test_fraction < 1:
        raise InvalidInputError(f"test_fraction must be between 0 and 1, not {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(items))
    cut = int(round(len(items) * (1 - test_fraction)))
    return [items[i] for i in order[:cut]], [items[i] for i in order[cut:]]


def compatibility_from_vectors(names: Sequence[str], anchors: Sequence[np.ndarray], tests: Sequence[np.ndarray],
                               *, k: int = 10) -> Compatibility:
    """The matrices from each model's anchor vectors and held-out vectors (same items, same order)."""
    from zoo.spaces.align import fit_stitch, linear_cka, mutual_knn, recall_at_k

    n = len(names)
    if not (len(anchors) == len(tests) == n) or n < 2:
        raise InvalidInputError("need anchor and held-out vectors for at least two models")
    mats = {m: np.eye(n) for m in METRICS}
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            if i < j:
                mats["linear_cka"][i, j] = mats["linear_cka"][j, i] = linear_cka(tests[i], tests[j])
                mats["mutual_knn"][i, j] = mats["mutual_knn"][j, i] = mutual_knn(tests[i], tests[j], k=k)
            st = fit_stitch(anchors[i], anchors[j], method="procrustes")
            mats["stitched_recall_at_1"][i, j] = recall_at_k(st.apply(tests[i]), tests[j],
                                                             np.arange(len(tests[j])), k=1)
    return Compatibility(tuple(names), mats, n_anchors=len(anchors[0]), n_test=len(tests[0]))


def compatibility(models: Sequence, items: Sequence, *, test_items: Sequence | None = None,
                  test_fraction: float = 0.5, seed: int = 0, modality: str | None = None) -> Compatibility:
    """Embed ``items`` with every model and compute the matrices (see the module docstring).

    Without ``test_items``, ``items`` are split (seeded) into anchors and held-out items.
    """
    from zoo.catalog.loader import load

    if test_items is None:
        anchor_items, test_items = split_items(list(items), test_fraction, seed)
    else:
        anchor_items, test_items = list(items), list(test_items)
    if len(anchor_items) < 2 or len(test_items) < 2:
        raise InvalidInputError("need at least two anchor items and two held-out items")
    names, anchors, tests = [], [], []
    for m in models:
        model = load(m) if isinstance(m, str) else m
        names.append(model.name)
        anchors.append(model.embed(anchor_items, modality=modality).vectors)
        tests.append(model.embed(test_items, modality=modality).vectors)
    return compatibility_from_vectors(names, anchors, tests)
