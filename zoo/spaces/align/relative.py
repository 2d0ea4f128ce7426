"""Relative representations: each vector re-expressed as its similarities to a set of anchors.

Moschella et al. 2023 ("Relative representations enable zero-shot latent space
communication", ICLR, arXiv 2209.15430) observe that two models trained on the same data
differ, to a good approximation, by an angle-preserving transform (rotation, reflection,
rescaling). Describing a point by its cosine similarity to a fixed list of anchor items,
each embedded by the same model, cancels that transform: two spaces become comparable
coordinate by coordinate, without training. The official code (lucmos/relreps,
``RelativeAttention``) L2-normalizes the batch and the anchors and takes inner products; its
models then normalize the relative vector (BatchNorm, LayerNorm or InstanceNorm options).

What we offer, numpy only:

- similarities: ``cosine`` (the paper's; invariant to rotation/reflection and isotropic
  scale), ``angular`` (1 - angle/pi, the same invariances on a linear-in-angle scale) and
  ``euclidean`` (minus the distance; invariant to rotation and translation, and to scale too
  once an output normalization divides it out). ``center=True`` subtracts the anchors' mean
  first, which adds translation invariance to cosine/angular.
- output normalizations: ``none``; ``l2`` (unit rows); ``layernorm`` (each row standardized
  over its anchors, LayerNorm without affine); ``standardize`` (each anchor coordinate
  standardized with a mean and std fitted on reference data: BatchNorm in inference mode,
  statistics stored with the projector).

:class:`RelativeProjector` holds one space's anchor vectors plus these choices and saves to a
single safetensors file (arrays as tensors, choices as the header's string metadata), sealed by a
``content_sha256`` over every choice and every array's dtype, shape and bytes: a file edited after
saving (a choice, an anchor) is an IntegrityError on load. Files of format version 1 (unsealed,
older zoo) load only with ``allow_unsealed=True``; save them again to seal them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from zoo.errors import CardError, IntegrityError, InvalidInputError
from zoo.spaces.align._blocks import as_matrix, check_bool, check_choice, check_path, check_str, l2_normalize
from zoo.spaces.align._files import canonical_sha256, read_safetensors

__all__ = ["NORMALIZATIONS", "SIMILARITIES", "RelativeProjector", "relative_projection", "relative_representation"]

Similarity = Literal["cosine", "angular", "euclidean"]
Normalization = Literal["none", "l2", "layernorm", "standardize"]
SIMILARITIES: tuple[str, ...] = ("cosine", "angular", "euclidean")
NORMALIZATIONS: tuple[str, ...] = ("none", "l2", "layernorm", "standardize")
_EPS = 1e-8
_FORMAT = "zoo.relative"


def _check_choice(value: str, allowed: tuple[str, ...], what: str) -> None:
    check_choice(value, allowed, what)


def relative_projection(x, anchors, *, similarity: Similarity = "cosine", center: bool = False) -> np.ndarray:
    """(n, m) similarities of each row of ``x`` to each of the ``m`` anchor vectors (same space)."""
    _check_choice(similarity, SIMILARITIES, "similarity")
    center = check_bool(center, "center")
    x, a = as_matrix(x, "x", min_rows=0), as_matrix(anchors, "anchors")
    if x.shape[1] != a.shape[1]:
        raise InvalidInputError(f"x has dim {x.shape[1]} but the anchors have dim {a.shape[1]}: "
                                "embed the anchors with the same model as x")
    x, a = x.astype(np.float64), a.astype(np.float64)  # float64: arccos is steep near cos = 1
    if center:
        mean = a.mean(axis=0)
        x, a = x - mean, a - mean
    if similarity == "euclidean":
        sq = np.einsum("ij,ij->i", x, x)[:, None] - 2 * (x @ a.T) + np.einsum("ij,ij->i", a, a)[None, :]
        return -np.sqrt(np.maximum(sq, 0.0)).astype(np.float32)
    cos = _unit_rows(x) @ _unit_rows(a).T
    if similarity == "angular":
        return (1.0 - np.arccos(np.clip(cos, -1.0, 1.0)) / np.pi).astype(np.float32)
    return cos.astype(np.float32)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-30)


def _standardize(rel: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((rel - mean) / np.maximum(std, _EPS)).astype(np.float32)


def _normalize(rel: np.ndarray, normalization: str, mean=None, std=None) -> np.ndarray:
    if normalization == "l2":
        return l2_normalize(rel)
    if normalization == "layernorm":
        return _standardize(rel, rel.mean(axis=1, keepdims=True), rel.std(axis=1, keepdims=True))
    if normalization == "standardize":
        return _standardize(rel, mean, std)
    return rel


def relative_representation(
    x,
    anchors,
    *,
    similarity: Similarity = "cosine",
    normalization: Normalization = "none",
    center: bool = False,
) -> np.ndarray:
    """One-shot relative representation of ``x``; ``standardize`` uses the statistics of ``x`` itself
    (BatchNorm in training mode). Use :class:`RelativeProjector` to fit and keep statistics."""
    _check_choice(normalization, NORMALIZATIONS, "normalization")
    rel = relative_projection(x, anchors, similarity=similarity, center=center)
    if normalization == "standardize" and len(rel) < 2:
        raise InvalidInputError("normalization='standardize' needs at least 2 rows to take statistics from")
    return _normalize(rel, normalization, rel.mean(axis=0), rel.std(axis=0))


@dataclass(frozen=True, eq=False)
class RelativeProjector:
    """A space's anchor vectors plus the similarity and normalization that turn vectors into
    relative representations.

    Attributes:
        anchors: (m, d) the anchor items embedded in this space, in the anchor set's order.
        similarity, normalization, center: see the module docstring.
        mean, std: (m,) statistics of ``standardize`` (set by :meth:`fit`).
        anchor_hash: the :class:`~zoo.align.AnchorSet` hash the anchors come from ("" if unknown).
        space: the embedding space id of ``anchors`` ("" if unknown).
    """

    anchors: np.ndarray
    similarity: Similarity = "cosine"
    normalization: Normalization = "none"
    center: bool = False
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    anchor_hash: str = ""
    space: str = ""

    def __post_init__(self) -> None:
        _check_choice(self.similarity, SIMILARITIES, "similarity")
        _check_choice(self.normalization, NORMALIZATIONS, "normalization")
        object.__setattr__(self, "center", check_bool(self.center, "center"))
        check_str(self.anchor_hash, "anchor_hash")
        check_str(self.space, "space")
        object.__setattr__(self, "anchors", as_matrix(self.anchors, "anchors"))
        m = len(self.anchors)
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                try:
                    value = np.asarray(value, dtype=np.float32)
                except (TypeError, ValueError, OverflowError) as exc:
                    raise InvalidInputError(f"{name} must be a vector of numbers ({exc})") from None
                if value.shape == (m,) and not np.isfinite(value).all():
                    raise InvalidInputError(f"{name} has a NaN or infinite value")
                if value.shape != (m,):
                    raise InvalidInputError(f"{name} must have shape ({m},) (one per anchor), got {value.shape}")
                object.__setattr__(self, name, value)

    @property
    def n_anchors(self) -> int:
        return len(self.anchors)

    @property
    def fitted(self) -> bool:
        """Whether the projector has what it needs (statistics, for ``standardize``)."""
        return self.normalization != "standardize" or (self.mean is not None and self.std is not None)

    def fit(self, reference) -> RelativeProjector:
        """A copy whose ``standardize`` statistics come from ``reference`` vectors of this space."""
        rel = relative_projection(reference, self.anchors, similarity=self.similarity, center=self.center)
        if len(rel) < 2:
            raise InvalidInputError("fit needs at least 2 reference vectors")
        return dataclasses.replace(self, mean=rel.mean(axis=0), std=rel.std(axis=0))

    def transform(self, x) -> np.ndarray:
        """(n, m) relative representation of ``x`` (vectors of this projector's space)."""
        if not self.fitted:
            raise InvalidInputError("normalization='standardize' needs statistics: call fit(reference) first")
        rel = relative_projection(x, self.anchors, similarity=self.similarity, center=self.center)
        return _normalize(rel, self.normalization, self.mean, self.std)

    __call__ = transform

    # ---------------------------------------------------------------------------------- files

    def save(self, path: str | Path) -> Path:
        """Write one sealed ``.safetensors`` file: anchors (+ mean/std) as tensors, choices as metadata."""
        from safetensors.numpy import save_file

        path = check_path(path)
        tensors = {"anchors": self.anchors}
        if self.mean is not None and self.std is not None:
            tensors |= {"mean": self.mean, "std": self.std}
        meta = {"format": _FORMAT, "format_version": "2", "similarity": self.similarity,
                "normalization": self.normalization, "center": str(self.center).lower(),
                "anchor_hash": self.anchor_hash, "space": self.space}
        save_file(tensors, str(path), metadata=meta | {"content_sha256": _seal(meta, tensors)})
        return path

    @classmethod
    def load(cls, path: str | Path, *, allow_unsealed: bool = False) -> RelativeProjector:
        """Read a file written by :meth:`save`. Anything else raises CardError; a file whose contents differ
        from its seal (edited or damaged after saving) raises IntegrityError; an unsealed file (format version
        1, an older zoo) raises CardError unless ``allow_unsealed=True``."""
        meta, tensors = read_safetensors(check_path(path))
        expected = {"format", "format_version", "similarity", "normalization", "center", "anchor_hash", "space"}
        version = meta.get("format_version")
        if version == "2":
            expected.add("content_sha256")
        if set(meta) != expected or meta["format"] != _FORMAT or version not in ("1", "2"):
            raise CardError(f"{path}: not a zoo relative projector (metadata keys {sorted(meta)})")
        if version == "1" and not allow_unsealed:
            raise CardError(f"{path}: an unsealed relative projector (older zoo), so edits to it go unseen; load it "
                            "with RelativeProjector.load(..., allow_unsealed=True) if you trust it, and save it "
                            "again to seal it")
        names = set(tensors)
        if names not in ({"anchors"}, {"anchors", "mean", "std"}):
            raise CardError(f"{path}: unexpected tensors {sorted(names)}; want anchors (+ mean and std)")
        if version == "2":
            seal = meta.pop("content_sha256")
            if seal != _seal(meta, tensors):
                raise IntegrityError(f"{path}: its contents differ from its seal (content_sha256): the file was "
                                     "edited or damaged after saving")
        if meta["center"] not in ("true", "false"):
            raise CardError(f"{path}: center must be 'true' or 'false', not {meta['center']!r}")
        try:
            return cls(anchors=tensors["anchors"], similarity=meta["similarity"],
                       normalization=meta["normalization"], center=meta["center"] == "true",
                       mean=tensors.get("mean"), std=tensors.get("std"),
                       anchor_hash=meta["anchor_hash"], space=meta["space"])
        except InvalidInputError as exc:
            raise CardError(f"{path}: {exc}") from None



def _seal(meta: dict[str, str], tensors: dict[str, np.ndarray]) -> str:
    """sha256 over the metadata (without the seal) and every tensor's name, dtype, shape and bytes."""
    import hashlib

    arrays = {name: [str(a.dtype), list(a.shape), hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()]
              for name, a in sorted(tensors.items())}
    return canonical_sha256({"metadata": meta, "tensors": arrays})
