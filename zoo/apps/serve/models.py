"""The models a server holds: loaded on first request (or at start with ``preload``), each with its own
:class:`~zoo.apps.serve.batcher.Batcher`, and unloaded least recently used first when a memory budget would be
passed.

A model's memory is estimated from its card (parameters x 4 bytes, float32 weights); a model larger than the whole
budget still loads, alone. An unloaded model's batcher finishes the jobs already queued before it goes.
"""

from __future__ import annotations

import difflib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from zoo.apps.serve.batcher import Batcher
from zoo.apps.serve.protocol import RequestError
from zoo.errors import UnknownModelError

#: Most items per batch for media; texts are budgeted in tokens (:data:`TEXT_TOKEN_BUDGET`).
MEDIA_ITEM_BUDGET = 32
TEXT_TOKEN_BUDGET = 8192


@dataclass
class Served:
    """A loaded model, its batcher, and when it was last asked for."""

    name: str
    model: Any
    batcher: Batcher
    bytes: int
    priced_in_tokens: bool
    last_used: float = field(default_factory=time.monotonic)


def model_bytes(card) -> int:
    """The memory a model's weights take, estimated from its card (float32)."""
    return max(int(card.params or 0), 1) * 4


class ModelPool:
    """Models by registry name. ``names``: the models this server serves (empty: any registered name)."""

    def __init__(self, names: Sequence[str] = (), *, memory_budget: int | None = None, max_wait: float = 0.005,
                 max_queued: int = 4096, batching: bool = True, loader: Callable[[str], Any] | None = None,
                 on_batch: Callable[[str, int, int], None] | None = None,
                 arriving: Callable[[], int] | None = None):
        self.names = tuple(dict.fromkeys(names))
        self.memory_budget, self.max_wait = memory_budget, max_wait
        self.max_queued, self.batching = max_queued, batching
        self._loader = loader
        self._on_batch = on_batch
        self._arriving = arriving
        self._served: dict[str, Served] = {}
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def card(self, name: str):
        """The card of a model this server may serve; RequestError 404 (with suggestions) otherwise."""
        from zoo.catalog import registry

        if self.names and name not in self.names:
            close = difflib.get_close_matches(name, self.names, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise RequestError(404, f"model {name!r} is not served here; {hint}this server serves: "
                               f"{', '.join(self.names)}", param="model", code="model_not_found")
        try:
            return registry.card(name)
        except UnknownModelError as exc:
            raise RequestError(404, str(exc), param="model", code="model_not_found") from None

    def listed(self) -> list[str]:
        from zoo.catalog import registry

        return list(self.names) or registry.list_models()

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._served)

    def depths(self) -> dict[str, int]:
        """Items waiting, per loaded model."""
        with self._lock:
            return {name: s.batcher.depth for name, s in self._served.items()}

    def loaded_model(self, name: str) -> Served | None:
        """The served model ``name`` if it is loaded (no card lookup, no waiting), else None."""
        with self._lock:
            served = self._served.get(name)
            if served is not None:
                served.last_used = time.monotonic()
            return served

    def get(self, name: str) -> Served:
        """The served model ``name``, loading it (and unloading others past the budget) on first use."""
        card = self.card(name)
        with self._lock:
            served = self._served.get(name)
            if served is not None:
                served.last_used = time.monotonic()
                return served
            loading = self._loading.setdefault(name, threading.Lock())
        with loading:  # one load per model, however many requests ask for it at once
            with self._lock:
                if name in self._served:
                    return self._served[name]
            size = model_bytes(card)
            self._make_room(size)
            model = self._load(name)
            text = _is_text(card)
            batcher = Batcher(model, budget=TEXT_TOKEN_BUDGET if text else MEDIA_ITEM_BUDGET,
                              max_wait=self.max_wait, max_queued=self.max_queued, batching=self.batching,
                              on_batch=self._batch_hook(name), count_tokens=token_counter(model),
                              arriving=self._arriving, name=name)
            served = Served(name, model, batcher, size, priced_in_tokens=text)
            with self._lock:
                self._served[name] = served
            return served

    def _load(self, name: str):
        if self._loader is not None:
            return self._loader(name)
        import zoo

        return zoo.load(name)

    def _batch_hook(self, name: str) -> Callable[[int, int], None] | None:
        if self._on_batch is None:
            return None
        hook = self._on_batch
        return lambda jobs, items: hook(name, jobs, items)

    def _make_room(self, size: int) -> None:
        if self.memory_budget is None:
            return
        while True:
            with self._lock:
                used = sum(s.bytes for s in self._served.values())
                if not self._served or used + size <= self.memory_budget:
                    return
                oldest = min(self._served.values(), key=lambda s: s.last_used)
                del self._served[oldest.name]
            self._unload(oldest)

    @staticmethod
    def _unload(served: Served) -> None:
        from zoo._memory import release_memory

        served.batcher.close()
        served.model = None
        release_memory()

    def close(self) -> None:
        with self._lock:
            served, self._served = list(self._served.values()), {}
        for s in served:
            s.batcher.close()


def token_counter(model) -> Callable[[list], int] | None:
    """How many tokens a request's texts are, as the model sees them (truncated), for models whose adapter
    tokenizes texts itself (the text and code models); None for others, whose usage reports 0."""
    from zoo.adapters.text import TextEmbedder

    if not isinstance(model, TextEmbedder):
        return None
    return lambda items: sum(len(row) for row in model.tokenize([t for t in items if isinstance(t, str)]))


def _is_text(card) -> bool:
    return set(card.modalities) <= {"text", "code"}
