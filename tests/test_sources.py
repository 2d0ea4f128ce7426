"""Sources: order of precedence, sha256 integrity, pickle refusal, offline errors."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

import zoo
from zoo import registry
from zoo.modelcard import Source
from zoo.sources import check_format, resolve

MINILM_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "vocab.txt")


@pytest.fixture()
def fake_package(tmp_path, monkeypatch):
    """A copy of the packaged MiniLM folder, installed as distribution 'fake-minilm' on sys.path."""
    real = resolve(zoo.card("all-minilm-l6-v2")).path
    site = tmp_path / "site"
    model = site / "fake_minilm" / "model"
    model.mkdir(parents=True)
    for name in MINILM_FILES:
        shutil.copy(real / name, model / name)
    dist = site / "fake_minilm-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-minilm\nVersion: 0.1\n")
    monkeypatch.syspath_prepend(str(site))
    base = zoo.card("all-minilm-l6-v2")
    card = dataclasses.replace(
        base,
        name="fake-minilm",
        sources=(Source(kind="package", package="fake-minilm", subdir="fake_minilm/model",
                        sha256=dict(base.sources[0].sha256)),),
    )
    zoo.register(card)
    yield card, model
    registry.unregister("fake-minilm")


def test_package_source_verifies_and_loads(fake_package):
    card, model = fake_package
    m = zoo.load("fake-minilm")
    assert m.resolved.origin == "package" and m.resolved.path == model
    assert m.embed(["a dog"]).vectors.shape == (1, 384)


def test_flipped_byte_raises_integrity_error(fake_package):
    card, model = fake_package
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(zoo.IntegrityError, match="model.safetensors"):
        zoo.load("fake-minilm")


def test_missing_pinned_file_raises_integrity_error(fake_package):
    card, model = fake_package
    (model / "vocab.txt").unlink()
    with pytest.raises(zoo.IntegrityError, match="vocab.txt.*missing"):
        zoo.load("fake-minilm", download=False)


def test_explicit_path_wins_and_is_the_callers_own(tmp_path, fake_package):
    card, model = fake_package
    m = zoo.load("fake-minilm", path=model)
    assert m.resolved.origin == "path"
    with pytest.raises(zoo.WeightsUnavailableError, match="does not exist"):
        zoo.load("fake-minilm", path=tmp_path / "nope")


def test_local_dir_comes_before_the_hf_cache(tmp_path, monkeypatch):
    real = resolve(zoo.card("all-minilm-l6-v2")).path
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    local = tmp_path / "models" / "e5-small-v2"
    shutil.copytree(real, local)
    res = resolve(zoo.card("e5-small-v2"))
    assert res.origin == "local-dir" and res.path == local


def test_offline_and_uncached_says_how_to_get_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("ZOO_OFFLINE", raising=False)  # the session fixture may have set it
    with pytest.raises(zoo.WeightsUnavailableError) as info:
        zoo.load("bge-small-en-v1.5")
    msg = str(info.value)
    assert "BAAI/bge-small-en-v1.5" in msg and "zoo fetch bge-small-en-v1.5" in msg and "HF_HUB_OFFLINE" in msg


def test_pickle_only_weights_are_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(zoo.UnsafeModelFileError, match="pytorch_model.bin"):
        check_format(tmp_path, zoo.card("e5-small-v2"))
    (tmp_path / "model.safetensors").write_bytes(b"")
    check_format(tmp_path, zoo.card("e5-small-v2"))  # safetensors present: transformers is told to use it


def test_remote_code_needs_consent_before_any_file_is_touched(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(zoo.UnsafeModelFileError, match="trust_remote_code=True"):
        zoo.load("codet5p-110m-embedding")
    with pytest.raises(zoo.UnsafeModelFileError, match="needs no remote code"):
        zoo.load("all-minilm-l6-v2", trust_remote_code=True)


def test_local_dir_prefix_builds_a_card_from_sentence_transformers_config():
    real = resolve(zoo.card("all-minilm-l6-v2")).path
    m = zoo.load(f"local-dir:{real}")
    assert m.card.pooling == "mean" and m.card.max_tokens == 256 and m.dim == 384
    ref = zoo.load("all-minilm-l6-v2").embed(["a dog"]).vectors
    assert (m.embed(["a dog"]).vectors * ref).sum() > 0.99999


def test_hf_hub_prefix_reads_the_offline_cache(offline_hub):
    real = resolve(zoo.card("all-minilm-l6-v2")).path
    rev = "1234567890abcdef1234567890abcdef12345678"
    snap = offline_hub.snapshot("someone/minilm-copy", rev)
    for item in real.iterdir():
        if item.is_file():
            shutil.copy(item, snap / item.name)
    shutil.copytree(real / "1_Pooling", snap / "1_Pooling", dirs_exist_ok=True)
    m = zoo.load("hf-hub:someone/minilm-copy")
    assert m.resolved.revision == rev and m.card.hub_source.repo == "someone/minilm-copy"
    assert m.card.pooling == "mean" and m.dim == 384
    with pytest.raises(zoo.WeightsUnavailableError, match="someone/missing"):
        zoo.load("hf-hub:someone/missing")
    with pytest.raises(zoo.UnknownModelError, match="hf-hub:org/name"):
        zoo.load("hf-hub:not a repo")
