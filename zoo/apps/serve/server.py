"""Running the app: ``zoo serve`` in one process on uvicorn (:func:`serve`), where it binds, and the warning for an
open address without a key."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence

from zoo.apps.serve.settings import DEFAULT_HOST, DEFAULT_PORT, ServeSettings

log = logging.getLogger("zoo.serve")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_without_key(host: str, settings: ServeSettings) -> str | None:
    """The warning for a server reachable from other machines with no API key (None when there is none)."""
    if is_loopback(host) or settings.api_keys:
        return None
    return (f"zoo serve listens on {host} with no API key: anyone who can reach this machine can use it "
            "(pass --api-key or set ZOO_API_KEY)")


def serve(models: Sequence[str] = (), *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          settings: ServeSettings | None = None, preload: bool = False) -> None:
    """Serve ``models`` (empty: any registered model) on ``host:port`` until interrupted."""
    import uvicorn

    from zoo.apps.serve.app import create_app

    settings = settings or ServeSettings()
    if warning := open_without_key(host, settings):
        log.warning(warning)
    app = create_app(models, settings, preload=preload)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)
