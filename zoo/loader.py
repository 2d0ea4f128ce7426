"""``zoo.load(name)``: card -> sources -> adapter -> a ready Embedder."""

from __future__ import annotations

import os
from typing import Any

from zoo import registry
from zoo.adhoc import is_adhoc, resolve_adhoc
from zoo.errors import UnsafeModelFileError, WeightsUnavailableError
from zoo.hubfiles import model_folder_files
from zoo.modelcard import ModelCard
from zoo.sources import resolve, resolve_hub


def load(
    name: str | ModelCard,
    *,
    path: str | os.PathLike | None = None,
    download: bool | None = None,
    trust_remote_code: bool = False,
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
        **options: adapter options, e.g. ``device="cpu"``, ``compute_dtype="bfloat16"``.
    """
    # Consent is settled before any file is looked for. Ad-hoc names are text models with no remote code.
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
    if card is None:
        card, resolved = resolve_adhoc(name, download=download)
    else:
        resolved = resolve(card, path=path, download=download)
        for src in card.hub_sources:  # remote code kept in another repository: into the cache, at its pin
            if src.role == "code" and trust_remote_code:
                resolve_hub(card, src, download=download)
        if path is not None:
            missing = [f for f in model_folder_files(card) if not (resolved.path / f).is_file()]
            if missing:
                raise WeightsUnavailableError(f"{card.name}: path {str(resolved.path)!r} is not a model folder for "
                                              f"this card: it has no {', '.join(missing)}")
    cls = registry.adapter_class(card.adapter)
    return cls(card, resolved, trust_remote_code=trust_remote_code, **options)
