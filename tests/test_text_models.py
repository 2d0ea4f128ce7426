"""Every hub text card, loaded by its registry name from a Hugging Face cache of tiny models.

The weights are random (tests/fixtures/tiny_text.py builds them), so these tests check what
the zoo does around the model, not retrieval quality: which files it loads, the exact token
ids each model is fed (prompts, instruction templates, EOS, UniXcoder's input format), that
pooling ignores padding, remote-code consent and pinning, Matryoshka truncation, the offline
error and the sha256 check.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

import zoo
from tests.fixtures.tiny_text import JINA_CODE_REPO, snapshot_dir, training_corpus
from zoo.modelcard import Source
from zoo.registry import unregister

REPO_ROOT = Path(__file__).resolve().parents[1]
HUB_TEXT = sorted(n for n in zoo.list_models() if zoo.card(n).adapter == "text" and not zoo.card(n).offline_ready)
LAST_TOKEN = [n for n in HUB_TEXT if zoo.card(n).pooling == "last"]
NOT_LAST_TOKEN = [n for n in HUB_TEXT if zoo.card(n).pooling != "last"]

#: The model class each card must load as (the tiny stand-ins keep the real architectures).
ARCHITECTURE = {
    "bge-base-en-v1.5": "BertModel",
    "bge-small-en-v1.5": "BertModel",
    "codet5p-110m-embedding": "CodeT5pEmbeddingModel",
    "e5-base-v2": "BertModel",
    "e5-mistral-7b-instruct": "MistralModel",
    "e5-small-v2": "BertModel",
    "gte-base": "BertModel",
    "jina-code-embeddings-0.5b": "Qwen2Model",
    "jina-embeddings-v2-base-code": "JinaBertModel",
    "multilingual-e5-small": "BertModel",
    "qwen3-embedding-0.6b": "Qwen3Model",
    "unixcoder-base": "RobertaModel",
}

TEXTS = [
    "hello world",
    "Return a new list containing all items from the iterable in ascending order.",
    "def add(a, b):\n    return a + b\n",
    "the quick brown fox jumps over the lazy dog",
]
SHORT = "a short text"
LONG = " ".join(training_corpus()[:6])
CODES = [
    "x = 1",
    "def add(a, b):\n    return a + b\n",
    "for i in range(10):\n    if i % 2:\n        print(i)\n",
    "import os\nprint(os.path.join('a', 'b'))",
]


def load(name: str, **options):
    """zoo.load with consent exactly where the card needs it."""
    return zoo.load(name, trust_remote_code=zoo.card(name).remote_code, **options)


def rowwise_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@contextmanager
def fed_batches(m) -> Iterator[list[list[list[int]]]]:
    """Record every batch of token id lists the embedder hands its model during the block."""
    batches: list[list[list[int]]] = []
    original = m.forward_ids

    def spy(rows):
        batches.append([list(r) for r in rows])
        return original(rows)

    m.forward_ids = spy
    try:
        yield batches
    finally:
        del m.forward_ids


def model_input(m, text: str, **embed_kwargs) -> list[int]:
    """The token ids the model is fed for one text, through the public embed call."""
    with fed_batches(m) as batches:
        m.embed([text], **embed_kwargs)
    assert len(batches) == 1 and len(batches[0]) == 1
    return batches[0][0]


# -- 1. every hub text card loads and embeds ----------------------------------------------------------------------


@pytest.mark.parametrize("name", HUB_TEXT)
def test_hub_text_card_loads_from_the_cache_and_embeds(hf_text_cache, name):
    card = zoo.card(name)
    m = load(name)
    assert m.resolved.origin == "hf-cache"
    assert m.resolved.path == hf_text_cache.snapshot(name)
    assert m.resolved.revision == card.hub_source.revision
    assert type(m.model).__name__ == ARCHITECTURE[name]

    e = m.embed(TEXTS)
    v = np.asarray(e.vectors)
    assert v.shape == (len(TEXTS), card.dim) == e.shape
    assert v.dtype == np.float32 and np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert e.space == card.space and e.model == name and e.normalized
    # Different texts give different vectors (a constant output would pass every check above).
    sims = v @ v.T
    assert (sims[~np.eye(len(TEXTS), dtype=bool)] < 0.99999).all()
    # Row i belongs to text i whatever the batching.
    one_by_one = np.vstack([m.embed([t]).vectors for t in TEXTS])
    assert (rowwise_cos(one_by_one, v) >= 0.99999).all()


def test_hub_text_cards_are_all_covered():
    assert set(HUB_TEXT) == set(ARCHITECTURE)


@pytest.mark.parametrize(
    "name",
    HUB_TEXT,
)
def test_empty_text_gives_a_unit_vector_or_a_clear_error(hf_text_cache, name):
    """check_texts accepts '' ("Empty strings are fine"); the result must then be a real vector, also for
    tokenizers that add no special tokens (Qwen2's, on jina-code-embeddings), where '' has no ids at all."""
    m = load(name)
    for batch in ([""], ["", "hello world"]):
        try:
            v = m.embed(batch).vectors
        except zoo.InvalidInputError as exc:  # refusing it, with the index, is fine too
            assert exc.index == 0
            continue
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


# -- 2. the exact model inputs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["e5-small-v2", "e5-base-v2", "multilingual-e5-small"])
@pytest.mark.parametrize("prompt", ["query", "passage"])
def test_e5_prompts_prefix_the_text(hf_text_cache, name, prompt):
    m = load(name)
    ids = model_input(m, "hello world", prompt_name=prompt)
    tok = m.tokenizer
    assert ids == tok(f"{prompt}: hello world")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    if name == "multilingual-e5-small":  # sentencepiece decodes back to the exact text
        assert tok.decode(ids, skip_special_tokens=True) == f"{prompt}: hello world"
    else:  # uncased WordPiece: compare tokens
        assert tok.convert_ids_to_tokens(ids) == ["[CLS]", prompt, ":", "hello", "world", "[SEP]"]
    assert tok.unk_token_id not in ids


def test_e5_without_prompt_embeds_the_text_as_given(hf_text_cache):
    m = load("e5-small-v2")
    assert m.tokenizer.convert_ids_to_tokens(model_input(m, "hello world")) == ["[CLS]", "hello", "world", "[SEP]"]


@pytest.mark.parametrize("name", ["bge-small-en-v1.5", "bge-base-en-v1.5"])
def test_bge_query_prompt_is_exact(hf_text_cache, name):
    m = load(name)
    prompt = "Represent this sentence for searching relevant passages: "
    assert m.card.prompts == {"query": prompt}
    ids = model_input(m, "hello world", prompt_name="query")
    assert m.tokenizer.convert_ids_to_tokens(ids) == [
        "[CLS]", "represent", "this", "sentence", "for", "searching", "relevant", "passages", ":", "hello", "world",
        "[SEP]",
    ]
    # Passages take no prompt.
    assert m.tokenizer.convert_ids_to_tokens(model_input(m, "hello world")) == ["[CLS]", "hello", "world", "[SEP]"]


def test_qwen3_instruction_template_is_exact(hf_text_cache):
    m = load("qwen3-embedding-0.6b")
    ids = model_input(m, "hello", task_instruction="Find X")
    text = "Instruct: Find X\nQuery:hello"
    body = m.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids[: len(body)] == body
    assert m.tokenizer.decode(ids, skip_special_tokens=True) == text
    # Documents carry no instruction.
    assert m.tokenizer.decode(model_input(m, "hello"), skip_special_tokens=True) == "hello"


def test_qwen3_ends_with_exactly_one_endoftext(hf_text_cache):
    """The pinned tokenizer names <|im_end|> as eos but appends <|endoftext|>, which the model pools on:
    the card names its EOS token so the zoo neither pools on <|im_end|> nor adds a second end token."""
    m = load("qwen3-embedding-0.6b")
    eot = m.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    ends = {eot, m.tokenizer.convert_tokens_to_ids("<|im_end|>")}
    ids = model_input(m, "hello", task_instruction="Find X")
    assert m.tokenizer.decode(ids[:-1]) == "Instruct: Find X\nQuery:hello"
    assert ids[-1] == eot
    assert sum(i in ends for i in ids) == 1


def test_append_eos_adds_no_second_eos_when_the_tokenizer_already_ends_with_it(hf_text_cache):
    """The de-duplication append_eos relies on, checked with the EOS Qwen3-Embedding really pools on."""
    m = load("qwen3-embedding-0.6b")
    eot = m.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert m.tokenizer("hello")["input_ids"][-1] == eot  # this revision's tokenizer appends it itself
    assert m.eos_id == eot  # the card names the EOS token it pools on
    ids = model_input(m, "hello", task_instruction="Find X")
    assert m.tokenizer.decode(ids[:-1]) == "Instruct: Find X\nQuery:hello"
    assert ids[-1] == eot and ids.count(eot) == 1


def test_e5_mistral_appends_eos_and_truncation_keeps_it(hf_text_cache):
    m = load("e5-mistral-7b-instruct")
    tok = m.tokenizer
    bos, eos = tok.convert_tokens_to_ids("<s>"), tok.convert_tokens_to_ids("</s>")
    assert m.eos_id == eos
    task = "Given a web search query, retrieve relevant passages that answer the query"
    query = "how much protein should a female eat"
    ids = model_input(m, query, task_instruction=task)
    assert ids[0] == bos and ids[-1] == eos and ids.count(eos) == 1
    assert tok.decode(ids, skip_special_tokens=True) == f"Instruct: {task}\nQuery: {query}"

    m.max_tokens = 16
    full = tok(LONG)["input_ids"]
    assert len(full) > 16
    with pytest.warns(UserWarning, match="truncated"):
        ids = model_input(m, LONG)
    assert len(ids) == 16
    assert ids[:-1] == full[:15] and ids[-1] == eos
    with pytest.raises(zoo.InputTooLargeError):
        m.embed([LONG], truncate=False)


def test_unixcoder_input_format(hf_text_cache):
    m = load("unixcoder-base")
    tok = m.tokenizer
    enc_only = tok.convert_tokens_to_ids("<encoder-only>")
    assert enc_only not in (None, tok.unk_token_id)
    code = "def add(a, b):\n    return a + b\n"
    ids = model_input(m, code)
    body = tok(code, add_special_tokens=False)["input_ids"]
    assert ids == [tok.cls_token_id, enc_only, tok.sep_token_id, *body, tok.sep_token_id]
    assert tok.convert_ids_to_tokens(ids[:3]) == ["<s>", "<encoder-only>", "</s>"]

    m.max_tokens = 12  # the official wrapper keeps max_length - 4 code tokens
    with pytest.warns(UserWarning, match="truncated"):
        ids = model_input(m, code)
    assert ids == [tok.cls_token_id, enc_only, tok.sep_token_id, *body[:8], tok.sep_token_id]


def test_jina_code_prompt_prefix_is_exact(hf_text_cache):
    m = load("jina-code-embeddings-0.5b")
    prompt = m.card.prompts["nl2code_query"]
    assert prompt == "Find the most relevant code snippet given the following query:\n"
    ids = model_input(m, "sort a list", prompt_name="nl2code_query")
    assert m.tokenizer.decode(ids) == prompt + "sort a list"
    ids = model_input(m, "xs.sort()", prompt_name="nl2code_document")
    assert m.tokenizer.decode(ids) == "Candidate code snippet:\nxs.sort()"


# -- 3. pooling ignores padding -----------------------------------------------------------------------------------


def _padded_together(batches: list[list[list[int]]]) -> bool:
    return any(len(b) == 2 and len({len(r) for r in b}) == 2 for b in batches)


@pytest.mark.parametrize("name", LAST_TOKEN)
def test_last_token_pooling_is_independent_of_padding(hf_text_cache, name):
    m = load(name)
    assert len(m.tokenize([LONG])[0]) >= 5 * len(m.tokenize([SHORT])[0])
    alone = m.embed([SHORT]).vectors
    rows = {}
    for side in ("left", "right"):
        m.padding_side = side
        with fed_batches(m) as batches:
            rows[side] = m.embed([SHORT, LONG]).vectors
        assert _padded_together(batches)
        assert rowwise_cos(rows[side][:1], alone)[0] >= 0.99999, side
    assert (rowwise_cos(rows["left"], rows["right"]) >= 0.99999).all()


@pytest.mark.parametrize("name", NOT_LAST_TOKEN)
def test_mean_cls_and_model_pooling_are_independent_of_padding(hf_text_cache, name):
    m = load(name)
    assert len(m.tokenize([LONG])[0]) >= 5 * len(m.tokenize([SHORT])[0])
    alone = m.embed([SHORT]).vectors
    with fed_batches(m) as batches:
        both = m.embed([SHORT, LONG]).vectors
    assert _padded_together(batches)
    assert rowwise_cos(both[:1], alone)[0] >= 0.99999


# -- 4. UniXcoder against the official wrapper's forward ----------------------------------------------------------


def _unixcoder_reference(folder: Path, codes: list[str], max_length: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """The official UniXcoder wrapper's encoder-only embedding, re-implemented; returns (vectors, CLS vectors).

    Tokens ``[cls, "<encoder-only>", sep] + tokenize(code)[:max_length - 4] + [sep]``, right-padded
    with pad_token_id; the model sees the pairwise mask ``mask[:, :, None] * mask[:, None, :]``;
    the vector is the mean over non-pad tokens, L2-normalized.
    """
    import torch
    import torch.nn.functional as F
    from transformers import AutoTokenizer, RobertaModel

    tok = AutoTokenizer.from_pretrained(str(folder))
    model = RobertaModel.from_pretrained(str(folder)).eval()
    pad = model.config.pad_token_id
    rows = []
    for code in codes:
        tokens = [tok.cls_token, "<encoder-only>", tok.sep_token, *tok.tokenize(code)[: max_length - 4], tok.sep_token]
        rows.append(tok.convert_tokens_to_ids(tokens))
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    mask = ids.ne(pad)
    pairwise = mask.unsqueeze(1) * mask.unsqueeze(2)  # (B, L, L), as the wrapper builds it
    # The wrapper hands this 3-D mask to the model; transformers 4 added the head axis itself,
    # giving (B, 1, L, L). transformers 5 refuses 3-D masks but takes that 4-D boolean mask as is,
    # so adding the axis here feeds the model exactly the attention pattern the wrapper did.
    with torch.no_grad():
        hidden = model(ids, attention_mask=pairwise[:, None])[0]
    mean = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(-1).unsqueeze(-1)
    return F.normalize(mean, p=2, dim=1).numpy(), F.normalize(hidden[:, 0], p=2, dim=1).numpy()


def test_unixcoder_matches_the_official_wrapper(hf_text_cache):
    m = load("unixcoder-base")
    long_code = "def f(x):\n    return [y * 2 for y in x if y > 0]\n" * 60
    codes = [*CODES, long_code]
    assert len(m.tokenizer.tokenize(long_code)) > 508  # exercises the max_length - 4 cut
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the truncation warning
        with fed_batches(m) as batches:
            got = m.embed(codes, modality="code").vectors
    assert max(len(r) for b in batches for r in b) == 512
    assert len(batches) == 1  # one padded batch, as the reference
    want, cls = _unixcoder_reference(hf_text_cache.snapshot("unixcoder-base"), codes)
    assert (rowwise_cos(got, want) >= 0.99999).all()
    assert (rowwise_cos(got, cls) < 0.999).all()  # CLS pooling would not pass


# -- 5. remote code -----------------------------------------------------------------------------------------------


def _codet5p_reference(folder: Path, rows: list[list[int]], pad: int) -> np.ndarray:
    """T5 encoder + the snapshot's ``proj`` weights, first token, L2 norm; built without the remote-code files."""
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file
    from transformers import T5Config, T5EncoderModel

    raw = json.loads((folder / "config.json").read_text())
    config = T5Config(**{k: v for k, v in raw.items() if k not in ("auto_map", "architectures", "model_type")})
    encoder = T5EncoderModel(config).eval()
    weights = load_file(str(folder / "model.safetensors"))
    proj = torch.nn.Linear(config.d_model, raw["embed_dim"])
    proj.load_state_dict({"weight": weights.pop("proj.weight"), "bias": weights.pop("proj.bias")})
    weights.setdefault("encoder.embed_tokens.weight", weights["shared.weight"])
    missing, unexpected = encoder.load_state_dict(weights, strict=False)
    assert not unexpected and not [k for k in missing if k != "encoder.embed_tokens.weight"]
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    with torch.no_grad():
        hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return F.normalize(proj(hidden[:, 0]), dim=-1).numpy()


def test_codet5p_needs_consent_and_runs_its_remote_code(hf_text_cache):
    with pytest.raises(zoo.UnsafeModelFileError, match="trust_remote_code"):
        zoo.load("codet5p-110m-embedding")
    m = zoo.load("codet5p-110m-embedding", trust_remote_code=True)
    cls = type(m.model)
    assert cls.__name__ == "CodeT5pEmbeddingModel"
    assert Path(sys.modules[cls.__module__].__file__).is_relative_to(hf_text_cache.modules)
    got = m.embed(CODES, modality="code").vectors
    assert got.shape == (len(CODES), 256)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    want = _codet5p_reference(hf_text_cache.snapshot("codet5p-110m-embedding"), m.tokenize(CODES), m.pad_id)
    assert (rowwise_cos(got, want) >= 0.99999).all()


def test_jina_v2_needs_consent_and_runs_code_from_the_pinned_code_repo(hf_text_cache):
    card = zoo.card("jina-embeddings-v2-base-code")
    with pytest.raises(zoo.UnsafeModelFileError, match="trust_remote_code"):
        zoo.load(card.name)
    # The code repo's refs/main points at a commit whose modules raise ImportError (see the fixture),
    # so this load succeeds only because the card's pinned code repository revision reaches transformers.
    m = zoo.load(card.name, trust_remote_code=True)
    module_file = Path(sys.modules[type(m.model).__module__].__file__)
    assert module_file.is_relative_to(hf_text_cache.modules)
    assert card.hub_role("code").revision in module_file.parts
    assert JINA_CODE_REPO.split("/")[0] in module_file.parts
    assert m.embed(["def f(): pass"]).shape == (1, 768)


def test_consent_is_refused_for_a_card_without_remote_code(hf_text_cache):
    with pytest.raises(zoo.UnsafeModelFileError, match="needs no remote code"):
        zoo.load("all-minilm-l6-v2", trust_remote_code=True)
    with pytest.raises(zoo.UnsafeModelFileError, match="needs no remote code"):
        zoo.load("e5-small-v2", trust_remote_code=True)


# -- 6. Matryoshka ------------------------------------------------------------------------------------------------


def test_qwen3_matryoshka_dim_is_the_renormalized_prefix(hf_text_cache):
    m = load("qwen3-embedding-0.6b")
    full = m.embed(TEXTS).vectors
    small = m.embed(TEXTS, dim=64)
    assert small.shape == (len(TEXTS), 64) and small.dim == 64
    np.testing.assert_allclose(np.linalg.norm(small.vectors, axis=1), 1.0, atol=1e-5)
    prefix = full[:, :64] / np.linalg.norm(full[:, :64], axis=1, keepdims=True)
    np.testing.assert_allclose(small.vectors, prefix, atol=1e-5)
    assert not np.allclose(small.vectors, full[:, 64:128] / np.linalg.norm(full[:, 64:128], axis=1, keepdims=True))


def test_matryoshka_dim_on_a_model_not_trained_for_it_needs_force(hf_text_cache):
    m = load("e5-small-v2")
    with pytest.raises(zoo.InvalidInputError, match="force_dim"):
        m.embed(TEXTS, dim=64)
    forced = m.embed(TEXTS, dim=64, force_dim=True).vectors
    assert forced.shape == (len(TEXTS), 64)
    np.testing.assert_allclose(np.linalg.norm(forced, axis=1), 1.0, atol=1e-5)


# -- 7. offline with nothing cached -------------------------------------------------------------------------------

_LOAD_AND_REPORT = """
import json, zoo
try:
    zoo.load("e5-small-v2")
except zoo.WeightsUnavailableError as exc:
    print(json.dumps({"error": str(exc)}))
else:
    print(json.dumps({"error": None}))
"""


@pytest.mark.parametrize("offline_var", ["ZOO_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_with_an_empty_cache_says_how_to_get_the_weights(tmp_path, offline_var):
    env = {k: v for k, v in os.environ.items() if k not in ("ZOO_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(
        HF_HUB_CACHE=str(tmp_path / "hub"), HF_HOME=str(tmp_path / "hf-home"), ZOO_HOME=str(tmp_path / "zoo-home"),
        PYTHONPATH=str(REPO_ROOT), **{offline_var: "1"},
    )
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD_AND_REPORT], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    error = json.loads(proc.stdout.strip().splitlines()[-1])["error"]
    assert error is not None, "zoo.load found weights in an empty cache"
    assert "intfloat/e5-small-v2" in error
    assert "zoo fetch e5-small-v2" in error
    assert f"forbidden by {offline_var}=1" in error


# -- 8. a flipped byte --------------------------------------------------------------------------------------------


def _flip_one_tensor_byte(path: Path) -> None:
    """Flip one bit in the middle of a safetensors file's tensor data (the header stays valid)."""
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    data[start + (len(data) - start) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_a_pinned_file_is_refused(hf_text_cache, tmp_path, monkeypatch):
    from safetensors import safe_open

    base = zoo.card("e5-small-v2")
    src = hf_text_cache.snapshot("e5-small-v2")
    digest = hashlib.sha256((src / "model.safetensors").read_bytes()).hexdigest()
    hub = Source(
        kind="hub", repo="zoo-tests/e5-small-v2-pinned", revision=hashlib.sha1(b"zoo-tests").hexdigest(),
        files=base.hub_source.files, sha256={"model.safetensors": digest},
    )
    card = dataclasses.replace(base, name="test-e5-small-v2-pinned", sources=(hub,), path="")
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    copy = snapshot_dir(cache, hub.repo, hub.revision)
    shutil.copytree(src, copy, dirs_exist_ok=True)
    zoo.register(card)
    try:
        m = zoo.load(card.name)
        assert m.resolved.origin == "hf-cache" and m.resolved.path == copy
        assert m.embed(["hello world"]).shape == (1, base.dim)

        _flip_one_tensor_byte(copy / "model.safetensors")
        with safe_open(str(copy / "model.safetensors"), framework="pt") as f:  # still loads without the hash check
            assert list(f.keys())
        with pytest.raises(zoo.IntegrityError, match="model.safetensors"):
            zoo.load(card.name)
    finally:
        unregister(card.name)
    assert card.name not in zoo.list_models()
