"""Helpers shared by tests: real English sentences from the standard library's docstrings, and the child process
the fuzz suites run in."""

from __future__ import annotations

import functools
import importlib
import inspect
import re

_MODULES = (
    "argparse", "asyncio", "base64", "bisect", "calendar", "collections", "csv", "dataclasses", "datetime",
    "decimal", "difflib", "email", "enum", "fractions", "functools", "glob", "gzip", "hashlib", "heapq", "hmac",
    "html", "http.client", "imaplib", "inspect", "ipaddress", "itertools", "json", "logging", "mailbox",
    "mimetypes", "operator", "optparse", "os", "pathlib", "pickle", "pprint", "queue", "random", "re", "sched",
    "secrets", "shlex", "shutil", "smtplib", "socket", "sqlite3", "statistics", "string", "struct", "subprocess",
    "tarfile", "tempfile", "textwrap", "threading", "timeit", "tokenize", "traceback", "typing", "unittest",
    "urllib.parse", "uuid", "wave", "weakref", "xml.dom.minidom", "zipfile", "zlib",
)


@functools.cache
def stdlib_sentences(min_words: int = 4) -> tuple[str, ...]:
    """Unique first sentences of docstrings of standard-library objects, in a stable order."""
    seen: dict[str, None] = {}
    for modname in _MODULES:
        mod = importlib.import_module(modname)
        for _, obj in sorted(vars(mod).items()):
            doc = inspect.getdoc(obj) if (inspect.isfunction(obj) or inspect.isclass(obj)) else None
            if not doc:
                continue
            first = re.split(r"(?<=[.!?])\s", " ".join(doc.split("\n\n")[0].split()), maxsplit=1)[0]
            if len(first.split()) >= min_words and first.isascii():
                seen.setdefault(first, None)
    return tuple(seen)


def run_fuzz_child(script: str, kind: str, examples: int, timeout: float) -> None:
    """Run a fuzz suite's ``kind`` in a child process (``python script kind examples``, one BLAS thread), so a
    crash or a hang fails the test instead of taking pytest down; its output is printed, a failure names it."""
    import os
    import subprocess
    import sys

    import pytest

    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("ZOO_FUZZ_PYTHONPATH"), root, env.get("PYTHONPATH"))
                                        if p)
    try:
        proc = subprocess.run([sys.executable, os.path.abspath(script), kind, str(examples)], env=env,
                              capture_output=True, text=True, timeout=timeout, cwd=root)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{kind} fuzzing took over {timeout:g} s:\n{exc.stdout}\n{exc.stderr}")
    print(proc.stdout)
    assert proc.returncode == 0, f"{kind} fuzzing failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
