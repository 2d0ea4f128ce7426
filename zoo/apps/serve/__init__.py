"""``zoo serve``: an OpenAI-compatible embeddings server for every modality the zoo embeds.

``POST /v1/embeddings`` takes OpenAI's request (texts, or content parts for images, audio, point clouds and
interleaved image+text items, base64 in ``data:`` URLs only) and answers OpenAI's response, with the vectors'
embedding space in ``extra.space`` and the ``X-Zoo-Space`` header. Requests for one model are batched
dynamically into single ``embed`` calls. ``GET /v1/models``, ``GET /health`` and ``GET /metrics`` (Prometheus)
beside it.

The modules, lowest first; each imports only those before it (and the zoo's lower parts):

- ``settings``: the limits and defaults (:class:`ServeSettings`);
- ``protocol``: the OpenAI request, response and error bodies, and the content parts;
- ``decode``: media decoded in the server's thread pool;
- ``batcher``: one model's bounded queue and the worker that embeds it;
- ``models``: the models served, loaded lazily, unloaded past a memory budget;
- ``metrics``: the Prometheus metrics;
- ``app``: the FastAPI app (:func:`create_app`);
- ``server``: running it on uvicorn (:func:`serve`);
- ``client``: a Python client that returns :class:`~zoo.embeddings.Embeddings`.

May import: anything below the apps; nothing imports it but the CLI.
"""

from __future__ import annotations

from zoo.apps.serve.settings import DEFAULT_HOST, DEFAULT_PORT, ServeSettings

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "ServeSettings", "create_app", "serve"]


def create_app(*args, **kwargs):
    """:func:`zoo.apps.serve.app.create_app` (imported on first use: it needs FastAPI)."""
    from zoo.apps.serve.app import create_app as create

    return create(*args, **kwargs)


def serve(*args, **kwargs):
    """:func:`zoo.apps.serve.server.serve`."""
    from zoo.apps.serve.server import serve as run

    return run(*args, **kwargs)
