"""Safe image input: any of the forms users pass, decoded with limits, as RGB PIL images.

Accepted: a path (str or PathLike), raw bytes, a PIL image, an HxW or HxWxC uint8 array
(C = 1, 3 or 4), a CxHxW torch tensor (uint8, or float in [0, 1]).

Safety rules (for untrusted files):

- a path must name a regular file (FIFOs, devices such as ``/dev/zero``, directories and unusable paths are
  InvalidInputErrors naming the item, before anything is read; the open descriptor is checked again);
- the file size is checked before reading (``MAX_FILE_BYTES``);
- the pixel count is read from the header and checked before any pixel is decoded
  (``MAX_PIXELS``, the project's own limit, well under PIL's decompression-bomb threshold);
- truncated files are errors: ``ImageFile.LOAD_TRUNCATED_IMAGES`` is never switched on;
- only raster formats PIL decodes natively are opened (no EPS, which would call Ghostscript);
- every failure is an InvalidInputError / InputTooLargeError naming the item's index, including the
  IndexError / KeyError / TypeError ... that PIL's parsers raise on corrupt files (found by fuzzing).

Normalization: EXIF orientation is applied, the first frame of an animation is used, and
every mode becomes RGB (palette transparency goes through RGBA; 16-bit and 32-bit integer
images are scaled to 8 bits instead of being clipped).
"""

from __future__ import annotations

import io
import os
from typing import Any

from zoo.errors import InputTooLargeError, InvalidInputError
from zoo.inputs.limits import read_checked

#: Largest image (width x height) the zoo decodes: 40 megapixels, e.g. 8000 x 5000.
MAX_PIXELS = 40_000_000
#: Largest encoded image file the zoo reads.
MAX_FILE_BYTES = 64 * 1024 * 1024
#: Formats the zoo lets PIL open. EPS/PS (Ghostscript) and other exotic plug-ins are refused.
ALLOWED_FORMATS = ("PNG", "JPEG", "MPO", "GIF", "BMP", "TIFF", "WEBP", "PPM", "ICO", "TGA")


def _open(data: bytes | os.PathLike | str, index: int):
    from PIL import Image, UnidentifiedImageError

    Image.init()  # register every plug-in, so the allow-list below can name them
    formats = [f for f in ALLOWED_FORMATS if f in Image.OPEN]
    try:
        img = Image.open(data if isinstance(data, (str, os.PathLike)) else io.BytesIO(data), formats=formats)
    except UnidentifiedImageError as exc:
        raise InvalidInputError(f"not an image in a supported format ({', '.join(ALLOWED_FORMATS)})",
                                index=index) from exc
    except Image.DecompressionBombError as exc:
        raise InputTooLargeError(f"image is over the pixel limit of {MAX_PIXELS:,}", index=index,
                                 limit=MAX_PIXELS) from exc
    except Exception as exc:  # noqa: BLE001 - PIL's parsers raise KeyError, TypeError, struct.error... on bad headers
        raise InvalidInputError(f"cannot read image: {type(exc).__name__}: {exc}", index=index) from exc
    return img


def _check_size(img, index: int) -> None:
    w, h = img.size
    if w < 1 or h < 1:
        raise InvalidInputError(f"image has no pixels ({w}x{h})", index=index)
    if w * h > MAX_PIXELS:
        raise InputTooLargeError(f"image is {w}x{h} = {w * h:,} pixels, over the limit of {MAX_PIXELS:,}",
                                 index=index, limit=MAX_PIXELS)


def to_rgb(img, background: tuple[int, int, int] | None = None):
    """Convert any PIL mode to RGB, scaling wide integer modes instead of clipping them.

    ``background``: an RGBA image is pasted onto this colour through its alpha channel (as
    qwen_vl_utils' ``to_rgb`` does with white) instead of having its alpha dropped.
    """
    from PIL import Image

    if img.mode == "RGB":
        return img
    if background is not None and img.mode == "RGBA":
        out = Image.new("RGB", img.size, tuple(background))
        out.paste(img, mask=img.split()[3])
        return out
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")
    if img.mode == "F":
        import numpy as np

        arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
        lo, hi = float(arr.min()), float(arr.max())
        arr = ((arr - lo) / (hi - lo or 1.0) * 255.0 + 0.5).astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


def _from_file_like(data: bytes | os.PathLike | str, index: int, background: tuple[int, int, int] | None = None,
                    *, rgb: bool = True):
    from PIL import ImageOps

    img = _open(data, index)
    try:
        _check_size(img, index)
        if img.tell() != 0:
            img.seek(0)
        img.load()  # decode now, inside the error handling
        out = ImageOps.exif_transpose(img)
        if rgb:
            out = to_rgb(out, background)
        return out.copy() if out is img else out  # the file handle closes below
    except InvalidInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - fuzzing finds IndexError, TypeError, KeyError... from corrupt files
        raise InvalidInputError(f"cannot decode image (truncated or corrupt?): {type(exc).__name__}: {exc}",
                                index=index) from exc
    finally:
        img.close()


def _from_array(arr: Any, index: int, background: tuple[int, int, int] | None = None):
    import numpy as np
    from PIL import Image

    a = np.asarray(arr)
    if a.dtype == np.bool_:  # a binary mask: white where True
        a = a.astype(np.uint8) * 255
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise InvalidInputError(f"an image array must be HxW or HxWxC with C in (1, 3, 4), got shape {a.shape}",
                                index=index)
    if a.shape[0] * a.shape[1] > MAX_PIXELS:
        raise InputTooLargeError(f"image array of {a.shape[0]}x{a.shape[1]} is over the limit of {MAX_PIXELS:,}",
                                 index=index, limit=MAX_PIXELS)
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise InvalidInputError(f"image array has no pixels (shape {a.shape})", index=index)
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating):
            if not np.isfinite(a).all():
                raise InvalidInputError("image array has NaN or infinite values", index=index)
            if a.min() < 0 or a.max() > 1:
                raise InvalidInputError("float image arrays must hold values in [0, 1]", index=index)
            a = (a * 255.0 + 0.5).astype(np.uint8)
        else:
            raise InvalidInputError(f"image arrays must be uint8 or float in [0, 1], not {a.dtype}", index=index)
    return to_rgb(Image.fromarray(np.ascontiguousarray(a)), background)


def _encoded_source(item: Any, index: int) -> bytes:
    """The bytes of a path or bytes item, checked (regular file, existence, size) before anything is read."""
    return read_checked(item, index, what="image", limit=MAX_FILE_BYTES)


def probe_image(item: str | os.PathLike | bytes, *, index: int = 0) -> tuple[int, int]:
    """Check an encoded image from its header alone (size, format, pixel count); return (width, height).

    Nothing is decoded, so a pipeline can validate every file up front and decode later; a
    file corrupt past its header is still caught by :func:`load_image`.
    """
    img = _open(_encoded_source(item, index), index)
    try:
        _check_size(img, index)
        return img.size
    finally:
        img.close()


def decode_image(item: str | os.PathLike | bytes, *, index: int = 0):
    """Decode an encoded image within the limits, upright (EXIF orientation applied), in its own mode.

    For pipelines that decode ahead of the model (a server's thread pool): :func:`load_image` of the
    result gives the same RGB image as :func:`load_image` of ``item``, the model's colour rules
    (RGBA compositing) included, since they have not been applied yet.
    """
    return _from_file_like(_encoded_source(item, index), index, rgb=False)


def load_image(item: Any, *, index: int = 0, rgba_background: tuple[int, int, int] | None = None):
    """Turn one user item into an RGB PIL image, or raise an error naming ``index``.

    ``rgba_background``: paste RGBA images onto this colour instead of dropping their alpha
    (see :func:`to_rgb`); arrays and tensors with four channels count as RGBA.
    """
    from PIL import Image, ImageOps

    if isinstance(item, Image.Image):
        _check_size(item, index)
        return to_rgb(ImageOps.exif_transpose(item), rgba_background)
    if isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
        return _from_file_like(_encoded_source(item, index), index, rgba_background)
    if type(item).__module__ == "torch" and hasattr(item, "detach"):
        t = item.detach().cpu()
        if t.ndim != 3 or t.shape[0] not in (1, 3, 4):
            raise InvalidInputError(f"an image tensor must be CxHxW with C in (1, 3, 4), got {tuple(t.shape)}",
                                    index=index)
        return _from_array(t.permute(1, 2, 0).numpy(), index, rgba_background)
    if hasattr(item, "__array_interface__") or hasattr(item, "__array__"):
        return _from_array(item, index, rgba_background)
    raise InvalidInputError(
        f"expected an image (path, bytes, PIL image, HxWxC array or CxHxW tensor), got {type(item).__name__}",
        index=index,
    )


def load_images(items: list) -> list:
    """Load every item up front, so a bad one fails before any model work is done."""
    return [load_image(item, index=i) for i, item in enumerate(items)]
