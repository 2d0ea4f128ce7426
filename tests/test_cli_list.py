"""`zoo list` and `zoo card`: the aligned table, its filters, and --json."""

from __future__ import annotations

import json

import pytest

from zoo import registry
from zoo.cli import main
from zoo.modelcard import MODALITIES
from zoo.sources import availability


def _table(capsys) -> list[str]:
    return capsys.readouterr().out.splitlines()


def test_list_is_an_aligned_table_with_a_header(capsys):
    assert main(["list"]) == 0
    header, *rows = _table(capsys)
    assert header.split() == ["NAME", "DIM", "MODALITIES", "WEIGHTS", "LICENSE"]
    assert [row.split()[0] for row in rows] == registry.list_models()
    dim_end = header.index("DIM") + len("DIM")
    starts = {col: header.index(col) for col in ("MODALITIES", "WEIGHTS", "LICENSE")}
    for row in rows:
        card = registry.card(row.split()[0])
        assert row[:dim_end].split()[-1] == str(card.dim) and row[dim_end] == " "  # right-aligned numbers
        assert row[starts["MODALITIES"]:].split()[0] == ",".join(card.modalities)
        here = availability(card)
        weights = row[starts["WEIGHTS"]:starts["LICENSE"]].strip()
        assert weights == (f"here ({here.where})" if here.present else f"missing: {here.how}")
        assert row[starts["LICENSE"]:].strip() == card.license
        for col, start in starts.items():
            assert row[start - 1] == " ", (col, row)  # every column starts where its header does
    widest = max(len(name) for name in registry.list_models())
    assert starts["MODALITIES"] > widest  # widths come from the content, not a fixed 32


def test_list_unknown_modality_names_the_valid_ones(capsys):
    with pytest.raises(SystemExit) as info:
        main(["list", "--modality", "smell"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "smell" in err
    assert all(m in err for m in MODALITIES)


def test_list_offline_ready_keeps_the_models_whose_files_are_here(capsys):
    assert main(["list", "--offline-ready"]) == 0
    names = [row.split()[0] for row in _table(capsys)[1:]]
    expected = [n for n in registry.list_models() if availability(registry.card(n)).present]
    assert names == expected and names
    assert main(["list", "--offline-ready", "--modality", "image", "*"]) == 0
    names = [row.split()[0] for row in _table(capsys)[1:]]
    assert names == [n for n in expected if "image" in registry.card(n).modalities]


def test_list_json_is_one_array_of_models(capsys):
    assert main(["list", "e5*", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == registry.list_models("e5*")
    for row in rows:
        card = registry.card(row["name"])
        assert row["dim"] == card.dim and row["modalities"] == list(card.modalities)
        here = availability(card)
        assert row["offline_ready"] is card.offline_ready and row["available"] is here.present
        assert (row["where"], row["get"]) == (here.where, here.how)


def test_list_json_with_no_match_is_an_empty_array_and_exit_1(capsys):
    assert main(["list", "no-such-thing*", "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == [] and "no models match" in captured.err


def test_card_json_is_the_card_as_one_object(capsys):
    assert main(["card", "all-minilm-l6-v2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    card = registry.card("all-minilm-l6-v2")
    assert doc["name"] == card.name and doc["dim"] == card.dim and doc["modalities"] == list(card.modalities)
    assert doc["offline_ready"] is card.offline_ready and doc["license"] == card.license
