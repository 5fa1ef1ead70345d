"""Build the fixed train / held-out files of the alpaca_overfit experiment.

Chosen once, before any training, from the Alpaca sample alone (the AlpacaEval prompts are
never read): rows with a non-empty output whose Alpaca-prompt tokenisation (prompt +
response + EOS, SmolLM2 tokenizer) fits MAX_LENGTH tokens, shuffled with a fixed seed; the
first N_TRAIN go to train.json, the next N_EVAL to heldout.json (disjoint by construction,
and the same for every method and seed).

    PYTHONPATH=src python docs/results/alpaca_overfit/make_data.py \
        ../shared/data/alpaca_9k.json /work/runs/alpaca_overfit_data
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

MAX_LENGTH = 128
N_TRAIN = 200
N_EVAL = 96
SEED = 20261123


def main(src: str, out_dir: str) -> None:
    from symnoise.data import prepare_dataset
    from symnoise.models import load_tokenizer, resolve_model

    rows = json.loads(Path(src).read_text(encoding="utf-8"))
    usable = [i for i, r in enumerate(rows) if str(r.get("output", "")).strip()]
    print(f"{len(rows)} rows, {len(rows) - len(usable)} with an empty output left out")
    tok = load_tokenizer(resolve_model("smollm2"))
    prepared = prepare_dataset([rows[i] for i in usable], tok, fmt="alpaca", template="alpaca",
                               max_length=100_000)
    lengths = [len(f["input_ids"]) for f in prepared.features]
    kept_idx = prepared.tokenize_report.kept_indices
    fits = [usable[k] for k, n in zip(kept_idx, lengths, strict=True) if n <= MAX_LENGTH]
    print(f"{len(fits)} rows fit {MAX_LENGTH} tokens")
    random.Random(SEED).shuffle(fits)
    train, heldout = fits[:N_TRAIN], fits[N_TRAIN:N_TRAIN + N_EVAL]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, idx in (("train.json", train), ("heldout.json", heldout)):
        (out / name).write_text(json.dumps([rows[i] for i in idx], indent=1), encoding="utf-8")
        print(f"{out / name}: {len(idx)} rows (source rows {idx[:5]} ...)")
    (out / "selection.json").write_text(json.dumps(
        {"source": src, "max_length": MAX_LENGTH, "seed": SEED, "fit": len(fits),
         "train_rows": train, "heldout_rows": heldout}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:3])
