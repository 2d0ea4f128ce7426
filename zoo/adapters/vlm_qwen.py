"""Qwen-VL backbones for ``zoo.adapters.vlm``: VLM2Vec on Qwen2-VL, and Qwen3-VL-Embedding.

See ``zoo.adapters.vlm_backbones`` for what a backbone does and how each one treats its inputs.
"""

from __future__ import annotations

from typing import Any

import torch

from zoo.adapters.vlm_backbones import Backbone, expand_tokens, pad_tokens, pil_processor
from zoo.adapters.vlm_inputs import Prepared, VLMItem, positions
from zoo.adapters.vlm_sizes import fetch_size, vlm2vec_size
from zoo.adapters.vlm_video import qwen3_video, timestamps, vlm2vec_video
from zoo.errors import CardError, InvalidInputError


class Qwen2VL(Backbone):
    """VLM2Vec on Qwen2-VL (base + merged LoRA/DoRA adapter)."""

    max_images, takes_video = None, True

    def __init__(self, emb: Any, path: str, **kw: Any):
        super().__init__(emb, path, **kw)
        from transformers import (
            AutoImageProcessor,
            AutoTokenizer,
            Qwen2VLForConditionalGeneration,
            Qwen2VLVideoProcessor,
        )

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
        self.video_token = "<|video_pad|>"
        self.video_id = self.tokenizer.convert_tokens_to_ids(self.video_token)
        self.video_opts = dict(self.opts.get("video", {}))
        self.video_processor = video_processor(self.image_processor, Qwen2VLVideoProcessor)

    def prepare(self, item: VLMItem, index: int) -> Prepared:
        images, videos = item.of("image"), item.of("video")
        self.check_tokens(item.prompt, self.image_token, len(images), index)
        self.check_tokens(item.prompt, self.video_token, len(videos), index)
        extras: dict[str, torch.Tensor] = {}
        counts: dict[str, list[int]] = {self.image_token: [], self.video_token: []}
        if images:
            enc = self._images([self._fit(image) for image in images], index)
            extras.update(pixel_values=enc["pixel_values"], image_grid_thw=enc["image_grid_thw"])
            counts[self.image_token] = (enc["image_grid_thw"].prod(-1) // self.merge**2).tolist()
        if videos:
            frames = [vlm2vec_video(video, self.factor, self.pixels, self.video_opts) for video in videos]
            enc = self.video_processor(videos=frames, do_resize=False, return_tensors="pt")
            extras.update(pixel_values_videos=enc["pixel_values_videos"], video_grid_thw=enc["video_grid_thw"])
            counts[self.video_token] = (enc["video_grid_thw"].prod(-1) // self.merge**2).tolist()
        prompt = expand_tokens(item.prompt, {tok: [tok * n for n in ns] for tok, ns in counts.items()})
        ids = self.tokenizer(prompt)["input_ids"] or [self.pad_id]
        return Prepared(ids, extras, item.visual)

    def _fit(self, image: Any) -> Any:
        """An image at the size VLM2Vec's processor gives it (PIL bicubic, as the processor's PIL backend)."""
        from PIL import Image

        if image.width < self.min_side or image.height < self.min_side:
            image = image.resize((2 * self.min_side, 2 * self.min_side), Image.Resampling.BICUBIC)
        h, w = vlm2vec_size(image.height, image.width, self.factor, *self.pixels)
        return image.resize((w, h), Image.Resampling.BICUBIC)

    def _images(self, images: list, index: int) -> Any:
        try:
            return self.image_processor(images=images, do_resize=False, return_tensors="pt")
        except ValueError as exc:
            raise InvalidInputError(f"image cannot be processed: {exc}", index=index) from exc

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor, batch: list[Prepared]) -> torch.Tensor:
        dtype = self.model.visual.dtype
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions(mask), use_cache=False,
                         pixel_values=self.cat(batch, "pixel_values", dtype),
                         image_grid_thw=self.cat(batch, "image_grid_thw"),
                         pixel_values_videos=self.cat(batch, "pixel_values_videos", dtype),
                         video_grid_thw=self.cat(batch, "video_grid_thw"))
        return out.last_hidden_state


class Qwen3VL(Backbone):
    """Qwen3-VL-Embedding: Qwen3VLModel, the checkpoint's chat template, last token."""

    token_extras = ("mm_token_type_ids",)
    max_images, takes_video = None, True

    def __init__(self, emb: Any, path: str, **kw: Any):
        super().__init__(emb, path, **kw)
        from transformers import Qwen3VLModel, Qwen3VLVideoProcessor

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
        self.video_token, self.vision_start, self.vision_end = "<|video_pad|>", "<|vision_start|>", "<|vision_end|>"
        self.video_id = tok.convert_tokens_to_ids(self.video_token)
        self.video_opts = dict(self.opts.get("video", {}))
        self.video_processor = video_processor(ip, Qwen3VLVideoProcessor)

    def render(self, prompt: Any) -> str:
        return self.processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)

    def prepare(self, item: VLMItem, index: int) -> Prepared:
        text = self.render(item.prompt)
        images, videos = item.of("image"), item.of("video")
        self.check_tokens(text, self.image_token, len(images), index)
        self.check_tokens(text, self.video_token, len(videos), index)
        extras: dict[str, torch.Tensor] = {}
        if videos:
            clips = [qwen3_video(video, self.factor, self.video_opts, index) for video in videos]
            enc = self.video_processor(videos=[frames for frames, _ in clips], do_resize=False,
                                       do_sample_frames=False, return_tensors="pt")
            extras.update(pixel_values_videos=enc["pixel_values_videos"], video_grid_thw=enc["video_grid_thw"])
            marked = self.vision_start + self.video_token + self.vision_end
            text = expand_tokens(text, {marked if marked in text else self.video_token: [
                self._video_placeholder(grid, meta) for grid, (_, meta) in zip(enc["video_grid_thw"], clips,
                                                                                 strict=True)]})
        if images:
            try:
                sizes = [fetch_size(image.height, image.width, self.factor, *self.pixels) for image in images]
            except ValueError as exc:
                raise InvalidInputError(f"image cannot be processed: {exc}", index=index) from exc
            from PIL import Image

            images = [image.resize((w, h), Image.Resampling.BICUBIC) for image, (h, w) in zip(images, sizes,
                                                                                                strict=True)]
            enc = self.processor.image_processor(images=images, do_resize=False, return_tensors="pt")
            extras.update(pixel_values=enc["pixel_values"], image_grid_thw=enc["image_grid_thw"])
            merge = int(self.processor.image_processor.merge_size)
            text = expand_tokens(text, {self.image_token: [self.image_token * (int(grid.prod()) // merge**2)
                                                           for grid in enc["image_grid_thw"]]})
        # Tokens expanded here, as the processor does (which, from transformers 5.25, refuses a text whose video
        # tokens are already expanded); types as its mm_token_type_ids: 1 image, 2 video, 0 text.
        ids = self.processor.tokenizer(text)["input_ids"]
        extras["mm_token_type_ids"] = torch.tensor([1 if t == self.image_id else 2 if t == self.video_id else 0
                                                    for t in ids], dtype=torch.long)
        return Prepared(ids, extras, item.visual)

    def _video_placeholder(self, grid: torch.Tensor, meta: dict) -> str:
        """A video's tokens as the Qwen3-VL processor of transformers 4.57 (the model's release) writes them: per
        pair of frames its time, then the frame's tokens between vision start and end. transformers 5 keeps the
        template's own start and end around all of it, which the model was not released with."""
        vp = self.video_processor
        per_frame = int(grid[1] * grid[2]) // vp.merge_size**2
        times = timestamps(meta["frames_indices"], meta["fps"], vp.temporal_patch_size)
        return "".join(f"<{times[t]:.1f} seconds>{self.vision_start}{self.video_token * per_frame}{self.vision_end}"
                       for t in range(int(grid[0])))

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor, batch: list[Prepared]) -> torch.Tensor:
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": mask, "use_cache": False}
        if any(p.has_image for p in batch):  # the model computes its 3-D rope positions from the mask
            types = pad_tokens([p.extras["mm_token_type_ids"] for p in batch], input_ids.shape[1],
                               self.emb.padding_side)
            dtype = self.model.visual.dtype
            kwargs.update(pixel_values=self.cat(batch, "pixel_values", dtype),
                          image_grid_thw=self.cat(batch, "image_grid_thw"),
                          pixel_values_videos=self.cat(batch, "pixel_values_videos", dtype),
                          video_grid_thw=self.cat(batch, "video_grid_thw"),
                          mm_token_type_ids=types.to(input_ids.device))
        else:
            kwargs["position_ids"] = positions(mask)
        return self.model(**kwargs).last_hidden_state


def video_processor(image_processor: Any, cls: type) -> Any:
    """The transformers video processor ``cls`` with the image processor's normalization and patching (which the
    card's ``options.processor`` checks): videos need no file beyond the card's, and frames are patched exactly as
    the images are. Resizing and frame sampling are the zoo's (``do_resize=False``, ``do_sample_frames=False``)."""
    ip = image_processor
    return cls(image_mean=list(ip.image_mean), image_std=list(ip.image_std), patch_size=ip.patch_size,
               temporal_patch_size=ip.temporal_patch_size, merge_size=ip.merge_size)
