"""Video decoding and frame sampling: zoo.inputs.video.load_video against a plain PyAV loop on the same files.

    python bench/video_decode.py            # 6 clips of 20 s at 30 fps, 640x360, 5 pairs
    python bench/video_decode.py --quick    # 3 clips of 6 s, 2 pairs

The clips are made here from real photos (scikit-image samples, a slow pan across each, resized to 640x360) and
encoded with PyAV's FFmpeg: H.264 in MP4, VP9 in WebM, MPEG-4 Part 2 in MP4, in turn. Each side turns every clip
into the frames a model sees:

- the zoo: ``load_video`` as the vision-language cards call it, sandboxed (the default): the container header
  checked, the packets counted, frames decoded with FFmpeg's frame threads, only the chosen frames converted to
  RGB, returned over the worker's pipe. Two samplings: Qwen3-VL-Embedding's (qwen_vl_utils' rule at fps 1, at
  most 64 frames) and VLM2Vec-V2's (MMEB-V2: 8 frames);
- the baseline: the loop qwen_vl_utils' torchvision reader ran (``torchvision.io.read_video``, which torchvision
  0.29 no longer has): open the file with PyAV, decode every frame to an RGB array, then take the same indices;
- a second, stronger baseline, to show what the sandbox and the checks cost: a PyAV loop in this process that is
  told the frame count and the indices beforehand and converts only those frames (no header checks, no
  sandbox, no frame threads).

Throughput is source frames per second of wall time (the same count on both sides, so the ratio is the time
ratio), the median of alternating pairs. Before any figure, every frame the zoo returns must equal the
baseline's frame at the same index, byte for byte.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import Row, alternate, machine, write_result, write_summary  # noqa: E402

from zoo.inputs.video import FrameSampling, load_video  # noqa: E402

CODECS = (("h264", "mp4"), ("libvpx-vp9", "webm"), ("mpeg4", "mp4"))
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
SAMPLINGS = {"Qwen3-VL-Embedding (fps 1, at most 64 frames)": FrameSampling(fps=1.0, max_frames=64),
             "VLM2Vec-V2 (MMEB-V2, 8 frames)": FrameSampling(rule="uniform", keep=64, nframes=8)}
TARGET = 1.0


def make_clip(photo: str, seconds: float, fps: int, codec: str, container: str, size=(640, 360)) -> bytes:
    """A pan across a photo (scaled so the window slides over a third of it), encoded with PyAV."""
    from PIL import Image
    from skimage import data

    from zoo.samples.clips import encode_video

    w, h = size
    image = Image.fromarray(getattr(data, photo)()).convert("RGB")
    scale = max(h / image.height, 1.5 * w / image.width)
    image = np.asarray(image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC))
    count = int(seconds * fps)
    span = image.shape[1] - w
    buf = io.BytesIO()
    frames = (image[:h, x:x + w] for x in ((k * span) // max(1, count - 1) for k in range(count)))
    encode_video(buf, frames, fps=fps, codec=codec, container=container)
    return buf.getvalue()


def plain_pyav(data: bytes) -> tuple[np.ndarray, float]:
    """Every frame as RGB (T, H, W, 3) and the average rate: the baseline's decoding."""
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return np.stack(frames), float(stream.average_rate)


def baseline(data: bytes, sampling: FrameSampling) -> np.ndarray:
    frames, fps = plain_pyav(data)
    return frames[sampling.choose(len(frames), fps)]


def told_pyav(data: bytes, indices: list[int]) -> np.ndarray:
    """The stronger baseline: decode every frame, convert only the ``indices`` (known beforehand)."""
    import av

    wanted, kept = set(indices), {}
    with av.open(io.BytesIO(data)) as container:
        for n, frame in enumerate(container.decode(container.streams.video[0])):
            if n in wanted:
                kept[n] = frame.to_ndarray(format="rgb24")
    return np.stack([kept[i] for i in indices])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--clips", type=int, default=None)
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--pairs", type=int, default=None)
    args = p.parse_args()
    n_clips, seconds = args.clips or (3 if args.quick else 6), args.seconds or (6.0 if args.quick else 20.0)
    pairs, fps = args.pairs or (2 if args.quick else 5), 30
    t0 = time.perf_counter()
    clips = [make_clip(PHOTOS[i % len(PHOTOS)], seconds, fps, *CODECS[i % len(CODECS)]) for i in range(n_clips)]
    total_frames = n_clips * int(seconds * fps)
    print(f"{n_clips} clips, {total_frames} frames, {sum(map(len, clips)) / 1e6:.1f} MB, made in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    load_video(clips[0], sampling=FrameSampling())  # start the decoder worker before any timing

    rows, lines, ok_all = [], [], True
    for label, sampling in SAMPLINGS.items():
        ours = [load_video(c, sampling=sampling) for c in clips]
        ok = all(np.array_equal(v.frames, baseline(c, sampling)) for v, c in zip(ours, clips, strict=True))
        ok_all &= ok
        sampled = sum(len(v.indices) for v in ours)
        paired = alternate(lambda _i, s=sampling: [load_video(c, sampling=s) for c in clips],
                           lambda _i, s=sampling: [baseline(c, s) for c in clips], pairs)
        zoo_fps = total_frames / statistics.median(paired.ours)
        base_fps = total_frames / statistics.median(paired.base)
        indices = [list(v.indices) for v in ours]
        told = alternate(lambda _i, s=sampling: [load_video(c, sampling=s) for c in clips],
                         lambda _i, ixs=indices: [told_pyav(c, ix) for c, ix in zip(clips, ixs, strict=True)],
                         pairs)
        told_fps = total_frames / statistics.median(told.base)
        ratio = paired.summary() if ok else "not reported: frames differ"
        told_ratio = told.summary() if ok else "not reported: frames differ"
        met = ok and statistics.median(paired.ratios) >= TARGET
        fidelity = f"{sampled} sampled frames equal the baseline's byte for byte" if ok else "frames differ"
        what = f"{label}, {n_clips} clips of {seconds:g} s 640x360 at {fps} fps (source frames/s)"
        rows.append(Row(f"video decode + frame sampling vs a plain PyAV loop, {what}", f"{zoo_fps:.0f}",
                        f"{base_fps:.0f}", ratio, f">= {TARGET:g}x", met, fidelity))
        rows.append(Row(f"video decode + frame sampling vs PyAV told the frames (no checks, no sandbox), {what}",
                        f"{total_frames / statistics.median(told.ours):.0f}", f"{told_fps:.0f}", told_ratio,
                        "report", None, fidelity))
        lines.append(f"| {label} | {sampled} | {zoo_fps:.0f} | {base_fps:.0f} | {ratio} | {told_fps:.0f} | "
                     f"{told_ratio} |")
        print(lines[-1], flush=True)

    md = "\n".join([
        "# Video decoding and frame sampling: zoo.inputs.video vs a plain PyAV loop", "", machine(), "",
        f"{n_clips} clips of {seconds:g} s at {fps} fps, 640x360 ({', '.join(c for c, _ in CODECS)}, in turn), "
        f"made from scikit-image photos. Source frames per second of wall time, median of {pairs} alternating "
        "pairs; the zoo decodes in its sandboxed worker (the default).", "",
        "| sampling | frames sampled | zoo frames/s | PyAV loop frames/s | ratio | PyAV told the frames, frames/s "
        "| ratio |", "|---|---:|---:|---:|---|---:|---|",
        *lines, "",
        "Fidelity: every sampled frame equal to the baseline's at the same index: " + ("yes" if ok_all else "NO"),
    ]) + "\n"
    print(md)
    print(f"wrote {write_result('video_decode', md)}")
    command = f"python {' '.join(['bench/video_decode.py', *sys.argv[1:]])}"
    write_summary("video_decode", command, rows)
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
