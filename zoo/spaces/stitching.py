"""Stitches as first-class zoo objects: fit between two models, register, find, and use in similarity.

:func:`stitch` embeds an anchor set with two zoo models and fits a :class:`zoo.align.Stitch`
from the first model's space to the second's; held-out items, when given, measure it. A
registered stitch (in memory with :func:`register_stitch`, or saved under
``$ZOO_HOME/stitches/<name>/``) is found by :func:`find_stitch`, and ``zoo.similarity`` uses it
to compare vectors of the two spaces it joins, saying which stitch it used.

Everything here is numpy-only except the model calls :func:`stitch` makes.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo.catalog.sources import zoo_home
from zoo.errors import IntegrityError, InvalidInputError, RegistryError, SpaceMismatchError, ZooError

_lock = threading.RLock()
_stitches: dict[str, Any] = {}  # name -> Stitch
_scanned: set[Path] = set()
#: A stitch name: one folder name under stitch_dir() (no separators, no "..", no leading dot).
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def stitch_dir() -> Path:
    """Where saved stitches are looked for: ``$ZOO_HOME/stitches``."""
    return zoo_home() / "stitches"


def default_name(source_space: str, target_space: str) -> str:
    """``<source>__<target>``, with any character outside ``[A-Za-z0-9._-]`` replaced by ``_`` (a folder name)."""
    name = _UNSAFE.sub("_", f"{source_space}__{target_space}")[:200]
    return name if NAME.match(name) else f"s{name}"[:200]


def check_name(name, what: str = "name") -> str:
    """``name`` if it is a valid stitch name (one safe folder name); else InvalidInputError."""
    if not isinstance(name, str) or not NAME.match(name):
        raise InvalidInputError(f"{what} must be a stitch name of letters, digits, '.', '_' and '-' (at most 200, "
                                f"not starting with '.' or '-'), not {name!r:.120}")
    return name


def _check_stitch(st, what: str = "stitch"):
    from zoo.spaces.align import Stitch

    if not isinstance(st, Stitch):
        raise InvalidInputError(f"{what} must be a zoo.align.Stitch, not {type(st).__name__}")
    return st


def register_stitch(st, name: str | None = None, *, overwrite: bool = False) -> str:
    """Make a stitch findable by name and by its two spaces; returns its name."""
    _check_stitch(st)
    name = default_name(st.source.space, st.target.space) if name is None else check_name(name)
    with _lock:
        if name in _stitches and not overwrite:
            raise RegistryError(f"a stitch named {name!r} is already registered; pass overwrite=True to replace it")
        _stitches[name] = st
    return name


def unregister_stitch(name: str) -> None:
    with _lock:
        _stitches.pop(name, None)


def _load_saved(card: Path):
    """``Stitch.load(card)``; an unreadable file is a CardError, never a raw OSError."""
    from zoo.errors import CardError
    from zoo.spaces.align import Stitch

    try:
        return Stitch.load(card)
    except OSError as exc:
        raise CardError(f"{card}: cannot read the saved stitch ({exc.strerror or exc})") from None


def _scan_saved() -> None:
    """Register every valid stitch saved under ``stitch_dir()`` (once per folder).

    A saved stitch that does not load (damaged, edited after saving, unreadable) is skipped
    with a UserWarning naming its file and the error; the others stay available, and the
    folder counts as scanned only once every file in it has been tried.
    """
    root = stitch_dir()
    with _lock:
        if root in _scanned or not root.is_dir():
            return
        for card in sorted(root.glob("*/stitch.toml")):
            name = card.parent.name
            if name in _stitches:
                continue
            if not NAME.match(name):
                warnings.warn(f"skipping the saved stitch in {card.parent}: {name!r} is not a stitch name "
                              "(letters, digits, '.', '_' and '-')", UserWarning, stacklevel=4)
                continue
            try:
                _stitches[name] = _load_saved(card)
            except ZooError as exc:
                warnings.warn(f"skipping the saved stitch {name!r} ({card}): {type(exc).__name__}: {exc}",
                              UserWarning, stacklevel=4)
        _scanned.add(root)


def rescan() -> None:
    """Forget which folders were scanned: the next lookup reads ``stitch_dir()`` again."""
    with _lock:
        _scanned.clear()


def registered_stitches() -> dict[str, Any]:
    """Name -> Stitch for every registered or saved stitch."""
    _scan_saved()
    with _lock:
        return dict(_stitches)


def load_stitch(name: str):
    """A registered or saved stitch by name.

    A saved stitch that was skipped by the scan (see :func:`registered_stitches`) is read again
    here, so asking for it by name raises its typed error (CardError, IntegrityError).
    """
    check_name(name)
    found = registered_stitches().get(name)
    card = stitch_dir() / name / "stitch.toml"
    if found is None and card.is_file():
        with _lock:
            found = _stitches.setdefault(name, _load_saved(card))
    if found is None:
        known = ", ".join(sorted(registered_stitches())) or "none"
        raise RegistryError(f"no stitch named {name!r} (registered: {known}; saved ones live in {stitch_dir()})")
    return found


def find_stitch(source_space: str, target_space: str) -> tuple[str, Any] | None:
    """(name, stitch) of a registered stitch mapping ``source_space`` into ``target_space``, or None.

    When several do, the one with the best held-out recall@1 wins (then the name, for a stable choice).
    """
    for what, space in (("source_space", source_space), ("target_space", target_space)):
        if not isinstance(space, str):
            raise InvalidInputError(f"{what} must be a space id (str), not {type(space).__name__}")
    hits = [(n, s) for n, s in registered_stitches().items()
            if s.source.space == source_space and s.target.space == target_space]
    if not hits:
        return None
    return min(hits, key=lambda h: (-float((h[1].quality or {}).get("recall_at_1", 0.0)), h[0]))


def join(a, b) -> tuple[Any, Any, str]:
    """Bring Embeddings ``a`` and ``b`` of two spaces into one with a registered stitch.

    Returns (a', b', stitch name). The stitch maps a into b's space if one exists, else b into
    a's. Raises SpaceMismatchError when no registered stitch joins the spaces.
    """
    from zoo.embeddings import Embeddings

    for what, e in (("a", a), ("b", b)):
        if not isinstance(e, Embeddings):
            raise InvalidInputError(f"{what} must be zoo Embeddings (they carry their space), not {type(e).__name__}")
    forward = find_stitch(a.space, b.space)
    if forward is not None:
        return forward[1].apply(a), b, forward[0]
    backward = find_stitch(b.space, a.space)
    if backward is not None:
        return a, backward[1].apply(b), backward[0]
    raise SpaceMismatchError(
        f"cannot compare vectors from space {a.space!r} (model {a.model}) with space {b.space!r} "
        f"(model {b.model}): embed both with one model, or join the spaces with a stitch "
        f"(zoo.stitch({a.model!r}, {b.model!r}, anchors=...))"
    )


def _anchor_items(anchors) -> tuple[list, Any]:
    """(items to embed, AnchorSet or None) from what the caller passed as anchors."""
    from zoo.spaces.align import AnchorSet
    from zoo.spaces.align._files import sha256_file

    if isinstance(anchors, (str, Path)) and Path(anchors).suffix == ".json":
        anchors = AnchorSet.load(anchors)
    if isinstance(anchors, AnchorSet):
        if anchors.kind != "file":
            return list(anchors.items), anchors
        if len(anchors.labels) != len(anchors.items):
            raise InvalidInputError("a file anchor set needs its files' paths as labels (AnchorSet.from_files)")
        for i, (label, digest) in enumerate(zip(anchors.labels, anchors.items, strict=True)):
            try:
                found = sha256_file(Path(label))
            except OSError as exc:
                raise InvalidInputError(f"anchor file {label!r} cannot be read ({exc.strerror or exc})",
                                        index=i) from None
            if found != digest:
                raise IntegrityError(f"anchor file {label!r} has sha256 {found[:12]}..., not the anchor set's "
                                     f"{digest[:12]}...: the file changed after the set was made", path=label)
        return list(anchors.labels), anchors
    if isinstance(anchors, (str, bytes)) or not isinstance(anchors, Sequence):
        raise InvalidInputError("anchors must be an AnchorSet, an anchor .json file or a list of items")
    items = list(anchors)
    if len(items) < 2:
        raise InvalidInputError(f"anchors must hold at least 2 items, not {len(items)}")
    if all(isinstance(x, (str, Path)) for x in items) and all(_is_file(x) for x in items):
        return items, AnchorSet.from_files(items)  # files: hashed by content
    if all(isinstance(x, str) for x in items):
        return items, AnchorSet(tuple(items))
    return items, None  # arrays, images in memory: no content hash on the card


def _is_file(item) -> bool:
    try:
        return Path(item).is_file()
    except (OSError, ValueError):  # a name too long for a path, an embedded NUL
        return False


def _model(m, what: str):
    if isinstance(m, str):
        from zoo.catalog.loader import load

        return load(m)
    if not callable(getattr(m, "embed", None)):
        raise InvalidInputError(f"{what} must be a zoo model name or a loaded embedder (with .embed), "
                                f"not {type(m).__name__}")
    return m


def stitch(model_a, model_b, anchors, *, test: Sequence | None = None, method: str = "procrustes",
           modality: str | None = None, name: str | None = None, register: bool = True, save: bool = False,
           batch_size: int | None = None, **fit_options: Any):
    """Fit a stitch from ``model_a``'s space to ``model_b``'s on anchors both models embed.

    Args:
        model_a, model_b: zoo model names or loaded embedders.
        anchors: an AnchorSet, its saved ``.json``, or a list of items (texts, image paths, ...).
        test: held-out items (never among the anchors) to measure the stitch on; the result's
            ``quality`` then holds recall@1/@10, MRR, top-10 Jaccard, linear CKA and mutual-kNN.
        method: "procrustes" (default), "lstsq", "ridge" or "affine" (see zoo.align.fit_stitch).
        modality: the items' modality, for models that embed several.
        name: the registered / saved name (default ``<space a>__<space b>``).
        register: make ``zoo.similarity`` use it for these two spaces.
        save: also write it under ``$ZOO_HOME/stitches/<name>/``.
        **fit_options: passed to zoo.align.fit_stitch (alpha, normalize, dim_policy, ...).
    """
    from zoo.spaces.align import evaluate_stitch, fit_stitch

    if name is not None:
        check_name(name)
    if test is not None and (isinstance(test, (str, bytes)) or not isinstance(test, Sequence)):
        raise InvalidInputError(f"test must be a list of held-out items, not {type(test).__name__}")
    items, anchor_set = _anchor_items(anchors)
    a, b = _model(model_a, "model_a"), _model(model_b, "model_b")
    if test is not None and set(map(repr, test)) & set(map(repr, items)):
        raise InvalidInputError("test items must be held out: some are also anchors")
    kw = {"modality": modality, "batch_size": batch_size}
    ea, eb = a.embed(items, **kw), b.embed(items, **kw)
    fitted = fit_stitch(ea, eb, method=method, anchors=anchor_set, **fit_options)
    if test is not None:
        fitted = fitted.with_quality(evaluate_stitch(fitted, a.embed(list(test), **kw), b.embed(list(test), **kw)))
    name = name or default_name(fitted.source.space, fitted.target.space)
    if register:
        register_stitch(fitted, name, overwrite=True)
    if save:
        fitted.save(stitch_dir() / name)
    return fitted
