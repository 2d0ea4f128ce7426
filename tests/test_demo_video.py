"""Videos in the demo's Search tab: the gallery's sample videos, video queries and video uploads.

Without a video model here (the two video cards' weights come from the Hugging Face hub; the session's tiny VLM
cache may already exist, so these tests make the video cards unavailable themselves) a video query and a video
upload say so, and say that no model here takes video. With the tiny random-weight Qwen3-VL-Embedding
(tests/fixtures/tiny_vlm.py) the gallery's videos are indexed: each sample video, as a query, finds itself first,
a text query finds videos among the hits, and uploaded videos join the gallery; over HTTP, gradio_client sends a
video query to the ``search`` endpoint and gets the best video hit back as a media URL.

The gallery is the one tests/test_demo.py prepares (pytest's base temp folder), copied, so that what these tests
add stays here.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import gradio as gr
import pytest

from tests.fixtures.clips import pan_frames, write_clip
from tests.fixtures.tiny_vlm import tiny_vlm_cache  # noqa: F401
from zoo import demo as zdemo
from zoo.catalog import registry
from zoo.demo import DemoApp, build_demo

QWEN3 = "qwen3-vl-embedding-2b"
VIDEO_CARDS = ("vlm2vec-v2.0", QWEN3)


@pytest.fixture(scope="module")
def app(tmp_path_factory, offline_hub) -> DemoApp:
    """A copy of the shared demo cache (the gallery and its embedding cache, built by tests/test_demo.py)."""
    shared = DemoApp(tmp_path_factory.getbasetemp() / "demo-cache")
    shared.index("zoo-bind-mini")  # the gallery and zoo-bind-mini's vectors, if no test has made them yet
    copy = tmp_path_factory.mktemp("demo-video") / "demo-cache"
    shutil.copytree(shared.cache_dir, copy, ignore=shutil.ignore_patterns("store", "tmp", "user"))
    return DemoApp(copy)


@pytest.fixture(scope="module")
def blocks(app):
    return build_demo(app)


def _handler(blocks, api_name: str):
    return next(f for f in blocks.fns.values() if f.api_name == api_name)


@pytest.fixture
def no_video_model_here(monkeypatch):
    """The video cards' weights are not on this machine, whatever the session's hub cache holds."""
    real = DemoApp.unavailable_reason

    def unavailable(self, name):
        return f"{name}: weights not available offline." if name in VIDEO_CARDS else real(self, name)

    monkeypatch.setattr(DemoApp, "unavailable_reason", unavailable)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A short MPEG-4 clip panning across the rocket photo (not in the gallery's videos)."""
    path = tmp_path_factory.mktemp("clips") / "rocket pan.mp4"
    write_clip(path, pan_frames(12, size=(96, 64), photo="rocket"), fps=8)
    return path


def _videos(app: DemoApp) -> list:
    return [it for it in app.gallery.items() if it.kind == "video" and it.id.startswith("video/")]


def test_settings_and_the_search_event_take_video(blocks):
    from zoo.inputs.limits import FILE_SUFFIXES

    assert set(zdemo.VIDEO_SUFFIXES) <= set(FILE_SUFFIXES["video"]) and ".mp4" in zdemo.VIDEO_SUFFIXES
    assert zdemo.KIND_MODALITY["video"] == "video"
    assert zdemo.API_ENDPOINTS["search"] == ("model", "text", "image", "audio", "shape", "video")
    search = _handler(blocks, "search")
    assert isinstance(search.inputs[-1], gr.Video) and search.inputs[-1].elem_id == "query-video"
    assert search.inputs[-1].sources == ["upload"]
    assert [type(c).__name__ for c in search.outputs].count("Video") == 1
    best = next(c for c in search.outputs if isinstance(c, gr.Video))
    assert best.label == "Best video hit" and best.elem_id == "best-video"
    uploads = next(b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == "add-files")
    assert set(zdemo.VIDEO_SUFFIXES) <= set(uploads.file_types)


def test_the_gallery_has_small_sample_videos_with_thumbnails(app):
    from PIL import Image

    from zoo.inputs.video import load_video

    videos = _videos(app)
    assert [v.title for v in videos] == [f"{name} (video)" for name in zdemo.VIDEO_PHOTOS]
    for v in videos:
        assert Path(v.path).suffix == ".mp4" and Path(v.path).stat().st_size < 200_000, v
        decoded = load_video(v.path)
        assert decoded.frames.shape[1:] == (120, 160, 3) and 2 <= decoded.total_frames / decoded.fps <= 3
        with Image.open(v.thumb) as thumb:
            assert thumb.format == "PNG" and thumb.size == (160, 120)
    assert app.gallery.version.read_text() == "2"
    # only models that take video index them
    items, _ = app.index("zoo-bind-mini")
    assert not any(it.kind == "video" for it in items.values())


def test_a_gallery_from_before_videos_is_built_again_keeping_user_files(tmp_path, app):
    old = tmp_path / "gallery"
    shutil.copytree(app.gallery_dir, old, ignore=shutil.ignore_patterns("videos", "version", "plots"))
    (old / "user").mkdir(exist_ok=True)
    (old / "user" / "manifest.json").write_text("[]")
    gallery = zdemo.Gallery(old)
    assert sum(it.kind == "video" for it in gallery.items()) == len(zdemo.VIDEO_PHOTOS)
    assert (old / "user" / "manifest.json").is_file()


def test_video_query_without_a_video_model_here_says_so(app, blocks, clip, no_video_model_here):
    *results, message = _handler(blocks, "search").fn("zoo-bind-mini", None, None, None, None, str(clip))
    assert results == [[], [], None, None, None, ""]
    assert message.startswith("**Error:** zoo-bind-mini does not embed video."), message
    assert ("No model with weights on this machine takes video: qwen3-vl-embedding-2b, vlm2vec-v2.0 need their "
            "weights from the Hugging Face hub (zoo fetch NAME).") in message
    assert "Traceback" not in message and str(clip.parent) not in message
    with pytest.raises(ValueError, match="No model with weights on this machine takes video"):
        app.search("zoo-bind-mini", text="a rocket", video=str(clip))  # no part of the query is embedded


def test_the_message_names_the_video_models_that_are_here(app, clip, monkeypatch):
    monkeypatch.setattr(DemoApp, "unavailable_reason", lambda self, name: None if name != "vlm2vec-v2.0" else "no")
    with pytest.raises(ValueError) as refused:
        app.search("zoo-bind-mini", video=str(clip))
    assert str(refused.value) == ("zoo-bind-mini does not embed video. Models with weights on this machine that "
                                  "take it: qwen3-vl-embedding-2b.")
    takers = [n for n in registry.list_models() if "video" in registry.card(n).modalities]
    assert app.models_taking("video") == ([n for n in takers if n != "vlm2vec-v2.0"], ["vlm2vec-v2.0"])


def test_a_video_upload_to_a_model_without_video_is_refused(app, blocks, clip, no_video_model_here):
    with pytest.raises(zdemo.FilesRefused) as refused:
        app.add_files("zoo-bind-mini", [str(clip)])
    assert refused.value.added == []
    [(name, reason)] = refused.value.refused
    assert name == "rocket pan.mp4" and reason.startswith("zoo-bind-mini does not embed video."), reason
    note = _handler(blocks, "add_files").fn("zoo-bind-mini", [str(clip)])
    assert "rocket pan.mp4" in note and "does not embed video" in note and note.startswith("**Error:**")
    assert not app.gallery.user_dir.is_dir() or not any(app.gallery.user_dir.glob("*.mp4"))


def test_a_video_query_over_the_size_limit_is_refused(app, tmp_path):
    big = tmp_path / "big.mp4"
    with big.open("wb") as f:
        f.write(write_clip(None, pan_frames(4)))
        f.truncate(zdemo.MAX_FILE_BYTES + 1)
    with pytest.raises(ValueError, match="over the 20mb limit"):
        app.query_vector(QWEN3, video=str(big))
    with pytest.raises(ValueError, match="not accepted here"):
        app.query_vector(QWEN3, video=str(tmp_path / "clip.gif"))


# -- with a video model here (the tiny random-weight Qwen3-VL-Embedding) -----------------------------------------
@pytest.fixture(scope="module")
def qwen3(app, tiny_vlm_cache):  # noqa: F811
    assert app.unavailable_reason(QWEN3) is None
    app.index(QWEN3)
    return app


def test_each_sample_video_finds_itself_first(qwen3):
    for video in _videos(qwen3):
        hits, experts = qwen3.search(QWEN3, video=video.path)
        assert hits[0].item.id == video.id, [(h.item.title, h.score) for h in hits[:3]]
        assert hits[0].score == pytest.approx(1.0, abs=1e-3) and experts.startswith("video: ")


def test_a_video_query_shows_the_best_video_hit(qwen3, blocks, tmp_path):
    sample = _videos(qwen3)[0]
    upload = tmp_path / "my clip.mp4"
    shutil.copyfile(sample.path, upload)  # an upload of the same bytes
    gallery, table, audio, shape, video, text, note = _handler(blocks, "search").fn(
        QWEN3, None, None, None, None, str(upload))
    assert table[0][1:3] == ["video", sample.title] and f"best: **{sample.title}**" in note
    assert video.startswith("http://127.0.0.1:7860/zoo-media/") and video.endswith(".mp4")
    token = video.rsplit("/", 1)[1]
    assert qwen3.media_file(token) == Path(sample.path)
    assert gallery[0][0].endswith(".png") and qwen3.media_file(gallery[0][0].rsplit("/", 1)[1]) == Path(sample.thumb)


def test_a_text_query_finds_videos_among_the_hits(qwen3):
    items, _ = qwen3.index(QWEN3)
    assert {it.kind for it in items.values()} == {"image", "video", "text"}  # no code: the card takes none
    hits, experts = qwen3.search(QWEN3, text="an astronaut in a spacesuit", k=len(items))
    assert experts.startswith("text: ")
    assert {h.item.id for h in hits if h.item.kind == "video"} == {v.id for v in _videos(qwen3)}


def test_uploaded_videos_join_the_gallery_and_broken_ones_are_refused(qwen3, clip, tmp_path):
    broken = tmp_path / "broken.webm"
    broken.write_bytes(b"\x1a\x45\xdf\xa3" + b"\x00garbage" * 40)
    big = tmp_path / "huge.mov"
    shutil.copyfile(clip, big)
    with big.open("r+b") as f:
        f.truncate(zdemo.MAX_FILE_BYTES + 1)
    with pytest.raises(zdemo.FilesRefused) as refused:
        qwen3.add_files(QWEN3, [str(clip), str(broken), str(big)])
    [added] = refused.value.added
    assert added.kind == "video" and added.title == "rocket pan.mp4" and Path(added.thumb).suffix == ".png"
    reasons = dict(refused.value.refused)
    assert set(reasons) == {"broken.webm", "huge.mov"} and "limit" in reasons["huge.mov"]
    assert str(tmp_path) not in str(refused.value)
    assert not any(p.suffix in (".webm", ".mov") for p in qwen3.gallery.user_dir.iterdir())
    hits, _ = qwen3.search(QWEN3, video=str(clip))
    assert hits[0].item.title == "rocket pan.mp4" and hits[0].score == pytest.approx(1.0, abs=1e-3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_search_endpoint_takes_a_video_over_http(qwen3):
    import httpx
    from gradio_client import Client, handle_file

    demo = build_demo(qwen3)
    port = _free_port()
    demo.launch(server_port=port, prevent_thread_lock=True, quiet=True, **zdemo.launch_options(qwen3))
    try:
        url = f"http://127.0.0.1:{port}"
        client = Client(url, verbose=False, download_files=False)
        params = [p["parameter_name"] for p in client.view_api(print_info=False, return_format="dict")
                  ["named_endpoints"]["/search"]["parameters"]]
        assert tuple(params) == zdemo.API_ENDPOINTS["search"]
        sample = _videos(qwen3)[1]
        out = client.predict(QWEN3, None, None, None, None, handle_file(sample.path), api_name="/search")
        gallery, table, audio, shape, video, text, note = out
        assert table["data"][0][2] == sample.title and f"best: **{sample.title}**" in note
        media = video["url"] if isinstance(video, dict) else video
        assert f"{url}/zoo-media/" in media, video
        served = httpx.get(media, timeout=30)
        assert served.status_code == 200 and served.content == Path(sample.path).read_bytes()
        assert served.headers["content-type"] == "video/mp4"
        for p in (str(qwen3.cache_dir), str(qwen3.cache_dir.parent)):
            assert p not in str(out)
    finally:
        demo.close()
