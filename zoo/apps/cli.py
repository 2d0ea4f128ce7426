"""The ``zoo`` command line: list, card, embed, embed-dataset, fetch, verify, compat, demo, serve, bench.

Options may come before, between or after the positional arguments (``zoo embed MODEL --out v.npy a b``).
Errors print one line on stderr and exit non-zero: 2 for a bad command line, 1 for a zoo error (unknown
model, missing weights, bad input), 130 on Ctrl-C. A closed pipe (``zoo list | head -1``) ends quietly
with status 0. Error messages written for Python callers ("pass truncate=True") name the matching flag.
This module imports only the standard library and light zoo modules; numpy, torch and pyarrow are imported
inside the commands that need them. It holds the parser and ``main``; the commands are in
``zoo.apps.commands`` (with what they share: ``CommandLineError``, ``FLAG_HINTS``) and ``zoo.apps.embed_command``
(``zoo embed``), and the names this module had before they moved still import from here.
"""

from __future__ import annotations

import argparse
import os
import sys

from zoo.apps.commands import (  # noqa: F401 - FLAG_HINTS, bench_runner, demo_address: re-exported
    DEFAULT_HOST,
    DEFAULT_PORT,
    FLAG_HINTS,
    CommandLineError,
    _cmd_bench,
    _cmd_card,
    _cmd_compat,
    _cmd_demo,
    _cmd_embed_dataset,
    _cmd_fetch,
    _cmd_list,
    _cmd_verify,
    _port,
    bench_runner,
    cli_message,
    demo_address,
)
from zoo.apps.embed_command import MAX_COSINES, OUT_FORMATS, _cmd_embed  # noqa: F401 - the constants: re-exported
from zoo.catalog.modelcard import MODALITIES
from zoo.errors import ZooError

#: The precisions ``embed`` accepts (zoo.embeddings.PRECISIONS, kept here so the parser needs no numpy).
PRECISIONS = ("float32", "float16", "int8", "uint8", "binary", "ubinary")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``zoo embed: error: ... (see 'zoo embed --help')``, exit status 2."""

    def error_line(self, message: str) -> str:
        return f"{self.prog}: error: {message} (see '{self.prog} --help')\n"

    def error(self, message: str):
        self.exit(2, self.error_line(message))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


# -- the parser ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="zoo", description="embedding-zoo: one registry, one embed call.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("list", help="registered models, as a table")
    s.add_argument("pattern", nargs="?", help="fnmatch pattern, e.g. 'e5*'")
    s.add_argument("--modality", choices=MODALITIES, help="only models that embed this modality")
    s.add_argument("--offline-ready", action="store_true", help="only models whose files are on this machine now")
    s.add_argument("--json", action="store_true", help="one JSON array of the models on stdout")
    s.set_defaults(func=_cmd_list)

    s = sub.add_parser("card", help="a model card as Markdown")
    s.add_argument("name")
    s.add_argument("--json", action="store_true", help="the card's fields as one JSON object")
    s.set_defaults(func=_cmd_card)

    s = sub.add_parser("embed", help="embed inputs; prints shape, space and cosines to the first input")
    s.add_argument("name", help="a registry name, e.g. all-minilm-l6-v2")
    s.add_argument("inputs", nargs="*", metavar="INPUT", help="texts (or file paths) to embed; - reads one per line "
                   "from stdin")
    s.add_argument("--from-file", action="append", metavar="FILE", help="also embed each non-blank line of FILE "
                   "(- is stdin); may be repeated")
    s.add_argument("--modality", choices=MODALITIES, help="what the inputs are, for models that embed several")
    s.add_argument("--instruction", help="task instruction (models with an instruction template)")
    s.add_argument("--prompt-name", help="a named prompt of the card, e.g. query")
    s.add_argument("--dim", type=_positive_int, help="Matryoshka truncation to this many dimensions")
    s.add_argument("--force-dim", action="store_true", help="allow --dim on a model not trained for it")
    s.add_argument("--precision", choices=PRECISIONS, default="float32", help="numeric format (default float32)")
    s.add_argument("--no-normalize", dest="normalize", action="store_false", help="do not L2-normalize the vectors")
    s.add_argument("--no-truncate", dest="truncate", action="store_false",
                   help="refuse over-long inputs instead of cutting them to the model's limit")
    s.add_argument("--batch-size", type=_positive_int, help="most items per forward pass")
    s.add_argument("--out", metavar="FILE", help="write the vectors to FILE: .npy, .json or .parquet")
    s.add_argument("--json", action="store_true", help="one JSON object on stdout (with the vectors unless --out)")
    s.add_argument("--trust-remote-code", action="store_true", help="consent to run the model repo's code")
    s.set_defaults(func=_cmd_embed)

    from zoo.data import scale

    s = sub.add_parser("embed-dataset", help="embed a Parquet text column or a folder/glob of files on Ray Data "
                       "(resumable; needs the scale extra)")
    scale.add_arguments(s)  # positional model, source, output + options
    if "--id-column" not in s._option_string_actions:
        s.add_argument("--id-column", metavar="NAME", help="a Parquet column kept beside each vector as its id")
    s.set_defaults(func=_cmd_embed_dataset)

    s = sub.add_parser("fetch", help="download a model's pinned files into the Hugging Face cache")
    s.add_argument("name")
    s.set_defaults(func=_cmd_fetch)

    s = sub.add_parser("verify", help="run a card's published examples on the weights here; print each score beside "
                       "the published one")
    s.add_argument("name", nargs="?")
    s.add_argument("--all-cached", action="store_true", help="every card with examples whose weights are cached")
    s.add_argument("--download", action="store_true", help="allow fetching weights and example inputs")
    s.add_argument("--trust-remote-code", action="store_true", help="consent to run the model repo's code")
    s.set_defaults(func=_cmd_verify)

    s = sub.add_parser("compat", help="compatibility matrix (CKA, mutual-kNN, stitched recall@1) of models")
    s.add_argument("models", nargs="+", help="two or more model names")
    s.add_argument("--anchors", required=True, help="items: one text per line, or an anchor set .json")
    s.add_argument("--test", help="held-out items (default: a seeded split of the anchors file)")
    s.add_argument("--test-fraction", type=float, default=0.5, help="held-out share when --test is not given")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--modality", choices=MODALITIES, help="the items' modality, for models that embed several")
    s.add_argument("--out", default="compat", help="folder for compat.csv and compat.png (default: ./compat)")
    s.set_defaults(func=_cmd_compat)

    s = sub.add_parser("demo", help="start the Gradio demo (needs the demo extra)")
    s.add_argument("--host", help=f"address to listen on (default: $GRADIO_SERVER_NAME or {DEFAULT_HOST})")
    s.add_argument("--port", type=_port, help=f"port to listen on (default: $GRADIO_SERVER_PORT or {DEFAULT_PORT})")
    s.add_argument("--model", default="zoo-bind-mini", help="the model that indexes the search gallery")
    s.set_defaults(func=_cmd_demo)

    from zoo.apps.serve import command as serve_command

    s = sub.add_parser("serve", help="an OpenAI-compatible embeddings server (needs the serve extra)")
    serve_command.add_arguments(s, _port)
    s.set_defaults(func=serve_command.run_command)

    s = sub.add_parser("bench", help="run the benchmark suite and write bench/RESULTS.md (from a source checkout)",
                       add_help=False)
    s.add_argument("options", nargs=argparse.REMAINDER, help="bench/run.py's options: --quick, --only NAME..., --list")
    return p


def parse(argv: list[str]) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    """Parse ``argv`` (without ``bench``); options may sit anywhere among a command's positionals."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    if not argv or argv[0] not in commands:
        return parser.parse_args(argv), parser  # help, a missing or unknown command: argparse's own message
    command = commands[argv[0]]
    args = command.parse_intermixed_args(argv[1:])
    args.command = argv[0]
    return args, command


def _quiet_stdout() -> None:
    """After a closed pipe: point stdout at devnull so the exit flush cannot fail again (Python docs, SIGPIPE)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["bench"]:  # every option after "bench" belongs to bench/run.py
            return _cmd_bench(argv[1:])
        args, parser = parse(argv)
        try:
            code = args.func(args)
        except CommandLineError as exc:
            sys.stdout.flush()
            print(parser.error_line(str(exc)), end="", file=sys.stderr)
            return 2
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers, not at interpreter exit
        return code
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except (ZooError, OSError) as exc:
        print(f"zoo: error: {cli_message(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
