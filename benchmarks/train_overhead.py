"""Training-step overhead of each noise method over no noise, measured side by side.

Step time: one process, the methods interleaved round-robin for several repetitions (so
machine noise hits all of them alike), each step a full forward + backward + AdamW update
on a batch of B x T tokens through the same hook path the Trainer uses. Reported: median
step time per method and its ratio over ``none``.

Peak memory: each configuration in a fresh subprocess (so one's high-water mark cannot hide
another's). On CUDA: ``torch.cuda.max_memory_allocated``. On CPU: the process's peak RSS
(VmHWM, reset through /proc/self/clear_refs after a warm-up step), i.e. weights + gradients
+ optimizer state + activations; the activation part (peak minus the resting RSS before the
step) is printed too.

Targets (issue #2): uniform, gaussian, bernoulli within 1.02x of none; symnoise concat within
2.05x (the floor is 2x: it runs 2B rows); symnoise sequential peak memory within 1.10x.

The floor of any two-pass method is ``none-accum2``: an un-noised step with gradient
accumulation 2 at the same micro-batch (two forward/backward passes over B rows, one
update), which also holds a parameter-sized gradient buffer while its second pass runs.
Target (issue #7): symnoise sequential peak memory within 1.05x of that floor.

Per repetition the ratio of each method over ``none`` is taken from steps run side by side;
the spread (min / median / max over repetitions) is printed. ``--breakdown`` splits a
forward + backward over B and over 2B rows into the decoder body and the LM head + loss,
with the minor page faults of each (fresh memory the kernel must map and zero), to show
where a step over 2B rows costs more than twice one over B rows.

    python benchmarks/train_overhead.py                       # the default model, 4 x 256
    python benchmarks/train_overhead.py --model path/to/hf --batch 8 --length 512 --reps 5
    python benchmarks/train_overhead.py --only none,symnoise-concat,symnoise-sequential,none-accum2 --breakdown
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

CONFIGS = [
    ("none", "concat"),
    ("uniform", "concat"),
    ("gaussian", "concat"),
    ("bernoulli", "concat"),
    ("symnoise", "concat"),
    ("symnoise", "sequential"),
    ("none", "accum2"),  # the two-pass floor: gradient accumulation 2 at the same micro-batch
]


def _label(method: str, mode: str) -> str:
    if method == "none" and mode == "accum2":
        return "none-accum2"
    return f"symnoise-{mode}" if method == "symnoise" else method


def _load(model_spec: str, device: str):
    from symnoise.models import load_model_and_tokenizer

    model, tok, source, _ = load_model_and_tokenizer(model_spec, dtype="float32", device=device)
    model.config.use_cache = False
    return model, source


def _batch(vocab: int, batch: int, length: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, vocab, (batch, length), generator=g)
    mask = torch.ones(batch, length, dtype=torch.long)
    labels = ids.clone()
    labels[:, : length // 4] = -100  # a prompt part, as in response-only training
    return {k: v.to(device) for k, v in
            {"input_ids": ids, "attention_mask": mask, "labels": labels}.items()}


def make_step(model, optimizer, method: str, mode: str, alpha: float, batch, bf16=False):
    """A closure running one training step exactly as NoiseTrainerMixin does (``bf16``: the
    forward under bf16 autocast, as the Trainer's ``bf16=True``)."""
    from symnoise import NoiseConfig, noisy_embeddings, pair_batch

    cfg = NoiseConfig(method=method, alpha=alpha,
                      symmetric_mode="concat" if mode == "accum2" else mode, seed=0)

    def fwd(b):
        with torch.autocast(b["input_ids"].device.type, torch.bfloat16, enabled=bf16):
            return model(**b).loss

    def step() -> float:
        with noisy_embeddings(model, cfg) as handle:
            if mode == "accum2":  # two micro-batches of B rows, one update
                loss = 0.0
                for _ in range(2):
                    part = 0.5 * fwd(batch)
                    part.backward()
                    loss = loss + part
            elif method == "symnoise" and mode == "concat":
                loss = fwd(pair_batch(batch))
                loss.backward()
            elif method == "symnoise":
                with handle.phase("plus"):
                    lp = 0.5 * fwd(batch)
                    lp.backward()
                with handle.phase("minus"):
                    lm = 0.5 * fwd(batch)
                    lm.backward()
                loss = lp + lm
            else:
                loss = fwd(batch)
                loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _minflt() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _selected(args) -> list[tuple[str, str]]:
    if not args.only:
        return CONFIGS
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    known = {_label(m, md): (m, md) for m, md in CONFIGS}
    bad = [w for w in wanted if w not in known]
    if bad:
        raise SystemExit(f"unknown --only {bad}; known: {', '.join(known)}")
    return [known[w] for w in (["none"] + [w for w in wanted if w != "none"])]


def time_methods(args, model) -> tuple[dict[str, list[float]], dict[str, list[int]]]:
    """Step seconds and minor page faults per method, interleaved over ``args.reps``."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    batch = _batch(model.config.vocab_size, args.batch, args.length, args.device)
    steps = {_label(m, md): make_step(model, optimizer, m, md, args.alpha, batch, args.bf16)
             for m, md in _selected(args)}
    for fn in steps.values():  # warm-up: allocator, optimizer state, kernels
        fn()
    _sync(args.device)
    times: dict[str, list[float]] = {k: [] for k in steps}
    faults: dict[str, list[int]] = {k: [] for k in steps}
    total, done, t_start = args.reps * len(steps), 0, time.perf_counter()
    for rep in range(args.reps):
        order = list(steps) if rep % 2 == 0 else list(reversed(steps))  # cancel drift
        for name in order:
            f0, t0 = _minflt(), time.perf_counter()
            steps[name]()
            _sync(args.device)
            times[name].append(time.perf_counter() - t0)
            faults[name].append(_minflt() - f0)
            done += 1
            elapsed = time.perf_counter() - t_start
            print(f"\r  timing {done}/{total} steps  (ETA {elapsed / done * (total - done):4.0f} s)",
                  end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return times, faults


def time_breakdown(args, model, reps: int = 2) -> dict[str, dict[str, float]]:
    """Forward + backward over B and 2B rows, split into the decoder body and the LM head +
    loss; median seconds and minor page faults of each part."""
    body, head = model.get_decoder(), model.get_output_embeddings()
    out: dict[str, dict[str, list[float]]] = {}
    for rep in range(reps + 1):  # the first round warms up
        for rows in (args.batch, 2 * args.batch):
            b = _batch(model.config.vocab_size, rows, args.length, args.device)
            f0, t0 = _minflt(), time.perf_counter()
            hidden = body(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                          use_cache=False).last_hidden_state
            f1, t1 = _minflt(), time.perf_counter()
            h = hidden.detach().requires_grad_(True)
            loss = model.loss_function(head(h), b["labels"], vocab_size=model.config.vocab_size)
            loss.backward()
            _sync(args.device)
            f2, t2 = _minflt(), time.perf_counter()
            hidden.backward(h.grad)
            _sync(args.device)
            f3, t3 = _minflt(), time.perf_counter()
            model.zero_grad(set_to_none=True)
            if rep == 0:
                continue
            row = out.setdefault(f"{rows} rows", {})
            for key, value in (("body_s", (t1 - t0) + (t3 - t2)), ("head_loss_s", t2 - t1),
                               ("body_faults", (f1 - f0) + (f3 - f2)),
                               ("head_loss_faults", f2 - f1)):
                row.setdefault(key, []).append(value)
    return {k: {m: statistics.median(v) for m, v in row.items()} for k, row in out.items()}


def time_noise_only(args, hidden: int, repeats: int = 50) -> dict[str, float]:
    """Median seconds of the noise itself (perturb on a B x T x d batch), per method."""
    from symnoise.noise import perturb

    x = torch.randn(args.batch, args.length, hidden, device=args.device)
    mask = torch.ones(args.batch, args.length, dtype=torch.long, device=args.device)
    out = {}
    for method in ("uniform", "gaussian", "bernoulli", "symnoise"):
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            perturb(x, mask, method=method, alpha=args.alpha)
            _sync(args.device)
            ts.append(time.perf_counter() - t0)
        out[method] = statistics.median(ts)
    return out


def _read_status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def memory_worker(args) -> dict[str, float]:
    """Run in a subprocess: peak memory of one configuration."""
    method, mode = args.worker.split(":")
    model, _ = _load(args.model, args.device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    batch = _batch(model.config.vocab_size, args.batch, args.length, args.device)
    step = make_step(model, optimizer, method, mode, args.alpha, batch, args.bf16)
    step()  # warm-up: optimizer state exists from here on
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        rest = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        for _ in range(2):
            step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        import gc

        gc.collect()
        rest = _read_status("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM)
        for _ in range(2):
            step()
        peak = _read_status("VmHWM")
    return {"peak_bytes": peak, "rest_bytes": rest, "activation_bytes": max(0, peak - rest)}


def measure_memory(args) -> dict[str, dict[str, float]]:
    out = {}
    for method, mode in _selected(args):
        if method not in ("none", "symnoise"):
            continue
        name = _label(method, mode)
        print(f"  memory: {name} (fresh process)", file=sys.stderr, flush=True)
        cmd = [sys.executable, __file__, "--worker", f"{method}:{mode}", "--model", args.model,
               "--batch", str(args.batch), "--length", str(args.length),
               "--device", args.device, "--alpha", str(args.alpha)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        if args.bf16:
            cmd.append("--bf16")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
        if proc.returncode != 0:
            raise RuntimeError(f"memory worker {name} failed:\n{proc.stderr[-2000:]}")
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def report_times(times, faults) -> list[dict]:
    """Print median/min step time, the ratio over none and its spread over repetitions."""
    base = statistics.median(times["none"])
    targets = {"uniform": 1.02, "gaussian": 1.02, "bernoulli": 1.02, "symnoise-concat": 2.05}
    print("\nratio: of medians; spread: min / median / max over repetitions of the ratio of "
          "steps run side by side; faults: minor page faults per step (median)")
    print(f"\n{'method':<20}{'median s':>10}{'min s':>8}{'ratio':>8}{'spread':>21}"
          f"{'faults':>10}{'target':>10}")
    rows = []
    for name, ts in times.items():
        per_rep = sorted(t / n for t, n in zip(ts, times["none"], strict=True))
        ratio, target = statistics.median(ts) / base, targets.get(name)
        verdict = "" if target is None else ("  ok" if ratio <= target else "  MISSED")
        spread = f"{per_rep[0]:.2f}/{statistics.median(per_rep):.2f}/{per_rep[-1]:.2f}"
        print(f"{name:<20}{statistics.median(ts):>10.3f}{min(ts):>8.3f}{ratio:>8.3f}"
              f"{spread:>21}{statistics.median(faults[name]):>10.0f}"
              f"{(f'<= {target}' if target else '-'):>10}{verdict}")
        rows.append({"method": name, "median_s": statistics.median(ts), "min_s": min(ts),
                     "ratio": ratio, "ratio_spread": per_rep, "target": target, "all_s": ts,
                     "minor_faults": faults[name]})
    return rows


def report_breakdown(parts: dict[str, dict[str, float]]) -> None:
    one, two = parts.values()
    print("\nforward + backward over B and 2B rows, by part (median):")
    for key in ("body_s", "head_loss_s", "body_faults", "head_loss_faults"):
        print(f"  {key:<18}{one[key]:>12.3f}{two[key]:>12.3f}   2B / B = "
              f"{two[key] / one[key] if one[key] else float('nan'):.2f}")


def report_memory(mem: dict[str, dict[str, float]]) -> dict[str, float]:
    base_peak, base_act = mem["none"]["peak_bytes"], mem["none"]["activation_bytes"]
    print(f"\n{'config':<20}{'peak MiB':>12}{'ratio':>8}{'step-only MiB':>15}{'ratio':>8}")
    for name, m in mem.items():
        print(f"{name:<20}{m['peak_bytes'] / 2**20:>12.0f}{m['peak_bytes'] / base_peak:>8.3f}"
              f"{m['activation_bytes'] / 2**20:>15.0f}"
              f"{(m['activation_bytes'] / base_act if base_act else float('nan')):>8.3f}")
    out = {}
    if "symnoise-sequential" in mem:
        seq = mem["symnoise-sequential"]["peak_bytes"]
        out["sequential_over_none"] = seq / base_peak
        print(f"\nsymnoise-sequential peak / none: {seq / base_peak:.3f}")
        if "none-accum2" in mem:
            floor = seq / mem["none-accum2"]["peak_bytes"]
            out["sequential_over_accum2_floor"] = floor
            print(f"symnoise-sequential peak / none-accum2 (the two-pass floor): {floor:.3f} "
                  f"(target <= 1.05: {'ok' if floor <= 1.05 else 'MISSED'})")
        if "symnoise-concat" in mem:
            out["sequential_over_concat"] = seq / mem["symnoise-concat"]["peak_bytes"]
            print(f"symnoise-sequential peak / symnoise-concat: "
                  f"{out['sequential_over_concat']:.3f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--alpha", type=float, default=5.0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--only", help="comma-separated configs (none is always included)")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    ap.add_argument("--breakdown", action="store_true", help="body vs LM head over B and 2B rows")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--bf16", action="store_true", help="forward under bf16 autocast (fp32 weights)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(memory_worker(args)))
        return
    try:
        from symnoise.models import resolve_model

        resolve_model(args.model)
    except FileNotFoundError as exc:
        print(f"skipped: {exc}")
        return
    device_name = (torch.cuda.get_device_name(0) if args.device.startswith("cuda")
                   else f"CPU, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}")
    print(f"model {args.model}, batch {args.batch} x {args.length} tokens, alpha {args.alpha}, "
          f"{args.reps} interleaved reps, {'bf16 autocast' if args.bf16 else 'fp32'}, device {device_name}, torch {torch.__version__}")
    model, _ = _load(args.model, args.device)
    model.train()
    rows = report_times(*time_methods(args, model))
    result = {"model": args.model, "batch": args.batch, "length": args.length,
              "device": device_name, "reps": args.reps, "bf16": args.bf16, "step_time": rows}
    if args.breakdown:
        result["breakdown"] = time_breakdown(args, model)
        report_breakdown(result["breakdown"])
    hidden = int(model.config.hidden_size)
    del model
    noise_only = time_noise_only(args, hidden)
    base = statistics.median(next(r["all_s"] for r in rows if r["method"] == "none"))
    print(f"\nnoise sampling alone (perturb on {args.batch}x{args.length}x{hidden}), "
          f"median of 50 calls, as a share of the un-noised step:")
    for method, sec in noise_only.items():
        print(f"  {method:<10} {sec * 1e3:8.2f} ms   {100 * sec / base:7.3f} % of a step")
    result["noise_only_s"] = noise_only
    if not args.no_memory:
        result["memory"] = measure_memory(args)
        result.update(report_memory(result["memory"]))
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
