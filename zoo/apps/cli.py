"""The ``zoo`` command line: list, card, embed, embed-dataset, fetch, verify, compat, demo, bench.

Options may come before, between or after the positional arguments (``zoo embed MODEL --out v.npy a b``).
Errors print one line on stderr and exit non-zero: 2 for a bad command line, 1 for a zoo error (unknown
model, missing weights, bad input), 130 on Ctrl-C. A closed pipe (``zoo list | head -1``) ends quietly
with status 0. Error messages written for Python callers ("pass truncate=True") name the matching flag.
This module imports only the standard library and light zoo modules; numpy, torch and pyarrow are imported
inside the commands that need them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from zoo.catalog.modelcard import MODALITIES
from zoo.errors import ZooError

#: The precisions ``embed`` accepts (zoo.embeddings.PRECISIONS, kept here so the parser needs no numpy).
PRECISIONS = ("float32", "float16", "int8", "uint8", "binary", "ubinary")

#: ``--out`` suffixes and what each writes.
OUT_FORMATS = {".npy": "numpy array", ".json": "JSON object", ".parquet": "Parquet table"}

#: How many cosines to the first input ``zoo embed`` prints (``--json`` or ``--out`` give every vector).
MAX_COSINES = 10

#: Keyword hints in zoo error messages (written for Python callers), and what the command line says instead.
#: Applied in order; the first patterns are the more specific ones.
FLAG_HINTS: tuple[tuple[str, str], ...] = (
    (r"\bpass truncate=True\b", "leave out --no-truncate"),
    (r"\btruncate=False\b", "--no-truncate"),
    (r"\bforce_dim=True\b", "--force-dim"),
    (r"\btrust_remote_code=True to zoo\.load\b", "--trust-remote-code"),
    (r"\btrust_remote_code=True\b", "--trust-remote-code"),
    (r"\bmodality=(['\"])([\w-]+)\1", r"--modality \2"),
    (r"\bmodality=(?![\w'\"])", "--modality"),
    (r"\bpass task_instruction or prompt_name\b", "pass --instruction or --prompt-name"),
    (r"\btask_instruction=(['\"])(.*?)\1", r"--instruction \2"),
    (r"\btask_instruction=", "--instruction"),
    (r"\bprompt_name=(['\"])([\w-]+)\1", r"--prompt-name \2"),
    (r"\bprompt_name=", "--prompt-name"),
    (r"\bnormalize=False\b", "--no-normalize"),
    (r"\bpass calibration= \([^)]*\) or ", ""),  # int8/uint8 ranges: the command line has no calibration set
    # "name must be ..." about an option the command line passes through
    (r"(?<![\w.])prompt_name must be\b", "--prompt-name must be"),
    (r"(?<![\w.])task_instruction must be\b", "--instruction must be"),
    (r"(?<![\w.])dim must be\b", "--dim must be"),
    (r"(?<![\w.])precision must be\b", "--precision must be"),
    (r"(?<![\w.])batch_size must be\b", "--batch-size must be"),
    # ad-hoc names whose files are not here
    (r"\bdownload=False forbids downloads\b", "this command downloads nothing"),
    (r"\bcall zoo\.load\((['\"])(.*?)\1\) once with downloads allowed\b",
     r"run `zoo fetch \2` with downloads allowed"),
)


def cli_message(message: str) -> str:
    """A zoo error message in the command line's words: keyword hints become flags, one line."""
    for pattern, replacement in FLAG_HINTS:
        message = re.sub(pattern, replacement, message)
    return " ".join(message.split())


class CommandLineError(Exception):
    """A bad command line found after parsing (no inputs, an unknown --out suffix...): one line, exit status 2."""


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


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"a port is 1..65535, not {value}")
    return value


def _print_json(doc) -> None:
    print(json.dumps(doc, ensure_ascii=False, default=str))


# -- list, card ---------------------------------------------------------------------------------
def _list_row(card) -> dict:
    """One model of ``zoo list``: WEIGHTS says whether its files are on this machine now (checked by name, not
    hashed: ``zoo.load`` verifies them), and otherwise how to get them."""
    from zoo.catalog.sources import availability

    here = availability(card)
    return {"name": card.name, "dim": card.dim, "modalities": list(card.modalities),
            "weights": f"here ({here.where})" if here.present else f"missing: {here.how}",
            "available": here.present, "where": here.where, "get": here.how,
            "offline_ready": card.offline_ready, "license": card.license, "space": card.space or card.name}


def _table(rows: list[dict], columns: list[tuple[str, str, bool]]) -> list[str]:
    """Aligned text lines: a header, then one line per row. ``columns``: (header, key, right-aligned)."""
    cells = [[h for h, _, _ in columns]] + [[str(row[k]) for _, k, _ in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = []
    for line in cells:
        parts = [cell.rjust(width) if right else cell.ljust(width)
                 for cell, width, (_, _, right) in zip(line, widths, columns, strict=True)]
        lines.append("  ".join(parts).rstrip())
    return lines


def _cmd_list(args: argparse.Namespace) -> int:
    from zoo.catalog import registry

    cards = [registry.card(n) for n in registry.list_models(args.pattern, modality=args.modality)]
    rows = [_list_row(c) for c in cards]
    if args.offline_ready:  # the files are here: nothing to download
        rows = [r for r in rows if r["available"]]
    if args.json:
        _print_json(rows)
    elif rows:
        for row in rows:
            row["modalities"] = ",".join(row["modalities"])
        columns = [("NAME", "name", False), ("DIM", "dim", True), ("MODALITIES", "modalities", False),
                   ("WEIGHTS", "weights", False), ("LICENSE", "license", False)]
        print("\n".join(_table(rows, columns)))
    if not rows:
        print("zoo: no models match", file=sys.stderr)
        return 1
    return 0


def _cmd_card(args: argparse.Namespace) -> int:
    from zoo.catalog import registry

    card = registry.card(args.name)
    if args.json:
        _print_json(card.to_dict())
    else:
        print(card.to_markdown())
    return 0


# -- embed --------------------------------------------------------------------------------------
class _Inputs:
    """The texts of ``zoo embed``: arguments in order (``-`` reads stdin), then each ``--from-file``."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._stdin: list[str] | None = None

    def _lines(self, text: str, where: str) -> list[str]:
        lines = text.splitlines()
        kept = [line for line in lines if line.strip()]
        if len(kept) < len(lines):
            n = len(lines) - len(kept)
            print(f"zoo: skipped {n} blank line{'s' if n != 1 else ''} in {where}", file=sys.stderr)
        return kept

    def stdin(self) -> list[str]:
        if self._stdin is None:
            data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
            self._stdin = self._lines(_decode(data, "standard input"), "standard input")
        return self._stdin

    def file(self, path: str) -> list[str]:
        if path == "-":
            return self.stdin()
        return self._lines(_decode(Path(path).read_bytes(), path), path)


def _decode(data: bytes, where: str) -> str:
    from zoo.errors import InvalidInputError

    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{where} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _read_inputs(args: argparse.Namespace) -> list[str]:
    inputs = _Inputs()
    for item in args.inputs:
        inputs.items.extend(inputs.stdin() if item == "-" else [item])
    for path in args.from_file or ():
        inputs.items.extend(inputs.file(path))
    return inputs.items


def _out_format(out: str | None) -> str | None:
    if out is None:
        return None
    suffix = Path(out).suffix.lower()
    if suffix not in OUT_FORMATS:
        raise CommandLineError(f"--out {out!r}: unknown suffix {suffix or '(none)'!r}; "
                               f"use one of {', '.join(OUT_FORMATS)}")
    return suffix


def _write_vectors(path: str, fmt: str, e, texts: list[str]) -> None:
    """Write ``e`` to exactly ``path`` in the format its suffix names."""
    import numpy as np

    if fmt == ".npy":
        with open(path, "wb") as fh:  # a file object: np.save adds no ".npy" of its own
            np.save(fh, e.vectors, allow_pickle=False)
    elif fmt == ".json":
        doc = {"model": e.model, "space": e.space, "dim": e.dim, "modality": e.modality, "precision": e.precision,
               "vectors": e.vectors.tolist()}
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
            fh.write("\n")
    else:
        from zoo.errors import require

        pa = require("pyarrow", extra="scale", purpose="zoo embed --out FILE.parquet")
        pq = require("pyarrow.parquet", extra="scale", purpose="zoo embed --out FILE.parquet")
        n, width = e.vectors.shape
        offsets = pa.array(np.arange(0, n * width + 1, width, dtype=np.int32))
        vectors = pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(e.vectors).reshape(-1)))
        meta = {"space": e.space, "model": e.model, "dim": str(e.dim), "modality": e.modality,
                "precision": e.precision}
        table = pa.table({"input": pa.array(texts, type=pa.string()), "vector": vectors}, metadata=meta)
        pq.write_table(table, path)


def _cmd_embed(args: argparse.Namespace) -> int:
    fmt = _out_format(args.out)  # a bad suffix is refused before any model loads
    if not args.inputs and not args.from_file:
        raise CommandLineError("no inputs: give texts, '-' to read them from stdin, or --from-file FILE")
    texts = _read_inputs(args)
    if not texts:
        raise CommandLineError("no inputs: every line read was blank")

    import dataclasses

    from zoo.catalog.loader import load
    from zoo.embeddings import similarity

    model = load(args.name, trust_remote_code=args.trust_remote_code)
    e = model.embed(texts, task_instruction=args.instruction, prompt_name=args.prompt_name, modality=args.modality,
                    batch_size=args.batch_size, normalize=args.normalize, dim=args.dim, force_dim=args.force_dim,
                    precision=args.precision, truncate=args.truncate)
    if fmt is not None:
        _write_vectors(args.out, fmt, e, texts)
    if args.json:
        doc = {"model": e.model, "space": e.space, "shape": list(e.shape), "modality": e.modality,
               "precision": e.precision, "dim": e.dim}
        if args.out:
            doc["out"] = args.out
        else:
            doc["vectors"] = e.vectors.tolist()
        _print_json(doc)
        return 0
    print(f"model {e.model}  space {e.space}  shape {e.shape}  modality {e.modality}")
    if len(e) >= 2 and e.precision in ("float32", "float16"):
        first = similarity(dataclasses.replace(e, vectors=e.vectors[:1]), e)
        for j in range(1, min(len(e), MAX_COSINES + 1)):
            print(f"cosine(input[0], input[{j}]) = {first[0, j]:.4f}")
        if len(e) > MAX_COSINES + 1:
            print(f"... {len(e) - MAX_COSINES - 1} more (--out or --json give every vector)")
    if args.out:
        print(f"wrote {args.out}")
    return 0


# -- embed-dataset ------------------------------------------------------------------------------
def _cmd_embed_dataset(args: argparse.Namespace) -> int:
    from zoo.data import scale

    if getattr(args, "id_column", None) is None:
        return scale.run_command(args)
    job = scale.embed_dataset(args.model, args.source, args.output, column=args.column, modality=args.modality,
                              shard_rows=args.shard_rows, actors=args.actors, cpus_per_actor=args.cpus_per_actor,
                              num_cpus=args.num_cpus, address=args.address, cache=not args.no_cache,
                              progress=not args.no_progress, task_instruction=args.instruction,
                              prompt_name=args.prompt_name, id_column=args.id_column)
    print(f"{job.output}: {job.rows} rows of {job.items} items in {job.shards} shards "
          f"({job.shards_embedded} embedded now, {job.cache_hits} cache hits) in {job.seconds:.1f}s")
    if job.bad_items:
        print(f"{job.bad_items} bad items: see {job.errors}")
    return 0


# -- fetch, verify, compat ----------------------------------------------------------------------
def _cmd_fetch(args: argparse.Namespace) -> int:
    from zoo.catalog import registry
    from zoo.catalog.adhoc import is_adhoc, resolve_adhoc
    from zoo.catalog.sources import fetch

    if is_adhoc(args.name):  # open_clip:, timm:, hf-hub: names: what zoo.load would download
        card, resolved = resolve_adhoc(args.name, download=True)
        print(f"{card.name}: {resolved.origin} {resolved.path}")
        return 0
    card = registry.card(args.name)
    for resolved in fetch(card):
        print(f"{card.name}: {resolved.source.describe()}: {resolved.origin} {resolved.path}")
    return 0


def _cached(card) -> bool:
    """Whether every file the card loads is here already (no download needed)."""
    from zoo.catalog.sources import resolve, resolve_hub

    try:
        resolve(card, download=False)
        for src in card.hub_sources:
            if src.role != "model":
                resolve_hub(card, src, download=False)
    except ZooError:
        return False
    return True


def _cmd_verify(args: argparse.Namespace) -> int:
    from zoo.catalog import registry
    from zoo.catalog.verify import format_report, verify

    if bool(args.name) == bool(args.all_cached):
        raise CommandLineError("verify takes a model name or --all-cached")
    names = [args.name] if args.name else [n for n in registry.list_models() if registry.card(n).examples]
    failed = 0
    for name in names:
        card = registry.card(name)
        if not card.examples:
            print(f"{name}: the card records no published example to verify")
            continue
        if args.all_cached and not _cached(card):
            print(f"{name}: skipped (weights not cached; `zoo fetch {name}` brings them)")
            continue
        if card.remote_code and not args.trust_remote_code:
            print(f"{name}: skipped (it runs its repository's code: pass --trust-remote-code to consent)")
            continue
        try:
            report = verify(card, download=args.download, trust_remote_code=args.trust_remote_code)
        except ZooError as exc:
            print(f"{name}: error: {cli_message(str(exc))}")
            failed += 1
            continue
        print(format_report(report))
        failed += report.status == "fail"
    return 1 if failed else 0


def _read_items(path: str) -> list[str]:
    """Anchor items from a file: an AnchorSet ``.json`` or one text per non-empty line."""
    if path.endswith(".json"):
        from zoo.spaces.align import AnchorSet

        anchors = AnchorSet.load(path)
        return list(anchors.labels if anchors.kind == "file" else anchors.items)
    return [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def _cmd_compat(args: argparse.Namespace) -> int:
    from zoo.spaces.compat import METRICS, compatibility

    if len(args.models) < 2:
        raise CommandLineError("compat needs at least two models")
    items = _read_items(args.anchors)
    test = _read_items(args.test) if args.test else None
    result = compatibility(args.models, items, test_items=test, test_fraction=args.test_fraction,
                           seed=args.seed, modality=args.modality)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = result.to_csv(out / "compat.csv"), result.plot(out / "compat.png")
    print(f"{result.n_anchors} anchors, {result.n_test} held-out items")
    print(f"{'model_a':28} {'model_b':28} " + " ".join(f"{m:>21}" for m in METRICS))
    for row in result.rows():
        if row["model_a"] != row["model_b"]:
            print(f"{row['model_a']:28} {row['model_b']:28} " + " ".join(f"{row[m]:21.3f}" for m in METRICS))
    print(f"wrote {csv_path} and {png_path}")
    return 0


# -- demo, bench --------------------------------------------------------------------------------
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


def demo_address(host: str | None, port: int | None, environ=os.environ) -> tuple[str, int]:
    """The demo's host and port: the flags, else GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, else 127.0.0.1:7860."""
    host = host or environ.get("GRADIO_SERVER_NAME", "").strip() or DEFAULT_HOST
    if port is None:
        text = environ.get("GRADIO_SERVER_PORT", "").strip()
        try:
            port = _port(text) if text else DEFAULT_PORT
        except argparse.ArgumentTypeError as exc:
            raise CommandLineError(f"GRADIO_SERVER_PORT: {exc}") from None
    return host, port


def _cmd_demo(args: argparse.Namespace) -> int:
    from zoo.apps.demo import launch

    host, port = demo_address(args.host, args.port)
    launch(port=port, model=args.model, host=host)
    return 0


def bench_runner() -> Path:
    """bench/run.py of the source checkout this zoo runs from (the benchmarks are not part of the wheel)."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (root / "bench" / "run.py").is_file():
            return root / "bench" / "run.py"
    raise ZooError("zoo bench runs the benchmarks of a source checkout: run it from the repository "
                   "(no bench/run.py here or beside the installed package)")


def _cmd_bench(options: list[str]) -> int:
    import subprocess

    return subprocess.run([sys.executable, str(bench_runner()), *options]).returncode


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
