"""Safe video input: files, bytes or lists of frames, decoded with limits and sampled as the models' pipelines do.

Accepted: a path (str or PathLike) or raw bytes of an MP4/MOV, Matroska/WebM or AVI file; a list of frames (PIL
images or anything ``zoo.images.load_image`` takes, all one size); a (T, H, W, 3) uint8 array or tensor. A file's
frames are *sampled* (``FrameSampling``: how many, which); a list or array is the frames themselves, in order.

Limits (every failure is an InvalidInputError / InputTooLargeError naming the item's index):

- the file size is checked before reading (``MAX_FILE_BYTES``);
- the container is recognised from its first bytes and opened with that demuxer only (no probing of FFmpeg's
  other demuxers, so playlists and other formats that open further files are never reached); external data
  references in MOV files stay off (FFmpeg's default);
- a file shorter than its top-level structure declares (MP4/MOV boxes, the Matroska Segment, the AVI RIFF chunk)
  is refused before FFmpeg opens it: FFmpeg would stop quietly at the cut;
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

Sampling: ``zoo.inputs.frames`` (``FrameSampling``: qwen_vl_utils' rule, or VLM2Vec's MMEB-V2 evaluation's), applied
in the worker so that only the chosen frames are converted to RGB and sent back. The total is the number of video
packets, which is the number of frames for the accepted codecs; when decoding yields another count the frames are
chosen again from the decoded count.
"""

from __future__ import annotations

import dataclasses
import io
import os
from dataclasses import dataclass
from typing import Any

from zoo.errors import InputTooLargeError, InvalidInputError
from zoo.inputs.frames import FrameSampling, frame_indices, pick_evenly  # noqa: F401 (public here too)
from zoo.inputs.limits import read_checked
from zoo.inputs.sandbox import sandbox as worker  # the parameter `sandbox` below is a flag

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


def _check_complete(data: bytes, fmt: str) -> None:
    """Refuse a file shorter than its top-level structure declares (a cut download): FFmpeg would stop quietly at
    the cut of a Matroska/WebM, a moov-first MP4 or an AVI and give the frames before it, a partial video."""
    end = None
    if fmt == "avi":
        end = 8 + int.from_bytes(data[4:8], "little") if data[4:8] != b"\0\0\0\0" else None
    elif fmt == "matroska":
        end = _ebml_segment_end(data)
    else:  # mov: walk the top-level boxes; a box whose size runs past the data ends it early
        pos = 0
        while pos + 8 <= len(data) and all(32 <= c < 127 for c in data[pos + 4:pos + 8]):
            size = int.from_bytes(data[pos:pos + 4], "big")
            if size == 1 and pos + 16 <= len(data):
                size = int.from_bytes(data[pos + 8:pos + 16], "big")
            if size < 8:  # 0: "to the end of the file"; 2..7: malformed, left to FFmpeg
                break
            pos += size
        end = pos
    if end is not None and end > len(data):
        raise InvalidInputError(f"video file is truncated: it declares {end:,} bytes, {len(data):,} are given")


def _ebml_segment_end(data: bytes) -> int | None:
    """Where a Matroska file's first Segment ends by its declared size; None when unknown (live) or unreadable."""
    def vint(pos: int, mask: bool) -> tuple[int | None, int]:
        n = 9 - data[pos].bit_length()  # the length is the count of leading zero bits + 1
        if not 1 <= n <= 8 or pos + n > len(data):
            raise ValueError
        value = int.from_bytes(data[pos:pos + n], "big")
        if mask:
            value &= (1 << 7 * n) - 1
            if value == (1 << 7 * n) - 1:  # all ones: "unknown size"
                return None, pos + n
        return value, pos + n

    try:
        _, pos = vint(0, False)  # the EBML header's id, then its size
        size, pos = vint(pos, True)
        element, pos = vint(pos + size, False)
        size, pos = vint(pos, True)
    except (IndexError, ValueError, TypeError):
        return None
    return pos + size if element == 0x18538067 and size is not None else None


def _too_long(seconds: float, max_seconds: float) -> InputTooLargeError:
    return InputTooLargeError(f"video is {seconds:,.1f} s long, over the limit of {max_seconds:g} s",
                              limit=int(max_seconds))


def _open(data: bytes, fmt: str):
    import av

    try:
        # metadata_errors: a tag that is not UTF-8 must not raise UnicodeDecodeError out of av.open
        container = av.open(io.BytesIO(data), format=fmt, mode="r", metadata_errors="replace")
    except av.error.FFmpegError as exc:
        raise InvalidInputError(f"cannot read video header (truncated or corrupt?): {exc}") from None
    if not container.streams.video:
        container.close()
        raise InvalidInputError("file has no video stream")
    return container, container.streams.video[0]


def _check_header(container, stream, max_seconds: float) -> float:
    """The checks made before any frame is decoded; returns the frame rate."""
    if stream.codec_context is None:  # PyAV gives no codec context when FFmpeg has no decoder for the codec id
        raise InvalidInputError(f"video codec is not accepted: FFmpeg has no decoder for it ({', '.join(CODECS)})")
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
    import av

    count = 0
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # the demuxer's final flush packet
                continue
            count += 1
            if count > MAX_FRAMES:
                raise InputTooLargeError(f"video has over {MAX_FRAMES:,} frames", limit=MAX_FRAMES)
            if packet.pts is not None and packet.time_base and float(packet.pts * packet.time_base) > max_seconds:
                raise _too_long(float(packet.pts * packet.time_base), max_seconds)
    except av.error.FFmpegError as exc:  # a demuxer error mid-file (corrupt sample table...)
        raise InvalidInputError(f"cannot read video packets (truncated or corrupt?): {exc}") from None
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
    _check_complete(data, fmt)
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
        if len(frames) == 0:
            raise InvalidInputError("a video array has no frames", index=index)
        if len(frames) > MAX_LIST_FRAMES:
            raise InputTooLargeError(f"video has {len(frames)} frames, over the limit of {MAX_LIST_FRAMES}",
                                     index=index, limit=MAX_LIST_FRAMES)
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
        box = worker("video", WORKER_MEMORY_BYTES)
        meta, payload = box.run(params, data, index=index, timeout=DECODE_TIMEOUT, hook=_TEST_HOOK)
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
