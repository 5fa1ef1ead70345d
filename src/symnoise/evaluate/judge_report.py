"""The result of judging one model against a reference: numbers, table, leaderboard files.

Preferences follow AlpacaEval: 1 the reference is better, 2 the model is better, 1.5 a
tie, anything between from log-probabilities or from averaging two orders. The leaderboard
columns come from :func:`symnoise.evaluate.winrate.leaderboard_metrics` (alpaca_eval's
metrics functions); :func:`win_rate` is the same mean in plain Python for one subset.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .winrate import LEADERBOARD_COLUMNS, leaderboard_metrics

__all__ = ["DatasetScore", "JudgeReport", "win_rate", "build_report", "leaderboard_markdown",
           "NO_DATASET", "OUR_ANNOTATOR"]

NO_DATASET = "(none)"
OUR_ANNOTATOR = "symnoise-pairwise"  # our own prompt; never one of AlpacaEval's annotators


def win_rate(preferences: Iterable[float]) -> tuple[float, float, int]:
    """Win rate of output_2 (the model), its standard error, and n.

    ``win_rate = mean((p - 1) * 100)``; ``standard_error = stdev((p - 1) * 100) / sqrt(n)``
    with the sample standard deviation. NaN where undefined (no items; one item for the error).
    """
    values = [(float(p) - 1.0) * 100.0 for p in preferences]
    n = len(values)
    if n == 0:
        return math.nan, math.nan, 0
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(n) if n > 1 else math.nan
    return mean, se, n


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 6)


@dataclass
class DatasetScore:
    """Win rate on one ``dataset`` subset."""

    win_rate: float
    standard_error: float
    n: int
    n_total: int

    def to_dict(self) -> dict[str, Any]:
        return {"win_rate": _num(self.win_rate), "standard_error": _num(self.standard_error),
                "n": self.n, "n_total": self.n_total}


@dataclass
class JudgeReport:
    """Result of :func:`symnoise.evaluate.judge.judge_outputs` (or an AlpacaEval annotator).

    Counts are per item except ``n_judgments`` / ``n_cached`` / ``n_requested``, which count
    questions asked of the judge (two per item with ``both_orders``). ``metrics`` holds the
    AlpacaEval leaderboard columns; ``annotator`` names the prompt and parser
    (``symnoise-pairwise`` is ours), ``judge`` the model that answered.
    """

    name: str
    reference_name: str
    judge: str
    annotator: str
    win_rate: float
    standard_error: float
    n_total: int
    n_parsed: int
    n_unparseable: int
    n_errors: int
    n_wins: int
    n_losses: int
    n_ties: int
    avg_length: float
    avg_length_reference: float
    per_dataset: dict[str, DatasetScore]
    metrics: dict[str, Any]
    n_judgments: int = 0
    n_cached: int = 0
    n_requested: int = 0
    n_unmatched_references: int = 0
    both_orders: bool = False
    seed: int = 0
    template: str = ""
    verdict_methods: dict[str, int] = field(default_factory=dict)
    output_dir: str | None = None
    files: dict[str, str] = field(default_factory=dict)

    @property
    def unparseable_share(self) -> float:
        """Share of items whose verdict could not be read (failed requests not counted)."""
        return self.n_unparseable / self.n_total if self.n_total else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["per_dataset"] = {k: v.to_dict() for k, v in self.per_dataset.items()}
        for key in ("win_rate", "standard_error", "avg_length", "avg_length_reference"):
            data[key] = _num(data[key])
        data["unparseable_share"] = round(self.unparseable_share, 6)
        data.update(self.metrics)
        return data

    def leaderboard_row(self) -> dict[str, Any]:
        """The row written to ``leaderboard.json`` under the model's name."""
        return {
            **{k: self.metrics.get(k) for k in LEADERBOARD_COLUMNS},
            "lc_variant": self.metrics.get("lc_variant"),
            "n": self.n_parsed, "n_unparseable": self.n_unparseable, "n_errors": self.n_errors,
            "unparseable_share": round(self.unparseable_share, 6),
            "avg_length_reference": _num(self.avg_length_reference),
            "per_dataset": {k: _num(v.win_rate) for k, v in self.per_dataset.items()},
            "annotator": self.annotator, "judge": self.judge, "reference": self.reference_name,
            "both_orders": self.both_orders,
        }

    def format_table(self) -> str:
        """A plain-text summary: overall row, per-dataset rows, LC, counts."""

        def pct(x: float | None) -> str:
            return "n/a" if x is None or not math.isfinite(x) else f"{x:.2f}"

        m = self.metrics
        header = (f"{'name':<28} {'win_rate':>9} {'std_err':>8} {'LC':>7} {'discrete':>8} "
                  f"{'n':>6} {'avg_len':>8}  annotator / judge")
        lines = [header, "-" * len(header),
                 f"{_short(self.name, 28):<28} {pct(self.win_rate):>9} "
                 f"{pct(self.standard_error):>8} {pct(m.get('length_controlled_winrate')):>7} "
                 f"{pct(m.get('discrete_win_rate')):>8} {self.n_parsed:>6} "
                 f"{self.avg_length:>8.0f}  {self.annotator} / {self.judge}"]
        for name, score in self.per_dataset.items():
            lines.append(f"  {_short(name, 26):<26} {pct(score.win_rate):>9} "
                         f"{pct(score.standard_error):>8} {'':>7} {'':>8} {score.n:>6}")
        methods = ", ".join(f"{k} {v}" for k, v in sorted(self.verdict_methods.items()))
        lines += [
            f"unparseable: {self.n_unparseable}/{self.n_total} "
            f"({100 * self.unparseable_share:.1f}%); errors: {self.n_errors}; "
            f"verdicts by {methods or 'none'}",
            f"LC: {m.get('lc_variant')} ({m.get('lc_note')})",
            f"judgments: {self.n_cached} cached, {self.n_requested} requested; reference "
            f"'{self.reference_name}' (avg_len {self.avg_length_reference:.0f}, "
            f"{self.n_unmatched_references} unmatched)",
        ]
        return "\n".join(lines)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def build_report(annotations: Sequence[Mapping[str, Any]], *, name: str, reference_name: str,
                 judge: str, annotator: str, **counts: Any) -> JudgeReport:
    """A :class:`JudgeReport` of annotations (``status`` ok / unparseable / error,
    ``preference``, ``output_1``, ``output_2``, ``dataset``); ``counts`` fill the rest."""
    ok = [a for a in annotations if a["status"] == "ok"]
    prefs = [a["preference"] for a in ok]
    rate, se, n = win_rate(prefs)
    groups: dict[str, list[float]] = {}
    totals: dict[str, int] = {}
    for a in annotations:
        key = a.get("dataset") or NO_DATASET
        totals[key] = totals.get(key, 0) + 1
        if a["status"] == "ok":
            groups.setdefault(key, []).append(a["preference"])
    per_dataset = {k: DatasetScore(*win_rate(groups.get(k, [])), totals[k]) for k in sorted(totals)}

    def mean_len(texts: list[str]) -> float:
        return statistics.fmean(len(t) for t in texts) if texts else math.nan

    methods: dict[str, int] = {}
    for a in annotations:
        for j in a.get("judgments") or []:
            if j.get("method"):
                methods[j["method"]] = methods.get(j["method"], 0) + 1
    return JudgeReport(
        name=name, reference_name=reference_name, judge=judge, annotator=annotator,
        win_rate=rate, standard_error=se, n_total=len(annotations), n_parsed=n,
        n_unparseable=sum(a["status"] == "unparseable" for a in annotations),
        n_errors=sum(a["status"] == "error" for a in annotations),
        n_wins=sum(p > 1.5 for p in prefs), n_losses=sum(p < 1.5 for p in prefs),
        n_ties=sum(p == 1.5 for p in prefs),
        avg_length=mean_len([a["output_2"] for a in annotations]),
        avg_length_reference=mean_len([a["output_1"] for a in annotations]),
        per_dataset=per_dataset,
        metrics=leaderboard_metrics([{**a, "preference": a["preference"] if a["status"] == "ok"
                                      else None} for a in annotations]),
        verdict_methods=methods, **counts,
    )


def leaderboard_markdown(report: JudgeReport) -> str:
    """``leaderboard.md``: one row with the leaderboard columns and per-dataset win rates."""
    datasets = list(report.per_dataset)
    m = report.metrics

    def cell(x: Any) -> str:
        return "" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.2f}"

    head = ["name", "win_rate", "standard_error", "n", "avg_length", *datasets,
            "discrete_win_rate", "length_controlled_winrate", "unparseable", "annotator", "judge"]
    row = [report.name, cell(report.win_rate), cell(report.standard_error), str(report.n_parsed),
           f"{report.avg_length:.0f}", *(cell(report.per_dataset[d].win_rate) for d in datasets),
           cell(m.get("discrete_win_rate")), cell(m.get("length_controlled_winrate")),
           f"{report.n_unparseable}/{report.n_total}",
           f"`{report.annotator}`", f"`{report.judge}`"]
    orders = "both" if report.both_orders else f"random (seed {report.seed})"
    return "\n".join([
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 3) + ["---", "---"]) + "|",
        "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |",
        "",
        f"Reference: {report.reference_name}. Items: {report.n_total} total, {report.n_parsed} "
        f"judged, {report.n_unparseable} unparseable, {report.n_errors} errors. Orders: {orders}. "
        f"Length control: {m.get('lc_variant')}.",
        "",
    ])
