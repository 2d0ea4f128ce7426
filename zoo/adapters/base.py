"""BaseEmbedder: the one ``embed`` call every adapter shares.

An adapter subclass implements two hooks:

- ``_check(inputs, modality)``: validate every item up front (raising InvalidInputError
  with the item's index), returning the items in the form ``_encode`` wants;
- ``_encode(items, modality, ctx)``: return float32 vectors (N, D), row i for item i.

The base class owns what is common: option checks before any work, instruction and prompt
formatting, normalization, Matryoshka truncation and quantization.

One object is safe to share between threads: its public calls (``embed``, ``classify``,
``embed_and_classify``, ``transcribe`` and the like, in every subclass) run one at a time on it,
so each gives the result it gives alone. Tokenizers and per-call settings are never seen half
changed by another call. For calls that run side by side, use one object per process.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import warnings
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo._memory import release_memory
from zoo.embeddings import PRECISIONS, Embeddings, l2_normalize, quantize, truncate_dim
from zoo.errors import InputTooLargeError, InvalidInputError
from zoo.modelcard import ModelCard
from zoo.sources import Resolved

if TYPE_CHECKING:
    from zoo.cache import EmbeddingCache

TEXT_MODALITIES = ("text", "code")

#: Public calls that run one at a time on an object, wherever a subclass defines them.
SERIALIZED_CALLS = ("embed", "classify", "embed_and_classify", "class_probabilities", "transcribe")

_live: weakref.WeakSet[BaseEmbedder] = weakref.WeakSet()


def _serialized(method):
    """``method`` holding its object's call lock (re-entrant: a call may make others on the same object)."""
    if getattr(method, "_serialized", False):
        return method

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        with self._call_lock:
            return method(self, *args, **kwargs)

    call._serialized = True
    return call


def _renew_locks_after_fork() -> None:
    """A forked child must not inherit a lock another thread of its parent held at fork time.

    Nor may it enter torch's OpenMP thread pool, which the fork left without its threads (the
    child would wait for them forever): a forked child computes on one thread.
    """
    for embedder in list(_live):
        embedder._call_lock = threading.RLock()
    torch = sys.modules.get("torch")
    if _live and torch is not None:
        torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_locks_after_fork)


@dataclass
class EmbedContext:
    """Per-call settings handed to ``_encode``."""

    batch_size: int | None = None
    progress: bool = False
    truncate: bool = True
    instruction: str | None = None
    prompt_name: str | None = None
    low_memory: bool = False
    info: dict[str, Any] = field(default_factory=dict)


def as_item_list(inputs: Any) -> list:
    """The caller's inputs as a list of items; one item on its own becomes a list of one.

    A str, bytes, path, dict (interleaved input), (waveform, sample_rate) pair, PIL image, HxW
    or HxWxC array or CxHxW tensor is one item; a 4-D array or tensor is a batch; other
    sequences are lists of items.
    """
    import numbers
    import os

    if isinstance(inputs, (str, bytes, bytearray, memoryview, os.PathLike, dict)):
        return [inputs]
    if (isinstance(inputs, tuple) and len(inputs) == 2 and isinstance(inputs[1], numbers.Integral)
            and getattr(inputs[0], "ndim", 0) >= 1):
        return [inputs]  # one (waveform, sample_rate) pair
    if type(inputs).__module__.startswith("PIL."):
        return [inputs]
    ndim = getattr(inputs, "ndim", None)
    if ndim is not None and not isinstance(inputs, (list, tuple)):
        return [inputs] if ndim in (2, 3) else list(inputs)
    return list(inputs) if hasattr(inputs, "__iter__") else [inputs]


def format_prompt(card: ModelCard, instruction: str | None, prompt_name: str | None) -> tuple[str, str, str]:
    """Return (prefix, suffix, description) to wrap each text with, per the card.

    ``instruction`` goes through the card's instruction template; ``prompt_name`` picks a
    named prompt: a prefix, or a template with ``{input}`` ("a photo of a {input}.").
    Both at once is an error. With neither, the card's default prompt applies (most cards
    have none: texts are embedded as given).
    """
    if instruction is not None and prompt_name is not None:
        raise InvalidInputError("pass task_instruction or prompt_name, not both")
    if prompt_name is not None and not isinstance(prompt_name, str):
        raise InvalidInputError(f"prompt_name must be a string, not {type(prompt_name).__name__}")
    if prompt_name is not None:
        if prompt_name not in card.prompts:
            known = ", ".join(card.prompts) or "none"
            raise InvalidInputError(f"{card.name} has no prompt {prompt_name!r} (its prompts: {known})")
        prefix, _, suffix = card.prompts[prompt_name].partition("{input}")
        return prefix, suffix, f"prompt {prompt_name!r}"
    if instruction is not None:
        if not isinstance(instruction, str):
            raise InvalidInputError(f"task_instruction must be a string, not {type(instruction).__name__}")
        prefix, _, suffix = card.instruction_template.partition("{input}")
        return prefix.replace("{instruction}", instruction), suffix, "instruction"
    if card.default_prompt:
        prefix, _, suffix = card.prompts[card.default_prompt].partition("{input}")
        return prefix, suffix, f"prompt {card.default_prompt!r}"
    return "", "", "none"


class BaseEmbedder:
    """An embedding model ready to run. Build it with ``zoo.load(name)``.

    Safe to share between threads: the public calls run one at a time on one object.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in SERIALIZED_CALLS:  # defined here or by a mixin
            method = getattr(cls, name, None)
            if callable(method) and not getattr(method, "_serialized", False):
                setattr(cls, name, _serialized(method))

    def __init__(self, card: ModelCard, resolved: Resolved, **options: Any):
        self.card = card
        self.resolved = resolved
        self.options = options
        self._warned: set[str] = set()
        self._call_lock = threading.RLock()
        _live.add(self)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_call_lock", None)  # a lock belongs to one process
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._call_lock = threading.RLock()
        _live.add(self)

    # -- facts -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.card.name

    @property
    def dim(self) -> int:
        return self.card.dim

    @property
    def space(self) -> str:
        return self.card.space

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.card.modalities

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, dim={self.dim}, from={self.resolved.origin})"

    def warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(f"{self.name}: {message}", UserWarning, stacklevel=3)

    # -- hooks -----------------------------------------------------------------------------
    def _check(self, inputs: list, modality: str) -> list:
        raise NotImplementedError

    def _encode(self, items: list, modality: str, ctx: EmbedContext) -> np.ndarray:
        raise NotImplementedError

    def _apply_prompts(self, items: list, modality: str, ctx: EmbedContext) -> list:
        """Wrap text items with the card's prompt or instruction template.

        Adapters whose prompts involve other modalities (vision-language models) override this.
        """
        instruction, prompt_name = ctx.instruction, ctx.prompt_name
        if modality not in TEXT_MODALITIES:
            if instruction is not None or prompt_name is not None:
                self.warn_once(f"prompt-{modality}", f"instructions and prompts do not apply to {modality} inputs")
            return items
        if instruction is not None and not self.card.uses_instructions:
            format_prompt(self.card, instruction, prompt_name)  # still refuse both-at-once
            self.warn_once("instruction", "this model takes no task instructions; task_instruction is ignored")
            instruction = None
        prefix, suffix, used = format_prompt(self.card, instruction, prompt_name)
        ctx.info["prompt"] = used
        return [prefix + t + suffix for t in items] if prefix or suffix else items

    def as_items(self, inputs: Any) -> list:
        """The caller's inputs as a list of items (see :func:`as_item_list`); point models override it."""
        return as_item_list(inputs)

    def _infer_modality(self, inputs: list) -> str:
        if len(self.modalities) == 1:
            return self.modalities[0]
        raise InvalidInputError(f"{self.name} embeds {', '.join(self.modalities)}: say which with modality=")

    # -- the call --------------------------------------------------------------------------
    def _check_options(self, dim: int | None, precision: str, force_dim: bool) -> None:
        if precision not in PRECISIONS:
            raise InvalidInputError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        if dim is None:
            return
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= self.dim:
            raise InvalidInputError(f"dim must be an integer in 1..{self.dim}, not {dim!r}")
        mrl = self.card.matryoshka_dims
        if not force_dim and not mrl:
            raise InvalidInputError(
                f"{self.name} was not trained for Matryoshka truncation; truncated vectors lose quality. "
                "Pass force_dim=True to truncate anyway"
            )
        if not force_dim and not mrl[0] <= dim <= mrl[-1]:
            raise InvalidInputError(f"{self.name} supports Matryoshka dims {mrl[0]}..{mrl[-1]}, not {dim}")

    def _embed_cached(self, inputs: list, cache: EmbeddingCache, call: dict[str, Any]) -> Embeddings:
        """``embed`` through the cache: look every item up, embed only the misses (once each), store them."""
        from zoo.cache import content_key, space_fingerprint

        modality = call["modality"]
        space = {k: v for k, v in call.items() if k not in ("batch_size", "progress", "low_memory", "calibration")}
        if call["calibration"] is not None:
            space["calibration"] = content_key(np.asarray(call["calibration"]))
        fingerprint = space_fingerprint(self, **space)
        keys = []
        for i, item in enumerate(inputs):
            if isinstance(item, str) and modality not in TEXT_MODALITIES:
                item = Path(item)  # a str is a file path for every modality but text
            try:
                keys.append(cache.key(content_key(item, index=i), fingerprint))
            except OSError as exc:
                raise InvalidInputError(f"cannot read {item}: {exc.strerror or exc}", index=i) from exc
        found = cache.get_many(list(dict.fromkeys(keys)))
        todo = {k: i for i, k in enumerate(keys) if k not in found}  # first item of every missing key
        out = None
        if todo:
            at = list(todo.values())
            try:
                out = self.embed([inputs[i] for i in at], **call)
            except InvalidInputError as exc:  # name the caller's index, not the index among the misses
                if exc.index is None or not 0 <= exc.index < len(at):
                    raise
                message = str(exc).removeprefix(f"input[{exc.index}]: ")
                raise _with_index(exc, message, at[exc.index]) from exc
            new = dict(zip(todo, out.vectors, strict=True))
            cache.put_many(new.items())
            found.update(new)
        hits = len(inputs) - len(todo)
        cache.hits, cache.misses = cache.hits + hits, cache.misses + len(todo)
        info = dict(out.info) if out is not None else {"similarity": self.card.similarity}
        if out is not None and hits:
            row = {k: r for r, k in enumerate(todo)}
            info = _spread_rows(info, [row.get(k, -1) for k in keys])
        info.update(cache_hits=hits, cache_misses=len(todo))
        dim = call["dim"] or self.dim
        return Embeddings(vectors=np.stack([found[k] for k in keys]), space=self.space, model=self.name,
                          modality=modality, normalized=call["normalize"] or (self.card.pooling == "model"
                                                                              and self.card.normalize),
                          precision=call["precision"], dim=dim, info=info)

    def stream(self, inputs: Iterable[Any], *, chunk_size: int = 4096, **kwargs: Any) -> Iterator[Embeddings]:
        """Embed an iterable of any length chunk by chunk, yielding one Embeddings per chunk.

        Memory stays bounded by ``chunk_size`` items whatever the total: use it for corpora
        that do not fit in memory. Options are those of :meth:`embed`; ``low_memory`` is on.
        """
        kwargs.setdefault("low_memory", True)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise InvalidInputError(f"chunk_size must be a positive integer, not {chunk_size!r}")
        it = iter(inputs)
        while chunk := list(islice(it, chunk_size)):
            out = self.embed(chunk, **kwargs)
            release_memory()  # keep resident memory flat across chunks (see zoo._memory)
            yield out

    @_serialized
    def embed(
        self,
        inputs: Any,
        task_instruction: str | None = None,
        *,
        prompt_name: str | None = None,
        modality: str | None = None,
        batch_size: int | None = None,
        normalize: bool = True,
        dim: int | None = None,
        force_dim: bool = False,
        precision: str = "float32",
        calibration: np.ndarray | None = None,
        truncate: bool = True,
        progress: bool | None = None,
        low_memory: bool = False,
        cache: EmbeddingCache | None = None,
    ) -> Embeddings:
        """Embed a list of inputs; row i of the result belongs to input i.

        Args:
            inputs: a list of items (a single str is taken as a list of one).
            task_instruction: free text formatted by the card's instruction template.
            prompt_name: a named prompt of the card ("query", "passage", ...).
            modality: which modality the inputs are, for models that take several.
            batch_size: most items per forward pass (texts are also bounded by a token budget).
            normalize: L2-normalize the vectors (models whose output is normalized stay so).
            dim: Matryoshka truncation to this many dimensions, then renormalization.
            force_dim: allow ``dim`` on a model not trained for it.
            precision: "float32", "float16", "int8", "uint8", "binary" or "ubinary".
            calibration: float vectors whose per-dimension ranges calibrate int8/uint8.
            truncate: cut over-long inputs to the model's limit (warns once) instead of raising.
            progress: show a progress bar (default: for long jobs on a terminal).
            low_memory: give freed memory back to the OS after every batch: a flat, low peak
                for a few percent of speed (on by default in :meth:`stream`).
            cache: a :class:`zoo.cache.EmbeddingCache`; items whose content was embedded before
                in this exact space (model, card, instruction, dim, precision...) are not
                embedded again. ``info`` counts ``cache_hits`` and ``cache_misses``.
        """
        self._check_options(dim, precision, force_dim)
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size < 1):
            raise InvalidInputError(f"batch_size must be a positive integer, not {batch_size!r}")
        inputs = self.as_items(inputs)
        modality = modality or self._infer_modality(inputs)
        if modality not in self.modalities:
            embeds = ", ".join(self.modalities)
            raise InvalidInputError(f"{self.name} does not embed {modality!r} (it embeds {embeds})")
        if cache is not None and inputs:
            call = dict(task_instruction=task_instruction, prompt_name=prompt_name, modality=modality,
                        batch_size=batch_size, normalize=normalize, dim=dim, force_dim=force_dim, precision=precision,
                        calibration=calibration, truncate=truncate, progress=progress, low_memory=low_memory)
            return self._embed_cached(inputs, cache, call)
        items = self._check(inputs, modality)
        if progress is None:
            progress = len(items) >= 2048 and sys.stderr.isatty()
        ctx = EmbedContext(batch_size=batch_size, progress=bool(progress), truncate=truncate,
                           instruction=task_instruction, prompt_name=prompt_name, low_memory=low_memory)
        items = self._apply_prompts(items, modality, ctx)
        if items:
            vectors = np.asarray(self._encode(items, modality, ctx), dtype=np.float32)
        else:
            vectors = np.zeros((0, self.dim), dtype=np.float32)
        if vectors.shape != (len(items), self.dim):
            raise RuntimeError(f"{self.name}: adapter returned {vectors.shape}, expected {(len(items), self.dim)}")
        bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
        if len(bad):  # never hand out a NaN or inf vector: the input that made it is at fault
            raise InvalidInputError(f"{self.name} gave a non-finite vector for this {modality} input (its values are "
                                    "out of the range the model can take)", index=int(bad[0]))
        normalized = normalize or (self.card.pooling == "model" and self.card.normalize)
        if normalize:
            vectors = l2_normalize(vectors)
        if dim is not None:
            vectors = truncate_dim(vectors, dim, renormalize=normalized)
        out = quantize(vectors, precision, calibration=calibration) if len(vectors) else vectors
        if precision in ("binary", "ubinary") and not len(vectors):
            out = np.zeros((0, (vectors.shape[1] + 7) // 8), dtype=np.int8 if precision == "binary" else np.uint8)
        ctx.info["similarity"] = self.card.similarity
        return Embeddings(
            vectors=out,
            space=self.space,
            model=self.name,
            modality=modality,
            normalized=normalized,
            precision=precision,
            dim=vectors.shape[1],
            info=ctx.info,
        )


def _with_index(exc: InvalidInputError, message: str, index: int) -> InvalidInputError:
    """A copy of ``exc`` (same type, same limit) naming ``index`` instead."""
    if isinstance(exc, InputTooLargeError):
        return type(exc)(message, index=index, limit=exc.limit)
    try:
        return type(exc)(message, index=index)
    except TypeError:  # a subclass with another signature: keep its type's family
        return InvalidInputError(message, index=index)


def _spread_rows(info: dict[str, Any], rows: list[int]) -> dict[str, Any]:
    """Per-row arrays of a cached call's info (one row per embedded miss) spread over every input.

    ``rows[j]`` is input j's row among the misses, or -1 for a cache hit, whose row is NaN: the
    cache keeps vectors, not how they were made (a binding composite's expert weights, say).
    """
    at = np.asarray(rows)
    embedded = at >= 0
    out = {}
    for key, value in info.items():
        if isinstance(value, np.ndarray) and value.ndim and len(value) == at.max() + 1:
            full = np.full((len(at), *value.shape[1:]), np.nan)
            full[embedded] = value[at[embedded]]
            value = full
        out[key] = value
    return out
