"""Training a binding composite's projector heads and routers from paired embeddings.

OmniBind trains each expert's heads to pull the expert's vector of an item towards the bound
space's vector of the same item and away from other items' (a symmetric InfoNCE loss over the
batch), then trains the routers with the heads frozen. :func:`fit_projectors` and
:func:`fit_router` do the same on any :class:`~zoo.adapters.bind.BindNetwork`, in place, so a
user can build a composite from zoo models and ship it as a card with :func:`save_bind_weights`.

Every head of an expert starts from a different seed and sees the batches in a different order;
their mean is what the network uses, as in OmniBind.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from zoo.adapters.bind import BindNetwork
from zoo.errors import InvalidInputError


def _paired(x: np.ndarray, y: np.ndarray, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.float32)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise InvalidInputError(f"{what}: need paired (N, d) arrays with the same N, got {x.shape} and {y.shape}")
    if len(x) < 4:
        raise InvalidInputError(f"{what}: need at least 4 pairs to fit, got {len(x)}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InvalidInputError(f"{what}: NaN or infinite values in the training pairs")
    return F.normalize(torch.from_numpy(x), dim=-1), F.normalize(torch.from_numpy(y), dim=-1)


def info_nce(pred: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row i of ``pred`` must pick row i of ``target`` among the batch, and back."""
    logits = F.normalize(pred, dim=-1) @ target.T / temperature
    labels = torch.arange(len(pred))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def _batches(n: int, batch_size: int, gen: torch.Generator):
    order = torch.randperm(n, generator=gen)
    for start in range(0, n - 1, batch_size):  # batch norm needs at least two rows
        idx = order[start:start + batch_size]
        if len(idx) >= 2:
            yield idx


def _train(module: torch.nn.Module, loss_of, n: int, *, epochs: int, batch_size: int, lr: float,
           gen: torch.Generator) -> list[float]:
    """AdamW on ``loss_of(batch indices)`` over seeded shuffled batches; the mean loss of each epoch."""
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=1e-4)
    module.train()
    history = []
    for _ in range(epochs):
        losses = []
        for idx in _batches(n, batch_size, gen):
            loss = loss_of(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        history.append(float(np.mean(losses)))
    module.eval()
    return history


def fit_projectors(network: BindNetwork, expert_id: str, x: np.ndarray, y: np.ndarray, *, epochs: int = 60,
                   batch_size: int = 64, lr: float = 1e-3, temperature: float = 0.05, seed: int = 0) -> list[float]:
    """Train every head of ``expert_id`` to map the expert's vectors ``x`` (N, d) onto ``y`` (N, out_dim).

    Returns the mean loss of each epoch (of the last head). The network is left in eval mode.
    """
    xt, yt = _paired(x, y, f"fit_projectors({expert_id!r})")
    heads = network.heads_of(expert_id)
    history: list[float] = []
    for h, head in enumerate(heads):
        gen = torch.Generator().manual_seed(seed * 1000 + h)
        with torch.no_grad():  # a fresh start per head: different seeds make the heads an ensemble
            for m in head.modules():
                if isinstance(m, torch.nn.Linear):
                    torch.nn.init.xavier_uniform_(m.weight, generator=gen)
                    m.bias.zero_()
                elif isinstance(m, torch.nn.BatchNorm1d):
                    m.reset_parameters()
                    m.reset_running_stats()
        history = _train(head, lambda idx, head=head: info_nce(head(xt[idx]), yt[idx], temperature), len(xt),
                         epochs=epochs, batch_size=batch_size, lr=lr, gen=gen)
    network.eval()
    return history


def fit_router(network: BindNetwork, modality: str, vectors: Mapping[str, np.ndarray], y: np.ndarray, *,
               epochs: int = 100, batch_size: int = 64, lr: float = 1e-3, temperature: float = 0.05,
               seed: int = 0) -> list[float]:
    """Train the modality's router, heads frozen, so the weighted sum of the experts lands on ``y``.

    ``vectors`` maps each expert of the route to its (N, d) vectors of the same N items.
    """
    route = network.spec.routes.get(modality)
    if route is None or not route.routed:
        raise InvalidInputError(f"modality {modality!r} has no router to fit")
    missing = [e for e in route.experts if e not in vectors]
    if missing:
        raise InvalidInputError(f"fit_router({modality!r}) needs vectors of expert(s) {missing}")
    tensors = {e: _paired(vectors[e], y, f"fit_router({modality!r}, {e!r})")[0] for e in route.experts}
    yt = F.normalize(torch.from_numpy(np.asarray(y, dtype=np.float32)), dim=-1)
    with torch.no_grad():  # the heads are frozen: project once
        projected = torch.stack([network.project(e, tensors[e], renormalize=e in route.renormalize)
                                 for e in route.experts], dim=1)
    router = getattr(network, route.router_key)

    def loss(idx: torch.Tensor) -> torch.Tensor:
        scores = router(torch.cat([tensors[e][idx] for e in route.router_inputs], dim=1))
        w = F.softmax(scores * route.scale, dim=-1)
        return info_nce((projected[idx] * w.unsqueeze(2)).sum(dim=1), yt[idx], temperature)

    history = _train(router, loss, len(yt), epochs=epochs, batch_size=batch_size, lr=lr,
                     gen=torch.Generator().manual_seed(seed))
    network.eval()
    return history


def save_bind_weights(network: BindNetwork, path: str | Path) -> Path:
    """Write the heads and routers as safetensors under OmniBind's key names; returns the path."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise InvalidInputError(f"binding weights are saved as .safetensors, not {path.suffix or 'no suffix'}")
    save_file({k: v.detach().contiguous() for k, v in network.state_dict().items()}, str(path))
    return path


def save_composite(network: BindNetwork, name: str, *, modalities: list[str], description: str,
                   license: str = "apache-2.0", space: str | None = None, bind_options: dict | None = None) -> Path:
    """Save a composite you built and fitted as a new card, loadable with ``zoo.load(name)``.

    Writes the heads and routers to ``$ZOO_HOME/models/<name>/bind.safetensors`` and the card to
    ``$ZOO_HOME/cards/<name>.toml`` (a ``local`` source pinning the file's sha256), then reloads
    the registry. ``bind_options`` is the ``[options.bind]`` table the network was built from
    (the spec's experts and routes); ``space`` defaults to the card name. Returns the card's path.
    """
    from zoo.catalog import registry
    from zoo.catalog.modelcard import NAME, card_from_dict
    from zoo.catalog.sources import sha256_file, zoo_home
    from zoo.spaces.align._files import dump_toml

    if not NAME.match(name):
        raise InvalidInputError(f"card names are lower-case letters, digits, '.', '_' and '-', not {name!r}")
    if bind_options is None:
        raise InvalidInputError("pass bind_options: the [options.bind] table the network was built from")
    folder = zoo_home() / "models" / name
    folder.mkdir(parents=True, exist_ok=True)
    weights = save_bind_weights(network, folder / "bind.safetensors")
    doc = {
        "adapter": "bind", "modalities": list(modalities), "dim": network.spec.out_dim,
        "space": space or name, "description": description, "license": license, "pooling": "model",
        "offline_ready": True, "parity": "A user-built composite (zoo.adapters.bind_fit.save_composite).",
        "options": {"bind": {**bind_options, "weights_file": weights.name}},
        "sources": [{"kind": "local", "sha256": {weights.name: sha256_file(weights)}}],
    }
    card_from_dict(name, _plain(doc))  # validate before anything is written where the registry reads
    cards = registry.user_cards_dir()
    cards.mkdir(parents=True, exist_ok=True)
    path = cards / f"{name}.toml"
    path.write_text(dump_toml(_plain(doc)), encoding="utf-8")
    registry.reload()
    return path


def _plain(value):
    """Mappings and tuples as dicts and lists (as TOML reads them back)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
