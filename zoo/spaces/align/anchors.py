"""Anchor sets: the shared list of items that relative representations and stitches are built on.

Two spaces can only be compared through anchors if both embedded the *same* items in the
*same* order, so an :class:`AnchorSet` is identified by a content hash over its items (texts,
or sha256 digests of files), in order, plus a human version label. The hash, not the name,
is what a stitch card or relative projector records.

Choosing anchors from a candidate pool (the paper's follow-ups show the choice matters):

- ``random``: a seeded uniform sample without replacement;
- ``kmeans``: seeded k-means++ initialisation (Arthur & Vassilvitskii 2007) and Lloyd
  iterations in numpy, then the medoid of each cluster - the member with the smallest total
  distance to the other members - so each anchor is a real pool item that represents a
  region of the space (the relreps code picks the member nearest each centroid; the medoid
  is the same idea without the centroid's pull towards outliers);
- ``farthest``: greedy max-min (farthest-point) sampling from the point farthest from the
  pool's mean, which spreads anchors to the extremes of the pool.

With ``metric="cosine"`` (the default) rows are L2-normalized first, so distances follow the
angles that embedding models are compared by.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from zoo.errors import CardError, InvalidInputError
from zoo.spaces.align._blocks import (
    as_matrix,
    block_rows,
    check_choice,
    check_float,
    check_int,
    check_path,
    check_str,
    l2_normalize,
)
from zoo.spaces.align._files import read_text, sha256_file

__all__ = ["STRATEGIES", "AnchorSet", "farthest_point", "kmeans_medoids", "random_anchors", "select_anchors"]

Strategy = Literal["random", "kmeans", "farthest"]
STRATEGIES: tuple[str, ...] = ("random", "kmeans", "farthest")
_FORMAT = "zoo.anchorset"
_FIELDS = {"format", "format_version", "name", "version", "kind", "hash", "items", "labels", "selection"}
_MEDOID_CANDIDATES = 256  # exact medoid below this cluster size; else the best of the members nearest the centroid


@dataclass(frozen=True)
class AnchorSet:
    """An ordered, hashed list of anchor items.

    Attributes:
        items: the anchors: texts (``kind="text"``) or sha256 hex digests of files (``kind="file"``).
        version: a label for people ("1", "2024-06"); not part of the hash.
        name: a short name for people; not part of the hash.
        kind: "text" or "file".
        labels: optional display names, one per item (file paths, ids); not part of the hash.
        selection: how the items were chosen (strategy, seed, pool size); not part of the hash.
    """

    items: tuple[str, ...]
    version: str = "1"
    name: str = ""
    kind: Literal["text", "file"] = "text"
    labels: tuple[str, ...] = ()
    selection: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for what in ("items", "labels"):
            value = getattr(self, what)
            if isinstance(value, (str, bytes, dict)) or not isinstance(value, (Sequence, np.ndarray)):
                raise InvalidInputError(f"{what} must be a list of strings, not {type(value).__name__}")
            object.__setattr__(self, what, tuple(value))
        check_str(self.version, "version")
        check_str(self.name, "name")
        if not isinstance(self.selection, dict):
            raise InvalidInputError(f"selection must be a dict, not {type(self.selection).__name__}")
        if not self.items:
            raise InvalidInputError("an anchor set needs at least one item")
        check_choice(self.kind, ("text", "file"), "kind")
        seen: dict[str, int] = {}
        for i, item in enumerate(self.items):
            if not isinstance(item, str) or not item:
                raise InvalidInputError("anchor items must be non-empty strings", index=i)
            if item in seen:
                raise InvalidInputError(f"duplicate anchor (same as item {seen[item]})", index=i)
            seen[item] = i
        if self.labels and len(self.labels) != len(self.items):
            raise InvalidInputError(f"labels must be one per item: {len(self.labels)} for {len(self.items)} items")
        for i, label in enumerate(self.labels):
            if not isinstance(label, str):
                raise InvalidInputError(f"labels must be strings, not {type(label).__name__}", index=i)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def hash(self) -> str:
        """sha256 hex over the items in order (each length-prefixed, so item boundaries count)."""
        h = hashlib.sha256()
        for item in self.items:
            data = item.encode("utf-8")
            h.update(len(data).to_bytes(8, "big"))
            h.update(data)
        return h.hexdigest()

    def __repr__(self) -> str:
        return f"AnchorSet(name={self.name!r}, version={self.version!r}, n={len(self)}, hash={self.hash[:12]})"

    @classmethod
    def from_files(cls, paths: Sequence[str | Path], *, version: str = "1", name: str = "") -> AnchorSet:
        """Anchors that are files (images, audio...): items are their sha256 digests, labels their paths."""
        if isinstance(paths, (str, bytes, os.PathLike)) or not isinstance(paths, Sequence):
            raise InvalidInputError(f"paths must be a list of file paths, not {type(paths).__name__}")
        items = []
        for i, p in enumerate(paths):
            if not isinstance(p, (str, os.PathLike)) or isinstance(p, bytes):
                raise InvalidInputError(f"anchor files are paths (str or Path), not {type(p).__name__}", index=i)
            try:
                if not Path(p).is_file():
                    raise InvalidInputError(f"anchor file not found: {p}", index=i)
                items.append(sha256_file(Path(p)))
            except (OSError, ValueError) as exc:
                if isinstance(exc, InvalidInputError):
                    raise
                raise InvalidInputError(f"anchor file {str(p)!r:.120} cannot be read ({exc})", index=i) from None
        return cls(tuple(items), version=version, name=name, kind="file", labels=tuple(str(p) for p in paths))

    @classmethod
    def select(cls, items: Sequence[str], vectors, n: int, *, strategy: Strategy = "kmeans", seed: int = 0,
               metric: str = "cosine", version: str = "1", name: str = "", kind: str = "text") -> AnchorSet:
        """Choose ``n`` anchors from a pool of ``items`` whose embeddings (one space) are ``vectors``."""
        x = as_matrix(vectors, "vectors")
        if isinstance(items, (str, bytes, dict)) or not isinstance(items, (Sequence, np.ndarray)):
            raise InvalidInputError(f"items must be a list of pool items, not {type(items).__name__}")
        if len(items) != len(x):
            raise InvalidInputError(f"{len(items)} pool items but {len(x)} vectors: one vector per item")
        idx = select_anchors(x, n, strategy=strategy, seed=seed, metric=metric)
        selection = {"strategy": strategy, "seed": seed, "metric": metric, "pool_size": len(items)}
        return cls(tuple(items[i] for i in idx), version=version, name=name, kind=kind, selection=selection)

    # ------------------------------------------------------------------------------------ files

    def save(self, path: str | Path) -> Path:
        """Write JSON (items and labels, never pickles) with the hash, which :meth:`load` re-checks."""
        path = check_path(path)
        doc = {"format": _FORMAT, "format_version": 1, "name": self.name, "version": self.version,
               "kind": self.kind, "hash": self.hash, "items": list(self.items), "labels": list(self.labels),
               "selection": self.selection}
        path.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> AnchorSet:
        """Read a file written by :meth:`save`; unknown fields or edited items raise CardError."""
        path = check_path(path)
        try:
            doc = json.loads(read_text(path, "anchor set"))
        except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            raise CardError(f"{path}: not a readable anchor set ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT or doc.get("format_version") != 1:
            raise CardError(f"{path}: not a zoo anchor set (format {_FORMAT!r}, format_version 1)")
        if set(doc) != _FIELDS:
            unknown, missing = sorted(set(doc) - _FIELDS), sorted(_FIELDS - set(doc))
            raise CardError(f"{path}: unknown fields {unknown}, missing fields {missing}")
        if not isinstance(doc["items"], list) or not isinstance(doc["labels"], list):
            raise CardError(f"{path}: items and labels must be lists of strings")
        for key in ("name", "version", "kind", "hash"):
            if not isinstance(doc[key], str):
                raise CardError(f"{path}: {key} must be a string, not {type(doc[key]).__name__}")
        if not isinstance(doc["selection"], dict):
            raise CardError(f"{path}: selection must be an object")
        try:
            anchors = cls(tuple(doc["items"]), version=doc["version"], name=doc["name"],
                          kind=doc["kind"], labels=tuple(doc["labels"]), selection=dict(doc["selection"]))
        except (InvalidInputError, TypeError, ValueError) as exc:
            raise CardError(f"{path}: {exc}") from None
        if anchors.hash != doc["hash"]:
            raise CardError(f"{path}: items do not match the recorded hash {str(doc['hash'])[:12]}... "
                            f"(they hash to {anchors.hash[:12]}...): the file was edited")
        return anchors


# ---------------------------------------------------------------------------------- selection


def _pool(vectors, n: int, metric: str) -> np.ndarray:
    x = as_matrix(vectors, "vectors")
    check_choice(metric, ("cosine", "euclidean"), "metric")
    n = check_int(n, "n")
    if not 1 <= n <= len(x):
        raise InvalidInputError(f"cannot choose {n} anchors from a pool of {len(x)}")
    return l2_normalize(x) if metric == "cosine" else x


def _sq_dists(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (len(x), len(c)), clipped at 0."""
    d = np.einsum("ij,ij->i", x, x)[:, None] - 2 * (x @ c.T) + np.einsum("ij,ij->i", c, c)[None, :]
    return np.maximum(d, 0.0)


def random_anchors(n_pool: int, n: int, *, seed: int = 0) -> np.ndarray:
    """``n`` distinct pool indices drawn uniformly with ``np.random.default_rng(seed)``."""
    n_pool, n, seed = check_int(n_pool, "n_pool"), check_int(n, "n"), check_int(seed, "seed", low=0)
    if not 1 <= n <= n_pool:
        raise InvalidInputError(f"cannot choose {n} anchors from a pool of {n_pool}")
    return np.random.default_rng(seed).choice(n_pool, size=n, replace=False)


def farthest_point(vectors, n: int, *, metric: str = "cosine", start: int | None = None) -> np.ndarray:
    """Greedy max-min sampling: each new anchor is the pool point farthest from those chosen so far."""
    x = _pool(vectors, n, metric)
    if start is not None and not 0 <= check_int(start, "start") < len(x):
        raise InvalidInputError(f"start must be a pool index (0..{len(x) - 1}), not {start}")
    first = int(np.argmax(_sq_dists(x, x.mean(axis=0, keepdims=True))[:, 0])) if start is None else int(start)
    chosen = [first]
    nearest = _sq_dists(x, x[first:first + 1])[:, 0]
    for _ in range(n - 1):
        nxt = int(np.argmax(nearest))
        if nearest[nxt] == 0:
            raise InvalidInputError(f"the pool has only {len(chosen)} distinct points; cannot choose {n} anchors")
        chosen.append(nxt)
        nearest = np.minimum(nearest, _sq_dists(x, x[nxt:nxt + 1])[:, 0])
    return np.asarray(chosen, dtype=np.int64)


def _assign(x: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest center of each row and the squared distance to it, in bounded row blocks."""
    labels = np.empty(len(x), dtype=np.int64)
    dist = np.empty(len(x), dtype=np.float64)
    step = block_rows(len(centers))
    for s in range(0, len(x), step):
        d = _sq_dists(x[s:s + step], centers)
        labels[s:s + step] = d.argmin(axis=1)
        dist[s:s + step] = d[np.arange(len(d)), labels[s:s + step]]
    return labels, dist


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each next center drawn with probability proportional to D(x)^2."""
    centers = [x[rng.integers(len(x))]]
    d2 = _sq_dists(x, centers[0][None, :])[:, 0].astype(np.float64)
    for _ in range(k - 1):
        total = d2.sum()
        i = rng.choice(len(x), p=d2 / total) if total > 0 else rng.integers(len(x))
        centers.append(x[i])
        d2 = np.minimum(d2, _sq_dists(x, x[i:i + 1])[:, 0])
    return np.stack(centers)


def _lloyd(x: np.ndarray, centers: np.ndarray, max_iter: int, tol: float) -> np.ndarray:
    """Lloyd iterations; an emptied cluster restarts at the point farthest from its center."""
    for _ in range(max_iter):
        labels, dist = _assign(x, centers)
        counts = np.bincount(labels, minlength=len(centers))
        sums = np.zeros_like(centers, dtype=np.float64)
        np.add.at(sums, labels, x)
        new = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
        for c in np.flatnonzero(counts == 0):
            far = int(np.argmax(dist))
            new[c], dist[far] = x[far], 0.0
        shift = float(np.sum((new - centers) ** 2))
        centers = new
        if shift <= tol:
            break
    return _assign(x, centers)[0]


def _medoid(members: np.ndarray, x: np.ndarray) -> int:
    """The member with the smallest sum of distances to all members (exact for small clusters)."""
    pts = x[members]
    cand = members
    if len(members) > _MEDOID_CANDIDATES:
        near = np.argsort(_sq_dists(pts, pts.mean(axis=0, keepdims=True))[:, 0], kind="stable")
        cand = members[near[:_MEDOID_CANDIDATES]]
    cand_pts, totals = x[cand], np.zeros(len(cand))
    step = block_rows(len(cand))
    for s in range(0, len(pts), step):
        totals += np.sqrt(_sq_dists(cand_pts, pts[s:s + step])).sum(axis=1)
    return int(cand[np.argmin(totals)])


def kmeans_medoids(vectors, n: int, *, seed: int = 0, metric: str = "cosine", max_iter: int = 100,
                   tol: float = 1e-7) -> np.ndarray:
    """Pool indices of the medoids of ``n`` k-means clusters (seeded k-means++ then Lloyd)."""
    x = _pool(vectors, n, metric)
    max_iter, tol = check_int(max_iter, "max_iter", low=1), check_float(tol, "tol")
    rng = np.random.default_rng(check_int(seed, "seed", low=0))
    labels = _lloyd(x, _kmeans_pp(x, n, rng), max_iter, tol)
    clusters = [np.flatnonzero(labels == c) for c in range(n)]
    medoids = [_medoid(m, x) for m in clusters if len(m)]
    if len(medoids) < n:
        raise InvalidInputError(f"the pool has too few distinct points for {n} clusters")
    return np.asarray(medoids, dtype=np.int64)


def select_anchors(vectors, n: int, *, strategy: Strategy = "kmeans", seed: int = 0,
                   metric: str = "cosine") -> np.ndarray:
    """Indices of ``n`` anchors chosen from the pool ``vectors`` by ``strategy`` (see module docstring)."""
    check_choice(strategy, STRATEGIES, "strategy")
    if strategy == "random":
        return random_anchors(len(as_matrix(vectors, "vectors")), n, seed=seed)
    if strategy == "kmeans":
        return kmeans_medoids(vectors, n, seed=seed, metric=metric)
    if strategy == "farthest":
        return farthest_point(vectors, n, metric=metric)
    raise InvalidInputError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
