"""One training run: model + data + noise -> a run folder.

The run folder holds the fine-tuned model and tokenizer in plain Hugging Face format at
its root (``AutoModelForCausalLM.from_pretrained(run_dir)`` works), ``run.json`` (resolved
config, versions, data counts, timings, tokens/s), ``metrics.jsonl`` (training loss per
logging step and the clean held-out loss with noise off) and ``checkpoints/`` for
``--resume``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ._io import write_json_atomic as _write_json
from .config import TrainConfig
from .models import RUN_INFO, apply_lora, load_model_and_tokenizer

logger = logging.getLogger(__name__)

METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("symnoise", "torch", "transformers", "peft", "accelerate", "trl", "datasets"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


class TokenCountingCollator:
    """Wraps a collator and counts the real tokens (attention mask) it hands out."""

    def __init__(self, inner):
        self.inner = inner
        self.tokens = 0

    def __call__(self, features):
        batch = self.inner(features)
        mask = batch.get("attention_mask")
        self.tokens += int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())
        return batch


def _callbacks(run_dir: Path, counter: TokenCountingCollator, resume: bool, noise_rows: int):
    from transformers import TrainerCallback

    class MetricsWriter(TrainerCallback):
        """Appends every log (training loss, clean eval loss) to metrics.jsonl."""

        def __init__(self):
            self.path = run_dir / METRICS
            if not resume and self.path.exists():
                self.path.unlink()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            row: dict[str, Any] = {"step": state.global_step, "epoch": state.epoch}
            for key, value in logs.items():
                if key == "loss":
                    row["train_loss"] = value  # with noise, as trained
                elif key == "train_loss":
                    row["mean_train_loss"] = value  # the end-of-training average
                elif key == "eval_loss":
                    row["clean_eval_loss"] = value  # noise off
                else:
                    row[key] = value
            row["tokens_seen"] = counter.tokens
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")

    class Progress(TrainerCallback):
        """A progress bar with loss, tokens/s and ETA."""

        def __init__(self):
            self.bar = None
            self.t0 = 0.0
            self.tok0 = 0
            self.loss = None

        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="train",
                            unit="step", dynamic_ncols=True, file=sys.stderr)
            self.t0, self.tok0 = time.perf_counter(), counter.tokens

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is None:
                return
            self.bar.update(state.global_step - self.bar.n)
            elapsed = max(time.perf_counter() - self.t0, 1e-9)
            post = {"tok/s": f"{(counter.tokens - self.tok0) / elapsed:.0f}"}
            if self.loss is not None:
                post["loss"] = f"{self.loss:.4f}"
            self.bar.set_postfix(post, refresh=False)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.loss = logs["loss"]
            if self.bar is not None and logs and "eval_loss" in logs:
                self.bar.write(f"step {state.global_step}: clean held-out loss "
                               f"{logs['eval_loss']:.4f}", file=sys.stderr)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return [MetricsWriter(), Progress()]


def _last_checkpoint(run_dir: Path) -> str | None:
    ckpt_dir = run_dir / CHECKPOINTS
    if not ckpt_dir.is_dir():
        return None
    ckpts = [p for p in ckpt_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    if not ckpts:
        return None
    return str(max(ckpts, key=lambda p: int(p.name.split("-")[-1])))


def _split_eval(prepared, cfg: TrainConfig):
    """Held-out features: from ``eval_data``, the synthetic held-out split, or a split."""
    import random

    features = prepared.features
    if cfg.eval_fraction <= 0 or len(features) < 2:
        return features, []
    n_eval = min(cfg.max_eval_examples, max(1, int(round(len(features) * cfg.eval_fraction))))
    order = list(range(len(features)))
    random.Random(cfg.seed).shuffle(order)
    held = set(order[:n_eval])
    train = [f for i, f in enumerate(features) if i not in held]
    evals = [features[i] for i in sorted(held)]
    return train, evals


def train(config: TrainConfig | dict[str, Any] | None = None, **overrides: Any) -> Path:
    """Fine-tune with noisy embeddings; returns the run folder.

    ``config`` may be a :class:`TrainConfig`, a dict of its fields, or omitted (defaults);
    keyword arguments override fields.
    """
    from transformers import (
        PrinterCallback,
        ProgressCallback,
        TrainingArguments,
        set_seed,
    )

    from .data import PaddingCollator, prepare_dataset
    from .integration import NoisyTrainer

    if config is None:
        config = TrainConfig(**overrides)
    elif isinstance(config, dict):
        config = TrainConfig(**{**config, **overrides})
    elif overrides:
        config = TrainConfig(**{**config.to_dict(), **overrides})
    cfg = config
    noise = cfg.noise()
    run_dir = Path(cfg.output_dir).expanduser().resolve()
    resume_from = _last_checkpoint(run_dir) if cfg.resume else None
    if not cfg.resume and (run_dir / CHECKPOINTS).is_dir() and _last_checkpoint(run_dir):
        raise FileExistsError(
            f"{run_dir} already holds checkpoints of an earlier run; pass --resume to continue "
            "it or choose another --output-dir"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    set_seed(cfg.seed)

    # -- model ---------------------------------------------------------------------------
    t0 = time.perf_counter()
    model, tokenizer, source, pad_choice = load_model_and_tokenizer(cfg.model, dtype=cfg.dtype)
    if cfg.lora:
        model = apply_lora(model, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                           target_modules=cfg.lora_target_modules)
    if cfg.gradient_checkpointing:
        model.config.use_cache = False
    t_model = time.perf_counter() - t0

    # -- data ----------------------------------------------------------------------------
    t0 = time.perf_counter()
    data_source: Any = cfg.data
    if isinstance(data_source, str) and data_source.startswith("synthetic"):
        data_source = _synthetic_source(cfg, "train")
    prepared = prepare_dataset(
        data_source, tokenizer, fmt=cfg.format, template=cfg.template, max_length=cfg.max_length,
        skip_bad_rows=cfg.skip_bad_rows, max_examples=cfg.max_train_examples,
    )
    template_name = prepared.template
    if cfg.eval_data:
        eval_prepared = prepare_dataset(
            _synthetic_source(cfg, "heldout") if cfg.eval_data.startswith("synthetic")
            else cfg.eval_data,
            tokenizer, fmt=cfg.format, template=template_name, max_length=cfg.max_length,
            skip_bad_rows=cfg.skip_bad_rows, max_examples=cfg.max_eval_examples,
        )
        train_features, eval_features = prepared.features, eval_prepared.features
        eval_summary = eval_prepared.summary()
    elif isinstance(cfg.data, str) and cfg.data.startswith("synthetic"):
        eval_prepared = prepare_dataset(
            _synthetic_source(cfg, "heldout"), tokenizer, fmt=cfg.format, template=template_name,
            max_length=cfg.max_length, max_examples=cfg.max_eval_examples,
        )
        train_features, eval_features = prepared.features, eval_prepared.features
        eval_summary = eval_prepared.summary()
    else:
        train_features, eval_features = _split_eval(prepared, cfg)
        eval_summary = {"source": "split of the training data", "examples": len(eval_features)}
    if not train_features:
        raise ValueError(f"no training examples left from {cfg.data!r}: {prepared.summary()}")
    t_data = time.perf_counter() - t0

    # -- trainer -------------------------------------------------------------------------
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_step = cfg.batch_size * cfg.grad_accum * world
    steps_per_epoch = max(1, math.ceil(len(train_features) / per_step))
    total_steps = cfg.max_steps if cfg.max_steps > 0 else math.ceil(steps_per_epoch * cfg.epochs)
    eval_steps = cfg.eval_steps or max(1, math.ceil(total_steps / 2))
    collator = TokenCountingCollator(PaddingCollator(tokenizer.pad_token_id))
    args = TrainingArguments(
        output_dir=str(run_dir / CHECKPOINTS),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=max(0, math.ceil(cfg.warmup_ratio * total_steps)),
        lr_scheduler_type=cfg.lr_scheduler,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=max(cfg.batch_size, 8),
        gradient_accumulation_steps=cfg.grad_accum,
        logging_steps=cfg.logging_steps,
        eval_strategy="steps" if eval_features else "no",
        eval_steps=eval_steps,
        save_strategy="steps" if cfg.save_steps > 0 else "no",  # 0: no checkpoints
        save_steps=max(1, cfg.save_steps),
        save_total_limit=cfg.save_total_limit,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=cfg.bf16,
        fp16=cfg.fp16,
        dataloader_pin_memory=torch.cuda.is_available(),
        **_checkpointing_arg(cfg.gradient_checkpointing),
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
        prediction_loss_only=True,  # clean loss only; never gather vocab-sized logits
        save_only_model=False,
    )
    trainer = NoisyTrainer(
        model=model, args=args, train_dataset=train_features,
        eval_dataset=eval_features or None, data_collator=collator,
        processing_class=tokenizer, noise_config=noise,
    )
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    for cb in _callbacks(run_dir, collator, resume=bool(resume_from), noise_rows=2):
        trainer.add_callback(cb)

    info: dict[str, Any] = {
        "status": "running",
        "config": cfg.to_dict(),
        "noise": noise.to_dict(),
        "model_source": {"spec": source.spec, "kind": source.kind, "path": source.describe()},
        "template": template_name,
        "format": prepared.format,
        "pad_token": pad_choice,
        "versions": library_versions(),
        "data": {"train": prepared.summary(), "eval": eval_summary,
                 "train_examples_used": len(train_features),
                 "eval_examples": len(eval_features)},
        "device": _device_string(),
        "world_size": world,
    }
    if trainer.is_world_process_zero():
        _write_json(run_dir / RUN_INFO, info)

    # -- train ---------------------------------------------------------------------------
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    t_train = time.perf_counter() - t0
    final_eval: dict[str, Any] = {}
    if eval_features:
        last = [r for r in trainer.state.log_history if "eval_loss" in r]
        if last and last[-1].get("step") == result.global_step:
            final_eval = last[-1]  # the scheduled evaluation already ran at the last step
        else:
            final_eval = trainer.evaluate()

    # -- save ----------------------------------------------------------------------------
    t0 = time.perf_counter()
    to_save = trainer.model
    if cfg.lora and cfg.merge_lora:
        to_save = to_save.merge_and_unload()
    if trainer.is_world_process_zero():
        to_save.save_pretrained(run_dir, safe_serialization=True)
        tokenizer.save_pretrained(run_dir)
    t_save = time.perf_counter() - t0

    tokens = collator.tokens
    info.update({
        "status": "completed",
        "global_step": result.global_step,
        "train_loss": result.training_loss,
        "final_clean_eval_loss": final_eval.get("eval_loss"),
        "tokens_seen": tokens,
        "tokens_per_second": tokens / t_train if t_train > 0 else None,
        "resumed_from": resume_from,
        "timings_s": {"load_model": round(t_model, 2), "data": round(t_data, 2),
                      "train": round(t_train, 2), "save": round(t_save, 2),
                      "total": round(time.perf_counter() - t_start, 2)},
        "lora": {"used": cfg.lora, "merged": bool(cfg.lora and cfg.merge_lora)},
    })
    if trainer.is_world_process_zero():
        _write_json(run_dir / RUN_INFO, info)
    return run_dir


def _checkpointing_arg(enabled: bool) -> dict[str, bool]:
    """transformers renamed gradient_checkpointing to activation_checkpointing (v5)."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    key = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return {key: enabled}


def _synthetic_source(cfg: TrainConfig, split: str) -> list[dict[str, Any]]:
    from .data.synthetic import load_synthetic

    text = cfg.data if split == "train" else (cfg.eval_data or "synthetic:heldout")
    if ":" in text:
        split = text.split(":", 1)[1] or split
    n = cfg.synthetic_train_size if split == "train" else cfg.synthetic_heldout_size
    return load_synthetic(split, seed=cfg.synthetic_seed, n=n)


def _device_string() -> str:
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
