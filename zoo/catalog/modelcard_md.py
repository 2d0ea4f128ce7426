"""Render a ModelCard as a Hugging Face style README: YAML front matter, then Markdown.

Below ``zoo.modelcard`` (``ModelCard.to_markdown`` calls :func:`render`): it reads a card's fields and imports
nothing of the zoo, so ``Card`` below is any object with ModelCard's fields.
"""

from __future__ import annotations

import json
from typing import Any

Card = Any  # a zoo.modelcard.ModelCard

_PIPELINE = {"text": "sentence-similarity", "code": "sentence-similarity", "image": "image-feature-extraction"}


def _yaml_value(value) -> str:
    # JSON strings and lists are valid YAML flow scalars/sequences, and quote safely.
    return json.dumps(value, ensure_ascii=False)


def _front_matter(card: Card) -> str:
    hub = card.hub_source
    meta: dict[str, object] = {
        "license": card.license.lower(),
        "library_name": "embedding-zoo",
        "pipeline_tag": _PIPELINE.get(card.modalities[0], "feature-extraction"),
        "tags": ["embedding-zoo", "embeddings", *card.modalities, *card.tags],
    }
    if hub:
        meta["base_model"] = hub.repo
    if card.languages:
        meta["language"] = list(card.languages)
    lines = ["---"]
    for key, value in meta.items():
        lines.append(f"{key}: {_yaml_value(value)}")
    lines.append("---")
    return "\n".join(lines)


def _fact_rows(card: Card) -> list[tuple[str, str]]:
    rows = [
        ("Registry name", f"`{card.name}`"),
        ("Adapter", f"`{card.adapter}`"),
        ("Modalities", ", ".join(card.modalities)),
        ("Dimensions", str(card.dim)),
        ("Space", f"`{card.space}`"),
        ("Similarity", card.similarity),
    ]
    if card.pooling:
        rows.append(("Pooling", card.pooling))
    if card.max_tokens:
        rows.append(("Max tokens", str(card.max_tokens)))
    if card.matryoshka_dims:
        rows.append(("Matryoshka dims", ", ".join(map(str, card.matryoshka_dims))))
    if card.params:
        rows.append(("Parameters", f"{card.params:,}"))
    rows.append(("License", card.license))
    rows.append(("Offline-ready here", "yes" if card.offline_ready else f"no: {card.offline_note}"))
    if card.remote_code:
        rows.append(("Remote code", "required: pass `trust_remote_code=True` to `zoo.load` (pinned revision)"))
    rows.append(("Weights format", card.weights_format))
    rows.append(("Checked by", ", ".join(card.evidence) or "not checked"))
    if card.paper:
        rows.append(("Paper", card.paper))
    return rows


def render(card: Card) -> str:
    out = [_front_matter(card), "", f"# {card.name}", "", card.description.strip(), ""]
    out += ["| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in _fact_rows(card)]
    out += ["", "## Usage", "", "```python", "import zoo", "", f'model = zoo.load("{card.name}")']
    first = card.modalities[0]
    example = {"text": '["a dog", "a puppy"]', "code": '["def add(a, b):\\n    return a + b"]'}.get(first, "[...]")
    out += [f"e = model.embed({example})", f"e.vectors.shape  # (N, {card.dim})", "```", ""]
    if card.prompts or card.instruction_template:
        out += ["## Prompts and instructions", ""]
        if card.instruction_template:
            out.append(f"Instruction template: `{card.instruction_template!r}` (pass `task_instruction=`).")
        for pname, text in card.prompts.items():
            out.append(f"- `{pname}`: `{text!r}`")
        if card.default_prompt:
            out.append(f"\nDefault prompt: `{card.default_prompt}`.")
        out.append("")
    out += ["## Sources", ""]
    for src in card.sources:
        out.append(f"- {src.describe()}")
        if src.kind == "hub" and src.files:
            out.append("  - downloads: " + ", ".join(f"`{f}`" for f in src.files))
        if src.listing is not None:
            where = f"[{src.listing.url}]({src.listing.url})" if src.listing.url else "no page found"
            seen = f" (at {src.listing.seen})" if src.listing.seen else ""
            out.append(f"  - file list from {where}{seen}: {src.listing.note}")
        for fname, digest in src.sha256.items():
            out.append(f"  - `{fname}` sha256 `{digest}`")
    out.append("")
    if card.examples:
        out += ["## Published examples", "", f"Run them on the weights you have with `zoo verify {card.name}`.", ""]
        for ex in card.examples:
            out.append(f"- [{ex.title}]({ex.source}): printed `{ex.printed}` (tolerance {ex.tolerance:g})")
        out.append("")
    if card.parity:
        out += ["## Parity", "", card.parity.strip(), ""]
    return "\n".join(out)
