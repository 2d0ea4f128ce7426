"""The stitch card: a TOML file that says what a stitch maps, how it was fitted and how well it works.

A saved stitch is a folder with two files::

    stitch.safetensors    tensors "weight" (source dim, target dim) and "bias" (target dim,)
    stitch.toml           the card (below), written by zoo.align._files.dump_toml

    format = "zoo.stitch"
    format_version = 1
    weights = "stitch.safetensors"
    weights_sha256 = "<64 hex>"         sha256 of the weights file
    content_sha256 = "<64 hex>"         sha256 of every other field of the card (see content_sha256())

    [source]            [target]          the two spaces: space id, model name, dim
    space = "..."       space = "..."
    model = "..."       model = "..."
    dim = 384           dim = 512

    [fit]               method, normalize, center, dim_policy, alpha, scale, n_train
    [anchors]           (optional) hash, count, name, version of the AnchorSet fitted on
    [quality]           (optional) held-out n_test, knn_k, recall_at_1, recall_at_10, mrr,
                        ndcg_at_10, topk_jaccard, mutual_knn, linear_cka

Reading is strict, as for model cards: an unknown or missing field, a wrong type or a value
out of range raises CardError naming the field, so a hand-edited card fails loudly.

The card is sealed: ``content_sha256`` covers every field (the weights' sha256 included, so
the weights too), and ``Stitch.load`` refuses a card whose fields no longer match it with
IntegrityError: an edited ``normalize`` flag, space id, dim or quality figure - anything that
changes what the stitch does or which stitch ``zoo.similarity`` picks - is caught. It detects
edits and damage, not a forger who recomputes the hash. A card without ``content_sha256``
(written by an older zoo, whose hash covered the weights only) is refused unless the caller
opts in (``Stitch.load(..., allow_unsealed=True)``).
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path

from zoo.errors import CardError
from zoo.spaces.align._files import canonical_sha256, read_text

FORMAT = "zoo.stitch"
FORMAT_VERSION = 1
CARD_NAME = "stitch.toml"
WEIGHTS_NAME = "stitch.safetensors"
METHODS: tuple[str, ...] = ("procrustes", "lstsq", "ridge", "affine")
DIM_POLICIES: tuple[str, ...] = ("none", "pad", "pca")
QUALITY_KEYS: tuple[str, ...] = ("recall_at_1", "recall_at_10", "mrr", "ndcg_at_10", "topk_jaccard", "mutual_knn",
                                 "linear_cka")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.safetensors$")

_SPACE = {"space": str, "model": str, "dim": int}
SCHEMA: dict[str, dict[str, type]] = {
    "": {"format": str, "format_version": int, "weights": str, "weights_sha256": str, "content_sha256": str},
    "source": _SPACE,
    "target": _SPACE,
    "fit": {"method": str, "normalize": bool, "center": bool, "dim_policy": str, "alpha": float, "scale": bool,
            "n_train": int},
    "anchors": {"hash": str, "count": int, "name": str, "version": str},
    "quality": {"n_test": int, "knn_k": int} | dict.fromkeys(QUALITY_KEYS, float),
}
OPTIONAL_TABLES = ("anchors", "quality")


def _typed(where: str, value, typ: type):
    """``value`` if it has TOML type ``typ`` (ints are accepted as floats; bools are not ints)."""
    if typ is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise CardError(f"{where} must be a finite number, not {value!r}")
        return float(value)
    if isinstance(value, typ) and not (typ is int and isinstance(value, bool)):
        return value
    raise CardError(f"{where} must be of type {typ.__name__}, not {type(value).__name__} {value!r}")


def _table(doc: dict, name: str, path: Path) -> dict:
    fields = SCHEMA[name]
    if name == "" and "content_sha256" not in doc:  # an unsealed card (older zoo): Stitch.load decides
        fields = {k: v for k, v in fields.items() if k != "content_sha256"}
    table = {k: v for k, v in doc.items() if not isinstance(v, dict)} if name == "" else doc[name]
    prefix = f"{path}: {name}." if name else f"{path}: "
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise CardError(f"{prefix}{unknown[0]} is not a stitch card field (known: {', '.join(fields)})")
    missing = sorted(set(fields) - set(table))
    if missing:
        raise CardError(f"{prefix}{missing[0]} is missing")
    if not isinstance(table, dict):
        raise CardError(f"{path}: {name} must be a table")
    return {k: _typed(prefix + k, table[k], typ) for k, typ in fields.items()}


def _check(ok: bool, path: Path, message: str) -> None:
    if not ok:
        raise CardError(f"{path}: {message}")


def _check_values(card: dict, path: Path) -> None:
    top, fit = card[""], card["fit"]
    _check(top["format"] == FORMAT and top["format_version"] == FORMAT_VERSION, path,
           f"not a stitch card (format {top['format']!r} version {top['format_version']}; want {FORMAT!r} "
           f"{FORMAT_VERSION})")
    _check(bool(_FILE_NAME.match(top["weights"])), path,
           f"weights must be a plain file name ending in .safetensors, not {top['weights']!r}")
    _check(bool(_HEX64.match(top["weights_sha256"])), path, "weights_sha256 must be 64 lowercase hex digits")
    if "content_sha256" in top:
        _check(bool(_HEX64.match(top["content_sha256"])), path, "content_sha256 must be 64 lowercase hex digits")
    for side in ("source", "target"):
        _check(card[side]["dim"] >= 1, path, f"{side}.dim must be >= 1")
        _check(bool(card[side]["space"]), path, f"{side}.space must not be empty")
    _check(fit["method"] in METHODS, path, f"fit.method must be one of {METHODS}, not {fit['method']!r}")
    _check(fit["dim_policy"] in DIM_POLICIES, path, f"fit.dim_policy must be one of {DIM_POLICIES}")
    _check(fit["alpha"] > 0 if fit["method"] == "ridge" else fit["alpha"] == 0, path,
           "fit.alpha must be > 0 for ridge and 0 for the other methods")
    _check(fit["n_train"] >= 2, path, "fit.n_train must be >= 2")
    _check(not fit["scale"] or fit["method"] == "procrustes", path, "fit.scale applies to procrustes only")
    _check(fit["center"] or fit["method"] != "affine", path, "an affine stitch is always centred (fit.center)")
    if "anchors" in card:
        _check(bool(_HEX64.match(card["anchors"]["hash"])), path, "anchors.hash must be 64 lowercase hex digits")
        _check(card["anchors"]["count"] == fit["n_train"], path,
               f"anchors.count {card['anchors']['count']} differs from fit.n_train {fit['n_train']}")
    if "quality" in card:
        q = card["quality"]
        _check(1 <= q["knn_k"] < q["n_test"], path, "quality needs 1 <= knn_k < n_test")
        for key in QUALITY_KEYS:
            _check(0.0 <= q[key] <= 1.0 + 1e-6, path, f"quality.{key} must lie in [0, 1], not {q[key]}")


def content_sha256(card: dict[str, dict]) -> str:
    """The seal of a validated card: sha256 over every field but ``content_sha256`` itself."""
    return canonical_sha256({name: {k: v for k, v in table.items() if not (name == "" and k == "content_sha256")}
                             for name, table in card.items()})


def read_card(path: Path) -> dict[str, dict]:
    """Parse and validate a stitch card; returns ``{"": top-level fields, "source": {...}, ...}``.

    The seal (``content_sha256``) is checked by the caller, :meth:`zoo.align.Stitch.load`.
    """
    try:
        doc = tomllib.loads(read_text(path, "stitch card"))
    except (tomllib.TOMLDecodeError, RecursionError, ValueError) as exc:
        raise CardError(f"{path}: not a readable TOML stitch card ({exc})") from None
    return parse_card(doc, path)


def parse_card(doc: dict, path: Path) -> dict[str, dict]:
    """Validate a parsed stitch card (see :func:`read_card`)."""
    tables = {k for k, v in doc.items() if isinstance(v, dict)}
    unknown = sorted(tables - set(SCHEMA))
    if unknown:
        raise CardError(f"{path}: [{unknown[0]}] is not a stitch card table (known: {', '.join(sorted(SCHEMA)[1:])})")
    missing = sorted(set(SCHEMA) - tables - {""} - set(OPTIONAL_TABLES))
    if missing:
        raise CardError(f"{path}: the [{missing[0]}] table is missing")
    card = {name: _table(doc, name, path) for name in SCHEMA if name == "" or name in tables}
    _check_values(card, path)
    return card
