"""Cards: every shipped card validates; bad cards are refused; Markdown has HF front matter."""

from __future__ import annotations

import tomllib

import pytest
import yaml

import zoo
from zoo.modelcard import card_from_dict, read_card
from zoo.registry import CARDS_DIR

SHIPPED = sorted(CARDS_DIR.glob("*.toml"))


def _minimal(**over):
    raw = {
        "adapter": "text",
        "modalities": ["text"],
        "dim": 8,
        "description": "d",
        "license": "mit",
        "offline_note": "test",
        "sources": [{"kind": "hub", "repo": "org/name", "revision": "a" * 40}],
    }
    raw.update(over)
    return raw


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_card_validates(path):
    card = read_card(path)
    assert card.name == path.stem
    assert card.dim > 0 and card.modalities
    if card.offline_ready:
        pkg = [s for s in card.sources if s.kind in ("package", "bundled")]
        assert pkg and all(s.sha256 for s in pkg), "packaged or bundled weights must pin sha256"
    else:
        assert card.offline_note


def test_at_least_the_issue_cards_are_registered():
    wanted = {
        "all-minilm-l6-v2", "e5-small-v2", "e5-base-v2", "multilingual-e5-small", "bge-small-en-v1.5",
        "bge-base-en-v1.5", "gte-base", "e5-mistral-7b-instruct", "qwen3-embedding-0.6b", "unixcoder-base",
        "codet5p-110m-embedding", "jina-embeddings-v2-base-code", "jina-code-embeddings-0.5b",
    }
    assert wanted <= set(zoo.list_models())


def test_unknown_field_is_an_error():
    with pytest.raises(zoo.CardError, match="unknown field"):
        card_from_dict("x", _minimal(poolling="mean"))


@pytest.mark.parametrize(
    "over, match",
    [
        ({"dim": "384"}, "dim must be int"),
        ({"dim": True}, "dim must be int"),
        ({"pooling": "max"}, "pooling must be one of"),
        ({"modalities": ["smell"]}, "modalities"),
        ({"sources": [{"kind": "hub", "repo": "org/name", "revision": "main"}]}, "40-hex"),
        ({"sources": [{"kind": "package", "package": "p"}]}, "sha256"),
        ({"instruction_template": "Instruct: {instruction}"}, "needs both"),
        ({"default_prompt": "query"}, "not one of the prompts"),
        ({"matryoshka_dims": [4, 16]}, "matryoshka_dims"),
        ({"offline_note": ""}, "offline_note"),
        ({"remote_code": True, "sources": [{"kind": "package", "package": "p", "sha256": {"f": "0" * 64}}]},
         "remote_code"),
    ],
)
def test_bad_values_are_errors(over, match):
    with pytest.raises(zoo.CardError, match=match):
        card_from_dict("x", _minimal(**over))


def test_bad_toml_names_the_file(tmp_path):
    p = tmp_path / "broken.toml"
    p.write_text("adapter = ", encoding="utf-8")
    with pytest.raises(zoo.CardError, match="broken.toml"):
        read_card(p)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_markdown_front_matter_is_yaml_the_hub_reads(path):
    card = read_card(path)
    md = card.to_markdown()
    assert md.startswith("---\n")
    front = yaml.safe_load(md.split("---\n")[1])
    assert front["license"] == card.license.lower()
    assert front["library_name"] == "embedding-zoo"
    assert "embeddings" in front["tags"]
    assert f"# {card.name}" in md and str(card.dim) in md
    if card.hub_source:
        assert front["base_model"] == card.hub_source.repo


def test_card_toml_roundtrip_keeps_prompts_exact():
    raw = tomllib.loads((CARDS_DIR / "qwen3-embedding-0.6b.toml").read_text())
    card = zoo.card("qwen3-embedding-0.6b")
    assert card.instruction_template == raw["instruction_template"] == "Instruct: {instruction}\nQuery:{input}"
