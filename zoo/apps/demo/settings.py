"""What the tabs share: limits, the default model and address, accepted suffixes, the public API endpoints, the
media route; where the app keeps its files (:func:`default_cache_dir`) and Gradio's environment
(:func:`configure_environment`)."""

from __future__ import annotations

import os
import re
from pathlib import Path

DEFAULT_MODEL = "zoo-bind-mini"
DEFAULT_PORT = 7860
HOST = "127.0.0.1"
MAX_FILE_SIZE = "20mb"
MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_TEXT_CHARS = 20_000
QUEUE_SIZE = 64  # pending events beyond this are refused with "queue full"
SEARCH_CONCURRENCY = 4  # searches run at once; each model still embeds one request at a time
TOP_K = 10

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")
SHAPE_SUFFIXES = (".glb", ".obj", ".stl", ".ply")
TEXT_SUFFIXES = (".txt", ".py", ".md")
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".avi")  # zoo.inputs.limits.FILE_SUFFIXES["video"] but .m4v
KIND_MODALITY = {"image": "image", "audio": "audio", "shape": "points", "code": "code", "text": "text",
                 "video": "video"}
NOT_OFFLINE = " (weights not offline)"  # the label of a model whose weights are not on this machine
#: The public API endpoints of the demo and their inputs (every other event is private).
API_ENDPOINTS = {
    "search": ("model", "text", "image", "audio", "shape", "video"),
    "prepare": ("model",),
    "add_files": ("model", "files"),
    "filter_cards": ("modality", "licence", "offline", "max_params", "dim", "text", "evidence"),
    "show_card": ("name",),
    "heatmap": ("models", "sentences"),
    "stitch": ("model_a", "model_b", "anchors"),
}
#: Where the browser fetches gallery media (``/zoo-media/<token>``, see :meth:`DemoApp.media_token`).
MEDIA_ROUTE = "/zoo-media/"
_MEDIA_TOKEN = re.compile(r"/zoo-media/([0-9a-f]{24}\.[a-z0-9]{1,5})$")


def default_cache_dir() -> Path:
    from zoo.catalog.sources import zoo_home

    return zoo_home() / "demo"


def configure_environment(cache_dir: Path) -> None:
    """Gradio's uploads and cached outputs go under the app's own cache; no analytics calls."""
    (cache_dir / "tmp").mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(cache_dir / "tmp")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
