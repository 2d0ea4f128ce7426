"""Embeddings as a familiar container (rows, iteration, concatenation, files, torch) and similarity of quantized
embeddings (int8/uint8 as integers, binary/ubinary by Hamming similarity)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import zoo
from zoo.embeddings import Embeddings, quantize, similarity
from zoo.errors import InvalidInputError, SpaceMismatchError

PRECISIONS = ("float32", "float16", "int8", "uint8", "binary", "ubinary")


def _floats(n: int = 6, dim: int = 20, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def _emb(vectors=None, *, space: str = "space-a", precision: str = "float32", dim: int = 0, **info) -> Embeddings:
    vectors = _floats() if vectors is None else vectors
    return Embeddings(vectors=vectors, space=space, model=f"model-of-{space}", modality="text", normalized=False,
                      precision=precision, dim=dim, info=info)


def _quantized(precision: str, floats: np.ndarray, *, space: str = "space-a", calibration=None) -> Embeddings:
    return _emb(quantize(floats, precision, calibration=calibration), space=space, precision=precision,
                dim=floats.shape[1], similarity="cosine")


# -- rows -------------------------------------------------------------------------------------------------------------


def test_rows_are_embeddings_of_the_same_space():
    weights = np.arange(12.0).reshape(6, 2)
    e = _emb(similarity="cosine", truncated=2, expert_weights=weights, experts=["a", "b"])
    for key, rows in [(slice(1, 3), [1, 2]), ([0, 2], [0, 2]), (np.array([4, 1]), [4, 1]), (0, [0]), (-1, [5]),
                      (np.arange(6) % 2 == 0, [0, 2, 4]), (slice(None, None, -2), [5, 3, 1]), ([], [])]:
        part = e[key]
        assert isinstance(part, Embeddings) and len(part) == len(rows)
        np.testing.assert_array_equal(part.vectors, e.vectors[rows])
        assert (part.space, part.model, part.precision, part.dim) == (e.space, e.model, e.precision, e.dim)
        np.testing.assert_array_equal(part.info["expert_weights"], weights[rows])  # per-row facts follow the rows
        assert part.info["similarity"] == "cosine" and part.info["experts"] == ["a", "b"]
        assert "truncated" not in part.info  # a count about the whole call
    one = e[3]
    assert one.shape == (1, 20)  # an int gives a 1-row Embeddings, not a bare vector
    np.testing.assert_allclose(zoo.similarity(one, e), zoo.similarity(e, e)[3:4], atol=1e-6)
    e[1:3].vectors[:] = 0  # rows are a copy
    assert e.vectors[1].any()


@pytest.mark.parametrize("key", [6, -7])
def test_a_row_out_of_range_is_an_index_error(key):
    with pytest.raises(IndexError):
        _emb()[key]


@pytest.mark.parametrize("key", ["0", 1.5, None, True, {"a": 1}, [[0, 1]]])
def test_a_key_that_picks_no_rows_is_refused(key):
    with pytest.raises(InvalidInputError, match="Embeddings rows"):
        _emb()[key]


def test_iteration_and_len():
    e = _emb()
    rows = list(e)
    assert len(e) == len(rows) == 6
    assert all(isinstance(r, Embeddings) and r.shape == (1, 20) for r in rows)
    np.testing.assert_array_equal(np.concatenate([r.vectors for r in rows]), e.vectors)


# -- concatenation ----------------------------------------------------------------------------------------------------


def test_concat_and_plus_join_rows_of_one_space():
    a, b = _emb(_floats(2), expert_weights=np.ones((2, 3))), _emb(_floats(3, seed=1), expert_weights=np.zeros((3, 3)))
    for joined in (Embeddings.concat([a, b]), zoo.Embeddings.concat((a, b)), a + b):
        assert len(joined) == 5 and joined.space == "space-a" and joined.model == "model-of-space-a"
        np.testing.assert_array_equal(joined.vectors, np.concatenate([a.vectors, b.vectors]))
        np.testing.assert_array_equal(joined.info["expert_weights"], np.concatenate([np.ones((2, 3)),
                                                                                     np.zeros((3, 3))]))
    assert len(Embeddings.concat([a])) == 2
    c = Embeddings(vectors=_floats(1), space="space-a", model="another-model", modality="image", normalized=True)
    mixed = a + c
    assert mixed.model == "model-of-space-a+another-model" and mixed.modality == "mixed" and not mixed.normalized


def test_concat_refuses_two_spaces_precisions_or_dims():
    a = _emb()
    with pytest.raises(SpaceMismatchError, match="space 'space-a'.*space 'space-b'"):
        a + _emb(space="space-b")
    with pytest.raises(SpaceMismatchError):
        Embeddings.concat([a, a, _emb(space="space-b")])
    with pytest.raises(InvalidInputError, match="precision 'float32' with 'int8'"):
        a + _quantized("int8", _floats())
    with pytest.raises(InvalidInputError, match="dim 20 with dim 10"):
        a + _emb(_floats(dim=10))
    for bad in ([], a, [a, "x"], None):
        with pytest.raises(InvalidInputError):
            Embeddings.concat(bad)
    with pytest.raises(TypeError):
        a + 1  # noqa: B018


# -- files and torch --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", PRECISIONS)
def test_save_and_load_keep_vectors_space_and_precision(tmp_path, precision):
    floats = _floats(5, 21)
    if precision in ("float32", "float16"):
        e = _emb(floats.astype(precision), precision=precision, similarity="dot", prompt="none",
                 expert_weights=np.arange(10.0).reshape(5, 2), unsaveable=object())
    else:
        e = _quantized(precision, floats)
    path = tmp_path / "vectors.safetensors"
    e.save(path)
    back = Embeddings.load(path)
    assert back.vectors.dtype == e.vectors.dtype
    np.testing.assert_array_equal(back.vectors, e.vectors)
    for name in ("space", "model", "modality", "normalized", "precision", "dim"):
        assert getattr(back, name) == getattr(e, name), name
    assert back.info["similarity"] == e.info["similarity"]
    if precision == "float32":
        np.testing.assert_array_equal(back.info["expert_weights"], e.info["expert_weights"])
        assert "unsaveable" not in back.info
    np.testing.assert_allclose(similarity(back, back), similarity(e, e))


def test_a_model_result_saves_and_loads(tmp_path):
    m = zoo.load("all-minilm-l6-v2")
    e = m.embed(["a dog", "a puppy"])
    e.save(tmp_path / "e.safetensors")
    back = Embeddings.load(str(tmp_path / "e.safetensors"))
    assert back.space == "all-minilm-l6-v2" and back.normalized
    np.testing.assert_array_equal(back.vectors, e.vectors)


def test_loading_a_file_that_is_not_saved_embeddings(tmp_path):
    from safetensors.numpy import save_file

    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(InvalidInputError, match="not a readable safetensors file"):
        Embeddings.load(junk)
    plain = tmp_path / "plain.safetensors"
    save_file({"vectors": _floats()}, str(plain))
    with pytest.raises(InvalidInputError, match="not a saved Embeddings file"):
        Embeddings.load(plain)
    e = _quantized("binary", _floats())
    meta = {"format": "zoo.embeddings/1", "space": "s", "model": "m", "modality": "text", "normalized": "false",
            "precision": "binary", "dim": "20", "info": json.dumps({})}
    lying = tmp_path / "lying.safetensors"
    save_file({"vectors": e.vectors.astype(np.uint8)}, str(lying), metadata=meta)  # ubinary codes called binary
    with pytest.raises(InvalidInputError, match="do not fit precision 'binary'"):
        Embeddings.load(lying)
    save_file({"vectors": e.vectors}, str(lying), metadata=meta | {"dim": "40"})
    with pytest.raises(InvalidInputError, match="needs 5"):
        Embeddings.load(lying)
    with pytest.raises(FileNotFoundError):
        Embeddings.load(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("precision", PRECISIONS)
def test_to_torch(precision):
    e = _quantized(precision, _floats()) if precision not in ("float32", "float16") else \
        _emb(_floats().astype(precision), precision=precision)
    t = e.to_torch()
    assert isinstance(t, torch.Tensor) and str(t.dtype) == f"torch.{e.vectors.dtype}"
    np.testing.assert_array_equal(t.numpy(), e.vectors)
    t.zero_()
    assert e.vectors.any()  # a copy


# -- quantized similarity ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["int8", "uint8"])
def test_int8_and_uint8_compare_as_integers(precision):
    floats = _floats(8, 32)
    a, b = _quantized(precision, floats[:3], calibration=floats), _quantized(precision, floats[3:], calibration=floats)
    codes_a, codes_b = a.vectors.astype(np.float64), b.vectors.astype(np.float64)
    cosine = (codes_a @ codes_b.T) / np.outer(np.linalg.norm(codes_a, axis=1), np.linalg.norm(codes_b, axis=1))
    np.testing.assert_allclose(similarity(a, b), cosine, atol=1e-5)
    np.testing.assert_allclose(similarity(a, b, metric="dot"), codes_a @ codes_b.T, rtol=1e-6)
    assert similarity(a, b).stitch is None


@pytest.mark.parametrize("precision", ["binary", "ubinary"])
def test_binary_codes_compare_by_hamming_similarity(precision):
    floats = _floats(7, 21)  # 21 bits: the last byte is padded
    a, b = _quantized(precision, floats[:3]), _quantized(precision, floats[3:])
    signs_a, signs_b = floats[:3] > 0, floats[3:] > 0
    hamming = (signs_a[:, None, :] != signs_b[None, :, :]).sum(-1)
    np.testing.assert_allclose(similarity(a, b), 1 - 2 * hamming / 21, atol=1e-6)
    np.testing.assert_allclose(similarity(a, b, metric="hamming"), 1 - 2 * hamming / 21, atol=1e-6)
    np.testing.assert_allclose(np.diag(similarity(a, a)), 1.0)
    np.testing.assert_allclose(similarity(_quantized(precision, -floats[:1]), _quantized(precision, floats[:1])), -1)


def test_binary_and_ubinary_give_the_same_similarity():
    floats = _floats(5, 40)
    np.testing.assert_array_equal(similarity(_quantized("binary", floats), _quantized("binary", floats)),
                                  similarity(_quantized("ubinary", floats), _quantized("ubinary", floats)))


def test_quantized_model_vectors_keep_their_ranking():
    m = zoo.load("all-minilm-l6-v2")
    texts = ["a dog", "a puppy", "the stock market", "a kitten", "interest rates rose", "a cat"]
    calibration = m.embed(texts).vectors
    for precision in ("int8", "uint8", "binary", "ubinary"):
        e = m.embed(texts, precision=precision, calibration=calibration)
        s = zoo.similarity(e[:1], e)  # "a dog" against every text
        assert s[0, 1] > s[0, 2] and s[0, 1] > s[0, 4], precision
        assert m.similarity(e[:1], e).shape == (1, 6)


def test_mixing_precisions_is_refused():
    floats = _floats()
    f32, f16 = _emb(floats), _emb(floats.astype(np.float16), precision="float16")
    i8, u8, b1 = _quantized("int8", floats), _quantized("uint8", floats), _quantized("binary", floats)
    np.testing.assert_allclose(similarity(f32, f16), similarity(f32, f32), atol=1e-3)  # both float: as before
    for a, b, match in [(f32, i8, "precision 'float32' .a. with precision 'int8' .b."),
                        (i8, u8, "precision 'int8' .a. with precision 'uint8' .b."),
                        (b1, _quantized("ubinary", floats), "precision 'binary' .a. with precision 'ubinary'"),
                        (i8, floats, r"cannot compare int8 Embeddings with a plain array \(b\)"),
                        (floats, b1, r"cannot compare binary Embeddings with a plain array \(a\)")]:
        with pytest.raises(InvalidInputError, match=match):
            similarity(a, b)
    with pytest.raises(SpaceMismatchError, match="quantized vectors compare only within one space"):
        similarity(i8, _quantized("int8", floats, space="space-b"))
    with pytest.raises(InvalidInputError, match="Hamming similarity"):
        similarity(b1, b1, metric="cosine")
    with pytest.raises(InvalidInputError, match="'hamming' is for binary"):
        similarity(i8, i8, metric="hamming")
    with pytest.raises(InvalidInputError, match="'hamming' is for binary"):
        similarity(f32, f32, metric="hamming")
    with pytest.raises(InvalidInputError, match="dimension mismatch"):
        similarity(i8, _quantized("int8", _floats(dim=10)))
    with pytest.raises(InvalidInputError, match="metric must be"):
        similarity(f32, f32, metric="euclidean")
