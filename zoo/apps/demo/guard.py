"""The request guard (:class:`RequestGuard`), ASGI middleware in front of Gradio's app: it serves gallery media
at ``/zoo-media/<token>``, refuses ``file=<URL>`` and ``proxy=`` routes (the server fetches nothing on anyone's
behalf), and checks every API call's inputs (their types, uploads rather than URLs) before the queue."""

from __future__ import annotations

import json
import re
from pathlib import Path

from zoo.apps.demo.app import DemoApp
from zoo.apps.demo.settings import _MEDIA_TOKEN

_URL_LIKE = re.compile(r"^\s*(?:[a-z][a-z0-9+.\-]+:|[/\\]{2})", re.IGNORECASE)  # http:, file:, //host ...
_FILE_ROUTE = re.compile(r"/file[=/](.*)$", re.DOTALL)
_API_ROUTE = re.compile(r"/gradio_api/(?:queue/join|(?:call|run|api)/(?:v2/)?([^/]+))/?$")
MAX_API_BODY = 1024 * 1024


def _unquoted(text: str) -> str:
    from urllib.parse import unquote

    for _ in range(4):  # %253A -> %3A -> :
        text, before = unquote(text), text
        if text == before:
            break
    return text


def _upload_folder() -> Path:
    """Where Gradio keeps uploads (``GRADIO_TEMP_DIR``, the app's ``tmp`` folder): API file inputs must be there."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()).resolve()


def _is_file_data(value) -> bool:
    return isinstance(value, dict) and isinstance(value.get("path"), str) and (
        value.get("meta") or {}).get("_type") == "gradio.FileData"


def _input_error(component, value, uploads: Path | None = None) -> str | None:
    """Why ``value`` is not a valid API payload for ``component`` (None: fine). Gradio would otherwise coerce
    (a dict becomes the text "{...}") or fail deep inside with an unclear message."""
    import gradio as gr

    if value is None:
        return None
    multiple = getattr(component, "file_count", "single") != "single" or getattr(component, "multiselect", False)
    if isinstance(component, (gr.Image, gr.Audio, gr.Model3D, gr.File, gr.Video)):
        files = value if multiple and isinstance(value, list) else [value]
        if not all(_is_file_data(f) for f in files):
            return "an uploaded file ({'path': ..., 'meta': {'_type': 'gradio.FileData'}}, from /gradio_api/upload)"
        if any(_URL_LIKE.match(f["path"]) for f in files):
            return "an uploaded file, not a URL (the demo fetches nothing from the network)"
        if uploads is not None and not all(Path(f["path"]).resolve().is_relative_to(uploads)
                                           and Path(f["path"]).is_file() for f in files):
            return "a file uploaded to this app (/gradio_api/upload) that is still there"
        return None
    if isinstance(component, gr.CheckboxGroup) or multiple:
        ok = isinstance(value, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool)
                                             for v in value)
        return None if ok else "a list of choices"
    if isinstance(component, gr.Checkbox):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(component, (gr.Slider, gr.Number)):
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
    if isinstance(component, (gr.Textbox, gr.Dropdown, gr.Code, gr.Markdown)):
        return None if isinstance(value, str) else "a string"
    return None


class RequestGuard:
    """ASGI middleware in front of Gradio's app.

    - ``/zoo-media/<token>`` serves the gallery file behind a token of :meth:`DemoApp.media_token` (404 otherwise).
    - The file route serves local files only: ``file=http://...`` (which Gradio would fetch on the server's behalf)
      and every ``proxy=`` route are refused with 403, however the URL is encoded.
    - API calls are checked before they reach the queue: each input must have its component's type (a dict is not
      a text query), file inputs must be uploads (no URL), and the number of inputs must match; otherwise 422 with a
      message naming the input.
    """

    def __init__(self, app, demo_app: DemoApp):
        self.app = app
        self.demo_app = demo_app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = _unquoted(scope.get("path", ""))
        media = _MEDIA_TOKEN.search(path)
        if media and scope.get("method") in ("GET", "HEAD"):
            return await self._media(scope, receive, send, media.group(1))
        target = _FILE_ROUTE.search(path)
        if "/proxy=" in path or (target and _URL_LIKE.match(target.group(1))):
            return await self._refuse(scope, receive, send, 403, "URLs are not fetched by this app")
        api = _API_ROUTE.search(path) if scope.get("method") == "POST" else None
        if api is None:
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_API_BODY:
                return await self._refuse(scope, receive, send, 413, "the request is too large")
        problem = self._check(body, api.group(1), "/v2/" in path)
        if problem:
            return await self._refuse(scope, receive, send, 422, problem)
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    def _check(self, body: bytes, api_name: str | None, named: bool) -> str | None:
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            return "the request body is not JSON"
        if not isinstance(payload, dict):
            return "the request body must be a JSON object"
        if named:  # /call/v2: arguments by name; only the URL rule applies
            return self._no_urls(payload)
        data = payload.get("data")
        if not isinstance(data, list):
            return "'data' must be a list with one value per input"
        blocks = getattr(self.demo_app, "blocks", None)
        fn = None
        if blocks is not None:
            fns = list(blocks.fns.values())
            if api_name is not None:
                fn = next((f for f in fns if f.api_name == api_name), None)
            elif isinstance(payload.get("fn_index"), int):
                fn = blocks.fns.get(payload["fn_index"])
        if fn is None:
            return self._no_urls(payload)
        inputs = [c for c in fn.inputs if not getattr(c, "skip_api", False)]
        if len(data) not in (len(fn.inputs), len(inputs)):
            return f"{fn.api_name or 'this event'} takes {len(inputs)} inputs, not {len(data)}"
        for n, (component, value) in enumerate(zip(fn.inputs if len(data) == len(fn.inputs) else inputs, data,
                                                   strict=True)):
            wanted = _input_error(component, value, _upload_folder())
            if wanted:
                label = getattr(component, "label", None) or type(component).__name__
                return f"input {n} ({label}) must be {wanted}, not {type(value).__name__}"
        return self._no_urls(payload)

    @staticmethod
    def _no_urls(payload) -> str | None:
        found = []

        def walk(value):
            if isinstance(value, dict):
                if isinstance(value.get("path"), str) and _URL_LIKE.match(value["path"]):
                    found.append(value["path"])
                for v in value.values():
                    walk(v)
            elif isinstance(value, list):
                for v in value:
                    walk(v)

        walk(payload)
        return "files must be uploads, not URLs (the demo fetches nothing from the network)" if found else None

    async def _media(self, scope, receive, send, token: str):
        import mimetypes

        from starlette.responses import FileResponse

        file = self.demo_app.media_file(token)
        if file is None:
            return await self._refuse(scope, receive, send, 404, "no such media")
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        response = FileResponse(file, media_type=kind, headers={"X-Content-Type-Options": "nosniff",
                                                                "Cache-Control": "private, max-age=3600"})
        await response(scope, receive, send)

    @staticmethod
    async def _refuse(scope, receive, send, status: int, detail: str):
        from starlette.responses import JSONResponse

        await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)
