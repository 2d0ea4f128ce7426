"""Which frames of a video a model sees: the sampling rules of the upstream pipelines, to the letter.

Sampling (``FrameSampling``), by default, follows ``qwen_vl_utils.smart_nframes`` and its frame choice to the
letter: with ``nframes`` that many (rounded to ``frame_factor``), otherwise ``total / video_fps * fps`` clamped to
``[min_frames, max_frames]`` and to the frame count, floored to ``frame_factor``; the frames taken are
``round(linspace(0, total - 1, n))`` computed as ``torch.linspace`` does in float32 (``frame_indices``). The
"uniform" rule is VLM2Vec's MMEB-V2 evaluation's (see ``FrameSampling``).

Standard library and numpy only: the rules run in the decoder worker (``zoo.inputs.video``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from zoo.errors import InvalidInputError


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
