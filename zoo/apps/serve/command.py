"""``zoo serve``'s arguments and what the command runs (the CLI adds these to its parser)."""

from __future__ import annotations

import argparse
import json
import re
import sys

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
    s.add_argument("--ray", action="store_true", help="deploy on Ray Serve, one model copy per replica "
                   "(needs the serve-ray extra)")
    s.add_argument("--replicas", type=_positive(int), default=1, help="Ray Serve replicas (default 1)")
    s.add_argument("--autoscaling", type=_json_object, metavar="JSON",
                   help='Ray Serve autoscaling settings, e.g. \'{"min_replicas": 1, "max_replicas": 4}\'')
    s.add_argument("--cpus-per-replica", type=_positive(float), default=1.0, help="CPUs Ray gives each replica")
    s.add_argument("--address", help="an existing Ray cluster (default: start a local Ray)")


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def settings_from(args: argparse.Namespace) -> ServeSettings:
    return ServeSettings(max_body_bytes=args.max_body, max_items=args.max_items,
                         request_timeout=args.timeout, max_wait=args.max_wait_ms / 1000,
                         memory_budget=args.memory_budget, batching=args.batching,
                         api_keys=keys_from_env(args.api_key))


def run_command(args: argparse.Namespace) -> int:
    from zoo.apps.serve.server import open_without_key, serve

    settings = settings_from(args)
    if not args.ray:
        serve(args.models, host=args.host, port=args.port, settings=settings, preload=args.preload)
        return 0
    from zoo.apps.serve import ray_app

    if warning := open_without_key(args.host, settings):
        print(f"zoo: warning: {warning}", file=sys.stderr)
    ray_app.run(args.models, settings, host=args.host, port=args.port, replicas=args.replicas,
                autoscaling=args.autoscaling, address=args.address, cpus_per_replica=args.cpus_per_replica,
                preload=args.preload)
    return 0
