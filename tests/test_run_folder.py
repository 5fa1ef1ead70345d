"""The run folder module: layout, readers that name bad files, accessors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from symnoise.run import EVAL_FILES, RunFolder, find_runs, read_jsonl, run_dataset, run_setting


def _make_run(path, **info):
    run = RunFolder(path)
    run.path.mkdir(parents=True)
    run.write_info({"status": "completed", **info})
    return run


def test_layout_and_info_roundtrip(tmp_path):
    run = _make_run(tmp_path / "a", config={"seed": 3, "data": "x.json", "format": "alpaca",
                                            "noise": {"method": "uniform", "alpha": 5.0}})
    assert run.is_run() and run.info_file.name == "run.json"
    assert run.status == "completed" and run.seed == 3 and run.dataset == "alpaca"
    assert run.setting["method"] == "uniform" and run.setting["alpha"] == 5.0
    run.update_info(status="failed")
    assert RunFolder(run.path).status == "failed"
    assert run.eval_file("outputs") == run.path / "eval" / EVAL_FILES["outputs"]
    with pytest.raises(KeyError, match="unknown eval file role 'nope'"):
        run.eval_file("nope")


def test_missing_and_bad_run_json_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        RunFolder(tmp_path).read_info()
    assert RunFolder(tmp_path).read_info(required=False) == {}
    (tmp_path / "run.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"run\.json: expected a JSON object, got list"):
        RunFolder(tmp_path).read_info()


def test_metrics_append_and_bad_line(tmp_path):
    run = _make_run(tmp_path / "r")
    run.append_metrics({"step": 1, "train_loss": 2.0})
    run.append_metrics({"step": 2, "clean_eval_loss": 1.5})
    assert [r["step"] for r in run.read_metrics()] == [1, 2]
    with run.metrics_file.open("a") as fh:
        fh.write("not json\n")
    with pytest.raises(ValueError, match=r"metrics\.jsonl: line 3: invalid JSON"):
        run.read_metrics()
    (tmp_path / "x.jsonl").write_text(json.dumps([1]) + "\n")
    with pytest.raises(ValueError, match="line 1: expected a JSON object"):
        read_jsonl(tmp_path / "x.jsonl")


def test_last_checkpoint_is_the_newest_complete_one(tmp_path):
    run = _make_run(tmp_path / "r")
    assert run.last_checkpoint() is None
    for n in (5, 40, 100, 9):
        (run.checkpoints_dir / f"checkpoint-{n}").mkdir(parents=True)
    (run.checkpoints_dir / "checkpoint-tmp").mkdir()
    assert run.last_checkpoint() is None  # none marked complete yet
    for n in (5, 40, 9):
        run.mark_checkpoint_complete(run.checkpoints_dir / f"checkpoint-{n}", {"global_step": n})
    assert run.last_checkpoint().name == "checkpoint-40"  # numeric order; 100 is partial
    assert [p.name for p in run.partial_checkpoints()] == ["checkpoint-100"]
    assert run.checkpoint_record(run.last_checkpoint()) == {"global_step": 40}
    removed = run.prune_checkpoints(2)  # keeps 9 and 40; 100 is newer than 40: kept
    assert [p.name for p in removed] == ["checkpoint-5"]
    assert [p.name for p in run.checkpoints()] == ["checkpoint-9", "checkpoint-40",
                                                   "checkpoint-100"]


def test_metrics_after_a_step_are_dropped(tmp_path):
    run = _make_run(tmp_path / "r")
    for step in (1, 2, 2, 3, 4):
        run.append_metrics({"step": step, "train_loss": 1.0})
    assert run.keep_metrics_until(2) == 2
    assert [r["step"] for r in run.read_metrics()] == [1, 2, 2]
    assert run.keep_metrics_until(2) == 0


def test_a_metrics_row_torn_by_a_kill_is_dropped_on_resume(tmp_path):
    run = _make_run(tmp_path / "r")
    for step in (1, 2):
        run.append_metrics({"step": step, "train_loss": 1.0})
    with run.metrics_file.open("a", encoding="utf-8") as fh:
        fh.write('{"step": 3, "train_lo')  # killed mid-write
    with pytest.raises(ValueError, match="line 3"):
        run.read_metrics()  # a reader (report) never repairs the file
    assert run.keep_metrics_until(2) == 1  # the resume drops the torn row
    run.append_metrics({"step": 3, "train_loss": 0.5})
    assert [r["step"] for r in run.read_metrics()] == [1, 2, 3]


def test_find_runs_skips_eval_and_checkpoints(tmp_path):
    _make_run(tmp_path / "b")
    _make_run(tmp_path / "a" / "nested")
    inner = tmp_path / "b" / "checkpoints" / "checkpoint-1"
    inner.mkdir(parents=True)
    (inner / "run.json").write_text("{}")
    found = [r.path.relative_to(tmp_path).as_posix() for r in find_runs(tmp_path)]
    assert found == ["a/nested", "b"]
    assert [r.path.name for r in find_runs(tmp_path, exclude=[tmp_path / "a"])] == ["b"]
    with pytest.raises(FileNotFoundError, match="runs folder not found"):
        find_runs(tmp_path / "missing")


def test_dataset_and_setting_rules():
    assert run_dataset({"config": {"data": "synthetic:train"}}) == "synthetic"
    assert run_dataset({"config": {"data": "/d/my_data.json", "format": "auto"}}) == "my_data"
    assert run_dataset({"config": {"extra": {"dataset": "alpaca"}, "data": "z.json"}}) == "alpaca"
    nested = {"config": {"noise": {"method": "gaussian", "alpha": 10, "norm_match": False}}}
    assert run_setting(nested) == {"method": "gaussian", "alpha": 10, "norm_match": False,
                                   "symmetric_mode": None}


FIXTURE = Path(__file__).parent / "fixtures" / "run_json" / "ca5fa6d.json"


def test_a_run_json_of_the_previous_format_still_loads(tmp_path):
    """The fixture is the run.json train() wrote at commit ca5fa6d, before the config became
    pydantic models (a tiny run: gaussian, alpha 7, no norm matching, seed 3)."""
    from symnoise.config import NoiseConfig, TrainConfig, model_setting, upgrade_config
    from symnoise.train import resolve_config

    recorded = json.loads(FIXTURE.read_text())
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    run.info_file.write_text(FIXTURE.read_text())
    cfg = TrainConfig.model_validate(run.read_info()["config"])
    later = {"stage": "sft", "beta": 0.1}  # fields added after ca5fa6d: their defaults
    assert cfg.to_dict() == {**recorded["config"], **later}  # nothing lost, nothing changed
    assert cfg.noise == NoiseConfig(method="gaussian", alpha=7, norm_match=False, seed=3)
    assert (run.setting, run.dataset, run.seed) == ({"method": "gaussian", "alpha": 7.0,
                                                     "norm_match": False,
                                                     "symmetric_mode": "concat"}, "tiny", 3)
    resumed = resolve_config({"output_dir": str(run.path), "resume": True})
    assert resumed.model_dump(exclude={"output_dir", "resume"}) == \
        cfg.model_dump(exclude={"output_dir", "resume"})
    # before the noise was nested its fields were flat in `config`: the one migration
    old = {k: v for k, v in recorded["config"].items() if k != "noise"}
    old.update({k: v for k, v in recorded["noise"].items() if k != "seed"})
    assert TrainConfig.model_validate(upgrade_config(old)) == cfg
    assert model_setting(upgrade_config(old)) == model_setting(recorded["config"])
    run.info_file.write_text(json.dumps({**recorded, "config": old}))
    assert run.read_info()["config"]["noise"] == {k: v for k, v in recorded["noise"].items()
                                                 if k != "seed"}
