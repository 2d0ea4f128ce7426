"""`zoo bench`: runs the suite's scripts, collects their summaries and writes RESULTS.md with the machine."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from zoo import cli

ROOT = Path(__file__).resolve().parents[1]


def _runner():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_zoo_bench_runs_a_benchmark_and_writes_the_table(tmp_path, capsys):
    assert cli.main(["bench", "--only", "import_time", "--results", str(tmp_path)]) == 0
    md = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    summary = json.loads((tmp_path / "import_time.summary.json").read_text(encoding="utf-8"))
    row = summary["rows"][0]
    assert summary["command"] == "python bench/import_time.py" and row["target"] == "< 150 ms"
    assert row["met"] == (float(row["ours"]) < 150)  # the verdict follows from the figure
    assert "Machine: " in md and " cores" in md and "GiB memory" in md
    assert f"| import_time | {row['measurement']} | {row['ours']} |" in md
    assert "Targets met: " in md and "This run: import_time in" in md
    assert summary["run"] in md  # stamped with the suite run that wrote it
    assert (tmp_path / "import_time.md").is_file()  # the benchmark's own detailed table


def test_failed_and_missing_benchmarks_are_named_not_hidden(tmp_path):
    run = _runner()
    (tmp_path / "search.summary.json").write_text(json.dumps({
        "name": "search", "command": "python bench/search.py", "notes": [], "run": "today",
        "rows": [{"measurement": "exact", "ours": "1", "base": "2", "ratio": "2.00x", "target": ">= 1.0x",
                  "met": True, "fidelity": "recall 1.0"},
                 {"measurement": "ann", "ours": "1", "base": "2", "ratio": "2.00x", "target": ">= 10x",
                  "met": False, "fidelity": "recall 0.9"}]}))
    md = run.results_markdown(tmp_path, {"search": (True, 60.0), "rss_drift": (False, 5.0)}, ["a machine"],
                              "today", (0.5, 1.0), quick=False)
    assert "| search | ann | 1 | 2 | 2.00x | >= 10x | **no** | recall 0.9 |" in md
    assert "Targets met: 1 of 2." in md
    assert "- **rss_drift**: failed in this run" in md and "- **ray_throughput**: no results yet" in md
    later = run.results_markdown(tmp_path, {"search": (True, 60.0)}, ["a machine"], "tomorrow", (0.5, 1.0),
                                 quick=False)
    assert "- **search**: wrote no summary in this run" in later  # an old file is not passed off as new
    assert "search (from the run started today)" in run.results_markdown(tmp_path, {}, ["a machine"], "tomorrow",
                                                                           (0.5, 1.0), quick=False)


def test_zoo_bench_outside_a_checkout_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("zoo.apps.commands.__file__", str(tmp_path / "site-packages" / "zoo" / "cli.py"))
    assert cli.main(["bench", "--list"]) == 1


def test_every_suite_script_exists_and_writes_a_summary():
    run = _runner()
    for bench in run.SUITE:
        source = (ROOT / "bench" / bench.full[0]).read_text(encoding="utf-8")
        assert bench.full[0] == bench.quick[0] and "write_summary(" in source, bench.name
