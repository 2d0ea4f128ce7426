"""GPU check: fp32 / fp16 / bf16 text and CLIP image embedding, zoo against its baseline on the same GPU.

    bash bench/gpu_check.sh                  # on a machine with a CUDA GPU (a few minutes)
    python bench/gpu_check.py --smoke        # tiny sizes, any device (the CPU included): checks the script runs

For each precision the zoo and its baseline embed the same inputs in alternating order (3 pairs,
after a warm-up), timed with ``torch.cuda.synchronize``:

- text: all-MiniLM-L6-v2 (real weights, from the package the zoo's card pins), 20,000 standard-library
  texts of 4 to 256 tokens. zoo: ``zoo.load(..., device=, compute_dtype=)`` then ``embed``; baseline:
  ``SentenceTransformer(device=)``, ``.half()`` / ``.to(torch.bfloat16)`` for the low precisions,
  ``encode(batch_size=128)``.
- images: open_clip ViT-B-32 with seeded random weights (real CLIP weights are not on the machines this
  project is built on; speed does not depend on the values), 2,000 synthetic JPEG/PNG photos decoded
  from disk. zoo: ``zoo.load("clip-vit-b-32-laion2b", device=, compute_dtype=)`` with its decoding threads;
  baseline: open_clip's own ``preprocess`` + ``encode_image`` on the model cast the same way, batches of 128.

Fidelity: every row of every run against the baseline's fp32 output (row cosine, min and mean), so each
precision's loss is shown for both libraries. A zoo ratio is reported only where the zoo's rows are within
cosine 0.9999 of the baseline's at the same precision, or (low precisions) no further from the fp32
reference than the baseline's own rows are plus 0.001.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import Row, machine, row_cosines, write_result, write_summary  # noqa: E402

TEXT_MODEL, CLIP_CARD = "all-minilm-l6-v2", "clip-vit-b-32-laion2b"
PRECISIONS = ("float32", "float16", "bfloat16")
SAME, SLACK = 0.9999, 0.001


def timed_pairs(ours, base, pairs: int, sync) -> tuple[list[float], list[float], np.ndarray, np.ndarray]:
    """Alternating runs (ours first on even pairs); returns both time lists and the last outputs."""
    times: dict[str, list[float]] = {"ours": [], "base": []}
    out: dict[str, np.ndarray] = {}
    for i in range(pairs):
        for key, fn in ((("ours", ours), ("base", base)) if i % 2 == 0 else (("base", base), ("ours", ours))):
            sync()
            t0 = time.perf_counter()
            out[key] = fn()
            sync()
            times[key].append(time.perf_counter() - t0)
    return times["ours"], times["base"], out["ours"], out["base"]


def cast(module, precision: str):
    import torch

    return module.to(getattr(torch, precision))


def check(name: str, n: int, ours_t, base_t, ours, base, ref, precision) -> tuple[list, Row]:
    """One table line (printed) and one summary row, with the fidelity rule applied."""
    c_ours, c_base, c_same = row_cosines(ours, ref), row_cosines(base, ref), row_cosines(ours, base)
    ok = c_same.min() >= SAME or (precision != "float32" and c_ours.min() >= c_base.min() - SLACK)
    ratios = sorted(b / o for o, b in zip(ours_t, base_t, strict=True))
    ratio = (f"{statistics.median(ratios):.2f}x (pairs {len(ratios)}, min {ratios[0]:.2f}x, max {ratios[-1]:.2f}x)"
             if ok else "not reported: fidelity failed")
    line = [name, precision, f"{n / statistics.median(ours_t):,.0f}", f"{n / statistics.median(base_t):,.0f}", ratio,
            f"{c_ours.min():.6f} / {c_ours.mean():.6f}", f"{c_base.min():.6f} / {c_base.mean():.6f}",
            f"{c_same.min():.6f}"]
    row = Row(f"GPU {name}, {precision} (items/s)", line[2], line[3], ratio, "report", None,
              f"vs fp32 reference: zoo min {c_ours.min():.6f}, baseline min {c_base.min():.6f}")
    print(" | ".join(line), flush=True)
    return line, row


def text_check(device: str, n: int, pairs: int, precisions, sync) -> list[tuple[list, Row]]:
    import torch
    from corpus import mixed_length_texts
    from sentence_transformers import SentenceTransformer

    import zoo

    probe = zoo.load(TEXT_MODEL)
    path = str(probe.resolved.path)
    texts = mixed_length_texts(n, lambda ts: [len(i) for i in probe.tokenizer(ts, truncation=False)["input_ids"]],
                               lo=4, hi=256, seed=0)
    ref_model = SentenceTransformer(path, device=device)
    ref = ref_model.encode(texts, batch_size=128, normalize_embeddings=True)
    results = []
    for precision in precisions:
        ours_model = zoo.load(TEXT_MODEL, device=device, compute_dtype=precision)
        st = cast(SentenceTransformer(path, device=device), precision)
        ours_model.embed(texts[:256])
        st.encode(texts[:256], batch_size=128)
        with torch.inference_mode():
            result = timed_pairs(lambda m=ours_model: m.embed(texts).vectors,
                                 lambda s=st: s.encode(texts, batch_size=128, normalize_embeddings=True),
                                 pairs, sync)
        results.append(check(f"text all-MiniLM-L6-v2, {n:,} texts", n, *result, ref, precision))
        del ours_model, st
    return results


def image_check(device: str, n: int, pairs: int, precisions, sync, root: Path) -> list[tuple[list, Row]]:
    import torch
    from image_throughput import make_images, save_snapshot
    from PIL import Image

    import zoo

    base_fp32, preprocess, _ = save_snapshot(root)
    paths = make_images(root / "images", n)
    batch = 128

    def run_base(model, dtype):
        out = []
        with torch.inference_mode():
            for s in range(0, len(paths), batch):
                pixels = torch.stack([preprocess(Image.open(p)) for p in paths[s:s + batch]])
                out.append(model.encode_image(pixels.to(device, dtype)).float().cpu().numpy())
        return np.concatenate(out)

    ref = run_base(copy.deepcopy(base_fp32).to(device), torch.float32)
    results = []
    for precision in precisions:
        dtype = getattr(torch, precision)
        base = cast(copy.deepcopy(base_fp32), precision).to(device)  # the fp32 weights stay as they are
        ours_model = zoo.load(CLIP_CARD, device=device, compute_dtype=precision)
        ours_model.embed(paths[:8])
        result = timed_pairs(lambda m=ours_model: m.embed(paths, batch_size=batch).vectors,
                             lambda b=base, d=dtype: run_base(b, d), pairs, sync)
        results.append(check(f"CLIP ViT-B-32 images, {n:,} files", n, *result, ref, precision))
        del ours_model, base
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--texts", type=int, default=20_000)
    p.add_argument("--images", type=int, default=2_000)
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    p.add_argument("--smoke", action="store_true", help="64 texts, 16 images, 1 pair: checks the script runs")
    args = p.parse_args()
    if args.smoke:
        args.texts, args.images, args.pairs = 64, 16, 1

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA GPU here: run this on a GPU machine (or --device cpu --smoke to check the script)")
        return 2
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "no GPU (CPU run)"
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zoo-gpu-") as tmp:
        root = Path(tmp)
        from image_throughput import offline_cache

        offline_cache(root)  # the CLIP snapshot goes into a fresh offline cache; the text weights are packaged
        results = text_check(args.device, args.texts, args.pairs, args.precisions, sync)
        results += image_check(args.device, args.images, args.pairs, args.precisions, sync, root)
    minutes = (time.perf_counter() - t0) / 60
    command = "python bench/gpu_check.py " + " ".join(sys.argv[1:])
    header = ("| workload | precision | zoo items/s | baseline items/s | speed-up (median of pairs) | zoo vs fp32 "
              "reference: min / mean cosine | baseline vs fp32 reference: min / mean | zoo vs baseline, same "
              "precision: min |")
    md = "\n".join([
        "# GPU check: zoo against sentence-transformers and open_clip, by precision", "",
        f"Device: {gpu}; {machine()}. Whole run {minutes:.1f} min.", "", f"Command: `{command}`", "",
        header, "|---|---|---|---|---|---|---|---|",
        *("| " + " | ".join(line) + " |" for line, _ in results), "",
        "The fp32 reference is the baseline library's own fp32 output on the same device. Baselines: "
        "sentence-transformers `encode` (text), open_clip `preprocess` + `encode_image` (images).", ""])
    print("\n" + md)
    print(f"wrote {write_result('gpu_check' + ('_smoke' if args.smoke else ''), md)}")
    write_summary("gpu_check" + ("_smoke" if args.smoke else ""), command, [row for _, row in results])
    return 0


if __name__ == "__main__":
    sys.exit(main())
