"""Safe video input: files, bytes or lists of frames, decoded with limits and sampled as the models' pipelines do.

Accepted: a path (str or PathLike) or raw bytes of an MP4/MOV, Matroska/WebM or AVI file; a list of frames (PIL
images or anything ``zoo.images.load_image`` takes, all one size); a (T, H, W, 3) uint8 array or tensor. A file's
frames are *sampled* (``FrameSampling``: how many, which); a list or array is the frames themselves, in order.

Limits (every failure is an InvalidInputError / InputTooLargeError naming the item's index):

- the file size is checked before reading (``MAX_FILE_BYTES``);
- the container is recognised from its first bytes and opened with that demuxer only (no probing of FFmpeg's
  other demuxers, so playlists and other formats that open further files are never reached); external data
  references in MOV files stay off (FFmpeg's default);
- from the header, before any frame is decoded: a video stream exists, its codec is one of ``CODECS``, the frame
  size is at most ``MAX_FRAME_SIDE`` on a side and ``MAX_FRAME_PIXELS`` in all, the declared duration at most
  ``max_seconds`` (``MAX_SECONDS``) and the declared frame count at most ``MAX_FRAMES``, the frame rate positive;
- the packets are counted (demuxed, not decoded) up to ``MAX_FRAMES``, and a packet past ``max_seconds`` stops the
  count: a header that understates the length is caught too;
- decoded frames must keep the header's size; the sampled frames may take at most ``MAX_SAMPLED_BYTES``;
- a truncated or corrupt file is an InvalidInputError (FFmpeg's errors are caught), never a partial video.

Sandbox: FFmpeg is C code parsing untrusted bytes, so by default files are decoded in the video worker of
``zoo.inputs.sandbox`` (``RLIMIT_AS`` = ``WORKER_MEMORY_BYTES``, ``DECODE_TIMEOUT`` seconds per item); the sampled
frames come back as raw RGB bytes. ``sandbox=False`` decodes in-process, for trusted files only.

Sampling (``FrameSampling``), by default, follows ``qwen_vl_utils.smart_nframes`` and its frame choice to the
letter: with ``nframes`` that many (rounded to ``frame_factor``), otherwise ``total / video_fps * fps`` clamped to
``[min_frames, max_frames]`` and to the frame count, floored to ``frame_factor``; the frames taken are
``round(linspace(0, total - 1, n))`` computed as ``torch.linspace`` does in float32 (``frame_indices``). The
"uniform" rule is VLM2Vec's MMEB-V2 evaluation's (see ``FrameSampling``).
The total is the number of video packets, which is the number of frames for the accepted codecs; when decoding
yields another count the frames are chosen again from the decoded count.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
from dataclasses import dataclass
from typing import Any, Literal

from zoo.errors import InputTooLargeError, InvalidInputError
from zoo.inputs.limits import read_checked
from zoo.inputs.sandbox import sandbox

#: Largest encoded video file the zoo reads.
MAX_FILE_BYTES = 512 * 1024 * 1024
#: Longest video the zoo reads, in seconds (from the header, then from the packets' timestamps).
MAX_SECONDS = 1800.0
#: Most frames a file may hold (counted from its packets).
MAX_FRAMES = 100_000
#: Largest frame: pixels in all (4K UHD) and pixels on a side.
MAX_FRAME_PIXELS = 3840 * 2160
MAX_FRAME_SIDE = 8192
#: Most frames in a list of frames given directly.
MAX_LIST_FRAMES = 768
#: Largest total of sampled RGB frames that come back from the decoder (64 frames of 4K fit).
MAX_SAMPLED_BYTES = 2 * 1024**3
#: Highest accepted frame rate.
MAX_FPS = 1000.0
#: Video codecs the zoo decodes (FFmpeg decoder names).
CODECS = ("h264", "hevc", "vp8", "vp9", "av1", "libdav1d", "mpeg4", "mpeg1video", "mpeg2video", "mjpeg", "h263")
#: Address-space limit of the decoder worker (Linux): the sampled frames plus FFmpeg's buffers.
WORKER_MEMORY_BYTES = 6 * 1024**3
#: Seconds one item may take in the worker (worker start included) before it is killed.
DECODE_TIMEOUT = 300.0
_TEST_HOOK: str | None = None  # tests only: "abort", "exit" or "hang", carried out by the worker


@dataclass(frozen=True)
class FrameSampling:
    """Which frames of a file a model sees.

    ``rule="fps"`` (default) is ``qwen_vl_utils``' (defaults FPS, FPS_MIN_FRAMES, FPS_MAX_FRAMES, FRAME_FACTOR;
    ``nframes``, a fixed count, replaces ``fps`` and the bounds). ``rule="uniform"`` is the frame choice of
    VLM2Vec's MMEB-V2 evaluation: keep every frame of a short video or ``keep`` frames at ``floor(i * total /
    keep)`` of a longer one (its ``save_frames``), then ``nframes`` of those at ``linspace(0, n - 1, nframes)``
    truncated to integers, or all of them when there are fewer (its ``process_video_frames``).
    """

    rule: Literal["fps", "uniform"] = "fps"
    fps: float = 2.0
    min_frames: int = 4
    max_frames: int = 768
    frame_factor: int = 2
    nframes: int | None = None
    keep: int = 64

    @classmethod
    def from_options(cls, options: dict | None) -> FrameSampling:
        """From a card's ``options.video`` table (its keys named as the fields; other keys are ignored)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (options or {}).items() if k in fields})

    def choose(self, total: int, video_fps: float) -> list[int]:
        """The indices of the frames to take from a video of ``total`` frames at ``video_fps``."""
        if self.rule == "uniform":
            saved = (list(range(total)) if total <= self.keep
                     else [math.floor(i * (total / self.keep)) for i in range(self.keep)])
            return pick_evenly(saved, self.nframes)
        return frame_indices(total, self.count(total, video_fps))

    def count(self, total_frames: int, video_fps: float) -> int:
        """How many frames the fps rule takes from ``total_frames`` at ``video_fps`` (``smart_nframes``)."""
        factor = self.frame_factor
        if self.nframes is not None:
            n = round(self.nframes / factor) * factor
        else:
            low = math.ceil(self.min_frames / factor) * factor
            high = math.floor(min(self.max_frames, total_frames) / factor) * factor
            n = total_frames / video_fps * self.fps
            n = math.floor(min(max(n, low), high, total_frames) / factor) * factor
        if not factor <= n <= total_frames:
            raise InvalidInputError(f"video has {total_frames} frame(s); {n} are to be sampled, which needs "
                                    f"between {factor} and the frame count")
        return n


def pick_evenly(items: list, n: int | None) -> list:
    """``n`` of ``items`` at ``numpy.linspace(0, len - 1, n, dtype=int)``; all of them when there are n or fewer."""
    import numpy as np

    if n is None or len(items) <= n:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n, dtype=int).tolist()]


def frame_indices(total: int, n: int) -> list[int]:
    """``torch.linspace(0, total - 1, n).round().long()`` without torch: float32 steps from both ends, ties to even."""
    import numpy as np

    if n == 1:
        return [0]
    start, end = np.float32(0), np.float32(total - 1)
    step = np.float32((end - start) / np.float32(n - 1))
    i = np.arange(n)
    half = n // 2
    values = np.where(i < half, start + step * i.astype(np.float32),
                      end - step * (n - i - 1).astype(np.float32)).astype(np.float32)
    return np.rint(values).astype(np.int64).tolist()


@dataclass
class Video:
    """Decoded frames and where they came from.

    ``frames`` is (T, H, W, 3) uint8 RGB; ``fps`` the source's frame rate and ``total_frames`` its frame count
    (for a list of frames: None); ``indices`` the source frames taken; ``sample_fps`` the rate of the taken
    frames, ``T / total_frames * fps`` as ``qwen_vl_utils`` reports it.
    """

    frames: Any
    fps: float | None = None
    total_frames: int | None = None
    indices: tuple[int, ...] = ()
    sample_fps: float | None = None


# ---------------------------------------------------------------- decoding (in the worker by default)
def _container(data: bytes) -> str:
    """The FFmpeg demuxer for ``data``'s signature; anything else is refused before FFmpeg sees it."""
    if data[4:8] == b"ftyp" or data[4:8] in (b"moov", b"mdat", b"free", b"wide"):
        return "mov"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "avi"
    raise InvalidInputError(f"not an MP4/MOV, Matroska/WebM or AVI video (starts with {data[:12]!r})")


def _too_long(seconds: float, max_seconds: float) -> InputTooLargeError:
    return InputTooLargeError(f"video is {seconds:,.1f} s long, over the limit of {max_seconds:g} s",
                              limit=int(max_seconds))


def _open(data: bytes, fmt: str):
    import av

    try:
        container = av.open(io.BytesIO(data), format=fmt, mode="r")
    except av.error.FFmpegError as exc:
        raise InvalidInputError(f"cannot read video header (truncated or corrupt?): {exc}") from None
    if not container.streams.video:
        container.close()
        raise InvalidInputError("file has no video stream")
    return container, container.streams.video[0]


def _check_header(container, stream, max_seconds: float) -> float:
    """The checks made before any frame is decoded; returns the frame rate."""
    codec = stream.codec_context.name
    if codec not in CODECS:
        raise InvalidInputError(f"video codec {codec!r} is not accepted ({', '.join(CODECS)})")
    w, h = stream.codec_context.width, stream.codec_context.height
    _check_frame_size(w, h)
    seconds = max(container.duration / 1e6 if container.duration else 0.0,
                  float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0.0)
    if seconds > max_seconds:
        raise _too_long(seconds, max_seconds)
    if stream.frames > MAX_FRAMES:
        raise InputTooLargeError(f"video declares {stream.frames:,} frames, over the limit of {MAX_FRAMES:,}",
                                 limit=MAX_FRAMES)
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else 0.0
    if not 0 < fps <= MAX_FPS:
        raise InvalidInputError(f"video frame rate {fps:g} is outside (0, {MAX_FPS:g}]")
    return fps


def _check_frame_size(w: int, h: int, index: int | None = None) -> None:
    if w < 1 or h < 1:
        raise InvalidInputError(f"video frame size {w}x{h} is empty", index=index)
    if max(w, h) > MAX_FRAME_SIDE or w * h > MAX_FRAME_PIXELS:
        raise InputTooLargeError(f"video frames are {w}x{h}, over the limit of {MAX_FRAME_PIXELS:,} pixels "
                                 f"({MAX_FRAME_SIDE} on a side)", index=index, limit=MAX_FRAME_PIXELS)


def _count_packets(container, stream, max_seconds: float) -> int:
    count = 0
    for packet in container.demux(stream):
        if packet.size == 0:  # the demuxer's final flush packet
            continue
        count += 1
        if count > MAX_FRAMES:
            raise InputTooLargeError(f"video has over {MAX_FRAMES:,} frames", limit=MAX_FRAMES)
        if packet.pts is not None and packet.time_base and float(packet.pts * packet.time_base) > max_seconds:
            raise _too_long(float(packet.pts * packet.time_base), max_seconds)
    return count


def _decode_frames(data: bytes, fmt: str, wanted: set[int], size: tuple[int, int]) -> tuple[dict, int]:
    """Decode every frame, keep the RGB arrays of the ``wanted`` ones; returns (kept by index, decoded count)."""
    import av

    container, stream = _open(data, fmt)
    stream.thread_type = "AUTO"  # frame threads: the same frames, decoded faster
    kept, n = {}, 0
    try:
        for frame in container.decode(stream):
            if n in wanted:
                if (frame.width, frame.height) != size:
                    raise InvalidInputError(f"video frame {n} is {frame.width}x{frame.height}, not "
                                            f"{size[0]}x{size[1]} as the first one")
                kept[n] = frame.to_ndarray(format="rgb24")
            n += 1
    except av.error.FFmpegError as exc:
        raise InvalidInputError(f"cannot decode video (truncated or corrupt?): {exc}") from None
    finally:
        container.close()
    return kept, n


def _decode(data: bytes, sampling: FrameSampling, max_seconds: float) -> tuple[Any, dict]:
    """Decode and sample one encoded video: ((T, H, W, 3) uint8, metadata); errors carry no index."""
    import numpy as np

    fmt = _container(data)
    container, stream = _open(data, fmt)
    try:
        fps = _check_header(container, stream, max_seconds)
        size = (stream.codec_context.width, stream.codec_context.height)
        total = _count_packets(container, stream, max_seconds)
    finally:
        container.close()
    if total == 0:
        raise InvalidInputError("video has no frames")
    indices = sampling.choose(total, fps)
    if len(indices) * size[0] * size[1] * 3 > MAX_SAMPLED_BYTES:
        raise InputTooLargeError(f"{len(indices)} sampled {size[0]}x{size[1]} frames are over the limit of "
                                 f"{MAX_SAMPLED_BYTES:,} bytes", limit=MAX_SAMPLED_BYTES)
    kept, decoded = _decode_frames(data, fmt, set(indices), size)
    if decoded == 0:
        raise InvalidInputError("video has no decodable frames")
    if decoded != total:  # a packet without a frame, or the other way round: choose from what decoding gave
        total = decoded
        indices = sampling.choose(total, fps)
        kept, _ = _decode_frames(data, fmt, set(indices), size)
    frames = np.stack([kept[i] for i in indices])
    meta = {"fps": fps, "total_frames": total, "indices": indices,
            "sample_fps": len(indices) / max(total, 1e-6) * fps}
    return frames, meta


def serve(head: dict, data: bytes) -> tuple[dict, list]:
    """The worker's side (``zoo.inputs.sandbox``): the sampled frames as raw RGB bytes."""
    frames, meta = _decode(data, FrameSampling(**head["sampling"]), float(head["max_seconds"]))
    return {**meta, "shape": list(frames.shape)}, [frames]


# ---------------------------------------------------------------- frames given directly
def _from_frames(item: Any, index: int, rgba_background: tuple[int, int, int] | None = None) -> Video:
    import numpy as np

    if isinstance(item, (list, tuple)):
        from zoo.inputs.images import load_image

        if not item:
            raise InvalidInputError("a list of video frames is empty", index=index)
        if len(item) > MAX_LIST_FRAMES:
            raise InputTooLargeError(f"video has {len(item)} frames, over the limit of {MAX_LIST_FRAMES}",
                                     index=index, limit=MAX_LIST_FRAMES)
        images = [load_image(frame, index=index, rgba_background=rgba_background) for frame in item]
        sizes = {im.size for im in images}
        if len(sizes) > 1:
            raise InvalidInputError(f"video frames differ in size ({sorted(sizes)}); give frames of one size",
                                    index=index)
        frames = np.stack([np.asarray(im, dtype=np.uint8) for im in images])
    else:
        if type(item).__module__ == "torch" and hasattr(item, "detach"):
            item = item.detach().cpu().numpy()
        frames = np.asarray(item)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise InvalidInputError(f"a video array must be (T, H, W, 3) uint8 RGB, got shape {frames.shape} "
                                    f"{frames.dtype}", index=index)
        if not 1 <= len(frames) <= MAX_LIST_FRAMES:
            raise InputTooLargeError(f"video has {len(frames)} frames, outside 1..{MAX_LIST_FRAMES}", index=index,
                                     limit=MAX_LIST_FRAMES)
    _check_frame_size(frames.shape[2], frames.shape[1], index)
    return Video(np.ascontiguousarray(frames))


# ---------------------------------------------------------------- public API
def is_video_file(item: Any) -> bool:
    """True for a path whose suffix is a video's (what ``modality`` inference and dataset jobs go by)."""
    from zoo.inputs.limits import FILE_SUFFIXES

    return isinstance(item, (str, os.PathLike)) and os.fspath(item).lower().endswith(FILE_SUFFIXES["video"])


def load_video(item: Any, *, sampling: FrameSampling | None = None, index: int = 0,
               max_seconds: float | None = None, sandbox: bool = True,
               rgba_background: tuple[int, int, int] | None = None) -> Video:
    """Turn one user item into a ``Video``, or raise an error naming ``index``.

    Args:
        item: a path or bytes of a video file, a list of frames, or a (T, H, W, 3) uint8 array.
        sampling: which frames of a file to take (``FrameSampling()``, qwen_vl_utils' defaults, when None).
        index: the item's position in the caller's list, used in error messages.
        max_seconds: length limit; ``MAX_SECONDS`` when None.
        sandbox: decode files in the worker process (default); False decodes in-process, for trusted files only.
        rgba_background: frames given as RGBA images are pasted onto this colour (see ``zoo.images.to_rgb``).
    """
    import numpy as np

    if not isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
        if isinstance(item, (list, tuple)) or hasattr(item, "shape"):
            return _from_frames(item, index, rgba_background)
        raise InvalidInputError(f"expected a video (path, bytes, a list of frames or a (T, H, W, 3) array), "
                                f"got {type(item).__name__}", index=index)
    sampling = sampling or FrameSampling()
    max_seconds = MAX_SECONDS if max_seconds is None else float(max_seconds)
    data = read_checked(item, index, what="video", limit=MAX_FILE_BYTES)
    if sandbox:
        params = {"sampling": dataclasses.asdict(sampling), "max_seconds": max_seconds}
        meta, payload = _video_sandbox().run(params, data, index=index, timeout=DECODE_TIMEOUT, hook=_TEST_HOOK)
        frames = np.frombuffer(payload, dtype=np.uint8).reshape(meta["shape"])
    else:
        try:
            frames, meta = _decode(data, sampling, max_seconds)
        except InputTooLargeError as exc:
            raise InputTooLargeError(exc.args[0], index=index, limit=exc.limit) from None
        except InvalidInputError as exc:
            raise InvalidInputError(exc.args[0], index=index) from None
    return Video(frames, float(meta["fps"]), int(meta["total_frames"]), tuple(meta["indices"]),
                 float(meta["sample_fps"]))


def _video_sandbox():
    return sandbox("video", WORKER_MEMORY_BYTES)
