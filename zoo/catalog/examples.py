"""Published worked examples on model cards: the inputs, the printed scores, and where they were printed.

A card's ``[[examples]]`` records an example that the model's own page or repository publishes
with its output, verbatim, so that ``zoo verify`` (:mod:`zoo.verify`) can run it on the real
weights and print each score next to the published one::

    [[examples]]
    title = "README, Transformers block"
    source = "https://github.com/QwenLM/Qwen3-Embedding/blob/<commit>/README.md"
    printed = "[[0.7645568251609802, 0.14142508804798126], [0.13549736142158508, 0.5999549627304077]]"
    score = "cosine"
    expected = [[0.7646, 0.1414], [0.1355, 0.6000]]
    tolerance = 0.01

    [examples.queries]
    text = ["What is the capital of China?", "Explain gravity"]
    task_instruction = "Given a web search query, retrieve relevant passages that answer the query"

    [examples.documents]
    text = ["The capital of China is Beijing.", "Gravity is a force ..."]

``score`` says how the published numbers were computed from the two sides' vectors:
"cosine" (the matrix queries x documents), "softmax" (``softmax(scale * cosine)`` over the
documents, CLIP's label probabilities), "sigmoid" (SigLIP: ``sigmoid(logit_scale * cosine +
logit_bias)`` with the model's own two numbers) or "values" (the first entries of one
query's vector, for a page that prints the vector). Media inputs are addresses (https) or
paths; ``inputs`` pins the sha256 of each address's bytes where it is known. ``load`` holds
the ``zoo.load`` options the page's setting needs (``compute_dtype = "bfloat16"`` for a page
that printed bfloat16 results, a prompt format).

Standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

Score = Literal["cosine", "softmax", "sigmoid", "values"]
SIDE_KEYS = ("text", "image", "audio", "items", "task_instruction", "prompt_name", "modality")
EXAMPLE_KEYS = ("title", "source", "printed", "score", "expected", "tolerance", "scale", "note", "queries",
                "documents", "inputs", "load")


@dataclass(frozen=True)
class Side:
    """One side of an example: its items and the embed options they are given."""

    items: tuple[Any, ...]
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def media(self) -> list[str]:
        """The addresses or paths of the media this side reads (images, audio, interleaved images)."""
        out = []
        for item in self.items:
            if isinstance(item, dict):
                out += [v for k, v in item.items() if k in ("image", "audio")]
            elif self.options.get("modality") in ("image", "audio"):
                out.append(item)
        return out


@dataclass(frozen=True)
class Example:
    """A published example: see the module docstring for the fields."""

    title: str
    source: str
    printed: str
    score: Score
    expected: tuple
    tolerance: float
    queries: Side
    documents: Side | None = None
    scale: float = 100.0
    note: str = ""
    inputs: dict[str, str] = field(default_factory=dict)
    load: dict[str, Any] = field(default_factory=dict)


def _side(raw: Any, where: str) -> Side:
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a table")
    unknown = set(raw) - set(SIDE_KEYS)
    if unknown:
        raise ValueError(f"{where} has unknown field(s) {sorted(unknown)}")
    kinds = [k for k in ("text", "image", "audio", "items") if k in raw]
    if len(kinds) != 1 or not isinstance(raw[kinds[0]], list) or not raw[kinds[0]]:
        raise ValueError(f"{where} needs exactly one non-empty list of text, image, audio or items")
    kind = kinds[0]
    options = {k: raw[k] for k in ("task_instruction", "prompt_name", "modality") if k in raw}
    if kind in ("image", "audio"):
        options.setdefault("modality", kind)
    elif kind == "items":
        options.setdefault("modality", "interleaved")
        if not all(isinstance(it, dict) and set(it) <= {"image", "text"} for it in raw["items"]):
            raise ValueError(f"{where}.items must be tables of 'image' and/or 'text'")
    if not all(isinstance(it, (str, dict)) for it in raw[kind]):
        raise ValueError(f"{where}.{kind} must hold strings")
    return Side(tuple(raw[kind]), options)


def _matrix(value: Any) -> tuple:
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        return tuple(float(v) for v in value)
    if (isinstance(value, list) and value and all(isinstance(r, list) and r for r in value)
            and all(isinstance(v, (int, float)) for r in value for v in r)):
        return tuple(tuple(float(v) for v in r) for r in value)
    raise ValueError("expected must be a list of numbers or a list of rows of numbers")


def example_from(raw: Any, where: str) -> Example:
    """Validate one ``[[examples]]`` table. Raises ValueError saying what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a table")
    unknown = set(raw) - set(EXAMPLE_KEYS)
    if unknown:
        raise ValueError(f"{where} has unknown field(s) {sorted(unknown)}")
    for key in ("title", "source", "printed", "score", "expected", "tolerance", "queries"):
        if key not in raw:
            raise ValueError(f"{where} needs {key!r}")
    if not re.match(r"^https://", raw["source"]):
        raise ValueError(f"{where}.source must be the https address the example was published at")
    score = raw["score"]
    if score not in ("cosine", "softmax", "sigmoid", "values"):
        raise ValueError(f"{where}.score must be 'cosine', 'softmax', 'sigmoid' or 'values', not {score!r}")
    expected = _matrix(raw["expected"])
    queries = _side(raw["queries"], f"{where}.queries")
    documents = _side(raw["documents"], f"{where}.documents") if "documents" in raw else None
    if score == "values":
        if documents is not None or len(queries.items) != 1 or not isinstance(expected[0], float):
            raise ValueError(f"{where}: score 'values' takes one query, no documents, and a list of numbers")
    else:
        if documents is None:
            raise ValueError(f"{where}: score {score!r} compares queries with documents; give both")
        if (not isinstance(expected[0], tuple) or len(expected) != len(queries.items)
                or any(len(r) != len(documents.items) for r in expected)):
            raise ValueError(f"{where}.expected must be a {len(queries.items)} x {len(documents.items)} matrix")
    tol = raw["tolerance"]
    if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not 0 < tol < 1:
        raise ValueError(f"{where}.tolerance must be a number between 0 and 1")
    inputs = raw.get("inputs", {})
    if not isinstance(inputs, dict) or not all(isinstance(v, str) and (not v or re.fullmatch(r"[0-9a-f]{64}", v))
                                               for v in inputs.values()):
        raise ValueError(f"{where}.inputs must map addresses to sha256 digests ('' where unknown)")
    for side in (queries, documents):
        for media in side.media if side else ():
            if isinstance(media, str) and media.startswith(("http://", "https://")) and media not in inputs:
                raise ValueError(f"{where}: {media} is fetched, so it needs an entry in inputs")
    load = raw.get("load", {})
    if not isinstance(load, dict):
        raise ValueError(f"{where}.load must be a table of zoo.load options")
    return Example(title=str(raw["title"]), source=raw["source"], printed=str(raw["printed"]), score=score,
                   expected=expected, tolerance=float(tol), queries=queries, documents=documents,
                   scale=float(raw.get("scale", 100.0)), note=str(raw.get("note", "")), inputs=dict(inputs),
                   load=dict(load))
