"""CLAP (LAION): audio and text in one 512-d space, run on transformers' ``ClapModel``.

What the original does (laion_clap 1.1.x, ``LAION-AI/CLAP``: ``hook.py``, ``training/data.py``,
``clap_module/htsat.py``, ``clap_module/model.py``):

- audio is mono at 48 kHz and goes through an int16 round trip first (``int16_to_float32(float32_to_int16(x))``:
  clip to [-1, 1], times 32767, truncated to int16, divided by 32767), in ``get_audio_embedding_from_filelist`` /
  ``_from_data`` and in training alike;
- a clip of 10 s (480,000 samples) or less is repeat-padded ("repeatpad": tiled ``480000 // n`` times, then
  zero-padded to 480,000) and turned into a 64-bin log-mel spectrogram of 1001 frames;
- a longer clip is cut at random: the unfused HTSAT embeds one random 10 s crop (``rand_trunc``), the fused one a
  downsampled view of the whole clip plus three random 10 s mel crops (``fusion``, flagged ``longer``). The
  transformers port (``ClapFeatureExtractor``) draws the same random crops from numpy's global generator and, with
  ``truncation="fusion"``, also flags one random clip of an all-short batch as ``is_longer`` (laion_clap does that
  only in training; in eval an all-short batch takes the global branch only). So the original gives a long clip a
  different vector on every call;
- the audio vector is HTSAT's pooled "embedding" through a Linear-ReLU-Linear projection, L2-normalized;
- text is tokenized by the RoBERTa tokenizer with ``padding="max_length", truncation=True, max_length=77``; the
  vector is RoBERTa's ``pooler_output`` (tanh(dense(<s> state))) through a Linear-ReLU-Linear projection,
  L2-normalized. transformers' ``get_audio_features`` / ``get_text_features`` compute exactly these (5.x returns
  them normalized, in ``pooler_output``).

What the zoo does, so that one clip always gets one vector:

- audio is decoded by :func:`zoo.audio.load_audios` (mono mixdown, resampling to 48 kHz, limits, sandbox), then
  the int16 round trip above, then the snapshot's own ``ClapFeatureExtractor`` (``preprocessor_config.json``);
- a clip of at most 480,000 samples is one window and goes to the feature extractor as it is (repeat-padded as
  the checkpoint's config says);
- a longer clip of n samples is cut into windows of exactly 480,000 samples starting at 0, 480000, 960000, ...
  while a whole window fits; when the last of those ends before n, one more window is added that ends exactly at
  n (it starts at n - 480000 and overlaps the one before). Nothing is padded, nothing is dropped, and a clip of
  n samples gets ceil(n / 480000) windows. These are the window starts of laion_clap's own ``CLAP.audio_infer``
  (``clap_module/model.py``) with ``hopsize=480000``;
- every window goes through the feature extractor and ``get_audio_features`` with ``is_longer`` False (each is
  10 s or less, so the fused model uses its global branch only, as laion_clap's eval does for short clips); the
  feature extractor runs with numpy's global random state saved and restored, so the caller's state is untouched;
- a clip's vector is the arithmetic mean of its windows' L2-normalized vectors (what ``get_audio_features``
  returns), then L2-normalized by the base class (``normalize=False`` keeps the plain mean);
- text follows the original exactly: the snapshot's RoBERTa tokenizer, padded to and truncated at 77 tokens
  (``truncate=False`` raises for longer texts instead), then ``get_text_features``.

Weights: ``model.safetensors`` for cards with ``weights_format = "safetensors"``; cards whose hub revision ships
only ``pytorch_model.bin`` say ``weights_format = "torch-weights-only"`` and that file is read with
``torch.load(weights_only=True)`` (transformers' loader with ``weights_only=True``), which refuses anything but
tensors and plain containers. A weight file that lacks any parameter is refused (IntegrityError) rather than
left randomly initialized.

Card options: ``sample_rate`` (48000) and ``window_samples`` (480000) must match the snapshot's feature extractor;
``int16_round_trip`` (default true); ``text_max_length`` (default: the card's ``max_tokens``, else 77).
"""

from __future__ import annotations

import pickle
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.adapters import guards
from zoo.adapters.base import BaseEmbedder, EmbedContext
from zoo.adapters.hf_clip import TextTower
from zoo.adapters.text import check_texts
from zoo.adapters.text_backends import quiet_transformers
from zoo.catalog.modelcard import ModelCard
from zoo.catalog.sources import Resolved, check_format
from zoo.errors import IntegrityError, UnsafeModelFileError, ZooError
from zoo.inputs.audio import load_audios

DEFAULT_AUDIO_BATCH = 8  # windows per forward pass
TEXT_INPUTS = ("input_ids", "attention_mask")


# -- audio rules ---------------------------------------------------------------------------------------------------
def int16_round_trip(wave: np.ndarray) -> np.ndarray:
    """laion_clap's quantization: clip to [-1, 1], scale by 32767, truncate to int16, scale back (float32)."""
    quantized = (np.clip(wave, -1.0, 1.0) * 32767.0).astype(np.int16)
    return (quantized / 32767.0).astype(np.float32)


def window_starts(n: int, size: int) -> list[int]:
    """Start samples of the windows a clip of ``n`` samples is embedded with (rule in the module docstring)."""
    if n <= size:
        return [0]
    starts = list(range(0, n - size + 1, size))
    if starts[-1] + size < n:
        starts.append(n - size)
    return starts


def windows(wave: np.ndarray, size: int) -> list[np.ndarray]:
    """The clip itself when it fits one window, else its windows of exactly ``size`` samples."""
    if len(wave) <= size:
        return [wave]
    return [wave[s : s + size] for s in window_starts(len(wave), size)]


@contextmanager
def numpy_random_state_kept():
    """Restore numpy's global random state on exit (the CLAP feature extractor draws from it)."""
    state = np.random.get_state()
    try:
        yield
    finally:
        np.random.set_state(state)


# -- loading -------------------------------------------------------------------------------------------------------
def load_clap_model(card: ModelCard, folder: Path):
    """ClapModel from safetensors, or from ``pytorch_model.bin`` read with torch.load(weights_only=True)."""
    from transformers import ClapModel

    check_format(folder, card)  # refuses pickle-only snapshots for safetensors cards
    if card.weights_format not in ("safetensors", "torch-weights-only"):
        raise ZooError(f"{card.name}: the clap adapter loads safetensors or torch-weights-only files, "
                       f"not {card.weights_format}")
    pickle_allowed = card.weights_format == "torch-weights-only"
    try:
        with quiet_transformers():
            return guards.from_pretrained(ClapModel, folder, card, use_safetensors=None if pickle_allowed else True,
                                          weights_only=True, dtype=torch.float32)
    except pickle.UnpicklingError as exc:  # the weights-only unpickler met something that is not a tensor
        raise UnsafeModelFileError(f"{card.name}: pytorch_model.bin in {folder} is not a plain weights file "
                                   "(torch.load(weights_only=True) refused it)") from exc


def load_feature_extractor(card: ModelCard, folder: Path, fusion: bool):
    """The snapshot's ClapFeatureExtractor, checked against the card and against the model's fusion setting."""
    from transformers import ClapFeatureExtractor

    fe = ClapFeatureExtractor.from_pretrained(str(folder))
    guards.check_processor(card, fe, folder)
    rate, size = int(card.options.get("sample_rate", 48000)), int(card.options.get("window_samples", 480000))
    if (fe.sampling_rate, fe.nb_max_samples) != (rate, size):
        raise IntegrityError(f"{card.name}: {folder}/preprocessor_config.json says {fe.sampling_rate} Hz and "
                             f"{fe.nb_max_samples}-sample clips; the card says {rate} Hz and {size}")
    if (fe.truncation == "fusion") != fusion:
        raise IntegrityError(f"{card.name}: the feature extractor's truncation={fe.truncation!r} does not fit a "
                             f"model with enable_fusion={fusion}")
    return fe


# -- the adapter ---------------------------------------------------------------------------------------------------
class CLAPEmbedder(TextTower, BaseEmbedder):
    """A LAION CLAP checkpoint: a list of str is text, anything else audio (say ``modality="audio"`` for paths).

    Options (keyword-only): ``device`` (default "cpu"). For audio, ``embed(batch_size=...)`` counts 10 s windows
    per forward pass (default 8).
    """

    def __init__(self, card: ModelCard, resolved: Resolved, *, device: str = "cpu", trust_remote_code: bool = False,
                 **options: Any):
        super().__init__(card, resolved, **options)
        folder = Path(resolved.path)
        self.device = torch.device(device)
        self.model = load_clap_model(card, folder).eval().to(self.device)
        self.fusion = bool(self.model.config.audio_config.enable_fusion)
        self.feature_extractor = load_feature_extractor(card, folder, self.fusion)
        self.sample_rate = self.feature_extractor.sampling_rate
        self.window = self.feature_extractor.nb_max_samples
        self.round_trip = bool(card.options.get("int16_round_trip", True))
        self.max_length = int(card.options.get("text_max_length", card.max_tokens or 77))
        self._tokenizer = None

    @property
    def tokenizer(self):
        """The snapshot's RoBERTa tokenizer (tokenizer.json, or vocab.json + merges.txt), loaded on first use."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            with quiet_transformers():
                self._tokenizer = AutoTokenizer.from_pretrained(str(self.resolved.path))
            guards.check_tokenizer(self.card, self._tokenizer, self.resolved.path)
        return self._tokenizer

    # -- hooks ---------------------------------------------------------------------------------------------------
    def _infer_modality(self, inputs: list) -> str:
        return "text" if all(isinstance(x, str) for x in inputs) else "audio"

    def _check(self, inputs: list, modality: str) -> list:
        if modality == "text":
            return check_texts(inputs)
        return load_audios(inputs, target_rate=self.sample_rate)

    def _encode(self, items: list, modality: str, ctx: EmbedContext) -> np.ndarray:
        if modality == "text":
            return self._encode_texts(items, ctx)
        return self._encode_audio(items, ctx)

    # -- audio ---------------------------------------------------------------------------------------------------
    def features(self, clips: list[np.ndarray]) -> torch.Tensor:
        """The model's ``input_features`` for clips of at most one window (48 kHz float32, already quantized)."""
        with numpy_random_state_kept():
            out = self.feature_extractor(clips, sampling_rate=self.sample_rate, return_tensors="pt")
        return out["input_features"].to(torch.float32)

    @torch.inference_mode()
    def embed_windows(self, clips: list[np.ndarray]) -> np.ndarray:
        """Unit vectors of clips of at most one window each, ``is_longer`` False for all (no fusion branch)."""
        feats = self.features(clips).to(self.device)
        is_longer = torch.zeros((len(clips), 1), dtype=torch.bool, device=self.device)
        out = self.model.get_audio_features(input_features=feats, is_longer=is_longer)
        return out.pooler_output.float().cpu().numpy()

    def window_clips(self, waves: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
        """Every clip's windows (after the int16 round trip), and for each window the index of its clip."""
        clips, owner = [], []
        for i, wave in enumerate(waves):
            parts = windows(int16_round_trip(wave) if self.round_trip else wave, self.window)
            clips += parts
            owner += [i] * len(parts)
        return clips, np.asarray(owner)

    def _encode_audio(self, waves: list[np.ndarray], ctx: EmbedContext) -> np.ndarray:
        clips, owner = self.window_clips(waves)
        size = ctx.batch_size or DEFAULT_AUDIO_BATCH
        unit = np.concatenate([self.embed_windows(clips[s : s + size]) for s in range(0, len(clips), size)])
        counts = np.bincount(owner, minlength=len(waves))
        sums = np.zeros((len(waves), unit.shape[1]), dtype=np.float64)
        np.add.at(sums, owner, unit)  # each clip's vector: the mean of its windows' unit vectors
        ctx.info.update(audio_windows=len(clips), long_audio=int((counts > 1).sum()))
        return (sums / counts[:, None]).astype(np.float32)

    # -- texts ---------------------------------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """RoBERTa ids and mask, padded to and truncated at ``max_length`` (77) tokens as laion_clap does."""
        enc = self.tokenizer(texts, padding="max_length", max_length=self.max_length, truncation=True,
                             return_tensors="pt")
        return {k: enc[k] for k in TEXT_INPUTS}

