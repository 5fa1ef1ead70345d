"""Tests of the one reader/writer of AlpacaEval model-outputs and annotations files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from symnoise.data import DataError
from symnoise.generate import read_outputs as generate_read_outputs
from symnoise.outputs import (
    OutputsError,
    full_instruction,
    outcome,
    preference,
    read_annotations,
    read_outputs,
    read_rows,
)

ROWS = [
    {"instruction": "Add", "input": "2 and 3", "output": "5", "generator": "m", "dataset": "x"},
    {"instruction": "Say hi", "output": "Hi", "generator": "m"},
]


def test_json_jsonl_folder_and_memory_read_the_same(tmp_path: Path) -> None:
    path = tmp_path / "model_outputs.json"
    path.write_text(json.dumps(ROWS))
    jl = tmp_path / "o.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    lines_as_json = tmp_path / "lines.json"
    lines_as_json.write_text(jl.read_text())
    for source in (path, jl, lines_as_json, tmp_path, ROWS):
        assert read_outputs(source) == ROWS


def test_bad_rows_name_file_and_row(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([ROWS[0], {"instruction": "no output"}]))
    with pytest.raises(OutputsError, match=r"bad\.json: entry 1: missing the 'output' field"):
        read_outputs(bad)
    bad.write_text(json.dumps([{**ROWS[1], "input": 3}]))
    with pytest.raises(OutputsError, match=r"entry 0: 'input' must be a string or null"):
        read_outputs(bad)
    with pytest.raises(ValueError, match="missing the 'instruction' field"):
        read_rows([{"output": "x"}], fields=("instruction",))
    with pytest.raises(DataError, match=r"bad\.json: entry 0: 'input' must be"):
        generate_read_outputs(bad)  # generate's callers keep getting a DataError
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="model_outputs.json or model_outputs.jsonl"):
        read_outputs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_outputs(tmp_path / "missing.json")


def test_input_is_joined_the_alpaca_eval_way() -> None:
    assert full_instruction(ROWS[0]) == "Add\n\n2 and 3"
    assert full_instruction(ROWS[1]) == "Say hi"
    assert full_instruction({"instruction": "x", "input": "  "}) == "x"


def test_annotations_preferences_are_checked(tmp_path: Path) -> None:
    good = [{"instruction": "i", "output_1": "a", "output_2": "b", "preference": p}
            for p in (1, 1.25, 2, None, 0)]
    assert [a["preference"] for a in read_annotations(good)] == [1, 1.25, 2, None, 0]
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(good[:1] + [{**good[0], "preference": 3}]))
    with pytest.raises(OutputsError, match=r"annotations\.json: entry 1: 'preference' must"):
        read_annotations(path)


def test_one_reading_of_a_preference() -> None:
    """AlpacaEval's scale: 0 is its older spelling of a draw, NaN and null no verdict."""
    import numpy as np

    values = [1, 1.25, 2, 0, 1.5, None, float("nan"), np.float64(1.75), np.int64(2)]
    read = [preference(v, "here") for v in values]
    assert read == [1.0, 1.25, 2.0, 1.5, 1.5, None, None, 1.75, 2.0]
    assert [outcome(p) for p in read if p is not None] == [
        "loss", "loss", "win", "draw", "draw", "win", "win"]
    for bad in (3, 0.5, -1, True, "2", [2]):
        with pytest.raises(OutputsError, match=r"^here: 'preference' must be in \[1, 2\]"):
            preference(bad, "here")
