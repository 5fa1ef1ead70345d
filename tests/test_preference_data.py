"""Preference pairs: every format detected, named and converted to TRL's rows; bad rows named
with file, row and key, and counted; the held-out split rebuilt by eval is train's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from symnoise.config import TrainConfig
from symnoise.data.formats import DataError
from symnoise.data.preference import load_preference_rows
from symnoise.data.run_data import load_preference_run_data
from symnoise.data.templates import ALPACA_WITH_INPUT
from symnoise.evaluate.heldout import recorded_config

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "dpo_en_300.json"
USER, BOT = ("user", "assistant")


def msg(role: str, text: str) -> dict[str, str]:
    return {"role": role, "content": text}


CASES = [  # (format, record, row it becomes)
    ("trl_standard", {"prompt": "Q", "chosen": "A", "rejected": "B", "id": 7},
     {"prompt": "Q", "chosen": "A", "rejected": "B"}),
    ("trl_conversational",
     {"prompt": [msg(USER, "Q")], "chosen": [msg(BOT, "A")], "rejected": [msg(BOT, "B")]},
     {"prompt": [msg(USER, "Q")], "chosen": [msg(BOT, "A")], "rejected": [msg(BOT, "B")]}),
    ("llamafactory_alpaca",
     {"instruction": "Sort", "input": "3 1", "chosen": "1 3", "rejected": "3 1",
      "system": "Be brief.", "history": [["Hi", "Hello"]]},
     {"prompt": [msg("system", "Be brief."), msg(USER, "Hi"), msg(BOT, "Hello"),
                 msg(USER, "Sort\n\n3 1")], "chosen": [msg(BOT, "1 3")],
      "rejected": [msg(BOT, "3 1")]}),
    ("llamafactory_sharegpt",
     {"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "Q"}],
      "chosen": {"from": "gpt", "value": "A"}, "rejected": {"from": "gpt", "value": "B"}},
     {"prompt": [msg("system", "S"), msg(USER, "Q")], "chosen": [msg(BOT, "A")],
      "rejected": [msg(BOT, "B")]}),
    ("hh_rlhf",  # the replies share "I " and more: the prompt ends at the last Assistant:
     {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Help?\n\nAssistant: I can",
      "rejected": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Help?\n\nAssistant: I cannot"},
     {"prompt": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Help?\n\nAssistant:",
      "chosen": " I can", "rejected": " I cannot"}),
]


@pytest.mark.parametrize(("fmt", "record", "row"), CASES, ids=[c[0] for c in CASES])
def test_each_format_is_detected_named_and_converted(fmt, record, row):
    data = load_preference_rows([record, record], source="p.json")
    assert data.format == fmt and data.report.detected
    assert data.rows == [row, row] and data.skipped == 0
    assert data.template == ("chat" if isinstance(row["prompt"], list) else None)


def test_named_templates_render_one_turn_prompts_and_refuse_longer_ones():
    alpaca = {"instruction": "Sort", "input": "3 1", "chosen": "1 3", "rejected": "3 1"}
    data = load_preference_rows([alpaca], source="p.json", template="alpaca")
    assert data.rows == [{"prompt": ALPACA_WITH_INPUT.format(instruction="Sort", input="3 1"),
                          "chosen": "1 3", "rejected": "3 1"}]
    vicuna = load_preference_rows([{"prompt": "Q", "chosen": "A", "rejected": "B"}],
                                  source="p.json", template="vicuna").rows[0]
    assert vicuna["prompt"].endswith("USER: Q ASSISTANT:") and vicuna["chosen"] == " A"
    chat = load_preference_rows([GOOD], source="p.json", template="chat").rows[0]
    assert chat == {"prompt": [msg(USER, "Q")], "chosen": [msg(BOT, "A")],
                    "rejected": [msg(BOT, "B")]}
    long = CASES[3][1]  # a system turn and a user turn
    with pytest.raises(DataError, match="row 0: both a 'system' field and a system turn"):
        load_preference_rows([{**long, "system": "T"}], source="p.json")
    one = {**long, "conversations": long["conversations"][1:]}
    with pytest.raises(DataError, match=r"p\.json row 1: the prompt has 2 turns.*--template chat"):
        load_preference_rows([one, long], source="p.json", template="alpaca")


GOOD = {"prompt": "Q", "chosen": "A", "rejected": "B"}
BAD = [  # (record, kind, key named)
    ({"prompt": "Q", "chosen": "same", "rejected": "same "}, "chosen equals rejected", "chosen"),
    ({"prompt": "Q", "chosen": "A", "rejected": "  "}, "empty field", "rejected"),
    ({"prompt": "Q", "chosen": "A"}, "missing field", "rejected"),
    ({"prompt": "Q", "chosen": "A", "rejected": "B", "note": "x"}, "unread field", "note"),
    ({"prompt": [msg(USER, "Q")], "chosen": [msg(USER, "A")], "rejected": [msg(BOT, "B")]},
     "bad conversation", "chosen"),
]


@pytest.mark.parametrize(("record", "kind", "key"), BAD, ids=[b[1] for b in BAD])
def test_bad_rows_are_named_or_counted(record, kind, key):
    good = GOOD if not isinstance(record["prompt"], list) else CASES[1][1]
    with pytest.raises(DataError) as err:
        load_preference_rows([good, record, good], source="p.json")
    assert str(err.value).startswith("p.json row 1: ") and key in str(err.value)
    assert (err.value.row, err.value.field, err.value.kind) == (1, key, kind)
    data = load_preference_rows([good, record, good], source="p.json", skip_bad_rows=True)
    assert (len(data.rows), data.skipped, data.report.skipped_by_kind) == (2, 1, {kind: 1})


def test_transcripts_without_a_shared_prompt_are_bad_rows():
    good = CASES[4][1]
    bad = {"chosen": "\n\nHuman: A\n\nAssistant: x", "rejected": "\n\nHuman: B\n\nAssistant: y"}
    with pytest.raises(DataError, match=r"p\.json row 1: chosen and rejected share no prefix"):
        load_preference_rows([good, bad], source="p.json")
    data = load_preference_rows([good, bad], source="p.json", skip_bad_rows=True)
    assert data.report.skipped_by_kind == {"no shared prefix": 1}


@pytest.mark.skipif(not SHARED.is_file(), reason="../shared/data is not on this machine")
def test_the_real_llamafactory_file():
    records = json.loads(SHARED.read_text(encoding="utf-8"))
    data = load_preference_rows(records, source=str(SHARED))
    assert (data.format, len(data.rows)) == ("llamafactory_sharegpt", 300)
    prompts = [r["prompt"] for r in data.rows]
    assert sum(len(p) > 1 for p in prompts) == 186  # a system turn or earlier turns
    assert sum(p[0]["role"] == "system" for p in prompts) == 80
    assert all(p[-1]["role"] == "user" and len(r["chosen"]) == 1 for p, r in
               zip(prompts, data.rows, strict=True))
    one_turn = load_preference_rows(records, source=str(SHARED), template="alpaca",
                                    skip_bad_rows=True)
    assert (len(one_turn.rows), one_turn.report.skipped_by_kind) == (
        114, {"needs the chat template": 186})


def test_the_heldout_split_is_rebuilt_exactly(tmp_path):
    pairs = [{"prompt": f"q{i}", "chosen": f"a{i}", "rejected": f"b{i}"} for i in range(40)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    cfg = TrainConfig(data=str(path), eval_fraction=0.2, seed=3)
    at_train = load_preference_run_data(cfg)
    info = json.loads(json.dumps({"config": cfg.to_dict()}))  # as run.json records it
    at_eval = load_preference_run_data(recorded_config(info), train=False)
    assert len(at_eval.eval) == 8 and at_eval.eval == at_train.eval
    assert sorted(map(str, at_train.train + at_train.eval)) == sorted(map(str, pairs))
    assert not {str(r) for r in at_train.train} & {str(r) for r in at_train.eval}
    info["config"]["seed"] = 4  # the rule depends on the seed: another one holds out others
    assert load_preference_run_data(recorded_config(info), train=False).eval != at_train.eval
    other = tmp_path / "other.json"
    other.write_text(json.dumps(pairs[:5]))
    given = load_preference_run_data(cfg, train=False, eval_data=str(other))
    assert given.eval == pairs[:5] and given.eval_source == f"eval_data {other}"


def test_invalid_json_lines_are_bad_rows(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(GOOD) + "\n{oops\n" + json.dumps(GOOD) + "\n")
    with pytest.raises(DataError, match=r"p\.jsonl: line 2: invalid JSON"):
        load_preference_run_data(TrainConfig(data=str(path)))
    cfg = TrainConfig(data=str(path), skip_bad_rows=True, eval_fraction=0)
    data = load_preference_run_data(cfg).prepared
    assert (len(data.rows), data.report.skipped_by_kind) == (2, {"invalid JSON": 1})
