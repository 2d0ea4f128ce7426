"""``zoo embed``: its inputs (arguments, stdin, ``--from-file``), its ``--out`` formats and what it prints."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from zoo.apps.commands import CommandLineError, _print_json

#: ``--out`` suffixes and what each writes.
OUT_FORMATS = {".npy": "numpy array", ".json": "JSON object", ".parquet": "Parquet table"}

#: How many cosines to the first input ``zoo embed`` prints (``--json`` or ``--out`` give every vector).
MAX_COSINES = 10


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
