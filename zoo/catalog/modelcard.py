"""Model cards: the data that says what a model is and how it must be run.

A card is one TOML file in ``zoo/cards``; its file stem is the registry name. Cards are
validated strictly: an unknown field, a wrong type or a bad value raises CardError, so a
typo in a card fails the test that loads every shipped card instead of being ignored.
This module imports only the standard library.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from zoo.catalog.card_sources import HEX64, Source, source_from
from zoo.catalog.examples import Example, example_from
from zoo.catalog.modelcard_md import render
from zoo.errors import CardError

MODALITIES = ("text", "code", "image", "audio", "points", "video", "document", "interleaved")
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")

#: Where a card's claim of fidelity comes from (``evidence``); an empty list means "not checked".
EVIDENCE = {
    "reference-real": "compared with the reference library's own output on the real weights",
    "published-example": "the real weights reproduced the example the model's authors published",
    "reference-tiny": "compared with the reference library on tiny random weights of the same architecture "
                      "(the code path, not the trained weights)",
}

WeightFormat = Literal["safetensors", "onnx", "ctranslate2", "torch-weights-only"]


@dataclass(frozen=True)
class ModelCard:
    """Everything the zoo knows about one model, without touching its weights."""

    name: str
    adapter: str
    modalities: tuple[str, ...]
    dim: int
    description: str
    license: str
    sources: tuple[Source, ...]
    space: str = ""
    similarity: Literal["cosine", "dot"] = "cosine"
    pooling: Literal["mean", "cls", "last", "model", ""] = ""
    max_tokens: int = 0
    normalize: bool = True
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt: str = ""
    instruction_template: str = ""
    matryoshka_dims: tuple[int, ...] = ()
    weights_format: WeightFormat = "safetensors"
    remote_code: bool = False
    offline_ready: bool = False
    offline_note: str = ""
    parity: str = ""
    evidence: tuple[str, ...] = ()
    examples: tuple[Example, ...] = ()
    paper: str = ""
    params: int = 0
    languages: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    path: str = ""  # where the card was read from (not a TOML field)

    def __post_init__(self) -> None:
        if not self.space:
            object.__setattr__(self, "space", self.name)

    @property
    def hub_source(self) -> Source | None:
        """The hub repository the adapter loads its weights from (role "model")."""
        return next((s for s in self.sources if s.kind == "hub" and s.role == "model"), None)

    @property
    def hub_sources(self) -> tuple[Source, ...]:
        """Every hub repository the card needs: the model's, then a LoRA adapter's and remote code's."""
        return tuple(s for s in self.sources if s.kind == "hub")

    def hub_role(self, role: str) -> Source | None:
        return next((s for s in self.sources if s.kind == "hub" and s.role == role), None)

    @property
    def uses_instructions(self) -> bool:
        return bool(self.instruction_template)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def content_sha256(self) -> str:
        """sha256 hex of the card's content (sources, pins, options, pooling...), not of where it was read from."""
        import hashlib
        import json

        facts = self.to_dict() | {"path": ""}
        return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()

    def to_markdown(self) -> str:
        """The card as a Hugging Face style README: YAML front matter, then Markdown."""
        return render(self)


_CARD_FIELDS = {f.name for f in dataclasses.fields(ModelCard)}
_REQUIRED = ("adapter", "modalities", "dim", "description", "license", "sources")
_LITERALS = {
    "similarity": ("cosine", "dot"),
    "pooling": ("mean", "cls", "last", "model", ""),
    "weights_format": ("safetensors", "onnx", "ctranslate2", "torch-weights-only"),
}
_TYPES: dict[str, type | tuple[type, ...]] = {
    "adapter": str,
    "dim": int,
    "description": str,
    "license": str,
    "space": str,
    "similarity": str,
    "pooling": str,
    "max_tokens": int,
    "normalize": bool,
    "default_prompt": str,
    "instruction_template": str,
    "weights_format": str,
    "remote_code": bool,
    "offline_ready": bool,
    "offline_note": str,
    "parity": str,
    "paper": str,
    "params": int,
    "options": dict,
    "prompts": dict,
}


def _fail(where: str, msg: str) -> CardError:
    return CardError(f"card {where}: {msg}")


def card_from_dict(name: str, raw: dict[str, Any], *, path: str = "") -> ModelCard:
    """Validate a parsed TOML table and build the card. Raises CardError on any problem."""
    where = repr(name)
    if not NAME.match(name):
        raise _fail(where, "names are lower-case letters, digits, '.', '_' and '-'")
    unknown = set(raw) - (set(_CARD_FIELDS) - {"name", "path"})
    if unknown:
        raise _fail(where, f"unknown field(s) {sorted(unknown)}")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise _fail(where, f"missing field(s) {missing}")
    for key, typ in _TYPES.items():
        if key in raw and not (isinstance(raw[key], typ) and not (typ is int and isinstance(raw[key], bool))):
            raise _fail(where, f"{key} must be {getattr(typ, '__name__', typ)}, not {type(raw[key]).__name__}")
    for key, allowed in _LITERALS.items():
        if key in raw and raw[key] not in allowed:
            raise _fail(where, f"{key} must be one of {allowed}, not {raw[key]!r}")
    mods = raw["modalities"]
    if not isinstance(mods, list) or not mods or any(m not in MODALITIES for m in mods):
        raise _fail(where, f"modalities must be a non-empty list drawn from {MODALITIES}")
    if raw["dim"] <= 0:
        raise _fail(where, "dim must be positive")
    mrl = raw.get("matryoshka_dims", [])
    if not isinstance(mrl, list) or any(not isinstance(d, int) or not 0 < d <= raw["dim"] for d in mrl):
        raise _fail(where, f"matryoshka_dims must be integers in 1..{raw['dim']}")
    prompts = raw.get("prompts", {})
    if not all(isinstance(v, str) for v in prompts.values()):
        raise _fail(where, "prompts must map names to strings")
    if raw.get("default_prompt") and raw["default_prompt"] not in prompts:
        raise _fail(where, f"default_prompt {raw['default_prompt']!r} is not one of the prompts")
    template = raw.get("instruction_template", "")
    if template and ("{instruction}" not in template or "{input}" not in template):
        raise _fail(where, "instruction_template needs both {instruction} and {input}")
    for key in ("languages", "tags", "evidence", "examples"):
        if not isinstance(raw.get(key, []), list):
            raise _fail(where, f"{key} must be a list")
    unknown_evidence = [e for e in raw.get("evidence", []) if e not in EVIDENCE]
    if unknown_evidence:
        raise _fail(where, f"evidence must be drawn from {sorted(EVIDENCE)}, not {unknown_evidence}")
    try:
        examples = tuple(example_from(e, f"examples[{i}]") for i, e in enumerate(raw.get("examples", [])))
    except ValueError as exc:
        raise _fail(where, str(exc)) from None
    if "published-example" in raw.get("evidence", []) and not examples:
        raise _fail(where, "evidence 'published-example' needs the example on the card ([[examples]])")
    sources_raw = raw["sources"]
    if not isinstance(sources_raw, list) or not sources_raw:
        raise _fail(where, "sources must be a non-empty array of tables")
    sources = tuple(source_from(where, s, i) for i, s in enumerate(sources_raw))
    hub_roles = [s.role for s in sources if s.kind == "hub"]
    if hub_roles and (hub_roles.count("model") != 1 or any(hub_roles.count(r) > 1 for r in ("adapter", "code"))):
        raise _fail(where, f"hub sources need exactly one of role 'model' and at most one adapter and one code "
                           f"repository, not {hub_roles}")
    if "code" in hub_roles and not raw.get("remote_code"):
        raise _fail(where, "a 'code' hub source is for remote code: set remote_code = true")
    if raw.get("remote_code") and not any(s.kind == "hub" for s in sources):
        raise _fail(where, "remote_code needs a hub source pinned to a revision")
    if raw.get("offline_ready") and not any(s.kind in ("package", "bundled", "local") for s in sources):
        raise _fail(where, "offline_ready needs a package, bundled or local source that holds the weights")
    if raw.get("options", {}).get("padding_side", "right") not in ("right", "left"):
        raise _fail(where, "options.padding_side must be 'right' or 'left'")
    if raw.get("options", {}).get("padding_side") == "left" and raw.get("pooling") != "last":
        raise _fail(where, "left padding shifts absolute positions; only last-token (decoder) cards may use it")
    tok = raw.get("options", {}).get("tokenizer")
    if tok is not None:
        pins = tok.get("sha256") if isinstance(tok, dict) else None
        if not (isinstance(pins, dict) and pins and tok.get("package")
                and all(isinstance(v, str) and HEX64.match(v) for v in pins.values())):
            raise _fail(where, "options.tokenizer needs a package and the sha256 of every file read from it")
    if not raw.get("offline_ready") and not raw.get("offline_note"):
        raise _fail(where, "a card that is not offline-ready must say why in offline_note")
    values = dict(raw)
    values.update(
        modalities=tuple(mods),
        matryoshka_dims=tuple(sorted(mrl)),
        languages=tuple(raw.get("languages", [])),
        evidence=tuple(raw.get("evidence", [])),
        examples=examples,
        tags=tuple(raw.get("tags", [])),
        sources=sources,
    )
    return ModelCard(name=name, path=path, **values)


def read_card(path: str | Path) -> ModelCard:
    """Read and validate one card file; the registry name is the file stem."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise CardError(f"card {path.name}: not valid TOML: {exc}") from exc
    return card_from_dict(path.stem, raw, path=str(path))
