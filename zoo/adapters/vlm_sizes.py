"""Target frame and image sizes of the Qwen-VL pipelines: VLM2Vec's copy of the Qwen2-VL image processor and
``qwen_vl_utils.smart_resize``, to the letter (their differences are in each function's docstring)."""

from __future__ import annotations

import math


def vlm2vec_size(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Target (height, width) as VLM2Vec's own copy of the Qwen2-VL image processor computes it.

    transformers' ``smart_resize`` raises for an aspect ratio over 200 and clamps the scaled-down
    sides to at least ``factor``; VLM2Vec's copy (src/model/vlm_backbone/qwen2_vl) instead makes
    an image with a side under ``factor`` or a ratio over 200 square (both sides the longer one)
    and has no clamp. Both round to multiples of ``factor``, then floor into ``max_pixels`` or
    ceil up to ``min_pixels``; for ordinary images the two agree.
    """
    if height < factor or width < factor or max(height, width) / min(height, width) > 200:
        height = width = max(factor, height, width)
    h = round(height / factor) * factor
    w = round(width / factor) * factor
    h, w = _within_budget(height, width, h, w, factor, min_pixels, max_pixels)
    return h, w


def _within_budget(height: int, width: int, h: int, w: int, factor: int, min_pixels: int,
                   max_pixels: int) -> tuple[int, int]:
    """The pixel-budget step both upstream ``smart_resize`` copies share: rounded sides ``h, w`` of a
    ``height x width`` image scaled down (floor) over ``max_pixels`` or up (ceil) under ``min_pixels``."""
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        return math.floor(height / beta / factor) * factor, math.floor(width / beta / factor) * factor
    if h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        return math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h, w


def fetch_size(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Target (height, width) as ``qwen_vl_utils.smart_resize`` (Qwen3-VL's) computes it, to the letter.

    Over an aspect ratio of 200 it raises; the first rounding is clamped to at least ``factor``,
    the scaled-down sides are not (an extreme strip can then floor to zero, which upstream's
    resize fails on: raised here as ValueError).
    """
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio {max(height, width) / min(height, width):.0f} is over 200")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    h, w = _within_budget(height, width, h, w, factor, min_pixels, max_pixels)
    if h < 1 or w < 1:
        raise ValueError(f"a {width}x{height} image scales to {w}x{h} pixels under max_pixels {max_pixels}")
    return h, w
