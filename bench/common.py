"""Shared benchmark helpers: machine facts, memory readings, alternating paired timings."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

RESULTS = Path(os.environ.get("ZOO_BENCH_RESULTS") or Path(__file__).parent / "results")
"""Where results go: ``bench/results`` unless ZOO_BENCH_RESULTS names another folder (quick runs)."""


def machine() -> str:
    """A one-line description of the machine and the library versions that matter."""
    import torch

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads, "
            f"{torch.backends.cpu.get_cpu_capability()}), Python {platform.python_version()}")


def rss_mb() -> float:
    """Resident set size of this process, in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> None:
    """Start a new peak-RSS window (Linux: writing 5 to clear_refs resets VmHWM)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class Paired:
    """Times of a candidate and a baseline measured in alternating order on the same work."""

    ours: list[float]
    base: list[float]

    @property
    def ratios(self) -> list[float]:
        """Speed-up of ours over the baseline, one per pair (baseline time / our time)."""
        return [b / o for o, b in zip(self.ours, self.base, strict=True)]

    def summary(self) -> str:
        r = sorted(self.ratios)
        return f"{statistics.median(r):.2f}x (pairs {len(r)}, min {r[0]:.2f}x, max {r[-1]:.2f}x)"


def alternate(ours: Callable[[int], object], base: Callable[[int], object], pairs: int, *, log=print) -> Paired:
    """Run ``ours(i)`` and ``base(i)`` ``pairs`` times, swapping which goes first each pair."""
    result = Paired([], [])
    for i in range(pairs):
        order = [("ours", ours), ("base", base)] if i % 2 == 0 else [("base", base), ("ours", ours)]
        for label, fn in order:
            t0 = time.perf_counter()
            fn(i)
            (result.ours if label == "ours" else result.base).append(time.perf_counter() - t0)
        log(f"  pair {i + 1}/{pairs}: ours {result.ours[-1]:.2f}s  baseline {result.base[-1]:.2f}s  "
            f"ratio {result.ratios[-1]:.2f}x")
    return result


def matmul_peak_gflops(seconds: float = 2.0) -> float:
    """Best fp32 GFLOP/s of a 1024x1024 matmul on this process's threads: the in-run peak."""
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        for _ in range(8):
            torch.mm(a, b)
        best = max(best, 8 * 2 * 1024**3 / (time.perf_counter() - t0) / 1e9)
    return best


def row_cosines(a, b):
    """Cosine of each row of ``a`` with the same row of ``b`` (float64): the fidelity check of every benchmark."""
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def write_result(name: str, markdown: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.md"
    path.write_text(markdown, encoding="utf-8")
    return path


@dataclass
class Row:
    """One line of bench/RESULTS.md: a measurement, both sides, the ratio, the target and the fidelity check."""

    measurement: str
    ours: str
    base: str
    ratio: str  # "1.45x (pairs 7, min 1.44x, max 1.55x)", or why none is reported
    target: str = ""
    met: bool | None = None  # None: no target, or not decidable
    fidelity: str = ""


def ratio_met(paired: Paired, target: float) -> bool:
    return statistics.median(paired.ratios) >= target


def write_summary(name: str, command: str, rows: list[Row], notes: list[str] | tuple[str, ...] = ()) -> Path:
    """``results/<name>.summary.json``: the rows ``zoo bench`` puts in bench/RESULTS.md."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.summary.json"
    path.write_text(json.dumps({"name": name, "command": command, "rows": [asdict(r) for r in rows],
                                "notes": list(notes)}, indent=1), encoding="utf-8")
    return path


# -- exact search baseline (search and binary_search) ----------------------------------------------------------------
BLOCK_FLOATS = 1 << 25  # the baseline's score block: 128 MB of float32, as the store's


def numpy_topk(q: np.ndarray, x: np.ndarray, k: int = 10) -> np.ndarray:
    """Exact top-k row indices by dot product: chunked matmul, argpartition, then a sort of the k."""
    import numpy as np

    rows = max(1, BLOCK_FLOATS // len(x))
    out = []
    for s in range(0, len(q), rows):
        sims = q[s:s + rows] @ x.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
        out.append(np.take_along_axis(part, order, axis=1))
    return np.vstack(out)


def recall(found, truth: np.ndarray) -> float:
    """Mean |found_i & truth_i| / k; ``found`` is SearchResults or an id matrix."""
    import numpy as np

    ids = [[h.id for h in hits] for hits in found] if not isinstance(found, np.ndarray) else found.tolist()
    return float(np.mean([len(set(f) & set(t.tolist())) / len(t) for f, t in zip(ids, truth, strict=True)]))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0
