"""Load-time guards: one test per guard, each on a fixture folder made wrong in that one way.

Each of these folders loads in transformers without an error and gives wrong vectors; the zoo must
refuse it with a typed error that names the file or key (zoo/adapters/guards.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import zoo
from tests.fixtures.tiny_vision import tiny_vision_cache  # noqa: F401
from tests.fixtures.tiny_vlm import tiny_vlm_cache  # noqa: F401
from zoo.errors import IntegrityError, UnsafeModelFileError, WeightsUnavailableError

TEXT = "bge-small-en-v1.5"


def _copy(folder: Path, tmp_path: Path, name: str = "model") -> Path:
    out = tmp_path / name
    shutil.copytree(folder, out, symlinks=False)
    return out


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_the_untouched_copy_loads(hf_text_cache, tmp_path):
    """The control: every test below changes one thing in this folder."""
    folder = _copy(hf_text_cache.snapshot(TEXT), tmp_path)
    assert zoo.load(TEXT, path=folder).embed(["a dog", "stock prices"]).shape == (2, 384)


def test_a_missing_weight_is_refused_by_name(hf_text_cache, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = _copy(hf_text_cache.snapshot(TEXT), tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    key = next(k for k in state if "attention.self.query.weight" in k)
    del state[key]
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(IntegrityError, match="lack 1 of the model's parameters") as info:
        zoo.load(TEXT, path=folder)
    assert key.removeprefix("bert.") in str(info.value)


def test_a_mis_shaped_weight_is_refused(hf_text_cache, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = _copy(hf_text_cache.snapshot(TEXT), tmp_path)
    state = load_file(str(folder / "model.safetensors"))
    key = next(k for k in state if k.endswith("intermediate.dense.weight"))
    state[key] = state[key][:-1]  # one row short: transformers would re-initialise it
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(IntegrityError, match="wrong shape|lack"):
        zoo.load(TEXT, path=folder)


def test_a_tokenizer_without_its_vocabulary_is_refused(hf_text_cache, tmp_path):
    folder = _copy(hf_text_cache.snapshot(TEXT), tmp_path)
    for name in ("tokenizer.json", "vocab.txt"):
        (folder / name).unlink()
    with pytest.raises((IntegrityError, WeightsUnavailableError), match="vocab"):
        zoo.load(TEXT, path=folder)


def test_a_vocabulary_far_smaller_than_the_models_is_refused(hf_text_cache, tmp_path):
    folder = _copy(hf_text_cache.snapshot(TEXT), tmp_path)
    size = json.loads((folder / "config.json").read_text())["vocab_size"]
    _edit_json(folder / "config.json", vocab_size=size * 4)  # the tokenizer is now a quarter of what it should be
    with pytest.raises(IntegrityError, match=f"has {size:,} entries but the model's vocab_size is {size * 4:,}"):
        zoo.load(TEXT, path=folder)


def test_a_tokenizer_that_maps_different_texts_alike_is_refused(hf_text_cache, tmp_path):
    folder = _copy(hf_text_cache.snapshot(TEXT), tmp_path)
    # Every piece renamed out of reach: the vocabulary keeps its size (the size check passes), every word is [UNK].
    for name in ("tokenizer.json", "vocab.txt"):
        text = (folder / name).read_text()
        if name == "vocab.txt":
            pieces = [p if p.startswith("[") else f"\u00a7{p}" for p in text.splitlines()]
            (folder / name).write_text("\n".join(pieces) + "\n")
        else:
            tok = json.loads(text)
            vocab = tok["model"]["vocab"]
            tok["model"]["vocab"] = {(p if p.startswith("[") else f"\u00a7{p}"): i for p, i in vocab.items()}
            (folder / name).write_text(json.dumps(tok))
    with pytest.raises(IntegrityError, match="maps different texts to the same ids"):
        zoo.load(TEXT, path=folder)


def test_a_missing_chat_template_is_refused(tiny_vlm_cache, tmp_path):  # noqa: F811
    name = "qwen3-vl-embedding-2b"
    folder = _copy(tiny_vlm_cache.snapshots[name], tmp_path)
    for template in folder.glob("chat_template.*"):
        template.unlink()
    _edit_json(folder / "tokenizer_config.json", chat_template=None)
    with pytest.raises(WeightsUnavailableError, match="no chat template"):
        zoo.load(name, path=folder)


@pytest.mark.parametrize("name, key, value", [
    ("siglip2-base-patch16-224", "image_mean", [0.48145466, 0.4578275, 0.40821073]),
    ("vlm2vec-qwen2vl-2b", "patch_size", 16),
])
def test_processor_settings_other_than_the_cards_are_refused(name, key, value, tiny_vision, tiny_vlm_cache,  # noqa: F811
                                                             tmp_path):
    snapshots = {**tiny_vision.snapshots, **tiny_vlm_cache.snapshots}
    folder = _copy(snapshots[name], tmp_path)
    _edit_json(folder / "preprocessor_config.json", **{key: value})
    with pytest.raises(IntegrityError, match=f"{key} = .*the card says"):
        zoo.load(name, path=folder, **({"lora_path": tiny_vlm_cache.adapters[name]} if name.startswith("vlm") else {}))


def test_remote_code_from_an_unpinned_repository_is_refused(hf_text_cache, tmp_path):
    name = "jina-embeddings-v2-base-code"
    folder = _copy(hf_text_cache.snapshot(name), tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {k: v.replace("jinaai/jina-bert-v2-qk-post-norm", "someone/else")
                          for k, v in config["auto_map"].items()}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsafeModelFileError, match="someone/else.*not pin"):
        zoo.load(name, path=folder, trust_remote_code=True)


def test_remote_code_the_folder_lacks_is_refused(hf_text_cache, tmp_path):
    name = "codet5p-110m-embedding"
    folder = _copy(hf_text_cache.snapshot(name), tmp_path)
    (folder / "modeling_codet5p_embedding.py").unlink()
    with pytest.raises(WeightsUnavailableError, match="no modeling_codet5p_embedding.py"):
        zoo.load(name, path=folder, trust_remote_code=True)


def test_a_path_without_a_config_is_a_typed_error(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(WeightsUnavailableError, match="not a model folder.*config.json"):
        zoo.load(TEXT, path=tmp_path)
