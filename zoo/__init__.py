"""embedding-zoo: a multimodal embedding model zoo.

>>> import zoo
>>> zoo.list_models("e5*", modality="text")        # names; no weights touched
>>> m = zoo.load("all-minilm-l6-v2")                # an Embedder
>>> e = m.embed(["a dog", "a puppy"])               # Embeddings: vectors + space id
>>> zoo.similarity(e, e)
>>> m.encode(["a dog"], normalize_embeddings=True)  # sentence-transformers' encode: its keywords and types
>>> e[0], e[1:], e + e, e.save("e.safetensors")     # rows, concatenation (one space) and files
>>> zoo.stitch("paraphrase-minilm-l3-v2", "all-minilm-l6-v2", anchors=texts)   # join two spaces

Importing ``zoo`` stays light: it pulls in neither torch nor numpy. Models, numpy and
torch are imported when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zoo import _moved

_moved.install()  # the modules' paths from before the package was grouped by role (zoo.store, zoo.images...)

from zoo.catalog.modelcard import ModelCard  # noqa: E402
from zoo.catalog.registry import card, list_models, register, register_adapter  # noqa: E402
from zoo.errors import (  # noqa: E402
    CardError,
    InputTooLargeError,
    IntegrityError,
    InvalidInputError,
    MissingDependencyError,
    RegistryError,
    SpaceMismatchError,
    UnknownModelError,
    UnsafeModelFileError,
    WeightsUnavailableError,
    ZooError,
)

if TYPE_CHECKING:
    from zoo.embeddings import Embeddings

__version__ = "0.1.0"

__all__ = [
    "CardError",
    "Embeddings",
    "InputTooLargeError",
    "IntegrityError",
    "InvalidInputError",
    "MissingDependencyError",
    "ModelCard",
    "RegistryError",
    "SpaceMismatchError",
    "UnknownModelError",
    "UnsafeModelFileError",
    "WeightsUnavailableError",
    "ZooError",
    "card",
    "list_models",
    "load",
    "register",
    "register_adapter",
    "similarity",
    "stitch",
]


def load(name: str, **kwargs: Any):
    """Load a model by name; see :func:`zoo.loader.load`."""
    from zoo.catalog.loader import load as _load

    return _load(name, **kwargs)


def similarity(a, b, **kwargs: Any):
    """Pairwise similarity of two Embeddings from one space (float, or quantized at one precision); see
    :func:`zoo.embeddings.similarity`."""
    from zoo.embeddings import similarity as _similarity

    return _similarity(a, b, **kwargs)


def stitch(model_a, model_b, anchors, **kwargs: Any):
    """Fit a stitch from one model's space to another's on shared anchors; see :func:`zoo.stitching.stitch`."""
    from zoo.spaces.stitching import stitch as _stitch

    return _stitch(model_a, model_b, anchors, **kwargs)


def __getattr__(name: str):
    if name == "Embeddings":
        from zoo.embeddings import Embeddings

        return Embeddings
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
