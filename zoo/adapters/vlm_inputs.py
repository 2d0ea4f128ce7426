"""The inputs of the vision-language embedders (``vlm``): checked items, prompts in each card's style, padded
token batches. Below ``vlm`` and its backbones (``vlm_backbones``, ``vlm_qwen``, ``vlm_mllama``), which all use it;
it imports neither."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

import torch

from zoo.adapters.text import check_text
from zoo.errors import CardError, InvalidInputError
from zoo.inputs.images import load_image

INTERLEAVED_KEYS = ("image", "text")


@dataclass
class VLMItem:
    """One input: an RGB PIL image and/or a text; ``prompt`` is what the model is given."""

    image: Any = None
    text: str | None = None
    prompt: Any = None


@dataclass
class Prepared:
    """One item ready for batching: token ids and the backbone's per-item image tensors."""

    ids: list[int]
    extras: dict[str, torch.Tensor]
    has_image: bool


@dataclass(frozen=True)
class ImageRules:
    """How an input image becomes the model's RGB image: RGBA compositing, then an optional fixed resize."""

    rgba_background: tuple[int, int, int] | None = None
    resize: tuple[int, int] | None = None

    def load(self, item: Any, index: int) -> Any:
        image = load_image(item, index=index, rgba_background=self.rgba_background)
        if self.resize is not None and image.size != self.resize:
            from PIL import Image

            image = image.resize(self.resize, Image.Resampling.BICUBIC)
        return image


def check_item(item: Any, modality: str, index: int, rules: ImageRules = ImageRules()) -> VLMItem:  # noqa: B008
    """Validate one input of ``modality``; errors name ``index``."""
    if modality == "text":
        return VLMItem(text=check_text(item, index, "text"))
    if modality == "image":
        if isinstance(item, dict):
            raise InvalidInputError("an interleaved dict needs modality='interleaved'", index=index)
        return VLMItem(image=rules.load(item, index))
    if not isinstance(item, dict):
        raise InvalidInputError(f"an interleaved input must be a dict with keys {INTERLEAVED_KEYS}, "
                                f"not {type(item).__name__}", index=index)
    unknown = sorted(set(map(str, item)) - set(INTERLEAVED_KEYS))
    if unknown:
        raise InvalidInputError(f"unknown key(s) {unknown} in interleaved input (allowed: {INTERLEAVED_KEYS})",
                                index=index)
    if item.get("image") is None and item.get("text") is None:
        raise InvalidInputError("an interleaved input needs an 'image', a 'text' or both", index=index)
    text = check_text(item["text"], index, "'text'") if item.get("text") is not None else None
    image = rules.load(item["image"], index) if item.get("image") is not None else None
    return VLMItem(image=image, text=text)


PROMPT_FORMATS = {"vlm2vec": ("eval", "demo")}


def build_prompt(style: str, item: VLMItem, instruction: str | None, opts: dict[str, Any],
                 prompt_format: str | None = None) -> Any:
    """The prompt for one item in the card's ``prompt_style`` and ``prompt_format`` (see the module docstring)."""
    text = item.text or ""
    if style == "chat":
        instruction = (instruction or opts.get("default_instruction", "Represent the user's input.")).strip()
        if instruction and not unicodedata.category(instruction[-1]).startswith("P"):
            instruction += "."
        content: list[dict[str, Any]] = [{"type": "image"}] if item.image is not None else []
        if text or item.image is None:
            content.append({"type": "text", "text": text or "NULL"})
        return [{"role": "system", "content": [{"type": "text", "text": instruction}]},
                {"role": "user", "content": content}]
    if item.image is not None and instruction is None and not text:
        instruction = opts.get("default_image_instruction") or None
    words = " ".join(p for p in (instruction, text) if p)
    if style == "vlm2vec":
        if (prompt_format or "eval") == "demo":
            return " ".join(p for p in (opts["image_token"] if item.image is not None else "", words) if p)
        if item.image is not None:
            return f"{opts['image_token']}\n{words}\n"
        return f"{words}\n" if instruction else text
    if style == "mme5":
        if item.image is not None:
            return f"<|image|><|begin_of_text|>{words}\n"
        return f"{words}\n" if instruction else text
    raise CardError(f"unknown prompt_style {style!r}")


def pad_batch(rows: list[list[int]], pad_id: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id rows padded to one length on ``side``; returns (input_ids, attention_mask)."""
    longest = max(len(r) for r in rows)
    ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for j, row in enumerate(rows):
        cols = slice(longest - len(row), longest) if side == "left" else slice(0, len(row))
        ids[j, cols] = torch.tensor(row, dtype=torch.long)
        mask[j, cols] = 1
    return ids, mask


def positions(mask: torch.Tensor) -> torch.Tensor:
    """1-D positions counted over real tokens only, so a row's positions do not depend on its padding."""
    return (mask.cumsum(-1) - 1).clamp(min=0) * mask + (1 - mask)
