"""DDP on CPU: two gloo processes under torchrun train a tiny model with SymNoise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.mark.parametrize("mode", ["concat", "sequential"])
def test_two_ranks_train_and_draw_different_noise(tmp_path, mode):
    env = dict(os.environ)
    src = str(HERE.parent / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_port=0" if False else f"--master_port={29500 + os.getpid() % 1000}",
           str(HERE / "scripts" / "ddp_worker.py"), str(tmp_path), mode]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert all(r["steps"] == 3 and r["finite"] for r in ranks)
    n0, n1 = ranks[0]["noise"], ranks[1]["noise"]
    expected_calls = 3 if mode == "concat" else 6
    assert len(n0) == len(n1) == expected_calls
    assert all(any(abs(v) > 0 for v in step) for step in n0)
    assert n0[0] != n1[0]  # different noise on the two ranks
    # DDP keeps the replicas in sync: identical parameters after training
    assert ranks[0]["param0"] == pytest.approx(ranks[1]["param0"], abs=1e-6)
