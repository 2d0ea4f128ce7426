"""Vision-language embedders (VLM2Vec, mmE5, Qwen3-VL-Embedding) and zoo.lora, on tiny random-weight models.

What each test pins down: the exact token sequences the model is fed, which hidden state is pooled
(left and right padding), that batching changes nothing, that the LoRA/DoRA merge equals peft's
``merge_and_unload``, that pickle adapters are opened with ``weights_only=True`` only, image
resolution limits, input validation naming the index, and remote-code consent.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from tests.fixtures.tiny_vlm import (  # noqa: F401
    adapter_config,
    adapter_state,
    tiny_vlm_cache,
    write_adapter,
)
from zoo.adapters.vlm_inputs import VLMItem, build_prompt
from zoo.errors import InputTooLargeError, InvalidInputError, UnsafeModelFileError, WeightsUnavailableError
from zoo.lora import merge_adapter, read_adapter, resolve_adapter

VLM2VEC, V2, MME5, QWEN3 = "vlm2vec-qwen2vl-2b", "vlm2vec-v2.0", "mme5-mllama-11b-instruct", "qwen3-vl-embedding-2b"
TINY = (VLM2VEC, V2, MME5, QWEN3)
IMAGE_Q = "Represent the given image with the following question:"
CAPTION_Q = "Find me an everyday image that matches the given caption:"


def _image(h: int = 60, w: int = 90, seed: int = 0):
    from PIL import Image

    return Image.fromarray(np.random.RandomState(seed).randint(0, 255, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def models(tiny_vlm_cache):  # noqa: F811
    return functools.cache(zoo.load)  # each tiny model loaded once per module


class Recorder:
    """Wraps a backbone's forward and keeps the (input_ids, attention_mask, batch) it is given."""

    def __init__(self, emb, monkeypatch):
        self.calls: list[tuple[torch.Tensor, torch.Tensor, list]] = []
        original = emb.backbone.forward

        def forward(input_ids, mask, batch):
            self.calls.append((input_ids.clone(), mask.clone(), batch))
            return original(input_ids, mask, batch)

        monkeypatch.setattr(emb.backbone, "forward", forward)

    def fed(self) -> list[list[int]]:
        """The real (unpadded) token ids of every row the model saw, in call order."""
        return [ids[m.bool()].tolist() for ids, mask, _ in self.calls for ids, m in zip(ids, mask, strict=True)]


def _tokens(emb, ids: list[int]) -> str:
    tok = emb.backbone.tokenizer if hasattr(emb.backbone, "tokenizer") else emb.backbone.processor.tokenizer
    return tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


# -- cards ----------------------------------------------------------------------------------------------------------


def test_vlm_cards_are_registered_and_consistent():
    for name in (*TINY, "vlm2vec-full"):
        card = zoo.card(name)
        assert card.adapter == "vlm" and card.pooling == "last" and not card.offline_ready
        assert {"text", "image", "interleaved"} <= set(card.modalities)
    card = zoo.card(VLM2VEC)
    assert card.options["lora_weights_format"] == "torch-weights-only"
    assert "adapter_model.bin" in card.hub_role("adapter").files
    assert zoo.card(VLM2VEC).weights_format == "safetensors"  # the base stays safetensors-only
    assert zoo.card("vlm2vec-full").remote_code
    assert zoo.card(QWEN3).matryoshka_dims[-1] == 2048


# -- exact prompts ----------------------------------------------------------------------------------------------------


def _embed_prompt_cases(emb, img) -> None:
    """Text, instructed text, an image, and an instructed image-text pair: the four prompt cases both papers use."""
    emb.embed(["A cat and a dog"])
    emb.embed(["A cat and a dog."], task_instruction=CAPTION_Q)
    emb.embed([img])
    emb.embed([{"image": img, "text": "What is in the image"}], task_instruction=IMAGE_Q)


@pytest.mark.parametrize("name", [VLM2VEC, V2])
def test_vlm2vec_feeds_the_evaluation_prompts_by_default(models, name, monkeypatch):
    """MMEB's evaluation form (src/data/eval_dataset): a newline after the image token and at the end."""
    emb = models(name)
    rec = Recorder(emb, monkeypatch)
    img = _image()
    _embed_prompt_cases(emb, img)
    emb.embed([{"image": img}], prompt_name="image_question")
    grid = emb.backbone.prepare(VLMItem(image=img, prompt="<|image_pad|>"), 0).extras["image_grid_thw"]
    pads = "<|image_pad|>" * (int(grid.prod()) // 4)
    assert pads and [_tokens(emb, row) for row in rec.fed()] == [
        "A cat and a dog",
        f"{CAPTION_Q} A cat and a dog.\n",
        f"{pads}\nRepresent the given image.\n",
        f"{pads}\n{IMAGE_Q} What is in the image\n",
        f"{pads}\n{IMAGE_Q}\n",
    ]
    vision_start = emb.backbone.tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert all(vision_start not in row for row in rec.fed())  # VLM2Vec prompts have no vision markers
    card = emb.card
    assert card.instruction_template.format(instruction=CAPTION_Q, input="x") == f"{CAPTION_Q} x"


def test_mme5_feeds_the_original_prompts(models, monkeypatch):
    emb = models(MME5)
    rec = Recorder(emb, monkeypatch)
    img = _image()
    _embed_prompt_cases(emb, img)
    assert [_tokens(emb, row) for row in rec.fed()] == [
        "<|begin_of_text|>A cat and a dog",
        f"<|begin_of_text|>{CAPTION_Q} A cat and a dog.\n",
        "<|image|><|begin_of_text|>Represent the given image.\n",
        f"<|image|><|begin_of_text|>{IMAGE_Q} What is in the image\n",
    ]
    bos = emb.backbone.processor.tokenizer.bos_token_id
    assert all(row.count(bos) == 1 for row in rec.fed())  # one BOS: the tokenizer adds none of its own
    assert emb.card.instruction_template.format(instruction=CAPTION_Q, input="x") == f"{CAPTION_Q} x\n"


def test_qwen3_vl_feeds_the_chat_prompt(models, monkeypatch):
    emb = models(QWEN3)
    rec = Recorder(emb, monkeypatch)
    img = _image()
    emb.embed(["A cat and a dog"])
    emb.embed([{"image": img, "text": "a photo"}], task_instruction="Retrieve images relevant to the query")
    emb.embed([img])
    fed = [_tokens(emb, row) for row in rec.fed()]
    head, tail = "<|im_start|>system\n", "<|im_end|>\n<|im_start|>assistant\n"
    default = "Represent the user's input."
    assert fed[0] == f"{head}{default}<|im_end|>\n<|im_start|>user\nA cat and a dog{tail}"
    grid = rec.calls[1][2][0].extras["image_grid_thw"]
    pads = "<|image_pad|>" * (int(grid.prod()) // 4)
    vision = f"<|vision_start|>{pads}<|vision_end|>"
    # the instruction gets a final "." (it ends in no punctuation); an image alone gets no text turn
    assert fed[1] == (f"{head}Retrieve images relevant to the query.<|im_end|>\n<|im_start|>user\n{vision}a photo"
                      f"{tail}")
    assert fed[2] == f"{head}{default}<|im_end|>\n<|im_start|>user\n{vision}{tail}"


# -- pooling and batching -------------------------------------------------------------------------------------------


def _direct_last_state(emb, text: str) -> torch.Tensor:
    """The model's own last hidden state at the final token of one unpadded text (no zoo pooling)."""
    prompt = build_prompt(emb.style, VLMItem(text=text), None, emb.card.options)
    ids = emb.backbone.prepare(VLMItem(text=text, prompt=prompt), 0).ids
    input_ids = torch.tensor([ids])
    with torch.inference_mode():
        out = emb.backbone.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), use_cache=False)
    return torch.nn.functional.normalize(out.last_hidden_state[0, -1].float(), dim=-1)


@pytest.mark.parametrize("name", [VLM2VEC, MME5, QWEN3])
@pytest.mark.parametrize("side", ["right", "left"])
def test_pooling_takes_the_last_real_token(models, name, side, monkeypatch):
    emb = models(name)
    monkeypatch.setattr(emb, "padding_side", side)
    texts = ["short", "a much longer text that needs many more tokens than the first one", "mid length"]
    rec = Recorder(emb, monkeypatch)
    vectors = emb.embed(texts, batch_size=3).vectors
    _, mask, _ = rec.calls[0]
    assert not bool(mask.all()), "the batch must be padded for this test to mean anything"
    assert bool(mask[:, 0 if side == "left" else -1].sum() < len(texts))  # padding on the intended side
    for text, vec in zip(texts, vectors, strict=True):
        ref = _direct_last_state(emb, text).numpy()
        assert float(vec @ ref) >= 0.99999, (side, text)


@pytest.mark.parametrize("name", [VLM2VEC, MME5, QWEN3])
@pytest.mark.parametrize("side", ["right", "left"])
def test_batch_of_one_equals_row_in_padded_batch(models, name, side, monkeypatch):
    emb = models(name)
    monkeypatch.setattr(emb, "padding_side", side)
    items = [
        {"image": _image(60, 90, 1), "text": "a long question about what the picture shows in detail"},
        {"image": _image(40, 40, 2)},
        {"text": "a text only item"},
        {"image": _image(120, 64, 3), "text": "q"},
    ]
    together = emb.embed(items, task_instruction=IMAGE_Q, batch_size=4).vectors
    alone = np.stack([emb.embed([it], task_instruction=IMAGE_Q).vectors[0] for it in items])
    assert np.all(np.sum(together * alone, axis=1) >= 0.99999)
    assert float(together[0] @ together[3]) < 0.9999  # different inputs stay different


def test_matryoshka_truncation_renormalizes_prefix(models):
    emb = models(QWEN3)
    full = emb.embed(["a cat", "a dog"]).vectors
    short = emb.embed(["a cat", "a dog"], dim=256).vectors
    expected = full[:, :256] / np.linalg.norm(full[:, :256], axis=1, keepdims=True)
    assert short.shape == (2, 256) and np.allclose(short, expected, atol=1e-6)


# -- LoRA / DoRA -----------------------------------------------------------------------------------------------------


def _base(tiny_vlm_cache):  # noqa: F811
    from transformers import Qwen2VLForConditionalGeneration

    from zoo.adapters.text import quiet_transformers

    with quiet_transformers():
        return Qwen2VLForConditionalGeneration.from_pretrained(tiny_vlm_cache.snapshots[VLM2VEC], dtype=torch.float32)


def _peft_merged(tiny_vlm_cache, adapter: Path, rename):  # noqa: F811
    peft = pytest.importorskip("peft")
    model = peft.PeftModel.from_pretrained(_base(tiny_vlm_cache), str(adapter), key_mapping=dict(rename))
    return model.merge_and_unload().state_dict()


@pytest.mark.parametrize("kind", ["dora-bin", "dora-safetensors", "lora-patterns"])
def test_merge_equals_peft_merge_and_unload(tiny_vlm_cache, tmp_path, kind):  # noqa: F811
    rename = [tuple(r) for r in zoo.card(VLM2VEC).options["lora_rename"]]
    if kind == "dora-bin":
        adapter = tiny_vlm_cache.adapters[VLM2VEC]
    elif kind == "dora-safetensors":
        adapter = tiny_vlm_cache.adapters[V2]
    else:  # plain LoRA with rsLoRA scaling and per-module rank/alpha patterns
        adapter = tmp_path
        config = adapter_config(dora=False) | {"use_rslora": True, "alpha_pattern": {"o_proj": 4}}
        write_adapter(adapter, adapter_state(_base(tiny_vlm_cache), dora=False, seed=7), config, pickle=False)
    base = {k: v.clone() for k, v in _base(tiny_vlm_cache).state_dict().items()}
    ours_model = _base(tiny_vlm_cache)
    merged = merge_adapter(ours_model, *read_adapter(adapter, allow_pickle=kind == "dora-bin"), rename=rename)
    ours = ours_model.state_dict()
    theirs = _peft_merged(tiny_vlm_cache, adapter, rename)
    changed = {k for k in theirs if not torch.equal(theirs[k], base[k])}
    assert changed == {f"{m}.weight" for m in merged} and len(merged) == 10  # peft applied every module too
    assert set(ours) == set(theirs)
    assert max(float((ours[k] - theirs[k]).abs().max()) for k in ours) < 1e-6


def test_loaded_embedder_has_the_adapter_merged(models, tiny_vlm_cache):  # noqa: F811
    emb = models(VLM2VEC)
    rename = [tuple(r) for r in emb.card.options["lora_rename"]]
    theirs = _peft_merged(tiny_vlm_cache, tiny_vlm_cache.adapters[VLM2VEC], rename)
    name = "model.language_model.layers.1.mlp.down_proj.weight"
    ours = dict(emb.backbone.model.named_parameters())[name.removeprefix("model.")]
    assert torch.allclose(ours, theirs[name], atol=1e-6) and len(emb.lora_modules) == 10


def test_zoo_lora_and_adapter_import_no_peft():
    modules = "zoo.lora, zoo.adapters.vlm, zoo.adapters.vlm_backbones, zoo.adapters.vlm_qwen, zoo.adapters.vlm_mllama"
    code = f"import sys, {modules}; print('peft' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_pickle_adapter_is_read_with_weights_only(tiny_vlm_cache, monkeypatch):  # noqa: F811
    calls = []
    original = torch.load

    def spy(*args, **kwargs):
        calls.append((str(args[0]), kwargs.get("weights_only")))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    zoo.load(VLM2VEC)
    assert calls and all(weights_only is True for _, weights_only in calls)
    assert any(path.endswith("adapter_model.bin") for path, _ in calls)


class _Payload:
    """Pickles to a call of ``_record`` on load: what a malicious checkpoint does."""

    def __reduce__(self):
        return (_record, ("executed",))


_EXECUTED: list[str] = []


def _record(value: str) -> str:
    _EXECUTED.append(value)
    return value


def test_malicious_pickle_adapter_is_refused(tiny_vlm_cache, tmp_path):  # noqa: F811
    (tmp_path / "adapter_config.json").write_text(json.dumps(adapter_config()), encoding="utf-8")
    torch.save({"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": _Payload()},
               tmp_path / "adapter_model.bin")
    with pytest.raises(UnsafeModelFileError, match="weights_only"):
        zoo.load(VLM2VEC, lora_path=tmp_path)
    assert _EXECUTED == []
    with pytest.raises(UnsafeModelFileError, match="safetensors only"):
        read_adapter(tmp_path, allow_pickle=False)  # a safetensors-only card never opens the pickle


def test_missing_adapter_says_how_to_get_it(tiny_vlm_cache):  # noqa: F811
    card = zoo.card(VLM2VEC)
    sources = tuple(replace(s, revision="1" * 40) if s.role == "adapter" else s for s in card.sources)
    other = replace(card, sources=sources)
    with pytest.raises(WeightsUnavailableError, match="TIGER-Lab/VLM2Vec-Qwen2VL-2B.*forbidden by"):
        resolve_adapter(other)


# -- images ----------------------------------------------------------------------------------------------------------


def _grid(emb, image) -> list[int]:
    prompt = build_prompt(emb.style, VLMItem(image=image), None, emb.card.options)
    return emb.backbone.prepare(VLMItem(image=image, prompt=prompt), 0).extras["image_grid_thw"][0].tolist()


def test_qwen2_vl_image_resolution_limits(models):
    emb = models(VLM2VEC)
    opts = emb.card.options
    t, h, w = _grid(emb, _image(3000, 4000))
    assert t == 1 and h * w * 14 * 14 <= opts["max_pixels"] and h * w // 4 <= 1280
    assert h * w * 14 * 14 > 0.9 * opts["max_pixels"]  # scaled to the limit, not far below it
    assert _grid(emb, _image(10, 20)) == [1, 4, 4]  # under 28 px: resized to 56x56 first, as the original
    assert _grid(emb, _image(27, 300)) == [1, 4, 4]
    t, h, w = _grid(emb, _image(30, 30))
    assert h * w * 14 * 14 >= opts["min_pixels"]


def test_qwen3_vl_image_resolution_limits(models):
    emb = models(QWEN3)
    t, h, w = _grid(emb, _image(3000, 4000))
    assert h * w * 16 * 16 <= emb.card.options["max_pixels"] and h % 2 == 0 and w % 2 == 0
    t, h, w = _grid(emb, _image(8, 8))
    assert h * w * 16 * 16 >= emb.card.options["min_pixels"]


# -- bad inputs ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"image": None, "caption": "x"}, "unknown key"),
        ({"text": 5}, "must be a str"),
        ({"image": "/no/such/file.png"}, "no such image file"),
        ({}, "needs an 'image', a 'video', a 'document', a 'text'"),
        ("just a string", "must be a dict"),
        ({"text": "sneaky <|image_pad|> token"}, r"reserved token '<\|image_pad\|>'"),
        ({"text": "sneaky <|video_pad|> token"}, r"reserved token '<\|video_pad\|>'"),
        ({"video": [np.zeros((8, 8, 3), np.uint8)] * 2}, "takes no video"),
        ({"image": [np.zeros((32, 32, 3), np.uint8)] * 2, "text": "two"}, None),
        ({"content": [{"image": np.zeros((32, 32, 3), np.uint8), "text": "x"}]}, "must hold one of"),
        ({"content": []}, "non-empty list"),
        ({"content": [{"text": "x"}], "text": "y"}, "takes no other keys"),
        ({"page": 2, "text": "x"}, "'page' needs a 'document'"),
    ],
)
def test_bad_interleaved_input_names_the_index(models, bad, match):
    emb = models(VLM2VEC)  # V1: one image or several, no video
    if match is None:  # several images are fine for a Qwen2-VL model
        assert emb.embed([{"text": "fine"}, bad], modality="interleaved").vectors.shape == (2, emb.dim)
        return
    with pytest.raises(InvalidInputError, match=match) as info:
        emb.embed([{"text": "fine"}, bad], modality="interleaved")
    assert info.value.index == 1


def test_mixed_inputs_need_interleaved_dicts(models):
    emb = models(VLM2VEC)
    with pytest.raises(InvalidInputError, match="mix"):
        emb.embed(["text", _image()])
    assert emb.embed([]).vectors.shape == (0, 1536)
    with pytest.raises(InvalidInputError, match="not both"):
        emb.embed(["x"], task_instruction="a", prompt_name="image")


# -- remote code -----------------------------------------------------------------------------------------------------


def test_vlm2vec_full_prompts_use_phi_image_token():
    opts, img = zoo.card("vlm2vec-full").options, _image()
    assert build_prompt("vlm2vec", VLMItem(image=img), None, opts, "demo") == "<|image_1|> Represent the given image."
    assert (build_prompt("vlm2vec", VLMItem(image=img, text="What is in the image"), IMAGE_Q, opts, "demo")
            == f"<|image_1|> {IMAGE_Q} What is in the image")
    assert build_prompt("vlm2vec", VLMItem(text="A cat and a dog"), None, opts, "demo") == "A cat and a dog"
    assert build_prompt("vlm2vec", VLMItem(image=img), None, opts) == "<|image_1|>\nRepresent the given image.\n"
    assert build_prompt("vlm2vec", VLMItem(text="A cat and a dog"), None, opts) == "A cat and a dog"


def test_vlm2vec_full_needs_consent(tiny_vlm_cache):  # noqa: F811
    with pytest.raises(UnsafeModelFileError, match="trust_remote_code=True"):
        zoo.load("vlm2vec-full")
    with pytest.raises(WeightsUnavailableError, match="TIGER-Lab/VLM2Vec-Full"):
        zoo.load("vlm2vec-full", trust_remote_code=True)  # consent given: it goes on to look for the weights


def test_vlm2vec_image_tokens_get_plain_1d_positions(models):
    """VLM2Vec prompts lack <|vision_start|>, so the original gives image tokens 1-D positions, not M-RoPE."""
    emb = models(VLM2VEC)
    item = {"image": _image(), "text": "What is in the image"}
    vector = emb.embed([item], task_instruction=IMAGE_Q).vectors[0]
    prompt = build_prompt(emb.style, VLMItem(image=_image(), text=item["text"]), IMAGE_Q, emb.card.options)
    prepared = emb.backbone.prepare(VLMItem(image=_image(), prompt=prompt), 0)
    ids = torch.tensor([prepared.ids])
    image_tokens = (ids == emb.backbone.image_id).int()
    common = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "use_cache": False,
              **{k: prepared.extras[k] for k in ("pixel_values", "image_grid_thw")}}
    with torch.inference_mode():
        flat = emb.backbone.model(**common, position_ids=torch.arange(ids.shape[1])[None]).last_hidden_state
        mrope = emb.backbone.model(**common, mm_token_type_ids=image_tokens).last_hidden_state
    flat, mrope = (torch.nn.functional.normalize(h[0, -1], dim=-1).numpy() for h in (flat, mrope))
    assert float(vector @ flat) >= 0.99999
    assert float(vector @ mrope) < 0.9999  # transformers 5's default (3-D positions) would change the vector


def test_over_long_inputs_are_cut_or_refused(models, monkeypatch):
    emb = models(VLM2VEC)
    monkeypatch.setattr(emb, "max_tokens", 6)
    long = "one two three four five six seven eight nine ten eleven twelve"
    with pytest.raises(InputTooLargeError, match="truncate=True") as info:
        emb.embed(["short", long], truncate=False)
    assert info.value.index == 1
    with pytest.warns(UserWarning, match="truncated"):
        cut = emb.embed([long])
    assert cut.info["truncated"] == 1
    with pytest.raises(InputTooLargeError, match="image alone") as info:
        emb.embed([_image(120, 120)])  # its 16 image tokens do not fit in 6
    assert info.value.index == 0
    with pytest.raises(InvalidInputError, match="lora_path"):
        zoo.load(MME5, lora_path="/tmp")


def test_chunks_and_groups_keep_row_order(models, monkeypatch):
    import zoo.adapters.vlm as vlm

    emb = models(MME5)  # Mllama keeps text-only and image rows in separate batches
    monkeypatch.setattr(vlm, "CHUNK", 2)
    items = [{"text": "one"}, {"image": _image(seed=4)}, {"text": "three words here"}, {"image": _image(seed=5)},
             {"image": _image(seed=6), "text": "five"}]
    together = emb.embed(items, batch_size=8).vectors
    alone = np.stack([emb.embed([it]).vectors[0] for it in items])
    assert np.all(np.sum(together * alone, axis=1) >= 0.99999)
