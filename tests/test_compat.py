"""The compatibility matrix: its metrics on spaces with known relations, and `zoo compat` on two real models."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from tests.support import stdlib_sentences
from zoo.cli import main
from zoo.compat import METRICS, compatibility_from_vectors, split_items
from zoo.errors import InvalidInputError


def _spaces(n: int = 300, seed: int = 0):
    """A base space, its rotation into more dims, and an unrelated space, for anchors and held-out items."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 10))
    rot = np.linalg.qr(rng.normal(size=(14, 14)))[0][:10]
    unrelated = rng.normal(size=(n, 8))
    return [base, base @ rot, unrelated]


def test_matrices_reflect_known_relations():
    vectors = _spaces()
    result = compatibility_from_vectors(["base", "rotated", "noise"], [v[:200] for v in vectors],
                                        [v[200:] for v in vectors])
    m = result.matrices
    assert result.models == ("base", "rotated", "noise") and (result.n_anchors, result.n_test) == (200, 100)
    for metric in METRICS:
        assert np.allclose(np.diag(m[metric]), 1.0)
    assert m["linear_cka"][0, 1] == pytest.approx(1.0, abs=1e-9)
    assert m["mutual_knn"][0, 1] == pytest.approx(1.0)
    assert m["stitched_recall_at_1"][0, 1] == 1.0 and m["stitched_recall_at_1"][1, 0] == 1.0
    assert m["linear_cka"][0, 2] < 0.3 and m["mutual_knn"][0, 2] < 0.3
    assert m["stitched_recall_at_1"][0, 2] < 0.2
    assert np.allclose(m["linear_cka"], m["linear_cka"].T)


def test_split_is_seeded_and_disjoint():
    items = [f"s{i}" for i in range(50)]
    a, t = split_items(items, 0.3, seed=1)
    assert (len(a), len(t)) == (35, 15) and not set(a) & set(t)
    assert split_items(items, 0.3, seed=1) == (a, t) and split_items(items, 0.3, seed=2) != (a, t)
    with pytest.raises(InvalidInputError):
        split_items(items, 1.5)


def test_cli_writes_csv_and_heatmap_for_two_real_models(tmp_path, capsys):
    anchors = tmp_path / "anchors.txt"
    anchors.write_text("\n".join(stdlib_sentences()[:160]), encoding="utf-8")
    out = tmp_path / "compat"
    rc = main(["compat", "all-minilm-l6-v2", "paraphrase-minilm-l3-v2", "--anchors", str(anchors),
               "--out", str(out)])
    assert rc == 0
    rows = list(csv.DictReader((out / "compat.csv").open(encoding="utf-8")))
    assert len(rows) == 4
    cross = next(r for r in rows if r["model_a"] == "all-minilm-l6-v2" and r["model_b"] != r["model_a"])
    # two MiniLM sentence encoders trained on overlapping data: clearly related, not identical
    assert 0.5 < float(cross["linear_cka"]) < 0.999
    assert float(cross["stitched_recall_at_1"]) > 0.5
    png = (out / "compat.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert "80 held-out items" in capsys.readouterr().out


def test_cli_needs_two_models(tmp_path, capsys):
    anchors = tmp_path / "a.txt"
    anchors.write_text("one\ntwo\n", encoding="utf-8")
    assert main(["compat", "all-minilm-l6-v2", "--anchors", str(anchors)]) == 2
