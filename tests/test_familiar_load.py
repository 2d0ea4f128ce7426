"""``zoo.list_models`` filters, ``zoo.load`` keywords (unknown ones refused, ``prompts=`` honoured) and
``embed(prompt=...)``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import zoo
from zoo import registry
from zoo.adapters.base import BaseEmbedder
from zoo.errors import InvalidInputError, WeightsUnavailableError
from zoo.modelcard import ModelCard
from zoo.sources import Resolved

# -- list_models ---------------------------------------------------------------------------------------------------


def test_list_models_filters_by_offline_readiness_license_and_modality():
    every = zoo.list_models()
    cards = {name: zoo.card(name) for name in every}
    ready = zoo.list_models(offline_ready=True)
    assert ready == [n for n in every if cards[n].offline_ready] and "all-minilm-l6-v2" in ready
    assert zoo.list_models(offline_ready=False) == [n for n in every if not cards[n].offline_ready]
    assert zoo.list_models(offline_ready=None) == every
    mit = zoo.list_models(license="mit")
    assert mit == [n for n in every if cards[n].license == "mit"] and mit
    assert zoo.list_models(license="MIT") == mit  # identifiers are case-insensitive
    assert zoo.list_models(license=["mit", "apache-2.0"]) == sorted(
        n for n in every if cards[n].license in ("mit", "apache-2.0"))
    assert zoo.list_models(license="cc-by-*") == [n for n in every if cards[n].license.startswith("cc-by-")]
    both = zoo.list_models("*minilm*", modality="text", offline_ready=True, license="apache-2.0")
    assert both == [n for n in ready if "minilm" in n and "text" in cards[n].modalities
                    and cards[n].license == "apache-2.0"] and both
    assert zoo.list_models(modality="image", offline_ready=True) == ["efficientnet-lite0", "zoo-bind-mini"]
    assert zoo.list_models(license="no-such-license") == []


@pytest.mark.parametrize("kwargs, match", [
    (dict(offline_ready="yes"), "offline_ready must be True, False or None"),
    (dict(offline_ready=1), "offline_ready must be True, False or None"),
    (dict(license=3), "license must be a string or a list of strings"),
    (dict(license=["mit", None]), "license must be a string or a list of strings"),
    (dict(modality=["text"]), "modality must be a string"),
])
def test_list_models_refuses_filters_of_the_wrong_type(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        zoo.list_models(**kwargs)


# -- unknown load options ---------------------------------------------------------------------------------------------


def test_an_unknown_load_option_is_an_error_naming_the_accepted_ones():
    with pytest.raises(InvalidInputError) as info:
        zoo.load("all-minilm-l6-v2", bogus=1)
    message = str(info.value)
    assert "unknown option(s) bogus" in message
    for accepted in ("path", "download", "trust_remote_code", "prompts", "default_prompt_name", "compute_dtype",
                     "device", "threads"):
        assert accepted in message, accepted


def test_options_are_checked_before_any_weights_are_looked_for(monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    name = "e5-mistral-7b-instruct"  # hub weights, not on this machine
    with pytest.raises(WeightsUnavailableError):
        zoo.load(name, path="/no/such/folder")
    with pytest.raises(InvalidInputError, match="unknown option.*prompt_format.*takes compute_dtype, device, threads"):
        zoo.load(name, path="/no/such/folder", prompt_format="demo")  # a VLM option, not a text model's


@pytest.mark.parametrize("adapter, some", [
    ("text", {"device", "compute_dtype", "threads"}),
    ("open_clip", {"device", "compute_dtype", "workers", "trim_text"}),
    ("vlm", {"prompt_format", "lora_path", "image_resize", "benchmark"}),
    ("whisper", {"compute_type", "threads"}),
    ("openshape", {"input_up"}),
    ("bind", {"experts"}),
])
def test_each_adapter_takes_its_own_options(adapter, some):
    cls = registry.adapter_class(adapter)
    assert some <= set(cls.load_options())
    assert "trust_remote_code" not in cls.load_options() and "path" not in cls.load_options()


def test_the_adapter_itself_refuses_leftover_options_and_takes_declared_ones():
    card = ModelCard(name="plain", adapter="plain", modalities=("text",), dim=4, description="", license="mit",
                     sources=(), offline_note="a test card")
    resolved = Resolved(Path("."), "path")

    class Plain(BaseEmbedder):
        pass

    class Flavoured(BaseEmbedder):
        LOAD_OPTIONS = ("flavour",)

    with pytest.raises(InvalidInputError, match="plain: unknown option.*colour.*Plain.*takes nothing else"):
        Plain(card, resolved, colour="red")
    assert Plain(card, resolved, trust_remote_code=False).options == {}
    assert Flavoured(card, resolved, flavour="mint").options == {"flavour": "mint"}
    assert Flavoured.load_options() == ("flavour",)
    with pytest.raises(InvalidInputError, match="takes flavour"):
        Flavoured(card, resolved, colour="red")


# -- prompts= at load -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm():
    return zoo.load("all-minilm-l6-v2")


def test_prompts_given_at_load_are_honoured(minilm):
    texts = ["a dog", "the stock market"]
    model = zoo.load("all-minilm-l6-v2", prompts={"query": "query: ", "photo": "a photo of {input}."})
    np.testing.assert_array_equal(model.embed(texts, prompt_name="query").vectors,
                                  minilm.embed(["query: " + t for t in texts]).vectors)
    np.testing.assert_array_equal(model.embed(texts, prompt_name="photo").vectors,
                                  minilm.embed([f"a photo of {t}." for t in texts]).vectors)
    np.testing.assert_array_equal(model.embed(texts).vectors, minilm.embed(texts).vectors)  # no default: as given
    assert zoo.card("all-minilm-l6-v2").prompts == {}  # the registered card is left alone
    default = zoo.load("all-minilm-l6-v2", prompts={"query": "query: "}, default_prompt_name="query")
    np.testing.assert_array_equal(default.embed(texts).vectors, model.embed(texts, prompt_name="query").vectors)
    np.testing.assert_array_equal(default.encode(texts, prompt=""), minilm.encode(texts))  # prompt= wins


def test_prompts_given_at_load_match_sentence_transformers_default_prompt(minilm):
    st = pytest.importorskip("sentence_transformers")
    prompts = {"query": "query: "}
    ours = zoo.load("all-minilm-l6-v2", prompts=prompts, default_prompt_name="query")
    ref = st.SentenceTransformer(str(minilm.resolved.path), device="cpu", prompts=prompts, default_prompt_name="query")
    texts = ["a dog", "the stock market"]
    np.testing.assert_allclose(ours.encode(texts), ref.encode(texts), atol=1e-5)


@pytest.mark.parametrize("name, kwargs, match", [
    ("all-minilm-l6-v2", dict(prompts=["query: "]), "prompts must be a dict of prompt names to strings"),
    ("all-minilm-l6-v2", dict(prompts={"query": 1}), "prompts must be a dict of prompt names to strings"),
    ("all-minilm-l6-v2", dict(default_prompt_name="query"), "default_prompt_name 'query' is not one of the prompts"),
    ("all-minilm-l6-v2", dict(default_prompt_name=1), "default_prompt_name must be a string"),
    ("efficientnet-lite0", dict(prompts={"query": "q: "}), "no text: prompts would never be used"),
    ("qwen3-vl-embedding-2b", dict(prompts={"query": "q: "}), "builds its prompts itself"),
])
def test_prompts_that_would_be_ignored_are_errors(name, kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        zoo.load(name, **kwargs)


# -- embed(prompt=...) ------------------------------------------------------------------------------------------------


def test_embed_takes_a_literal_prompt(minilm):
    np.testing.assert_array_equal(minilm.embed(["a dog"], prompt="query: ").vectors,
                                  minilm.embed(["query: a dog"]).vectors)
    assert minilm.embed(["a dog"], prompt="query: ").info["prompt"] == "prompt (given)"
    with pytest.raises(InvalidInputError, match="pass one of prompt, prompt_name and task_instruction"):
        minilm.embed(["a dog"], prompt="query: ", task_instruction="Find it")
    with pytest.raises(InvalidInputError, match="prompt must be a string"):
        minilm.embed(["a dog"], prompt=["query: "])


def test_a_literal_prompt_keys_the_cache(minilm, tmp_path):
    from zoo.cache import EmbeddingCache

    cache = EmbeddingCache(tmp_path / "c.sqlite")
    plain = minilm.embed(["a dog"], cache=cache)
    prompted = minilm.embed(["a dog"], prompt="query: ", cache=cache)
    assert prompted.info["cache_misses"] == 1  # not served the plain vector
    np.testing.assert_allclose(prompted.vectors, minilm.embed(["query: a dog"]).vectors, atol=1e-6)
    assert minilm.embed(["a dog"], cache=cache).info["cache_hits"] == 1
    assert not np.allclose(plain.vectors, prompted.vectors)
