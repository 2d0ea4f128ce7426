"""``zoo verify``: published examples on the cards, run on the weights at hand.

- all-MiniLM-L6-v2's real weights reproduce the sentence-transformers quickstart's printed matrix;
- on tiny fixtures, an example whose expected numbers come from the reference library's own code
  (the Qwen3-Embedding README's transformers recipe; open_clip's README recipe) passes, and the
  same example fails with a broken prompt or a broken pooling;
- media inputs are fetched from their address once, checked against their pinned sha256, and
  never fetched while downloads are off.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

import zoo
from tests.fixtures.tiny_vision import sample_photos, tiny_vision_cache  # noqa: F401
from tests.test_clip import reference as open_clip_reference
from zoo.cli import main
from zoo.errors import IntegrityError
from zoo.examples import Example, example_from
from zoo.verify import last_report, verify

QWEN3 = "qwen3-embedding-0.6b"
TASK = "Given a web search query, retrieve relevant passages that answer the query"


def test_minilm_reproduces_its_published_example_on_the_real_weights(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    assert main(["verify", "all-minilm-l6-v2"]) == 0
    out = capsys.readouterr().out
    assert "0.6660 (published 0.6660)" in out and "[pass]" in out
    report = last_report("all-minilm-l6-v2")
    assert report.status == "pass" and report.results[0].max_difference < 5e-4
    assert report.card_sha256 == zoo.card("all-minilm-l6-v2").content_sha256()
    from zoo.demo import evidence_text

    shown = evidence_text(zoo.card("all-minilm-l6-v2"))
    assert "Last verification**: pass" in shown and "published-example" in shown


# -- a text example on a tiny Qwen3-Embedding: the README's own transformers recipe --------------------------------


def _readme_recipe(folder: Path, queries: list[str], documents: list[str]) -> np.ndarray:
    """The Qwen3-Embedding README's Transformers block, as printed there, on the fixture's weights."""
    import torch
    import torch.nn.functional as F  # noqa: N812
    from transformers import AutoModel, AutoTokenizer

    def last_token_pool(last_hidden_states, attention_mask):
        left_padding = attention_mask[:, -1].sum() == attention_mask.shape[0]
        if left_padding:
            return last_hidden_states[:, -1]
        sequence_lengths = attention_mask.sum(dim=1) - 1
        return last_hidden_states[torch.arange(last_hidden_states.shape[0]), sequence_lengths]

    input_texts = [f"Instruct: {TASK}\nQuery:{q}" for q in queries] + documents
    tokenizer = AutoTokenizer.from_pretrained(str(folder), padding_side="left")
    model = AutoModel.from_pretrained(str(folder)).eval()
    batch = tokenizer(input_texts, padding=True, truncation=True, max_length=8192, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**batch)
    embeddings = F.normalize(last_token_pool(outputs.last_hidden_state, batch["attention_mask"]), p=2, dim=1)
    return (embeddings[: len(queries)] @ embeddings[len(queries):].T).numpy()


@pytest.fixture(scope="module")
def qwen3_example(hf_text_cache) -> tuple[zoo.ModelCard, Example]:
    card = zoo.card(QWEN3)
    published = card.examples[0]
    queries, documents = list(published.queries.items), list(published.documents.items)
    expected = _readme_recipe(hf_text_cache.snapshot(QWEN3), queries, documents)
    example = dataclasses.replace(published, expected=tuple(map(tuple, expected.tolist())), tolerance=1e-4)
    return card, example


def _with(card, example, **changes):
    return dataclasses.replace(card, examples=(example,), **changes)


def test_verify_passes_with_the_cards_prompt_and_pooling(qwen3_example, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    card, example = qwen3_example
    report = verify(_with(card, example))
    assert report.status == "pass", report.results
    assert report.results[0].max_difference < 1e-5


def test_verify_fails_on_a_broken_prompt(qwen3_example, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    card, example = qwen3_example
    spaced = _with(card, example, instruction_template="Instruct: {instruction}\nQuery: {input}")  # one space more
    (result,) = verify(spaced).results
    assert result.status == "fail" and result.max_difference > 10 * example.tolerance


def test_verify_fails_on_a_broken_pooling(qwen3_example, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    card, example = qwen3_example
    (result,) = verify(_with(card, example, pooling="mean")).results
    assert result.status == "fail" and result.max_difference > 10 * example.tolerance


# -- an image example served over HTTP: open_clip's README recipe ---------------------------------------------------


@pytest.fixture()
def served_photo(tmp_path):
    """A PNG photo served on loopback; yields (address, bytes)."""
    from PIL import Image

    root = tmp_path / "www"
    root.mkdir()
    Image.fromarray(sample_photos()["coffee"]).save(root / "coffee.png")
    data = (root / "coffee.png").read_bytes()
    handler = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/coffee.png", data
    finally:
        server.shutdown()


def _clip_example(address: str, sha: str, expected) -> Example:
    return example_from({
        "title": "label probabilities", "source": "https://github.com/mlfoundations/open_clip", "printed": "...",
        "score": "softmax", "scale": 100.0, "expected": expected, "tolerance": 1e-4, "inputs": {address: sha},
        "queries": {"image": [address]}, "documents": {"text": ["a diagram", "a dog", "a cat"]},
    }, "test")


def test_image_example_is_fetched_checked_and_scored_like_open_clip(served_photo, tiny_vision, tmp_path, monkeypatch):
    import torch
    from PIL import Image

    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "home"))
    address, data = served_photo
    name = "clip-vit-b-32-openai"
    model, preprocess, tokenizer = open_clip_reference(tiny_vision.snapshot(name), quick_gelu=True)
    with torch.no_grad():  # open_clip's README recipe, verbatim in substance
        image = model.encode_image(preprocess(Image.fromarray(sample_photos()["coffee"])).unsqueeze(0))
        text = model.encode_text(tokenizer(["a diagram", "a dog", "a cat"]))
        image, text = image / image.norm(dim=-1, keepdim=True), text / text.norm(dim=-1, keepdim=True)
        probs = (100.0 * image @ text.T).softmax(dim=-1).numpy()
    sha = hashlib.sha256(data).hexdigest()
    card = zoo.card(name)
    for var in ("ZOO_OFFLINE", "HF_HUB_OFFLINE"):  # downloads on; the weights are already in the cache
        monkeypatch.delenv(var, raising=False)
    report = verify(dataclasses.replace(card, examples=(_clip_example(address, sha, probs.tolist()),)),
                    download=True)
    assert report.status == "pass", report.results
    fetched = list((tmp_path / "home" / "examples").glob(f"{sha}*"))
    assert len(fetched) == 1 and fetched[0].read_bytes() == data

    wrong = dataclasses.replace(card, examples=(_clip_example(address + "?x", "0" * 64, probs.tolist()),))
    with pytest.raises(IntegrityError, match="not the file the card pins"):
        verify(wrong, download=True)

    other = dataclasses.replace(card, examples=(_clip_example(address + "?y", "", probs.tolist()),))
    (skipped,) = verify(other).results  # downloads off: the input is not fetched, the example is skipped
    assert skipped.status == "skipped" and "not fetched" in skipped.reason


def test_verify_all_cached_skips_what_is_not_here(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    code = main(["verify", "--all-cached"])
    out = capsys.readouterr().out
    assert "all-minilm-l6-v2: pass" in out  # packaged weights are always here
    assert "qwen3-embedding-0.6b: skipped (weights not cached" in out
    assert "jina-embeddings-v2-base-code: skipped" in out
    assert code == 0
