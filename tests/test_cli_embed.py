"""`zoo embed`: options anywhere, every embed flag, stdin and --from-file inputs, --out formats, --json."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from zoo.cli import main
from zoo.embeddings import Embeddings

MODEL = "all-minilm-l6-v2"  # offline-ready: its weights ship with the zoo


class FakeModel:
    """Stands in for ``zoo.load``'s embedder: records each call, returns one distinct unit vector per input."""

    def __init__(self):
        self.loads: list[tuple[str, dict]] = []
        self.calls: list[tuple[list, dict]] = []

    def load(self, name, **kwargs):
        self.loads.append((name, kwargs))
        return self

    def embed(self, inputs, task_instruction=None, **kwargs):
        self.calls.append((list(inputs), {"task_instruction": task_instruction, **kwargs}))
        vectors = np.zeros((len(inputs), 8), dtype=np.float32)
        vectors[np.arange(len(inputs)), np.arange(len(inputs)) % 8] = 1.0
        return Embeddings(vectors=vectors, space="fake-space", model="fake", modality=kwargs.get("modality") or "text",
                          normalized=True)


@pytest.fixture
def fake(monkeypatch):
    model = FakeModel()
    monkeypatch.setattr("zoo.loader.load", model.load)
    return model


def _stdin(monkeypatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(text.encode("utf-8")), encoding="utf-8"))


def test_options_before_between_and_after_inputs(tmp_path, capsys):
    first, second = tmp_path / "first.npy", tmp_path / "second.npy"
    assert main(["embed", MODEL, "--out", str(first), "a dog", "a puppy"]) == 0
    assert main(["embed", MODEL, "a dog", "a puppy", "--out", str(second)]) == 0
    assert main(["embed", "--precision", "float32", MODEL, "a dog", "--no-truncate", "a puppy", "--json"]) == 0
    out = capsys.readouterr().out
    a, b = np.load(first, allow_pickle=False), np.load(second, allow_pickle=False)
    assert a.shape == b.shape == (2, 384)
    np.testing.assert_allclose(a, b, atol=1e-6)
    doc = json.loads(out.splitlines()[-1])
    np.testing.assert_allclose(np.array(doc["vectors"], dtype=np.float32), a, atol=1e-6)


def test_every_embed_flag_reaches_load_and_embed(fake, capsys):
    assert main(["embed", "some-model", "x", "y", "--modality", "code", "--force-dim", "--prompt-name", "query",
                 "--instruction", "find code", "--dim", "4", "--precision", "float16", "--no-normalize",
                 "--no-truncate", "--batch-size", "3", "--trust-remote-code"]) == 0
    assert fake.loads == [("some-model", {"trust_remote_code": True})]
    (inputs, kw), = fake.calls
    assert inputs == ["x", "y"]
    assert kw == {"task_instruction": "find code", "prompt_name": "query", "modality": "code", "batch_size": 3,
                  "normalize": False, "dim": 4, "force_dim": True, "precision": "float16", "truncate": False}


def test_embed_defaults_are_the_library_defaults(fake, capsys):
    assert main(["embed", "some-model", "x"]) == 0
    assert fake.loads == [("some-model", {"trust_remote_code": False})]
    (_, kw), = fake.calls
    assert kw == {"task_instruction": None, "prompt_name": None, "modality": None, "batch_size": None,
                  "normalize": True, "dim": None, "force_dim": False, "precision": "float32", "truncate": True}


@pytest.mark.parametrize("argv", [["--precision", "float64"], ["--modality", "smell"], ["--batch-size", "0"],
                                  ["--dim", "-3"]])
def test_bad_flag_values_exit_2_before_loading(fake, capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(["embed", "some-model", "x", *argv])
    assert info.value.code == 2 and not fake.loads
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and argv[0] in err


def test_from_file_skips_blank_lines_and_says_how_many(fake, tmp_path, capsys):
    path = tmp_path / "texts.txt"
    path.write_text("first line\n\n   \nsecond line\r\n\nthird line", encoding="utf-8")
    assert main(["embed", "some-model", "given", "--from-file", str(path)]) == 0
    assert fake.calls[0][0] == ["given", "first line", "second line", "third line"]
    err = capsys.readouterr().err
    assert f"skipped 3 blank lines in {path}" in err


def test_from_file_with_no_blank_lines_says_nothing(fake, tmp_path, capsys):
    path = tmp_path / "texts.txt"
    path.write_text("one\ntwo\n", encoding="utf-8")
    assert main(["embed", "some-model", "--from-file", str(path)]) == 0
    assert fake.calls[0][0] == ["one", "two"] and "skipped" not in capsys.readouterr().err


def test_dash_reads_stdin_one_text_per_line_in_place(fake, monkeypatch, capsys):
    _stdin(monkeypatch, "from stdin 1\n\nfrom stdin 2\n")
    assert main(["embed", "some-model", "before", "-", "after"]) == 0
    assert fake.calls[0][0] == ["before", "from stdin 1", "from stdin 2", "after"]
    assert "skipped 1 blank line in standard input" in capsys.readouterr().err


def test_from_file_dash_reads_stdin(fake, monkeypatch, capsys):
    _stdin(monkeypatch, "one\ntwo\n")
    assert main(["embed", "some-model", "--from-file", "-"]) == 0
    assert fake.calls[0][0] == ["one", "two"]


def test_stdin_that_is_not_utf8_is_a_one_line_error(fake, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"caf\xe9\n"), encoding="latin-1"))
    assert main(["embed", "some-model", "-"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("zoo: error:") and "standard input is not UTF-8" in err and not fake.calls


def test_no_inputs_at_all_exits_2_with_a_message(fake, tmp_path, capsys):
    assert main(["embed", "some-model"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("zoo embed: error: no inputs")
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n\n", encoding="utf-8")
    assert main(["embed", "some-model", "--from-file", str(blank)]) == 2
    assert "no inputs" in capsys.readouterr().err and not fake.loads


def test_missing_from_file_is_a_zoo_error(fake, tmp_path, capsys):
    assert main(["embed", "some-model", "--from-file", str(tmp_path / "absent.txt")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("zoo: error:") and "absent.txt" in err


def test_out_npy_json_parquet_hold_the_vectors_and_name_the_exact_path(tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    texts = ["a dog", "a puppy", "a cat"]
    paths = {fmt: tmp_path / f"v.{fmt}" for fmt in ("npy", "json", "parquet")}
    for path in paths.values():
        assert main(["embed", MODEL, *texts, "--out", str(path)]) == 0
        assert f"wrote {path}\n" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.json", "v.npy", "v.parquet"]  # no v.json.npy
    npy = np.load(paths["npy"], allow_pickle=False)
    assert npy.shape == (3, 384) and npy.dtype == np.float32

    doc = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert doc["model"] == MODEL and doc["space"] == MODEL and doc["dim"] == 384
    np.testing.assert_allclose(np.array(doc["vectors"], dtype=np.float32), npy, atol=1e-6)

    table = pq.read_table(paths["parquet"])
    assert table.column_names == ["input", "vector"] and table.num_rows == 3
    assert table.column("input").to_pylist() == texts
    np.testing.assert_allclose(np.array(table.column("vector").to_pylist(), dtype=np.float32), npy, atol=1e-6)
    assert table.schema.metadata[b"space"] == MODEL.encode()


def test_out_writes_exactly_the_path_given_whatever_the_suffix_case(fake, tmp_path, capsys):
    path = tmp_path / "V.NPY"
    assert main(["embed", "some-model", "x", "y", "--out", str(path)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["V.NPY"]
    assert np.load(path, allow_pickle=False).shape == (2, 8)
    assert f"wrote {path}" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["v.txt", "v.npz", "vectors"])
def test_out_with_another_suffix_is_refused_naming_the_accepted_ones(fake, tmp_path, capsys, name):
    assert main(["embed", "some-model", "x", "--out", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert ".npy" in err and ".json" in err and ".parquet" in err
    assert not fake.loads and not list(tmp_path.iterdir())


def test_json_output_is_one_document_with_vectors_unless_out(tmp_path, capsys):
    assert main(["embed", MODEL, "a dog", "a puppy", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"] == MODEL and doc["space"] == MODEL and doc["shape"] == [2, 384]
    assert doc["modality"] == "text"
    vectors = np.array(doc["vectors"], dtype=np.float32)
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    out = tmp_path / "v.npy"
    assert main(["embed", MODEL, "a dog", "a puppy", "--json", "--out", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "vectors" not in doc and doc["out"] == str(out) and doc["shape"] == [2, 384]
    np.testing.assert_allclose(np.load(out, allow_pickle=False), vectors, atol=1e-6)


def test_real_model_flags_change_the_vectors(tmp_path, capsys):
    raw, short, codes = tmp_path / "raw.npy", tmp_path / "short.npy", tmp_path / "codes.npy"
    texts = ["a dog", "a puppy", "a cat"]
    assert main(["embed", MODEL, *texts, "--no-normalize", "--out", str(raw), "--batch-size", "1"]) == 0
    assert main(["embed", MODEL, *texts, "--dim", "64", "--force-dim", "--out", str(short)]) == 0
    assert main(["embed", MODEL, *texts, "--precision", "int8", "--out", str(codes)]) == 0
    capsys.readouterr()
    norms = np.linalg.norm(np.load(raw), axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-3)  # mean pooling before the normalization that was turned off
    short_v = np.load(short)
    assert short_v.shape == (3, 64) and np.allclose(np.linalg.norm(short_v, axis=1), 1.0, atol=1e-5)
    assert np.load(codes).dtype == np.int8


def test_cosines_are_capped_for_many_inputs(fake, capsys):
    assert main(["embed", "some-model", *[f"t{i}" for i in range(15)]]) == 0
    out = capsys.readouterr().out
    assert out.count("cosine(input[0]") == 10 and "input[10])" in out and "input[11])" not in out
    assert "4 more" in out
