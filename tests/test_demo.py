"""The demo's logic and handlers, called directly (no server): search by text, image, paraphrase and shape,
refusals that reach the user as gr.Error, user uploads, the cards and spaces tabs, and the gallery's vector
store and embedding cache on disk.

The gallery is prepared once per session under pytest's base temp folder and shared with
tests/test_demo_browser.py, which then starts from cached vectors, as a restarted demo does.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import gradio as gr
import pytest

from zoo import demo as zdemo
from zoo.demo import DemoApp, build_demo


def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "demo-cache"


@pytest.fixture(scope="module")
def app(tmp_path_factory, offline_hub) -> DemoApp:
    return DemoApp(shared_cache(tmp_path_factory))


@pytest.fixture(scope="module")
def blocks(app):
    return build_demo(app)


@pytest.fixture(scope="module")
def search(blocks):
    """The Search button's handler, as Gradio calls it."""
    return next(f.fn for f in blocks.fns.values() if f.api_name == "search")


def _top(search, **query) -> tuple[str, list]:
    args = {"model": "zoo-bind-mini", "text": None, "image": None, "audio": None, "shape": None} | query
    gallery, table, *_ = search(*args.values())
    return table[0][2], table


def test_build_without_launching(app, blocks):
    assert isinstance(blocks, gr.Blocks)
    assert not getattr(blocks, "is_running", False)
    assert Path(zdemo.os.environ["GRADIO_TEMP_DIR"]) == app.cache_dir / "tmp"
    opts = zdemo.launch_options(app)
    assert opts["server_name"] == "127.0.0.1" and opts["share"] is False
    assert opts["allowed_paths"] == [] and str(app.gallery_dir) in opts["blocked_paths"]
    assert opts["max_file_size"] == "20mb"
    assert blocks._queue.max_size == zdemo.QUEUE_SIZE
    assert not Path(zdemo.__file__).with_suffix(".pyi").exists()  # building writes nothing into the package


def test_text_query_finds_the_cat(search, app):
    title, table = _top(search, text="a cat")
    assert title == "chelsea"
    assert table[0][1] == "image" and table[0][4] == "image-conse"  # the expert that made the photo's vector
    kinds = {it.kind for it in app.gallery.items()}
    assert kinds == {"image", "audio", "shape", "code", "text"}


def test_uploaded_photo_finds_the_coffee(search, tmp_path):
    import skimage.data

    upload = tmp_path / "my photo.png"
    shutil.copyfile(Path(skimage.data.data_dir) / "coffee.png", upload)
    assert _top(search, image=str(upload))[0] == "coffee"


def test_torus_query_finds_a_torus(search):
    assert _top(search, text="a torus")[0].startswith("torus")


def test_donut_query_finds_a_torus(search):
    assert _top(search, text="a donut shape")[0].startswith("torus")


def test_paraphrase_finds_the_spoken_clip(search):
    title, table = _top(search, text="expect a lot of rainfall later tomorrow")
    assert title == "weather"
    assert "speech-transcript" in table[0][4] and "speech-audio" in table[0][4]


def test_uploaded_sound_and_shape_query(search, tmp_path):
    from zoo import gallery, shapes

    clip = next(c for c in gallery.speech_clips() if c.name == "coffee")
    assert _top(search, audio=str(clip.path))[0] == "coffee"
    mesh = shapes.make_mesh("helix", 5)
    mesh.export(tmp_path / "spring.glb")
    assert _top(search, shape=str(tmp_path / "spring.glb"))[0].startswith("helix")


def test_bad_uploads_are_gr_errors_and_the_app_keeps_working(search, tmp_path):
    svg = tmp_path / "x.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 50)
    noise = tmp_path / "noise.wav"
    noise.write_bytes(b"RIFF....WAVEfmt nonsense")
    for bad in ({"image": str(svg)}, {"image": str(broken)}, {"audio": str(noise)}, {"shape": str(broken)},
                {}, {"text": "x" * (zdemo.MAX_TEXT_CHARS + 1)}):
        with pytest.raises(gr.Error):
            _top(search, **bad)
    assert _top(search, text="a cat")[0] == "chelsea"


@pytest.fixture
def unfetched_card():
    """A hub card whose weights no test fixture writes (the session's hub cache holds tiny copies of many)."""
    import dataclasses

    from zoo import registry
    from zoo.modelcard import Source

    base = registry.card("clip-vit-l-14-openai")
    card = dataclasses.replace(base, name="unfetched-clip", space="unfetched-clip", path="",
                               sources=(Source(kind="hub", repo="nobody/unfetched-clip", revision="0" * 40),))
    registry.register(card)
    yield card.name
    registry.unregister(card.name)


def test_unavailable_model_says_so(app, search, unfetched_card):
    reason = app.unavailable_reason(unfetched_card)
    assert reason and "not available offline" in reason
    with pytest.raises(gr.Error, match="not available offline"):
        _top(search, model=unfetched_card, text="a cat")
    labels = dict((v, k) for k, v in zdemo.model_choices())
    assert labels[unfetched_card].endswith("(weights not offline)")


def test_user_files_join_the_gallery(app, search, tmp_path):
    note = tmp_path / "note.txt"
    note.write_text("A lighthouse keeper's diary about storms at sea.", encoding="utf-8")
    added = app.add_files("zoo-bind-mini", [str(note)])
    assert added[0].kind == "text"
    assert _top(search, text="the diary of a lighthouse keeper")[0] == "note.txt"
    rows = len(app.collection("zoo-bind-mini"))
    app.add_files("zoo-bind-mini", [str(note)])  # the same file again is stored once
    assert len(app.collection("zoo-bind-mini")) == rows
    assert [h.item.title for h in app.search(text="the diary of a lighthouse keeper")[0]].count("note.txt") == 1
    page = tmp_path / "page.html"
    page.write_text("<script>alert(1)</script>")
    with pytest.raises(ValueError, match="not accepted"):
        app.add_files("zoo-bind-mini", [str(page)])
    assert not any(p.suffix == ".html" for p in app.gallery.user_dir.iterdir())


def _count_embeds(app: DemoApp, monkeypatch) -> list[tuple[str, int]]:
    """Watch the model's uncached embed calls: (modality, number of inputs) per call."""
    calls = []
    model = app.model("zoo-bind-mini")
    real = type(model).embed

    def watched(self, inputs, *args, **kwargs):
        if kwargs.get("cache") is None:
            calls.append((kwargs.get("modality"), len(inputs)))
        return real(self, inputs, *args, **kwargs)

    monkeypatch.setattr(type(model), "embed", watched)
    return calls


def test_restart_reuses_the_stored_vectors(app, search, monkeypatch):
    _top(search, text="a cat")  # the collection exists on disk
    restarted = DemoApp(app.cache_dir)
    calls = _count_embeds(restarted, monkeypatch)
    hits, _ = restarted.search("zoo-bind-mini", text="a cat")
    assert hits[0].item.title == "chelsea" and hits[0].experts == "image-conse"
    assert calls == [("text", 1)]  # only the query was embedded


def test_a_lost_store_is_refilled_from_the_embedding_cache(app, search, monkeypatch, tmp_path):
    expected = [(h.item.title, round(h.score, 5)) for h in app.search(text="a cat")[0]]
    copy = tmp_path / "demo-cache"
    shutil.copytree(app.cache_dir, copy, ignore=shutil.ignore_patterns("store", "tmp"))
    restarted = DemoApp(copy)
    calls = _count_embeds(restarted, monkeypatch)
    hits, _ = restarted.search("zoo-bind-mini", text="a cat")
    assert [(h.item.title, round(h.score, 5)) for h in hits] == expected
    assert calls == [("text", 1)]  # every gallery vector came from the cache
    assert restarted.cache.hits == len(restarted.collection("zoo-bind-mini")) and restarted.cache.misses == 0
    assert hits[0].experts == "zoo-bind-mini"  # the cache keeps vectors, not which experts made them


def test_a_changed_card_gets_a_new_collection(app, monkeypatch):
    import dataclasses

    from zoo import registry

    name = app.collection("zoo-bind-mini").name
    card = registry.card("zoo-bind-mini")
    monkeypatch.setattr(registry, "card", lambda n: dataclasses.replace(card, description=card.description + "!"))
    assert app.collection("zoo-bind-mini").name != name


def test_cards_filters_and_details(app):
    audio = app.card_rows(modality="audio")
    assert audio and all("audio" in r[1] for r in audio)
    offline = app.card_rows(offline_only=True, text="minilm")
    assert {r[0] for r in offline} >= {"all-minilm-l6-v2", "paraphrase-minilm-l3-v2"}
    assert all(r[2] == 384 for r in app.card_rows(dim="384"))
    md, sources, parity, snippet = app.card_details("clip-vit-l-14-openai")
    assert "clip-vit-l-14-openai" in md and "revision `" in sources and parity
    assert snippet.strip().endswith('zoo.load("clip-vit-l-14-openai")')


def test_spaces_heatmap_and_stitch(app):
    png, rows = app.heatmap(["all-minilm-l6-v2", "paraphrase-minilm-l3-v2"], 60)
    assert Path(png).is_file() and Path(png).is_relative_to(app.gallery_dir) and len(rows) == 2
    quality = app.stitch("paraphrase-minilm-l3-v2", "all-minilm-l6-v2", 60)
    assert quality["held_out"] > 0 and 0.0 <= quality["recall_at_1"] <= 1.0
    with pytest.raises(ValueError):
        app.stitch("all-minilm-l6-v2", "all-minilm-l6-v2")
