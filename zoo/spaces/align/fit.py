"""Fitting stitches: a linear map from space A to space B from paired anchors, and its held-out quality.

Given the same n anchor items embedded by two models, X (n, da) in space A and Y (n, db) in
space B, ``fit_stitch`` finds W (da, db) and b (db,) so that ``x @ W + b`` lands near the
B-embedding of the same item. Methods:

- ``procrustes``: orthogonal Procrustes, W = U V^T from the SVD of X^T Y (Schönemann 1966):
  the rotation/reflection that best maps X onto Y; ``scale=True`` adds the best isotropic
  scale. Different dims: ``dim_policy="pad"`` (the default) zero-pads the smaller space,
  which is exactly the semi-orthogonal solution of the thin SVD (W has orthonormal rows
  or columns), so no information of the smaller space is dropped and nothing more is fitted;
  ``dim_policy="pca"`` first projects the larger space onto its top principal directions
  (fitted on the anchors) and rotates within min(da, db) dims.
- ``lstsq``: least squares, the minimum-norm solution (``numpy.linalg.lstsq``).
- ``ridge``: closed-form ridge, (X^T X + alpha I)^-1 X^T Y (dual form X^T (X X^T + alpha I)^-1 Y
  when n < da); alpha -> 0 gives ``lstsq``.
- ``affine``: least squares with a bias (always centred).

Preprocessing, recorded on the stitch and applied again by ``apply``: ``normalize`` (default
True) L2-normalizes the rows of X and Y before fitting, and inputs before mapping;
``center`` subtracts the anchors' means before fitting (default: only for ``affine``). The
means fold into the bias, b = mean(Y) - mean(X) @ W, so a stitch is always ``x @ W + b``.

The result is a :class:`~zoo.align.stitch.Stitch` (apply, save, load).
``evaluate_stitch`` measures it on held-out pairs: stitched A-queries retrieve from the
B-gallery (item i's match is item i), plus neighbourhood agreement and linear CKA between
the stitched vectors and the B vectors.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from zoo.errors import InvalidInputError, SpaceMismatchError
from zoo.spaces.align._blocks import as_matrix, check_bool, check_choice, check_float, check_int, l2_normalize
from zoo.spaces.align.anchors import AnchorSet
from zoo.spaces.align.metrics import linear_cka, mutual_knn, retrieval_metrics, topk_jaccard
from zoo.spaces.align.stitch import AnchorRef, FitConfig, SpaceRef, Stitch
from zoo.spaces.align.stitchcard import METHODS

__all__ = ["evaluate_stitch", "fit_stitch"]

Method = Literal["procrustes", "lstsq", "ridge", "affine"]
DimPolicy = Literal["pad", "pca"]


def _pca_basis(x: np.ndarray, k: int) -> np.ndarray:
    """(d, k) orthonormal top-k principal directions of the rows of ``x``."""
    xc = x - x.mean(axis=0)
    _, vecs = np.linalg.eigh(xc.T @ xc)  # ascending eigenvalues
    return vecs[:, ::-1][:, :k]


def _procrustes(x: np.ndarray, y: np.ndarray, *, scale: bool, dim_policy: str) -> np.ndarray:
    pa = pb = None
    if dim_policy == "pca" and x.shape[1] != y.shape[1]:
        k = min(x.shape[1], y.shape[1])
        if x.shape[1] > k:
            pa = _pca_basis(x, k)
            x = x @ pa
        else:
            pb = _pca_basis(y, k)
            y = y @ pb
    u, s, vt = np.linalg.svd(x.T @ y, full_matrices=False)
    w = u @ vt
    if scale:
        w *= s.sum() / max(float(np.sum(x * x)), 1e-30)
    if pa is not None:
        w = pa @ w
    if pb is not None:
        w = w @ pb.T
    return w


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    n, d = x.shape
    if n >= d:
        return np.linalg.solve(x.T @ x + alpha * np.eye(d), x.T @ y)
    return x.T @ np.linalg.solve(x @ x.T + alpha * np.eye(n), y)


def _space_ref(given, vectors, dim: int, side: str) -> SpaceRef:
    """The SpaceRef of one side, from ``given`` (str / SpaceRef / None) and the vectors' own space."""
    own = getattr(vectors, "space", None)
    if given is None:
        return SpaceRef(own or "", getattr(vectors, "model", ""), dim)
    ref = SpaceRef(given, "", dim) if isinstance(given, str) else given
    if not isinstance(ref, SpaceRef):
        raise InvalidInputError(f"{side} must be a space id (str) or a SpaceRef, not {type(given).__name__}")
    if own is not None and own != ref.space:
        raise SpaceMismatchError(f"{side} is declared as space {ref.space!r} but the vectors are from {own!r}")
    if ref.dim not in (0, dim):
        raise InvalidInputError(f"{side} space {ref.space!r} is declared with dim {ref.dim}, but the vectors "
                                f"have dim {dim}")
    return dataclasses.replace(ref, dim=dim)


def _fit_config(method, alpha, center, normalize, dim_policy, scale, n, same_dims) -> FitConfig:
    check_choice(method, METHODS, "method")
    check_choice(dim_policy, ("pad", "pca"), "dim_policy")
    alpha, normalize = check_float(alpha, "alpha"), check_bool(normalize, "normalize")
    scale = check_bool(scale, "scale")
    if center is not None:
        center = check_bool(center, "center")
    if method == "ridge" and not alpha > 0:
        raise InvalidInputError(f"ridge needs alpha > 0 (alpha -> 0 is method='lstsq'), not {alpha}")
    if scale and method != "procrustes":
        raise InvalidInputError("scale=True applies to method='procrustes' only")
    if method == "affine" and center is False:
        raise InvalidInputError("method='affine' always fits a bias (centres); use 'lstsq' for a map without one")
    return FitConfig(method=method, normalize=bool(normalize), center=bool(center) or method == "affine",
                     dim_policy=dim_policy if method == "procrustes" and not same_dims else "none",
                     alpha=float(alpha) if method == "ridge" else 0.0, scale=bool(scale), n_train=n)


def fit_stitch(
    X,
    Y,
    *,
    method: Method = "procrustes",
    alpha: float = 1.0,
    center: bool | None = None,
    normalize: bool = True,
    dim_policy: DimPolicy = "pad",
    scale: bool = False,
    source: str | SpaceRef | None = None,
    target: str | SpaceRef | None = None,
    anchors: AnchorSet | None = None,
    test: tuple | None = None,
) -> Stitch:
    """Fit a stitch from paired anchors: row i of ``X`` (space A) and of ``Y`` (space B) embed one item.

    Args:
        X, Y: (n, da) and (n, db) arrays, or zoo Embeddings (their spaces name the sides).
        method: "procrustes", "lstsq", "ridge" or "affine" (see the module docstring).
        alpha: ridge strength (ridge only).
        center: subtract the anchors' means before fitting (default: True for affine only).
        normalize: L2-normalize rows before fitting and inputs before mapping.
        dim_policy: procrustes across dims: "pad" (default) or "pca".
        scale: procrustes only: also fit one isotropic scale.
        source, target: space ids (or SpaceRef with the model name) recorded on the card.
        anchors: the AnchorSet whose items X and Y embed, in order; its hash goes on the card.
        test: optional held-out ``(X_test, Y_test)``; their quality figures go on the card.
    """
    x, y = as_matrix(X, "X", min_rows=2), as_matrix(Y, "Y", min_rows=2)
    if len(x) != len(y):
        raise InvalidInputError(f"X and Y must pair up row by row: {len(x)} vs {len(y)} rows")
    if anchors is not None and not isinstance(anchors, AnchorSet):
        raise InvalidInputError(f"anchors must be a zoo.align.AnchorSet, not {type(anchors).__name__}")
    if test is not None and (not isinstance(test, (tuple, list)) or len(test) != 2):
        raise InvalidInputError("test must be a pair (X_test, Y_test)")
    if anchors is not None and len(anchors) != len(x):
        raise InvalidInputError(f"the anchor set has {len(anchors)} items but X and Y have {len(x)} rows")
    cfg = _fit_config(method, alpha, center, normalize, dim_policy, scale, len(x), x.shape[1] == y.shape[1])
    src, tgt = _space_ref(source, X, x.shape[1], "source"), _space_ref(target, Y, y.shape[1], "target")
    if cfg.normalize:
        x, y = l2_normalize(x), l2_normalize(y)
    x, y = x.astype(np.float64), y.astype(np.float64)
    mx = x.mean(axis=0) if cfg.center else np.zeros(x.shape[1])
    my = y.mean(axis=0) if cfg.center else np.zeros(y.shape[1])
    xc, yc = x - mx, y - my
    if method == "procrustes":
        w = _procrustes(xc, yc, scale=cfg.scale, dim_policy=dim_policy)
    elif method == "ridge":
        w = _ridge(xc, yc, cfg.alpha)
    else:
        w = np.linalg.lstsq(xc, yc, rcond=None)[0]
    ref = None if anchors is None else AnchorRef(anchors.hash, len(anchors), anchors.name, anchors.version)
    stitch = Stitch(w.astype(np.float32), (my - mx @ w).astype(np.float32), src, tgt, cfg, ref)
    return stitch if test is None else stitch.with_quality(evaluate_stitch(stitch, *test))


def evaluate_stitch(stitch: Stitch, X_test, Y_test, *, knn_k: int = 10, chunk_rows: int | None = None) -> dict:
    """Held-out quality of ``stitch`` on pairs (X_test[i], Y_test[i]) of items not used to fit it.

    Returns n_test, knn_k, recall_at_1, recall_at_10, mrr, ndcg_at_10 (stitched A-queries
    against the B-gallery, cosine, item i's match is item i), and topk_jaccard, mutual_knn
    (k = knn_k) and linear_cka between the stitched vectors and Y_test (L2-normalized first when
    the stitch normalizes, since that is what it was fitted to reproduce).
    """
    if not isinstance(stitch, Stitch):
        raise InvalidInputError(f"stitch must be a zoo.align.Stitch, not {type(stitch).__name__}")
    knn_k = check_int(knn_k, "knn_k")
    y_space = getattr(Y_test, "space", None)
    if y_space is not None and y_space != stitch.target.space:
        raise SpaceMismatchError(f"Y_test is from space {y_space!r}, but the stitch maps into {stitch.target.space!r}")
    q = stitch.apply(X_test)
    q = getattr(q, "vectors", q)
    y = as_matrix(Y_test, "Y_test")
    if len(q) != len(y):
        raise InvalidInputError(f"X_test and Y_test must pair up row by row: {len(q)} vs {len(y)} rows")
    if y.shape[1] != stitch.target.dim:
        raise InvalidInputError(f"Y_test has dim {y.shape[1]}, but space {stitch.target.space!r} has dim "
                                f"{stitch.target.dim}")
    if not 1 <= knn_k < len(y):
        raise InvalidInputError(f"knn_k must be between 1 and n_test - 1 = {len(y) - 1}, not {knn_k}")
    if stitch.fit.normalize:  # the stitch was fitted to unit-length targets
        y = l2_normalize(y)
    out: dict = {"n_test": len(y), "knn_k": knn_k}
    out |= retrieval_metrics(q, y, np.arange(len(y)), ks=(1, 10), chunk_rows=chunk_rows)
    out["topk_jaccard"] = topk_jaccard(q, y, k=knn_k, chunk_rows=chunk_rows)
    out["mutual_knn"] = mutual_knn(q, y, k=knn_k, chunk_rows=chunk_rows)
    out["linear_cka"] = linear_cka(q, y, chunk_rows=chunk_rows)
    return out
