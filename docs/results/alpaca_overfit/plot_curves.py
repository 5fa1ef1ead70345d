"""Clean held-out loss (and training loss) curves of the alpaca_overfit grid, per method.

Reads RUN/metrics.jsonl of every run folder under RUNS (default /work/runs/alpaca_overfit),
groups the runs that differ only by seed (the point name without ``-s<seed>``), and writes
  OUT/curves.csv   one row per (method, step): n seeds, mean and sd of the clean held-out
                   loss and of the (noisy) training loss, and the per-seed values;
  OUT/curves.png   mean clean held-out loss per method (band: min..max over seeds) and
                   mean training loss.
Unfinished runs are included with the steps they have logged (n says how many seeds).
A group already in OUT/curves.csv with more seeds than RUNS holds (its run folders are on
another machine) keeps its rows from the CSV, so groups trained later can be added.

    python docs/results/alpaca_overfit/plot_curves.py [RUNS] [OUT]
"""

from __future__ import annotations

import csv
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent


def read_runs(runs: Path) -> dict[str, dict[int, dict[str, list[tuple[int, float]]]]]:
    """{group: {seed: {"eval": [(step, loss)], "train": [(step, loss)]}}}."""
    out: dict[str, dict[int, dict[str, list[tuple[int, float]]]]] = defaultdict(dict)
    for metrics in sorted(runs.glob("*/metrics.jsonl")):
        m = re.fullmatch(r"(.+)-s(\d+)", metrics.parent.name)
        if not m:
            continue
        curves: dict[str, list[tuple[int, float]]] = {"eval": [], "train": []}
        for line in metrics.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if "clean_eval_loss" in row:
                curves["eval"].append((row["step"], row["clean_eval_loss"]))
            if "train_loss" in row:
                curves["train"].append((row["step"], row["train_loss"]))
        out[m.group(1)][int(m.group(2))] = curves
    return out


def summarise(groups) -> list[dict]:
    rows = []
    for group, seeds in sorted(groups.items()):
        for kind in ("eval", "train"):
            by_step: dict[int, dict[int, float]] = defaultdict(dict)
            for seed, curves in seeds.items():
                for step, loss in curves[kind]:
                    by_step[step][seed] = loss
            for step in sorted(by_step):
                vals = by_step[step]
                v = list(vals.values())
                rows.append({
                    "group": group, "kind": kind, "step": step, "n": len(v),
                    "mean": round(statistics.fmean(v), 5),
                    "sd": round(statistics.stdev(v), 5) if len(v) > 1 else "",
                    "min": round(min(v), 5), "max": round(max(v), 5),
                    "per_seed": " ".join(f"s{s}={vals[s]:.4f}" for s in sorted(vals)),
                })
    return rows


def merge_saved(rows: list[dict], saved: Path) -> list[dict]:
    """``rows`` plus the groups of ``saved`` (an earlier curves.csv) that have more seeds
    there than in ``rows``."""
    if not saved.is_file():
        return rows
    with saved.open(encoding="utf-8", newline="") as fh:
        old = list(csv.DictReader(fh))
    for r in old:
        r.update(step=int(r["step"]), n=int(r["n"]),
                 **{k: float(r[k]) for k in ("mean", "min", "max")})
    seeds = defaultdict(int)
    for r in rows:
        seeds[r["group"]] = max(seeds[r["group"]], r["n"])
    keep = {r["group"] for r in old if r["n"] > seeds[r["group"]]}
    for group in sorted(keep):
        print(f"{group}: kept from {saved.name} (more seeds there than in the runs)")
    return sorted([r for r in rows if r["group"] not in keep]
                  + [r for r in old if r["group"] in keep],
                  key=lambda r: (r["group"], r["kind"] != "eval", r["step"]))


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, kind, title in ((axes[0], "eval", "clean held-out loss (noise off, 64 rows)"),
                            (axes[1], "train", "training loss (as trained, with noise)")):
        for group in sorted({r["group"] for r in rows}):
            rs = [r for r in rows if r["group"] == group and r["kind"] == kind]
            if not rs:
                continue
            steps = [r["step"] for r in rs]
            label = group.replace("smollm2-alpaca80-", "") + f" (n={max(r['n'] for r in rs)})"
            (line,) = ax.plot(steps, [r["mean"] for r in rs], marker="o" if kind == "eval"
                              else None, ms=3, label=label)
            ax.fill_between(steps, [r["min"] for r in rs], [r["max"] for r in rs],
                            color=line.get_color(), alpha=0.15)
        ax.set_title(title)
        ax.set_xlabel("optimizer step (20 steps = 1 epoch)")
        ax.grid(alpha=0.3)
    base = HERE / "base_loss.json"  # the model before fine-tuning (base_loss.py)
    if base.is_file():
        loss = json.loads(base.read_text(encoding="utf-8"))["clean_eval_loss"]
        axes[0].axhline(loss, color="grey", ls=":", label=f"before fine-tuning ({loss:.4f})")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str]) -> None:
    runs = Path(argv[0]) if argv else Path("/work/runs/alpaca_overfit")
    out = Path(argv[1]) if len(argv) > 1 else HERE
    rows = merge_saved(summarise(read_runs(runs)), out / "curves.csv")
    if not rows:
        raise SystemExit(f"no metrics.jsonl with a -s<seed> run folder under {runs}")
    with (out / "curves.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, out / "curves.png")
    print(f"{len(rows)} rows -> {out / 'curves.csv'}, {out / 'curves.png'}")


if __name__ == "__main__":
    main(sys.argv[1:])
