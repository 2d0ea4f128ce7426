"""The search kernels, on numpy arrays: exact top-k by dot product (blocked matmul, ``argpartition``), the
same over rows made float32 a block at a time, and the Hamming top-k of packed bits (faiss's popcount kernel where
faiss is installed, numpy's over 64-bit words otherwise, row ranges split over a thread pool)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

_BLOCK_FLOATS = 1 << 25  # scores held at once by exact search: 128 MB of float32
_SCAN_ROWS = 1 << 15  # rows converted to float32 at once when scanning int8 codes or unpacked bits
_HAMMING_ROWS = 1 << 15  # rows per block of the Hamming scan (their words, 256 KB each, stay in cache)
_pool: ThreadPoolExecutor | None = None
_pool_guard = threading.Lock()
_faiss_module = None  # faiss once imported, False when it is not installed


def exact_topk(q: np.ndarray, x: np.ndarray, k: int, *, tiebreak: np.ndarray | None = None,
               mask: np.ndarray | None = None):
    """Exact top-k rows of ``x`` by dot product with each row of ``q``: (positions (m, k'), scores (m, k')).

    Blocks of queries keep the score matrix under _BLOCK_FLOATS floats; ``argpartition`` picks each
    row's k best, which are then sorted by score (ties by ``tiebreak``, default the position). ``mask``
    (bool per row of ``x``) leaves out the rows where it is False.
    """
    n = len(x)
    k = min(k, n if mask is None else int(np.count_nonzero(mask)))
    tiebreak = np.arange(n) if tiebreak is None else tiebreak
    top = np.empty((len(q), k), dtype=np.int64)
    scores = np.empty((len(q), k), dtype=np.float32)
    if not k:
        return top, scores
    hidden = np.flatnonzero(~mask) if mask is not None else None
    step = max(1, _BLOCK_FLOATS // max(n, 1))
    for s in range(0, len(q), step):
        block = q[s:s + step] @ x.T
        if hidden is not None and len(hidden):
            block[:, hidden] = -np.inf
        part = np.argpartition(block, n - k, axis=1)[:, n - k:]  # the k best, unordered, at the end
        part_scores = np.take_along_axis(block, part, axis=1)
        order = np.lexsort((tiebreak[part], -part_scores), axis=-1)
        top[s:s + step] = np.take_along_axis(part, order, axis=1)
        scores[s:s + step] = np.take_along_axis(part_scores, order, axis=1)
    return top, scores


def _scan_topk(q: np.ndarray, n: int, k: int, block: Callable[[int, int], np.ndarray], tiebreak: np.ndarray,
               mask: np.ndarray | None):
    """exact_topk over rows made float32 a block at a time by ``block(start, stop)``, the blocks' bests merged."""
    tops, scores = [], []
    for s in range(0, n, _SCAN_ROWS):
        e = min(n, s + _SCAN_ROWS)
        top, sc = exact_topk(q, block(s, e), k, tiebreak=tiebreak[s:e], mask=None if mask is None else mask[s:e])
        tops.append(top + s)
        scores.append(sc)
    top = np.concatenate(tops, axis=1) if tops else np.zeros((len(q), 0), np.int64)
    sc = np.concatenate(scores, axis=1) if scores else np.zeros((len(q), 0), np.float32)
    order = np.lexsort((tiebreak[top], -sc), axis=-1)[:, :k]
    return np.take_along_axis(top, order, axis=1), np.take_along_axis(sc, order, axis=1)


def hamming_topk(queries: np.ndarray, bits: np.ndarray, c: int, *,
                 words: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``c`` rows nearest each query by Hamming distance: (positions (m, c'), distances (m, c')).

    ``queries``: (m, b) uint8, each query's packed bits; ``bits``: (n, b) uint8, the rows' packed bits.
    Ties go to the lower position; c' is min(c, n). With faiss installed (``pip install faiss-cpu``, part
    of the ``store`` extra) its popcount kernel scans the rows; without it numpy does, over ``words``
    (``_words(bits)``, computed here when not given). Either way row ranges are scanned on a thread pool
    when there are fewer queries than threads (both release the GIL in their loops).
    """
    m, n = len(queries), len(bits)
    c = min(int(c), n)
    if not c or not m:
        return np.zeros((m, 0), np.int64), np.zeros((m, 0), np.uint16)
    faiss = _faiss()
    if faiss is not None:
        threads = 1 if m >= _threads() else min(_threads(), max(1, n // (1 << 16)))
        queries = np.ascontiguousarray(queries, dtype=np.uint8)

        def scan(start: int, stop: int):
            dist, pos = faiss.knn_hamming(queries, np.ascontiguousarray(bits[start:stop]), min(c, stop - start))
            return np.repeat(np.arange(m), pos.shape[1]), pos.ravel() + start, dist.ravel().astype(np.uint16)
    else:
        if words is None:
            words = _words(bits)
        qwords = _words(queries).T.copy()
        threads = min(_threads(), max(1, n // (1 << 16)))

        def scan(start: int, stop: int):
            return _hamming_range(qwords, words, start, stop, c)
    bounds = np.linspace(0, n, threads + 1).astype(np.int64)
    if threads == 1:
        parts = [scan(0, n)]
    else:
        parts = list(_thread_pool().map(lambda r: scan(int(r[0]), int(r[1])),
                                        zip(bounds[:-1], bounds[1:], strict=True)))
    qi, pos, dist = (np.concatenate(arrays) for arrays in zip(*parts, strict=True))
    qi, pos, dist = _keep_nearest(qi, pos, dist, c, m)
    return pos.reshape(m, c), dist.reshape(m, c)


def _faiss():
    """The faiss module, or None where it is not installed (the Hamming scan then runs on numpy)."""
    global _faiss_module
    if _faiss_module is None:
        try:
            import faiss
        except ImportError:
            faiss = False
        _faiss_module = faiss
    return _faiss_module or None


def _hamming_range(qwords: np.ndarray, words: np.ndarray, start: int, stop: int, c: int):
    """(query, position, distance) of each query's ``c`` nearest rows in [start, stop) (all of them where the
    range has fewer), by (distance, position). Rows go a block at a time (its words stay in cache) and within
    a block one query at a time: numpy's loops over one contiguous row of words with a scalar are the fastest
    it has. A query keeps the rows within its bound: its c-th nearest distance so far."""
    m, nwords = qwords.shape
    xor = np.empty(_HAMMING_ROWS, dtype=np.uint64)
    bits = np.empty(_HAMMING_ROWS, dtype=np.uint8)
    dist = np.empty(_HAMMING_ROWS, dtype=np.uint16)
    scalars = [[qwords.dtype.type(v) for v in row] for row in qwords]
    limit = [None] * m  # a query's bound: rows farther than it cannot be among its c nearest
    closed = [False] * m  # the query holds c rows at distance 0 before this block: nothing later can enter
    found_pos: list[list[np.ndarray]] = [[] for _ in range(m)]
    found_dist: list[list[np.ndarray]] = [[] for _ in range(m)]
    held = [0] * m
    for s in range(start, stop, _HAMMING_ROWS):
        e = min(stop, s + _HAMMING_ROWS)
        x, b, d = xor[:e - s], bits[:e - s], dist[:e - s]
        rows = [words[w, s:e] for w in range(nwords)]
        for i in range(m):
            if closed[i]:
                continue
            for w in range(nwords):
                np.bitwise_xor(rows[w], scalars[i][w], out=x)
                np.bitwise_count(x, out=b)
                if w:
                    np.add(d, b, out=d)
                else:
                    np.copyto(d, b)
            if limit[i] is None and e - s >= c:
                limit[i] = int(np.partition(d, c - 1)[c - 1])
            hit = np.flatnonzero(d <= limit[i]) if limit[i] is not None else np.arange(e - s)
            if not len(hit):
                continue
            found_pos[i].append(hit + s)
            found_dist[i].append(d[hit])
            held[i] += len(hit)
            if held[i] > max(4 * c, 4096):
                pos, dd = _nearest(np.concatenate(found_pos[i]), np.concatenate(found_dist[i]), c)
                found_pos[i], found_dist[i], held[i] = [pos], [dd], len(pos)
                # later rows have larger positions: a tie with the c-th nearest cannot displace it
                closed[i] = dd[-1] == 0
                limit[i] = int(dd[-1]) - 1
    qi, pos, dd = [], [], []
    for i in range(m):
        if held[i]:
            p, d = _nearest(np.concatenate(found_pos[i]), np.concatenate(found_dist[i]), c)
            qi.append(np.full(len(p), i, dtype=np.int64))
            pos.append(p)
            dd.append(d)
    if not qi:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint16)
    return np.concatenate(qi), np.concatenate(pos), np.concatenate(dd)


def _nearest(pos: np.ndarray, dist: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``c`` of (position, distance) pairs by (distance, position)."""
    order = np.lexsort((pos, dist))[:c]
    return pos[order], dist[order]


def _keep_nearest(qi, pos, dist, c: int, m: int):
    """Each query's first ``c`` entries by (distance, position), sorted by query."""
    order = np.lexsort((pos, dist, qi))
    qi, pos, dist = qi[order], pos[order], dist[order]
    keep = np.arange(len(qi)) - np.searchsorted(qi, np.arange(m))[qi] < c
    return qi[keep], pos[keep], dist[keep]


def _threads() -> int:
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except (AttributeError, OSError):
        return max(1, min(8, os.cpu_count() or 1))


def _thread_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_guard:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_threads(), thread_name_prefix="zoo-hamming",
                                       initializer=_one_omp_thread)
        return _pool


def _one_omp_thread() -> None:
    """Each pool thread scans its own rows: faiss's OpenMP team inside it would only contend with the
    others for the cores (a 1M-row scan on 2 cores went from 5.4 to 3.3 ms)."""
    faiss = _faiss()
    if faiss is not None:
        faiss.omp_set_num_threads(1)


def _words(packed: np.ndarray) -> np.ndarray:
    """Packed bits (n, bytes) as (words, n) uint64: zero bytes pad each row to whole words."""
    n, width = packed.shape
    nwords = max(1, -(-width // 8))
    padded = np.zeros((n, nwords * 8), dtype=np.uint8)
    padded[:, :width] = packed
    return np.ascontiguousarray(padded.view("<u8").T)


def _signs(packed: np.ndarray, dim: int) -> np.ndarray:
    """Packed bits as float32 +-1 vectors of ``dim`` entries."""
    out = np.unpackbits(packed, axis=-1, count=dim).astype(np.float32)
    out *= 2
    out -= 1
    return out
