"""Safe audio input: files, bytes or ``(waveform, sample_rate)`` tuples, decoded with limits to float32 mono.

Accepted: a path (str or PathLike) or raw bytes holding WAV, FLAC, OGG (Vorbis/Opus) or MP3 (whatever of these
the bundled libsndfile decodes), or a ``(waveform, sample_rate)`` tuple of a numpy array / torch tensor. A 2-D
waveform's *smaller* axis is its channel axis, so ``(channels, samples)`` and ``(samples, channels)`` both work
(a square array is read as ``(channels, samples)``). Integer waveforms are scaled to [-1, 1) by their full scale.

Limits (every failure is an InvalidInputError / InputTooLargeError naming the item's index):

- the file size is checked before reading (``MAX_FILE_BYTES``);
- only WAV/FLAC/OGG/MP3 signatures reach libsndfile, and its detected format must be one of ``ALLOWED_FORMATS``;
- the duration is checked from the header (frames / sample rate, ``max_seconds``, default ``MAX_SECONDS``) before
  any sample is decoded; for WAV the RIFF ``data`` chunk's declared size is checked too, since libsndfile
  silently clamps a lying size (e.g. billions of frames) to the file's length;
- the sample rate must be in ``MIN_RATE..MAX_RATE``, channels in ``1..MAX_CHANNELS``, frames > 0 (a header-only
  file is invalid), and every decoded sample finite (NaN/inf are refused);
- decoding reads blocks and mixes them down as it goes, and stops once the decoded length passes the limit.

Sandbox: libsndfile is C code parsing untrusted bytes, so by default (``sandbox=True``) decoding runs in the
audio worker process of ``zoo.inputs.sandbox`` with ``RLIMIT_AS`` = ``WORKER_MEMORY_BYTES``, no core dumps and a
per-item wall-clock limit (``DECODE_TIMEOUT``); raw bytes go over a pipe and raw little-endian float32 samples
come back: nothing untrusted is pickled. A worker that crashes, hangs or runs out of memory becomes an
InvalidInputError for that item; a fresh one starts on the next call. ``sandbox=False`` decodes in-process
(faster start, for trusted files only).

Mono mixdown averages the channels. Resampling, only when the rate differs from ``target_rate``, uses the filter
of ``torchaudio.functional.resample`` with its defaults (a cached ``torchaudio.transforms.Resample``): a
Hann-windowed sinc, ``lowpass_filter_width=6``, ``rolloff=0.99``; it is deterministic and gives
``ceil(n * target_rate / rate)`` samples.
"""

from __future__ import annotations

import functools
import os
import struct
from typing import Any

from zoo.errors import InputTooLargeError, InvalidInputError
from zoo.inputs.limits import read_checked
from zoo.inputs.sandbox import sandbox

#: Largest encoded audio file the zoo reads (10 minutes of 48 kHz 16-bit stereo WAV fits).
MAX_FILE_BYTES = 128 * 1024 * 1024
#: Longest audio the zoo decodes, in seconds (from the header, before decoding).
MAX_SECONDS = 600.0
#: Accepted sample-rate range, in Hz.
MIN_RATE, MAX_RATE = 1000, 384_000
#: Largest accepted |sample| of float audio (files and waveforms); full scale is 1.0. Far above any real clipping,
#: and low enough that squares and sums over an FFT frame (mel power, log-mel) stay finite in float32.
#: Integer PCM is within [-1, 1) by construction.
MAX_AMPLITUDE = 1e4
#: Most channels accepted.
MAX_CHANNELS = 32
#: libsndfile formats the zoo decodes.
ALLOWED_FORMATS = ("WAV", "WAVEX", "FLAC", "OGG", "MP3")
#: Address-space limit of the decoder worker (Linux).
WORKER_MEMORY_BYTES = 4 * 1024**3
#: Seconds one item may take in the worker (worker start included) before it is killed.
DECODE_TIMEOUT = 60.0

_BLOCK = 65536
_TEST_HOOK: str | None = None  # tests only: "abort", "exit" or "hang", carried out by the worker


def _too_long(seconds: float, max_seconds: float) -> InputTooLargeError:
    return InputTooLargeError(f"audio is {seconds:,.1f} s long, over the limit of {max_seconds:g} s",
                              limit=int(max_seconds))


def _check_riff(data: bytes, max_seconds: float) -> None:
    """Check a WAV's declared sample rate and ``data`` size before libsndfile (which clamps lies) sees it."""
    pos, rate, align = 12, None, None
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        if cid == b"fmt " and pos + 24 <= len(data):
            channels, rate, _, align = struct.unpack_from("<HIIH", data, pos + 10)
            if rate == 0 or channels == 0:
                raise InvalidInputError(f"WAV header declares sample rate {rate} and {channels} channels")
        elif cid == b"data" and rate and align:
            if size // align / rate > max_seconds:
                raise _too_long(size // align / rate, max_seconds)
            return
        pos += 8 + size + (size & 1)


def _sniff(data: bytes) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "WAV"
    if data[:4] == b"fLaC":
        return "FLAC"
    if data[:4] == b"OggS":
        return "OGG"
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "MP3"
    raise InvalidInputError(f"not a WAV, FLAC, OGG or MP3 file (starts with {data[:8]!r})")


def _decode(data: bytes, max_seconds: float):
    """Decode one encoded file to (float32 mono samples, rate); errors carry no index (the caller adds it)."""
    import io

    import numpy as np
    import soundfile as sf

    if _sniff(data) == "WAV":
        _check_riff(data, max_seconds)
    try:
        info = sf.info(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - libsndfile reports every problem as some RuntimeError
        raise InvalidInputError(f"cannot read audio header: {exc}") from exc
    if info.format not in ALLOWED_FORMATS:
        raise InvalidInputError(f"audio format {info.format} is not accepted ({', '.join(ALLOWED_FORMATS)})")
    if not MIN_RATE <= info.samplerate <= MAX_RATE:
        raise InvalidInputError(f"sample rate {info.samplerate} Hz is outside {MIN_RATE}..{MAX_RATE}")
    if not 1 <= info.channels <= MAX_CHANNELS:
        raise InvalidInputError(f"{info.channels} channels is outside 1..{MAX_CHANNELS}")
    if info.frames <= 0:
        raise InvalidInputError("audio has no samples (header only?)")
    if info.frames / info.samplerate > max_seconds:
        raise _too_long(info.frames / info.samplerate, max_seconds)
    max_frames, total, parts = int(max_seconds * info.samplerate) + _BLOCK, 0, []
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            for block in f.blocks(blocksize=_BLOCK, dtype="float32", always_2d=True):
                _check_samples(block, "audio")
                parts.append(block.mean(axis=1, dtype=np.float64).astype(np.float32))
                total += len(block)
                if total > max_frames:
                    raise _too_long(total / info.samplerate, max_seconds)
    except InvalidInputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InvalidInputError(f"cannot decode audio (truncated or corrupt?): {exc}") from exc
    mono = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    if not mono.size:
        raise InvalidInputError("audio has no samples")
    _check_samples(mono, "audio")
    return mono, info.samplerate


def _check_samples(x, what: str) -> None:
    """Refuse NaN/inf samples and samples beyond ``MAX_AMPLITUDE`` (errors carry no index)."""
    import numpy as np

    if not np.isfinite(x).all():
        raise InvalidInputError(f"{what} has NaN or infinite samples")
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak > MAX_AMPLITUDE:
        raise InvalidInputError(f"{what} has samples of magnitude {peak:.3g}, over the limit of {MAX_AMPLITUDE:g} "
                                f"(float audio is expected in [-1, 1])")


# ---------------------------------------------------------------- sandbox
def serve(head: dict, data: bytes) -> tuple[dict, list]:
    """The worker's side (``zoo.inputs.sandbox``): one file's samples as little-endian float32."""
    mono, rate = _decode(data, float(head["max_seconds"]))
    return {"rate": rate, "frames": len(mono)}, [mono.astype("<f4")]


def _decode_sandboxed(data: bytes, max_seconds: float, index: int):
    import numpy as np

    box = sandbox("audio", WORKER_MEMORY_BYTES)
    header, payload = box.run({"max_seconds": max_seconds}, data, index=index, timeout=DECODE_TIMEOUT,
                              hook=_TEST_HOOK)
    return np.frombuffer(payload, dtype="<f4").astype(np.float32), int(header["rate"])


# ---------------------------------------------------------------- public API
def _read_item(item: Any, index: int) -> bytes:
    """The bytes of a path or bytes-like item, size-checked; a path must stay a regular file until it is read."""
    return read_checked(item, index, what="audio", limit=MAX_FILE_BYTES)


def _from_waveform(wave: Any, rate: Any, index: int, max_seconds: float):
    import numpy as np

    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or not MIN_RATE <= rate <= MAX_RATE:
        raise InvalidInputError(f"sample rate must be an integer in {MIN_RATE}..{MAX_RATE} Hz, got {rate!r}",
                                index=index)
    try:
        if type(wave).__module__ == "torch" and hasattr(wave, "detach"):
            wave = wave.detach().cpu()
            wave = (wave.float() if wave.is_floating_point() and wave.dtype.itemsize < 4 else wave).numpy()
        a = np.asarray(wave)
    except (TypeError, ValueError, RuntimeError) as exc:  # ragged lists, complex/quantized tensors...
        raise InvalidInputError(f"waveform is not a numeric array: {exc}", index=index) from None
    if a.ndim == 2 and a.shape[0] > a.shape[1]:
        a = a.T  # rule: the smaller axis is channels
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or not 1 <= a.shape[0] <= MAX_CHANNELS:
        raise InvalidInputError(f"a waveform must be (samples,) or 2-D with 1..{MAX_CHANNELS} channels, "
                                f"got shape {np.shape(wave)}", index=index)
    if a.shape[1] == 0:
        raise InvalidInputError("waveform has no samples", index=index)
    if a.shape[1] / rate > max_seconds:
        raise InputTooLargeError(str(_too_long(a.shape[1] / rate, max_seconds)), index=index, limit=int(max_seconds))
    if np.issubdtype(a.dtype, np.integer):
        half = (np.iinfo(a.dtype).max + 1) / (2 if np.iinfo(a.dtype).min == 0 else 1)  # full scale
        a = (a.astype(np.float64) - (half if np.iinfo(a.dtype).min == 0 else 0)) / half
    elif not np.issubdtype(a.dtype, np.floating):
        raise InvalidInputError(f"waveforms must hold floats or integers, not {a.dtype}", index=index)
    try:
        _check_samples(a, "waveform")
    except InvalidInputError as exc:
        raise InvalidInputError(exc.args[0], index=index) from None
    mono = a.mean(axis=0, dtype=np.float64).astype(np.float32)
    return mono, int(rate)


def load_audio(item: Any, *, target_rate: int, index: int = 0, max_seconds: float | None = None,
               sandbox: bool = True):
    """Turn one user item into float32 mono samples at ``target_rate``, or raise an error naming ``index``.

    Args:
        item: a path, bytes (WAV/FLAC/OGG/MP3), or a ``(waveform, sample_rate)`` tuple.
        target_rate: the sample rate the model wants, in Hz.
        index: the item's position in the caller's list, used in error messages.
        max_seconds: length limit; ``MAX_SECONDS`` when None.
        sandbox: decode files in the worker process (default); False decodes in-process, for trusted files only.

    Returns:
        A 1-D float32 numpy array.
    """
    import numpy as np

    max_seconds = MAX_SECONDS if max_seconds is None else max_seconds
    if isinstance(item, tuple) and len(item) == 2:
        mono, rate = _from_waveform(item[0], item[1], index, max_seconds)
    elif isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
        data = _read_item(item, index)
        if sandbox:
            mono, rate = _decode_sandboxed(data, max_seconds, index)
        else:
            try:
                mono, rate = _decode(data, max_seconds)
            except InputTooLargeError as exc:
                raise InputTooLargeError(exc.args[0], index=index, limit=exc.limit) from exc
            except InvalidInputError as exc:
                raise InvalidInputError(exc.args[0], index=index) from exc
    else:
        raise InvalidInputError(f"expected audio (path, bytes or a (waveform, sample_rate) tuple), "
                                f"got {type(item).__name__}", index=index)
    if rate == target_rate:
        return mono
    import torch

    with torch.no_grad():
        out = _resampler(rate, int(target_rate))(torch.from_numpy(np.ascontiguousarray(mono)))
    return out.numpy().astype(np.float32)


@functools.lru_cache(maxsize=16)
def _resampler(rate: int, target_rate: int):
    """``torchaudio.transforms.Resample`` (same filter as ``torchaudio.functional.resample``), kernel cached."""
    from torchaudio.transforms import Resample

    return Resample(rate, target_rate)


def load_audios(items: list, *, target_rate: int, max_seconds: float | None = None, sandbox: bool = True) -> list:
    """Load every item up front, so a bad one fails before any model work is done."""
    return [load_audio(it, target_rate=target_rate, index=i, max_seconds=max_seconds, sandbox=sandbox)
            for i, it in enumerate(items)]


