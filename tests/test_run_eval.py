"""symnoise eval: the steps land in RUN/eval with the right numbers, a rerun skips finished
steps, settings changes redo them, user errors are clear."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import WORDS, make_model, make_tokenizer

import symnoise.evaluate.harness as harness_mod
import symnoise.evaluate.judge as judge_mod
import symnoise.generate as generate_mod
from symnoise.evaluate.stats import text_stats
from symnoise.experiments.evaluation import evaluate_run, format_eval_summary, run_dataset


def _run_info(data: str, status: str = "completed") -> dict:
    return {
        "status": status,
        "config": {"model": "tiny", "data": data, "format": "auto", "method": "symnoise",
                   "alpha": 5.0, "norm_match": True, "seed": 0, "skip_bad_rows": False},
        "noise": {"method": "symnoise", "alpha": 5.0, "norm_match": True,
                  "symmetric_mode": "concat", "seed": 0},
        "template": "alpaca",
        "format": "alpaca",
        "train_loss": 2.5,
        "final_clean_eval_loss": 2.75,
    }


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny"
    tok = make_tokenizer()
    make_model(vocab_size=len(tok), initializer_range=0.3).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _make_run(model_dir: Path, dest: Path, data: str = "synthetic", **kw) -> Path:
    import shutil

    shutil.copytree(model_dir, dest)
    (dest / "run.json").write_text(json.dumps(_run_info(data, **kw)))
    return dest


class _Counter:
    def __init__(self, monkeypatch, module, name):
        self.calls = 0
        real = getattr(module, name)

        def wrapped(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapped)


def test_default_synthetic_eval_files_numbers_and_rerun_skips(model_dir, tmp_path, monkeypatch):
    run = _make_run(model_dir, tmp_path / "run")
    gen = _Counter(monkeypatch, generate_mod, "generate_outputs")
    summary = evaluate_run(run, n_prompts=6, max_new_tokens=6, batch_size=4, progress=False)
    ev = run / "eval"
    for name in ("outputs.json", "stats.json", "synthetic_scores.json", "synthetic_scores.md",
                 "summary.json", "summary.md", "steps.json"):
        assert (ev / name).is_file(), name
    assert gen.calls == 1
    outputs = json.loads((ev / "outputs.json").read_text())
    assert len(outputs) == 6 and all("family" in o and "answer" in o for o in outputs)

    # stats: the outputs' numbers, computed independently; no training file to measure
    stats = json.loads((ev / "stats.json").read_text())
    texts = [o["output"] for o in outputs]
    assert stats["outputs"]["avg_chars"] == pytest.approx(statistics.fmean(map(len, texts)))
    assert stats["outputs"]["n"] == 6 and stats["words"] == 50
    assert stats["train_data"]["skipped"].startswith("built-in synthetic")

    # synthetic score of the same answers (no second generation)
    from symnoise.evaluate.tasks import check_answer, item_id

    correct = sum(check_answer(o, o["output"]).correct for o in outputs)
    items = [json.loads(x) for x in (ev / "synthetic_items.jsonl").read_text().splitlines()]
    assert [(i["family"], i["correct"], i["formatted"]) for i in items] == [
        (o["family"], check_answer(o, o["output"]).correct, check_answer(o, o["output"]).formatted)
        for o in outputs]
    assert [i["id"] for i in items] == [item_id(o) for o in outputs] and len(set(
        i["id"] for i in items)) == 6
    scores = json.loads((ev / "synthetic_scores.json").read_text())
    assert scores["overall"]["n"] == 6 and scores["overall"]["correct"] == correct
    assert summary["synthetic"]["accuracy"] == pytest.approx(correct / 6)
    assert summary["dataset"] == "synthetic" and summary["method"] == "symnoise"
    assert summary["final_clean_eval_loss"] == 2.75
    assert summary["judge"] is None and summary["harness"] is None
    assert summary["steps"] == {"generate": "ran", "stats": "ran", "synthetic": "ran",
                                "heldout": "ran", "judge": "not requested",
                                "judge_check": "not requested", "harness": "not requested"}
    assert json.loads((ev / "summary.json").read_text())["synthetic"] == summary["synthetic"]
    assert "2.7500" in format_eval_summary(summary)

    # rerun: everything complete, nothing regenerated
    again = evaluate_run(run, n_prompts=6, max_new_tokens=6, batch_size=4, progress=False)
    assert gen.calls == 1
    assert set(again["steps"].values()) <= {"skipped (complete)", "not requested"}
    assert again["stats"] == summary["stats"] and again["synthetic"] == summary["synthetic"]

    # more prompts: generation resumes (the first 6 answers are kept), later steps redone
    more = evaluate_run(run, n_prompts=8, max_new_tokens=6, batch_size=4, progress=False)
    assert gen.calls == 2 and more["steps"]["stats"] == "ran"
    grown = json.loads((ev / "outputs.json").read_text())
    assert grown[:6] == outputs and len(grown) == 8
    assert more["synthetic"]["n"] == 8

    # other decoding settings: starts over instead of mixing answers
    other = evaluate_run(run, n_prompts=8, max_new_tokens=3, batch_size=4, progress=False)
    assert gen.calls == 3 and other["steps"]["generate"] == "ran"
    meta = json.loads((ev / "outputs.meta.json").read_text())
    assert meta["settings"]["max_new_tokens"] == 3


def test_judge_harness_training_data_and_separate_synthetic(model_dir, tmp_path, monkeypatch):
    # AlpacaEval-style prompt file carrying reference outputs; an Alpaca training file
    prompts = [{"instruction": f"{WORDS[i]} {WORDS[i + 1]} list", "output": f"ref {i} answer",
                "generator": "text_davinci_003", "dataset": "helpful_base"} for i in range(5)]
    pfile = tmp_path / "alpaca_eval.json"
    pfile.write_text(json.dumps(prompts))
    train = [{"instruction": "say", "input": "", "output": " ".join(WORDS[: 55 + i])}
             for i in range(3)]
    tfile = tmp_path / "train.json"
    tfile.write_text(json.dumps(train))
    run = _make_run(model_dir, tmp_path / "run", data=str(tfile))

    def fake_harness(model, tasks, *, output_dir, **kw):
        doc = {"config": {"tasks": [tasks], "limit": kw.get("limit")},
               "summary": {"symnoise_mc": 0.625}}
        (Path(output_dir) / "harness.json").write_text(json.dumps(doc))

    monkeypatch.setattr(harness_mod, "run_harness", fake_harness)
    judged = _Counter(monkeypatch, judge_mod, "judge_outputs")
    harn = _Counter(monkeypatch, harness_mod, "run_harness")
    kw = dict(prompts=pfile, n_prompts=4, max_new_tokens=5, batch_size=4,
              judge=f"hf:{model_dir}", harness_tasks="symnoise_mc", harness_limit=2,
              synthetic_n=3, judge_check=False, progress=False)
    summary = evaluate_run(run, **kw)
    ev = run / "eval"
    assert judged.calls == 1 and harn.calls == 1
    assert len(json.loads((ev / "outputs.json").read_text())) == 4

    # win rate = mean of (preference - 1) * 100 over the annotations the judge wrote
    ann = json.loads((ev / "judge" / "annotations.json").read_text())
    prefs = [(a["preference"] - 1) * 100 for a in ann if a["preference"] is not None]
    assert len(ann) == 4
    assert summary["judge"]["win_rate"] == pytest.approx(statistics.fmean(prefs), abs=1e-5)
    assert summary["judge"]["reference"] == "text_davinci_003"
    assert summary["harness"]["summary"] == {"symnoise_mc": 0.625}
    assert summary["harness"]["limit"] == 2

    # training data responses measured with the alpaca preset (50 words)
    td = summary["stats"]["train_data"]
    assert td["used"] == 3 and td["words"] == 50
    ref = text_stats([r["output"] for r in train], words=50)
    assert td["avg_words"] == pytest.approx(ref.avg_words) and td["rep_2"] == ref.rep_2

    # prompts are not the held-out split: the synthetic split is answered separately
    syn = json.loads((ev / "synthetic_outputs.json").read_text())
    assert len(syn) == 3 and summary["synthetic"]["n"] == 3

    again = evaluate_run(run, **kw)
    assert judged.calls == 1 and harn.calls == 1
    assert again["judge"] == summary["judge"]
    assert again["steps"]["judge"] == again["steps"]["harness"] == "skipped (complete)"


class _FakeJudgeCheck:
    """Stands in for symnoise.evaluate.judge_check (its run_judge_check's contract)."""

    def __init__(self):
        self.calls = []

    def run_judge_check(self, judge, reference_outputs, *, base_url=None, output_dir=None,
                        both_orders=False):
        self.calls.append((judge, Path(reference_outputs), base_url, Path(output_dir)))
        self.both_orders = both_orders
        return {"accuracy": 0.9, "accuracy_ci": [0.8, 0.95], "position_bias": 0.52,
                "n_pairs": 40, "usable": True,
                "mode": "order-averaged" if both_orders else "per verdict"}


def _set_judge_check(monkeypatch, module):
    import sys

    import symnoise.evaluate as evaluate_pkg

    monkeypatch.setitem(sys.modules, "symnoise.evaluate.judge_check", module)
    if module is None:
        monkeypatch.delattr(evaluate_pkg, "judge_check", raising=False)
    else:
        monkeypatch.setattr(evaluate_pkg, "judge_check", module, raising=False)


def test_judge_check_step_runs_with_the_judge_and_is_reported(model_dir, tmp_path, monkeypatch):
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps([{"instruction": f"{WORDS[i]} list", "output": f"ref {i}",
                                "generator": "ref_model"} for i in range(4)]))
    run = _make_run(model_dir, tmp_path / "run")
    monkeypatch.setattr(judge_mod, "judge_outputs", _fake_judge)
    fake = _FakeJudgeCheck()
    _set_judge_check(monkeypatch, fake)
    kw = dict(n_prompts=2, max_new_tokens=2, judge="openai:m", base_url="http://x/v1",
              reference=ref, synthetic=False, heldout=False, progress=False)
    summary = evaluate_run(run, **kw)
    assert fake.calls == [("openai:m", ref, "http://x/v1", run / "eval")]
    assert summary["steps"]["judge_check"] == "ran"
    assert summary["judge_check"] == {"accuracy": 0.9, "accuracy_ci": [0.8, 0.95],
                                      "mode": "per verdict", "position_bias": 0.52,
                                      "n_pairs": 40, "usable": True}
    saved = json.loads((run / "eval" / "judge_check.json").read_text())
    assert saved["usable"] is True and saved["n_pairs"] == 40
    assert "usable: accuracy 0.900" in format_eval_summary(summary)
    again = evaluate_run(run, **kw)
    assert len(fake.calls) == 1 and again["steps"]["judge_check"] == "skipped (complete)"
    # another reference: the judge and its check are redone
    ref.write_text(ref.read_text().replace("ref 0", "ref zero"))
    evaluate_run(run, **kw)
    assert len(fake.calls) == 2 and fake.both_orders is False
    # judged in both orders: the check measures the judge so, and is redone
    evaluate_run(run, **{**kw, "both_orders": True})
    assert len(fake.calls) == 3 and fake.both_orders is True

    # no judge check in this version: said so, the judge's result still stands
    _set_judge_check(monkeypatch, None)
    (run / "eval" / "judge_check.json").unlink()
    gone = evaluate_run(run, **kw)
    assert gone["steps"]["judge_check"].startswith("unavailable: this version has no judge")
    assert gone["judge_check"] == {"unavailable": gone["steps"]["judge_check"][13:]}
    assert gone["judge"]["win_rate"] == 50.0
    assert evaluate_run(run, **kw, judge_check=False)["steps"]["judge_check"] == "not requested"


def _fake_judge(outputs, reference, *, judge, output_dir, **kw):
    """Writes a leaderboard like the judge's: every pair a tie."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    row = {"judge": judge, "reference": "ref_model", "win_rate": 50.0, "standard_error": 0.0,
           "n": len(json.loads(Path(outputs).read_text()))}
    (output_dir / judge_mod.LEADERBOARD_JSON).write_text(json.dumps({"tiny": row}))
    return SimpleNamespace(partial=False)


def test_user_errors_are_clear(model_dir, tmp_path):
    run = _make_run(model_dir, tmp_path / "run")
    with pytest.raises(ValueError, match="--reference"):
        evaluate_run(run, n_prompts=2, judge=f"hf:{model_dir}", progress=False)
    with pytest.raises(ValueError, match="need --judge"):
        evaluate_run(run, n_prompts=2, reference=tmp_path / "x.json", progress=False)
    with pytest.raises(ValueError, match="n_prompts must be a positive integer"):
        evaluate_run(run, n_prompts=0, progress=False)
    nofield = tmp_path / "prompts.json"
    nofield.write_text(json.dumps([{"instruction": "a"}, {"instruction": "b"}]))
    with pytest.raises(ValueError, match="no 'output' fields"):
        evaluate_run(run, prompts=nofield, judge=f"hf:{model_dir}", progress=False)
    with pytest.raises(FileNotFoundError, match="reference outputs not found"):
        evaluate_run(run, judge=f"hf:{model_dir}", reference=tmp_path / "nope.json",
                     progress=False)
    unfinished = _make_run(model_dir, tmp_path / "running", status="running")
    with pytest.raises(ValueError, match="status is 'running'"):
        evaluate_run(unfinished, progress=False)
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        evaluate_run(tmp_path, progress=False)
    assert not (run / "eval" / "outputs.json").exists()  # nothing ran before the checks


def test_run_dataset_names():
    assert run_dataset(_run_info("synthetic")) == "synthetic"
    info = _run_info("/d/sg.json")
    info["format"] = "sharegpt"
    assert run_dataset(info) == "sharegpt"
    info["config"]["extra"] = {"dataset": "my_set"}
    assert run_dataset(info) == "my_set"


def test_summary_noise_line_names_no_alpha_for_a_none_run():
    none = format_eval_summary({"method": "none", "alpha": 5.0, "norm_match": True})
    assert "noise                            none\n" in none and "alpha" not in none
    sym = format_eval_summary({"method": "symnoise", "alpha": 5.0, "norm_match": False})
    assert "symnoise alpha=5.0 norm_match=False\n" in sym


def test_cli_eval_json(model_dir, tmp_path):
    from typer.testing import CliRunner

    from symnoise.cli import app

    run = _make_run(model_dir, tmp_path / "run")
    args = ["eval", str(run), "--n-prompts", "3", "--max-new-tokens", "4", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # stdout holds the result only
    assert doc["prompts"]["n"] == 3 and doc["synthetic"]["n"] == 3
    assert "[1/4] generate" in result.stderr and "done:" in result.stderr  # progress: stderr
    quiet = CliRunner().invoke(app, args + ["--no-progress", "--no-heldout"])
    assert quiet.exit_code == 0, quiet.output
    assert "[1/" not in quiet.stderr and json.loads(quiet.stdout)["steps"]["heldout"] == (
        "not requested")
    bad = CliRunner().invoke(app, ["eval", str(run), "--reference-outputs", "x.json"])
    assert bad.exit_code == 2 and "need --judge" in bad.output


def test_cli_eval_prompts_with_unread_fields(model_dir, tmp_path):
    from typer.testing import CliRunner

    from symnoise.cli import app

    run = _make_run(model_dir, tmp_path / "run")
    prompts = tmp_path / "tasks.json"
    prompts.write_text(json.dumps([{"instruction": "sort the list", "context": "two one"},
                                   {"instruction": "count words", "context": ""},
                                   {"instruction": "add", "context": "one two"}]))
    args = ["eval", str(run), "--prompts", str(prompts), "--no-synthetic", "--no-heldout",
            "--max-new-tokens", "2", "--no-progress"]
    bad = CliRunner().invoke(app, args)
    assert bad.exit_code == 2, bad.output
    assert "'context' (2 of 3 rows, first row 0)" in " ".join(bad.output.split())
    assert not (run / "eval" / "outputs.json").exists()  # stopped before any step
    good = CliRunner().invoke(app, [*args, "--ignore-fields", "context", "--json"])
    assert good.exit_code == 0, good.output
    doc = json.loads(good.stdout)
    assert doc["generation"]["ignored_fields"] == {"context": 2}
    assert doc["generation"]["prompt_shapes"] == "alpaca 3 rows"
    assert re.search(r"\nignored prompt fields +context \(2 rows\)\n", format_eval_summary(doc))
    outputs = json.loads((run / "eval" / "outputs.json").read_text())
    assert [(o["row"], o["instruction"], "context" in o) for o in outputs] == [
        (0, "sort the list", False), (1, "count words", False), (2, "add", False)]
