"""Checked matrices and similarity computed block by block, so memory stays bounded.

Every all-pairs quantity in ``zoo.align`` (retrieval ranks, k nearest neighbours, anchor
distances) is computed over row blocks of the query matrix: one block of similarities has
``rows x n_gallery`` entries and is sized to about :data:`BLOCK_BYTES`, whatever the number of
queries. A 100k x 100k comparison therefore never holds more than one ~64 MiB block (plus
the normalized inputs themselves, which are O(n d)), never the 40 GB full matrix.

Ordering rule shared by all callers: a gallery is ranked by decreasing similarity, ties
broken by the smaller gallery index (what a stable sort of ``-similarity`` gives), so every
metric is deterministic.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np

from zoo.errors import InvalidInputError

Metric = Literal["cosine", "dot", "euclidean"]
METRICS: tuple[str, ...] = ("cosine", "dot", "euclidean")

#: Target size of one block of similarities (float32 entries).
BLOCK_BYTES = 64 * 2**20


def _shown(value, width: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def check_int(value, name: str, *, low: int | None = None) -> int:
    """``value`` as an int (bools and floats refused), at least ``low``; else InvalidInputError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InvalidInputError(f"{name} must be an integer, not {type(value).__name__} {_shown(value)}")
    if low is not None and value < low:
        raise InvalidInputError(f"{name} must be >= {low}, not {int(value)}")
    return int(value)


def check_float(value, name: str) -> float:
    """``value`` as a finite float (ints accepted, bools refused); else InvalidInputError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"{name} must be a number, not {type(value).__name__} {_shown(value)}")
    if not np.isfinite(value):
        raise InvalidInputError(f"{name} must be finite, not {value}")
    return float(value)


def check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidInputError(f"{name} must be True or False, not {type(value).__name__} {_shown(value)}")
    return bool(value)


def check_choice(value, allowed: tuple[str, ...], name: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise InvalidInputError(f"{name} must be one of {allowed}, not {_shown(value)}")
    return value


def check_str(value, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{name} must be a string, not {type(value).__name__} {_shown(value)}")
    return value


def check_path(value, name: str = "path") -> Path:
    """``value`` (str or os.PathLike) as a Path; anything else (or a NUL byte) is an InvalidInputError."""
    if not isinstance(value, (str, os.PathLike)) or isinstance(value, bytes):
        raise InvalidInputError(f"{name} must be a file path (str or Path), not {type(value).__name__} "
                                f"{_shown(value)}")
    path = Path(value)
    if "\0" in str(path):
        raise InvalidInputError(f"{name} {_shown(str(path))} contains a NUL byte")
    return path


def as_matrix(x, name: str = "x", *, min_rows: int = 1) -> np.ndarray:
    """``x`` as a finite 2-D float32 array (one vector per row); bad rows raise with their index.

    Accepts numpy arrays, nested lists and anything with ``.vectors`` (zoo Embeddings).
    """
    vectors = getattr(x, "vectors", x)
    if vectors is None or isinstance(vectors, (str, bytes, dict)):
        raise InvalidInputError(f"{name} must be a 2-D array of numbers, not {type(vectors).__name__}")
    try:
        arr = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInputError(f"{name} must be a 2-D array of numbers ({exc})") from None
    if arr.ndim != 2:
        raise InvalidInputError(f"{name} must be a 2-D array (n, dim), got shape {arr.shape}")
    if arr.shape[0] < min_rows or arr.shape[1] < 1:
        raise InvalidInputError(f"{name} needs at least {min_rows} row(s) of dim >= 1, got shape {arr.shape}")
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise InvalidInputError(f"{name} row {row} has a NaN or infinite value", index=row)
    return arr


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32, copy=False)


def check_metric(metric: str) -> None:
    check_choice(metric, METRICS, "metric")


def prepare(x: np.ndarray, metric: str) -> np.ndarray:
    """The form of ``x`` whose inner products rank like ``metric`` (cosine: unit rows)."""
    check_metric(metric)
    return l2_normalize(x) if metric == "cosine" else x


def block_rows(n_cols: int, chunk_rows: int | None = None) -> int:
    """Rows per block: ``chunk_rows`` if given, else as many as fit in :data:`BLOCK_BYTES`."""
    if chunk_rows is not None:
        return check_int(chunk_rows, "chunk_rows", low=1)
    return max(1, BLOCK_BYTES // (4 * max(1, n_cols)))


def similarity_blocks(
    queries: np.ndarray, gallery: np.ndarray, *, metric: str, chunk_rows: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, block)`` with ``block[i, j]`` ranking like sim(queries[start + i], gallery[j]).

    Inputs must already be :func:`prepare`-d. For "euclidean" the block is ``2 q.g - |g|^2``,
    which orders the gallery exactly as the negative distance does (the query's own norm is a
    per-row constant).
    """
    step = block_rows(len(gallery), chunk_rows)
    sq_norms = np.einsum("ij,ij->i", gallery, gallery) if metric == "euclidean" else None
    for start in range(0, len(queries), step):
        block = queries[start:start + step] @ gallery.T
        if sq_norms is not None:
            block *= 2
            block -= sq_norms
        yield start, block


def ranks_of(block: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """0-based rank of gallery item ``cols[i]`` in row ``i`` of ``block`` (ties: smaller index first)."""
    target = block[np.arange(len(block)), cols][:, None]
    ranks = np.count_nonzero(block > target, axis=1).astype(np.int64)
    tied = np.count_nonzero(block == target, axis=1) > 1  # rare: the target ties with another item
    for i in np.flatnonzero(tied):
        ranks[i] += np.count_nonzero(block[i, : cols[i]] == target[i])
    return ranks


def top_k(block: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest entries of each row, best first (ties: smaller index)."""
    k = min(k, block.shape[1])
    part = np.argpartition(-block, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(block, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    return np.take_along_axis(part, order, axis=1)


def knn_indices(x: np.ndarray, k: int, *, metric: str, chunk_rows: int | None = None) -> np.ndarray:
    """(n, k) indices of each row's k nearest other rows of ``x`` (itself excluded)."""
    k = check_int(k, "k")
    if not 1 <= k < len(x):
        raise InvalidInputError(f"k must be between 1 and n - 1 = {len(x) - 1} (n = {len(x)} items), not {k}")
    x = prepare(x, metric)
    out = np.empty((len(x), k), dtype=np.int64)
    for start, block in similarity_blocks(x, x, metric=metric, chunk_rows=chunk_rows):
        rows = np.arange(len(block))
        block[rows, start + rows] = -np.inf
        out[start:start + len(block)] = top_k(block, k)
    return out
