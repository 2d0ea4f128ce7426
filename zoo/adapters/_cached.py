"""``embed(cache=...)``: embedding through an ``EmbeddingCache``.

Owns ``CachedEmbedMixin._embed_cached`` (look every item up, embed only the misses, store them) and
``_spread_rows``, which spreads the misses' per-row ``info`` over every input of the call.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.adapters._inputs import TEXT_MODALITIES, _with_index
from zoo.embeddings import Embeddings
from zoo.errors import InvalidInputError

if TYPE_CHECKING:
    from zoo.data.cache import EmbeddingCache


class CachedEmbedMixin:
    """The cache path of :meth:`BaseEmbedder.embed`."""

    def _embed_cached(self, inputs: list, cache: EmbeddingCache, call: dict[str, Any]) -> Embeddings:
        """``embed`` through the cache: look every item up, embed only the misses (once each), store them."""
        from zoo.data.cache import content_key, space_fingerprint

        modality = call["modality"]
        space = {k: v for k, v in call.items() if k not in ("batch_size", "progress", "low_memory", "calibration")}
        if call["calibration"] is not None:
            space["calibration"] = content_key(np.asarray(call["calibration"]))
        fingerprint = space_fingerprint(self, **space)
        keys = []
        for i, item in enumerate(inputs):
            if isinstance(item, str) and modality not in TEXT_MODALITIES:
                item = Path(item)  # a str is a file path for every modality but text
            try:
                keys.append(cache.key(content_key(item, index=i), fingerprint))
            except OSError as exc:
                raise InvalidInputError(f"cannot read {item}: {exc.strerror or exc}", index=i) from exc
        found = cache.get_many(list(dict.fromkeys(keys)))
        todo = {k: i for i, k in enumerate(keys) if k not in found}  # first item of every missing key
        out = None
        if todo:
            at = list(todo.values())
            try:
                out = self.embed([inputs[i] for i in at], **call)
            except InvalidInputError as exc:  # name the caller's index, not the index among the misses
                if exc.index is None or not 0 <= exc.index < len(at):
                    raise
                message = str(exc).removeprefix(f"input[{exc.index}]: ")
                raise _with_index(exc, message, at[exc.index]) from exc
            new = dict(zip(todo, out.vectors, strict=True))
            cache.put_many(new.items())
            found.update(new)
        hits = len(inputs) - len(todo)
        cache.hits, cache.misses = cache.hits + hits, cache.misses + len(todo)
        info = dict(out.info) if out is not None else {"similarity": self.card.similarity}
        if out is not None and hits:
            row = {k: r for r, k in enumerate(todo)}
            info = _spread_rows(info, [row.get(k, -1) for k in keys])
        info.update(cache_hits=hits, cache_misses=len(todo))
        dim = call["dim"] or self.dim
        return Embeddings(vectors=np.stack([found[k] for k in keys]), space=self.space, model=self.name,
                          modality=modality, normalized=call["normalize"] or (self.card.pooling == "model"
                                                                              and self.card.normalize),
                          precision=call["precision"], dim=dim, info=info)


def _spread_rows(info: dict[str, Any], rows: list[int]) -> dict[str, Any]:
    """Per-row arrays of a cached call's info (one row per embedded miss) spread over every input.

    ``rows[j]`` is input j's row among the misses, or -1 for a cache hit, whose row is NaN: the
    cache keeps vectors, not how they were made (a binding composite's expert weights, say).
    """
    at = np.asarray(rows)
    embedded = at >= 0
    out = {}
    for key, value in info.items():
        if isinstance(value, np.ndarray) and value.ndim and len(value) == at.max() + 1:
            full = np.full((len(at), *value.shape[1:]), np.nan)
            full[embedded] = value[at[embedded]]
            value = full
        out[key] = value
    return out
