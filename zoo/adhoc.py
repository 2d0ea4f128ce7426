"""Cards made on the fly for ``local-dir:/path`` and ``hf-hub:org/name[@revision]`` names.

A sentence-transformers folder says how it pools and prompts in its own config files
(``modules.json``, ``1_Pooling/config.json``, ``sentence_bert_config.json``,
``config_sentence_transformers.json``); a plain transformers folder gets mean pooling.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from zoo.errors import InvalidInputError, UnknownModelError, WeightsUnavailableError
from zoo.modelcard import ModelCard, Source
from zoo.sources import Resolved, hf_cache_dir, offline_reason

_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_lasttoken": "last",
}


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{path}: not valid JSON ({exc})") from exc


def _sentence_transformers_facts(folder: Path) -> dict:
    modules = _json(folder / "modules.json") if (folder / "modules.json").is_file() else []
    pooling, normalize, dim = "mean", False, 0
    for mod in modules if isinstance(modules, list) else []:
        kind = str(mod.get("type", ""))
        if kind.endswith("Pooling"):
            cfg = _json(folder / mod.get("path", "") / "config.json")
            dim = int(cfg.get("word_embedding_dimension", 0))
            pooling = next((v for k, v in _POOLING_KEYS.items() if cfg.get(k)), "mean")
        elif kind.endswith("Normalize"):
            normalize = True
    st_cfg = _json(folder / "config_sentence_transformers.json")
    prompts = {k: v for k, v in (st_cfg.get("prompts") or {}).items() if isinstance(v, str) and v}
    default = st_cfg.get("default_prompt_name") or ""
    return {
        "pooling": pooling,
        "max_tokens": int(_json(folder / "sentence_bert_config.json").get("max_seq_length") or 0),
        "prompts": prompts,
        "default_prompt": default if default in prompts else "",
        "dim": dim or int(_json(folder / "config.json").get("hidden_size") or 0),
        "tags": ["sentence-transformers"] if modules else [],
        "_normalize": normalize,
    }


def card_for_folder(name: str, folder: Path, source: Source | None = None) -> ModelCard:
    if not (folder / "config.json").is_file():
        raise WeightsUnavailableError(f"{name}: {folder} has no config.json; is it a transformers model folder?")
    facts = _sentence_transformers_facts(folder)
    facts.pop("_normalize")
    if not facts["dim"]:
        raise InvalidInputError(f"{name}: cannot tell the embedding size from {folder}/config.json")
    return ModelCard(
        name=name,
        adapter="text",
        modalities=("text",),
        description=f"Ad-hoc text model read from {folder}.",
        license="unknown",
        sources=(source,) if source else (),
        offline_note="ad-hoc model outside the registry",
        **facts,
    )


def is_adhoc(name: str) -> bool:
    """Whether ``name`` asks for a model outside the registry (``local-dir:`` or ``hf-hub:``)."""
    return isinstance(name, str) and name.startswith(("local-dir:", "hf-hub:"))


def resolve_adhoc(name: str, *, download: bool | None = None) -> tuple[ModelCard, Resolved] | None:
    """Card and folder for a ``local-dir:`` or ``hf-hub:`` name; None for any other name."""
    if name.startswith("local-dir:"):
        folder = Path(name.removeprefix("local-dir:")).expanduser()
        if not folder.is_dir():
            raise WeightsUnavailableError(f"{name}: no such folder")
        return card_for_folder(name, folder), Resolved(folder, "local-dir")
    if not name.startswith("hf-hub:"):
        return None
    spec = name.removeprefix("hf-hub:")
    repo, _, revision = spec.partition("@")
    if not re.match(r"^[\w.-]+/[\w.-]+$", repo):
        raise UnknownModelError(name, hint="write hf-hub:org/name or hf-hub:org/name@revision")
    from huggingface_hub import snapshot_download

    local_only = download is False or offline_reason() is not None
    try:
        folder = Path(snapshot_download(repo, revision=revision or None, cache_dir=str(hf_cache_dir()),
                                        local_files_only=local_only, etag_timeout=10))
    except Exception as exc:
        raise WeightsUnavailableError(f"{name}: not in the Hugging Face cache and not downloadable "
                                      f"({type(exc).__name__}: {exc})") from exc
    source = Source(kind="hub", repo=repo, revision=folder.name)
    return card_for_folder(name, folder, source), Resolved(folder, "hf-cache", revision=folder.name, source=source)
