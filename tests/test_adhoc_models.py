"""Ad-hoc ``open_clip:ARCH[/TAG]`` and ``timm:MODEL[.TAG]`` names, on random weights in the offline hub cache.

open_clip: a tiny architecture (2 layers, 64 wide, 48-d output: ``tests.fixtures.tiny_vision``) is put into
open_clip's own tables for this module: its model config, and pretrained tags whose ``hf_hub`` entries name
repositories written into the session's offline Hugging Face cache. The reference is open_clip itself,
``create_model_and_transforms(ARCH, pretrained=TAG)``, which resolves the tag and reads the same cache.

timm: ``vit_tiny_patch16_224.augreg_in21k`` with seeded random weights saved in timm's hub layout
(``model.safetensors`` + ``config.json``); the reference is ``timm.create_model(name, pretrained=True,
num_classes=0)`` with timm's own data config, reading the same cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from tests.fixtures.hub import OfflineHub
from tests.fixtures.tiny_image import write_timm_snapshot
from tests.fixtures.tiny_vision import OPENAI_MEAN, OPENAI_STD, sample_photos, tiny_open_clip_config, write_open_clip
from zoo.adhoc import adhoc_adapter, is_adhoc, resolve_adhoc
from zoo.errors import (
    InvalidInputError,
    SpaceMismatchError,
    UnknownModelError,
    UnsafeModelFileError,
    WeightsUnavailableError,
)

ARCH = "zoo-tiny-clip"
DIM = 48
REVISION = "0123456789abcdef0123456789abcdef01234567"
#: tag -> (hub repository, the tag's pretrained config besides ``hf_hub``).
TAGS = {
    "tiny_a": ("zoo-test/tiny-clip-a", {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
                                        "interpolation": "bilinear", "resize_mode": "squash"}),
    "tiny_openai": ("zoo-test/tiny-clip-openai", {"mean": OPENAI_MEAN, "std": OPENAI_STD, "interpolation": "bicubic",
                                                  "resize_mode": "shortest", "quick_gelu": True}),
    "tiny_evil": ("zoo-test/tiny-clip-evil", {}),
    "tiny_missing": ("zoo-test/tiny-clip-missing", {}),
}
TIMM = "vit_tiny_patch16_224.augreg_in21k"
PARITY = 0.9999
pytestmark = pytest.mark.filterwarnings("ignore:.*texts longer than 77 tokens are truncated")
PROMPTS = ["cat", "", "a photo of a dog.", "An astronaut riding a horse on the moon, oil painting!",
           " ".join(["word"] * 90)]
UNPICKLED: list[str] = []  # what the hostile checkpoint's payload ran, if anything ever unpickled it


def _payload_ran(tag: str) -> str:
    UNPICKLED.append(tag)
    return tag


class Payload:
    """Unpickling this calls a function: what a hostile pickle does; ``weights_only`` must refuse it."""

    def __reduce__(self):
        return _payload_ran, ("payload ran",)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """open_clip logs to the root logger and warns about QuickGELU mismatches: expected in references here."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        logging.disable(previous)


def unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def row_cos(a, b) -> np.ndarray:
    return (unit(a) * unit(b)).sum(1)


@pytest.fixture(scope="module")
def tiny_tags(offline_hub: OfflineHub, tmp_path_factory) -> Iterator[dict]:
    """The tiny architecture and its tags in open_clip's tables, their weights in the offline cache."""
    import open_clip
    from safetensors.torch import load_file

    config = tiny_open_clip_config(DIM)
    snapshots = {tag: offline_hub.snapshot(repo, REVISION) for tag, (repo, _) in TAGS.items()}
    write_open_clip(snapshots["tiny_a"], config, seed=1)
    plain = write_open_clip(tmp_path_factory.mktemp("tiny-openai"), config, seed=2)
    torch.save(load_file(str(plain / "open_clip_model.safetensors")),
               snapshots["tiny_openai"] / "open_clip_pytorch_model.bin")  # only the pickle file, as some repos
    torch.save({"visual.proj": Payload()}, snapshots["tiny_evil"] / "open_clip_pytorch_model.bin")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(open_clip.factory._MODEL_CONFIGS, ARCH, config["model_cfg"])
        mp.setitem(open_clip.pretrained._PRETRAINED, ARCH,
                   {tag: {"url": "", "hf_hub": f"{repo}/", **extra} for tag, (repo, extra) in TAGS.items()})
        yield snapshots


@pytest.fixture(scope="module")
def timm_snapshot(offline_hub: OfflineHub):
    folder = offline_hub.snapshot(f"timm/{TIMM}", REVISION)
    if not (folder / "model.safetensors").is_file():
        write_timm_snapshot(folder, TIMM)
    return folder


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return [Image.fromarray(a) for k, a in sample_photos().items() if k != "strip_1x10000"]


def open_clip_reference(tag: str | None, **kwargs):
    """open_clip's own model, eval transform and tokenizer for ``ARCH`` with ``tag``."""
    import open_clip

    with quiet():
        model, _, preprocess = open_clip.create_model_and_transforms(ARCH, pretrained=tag, **kwargs)
    return model.eval(), preprocess, open_clip.get_tokenizer(ARCH)


@torch.inference_mode()
def reference_vectors(model, preprocess, tokenizer, photos) -> tuple[np.ndarray, np.ndarray]:
    images = model.encode_image(torch.stack([preprocess(p) for p in photos])).numpy()
    return images, model.encode_text(tokenizer(PROMPTS)).numpy()


# -- names -----------------------------------------------------------------------------------------------------------


def test_the_ad_hoc_prefixes_are_recognised_and_pick_their_adapter():
    for name, adapter in [("open_clip:ViT-B-32/laion2b_s34b_b79k", "open_clip"), ("open_clip:ViT-B-32", "open_clip"),
                          (f"timm:{TIMM}", "image"), ("timm:resnet50", "image"), ("hf-hub:org/name", "text"),
                          ("local-dir:/some/folder", "text")]:
        assert is_adhoc(name) and adhoc_adapter(name) == adapter
    assert not any(is_adhoc(n) for n in ("clip-vit-b-32-laion2b", "ViT-B-32", "timm", "open_clip", None))


# -- open_clip -------------------------------------------------------------------------------------------------------


def test_an_open_clip_card_says_what_it_is_and_that_nothing_was_checked(tiny_tags):
    name = f"open_clip:{ARCH}/tiny_a"
    card, resolved = resolve_adhoc(name)
    assert (card.name, card.adapter, card.modalities, card.dim) == (name, "open_clip", ("text", "image"), DIM)
    assert card.license == "unknown" and card.evidence == () and "unverified" in card.tags
    assert "not checked against anything" in card.description and "zoo-test/tiny-clip-a" in card.description
    assert card.space == f"open_clip:{ARCH}/tiny_a" and card.weights_format == "safetensors"
    assert card.options["preprocess"] == {"mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear",
                                          "resize_mode": "squash"}
    assert resolved.path == tiny_tags["tiny_a"] and resolved.revision == REVISION
    assert (card.hub_source.repo, card.hub_source.files) == ("zoo-test/tiny-clip-a", ("open_clip_model.safetensors",))
    # open_clip's spelling of tags: case and '-' do not matter, the space is the one canonical name
    assert resolve_adhoc(f"open_clip:{ARCH}/Tiny-A")[0].space == card.space


def test_an_open_clip_tag_embeds_texts_and_images_as_open_clip_does(tiny_tags, photos):
    m = zoo.load(f"open_clip:{ARCH}/tiny_a")
    ref_images, ref_texts = reference_vectors(*open_clip_reference("tiny_a"), photos)
    images, texts = m.embed(photos), m.embed(PROMPTS)
    assert (images.modality, texts.modality) == ("image", "text")
    assert images.vectors.shape == (len(photos), DIM) and texts.vectors.shape == (len(PROMPTS), DIM)
    assert row_cos(images.vectors, ref_images).min() > PARITY
    assert row_cos(texts.vectors, ref_texts).min() > PARITY
    ref_preprocess = open_clip_reference("tiny_a")[1]
    for photo in photos:  # the tag's preprocessing (0.5 mean/std, bilinear squash), not open_clip's defaults
        assert torch.equal(m.preprocess(photo), ref_preprocess(photo))


def test_a_quick_gelu_tag_builds_quick_gelu_from_a_weights_only_pickle(tiny_tags, photos, monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    m = zoo.load(f"open_clip:{ARCH}/tiny_openai")
    monkeypatch.setattr(torch, "load", real_load)
    assert calls and all(w is True for w in calls)
    assert m.card.weights_format == "torch-weights-only" and m.card.options["quick_gelu"] is True
    assert m.card.hub_source.files == ("open_clip_pytorch_model.bin",)
    images, texts = m.embed(photos).vectors, m.embed(PROMPTS).vectors
    quick_images, quick_texts = reference_vectors(*open_clip_reference("tiny_openai", force_quick_gelu=True), photos)
    assert row_cos(images, quick_images).min() > PARITY and row_cos(texts, quick_texts).min() > PARITY
    # open_clip without force_quick_gelu builds GELU for this tag (and only warns): other vectors
    gelu_images, _ = reference_vectors(*open_clip_reference("tiny_openai"), photos)
    assert np.abs(unit(images) - unit(gelu_images)).max() > 1e-3


def test_a_pickle_that_is_not_plain_weights_is_refused_unread(tiny_tags):
    with pytest.raises(UnsafeModelFileError, match="weights_only"):
        zoo.load(f"open_clip:{ARCH}/tiny_evil")
    assert UNPICKLED == []


def test_missing_open_clip_weights_say_where_they_are_and_how_to_fetch_them(tiny_tags):
    with pytest.raises(WeightsUnavailableError) as exc:
        zoo.load(f"open_clip:{ARCH}/tiny_missing")
    msg = str(exc.value)
    for part in ("zoo-test/tiny-clip-missing", "open_clip_model.safetensors", "open_clip_pytorch_model.bin",
                 "forbids downloads", "hf download zoo-test/tiny-clip-missing open_clip_model.safetensors"):
        assert part in msg
    # a real tag no fixture puts in the shared test cache (the CLIP cards' fixtures hold tiny ViT-B-32 laion2b files)
    with pytest.raises(WeightsUnavailableError, match=r"CLIP-convnext_base-laion400M-s13B-b51K.*download=False"):
        resolve_adhoc("open_clip:convnext_base/laion400m_s13b_b51k", download=False)


@pytest.mark.parametrize("name, suggestion", [
    ("open_clip:ViT-B-33/laion2b_s34b_b79k", "open_clip:ViT-B-32/laion2b_s34b_b79k"),
    ("open_clip:ViT-B-32/laion2b_s34b_b79", "open_clip:ViT-B-32/laion2b_s34b_b79k"),
    ("open_clip:vit-b-32", "open_clip:ViT-B-32"),
    ("open_clip:ViT-B-32/nope", None),
])
def test_unknown_open_clip_names_are_typed_errors_with_close_matches(name, suggestion):
    with pytest.raises(UnknownModelError) as exc:
        resolve_adhoc(name)
    if suggestion:
        assert suggestion in exc.value.suggestions
    else:
        assert "open_clip's tags for ViT-B-32: openai" in str(exc.value)
        assert "laion2b_s34b_b79k" in str(exc.value)


@pytest.mark.parametrize("name", ["open_clip:", "open_clip:ViT-B-32/", "open_clip:ViT-B-32:openai"])
def test_malformed_open_clip_names_show_the_form(name):
    with pytest.raises(UnknownModelError, match="write open_clip:ARCH/TAG"):
        resolve_adhoc(name)


def test_an_architecture_without_a_tag_needs_pretrained_false(tiny_tags):
    name = f"open_clip:{ARCH}"
    with pytest.raises(UnknownModelError, match="pretrained=False") as exc:
        zoo.load(name)
    assert f"open_clip:{ARCH}/tiny_a" in exc.value.suggestions
    with pytest.raises(InvalidInputError, match="pretrained=False"):
        zoo.load(f"open_clip:{ARCH}/tiny_a", pretrained=False)


def test_random_weights_are_labelled_seeded_and_kept_apart(tiny_tags, photos):
    import open_clip

    name = f"open_clip:{ARCH}"
    with pytest.warns(UserWarning, match="RANDOM weights"):
        m = zoo.load(name, pretrained=False)
    card = m.card
    assert card.description.startswith("RANDOM WEIGHTS") and "random-weights" in card.tags
    assert card.space == f"open_clip:{ARCH}/random-init-seed0" and m.resolved.origin == "random-init"
    assert card.sources == () and card.evidence == ()
    with quiet():
        torch.manual_seed(0)
        ref = open_clip.create_model(ARCH).eval()
    ref_images, ref_texts = reference_vectors(ref, m.preprocess, open_clip.get_tokenizer(ARCH), photos[:2])
    images = m.embed(photos[:2])
    assert row_cos(images.vectors, ref_images).min() > PARITY
    assert row_cos(m.embed(PROMPTS).vectors, ref_texts).min() > PARITY
    with pytest.warns(UserWarning, match="RANDOM weights"):
        again = zoo.load(name, pretrained=False)
    np.testing.assert_array_equal(again.embed(photos[:2]).vectors, images.vectors)
    trained = zoo.load(f"open_clip:{ARCH}/tiny_a").embed(photos[:2])
    with pytest.raises(SpaceMismatchError):
        zoo.similarity(images, trained)


# -- timm ------------------------------------------------------------------------------------------------------------


def test_a_timm_name_embeds_as_timm_does(timm_snapshot, photos):
    import timm
    from timm.data import create_transform, resolve_data_config

    name = f"timm:{TIMM}"
    m = zoo.load(name)
    card = m.card
    assert (card.adapter, card.modalities, card.dim, card.space) == ("image", ("image",), 192, name)
    assert card.license == "unknown" and "not checked against anything" in card.description
    assert card.options == {"timm_model": TIMM, "weights_file": "model.safetensors"}
    assert m.resolved.path == timm_snapshot and card.hub_source.repo == f"timm/{TIMM}"
    with quiet():
        ref = timm.create_model(TIMM, pretrained=True, num_classes=0).eval()
    transform = create_transform(**resolve_data_config({}, model=ref))
    with torch.inference_mode():
        expected = ref(torch.stack([transform(p.convert("RGB")) for p in photos])).numpy()
    got = m.embed(photos)
    assert got.vectors.shape == (len(photos), 192) and got.modality == "image"
    assert row_cos(got.vectors, expected).min() > PARITY
    for photo in photos[:2]:  # the tag's data config: mean/std 0.5, crop_pct 0.9, bicubic
        assert torch.equal(m.transform(photo.convert("RGB")), transform(photo.convert("RGB")))


def test_a_timm_name_without_a_tag_is_timms_default_tag(offline_hub):
    with pytest.raises(WeightsUnavailableError) as exc:
        zoo.load("timm:vit_tiny_patch16_224")
    msg = str(exc.value)
    assert "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k" in msg and "model.safetensors" in msg
    assert "hf download timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k model.safetensors" in msg


@pytest.mark.parametrize("name, suggestion", [
    ("timm:vit_tiny_patch16_2244", "timm:vit_tiny_patch16_224"),
    ("timm:vit_tiny_patch16_224.augreg_in21kk", "timm:vit_tiny_patch16_224.augreg_in21k"),
    ("timm:vit_small_patch14_dinov2.lvd142", "timm:vit_small_patch14_dinov2.lvd142m"),
])
def test_unknown_timm_names_are_typed_errors_with_close_matches(name, suggestion):
    with pytest.raises(UnknownModelError) as exc:
        resolve_adhoc(name)
    assert suggestion in exc.value.suggestions


def test_timm_names_load_trained_weights_only(timm_snapshot):
    with pytest.raises(InvalidInputError, match="pretrained=False"):
        zoo.load(f"timm:{TIMM}", pretrained=False)
    with pytest.raises(UnknownModelError, match="write timm:MODEL"):
        resolve_adhoc("timm:")


def test_the_cli_shows_and_fetches_ad_hoc_names(timm_snapshot, capsys):
    import json

    from zoo.cli import main

    name = f"timm:{TIMM}"
    assert main(["card", name, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["name"], shown["adapter"], shown["dim"]) == (name, "image", 192)
    assert zoo.card(name) == zoo.load(name).card
    assert main(["fetch", name]) == 0  # in the cache already: says where
    assert str(timm_snapshot) in capsys.readouterr().out


def test_the_cli_says_how_to_get_a_missing_ad_hoc_model_in_its_own_words(offline_hub, capsys):
    from zoo.cli import main

    assert main(["card", "timm:vit_tiny_patch16_224"]) == 1
    err = capsys.readouterr().err
    assert "this command downloads nothing" in err and "download=False" not in err
    assert "run `zoo fetch timm:vit_tiny_patch16_224` with downloads allowed" in err and "zoo.load(" not in err
    assert main(["fetch", "timm:vit_tiny_patch16_224"]) == 1  # the offline hub: its variable named as the reason
    assert re.search(r"(ZOO|HF_HUB)_OFFLINE=1 forbids downloads", capsys.readouterr().err)


def test_an_uncached_hugging_face_tokenizer_of_an_open_clip_arch_is_named(offline_hub):
    """SigLIP, XLM-R and other Hugging Face text towers take their tokenizer from the hub: offline and not cached,
    loading says which repository it needs instead of passing on transformers' OSError."""
    import open_clip

    from zoo.adapters.clip import _named_tokenizer

    arch = "ViT-B-16-SigLIP-i18n-256"
    card = dataclasses.replace(zoo.card("clip-vit-b-32-laion2b"), name=f"open_clip:{arch}",
                               options={"open_clip_arch": arch})
    with pytest.raises(WeightsUnavailableError) as exc:
        _named_tokenizer(open_clip, card)
    msg = str(exc.value)
    assert msg.startswith(f"open_clip:{arch}: open_clip could not make the tokenizer")
    assert "Hugging Face repository timm/ViT-B-16-SigLIP-i18n-256" in msg
    assert "hf download timm/ViT-B-16-SigLIP-i18n-256" in msg
    assert _named_tokenizer(open_clip, dataclasses.replace(card, options={"open_clip_arch": "ViT-B-32"}))(
        ["a dog"]).shape == (1, 77)  # open_clip's own BPE tokenizer needs nothing from the hub
