"""zoo serve: OpenAI's request and response shapes for every modality, errors with item indexes and their HTTP
statuses, API keys, dynamic batching (one bad item never fails another request), and the answers equal to
``embed``'s."""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

import zoo  # noqa: E402
from tests.fixtures.tiny_text import hf_text_cache  # noqa: E402, F401
from tests.fixtures.tiny_vlm import tiny_vlm_cache  # noqa: E402, F401
from zoo.apps.serve.app import SPACE_HEADER, create_app  # noqa: E402
from zoo.apps.serve.batcher import Batcher, QueueFull  # noqa: E402
from zoo.apps.serve.models import ModelPool  # noqa: E402
from zoo.apps.serve.settings import ServeSettings  # noqa: E402
from zoo.embeddings import Embeddings  # noqa: E402
from zoo.errors import InvalidInputError  # noqa: E402

TEXT = "all-minilm-l6-v2"
TEXTS = ["a dog runs on the beach", "a cat", "the quick brown fox jumps over the lazy dog", "hello"]


def _png(array) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def _image_part(data: bytes, mime: str = "image/png") -> dict:
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{base64.b64encode(data).decode()}"}}


def _vectors(response) -> np.ndarray:
    rows = sorted(response.json()["data"], key=lambda d: d["index"])
    return np.array([d["embedding"] for d in rows], dtype=np.float32)


@pytest.fixture(scope="module")
def minilm():
    return zoo.load(TEXT)


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app([TEXT, "efficientnet-lite0", "zoo-bind-mini"])) as c:
        yield c


# -- the OpenAI shapes -----------------------------------------------------------------------------------------
def test_texts_answer_openais_shape_with_the_space(client, minilm):
    r = client.post("/v1/embeddings", json={"model": TEXT, "input": TEXTS, "user": "ignored"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == TEXT
    assert [d["object"] for d in body["data"]] == ["embedding"] * 4
    assert [d["index"] for d in body["data"]] == [0, 1, 2, 3]
    expected_tokens = sum(len(ids) for ids in minilm.tokenize(TEXTS))
    assert body["usage"] == {"prompt_tokens": expected_tokens, "total_tokens": expected_tokens}
    assert body["extra"] == {"space": minilm.space, "dim": 384, "modality": "text"}
    assert r.headers[SPACE_HEADER] == minilm.space
    assert np.array_equal(_vectors(r), minilm.embed(TEXTS).vectors)


def test_a_single_string_and_base64(client, minilm):
    floats = client.post("/v1/embeddings", json={"model": TEXT, "input": "a dog"})
    packed = client.post("/v1/embeddings", json={"model": TEXT, "input": "a dog", "encoding_format": "base64"})
    row = np.frombuffer(base64.b64decode(packed.json()["data"][0]["embedding"]), dtype="<f4")
    assert np.array_equal(row, _vectors(floats)[0])
    assert np.array_equal(row, minilm.embed(["a dog"]).vectors[0])


def test_dimensions_on_a_matryoshka_card_and_refused_elsewhere(hf_text_cache):  # noqa: F811
    name = "qwen3-embedding-0.6b"
    with TestClient(create_app([name, "e5-small-v2"])) as c:
        r = c.post("/v1/embeddings", json={"model": name, "input": TEXTS, "dimensions": 64})
        assert r.status_code == 200, r.text
        assert np.array_equal(_vectors(r), zoo.load(name).embed(TEXTS, dim=64).vectors)
        assert r.json()["extra"]["dim"] == 64
        refused = c.post("/v1/embeddings", json={"model": "e5-small-v2", "input": "x", "dimensions": 64})
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "dimensions"
        assert "Matryoshka" in refused.json()["error"]["message"]


def test_models_health_and_metrics(client):
    client.post("/v1/embeddings", json={"model": TEXT, "input": ["a", "b"]})
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    facts = {m["id"]: m["extra"] for m in models["data"]}
    assert set(facts) == {TEXT, "efficientnet-lite0", "zoo-bind-mini"}
    assert facts[TEXT]["dim"] == 384 and facts[TEXT]["modalities"] == ["text"] and facts[TEXT]["loaded"]
    assert client.get("/health").json()["status"] == "ok"
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    text = metrics.text
    for name in ("zoo_requests_total", "zoo_items_total", "zoo_batch_items_bucket", "zoo_queue_items",
                 "zoo_request_latency_seconds_bucket", "zoo_errors_total"):
        assert name in text, name
    assert f'zoo_requests_total{{model="{TEXT}",status="200"}}' in text


# -- every modality --------------------------------------------------------------------------------------------
def test_images_as_data_urls_equal_embed_of_the_bytes(client):
    from skimage import data

    photos = [_png(data.astronaut()), _png(data.coffee())]
    r = client.post("/v1/embeddings", json={"model": "efficientnet-lite0", "input": [_image_part(p) for p in photos]})
    assert r.status_code == 200, r.text
    assert np.array_equal(_vectors(r), zoo.load("efficientnet-lite0").embed(photos).vectors)
    assert r.json()["extra"]["modality"] == "image"


def test_an_exif_rotated_rgba_image_decoded_in_the_pool_equals_embed_of_its_bytes(client):
    from PIL import Image

    rgba = np.zeros((40, 60, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, np.linspace(0, 255, 60, dtype=np.uint8)
    img = Image.fromarray(rgba)
    exif = img.getexif()
    exif[0x0112] = 6  # rotated 90 degrees
    buf = io.BytesIO()
    img.save(buf, "WEBP", exif=exif.tobytes(), lossless=True)
    r = client.post("/v1/embeddings", json={"model": "efficientnet-lite0", "input": [_image_part(buf.getvalue(),
                                                                                                    "image/webp")]})
    assert r.status_code == 200, r.text
    assert np.array_equal(_vectors(r), zoo.load("efficientnet-lite0").embed([buf.getvalue()]).vectors)


def test_audio_and_point_cloud_parts(client):
    from zoo.samples.gallery import speech_clips

    bind = zoo.load("zoo-bind-mini")
    clip = speech_clips()[0].path.read_bytes()
    r = client.post("/v1/embeddings", json={"model": "zoo-bind-mini", "input": [
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(clip).decode(), "format": "flac"}}]})
    assert r.status_code == 200, r.text
    assert np.array_equal(_vectors(r), bind.embed([clip], modality="audio").vectors)
    cloud = np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32)
    buf = io.BytesIO()
    np.save(buf, cloud)
    r = client.post("/v1/embeddings", json={"model": "zoo-bind-mini", "input": [
        {"type": "input_points", "input_points": {"data": base64.b64encode(buf.getvalue()).decode(),
                                                  "format": "npy"}}]})
    assert r.status_code == 200, r.text
    assert r.json()["extra"]["modality"] == "points"
    assert np.array_equal(_vectors(r), bind.embed([buf.getvalue()], modality="points").vectors)


def test_interleaved_image_and_text_items(tiny_vlm_cache):  # noqa: F811
    from skimage import data

    name = "vlm2vec-qwen2vl-2b"
    photo = _png(data.astronaut()[::8, ::8].copy())
    with TestClient(create_app([name])) as c:
        r = c.post("/v1/embeddings", json={"model": name, "input": [
            [_image_part(photo), {"type": "text", "text": "what is in the picture"}],
            [{"type": "text", "text": "only text"}]]})
        assert r.status_code == 200, r.text
        expected = zoo.load(name).embed([{"image": photo, "text": "what is in the picture"}, {"text": "only text"}],
                                        modality="interleaved").vectors
        assert np.array_equal(_vectors(r), expected)
        with_instruction = c.post("/v1/embeddings", json={"model": name, "input": "a dog",
                                                         "extra": {"task_instruction": "Find a photo"}})
        assert np.array_equal(_vectors(with_instruction), zoo.load(name).embed(["a dog"], "Find a photo").vectors)


def test_video_and_document_parts(tiny_vlm_cache):  # noqa: F811
    from tests.fixtures.clips import RED_PAGE, TEXT_PAGE, pan_frames, pdf_bytes, write_clip
    from zoo.client import document, video

    name = "qwen3-vl-embedding-2b"
    clip = write_clip(None, pan_frames(24, size=(64, 48)), fps=8)
    pdf = pdf_bytes((612, 792, TEXT_PAGE), (612, 792, RED_PAGE))
    model = zoo.load(name)
    with TestClient(create_app([name])) as c:
        r = c.post("/v1/embeddings", json={"model": name, "input": [video(clip)]})
        assert r.status_code == 200, r.text
        assert r.json()["extra"]["modality"] == "video"
        assert np.array_equal(_vectors(r), model.embed([clip], modality="video").vectors)
        r = c.post("/v1/embeddings", json={"model": name, "input": [[{"type": "text", "text": "what happens"},
                                                                        video(clip)]]})
        assert r.status_code == 200, r.text
        expected = model.embed([{"content": [{"text": "what happens"}, {"video": clip}]}], modality="interleaved")
        assert np.array_equal(_vectors(r), expected.vectors)
        pages = c.post("/v1/embeddings", json={"model": name, "input": [document(pdf), document(pdf, page=1)]})
        assert pages.status_code == 200, pages.text
        assert pages.json()["extra"]["modality"] == "interleaved"
        one_by_one = [model.embed([pdf], modality="document").vectors[0],
                      model.embed([{"document": pdf, "page": 1}], modality="interleaved").vectors[0]]
        assert np.allclose(_vectors(pages), one_by_one, atol=1e-5)
        assert not np.allclose(one_by_one[0], one_by_one[1], atol=1e-3)  # the two pages differ
        alone = c.post("/v1/embeddings", json={"model": name, "input": [[document(pdf, page=1)]]})
        assert alone.status_code == 200, alone.text
        assert np.array_equal(_vectors(alone), model.embed([{"document": pdf, "page": 1}],
                                                           modality="interleaved").vectors)
        bad = c.post("/v1/embeddings", json={"model": name, "input": [video(b"RIFF....AVI not a video")]})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "input[0]"
        assert "video" in bad.json()["error"]["message"]


# -- errors ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "status", "param", "match"),
    [
        ({"model": TEXT, "input": [[101, 2003]]}, 400, "input", "token arrays"),
        ({"model": TEXT, "input": [1, 2, 3]}, 400, "input", "token arrays"),
        ({"model": TEXT}, 400, "input", "'input' is required"),
        ({"model": TEXT, "input": []}, 400, "input", "non-empty"),
        ({"model": TEXT, "input": "x", "encoding_format": "int8"}, 400, "encoding_format", "encoding_format"),
        ({"model": TEXT, "input": "x", "temperature": 1}, 400, "temperature", "unknown field"),
        ({"model": TEXT, "input": "x", "extra": {"colour": "red"}}, 400, "extra.colour", "unknown extra"),
        ({"model": "all-minilm-l6-v3", "input": "x"}, 404, "model", "did you mean 'all-minilm-l6-v2'"),
        ({"model": "efficientnet-lite0", "input": [_image_part(b"not an image at all")]}, 400, "input[0]", "image"),
        ({"model": "efficientnet-lite0", "input": [{"type": "image_url", "image_url": {
            "url": "https://example.com/cat.png"}}]}, 400, "input[0]", "only data: URLs"),
        ({"model": "efficientnet-lite0", "input": [{"type": "image_url", "image_url": {
            "url": "data:image/png;base64,@@@"}}]}, 400, "input[0]", "base64"),
        ({"model": "efficientnet-lite0", "input": "a text"}, 400, "input", "this input is text"),
        ({"model": TEXT, "input": ["fine", {"type": "video", "video": "x"}]}, 400, "input[1]", "unknown content"),
        ({"model": "zoo-bind-mini", "input": ["text", _image_part(b"x")]}, 400, "input[1]", "one modality"),
    ],
)
def test_bad_requests_get_openai_errors_naming_the_field(client, body, status, param, match):
    r = client.post("/v1/embeddings", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param
    assert match in error["message"]
    assert error["type"] == "invalid_request_error"


def test_an_item_that_fails_inside_the_model_names_its_index(client):
    lone_surrogate = "bad \ud800 text"
    r = client.post("/v1/embeddings", content=json.dumps({"model": TEXT, "input": ["fine", lone_surrogate]}),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "input[1]" and "surrogate" in r.json()["error"]["message"]


def test_size_limits_answer_413_and_bad_json_400():
    settings = ServeSettings(max_body_bytes=2000, max_items=3, max_media_bytes=100)
    with TestClient(create_app([TEXT, "efficientnet-lite0"], settings)) as c:
        big = c.post("/v1/embeddings", json={"model": TEXT, "input": "x" * 3000})
        assert big.status_code == 413 and big.json()["error"]["code"] == "body_too_large"
        many = c.post("/v1/embeddings", json={"model": TEXT, "input": ["a", "b", "c", "d"]})
        assert many.status_code == 413 and "limit of 3" in many.json()["error"]["message"]
        media = c.post("/v1/embeddings", json={"model": "efficientnet-lite0", "input": [_image_part(b"x" * 200)]})
        assert media.status_code == 413 and media.json()["error"]["param"] == "input[0]"
        broken = c.post("/v1/embeddings", content=b"{not json", headers={"Content-Type": "application/json"})
        assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]["message"]
        assert c.post("/v1/embeddings", json={"model": TEXT, "input": "still fine"}).status_code == 200


def test_api_keys():
    with TestClient(create_app([TEXT], ServeSettings(api_keys=("k1", "k2")))) as c:
        missing = c.post("/v1/embeddings", json={"model": TEXT, "input": "x"})
        assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = c.get("/v1/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert c.get("/metrics").status_code == 401
        ok = c.post("/v1/embeddings", json={"model": TEXT, "input": "x"}, headers={"Authorization": "Bearer k2"})
        assert ok.status_code == 200
        assert c.get("/health").status_code == 200  # a liveness probe needs no key


def test_unknown_model_on_an_open_server_gets_the_registrys_suggestion():
    with TestClient(create_app()) as c:
        r = c.post("/v1/embeddings", json={"model": "all-minilm-l6-v", "input": "x"})
        assert r.status_code == 404 and "all-minilm-l6-v2" in r.json()["error"]["message"]
        assert len(c.get("/v1/models").json()["data"]) == len(zoo.list_models())


# -- the batcher -------------------------------------------------------------------------------------------------
class _Recorder:
    """A real model whose embed calls are recorded (and can be held at a gate)."""

    def __init__(self, model):
        self.model, self.name, self.card = model, model.name, model.card
        self.calls: list[list] = []
        self.gate = threading.Event()
        self.gate.set()

    def embed(self, items, **options):
        self.gate.wait(30)
        self.calls.append(list(items))
        return self.model.embed(items, **options)


def test_concurrent_requests_share_one_embed_call_and_get_its_rows(minilm):
    recorder = _Recorder(minilm)
    pool = ModelPool([TEXT], max_wait=2.0, loader=lambda name: recorder)
    requests = [TEXTS[:2], [TEXTS[2]], [TEXTS[3], "one more text"]]
    with TestClient(create_app(pool=pool)) as c:
        answers = [None] * 3

        def ask(i):
            answers[i] = c.post("/v1/embeddings", json={"model": TEXT, "input": requests[i]})

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(recorder.calls) == 1  # the three waited for one another (max_wait 2 s)
    batch = recorder.calls[0]
    together = minilm.embed(batch).vectors
    for request, answer in zip(requests, answers, strict=True):
        assert answer.status_code == 200
        start = batch.index(request[0])
        assert batch[start : start + len(request)] == request
        assert np.array_equal(_vectors(answer), together[start : start + len(request)])  # bitwise the batch's rows
        np.testing.assert_allclose(_vectors(answer), minilm.embed(request).vectors, atol=1e-6)  # float rounding


def test_without_batching_each_answer_is_bitwise_embed_of_its_request(minilm):
    with TestClient(create_app([TEXT], ServeSettings(batching=False))) as c:
        for request in (TEXTS[:2], [TEXTS[2]], TEXTS):
            r = c.post("/v1/embeddings", json={"model": TEXT, "input": request})
            assert np.array_equal(_vectors(r), minilm.embed(request).vectors)


class _Fake:
    """Embeds numbers as 1-d vectors; "bad" is an invalid item; ``fail`` breaks a whole call."""

    name = "fake"

    def __init__(self):
        self.calls: list[list] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False

    def embed(self, items, **options):
        self.gate.wait(30)
        self.calls.append(list(items))
        for i, item in enumerate(items):
            if item == "bad":
                raise InvalidInputError("a bad item", index=i)
        if self.fail and len(items) > 1:
            raise RuntimeError("the batch broke")
        return Embeddings(np.array([[float(x)] for x in items], dtype=np.float32), space="s", model="fake",
                          modality="text", normalized=False, dim=1)


def _jobs(batcher, requests, options=None):
    return [batcher.submit(items, options or {}, len(items)) for items in requests]


def test_a_bad_item_fails_only_its_own_request_with_its_own_index():
    fake = _Fake()
    fake.gate.clear()
    batcher = Batcher(fake, budget=100, max_wait=0.0)
    blocker = batcher.submit([0], {}, 1)  # the worker waits at the gate with this one
    time.sleep(0.1)
    good, bad, other = _jobs(batcher, [[1, 2], [3, "bad", 4], [5]])
    fake.gate.set()
    assert blocker.result(10)[0].vectors.ravel().tolist() == [0]
    assert good.result(10)[0].vectors.ravel().tolist() == [1, 2]
    assert other.result(10)[0].vectors.ravel().tolist() == [5]
    with pytest.raises(InvalidInputError) as info:
        bad.result(10)
    assert info.value.index == 1 and str(info.value) == "input[1]: a bad item"
    assert fake.calls[1:] == [[1, 2, 3, "bad", 4, 5], [1, 2, 5]]  # the batch again, without the bad request
    batcher.close()


def test_a_batch_that_breaks_runs_each_request_alone():
    fake = _Fake()
    fake.fail = True
    fake.gate.clear()
    batcher = Batcher(fake, budget=100, max_wait=0.0)
    blocker = batcher.submit([0], {}, 1)
    time.sleep(0.1)
    a, b = _jobs(batcher, [[1], [2, 3]])
    fake.gate.set()
    blocker.result(10)
    assert a.result(10)[0].vectors.ravel().tolist() == [1]
    with pytest.raises(RuntimeError, match="broke"):
        b.result(10)  # two items: the fake still fails it, alone
    batcher.close()


def test_only_requests_with_the_same_options_share_a_batch_and_the_budget_holds():
    fake = _Fake()
    fake.gate.clear()
    batcher = Batcher(fake, budget=3, max_wait=0.0)
    blocker = batcher.submit([0], {}, 1)
    time.sleep(0.1)
    jobs = [batcher.submit([1], {}, 1), batcher.submit([2], {"modality": "code"}, 1), batcher.submit([3, 4], {}, 2),
            batcher.submit([5], {}, 1)]
    fake.gate.set()
    for job in [blocker, *jobs]:
        job.result(10)
    assert fake.calls == [[0], [1, 3, 4], [2], [5]]
    batcher.close()


def test_a_full_queue_answers_503_with_retry_after(minilm):
    recorder = _Recorder(minilm)
    recorder.gate.clear()
    pool = ModelPool([TEXT], max_queued=2, loader=lambda name: recorder)
    with TestClient(create_app(pool=pool, settings=ServeSettings(max_queued=2))) as c:
        first = threading.Thread(target=c.post, args=("/v1/embeddings",), kwargs={"json": {"model": TEXT,
                                                                                           "input": "held"}})
        first.start()
        time.sleep(0.3)  # taken by the worker, held at the gate
        queued = threading.Thread(target=c.post, args=("/v1/embeddings",), kwargs={"json": {"model": TEXT,
                                                                                            "input": ["a", "b"]}})
        queued.start()
        time.sleep(0.3)
        full = c.post("/v1/embeddings", json={"model": TEXT, "input": "one too many"})
        assert full.status_code == 503 and full.headers["retry-after"] == "1"
        assert full.json()["error"]["code"] == "queue_full"
        recorder.gate.set()
        first.join()
        queued.join()
        assert c.post("/v1/embeddings", json={"model": TEXT, "input": "later"}).status_code == 200


def test_a_request_past_its_timeout_gets_504_and_is_not_run(minilm):
    recorder = _Recorder(minilm)
    recorder.gate.clear()
    pool = ModelPool([TEXT], loader=lambda name: recorder)
    with TestClient(create_app(pool=pool, settings=ServeSettings(request_timeout=0.5))) as c:
        holder = threading.Thread(target=c.post, args=("/v1/embeddings",),
                                  kwargs={"json": {"model": TEXT, "input": "held"}})
        holder.start()
        time.sleep(0.2)
        late = c.post("/v1/embeddings", json={"model": TEXT, "input": "never run"})
        assert late.status_code == 504 and late.json()["error"]["code"] == "timeout"
        recorder.gate.set()
        holder.join()
    assert ["never run"] not in recorder.calls


def test_the_memory_budget_unloads_the_least_recently_used_model():
    loads = []

    def loader(name):
        loads.append(name)
        return zoo.load(name)

    one = 4 * zoo.card(TEXT).params
    pool = ModelPool([TEXT, "paraphrase-minilm-l3-v2"], memory_budget=int(one * 1.5), loader=loader)
    with TestClient(create_app(pool=pool)) as c:
        for name in (TEXT, "paraphrase-minilm-l3-v2", TEXT):
            assert c.post("/v1/embeddings", json={"model": name, "input": "x"}).status_code == 200
        assert c.get("/health").json()["loaded"] == [TEXT]
    assert loads == [TEXT, "paraphrase-minilm-l3-v2", TEXT]


def test_a_full_queue_raises_in_the_batcher():
    fake = _Fake()
    fake.gate.clear()
    batcher = Batcher(fake, budget=10, max_queued=2)
    batcher.submit([0], {}, 1)
    time.sleep(0.1)
    batcher.submit([1, 2], {}, 2)
    with pytest.raises(QueueFull):
        batcher.submit([3], {}, 1)
    fake.gate.set()
    batcher.close()
