"""Mllama (mmE5) and Phi-3.5-V (VLM2Vec-Full) backbones for ``zoo.adapters.vlm``.

See ``zoo.adapters.vlm_backbones`` for what a backbone does and how each one treats its inputs.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from zoo.adapters import guards
from zoo.adapters.vlm_backbones import Backbone, pad_tokens, pil_processor
from zoo.adapters.vlm_inputs import Prepared, VLMItem, positions


class Mllama(Backbone):
    """mmE5 on MllamaForConditionalGeneration."""

    separate_images = True
    token_extras = ("cross_attention_mask",)

    def __init__(self, emb: Any, path: str, **kw: Any):
        super().__init__(emb, path, **kw)
        from transformers import MllamaForConditionalGeneration

        self.processor = pil_processor(path)
        self.check_files(self.processor.tokenizer, self.processor)
        model = self.load(MllamaForConditionalGeneration, use_safetensors=True)
        self.model = model.model
        self.hidden_size = model.config.text_config.hidden_size
        tok = self.processor.tokenizer
        self.image_id = self.processor.image_token_id
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0

    def prepare(self, item: VLMItem, index: int) -> Prepared:
        self.check_tokens(item.prompt, self.processor.image_token, item.image is not None, index)
        images = [[item.image]] if item.image is not None else None
        enc = self.processor(text=[item.prompt], images=images, return_tensors="pt")
        extras = {}
        if images:
            extras = {k: enc[k] for k in ("pixel_values", "aspect_ratio_ids", "aspect_ratio_mask")}
            extras["cross_attention_mask"] = enc["cross_attention_mask"][0]
        return Prepared(enc["input_ids"][0].tolist(), extras, images is not None)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor, batch: list[Prepared]) -> torch.Tensor:
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": mask, "position_ids": positions(mask),
                                  "use_cache": False}
        if batch[0].has_image:
            cross = pad_tokens([p.extras["cross_attention_mask"] for p in batch], input_ids.shape[1],
                               self.emb.padding_side)
            kwargs.update(pixel_values=self.cat(batch, "pixel_values", self.model.dtype),
                          aspect_ratio_ids=self.cat(batch, "aspect_ratio_ids"),
                          aspect_ratio_mask=self.cat(batch, "aspect_ratio_mask"),
                          cross_attention_mask=cross.to(input_ids.device))
        with warnings.catch_warnings():  # transformers 5.18 warns about its own internal keyword
            warnings.filterwarnings("ignore", message=".*hidden_state.* is deprecated", category=FutureWarning)
            return self.model(**kwargs).last_hidden_state


class Phi3V(Backbone):
    """VLM2Vec-Full on Phi-3.5-V: the repo's remote code, ``num_crops`` crops, eager attention (not run here)."""

    separate_images = True

    def __init__(self, emb: Any, path: str, **kw: Any):
        super().__init__(emb, path, **kw)
        from transformers import AutoModelForCausalLM, AutoProcessor

        remote = {"trust_remote_code": self.trust_remote_code}
        guards.check_remote_code(emb.card, path)
        self.processor = AutoProcessor.from_pretrained(path, num_crops=int(self.opts.get("num_crops", 16)), **remote)
        self.check_files(self.processor.tokenizer, self.processor)
        pickle = emb.card.weights_format == "torch-weights-only"  # read with torch.load(weights_only=True) only
        self.model = self.load(AutoModelForCausalLM, attn_implementation="eager", use_safetensors=not pickle,
                               weights_only=True, **remote)
        self.hidden_size = self.model.config.hidden_size
        tok = self.processor.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        self.image_token = self.opts.get("image_token", "<|image_1|>")

    def is_image_id(self, token_id: int) -> bool:
        return token_id < 0  # the Phi-3-V processor marks image positions with negative ids

    def prepare(self, item: VLMItem, index: int) -> Prepared:
        self.check_tokens(item.prompt, self.image_token, item.image is not None, index)
        images = [item.image] if item.image is not None else None
        enc = self.processor(item.prompt, images, return_tensors="pt")
        extras = {k: enc[k] for k in ("pixel_values", "image_sizes") if images and k in enc}
        return Prepared(enc["input_ids"][0].tolist(), extras, images is not None)

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor, batch: list[Prepared]) -> torch.Tensor:
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": mask, "output_hidden_states": True,
                                  "use_cache": False}
        if batch[0].has_image:
            crops = max(p.extras["pixel_values"].shape[1] for p in batch)
            pixels = [torch.nn.functional.pad(p.extras["pixel_values"],
                                              (0, 0, 0, 0, 0, 0, 0, crops - p.extras["pixel_values"].shape[1]))
                      for p in batch]
            kwargs.update(pixel_values=torch.cat(pixels).to(self.emb.device, self.model.dtype),
                          image_sizes=self.cat(batch, "image_sizes"))
        return self.model(**kwargs).hidden_states[-1]
