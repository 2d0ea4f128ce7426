"""How long `import zoo` takes: fresh interpreters, against a bare interpreter start.

    python bench/import_time.py        # target: under 150 ms over a bare `python -c pass`
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import Row, alternate, machine, write_result, write_summary  # noqa: E402


def run(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True)


def main() -> None:
    pairs = 21
    times = {"zoo": [], "bare": []}

    def timed(key, code):
        def go(_):
            t0 = time.perf_counter()
            run(code)
            times[key].append(time.perf_counter() - t0)
        return go

    alternate(timed("zoo", "import zoo; zoo.list_models()"), timed("bare", "pass"), pairs, log=lambda *_: None)
    extra = [(z - b) * 1000 for z, b in zip(times["zoo"], times["bare"], strict=True)]
    md = "\n".join([
        "# import zoo", "", f"Machine: {machine()}", "", "Command: `python bench/import_time.py`", "",
        f"`import zoo; zoo.list_models()` costs {statistics.median(extra):.0f} ms over a bare interpreter start "
        f"(median of {pairs} alternating pairs; min {min(extra):.0f} ms, max {max(extra):.0f} ms). Target: < 150 ms.",
        "",
    ])
    print(md)
    write_result("import_time", md)
    ms = statistics.median(extra)
    write_summary("import_time", "python bench/import_time.py", [
        Row("`import zoo; zoo.list_models()` over a bare interpreter (ms)", f"{ms:.0f}", "0 (bare start)",
            f"min {min(extra):.0f} ms, max {max(extra):.0f} ms over {pairs} pairs", "< 150 ms", ms < 150,
            "imports neither torch nor numpy (tests/test_import.py)"),
    ])


if __name__ == "__main__":
    main()
