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
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from zoo._memory import release_memory
from zoo.adapters.base import BaseEmbedder, EmbedContext
from zoo.errors import InputTooLargeError, InvalidInputError
from zoo.modelcard import ModelCard
from zoo.sources import Resolved, check_format

#: The longest text (in characters) the zoo will tokenize; longer items are refused.
MAX_TEXT_CHARS = 4_000_000
DEFAULT_TOKEN_BUDGET = 4096
DEFAULT_MAX_ROWS = 64
#: Texts tokenized, sorted and embedded per chunk; bounds memory for long lists.
CHUNK = 8192

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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
    return item


def check_texts(inputs: list) -> list[str]:
    """Every item must be a str of sane size; errors name the index. Empty strings are fine."""
    return [check_text(item, i) for i, item in enumerate(inputs)]


def torch_settings(embedder: BaseEmbedder, device: str, compute_dtype: str) -> tuple[torch.device, torch.dtype]:
    """The device and compute dtype an adapter runs in; warns once where bf16 has no CPU support."""
    if compute_dtype not in _DTYPES:
        raise InvalidInputError(f"compute_dtype must be one of {sorted(_DTYPES)}, not {compute_dtype!r}")
    dev, dtype = torch.device(device), _DTYPES[compute_dtype]
    if dtype is torch.bfloat16 and dev.type == "cpu" and not cpu_has_bf16():
        embedder.warn_once("bf16", "this CPU has no native bf16 (avx512_bf16/amx); bf16 compute will be slow")
    return dev, dtype


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Pool token states (B, L, H) with the attention mask (B, L) into (B, H)."""
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


class TextEmbedder(BaseEmbedder):
    """Transformer text encoder with card-driven pooling, prompts and input format."""

    def __init__(
        self,
        card: ModelCard,
        resolved: Resolved,
        *,
        device: str = "cpu",
        compute_dtype: str = "float32",
        trust_remote_code: bool = False,
        **options: Any,
    ):
        super().__init__(card, resolved, **options)
        from transformers import AutoModel, AutoTokenizer

        self.device, self.compute_dtype = torch_settings(self, device, compute_dtype)
        check_format(resolved.path, card)
        opts = card.options
        self.padding_side = opts.get("padding_side", "right")
        self.append_eos = bool(opts.get("append_eos", False))
        self.token_budget = int(opts.get("token_budget", DEFAULT_TOKEN_BUDGET))
        self.max_rows = int(opts.get("max_rows", DEFAULT_MAX_ROWS))
        path = str(resolved.path)
        remote = {"trust_remote_code": trust_remote_code}
        if trust_remote_code and opts.get("code_revision"):
            remote["code_revision"] = opts["code_revision"]  # pin code that lives in another repo
        self.tokenizer = AutoTokenizer.from_pretrained(path, **remote)
        with quiet_transformers():
            self.model = AutoModel.from_pretrained(
                path, use_safetensors=card.weights_format == "safetensors", dtype=self.compute_dtype, **remote
            )
        self.model.eval().to(self.device)
        self.max_tokens = card.max_tokens or int(min(self.tokenizer.model_max_length, 512))
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        # The token the model ends on, where it is not the tokenizer's eos (Qwen3-Embedding: <|endoftext|>).
        eos_token = opts.get("eos_token")
        self.eos_id = self.tokenizer.convert_tokens_to_ids(eos_token) if eos_token else self.tokenizer.eos_token_id
        if self.append_eos and self.eos_id is None:
            raise InvalidInputError(f"{card.name}: card asks to append EOS but the tokenizer has none")
        template = opts.get("token_template")
        self.template: tuple[list[int], list[int]] | None = None
        if template:
            i = template.index("{input}")
            ids = self.tokenizer.convert_tokens_to_ids
            self.template = (ids(template[:i]), ids(template[i + 1 :]))

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
        elif self.append_eos:
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
    def _pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        longest = max(len(r) for r in rows)
        ids = np.full((len(rows), longest), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), longest), dtype=np.int64)
        for j, r in enumerate(rows):
            if self.padding_side == "left":
                ids[j, longest - len(r) :], mask[j, longest - len(r) :] = r, 1
            else:
                ids[j, : len(r)], mask[j, : len(r)] = r, 1
        return torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device)

    @torch.inference_mode()
    def forward_ids(self, rows: list[list[int]]) -> torch.Tensor:
        """Embed one batch of token id lists; returns float32 (B, D) before normalization."""
        input_ids, mask = self._pad(rows)
        out = self.model(input_ids=input_ids, attention_mask=mask)
        if self.card.pooling == "model":
            emb = out if torch.is_tensor(out) else out[0]
        else:
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
            emb = pool(hidden, mask, self.card.pooling)
        return emb.float()

    def _infer_modality(self, inputs: list) -> str:
        return "text" if "text" in self.modalities else self.modalities[0]  # code and text are both strings

    def _check(self, inputs: list, modality: str) -> list:
        return check_texts(inputs)

    def _encode(self, items: list, modality: str, ctx: EmbedContext) -> np.ndarray:
        out = np.empty((len(items), self.dim), dtype=np.float32)
        max_rows = ctx.batch_size or self.max_rows
        bar = None
        if ctx.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(items), desc=f"embed {self.name}", unit="text")
        if not ctx.truncate:  # find an over-long item before any forward pass is spent
            for start in range(0, len(items), CHUNK):
                self.tokenize(items[start : start + CHUNK], ctx, offset=start)
        for start in range(0, len(items), CHUNK):
            ids = self.tokenize(items[start : start + CHUNK], ctx, offset=start)
            for batch in length_batches([len(r) for r in ids], token_budget=self.token_budget, max_rows=max_rows):
                emb = self.forward_ids([ids[i] for i in batch])
                out[[start + i for i in batch]] = emb.cpu().numpy()
                if ctx.low_memory:
                    release_memory()
                if bar is not None:
                    bar.update(len(batch))
        if bar is not None:
            bar.close()
        return out
