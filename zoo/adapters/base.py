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

Where the shared machinery lives: ``_calls`` (the call lock, across threads and forks), ``_progress``
(``EmbedContext`` and the progress bar), ``_inputs`` (items and prompts), ``_cached`` (``embed(cache=...)``),
``_st_calls`` and ``_st_inputs`` (sentence-transformers' ``encode`` and ``similarity``, its input forms).
"""

from __future__ import annotations

import inspect
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo._memory import release_memory
from zoo.adapters._cached import CachedEmbedMixin
from zoo.adapters._calls import SERIALIZED_CALLS as SERIALIZED_CALLS
from zoo.adapters._calls import CallLockMixin, _live, _serialized
from zoo.adapters._inputs import TEXT_MODALITIES, as_item_list, format_prompt
from zoo.adapters._progress import _UNITS, EmbedContext, progress_bar
from zoo.adapters._st_calls import ENCODE_EXTRA_OPTIONS as ENCODE_EXTRA_OPTIONS
from zoo.adapters._st_calls import SentenceTransformersMixin
from zoo.adapters._st_inputs import ST_DICT_KEYS as ST_DICT_KEYS
from zoo.catalog.modelcard import ModelCard
from zoo.catalog.sources import Resolved
from zoo.embeddings import PRECISIONS, Embeddings, l2_normalize, quantize, truncate_dim
from zoo.errors import InvalidInputError

if TYPE_CHECKING:
    from zoo.data.cache import EmbeddingCache


#: ``zoo.load``'s own keywords (the rest go to the adapter).
LOADER_OPTIONS = ("path", "download", "trust_remote_code", "prompts", "default_prompt_name")


class BaseEmbedder(CallLockMixin, CachedEmbedMixin, SentenceTransformersMixin):
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
