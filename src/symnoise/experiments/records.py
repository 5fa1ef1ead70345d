"""What the report knows about a run folder (:class:`RunRecord`, read through
:class:`symnoise.run.RunFolder`), which runs are averaged (:func:`symnoise.config.model_setting`)
and the dataset x method grid they form in the tables and figures (:func:`grid_table`)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .._io import finite, group_by
from ..config import PAPER_DATASETS, model_setting
from ..evaluate.judge import LEADERBOARD_JSON
from ..evaluate.winrate import LEADERBOARD_COLUMNS as JUDGE_COLUMNS
from ..noise import METHODS, NORM_MATCHED
from ..run import RunFolder, run_dataset, run_setting
from .tables import Table, mean, num, sd, seeds, text

__all__ = ["LEADERBOARD_COLUMNS", "GridRow", "RunRecord", "assign_variants", "dataset_order",
           "grid_rows", "grid_table", "load_run", "method_rank", "seed_groups", "setting_label",
           "sorted_runs", "win_rate_mark"]

#: The AlpacaEval leaderboard columns (the judge's list) and the length-control variant,
#: shown beside every win rate where the judge wrote them.
LEADERBOARD_COLUMNS = (*JUDGE_COLUMNS, "lc_variant")
_NOISE_AXES = ("method", "alpha", "norm_match")  # rows of their own (symmetric_mode: symnoise's)


def setting_label(method: str | None, alpha: float | None, norm_match: bool | None,
                  *, with_alpha: bool = True) -> str:
    """A noise setting as the tables show it: ``none``, ``uniform α=5``, ``symnoise
    α=5/√3`` (norm-matched Gaussian/Bernoulli/SymNoise), ``gaussian α=5`` (unmatched)."""
    if method is None:
        return "?"
    if method == "none":
        return "none"
    if not with_alpha or alpha is None:
        return method
    return f"{method} α={alpha:g}" + ("/√3" if method in NORM_MATCHED and norm_match else "")


def method_rank(method: str | None) -> int:
    return METHODS.index(method) if method in METHODS else len(METHODS)


def dataset_order(datasets: Any) -> list[str]:
    """The paper's datasets in its column order, then the others sorted."""
    ds = set(datasets)
    known = [d for d in PAPER_DATASETS if d in ds]
    return known + sorted(ds - set(known))


@dataclass
class RunRecord:
    """What the report knows about one run folder (``None``: not available). leaderboard:
    the :data:`LEADERBOARD_COLUMNS` its judge wrote; variant: what sets it apart from the
    runs of its dataset beyond the noise axes and seed (``lr=0.0001``, :func:`assign_variants`)."""

    path: os.PathLike[str] | str
    name: str
    status: str | None = None
    model: str | None = None
    dataset: str = "unknown"
    method: str | None = None
    alpha: float | None = None
    norm_match: bool | None = None
    seed: int | None = None
    global_step: int | None = None
    train_loss: float | None = None
    final_clean_eval_loss: float | None = None
    win_rate: float | None = None
    leaderboard: dict[str, Any] = field(default_factory=dict)
    judge: str | None = None
    reference: str | None = None
    judge_avg_length: float | None = None
    judge_check: dict[str, Any] | None = None
    stats: dict[str, Any] | None = None
    train_stats: dict[str, Any] | None = None
    synthetic: dict[str, Any] | None = None
    harness: dict[str, float] = field(default_factory=dict)
    harness_limit: Any = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    setting: dict[str, Any] = field(default_factory=dict)  # config fields beyond the axes
    variant: str = ""

    @property
    def norm_key(self) -> bool | None:
        """norm_match where it changes the noise (Gaussian/Bernoulli/SymNoise), else None."""
        return bool(self.norm_match) if self.method in NORM_MATCHED else None

    @property
    def alpha_key(self) -> float | None:
        """alpha where it changes the noise (None for method ``none``)."""
        return None if self.method == "none" else self.alpha

    @property
    def label(self) -> str:
        return setting_label(self.method, self.alpha, self.norm_match) + (
            f" [{self.variant}]" if self.variant else "")

    @property
    def judge_mark(self) -> str:
        """``''`` for a win rate from a judge checked usable, ``†`` when its judge was not
        checked, ``‡`` when the check found it not usable."""
        if self.judge_check is None:
            return "†"
        return "" if self.judge_check.get("usable") is True else "‡"

    @property
    def avg_chars(self) -> float | None:
        """Mean output length in characters: the eval statistics, else the judge's."""
        value = finite((self.stats or {}).get("avg_chars"))
        return value if value is not None else self.judge_avg_length

    @property
    def synthetic_accuracy(self) -> float | None:
        return finite((self.synthetic or {}).get("accuracy"))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("metrics")
        return {**out, "path": str(self.path), "label": self.label, "avg_chars": self.avg_chars,
                "metrics_rows": len(self.metrics)}


def _eval_json(run: RunFolder, role: str, notes: list[str]) -> Any:
    try:
        return run.read_eval_json(role)
    except (OSError, ValueError) as exc:
        notes.append(f"{run.eval_file(role)}: unreadable ({exc}); its results are left out")
        return None


def _judged(run: RunFolder, notes: list[str]) -> Mapping[str, Any] | None:
    """The judge's leaderboard row (the first model's), else the eval summary's judge."""
    board_file = run.eval_file("judge") / LEADERBOARD_JSON
    board = None
    if board_file.is_file():
        try:
            board = json.loads(board_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            notes.append(f"{board_file}: unreadable ({exc}); its results are left out")
    if isinstance(board, Mapping) and board:
        if len(board) > 1:
            notes.append(f"{board_file}: {len(board)} entries, the first "
                         f"({next(iter(board))}) is used")
        first = next(iter(board.values()))
        if isinstance(first, Mapping) and first.get("partial"):
            notes.append(f"{board_file}: a partial judge run ({first.get('n')} of "
                         f"{first.get('n_pairs')} pairs judged); its win rate is left out")
            return None
        if isinstance(first, Mapping):
            return first
    summary = _eval_json(run, "summary", notes)
    if isinstance(summary, Mapping) and isinstance(summary.get("judge"), Mapping):
        return summary["judge"]
    return None


def _read_eval(rec: RunRecord, run: RunFolder) -> None:
    notes = rec.notes
    judged = _judged(run, notes)
    if judged is not None:
        rec.win_rate = finite(judged.get("win_rate"))
        rec.leaderboard = {k: judged[k] for k in LEADERBOARD_COLUMNS if judged.get(k) is not None}
        rec.judge, rec.reference = judged.get("judge"), judged.get("reference")
        rec.judge_avg_length = finite(judged.get("avg_length"))
        check = _eval_json(run, "judge_check", notes)
        rec.judge_check = dict(check) if isinstance(check, Mapping) else None
    stats = _eval_json(run, "stats", notes)
    if isinstance(stats, Mapping):
        if isinstance(stats.get("outputs"), Mapping):
            rec.stats = dict(stats["outputs"])
        td = stats.get("train_data")
        if isinstance(td, Mapping) and "skipped" not in td:
            rec.train_stats = dict(td)
    scores = _eval_json(run, "synthetic_scores", notes)
    if isinstance(scores, Mapping) and isinstance(scores.get("overall"), Mapping):
        overall = scores["overall"]
        rec.synthetic = {"accuracy": finite(overall.get("accuracy")),
                         "accuracy_ci95": overall.get("accuracy_ci95"),
                         "n": overall.get("n", scores.get("n")),
                         "format_rate": finite(overall.get("format_rate"))}
    harness = _eval_json(run, "harness", notes)
    if isinstance(harness, Mapping):
        rec.harness = {str(k): v for k, v in (harness.get("summary") or {}).items()
                       if finite(v) is not None}
        rec.harness_limit = (harness.get("config") or {}).get("limit")


def load_run(run_dir: str | os.PathLike[str] | RunFolder, name: str | None = None) -> RunRecord:
    """Read one run folder into a :class:`RunRecord`. A bad ``run.json`` raises ValueError
    naming it; unreadable eval files and metrics lines are noted in ``RunRecord.notes`` and
    left out."""
    run = run_dir if isinstance(run_dir, RunFolder) else RunFolder(run_dir)
    info = run.read_info()
    cfg = info.get("config") or {}
    noise = run_setting(info)
    rec = RunRecord(
        path=run.path, name=name or run.path.name, status=info.get("status"),
        model=cfg.get("model") or (info.get("model_source") or {}).get("path"),
        dataset=run_dataset(info), method=noise["method"], alpha=finite(noise["alpha"]),
        norm_match=noise["norm_match"], seed=run.seed, global_step=info.get("global_step"),
        train_loss=finite(info.get("train_loss")),
        final_clean_eval_loss=finite(info.get("final_clean_eval_loss")),
        setting=_variant_fields(model_setting(cfg)))
    try:
        rec.metrics = run.read_metrics()
    except (OSError, ValueError) as exc:
        rec.notes.append(f"{exc}; the loss curve of {rec.name} is left out")
    _read_eval(rec, run)
    return rec


def _variant_fields(setting: dict[str, Any]) -> dict[str, Any]:
    """A model setting less the table's own axes (method, alpha, norm matching), the other
    noise fields beside the rest (``symmetric_mode``, ``noise_on``)."""
    noise = setting.pop("noise", None) or {}
    return {**setting, **{k: v for k, v in noise.items() if k not in _NOISE_AXES}}


def assign_variants(runs: Sequence[RunRecord]) -> None:
    """Set each run's ``variant``: the settings (config fields, judge, reference) that take
    more than one value among the runs of its dataset, besides method, alpha, norm matching
    and seed, so that only runs that differ by seed alone share a table cell (a field a run
    does not record is no difference)."""
    for members in group_by(runs, lambda r: r.dataset).values():
        values = [{**r.setting, "judge": r.judge, "reference": r.reference} for r in members]
        keys = sorted({k for v in values for k in v})
        varying = [k for k in keys if len({json.dumps(v[k], sort_keys=True, default=str)
                                           for v in values if v.get(k) is not None}) > 1]
        for r, v in zip(members, values, strict=True):
            r.variant = ", ".join(f"{k}={v[k]}" for k in varying if v.get(k) is not None)


# -- the dataset x method grid of the tables ----------------------------------------
#: Leading CSV columns of the dataset x method tables. source: ``runs`` (rows of these
#: runs), ``paper`` (published numbers) or ``training data``.
_GRID_KEYS = ("row", "source", "method", "alpha", "norm_match", "alphas")


def sorted_runs(runs: Sequence[RunRecord]) -> list[RunRecord]:
    order = dataset_order(r.dataset for r in runs)
    return sorted(runs, key=lambda r: (order.index(r.dataset), method_rank(r.method), r.variant,
                                       r.alpha_key if r.alpha_key is not None else -1.0,
                                       r.norm_key is True, r.name))


def seed_groups(runs: Sequence[RunRecord]) -> list[list[RunRecord]]:
    """Runs that differ only by seed (dataset, method, alpha, norm matching, variant), in
    table order: a row of the headline and of the tables that average seeds."""
    return list(group_by(sorted_runs(runs), lambda r: (r.dataset, r.method, r.alpha_key,
                                                        r.norm_key, r.variant)).values())


def win_rate_mark(runs: Sequence[RunRecord]) -> str:
    """``‡`` when a judge of these win rates was found not usable, ``†`` when one was not
    checked, else empty."""
    marks = {r.judge_mark for r in runs if r.win_rate is not None}
    return "‡" if "‡" in marks else "†" if "†" in marks else ""


@dataclass
class GridRow:
    method: str | None
    norm_key: bool | None
    variant: str
    alpha: float | None  # the row's alpha when it has one for all its cells
    runs: dict[str, list[RunRecord]]  # dataset -> runs (differing by seed only)

    def label(self) -> str:
        tail = f" [{self.variant}]" if self.variant else ""
        if self.alpha is not None or self.method == "none":
            return setting_label(self.method, self.alpha, self.norm_key) + tail
        return f"{self.method} (α per cell{', norm-matched' if self.norm_key else ''}){tail}"

    def alpha_of(self, dataset: str) -> float | None:
        alphas = {r.alpha_key for r in self.runs.get(dataset, [])}
        return next(iter(alphas)) if len(alphas) == 1 else None

    def alphas(self) -> str:
        return ";".join(f"{d}:{self.alpha_of(d):g}" for d in self.runs
                        if self.alpha_of(d) is not None)


def grid_rows(runs: Sequence[RunRecord]) -> list[GridRow]:
    """Rows of the dataset x method tables: one per (method, norm matching, variant); split
    by alpha when one dataset holds several alphas of that method (an alpha sweep)."""
    rows: list[GridRow] = []
    for (method, nk, variant), members in group_by(
            runs, lambda r: (r.method, r.norm_key, r.variant)).items():
        alphas = {r.alpha_key for r in members}
        split = any(len({r.alpha_key for r in ms}) > 1
                    for ms in group_by(members, lambda r: r.dataset).values())
        for alpha in sorted(alphas, key=lambda a: (a is None, a or 0.0)) if split else [None]:
            cells = group_by((r for r in members if not split or r.alpha_key == alpha),
                             lambda r: r.dataset)
            row_alpha = alpha if split else (next(iter(alphas)) if len(alphas) == 1 else None)
            rows.append(GridRow(method, nk, variant, row_alpha, cells))
    rows.sort(key=lambda g: (method_rank(g.method), g.method or "", g.variant,
                             g.alpha if g.alpha is not None else -1.0, g.norm_key is True))
    return rows


def grid_table(name: str, title: str, runs: Sequence[RunRecord], datasets: Sequence[str],
               value: Callable[[RunRecord], float | None], digits: int, *, average: bool,
               note: str = "", extra_rows: Sequence[tuple[str, dict[str, float | None]]] = (),
               marks: bool = False) -> Table:
    """Rows :func:`grid_rows`, a column per dataset (+ Average: the mean of the row's cells,
    only when it has every column). CSV: the cell means, each cell's sd and n, the average."""
    table = Table(name, title, {
        "method": text("row"),
        **{d: seeds(d, digits, mark=f"{d} mark", note=f"{d} α") for d in datasets},
        **({"Average": num("average", digits)} if average else {})}, [
        *_GRID_KEYS, *datasets, *(f"{d} sd" for d in datasets), *(f"{d} n" for d in datasets),
        *(["average"] if average else [])], note=note)
    for label, cells in extra_rows:
        table.add(row=label, source=label, **cells)
    for g in grid_rows(runs):
        record: dict[str, Any] = {}
        for d in datasets:
            members = [r for r in g.runs.get(d, []) if value(r) is not None]
            vals = [value(r) for r in members]
            record |= {d: mean(vals), f"{d} sd": sd(vals), f"{d} n": len(vals) or None,
                       f"{d} mark": win_rate_mark(members) if marks else ""}
            if g.alpha is None and g.method != "none" and vals and g.alpha_of(d) is not None:
                record[f"{d} α"] = f"α={g.alpha_of(d):g}"
        means = [record[d] for d in datasets]
        avg = mean(means) if None not in means else None  # type: ignore[arg-type]
        table.add(row=g.label(), source="runs", method=g.method, alpha=g.alpha,
                  norm_match=g.norm_key, alphas=g.alphas() or None, average=avg, **record)
    return table
