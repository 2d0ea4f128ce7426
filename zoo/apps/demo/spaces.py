"""The Spaces tab: the compatibility heatmap (:mod:`zoo.compat`) of chosen text models over standard-library
sentences, and a stitch explorer (:func:`zoo.stitch`) with held-out recall@1. Hub-only models carry the same label
as on the Search tab, and choosing one says why it cannot run."""

from __future__ import annotations

from collections.abc import Sequence

from zoo.apps.demo.app import DemoApp
from zoo.apps.demo.messages import _guarded, _status
from zoo.apps.demo.settings import NOT_OFFLINE
from zoo.apps.demo.ui import _linked, _linker, model_choices


def _unavailable_message(app: DemoApp, names: Sequence[str]) -> str | None:
    """The Spaces tab's status when chosen models have no weights here (None: all are here)."""
    reasons = [r for r in dict.fromkeys(app.unavailable_reason(n) for n in names if n) if r]
    if not reasons:
        return None
    return (" ".join(f"**{r}**" for r in reasons) + f" Choose models without the \u201c{NOT_OFFLINE.strip()}\u201d "
            "label, or fetch the weights first (`zoo fetch NAME`).")


def spaces_tab(app: DemoApp, cards: list) -> None:
    """The Spaces tab over the text models among ``cards``: the compatibility heatmap and the stitch explorer."""
    import gradio as gr

    @_guarded(on_error=lambda m: (None, [], _status(m)))
    def heatmap(models, sentences, request: gr.Request = None):
        models = list(models or [])
        if len(models) >= 2 and (why := _unavailable_message(app, models)):
            return None, [], why
        n = int(sentences or 120)
        png, rows = app.heatmap(models, n)
        return _linker(app, request)(png), rows, f"{len(models)} models over {n} standard-library sentences."

    @_guarded(on_error=_status)
    def stitch(model_a, model_b, anchors):
        if model_a != model_b and (why := _unavailable_message(app, [model_a, model_b])):
            return why
        q = app.stitch(model_a, model_b, int(anchors or 80))
        lines = [f"**{model_a} -> {model_b}**: Procrustes stitch on {q['anchors']} anchor sentences, "
                 f"{q['held_out']} held out.", ""]
        lines += [f"- {k}: {v:.3f}" for k, v in q.items() if isinstance(v, float)]
        return "\n".join(lines)

    heatmap.__annotations__["request"] = gr.Request  # the real class: this module's annotations are strings

    text_models = [c.name for c in cards if "text" in c.modalities]
    offline_text = [n for n in ("all-minilm-l6-v2", "paraphrase-minilm-l3-v2") if n in text_models]
    text_choices = model_choices(text_models)

    with gr.Tab("Spaces", id="spaces"):
        gr.Markdown("Compatibility of text models over standard-library docstring sentences: linear CKA, "
                    "mutual-kNN and stitched recall@1 (half the sentences anchor the stitch, half are held out).")
        with gr.Row():
            chosen = gr.CheckboxGroup(text_choices, value=offline_text, label="Text models",
                                      elem_id="spaces-models")
            n_sent = gr.Slider(40, 160, value=120, step=10, label="Sentences")
        heat_btn = gr.Button("Compute the heatmap", elem_id="heatmap-button")
        heat_note = gr.Markdown(elem_id="heatmap-status")
        heat_img = _linked(gr.Image(label="Compatibility", interactive=False, type="filepath"))
        heat_table = gr.Dataframe(headers=["model_a", "model_b", "linear_cka", "mutual_knn", "recall@1"],
                                  interactive=False)
        heat_btn.click(heatmap, [chosen, n_sent], [heat_img, heat_table, heat_note], api_name="heatmap",
                       concurrency_limit=1)
        gr.Markdown("### Stitch explorer")
        with gr.Row():
            st_a = gr.Dropdown(text_choices, value=offline_text[0] if offline_text else None, label="From (A)",
                               elem_id="stitch-a")
            st_b = gr.Dropdown(text_choices, value=offline_text[-1] if offline_text else None, label="To (B)",
                               elem_id="stitch-b")
            st_n = gr.Slider(16, 140, value=80, step=4, label="Anchor sentences")
        st_btn = gr.Button("Fit the stitch", elem_id="stitch-button")
        st_out = gr.Markdown(elem_id="stitch-status")
        st_btn.click(stitch, [st_a, st_b, st_n], st_out, api_name="stitch", concurrency_limit=1)
