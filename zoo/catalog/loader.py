"""``zoo.load(name)``: card -> sources -> adapter -> a ready Embedder."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from zoo.catalog import registry
from zoo.catalog.adhoc import adhoc_adapter, is_adhoc, resolve_adhoc
from zoo.catalog.hubfiles import model_folder_files
from zoo.catalog.modelcard import ModelCard
from zoo.catalog.sources import resolve, resolve_hub
from zoo.errors import InvalidInputError, UnsafeModelFileError, WeightsUnavailableError


def load(
    name: str | ModelCard,
    *,
    path: str | os.PathLike | None = None,
    download: bool | None = None,
    trust_remote_code: bool = False,
    prompts: dict[str, str] | None = None,
    default_prompt_name: str | None = None,
    **options: Any,
):
    """Load a model by registry name and return its Embedder.

    Args:
        name: a registered name (``zoo.list_models()``), ``local-dir:/path`` or
            ``hf-hub:org/name[@revision]`` for a text model outside the registry, or a
            :class:`~zoo.modelcard.ModelCard` itself (an edited copy of a card, say).
        path: a folder with the model's files; wins over every other source.
        download: allow a hub download when nothing local has the files (default: allowed
            unless ZOO_OFFLINE=1 or HF_HUB_OFFLINE=1).
        trust_remote_code: consent to run the Python code a model repo ships. Only cards
            that need it and pin their revision accept it.
        prompts: named prompts, as sentence-transformers' ``prompts=``: ``{"query": "query: "}``.
            They join the card's (a name the card has too takes the value given here) and
            ``embed(prompt_name=...)`` / ``encode(prompt_name=...)`` pick them; a value is a
            prefix, or a template with ``{input}``. Refused for models that embed no text and
            for those whose adapter builds its own prompts (vision-language models).
        default_prompt_name: the prompt every text gets when none is named (one of the card's
            prompts or of ``prompts``).
        **options: adapter options, e.g. ``device="cpu"``, ``compute_dtype="bfloat16"``. Each
            adapter takes its own set; any other keyword is an InvalidInputError naming them.
    """
    # Consent is settled before any file is looked for. Ad-hoc names run no remote code.
    if isinstance(name, ModelCard):
        card = name
    elif is_adhoc(name):
        card = None
    else:
        card = registry.card(name)  # a name that is not a string is an InvalidInputError there
    if trust_remote_code and (card is None or not card.remote_code):
        who = card.name if card else name
        raise UnsafeModelFileError(f"{who} needs no remote code; refusing trust_remote_code=True")
    if card is not None and card.remote_code and not trust_remote_code:
        hub = card.hub_source
        raise UnsafeModelFileError(
            f"{card.name} runs Python code shipped in its hub repo ({hub.repo}@{hub.revision[:12]}); "
            "read it, then pass trust_remote_code=True to zoo.load to consent"
        )
    # Options are settled before any file is looked for too: a keyword nothing reads is an error, not ignored.
    cls = registry.adapter_class(card.adapter if card is not None else adhoc_adapter(name))
    _check_options(cls, card.name if card is not None else name, options)
    if card is None:
        card, resolved = resolve_adhoc(name, download=download)
        card = _with_prompts(card, cls, prompts, default_prompt_name)
    else:
        card = _with_prompts(card, cls, prompts, default_prompt_name)
        resolved = resolve(card, path=path, download=download)
        for src in card.hub_sources:  # remote code kept in another repository: into the cache, at its pin
            if src.role == "code" and trust_remote_code:
                resolve_hub(card, src, download=download)
        if path is not None:
            missing = [f for f in model_folder_files(card) if not (resolved.path / f).is_file()]
            if missing:
                raise WeightsUnavailableError(f"{card.name}: path {str(resolved.path)!r} is not a model folder for "
                                              f"this card: it has no {', '.join(missing)}")
    model = cls(card, resolved, trust_remote_code=trust_remote_code, **options)
    if "device" in options:
        model._load_device = options["device"]
    return model


def _check_options(cls: type, who: str, options: dict[str, Any]) -> None:
    """Refuse keywords the adapter class does not take, naming those it does."""
    from zoo.adapters.base import BaseEmbedder

    if not (isinstance(cls, type) and issubclass(cls, BaseEmbedder)):
        return  # a plugin class of its own: its __init__ judges its keywords
    unknown = set(options) - set(cls.load_options())
    if unknown:
        import inspect

        own = [p.name for p in inspect.signature(load).parameters.values() if p.kind is p.KEYWORD_ONLY]
        raise cls.unknown_options(who, unknown, own)


def _with_prompts(card: ModelCard, cls: type, prompts: Any, default_prompt_name: Any) -> ModelCard:
    """The card with the caller's prompts added (sentence-transformers' ``prompts=`` and ``default_prompt_name=``)."""
    if prompts is None and default_prompt_name is None:
        return card
    if prompts is not None and (not isinstance(prompts, dict)
                                or not all(isinstance(k, str) and isinstance(v, str) for k, v in prompts.items())):
        raise InvalidInputError(f"prompts must be a dict of prompt names to strings, not {prompts!r:.80}")
    if default_prompt_name is not None and not isinstance(default_prompt_name, str):
        raise InvalidInputError(f"default_prompt_name must be a string, not {type(default_prompt_name).__name__}")
    if not {"text", "code"} & set(card.modalities):
        raise InvalidInputError(f"{card.name} embeds {', '.join(card.modalities)}, no text: prompts would never be "
                                "used")
    from zoo.adapters.base import BaseEmbedder

    own_prompts = isinstance(cls, type) and issubclass(cls, BaseEmbedder) and \
        cls._apply_prompts is not BaseEmbedder._apply_prompts
    if own_prompts:
        raise InvalidInputError(f"{card.name} builds its prompts itself (its named prompts are instructions); "
                                "prompts= would not be used as prefixes: pass task_instruction= to embed")
    merged = {**card.prompts, **(prompts or {})}
    default = card.default_prompt if default_prompt_name is None else default_prompt_name
    if default and default not in merged:
        known = ", ".join(merged) or "none"
        raise InvalidInputError(f"default_prompt_name {default!r} is not one of the prompts ({known})")
    return dataclasses.replace(card, prompts=merged, default_prompt=default)
