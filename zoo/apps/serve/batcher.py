"""Dynamic batching: the requests for one model wait in one bounded queue, and a worker thread embeds what is
waiting in one ``embed`` call.

The worker takes the oldest job, then keeps taking jobs that can share its call (same modality and options)
while the batch stays under its budget (tokens for text, items for media) and the oldest job has waited less
than ``max_wait`` seconds; then it runs ``model.embed`` once over the batch's items, in the jobs' order, and hands
each job its rows. The adapter's own batching (texts packed by token length, media in batches) runs inside that
call, so a batch computes exactly what ``model.embed(items of the batch)`` computes.

A bad item never fails another request: when ``embed`` raises an error that names an item, the job that holds
it gets that error (with the index inside its own request) and the batch runs again without it; any other error
makes each job of the batch run alone, so each gets its own answer. Jobs whose caller gave up (a timeout) are
dropped before they run.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import InvalidInputError


class QueueFull(Exception):
    """The model's queue holds its limit of items; the caller should retry later."""


@dataclass(eq=False)
class Job:
    """One request's items and ``embed`` options; ``future`` gets (the Embeddings of its items, their token count),
    or the error."""

    items: list[Any]
    options: dict[str, Any]
    cost: int
    key: tuple = ()
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.key = tuple(sorted(self.options.items()))


class Batcher:
    """One model's queue and the worker thread that embeds it.

    ``budget``: most cost per batch (the caller prices a job: tokens for text, items for media); a single job over
    it still runs, alone. ``max_wait``: seconds the oldest job may wait for others. ``max_queued``: most items
    waiting; :meth:`submit` raises :class:`QueueFull` past it. ``batching=False`` runs every job alone (the
    baseline the benchmark compares with). ``on_batch(n_jobs, n_items)`` is told about every batch run.
    ``arriving()``, when given, says how many requests are on their way to this queue (parsed or decoded right
    now): the worker waits for more only while some are, so a lone request never waits ``max_wait`` for nobody.
    ``count_tokens(items)`` gives a job's token count for the response's usage (run by the worker, the one
    thread that uses the model: tokenizers are not shared between threads); without it the count is 0.
    """

    def __init__(self, model: Any, *, budget: int, max_wait: float = 0.005, max_queued: int = 4096,
                 batching: bool = True, on_batch: Callable[[int, int], None] | None = None,
                 count_tokens: Callable[[list], int] | None = None, arriving: Callable[[], int] | None = None,
                 name: str = ""):
        self.model, self.budget, self.max_wait, self.max_queued = model, budget, max_wait, max_queued
        self.batching, self.on_batch, self.count_tokens, self.arriving = batching, on_batch, count_tokens, arriving
        self._jobs: deque[Job] = deque()
        self._queued_items = 0
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"zoo-serve-{name or model.name}", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Items waiting (not yet taken by the worker)."""
        return self._queued_items

    def submit(self, items: list[Any], options: dict[str, Any], cost: int) -> Future:
        job = Job(items=list(items), options=dict(options), cost=max(int(cost), 1))
        with self._cond:
            if self._closed:
                raise QueueFull("the model is being unloaded")
            if self._jobs and self._queued_items + len(job.items) > self.max_queued:
                raise QueueFull(f"{self._queued_items} items are waiting for this model (limit {self.max_queued})")
            self._jobs.append(job)
            self._queued_items += len(job.items)
            self._cond.notify()
        return job.future

    def close(self, timeout: float | None = None) -> None:
        """Stop taking jobs; the worker finishes those queued, then ends."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    # -- the worker ------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                if self.on_batch is not None:
                    self.on_batch(len(batch), sum(len(j.items) for j in batch))
                self._embed(batch)

    def _take(self, job: Job) -> None:
        self._jobs.remove(job)
        self._queued_items -= len(job.items)

    def _next_batch(self) -> list[Job] | None:
        """The next jobs to embed together ([] when all taken were cancelled; None when closed and empty)."""
        with self._cond:
            while not self._jobs:
                if self._closed:
                    return None
                self._cond.wait()
            first = self._jobs[0]
            self._take(first)
            batch, cost = [first], first.cost
            if self.batching:
                deadline = first.queued_at + self.max_wait
                while cost < self.budget:
                    fits = next((j for j in self._jobs if j.key == first.key and cost + j.cost <= self.budget), None)
                    if fits is not None:
                        self._take(fits)
                        batch.append(fits)
                        cost += fits.cost
                        continue
                    left = deadline - time.monotonic()
                    if left <= 0 or self._closed:
                        break
                    if self.arriving is None:
                        self._cond.wait(left)
                    elif self.arriving() > 0:
                        self._cond.wait(min(left, 0.0005))  # a submit wakes it; a request that fails first does not
                    else:
                        break
        return [job for job in batch if job.future.set_running_or_notify_cancel()]

    def _embed(self, batch: list[Job]) -> None:
        while batch:
            items = [item for job in batch for item in job.items]
            try:
                out = self.model.embed(items, **batch[0].options)
            except InvalidInputError as exc:
                if exc.index is None or len(batch) == 1:
                    break  # not one item's fault: each job alone, below
                owner, start = _owner(batch, exc.index)
                owner.future.set_exception(_reindexed(exc, exc.index - start))
                batch = [job for job in batch if job is not owner]
                continue
            except BaseException:  # noqa: BLE001 - any other failure: each job runs alone below
                break
            start = 0
            for job in batch:
                self._answer(job, out[start : start + len(job.items)])
                start += len(job.items)
            return
        for job in batch:
            try:
                out = self.model.embed(job.items, **job.options)
            except BaseException as exc:  # noqa: BLE001 - the job's own error goes to its caller
                job.future.set_exception(exc)
            else:
                self._answer(job, out)

    def _answer(self, job: Job, out: Any) -> None:
        try:
            tokens = self.count_tokens(job.items) if self.count_tokens is not None else 0
        except Exception:  # noqa: BLE001 - a count is for usage only; the vectors are the answer
            tokens = 0
        job.future.set_result((out, tokens))


def _owner(batch: list[Job], index: int) -> tuple[Job, int]:
    """The job holding item ``index`` of the batch, and where its items start."""
    start = 0
    for job in batch:
        if index < start + len(job.items):
            return job, start
        start += len(job.items)
    raise IndexError(index)


def _reindexed(exc: InvalidInputError, index: int) -> InvalidInputError:
    """``exc`` naming ``index`` (the item's place in its own request) instead of its place in the batch."""
    message = str(exc).removeprefix(f"input[{exc.index}]: ")
    new = type(exc).__new__(type(exc))
    InvalidInputError.__init__(new, message, index=index)
    if hasattr(exc, "limit"):
        new.limit = exc.limit
    return new
