"""The demo's gr.Blocks (:func:`build_demo`): the tabs of :mod:`.search`, :mod:`.cards` and :mod:`.spaces`
assembled under one title, with a bounded queue. Built, not launched."""

from __future__ import annotations

from zoo.apps.demo.app import DemoApp
from zoo.apps.demo.cards import cards_tab
from zoo.apps.demo.search import search_tab
from zoo.apps.demo.settings import QUEUE_SIZE, configure_environment
from zoo.apps.demo.spaces import spaces_tab
from zoo.catalog import registry


def build_demo(app: DemoApp | None = None):
    """The gr.Blocks of the demo (not launched). Its public API endpoints are :data:`API_ENDPOINTS`."""
    app = app or DemoApp()
    configure_environment(app.cache_dir)
    import gradio as gr

    cards = [registry.card(n) for n in registry.list_models()]
    with gr.Blocks(title="embedding-zoo demo") as demo:
        gr.Markdown("# embedding-zoo\nSearch real media with one embedding space, browse the model cards, "
                    "compare spaces. Everything runs on this machine.")
        search_tab(app, demo)
        cards_tab(app, cards)
        spaces_tab(app, cards)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=2)
    app.blocks = demo  # RequestGuard checks API inputs against these events' components
    return demo
