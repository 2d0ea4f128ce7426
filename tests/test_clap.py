"""CLAP cards on tiny random-weight ClapModels: parity with transformers, fixed long-audio windows, refusals.

The reference is transformers 5.18 as the CLAP cards use it, on the same weights: the snapshot's
``ClapFeatureExtractor`` on the int16-round-tripped 48 kHz waveform, then ``get_audio_features`` (``is_longer``
False), and the snapshot's RoBERTa tokenizer (``padding="max_length"``, ``max_length=77``) then
``get_text_features``. The reference model is rebuilt from config.json and the weight file read directly
(safetensors, or ``torch.load(weights_only=True)``), not through the adapter's loader.
"""

from __future__ import annotations

import io
import pickle
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

import zoo
from tests.fixtures.tiny_clap import tiny_clap_cache  # noqa: F401 (the session fixture "tiny_clap")
from zoo.adapters.clap import int16_round_trip, window_starts

CLAP = sorted(n for n in zoo.list_models() if zoo.card(n).adapter == "clap")
RATE, WINDOW = 48000, 480000
PARITY = 0.99999
TEXTS = ["a dog barking in the distance", "This is a sound of thunder.", "", "Ünïcödé sounds ☃ and 🎵",
         "rain falling on a tin roof " * 20]


def unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def row_cos(a, b) -> np.ndarray:
    return (unit(a) * unit(b)).sum(-1)


def clip(seconds: float, seed: int = 0, rate: int = RATE) -> np.ndarray:
    """A test sound: a gliding tone with harmonics, an amplitude envelope and a little noise."""
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(220 + 180 * np.sin(0.7 * t + seed)) / rate
    tone = sum(0.4 / k * np.sin(k * phase) for k in (1, 2, 3)) * (0.6 + 0.4 * np.sin(2.3 * t + seed))
    return (tone + 0.02 * np.random.default_rng(seed).standard_normal(len(t))).astype(np.float32)


# -- the reference -----------------------------------------------------------------------------------------------
_REFERENCES: dict[str, tuple] = {}


def reference(name: str, folder):
    """(ClapModel, ClapFeatureExtractor, tokenizer) built independently of the adapter's loader."""
    if name not in _REFERENCES:
        from safetensors.torch import load_file
        from transformers import AutoTokenizer, ClapConfig, ClapFeatureExtractor, ClapModel

        model = ClapModel(ClapConfig.from_pretrained(str(folder))).eval()
        weights = folder / "model.safetensors"
        state = load_file(str(weights)) if weights.is_file() else torch.load(folder / "pytorch_model.bin",
                                                                              weights_only=True)
        model.load_state_dict(state, strict=True)
        _REFERENCES[name] = (model, ClapFeatureExtractor.from_pretrained(str(folder)),
                             AutoTokenizer.from_pretrained(str(folder)))
    return _REFERENCES[name]


def reference_audio(name: str, folder, waves: list[np.ndarray]) -> np.ndarray:
    """transformers' own features + get_audio_features (is_longer False) on int16-round-tripped 48 kHz clips."""
    model, fe, _ = reference(name, folder)
    feats = fe([int16_round_trip(w) for w in waves], sampling_rate=RATE, return_tensors="pt")
    with torch.no_grad():
        out = model.get_audio_features(input_features=feats["input_features"],
                                       is_longer=torch.zeros((len(waves), 1), dtype=torch.bool))
    return out.pooler_output.numpy()


def reference_text(name: str, folder, texts: list[str]) -> np.ndarray:
    model, _, tok = reference(name, folder)
    enc = tok(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    with torch.no_grad():
        out = model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    return out.pooler_output.numpy()


@pytest.fixture(scope="module")
def models(tiny_clap):
    return {name: zoo.load(name) for name in CLAP}


# -- loading -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CLAP)
def test_card_loads_offline_with_its_architecture(name, models):
    model = models[name]
    cfg = model.model.config.audio_config
    assert type(model.model).__name__ == "ClapModel" and model.resolved.origin == "hf-cache"
    assert model.fusion == (name == "clap-htsat-fused") == cfg.enable_fusion
    assert cfg.depths == ([1, 1, 3, 1] if name.startswith("larger") else [1, 1, 2, 1])
    assert model.feature_extractor.frequency_min == 50 and model.feature_extractor.frequency_max == 14000
    assert model.feature_extractor.truncation == ("fusion" if model.fusion else "rand_trunc")
    assert (model.sample_rate, model.window, model.max_length) == (RATE, WINDOW, 77)


# -- parity ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CLAP)
def test_audio_matches_get_audio_features(name, tiny_clap, models):
    waves = [clip(0.5, 1), clip(3.0, 2) * 2.0, clip(10.0, 3)]  # the second is over full scale: the int16 round
    e = models[name].embed([(w, RATE) for w in waves], batch_size=2)  # trip clips it, as laion_clap does
    assert e.vectors.shape == (3, 512) and e.modality == "audio" and e.space == name
    expected = reference_audio(name, tiny_clap.snapshot(name), waves)
    assert row_cos(e.vectors, expected).min() >= PARITY
    np.testing.assert_allclose(np.linalg.norm(e.vectors, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", CLAP)
def test_texts_match_get_text_features(name, tiny_clap, models):
    with pytest.warns(UserWarning, match="truncated"):
        e = models[name].embed(TEXTS)
    assert e.vectors.shape == (5, 512) and e.modality == "text" and e.info["truncated"] == 1
    assert row_cos(e.vectors, reference_text(name, tiny_clap.snapshot(name), TEXTS)).min() >= PARITY


def test_text_is_padded_to_77_tokens_with_roberta_specials(models):
    model = models["clap-htsat-unfused"]
    enc = model.tokenize(["a dog barking", "rain falling on a tin roof " * 20])
    ids, mask = enc["input_ids"], enc["attention_mask"]
    assert ids.shape == (2, 77) and set(enc) == {"input_ids", "attention_mask"}
    n = int(mask[0].sum())
    assert ids[0, 0] == 0 and ids[0, n - 1] == 2 and set(ids[0, n:].tolist()) == {1}  # <s> ... </s> <pad>...
    assert mask[1].all() and ids[1, -1] == 2  # truncated, still closed by </s>


def test_too_long_text_raises_with_index_when_truncation_is_off(models):
    with pytest.raises(zoo.InputTooLargeError) as err:
        models["clap-htsat-fused"].embed(["ok", TEXTS[-1]], truncate=False)
    assert err.value.index == 1 and err.value.limit == 77


# -- long audio --------------------------------------------------------------------------------------------------
def test_window_rule():
    assert window_starts(1, WINDOW) == [0]
    assert window_starts(WINDOW, WINDOW) == [0]
    assert window_starts(WINDOW + 1, WINDOW) == [0, 1]
    assert window_starts(2 * WINDOW, WINDOW) == [0, WINDOW]
    assert window_starts(25 * RATE, WINDOW) == [0, WINDOW, 25 * RATE - WINDOW]


@pytest.mark.parametrize("name", ["clap-htsat-unfused", "clap-htsat-fused"])
def test_long_audio_is_the_mean_of_fixed_windows_and_deterministic(name, tiny_clap, models):
    sine = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(5 * RATE) / RATE)
    long = np.concatenate([clip(10.0, 7), np.zeros(10 * RATE), sine]).astype(np.float32)  # three distinct windows
    model = models[name]
    first = model.embed([(long, RATE)])
    again = model.embed([(long, RATE)])
    np.testing.assert_array_equal(first.vectors, again.vectors)
    assert first.info["audio_windows"] == 3 and first.info["long_audio"] == 1
    by_hand = [long[0:480000], long[480000:960000], long[720000:1200000]]  # the last window ends at 25 s
    per_window = unit(reference_audio(name, tiny_clap.snapshot(name), by_hand))
    assert row_cos(first.vectors[0], per_window.mean(0)) >= PARITY
    assert row_cos(first.vectors[0], per_window[0]) < 0.9999  # the later windows count


def test_long_and_short_clips_in_one_call_keep_their_rows(models):
    model = models["larger-clap-music-and-speech"]
    items = [(clip(2.0, 1), RATE), (clip(12.5, 2), RATE), (clip(4.0, 3), RATE)]
    together = model.embed(items, batch_size=2).vectors
    alone = np.concatenate([model.embed([it]).vectors for it in items])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_fused_short_batch_takes_the_global_branch_not_a_random_is_longer_flag(tiny_clap, models):
    name = "clap-htsat-fused"
    model = models[name]
    waves = [clip(1.0, 1), clip(2.0, 2), clip(3.0, 3)]
    np.random.seed(1234)
    state = np.random.get_state()
    batch = model.embed([(w, RATE) for w in waves]).vectors
    after = np.random.get_state()
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]
    alone = np.concatenate([model.embed([(w, RATE)]).vectors for w in waves])
    np.testing.assert_allclose(batch, alone, atol=1e-5)  # a row does not depend on its batch
    # transformers' feature extractor flags one clip of an all-short batch as is_longer; that row changes
    ref, fe, _ = reference(name, tiny_clap.snapshot(name))
    feats = fe([int16_round_trip(w) for w in waves], sampling_rate=RATE, return_tensors="pt")
    flagged = int(feats["is_longer"].flatten().to(torch.int64).argmax())
    assert int(feats["is_longer"].sum()) == 1
    with torch.no_grad():
        hf_default = ref.get_audio_features(**feats).pooler_output.numpy()
    assert row_cos(batch[flagged], hf_default[flagged]) < PARITY


# -- the log-mel -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, mel_scale, norm", [("clap-htsat-fused", "htk", None),
                                                   ("clap-htsat-unfused", "slaney", "slaney")])
def test_log_mel_follows_laion_clap_recipe(name, mel_scale, norm, models):
    """laion_clap's get_mel (fused) is torchaudio MelSpectrogram + AmplitudeToDB at fmin 50; the unfused HTSAT uses
    librosa's slaney filters (torchlibrosa), emulated here with torchaudio's slaney scale and norm."""
    import torchaudio

    wave = int16_round_trip(clip(10.0, 5))
    ours = models[name].features([wave])[0, 0].numpy()
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=RATE, n_fft=1024, win_length=1024, hop_length=480,
                                               center=True, pad_mode="reflect", power=2.0, norm=norm,
                                               mel_scale=mel_scale, n_mels=64, f_min=50, f_max=14000)
    theirs = torchaudio.transforms.AmplitudeToDB(top_db=None)(mel(torch.from_numpy(wave))).T.numpy()
    assert ours.shape == theirs.shape == (1001, 64)
    assert np.abs(ours - theirs).max() < 1e-3  # dB


# -- robustness --------------------------------------------------------------------------------------------------
def test_silence_rates_and_channels_give_finite_unit_vectors(models, tmp_path):
    model = models["clap-htsat-unfused"]
    stereo = np.stack([clip(2.0, 1), clip(2.0, 2)])
    wav = tmp_path / "tone.wav"
    sf.write(wav, clip(1.5, 3, rate=22050), 22050)
    buf = io.BytesIO()
    sf.write(buf, stereo.T, RATE, format="FLAC")
    items = [(np.zeros(2 * RATE, np.float32), RATE), (clip(2.0, 4, rate=8000), 8000), (clip(2.0, 5), RATE),
             (stereo, RATE), (stereo.T, RATE), ((clip(1.0, 6) * 20000).astype(np.int16), RATE), wav,
             buf.getvalue(), (np.full(10, 0.5, np.float32), RATE)]
    e = model.embed(items, modality="audio")
    assert np.isfinite(e.vectors).all() and e.vectors.shape == (len(items), 512)
    np.testing.assert_allclose(np.linalg.norm(e.vectors, axis=1), 1.0, rtol=1e-5)
    mono = model.embed([(stereo.mean(0), RATE)]).vectors[0]
    assert row_cos(e.vectors[3], mono) >= PARITY and row_cos(e.vectors[4], mono) >= PARITY
    assert row_cos(e.vectors[7], mono) >= 0.9999  # FLAC is lossless; the mixdown happens after decoding
    assert row_cos(e.vectors[0], e.vectors[2]) < 0.9999  # silence is not just another sound


@pytest.mark.parametrize("bad", [b"not audio at all", (np.zeros(0, np.float32), RATE),
                                 (np.full(100, np.nan, np.float32), RATE), (np.zeros(100, np.float32), 0),
                                 "no/such/file.wav", object(), (np.zeros((3, 3, 3)), RATE)],
                         ids=["bytes", "empty", "nan", "rate-0", "missing-file", "object", "3-d"])
def test_bad_audio_raises_with_its_index(bad, models):
    with pytest.raises(zoo.InvalidInputError) as err:
        models["clap-htsat-fused"].embed([(clip(1.0), RATE), bad], modality="audio")
    assert err.value.index == 1


def test_text_and_audio_share_one_space_per_card(models):
    model = models["larger-clap-general"]
    texts = model.embed(["a dog barking", "soft piano music"])
    sounds = model.embed([(clip(2.0, 1), RATE), (clip(3.0, 2), RATE), (clip(1.0, 3), RATE)])
    assert texts.space == sounds.space == "larger-clap-general"
    sims = zoo.similarity(texts, sounds)
    assert sims.shape == (2, 3) and np.isfinite(sims).all() and np.abs(sims).max() <= 1.0 + 1e-6
    other = models["larger-clap-music-and-speech"].embed(["a dog barking"])
    with pytest.raises(zoo.SpaceMismatchError):
        zoo.similarity(texts, other)


def test_unnormalized_long_audio_is_the_plain_mean_of_unit_vectors(models):
    model = models["clap-htsat-unfused"]
    tone_then_silence = np.concatenate([clip(10.0, 9), np.zeros(5 * RATE, np.float32)])
    e = model.embed([(tone_then_silence, RATE), (clip(2.0, 1), RATE)], normalize=False)
    norms = np.linalg.norm(e.vectors, axis=1)
    assert norms[0] < 1.0 - 1e-4 and abs(norms[1] - 1.0) < 1e-5  # two windows average below unit length
    assert not e.normalized


# -- refusals ----------------------------------------------------------------------------------------------------
class NotATensor:
    """Any pickled object that is not a tensor or a plain container."""


def test_pickle_with_objects_is_refused(tiny_clap, tmp_path):
    folder = tmp_path / "larger"
    shutil.copytree(tiny_clap.snapshot("larger-clap-general"), folder)
    with open(folder / "pytorch_model.bin", "wb") as fh:
        pickle.dump({"audio_model.x": NotATensor()}, fh, protocol=2)
    with pytest.raises(zoo.UnsafeModelFileError, match="weights_only"):
        zoo.load("larger-clap-general", path=folder)


def test_weights_missing_a_parameter_are_refused(tiny_clap, tmp_path):
    folder = tmp_path / "larger"
    shutil.copytree(tiny_clap.snapshot("larger-clap-music-and-speech"), folder)
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    del state["audio_projection.linear2.weight"]
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(zoo.IntegrityError, match="audio_projection.linear2.weight"):
        zoo.load("larger-clap-music-and-speech", path=folder)


def test_safetensors_card_refuses_a_pickle_only_snapshot(tiny_clap, tmp_path):
    folder = tmp_path / "unfused"
    shutil.copytree(tiny_clap.snapshot("clap-htsat-unfused"), folder)
    (folder / "model.safetensors").unlink()
    shutil.copy(tiny_clap.snapshot("larger-clap-general") / "pytorch_model.bin", folder / "pytorch_model.bin")
    with pytest.raises(zoo.UnsafeModelFileError, match="pickle"):
        zoo.load("clap-htsat-unfused", path=folder)


def test_feature_extractor_that_does_not_fit_the_model_is_refused(tiny_clap, tmp_path):
    import json

    folder = tmp_path / "fused"
    shutil.copytree(tiny_clap.snapshot("clap-htsat-fused"), folder)
    cfg = json.loads((folder / "preprocessor_config.json").read_text())
    (folder / "preprocessor_config.json").write_text(json.dumps({**cfg, "truncation": "rand_trunc"}))
    with pytest.raises(zoo.IntegrityError, match="enable_fusion"):
        zoo.load("clap-htsat-fused", path=folder)
