"""zoo-bind-mini on its real bundled weights: every modality lands in all-MiniLM-L6-v2's space, and the card's
recall figures are what the evaluation recomputes."""

from __future__ import annotations

import numpy as np
import pytest

import zoo
from zoo import gallery
from zoo.adapters.bind import conse, label_texts
from zoo.shapes import make_dataset


@pytest.fixture(scope="module")
def bind():
    return zoo.load("zoo-bind-mini")


@pytest.fixture(scope="module")
def figures(bind):
    return bind.card.options["evaluation"]


def _recall_at_1(queries: np.ndarray, gallery_vectors: np.ndarray, hits: np.ndarray) -> float:
    best = np.argmax(queries @ gallery_vectors.T, axis=1)
    return float(np.mean(hits[np.arange(len(queries)), best]))


def test_text_route_is_the_text_model_itself(bind):
    texts = ["a dog", "def add(a, b): return a + b"]
    ours = bind.embed(texts)
    ref = zoo.load("all-minilm-l6-v2").embed(texts)
    assert ours.space == ref.space == "all-minilm-l6-v2"
    assert np.allclose(ours.vectors, ref.vectors, atol=1e-6)
    assert bind.embed(texts[1:], modality="code").info["experts"] == ["minilm"]


@pytest.mark.parametrize("modality", [None, "text", "code"])
def test_truncate_false_reaches_the_text_expert(bind, modality):
    """Found by bench/soak.py: the composite used to drop ``truncate=False`` and cut an over-long text silently."""
    long_text = "the composite passes the caller's truncation choice to its expert " * 60
    with pytest.raises(zoo.InputTooLargeError, match=r"input\[1\].*truncate=True") as info:
        bind.embed(["short", long_text], modality=modality, truncate=False)
    assert info.value.index == 1
    cut = bind.embed([long_text], modality=modality)  # truncate=True, the default, still cuts it
    direct = bind.model("all-minilm-l6-v2").embed([long_text])
    assert np.allclose(cut.vectors, direct.vectors, atol=1e-6)


def test_text_to_image_recall_is_the_cards_figure(bind, figures):
    photos = gallery.photos()
    images = bind.embed([p.path for p in photos], modality="image")
    assert images.info["experts"] == ["image-conse"]
    rows = [i for i, p in enumerate(photos) if p.split == "test"]
    queries = bind.embed([photos[i].query for i in rows])
    assert len(rows) >= 15
    recall = _recall_at_1(queries.vectors, images.vectors, np.eye(len(photos), dtype=bool)[rows])
    assert recall == pytest.approx(figures["image_test_recall_at_1"], abs=1e-9)
    sims = zoo.similarity(bind.embed(["a cat"]), images)  # one space: no stitch needed
    assert sims.stitch is None and photos[int(np.argmax(sims))].name == "chelsea"


def test_text_to_speech_recall_by_paraphrase_is_the_cards_figure(bind, figures):
    clips = gallery.speech_clips()
    assert len(clips) >= 10
    audio = bind.embed([c.path for c in clips], modality="audio")
    assert audio.info["experts"] == ["speech-transcript", "speech-audio"]
    weights = audio.info["expert_weights"]
    assert weights.shape == (len(clips), 2) and np.allclose(weights.sum(axis=1), 1, atol=1e-5)
    queries = bind.embed([c.paraphrase for c in clips])
    recall = _recall_at_1(queries.vectors, audio.vectors, np.eye(len(clips), dtype=bool))
    assert recall == pytest.approx(figures["speech_recall_at_1"], abs=1e-9)


def test_text_to_shape_recall_is_the_cards_figure(bind, figures):
    pn = bind.model("pointnet-mini")
    data = make_dataset(figures["shapes_test_seed"], figures["shapes_per_class"], n_points=pn.n_points)
    shapes = bind.embed(list(data.points), modality="points")
    names = list(pn.class_names)
    queries = bind.embed([gallery.SHAPE_QUERIES[n] for n in names])
    hits = data.labels[None, :] == np.arange(len(names))[:, None]
    recall = _recall_at_1(queries.vectors, shapes.vectors, hits)
    assert recall == pytest.approx(figures["shapes_test_recall_at_1"], abs=0.07)  # one query of 15 may flip


def test_conse_expert_matches_its_definition(bind):
    expert = bind.spec.expert("image-conse")
    eff, text = bind.model("efficientnet-lite0"), bind.model("all-minilm-l6-v2")
    photo = gallery.photos()[1].path
    labels = text.embed(label_texts(eff.class_names, expert.options["label_prompt"])).vectors
    expected = conse(eff.class_probabilities([photo]), labels, expert.options["top"])
    assert np.allclose(bind.embed([photo], modality="image").vectors, expected, atol=1e-5)


def test_bad_items_name_their_index(bind):
    with pytest.raises(zoo.InvalidInputError) as err:
        bind.embed(["fine", 3], modality="text")
    assert err.value.index == 1
    with pytest.raises(zoo.InvalidInputError) as err:
        bind.embed([gallery.speech_clips()[0].path, b"not audio"], modality="audio")
    assert err.value.index == 1
    with pytest.raises(zoo.InvalidInputError) as err:
        bind.embed([np.zeros((10, 3)), np.ones((5, 3))], modality="points")
    assert err.value.index == 0


def test_modality_is_inferred_from_plain_items(bind, tmp_path):
    photo, clip = gallery.photos()[0].path, gallery.speech_clips()[0].path
    assert bind._infer_modality(["a query"]) == "text"
    assert bind._infer_modality([photo]) == "image"
    assert bind._infer_modality([clip]) == "audio"
    assert bind._infer_modality([np.random.default_rng(0).normal(size=(100, 3))]) == "points"
    with pytest.raises(zoo.InvalidInputError, match="say which with modality="):
        bind._infer_modality([photo, clip])


def test_cached_rows_keep_their_vectors_and_say_their_expert_weights_are_unknown(bind, tmp_path):
    from zoo.cache import EmbeddingCache

    clips = [str(c.path) for c in gallery.speech_clips()[:3]]
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    bind.embed(clips[:1], modality="audio", cache=cache)
    mixed = bind.embed(clips, modality="audio", cache=cache)  # clip 0 cached, clips 1 and 2 embedded
    plain = bind.embed(clips, modality="audio")
    assert mixed.info["cache_hits"] == 1 and mixed.info["cache_misses"] == 2
    np.testing.assert_allclose(mixed.vectors, plain.vectors, atol=1e-6)
    weights = mixed.info["expert_weights"]
    assert weights.shape == plain.info["expert_weights"].shape and np.isnan(weights[0]).all()
    np.testing.assert_allclose(weights[1:], plain.info["expert_weights"][1:], atol=1e-6)
