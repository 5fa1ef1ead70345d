"""Resume draws the same noise: a run stopped after a checkpoint and resumed trains
exactly like an uninterrupted one (SymNoise, tiny Llama, CPU)."""

from __future__ import annotations

import pytest
import torch
from conftest import make_model

from symnoise import NoiseConfig, NoisyTrainer
from symnoise.trainer import NOISE_RNG_FILE

V = 64
STEPS, SAVE_AT = 4, 2


class _Rows(torch.utils.data.Dataset):
    def __len__(self):
        return 4 * STEPS

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        ids = torch.randint(3, V, (10,), generator=g)
        labels = ids.clone()
        labels[:3] = -100
        return {"input_ids": ids, "attention_mask": torch.ones(10, dtype=torch.long),
                "labels": labels}


def _trainer(out_dir, mode="concat", stop_at=None):
    from transformers import TrainerCallback, TrainingArguments

    class StopAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if stop_at is not None and state.global_step >= stop_at:
                control.should_training_stop = True

    args = TrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=4, max_steps=STEPS,
        learning_rate=1e-2, save_strategy="steps", save_steps=SAVE_AT, report_to=[], seed=0,
        use_cpu=True, dataloader_num_workers=0, logging_steps=1,
    )
    return NoisyTrainer(model=make_model(V, seed=2), args=args, train_dataset=_Rows(),
                        noise_config=NoiseConfig("symnoise", 5.0, symmetric_mode=mode),
                        callbacks=[StopAt()])


@pytest.mark.parametrize("mode", ["concat", "sequential"])
def test_resumed_run_ends_with_the_same_weights(tmp_path, mode):
    full = _trainer(tmp_path / "full", mode)
    full.train()
    stopped = _trainer(tmp_path / "stopped", mode, stop_at=SAVE_AT)
    stopped.train()
    checkpoint = tmp_path / "stopped" / f"checkpoint-{SAVE_AT}"
    assert (checkpoint / NOISE_RNG_FILE).is_file()
    assert stopped.state.global_step == SAVE_AT
    resumed = _trainer(tmp_path / "stopped", mode)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == STEPS
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # and the noise mattered: a resume that restarts the noise stream ends elsewhere
    (checkpoint / NOISE_RNG_FILE).unlink()
    again = _trainer(tmp_path / "stopped", mode)
    again.train(resume_from_checkpoint=str(checkpoint))
    c = again.model.state_dict()
    assert any(not torch.equal(a[k], c[k]) for k in a)
