"""Safe video input: every accepted container and input form, sampling as upstream samples, refusals that name the
item and the limit, the sandbox, and the fallback when the packet count is not the frame count.

Clips are made at test time (``tests.fixtures.clips``): a slow pan across a photo, so every frame differs and a
wrong frame choice shows; ``reference_frames`` (a plain PyAV loop) is what the sampled frames must equal.
"""

from __future__ import annotations

import functools
import io
import math
import struct
import threading
import wave
from concurrent.futures import ThreadPoolExecutor

import av
import numpy as np
import pytest
import torch
from PIL import Image

from tests.fixtures.clips import pan_frames, reference_frames, write_clip
from zoo.errors import InputTooLargeError, InvalidInputError
from zoo.inputs import video
from zoo.inputs.video import FrameSampling, frame_indices, load_video

FILES = [("mpeg4", "mp4"), ("h264", "mp4"), ("libx264", "mp4"), ("mpeg4", "matroska"), ("libx264", "matroska"),
         ("libvpx-vp9", "webm"), ("mjpeg", "avi")]
SUFFIX = {"mp4": ".mp4", "matroska": ".mkv", "webm": ".webm", "avi": ".avi"}
COUNT, FPS = 30, 12  # the default clip: 2.5 s


@functools.cache
def _clip(codec: str = "libx264", container: str = "mp4", count: int = COUNT, photo: str = "astronaut",
          fps: int = FPS) -> bytes:
    return write_clip(None, pan_frames(count, photo=photo), fps=fps, codec=codec, container=container)


def _fail(*args, **kwargs):
    raise AssertionError("must not be reached")


def _refused(cls, pattern: str, index: int, item, **kwargs):
    """Load ``item`` expecting exactly ``cls`` whose message starts with ``input[index]: `` then ``pattern``."""
    with pytest.raises(InvalidInputError, match=rf"^input\[{index}\]: {pattern}") as info:
        load_video(item, index=index, **kwargs)
    assert type(info.value) is cls and info.value.index == index, info.value
    return info.value


# ---------------------------------------------------------------- input forms
@pytest.mark.parametrize(("codec", "container"), FILES)
def test_files_give_the_reference_frames_at_the_sampled_indices(codec, container, tmp_path):
    data = _clip(codec, container)
    ref, fps = reference_frames(data)
    assert ref.shape == (COUNT, 64, 96, 3) and fps == FPS
    assert all(not np.array_equal(a, b) for a, b in zip(ref, ref[1:], strict=False))  # a wrong index shows
    path = tmp_path / f"clip{SUFFIX[container]}"
    path.write_bytes(data)
    sampling = FrameSampling(fps=6.0)  # 30 frames at 12 fps: 15, floored to 14
    expected = torch.linspace(0, COUNT - 1, 14).round().long().tolist()
    results = [load_video(form, sampling=sampling, index=2) for form in (str(path), path, data, bytearray(data))]
    results.append(load_video(data, sampling=sampling, sandbox=False))
    for v in results:
        assert v.indices == tuple(expected)
        assert v.fps == fps and v.total_frames == len(ref) and isinstance(v.fps, float)
        assert v.sample_fps == len(v.indices) / len(ref) * fps == 5.6
        assert v.frames.dtype == np.uint8 and v.frames.shape == (14, 64, 96, 3)
        np.testing.assert_array_equal(v.frames, ref[list(v.indices)])
    default = load_video(path)  # qwen_vl_utils' defaults: 2 fps, 2.5 s -> 5, floored to 4
    assert default.indices == (0, 10, 19, 29) and default.sample_fps == 4 / COUNT * FPS
    np.testing.assert_array_equal(default.frames, ref[[0, 10, 19, 29]])


def test_frame_lists_arrays_and_tensors_come_back_unchanged():
    frames = pan_frames(6, photo="coffee")
    images = [Image.fromarray(f) for f in frames]
    forms = [images, tuple(images), list(frames), frames, torch.from_numpy(frames), np.asfortranarray(frames),
             frames[:, ::-1][:, ::-1]]
    for form in forms:
        v = load_video(form, sampling=FrameSampling(nframes=2), index=3)  # no sampling of given frames
        assert v.total_frames is None and v.fps is None and v.indices == () and v.sample_fps is None
        assert v.frames.dtype == np.uint8 and v.frames.flags.c_contiguous and v.frames.shape == (6, 64, 96, 3)
        np.testing.assert_array_equal(v.frames, frames)
    rgba = [Image.fromarray(np.dstack([f, np.zeros(f.shape[:2], np.uint8)])) for f in frames[:2]]
    assert (load_video(rgba, rgba_background=(255, 0, 0)).frames == (255, 0, 0)).all()  # transparent: background
    np.testing.assert_array_equal(load_video(rgba).frames, frames[:2])  # no background: the alpha is dropped


# ---------------------------------------------------------------- sampling, against upstream
TOTALS = [1, 2, 3, 4, 5, 7, 8, 9, 24, 25, 59, 60, 61, 299, 1000, 1537, 20000, 100000]
RATES = [0.5, 1, 2, 7.5, 23.976, 25, 29.97, 30, 60, 240]


@pytest.mark.parametrize(("sampling", "ele"), [
    (FrameSampling(), {}),
    (FrameSampling(fps=1.0, max_frames=64), {"fps": 1.0, "max_frames": 64}),
    (FrameSampling(fps=0.5, min_frames=15, max_frames=33), {"fps": 0.5, "min_frames": 15, "max_frames": 33}),
])
def test_the_fps_rule_counts_as_smart_nframes(sampling, ele):
    from qwen_vl_utils.vision_process import smart_nframes

    refused = 0
    for total in TOTALS:
        for rate in RATES:
            try:
                expected = smart_nframes(dict(ele), total_frames=total, video_fps=rate)
            except ValueError:
                refused += 1
                with pytest.raises(InvalidInputError, match=rf"video has {total} frame\(s\)"):
                    sampling.count(total, rate)
                continue
            assert sampling.count(total, rate) == expected, (total, rate)
    assert 0 < refused < len(TOTALS) * len(RATES) // 2


def test_nframes_counts_as_smart_nframes():
    from qwen_vl_utils.vision_process import smart_nframes

    refused = 0
    for total in TOTALS:
        for n in (1, 2, 3, 4, 5, 8, 15, 16, 17, 63, 64, 767, 768, 769):
            try:
                expected = smart_nframes({"nframes": n}, total_frames=total, video_fps=29.97)
            except ValueError:
                refused += 1
                with pytest.raises(InvalidInputError):
                    FrameSampling(nframes=n).count(total, 29.97)
                continue
            assert FrameSampling(nframes=n).count(total, 29.97) == expected, (total, n)
            assert FrameSampling(nframes=n).choose(total, 29.97) == frame_indices(total, expected)
    assert refused > 0


def test_frame_indices_are_torch_linspace_rounded():
    cases = [(total, n) for total in range(1, 301) for n in range(1, min(70, total) + 1)]
    cases += [(total, n) for total in (1000, 4321, 20000, 99999, 100000) for n in (2, 3, 64, 255, 256, 767, 768)]
    for total, n in cases:
        assert frame_indices(total, n) == torch.linspace(0, total - 1, n).round().long().tolist(), (total, n)


def _vlm2vec_frames(total: int, keep: int, nframes: int | None) -> list[int]:
    """The frames VLM2Vec's MMEB-V2 evaluation shows the model, from TIGER-AI-Lab/VLM2Vec
    src/utils/vision_utils/vision_utils.py: ``save_frames`` writes these frames of the video to disk..."""
    if total <= keep:
        saved = list(range(total))
    else:
        step = total / keep
        saved = [math.floor(i * step) for i in range(keep)]
    # ...and ``process_video_frames(frame_dir, num_frames)`` loads them back: all of them for num_frames None, else
    # (when num_frames <= their count) ``sample_frames``' np.linspace(0, len - 1, num_frames, dtype=int) of them
    if nframes is None:
        return saved
    if nframes and nframes <= len(saved):
        return [saved[i] for i in np.linspace(0, len(saved) - 1, nframes, dtype=int).tolist()]
    return saved


def test_the_uniform_rule_is_vlm2vecs_evaluation(tmp_path):
    for keep in (8, 16, 64):
        for nframes in (None, 1, 2, 3, 7, 8, 16, 32, 64):
            sampling = FrameSampling(rule="uniform", keep=keep, nframes=nframes)
            for total in range(1, 401):
                assert sampling.choose(total, 30.0) == _vlm2vec_frames(total, keep, nframes), (total, keep, nframes)
    options = {"rule": "uniform", "keep": 16, "nframes": 5, "unrelated": True}
    sampling = FrameSampling.from_options(options)
    assert sampling == FrameSampling(rule="uniform", keep=16, nframes=5)
    data = _clip("mpeg4", "matroska")
    ref, _ = reference_frames(data)
    v = load_video(data, sampling=sampling)
    assert v.indices == tuple(_vlm2vec_frames(COUNT, 16, 5)) == (0, 5, 13, 20, 28)
    np.testing.assert_array_equal(v.frames, ref[list(v.indices)])


# ---------------------------------------------------------------- limits
def _claim_hours(data: bytes, hours: float) -> bytes:
    """A short MP4 whose header (version-0 boxes, big-endian) claims ``hours`` of video.

    FFmpeg takes a track's length from its sample table (``stts``) capped by ``mdhd`` and cut by the edit list
    (``elst``), and the file's from its tracks, so each of those is patched, and ``mvhd``/``tkhd`` to agree.
    """
    out = bytearray(data)

    def box(tag: bytes) -> int:
        at = out.find(tag)
        assert at > 0 and out.count(tag) == 1 and out[at + 4] == 0, tag  # one box, version 0
        return at + 4  # its version/flags

    seconds = hours * 3600
    mvhd, mdhd = box(b"mvhd"), box(b"mdhd")
    movie_scale, media_scale = struct.unpack_from(">I", out, mvhd + 12)[0], struct.unpack_from(">I", out, mdhd + 12)[0]
    struct.pack_into(">I", out, mvhd + 16, int(seconds * movie_scale))  # creation, modification, timescale, duration
    struct.pack_into(">I", out, box(b"tkhd") + 20, int(seconds * movie_scale))  # ..., track id, reserved, duration
    struct.pack_into(">I", out, mdhd + 16, int(seconds * media_scale))
    struct.pack_into(">I", out, box(b"elst") + 8, int(seconds * movie_scale))  # entry count, segment duration
    stts = box(b"stts")
    entries, samples = struct.unpack_from(">II", out, stts + 4)
    assert entries == 1
    struct.pack_into(">I", out, stts + 12, int(seconds * media_scale / samples))  # sample count, sample delta
    return bytes(out)


def test_a_header_claiming_hours_is_refused_before_decoding(monkeypatch):
    data = _claim_hours(_clip("mpeg4", "mp4", count=12), hours=10)
    with av.open(io.BytesIO(data)) as container:  # the patch took: FFmpeg reads ten hours from the header
        assert container.duration / 1e6 == pytest.approx(36000, rel=1e-3)
        assert container.streams.video[0].frames == 12
    error = _refused(InputTooLargeError, r"video is 36,000\.0 s long, over the limit of 1800 s", 4, data)
    assert error.limit == 1800
    monkeypatch.setattr(video, "_count_packets", _fail)  # in-process, so these patches hold: nothing is demuxed
    monkeypatch.setattr(video, "_decode_frames", _fail)
    error = _refused(InputTooLargeError, r"video is 36,000\.0 s long, over the limit of 1800 s", 4, data,
                     sandbox=False)
    assert error.limit == 1800
    error = _refused(InputTooLargeError, r"video is 2\.5 s long, over the limit of 2 s", 1, _clip(), max_seconds=2,
                     sandbox=False)
    assert error.limit == 2


def test_a_header_that_understates_the_length_is_caught_by_the_packets():
    data = bytearray(_clip("libx264", "matroska"))
    at = data.find(b"\x44\x89\x88")  # the Segment Info's Duration: an 8-byte float, in ms
    assert struct.unpack_from(">d", data, at + 3)[0] == 2500.0 and data.count(b"\x44\x89\x88") == 1
    struct.pack_into(">d", data, at + 3, 500.0)
    with av.open(io.BytesIO(bytes(data))) as container:
        assert container.duration == 500_000
    for sandbox in (True, False):
        error = _refused(InputTooLargeError, r"video is 2\.\d s long, over the limit of 2 s", 3, bytes(data),
                         max_seconds=2.0, sandbox=sandbox)
        assert error.limit == 2
    assert load_video(bytes(data), max_seconds=3.0).total_frames == COUNT


def test_frames_over_the_pixel_limit_are_refused(monkeypatch):
    data = _clip()
    monkeypatch.setattr(video, "MAX_FRAME_PIXELS", 96 * 64 - 1)  # in-process only: the worker does not see it
    monkeypatch.setattr(video, "_count_packets", _fail)  # refused from the header
    error = _refused(InputTooLargeError, r"video frames are 96x64, over the limit of 6,143 pixels", 6, data,
                     sandbox=False)
    assert error.limit == 96 * 64 - 1
    for frames in (pan_frames(2), [Image.fromarray(f) for f in pan_frames(2)]):
        error = _refused(InputTooLargeError, r"video frames are 96x64, over the limit of 6,143 pixels", 6, frames)
        assert error.limit == 96 * 64 - 1
    monkeypatch.undo()
    monkeypatch.setattr(video, "MAX_FRAME_PIXELS", 96 * 64)  # the limit itself is allowed
    assert load_video(data, sandbox=False).frames.shape == (4, 64, 96, 3)


def test_a_frame_wider_than_the_side_limit_is_refused_in_the_sandbox():
    wide = np.full((1, 16, video.MAX_FRAME_SIDE + 8, 3), 200, np.uint8)  # few pixels, but too wide
    data = write_clip(None, wide, codec="mjpeg", container="avi")
    error = _refused(InputTooLargeError, r"video frames are 8200x16, over the limit of .* \(8192 on a side\)", 1, data)
    assert error.limit == video.MAX_FRAME_PIXELS
    _refused(InputTooLargeError, r"video frames are 16x8200", 1, np.zeros((1, 8200, 16, 3), np.uint8))


def test_sampled_frames_over_the_byte_limit_are_refused(monkeypatch):
    monkeypatch.setattr(video, "MAX_SAMPLED_BYTES", 3 * 96 * 64 * 3)  # 3 frames; the default sampling takes 4
    monkeypatch.setattr(video, "_decode_frames", _fail)
    error = _refused(InputTooLargeError, r"4 sampled 96x64 frames are over the limit of 55,296 bytes", 0, _clip(),
                     sandbox=False)
    assert error.limit == 55296
    monkeypatch.undo()
    monkeypatch.setattr(video, "MAX_SAMPLED_BYTES", 4 * 96 * 64 * 3)
    assert len(load_video(_clip(), sandbox=False).frames) == 4


def _faststart_mp4(tmp_path) -> bytes:
    """An MP4 with its header (moov) before the frames (mdat), as streaming sites serve them."""
    path = tmp_path / "faststart.mp4"
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for array in pan_frames(COUNT):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        out.mux(stream.encode())
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")
    return data


def _header_end(data: bytes, container: str) -> int:
    """Where the header ends and the frames begin."""
    if container == "avi":
        return data.find(b"movi") + 4
    if container in ("matroska", "webm"):
        return data.find(b"\x1f\x43\xb6\x75")  # the first Cluster
    return data.find(b"mdat") + 4


@pytest.mark.parametrize("sandbox", [True, False])
def test_truncated_files_are_refused_never_a_partial_video(sandbox, tmp_path):
    clips = {f"{codec} {container}": (_clip(codec, container), container) for codec, container in FILES}
    clips["faststart mp4"] = (_faststart_mp4(tmp_path), "mp4")
    for name, (data, container) in clips.items():
        assert load_video(data, sandbox=sandbox).total_frames == COUNT, name
        cuts = {"half": len(data) // 2, "three quarters": 3 * len(data) // 4, "one byte short": len(data) - 1}
        if name != "mpeg4 mp4" and name != "h264 mp4" and name != "libx264 mp4":  # those end with their header
            cuts["after the header"] = _header_end(data, container)
            cuts["a little after the header"] = _header_end(data, container) + 60
        for size in cuts.values():
            assert 0 < size < len(data)
            _refused(InvalidInputError, r"(video file is truncated|cannot read video header)", 3, data[:size],
                     sandbox=sandbox)
    whole = clips["libx264 mp4"][0]  # data after the end is no truncation (FFmpeg ignores it)
    assert load_video(whole + b"\0" * 100, sandbox=sandbox).total_frames == COUNT


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pan_frames(1)[0]).save(buf, format="PNG")
    return buf.getvalue()


def _wav() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.zeros(1600, np.int16).tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("sandbox", [True, False])
def test_other_files_named_mp4_are_refused_before_ffmpeg(sandbox, monkeypatch, tmp_path):
    monkeypatch.setattr(video, "_open", _fail)  # holds in-process: FFmpeg is never reached
    others = {"png": _png(), "wav": _wav(), "random": np.random.default_rng(0).bytes(4096),
              "playlist": b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",
              "jpeg": write_clip(None, pan_frames(1), codec="mjpeg", container="mjpeg")}
    for name, data in others.items():
        path = tmp_path / f"{name}.mp4"
        path.write_bytes(data)
        for item in (path, data):
            _refused(InvalidInputError, r"not an MP4/MOV, Matroska/WebM or AVI video \(starts with b", 2, item,
                     sandbox=sandbox)


def _audio_only(codec: str, container: str, rate: int) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(rate // 2) / rate)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(tone, format="fltp" if codec == "aac" else "flt", layout="mono")
        frame.sample_rate = rate
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return buf.getvalue()


@pytest.mark.parametrize("sandbox", [True, False])
def test_audio_only_files_have_no_video_stream(sandbox):
    for data in (_audio_only("aac", "mp4", 16000), _audio_only("libopus", "webm", 48000)):
        with av.open(io.BytesIO(data)) as container:
            assert len(container.streams.audio) == 1 and not container.streams.video
        _refused(InvalidInputError, "file has no video stream", 5, data, sandbox=sandbox)


def _encoded(codec: str, container: str, pix_fmt: str) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 96, 64, pix_fmt
        for array in pan_frames(4):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        out.mux(stream.encode())
    return buf.getvalue()


@pytest.mark.parametrize("sandbox", [True, False])
def test_codecs_outside_the_list_are_refused_by_name(sandbox, monkeypatch):
    monkeypatch.setattr(video, "_decode_frames", _fail)
    monkeypatch.setattr(video, "_count_packets", _fail)
    for codec, container, pix_fmt in (("ffv1", "matroska", "yuv420p"), ("png", "mp4", "rgb24")):
        data = _encoded(codec, container, pix_fmt)
        assert codec not in video.CODECS and reference_frames(data)[0].shape == (4, 64, 96, 3)  # FFmpeg could
        _refused(InvalidInputError, rf"video codec '{codec}' is not accepted \(h264, ", 8, data, sandbox=sandbox)


@pytest.mark.parametrize("sandbox", [True, False])
def test_a_codec_ffmpeg_has_no_decoder_for_is_refused(sandbox):
    data = bytearray(_clip("libx264", "matroska"))
    at = data.find(b"V_MPEG4/ISO/AVC")
    data[at:at + 15] = b"V_QQQQQ/ISO/AVC"  # an unknown CodecID: PyAV gives the stream no codec context
    _refused(InvalidInputError, "video codec is not accepted: FFmpeg has no decoder for it", 4, bytes(data),
             sandbox=sandbox)


@pytest.mark.parametrize("sandbox", [True, False])
def test_metadata_that_is_not_utf8_does_not_matter(sandbox):
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="matroska") as out:
        out.metadata["title"] = "TITLETITLE"
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.metadata["title"] = "TRACKTRACK"
        for array in pan_frames(COUNT):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        out.mux(stream.encode())
    clean = buf.getvalue()
    data = clean.replace(b"TITLETITLE", b"\xff\xfe\xc3\x28TITLE!").replace(b"TRACKTRACK", b"\xe2\x28\xa1TRACK!!")
    assert len(data) == len(clean) and data != clean
    with pytest.raises(UnicodeDecodeError):  # what PyAV does with them by default
        av.open(io.BytesIO(data)).close()
    ref, _ = reference_frames(clean)
    v = load_video(data, sandbox=sandbox)
    assert v.total_frames == COUNT
    np.testing.assert_array_equal(v.frames, ref[list(v.indices)])


def test_a_demuxer_error_mid_file_is_an_invalid_input():
    data = bytearray(_clip("mpeg4", "mp4", count=12))
    at = data.find(b"stsz") + 4 + 12 + 4 * 5  # version/flags, sample size, sample count, then sizes: the 6th
    data[at] = 0x3D  # a ~1 GB sample: with this FFmpeg, an ENOMEM from av_read_frame while the packets are counted
    _refused(InvalidInputError, "", 2, bytes(data), sandbox=False)
    _refused(InvalidInputError, "", 2, bytes(data))


def test_files_over_the_byte_limit_are_refused_before_reading(monkeypatch, tmp_path):
    data = _clip()
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    monkeypatch.setattr(video, "MAX_FILE_BYTES", len(data) - 1)
    for item, what in ((path, "file"), (str(path), "file"), (data, "data")):
        error = _refused(InputTooLargeError, rf"video {what} is {len(data):,} bytes, over the limit of "
                                             rf"{len(data) - 1:,}", 7, item)
        assert error.limit == len(data) - 1
    monkeypatch.setattr(video, "MAX_FILE_BYTES", len(data))
    assert load_video(path).total_frames == COUNT


def test_too_many_frames_are_refused(monkeypatch):
    monkeypatch.setattr(video, "MAX_FRAMES", COUNT - 1)
    monkeypatch.setattr(video, "_decode_frames", _fail)
    error = _refused(InputTooLargeError, rf"video declares {COUNT} frames, over the limit of {COUNT - 1}", 1,
                     _clip("libx264", "mp4"), sandbox=False)  # MP4 declares its frame count
    assert error.limit == COUNT - 1
    error = _refused(InputTooLargeError, rf"video has over {COUNT - 1} frames", 1, _clip("libx264", "matroska"),
                     sandbox=False)  # Matroska does not: its packets are counted
    assert error.limit == COUNT - 1
    monkeypatch.undo()
    monkeypatch.setattr(video, "MAX_FRAMES", COUNT)
    assert load_video(_clip("libx264", "matroska"), sandbox=False).total_frames == COUNT


def test_bad_frame_lists_arrays_and_items_name_the_item(monkeypatch, tmp_path):
    frames = pan_frames(3)
    small = Image.fromarray(frames[0]).resize((48, 32))
    (tmp_path / "empty.mp4").write_bytes(b"")
    cases = [
        ([Image.fromarray(frames[0]), small], r"video frames differ in size \(\[\(48, 32\), \(96, 64\)\]\)"),
        ([], "a list of video frames is empty"),
        ((), "a list of video frames is empty"),
        (frames.astype(np.float32), r"a video array must be \(T, H, W, 3\) uint8 RGB, got shape \(3, 64, 96, 3\) "
                                    "float32"),
        (frames[..., 0], r"a video array must be .* got shape \(3, 64, 96\) uint8"),
        (frames[0], r"a video array must be .* got shape \(64, 96, 3\)"),
        (np.zeros((2, 8, 8, 4), np.uint8), r"a video array must be .* got shape \(2, 8, 8, 4\)"),
        (torch.zeros(2, 8, 8, 3), r"a video array must be .* got shape \(2, 8, 8, 3\) float32"),
        (np.zeros((0, 8, 8, 3), np.uint8), "a video array has no frames"),
        (np.zeros((2, 0, 8, 3), np.uint8), "video frame size 8x0 is empty"),
        (12345, "expected a video .* got int"),
        (None, "expected a video .* got NoneType"),
        ({"video": "clip.mp4"}, "expected a video .* got dict"),
        (tmp_path, "video path .* is a directory, not a regular file"),
        (str(tmp_path / "missing.mp4"), "no such video file"),
        (tmp_path / "empty.mp4", "video file .* is empty"),
        (b"", "video data is empty"),
    ]
    for item, pattern in cases:
        _refused(InvalidInputError, pattern, 9, item)
    monkeypatch.setattr(video, "MAX_LIST_FRAMES", 2)
    for item in (list(frames), frames, torch.from_numpy(frames)):
        error = _refused(InputTooLargeError, "video has 3 frames, over the limit of 2", 9, item)
        assert error.limit == 2
    assert len(load_video(list(frames[:2])).frames) == 2


# ---------------------------------------------------------------- the sandbox
@pytest.mark.parametrize("hook", ["abort", "exit", "hang"])
def test_a_crashing_or_hanging_decoder_is_contained(hook, monkeypatch):
    data = _clip()
    ref, _ = reference_frames(data)
    assert load_video(data).total_frames == COUNT  # a worker is up
    monkeypatch.setattr(video, "DECODE_TIMEOUT", 2.0)
    monkeypatch.setattr(video, "_TEST_HOOK", hook)
    _refused(InvalidInputError, "video decoder (crashed|took over)", 7, data)
    monkeypatch.setattr(video, "_TEST_HOOK", None)
    v = load_video(data, index=7)  # a fresh worker
    np.testing.assert_array_equal(v.frames, ref[list(v.indices)])


def test_sandboxed_and_in_process_decoding_agree():
    for codec, container in FILES:
        data = _clip(codec, container, count=17, photo="chelsea")
        sampling = FrameSampling(nframes=6)
        a, b = load_video(data, sampling=sampling), load_video(data, sampling=sampling, sandbox=False)
        assert (a.fps, a.total_frames, a.indices, a.sample_fps) == (b.fps, b.total_frames, b.indices, b.sample_fps)
        assert a.indices == (0, 3, 6, 10, 13, 16) and a.frames.shape == (6, 64, 96, 3)
        np.testing.assert_array_equal(a.frames, b.frames)


def test_threads_sharing_the_worker_each_get_their_own_clip(monkeypatch):
    monkeypatch.setattr(video, "DECODE_TIMEOUT", 20.0)  # a mixed-up exchange fails in seconds, not minutes
    clips = [_clip(codec, container, count=10 + 3 * i, photo=photo, fps=10 + i)
             for i, ((codec, container), photo) in enumerate(zip(FILES + FILES[:1], ("astronaut", "coffee",
                                                                                      "chelsea", "rocket") * 2,
                                                                 strict=True))]
    sampling = FrameSampling(fps=4.0)
    serial = [load_video(data, sampling=sampling, index=i) for i, data in enumerate(clips)]
    assert len({v.frames.tobytes() for v in serial}) == 8
    barrier = threading.Barrier(8)

    def job(i: int):
        barrier.wait()
        return [load_video(clips[i], sampling=sampling, index=i) for _ in range(3)]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(job, range(8)))
    for i, runs in enumerate(results):
        for v in runs:
            assert (v.total_frames, v.indices, v.fps) == (serial[i].total_frames, serial[i].indices, serial[i].fps)
            np.testing.assert_array_equal(v.frames, serial[i].frames)


# ---------------------------------------------------------------- packet count vs decoded count
@pytest.mark.parametrize("delta", [3, -3])
def test_a_packet_count_off_the_decoded_count_is_chosen_again(delta, monkeypatch):
    data = _clip()
    sampling = FrameSampling(fps=6.0)
    expected = load_video(data, sampling=sampling, sandbox=False)
    count_packets, decode_frames, wanted = video._count_packets, video._decode_frames, []

    def spy(data, fmt, indices, size):
        wanted.append(sorted(indices))
        return decode_frames(data, fmt, indices, size)

    monkeypatch.setattr(video, "_count_packets", lambda *args: count_packets(*args) + delta)
    monkeypatch.setattr(video, "_decode_frames", spy)
    v = load_video(data, sampling=sampling, sandbox=False)
    first = frame_indices(COUNT + delta, sampling.count(COUNT + delta, FPS))
    assert wanted == [first, list(expected.indices)] and first != list(expected.indices)  # chosen twice
    assert (v.total_frames, v.indices, v.fps, v.sample_fps) == (COUNT, expected.indices, FPS, expected.sample_fps)
    np.testing.assert_array_equal(v.frames, expected.frames)


@pytest.mark.parametrize("sandbox", [True, False])
def test_an_edit_list_that_drops_frames_gives_the_decoded_frames(sandbox):
    data = bytearray(_clip("libx264", "mp4"))
    at = data.find(b"elst") + 4
    struct.pack_into(">I", data, at + 8, 1250)  # play 1.25 s of the 2.5 s (movie timescale 1000)
    data = bytes(data)
    ref, _ = reference_frames(data)
    with av.open(io.BytesIO(data)) as container:
        packets = sum(1 for p in container.demux(video=0) if p.size)
    assert len(ref) < packets < COUNT + 1  # more packets than frames: the fallback's case
    v = load_video(data, sampling=FrameSampling(fps=6.0), sandbox=sandbox)
    assert v.total_frames == len(ref) and v.indices == tuple(frame_indices(len(ref), len(v.indices)))
    np.testing.assert_array_equal(v.frames, ref[list(v.indices)])
