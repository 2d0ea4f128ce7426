"""Property-based fuzzing of the video and PDF decoders with byte-level mutations of real small files.

Seeds are made at test time (``tests.fixtures.clips``): an MP4 (mpeg4), a WebM (libvpx-vp9), an MKV (libx264) and
an AVI (mjpeg) of a pan across a photo, and a two-page PDF. Hypothesis (``derandomize=True``, no example database)
flips, sets, inserts, deletes and duplicates bytes, truncates, overwrites fields with boundary integers or PDF
numbers with boundary numbers, and splices in the bytes at the same offsets of a donor file (same container, other
frame size, length and rate; a PDF of another page size and count); positions favour the first bytes and the
known structure (MP4 boxes, Matroska elements, AVI chunks, PDF keys). The property: ``load_video`` returns a
well-formed ``Video`` ((T, H, W, 3) uint8 with T >= 1, ``len(indices) == T``, indices increasing within
``[0, total_frames)``, every size within the limits), ``page_count`` a count in ``1..MAX_PAGES`` and ``load_page``
an RGB image of the size the DPI gives for its page, or each raises ``InvalidInputError`` / ``InputTooLargeError``
naming the index passed (``input[<index>]: ...``); never another exception, never a hang. After the fuzzing, the
unmutated files still decode to exactly what they gave before.

In-process decoding (``sandbox=False``: the sandbox would turn any exception into an InvalidInputError and hide the
very bugs this looks for) runs in a child process (``python tests/test_fuzz_decoders.py video|pdf N``) under an
``RLIMIT_AS`` soft limit and a per-case watchdog (``faulthandler``), so a crash, a bomb or a hang fails the test
instead of taking pytest down. Fewer examples go through the sandbox's workers, with ``DECODE_TIMEOUT`` made small.
"""

from __future__ import annotations

import functools
import math
import os
import re
import sys
import time
from collections import Counter

import pytest

from tests.support import run_fuzz_child

#: Address space the fuzzing child may add to what it has mapped after its imports (its soft limit; the hard limit
#: is left as it was).
MEMORY_LIMIT = 4 * 1024**3
#: Seconds one case may take in the child before the watchdog kills it.
CASE_TIMEOUT = 20.0
#: DECODE_TIMEOUT of the sandboxed examples: a hang becomes a typed error in seconds, not minutes.
SANDBOX_TIMEOUT = 10.0
#: Examples per video seed (4 seeds), for the PDF seed, and per seed through the sandbox.
VIDEO_EXAMPLES = int(os.environ.get("ZOO_FUZZ_VIDEO_EXAMPLES", "500"))
PDF_EXAMPLES = int(os.environ.get("ZOO_FUZZ_PDF_EXAMPLES", "1000"))
SANDBOX_EXAMPLES = int(os.environ.get("ZOO_FUZZ_SANDBOX_EXAMPLES", "60"))
#: Boundary values written over binary fields, and over the numbers of a PDF.
INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
               0xFFFFFFFF, 0x7FFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF)
NUMBERS = (b"0", b"-1", b"1", b"2", b"3", b"0.001", b"-0.0", b"14401", b"99999", b"2147483648", b"4294967296",
           b"18446744073709551616", b"1e308", b"nan", b"")
#: Where the structure is: MP4 boxes, Matroska element ids, AVI chunks, PDF keys and sections.
MARKERS = (b"ftyp", b"moov", b"mvhd", b"trak", b"tkhd", b"mdhd", b"stsd", b"avcC", b"esds", b"stts", b"stss",
           b"stsc", b"stsz", b"stco", b"mdat", b"\x1a\x45\xdf\xa3", b"\x18\x53\x80\x67", b"\x15\x49\xa9\x66",
           b"\x16\x54\xae\x6b", b"\x2a\xd7\xb1", b"\x44\x89", b"\x23\xe3\x83", b"\x63\xa2", b"\x1f\x43\xb6\x75",
           b"\x1c\x53\xbb\x6b", b"RIFF", b"avih", b"strh", b"strf", b"LIST", b"movi", b"idx1", b"00dc",
           b"/Count", b"/Kids", b"/MediaBox", b"/Length", b"/Contents", b"/Root", b"/Size", b"obj", b"stream",
           b"xref", b"trailer", b"startxref")
#: Video seeds: name -> (codec, container). The clips are 10 frames at 5 fps; the donors 6 frames at 3 fps.
VIDEOS = {"mp4-mpeg4": ("mpeg4", "mp4"), "webm-vp9": ("libvpx-vp9", "webm"), "mkv-x264": ("libx264", "matroska"),
          "avi-mjpeg": ("mjpeg", "avi")}
DPIS = (36.0, 50.5, 72.0)


# ---------------------------------------------------------------- seeds
@functools.cache
def _video_seed(name: str) -> tuple[bytes, bytes]:
    """(the clip, its donor) for a ``VIDEOS`` name."""
    from tests.fixtures.clips import pan_frames, write_clip

    codec, container = VIDEOS[name]
    clip = write_clip(None, pan_frames(10, size=(48, 32)), fps=5, codec=codec, container=container)
    donor = write_clip(None, pan_frames(6, size=(64, 48), photo="coffee"), fps=3, codec=codec, container=container)
    return clip, donor


@functools.cache
def _pdf_seed() -> tuple[bytes, bytes]:
    """(a two-page PDF, a donor of three pages of other sizes)."""
    from tests.fixtures.clips import RED_PAGE, TEXT_PAGE, pdf_bytes

    return (pdf_bytes((612, 792, TEXT_PAGE), (612, 792, RED_PAGE)),
            pdf_bytes((200, 100, RED_PAGE), (1000, 50, TEXT_PAGE), (30, 40, RED_PAGE)))


def _samplings():
    from zoo.inputs.video import FrameSampling

    return (FrameSampling(), FrameSampling(fps=100.0), FrameSampling(nframes=2),
            FrameSampling(rule="uniform", keep=4, nframes=3))


# ---------------------------------------------------------------- mutations
def _mutations(seed: bytes):
    """Lists of 1..6 edits; positions: the first bytes, anywhere, or near a structure marker of ``seed``."""
    from hypothesis import strategies as st

    anchors = sorted({m.start() for marker in MARKERS for m in re.finditer(re.escape(marker), seed)})[:200]
    pos = st.one_of(st.integers(0, 63), st.integers(0, 1 << 16),
                    st.builds(lambda a, d: max(0, a + d), st.sampled_from(anchors or [0]), st.integers(-8, 32)))
    op = st.one_of(
        st.tuples(st.just("flip"), pos, st.integers(0, 7)),
        st.tuples(st.just("set"), pos, st.integers(0, 255)),
        st.tuples(st.just("int"), pos, st.sampled_from(INTERESTING), st.sampled_from(["<", ">"]),
                  st.sampled_from([1, 2, 4, 8])),
        st.tuples(st.just("insert"), pos, st.binary(min_size=1, max_size=64)),
        st.tuples(st.just("delete"), pos, st.integers(1, 64)),
        st.tuples(st.just("dup"), pos, st.integers(1, 256), pos),
        st.tuples(st.just("truncate"), pos),
        st.tuples(st.just("splice"), pos, st.integers(1, 256)),
        st.tuples(st.just("number"), pos, st.sampled_from(NUMBERS)),
    )
    return st.lists(op, min_size=1, max_size=6)


_NUMBER = re.compile(rb"[-+]?\d+(?:\.\d*)?")


def _apply(seed: bytes, donor: bytes, ops: list) -> bytes:
    data = bytearray(seed)
    for kind, where, *args in ops:
        p = where % (len(data) + 1)
        if kind == "flip" and p < len(data):
            data[p] ^= 1 << args[0]
        elif kind == "set" and p < len(data):
            data[p] = args[0]
        elif kind == "int":
            value, order, width = args
            data[p:p + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little" if order == "<" else "big")
        elif kind == "insert":
            data[p:p] = args[0]
        elif kind == "delete":
            del data[p:p + args[0]]
        elif kind == "dup":
            q = args[1] % (len(data) + 1)
            data[q:q] = data[p:p + args[0]]
        elif kind == "truncate":
            del data[p:]
        elif kind == "splice":  # the donor's bytes at the same offsets: its header fields, sizes, tables
            q = where % (len(donor) + 1)
            data[q:q + args[0]] = donor[q:q + args[0]]
        elif kind == "number" and (m := _NUMBER.search(data, p)):
            data[m.start():m.end()] = args[0]
    return bytes(data)


# ---------------------------------------------------------------- the contract
def _check_refusal(exc: BaseException, index: int) -> None:
    from zoo.errors import InputTooLargeError, InvalidInputError

    assert type(exc) in (InvalidInputError, InputTooLargeError), f"{type(exc).__name__}: {exc}"
    assert exc.index == index and str(exc).startswith(f"input[{index}]: ") and len(str(exc)) > len(
        f"input[{index}]: "), (exc.index, str(exc))


def _check_video(data: bytes, *, index: int, sampling, sandbox: bool) -> str:
    """``load_video`` of ``data``: "ok" for a well-formed Video, "refused" for a typed error naming ``index``."""
    import numpy as np

    from zoo.errors import InvalidInputError
    from zoo.inputs import video

    try:
        v = video.load_video(data, sampling=sampling, index=index, sandbox=sandbox)
    except InvalidInputError as exc:
        _check_refusal(exc, index)
        return "refused"
    frames = v.frames
    assert isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4, (type(frames), frames)
    t, h, w, c = frames.shape
    assert t >= 1 and c == 3, frames.shape
    assert 1 <= w <= video.MAX_FRAME_SIDE and 1 <= h <= video.MAX_FRAME_SIDE and w * h <= video.MAX_FRAME_PIXELS
    assert frames.nbytes <= video.MAX_SAMPLED_BYTES
    assert isinstance(v.total_frames, int) and 1 <= v.total_frames <= video.MAX_FRAMES, v.total_frames
    assert len(v.indices) == t and all(isinstance(i, int) for i in v.indices), (v.indices, t)
    assert v.indices[0] >= 0 and v.indices[-1] < v.total_frames, (v.indices, v.total_frames)
    assert all(a < b for a, b in zip(v.indices, v.indices[1:], strict=False)), v.indices
    assert isinstance(v.fps, float) and 0 < v.fps <= video.MAX_FPS, v.fps
    assert math.isclose(v.sample_fps, t / v.total_frames * v.fps), (v.sample_fps, t, v.total_frames, v.fps)
    return "ok"


def _check_pdf(data: bytes, *, index: int, page: int, dpi: float, sandbox: bool) -> str:
    """``page_count`` and ``load_page`` of ``data``: "ok" when the page renders (at the size the DPI gives for its
    page size; in-process, that size is read with pypdfium2), "refused" for a typed error naming ``index``."""
    import numpy as np
    from PIL import Image

    from zoo.errors import InvalidInputError
    from zoo.inputs import documents

    try:
        count = documents.page_count(data, index=index, sandbox=sandbox)
    except InvalidInputError as exc:
        _check_refusal(exc, index)
        count = None
    else:
        assert type(count) is int and 1 <= count <= documents.MAX_PAGES, count
    try:
        image = documents.load_page(data, page=page, dpi=dpi, index=index, sandbox=sandbox)
    except InvalidInputError as exc:
        _check_refusal(exc, index)
        return "refused"
    assert count is not None and page < count, (count, page)  # the same bytes open the same way each time
    assert isinstance(image, Image.Image) and image.mode == "RGB", image
    w, h = image.size
    assert 1 <= w * h <= documents.MAX_RENDER_PIXELS, image.size
    scale = dpi / 72
    assert (w - 1) / scale < documents.MAX_PAGE_POINTS and (h - 1) / scale < documents.MAX_PAGE_POINTS, image.size
    pixels = np.asarray(image)
    assert pixels.shape == (h, w, 3) and pixels.dtype == np.uint8, (pixels.shape, pixels.dtype)
    if not sandbox:  # PDFium runs here anyway: the page's own size gives the bitmap's
        import pypdfium2 as pdfium

        doc = pdfium.PdfDocument(data)
        try:
            pdf_page = doc[page]
            width_pt, height_pt = pdf_page.get_size()
            pdf_page.close()
        finally:
            doc.close()
        assert (w, h) == (math.ceil(width_pt * scale), math.ceil(height_pt * scale)), ((w, h), width_pt, height_pt)
    return "ok"


# ---------------------------------------------------------------- the fuzzing loop
def _property(seed: bytes, donor: bytes, check, params, examples: int, counts: Counter, watchdog: bool,
              shrink: bool):
    """The hypothesis test of one seed: every mutation of it, with drawn ``params``, must pass ``check``."""
    import faulthandler

    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.target, Phase.shrink] if shrink else [])

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None, print_blob=True,
              phases=phases, suppress_health_check=list(HealthCheck))
    @given(ops=_mutations(seed), index=st.integers(0, 10**6), params=params)
    def case(ops, index, params):
        if watchdog:
            faulthandler.dump_traceback_later(CASE_TIMEOUT, exit=True)
        try:
            data = _apply(seed, donor, ops)
            outcome = check(data, index=index, **params)
            counts[outcome if data != seed else "unchanged"] += 1  # an edit that undid itself tells nothing
        finally:
            if watchdog:
                faulthandler.cancel_dump_traceback_later()

    return case


def _video_params():
    from hypothesis import strategies as st

    return st.fixed_dictionaries({"sampling": st.sampled_from(_samplings())})


def _pdf_params():
    from hypothesis import strategies as st

    return st.fixed_dictionaries({"page": st.integers(0, 2), "dpi": st.sampled_from(DPIS)})


def _video_result(data: bytes, sampling, sandbox: bool) -> tuple:
    from zoo.inputs import video

    v = video.load_video(data, sampling=sampling, sandbox=sandbox)
    return v.frames, (v.fps, v.total_frames, v.indices, v.sample_fps)


def _pdf_result(data: bytes, sandbox: bool) -> tuple:
    import numpy as np

    from zoo.inputs import documents

    return (documents.page_count(data, sandbox=sandbox),
            *(np.asarray(documents.load_page(data, page=p, dpi=dpi, sandbox=sandbox)) for p in (0, 1) for dpi in
              DPIS))


def _same(a: tuple, b: tuple) -> bool:
    import numpy as np

    return len(a) == len(b) and all(np.array_equal(x, y) if hasattr(x, "shape") else x == y
                                    for x, y in zip(a, b, strict=True))


def _baselines(kind: str, sandbox: bool) -> dict:
    """What the unmutated seeds give: seed name -> ((sampling ->) result); the video ones checked against a plain
    PyAV decoding of every frame."""
    import numpy as np

    from tests.fixtures.clips import reference_frames

    if kind == "pdf":
        result = _pdf_result(_pdf_seed()[0], sandbox)
        sizes = [(math.ceil(612 * dpi / 72), math.ceil(792 * dpi / 72)) for dpi in DPIS]
        assert result[0] == 2 and [im.shape[1::-1] for im in result[1:]] == sizes * 2, result
        assert not np.array_equal(result[1], result[4])  # the pages differ: a wrong page shows
        return {"pdf-2-pages": result}
    out = {}
    for name in VIDEOS:
        clip = _video_seed(name)[0]
        ref, fps = reference_frames(clip)
        out[name] = {s: _video_result(clip, s, sandbox) for s in _samplings()}
        for frames, (got_fps, total, indices, _) in out[name].values():
            assert (got_fps, total) == (fps, len(ref)) == (5.0, 10), (name, got_fps, total)
            assert np.array_equal(frames, ref[list(indices)]), name
    return out


def _still_decodes(kind: str, sandbox: bool, baselines: dict) -> None:
    """The unmutated files give exactly what they gave before the fuzzing."""
    if kind == "pdf":
        assert _same(_pdf_result(_pdf_seed()[0], sandbox), baselines["pdf-2-pages"])
        return
    for name, results in baselines.items():
        clip = _video_seed(name)[0]
        for sampling, expected in results.items():
            assert _same(_video_result(clip, sampling, sandbox), expected), (name, sampling)


def _fuzz(kind: str, examples: int, sandbox: bool = False, watchdog: bool = False, shrink: bool = True) -> int:
    """Fuzz every seed of ``kind`` ("video" or "pdf"); print each seed's outcome; return how many seeds failed.

    A seed fails when a case breaks the contract; the run fails too when all its cases are refused or all decoded
    (the mutations would then not test what they should) or when the unmutated files no longer decode as before.
    ``shrink=False`` reports the first failing case as it was generated (the tests of the tests: faster)."""
    import traceback

    if kind == "pdf":
        seeds, check, params = {"pdf-2-pages": _pdf_seed()}, _check_pdf, _pdf_params()
    else:
        seeds, check, params = {name: _video_seed(name) for name in VIDEOS}, _check_video, _video_params()
    check = functools.partial(check, sandbox=sandbox)
    failed, total = 0, Counter()
    try:
        baselines = _baselines(kind, sandbox)
    except Exception:  # noqa: BLE001 - report, then fail
        print(f"FAIL {kind}: the unmutated seeds do not decode as expected:", flush=True)
        traceback.print_exc(file=sys.stdout)
        return len(seeds)
    for name, (seed, donor) in seeds.items():
        counts, start = Counter(), time.monotonic()
        try:
            _property(seed, donor, check, params, examples, counts, watchdog, shrink)()
        except Exception:  # noqa: BLE001 - report every seed, then fail
            failed += 1
            print(f"FAIL {kind}/{name} ({len(seed)} bytes):", flush=True)
            traceback.print_exc(file=sys.stdout)
        total += counts
        print(f"seed {kind}/{name}: {dict(counts)}, {time.monotonic() - start:.1f} s", flush=True)
    if not failed and not (total["ok"] and total["refused"]):  # (a failed seed stopped at its first failure)
        failed += 1
        print(f"FAIL {kind}: one-sided outcomes {dict(total)}", flush=True)
    try:
        _still_decodes(kind, sandbox, baselines)
    except Exception:  # noqa: BLE001
        failed += 1
        print(f"FAIL {kind}: after the fuzzing, the unmutated files decode differently:", flush=True)
        traceback.print_exc(file=sys.stdout)
    print(f"{kind} (sandbox={sandbox}): {len(seeds)} seeds, {sum(total.values())} cases {dict(total)}, "
          f"{failed} failed", flush=True)
    return failed


# ---------------------------------------------------------------- the tests
@pytest.mark.slow
def test_mutated_videos_decode_in_process_or_raise_typed_errors():
    run_fuzz_child(__file__, "video", VIDEO_EXAMPLES, timeout=300)


@pytest.mark.slow
def test_mutated_pdfs_render_in_process_or_raise_typed_errors():
    run_fuzz_child(__file__, "pdf", PDF_EXAMPLES, timeout=300)


@pytest.mark.parametrize("kind", ["video", "pdf"])
def test_mutated_files_through_the_sandbox_are_typed_errors_or_valid_and_the_worker_survives(kind, monkeypatch):
    from zoo.inputs import documents, video
    from zoo.inputs.sandbox import sandbox

    module = video if kind == "video" else documents
    monkeypatch.setattr(module, "DECODE_TIMEOUT", SANDBOX_TIMEOUT)
    assert _fuzz(kind, SANDBOX_EXAMPLES, sandbox=True) == 0  # the unmutated files decode as before, in the worker
    box = sandbox(kind if kind == "video" else "document", module.WORKER_MEMORY_BYTES)
    assert box.proc is not None and box.proc.poll() is None  # the worker that decoded them is alive


@pytest.mark.parametrize(("breakage", "error"), [("untyped error", ValueError), ("other zoo error", "IntegrityError"),
                                                ("no frames", AssertionError),
                                                ("indices out of order", AssertionError),
                                                ("index past the end", AssertionError),
                                                ("float frames", AssertionError)])
def test_the_video_property_fails_when_the_decoder_breaks_the_contract(breakage, error, monkeypatch, capsys):
    """Each way of breaking the contract on a file other than the seeds is caught by the check, and fails the
    fuzzing of the seeds whose mutations reach it, for that reason (not for one-sided outcomes or the seeds)."""
    import numpy as np

    from zoo.errors import IntegrityError
    from zoo.inputs import video

    decode, seeds = video._decode, {_video_seed(name)[0] for name in VIDEOS}

    def broken(data, sampling, max_seconds):
        frames, meta = decode(data, sampling, max_seconds)
        if data in seeds:
            return frames, meta
        if breakage == "untyped error":
            raise ValueError("a raw error escapes")
        if breakage == "other zoo error":
            raise IntegrityError("not an input error")
        if breakage == "no frames":
            return frames[:0], {**meta, "indices": []}
        if breakage == "indices out of order":
            return frames, {**meta, "indices": meta["indices"][::-1]}
        if breakage == "index past the end":
            return frames, {**meta, "indices": [*meta["indices"][:-1], meta["total_frames"]]}
        return frames.astype(np.float32), meta

    monkeypatch.setattr(video, "_decode", broken)
    error = IntegrityError if error == "IntegrityError" else error
    with pytest.raises(error):  # the donor: a valid clip that is not a seed
        _check_video(_video_seed("mp4-mpeg4")[1], index=3, sampling=_samplings()[0], sandbox=False)
    capsys.readouterr()
    failed = _fuzz("video", 60, shrink=False)
    out = capsys.readouterr().out
    assert failed >= 1 and out.count("FAIL video/") == failed, out  # the seeds whose mutations decoded, at least
    assert len(re.findall(rf"^([\w.]+\.)?{error.__name__}: ", out, re.M)) == failed, out
    assert "FAIL video:" not in out, out


@pytest.mark.parametrize(("breakage", "message"), [("refuses every mutated file", "FAIL video: one-sided outcomes"),
                                                  ("is poisoned by a mutated file", "FAIL video: after the fuzzing")])
def test_the_fuzzing_fails_when_the_decoder(breakage, message, monkeypatch, capsys):
    """A decoder that refuses whatever it was not shown before keeps the contract but leaves nothing tested; one that
    a mutated file leaves in a bad state decodes the good files differently afterwards. Both fail the run."""
    from zoo.errors import InvalidInputError
    from zoo.inputs import video

    decode, seeds, poisoned = video._decode, {_video_seed(name)[0] for name in VIDEOS}, []

    def broken(data, sampling, max_seconds):
        if data in seeds:
            frames, meta = decode(data, sampling, max_seconds)
            return (frames ^ 1 if poisoned else frames), meta
        if breakage == "refuses every mutated file":
            raise InvalidInputError("refused")
        poisoned.append(True)
        return decode(data, sampling, max_seconds)

    monkeypatch.setattr(video, "_decode", broken)
    assert _fuzz("video", 15, shrink=False) == 1
    out = capsys.readouterr().out
    assert message in out and "FAIL video/" not in out, out


@pytest.mark.parametrize(("breakage", "error"), [("untyped error", ValueError), ("wrong index", AssertionError),
                                                ("wrong page size", AssertionError), ("no pages", AssertionError),
                                                ("pages not counted", AssertionError)])
def test_the_pdf_property_fails_when_the_renderer_breaks_the_contract(breakage, error, monkeypatch, capsys):
    from zoo.inputs import documents

    render, run, seed = documents._render, documents._run, _pdf_seed()[0]

    def broken(data, page, dpi):
        pixels, count = render(data, page, dpi)
        if data == seed:
            return pixels, count
        if breakage == "untyped error":
            raise ValueError("a raw error escapes")
        if breakage == "wrong page size":
            return (pixels if pixels is None else pixels[1:]), count
        if breakage == "no pages":
            return pixels, 0
        return pixels, (count + documents.MAX_PAGES if pixels is None else count)

    def wrong_index(item, page, dpi, index, use_sandbox):
        return run(item, page, dpi, index if item == seed else index + 1, use_sandbox)

    if breakage == "wrong index":
        monkeypatch.setattr(documents, "_run", wrong_index)
    else:
        monkeypatch.setattr(documents, "_render", broken)
    with pytest.raises(error):  # the donor: a valid PDF that is not the seed; its page 5 does not exist
        _check_pdf(_pdf_seed()[1], index=3, page=5 if breakage == "wrong index" else 0, dpi=36.0, sandbox=False)
    capsys.readouterr()
    assert _fuzz("pdf", 60, shrink=False) == 1
    out = capsys.readouterr().out
    assert "FAIL pdf/" in out and re.search(rf"^{error.__name__}: ", out, re.M) and "FAIL pdf:" not in out, out


if __name__ == "__main__":
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with open("/proc/self/statm") as statm:  # total program size, in pages
        mapped = int(statm.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (mapped + MEMORY_LIMIT, resource.getrlimit(resource.RLIMIT_AS)[1]))
    sys.exit(1 if _fuzz(sys.argv[1], int(sys.argv[2]), watchdog=True) else 0)
