"""Registry: listing, filtering, suggestions, run-time and entry-point registration."""

from __future__ import annotations

import dataclasses
import textwrap

import pytest

import zoo
from zoo import registry


def test_list_filters_by_pattern_and_modality():
    names = zoo.list_models()
    assert names == sorted(names) and "all-minilm-l6-v2" in names
    assert zoo.list_models("e5*", modality="text") == [n for n in names if n.startswith("e5")]
    code = zoo.list_models(modality="code")
    assert "unixcoder-base" in code and "all-minilm-l6-v2" not in code
    assert zoo.list_models("nothing-like-this*") == []


def test_unknown_name_suggests_close_names_not_the_catalogue():
    with pytest.raises(zoo.UnknownModelError) as info:
        zoo.card("all-minilm-l6")
    msg = str(info.value)
    assert "did you mean 'all-minilm-l6-v2'" in msg
    assert "gte-base" not in msg


def test_hub_id_and_path_get_the_exact_fix(tmp_path):
    with pytest.raises(zoo.UnknownModelError, match=r"hf-hub:BAAI/bge-small-en-v1\.5"):
        zoo.card("BAAI/bge-small-en-v1.5")
    with pytest.raises(zoo.UnknownModelError, match=f"local-dir:{tmp_path}"):
        zoo.card(str(tmp_path))


def test_register_refuses_to_overwrite():
    card = dataclasses.replace(zoo.card("e5-small-v2"), name="e5-small-v2-copy")
    zoo.register(card)
    try:
        assert zoo.card("e5-small-v2-copy") is card
        with pytest.raises(zoo.RegistryError, match="already registered"):
            zoo.register(card)
        with pytest.raises(zoo.RegistryError):
            zoo.register(dataclasses.replace(zoo.card("gte-base")))
    finally:
        registry.unregister("e5-small-v2-copy")
    with pytest.raises(zoo.RegistryError, match="already registered"):
        zoo.register_adapter("text", "somewhere:Else")


def test_entry_points_add_cards_and_adapters(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "zoo_plugin_demo" / "cards").mkdir(parents=True)
    (site / "zoo_plugin_demo" / "__init__.py").write_text(
        "from pathlib import Path\nCARDS = str(Path(__file__).parent / 'cards')\n"
        "class Hashing:\n    pass\n"
    )
    (site / "zoo_plugin_demo" / "cards" / "plugin-model.toml").write_text(textwrap.dedent('''
        adapter = "hashing"
        modalities = ["text"]
        dim = 16
        description = "a plugin card"
        license = "mit"
        offline_note = "plugin test"
        [[sources]]
        kind = "hub"
        repo = "org/plugin-model"
        revision = "0123456789abcdef0123456789abcdef01234567"
    '''))
    dist = site / "zoo_plugin_demo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-plugin-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[embedding_zoo.cards]\ndemo = zoo_plugin_demo:CARDS\n\n"
        "[embedding_zoo.adapters]\nhashing = zoo_plugin_demo:Hashing\n"
    )
    monkeypatch.syspath_prepend(str(site))
    registry.reload()
    try:
        assert "plugin-model" in zoo.list_models()
        assert zoo.card("plugin-model").adapter == "hashing"
        assert registry.adapter_class("hashing").__name__ == "Hashing"
    finally:
        monkeypatch.undo()
        registry.reload()
    assert "plugin-model" not in zoo.list_models()


def test_broken_plugins_are_skipped_with_a_warning(tmp_path, monkeypatch):
    """A plugin that fails to import, gives a malformed card, a name already taken or not a card at all costs
    only its own cards: each is named in a warning, every other card still loads."""
    site = tmp_path / "site"
    cards = site / "zoo_plugin_mixed" / "cards"
    cards.mkdir(parents=True)
    (site / "zoo_plugin_mixed" / "__init__.py").write_text(
        "from pathlib import Path\nCARDS = str(Path(__file__).parent / 'cards')\n"
        "def odd():\n    return ['not a card']\n"
    )
    (site / "zoo_plugin_broken.py").write_text("raise RuntimeError('plugin import exploded')\n")
    good = textwrap.dedent('''
        adapter = "text"
        modalities = ["text"]
        dim = 16
        description = "a plugin card"
        license = "mit"
        offline_note = "plugin test"
        [[sources]]
        kind = "hub"
        repo = "org/plugin-model"
        revision = "0123456789abcdef0123456789abcdef01234567"
    ''')
    (cards / "plugin-good.toml").write_text(good)
    (cards / "e5-small-v2.toml").write_text(good)  # a name the zoo already ships
    (cards / "plugin-typo.toml").write_text(good.replace('dim = 16', 'dim = "sixteen"'))
    (cards / "plugin-not-toml.toml").write_text("adapter = [unclosed\n")
    dist = site / "zoo_plugin_mixed-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-plugin-mixed\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[embedding_zoo.cards]\nmixed = zoo_plugin_mixed:CARDS\nbroken = zoo_plugin_broken:CARDS\n"
        "odd = zoo_plugin_mixed:odd\n"
    )
    monkeypatch.syspath_prepend(str(site))
    registry.reload()
    try:
        with pytest.warns(UserWarning) as caught:
            names = zoo.list_models()
        text = "\n".join(str(w.message) for w in caught)
        assert "plugin-good" in names and "all-minilm-l6-v2" in names
        assert zoo.card("e5-small-v2").description != "a plugin card"  # the shipped card is kept
        for needle in ("e5-small-v2.toml", "already registered", "plugin-typo.toml", "plugin-not-toml.toml",
                       "entry point broken", "plugin import exploded", "entry point odd", "not a ModelCard"):
            assert needle in text, (needle, text)
        for name in ("plugin-typo", "plugin-not-toml"):
            with pytest.raises(zoo.CardError, match=name):
                zoo.card(name)
        assert zoo.card("all-minilm-l6-v2").dim == 384
    finally:
        monkeypatch.undo()
        registry.reload()
    assert "plugin-good" not in zoo.list_models()


@pytest.mark.parametrize("name", [None, 3, b"all-minilm-l6-v2", ["all-minilm-l6-v2"], {"name": "x"}])
def test_load_and_card_refuse_names_that_are_not_strings(name):
    with pytest.raises(zoo.InvalidInputError, match="a model name is a string"):
        zoo.load(name)
    with pytest.raises(zoo.InvalidInputError, match="a model name is a string"):
        zoo.card(name)
