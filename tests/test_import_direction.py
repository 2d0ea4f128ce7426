"""Imports go down the architecture, never up: checked on every import statement in ``zoo/``, those inside
functions included (a lazy import is still a dependency).

The parts, lowest first: the core (errors, the Embeddings type), ``align`` (the numpy-only geometry of spaces:
anchors, stitches, metrics; a leaf library), the input decoders, the catalog (cards, sources, the registry,
loading), the adapters (with the ImageNet label set their classifiers give), spaces in use (registered stitches,
compatibility between models), data at scale (the vector store, dataset jobs), sample media, and the apps (CLI,
demo) on top. ``PARTS`` maps each module to its
part. The rules below are the ones the layout depends on; ``test_every_module_has_a_part`` keeps the table
complete, so a new module has to be placed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from zoo._moved import target

ZOO = Path(__file__).resolve().parent.parent / "zoo"

PARTS: dict[str, tuple[str, ...]] = {
    "core": ("zoo", "zoo.errors", "zoo.embeddings", "zoo._memory", "zoo._moved"),
    "align": ("zoo.spaces.align",),
    "inputs": ("zoo.inputs",),
    "catalog": ("zoo.catalog",),
    "adapters": ("zoo.adapters",),
    "spaces": ("zoo.spaces",),
    "data": ("zoo.data",),
    "samples": ("zoo.samples",),
    "apps": ("zoo.apps",),
}

#: part -> the parts it must never import, with the reason.
FORBIDDEN: dict[str, tuple[tuple[str, ...], str]] = {
    "align": (("inputs", "catalog", "adapters", "spaces", "data", "samples", "apps"),
              "align is numpy and its own files only, usable without models"),
    "inputs": (("catalog", "adapters", "spaces", "data", "samples", "apps"),
               "decoders take bytes and give arrays; they know nothing of models"),
    "catalog": (("spaces", "data", "samples", "apps"), "cards and loading sit below what uses models"),
    "adapters": (("spaces", "samples", "apps"), "an adapter embeds; what is done with vectors is above it"),
    "spaces": (("samples", "apps"), "spaces work on vectors"),
    "data": (("samples", "apps"), "data at scale serves the apps, not the other way"),
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ZOO.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module(p): p for p in sorted(ZOO.rglob("*.py"))}


def _part(module: str) -> str | None:
    module = target(module) or module  # an old path (zoo.store) counts as the module it names
    best = None
    for part, prefixes in PARTS.items():
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (part, len(prefix))
    return best[0] if best else None


def _imports(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports (``from a.b import c`` counts a.b, and a.b.c when that is a
    module of the zoo)."""
    known = set(_modules())
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known)
    return found


def test_every_module_has_a_part():
    unplaced = [m for m in _modules() if _part(m) is None]
    assert not unplaced, f"place these modules in PARTS: {unplaced}"


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_lower_parts_never_import_higher_ones(part):
    banned, why = FORBIDDEN[part]
    wrong = []
    for module, path in _modules().items():
        if _part(module) != part:
            continue
        for imported in sorted(_imports(path)):
            if imported.split(".")[0] == "zoo" and _part(imported) in banned and imported != "zoo":
                wrong.append(f"{module} imports {imported} ({_part(imported)})")
    assert not wrong, f"{part}: {why}\n" + "\n".join(wrong)


def test_only_apps_import_apps():
    wrong = [f"{m} imports {t}" for m, path in _modules().items() if _part(m) != "apps"
             for t in _imports(path) if _part(t) == "apps"]
    assert not wrong, wrong


#: The core's one upward import, lazy and documented where it is made: similarity() between two spaces looks
#: for a registered stitch (``zoo.similarity`` lives in the core so it needs no model); it is written
#: ``from zoo.spaces import stitching``, so both names count.
CORE_UPWARD = {("zoo.embeddings", "zoo.spaces"), ("zoo.embeddings", "zoo.spaces.stitching")}


def test_the_core_imports_only_the_core():
    """errors, the Embeddings type and the memory helpers sit under everything: they import no other part
    (the ``zoo`` package's lazy re-exports are its public face, not a dependency of the core)."""
    wrong = [f"{m} imports {t} ({_part(t)})" for m, path in _modules().items() if _part(m) == "core" and m != "zoo"
             for t in sorted(_imports(path)) if t.split(".")[0] == "zoo" and _part(t) not in ("core", None)
             and (m, t) not in CORE_UPWARD]
    assert not wrong, wrong


def test_align_is_numpy_only():
    """``zoo.align`` (anchors, stitches, metrics) runs without torch and without the rest of the zoo."""
    wrong = []
    for module, path in _modules().items():
        if _part(module) != "align":
            continue
        for imported in _imports(path):
            top = imported.split(".")[0]
            if top in ("torch", "torchvision", "torchaudio", "transformers") or (
                    top == "zoo" and _part(imported) != "align" and imported != "zoo.errors"):
                wrong.append(f"{module} imports {imported}")
    assert not wrong, wrong
