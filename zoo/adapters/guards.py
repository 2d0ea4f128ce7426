"""Load-time guards: a model folder that is wrong in a way transformers does not report raises here.

transformers builds a model whose checkpoint lacks tensors (it initialises them at random and
logs a table), a tokenizer from a ``tokenizer_config.json`` with no vocabulary (every text
then maps to the same few ids), and a processor from defaults when its config is missing.
Each gives vectors that look fine and are wrong. The checks below turn those into errors that
name the file or key, before anything is embedded:

- :func:`from_pretrained` loads with ``output_loading_info`` and refuses missing or
  mis-shaped parameters (:class:`IntegrityError`);
- :func:`check_tokenizer` refuses a tokenizer far smaller than the config's ``vocab_size``, or
  one that maps different probe texts to the same ids (:class:`IntegrityError`);
- :func:`check_chat_template` refuses a folder without the chat template the card's prompts
  are built with (:class:`WeightsUnavailableError`);
- :func:`check_processor` compares the processor's settings with the values the card states
  (:class:`IntegrityError`);
- :func:`check_remote_code` refuses a config whose ``auto_map`` points at code the card does not
  pin (:class:`UnsafeModelFileError`) or at a module the folder lacks (:class:`WeightsUnavailableError`).
"""

from __future__ import annotations

import fnmatch
import json
import math
from pathlib import Path
from typing import Any

from zoo.catalog.modelcard import ModelCard
from zoo.errors import IntegrityError, UnsafeModelFileError, WeightsUnavailableError

#: Different texts that every real tokenizer keeps apart; a tokenizer without its vocabulary does not.
PROBE_TEXTS = (
    "A cat and a dog sit on the mat.",
    "The stock market fell sharply today.",
    "def add(a, b):\n    return a + b",
    "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich.",
)
#: Fewer distinct ordinary ids than this over the probe texts (some 25 different words) means every word is unknown.
MIN_DISTINCT_IDS = 8
#: A tokenizer with fewer entries than this share of the config's vocab_size is missing its vocabulary.
MIN_VOCAB_SHARE = 0.5
#: Chat templates live in one of these files (or inside tokenizer_config.json).
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


def from_pretrained(cls: Any, folder: str | Path, card: ModelCard, **kwargs: Any) -> Any:
    """``cls.from_pretrained(folder, **kwargs)``, refusing a checkpoint that lacks some of the model's parameters.

    Buffers that the model rebuilds at init (position ids, rotary tables) may be absent; a
    parameter may not, unless the card names it in ``options.unused_weights`` (glob patterns,
    for heads the zoo never runs, such as BERT's pooler). Mis-shaped tensors are refused too.
    """
    try:
        model, info = cls.from_pretrained(str(folder), output_loading_info=True, **kwargs)
    except RuntimeError as exc:  # transformers refuses mis-shaped tensors itself, with a raw RuntimeError
        if "mismatched" not in str(exc) and "ignore_mismatched_sizes" not in str(exc):
            raise
        raise IntegrityError(f"{card.name}: the weights in {folder} have the wrong shape for some of the model's "
                             "parameters (transformers' load report above names them): the checkpoint does not "
                             "fit its config.json") from exc
    check_loading_info(model, info, card, folder)
    return model


def check_loading_info(model: Any, info: dict[str, Any], card: ModelCard, folder: str | Path) -> None:
    """Raise IntegrityError for parameters the checkpoint lacked or held in another shape."""
    params = {name for name, _ in model.named_parameters()}
    unused = tuple(card.options.get("unused_weights", ()))
    missing = sorted(k for k in info.get("missing_keys", ()) if k in params and not _matches(k, unused))
    if missing:
        raise IntegrityError(
            f"{card.name}: the weights in {folder} lack {len(missing)} of the model's parameters "
            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); transformers would initialise them "
            "at random. A weight file (or shard) is missing, or the checkpoint is another architecture",
            path=missing[0],
        )
    mismatched = [k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys", ())]
    if mismatched:
        raise IntegrityError(f"{card.name}: the weights in {folder} have the wrong shape for "
                             f"{', '.join(map(str, mismatched[:3]))}; they would be initialised at random",
                             path=str(mismatched[0]))


def _matches(key: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def config_vocab_size(folder: str | Path) -> int | None:
    """``vocab_size`` from the folder's config.json (its text config's, for multimodal models), or None."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return None
    config = json.loads(path.read_text(encoding="utf-8"))
    for holder in (config, config.get("text_config") or {}):
        if isinstance(holder.get("vocab_size"), int):
            return holder["vocab_size"]
    return None


def check_tokenizer(card: ModelCard, tokenizer: Any, folder: str | Path, *, vocab_size: int | None = None) -> None:
    """Raise IntegrityError for a tokenizer without its vocabulary.

    Two signs, either enough: far fewer entries than the model's ``vocab_size`` (the config's,
    unless given), or two different probe texts that come out as the same ids.
    """
    vocab_size = vocab_size if vocab_size is not None else config_vocab_size(folder)
    raw = hasattr(tokenizer, "encode_batch")  # a tokenizers.Tokenizer rather than a transformers tokenizer
    size = tokenizer.get_vocab_size(with_added_tokens=True) if raw else len(tokenizer)
    files = "tokenizer.json, or vocab.json + merges.txt, vocab.txt, spiece.model ..."
    if vocab_size and size < MIN_VOCAB_SHARE * vocab_size:
        raise IntegrityError(
            f"{card.name}: the tokenizer in {folder} has {size:,} entries but the model's vocab_size is "
            f"{vocab_size:,}: its vocabulary files ({files}) are missing, so texts would map to the wrong ids",
            path="tokenizer.json",
        )
    ids = [tuple(tokenizer.encode(text, add_special_tokens=False).ids if raw
                 else tokenizer(text, add_special_tokens=False)["input_ids"]) for text in PROBE_TEXTS]
    specials = set() if raw else set(getattr(tokenizer, "all_special_ids", ()))
    distinct = {i for row in ids for i in row} - specials
    if len(set(ids)) < len(ids) or len(distinct) < MIN_DISTINCT_IDS:
        raise IntegrityError(
            f"{card.name}: the tokenizer in {folder} maps different texts to the same ids ({ids[0][:8]}, "
            f"{len(distinct)} distinct ids over {len(PROBE_TEXTS)} probe texts): its vocabulary files ({files}) are "
            "missing or broken", path="tokenizer.json",
        )


def check_chat_template(card: ModelCard, holder: Any, folder: str | Path) -> None:
    """Raise WeightsUnavailableError when a chat-style card's processor or tokenizer has no chat template."""
    if getattr(holder, "chat_template", None):
        return
    raise WeightsUnavailableError(
        f"{card.name}: {folder} has no chat template ({' or '.join(CHAT_TEMPLATE_FILES)}, or a chat_template "
        "entry in tokenizer_config.json), and this card's prompts are built with it"
    )


def check_processor(card: ModelCard, processor: Any, folder: str | Path) -> None:
    """Raise IntegrityError when a processor setting differs from ``options.processor`` on the card.

    The card states the values the model was trained with (``image_mean``, ``patch_size``,
    ``sampling_rate``...); each is compared with the attribute of the loaded processor (or its
    image processor / feature extractor), numbers to 1e-6.
    """
    for key, expected in card.options.get("processor", {}).items():
        actual = _setting(processor, key)
        if not _same(actual, expected):
            raise IntegrityError(
                f"{card.name}: the processor in {folder} has {key} = {actual!r}, the card says {expected!r}; "
                "its preprocessor_config.json is missing or not this model's", path="preprocessor_config.json",
            )


def _setting(processor: Any, key: str) -> Any:
    for holder in (processor, *(getattr(processor, k, None) for k in ("image_processor", "feature_extractor"))):
        if holder is not None and hasattr(holder, key):
            value = getattr(holder, key)
            return dict(value) if hasattr(value, "keys") and not isinstance(value, dict) else value
    return None


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual == expected
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return math.isclose(actual, expected, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(expected, (list, tuple)) and isinstance(actual, (list, tuple)):
        return len(actual) == len(expected) and all(_same(a, e) for a, e in zip(actual, expected, strict=True))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return all(_same(actual.get(k), v) for k, v in expected.items())
    return actual == expected


def check_remote_code(card: ModelCard, folder: str | Path) -> None:
    """Refuse remote code that is missing, or that would come from a repository the card does not pin.

    transformers follows ``auto_map`` in config.json: ``"module.Class"`` is read from the model's
    own folder, ``"org/repo--module.Class"`` is fetched from another repository, at the revision
    passed as ``code_revision`` or else at that repository's moving ``main``. The card pins the
    model's folder and, where its code lives elsewhere, that repository (its source of role
    "code"); nothing else may run.
    """
    path = Path(folder) / "config.json"
    config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    refs = [r for v in (config.get("auto_map") or {}).values() for r in (v if isinstance(v, list) else [v]) if r]
    if not refs:
        raise WeightsUnavailableError(f"{card.name}: {path} names no remote code (no auto_map), but the card runs "
                                      "the repository's own code: this revision does not ship it")
    code = card.hub_role("code")
    for ref in refs:
        repo, _, local = ref.rpartition("--")
        module = local.split(".")[0] + ".py"
        if repo:
            if code is None or repo != code.repo:
                raise UnsafeModelFileError(f"{card.name}: config.json loads code from {repo}, which the card does "
                                           "not pin (a source of role 'code'); refusing to run unpinned code")
        elif not (Path(folder) / module).is_file():
            raise WeightsUnavailableError(f"{card.name}: config.json names {ref}, but {folder} has no {module}")
