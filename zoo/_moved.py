"""The import paths modules had before the package was grouped by role, kept working, and the short public names
of two that never lived at the top (``zoo.serve``, ``zoo.client``).

``import zoo.store`` gives the very module object of ``zoo.data.store`` (one module, two names), so code,
tests and pickles that use an old path keep working, and patching an attribute through either name patches
both. A finder at the front of ``sys.meta_path`` answers only the names below; a package alias covers its
submodules too (``zoo.align.fit`` is ``zoo.spaces.align.fit``).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

#: old module path -> where the module lives now
MOVED: dict[str, str] = {
    # inputs: the decoders of untrusted files and their limits
    "zoo._limits": "zoo.inputs.limits",
    "zoo.images": "zoo.inputs.images",
    "zoo.audio": "zoo.inputs.audio",
    "zoo.points": "zoo.inputs.points",
    # catalog: cards, their sources and the registry, loading
    "zoo.modelcard": "zoo.catalog.modelcard",
    "zoo.modelcard_md": "zoo.catalog.modelcard_md",
    "zoo.card_sources": "zoo.catalog.card_sources",
    "zoo.examples": "zoo.catalog.examples",
    "zoo.hubfiles": "zoo.catalog.hubfiles",
    "zoo.registry": "zoo.catalog.registry",
    "zoo.sources": "zoo.catalog.sources",
    "zoo.adhoc": "zoo.catalog.adhoc",
    "zoo.loader": "zoo.catalog.loader",
    "zoo.verify": "zoo.catalog.verify",
    # adapters
    "zoo.lora": "zoo.adapters.lora",
    "zoo.imagenet": "zoo.adapters.imagenet",
    # spaces
    "zoo.align": "zoo.spaces.align",
    "zoo.stitching": "zoo.spaces.stitching",
    "zoo.compat": "zoo.spaces.compat",
    # data at scale
    "zoo.cache": "zoo.data.cache",
    "zoo.store": "zoo.data.store",
    "zoo.scale": "zoo.data.scale",
    # sample media
    "zoo.gallery": "zoo.samples.gallery",
    "zoo.shapes": "zoo.samples.shapes",
    # apps
    "zoo.cli": "zoo.apps.cli",
    "zoo.demo": "zoo.apps.demo",
    # short public names of modules that never lived at the top
    "zoo.serve": "zoo.apps.serve",
    "zoo.client": "zoo.apps.serve.client",
}


def target(name: str) -> str | None:
    """Where the module an old path names lives now (None for a path that did not move)."""
    if name in MOVED:
        return MOVED[name]
    for old, new in MOVED.items():
        if name.startswith(old + "."):
            return new + name[len(old):]
    return None


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target_module=None):
        if not fullname.startswith("zoo."):  # asked for every import in the process: answer the rest at once
            return None
        new = target(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return importlib.import_module(target(spec.name))  # the module itself, under its old name too

    def exec_module(self, module):
        pass  # already executed under its new name

    def get_code(self, fullname):
        """The moved module's code, for ``python -m OLD.PATH`` (runpy runs it as ``__main__``)."""
        new = target(fullname)
        return importlib.util.find_spec(new).loader.get_code(new)


_ALIAS = _Alias()


def install() -> None:
    if _ALIAS not in sys.meta_path:
        sys.meta_path.insert(0, _ALIAS)
