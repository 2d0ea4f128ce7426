"""zoo serve over real HTTP: the `zoo serve` command, the official `openai` client unchanged, and `zoo.client`."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

pytest.importorskip("fastapi")

import zoo  # noqa: E402

TEXT = "all-minilm-l6-v2"
TEXTS = ["a dog runs on the beach", "a cat", "the quick brown fox"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, proc: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"zoo serve exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("zoo serve did not come up")


@pytest.fixture(scope="module")
def server():
    """`zoo serve` in its own process, with an API key from the environment."""
    port = _free_port()
    env = {**os.environ, "ZOO_API_KEY": "secret-key"}
    proc = subprocess.Popen([sys.executable, "-m", "zoo.apps.cli", "serve", TEXT, "efficientnet-lite0", "--port",
                             str(port), "--preload"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def test_the_official_openai_client_works_unchanged(server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server + "/v1", api_key="secret-key")
    local = zoo.load(TEXT).embed(TEXTS).vectors
    answer = client.embeddings.create(model=TEXT, input=TEXTS)  # the client asks for base64 and decodes it
    assert [d.index for d in answer.data] == [0, 1, 2]
    assert np.array_equal(np.array([d.embedding for d in answer.data], dtype=np.float32), local)
    assert answer.usage.prompt_tokens > 0
    floats = client.embeddings.create(model=TEXT, input="a cat", encoding_format="float")
    alone = zoo.load(TEXT).embed(["a cat"]).vectors[0]  # alone, not in a batch of three: its own rounding
    assert np.array_equal(np.array(floats.data[0].embedding, dtype=np.float32), alone)
    assert [m.id for m in client.models.list()] == [TEXT, "efficientnet-lite0"]
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="x")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server + "/v1", api_key="wrong").embeddings.create(model=TEXT, input="x")


def test_the_zoo_client_returns_embeddings_in_the_models_space(server, tmp_path):
    from skimage import data

    from zoo.client import Client, ServerError, image

    client = Client(server, api_key="secret-key")
    texts = client.embed(TEXTS, model=TEXT)
    local = zoo.load(TEXT).embed(TEXTS)
    assert texts.space == local.space and texts.model == TEXT
    assert np.array_equal(texts.vectors, local.vectors)
    assert np.allclose(zoo.similarity(texts, local), zoo.similarity(local, local))  # one space: comparable
    from PIL import Image

    path = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).save(path)
    photos = client.embed([image(path)], model="efficientnet-lite0")
    assert photos.modality == "image"
    assert np.array_equal(photos.vectors, zoo.load("efficientnet-lite0").embed([path]).vectors)
    with pytest.raises(ServerError) as info:
        client.embed([image(b"not an image")], model="efficientnet-lite0")
    assert info.value.status == 400 and info.value.param == "input[0]"
    assert {m["id"] for m in client.models()} == {TEXT, "efficientnet-lite0"}


def test_a_non_loopback_host_without_a_key_warns():
    from zoo.apps.serve.server import open_without_key
    from zoo.apps.serve.settings import ServeSettings

    assert open_without_key("127.0.0.1", ServeSettings()) is None
    assert open_without_key("::1", ServeSettings()) is None
    assert "no API key" in open_without_key("0.0.0.0", ServeSettings())
    assert open_without_key("0.0.0.0", ServeSettings(api_keys=("k",))) is None


def test_base64_from_the_server_is_little_endian_float32(server):
    import json

    body = json.dumps({"model": TEXT, "input": "a cat", "encoding_format": "base64"}).encode()
    request = urllib.request.Request(server + "/v1/embeddings", data=body, headers={
        "Content-Type": "application/json", "Authorization": "Bearer secret-key"})
    with urllib.request.urlopen(request) as r:
        answer = json.loads(r.read())
    row = np.frombuffer(base64.b64decode(answer["data"][0]["embedding"]), dtype="<f4")
    assert np.array_equal(row, zoo.load(TEXT).embed(["a cat"]).vectors[0])
