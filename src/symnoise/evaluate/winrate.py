"""Win rates of a set of annotations: AlpacaEval's leaderboard columns (from
:mod:`alpaca_eval.metrics`), the offline length control and our report (README: judge)."""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import logging
import math
import statistics
import sys
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .._io import fmt, markdown_table, short
from ..outputs import outcome, preference
from .judge_prompts import JudgeError

__all__ = ["LC_OFFLINE", "LC_GLM", "LEADERBOARD_COLUMNS", "leaderboard_metrics",
           "length_controlled", "load_alpaca_eval", "DatasetScore", "JudgeReport", "win_rate",
           "build_report", "leaderboard_markdown", "NO_DATASET", "OUR_ANNOTATOR"]

LC_GLM = "length_controlled_minimal"
LC_OFFLINE = "no-instruction-difficulty (offline)"
LC_HUB_NOTE = ("AlpacaEval 2's full length control adds an instruction-difficulty term read "
               "from tatsu-lab/alpaca_eval's df_gamed.csv on the Hugging Face Hub; not used")
LEADERBOARD_COLUMNS = ("win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws",
                       "n_total", "discrete_win_rate", "avg_length",
                       "length_controlled_winrate", "lc_standard_error")
MIN_LC_ITEMS = 10  # GroupKFold needs 5 groups; fewer than 10 items is no fit worth showing
NO_DATASET = "(none)"
OUR_ANNOTATOR = "symnoise-pairwise"  # our own prompt; never one of AlpacaEval's annotators


def load_alpaca_eval() -> Any:
    """The imported ``alpaca_eval`` package. Its 0.6 imports ``pkg_resources`` (gone from
    setuptools 82): a stand-in is registered when missing. The root log level is put back."""
    if "pkg_resources" not in sys.modules and importlib.util.find_spec("pkg_resources") is None:
        from packaging.version import parse

        stand_in = types.ModuleType("pkg_resources")
        stand_in.parse_version = parse  # type: ignore[attr-defined]
        stand_in.get_distribution = lambda name: types.SimpleNamespace(  # type: ignore[attr-defined]
            version=importlib.metadata.version(name))
        sys.modules["pkg_resources"] = stand_in
    level = logging.getLogger().level
    try:
        import alpaca_eval
        import alpaca_eval.annotators
        import alpaca_eval.metrics
    except ImportError as exc:
        raise JudgeError("AlpacaEval's annotators and metrics need the alpaca-eval package: "
                         "pip install 'symnoise[judge]'") from exc
    finally:
        logging.getLogger().setLevel(level)
    return alpaca_eval


def _num(value: Any, digits: int | None = None) -> Any:
    """A JSON-ready number: numpy scalars unwrapped, NaN/inf as None, floats rounded."""
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return round(value, digits) if digits is not None and value is not None else value


def length_controlled(frame: Any) -> tuple[float, float]:
    """(LC win rate, its standard error) in percent, from a frame with ``preference``,
    ``output_1``, ``output_2``: AlpacaEval 2's GLM without instruction difficulty."""
    import numpy as np
    import pandas as pd

    glm = load_alpaca_eval().metrics.glm_winrate
    info = glm.GLM_INFO[LC_GLM]
    df = frame.reset_index(drop=True)
    delta = df["output_1"].str.len() - df["output_2"].str.len()
    data = pd.DataFrame({
        "preference": pd.Series([preference(p, f"length control: row {i}")
                                 for i, p in enumerate(df["preference"])], dtype=float) - 1,
        "std_delta_len": delta / delta.std(),
        "not_gamed_baseline": True,
    })
    test = data[["not_gamed_baseline"]].copy()
    test["std_delta_len"] = 0
    train, x_test = glm.make_dmatrix_for_model(data, test, formula=info["formula"])
    train = train[train["preference"].notna()]
    model = glm.fit_LogisticRegressionCV(train, "preference", is_ytrue_proba=True,
                                         **info["kwargs"])
    predicted = model.predict_proba(x_test)[:, 1]
    return float(np.mean(predicted) * 100), float(pd.Series(predicted).sem() * 100)


def leaderboard_metrics(annotations: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The leaderboard columns (:data:`LEADERBOARD_COLUMNS`), ``lc_variant`` and ``lc_note``
    of rows with ``output_1``, ``output_2`` and ``preference`` (None: left out of every column
    but ``avg_length``, as alpaca_eval leaves them out)."""
    import pandas as pd

    frame = pd.DataFrame([{"preference": a.get("preference"), "output_1": a["output_1"],
                           "output_2": a["output_2"]} for a in annotations],
                         columns=["preference", "output_1", "output_2"])
    judged = frame[frame["preference"].notna()]
    out: dict[str, Any] = dict.fromkeys(LEADERBOARD_COLUMNS)
    if len(judged):
        get_winrate = load_alpaca_eval().metrics.get_winrate
        out.update({k: _num(v) for k, v in get_winrate(judged).items()})
    else:
        out.update(n_wins=0, n_wins_base=0, n_draws=0, n_total=0)
    out["avg_length"] = _num(float(frame["output_2"].str.len().mean())) if len(frame) else None
    out["lc_variant"], out["lc_note"] = LC_OFFLINE, LC_HUB_NOTE
    deltas = frame["output_1"].str.len() - frame["output_2"].str.len()
    if len(judged) < MIN_LC_ITEMS or not deltas.std() > 0:
        out["lc_note"] = (f"not computed: needs >= {MIN_LC_ITEMS} judged items with differing "
                          f"lengths (got {len(judged)}); " + LC_HUB_NOTE)
        return out
    out["length_controlled_winrate"] = _num(length_controlled(frame)[0])
    # Without instruction difficulty every item gets the same prediction, so alpaca_eval's
    # standard error of the predictions is 0 by construction: not an uncertainty, not shown.
    out["lc_note"] = LC_HUB_NOTE + "; lc_standard_error needs that term (0 by construction)"
    return out


def win_rate(preferences: Iterable[float]) -> tuple[float, float, int]:
    """Win rate of output_2 (the model) ``mean((p - 1) * 100)``, its standard error (sample
    stdev / sqrt(n)) and n; NaN where undefined (no items; one item for the error)."""
    values = [(float(p) - 1.0) * 100.0 for p in preferences]
    n = len(values)
    if n == 0:
        return math.nan, math.nan, 0
    se = statistics.stdev(values) / math.sqrt(n) if n > 1 else math.nan
    return statistics.fmean(values), se, n


@dataclass
class DatasetScore:
    """Win rate on one ``dataset`` subset."""

    win_rate: float
    standard_error: float
    n: int
    n_total: int


@dataclass
class JudgeReport:
    """Result of :func:`symnoise.evaluate.judge.judge_outputs`. Counts are per item except
    ``n_judgments`` / ``n_cached`` / ``n_requested`` (questions asked of the judge)."""

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
    first_error: str | None = None
    output_dir: str | None = None
    files: dict[str, str] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        """True when some pairs got no verdict (the judge failed on them): the win rate
        then covers fewer pairs than were asked for, and is not the result."""
        return self.n_errors > 0

    def failure(self) -> str | None:
        """What went wrong, in one paragraph, for a partial report; None when complete."""
        if not self.partial:
            return None
        cache = self.files.get("cache")
        return (f"{self.n_errors} of {self.n_total} pairs got no verdict from the judge "
                f"{self.judge}; first error: {(self.first_error or '?').rstrip('.')}. The win rate covers only "
                f"{self.n_parsed} of {self.n_total} pairs: it is partial, not the result. "
                + (f"Finished verdicts are kept in {cache}; " if cache else "")
                + "rerun the same command to complete the rest.")

    @property
    def unparseable_share(self) -> float:
        """Share of items whose verdict could not be read (failed requests not counted)."""
        return self.n_unparseable / self.n_total if self.n_total else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["per_dataset"] = {k: {f: _num(x, 6) for f, x in v.items()}
                               for k, v in data["per_dataset"].items()}
        for key in ("win_rate", "standard_error", "avg_length", "avg_length_reference"):
            data[key] = _num(data[key], 6)
        data["unparseable_share"] = round(self.unparseable_share, 6)
        data["partial"] = self.partial
        data.update(self.metrics)
        return data

    def leaderboard_row(self) -> dict[str, Any]:
        """The row written to ``leaderboard.json`` under the model's name."""
        return {
            **{k: self.metrics.get(k) for k in LEADERBOARD_COLUMNS},
            "lc_variant": self.metrics.get("lc_variant"),
            "n": self.n_parsed, "n_unparseable": self.n_unparseable, "n_errors": self.n_errors,
            "unparseable_share": round(self.unparseable_share, 6),
            "avg_length_reference": _num(self.avg_length_reference, 6),
            "per_dataset": {k: _num(v.win_rate, 6) for k, v in self.per_dataset.items()},
            "annotator": self.annotator, "judge": self.judge, "reference": self.reference_name,
            "both_orders": self.both_orders, "partial": self.partial, "n_pairs": self.n_total,
            "first_error": self.first_error,
        }

    def format_table(self) -> str:
        """A plain-text summary: overall row, per-dataset rows, LC, counts."""
        m, pct = self.metrics, functools.partial(fmt, missing="n/a")
        warning = ([f"PARTIAL RESULT: the win rate covers {self.n_parsed} of {self.n_total} "
                    f"pairs; {self.n_errors} got no verdict (judge errors)"]
                   if self.partial else [])
        header = (f"{'name':<28} {'win_rate':>9} {'std_err':>8} {'LC':>7} {'discrete':>8} "
                  f"{'n':>6} {'avg_len':>8}  annotator / judge")
        lines = [*warning, header, "-" * len(header),
                 f"{short(self.name, 28):<28} {pct(self.win_rate):>9} "
                 f"{pct(self.standard_error):>8} {pct(m.get('length_controlled_winrate')):>7} "
                 f"{pct(m.get('discrete_win_rate')):>8} {self.n_parsed:>6} "
                 f"{self.avg_length:>8.0f}  {self.annotator} / {self.judge}"]
        for name, score in self.per_dataset.items():
            lines.append(f"  {short(name, 26):<26} {pct(score.win_rate):>9} "
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


def build_report(annotations: Sequence[Mapping[str, Any]], *, name: str, reference_name: str,
                 judge: str, annotator: str, **counts: Any) -> JudgeReport:
    """A :class:`JudgeReport` of annotations (``status`` ok / unparseable / error,
    ``preference``, ``output_1``, ``output_2``, ``dataset``); ``counts`` fill the rest."""
    from collections import Counter

    ok = [(a.get("dataset") or NO_DATASET, preference(a["preference"], f"annotation {i}"))
          for i, a in enumerate(annotations) if a["status"] == "ok"]
    prefs = [p for _, p in ok]
    rate, se, n = win_rate(prefs)
    outcomes = Counter(map(outcome, prefs))
    totals = Counter(a.get("dataset") or NO_DATASET for a in annotations)
    per_dataset = {k: DatasetScore(*win_rate(p for d, p in ok if d == k), totals[k])
                   for k in sorted(totals)}

    def mean_len(texts: list[str]) -> float:
        return statistics.fmean(len(t) for t in texts) if texts else math.nan

    methods = Counter(j["method"] for a in annotations for j in a.get("judgments") or []
                      if j.get("method"))
    return JudgeReport(
        name=name, reference_name=reference_name, judge=judge, annotator=annotator,
        win_rate=rate, standard_error=se, n_total=len(annotations), n_parsed=n,
        n_unparseable=sum(a["status"] == "unparseable" for a in annotations),
        n_errors=sum(a["status"] == "error" for a in annotations),
        n_wins=outcomes["win"], n_losses=outcomes["loss"], n_ties=outcomes["draw"],
        avg_length=mean_len([a["output_2"] for a in annotations]),
        avg_length_reference=mean_len([a["output_1"] for a in annotations]),
        per_dataset=per_dataset,
        metrics=leaderboard_metrics([{**a, "preference": a["preference"] if a["status"] == "ok"
                                      else None} for a in annotations]),
        verdict_methods=dict(methods),
        first_error=next((a.get("error") for a in annotations if a["status"] == "error"), None),
        **counts,
    )


def leaderboard_markdown(report: JudgeReport) -> str:
    """``leaderboard.md``: one row with the leaderboard columns and per-dataset win rates."""
    datasets, m, cell = list(report.per_dataset), report.metrics, functools.partial(fmt, missing="")
    head = ["name", "win_rate", "standard_error", "n", "avg_length", *datasets,
            "discrete_win_rate", "length_controlled_winrate", "unparseable", "annotator", "judge"]
    row = [report.name, cell(report.win_rate), cell(report.standard_error), str(report.n_parsed),
           f"{report.avg_length:.0f}", *(cell(report.per_dataset[d].win_rate) for d in datasets),
           cell(m.get("discrete_win_rate")), cell(m.get("length_controlled_winrate")),
           f"{report.n_unparseable}/{report.n_total}",
           f"`{report.annotator}`", f"`{report.judge}`"]
    orders = "both" if report.both_orders else f"random (seed {report.seed})"
    partial = ([f"**PARTIAL RESULT**: {report.n_parsed} of {report.n_total} pairs judged; "
                f"{report.n_errors} got no verdict (first error: {report.first_error}).", ""]
               if report.partial else [])
    table = markdown_table(head, [row], "l" + "r" * (len(head) - 3) + "ll")
    return "\n".join([*partial, table,
        f"Reference: {report.reference_name}. Items: {report.n_total} total, {report.n_parsed} "
        f"judged, {report.n_unparseable} unparseable, {report.n_errors} errors. Orders: {orders}. "
        f"Length control: {m.get('lc_variant')}.",
        "",
    ])
