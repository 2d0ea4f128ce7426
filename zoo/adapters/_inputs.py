"""The caller's inputs as items, and the text prompts wrapped around them.

Owns ``TEXT_MODALITIES``, ``as_item_list`` (one item or many, as a list), ``format_prompt`` (the
card's instruction template, named prompts and literal prefixes) and ``_with_index`` (an input error
re-addressed to the caller's own index when a call embeds a subset of its inputs).
"""

from __future__ import annotations

from typing import Any

from zoo.catalog.modelcard import ModelCard
from zoo.errors import InputTooLargeError, InvalidInputError

TEXT_MODALITIES = ("text", "code")


def as_item_list(inputs: Any) -> list:
    """The caller's inputs as a list of items; one item on its own becomes a list of one.

    A str, bytes, path, dict (interleaved input), (waveform, sample_rate) pair, PIL image, HxW
    or HxWxC array or CxHxW tensor is one item; a 4-D array or tensor is a batch; other
    sequences are lists of items.
    """
    import numbers
    import os

    if isinstance(inputs, (str, bytes, bytearray, memoryview, os.PathLike, dict)):
        return [inputs]
    if (isinstance(inputs, tuple) and len(inputs) == 2 and isinstance(inputs[1], numbers.Integral)
            and getattr(inputs[0], "ndim", 0) >= 1):
        return [inputs]  # one (waveform, sample_rate) pair
    if type(inputs).__module__.startswith("PIL."):
        return [inputs]
    ndim = getattr(inputs, "ndim", None)
    if ndim is not None and not isinstance(inputs, (list, tuple)):
        return [inputs] if ndim in (2, 3) else list(inputs)
    return list(inputs) if hasattr(inputs, "__iter__") else [inputs]


def format_prompt(card: ModelCard, instruction: str | None, prompt_name: str | None,
                  prompt: str | None = None) -> tuple[str, str, str]:
    """Return (prefix, suffix, description) to wrap each text with, per the card.

    ``instruction`` goes through the card's instruction template; ``prompt_name`` picks a
    named prompt: a prefix, or a template with ``{input}`` ("a photo of a {input}.");
    ``prompt`` is a literal prefix (sentence-transformers' ``prompt=``). Two at once is an
    error. With none, the card's default prompt applies (most cards have none: texts are
    embedded as given).
    """
    if prompt is not None:
        if not isinstance(prompt, str):
            raise InvalidInputError(f"prompt must be a string, not {type(prompt).__name__}")
        if instruction is not None or prompt_name is not None:
            raise InvalidInputError("pass one of prompt, prompt_name and task_instruction, not several")
        return prompt, "", "prompt (given)"
    if instruction is not None and prompt_name is not None:
        raise InvalidInputError("pass task_instruction or prompt_name, not both")
    if prompt_name is not None and not isinstance(prompt_name, str):
        raise InvalidInputError(f"prompt_name must be a string, not {type(prompt_name).__name__}")
    if prompt_name is not None:
        if prompt_name not in card.prompts:
            known = ", ".join(card.prompts) or "none"
            raise InvalidInputError(f"{card.name} has no prompt {prompt_name!r} (its prompts: {known})")
        prefix, _, suffix = card.prompts[prompt_name].partition("{input}")
        return prefix, suffix, f"prompt {prompt_name!r}"
    if instruction is not None:
        if not isinstance(instruction, str):
            raise InvalidInputError(f"task_instruction must be a string, not {type(instruction).__name__}")
        prefix, _, suffix = card.instruction_template.partition("{input}")
        return prefix.replace("{instruction}", instruction), suffix, "instruction"
    if card.default_prompt:
        prefix, _, suffix = card.prompts[card.default_prompt].partition("{input}")
        return prefix, suffix, f"prompt {card.default_prompt!r}"
    return "", "", "none"


def _with_index(exc: InvalidInputError, message: str, index: int) -> InvalidInputError:
    """A copy of ``exc`` (same type, same limit) naming ``index`` instead."""
    if isinstance(exc, InputTooLargeError):
        return type(exc)(message, index=index, limit=exc.limit)
    try:
        return type(exc)(message, index=index)
    except TypeError:  # a subclass with another signature: keep its type's family
        return InvalidInputError(message, index=index)
