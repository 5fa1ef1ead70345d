"""Sources: files, directories, datasets objects, synthetic (lazy), hub failures."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

from symnoise.data import DataError, load_examples, load_records

ROWS = [
    {"instruction": "Say hi.", "input": "", "output": "hi"},
    {"instruction": "Say bye.", "input": "", "output": "bye"},
    {"instruction": "Say yes.", "input": "", "output": "yes"},
]


def test_json_list_and_wrapped(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps(ROWS))
    records, name = load_records(p)
    assert records == ROWS and name == str(p)
    p.write_text(json.dumps({"data": ROWS[:2]}))
    assert load_records(p)[0] == ROWS[:2]
    p.write_text(json.dumps({"train": ROWS[:1], "test": ROWS[1:]}))
    assert load_records(p)[0] == ROWS[:1]
    assert load_records(p, split="test")[0] == ROWS[1:]
    p.write_text(json.dumps({"rows": ROWS}))
    with pytest.raises(DataError, match=r"a\.json: expected a list.*\['rows'\]"):
        load_records(p)


def test_json_that_is_really_jsonl(tmp_path):
    p = tmp_path / "lines.json"
    p.write_text("\n".join(json.dumps(r) for r in ROWS))
    assert load_records(p)[0] == ROWS


def test_invalid_json_names_file_and_line(tmp_path):
    p = tmp_path / "broken.jsonl"
    p.write_text(json.dumps(ROWS[0]) + "\n\n" + json.dumps(ROWS[1]) + "\n{oops\n")
    with pytest.raises(DataError, match=r"broken\.jsonl: line 4: invalid JSON"):
        load_records(p)
    q = tmp_path / "broken.json"
    q.write_text('[{"instruction": "a",\n "output": }]')
    with pytest.raises(DataError, match=r"broken\.json: invalid JSON at line 2"):
        load_records(q)


def test_missing_file_and_unsupported_suffix(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_records(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match="data/nope.jsonl"):
        load_records("data/nope.jsonl")
    p = tmp_path / "table.csv"
    p.write_text("a,b\n")
    with pytest.raises(DataError, match=r"table\.csv: unsupported file type '\.csv'"):
        load_records(p)


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(FileNotFoundError, match="'someone/some-data' is not a local file.*Offline"):
        load_records("someone/some-data")


def test_datasets_objects_and_saved_directory(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(ROWS)
    assert load_records(ds)[0] == ROWS
    dd = datasets.DatasetDict({"train": ds, "test": datasets.Dataset.from_list(ROWS[:1])})
    assert load_records(dd, split="test")[0] == ROWS[:1]
    with pytest.raises(DataError, match="split 'validation' not found; available splits: train"):
        load_records(dd, split="validation")
    dd.save_to_disk(str(tmp_path / "saved"))
    records, name = load_records(tmp_path / "saved", split="train")
    assert records == ROWS and "saved[train]" in name


def test_directory_of_data_files(tmp_path):
    d = tmp_path / "dir"
    d.mkdir()
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    records, _ = load_records(d)
    assert records == ROWS


def test_list_of_records():
    records, name = load_records(ROWS)
    assert records == ROWS and name == "<records>"
    with pytest.raises(TypeError, match="data source must be"):
        load_records(42)


def test_synthetic_is_lazy_and_split_is_passed(monkeypatch):
    calls = []

    def load_synthetic(split, seed=0, n=None):
        calls.append((split, seed, n))
        return [
            {"instruction": f"q{i}", "input": "", "output": f"a{i}", "family": "f", "answer": i}
            for i in range(n or 3)
        ]

    fake = types.ModuleType("symnoise.data.synthetic")
    fake.load_synthetic = load_synthetic
    fake.SPLITS = {"train": "train", "heldout": "heldout"}  # the split names the spec checks
    monkeypatch.setitem(sys.modules, "symnoise.data.synthetic", fake)
    records, name = load_records("synthetic")
    assert name == "synthetic:train" and len(records) == 3
    records, name = load_records("synthetic:heldout", synthetic_n=5, synthetic_seed=9)
    assert name == "synthetic:heldout" and len(records) == 5
    assert calls == [("train", 0, None), ("heldout", 9, 5)]
    ex, rep = load_examples("synthetic:heldout", synthetic_n=2)
    assert rep.format == "alpaca" and rep.source == "synthetic:heldout"
    assert ex[1].meta == {"family": "f", "answer": 1} and ex[1].source == "synthetic:heldout:1"


def test_importing_data_does_not_import_synthetic():
    code = "import sys, symnoise.data; print('symnoise.data.synthetic' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "False"
