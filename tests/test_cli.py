"""The zoo command line: list, card, embed, one-line errors with non-zero exit codes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from zoo.cli import main


def test_list_and_filters(capsys):
    assert main(["list", "e5*", "--modality", "text"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[0] == "NAME"
    assert [line.split()[0] for line in out[1:]] == ["e5-base-v2", "e5-mistral-7b-instruct", "e5-small-v2"]
    assert main(["list", "no-such-thing*"]) == 1


def test_card_prints_markdown(capsys):
    assert main(["card", "all-minilm-l6-v2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("---\n") and "# all-minilm-l6-v2" in out and "53aa5117" in out


def test_unknown_model_is_one_line_and_exit_1(capsys):
    assert main(["card", "all-minilm"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("zoo: error:") and "all-minilm-l6-v2" in err


def test_bad_command_line_exits_2():
    with pytest.raises(SystemExit) as info:
        main(["embed"])
    assert info.value.code == 2


def test_embed_prints_shape_space_cosine_and_saves(tmp_path, capsys):
    out_file = tmp_path / "v.npy"
    assert main(["embed", "all-minilm-l6-v2", "a dog", "a puppy", "--out", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert "shape (2, 384)" in out and "space all-minilm-l6-v2" in out
    cos = float(out.split("cosine(input[0], input[1]) = ")[1].split()[0])
    v = np.load(out_file, allow_pickle=False)
    assert v.shape == (2, 384) and abs(float(v[0] @ v[1]) - cos) < 1e-4


def test_console_script_runs_the_readme_line():
    zoo_bin = [sys.executable, "-m", "zoo.cli"]
    res = subprocess.run([*zoo_bin, "embed", "all-minilm-l6-v2", "a dog", "a puppy"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert "shape (2, 384)" in res.stdout
    res = subprocess.run([*zoo_bin, "embed", "BAAI/bge-small-en-v1.5", "x"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 1 and "hf-hub:BAAI/bge-small-en-v1.5" in res.stderr
