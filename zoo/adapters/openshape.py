"""OpenShape point-cloud embedders: PointBERT ("PPAT") encoders aligned to CLIP spaces.

OpenShape (Liu et al., NeurIPS 2023) trains a point-cloud encoder so that a shape lands next to
the CLIP embeddings of its renderings and captions; text and images then search shapes through
the CLIP model's own towers. Three PointBERT checkpoints are published as ``model.pt`` in the
hub repos ``OpenShape/openshape-pointbert-{vitg14,vitl14,vitb32}-rgb``; the network is
:mod:`zoo.adapters.pointbert` (plain torch, the original key names).

What the original does, and what this adapter does:

- **Checkpoints** (``openshape/__init__.py`` of openshape-demo-support): G14's file is a
  training checkpoint whose ``state_dict`` entry holds the DDP-wrapped model (keys
  ``module.ppat.*``, ``module.proj.*``; optimizer state beside it); L14's and B32's files are
  flat state dicts under ``pc_encoder.`` (L14 ``pc_encoder.ppat.*`` + ``pc_encoder.proj.*``;
  B32 ``pc_encoder.*``, no projection: its CLS token is the 512-d embedding). The card's
  options say which entry and prefix to read; entries outside it are ignored as the original
  ignores them, and inside it every key must match the card's architecture exactly (a missing,
  unexpected or reshaped key is an IntegrityError that names it). Files are read with
  ``torch.load(weights_only=True)`` only.
- **Input**: 10,000 points of xyz + rgb (``zoo.points`` samples meshes evenly and resamples
  clouds with a fixed seed), xyz centred at the centroid and scaled into the unit sphere, rgb in
  [0, 1], 0.4 grey for clouds without colour (the training code's value; the demo app uses 1.0).
- **Axes**: the zoo takes clouds and meshes as their files store them, Y up (glTF, OBJ,
  Objaverse, and what the OpenShape demo assumes). L14 and B32 were trained Y up and get the
  points unchanged; G14 was trained Z up and, as the demo's classifier does, gets x, z, y
  (y and z swapped). ``zoo.load(name, input_up="z")`` says the caller's clouds are Z up
  instead (CAD and scanner data); the swap then applies to the Y-up models.
- **Output**: the projected CLS token, not normalized by the model (the base class
  normalizes when asked); G14 shares the space of clip-vit-bigg-14-laion2b, L14 of
  clip-vit-l-14-openai, B32 of clip-vit-b-32-openai (the cards' ``space``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.adapters.base import BaseEmbedder, EmbedContext
from zoo.adapters.pointbert import PPATConfig, build
from zoo.catalog.modelcard import ModelCard
from zoo.catalog.sources import Resolved, check_format
from zoo.errors import CardError, IntegrityError, InvalidInputError, UnsafeModelFileError, WeightsUnavailableError
from zoo.inputs.points import as_cloud_list, load_point_clouds, normalize_unit_sphere

DEFAULT_MAX_ROWS = 8
AXES = ("y", "z")


# -- weights ------------------------------------------------------------------------------------
def read_checkpoint(path: Path, card: ModelCard) -> Any:
    """The unpickled contents of ``path``, read with ``torch.load(weights_only=True)`` and nothing else."""
    if card.weights_format != "torch-weights-only":
        raise UnsafeModelFileError(f"{card.name}: {path.name} is a pickle file and the card does not allow "
                                   "torch.load(weights_only=True) (weights_format)")
    if not path.is_file():
        raise WeightsUnavailableError(f"{card.name}: no weight file {path}")
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # the restricted unpickler refuses anything but tensors and plain containers
        raise UnsafeModelFileError(f"{card.name}: {path.name} is not a plain weights file "
                                   f"(torch.load(weights_only=True) refused it: {exc})") from exc


def encoder_state(checkpoint: Any, *, entry: str, prefix: str, what: str) -> dict[str, torch.Tensor]:
    """The encoder's tensors: ``checkpoint[entry]`` (or all of it), the keys under ``prefix``, prefix stripped."""
    state = checkpoint
    if entry:
        if not isinstance(checkpoint, dict) or entry not in checkpoint:
            found = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
            raise IntegrityError(f"{what} has no {entry!r} entry (it holds {found})")
        state = checkpoint[entry]
    if not isinstance(state, dict):
        raise IntegrityError(f"{what}: expected a state dict, found {type(state).__name__}")
    picked = {k[len(prefix):]: v for k, v in state.items() if isinstance(k, str) and k.startswith(prefix)}
    bad = [prefix + k for k, v in picked.items() if not torch.is_tensor(v)]
    if bad:
        raise IntegrityError(f"{what}: {', '.join(bad[:5])} {'is' if len(bad) == 1 else 'are'} not tensors")
    return picked


def _names(keys: list[str], prefix: str, limit: int = 8) -> str:
    shown = ", ".join(prefix + k for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], *, prefix: str, what: str) -> None:
    """Load ``state`` into ``model`` with every key matched and every shape equal, or say which are not."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_names(missing, prefix)}")
        if unexpected:
            parts.append(f"unexpected keys {_names(unexpected, prefix)}")
        raise IntegrityError(f"{what} does not match the card's architecture: " + "; ".join(parts))
    reshaped = [f"{prefix}{k} {tuple(v.shape)} (expected {tuple(expected[k].shape)})"
                for k, v in state.items() if v.shape != expected[k].shape]
    if reshaped:
        raise IntegrityError(f"{what} does not match the card's architecture: " + ", ".join(reshaped[:5]))
    model.load_state_dict(state, strict=True)


def architecture(card: ModelCard) -> PPATConfig:
    """The card's ``[options.architecture]`` table as a PPATConfig (unknown names are card errors)."""
    raw = dict(card.options.get("architecture", {}))
    try:
        return PPATConfig(**raw)
    except TypeError as exc:
        raise CardError(f"card {card.name!r}: bad options.architecture ({exc})") from exc


# -- the adapter --------------------------------------------------------------------------------
class OpenShapeEmbedder(BaseEmbedder):
    """An OpenShape PointBERT encoder: coloured point clouds (or meshes) -> the paired CLIP space."""

    def __init__(self, card: ModelCard, resolved: Resolved, *, device: str = "cpu", input_up: str = "y",
                 trust_remote_code: bool = False, **options: Any):
        super().__init__(card, resolved, **options)
        if input_up not in AXES:
            raise InvalidInputError(f"input_up must be one of {AXES}, not {input_up!r}")
        check_format(resolved.path, card)
        opts = card.options
        self.config = architecture(card)
        self.n_points = int(opts.get("n_points", 10_000))
        self.default_rgb = float(opts.get("default_rgb", 0.4))
        self.model_up = str(opts.get("up_axis", "y"))
        self.input_up = input_up
        self.max_rows = int(opts.get("max_rows", DEFAULT_MAX_ROWS))
        self.device = torch.device(device)
        self.model = build(self.config)
        self._load_weights(resolved.path / opts.get("weights_file", "model.pt"))
        self.model.eval().to(self.device)

    def _load_weights(self, path: Path) -> None:
        opts = self.card.options
        prefix = str(opts.get("key_prefix", ""))
        what = f"{self.card.name}: {path.name}"
        state = encoder_state(read_checkpoint(path, self.card), entry=str(opts.get("checkpoint_entry", "")),
                              prefix=prefix, what=what)
        load_strict(self.model, state, prefix=prefix, what=what)

    @property
    def swaps_yz(self) -> bool:
        """Whether y and z are swapped before the network (the caller's up axis is not the model's)."""
        return self.input_up != self.model_up

    def prepare(self, cloud: np.ndarray) -> np.ndarray:
        """One (n_points, 6) cloud from zoo.points -> the network's input: unit-sphere xyz in the model's axes, rgb."""
        xyz = normalize_unit_sphere(cloud[:, :3])
        if self.swaps_yz:
            xyz = xyz[:, [0, 2, 1]]
        return np.concatenate([xyz, cloud[:, 3:6]], axis=1).astype(np.float32)

    def as_items(self, inputs: Any) -> list:
        """A (B, N, C) array is B clouds (not one item, as an image would be)."""
        return as_cloud_list(inputs)

    def _check(self, inputs: list, modality: str) -> list:
        return load_point_clouds(inputs, n_points=self.n_points, default_rgb=self.default_rgb)

    @torch.inference_mode()
    def _encode(self, items: list, modality: str, ctx: EmbedContext) -> np.ndarray:
        rows = ctx.batch_size or self.max_rows
        out = []
        for start in range(0, len(items), rows):
            feats = torch.from_numpy(np.stack([self.prepare(c) for c in items[start:start + rows]])).to(self.device)
            out.append(self.model(feats[..., :3].contiguous(), feats).float().cpu().numpy())
        return np.concatenate(out)
