"""Build the fixed train / held-out files of the alpaca_overfit experiment.

The rows are the ones in ``selection.json`` beside this script (source row numbers of the
Alpaca sample), so the files are the same whatever the code or library versions:

    python docs/results/alpaca_overfit/make_data.py ../shared/data/alpaca_9k.json /work/runs/alpaca_overfit_data

How the selection was made (``--select`` redoes it with the code at hand): rows with a
non-empty output whose Alpaca-prompt tokenisation (prompt + response + EOS, SmolLM2
tokenizer) fits MAX_LENGTH tokens, shuffled with a fixed seed; the first N_TRAIN go to
train.json, the next N_EVAL to heldout.json (disjoint by construction, and the same for
every method and seed). The length filter depends on the prompt template: the committed
selection was made at commit d3ff2fb, whose template ended with "### Response:\\n"
(6,477 rows fit); today's template (no newline, as Stanford Alpaca) lets 6,529 rows fit
and gives a different selection, so ``--select`` does not reproduce the experiment.

    PYTHONPATH=src python docs/results/alpaca_overfit/make_data.py SRC OUT --select
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
SELECTION = Path(__file__).with_name("selection.json")


def select(rows: list[dict], src: str) -> dict:
    """Redo the selection with the code at hand (see the module docstring)."""
    from symnoise.data import prepare_dataset
    from symnoise.models import load_tokenizer, resolve_model

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
    return {"source": src, "max_length": MAX_LENGTH, "seed": SEED, "fit": len(fits),
            "train_rows": fits[:N_TRAIN], "heldout_rows": fits[N_TRAIN:N_TRAIN + N_EVAL]}


def main(src: str, out_dir: str, redo: bool = False) -> None:
    rows = json.loads(Path(src).read_text(encoding="utf-8"))
    chosen = select(rows, src) if redo else json.loads(SELECTION.read_text(encoding="utf-8"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, key in (("train.json", "train_rows"), ("heldout.json", "heldout_rows")):
        idx = chosen[key]
        bad = [i for i in idx if not (0 <= i < len(rows)) or not str(rows[i].get("output", "")).strip()]
        if bad:
            raise SystemExit(f"{src}: {len(rows)} rows; {SELECTION.name} names rows {bad[:5]} "
                             "that it does not have (or with an empty output): another file?")
        (out / name).write_text(json.dumps([rows[i] for i in idx], indent=1), encoding="utf-8")
        print(f"{out / name}: {len(idx)} rows (source rows {idx[:5]} ...)")
    (out / "selection.json").write_text(json.dumps(chosen, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], "--select" in sys.argv[3:])
