"""all-minilm-l6-v2 on its real packaged weights: parity with sentence-transformers, and the
behaviour of the embed call (order, empty input, bad input, truncation, determinism)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import zoo
from tests.support import stdlib_sentences


@pytest.fixture(scope="module")
def minilm():
    return zoo.load("all-minilm-l6-v2")


@pytest.fixture(scope="module")
def st_model(minilm):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    return sentence_transformers.SentenceTransformer(str(minilm.resolved.path), device="cpu")


def _rowwise_cos(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(1)


def test_loads_real_weights_offline_from_the_package(minilm):
    assert minilm.resolved.origin == "package"
    assert minilm.dim == 384 and minilm.space == "all-minilm-l6-v2"


def test_semantics_dog_puppy_stock_market(minilm):
    e = minilm.embed(["a dog", "a puppy", "the stock market"])
    s = zoo.similarity(e, e)
    assert s[0, 1] > s[0, 2] + 0.3


def test_parity_with_sentence_transformers_encode(minilm, st_model):
    texts = list(stdlib_sentences()[:300]) + ["a dog", "", "   ", "x " * 400]
    ours = minilm.embed(texts).vectors
    ref = st_model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    cos = _rowwise_cos(ours, ref)
    assert cos.min() >= 0.9999, (cos.argmin(), cos.min())


def test_rows_follow_input_order_whatever_the_batching(minilm):
    texts = list(stdlib_sentences()[:120])
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(texts))
    a = minilm.embed(texts).vectors
    b = minilm.embed([texts[i] for i in perm], batch_size=7).vectors
    assert _rowwise_cos(a[perm], b).min() >= 0.99999


def test_empty_list_gives_zero_rows(minilm):
    e = minilm.embed([])
    assert e.vectors.shape == (0, 384) and e.vectors.dtype == np.float32
    assert minilm.embed([], precision="ubinary").vectors.shape == (0, 48)


def test_empty_and_whitespace_strings_give_finite_unit_vectors(minilm):
    v = minilm.embed(["", " ", "\n\t"]).vectors
    assert np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "bad, index",
    [(["ok", None], 1), (["ok", "fine", 3], 2), ([["nested"], "ok"], 0), (["ok", b"bytes"], 1)],
)
def test_bad_items_name_their_index(minilm, bad, index):
    with pytest.raises(zoo.InvalidInputError, match=rf"input\[{index}\]") as info:
        minilm.embed(bad)
    assert info.value.index == index


def test_overlong_text_is_truncated_with_one_warning(minilm):
    long = "word " * 2000
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        e1 = minilm.embed([long, "short"])
        e2 = minilm.embed([long])
    assert e1.info["truncated"] == 1 and e2.info["truncated"] == 1
    trunc = [w for w in caught if "truncated" in str(w.message)]
    assert len(trunc) <= 1  # once per model instance (an earlier test may already have fired it)
    cut = minilm.embed(["word " * 254]).vectors  # 254 words + [CLS] [SEP] = the 256-token limit
    assert _rowwise_cos(e2.vectors, cut)[0] >= 0.99999


def test_no_truncation_raises_too_large_naming_index_and_limit(minilm):
    with pytest.raises(zoo.InputTooLargeError, match=r"input\[1\].*256") as info:
        minilm.embed(["short", "word " * 2000], truncate=False)
    assert info.value.limit == 256


def test_same_input_twice_gives_identical_bytes(minilm):
    texts = list(stdlib_sentences()[:40])
    assert minilm.embed(texts).vectors.tobytes() == minilm.embed(texts).vectors.tobytes()


def test_row_alone_equals_row_in_padded_batch(minilm):
    batch = ["tiny", "a considerably longer sentence that forces a lot of padding onto the short one " * 3]
    alone = minilm.embed(["tiny"]).vectors
    inside = minilm.embed(batch).vectors[:1]
    assert _rowwise_cos(alone, inside)[0] >= 0.99999


def test_instruction_on_a_model_without_instructions_warns_once_and_is_ignored(minilm):
    m = zoo.load("all-minilm-l6-v2")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = m.embed(["a dog"], task_instruction="Retrieve similar sentences")
        m.embed(["a dog"], task_instruction="Retrieve similar sentences")
    assert sum("takes no task instructions" in str(w.message) for w in caught) == 1
    assert a.vectors.tobytes() == m.embed(["a dog"]).vectors.tobytes()


def test_prompt_and_instruction_together_is_an_error(minilm):
    with pytest.raises(zoo.InvalidInputError, match="not both"):
        minilm.embed(["x"], task_instruction="t", prompt_name="query")
    with pytest.raises(zoo.InvalidInputError, match="no prompt 'query'"):
        minilm.embed(["x"], prompt_name="query")


def test_matryoshka_refused_unless_forced(minilm):
    with pytest.raises(zoo.InvalidInputError, match="force_dim"):
        minilm.embed(["x"], dim=128)
    e = minilm.embed(["a dog", "a cat"], dim=128, force_dim=True)
    full = minilm.embed(["a dog", "a cat"]).vectors[:, :128]
    assert e.vectors.shape == (2, 128)
    np.testing.assert_allclose(e.vectors, full / np.linalg.norm(full, axis=1, keepdims=True), atol=1e-6)


@pytest.mark.parametrize("bad", [{"dim": 0}, {"dim": 999}, {"precision": "int4"}, {"batch_size": 0}])
def test_bad_options_fail_before_any_work(minilm, bad):
    with pytest.raises(zoo.InvalidInputError):
        minilm.embed(["x"], **bad)


def test_quantized_outputs_match_sentence_transformers(minilm):
    st_quant = pytest.importorskip("sentence_transformers.quantization")
    texts = list(stdlib_sentences()[:200])
    full = minilm.embed(texts).vectors
    for precision in ("int8", "uint8", "binary", "ubinary"):
        ours = minilm.embed(texts, precision=precision)
        ref = st_quant.quantize_embeddings(full, precision=precision)
        assert ours.vectors.dtype == ref.dtype, precision
        np.testing.assert_array_equal(ours.vectors, ref, err_msg=precision)
    assert minilm.embed(texts[:3], precision="float16").vectors.dtype == np.float16
    with pytest.raises(zoo.InvalidInputError, match="calibration"):
        minilm.embed(["one text"], precision="int8")
    one = minilm.embed(["one text"], precision="int8", calibration=full)
    np.testing.assert_array_equal(one.vectors, st_quant.quantize_embeddings(
        minilm.embed(["one text"]).vectors, precision="int8", calibration_embeddings=full))


def test_similarity_refuses_two_spaces(minilm):
    a = minilm.embed(["x"])
    b = zoo.Embeddings(vectors=a.vectors, space="other-space", model="other", modality="text", normalized=True)
    with pytest.raises(zoo.SpaceMismatchError, match="other-space"):
        zoo.similarity(a, b)


def test_stream_yields_chunks_equal_to_one_embed_call(minilm):
    texts = list(stdlib_sentences()[:50])
    chunks = list(minilm.stream(iter(texts), chunk_size=16))
    assert [len(c) for c in chunks] == [16, 16, 16, 2]
    whole = minilm.embed(texts).vectors
    assert _rowwise_cos(np.concatenate([c.vectors for c in chunks]), whole).min() >= 0.99999
    with pytest.raises(zoo.InvalidInputError, match="chunk_size"):
        next(minilm.stream(texts, chunk_size=0))
