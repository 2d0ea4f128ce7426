"""``embed_and_classify`` for adapters whose network gives features and class scores in one pass.

The adapter's ``_encode`` calls :meth:`ClassifyingMixin.keep_probabilities` with each call's class
probabilities; they travel in that call's own ``ctx.info`` (never on the shared object), so a
call made from another thread can neither see nor replace them. With ``cache=``, items whose
vectors came from the cache have no probabilities from this call: they are classified afresh.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo.adapters.base import EmbedContext
from zoo.embeddings import Embeddings

_KEY = "class_probabilities"


class ClassifyingMixin:
    """Adds ``embed_and_classify`` to an embedder with ``class_probabilities`` and ``top_classes``."""

    default_top_k = 5
    _keeping = False  # set only while this object's call lock is held by embed_and_classify

    def keep_probabilities(self, ctx: EmbedContext, probs: np.ndarray | None) -> None:
        """Record one ``_encode`` call's (N, C) probabilities in its context, when a caller wants them."""
        if self._keeping and probs is not None:
            ctx.info[_KEY] = probs

    def embed_and_classify(self, inputs: Any, top_k: int | None = None, **embed_options: Any):
        """Embed and classify in the same forward passes.

        Returns ``(embeddings, classes)``: the :meth:`embed` result (``embed_options`` are its
        options) and, per input, its ``top_k`` (class name, probability) pairs, most probable first
        (``default_top_k`` of the adapter when not given).
        """
        top_k = self.default_top_k if top_k is None else top_k
        self.top_classes(np.zeros((0, len(self.class_names)), dtype=np.float32), top_k)  # check top_k, the head
        self._keeping = True
        try:
            emb: Embeddings = self.embed(inputs, **embed_options)
        finally:
            self._keeping = False
        probs = emb.info.pop(_KEY, None)
        if probs is None:
            probs = np.full((len(emb.vectors), len(self.class_names)), np.nan, dtype=np.float32)
        missing = np.flatnonzero(np.isnan(probs).any(axis=1))  # items the cache answered
        if len(missing):
            items = self.as_items(inputs)
            probs = np.asarray(probs, dtype=np.float32)
            probs[missing] = self.class_probabilities([items[i] for i in missing])
        return emb, self.top_classes(probs, top_k)
