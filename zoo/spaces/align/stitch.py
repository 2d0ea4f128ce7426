"""The Stitch type: a fitted linear map from embedding space A to space B, and its files.

A stitch is always ``normalize?(x) @ weight + bias``: whatever the fitting method (see
:mod:`zoo.align.fit`), centring and dimension handling fold into ``weight`` and ``bias``, and
the choices are recorded in :class:`FitConfig`. ``apply`` checks that its input comes from
the source space (zoo Embeddings carry their space id) and has its dim.

A stitch saves to a folder, ``stitch.safetensors`` (tensors ``weight`` and ``bias``) plus the
TOML stitch card ``stitch.toml`` (see :mod:`zoo.align.stitchcard`). ``Stitch.load`` reads
only safetensors, re-checks the weights' sha256 against the card, validates the card
strictly, checks the tensor shapes against the card's dims and checks the card's seal
(``content_sha256``, over every field), so a card edited after saving is refused.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.errors import CardError, IntegrityError, InvalidInputError, SpaceMismatchError
from zoo.spaces.align._blocks import as_matrix, check_path, l2_normalize
from zoo.spaces.align._files import dump_toml, read_safetensors, regular_file, sha256_file
from zoo.spaces.align.stitchcard import (
    CARD_NAME,
    FORMAT,
    FORMAT_VERSION,
    WEIGHTS_NAME,
    content_sha256,
    parse_card,
    read_card,
)

__all__ = ["AnchorRef", "FitConfig", "SpaceRef", "Stitch"]


@dataclass(frozen=True)
class SpaceRef:
    """One side of a stitch: the embedding space id, the model that made the vectors, their dim."""

    space: str
    model: str = ""
    dim: int = 0


@dataclass(frozen=True)
class FitConfig:
    """How a stitch was fitted (the card's [fit] table)."""

    method: str
    normalize: bool
    center: bool
    dim_policy: str  # "pad" / "pca" for procrustes across dims, else "none"
    alpha: float  # ridge only; 0.0 otherwise
    scale: bool  # procrustes only
    n_train: int


@dataclass(frozen=True)
class AnchorRef:
    """The anchor set a stitch was fitted on, as the card records it."""

    hash: str
    count: int
    name: str = ""
    version: str = ""


@dataclass(frozen=True, eq=False)
class Stitch:
    """A fitted map from ``source`` space to ``target`` space: ``normalize?(x) @ weight + bias``."""

    weight: np.ndarray
    bias: np.ndarray
    source: SpaceRef
    target: SpaceRef
    fit: FitConfig
    anchors: AnchorRef | None = None
    quality: dict | None = None

    def __repr__(self) -> str:
        return (f"Stitch({self.source.space!r} ({self.source.dim}) -> {self.target.space!r} ({self.target.dim}), "
                f"method={self.fit.method!r}, n_train={self.fit.n_train})")

    def apply(self, x):
        """Map source-space vectors into the target space.

        ``x`` is an (n, source dim) array, or zoo Embeddings of the source space, which come
        back as Embeddings of the target space.
        """
        space = getattr(x, "space", None)
        if space is not None and space != self.source.space:
            raise SpaceMismatchError(f"this stitch maps space {self.source.space!r}, not {space!r}")
        if getattr(x, "precision", "float32") not in ("float32", "float16"):
            raise InvalidInputError(f"a stitch maps float vectors, not precision {x.precision!r}")
        arr = as_matrix(x, "x", min_rows=0)
        if arr.shape[1] != self.source.dim:
            raise InvalidInputError(f"x has dim {arr.shape[1]}, but space {self.source.space!r} has dim "
                                    f"{self.source.dim}")
        if self.fit.normalize:
            arr = l2_normalize(arr)
        out = arr @ self.weight + self.bias
        if space is None:
            return out
        info = {**x.info, "stitched_from": self.source.space}
        return dataclasses.replace(x, vectors=out, space=self.target.space, normalized=False, precision="float32",
                                   dim=self.target.dim, info=info)

    __call__ = apply

    def with_quality(self, quality: dict) -> Stitch:
        """A copy that carries held-out quality figures (see :func:`evaluate_stitch`)."""
        if not isinstance(quality, dict):
            raise InvalidInputError(f"quality must be a dict of figures, not {type(quality).__name__}")
        return dataclasses.replace(self, quality=dict(quality))

    # ------------------------------------------------------------------------------------ files

    def save(self, folder: str | Path) -> Path:
        """Write ``stitch.safetensors`` and ``stitch.toml`` into ``folder``; returns the card's path."""
        from safetensors.numpy import save_file

        for side in (self.source, self.target):
            if not side.space:
                raise InvalidInputError("name both spaces before saving: fit_stitch(..., source='space-a', "
                                        "target='space-b')")
        folder = check_path(folder, "folder")
        doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "weights": WEIGHTS_NAME,
               "weights_sha256": "0" * 64, "content_sha256": "0" * 64,
               "source": dataclasses.asdict(self.source), "target": dataclasses.asdict(self.target),
               "fit": dataclasses.asdict(self.fit)}
        if self.anchors is not None:
            doc["anchors"] = dataclasses.asdict(self.anchors)
        if self.quality is not None:
            doc["quality"] = dict(self.quality)
        try:
            dump_toml(doc)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"this stitch cannot be saved: {exc}") from None
        folder.mkdir(parents=True, exist_ok=True)
        save_file({"weight": np.ascontiguousarray(self.weight), "bias": np.ascontiguousarray(self.bias)},
                  str(folder / WEIGHTS_NAME))
        doc["weights_sha256"] = sha256_file(folder / WEIGHTS_NAME)
        card_path = folder / CARD_NAME
        # the seal is taken over the card as it will be read back, so the reader recomputes the same digest
        doc["content_sha256"] = content_sha256(parse_card(tomllib.loads(dump_toml(doc)), card_path))
        card_path.write_text(dump_toml(doc), encoding="utf-8")
        return card_path

    @classmethod
    def load(cls, path: str | Path, *, source: str | None = None, target: str | None = None,
             allow_unsealed: bool = False) -> Stitch:
        """Read a saved stitch (its folder or its ``stitch.toml``), checking everything.

        Raises CardError for a card or weights file that does not validate, IntegrityError when
        the weights' sha256 differs from the card's or the card's fields differ from its seal
        (``content_sha256``: the card was edited after saving), and SpaceMismatchError when
        ``source`` / ``target`` space ids are given and differ from the card's. A card without a seal
        (written by an older zoo) is a CardError unless ``allow_unsealed=True``; save the
        loaded stitch again to seal it.
        """
        path = check_path(path)
        for what, want in (("source", source), ("target", target)):
            if want is not None and not isinstance(want, str):
                raise InvalidInputError(f"{what} must be a space id (str), not {type(want).__name__}")
        card_path = path / CARD_NAME if path.is_dir() else path
        if card_path.suffix != ".toml":
            raise CardError(f"{path}: pass a stitch folder or its {CARD_NAME}, not a {card_path.suffix} file")
        card = read_card(card_path)
        sealed = "content_sha256" in card[""]
        if not sealed and not allow_unsealed:
            raise CardError(f"{card_path}: content_sha256 is missing: an unsealed stitch card (older zoo), whose "
                            "hash covers only the weights, so edits to it go unseen; load it with "
                            "Stitch.load(..., allow_unsealed=True) if you trust it, and save it again to seal it")
        weights_path = card_path.parent / card[""]["weights"]
        if not weights_path.is_file():
            raise CardError(f"{card_path}: weights file {weights_path.name} not found next to the card")
        regular_file(weights_path, "stitch weights")
        try:
            digest = sha256_file(weights_path)
        except OSError as exc:
            raise CardError(f"{weights_path}: cannot read the stitch weights ({exc.strerror or exc})") from None
        if digest != card[""]["weights_sha256"]:
            raise IntegrityError(f"{weights_path}: sha256 {digest[:12]}... differs from the card's "
                                 f"{card['']['weights_sha256'][:12]}...; the weights were changed after saving",
                                 path=str(weights_path))
        weight, bias = _checked_tensors(weights_path, card["source"]["dim"], card["target"]["dim"])
        if sealed and content_sha256(card) != card[""]["content_sha256"]:
            raise IntegrityError(f"{card_path}: the card's fields do not match its content_sha256; it was edited "
                                 "after saving (fit.normalize, a space, a dim, quality...). Refit the stitch, or "
                                 "load the original card", path=str(card_path))
        stitch = cls(weight, bias, SpaceRef(**card["source"]), SpaceRef(**card["target"]), FitConfig(**card["fit"]),
                     AnchorRef(**card["anchors"]) if "anchors" in card else None, card.get("quality"))
        for want, side in ((source, stitch.source), (target, stitch.target)):
            if want is not None and want != side.space:
                raise SpaceMismatchError(f"{card_path}: the stitch maps {stitch.source.space!r} -> "
                                         f"{stitch.target.space!r}; asked for {source or '*'!r} -> {target or '*'!r}")
        return stitch


def _checked_tensors(path: Path, da: int, db: int) -> tuple[np.ndarray, np.ndarray]:
    _, tensors = read_safetensors(path)
    if set(tensors) != {"weight", "bias"}:
        raise CardError(f"{path}: tensors {sorted(tensors)}; a stitch has exactly 'weight' and 'bias'")
    weight, bias = tensors["weight"], tensors["bias"]
    for name, arr, shape in (("weight", weight, (da, db)), ("bias", bias, (db,))):
        if arr.shape != shape:
            raise CardError(f"{path}: {name} has shape {arr.shape}, but the card's dims (source {da}, target {db}) "
                            f"need {shape}")
        if arr.dtype.kind != "f" or not np.isfinite(arr).all():
            raise CardError(f"{path}: {name} must hold finite floats (dtype {arr.dtype})")
    return weight.astype(np.float32), bias.astype(np.float32)
