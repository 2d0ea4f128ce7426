"""zoo serve's memory over many requests: resident memory of the server process after 100 requests and after
10,000.

    python bench/serve_memory.py            # 10,000 requests
    python bench/serve_memory.py --quick    # 2,000

``zoo serve all-minilm-l6-v2 --preload`` in its own process; 8 concurrent clients send one short real sentence per
request. The server's RSS (``/proc/<pid>/status``) is read after 100 requests and then every 1,000; growth beyond
noise would be a leak (queues, futures, metrics or per-request state kept). A leak grows with every request, so
the growth over the second half of the run is reported beside the growth from request 100: caches that fill up
(oneDNN keeps up to 1,024 compiled kernels, one per new batch shape; ``--onednn-cache-capacity 0`` turns that
cache off in the server to show its share) grow early and then stop.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import Row, machine, write_result, write_summary  # noqa: E402
from corpus import stdlib_sentences  # noqa: E402
from serve_batching import MODEL, Server, load_bodies  # noqa: E402

NOISE_MB = 30.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--onednn-cache-capacity", type=int, help="ONEDNN_PRIMITIVE_CACHE_CAPACITY for the server")
    args = ap.parse_args()
    if args.onednn_cache_capacity is not None:
        os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = str(args.onednn_cache_capacity)  # the server inherits it
    total = 2_000 if args.quick else args.requests
    bodies = [json.dumps({"model": MODEL, "input": t}).encode() for t in stdlib_sentences(5, 16)[:2000]]
    server = Server(batching=True)
    trace = []
    try:
        load_bodies(server.port, 8, bodies, 100, 120)
        done = 100
        trace.append((done, rss_mb(server.proc.pid)))
        while done < total:
            step = min(1000, total - done)
            res = load_bodies(server.port, 8, bodies[done % len(bodies):] + bodies, step, 300)
            done += res["n"]
            trace.append((done, rss_mb(server.proc.pid)))
            print(f"{done:6d} requests: RSS {trace[-1][1]:.1f} MB", flush=True)
    finally:
        server.stop()
    first, last = trace[0][1], trace[-1][1]
    growth = last - first
    half = min(trace, key=lambda t: abs(t[0] - trace[-1][0] / 2))
    late = last - half[1]
    cache = os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY")
    md = "\n".join([
        "# zoo serve: resident memory over many requests", "", machine(), "",
        f"oneDNN primitive cache capacity: {cache if cache is not None else 'default (1,024)'}.", "",
        "| requests | server RSS (MB) |", "|---:|---:|", *(f"| {n:,} | {mb:.1f} |" for n, mb in trace), "",
        f"Growth from 100 to {trace[-1][0]:,} requests: {growth:+.1f} MB (noise allowance {NOISE_MB:g} MB).",
        f"Growth over the second half, {half[0]:,} to {trace[-1][0]:,} requests: {late:+.1f} MB.",
    ]) + "\n"
    print(md)
    print(f"wrote {write_result('serve_memory', md)}")
    command = f"python {' '.join(['bench/serve_memory.py', *sys.argv[1:]])}"
    write_summary("serve_memory", command, [
        Row(f"zoo serve RSS after {trace[-1][0]:,} requests vs after 100 (MB)", f"{last:.1f}", f"{first:.1f}",
            f"{growth:+.1f} MB", f"<= +{NOISE_MB:g} MB (noise)", growth <= NOISE_MB, ""),
        Row(f"the same, second half only: after {trace[-1][0]:,} vs after {half[0]:,} requests (MB)", f"{last:.1f}",
            f"{half[1]:.1f}", f"{late:+.1f} MB", "report", None, "")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
