"""Starting the demo (:func:`launch`): where it binds (127.0.0.1 unless told otherwise, by argument or
``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``; any other address logs a warning, as the demo has no
authentication), and the options of Gradio's launch: no share link, capped uploads, no folder served by path, the
request guard in front."""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path

from zoo.apps.demo.app import DemoApp
from zoo.apps.demo.blocks import build_demo
from zoo.apps.demo.guard import RequestGuard
from zoo.apps.demo.settings import DEFAULT_MODEL, DEFAULT_PORT, HOST, MAX_FILE_SIZE
from zoo.catalog import registry
from zoo.errors import ZooError

log = logging.getLogger(__name__)


def launch_options(app: DemoApp, host: str = HOST) -> dict:
    """Keyword arguments of ``launch``: bound to ``host`` (default loopback), no share link, capped uploads, no
    folder served by path (gallery media go out as ``/zoo-media/<token>``), URL fetches refused and API inputs
    type-checked (:class:`RequestGuard`)."""
    from starlette.middleware import Middleware

    manifests = [str(app.gallery_dir / "manifest.json"), str(app.gallery_dir / "user" / "manifest.json")]
    return {"server_name": host, "share": False, "max_file_size": MAX_FILE_SIZE,
            "allowed_paths": [], "blocked_paths": [str(app.gallery_dir), *manifests], "ssr_mode": False,
            "show_error": True, "app_kwargs": {"middleware": [Middleware(RequestGuard, demo_app=app)]}}


def server_address(host: str | None = None, port: int | None = None) -> tuple[str, int]:
    """Where :func:`launch` binds: the arguments given, else ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``, else
    127.0.0.1:7860. Raises ZooError for a port that is not a number from 1 to 65535."""
    host = host or os.environ.get("GRADIO_SERVER_NAME", "").strip() or HOST
    if port is None:
        raw = os.environ.get("GRADIO_SERVER_PORT", "").strip()
        if raw and not raw.isdigit():
            raise ZooError(f"GRADIO_SERVER_PORT must be a port number, not {raw!r}")
        port = int(raw) if raw else DEFAULT_PORT
    if not 0 < int(port) < 65536:
        raise ZooError(f"the port must be from 1 to 65535, not {port}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (localhost, 127.x.x.x, ::1)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def launch(*, port: int | None = None, model: str = DEFAULT_MODEL, host: str | None = None,
           cache_dir: str | Path | None = None, prevent_thread_lock: bool = False):
    """Build and start the demo on ``host``:``port``.

    ``host`` and ``port`` not given (None) come from ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` when set, else
    127.0.0.1 and 7860; given ones win over the environment. Any address other than loopback logs a one-line
    warning: the demo has no authentication, so whoever reaches that address can use it.
    """
    registry.card(model)  # unknown names fail here, with suggestions
    host, port = server_address(host, port)
    if not is_loopback(host):
        log.warning("the demo has no authentication: anyone who can reach %s:%d can use it", host, port)
    app = DemoApp(cache_dir, default_model=model)
    demo = build_demo(app)
    demo.launch(server_port=port, prevent_thread_lock=prevent_thread_lock, **launch_options(app, host))
    return demo
