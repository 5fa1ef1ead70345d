"""The report's figures (PNG, matplotlib without pyplot): the win rate by setting and
against output length (the exact-answer accuracy when no run has a win rate), every point
with its interval (:mod:`.measured`), and the loss curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._io import finite
from .measured import Estimate, Group, Measured, run_estimate
from .records import RunRecord, sorted_runs

__all__ = ["write_figures"]

_COLORS = {"none": "C7", "uniform": "C0", "gaussian": "C1", "bernoulli": "C2", "symnoise": "C3"}


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    return Figure(figsize=(width, height), dpi=120)


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, format="png")


def _yerr(ests: Sequence[Estimate | None]) -> list[list[float]]:
    """Asymmetric error bars (below, above) of estimates; 0 where there is no interval."""
    return [[(e.value - e.low) if e is not None and e.has_interval else 0.0 for e in ests],
            [(e.high - e.value) if e is not None and e.has_interval else 0.0 for e in ests]]


def _bars(path: Path, rows: Sequence[tuple[Group, Estimate]], ylabel: str, title: str) -> None:
    """One bar per setting with its interval; a bar without one is hatched."""
    ax = (fig := _new_figure(max(6.0, 1.1 * len(rows) + 2.5), 4.6)).add_subplot()
    ests = [e for _, e in rows]
    bars = ax.bar(range(len(rows)), [e.value for e in ests], 0.6, yerr=_yerr(ests), capsize=4,
                  color=[_COLORS.get(g.first.method or "", "C9") for g, _ in rows])
    for bar, e in zip(bars, ests, strict=True):
        if not e.has_interval:
            bar.set_hatch("//")
    ax.set_xticks(range(len(rows)), [g.label for g, _ in rows], rotation=15, ha="right",
                  fontsize=8)
    ax.set(ylabel=ylabel, title=title)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def _scatter(path: Path, points: Sequence[tuple[Group, Estimate, Estimate]], ylabel: str,
             title: str) -> None:
    """y against output length, one point per setting with both intervals as error bars."""
    ax = (fig := _new_figure(6.4, 4.8)).add_subplot()
    for g, x, y in points:
        ax.errorbar([x.value], [y.value], xerr=_yerr([x]), yerr=_yerr([y]), fmt="o",
                    capsize=4, color=_COLORS.get(g.first.method or "", "C9"), label=g.label)
        ax.annotate(g.label, (x.value, y.value), textcoords="offset points", fontsize=7,
                    xytext=(5, 5 + 9 * (len(ax.texts) % 3)))  # staggered: close points
    ax.margins(0.15)
    ax.set(xlabel="average output length (characters)", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    _save(fig, path)


def _curve(r: RunRecord, key: str) -> list[tuple[Any, Any]]:
    """(step, loss) points of ``key`` in a run's metrics.jsonl, by step; not the
    end-of-training summary row (``train_runtime``)."""
    return sorted((row["step"], row[key]) for row in r.metrics
                  if finite(row.get("step")) is not None and finite(row.get(key)) is not None
                  and (key != "train_loss" or "train_runtime" not in row))


def _final_interval(ax: Any, r: RunRecord, clean: list[tuple[Any, Any]], color: Any,
                    dodge: float, notes: list[str]) -> bool:
    """The final clean loss's bootstrap interval as an error bar at the last step, moved
    ``dodge`` steps sideways so that the runs' bars do not hide each other."""
    e = run_estimate(r, "heldout_loss", notes)
    step = clean[-1][0] if clean else r.global_step
    if e is None or e.kind != "bootstrap" or finite(step) is None:
        return False
    ax.errorbar([step + dodge], [e.value], yerr=_yerr([e]), fmt="s", capsize=4, color=color,
                markersize=4)
    return True


def _loss_figure(path: Path, runs: Sequence[RunRecord], datasets: Sequence[str],
                 notes: list[str]) -> tuple[bool, int]:
    """Loss curves; returns (drawn, how many runs got their final interval)."""
    series = [(r, r.label if len(datasets) == 1 else f"{r.label} · {r.dataset}", train, clean)
              for r in sorted_runs(runs)
              if (train := _curve(r, "train_loss")) + (clean := _curve(r, "clean_eval_loss"))]
    if not series:
        return False, 0
    axes = (fig := _new_figure(11.0, 4.4)).subplots(1, 2)
    styles = ["-", "--", ":", "-."]
    seen: dict[str, int] = {}
    with_ci = 0
    last = max((c[-1][0] for *_, c in series if c), default=1)
    for i, (r, label, train, clean) in enumerate(series):
        k = seen.get(r.method or "", 0)
        seen[r.method or ""] = k + 1
        kw = {"color": _COLORS.get(r.method or "", None), "linestyle": styles[k % len(styles)],
              "label": label}
        if train:  # markers when there are few points (a lone point has no line)
            axes[0].plot(*zip(*train, strict=True), marker="o" if len(train) <= 30 else None,
                         markersize=3, **kw)
        if clean:
            axes[1].plot(*zip(*clean, strict=True), marker="o", markersize=3, **kw)
        dodge = 0.015 * last * (i - (len(series) - 1) / 2)
        with_ci += _final_interval(axes[1], r, clean, kw["color"], dodge, notes)
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
    return True, with_ci


def _n_and_kinds(ests: Sequence[Estimate], what: str) -> str:
    ns = sorted({e.n_text("not recorded") for e in ests})
    kinds = sorted({e.interval_name() for e in ests if e.has_interval})
    return (f"n = {', '.join(ns)} {what} per setting; interval: "
            f"{', '.join(kinds) or 'none'}")


def _score_figures(out: Path, ms: Measured, notes: list[str]) -> dict[str, str]:
    """The score by setting (bars) and against output length (scatter): the win rate when
    a run has one, else the exact-answer accuracy."""
    key = next((k for k in ("win_rate", "exact_answer") if ms.has(k)), None)
    if key is None:
        notes.append("no run has a win rate or an exact-answer score: no score figures")
        return {}
    m = ms.metric(key)
    rows = [(g, e) for i, g in enumerate(ms.groups) if (e := ms.estimates.get((i, key)))]
    ylabel, name = f"{m.name} (%)", f"{m.name[0].upper()}{m.name[1:]}"
    _bars(out / "fig_win_rate.png", rows, ylabel, f"{name} by setting")
    bare = [g.label for g, e in rows if not e.has_interval]
    instead = "" if key == "win_rate" else "No run has a win rate: the synthetic held-out " \
        "split's score instead. "
    figures = {"fig_win_rate.png": f"{instead}{name} (%) per setting; error bars: "
               f"{_n_and_kinds([e for _, e in rows], m.what)}."
               + (f" Hatched, no interval: {', '.join(bare)}." if bare else "")}
    points = [(g, x, y) for i, g in enumerate(ms.groups)
              if (x := ms.estimates.get((i, "output_length"))) and x.has_interval
              and (y := ms.estimates.get((i, key))) and y.has_interval]
    if not points:
        notes.append(f"no setting has an interval on both its {m.name} and its output length "
                     "(one seed without per-example results): no length figure")
        return figures
    _scatter(out / "fig_win_rate_vs_length.png", points, ylabel, f"{name} against output length")
    left = [g.label for g, _ in rows if g.label not in {p[0].label for p in points}]
    figures["fig_win_rate_vs_length.png"] = (
        f"{instead}{name} (%) against average output length (characters), one point per "
        f"setting; vertical bars: {_n_and_kinds([p[2] for p in points], m.what)}; horizontal "
        f"bars: {_n_and_kinds([p[1] for p in points], 'outputs')}."
        + (f" Left out (no interval on one axis): {', '.join(left)}." if left else ""))
    return figures


def write_figures(out: Path, runs: Sequence[RunRecord], ms: Measured,
                  datasets: Sequence[str], notes: list[str]) -> dict[str, str]:
    """Write the figures that the runs have data for; return name -> caption (which names
    n and what the intervals are). What cannot be drawn is said in ``notes``."""
    figures = _score_figures(out, ms, notes)
    drawn, with_ci = _loss_figure(out / "fig_loss.png", runs, datasets, notes)
    if drawn:
        figures["fig_loss.png"] = (
            "Training loss with noise (left) and clean held-out loss without noise (right) "
            "over optimizer steps, one line per run (metrics.jsonl); single evaluations, no "
            "intervals. " + (f"Square with error bar beside the last step: the final clean "
                             f"loss per token with its 95% bootstrap interval over the held-out "
                             f"examples (eval/heldout_losses.jsonl; {with_ci} of {len(runs)} "
                             "runs); it weighs every token alike, so it may differ slightly "
                             "from the curve's last point (a mean of batch means)."
                             if with_ci else "No run has per-example held-out losses, so the "
                             "final loss has no interval (symnoise eval RUN --heldout)."))
    else:
        notes.append("no run has a metrics.jsonl with losses: no loss figure")
    return figures
