"""The Cards tab: every registered card, filtered by modality, licence, offline readiness, size, width and what
its claims were checked by, with free-text search, the rendered card, its sources, its evidence and a
``zoo.load`` snippet."""

from __future__ import annotations

from zoo.apps.demo.app import DemoApp
from zoo.apps.demo.card_text import NOT_CHECKED, PARAM_BUCKETS
from zoo.apps.demo.messages import _guarded, _status


def cards_tab(app: DemoApp, cards: list) -> None:
    """The Cards tab over ``cards`` (every registered card): the filters, the table, and the chosen card."""
    import gradio as gr

    @_guarded
    def filter_cards(modality, licence, offline, max_params, dim, text, evidence):
        rows = app.card_rows(modality, licence, offline, max_params, dim, text or "", evidence)
        names = [r[0] for r in rows]
        return rows, gr.update(choices=names, value=names[0] if names else None)

    @_guarded(on_error=lambda m: (_status(m), "", "", ""))
    def show_card(name):
        if not name:
            return "", "", "", ""
        return app.card_details(name)

    first_card = next(iter(app.card_rows()), [None])[0]
    first_details = app.card_details(first_card) if first_card else ("", "", "", "")
    from zoo.catalog.modelcard import EVIDENCE, MODALITIES

    with gr.Tab("Cards", id="cards"):
        with gr.Row():
            f_mod = gr.Dropdown(["any", *MODALITIES], value="any", label="Modality", elem_id="cards-modality")
            f_lic = gr.Dropdown(["any", *sorted({c.license for c in cards})], value="any", label="Licence")
            f_par = gr.Dropdown(list(PARAM_BUCKETS), value="any", label="Parameters")
            f_dim = gr.Dropdown(["any", *map(str, sorted({c.dim for c in cards}))], value="any", label="Dims")
            f_off = gr.Checkbox(label="offline-ready only")
        with gr.Row():
            f_txt = gr.Textbox(label="Search the cards", placeholder="speech, multilingual, code ...")
            f_evi = gr.Dropdown(["any", *EVIDENCE, NOT_CHECKED], value="any", label="Checked by",
                                elem_id="cards-evidence")
        headers = ["name", "modalities", "dim", "params", "licence", "offline", "checked by"]
        card_table = gr.Dataframe(headers=headers, value=app.card_rows(), interactive=False, elem_id="cards-table")
        pick = gr.Dropdown([c.name for c in cards], value=first_card, label="Open a card", elem_id="cards-pick")
        snippet = gr.Code(first_details[3], language="python", label="Load it", buttons=["copy"],
                          elem_id="cards-snippet")
        with gr.Row():
            sources = gr.Markdown(first_details[1], elem_id="cards-sources")
            parity = gr.Markdown(first_details[2], elem_id="cards-parity")
        card_md = gr.Markdown(first_details[0], elem_id="cards-markdown")
        filters = [f_mod, f_lic, f_off, f_par, f_dim, f_txt, f_evi]
        gr.on([f.submit if f is f_txt else f.change for f in filters], filter_cards, filters, [card_table, pick],
              api_name="filter_cards")
        pick.change(show_card, pick, [card_md, sources, parity, snippet], api_name="show_card")
