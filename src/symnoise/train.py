"""One training run: model + data + noise -> a run folder (layout: :mod:`symnoise.run`).

The folder holds the fine-tuned model and tokenizer in plain Hugging Face format, the run
record (config, versions, data counts, timings, tokens/s, measured noise ratio), the metrics
(noisy training loss, clean held-out loss) and the checkpoints for ``--resume``.

Never losing a run: a checkpoint counts once it is marked complete (after the Trainer wrote
all of it); ``resume`` continues from the newest complete one with the recorded settings
(:func:`open_run_folder`, :func:`resolve_config`), the run's totals carried in each
checkpoint's record (:class:`RunTotals`); the folder is locked while training.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import platform
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ._io import disk_failure
from .config import BOOKKEEPING_FIELDS, TrainConfig, merged, setting_differences
from .data.run_data import RunData, load_preference_run_data, load_run_data
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
class RunTotals:
    """What a run has trained on so far, across resumes; every checkpoint's record holds it.

    ``tokens`` / ``pad_tokens``: real and padding tokens of the batches trained on (counted
    in the training step, so held-out batches and a dataloader's read-ahead never count; a
    packed batch, without an attention mask, counts all its tokens). ``seconds``: training
    time before this session; ``noise``: the noise measured before it.
    """

    tokens: int = 0
    pad_tokens: int = 0
    seconds: float = 0.0
    noise: dict[str, Any] | None = None
    session_start: float | None = None
    trainer: Any = None

    def count(self, batch: Any) -> None:
        mask = batch.get("attention_mask")
        real = int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())
        self.tokens += real
        self.pad_tokens += int(batch["input_ids"].numel()) - real

    def train_seconds(self) -> float:
        start = self.session_start
        return self.seconds + (time.perf_counter() - start if start is not None else 0.0)

    def noise_measured(self) -> dict[str, Any] | None:
        """The measured noise over the whole run (this session merged with earlier ones)."""
        now = getattr(self.trainer, "noise_summary", None)
        handle = getattr(self.trainer, "noise_handle", None)
        now = handle.summary() if handle is not None else now
        return _merge_noise(self.noise, now)

    def record(self, state: Any) -> dict[str, Any]:
        """The checkpoint record: the step, the schedule's length and these totals."""
        return {"global_step": state.global_step, "max_steps": state.max_steps,
                "tokens_seen": self.tokens, "pad_tokens": self.pad_tokens,
                "train_seconds": self.train_seconds(), "noise_measured": self.noise_measured()}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RunTotals:
        return cls(tokens=int(record.get("tokens_seen", 0)),
                   pad_tokens=int(record.get("pad_tokens", 0)),
                   seconds=float(record.get("train_seconds", 0.0)),
                   noise=record.get("noise_measured"))


def _merge_noise(before: dict[str, Any] | None, now: dict[str, Any] | None
                 ) -> dict[str, Any] | None:
    """Two noise summaries as one: each ratio (all noised tokens; text and vision tokens)
    averaged over both sessions' forwards."""
    if not before or not now:
        return now or before
    n1, n2 = before.get("n_forwards") or 0, now.get("n_forwards") or 0
    out = {**now, "n_forwards": n1 + n2}
    for key in [k for k in now if k.endswith("ratio_mean")]:
        m1, m2 = before.get(key), now[key]
        out[key] = m2 if m1 is None else m1 if m2 is None else (m1 * n1 + m2 * n2) / max(n1 + n2, 1)
    return out


def mean_train_loss(rows: list[dict[str, Any]]) -> float | None:
    """The mean noisy training loss per step over the whole run, from its metrics rows (each
    logged loss is the mean since the previous log; training logs at every checkpoint and at
    the last step, so the rows cover every step, resumed runs included)."""
    total, last = 0.0, 0
    for row in sorted((r for r in rows if "train_loss" in r), key=lambda r: r["step"]):
        total += row["train_loss"] * (row["step"] - last)
        last = row["step"]
    return total / last if last else None


def make_collator(tokenizer, *, packing: bool):
    """The batch collator: padded rows, or (``packing``) transformers'
    ``DataCollatorWithFlattening``: one padding-free row per batch, ``position_ids``
    restarting at each example, so attention never crosses examples. A vision-language
    model's processor: padded rows and their pixel inputs."""
    if hasattr(tokenizer, "image_processor"):
        if packing:
            raise ValueError("packing is not supported for vision-language models")
        from .data.multimodal import MultimodalCollator

        return MultimodalCollator(tokenizer.tokenizer.pad_token_id)
    if packing:
        from transformers import DataCollatorWithFlattening

        return DataCollatorWithFlattening(return_position_ids=True)
    from .data import PaddingCollator

    return PaddingCollator(tokenizer.pad_token_id)


# -- callbacks ---------------------------------------------------------------------------
_METRIC_NAMES = {"loss": "train_loss",  # with noise, as trained
                 "train_loss": "mean_train_loss",  # the end-of-training average
                 "eval_loss": "clean_eval_loss"}  # noise off


def _callbacks(run: RunFolder, totals: RunTotals, save_total_limit: int | None = None,
               progress: bool = True):
    from transformers import ProgressCallback, TrainerCallback

    class MetricsWriter(TrainerCallback):
        """Appends every log (training loss, clean eval loss) to the run's metrics; the
        end-of-training mean loss is the whole run's (:func:`mean_train_loss`)."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                if "train_loss" in logs:
                    logs = {**logs, "train_loss": mean_train_loss(run.read_metrics())}
                run.append_metrics({"step": state.global_step, "epoch": state.epoch,
                                    **{_METRIC_NAMES.get(k, k): v for k, v in logs.items()},
                                    "tokens_seen": totals.tokens})

    class CheckpointMarker(TrainerCallback):
        """Logs at every checkpoint and at the last step (so the logged losses cover every
        step), marks each checkpoint complete once the Trainer has written all of it (with
        the run's totals), and only then deletes the old ones (``save_total_limit``)."""

        def on_step_end(self, args, state, control, **kwargs):
            if control.should_save or control.should_training_stop:
                control.should_log = True

        def on_save(self, args, state, control, **kwargs):
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.barrier()  # every rank's files are written
            if state.is_world_process_zero:
                folder = run.checkpoints_dir / f"checkpoint-{state.global_step}"
                run.mark_checkpoint_complete(folder, totals.record(state))
                run.prune_checkpoints(save_total_limit)

    class Progress(ProgressCallback):
        """transformers' progress bar with the loss and tokens/s; a line per clean loss."""

        def on_train_begin(self, args, state, control, **kwargs):
            super().on_train_begin(args, state, control, **kwargs)
            self.t0, self.tok0, self.post = time.perf_counter(), totals.tokens, {}
            if self.training_bar is not None:  # a resumed run's bar starts at its step
                self.training_bar.initial = self.training_bar.n = state.global_step
                self.current_step = state.global_step

        def on_step_end(self, args, state, control, **kwargs):
            super().on_step_end(args, state, control, **kwargs)
            if self.training_bar is not None:
                rate = (totals.tokens - self.tok0) / max(time.perf_counter() - self.t0, 1e-9)
                self.training_bar.set_postfix({**self.post, "tok/s": f"{rate:.0f}"},
                                              refresh=False)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" in logs:
                self.post["loss"] = f"{logs['loss']:.4f}"
            if self.training_bar is not None and "eval_loss" in logs:
                self.training_bar.write(f"step {state.global_step}: clean held-out loss "
                                        f"{logs['eval_loss']:.4f}", file=sys.stderr)

    return [MetricsWriter(), CheckpointMarker(), *([Progress()] if progress else [])]


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
    """transformers ``TrainingArguments`` for the run (checkpoints in the run folder); TRL's
    ``DPOConfig`` / ``KTOConfig`` with ``beta`` and ``max_length`` for a preference stage."""
    from transformers import TrainingArguments
    from trl import DPOConfig, KTOConfig

    world = int(os.environ.get("WORLD_SIZE", "1"))
    steps_per_epoch = max(1, math.ceil(n_train / (cfg.batch_size * cfg.grad_accum * world)))
    total_steps = cfg.max_steps if cfg.max_steps > 0 else math.ceil(steps_per_epoch * cfg.epochs)
    names = {f.name for f in dataclasses.fields(TrainingArguments)}  # the v5 name, else v4's
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in names \
        else "gradient_checkpointing"
    cls, stage = {"sft": (TrainingArguments, {}),
                  "dpo": (DPOConfig, {"beta": cfg.beta, "max_length": cfg.max_length}),
                  # KTO's KL baseline pairs each completion with its neighbour's prompt
                  "kto": (KTOConfig, {"beta": cfg.beta, "max_length": cfg.max_length,
                                      "train_sampling_strategy": "sequential"})}[cfg.stage]
    return cls(
        **stage, output_dir=str(run.checkpoints_dir), num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps, learning_rate=cfg.lr, weight_decay=cfg.weight_decay,
        warmup_steps=max(0, math.ceil(cfg.warmup_ratio * total_steps)),
        lr_scheduler_type=cfg.lr_scheduler, per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=max(cfg.batch_size, 8),
        gradient_accumulation_steps=cfg.grad_accum, logging_steps=cfg.logging_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=cfg.eval_steps or max(1, math.ceil(total_steps / 2)),
        save_strategy="steps" if cfg.save_steps > 0 else "no",  # 0: no checkpoints
        save_steps=max(1, cfg.save_steps),
        save_total_limit=None,  # our CheckpointMarker deletes old ones, once the new one is complete
        seed=cfg.seed, data_seed=cfg.seed, bf16=cfg.bf16, fp16=cfg.fp16,
        dataloader_pin_memory=torch.cuda.is_available(), **{checkpointing: cfg.gradient_checkpointing},
        report_to=[], remove_unused_columns=False, dataloader_num_workers=0,
        disable_tqdm=True,
        prediction_loss_only=True,  # clean loss only; never gather vocab-sized logits
        save_only_model=False,  # optimizer, scheduler and RNG states: --resume is exact
    )


def build_trainer(cfg: TrainConfig, run: RunFolder, model, tokenizer, data: RunData,
                  *, totals: RunTotals | None = None, progress: bool = True):
    """A NoisyTrainer (a preference stage: NoisyDPOTrainer / NoisyKTOTrainer on TRL's rows,
    the reference a second copy of the model, or the disabled adapter under LoRA) with our
    callbacks, counting the tokens it trains on into ``totals``; returns ``(trainer, totals)``."""
    from transformers import PrinterCallback

    from .trainer import NoisyDPOTrainer, NoisyKTOTrainer, NoisyTrainer

    totals = totals or RunTotals()
    base = {"sft": NoisyTrainer, "dpo": NoisyDPOTrainer, "kto": NoisyKTOTrainer}[cfg.stage]

    class RunTrainer(base):
        def training_step(self, model, inputs, num_items_in_batch=None):
            totals.count(inputs)
            return super().training_step(model, inputs, num_items_in_batch)

    if cfg.stage == "sft":
        stage = {"train_dataset": data.train, "eval_dataset": data.eval or None,
                 "data_collator": make_collator(tokenizer, packing=cfg.packing)}
    else:
        from datasets import Dataset

        ref = None if cfg.lora else load_model(cfg.model_copy(update={"lora": False}))[0]
        stage = {"train_dataset": Dataset.from_list(data.train), "ref_model": ref,
                 "eval_dataset": Dataset.from_list(data.eval) if data.eval else None}
    trainer = RunTrainer(
        model=model, args=training_arguments(cfg, run, len(data.train), bool(data.eval)),
        processing_class=tokenizer, noise_config=cfg.noise,
        callbacks=_callbacks(run, totals, cfg.save_total_limit, progress=progress), **stage)
    trainer.remove_callback(PrinterCallback)  # (disable_tqdm) our Progress prints instead
    totals.trainer = trainer
    return trainer, totals


# -- the run folder: what to do in it ---------------------------------------------------
@dataclasses.dataclass
class Start:
    """Where a training run starts: anew (``checkpoint`` None), from a complete checkpoint
    (its ``record``), only the final save left (``finished``: the checkpoint is at the last
    step), or nothing at all (``done``: the run is complete)."""

    checkpoint: Path | None = None
    record: dict[str, Any] = dataclasses.field(default_factory=dict)
    finished: bool = False
    done: bool = False


def _say(message: str) -> None:
    print(f"symnoise train: {message}", file=sys.stderr, flush=True)


def _drop_partial_checkpoints(run: RunFolder) -> None:
    for path in run.remove_checkpoints(run.partial_checkpoints()):
        _say(f"removed {path.name}: an incomplete checkpoint (its save was interrupted)")


def open_run_folder(run: RunFolder, cfg: TrainConfig) -> Start:
    """Decide where the run starts (the caller holds the folder's lock).

    Without ``resume``, a folder holding a run that can be continued (completed, or with a
    complete checkpoint) is refused; one whose run stopped before its first complete
    checkpoint is started over (said on stderr). With ``resume``: a completed run is left
    as is (``done``), else training continues from the newest complete checkpoint, else it
    starts over. Incomplete checkpoints are removed, and metrics rows logged after the
    checkpoint (the resumed run logs those steps again) are dropped; both said on stderr.
    """
    info = run.read_info(required=False)
    last, status = run.last_checkpoint(), info.get("status")
    completed = status == "completed" and run.has_model()
    if not cfg.resume and (completed or last is not None or status == "completed"):
        what = "a completed run" if status == "completed" else f"checkpoints ({last.name})"
        raise FileExistsError(f"{run.path} already holds {what}; pass --resume to continue "
                              "it or choose another --output-dir")
    if cfg.resume and completed:
        return Start(done=True)
    if cfg.resume and status == "completed" and last is None:
        raise FileNotFoundError(f"{run.path}: run.json says the run completed, but neither its "
                                "model nor a checkpoint is there; nothing to resume from")
    _drop_partial_checkpoints(run)
    if last is None:
        if cfg.resume and not info:
            _say(f"no run to resume in {run.path}: starting a new one")
        if info:
            _say(f"{run.path} holds a run that stopped before its first complete checkpoint "
                 f"(status {status!r}, {len(run.read_metrics())} metrics rows): starting it over")
        run.clear_metrics()
        return Start()
    record = run.checkpoint_record(last)
    step = int(record["global_step"])
    dropped = run.keep_metrics_until(step)
    _say(f"resuming from {last} (step {step} of {record.get('max_steps')})"
         + (f"; dropped {dropped} metrics rows logged after it" if dropped else ""))
    end = record.get("max_steps")
    return Start(last, record, finished=isinstance(end, int) and 0 < end <= step)


def resolve_config(values: Mapping[str, Any]) -> TrainConfig:
    """The run's config from the options given (a config file's and flags, nested, or the
    API's dict; absent or None: not given). With ``resume``, an option not given takes the
    value the output folder's ``run.json`` recorded (a given one that differs from the
    record is refused by :func:`train`, through :func:`check_resumed_settings`). A folder
    without ``run.json`` starts a new run of the options given; with no training setting
    given, that is an error (FileNotFoundError): nothing says what to run."""
    given = {k: v for k, v in values.items() if v is not None}
    if not given.get("resume"):
        return TrainConfig.from_sources(None, given)
    out = TrainConfig.from_sources(None, {k: given[k] for k in ("output_dir",) if k in given})
    run = RunFolder(Path(out.output_dir).expanduser().resolve())
    if not run.is_run():
        if set(given) - set(BOOKKEEPING_FIELDS):  # `train SETTINGS --resume`: start or continue
            return TrainConfig.from_sources(None, given)
        raise FileNotFoundError(f"nothing to resume in {run.path}: no run.json there (the run "
                                "never started training) and no settings given; give them to "
                                "start it")
    recorded = run.read_info(required=False).get("config") or {}
    base = {k: v for k, v in recorded.items() if k not in ("output_dir", "resume")}
    base["noise"] = {k: v for k, v in (base.get("noise") or {}).items() if k != "seed"}
    return TrainConfig.from_sources(None, merged(base, given))


def check_resumed_settings(run: RunFolder, cfg: TrainConfig) -> None:
    """ValueError naming both values when ``cfg`` trains otherwise than the run recorded."""
    recorded = run.read_info(required=False).get("config")
    if not cfg.resume or not recorded:
        return
    diffs = setting_differences(recorded, cfg.to_dict())
    if diffs:
        listed = "; ".join(f"{k} is {old!r} in the run, {new!r} given" for k, old, new in diffs)
        raise ValueError(f"--resume continues the run recorded in {run.info_file}, but {listed}; "
                         "leave those options out to continue it as recorded, or choose "
                         "another --output-dir")


# -- run ---------------------------------------------------------------------------------
def _start_info(cfg: TrainConfig, source, pad_choice: str, data: RunData) -> dict[str, Any]:
    return {
        "status": "running",
        "config": cfg.to_dict(),
        "noise": cfg.noise.to_dict(),
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


def train(config: TrainConfig | Mapping[str, Any] | None = None, *, progress: bool = True,
          **overrides: Any) -> Path:
    """Fine-tune with noisy embeddings; returns the run folder.

    ``config`` may be a :class:`TrainConfig` (every setting given), a dict of its fields or
    omitted; keyword arguments override fields (``noise={"alpha": 3}`` only the alpha).
    With ``resume``, a dict or keywords give only what they name: the rest is
    the run's recorded setting (:func:`resolve_config`); a TrainConfig must equal the
    record. ``progress``: the progress bar (loss, tokens/s, ETA) and held-out loss lines.

    The run folder is locked while training (one writer); a failure leaves no empty folder
    behind, and a failed write (full disk, read-only folder) is an OSError naming the path.
    """
    if isinstance(config, TrainConfig):
        cfg = TrainConfig.from_sources(None, merged(
            config.model_dump(exclude={"noise": {"seed"}}), overrides)) if overrides else config
    else:
        cfg = resolve_config(merged(config or {}, overrides))
    for spec in filter(None, (cfg.data, cfg.eval_data)):
        parse_data_spec(spec)  # a bad data spec fails before a model is loaded or a folder made
    run = RunFolder(Path(cfg.output_dir).expanduser().resolve())
    check_resumed_settings(run, cfg)
    created = [p for p in (run.path, *run.path.parents) if not p.exists()]  # deepest first
    try:
        run.path.mkdir(parents=True, exist_ok=True)
        with _lock(run) as note:
            if note:
                _say(note)
            start = open_run_folder(run, cfg)
            if start.done:
                _say(f"{run.path} is already complete (step {run.read_info().get('global_step')}):"
                     " nothing to do")
                return run.path
            return _train_in(run, cfg, start, progress)
    except Exception as exc:
        failure = _write_failure(exc, run)
        if failure is None:
            raise
        raise failure from exc
    finally:
        _remove_empty(created)


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty


def _lock(run: RunFolder):
    """The run folder's lock, taken by the main process only (ranks > 0 train alongside)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return contextlib.nullcontext()
    return run.lock("symnoise train")


def _write_failure(exc: Exception, run: RunFolder) -> OSError | None:
    """For a failed write (full disk, read-only folder, no permission): an OSError of one
    line naming the path and the cause, and how the run continues; else None."""
    found = disk_failure(exc)
    if found is None:
        return None
    code, path = found[0], found[1] or run.path
    last = run.last_checkpoint()
    then = (f"; once fixed, --resume continues the run from {last.name}"
            if last is not None else "")
    return OSError(code, f"{path}: {os.strerror(code)}{then}")


def _train_in(run: RunFolder, cfg: TrainConfig, start: Start, progress: bool) -> Path:
    """Load, train (or finish) and save; writes run.json at the start and at the end."""
    from transformers import set_seed

    timings: dict[str, float] = {}
    t_start = t0 = time.perf_counter()
    set_seed(cfg.seed)
    model, tokenizer, source, pad_choice = load_model(cfg)
    timings["load_model"], t0 = time.perf_counter() - t0, time.perf_counter()
    data = (load_run_data if cfg.stage == "sft" else load_preference_run_data)(cfg, tokenizer)
    if not data.train:
        raise ValueError(f"no training examples left from {cfg.data!r}: {data.prepared.summary()}")
    timings["data"] = time.perf_counter() - t0
    totals = RunTotals.from_record(start.record)
    trainer, totals = build_trainer(cfg, run, model, tokenizer, data, totals=totals,
                                    progress=progress)
    info = _start_info(cfg, source, pad_choice, data)
    if cfg.stage != "sft":  # TRL drops rows whose prompt alone fills max_length
        rows = len(data.train) * (2 if cfg.stage == "kto" else 1)  # KTO: one per completion
        dropped = info["data"]["dropped_fully_truncated"] = rows - len(trainer.train_dataset)
        if dropped:
            _say(f"{dropped} of {rows} training rows keep no completion token within "
                 f"max_length {cfg.max_length}: TRL drops them")
    info["resumed_from"] = str(start.checkpoint) if start.checkpoint else None
    zero = trainer.is_world_process_zero()
    if zero:
        run.write_info(info)
    try:
        global_step, final_eval = _run_trainer(trainer, start, totals, bool(data.eval))
    except Exception as exc:
        if zero:
            with contextlib.suppress(OSError):
                run.update_info(status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    timings["train"] = totals.train_seconds()
    t0 = time.perf_counter()
    model = trainer.model.merge_and_unload() if cfg.lora and cfg.merge_lora else trainer.model
    model.config.use_cache = True  # for generation from the saved model
    if zero:
        model.save_pretrained(run.path, safe_serialization=True)
        tokenizer.save_pretrained(run.path)
    timings["save"] = time.perf_counter() - t0
    # the whole run's: earlier sessions' training up to the resumed checkpoint included
    timings["total"] = time.perf_counter() - t_start + float(start.record.get("train_seconds", 0))
    info.update({
        "status": "completed",
        "global_step": global_step,
        "train_loss": mean_train_loss(run.read_metrics()) if zero else None,
        "final_clean_eval_loss": final_eval.get("eval_loss"),
        "tokens_seen": totals.tokens,
        "pad_tokens": totals.pad_tokens,
        "tokens_per_second": totals.tokens / timings["train"] if timings["train"] > 0 else None,
        "noise_measured": totals.noise_measured(),
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "lora": {"used": cfg.lora, "merged": bool(cfg.lora and cfg.merge_lora)},
    })
    if zero:
        run.write_info(info)
    return run.path


def _carry_token_count(trainer, checkpoint: Path | None) -> None:
    """TRL's trainers log ``num_tokens`` from a counter no checkpoint saves: a resumed run
    goes on from the count logged at its checkpoint instead of restarting at 0."""
    if checkpoint is None or not hasattr(trainer, "_total_train_tokens"):
        return
    from transformers import TrainerState
    from transformers.trainer import TRAINER_STATE_NAME

    state = TrainerState.load_from_json(str(checkpoint / TRAINER_STATE_NAME))
    logged = [r["num_tokens"] for r in state.log_history if "num_tokens" in r]
    if logged:
        trainer._total_train_tokens = int(logged[-1])


def _run_trainer(trainer, start: Start, totals: RunTotals, has_eval: bool
                 ) -> tuple[int, dict[str, Any]]:
    """Train from ``start`` (or, when its checkpoint is at the last step, only load it);
    returns the last step and the clean held-out loss there (the scheduled one if it ran)."""
    from transformers import TrainerState
    from transformers.trainer import TRAINER_STATE_NAME

    totals.session_start = time.perf_counter()
    if start.finished:  # the Trainer would train one batch more than asked
        trainer._load_from_checkpoint(str(start.checkpoint))
        trainer.state = TrainerState.load_from_json(str(start.checkpoint / TRAINER_STATE_NAME))
    else:
        _carry_token_count(trainer, start.checkpoint)
        trainer.train(resume_from_checkpoint=str(start.checkpoint) if start.checkpoint else None)
    totals.seconds, totals.session_start = totals.train_seconds(), None
    step = trainer.state.global_step
    if not has_eval:
        return step, {}
    evals = [r for r in trainer.state.log_history if "eval_loss" in r]
    return step, evals[-1] if evals and evals[-1].get("step") == step else trainer.evaluate()
