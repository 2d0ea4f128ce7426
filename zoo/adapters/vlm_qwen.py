"""Qwen-VL backbones for ``zoo.adapters.vlm``: VLM2Vec on Qwen2-VL, and Qwen3-VL-Embedding.

See ``zoo.adapters.vlm_backbones`` for what a backbone does and how each one treats its inputs.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from zoo.adapters.vlm_backbones import Backbone, pad_tokens, pil_processor
from zoo.adapters.vlm_inputs import Prepared, VLMItem, positions
from zoo.errors import CardError, InvalidInputError


class Qwen2VL(Backbone):
    """VLM2Vec on Qwen2-VL (base + merged LoRA/DoRA adapter)."""

    def __init__(self, emb: Any, path: str, **kw: Any):
        super().__init__(emb, path, **kw)
        from transformers import AutoImageProcessor, AutoTokenizer, Qwen2VLForConditionalGeneration

        from zoo.adapters.lora import merge_adapter, read_adapter, resolve_adapter

        adapter = None
        if emb.card.hub_role("adapter"):  # find and read the adapter before the base weights are loaded
            folder = resolve_adapter(emb.card, path=self.lora_path)
            adapter = read_adapter(folder, allow_pickle=self.opts.get("lora_weights_format") == "torch-weights-only")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        # The hub's preprocessor_config.json has top-level min_pixels/max_pixels, which win over ``size`` in
        # transformers 5; the card's range is passed as those keys so that it replaces the file's.
        pixels = {"min_pixels": int(self.opts.get("min_pixels", 28 * 28 * 4)),
                  "max_pixels": int(self.opts.get("max_pixels", 28 * 28 * 1280))}
        self.image_processor = AutoImageProcessor.from_pretrained(path, backend="pil", **pixels)
        if (self.image_processor.size.shortest_edge, self.image_processor.size.longest_edge) != tuple(pixels.values()):
            raise CardError(f"{emb.card.name}: could not set the image processor's pixel range to {pixels}")
        self.check_files(self.tokenizer, self.image_processor)
        dtype = torch.float32 if adapter else emb.compute_dtype  # merge in float32, then cast
        model = self.load(Qwen2VLForConditionalGeneration, dtype=dtype, use_safetensors=True)
        if adapter:
            rename = [tuple(rule) for rule in self.opts.get("lora_rename", [])]
            emb.lora_modules = merge_adapter(model, *adapter, rename=rename)
            model.to(emb.compute_dtype)
        self.model = model.model
        self.hidden_size = model.config.text_config.hidden_size
        self.image_token = self.opts.get("image_token", "<|image_pad|>")
        self.image_id = self.tokenizer.convert_tokens_to_ids(self.image_token)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.merge = int(self.image_processor.merge_size)
        self.factor = int(self.image_processor.patch_size) * self.merge
        self.pixels = (pixels["min_pixels"], pixels["max_pixels"])
        self.min_side = int(self.opts.get("min_image_side", 28))

    def prepare(self, item: VLMItem, index: int) -> Prepared:
        prompt, extras = item.prompt, {}
        self.check_tokens(prompt, self.image_token, item.image is not None, index)
        if item.image is not None:
            from PIL import Image

            image = item.image
            if image.width < self.min_side or image.height < self.min_side:
                image = image.resize((2 * self.min_side, 2 * self.min_side), Image.Resampling.BICUBIC)
            h, w = vlm2vec_size(image.height, image.width, self.factor, *self.pixels)
            image = image.resize((w, h), Image.Resampling.BICUBIC)  # what the processor's PIL backend does
            try:
                enc = self.image_processor(images=[image], do_resize=False, return_tensors="pt")
            except ValueError as exc:
                raise InvalidInputError(f"image cannot be processed: {exc}", index=index) from exc
            extras = {"pixel_values": enc["pixel_values"], "image_grid_thw": enc["image_grid_thw"]}
            count = int(enc["image_grid_thw"].prod()) // self.merge**2
            prompt = prompt.replace(self.image_token, self.image_token * count)
        ids = self.tokenizer(prompt)["input_ids"] or [self.pad_id]
        return Prepared(ids, extras, item.image is not None)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor, batch: list[Prepared]) -> torch.Tensor:
        pixels = self.cat(batch, "pixel_values", self.model.visual.dtype)
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions(mask), use_cache=False,
                         pixel_values=pixels, image_grid_thw=self.cat(batch, "image_grid_thw"))
        return out.last_hidden_state


def vlm2vec_size(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Target (height, width) as VLM2Vec's own copy of the Qwen2-VL image processor computes it.

    transformers' ``smart_resize`` raises for an aspect ratio over 200 and clamps the scaled-down
    sides to at least ``factor``; VLM2Vec's copy (src/model/vlm_backbone/qwen2_vl) instead makes
    an image with a side under ``factor`` or a ratio over 200 square (both sides the longer one)
    and has no clamp. Both round to multiples of ``factor``, then floor into ``max_pixels`` or
    ceil up to ``min_pixels``; for ordinary images the two agree.
    """
    if height < factor or width < factor or max(height, width) / min(height, width) > 200:
        height = width = max(factor, height, width)
    h = round(height / factor) * factor
    w = round(width / factor) * factor
    h, w = _within_budget(height, width, h, w, factor, min_pixels, max_pixels)
    return h, w


def _within_budget(height: int, width: int, h: int, w: int, factor: int, min_pixels: int,
                   max_pixels: int) -> tuple[int, int]:
    """The pixel-budget step both upstream ``smart_resize`` copies share: rounded sides ``h, w`` of a
    ``height x width`` image scaled down (floor) over ``max_pixels`` or up (ceil) under ``min_pixels``."""
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        return math.floor(height / beta / factor) * factor, math.floor(width / beta / factor) * factor
    if h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        return math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h, w


def fetch_size(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Target (height, width) as ``qwen_vl_utils.smart_resize`` (Qwen3-VL's) computes it, to the letter.

    Over an aspect ratio of 200 it raises; the first rounding is clamped to at least ``factor``,
    the scaled-down sides are not (an extreme strip can then floor to zero, which upstream's
    resize fails on: raised here as ValueError).
    """
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio {max(height, width) / min(height, width):.0f} is over 200")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    h, w = _within_budget(height, width, h, w, factor, min_pixels, max_pixels)
    if h < 1 or w < 1:
        raise ValueError(f"a {width}x{height} image scales to {w}x{h} pixels under max_pixels {max_pixels}")
    return h, w


class Qwen3VL(Backbone):
    """Qwen3-VL-Embedding: Qwen3VLModel, the checkpoint's chat template, last token."""

    token_extras = ("mm_token_type_ids",)

    def __init__(self, emb: Any, path: str, **kw: Any):
        super().__init__(emb, path, **kw)
        from transformers import Qwen3VLModel

        self.processor = pil_processor(path)
        self.check_files(self.processor.tokenizer, self.processor, chat=True)
        self.model = self.load(Qwen3VLModel, use_safetensors=True)
        self.hidden_size = self.model.config.text_config.hidden_size
        tok = self.processor.tokenizer
        self.image_token = "<|image_pad|>"
        self.image_id = tok.convert_tokens_to_ids(self.image_token)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        ip = self.processor.image_processor
        self.factor = int(ip.patch_size) * int(ip.merge_size)
        self.pixels = (int(self.opts.get("min_pixels", 4096)), int(self.opts.get("max_pixels", 1843200)))

    def render(self, prompt: Any) -> str:
        return self.processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)

    def prepare(self, item: VLMItem, index: int) -> Prepared:
        text = self.render(item.prompt)
        self.check_tokens(text, self.image_token, item.image is not None, index)
        images = None
        if item.image is not None:
            try:
                h, w = fetch_size(item.image.height, item.image.width, self.factor, *self.pixels)
            except ValueError as exc:
                raise InvalidInputError(f"image cannot be processed: {exc}", index=index) from exc
            from PIL import Image

            images = [item.image.resize((w, h), Image.Resampling.BICUBIC)]
        enc = self.processor(text=[text], images=images, do_resize=False, return_tensors="pt")
        extras = {"mm_token_type_ids": enc["mm_token_type_ids"][0]}
        if images:
            extras.update(pixel_values=enc["pixel_values"], image_grid_thw=enc["image_grid_thw"])
        return Prepared(enc["input_ids"][0].tolist(), extras, images is not None)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor, batch: list[Prepared]) -> torch.Tensor:
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": mask, "use_cache": False}
        if any(p.has_image for p in batch):  # the model computes its 3-D rope positions from the mask
            types = pad_tokens([p.extras["mm_token_type_ids"] for p in batch], input_ids.shape[1],
                               self.emb.padding_side)
            kwargs.update(pixel_values=self.cat(batch, "pixel_values", self.model.visual.dtype),
                          image_grid_thw=self.cat(batch, "image_grid_thw"),
                          mm_token_type_ids=types.to(input_ids.device))
        else:
            kwargs["position_ids"] = positions(mask)
        return self.model(**kwargs).last_hidden_state
