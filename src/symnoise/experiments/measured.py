"""The report's headline: every metric present per setting with n, seeds and an interval
(:func:`run_estimate`), and each noisy setting's paired difference from no noise
(:func:`paired_difference`, i.e. ``symnoise compare``); the README ("symnoise report")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from .._io import MISSING, finite, fmt
from ..evaluate.paired import PairedDiff, bootstrap_mean
from ..evaluate.per_example import MissingMetric, load_per_example, values_of
from ..evaluate.stats import wilson_interval
from ..run import RunFolder
from .records import RunRecord, seed_groups
from .tables import Table, diff_text, interval, mean, sd, text

__all__ = ["METRICS", "Estimate", "Measured", "Metric", "measure", "measured_table"]


@dataclass(frozen=True)
class Metric:
    """A headline metric: its key (as :mod:`.compare` names it), how it is shown, how many
    digits, what its examples are, and how to get it when no run has it."""

    key: str
    name: str
    unit: str
    digits: int
    what: str
    hint: str
    paired: bool = True  # compare_runs has per-example values for it


METRICS = (
    Metric("heldout_loss", "clean held-out loss", "nats/token, lower is better", 4, "examples",
           "No clean held-out loss: train with a held-out set (the default; "
           "`symnoise train --eval-data FILE`) and `symnoise eval RUN --heldout`."),
    Metric("exact_answer", "exact-answer accuracy", "%", 1, "items",
           "No exact-answer accuracy: `symnoise eval RUN --synthetic` (the built-in suite's "
           "held-out split)."),
    Metric("win_rate", "win rate", "%", 1, "prompts",
           "No win rates: `symnoise eval RUN --judge openai:MODEL --base-url URL` (or "
           "`--judge hf:PATH`), or `symnoise demo --judge ...`."),
    Metric("output_length", "output length", "characters", 1, "outputs",
           "No output lengths: `symnoise eval RUN` (it generates the answers and measures them)."),
    Metric("rep_2", "2-gram repetition", "%", 2, "outputs",
           "No repetition: `symnoise eval RUN` (it needs outputs of at least N words; "
           "`--words`).", paired=False),
    # preference runs only (no hint: an SFT report is not told to get them)
    Metric("preference_accuracy", "held-out preference accuracy", "%", 1, "pairs", ""),
    Metric("reward_margin", "held-out reward margin", "β·nats", 3, "pairs", ""),
)
_KINDS = {"Wilson": "95% Wilson", "bootstrap": "95% bootstrap",
          "judge SE": "±1.96 SE of the judge", "": "none"}


@dataclass(frozen=True)
class Estimate:
    """A value with its interval (``low``/``high``; None: no interval) and what the
    interval is (``kind``: Wilson, bootstrap, judge SE, sd, or '' for none). n: examples
    per run (None: not known); seeds: runs averaged."""

    value: float
    low: float | None
    high: float | None
    kind: str
    n: int | None
    seeds: int = 1
    seed_text: str = ""  # the seeds of the runs it comes from

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    def interval_name(self) -> str:
        return f"mean ± sd over {self.seeds} seeds" if self.kind == "sd" else _KINDS[self.kind]

    def text(self, digits: int) -> str:
        v = fmt(self.value, f".{digits}f")
        if self.kind == "sd" and self.high is not None:
            return f"{v} ± {self.high - self.value:.{digits}f}"
        return f"{v} {interval(self.low, self.high, f'.{digits}f')}" if self.has_interval else v

    def n_text(self, unknown: str = MISSING) -> str:
        if self.n is None:
            return unknown
        return str(self.n) if self.seeds == 1 else f"{self.n} × {self.seeds}"


def _fallback(r: RunRecord, metric: str) -> Estimate | None:
    """A run's value without per-example results: the judge's SE for a win rate, else no
    interval."""
    if metric == "win_rate":
        se, n = finite(r.leaderboard.get("standard_error")), r.leaderboard.get("n_total")
        if r.win_rate is not None and se is not None:
            return Estimate(r.win_rate, r.win_rate - 1.96 * se, r.win_rate + 1.96 * se,
                            "judge SE", n)
    value = {"heldout_loss": r.final_clean_eval_loss, "output_length": r.avg_chars,
             "win_rate": r.win_rate}.get(metric)
    return None if value is None else Estimate(value, None, None, "", None)


def run_estimate(r: RunRecord, metric: str, notes: list[str]) -> Estimate | None:
    """One run's value of ``metric`` with its interval (module doc); None when it has none."""
    if metric == "exact_answer":
        s = r.synthetic or {}
        ci = s.get("accuracy_ci95") or []
        lo, hi = (finite(ci[0]), finite(ci[1])) if len(ci) == 2 else (None, None)
        if r.synthetic_accuracy is None:
            return None
        wilson = lo is not None and hi is not None
        return Estimate(100 * r.synthetic_accuracy, 100 * lo if wilson else None,  # type: ignore[operator]
                        100 * hi if wilson else None, "Wilson" if wilson else "", s.get("n"))
    if metric == "rep_2":
        value = finite((r.stats or {}).get("rep_2"))
        return None if value is None else Estimate(value, None, None, "", (r.stats or {}).get(
            "n_kept"))
    if metric == "win_rate" and r.win_rate is None:
        return None
    try:
        data = load_per_example(RunFolder(r.path), metric)
    except MissingMetric:
        return _fallback(r, metric)
    except ValueError as exc:
        notes.append(f"{r.name}: per-example {metric} unreadable ({exc}); shown without "
                     "its interval")
        return _fallback(r, metric)
    values = [v for v in values_of(data).values() if v is not None]
    if not values:
        return _fallback(r, metric)
    if metric == "preference_accuracy":  # a proportion: Wilson, as eval reports it
        lo, hi = wilson_interval(wins := sum(v > 0 for v in values), len(values))
        return Estimate(100 * wins / len(values), 100 * lo, 100 * hi, "Wilson", len(values))
    d = bootstrap_mean(values, weights=list(data[1].values()) if isinstance(data, tuple) else None)
    return Estimate(d.diff, d.ci_low, d.ci_high, "bootstrap", d.n)


def group_estimate(members: Sequence[RunRecord], metric: str, notes: list[str]
                   ) -> Estimate | None:
    """One run's :func:`run_estimate`; several seeds: mean ± sd over them. ``seed_text``
    names the seeds of the runs that have the metric."""
    found = [(r, e) for r in members if (e := run_estimate(r, metric, notes)) is not None]
    if not found:
        return None
    seeds = ", ".join(MISSING if r.seed is None else str(r.seed) for r, _ in found)
    if len(found) == 1:
        return replace(found[0][1], seed_text=seeds)
    vals = [e.value for _, e in found]
    m, s = mean(vals), sd(vals)
    ns = {e.n for _, e in found}
    return Estimate(m, m - s, m + s, "sd", ns.pop() if len(ns) == 1 else None,  # type: ignore[operator]
                    seeds=len(found), seed_text=seeds)


@dataclass
class Group:
    """Runs that differ only by seed (a row of the headline)."""

    runs: list[RunRecord]
    label: str

    @property
    def first(self) -> RunRecord:
        return self.runs[0]


@dataclass
class Measured:
    """Every headline estimate: ``estimates[(row, metric)]``, ``diffs[(row, metric)]`` (the
    paired difference from the no-noise row: None when it cannot be paired), the metrics
    present and those no run has."""

    groups: list[Group]
    estimates: dict[tuple[int, str], Estimate] = field(default_factory=dict)
    diffs: dict[tuple[int, str], PairedDiff | None] = field(default_factory=dict)
    present: list[Metric] = field(default_factory=list)
    missing: list[Metric] = field(default_factory=list)

    def has(self, key: str) -> bool:
        return any(m.key == key for m in self.present)

    def metric(self, key: str) -> Metric:
        return next(m for m in METRICS if m.key == key)

    def base_of(self, i: int) -> int | None:
        """The no-noise row of row ``i``'s dataset and variant (None: there is none)."""
        g = self.groups[i].first
        return next((j for j, h in enumerate(self.groups) if h.first.method == "none"
                     and h.first.dataset == g.dataset and h.first.variant == g.variant), None)

    def sentences(self) -> list[str]:
        """One plain sentence per metric present: each row's value with its interval, and
        the differences from no noise."""
        return [_sentence(self, m) for m in self.present]


def paired_difference(a: Sequence[RunRecord], b: Sequence[RunRecord], metric: str,
                      what: str, notes: list[str]) -> PairedDiff | None:
    """``metric`` of runs ``b`` − runs ``a`` with its paired interval (``symnoise compare``);
    None, with a note starting with ``what``, when it has none."""
    from .compare import compare_runs

    try:
        mc = compare_runs([r.path for r in a], [r.path for r in b], metrics=[metric])[0]
    except ValueError as exc:
        notes.append(f"{what}: no paired interval ({exc})")
        return None
    if mc.result is None:
        notes.append(f"{what}: no paired interval ({mc.skipped})")
    return mc.result


def measure(runs: Sequence[RunRecord], notes: list[str]) -> Measured:
    """The headline estimates of ``runs`` (module doc); problems go to ``notes``."""
    many = len({r.dataset for r in runs}) > 1
    out = Measured([Group(ms, ms[0].label + (f" · {ms[0].dataset}" if many else ""))
                    for ms in seed_groups(runs)])
    for m in METRICS:
        for i, g in enumerate(out.groups):
            if (e := group_estimate(g.runs, m.key, notes)) is not None:
                out.estimates[(i, m.key)] = e
        (out.present if any(k == m.key for _, k in out.estimates) else out.missing).append(m)
    for m in (m for m in out.present if m.paired):
        for i, g in enumerate(out.groups):
            base = out.base_of(i)
            if base is None or base == i or (i, m.key) not in out.estimates \
                    or (base, m.key) not in out.estimates:
                continue
            a = out.groups[base]
            out.diffs[(i, m.key)] = paired_difference(
                a.runs, g.runs, m.key, f"{g.label} − {a.label} {m.key}", notes)
    return out


def measured_table(ms: Measured) -> Table:
    """The headline: one row per (metric present, setting) with seeds, n, value with its
    interval, and the difference from the no-noise row with its paired interval."""
    table = Table("measured", "What the runs measured", {
        "metric": lambda r: f"{r['m'].name} ({r['m'].unit})", "setting": text("setting"),
        "seeds": lambda r: r["e"].seed_text, "n per run": lambda r: r["e"].n_text(),
        "value": lambda r: r["e"].text(r["m"].digits), "interval": text("interval"),
        "difference from none [95%]": lambda r: "(baseline)" if r["base"] else diff_text(
            r["d"], r["m"].digits) if r["m"].paired else MISSING}, [
        "metric", "unit", "dataset", "setting", "method", "seeds", "n", "value", "low", "high",
        "interval", "diff", "diff_low", "diff_high", "diff_n", "significant"],
        note="value [low, high]: the interval named in 'interval' (95% Wilson for a "
             "proportion, 95% bootstrap over the run's examples where per-example results "
             "exist); a ± s: mean ± sd over the seeds; n per run: examples (× seeds). "
             "Clean held-out loss: the token-weighted mean of eval/heldout_losses.jsonl where "
             "it exists, else the run's final clean loss (run.json). "
             "Difference from none: B − none, paired bootstrap over the shared examples "
             "(stratified by seed), 95% interval, * when it excludes 0; '-' where it cannot "
             "be paired (see Notes). Repetition is a statistic of the whole set of outputs "
             "(n: those of at least N words): no per-example values, so no interval for one "
             "run and no paired difference.")
    for m in ms.present:
        for i, g in enumerate(ms.groups):
            if (e := ms.estimates.get((i, m.key))) is None:
                continue
            d = ms.diffs.get((i, m.key))
            table.add(m=m, e=e, d=d, base=ms.base_of(i) == i, metric=m.key, unit=m.unit,
                      dataset=g.first.dataset, setting=g.label, method=g.first.method,
                      seeds=e.seeds, n=e.n, value=e.value, low=e.low, high=e.high,
                      interval=e.interval_name(), **dict(zip(
                          ("diff", "diff_low", "diff_high", "diff_n", "significant"),
                          (d.diff, d.ci_low, d.ci_high, d.n, d.significant) if d is not None
                          else (None,) * 5, strict=True)))
    return table


def _sentence(ms: Measured, m: Metric) -> str:
    rows = [(i, g, e) for i, g in enumerate(ms.groups) if (e := ms.estimates.get((i, m.key)))]
    kinds = sorted({e.interval_name() for _, _, e in rows})
    ns = sorted({e.n_text("not recorded") for _, _, e in rows})
    head = (f"{m.name[0].upper()}{m.name[1:]} ({m.unit}; n = {', '.join(ns)} {m.what} per run; "
            f"interval: {', '.join(kinds)}): ")
    text = head + ", ".join(f"{g.label} {e.text(m.digits)}" for _, g, e in rows)
    diffs = [(g, ms.diffs[(i, m.key)]) for i, g, _ in rows if (i, m.key) in ms.diffs]
    if diffs:
        parts = [f"{g.label} {diff_text(d, m.digits, star=False)}"
                 + ("" if d is None else " (significant)" if d.significant
                    else " (not significant)") for g, d in diffs]
        text += "; difference from none (paired 95% bootstrap): " + ", ".join(parts)
    return text + "."
