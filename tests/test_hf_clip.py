"""SigLIP cards on tiny random-weight SiglipModels: parity with transformers' own feature calls, padding, case.

The reference is transformers 5.18 as the SigLIP model cards use it: the snapshot's image processor and
tokenizer (``padding="max_length"``, ``max_length=64``), then ``get_image_features`` / ``get_text_features``
(``.pooler_output``), on the same weights and inputs.
"""

from __future__ import annotations

import importlib.util
import io

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from tests.fixtures.tiny_vision import (
    sample_photos,
    tiny_vision_cache,  # noqa: F401 (the session fixture "tiny_vision")
)

SIGLIP = sorted(n for n in zoo.list_models() if zoo.card(n).adapter == "hf_clip")
PARITY = 0.99999
HAS_SPM = importlib.util.find_spec("sentencepiece") is not None
TEXTS = ["a photo of a cat", "A Photo OF a Dog!", "", "an astronaut riding a rocket over the sea at night",
         "tabby cat " * 40]


def unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def row_cos(a, b) -> np.ndarray:
    return (unit(a) * unit(b)).sum(1)


def reference(folder):
    from transformers import AutoImageProcessor, AutoModel

    return AutoModel.from_pretrained(str(folder)).eval(), AutoImageProcessor.from_pretrained(str(folder))


def reference_text(folder, texts, *, padding="max_length") -> np.ndarray:
    from transformers import AutoTokenizer

    model, _ = reference(folder)
    tok = AutoTokenizer.from_pretrained(str(folder))
    enc = tok(texts, padding=padding, max_length=64, truncation=True, return_tensors="pt")
    with torch.no_grad():
        return model.get_text_features(**enc).pooler_output.numpy()


@pytest.fixture(scope="module")
def photos():
    return sample_photos()


@pytest.mark.parametrize("name", SIGLIP)
def test_card_loads_offline_and_embeds_images(name, tiny_vision):
    card = zoo.card(name)
    model = zoo.load(name)
    assert type(model.model).__name__ == "SiglipModel" and model.resolved.origin == "hf-cache"
    e = model.embed([np.zeros((30, 50, 3), np.uint8), np.full((90, 40, 3), 250, np.uint8)])
    assert e.vectors.shape == (2, card.dim) and e.modality == "image" and e.space == name
    np.testing.assert_allclose(np.linalg.norm(e.vectors, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", SIGLIP)
def test_images_match_get_image_features(name, tiny_vision, photos, tmp_path):
    model_ref, processor = reference(tiny_vision.snapshot(name))
    arrays = list(photos.values())
    pixels = processor(images=[Image.fromarray(a) for a in arrays], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = model_ref.get_image_features(pixel_values=pixels).pooler_output.numpy()
    path = tmp_path / "coffee.png"
    Image.fromarray(arrays[1]).save(path)
    inputs = [arrays[0], path, Image.fromarray(arrays[2]), arrays[3], arrays[4]]
    got = zoo.load(name).embed(inputs, batch_size=2).vectors
    assert row_cos(got, expected).min() >= PARITY


def test_siglip2_texts_match_get_text_features_on_lowercased_max_length_input(tiny_vision):
    name = "siglip2-base-patch16-224"
    folder = tiny_vision.snapshot(name)
    model = zoo.load(name)
    with pytest.warns(UserWarning, match="truncated"):
        e = model.embed(TEXTS)
    assert e.info["lowercased"] and e.info["truncated"] == 1
    lower = [t.lower() for t in TEXTS]
    assert row_cos(e.vectors, reference_text(folder, lower)).min() >= PARITY
    # The cased text and the shortest padding are different inputs to this model: both would be wrong.
    assert row_cos(e.vectors, reference_text(folder, TEXTS))[1] < PARITY
    short = model.embed(TEXTS[:4]).vectors  # padded to 64, not to the batch's longest text
    assert row_cos(short, reference_text(folder, lower[:4], padding="longest")).max() < PARITY


def test_siglip2_token_ids_are_padded_to_64_with_eos_and_no_mask(tiny_vision):
    model = zoo.load("siglip2-base-patch16-224")
    enc = model.tokenize(["a photo of a cat", "dog"])
    ids = enc["input_ids"]
    assert set(enc) == {"input_ids"} and ids.shape == (2, 64)
    tok = model.tokenizer
    for row, text in zip(ids.tolist(), ["a photo of a cat", "dog"], strict=True):
        body = tok(text, add_special_tokens=False)["input_ids"]
        assert row[: len(body) + 1] == body + [tok.eos_token_id]  # no BOS, EOS after the text
        assert set(row[len(body) + 1 :]) == {tok.pad_token_id}  # right padding to 64
    same = model.embed(["A PHOTO of a CAT", "a photo of a cat"]).vectors
    np.testing.assert_allclose(same[0], same[1], atol=1e-6)


def test_siglip2_named_prompt(tiny_vision):
    model = zoo.load("siglip2-base-patch16-224")
    e = model.embed(["a cat"], prompt_name="photo")
    assert e.info["prompt"] == "prompt 'photo'"
    np.testing.assert_array_equal(e.vectors, model.embed(["this is a photo of a cat."]).vectors)


def test_too_long_text_raises_with_index_when_truncation_is_off(tiny_vision):
    model = zoo.load("siglip2-base-patch16-224")
    with pytest.raises(zoo.InputTooLargeError) as err:
        model.embed(["ok", "tabby cat " * 40], truncate=False)
    assert err.value.index == 1 and err.value.limit == 64


@pytest.mark.skipif(HAS_SPM, reason="sentencepiece is installed")
def test_siglip_text_without_sentencepiece_names_the_package(tiny_vision):
    model = zoo.load("siglip-base-patch16-224")
    with pytest.raises(zoo.MissingDependencyError, match="sentencepiece"):
        model.embed(["a photo of a cat"])
    assert model.embed([np.zeros((8, 8, 3), np.uint8)]).vectors.shape == (1, 768)  # images still work


@pytest.mark.skipif(not HAS_SPM, reason="SigLIP's tokenizer needs sentencepiece, not installed here")
def test_siglip_texts_match_get_text_features(tiny_vision):
    name = "siglip-base-patch16-224"
    e = zoo.load(name).embed(TEXTS[:4])
    assert row_cos(e.vectors, reference_text(tiny_vision.snapshot(name), TEXTS[:4])).min() >= PARITY


def test_bad_images_raise_with_their_index(tiny_vision, photos):
    model = zoo.load("siglip2-base-patch16-224")
    buf = io.BytesIO()
    Image.fromarray(photos["chelsea"]).save(buf, format="JPEG")
    for bad in (b"\x89PNG not really", buf.getvalue()[:2000], "no/such/file.png", object()):
        with pytest.raises(zoo.InvalidInputError) as err:
            model.embed([photos["coffee"], bad], modality="image")
        assert err.value.index == 1, bad
