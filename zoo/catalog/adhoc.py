"""Cards made on the fly for models outside the registry, by the names their libraries use.

- ``local-dir:/path`` and ``hf-hub:org/name[@revision]``: text models. A sentence-transformers folder says how
  it pools and prompts in its own config files (``modules.json``, ``1_Pooling/config.json``,
  ``sentence_bert_config.json``, ``config_sentence_transformers.json``); a plain transformers folder gets mean
  pooling.
- ``open_clip:ARCH/TAG``: any architecture and pretrained tag open_clip lists (``open_clip.list_pretrained()``).
  The model is built from open_clip's own architecture config; the weights are the file open_clip's pretrained
  config names for the tag (its ``hf_hub`` entry: ``open_clip_model.safetensors`` first, as open_clip does, then
  the pickle file, read with ``torch.load(weights_only=True)`` only), read from the Hugging Face cache;
  preprocessing is the tag's (mean, std, interpolation, resize mode), and QuickGELU is built where the tag says
  the weights were trained with it (the OpenAI tags), as ``force_quick_gelu=True`` does.
- ``open_clip:ARCH`` (no tag): the architecture with seeded RANDOM weights, and only when the caller passes
  ``pretrained=False`` to ``zoo.load``; otherwise the adapter refuses the name and lists the architecture's tags.
  The card, its space and a warning say the weights are random.
- ``timm:MODEL[.TAG]``: any timm model, built with ``num_classes=0`` (pooled features), with the weights of
  timm's hub repository for the tag (``timm/<model>.<tag>``: ``model.safetensors``); no tag means timm's default
  tag, as ``timm.create_model(name, pretrained=True)`` picks it.

Downloads follow the zoo's rule: allowed unless ``download=False``, ``ZOO_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``;
otherwise only the cache is read and the error says how to fetch the file. Ad-hoc cards carry no evidence:
their description says that nothing about the model was checked, and their licence is "unknown".
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
from pathlib import Path

from zoo.catalog.modelcard import ModelCard, Source
from zoo.catalog.sources import Resolved, hf_cache_dir, offline_reason
from zoo.errors import InvalidInputError, UnknownModelError, WeightsUnavailableError, require

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
        "normalize": normalize,  # whether the pipeline ends in Normalize: what encode() gives by default
    }


def card_for_folder(name: str, folder: Path, source: Source | None = None) -> ModelCard:
    if not (folder / "config.json").is_file():
        raise WeightsUnavailableError(f"{name}: {folder} has no config.json; is it a transformers model folder?")
    facts = _sentence_transformers_facts(folder)
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


PREFIXES = ("local-dir:", "hf-hub:", "open_clip:", "timm:")
#: Seed of the random weights ``open_clip:ARCH`` gets with ``pretrained=False`` (so its space is reproducible).
RANDOM_SEED = 0
#: open_clip pretrained-config keys that set the image preprocessing (``open_clip.transform.PreprocessCfg``).
_OPEN_CLIP_PREPROCESS = ("mean", "std", "interpolation", "resize_mode", "fill_color")
_PICKLE_WEIGHTS = (".bin", ".pth", ".pt")
_UNCHECKED = ("It is not in the zoo's registry: its outputs were not checked against anything (no parity test, "
              "no published example), and the zoo does not know its licence; read the model's own page.")
_NOTE = "ad-hoc model outside the registry"


def is_adhoc(name: str) -> bool:
    """Whether ``name`` asks for a model outside the registry (``local-dir:``, ``hf-hub:``, ``open_clip:``,
    ``timm:``)."""
    return isinstance(name, str) and name.startswith(PREFIXES)


def adhoc_adapter(name: str) -> str:
    """The adapter key of an ad-hoc name's card, known from its prefix before anything is resolved."""
    if name.startswith("open_clip:"):
        return "open_clip"
    if name.startswith("timm:"):
        return "image"
    return "text"


def resolve_adhoc(name: str, *, download: bool | None = None) -> tuple[ModelCard, Resolved] | None:
    """Card and folder for an ad-hoc name (see the module docstring); None for any other name.

    Raises:
        UnknownModelError: a name its library does not list, with close matches.
        WeightsUnavailableError: the weights are not in the cache and may not (or could not) be downloaded.
    """
    if name.startswith("open_clip:"):
        return _resolve_open_clip(name, download)
    if name.startswith("timm:"):
        return _resolve_timm(name, download)
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


# -- shared --------------------------------------------------------------------------------------------------------


def close_matches(word: str, choices: list[str], n: int = 5) -> list[str]:
    """Up to ``n`` of ``choices`` closest to ``word``, compared without case, in their own spelling."""
    by_lower: dict[str, str] = {}
    for choice in choices:
        by_lower.setdefault(choice.lower(), choice)
    return [by_lower[m] for m in difflib.get_close_matches(word.lower(), list(by_lower), n=n, cutoff=0.6)]


def _safe_alternatives(filename: str, default_pickle: str, default_safe: str) -> list[str]:
    """The safetensors files open_clip and timm try before a pickle file of this name, then the name itself."""
    if filename.endswith(".safetensors"):
        return [filename]
    if filename == default_pickle:
        return [default_safe, filename]
    if filename.endswith((".bin", ".pth")):
        return [filename[:-4] + ".safetensors", filename]
    return [filename]


def _hub_file(name: str, repo: str, candidates: list[str], *, download: bool | None, revision: str | None = None,
              what: str = "weights") -> Path:
    """The first of ``candidates`` in ``repo``: from the Hugging Face cache, or downloaded where allowed."""
    from huggingface_hub import hf_hub_download

    reason = "download=False" if download is False else offline_reason()
    failures = []
    for filename in candidates:
        try:
            return Path(hf_hub_download(repo, filename, revision=revision, cache_dir=str(hf_cache_dir()),
                                        local_files_only=reason is not None, etag_timeout=10))
        except Exception as exc:  # not cached, not in the repository, no network: try the next file
            failures.append(f"{filename}: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
    at = f"{repo}@{revision}" if revision else repo
    why = f"{reason} forbids downloads" if reason else "the download failed (" + "; ".join(failures) + ")"
    others = f" (or {', '.join(candidates[1:])})" if len(candidates) > 1 else ""
    raise WeightsUnavailableError(
        f"{name}: the {what} ({' or '.join(candidates)} of the hub repository {at}) are not in the Hugging Face "
        f"cache {hf_cache_dir()}, and {why}. To get them: `hf download {repo} {candidates[0]}`{others} on a "
        f"machine with network (HF_ENDPOINT for a mirror) and bring its Hugging Face cache here, or call "
        f"zoo.load({name!r}) once with downloads allowed")


def _weights_format(file: Path) -> str:
    if file.suffix == ".safetensors":
        return "safetensors"
    if file.suffix in _PICKLE_WEIGHTS:
        return "torch-weights-only"  # read with torch.load(weights_only=True), never a full unpickling
    raise WeightsUnavailableError(f"{file.name}: a weights file in a format the zoo does not read")


def _hub_source(file: Path, repo: str) -> tuple[Source, str]:
    revision = file.parent.name  # .../snapshots/<commit>/<file>
    return Source(kind="hub", repo=repo, revision=revision, files=(file.name,)), revision


# -- open_clip:ARCH[/TAG] ------------------------------------------------------------------------------------------


def _resolve_open_clip(name: str, download: bool | None) -> tuple[ModelCard, Resolved]:
    open_clip = require("open_clip", extra="vision", purpose=name)
    spec = name.removeprefix("open_clip:")
    arch, slash, tag = spec.partition("/")
    if not arch or (slash and not tag) or "/" in tag or ":" in spec:
        raise UnknownModelError(name, hint="write open_clip:ARCH/TAG, e.g. open_clip:ViT-B-32/laion2b_s34b_b79k")
    pairs = [f"{a}/{t}" for a, t in open_clip.list_pretrained()]
    if arch not in open_clip.list_models():
        near = close_matches(spec, pairs) if tag else close_matches(arch, open_clip.list_models())
        raise UnknownModelError(name, [f"open_clip:{m}" for m in near],
                                hint="open_clip.list_models() lists the architectures, open_clip.list_pretrained() "
                                     "the ARCH/TAG pairs with weights")
    dim = int(open_clip.get_model_config(arch)["embed_dim"])
    if not tag:
        return _random_open_clip(name, arch, dim, open_clip)
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if not cfg:
        hint = (f"open_clip's tags for {arch}: {', '.join(tags)}" if tags else
                f"open_clip lists no weights for {arch}; zoo.load('open_clip:{arch}', pretrained=False) builds it "
                "with random weights")
        raise UnknownModelError(name, [f"open_clip:{m}" for m in close_matches(spec, pairs)], hint=hint)
    tag = tag.lower().replace("-", "_")  # open_clip's own spelling of a tag (pretrained._clean_tag)
    hub = cfg.get("hf_hub") or ""
    if not hub:
        raise WeightsUnavailableError(f"{name}: open_clip names no Hugging Face repository for this tag (only "
                                      f"{cfg.get('url') or 'nothing'}); the zoo reads weights from the hub only")
    repo, filename = os.path.split(hub)  # "org/name/" = the default file; "org/name/file" = that file
    candidates = _safe_alternatives(filename or "open_clip_pytorch_model.bin", "open_clip_pytorch_model.bin",
                                    "open_clip_model.safetensors")
    file = _hub_file(name, repo, candidates, download=download)
    source, revision = _hub_source(file, repo)
    quick = bool(cfg.get("quick_gelu", False))
    preprocess = {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items() if k in _OPEN_CLIP_PREPROCESS}
    card = ModelCard(
        name=name,
        adapter="open_clip",
        modalities=("text", "image"),
        dim=dim,
        description=(f"Ad-hoc open_clip model: architecture {arch} with the weights of open_clip's pretrained tag "
                     f"{tag} ({repo}, {file.name}), built by open_clip from its own config for {arch}, with the "
                     f"tag's preprocessing" + (" and QuickGELU (the tag's weights were trained with it)" if quick
                                               else "") + ". " + _UNCHECKED),
        license="unknown",
        sources=(source,),
        space=f"open_clip:{arch}/{tag}",
        weights_format=_weights_format(file),
        offline_note=_NOTE,
        parity="Not checked: an ad-hoc model outside the registry.",
        tags=("ad-hoc", "unverified", "open_clip"),
        options={"open_clip_arch": arch, "open_clip_tag": tag, "quick_gelu": quick, "preprocess": preprocess,
                 "weights_file": file.name},
    )
    return card, Resolved(file.parent, "hf-cache", revision=revision, source=source)


def _random_open_clip(name: str, arch: str, dim: int, open_clip) -> tuple[ModelCard, Resolved]:
    """The card of ``open_clip:ARCH`` with random weights; the adapter builds it only for ``pretrained=False``."""
    card = ModelCard(
        name=name,
        adapter="open_clip",
        modalities=("text", "image"),
        dim=dim,
        description=(f"RANDOM WEIGHTS: open_clip architecture {arch} with seeded random initial weights (seed "
                     f"{RANDOM_SEED}), no pretrained tag, built only because pretrained=False was asked for. It is "
                     "not a trained model: its vectors mean nothing beyond shapes and code paths. " + _UNCHECKED),
        license="unknown",
        sources=(),
        space=f"open_clip:{arch}/random-init-seed{RANDOM_SEED}",
        offline_note=_NOTE + " with random weights",
        parity="Not checked: random weights of an ad-hoc architecture.",
        tags=("ad-hoc", "unverified", "random-weights", "open_clip"),
        options={"open_clip_arch": arch, "random_weights": True, "seed": RANDOM_SEED},
    )
    # No weight files: the folder is where open_clip keeps its architecture configs.
    return card, Resolved(Path(open_clip.__file__).parent / "model_configs", "random-init")


# -- timm:MODEL[.TAG] ----------------------------------------------------------------------------------------------


def _resolve_timm(name: str, download: bool | None) -> tuple[ModelCard, Resolved]:
    timm = require("timm", extra="vision", purpose=name)
    from timm.models import get_pretrained_cfg

    spec = name.removeprefix("timm:")
    model_name, dot, tag = spec.partition(".")
    if not re.match(r"^[\w-]+$", model_name) or (dot and not re.match(r"^[\w.-]+$", tag)):
        raise UnknownModelError(name, hint="write timm:MODEL or timm:MODEL.TAG, e.g. "
                                           "timm:vit_small_patch14_dinov2.lvd142m")
    if not timm.is_model(model_name):
        raise UnknownModelError(name, [f"timm:{m}" for m in close_matches(model_name, timm.list_models())],
                                hint="timm.list_models() lists the models, timm.list_pretrained() the MODEL.TAG "
                                     "names with weights")
    try:
        cfg = get_pretrained_cfg(spec)  # with no tag: timm's default tag, as create_model(pretrained=True) picks
    except RuntimeError:  # "Invalid pretrained tag"
        cfg = None
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        tags = timm.list_pretrained(f"{model_name}.*")
        hint = (f"timm's tags for {model_name}: {', '.join(t.partition('.')[2] for t in tags[:20])}"
                + (" ..." if len(tags) > 20 else "") if tags else f"timm lists no pretrained weights for {model_name}")
        raise UnknownModelError(name, [f"timm:{m}" for m in close_matches(spec, tags)], hint=hint)
    full = f"{cfg.architecture}.{cfg.tag}" if cfg.tag else cfg.architecture
    if not cfg.hf_hub_id:
        raise WeightsUnavailableError(f"{name}: timm publishes the weights of {full} only at {cfg.url or cfg.file}, "
                                      "not on the Hugging Face hub; the zoo reads weights from the hub only")
    if cfg.custom_load == "hf":
        raise WeightsUnavailableError(f"{name}: timm loads {full} with its own custom code, which the zoo does "
                                      "not run")
    repo, _, revision = cfg.hf_hub_id.partition("@")
    candidates = (_safe_alternatives(cfg.hf_hub_filename, "pytorch_model.bin", "model.safetensors")
                  if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"])
    file = _hub_file(name, repo, candidates, download=download, revision=revision or None)
    with contextlib.suppress(WeightsUnavailableError):  # the architecture it holds: the adapter checks it
        _hub_file(name, repo, ["config.json"], download=download, revision=revision or None, what="config")
    source, rev = _hub_source(file, repo)
    card = ModelCard(
        name=name,
        adapter="image",
        modalities=("image",),
        dim=_timm_dim(timm, full),
        description=(f"Ad-hoc timm image model {full} ({repo}, {file.name}), built by timm with num_classes=0 "
                     "(its pooled features) and preprocessed by timm's own data config for it"
                     + (f"; timm's metadata gives the licence as {cfg.license!r}" if cfg.license else "")
                     + ". " + _UNCHECKED),
        license="unknown",
        sources=(source,),
        space=f"timm:{full}",
        weights_format=_weights_format(file),
        offline_note=_NOTE,
        parity="Not checked: an ad-hoc model outside the registry.",
        tags=("ad-hoc", "unverified", "timm"),
        options={"timm_model": full, "weights_file": file.name},
    )
    return card, Resolved(file.parent, "hf-cache", revision=rev, source=source)


def _timm_dim(timm, full: str) -> int:
    """Width of the pooled features of ``full`` with ``num_classes=0``, from its structure (no weights made)."""
    import torch

    try:
        with torch.device("meta"):
            model = timm.create_model(full, pretrained=False, num_classes=0)
    except Exception:  # a model whose constructor needs real tensors: build it on the CPU
        model = timm.create_model(full, pretrained=False, num_classes=0)
    return int(getattr(model, "head_hidden_size", 0) or model.num_features)
