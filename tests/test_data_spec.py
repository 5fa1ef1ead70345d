"""The one data-spec parser: the synthetic suite, local paths, hub ids."""

from __future__ import annotations

import json

import pytest

from symnoise.data import load_records
from symnoise.data.spec import DataSpec, parse_data_spec


def test_the_suite_is_exactly_synthetic_or_a_known_split():
    assert parse_data_spec("synthetic") == DataSpec("synthetic", "synthetic", None)
    assert parse_data_spec("synthetic:heldout") == DataSpec("synthetic", "synthetic", "heldout")
    with pytest.raises(ValueError, match=r"'test'.*known splits: train, heldout$"):
        parse_data_spec("synthetic:test")  # no split aliases
    with pytest.raises(ValueError, match=r"'bogus'.*known splits: train, heldout"):
        parse_data_spec("synthetic:bogus")
    with pytest.raises(ValueError, match="known splits"):
        parse_data_spec("synthetic:")


def test_names_that_start_with_synthetic_are_paths_or_hub_ids(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # a data file, whether or not it exists yet, is a path
    assert parse_data_spec("synthetic_mine.json") == DataSpec("path", "synthetic_mine.json")
    assert parse_data_spec("synthetic.jsonl").kind == "path"
    (tmp_path / "synthetic_dir").mkdir()
    assert parse_data_spec("synthetic_dir").kind == "path"  # an existing folder
    assert parse_data_spec("synthetic_things").kind == "hub"  # nothing local: a hub id
    assert parse_data_spec("tatsu-lab/alpaca") == DataSpec("hub", "tatsu-lab/alpaca")
    assert parse_data_spec("./data").kind == "path"
    assert parse_data_spec(tmp_path / "x.json").kind == "path"  # a Path object
    with pytest.raises(ValueError, match="empty data spec"):
        parse_data_spec("  ")


def test_load_records_reads_a_file_named_like_the_suite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = [{"instruction": "say hi", "input": "", "output": "hi"}] * 3
    (tmp_path / "synthetic_mine.json").write_text(json.dumps(rows))
    records, name = load_records("synthetic_mine.json")
    assert records == rows and name == "synthetic_mine.json"
    with pytest.raises(FileNotFoundError, match="synthetic_other.json"):
        load_records("synthetic_other.json")
    with pytest.raises(ValueError, match="bogus"):
        load_records("synthetic:bogus")
