"""What the tabs' wiring shares: the model choices (labelled when the weights are not on this machine) and the
media URLs through which gallery files reach the browser (never as server paths)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from zoo.apps.demo.app import DemoApp
from zoo.apps.demo.settings import _MEDIA_TOKEN, DEFAULT_PORT, HOST, MEDIA_ROUTE, NOT_OFFLINE
from zoo.catalog import registry
from zoo.errors import ZooError


def model_choices(names: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """(label, name) of each model (default: every registered one); a model whose weights are not on this machine
    (:func:`zoo.sources.availability`, names only: nothing is hashed) is labelled "NAME (weights not offline)"."""
    from zoo.catalog.sources import availability

    out = []
    for name in registry.list_models() if names is None else names:
        c = registry.card(name)
        try:
            here = availability(c).present
        except ZooError:
            here = False
        out.append((name if here else f"{name}{NOT_OFFLINE}", name))
    return out


_HOST = re.compile(r"^[A-Za-z0-9.\-]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$")


def _root_url(request) -> str:
    """The address the browser reached the app at (behind a proxy: the forwarded host and scheme)."""
    headers = {str(k).lower(): str(v) for k, v in dict(getattr(request, "headers", None) or {}).items()}
    host = headers.get("x-forwarded-host", "").split(",")[0].strip() or headers.get("host", "")
    if not _HOST.match(host):
        host = f"{HOST}:{DEFAULT_PORT}"
    scheme = "https" if headers.get("x-forwarded-proto", "").split(",")[0].strip() == "https" else "http"
    return f"{scheme}://{host}"


def _linker(app: DemoApp, request) -> Callable[[str], str]:
    """Gallery file -> its media URL on the host the request came to (no request: the default local address)."""
    root = _root_url(request)
    return lambda path: f"{root}{MEDIA_ROUTE}{app.media_token(path)}"


def _linked(component):
    """``component`` (a Gradio output) that also takes one of the app's media URLs and sends it as it is. Given a
    path, Gradio copies the file into its cache and shows the browser that copy's server path; given a URL, the
    stock Audio, Video, Model3D and Image outputs would download it on the server. (An instance attribute, not a
    subclass: Gradio writes a ``.pyi`` stub beside the module of every Component subclass.)"""
    from gradio.data_classes import FileData

    stock = component.postprocess

    def postprocess(value):
        if isinstance(value, str) and _MEDIA_TOKEN.search(value) and value.startswith(("http://", "https://")):
            return FileData(path=value, url=value, orig_name=value.rsplit("/", 1)[-1])
        return stock(value)

    component.postprocess = postprocess
    return component
