"""How a card reads on the Cards tab: its evidence (:func:`evidence_text`), its Markdown without the sections
shown elsewhere and without what Gradio misreads, its size, the filter buckets, and the Cards tab's table
(:func:`card_rows`) and chosen card (:func:`card_details`)."""

from __future__ import annotations

from collections.abc import Sequence

from zoo.catalog import registry

PARAM_BUCKETS = {"any": None, "<= 50M": 50e6, "<= 150M": 150e6, "<= 1B": 1e9, "<= 10B": 10e9}


def _without_sections(markdown: str, titles: Sequence[str]) -> str:
    """``markdown`` without its ``## <title>`` sections (each up to the next ``## `` heading)."""
    out, skipping = [], False
    for line in markdown.splitlines():
        if line.startswith("## "):
            skipping = line[3:].strip() in titles
        if not skipping:
            out.append(line)
    return "\n".join(out).rstrip() + "\n"


def _for_gradio(markdown: str) -> str:
    """The card without its YAML front matter (metadata for the Hub), and with ``~`` escaped (Gradio strikes it)."""
    if markdown.startswith("---\n") and "\n---\n" in markdown[4:]:
        markdown = markdown[4:].split("\n---\n", 1)[1]
    return markdown.replace("~", "\\~")


NOT_CHECKED = "not checked"


def evidence_text(card) -> str:
    """Markdown: what the card's claims rest on, its published examples and its last ``zoo verify``."""
    from zoo.catalog.modelcard import EVIDENCE
    from zoo.catalog.verify import last_report

    lines = ["**Checked by**"]
    lines += [f"- {e}: {EVIDENCE[e]}" for e in card.evidence] or [f"- {NOT_CHECKED}"]
    if card.examples:
        lines += ["", "**Published examples** (`zoo verify " + card.name + "`)"]
        lines += [f"- [{ex.title}]({ex.source}): {ex.printed}" for ex in card.examples]
    report = last_report(card.name)
    if report is not None:
        fresh = "" if report.card_sha256 == card.content_sha256() else " (the card has changed since)"
        lines += ["", f"**Last verification**: {report.status} on {report.when}{fresh}, weights: {report.weights}"]
        lines += [f"- {r.title}: {r.status} ({r.reason})" for r in report.results]
    elif card.examples:
        lines += ["", "**Last verification**: none on this machine"]
    lines += ["", "**Parity**", "", card.parity.strip() or "(no parity text)"]
    return "\n".join(lines)


def _fmt_params(n: int) -> str:
    if not n:
        return "?"
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def card_rows(modality: str = "any", licence: str = "any", offline_only: bool = False,
              max_params: str = "any", dim: str = "any", text: str = "", evidence: str = "any") -> list[list]:
    """Rows of the cards that pass every filter; ``evidence`` is a kind of check the card's claims rest on
    (``zoo.modelcard.EVIDENCE``), or "not checked"."""
    rows = []
    words = text.lower().split()
    limit = PARAM_BUCKETS.get(max_params)
    for name in registry.list_models(modality=None if modality in ("any", "") else modality):
        c = registry.card(name)
        if licence not in ("any", "") and c.license != licence:
            continue
        if offline_only and not c.offline_ready:
            continue
        if limit is not None and not 0 < c.params <= limit:
            continue
        if dim not in ("any", "") and str(c.dim) != str(dim):
            continue
        if evidence not in ("any", "") and (evidence not in c.evidence if evidence != NOT_CHECKED
                                             else bool(c.evidence)):
            continue
        haystack = " ".join([c.name, c.description, " ".join(c.tags), c.license, " ".join(c.modalities)]).lower()
        if not all(w in haystack for w in words):
            continue
        rows.append([c.name, ", ".join(c.modalities), c.dim, _fmt_params(c.params), c.license,
                     "yes" if c.offline_ready else "no", ", ".join(c.evidence) or NOT_CHECKED])
    return rows

def card_details(name: str) -> tuple[str, str, str, str]:
    """(rendered card, sources with pinned revisions, parity and evidence text, load snippet). The rendered
    card leaves out its published examples and parity sections: the evidence text shows them (once)."""
    c = registry.card(name)
    sources = "\n".join(f"- {s.describe()}" + (f" (revision `{s.revision}`)" if s.revision else "")
                        for s in c.sources)
    offline = "offline-ready" if c.offline_ready else f"not offline-ready: {c.offline_note or 'hub weights'}"
    body = _without_sections(c.to_markdown(), ("Published examples", "Parity"))
    return (_for_gradio(body), f"{sources}\n\n*{offline}*", _for_gradio(evidence_text(c)),
            f'import zoo\n\nmodel = zoo.load("{c.name}")\n')
