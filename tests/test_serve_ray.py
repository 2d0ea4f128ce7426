"""zoo serve --ray: the same app as a Ray Serve deployment with 2 replicas on a local Ray gives the single-process
server's answers."""

from __future__ import annotations

import json
import socket
import urllib.request

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("ray.serve")
from fastapi.testclient import TestClient  # noqa: E402

from zoo.apps.serve.app import create_app  # noqa: E402
from zoo.apps.serve.settings import ServeSettings  # noqa: E402

TEXT = "all-minilm-l6-v2"
REQUESTS = [["a dog runs on the beach"], ["a cat", "the quick brown fox jumps over the lazy dog"],
            ["hello world", "two", "three words here"]]


def _post(url: str, body: dict) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url + "/v1/embeddings", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


@pytest.fixture(scope="module")
def ray_server():
    import ray

    from zoo.apps.serve import ray_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ray_app.run([TEXT], ServeSettings(), port=port, replicas=2, preload=True, blocking=False)
        yield f"http://127.0.0.1:{port}"
    finally:
        ray_app.shutdown()
        ray.shutdown()


def test_two_replicas_answer_as_the_single_process_server(ray_server):
    pids = set()
    for _ in range(20):
        with urllib.request.urlopen(ray_server + "/health", timeout=30) as r:
            pids.add(json.loads(r.read())["pid"])
    assert len(pids) == 2  # both replicas are up and take requests
    torch.set_num_threads(1)  # as in a replica: Ray gives an actor of num_cpus=1 one OpenMP thread (conftest resets)
    with TestClient(create_app([TEXT])) as single:
        for texts in REQUESTS * 3:  # each request lands on either replica
            status, body, headers = _post(ray_server, {"model": TEXT, "input": texts})
            assert status == 200
            expected = single.post("/v1/embeddings", json={"model": TEXT, "input": texts})
            assert body["extra"] == expected.json()["extra"] and body["usage"] == expected.json()["usage"]
            assert headers["x-zoo-space"] == expected.headers["x-zoo-space"]
            got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
            want = np.array([d["embedding"] for d in expected.json()["data"]], dtype=np.float32)
            assert np.array_equal(got, want)


def test_errors_come_back_through_ray_serve_unchanged(ray_server):
    status, body, _ = _post(ray_server, {"model": "all-minilm-l6-v3", "input": "x"})
    assert status == 404 and body["error"]["param"] == "model"
    status, body, _ = _post(ray_server, {"model": TEXT, "input": [[1, 2]]})
    assert status == 400 and "token arrays" in body["error"]["message"]
