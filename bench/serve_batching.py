"""zoo serve: dynamic batching against the same server with batching off, on loopback.

    python bench/serve_batching.py           # concurrency 1, 8, 32, 128; 2 rounds (a few minutes on 2 cores)
    python bench/serve_batching.py --quick   # concurrency 1 and 32, 1 round

The server is ``zoo serve all-minilm-l6-v2 --preload`` in its own process, started once with dynamic batching
(the default: up to 8,192 tokens per batch, 5 ms wait) and once with ``--no-batching`` (each request embedded
alone), one after the other, in alternating order each round. The load generator is this process: C keep-alive
connections on asyncio streams (a few lines of HTTP/1.1, so the client costs the two cores as little as
possible), each sending one short real sentence per request (first sentences of standard-library docstrings,
bench/corpus.py) and waiting for the answer, until a request count or a time limit is reached. Throughput is
requests answered per second; latency is per request, client side. Before any figure the two servers' vectors
for the same 64 sentences are compared (row cosine >= 0.9999).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import Row, machine, row_cosines, write_result, write_summary  # noqa: E402
from corpus import stdlib_sentences  # noqa: E402

MODEL = "all-minilm-l6-v2"
MIN_COS = 0.9999
TARGET = 3.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``zoo serve`` in a child process."""

    def __init__(self, batching: bool, models: tuple[str, ...] = (MODEL,)):
        self.port = _free_port()
        args = [sys.executable, "-m", "zoo.apps.cli", "serve", *models, "--preload", "--port", str(self.port)]
        self.proc = subprocess.Popen(args + ([] if batching else ["--no-batching"]), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.wait_until_up("zoo serve", 120)

    def wait_until_up(self, what: str, seconds: float, why: Callable[[], str] = lambda: "") -> None:
        """Return once /health answers; RuntimeError (with ``why()``) if the process exits or ``seconds`` pass."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{what} exited ({self.proc.returncode}){why()}") from None
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{what} did not start in {seconds:g} s")

    def embed(self, texts: list[str]) -> np.ndarray:
        body = json.dumps({"model": MODEL, "input": texts}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/v1/embeddings", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            data = json.loads(r.read())["data"]
        return np.array([d["embedding"] for d in sorted(data, key=lambda d: d["index"])], dtype=np.float32)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def _request(port: int, body: bytes) -> bytes:
    head = (f"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def _client(port: int, bodies: list[bytes], counter: list[int], total: int, deadline: float,
                  latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while counter[0] < total and time.monotonic() < deadline:
            i = counter[0]
            counter[0] += 1
            t0 = time.perf_counter()
            writer.write(_request(port, bodies[i % len(bodies)]))
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            if b" 200 " not in status:
                raise RuntimeError(f"server answered {status!r}")
            latencies.append(time.perf_counter() - t0)
    finally:
        writer.close()


def load(port: int, concurrency: int, texts: list[str], total: int, seconds: float) -> dict:
    """``total`` requests of one text each from ``concurrency`` connections (or until ``seconds``)."""
    bodies = [json.dumps({"model": MODEL, "input": text}).encode() for text in texts]
    return load_bodies(port, concurrency, bodies, total, seconds)


def load_bodies(port: int, concurrency: int, bodies: list[bytes], total: int, seconds: float) -> dict:
    """``total`` requests (the JSON ``bodies`` in turn) from ``concurrency`` connections (or until ``seconds``):
    throughput and latencies."""
    latencies: list[float] = []

    async def run():
        deadline = time.monotonic() + seconds
        counter = [0]
        await asyncio.gather(*(_client(port, bodies, counter, total, deadline, latencies)
                               for _ in range(concurrency)))

    t0 = time.perf_counter()
    asyncio.run(run())
    wall = time.perf_counter() - t0
    ms = np.array(latencies) * 1000
    return {"rps": len(latencies) / wall, "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "n": len(latencies)}


def compare(makers: dict[str, Callable[[], Any]], levels: tuple[int, ...], rounds: int, texts: list[str],
            totals: Callable[[int], tuple[int, int]], seconds: float) -> tuple[dict, dict]:
    """Start each server in turn (the order alternating by round), keep its vectors for 64 texts, then load it at
    each concurrency C with ``totals(C)`` = (warm-up, measured) requests. Returns (vectors per server, one array
    per round) and (results per (server, C), one dict per round)."""
    names = list(makers)
    vectors: dict[str, list[np.ndarray]] = {}
    results: dict[tuple[str, int], list[dict]] = {}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            server = makers[name]()
            print(f"round {r + 1} {name}: up in {time.perf_counter() - t0:.1f} s", flush=True)
            try:
                vectors.setdefault(name, []).append(server.embed(texts[:64]))
                for c in levels:
                    warm, total = totals(c)
                    load(server.port, c, texts, warm, seconds)
                    res = load(server.port, c, texts, total, seconds)
                    results.setdefault((name, c), []).append(res)
                    print(f"round {r + 1} {name:12s} c={c:3d}: {res['rps']:7.1f} req/s  p50 {res['p50']:7.1f} ms  "
                          f"p99 {res['p99']:7.1f} ms  ({res['n']} requests)", flush=True)
            finally:
                server.stop()
    return vectors, results


def median(results: dict, name: str, c: int, key: str) -> float:
    return statistics.median(x[key] for x in results[(name, c)])


def table(results: dict, a: str, b: str, levels: tuple[int, ...], ok: bool) -> list[str]:
    """Markdown rows: req/s, p50 and p99 of ``a`` and ``b`` per concurrency, and a/b throughput (if ``ok``)."""
    lines = [f"| concurrency | {a} req/s | p50 ms | p99 ms | {b} req/s | p50 ms | p99 ms | throughput ratio |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in levels:
        x, y = median(results, a, c, "rps"), median(results, b, c, "rps")
        lines.append(f"| {c} | {x:.1f} | {median(results, a, c, 'p50'):.1f} | {median(results, a, c, 'p99'):.1f} | "
                     f"{y:.1f} | {median(results, b, c, 'p50'):.1f} | {median(results, b, c, 'p99'):.1f} | "
                     + (f"{x / y:.2f}x |" if ok else "n/a |"))
    return lines


def comparison(makers: dict[str, Callable[[], Any]], levels: tuple[int, ...], rounds: int, texts: list[str],
               totals: Callable[[int], tuple[int, int]], seconds: float, *, title: str,
               about: str) -> tuple[dict, float, bool, list[str]]:
    """:func:`compare` two servers, then check their vectors agree: (results, min row cosine, agreed, the
    markdown page's first lines: title, machine, ``about`` and the table)."""
    vectors, results = compare(makers, levels, rounds, texts, totals, seconds)
    a, b = list(makers)
    cos = min(float(row_cosines(x, y).min()) for x in vectors[a] for y in vectors[b])  # any rounds' pair
    ok = cos >= MIN_COS
    return results, cos, ok, [f"# {title}", "", machine(), "", about, "", *table(results, a, b, levels, ok)]


def in_process_gain(texts: list[str]) -> tuple[float, float]:
    """texts/s of ``embed`` in this process, one text per call and 32 per call: the model's own gain from batches."""
    import zoo

    model = zoo.load(MODEL)
    model.embed(texts[:32])
    t0 = time.perf_counter()
    for text in texts[:320]:
        model.embed([text])
    alone = 320 / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(0, len(texts), 32):
        model.embed(texts[i : i + 32])
    return alone, len(texts) / (time.perf_counter() - t0)


def parse_args(doc: str) -> argparse.Namespace:
    """The options of the serving benchmarks: --quick, --rounds, --seconds."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0, help="time limit of one load run")
    return ap.parse_args()


def main() -> int:
    args = parse_args(__doc__)
    levels = (1, 32) if args.quick else (1, 8, 32, 128)
    rounds = 1 if args.quick else args.rounds
    texts = [s for s in stdlib_sentences(5, 16)][:2000]
    load_before = os.getloadavg()[0]

    makers = {"batching": lambda: Server(batching=True), "no batching": lambda: Server(batching=False)}
    results, cos, ok, lines = comparison(
        makers, levels, rounds, texts, lambda c: (40, 100) if c == 1 else (40, max(400, 8 * c)), args.seconds,
        title="zoo serve: dynamic batching vs batching off",
        about=f"`zoo serve {MODEL}` on loopback, one short real sentence per request, C concurrent keep-alive "
              f"connections; median of {rounds} round(s), servers in alternating order.")
    gain = in_process_gain(texts[:640])
    print(f"in process: one at a time {gain[0]:.1f} texts/s, batches of 32 {gain[1]:.1f} texts/s", flush=True)

    def med(mode, c, key):
        return median(results, mode, c, key)

    lines += ["", f"The model's own gain on this machine: `embed` in one process, no HTTP, gives {gain[0]:.0f} "
              f"texts/s one text per call and {gain[1]:.0f} texts/s 32 per call ({gain[1] / gain[0]:.2f}x). "
              "The servers' ratio differs from it because HTTP, JSON and the load generator share the same cores "
              "with the model's threads: without batching they interrupt every one-text call.",
              "", f"Fidelity: min row cosine between the two servers' vectors for 64 sentences {cos:.6f} "
              f"(required {MIN_COS}).",
              f"Load average (1 min) before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f}."]
    md = "\n".join(lines) + "\n"
    print(md)
    print(f"wrote {write_result('serve_batching', md)}")
    command = f"python {' '.join(['bench/serve_batching.py', *sys.argv[1:]])}"
    c = 32
    b, n = med("batching", c, "rps"), med("no batching", c, "rps")
    each = ", ".join(f"{x['rps'] / y['rps']:.2f}x" for x, y in zip(results[("batching", c)],
                                                                   results[("no batching", c)], strict=True))
    rows = [Row(f"zoo serve, 32 concurrent clients, one short text each (req/s; p50/p99 "
                f"{med('batching', c, 'p50'):.0f}/{med('batching', c, 'p99'):.0f} ms vs "
                f"{med('no batching', c, 'p50'):.0f}/{med('no batching', c, 'p99'):.0f} ms)",
                f"{b:.1f}", f"{n:.1f}",
                f"{b / n:.2f}x (rounds: {each})" if ok else "not reported: fidelity failed",
                f">= {TARGET:g}x", (b / n >= TARGET) if ok else None, f"min row cosine {cos:.6f}"),
            Row("the model's own gain: embed in process, 32 texts per call against 1 (texts/s, no HTTP)",
                f"{gain[1]:.0f}", f"{gain[0]:.0f}", f"{gain[1] / gain[0]:.2f}x", "report", None, "")]
    write_summary("serve_batching", command, rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
