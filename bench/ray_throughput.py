"""Dataset-job throughput: zoo.scale.embed_dataset on Ray Data (1 and 2 actors) against a plain loop.

    python bench/ray_throughput.py             # 4,000 sentences, 2 rounds (a few minutes on 2 cores)
    python bench/ray_throughput.py --quick     # 1,000 sentences, 1 round

The inputs are real English: first sentences of standard-library docstrings (bench/corpus.py), written
as one Parquet file. Three ways to embed them with all-minilm-l6-v2 on the same machine, in rotating
order every round:

- plain: ``model.embed(texts)`` in this process, the model already loaded, torch on all cores;
- Ray, 1 actor using all cores (``cpus_per_actor`` = cores, as many torch threads);
- Ray, one actor per core (one torch thread each).

A Ray job is timed end to end as a user meets it inside a running Ray session: planning, actor start,
``zoo.load`` in every actor, embedding, Parquet writing; the embedding cache is off so every item is
really embedded, and every job writes into a fresh folder. Starting the local Ray itself is timed once,
apart. Every Ray row, read back by id, must be within cosine 0.9999 of the plain loop's row or no
figure is reported. On a machine of 2 cores Ray can only add overhead (actor start, model load per
actor, serialization): the table shows how much.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import Row, machine, row_cosines, write_result, write_summary  # noqa: E402
from corpus import stdlib_sentences  # noqa: E402

MODEL = "all-minilm-l6-v2"
MIN_COS = 0.9999


def read_vectors(folder: Path, n: int) -> np.ndarray:
    import pyarrow.parquet as pq

    table = pq.read_table(folder).sort_by("id")
    assert table.column("id").to_pylist() == list(range(n)), "a Ray job lost or reordered rows"
    return np.stack(table.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--shard-rows", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="1,000 texts, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.texts, args.rounds = 1000, 1

    import os

    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray
    import torch

    import zoo
    from zoo.scale import embed_dataset

    cores, load_before = os.cpu_count() or 1, os.getloadavg()[0]
    texts = list(stdlib_sentences())[: args.texts]
    if len(texts) < args.texts:
        texts = (texts * (args.texts // len(texts) + 1))[: args.texts]
    work = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    pq.write_table(pa.table({"text": texts}), work / "texts.parquet")
    t0 = time.perf_counter()
    model = zoo.load(MODEL)
    load_s = time.perf_counter() - t0
    model.embed(texts[:64])  # warm up
    t0 = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False)
    ray_init_s = time.perf_counter() - t0

    runs = {"plain loop (in process)": [], "Ray Data, 1 actor": [], f"Ray Data, {cores} actors": []}
    busy: dict[str, list[float]] = {label: [] for label in runs}
    fidelity: dict[str, float] = {}
    reference: list[np.ndarray] = []

    def plain(_round: int) -> None:
        torch.set_num_threads(cores)
        reference.append(model.embed(texts).vectors)

    def ray_job(actors: int, label: str):
        def go(round_: int) -> None:
            out = work / f"out-{actors}-{round_}"
            job = embed_dataset(MODEL, work / "texts.parquet", out, shard_rows=args.shard_rows, actors=actors,
                                cpus_per_actor=cores // actors, cache=False, progress=False)
            busy[label].append(job.info["shard_seconds"] / actors)
            cos = float(row_cosines(read_vectors(out, len(texts)), reference[0]).min())
            fidelity[label] = min(fidelity.get(label, 1.0), cos)
        return go

    labels = list(runs)
    jobs = [plain, ray_job(1, labels[1]), ray_job(cores, labels[2])]
    plain(-1)  # the reference rows, before any Ray job is compared with them
    for r in range(args.rounds):
        order = [(r + k) % 3 for k in range(3)]
        for k in order:
            t0 = time.perf_counter()
            jobs[k](r)
            runs[labels[k]].append(time.perf_counter() - t0)
            print(f"round {r + 1}: {labels[k]}: {runs[labels[k]][-1]:.1f}s", flush=True)
    ray.shutdown()

    ok = all(c >= MIN_COS for c in fidelity.values())
    base = statistics.median(runs[labels[0]])
    lines = [
        "# Dataset jobs on Ray Data: throughput against a plain loop (all-MiniLM-L6-v2, real weights)",
        "",
        f"Machine: {machine()}",
        "",
        f"Command: `python {' '.join(['bench/ray_throughput.py', *sys.argv[1:]])}` - {len(texts):,} "
        f"standard-library sentences in one Parquet file, shards of {args.shard_rows}, {args.rounds} round(s) "
        "in rotating order, median seconds; Ray jobs end to end (actor start + model load + embed + write), "
        "embedding cache off.",
        "",
        "| run | seconds | texts/s | vs plain loop | actor busy s (per actor) | overhead s | min cosine to plain "
        "| every round (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label in labels:
        t = statistics.median(runs[label])
        cos = "(reference)" if label == labels[0] else f"{fidelity[label]:.6f}"
        inside = statistics.median(busy[label]) if busy[label] else None
        extra = f"{inside:.1f} | {t - inside:.1f}" if inside is not None else " | "
        every = ", ".join(f"{x:.1f}" for x in runs[label])
        lines.append(f"| {label} | {t:.1f} | {len(texts) / t:.0f} | {base / t:.2f}x | {extra} | {cos} | {every} |")
    lines += [
        "",
        f"Fidelity: every Ray row within cosine {MIN_COS} of the plain loop: {'yes' if ok else 'NO'}.",
        f"Fixed costs outside the table: `ray.init` of a local {cores}-CPU Ray {ray_init_s:.1f}s; "
        f"`zoo.load` in this process {load_s:.1f}s (every actor pays its own).",
        "",
        f"Load average (1 min) before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f} on {cores} cores "
        "(other work shares this machine: read the ratios as rough).",
        "",
        f"On {cores} cores Ray adds no compute, only overhead: starting the actors, loading the model once per "
        "actor, moving shard tasks and results through the object store. 'Actor busy' is the time the actors "
        "spent on shards (read, embed, write; summed over shards, divided by the actors); 'overhead' is the rest "
        "of the job's seconds. Ray pays off where the cores (or machines) are many and the job is long.",
    ]
    if not ok:
        lines = [ln for ln in lines if not ln.startswith("| Ray")] + ["", "Ray rows do not match: no figures."]
    md = "\n".join(lines) + "\n"
    print(md)
    print(f"wrote {write_result('ray_throughput', md)}")
    command = f"python {' '.join(['bench/ray_throughput.py', *sys.argv[1:]])}"
    rows = []
    for label in labels[1:]:
        t = statistics.median(runs[label])
        each = ", ".join(f"{b / x:.2f}x" for b, x in zip(runs[labels[0]], runs[label], strict=True))
        ratio = f"{base / t:.2f}x (median of {args.rounds} rounds: {each})" if ok else "not reported: fidelity failed"
        rows.append(Row(f"Ray Data job, {label.split(', ')[1]}, {len(texts):,} texts (s, end to end)", f"{t:.1f}",
                        f"{base:.1f}", ratio, "report (overhead expected on 2 cores)", None,
                        f"min row cosine {fidelity[label]:.6f}"))
    write_summary("ray_throughput", command, rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
