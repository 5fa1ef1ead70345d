"""One training run: model + data + noise -> a run folder (layout: :mod:`symnoise.run`).

The folder holds the fine-tuned model and tokenizer in plain Hugging Face format, the run
record (config, versions, data counts, timings, tokens/s, measured noise ratio), the metrics
(noisy training loss, clean held-out loss) and the checkpoints for ``--resume``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .config import TrainConfig
from .data.run_data import RunData, load_run_data
from .data.spec import parse_data_spec
from .models import apply_lora, load_model_and_tokenizer
from .run import RunFolder


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("symnoise", "torch", "transformers", "peft", "accelerate", "trl", "datasets"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[name] = md.version(name)
    return out


@dataclasses.dataclass(eq=False)
class TokenCountingCollator:
    """Wraps a collator and counts the real tokens (attention mask) it hands out; a packed
    batch (no attention mask) counts all its tokens, and ``pad_tokens`` counts padding."""

    inner: Any
    tokens: int = 0
    pad_tokens: int = 0

    def __call__(self, features):
        batch = self.inner(features)
        mask = batch.get("attention_mask")
        real = int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())
        self.tokens += real
        self.pad_tokens += int(batch["input_ids"].numel()) - real
        return batch


def make_collator(tokenizer, *, packing: bool):
    """The batch collator: padded rows, or (``packing``) transformers'
    ``DataCollatorWithFlattening``: one padding-free row per batch, ``position_ids``
    restarting at each example, so attention never crosses examples."""
    if packing:
        from transformers import DataCollatorWithFlattening

        return DataCollatorWithFlattening(return_position_ids=True)
    from .data import PaddingCollator

    return PaddingCollator(tokenizer.pad_token_id)


# -- callbacks ---------------------------------------------------------------------------
_METRIC_NAMES = {"loss": "train_loss",  # with noise, as trained
                 "train_loss": "mean_train_loss",  # the end-of-training average
                 "eval_loss": "clean_eval_loss"}  # noise off


def _callbacks(run: RunFolder, counter: TokenCountingCollator, resume: bool,
               progress: bool = True):
    from transformers import ProgressCallback, TrainerCallback

    class MetricsWriter(TrainerCallback):
        """Appends every log (training loss, clean eval loss) to the run's metrics."""

        def __init__(self):
            if not resume:
                run.clear_metrics()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                run.append_metrics({"step": state.global_step, "epoch": state.epoch,
                                    **{_METRIC_NAMES.get(k, k): v for k, v in logs.items()},
                                    "tokens_seen": counter.tokens})

    class Progress(ProgressCallback):
        """transformers' progress bar with the loss and tokens/s; a line per clean loss."""

        def on_train_begin(self, args, state, control, **kwargs):
            super().on_train_begin(args, state, control, **kwargs)
            self.t0, self.tok0, self.post = time.perf_counter(), counter.tokens, {}
            if self.training_bar is not None:  # a resumed run's bar starts at its step
                self.training_bar.initial = self.training_bar.n = state.global_step
                self.current_step = state.global_step

        def on_step_end(self, args, state, control, **kwargs):
            super().on_step_end(args, state, control, **kwargs)
            if self.training_bar is not None:
                rate = (counter.tokens - self.tok0) / max(time.perf_counter() - self.t0, 1e-9)
                self.training_bar.set_postfix({**self.post, "tok/s": f"{rate:.0f}"},
                                              refresh=False)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" in logs:
                self.post["loss"] = f"{logs['loss']:.4f}"
            if self.training_bar is not None and "eval_loss" in logs:
                self.training_bar.write(f"step {state.global_step}: clean held-out loss "
                                        f"{logs['eval_loss']:.4f}", file=sys.stderr)

    return [MetricsWriter(), Progress()] if progress else [MetricsWriter()]


# -- model and trainer ---------------------------------------------------------------------
def load_model(cfg: TrainConfig):
    """``(model, tokenizer, source, pad_choice)`` ready to train, LoRA applied when asked.

    The KV cache is turned off for training (:func:`train` turns it back on to save): besides
    being useless there, a cache makes transformers ignore packed ``position_ids`` when it
    builds the attention mask, so packed examples would attend to each other.
    """
    model, tokenizer, source, pad_choice = load_model_and_tokenizer(cfg.model, dtype=cfg.dtype)
    model.config.use_cache = False
    if cfg.lora:
        model = apply_lora(model, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                           target_modules=cfg.lora_target_modules)
    return model, tokenizer, source, pad_choice


def training_arguments(cfg: TrainConfig, run: RunFolder, n_train: int, has_eval: bool):
    """transformers ``TrainingArguments`` for the run (checkpoints in the run folder)."""
    from transformers import TrainingArguments

    world = int(os.environ.get("WORLD_SIZE", "1"))
    steps_per_epoch = max(1, math.ceil(n_train / (cfg.batch_size * cfg.grad_accum * world)))
    total_steps = cfg.max_steps if cfg.max_steps > 0 else math.ceil(steps_per_epoch * cfg.epochs)
    names = {f.name for f in dataclasses.fields(TrainingArguments)}  # the v5 name, else v4's
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in names \
        else "gradient_checkpointing"
    return TrainingArguments(
        output_dir=str(run.checkpoints_dir), num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps, learning_rate=cfg.lr, weight_decay=cfg.weight_decay,
        warmup_steps=max(0, math.ceil(cfg.warmup_ratio * total_steps)),
        lr_scheduler_type=cfg.lr_scheduler, per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=max(cfg.batch_size, 8),
        gradient_accumulation_steps=cfg.grad_accum, logging_steps=cfg.logging_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=cfg.eval_steps or max(1, math.ceil(total_steps / 2)),
        save_strategy="steps" if cfg.save_steps > 0 else "no",  # 0: no checkpoints
        save_steps=max(1, cfg.save_steps), save_total_limit=cfg.save_total_limit,
        seed=cfg.seed, data_seed=cfg.seed, bf16=cfg.bf16, fp16=cfg.fp16,
        dataloader_pin_memory=torch.cuda.is_available(), **{checkpointing: cfg.gradient_checkpointing},
        report_to=[], remove_unused_columns=False, dataloader_num_workers=0,
        disable_tqdm=True,
        prediction_loss_only=True,  # clean loss only; never gather vocab-sized logits
        save_only_model=False,  # optimizer, scheduler and RNG states: --resume is exact
    )


def build_trainer(cfg: TrainConfig, run: RunFolder, model, tokenizer, data: RunData,
                  *, resume: bool, progress: bool = True):
    """A NoisyTrainer with our callbacks; returns ``(trainer, token counter)``."""
    from transformers import PrinterCallback

    from .trainer import NoisyTrainer

    counter = TokenCountingCollator(make_collator(tokenizer, packing=cfg.packing))
    trainer = NoisyTrainer(
        model=model, args=training_arguments(cfg, run, len(data.train), bool(data.eval)),
        train_dataset=data.train, eval_dataset=data.eval or None, data_collator=counter,
        processing_class=tokenizer, noise_config=cfg.noise_config(),
        callbacks=_callbacks(run, counter, resume=resume, progress=progress),
    )
    trainer.remove_callback(PrinterCallback)  # (disable_tqdm) our Progress prints instead
    return trainer, counter


# -- run ---------------------------------------------------------------------------------
def _start_info(cfg: TrainConfig, source, pad_choice: str, data: RunData) -> dict[str, Any]:
    return {
        "status": "running",
        "config": cfg.to_dict(),
        "noise": cfg.noise_config().to_dict(),
        "model_source": {"spec": source.spec, "kind": source.kind, "path": source.describe()},
        "template": data.prepared.template,
        "format": data.prepared.format,
        "pad_token": pad_choice,
        "versions": library_versions(),
        "data": data.summary(),
        "device": f"cuda: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available()
        else f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
    }


def open_run_folder(cfg: TrainConfig) -> tuple[RunFolder, str | None]:
    """The run folder (created) and the checkpoint to resume from (``--resume``)."""
    run = RunFolder(Path(cfg.output_dir).expanduser().resolve())
    last = run.last_checkpoint()
    if last is not None and not cfg.resume:
        raise FileExistsError(
            f"{run.path} already holds checkpoints of an earlier run; pass --resume to "
            "continue it or choose another --output-dir"
        )
    run.path.mkdir(parents=True, exist_ok=True)
    return run, (str(last) if cfg.resume and last is not None else None)


def train(config: TrainConfig | dict[str, Any] | None = None, *, progress: bool = True,
          **overrides: Any) -> Path:
    """Fine-tune with noisy embeddings; returns the run folder.

    ``config`` may be a :class:`TrainConfig`, a dict of its fields, or omitted (defaults);
    keyword arguments override fields (flat noise keys such as ``method=`` included).
    ``progress``: the progress bar (loss, tokens/s, ETA) and held-out loss lines on stderr.
    """
    from transformers import set_seed

    if isinstance(config, TrainConfig):
        cfg = dataclasses.replace(config, **overrides) if overrides else config
    else:
        cfg = TrainConfig(**{**(config or {}), **overrides})
    for spec in filter(None, (cfg.data, cfg.eval_data)):
        parse_data_spec(spec)  # a bad data spec fails before a model is loaded or a folder made
    run, resume_from = open_run_folder(cfg)
    timings: dict[str, float] = {}
    t_start = t0 = time.perf_counter()
    set_seed(cfg.seed)
    model, tokenizer, source, pad_choice = load_model(cfg)
    timings["load_model"], t0 = time.perf_counter() - t0, time.perf_counter()
    data = load_run_data(cfg, tokenizer)
    if not data.train:
        raise ValueError(f"no training examples left from {cfg.data!r}: {data.prepared.summary()}")
    timings["data"] = time.perf_counter() - t0
    trainer, counter = build_trainer(cfg, run, model, tokenizer, data,
                                     resume=resume_from is not None, progress=progress)
    info = _start_info(cfg, source, pad_choice, data)
    if trainer.is_world_process_zero():
        run.write_info(info)

    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    timings["train"] = time.perf_counter() - t0
    final_eval: dict[str, Any] = {}
    if data.eval:  # the clean held-out loss at the last step (the scheduled one if it ran)
        evals = [r for r in trainer.state.log_history if "eval_loss" in r]
        done = evals and evals[-1].get("step") == result.global_step
        final_eval = evals[-1] if done else trainer.evaluate()
    t0 = time.perf_counter()
    model = trainer.model.merge_and_unload() if cfg.lora and cfg.merge_lora else trainer.model
    model.config.use_cache = True  # for generation from the saved model
    if trainer.is_world_process_zero():
        model.save_pretrained(run.path, safe_serialization=True)
        tokenizer.save_pretrained(run.path)
    timings["save"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    info.update({
        "status": "completed",
        "global_step": result.global_step,
        "train_loss": result.training_loss,
        "final_clean_eval_loss": final_eval.get("eval_loss"),
        "tokens_seen": counter.tokens,
        "pad_tokens": counter.pad_tokens,
        "tokens_per_second": counter.tokens / timings["train"] if timings["train"] > 0 else None,
        "noise_measured": getattr(trainer, "noise_summary", None),
        "resumed_from": resume_from,
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "lora": {"used": cfg.lora, "merged": bool(cfg.lora and cfg.merge_lora)},
    })
    if trainer.is_world_process_zero():
        run.write_info(info)
    return run.path
