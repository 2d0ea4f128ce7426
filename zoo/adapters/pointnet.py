"""pointnet-mini: a small PointNet-style point-cloud encoder trained in this repository.

PointNet (Qi et al., 2017) reads an unordered set of points with one MLP shared by every point
and a symmetric pooling over the points, so the result does not depend on point order; its
classifier is an MLP on the pooled feature (charlesq34/pointnet, models/pointnet_cls.py: per-point
64-64-64-128-1024, max pool, FC 512 and 256 with batch norm and dropout, then the class layer).
We keep that core at a smaller width, add mean pooling to max pooling, and leave out the T-Net
alignment blocks (their role, pose robustness, is learnt here from random-rotation augmentation):

    xyz (B, N, 3) -> shared per-point MLP (1x1 conv + batch norm + ReLU per layer)
                  -> max pool ++ mean pool over the N points
                  -> embedding layer: Linear + batch norm + ReLU    = the embedding
                  -> classifier: dropout + Linear                    = class logits

The embedding is the pooled feature after the one fully connected layer the classifier reads,
not the raw pool: on the card's held-out shapes, cosine nearest neighbours find the right class
for 99% (upright) / 98% (rotated) of shapes with it, against 92% / 76% with the raw
max/mean pool, whose non-negative, pose-dependent channels make every pair look alike. The class
probabilities stay reachable through :meth:`PointNetEmbedder.class_probabilities`,
:meth:`~PointNetEmbedder.classify` and :meth:`~PointNetEmbedder.embed_and_classify`, as the image
adapter does for EfficientNet.

Inputs go through ``zoo.points.load_point_clouds`` (arrays, ``.npy``, ``.ply``, meshes) to the
card's ``n_points``, then ``zoo.points.normalize_unit_sphere`` (centroid to the origin, farthest
point at distance 1), the same function the training script (scripts/train_pointnet_mini.py)
applied to its data. Colours are ignored. The weights are a safetensors file whose metadata
holds the class names and the architecture sizes, so the file alone rebuilds the network.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.adapters.base import BaseEmbedder, EmbedContext
from zoo.adapters.classifying import ClassifyingMixin
from zoo.catalog.modelcard import ModelCard
from zoo.catalog.sources import Resolved, check_format
from zoo.errors import IntegrityError, InvalidInputError, WeightsUnavailableError
from zoo.inputs.points import as_cloud_list, load_point_clouds, normalize_unit_sphere

DEFAULT_MAX_ROWS = 64
POOLINGS = ("max", "mean")


class PointNet(nn.Module):
    """Shared per-point MLP -> max/mean pooling -> embedding layer (``embedding_dim``) -> linear classifier."""

    def __init__(self, *, widths: list[int], embedding_dim: int, n_classes: int, pooling: list[str],
                 dropout: float = 0.0, in_dim: int = 3):
        super().__init__()
        if not pooling or any(p not in POOLINGS for p in pooling):
            raise ValueError(f"pooling must be a non-empty list drawn from {POOLINGS}, not {pooling!r}")
        self.pooling = tuple(pooling)
        layers: list[nn.Module] = []
        for n_in, n_out in zip([in_dim, *widths[:-1]], widths, strict=True):
            layers += [nn.Conv1d(n_in, n_out, 1, bias=False), nn.BatchNorm1d(n_out), nn.ReLU()]
        self.point_mlp = nn.Sequential(*layers)
        self.pooled_dim = widths[-1] * len(self.pooling)
        self.embedding_dim = embedding_dim
        self.embedding = nn.Sequential(
            nn.Linear(self.pooled_dim, embedding_dim, bias=False), nn.BatchNorm1d(embedding_dim), nn.ReLU()
        )
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(embedding_dim, n_classes))

    def pool(self, xyz: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) normalized points -> (B, pooled_dim): max and mean of the per-point features."""
        per_point = self.point_mlp(xyz.transpose(1, 2))  # (B, C, N)
        pooled = {"max": lambda f: f.amax(dim=2), "mean": lambda f: f.mean(dim=2)}
        return torch.cat([pooled[p](per_point) for p in self.pooling], dim=1)

    def forward(self, xyz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, 3) normalized points -> (embeddings (B, embedding_dim), class logits (B, n_classes))."""
        features = self.embedding(self.pool(xyz))
        return features, self.classifier(features)


def build_from_metadata(metadata: dict[str, str]) -> tuple[PointNet, tuple[str, ...]]:
    """The (untrained) network and class names that a weights file's metadata describes."""
    arch = json.loads(metadata["architecture"])
    classes = tuple(json.loads(metadata["classes"]))
    model = PointNet(widths=list(arch["widths"]), embedding_dim=int(arch["embedding_dim"]), n_classes=len(classes),
                     pooling=list(arch["pooling"]), in_dim=int(arch.get("in_dim", 3)))
    return model, classes


def load_network(path: Path, card: ModelCard) -> tuple[PointNet, tuple[str, ...]]:
    """Rebuild the network from a safetensors file (metadata + tensors, loaded strictly)."""
    from safetensors import safe_open

    if not path.is_file():
        raise WeightsUnavailableError(f"{card.name}: no weight file {path}")
    with safe_open(str(path), framework="pt") as fh:
        metadata = fh.metadata() or {}
        state = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118 - safe_open has no __iter__
    if "architecture" not in metadata or "classes" not in metadata:
        raise IntegrityError(f"{card.name}: {path.name} has no architecture/classes metadata")
    model, classes = build_from_metadata(metadata)
    model.load_state_dict(state, strict=True)
    if model.embedding_dim != card.dim:
        raise IntegrityError(f"{card.name}: {path.name} gives {model.embedding_dim}-d embeddings, "
                             f"the card says {card.dim}")
    return model.eval(), classes


def _check_top_k(top_k: Any) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InvalidInputError(f"top_k must be a positive integer, not {top_k!r}")


class PointNetEmbedder(ClassifyingMixin, BaseEmbedder):
    """The pointnet-mini encoder: pooled PointNet features, with its shape classifier reachable."""

    default_top_k = 3

    def __init__(self, card: ModelCard, resolved: Resolved, *, device: str = "cpu",
                 trust_remote_code: bool = False, **options: Any):
        super().__init__(card, resolved, **options)
        check_format(resolved.path, card)
        self.device = torch.device(device)
        weights = resolved.path / card.options.get("weights_file", "model.safetensors")
        self.model, self._classes = load_network(weights, card)
        self.model.to(self.device)
        self.n_points = int(card.options["n_points"])
        self.max_rows = int(card.options.get("max_rows", DEFAULT_MAX_ROWS))

    @property
    def class_names(self) -> tuple[str, ...]:
        """The shape classes of the classifier, in output order ("box", "sphere", ...)."""
        return self._classes

    # -- running the network --------------------------------------------------------------------
    def prepare(self, clouds: list[np.ndarray]) -> torch.Tensor:
        """Loaded clouds (n_points, 6) -> the network's input (B, n_points, 3): xyz through normalize_unit_sphere."""
        return torch.from_numpy(np.stack([normalize_unit_sphere(c[:, :3]) for c in clouds]))

    @torch.inference_mode()
    def _run(self, clouds: list[np.ndarray], batch_size: int | None,
             advance: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings (B, D) and class probabilities (B, C) of loaded clouds."""
        rows = batch_size or self.max_rows
        feats, probs = [], []
        for start in range(0, len(clouds), rows):
            f, logits = self.model(self.prepare(clouds[start : start + rows]).to(self.device))
            feats.append(f.float().cpu().numpy())
            probs.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
            if advance is not None:
                advance(len(f))
        return np.concatenate(feats), np.concatenate(probs)

    def _check(self, inputs: list, modality: str) -> list:
        return load_point_clouds(inputs, n_points=self.n_points)

    def _encode(self, items: list, modality: str, ctx: EmbedContext) -> np.ndarray:
        feats, probs = self._run(items, ctx.batch_size, ctx.advance)
        self.keep_probabilities(ctx, probs)
        return feats

    def as_items(self, inputs: Any) -> list:
        """A (B, N, 3) array is B clouds (not one item, as an image would be)."""
        return as_cloud_list(inputs)

    # -- classes --------------------------------------------------------------------------------
    def class_probabilities(self, inputs: Any, *, batch_size: int | None = None) -> np.ndarray:
        """Softmax over the shape classes, (B, C) float32; row i belongs to input i."""
        clouds = load_point_clouds(as_cloud_list(inputs), n_points=self.n_points)
        if not clouds:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        return self._run(clouds, batch_size)[1]

    def top_classes(self, probs: np.ndarray, top_k: int = 3) -> list[list[tuple[str, float]]]:
        """The ``top_k`` (class name, probability) pairs of each row of ``probs``, most probable first."""
        _check_top_k(top_k)
        order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
        return [[(self.class_names[j], float(row[j])) for j in idx] for row, idx in zip(probs, order, strict=True)]

    def classify(self, inputs: Any, top_k: int = 3, *, batch_size: int | None = None):
        """The ``top_k`` classes of each cloud as (name, probability), most probable first."""
        _check_top_k(top_k)
        return self.top_classes(self.class_probabilities(inputs, batch_size=batch_size), top_k)
