"""How the gallery's media and thumbnails are made: the thumbnails of texts, sounds, 3D shapes and videos, and the
sample videos (a slow pan across a photo, encoded with PyAV, its middle frame the thumbnail)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: The sample videos: size (width, height), length and frame rate; small, so the gallery stays light.
VIDEO_SIZE = (160, 120)
VIDEO_SECONDS = 3
VIDEO_FPS = 8


def _text_thumb(text: str, path: Path, *, title: str = "") -> None:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (256, 256), (250, 250, 245))
    draw = ImageDraw.Draw(img)
    lines = ([title, ""] if title else []) + [ln[:38] for ln in text.splitlines()[:16]]
    draw.multiline_text((8, 8), "\n".join(lines), fill=(30, 30, 30), spacing=2)
    img.save(path)


def _waveform_thumb(audio_path: Path, path: Path, title: str) -> None:
    import soundfile as sf
    from PIL import Image, ImageDraw

    wave, _ = sf.read(str(audio_path), dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    img = Image.new("RGB", (256, 256), (240, 246, 255))
    draw = ImageDraw.Draw(img)
    cols = np.array_split(np.abs(wave), 240)
    peak = max(float(np.abs(wave).max()), 1e-6)
    for x, col in enumerate(cols):
        h = 100 * float(col.max() if len(col) else 0.0) / peak
        draw.line([(8 + x, 140 - h), (8 + x, 140 + h)], fill=(40, 90, 200))
    draw.text((8, 8), f"speech: {title}", fill=(20, 20, 20))
    img.save(path)


def _mesh_thumb(mesh, path: Path, title: str) -> None:
    """A shaded orthographic view (painter's algorithm): enough to recognise the shape at a glance."""
    from PIL import Image, ImageDraw

    verts = np.asarray(mesh.vertices, dtype=float)
    verts = verts - verts.mean(axis=0)
    a, b = np.radians(35), np.radians(-30)
    rot_x = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rot_z = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    v = verts @ rot_z.T @ rot_x.T
    scale = 100 / max(float(np.abs(v[:, [0, 2]]).max()), 1e-6)
    tri = v[np.asarray(mesh.faces)]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    light = np.abs(normals @ np.array([0.3, -0.8, 0.5]) / np.linalg.norm([0.3, -0.8, 0.5]))
    img = Image.new("RGB", (256, 256), (245, 245, 245))
    draw = ImageDraw.Draw(img)
    for i in np.argsort(tri[:, :, 1].mean(axis=1))[::-1]:  # far faces first (view along +y)
        pts = [(128 + scale * p[0], 138 - scale * p[2]) for p in tri[i]]
        shade = int(60 + 170 * light[i])
        draw.polygon(pts, fill=(shade, int(shade * 0.8), 90))
    draw.text((8, 8), f"3D: {title}", fill=(20, 20, 20))
    img.save(path)


def pan_frames(photo: Path, *, size: tuple[int, int] = VIDEO_SIZE, count: int = VIDEO_SECONDS * VIDEO_FPS):
    """``count`` frames (T, H, W, 3) uint8 of a window (two thirds of the photo's height, ``size``'s aspect)
    sliding from the photo's top left to its bottom right, each resized to ``size`` (width, height)."""
    from PIL import Image

    with Image.open(photo) as img:
        rgb = img.convert("RGB")
    w, h = size
    win_h = min(rgb.height * 2 / 3, rgb.width * h / w)
    win_w = win_h * w / h
    frames = []
    for k in range(count):
        t = k / max(count - 1, 1)
        x, y = t * (rgb.width - win_w), t * (rgb.height - win_h)
        frames.append(np.asarray(rgb.resize(size, Image.Resampling.BILINEAR, box=(x, y, x + win_w, y + win_h))))
    return np.stack(frames).astype(np.uint8)


def write_video(frames: np.ndarray, path: Path, *, fps: int = VIDEO_FPS) -> None:
    """Encode ``frames`` (T, H, W, 3) uint8 as an H.264 MP4 browsers play (MPEG-4 Part 2 where PyAV has no
    H.264 encoder), its index first so the browser starts playing before the whole file has arrived."""
    import av

    from zoo.samples.clips import encode_video

    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    options = {"crf": "28", "preset": "veryfast", "threads": "1"} if codec == "libx264" else {"g": "8"}
    encode_video(path, frames, fps=fps, codec=codec, codec_options=options,
                 container_options={"movflags": "+faststart"})


def _frame_thumb(frame: np.ndarray, path: Path, *, side: int = 320) -> None:
    """A frame (H, W, 3) uint8 as a PNG, at most ``side`` pixels on a side."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(frame))
    img.thumbnail((side, side))
    img.save(path)


def sample_video(photo: Path, path: Path, thumb: Path) -> None:
    """A sample video panning across ``photo`` at ``path`` (MP4), its middle frame at ``thumb`` (PNG)."""
    frames = pan_frames(photo)
    write_video(frames, path)
    _frame_thumb(frames[len(frames) // 2], thumb)


def _video_thumb(video: Path, path: Path) -> None:
    """The middle frame of an uploaded video as a PNG; decoded by the zoo's sandboxed loader (untrusted bytes)."""
    from zoo.inputs.video import FrameSampling, load_video

    frames = load_video(video, sampling=FrameSampling(rule="uniform", nframes=3)).frames
    _frame_thumb(frames[len(frames) // 2], path)
