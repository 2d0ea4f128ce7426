"""The public names stay where users find them, so that moving a module cannot drop one silently.

Two guards: every name the README, ``docs/``, the benchmarks and the tests import from ``zoo`` (or reach as
``zoo.<module>.<name>`` in the README's and docs' examples) resolves; and ``PUBLIC``, the public API of the
modules users import, written out here, resolves name by name. A module that moves keeps its old import path
(a re-export) and so keeps passing; a name dropped on the way fails here, named.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: What ``import zoo`` and the user-facing modules offer (their ``__all__`` or public classes and functions).
PUBLIC: dict[str, tuple[str, ...]] = {
    "zoo": ("CardError", "Embeddings", "InputTooLargeError", "IntegrityError", "InvalidInputError",
            "MissingDependencyError", "ModelCard", "RegistryError", "SpaceMismatchError", "UnknownModelError",
            "UnsafeModelFileError", "WeightsUnavailableError", "ZooError", "card", "list_models", "load",
            "register", "register_adapter", "similarity", "stitch"),
    "zoo.errors": ("CardError", "InputTooLargeError", "IntegrityError", "InvalidInputError",
                   "MissingDependencyError", "RegistryError", "SpaceMismatchError", "UnknownModelError",
                   "UnsafeModelFileError", "WeightsUnavailableError", "ZooError"),
    "zoo.embeddings": ("Embeddings", "SimilarityMatrix", "l2_normalize", "quantize", "similarity", "truncate_dim"),
    "zoo.registry": ("adapter_class", "card", "list_models", "register", "register_adapter", "reload", "suggest",
                     "unregister", "user_cards_dir"),
    "zoo.modelcard": ("ModelCard", "Source", "card_from_dict", "read_card"),
    "zoo.sources": ("Availability", "Resolved", "availability", "check_format", "download_hub", "fetch",
                    "hf_cache_dir", "hf_endpoint", "hub_snapshot", "offline_reason", "package_folder", "resolve",
                    "resolve_hub", "sha256_file", "verify", "zoo_home"),
    "zoo.images": ("load_image", "load_images", "probe_image", "to_rgb"),
    "zoo.audio": ("load_audio", "load_audios"),
    "zoo.inputs.video": ("FrameSampling", "Video", "frame_indices", "is_video_file", "load_video", "pick_evenly"),
    "zoo.inputs.frames": ("FrameSampling", "frame_indices", "pick_evenly"),
    "zoo.inputs.documents": ("is_pdf", "load_page", "page_count"),
    "zoo.points": ("as_cloud_list", "load_point_cloud", "load_point_clouds", "normalize_unit_sphere", "sample_mesh"),
    "zoo.align": ("AnchorRef", "AnchorSet", "FitConfig", "RelativeProjector", "SpaceRef", "Stitch",
                  "evaluate_stitch", "farthest_point", "fit_stitch", "kmeans_medoids", "linear_cka", "metrics",
                  "modality_gap", "mrr", "mutual_knn", "ndcg_at_10", "random_anchors", "recall_at_k",
                  "relative_projection", "relative_representation", "retrieval_metrics", "select_anchors",
                  "topk_jaccard"),
    "zoo.stitching": ("find_stitch", "load_stitch", "register_stitch", "registered_stitches", "stitch",
                      "stitch_dir", "unregister_stitch"),
    "zoo.compat": ("Compatibility", "compatibility", "compatibility_from_vectors"),
    "zoo.cache": ("CacheCorruptionWarning", "EmbeddingCache", "content_key", "space_fingerprint"),
    "zoo.store": ("ANN_THRESHOLD", "Collection", "CollectionCorruptError", "Hit", "SearchResults", "VectorStore",
                  "exact_topk", "hamming_topk"),
    "zoo.scale": ("DatasetJob", "Plan", "embed_dataset", "plan_job", "read_rows"),
    "zoo.demo": ("DemoApp", "build_demo", "launch"),
    "zoo.cli": ("main",),
    "zoo.serve": ("ServeSettings", "create_app", "serve"),
    "zoo.client": ("Client", "ServerError", "audio", "document", "image", "points", "video"),
}


def _python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, re.S)


def _sources() -> list[tuple[str, str, bool]]:
    """(where, code, is_example) of every README/docs example block and every test and benchmark file."""
    out = []
    for md in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        out += [(f"{md.name} block {i}", block, True) for i, block in enumerate(_python_blocks(md.read_text()))]
    for folder in ("tests", "bench"):  # not hidden folders: a benchmark's baseline venv lives in bench/*/.venv
        out += [(str(p.relative_to(ROOT)), p.read_text(), False) for p in sorted((ROOT / folder).rglob("*.py"))
                if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)]
    return out


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == "zoo":
        return ".".join(["zoo", *reversed(parts)])
    return None


def _used() -> dict[tuple[str, str], str]:
    """(module, name) -> where it is used: ``from zoo.x import name`` anywhere, ``zoo.x.name`` in examples."""
    used: dict[tuple[str, str], str] = {}
    for where, code, example in _sources():
        tree = ast.parse(code)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "zoo":
                for alias in node.names:
                    used.setdefault((node.module, alias.name), where)
            elif example and isinstance(node, ast.Attribute) and not isinstance(getattr(node, "ctx", None), ast.Store):
                path = _dotted(node)
                if path and path.count(".") >= 1:
                    module, _, name = path.rpartition(".")
                    used.setdefault((module, name), where)
    return used


def _resolves(module: str, name: str) -> bool:
    """``from module import name`` works: an attribute of the module, or a submodule of that name."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        # ``zoo.x.y.name`` in an example: ``zoo.x.y`` may itself be an attribute chain (a class, a method)
        head, _, attr = module.rpartition(".")
        return bool(head) and _resolves(head, attr) and hasattr(getattr(importlib.import_module(head), attr,
                                                                         None), name)
    if hasattr(mod, name):
        return True
    try:
        importlib.import_module(f"{module}.{name}")
    except ImportError:
        return False
    return True


def test_every_name_the_docs_tests_and_benchmarks_import_resolves():
    used = _used()
    assert len(used) > 150  # the scan found the imports (a broken scan must not pass by finding nothing)
    missing = [f"{module}.{name} (used in {where})" for (module, name), where in sorted(used.items())
               if not _resolves(module, name)]
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_the_public_names_stay(module):
    mod = importlib.import_module(module)
    missing = [name for name in PUBLIC[module] if not hasattr(mod, name)]
    assert not missing, f"{module} lost {missing}"
    declared = getattr(mod, "__all__", None)
    if declared is not None:  # a module that declares its API declares at least these names
        assert set(PUBLIC[module]) <= set(declared), f"{module}.__all__ lacks {set(PUBLIC[module]) - set(declared)}"
