"""Videos as the Qwen-VL backbones' own pipelines prepare them, before their video processors (``do_resize=False``).

The frames of a file are chosen by the decoder (``zoo.inputs.video``, the card's ``options.video`` sampling); a
list of frames is taken as given, up to the card's ``list_frames`` (picked evenly as the originals pick them).
Then each backbone resizes as its original does:

- Qwen3-VL-Embedding (``qwen3_video``): ``qwen_vl_utils.fetch_video`` as the embedder calls it. A file: the frames
  resized together (torchvision, bicubic, antialias) to ``smart_resize`` with factor 32 and 128..768 tokens a
  frame (``VIDEO_MIN_TOKEN_NUM``, ``VIDEO_MAX_TOKEN_NUM``, the frame budget ``total_pixels / T * 2`` from
  ``MODEL_SEQ_LEN`` = 128,000); metadata: the file's fps and the frames taken. A list of frames: each frame first
  resized as ``fetch_image`` does (qwen_vl_utils passes its factor 32 where a patch size is expected, so a grid of
  64 and 4..16384 "tokens" of 64x64), padded to an even count with the last frame, then resized together with the
  embedder's ``total_pixels`` for lists (7,864,320); metadata: fps 2.0 (qwen_vl_utils' ``sample_fps`` default)
  and frames 0..T-1. Values stay 0..255 in float32; the processor rescales and normalizes.
- VLM2Vec-V2 (``vlm2vec_video``): its copy of the Qwen2-VL image processor, which resizes every frame to the size
  ``vlm2vec_size`` gives for the first frame (factor 28, the card's pixel range), PIL bicubic.

``timestamps`` are the seconds Qwen3-VL writes before each pair of frames (transformers' ``_calculate_timestamps``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from zoo.adapters.vlm_sizes import fetch_size, vlm2vec_size
from zoo.errors import InvalidInputError
from zoo.inputs.frames import pick_evenly

#: qwen_vl_utils 0.0.14: tokens a video frame may take, its MODEL_SEQ_LEN default, FRAME_FACTOR, list sample_fps.
VIDEO_MIN_TOKEN_NUM, VIDEO_MAX_TOKEN_NUM, MODEL_SEQ_LEN, FRAME_FACTOR, LIST_FPS = 128, 768, 128000, 2, 2.0
#: qwen_vl_utils' fetch_image token range (IMAGE_MIN_TOKEN_NUM, IMAGE_MAX_TOKEN_NUM).
IMAGE_MIN_TOKEN_NUM, IMAGE_MAX_TOKEN_NUM = 4, 16384


def _listed(video: Any, opts: dict) -> np.ndarray:
    frames = video.frames
    return frames[pick_evenly(list(range(len(frames))), opts.get("list_frames"))]


def _resized(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    h, w = size
    return np.asarray(Image.fromarray(frame).resize((w, h), Image.Resampling.BICUBIC))


def qwen3_video(video: Any, factor: int, opts: dict, index: int) -> tuple[torch.Tensor, dict]:
    """(T, C, H, W) float32 frames and their metadata (fps, frames_indices, total_num_frames)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F  # noqa: N812

    try:
        if video.total_frames is None:  # a list of frames
            grid = 2 * factor
            frames = [_resized(f, fetch_size(f.shape[0], f.shape[1], grid, IMAGE_MIN_TOKEN_NUM * grid**2,
                                             IMAGE_MAX_TOKEN_NUM * grid**2)) for f in _listed(video, opts)]
            frames += frames[-1:] * (-len(frames) % FRAME_FACTOR)
            tensor = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
            total_pixels = float(opts.get("list_total_pixels", MODEL_SEQ_LEN * factor * factor * 0.9))
            meta = {"fps": LIST_FPS, "frames_indices": list(range(len(tensor))),
                    "total_num_frames": len(tensor) / LIST_FPS * LIST_FPS}
        else:
            tensor = torch.from_numpy(np.ascontiguousarray(video.frames)).permute(0, 3, 1, 2)
            total_pixels = MODEL_SEQ_LEN * factor * factor * 0.9
            meta = {"fps": video.fps, "frames_indices": list(video.indices), "total_num_frames": video.total_frames}
        n, _, height, width = tensor.shape
        min_pixels = VIDEO_MIN_TOKEN_NUM * factor * factor
        max_pixels = max(min(VIDEO_MAX_TOKEN_NUM * factor * factor, total_pixels / n * FRAME_FACTOR),
                         int(min_pixels * 1.05))
        size = fetch_size(height, width, factor, min_pixels, max_pixels)
    except ValueError as exc:
        raise InvalidInputError(f"video cannot be processed: {exc}", index=index) from exc
    tensor = F.resize(tensor, list(size), interpolation=InterpolationMode.BICUBIC, antialias=True).float()
    return tensor, meta


def vlm2vec_video(video: Any, factor: int, pixels: tuple[int, int], opts: dict) -> np.ndarray:
    """(T, H, W, 3) uint8 frames, all at the size of the first."""
    frames = video.frames if video.total_frames is not None else _listed(video, opts)
    size = vlm2vec_size(frames.shape[1], frames.shape[2], factor, *pixels)
    return np.stack([_resized(f, size) for f in frames])


def timestamps(indices: list[int], fps: float, merge: int) -> list[float]:
    """The time of each group of ``merge`` frames: the mean of its first and last frame's (the last repeated)."""
    indices = list(indices) + [indices[-1]] * (-len(indices) % merge)
    seconds = [i / fps for i in indices]
    return [(seconds[i] + seconds[i + merge - 1]) / 2 for i in range(0, len(seconds), merge)]
