"""Whisper as an audio encoder, and as a transcriber: CTranslate2 and transformers backends.

What the original does: Whisper turns 16 kHz mono audio into an 80-bin log-mel spectrogram of one 30 s window
(n_fft 400, hop 160: 3000 mel frames, shorter audio zero-padded to 30 s), the encoder's two convolutions halve
that to 1500 frames of ``d_model`` features, and the decoder writes the transcript after a prompt of special
tokens: ``<|startoftranscript|>`` alone for English-only (``.en``) models, ``<|startoftranscript|><|lang|><|task|>``
for multilingual ones (faster-whisper's ``Tokenizer.sot_sequence``), then ``<|notimestamps|>`` when no
timestamps are wanted; text and timestamp tokens follow.

What the zoo does:

- Audio is decoded by ``zoo.audio.load_audios`` (limits, sandbox, resampling to 16 kHz, channel mixdown) and cut
  into consecutive 30 s chunks; each chunk is featurized on its own by transformers' ``WhisperFeatureExtractor``
  (the snapshot's ``preprocessor_config.json`` when it has one; otherwise the defaults, which are Whisper's:
  16 kHz, 80 mels, n_fft 400, hop 160, 30 s), padded to 30 s as Whisper was trained.
- Embedding: the encoder output averaged over the chunk's *real* frames only. One encoder frame is 320 samples
  (hop 160 x conv stride 2), so a chunk of n samples has ``ceil(n / 320)`` real frames (at most 1500); the
  padding frames are left out. A longer recording is the mean over all real frames of all its chunks.
- Transcription: each chunk is decoded on its own, in one pass, with the prompt above (language and task only for
  multilingual models; ``language=None`` detects the language per chunk) and the chunk texts are joined with
  spaces. The decoder predicts timestamps, as faster-whisper and OpenAI's ``transcribe`` do by default, and they
  are dropped from the text: with ``<|notimestamps|>`` tiny.en wrote only the first sentence of a 30 s window
  holding eight (measured on the espeak-ng clips). At most 224 tokens per window (Whisper's ``sample_len``, half
  the 448-token context). Not done: seeking to the last complete segment (a sentence across a chunk boundary
  is cut in two), conditioning on the previous chunk, temperature fallback, voice activity detection; so long
  recordings may be worded differently from faster-whisper's ``transcribe``.

Backends, chosen by the card's ``weights_format``:

- ``"ctranslate2"``: ``ctranslate2.models.Whisper(folder, device, compute_type)`` (``encode`` for vectors,
  ``generate`` for text); the text comes from the folder's ``tokenizer.json``.
- ``"safetensors"``: transformers ``WhisperForConditionalGeneration``; its encoder (``model.model.encoder``) gives
  the vectors and ``generate`` the text, with the snapshot's ``generation_config.json``.

Card options: ``english_only`` (bool; checked against the model where it says), ``compute_type`` (CTranslate2's
default compute type, e.g. "float32"; ``zoo.load(..., compute_type="int8")`` overrides it), ``batch_size``
(30 s chunks per forward pass, default 8).
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from zoo.adapters import guards
from zoo.adapters.base import BaseEmbedder, EmbedContext, as_item_list
from zoo.catalog.modelcard import ModelCard
from zoo.catalog.sources import Resolved, check_format
from zoo.errors import InvalidInputError, WeightsUnavailableError, ZooError
from zoo.inputs.audio import load_audios

SAMPLE_RATE = 16_000
CHUNK_SAMPLES = 30 * SAMPLE_RATE  # one Whisper window
SAMPLES_PER_FRAME = 320  # one encoder frame: mel hop 160 x stride 2 of the second convolution
MAX_FRAMES = CHUNK_SAMPLES // SAMPLES_PER_FRAME  # 1500
MAX_LENGTH = 448  # decoder context, prompt included
MAX_NEW_TOKENS = MAX_LENGTH // 2  # Whisper's sample_len (n_text_ctx // 2), which CTranslate2 applies too
DEFAULT_BATCH = 8
TASKS = ("transcribe", "translate")


def split_chunks(wave: np.ndarray) -> list[np.ndarray]:
    """Consecutive 30 s pieces of a 16 kHz waveform; the last one may be shorter."""
    return [wave[i : i + CHUNK_SAMPLES] for i in range(0, max(len(wave), 1), CHUNK_SAMPLES)]


def real_frames(n_samples: int) -> int:
    """Encoder frames that hold audio (not padding) for a chunk of ``n_samples`` samples."""
    return min(MAX_FRAMES, max(1, math.ceil(n_samples / SAMPLES_PER_FRAME)))


def feature_extractor(folder: Path, n_mels: int):
    """The snapshot's feature extractor, or transformers' defaults (Whisper's own settings) when it has none."""
    from transformers import WhisperFeatureExtractor

    if (folder / "preprocessor_config.json").is_file():
        fe = WhisperFeatureExtractor.from_pretrained(str(folder))
    else:
        fe = WhisperFeatureExtractor(feature_size=n_mels)
    if (fe.feature_size, fe.sampling_rate, fe.n_samples, fe.nb_max_frames) != (n_mels, SAMPLE_RATE, CHUNK_SAMPLES,
                                                                                2 * MAX_FRAMES):
        raise ZooError(f"{folder}: feature extractor ({fe.feature_size} mels, {fe.sampling_rate} Hz, "
                       f"{fe.n_samples} samples) does not fit a Whisper model with {n_mels} mels, 16 kHz, 30 s")
    return fe


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be a positive integer, not {value!r}")
    return value


# -- backends ---------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _torch_threads_kept() -> Iterator[None]:
    """Give the calling thread back torch's thread count after a CTranslate2 call.

    CTranslate2 sets the OpenMP thread count of the thread that calls it to its own ``intra_threads``; torch
    reads that same per-thread setting, so every later torch call on that thread (any model's) would run on a
    different number of threads than the others, and float sums split differently give other last bits.
    """
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    try:
        yield
    finally:
        if torch is not None and torch.get_num_threads() != before:
            torch.set_num_threads(before)


class CT2Backend:
    """A CTranslate2 Whisper model: ``encode`` gives (B, 1500, D) features, ``generate`` token ids."""

    def __init__(self, folder: Path, *, device: str, compute_type: str, threads: int):
        import ctranslate2

        self._ct2 = ctranslate2
        with _torch_threads_kept():
            self.model = ctranslate2.models.Whisper(str(folder), device=device, compute_type=compute_type,
                                                    intra_threads=threads)
        self.n_mels = self.model.n_mels
        # CTranslate2 calls a model multilingual when its vocabulary has exactly 51,865 tokens (tiny .. large-v2):
        # a yes is a fact, a no proves nothing (large-v3 has 51,866).
        self.multilingual: bool | None = True if self.model.is_multilingual else None

    def encode(self, features: np.ndarray) -> np.ndarray:
        with _torch_threads_kept():
            out = self.model.encode(self._ct2.StorageView.from_array(features), to_cpu=True)
        return np.asarray(out, dtype=np.float32)

    def detect_language(self, features: np.ndarray) -> list[str]:
        if not self.multilingual:
            raise InvalidInputError("CTranslate2 detects the language only with a 99-language Whisper vocabulary "
                                    "(51,865 tokens); pass language=")
        with _torch_threads_kept():
            found = self.model.detect_language(self._ct2.StorageView.from_array(features))
        return [pairs[0][0].strip("<|>") for pairs in found]

    def generate(self, features: np.ndarray, prompts: list[list[int]], *, beam_size: int,
                 max_new_tokens: int) -> list[list[int]]:
        # CTranslate2 writes at most min(max_length / 2, max_length - (prompt length - 1)) tokens: pick max_length
        # so that this is max_new_tokens.
        max_length = max(2 * max_new_tokens, max_new_tokens + len(prompts[0]) - 1)
        with _torch_threads_kept():
            results = self.model.generate(self._ct2.StorageView.from_array(features), prompts, beam_size=beam_size,
                                          max_length=max_length)
        return [r.sequences_ids[0] for r in results]


class HFBackend:
    """transformers ``WhisperForConditionalGeneration``: its encoder gives the vectors, ``generate`` the text."""

    def __init__(self, folder: Path, *, device: str, card: ModelCard):
        import torch
        from transformers import WhisperForConditionalGeneration

        from zoo.adapters.text_backends import quiet_transformers

        check_format(folder, card)
        self._torch = torch
        self.device = torch.device(device)
        with quiet_transformers():
            model = guards.from_pretrained(WhisperForConditionalGeneration, folder, card, dtype=torch.float32,
                                           use_safetensors=True)
        self.model = model.eval().to(self.device)
        self.n_mels = model.config.num_mel_bins
        self.multilingual = getattr(model.generation_config, "is_multilingual", None)

    def encode(self, features: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(features).to(self.device)
            return self.model.model.encoder(input_features=x).last_hidden_state.float().cpu().numpy()

    def generate(self, features: np.ndarray, language: str | None, task: str | None, *, beam_size: int,
                 max_new_tokens: int) -> list[list[int]]:
        from zoo.adapters.text_backends import quiet_transformers

        torch = self._torch
        extra = {"language": language, "task": task} if self.multilingual else {}
        with torch.inference_mode(), quiet_transformers():  # it warns that max_new_tokens overrides max_length
            out = self.model.generate(input_features=torch.from_numpy(features).to(self.device), num_beams=beam_size,
                                      do_sample=False, max_new_tokens=max_new_tokens, return_timestamps=True,
                                      force_unique_generate_call=True, **extra)  # one pass per 30 s window
        ids = out if torch.is_tensor(out) else out.sequences
        return ids.cpu().tolist()


# -- the adapter ------------------------------------------------------------------------------------------------------


class WhisperEmbedder(BaseEmbedder):
    """Whisper's encoder as an audio embedder (mean over real frames), with :meth:`transcribe`.

    Options (keyword-only): ``device`` ("cpu", "cuda"), ``compute_type`` (CTranslate2 cards: "float32", "int8",
    "int8_float32", ...), ``threads`` (CTranslate2 threads, 0 = its default).
    """

    def __init__(self, card: ModelCard, resolved: Resolved, *, device: str = "cpu", compute_type: str | None = None,
                 threads: int = 0, trust_remote_code: bool = False, **options: Any):
        super().__init__(card, resolved, **options)
        folder = Path(resolved.path)
        opts = card.options
        if card.weights_format == "ctranslate2":
            self.compute_type = compute_type or opts.get("compute_type", "default")
            self.backend: CT2Backend | HFBackend = CT2Backend(folder, device=device, compute_type=self.compute_type,
                                                              threads=int(threads))
        elif card.weights_format == "safetensors":
            if compute_type not in (None, "float32"):
                raise InvalidInputError(f"{card.name} runs in float32 on transformers; compute_type "
                                        f"{compute_type!r} is for CTranslate2 cards")
            self.compute_type = "float32"
            self.backend = HFBackend(folder, device=device, card=card)
        else:
            raise ZooError(f"{card.name}: Whisper loads CTranslate2 or safetensors weights, not {card.weights_format}")
        self.english_only = bool(opts.get("english_only", False))
        if self.backend.multilingual is not None and self.backend.multilingual == self.english_only:
            said = "English-only" if self.english_only else "multilingual"
            raise ZooError(f"{card.name}: the card says the model is {said}, the model in {folder} says otherwise")
        self.feature_extractor = feature_extractor(folder, self.backend.n_mels)
        guards.check_processor(card, self.feature_extractor, folder)
        self.batch_size = int(opts.get("batch_size", DEFAULT_BATCH))
        self._tokenizer = None

    # -- shared steps -----------------------------------------------------------------------------------------------
    def features(self, chunks: list[np.ndarray]) -> np.ndarray:
        """Log-mel features (B, n_mels, 3000) of 16 kHz chunks of at most 30 s, each padded to 30 s."""
        out = self.feature_extractor(chunks, sampling_rate=SAMPLE_RATE, return_tensors="np")["input_features"]
        return np.ascontiguousarray(out, dtype=np.float32)

    def _batches(self, waves: list[np.ndarray], batch_size: int | None):
        """Yield (item index of each chunk, chunks) over all items' 30 s chunks, ``batch_size`` at a time."""
        owners, chunks = [], []
        for i, wave in enumerate(waves):
            for piece in split_chunks(wave):
                owners.append(i)
                chunks.append(piece)
        size = batch_size or self.batch_size
        for start in range(0, len(chunks), size):
            yield owners[start : start + size], chunks[start : start + size]

    # -- embedding hooks --------------------------------------------------------------------------------------------
    def _check(self, inputs: list, modality: str) -> list:
        return load_audios(inputs, target_rate=SAMPLE_RATE)

    def _encode(self, items: list, modality: str, ctx: EmbedContext) -> np.ndarray:
        sums = np.zeros((len(items), self.dim), dtype=np.float64)
        counts = np.zeros(len(items), dtype=np.int64)
        done = 0
        for owners, chunks in self._batches(items, ctx.batch_size):
            hidden = self.backend.encode(self.features(chunks))
            if hidden.shape[1:] != (MAX_FRAMES, self.dim):
                raise ZooError(f"{self.name}: encoder gave {hidden.shape[1:]}, expected {(MAX_FRAMES, self.dim)}")
            for owner, chunk, frames in zip(owners, chunks, hidden, strict=True):
                k = real_frames(len(chunk))
                sums[owner] += frames[:k].sum(axis=0, dtype=np.float64)
                counts[owner] += k
            finished = owners[-1] if owners[-1] == len(items) - 1 else owners[-1] - 1  # its last chunk may follow
            ctx.advance(max(finished + 1 - done, 0))
            done = max(done, finished + 1)
        ctx.info["pooling"] = "mean over real encoder frames"
        return (sums / counts[:, None]).astype(np.float32)

    # -- transcription ----------------------------------------------------------------------------------------------
    @property
    def tokenizer(self):
        """The folder's ``tokenizer.json`` (a ``tokenizers.Tokenizer``), loaded on first use."""
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            path = Path(self.resolved.path) / "tokenizer.json"
            if not path.is_file():
                raise WeightsUnavailableError(f"{self.name}: {path.parent} has no tokenizer.json to write text with")
            self._tokenizer = Tokenizer.from_file(str(path))
            guards.check_tokenizer(self.card, self._tokenizer, path.parent)
        return self._tokenizer

    def token_id(self, token: str) -> int:
        tid = self.tokenizer.token_to_id(token)
        if tid is None:
            raise ZooError(f"{self.name}: the tokenizer has no {token} token")
        return tid

    def prompt(self, language: str | None, task: str | None) -> list[int]:
        """Decoder prompt ids: <|startoftranscript|>, then <|lang|> <|task|> for multilingual models."""
        head = [self.token_id("<|startoftranscript|>")]
        if not self.english_only:
            head += [self.token_id(f"<|{language}|>"), self.token_id(f"<|{task}|>")]
        return head

    def decode(self, ids: list[int]) -> str:
        """Text of generated ids: special and timestamp tokens (ids from <|endoftext|> on) are dropped."""
        eot = self.token_id("<|endoftext|>")
        return self.tokenizer.decode([t for t in ids if t < eot]).strip()

    def _check_language(self, language: str | None, task: str) -> None:
        if task not in TASKS:
            raise InvalidInputError(f"task must be one of {TASKS}, not {task!r}")
        if self.english_only:
            if language not in (None, "en") or task != "transcribe":
                raise InvalidInputError(f"{self.name} is English-only: it transcribes English (language='en', "
                                        "task='transcribe')")
        elif language is not None and (not isinstance(language, str)
                                       or self.tokenizer.token_to_id(f"<|{language}|>") is None):
            raise InvalidInputError(f"{self.name} has no language {language!r} (Whisper codes: 'en', 'de', ...)")

    def transcribe(self, inputs: Any, *, beam_size: int = 5, language: str | None = None, task: str = "transcribe",
                   max_new_tokens: int | None = None, batch_size: int | None = None) -> list[str]:
        """Transcribe audio items; item i's text is element i.

        Each 30 s chunk is decoded in one pass; timestamps are predicted (Whisper's default mode) and left out of
        the text; the chunk texts are joined with spaces.

        Args:
            inputs: audio items as :meth:`embed` takes them (paths, bytes, ``(waveform, rate)`` tuples).
            beam_size: beam search width (1 = greedy).
            language: a Whisper language code for multilingual models; None detects it per 30 s chunk.
                English-only models take None or "en".
            task: "transcribe" or "translate" (to English; multilingual models only).
            max_new_tokens: most tokens written per 30 s chunk, at most (and by default) 224: Whisper's
                ``sample_len``, half its 448-token context.
            batch_size: 30 s chunks per forward pass.
        """
        _positive_int("beam_size", beam_size)
        self._check_language(language, task)
        new = MAX_NEW_TOKENS if max_new_tokens is None else _positive_int("max_new_tokens", max_new_tokens)
        if new > MAX_NEW_TOKENS:
            raise InvalidInputError(f"max_new_tokens must be at most {MAX_NEW_TOKENS} (half of Whisper's "
                                    f"{MAX_LENGTH}-token context), not {new}")
        if batch_size is not None:
            _positive_int("batch_size", batch_size)
        waves = load_audios(as_item_list(inputs), target_rate=SAMPLE_RATE)
        texts: list[list[str]] = [[] for _ in waves]
        for owners, chunks in self._batches(waves, batch_size):
            for owner, ids in zip(owners, self._generate(self.features(chunks), language, task, beam_size, new),
                                  strict=True):
                texts[owner].append(self.decode(ids))
        return [" ".join(t for t in parts if t) for parts in texts]

    def _generate(self, features: np.ndarray, language: str | None, task: str, beam_size: int,
                  max_new_tokens: int) -> list[list[int]]:
        if isinstance(self.backend, HFBackend):
            return self.backend.generate(features, language, task, beam_size=beam_size, max_new_tokens=max_new_tokens)
        if self.english_only or language is not None:
            langs = [language] * len(features)
        else:
            langs = self.backend.detect_language(features)
        prompts = [self.prompt(lang, task) for lang in langs]
        return self.backend.generate(features, prompts, beam_size=beam_size, max_new_tokens=max_new_tokens)


# ------------------------------------------------------------------------------------------------ scoring
def transcript_words(text: str) -> list[str]:
    """A transcript's words for scoring: lower-cased, punctuation removed."""
    import string

    return text.lower().translate(str.maketrans("", "", string.punctuation)).split()


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edits, reference words): the Levenshtein distance over the two texts' words; WER = edits / words."""
    ref, hyp = transcript_words(reference), transcript_words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1], len(ref)
