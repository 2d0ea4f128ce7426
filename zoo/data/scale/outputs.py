"""The output folder of a dataset job: atomic writes, shard records, verifying finished shards, the job file.

A shard file is written under a hidden name and renamed; ``_shards/<name>.json`` records its rows and sha256,
``_errors/<name>`` holds its bad items, and ``_job.json`` what the job embeds (a rerun of another job is refused).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from zoo.catalog.sources import sha256_file
from zoo.data.scale.plan import _one_line
from zoo.errors import IntegrityError, ZooError

ERRORS_DIR = "_errors"
MANIFEST = "_job.json"
RECORDS_DIR = "_shards"  # <name>.json per finished shard: rows, bad items, sha256 of its files


def _write_atomic(table, path: Path) -> str:
    """Write a Parquet file under a hidden name and rename it: a file that exists was complete when written.

    Returns the file's sha256.
    """
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    sha = sha256_file(tmp)
    os.replace(tmp, path)
    return sha


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


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
        _write_record(output, name, {"items": items, "rows": meta.num_rows, "bad": bad, "sha256": sha256_file(path),
                                     "errors_sha256": sha256_file(errors) if errors.exists() else None})
        return None
    if record.get("sha256") != sha256_file(path):
        return "differs from the file that was written (sha256 mismatch)"
    if record.get("errors_sha256") != (sha256_file(errors) if errors.exists() else None):
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


# -- the job file, and the rows a job wrote --------------------------------------------------------
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
