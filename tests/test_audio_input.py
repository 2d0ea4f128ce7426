"""Safe audio input: formats, mixdown, resampling, tuple layouts, refusals that name the item, and the sandbox."""

from __future__ import annotations

import io
import math
import struct

import numpy as np
import pytest
import soundfile as sf
import torch

from zoo import audio
from zoo.audio import load_audio, load_audios
from zoo.errors import InputTooLargeError, InvalidInputError

RATE = 16000


def _signal(seconds: float = 1.0, rate: int = RATE, channels: int = 1) -> np.ndarray:
    """A speech-like test signal: a gliding tone with harmonics, (samples, channels), different per channel."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 150 + 100 * t / seconds
    phase = 2 * np.pi * np.cumsum(f0) / rate
    cols = [sum(0.3 / k * np.sin(k * phase + c) for k in (1, 2, 3)) for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


def _encode(x: np.ndarray, rate: int = RATE, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def _wav(rate: int = RATE, channels: int = 1, data: bytes = b"\0" * 200, declared: int | None = None) -> bytes:
    """A hand-crafted 16-bit PCM WAV whose header may lie about the data size."""
    align = 2 * channels
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * align, align, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data"
    body += struct.pack("<I", len(data) if declared is None else declared) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


@pytest.mark.parametrize(("fmt", "subtype"), [("WAV", "PCM_16"), ("WAV", "FLOAT"), ("FLAC", "PCM_16"),
                                              ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
@pytest.mark.parametrize("sandbox", [True, False])
def test_formats_decode_to_the_right_length_and_rate(fmt, subtype, sandbox, tmp_path):
    if fmt not in sf.available_formats() or subtype not in sf.available_subtypes(fmt):
        pytest.skip(f"this libsndfile cannot write {fmt}/{subtype}")
    x = _signal(1.0)[:, 0]
    data = _encode(x, fmt=fmt, subtype=subtype)
    path = tmp_path / f"a.{fmt.lower()}"
    path.write_bytes(data)
    for form in (data, path, str(path)):
        y = load_audio(form, target_rate=RATE, sandbox=sandbox)
        assert y.dtype == np.float32 and y.shape == (RATE,), (fmt, type(form))
        if fmt in ("WAV", "FLAC"):
            np.testing.assert_allclose(y, x, atol=1e-4)
        else:  # lossy: same waveform up to codec error
            assert _corr(y, x) > 0.9, fmt
    y8 = load_audio(data, target_rate=8000, sandbox=sandbox)
    assert y8.shape == (8000,) and np.isfinite(y8).all()


def test_stereo_mixdown_is_the_channel_mean():
    x = _signal(0.5, channels=2)
    assert np.abs(x[:, 0] - x[:, 1]).max() > 0.1  # the channels really differ
    y = load_audio(_encode(x, subtype="FLOAT"), target_rate=RATE)
    np.testing.assert_allclose(y, x.mean(axis=1), atol=1e-6)


@pytest.mark.parametrize("rate", [8000, 48000, 44100])
def test_other_rates_resample_to_the_target_length_and_keep_pitch(rate):
    n = int(0.75 * rate)
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)).astype(np.float32)
    y = load_audio(_encode(tone, rate, subtype="FLOAT"), target_rate=RATE)
    assert y.shape == (math.ceil(n * RATE / rate),) and np.isfinite(y).all()
    peak_hz = np.argmax(np.abs(np.fft.rfft(y))) * RATE / len(y)
    assert abs(peak_hz - 440) < 5
    again = load_audio((tone, rate), target_rate=RATE)  # deterministic, and the same path for tuples
    np.testing.assert_array_equal(again, load_audio((tone, rate), target_rate=RATE))
    np.testing.assert_allclose(again, y, atol=1e-6)


def test_silence_gives_zeros_of_the_right_length():
    for channels in (1, 2):
        y = load_audio(_encode(np.zeros((12345, channels), np.float32)), target_rate=RATE)
        assert y.shape == (12345,) and not y.any()
    y = load_audio(_encode(np.zeros(8000, np.float32), 8000), target_rate=RATE)
    assert y.shape == (RATE,) and np.abs(y).max() == 0


def test_tuple_inputs_in_both_layouts():
    x = _signal(0.25, channels=2)  # (samples, channels)
    mean = x.mean(axis=1)
    for wave in (x, x.T, torch.from_numpy(x.T.copy()), torch.from_numpy(x)):
        np.testing.assert_allclose(load_audio((wave, RATE), target_rate=RATE), mean, atol=1e-7)
    np.testing.assert_allclose(load_audio((mean, RATE), target_rate=RATE), mean)
    pcm = np.array([0, 16384, -32768], np.int16)
    np.testing.assert_allclose(load_audio((pcm, RATE), target_rate=RATE), [0.0, 0.5, -1.0])
    assert load_audio((x.T, 8000), target_rate=RATE).shape == (2 * len(x),)


def _header_only() -> bytes:
    return _encode(np.zeros((0, 1), np.float32))


def _nan_wav() -> bytes:
    x = _signal(0.1)[:, 0]
    x[100] = np.nan
    return _encode(x, subtype="FLOAT")


def _inf_wav() -> bytes:
    x = _signal(0.1, channels=2)
    x[5, 1] = np.inf
    return _encode(x, subtype="FLOAT")


BAD = {
    "zero bytes": (b"", InvalidInputError, "empty"),
    "header only": (_header_only(), InvalidInputError, r"no samples \(header only"),
    "garbage": (bytes(range(256)) * 8, InvalidInputError, "not a WAV"),
    "garbage after a RIFF tag": (b"RIFF\x10\0\0\0WAVE" + b"\xab" * 500, InvalidInputError, "cannot read"),
    "billions of frames": (_wav(8000, declared=0xFFFFFFF0), InputTooLargeError, "over the limit"),
    "billions of frames, stereo": (_wav(48000, 2, declared=0x7FFFFFF0), InputTooLargeError, "over the limit"),
    "sample rate 0": (_wav(0), InvalidInputError, "sample rate 0"),
    "sample rate 500": (_wav(500), InvalidInputError, "outside"),
    "NaN samples": (_nan_wav(), InvalidInputError, "NaN"),
    "inf samples": (_inf_wav(), InvalidInputError, "NaN or infinite"),
    "AIFF is not accepted": (_encode(_signal(0.1), fmt="AIFF"), InvalidInputError, "not a WAV"),
    "truncated FLAC": (_encode(_signal(0.5), fmt="FLAC")[:60], InvalidInputError, ""),
}


@pytest.mark.parametrize("sandbox", [True, False])
@pytest.mark.parametrize("name", list(BAD))
def test_bad_files_raise_errors_naming_the_item(name, sandbox):
    data, cls, words = BAD[name]
    good = _encode(_signal(0.1))
    with pytest.raises(cls, match=r"^input\[2\]: .*" + words) as info:
        load_audios([good, good, data, good], target_rate=RATE, sandbox=sandbox)
    assert type(info.value) is cls and info.value.index == 2
    assert load_audio(good, target_rate=RATE, sandbox=sandbox).shape == (1600,)  # still works afterwards


def test_bad_paths_and_tuples_name_the_item(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    cases = [(str(empty), InvalidInputError), (tmp_path / "missing.wav", InvalidInputError),
             ((np.array([0.0, np.nan]), RATE), InvalidInputError), ((np.zeros(10), 0), InvalidInputError),
             ((np.zeros((40, 40, 2)), RATE), InvalidInputError), ((np.zeros(0), RATE), InvalidInputError),
             ((np.zeros(RATE * 3), RATE), InputTooLargeError), (12345, InvalidInputError)]
    for item, cls in cases:
        with pytest.raises(cls, match=r"^input\[1\]: ") as info:
            load_audios([(np.zeros(10), RATE), item], target_rate=RATE, max_seconds=2.0)
        assert type(info.value) is cls and info.value.index == 1, item


def test_over_long_audio_is_refused_from_the_header(monkeypatch):
    data = _encode(_signal(3.0))
    with pytest.raises(InputTooLargeError, match=r"input\[0\]: audio is 3.0 s long, over the limit of 2 s"):
        load_audio(data, target_rate=RATE, max_seconds=2.0)
    monkeypatch.setattr(audio, "MAX_SECONDS", 1.0)
    with pytest.raises(InputTooLargeError, match=r"input\[4\]: .*limit of 1 s") as info:
        load_audio(data, target_rate=RATE, index=4, sandbox=False)
    assert info.value.limit == 1
    assert load_audio(data, target_rate=RATE, max_seconds=5.0).shape == (3 * RATE,)


def test_oversized_file_is_refused_before_reading(monkeypatch, tmp_path):
    data = _encode(_signal(0.5))
    path = tmp_path / "big.wav"
    path.write_bytes(data)
    monkeypatch.setattr(audio, "MAX_FILE_BYTES", 1000)
    for item in (path, data):
        with pytest.raises(InputTooLargeError, match=r"input\[1\]: audio (file|data) is") as info:
            load_audios([_wav(), item], target_rate=RATE)
        assert info.value.limit == 1000


@pytest.mark.parametrize("hook", ["abort", "exit", "hang"])
def test_a_crashing_or_hanging_decoder_is_contained(hook, monkeypatch):
    good = _encode(_signal(0.1))
    assert load_audio(good, target_rate=RATE).shape == (1600,)  # a worker is up
    monkeypatch.setattr(audio, "DECODE_TIMEOUT", 2.0)
    monkeypatch.setattr(audio, "_TEST_HOOK", hook)
    with pytest.raises(InvalidInputError, match=r"^input\[7\]: audio decoder (crashed|took over)"):
        load_audio(good, target_rate=RATE, index=7)
    monkeypatch.setattr(audio, "_TEST_HOOK", None)
    np.testing.assert_allclose(load_audio(good, target_rate=RATE), _signal(0.1)[:, 0], atol=1e-4)


def test_fifty_files_through_the_sandbox(tmp_path):
    paths, expected = [], []
    for i in range(50):
        x = _signal(0.5 + 0.01 * i, rate=8000 if i % 2 else RATE, channels=1 + i % 2)
        paths.append(tmp_path / f"{i}.wav")
        paths[-1].write_bytes(_encode(x, 8000 if i % 2 else RATE, subtype="FLOAT"))
        expected.append(load_audio((x, 8000 if i % 2 else RATE), target_rate=RATE))
    out = load_audios(paths, target_rate=RATE)
    assert len(out) == 50
    for y, e in zip(out, expected, strict=True):
        assert y.dtype == np.float32 and y.shape == e.shape
        np.testing.assert_allclose(y, e, atol=1e-6)
