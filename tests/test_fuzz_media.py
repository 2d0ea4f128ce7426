"""Property-based fuzzing of the image and audio decoders with byte-level mutations of valid files.

Seeds are small valid files of every format the decoders take (PNG, JPEG, GIF, BMP, WEBP, TIFF, PPM, ICO, TGA;
WAV PCM16 / PCM24 / float, FLAC, OGG Vorbis / Opus, MP3), written with PIL and soundfile. Hypothesis
(``derandomize=True``, no example database) flips, sets, inserts, deletes and duplicates bytes, overwrites header
fields with boundary integers and truncates. The property: ``load_image`` / ``load_audio`` either return a result
within the documented limits (RGB, at most ``MAX_PIXELS``; finite float32 mono, at most ``max_seconds`` long, every
sample within ``MAX_AMPLITUDE``) or raise a :class:`zoo.errors.ZooError` naming the item; never any other
exception, never a hang, never unbounded memory.

The cases run in a child process (``python tests/test_fuzz_media.py image|audio N``) under ``RLIMIT_AS`` and a
per-case watchdog (``faulthandler``: a hang dumps its traceback and exits), so a bomb or a hang fails the test
instead of taking the machine down. Audio decodes in-process there (``sandbox=False``): the sandbox would turn
any exception into an InvalidInputError and hide the very bugs this looks for.
"""

from __future__ import annotations

import os
import sys
import time

import pytest

from tests.support import run_fuzz_child

#: Address space the fuzzing child may add to what it has mapped after its imports (torch maps ~3 GiB up front).
MEMORY_LIMIT = 3 * 1024**3
#: Seconds one case may take before the watchdog kills the child.
CASE_TIMEOUT = 20.0
#: Examples per seed file (about 15 image seeds, 7 audio seeds).
IMAGE_EXAMPLES = int(os.environ.get("ZOO_FUZZ_IMAGE_EXAMPLES", "120"))
AUDIO_EXAMPLES = int(os.environ.get("ZOO_FUZZ_AUDIO_EXAMPLES", "120"))
FUZZ_MAX_SECONDS = 30.0
#: Boundary values written over header fields.
INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
               0xFFFFFFFF)


# ---------------------------------------------------------------- seeds (child side)
def _image_seeds() -> dict[str, bytes]:
    import io

    import numpy as np
    from PIL import Image
    from skimage import data

    photo = Image.fromarray(data.astronaut()).resize((24, 16))
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))

    def enc(img: Image.Image, fmt: str, **kw) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kw)
        return buf.getvalue()

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90
    pal = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    frames = [photo.convert("P"), noise.resize((24, 16)).convert("P")]
    return {
        "png": enc(photo, "PNG"),
        "png16": enc(Image.fromarray(np.arange(96, dtype=np.uint16).reshape(8, 12) * 600), "PNG"),
        "png-palette-transparent": enc(pal, "PNG", transparency=0),
        "png-rgba": enc(photo.convert("RGBA"), "PNG"),
        "jpeg-exif": enc(photo, "JPEG", exif=exif, quality=80),
        "jpeg-progressive": enc(noise, "JPEG", progressive=True),
        "gif-animated": enc(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0),
        "bmp": enc(photo, "BMP"),
        "webp-lossy": enc(photo, "WEBP", quality=50),
        "webp-lossless": enc(noise.convert("RGBA"), "WEBP", lossless=True),
        "tiff-raw": enc(photo, "TIFF"),
        "tiff-lzw": enc(noise, "TIFF", compression="tiff_lzw"),
        "tiff-deflate-16bit": enc(Image.fromarray(np.arange(48, dtype=np.uint16).reshape(6, 8)), "TIFF",
                                  compression="tiff_adobe_deflate"),
        "ppm": enc(noise, "PPM"),
        "ico": enc(photo, "ICO", sizes=[(16, 16)]),
        "tga-rle": enc(photo, "TGA", compression="tga_rle"),
    }


def _audio_seeds() -> dict[str, bytes]:
    import io

    import numpy as np
    import soundfile as sf

    t = np.arange(1600) / 16000
    mono = (0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    stereo = np.stack([mono, -mono[::-1]], axis=1)

    def enc(x, fmt: str, subtype: str, rate: int = 16000) -> bytes | None:
        if fmt not in sf.available_formats() or subtype not in sf.available_subtypes(fmt):
            return None
        buf = io.BytesIO()
        sf.write(buf, x, rate, format=fmt, subtype=subtype)
        return buf.getvalue()

    seeds = {
        "wav-pcm16": enc(mono, "WAV", "PCM_16"),
        "wav-pcm24-stereo": enc(stereo, "WAV", "PCM_24"),
        "wav-float": enc(mono, "WAV", "FLOAT"),
        "flac": enc(stereo, "FLAC", "PCM_16"),
        "ogg-vorbis": enc(mono, "OGG", "VORBIS"),
        "ogg-opus": enc(np.tile(mono, 3), "OGG", "OPUS", 48000),
        "mp3": enc(np.tile(mono, 4), "MP3", "MPEG_LAYER_III"),
    }
    return {k: v for k, v in seeds.items() if v is not None}


# ---------------------------------------------------------------- mutations (child side)
def _mutations():
    from hypothesis import strategies as st

    pos = st.one_of(st.integers(0, 63), st.integers(0, 1 << 16))  # header-heavy, then anywhere
    op = st.one_of(
        st.tuples(st.just("flip"), pos, st.integers(0, 7)),
        st.tuples(st.just("set"), pos, st.integers(0, 255)),
        st.tuples(st.just("int"), pos, st.sampled_from(INTERESTING), st.sampled_from(["<", ">"]),
                  st.sampled_from([2, 4])),
        st.tuples(st.just("insert"), pos, st.binary(min_size=1, max_size=64)),
        st.tuples(st.just("delete"), pos, st.integers(1, 64)),
        st.tuples(st.just("dup"), pos, st.integers(1, 256), pos),
        st.tuples(st.just("truncate"), pos),
    )
    return st.lists(op, min_size=1, max_size=6)


def _apply(seed: bytes, ops: list) -> bytes:
    import struct

    data = bytearray(seed)
    for kind, where, *args in ops:
        p = where % (len(data) + 1)
        if kind == "flip" and p < len(data):
            data[p] ^= 1 << args[0]
        elif kind == "set" and p < len(data):
            data[p] = args[0]
        elif kind == "int":
            value, order, width = args
            field = struct.pack(order + ("H" if width == 2 else "I"), value & ((1 << (8 * width)) - 1))
            data[p:p + width] = field
        elif kind == "insert":
            data[p:p] = args[0]
        elif kind == "delete":
            del data[p:p + args[0]]
        elif kind == "dup":
            data[args[1] % (len(data) + 1):args[1] % (len(data) + 1)] = data[p:p + args[0]]
        elif kind == "truncate":
            del data[p:]
    return bytes(data)


# ---------------------------------------------------------------- properties (child side)
def _check_image(data: bytes) -> None:
    import numpy as np

    from zoo import images
    from zoo.errors import ZooError

    try:
        img = images.load_image(data, index=3)
    except ZooError as exc:
        assert getattr(exc, "index", 3) == 3 and str(exc).startswith("input[3]: "), exc
        return
    assert img.mode == "RGB", img.mode
    w, h = img.size
    assert 1 <= w * h <= images.MAX_PIXELS, img.size
    arr = np.asarray(img)
    assert arr.shape == (h, w, 3) and arr.dtype == np.uint8


_RATES: list[int] = []


def _check_audio(data: bytes) -> None:
    import numpy as np

    from zoo import audio
    from zoo.errors import ZooError

    _RATES.clear()
    try:
        y = audio.load_audio(data, target_rate=16000, index=3, max_seconds=FUZZ_MAX_SECONDS, sandbox=False)
    except ZooError as exc:
        assert getattr(exc, "index", 3) == 3 and str(exc).startswith("input[3]: "), exc
        return
    rate = _RATES[0] if _RATES else 16000
    assert audio.MIN_RATE <= rate <= audio.MAX_RATE, rate
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.ndim == 1, (type(y), y.dtype, y.shape)
    assert 0 < y.size <= FUZZ_MAX_SECONDS * rate, (y.size, rate)
    assert np.isfinite(y).all()
    assert float(np.abs(y).max()) <= audio.MAX_AMPLITUDE


def _property(seed: bytes, check, examples: int, counter: list):
    """The hypothesis test of one seed: every mutation of it must pass ``check`` within ``CASE_TIMEOUT``."""
    import faulthandler

    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(ops=_mutations())
    def case(ops):
        counter[0] += 1
        faulthandler.dump_traceback_later(CASE_TIMEOUT, exit=True)
        try:
            check(_apply(seed, ops))
        finally:
            faulthandler.cancel_dump_traceback_later()

    return case


def _fuzz(kind: str, examples: int) -> int:
    """Run every seed of ``kind``; print each seed's outcome; return the number of seeds that failed."""
    import traceback

    if kind == "audio":
        from zoo import audio

        def recording_resampler(rate, target):  # resampling is not what is fuzzed here: keep the decoded samples
            _RATES.append(rate)
            return lambda x: x

        audio._resampler = recording_resampler
        seeds, check = _audio_seeds(), _check_audio
    else:
        seeds, check = _image_seeds(), _check_image
    failed, counter = 0, [0]
    for name, seed in seeds.items():
        check(seed)  # the unmutated seed must decode
        start = time.monotonic()

        case = _property(seed, check, examples, counter)
        try:
            case()
        except Exception:  # noqa: BLE001 - report every seed, then fail
            failed += 1
            print(f"FAIL {kind}/{name} ({len(seed)} bytes):", flush=True)
            traceback.print_exc()
        print(f"seed {kind}/{name}: {time.monotonic() - start:.1f} s", flush=True)
    print(f"{kind}: {len(seeds)} seeds, {counter[0]} cases, {failed} failed", flush=True)
    return failed


# ---------------------------------------------------------------- the tests (parent side)
@pytest.mark.slow
def test_mutated_images_decode_within_limits_or_raise_typed_errors():
    run_fuzz_child(__file__, "image", IMAGE_EXAMPLES, timeout=300)


@pytest.mark.slow
def test_mutated_audio_decodes_within_limits_or_raises_typed_errors():
    run_fuzz_child(__file__, "audio", AUDIO_EXAMPLES, timeout=300)


if __name__ == "__main__":
    import resource

    if sys.argv[1] == "audio":
        import torch  # noqa: F401 - load_audio imports it; its libraries map gigabytes of address space up front

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with open("/proc/self/statm") as statm:  # total program size, in pages
        mapped = int(statm.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (mapped + MEMORY_LIMIT, mapped + MEMORY_LIMIT))
    sys.exit(1 if _fuzz(sys.argv[1], int(sys.argv[2])) else 0)
