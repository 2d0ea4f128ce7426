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

The network behind the tokenizer is a small backend (:mod:`zoo.adapters.text_backends`) picked by the
card's ``weights_format``:
``TorchBackend`` runs transformers' ``AutoModel`` (safetensors, or remote code); ``OnnxBackend``
runs an ONNX export with onnxruntime on the CPU. Both take the same padded numpy batch and
return pooled float32 vectors, so tokenization, batching, truncation and errors are shared.
The ONNX path pools in numpy and never imports torch (transformers 5's ``AutoTokenizer``
imports it, so that path loads the tokenizer class its folder names instead). Where a
package ships the ONNX file without its tokenizer, ``options.tokenizer`` names the installed
package folder that holds it, with the sha256 of every file read from there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo._memory import release_memory
from zoo.adapters import guards
from zoo.adapters.base import BaseEmbedder, EmbedContext
from zoo.adapters.text_backends import (  # noqa: F401 - the backends' names are also importable from here
    OnnxBackend,
    TorchBackend,
    backend_for,
    cpu_has_bf16,
    load_tokenizer,
    pool,
    pool_numpy,
    quiet_transformers,
    tokenizer_folder,
    torch_settings,
    usable_cpus,
)
from zoo.catalog.modelcard import ModelCard
from zoo.catalog.sources import Resolved
from zoo.errors import InputTooLargeError, InvalidInputError

if TYPE_CHECKING:
    pass

#: The longest text (in characters) the zoo will tokenize; longer items are refused.
MAX_TEXT_CHARS = 4_000_000
DEFAULT_TOKEN_BUDGET = 4096
DEFAULT_MAX_ROWS = 64
#: Texts tokenized, sorted and embedded per chunk; bounds memory for long lists.
CHUNK = 8192


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
