"""The OpenAI embeddings protocol, as the server reads and writes it: the request's fields checked into an
:class:`EmbeddingRequest`, the response body, and the error body (``{"error": {"message", "type", "param",
"code"}}``, OpenAI's shape).

``input`` is a string, a list of strings, or a list of items where an item is a string, one content part or a list
of parts (an interleaved item, for the vision-language models). Content parts:

- ``{"type": "text", "text": "..."}``;
- ``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}`` (the ``url`` may also be given
  directly as ``"image_url": "data:..."``);
- ``{"type": "input_audio", "input_audio": {"data": "<base64>", "format": "wav"}}``;
- ``{"type": "input_points", "input_points": {"data": "<base64>", "format": "npy" | "ply"}}`` (an extension);
- ``{"type": "video_url", "video_url": {"url": "data:video/mp4;base64,..."}}`` (the form vLLM's chat API takes);
- ``{"type": "file", "file": {"file_data": "data:application/pdf;base64,...", "page": 0}}``: a PDF page as a
  visual document (OpenAI's file part; ``page``, counted from 0, is an extension), always an interleaved item.

A list of parts is one interleaved item (text, image, video and document parts, in the order given), for the
vision-language models.

Only ``data:`` URLs: the server never fetches anything. Token arrays (lists of integers) are refused with a
message saying to send text. What OpenAI's API does not have goes in ``extra``: ``task_instruction``,
``prompt_name``, ``modality``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

ENCODING_FORMATS = ("float", "base64")
EXTRA_KEYS = ("task_instruction", "prompt_name", "modality")
REQUEST_KEYS = ("model", "input", "encoding_format", "dimensions", "user", "extra")
#: the kinds of content part and the modality each gives
PART_MODALITY = {"text": "text", "image_url": "image", "input_audio": "audio", "input_points": "points",
                 "video_url": "video", "file": "document"}
#: the parts an interleaved item may hold (by modality), as the key of the part in ``embed``'s content list
INTERLEAVED_PARTS = ("text", "image", "video", "document")
AUDIO_FORMATS = ("wav", "flac", "ogg", "mp3")
POINT_FORMATS = ("npy", "ply")


class RequestError(Exception):
    """A request the server answers with an OpenAI-shaped error: ``status``, ``message``, ``param``, ``code``."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error", headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.headers = headers or {}

    def body(self) -> dict:
        return error_body(self.message, kind=self.kind, param=self.param, code=self.code)


def error_body(message: str, *, kind: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def bad(message: str, *, param: str | None = "input", code: str | None = None) -> RequestError:
    return RequestError(400, message, param=param, code=code)


@dataclass(frozen=True)
class Media:
    """A media part still encoded: its bytes, decoded from base64 (images are decoded further in a thread pool)."""

    modality: str
    data: bytes
    format: str | None = None
    page: int | None = None  # a document's page


@dataclass
class EmbeddingRequest:
    """A checked request. ``items`` hold str, :class:`Media` or, for interleaved items, ``{"content": [...]}``
    dicts (parts ``{"text": str}``, ``{"image" | "video" | "document": Media}`` in order); ``modality`` is what
    they are (one per request)."""

    model: str
    items: list[Any]
    modality: str
    encoding_format: str = "float"
    dimensions: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_media(self) -> bool:
        """Whether some item holds encoded media (to decode before the model)."""
        return any(isinstance(x, Media) or (isinstance(x, dict) and any(isinstance(v, Media) for part in x["content"]
                                                                         for v in part.values()))
                   for x in self.items)


def parse_request(body: Any, *, max_items: int, max_media_bytes: int) -> EmbeddingRequest:
    """Check an OpenAI embeddings request body; raise :class:`RequestError` (400) naming the field or item."""
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object", param=None)
    unknown = sorted(set(body) - set(REQUEST_KEYS))
    if unknown:
        raise bad(f"unknown field(s) {unknown}; accepted: {list(REQUEST_KEYS)} (zoo options go in 'extra')",
                  param=unknown[0])
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad("'model' must be a model name (see GET /v1/models)", param="model")
    fmt = body.get("encoding_format") or "float"
    if fmt not in ENCODING_FORMATS:
        raise bad(f"encoding_format must be one of {list(ENCODING_FORMATS)}, not {fmt!r}", param="encoding_format")
    dims = body.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
        raise bad(f"dimensions must be a positive integer, not {dims!r}", param="dimensions")
    extra = _extra(body.get("extra"))
    if "input" not in body:
        raise bad("'input' is required: a string, a list of strings, or a list of items with content parts")
    raw = body["input"]
    raw = [raw] if isinstance(raw, (str, dict)) else raw
    if not isinstance(raw, list) or not raw:
        raise bad("'input' must be a non-empty string or list")
    if len(raw) > max_items:
        raise RequestError(413, f"'input' has {len(raw)} items, over the limit of {max_items} per request",
                           param="input", code="too_many_items")
    if all(isinstance(x, int) and not isinstance(x, bool) for x in raw) or any(
            isinstance(x, list) and x and all(isinstance(t, int) and not isinstance(t, bool) for t in x) for x in raw):
        raise bad("token arrays are not accepted: send the text itself (each model tokenizes with its own "
                  "tokenizer)", code="token_arrays_unsupported")
    items, kinds = [], []
    for i, entry in enumerate(raw):
        item, kind = _item(entry, i, max_media_bytes)
        items.append(item)
        kinds.append(kind)
    modality = extra.get("modality") or kinds[0]
    if extra.get("modality") is None:
        for i, kind in enumerate(kinds):
            if kind != kinds[0]:
                raise bad(f"input[{i}] is {kind}, input[0] is {kinds[0]}: send one modality per request",
                          param=f"input[{i}]")
    return EmbeddingRequest(model=model, items=items, modality=modality, encoding_format=fmt, dimensions=dims,
                            extra=extra)


def _extra(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise bad("'extra' must be an object", param="extra")
    unknown = sorted(set(raw) - set(EXTRA_KEYS))
    if unknown:
        raise bad(f"unknown extra field(s) {unknown}; accepted: {list(EXTRA_KEYS)}", param=f"extra.{unknown[0]}")
    for key, value in raw.items():
        if value is not None and not isinstance(value, str):
            raise bad(f"extra.{key} must be a string", param=f"extra.{key}")
    return {k: v for k, v in raw.items() if v is not None}


def _item(entry: Any, i: int, max_media_bytes: int) -> tuple[Any, str]:
    """One input item and its modality ("interleaved" for a list of parts)."""
    if isinstance(entry, str):
        return entry, "text"
    if isinstance(entry, dict):
        value, kind = _part(entry, i, max_media_bytes)
        if kind == "document":  # a page of a PDF: an interleaved item, which carries the page number
            return {"content": [_content_part(kind, value)]}, "interleaved"
        return value, kind
    if isinstance(entry, list):
        if not entry:
            raise bad(f"input[{i}] is an empty list of parts", param=f"input[{i}]")
        content = []
        for part in entry:
            value, kind = _part(part, i, max_media_bytes) if isinstance(part, dict) else (None, None)
            if kind not in INTERLEAVED_PARTS:
                raise bad(f"input[{i}]: an interleaved item takes text, image_url, video_url and file parts, "
                          f"not {part!r:.60}", param=f"input[{i}]")
            content.append(_content_part(kind, value))
        return {"content": content}, "interleaved"
    raise bad(f"input[{i}] must be a string, a content part or a list of parts, not {type(entry).__name__}",
              param=f"input[{i}]")


def _content_part(kind: str, value: Any) -> dict[str, Any]:
    """One part of an interleaved item in ``embed``'s content form (a document with its page)."""
    return {kind: value, "page": value.page} if kind == "document" else {kind: value}


def _part(part: dict, i: int, max_media_bytes: int) -> tuple[Any, str]:
    kind = part.get("type")
    where = f"input[{i}]"
    if kind not in PART_MODALITY:
        raise bad(f"{where}: unknown content part type {kind!r}; accepted: {list(PART_MODALITY)}", param=where)
    body = part.get(kind)
    if kind == "text":
        if not isinstance(body, str):
            raise bad(f"{where}: a text part needs 'text' as a string", param=where)
        return body, "text"
    if kind == "image_url":
        url = body.get("url") if isinstance(body, dict) else body
        if not isinstance(url, str):
            raise bad(f"{where}: an image_url part needs image_url.url", param=where)
        return Media("image", _data_url(url, where, max_media_bytes)), "image"
    if kind == "video_url":
        url = body.get("url") if isinstance(body, dict) else body
        if not isinstance(url, str):
            raise bad(f"{where}: a video_url part needs video_url.url", param=where)
        return Media("video", _data_url(url, where, max_media_bytes)), "video"
    if kind == "file":
        return _file(body, where, max_media_bytes)
    if not isinstance(body, dict) or not isinstance(body.get("data"), str):
        raise bad(f"{where}: a {kind} part needs {kind}.data as base64", param=where)
    fmt = body.get("format")
    formats = AUDIO_FORMATS if kind == "input_audio" else POINT_FORMATS
    if fmt is not None and fmt not in formats:
        raise bad(f"{where}: {kind}.format must be one of {list(formats)}, not {fmt!r}", param=where)
    return Media(PART_MODALITY[kind], _b64(body["data"], where, max_media_bytes), fmt), PART_MODALITY[kind]


def _file(body: Any, where: str, max_media_bytes: int) -> tuple[Any, str]:
    """A PDF page as a visual document: ``file.file_data`` (a data: URL) and ``file.page`` (default 0)."""
    url = body.get("file_data") if isinstance(body, dict) else None
    if not isinstance(url, str):
        raise bad(f"{where}: a file part needs file.file_data as a data: URL (uploaded file ids are not kept)",
                  param=where)
    page = body.get("page", 0)
    if isinstance(page, bool) or not isinstance(page, int) or page < 0:
        raise bad(f"{where}: file.page must be a page number counted from 0, not {page!r}", param=where)
    return Media("document", _data_url(url, where, max_media_bytes), page=page), "document"


def _data_url(url: str, where: str, max_media_bytes: int) -> bytes:
    if not url.startswith("data:"):
        scheme = url.split(":", 1)[0] if ":" in url else "a relative path"
        raise bad(f"{where}: only data: URLs are accepted (the server fetches nothing), not {scheme}",
                  param=where, code="url_not_allowed")
    head, sep, payload = url.partition(",")
    if not sep or not head.endswith(";base64"):
        raise bad(f"{where}: a data: URL must be base64 (data:<type>;base64,<data>)", param=where)
    return _b64(payload, where, max_media_bytes)


def _b64(text: str, where: str, max_media_bytes: int) -> bytes:
    if len(text) > (max_media_bytes + 2) // 3 * 4 + 4:
        raise RequestError(413, f"{where}: the media is over the limit of {max_media_bytes:,} bytes", param=where,
                           code="item_too_large")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise bad(f"{where}: the data is not valid base64", param=where) from None


def embedding_payload(vector, encoding_format: str) -> list[float] | str:
    """One row as OpenAI sends it: a list of floats, or base64 of the little-endian float32 bytes."""
    import numpy as np

    row = np.asarray(vector, dtype="<f4")
    if encoding_format == "base64":
        return base64.b64encode(row.tobytes()).decode("ascii")
    return row.tolist()


def response_body(model: str, vectors, *, encoding_format: str, prompt_tokens: int, space: str, dim: int,
                  modality: str) -> dict:
    """The OpenAI response, with the space the vectors are in under ``extra``."""
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": embedding_payload(v, encoding_format)}
                 for i, v in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        "extra": {"space": space, "dim": dim, "modality": modality},
    }
