"""Image-text dual encoders on Hugging Face transformers: SigLIP and SigLIP 2 (fixed resolution) cards.

CLIPModel takes the same calls (``padding = "longest"`` suits it); no card uses it yet and it is untested here.

The model, its image processor and its tokenizer all come from the snapshot folder. Vectors are the pooled
outputs of ``get_image_features`` / ``get_text_features`` (transformers 5 returns a ``BaseModelOutputWithPooling``
whose ``pooler_output`` is the embedding), L2-normalized by the base class.

Card options (``[options]``):

- ``text_max_length`` (default: the card's ``max_tokens``, else 64) and ``text_padding`` (default
  ``"max_length"``): SigLIP pools the last position, which is padding for short texts, and was trained on texts
  padded to 64 tokens, so texts must be padded exactly so (``"longest"`` suits CLIPModel, which pools at EOS);
- ``lowercase`` (default false): lower-case texts before tokenizing. SigLIP 2 was trained on lower-cased text but
  its hub tokenizer (plain GemmaTokenizer) does not lower-case;
- the tokenizer's own settings (padding side, special tokens, whether it returns an attention mask) are used as
  the snapshot states them.

Images are decoded by ``zoo.images`` and run through the image processor in the thread pipeline of
``zoo.adapters.clip``. The tokenizer loads on first text use: SigLIP's sentencepiece tokenizer needs the
sentencepiece package, and images embed without it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.adapters import guards
from zoo.adapters.base import BaseEmbedder, EmbedContext
from zoo.adapters.clip import DEFAULT_IMAGE_BATCH, check_images, decode, default_workers, prepared_batches
from zoo.adapters.text import check_texts
from zoo.adapters.text_backends import quiet_transformers
from zoo.catalog.modelcard import ModelCard
from zoo.catalog.sources import Resolved, check_format
from zoo.errors import InputTooLargeError, InvalidInputError, MissingDependencyError, WeightsUnavailableError

DEFAULT_TEXT_BATCH = 64
TEXT_INPUTS = ("input_ids", "attention_mask", "position_ids")


def pooled(out: Any) -> torch.Tensor:
    """The embedding from a ``get_*_features`` result: ``pooler_output`` in transformers 5, the tensor in 4."""
    return out if torch.is_tensor(out) else out.pooler_output


class TextTower:
    """The text side of a transformers two-tower model (CLIP-like, CLAP): length checks and batched features.

    The class using it provides ``tokenizer``, ``max_length``, ``tokenize(texts)`` (the padded
    model inputs), ``model`` (with ``get_text_features``), ``device``, ``dim``, ``name`` and
    ``warn_once``.
    """

    def _check_lengths(self, texts: list[str], ctx: EmbedContext) -> None:
        with quiet_transformers():
            lengths = [len(ids) for ids in self.tokenizer(texts, truncation=False)["input_ids"]]
        cut = [i for i, n in enumerate(lengths) if n > self.max_length]
        if not cut:
            return
        if not ctx.truncate:
            raise InputTooLargeError(f"text is {lengths[cut[0]]} tokens, over {self.name}'s limit of "
                                     f"{self.max_length} (pass truncate=True to cut it)", index=cut[0],
                                     limit=self.max_length)
        ctx.info["truncated"] = len(cut)
        self.warn_once("truncate", f"texts longer than {self.max_length} tokens are truncated to fit")

    @torch.inference_mode()
    def _encode_texts(self, texts: list[str], ctx: EmbedContext) -> np.ndarray:
        self._check_lengths(texts, ctx)
        size = ctx.batch_size or DEFAULT_TEXT_BATCH
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), size):
            inputs = {k: v.to(self.device) for k, v in self.tokenize(texts[start : start + size]).items()}
            out[start : start + size] = pooled(self.model.get_text_features(**inputs)).float().cpu().numpy()
        return out


class HFCLIPEmbedder(TextTower, BaseEmbedder):
    """A transformers dual encoder (SiglipModel, CLIPModel). A list of str is text, anything else images.

    Options (keyword-only): ``device``, ``workers`` (image preprocessing threads, default min(4, CPUs)).
    """

    def __init__(self, card: ModelCard, resolved: Resolved, *, device: str = "cpu", workers: int | None = None,
                 trust_remote_code: bool = False, **options: Any):
        super().__init__(card, resolved, **options)
        from transformers import AutoImageProcessor, AutoModel

        folder = Path(resolved.path)
        check_format(folder, card)
        self.device = torch.device(device)
        self.workers = default_workers() if workers is None else int(workers)
        with quiet_transformers():
            model = guards.from_pretrained(AutoModel, folder, card, dtype=torch.float32,
                                           use_safetensors=card.weights_format == "safetensors")
        if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
            raise WeightsUnavailableError(f"{card.name}: {type(model).__name__} in {folder} is not an image-text "
                                          "dual encoder (no get_image_features / get_text_features)")
        self.model = model.eval().to(self.device)
        self.image_processor = AutoImageProcessor.from_pretrained(str(folder))
        guards.check_processor(card, self.image_processor, folder)
        opts = card.options
        self.max_length = int(opts.get("text_max_length", card.max_tokens or 64))
        self.padding = opts.get("text_padding", "max_length")
        if self.padding not in ("max_length", "longest"):
            raise InvalidInputError(f"{card.name}: options.text_padding must be 'max_length' or 'longest'")
        self.lowercase = bool(opts.get("lowercase", False))
        self._tokenizer = None

    @property
    def tokenizer(self):
        """The snapshot's tokenizer, loaded on first use (SigLIP's needs the sentencepiece package)."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(str(self.resolved.path))
            except (ImportError, ValueError, AttributeError, TypeError) as exc:
                spm = (Path(self.resolved.path) / "spiece.model").is_file()
                if spm and importlib.util.find_spec("sentencepiece") is None:
                    raise MissingDependencyError("sentencepiece", "vision", f"{self.name}'s text tokenizer") from exc
                raise
            guards.check_tokenizer(self.card, self._tokenizer, self.resolved.path)
        return self._tokenizer

    # -- hooks -------------------------------------------------------------------------------------------------------
    def logit_params(self) -> tuple[float, float]:
        """(scale, bias) of the model's image-text logits: ``exp(logit_scale)`` and SigLIP's ``logit_bias`` (0 for
        CLIP), so that ``scale * cosine + bias`` is the logit the model was trained with."""
        scale = float(self.model.logit_scale.exp())
        bias = getattr(self.model, "logit_bias", None)
        return scale, float(bias) if bias is not None else 0.0

    def _infer_modality(self, inputs: list) -> str:
        return "text" if all(isinstance(x, str) for x in inputs) else "image"

    def _check(self, inputs: list, modality: str) -> list:
        return check_texts(inputs) if modality == "text" else check_images(inputs)

    def _apply_prompts(self, items: list, modality: str, ctx: EmbedContext) -> list:
        items = super()._apply_prompts(items, modality, ctx)
        if modality == "text" and self.lowercase:
            ctx.info["lowercased"] = True
            return [t.lower() for t in items]
        return items

    def _encode(self, items: list, modality: str, ctx: EmbedContext) -> np.ndarray:
        if modality == "text":
            return self._encode_texts(items, ctx)
        return self._encode_images(items, ctx)

    # -- images ------------------------------------------------------------------------------------------------------
    def _prepare(self, index: int, item: Any) -> torch.Tensor:
        return self.image_processor(images=decode(item, index), return_tensors="pt")["pixel_values"][0]

    @torch.inference_mode()
    def _encode_images(self, items: list, ctx: EmbedContext) -> np.ndarray:
        out, row = np.empty((len(items), self.dim), dtype=np.float32), 0
        for batch in prepared_batches(items, self._prepare, batch_size=ctx.batch_size or DEFAULT_IMAGE_BATCH,
                                      workers=self.workers):
            emb = pooled(self.model.get_image_features(pixel_values=batch.to(self.device)))
            out[row : row + len(emb)] = emb.float().cpu().numpy()
            row += len(emb)
        return out

    # -- texts -------------------------------------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """The model's text inputs for ``texts`` (which embed() has already prompted and lower-cased)."""
        enc = self.tokenizer(texts, padding=self.padding, max_length=self.max_length, truncation=True,
                             return_tensors="pt")
        return {k: enc[k] for k in TEXT_INPUTS if k in enc}
