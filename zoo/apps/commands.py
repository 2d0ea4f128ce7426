"""The commands of ``zoo`` (list, card, embed-dataset, fetch, verify, compat, demo, bench), and what every
command shares: ``CommandLineError``, error messages in the command line's words (``FLAG_HINTS``), ``--port``.

``zoo.apps.cli`` parses the command line and calls these; ``zoo embed`` lives in ``zoo.apps.embed_command``.
Nothing here imports ``zoo.apps.cli`` (``python -m zoo.apps.cli`` runs that module as ``__main__``: an import of
it from here would make a second copy, whose ``CommandLineError`` its ``main`` would not catch). numpy, torch and
pyarrow are imported inside the commands that need them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from zoo.errors import ZooError

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
