"""ImageNet-1k class names, in the classifier's index order (0 = "tench" ... 999 = "toilet tissue").

The names are read at run time from the metadata torchvision ships with its weight enums
(no download: the enum carries the list, the weights are never fetched). They are the short
WordNet names in the standard order of the 1,000 ILSVRC-2012 synsets sorted by id, the order
used by TF/Keras/timm ImageNet classifiers with 1,000 outputs (no background class).
"""

from __future__ import annotations

import functools

#: Index groups of related classes, handy for checks ("is this some kind of cat?").
DOMESTIC_CATS = (281, 282, 283, 284, 285)  # tabby, tiger cat, Persian cat, Siamese cat, Egyptian cat


@functools.cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names, index i = classifier output i."""
    from torchvision.models import ResNet50_Weights

    names = tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
    if len(names) != 1000:  # pragma: no cover - guards against a torchvision change
        raise RuntimeError(f"torchvision's ImageNet metadata lists {len(names)} classes, expected 1000")
    return names
