"""zoo.align.metrics: retrieval, neighbourhood agreement, CKA and modality gap on plain arrays.

Each metric is checked against a direct formula on small data, on cases whose answer is known
(identical spaces, rotated copies, random spaces), and for bounded memory when chunked.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.align import _blocks, metrics
from zoo.errors import InvalidInputError


def _rng(seed=0):
    return np.random.default_rng(seed)


def _rotation(d, seed):
    q, r = np.linalg.qr(_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _reference_ranks(q, g, targets):
    """Rank of each target by a stable full sort of -cosine (ties: smaller index first)."""
    sims = _unit(q.astype(np.float64)) @ _unit(g.astype(np.float64)).T
    order = np.argsort(-sims, axis=1, kind="stable")
    return np.array([int(np.flatnonzero(order[i] == t)[0]) for i, t in enumerate(targets)])


def _reference_knn_sets(x, k):
    sims = _unit(x.astype(np.float64)) @ _unit(x.astype(np.float64)).T
    np.fill_diagonal(sims, -np.inf)
    return [set(np.argsort(-row, kind="stable")[:k]) for row in sims]


# ------------------------------------------------------------------------------------------ retrieval


def test_identical_spaces_retrieve_perfectly():
    x = _rng().normal(size=(300, 24)).astype(np.float32)
    res = metrics.retrieval_metrics(x, x, np.arange(300), ks=(1, 10))
    assert res == {"recall_at_1": 1.0, "recall_at_10": 1.0, "mrr": 1.0, "ndcg_at_10": 1.0}


def test_random_spaces_retrieve_at_chance():
    rng = _rng(1)
    n = 2000
    q, g = rng.normal(size=(n, 32)), rng.normal(size=(n, 32))
    # chance: recall@k = k / n (0.0005 and 0.005); the bounds are ~4 binomial sigmas
    assert metrics.recall_at_k(q, g, np.arange(n), k=1) <= 0.004
    assert 0.0 < metrics.recall_at_k(q, g, np.arange(n), k=10) <= 0.012
    assert metrics.mrr(q, g, np.arange(n)) < 0.01


def test_ranks_match_a_full_stable_sort():
    rng = _rng(2)
    q, g = rng.normal(size=(50, 8)), rng.normal(size=(70, 8))
    targets = rng.integers(0, 70, size=50)
    np.testing.assert_array_equal(metrics.target_ranks(q, g, targets, chunk_rows=7), _reference_ranks(q, g, targets))


def test_ties_rank_the_smaller_gallery_index_first():
    g = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    q = np.array([[1.0, 0.0], [2.0, 0.0]])
    np.testing.assert_array_equal(metrics.target_ranks(q, g, np.array([0, 1])), [0, 1])


def test_ndcg_and_mrr_for_a_known_rank():
    # gallery items at decreasing cosine to the query: the target (index 3) ranks 3rd (0-based 2)
    angles = np.array([0.1, 0.2, 0.5, 0.3, 0.9])
    g = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    q = np.array([[1.0, 0.0]])
    assert metrics.target_ranks(q, g, np.array([3]))[0] == 2
    assert metrics.mrr(q, g, np.array([3])) == pytest.approx(1 / 3)
    assert metrics.ndcg_at_10(q, g, np.array([3])) == pytest.approx(1 / np.log2(4))
    assert metrics.recall_at_k(q, g, np.array([3]), k=2) == 0.0
    assert metrics.recall_at_k(q, g, np.array([3]), k=3) == 1.0


def test_relevance_matrix_form():
    rng = _rng(3)
    q, g = rng.normal(size=(40, 6)), rng.normal(size=(60, 6))
    targets = rng.integers(0, 60, size=40)
    onehot = np.zeros((40, 60))
    onehot[np.arange(40), targets] = 1
    a = metrics.retrieval_metrics(q, g, targets)
    b = metrics.retrieval_metrics(q, g, relevance=onehot, chunk_rows=9)
    assert a == pytest.approx(b)


def test_graded_ndcg_matches_hand_computation():
    # gallery order for the query by cosine: items 0, 1, 2, 3 (angles increase)
    angles = np.array([0.0, 0.1, 0.2, 0.3])
    g = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    q = np.array([[1.0, 0.0]])
    rel = np.array([[0.0, 2.0, 0.0, 3.0]])
    dcg = 2 / np.log2(3) + 3 / np.log2(5)
    idcg = 3 / np.log2(2) + 2 / np.log2(3)
    assert metrics.ndcg_at_10(q, g, relevance=rel) == pytest.approx(dcg / idcg)
    assert metrics.mrr(q, g, relevance=rel) == pytest.approx(1 / 2)  # best relevant is at rank 2
    assert metrics.recall_at_k(q, g, relevance=rel, k=1) == 0.0


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 60), chunk=st.integers(1, 70))
def test_chunking_never_changes_results(seed, n, chunk):
    rng = _rng(seed)
    q, g = rng.normal(size=(n, 5)), rng.normal(size=(n + 3, 5))
    targets = rng.integers(0, n + 3, size=n)
    assert metrics.retrieval_metrics(q, g, targets, chunk_rows=chunk) == metrics.retrieval_metrics(q, g, targets)
    a, b = rng.normal(size=(n + 3, 4)), rng.normal(size=(n + 3, 7))
    k = min(3, n + 1)
    assert metrics.mutual_knn(a, b, k=k, chunk_rows=chunk) == metrics.mutual_knn(a, b, k=k)


def test_retrieval_input_errors():
    x = np.ones((3, 4))
    with pytest.raises(InvalidInputError, match="dim"):
        metrics.recall_at_k(x, np.ones((3, 5)), np.arange(3))
    with pytest.raises(InvalidInputError) as err:
        metrics.recall_at_k(x, x, np.array([0, 7, 1]))
    assert err.value.index == 1
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(InvalidInputError) as err:
        metrics.mrr(bad, x, np.arange(3))
    assert err.value.index == 2
    with pytest.raises(InvalidInputError) as err:
        metrics.ndcg_at_10(x, x, relevance=np.array([[1, 0, 0], [0, 0, 0], [0, 0, 1]]))
    assert err.value.index == 1
    with pytest.raises(InvalidInputError, match="exactly one"):
        metrics.mrr(x, x)


# ------------------------------------------------------------------------------------- bounded memory


def test_block_size_is_bounded_for_a_100k_gallery():
    rows = _blocks.block_rows(100_000)
    assert rows * 100_000 * 4 <= _blocks.BLOCK_BYTES
    assert rows >= 100


def test_chunked_scan_never_holds_the_full_matrix():
    rng = _rng(4)
    n = 3000
    q, g = rng.normal(size=(n, 16)).astype(np.float32), rng.normal(size=(n, 16)).astype(np.float32)
    full_matrix_bytes = n * n * 4  # 36 MB
    tracemalloc.start()
    metrics.retrieval_metrics(q, g, np.arange(n), chunk_rows=100)
    metrics.mutual_knn(q, g, k=10, chunk_rows=100)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < full_matrix_bytes / 4, peak


# ------------------------------------------------------------------------------------- neighbourhoods


def test_knn_metrics_against_brute_force():
    rng = _rng(5)
    a, b = rng.normal(size=(80, 6)), rng.normal(size=(80, 9))
    sa, sb = _reference_knn_sets(a, 5), _reference_knn_sets(b, 5)
    shared = np.array([len(x & y) for x, y in zip(sa, sb, strict=True)])
    assert metrics.mutual_knn(a, b, k=5, chunk_rows=11) == pytest.approx(np.mean(shared / 5))
    assert metrics.topk_jaccard(a, b, k=5) == pytest.approx(np.mean(shared / (10 - shared)))


def test_knn_metrics_on_known_cases():
    rng = _rng(6)
    x = rng.normal(size=(200, 12))
    moved = 3.0 * x @ _rotation(12, 1)
    assert metrics.mutual_knn(x, x) == 1.0
    assert metrics.mutual_knn(x, moved) == 1.0
    assert metrics.topk_jaccard(x, moved) == 1.0
    # unrelated spaces share about k / (n - 1) of their neighbours
    assert metrics.mutual_knn(x, rng.normal(size=(200, 12))) < 0.15


def test_knn_needs_more_items_than_k():
    with pytest.raises(InvalidInputError, match="k must be"):
        metrics.mutual_knn(np.ones((5, 2)), np.ones((5, 2)), k=5)
    with pytest.raises(InvalidInputError, match="same items"):
        metrics.topk_jaccard(np.ones((5, 2)), np.ones((6, 2)), k=2)


# ---------------------------------------------------------------------------------------------- CKA


def _cka_direct(x, y):
    """Kornblith et al. 2019, eq. via HSIC: tr(K H L H) / sqrt(tr(K H K H) tr(L H L H)), linear kernels."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = x @ x.T, y @ y.T
    hsic = lambda a, b: np.trace(a @ h @ b @ h)  # noqa: E731
    return hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))


def test_cka_matches_the_direct_formula():
    rng = _rng(7)
    x, y = rng.normal(size=(30, 5)), rng.normal(size=(30, 8))
    y[:, :3] += 2 * x[:, :3]
    assert metrics.linear_cka(x, y) == pytest.approx(_cka_direct(x, y), rel=1e-5)
    assert metrics.linear_cka(x, y, chunk_rows=4) == pytest.approx(_cka_direct(x, y), rel=1e-5)


def test_cka_is_one_for_identical_inputs():
    x = _rng(8).normal(size=(100, 10))
    assert metrics.linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), d=st.integers(2, 16), scale=st.floats(0.01, 100.0))
def test_cka_is_invariant_to_rotation_and_isotropic_scale(seed, d, scale):
    rng = _rng(seed)
    x, y = rng.normal(size=(60, d)), rng.normal(size=(60, d))
    y[:, 0] += x[:, 0]
    base = metrics.linear_cka(x, y)
    assert metrics.linear_cka(scale * x @ _rotation(d, seed + 1), y) == pytest.approx(base, abs=1e-5)
    assert metrics.linear_cka(x, y + 5.0) == pytest.approx(base, abs=1e-5)  # centring removes offsets


def test_cka_is_not_invariant_to_anisotropic_scaling():
    x = _rng(9).normal(size=(200, 6))
    stretched = x * np.array([10.0, 1, 1, 1, 1, 0.1])
    assert metrics.linear_cka(x, stretched) < 0.9


def test_cka_refuses_a_constant_representation():
    with pytest.raises(InvalidInputError, match="constant"):
        metrics.linear_cka(np.ones((10, 3)), _rng().normal(size=(10, 3)))


# -------------------------------------------------------------------------------------- modality gap


def test_modality_gap():
    rng = _rng(10)
    a = rng.normal(size=(500, 8)) * 0.1 + np.eye(8)[0]
    b = rng.normal(size=(400, 8)) * 0.1 - np.eye(8)[0]
    gap = metrics.modality_gap(a, b)
    expected = np.linalg.norm(_unit(a).mean(axis=0) - _unit(b).mean(axis=0))
    assert gap == pytest.approx(expected, rel=1e-6)
    assert gap > 1.9  # opposite clusters on the sphere: centroids nearly 2 apart
    assert metrics.modality_gap(a, a) == 0.0
    assert metrics.modality_gap(a * rng.uniform(0.1, 10, size=(500, 1)), b) == pytest.approx(gap, rel=1e-5)
    with pytest.raises(InvalidInputError, match="one space"):
        metrics.modality_gap(a, b[:, :4])


# ------------------------------------------------------------------------------------------- imports


def test_align_is_numpy_only_and_not_imported_by_zoo():
    code = ("import sys, json, zoo; before = any(m in sys.modules for m in ('zoo.align', 'zoo.spaces.align'));"
            "import zoo.align;"
            "print(json.dumps([before, sorted(m for m in ('torch', 'transformers') if m in sys.modules)]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, []]
