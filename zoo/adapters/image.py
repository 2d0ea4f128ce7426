"""Image embedders: timm backbones, and EfficientNet-Lite with its ImageNet classifier.

Two kinds of network, chosen by the card's ``options``:

- ``timm_model = "<name>.<tag>"``: a timm model built with ``num_classes=0`` so its output is
  the pooled feature (DINOv2's class token after the final norm, ConvNeXt's average pool +
  norm), weights from the snapshot's ``model.safetensors`` (or, where the card says
  ``weights_format = "torch-weights-only"``, a pickle state dict read with
  ``torch.load(weights_only=True)``), through timm's own checkpoint filter. Preprocessing is
  timm's own ``resolve_data_config`` + ``create_transform`` for that model, never written by
  hand. Ad-hoc ``timm:MODEL[.TAG]`` names (``zoo.adhoc``) make such cards on the fly.
- ``network = "efficientnet-lite0"``: the network from the ``efficientnet-lite-pytorch``
  package, weights from a state dict read with ``torch.load(weights_only=True)`` (the card
  must say ``weights_format = "torch-weights-only"``). Preprocessing follows the TF
  EfficientNet evaluation rule: a centred square of ``image_size / (image_size +
  crop_padding)`` of the shorter side is cut and resized to ``image_size`` (bicubic), then
  pixels become ``(x - mean) / std`` in 0..255 units (Lite models: 127 and 128). The
  embedding is the 1280-d pooled feature before the classifier; the 1,000 ImageNet class
  probabilities stay reachable through :meth:`ImageEmbedder.classify`,
  :meth:`ImageEmbedder.class_probabilities` and :meth:`ImageEmbedder.embed_and_classify`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.adapters.base import BaseEmbedder, EmbedContext, as_item_list
from zoo.adapters.classifying import ClassifyingMixin
from zoo.catalog.modelcard import ModelCard
from zoo.catalog.sources import Resolved, check_format
from zoo.errors import IntegrityError, InvalidInputError, UnsafeModelFileError, WeightsUnavailableError, ZooError
from zoo.inputs.images import load_images

DEFAULT_MAX_ROWS = 16


@dataclass
class Network:
    """A ready network: per-image transform, batched forward, optional class names."""

    model: torch.nn.Module
    transform: Callable[[Any], torch.Tensor]  # RGB PIL image -> (3, H, W) float tensor
    forward: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]  # -> (features, logits)
    class_names: tuple[str, ...] | None = None


# -- timm ---------------------------------------------------------------------------------------
def timm_network(card: ModelCard, folder: Path) -> Network:
    """Build the card's timm model with pooled outputs and load the snapshot's safetensors weights."""
    import timm
    from timm.data import create_transform, resolve_data_config

    name = card.options["timm_model"]
    weights = folder / card.options.get("weights_file", "model.safetensors")
    pickled = weights.suffix in (".bin", ".pth", ".pt") and card.weights_format == "torch-weights-only"
    if not (weights.suffix == ".safetensors" or pickled) or not weights.is_file():
        raise WeightsUnavailableError(f"{card.name}: {folder} has no {weights.name} (timm cards load safetensors)")
    config = folder / "config.json"
    if config.is_file():  # the snapshot must hold the architecture the card names
        arch = json.loads(config.read_text(encoding="utf-8")).get("architecture")
        if arch and arch != name.split(".")[0]:
            raise IntegrityError(f"{card.name}: {config} describes {arch!r}, the card needs {name!r}")
    # A hub file holds a native timm state dict: never the tag's own custom loader (an .npz reader for some tags).
    overlay: dict[str, Any] = ({"state_dict": load_state_dict(weights, card)} if pickled
                               else {"file": str(weights), "custom_load": False})
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, num_classes=0)
    if isinstance(getattr(model, "pretrained_cfg", None), dict):
        model.pretrained_cfg.pop("state_dict", None)  # loaded: do not keep a second copy of the weights
    width = int(getattr(model, "head_hidden_size", 0) or model.num_features)
    if width != card.dim:
        raise IntegrityError(f"{card.name}: {name} gives {width}-d pooled features, the card {card.dim}")
    transform = create_transform(**resolve_data_config({}, model=model))
    return Network(model=model, transform=transform, forward=lambda x: (model(x), None))


# -- EfficientNet-Lite --------------------------------------------------------------------------
def load_state_dict(path: Path, card: ModelCard) -> dict[str, torch.Tensor]:
    """Read a plain state dict with ``torch.load(weights_only=True)``; anything else is refused."""
    if card.weights_format != "torch-weights-only":
        raise UnsafeModelFileError(f"{card.name}: {path.name} is a pickle file and the card does not allow "
                                   "torch.load(weights_only=True) (weights_format)")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError as exc:
        raise WeightsUnavailableError(f"{card.name}: no weight file {path}") from exc
    except Exception as exc:  # the unpickler refuses anything but tensors and plain containers
        raise UnsafeModelFileError(f"{card.name}: {path.name} is not a plain weights file "
                                   f"(torch.load(weights_only=True) refused it: {exc})") from exc
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise UnsafeModelFileError(f"{card.name}: {path.name} is not a state dict of named tensors")
    return state


def tf_center_crop(img, size: int, crop_padding: int):
    """TF EfficientNet eval crop: a centred square of size/(size+padding) of the short side, resized (bicubic)."""
    from PIL import Image

    w, h = img.size
    side = size / (size + crop_padding) * min(w, h)
    left, top = (w - side) / 2, (h - side) / 2
    return img.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))


def efficientnet_lite_network(card: ModelCard, folder: Path) -> Network:
    """EfficientNet-Lite from the efficientnet-lite-pytorch package with the card's state dict."""
    from zoo.adapters.imagenet import imagenet_classes

    opts = card.options
    state = load_state_dict(folder / opts["weights_file"], card)
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        package = opts.get("model_code_package", "efficientnet-lite-pytorch")
        raise ZooError(f"{card.name} needs the model code of package {package} (pip install {package})") from exc
    model = EfficientNet.from_name(opts["network"])
    model.load_state_dict(state, strict=True)
    size, padding = int(opts.get("image_size", 224)), int(opts.get("crop_padding", 32))
    mean = torch.tensor(opts.get("mean", [127.0] * 3), dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(opts.get("std", [128.0] * 3), dtype=torch.float32).view(3, 1, 1)

    def transform(img) -> torch.Tensor:
        pixels = np.asarray(tf_center_crop(img, size, padding), dtype=np.float32)
        return (torch.from_numpy(pixels).permute(2, 0, 1) - mean) / std

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = model._avg_pooling(model.extract_features(x)).flatten(1)
        return pooled, model._fc(pooled)  # dropout sits between them and is the identity in eval mode

    classes = imagenet_classes() if model._fc.out_features == 1000 else None
    return Network(model=model, transform=transform, forward=forward, class_names=classes)


def _check_top_k(top_k: Any) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InvalidInputError(f"top_k must be a positive integer, not {top_k!r}")


# -- the adapter --------------------------------------------------------------------------------
class ImageEmbedder(ClassifyingMixin, BaseEmbedder):
    """Image backbone with card-driven network, weights and preprocessing."""

    def __init__(
        self,
        card: ModelCard,
        resolved: Resolved,
        *,
        device: str = "cpu",
        trust_remote_code: bool = False,
        pretrained: bool | None = None,
        **options: Any,
    ):
        super().__init__(card, resolved, **options)
        if pretrained is False:
            raise InvalidInputError(f"{card.name}: pretrained=False (random weights) is offered for open_clip:ARCH "
                                    "names only; image models load trained weights")
        check_format(resolved.path, card)
        self.device = torch.device(device)
        if "timm_model" in card.options:
            self.network = timm_network(card, resolved.path)
        elif str(card.options.get("network", "")).startswith("efficientnet-lite"):
            self.network = efficientnet_lite_network(card, resolved.path)
        else:
            raise ZooError(f"{card.name}: the card names no image network (options.timm_model or options.network)")
        self.network.model.eval().to(self.device)
        self.max_rows = int(card.options.get("max_rows", DEFAULT_MAX_ROWS))

    @property
    def model(self) -> torch.nn.Module:
        return self.network.model

    @property
    def transform(self) -> Callable[[Any], torch.Tensor]:
        """The per-image preprocessing: RGB PIL image -> (3, H, W) float tensor."""
        return self.network.transform

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of the classifier's outputs (ImageNet-1k for EfficientNet-Lite0)."""
        if self.network.class_names is None:
            raise ZooError(f"{self.name} has no classifier head; it only embeds")
        return self.network.class_names

    # -- running the network --------------------------------------------------------------------
    @torch.inference_mode()
    def _run(self, images: list, batch_size: int | None,
             advance: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Pooled features (N, D) and class probabilities (N, C) or None, for RGB PIL images."""
        rows = batch_size or self.max_rows
        feats, probs = [], []
        for start in range(0, len(images), rows):
            x = torch.stack([self.network.transform(img) for img in images[start : start + rows]]).to(self.device)
            f, logits = self.network.forward(x)
            feats.append(f.float().cpu().numpy())
            if logits is not None:
                probs.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
            if advance is not None:
                advance(len(x))
        return np.concatenate(feats), (np.concatenate(probs) if probs else None)

    def _check(self, inputs: list, modality: str) -> list:
        return load_images(inputs)

    def _encode(self, items: list, modality: str, ctx: EmbedContext) -> np.ndarray:
        feats, probs = self._run(items, ctx.batch_size, ctx.advance)
        self.keep_probabilities(ctx, probs)
        return feats

    # -- classes --------------------------------------------------------------------------------
    def class_probabilities(self, images: Any, *, batch_size: int | None = None) -> np.ndarray:
        """Softmax over the classifier's outputs, (N, C) float32; row i belongs to image i."""
        names = self.class_names  # raises for models without a classifier
        items = load_images(as_item_list(images))
        if not items:
            return np.zeros((0, len(names)), dtype=np.float32)
        return self._run(items, batch_size)[1]

    def top_classes(self, probs: np.ndarray, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """The ``top_k`` (class name, probability) pairs of each row of ``probs``, most probable first."""
        _check_top_k(top_k)
        names = self.class_names
        order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
        return [[(names[j], float(row[j])) for j in idx] for row, idx in zip(probs, order, strict=True)]

    def classify(self, images: Any, top_k: int = 5, *, batch_size: int | None = None):
        """The ``top_k`` classes of each image as (name, probability), most probable first."""
        _check_top_k(top_k)
        return self.top_classes(self.class_probabilities(images, batch_size=batch_size), top_k)
