"""The command line's errors and exits: flags instead of Python keywords, quiet closed pipes, exit codes, and a
light import."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import zoo
from zoo.cli import FLAG_HINTS, PRECISIONS, cli_message, main

ROOT = Path(__file__).resolve().parents[1]
ZOO = [sys.executable, "-m", "zoo.cli"]

#: ``zoo embed`` flags whose keyword in ``embed``/``load`` has another name.
KEYWORD_OF_DEST = {"instruction": "task_instruction"}


def _embed_parser():
    from zoo.cli import build_parser

    return next(a for a in build_parser()._actions if a.dest == "command").choices["embed"]


def cli_keywords() -> set[str]:
    """The embed/load keywords that ``zoo embed`` exposes as flags (read from its parser)."""
    dests = {a.dest for a in _embed_parser()._actions} - {"help", "name", "inputs", "from_file", "out", "json"}
    return {KEYWORD_OF_DEST.get(d, d) for d in dests}


def _error_strings() -> list[tuple[str, str]]:
    """(where, text) of every string literal inside a ``raise`` in the zoo package, f-string pieces included."""
    found = []
    for path in sorted(Path(zoo.__file__).parent.rglob("*.py")):
        if path.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise):
                found += [(f"{path.name}:{c.lineno}", c.value) for c in ast.walk(node)
                          if isinstance(c, ast.Constant) and isinstance(c.value, str)]
    return found


def test_every_keyword_hint_in_zoo_errors_has_a_cli_translation():
    """A hint naming a keyword that has a flag (``truncate=True``, ``modality='text'``) comes out as the flag.

    Keywords with no flag behind them (``lora_path=``, ``device=``: Python-only options) are left as they are."""
    keywords = cli_keywords()
    assert {"truncate", "force_dim", "trust_remote_code", "modality", "task_instruction", "prompt_name"} <= keywords
    hints = [(where, text) for where, text in _error_strings()
             if any(name in keywords for name in re.findall(r"\b([a-z_]+)=", text))]
    assert len(hints) >= 10  # the scan finds the hints (truncate=True in four adapters, modality=, force_dim=...)
    untranslated = [(where, text) for where, text in hints
                    if any(re.search(rf"\b{name}=", cli_message(text)) for name in keywords)]
    assert not untranslated, f"add these hints to zoo.cli.FLAG_HINTS: {untranslated}"


@pytest.mark.parametrize(("message", "expected"), [
    ("text is 600 tokens, over m's limit of 256 (pass truncate=True to cut it)",
     "text is 600 tokens, over m's limit of 256 (leave out --no-truncate to cut it)"),
    ("m was not trained for Matryoshka truncation; truncated vectors lose quality. Pass force_dim=True to truncate "
     "anyway", "m was not trained for Matryoshka truncation; truncated vectors lose quality. Pass --force-dim to "
     "truncate anyway"),
    ("m runs Python code shipped in its hub repo (org/m@0123456789ab); read it, then pass trust_remote_code=True to "
     "zoo.load to consent", "m runs Python code shipped in its hub repo (org/m@0123456789ab); read it, then pass "
     "--trust-remote-code to consent"),
    ("m needs no remote code; refusing trust_remote_code=True",
     "m needs no remote code; refusing --trust-remote-code"),
    ("m embeds text, image: say which with modality=", "m embeds text, image: say which with --modality"),
    ("input[0]: 'x/' names a directory, not a file; pass modality='text' to embed it as text",
     "input[0]: 'x/' names a directory, not a file; pass --modality text to embed it as text"),
    ("input[0]: an interleaved dict needs modality='interleaved'", "input[0]: an interleaved dict needs --modality "
     "interleaved"),
    ("items must be images ({'image': ..., 'text': ...}) or pass modality=",
     "items must be images ({'image': ..., 'text': ...}) or pass --modality"),
    ("pass task_instruction or prompt_name, not both", "pass --instruction or --prompt-name, not both"),
    ("m builds its prompts itself; prompt= does not apply (pass task_instruction= or prompt_name=)",
     "m builds its prompts itself; prompt= does not apply (pass --instruction or --prompt-name)"),
    ("int8 needs per-dimension ranges from at least 2 vectors: pass calibration= (M, 384) or embed more items at "
     "once (got (1, 384))", "int8 needs per-dimension ranges from at least 2 vectors: embed more items at once "
     "(got (1, 384))"),
    ("dim must be an integer in 1..384, not 500", "--dim must be an integer in 1..384, not 500"),
    ("batch_size must be a positive integer, not 0", "--batch-size must be a positive integer, not 0"),
    ("Embeddings.dim must be set", "Embeddings.dim must be set"),
    ("unknown model 'x' (`zoo list` shows the registered names)", "unknown model 'x' (`zoo list` shows the registered "
     "names)"),
    ("two\nlines", "two lines"),
])
def test_cli_message_speaks_in_flags(message, expected):
    assert cli_message(message) == expected


def test_every_translation_names_a_real_flag():
    flags = set(_embed_parser()._option_string_actions)
    for _, replacement in FLAG_HINTS:
        for flag in re.findall(r"--[a-z-]+", replacement):
            assert flag in flags, flag


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("zoo: error:"), err
    return err


def test_real_errors_name_flags_not_keywords(capsys):
    assert main(["embed", "all-minilm-l6-v2", "a dog", "--dim", "64"]) == 1
    err = _one_line_error(capsys)
    assert "--force-dim" in err and "force_dim" not in err

    assert main(["embed", "all-minilm-l6-v2", "word " * 600, "--no-truncate"]) == 1
    err = _one_line_error(capsys)
    assert "leave out --no-truncate" in err and "truncate=True" not in err

    assert main(["embed", "all-minilm-l6-v2", "a dog", "--trust-remote-code"]) == 1
    err = _one_line_error(capsys)
    assert "refusing --trust-remote-code" in err and "trust_remote_code" not in err

    assert main(["embed", "all-minilm-l6-v2", "a dog", "a cat", "--dim", "500", "--force-dim"]) == 1
    assert "--dim must be an integer in 1..384" in _one_line_error(capsys)


def test_multimodal_hint_names_the_modality_flag(capsys):
    assert main(["embed", "zoo-bind-mini", "/no/such/photo.jpg"]) == 1
    err = _one_line_error(capsys)
    assert "pass --modality text to embed it as text" in err and "modality=" not in err


def test_precisions_match_the_library():
    from zoo.embeddings import PRECISIONS as LIBRARY

    assert PRECISIONS == LIBRARY


def test_ctrl_c_exits_130(monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("zoo.registry.list_models", interrupted)
    assert main(["list"]) == 130


def test_unknown_command_exits_2_with_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        main(["embedd", "x"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "embedd" in err


def test_closed_pipe_ends_quietly_with_status_0(tmp_path):
    """`zoo list | head -1`: the exit status of zoo itself is 0 and nothing is said about the pipe."""
    script = '"$@" list 2>"$ZOO_ERR" | head -1; exit "${PIPESTATUS[0]}"'
    err_file = tmp_path / "zoo.err"
    res = subprocess.run(["bash", "-c", script, "bash", *ZOO], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "ZOO_ERR": str(err_file)}, timeout=120)
    err = err_file.read_text()
    assert res.returncode == 0, err
    assert res.stdout.split() == ["NAME", "DIM", "MODALITIES", "WEIGHTS", "LICENSE"]
    assert "Broken pipe" not in err and "Error" not in err


@pytest.mark.parametrize("argv", [["list"], ["card", "all-minilm-l6-v2"], ["list", "--json"]])
def test_reader_gone_before_the_first_write_is_quiet_and_status_0(argv):
    """The reader has closed its end before zoo writes a byte: every write fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([*ZOO, *argv], stdout=write_end, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                              timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 0, proc.stderr
    assert "Broken pipe" not in proc.stderr and "Error" not in proc.stderr


def test_importing_the_cli_and_building_its_parser_stays_light():
    code = ("import sys, zoo.cli; zoo.cli.build_parser(); zoo.cli.parse(['embed', 'm', 'x', '--out', 'v.npy']); "
            "print(sorted(m for m in ('numpy', 'torch', 'pyarrow', 'ray', 'gradio') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
