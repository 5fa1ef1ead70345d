"""Judge failures are failures: `symnoise judge` and `symnoise eval`'s judge step exit
non-zero when some pairs got no verdict, say why on stderr, never print a partial win rate
as the result, keep the finished verdicts, and stop asking a judge that is dead."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from _fake_openai import FakeAPI, serve
from _llama_server import free_port
from typer.testing import CliRunner

from symnoise.cli import app
from symnoise.evaluate import judge as J
from symnoise.evaluate.judge_prompts import Judge, JudgeResult


def _reply(messages: list[dict[str, str]]) -> str:
    """A deterministic judge: prefers the output that holds more '!'."""
    user = messages[-1]["content"]
    a, b = user.split("## Output (b)")
    return "(a)" if a.count("!") > b.count("!") else "(b)"


def _outputs(tmp_path: Path, n: int) -> tuple[Path, Path]:
    model = [{"instruction": f"task {i}", "output": "m" + "!" * (i % 3), "generator": "m"}
             for i in range(n)]
    ref = [{"instruction": f"task {i}", "output": "r!", "generator": "r"} for i in range(n)]
    paths = tmp_path / "model.json", tmp_path / "ref.json"
    for path, rows in zip(paths, (model, ref), strict=True):
        path.write_text(json.dumps(rows))
    return paths


def _cli(tmp_path: Path, out: str, url: str, n: int = 20) -> object:
    model, ref = _outputs(tmp_path, n)
    try:
        runner = CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:
        runner = CliRunner()
    return runner.invoke(app, [
        "judge", "--model-outputs", str(model), "--reference-outputs", str(ref),
        "--judge", "openai:fake", "--base-url", url, "--output-dir", str(tmp_path / out),
        "--max-retries", "0", "--no-progress"])


def _annotations(folder: Path) -> list[dict]:
    return json.loads((folder / J.ANNOTATIONS_FILE).read_text())


def _caches(folder: Path) -> list[Path]:
    """alpaca_eval's annotation caches in ``folder``."""
    return list(folder.glob("annotations_cache_*.json"))


def test_refused_server_fails_fast_with_the_cause(tmp_path: Path) -> None:
    start = time.monotonic()
    res = _cli(tmp_path, "out", f"http://127.0.0.1:{free_port()}/v1")
    elapsed = time.monotonic() - start
    assert res.exit_code == 1, res.output
    assert "20 of 20 pairs got no verdict" in res.stderr
    assert "APIConnectionError" in res.stderr and "rerun" in res.stderr
    assert "PARTIAL RESULT" in res.stdout
    ann = _annotations(tmp_path / "out")
    assert [a["status"] for a in ann] == ["error"] * 20
    # one round of requests (the judge's concurrency, 4), then nothing more is asked
    asked = [a for a in ann if not a["error"].startswith("not asked")]
    assert len(asked) == 4 and all("APIConnectionError" in a["error"] for a in asked)
    assert elapsed < 30
    board = json.loads((tmp_path / "out" / J.LEADERBOARD_JSON).read_text())
    assert next(iter(board.values()))["partial"] is True
    assert _caches(tmp_path / "out") == []  # errors are never cached


def test_server_killed_mid_run_then_rerun_completes(tmp_path: Path) -> None:
    for api in serve(FakeAPI(url="", reply=_reply, die_after=5)):
        res = _cli(tmp_path, "out", api.url)
    assert res.exit_code == 1, res.output
    assert "15 of 20 pairs got no verdict" in res.stderr and "APIConnectionError" in res.stderr
    assert "PARTIAL RESULT: the win rate covers 5 of 20 pairs" in res.stdout
    [cache] = _caches(tmp_path / "out")
    assert len(json.loads(cache.read_text())) == 5  # the finished verdicts are kept
    for api in serve(FakeAPI(url="", reply=_reply)):
        again = _cli(tmp_path, "out", api.url)
        assert len(api.chat_requests) == 15  # only the missing verdicts are asked
    assert again.exit_code == 0, again.output
    assert "PARTIAL" not in again.stdout and again.stderr == ""
    for api in serve(FakeAPI(url="", reply=_reply)):  # uninterrupted, for comparison
        clean = _cli(tmp_path, "clean", api.url)
    assert clean.exit_code == 0
    resumed, whole = _annotations(tmp_path / "out"), _annotations(tmp_path / "clean")
    assert [a["status"] for a in resumed] == ["ok"] * 20
    assert [a["preference"] for a in resumed] == [a["preference"] for a in whole]
    assert sum(j["cached"] for a in resumed for j in a["judgments"]) == 5


class _DeadJudge(Judge):
    """Every answer an error; counts the questions it was asked."""

    spec, concurrency = "fake:dead", 4

    def __init__(self) -> None:
        self.asked = 0

    def compare(self, questions: Sequence[list[dict]]) -> list[JudgeResult]:
        self.asked += len(questions)
        return [JudgeResult(label=None, status="error", error="APIConnectionError: down")
                for _ in questions]


def test_ask_stops_after_a_failed_round(tmp_path: Path) -> None:
    judge = _DeadJudge()
    rows = [{"instruction": f"i{k}", "output_1": "a", "output_2": "b"} for k in range(30)]
    found, counts = J.ask(J.OUR_ANNOTATOR, judge, rows, tmp_path / "cache.json", 0)
    assert judge.asked == counts["n_requested"] == 4 and counts["n_cached"] == 0
    assert len(found) == 30 and all(f["error"] for f in found)
    assert [f["result"].status for f in found[:4]] == ["error"] * 4
    assert all(f["result"] is None for f in found[4:])
    assert found[4]["error"].startswith("not asked") and "APIConnectionError" in found[4]["error"]
    assert not (tmp_path / "cache.json").exists()


def test_partial_report_is_marked_in_every_output(tmp_path: Path) -> None:
    for api in serve(FakeAPI(url="", reply=_reply, die_after=3)):
        model, ref = _outputs(tmp_path, 12)
        report = J.judge_outputs(model, ref, judge="openai:fake", output_dir=tmp_path / "o",
                                 base_url=api.url, max_retries=0, progress=False)
    assert report.partial and report.n_parsed == 3 and report.n_errors == 9
    assert "APIConnectionError" in report.first_error
    assert report.to_dict()["partial"] is True
    assert "PARTIAL RESULT" in (tmp_path / "o" / J.LEADERBOARD_MD).read_text()
    assert "3 of 12 pairs" in report.failure()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    from conftest import make_model, make_tokenizer

    path = tmp_path_factory.mktemp("run") / "run"
    tok = make_tokenizer()
    make_model(vocab_size=len(tok)).save_pretrained(path)
    tok.save_pretrained(path)
    (path / "run.json").write_text(json.dumps({
        "status": "completed", "template": "alpaca", "format": "alpaca",
        "config": {"model": "tiny", "data": "synthetic", "method": "none", "seed": 0}}))
    return path


def test_eval_judge_step_fails_then_completes_on_rerun(run_dir: Path, tmp_path: Path) -> None:
    from symnoise.experiments.evaluation import evaluate_run

    _, ref = _outputs(tmp_path, 3)
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps([{"instruction": f"task {i}"} for i in range(3)]))
    kw = dict(prompts=prompts, n_prompts=3, max_new_tokens=2, judge="openai:fake",
              reference=ref, synthetic=False, heldout=False, judge_check=False, progress=False)
    with pytest.raises(J.JudgeError, match="3 of 3 pairs got no verdict.*APIConnectionError"):
        evaluate_run(run_dir, base_url=f"http://127.0.0.1:{free_port()}/v1", **kw)
    steps = json.loads((run_dir / "eval" / "steps.json").read_text())
    assert "judge" not in steps and steps["generate"]["status"] == "complete"
    for api in serve(FakeAPI(url="", reply=_reply)):
        summary = evaluate_run(run_dir, base_url=api.url, **kw)
    assert summary["steps"]["judge"] == "ran" and summary["judge"]["n"] == 3


def test_alpaca_eval_annotator_does_not_cache_failures(tmp_path: Path) -> None:
    """A failed request would reach alpaca_eval as an unparseable reply, and be cached as
    such: it is an error instead (the run fails as with ours), and the rerun completes."""
    args = ["--annotator", "weighted_alpaca_eval_gpt4_turbo"]
    model, ref = _outputs(tmp_path, 4)
    common = ["judge", "--model-outputs", str(model), "--reference-outputs", str(ref),
              "--judge", "openai:fake", "--output-dir", str(tmp_path / "out"),
              "--max-retries", "0", *args]
    dead = CliRunner().invoke(app, [*common, "--base-url", f"http://127.0.0.1:{free_port()}/v1"])
    assert dead.exit_code == 1
    assert "4 of 4 pairs got no verdict" in dead.stderr and "APIConnectionError" in dead.stderr
    assert _caches(tmp_path / "out") == []
    for api in serve(FakeAPI(url="", reply=lambda m: "m",
                             top=lambda m, body: [("m", -0.1), ("M", -2.4)])):
        live = CliRunner().invoke(app, [*common, "--base-url", api.url, "--json"])
    assert live.exit_code == 0, live.output
    report = json.loads(live.stdout)
    assert (report["n_total"], report["n_errors"], report["n_unparseable"]) == (4, 0, 0)
