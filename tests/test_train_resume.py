"""Never lose a training run: a run killed (SIGKILL) at any point of a checkpoint or of the
final save resumes to the uninterrupted run's exact weights and records; one writer per run
folder; ``--resume`` continues the recorded run; a full disk is one clear error."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_model, make_tokenizer
from safetensors.torch import load_file
from typer.testing import CliRunner

from symnoise.cli import app
from symnoise.config import TrainConfig
from symnoise.run import RunFolder, RunLockedError, run_setting
from symnoise.train import train

ROWS = [{"instruction": "sort the numbers", "input": "three one two", "output": "one two three"},
        {"instruction": "count the letters", "input": "", "output": "five"},
        {"instruction": "give the answer", "input": "two + two", "output": "four"}] * 10
STEPS = 6
SRC = Path(__file__).resolve().parents[1] / "src"
TESTS = Path(__file__).resolve().parent

# Run in a child process: train, and SIGKILL itself at one moment of a save.
CHILD = '''
import json, os, signal, sys
from symnoise.run import RunFolder
from symnoise.trainer import NoiseTrainerMixin
import symnoise.train as T
from transformers import PreTrainedModel

cfg, where, step = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]

def patch(owner, name, hit):
    original = getattr(owner, name)
    def patched(self, path, *args, **kwargs):
        now = hit(str(path))
        if now and where != "final":
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(self, path, *args, **kwargs)
        if now:  # "final": the model's weights written, the tokenizer and run.json not
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    setattr(owner, name, patched)

if where == "save":  # the Trainer's save: weights and optimizer written, not its state
    patch(NoiseTrainerMixin, "_save_rng_state", lambda p: p.endswith("checkpoint-" + step))
elif where == "mark":  # the Trainer's save finished, the checkpoint not yet marked complete
    patch(RunFolder, "mark_checkpoint_complete", lambda p: p.endswith("checkpoint-" + step))
elif where == "final":  # training finished, the final model being saved
    patch(PreTrainedModel, "save_pretrained", lambda p: "checkpoint-" not in p)
T.train(cfg, progress=False)
'''


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    tok = make_tokenizer()
    make_model(len(tok), seed=0).save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    (root / "data.json").write_text(json.dumps(ROWS))
    return root


def _cfg(inputs, out, **kw) -> dict:
    return {"model": str(inputs / "model"), "data": str(inputs / "data.json"),
            "output_dir": str(out), "max_steps": STEPS, "batch_size": 4, "lr": 1e-3,
            "lr_scheduler": "constant", "logging_steps": 1, "eval_fraction": 0.2,
            "save_steps": 2, "save_total_limit": 1, "max_length": 64, "seed": 0,
            "noise": {"method": "symnoise"}, **kw}


@pytest.fixture(scope="module")
def whole(inputs, tmp_path_factory):
    """The uninterrupted run."""
    return train(_cfg(inputs, tmp_path_factory.mktemp("whole") / "run"), progress=False)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model.safetensors")


def _train_rows(run: Path) -> list[dict]:
    return [r for r in RunFolder(run).read_metrics() if "train_loss" in r]


def _killed(inputs, out, where: str, step: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)])}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(_cfg(inputs, out)), where,
                           str(step)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("where,step,resumed_at", [("save", 4, 2), ("mark", 4, 2),
                                                   ("final", 6, 6)])
def test_a_run_killed_while_saving_resumes_to_the_uninterrupted_run(
        inputs, whole, tmp_path, capfd, where, step, resumed_at):
    out = tmp_path / "run"
    _killed(inputs, out, where, step)
    run = RunFolder(out)
    assert run.status == "running"
    if where != "final":
        assert [p.name for p in run.partial_checkpoints()] == [f"checkpoint-{step}"]
    assert run.last_checkpoint().name == f"checkpoint-{resumed_at}"  # save_total_limit=1
    capfd.readouterr()
    if where == "final":  # the README's form: --resume alone, the settings from run.json
        result = CliRunner().invoke(app, ["train", "--output-dir", str(out), "--resume",
                                          "--no-progress"])
        assert result.exit_code == 0, result.output
        err = result.output  # the runner takes stderr too
    else:
        train({"output_dir": str(out), "resume": True}, progress=False)
        err = capfd.readouterr().err
    assert f"resuming from {run.checkpoints_dir / f'checkpoint-{resumed_at}'}" in err
    if where != "final":
        assert f"removed checkpoint-{step}: an incomplete checkpoint" in err
    a, b = _weights(whole), _weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    info, ref = run.read_info(), RunFolder(whole).read_info()
    assert info["status"] == "completed" and info["global_step"] == STEPS
    assert info["tokens_seen"] == ref["tokens_seen"] and info["pad_tokens"] == ref["pad_tokens"]
    assert info["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-9)
    assert info["final_clean_eval_loss"] == ref["final_clean_eval_loss"]
    assert info["timings_s"]["train"] > 0
    assert info["noise_measured"]["n_forwards"] == ref["noise_measured"]["n_forwards"]
    steps = [r["step"] for r in _train_rows(out)]
    assert steps == list(range(1, STEPS + 1))  # each step once
    assert [r["tokens_seen"] for r in _train_rows(out)] == \
        [r["tokens_seen"] for r in _train_rows(whole)]
    assert not run.partial_checkpoints() and not run.lock_file.exists()


def test_train_loss_and_tokens_are_the_whole_runs(whole):
    info, rows = RunFolder(whole).read_info(), _train_rows(whole)
    assert info["train_loss"] == pytest.approx(sum(r["train_loss"] for r in rows) / STEPS)
    assert info["tokens_seen"] == rows[-1]["tokens_seen"] > 0
    assert info["config"]["save_total_limit"] == 1
    assert [p.name for p in RunFolder(whole).checkpoints()] == [f"checkpoint-{STEPS}"]


def test_resuming_a_finished_run_changes_nothing(inputs, whole, tmp_path, capfd):
    before = {p.name: p.read_bytes() for p in Path(whole).iterdir() if p.is_file()}
    capfd.readouterr()
    train(_cfg(inputs, whole, resume=True), progress=False)
    assert "is already complete (step 6): nothing to do" in capfd.readouterr().err
    after = {p.name: p.read_bytes() for p in Path(whole).iterdir() if p.is_file()}
    assert after == before  # weights, run.json, metrics: untouched


def test_resume_refuses_other_settings_naming_both_values(inputs, whole):
    info = RunFolder(whole).info_file.read_bytes()
    r = CliRunner().invoke(app, ["train", "--output-dir", str(whole), "--resume",
                                 "--method", "uniform", "--lr", "0.002"])
    assert r.exit_code == 2
    assert "noise.method is 'symnoise' in the run, 'uniform' given" in r.output
    assert "lr is 0.001 in the run, 0.002 given" in r.output
    with pytest.raises(ValueError, match="seed is 0 in the run, 1 given"):
        train(TrainConfig(**{**_cfg(inputs, whole), "seed": 1, "resume": True}))
    assert RunFolder(whole).info_file.read_bytes() == info  # run.json never rewritten


def test_bookkeeping_may_differ_on_resume(inputs, tmp_path):
    out = tmp_path / "run"
    _killed(inputs, out, "mark", 4)
    train({"output_dir": str(out), "resume": True, "logging_steps": 3, "save_steps": 3},
          progress=False)
    info = RunFolder(out).read_info()
    assert info["global_step"] == STEPS and info["config"]["logging_steps"] == 3
    assert run_setting(info)["method"] == "symnoise" and info["config"]["seed"] == 0


def test_a_second_writer_is_refused_naming_the_holder(inputs, whole, tmp_path):
    from symnoise.experiments.evaluation import evaluate_run

    out = tmp_path / "run"
    holder = f"pid {os.getpid()} on host {socket.gethostname()}"
    out.mkdir()
    with RunFolder(out).lock("symnoise train"):
        with pytest.raises(RunLockedError, match=holder):
            train(_cfg(inputs, out), progress=False)
        r = CliRunner().invoke(app, ["train", *_flags(inputs, out)])
        assert r.exit_code == 2 and holder in r.output
        assert sorted(p.name for p in out.iterdir()) == ["run.lock"]  # nothing written
    with RunFolder(whole).lock("symnoise train"):
        with pytest.raises(RunLockedError, match=holder):
            evaluate_run(whole, progress=False)
    assert not RunFolder(whole).lock_file.exists()


def _flags(inputs, out) -> list[str]:
    return ["--model", str(inputs / "model"), "--data", str(inputs / "data.json"),
            "--output-dir", str(out), "--max-steps", "2", "--batch-size", "4",
            "--max-length", "64", "--no-progress"]


def test_a_stale_lock_is_taken_over_and_said(inputs, tmp_path, capfd):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    RunFolder(out).lock_file.write_text(json.dumps(
        {"pid": dead.pid, "host": socket.gethostname(), "purpose": "symnoise train"}))
    capfd.readouterr()
    train(_cfg(inputs, out, max_steps=2), progress=False)
    err = capfd.readouterr().err
    assert f"took over the lock of {out} left by pid {dead.pid}" in err
    assert RunFolder(out).status == "completed" and not RunFolder(out).lock_file.exists()


def test_a_full_disk_is_one_clear_error_and_the_run_resumes(inputs, whole, tmp_path,
                                                             monkeypatch):
    from symnoise.trainer import NoiseTrainerMixin

    original = NoiseTrainerMixin._save_rng_state

    def full(self, output_dir):
        if output_dir.endswith("checkpoint-4"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, output_dir)

    monkeypatch.setattr(NoiseTrainerMixin, "_save_rng_state", full)
    out = tmp_path / "run"
    with pytest.raises(OSError) as caught:
        train(_cfg(inputs, out), progress=False)
    message = str(caught.value)
    assert "\n" not in message and str(out) in message and "No space left on device" in message
    assert "--resume continues the run from checkpoint-2" in message
    assert RunFolder(out).read_info()["status"] == "failed"
    monkeypatch.setattr(NoiseTrainerMixin, "_save_rng_state", original)
    train({"output_dir": str(out), "resume": True}, progress=False)
    a, b = _weights(whole), _weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_failed_train_leaves_no_folder_it_made(inputs, tmp_path):
    out = tmp_path / "new" / "deeper" / "run"
    with pytest.raises((OSError, ValueError)):
        train(_cfg(inputs, out, model=str(tmp_path / "no-such-model")), progress=False)
    assert not (tmp_path / "new").exists()


def test_a_run_stopped_before_its_first_checkpoint_starts_over(inputs, tmp_path, capfd):
    out = tmp_path / "run"
    _killed(inputs, out, "save", 2)  # killed inside the first checkpoint's save
    run = RunFolder(out)
    assert run.last_checkpoint() is None and len(_train_rows(out)) == 2
    capfd.readouterr()
    train(_cfg(inputs, out, max_steps=2), progress=False)  # a plain rerun is not blocked
    err = capfd.readouterr().err
    assert "removed checkpoint-2: an incomplete checkpoint" in err
    assert "stopped before its first complete checkpoint" in err and "starting it over" in err
    assert [r["step"] for r in _train_rows(out)] == [1, 2]
    assert run.read_info()["config"]["max_steps"] == 2


def test_resume_alone_needs_a_recorded_run(inputs, tmp_path):
    (tmp_path / "run").mkdir()
    r = CliRunner().invoke(app, ["train", "--output-dir", str(tmp_path / "run"), "--resume"])
    assert r.exit_code == 2 and "nothing to resume in" in r.output and "no run.json" in r.output
    assert list((tmp_path / "run").iterdir()) == []  # no defaults trained, nothing written
    r = CliRunner().invoke(app, ["train", *_flags(inputs, tmp_path / "run"), "--resume"])
    assert r.exit_code == 0 and "no run to resume in" in r.output  # start or continue
    assert RunFolder(tmp_path / "run").read_info()["global_step"] == 2
