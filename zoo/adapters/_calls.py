"""The per-object call lock: public calls run one at a time on an embedder, across threads and forks.

Owns ``SERIALIZED_CALLS`` (the calls wrapped, wherever a subclass defines them), the wrapper, the
set of live embedders whose locks a forked child renews, and ``CallLockMixin``, which wraps a
subclass's calls as it is defined and drops the lock when an embedder is pickled or copied.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import weakref
from typing import Any

#: Public calls that run one at a time on an object, wherever a subclass defines them.
SERIALIZED_CALLS = ("embed", "encode", "similarity", "classify", "embed_and_classify", "class_probabilities",
                    "transcribe")

_live: weakref.WeakSet[Any] = weakref.WeakSet()  # every BaseEmbedder made in this process


def _serialized(method):
    """``method`` holding its object's call lock (re-entrant: a call may make others on the same object)."""
    if getattr(method, "_serialized", False):
        return method

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        with self._call_lock:
            return method(self, *args, **kwargs)

    call._serialized = True
    return call


def _renew_locks_after_fork() -> None:
    """A forked child must not inherit a lock another thread of its parent held at fork time.

    Nor may it enter torch's OpenMP thread pool, which the fork left without its threads (the
    child would wait for them forever): a forked child computes on one thread.
    """
    for embedder in list(_live):
        embedder._call_lock = threading.RLock()
    torch = sys.modules.get("torch")
    if _live and torch is not None:
        torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_locks_after_fork)


class CallLockMixin:
    """Wraps every subclass's ``SERIALIZED_CALLS`` in the call lock; a pickled or copied embedder gets a new lock."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in SERIALIZED_CALLS:  # defined here or by a mixin
            method = getattr(cls, name, None)
            if callable(method) and not getattr(method, "_serialized", False):
                setattr(cls, name, _serialized(method))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_call_lock", None)  # a lock belongs to one process
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._call_lock = threading.RLock()
        _live.add(self)
