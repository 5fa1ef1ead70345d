"""AlpacaEval's own annotators through the alpaca_eval package, against a local endpoint."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from _fake_openai import FakeAPI, serve

from symnoise.evaluate.judge import (
    ANNOTATIONS_FILE,
    LEADERBOARD_JSON,
    PAPER_ANNOTATORS,
    JudgeError,
    available_annotators,
    judge_outputs,
)

MODEL = [{"instruction": f"Task {i}", "output": f"model answer {i}", "generator": "mine"}
         for i in range(6)] + [{"instruction": "Fix", "input": "teh", "output": "the",
                                "generator": "mine"}]
REF = [{**r, "output": f"reference {i}", "generator": "ref"} for i, r in enumerate(MODEL)]


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    yield from serve(FakeAPI(url=""))


def test_paper_annotators_are_installed() -> None:
    assert set(PAPER_ANNOTATORS) <= set(available_annotators())


def test_weighted_annotator_reads_logprobs_and_restricts(api: FakeAPI, tmp_path: Path) -> None:
    # "M" is the second output shown: P(M) = 0.7 in every prompt; some replies lack m/M.
    api.reply = lambda m: "M"
    api.top = lambda m, body: ([("M", math.log(0.7)), ("m", math.log(0.3))]
                               if "Task 1" not in m[-1]["content"] else [("The", -0.1)])
    api.restricted = lambda m: [("M", math.log(0.4)), ("m", math.log(0.6))]
    report = judge_outputs(MODEL, REF, annotator="weighted_alpaca_eval_gpt4_turbo",
                       judge="openai:local-judge", base_url=api.url, output_dir=tmp_path)
    ann = json.loads((tmp_path / ANNOTATIONS_FILE).read_text())
    assert report.n_total == 7 and report.n_unparseable == 0 and report.n_errors == 0
    for a in ann:
        shown_second = 0.4 if a["instruction"] == "Task 1" else 0.7  # P(second shown better)
        p_model = 1 - shown_second if a["is_switched_outputs"] else shown_second
        assert a["preference"] == pytest.approx(1 + p_model)
        assert (a["annotator"], a["judge"]) == ("weighted_alpaca_eval_gpt4_turbo",
                                                "openai:local-judge")
    assert ann[-1]["instruction"] == "Fix\n\nteh"  # input joined the AlpacaEval way
    bodies = [r["body"] for r in api.chat_requests]
    assert all(b["model"] == "local-judge" and b["logprobs"] for b in bodies)
    biased = [b for b in bodies if b.get("logit_bias")]
    assert len(biased) == 1 and biased[0]["logit_bias"] == {str(ord("m")): 100,
                                                            str(ord("M")): 100}
    row = json.loads((tmp_path / LEADERBOARD_JSON).read_text())["mine"]
    assert row["annotator"] == "weighted_alpaca_eval_gpt4_turbo"
    assert row["n_total"] == 7 and row["win_rate"] == pytest.approx(report.win_rate)


def test_ranking_annotator_text_parser_and_unparseable_count(api: FakeAPI, tmp_path: Path):
    first_best = "[{'model': 'model_1', 'rank': 1}, {'model': 'model_2', 'rank': 2}]"
    api.reply = lambda m: "I cannot decide" if "Task 2" in m[-1]["content"] else first_best
    report = judge_outputs(MODEL, REF, annotator="alpaca_eval_gpt4", judge="openai:local-judge",
                       base_url=api.url, output_dir=tmp_path)
    ann = json.loads((tmp_path / ANNOTATIONS_FILE).read_text())
    assert report.n_unparseable == 1 and report.unparseable_share == pytest.approx(1 / 7)
    for a in ann:
        if a["instruction"] == "Task 2":
            assert a["status"] == "unparseable" and a["preference"] is None
        else:  # the output shown first won: the model exactly when alpaca_eval switched
            assert a["preference"] == (2.0 if a["is_switched_outputs"] else 1.0)
    assert "unparseable: 1/7" in report.format_table()


def test_annotator_errors(api: FakeAPI, tmp_path: Path) -> None:
    with pytest.raises(JudgeError, match="unknown AlpacaEval annotator 'nope'"):
        judge_outputs(MODEL, REF, annotator="nope", judge="openai:x", base_url=api.url,
                  output_dir=tmp_path)
    with pytest.raises(JudgeError, match="need an OpenAI-compatible judge"):
        judge_outputs(MODEL, REF, annotator="chatgpt_fn", judge="hf:/x", output_dir=tmp_path)
    with pytest.raises(JudgeError, match="randomise the order themselves"):
        judge_outputs(MODEL, REF, annotator="chatgpt_fn", judge="openai:x", output_dir=tmp_path,
                  both_orders=True)


def test_judge_check_through_an_alpaca_eval_annotator(api: FakeAPI) -> None:
    from test_judge_check import REFERENCE

    from symnoise.evaluate.judge_check import run_judge_check

    api.reply = lambda m: "m"  # AlpacaEval 2's prompt: "m" names the output shown first
    api.top = lambda m, body: [("m", math.log(0.9)), ("M", math.log(0.1))]
    check = run_judge_check("openai:biased", REFERENCE, base_url=api.url, n=8,
                            annotator="weighted_alpaca_eval_gpt4_turbo")
    assert (check["accuracy"], check["position_bias"], check["usable"]) == (0.5, 1.0, False)
    assert check["annotator"] == "weighted_alpaca_eval_gpt4_turbo" and check["n_judgments"] == 16


def test_cli_judge_with_an_annotator_prints_the_leaderboard_columns(api: FakeAPI,
                                                                     tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from symnoise.cli import app
    from symnoise.evaluate.winrate import LC_OFFLINE, LEADERBOARD_COLUMNS

    api.reply = lambda m: "M"
    api.top = lambda m, body: [("M", math.log(0.8)), ("m", math.log(0.2))]
    (tmp_path / "m.json").write_text(json.dumps(MODEL))
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in REF))
    args = ["judge", "--model-outputs", str(tmp_path / "m.json"), "--reference-outputs",
            str(tmp_path / "r.jsonl"), "--judge", "openai:j", "--base-url", api.url,
            "--annotator", "weighted_alpaca_eval_gpt4_turbo", "--output-dir", str(tmp_path / "o")]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)  # alpaca_eval's progress bars go to stderr
    assert set(LEADERBOARD_COLUMNS) <= set(out) and out["lc_variant"] == LC_OFFLINE
    assert out["annotator"] == "weighted_alpaca_eval_gpt4_turbo" and out["n_total"] == 7
    assert out["unparseable_share"] == 0.0
    table = CliRunner().invoke(app, args).stdout
    assert "unparseable: 0/7" in table and "no-instruction-difficulty (offline)" in table
