"""The Gradio demo: search a gallery of real media, browse the model cards, compare embedding spaces.

Three tabs, all offline:

- **Search**: a gallery prepared on first run into the app's own cache folder (the skimage sample
  photos, the project's 12 speech clips, short videos panning across three of the photos, generated 3D
  shapes exported as ``.glb``, code and docstrings from Python's standard library, a few short texts),
  indexed with the chosen model (default ``zoo-bind-mini``; only what its card's modalities take), its
  vectors on disk so that a restart re-embeds nothing. A query is a text, an image, a sound, a 3D file or a
  video (several are averaged); results show thumbnails, players, a 3D preview, scores and the experts that
  made the item's vector. Users may add their own files. Models whose weights are not on this machine are
  listed with a "(weights not offline)" label, and say so instead of failing; a video query to a model that
  does not take video says which models here do (or that none does, and which would with their weights).
- **Cards**: every registered card, filtered by modality, licence, offline readiness, size and
  width, with free-text search, the rendered card, its sources and a ``zoo.load`` snippet.
- **Spaces**: the compatibility heatmap (:mod:`zoo.compat`) of chosen text models over standard
  library sentences, and a stitch explorer (:func:`zoo.stitch`) with held-out recall@1. Hub-only models carry
  the same label as on the Search tab, and choosing one says why it cannot run.

Every action writes what went wrong into a Markdown status beside it (the search note, the add-files note, the
heatmap status, the stitch result), so the message stays on the page; API callers get the same text in that
output (the event completes, with emptied results). The public API endpoints are named (:data:`API_ENDPOINTS`).

Safety: the app binds 127.0.0.1 unless told otherwise (``launch(host=...)``, ``GRADIO_SERVER_NAME``; any other
address logs a warning: the demo has no authentication) and never shares; uploads are capped (``MAX_FILE_SIZE``),
limited to the media types a tab needs (no SVG or HTML) and decoded by the zoo's safe loaders; there are
no URL inputs, and :class:`RequestGuard` refuses URL fetches and type-checks every API input; gallery media reach
the browser as ``/zoo-media/<token>`` URLs, never as server paths, and no folder is served by path; the gallery's
manifests hold names relative to the gallery folder; Gradio's temp folder (uploads) lives under the app's cache;
errors reach the user without server paths and leave the app working; the queue is bounded and each model
embeds one request at a time.

The modules, lowest first; each imports only modules listed before it:

- ``settings``: limits, the default model and address, accepted suffixes, :data:`API_ENDPOINTS`, the media
  route; the cache folder and Gradio's environment.
- ``messages``: what the browser sees when something fails (no server paths, no tracebacks), the action
  status, the handler guard.
- ``items``: a gallery entry (:class:`Item`), a search hit (:class:`Hit`), expert labels; the checks on users'
  files and :class:`FilesRefused`.
- ``media``: how gallery media are made: thumbnails (texts, sounds, shapes, videos) and the sample videos.
- ``gallery``: the gallery folder (:class:`Gallery`): sample media, standard-library code and texts;
  :func:`stdlib_sentences`.
- ``card_text``: how a card reads on the page (:func:`evidence_text`, its sections, its size, the size filter),
  the Cards tab's table and chosen card.
- ``comparisons``: what the Spaces tab computes (the heatmap, a stitch), a part of :class:`DemoApp`.
- ``app``: :class:`DemoApp`, the logic (models, indexes, search, uploads; the cards and spaces from the two
  modules above), testable without Gradio's server.
- ``guard``: :class:`RequestGuard`, the ASGI middleware (media route, URL refusals, API input checks).
- ``ui``: what the tabs' wiring shares: :func:`model_choices`, the media URLs of gallery files.
- ``search``, ``cards``, ``spaces``: one tab each, its handlers and components (none imports another).
- ``blocks``: :func:`build_demo` assembles the tabs into a ``gr.Blocks``.
- ``server``: :func:`launch` and where it binds (:func:`launch_options`, :func:`server_address`,
  :func:`is_loopback`).
"""

from __future__ import annotations

import os as os

from zoo.apps.demo.app import DemoApp
from zoo.apps.demo.blocks import build_demo
from zoo.apps.demo.card_text import NOT_CHECKED, PARAM_BUCKETS, evidence_text
from zoo.apps.demo.gallery import (
    SENTENCE_MODULES,
    SHAPE_SEED,
    SHAPES_PER_CLASS,
    SHORT_TEXTS,
    STDLIB_FUNCTIONS,
    VIDEO_PHOTOS,
    Gallery,
    stdlib_sentences,
)
from zoo.apps.demo.guard import MAX_API_BODY, RequestGuard
from zoo.apps.demo.items import FilesRefused, Hit, Item, Progress, expert_labels
from zoo.apps.demo.server import is_loopback, launch, launch_options, log, server_address
from zoo.apps.demo.settings import (
    API_ENDPOINTS,
    AUDIO_SUFFIXES,
    DEFAULT_MODEL,
    DEFAULT_PORT,
    HOST,
    IMAGE_SUFFIXES,
    KIND_MODALITY,
    MAX_FILE_BYTES,
    MAX_FILE_SIZE,
    MAX_TEXT_CHARS,
    MEDIA_ROUTE,
    NOT_OFFLINE,
    QUEUE_SIZE,
    SEARCH_CONCURRENCY,
    SHAPE_SUFFIXES,
    TEXT_SUFFIXES,
    TOP_K,
    VIDEO_SUFFIXES,
    configure_environment,
    default_cache_dir,
)
from zoo.apps.demo.ui import model_choices
from zoo.catalog import registry as registry
from zoo.errors import ZooError as ZooError

__all__ = [
    "API_ENDPOINTS", "AUDIO_SUFFIXES", "DEFAULT_MODEL", "DEFAULT_PORT", "HOST", "IMAGE_SUFFIXES", "KIND_MODALITY",
    "MAX_API_BODY", "MAX_FILE_BYTES", "MAX_FILE_SIZE", "MAX_TEXT_CHARS", "MEDIA_ROUTE", "NOT_CHECKED", "NOT_OFFLINE",
    "PARAM_BUCKETS", "QUEUE_SIZE", "SEARCH_CONCURRENCY", "SENTENCE_MODULES", "SHAPES_PER_CLASS", "SHAPE_SEED",
    "SHAPE_SUFFIXES", "SHORT_TEXTS", "STDLIB_FUNCTIONS", "TEXT_SUFFIXES", "TOP_K", "VIDEO_PHOTOS", "VIDEO_SUFFIXES",
    "DemoApp", "FilesRefused", "Gallery", "Hit", "Item", "Progress", "RequestGuard", "build_demo",
    "configure_environment", "default_cache_dir", "evidence_text", "expert_labels", "is_loopback", "launch",
    "launch_options", "log", "model_choices", "server_address", "stdlib_sentences",
]
