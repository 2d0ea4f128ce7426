"""Seeded benchmark corpora made of real English: the standard library's own docstrings."""

from __future__ import annotations

import functools
import inspect
import pkgutil
import random
import sys
import warnings


@functools.cache
def stdlib_words() -> tuple[str, ...]:
    """Every word of every public docstring in a fixed list of standard-library modules."""
    words: list[str] = []
    for mod in _stdlib_modules():
        for _, obj in sorted(vars(mod).items(), key=lambda kv: kv[0]):
            doc = inspect.getdoc(obj) if inspect.isfunction(obj) or inspect.isclass(obj) else None
            if doc and doc.isascii():
                words.extend(doc.split())
    return tuple(words)


def mixed_length_texts(n: int, count_tokens, *, lo: int, hi: int, seed: int = 0) -> list[str]:
    """``n`` texts of consecutive real words whose token counts spread uniformly over lo..hi.

    ``count_tokens(list[str]) -> list[int]`` measures lengths with the model's tokenizer
    (special tokens included); word counts are corrected until each text is within 2 tokens
    of its target (or capped by the target range).
    """
    words = stdlib_words()
    rng = random.Random(seed)
    targets = [rng.randint(lo, hi) for _ in range(n)]
    starts = [rng.randrange(0, len(words) - 2 * hi) for _ in range(n)]
    nwords = [max(1, int(t / 1.4)) for t in targets]
    for _ in range(6):
        texts = [" ".join(words[s : s + k]) for s, k in zip(starts, nwords, strict=True)]
        lengths = count_tokens(texts)
        done = True
        for i, (have, want) in enumerate(zip(lengths, targets, strict=True)):
            if abs(have - want) > 2:
                done = False
                nwords[i] = max(1, round(nwords[i] * want / max(have, 1)))
        if done:
            break
    return texts


def _stdlib_modules():
    names = sorted(m.name for m in pkgutil.iter_modules() if m.name in sys.stdlib_module_names and
                   not m.name.startswith(("_", "idlelib", "tkinter", "turtle", "antigravity", "this")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            try:
                yield __import__(name)
            except Exception:  # some modules need a display or a platform we lack
                continue


@functools.cache
def stdlib_sentences(min_words: int = 5, max_words: int = 40) -> tuple[str, ...]:
    """Unique first sentences of the docstrings of standard-library functions, classes and methods.

    Real, varied English about programming, in a stable order (module, then name); thousands of
    them, so anchors and held-out sets can be disjoint and large.
    """
    import re

    seen: dict[str, None] = {}

    def add(obj) -> None:
        doc = inspect.getdoc(obj)
        if not doc or not doc.isascii():
            return
        first = re.split(r"(?<=[.!?])\s", " ".join(doc.split("\n\n")[0].split()), maxsplit=1)[0]
        if min_words <= len(first.split()) <= max_words and first[0].isupper() and first.endswith("."):
            seen.setdefault(first, None)

    for mod in _stdlib_modules():
        for _, obj in sorted(vars(mod).items(), key=lambda kv: kv[0]):
            if inspect.isfunction(obj):
                add(obj)
            elif inspect.isclass(obj):
                add(obj)
                for _, member in sorted(vars(obj).items(), key=lambda kv: kv[0]):
                    if inspect.isfunction(member):
                        add(member)
    return tuple(seen)
