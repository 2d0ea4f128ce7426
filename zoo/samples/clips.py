"""Encoding frames into a short video file with PyAV: the demo's sample clips, the tests' and the benchmark's."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any


def encode_video(target: str | Path | IO[bytes], frames: Iterable[Any], *, fps: int, codec: str = "mpeg4",
                 container: str = "mp4", codec_options: dict[str, str] | None = None,
                 container_options: dict[str, str] | None = None) -> None:
    """Encode ``frames`` ((H, W, 3) uint8 RGB arrays, one size; any iterable, so a long clip need not sit in memory)
    into ``target`` (a path, or a writable binary file). MJPEG gets full-range YUV, every other codec yuv420p."""
    import av
    import numpy as np

    with av.open(str(target) if isinstance(target, (str, Path)) else target, mode="w", format=container,
                 options=container_options or {}) as out:
        stream = None
        for array in frames:
            if stream is None:
                stream = out.add_stream(codec, rate=fps)
                stream.width, stream.height = array.shape[1], array.shape[0]
                stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
                stream.options = dict(codec_options or {})
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")))
        if stream is None:
            raise ValueError("a video needs at least one frame")
        out.mux(stream.encode())
