"""Soak: mixed traffic from many threads over every offline model, for a long time. Wrong results, untyped errors,
hangs and memory growth are counted, never assumed away.

    python bench/soak.py                      # 30 minutes, 8 threads (what `zoo bench` runs)
    python bench/soak.py --minutes 2          # a short run

Every offline-ready model is loaded once and shared by all threads. Before the clock starts, each call of a fixed
catalogue (per model: batches of several sizes, truncation on and off, unnormalized vectors, classification,
transcription, every modality of the binding composite) is run once, serially and with no cache: those are the
reference results. Then THREADS threads pick calls at random until the time is up:

- a *good* call from the catalogue, half of them through one shared embedding cache, is compared with its reference:
  bitwise without the cache; with it, rows may come from another call's batch, so they must agree within 1e-5;
- an *odd* call mixes one hostile or careless item into good ones (a lone surrogate, a number, None, a missing file,
  a folder, a FIFO, /dev/zero, a truncated or forged image, a corrupt WAV, samples of 1e30 or NaN, ragged or NaN
  points, a PLY header declaring 49 million vertices, a text over the token limit without truncation, a media path
  given to the composite as text): it must raise a zoo error (``ZooError``); anything else is an untyped error.

A monitor thread reads the resident memory every 10 s and reports a call running for over 120 s as hung. The report
(``results/soak.md``, ``results/soak.png``) gives calls made, errors by type, odd items the models accepted, the
calls that differed from their reference, latency and RSS from the end of warm-up to the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, Row, machine, rss_mb, write_result, write_summary  # noqa: E402

THREADS = 8
HUNG_AFTER_S = 120.0
CACHED_ATOL = 1e-5


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one reference per call
class Call:
    """One call on a shared model: ``op`` is embed, classify (embed_and_classify) or transcribe."""

    model: str
    label: str
    op: str
    inputs: Any
    options: dict = field(default_factory=dict)
    odd: bool = False

    def run(self, models: dict, cache) -> Any:
        m = models[self.model]
        if self.op == "transcribe":
            return m.transcribe(self.inputs)
        options = dict(self.options) | ({"cache": cache} if cache is not None else {})
        if self.op == "classify":
            return m.embed_and_classify(self.inputs, **options)
        return m.embed(self.inputs, **options)


# ---------------------------------------------------------------------------------------------- inputs
def _sentences() -> list[str]:
    import inspect
    import json
    import textwrap

    out = []
    for mod in (json, os.path, textwrap, inspect, random):
        for name in dir(mod):
            doc = inspect.getdoc(getattr(mod, name, None)) or ""
            first = doc.split("\n\n")[0].replace("\n", " ").strip()
            if 20 < len(first) < 400 and first not in out:
                out.append(first)
    return out[:64]


def _code() -> list[str]:
    import heapq
    import inspect
    import json
    import shutil
    import textwrap

    return [inspect.getsource(f) for f in (json.dumps, textwrap.dedent, shutil.copyfile, heapq.nlargest)]


def _hostile_files(folder: Path) -> dict[str, str]:
    """Files that must be refused: by name."""
    from PIL import Image

    files = {}
    good = folder / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    data = good.read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 3])
    forged = bytearray(data)
    forged[16:24] = (100_000).to_bytes(4, "big") * 2  # IHDR width and height
    (folder / "forged.png").write_bytes(bytes(forged))
    (folder / "noise.jpg").write_bytes(os.urandom(5000))
    (folder / "corrupt.wav").write_bytes(b"RIFF\xff\xff\xff\x7fWAVEfmt " + os.urandom(400))
    (folder / "liar.ply").write_text("ply\nformat ascii 1.0\nelement vertex 49000000\nproperty float x\n"
                                     "property float y\nproperty float z\nend_header\n0 0 0\n")
    fifo = folder / "pipe.png"
    os.mkfifo(fifo)
    (folder / "dir.png").mkdir()
    zero = folder / "zero.png"
    zero.symlink_to("/dev/zero")
    for name in ("truncated.png", "forged.png", "noise.jpg", "corrupt.wav", "liar.ply", "pipe.png", "dir.png",
                 "zero.png"):
        files[name] = str(folder / name)
    files["missing.png"] = str(folder / "missing.png")
    files["missing.wav"] = str(folder / "missing.wav")
    return files


def catalogue(names: list[str], folder: Path) -> tuple[list[Call], list[Call]]:
    """(good calls, odd calls) over the offline models."""
    import zoo
    from zoo import gallery
    from zoo.shapes import make_dataset

    texts, code = _sentences(), _code()
    long_text = " ".join(texts) * 3  # far over 512 tokens
    photos = [str(p.path) for p in gallery.photos()][:6]
    clips = [str(c.path) for c in gallery.speech_clips()][:4]
    bad = _hostile_files(folder)
    rng = np.random.default_rng(1)
    good: list[Call] = []
    odd: list[Call] = []

    def text_calls(name: str, extra: dict | None = None) -> None:
        o = extra or {}
        for n in (1, 3, 8, 17):
            good.append(Call(name, f"{n} texts", "embed", texts[n:2 * n], o))
        good.append(Call(name, "long text, truncated", "embed", [texts[0], long_text], o | {"truncate": True}))
        good.append(Call(name, "4 texts, unnormalized", "embed", texts[40:44], o | {"normalize": False}))
        for label, item in (("lone surrogate", "bad \ud800 text"), ("a number", 3), ("None", None),
                            ("a dict", {"text": "x"})):
            odd.append(Call(name, label, "embed", [texts[5], item, texts[6]], o, odd=True))
        odd.append(Call(name, "over the token limit, truncate=False", "embed", [texts[1], long_text],
                        o | {"truncate": False}, odd=True))
        odd.append(Call(name, "prompt_name of the wrong type", "embed", texts[:2], o | {"prompt_name": 7}, odd=True))

    def media_calls(name: str, modality: str, items: list, hostile: list[tuple[str, Any]], extra: dict,
                    classify: bool = False) -> None:
        good.append(Call(name, f"1 {modality}", "embed", items[:1], extra))
        good.append(Call(name, f"{len(items)} {modality}", "embed", items, extra))
        if classify:
            good.append(Call(name, f"classify 2 {modality}", "classify", items[1:3], extra))
        for label, item in hostile:
            odd.append(Call(name, label, "embed", [items[0], item], extra, odd=True))

    image_hostile = [(k, bad[k]) for k in ("truncated.png", "forged.png", "noise.jpg", "pipe.png", "dir.png",
                                           "zero.png", "missing.png")]
    points = list(make_dataset(3, 1, n_points=1024).points[:4])
    nan_points = points[0].copy()
    nan_points[5, 1] = np.nan
    points_hostile = [("ragged points", [[0.0, 0.0, 0.0], [1.0, 2.0]]), ("NaN points", nan_points),
                      ("2-d points of width 2", np.zeros((50, 2), np.float32)), ("lying ASCII PLY", bad["liar.ply"]),
                      ("empty points", np.zeros((0, 3), np.float32)), ("FIFO as points", bad["pipe.png"])]
    audio_hostile = [("corrupt WAV", bad["corrupt.wav"]), ("missing WAV", bad["missing.wav"]),
                     ("samples of 1e30", np.full(16000, 1e30, np.float32)),
                     ("NaN samples", np.full(16000, np.nan, np.float32)), ("FIFO as audio", bad["pipe.png"])]
    for name in names:
        card = zoo.card(name)
        if card.adapter == "text":
            text_calls(name)
        elif card.adapter == "image":
            media_calls(name, "image", photos[:4], image_hostile, {}, classify=True)
        elif card.adapter == "pointnet":
            n = card.options.get("n_points", 1024)
            pts = [p[:n] if len(p) >= n else p for p in points]
            media_calls(name, "points", pts, points_hostile, {}, classify=True)
        elif card.adapter == "whisper":
            media_calls(name, "audio", clips[:3], audio_hostile, {})
            good.append(Call(name, "transcribe 1 clip", "transcribe", clips[:1]))
        elif card.adapter == "bind":
            text_calls(name, {"modality": "text"})
            good.append(Call(name, "4 code", "embed", code, {"modality": "code"}))
            media_calls(name, "image", photos[2:5], image_hostile[:3], {"modality": "image"})
            media_calls(name, "audio", clips[:2], audio_hostile[:3], {"modality": "audio"})
            media_calls(name, "points", points[:3], points_hostile[:3], {"modality": "points"})
            odd.append(Call(name, "a media path that names no file, as text", "embed", ["/photos/cat.jpg"], {},
                            odd=True))
    rng.shuffle(good)
    return good, odd


# ---------------------------------------------------------------------------------------------- checking
def _vectors(result: Any) -> np.ndarray:
    return result[0].vectors if isinstance(result, tuple) else result.vectors


def differs(result: Any, reference: Any, cached: bool) -> str | None:
    """Why ``result`` is not the reference result (None: it is)."""
    if isinstance(reference, list) and reference and isinstance(reference[0], str):  # transcripts
        return None if result == reference else f"transcript {result!r} != {reference!r}"
    got, want = _vectors(result), _vectors(reference)
    if got.shape != want.shape or got.dtype != want.dtype:
        return f"shape/dtype {got.shape} {got.dtype} != {want.shape} {want.dtype}"
    if not cached and not np.array_equal(got, want):
        return f"not bitwise equal (max diff {float(np.abs(got - want).max()):.3g})"
    if cached and not np.allclose(got, want, rtol=0, atol=CACHED_ATOL):
        return f"cached rows differ by {float(np.abs(got - want).max()):.3g} (> {CACHED_ATOL})"
    if isinstance(reference, tuple):  # classes: same names in the same order, probabilities close
        for g, w in zip(result[1], reference[1], strict=True):
            if [c for c, _ in g] != [c for c, _ in w] or not np.allclose([p for _, p in g], [p for _, p in w],
                                                                         atol=1e-5):
                return f"classes {g[:2]} != {w[:2]}"
    return None


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: Counter = field(default_factory=Counter)  # (model, good|odd) -> n
    errors: Counter = field(default_factory=Counter)  # (model, error type) -> n
    untyped: list = field(default_factory=list)  # (call label, traceback)
    wrong: list = field(default_factory=list)  # (call label, why)
    good_failed: list = field(default_factory=list)  # a good call that raised
    accepted: Counter = field(default_factory=Counter)  # odd calls that returned vectors, by label
    latency: dict = field(default_factory=lambda: defaultdict(list))  # model -> seconds
    running: dict = field(default_factory=dict)  # thread -> (call, started)
    hung: set = field(default_factory=set)

    def record(self, call: Call, seconds: float, outcome: str, detail: Any = None) -> None:
        with self.lock:
            self.calls[(call.model, "odd" if call.odd else "good")] += 1
            self.latency[call.model].append(seconds)
            where = f"{call.model}: {call.label}"
            if outcome == "error":
                self.errors[(call.model, type(detail).__name__)] += 1
            elif outcome == "untyped":
                self.errors[(call.model, type(detail).__name__)] += 1
                if len(self.untyped) < 20:
                    self.untyped.append((where, "".join(traceback.format_exception(detail))[-1500:]))
                else:
                    self.untyped.append((where, ""))
            elif outcome == "wrong":
                self.wrong.append((where, detail))
            elif outcome == "good_failed":
                self.good_failed.append((where, f"{type(detail).__name__}: {detail}"))
            elif outcome == "accepted":
                self.accepted[where] += 1


def one_call(call: Call, models: dict, cache, references: dict, tally: Tally) -> None:
    from zoo.errors import ZooError

    use_cache = cache if random.random() < 0.5 else None
    t0 = time.perf_counter()
    tally.running[threading.get_ident()] = (call, time.time())
    try:
        result = call.run(models, use_cache)
    except ZooError as exc:
        tally.record(call, time.perf_counter() - t0, "good_failed" if not call.odd else "error", exc)
        return
    except Exception as exc:  # noqa: BLE001 - what the soak is here to count
        tally.record(call, time.perf_counter() - t0, "untyped", exc)
        return
    finally:
        tally.running.pop(threading.get_ident(), None)
    seconds = time.perf_counter() - t0
    if call.odd:
        tally.record(call, seconds, "accepted")
        return
    why = differs(result, references[call], cached=use_cache is not None and call.op != "transcribe")
    tally.record(call, seconds, "wrong" if why else "ok", why)


# ---------------------------------------------------------------------------------------------- the run
def run(minutes: float, threads: int, seed: int) -> dict:
    import zoo
    from zoo.cache import EmbeddingCache

    names = [n for n in zoo.list_models() if zoo.card(n).offline_ready]
    work = Path(tempfile.mkdtemp(prefix="zoo-soak-"))
    print(f"models: {', '.join(names)}", flush=True)
    models = {n: zoo.load(n) for n in names}
    good, odd = catalogue(names, work)
    print(f"catalogue: {len(good)} good calls, {len(odd)} odd calls; computing the serial references", flush=True)
    references = {c: c.run(models, None) for c in good}
    cache = EmbeddingCache(work / "cache.sqlite")
    tally = Tally()
    rng = random.Random(seed)
    deadline = [0.0]
    pool = good + odd

    def worker(k: int) -> None:
        r = random.Random(seed * 1000 + k)
        while time.time() < deadline[0]:
            call = r.choice(odd) if r.random() < 0.3 else r.choice(good)
            one_call(call, models, cache, references, tally)

    # warm-up: every call once from all threads (not counted), so the RSS baseline includes every code path
    warm = Tally()
    order = pool * 2
    rng.shuffle(order)
    ts = [threading.Thread(target=lambda part=order[i::threads]: [one_call(c, models, cache, references, warm)
                                                                 for c in part]) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(f"warm-up: {sum(warm.calls.values())} calls, untyped {len(warm.untyped)}, wrong {len(warm.wrong)}",
          flush=True)

    start = time.time()
    deadline[0] = start + minutes * 60
    samples = [(0.0, rss_mb(), 0)]
    ts = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(threads)]
    for t in ts:
        t.start()
    last_print = start
    while any(t.is_alive() for t in ts):
        time.sleep(min(10.0, max(0.5, deadline[0] - time.time() + 0.5)))
        now = time.time()
        done = sum(tally.calls.values())
        samples.append((now - start, rss_mb(), done))
        for ident, (call, began) in list(tally.running.items()):
            if now - began > HUNG_AFTER_S and ident not in tally.hung:
                tally.hung.add(ident)
                print(f"HUNG: {call.model}: {call.label} running for {now - began:.0f} s", flush=True)
        if now - last_print >= 60 or not any(t.is_alive() for t in ts):
            last_print = now
            print(f"{(now - start) / 60:5.1f} min: {done} calls, untyped {len(tally.untyped)}, wrong "
                  f"{len(tally.wrong)}, good calls failed {len(tally.good_failed)}, RSS {samples[-1][1]:.0f} MiB",
                  flush=True)
        if now > deadline[0] + HUNG_AFTER_S:
            break
    return {"names": names, "tally": tally, "samples": samples, "warm": warm, "good": good, "odd": odd,
            "minutes": minutes, "threads": threads, "seed": seed}


# ---------------------------------------------------------------------------------------------- the report
def plot(samples: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s[0] / 60 for s in samples]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(t, [s[1] for s in samples], color="tab:blue")
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS (MiB)", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(t, [s[2] for s in samples], color="tab:gray", linestyle="--")
    ax2.set_ylabel("calls made", color="tab:gray")
    ax.set_title("soak: resident memory and calls over time")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(r: dict, command: str) -> tuple[str, list[Row]]:
    tally: Tally = r["tally"]
    samples = r["samples"]
    total = sum(tally.calls.values())
    rss0, rss1 = samples[0][1], samples[-1][1]
    peak = max(s[1] for s in samples)
    # RSS swings with each call's working set (a batch of images, a Whisper chunk), so growth is judged on medians:
    # an early window (after the allocator's arenas fill up) against the last 30% of the run
    end = samples[-1][0]
    early = [s[1] for s in samples if 0.1 * end <= s[0] <= 0.4 * end] or [rss0]
    late = [s[1] for s in samples if s[0] >= 0.7 * end] or [rss1]
    q1, q3 = np.percentile([s[1] for s in samples], [25, 75])
    half = [s for s in samples if s[0] >= end / 2]
    slope = float(np.polyfit([s[0] / 3600 for s in half], [s[1] for s in half], 1)[0]) if len(half) > 5 else 0.0
    noise = max(16.0, 0.02 * rss0, float(q3 - q1))
    growth = float(np.median(late) - np.median(early))
    lines = [f"# Soak: {r['minutes']:g} minutes of mixed traffic, {r['threads']} threads", "",
             f"Machine: {machine()}", "", f"Command: `{command}`", "",
             f"Models (every offline-ready one, one shared object each): {', '.join(r['names'])}.", "",
             f"Catalogue: {len(r['good'])} good calls (references computed serially, no cache), {len(r['odd'])} odd "
             "calls (one hostile item among good ones); 30% of picks odd, half of all calls through one shared "
             "embedding cache.", "",
             f"Calls made: **{total:,}**; untyped errors: **{len(tally.untyped)}**; results that differ from the "
             f"serial one: **{len(tally.wrong)}**; good calls that raised: **{len(tally.good_failed)}**; hung calls "
             f"(> {HUNG_AFTER_S:.0f} s): **{len(tally.hung)}**.", "",
             f"RSS: {rss0:.0f} MiB after warm-up, {rss1:.0f} MiB at the end, peak {peak:.0f} MiB; median "
             f"{np.median(early):.0f} MiB over 10-40% of the run and {np.median(late):.0f} MiB over its last 30% "
             f"(growth {growth:+.1f} MiB); slope over the second half {slope:+.1f} MiB/hour; samples every 10 s "
             f"swing by {q3 - q1:.0f} MiB between their quartiles. Growth counts as noise up to {noise:.0f} MiB "
             "(the largest of 16 MiB, 2% of the start and that quartile spread). Plot: [soak.png](soak.png).", "",
             "| model | good calls | odd calls | median latency (ms) | p99 latency (ms) |", "|---|---|---|---|---|"]
    for name in r["names"]:
        lat = sorted(tally.latency.get(name, [0.0]))
        lines.append(f"| {name} | {tally.calls[(name, 'good')]:,} | {tally.calls[(name, 'odd')]:,} | "
                     f"{1000 * lat[len(lat) // 2]:.0f} | {1000 * lat[min(len(lat) - 1, int(len(lat) * .99))]:.0f} |")
    lines += ["", "Errors by type (odd calls must raise a `ZooError` subclass):", "",
              "| model | error | count |", "|---|---|---|"]
    lines += [f"| {m} | {e} | {n:,} |" for (m, e), n in sorted(tally.errors.items())]
    if tally.accepted:
        lines += ["", "Odd calls a model accepted (returned finite vectors instead of an error):", ""]
        lines += [f"- {where}: {n:,}" for where, n in sorted(tally.accepted.items())]
    for title, items in (("Untyped errors", tally.untyped), ("Wrong results", tally.wrong),
                         ("Good calls that raised", tally.good_failed)):
        if items:
            lines += ["", f"{title} (first 20):", ""]
            lines += [f"- {where}: {str(why).strip()[:1500]}" for where, why in items[:20]]
    md = "\n".join(lines) + "\n"
    clean = not (tally.untyped or tally.wrong or tally.good_failed or tally.hung)
    rows = [Row(f"{r['minutes']:g} min mixed traffic, {r['threads']} threads, {len(r['names'])} models: "
                "untyped errors / wrong results / hung calls",
                f"{len(tally.untyped)} / {len(tally.wrong)} / {len(tally.hung)} of {total:,} calls",
                "the serial result of each call", "-", "0 / 0 / 0", clean,
                f"bitwise equal without cache, within {CACHED_ATOL:g} with it"),
            Row("soak RSS growth: median of the last 30% of the run minus median of 10-40% (MiB)",
                f"{growth:+.1f} (start {rss0:.0f}, peak {peak:.0f})", "-", "-", f"<= {noise:.0f} MiB (noise)",
                growth <= noise, f"slope over the second half {slope:+.1f} MiB/h")]
    return md, rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--threads", type=int, default=THREADS)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    os.environ.setdefault("ZOO_OFFLINE", "1")
    command = f"python bench/soak.py --minutes {args.minutes:g} --threads {args.threads}"
    r = run(args.minutes, args.threads, args.seed)
    md, rows = report(r, command)
    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(r["samples"], RESULTS / "soak.png")
    (RESULTS / "soak.samples.json").write_text(json.dumps({"seconds_rss_mib_calls": r["samples"]}), encoding="utf-8")
    print(md)
    write_result("soak", md)
    write_summary("soak", command, rows)
    tally = r["tally"]
    return 1 if (tally.untyped or tally.wrong or tally.hung) else 0


if __name__ == "__main__":
    sys.exit(main())
