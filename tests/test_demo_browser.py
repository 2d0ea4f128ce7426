"""The demo in a real browser and over HTTP: the app runs on loopback in this process, Debian's chromium is
driven by playwright (never a downloaded browser), and the server is probed for path traversal, oversized
uploads and concurrent searches.

Screenshots of every step go to a test artifact folder (printed; run with -s to see it). The gallery cache is
shared with tests/test_demo.py (pytest's base temp folder), so after that file this one starts from cached
vectors, like a restarted demo.
"""

from __future__ import annotations

import re
import shutil
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from zoo.demo import DemoApp, build_demo, launch_options

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
STEP_TIMEOUT_MS = 60_000

if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed (/usr/bin/chromium): apt-get install -y chromium",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


UNFETCHED = "unfetched-clip"


@pytest.fixture(scope="module")
def unfetched_card():
    """A registered hub text model whose weights are on no machine (its repository does not exist)."""
    import dataclasses

    from zoo import registry
    from zoo.modelcard import Source

    base = registry.card("clip-vit-l-14-openai")
    card = dataclasses.replace(base, name=UNFETCHED, space=UNFETCHED, path="",
                               sources=(Source(kind="hub", repo="nobody/unfetched-clip", revision="0" * 40),))
    registry.register(card)
    yield card.name
    registry.unregister(card.name)


@pytest.fixture(scope="module")
def server(tmp_path_factory, unfetched_card):
    """(base url, app): the demo launched on 127.0.0.1 in a background thread, closed at the end."""
    import httpx
    from gradio_client import Client

    start = time.perf_counter()
    app = DemoApp(tmp_path_factory.getbasetemp() / "demo-cache")
    state = "cached" if (app.cache_dir / "embeddings.sqlite").is_file() else "cold"
    demo = build_demo(app)
    port = _free_port()
    demo.launch(server_port=port, prevent_thread_lock=True, quiet=True, **launch_options(app))
    url = f"http://127.0.0.1:{port}"
    httpx.get(url, timeout=30).raise_for_status()
    Client(url, verbose=False).predict("zoo-bind-mini", "a cat", None, None, None, None, api_name="/search")
    print(f"\ndemo: {time.perf_counter() - start:.1f} s from start to the first answered query "
          f"({state} gallery)")
    yield url, app
    demo.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("demo-screenshots")
    print(f"\ndemo screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.set_default_timeout(STEP_TIMEOUT_MS)
        page.goto(server[0])
        yield page
        browser.close()


def test_browser_text_search_ranks_the_cat_first(page, artifacts):
    page.locator("#search-status").get_by_text("gallery items indexed").wait_for()
    page.screenshot(path=artifacts / "01-search-ready.png")
    page.locator("#query-text textarea").fill("a cat")
    page.locator("#search-button").click()
    sync_api.expect(page.locator("#search-note")).to_contain_text("best: chelsea", timeout=STEP_TIMEOUT_MS)
    sync_api.expect(page.locator("#search-table")).to_contain_text("image-conse")
    # the result thumbnails come from the media route and really load in the browser
    page.wait_for_function("() => { const im = [...document.querySelectorAll('#search-results img')];"
                           " return im.length > 0 && im.every(e => e.complete && e.naturalWidth > 0); }")
    sources = page.eval_on_selector_all("#search-results img", "els => els.map(e => e.src)")
    assert sources and all("/zoo-media/" in src for src in sources), sources
    page.screenshot(path=artifacts / "02-search-a-cat.png", full_page=True)


def _text_search(page, query: str) -> None:
    page.locator("#query-text textarea").fill(query)
    page.locator("#search-button").click()


def test_browser_photo_query_ranks_the_same_photo_first(page, server, artifacts):
    from zoo import gallery

    page.goto(server[0])
    page.locator("#search-status").get_by_text("gallery items indexed").wait_for()
    coffee = next(p for p in gallery.photos() if p.name == "coffee")
    page.locator("#query-image input[type=file]").set_input_files(str(coffee.path))
    page.locator("#search-button").click()
    sync_api.expect(page.locator("#search-note")).to_contain_text("best: coffee", timeout=STEP_TIMEOUT_MS)
    page.screenshot(path=artifacts / "05-search-coffee-photo.png", full_page=True)


@pytest.mark.parametrize(("query", "best", "shot"), [("a donut shape", "best: torus", "06-search-donut.png"),
                                                     ("expect a lot of rainfall later tomorrow", "best: weather",
                                                      "07-search-spoken-paraphrase.png")])
def test_browser_shape_and_speech_queries(page, server, artifacts, query, best, shot):
    page.goto(server[0])
    page.locator("#search-status").get_by_text("gallery items indexed").wait_for()
    _text_search(page, query)
    sync_api.expect(page.locator("#search-note")).to_contain_text(best, timeout=STEP_TIMEOUT_MS)
    page.screenshot(path=artifacts / shot, full_page=True)


def test_browser_video_query_to_a_model_without_video_says_so(page, server, artifacts, tmp_path):
    from tests.fixtures.clips import pan_frames, write_clip

    clip = tmp_path / "pan.mp4"
    write_clip(clip, pan_frames(16, size=(160, 120)), fps=8, codec="libx264")
    page.goto(server[0])
    page.locator("#search-status").get_by_text("gallery items indexed").wait_for()
    sync_api.expect(page.locator("#best-video")).to_be_attached()
    page.locator("#query-video input[type=file]").set_input_files(str(clip))
    page.locator("#query-video video").wait_for(state="attached")  # the upload is in place
    page.locator("#search-button").click()
    note = page.locator("#search-note")
    sync_api.expect(note).to_contain_text("zoo-bind-mini does not embed video.", timeout=STEP_TIMEOUT_MS)
    sync_api.expect(note).to_contain_text("on this machine")
    sync_api.expect(page.locator(".toast-body")).to_have_count(0)  # a message on the page, not an error toast
    page.screenshot(path=artifacts / "11-search-video-query.png", full_page=True)


def test_browser_cards_filter_to_audio_and_open_one(page, server, artifacts):
    page.goto(server[0])
    page.get_by_role("tab", name="Cards").click()
    box = page.locator("#cards-modality input")
    box.click()
    box.fill("audio")
    page.get_by_role("option", name="audio", exact=True).click()
    table = page.locator("#cards-table")
    sync_api.expect(table).not_to_contain_text("all-minilm-l6-v2", timeout=STEP_TIMEOUT_MS)
    sync_api.expect(table).to_contain_text("whisper-tiny-en")
    page.screenshot(path=artifacts / "03-cards-audio.png", full_page=True)
    first_name = page.locator("#cards-pick input").input_value()  # the filter opens the first match
    assert "audio" in next(r[1] for r in DemoApp.card_rows(modality="audio") if r[0] == first_name)
    sync_api.expect(page.locator("#cards-markdown")).to_contain_text(first_name, timeout=STEP_TIMEOUT_MS)
    sync_api.expect(page.locator("#cards-snippet")).to_contain_text(f'zoo.load("{first_name}")')
    page.screenshot(path=artifacts / "04-card-open.png", full_page=True)


def test_browser_empty_query_clears_the_results_and_says_what_to_do(page, server, artifacts):
    page.goto(server[0])
    page.locator("#search-status").get_by_text("gallery items indexed").wait_for()
    _text_search(page, "a cat")
    sync_api.expect(page.locator("#search-note")).to_contain_text("best: chelsea", timeout=STEP_TIMEOUT_MS)
    _text_search(page, "")
    sync_api.expect(page.locator("#search-note")).to_contain_text("Type a text, or upload an image",
                                                                  timeout=STEP_TIMEOUT_MS)
    sync_api.expect(page.locator("#search-table")).not_to_contain_text("chelsea")
    sync_api.expect(page.locator("#search-results img")).to_have_count(0)
    page.screenshot(path=artifacts / "08-search-empty-query.png", full_page=True)


def test_browser_cards_tab_shows_the_preselected_card_and_its_evidence_once(page, server, artifacts):
    from zoo import registry

    page.goto(server[0])
    page.get_by_role("tab", name="Cards").click()
    name = page.locator("#cards-pick input").input_value()
    assert name == DemoApp.card_rows()[0][0]
    sync_api.expect(page.locator("#cards-markdown")).to_contain_text(name, timeout=STEP_TIMEOUT_MS)
    sync_api.expect(page.locator("#cards-markdown")).to_contain_text("Usage")
    sync_api.expect(page.locator("#cards-parity")).to_contain_text("Parity")
    sync_api.expect(page.locator("#cards-markdown")).not_to_contain_text("Parity")
    parity = re.sub(r"[`*_]", "", registry.card(name).parity.strip().splitlines()[0])[:50]  # as rendered
    shown = "".join(page.locator(f"#cards-{part}").inner_text() for part in ("markdown", "sources", "parity"))
    assert shown.count(parity) == 1 and shown.count("Parity") == 1, parity
    page.screenshot(path=artifacts / "09-cards-preselected.png", full_page=True)


def test_browser_spaces_say_why_a_hub_only_model_cannot_run(page, server, artifacts):
    label = f"{UNFETCHED} (weights not offline)"
    page.goto(server[0])
    page.get_by_role("tab", name="Spaces").click()
    page.locator("#spaces-models").get_by_label("paraphrase-minilm-l3-v2").uncheck()
    page.locator("#heatmap-button").click()  # one model: the reason is written beside the button
    sync_api.expect(page.locator("#heatmap-status")).to_contain_text("choose at least two models",
                                                                     timeout=STEP_TIMEOUT_MS)
    page.locator("#spaces-models").get_by_label(label).check()
    page.locator("#heatmap-button").click()
    status = page.locator("#heatmap-status")
    sync_api.expect(status).to_contain_text(f"{UNFETCHED}: weights not available offline", timeout=STEP_TIMEOUT_MS)
    sync_api.expect(status).to_be_visible()
    box = page.locator("#stitch-a input")
    box.click()
    box.fill(UNFETCHED)
    page.get_by_role("option", name=label, exact=True).click()
    page.locator("#stitch-button").click()
    sync_api.expect(page.locator("#stitch-status")).to_contain_text(f"{UNFETCHED}: weights not available offline",
                                                                    timeout=STEP_TIMEOUT_MS)
    sync_api.expect(page.locator(".toast-body")).to_have_count(0)  # no error toast, the message is on the page
    page.screenshot(path=artifacts / "10-spaces-hub-only-model.png", full_page=True)


def test_gallery_is_served_by_token_and_no_file_by_path(server):
    import httpx

    url, app = server
    gallery_file = next((app.gallery_dir / "photos").glob("*.png"))
    vectors = app.cache_dir / "embeddings.sqlite"
    ok = httpx.get(f"{url}/zoo-media/{app.media_token(gallery_file)}", timeout=30)
    assert ok.status_code == 200 and ok.content == gallery_file.read_bytes()
    assert httpx.get(f"{url}/gradio_api/file={gallery_file}", timeout=30).status_code in (400, 403, 404)
    g = str(app.gallery_dir)
    for probe in ["/etc/passwd", "/ETC/PASSWD", "/etc/../etc/passwd", f"{g}/../../../../../etc/passwd",
                  f"{g}/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd", f"{g}%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
                  f"{g}/..%2F..%2F..%2F..%2F..%2Fetc/passwd", f"{g.upper()}/../../../../../etc/passwd",
                  str(vectors), f"{g}/../{vectors.name}", "file:///etc/passwd"]:
        r = httpx.get(f"{url}/gradio_api/file={probe}", timeout=30)
        assert r.status_code in (400, 403, 404), (probe, r.status_code)
        assert b"root:" not in r.content


def test_oversized_upload_is_refused_and_the_server_keeps_serving(server):
    import httpx
    from gradio_client import Client

    url, _ = server
    big = b"\x00" * (21 * 1024 * 1024)
    r = httpx.post(f"{url}/gradio_api/upload", files={"files": ("big.png", big, "image/png")}, timeout=60)
    assert r.status_code == 413
    out = Client(url, verbose=False).predict("zoo-bind-mini", "a cat", None, None, None, None, api_name="/search")
    assert out[1]["data"][0][2] == "chelsea"


def test_concurrent_searches_match_serial_ones(server):
    from gradio_client import Client

    url, _ = server
    queries = ["a cat", "a cup of coffee", "a torus", "expect a lot of rainfall later tomorrow"]
    client = Client(url, verbose=False)

    def ask(q: str) -> list:
        return client.predict("zoo-bind-mini", q, None, None, None, None, api_name="/search")[1]["data"]

    serial = {q: ask(q) for q in queries}
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(ask, queries * 4))
    assert len(results) == 16
    for q, got in zip(queries * 4, results, strict=True):
        assert got == serial[q], q


def test_screenshots_were_written(artifacts):
    shots = sorted(p.name for p in artifacts.glob("*.png"))
    assert shots == ["01-search-ready.png", "02-search-a-cat.png", "03-cards-audio.png", "04-card-open.png",
                     "05-search-coffee-photo.png", "06-search-donut.png", "07-search-spoken-paraphrase.png",
                     "08-search-empty-query.png", "09-cards-preselected.png", "10-spaces-hub-only-model.png",
                     "11-search-video-query.png"]
    keep = Path("/tmp/zoo-demo-screenshots")  # a stable copy for people reading the test log
    shutil.copytree(artifacts, keep, dirs_exist_ok=True)
