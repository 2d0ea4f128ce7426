"""A Python client for ``zoo serve`` (``zoo.client``): the vectors come back as :class:`~zoo.embeddings.Embeddings`
that carry the server's space id, so they compare with local ones exactly as the Python API's do.

>>> from zoo.client import Client, image
>>> client = Client("http://127.0.0.1:8000")
>>> texts = client.embed(["a dog", "a cat"], model="clip-vit-b-32-openai")
>>> photos = client.embed([image("dog.jpg")], model="clip-vit-b-32-openai")
>>> zoo.similarity(texts, photos)

Standard library HTTP only (plus numpy for the vectors). Media go as content parts, built by :func:`image`,
:func:`audio`, :func:`points`, :func:`video` and :func:`document` from a path or bytes; any OpenAI content part
(a dict) passes through, and a list of parts is one interleaved item.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from zoo.errors import ZooError

_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
                ".gif": "image/gif", ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff"}
_VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
                ".mkv": "video/x-matroska", ".avi": "video/x-msvideo"}


class ServerError(ZooError):
    """The server answered with an error: ``status``, and OpenAI's ``type``, ``param`` and ``code``."""

    def __init__(self, status: int, message: str, *, kind: str | None = None, param: str | None = None,
                 code: str | None = None):
        super().__init__(f"{status}: {message}")
        self.status, self.kind, self.param, self.code = status, kind, param, code


def _read(source: str | os.PathLike | bytes) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), ""
    path = Path(source)
    return path.read_bytes(), path.suffix.lower()


def image(source: str | os.PathLike | bytes, mime: str | None = None) -> dict:
    """An ``image_url`` part with the image's bytes in a ``data:`` URL."""
    data, suffix = _read(source)
    return {"type": "image_url", "image_url": {"url": _data_url(data, mime or _IMAGE_TYPES.get(suffix,
                                                                                            "application/octet-stream"))}}


def audio(source: str | os.PathLike | bytes, format: str | None = None) -> dict:
    """An ``input_audio`` part (wav, flac, ogg or mp3)."""
    data, suffix = _read(source)
    part = {"data": base64.b64encode(data).decode()}
    if format or suffix:
        part["format"] = format or suffix.lstrip(".")
    return {"type": "input_audio", "input_audio": part}


def points(source: str | os.PathLike | bytes, format: str | None = None) -> dict:
    """An ``input_points`` part: a point cloud as a ``.npy`` or ``.ply`` file."""
    data, suffix = _read(source)
    part = {"data": base64.b64encode(data).decode()}
    if format or suffix:
        part["format"] = format or suffix.lstrip(".")
    return {"type": "input_points", "input_points": part}


def _data_url(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def video(source: str | os.PathLike | bytes, mime: str | None = None) -> dict:
    """A ``video_url`` part with the video's bytes in a ``data:`` URL (the server samples its frames)."""
    data, suffix = _read(source)
    return {"type": "video_url", "video_url": {"url": _data_url(data, mime or _VIDEO_TYPES.get(suffix, "video/mp4"))}}


def document(source: str | os.PathLike | bytes, page: int = 0) -> dict:
    """A ``file`` part: a PDF page as a visual document (``page`` counted from 0)."""
    data, _ = _read(source)
    return {"type": "file", "file": {"file_data": _data_url(data, "application/pdf"), "page": page}}


class Client:
    """``Client(base_url, api_key=None, timeout=120)``; ``api_key`` defaults to ``$ZOO_API_KEY``."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000", *, api_key: str | None = None,
                 timeout: float = 120.0):
        self.base_url = base_url.rstrip("/")
        if self.base_url.endswith("/v1"):
            self.base_url = self.base_url[:-3]
        self.api_key = api_key if api_key is not None else os.environ.get("ZOO_API_KEY") or None
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict | None = None) -> tuple[dict, dict]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read()), dict(response.headers)
        except urllib.error.HTTPError as exc:
            try:
                error = json.loads(exc.read()).get("error") or {}
            except ValueError:
                error = {}
            raise ServerError(exc.code, error.get("message") or exc.reason, kind=error.get("type"),
                              param=error.get("param"), code=error.get("code")) from None

    def models(self) -> list[dict]:
        """The served models, with their space, dim and modalities under ``extra``."""
        return self._call("GET", "/v1/models")[0]["data"]

    def embed(self, inputs: Any, model: str, task_instruction: str | None = None, *, prompt_name: str | None = None,
              modality: str | None = None, dimensions: int | None = None):
        """Embed ``inputs`` (a str, or a list of texts, content parts and lists of parts) with ``model``."""
        import numpy as np

        from zoo.embeddings import Embeddings

        extra = {k: v for k, v in {"task_instruction": task_instruction, "prompt_name": prompt_name,
                                   "modality": modality}.items() if v is not None}
        body: dict[str, Any] = {"model": model, "input": inputs, "encoding_format": "base64"}
        if dimensions is not None:
            body["dimensions"] = dimensions
        if extra:
            body["extra"] = extra
        answer, _ = self._call("POST", "/v1/embeddings", body)
        rows = sorted(answer["data"], key=lambda d: d["index"])
        facts = answer.get("extra", {})
        vectors = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in rows]) \
            if rows else np.zeros((0, facts.get("dim", 0)), dtype=np.float32)
        return Embeddings(vectors=vectors.astype(np.float32), space=facts["space"], model=answer["model"],
                          modality=facts.get("modality", "text"), normalized=True, dim=vectors.shape[1],
                          info={"usage": answer.get("usage", {})})
