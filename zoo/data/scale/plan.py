"""Planning a dataset job: which items, in which order, in which shard; reading a shard's rows.

A Parquet file or folder gives the rows of a text column (and, with ``id_column``, their ids); a folder, a glob
or a list of paths gives files of one modality, whose ids are their paths relative to the source folder.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.errors import InvalidInputError
from zoo.inputs.limits import FILE_SUFFIXES

SUFFIXES = FILE_SUFFIXES


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
