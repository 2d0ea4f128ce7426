"""Resident memory across 5,000 embed calls: does the zoo leak? Baseline: sentence-transformers, same weights.

    python bench/rss_drift.py              # 5,000 calls each, in fresh processes
    python bench/rss_drift.py --calls 1000

Each side runs in its own fresh interpreter: load all-MiniLM-L6-v2, warm up with 200 calls,
then call embed / encode on a small batch (4 texts of 8..40 tokens) ``calls`` times, reading
RSS every 250 calls. Reported: RSS after warm-up, at the end, and the least-squares slope in
KiB per 1,000 calls over the measured points. Target (issue 7): no growth beyond noise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import Row, machine, write_result, write_summary  # noqa: E402

CHILD = r"""
import json, sys
sys.path.insert(0, {bench!r})
from common import rss_mb
side, calls = sys.argv[1], int(sys.argv[2])
texts = ["a dog runs in the park", "The function returns the sum of two numbers and raises on overflow.",
         "fresh bread", "Return a new list containing all items from the iterable in ascending order."]
if side == "zoo":
    import zoo
    m = zoo.load("all-minilm-l6-v2")
    run = lambda: m.embed(texts).vectors
else:
    from sentence_transformers import SentenceTransformer
    import zoo
    st = SentenceTransformer(str(zoo.load("all-minilm-l6-v2").resolved.path), device="cpu")
    run = lambda: st.encode(texts, normalize_embeddings=True)
for _ in range(200):
    run()
points = [(0, rss_mb())]
for i in range(1, calls + 1):
    last = run()
    if i % 250 == 0:
        points.append((i, rss_mb()))
print(json.dumps({{"points": points, "last": last.tolist()}}))
"""


def measure(side: str, calls: int) -> tuple[list[tuple[int, float]], np.ndarray]:
    """RSS readings (call, MiB) of a fresh process, and the vectors of its last call."""
    code = CHILD.format(bench=str(Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", code, side, str(calls)], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return [tuple(p) for p in r["points"]], np.array(r["last"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=int, default=5000)
    args = p.parse_args()
    rows, change, last = [], {}, {}
    for side, label in (("zoo", "zoo embed"), ("st", "sentence-transformers encode")):
        pts, last[side] = measure(side, args.calls)
        x, y = np.array([q[0] for q in pts], float), np.array([q[1] for q in pts], float)
        slope_kib = np.polyfit(x, y, 1)[0] * 1000 * 1024  # MiB per call -> KiB per 1,000 calls
        spread = float(y.max() - y.min())
        change[side] = float(y[-1] - y[0])
        rows.append((label, f"{y[0]:.1f}", f"{y[-1]:.1f}", f"{y[-1] - y[0]:+.1f}", f"{spread:.1f}",
                     f"{slope_kib:+.1f}"))
        print(f"{label}: RSS {y[0]:.1f} -> {y[-1]:.1f} MiB, slope {slope_kib:+.1f} KiB per 1,000 calls")
    table = ("| side | RSS after warm-up (MiB) | RSS at the end (MiB) | change (MiB) | max - min (MiB) "
             "| slope (KiB / 1,000 calls) |\n|---|---|---|---|---|---|\n"
             + "".join(f"| {' | '.join(r)} |\n" for r in rows))
    md = (f"# RSS drift over {args.calls:,} embed calls\n\nall-MiniLM-L6-v2, a batch of 4 short texts per call, "
          f"fresh process per side, RSS read every 250 calls after 200 warm-up calls.\n\nMachine: {machine()}\n\n"
          f"Command: `python bench/rss_drift.py --calls {args.calls}`\n\n{table}")
    cos = float((last["zoo"] * last["st"]).sum(1).min())
    md += f"\nFidelity: the last call's vectors of the two sides agree to row cosine {cos:.6f} (>= 0.9999).\n"
    print(md)
    write_result("rss_drift", md)
    noise = max(1.0, change["st"])  # growth within 1 MiB, or within the baseline's own, is noise
    write_summary("rss_drift", f"python bench/rss_drift.py --calls {args.calls}", [
        Row(f"RSS drift over {args.calls:,} embed calls (MiB change after warm-up)", f"{change['zoo']:+.1f}",
            f"{change['st']:+.1f}", "" if cos >= 0.9999 else "not reported: fidelity failed",
            f"<= {noise:.1f} MiB", cos >= 0.9999 and change["zoo"] <= noise, f"last call row cosine {cos:.6f}"),
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
