"""Formats: parsing, auto-detection, ShareGPT first-turn cut, bad rows."""

from __future__ import annotations

import json

import pytest

from symnoise.data import DataError, load_examples
from symnoise.data.formats import canonical_format, detect_format, to_examples

ALPACA = [
    {"instruction": "Add two and three.", "input": "", "output": "Five."},
    {"instruction": "Translate to French.", "input": "good morning", "output": "bonjour"},
]
EVOL_FLAT = [
    {"instruction": "Name a colour.", "output": "Blue."},
    {"instruction": "Name a fruit.", "output": "Pear."},
]
EVOL_CONV = [
    {
        "idx": 7,
        "conversations": [
            {"from": "human", "value": "Write a haiku about rain."},
            {"from": "gpt", "value": "Soft rain on the roof"},
        ],
    },
    {
        "idx": 8,
        "conversations": [
            {"from": "human", "value": "Count to three."},
            {"from": "gpt", "value": "1, 2, 3"},
        ],
    },
]
SHAREGPT = [
    {
        "id": "a1",
        "conversations": [
            {"from": "human", "value": "Hi, who are you?"},
            {"from": "gpt", "value": "An assistant."},
            {"from": "human", "value": "And what can you do?"},
            {"from": "gpt", "value": "Answer questions."},
        ],
    },
    {
        "id": "a2",
        "conversations": [
            {"from": "system", "value": "Be terse."},
            {"from": "human", "value": "Capital of Italy?"},
            {"from": "gpt", "value": "Rome."},
        ],
    },
]
PLATYPUS = [
    {
        "instruction": "Solve 2x = 6.",
        "input": "",
        "output": "x = 3",
        "data_source": "tiny_math",
    },
    {
        "instruction": "Is 7 prime?",
        "input": "answer yes or no",
        "output": "yes",
        "data_source": "tiny_math",
    },
]


def write_json(path, records):
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "records, expected",
    [
        (ALPACA, "alpaca"),
        (EVOL_FLAT, "evol_instruct"),
        (EVOL_CONV, "evol_instruct"),
        (SHAREGPT, "sharegpt"),
        (PLATYPUS, "openplatypus"),
    ],
)
def test_detect_format(records, expected):
    assert detect_format(records, "x.json") == expected


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet"])
def test_alpaca_from_files(tmp_path, suffix):
    path = tmp_path / f"data{suffix}"
    if suffix == ".json":
        write_json(path, ALPACA)
    elif suffix == ".jsonl":
        write_jsonl(path, ALPACA)
    else:
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(ALPACA), str(path))
    examples, report = load_examples(path)
    assert report.format == "alpaca" and report.detected
    assert (report.read, report.used, report.skipped) == (2, 2, 0)
    assert [e.instruction for e in examples] == ["Add two and three.", "Translate to French."]
    assert [e.input for e in examples] == ["", "good morning"]
    assert [e.output for e in examples] == ["Five.", "bonjour"]
    assert examples[1].source == f"{path}:1"


def test_evol_instruct_flat_and_conversation(tmp_path):
    ex, rep = load_examples(write_jsonl(tmp_path / "evol.jsonl", EVOL_FLAT))
    assert rep.format == "evol_instruct"
    assert [(e.instruction, e.input, e.output) for e in ex] == [
        ("Name a colour.", "", "Blue."),
        ("Name a fruit.", "", "Pear."),
    ]
    ex, rep = load_examples(write_json(tmp_path / "evol2.json", EVOL_CONV))
    assert rep.format == "evol_instruct"
    assert ex[0].instruction == "Write a haiku about rain."
    assert ex[0].output == "Soft rain on the roof"
    assert ex[0].meta["idx"] == 7


def test_conversation_role_content_keys():
    rec = {
        "idx": 1,
        "conversation": [
            {"role": "user", "content": "Q?"},
            {"role": "assistant", "content": "A."},
        ],
    }
    [ex], _ = to_examples([rec], "evol_instruct", "mem")
    assert (ex.instruction, ex.output, ex.source) == ("Q?", "A.", "mem:0")


def test_sharegpt_cut_to_first_turn(tmp_path):
    ex, rep = load_examples(write_json(tmp_path / "sg.json", SHAREGPT))
    assert rep.format == "sharegpt"
    assert [(e.instruction, e.output) for e in ex] == [
        ("Hi, who are you?", "An assistant."),
        ("Capital of Italy?", "Rome."),
    ]
    assert rep.multi_turn_cut == 1
    assert rep.system_turns == 1
    assert ex[0].meta["cut_turns"] == 2 and ex[0].meta["n_turns"] == 4
    assert ex[1].meta["system"] == "Be terse."
    assert "cut_turns" not in ex[1].meta


def test_sharegpt_leading_assistant_turn_is_skipped_and_noted():
    rec = {
        "id": "z",
        "conversations": [
            {"from": "gpt", "value": "orphan reply"},
            {"from": "human", "value": "real question"},
            {"from": "gpt", "value": "real answer"},
        ],
    }
    ex, rep = to_examples([rec], "sharegpt", "s.json")
    assert (ex[0].instruction, ex[0].output) == ("real question", "real answer")
    assert ex[0].meta["skipped_leading_turns"] == 1


def test_openplatypus_metadata_in_meta(tmp_path):
    ex, rep = load_examples(write_jsonl(tmp_path / "p.jsonl", PLATYPUS))
    assert rep.format == "openplatypus"
    assert ex[0].meta == {"data_source": "tiny_math"}
    assert (ex[1].instruction, ex[1].input, ex[1].output) == (
        "Is 7 prime?",
        "answer yes or no",
        "yes",
    )


def test_explicit_format_one_name_each():
    assert canonical_format("Evol-Instruct") == "evol_instruct"  # case and - vs _ only
    with pytest.raises(DataError, match="unknown data format 'open_platypus'.*openplatypus"):
        canonical_format("open_platypus")  # no aliases
    ex, rep = to_examples(ALPACA, "openplatypus", "a.json")
    assert rep.format == "openplatypus" and not rep.detected and len(ex) == 2
    with pytest.raises(DataError, match="unknown data format 'dolly'.*alpaca"):
        to_examples(ALPACA, "dolly", "a.json")


def test_detect_majority_vote_and_failure():
    mixed = [EVOL_FLAT[0], ALPACA[0], ALPACA[1]]
    assert detect_format(mixed, "m.json") == "alpaca"
    with pytest.raises(DataError, match=r"q\.json: cannot detect.*\['prompt', 'reply'\]"):
        detect_format([{"prompt": "a", "reply": "b"}], "q.json")


BAD_ROWS = [
    ({"instruction": "x"}, "field 'output' is missing"),
    ({"instruction": "x", "output": 3}, "field 'output' must be a string, got int 3"),
    ({"instruction": "  ", "output": "y"}, "field 'instruction' is empty"),
    ({"instruction": "x", "output": "\n "}, "field 'output' is empty"),
    ({"instruction": "x", "input": ["a"], "output": "y"}, "field 'input' must be a string"),
    (["not", "an", "object"], "row must be a JSON object, got list"),
]


@pytest.mark.parametrize("bad, reason", BAD_ROWS)
def test_bad_row_raises_with_file_and_row(tmp_path, bad, reason):
    records = [ALPACA[0], ALPACA[1], bad, ALPACA[0]]
    path = write_json(tmp_path / "data.json", records)
    with pytest.raises(DataError) as info:
        load_examples(path, fmt="alpaca")
    msg = str(info.value)
    assert msg.startswith(f"{path} row 2: ")
    assert reason in msg
    assert info.value.row == 2 and info.value.file == str(path)


@pytest.mark.parametrize("bad, reason", BAD_ROWS)
def test_bad_row_skipped_and_counted(tmp_path, bad, reason):
    records = [ALPACA[0], bad, ALPACA[1], bad, ALPACA[0]]
    path = write_json(tmp_path / "data.json", records)
    ex, rep = load_examples(path, fmt="alpaca", skip_bad_rows=True)
    assert (rep.read, rep.used, rep.skipped) == (5, 3, 2)
    assert len(ex) == 3
    assert [e.source for e in ex] == [f"{path}:0", f"{path}:2", f"{path}:4"]
    assert rep.skipped_reasons[0] == f"{path}:1: " + rep.skipped_reasons[0].split(": ", 1)[1]
    assert reason in rep.skipped_reasons[0] and rep.skipped_reasons[1].startswith(f"{path}:3: ")
    assert sum(rep.skipped_by_kind.values()) == 2
    assert rep.to_dict()["skipped"] == 2


BAD_CONVERSATIONS = [
    ([{"from": "human", "value": "only a question"}], "not followed by an assistant turn"),
    ([{"from": "gpt", "value": "only a reply"}], "no user turn followed by an assistant"),
    (
        [{"from": "human", "value": "q"}, {"from": "human", "value": "q2"}],
        "followed by 'human', not an assistant turn",
    ),
    ([{"from": "human", "value": "q"}, {"from": "gpt", "value": " "}], "(assistant) is empty"),
    ([{"from": "human", "value": ""}, {"from": "gpt", "value": "a"}], "(user) is empty"),
    ([{"from": "robot", "value": "q"}], "unknown speaker 'robot'"),
    ([{"from": "human", "value": 5}, {"from": "gpt", "value": "a"}], "must be a string"),
    ("not a list", "must be a list of turns"),
    ([], "no user turn followed by an assistant"),
]


@pytest.mark.parametrize("conv, reason", BAD_CONVERSATIONS)
def test_bad_conversation_rows(tmp_path, conv, reason):
    records = [SHAREGPT[0], {"id": "bad", "conversations": conv}]
    path = write_jsonl(tmp_path / "sg.jsonl", records)
    with pytest.raises(DataError) as info:
        load_examples(path, fmt="sharegpt")
    assert str(info.value).startswith(f"{path} row 1: ")
    assert reason in str(info.value)
    ex, rep = load_examples(path, fmt="sharegpt", skip_bad_rows=True)
    assert (rep.used, rep.skipped) == (1, 1)
    assert reason in rep.skipped_reasons[0]


def test_skipped_reasons_capped_at_20():
    records = [{"instruction": "x", "output": ""}] * 30 + [ALPACA[0]]
    ex, rep = to_examples(records, "alpaca", "many.json", skip_bad_rows=True)
    assert rep.skipped == 30 and rep.used == 1 and len(ex) == 1
    assert len(rep.skipped_reasons) == 20
    assert rep.skipped_reasons[19].startswith("many.json:19: ")
    assert rep.skipped_by_kind == {"empty field": 30}


def test_max_examples_counts_limited(tmp_path):
    path = write_json(tmp_path / "d.json", ALPACA * 3)
    ex, rep = load_examples(path, max_examples=4)
    assert len(ex) == 4
    assert (rep.read, rep.used, rep.skipped, rep.limited) == (6, 4, 0, 2)


def test_null_input_is_empty_string():
    ex, _ = to_examples([{"instruction": "a", "input": None, "output": "b"}], "alpaca", "n")
    assert ex[0].input == ""


UNREAD = [
    (ALPACA[1] | {"category": "translation"}, "alpaca", "'category' not read by the alpaca"),
    (PLATYPUS[0] | {"license": "mit", "url": "x"}, "openplatypus",
     "'license', 'url' not read by the openplatypus format (it reads instruction, input, "
     "output and ignores data_source)"),
    (SHAREGPT[1] | {"system": "Be terse."}, "sharegpt", "'system' not read by the sharegpt"),
    (EVOL_CONV[0] | {"id": "a"}, "evol_instruct", "'id' not read by the evol_instruct"),
    (SHAREGPT[0] | {"conversation": SHAREGPT[1]["conversations"]}, "sharegpt",
     "'conversation' not read"),
]


@pytest.mark.parametrize("bad, fmt, reason", UNREAD)
def test_unread_keys_are_a_bad_row_naming_them(tmp_path, bad, fmt, reason):
    path = write_json(tmp_path / "d.json", [bad])
    with pytest.raises(DataError) as info:
        load_examples(path, fmt=fmt)
    assert str(info.value).startswith(f"{path} row 0: ") and reason in str(info.value)
    assert info.value.kind == "unread field"
    ex, rep = load_examples(path, fmt=fmt, skip_bad_rows=True)
    assert (ex, rep.skipped, rep.skipped_by_kind) == ([], 1, {"unread field": 1})


def test_empty_unread_keys_and_metadata_keys_are_read():
    rows = [ALPACA[0] | {"note": None, "tags": [], "extra": {}, "blank": "  ",
                        "text": "rendered", "family": "f"}]
    ex, rep = to_examples(rows, "auto", "e.json")
    assert rep.format == "alpaca" and ex[0].meta == {"text": "rendered", "family": "f"}
    evol = {"instruction": "q", "output": "a", "dataset": "oasst", "generator": "davinci"}
    ex, rep = to_examples([evol], "auto", "ae.json")
    assert rep.format == "evol_instruct" and ex[0].meta == {"dataset": "oasst",
                                                            "generator": "davinci"}
    with pytest.raises(DataError, match="'note' not read"):
        to_examples([ALPACA[0] | {"note": 0}], "alpaca", "z.json")  # 0 is a value


@pytest.mark.parametrize("name", ["alpaca_9k.json", "alpaca_eval_805.json"])
def test_shared_files_load_as_training_data(name):
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "shared" / "data" / name
    if not path.is_file():
        pytest.skip(f"shared {name} absent")
    ex, rep = load_examples(path, skip_bad_rows=True)  # alpaca_9k: 4 empty outputs
    assert rep.skipped_by_kind.get("unread field", 0) == 0
    assert rep.used == rep.read - rep.skipped and rep.used > 800
