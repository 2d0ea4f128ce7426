"""The inputs of the vision-language embedders (``vlm``): checked items, prompts in each card's style, padded
token batches. Below ``vlm`` and its backbones (``vlm_backbones``, ``vlm_qwen``, ``vlm_mllama``), which all use it;
it imports neither."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

import torch

from zoo.adapters.text import check_text
from zoo.errors import CardError, InvalidInputError
from zoo.inputs.images import load_image

#: The kinds of content an item may hold, in the order of a flat dict's parts (Qwen3-VL-Embedding's order).
PART_KINDS = ("video", "image", "document", "text")
#: Keys of an interleaved dict: its parts, a document's page, or ``content`` (a list of parts in the caller's order).
INTERLEAVED_KEYS = (*PART_KINDS, "page", "content")


@dataclass
class VLMItem:
    """One input: its parts in order (``("image", PIL)``, ``("video", Video)``, ``("text", str)``); ``prompt`` is
    what the model is given. ``image=`` / ``text=`` build the common one-image-and-a-text item; ``document`` marks a
    visual-document item (a page: one of its images), whose prompts follow the document tasks'."""

    image: Any = None
    text: str | None = None
    prompt: Any = None
    parts: list[tuple[str, Any]] = field(default_factory=list)
    document: bool = False

    def __post_init__(self):
        if not self.parts:
            self.parts = [("image", self.image)] if self.image is not None else []
            if self.text is not None:
                self.parts.append(("text", self.text))
        images = self.of("image")
        texts = self.of("text")
        self.image = images[0] if images else None
        self.text = " ".join(texts) if texts else None

    def of(self, kind: str) -> list:
        """The values of the parts of ``kind``, in order."""
        return [value for k, value in self.parts if k == kind]

    @property
    def visual(self) -> bool:
        return any(k in ("image", "video") for k, _ in self.parts)


@dataclass
class Prepared:
    """One item ready for batching: token ids and the backbone's per-item image and video tensors."""

    ids: list[int]
    extras: dict[str, torch.Tensor]
    has_image: bool


@dataclass(frozen=True)
class ImageRules:
    """How inputs become the model's pixels: RGBA compositing, an optional fixed resize, the frames a video gives."""

    rgba_background: tuple[int, int, int] | None = None
    resize: tuple[int, int] | None = None
    sampling: Any = None  # zoo.inputs.video.FrameSampling; None: the card takes no video

    def load(self, item: Any, index: int) -> Any:
        image = load_image(item, index=index, rgba_background=self.rgba_background)
        if self.resize is not None and image.size != self.resize:
            from PIL import Image

            image = image.resize(self.resize, Image.Resampling.BICUBIC)
        return image

    def load_video(self, item: Any, index: int) -> Any:
        from zoo.inputs.video import load_video

        return load_video(item, sampling=self.sampling, index=index, rgba_background=self.rgba_background)

    def load_document(self, item: Any, page: Any, index: int) -> Any:
        """A PDF's page (rendered) or a page's image."""
        from zoo.inputs.documents import is_pdf, load_page

        if is_pdf(item):
            return self.load(load_page(item, page=0 if page is None else page, index=index), index)
        if page is not None:
            raise InvalidInputError("'page' applies to a PDF document, not to a page image", index=index)
        return self.load(item, index)


def _part(kind: str, value: Any, index: int, rules: ImageRules, page: Any = None) -> tuple[str, Any]:
    if kind == "text":
        return "text", check_text(value, index, "'text'")
    if kind == "image":
        return "image", rules.load(value, index)
    if kind == "video":
        if rules.sampling is None:
            raise InvalidInputError("this model takes no video", index=index)
        return "video", rules.load_video(value, index)
    return "image", rules.load_document(value, page, index)


def _content(parts: Any, index: int, rules: ImageRules) -> VLMItem:
    """``{"content": [...]}``: parts as one-kind dicts (``{"image": x}``, ``{"document": pdf, "page": 2}``...),
    or in the chat form ``{"type": "image", "image": x}``, in the caller's order."""
    if not isinstance(parts, (list, tuple)) or not parts:
        raise InvalidInputError("'content' must be a non-empty list of parts", index=index)
    out, document = [], False
    for j, part in enumerate(parts):
        if not isinstance(part, dict):
            raise InvalidInputError(f"content[{j}] must be a dict, not {type(part).__name__}", index=index)
        keys = set(map(str, part)) - {"type", "page"}
        kind = part.get("type", next(iter(keys), None))
        if kind not in PART_KINDS or keys != {kind} or ("page" in part and kind != "document"):
            raise InvalidInputError(f"content[{j}] must hold one of {PART_KINDS} (and 'page' for a document), "
                                    f"not keys {sorted(map(str, part))}", index=index)
        out.append(_part(kind, part[kind], index, rules, part.get("page")))
        document = document or kind == "document"
    return VLMItem(parts=out, document=document)


def check_item(item: Any, modality: str, index: int, rules: ImageRules = ImageRules()) -> VLMItem:  # noqa: B008
    """Validate one input of ``modality``; errors name ``index``."""
    if modality == "text":
        return VLMItem(text=check_text(item, index, "text"))
    if modality in ("image", "video", "document"):
        if isinstance(item, dict):
            raise InvalidInputError(f"an interleaved dict needs modality='interleaved', not {modality!r}",
                                    index=index)
        return VLMItem(parts=[_part(modality, item, index, rules)], document=modality == "document")
    if not isinstance(item, dict):
        raise InvalidInputError(f"an interleaved input must be a dict with keys {INTERLEAVED_KEYS}, "
                                f"not {type(item).__name__}", index=index)
    unknown = sorted(set(map(str, item)) - set(INTERLEAVED_KEYS))
    if unknown:
        raise InvalidInputError(f"unknown key(s) {unknown} in interleaved input (allowed: {INTERLEAVED_KEYS})",
                                index=index)
    if "content" in item:
        if len(item) > 1:
            raise InvalidInputError("an item with 'content' takes no other keys", index=index)
        return _content(item["content"], index, rules)
    if "page" in item and item.get("document") is None:
        raise InvalidInputError("'page' needs a 'document'", index=index)
    parts = []
    for kind in PART_KINDS:
        value = item.get(kind)
        if value is None:
            continue
        many = kind == "image" and isinstance(value, (list, tuple))  # several images; a video's list is its frames
        parts += [_part(kind, v, index, rules, item.get("page")) for v in (value if many else [value])]
    if not parts:
        raise InvalidInputError("an interleaved input needs an 'image', a 'video', a 'document', a 'text' "
                                "or some of them", index=index)
    return VLMItem(parts=parts, document=item.get("document") is not None)


PROMPT_FORMATS = {"vlm2vec": ("eval", "demo")}


def _default_instruction(item: VLMItem, opts: dict[str, Any]) -> str | None:
    """The instruction a vlm2vec-style item with a visual part and no words gets (by its kind)."""
    if item.of("video"):
        key = "default_video_instruction"
    elif item.document:
        key = "default_document_instruction"
    else:
        key = "default_image_instruction"
    return opts.get(key) or opts.get("default_image_instruction") or None


def build_prompt(style: str, item: VLMItem, instruction: str | None, opts: dict[str, Any],
                 prompt_format: str | None = None) -> Any:
    """The prompt for one item in the card's ``prompt_style`` and ``prompt_format`` (see ``zoo.adapters.vlm``)."""
    text = item.text or ""
    if style == "chat":
        instruction = (instruction or opts.get("default_instruction", "Represent the user's input.")).strip()
        if instruction and not unicodedata.category(instruction[-1]).startswith("P"):
            instruction += "."
        content: list[dict[str, Any]] = [{"type": k} if k != "text" else {"type": "text", "text": v}
                                         for k, v in item.parts if k != "text" or v]  # empty texts left out
        content = content or [{"type": "text", "text": "NULL"}]
        return [{"role": "system", "content": [{"type": "text", "text": instruction}]},
                {"role": "user", "content": content}]
    if item.visual and instruction is None and not text:
        instruction = _default_instruction(item, opts)
    words = " ".join(p for p in (instruction, text) if p)
    tokens = " ".join(opts.get("video_token", "<|video_pad|>") if k == "video" else opts.get("image_token", "")
                      for k, _ in item.parts if k in ("image", "video"))
    if style == "vlm2vec":
        # The MMEB evaluation forms its video and visual-document prompts (and their text queries) with
        # process_input_text, "{tokens} {instruction} {text}", and its image prompts as "{tokens}\n{words}\n".
        plain = bool(item.of("video")) or item.document or instruction in opts.get("plain_instructions", ())
        if (prompt_format or "eval") == "demo" or (plain and item.visual):
            return " ".join(p for p in (tokens, words) if p)
        if item.visual:
            return f"{tokens}\n{words}\n"
        if plain:
            return words
        return f"{words}\n" if instruction else text
    if style == "mme5":
        if item.visual:
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
