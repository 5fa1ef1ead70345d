"""DPO step cost of each noise method over an un-noised DPO step, measured side by side.

Each step is ``NoisyDPOTrainer.training_step`` (TRL's DPO loss, the reference pass with the
noise paused, SymNoise pairing) plus an AdamW update, on one batch of B pairs of T tokens
(prompt T/2, chosen and rejected T/2), the model LoRA-wrapped (reference = the disabled
adapter, as ``symnoise train --stage dpo --lora``) or fully trained against a second copy.

Step time: one process, the methods interleaved round-robin (reversed every other
repetition) so that machine load hits all alike; median step time per method, its ratio
over ``none`` and the spread of the per-repetition ratios.

Peak memory: each configuration in a fresh subprocess. CUDA: ``max_memory_allocated``. CPU:
the process's peak RSS (VmHWM, reset through /proc/self/clear_refs after a warm-up step),
i.e. weights + gradients + optimizer state + activations. ``none-accum2`` is an un-noised
step with gradient accumulation 2 (two micro-batches of B pairs, one update): the floor of
sequential SymNoise, which also runs two passes over B pairs before its update.

Targets (issue 17): uniform, gaussian, bernoulli <= 1.05x none; symnoise concat <= 2.1x;
symnoise sequential peak memory <= 1.05x none-accum2.

    python benchmarks/dpo_step.py                      # the default model, 4 pairs x 128 tokens
    python benchmarks/dpo_step.py --model /tmp/m135 --device cuda --batch 8 --length 512
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

CONFIGS = ("none", "uniform", "gaussian", "bernoulli", "symnoise-concat",
           "symnoise-sequential", "none-accum2")
TIME_TARGETS = {"uniform": 1.05, "gaussian": 1.05, "bernoulli": 1.05, "symnoise-concat": 2.1}
MEMORY = ("none", "none-accum2", "symnoise-concat", "symnoise-sequential")


def _noise(name: str):
    from symnoise import NoiseConfig

    method, _, mode = name.partition("-")
    method = "none" if method == "none" else method
    return NoiseConfig(method=method, alpha=5.0, seed=0,
                       symmetric_mode=mode if mode in ("concat", "sequential") else "concat")


def build(args):
    """(trainer, optimizer, batch): a NoisyDPOTrainer on the model and one DPO batch."""
    from datasets import Dataset
    from trl import DPOConfig

    from symnoise.models import apply_lora, load_model_and_tokenizer
    from symnoise.trainer import NoisyDPOTrainer

    def load():
        model, tok, _, _ = load_model_and_tokenizer(args.model, dtype="float32",
                                                    device=args.device)
        model.config.use_cache = False
        return model, tok

    model, tok = load()
    ref = None if args.lora else load()[0]
    if args.lora:
        model = apply_lora(model, r=16, alpha=32, dropout=0.0)
    config = DPOConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.batch,
                       report_to=[], use_cpu=args.device == "cpu", max_length=args.length,
                       disable_tqdm=True)
    trainer = NoisyDPOTrainer(model=model, ref_model=ref, args=config, processing_class=tok,
                              train_dataset=Dataset.from_list(
                                  [{"prompt": "a", "chosen": "b", "rejected": "c"}] * 2))
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop, which is not run
    g = torch.Generator().manual_seed(0)
    rows, half = 2 * args.batch, args.length // 2
    ids = torch.randint(10, model.config.vocab_size, (rows, args.length), generator=g)
    ids[args.batch:, :half] = ids[:args.batch, :half]  # chosen and rejected share the prompt
    completion = torch.zeros(rows, args.length, dtype=torch.long)
    completion[:, half:] = 1
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "completion_mask": completion}
    batch = {k: v.to(args.device) for k, v in batch.items()}
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    return trainer, torch.optim.AdamW(params, lr=1e-6), batch


def make_step(trainer, optimizer, batch, name: str):
    """One optimizer step as NoiseTrainerMixin.train() runs it (accum2: two micro-batches)."""
    from symnoise import noisy_embeddings

    cfg = _noise(name)
    passes = 2 if name == "none-accum2" else 1

    def step() -> None:
        trainer.noise_config = cfg
        with noisy_embeddings(trainer.model, cfg) as handle:
            trainer.noise_handle, handle.pair_blocks = handle, trainer.pair_blocks
            for _ in range(passes):
                trainer.training_step(trainer.model, batch)
            trainer.noise_handle = None
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if trainer.args.device.type == "cuda":
            torch.cuda.synchronize()

    return step


def time_steps(args) -> dict[str, list[float]]:
    trainer, optimizer, batch = build(args)
    steps = {name: make_step(trainer, optimizer, batch, name) for name in CONFIGS}
    for fn in steps.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for rep in range(args.reps):
        for name in (CONFIGS if rep % 2 == 0 else CONFIGS[::-1]):
            t0 = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - t0)
        print(f"  rep {rep + 1}/{args.reps} done", file=sys.stderr, flush=True)
    return times


def _status(key: str) -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines()
                if x.startswith(key + ":"))
    return int(line.split()[1]) * 1024


def memory_worker(args) -> dict[str, float]:
    trainer, optimizer, batch = build(args)
    step = make_step(trainer, optimizer, batch, args.worker)
    step()  # optimizer state exists from here on
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        step()
        return {"peak_bytes": torch.cuda.max_memory_allocated(), "measure": "cuda allocator"}
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM
    step()
    return {"peak_bytes": _status("VmHWM"), "measure": "peak RSS (VmHWM)"}


def measure_memory(args) -> dict[str, dict]:
    out = {}
    for name in MEMORY:
        cmd = [sys.executable, __file__, "--worker", name, "--model", args.model, "--batch",
               str(args.batch), "--length", str(args.length), "--device", args.device,
               "--lora" if args.lora else "--full"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode:
            raise RuntimeError(f"memory worker {name} failed:\n{proc.stderr[-2000:]}")
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"  memory {name}: {out[name]['peak_bytes'] / 2**20:.0f} MiB", file=sys.stderr)
    return out


def report(times: dict[str, list[float]], mem: dict[str, dict] | None) -> dict:
    base = statistics.median(times["none"])
    print(f"\n{'method':<22}{'median s':>10}{'ratio':>8}{'spread (min/med/max)':>24}"
          f"{'target':>10}")
    rows = {}
    for name, ts in times.items():
        per_rep = sorted(t / n for t, n in zip(ts, times["none"], strict=True))
        ratio, target = statistics.median(ts) / base, TIME_TARGETS.get(name)
        verdict = "" if target is None else ("  ok" if ratio <= target else "  MISSED")
        spread = f"{per_rep[0]:.3f}/{statistics.median(per_rep):.3f}/{per_rep[-1]:.3f}"
        print(f"{name:<22}{statistics.median(ts):>10.3f}{ratio:>8.3f}{spread:>24}"
              f"{(f'<= {target}' if target else '-'):>10}{verdict}")
        rows[name] = {"median_s": statistics.median(ts), "ratio": ratio, "all_s": ts}
    if mem:
        print(f"\npeak memory ({mem['none']['measure']}, each in a fresh process):")
        floor = mem["none-accum2"]["peak_bytes"]
        for name, m in mem.items():
            print(f"  {name:<22}{m['peak_bytes'] / 2**20:>10.0f} MiB   / none-accum2 "
                  f"{m['peak_bytes'] / floor:.3f}")
        seq = mem["symnoise-sequential"]["peak_bytes"] / floor
        print(f"symnoise-sequential peak / none-accum2: {seq:.3f} "
              f"(target <= 1.05: {'ok' if seq <= 1.05 else 'MISSED'})")
    return {"step_time": rows, "memory": mem}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--batch", type=int, default=4, help="pairs per batch")
    ap.add_argument("--length", type=int, default=128, help="tokens per sequence")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--lora", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--full", dest="lora", action="store_false")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if args.worker:
        print(json.dumps(memory_worker(args)))
        return
    where = (torch.cuda.get_device_name(0) if args.device.startswith("cuda") else
             f"CPU, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}")
    print(f"model {args.model} ({'LoRA r16' if args.lora else 'full'}), {args.batch} pairs x "
          f"{args.length} tokens, alpha 5, {args.reps} interleaved reps, {where}, "
          f"torch {torch.__version__}")
    result = report(time_steps(args), None if args.no_memory else measure_memory(args))
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
