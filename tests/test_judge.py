"""Tests of the pairwise LLM judge (symnoise.evaluate.judge)."""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest
from _fake_openai import FakeAPI, serve

from symnoise.evaluate import judge as J
from symnoise.evaluate.judge_prompts import (
    CONFIG_DIR,
    TEMPLATE_VERSION,
    build_plain_prompt,
    parse_verdict,
)
from symnoise.outputs import OutputsError

# --------------------------------------------------------------------------------------
# A small real HTTP server that speaks /v1/chat/completions (tests/_fake_openai.py)
# --------------------------------------------------------------------------------------

_SECTION = re.compile(r"## Output \((a|b)\)\n(.*?)(?=\n\n## |\n\nWhich output)", re.S)


def sections(messages: list[dict[str, str]]) -> dict[str, str]:
    """The two outputs shown to the judge, read back from the user message."""
    user = messages[-1]["content"]
    return {m.group(1): m.group(2) for m in _SECTION.finditer(user)}


def question(instruction: str, output_a: str, output_b: str) -> list[dict[str, str]]:
    """The chat messages of one question, rendered by alpaca_eval from our template."""
    import pandas as pd

    utils = J.load_alpaca_eval().utils
    template = (CONFIG_DIR / "symnoise-pairwise" / "pairwise.txt").read_text()
    row = {"instruction": instruction, "output_1": output_a, "output_2": output_b}
    return utils.prompt_to_chatml(utils.make_prompts(pd.DataFrame([row]), template)[0][0])


def score_of(text: str) -> int:
    return int(re.search(r"score=(\d+)", text).group(1))


def reply_by_score(messages: list[dict[str, str]]) -> str:
    """A consistent judge: prefers the output with the larger ``score=N``; equal -> tie."""
    out = sections(messages)
    sa, sb = score_of(out["a"]), score_of(out["b"])
    return "Output (a)" if sa > sb else "(b)" if sb > sa else "tie"


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    yield from serve(FakeAPI(url="", reply=reply_by_score))


def rows(scores_model: list[int], scores_ref: list[int], datasets: list[str] | None = None):
    """Model and reference outputs whose texts carry a score for the fake judge."""
    model, ref = [], []
    for i, (sm, sr) in enumerate(zip(scores_model, scores_ref, strict=True)):
        ds = datasets[i] if datasets else None
        model.append(
            {
                "instruction": f"Task {i}",
                "output": f"model answer score={sm}" + "!" * i,
                "generator": "my_model",
                **({"dataset": ds} if ds else {}),
            }
        )
        ref.append(
            {
                "instruction": f"Task {i}",
                "output": f"reference score={sr}",
                "generator": "ref_model",
                **({"dataset": ds} if ds else {}),
            }
        )
    return model, ref


def expected_pref(sm: int, sr: int) -> float:
    return 2.0 if sm > sr else 1.0 if sm < sr else 1.5


# --------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------


def test_win_rate_hand_example() -> None:
    # win, win, loss, tie, win -> values 100, 100, 0, 50, 100
    rate, se, n = J.win_rate([2, 2, 1, 1.5, 2])
    assert n == 5
    assert rate == pytest.approx(70.0)
    # sample variance: (3*30^2 + 70^2 + 20^2) / 4 = 2000 -> sd sqrt(2000); se = sd / sqrt(5) = 20
    assert se == pytest.approx(20.0)
    assert J.win_rate([1.5, 1.5])[:2] == (50.0, 0.0)
    assert math.isnan(J.win_rate([2])[1]) and J.win_rate([2])[0] == 100.0
    assert math.isnan(J.win_rate([])[0])


@pytest.mark.parametrize(
    ("reply", "label"),
    [
        ("a", "a"), ("B", "b"), ("(a)", "a"), ("Output (b)", "b"), ("**a**", "a"), ("b.", "b"),
        ("Output (b) is better than output (a).", "b"), ("Verdict: a", "a"),
        ("I prefer output b", "b"), ("Output (a)\n\nOutput (b) misses the point.", "a"),
        ("tie", "tie"), ("Tie.", "tie"),
        ("A good answer would mention both.", None), ("(a) and (b) are both fine", None),
        ("zzz", None), ("", None), (None, None), ("banana", None),
    ],
)  # fmt: skip
def test_parse_verdict(reply: str | None, label: str | None) -> None:
    assert parse_verdict(reply) == label


# --------------------------------------------------------------------------------------
# OpenAI-compatible judge against the stdlib server
# --------------------------------------------------------------------------------------


def test_win_rate_end_to_end_hand_example(api: FakeAPI, tmp_path: Path) -> None:
    sm, sr = [3, 5, 1, 2, 9], [1, 2, 4, 2, 0]  # win, win, loss, tie, win
    model, ref = rows(sm, sr, ["x", "x", "y", "y", "y"])
    report = J.judge_outputs(
        model,
        ref,
        judge="openai:fake",
        output_dir=tmp_path,
        base_url=api.url,
        seed=3,
        progress=False,
    )
    assert report.win_rate == pytest.approx(70.0)
    assert report.standard_error == pytest.approx(20.0)
    assert (report.n_total, report.n_parsed, report.n_unparseable, report.n_errors) == (5, 5, 0, 0)
    assert (report.n_wins, report.n_losses, report.n_ties) == (3, 1, 1)
    assert report.per_dataset["x"].win_rate == pytest.approx(100.0)
    assert report.per_dataset["x"].standard_error == pytest.approx(0.0)
    assert report.per_dataset["y"].win_rate == pytest.approx(50.0)  # 0, 50, 100
    assert report.per_dataset["y"].standard_error == pytest.approx(50.0 / math.sqrt(3))
    assert report.avg_length == pytest.approx(statistics.fmean(len(m["output"]) for m in model))
    assert report.avg_length_reference == pytest.approx(
        statistics.fmean(len(r["output"]) for r in ref)
    )
    assert len(api.requests) == 5 and report.n_requested == 5 and report.n_cached == 0
    body = api.requests[0]["body"]
    assert body["model"] == "fake" and body["temperature"] == 0 and body["max_tokens"] <= 32

    ann = json.loads((tmp_path / J.ANNOTATIONS_FILE).read_text())
    assert [a["preference"] for a in ann] == [
        expected_pref(a, b) for a, b in zip(sm, sr, strict=True)
    ]
    for a, m, r in zip(ann, model, ref, strict=True):
        assert a["output_1"] == r["output"] and a["output_2"] == m["output"]
        assert (a["generator_1"], a["generator_2"]) == ("ref_model", "my_model")
        assert a["annotator"] == "symnoise-pairwise" and a["judge"] == "openai:fake"
        assert a["status"] == "ok" and a["judgments"][0]["method"] == "text"
        assert a["order"] == ("model_first" if a["model_first"] else "reference_first")
        assert a["raw_completion"] in ("Output (a)", "(b)", "tie")
    board = json.loads((tmp_path / J.LEADERBOARD_JSON).read_text())
    assert board["my_model"]["win_rate"] == pytest.approx(70.0)
    assert board["my_model"]["per_dataset"] == {"x": pytest.approx(100.0), "y": pytest.approx(50.0)}
    md = (tmp_path / J.LEADERBOARD_MD).read_text()
    assert "| my_model | 70.00 | 20.00 | 5 |" in md
    table = report.format_table()
    assert "my_model" in table and "70.00" in table and "20.00" in table
    assert report.to_dict()["per_dataset"]["y"]["n"] == 3


def test_random_order_is_seeded_and_recorded(api: FakeAPI, tmp_path: Path) -> None:
    always_a = lambda messages: "a"  # noqa: E731 - a judge with full position bias
    api.reply = always_a
    model, ref = rows([1] * 24, [1] * 24)
    r1 = J.judge_outputs(
        model,
        ref,
        judge="openai:fake",
        output_dir=tmp_path / "1",
        base_url=api.url,
        seed=7,
        progress=False,
    )
    ann1 = json.loads((tmp_path / "1" / J.ANNOTATIONS_FILE).read_text())
    firsts = [a["model_first"] for a in ann1]
    assert 0 < sum(firsts) < 24  # both orders occur
    # The judge always says (a): the model wins exactly when it was shown first.
    assert [a["preference"] for a in ann1] == [2.0 if f else 1.0 for f in firsts]
    assert r1.win_rate == pytest.approx(100.0 * sum(firsts) / 24)
    # The output shown as (a) is the one the annotation says.
    assert len(api.requests) == 24
    by_task = {a["instruction"]: a for a in ann1}
    for req in api.requests:  # requests run concurrently: match them by instruction
        user = req["body"]["messages"][-1]["content"]
        a = by_task[re.search(r"Task \d+", user).group(0)]
        shown = sections(req["body"]["messages"])
        assert shown["a"] == (a["output_2"] if a["model_first"] else a["output_1"])
        assert shown["b"] == (a["output_1"] if a["model_first"] else a["output_2"])
    J.judge_outputs(
        model,
        ref,
        judge="openai:fake",
        output_dir=tmp_path / "2",
        base_url=api.url,
        seed=7,
        progress=False,
    )
    ann2 = json.loads((tmp_path / "2" / J.ANNOTATIONS_FILE).read_text())
    assert [a["model_first"] for a in ann2] == firsts
    J.judge_outputs(
        model,
        ref,
        judge="openai:fake",
        output_dir=tmp_path / "3",
        base_url=api.url,
        seed=8,
        progress=False,
    )
    ann3 = json.loads((tmp_path / "3" / J.ANNOTATIONS_FILE).read_text())
    assert [a["model_first"] for a in ann3] != firsts


def test_both_orders_averages(api: FakeAPI, tmp_path: Path) -> None:
    api.reply = lambda messages: "a"  # full position bias cancels out
    model, ref = rows([1, 2, 3], [3, 2, 1])
    report = J.judge_outputs(
        model,
        ref,
        judge="openai:fake",
        output_dir=tmp_path / "bias",
        base_url=api.url,
        both_orders=True,
        progress=False,
    )
    assert len(api.requests) == 6 and report.n_judgments == 6
    assert report.win_rate == pytest.approx(50.0) and report.standard_error == pytest.approx(0.0)
    ann = json.loads((tmp_path / "bias" / J.ANNOTATIONS_FILE).read_text())
    assert all(a["preference"] == 1.5 and a["order"] == "both" for a in ann)
    assert all([j["preference"] for j in a["judgments"]] == [1.0, 2.0] for a in ann)

    api.reply = reply_by_score  # a consistent judge: both orders agree
    report = J.judge_outputs(
        model,
        ref,
        judge="openai:fake",
        output_dir=tmp_path / "fair",
        base_url=api.url,
        both_orders=True,
        progress=False,
    )
    ann = json.loads((tmp_path / "fair" / J.ANNOTATIONS_FILE).read_text())
    assert [a["preference"] for a in ann] == [1.0, 1.5, 2.0]
    assert report.win_rate == pytest.approx(50.0) and report.standard_error == pytest.approx(
        50.0 / math.sqrt(3)
    )

    # One order unparseable -> the item is unparseable (not half-counted).
    api.reply = lambda m: "a" if score_of(sections(m)["a"]) == 9 else "no idea"
    model, ref = rows([9], [0])
    report = J.judge_outputs(
        model,
        ref,
        judge="openai:fake",
        output_dir=tmp_path / "half",
        base_url=api.url,
        both_orders=True,
        progress=False,
    )
    assert (report.n_parsed, report.n_unparseable) == (0, 1)
    ann = json.loads((tmp_path / "half" / J.ANNOTATIONS_FILE).read_text())
    assert ann[0]["preference"] is None and ann[0]["status"] == "unparseable"
    assert sorted(ann[0]["raw_completion"]) == ["a", "no idea"]


def _cache(folder: Path, judge: str = "openai:fake") -> Path:
    return folder / J.cache_file(J.OUR_ANNOTATOR, judge)


def test_cache_avoids_paying_twice(api: FakeAPI, tmp_path: Path) -> None:
    model, ref = rows([1, 2, 3, 4], [2, 2, 2, 2])
    first = J.judge_outputs(
        model,
        ref,
        judge="openai:fake",
        output_dir=tmp_path,
        base_url=api.url,
        max_items=3,
        progress=False,
    )
    assert (first.n_requested, first.n_cached, len(api.requests)) == (3, 0, 3)
    second = J.judge_outputs(
        model, ref, judge="openai:fake", output_dir=tmp_path, base_url=api.url, progress=False
    )
    assert (second.n_requested, second.n_cached, len(api.requests)) == (1, 3, 4)
    assert second.win_rate == pytest.approx(statistics.fmean([0, 50, 100, 100]))
    ann = json.loads((tmp_path / J.ANNOTATIONS_FILE).read_text())
    assert [a["judgments"][0]["cached"] for a in ann] == [True, True, True, False]
    assert len(json.loads(_cache(tmp_path).read_text())) == 4  # alpaca_eval's cache
    # Another judge model is another cache.
    J.judge_outputs(
        model, ref, judge="openai:other", output_dir=tmp_path, base_url=api.url, progress=False
    )
    assert len(api.requests) == 8 and _cache(tmp_path, "openai:other").is_file()
    assert not list(tmp_path.glob("*.part"))  # each save replaced the file whole
    # A damaged cache is an error naming it, not a silent fresh start.
    _cache(tmp_path).write_text(_cache(tmp_path).read_text()[:100])
    with pytest.raises(J.JudgeError, match="not a readable alpaca_eval annotation cache"):
        J.judge_outputs(model, ref, judge="openai:fake", output_dir=tmp_path, base_url=api.url,
                        progress=False)


def test_identical_outputs_tie_without_asking(api: FakeAPI, tmp_path: Path) -> None:
    model, ref = rows([1, 2], [1, 1])
    model[0]["output"] = ref[0]["output"]
    report = J.judge_outputs(model, ref, judge="openai:fake", output_dir=tmp_path,
                             base_url=api.url, both_orders=True, progress=False)
    ann = json.loads((tmp_path / J.ANNOTATIONS_FILE).read_text())
    assert ann[0]["preference"] == 1.5 and ann[0]["judgments"][0]["method"] == "identical"
    assert len(api.chat_requests) == report.n_requested == 2  # only the other pair's orders


def test_cache_file_names_the_annotator_and_judge() -> None:
    names = {J.cache_file(a, j) for a in (J.OUR_ANNOTATOR, "chatgpt_fn")
             for j in ("openai:x", "openai:y", "hf:/m")}
    assert len(names) == 6 and all(n.endswith(".json") for n in names)
    assert TEMPLATE_VERSION  # part of every name: a new wording starts a new cache


def test_unparseable_replies_are_kept_counted_and_cached(api: FakeAPI, tmp_path: Path) -> None:
    api.reply = lambda m: "The weather is lovely today." if "Task 1" in m[-1]["content"] else "b"
    model, ref = rows([1, 2, 3], [0, 0, 0])
    report = J.judge_outputs(
        model, ref, judge="openai:fake", output_dir=tmp_path, base_url=api.url, progress=False
    )
    assert (report.n_total, report.n_parsed, report.n_unparseable, report.n_errors) == (3, 2, 1, 0)
    ann = json.loads((tmp_path / J.ANNOTATIONS_FILE).read_text())
    bad = ann[1]
    assert bad["status"] == "unparseable" and bad["preference"] is None
    assert bad["raw_completion"] == "The weather is lovely today."
    # The other two: the judge said (b), which is the model exactly when it was shown second.
    for a in (ann[0], ann[2]):
        assert a["preference"] == (1.0 if a["model_first"] else 2.0)
    expected = statistics.fmean((a["preference"] - 1) * 100 for a in (ann[0], ann[2]))
    assert report.win_rate == pytest.approx(expected)
    again = J.judge_outputs(
        model, ref, judge="openai:fake", output_dir=tmp_path, base_url=api.url, progress=False
    )
    assert again.n_requested == 0 and len(api.requests) == 3 and again.n_unparseable == 1


def test_retry_then_success(api: FakeAPI) -> None:
    api.fail_first, api.retry_after = 2, "0"
    judge = J.OpenAIJudge("fake", base_url=api.url, max_retries=2)
    [res] = judge.compare([question("Task", "x score=2", "y score=1")])
    assert res.status == "ok" and res.label == "a" and res.raw == "Output (a)"
    assert len(api.requests) == 3 and judge.n_requests == 3
    judge.close()


def test_retry_exhausted_is_an_error_and_not_cached(api: FakeAPI, tmp_path: Path) -> None:
    api.fail_first, api.fail_status, api.retry_after = 2, 429, "0"
    model, ref = rows([3], [1])
    report = J.judge_outputs(
        model,
        ref,
        judge="openai:fake",
        output_dir=tmp_path,
        base_url=api.url,
        max_retries=1,
        progress=False,
    )
    assert len(api.requests) == 2
    assert (report.n_errors, report.n_parsed) == (1, 0) and math.isnan(report.win_rate)
    ann = json.loads((tmp_path / J.ANNOTATIONS_FILE).read_text())
    assert ann[0]["status"] == "error" and ann[0]["preference"] is None
    assert "2 attempts" in ann[0]["error"] and "429" in ann[0]["error"]
    # Errors are not cached: the rerun asks again, and now the server answers.
    report = J.judge_outputs(
        model,
        ref,
        judge="openai:fake",
        output_dir=tmp_path,
        base_url=api.url,
        max_retries=1,
        progress=False,
    )
    assert len(api.requests) == 3 and report.n_errors == 0 and report.win_rate == 100.0


def test_unreachable_server_is_retried_then_error() -> None:
    from _llama_server import free_port

    judge = J.OpenAIJudge(
        "fake",
        base_url=f"http://127.0.0.1:{free_port()}/v1",
        max_retries=2,
        timeout=2,
    )
    [res] = judge.compare([question("i", "a", "b")])
    assert res.status == "error" and judge.n_requests == 3 and "3 attempts" in res.error


def test_garbage_and_bad_request_replies(api: FakeAPI) -> None:
    judge = J.OpenAIJudge("fake", base_url=api.url, max_retries=3, concurrency=1)
    api.reply = lambda m: "¯\\_(ツ)_/¯ who knows"
    [res] = judge.compare([question("i", "x", "y")])
    assert (res.status, res.label, res.raw) == ("unparseable", None, "¯\\_(ツ)_/¯ who knows")
    api.fail_first, api.fail_status = 100, 400  # a per-item client error: no retry
    [res] = judge.compare([question("i", "x", "y")])
    assert res.status == "error" and "HTTP 400" in res.error and judge.n_requests == 2


def test_auth_error_stops_the_run(
    api: FakeAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.fail_first, api.fail_status = 100, 401
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    model, ref = rows([1], [1])
    with pytest.raises(J.JudgeError, match="HTTP 401"):
        J.judge_outputs(
            model, ref, judge="openai:fake", output_dir=tmp_path, base_url=api.url, progress=False
        )
    assert api.requests[0]["auth"] == "Bearer sk-test"


def test_base_url_from_env(api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", api.url + "/")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    judge = J.make_judge("openai:fake")
    assert judge.url == api.url + "/chat/completions"
    [res] = judge.compare([question("i", "score=1", "score=4")])
    assert res.label == "b" and api.requests[0]["auth"] is None


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


def test_inputs_json_jsonl_and_pairing(tmp_path: Path, api: FakeAPI) -> None:
    model, ref = rows([1, 2], [1, 1])
    ref.append({"instruction": "Only in the reference", "output": "x", "generator": "ref_model"})
    (tmp_path / "model.jsonl").write_text(
        "\n".join(json.dumps(m) for m in reversed(model)) + "\n\n"
    )
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    report = J.judge_outputs(
        tmp_path / "model.jsonl",
        tmp_path / "ref.json",
        judge="openai:f",
        output_dir=tmp_path / "out",
        base_url=api.url,
        progress=False,
    )
    assert report.n_total == 2 and report.n_unmatched_references == 1
    ann = json.loads((tmp_path / "out" / J.ANNOTATIONS_FILE).read_text())
    assert [a["instruction"] for a in ann] == ["Task 1", "Task 0"]
    assert report.per_dataset.keys() == {J.NO_DATASET}


def test_input_errors_name_file_and_row(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"instruction": "x", "output": "y"},\n {"instruction": "z"}]')
    with pytest.raises(OutputsError, match=r"bad\.json: entry 1: missing the 'output' field"):
        J.load_outputs(bad)
    bad.write_text('[{"instruction": "x", "output": 3}]')
    with pytest.raises(OutputsError, match=r"bad\.json: entry 0: 'output' must be a string"):
        J.load_outputs(bad)
    bad.write_text('[{"instruction": "x", "output": "y"},\n oops]')
    with pytest.raises(OutputsError, match=r"bad\.json: invalid JSON at line 2"):
        J.load_outputs(bad)
    jl = tmp_path / "bad.jsonl"
    jl.write_text('{"instruction": "x", "output": "y"}\n{"instruction": \n')
    with pytest.raises(OutputsError, match=r"bad\.jsonl: line 2: invalid JSON"):
        J.load_outputs(jl)
    with pytest.raises(FileNotFoundError, match="no such file"):
        J.load_outputs(tmp_path / "missing.json")
    with pytest.raises(
        OutputsError, match=r"model outputs \(in memory\): entry 0: expected an object"
    ):
        J.load_outputs(["text"], what="model outputs")
    model = J.load_outputs([{"instruction": "What is 2+2?", "output": "4"}])
    ref = J.load_outputs([{"instruction": "Other", "output": "x"}])
    with pytest.raises(
        OutputsError, match=r"row 0: no reference output has the instruction 'What is 2\+2\?'"
    ):
        J.pair_outputs(model, ref)
    dup = J.load_outputs([{"instruction": "A", "output": "1"}, {"instruction": "A", "output": "2"}])
    with pytest.raises(OutputsError, match="rows 0 and 1 have the same instruction 'A'"):
        J.pair_outputs(dup, dup)


def test_bad_judge_spec(tmp_path: Path) -> None:
    with pytest.raises(J.JudgeError, match="unknown judge spec 'gpt4'"):
        J.make_judge("gpt4")
    with pytest.raises(J.JudgeError, match="unknown judge spec 'foo:bar'"):
        J.make_judge("foo:bar")
    with pytest.raises(J.JudgeError, match="not a folder"):
        J.make_judge(f"hf:{tmp_path / 'nope'}")
    with pytest.raises(J.JudgeError, match="no config.json"):
        J.make_judge(f"hf:{tmp_path}")


# --------------------------------------------------------------------------------------
# Local Hugging Face judge with a tiny random model
# --------------------------------------------------------------------------------------

_CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789 .,:;!?()#=+-'\"\n") + list(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def _char_tokenizer():
    """Character-level tokenizer: the label " a" is two tokens (" ", "a")."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<pad>": 1, "<s>": 2, "</s>": 3}
    for ch in _CHARS:
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
    )


def _word_tokenizer():
    """Word-level tokenizer: the label " a" is one token ("a")."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = "<unk> <pad> <s> </s> a b the better output is ( ) # : . which or".split()
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
    )


def _save_tiny_model(folder: Path, tokenizer, *, tie_labels: bool = False, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # sharper logits than the default init, so verdicts differ
        model.lm_head.weight.normal_(0, 1.0)
        if tie_labels:
            a, b = tokenizer.convert_tokens_to_ids(["a", "b"])
            model.lm_head.weight[b] = model.lm_head.weight[a]
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _hf_rows(n: int):
    model = [
        {
            "instruction": f"Say {i}",
            "output": f"answer {i} " + "x" * (i % 3),
            "generator": "m",
            "dataset": "d",
        }
        for i in range(n)
    ]
    ref = [
        {
            "instruction": f"Say {i}",
            "output": f"ref {i}" + "." * (i % 4),
            "generator": "r",
            "dataset": "d",
        }
        for i in range(n)
    ]
    return model, ref


def _independent_logprob(model, tok, prompt: str, label: str) -> float:
    """log p(label | prompt) by one plain forward of prompt+label, no batching or padding."""
    import torch

    p_ids = tok(prompt)["input_ids"]
    l_ids = tok(prompt + label)["input_ids"][len(p_ids) :]
    assert tok(prompt + label)["input_ids"][: len(p_ids)] == p_ids
    ids = torch.tensor([p_ids + l_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    return sum(float(logp[len(p_ids) - 1 + t, tok_id]) for t, tok_id in enumerate(l_ids))


@pytest.mark.parametrize("make_tokenizer", [_word_tokenizer, _char_tokenizer], ids=["word", "char"])
def test_hf_judge_matches_independent_logprobs(tmp_path: Path, make_tokenizer) -> None:
    tokenizer = make_tokenizer()
    folder = _save_tiny_model(tmp_path / "judge_model", tokenizer)
    (folder / "run.json").write_text("{}")  # a run folder is a model folder with run.json
    model, ref = _hf_rows(5)
    report = J.judge_outputs(
        model,
        ref,
        judge=f"hf:{folder}",
        output_dir=tmp_path / "out",
        seed=1,
        batch_size=2,
        progress=False,
    )
    assert report.n_parsed == 5 and report.judge == f"hf:{folder.resolve()}"
    ann = json.loads((tmp_path / "out" / J.ANNOTATIONS_FILE).read_text())
    label_len = {1 if make_tokenizer is _word_tokenizer else 2}
    judge = J.make_judge(f"hf:{folder}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ref_tok = AutoTokenizer.from_pretrained(folder)
    ref_model = AutoModelForCausalLM.from_pretrained(folder).eval()
    prefs = []
    for a in ann:
        first = a["model_first"]
        out_a, out_b = (a["output_2"], a["output_1"]) if first else (a["output_1"], a["output_2"])
        prompt = build_plain_prompt(question(a["instruction"], out_a, out_b))
        _, labels = judge.sequences(question(a["instruction"], out_a, out_b))
        assert {len(v) for v in labels.values()} == label_len
        lp = {
            lab: _independent_logprob(ref_model, ref_tok, prompt, " " + lab) for lab in ("a", "b")
        }
        scores = a["judgments"][0]["scores"]
        assert scores["a"] == pytest.approx(lp["a"], abs=1e-4)
        assert scores["b"] == pytest.approx(lp["b"], abs=1e-4)
        assert abs(lp["a"] - lp["b"]) > 1e-3  # no near-tie: the verdict below is meaningful
        winner = "a" if lp["a"] > lp["b"] else "b"
        model_won = (winner == "a") == first
        assert a["preference"] == (2.0 if model_won else 1.0)
        prefs.append(a["preference"])
    assert report.win_rate == pytest.approx(statistics.fmean((p - 1) * 100 for p in prefs))
    # Deterministic: a fresh run (no cache) with another batch size gives the same verdicts.
    again = J.judge_outputs(
        model, ref, judge=judge, output_dir=tmp_path / "out2", seed=1, batch_size=5, progress=False
    )
    ann2 = json.loads((tmp_path / "out2" / J.ANNOTATIONS_FILE).read_text())
    assert [a["preference"] for a in ann2] == prefs and again.n_cached == 0


def test_hf_judge_equal_label_logprobs_are_ties(tmp_path: Path) -> None:
    tokenizer = _word_tokenizer()
    folder = _save_tiny_model(tmp_path / "m", tokenizer, tie_labels=True)
    model, ref = _hf_rows(3)
    report = J.judge_outputs(
        model, ref, judge=f"hf:{folder}", output_dir=tmp_path / "out", progress=False
    )
    assert report.n_ties == 3 and report.win_rate == 50.0 and report.standard_error == 0.0
    ann = json.loads((tmp_path / "out" / J.ANNOTATIONS_FILE).read_text())
    assert all(a["preference"] == 1.5 for a in ann)


def test_hf_judge_chat_template_and_model_subfolder(tmp_path: Path) -> None:
    tokenizer = _word_tokenizer()
    # Ends in whitespace: the label is then "a", not " a".
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}The better output is {% endif %}"
    )
    run = tmp_path / "run"
    _save_tiny_model(run / "model", tokenizer, seed=2)
    (run / "run.json").write_text("{}")
    judge = J.make_judge(f"hf:{run}")
    item = question("Say hi", "hi", "hello")
    prompt = judge.prompt(item)
    assert prompt.endswith("The better output is ")
    prompt_ids, labels = judge.sequences(item)
    a_id, b_id = tokenizer.convert_tokens_to_ids(["a", "b"])
    assert labels == {"a": [a_id], "b": [b_id]}
    [res] = judge.compare([item])
    import torch

    with torch.no_grad():
        logp = torch.log_softmax(judge.model(torch.tensor([prompt_ids], device=judge.model.device)).logits[0, -1], dim=-1)
    assert res.scores == pytest.approx({"a": float(logp[a_id]), "b": float(logp[b_id])}, abs=1e-5)
    assert res.label == ("a" if logp[a_id] > logp[b_id] else "b")


# --------------------------------------------------------------------------------------
# A real OpenAI-compatible server: llama.cpp serving SmolLM2-135M-Instruct
# --------------------------------------------------------------------------------------


@pytest.mark.server
def test_llama_cpp_server_judge(llama_server: str, tmp_path: Path) -> None:
    model = [
        {"instruction": "What is the capital of France?", "output": "Paris.", "generator": "m"},
        {"instruction": "Add 2 and 3.", "output": "5", "generator": "m"},
        {"instruction": "Name a primary colour.", "output": "Blue.", "generator": "m"},
        {"instruction": "Say hello in", "input": "Spanish", "output": "Hola.", "generator": "m"},
    ]
    ref = [
        {"instruction": "What is the capital of France?", "output": "Lyon.", "generator": "r"},
        {"instruction": "Add 2 and 3.", "output": "6", "generator": "r"},
        {"instruction": "Name a primary colour.", "output": "Green.", "generator": "r"},
        {"instruction": "Say hello in", "input": "Spanish", "output": "Bonjour.", "generator": "r"},
    ]
    judge = J.make_judge("openai:smollm2", llama_server, max_retries=2, concurrency=1)
    report = J.judge_outputs(model, ref, judge=judge, output_dir=tmp_path, progress=False)
    # The server returns log-probabilities: every verdict is read, none goes missing.
    assert report.n_total == 4 and report.n_errors == 0, report.format_table()
    assert report.n_unparseable == 0 and report.unparseable_share == 0.0, report.format_table()
    assert set(report.verdict_methods) <= {"logprobs", "restricted"}
    ann = json.loads((tmp_path / J.ANNOTATIONS_FILE).read_text())
    assert ann[3]["instruction"] == "Say hello in\n\nSpanish"  # the judge saw the input
    for a in ann:
        assert a["status"] == "ok" and 1.0 <= a["preference"] <= 2.0
        j = a["judgments"][0]
        assert j["method"] in ("logprobs", "restricted")
        if j["p_b"] is not None:  # continuous: the model's side of P(b)
            assert a["preference"] == pytest.approx(1 + (1 - j["p_b"] if a["model_first"]
                                                         else j["p_b"]))
    n_sent = judge.n_requests
    # The second run is answered from the cache: no request reaches the server.
    again = J.judge_outputs(model, ref, judge=judge, output_dir=tmp_path, progress=False)
    assert (again.n_cached, again.n_requested, judge.n_requests) == (4, 0, n_sent)
    assert [a["preference"] for a in json.loads((tmp_path / J.ANNOTATIONS_FILE).read_text())] == [
        a["preference"] for a in ann
    ]
    judge.close()


# --------------------------------------------------------------------------------------
# Verdicts from log-probabilities; restriction to the labels when they are absent
# --------------------------------------------------------------------------------------


def test_logprobs_give_a_continuous_preference(api: FakeAPI, tmp_path: Path) -> None:
    api.reply = lambda m: "b"
    api.top = lambda m, body: [(" b", math.log(0.6)), ("The", math.log(0.3)), ("a", math.log(0.1))]
    judge = J.OpenAIJudge("fake", base_url=api.url, top_logprobs=7)
    [res] = judge.compare([question("i", "x", "y")])
    body = api.chat_requests[0]["body"]
    assert body["logprobs"] is True and body["top_logprobs"] == 7
    assert (res.status, res.label, res.method) == ("ok", "b", "logprobs")
    assert res.p_b == pytest.approx(0.6 / 0.7)
    assert res.preference(model_first=True) == pytest.approx(1 + 0.1 / 0.7)
    assert res.preference(model_first=False) == pytest.approx(1 + 0.6 / 0.7)
    model, ref = rows([1, 2], [1, 1])
    report = J.judge_outputs(model, ref, judge=judge, output_dir=tmp_path, both_orders=True,
                             progress=False)
    # Same P(b) in both orders: the model's preference averages to exactly 1.5.
    assert [a["preference"] for a in json.loads((tmp_path / J.ANNOTATIONS_FILE).read_text())] \
        == [pytest.approx(1.5)] * 2
    assert report.unparseable_share == 0.0 and report.verdict_methods == {"logprobs": 4}
    judge.close()


def test_labels_absent_restricts_the_reply(api: FakeAPI) -> None:
    # "A" is the article, not label (a): absent labels -> ask again restricted to them.
    api.reply = lambda m: "The"
    api.top = lambda m, body: [("The", -0.1), ("A", -2.5), ("To", -3.0)]
    api.restricted = lambda m: [("a", math.log(0.2)), (" b", math.log(0.3)), ("The", -9.0)]
    judge = J.OpenAIJudge("fake", base_url=api.url, concurrency=1)
    results = judge.compare([question("i", "x", "y"), question("j", "x", "y")])
    assert [(r.status, r.label, r.method) for r in results] == [("ok", "b", "restricted")] * 2
    assert results[0].p_b == pytest.approx(0.6)
    chats = api.chat_requests
    assert len(chats) == 4 and "logit_bias" not in chats[0]["body"]
    assert chats[1]["body"]["logit_bias"] == {"1": 100, "2": 100, "3": 100, "4": 100}
    assert chats[1]["body"]["max_tokens"] == 1
    # The label ids are looked up once per judge (and what the server adds to every text).
    assert sum(r["path"] == "/extras/tokenize" for r in api.requests) == 5
    judge.close()


def test_restricted_labels_found_when_the_server_adds_bos(api: FakeAPI) -> None:
    # llama-cpp-python's tokenize endpoint adds the model's BOS ([2, id] for "a" with Gemma):
    # the labels are still single tokens, and no verdict is lost.
    api.bos = 7
    api.reply = lambda m: "The"
    api.top = lambda m, body: [("The", -0.1)]
    api.restricted = lambda m: [("a", math.log(0.7)), (" b", math.log(0.3))]
    judge = J.OpenAIJudge("fake", base_url=api.url, concurrency=1)
    [res] = judge.compare([question("i", "x", "y")])
    assert (res.status, res.label, res.method) == ("ok", "a", "restricted")
    assert api.chat_requests[1]["body"]["logit_bias"] == {"1": 100, "2": 100, "3": 100, "4": 100}
    judge.close()


def test_labels_absent_and_no_tokenizer_is_counted_unparseable(api: FakeAPI) -> None:
    api.reply = lambda m: "The"
    api.top = lambda m, body: [("The", -0.1)]
    api.tokenize = False
    judge = J.OpenAIJudge("fake", base_url=api.url)
    [res] = judge.compare([question("i", "x", "y")])
    assert res.status == "unparseable" and "tokenize" in res.error
    judge.close()
