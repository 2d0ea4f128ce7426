"""Run the benchmark suite and write bench/RESULTS.md (what ``zoo bench`` calls).

    python bench/run.py                    # every benchmark, full size (about 70 minutes on 2 cores)
    python bench/run.py --only search      # some of them; RESULTS.md keeps the others' last rows
    python bench/run.py --quick            # smoke sizes, results under bench/results-quick/

Each benchmark is its own script in bench/, run in a fresh interpreter one after another (never
two at once: they would share the cores). Every script times the zoo against its baseline in the
same process (or in alternating fresh ones), checks its outputs against the baseline's (row
cosine, same order) and reports no ratio when they disagree; it writes its detailed table to
``results/<name>.md`` and the rows for this summary to ``results/<name>.summary.json``. A script
that fails is listed as failed, and the suite goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Bench:
    name: str
    about: str
    full: tuple[str, ...]
    quick: tuple[str, ...]


SUITE = (
    Bench("import_time", "cost of `import zoo`", ("import_time.py",), ("import_time.py",)),
    Bench("text_throughput", "text throughput, cold start, streaming memory vs sentence-transformers",
          ("text_throughput.py",), ("text_throughput.py", "--quick")),
    Bench("padding_adversary", "95% short / 5% long texts vs sentence-transformers and unsorted batching",
          ("padding_adversary.py",), ("padding_adversary.py", "--quick")),
    Bench("image_throughput", "CLIP images and prompts end to end vs open_clip",
          ("image_throughput.py",), ("image_throughput.py", "--quick", "--pairs", "2")),
    Bench("rss_drift", "resident memory over 5,000 embed calls vs sentence-transformers",
          ("rss_drift.py",), ("rss_drift.py", "--calls", "500")),
    Bench("search", "top-10 search, zoo.store vs numpy exact",
          ("search.py",),
          ("search.py", "--sizes", "60000", "--pairs", "1", "--nprobes", "10", "--single", "5", "--flat", "2")),
    Bench("binary_search", "binary top-10 (Hamming, then float-query rescoring) at 1M rows vs numpy exact float",
          ("binary_search.py",), ("binary_search.py", "--quick")),
    Bench("ray_throughput", "Ray Data jobs with 1 and 2 actors vs a plain loop",
          ("ray_throughput.py", "--rounds", "3"), ("ray_throughput.py", "--quick")),
    Bench("serve_batching", "zoo serve: dynamic batching vs batching off, 1 to 128 concurrent clients on loopback",
          ("serve_batching.py",), ("serve_batching.py", "--quick")),
    Bench("serve_infinity", "zoo serve vs infinity (infinity-emb) on all-MiniLM-L6-v2, 1 to 32 concurrent clients",
          ("serve_infinity.py",), ("serve_infinity.py", "--quick")),
    Bench("serve_images", "zoo serve: efficientnet-lite0 over data-URL photos, 16 concurrent clients vs one at a time",
          ("serve_images.py",), ("serve_images.py", "--quick")),
    Bench("serve_memory", "zoo serve: server RSS after 10,000 requests vs after 100",
          ("serve_memory.py",), ("serve_memory.py", "--quick")),
    Bench("video_decode", "video decoding and frame sampling (sandboxed) vs a plain PyAV loop on the same clips",
          ("video_decode.py",), ("video_decode.py", "--quick")),
    Bench("soak", "30 min of mixed good and hostile calls from 8 threads over every offline model vs serial results",
          ("soak.py", "--minutes", "30"), ("soak.py", "--minutes", "1")),
)


def machine_facts() -> list[str]:
    """Lines describing the machine: CPU, cores, memory, libraries, load."""
    sys.path.insert(0, str(HERE))
    from common import machine

    mem = "unknown memory"
    try:
        kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
        mem = f"{kb / 1024**2:.0f} GiB memory"
    except (OSError, StopIteration):
        pass
    gpu = "no GPU used (CPU only)"
    return [f"{machine()}, {mem}, {platform.system()}; {gpu}"]


def run_one(bench: Bench, quick: bool, env: dict[str, str]) -> tuple[bool, float]:
    """Run one script with live output (prefixed by its name); (succeeded, seconds)."""
    args = bench.quick if quick else bench.full
    print(f"\n=== {bench.name}: python bench/{' '.join(args)}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(HERE / args[0]), *args[1:]], cwd=HERE.parent, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        print(f"[{bench.name} {time.perf_counter() - t0:6.0f}s] {line}", end="", flush=True)
    ok = proc.wait() == 0
    seconds = time.perf_counter() - t0
    print(f"=== {bench.name}: {'done' if ok else f'FAILED (exit {proc.returncode})'} in {seconds / 60:.1f} min",
          flush=True)
    return ok, seconds


def stamp(path: Path, started: str, begun: float) -> None:
    """Note in a summary written since ``begun`` which suite run wrote it (a partial rerun's table then says
    where its older rows come from)."""
    if path.is_file() and path.stat().st_mtime >= begun:
        summary = json.loads(path.read_text(encoding="utf-8"))
        path.write_text(json.dumps(summary | {"run": started}, indent=1), encoding="utf-8")


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def results_markdown(results: Path, status: dict[str, tuple[bool, float]], facts: list[str], started: str,
                     load: tuple[float, float], quick: bool) -> str:
    lines = ["# Benchmark results" + (" (quick smoke sizes: not the real figures)" if quick else ""), "",
             f"Written by `zoo bench{' --quick' if quick else ''}` (bench/run.py), started {started}.", "",
             f"Machine: {facts[0]}. Load average (1 min) {load[0]:.1f} before, {load[1]:.1f} after.", "",
             "Every benchmark runs the zoo and its baseline on the same work in this machine's process (or "
             "alternating fresh processes), in alternating order; ratios are medians over the pairs, with the "
             "spread in brackets. A ratio is reported only when the outputs agree with the baseline's "
             "(row cosine >= 0.9999 in the same order, recall 1.0 for exact search). Ratios > 1 favour the zoo.",
             "", "| benchmark | measurement | zoo | baseline | ratio (median, spread) | target | met | fidelity |",
             "|---|---|---|---|---|---|---|---|"]
    met = total = 0
    commands, missing = [], []
    for bench in SUITE:
        path = results / f"{bench.name}.summary.json"
        ok, seconds = status.get(bench.name, (True, float("nan")))
        if not ok or not path.is_file():
            missing.append(f"- **{bench.name}**: " + ("failed in this run (see its log)" if not ok
                                                       else "no results yet"))
            continue
        summary = json.loads(path.read_text(encoding="utf-8"))
        if bench.name in status and summary.get("run") != started:  # an older file: this run wrote none
            missing.append(f"- **{bench.name}**: wrote no summary in this run")
            continue
        when = "" if bench.name in status else f" (from the run started {summary.get('run', 'earlier')})"
        commands.append(f"- {bench.name}{when}: `{summary['command']}`, details in "
                        f"[results/{bench.name}.md](results/{bench.name}.md)"
                        + (f", {seconds / 60:.1f} min" if bench.name in status else ""))
        for row in summary["rows"]:
            verdict = {True: "yes", False: "**no**", None: "-"}[row["met"]]
            met += row["met"] is True
            total += row["met"] is not None
            lines.append("| " + " | ".join(_cell(c) for c in (bench.name, row["measurement"], row["ours"],
                                                               row["base"], row["ratio"], row["target"], verdict,
                                                               row["fidelity"])) + " |")
    lines += ["", f"Targets met: {met} of {total}.", "", "Commands and details:", "", *commands]
    if missing:
        lines += ["", "Not in the table:", "", *missing]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="zoo bench", description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", choices=[b.name for b in SUITE], help="run only these benchmarks")
    p.add_argument("--quick", action="store_true", help="smoke sizes; results go to bench/results-quick/")
    p.add_argument("--results", type=Path, help="the results folder (default bench/results, or results-quick)")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = p.parse_args(argv)
    if args.list:
        for b in SUITE:
            print(f"{b.name:18} {b.about}\n{'':18} full: python bench/{' '.join(b.full)}")
        return 0
    results = (args.results or HERE / ("results-quick" if args.quick else "results")).resolve()
    results.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"ZOO_BENCH_RESULTS": str(results), "PYTHONUNBUFFERED": "1"}
    chosen = [b for b in SUITE if not args.only or b.name in args.only]
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    status = {}
    for bench in chosen:
        begun = time.time()
        status[bench.name] = run_one(bench, args.quick, env)
        stamp(results / f"{bench.name}.summary.json", started, begun)
    facts = machine_facts()
    md = results_markdown(results, status, facts, started, (load0, os.getloadavg()[0]), args.quick)
    md += f"\nThis run: {', '.join(b.name for b in chosen)} in {(time.perf_counter() - t0) / 60:.1f} min.\n"
    out = results.parent / "RESULTS.md" if results == (HERE / "results").resolve() else results / "RESULTS.md"
    out.write_text(md, encoding="utf-8")
    print("\n" + md + f"\nwrote {out}")
    return 0 if all(ok for ok, _ in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
