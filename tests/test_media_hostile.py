"""Hostile media inputs: special files and absurd paths, absurd audio amplitudes, and decoder crashes found by fuzzing.

Every refusal must be a typed zoo error naming the item, raised before anything reads a FIFO or a device.
"""

from __future__ import annotations

import io
import os
import threading

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from zoo import audio, images
from zoo.errors import InvalidInputError, ZooError

RATE = 16000


def _special_paths(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    link = tmp_path / "zero.wav"
    link.symlink_to("/dev/zero")
    return {"fifo": (fifo, "FIFO"), "/dev/zero": (os.path.join("/dev", "zero"), "device"),
            "symlink to /dev/zero": (link, "device"), "directory": (tmp_path, "directory"),
            "5,000-character path": ("/tmp/" + "x" * 4995, "cannot use")}


def _loaders():
    return {"image": lambda item: images.load_images([np.zeros((2, 2, 3), np.uint8), item]),
            "probe_image": lambda item: images.probe_image(item, index=1),
            "audio": lambda item: audio.load_audios([(np.zeros(10), RATE), item], target_rate=RATE),
            "audio in-process": lambda item: audio.load_audios([(np.zeros(10), RATE), item], target_rate=RATE,
                                                                 sandbox=False)}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("loader", list(_loaders()))
@pytest.mark.parametrize("case", ["fifo", "/dev/zero", "symlink to /dev/zero", "directory", "5,000-character path"])
@pytest.mark.parametrize("form", [str, os.fsencode, "pathlike"])
def test_special_files_and_absurd_paths_are_refused_by_name_before_reading(tmp_path, loader, case, form):
    path, words = _special_paths(tmp_path)[case]
    if form == "pathlike":
        item = type(tmp_path)(path)
    elif form is os.fsencode:  # bytes are data, never a path: the name is just a few bytes that decode to nothing
        item = os.fsencode(str(path))
    else:
        item = str(path)
    result: list = []

    def run():
        try:
            _loaders()[loader](item)
        except BaseException as exc:  # noqa: BLE001 - checked below
            result.append(exc)

    t = threading.Thread(target=run, daemon=True)  # a FIFO open/read would block forever: fail, do not hang
    t.start()
    t.join(30)
    if t.is_alive():  # unblock the reader so the thread ends
        if case == "fifo":
            with open(path, "wb"):
                pass
        pytest.fail(f"{loader} blocked on {case}")
    assert result, f"{loader} accepted {case}"
    exc = result[0]
    assert isinstance(exc, InvalidInputError), repr(exc)
    assert exc.index == 1 and str(exc).startswith("input[1]: "), exc
    if form is not os.fsencode:
        assert words in str(exc), exc
        assert str(path)[:40] in str(exc), exc  # the message names the path
        assert len(str(exc)) < 400  # ... cut short when it is absurd


def _float_wav(x: np.ndarray, fmt: str = "WAV", subtype: str = "FLOAT") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, RATE, format=fmt, subtype=subtype)
    return buf.getvalue()


@pytest.mark.parametrize("sandbox", [True, False])
@pytest.mark.parametrize("value", [1e30, -1e30, 3e38, 2e4])
def test_absurd_amplitudes_in_files_are_refused(value, sandbox):
    x = np.full(1600, 0.1, np.float32)
    x[100] = value
    with pytest.raises(InvalidInputError, match=r"^input\[2\]: .*magnitude") as info:
        audio.load_audios([_float_wav(x * 0), _float_wav(x * 0), _float_wav(x)], target_rate=RATE, sandbox=sandbox)
    assert info.value.index == 2
    stereo = np.stack([x, -x], axis=1)  # cancels out in the mixdown: still refused
    with pytest.raises(InvalidInputError, match="magnitude"):
        audio.load_audio(_float_wav(stereo), target_rate=RATE, sandbox=sandbox)


@pytest.mark.parametrize("value", [1e30, -1e30, 1e300, 2e4, np.float16(6e4)])
def test_absurd_amplitudes_in_waveforms_are_refused(value):
    import torch

    for dtype in (np.float32, np.float64):
        x = np.zeros(1600, dtype)
        with np.errstate(over="ignore"):
            x[7] = value
        for wave in (x, np.stack([x, -x]), torch.from_numpy(x)):
            with pytest.raises(InvalidInputError, match=r"^input\[1\]: waveform has .*(magnitude|infinite)") as e:
                audio.load_audios([(np.zeros(10), RATE), (wave, RATE)], target_rate=RATE)
            assert e.value.index == 1


def test_loud_but_sane_audio_is_accepted_and_stays_finite():
    x = np.full(1600, audio.MAX_AMPLITUDE, np.float32)
    y = audio.load_audio((x, RATE), target_rate=8000)
    assert np.isfinite(y).all()
    assert audio.load_audio(_float_wav(x * 0.5), target_rate=RATE).max() == pytest.approx(audio.MAX_AMPLITUDE / 2)
    pcm = np.full(1600, np.iinfo(np.int32).min, np.int32)
    assert audio.load_audio((pcm, RATE), target_rate=RATE).min() == -1.0


@pytest.mark.parametrize("rate", [16000.0, "16000", None, True, 0, -1, 10**20, np.float64(16000), 999, 384_001])
def test_bad_sample_rates_are_typed_errors(rate):
    with pytest.raises(InvalidInputError, match=r"^input\[1\]: sample rate") as info:
        audio.load_audios([(np.zeros(10), RATE), (np.zeros(100), rate)], target_rate=RATE)
    assert info.value.index == 1


@pytest.mark.parametrize("wave", [[[0.0, 0.1], [0.2]], np.zeros(5, np.complex64), np.array(["a", "b"]), "abc",
                                  None, {"x": 1}])
def test_non_numeric_waveforms_are_typed_errors(wave):
    with pytest.raises(InvalidInputError, match=r"^input\[1\]: ") as info:
        audio.load_audios([(np.zeros(10), RATE), (wave, RATE)], target_rate=RATE)
    assert info.value.index == 1


def test_low_precision_tensors_are_decoded():
    import torch

    x = torch.linspace(-0.5, 0.5, 1600)
    for dtype in (torch.bfloat16, torch.float16):
        y = audio.load_audio((x.to(dtype), RATE), target_rate=RATE)
        np.testing.assert_allclose(y, x.numpy(), atol=1e-2)


def _tiff(**kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8)).save(buf, format="TIFF", **kw)
    return buf.getvalue()


def _gif() -> bytes:
    frames = [Image.fromarray(np.full((16, 24), i * 40, np.uint8)).convert("P") for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    return buf.getvalue()


def _tiff_without_second_width() -> bytes:
    """A two-page TIFF whose second page lacks its ImageWidth tag: PIL raised TypeError('Missing dimensions')."""
    buf = io.BytesIO()
    pages = [Image.fromarray(np.full((4, 4), 9, np.uint8)), Image.fromarray(np.full((4, 4), 99, np.uint8))]
    pages[0].save(buf, format="TIFF", save_all=True, append_images=pages[1:])
    data = bytearray(buf.getvalue())
    second = int.from_bytes(data[4:8], "little")  # first IFD, then find the next one
    count = int.from_bytes(data[second:second + 2], "little")
    nxt = int.from_bytes(data[second + 2 + 12 * count:second + 6 + 12 * count], "little")
    n2 = int.from_bytes(data[nxt:nxt + 2], "little")
    for i in range(n2):
        entry = nxt + 2 + 12 * i
        if int.from_bytes(data[entry:entry + 2], "little") == 256:  # ImageWidth -> an unknown private tag
            data[entry:entry + 2] = (65000).to_bytes(2, "little")
    return bytes(data)


@pytest.mark.parametrize("name", ["tiff-page-without-width", "gif-cut-anywhere"])
def test_corrupt_files_found_by_fuzzing_are_typed_errors(name):
    """PIL raised TypeError (a TIFF page without dimensions) and IndexError (a GIF cut short) out of load_image."""
    gif = _gif()
    cases = [_tiff_without_second_width()] if name.startswith("tiff") else [gif[:n] for n in range(1, len(gif))]
    for data in cases:
        try:
            img = images.load_image(data, index=4)
        except ZooError as exc:
            assert isinstance(exc, InvalidInputError) and exc.index == 4, repr(exc)
        else:
            assert img.mode == "RGB" and img.size[0] * img.size[1] >= 1
