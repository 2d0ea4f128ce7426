"""Helpers shared by tests: real English sentences from the standard library's docstrings."""

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
