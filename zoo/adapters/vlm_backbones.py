"""The backbones behind ``zoo.adapters.vlm``: how each model family tokenizes, sees images and runs.

Every backbone turns one prompted item into token ids plus its image tensors (``prepare``), and
runs a padded batch to the last layer's hidden states (``forward``). Images are processed one
item at a time, as the original pipelines do, then concatenated per batch.

- ``Qwen2VL`` (VLM2Vec on Qwen2-VL-2B; ``vlm_qwen``): Qwen2-VL image processor (PIL backend,
  bicubic) with the card's ``min_pixels`` / ``max_pixels``; an image under 28 px on a side is first
  resized to 56x56, as VLM2Vec's ``Qwen2_VL_process_fn`` does; the prompt's one image token is
  expanded to ``t*h*w / merge_size**2`` copies. VLM2Vec's prompts carry no ``<|vision_start|>``,
  so the original's rope index (which finds images through that token) gives every token plain
  1-D positions; transformers 5 would give image tokens 3-D positions instead, so the zoo passes
  the original's 1-D positions explicitly (padding-independent). A LoRA/DoRA adapter named by
  the card is merged at load.
- ``Qwen3VL`` (Qwen3-VL-Embedding; ``vlm_qwen``): images resized as ``qwen_vl_utils.fetch_image`` does
  (factor patch*merge = 32, the card's min/max pixels, bicubic), then processed with
  ``do_resize=False``; 3-D rope positions from the model, as in the original.
- ``Mllama`` (mmE5; ``vlm_mllama``): the Mllama processor per item (``images=[[img]]``, nested), text-only and
  image rows in separate batches; explicit mask-aware positions so left padding changes nothing.
- ``Phi3V`` (VLM2Vec-Full; ``vlm_mllama``): the hub repo's own code (``trust_remote_code``), ``num_crops`` from
  the card, eager attention. Written after the original's loading code; not run here.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

from zoo.adapters import guards
from zoo.adapters.text_backends import quiet_transformers
from zoo.adapters.vlm_inputs import Prepared
from zoo.errors import CardError, InputTooLargeError, InvalidInputError


def pad_tokens(rows: list[torch.Tensor], length: int, side: str) -> torch.Tensor:
    """Stack per-token tensors (L_i, ...) into (B, length, ...), zero-padded on ``side``."""
    out = rows[0].new_zeros((len(rows), length, *rows[0].shape[1:]))
    for j, row in enumerate(rows):
        if side == "left":
            out[j, length - row.shape[0]:] = row
        else:
            out[j, : row.shape[0]] = row
    return out


def expand_tokens(text: str, replacements: dict[str, list[str]]) -> str:
    """Replace the occurrences of each placeholder, in order, by its next replacement (as processors expand one
    image or video token into as many as its pixels need)."""
    import re

    queues = {token: iter(values) for token, values in replacements.items() if values}
    if not queues:
        return text
    pattern = re.compile("|".join(re.escape(t) for t in sorted(queues, key=len, reverse=True)))
    return pattern.sub(lambda m: next(queues[m.group(0)]), text)


def pil_processor(path: str) -> Any:
    """The checkpoint's processor with its image processor on the PIL backend (the original's slow one)."""
    from transformers import AutoImageProcessor, AutoProcessor

    return AutoProcessor.from_pretrained(path, image_processor=AutoImageProcessor.from_pretrained(path, backend="pil"))


class Backbone:
    """Shared loading and truncation; subclasses set ``hidden_size``, ``pad_id`` and the hooks."""

    #: Run text-only and image rows in separate batches (processors that cannot mix them).
    separate_images = False
    #: Per-token extras, cut with the ids when an item is truncated.
    token_extras: tuple[str, ...] = ()
    #: Most images one item may hold (None: any number); whether an item may hold videos.
    max_images: int | None = 1
    takes_video = False

    def __init__(self, emb: Any, path: str, *, trust_remote_code: bool = False, lora_path: str | None = None):
        self.emb, self.path, self.opts = emb, path, emb.card.options
        self.trust_remote_code = trust_remote_code
        self.lora_path = lora_path

    def load(self, cls: Any, **kwargs: Any) -> Any:
        """The model, refused when its checkpoint lacks parameters (``guards.from_pretrained``)."""
        with quiet_transformers():
            model = guards.from_pretrained(cls, self.path, self.emb.card,
                                           dtype=kwargs.pop("dtype", self.emb.compute_dtype), **kwargs)
        return model.eval().to(self.emb.device)

    def check_files(self, tokenizer: Any, processor: Any = None, *, chat: bool = False) -> None:
        """Refuse a folder whose tokenizer, chat template or processor is missing or not the card's (before the
        weights are read: the guards in ``zoo.adapters.guards``)."""
        card = self.emb.card
        guards.check_tokenizer(card, tokenizer, self.path)
        if chat:
            guards.check_chat_template(card, processor if processor is not None else tokenizer, self.path)
        if processor is not None:
            guards.check_processor(card, processor, self.path)

    def render(self, prompt: Any) -> str:
        return prompt

    def is_image_id(self, token_id: int) -> bool:
        """An image's or a video's token (an item is never cut inside one)."""
        return token_id == self.image_id or token_id == getattr(self, "video_id", None)

    def check_tokens(self, prompt: str, token: str, count: int, index: int) -> None:
        """The prompt must hold ``token`` once per image (or video) of the item: a text holding it is refused."""
        if prompt.count(token) != int(count):
            raise InvalidInputError(f"text contains the reserved token {token!r}", index=index)

    def check_item(self, item: Any, index: int) -> None:
        """Refuse what this backbone cannot take: several images, a video."""
        name = self.emb.card.name
        if self.max_images is not None and len(item.of("image")) > self.max_images:
            raise InvalidInputError(f"{name} takes at most {self.max_images} image(s) an item, not "
                                    f"{len(item.of('image'))}", index=index)
        if item.of("video") and not self.takes_video:
            raise InvalidInputError(f"{name} takes no video", index=index)

    def truncate(self, prepared: Prepared, limit: int, index: int) -> Prepared:
        kept = prepared.ids[:limit]
        if sum(map(self.is_image_id, kept)) != sum(map(self.is_image_id, prepared.ids)):
            raise InputTooLargeError(f"the image alone needs more than {limit} tokens", index=index, limit=limit)
        extras = {k: (v[:limit] if k in self.token_extras else v) for k, v in prepared.extras.items()}
        return Prepared(kept, extras, prepared.has_image)

    def cat(self, batch: list[Prepared], key: str, dtype: torch.dtype | None = None) -> torch.Tensor | None:
        parts = [p.extras[key] for p in batch if key in p.extras]
        if not parts:
            return None
        return torch.cat(parts).to(self.emb.device, dtype=dtype)


#: ``options.backbone`` -> "module:Class", imported on first use.
BACKBONES = {
    "qwen2_vl": "zoo.adapters.vlm_qwen:Qwen2VL",
    "qwen3_vl": "zoo.adapters.vlm_qwen:Qwen3VL",
    "mllama": "zoo.adapters.vlm_mllama:Mllama",
    "phi3_v": "zoo.adapters.vlm_mllama:Phi3V",
}


def backbone_class(key: str) -> type[Backbone]:
    """The backbone class a card's ``options.backbone`` names."""
    if key not in BACKBONES:
        raise CardError(f"options.backbone must be one of {sorted(BACKBONES)}, not {key!r}")
    module, _, name = BACKBONES[key].partition(":")
    return getattr(importlib.import_module(module), name)
