"""``zoo verify``: run a card's published examples on the weights at hand and compare with the printed scores.

Each ``[[examples]]`` entry of a card (:mod:`zoo.examples`) holds inputs, the scores the model's
authors printed for them, a tolerance and the address they were printed at. :func:`verify`
loads the model (never downloading weights unless asked), embeds both sides exactly as the
example says, computes the score the page computed, and reports each number beside the
published one: pass when every difference is within the tolerance. Media the examples read
are fetched from their addresses (only when downloads are allowed), checked against their
pinned sha256 and kept in ``$ZOO_HOME/examples``.

The last report of every card is kept in ``$ZOO_HOME/verify/<name>.json``; the model card
browser of the demo shows it.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zoo.catalog.examples import Example, Side
from zoo.catalog.modelcard import ModelCard
from zoo.catalog.sources import offline_reason, zoo_home
from zoo.errors import InputTooLargeError, IntegrityError, WeightsUnavailableError, ZooError

#: Largest example input fetched from the web (bytes).
MAX_INPUT_BYTES = 50 * 1024 * 1024


@dataclass
class ExampleResult:
    """One example's outcome: "pass", "fail", or "skipped" (with the reason)."""

    title: str
    source: str
    status: str
    reason: str = ""
    got: list = field(default_factory=list)
    expected: list = field(default_factory=list)
    max_difference: float | None = None
    tolerance: float = 0.0


@dataclass
class VerifyReport:
    """Every example of one card, run once."""

    model: str
    card_sha256: str
    weights: str
    when: str
    results: list[ExampleResult]

    @property
    def status(self) -> str:
        """"pass" when every example that ran passed (and one ran), "fail" if any failed, else "skipped"."""
        states = {r.status for r in self.results}
        if "fail" in states:
            return "fail"
        return "pass" if "pass" in states else "skipped"

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"status": self.status}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> VerifyReport:
        results = [ExampleResult(**r) for r in raw["results"]]
        return cls(raw["model"], raw["card_sha256"], raw["weights"], raw["when"], results)


# -- inputs ---------------------------------------------------------------------------------------------------------


def examples_dir() -> Path:
    return zoo_home() / "examples"


def fetch_input(address: str, sha256: str, *, download: bool) -> Path:
    """A local copy of an example's media input, checked against ``sha256`` where the card pins one.

    Local paths are used as they are. Addresses are fetched once (at most MAX_INPUT_BYTES) into
    ``$ZOO_HOME/examples`` and read from there afterwards.

    Raises:
        WeightsUnavailableError: not fetched yet and downloads are not allowed.
        IntegrityError: the bytes are not the pinned ones.
    """
    if not address.startswith(("http://", "https://")):
        return Path(address).expanduser()
    key = sha256 or hashlib.sha256(address.encode()).hexdigest()
    suffix = Path(address.split("?")[0]).suffix[:8]
    path = examples_dir() / f"{key}{suffix}"
    if not path.is_file():
        reason = "download=False" if not download else offline_reason()
        if reason is not None:
            raise WeightsUnavailableError(f"example input {address} is not fetched yet and downloads are off "
                                          f"({reason})")
        with urllib.request.urlopen(address, timeout=30) as response:  # noqa: S310 - addresses come from cards
            data = response.read(MAX_INPUT_BYTES + 1)
        if len(data) > MAX_INPUT_BYTES:
            raise InputTooLargeError(f"example input {address} is over {MAX_INPUT_BYTES:,} bytes",
                                     limit=MAX_INPUT_BYTES)
        if sha256 and hashlib.sha256(data).hexdigest() != sha256:
            raise IntegrityError(f"example input {address} is not the file the card pins (sha256 {sha256[:16]}...)")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    elif sha256:
        with open(path, "rb") as fh:
            if hashlib.file_digest(fh, "sha256").hexdigest() != sha256:
                raise IntegrityError(f"{path} is not the file the card pins for {address}; delete it to fetch again")
    return path


def _resolved_items(side: Side, example: Example, download: bool) -> list:
    def local(value: Any) -> Any:
        return str(fetch_input(value, example.inputs.get(value, ""), download=download))

    out = []
    for item in side.items:
        if isinstance(item, dict):
            out.append({k: local(v) if k in ("image", "audio") else v for k, v in item.items()})
        elif side.options.get("modality") in ("image", "audio"):
            out.append(local(item))
        else:
            out.append(item)
    return out


# -- scores ---------------------------------------------------------------------------------------------------------


def score(model: Any, example: Example, *, download: bool = False):
    """The numbers the example's page printed, computed with ``model``: a matrix, or a vector for "values"."""
    import numpy as np

    def embed(side: Side) -> np.ndarray:
        e = model.embed(_resolved_items(side, example, download), **side.options)
        return np.asarray(e.vectors, dtype=np.float64)

    q = embed(example.queries)
    if example.score == "values":
        return q[0, : len(example.expected)]
    sims = q @ embed(example.documents).T
    if example.score == "softmax":
        z = example.scale * sims
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)
    if example.score == "sigmoid":
        params = getattr(model, "logit_params", None)
        if params is None:
            raise ZooError(f"{model.name}: a 'sigmoid' example needs the model's logit scale and bias "
                           "(this adapter has no logit_params)")
        scale, bias = params()
        return 1.0 / (1.0 + np.exp(-(scale * sims + bias)))
    return sims


def run_example(model: Any, example: Example, *, download: bool = False) -> ExampleResult:
    """Run one example on a loaded model; a missing input is "skipped", never a crash."""
    import numpy as np

    result = ExampleResult(example.title, example.source, "skipped", tolerance=example.tolerance,
                           expected=np.asarray(example.expected, dtype=float).tolist())
    try:
        got = score(model, example, download=download)
    except (WeightsUnavailableError, OSError) as exc:  # an input that could not be fetched
        result.reason = f"input not available: {exc}"
        return result
    want = np.asarray(example.expected, dtype=float)
    result.got = np.round(got, 6).tolist()
    result.max_difference = float(np.max(np.abs(got - want)))
    ok = result.max_difference <= example.tolerance
    result.status = "pass" if ok else "fail"
    result.reason = (f"max difference {result.max_difference:.4f} "
                     f"{'<=' if ok else '>'} tolerance {example.tolerance:g}")
    return result


# -- reports --------------------------------------------------------------------------------------------------------


def report_path(name: str) -> Path:
    return zoo_home() / "verify" / f"{name}.json"


def save_report(report: VerifyReport) -> Path:
    path = report_path(report.model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.part")
    tmp.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def last_report(name: str) -> VerifyReport | None:
    """The last ``zoo verify`` report of a card, or None."""
    path = report_path(name)
    if not path.is_file():
        return None
    try:
        return VerifyReport.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError):
        return None  # an unreadable report is as good as none


def verify(card: ModelCard, *, model: Any = None, download: bool = False, trust_remote_code: bool = False,
           save: bool = True) -> VerifyReport:
    """Run every published example of ``card`` and compare with the printed scores.

    Args:
        card: the card (``zoo.card(name)``, or an edited copy).
        model: an already loaded Embedder of this card (examples with their own ``load``
            options load again).
        download: allow fetching weights and example inputs (default: use what is here).
        trust_remote_code: consent for cards that run their repository's code.
        save: keep the report as the card's last verification.
    """
    from zoo.catalog.loader import load

    results, loaded, weights = [], {}, ""
    for example in card.examples:
        key = json.dumps(example.load, sort_keys=True)
        if key not in loaded:
            loaded[key] = model if (model is not None and not example.load) else load(
                card, download=download, trust_remote_code=trust_remote_code, **example.load)
        m = loaded[key]
        resolved = getattr(m, "resolved", None)
        weights = weights or (f"{resolved.origin} {resolved.path}" if resolved is not None else "")
        results.append(run_example(m, example, download=download))
    report = VerifyReport(card.name, card.content_sha256(), weights, time.strftime("%Y-%m-%dT%H:%M:%S%z"), results)
    if save:
        save_report(report)
    return report


def format_report(report: VerifyReport) -> str:
    """The report as text: each example's scores beside the published ones, then pass or fail."""
    lines = [f"{report.model}: {report.status} ({report.weights or 'no weights loaded'})"]
    for r in report.results:
        lines.append(f"  {r.title}  [{r.status}]  {r.source}")
        got, want = r.got, r.expected
        if got:
            rows = zip(got, want, strict=True) if isinstance(want[0], list) else [(got, want)]
            for g_row, w_row in rows:
                lines.append("    " + "  ".join(f"{g:8.4f} (published {w:.4f})" for g, w in zip(g_row, w_row,
                                                                                               strict=True)))
        lines.append(f"    {r.reason}")
    return "\n".join(lines)
