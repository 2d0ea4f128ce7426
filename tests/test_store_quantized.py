"""zoo.store with quantized vectors: binary collections searched by Hamming distance and rescored with the float
query (against the bits as +-1, or int8 / float rescore vectors), int8 collections scanned with the float query,
each checked against a plain numpy reimplementation; filters, the checksum over the stored codes, and the
precision checks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lancedb")

import zoo.store  # noqa: E402
from zoo.embeddings import Embeddings, quantize  # noqa: E402
from zoo.errors import InvalidInputError  # noqa: E402
from zoo.store import CollectionCorruptError, VectorStore, hamming_topk  # noqa: E402

DIM = 48


def _emb(vectors: np.ndarray, precision: str = "float32") -> Embeddings:
    if precision in ("float32", "float16"):
        vectors = np.asarray(vectors, dtype=np.float32)
    return Embeddings(vectors, space="space-a", model="model-a", modality="text", normalized=False,
                      precision=precision, dim=DIM)


def _data(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((20, DIM))[rng.integers(0, 20, n)] + 0.8 * rng.standard_normal((n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _unit(q: np.ndarray) -> np.ndarray:
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(params=["faiss", "numpy"])
def kernel(request, monkeypatch):
    """Binary searches run once with faiss's Hamming kernel and once with numpy's."""
    if request.param == "faiss":
        pytest.importorskip("faiss")
    else:
        monkeypatch.setattr(zoo.store.kernels, "_faiss", lambda: None)
    return request.param


def _reference(q: np.ndarray, x: np.ndarray, k: int, c: int, rescore: np.ndarray | None):
    """sentence-transformers' recipe in plain numpy: Hamming top-c on the sign bits (ties by id), rescored with
    the float query against ``rescore`` rows or the bits as +-1 (divided by sqrt(dim)); top-k (ties by id)."""
    qs, xs = q > 0, x > 0
    hamming = (qs[:, None, :] != xs[None, :, :]).sum(-1)
    ids = np.arange(len(x))
    out_ids, out_scores = [], []
    for i in range(len(q)):
        cand = np.lexsort((ids, hamming[i]))[:c]
        vecs = rescore[cand].astype(np.float64) if rescore is not None else np.where(xs[cand], 1.0, -1.0)
        scores = vecs @ _unit(q)[i].astype(np.float64) / (1 if rescore is not None else math.sqrt(DIM))
        best = np.lexsort((cand, -scores))[:k]
        out_ids.append(cand[best].tolist())
        out_scores.append(scores[best])
    return out_ids, out_scores


@pytest.mark.parametrize("precision", ["ubinary", "binary"])
def test_binary_search_is_hamming_then_rescoring_with_the_float_query(tmp_path, precision, kernel):
    x, q = _data(600), _data(7, seed=1) + 0.01
    coll = VectorStore(tmp_path).collection("bits")
    coll.add(_emb(quantize(x, precision), precision), [f"i{i}" for i in range(600)], [{"n": i} for i in range(600)])
    assert coll.precision == "binary" and coll.dim == DIM and len(coll) == 600
    result = coll.search(_emb(q), k=5)
    assert not result.exact  # candidates by Hamming distance: approximate
    want_ids, want_scores = _reference(q, x, 5, 5 * coll.rescore_multiplier, None)
    assert [[h.id for h in hits] for hits in result] == want_ids
    for hits, scores in zip(result, want_scores, strict=True):
        np.testing.assert_allclose([h.score for h in hits], scores, atol=1e-5)
        assert all(h.item == f"i{h.id}" and h.metadata == {"n": h.id} for h in hits)
    wide = coll.search(_emb(q), k=5, rescore_multiplier=30)
    assert [[h.id for h in hits] for hits in wide] == _reference(q, x, 5, 150, None)[0]
    everything = coll.search(_emb(q), k=5, exact=True)  # every row rescored
    assert everything.exact and [[h.id for h in hits] for hits in everything] == _reference(q, x, 5, 600, None)[0]
    assert [hits[0].id for hits in coll.search(_emb(x[:20]), k=1)] == list(range(20))  # a row finds itself


@pytest.mark.parametrize("kind", ["int8", "float32"])
def test_binary_search_rescores_with_rescore_vectors(tmp_path, kind, kernel):
    x, q = _data(800, seed=2), _data(6, seed=3)
    extra = quantize(x, "int8") if kind == "int8" else x
    coll = VectorStore(tmp_path).collection("rescored")
    coll.add(_emb(quantize(x, "ubinary"), "ubinary"), [str(i) for i in range(800)], rescore=_emb(extra, kind))
    result = coll.search(_emb(q), k=8, rescore_multiplier=6)
    want_ids, want_scores = _reference(q, x, 8, 48, extra)
    assert [[h.id for h in hits] for hits in result] == want_ids
    for hits, scores in zip(result, want_scores, strict=True):
        np.testing.assert_allclose([h.score for h in hits], scores, rtol=1e-5, atol=1e-4)
    if kind == "float32":  # enough candidates: the float top-k, with its cosines
        full = coll.search(_emb(q), k=8, rescore_multiplier=100)
        exact = _unit(q) @ x.T
        assert [[h.id for h in hits] for hits in full] == [np.argsort(-row, kind="stable")[:8].tolist()
                                                            for row in exact]
    with pytest.raises(InvalidInputError, match="rescore"):  # every add of the collection brings them
        coll.add(_emb(quantize(x[:2], "ubinary"), "ubinary"), ["a", "b"])


def test_int8_collections_are_scanned_with_the_float_query(tmp_path):
    x, q = _data(500, seed=4), _data(5, seed=5)
    codes = quantize(x, "int8")
    coll = VectorStore(tmp_path).collection("codes")
    coll.add(_emb(codes, "int8"), [str(i) for i in range(500)])
    unsigned = quantize(x[:50], "uint8", calibration=x)  # uint8 codes are kept as the int8 ones
    assert coll.add(_emb(unsigned, "uint8"), [f"u{i}" for i in range(50)]) == list(range(500, 550))
    stored = np.concatenate([codes, (unsigned.astype(np.int16) - 128).astype(np.int8)]).astype(np.float64)
    result = coll.search(_emb(q), k=6)
    assert result.exact and coll.precision == "int8"
    scores = _unit(q).astype(np.float64) @ stored.T
    for hits, row in zip(result, scores, strict=True):
        assert [h.id for h in hits] == np.lexsort((np.arange(550), -row))[:6].tolist()
        np.testing.assert_allclose([h.score for h in hits], row[[h.id for h in hits]], rtol=1e-5)
    with pytest.raises(InvalidInputError, match="exactly"):
        coll.search(_emb(q), exact=False)


def test_filters_apply_to_quantized_searches(tmp_path, kernel):
    x, q = _data(400, seed=6), _data(4, seed=7)
    store = VectorStore(tmp_path)
    bits, codes = store.collection("bits"), store.collection("codes")
    metadata = [{"part": i % 5} for i in range(400)]
    bits.add(_emb(quantize(x, "ubinary"), "ubinary"), [str(i) for i in range(400)], metadata)
    codes.add(_emb(quantize(x, "int8"), "int8"), [str(i) for i in range(400)], metadata)
    keep = np.array([i for i in range(400) if i % 5 == 2])
    got = bits.search(_emb(q), k=4, where="part = 2")
    want = _reference(q, x[keep], 4, 16, None)[0]
    assert [[h.id for h in hits] for hits in got] == [keep[w].tolist() for w in want]
    for coll in (bits, codes):
        for exact in (None, True):
            if coll is codes and exact is None:
                continue
            hits = coll.search(_emb(q), k=10, where="part = 2 AND id < 30", exact=exact)
            assert all(sorted(h.id for h in row) == [2, 7, 12, 17, 22, 27] for row in hits)


def test_wrong_precisions_and_options_are_refused(tmp_path):
    x = _data(300)
    store = VectorStore(tmp_path)
    floats, bits = store.collection("floats"), store.collection("bits")
    floats.add(_emb(x), [str(i) for i in range(300)])
    bits.add(_emb(quantize(x, "ubinary"), "ubinary"), [str(i) for i in range(300)])
    codes = quantize(x, "int8")
    cases = [
        (lambda: floats.add(_emb(quantize(x[:2], "ubinary"), "ubinary"), ["a", "b"]), "stores float32"),
        (lambda: bits.add(_emb(x[:2]), ["a", "b"]), "stores binary"),
        (lambda: bits.add(_emb(codes[:2], "int8"), ["a", "b"]), "stores binary"),
        (lambda: floats.add(_emb(x[:2]), ["a", "b"], rescore=_emb(codes[:2], "int8")), "binary / ubinary"),
        (lambda: store.collection("new").add(_emb(quantize(x[:2], "ubinary"), "ubinary"), ["a", "b"],
                                             rescore=_emb(codes[:3], "int8")), "rescore"),
        (lambda: store.collection("new").add(Embeddings(quantize(x[:2], "ubinary"), space="space-a", model="m",
                                                        modality="text", normalized=False, precision="ubinary"),
                                             ["a", "b"]), "pack into"),  # dim left at the packed width
        (lambda: store.collection("new").add(_emb(codes[:2].astype(np.float32), "int8"), ["a", "b"]),
         "integer codes"),
        (lambda: bits.create_index(), "Hamming"),
        (lambda: bits.search(_emb(quantize(x[:1], "ubinary"), "ubinary")), "float query"),
        (lambda: bits.search(_emb(x[:1]), rescore_multiplier=0), "rescore_multiplier"),
    ]
    for call, message in cases:
        with pytest.raises(InvalidInputError, match=message):
            call()
    assert len(floats) == 300 and len(bits) == 300 and "new" not in store.collections()


def test_the_checksum_covers_the_stored_bits(tmp_path):
    x = _data(60, seed=8)
    packed = quantize(x, "ubinary")
    coll = VectorStore(tmp_path).collection("bits")
    coll.add(_emb(packed, "ubinary"), [f"item-{i:02d}" for i in range(60)])
    data_file = next((Path(tmp_path) / "bits.lance" / "data").glob("*.lance"))
    data = data_file.read_bytes()
    row = packed[9].tobytes()
    assert data.count(row) == 1
    flipped = bytes([row[0] ^ 1]) + row[1:]
    data_file.write_bytes(data.replace(row, flipped))
    with pytest.raises(CollectionCorruptError, match="'bits'") as info:
        VectorStore(tmp_path).collection("bits").search(_emb(x[:1]), k=1)
    assert info.value.ids == [9]


@pytest.mark.parametrize(("n", "m", "c", "nbytes", "threads"),
                         [(1000, 3, 7, 45, 1), (140_000, 4, 40, 16, 2), (70_000, 2, 5000, 24, 1), (10, 4, 20, 8, 1),
                          (9000, 1, 1, 5, 1)])
def test_hamming_topk_matches_brute_force(monkeypatch, kernel, n, m, c, nbytes, threads):
    monkeypatch.setattr(zoo.store.kernels, "_threads", lambda: threads)
    rng = np.random.default_rng(n)
    packed = rng.integers(0, 256, (n, nbytes), dtype=np.uint8)
    packed[5:60] = packed[4]  # many rows at the same distance: ties go to the lower position
    queries = rng.integers(0, 256, (m, nbytes), dtype=np.uint8)
    queries[0] = packed[4]
    pos, dist = hamming_topk(queries, packed, c)
    brute = np.stack([np.unpackbits(packed ^ qrow, axis=1).sum(1) for qrow in queries])
    want = np.stack([np.lexsort((np.arange(n), row))[:min(c, n)] for row in brute])
    assert pos.tolist() == want.tolist()
    assert dist.tolist() == np.take_along_axis(brute, want, axis=1).tolist()
