"""ONNX text backend speed: paraphrase-MiniLM-L3-v2 (onnxruntime) against all-MiniLM-L6-v2 (torch).

    python bench/onnx_text.py            # about 3 minutes on 2 cores
    python bench/onnx_text.py --quick    # a smoke run

Both models go through ``zoo.load(...).embed`` (same tokenization, length-sorted token-budget
batching and pooling; only the backend differs), on the same real-English texts (standard-library
docstrings) whose lengths spread uniformly over 4..126 tokens, so neither model truncates.
The two models are different networks (3 layers vs 6), so this is the speed a user gets by
picking the small ONNX card, not a like-for-like backend comparison. Also measured: onnxruntime
with 1 thread against the default (every usable CPU), and load to first vector in fresh
interpreters (the ONNX path imports no torch). Prints a Markdown report.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import alternate  # noqa: E402
from corpus import mixed_length_texts  # noqa: E402

ONNX, TORCH = "paraphrase-minilm-l3-v2", "all-minilm-l6-v2"


def throughput(n_texts: int, pairs: int) -> list[str]:
    import zoo

    onnx, torch_model = zoo.load(ONNX), zoo.load(TORCH)
    one_thread = zoo.load(ONNX, threads=1)

    def count(texts):
        return [len(ids) for ids in onnx.tokenizer(texts, truncation=False)["input_ids"]]

    texts = mixed_length_texts(n_texts, count, lo=4, hi=126, seed=0)
    tokens = sum(len(r) for r in onnx.tokenize(texts))
    slices = np.array_split(np.arange(n_texts), pairs)

    def runner(model):
        return lambda i: model.embed([texts[j] for j in slices[i]])

    for m in (onnx, torch_model, one_thread):  # warm up
        m.embed(texts[:64])
    print(f"{n_texts} texts, {tokens:,} tokens, in {pairs} slices")
    vs_torch = alternate(runner(onnx), runner(torch_model), pairs)
    threads = alternate(runner(onnx), runner(one_thread), pairs)
    per_text = n_texts / sum(vs_torch.ours), n_texts / sum(vs_torch.base), n_texts / sum(threads.base)
    return [
        f"| texts/s, {n_texts:,} texts of 4-126 tokens | {per_text[0]:.0f} | {per_text[1]:.0f} "
        f"| {vs_torch.summary()} |",
        f"| tokens/s | {tokens / sum(vs_torch.ours):,.0f} | {tokens / sum(vs_torch.base):,.0f} | |",
        f"| onnxruntime {onnx.backend.threads} threads vs 1 thread (texts/s) | {per_text[0]:.0f} "
        f"| {per_text[2]:.0f} (1 thread) | {threads.summary()} |",
    ]


def load_to_first_vector(pairs: int) -> list[str]:
    def timed(name: str) -> float:
        code = f"import zoo; zoo.load({name!r}).embed(['a dog'])"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        return time.perf_counter() - t0

    result = alternate(lambda i: timed(ONNX), lambda i: timed(TORCH), pairs)
    return [f"| load to first vector, fresh process (s) | {statistics.median(result.ours):.2f} "
            f"| {statistics.median(result.base):.2f} | {result.summary()} |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_texts, pairs, loads = (400, 2, 1) if args.quick else (4000, 5, 3)
    rows = throughput(n_texts, pairs) + load_to_first_vector(loads)
    import onnxruntime
    import torch

    print(f"\nonnxruntime {onnxruntime.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads)\n")
    print(f"| measurement | {ONNX} (onnx) | {TORCH} (torch) | ratio (median of pairs) |")
    print("|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
