"""Safe document input: PDF pages rendered at a DPI, refusals that name the item and the limit, and the sandbox."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.fixtures.clips import RED_PAGE, TEXT_PAGE, pdf_bytes
from zoo.errors import InputTooLargeError, InvalidInputError
from zoo.inputs import documents
from zoo.inputs.documents import is_pdf, load_page, page_count

LETTER = pdf_bytes((612, 792, TEXT_PAGE))
TWO_PAGES = pdf_bytes((612, 792, TEXT_PAGE), (612, 792, RED_PAGE))


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("sandbox", [True, False])
@pytest.mark.parametrize(("dpi", "size"), [(72, (612, 792)), (144, (1224, 1584)), (documents.DEFAULT_DPI,
                                                                                 (1224, 1584)), (100, (850, 1100))])
def test_a_page_renders_at_the_size_its_dpi_gives(dpi, size, sandbox, tmp_path):
    path = tmp_path / "letter.pdf"
    path.write_bytes(LETTER)
    for item in (LETTER, path, str(path)):
        image = load_page(item, dpi=dpi, sandbox=sandbox)
        assert image.mode == "RGB" and image.size == size, (item, dpi)
    a = np.asarray(image)
    s = dpi / 72  # the blue box spans x 72..272, y 72..172 pt from the bottom; PDF y grows upwards
    box = a[size[1] - int(172 * s) + 3:size[1] - int(72 * s) - 3, int(72 * s) + 3:int(272 * s) - 3]
    assert (box == (0, 0, 255)).all()
    assert (a[:int(60 * s)] == 255).all()  # the top margin is white: a white background, no alpha
    assert (a[size[1] - int(712 * s):size[1] - int(696 * s), int(72 * s):int(300 * s)] < 128).any()  # text


def test_sandboxed_and_in_process_renders_are_equal():
    a = np.asarray(load_page(TWO_PAGES, page=1, dpi=96, sandbox=True))
    b = np.asarray(load_page(TWO_PAGES, page=1, dpi=96, sandbox=False))
    assert a.shape == (1056, 816, 3) and np.array_equal(a, b)
    assert (a == (255, 0, 0)).all(axis=2).sum() > 100 * 100  # the red square, (100 pt * 96/72)^2 pixels


@pytest.mark.parametrize("sandbox", [True, False])
def test_pages_differ_and_are_counted(sandbox):
    first = np.asarray(load_page(TWO_PAGES, page=0, dpi=72, sandbox=sandbox))
    second = np.asarray(load_page(TWO_PAGES, page=1, dpi=72, sandbox=sandbox))
    assert first.shape == second.shape and not np.array_equal(first, second)
    assert (second[792 - 350, 350] == (255, 0, 0)).all() and (first[792 - 350, 350] == 255).all()
    assert page_count(TWO_PAGES, sandbox=sandbox) == 2 and page_count(LETTER, sandbox=sandbox) == 1


@pytest.mark.parametrize("sandbox", [True, False])
def test_a_missing_page_names_the_page_and_the_count(sandbox):
    with pytest.raises(InvalidInputError, match=r"^input\[3\]: PDF has 2 page\(s\); page 2 does not exist") as info:
        load_page(TWO_PAGES, page=2, index=3, sandbox=sandbox)
    assert type(info.value) is InvalidInputError and info.value.index == 3


@pytest.mark.parametrize("page", [-1, True, False, 1.0, "0", None])
def test_bad_page_arguments_are_refused(page):
    with pytest.raises(InvalidInputError, match=r"^input\[5\]: page must be a non-negative int") as info:
        load_page(LETTER, page=page, index=5)
    assert info.value.index == 5


@pytest.mark.parametrize("dpi", [0, 35.9, 600.5, -72, float("nan"), float("inf"), True, "144", None])
def test_dpi_outside_the_range_is_refused(dpi):
    with pytest.raises(InvalidInputError, match=r"^input\[2\]: dpi must be a number in 36\.\.600") as info:
        load_page(LETTER, dpi=dpi, index=2)
    assert info.value.index == 2
    assert load_page(LETTER, dpi=documents.MIN_DPI).size == (306, 396)  # the bounds themselves are fine


@pytest.mark.parametrize("sandbox", [True, False])
def test_a_file_that_is_not_a_pdf_is_refused_before_pdfium(sandbox, tmp_path, monkeypatch):
    path = tmp_path / "x.pdf"
    path.write_bytes(_png())
    assert is_pdf(path) and not is_pdf(_png()) and is_pdf(LETTER) and not is_pdf(tmp_path / "x.png")
    if not sandbox:  # PDFium is never asked to open it
        import pypdfium2

        monkeypatch.setattr(pypdfium2, "PdfDocument", None)
    for call in (lambda: load_page(path, index=4, sandbox=sandbox), lambda: page_count(path, index=4,
                                                                                        sandbox=sandbox)):
        with pytest.raises(InvalidInputError, match=r"^input\[4\]: not a PDF file \(starts with b'\\x89PNG"):
            call()
    with pytest.raises(InvalidInputError, match=r"^input\[4\]: not a PDF file"):
        load_page(b"  " + LETTER, index=4, sandbox=sandbox)  # leading junk is not skipped


@pytest.mark.parametrize("sandbox", [True, False])
@pytest.mark.parametrize("cut", [0.25, 0.5, 0.9])
def test_a_truncated_pdf_is_a_clean_error(cut, sandbox):
    data = TWO_PAGES[:int(len(TWO_PAGES) * cut)]
    for call in (lambda: load_page(data, index=1, sandbox=sandbox), lambda: page_count(data, index=1,
                                                                                        sandbox=sandbox)):
        with pytest.raises(InvalidInputError, match=r"^input\[1\]: cannot open PDF \(corrupt, truncated") as info:
            call()
        assert type(info.value) is InvalidInputError and info.value.index == 1
    with pytest.raises(InvalidInputError, match=r"^input\[1\]: cannot open PDF"):
        page_count(b"%PDF-1.4\n" + b"\x00garbage" * 100, index=1, sandbox=sandbox)
    assert load_page(LETTER, dpi=72, sandbox=sandbox).size == (612, 792)  # the next call works


@pytest.mark.parametrize("sandbox", [True, False])
def test_a_pdf_cut_in_its_trailer_is_repaired_as_readers_do(sandbox):
    data = TWO_PAGES[:-len(b"%%EOF\n")]  # every object is there; PDFium rebuilds what the end lacks
    assert page_count(data, sandbox=sandbox) == 2
    assert np.array_equal(np.asarray(load_page(data, page=1, dpi=72, sandbox=sandbox)),
                          np.asarray(load_page(TWO_PAGES, page=1, dpi=72, sandbox=sandbox)))


@pytest.mark.parametrize("sandbox", [True, False])
def test_a_huge_page_is_refused_before_rendering(sandbox, monkeypatch):
    import pypdfium2

    def no_render(*args, **kwargs):
        raise AssertionError("rendered")

    monkeypatch.setattr(pypdfium2.PdfPage, "render", no_render)  # in-process: proves nothing was rendered
    huge = pdf_bytes((612, 792, TEXT_PAGE), (20000, 20000, RED_PAGE))
    with pytest.raises(InputTooLargeError, match=r"^input\[6\]: PDF page is 20,000 x 20,000 pt, over the limit "
                                                 r"of 14,400 pt") as info:
        load_page(huge, page=1, dpi=36, index=6, sandbox=sandbox)
    assert info.value.limit == 14400 and info.value.index == 6
    assert page_count(huge, sandbox=sandbox) == 2  # counting does not need the size


@pytest.mark.parametrize("sandbox", [True, False])
def test_a_render_over_the_pixel_cap_is_refused(sandbox):
    square = pdf_bytes((1000, 1000, RED_PAGE))  # 1000 pt at 600 dpi: 8334 x 8334 = 69 megapixels
    with pytest.raises(InputTooLargeError, match=r"^input\[0\]: PDF page at 600 dpi is 8334x8334 = 69,455,556 "
                                                 r"pixels, over the limit of 40,000,000") as info:
        load_page(square, dpi=600, sandbox=sandbox)
    assert info.value.limit == documents.MAX_RENDER_PIXELS == 40_000_000
    assert load_page(square, dpi=72, sandbox=sandbox).size == (1000, 1000)
    assert load_page(LETTER, dpi=288, sandbox=sandbox).size == (2448, 3168)


def test_an_oversized_file_is_refused_before_reading(monkeypatch, tmp_path):
    path = tmp_path / "big.pdf"
    path.write_bytes(LETTER)
    monkeypatch.setattr(documents, "MAX_FILE_BYTES", 500)
    for item in (path, LETTER):
        for call in (load_page, page_count):
            with pytest.raises(InputTooLargeError, match=r"^input\[8\]: PDF (file|data) is .* over the limit of "
                                                         r"500") as info:
                call(item, index=8)
            assert info.value.limit == 500


@pytest.mark.parametrize("item", [12345, None, ["a.pdf"], Image.new("RGB", (4, 4))])
def test_items_that_are_not_paths_or_bytes_are_refused(item, tmp_path):
    for call in (load_page, page_count):
        with pytest.raises(InvalidInputError, match=r"^input\[9\]: expected a PDF \(path or bytes\)"):
            call(item, index=9)
    with pytest.raises(InvalidInputError, match=r"^input\[9\]: no such PDF file"):
        load_page(tmp_path / "missing.pdf", index=9)


@pytest.mark.parametrize("hook", ["abort", "exit", "hang"])
def test_a_crashing_or_hanging_decoder_is_contained(hook, monkeypatch):
    expected = np.asarray(load_page(LETTER, dpi=72))  # a worker is up
    monkeypatch.setattr(documents, "DECODE_TIMEOUT", 2.0)
    monkeypatch.setattr(documents, "_TEST_HOOK", hook)
    with pytest.raises(InvalidInputError, match=r"^input\[7\]: document decoder (crashed|took over)") as info:
        load_page(LETTER, dpi=72, index=7)
    assert info.value.index == 7
    monkeypatch.setattr(documents, "_TEST_HOOK", None)
    assert np.array_equal(np.asarray(load_page(LETTER, dpi=72)), expected)
    assert page_count(TWO_PAGES) == 2
