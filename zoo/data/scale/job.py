"""``embed_dataset``: a dataset job from its plan to its counts, the missing shards run on a Ray Data actor pool,
and the progress it shows (finished shards)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.data.scale.actor import ShardEmbedder, card_sha256
from zoo.data.scale.outputs import ERRORS_DIR, RECORDS_DIR, _check_manifest, _count_rows, _verified_todo
from zoo.data.scale.plan import plan_job
from zoo.data.scale.session import ray_session, stop_stale_ray
from zoo.errors import InvalidInputError

SHARD_ROWS = 1024
EMBED_ROWS = 256  # items per embed call inside a shard: the unit re-run item by item on a bad item
CACHE_FILE = "_cache.sqlite"


@dataclass
class DatasetJob:
    """What a job did: counts over the whole output folder, and what this run added.

    ``info["shard_seconds"]`` sums the time actors spent on this run's shards (reading, embedding,
    writing): the rest of ``seconds`` is Ray's overhead, actor start and model loading.
    """

    output: Path
    errors: Path
    items: int
    rows: int
    bad_items: int
    shards: int
    shards_embedded: int
    cache_hits: int = 0
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


def embed_dataset(model: str, source: Any, output: str | os.PathLike, *, column: str = "text",
                  modality: str | None = None, shard_rows: int = SHARD_ROWS, embed_rows: int = EMBED_ROWS,
                  actors: int | None = None, cpus_per_actor: int = 1, num_cpus: int | None = None,
                  address: str | None = None, cache: bool | str | os.PathLike = True, progress: bool = True,
                  suffixes: Sequence[str] | None = None, task_instruction: str | None = None,
                  prompt_name: str | None = None, batch_size: int | None = None,
                  id_column: str | None = None) -> DatasetJob:
    """Embed every item of ``source`` with ``model`` into Parquet shards under ``output``.

    Args:
        model: a registry name.
        source: a Parquet file or folder (embeds ``column``), or a folder, glob or list of files.
        output: the output folder; rerunning into it embeds only the shards still missing.
        column: the Parquet column of texts.
        modality: the items' modality, for models that embed several.
        shard_rows: items per output shard (part of the job's identity: keep it across reruns).
        embed_rows: items per embed call; a bad item makes its call rerun item by item.
        actors: model actors (default: CPUs available / ``cpus_per_actor``, at most one per shard).
        cpus_per_actor: CPUs (and torch threads) each actor takes.
        num_cpus: CPUs of the local Ray started for the job (default: all).
        address: an existing Ray cluster instead (its workers must see ``output``).
        cache: True for ``<output>/_cache.sqlite``, a path for another file, False for none.
        progress: count finished shards on stderr (a bar on a terminal, else a line per shard).
        suffixes: file suffixes taken from a folder (default: those of the modality).
        task_instruction, prompt_name, batch_size: as in ``embed``.
        id_column: a Parquet column (str or int values, each once in the job) whose values become the output's
            ids (and the errors table's) instead of the row numbers; part of the job's identity.
    """
    from zoo.catalog.registry import card as get_card

    started = time.perf_counter()
    if embed_rows < 1:
        raise InvalidInputError(f"embed_rows must be positive, not {embed_rows}")
    card = get_card(model)
    plan = plan_job(source, column=column, modality=modality, modalities=card.modalities, shard_rows=shard_rows,
                    suffixes=suffixes, id_column=id_column)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    options = {k: v for k, v in dict(task_instruction=task_instruction, prompt_name=prompt_name,
                                     batch_size=batch_size).items() if v is not None}
    facts = {"model": card.name, "card_sha256": card_sha256(card), "shard_rows": shard_rows, "items": plan.items,
             "modality": plan.modality, "options": {k: v for k, v in options.items() if k != "batch_size"},
             **plan.describe}
    facts = json.loads(json.dumps(facts))
    _check_manifest(out, facts, {t["name"]: t["items"] for t in plan.tasks})
    stop_stale_ray(out)
    for folder in (out, out / ERRORS_DIR, out / RECORDS_DIR):
        for stale in folder.glob(".part-*.tmp"):
            stale.unlink(missing_ok=True)
    todo = _verified_todo(out, plan.tasks, facts)
    stats: list[dict] = []
    if todo:
        cache_path = None if cache is False else str(out / CACHE_FILE if cache is True else Path(cache))
        stats = _run_shards(todo, model=card.name, output=out, modality=plan.modality, cache=cache_path,
                            actors=actors, cpus_per_actor=cpus_per_actor, num_cpus=num_cpus, address=address,
                            progress=progress, embed_rows=embed_rows, options=options)
        failed = sorted(str(s["error"]) for s in stats if s.get("error"))
        if failed:
            more = f" (and {len(failed) - 1} more shards)" if len(failed) > 1 else ""
            raise InvalidInputError(failed[0] + more)
    names = [t["name"] for t in plan.tasks]
    return DatasetJob(output=out, errors=out / ERRORS_DIR, items=plan.items, rows=_count_rows(out, names),
                      bad_items=_count_rows(out / ERRORS_DIR, names), shards=len(names), shards_embedded=len(stats),
                      cache_hits=sum(int(s["cache_hits"]) for s in stats), seconds=time.perf_counter() - started,
                      info={"plan": plan.describe, "shard_seconds": sum(float(s["seconds"]) for s in stats)})


def _run_shards(todo: list[dict], *, model: str, output: Path, modality: str | None, cache: str | None,
                actors: int | None, cpus_per_actor: int, num_cpus: int | None, address: str | None,
                progress: bool, embed_rows: int, options: dict) -> list[dict]:
    """Embed the missing shards on a Ray Data actor pool; returns one status row per shard."""
    with ray_session(address, num_cpus, record=output) as ray:
        if actors is None:
            actors = max(1, int(ray.cluster_resources().get("CPU", 1)) // cpus_per_actor)
        ctx = ray.data.DataContext.get_current()
        saved, ctx.enable_progress_bars = ctx.enable_progress_bars, False  # Ray's bars count blocks, not shards
        try:
            ds = ray.data.from_items([{"task": json.dumps(t)} for t in todo], override_num_blocks=len(todo))
            ds = ds.map_batches(
                ShardEmbedder, batch_size=1, compute=ray.data.ActorPoolStrategy(size=min(actors, len(todo))),
                num_cpus=cpus_per_actor,
                fn_constructor_kwargs=dict(model=model, output=str(output.resolve()), modality=modality, cache=cache,
                                           threads=cpus_per_actor, embed_rows=embed_rows, options=options))
            stats: list[dict] = []
            with ShardProgress(len(todo), model, enabled=progress) as shown:
                for row in ds.iter_rows():
                    stats.append(row)
                    shown.done(row)
            return stats
        finally:
            ctx.enable_progress_bars = saved


class ShardProgress:
    """Shards done out of the job's: a tqdm bar on a terminal, else one plain line per finished shard (a log
    file or CI output gets ``embed-dataset MODEL: shard 3/5 done (...)``, not carriage-return redraws)."""

    def __init__(self, total: int, model: str, *, enabled: bool = True, stream=None):
        self.total, self.model, self.enabled, self.count = total, model, enabled, 0
        self.stream = stream or sys.stderr
        self.bar = None

    def __enter__(self) -> ShardProgress:
        if self.enabled and self.stream.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=f"embed-dataset {self.model}", unit="shard", file=self.stream)
        return self

    def done(self, row: dict) -> None:
        self.count += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.enabled:
            what = f"failed: {row['error']}" if row.get("error") else \
                f"done ({row.get('name', '?')}, {float(row.get('seconds', 0)):.1f} s)"
            print(f"embed-dataset {self.model}: shard {self.count}/{self.total} {what}", file=self.stream, flush=True)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
