"""Text embedding speed and memory: zoo against sentence-transformers, same weights, same process.

    python bench/text_throughput.py            # the full run (about 15 minutes on 2 cores)
    python bench/text_throughput.py --quick    # a smoke run (about 1 minute)
    python bench/text_throughput.py --parts memory   # re-measure one part, keep the others

Three measurements, each against its baseline:

1. Throughput: 10,000 texts of real English (standard-library docstrings) whose lengths
   spread uniformly from 4 to 256 tokens, split into as many slices as pairs; each pair
   embeds its slice with ``zoo`` and with ``SentenceTransformer.encode`` (default batch
   size 32) in alternating order. Every row must be within cosine 0.9999 of the baseline
   or no ratio is reported. Also: real tokens per second and the fraction of an in-run fp32
   matmul peak the model's FLOPs reach.
2. Cold start: fresh interpreters, ``zoo.load`` + one ``embed`` against
   ``SentenceTransformer(...)`` + one ``encode``, alternating: seconds to the first vector and
   the process's peak RSS (VmHWM); the two first vectors must agree (cosine 0.9999).
3. Memory: 100,000 short texts streamed through ``Embedder.stream`` in a fresh process;
   peak RSS over the loaded-model baseline and the RSS trend across chunks.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import (  # noqa: E402
    RESULTS,
    Row,
    alternate,
    machine,
    matmul_peak_gflops,
    row_cosines,
    write_result,
    write_summary,
)
from corpus import mixed_length_texts  # noqa: E402

MODEL = "all-minilm-l6-v2"
MIN_COS = 0.9999


def flops_per_token(config, length: int) -> float:
    """Forward FLOPs per token of a BERT-style encoder at sequence length ``length``."""
    d, ff, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    macs = 4 * d * d + 2 * d * ff + 2 * length * d  # projections, feed-forward, attention
    return 2.0 * layers * macs


def throughput(n_texts: int, pairs: int) -> tuple[list[str], dict]:
    from sentence_transformers import SentenceTransformer

    import zoo

    model = zoo.load(MODEL)
    st = SentenceTransformer(str(model.resolved.path), device="cpu")
    tok = model.tokenizer

    def count(texts):
        return [len(ids) for ids in tok(texts, truncation=False)["input_ids"]]

    texts = mixed_length_texts(n_texts, count, lo=4, hi=256, seed=0)
    lengths = [len(r) for r in model.tokenize(texts)]  # what the model really sees (cut at 256)
    slices = np.array_split(np.arange(n_texts), pairs)
    ours_out, base_out = {}, {}

    def run_ours(i):
        ours_out[i] = model.embed([texts[j] for j in slices[i]]).vectors

    def run_base(i):
        base_out[i] = st.encode([texts[j] for j in slices[i]], batch_size=32, normalize_embeddings=True)

    model.embed(texts[:64])  # warm both up on the same small batch
    st.encode(texts[:64])
    print(f"throughput: {n_texts} texts in {pairs} slices, tokens median {int(np.median(lengths))}, "
          f"range {min(lengths)}..{max(lengths)}")
    paired = alternate(run_ours, run_base, pairs)
    ours = np.concatenate([ours_out[i] for i in range(pairs)])
    base = np.concatenate([base_out[i] for i in range(pairs)])
    cos = row_cosines(ours, base)
    tokens = sum(lengths)
    flops = sum(flops_per_token(model.model.config, n) * n for n in lengths)
    peak = matmul_peak_gflops()
    t_ours, t_base = sum(paired.ours), sum(paired.base)
    return texts, {
        "texts": n_texts,
        "pairs": pairs,
        "min_cos": float(cos.min()),
        "fidelity_ok": bool(cos.min() >= MIN_COS),
        "ratio": paired.summary(),
        "ratio_median": statistics.median(paired.ratios),
        "ours_texts_s": n_texts / t_ours,
        "base_texts_s": n_texts / t_base,
        "ours_tokens_s": tokens / t_ours,
        "base_tokens_s": tokens / t_base,
        "ours_peak_frac": flops / t_ours / 1e9 / peak,
        "base_peak_frac": flops / t_base / 1e9 / peak,
        "matmul_peak_gflops": peak,
    }


def bf16_compute(texts: list[str], pairs: int) -> dict:
    """bf16 compute on the CPU against zoo's own fp32, on the same texts: speed and fidelity."""
    import torch

    import zoo

    fp32 = zoo.load(MODEL)
    bf16 = zoo.load(MODEL, compute_dtype="bfloat16")
    out = {}

    def run(model, key):
        def go(_):
            out[key] = model.embed(texts).vectors
        return go

    print(f"bf16 compute vs fp32 ({len(texts)} texts, CPU capability {torch.backends.cpu.get_cpu_capability()}):")
    paired = alternate(run(bf16, "bf16"), run(fp32, "fp32"), pairs)
    cos = (out["bf16"] * out["fp32"]).sum(1)
    return {"ratio": paired.summary(), "min_cos": float(cos.min()), "mean_cos": float(cos.mean())}


_PEAK = "[int(l.split()[1]) / 1024 for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]"
_LOAD_ZOO = """
import time; t0 = time.perf_counter()
import zoo
m = zoo.load({model!r}); v = m.embed(["hello world"]).vectors
print(time.perf_counter() - t0, {peak}, *v[0].tolist())
"""
_LOAD_ST = """
import time; t0 = time.perf_counter()
from sentence_transformers import SentenceTransformer
m = SentenceTransformer({path!r}, device="cpu"); v = m.encode(["hello world"], normalize_embeddings=True)
print(time.perf_counter() - t0, {peak}, *v[0].tolist())
"""


def load_time(pairs: int, path: str) -> dict:
    """Fresh interpreters: seconds from start to the first vector, peak RSS, and that vector."""
    def run(code: str) -> tuple[float, float, np.ndarray]:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        seconds, peak, *vector = map(float, out.stdout.strip().splitlines()[-1].split())
        return seconds, peak, np.array(vector)

    runs = {"ours": [], "base": []}

    def ours(_):
        runs["ours"].append(run(_LOAD_ZOO.format(model=MODEL, peak=_PEAK)))

    def base(_):
        runs["base"].append(run(_LOAD_ST.format(path=path, peak=_PEAK)))

    print("load to first vector (fresh interpreters):")
    paired = alternate(ours, base, pairs)  # wall time includes the interpreter start for both
    cos = min(float(a[2] @ b[2]) for a, b in zip(runs["ours"], runs["base"], strict=True))
    return {
        "ours_s": statistics.median(r[0] for r in runs["ours"]),
        "base_s": statistics.median(r[0] for r in runs["base"]),
        "ours_peak_mb": statistics.median(r[1] for r in runs["ours"]),
        "base_peak_mb": statistics.median(r[1] for r in runs["base"]),
        "min_cos": cos,
        "ratio": paired.summary(),
        "ratio_median": statistics.median(paired.ratios),
    }


_STREAM = """
import json, sys, random
sys.path.insert(0, {bench!r})
from common import peak_rss_mb, reset_peak_rss, rss_mb
from corpus import stdlib_words
import zoo
words = stdlib_words(); rng = random.Random(1)
def texts(n):
    for _ in range(n):
        k = rng.randint(2, 24); s = rng.randrange(0, len(words) - k)
        yield " ".join(words[s:s + k])
m = zoo.load({model!r})
m.embed(list(texts(4096)))  # the loaded-model baseline includes one chunk's working set
base = rss_mb()
reset_peak_rss()  # the peak of loading the weights is not the streaming peak
trace = []
for e in m.stream(texts({n}), chunk_size=4096):
    trace.append(rss_mb())
print(json.dumps({{"base": base, "peak": peak_rss_mb(), "trace": trace}}))
"""


def stream_memory(n: int) -> dict:
    code = _STREAM.format(bench=str(Path(__file__).parent), model=MODEL, n=n)
    print(f"memory: streaming {n} short texts in a fresh process ...")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    trace = np.array(r["trace"])
    half = trace[len(trace) // 2 :]
    slope = float(np.polyfit(np.arange(len(half)), half, 1)[0]) if len(half) > 2 else 0.0
    return {
        "texts": n,
        "base_mb": r["base"],
        "peak_over_base_mb": r["peak"] - r["base"],
        "last_over_first_mb": float(trace[-1] - trace[0]),
        "slope_mb_per_chunk": slope,
        "chunks": len(trace),
    }


def report(tp: dict, load: dict, mem: dict, bf16: dict) -> str:
    ok = tp["fidelity_ok"]
    lines = [
        "# Text throughput: zoo vs sentence-transformers (all-MiniLM-L6-v2, real weights)",
        "",
        f"Machine: {machine()}",
        "",
        "Command: `python bench/text_throughput.py`",
        "",
        "| measurement | zoo | sentence-transformers | ratio (median of pairs) | target |",
        "|---|---|---|---|---|",
        f"| texts/s, {tp['texts']:,} texts of 4-256 tokens | {tp['ours_texts_s']:.1f} | {tp['base_texts_s']:.1f} | "
        f"{tp['ratio'] if ok else 'not reported: fidelity failed'} | >= 1.15x |",
        f"| tokens/s | {tp['ours_tokens_s']:,.0f} | {tp['base_tokens_s']:,.0f} | | |",
        f"| fraction of fp32 matmul peak ({tp['matmul_peak_gflops']:.0f} GFLOP/s) | {tp['ours_peak_frac']:.0%} | "
        f"{tp['base_peak_frac']:.0%} | | |",
        f"| load to first vector (s), fresh interpreter | {load['ours_s']:.2f} | {load['base_s']:.2f} | "
        f"{load['ratio'] if load['min_cos'] >= MIN_COS else 'not reported: fidelity failed'} | not slower |",
        f"| peak RSS of that process (MB) | {load['ours_peak_mb']:,.0f} | {load['base_peak_mb']:,.0f} | "
        f"{load['base_peak_mb'] / load['ours_peak_mb']:.2f}x less | not more |",
        "",
        f"Fidelity: minimum row cosine to sentence-transformers {tp['min_cos']:.6f} (required >= {MIN_COS}).",
        "",
        f"bf16 compute (`zoo.load(..., compute_dtype=\"bfloat16\")`) against zoo's fp32 on the same texts: "
        f"{bf16['ratio']} faster, row cosine min {bf16['min_cos']:.6f}, mean {bf16['mean_cos']:.6f} "
        f"({'meets' if bf16['min_cos'] >= MIN_COS else 'below'} the {MIN_COS} parity bar; fp32 stays the default).",
        "",
        f"Memory, streaming {mem['texts']:,} short texts through `Embedder.stream` in chunks of 4,096: "
        f"peak RSS {mem['peak_over_base_mb']:.0f} MB over the loaded-model baseline ({mem['base_mb']:.0f} MB; "
        "target within 300 MB); RSS change from first to last chunk "
        f"{mem['last_over_first_mb']:+.1f} MB, trend over the second half {mem['slope_mb_per_chunk']:+.2f} MB/chunk "
        f"({mem['chunks']} chunks).",
        "",
    ]
    return "\n".join(lines)


PARTS = ("throughput", "bf16", "load", "memory")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--parts", default=",".join(PARTS),
                    help="comma-separated parts to (re)measure; the others are read from the last run's JSON")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    name = "text_throughput" + ("_quick" if args.quick else "")
    saved = RESULTS / f"{name}.json"
    res = json.loads(saved.read_text()) if saved.is_file() else {}
    missing = set(PARTS) - parts - set(res)
    if missing:
        sys.exit(f"no earlier results for {sorted(missing)}: measure them too (--parts)")
    n_texts, pairs, load_pairs, stream_n = (10_000, 7, 5, 100_000) if not args.quick else (700, 7, 2, 12_000)
    if parts & {"throughput", "bf16"}:
        texts, tp = throughput(n_texts, pairs)
        if "throughput" in parts:
            res["throughput"] = tp
        if "bf16" in parts:
            res["bf16"] = bf16_compute(texts[: n_texts // pairs], 3)
    if "load" in parts:
        import zoo

        res["load"] = load_time(load_pairs, str(zoo.load(MODEL).resolved.path))
    if "memory" in parts:
        res["memory"] = stream_memory(stream_n)
    RESULTS.mkdir(exist_ok=True)
    saved.write_text(json.dumps(res, indent=1))
    md = report(res["throughput"], res["load"], res["memory"], res["bf16"])
    print()
    print(md)
    print(f"wrote {write_result(name, md)}")
    command = "python bench/text_throughput.py" + (" --quick" if args.quick else "")
    write_summary("text_throughput", command, summary(res))
    if not res["throughput"]["fidelity_ok"]:
        sys.exit("fidelity check failed: no ratio reported")


def summary(res: dict) -> list[Row]:
    tp, load, mem, bf16 = res["throughput"], res["load"], res["memory"], res["bf16"]
    load_ok = load["min_cos"] >= MIN_COS
    return [
        Row(f"text throughput, {tp['texts']:,} mixed-length texts (texts/s)", f"{tp['ours_texts_s']:.1f}",
            f"{tp['base_texts_s']:.1f}", tp["ratio"] if tp["fidelity_ok"] else "not reported: fidelity failed",
            ">= 1.15x", tp["fidelity_ok"] and tp["ratio_median"] >= 1.15, f"min row cosine {tp['min_cos']:.6f}"),
        Row("cold start: load to first vector, fresh interpreter (s)", f"{load['ours_s']:.2f}",
            f"{load['base_s']:.2f}", load["ratio"] if load_ok else "not reported: fidelity failed", ">= 1.0x",
            load_ok and load["ratio_median"] >= 1.0, f"first vector cosine {load['min_cos']:.6f}"),
        Row("cold start: peak RSS of that process (MB)", f"{load['ours_peak_mb']:,.0f}",
            f"{load['base_peak_mb']:,.0f}",
            f"{load['base_peak_mb'] / load['ours_peak_mb']:.2f}x (baseline / zoo)", "<= baseline",
            load["ours_peak_mb"] <= load["base_peak_mb"], ""),
        Row(f"streaming {mem['texts']:,} texts: peak RSS over the loaded model (MB)",
            f"{mem['peak_over_base_mb']:.0f}", "", f"trend {mem['slope_mb_per_chunk']:+.2f} MB/chunk", "<= 300 MB",
            mem["peak_over_base_mb"] <= 300, ""),
        Row("bf16 compute against zoo fp32 (no target; fp32 is the default)", "bf16", "fp32", bf16["ratio"], "",
            None, f"min row cosine {bf16['min_cos']:.6f}"),
    ]


if __name__ == "__main__":
    main()
