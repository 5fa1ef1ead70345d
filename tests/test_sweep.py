"""Experiment sweeps: grid expansion, validation, skip/resume/failure isolation, executors."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

from symnoise import experiments
from symnoise.experiments import sweep
from symnoise.experiments.pipeline import run_experiment
from symnoise.experiments.sweep import (
    STATUS_FILE,
    ExperimentError,
    load_experiment,
    plan_point,
    run_sweep,
)
from symnoise.run import RunFolder

GRIDS = Path(sweep.__file__).parent / "grids"


def _error_file(run_dir):
    return RunFolder(run_dir).error_file


def _summary_file(run_dir):
    return RunFolder(run_dir).eval_file("summary")
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _names(exp):
    return [p.name for p in exp.points]


def _exp(tmp_path, **over):
    spec = {
        "output_dir": str(tmp_path / "out"),
        "models": ["smollm2"],
        "datasets": ["synthetic"],
        "methods": ["none", "neftune", "symnoise"],
        "seeds": [7],
        "train": {"max_steps": 2},
    }
    spec.update(over)
    return spec


# ---------------------------------------------------------------------------------------
# grid expansion
# ---------------------------------------------------------------------------------------


def test_grid_counts_names_and_overrides(tmp_path):
    data = tmp_path / "alp.json"
    data.write_text(json.dumps([{"instruction": "a", "input": "", "output": "b"}]))
    spec = _exp(
        tmp_path,
        models=["smollm2", {"name": "Big Model", "model": "org/Some-Model-7B"}],
        datasets=["synthetic", {"name": "alpaca", "data": str(data), "alpha": 10,
                                "template": "vicuna", "train": {"max_train_examples": 5}}],
        seeds=[1, 2],
    )
    exp = load_experiment(spec)
    # 2 models x 2 datasets x 3 methods x 2 seeds
    assert len(exp.points) == 24
    names = _names(exp)
    assert len(set(names)) == 24
    assert names[:6] == [
        "smollm2-synthetic-none-s1", "smollm2-synthetic-none-s2",
        "smollm2-synthetic-uniform-a5-s1", "smollm2-synthetic-uniform-a5-s2",
        "smollm2-synthetic-symnoise-a5-s1", "smollm2-synthetic-symnoise-a5-s2",
    ]
    assert "big-model-alpaca-symnoise-a10-s2" in names
    assert names == _names(load_experiment(spec))  # stable
    alp = exp.point("smollm2-alpaca-uniform-a10-s1")
    assert alp.alpha == 10 and alp.train["noise"]["alpha"] == 10
    assert alp.train["template"] == "vicuna" and alp.train["max_train_examples"] == 5
    assert alp.train["data"] == str(data.resolve())
    assert alp.train["max_steps"] == 2 and alp.train["seed"] == 1
    assert alp.run_dir == (tmp_path / "out" / alp.name).resolve()
    syn = exp.point("smollm2-synthetic-symnoise-a5-s2")
    assert syn.train["template"] is None and syn.train["data"] == "synthetic"
    big = exp.point("big-model-synthetic-none-s1")
    assert big.model == "org/Some-Model-7B" and big.alpha is None and big.norm_match is None


def test_ablation_style_entries(tmp_path):
    spec = _exp(tmp_path, methods=[
        {"method": "uniform", "alpha": [5, 10, 15], "norm_match": [True, False]},
        {"method": "gaussian", "alpha": [5, 2.5], "norm_match": [True, False]},
        {"method": "bernoulli", "alpha": 5},
        "symnoise",
        {"method": "symnoise", "alpha": 5, "label": "seq",
         "train": {"noise": {"symmetric_mode": "sequential"}}},
    ], alphas=[3], norm_match=[False])
    exp = load_experiment(spec)
    names = _names(exp)
    # uniform ignores norm matching: 3; gaussian 2 x 2; bernoulli 1 (file-level
    # norm_match false); symnoise from `alphas` 1; labelled symnoise 1
    assert names == [
        "smollm2-synthetic-uniform-a5-s7", "smollm2-synthetic-uniform-a10-s7",
        "smollm2-synthetic-uniform-a15-s7",
        "smollm2-synthetic-gaussian-a5-s7", "smollm2-synthetic-gaussian-a5-nm0-s7",
        "smollm2-synthetic-gaussian-a2.5-s7", "smollm2-synthetic-gaussian-a2.5-nm0-s7",
        "smollm2-synthetic-bernoulli-a5-nm0-s7",
        "smollm2-synthetic-symnoise-a3-nm0-s7",
        "smollm2-synthetic-symnoise-seq-a5-nm0-s7",
    ]
    g = exp.point("smollm2-synthetic-gaussian-a2.5-nm0-s7")
    assert g.train["noise"]["norm_match"] is False and g.train["noise"]["alpha"] == 2.5
    assert g.norm_match is False
    assert exp.point("smollm2-synthetic-uniform-a5-s7").norm_match is None
    seq = exp.point("smollm2-synthetic-symnoise-seq-a5-nm0-s7")
    assert seq.train["noise"]["symmetric_mode"] == "sequential" and seq.label == "seq"


def test_recipe_layers_and_alpha_precedence(tmp_path):
    spec = _exp(tmp_path, recipe="alpaca", train={"grad_accum": 1, "max_steps": 3},
                datasets=[{"name": "a", "data": "synthetic", "train": {"lr": 1e-4}},
                          {"name": "b", "data": "synthetic", "recipe": "sharegpt",
                           "alpha": 7}],
                methods=["none", "symnoise", {"method": "uniform", "alpha": 2}])
    exp = load_experiment(spec)
    a = exp.point("smollm2-a-symnoise-a5-s7")  # alpha from the alpaca recipe
    assert a.train["lr"] == 1e-4 and a.train["grad_accum"] == 1 and a.train["batch_size"] == 4
    assert a.train["epochs"] == 3 and a.train["max_steps"] == 3 and a.train["template"] == "alpaca"
    b = exp.point("smollm2-b-symnoise-a7-s7")  # dataset alpha beats the sharegpt recipe's 10
    assert b.train["template"] == "vicuna" and b.train["lr"] == 5e-5
    assert exp.point("smollm2-b-uniform-a2-s7").train["noise"]["alpha"] == 2  # method beats dataset
    assert b.evaluation == {"words": "sharegpt"}  # stats preset follows the recipe
    assert "smollm2-b-none-s7" in _names(exp)


def test_paths_resolve_next_to_the_file_then_cwd(tmp_path, monkeypatch):
    exp_dir = tmp_path / "exp"
    exp_dir.mkdir()
    (exp_dir / "near.json").write_text("[]")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "far.json").write_text("[]")
    (cwd / "prompts.json").write_text("[]")
    monkeypatch.chdir(cwd)
    f = exp_dir / "e.yaml"
    f.write_text(yaml.safe_dump({
        "output_dir": "runs", "models": ["smollm2"], "methods": ["none"],
        "datasets": [{"name": "n", "data": "near.json"}, {"name": "f", "data": "far.json"},
                     {"name": "h", "data": "org/hub-dataset"}],
        "evaluation": {"prompts": "prompts.json", "n_prompts": 3, "eval_data": "near.json"},
    }))
    exp = load_experiment(f)
    by = {p.dataset: p for p in exp.points}
    assert by["n"].train["data"] == str((exp_dir / "near.json").resolve())
    assert by["f"].train["data"] == str((cwd / "far.json").resolve())
    assert by["h"].train["data"] == "org/hub-dataset"  # a hub id stays as it is
    assert by["n"].evaluation["prompts"] == str((cwd / "prompts.json").resolve())
    assert by["n"].evaluation["eval_data"] == str((exp_dir / "near.json").resolve())
    assert exp.output_dir == (cwd / "runs").resolve()  # output_dir: the cwd


@pytest.mark.parametrize("change, key", [
    ({"lr": 1}, "lr"),
    ({"output_dir": None}, "output_dir"),
    ({"models": []}, "models"),
    ({"datasets": [{"name": "x"}]}, "datasets[0].data"),
    ({"datasets": ["synthetic", {"data": "missing/file.json"}]}, "datasets[1].data"),
    ({"datasets": [{"data": "synthetic", "alpah": 5}]}, "datasets[0].alpah"),
    ({"datasets": [{"data": "synthetic", "alpha": -1}]}, "datasets[0].alpha"),
    ({"datasets": [{"data": "synthetic", "words": "klingon"}]}, "datasets[0].words"),
    ({"datasets": [{"data": "synthetic", "recipe": "nosuchrecipe"}]}, "datasets[0].recipe"),
    ({"methods": ["none", "laplace"]}, "methods[1].method"),
    ({"methods": [{"method": "uniform", "alpha": "big"}]}, "methods[0].alpha"),
    ({"methods": [{"alpha": 5}]}, "methods[0].method"),
    ({"methods": [{"method": "gaussian", "norm_match": "yes"}]}, "methods[0].norm_match"),
    ({"methods": ["symnoise", "symnoise"]}, "methods[1]"),
    ({"train": {"lrr": 1e-4}}, "train.lrr"),
    ({"train": {"seed": 3}}, "train.seed"),
    ({"train": {"batch_size": 0}}, "batch_size"),
    ({"seeds": [1.5]}, "seeds"),
    ({"evaluation": {"judgee": "x"}}, "evaluation.judgee"),
    ({"evaluation": {"reference": "baseline"}, "methods": ["symnoise"]},
     "evaluation.reference"),
    ({"executor": "slurm"}, "executor"),
    ({"ray": {"num_gpus": -1}}, "ray.num_gpus"),
])
def test_validation_errors_name_the_key(tmp_path, change, key):
    spec = _exp(tmp_path)
    spec.update(change)
    with pytest.raises(ExperimentError) as info:
        load_experiment(spec)
    assert key in str(info.value)


def test_file_errors_name_the_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("output_dir: x\nmodels: [smollm2]\nmethods: [none]\ndatasets: [synthetic]\n"
                 "evaluaton: {}\n")
    with pytest.raises(ExperimentError, match=r"bad\.yaml: evaluaton: unknown key"):
        load_experiment(f)
    f.write_text("- just\n- a list\n")
    with pytest.raises(ExperimentError, match=r"bad\.yaml: expected a mapping"):
        load_experiment(f)
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_experiment(tmp_path / "nope.yaml")


def test_optional_dataset_without_data_is_listed_not_run(tmp_path, fake_backends):
    spec = _exp(tmp_path, datasets=["synthetic", {"name": "alp", "data": "gone/alp.json",
                                                  "optional": True}])
    exp = load_experiment(spec)
    assert len(exp.points) == 6
    missing = [p for p in exp.points if p.unavailable]
    assert [p.dataset for p in missing] == ["alp"] * 3
    result = run_sweep(exp, progress=False)
    assert result.counts == {"completed": 3, "unavailable": 3}
    assert len(fake_backends.train_calls) == 3
    assert "gone/alp.json" in result.points[-1].note
    # the same for an optional dataset whose evaluation prompts are missing
    spec["datasets"][1] = {"name": "alp", "data": "synthetic", "optional": True,
                           "evaluation": {"prompts": "gone/prompts.json"}}
    exp = load_experiment(spec)
    assert [p.unavailable is not None for p in exp.points] == [False] * 3 + [True] * 3
    assert "gone/prompts.json" in exp.points[-1].unavailable
    spec["datasets"][1]["optional"] = False
    with pytest.raises(ExperimentError, match=r"datasets\[1\]\.evaluation\.prompts"):
        load_experiment(spec)


# ---------------------------------------------------------------------------------------
# running: fake train / evaluate that record their calls
# ---------------------------------------------------------------------------------------


class FakeBackends:
    def __init__(self):
        self.train_calls: list[tuple[str, bool]] = []
        self.eval_calls: list[tuple[str, dict]] = []
        self.fail_train: set[str] = set()
        self.fail_eval: set[str] = set()

    def train(self, cfg, progress=True):
        run_dir = Path(cfg.output_dir)
        self.train_calls.append((run_dir.name, cfg.resume))
        print(f"stdout chatter of {run_dir.name}")  # (train's progress writes some)
        run_dir.mkdir(parents=True, exist_ok=True)
        info = {"status": "running", "config": cfg.to_dict()}
        (run_dir / "run.json").write_text(json.dumps(info))
        if run_dir.name in self.fail_train:
            raise RuntimeError(f"boom in {run_dir.name}")
        ckpt = run_dir / "checkpoints" / "checkpoint-2"
        ckpt.mkdir(parents=True, exist_ok=True)
        steps = cfg.max_steps
        info.update(status="completed", global_step=steps,
                    final_clean_eval_loss=1.0 + cfg.noise.alpha / 100 * cfg.noise.active,
                    train_loss=2.0, timings_s={"total": 0.1})
        (run_dir / "run.json").write_text(json.dumps(info))
        return run_dir

    def evaluate(self, run_dir, kwargs, progress):
        run_dir = Path(run_dir)
        self.eval_calls.append((run_dir.name, dict(kwargs)))
        if run_dir.name in self.fail_eval:
            raise ValueError("judge reply could not be parsed")
        # the layout of evaluate_run's summary.json
        summary = {"synthetic": {"accuracy": 0.25},
                   "stats": {"outputs": {"avg_chars": 12.0, "avg_words": 3.0, "rep_2": 0.1}},
                   "judge": {"win_rate": 55.0} if kwargs.get("reference") else None}
        (run_dir / "eval").mkdir(exist_ok=True)
        (run_dir / "eval" / "outputs.json").write_text(json.dumps(
            [{"instruction": "q", "output": "a", "generator": run_dir.name}]))
        _summary_file(run_dir).write_text(json.dumps(summary))
        return summary


@pytest.fixture
def fake_backends(monkeypatch):
    fb = FakeBackends()
    monkeypatch.setattr(sweep, "_call_train", fb.train)
    monkeypatch.setattr(sweep, "_call_evaluate", fb.evaluate)
    return fb


def test_failure_isolation_then_skip_and_retry(tmp_path, fake_backends, capsys):
    spec = _exp(tmp_path, evaluation={"synthetic": True, "n_prompts": 6})
    fake_backends.fail_train.add("smollm2-synthetic-uniform-a5-s7")
    r1 = run_sweep(spec, progress=False)
    out, err = capsys.readouterr()
    assert out == "" and "stdout chatter of smollm2-synthetic-none-s7" in err
    assert [p.status for p in r1.points] == ["completed", "failed", "completed"]
    assert not r1.ok
    failed = r1.points[1]
    assert "boom in smollm2-synthetic-uniform-a5-s7" in failed.error
    err = _error_file(failed.run_dir)
    assert "RuntimeError: boom" in err.read_text()
    status = json.loads((tmp_path / "out" / STATUS_FILE).read_text())
    assert status["counts"] == {"completed": 2, "failed": 1}
    assert status["points"]["smollm2-synthetic-uniform-a5-s7"]["status"] == "failed"
    assert status["points"]["smollm2-synthetic-symnoise-a5-s7"]["alpha"] == 5.0
    assert [c[0] for c in fake_backends.eval_calls] == [
        "smollm2-synthetic-none-s7", "smollm2-synthetic-symnoise-a5-s7"]
    assert fake_backends.eval_calls[0][1] == {"synthetic": True, "n_prompts": 6}
    # checkpoints of finished runs are removed (keep_checkpoints: false)
    assert not (tmp_path / "out" / "smollm2-synthetic-none-s7" / "checkpoints").exists()
    assert r1.points[2].metrics["clean_loss"] == pytest.approx(1.05)
    assert r1.points[2].metrics["synthetic_score"] == 0.25
    assert r1.points[2].metrics["length"] == 12.0
    table = r1.format_table()
    assert re.search(r"smollm2-synthetic-uniform-a5-s7 +failed +train", table)
    assert "3 of 3 points (2 completed, 1 failed)" in table

    # rerun: finished points are skipped, the failed one (no checkpoints) trains again
    fake_backends.fail_train.clear()
    fake_backends.train_calls.clear()
    fake_backends.eval_calls.clear()
    r2 = run_sweep(spec, progress=False)
    assert [(p.status, p.action) for p in r2.points] == [
        ("skipped", "skip"), ("completed", "train"), ("skipped", "skip")]
    assert fake_backends.train_calls == [("smollm2-synthetic-uniform-a5-s7", False)]
    assert not err.exists()
    status = json.loads((tmp_path / "out" / STATUS_FILE).read_text())
    assert status["counts"] == {"skipped": 2, "completed": 1}


def test_resume_evaluate_only_and_changed_evaluation(tmp_path, fake_backends):
    spec = _exp(tmp_path, methods=["none", "symnoise", "gaussian"],
                evaluation={"synthetic": True}, keep_checkpoints=True)
    exp = load_experiment(spec)
    none, sym, gauss = exp.points
    # an interrupted run with a checkpoint -> resume
    sym.run_dir.mkdir(parents=True)
    (sym.run_dir / "run.json").write_text(json.dumps({"status": "running",
                                                      "config": sym.train}))
    (sym.run_dir / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    RunFolder(sym.run_dir).mark_checkpoint_complete(sym.run_dir / "checkpoints" / "checkpoint-1",
                                                    {"global_step": 1})
    # a trained run without evaluation -> evaluate only
    fake_backends.train(none.train_config())
    fake_backends.train_calls.clear()
    assert plan_point(sym) == ("resume", None)
    assert plan_point(none)[0] == "evaluate"
    assert plan_point(gauss) == ("train", None)
    r = run_sweep(exp, progress=False)
    assert [p.action for p in r.points] == ["evaluate", "resume", "train"]
    assert sorted(fake_backends.train_calls) == [("smollm2-synthetic-gaussian-a5-s7", False),
                                                 ("smollm2-synthetic-symnoise-a5-s7", True)]
    assert len(fake_backends.eval_calls) == 3
    assert (sym.run_dir / "checkpoints").exists()  # keep_checkpoints: true
    # everything done -> all skipped; a changed evaluation re-evaluates without training
    assert [p.status for p in run_sweep(exp, progress=False).points] == ["skipped"] * 3
    fake_backends.train_calls.clear()
    spec["evaluation"] = {"synthetic": True, "n_prompts": 12}
    r = run_sweep(spec, progress=False)
    assert [p.action for p in r.points] == ["evaluate"] * 3
    assert fake_backends.train_calls == []
    assert r.points[0].note == "evaluation settings changed"


def test_conflicting_run_folder_is_not_overwritten(tmp_path, fake_backends):
    exp = load_experiment(_exp(tmp_path, methods=["symnoise"]))
    p = exp.points[0]
    p.run_dir.mkdir(parents=True)
    other = {**p.train, "noise": {**p.train["noise"], "alpha": 10.0}, "lr": 1e-3}
    (p.run_dir / "run.json").write_text(json.dumps({"status": "completed", "config": other}))
    r = run_sweep(exp, progress=False)
    assert r.points[0].status == "conflict" and not r.ok
    assert "noise.alpha: 10.0 in the run folder, 5.0 in the experiment" in r.points[0].note
    assert "lr" in r.points[0].note
    assert fake_backends.train_calls == []


def test_evaluation_failure_keeps_training_and_is_recorded(tmp_path, fake_backends):
    spec = _exp(tmp_path, methods=["symnoise"], evaluation={"synthetic": True})
    fake_backends.fail_eval.add("smollm2-synthetic-symnoise-a5-s7")
    r = run_sweep(spec, progress=False)
    assert r.points[0].status == "failed" and "could not be parsed" in r.points[0].error
    fake_backends.fail_eval.clear()
    r = run_sweep(spec, progress=False)
    assert (r.points[0].status, r.points[0].action) == ("completed", "evaluate")
    assert len(fake_backends.train_calls) == 1


def test_baseline_reference_runs_baseline_first(tmp_path, fake_backends):
    spec = _exp(tmp_path, methods=["symnoise", "none", "uniform"],
                evaluation={"synthetic": True, "judge": "openai:judge", "reference": "baseline",
                            "base_url": "http://localhost:1/v1"})
    exp = load_experiment(spec)
    base = exp.point("smollm2-synthetic-none-s7")
    assert base.evaluation == {"synthetic": True}  # no judging of the baseline itself
    assert exp.point("smollm2-synthetic-uniform-a5-s7").baseline == base.name
    r = run_sweep(exp, progress=False)
    order = [c[0] for c in fake_backends.eval_calls]
    assert order[0] == base.name
    refs = {name: kw.get("reference") for name, kw in fake_backends.eval_calls}
    assert refs[base.name] is None
    assert refs["smollm2-synthetic-symnoise-a5-s7"] == str(base.run_dir / "eval" /
                                                           "outputs.json")
    assert [p.name for p in r.points] == _names(exp)  # reported in grid order
    assert r.points[0].metrics["win_rate"] == 55.0


def test_baseline_missing_fails_only_the_dependents(tmp_path, fake_backends):
    spec = _exp(tmp_path, evaluation={"judge": "openai:j", "reference": "baseline"})
    fake_backends.fail_train.add("smollm2-synthetic-none-s7")
    r = run_sweep(spec, progress=False)
    assert [p.status for p in r.points] == ["failed"] * 3
    assert "baseline smollm2-synthetic-none-s7 has no evaluation" in r.points[1].error
    assert len(fake_backends.train_calls) == 3  # the noisy runs trained nevertheless


def test_dry_run_writes_nothing_and_only_filters(tmp_path, fake_backends):
    spec = _exp(tmp_path, methods=["none", {"method": "uniform", "alpha": [5, 10]}])
    r = run_sweep(spec, dry_run=True, progress=False)
    assert [(p.status, p.action) for p in r.points] == [("planned", "train")] * 3
    assert not (tmp_path / "out").exists()
    assert fake_backends.train_calls == []
    assert "dry run" in r.format_table()
    r = run_sweep(spec, dry_run=True, only="uniform", progress=False)
    assert [p.name for p in r.points] == ["smollm2-synthetic-uniform-a5-s7",
                                          "smollm2-synthetic-uniform-a10-s7"]
    assert r.total == 3
    r = run_sweep(spec, only="*-a10-*,*none*", progress=False)
    assert [p.name for p in r.points] == ["smollm2-synthetic-none-s7",
                                          "smollm2-synthetic-uniform-a10-s7"]
    assert len(fake_backends.train_calls) == 2
    status = json.loads((tmp_path / "out" / STATUS_FILE).read_text())
    assert status["points"]["smollm2-synthetic-uniform-a5-s7"]["status"] == "pending"
    with pytest.raises(ExperimentError, match="matches none of the 3 points"):
        run_sweep(spec, only="gaussian", progress=False)


def test_report_is_built_when_asked(tmp_path, fake_backends, monkeypatch):
    import types

    calls = []

    class Built:
        def to_dict(self):
            return {"files": {"report_md": "R.md"}, "output_dir": "O", "runs": [1, 2],
                    "summary": ["Exact-answer accuracy: none 25.0 [10.0, 40.0]."]}

        def format_table(self):
            return "TABLE"

    fake = types.ModuleType("symnoise.experiments.report")
    fake.build_report = lambda runs, out=None: calls.append((runs, out)) or Built()
    monkeypatch.setitem(sys.modules, "symnoise.experiments.report", fake)
    monkeypatch.setattr(experiments, "report", fake, raising=False)
    r = run_experiment(_exp(tmp_path, methods=["none"], report=True), progress=False)
    assert calls == [((tmp_path / "out").resolve(), (tmp_path / "out" / "report").resolve())]
    assert r.report == {"report_md": "R.md", "output_dir": "O", "files": {"report_md": "R.md"},
                        "notes": [], "table": "TABLE",
                        "summary": ["Exact-answer accuracy: none 25.0 [10.0, 40.0]."]}
    assert "report: R.md" in r.format_table()
    assert "Exact-answer accuracy: none 25.0 [10.0, 40.0]." in r.format_table()
    fake.build_report = lambda runs, out=None: 1 / 0
    r = run_experiment(_exp(tmp_path, methods=["none"], report=True), progress=False)
    assert r.report is None and "ZeroDivisionError" in r.report_error


# ---------------------------------------------------------------------------------------
# shipped experiment files
# ---------------------------------------------------------------------------------------


def test_paper_table1_grid():
    exp = load_experiment(GRIDS / "paper_table1.yaml")
    assert len(exp.points) == 16  # 4 datasets x (none, NEFTune, SymNoise with/without sqrt 3)
    by = {(p.dataset, p.method, p.norm_match): p for p in exp.points}
    assert {d for d, _, _ in by} == {"alpaca", "evol_instruct", "sharegpt", "openplatypus"}
    assert {m for _, m, _ in by} == {"none", "uniform", "symnoise"}
    for (d, m, _), p in by.items():
        t = p.train
        assert t["model"] == "meta-llama/Llama-2-7b-hf"
        assert (t["lr"], t["epochs"], t["max_length"], t["warmup_ratio"]) == (5e-5, 3, 512, 0.03)
        assert t["batch_size"] * t["grad_accum"] == 128
        assert t["template"] == ("vicuna" if d == "sharegpt" else "alpaca")
        if m == "uniform":  # NEFTune's alpha per dataset; SymNoise at 5 everywhere
            assert p.alpha == {"alpaca": 5, "evol_instruct": 5, "sharegpt": 10,
                               "openplatypus": 15}[d]
        if m == "symnoise":
            assert p.alpha == 5
        assert p.evaluation["judge"] and p.evaluation["prompts"]
    assert by[("alpaca", "uniform", None)].train["data"] == "tatsu-lab/alpaca"
    assert exp.executor == "ray"


def test_paper_ablation_grid():
    exp = load_experiment(GRIDS / "paper_ablation.yaml")
    assert len(exp.points) == 13  # uniform 3 + gaussian 3 x 2 + bernoulli 2 + symnoise 2
    combos = sorted((p.method, p.alpha, p.norm_match) for p in exp.points)
    assert combos == sorted(
        [("uniform", a, None) for a in (5.0, 10.0, 15.0)]
        + [("gaussian", a, nm) for a in (5.0, 10.0, 15.0) for nm in (True, False)]
        + [(m, 5.0, nm) for m in ("bernoulli", "symnoise") for nm in (True, False)])
    assert {p.dataset for p in exp.points} == {"alpaca"}


@pytest.mark.parametrize("name", ["small_table1", "small_ablation", "small_alpaca"])
def test_small_grids_parse(name, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    if name == "small_alpaca" and not (SHARED / "alpaca_9k.json").is_file():
        pytest.skip("../shared/data is absent")
    exp = load_experiment(name)  # a shipped grid by name
    assert exp.points and all(p.train["model"] == "smollm2" for p in exp.points)
    if name == "small_alpaca":
        assert [p.method for p in exp.points] == ["none", "uniform", "symnoise"]
        assert len({p.seed for p in exp.points}) == 1
        p = exp.points[0]
        assert p.train["data"] == str((SHARED / "alpaca_9k.json").resolve())
        assert p.evaluation["prompts"] == str((SHARED / "alpaca_eval_805.json").resolve())
    if name == "small_ablation":
        assert len([p for p in exp.points if not p.unavailable]) >= 11


# ---------------------------------------------------------------------------------------
# executors with real (tiny) training in other processes
# ---------------------------------------------------------------------------------------


def _tiny_model_dir(tmp_path) -> Path:
    from conftest import make_model, make_tokenizer

    tok = make_tokenizer()
    model = make_model(vocab_size=len(tok))
    out = tmp_path / "tiny-llama"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _tiny_data(tmp_path) -> tuple[Path, Path]:
    rows = [{"instruction": f"add {a} and {b}", "input": "", "output": f"{a + b}"}
            for a in range(4) for b in range(3)]
    good = tmp_path / "good.json"
    good.write_text(json.dumps(rows))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"instruction": "x"}, {"output": 3}]))
    return good, bad


def _tiny_spec(tmp_path, **over):
    model = _tiny_model_dir(tmp_path)
    good, bad = _tiny_data(tmp_path)
    spec = {
        "output_dir": str(tmp_path / "runs"),
        "models": [{"name": "tiny", "model": str(model)}],
        "datasets": [{"name": "good", "data": str(good)}, {"name": "bad", "data": str(bad)}],
        "methods": ["none", "symnoise"],
        "seeds": [3],
        "train": {"max_steps": 2, "batch_size": 2, "max_length": 64, "eval_fraction": 0.2,
                  "logging_steps": 1, "save_steps": 1, "dtype": "float32"},
        "evaluation": False,
    }
    spec.update(over)
    return spec


def _check_tiny_results(result, tmp_path, ok: list[str], failed: list[str]):
    by = {p.name: p for p in result.points}
    assert set(by) == set(ok) | set(failed)
    for name in ok:
        assert by[name].status == "completed", by[name].error
        info = json.loads((tmp_path / "runs" / name / "run.json").read_text())
        assert info["status"] == "completed" and info["global_step"] == 2
        assert info["noise"]["method"] == name.split("-")[2]
        assert info["config"]["extra"] == {"dataset": "good"}
        assert (tmp_path / "runs" / name / "config.json").is_file()  # the model is saved
        assert not (tmp_path / "runs" / name / "checkpoints").exists()
        assert by[name].metrics["steps"] == 2 and by[name].metrics["clean_loss"] > 0
    for name in failed:
        assert by[name].status == "failed"
        assert "bad.json" in _error_file(tmp_path / "runs" / name).read_text()


def test_local_process_isolation_real_tiny_run(tmp_path, monkeypatch):
    src = str(Path(sweep.__file__).resolve().parents[2])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    spec = _tiny_spec(tmp_path, isolation="process")
    result = run_sweep(spec, only="good-symnoise", progress=False)
    _check_tiny_results(result, tmp_path, ["tiny-good-symnoise-a5-s3"], [])
    assert result.executor == "local"
    # a point whose process dies without a result is recorded as failed
    monkeypatch.setattr(sweep.subprocess, "call", lambda cmd, **kw: 137)
    result = run_sweep(spec, only="good-none", progress=False)
    assert result.points[0].status == "failed"
    assert "exited with status 137" in result.points[0].error
    assert _error_file(tmp_path / "runs" / "tiny-good-none-s3").is_file()


def test_ray_executor_local_cluster(tmp_path):
    pytest.importorskip("ray")
    spec = _tiny_spec(tmp_path, executor="ray",
                      ray={"num_cpus": 1, "init": {"num_cpus": 2, "log_to_driver": False}})
    result = run_sweep(spec, only="good-symnoise,bad-none", progress=False)
    _check_tiny_results(result, tmp_path, ["tiny-good-symnoise-a5-s3"], ["tiny-bad-none-s3"])
    assert result.executor == "ray"
    import ray

    assert not ray.is_initialized()  # the sweep stops the cluster it started
    status = json.loads((tmp_path / "runs" / STATUS_FILE).read_text())
    assert status["executor"] == "ray"
    assert status["counts"] == {"completed": 1, "failed": 1, "pending": 2}


def test_ray_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'ray\[default\]'"):
        run_sweep(_exp(tmp_path), executor="ray", progress=False)
    assert not (tmp_path / "out").exists()


def test_accelerate_launch_command_and_point_config(tmp_path, fake_backends, monkeypatch):
    from symnoise.config import TrainConfig

    seen = []

    def fake_call(cmd, **kwargs):
        seen.append(cmd)
        assert kwargs == {"stdout": 2}  # the child's stdout never mixes into ours
        cfg = TrainConfig.from_sources(cmd[cmd.index("--config") + 1])  # what the CLI reads
        fake_backends.train(cfg)
        return 0

    monkeypatch.setattr(sweep.subprocess, "call", fake_call)
    spec = _exp(tmp_path, methods=["symnoise"], accelerate_launch=True,
                accelerate_args=["--num_processes", 2])
    r = run_sweep(spec, progress=False)
    assert r.points[0].status == "completed"
    cmd = seen[0]
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert cmd[3:9] == ["--num_processes", "2", "-m", "symnoise.cli", "train", "--config"]
    run_dir = tmp_path / "out" / "smollm2-synthetic-symnoise-a5-s7"
    assert Path(cmd[9]) == (run_dir.parent / ".sweep" / f"{run_dir.name}.yaml").resolve()
    name, resume = fake_backends.train_calls[0]
    assert (name, resume) == ("smollm2-synthetic-symnoise-a5-s7", False)
    written = yaml.safe_load(Path(cmd[9]).read_text())
    assert written["noise"]["alpha"] == 5.0 and written["max_steps"] == 2 and written["seed"] == 7
    monkeypatch.setattr(sweep.subprocess, "call", lambda cmd, **kw: 3)
    r = run_sweep(_exp(tmp_path, methods=["none"], accelerate_launch=True), progress=False)
    assert r.points[0].status == "failed" and "exited with status 3" in r.points[0].error


def test_real_evaluation_and_report_on_tiny_runs(tmp_path):
    spec = _tiny_spec(tmp_path, report=True, evaluation={
        "n_prompts": 4, "max_new_tokens": 4, "batch_size": 4})
    r = run_experiment(spec, only="good", progress=False)
    assert [p.status for p in r.points] == ["completed", "completed"], r.format_table()
    for p in r.points:
        summary = json.loads(_summary_file(p.run_dir).read_text())
        assert summary["synthetic"]["n"] == 4
        assert p.metrics["synthetic_score"] == summary["synthetic"]["accuracy"]
        assert p.metrics["clean_loss"] == summary["final_clean_eval_loss"]
        assert summary["dataset"] == "good"  # named by the experiment, via config.extra
    assert r.report and Path(r.report["report_md"]).is_file()
    assert Path(r.report["report_md"]).parent == tmp_path / "runs" / "report"
    assert r.report_error is None
    # rerun: nothing to do
    r2 = run_experiment(spec, only="good", progress=False)
    assert [p.status for p in r2.points] == ["skipped", "skipped"]


def test_per_dataset_evaluation_overrides(tmp_path, fake_backends):
    spec = _exp(tmp_path, methods=["none"],
                datasets=[{"name": "a", "data": "synthetic", "evaluation": False},
                          {"name": "b", "data": "synthetic", "words": 4,
                           "evaluation": {"n_prompts": 5}}],
                evaluation={"synthetic": True, "n_prompts": 36, "max_new_tokens": 24})
    exp = load_experiment(spec)
    assert exp.points[0].evaluation is None
    assert exp.points[1].evaluation == {"synthetic": True, "n_prompts": 5,
                                        "max_new_tokens": 24, "words": 4}
    r = run_sweep(exp, progress=False)
    assert [p.status for p in r.points] == ["completed", "completed"]
    assert [c[0] for c in fake_backends.eval_calls] == ["smollm2-b-none-s7"]
    # trained and not to be evaluated: finished
    assert plan_point(exp.points[0]) == ("skip", None)


def test_schema_errors_name_file_field_and_list_every_problem(tmp_path):
    f = tmp_path / "experiment.yaml"
    f.write_text(yaml.safe_dump({"output_dir": "x", "models": ["smollm2"], "methods": ["none"],
                                 "datasets": ["synthetic", {"name": "b", "alpha": "x"}],
                                 "seeds": [1, "two"], "evaluaton": {}}))
    with pytest.raises(ExperimentError) as info:
        load_experiment(f)
    lines = str(info.value).splitlines()
    assert f"{f}: datasets[1].alpha: expected a number, got 'x'" in lines
    assert f"{f}: seeds[1]: value 'two' is not a valid integer" in lines
    assert f"{f}: evaluaton: unknown key (did you mean 'evaluation'?)" in lines
    assert len(lines) == 3
    f.write_text(yaml.safe_dump({"output_dir": "x", "models": ["smollm2"], "methods": ["none"],
                                 "datasets": ["synthetic", {"name": "b"}]}))
    with pytest.raises(ExperimentError, match=r"experiment\.yaml: datasets\[1\]\.data: field "
                                              r"required"):
        load_experiment(f)


def test_bookkeeping_fields_are_no_conflict_but_the_seed_is(tmp_path):
    """symnoise.config.model_setting: logging/checkpoint cadence may change on a rerun."""
    p = load_experiment(_exp(tmp_path, methods=["symnoise"])).points[0]
    p.run_dir.mkdir(parents=True)
    recorded = {**p.train, "logging_steps": 99, "save_steps": 0, "eval_steps": 3}
    info = p.run_dir / "run.json"
    info.write_text(json.dumps({"status": "running", "config": recorded}))
    assert plan_point(p)[0] == "train"
    info.write_text(json.dumps({"status": "running", "config": {**recorded, "seed": 99}}))
    action, note = plan_point(p)
    assert action == "conflict" and note.startswith("seed: 99 in the run folder")


def test_sweep_module_has_no_command_line():
    source = Path(sweep.__file__).read_text()
    assert "argparse" not in source and "__main__" not in source
    assert "import report" not in source and "build_report" not in source


def test_conflict_check_reads_nested_noise_in_run_json(tmp_path, fake_backends):
    """A run folder written by today's train() nests the noise; its alpha is still compared."""
    from symnoise.config import TrainConfig, merged

    exp = load_experiment(_exp(tmp_path, methods=["symnoise"]))
    p = exp.points[0]
    p.run_dir.mkdir(parents=True)
    recorded = TrainConfig(**merged(p.train, {"noise": {"alpha": 10.0}})).to_dict()
    assert recorded["noise"]["alpha"] == 10.0 and "alpha" not in recorded
    (p.run_dir / "run.json").write_text(json.dumps({"status": "completed", "config": recorded}))
    r = run_sweep(exp, progress=False)
    assert r.points[0].status == "conflict"
    assert "noise.alpha: 10.0 in the run folder, 5.0 in the experiment" in r.points[0].note
