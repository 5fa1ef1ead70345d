"""Method differences at the level of training runs, from the clean held-out loss curves.

For every pair of methods in curves.csv and the steps asked for (default 20, the end of
epoch 1 where the loss is lowest, and 80, the final models): the per-seed differences
B − A of the clean held-out loss that training logged (the Trainer's evaluation, the same
64 rows for every run; runs of one seed share the data order) and a t-interval over them
(df = seeds − 1). Reads only curves.csv, so it runs without the run folders.

    python docs/results/alpaca_overfit/curve_level.py [CURVES_CSV] [STEP ...]
"""

from __future__ import annotations

import csv
import itertools
import math
import statistics
import sys
from pathlib import Path

from scipy import stats

HERE = Path(__file__).resolve().parent


def per_seed(path: Path, step: int) -> dict[str, dict[str, float]]:
    """{method: {seed: clean held-out loss at ``step``}}."""
    out: dict[str, dict[str, float]] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["kind"] == "eval" and int(row["step"]) == step:
                name = row["group"].removeprefix("smollm2-alpaca80-")
                out[name] = {k: float(v) for k, v in
                             (item.split("=") for item in row["per_seed"].split())}
    return out


def main(argv: list[str]) -> None:
    path = Path(argv[0]) if argv else HERE / "curves.csv"
    for step in [int(a) for a in argv[1:]] or [20, 80]:
        loss = per_seed(path, step)
        print(f"step {step}: clean held-out loss per seed")
        for name, by_seed in sorted(loss.items()):
            print(f"  {name:18s} " + " ".join(f"{s}={v:.4f}" for s, v in sorted(by_seed.items())))
        for a, b in itertools.combinations(sorted(loss), 2):
            seeds = sorted(loss[a].keys() & loss[b].keys())
            d = [loss[b][s] - loss[a][s] for s in seeds]
            if len(d) < 2:
                continue
            m = statistics.fmean(d)
            half = stats.t.ppf(0.975, len(d) - 1) * statistics.stdev(d) / math.sqrt(len(d))
            flag = " *" if m - half > 0 or m + half < 0 else ""
            print(f"  {b} − {a}: {' '.join(f'{x:+.4f}' for x in d)}; mean {m:+.4f} "
                  f"[{m - half:+.4f}, {m + half:+.4f}]{flag}")


if __name__ == "__main__":
    main(sys.argv[1:])
