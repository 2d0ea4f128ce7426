"""One model object shared by many threads (and processes) gives every call its serial result.

Each offline model runs N threads x M mixed calls (sizes, truncation, prompts, classification)
against the outputs the same calls give one at a time, compared bitwise; plus the per-call
checks that used to leak a raw library error or another call's state.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

import zoo
from tests.fixtures.tiny_vlm import tiny_vlm_cache  # noqa: F401
from tests.support import stdlib_sentences
from zoo.errors import InputTooLargeError, InvalidInputError

THREADS = 8


def _hammer(calls: list, rounds: int = 2) -> list:
    """Run every call ``rounds`` times from THREADS threads at once; results in call order per round."""
    total = len(calls) * rounds
    barrier = threading.Barrier(min(THREADS, total))

    def run(i: int) -> Any:
        if i < barrier.parties:  # the first wave starts together
            barrier.wait()
        fn = calls[i % len(calls)]
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - compared with the serial outcome below
            return exc

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(run, range(total)))


def _same(a: Any, b: Any) -> bool:
    """Bitwise equality of call results: Embeddings, arrays, class lists, tuples of those, or errors."""
    if isinstance(a, Exception) or isinstance(b, Exception):
        return type(a) is type(b) and str(a) == str(b)
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if hasattr(a, "vectors"):
        return a.vectors.dtype == b.vectors.dtype and np.array_equal(a.vectors, b.vectors)
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    return a == b


def _check_against_serial(calls: list, rounds: int = 2) -> None:
    serial = [fn() for fn in calls]
    got = _hammer(calls, rounds)
    wrong = [i for i, r in enumerate(got) if not _same(r, serial[i % len(calls)])]
    assert not wrong, f"{len(wrong)} of {len(got)} concurrent calls differ from the serial result: " \
                      f"{[repr(got[i])[:200] for i in wrong[:3]]}"


@pytest.fixture(scope="module")
def minilm():
    return zoo.load("all-minilm-l6-v2")


def test_text_model_mixed_truncation_from_many_threads(minilm):
    long = " ".join(stdlib_sentences()[:80])  # well over 512 tokens
    texts = list(stdlib_sentences()[:12])
    calls = [
        lambda: minilm.embed([long, texts[0]], truncate=True),
        lambda: minilm.embed([long], truncate=False),  # a typed error, every time
        lambda: minilm.embed(texts, batch_size=3),
        lambda: minilm.embed(texts[:5], dim=128, force_dim=True),
        lambda: minilm.embed(texts[5:], precision="int8", calibration=np.linspace(-1, 1, 384 * 4).reshape(4, 384)),
        lambda: minilm.embed(texts[:1]),
    ]
    with pytest.raises(InputTooLargeError):
        calls[1]()
    calls[1] = _raises(calls[1])
    _check_against_serial(calls)


def _raises(fn):
    def call():
        try:
            fn()
        except Exception as exc:  # noqa: BLE001
            return exc
        raise AssertionError("expected an error")
    return call


def test_onnx_text_model_from_many_threads():
    model = zoo.load("paraphrase-minilm-l3-v2")
    texts = list(stdlib_sentences()[:16])
    _check_against_serial([lambda n=n: model.embed(texts[:n]) for n in (1, 4, 9, 16)])


@pytest.mark.parametrize("name", ["efficientnet-lite0", "pointnet-mini"])
def test_classifiers_keep_each_calls_classes(name):
    model = zoo.load(name)
    items = _items(name)
    calls = [
        lambda: model.embed_and_classify(items[:1]),
        lambda: model.embed(items),
        lambda: model.embed_and_classify(items, top_k=2),
        lambda: model.classify(items[1:]),
        lambda: model.embed(items[:2]),
    ]
    _check_against_serial(calls)


def _items(name: str) -> list:
    if name == "efficientnet-lite0":
        from tests.fixtures.tiny_vision import sample_photos

        photos = sample_photos()
        return [photos[k] for k in ("coffee", "astronaut", "chelsea")]
    from zoo.shapes import make_dataset

    return list(make_dataset(7, 1, n_points=zoo.card(name).options["n_points"]).points[:3])


def test_bind_mini_text_from_many_threads_is_bitwise_serial():
    model = zoo.load("zoo-bind-mini")
    texts = list(stdlib_sentences()[:10])
    _check_against_serial([lambda n=n: model.embed(texts[:n]) for n in (1, 2, 5, 10)], rounds=4)


def test_a_vision_language_model_with_videos_documents_and_bad_items_from_many_threads(tiny_vlm_cache):  # noqa: F811
    """Videos, mixed items, a PDF page and hostile files (decoded in the shared sandboxed workers) from 8 threads."""
    from tests.fixtures.clips import TEXT_PAGE, pan_frames, pdf_bytes, write_clip

    model = zoo.load("qwen3-vl-embedding-2b")
    clips = [write_clip(None, pan_frames(n, size=(64, 48), photo=photo), fps=6)
             for n, photo in ((12, "coffee"), (20, "rocket"))]
    pdf = pdf_bytes((612, 792, TEXT_PAGE))
    calls = [
        lambda: model.embed(clips, modality="video"),
        lambda: model.embed([{"content": [{"text": "a pan"}, {"video": clips[1]}]}], modality="interleaved"),
        lambda: model.embed([pdf], modality="document"),
        lambda: _refusal(lambda: model.embed([clips[0], clips[1][: len(clips[1]) // 2]], modality="video")),
        lambda: model.embed(["a text", "another"], task_instruction="Find the clip"),
    ]
    _check_against_serial(calls, rounds=2)


def _refusal(call) -> InvalidInputError:
    """The error a hostile call must raise (the same one, serially and from the threads)."""
    with pytest.raises(InvalidInputError) as info:
        call()
    return info.value


def test_whisper_embed_and_transcribe_from_many_threads():
    from pathlib import Path

    model = zoo.load("whisper-tiny-en")
    clip = str(Path(zoo.__file__).parent / "samples" / "speech" / "coffee.flac")  # real espeak-ng speech
    _check_against_serial([lambda: model.embed([clip]), lambda: model.transcribe([clip], beam_size=1)], rounds=2)



def test_a_torch_model_on_threads_that_ran_whisper_keeps_its_serial_result():
    """CTranslate2 (one thread here, torch two) sets the OpenMP thread count of the thread that calls it; a torch
    model on a pool thread that ran Whisper before must still compute on torch's count, as serially."""
    from pathlib import Path

    speech = zoo.load("whisper-tiny-en", threads=1)
    vision = zoo.load("efficientnet-lite0")
    clip = str(Path(zoo.__file__).parent / "samples" / "speech" / "coffee.flac")
    photos = _items("efficientnet-lite0")
    _check_against_serial([lambda: speech.embed([clip]), lambda: vision.embed(photos[:2]),
                           lambda: vision.embed(photos)], rounds=3)

# -- per-call behaviour that used to leak ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["efficientnet-lite0", "pointnet-mini"])
def test_embed_and_classify_gives_classes_for_cached_items(name, tmp_path):
    from zoo.cache import EmbeddingCache

    model = zoo.load(name)
    items = _items(name)
    emb, classes = model.embed_and_classify(items)
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    model.embed(items[:2], cache=cache)  # two of three now cached
    emb2, classes2 = model.embed_and_classify(items, cache=cache)
    assert emb2.info["cache_hits"] == 2
    assert [[c for c, _ in row] for row in classes2] == [[c for c, _ in row] for row in classes]
    np.testing.assert_allclose([[p for _, p in row] for row in classes2], [[p for _, p in row] for row in classes],
                               rtol=1e-5)
    np.testing.assert_allclose(emb2.vectors, emb.vectors, atol=1e-6)  # the miss ran in a batch of one


def test_an_error_after_cache_hits_names_the_callers_index(minilm, tmp_path):
    from zoo.cache import EmbeddingCache

    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    texts = ["first", "second", "third"]
    minilm.embed(texts, cache=cache)
    long = " ".join(stdlib_sentences()[:80])
    with pytest.raises(InputTooLargeError) as info:
        minilm.embed([*texts, long], truncate=False, cache=cache)
    assert info.value.index == 3 and str(info.value).startswith("input[3]: ")
    assert info.value.limit == minilm.card.max_tokens


def test_lone_surrogates_are_a_typed_error_with_and_without_cache(minilm, tmp_path):
    from zoo.cache import EmbeddingCache

    for cache in (None, EmbeddingCache(tmp_path / "c.sqlite")):
        with pytest.raises(InvalidInputError, match=r"input\[1\]: .*lone surrogate") as info:
            minilm.embed(["fine", "bad \ud800 text"], cache=cache)
        assert info.value.index == 1
    assert minilm.embed(["fine"]).vectors.shape == (1, 384)  # the model keeps working


@pytest.mark.parametrize("kwargs, match", [
    (dict(prompt_name={"query": 1}), "prompt_name must be a string"),
    (dict(prompt_name=3), "prompt_name must be a string"),
])
def test_wrong_option_types_are_typed_errors(minilm, kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        minilm.embed(["a"], **kwargs)


@pytest.mark.parametrize("chunk_size", ["10", 2.5, None, True, 0])
def test_stream_chunk_size_of_the_wrong_type(minilm, chunk_size):
    with pytest.raises(InvalidInputError, match="chunk_size must be a positive integer"):
        next(minilm.stream(["a", "b"], chunk_size=chunk_size))


def test_a_non_finite_vector_is_never_returned(minilm, monkeypatch):
    real = type(minilm)._encode

    def poisoned(self, items, modality, ctx):
        out = real(self, items, modality, ctx)
        out[1, 5] = np.nan
        return out

    monkeypatch.setattr(type(minilm), "_encode", poisoned)
    with pytest.raises(InvalidInputError, match=r"input\[1\]: .*non-finite vector"):
        minilm.embed(["a", "b", "c"])


@pytest.mark.parametrize("item, match", [
    ("/photos/cat.jpg", "names an image file that does not exist"),
    ("/no/such/song.flac", "names an audio file that does not exist"),
    ("/tmp", "names a directory"),
])
def test_bind_mini_refuses_a_media_path_that_names_no_file(item, match):
    model = zoo.load("zoo-bind-mini")
    with pytest.raises(InvalidInputError, match=match):
        model.embed([item])
    assert model.embed([item], modality="text").vectors.shape == (1, model.dim)  # said so: it is text


# -- processes -------------------------------------------------------------------------------------------------------


def _embed_in_child(model, queue) -> None:
    queue.put(model.embed(["a forked child embeds"]).vectors)


def test_a_forked_child_is_not_blocked_by_a_lock_held_in_the_parent(minilm):
    """A process forked while another thread is inside a call must not inherit that call's lock (nor hang in
    torch's thread pool, which the fork left without its threads)."""
    expected = minilm.embed(["a forked child embeds"]).vectors
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with minilm._call_lock:
            held.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(10)
    try:
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_embed_in_child, args=(minilm, queue))
        child.start()
        got = queue.get(timeout=60)
        child.join(30)
    finally:
        release.set()
        thread.join()
    np.testing.assert_allclose(got, expected, atol=1e-6)  # the child computes on one thread


def test_an_embedder_copies_without_its_lock(minilm):
    import copy

    clone = copy.deepcopy(minilm)  # goes through __getstate__ / __setstate__, as pickling does
    assert clone._call_lock is not minilm._call_lock
    np.testing.assert_array_equal(clone.embed(["x"]).vectors, minilm.embed(["x"]).vectors)
