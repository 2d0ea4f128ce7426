"""Embed a whole dataset on Ray Data: resumable, sharded Parquet output, bad items set aside.

``embed_dataset(model, source, output)`` embeds a text column of a Parquet file or folder, or a
folder / glob / list of image, audio or point-cloud files, and writes Parquet rows of
``id`` (the file's path relative to the source folder, the row number, or with ``id_column`` that
input column's value) and ``vector`` (a fixed-size list of float32). The schema metadata names the
space, the model, its revision, a sha256 of its card and the dimension, so a reader knows which
space the vectors live in.

How it is laid out, and why:

- The input order is cut into fixed-size shards of ``shard_rows`` items; shard k is written to
  ``part-<first row, 12 digits>.parquet``. A shard's content depends only on the input and the
  model, never on which worker ran it or when, so a job stopped half way and started again embeds
  only the shards whose file is missing and ends with the same files as one uninterrupted run.
  A shard file is written to a hidden temporary name and renamed, and its row count and sha256 are
  recorded in ``_shards/<name>.json``. A rerun counts a shard as done only once it is verified (a
  readable Parquet footer, the job's model, rows plus bad items equal to the shard's item count
  recorded in ``_job.json``, the recorded sha256): a shard cut short or altered is deleted, named
  in a warning and embedded again.
- Ray Data runs the shards: the dataset is one row per missing shard, and ``map_batches`` sends
  them to a fixed pool of actors (``ActorPoolStrategy``), each of which loads the zoo model once,
  reads its shard's items itself (Parquet row groups or files) and writes its shard file. Ray
  Data's own ``write_parquet`` names files by task and block, which a rerun cannot match, hence the
  actors write. Progress counts finished shards (a bar, or a line per shard off a terminal).
- Items already embedded in this exact space are taken from the embedding cache
  (:class:`zoo.cache.EmbeddingCache`, ``<output>/_cache.sqlite`` by default).
- ``id_column`` (Parquet sources) names an input column whose values become the rows' ids instead of
  the row numbers: checked when the job is planned (present in every file, str or int values, none
  missing, each value once in the whole job; the driver reads that one column to check it), read by the
  actors with their shard's items, and part of the job's identity like the text column.
- A bad item (``InvalidInputError``, ``InputTooLargeError``) does not stop the job: the batch that
  held it is embedded again item by item, and the bad ones go to the errors table
  ``<output>/_errors/`` (Parquet: ``id``, ``reason``), written before the shard's vector file.
- ``_job.json`` records what the job embeds; a rerun into the same folder with another model,
  source, item count (files added to a folder shift every later shard) or shard size is refused
  rather than mixing two jobs. A job file or input Parquet that cannot be read is a ``ZooError``
  naming the file, never a traceback.
- A driver that starts a local Ray records the session in ``<output>/_ray.json``; if the driver is
  killed, Ray processes of that session may outlive it, and the next run into the folder stops them
  (with a warning) before it starts.

Readers (``pyarrow.parquet.read_table(output)``, pandas, Ray) skip the ``_`` and ``.`` names, so
the output folder reads as just the vectors. Ray itself is the ``scale`` extra. Importing this module
imports neither Ray, pyarrow nor numpy (the command line builds its parser from it): they are
imported where used.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import os
import re
import signal
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import IntegrityError, InvalidInputError, ZooError, require
from zoo.inputs.limits import FILE_SUFFIXES

SHARD_ROWS = 1024
EMBED_ROWS = 256  # items per embed call inside a shard: the unit re-run item by item on a bad item
CACHE_FILE = "_cache.sqlite"
ERRORS_DIR = "_errors"
MANIFEST = "_job.json"
RECORDS_DIR = "_shards"  # <name>.json per finished shard: rows, bad items, sha256 of its files
RAY_RECORD = "_ray.json"  # the local Ray session of the driver running the job
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


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _parquet_footer(path: str | os.PathLike):
    """The Parquet footer (``FileMetaData``) of an input file, or InvalidInputError naming the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InvalidInputError(f"{path} is not a readable Parquet file (cut short or corrupt?): "
                                f"{_one_line(exc)}") from exc


def _plan_parquet(source: str | os.PathLike, column: str, shard_rows: int,
                  id_column: str | None = None) -> tuple[list[dict], int]:
    files, offsets, total = _parquet_files(source), [], 0
    for f in files:
        meta = _parquet_footer(f)
        schema = meta.schema.to_arrow_schema()
        for name in (column, id_column) if id_column else (column,):
            if name not in schema.names:
                raise InvalidInputError(f"{f} has no column {name!r} (its columns: {', '.join(schema.names)})")
        n = meta.num_rows
        offsets.append((str(f), total, total + n))
        total += n
    id_kind = _check_id_column([f for f, _, _ in offsets], id_column) if id_column else None
    tasks = []
    for start in range(0, total, shard_rows):
        stop = min(start + shard_rows, total)
        pieces = [(f, max(start, a) - a, min(stop, b) - a) for f, a, b in offsets if a < stop and b > start]
        task = {"start": start, "pieces": pieces, "column": column}
        if id_column:
            task.update(id_column=id_column, id_kind=id_kind)
        tasks.append(task)
    return tasks, total


def _check_id_column(files: list[str], id_column: str) -> str:
    """Read the id column of every input file and check it: str or int values, none missing, each value once in
    the whole job. Returns "str" or "int"."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    chunks, kinds, offset = [], set(), 0
    for f in files:
        try:
            col = pq.read_table(f, columns=[id_column]).column(id_column)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise InvalidInputError(f"{f}: cannot read the id column {id_column!r} (cut short or corrupt?): "
                                    f"{_one_line(exc)}") from exc
        kind_type = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
        if pa.types.is_integer(kind_type):
            kind, target = "int", pa.int64()
        elif pa.types.is_string(kind_type) or pa.types.is_large_string(kind_type):
            kind, target = "str", pa.string()
        else:
            raise InvalidInputError(f"{f}: the id column {id_column!r} holds {col.type} values; ids must be strings "
                                    "or integers")
        if col.null_count:
            first = offset + int(pc.index(pc.is_null(col), True).as_py())
            raise InvalidInputError(f"{f}: the id column {id_column!r} has {col.null_count} missing values (the "
                                    f"first in row {first} of the job): every row needs an id")
        try:
            chunks.append(col.cast(target))
        except (pa.ArrowException, ValueError) as exc:
            raise InvalidInputError(f"{f}: the id column {id_column!r} has values that do not fit in int64: "
                                    f"{_one_line(exc)}") from exc
        kinds.add(kind)
        offset += len(col)
    if len(kinds) > 1:
        raise InvalidInputError(f"the id column {id_column!r} holds strings in some files and integers in others")
    ids = pa.chunked_array([c for chunk in chunks for c in chunk.chunks], type=chunks[0].type) if chunks else None
    if ids is not None and pc.count_distinct(ids).as_py() != len(ids):
        counts = pc.value_counts(ids)
        repeated = counts.filter(pc.greater(counts.field("counts"), 1))
        value, times = repeated[0]["values"].as_py(), repeated[0]["counts"].as_py()
        raise InvalidInputError(f"the id column {id_column!r} is not unique: {value!r} appears {times} times "
                                f"({len(repeated)} repeated value(s) in all); ids must be unique within the job")
    return kinds.pop() if kinds else "int"


def plan_job(source: Any, *, column: str, modality: str | None, modalities: Sequence[str], shard_rows: int,
             suffixes: Sequence[str] | None = None, id_column: str | None = None) -> Plan:
    """Cut the source into shards (input order, ``shard_rows`` items each); ``id_column``: see the module."""
    if shard_rows < 1:
        raise InvalidInputError(f"shard_rows must be positive, not {shard_rows}")
    if id_column is not None and (not isinstance(id_column, str) or not id_column):
        raise InvalidInputError(f"id_column must name a column, not {id_column!r}")
    if _is_parquet(source):
        tasks, n = _plan_parquet(source, column, shard_rows, id_column)
        describe = {"kind": "parquet", "source": str(Path(source).resolve()), "column": column}
        if id_column:  # only when given: a job file written before id_column existed still matches
            describe["id_column"] = id_column
        kind, modality = "parquet", modality or ("text" if "text" in modalities else None)
    elif id_column:
        raise InvalidInputError(f"id_column applies to Parquet sources; {source} is files, whose ids are their paths")
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
        task["items"] = sum(b - a for _, a, b in task["pieces"]) if "pieces" in task else len(task["paths"])
    return Plan(kind=kind, modality=modality, tasks=tasks, items=n, describe=describe)


def read_rows(path: str, column: str, start: int, stop: int) -> list:
    """Rows [start, stop) of one column of a Parquet file, reading only the row groups that hold them."""
    return read_columns(path, [column], start, stop)[column]


def read_columns(path: str, columns: Sequence[str], start: int, stop: int) -> dict[str, list]:
    """Rows [start, stop) of some columns of a Parquet file, reading only the row groups that hold them."""
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
        return {c: [] for c in columns}
    table = pf.read_row_groups(groups, columns=list(dict.fromkeys(columns))).slice(start - first, stop - start)
    return {c: table.column(c).to_pylist() for c in columns}


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
            from zoo.data.cache import EmbeddingCache

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
        """A shard's items, their ids and the ids' Arrow type: row numbers of texts (or the values of the id
        column), or relative file paths."""
        import pyarrow as pa

        if "pieces" in task and task.get("id_column"):
            items, ids = [], []
            for f, a, b in task["pieces"]:
                got = read_columns(f, [task["column"], task["id_column"]], a, b)
                items += got[task["column"]]
                ids += got[task["id_column"]]
            return items, ids, pa.string() if task["id_kind"] == "str" else pa.int64()
        if "pieces" in task:
            items = [x for f, a, b in task["pieces"] for x in read_rows(f, task["column"], a, b)]
            return items, list(range(task["start"], task["start"] + len(items))), pa.int64()
        return [Path(p) for p in task["paths"]], task["ids"], pa.string()

    def run(self, task: dict) -> dict:
        """Embed one shard; write its errors (if any), then its vectors, then the record that vouches for both.

        An input that cannot be read is reported in the status row's ``error`` (the driver raises it as one
        line naming the file), not raised here, where Ray would wrap it in a worker traceback.
        """
        import numpy as np
        import pyarrow as pa

        self._hits, started = 0, time.perf_counter()
        try:
            items, ids, id_type = self.items_of(task)
        except (pa.ArrowException, OSError, ValueError) as exc:
            files = ", ".join(sorted({f for f, _, _ in task.get("pieces", ())})) or "its files"
            return {"name": task["name"], "rows": 0, "bad": 0, "cache_hits": 0, "seconds": 0.0,
                    "error": f"{files}: cannot read the rows of shard {task['name']} "
                             f"(input cut short or corrupt?): {_one_line(exc)}"}
        good, vectors, bad = self.embed_items(items)
        errors, errors_sha = self.output / ERRORS_DIR / task["name"], None
        _record_path(self.output, task["name"]).unlink(missing_ok=True)  # the old record vouches for old files
        if bad:
            table = pa.table({"id": pa.array([ids[i] for i, _ in bad], id_type),
                              "reason": pa.array([r for _, r in bad], pa.string())})
            errors_sha = _write_atomic(table, errors)
        else:
            errors.unlink(missing_ok=True)  # a stale one from a run with other input
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), pa.float32())
        table = pa.table({"id": pa.array([ids[i] for i in good], id_type),
                          "vector": pa.FixedSizeListArray.from_arrays(flat, self.model.dim)})
        sha = _write_atomic(table.replace_schema_metadata(self.metadata()), self.output / task["name"])
        _write_record(self.output, task["name"], {"items": len(items), "rows": len(good), "bad": len(bad),
                                                  "sha256": sha, "errors_sha256": errors_sha})
        return {"name": task["name"], "rows": len(good), "bad": len(bad), "cache_hits": self._hits,
                "seconds": time.perf_counter() - started, "error": ""}


def _write_atomic(table, path: Path) -> str:
    """Write a Parquet file under a hidden name and rename it: a file that exists was complete when written.

    Returns the file's sha256.
    """
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    sha = _sha256(tmp)
    os.replace(tmp, path)
    return sha


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _record_path(output: Path, name: str) -> Path:
    return output / RECORDS_DIR / f"{name}.json"


def _write_record(output: Path, name: str, record: dict) -> None:
    _write_text_atomic(_record_path(output, name), json.dumps(record, sort_keys=True))


# -- verifying finished shards --------------------------------------------------------------------
def _shard_problem(output: Path, name: str, items: int, facts: dict) -> str | None:
    """Why the shard ``name`` cannot count as done (None: it is whole). Checks the vector file's Parquet footer,
    the model it names, its rows plus the errors table's rows against the ``items`` the job file expects,
    and the sha256 of both files against the shard's record, where there is one. A whole shard without a record
    (its writer was stopped before writing it, or an older zoo wrote the shard) gets one now."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path, errors, record_path = output / name, output / ERRORS_DIR / name, _record_path(output, name)
    try:
        meta = pq.ParquetFile(path).metadata
        bad = pq.ParquetFile(errors).metadata.num_rows if errors.exists() else 0
    except (pa.ArrowException, OSError, ValueError) as exc:
        return f"not a readable Parquet file ({_one_line(exc)})"
    tags = {k.decode(): v.decode() for k, v in (meta.metadata or {}).items()}
    if tags.get("zoo.model") != facts["model"] or tags.get("zoo.card_sha256") != facts["card_sha256"]:
        return f"written by another model ({tags.get('zoo.model')!r}, card {tags.get('zoo.card_sha256')!r})"
    if meta.num_rows + bad != items:
        return f"holds {meta.num_rows} rows and {bad} bad items where the job expects {items} items"
    try:
        record = json.loads(record_path.read_text(encoding="utf-8")) if record_path.exists() else None
    except (OSError, ValueError):
        record = None  # a record cut short: the checks above passed, write it again below
    if not isinstance(record, dict):
        _write_record(output, name, {"items": items, "rows": meta.num_rows, "bad": bad, "sha256": _sha256(path),
                                     "errors_sha256": _sha256(errors) if errors.exists() else None})
        return None
    if record.get("sha256") != _sha256(path):
        return "differs from the file that was written (sha256 mismatch)"
    if record.get("errors_sha256") != (_sha256(errors) if errors.exists() else None):
        return f"its errors table {errors} differs from the one that was written (sha256 mismatch)"
    return None


def _verified_todo(output: Path, tasks: list[dict], facts: dict) -> list[dict]:
    """The shards still to embed: missing ones, and ones that fail verification (deleted, with a warning)."""
    todo = []
    for task in tasks:
        path = output / task["name"]
        if not path.exists():
            todo.append(task)
            continue
        problem = _shard_problem(output, task["name"], task["items"], facts)
        if problem:
            warnings.warn(f"{path}: {problem}; embedding this shard again", UserWarning, stacklevel=3)
            for stale in (path, output / ERRORS_DIR / task["name"], _record_path(output, task["name"])):
                stale.unlink(missing_ok=True)
            todo.append(task)
    return todo


# -- the driver ---------------------------------------------------------------------------------
@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None, *,
                record: str | os.PathLike | None = None) -> Iterator[Any]:
    """Ray for the job: the running session if any, else a cluster at ``address``, else a local one.

    A session this function started (or connected) is shut down when the job ends. A local Ray it starts is
    recorded in the folder ``record`` (``_ray.json``: this driver, the session folder, Ray's pids) until then,
    so that a later run can stop what a killed driver left running (:func:`stop_stale_ray`).
    """
    ray = require("ray", extra="scale", purpose="dataset jobs")
    if ray.is_initialized():
        yield ray
        return
    recorded = None
    if address:
        ray.init(address=address)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False)
        recorded = _record_ray_session(ray, Path(record)) if record is not None else None
    try:
        yield ray
    finally:
        ray.shutdown()
        if recorded is not None:
            recorded.unlink(missing_ok=True)


# -- Ray processes a killed driver left behind (Linux /proc) --------------------------------------
def _stat(pid: int) -> tuple[str, int] | None:
    """The process's state letter and start time (clock ticks since boot) from /proc; None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _started(pid: int) -> int | None:
    stat = _stat(pid)
    return stat[1] if stat else None


def _alive(pid: int, started: int | None) -> bool:
    """Whether ``pid`` still runs the process that started at ``started`` (not a later one given the same pid)."""
    stat = _stat(pid)
    return stat is not None and stat[1] == started and stat[0] not in ("Z", "X")


def _uses(pid: int, folder: str) -> bool:
    """Whether the process has a file of ``folder`` open (Ray's processes keep their session's logs open)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    prefix = folder.rstrip("/") + "/"
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(prefix):
                return True
        except OSError:
            continue
    return False


def _record_ray_session(ray, output: Path) -> Path | None:
    """Write ``<output>/_ray.json``: this driver and the local Ray session it started. None where Ray's layout
    is not the one known here (the record is best effort: the job runs all the same)."""
    try:
        node = ray._private.worker._global_node
        pids = [p.process.pid for procs in node.all_processes.values() for p in procs if p.process is not None]
        facts = {"driver": os.getpid(), "driver_started": _started(os.getpid()),
                 "session_dir": node.get_session_dir_path(), "address": node.gcs_address,
                 "pids": {str(pid): _started(pid) for pid in pids}}
    except Exception:  # noqa: BLE001 - a private Ray API: a change in it must not stop the job
        return None
    path = output / RAY_RECORD
    _write_text_atomic(path, json.dumps(facts, indent=1, sort_keys=True))
    return path


def stop_stale_ray(output: str | os.PathLike, *, wait: float = 5.0) -> list[int]:
    """Stop the Ray processes that a killed driver of a job into ``output`` left running; returns their pids.

    ``<output>/_ray.json`` names the driver and its local Ray session. While that driver runs, nothing is done;
    once it is gone, every process of this user that has a file of the session's folder open (Ray's GCS,
    raylet, agents and workers keep their logs there), and every recorded pid still running the process
    recorded, is sent SIGTERM, then SIGKILL after ``wait`` seconds; a warning names them. Linux only (/proc).
    """
    path = Path(output) / RAY_RECORD
    if not path.exists() or not Path("/proc/self/stat").exists():
        return []
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        driver, session = int(record["driver"]), str(record["session_dir"])
        recorded = {int(pid): started for pid, started in dict(record.get("pids", {})).items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        warnings.warn(f"{path}: unreadable Ray session record ({_one_line(exc)}); ignored", UserWarning,
                      stacklevel=2)
        path.unlink(missing_ok=True)
        return []
    if driver == os.getpid() or _alive(driver, record.get("driver_started")):
        return []  # its driver still runs (or is this process): not stale
    me, uid = os.getpid(), os.getuid()
    stale = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        try:
            if os.stat(f"/proc/{pid}").st_uid != uid:
                continue
        except OSError:
            continue
        if (pid in recorded and _alive(pid, recorded[pid])) or _uses(pid, session):
            stale.append((pid, _started(pid)))
    for pid, _ in stale:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and any(_alive(pid, started) for pid, started in stale):
        time.sleep(0.1)
    for pid, started in stale:
        if _alive(pid, started):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    path.unlink(missing_ok=True)
    if stale:
        warnings.warn(f"stopped {len(stale)} Ray processes (pids {', '.join(str(p) for p, _ in stale)}) left "
                      f"running by a killed job into {output} (driver pid {driver}, Ray session {session})",
                      UserWarning, stacklevel=2)
    return [pid for pid, _ in stale]


def _check_manifest(output: Path, facts: dict, shards: dict[str, int]) -> None:
    """Refuse another job's output folder; record the job (and each shard's item count) in a new one.

    ``shards`` (name -> item count, which follows from the facts) is kept under ``"shards"``: a job file
    without it (an older zoo's) is completed, not refused.
    """
    path = output / MANIFEST
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IntegrityError(f"{path} is not a readable job file (cut short or corrupt?): {_one_line(exc)}; "
                                 "delete it to rerun the same job into this folder (its shards are verified "
                                 "again), or use a new output folder", path=MANIFEST) from exc
        if not isinstance(old, dict):
            raise IntegrityError(f"{path} is not a job file (a JSON object was expected); delete it to rerun the "
                                 "same job into this folder, or use a new output folder", path=MANIFEST)
        recorded = old.pop("shards", None)
        if old != facts:
            changed = sorted(k for k in facts.keys() | old.keys() if old.get(k) != facts.get(k))
            raise ZooError(f"{output} holds another job's output (differs in {', '.join(changed)}); "
                           "use a new output folder")
        if recorded == shards:
            return
    _write_text_atomic(path, json.dumps({**facts, "shards": shards}, indent=1, sort_keys=True))


def _count_rows(folder: Path, names: Sequence[str]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(folder / n).metadata.num_rows for n in names if (folder / n).exists())


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
    parser.add_argument("--no-progress", action="store_true", help="print no per-shard progress")
    parser.add_argument("--instruction", help="task instruction (models with an instruction template)")
    parser.add_argument("--prompt-name", help="a named prompt of the card, e.g. passage")
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    job = embed_dataset(args.model, args.source, args.output, column=args.column, modality=args.modality,
                        shard_rows=args.shard_rows, actors=args.actors, cpus_per_actor=args.cpus_per_actor,
                        num_cpus=args.num_cpus, address=args.address, cache=not args.no_cache,
                        progress=not args.no_progress, task_instruction=args.instruction,
                        prompt_name=args.prompt_name, id_column=getattr(args, "id_column", None))
    print(f"{job.output}: {job.rows} rows of {job.items} items in {job.shards} shards "
          f"({job.shards_embedded} embedded now, {job.cache_hits} cache hits) in {job.seconds:.1f}s")
    if job.bad_items:
        print(f"{job.bad_items} bad items: see {job.errors}")
    return 0


def cli_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="zoo embed-dataset", description="embed a dataset on Ray Data")
    add_arguments(parser)
    parser.add_argument("--id-column", help="a Parquet column of unique str/int ids for the output rows "
                        "(default: row numbers)")
    args = parser.parse_args(argv)
    try:
        return run_command(args)
    except (ZooError, OSError) as exc:
        print(f"zoo: error: {exc}", file=sys.stderr)
        return 1
