"""Fidelity details of the vision-language cards that change vectors, each against the upstream rule.

- VLM2Vec: the evaluation's prompt form by default, the demo form on request, V1's 1344x1344
  benchmark resize, and VLM2Vec's own image-size arithmetic (square for an aspect ratio over 200);
- Qwen3-VL-Embedding: RGBA pasted onto white and the target size, against qwen_vl_utils itself;
- mmE5: inputs cut at the evaluation's 256 tokens.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import zoo
from tests.fixtures.tiny_vlm import tiny_vlm_cache  # noqa: F401
from tests.test_vlm import CAPTION_Q, IMAGE_Q, Recorder, _image, _tokens
from zoo.adapters.vlm_inputs import VLMItem, build_prompt
from zoo.adapters.vlm_sizes import fetch_size, vlm2vec_size
from zoo.errors import InvalidInputError

VLM2VEC, MME5, QWEN3 = "vlm2vec-qwen2vl-2b", "mme5-mllama-11b-instruct", "qwen3-vl-embedding-2b"


@pytest.fixture(scope="module")
def loaded(tiny_vlm_cache):  # noqa: F811
    cache: dict[tuple, object] = {}

    def get(name: str, **options):
        key = (name, tuple(sorted(options.items())))
        if key not in cache:
            cache[key] = zoo.load(name, **options)
        return cache[key]

    return get


# -- VLM2Vec prompt forms -----------------------------------------------------------------------------------------


def test_demo_form_is_the_space_joined_prompt(loaded, monkeypatch):
    emb = loaded(VLM2VEC, prompt_format="demo")
    rec = Recorder(emb, monkeypatch)
    img = _image()
    emb.embed([{"image": img, "text": "What is in the image"}], task_instruction=IMAGE_Q)
    emb.embed(["A cat and a dog."], task_instruction=CAPTION_Q)
    grid = emb.backbone.prepare(VLMItem(image=img, prompt="<|image_pad|>"), 0).extras["image_grid_thw"]
    pads = "<|image_pad|>" * (int(grid.prod()) // 4)
    assert [_tokens(emb, row) for row in rec.fed()] == [f"{pads} {IMAGE_Q} What is in the image",
                                                         f"{CAPTION_Q} A cat and a dog."]


def test_the_two_forms_give_different_vectors_and_plain_text_the_same(loaded):
    evaluation, demo = loaded(VLM2VEC), loaded(VLM2VEC, prompt_format="demo")
    item = [{"image": _image(), "text": "What is in the image"}]
    a = evaluation.embed(item, task_instruction=IMAGE_Q).vectors[0]
    b = demo.embed(item, task_instruction=IMAGE_Q).vectors[0]
    assert float(a @ b) < 0.9999  # the newlines are tokens the model sees
    plain = ["A cat and a dog"]  # a text target is the raw text in both forms
    assert np.array_equal(evaluation.embed(plain).vectors, demo.embed(plain).vectors)


def test_prompt_format_is_checked(tiny_vlm_cache):  # noqa: F811
    with pytest.raises(InvalidInputError, match="prompt_format"):
        zoo.load(VLM2VEC, prompt_format="chat")
    with pytest.raises(InvalidInputError, match="prompt_format"):
        zoo.load(MME5, prompt_format="demo")  # mmE5 has one form


# -- VLM2Vec images -----------------------------------------------------------------------------------------------


def test_benchmark_setting_resizes_every_image_to_1344(loaded):
    emb = loaded(VLM2VEC, benchmark=True)
    assert emb.card.options["benchmark"] == {"image_resize": [1344, 1344]}
    (item,) = emb._check([_image(60, 90)], "image")
    assert item.image.size == (1344, 1344)
    plain = loaded(VLM2VEC)
    (same,) = plain._check([_image(60, 90)], "image")
    assert same.image.size == (90, 60)
    resized = _image(60, 90).resize((1344, 1344), resample=3)  # PIL's bicubic, as the evaluation's image.resize
    assert np.array_equal(emb.embed([_image(60, 90)]).vectors, plain.embed([resized]).vectors)
    with pytest.raises(InvalidInputError, match="no benchmark settings"):
        zoo.load(MME5, benchmark=True)


@pytest.mark.parametrize("height", [28, 29, 56, 100, 333, 1000])
def test_vlm2vec_size_equals_transformers_for_ordinary_images(height):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    for width in range(28, 5600, 37):
        if max(height, width) / min(height, width) > 200:
            continue
        assert vlm2vec_size(height, width, 28, 3136, 1003520) == smart_resize(height, width, 28, 3136, 1003520)


def test_an_aspect_ratio_over_200_is_made_square_as_vlm2vec_does(loaded):
    emb = loaded(VLM2VEC)
    # VLM2Vec's image processor copy: height = width = max(factor, h, w) = 6000, then scaled into max_pixels
    assert vlm2vec_size(28, 6000, 28, 3136, 1003520) == (980, 980)
    prompt = build_prompt(emb.style, VLMItem(image=_image(28, 6000)), None, emb.card.options)
    grid = emb.backbone.prepare(VLMItem(image=_image(28, 6000), prompt=prompt), 0).extras["image_grid_thw"]
    assert grid[0].tolist() == [1, 70, 70]
    assert emb.embed([_image(28, 6000)]).vectors.shape == (1, 1536)


def test_pre_resizing_equals_the_processors_own_resize(loaded):
    """The zoo resizes with PIL's bicubic and passes do_resize=False; for ordinary images that is bit for bit
    what the processor's PIL backend does itself."""
    emb = loaded(VLM2VEC)
    for image in (_image(300, 451), _image(640, 427), _image(90, 60)):
        prompt = build_prompt(emb.style, VLMItem(image=image), None, emb.card.options)
        ours = emb.backbone.prepare(VLMItem(image=image, prompt=prompt), 0).extras
        theirs = emb.backbone.image_processor(images=[image], return_tensors="pt")
        assert torch.equal(ours["image_grid_thw"], theirs["image_grid_thw"])
        assert torch.equal(ours["pixel_values"], theirs["pixel_values"])


# -- Qwen3-VL-Embedding ----------------------------------------------------------------------------------------------


def test_qwen3_vl_target_size_is_qwen_vl_utils_smart_resize():
    from qwen_vl_utils.vision_process import smart_resize

    for height in (1, 7, 32, 33, 100, 640, 2000):
        for width in range(1, 20000, 97):
            if max(height, width) / min(height, width) > 200:
                with pytest.raises(ValueError):
                    fetch_size(height, width, 32, 4096, 1843200)
                continue
            assert fetch_size(height, width, 32, 4096, 1843200) == smart_resize(height, width, 32, 4096, 1843200)


def _rgba():
    from PIL import Image

    rgba = np.random.RandomState(3).randint(0, 255, (64, 96, 4), dtype=np.uint8)
    rgba[:, :40, 3] = 0  # a transparent band: its colour values are whatever the file holds
    return Image.fromarray(rgba)  # four channels: RGBA


def test_qwen3_vl_pastes_rgba_onto_white_as_qwen_vl_utils(loaded):
    from qwen_vl_utils.vision_process import to_rgb

    emb = loaded(QWEN3)
    image = _rgba()
    (item,) = emb._check([image], "image")
    assert np.array_equal(np.asarray(item.image), np.asarray(to_rgb(image)))
    got = emb.embed([image]).vectors
    assert np.array_equal(got, emb.embed([to_rgb(image)]).vectors)
    dropped = emb.embed([image.convert("RGB")]).vectors  # what dropping the alpha channel would give
    assert float(got[0] @ dropped[0]) < 0.9999


def test_other_cards_drop_alpha_as_their_processors_do(loaded):
    emb = loaded(VLM2VEC)  # VLM2Vec's evaluation opens images with PIL and converts them to RGB
    (item,) = emb._check([_rgba()], "image")
    assert np.array_equal(np.asarray(item.image), np.asarray(_rgba().convert("RGB")))


# -- mmE5 ------------------------------------------------------------------------------------------------------------


def test_mme5_cuts_inputs_at_the_evaluations_256_tokens(loaded):
    emb = loaded(MME5)
    assert emb.card.max_tokens == 256 and emb.max_tokens == 256
    long = " ".join(["word"] * 600)
    with pytest.warns(UserWarning, match="truncated"):
        cut = emb.embed([long])
    assert cut.info["truncated"] == 1
