"""The padding adversary: 95% of texts 8 tokens long, 5% 256, shuffled. Batching by arrival order pads
almost every batch to 256 tokens; the zoo sorts by exact token length and packs under a token budget.

    python bench/padding_adversary.py            # 1,000 texts, 3 alternating pairs per baseline (~17 min)
    python bench/padding_adversary.py --quick    # 400 texts, 1 pair

Two baselines on the same weights (all-MiniLM-L6-v2), in the same process, alternating with the zoo:

- sentence-transformers ``encode`` (batch size 32; it sorts by character length itself);
- plain transformers in arrival order: batches of 32, ``padding=True``, mean pooling, L2.

Every row must be within cosine 0.9999 of each baseline, or no ratio is reported.
Targets (issue 7): at least 1.0x against sentence-transformers and 3x against unsorted batching.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import Row, alternate, machine, ratio_met, row_cosines, write_result, write_summary  # noqa: E402
from corpus import mixed_length_texts  # noqa: E402

MODEL = "all-minilm-l6-v2"
MIN_COS = 0.9999


def adversarial_texts(n: int, count_tokens, seed: int = 0) -> list[str]:
    n_long = max(1, round(n * 0.05))
    texts = (mixed_length_texts(n - n_long, count_tokens, lo=8, hi=8, seed=seed)
             + mixed_length_texts(n_long, count_tokens, lo=256, hi=256, seed=seed + 1))
    random.Random(seed).shuffle(texts)
    return texts


def unsorted_transformers(model, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Batches in arrival order, each padded to its longest text: what a naive loop does."""
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = model.tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=256,
                                  return_tensors="pt")
            states = model.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="400 texts, 1 pair")
    p.add_argument("--texts", type=int, default=1000)
    p.add_argument("--pairs", type=int, default=3)
    args = p.parse_args()
    n, pairs = (400, 1) if args.quick else (args.texts, args.pairs)

    import torch
    from sentence_transformers import SentenceTransformer

    import zoo

    torch.set_num_threads(torch.get_num_threads())
    model = zoo.load(MODEL)
    st = SentenceTransformer(str(model.resolved.path), device="cpu")
    texts = adversarial_texts(n, lambda ts: [len(i) for i in model.tokenizer(ts, truncation=False)["input_ids"]])
    lengths = [len(r) for r in model.tokenize(texts)]
    print(f"{n} texts: {sum(x <= 10 for x in lengths)} of about 8 tokens, {sum(x >= 250 for x in lengths)} of 256")
    model.embed(texts[:64])
    st.encode(texts[:64])
    rows, summary = [], []
    targets = {"sentence-transformers encode (batch 32)": 1.0, "transformers, arrival order (batch 32)": 3.0}
    outs: dict[str, np.ndarray] = {}
    baselines = {
        "sentence-transformers encode (batch 32)": lambda: st.encode(texts, batch_size=32, normalize_embeddings=True),
        "transformers, arrival order (batch 32)": lambda: unsorted_transformers(model, texts),
    }
    for name, run_base in baselines.items():
        print(f"against {name}:")
        paired = alternate(lambda i: outs.__setitem__("ours", model.embed(texts).vectors),
                           lambda i, f=run_base: outs.__setitem__("base", f()), pairs)
        cos = row_cosines(outs["ours"], outs["base"])
        ok = bool(cos.min() >= MIN_COS)
        ratio = paired.summary() if ok else f"not reported: min cosine {cos.min():.6f} < {MIN_COS}"
        rows.append((name, f"{np.median(paired.ours):.2f}", f"{np.median(paired.base):.2f}", ratio,
                     f"{cos.min():.6f}"))
        print(f"  {ratio}")
        summary.append(Row(f"padding adversary, {n:,} texts (95% 8 tokens, 5% 256): vs {name} (s)",
                           f"{np.median(paired.ours):.2f}", f"{np.median(paired.base):.2f}", ratio,
                           f">= {targets[name]:.1f}x", ok and ratio_met(paired, targets[name]),
                           f"min row cosine {cos.min():.6f}"))
    table = ("| baseline | zoo (s) | baseline (s) | speed-up (median of pairs) | min row cosine |\n"
             "|---|---|---|---|---|\n" + "".join(f"| {' | '.join(r)} |\n" for r in rows))
    command = "python bench/padding_adversary.py" + (" --quick" if args.quick else f" --texts {n} --pairs {pairs}")
    md = (f"# Padding adversary\n\n{n} texts, 95% of 8 tokens and 5% of 256, shuffled; all-MiniLM-L6-v2; "
          f"{pairs} alternating pairs per baseline.\n\nMachine: {machine()}\n\nCommand: "
          f"`{command}`\n\n{table}\n"
          "Targets (issue 7): 1.0x or better against sentence-transformers, 3x or better against arrival-order "
          "batching.\n")
    print(md)
    write_result("padding_adversary", md)
    write_summary("padding_adversary", command, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
