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
from common import machine, write_result  # noqa: E402

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
    run = lambda: m.embed(texts)
else:
    from sentence_transformers import SentenceTransformer
    import zoo
    st = SentenceTransformer(str(zoo.load("all-minilm-l6-v2").resolved.path), device="cpu")
    run = lambda: st.encode(texts)
for _ in range(200):
    run()
points = [(0, rss_mb())]
for i in range(1, calls + 1):
    run()
    if i % 250 == 0:
        points.append((i, rss_mb()))
print(json.dumps(points))
"""


def measure(side: str, calls: int) -> list[tuple[int, float]]:
    code = CHILD.format(bench=str(Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", code, side, str(calls)], capture_output=True, text=True, check=True)
    return [tuple(p) for p in json.loads(out.stdout.strip().splitlines()[-1])]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=int, default=5000)
    args = p.parse_args()
    rows = []
    for side, label in (("zoo", "zoo embed"), ("st", "sentence-transformers encode")):
        pts = measure(side, args.calls)
        x, y = np.array([q[0] for q in pts], float), np.array([q[1] for q in pts], float)
        slope_kib = np.polyfit(x, y, 1)[0] * 1000 * 1024  # MiB per call -> KiB per 1,000 calls
        spread = float(y.max() - y.min())
        rows.append((label, f"{y[0]:.1f}", f"{y[-1]:.1f}", f"{y[-1] - y[0]:+.1f}", f"{spread:.1f}",
                     f"{slope_kib:+.1f}"))
        print(f"{label}: RSS {y[0]:.1f} -> {y[-1]:.1f} MiB, slope {slope_kib:+.1f} KiB per 1,000 calls")
    table = ("| side | RSS after warm-up (MiB) | RSS at the end (MiB) | change (MiB) | max - min (MiB) "
             "| slope (KiB / 1,000 calls) |\n|---|---|---|---|---|---|\n"
             + "".join(f"| {' | '.join(r)} |\n" for r in rows))
    md = (f"# RSS drift over {args.calls:,} embed calls\n\nall-MiniLM-L6-v2, a batch of 4 short texts per call, "
          f"fresh process per side, RSS read every 250 calls after 200 warm-up calls.\n\nMachine: {machine()}\n\n"
          f"Command: `python bench/rss_drift.py --calls {args.calls}`\n\n{table}")
    print(md)
    write_result("rss_drift", md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
