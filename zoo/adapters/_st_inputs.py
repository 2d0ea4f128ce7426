"""sentence-transformers' input forms, read as the zoo's items.

Owns ``STInputsMixin`` (PIL images, sentence-transformers 6's multimodal dicts, audio dicts and chat
messages turned into (modality, item, instruction), or an ``InvalidInputError`` naming the form) and
the helpers ``encode`` shares: ``_st_singular`` (one input or a batch) and ``_as_numpy``.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np

from zoo.errors import InvalidInputError


class STInputsMixin:
    """How :meth:`BaseEmbedder.encode` reads each sentence-transformers input."""

    def _st_as(self, modality: str, item: Any, index: int, form: str) -> tuple[str, Any]:
        """``item`` tagged with ``modality`` (text: the model's text-like modality), or the error naming ``form``."""
        if modality == "text" and "text" not in self.modalities and "code" in self.modalities:
            modality = "code"
        if modality not in self.modalities:
            raise InvalidInputError(f"{form}: {self.name} does not embed {modality} (it embeds "
                                    f"{', '.join(self.modalities)})", index=index)
        return modality, item

    def _st_item(self, item: Any, index: int) -> tuple[str | None, Any, str | None]:
        """(modality or None to infer, the zoo's item, instruction or None) for one sentence-transformers input."""
        if type(item).__module__.startswith("PIL."):
            return (*self._st_as("image", item, index, "a PIL image"), None)
        if _is_message(item):
            return self._st_messages([item], index)
        if isinstance(item, list) and item and _is_message(item[0]):
            return self._st_messages(item, index)
        if isinstance(item, dict):
            return (*self._st_dict(item, index), None)
        if isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(x, str) for x in item):
            raise InvalidInputError("a text pair: pairs are for cross-encoders; pass each text as its own input",
                                    index=index)
        return None, item, None

    def _st_dict(self, item: dict, index: int) -> tuple[str, Any]:
        if "array" in item:
            if "sampling_rate" in item:
                return self._st_as("audio", _audio_pair(item, index), index, "an audio dict")
            if "video_metadata" in item:
                raise InvalidInputError(f"video input: {self.name} does not embed video", index=index)
            raise InvalidInputError("a dict with 'array' needs 'sampling_rate' (audio)", index=index)
        keys = sorted(map(str, item))
        if not keys:
            raise InvalidInputError("an empty dict is not an input", index=index)
        unknown = [k for k in keys if k not in ST_DICT_KEYS]
        if unknown:
            raise InvalidInputError(f"a dict with key(s) {unknown}: an input dict has keys from {list(ST_DICT_KEYS)}",
                                    index=index)
        if "video" in keys and "video" not in self.modalities:
            raise InvalidInputError(f"video input: {self.name} does not embed video", index=index)
        several = "interleaved" in self.modalities and "video" in self.modalities  # models that take lists
        for key, value in item.items():
            if key == "video" or (several and key == "image"):
                continue  # a video's list is its frames; a vision-language model takes several images
            if isinstance(value, (list, tuple)) and not (key == "audio" and _is_audio_pair(value)):
                raise InvalidInputError(f"a list under {key!r} (several {key}s in one input) is not supported; pass "
                                        "each as its own input", index=index)
        if keys == ["text"]:
            return self._st_as("text", item["text"], index, "a {'text'} dict")
        if keys == ["image"] and not isinstance(item["image"], (list, tuple)):
            return self._st_as("image", item["image"], index, "an {'image'} dict")
        if keys == ["video"]:
            return self._st_as("video", item["video"], index, "a {'video'} dict")
        if keys == ["audio"]:
            audio = item["audio"]
            audio = _audio_pair(audio, index) if isinstance(audio, dict) else audio
            return self._st_as("audio", audio, index, "an {'audio'} dict")
        if "audio" not in keys:
            return self._interleaved(dict(item), index, "an {" + ", ".join(map(repr, keys)) + "} dict")
        shown = "{" + ", ".join(map(repr, keys)) + "}"
        raise InvalidInputError(f"a {shown} dict: {self.name} cannot embed {' and '.join(keys)} as one input",
                                index=index)

    def _interleaved(self, item: dict, index: int, form: str) -> tuple[str, Any]:
        if "interleaved" not in self.modalities:
            raise InvalidInputError(f"{form} (an image and a text as one input): {self.name} does not embed the two "
                                    f"as one input (it embeds {', '.join(self.modalities)}); pass them as two inputs",
                                    index=index)
        return "interleaved", item

    def _st_messages(self, messages: list, index: int) -> tuple[str, Any, str | None]:
        """One conversation: an optional system turn (the instruction) and one user turn (the input)."""
        for m in messages:
            if not _is_message(m):
                raise InvalidInputError("chat messages must all be {'role': ..., 'content': ...} dicts", index=index)
        roles = [m["role"] for m in messages]
        system = None
        if roles[0] == "system":
            system = _message_text(messages[0]["content"], index)
            messages = messages[1:]
        if [m["role"] for m in messages] != ["user"]:
            raise InvalidInputError(f"chat messages with roles {roles}: only one user turn, after an optional system "
                                    "turn, is supported", index=index)
        if system is not None and not self.card.uses_instructions:
            raise InvalidInputError(f"chat messages with a system turn: {self.name} takes no task instructions (a "
                                    "system turn is read as one)", index=index)
        content = messages[0]["content"]
        if isinstance(content, str):
            return (*self._st_as("text", content, index, "chat messages"), system)
        if not isinstance(content, list):
            raise InvalidInputError(f"a user turn's content is a text or a list of parts, not "
                                    f"{type(content).__name__}", index=index)
        kinds = ("text", "image", "video") if "video" in self.modalities else ("text", "image")
        parts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in kinds:
                raise InvalidInputError(f"chat messages with {kind or type(part).__name__!r} content: a user turn "
                                        f"holds {' and '.join(repr(k) for k in kinds)} parts", index=index)
            if kind not in part:
                raise InvalidInputError(f"a {kind!r} part needs its value under {kind!r}", index=index)
            if "video" not in self.modalities and any(k == kind for k, _ in parts):
                raise InvalidInputError(f"chat messages with several {kind} parts: one of each is supported",
                                        index=index)
            parts.append((kind, part[kind]))
        if not parts:
            raise InvalidInputError("chat messages with an empty user turn", index=index)
        if len(parts) == 1:
            kind, value = parts[0]
            return (*self._st_as(kind, value, index, f"chat messages with {kind} content"), system)
        form = "chat messages with " + " and ".join(k for k, _ in parts)
        # one image and one text: the zoo's flat dict; a model that takes video takes the parts in order
        item = {"content": [{k: v} for k, v in parts]} if "video" in self.modalities else dict(parts)
        return (*self._interleaved(item, index, form), system)


#: The keys of sentence-transformers 6's multimodal input dicts.
ST_DICT_KEYS = ("audio", "image", "text", "video")


def _is_message(x: Any) -> bool:
    return isinstance(x, dict) and "role" in x and "content" in x


def _is_audio_pair(x: Any) -> bool:
    return (isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], numbers.Integral) and not isinstance(x[1], bool)
            and getattr(x[0], "ndim", 0) >= 1)


def _st_singular(inputs: Any) -> bool:
    """Whether ``inputs`` is one input, as sentence-transformers decides: a list or tuple is a batch (but a
    conversation, a list of message dicts, is one input; so is the zoo's (waveform, sample_rate) pair), as is a
    numpy array of strings or objects and any iterator; anything else is one input."""
    if isinstance(inputs, list) and inputs and _is_message(inputs[0]):
        return True
    if _is_audio_pair(inputs):
        return True
    if isinstance(inputs, (list, tuple, Iterator)):
        return False
    return not (isinstance(inputs, np.ndarray) and inputs.ndim >= 1 and inputs.dtype.kind in "UO")


def _audio_pair(item: Any, index: int) -> tuple:
    """sentence-transformers' ``{"array": ..., "sampling_rate": ...}`` as the zoo's (waveform, sample_rate)."""
    if not isinstance(item, dict) or "array" not in item or "sampling_rate" not in item:
        raise InvalidInputError("an audio dict needs 'array' and 'sampling_rate'", index=index)
    rate = item["sampling_rate"]
    if isinstance(rate, bool) or not isinstance(rate, numbers.Integral):
        raise InvalidInputError(f"sampling_rate must be an integer, not {rate!r:.40}", index=index)
    return _as_numpy(item["array"]), int(rate)


def _message_text(content: Any, index: int) -> str:
    """A system turn's text: a string, or a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" and isinstance(
            p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    raise InvalidInputError("a system turn holds text only", index=index)


def _as_numpy(x: Any) -> Any:
    """A torch tensor as a numpy array (on the CPU, float32 for the float types numpy lacks); the rest as it is."""
    if type(x).__module__.startswith("torch") and hasattr(x, "detach"):
        x = x.detach().cpu()
        if x.is_floating_point() and str(x.dtype) not in ("torch.float16", "torch.float32", "torch.float64"):
            x = x.float()
        return x.numpy()
    return x
