"""Held-out loss of the final models at the level of training runs: per seed, the
token-weighted mean of RUN/eval/heldout_losses.jsonl; per pair of methods, the per-seed
differences and a t-interval over them (df = seeds - 1). The example-level bootstrap of
`symnoise compare` holds the trained models fixed; this is the replication over runs.

    python docs/results/alpaca_overfit/seed_level.py [RUNS]
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
import sys
from pathlib import Path

from scipy import stats

METHODS = {"none": "none", "NEFTune": "uniform-a5", "SymNoise": "symnoise-a5",
           "SymNoise nm0": "symnoise-a5-nm0"}


def run_loss(path: Path) -> float:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return sum(r["loss"] * r["n_tokens"] for r in rows) / sum(r["n_tokens"] for r in rows)


def main(argv: list[str]) -> None:
    runs = Path(argv[0]) if argv else Path("/work/runs/alpaca_overfit")
    loss = {name: {s: run_loss(f) for s in range(3)
                   if (f := runs / f"smollm2-alpaca80-{key}-s{s}/eval/heldout_losses.jsonl").is_file()}
            for name, key in METHODS.items()}
    for name, by_seed in loss.items():
        sd = statistics.stdev(by_seed.values()) if len(by_seed) > 1 else float("nan")
        print(f"{name:13s} " + " ".join(f"s{s}={v:.4f}" for s, v in by_seed.items())
              + f"  mean {statistics.fmean(by_seed.values()):.4f} sd {sd:.4f}")
    for a, b in itertools.combinations(METHODS, 2):
        seeds = sorted(loss[a].keys() & loss[b].keys())
        d = [loss[b][s] - loss[a][s] for s in seeds]
        if len(d) < 2:
            continue
        m, half = statistics.fmean(d), (stats.t.ppf(0.975, len(d) - 1)
                                        * statistics.stdev(d) / math.sqrt(len(d)))
        print(f"{b} - {a}: per seed {' '.join(f'{x:+.4f}' for x in d)}; mean {m:+.4f} "
              f"[{m - half:+.4f}, {m + half:+.4f}] (t, {len(d)} seeds)")


if __name__ == "__main__":
    main(sys.argv[1:])
