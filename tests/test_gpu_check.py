"""bench/gpu_check.py runs end to end (on the CPU, smoke sizes) and reports each precision's fidelity.

The real check needs a CUDA GPU (bench/gpu_check.sh); here it must at least run, compare both libraries at
each precision against the fp32 reference and refuse to start the GPU run where torch sees no GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_run_on_the_cpu_reports_every_precision(tmp_path):
    env = os.environ | {"ZOO_BENCH_RESULTS": str(tmp_path)}
    out = subprocess.run([sys.executable, "bench/gpu_check.py", "--device", "cpu", "--smoke", "--precisions",
                          "float32", "bfloat16"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    rows = json.loads((tmp_path / "gpu_check_smoke.summary.json").read_text())["rows"]
    assert [r["measurement"].split(", ")[-1] for r in rows] == ["float32 (items/s)", "bfloat16 (items/s)"] * 2
    assert all("not reported" not in r["ratio"] for r in rows)
    md = (tmp_path / "gpu_check_smoke.md").read_text()
    fp32_lines = [line for line in md.splitlines() if "| float32 |" in line]
    assert len(fp32_lines) == 2 and all(line.endswith("| 1.000000 |") for line in fp32_lines)  # same weights


@pytest.mark.skipif(sys.platform != "linux", reason="bash script")
def test_the_gpu_script_refuses_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the script would run for real")
    out = subprocess.run(["bash", "bench/gpu_check.sh"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "no CUDA GPU" in out.stderr
