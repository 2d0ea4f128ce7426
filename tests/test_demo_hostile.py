"""The demo under hostile requests, over HTTP on loopback: no server paths reach the browser, the server fetches
no URL on anyone's behalf, and wrong types on the API are clear errors.

The app is launched in this process (as tests/test_demo_browser.py does) and shares the gallery cache with
tests/test_demo.py (pytest's base temp folder). URLs are probed against a recording HTTP server on loopback that
stands for a remote host: for the cases where Gradio would only fetch public addresses, the test makes the name
``files.example.com`` pass Gradio's public-address check (as a public DNS name would) and lead to the recorder.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
from pathlib import Path

import httpx
import pytest

from zoo.demo import DemoApp, build_demo, launch_options

FAKE_PUBLIC_HOST = "files.example.com"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        type(self).seen.append(self.path)
        body = b"secret"
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET  # noqa: N815

    def log_message(self, *_args):
        return None


@pytest.fixture(scope="module")
def recorder():
    """(port, requests seen): an HTTP server on 127.0.0.1 that records every request it receives."""
    _Recorder.seen = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1], _Recorder.seen
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, offline_hub):
    """(base url, app): the demo on 127.0.0.1, with a small gallery (a few photos, clips and texts) indexed."""
    from zoo import demo as zdemo
    from zoo import gallery

    with pytest.MonkeyPatch.context() as mp:
        photos, clips = gallery.photos(), gallery.speech_clips()
        mp.setattr(gallery, "photos", lambda: [p for p in photos if p.name in ("chelsea", "coffee", "rocket")])
        mp.setattr(gallery, "speech_clips", lambda: clips[:2])
        mp.setattr(zdemo.Gallery, "_build_shapes", lambda self, folder, progress: [])
        mp.setattr(zdemo.gallery, "STDLIB_FUNCTIONS", zdemo.STDLIB_FUNCTIONS[:2])  # read by the gallery module
        app = DemoApp(tmp_path_factory.mktemp("hostile-demo"))
        app.index("zoo-bind-mini")
    demo = build_demo(app)
    port = _free_port()
    demo.launch(server_port=port, prevent_thread_lock=True, quiet=True, **launch_options(app))
    url = f"http://127.0.0.1:{port}"
    httpx.get(url, timeout=30).raise_for_status()
    yield url, app
    demo.close()


@pytest.fixture
def fake_public_dns(monkeypatch, recorder):
    """``files.example.com`` passes Gradio's public-address check and connects to the recorder."""
    import safehttpx

    async def validate(hostname: str) -> str:
        if hostname == FAKE_PUBLIC_HOST:
            return "127.0.0.1"
        raise ValueError(f"Hostname {hostname} failed validation")

    monkeypatch.setattr(safehttpx, "async_validate_url", validate)
    return recorder


def _call(url: str, api: str, data: list) -> tuple[int, str]:
    """POST the API call and read its event stream: (status of the POST, the stream's text or the POST's)."""
    r = httpx.post(f"{url}/gradio_api/call/{api}", json={"data": data}, timeout=60)
    if r.status_code != 200:
        return r.status_code, r.text
    event = r.json()["event_id"]
    return 200, httpx.get(f"{url}/gradio_api/call/{api}/{event}", timeout=120).text


def _events(stream: str) -> list[tuple[str, str]]:
    out, name = [], None
    for line in stream.splitlines():
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and name:
            out.append((name, line.split(":", 1)[1].strip()))
    return out


def _api_names(url: str) -> dict[str, list[str]]:
    info = httpx.get(f"{url}/gradio_api/info", timeout=30).json()
    return {name.lstrip("/"): [p.get("parameter_name") or p.get("label") for p in ep["parameters"]]
            for name, ep in info["named_endpoints"].items()}


def _server_paths(app: DemoApp) -> list[str]:
    return [str(app.cache_dir), str(app.cache_dir.parent), str(Path(app.cache_dir).resolve())]


# ---------------------------------------------------------------------------------------------- 1. no paths
def test_page_and_config_show_no_server_paths(server):
    url, app = server
    for name, text in {"page": httpx.get(url, timeout=30).text,
                       "config": httpx.get(f"{url}/config", timeout=30).text}.items():
        for p in _server_paths(app):
            assert p not in text, f"{name} shows the server path {p}"


def test_search_results_show_no_server_paths(server):
    url, app = server
    status, stream = _call(url, "search", ["zoo-bind-mini", "a cat", None, None, None, None])
    assert status == 200 and "event: complete" in stream, stream[:500]
    events = _events(stream)
    payload = json.loads(events[-1][1])
    assert payload[1]["data"][0][2] == "chelsea"
    texts = {"search": stream, "page": httpx.get(url, timeout=30).text,
             "config": httpx.get(f"{url}/config", timeout=30).text}
    prepare = next((n for n in _api_names(url) if n.startswith("prepare")), None)
    if prepare:
        texts["prepare"] = _call(url, prepare, ["zoo-bind-mini"])[1]
    for name, text in texts.items():
        for p in _server_paths(app):
            assert p not in text, f"{name} shows the server path {p}"
    # the results still display: every media URL the browser got answers with the file's bytes
    gallery = payload[0]
    assert gallery, "no result images"
    for entry in gallery[:3]:
        media = entry["image"]["url"]
        r = httpx.get(media, timeout=30)
        assert r.status_code == 200 and r.content[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0"), media
        assert r.headers["content-type"] in ("image/png", "image/jpeg"), r.headers["content-type"]


def test_audio_hits_are_served_by_token(server):
    url, app = server
    status, stream = _call(url, "search", ["zoo-bind-mini", "a person speaking", None, None, None, None])
    assert status == 200 and "event: complete" in stream, stream[:500]
    audio = json.loads(_events(stream)[-1][1])[2]
    assert audio is not None, "no sound hit"
    assert "/zoo-media/" in audio["url"] and audio["path"] == audio["url"]
    for p in _server_paths(app):
        assert p not in json.dumps(audio)
    r = httpx.get(audio["url"], timeout=30)
    assert r.status_code == 200 and r.content[:4] in (b"RIFF", b"fLaC", b"OggS"), r.content[:8]


def test_media_route_serves_only_its_tokens(server):
    url, app = server
    thumb = next(it.thumb for it in app.gallery.items() if it.thumb)
    token = app.media_token(thumb)
    assert httpx.get(f"{url}/zoo-media/{token}", timeout=30).status_code == 200
    forged = ("0" * 24 if not token.startswith("0" * 24) else "1" * 24) + ".png"
    for probe in (forged, token[:-4] + ".jpg", "..%2Fgallery%2Fmanifest.json", token.replace(".", "%2e") + "x"):
        r = httpx.get(f"{url}/zoo-media/{probe}", timeout=30)
        assert r.status_code in (403, 404), (probe, r.status_code)
    with pytest.raises(ValueError, match="not a file of this demo"):
        app.media_token(Path(pytest.__file__))
    # a gallery file is not reachable by its path either
    r = httpx.get(f"{url}/gradio_api/file={thumb}", timeout=30)
    assert r.status_code in (400, 403, 404), r.status_code


def test_media_urls_follow_the_forwarded_host(server):
    """Behind a reverse proxy the browser gets URLs on the proxy's host, not on the loopback address."""
    url, _ = server
    r = httpx.post(f"{url}/gradio_api/call/search", json={"data": ["zoo-bind-mini", "a cat", None, None, None, None]},
                   headers={"X-Forwarded-Host": "zoo.example.org", "X-Forwarded-Proto": "https"}, timeout=60)
    stream = httpx.get(f"{url}/gradio_api/call/search/{r.json()['event_id']}", timeout=120).text
    gallery = json.loads(_events(stream)[-1][1])[0]
    assert gallery and all(e["image"]["url"].startswith("https://zoo.example.org/zoo-media/") for e in gallery)


def test_gallery_manifests_hold_no_paths_and_are_not_served(server):
    url, app = server
    for manifest in (app.gallery_dir / "manifest.json", app.gallery_dir / "user" / "manifest.json"):
        if manifest.is_file():
            for p in _server_paths(app):
                assert p not in manifest.read_text(encoding="utf-8"), manifest
        r = httpx.get(f"{url}/gradio_api/file={manifest}", timeout=30)
        assert r.status_code in (400, 403, 404), (manifest, r.status_code)
    items = app.gallery.items()
    assert all(Path(it.thumb).is_file() for it in items if it.thumb)  # still resolved for the server


def test_error_messages_show_no_server_paths(server, tmp_path):
    url, app = server
    missing = {"path": str(app.cache_dir / "tmp" / "nope" / "gone.png"), "meta": {"_type": "gradio.FileData"}}
    status, text = _call(url, "search", ["zoo-bind-mini", None, missing, None, None, None])
    assert "event: complete" not in text
    for p in _server_paths(app):
        assert p not in text


def _upload(url: str, files: dict[str, bytes]) -> list[dict]:
    """Upload files as the browser does; their FileData, for an API call."""
    r = httpx.post(f"{url}/gradio_api/upload", files=[("files", (n, data)) for n, data in files.items()], timeout=60)
    r.raise_for_status()
    return [{"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}
            for path, name in zip(r.json(), files, strict=True)]


def test_adding_uploads_with_a_bad_one_names_it_by_its_upload_name(server):
    url, app = server
    files = _upload(url, {"tide table.txt": b"High tide at noon, low tide at six in the evening.",
                          "garden.md": b"Tomatoes ripening along the garden fence.",
                          "my broken photo.png": b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 50})
    status, stream = _call(url, "add_files", ["zoo-bind-mini", files])
    assert status == 200 and "event: complete" in stream, stream[:500]
    note = json.loads(_events(stream)[-1][1])[0]
    assert "added: tide table.txt, garden.md" in note, note
    assert "my broken photo.png" in note and "input[0]" not in note, note
    for p in _server_paths(app) + [str(app.temp_dir)]:
        assert p not in stream
    titles = {it.title for it in app.gallery.items()}
    assert {"tide table.txt", "garden.md"} <= titles and "my broken photo.png" not in titles


def test_a_video_to_a_model_without_video_is_a_message_on_the_page(server):
    """A video query or upload to zoo-bind-mini completes with a message that says so (no error event, no path)."""
    from tests.fixtures.clips import pan_frames, write_clip

    url, app = server
    [video] = _upload(url, {"harbour pan.mp4": write_clip(None, pan_frames(8))})
    status, stream = _call(url, "search", ["zoo-bind-mini", None, None, None, None, video])
    assert status == 200 and "event: complete" in stream, stream[:500]
    payload = json.loads(_events(stream)[-1][1])
    assert payload[0] == [] and payload[1]["data"] == [] and payload[2:6] == [None, None, None, ""], payload
    note = payload[-1]  # which models here take video (or that none does) follows
    assert note.startswith("**Error:** zoo-bind-mini does not embed video.") and "on this machine" in note, note
    status, stream = _call(url, "add_files", ["zoo-bind-mini", [video]])
    assert status == 200 and "event: complete" in stream, stream[:500]
    added = json.loads(_events(stream)[-1][1])[0]
    assert "harbour pan.mp4" in added and "does not embed video" in added, added
    for p in _server_paths(app) + [str(app.temp_dir)]:
        assert p not in stream
    assert "harbour pan.mp4" not in {it.title for it in app.gallery.items()}


# ---------------------------------------------------------------------------------------------- 2. no SSRF
def _ssrf_probes(port: int) -> list[str]:
    targets = [f"http://127.0.0.1:{port}/secret.png", f"http://localhost:{port}/secret.png",
               f"http://{FAKE_PUBLIC_HOST}:{port}/secret.png", f"https://{FAKE_PUBLIC_HOST}:{port}/secret.png"]
    out = []
    for t in targets:
        out += [f"/gradio_api/file={t}", f"/gradio_api/file/{t}", f"/gradio_api/proxy={t}",
                f"/gradio_api/file={t.replace('://', '%3A%2F%2F')}", f"/file={t}", f"/proxy={t}"]
    return out


def test_file_and_proxy_routes_fetch_no_url(server, fake_public_dns):
    url, _ = server
    port, seen = fake_public_dns
    for probe in _ssrf_probes(port):
        for method in ("GET", "HEAD"):
            r = httpx.request(method, f"{url}{probe}", timeout=30)
            assert r.status_code >= 400, (method, probe, r.status_code)
            assert b"secret" not in r.content
    assert seen == [], f"the demo fetched {seen}"


def test_api_file_inputs_fetch_no_url(server, fake_public_dns):
    url, _ = server
    port, seen = fake_public_dns
    for host in ("127.0.0.1", FAKE_PUBLIC_HOST):
        remote = f"http://{host}:{port}/query.png"
        for file_data in ({"path": remote, "meta": {"_type": "gradio.FileData"}},
                          {"path": "x.png", "url": remote, "meta": {"_type": "gradio.FileData"}}):
            for slot in (2, 3, 4, 5):
                data = ["zoo-bind-mini", None, None, None, None, None]
                data[slot] = file_data
                status, text = _call(url, "search", data)
                assert "event: complete" not in text, (data, text[:300])
    assert seen == [], f"the demo fetched {seen}"


# ---------------------------------------------------------------------------------------------- 3. API types
FILE = {"path": "x.png", "meta": {"_type": "gradio.FileData"}}
BAD_SEARCH = [
    ["zoo-bind-mini", {"a": 1}, None, None, None, None],
    ["zoo-bind-mini", ["a cat"], None, None, None, None],
    ["zoo-bind-mini", 42, None, None, None, None],
    ["zoo-bind-mini", True, None, None, None, None],
    [{"name": "zoo-bind-mini"}, "a cat", None, None, None, None],
    [["zoo-bind-mini"], "a cat", None, None, None, None],
    ["zoo-bind-mini", "a cat", "/etc/passwd", None, None, None],
    ["zoo-bind-mini", "a cat", {"a": 1}, None, None, None],
    ["zoo-bind-mini", "a cat", 7, None, None, None],
    ["zoo-bind-mini", "a cat", None, [FILE], None, None],
    ["zoo-bind-mini", "a cat", None, None, "cube.glb", None],
    ["zoo-bind-mini", "a cat", None, None, None, "clip.mp4"],
    ["zoo-bind-mini", "a cat", None, None, None, [FILE]],
    ["zoo-bind-mini", "a cat", None, None, None, {"video": FILE}],
    ["zoo-bind-mini", "a cat", None, None, None, "/etc/passwd"],
    ["zoo-bind-mini", "a cat", None, None, None],
    ["zoo-bind-mini", "a cat"],
    ["zoo-bind-mini", "a cat", None, None, None, None, None],
]


def _assert_refused(status: int, text: str, what) -> None:
    if status != 200:
        assert 400 <= status < 500, (what, status, text[:300])
        return
    events = _events(text)
    assert events and events[-1][0] == "error", (what, text[:300])
    message = events[-1][1]
    assert message not in ("", "null", "None", '""'), (what, "an error without a message")
    assert "Traceback" not in message and 'File "' not in message, (what, message)


@pytest.mark.parametrize("data", BAD_SEARCH, ids=[json.dumps(d)[:60] for d in BAD_SEARCH])
def test_search_api_refuses_wrong_types(server, data):
    url, _ = server
    _assert_refused(*_call(url, "search", data), data)


def test_api_endpoints_are_named(server):
    """Every public event has the name it was given (no generated ``prepare_1``), with these inputs."""
    url, _ = server
    assert _api_names(url) == {
        "search": ["model", "text", "image", "audio", "shape", "video"],
        "prepare": ["model"],
        "add_files": ["model", "files"],
        "filter_cards": ["modality", "licence", "offline", "max_params", "dim", "text", "evidence"],
        "show_card": ["name"],
        "heatmap": ["models", "sentences"],
        "stitch": ["model_a", "model_b", "anchors"],
    }


def test_every_api_refuses_wrong_types(server):
    url, _ = server
    apis = _api_names(url)
    assert "search" in apis
    for api, params in apis.items():
        for i in range(len(params)):
            for bad in ({"x": {"y": 1}}, [[1, 2]]):
                data = [None] * len(params)
                data[i] = bad
                _assert_refused(*_call(url, api, data), (api, params[i], bad))
    out = _call(url, "search", ["zoo-bind-mini", "a cat", None, None, None, None])[1]
    assert "event: complete" in out and "chelsea" in out  # the app still answers
