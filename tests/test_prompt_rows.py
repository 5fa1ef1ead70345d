"""Prompt rows: every shape read into the exact prompt text; no field silently dropped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_tokenizer

from symnoise.data import DataError
from symnoise.data.prompts import check_template, read_prompts, render_prompt
from symnoise.data.templates import get_template
from symnoise.generate import load_prompts

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CHAT_JINJA = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
              "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def alpaca(instruction: str, input: str = "") -> str:
    """The Stanford Alpaca prompt, spelled out here (not taken from the code under test)."""
    if input:
        return ("Below is an instruction that describes a task, paired with an input that "
                "provides further context. Write a response that appropriately completes the "
                f"request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n"
                "### Response:")
    return ("Below is an instruction that describes a task. Write a response that "
            "appropriately completes the request.\n\n"
            f"### Instruction:\n{instruction}\n\n### Response:")


def chat_tokenizer():
    tok = make_tokenizer()
    tok.chat_template = CHAT_JINJA
    return tok


def texts(rows, template="alpaca", **kw):
    got = read_prompts(rows, "p.json", "p", **kw)
    tmpl = get_template(template, chat_tokenizer())
    check_template(got, tmpl)
    return got, [render_prompt(tmpl, p) for p in got.prompts]


INSTANCES = {"id": "seed_task_7", "instruction": "What is the relation between the pairs?",
             "instances": [{"input": "Night : Day", "output": "opposites"},
                           {"input": "Cat : Kitten", "output": "parent and young"}]}


def test_alpaca_alpacaeval_string_and_prompt_rows():
    rows = [{"instruction": "Sort them.", "input": "3 1 2", "output": "1 2 3"},
            {"instruction": "Say hi.", "dataset": "helpful_base", "output": "Hi",
             "generator": "text_davinci_003"},
            "Name a colour.", {"prompt": "Count to three."}]
    got, text = texts(rows)
    assert got.shapes == {"alpaca": 1, "alpaca_eval": 1, "string": 1, "prompt": 1}
    assert text == [alpaca("Sort them.", "3 1 2"), alpaca("Say hi."), alpaca("Name a colour."),
                    alpaca("Count to three.")]
    assert [p.dataset for p in got.prompts] == ["p", "helpful_base", "p", "p"]
    entry = got.prompts[1].entry("hello", "m")
    assert entry == {"instruction": "Say hi.", "output": "hello", "generator": "m",
                     "dataset": "helpful_base", "row": 1}


def test_instances_one_prompt_each_with_row_and_instance():
    got, text = texts([{"instruction": "Add."}, INSTANCES])
    assert got.shapes == {"alpaca": 1, "instances": 1} and got.n_rows == 2
    assert text == [alpaca("Add."), alpaca(INSTANCES["instruction"], "Night : Day"),
                    alpaca(INSTANCES["instruction"], "Cat : Kitten")]
    assert [(p.index, p.row, p.instance) for p in got.prompts] == [(0, 0, None), (1, 1, 0),
                                                                   (2, 1, 1)]
    assert got.prompts[2].entry("x", "m") == {
        "instruction": INSTANCES["instruction"], "input": "Cat : Kitten", "output": "x",
        "generator": "m", "dataset": "p", "row": 1, "instance": 1, "id": "seed_task_7"}
    assert "2 instance prompts" in got.describe()


def test_chat_rows_openai_and_sharegpt():
    openai = {"messages": [{"role": "system", "content": "Be terse."},
                           {"role": "user", "content": "Capital of Italy?"}]}
    sharegpt = {"id": "c2", "conversations": [{"from": "human", "value": "Hi"},
                                              {"from": "gpt", "value": "Hello!"},
                                              {"from": "human", "value": "Who are you?"}]}
    one_turn = {"messages": [{"role": "user", "content": "Name a fish."}]}
    got, text = texts([openai, sharegpt, one_turn], template="chat")
    assert got.shapes == {"chat (openai)": 2, "chat (sharegpt)": 1}
    assert text == ["<|system|>Be terse.\n<|user|>Capital of Italy?\n<|assistant|>",
                    "<|user|>Hi\n<|assistant|>Hello!\n<|user|>Who are you?\n<|assistant|>",
                    "<|user|>Name a fish.\n<|assistant|>"]
    assert [p.instruction for p in got.prompts] == ["Capital of Italy?", "Who are you?",
                                                   "Name a fish."]
    assert got.prompts[1].entry("a", "m")["id"] == "c2"
    assert "whole conversation through the tokenizer's chat template" in got.describe("chat")
    # under a training template a one-turn chat row is its instruction; longer ones stop
    _, text = texts([one_turn], template="alpaca")
    assert text == [alpaca("Name a fish.")]
    with pytest.raises(DataError, match=r"p\.json: 2 chat rows .*first: row 0.*--template chat"):
        texts([openai, sharegpt, one_turn], template="vicuna")


@pytest.mark.parametrize("row, reason", [
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
     "must be a non-empty user turn"),
    ({"messages": [{"role": "robot", "content": "q"}]}, "unknown speaker 'robot'"),
    ({"messages": "hi"}, "must be a list of turns"),
    ({"instruction": "x", "instances": [{"input": 3}]}, "instances[0]: field 'input' must be"),
    ({"instruction": "x", "instances": "abc"}, "'instances' must be a list"),
    ({"prompt": 5}, "field 'prompt' is not a non-empty string"),
    ({"input": "x"}, "field 'instruction' is missing"),
])
def test_bad_rows_name_row_and_reason(row, reason):
    with pytest.raises(DataError) as info:
        read_prompts([{"instruction": "ok"}, row], "f.json", "f")
    assert str(info.value).startswith("f.json row 1: ") and reason in str(info.value)


def test_unread_fields_stop_with_names_and_counts():
    rows = [{"instruction": "a", "context": "the pairs"}, {"instruction": "b", "context": ""},
            {"instruction": "c", "context": "more", "category": "qa"},
            {"messages": [{"role": "user", "content": "q", "name": "bob"}]},
            {"instruction": "d", "instances": [{"input": "i", "note": "n"}]},
            {"instruction": "e", "tags": [], "meta": {}, "extra": None},  # empty: fine
            {"messages": [{"role": "user", "content": "m"}],
             "conversations": [{"from": "human", "value": "c"}]}]
    with pytest.raises(DataError) as info:
        read_prompts(rows, "u.json", "u")
    msg = str(info.value)
    assert msg.startswith("u.json: fields that no prompt shape reads")
    for part in ("'category' (1 of 7 rows, first row 2)", "'context' (2 of 7 rows, first row 0)",
                 "'conversations' (1 of 7 rows, first row 6)",
                 "'instances[].note' (1 of 7 rows, first row 4)",
                 "'messages[].name' (1 of 7 rows, first row 3)", "--ignore-fields "
                 "'category,context,conversations,instances[].note,messages[].name'"):
        assert part in msg, part
    # the same rows, the unread fields dropped on purpose and counted
    got = read_prompts(rows, "u.json", "u", ignore_fields="context, category,absent,"
                       "instances[].note,messages[].name,conversations")
    assert got.ignored == {"absent": 0, "category": 1, "context": 2, "instances[].note": 1,
                           "messages[].name": 1, "conversations": 1}
    assert [p.instruction for p in got.prompts] == ["a", "b", "c", "q", "d", "e", "m"]
    assert got.prompts[0].input == "" and "context" not in got.prompts[0].entry("o", "m")


def test_jsonl_of_strings_and_limit(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('"first question"\n"second question"\n{"prompt": "third"}\n')
    got = load_prompts(str(path), limit=2)
    assert [(p.instruction, p.row) for p in got.prompts] == [("first question", 0),
                                                            ("second question", 1)]
    assert got.shapes == {"string": 2, "prompt": 1} and got.n_rows == 3
    path = tmp_path / "s.json"
    path.write_text(json.dumps(["a", {"prompt": "b", "context": "c"}]))
    with pytest.raises(DataError, match=r"s\.json: .*'context' \(1 of 2 rows, first row 1\)"):
        load_prompts(str(path), limit=1)  # every row is checked, also past the limit


@pytest.mark.skipif(not (SHARED / "alpaca_eval_805.json").is_file(),
                    reason="shared AlpacaEval file absent")
@pytest.mark.parametrize("name", ["alpaca_eval_805.json", "alpaca_9k.json"])
def test_shared_files_read_as_prompts(name):
    got = load_prompts(str(SHARED / name))
    raw = json.loads((SHARED / name).read_text())
    shape = "alpaca_eval" if "eval" in name else "alpaca"
    assert len(got.prompts) == len(raw) and got.shapes == {shape: len(raw)}
    assert [p.row for p in got.prompts] == list(range(len(raw)))
