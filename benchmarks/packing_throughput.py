"""Packed (padding-free) vs padded training throughput on the Alpaca sample.

The same examples go through both: each step takes the next ``--batch`` examples of the
shuffled data (as the Trainer's random sampler does) and runs one forward + backward +
AdamW update, once padded (``PaddingCollator``: rows padded to the longest example of the
batch) and once packed (``symnoise.train.make_collator(packing=True)``: one row, position
ids restarting at each example, no padding). So both see the same real tokens per step;
the two are interleaved step by step (the order alternating) so machine noise hits both
alike. Reported: real tokens per second of each, their ratio (target >= 1.3x), and the
share of each batch's positions that is padding.

    python benchmarks/packing_throughput.py                    # SmolLM2-135M, 8 per step
    python benchmarks/packing_throughput.py --model tiny       # a small random Llama
    python benchmarks/packing_throughput.py --data alpaca.json --batch 16 --steps 6

Skips (prints ``skipped: ...``) when the data file or the model is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
# ../shared/data beside the checkout (or beside any folder above it, for git worktrees)
DEFAULT_DATA = next((p / "shared" / "data" / "alpaca_9k.json" for p in ROOT.parents
                     if (p / "shared" / "data" / "alpaca_9k.json").is_file()),
                    ROOT.parent / "shared" / "data" / "alpaca_9k.json")


def _load_model(spec: str):
    from symnoise.models import load_model_and_tokenizer

    if spec != "tiny":
        model, tok, _, _ = load_model_and_tokenizer(spec, dtype="float32")
        return model, tok, spec
    from transformers import LlamaConfig, LlamaForCausalLM

    from symnoise.models import ensure_pad_token, load_tokenizer, resolve_model

    tok = load_tokenizer(resolve_model("smollm2"))  # SmolLM2's tokenizer, not its weights
    ensure_pad_token(tok)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=256, intermediate_size=688,
                      num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                      max_position_embeddings=2048, tie_word_embeddings=True)
    return LlamaForCausalLM(cfg), tok, "tiny Llama (hidden 256, 4 layers, SmolLM2 vocab)"


def _batches(features, batch: int, steps: int, seed: int):
    order = list(range(len(features)))
    random.Random(seed).shuffle(order)
    need = batch * steps
    if len(order) < need:
        raise SystemExit(f"need {need} examples, the data has {len(order)}")
    return [[features[i] for i in order[s * batch:(s + 1) * batch]] for s in range(steps)]


def _step(model, optimizer, batch) -> float:
    t0 = time.perf_counter()
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def run(args) -> dict:
    from symnoise.data import PaddingCollator, prepare_dataset
    from symnoise.train import make_collator

    model, tok, model_name = _load_model(args.model)
    model.config.use_cache = False
    model.train()
    n = args.batch * (args.steps + 1)
    prepared = prepare_dataset(str(args.data), tok, max_length=args.max_length,
                               max_examples=4 * n, skip_bad_rows=True)
    batches = _batches(prepared.features, args.batch, args.steps + 1, args.seed)
    collate = {"padded": PaddingCollator(tok.pad_token_id),
               "packed": make_collator(tok, packing=True)}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    for name in collate:  # warm-up on the extra first batch
        _step(model, optimizer, collate[name](batches[0]))
    times: dict[str, list[float]] = {k: [] for k in collate}
    real = positions = 0
    for s, feats in enumerate(batches[1:]):
        order = list(collate) if s % 2 == 0 else list(reversed(collate))
        for name in order:
            batch = collate[name](feats)
            times[name].append(_step(model, optimizer, batch))
            if name == "padded":
                real += int(batch["attention_mask"].sum())
                positions += batch["input_ids"].numel()
        print(f"  step {s + 1}/{args.steps}: padded {times['padded'][-1]:.2f} s, "
              f"packed {times['packed'][-1]:.2f} s", file=sys.stderr, flush=True)
    tps = {k: real / sum(v) for k, v in times.items()}
    return {"model": model_name, "data": str(args.data), "batch": args.batch,
            "steps": args.steps, "max_length": args.max_length,
            "real_tokens_per_step": real / args.steps,
            "tokens_per_second": tps, "ratio_packed_over_padded": tps["packed"] / tps["padded"],
            "pad_share": {"padded": 1 - real / positions, "packed": 0.0},
            "step_s": {k: {"min": min(v), "median": statistics.median(v), "max": max(v)}
                       for k, v in times.items()},
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--model", default="smollm2", help="a --model value, or 'tiny'")
    ap.add_argument("--batch", type=int, default=8, help="examples per step")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if not args.data.is_file():
        print(f"skipped: data file not found: {args.data}")
        return
    try:
        r = run(args)
    except FileNotFoundError as exc:
        print(f"skipped: {exc}")
        return
    print(f"model {r['model']}, {r['batch']} examples/step "
          f"({r['real_tokens_per_step']:.0f} real tokens/step), {r['steps']} interleaved steps "
          f"each, max length {r['max_length']}, {r['threads']} threads, torch {r['torch']}")
    print(f"\n{'':<8}{'tokens/s':>10}{'median step s':>15}{'pad share':>11}")
    for k in ("padded", "packed"):
        print(f"{k:<8}{r['tokens_per_second'][k]:>10.0f}{r['step_s'][k]['median']:>15.2f}"
              f"{r['pad_share'][k]:>11.1%}")
    ratio = r["ratio_packed_over_padded"]
    print(f"\npacked / padded tokens per second: {ratio:.2f}x "
          f"(target >= 1.3x: {'ok' if ratio >= 1.3 else 'MISSED'})")
    if args.json:
        print(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
