"""Binding composites: several expert models bound into one embedding space, the OmniBind way.

OmniBind (Wang et al. 2024, "OmniBind: Large-scale Omni Multimodal Representation via Binding
Spaces") puts audio, images, 3D points and text into one 1536-d space built from pretrained
experts (CLAP, WavCaps, EVA-CLIP, SigLIP, Uni3D, ImageBind):

every expert embeds the input in its own space, projector heads map each expert's vector into
the bound space, and a router per modality weights the experts (:mod:`zoo.adapters.bind_network`
holds that network, with OmniBind's own state-dict key names, so its released projector and router
weights load unchanged). Two things are generalised:

- an expert may have no projector (``projector = false``): its own space is the bound space;
- an expert may be derived from other zoo models: ``conse`` binds a classifier's class
  probabilities to a text space by the convex combination of its class names' text embeddings
  (ConSE, Norouzi et al. 2014), ``transcript`` transcribes speech and embeds the words.

A card with ``adapter = "bind"`` describes a composite in ``[options.bind]`` (see
:meth:`BindSpec.from_options`); :func:`zoo.adapters.bind_fit.fit_projector` and
:func:`zoo.adapters.bind_fit.fit_router` train heads and routers from paired embeddings.
OmniBind's "Full" variant (an extra 0.9/0.1 blend with EVA-CLIP-18B) is not supported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.adapters.base import TEXT_MODALITIES, BaseEmbedder, EmbedContext
from zoo.adapters.bind_network import (  # noqa: F401 - the network's names: re-exported
    EXPERT_KINDS,
    HEAD_GROUPS,
    ROUTER_KEYS,
    BindNetwork,
    BindSpec,
    ExpertSpec,
    RouteSpec,
    load_bind_weights,
)
from zoo.adapters.text import check_texts
from zoo.catalog.modelcard import ModelCard
from zoo.catalog.sources import Resolved
from zoo.errors import CardError, InvalidInputError
from zoo.inputs.audio import load_audios
from zoo.inputs.images import load_images
from zoo.inputs.limits import FILE_SUFFIXES


# ---------------------------------------------------------------------------------------------- ConSE
def conse(probs: np.ndarray, label_vectors: np.ndarray, top: int) -> np.ndarray:
    """ConSE: each row's ``top`` most probable classes, their label vectors weighted by probability.

    ``probs`` (N, C) class probabilities, ``label_vectors`` (C, D) unit text embeddings of the
    class names. Norouzi et al. 2014 divide by the sum of the top probabilities; the result is
    L2-normalized here anyway, so the vector's direction is what matters.
    """
    if probs.ndim != 2 or probs.shape[1] != len(label_vectors):
        raise InvalidInputError(f"probabilities {probs.shape} do not match {len(label_vectors)} labels")
    top = min(int(top), probs.shape[1])
    idx = np.argpartition(-probs, top - 1, axis=1)[:, :top]
    w = np.take_along_axis(probs, idx, axis=1)
    out = np.einsum("nt,ntd->nd", w / w.sum(axis=1, keepdims=True), label_vectors[idx])
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def label_texts(names: Sequence[str], prompt: str) -> list[str]:
    """Class names as the texts to embed: ``prompt`` with ``{label}`` (underscores become spaces)."""
    if "{label}" not in prompt:
        raise CardError(f"label_prompt {prompt!r} needs a {{label}} placeholder")
    return [prompt.replace("{label}", n.replace("_", " ")) for n in names]


# ---------------------------------------------------------------------------------------------- adapter
def _guess_modality(item: Any) -> str | None:
    """The modality an item plainly is, or None when it could be several (raw bytes, odd objects)."""
    if isinstance(item, (str, Path)):
        media = _media_suffix(item)
        if media and _is_file(item):  # only strings with a media suffix cost a stat
            return media
        return "text" if isinstance(item, str) and not media else None
    if isinstance(item, tuple) and len(item) == 2:
        return "audio"  # (waveform, sample_rate)
    if type(item).__module__.startswith("PIL."):
        return "image"
    shape = getattr(item, "shape", None)
    if shape is not None and len(shape) == 2 and shape[1] in (3, 6):
        return "points"
    if shape is not None and len(shape) == 3:
        return "image"
    return None


def _media_suffix(item: str | Path) -> str | None:
    """The modality whose file suffix ``item`` ends with ("image" for "cat.jpg"), else None."""
    text = str(item)
    if len(text) > 4096 or "\n" in text:
        return None
    suffix = Path(text).suffix.lower()
    return next((m for m, sfx in FILE_SUFFIXES.items() if suffix in sfx), None) if suffix else None


def _is_file(item: str | Path) -> bool:
    try:
        return Path(item).is_file()
    except (OSError, ValueError):  # a name too long for the file system, an embedded NUL
        return False


def _is_dir(item: str) -> bool:
    try:
        return len(item) <= 4096 and "\n" not in item and Path(item).is_dir()
    except (OSError, ValueError):
        return False


#: Audio is decoded once, at this rate, and handed to every expert as a (waveform, rate) pair.
AUDIO_RATE = 48_000


class BindEmbedder(BaseEmbedder):
    """A composite: expert zoo models, projector heads and routers, one space for every modality.

    Expert models are loaded on first use with ``zoo.load`` (pass ``experts={name: embedder}``
    to reuse loaded ones). ``embed(...).info`` says which experts made each vector and with what
    weights (``experts`` and ``expert_weights``, (N, n)).
    """

    def __init__(self, card: ModelCard, resolved: Resolved, *, device: str = "cpu", trust_remote_code: bool = False,
                 experts: Mapping[str, BaseEmbedder] | None = None, **options: Any):
        super().__init__(card, resolved, **options)
        raw = card.options.get("bind", {})
        self.spec = BindSpec.from_options(raw, where=f"card {card.name!r} options.bind")
        if self.spec.out_dim != card.dim:
            raise CardError(f"card {card.name!r}: options.bind.out_dim {self.spec.out_dim} != dim {card.dim}")
        if unrouted := set(card.modalities) - set(self.spec.routes):
            raise CardError(f"card {card.name!r}: no route for modality {sorted(unrouted)}")
        self.network = BindNetwork(self.spec)
        if raw.get("weights_file"):
            load_bind_weights(self.network, Path(resolved.path) / raw["weights_file"],
                              allow_torch_pickle=card.weights_format == "torch-weights-only")
        elif any(True for _ in self.network.parameters()):
            raise CardError(f"card {card.name!r}: the composite has projectors or routers but names no weights_file")
        self.network.eval().to(torch.device(device))
        self._models: dict[str, BaseEmbedder] = dict(experts or {})
        self._labels: dict[tuple, np.ndarray] = {}

    # -- experts --------------------------------------------------------------------------------
    def model(self, name: str) -> BaseEmbedder:
        """An expert's zoo model, loaded once."""
        if name not in self._models:
            from zoo.catalog.loader import load

            self._models[name] = load(name)
        return self._models[name]

    def _label_vectors(self, classifier: BaseEmbedder, opts: Mapping[str, Any]) -> np.ndarray:
        """Unit text vectors of the classifier's classes: ``label_prompt`` filled with each class's label.

        A class's label is its name, or its entry in the expert's ``label_names`` table.
        """
        text_model, prompt = opts["text_model"], opts.get("label_prompt", "{label}")
        names = dict(opts.get("label_names", {}))
        key = (classifier.name, text_model, prompt, tuple(sorted(names.items())))
        if key not in self._labels:
            labels = [names.get(n, n) for n in classifier.class_names]
            self._labels[key] = self.model(text_model).embed(label_texts(labels, prompt), normalize=True).vectors
        return self._labels[key]

    def expert_vectors(self, expert: ExpertSpec, modality: str, items: list, *, truncate: bool = True) -> np.ndarray:
        """(N, expert.dim) float32 vectors of one expert for checked items of ``modality``. ``truncate`` is the
        caller's: an expert that embeds the items themselves cuts over-long ones only when it is true (texts an
        expert derives, such as transcripts, are always cut to fit)."""
        opts = expert.options
        if expert.kind == "conse":
            classifier = self.model(opts["classifier"])
            probs = classifier.class_probabilities(items)
            labels = self._label_vectors(classifier, opts)
            vectors = conse(probs, labels, int(opts.get("top", 10)))
        elif expert.kind == "transcript":
            speech = self.model(opts["speech_model"])
            texts = speech.transcribe(items, beam_size=int(opts.get("beam_size", 1)))
            vectors = self.model(opts["text_model"]).embed(texts, normalize=True).vectors
        else:
            model = self.model(expert.models[modality])
            as_modality = "text" if modality == "code" and "code" not in model.modalities else modality
            vectors = model.embed(items, modality=as_modality, normalize=True, truncate=truncate).vectors
        if vectors.shape[1] != expert.dim:
            raise CardError(f"{self.name}: expert {expert.id!r} gave {vectors.shape[1]}-d vectors, "
                            f"its spec says {expert.dim}")
        return np.asarray(vectors, dtype=np.float32)

    # -- hooks ----------------------------------------------------------------------------------
    def _infer_modality(self, inputs: list) -> str:
        """Text for plain strings; images, audio or points for files by their suffix, or arrays by shape.

        Every item must point the same way; anything else asks for ``modality=``. A string with a
        media suffix that names no file ("/photos/cat.jpg") is an error, not text.
        """
        for i, item in enumerate(inputs):
            media = _media_suffix(item) if isinstance(item, (str, Path)) else None
            if isinstance(item, str) and "/" in item and _is_dir(item):
                raise InvalidInputError(f"{item[:200]!r} names a directory, not a file; pass modality='text' to "
                                        "embed it as text", index=i)
            if media and not _is_file(item):
                article = {"image": "an image", "audio": "an audio", "points": "a point-cloud"}[media]
                raise InvalidInputError(f"{str(item)[:200]!r} names {article} file that does not exist (or is not "
                                        "a regular file); pass modality='text' to embed it as text", index=i)
        kinds = {_guess_modality(item) for item in inputs} or {"text"}
        if len(kinds) == 1 and None not in kinds and kinds <= set(self.modalities):
            return kinds.pop()
        return super()._infer_modality(inputs)

    def _check(self, inputs: list, modality: str) -> list:
        """Decode once what every expert would decode again; the experts check the rest."""
        if modality in TEXT_MODALITIES:
            return check_texts(inputs)
        if modality == "image":
            return load_images(inputs)
        if modality == "audio":
            return [(wave, AUDIO_RATE) for wave in load_audios(inputs, target_rate=AUDIO_RATE)]
        return list(inputs)

    def _encode(self, items: list, modality: str, ctx: EmbedContext) -> np.ndarray:
        route = self.spec.routes[modality]
        vectors = {eid: torch.from_numpy(self.expert_vectors(self.spec.expert(eid), modality, items,
                                                             truncate=ctx.truncate))
                   for eid in route.experts}
        with torch.inference_mode():
            out, weights = self.network(modality, vectors)
        ctx.info["experts"] = list(route.experts)
        ctx.info["expert_weights"] = weights.numpy()
        return out.numpy()
