"""The Search tab: a query (a text, an image, a sound, a 3D file, a video; several are averaged) against the gallery
indexed with the chosen model; results with thumbnails, players, a 3D preview, scores and the experts that made
each item's vector (``embed(...).info["experts"]`` / ``["expert_weights"]`` of binding composites); users may add
their own files."""

from __future__ import annotations

from collections.abc import Callable

from zoo.apps.demo.app import DemoApp
from zoo.apps.demo.items import FilesRefused, Hit
from zoo.apps.demo.messages import _guarded, _status, _without_paths
from zoo.apps.demo.settings import (
    AUDIO_SUFFIXES,
    IMAGE_SUFFIXES,
    SEARCH_CONCURRENCY,
    SHAPE_SUFFIXES,
    TEXT_SUFFIXES,
    VIDEO_SUFFIXES,
)
from zoo.apps.demo.ui import _linked, _linker, model_choices


def _result_outputs(hits: list[Hit], query_experts: str, link: Callable[[str], str]):
    """The search outputs; ``link`` turns a gallery file into the URL the browser fetches it from."""
    gallery = [(link(h.item.thumb), f"{r}. {h.item.title}  {h.score:.3f}  [{h.experts}]")
               for r, h in enumerate(hits, 1) if h.item.thumb]
    table = [[r, h.item.kind, h.item.title, round(h.score, 4), h.experts] for r, h in enumerate(hits, 1)]
    audio = next((link(h.item.path) for h in hits if h.item.kind == "audio"), None)
    shape = next((link(h.item.path) for h in hits if h.item.kind == "shape"), None)
    video = next((link(h.item.path) for h in hits if h.item.kind == "video"), None)
    text = next((h.item.text for h in hits if h.item.kind in ("code", "text")), "")
    note = f"query embedded by **{query_experts}**; best: **{hits[0].item.title}** ({hits[0].score:.3f})"
    return gallery, table, audio, shape, video, text, note


def _no_results(message: str) -> tuple:
    """The search outputs emptied, with ``message`` in the search note (old results do not stay on the page)."""
    return [], [], None, None, None, "", message


def search_tab(app: DemoApp, demo) -> None:
    """The Search tab (inside ``demo``, the gr.Blocks being built): the query inputs, the results, the user
    uploads and the whole gallery, prepared when the page loads and when the model changes."""
    import gradio as gr

    @_guarded(on_error=lambda m: (_status(m), []))
    def prepare(model, request: gr.Request = None, progress=gr.Progress()):  # noqa: B008 (Gradio's progress protocol)
        reason = app.unavailable_reason(model)
        if reason:
            return f"**{reason}** Pick an offline-ready model to search.", []
        items, _ = app.index(model, lambda f, d: progress(f, desc=d))
        link = _linker(app, request)
        return f"{len(items)} gallery items indexed with **{model}**.", [(link(it.thumb), it.title)
                                                                          for it in items.values() if it.thumb]

    @_guarded(on_error=lambda m: _no_results(_status(m)))
    def search(model, text, image, audio, shape, video, request: gr.Request = None):
        if not (text and text.strip()) and not (image or audio or shape or video):
            return _no_results("Type a text, or upload an image, a sound, a 3D file or a video, then press "
                               "**Search**.")
        hits, query_experts = app.search(model, text=text, image=image, audio=audio, shape=shape, video=video)
        return _result_outputs(hits, query_experts, _linker(app, request))

    @_guarded(on_error=_status)
    def add_files(model, files):
        if not files:
            raise ValueError("choose one or more files to add")
        try:
            added = app.add_files(model, [getattr(f, "name", f) for f in files])
        except FilesRefused as exc:
            done = ["added: " + ", ".join(it.title for it in exc.added)] if exc.added else []
            return "\n\n".join([*done, _status(_without_paths(str(exc)))])
        return "added: " + ", ".join(it.title for it in added)

    for fn in (prepare, search):  # the real class: this module's annotations are strings, and gr is local
        fn.__annotations__["request"] = gr.Request

    with gr.Tab("Search", id="search"):
        status = gr.Markdown("preparing the gallery ...", elem_id="search-status")
        model = gr.Dropdown(model_choices(), value=app.default_model, label="Model", elem_id="search-model")
        with gr.Row():
            q_text = gr.Textbox(label="Text query", placeholder="a cat", elem_id="query-text", max_lines=3)
            q_image = gr.Image(type="filepath", sources=["upload", "clipboard"], label="Image query",
                               elem_id="query-image")
            q_audio = gr.Audio(type="filepath", sources=["upload", "microphone"], label="Sound query")
            q_shape = gr.File(file_types=list(SHAPE_SUFFIXES), label="3D query (.glb .obj .stl .ply)")
            q_video = gr.Video(sources=["upload"], label="Video query", elem_id="query-video")
        go = gr.Button("Search", variant="primary", elem_id="search-button")
        note = gr.Markdown(elem_id="search-note")
        results = gr.Gallery(label="Results", columns=5, height=420, elem_id="search-results")
        table = gr.Dataframe(headers=["rank", "kind", "item", "score", "experts"], elem_id="search-table",
                             interactive=False)
        with gr.Row():
            best_audio = _linked(gr.Audio(label="Best sound hit", interactive=False))
            best_shape = _linked(gr.Model3D(label="Best 3D hit"))
            best_video = _linked(gr.Video(label="Best video hit", interactive=False, elem_id="best-video"))
            best_text = gr.Code(label="Best text or code hit", language="python", interactive=False)
        with gr.Accordion("Add your own files to the gallery", open=False):
            uploads = gr.File(file_count="multiple", label="images, sounds, 3D files, videos, .txt/.py/.md",
                              file_types=list(IMAGE_SUFFIXES + AUDIO_SUFFIXES + SHAPE_SUFFIXES + VIDEO_SUFFIXES
                                              + TEXT_SUFFIXES),
                              elem_id="add-files")
            add_btn = gr.Button("Add to gallery", elem_id="add-button")
            add_note = gr.Markdown(elem_id="add-status")
        with gr.Accordion("The whole gallery", open=False):
            everything = gr.Gallery(columns=8, height=360, show_label=False)
        outputs = [results, table, best_audio, best_shape, best_video, best_text, note]
        gr.on([go.click, q_text.submit], search, [model, q_text, q_image, q_audio, q_shape, q_video], outputs,
              api_name="search", concurrency_limit=SEARCH_CONCURRENCY, concurrency_id="search")
        add_btn.click(add_files, [model, uploads], add_note, api_name="add_files", concurrency_id="search").then(
            prepare, model, [status, everything], api_name="refresh_gallery", api_visibility="private",
            concurrency_id="search")
        gr.on([demo.load, model.change], prepare, model, [status, everything], api_name="prepare",
              concurrency_id="search")
