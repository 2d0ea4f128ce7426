"""Embed a whole dataset on Ray Data: resumable, sharded Parquet output, bad items set aside.

``embed_dataset(model, source, output)`` embeds a text column of a Parquet file or folder, or a
folder / glob / list of image, audio or point-cloud files, and writes Parquet rows of
``id`` (the file's path relative to the source folder, or the row number) and ``vector``
(a fixed-size list of float32). The schema metadata names the space, the model, its revision,
a sha256 of its card and the dimension, so a reader knows which space the vectors live in.

How it is laid out, and why:

- The input order is cut into fixed-size shards of ``shard_rows`` items; shard k is written to
  ``part-<first row, 12 digits>.parquet``. A shard's content depends only on the input and the
  model, never on which worker ran it or when, so a job stopped half way and started again embeds
  only the shards whose file is missing and ends with the same files as one uninterrupted run.
  A shard file is written to a hidden temporary name and renamed, so a file that exists is whole.
- Ray Data runs the shards: the dataset is one row per missing shard, and ``map_batches`` sends
  them to a fixed pool of actors (``ActorPoolStrategy``), each of which loads the zoo model once,
  reads its shard's items itself (Parquet row groups or files) and writes its shard file. Ray
  Data's own ``write_parquet`` names files by task and block, which a rerun cannot match, hence the
  actors write. Ray's progress bar counts shards.
- Items already embedded in this exact space are taken from the embedding cache
  (:class:`zoo.cache.EmbeddingCache`, ``<output>/_cache.sqlite`` by default).
- A bad item (``InvalidInputError``, ``InputTooLargeError``) does not stop the job: the batch that
  held it is embedded again item by item, and the bad ones go to the errors table
  ``<output>/_errors/`` (Parquet: ``id``, ``reason``), written before the shard's vector file.
- ``_job.json`` records what the job embeds; a rerun into the same folder with another model,
  source, item count (files added to a folder shift every later shard) or shard size is refused
  rather than mixing two jobs.

Readers (``pyarrow.parquet.read_table(output)``, pandas, Ray) skip the ``_`` and ``.`` names, so
the output folder reads as just the vectors. Ray itself is the ``scale`` extra. Importing this module
imports neither Ray, pyarrow nor numpy (the command line builds its parser from it): they are
imported where used.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo._limits import FILE_SUFFIXES
from zoo.errors import InvalidInputError, ZooError, require

SHARD_ROWS = 1024
EMBED_ROWS = 256  # items per embed call inside a shard: the unit re-run item by item on a bad item
CACHE_FILE = "_cache.sqlite"
ERRORS_DIR = "_errors"
MANIFEST = "_job.json"
SUFFIXES = FILE_SUFFIXES


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


# -- planning: which items, in which order, in which shard ------------------------------------
@dataclass
class Plan:
    """The shards of a job, in input order; ``describe`` identifies the input in the job's manifest."""

    kind: str  # "parquet" | "files"
    modality: str | None
    tasks: list[dict]  # one per shard: {"name", "start", ...how to read its items}
    items: int
    describe: dict


def _list_files(source: str | os.PathLike | Sequence, suffixes: Sequence[str]) -> tuple[list[str], Path]:
    """Sorted file paths and the folder the ids are relative to, from a folder, a glob or a list of paths."""
    if not isinstance(source, (str, os.PathLike)):
        paths = sorted(os.path.abspath(p) for p in source)
        return paths, Path(os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else ".")
    text = str(source)
    if glob.has_magic(text):
        prefix = re.split(r"[*?\[]", text, maxsplit=1)[0]  # the glob's fixed folder part
        root = Path(prefix) if prefix.endswith(("/", os.sep)) or not prefix else Path(prefix).parent
        return sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p)), root
    root = Path(source)
    if not root.is_dir():
        raise InvalidInputError(f"{source} is neither a folder, a glob nor a Parquet file")
    paths = sorted(str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
                   and not _hidden(p.relative_to(root)))
    return paths, root


def _hidden(relative: Path) -> bool:
    """Names starting with . or _ are metadata to Parquet readers (and to us)."""
    return any(part.startswith((".", "_")) for part in relative.parts)


def _parquet_files(source: str | os.PathLike) -> list[Path]:
    path = Path(source)
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*.parquet") if not _hidden(p.relative_to(path)))


def _is_parquet(source: Any) -> bool:
    if not isinstance(source, (str, os.PathLike)) or glob.has_magic(str(source)):
        return False
    path = Path(source)
    return path.suffix == ".parquet" or (path.is_dir() and bool(_parquet_files(path)))


def _plan_parquet(source: str | os.PathLike, column: str, shard_rows: int) -> tuple[list[dict], int]:
    import pyarrow.parquet as pq

    files, offsets, total = _parquet_files(source), [], 0
    for f in files:
        schema = pq.read_schema(f)
        if column not in schema.names:
            raise InvalidInputError(f"{f} has no column {column!r} (its columns: {', '.join(schema.names)})")
        n = pq.ParquetFile(f).metadata.num_rows
        offsets.append((str(f), total, total + n))
        total += n
    tasks = []
    for start in range(0, total, shard_rows):
        stop = min(start + shard_rows, total)
        pieces = [(f, max(start, a) - a, min(stop, b) - a) for f, a, b in offsets if a < stop and b > start]
        tasks.append({"start": start, "pieces": pieces, "column": column})
    return tasks, total


def plan_job(source: Any, *, column: str, modality: str | None, modalities: Sequence[str], shard_rows: int,
             suffixes: Sequence[str] | None = None) -> Plan:
    """Cut the source into shards (input order, ``shard_rows`` items each)."""
    if shard_rows < 1:
        raise InvalidInputError(f"shard_rows must be positive, not {shard_rows}")
    if _is_parquet(source):
        tasks, n = _plan_parquet(source, column, shard_rows)
        describe = {"kind": "parquet", "source": str(Path(source).resolve()), "column": column}
        kind, modality = "parquet", modality or ("text" if "text" in modalities else None)
    else:
        modality = modality or (modalities[0] if len(modalities) == 1 else None)
        if modality is None:
            raise InvalidInputError(f"the model embeds {', '.join(modalities)}: say which with modality=")
        paths, root = _list_files(source, suffixes or SUFFIXES.get(modality, ()))
        ids = [Path(p).relative_to(root).as_posix() if Path(p).is_relative_to(root) else p for p in paths]
        tasks = [{"start": s, "paths": paths[s:s + shard_rows], "ids": ids[s:s + shard_rows]}
                 for s in range(0, len(paths), shard_rows)]
        n, kind = len(paths), "files"
        describe = {"kind": "files", "source": str(source) if isinstance(source, (str, os.PathLike)) else "list",
                    "root": str(root.resolve()), "first_ids": ids[:3]}
    if not n:
        raise InvalidInputError(f"{source} holds no items to embed")
    for task in tasks:
        task["name"] = f"part-{task['start']:012d}.parquet"
    return Plan(kind=kind, modality=modality, tasks=tasks, items=n, describe=describe)


def read_rows(path: str, column: str, start: int, stop: int) -> list:
    """Rows [start, stop) of one column of a Parquet file, reading only the row groups that hold them."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    groups, offset, first = [], 0, None
    for g in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if offset < stop and offset + n > start:
            first = offset if first is None else first
            groups.append(g)
        offset += n
    if not groups:
        return []
    return pf.read_row_groups(groups, columns=[column]).column(column).slice(start - first, stop - start).to_pylist()


# -- the actor: one model per actor, one shard per call -----------------------------------------
def card_sha256(card) -> str:
    """sha256 of the card's content (the same facts the embedding cache fingerprints)."""
    return card.content_sha256()


def _reason(exc: Exception) -> str:
    """The error's class and message, without the "input[i]: " prefix (i was the index in a batch of one)."""
    return f"{type(exc).__name__}: " + re.sub(r"^input\[\d+\]: ", "", str(exc))


class ShardEmbedder:
    """A Ray Data actor: loads the model once, then embeds and writes one shard per row it is given."""

    def __init__(self, model: str, output: str, *, modality: str | None, cache: str | None, threads: int,
                 embed_rows: int, options: dict):
        import torch

        import zoo

        torch.set_num_threads(max(1, threads))
        self.model = zoo.load(model)
        self.output, self.modality, self.embed_rows, self.options = Path(output), modality, embed_rows, options
        self.cache, self._hits = None, 0
        if cache:
            from zoo.cache import EmbeddingCache

            self.cache = EmbeddingCache(cache)

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        done = [self.run(json.loads(task)) for task in batch["task"]]
        return {key: np.array([d[key] for d in done]) for key in done[0]}

    def _embed(self, items: list, *, cached: bool = True):
        cache = self.cache if cached else None
        hits = cache.hits if cache is not None else 0
        out = self.model.embed(items, modality=self.modality, cache=cache, **self.options)
        self._hits += (cache.hits - hits) if cache is not None else 0
        return out.vectors

    def _embed_one(self, item: Any):
        """One item's vector. Where the cache refuses the item (it cannot key or read it), the model is asked
        without the cache, so an item is recorded as bad with the model's own reason, or embedded after all."""
        try:
            return self._embed([item])
        except InvalidInputError:
            if self.cache is None:
                raise
        return self._embed([item], cached=False)

    def embed_items(self, items: list) -> tuple[list[int], Any, list[tuple[int, str]]]:
        """(indices embedded, their vectors, (index, reason) of bad items), batch by batch."""
        import numpy as np

        good, vectors, bad = [], [], []
        for start in range(0, len(items), self.embed_rows):
            chunk = items[start:start + self.embed_rows]
            try:
                vectors.append(self._embed(chunk))
                good.extend(range(start, start + len(chunk)))
                continue
            except InvalidInputError:
                pass
            for i, item in enumerate(chunk, start):  # find the bad ones: item by item
                try:
                    vectors.append(self._embed_one(item))
                    good.append(i)
                except InvalidInputError as exc:
                    bad.append((i, _reason(exc)))
        dim = self.model.dim
        return good, np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32), bad

    def metadata(self) -> dict[bytes, bytes]:
        card = self.model.card
        facts = {"space": card.space, "model": card.name, "revision": self.model.resolved.revision,
                 "origin": self.model.resolved.origin, "card_sha256": card_sha256(card), "dim": str(self.model.dim),
                 "modality": self.modality or "", "options": json.dumps(self.options, sort_keys=True)}
        return {f"zoo.{k}".encode(): str(v).encode() for k, v in facts.items()}

    @staticmethod
    def items_of(task: dict) -> tuple[list, list, Any]:
        """A shard's items, their ids and the ids' Arrow type: row numbers of texts, or relative file paths."""
        import pyarrow as pa

        if "pieces" in task:
            items = [x for f, a, b in task["pieces"] for x in read_rows(f, task["column"], a, b)]
            return items, list(range(task["start"], task["start"] + len(items))), pa.int64()
        return [Path(p) for p in task["paths"]], task["ids"], pa.string()

    def run(self, task: dict) -> dict:
        """Embed one shard; write its errors (if any), then its vectors (the file that marks it done)."""
        import numpy as np
        import pyarrow as pa

        items, ids, id_type = self.items_of(task)
        self._hits, started = 0, time.perf_counter()
        good, vectors, bad = self.embed_items(items)
        errors = self.output / ERRORS_DIR / task["name"]
        if bad:
            table = pa.table({"id": pa.array([ids[i] for i, _ in bad], id_type),
                              "reason": pa.array([r for _, r in bad], pa.string())})
            _write_atomic(table, errors)
        else:
            errors.unlink(missing_ok=True)  # a stale one from a run with other input
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), pa.float32())
        table = pa.table({"id": pa.array([ids[i] for i in good], id_type),
                          "vector": pa.FixedSizeListArray.from_arrays(flat, self.model.dim)})
        _write_atomic(table.replace_schema_metadata(self.metadata()), self.output / task["name"])
        return {"name": task["name"], "rows": len(good), "bad": len(bad), "cache_hits": self._hits,
                "seconds": time.perf_counter() - started}


def _write_atomic(table, path: Path) -> None:
    """Write a Parquet file under a hidden name and rename it: a file that exists is complete."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


# -- the driver ---------------------------------------------------------------------------------
@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """Ray for the job: the running session if any, else a cluster at ``address``, else a local one.

    A session this function started (or connected) is shut down when the job ends.
    """
    ray = require("ray", extra="scale", purpose="dataset jobs")
    if ray.is_initialized():
        yield ray
        return
    if address:
        ray.init(address=address)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def _check_manifest(output: Path, facts: dict) -> None:
    path = output / MANIFEST
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != facts:
            changed = sorted(k for k in facts.keys() | old.keys() if old.get(k) != facts.get(k))
            raise ZooError(f"{output} holds another job's output (differs in {', '.join(changed)}); "
                           "use a new output folder")
    else:
        path.write_text(json.dumps(facts, indent=1, sort_keys=True), encoding="utf-8")


def _count_rows(folder: Path, names: Sequence[str]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(folder / n).metadata.num_rows for n in names if (folder / n).exists())


def embed_dataset(model: str, source: Any, output: str | os.PathLike, *, column: str = "text",
                  modality: str | None = None, shard_rows: int = SHARD_ROWS, embed_rows: int = EMBED_ROWS,
                  actors: int | None = None, cpus_per_actor: int = 1, num_cpus: int | None = None,
                  address: str | None = None, cache: bool | str | os.PathLike = True, progress: bool = True,
                  suffixes: Sequence[str] | None = None, task_instruction: str | None = None,
                  prompt_name: str | None = None, batch_size: int | None = None) -> DatasetJob:
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
        progress: Ray Data's progress bars.
        suffixes: file suffixes taken from a folder (default: those of the modality).
        task_instruction, prompt_name, batch_size: as in ``embed``.
    """
    from zoo.registry import card as get_card

    started = time.perf_counter()
    if embed_rows < 1:
        raise InvalidInputError(f"embed_rows must be positive, not {embed_rows}")
    card = get_card(model)
    plan = plan_job(source, column=column, modality=modality, modalities=card.modalities, shard_rows=shard_rows,
                    suffixes=suffixes)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    options = {k: v for k, v in dict(task_instruction=task_instruction, prompt_name=prompt_name,
                                     batch_size=batch_size).items() if v is not None}
    facts = {"model": card.name, "card_sha256": card_sha256(card), "shard_rows": shard_rows, "items": plan.items,
             "modality": plan.modality, "options": {k: v for k, v in options.items() if k != "batch_size"},
             **plan.describe}
    _check_manifest(out, json.loads(json.dumps(facts)))
    for stale in out.glob(".part-*.tmp"):
        stale.unlink(missing_ok=True)
    todo = [t for t in plan.tasks if not (out / t["name"]).exists()]
    stats: list[dict] = []
    if todo:
        cache_path = None if cache is False else str(out / CACHE_FILE if cache is True else Path(cache))
        stats = _run_shards(todo, model=card.name, output=out, modality=plan.modality, cache=cache_path,
                            actors=actors, cpus_per_actor=cpus_per_actor, num_cpus=num_cpus, address=address,
                            progress=progress, embed_rows=embed_rows, options=options)
    names = [t["name"] for t in plan.tasks]
    return DatasetJob(output=out, errors=out / ERRORS_DIR, items=plan.items, rows=_count_rows(out, names),
                      bad_items=_count_rows(out / ERRORS_DIR, names), shards=len(names), shards_embedded=len(stats),
                      cache_hits=sum(int(s["cache_hits"]) for s in stats), seconds=time.perf_counter() - started,
                      info={"plan": plan.describe, "shard_seconds": sum(float(s["seconds"]) for s in stats)})


def _run_shards(todo: list[dict], *, model: str, output: Path, modality: str | None, cache: str | None,
                actors: int | None, cpus_per_actor: int, num_cpus: int | None, address: str | None,
                progress: bool, embed_rows: int, options: dict) -> list[dict]:
    """Embed the missing shards on a Ray Data actor pool; returns one status row per shard."""
    with ray_session(address, num_cpus) as ray:
        if actors is None:
            actors = max(1, int(ray.cluster_resources().get("CPU", 1)) // cpus_per_actor)
        ctx = ray.data.DataContext.get_current()
        saved, ctx.enable_progress_bars = ctx.enable_progress_bars, progress
        try:
            ds = ray.data.from_items([{"task": json.dumps(t)} for t in todo], override_num_blocks=len(todo))
            ds = ds.map_batches(
                ShardEmbedder, batch_size=1, compute=ray.data.ActorPoolStrategy(size=min(actors, len(todo))),
                num_cpus=cpus_per_actor,
                fn_constructor_kwargs=dict(model=model, output=str(output.resolve()), modality=modality, cache=cache,
                                           threads=cpus_per_actor, embed_rows=embed_rows, options=options))
            return ds.take_all()
        finally:
            ctx.enable_progress_bars = saved


# -- command line (wired as `zoo embed-dataset`) --------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a registry name, e.g. all-minilm-l6-v2")
    parser.add_argument("source", help="a Parquet file/folder (texts), or a folder or quoted glob of files")
    parser.add_argument("output", help="output folder of Parquet shards; rerun to finish an interrupted job")
    parser.add_argument("--column", default="text", help="the Parquet column of texts (default: text)")
    parser.add_argument("--modality", help="text, code, image, audio, points (models that embed several)")
    parser.add_argument("--shard-rows", type=int, default=SHARD_ROWS, help=f"items per shard (default {SHARD_ROWS})")
    parser.add_argument("--actors", type=int, help="model actors (default: one per CPU)")
    parser.add_argument("--cpus-per-actor", type=int, default=1)
    parser.add_argument("--num-cpus", type=int, help="CPUs of the local Ray started for the job")
    parser.add_argument("--address", help="an existing Ray cluster (e.g. auto or ray://host:10001)")
    parser.add_argument("--no-cache", action="store_true", help="do not use the embedding cache")
    parser.add_argument("--no-progress", action="store_true", help="hide Ray Data's progress bars")
    parser.add_argument("--instruction", help="task instruction (models with an instruction template)")
    parser.add_argument("--prompt-name", help="a named prompt of the card, e.g. passage")
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    job = embed_dataset(args.model, args.source, args.output, column=args.column, modality=args.modality,
                        shard_rows=args.shard_rows, actors=args.actors, cpus_per_actor=args.cpus_per_actor,
                        num_cpus=args.num_cpus, address=args.address, cache=not args.no_cache,
                        progress=not args.no_progress, task_instruction=args.instruction,
                        prompt_name=args.prompt_name)
    print(f"{job.output}: {job.rows} rows of {job.items} items in {job.shards} shards "
          f"({job.shards_embedded} embedded now, {job.cache_hits} cache hits) in {job.seconds:.1f}s")
    if job.bad_items:
        print(f"{job.bad_items} bad items: see {job.errors}")
    return 0


def cli_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="zoo embed-dataset", description="embed a dataset on Ray Data")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_command(args)
    except (ZooError, OSError) as exc:
        print(f"zoo: error: {exc}", file=sys.stderr)
        return 1
