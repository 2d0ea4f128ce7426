"""Safe document input: pages of PDF files rendered with PDFium (pypdfium2) to RGB PIL images, with limits.

Accepted: a path (str or PathLike) or raw bytes of a PDF file. One call renders one page (``load_page``) or counts
the pages (``page_count``). The page is rendered on a white background, without alpha, with its annotations but
without interactive form fields (the form environment is never initialised, so no form scripts run).

Limits (every failure is an InvalidInputError / InputTooLargeError naming the item's index):

- the file size is checked before reading (``MAX_FILE_BYTES``);
- only bytes that start with the ``%PDF-`` signature reach PDFium (no leading junk, which some readers skip);
- a document that PDFium cannot open (corrupt, truncated, password-protected) is an InvalidInputError;
- the page count must be in ``1..MAX_PAGES``; the page asked for must exist (the message names both);
- ``page`` is a non-negative int (not a bool), ``dpi`` a number in ``MIN_DPI..MAX_DPI``;
- the page size, in points, is read before the page is loaded or rendered: a side over ``MAX_PAGE_POINTS`` (200 in)
  is refused, and so is a render whose ``ceil(width * s) * ceil(height * s)`` pixels (``s = dpi / 72``, in floating
  point as pypdfium2 sizes its bitmap) exceed ``MAX_PIXELS`` (the image decoder's cap, ``images.MAX_PIXELS``);
  the size is checked again on the loaded page, and the rendered bitmap must have that size.

Sandbox: PDFium is C code parsing untrusted bytes, so by default (``sandbox=True``) documents are opened in the
document worker of ``zoo.inputs.sandbox`` (``RLIMIT_AS`` = ``WORKER_MEMORY_BYTES``, ``DECODE_TIMEOUT`` seconds per
item); the page comes back as raw RGB bytes, nothing untrusted is pickled. A worker that crashes, hangs or runs out
of memory becomes an InvalidInputError for that item; a fresh one starts on the next call. ``sandbox=False``
renders in-process, for trusted files only.

Resolution (``DEFAULT_DPI`` = 144): no upstream evaluation documents a rasterisation DPI. VLM2Vec-V2 and
Qwen3-VL-Embedding are evaluated on the page images that the ViDoRe / VisRAG datasets ship, not on PDFs they render.
144 DPI puts a US-Letter page (612 x 792 pt) at 1224 x 1584, about 1.9 megapixels, near the largest image the
vision-language cards keep (1,843,200 pixels for Qwen3-VL-Embedding), so the model's own resize, not the renderer,
sets the resolution the model sees.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any

from zoo.errors import InputTooLargeError, InvalidInputError
from zoo.inputs.images import MAX_PIXELS
from zoo.inputs.limits import FILE_SUFFIXES, read_checked
from zoo.inputs.sandbox import sandbox

#: Largest PDF file the zoo reads.
MAX_FILE_BYTES = 256 * 1024 * 1024
#: Most pages a document may have.
MAX_PAGES = 10_000
#: Rendering resolution when none is given, in dots per inch (see the module docstring for why 144).
DEFAULT_DPI = 144.0
#: Accepted resolution range, in dots per inch.
MIN_DPI, MAX_DPI = 36.0, 600.0
#: Longest page side accepted, in points (1/72 in): 14400 pt = 200 in, the largest page the PDF
#: reference's implementation limits allow.
MAX_PAGE_POINTS = 14_400.0
#: Largest rendered page, in pixels (width x height): the image decoder's cap.
MAX_RENDER_PIXELS = MAX_PIXELS
#: Address-space limit of the decoder worker (Linux): a full-size render (120 MB of RGB) plus PDFium's caches.
WORKER_MEMORY_BYTES = 2 * 1024**3
#: Seconds one item may take in the worker (worker start included) before it is killed.
DECODE_TIMEOUT = 60.0
#: The bytes every accepted file starts with.
SIGNATURE = b"%PDF-"
_TEST_HOOK: str | None = None  # tests only: "abort", "exit" or "hang", carried out by the worker


# ---------------------------------------------------------------- rendering (in the worker by default)
def _open(data: bytes):
    """The document and its page count; errors carry no index (the caller adds it)."""
    import pypdfium2 as pdfium

    if not data.startswith(SIGNATURE):
        raise InvalidInputError(f"not a PDF file (starts with {data[:8]!r}, not {SIGNATURE!r})")
    try:
        doc = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:  # corrupt, truncated, or a password is needed
        raise InvalidInputError(f"cannot open PDF (corrupt, truncated or password-protected?): {exc}") from None
    count = len(doc)
    if not 1 <= count <= MAX_PAGES:
        doc.close()
        if count > MAX_PAGES:
            raise InputTooLargeError(f"PDF has {count:,} pages, over the limit of {MAX_PAGES:,}", limit=MAX_PAGES)
        raise InvalidInputError("PDF has no pages")
    return doc, count


def _render_size(width_pt: float, height_pt: float, dpi: float) -> tuple[int, int]:
    """The bitmap size PDFium's renderer makes for a page of that size, refused when over the limits."""
    if not (math.isfinite(width_pt) and math.isfinite(height_pt) and width_pt > 0 and height_pt > 0):
        raise InvalidInputError(f"PDF page size {width_pt:g} x {height_pt:g} pt is empty or not finite")
    if max(width_pt, height_pt) > MAX_PAGE_POINTS:
        raise InputTooLargeError(f"PDF page is {width_pt:,.0f} x {height_pt:,.0f} pt, over the limit of "
                                 f"{MAX_PAGE_POINTS:,.0f} pt on a side", limit=int(MAX_PAGE_POINTS))
    scale = dpi / 72  # as pypdfium2's render sizes its bitmap, float rounding included
    w, h = math.ceil(width_pt * scale), math.ceil(height_pt * scale)
    if w * h > MAX_RENDER_PIXELS:
        raise InputTooLargeError(f"PDF page at {dpi:g} dpi is {w}x{h} = {w * h:,} pixels, over the limit of "
                                 f"{MAX_RENDER_PIXELS:,}", limit=MAX_RENDER_PIXELS)
    return w, h


def _render(data: bytes, page: int | None, dpi: float):
    """(H, W, 3) uint8 RGB pixels of ``page`` (None: no pixels) and the page count; errors carry no index."""
    import numpy as np
    import pypdfium2 as pdfium

    doc, count = _open(data)
    try:
        if page is None:
            return None, count
        if page >= count:
            raise InvalidInputError(f"PDF has {count} page(s); page {page} does not exist (pages count from 0)")
        try:
            _render_size(*doc.get_page_size(page), dpi)  # from the page tree: the page is not loaded yet
            pdf_page = doc[page]
            try:
                size = _render_size(*pdf_page.get_size(), dpi)  # the loaded page's size is what render uses
                bitmap = pdf_page.render(scale=dpi / 72, rev_byteorder=True, fill_color=(255, 255, 255, 255))
                try:
                    pixels = np.array(bitmap.to_numpy()[:, :, :3], dtype=np.uint8, order="C")
                finally:
                    bitmap.close()
            finally:
                pdf_page.close()
        except pdfium.PdfiumError as exc:
            raise InvalidInputError(f"cannot render PDF page {page} (corrupt?): {exc}") from None
    finally:
        doc.close()
    if pixels.shape != (size[1], size[0], 3):
        raise InvalidInputError(f"PDF page {page} rendered at {pixels.shape[1]}x{pixels.shape[0]}, not "
                                f"{size[0]}x{size[1]} as its declared size gives")
    return pixels, count


def serve(head: dict, data: bytes) -> tuple[dict, list]:
    """The worker's side (``zoo.inputs.sandbox``): one page's pixels as raw RGB bytes, or the page count only."""
    pixels, count = _render(data, head["page"], float(head["dpi"]))
    if pixels is None:
        return {"page_count": count}, []
    return {"page_count": count, "width": pixels.shape[1], "height": pixels.shape[0]}, [pixels]


def _run(item: Any, page: int | None, dpi: float, index: int, use_sandbox: bool):
    data = read_checked(item, index, what="PDF", limit=MAX_FILE_BYTES)
    if use_sandbox:
        import numpy as np

        box = sandbox("document", WORKER_MEMORY_BYTES)
        meta, payload = box.run({"page": page, "dpi": dpi}, data, index=index, timeout=DECODE_TIMEOUT,
                                hook=_TEST_HOOK)
        if page is None:
            return None, int(meta["page_count"])
        return np.frombuffer(payload, dtype=np.uint8).reshape(meta["height"], meta["width"], 3), meta["page_count"]
    try:
        return _render(data, page, dpi)
    except InputTooLargeError as exc:
        raise InputTooLargeError(exc.args[0], index=index, limit=exc.limit) from None
    except InvalidInputError as exc:
        raise InvalidInputError(exc.args[0], index=index) from None


# ---------------------------------------------------------------- public API
def is_pdf(item: Any) -> bool:
    """True for bytes that start with ``%PDF-``, or for a path whose suffix is ``.pdf``.

    A path is judged by its name only (no I/O, as ``modality`` inference and dataset jobs do for every file kind);
    its content is checked against the signature when it is loaded.
    """
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item[:len(SIGNATURE)]) == SIGNATURE
    return isinstance(item, (str, os.PathLike)) and os.fspath(item).lower().endswith(FILE_SUFFIXES["document"])


def _check_item(item: Any, index: int) -> None:
    if not isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
        raise InvalidInputError(f"expected a PDF (path or bytes), got {type(item).__name__}", index=index)


def load_page(item: Any, *, page: int = 0, dpi: float = DEFAULT_DPI, index: int = 0, sandbox: bool = True):
    """Render one page of a PDF to an RGB PIL image, or raise an error naming ``index``.

    Args:
        item: a path or the bytes of a PDF file.
        page: which page, counting from 0.
        dpi: resolution, in ``MIN_DPI..MAX_DPI``; a page of ``w x h`` points gives
            ``ceil(w * (dpi / 72)) x ceil(h * (dpi / 72))`` pixels (in floating point: a US-Letter page at
            600 dpi is 5100 x 6601).
        index: the item's position in the caller's list, used in error messages.
        sandbox: render in the worker process (default); False renders in-process, for trusted files only.
    """
    from PIL import Image

    _check_item(item, index)
    if isinstance(page, bool) or not isinstance(page, numbers.Integral) or page < 0:
        raise InvalidInputError(f"page must be a non-negative int (pages count from 0), got {page!r}", index=index)
    if isinstance(dpi, bool) or not isinstance(dpi, numbers.Real) or not MIN_DPI <= dpi <= MAX_DPI:
        raise InvalidInputError(f"dpi must be a number in {MIN_DPI:g}..{MAX_DPI:g}, got {dpi!r}", index=index)
    pixels, _ = _run(item, int(page), float(dpi), index, sandbox)
    return Image.fromarray(pixels)  # (H, W, 3) uint8: RGB


def page_count(item: Any, *, index: int = 0, sandbox: bool = True) -> int:
    """How many pages a PDF has (``1..MAX_PAGES``), or an error naming ``index``; nothing is rendered."""
    _check_item(item, index)
    return _run(item, None, DEFAULT_DPI, index, sandbox)[1]
