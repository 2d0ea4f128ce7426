"""`zoo demo` (host and port from flags or GRADIO_SERVER_*) and `zoo embed-dataset --id-column`."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from zoo.cli import main


@pytest.fixture
def launched(monkeypatch):
    """Replace the demo module with one whose launch records its keywords (no Gradio server starts)."""
    calls = []
    fake = types.ModuleType("zoo.apps.demo")
    fake.launch = lambda **kwargs: calls.append(kwargs)
    monkeypatch.setitem(__import__("sys").modules, "zoo.apps.demo", fake)
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    return calls


def test_demo_defaults_to_loopback_7860(launched, capsys):
    assert main(["demo"]) == 0
    assert launched == [{"port": 7860, "model": "zoo-bind-mini", "host": "127.0.0.1"}]
    assert capsys.readouterr().err == ""


def test_demo_flags(launched, capsys):
    assert main(["demo", "--host", "0.0.0.0", "--port", "8080", "--model", "all-minilm-l6-v2"]) == 0
    assert launched == [{"port": 8080, "model": "all-minilm-l6-v2", "host": "0.0.0.0"}]


def test_demo_reads_gradio_environment_when_flags_are_absent(launched, monkeypatch, capsys):
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "9000")
    assert main(["demo"]) == 0
    assert main(["demo", "--host", "127.0.0.1", "--port", "7000"]) == 0  # flags win over the environment
    assert main(["demo", "--port", "7001"]) == 0
    assert [(c["host"], c["port"]) for c in launched] == [("0.0.0.0", 9000), ("127.0.0.1", 7000), ("0.0.0.0", 7001)]


@pytest.mark.parametrize("value", ["eighty", "0", "70000"])
def test_demo_bad_port_in_environment_or_flag_exits_2(launched, monkeypatch, capsys, value):
    monkeypatch.setenv("GRADIO_SERVER_PORT", value)
    assert main(["demo"]) == 2
    assert "GRADIO_SERVER_PORT" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["demo", "--port", value])
    assert info.value.code == 2 and "--port" in capsys.readouterr().err
    assert launched == []


class FakeJob:
    output, rows, items, shards, shards_embedded, cache_hits, seconds, bad_items, errors = \
        Path("out"), 4, 4, 1, 1, 0, 0.5, 0, None


@pytest.fixture
def job_calls(monkeypatch):
    calls = []

    def embed_dataset(model, source, output, **kwargs):
        calls.append((model, source, output, kwargs))
        return FakeJob()

    monkeypatch.setattr("zoo.scale.embed_dataset", embed_dataset)
    return calls


def test_embed_dataset_passes_id_column_when_given(job_calls, capsys):
    assert main(["embed-dataset", "all-minilm-l6-v2", "docs.parquet", "out", "--id-column", "doc_id",
                 "--column", "body"]) == 0
    (model, source, output, kwargs), = job_calls
    assert (model, source, output) == ("all-minilm-l6-v2", "docs.parquet", "out")
    assert kwargs["id_column"] == "doc_id" and kwargs["column"] == "body"
    assert "4 rows of 4 items in 1 shards" in capsys.readouterr().out


def test_embed_dataset_without_id_column_does_not_pass_it(job_calls, capsys):
    assert main(["embed-dataset", "--column", "body", "all-minilm-l6-v2", "docs.parquet", "out"]) == 0
    (_, _, _, kwargs), = job_calls
    assert kwargs.get("id_column") is None and kwargs["column"] == "body"
