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
the output folder reads as just the vectors. Ray itself is the ``scale`` extra. Importing this package
imports neither Ray, pyarrow nor numpy (the command line builds its parser from it): they are
imported where used.

Modules: ``plan`` (the input files, cut into shards; reading a shard's rows), ``actor`` (ShardEmbedder, the
Ray Data actor that embeds and writes one shard per call), ``outputs`` (the output folder: atomic writes,
shard records and their verification, the job file), ``session`` (the driver's Ray session, and the Ray
processes a killed driver left behind), ``job`` (``embed_dataset``: the job from plan to counts, its
progress), ``command`` (``zoo embed-dataset``'s arguments and printout).
"""

from __future__ import annotations

from zoo.data.scale.actor import ShardEmbedder, card_sha256
from zoo.data.scale.command import add_arguments, cli_main, run_command
from zoo.data.scale.job import CACHE_FILE, EMBED_ROWS, SHARD_ROWS, DatasetJob, ShardProgress, embed_dataset
from zoo.data.scale.outputs import ERRORS_DIR, MANIFEST, RECORDS_DIR
from zoo.data.scale.plan import SUFFIXES, Plan, plan_job, read_columns, read_rows
from zoo.data.scale.session import RAY_RECORD, ray_session, stop_stale_ray

__all__ = [
    "CACHE_FILE",
    "EMBED_ROWS",
    "ERRORS_DIR",
    "MANIFEST",
    "RAY_RECORD",
    "RECORDS_DIR",
    "SHARD_ROWS",
    "SUFFIXES",
    "DatasetJob",
    "Plan",
    "ShardEmbedder",
    "ShardProgress",
    "add_arguments",
    "card_sha256",
    "cli_main",
    "embed_dataset",
    "plan_job",
    "ray_session",
    "read_columns",
    "read_rows",
    "run_command",
    "stop_stale_ray",
]
