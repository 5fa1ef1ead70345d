"""Launched by tests/test_distributed.py under torchrun (2 CPU processes, gloo).

Trains a tiny model with NoisyTrainer for a few steps and records, per rank, the noise
the embedding hook added, so the test can check the ranks drew different noise.
"""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from conftest import make_model  # noqa: E402

from symnoise import NoiseConfig, NoisyTrainer  # noqa: E402
from symnoise.integration import get_embedding_module  # noqa: E402


class Rows(torch.utils.data.Dataset):
    def __len__(self):
        return 32

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        ids = torch.randint(3, 64, (12,), generator=g)
        return {"input_ids": ids, "attention_mask": torch.ones(12, dtype=torch.long), "labels": ids.clone()}


def main(out_dir: str, mode: str, backend: str = "ddp") -> None:
    from transformers import TrainingArguments

    fsdp = backend.startswith("fsdp")  # GPUs only: "fsdp1" / "fsdp2" through the Trainer

    model = make_model(64, seed=0)
    emb = get_embedding_module(model)
    drawn, ids = [], []
    # the first decoder layer sees the noised embeddings; compare with the clean lookup
    model.register_forward_pre_hook(lambda m, a, k: ids.append(k["input_ids"]), with_kwargs=True)

    def record(module, args, kwargs):
        if module.training:
            hidden = args[0] if args else kwargs["hidden_states"]
            clean = torch.nn.functional.embedding(ids[-1], emb.weight)
            drawn.append((hidden.detach() - clean.detach())[0].flatten()[:64].tolist())

    if not fsdp:  # under FSDP the embedding weight is sharded outside its own forward
        model.model.layers[0].register_forward_pre_hook(record, with_kwargs=True)
    args = TrainingArguments(
        output_dir=os.path.join(out_dir, "ckpt"), per_device_train_batch_size=4, max_steps=3,
        learning_rate=1e-3, report_to=[], save_strategy="no", use_cpu=not fsdp, seed=0,
        logging_steps=1, ddp_backend="nccl" if fsdp else "gloo", dataloader_num_workers=0,
        **({"fsdp": "full_shard", "fsdp_config": {"version": int(backend[-1])}} if fsdp else {}),
    )
    trainer = NoisyTrainer(model=model, args=args, train_dataset=Rows(),
                           noise_config=NoiseConfig("symnoise", 5.0, symmetric_mode=mode, seed=1))
    result = trainer.train()
    rank = int(os.environ["RANK"])
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    if fsdp:  # parameters are sharded (DTensors / flat shards): check the loss instead
        grad_ok = bool(torch.isfinite(torch.tensor(result.training_loss)))
    else:
        grad_ok = all(torch.isfinite(p).all().item() for p in model.parameters())
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
        json.dump({"rank": rank, "world": world, "steps": result.global_step,
                   "loss": result.training_loss, "noise": drawn, "finite": grad_ok,
                   "param0": [] if fsdp else next(model.parameters()).flatten()[:16].tolist()},
                  fh)
    # tear the process group down on every rank before exit: left to interpreter
    # shutdown, gloo's threads can abort the process ("terminate called without an
    # active exception") after the work is done
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "concat",
         sys.argv[3] if len(sys.argv) > 3 else "ddp")
