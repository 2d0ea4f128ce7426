"""The demo's logic and handlers, called directly (no server): search by text, image, paraphrase and shape,
refusals that stay on the page (each action's Markdown status), user uploads, the cards and spaces tabs, the
launch address, and the gallery's vector store and embedding cache on disk.

The gallery is prepared once per session under pytest's base temp folder and shared with
tests/test_demo_browser.py, which then starts from cached vectors, as a restarted demo does.
"""

from __future__ import annotations

import inspect
import re
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


def _handler(blocks, api_name: str):
    """The handler of the event named ``api_name``, as Gradio calls it."""
    return next(f.fn for f in blocks.fns.values() if f.api_name == api_name)


def _component(blocks, elem_id: str):
    return next(b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == elem_id)


@pytest.fixture(scope="module")
def search(blocks):
    """The Search button's handler, as Gradio calls it."""
    return _handler(blocks, "search")


def _query(search, **query) -> tuple:
    args = {"model": "zoo-bind-mini", "text": None, "image": None, "audio": None, "shape": None, "video": None} | query
    return search(*args.values())


def _top(search, **query) -> tuple[str, list]:
    gallery, table, *_, note = _query(search, **query)
    assert table, note
    return table[0][2], table


def _assert_no_paths(app: DemoApp, text: str) -> None:
    for p in (str(app.cache_dir), str(app.cache_dir.parent), "/tmp/", "/home/"):
        assert p not in text, text


def test_build_without_launching(app, blocks):
    assert isinstance(blocks, gr.Blocks)
    assert not getattr(blocks, "is_running", False)
    assert Path(zdemo.os.environ["GRADIO_TEMP_DIR"]) == app.cache_dir / "tmp"
    opts = zdemo.launch_options(app)
    assert opts["server_name"] == "127.0.0.1" and opts["share"] is False
    assert opts["allowed_paths"] == [] and str(app.gallery_dir) in opts["blocked_paths"]
    assert opts["max_file_size"] == "20mb"
    assert blocks._queue.max_size == zdemo.QUEUE_SIZE
    assert not list(Path(zdemo.__file__).parent.glob("*.pyi"))  # building writes nothing into the package


def test_text_query_finds_the_cat(search, app):
    title, table = _top(search, text="a cat")
    assert title == "chelsea"
    assert table[0][1] == "image" and table[0][4] == "image-conse"  # the expert that made the photo's vector
    kinds = {it.kind for it in app.gallery.items()}
    assert kinds == {"image", "audio", "shape", "code", "text", "video"}


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


def test_bad_uploads_are_shown_in_the_note_and_the_app_keeps_working(app, search, tmp_path):
    svg = tmp_path / "x.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 50)
    noise = tmp_path / "noise.wav"
    noise.write_bytes(b"RIFF....WAVEfmt nonsense")
    for bad in ({"image": str(svg)}, {"image": str(broken)}, {"audio": str(noise)}, {"shape": str(broken)},
                {"text": "x" * (zdemo.MAX_TEXT_CHARS + 1)}, {"image": str(tmp_path / "gone" / "missing.png")},
                {"video": str(svg)}, {"video": str(broken)}, {"text": "a cat", "video": str(noise)}):
        gallery, table, audio, shape, video, text, note = _query(search, **bad)
        assert note.startswith("**Error:**") and len(note) > len("**Error:** "), (bad, note)
        assert (gallery, table, audio, shape, video, text) == ([], [], None, None, None, ""), bad
        _assert_no_paths(app, note)
    assert _top(search, text="a cat")[0] == "chelsea"


def test_every_action_writes_its_error_into_its_status(app, blocks, tmp_path):
    """Search, add files, heatmap and stitch put the message into a Markdown output beside the action."""
    markdown = {id(b) for b in blocks.blocks.values() if isinstance(b, gr.Markdown)}
    for api in ("search", "add_files", "heatmap", "stitch"):
        fn = next(f for f in blocks.fns.values() if f.api_name == api)
        assert any(id(c) in markdown for c in fn.outputs), f"{api} has no Markdown status"
    assert _component(blocks, "heatmap-status") in next(f for f in blocks.fns.values()
                                                        if f.api_name == "heatmap").outputs
    missing = str(tmp_path / "gone" / "missing.png")
    note = _query(_handler(blocks, "search"), image=missing)[-1]
    assert "missing" in note
    added = _handler(blocks, "add_files")("zoo-bind-mini", None)
    assert added.startswith("**Error:**") and "choose one or more files" in added
    img, rows, status = _handler(blocks, "heatmap")(["all-minilm-l6-v2"], 60)
    assert (img, rows) == (None, []) and "choose at least two models" in status
    stitched = _handler(blocks, "stitch")("all-minilm-l6-v2", "all-minilm-l6-v2", 60)
    assert stitched.startswith("**Error:**") and "two different models" in stitched
    for text in (note, added, status, stitched):
        _assert_no_paths(app, text)


def test_an_empty_query_clears_the_old_results_and_says_what_to_do(search):
    assert _top(search, text="a cat")[0] == "chelsea"
    for empty in ({}, {"text": ""}, {"text": "   "}):
        gallery, table, audio, shape, video, text, note = _query(search, **empty)
        assert (gallery, table, audio, shape, video, text) == ([], [], None, None, None, "")
        assert "Type a text, or upload an image, a sound, a 3D file or a video" in note


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
    *results, note = _query(search, model=unfetched_card, text="a cat")
    assert "not available offline" in note and results == [[], [], None, None, None, ""]
    labels = dict((v, k) for k, v in zdemo.model_choices())
    assert labels[unfetched_card].endswith("(weights not offline)")
    assert labels["zoo-bind-mini"] == "zoo-bind-mini"


def test_spaces_mark_hub_only_models_and_say_why_they_cannot_run(app, unfetched_card):
    blocks = build_demo(app)  # built after the card is registered
    for elem_id in ("spaces-models", "stitch-a", "stitch-b"):
        choices = dict(_component(blocks, elem_id).choices)
        assert choices[f"{unfetched_card} (weights not offline)"] == unfetched_card, elem_id
        assert choices["all-minilm-l6-v2"] == "all-minilm-l6-v2"
    img, rows, status = _handler(blocks, "heatmap")(["all-minilm-l6-v2", unfetched_card], 60)
    assert (img, rows) == (None, []) and "not available offline" in status and unfetched_card in status
    stitched = _handler(blocks, "stitch")(unfetched_card, "all-minilm-l6-v2", 60)
    assert "not available offline" in stitched and unfetched_card in stitched
    with pytest.raises(zdemo.ZooError, match="not available offline"):
        app.stitch("all-minilm-l6-v2", unfetched_card)


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


def test_adding_files_with_a_bad_third_one_names_it_and_adds_the_others(app, blocks, search, tmp_path):
    """Not all-or-nothing: the good files are added, the bad one is named by its upload name."""
    first, second = tmp_path / "harbour.txt", tmp_path / "orchard.md"
    first.write_text("Fishing boats moored in a quiet harbour at dawn.", encoding="utf-8")
    second.write_text("Apple trees heavy with fruit in an autumn orchard.", encoding="utf-8")
    bad = tmp_path / "holiday snap.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 50)
    noise = tmp_path / "noise.wav"
    noise.write_bytes(b"RIFF....WAVEfmt nonsense")
    with pytest.raises(zdemo.FilesRefused) as refused:
        app.add_files("zoo-bind-mini", [str(first), str(second), str(bad)])
    assert [it.title for it in refused.value.added] == ["harbour.txt", "orchard.md"]
    assert [n for n, _ in refused.value.refused] == ["holiday snap.png"]
    assert "holiday snap.png" in str(refused.value) and "input[0]" not in str(refused.value)
    titles = {it.title for it in app.gallery.items()}
    assert {"harbour.txt", "orchard.md"} <= titles and "holiday snap.png" not in titles
    assert _top(search, text="boats in a harbour")[0] == "harbour.txt"
    note = _handler(blocks, "add_files")("zoo-bind-mini", [str(first), str(noise), str(second)])
    assert "added: harbour.txt, orchard.md" in note and "noise.wav" in note and "input[0]" not in note
    _assert_no_paths(app, note)
    assert not any("noise" in p.name or "holiday" in p.name for p in app.gallery.user_dir.iterdir())


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


def test_cards_tab_opens_the_preselected_card_with_its_evidence_once(app, blocks):
    pick = _component(blocks, "cards-pick")
    first = app.card_rows()[0][0]
    assert pick.value == first
    body = _component(blocks, "cards-markdown").value
    evidence = _component(blocks, "cards-parity").value
    assert f"# {first}" in body and "## Usage" in body
    assert _component(blocks, "cards-snippet").value.strip().endswith(f'zoo.load("{first}")')
    card = zdemo.registry.card(first)
    assert card.parity and card.examples
    parity_line = card.parity.strip().splitlines()[0]
    shown = body + evidence + _component(blocks, "cards-sources").value
    assert shown.count(parity_line) == 1 and shown.count("Parity") == 1
    assert shown.count(card.examples[0].title) == 1
    md, sources, evidence_md, _ = app.card_details("clip-vit-b-32-openai")
    parity = zdemo.registry.card("clip-vit-b-32-openai").parity.strip().splitlines()[0]
    assert (md + sources + evidence_md).count(parity) == 1 and "Parity" not in md


def test_launch_binds_loopback_unless_told_and_honours_the_environment(app, monkeypatch, caplog):
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    assert zdemo.server_address() == ("127.0.0.1", 7860)
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "8123")
    assert zdemo.server_address() == ("0.0.0.0", 8123)
    assert zdemo.server_address("127.0.0.1", 9000) == ("127.0.0.1", 9000)  # explicit arguments win
    monkeypatch.setenv("GRADIO_SERVER_PORT", "eighty")
    with pytest.raises(zdemo.ZooError, match="GRADIO_SERVER_PORT"):
        zdemo.server_address()
    assert zdemo.launch_options(app, "0.0.0.0")["server_name"] == "0.0.0.0"
    assert zdemo.launch_options(app)["server_name"] == "127.0.0.1"
    assert all(zdemo.is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"))
    assert not any(zdemo.is_loopback(h) for h in ("0.0.0.0", "192.168.1.5", "::", "zoo.example.org"))

    launched = []

    class FakeBlocks:
        def launch(self, **kwargs):
            launched.append(kwargs)

    monkeypatch.setattr(zdemo.server, "build_demo", lambda _app: FakeBlocks())  # where launch looks it up
    monkeypatch.setenv("GRADIO_SERVER_PORT", "8123")
    with caplog.at_level("WARNING", logger=zdemo.log.name):
        zdemo.launch(cache_dir=app.cache_dir)  # host and port from the environment
        zdemo.launch(host="127.0.0.1", port=9001, cache_dir=app.cache_dir)
    assert [(k["server_name"], k["server_port"]) for k in launched] == [("0.0.0.0", 8123), ("127.0.0.1", 9001)]
    assert all(k["share"] is False for k in launched)
    warnings = [r.getMessage() for r in caplog.records if r.name == zdemo.log.name]
    assert len(warnings) == 1 and "no authentication" in warnings[0] and "0.0.0.0:8123" in warnings[0]
    assert "\n" not in warnings[0]
    params = inspect.signature(zdemo.launch).parameters
    assert {"port", "model", "host", "cache_dir", "prevent_thread_lock"} <= set(params)


def test_every_event_has_a_name_of_its_own(blocks):
    names = [f.api_name for f in blocks.fns.values()]
    assert len(names) == len(set(names)) and not any(re.search(r"_\d+$", n) for n in names), names
    public = {f.api_name for f in blocks.fns.values() if f.api_visibility == "public"}
    assert public == set(zdemo.API_ENDPOINTS)
    for api, params in zdemo.API_ENDPOINTS.items():  # one input per parameter, in that order (gradio_client's API)
        fn = _handler(blocks, api)
        assert list(inspect.signature(fn).parameters)[:len(params)] == list(params), api
        assert len(next(f for f in blocks.fns.values() if f.api_name == api).inputs) == len(params), api


def test_spaces_heatmap_and_stitch(app):
    png, rows = app.heatmap(["all-minilm-l6-v2", "paraphrase-minilm-l3-v2"], 60)
    assert Path(png).is_file() and Path(png).is_relative_to(app.gallery_dir) and len(rows) == 2
    quality = app.stitch("paraphrase-minilm-l3-v2", "all-minilm-l6-v2", 60)
    assert quality["held_out"] > 0 and 0.0 <= quality["recall_at_1"] <= 1.0
    with pytest.raises(ValueError):
        app.stitch("all-minilm-l6-v2", "all-minilm-l6-v2")
