"""Tests of ``judge-check``: a judge measured on pairs whose better side is known."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from _fake_openai import FakeAPI, serve
from typer.testing import CliRunner

from symnoise.cli import app
from symnoise.evaluate.judge_check import (
    JUDGE_CHECK_FILE,
    THRESHOLDS,
    build_check_pairs,
    format_judge_check,
    run_judge_check,
    summarize_check,
)

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi".split()
REFERENCE = [
    {"instruction": f"Question {i}", "output": f"answer{i} " + " ".join(WORDS[: 4 + i % 9]),
     "generator": "ref"}
    for i in range(30)
] + [{"instruction": "Fix", "input": "teh cat", "output": "the cat " + " ".join(WORDS),
      "generator": "ref"}]
GOOD = {r["instruction"] + ("\n\n" + r["input"] if r.get("input") else ""): r["output"]
        for r in REFERENCE}


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    yield from serve(FakeAPI(url=""))


def _shown(messages: list[dict[str, str]]) -> tuple[str, str, str]:
    user = messages[-1]["content"]
    instruction = user.split("## Instruction\n", 1)[1].split("\n\n## Output (a)\n", 1)[0]
    a = user.split("## Output (a)\n", 1)[1].split("\n\n## Output (b)\n", 1)[0]
    b = user.split("## Output (b)\n", 1)[1].split("\n\nWhich output", 1)[0]
    return instruction, a, b


def test_pairs_are_known_and_both_kinds() -> None:
    pairs = build_check_pairs(REFERENCE, 20, seed=1)
    assert len(pairs) == 20 and {p["kind"] for p in pairs} == {"other", "truncated"}
    for p in pairs:
        assert p["good"] == GOOD[p["instruction"]] and p["bad"] != p["good"]
        if p["kind"] == "truncated":
            assert p["bad"].split() == p["good"].split()[:10] and len(p["good"].split()) > 10
        else:
            assert p["bad"] in GOOD.values()
    assert sum(p["kind"] == "truncated" for p in pairs) == 10
    assert build_check_pairs(REFERENCE, 20, seed=1) == pairs  # seeded
    with pytest.raises(ValueError, match="at least 2 reference answers"):
        build_check_pairs(REFERENCE[:1], 2)


def test_summary_by_hand() -> None:
    pairs = [{"good": "long answer", "bad": "x", "kind": "truncated"},
             {"good": "y", "bad": "other answer", "kind": "other"}]
    # pair 0: right in both orders; pair 1: first shown wins both times; one unparseable.
    check = summarize_check(pairs, [0.9, 0.2, 0.7, None], judge="j", annotator="a")
    assert check["n_pairs"] == 2 and check["n_unparseable"] == 1
    assert check["accuracy"] == pytest.approx(3 / 3)  # 0.7 with good first is right
    assert check["position_bias"] == pytest.approx(2 / 3)
    assert check["longer_wins"] == pytest.approx(2 / 3)
    assert check["accuracy_by_kind"] == {"other": 1.0, "truncated": 1.0}
    low, high = check["accuracy_ci"]
    assert low == pytest.approx(0.4385, abs=1e-3) and high == 1.0  # Wilson, 3 of 3
    assert check["usable"] is False  # interval too wide, and too many unparseable


def test_both_orders_measures_the_order_averaged_verdict() -> None:
    # 40 pairs. A judge that prefers the first output: with good first it says 0.9 (right);
    # with good second 0.8 for the first (wrong) on 30 pairs, 0.2 (right) on 10.
    # Per verdict: 50 of 80 right (62.5%), position bias 70/80. Averaged over the orders,
    # P(good) = (0.9 + 0.2) / 2 = 0.55 (right) on 10 pairs, (0.9 + 0.2) / 2... on the rest
    # (0.9 + (1 - 0.8)) / 2 = 0.55 too: every pair right, 40 of 40.
    pairs = [{"good": "g", "bad": "b", "kind": "other"}] * 40
    p_first = [p for i in range(40) for p in (0.9, 0.8 if i < 30 else 0.2)]
    single = summarize_check(pairs, p_first, judge="j", annotator="a")
    both = summarize_check(pairs, p_first, judge="j", annotator="a", both_orders=True)
    assert single["mode"] == "per verdict" and both["mode"] == "order-averaged"
    for check in (single, both):  # both figures are always reported
        assert check["accuracy_per_verdict"] == pytest.approx(50 / 80)
        assert check["accuracy_order_averaged"] == 1.0
        assert check["accuracy_order_averaged_n"] == 40
        assert check["position_bias"] == pytest.approx(70 / 80)
    assert single["accuracy"] == pytest.approx(50 / 80) and single["usable"] is False
    assert both["accuracy"] == 1.0 and both["accuracy_ci"][0] == pytest.approx(0.9124, abs=1e-3)
    assert both["usable"] is True  # the position-bias bound does not apply to averaged use
    line = format_judge_check(both)
    assert "accuracy (order-averaged) 100.0%" in line and "per verdict 62.5%" in line
    assert "usable" in line and "position bias 35" not in line


def test_biased_endpoint_is_not_usable(api: FakeAPI, tmp_path: Path) -> None:
    api.reply = lambda m: "a"  # always the first option, sure of it
    api.top = lambda m, body: [("a", math.log(0.95)), ("b", math.log(0.05))]
    check = run_judge_check("openai:biased", REFERENCE,
                            base_url=api.url, n=16, output_dir=tmp_path)
    assert (check["accuracy"], check["position_bias"]) == (0.5, 1.0)
    assert check["n_pairs"] == 16 and check["n_unparseable"] == 0 and check["usable"] is False
    assert len(api.chat_requests) == 32  # every pair in both orders
    assert json.loads((tmp_path / JUDGE_CHECK_FILE).read_text()) == json.loads(json.dumps(check))
    line = format_judge_check(check)
    assert "NOT USABLE" in line and "position bias 100% first" in line
    assert f"{100 * THRESHOLDS['min_accuracy_ci_low']:.0f}%" in line


def test_knowing_endpoint_is_usable_and_sees_the_input(api: FakeAPI) -> None:
    def top(messages, body):
        instruction, a, _ = _shown(messages)
        right = "a" if a == GOOD[instruction] else "b"
        return [(right, math.log(0.8)), ("a" if right == "b" else "b", math.log(0.2))]

    api.top = top
    check = run_judge_check("openai:oracle", REFERENCE, base_url=api.url, n=40)
    assert check["accuracy"] == 1.0 and check["position_bias"] == 0.5
    assert check["accuracy_ci"][0] > THRESHOLDS["min_accuracy_ci_low"] and check["usable"]
    shown = {_shown(r["body"]["messages"])[0] for r in api.chat_requests}
    assert shown <= set(GOOD)  # instructions with an input are shown with it
    assert "usable" in format_judge_check(check)


def test_cli_json(api: FakeAPI, tmp_path: Path) -> None:
    api.top = lambda m, body: [("a", math.log(0.9)), ("b", math.log(0.1))]
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps(REFERENCE))
    result = CliRunner().invoke(app, ["judge-check", "--judge", "openai:biased", "--base-url",
                                      api.url, "--reference-outputs", str(ref), "--n-prompts", "6",
                                      "--json"])
    assert result.exit_code == 0, result.output
    check = json.loads(result.stdout)
    assert {"accuracy", "accuracy_ci", "position_bias", "n_pairs", "usable"} <= set(check)
    assert check["usable"] is False and check["n_pairs"] == 6


@pytest.mark.server
def test_llama_cpp_server_check(llama_server: str) -> None:
    check = run_judge_check("openai:smollm2", REFERENCE, base_url=llama_server, n=2,
                            judge_options={"concurrency": 1})
    # Log-probabilities exist: no verdict goes missing.
    assert check["n_judgments"] == 4 and check["n_unparseable"] == 0
    assert 0.0 <= check["accuracy"] <= 1.0 and 0.0 <= check["position_bias"] <= 1.0
    assert isinstance(check["usable"], bool)
