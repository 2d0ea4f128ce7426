"""Safe image input: every accepted form, every mode to RGB, and refusals that name the item."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

import zoo
from zoo import images
from zoo.images import load_image, load_images


def _png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


@pytest.fixture()
def photo() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())  # 512x512 RGB, a real photo


def test_all_input_forms_give_the_same_rgb_pixels(tmp_path, photo):
    path = tmp_path / "a.png"
    photo.save(path)
    arr = np.asarray(photo)
    forms = [photo, str(path), path, path.read_bytes(), arr, torch.from_numpy(arr).permute(2, 0, 1),
             torch.from_numpy(arr).permute(2, 0, 1).float() / 255]
    for form in forms:
        out = load_image(form)
        assert out.mode == "RGB" and out.size == (512, 512)
        assert np.abs(np.asarray(out).astype(int) - arr).max() <= 1, type(form)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "CMYK", "P", "1", "I;16", "I", "F"])
def test_every_mode_becomes_rgb(mode, photo):
    """Modes PNG cannot hold (CMYK, F) are passed as PIL images."""
    img = photo.convert(mode) if mode not in ("I;16", "I", "F") else photo.convert("L").convert(mode)
    out = load_image(_png_bytes(img) if mode not in ("CMYK", "F", "I") else img)
    assert out.mode == "RGB" and out.size == photo.size


def test_palette_with_transparency_goes_through_rgba():
    img = Image.new("P", (4, 4), 0)
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    img.info["transparency"] = 1
    out = load_image(_png_bytes(img, transparency=1))
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 0, 0)


def test_sixteen_bit_is_scaled_not_clipped():
    arr = np.full((8, 8), 32768, dtype=np.uint16)  # half of full scale
    out = load_image(_png_bytes(Image.fromarray(arr)))
    assert out.getpixel((0, 0)) == (128, 128, 128)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 20, 20))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    out = load_image(_jpeg_bytes(img, exif=exif.tobytes(), quality=95))
    assert out.size == (20, 40)
    top = np.asarray(out)[2, 10]
    assert top[2] > 200 and top[0] < 60  # the blue half is now on top


def test_first_frame_of_an_animation():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    out = load_image(buf.getvalue())
    assert out.getpixel((0, 0))[0] > 200


def test_extreme_shapes_work():
    assert load_image(np.zeros((1, 1, 3), np.uint8)).size == (1, 1)
    assert load_image(_png_bytes(Image.new("RGB", (10000, 1)))).size == (10000, 1)
    assert load_image(_png_bytes(Image.new("RGB", (1, 10000)))).size == (1, 10000)


def _bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring a huge image, with almost no data behind it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    data = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + data


def test_decompression_bomb_refused_before_decoding():
    with pytest.raises(zoo.InputTooLargeError, match=r"input\[2\].*pixel") as info:
        load_images([np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 3), np.uint8), _bomb_png(100_000, 100_000)])
    assert info.value.limit == images.MAX_PIXELS
    with pytest.raises(zoo.InputTooLargeError):
        load_image(_bomb_png(8000, 5001))  # just over the project's own limit, under PIL's


def test_truncated_fake_and_empty_files_are_invalid(tmp_path, photo):
    jpeg = _jpeg_bytes(photo)
    for bad in (jpeg[: len(jpeg) // 2], b"GIF89a" + b"\0" * 20, b"not an image at all", b"%!PS-Adobe-3.0 EPSF-3.0\n"):
        with pytest.raises(zoo.InvalidInputError, match=r"input\[0\]"):
            load_image(bad)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(zoo.InvalidInputError, match="empty"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(zoo.InvalidInputError, match="no such image file"):
        load_image(tmp_path / "missing.png")


def test_oversized_file_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 1000)
    p = tmp_path / "big.png"
    p.write_bytes(b"\0" * 1001)
    with pytest.raises(zoo.InputTooLargeError, match="1,000"):
        load_image(p)


@pytest.mark.parametrize(
    "bad",
    [None, 3.5, np.zeros((4, 4, 2), np.uint8), np.zeros((0, 4, 3), np.uint8), np.full((2, 2, 3), np.nan),
     np.full((2, 2, 3), 2.0), np.zeros((2, 2, 3), np.int64), torch.zeros(5, 4, 4)],
)
def test_bad_objects_name_their_index(bad):
    with pytest.raises(zoo.InvalidInputError, match=r"input\[1\]"):
        load_images([np.zeros((2, 2, 3), np.uint8), bad])
