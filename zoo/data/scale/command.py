"""The command line of dataset jobs: ``zoo embed-dataset``'s arguments and printout, and a parser of its own."""

from __future__ import annotations

import argparse
import sys

from zoo.data.scale.job import SHARD_ROWS
from zoo.errors import ZooError


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
    from zoo.data import scale  # the package's embed_dataset: patching zoo.scale.embed_dataset reaches the command

    job = scale.embed_dataset(args.model, args.source, args.output, column=args.column, modality=args.modality,
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
