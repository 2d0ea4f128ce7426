"""sentence-transformers' ``model.encode`` and ``model.similarity`` on zoo models.

``encode`` is compared with ``SentenceTransformer(<the model's folder>).encode`` on the real all-MiniLM-L6-v2 weights
for ST's keywords (values within 1e-5, the same types, dtypes and shapes); its multimodal input forms (PIL images, the
``{"text", "image", "audio"}`` dicts, audio dicts, chat messages) give what the zoo's own forms give with ``embed``, on
real offline models where one embeds the modality and on a recording model for the forms no offline model takes.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from tests.fixtures.tiny_vlm import tiny_vlm_cache  # noqa: F401
from tests.support import stdlib_sentences
from tests.test_shared_models import _check_against_serial, _raises
from zoo.adapters.base import SERIALIZED_CALLS, BaseEmbedder
from zoo.errors import InvalidInputError
from zoo.modelcard import ModelCard
from zoo.sources import Resolved

st = pytest.importorskip("sentence_transformers")

TEXTS = [*stdlib_sentences()[:24], "a dog", "", "x " * 400]  # the last is over the 256-token limit: both cut it


@pytest.fixture(scope="module")
def minilm():
    return zoo.load("all-minilm-l6-v2")


@pytest.fixture(scope="module")
def st_minilm(minilm):
    return st.SentenceTransformer(str(minilm.resolved.path), device="cpu")


def _same_kind(ours, ref) -> None:
    assert type(ours) is type(ref)
    if isinstance(ref, list):
        assert len(ours) == len(ref)
        assert all(type(a) is type(b) and a.shape == b.shape for a, b in zip(ours, ref, strict=True))
        ours, ref = torch.stack(ours), torch.stack(ref)
    assert tuple(ours.shape) == tuple(ref.shape)
    assert str(ours.dtype) == str(ref.dtype)


# -- parity with sentence-transformers --------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    {},
    dict(batch_size=32, show_progress_bar=False, convert_to_numpy=True, convert_to_tensor=False,
         normalize_embeddings=False, prompt_name=None, prompt=None, precision="float32"),
    dict(normalize_embeddings=True),
    dict(convert_to_tensor=True),
    dict(convert_to_numpy=False),
    dict(batch_size=5),
    dict(prompt="query: "),
    dict(truncate_dim=128),
    dict(truncate_dim=100, normalize_embeddings=True, convert_to_tensor=True),
    dict(precision="binary"),
    dict(precision="ubinary"),
], ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "defaults")
def test_encode_matches_sentence_transformers(minilm, st_minilm, kwargs):
    ours, ref = minilm.encode(TEXTS, **kwargs), st_minilm.encode(TEXTS, **kwargs)
    _same_kind(ours, ref)
    ours = torch.stack(ours) if isinstance(ours, list) else ours
    ref = torch.stack(ref) if isinstance(ref, list) else ref
    np.testing.assert_allclose(np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64), rtol=0,
                               atol=1e-5)


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_encode_int8_uint8_quantize_the_batch_as_sentence_transformers(minilm, st_minilm, precision):
    from sentence_transformers.util.quantization import quantize_embeddings

    ours = minilm.encode(TEXTS, precision=precision)
    # The same rule as quantize_embeddings on the batch's own ranges...
    np.testing.assert_array_equal(ours, quantize_embeddings(minilm.encode(TEXTS), precision=precision))
    # ...so within one code of ST's own (a float 1e-8 apart may fall on either side of a bucket's edge).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = st_minilm.encode(TEXTS, precision=precision)
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    diff = np.abs(ours.astype(int) - ref.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


@pytest.mark.parametrize("kwargs", [{}, dict(convert_to_tensor=True), dict(convert_to_numpy=False),
                                    dict(precision="ubinary")])
def test_one_string_gives_one_vector_like_sentence_transformers(minilm, st_minilm, kwargs):
    ours, ref = minilm.encode("a dog", **kwargs), st_minilm.encode("a dog", **kwargs)
    _same_kind(ours, ref)
    assert ours.ndim == 1
    np.testing.assert_allclose(np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64), atol=1e-5)


def test_named_prompts_given_at_load_match_sentence_transformers(minilm):
    prompts = {"query": "query: ", "passage": "passage: "}
    ours = zoo.load("all-minilm-l6-v2", prompts=prompts)
    ref = st.SentenceTransformer(str(minilm.resolved.path), device="cpu", prompts=prompts)
    texts = TEXTS[:6]
    for kwargs in (dict(prompt_name="query"), dict(prompt_name="passage"),
                   dict(prompt="passage: ", prompt_name="query")):  # prompt wins
        np.testing.assert_allclose(ours.encode(texts, **kwargs), ref.encode(texts, **kwargs), atol=1e-5)
    np.testing.assert_allclose(ours.encode(texts, prompt_name="query"), minilm.encode(["query: " + t for t in texts]),
                               atol=1e-6)


def test_encode_follows_sentence_transformers_defaults_not_embeds():
    """ST's default is normalize_embeddings=False: a model whose pipeline has no Normalize step gives raw vectors,
    where ``embed`` normalizes by default."""
    model = zoo.load("paraphrase-minilm-l3-v2")  # mean pooling, no Normalize module (card: normalize = false)
    texts = TEXTS[:5]
    raw = model.encode(texts)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)
    np.testing.assert_allclose(raw, model.embed(texts, normalize=False).vectors, atol=1e-6)
    np.testing.assert_allclose(model.encode(texts, normalize_embeddings=True), model.embed(texts).vectors, atol=1e-6)


def test_encode_with_the_zoos_own_keywords(minilm):
    texts = TEXTS[:4]
    assert minilm.encode(sentences=texts).shape == (4, 384)  # ST's older name for the first argument
    calibration = minilm.encode(TEXTS)
    np.testing.assert_array_equal(minilm.encode(texts[:1], precision="int8", calibration=calibration),
                                  minilm.embed(texts[:1], precision="int8", calibration=calibration).vectors)
    assert minilm.encode([]).shape == (0, 384)  # ST gives an empty 1-D array here; the zoo keeps the width
    assert minilm.encode([], precision="ubinary").shape == (0, 48)
    assert minilm.encode(np.array(texts)).shape == (4, 384)  # an array of strings is a batch, as in ST
    assert minilm.encode(iter(texts)).shape == (4, 384)
    assert minilm.encode(texts, device="cpu").shape == (4, 384)


@pytest.mark.parametrize("kwargs, match", [
    (dict(output_value="token_embeddings"), "output_value='token_embeddings' is not supported"),
    (dict(output_value=None), "output_value=None is not supported"),
    (dict(pool={"processes": []}), "multi-process encoding"),
    (dict(chunk_size=10), "multi-process encoding"),
    (dict(device="cuda:1"), "cannot move it to 'cuda:1'"),
    (dict(precision="float8"), "precision must be one of"),
    (dict(truncate_dim=0), r"truncate_dim must be an integer in 1\.\.384"),
    (dict(truncate_dim=500), r"truncate_dim must be an integer in 1\.\.384"),
    (dict(normalize_embeddings="yes"), "normalize_embeddings must be True or False"),
    (dict(bogus=1), "unknown keyword.*bogus.*task_instruction, modality"),
    (dict(prompt=3), "prompt must be a string"),
    (dict(prompt_name="query"), "has no prompt 'query'"),
    (dict(batch_size=0), "batch_size must be a positive integer"),
])
def test_encode_refuses_what_it_cannot_honour(minilm, kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        minilm.encode(["a dog"], **kwargs)


# -- multimodal inputs on real models ---------------------------------------------------------------------------------


def _photo():
    from PIL import Image

    from tests.fixtures.tiny_vision import sample_photos

    return Image.fromarray(sample_photos()["coffee"])


def test_a_pil_image_and_image_dicts_equal_embed_on_an_image_model():
    lite = zoo.load("efficientnet-lite0")
    photo = _photo()
    expected = lite.embed([photo], normalize=lite.card.normalize).vectors
    one = lite.encode(photo)
    assert one.shape == (lite.dim,)
    np.testing.assert_array_equal(one, expected[0])
    batch = lite.encode([photo, {"image": photo}, [{"role": "user", "content": [{"type": "image", "image": photo}]}]])
    np.testing.assert_allclose(batch, np.repeat(expected, 3, axis=0), atol=1e-6)  # a batch of 3, not of 1
    for form, match in [({"text": "a cup"}, r"a \{'text'\} dict: efficientnet-lite0 does not embed text"),
                        ({"image": photo, "text": "a cup"}, "does not embed the two as one input"),
                        ("a cup of coffee", "input\\[0\\]")]:  # a plain str is a path for an image-only model
        with pytest.raises(InvalidInputError, match=match):
            lite.encode([form])


def test_audio_dicts_equal_the_zoos_waveform_pairs():
    import soundfile as sf

    whisper = zoo.load("whisper-tiny-en")
    wave, rate = sf.read(str(Path(zoo.__file__).parent / "samples" / "speech" / "coffee.flac"), dtype="float32")
    expected = whisper.embed([(wave, rate)], normalize=whisper.card.normalize).vectors
    np.testing.assert_array_equal(whisper.encode({"array": wave, "sampling_rate": rate}), expected[0])
    batch = whisper.encode([{"audio": {"array": wave, "sampling_rate": rate}}, (wave, rate),
                            {"array": torch.from_numpy(wave), "sampling_rate": rate}])
    np.testing.assert_allclose(batch, np.repeat(expected, 3, axis=0), atol=1e-6)
    np.testing.assert_array_equal(whisper.encode((wave, rate)), expected[0])  # the zoo's pair is one input
    with pytest.raises(InvalidInputError, match="'array' needs 'sampling_rate'"):
        whisper.encode({"array": wave})


def test_mixed_modalities_in_one_call_keep_the_callers_order():
    bind = zoo.load("zoo-bind-mini")
    photo = _photo()
    texts = ["a cup of coffee", "a cat on a sofa"]
    got = bind.encode([texts[0], photo, {"text": texts[1]}])
    np.testing.assert_allclose(got[[0, 2]], bind.encode(texts), atol=1e-6)
    np.testing.assert_allclose(got[1], bind.encode(photo), atol=1e-6)


# -- every form, on a model that records what it is given -----------------------------------------------------------


class Recording(BaseEmbedder):
    """Text, image, audio and interleaved inputs; each vector is a hash of (modality, instruction, item)."""

    def __init__(self, card: ModelCard, resolved: Resolved, **options):
        super().__init__(card, resolved, **options)
        self.calls: list[tuple[str, str | None, list]] = []

    def _infer_modality(self, inputs: list) -> str:
        return "text" if all(isinstance(x, str) for x in inputs) else super()._infer_modality(inputs)

    def _check(self, inputs: list, modality: str) -> list:
        return list(inputs)

    def _apply_prompts(self, items: list, modality: str, ctx) -> list:  # like a VLM: the instruction goes as it is
        return items

    def _encode(self, items: list, modality: str, ctx) -> np.ndarray:
        self.calls.append((modality, ctx.instruction, items))
        return np.stack([_hashed((modality, ctx.instruction, _key(item)), self.dim) for item in items])


def _key(item):
    if isinstance(item, dict):
        return tuple(sorted((k, _key(v)) for k, v in item.items()))
    return id(item) if not isinstance(item, (str, int, float, type(None))) else item


def _hashed(key, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "little")
    return np.random.default_rng(seed).normal(size=dim).astype(np.float32)


def _recording(similarity: str = "cosine", **card) -> Recording:
    values = dict(name="recording", adapter="recording", modalities=("text", "image", "audio", "interleaved"), dim=8,
                  description="records its inputs", license="mit", sources=(), similarity=similarity,
                  instruction_template="{instruction} {input}", offline_note="a test model")
    values.update(card)
    return Recording(ModelCard(**values), Resolved(Path("."), "path"))


class Picture:
    """Stands for an image object (the recording model does not decode images)."""


def test_each_form_gives_what_the_zoos_own_form_gives():
    model = _recording()
    pic = Picture()
    wave = np.zeros(1600, dtype=np.float32)
    cases = [
        ({"text": "a cat"}, dict(inputs=["a cat"])),
        ({"image": pic}, dict(inputs=[pic], modality="image")),
        ({"image": pic, "text": "a cat"}, dict(inputs=[{"image": pic, "text": "a cat"}], modality="interleaved")),
        ([{"role": "user", "content": "a cat"}], dict(inputs=["a cat"])),
        ({"role": "user", "content": "a cat"}, dict(inputs=["a cat"])),
        ([{"role": "system", "content": "Find the picture."}, {"role": "user", "content": "a cat"}],
         dict(inputs=["a cat"], task_instruction="Find the picture.")),
        ([{"role": "system", "content": [{"type": "text", "text": "Find it."}]},
          {"role": "user", "content": [{"type": "image", "image": pic}, {"type": "text", "text": "a cat"}]}],
         dict(inputs=[{"image": pic, "text": "a cat"}], modality="interleaved", task_instruction="Find it.")),
        ([{"role": "user", "content": [{"type": "image", "image": pic}]}], dict(inputs=[pic], modality="image")),
    ]
    for form, own in cases:
        np.testing.assert_array_equal(model.encode(form), model.embed(**own, normalize=True).vectors[0],
                                      err_msg=repr(form))
    # Audio dicts are (waveform, rate) pairs; a batch of mixed forms keeps the caller's order.
    forms = [form for form, _ in cases]
    batch = model.encode([*forms, {"array": wave, "sampling_rate": 16000}])
    modality, _, items = model.calls[-1]  # the groups are embedded in the order they first appear
    assert modality == "audio" and items[0][1] == 16000 and items[0][0] is wave
    for i, form in enumerate(forms):
        np.testing.assert_array_equal(batch[i], model.encode(form))


@pytest.mark.parametrize("form, match", [  # a model that takes no video (tests/test_vlm_video.py: one that does)
    ({"video": "clip.mp4"}, "video input"),
    ({"array": np.zeros((2, 3, 8, 8)), "video_metadata": {}}, "video input"),
    ({"text": ["a", "b"]}, "a list under 'text'"),
    ({"image": [Picture(), Picture()]}, "several images in one input"),
    ({"sound": 1}, r"key\(s\) \['sound'\]"),
    ({}, "an empty dict"),
    ({"audio": "a.wav", "text": "a"}, "cannot embed audio and text as one input"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
     r"roles \['user', 'assistant'\]: only one user turn"),
    ([{"role": "system", "content": "x"}], r"roles \['system'\]"),
    ([{"role": "user", "content": [{"type": "image", "image": 1}, {"type": "image", "image": 2}]}],
     "several image parts"),
    ([{"role": "user", "content": [{"type": "video", "video": "a.mp4"}]}], "'video' content"),
    ([{"role": "user", "content": []}], "empty user turn"),
    ([{"role": "user", "content": "a"}, "not a message"], "must all be"),
])
def test_unsupported_forms_are_errors_naming_the_form(form, match):
    model = _recording()
    with pytest.raises(InvalidInputError, match=match) as info:
        model.encode(["fine", form])
    assert info.value.index == 1


def test_a_text_pair_is_named():
    with pytest.raises(InvalidInputError, match="a text pair") as info:
        _recording().encode([("a question", "an answer")])
    assert info.value.index == 0


def test_a_system_turn_needs_a_model_that_takes_instructions(minilm):
    conversation = [{"role": "system", "content": "Find it."}, {"role": "user", "content": "a cat"}]
    with pytest.raises(InvalidInputError, match="takes no task instructions"):
        minilm.encode(conversation)
    np.testing.assert_array_equal(minilm.encode(conversation[1:]), minilm.encode("a cat"))
    with pytest.raises(InvalidInputError, match="both give an instruction"):
        _recording().encode(conversation, task_instruction="Another.")


def test_an_error_in_a_group_names_the_callers_index(minilm):
    with pytest.raises(InvalidInputError, match=r"input\[2\]") as info:
        minilm.encode(["fine", {"text": "also fine"}, 3])
    assert info.value.index == 2


# -- similarity -------------------------------------------------------------------------------------------------------


def test_similarity_is_sentence_transformers_with_the_cards_metric(minilm, st_minilm):
    a, b = minilm.encode(TEXTS[:5]), minilm.encode(TEXTS[5:9])
    ref = st_minilm.similarity(st_minilm.encode(TEXTS[:5]), st_minilm.encode(TEXTS[5:9]))
    ours = minilm.similarity(a, b)
    assert isinstance(ours, np.ndarray) and ours.shape == (5, 4)
    np.testing.assert_allclose(ours, ref.numpy(), atol=1e-5)
    tensor = minilm.similarity(torch.from_numpy(a), torch.from_numpy(b))  # tensors in, a tensor out, as ST
    assert isinstance(tensor, torch.Tensor)
    np.testing.assert_allclose(tensor.numpy(), ref.numpy(), atol=1e-5)
    np.testing.assert_allclose(minilm.similarity(a[0], b), ours[:1], atol=1e-6)  # one vector is one row
    e = minilm.embed(TEXTS[:5])
    np.testing.assert_allclose(minilm.similarity(e, e), zoo.similarity(e, e), atol=1e-6)
    assert minilm.similarity_fn_name == "cosine"


def test_similarity_uses_a_dot_product_card():
    model = _recording(similarity="dot")
    a = model.encode(["a", "b"], normalize_embeddings=False)
    a = a * np.array([[2.0], [3.0]], dtype=np.float32)
    np.testing.assert_allclose(model.similarity(a, a), a @ a.T, rtol=1e-6)
    assert model.similarity_fn_name == "dot"


# -- thread safety ----------------------------------------------------------------------------------------------------


def test_encode_and_similarity_are_serialized_calls(minilm):
    assert {"encode", "similarity"} <= set(SERIALIZED_CALLS)
    for cls in (BaseEmbedder, type(minilm), Recording):
        assert getattr(cls.encode, "_serialized", False) and getattr(cls.similarity, "_serialized", False)

    class Overriding(Recording):
        def encode(self, *args, **kwargs):
            return super().encode(*args, **kwargs)

    assert getattr(Overriding.encode, "_serialized", False)  # a subclass's own encode is wrapped too


def test_encode_and_similarity_from_many_threads_are_bitwise_serial(minilm):
    texts = list(stdlib_sentences()[:12])
    long = " ".join(stdlib_sentences()[:80])
    base = minilm.encode(texts)
    calls = [
        lambda: minilm.encode(texts, batch_size=3),
        lambda: minilm.encode([long, texts[0]], truncate_dim=64),
        lambda: minilm.encode(texts[:5], precision="int8"),
        lambda: minilm.encode("one text", normalize_embeddings=True),
        lambda: minilm.embed(texts[5:], prompt="query: "),
        lambda: minilm.similarity(base, base[:3]),
        _raises(lambda: minilm.encode(texts[:2], output_value=None)),  # a typed error, every time
    ]
    _check_against_serial(calls)


# -- a vision-language model (tiny random weights of Qwen3-VL-Embedding's architecture) ----------------------------


def test_interleaved_dicts_and_conversations_on_a_vision_language_model(tiny_vlm_cache):  # noqa: F811
    model = zoo.load("qwen3-vl-embedding-2b")
    photo, text, task = _photo(), "a cup of coffee on a table", "Retrieve images that match the caption."
    own = {"image": photo, "text": text}

    def embed(items, **kwargs):
        return model.embed(items, normalize=model.card.normalize, **kwargs).vectors

    np.testing.assert_allclose(model.encode({"image": photo, "text": text}), embed([own], modality="interleaved")[0],
                               atol=1e-6)
    conversation = [{"role": "system", "content": task},
                    {"role": "user", "content": [{"type": "image", "image": photo}, {"type": "text", "text": text}]}]
    instructed = embed([own], modality="interleaved", task_instruction=task)[0]
    np.testing.assert_allclose(model.encode(conversation), instructed, atol=1e-6)
    assert not np.allclose(instructed, embed([own], modality="interleaved")[0], atol=1e-3)  # the system turn counts
    got = model.encode([text, photo, conversation])
    np.testing.assert_allclose(got[0], embed([text])[0], atol=1e-6)
    np.testing.assert_allclose(got[1], embed([photo])[0], atol=1e-6)
    np.testing.assert_allclose(got[2], instructed, atol=1e-6)
    with pytest.raises(InvalidInputError, match="builds its prompts itself"):
        model.encode([text], prompt="Represent this: ")


@pytest.mark.parametrize("with_normalize", [True, False])
def test_a_local_sentence_transformers_folder_encodes_as_sentence_transformers(minilm, tmp_path, with_normalize):
    """``local-dir:`` folders follow their own modules.json: normalized only where it ends with a Normalize module
    (the all-MiniLM-L6-v2 folder as shipped, and a copy with that module taken out)."""
    import json
    import shutil

    folder = tmp_path / "st-folder"
    shutil.copytree(minilm.resolved.path, folder)
    if not with_normalize:
        modules = json.loads((folder / "modules.json").read_text())
        kept = [m for m in modules if not m["type"].endswith("Normalize")]
        assert len(kept) == len(modules) - 1
        (folder / "modules.json").write_text(json.dumps(kept))
    ours = zoo.load(f"local-dir:{folder}")
    ref = st.SentenceTransformer(str(folder), device="cpu")
    texts = TEXTS[:6]
    got, want = ours.encode(texts), ref.encode(texts)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4) == with_normalize
    assert ours.card.normalize == with_normalize
