"""DDP on CPU: two gloo processes under torchrun train a tiny model with SymNoise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def _torchrun(nproc, *worker_args, timeout):
    """Run tests/scripts/ddp_worker.py on `nproc` local ranks; fail with its output."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(HERE.parent / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    # --standalone: a local rendezvous on a free port (no fixed port to collide on)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", str(HERE / "scripts" / "ddp_worker.py"),
           *map(str, worker_args)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.parametrize("mode", ["concat", "sequential"])
def test_two_ranks_train_and_draw_different_noise(tmp_path, mode):
    _torchrun(2, tmp_path, mode, timeout=300)
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


# -- FSDP / DeepSpeed guards of sequential SymNoise (fakes on CPU; real runs on a GPU) ------

CUDA = pytest.mark.skipif(
    not __import__("torch").cuda.is_available(),
    reason="needs a CUDA GPU (this path cannot run on CPU); runs wherever a GPU is present",
)


def test_first_pass_skips_gradient_sync_under_ddp_fsdp_and_fsdp2():
    from unittest import mock

    import torch
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.nn.parallel import DistributedDataParallel

    from symnoise.trainer import first_pass_no_sync

    for cls in (DistributedDataParallel, FullyShardedDataParallel):
        wrapped = mock.MagicMock(spec=cls)
        assert first_pass_no_sync(wrapped) is wrapped.no_sync.return_value

    class Fsdp2Like(torch.nn.Module):  # fully_shard's FSDPModule: no no_sync, a sync switch
        def __init__(self):
            super().__init__()
            self.calls = []

        def set_requires_gradient_sync(self, flag):
            self.calls.append(flag)

    model = Fsdp2Like()
    with first_pass_no_sync(model):
        assert model.calls == [False]
    assert model.calls == [False, True]
    plain = torch.nn.Linear(2, 2)
    with first_pass_no_sync(plain):
        pass  # a no-op on an unwrapped model


def _noisy_trainer(tmp_path, mode):
    from conftest import make_model
    from transformers import TrainingArguments

    from symnoise import NoiseConfig, NoisyTrainer

    class Rows(__import__("torch").utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            import torch

            ids = torch.randint(3, 64, (8,), generator=torch.Generator().manual_seed(i))
            return {"input_ids": ids, "attention_mask": torch.ones(8, dtype=torch.long),
                    "labels": ids.clone()}

    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2,
                             report_to=[], save_strategy="no", use_cpu=True, seed=0)
    return NoisyTrainer(model=make_model(64), args=args, train_dataset=Rows(),
                        noise_config=NoiseConfig("symnoise", 5.0, symmetric_mode=mode))


def test_sequential_step_runs_the_plus_pass_without_sync(tmp_path, monkeypatch):
    import contextlib

    import symnoise.trainer as trainer_mod

    trainer = _noisy_trainer(tmp_path, "sequential")
    events = []

    @contextlib.contextmanager
    def recorder(model):
        events.append(("enter", trainer.noise_handle._phase, type(model).__name__))
        yield
        events.append(("exit", trainer.noise_handle._phase))

    monkeypatch.setattr(trainer_mod, "first_pass_no_sync", recorder)
    trainer.train()
    assert events == [("enter", "plus", "LlamaForCausalLM"), ("exit", "plus")] * 2


def test_sequential_is_refused_under_deepspeed(tmp_path):
    from unittest import mock

    from accelerate.utils import DistributedType

    from symnoise import NoiseConfig

    trainer = _noisy_trainer(tmp_path, "sequential")
    with mock.patch.object(type(trainer.accelerator), "distributed_type",
                           new_callable=mock.PropertyMock, return_value=DistributedType.DEEPSPEED):
        with pytest.raises(ValueError, match="DeepSpeed.*symmetric_mode='concat'"):
            trainer.train()
        trainer._check_noise_backend(NoiseConfig("symnoise", 5.0))  # concat is fine there
        trainer._check_noise_backend(NoiseConfig("uniform", 5.0))
    trainer.is_deepspeed_enabled = True
    with pytest.raises(ValueError, match="two optimizer steps"):
        trainer.train()
    assert not trainer.model._forward_pre_hooks  # refused before attaching anything


@CUDA
def test_generator_follows_the_model_to_the_gpu_and_back():
    import torch
    from conftest import make_model

    from symnoise import NoiseConfig, noisy_embeddings

    model = make_model(64)
    model.train()
    ids = torch.randint(3, 64, (2, 8))
    with noisy_embeddings(model, NoiseConfig("symnoise", 5.0, symmetric_mode="sequential",
                                             seed=0)) as handle:
        assert handle.generator is None
        model.cuda()  # as FSDP / DeepSpeed do after train() has started
        with handle.phase("plus"):
            model(input_ids=ids.cuda(), use_cache=False).loss  # noqa: B018
        assert handle.generator.device.type == "cuda"
        model.cpu()
        with handle.phase("plus"):
            model(input_ids=ids, use_cache=False)
        assert handle.generator.device.type == "cpu"


@CUDA
@pytest.mark.parametrize("backend", ["fsdp1", "fsdp2"])
@pytest.mark.parametrize("mode", ["concat", "sequential"])
def test_fsdp_on_gpus_trains_with_symnoise(tmp_path, mode, backend):
    """FSDP 1 and 2 (full_shard, through the Trainer) on up to 2 GPUs: both modes train."""
    import torch

    if not torch.distributed.is_nccl_available():
        pytest.skip("needs NCCL for FSDP on GPUs")
    n = max(1, min(2, torch.cuda.device_count()))
    _torchrun(n, tmp_path, mode, backend, timeout=600)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(n)]
    assert all(r["steps"] == 3 and r["finite"] for r in ranks)
