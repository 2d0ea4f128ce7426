"""The ``zoo`` command line: list, card, embed, embed-dataset, fetch, verify, compat, demo, bench.

Errors print one line on stderr and exit non-zero: 2 for a bad command line, 1 for a zoo
error (unknown model, missing weights, bad input), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from zoo.errors import ZooError


def _cmd_list(args: argparse.Namespace) -> int:
    from zoo import registry

    names = registry.list_models(args.pattern, modality=args.modality)
    for name in names:
        c = registry.card(name)
        ready = "offline-ready" if c.offline_ready else "hub"
        print(f"{name:32} {c.dim:>5}  {','.join(c.modalities):14} {ready}")
    if not names:
        print("no models match", file=sys.stderr)
        return 1
    return 0


def _cmd_card(args: argparse.Namespace) -> int:
    from zoo import registry

    print(registry.card(args.name).to_markdown())
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    import numpy as np

    from zoo.embeddings import similarity
    from zoo.loader import load

    texts = list(args.inputs)
    if args.from_file:
        texts += Path(args.from_file).read_text(encoding="utf-8").splitlines()
    model = load(args.name, trust_remote_code=args.trust_remote_code)
    e = model.embed(texts, task_instruction=args.instruction, prompt_name=args.prompt_name, dim=args.dim)
    print(f"model {e.model}  space {e.space}  shape {e.shape}  modality {e.modality}")
    if len(e) >= 2:
        sims = similarity(e, e)
        for j in range(1, len(e)):
            print(f"cosine(input[0], input[{j}]) = {sims[0, j]:.4f}")
    if args.out:
        np.save(args.out, e.vectors, allow_pickle=False)
        print(f"wrote {args.out}")
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    from zoo import registry
    from zoo.sources import fetch

    card = registry.card(args.name)
    for resolved in fetch(card):
        print(f"{card.name}: {resolved.source.describe()}: {resolved.origin} {resolved.path}")
    return 0


def _cached(card) -> bool:
    """Whether every file the card loads is here already (no download needed)."""
    from zoo.sources import resolve, resolve_hub

    try:
        resolve(card, download=False)
        for src in card.hub_sources:
            if src.role != "model":
                resolve_hub(card, src, download=False)
    except ZooError:
        return False
    return True


def _cmd_verify(args: argparse.Namespace) -> int:
    from zoo import registry
    from zoo.verify import format_report, verify

    if bool(args.name) == bool(args.all_cached):
        print("zoo: error: verify takes a model name or --all-cached", file=sys.stderr)
        return 2
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
            print(f"{name}: error: {exc}")
            failed += 1
            continue
        print(format_report(report))
        failed += report.status == "fail"
    return 1 if failed else 0


def _read_items(path: str) -> list[str]:
    """Anchor items from a file: an AnchorSet ``.json`` or one text per non-empty line."""
    if path.endswith(".json"):
        from zoo.align import AnchorSet

        anchors = AnchorSet.load(path)
        return list(anchors.labels if anchors.kind == "file" else anchors.items)
    return [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def _cmd_compat(args: argparse.Namespace) -> int:
    from zoo.compat import METRICS, compatibility

    if len(args.models) < 2:
        print("zoo: error: compat needs at least two models", file=sys.stderr)
        return 2
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


def _cmd_demo(args: argparse.Namespace) -> int:
    from zoo.demo import launch

    launch(port=args.port, model=args.model)
    return 0


def bench_runner() -> Path:
    """bench/run.py of the source checkout this zoo runs from (the benchmarks are not part of the wheel)."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (root / "bench" / "run.py").is_file():
            return root / "bench" / "run.py"
    raise ZooError("zoo bench runs the benchmarks of a source checkout: run it from the repository "
                   "(no bench/run.py here or beside the installed package)")


def _cmd_bench(options: list[str]) -> int:
    import subprocess

    return subprocess.run([sys.executable, str(bench_runner()), *options]).returncode


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zoo", description="embedding-zoo: one registry, one embed call.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("list", help="registered models")
    s.add_argument("pattern", nargs="?", help="fnmatch pattern, e.g. 'e5*'")
    s.add_argument("--modality", help="text, code, image, audio, points")
    s.set_defaults(func=_cmd_list)

    s = sub.add_parser("card", help="a model card as Markdown")
    s.add_argument("name")
    s.set_defaults(func=_cmd_card)

    s = sub.add_parser("embed", help="embed inputs; prints shape, space and cosines to the first input")
    s.add_argument("name")
    s.add_argument("inputs", nargs="*", help="texts to embed")
    s.add_argument("--from-file", help="also embed each line of this file")
    s.add_argument("--instruction", help="task instruction (models with an instruction template)")
    s.add_argument("--prompt-name", help="a named prompt of the card, e.g. query")
    s.add_argument("--dim", type=int, help="Matryoshka truncation")
    s.add_argument("--out", help="write the vectors to this .npy file")
    s.add_argument("--trust-remote-code", action="store_true", help="consent to run the model repo's code")
    s.set_defaults(func=_cmd_embed)

    from zoo import scale

    s = sub.add_parser("embed-dataset", help="embed a Parquet text column or a folder/glob of files on Ray Data "
                       "(resumable; needs the scale extra)")
    scale.add_arguments(s)  # positional model, source, output + options; sets func

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
    s.add_argument("--modality", help="the items' modality, for models that embed several")
    s.add_argument("--out", default="compat", help="folder for compat.csv and compat.png (default: ./compat)")
    s.set_defaults(func=_cmd_compat)

    s = sub.add_parser("demo", help="start the Gradio demo on 127.0.0.1 (needs the demo extra)")
    s.add_argument("--port", type=int, default=7860)
    s.add_argument("--model", default="zoo-bind-mini", help="the model that indexes the search gallery")
    s.set_defaults(func=_cmd_demo)

    s = sub.add_parser("bench", help="run the benchmark suite and write bench/RESULTS.md (from a source checkout)",
                       add_help=False)
    s.add_argument("options", nargs=argparse.REMAINDER, help="bench/run.py's options: --quick, --only NAME..., --list")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    try:
        if argv[:1] == ["bench"]:  # every option after "bench" belongs to bench/run.py
            return _cmd_bench(argv[1:])
        args = parser.parse_args(argv)
        return args.func(args)
    except (ZooError, OSError) as exc:
        print(f"zoo: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
