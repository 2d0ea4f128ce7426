"""BaseEmbedder: the one ``embed`` call every adapter shares.

An adapter subclass implements two hooks:

- ``_check(inputs, modality)``: validate every item up front (raising InvalidInputError
  with the item's index), returning the items in the form ``_encode`` wants;
- ``_encode(items, modality, ctx)``: return float32 vectors (N, D), row i for item i.

The base class owns what is common: option checks before any work, instruction and prompt
formatting, normalization, Matryoshka truncation and quantization.

One object is safe to share between threads: its public calls (``embed``, ``encode``,
``similarity``, ``classify``, ``embed_and_classify``, ``transcribe`` and the like, in every
subclass) run one at a time on it, so each gives the result it gives alone. Tokenizers and
per-call settings are never seen half changed by another call. For calls that run side by side,
use one object per process.

``encode`` and ``similarity`` are sentence-transformers' calls, with its keywords, defaults and
return types, on top of ``embed`` (see :meth:`BaseEmbedder.encode`).

Load options: every keyword an adapter's ``__init__`` names (``device``, ``compute_dtype``...) is
a ``zoo.load`` option; a subclass that reads more from ``self.options`` lists them in
``LOAD_OPTIONS``. Any other keyword is an InvalidInputError naming the accepted ones.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import numbers
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
from zoo.catalog.modelcard import ModelCard
from zoo.catalog.sources import Resolved
from zoo.embeddings import PRECISION_DTYPES, PRECISIONS, Embeddings, l2_normalize, quantize, truncate_dim
from zoo.errors import InputTooLargeError, InvalidInputError

if TYPE_CHECKING:
    from zoo.data.cache import EmbeddingCache

TEXT_MODALITIES = ("text", "code")

#: Public calls that run one at a time on an object, wherever a subclass defines them.
SERIALIZED_CALLS = ("embed", "encode", "similarity", "classify", "embed_and_classify", "class_probabilities",
                    "transcribe")

#: ``zoo.load``'s own keywords (the rest go to the adapter).
LOADER_OPTIONS = ("path", "download", "trust_remote_code", "prompts", "default_prompt_name")

#: The zoo's ``embed`` keywords that ``encode`` also takes (sentence-transformers' own come first in its signature).
ENCODE_EXTRA_OPTIONS = ("task_instruction", "modality", "truncate", "cache", "low_memory", "calibration")

_UNSET: Any = object()

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


_UNITS = {"text": "text", "code": "snippet", "image": "image", "audio": "clip", "points": "cloud"}


@dataclass
class EmbedContext:
    """Per-call settings handed to ``_encode``."""

    batch_size: int | None = None
    progress: bool = False
    truncate: bool = True
    instruction: str | None = None
    prompt_name: str | None = None
    prompt: str | None = None
    low_memory: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    bar: Any = None  # the call's progress bar (tqdm) while ``progress`` is on; see advance()

    def advance(self, n: int) -> None:
        """Count ``n`` more items done on the call's progress bar (nothing when there is none). Adapters call it
        per batch; the bar is completed when ``_encode`` returns, so one that never calls it still shows one."""
        if self.bar is not None:
            self.bar.update(n)


def _new_bar(total: int, desc: str, unit: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit)


@contextlib.contextmanager
def progress_bar(ctx: EmbedContext, total: int, desc: str, unit: str):
    """A tqdm bar over ``total`` items in ``ctx.bar`` while ``ctx.progress`` is on (on stderr; a plain line per
    update when stderr is not a terminal is tqdm's own behaviour), filled up and closed on the way out."""
    if not ctx.progress or total <= 0:
        yield
        return
    ctx.bar = _new_bar(total=total, desc=desc, unit=unit)
    try:
        yield
        ctx.bar.update(total - ctx.bar.n)
    finally:
        ctx.bar.close()
        ctx.bar = None


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


def format_prompt(card: ModelCard, instruction: str | None, prompt_name: str | None,
                  prompt: str | None = None) -> tuple[str, str, str]:
    """Return (prefix, suffix, description) to wrap each text with, per the card.

    ``instruction`` goes through the card's instruction template; ``prompt_name`` picks a
    named prompt: a prefix, or a template with ``{input}`` ("a photo of a {input}.");
    ``prompt`` is a literal prefix (sentence-transformers' ``prompt=``). Two at once is an
    error. With none, the card's default prompt applies (most cards have none: texts are
    embedded as given).
    """
    if prompt is not None:
        if not isinstance(prompt, str):
            raise InvalidInputError(f"prompt must be a string, not {type(prompt).__name__}")
        if instruction is not None or prompt_name is not None:
            raise InvalidInputError("pass one of prompt, prompt_name and task_instruction, not several")
        return prompt, "", "prompt (given)"
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

    #: ``zoo.load`` options a subclass reads from ``self.options`` (beyond those its ``__init__`` names).
    LOAD_OPTIONS: tuple[str, ...] = ()

    @classmethod
    def load_options(cls) -> tuple[str, ...]:
        """The ``zoo.load`` keywords this adapter takes, besides ``zoo.load``'s own: the keywords of its
        ``__init__`` (and of its parents' where it passes ``**options`` on), and ``LOAD_OPTIONS``."""
        names: list[str] = []
        for klass in cls.__mro__:
            if klass is object:
                break
            names += getattr(klass, "LOAD_OPTIONS", ())
            init = vars(klass).get("__init__")
            if init is None or klass is BaseEmbedder:
                continue
            params = inspect.signature(init).parameters.values()
            names += [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
                      and p.name not in ("self", "card", "resolved")]
            if not any(p.kind is p.VAR_KEYWORD for p in params):
                break
        return tuple(sorted(set(names) - set(LOADER_OPTIONS)))

    @classmethod
    def unknown_options(cls, who: str, unknown: Iterable[str],
                        loader_options: Iterable[str] = LOADER_OPTIONS) -> InvalidInputError:
        """The error for keywords neither ``zoo.load`` (its own are ``loader_options``) nor this adapter takes."""
        takes = ", ".join(cls.load_options()) or "nothing else"
        return InvalidInputError(f"{who}: unknown option(s) {', '.join(sorted(unknown))}. zoo.load takes "
                                 f"{', '.join(loader_options)}; this model's adapter ({cls.__name__}) takes {takes}")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in SERIALIZED_CALLS:  # defined here or by a mixin
            method = getattr(cls, name, None)
            if callable(method) and not getattr(method, "_serialized", False):
                setattr(cls, name, _serialized(method))

    def __init__(self, card: ModelCard, resolved: Resolved, **options: Any):
        options.pop("trust_remote_code", None)  # zoo.load passes it; an adapter without remote code ignores it
        unknown = set(options) - set(type(self).LOAD_OPTIONS)
        if unknown:
            raise type(self).unknown_options(card.name, unknown)
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

    @property
    def similarity_fn_name(self) -> str:
        """The card's metric, "cosine" or "dot" (sentence-transformers' attribute of the same name)."""
        return self.card.similarity

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
        instruction, prompt_name, prompt = ctx.instruction, ctx.prompt_name, ctx.prompt
        if modality not in TEXT_MODALITIES:
            if instruction is not None or prompt_name is not None or prompt is not None:
                self.warn_once(f"prompt-{modality}", f"instructions and prompts do not apply to {modality} inputs")
            return items
        if instruction is not None and not self.card.uses_instructions:
            format_prompt(self.card, instruction, prompt_name, prompt)  # still refuse two at once
            self.warn_once("instruction", "this model takes no task instructions; task_instruction is ignored")
            instruction = None
        prefix, suffix, used = format_prompt(self.card, instruction, prompt_name, prompt)
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
        from zoo.data.cache import content_key, space_fingerprint

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
        prompt: str | None = None,
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
            prompt: a literal prefix for every text (sentence-transformers' ``prompt=``); not with
                ``prompt_name`` or ``task_instruction``, and not for models whose adapter builds its own
                prompts (vision-language models: use ``task_instruction``).
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
        if prompt is not None:
            if not isinstance(prompt, str):
                raise InvalidInputError(f"prompt must be a string, not {type(prompt).__name__}")
            if type(self)._apply_prompts is not BaseEmbedder._apply_prompts:
                raise InvalidInputError(f"{self.name} builds its prompts itself; prompt= does not apply (pass "
                                        "task_instruction= or prompt_name=)")
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
            if prompt is not None:  # only when given: the space fingerprints of earlier caches stay as they were
                call["prompt"] = prompt
            return self._embed_cached(inputs, cache, call)
        items = self._check(inputs, modality)
        if progress is None:
            progress = len(items) >= 2048 and sys.stderr.isatty()
        ctx = EmbedContext(batch_size=batch_size, progress=bool(progress), truncate=truncate,
                           instruction=task_instruction, prompt_name=prompt_name, prompt=prompt,
                           low_memory=low_memory)
        items = self._apply_prompts(items, modality, ctx)
        if items:
            with progress_bar(ctx, len(items), f"embed {self.name}", _UNITS.get(modality, "item")):
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

    # -- sentence-transformers' calls ------------------------------------------------------------
    @_serialized
    def encode(
        self,
        inputs: Any = _UNSET,
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        output_value: str | None = "sentence_embedding",
        precision: str = "float32",
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: Any = None,
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
        pool: Any = None,
        chunk_size: int | None = None,
        **kwargs: Any,
    ) -> Any:
        """sentence-transformers' ``encode``: its keywords, defaults and return types, on :meth:`embed`.

        Returns a numpy array (N, D); with ``convert_to_tensor=True`` a torch tensor; with both
        ``convert_to_numpy`` and ``convert_to_tensor`` false a list of 1-D tensors (tensors are on
        the CPU, where sentence-transformers leaves them on the model's device). One input (a str,
        an image, a dict, a conversation) gives one 1-D vector. An empty list gives shape (0, D)
        (sentence-transformers gives an empty 1-D array).

        As in sentence-transformers, the vectors are the model's own output: L2-normalized only
        where the original pipeline normalizes (the card's ``normalize``; all-MiniLM-L6-v2 does,
        paraphrase-MiniLM-L3-v2 and CLIP do not), whereas ``embed`` normalizes by default.
        ``normalize_embeddings=True`` normalizes; ``truncate_dim`` keeps the first dimensions
        (any model, no renormalization unless ``normalize_embeddings``); ``precision`` quantizes
        the whole batch like ``quantize_embeddings`` (int8/uint8 ranges from the batch itself, or
        from ``calibration=``); ``prompt`` is a literal prefix and wins over ``prompt_name``.

        Inputs, besides the zoo's own items: a PIL image; a dict of sentence-transformers 6's
        multimodal form, ``{"text": ...}``, ``{"image": ...}``, ``{"audio": ...}``, ``{"image": ...,
        "text": ...}`` (one input of both, for models that embed interleaved inputs) or an audio
        dict ``{"array": ..., "sampling_rate": ...}``; chat messages, one conversation being a list
        of ``{"role", "content"}`` dicts: an optional system turn, read as the task instruction
        (models that take instructions), then one user turn whose content is a text or a list of
        ``{"type": "text", "text": ...}`` / ``{"type": "image", "image": ...}`` parts (at most one
        of each). Each gives what the zoo's own form gives with :meth:`embed`. Other forms (video,
        text pairs, several images in one input, other roles) are an ``InvalidInputError`` naming
        the form. Inputs of different modalities may share one call.

        ``device`` may only name the device the model is on (``zoo.load(name, device=...)`` moves
        it); ``pool``/``chunk_size`` (multi-process encoding) and ``output_value`` other than
        "sentence_embedding" are refused. The zoo's ``embed`` keywords ``task_instruction``,
        ``modality``, ``truncate``, ``cache``, ``low_memory`` and ``calibration`` are taken too.
        """
        if "sentences" in kwargs:  # sentence-transformers' older name for the first argument
            if inputs is not _UNSET:
                raise InvalidInputError("encode got both inputs and sentences")
            inputs = kwargs.pop("sentences")
        if inputs is _UNSET:
            raise InvalidInputError("encode needs the inputs to embed")
        unknown = sorted(set(kwargs) - set(ENCODE_EXTRA_OPTIONS))
        if unknown:
            raise InvalidInputError(f"encode got unknown keyword(s) {', '.join(unknown)}; besides "
                                    "sentence-transformers' own it takes " + ", ".join(ENCODE_EXTRA_OPTIONS))
        self._check_encode_options(output_value, precision, device, pool, chunk_size, truncate_dim,
                                   normalize_embeddings, convert_to_numpy, convert_to_tensor)
        if prompt is not None:
            if not isinstance(prompt, str):
                raise InvalidInputError(f"prompt must be a string, not {type(prompt).__name__}")
            prompt_name = None  # sentence-transformers: prompt wins over prompt_name
        single = _st_singular(inputs)
        if single:
            items = [inputs]
        elif isinstance(inputs, np.ndarray):
            items = inputs.tolist()
        elif isinstance(inputs, (list, tuple, Iterator)):
            items = list(inputs)
        else:
            raise InvalidInputError(f"encode takes an input or a list of inputs, not {type(inputs).__name__}")
        vectors = self._encode_st(items, prompt_name=prompt_name, prompt=prompt, batch_size=batch_size,
                                  progress=show_progress_bar, **kwargs)
        if truncate_dim is not None:
            vectors = np.ascontiguousarray(vectors[:, :truncate_dim])
        if normalize_embeddings:
            vectors = l2_normalize(vectors)
        if precision != "float32":
            width = (vectors.shape[1] + 7) // 8 if precision in ("binary", "ubinary") else vectors.shape[1]
            vectors = (quantize(vectors, precision, calibration=kwargs.get("calibration")) if len(vectors)
                       else np.zeros((0, width), dtype=PRECISION_DTYPES[precision]))
        if convert_to_tensor or not convert_to_numpy:
            import torch

            out = torch.from_numpy(vectors)
            if not convert_to_tensor:
                out = list(out)
        else:
            out = vectors
        return out[0] if single else out

    def _check_encode_options(self, output_value: Any, precision: Any, device: Any, pool: Any, chunk_size: Any,
                              truncate_dim: Any, normalize_embeddings: Any, convert_to_numpy: Any,
                              convert_to_tensor: Any) -> None:
        if output_value != "sentence_embedding":
            raise InvalidInputError(f"output_value={output_value!r:.80} is not supported: encode gives one vector per "
                                    "input (output_value='sentence_embedding')")
        if precision not in PRECISIONS:
            raise InvalidInputError(f"precision must be one of {PRECISIONS}, not {precision!r:.80}")
        if pool is not None or chunk_size is not None:
            raise InvalidInputError("multi-process encoding (pool=, chunk_size=) is not supported: one model object "
                                    "runs one call at a time; load one model per process instead")
        if device is not None and not _same_device(device, _device_of(self)):
            raise InvalidInputError(f"{self.name} runs on {_device_of(self)}; encode cannot move it to "
                                    f"{device!r:.80}: pass device= to zoo.load")
        if truncate_dim is not None and (isinstance(truncate_dim, bool) or not isinstance(truncate_dim, int)
                                         or not 1 <= truncate_dim <= self.dim):
            raise InvalidInputError(f"truncate_dim must be an integer in 1..{self.dim}, not {truncate_dim!r:.80}")
        for name, flag in (("normalize_embeddings", normalize_embeddings), ("convert_to_numpy", convert_to_numpy),
                           ("convert_to_tensor", convert_to_tensor)):
            if not isinstance(flag, (bool, np.bool_)):
                raise InvalidInputError(f"{name} must be True or False, not {flag!r:.80}")

    def _encode_st(self, items: list, *, prompt_name: str | None, prompt: str | None, batch_size: int,
                   progress: bool | None, **options: Any) -> np.ndarray:
        """float32 (N, D) vectors of sentence-transformers-style items, as the model's pipeline gives them."""
        options.pop("calibration", None)  # quantization happens in encode, over the whole batch
        given_modality = options.pop("modality", None)
        given_instruction = options.pop("task_instruction", None)
        groups: dict[tuple[str | None, str | None], list[int]] = {}
        converted = []
        for i, item in enumerate(items):
            modality, zoo_item, instruction = self._st_item(item, i)
            if instruction is not None and given_instruction is not None:
                raise InvalidInputError("a system turn and task_instruction= both give an instruction; pass one",
                                        index=i)
            converted.append(zoo_item)
            key = (modality or given_modality, instruction if instruction is not None else given_instruction)
            groups.setdefault(key, []).append(i)
        # The original pipelines end with their own L2 normalization where the card says so (pooled models);
        # models that pool themselves give their vectors as they are.
        normalize = self.card.normalize and self.card.pooling != "model"
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        for (modality, instruction), at in groups.items():
            textual = modality is None or modality in TEXT_MODALITIES
            try:
                got = self.embed([converted[i] for i in at], instruction, prompt_name=prompt_name,
                                 prompt=prompt if textual else None, modality=modality, batch_size=batch_size,
                                 normalize=normalize, progress=progress, **options)
            except InvalidInputError as exc:  # name the caller's index, not the index within its group
                if exc.index is None or not 0 <= exc.index < len(at) or len(at) == len(items):
                    raise
                message = str(exc).removeprefix(f"input[{exc.index}]: ")
                raise _with_index(exc, message, at[exc.index]) from exc
            out[at] = got.vectors
        return out

    # -- sentence-transformers' input forms ------------------------------------------------------
    def _st_as(self, modality: str, item: Any, index: int, form: str) -> tuple[str, Any]:
        """``item`` tagged with ``modality`` (text: the model's text-like modality), or the error naming ``form``."""
        if modality == "text" and "text" not in self.modalities and "code" in self.modalities:
            modality = "code"
        if modality not in self.modalities:
            raise InvalidInputError(f"{form}: {self.name} does not embed {modality} (it embeds "
                                    f"{', '.join(self.modalities)})", index=index)
        return modality, item

    def _st_item(self, item: Any, index: int) -> tuple[str | None, Any, str | None]:
        """(modality or None to infer, the zoo's item, instruction or None) for one sentence-transformers input."""
        if type(item).__module__.startswith("PIL."):
            return (*self._st_as("image", item, index, "a PIL image"), None)
        if _is_message(item):
            return self._st_messages([item], index)
        if isinstance(item, list) and item and _is_message(item[0]):
            return self._st_messages(item, index)
        if isinstance(item, dict):
            return (*self._st_dict(item, index), None)
        if isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(x, str) for x in item):
            raise InvalidInputError("a text pair: pairs are for cross-encoders; pass each text as its own input",
                                    index=index)
        return None, item, None

    def _st_dict(self, item: dict, index: int) -> tuple[str, Any]:
        if "array" in item:
            if "sampling_rate" in item:
                return self._st_as("audio", _audio_pair(item, index), index, "an audio dict")
            if "video_metadata" in item:
                raise InvalidInputError(f"video input: {self.name} does not embed video", index=index)
            raise InvalidInputError("a dict with 'array' needs 'sampling_rate' (audio)", index=index)
        keys = sorted(map(str, item))
        if not keys:
            raise InvalidInputError("an empty dict is not an input", index=index)
        unknown = [k for k in keys if k not in ST_DICT_KEYS]
        if unknown:
            raise InvalidInputError(f"a dict with key(s) {unknown}: an input dict has keys from {list(ST_DICT_KEYS)}",
                                    index=index)
        if "video" in keys:
            raise InvalidInputError(f"video input: {self.name} does not embed video", index=index)
        for key, value in item.items():
            if isinstance(value, (list, tuple)) and not (key == "audio" and _is_audio_pair(value)):
                raise InvalidInputError(f"a list under {key!r} (several {key}s in one input) is not supported; pass "
                                        "each as its own input", index=index)
        if keys == ["text"]:
            return self._st_as("text", item["text"], index, "a {'text'} dict")
        if keys == ["image"]:
            return self._st_as("image", item["image"], index, "an {'image'} dict")
        if keys == ["audio"]:
            audio = item["audio"]
            audio = _audio_pair(audio, index) if isinstance(audio, dict) else audio
            return self._st_as("audio", audio, index, "an {'audio'} dict")
        if keys == ["image", "text"]:
            return self._interleaved(item.get("image"), item.get("text"), index, "an {'image', 'text'} dict")
        shown = "{" + ", ".join(map(repr, keys)) + "}"
        raise InvalidInputError(f"a {shown} dict: {self.name} cannot embed {' and '.join(keys)} as one input",
                                index=index)

    def _interleaved(self, image: Any, text: Any, index: int, form: str) -> tuple[str, Any]:
        if "interleaved" not in self.modalities:
            raise InvalidInputError(f"{form} (an image and a text as one input): {self.name} does not embed the two "
                                    f"as one input (it embeds {', '.join(self.modalities)}); pass them as two inputs",
                                    index=index)
        return "interleaved", {"image": image, "text": text}

    def _st_messages(self, messages: list, index: int) -> tuple[str, Any, str | None]:
        """One conversation: an optional system turn (the instruction) and one user turn (the input)."""
        for m in messages:
            if not _is_message(m):
                raise InvalidInputError("chat messages must all be {'role': ..., 'content': ...} dicts", index=index)
        roles = [m["role"] for m in messages]
        system = None
        if roles[0] == "system":
            system = _message_text(messages[0]["content"], index)
            messages = messages[1:]
        if [m["role"] for m in messages] != ["user"]:
            raise InvalidInputError(f"chat messages with roles {roles}: only one user turn, after an optional system "
                                    "turn, is supported", index=index)
        if system is not None and not self.card.uses_instructions:
            raise InvalidInputError(f"chat messages with a system turn: {self.name} takes no task instructions (a "
                                    "system turn is read as one)", index=index)
        content = messages[0]["content"]
        text = image = None
        if isinstance(content, str):
            text = content
        elif isinstance(content, list):
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind not in ("text", "image"):
                    raise InvalidInputError(f"chat messages with {kind or type(part).__name__!r} content: a user turn "
                                            "holds 'text' and 'image' parts", index=index)
                if kind not in part:
                    raise InvalidInputError(f"a {kind!r} part needs its value under {kind!r}", index=index)
                if (text if kind == "text" else image) is not None:
                    raise InvalidInputError(f"chat messages with several {kind} parts: one of each is supported",
                                            index=index)
                if kind == "text":
                    text = part["text"]
                else:
                    image = part["image"]
        else:
            raise InvalidInputError(f"a user turn's content is a text or a list of parts, not "
                                    f"{type(content).__name__}", index=index)
        if text is not None and image is not None:
            return (*self._interleaved(image, text, index, "chat messages with an image and a text"), system)
        if image is not None:
            return (*self._st_as("image", image, index, "chat messages with an image"), system)
        if text is not None:
            return (*self._st_as("text", text, index, "chat messages"), system)
        raise InvalidInputError("chat messages with an empty user turn", index=index)

    @_serialized
    def similarity(self, a: Any, b: Any) -> Any:
        """sentence-transformers' ``model.similarity``: the (len(a), len(b)) matrix by the card's metric.

        ``a`` and ``b`` are what :meth:`encode` or :meth:`embed` gave: arrays, torch tensors, or
        Embeddings (one vector is one row). Torch tensors in give a torch tensor out; otherwise a
        numpy matrix (:func:`zoo.similarity`'s). Embeddings keep their own rules: their space
        (stitches), and Hamming similarity for binary codes (see :func:`zoo.similarity`).
        """
        from zoo.embeddings import similarity as _similarity

        as_torch = any(type(x).__module__.startswith("torch") for x in (a, b))
        a, b = _as_numpy(a), _as_numpy(b)
        quantized = any(isinstance(x, Embeddings) and x.precision in ("binary", "ubinary") for x in (a, b))
        both = isinstance(a, Embeddings) and isinstance(b, Embeddings)
        out = _similarity(a, b, metric=None if quantized or both else self.card.similarity)
        if as_torch:
            import torch

            return torch.from_numpy(np.array(out))
        return out


#: The keys of sentence-transformers 6's multimodal input dicts.
ST_DICT_KEYS = ("audio", "image", "text", "video")


def _is_message(x: Any) -> bool:
    return isinstance(x, dict) and "role" in x and "content" in x


def _is_audio_pair(x: Any) -> bool:
    return (isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], numbers.Integral) and not isinstance(x[1], bool)
            and getattr(x[0], "ndim", 0) >= 1)


def _st_singular(inputs: Any) -> bool:
    """Whether ``inputs`` is one input, as sentence-transformers decides: a list or tuple is a batch (but a
    conversation, a list of message dicts, is one input; so is the zoo's (waveform, sample_rate) pair), as is a
    numpy array of strings or objects and any iterator; anything else is one input."""
    if isinstance(inputs, list) and inputs and _is_message(inputs[0]):
        return True
    if _is_audio_pair(inputs):
        return True
    if isinstance(inputs, (list, tuple, Iterator)):
        return False
    return not (isinstance(inputs, np.ndarray) and inputs.ndim >= 1 and inputs.dtype.kind in "UO")


def _audio_pair(item: Any, index: int) -> tuple:
    """sentence-transformers' ``{"array": ..., "sampling_rate": ...}`` as the zoo's (waveform, sample_rate)."""
    if not isinstance(item, dict) or "array" not in item or "sampling_rate" not in item:
        raise InvalidInputError("an audio dict needs 'array' and 'sampling_rate'", index=index)
    rate = item["sampling_rate"]
    if isinstance(rate, bool) or not isinstance(rate, numbers.Integral):
        raise InvalidInputError(f"sampling_rate must be an integer, not {rate!r:.40}", index=index)
    return _as_numpy(item["array"]), int(rate)


def _message_text(content: Any, index: int) -> str:
    """A system turn's text: a string, or a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" and isinstance(
            p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    raise InvalidInputError("a system turn holds text only", index=index)


def _as_numpy(x: Any) -> Any:
    """A torch tensor as a numpy array (on the CPU, float32 for the float types numpy lacks); the rest as it is."""
    if type(x).__module__.startswith("torch") and hasattr(x, "detach"):
        x = x.detach().cpu()
        if x.is_floating_point() and str(x.dtype) not in ("torch.float16", "torch.float32", "torch.float64"):
            x = x.float()
        return x.numpy()
    return x


def _device_of(model: Any) -> str:
    """The device ``model`` computes on, as a string: its own or its backend's ``device``, else the ``device``
    it was loaded with (every adapter's default is the CPU)."""
    for owner in (model, getattr(model, "backend", None)):
        device = getattr(owner, "device", None)
        if device is not None:
            return str(device)
    return str(getattr(model, "_load_device", None) or "cpu")


def _same_device(a: Any, b: Any) -> bool:
    """Whether two device names mean one device ("cuda" is "cuda:0")."""
    def parts(d: Any) -> tuple[str, int]:
        kind, _, index = str(d).partition(":")
        return kind, int(index) if index.isdigit() else 0

    return parts(a) == parts(b)


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
