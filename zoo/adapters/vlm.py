"""Vision-language embedders: VLM2Vec (Qwen2-VL, Phi-3.5-V), mmE5 (Mllama), Qwen3-VL-Embedding.

One adapter, three prompt styles and four backbones, chosen by the card's ``options``:

- ``backbone``: "qwen2_vl", "phi3_v", "mllama" or "qwen3_vl" (``vlm_backbones``, ``vlm_qwen``,
  ``vlm_mllama``);
- ``prompt_style``: how an item (image and/or text) and an instruction become the prompt:

  - "vlm2vec": no chat template; a text-only item without instruction is the raw text. Two
    forms (load option ``prompt_format``): "eval" (default), the form of VLM2Vec's MMEB
    evaluation, whose scores the papers report: ``"{image_token}\\n{instruction} {text}\\n"``
    for items with an image and ``"{instruction} {text}\\n"`` for instructed text ("to stay
    consistent with v1 eval", src/data/eval_dataset); "demo", the form of the repository's demo
    scripts: the present parts joined by one space, ``"{image_token} {instruction} {text}"``;
  - "mme5": ``"<|image|><|begin_of_text|>{instruction} {text}\\n"`` for items with an image,
    ``"{instruction} {text}\\n"`` for text with an instruction, raw text otherwise (the Mllama
    processor puts ``<|begin_of_text|>`` in front of prompts that have none);
  - "chat": a system turn holding the instruction (a "." added when it does not end in
    punctuation) and a user turn holding the image and the text ("NULL" when there is neither),
    rendered by the checkpoint's own chat template with the generation prompt;

- ``default_image_instruction``: the instruction an item with an image and nothing else gets;
  ``default_instruction`` (chat style): the instruction every item gets when none is given.

Load options: ``prompt_format`` (above); ``image_resize=(width, height)`` resizes every image
first (bicubic, the aspect ratio not kept), and ``benchmark=True`` applies the card's
``options.benchmark`` settings, the preprocessing of the evaluation behind the published
numbers (VLM2Vec V1's MMEB evaluation resizes every image to 1344x1344). A card's
``options.rgba_background`` pastes RGBA images onto that colour (Qwen3-VL-Embedding, through
qwen_vl_utils' ``to_rgb``: white) instead of dropping the alpha channel.

Inputs: ``str`` (text), anything ``zoo.images.load_image`` accepts (image; a path given as a
``str`` needs ``modality="image"``), or an interleaved dict ``{"image": ..., "text": ...}``
(either key may be left out; other keys are refused). ``task_instruction`` is free
text; ``prompt_name`` picks one of the card's named instructions. The vector is the last
layer's hidden state (after the final norm) at the last non-padding token, left or right
padding alike; ``embed`` L2-normalizes it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from zoo.adapters.base import BaseEmbedder, EmbedContext
from zoo.adapters.text import length_batches
from zoo.adapters.text_backends import pool, torch_settings
from zoo.adapters.vlm_backbones import backbone_class
from zoo.adapters.vlm_inputs import PROMPT_FORMATS, ImageRules, Prepared, build_prompt, check_item, pad_batch
from zoo.catalog.modelcard import ModelCard
from zoo.catalog.sources import Resolved, check_format
from zoo.errors import CardError, InputTooLargeError, InvalidInputError
from zoo.inputs.frames import FrameSampling

DEFAULT_TOKEN_BUDGET = 16384
DEFAULT_MAX_ROWS = 16
#: Items prepared (tokenized, images processed) at a time; bounds the memory of long lists.
CHUNK = 256


class VLMEmbedder(BaseEmbedder):
    """A vision-language model used as an embedder; see the module docstring."""

    def __init__(
        self,
        card: ModelCard,
        resolved: Resolved,
        *,
        device: str = "cpu",
        compute_dtype: str = "float32",
        trust_remote_code: bool = False,
        lora_path: str | None = None,
        prompt_format: str | None = None,
        image_resize: tuple[int, int] | None = None,
        benchmark: bool = False,
        **options: Any,
    ):
        """Load the card's backbone (and merge its adapter) from ``resolved``.

        Args:
            device: torch device to run on.
            compute_dtype: "float32" (default), "bfloat16" or "float16".
            trust_remote_code: the caller's consent to run the repo's code (cards with remote_code only).
            lora_path: a folder with the card's LoRA adapter, instead of the pinned hub snapshot.
            prompt_format: "eval" (default) or "demo", for VLM2Vec cards (see the module docstring).
            image_resize: (width, height) every image is resized to first.
            benchmark: apply the card's ``options.benchmark`` settings (its evaluation's preprocessing).
        """
        super().__init__(card, resolved, **options)

        opts = card.options
        if lora_path is not None and not card.hub_role("adapter"):
            raise InvalidInputError(f"{card.name} has no LoRA adapter; lora_path= does not apply")
        backbone = backbone_class(opts.get("backbone", ""))
        self.device, self.compute_dtype = torch_settings(self, device, compute_dtype)
        check_format(resolved.path, card)
        self.style = opts.get("prompt_style", "vlm2vec")
        formats = PROMPT_FORMATS.get(self.style, ())
        if prompt_format is not None and prompt_format not in formats:
            allowed = formats or "nothing: this card has one prompt form"
            raise InvalidInputError(f"{card.name}: prompt_format must be one of {allowed}, not {prompt_format!r}")
        self.prompt_format = prompt_format or (formats[0] if formats else None)
        if benchmark:
            if not opts.get("benchmark"):
                raise InvalidInputError(f"{card.name} has no benchmark settings (options.benchmark)")
            image_resize = image_resize or opts["benchmark"].get("image_resize")
        if image_resize is not None:
            if (not isinstance(image_resize, (list, tuple)) or len(image_resize) != 2
                    or not all(isinstance(v, int) and v > 0 for v in image_resize)):
                raise InvalidInputError(f"image_resize must be (width, height) in pixels, not {image_resize!r}")
            image_resize = (int(image_resize[0]), int(image_resize[1]))
        background = opts.get("rgba_background")
        sampling = FrameSampling.from_options(opts["video"]) if "video" in opts else None
        self.image_rules = ImageRules(tuple(background) if background else None, image_resize, sampling)
        self.padding_side = opts.get("padding_side", "right")
        self.max_tokens = card.max_tokens or 8192
        self.token_budget = int(opts.get("token_budget", DEFAULT_TOKEN_BUDGET))
        self.lora_modules: list[str] = []  # the modules an adapter was merged into (set by the backbone)
        self.max_rows = int(opts.get("max_rows", DEFAULT_MAX_ROWS))
        self.backbone = backbone(self, str(resolved.path), trust_remote_code=trust_remote_code, lora_path=lora_path)
        if self.backbone.hidden_size != card.dim:
            raise CardError(f"{card.name}: the model's hidden size is {self.backbone.hidden_size}, "
                            f"the card says dim = {card.dim}")

    # -- inputs ------------------------------------------------------------------------------
    def _infer_modality(self, inputs: list) -> str:
        kinds = {"text" if isinstance(x, str) else "interleaved" if isinstance(x, dict) else "image"
                 for x in inputs}
        if len(kinds) == 1:
            return kinds.pop()
        if not kinds:
            return "text"
        raise InvalidInputError(f"inputs mix {sorted(kinds)}; wrap mixed items as interleaved dicts "
                                "({'image': ..., 'text': ...}) or pass modality=")

    def _check(self, inputs: list, modality: str) -> list:
        items = [check_item(item, modality, i, self.image_rules) for i, item in enumerate(inputs)]
        for i, item in enumerate(items):
            self.backbone.check_item(item, i)
        return items

    def instruction(self, ctx: EmbedContext) -> str | None:
        """The instruction of this call: ``task_instruction`` or the card's named one (not both)."""
        if ctx.instruction is not None and ctx.prompt_name is not None:
            raise InvalidInputError("pass task_instruction or prompt_name, not both")
        if ctx.prompt_name is not None:
            if ctx.prompt_name not in self.card.prompts:
                known = ", ".join(self.card.prompts) or "none"
                raise InvalidInputError(f"{self.name} has no prompt {ctx.prompt_name!r} (its prompts: {known})")
            return self.card.prompts[ctx.prompt_name]
        if ctx.instruction is not None and not isinstance(ctx.instruction, str):
            raise InvalidInputError(f"task_instruction must be a string, not {type(ctx.instruction).__name__}")
        return ctx.instruction

    def _apply_prompts(self, items: list, modality: str, ctx: EmbedContext) -> list:
        instruction = self.instruction(ctx)
        ctx.info["prompt"] = ("instruction" if ctx.instruction is not None
                              else f"prompt {ctx.prompt_name!r}" if ctx.prompt_name is not None else "none")
        return [replace(it, prompt=build_prompt(self.style, it, instruction, self.card.options, self.prompt_format))
                for it in items]

    def prompts(self, inputs: list, task_instruction: str | None = None, *, prompt_name: str | None = None,
                modality: str | None = None) -> list[str]:
        """The prompt strings ``embed`` would give the model (image tokens not yet expanded)."""
        inputs = [inputs] if isinstance(inputs, (str, dict)) else list(inputs)
        modality = modality or self._infer_modality(inputs)
        ctx = EmbedContext(instruction=task_instruction, prompt_name=prompt_name)
        items = self._apply_prompts(self._check(inputs, modality), modality, ctx)
        return [self.backbone.render(it.prompt) for it in items]

    # -- the model ---------------------------------------------------------------------------
    def _fit(self, prepared: Prepared, index: int, ctx: EmbedContext) -> Prepared:
        """Cut an over-long item to ``max_tokens`` (warn once) or refuse it when ``truncate=False``."""
        if len(prepared.ids) <= self.max_tokens:
            return prepared
        if not ctx.truncate:
            raise InputTooLargeError(f"input is {len(prepared.ids)} tokens, over {self.name}'s limit of "
                                     f"{self.max_tokens} (pass truncate=True to cut it)", index=index,
                                     limit=self.max_tokens)
        ctx.info["truncated"] = ctx.info.get("truncated", 0) + 1
        self.warn_once("truncate", f"inputs longer than {self.max_tokens} tokens are truncated to fit")
        return self.backbone.truncate(prepared, self.max_tokens, index)

    @torch.inference_mode()
    def forward(self, batch: list[Prepared]) -> torch.Tensor:
        """Embed one batch of prepared items: float32 (B, D), before normalization."""
        input_ids, mask = pad_batch([p.ids for p in batch], self.backbone.pad_id, self.padding_side)
        hidden = self.backbone.forward(input_ids.to(self.device), mask.to(self.device), batch)
        return pool(hidden, mask.to(hidden.device), "last").float()

    def _encode(self, items: list, modality: str, ctx: EmbedContext) -> np.ndarray:
        out = np.empty((len(items), self.dim), dtype=np.float32)
        chunks = range(0, len(items), CHUNK)  # image tensors are made per chunk, so memory stays bounded
        if not ctx.truncate:  # find an over-long item before any forward pass is spent
            for start in chunks:
                for i, item in enumerate(items[start : start + CHUNK], start):
                    self._fit(self.backbone.prepare(item, i), i, ctx)
        for start in chunks:
            prepared = [self._fit(self.backbone.prepare(it, i), i, ctx)
                        for i, it in enumerate(items[start : start + CHUNK], start)]
            groups: dict[bool, list[int]] = {}
            for i, p in enumerate(prepared):  # backbones that cannot mix text-only and image rows keep them apart
                groups.setdefault(p.has_image and self.backbone.separate_images, []).append(i)
            for members in groups.values():
                lengths = [len(prepared[i].ids) for i in members]
                for batch in length_batches(lengths, token_budget=self.token_budget,
                                            max_rows=ctx.batch_size or self.max_rows):
                    rows = [members[j] for j in batch]
                    out[[start + i for i in rows]] = self.forward([prepared[i] for i in rows]).cpu().numpy()
                    ctx.advance(len(rows))
        return out
