"""The Gradio demo of embedding-zoo: ``python -m demos.app [--port N] [--model NAME]`` or ``zoo demo``.

The app itself lives in :mod:`zoo.demo` so that the installed ``zoo demo`` command can start it;
this file is the entry point a checkout runs, and ``build_demo()`` builds it without launching.
"""

from __future__ import annotations

import argparse

from zoo.demo import DEFAULT_MODEL, DEFAULT_PORT, DemoApp, build_demo, launch

__all__ = ["DemoApp", "build_demo", "launch", "main"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="embedding-zoo demo (binds 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--cache-dir", help="the app's cache folder (default $ZOO_HOME/demo)")
    args = p.parse_args(argv)
    launch(port=args.port, model=args.model, cache_dir=args.cache_dir)


if __name__ == "__main__":
    main()
