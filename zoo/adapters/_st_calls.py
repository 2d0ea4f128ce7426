"""sentence-transformers' calls on an embedder: ``encode`` and ``similarity``, on top of ``embed``.

Owns ``SentenceTransformersMixin`` (its keywords, defaults and return types; the options it refuses;
grouping a call's inputs by modality and instruction) and the device checks ``encode`` makes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from zoo.adapters._calls import _serialized
from zoo.adapters._inputs import TEXT_MODALITIES, _with_index
from zoo.adapters._st_inputs import STInputsMixin, _as_numpy, _st_singular
from zoo.embeddings import PRECISION_DTYPES, PRECISIONS, Embeddings, l2_normalize, quantize
from zoo.errors import InvalidInputError

#: The zoo's ``embed`` keywords that ``encode`` also takes (sentence-transformers' own come first in its signature).
ENCODE_EXTRA_OPTIONS = ("task_instruction", "modality", "truncate", "cache", "low_memory", "calibration")

_UNSET: Any = object()


class SentenceTransformersMixin(STInputsMixin):
    """sentence-transformers' ``encode`` and ``similarity`` (see :meth:`encode`)."""

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
