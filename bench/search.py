"""Top-10 search in zoo.store against numpy exact search, on clustered 384-dim vectors.

The data stands in for sentence embeddings: a seeded Gaussian mixture with one cluster per
100 rows (unequal sizes and spreads, centres sharing a common direction as real embedding
spaces do: random pairs have cosine about 0.1, rows of one cluster about 0.5), L2-normalized.
Queries are fresh draws from the same mixture. The baseline is what one would write by hand:
chunked ``q @ x.T`` plus ``argpartition``, in this same process on the same array. Its top-10
is the ground truth for recall@10.

For each size the store gets the vectors (``Collection.add``) and is searched

- exactly (``exact=True``: the store's in-memory matmul path), paired with the baseline;
- through its ANN index (``create_index()``, IVF-FLAT by default; the build is timed on its
  own), paired with the baseline, plus a sweep over ``nprobes`` and one-query-at-a-time latency;
- by LanceDB's own flat scan (``bypass_vector_index``) on a few queries, for reference.

Speed-ups are medians of alternating pairs (bench/common.py); ms/query is over the whole
query batch.

    python bench/search.py                     # 100,000 and 1,000,000 rows; writes bench/results/search.md
    python bench/search.py --sizes 100000      # a quick run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402, I001
    Row, alternate, machine, numpy_topk, peak_rss_mb, ratio_met, recall, reset_peak_rss, timed, write_result,
    write_summary,
)

from zoo.embeddings import Embeddings  # noqa: E402
from zoo.store import ANN_THRESHOLD, VectorStore  # noqa: E402

DIM, K, ROWS_PER_CLUSTER = 384, 10, 100


class Mixture:
    """A seeded Gaussian mixture on the unit sphere."""

    def __init__(self, seed: int, clusters: int, dim: int = DIM):
        rng = np.random.default_rng(seed)
        common = rng.standard_normal(dim)
        self.centers = (0.5 * common + rng.standard_normal((clusters, dim))).astype(np.float32)
        self.spread = rng.uniform(0.6, 1.2, clusters).astype(np.float32)
        self.weights = rng.dirichlet(np.full(clusters, 2.0))

    def sample(self, n: int, seed: int, chunk: int = 100_000) -> np.ndarray:
        rng = np.random.default_rng(seed)
        out = np.empty((n, self.centers.shape[1]), dtype=np.float32)
        for s in range(0, n, chunk):
            m = min(chunk, n - s)
            labels = rng.choice(len(self.centers), size=m, p=self.weights)
            noise = rng.standard_normal((m, self.centers.shape[1]), dtype=np.float32)
            v = self.centers[labels] + self.spread[labels, None] * noise
            out[s:s + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
        return out


def bench_size(n: int, args, rows: list, setup: list, sweep: list, summary: list) -> None:
    print(f"\n== {n:,} rows ==", flush=True)
    mixture = Mixture(args.seed, clusters=max(1, n // ROWS_PER_CLUSTER))
    x, t_gen = timed(lambda: mixture.sample(n, seed=args.seed + 1))
    q = mixture.sample(args.queries, seed=args.seed + 2)
    truth, t_np = timed(lambda: numpy_topk(q, x))
    base_times = [t_np]  # every baseline run; their median is numpy's ms/query
    print(f"generated in {t_gen:.1f} s; numpy exact {1000 * t_np / len(q):.2f} ms/query", flush=True)
    emb = Embeddings(x, space="bench-mixture-384", model="synthetic", modality="vector", normalized=True)

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        reset_peak_rss()
        coll = VectorStore(tmp).collection("bench")
        _, t_add = timed(lambda: coll.add(emb, [f"item-{i}" for i in range(n)]))
        _, t_load = timed(lambda: coll.search(q[:1], k=K, exact=True))  # reads the vectors into memory
        print(f"add {t_add:.1f} s, first exact search (loads vectors) {t_load:.1f} s", flush=True)

        exact_hits = coll.search(q, k=K, exact=True)
        pairs = alternate(lambda i: coll.search(q, k=K, exact=True), lambda i: numpy_topk(q, x), args.pairs)
        base_times += pairs.base
        exact_recall = recall(exact_hits, truth)
        rows.append((n, "zoo.store exact (exact=True)", exact_recall,
                     1000 * statistics.median(pairs.ours) / len(q), pairs.summary()))
        summary.append(Row(f"search top-10, {n:,} x {DIM}: store exact (ms/query)",
                           f"{1000 * statistics.median(pairs.ours) / len(q):.3f}",
                           f"{1000 * statistics.median(pairs.base) / len(q):.3f}", pairs.summary(),
                           ">= 1.0x, recall 1.0", exact_recall == 1.0 and ratio_met(pairs, 1.0),
                           f"recall@10 {exact_recall:.4f}"))

        _, t_index = timed(lambda: coll.create_index(args.index))
        print(f"{args.index} index built in {t_index:.1f} s ({coll.index_type})", flush=True)
        ann_default = n >= ANN_THRESHOLD
        ann_hits = coll.search(q, k=K, exact=None if ann_default else False)
        assert not ann_hits.exact
        pairs = alternate(lambda i: coll.search(q, k=K, exact=False), lambda i: numpy_topk(q, x), args.pairs)
        base_times += pairs.base
        ms_np = 1000 * statistics.median(base_times) / len(q)
        rows.insert(len(rows) - 1, (n, "numpy exact (chunked matmul + argpartition)", 1.0, ms_np,
                                    "1.00x (baseline)"))
        ann_recall = recall(ann_hits, truth)
        rows.append((n, f"zoo.store ANN ({coll.index_type}, nprobes {coll.probes()})", ann_recall,
                     1000 * statistics.median(pairs.ours) / len(q), pairs.summary()))
        big = n >= 1_000_000
        summary.append(Row(f"search top-10, {n:,} x {DIM}: store ANN, {coll.index_type} nprobes {coll.probes()} "
                           "(ms/query)", f"{1000 * statistics.median(pairs.ours) / len(q):.3f}",
                           f"{1000 * statistics.median(pairs.base) / len(q):.3f}", pairs.summary(),
                           "recall >= 0.95 and >= 10x" if big else "report",
                           (ann_recall >= 0.95 and ratio_met(pairs, 10.0)) if big else None,
                           f"recall@10 {ann_recall:.4f}"))

        for nprobes in args.nprobes:
            coll.nprobes = nprobes
            hits, t = min((timed(lambda: coll.search(q, k=K, exact=False)) for _ in range(2)), key=lambda r: r[1])
            sweep.append((n, nprobes, recall(hits, truth), 1000 * t / len(q), ms_np / (1000 * t / len(q))))
        coll.nprobes = None
        good = [r for r in sweep if r[0] == n and r[2] >= 0.95]
        if good:
            _, p_best, rec_best, ms_best, x_best = max(good, key=lambda r: r[4])
            summary.append(Row(f"search top-10, {n:,} x {DIM}: fastest nprobes of the sweep "
                               "with recall >= 0.95 (ms/query)", f"{ms_best:.3f}", f"{ms_np:.3f}",
                               f"{x_best:.1f}x (nprobes {p_best}; best of 2, against numpy's median)", "report",
                               None, f"recall@10 {rec_best:.4f}"))

        single = q[:args.single]
        _, t_single = timed(lambda: [coll.search(v, k=K, exact=False) for v in single])
        rows.append((n, "zoo.store ANN, one query per call", float("nan"), 1000 * t_single / len(single),
                     f"{ms_np / (1000 * t_single / len(single)):.2f}x (vs batched numpy)"))

        flat_q = q[:args.flat]
        tbl = coll._tbl()
        flat, t_flat = timed(lambda: tbl.search(flat_q).distance_type("cosine").bypass_vector_index().limit(K)
                             .select(["id", "_distance"]).to_arrow())
        qi, ids = flat["query_index"].to_numpy(), flat["id"].to_numpy()
        flat_recall = recall(np.array([ids[qi == i][:K] for i in range(len(flat_q))]), truth[:len(flat_q)])
        rows.append((n, f"LanceDB flat scan (bypass_vector_index, {len(flat_q)} queries)", flat_recall,
                     1000 * t_flat / len(flat_q), f"{ms_np / (1000 * t_flat / len(flat_q)):.2f}x"))
        setup.append((n, t_gen, t_add, t_load, t_index, peak_rss_mb()))
    for row in rows[-5:]:
        print(f"  {row[1]}: recall@10 {row[2]:.4f}, {row[3]:.2f} ms/query, {row[4]}", flush=True)


def markdown(args, rows, setup, sweep, minutes: float) -> str:
    lines = ["# Vector search: zoo.store (LanceDB) vs numpy exact search", "",
             f"Top-{K} by cosine over L2-normalized {DIM}-dim vectors from a seeded Gaussian mixture (one cluster "
             f"per {ROWS_PER_CLUSTER} rows); {args.queries} queries from the same mixture, searched as one batch; "
             f"recall@10 against numpy's exact top-10. Speed-up = numpy time / store time, median of {args.pairs} "
             "alternating pairs; rows without pairs are compared with numpy's median time over all its runs.",
             "", "| rows | method | recall@10 | ms/query | speed-up vs numpy |", "|---|---|---|---|---|"]
    for n, method, rec, ms, speed in rows:
        lines.append(f"| {n:,} | {method} | {'-' if np.isnan(rec) else f'{rec:.4f}'} | {ms:.3f} | {speed} |")
    lines += ["", f"ANN recall and speed against `nprobes` ({args.index}, best of 2 batch runs):", "",
              "| rows | nprobes | recall@10 | ms/query | speed-up vs numpy |", "|---|---|---|---|---|"]
    lines += [f"| {n:,} | {p} | {rec:.4f} | {ms:.3f} | {s:.1f}x |" for n, p, rec, ms, s in sweep]
    lines += ["", "Setup costs (seconds; peak RSS of the process during the store part):", "",
              "| rows | generate data | add to store | first exact search (read vectors) | index build "
              "| peak RSS MB |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {n:,} | {g:.1f} | {a:.1f} | {ld:.1f} | {b:.1f} | {r:,.0f} |" for n, g, a, ld, b, r in setup]
    lines += ["", f"Machine: {machine()}. Seed {args.seed}. Whole run {minutes:.1f} min. Command: "
              f"`{command_of(args)}`.", ""]
    return "\n".join(lines)


def command_of(args) -> str:
    return (f"python bench/search.py --sizes {' '.join(map(str, args.sizes))} --index {args.index} "
            f"--pairs {args.pairs} --nprobes {' '.join(map(str, args.nprobes))}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--index", choices=["ivf_flat", "ivf_pq"], default="ivf_flat")
    p.add_argument("--nprobes", type=int, nargs="+", default=[5, 10, 20, 40, 80, 160])
    p.add_argument("--single", type=int, default=50, help="queries timed one per call")
    p.add_argument("--flat", type=int, default=10, help="queries for LanceDB's flat scan")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dir", default=None, help="where the temporary store goes (default: the system temp dir)")
    p.add_argument("--out", default="search", help="result name under bench/results/")
    args = p.parse_args()

    t0 = time.perf_counter()
    rows, setup, sweep, summary = [], [], [], []
    for n in args.sizes:
        bench_size(n, args, rows, setup, sweep, summary)
    text = markdown(args, rows, setup, sweep, (time.perf_counter() - t0) / 60)
    print("\n" + text)
    print(f"wrote {write_result(args.out, text)}")
    write_summary(args.out, command_of(args), summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
