"""The report's figures (PNG, matplotlib without pyplot): win rate by method, win rate
against length, loss curves; the synthetic exact-answer accuracy when no run has a win rate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .records import RunRecord, grid_rows, grid_table, sorted_runs
from .tables import Table, number

__all__ = ["write_figures"]

_COLORS = {"none": "C7", "uniform": "C0", "gaussian": "C1", "bernoulli": "C2", "symnoise": "C3"}


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    return Figure(figsize=(width, height), dpi=120)


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, format="png")


def _bars(path: Path, table: Table, datasets: Sequence[str], ylabel: str, title: str,
          errors: Mapping[tuple[int, int], tuple[float, float]] | None = None) -> None:
    """Grouped bars: x = datasets, one bar per table row (its numeric cells)."""
    import numpy as np

    ours = [(row, raw) for row, raw in zip(table.rows, table.data, strict=True)
            if raw[1] == "runs"]
    ax = (fig := _new_figure(max(6.0, 1.6 * len(datasets) + 2.5), 4.6)).add_subplot()
    width = 0.8 / max(1, len(ours))
    x = np.arange(len(datasets))
    first = table.csv_header.index(datasets[0]) if datasets else 0
    for i, (row, raw) in enumerate(ours):
        vals = raw[first:first + len(datasets)]
        yerr = [[errors.get((i, j), (0.0, 0.0))[k] for j in range(len(datasets))]
                for k in (0, 1)] if errors else None
        bars = ax.bar(x - 0.4 + width * (i + 0.5), [0.0 if v is None else v for v in vals],
                      width, label=row[0], color=_COLORS.get(raw[2], f"C{(i + 4) % 10}"),
                      yerr=yerr, capsize=3)
        for bar, v in zip(bars, vals, strict=True):
            if v is None:
                bar.set_alpha(0.0)  # no result: no bar
    ax.set(xticks=x, xticklabels=datasets, ylabel=ylabel, title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    _save(fig, path)


def _scatter(path: Path, points: Sequence[tuple[float, float, str, str | None]], ylabel: str,
             title: str) -> None:
    ax = (fig := _new_figure(6.4, 4.8)).add_subplot()
    for xv, yv, label, method in points:
        ax.scatter([xv], [yv], color=_COLORS.get(method or "", "C9"), s=36)
        ax.annotate(label, (xv, yv), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set(xlabel="average output length (characters)", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    _save(fig, path)


def _curve(r: RunRecord, key: str) -> list[tuple[Any, Any]]:
    """(step, loss) points of ``key`` in a run's metrics.jsonl, by step; not the
    end-of-training summary row (``train_runtime``)."""
    return sorted((row["step"], row[key]) for row in r.metrics
                  if number(row.get("step")) is not None and number(row.get(key)) is not None
                  and (key != "train_loss" or "train_runtime" not in row))


def _loss_figure(path: Path, runs: Sequence[RunRecord], datasets: Sequence[str]) -> bool:
    series = [(r, _point_label(r, datasets), train, clean)
              for r in sorted_runs(runs)
              if (train := _curve(r, "train_loss")) + (clean := _curve(r, "clean_eval_loss"))]
    if not series:
        return False
    axes = (fig := _new_figure(11.0, 4.4)).subplots(1, 2)
    styles = ["-", "--", ":", "-."]
    seen: dict[str, int] = {}
    for r, label, train, clean in series:
        k = seen.get(r.method or "", 0)
        seen[r.method or ""] = k + 1
        kw = {"color": _COLORS.get(r.method or "", None), "linestyle": styles[k % len(styles)],
              "label": label}
        if train:  # markers when there are few points (a lone point has no line)
            axes[0].plot(*zip(*train, strict=True), marker="o" if len(train) <= 30 else None,
                         markersize=3, **kw)
        if clean:
            axes[1].plot(*zip(*clean, strict=True), marker="o", markersize=3, **kw)
    axes[0].set_title("training loss (as trained, with noise)")
    axes[1].set_title("clean held-out loss (noise off)")
    for ax in axes:
        ax.set(xlabel="step", ylabel="loss")
        ax.grid(alpha=0.3)
    for ax in (axes[1], axes[0]):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
            break
    _save(fig, path)
    return True


def _synthetic_errors(runs: Sequence[RunRecord], datasets: Sequence[str]
                      ) -> dict[tuple[int, int], tuple[float, float]]:
    """Wilson-interval error bars (percent) for grid cells holding exactly one run."""
    errors = {}
    for i, g in enumerate(grid_rows(runs)):
        for j, d in enumerate(datasets):
            cell = [r for r in g.runs.get(d, []) if r.synthetic_accuracy is not None]
            ci = (cell[0].synthetic or {}).get("accuracy_ci95") or [] if len(cell) == 1 else []
            if len(ci) == 2 and None not in ci:
                acc = cell[0].synthetic_accuracy or 0.0
                errors[(i, j)] = (100 * (acc - ci[0]), 100 * (ci[1] - acc))
    return errors


def _point_label(r: RunRecord, datasets: Sequence[str]) -> str:
    return r.label if len(datasets) == 1 else f"{r.label} · {r.dataset}"


def _synthetic_percent(r: RunRecord) -> float | None:
    return None if r.synthetic_accuracy is None else 100 * r.synthetic_accuracy


def write_figures(out: Path, runs: Sequence[RunRecord], table1: Table,
                  datasets: Sequence[str], notes: list[str]) -> dict[str, str]:
    """Write the figures that the runs have data for; return name -> caption. What cannot
    be drawn is said in ``notes``."""
    figures: dict[str, str] = {}
    any_wr = any(r.win_rate is not None for r in runs)
    if any_wr:
        _bars(out / "fig_win_rate.png", table1, datasets, "win rate (%)",
              "Win rate by method and dataset")
        figures["fig_win_rate.png"] = "Win rate (%) by method and dataset (Table 1)."
    elif any(r.synthetic_accuracy is not None for r in runs):
        syn = grid_table("syn_grid", "", runs, datasets, _synthetic_percent, 1, average=False)
        _bars(out / "fig_win_rate.png", syn, datasets, "exact-answer accuracy (%)",
              "Synthetic held-out accuracy by method (no win rates)",
              _synthetic_errors(runs, datasets))
        figures["fig_win_rate.png"] = (
            "No run has a win rate, so this plots the synthetic held-out exact-answer "
            "accuracy (%) by method and dataset instead, with 95% Wilson intervals for "
            "single runs.")
    else:
        notes.append("no run has a win rate or a synthetic score: no win-rate figure")
    if any_wr:
        score, ylabel, title = (lambda r: r.win_rate), "win rate (%)", \
            "Win rate against output length"
        caption = "Win rate (%) against average output length (characters), one point per run."
    else:
        score, ylabel, title = _synthetic_percent, "exact-answer accuracy (%)", \
            "Synthetic accuracy against output length"
        caption = ("No run has a win rate, so this plots the synthetic exact-answer accuracy "
                   "(%) against average output length (characters), one point per run.")
    if pts := [(r.avg_chars, score(r), _point_label(r, datasets), r.method) for r in runs
               if r.avg_chars is not None and score(r) is not None]:
        _scatter(out / "fig_win_rate_vs_length.png", pts, ylabel, title)  # type: ignore[arg-type]
        figures["fig_win_rate_vs_length.png"] = caption
    else:
        notes.append("no run has both an output length and a score: no length figure")
    if _loss_figure(out / "fig_loss.png", runs, datasets):
        figures["fig_loss.png"] = ("Training loss with noise (left) and clean held-out loss "
                                   "without noise (right) over optimizer steps, one line per "
                                   "run (metrics.jsonl).")
    else:
        notes.append("no run has a metrics.jsonl with losses: no loss figure")
    return figures
