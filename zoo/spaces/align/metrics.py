"""Metrics on plain arrays: cross-space retrieval, neighbourhood agreement, CKA, modality gap.

Retrieval (``recall_at_k``, ``mrr``, ``ndcg_at_10``, ``retrieval_metrics``) ranks a gallery for
each query by similarity (cosine unless told otherwise). The answer key is either
``targets`` - the index of the one correct gallery item per query (item i's match is item i
when both sides embed the same list) - or ``relevance``, a dense (n_queries, n_gallery)
matrix of graded relevance (> 0 means relevant). With several relevant items, recall@k is
the hit rate (a relevant item in the top k, the "R@K" of cross-modal retrieval) and MRR uses
the best-ranked relevant item. nDCG@10 uses linear gains, ``rel / log2(rank + 2)``, as
trec_eval (and so MTEB) does.

Neighbourhood agreement (``mutual_knn``, ``topk_jaccard``) compares the same items in two
spaces: each item's k nearest other items in space A versus in space B. ``mutual_knn`` is
the shared fraction |A ∩ B| / k (Huh et al. 2024, "The Platonic Representation Hypothesis",
whose code L2-normalizes, ranks by inner product and excludes the item itself);
``topk_jaccard`` is |A ∩ B| / |A ∪ B| (the neighbourhood Jaccard of Moschella et al. 2023).

``linear_cka`` is Kornblith et al. 2019's linear CKA, computed in feature space
(||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)) with float64 sums over row blocks: memory is
O(d^2), never O(n^2). ``modality_gap`` is Liang et al. 2022's gap: the distance between the
centroids of the L2-normalized embeddings of two modalities.

All n x n similarity work goes through :mod:`zoo.align._blocks` in bounded row blocks.
"""

from __future__ import annotations

import numpy as np

from zoo.errors import InvalidInputError
from zoo.spaces.align._blocks import (
    as_matrix,
    block_rows,
    check_int,
    knn_indices,
    prepare,
    ranks_of,
    similarity_blocks,
    top_k,
)

__all__ = [
    "linear_cka",
    "modality_gap",
    "mrr",
    "mutual_knn",
    "ndcg_at_10",
    "recall_at_k",
    "retrieval_metrics",
    "target_ranks",
    "topk_jaccard",
]

_DISCOUNT = 1.0 / np.log2(np.arange(2, 12))  # positions 0..9 of nDCG@10


# ---------------------------------------------------------------------------------------------- retrieval


def _retrieval_inputs(queries, gallery, targets, relevance):
    q = as_matrix(queries, "queries")
    g = as_matrix(gallery, "gallery")
    if q.shape[1] != g.shape[1]:
        raise InvalidInputError(f"queries have dim {q.shape[1]} but the gallery has dim {g.shape[1]}: "
                                "compare vectors of one space (stitch one side first)")
    if (targets is None) == (relevance is None):
        raise InvalidInputError("pass exactly one of targets= (correct gallery index per query) or relevance=")
    if targets is not None:
        try:
            t = np.asarray(targets)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"targets must be {len(q)} integer gallery indices ({exc})") from None
        if t.shape != (len(q),) or not np.issubdtype(t.dtype, np.integer):
            raise InvalidInputError(f"targets must be {len(q)} integer gallery indices, got shape {t.shape}")
        bad = np.flatnonzero((t < 0) | (t >= len(g)))
        if len(bad):
            raise InvalidInputError(f"target {int(t[bad[0]])} is not a gallery index (0..{len(g) - 1})",
                                    index=int(bad[0]))
        return q, g, t.astype(np.int64), None
    rel = as_matrix(relevance, "relevance", min_rows=0)
    if rel.shape != (len(q), len(g)):
        raise InvalidInputError(f"relevance must have shape (n_queries, n_gallery) = {(len(q), len(g))}, "
                                f"got {rel.shape}")
    empty = np.flatnonzero(~(rel > 0).any(axis=1))
    if len(empty):
        raise InvalidInputError("query has no relevant gallery item", index=int(empty[0]))
    return q, g, None, rel


def _scan(q, g, targets, rel, *, metric, chunk_rows):
    """One pass over the similarity blocks: best-relevant ranks and per-query nDCG@10."""
    ranks = np.empty(len(q), dtype=np.int64)
    ndcg = np.empty(len(q), dtype=np.float64)
    q, g = prepare(q, metric), prepare(g, metric)
    for start, block in similarity_blocks(q, g, metric=metric, chunk_rows=chunk_rows):
        rows = slice(start, start + len(block))
        if rel is None:
            ranks[rows] = ranks_of(block, targets[rows])
            ndcg[rows] = np.where(ranks[rows] < 10, 1.0 / np.log2(ranks[rows] + 2.0), 0.0)
            continue
        r = rel[rows]
        best = np.argmax(np.where(r > 0, block, -np.inf), axis=1)
        ranks[rows] = ranks_of(block, best)
        top = top_k(block, 10)
        gains = np.take_along_axis(r, top, axis=1)
        ideal = np.take_along_axis(r, top_k(r, 10), axis=1)
        disc = _DISCOUNT[: top.shape[1]]
        ndcg[rows] = (gains @ disc) / (ideal @ disc)
    return ranks, ndcg


def target_ranks(queries, gallery, targets, *, metric: str = "cosine", chunk_rows: int | None = None) -> np.ndarray:
    """0-based rank of each query's correct gallery item (0 = retrieved first)."""
    q, g, t, _ = _retrieval_inputs(queries, gallery, targets, None)
    return _scan(q, g, t, None, metric=metric, chunk_rows=chunk_rows)[0]


def retrieval_metrics(
    queries,
    gallery,
    targets=None,
    *,
    relevance=None,
    ks: tuple[int, ...] = (1, 10),
    metric: str = "cosine",
    chunk_rows: int | None = None,
) -> dict[str, float]:
    """recall@k for each k in ``ks``, MRR and nDCG@10 from one pass over the similarities.

    Returns keys ``recall_at_<k>``, ``mrr`` and ``ndcg_at_10``.
    """
    if isinstance(ks, (str, bytes)) or not isinstance(ks, (tuple, list)):
        raise InvalidInputError(f"ks must be a tuple of integers, not {type(ks).__name__}")
    ks = tuple(check_int(k, "ks[]", low=1) for k in ks)
    q, g, t, rel = _retrieval_inputs(queries, gallery, targets, relevance)
    ranks, ndcg = _scan(q, g, t, rel, metric=metric, chunk_rows=chunk_rows)
    out = {f"recall_at_{k}": float(np.mean(ranks < k)) for k in ks}
    out["mrr"] = float(np.mean(1.0 / (ranks + 1.0)))
    out["ndcg_at_10"] = float(np.mean(ndcg))
    return out


def recall_at_k(queries, gallery, targets=None, *, k: int = 1, relevance=None, metric: str = "cosine",
                chunk_rows: int | None = None) -> float:
    """Fraction of queries whose correct (or any relevant) gallery item ranks in the top ``k``."""
    k = check_int(k, "k", low=1)
    res = retrieval_metrics(queries, gallery, targets, relevance=relevance, ks=(k,), metric=metric,
                            chunk_rows=chunk_rows)
    return res[f"recall_at_{k}"]


def mrr(queries, gallery, targets=None, *, relevance=None, metric: str = "cosine",
        chunk_rows: int | None = None) -> float:
    """Mean reciprocal rank of the correct (or best-ranked relevant) gallery item."""
    return retrieval_metrics(queries, gallery, targets, relevance=relevance, ks=(), metric=metric,
                             chunk_rows=chunk_rows)["mrr"]


def ndcg_at_10(queries, gallery, targets=None, *, relevance=None, metric: str = "cosine",
               chunk_rows: int | None = None) -> float:
    """Mean nDCG@10 (linear gains; one correct item per query unless ``relevance`` is given)."""
    return retrieval_metrics(queries, gallery, targets, relevance=relevance, ks=(), metric=metric,
                             chunk_rows=chunk_rows)["ndcg_at_10"]


# ------------------------------------------------------------------------------------ neighbourhoods


def _paired(a, b) -> tuple[np.ndarray, np.ndarray]:
    x, y = as_matrix(a, "a"), as_matrix(b, "b")
    if len(x) != len(y):
        raise InvalidInputError(f"a and b must hold the same items (row i = item i): {len(x)} vs {len(y)} rows")
    return x, y


def _shared_neighbours(a, b, k: int, metric: str, chunk_rows: int | None) -> np.ndarray:
    """Per item, how many of its k nearest neighbours in ``a`` are also among those in ``b``."""
    k = check_int(k, "k")
    x, y = _paired(a, b)
    na = knn_indices(x, k, metric=metric, chunk_rows=chunk_rows)
    nb = knn_indices(y, k, metric=metric, chunk_rows=chunk_rows)
    shared = np.empty(len(na), dtype=np.int64)
    step = max(1, 2**24 // (k * k))  # bounds the (rows, k, k) comparison cube
    for s in range(0, len(na), step):
        shared[s:s + step] = (na[s:s + step, :, None] == nb[s:s + step, None, :]).any(axis=2).sum(axis=1)
    return shared


def mutual_knn(a, b, *, k: int = 10, metric: str = "cosine", chunk_rows: int | None = None) -> float:
    """Mean fraction of shared k nearest neighbours of each item in spaces ``a`` and ``b`` (dims may differ)."""
    return float(np.mean(_shared_neighbours(a, b, k, metric, chunk_rows)) / k)


def topk_jaccard(a, b, *, k: int = 10, metric: str = "cosine", chunk_rows: int | None = None) -> float:
    """Mean Jaccard index of each item's k-nearest-neighbour sets in spaces ``a`` and ``b``."""
    shared = _shared_neighbours(a, b, k, metric, chunk_rows)
    return float(np.mean(shared / (2 * k - shared)))


# ----------------------------------------------------------------------------------------- geometry


def linear_cka(a, b, *, chunk_rows: int | None = None) -> float:
    """Linear centered kernel alignment of two representations of the same items (1 = same up to
    rotation and isotropic scale; dims may differ)."""
    x, y = _paired(a, b)
    if len(x) < 2:
        raise InvalidInputError("linear_cka needs at least 2 items")
    mx, my = x.mean(axis=0, dtype=np.float64), y.mean(axis=0, dtype=np.float64)
    xx = np.zeros((x.shape[1], x.shape[1]))
    yy = np.zeros((y.shape[1], y.shape[1]))
    yx = np.zeros((y.shape[1], x.shape[1]))
    step = block_rows(2 * (x.shape[1] + y.shape[1]), chunk_rows)  # float64 rows of both sides
    for s in range(0, len(x), step):
        xc = x[s:s + step].astype(np.float64) - mx
        yc = y[s:s + step].astype(np.float64) - my
        xx += xc.T @ xc
        yy += yc.T @ yc
        yx += yc.T @ xc
    denom = np.linalg.norm(xx) * np.linalg.norm(yy)
    if denom == 0:
        raise InvalidInputError("linear_cka is undefined: one representation is constant across items")
    return float(np.sum(yx * yx) / denom)


def modality_gap(a, b) -> float:
    """Euclidean distance between the centroids of the L2-normalized rows of ``a`` and ``b``.

    ``a`` and ``b`` are embeddings of two modalities in one space (e.g. CLIP images and
    texts); they need not pair up. 0 means the centroids coincide; at most 2.
    """
    x, y = as_matrix(a, "a"), as_matrix(b, "b")
    if x.shape[1] != y.shape[1]:
        raise InvalidInputError(f"modality_gap needs one space: dims {x.shape[1]} and {y.shape[1]} differ")
    cx = prepare(x, "cosine").mean(axis=0, dtype=np.float64)
    cy = prepare(y, "cosine").mean(axis=0, dtype=np.float64)
    return float(np.linalg.norm(cx - cy))
