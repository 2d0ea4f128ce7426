"""``zoo serve``'s arguments and what the command runs (the CLI adds these to its parser)."""

from __future__ import annotations

import argparse
import re

from zoo.apps.serve.settings import DEFAULT_HOST, DEFAULT_PORT, ServeSettings, keys_from_env

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def byte_size(text: str) -> int:
    """'8G', '512M', '1000000' -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, flags=re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (say 8G, 512M or a number of bytes)")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value
    return parse


def add_arguments(s: argparse.ArgumentParser, port_type) -> None:
    s.add_argument("models", nargs="*", metavar="MODEL", help="registry names to serve (default: any registered "
                   "model, loaded on first request)")
    s.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    s.add_argument("--port", type=port_type, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    s.add_argument("--api-key", help="require this bearer key (comma-separate several; default: $ZOO_API_KEY)")
    s.add_argument("--preload", action="store_true", help="load the named models at start, not on first request")
    s.add_argument("--memory-budget", type=byte_size, metavar="SIZE",
                   help="most model weights held at once, e.g. 8G (least recently used unloaded first)")
    s.add_argument("--max-wait-ms", type=_positive(float), default=5.0,
                   help="how long a request waits for others to share its batch (default 5)")
    s.add_argument("--no-batching", dest="batching", action="store_false", help="embed each request alone")
    s.add_argument("--max-items", type=_positive(int), default=2048, help="most items per request (default 2048)")
    s.add_argument("--max-body", type=byte_size, default="64M", metavar="SIZE",
                   help="largest request body (default 64M)")
    s.add_argument("--timeout", type=_positive(float), default=120.0, help="seconds a request may wait (default 120)")


def settings_from(args: argparse.Namespace) -> ServeSettings:
    return ServeSettings(max_body_bytes=args.max_body, max_items=args.max_items,
                         request_timeout=args.timeout, max_wait=args.max_wait_ms / 1000,
                         memory_budget=args.memory_budget, batching=args.batching,
                         api_keys=keys_from_env(args.api_key))


def run_command(args: argparse.Namespace) -> int:
    from zoo.apps.serve.server import serve

    serve(args.models, host=args.host, port=args.port, settings=settings_from(args), preload=args.preload)
    return 0
