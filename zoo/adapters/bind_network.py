"""The network of a binding composite, the OmniBind way, and the spec it is built from.

OmniBind (Wang et al. 2024, "OmniBind: Large-scale Omni Multimodal Representation via Binding
Spaces") binds pretrained experts into one space: per expert, several projector heads (7 in
OmniBind: Linear(in, 2048) -> BatchNorm -> ReLU -> Linear(2048, out) -> BatchNorm, each output
L2-normalized) map the expert's vector into the bound space and are averaged; a router per
modality (Linear(in, 512) -> BatchNorm -> ReLU -> Linear(512, 100) -> BatchNorm -> tanh ->
Linear(100, n), then a sigmoid) reads the vectors of one or more "predictor" experts and scores
the n experts; a softmax turns the scores into weights (for text OmniBind multiplies the scores
by 10 first); the weighted sum of the projected vectors, L2-normalized, is the embedding.

:class:`BindNetwork` is that network, built from a :class:`BindSpec` (a card's ``[options.bind]``),
with OmniBind's own state-dict key names (``projs.{i}.Head2.mlps.{0,1,3,4}.*``,
``ib_projs.{i}.Head2...``, ``{A,V,P,T}_enc_router.router.{0,1,3,4,6}.*``), so OmniBind's released
projector and router weights load unchanged (:func:`load_bind_weights`). The experts themselves
and the ``embed`` call are :mod:`zoo.adapters.bind`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from zoo.catalog.modelcard import MODALITIES
from zoo.errors import CardError, IntegrityError, UnsafeModelFileError

EXPERT_KINDS = ("model", "conse", "transcript")
HEAD_GROUPS = ("projs", "ib_projs")
#: OmniBind names its routers by modality letter.
ROUTER_KEYS = {"audio": "A_enc_router", "image": "V_enc_router", "points": "P_enc_router", "text": "T_enc_router"}


# ---------------------------------------------------------------------------------------------- spec
@dataclass(frozen=True)
class ExpertSpec:
    """One expert: what it embeds with, its width, and whether it has projector heads.

    ``models`` maps each modality the expert embeds to a zoo model name (one model may serve
    several). ``conse`` experts name a ``classifier`` and a ``text_model``; ``transcript``
    experts a ``speech_model`` and a ``text_model``.
    """

    id: str
    kind: str
    dim: int
    models: Mapping[str, str] = field(default_factory=dict)
    projector: bool = True
    group: str = "projs"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RouteSpec:
    """How one modality is embedded: its experts (in order), the router's inputs and scale."""

    modality: str
    experts: tuple[str, ...]
    router_inputs: tuple[str, ...] = ()
    scale: float = 1.0
    router_key: str = ""
    renormalize: tuple[str, ...] = ()  # experts whose mean-of-heads is L2-normalized again on this route

    @property
    def routed(self) -> bool:
        return bool(self.router_inputs)


@dataclass(frozen=True)
class BindSpec:
    """The whole composite: output width, head layout, experts and one route per modality."""

    out_dim: int
    experts: tuple[ExpertSpec, ...]
    routes: Mapping[str, RouteSpec]
    heads: int = 7
    hidden: int = 2048
    router_hidden: int = 100
    router_width: int = 512

    def expert(self, expert_id: str) -> ExpertSpec:
        for e in self.experts:
            if e.id == expert_id:
                return e
        raise KeyError(expert_id)

    @classmethod
    def from_options(cls, raw: Mapping[str, Any], *, where: str = "bind") -> BindSpec:
        """Validate ``[options.bind]`` of a card. Every problem raises CardError naming the field."""
        def fail(msg: str) -> CardError:
            return CardError(f"{where}: {msg}")

        known = {"out_dim", "heads", "hidden", "router_hidden", "router_width", "experts", "routes", "weights_file"}
        if unknown := set(raw) - known:
            raise fail(f"unknown field(s) {sorted(unknown)}")
        experts = tuple(_expert_from(e, i, fail) for i, e in enumerate(raw.get("experts", [])))
        if not experts:
            raise fail("experts must be a non-empty array of tables")
        ids = [e.id for e in experts]
        if len(set(ids)) != len(ids):
            raise fail(f"expert ids must be unique, got {ids}")
        routes = {m: _route_from(m, r, ids, fail) for m, r in dict(raw.get("routes", {})).items()}
        if not routes:
            raise fail("routes must map at least one modality to its experts")
        out_dim = raw.get("out_dim")
        if not isinstance(out_dim, int) or out_dim < 1:
            raise fail("out_dim must be a positive integer")
        for e in experts:
            if not e.projector and e.dim != out_dim:
                raise fail(f"expert {e.id!r} has no projector, so its dim must be out_dim ({out_dim}), not {e.dim}")
        for route in routes.values():
            for eid in route.experts:
                e = experts[ids.index(eid)]
                if e.kind == "model" and route.modality not in e.models:
                    raise fail(f"expert {eid!r} names no model for {route.modality!r} (its models: {dict(e.models)})")
        sizes = {k: raw.get(k, d) for k, d in (("heads", 7), ("hidden", 2048), ("router_hidden", 100),
                                                ("router_width", 512))}
        for k, v in sizes.items():
            if not isinstance(v, int) or v < 1:
                raise fail(f"{k} must be a positive integer")
        return cls(out_dim=out_dim, experts=experts, routes=routes, **sizes)


def _expert_from(raw: Any, i: int, fail) -> ExpertSpec:
    if not isinstance(raw, Mapping):
        raise fail(f"experts[{i}] must be a table")
    base = {"id", "kind", "dim", "model", "models", "projector", "group"}
    kind = raw.get("kind", "model")
    if kind not in EXPERT_KINDS:
        raise fail(f"experts[{i}].kind must be one of {EXPERT_KINDS}, not {kind!r}")
    extra = {"model": set(), "conse": {"classifier", "text_model", "top", "label_prompt", "label_names", "modality"},
             "transcript": {"speech_model", "text_model", "beam_size"}}[kind]
    if unknown := set(raw) - base - extra:
        raise fail(f"experts[{i}] ({kind}) has unknown field(s) {sorted(unknown)}")
    eid, dim = raw.get("id"), raw.get("dim")
    if not isinstance(eid, str) or not eid:
        raise fail(f"experts[{i}].id must be a non-empty string")
    if not isinstance(dim, int) or dim < 1:
        raise fail(f"experts[{i}].dim must be a positive integer")
    models = dict(raw.get("models", {}))
    if "model" in raw:
        models = dict.fromkeys(MODALITIES, raw["model"]) | models
    if kind == "model" and not models:
        raise fail(f"experts[{i}] needs 'model' or 'models'")
    for need in {"conse": ("classifier", "text_model", "modality"), "transcript": ("speech_model", "text_model")}.get(
            kind, ()):
        if not isinstance(raw.get(need), str):
            raise fail(f"experts[{i}] ({kind}) needs '{need}'")
    group = raw.get("group", "projs")
    if group not in HEAD_GROUPS:
        raise fail(f"experts[{i}].group must be one of {HEAD_GROUPS}")
    options = {k: raw[k] for k in extra if k in raw}
    return ExpertSpec(id=eid, kind=kind, dim=dim, models=models, projector=bool(raw.get("projector", True)),
                      group=group, options=options)


def _route_from(modality: str, raw: Any, ids: list[str], fail) -> RouteSpec:
    if modality not in MODALITIES:
        raise fail(f"routes.{modality}: not a modality ({MODALITIES})")
    fields = {"experts", "router_inputs", "scale", "router_key", "renormalize"}
    if not isinstance(raw, Mapping) or set(raw) - fields:
        raise fail(f"routes.{modality} must be a table of {', '.join(sorted(fields))}")
    experts = tuple(raw.get("experts", ()))
    inputs = tuple(raw.get("router_inputs", ()))
    renormalize = tuple(raw.get("renormalize", ()))
    for eid in experts + inputs + renormalize:
        if eid not in ids:
            raise fail(f"routes.{modality} names unknown expert {eid!r}")
    if not experts:
        raise fail(f"routes.{modality}.experts is empty")
    if inputs and not set(inputs) <= set(experts):
        raise fail(f"routes.{modality}.router_inputs must be among its experts")
    scale = raw.get("scale", 1.0)
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or scale <= 0:
        raise fail(f"routes.{modality}.scale must be a positive number")
    key = raw.get("router_key", ROUTER_KEYS.get(modality, f"{modality}_enc_router"))
    return RouteSpec(modality=modality, experts=experts, router_inputs=inputs, scale=float(scale), router_key=key,
                     renormalize=renormalize)


# ---------------------------------------------------------------------------------------------- network
class _HeadMlp(nn.Module):
    """OmniBind's ``Proj_Head_mini``: two linear layers with batch norm, output L2-normalized."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int):
        super().__init__()
        self.mlps = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                  nn.Linear(hidden, out_dim), nn.BatchNorm1d(out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlps(x), dim=-1)


class ProjectorHead(nn.Module):
    """OmniBind's ``Reaction_Head_mini``: one head, kept under the attribute name ``Head2``."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int):
        super().__init__()
        self.Head2 = _HeadMlp(in_dim, out_dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.Head2(x)


class Router(nn.Module):
    """OmniBind's ``MOE_Router_Sig``: an MLP scoring n experts, squashed by a sigmoid."""

    def __init__(self, in_dim: int, n_experts: int, hidden: int = 100, width: int = 512):
        super().__init__()
        self.router = nn.Sequential(nn.Linear(in_dim, width), nn.BatchNorm1d(width), nn.ReLU(),
                                    nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.Tanh(),
                                    nn.Linear(hidden, n_experts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.router(x))


class BindNetwork(nn.Module):
    """Projector heads for every expert that has them, and a router for every routed modality.

    Heads are laid out as OmniBind lays them out: expert j of a group owns the ``heads``
    consecutive entries starting at j * heads of that group's ModuleList, in the order the
    experts are declared.
    """

    def __init__(self, spec: BindSpec):
        super().__init__()
        self.spec = spec
        self._heads: dict[str, tuple[str, int]] = {}  # expert id -> (group, first head index)
        groups: dict[str, list[nn.Module]] = {g: [] for g in HEAD_GROUPS}
        for e in spec.experts:
            if e.projector:
                self._heads[e.id] = (e.group, len(groups[e.group]))
                groups[e.group] += [ProjectorHead(e.dim, spec.out_dim, spec.hidden) for _ in range(spec.heads)]
        for g, heads in groups.items():
            if heads:
                self.add_module(g, nn.ModuleList(heads))
        for route in spec.routes.values():
            if route.routed:
                in_dim = sum(spec.expert(eid).dim for eid in route.router_inputs)
                self.add_module(route.router_key, Router(in_dim, len(route.experts), spec.router_hidden,
                                                         spec.router_width))

    def heads_of(self, expert_id: str) -> list[nn.Module]:
        group, start = self._heads[expert_id]
        return list(getattr(self, group))[start:start + self.spec.heads]

    def project(self, expert_id: str, x: torch.Tensor, *, renormalize: bool = False) -> torch.Tensor:
        """The expert's vectors in the bound space: the mean of its unit-length heads (or the vectors themselves).

        The mean of unit vectors is shorter than one, which gives an expert whose heads disagree
        less weight in the sum; OmniBind keeps that on some routes and renormalizes on others
        (ImageBind on its image and text routes), hence ``renormalize``.
        """
        if expert_id not in self._heads:
            return F.normalize(x, dim=-1)
        mean = torch.stack([h(x) for h in self.heads_of(expert_id)], dim=1).mean(dim=1)
        return F.normalize(mean, dim=-1) if renormalize else mean

    def weights(self, modality: str, vectors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(B, n) expert weights of the modality's route: the router's, or equal weights when unrouted."""
        route = self.spec.routes[modality]
        batch = next(iter(vectors.values())).shape[0]
        if not route.routed:
            return torch.full((batch, len(route.experts)), 1.0 / len(route.experts))
        scores = getattr(self, route.router_key)(torch.cat([vectors[e] for e in route.router_inputs], dim=1))
        return F.softmax(scores * route.scale, dim=-1)

    def forward(self, modality: str, vectors: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Bound vectors (B, out_dim), unit length, and the (B, n) expert weights that made them."""
        route = self.spec.routes[modality]
        projected = torch.stack([self.project(e, vectors[e], renormalize=e in route.renormalize)
                                 for e in route.experts], dim=1)
        w = self.weights(modality, vectors)
        return F.normalize((projected * w.unsqueeze(2)).sum(dim=1), dim=-1), w


def load_bind_weights(network: BindNetwork, path: Path, *, allow_torch_pickle: bool = False,
                      prefix: str = "") -> None:
    """Load heads and routers by OmniBind's key names, strictly for the parts the spec declares.

    ``.safetensors`` files are read directly; OmniBind's released ``.pt`` files only with
    ``allow_torch_pickle`` (the card's ``weights_format = "torch-weights-only"``), through
    ``torch.load(weights_only=True)``. Keys the spec does not declare are ignored (OmniBind
    itself loads with ``strict=False``, and a composite may use a subset of a checkpoint's
    experts); every key the spec declares must be there with its shape, or IntegrityError.
    The network is left in eval mode.
    """
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    elif allow_torch_pickle:
        try:
            state = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as exc:  # the restricted unpickler refuses anything but tensors and containers
            raise UnsafeModelFileError(f"{path.name} is not a plain weights file: {exc}") from exc
    else:
        raise UnsafeModelFileError(f"{path.name}: binding weights are read from safetensors unless the card allows "
                                   "torch.load(weights_only=True)")
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    own = network.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise IntegrityError(f"{path.name} lacks {len(missing)} key(s) the composite needs, e.g. {missing[:3]}")
    bad = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        k = bad[0]
        raise IntegrityError(f"{path.name}: {k} has shape {tuple(state[k].shape)}, expected {tuple(own[k].shape)}")
    network.load_state_dict({k: state[k] for k in own}, strict=True)
    network.eval()  # loaded weights are for inference: batch norm uses its running statistics
