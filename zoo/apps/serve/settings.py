"""What a server is allowed to take and how long it waits: the limits and defaults of ``zoo serve``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
#: The environment variable that holds the API key(s) (comma-separated) when ``--api-key`` is not given.
API_KEY_ENV = "ZOO_API_KEY"


@dataclass(frozen=True)
class ServeSettings:
    """Limits and batching of one server.

    - ``max_body_bytes``: largest request body (413 past it);
    - ``max_items``: most items in one request's ``input`` (413 past it; OpenAI's own limit is 2048);
    - ``max_media_bytes``: largest decoded media part (413); the decoders' own limits (pixels, seconds,
      points) apply after;
    - ``request_timeout``: seconds a request may wait for its vectors (504 past it; a job not yet started is
      dropped);
    - ``max_wait``: seconds the batcher waits for more requests to join a batch;
    - ``max_queued``: most items waiting per model (503 with ``Retry-After`` past it);
    - ``memory_budget``: bytes of model weights held at once (least recently used unloaded first; None: no limit);
    - ``batching``: False runs each request alone;
    - ``api_keys``: accepted bearer keys (empty: no key needed);
    - ``decode_workers``: threads that decode media beside the model.
    """

    max_body_bytes: int = 64 * 1024 * 1024
    max_items: int = 2048
    max_media_bytes: int = 32 * 1024 * 1024
    request_timeout: float = 120.0
    max_wait: float = 0.005
    max_queued: int = 4096
    memory_budget: int | None = None
    batching: bool = True
    api_keys: tuple[str, ...] = field(default_factory=tuple)
    decode_workers: int = 4


def keys_from_env(given: str | None = None) -> tuple[str, ...]:
    """API keys from ``--api-key`` or, without it, ``$ZOO_API_KEY`` (comma-separated)."""
    raw = given if given is not None else os.environ.get(API_KEY_ENV, "")
    return tuple(k.strip() for k in raw.split(",") if k.strip())
