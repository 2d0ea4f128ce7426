"""open_clip cards on tiny random-weight models: loading, parity with open_clip itself, QuickGELU, text trimming.

The reference is open_clip 3.3.0 used as its README says (``create_model_and_transforms`` on the same snapshot
folder, its preprocess, tokenizer, ``encode_image`` / ``encode_text``), on the same weights and inputs.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from tests.fixtures.tiny_vision import (
    sample_photos,
    tiny_open_clip_config,
    tiny_vision_cache,  # noqa: F401 (the session fixture "tiny_vision")
    write_open_clip,
)
from zoo.adapters.clip import CausalText, strip_safe

OPEN_CLIP = sorted(n for n in zoo.list_models() if zoo.card(n).adapter == "open_clip")
OPENAI = [n for n in OPEN_CLIP if zoo.card(n).options.get("quick_gelu")]
PARITY = 0.99999
#: Prompts from 1 to well over 77 tokens; the last is cut by the tokenizer.
PROMPTS = ["cat", "", "a photo of a dog.", "An astronaut riding a horse on the moon, oil painting!"] + [
    " ".join(["word"] * n) for n in (5, 12, 30, 60, 74, 75, 76, 90)
]


def unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def row_cos(a, b) -> np.ndarray:
    return (unit(a) * unit(b)).sum(1)


def reference(folder, *, quick_gelu: bool):
    """open_clip's own model, eval transform and tokenizer for a snapshot folder."""
    import open_clip

    logging.disable(logging.WARNING)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}",
                                                                     force_quick_gelu=quick_gelu)
    finally:
        logging.disable(logging.NOTSET)
    return model.eval(), preprocess, open_clip.get_tokenizer(f"local-dir:{folder}")


@pytest.fixture(scope="module")
def photos():
    return sample_photos()


@pytest.fixture(scope="module")
def open_clip_preprocess():
    """open_clip's eval transform for ViT-B-32 at 224 px: the one every tiny config's preprocess_cfg gives."""
    import open_clip

    logging.disable(logging.WARNING)
    try:
        return open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)[2]
    finally:
        logging.disable(logging.NOTSET)


@pytest.fixture(scope="module")
def reference_pixels(photos, open_clip_preprocess):
    """open_clip's eval transform of every photo (the 1x10000 strip takes it a few seconds and gigabytes)."""
    return torch.stack([open_clip_preprocess(Image.fromarray(a)) for a in photos.values()])


def mixed_inputs(photos, tmp_path):
    """The photos as the different input kinds users pass: array, PNG path, PNG bytes, PIL image, array."""
    arrays = list(photos.values())
    path = tmp_path / "coffee.png"
    Image.fromarray(arrays[1]).save(path)
    buf = io.BytesIO()
    Image.fromarray(arrays[2]).save(buf, format="PNG")
    return [arrays[0], path, buf.getvalue(), Image.fromarray(arrays[3]), arrays[4]]


# -- every card ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OPEN_CLIP)
def test_card_loads_offline_and_embeds_images_and_texts(name, tiny_vision):
    card = zoo.card(name)
    model = zoo.load(name)
    assert model.resolved.origin == "hf-cache" and model.resolved.revision == card.hub_source.revision
    texts = model.embed(["a photo of a cat", "a dog"])
    images = model.embed([np.zeros((40, 60, 3), np.uint8), np.full((300, 200, 3), 200, np.uint8)])
    for e, modality in ((texts, "text"), (images, "image")):
        assert e.vectors.shape == (2, card.dim) and e.modality == modality
        assert e.space == card.space == name
        np.testing.assert_allclose(np.linalg.norm(e.vectors, axis=1), 1.0, rtol=1e-5)
    assert model.embed([], modality="image").vectors.shape == (0, card.dim)


@pytest.mark.parametrize("name", OPEN_CLIP)
def test_images_match_open_clip_encode_image(name, tiny_vision, photos, reference_pixels, open_clip_preprocess,
                                             tmp_path):
    quick = bool(zoo.card(name).options.get("quick_gelu"))
    ref_model, ref_preprocess, _ = reference(tiny_vision.snapshot(name), quick_gelu=quick)
    same = [repr(t).replace("[", "(").replace("]", ")") for t in (ref_preprocess, open_clip_preprocess)]
    assert same[0] == same[1]  # so the shared reference pixels are this card's
    with torch.no_grad():
        expected = ref_model.encode_image(reference_pixels).numpy()
    got = zoo.load(name).embed(mixed_inputs(photos, tmp_path), batch_size=2).vectors
    cos = row_cos(got, expected)
    assert cos.min() >= PARITY, dict(zip(photos, cos.round(7), strict=True))


@pytest.mark.parametrize("name", OPEN_CLIP)
def test_texts_match_open_clip_encode_text(name, tiny_vision):
    quick = bool(zoo.card(name).options.get("quick_gelu"))
    ref_model, _, tokenizer = reference(tiny_vision.snapshot(name), quick_gelu=quick)
    with torch.no_grad():
        expected = ref_model.encode_text(tokenizer(PROMPTS)).numpy()
    model = zoo.load(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 90-word prompt is truncated, as open_clip truncates it
        e = model.embed(PROMPTS, batch_size=5)
    assert e.info["text_context"] == "trimmed"
    assert row_cos(e.vectors, expected).min() >= PARITY


# -- text trimming ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["clip-vit-b-32-laion2b", "clip-vit-l-14-openai"])
def test_trimmed_text_forward_equals_encode_text_on_77_tokens(name, tiny_vision):
    quick = bool(zoo.card(name).options.get("quick_gelu"))
    model, _, tokenizer = reference(tiny_vision.snapshot(name), quick_gelu=quick)
    texts = PROMPTS + [" ".join(["a", "photo", "of"] * k) for k in range(1, 30)] + ["x" * 400]
    ids = tokenizer(texts)
    assert (ids[:, -1] == 49407).sum() >= 2  # some prompts really reach the 77th token (cut there)
    tower = CausalText.of(model)
    assert tower is not None
    seen: list[int] = []
    hook = model.transformer.register_forward_pre_hook(lambda _m, args, kw: seen.append(args[0].shape[1]),
                                                       with_kwargs=True)
    with torch.no_grad():
        full = model.encode_text(ids).numpy()
        trimmed = np.concatenate([tower(ids[i : i + 1]).numpy() for i in range(len(texts))])
        batched = tower(ids).numpy()
    hook.remove()
    assert row_cos(trimmed, full).min() >= PARITY and row_cos(batched, full).min() >= PARITY
    np.testing.assert_allclose(trimmed, full, atol=1e-4)
    assert min(seen[1:]) == 2 and max(seen[1:]) == 77  # "" is <sot><eot>; the cut prompts need all 77


def test_trimming_is_not_used_where_it_would_change_vectors(tiny_vision, tmp_path):
    """A bidirectional tower pooled at the last position reads the padding: the zoo must run all 77 tokens."""
    cfg = tiny_open_clip_config(512)
    cfg["model_cfg"]["text_cfg"].update(no_causal_mask=True, pool_type="last")
    folder = write_open_clip(tmp_path / "bidir", cfg)
    model = zoo.load("clip-vit-b-32-laion2b", path=folder)
    assert model.text_tower is None
    ref_model, _, tokenizer = reference(folder, quick_gelu=False)
    ids = tokenizer(PROMPTS[:6])
    after_eot = torch.arange(ids.shape[1]) > ids.argmax(-1, keepdim=True)
    with torch.no_grad():
        expected = ref_model.encode_text(ids).numpy()
        other_padding = ref_model.encode_text(ids.masked_fill(after_eot, 320)).numpy()
    assert row_cos(expected, other_padding).max() < PARITY  # what follows the text matters to this tower
    e = model.embed(PROMPTS[:6])
    assert e.info["text_context"] == "full"
    assert row_cos(e.vectors, expected).min() >= PARITY


def test_eos_pooled_causal_tower_is_trimmed_too(tiny_vision, tmp_path):
    cfg = tiny_open_clip_config(512)
    cfg["model_cfg"]["text_cfg"].update(pool_type="eos", eos_id=49407)
    folder = write_open_clip(tmp_path / "eos", cfg)
    model = zoo.load("clip-vit-b-32-laion2b", path=folder)
    assert model.text_tower is not None and model.text_tower.pool_type == "eos"
    ref_model, _, tokenizer = reference(folder, quick_gelu=False)
    with torch.no_grad():
        expected = ref_model.encode_text(tokenizer(PROMPTS[:8])).numpy()
    assert row_cos(model.embed(PROMPTS[:8]).vectors, expected).min() >= PARITY


def test_long_text_truncation_warns_or_raises(tiny_vision):
    model = zoo.load("clip-vit-b-32-laion2b")
    long_text = " ".join(["word"] * 100)
    with pytest.warns(UserWarning, match="truncated"):
        e = model.embed(["short", long_text])
    assert e.info["truncated"] == 1
    with pytest.raises(zoo.InputTooLargeError) as err:
        model.embed(["short", long_text], truncate=False)
    assert err.value.index == 1 and err.value.limit == 77


# -- QuickGELU -------------------------------------------------------------------------------------------------------


def _activations(model) -> set[str]:
    return {type(m.mlp.gelu).__name__ for m in model.modules() if hasattr(m, "mlp") and hasattr(m.mlp, "gelu")}


@pytest.mark.parametrize("name", OPENAI)
def test_openai_cards_build_quick_gelu_and_gelu_gives_other_vectors(name, tiny_vision, photos):
    model = zoo.load(name)
    assert _activations(model.model) == {"QuickGELU"}
    assert json.loads((tiny_vision.snapshot(name) / "open_clip_config.json").read_text())["model_cfg"].get(
        "quick_gelu") is None  # so it is the card that asks for it
    gelu, preprocess, tokenizer = reference(tiny_vision.snapshot(name), quick_gelu=False)
    quick, _, _ = reference(tiny_vision.snapshot(name), quick_gelu=True)
    assert _activations(gelu) == {"GELU"}
    arrays = list(photos.values())[:4]
    pixels = torch.stack([preprocess(Image.fromarray(a)) for a in arrays])
    with torch.no_grad():
        g_img, q_img = gelu.encode_image(pixels).numpy(), quick.encode_image(pixels).numpy()
        g_txt = gelu.encode_text(tokenizer(PROMPTS[:4])).numpy()
    ours_img, ours_txt = model.embed(arrays).vectors, model.embed(PROMPTS[:4]).vectors
    ours_gap = 1 - row_cos(ours_img, q_img).min()
    assert 1 - row_cos(ours_img, g_img).max() > max(100 * ours_gap, 1e-6)
    assert 1 - row_cos(ours_txt, g_txt).max() > 1e-5


def test_laion_cards_build_gelu(tiny_vision):
    for name in sorted(set(OPEN_CLIP) - set(OPENAI)):
        assert _activations(zoo.load(name).model) == {"GELU"}, name


# -- prompts, inputs, files ------------------------------------------------------------------------------------------


def test_named_prompts_are_openai_imagenet_templates_and_format_exactly(tiny_vision):
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    card = zoo.card("clip-vit-b-32-laion2b")
    openai = {t("{input}") for t in OPENAI_IMAGENET_TEMPLATES}
    assert card.prompts["photo"] == "a photo of a {input}."
    assert set(card.prompts.values()) - {card.prompts["photo"]} <= openai
    model = zoo.load("clip-vit-b-32-laion2b")
    for name, template in card.prompts.items():
        e = model.embed(["tabby cat", "goldfish"], prompt_name=name)
        plain = model.embed([template.replace("{input}", "tabby cat"), template.replace("{input}", "goldfish")])
        assert e.info["prompt"] == f"prompt {name!r}"
        np.testing.assert_array_equal(e.vectors, plain.vectors)
    assert model.embed(["a photo of a tabby cat."]).vectors.tolist() == \
        model.embed(["tabby cat"], prompt_name="photo").vectors.tolist()
    with pytest.raises(zoo.InvalidInputError, match="no prompt"):
        model.embed(["cat"], prompt_name="nope")


def test_modality_is_inferred_and_can_be_overridden(tiny_vision, tmp_path, photos):
    model = zoo.load("clip-vit-b-32-laion2b")
    path = tmp_path / "cat.png"
    Image.fromarray(photos["chelsea"]).save(path)
    assert model.embed(["a cat"]).modality == "text"
    assert model.embed([path]).modality == "image"
    as_image = model.embed([str(path)], modality="image")
    np.testing.assert_allclose(as_image.vectors, model.embed([photos["chelsea"]]).vectors, atol=1e-6)


def test_bad_images_raise_with_their_index_before_the_model_runs(tiny_vision, tmp_path, photos, monkeypatch):
    model = zoo.load("clip-vit-b-32-laion2b")
    calls = []
    encode = model.model.encode_image
    monkeypatch.setattr(model.model, "encode_image", lambda x: calls.append(len(x)) or encode(x))
    good = photos["coffee"]
    buf = io.BytesIO()
    Image.fromarray(good).save(buf, format="JPEG")
    huge = tmp_path / "huge.png"
    Image.new("L", (9000, 5000)).save(huge)  # 45 megapixels, over zoo.images.MAX_PIXELS
    for bad in (tmp_path / "missing.png", b"not an image", b"", np.zeros((2, 2, 2), np.uint8), 1.5, huge):
        with pytest.raises(zoo.InvalidInputError) as err:
            model.embed([good, good, bad, good], modality="image", batch_size=1)
        assert err.value.index == 2 and not calls, bad
    # A file whose header is fine but whose pixels are cut is found when it is decoded, still by its index.
    truncated = buf.getvalue()[: len(buf.getvalue()) // 2]
    with pytest.raises(zoo.InvalidInputError, match="truncated") as err:
        model.embed([good, good, truncated, good], modality="image", batch_size=1)
    assert err.value.index == 2


def test_image_order_is_kept_with_small_batches_and_threads(tiny_vision, photos):
    arrays = list(photos.values())[:4] * 2
    model = zoo.load("clip-vit-b-32-laion2b", workers=3)
    one_by_one = np.concatenate([model.embed([a]).vectors for a in arrays])
    np.testing.assert_allclose(model.embed(arrays, batch_size=3).vectors, one_by_one, atol=1e-5)
    inline = zoo.load("clip-vit-b-32-laion2b", workers=0)
    np.testing.assert_allclose(inline.embed(arrays, batch_size=3).vectors, one_by_one, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 10000), (3, 5000), (6000, 2), (2, 2000)])
def test_long_strips_are_resampled_in_the_crop_box_with_the_same_pixels(shape, open_clip_preprocess, monkeypatch):
    """Same filter, same geometry; only float rounding of the filter weights may move a value by 1-2 levels."""
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8))
    full = open_clip_preprocess(img)
    resize = open_clip_preprocess.transforms[0]
    monkeypatch.setattr(resize, "forward", lambda _img: pytest.fail("the full-size resize ran"))
    boxed = strip_safe(open_clip_preprocess)(img)
    level = 1 / 255 / 0.2613  # one 8-bit level after normalization (smallest std)
    assert (full - boxed).abs().max() <= 2.01 * level
    assert ((full - boxed).abs() > 1e-6).float().mean() < 0.02


def test_pickle_only_snapshot_is_refused(tiny_vision, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(tiny_vision.snapshot("clip-vit-b-32-laion2b") / "open_clip_config.json", folder)
    (folder / "open_clip_pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(zoo.UnsafeModelFileError, match="pickle"):
        zoo.load("clip-vit-b-32-laion2b", path=folder)


def test_bf16_compute_stays_close_to_fp32_and_returns_float32(tiny_vision, photos):
    name = OPEN_CLIP[0]
    fp32, bf16 = zoo.load(name), zoo.load(name, compute_dtype="bfloat16")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    for inputs in (list(photos.values())[:3], PROMPTS[:6]):
        a, b = fp32.embed(inputs).vectors, bf16.embed(inputs).vectors
        assert b.dtype == np.float32 and b.shape == a.shape
        assert row_cos(a, b).min() > 0.99  # bf16 keeps 8 mantissa bits: close, not equal
    with pytest.raises(zoo.InvalidInputError, match="compute_dtype"):
        zoo.load(name, compute_dtype="float8")
