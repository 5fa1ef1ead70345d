"""Paper-style tables and figures over many run folders (``symnoise report RUNS_DIR``).

:func:`build_report` finds every run folder under ``RUNS_DIR`` (any folder holding a
``run.json``, at any depth, so sweep layouts work), reads ``run.json``, ``metrics.jsonl``
and the results ``symnoise eval`` left in ``RUN/eval/`` (``judge/leaderboard.json``,
``stats.json``, ``synthetic_scores.json``, ``harness.json``), and writes to the output
folder (default ``RUNS_DIR/report``):

* ``report.md``: every table below, the figures, and notes on anything left out;
* one CSV per table (full precision; a missing value is ``-``);
* ``fig_win_rate.png``: win rate by method and dataset (grouped bars), or, when no run
  has a win rate, the synthetic exact-answer accuracy by method, captioned as such;
* ``fig_win_rate_vs_length.png``: win rate against average response length, one labelled
  point per run (synthetic accuracy when no run has a win rate);
* ``fig_loss.png``: training loss (with noise) and clean held-out loss (without noise)
  over steps, one line per run, coloured by method.

Tables
    * ``table1``: win rate per dataset x method with an Average column (the paper's Table
      1). Rows are noise methods; each row's alpha is in its label, or in each cell when
      the row used a different alpha per dataset (the paper's recipe). The Average is the
      mean of the row's cells and is shown only when the row has every column.
    * ``ablation``: win rate and average character count per noise setting (method, alpha,
      norm matching) and dataset.
    * ``lengths``: character length, whitespace length and 2-gram repetition of the
      outputs per dataset x method, with the training data's responses as a row.
    * ``openllm``: lm-evaluation-harness scores per run (percent).
    * ``synthetic``: exact-answer accuracy on the synthetic held-out split with its 95%
      Wilson interval.
    * ``runs``: every run with its status, final clean held-out loss and training loss.

Several runs in one cell (e.g. seeds) are averaged and the cell says how many. A cell with
no result is ``-``, never filled in. Published numbers of the papers
(:mod:`symnoise.experiments.paper_numbers`) are added as reference rows labelled with
their source: inside Table 1 when the runs match the paper's setting (LLaMA-2-7B, the
paper's datasets, judged against text-davinci-003), otherwise in a separate section
stating they are for reference only and not comparable.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..evaluate.run_eval import (
    EVAL_DIR,
    HARNESS_JSON,
    JUDGE_DIR,
    LEADERBOARD_JSON,
    STATS_FILE,
    SUMMARY_JSON,
    SYNTHETIC_SCORES,
    run_dataset,
    run_setting,
)
from ..models import RUN_INFO
from . import paper_numbers

__all__ = [
    "METHOD_ORDER",
    "ReportResult",
    "RunRecord",
    "Table",
    "build_report",
    "find_runs",
    "load_run",
    "setting_label",
]

METRICS = "metrics.jsonl"
DEFAULT_OUTPUT = "report"
METHOD_ORDER: tuple[str, ...] = ("none", "uniform", "gaussian", "bernoulli", "symnoise")
_NORM_METHODS = ("gaussian", "bernoulli", "symnoise")
MISSING = "-"
_SKIP_DIRS = {"checkpoints", EVAL_DIR, ".git", "__pycache__"}


# --------------------------------------------------------------------------------------
# Run records
# --------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


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
    text = f"{method} α={alpha:g}"
    if method in _NORM_METHODS and norm_match:
        text += "/√3"
    return text


@dataclass
class RunRecord:
    """What the report knows about one run folder (``None``: not available)."""

    path: Path
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
    win_rate_se: float | None = None
    win_n: int | None = None
    judge: str | None = None
    reference: str | None = None
    judge_avg_length: float | None = None
    stats: dict[str, Any] | None = None
    train_stats: dict[str, Any] | None = None
    synthetic: dict[str, Any] | None = None
    harness: dict[str, float] = field(default_factory=dict)
    harness_limit: Any = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def norm_key(self) -> bool | None:
        """norm_match where it changes the noise (Gaussian/Bernoulli/SymNoise), else None."""
        return bool(self.norm_match) if self.method in _NORM_METHODS else None

    @property
    def alpha_key(self) -> float | None:
        """alpha where it changes the noise (None for method ``none``, whose config may still
        carry the default alpha)."""
        return None if self.method == "none" else self.alpha

    @property
    def label(self) -> str:
        return setting_label(self.method, self.alpha, self.norm_match)

    @property
    def avg_chars(self) -> float | None:
        """Mean output length in characters: ``stats.json``, else the judge's average."""
        value = _number((self.stats or {}).get("avg_chars"))
        return value if value is not None else self.judge_avg_length

    @property
    def synthetic_accuracy(self) -> float | None:
        return _number((self.synthetic or {}).get("accuracy"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "name": self.name, "status": self.status,
            "model": self.model, "dataset": self.dataset, "method": self.method,
            "alpha": self.alpha, "norm_match": self.norm_match, "seed": self.seed,
            "label": self.label, "global_step": self.global_step,
            "train_loss": self.train_loss, "final_clean_eval_loss": self.final_clean_eval_loss,
            "win_rate": self.win_rate, "win_rate_se": self.win_rate_se, "win_n": self.win_n,
            "judge": self.judge, "reference": self.reference, "avg_chars": self.avg_chars,
            "stats": self.stats, "train_stats": self.train_stats, "synthetic": self.synthetic,
            "harness": self.harness, "harness_limit": self.harness_limit,
            "metrics_rows": len(self.metrics), "notes": self.notes,
        }


def find_runs(runs_dir: str | Path, *, exclude: Iterable[Path] = ()) -> list[Path]:
    """Every folder under ``runs_dir`` (itself included) holding a ``run.json``, sorted;
    checkpoint and eval folders and the ``exclude`` folders are not searched."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"runs folder not found: {root}")
    skip = {Path(p).resolve() for p in exclude}
    found: list[Path] = []
    seen: set[Path] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        real = folder.resolve()
        if real in skip or real in seen:  # excluded, or reached again through a symlink
            continue
        seen.add(real)
        if (folder / RUN_INFO).is_file():
            found.append(folder)
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir())
        except OSError:
            continue
        stack.extend(c for c in children if c.name not in _SKIP_DIRS)
    return sorted(found)


def _load_json(path: Path, notes: list[str]) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        notes.append(f"{path}: unreadable ({type(exc).__name__}: {exc}); its results are left out")
        return None


def _load_metrics(path: Path, notes: list[str]) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows, bad = [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad.append(lineno)
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad.append(lineno)
    if bad:
        notes.append(f"{path}: {len(bad)} line(s) not JSON objects, left out (first: line "
                     f"{bad[0]})")
    return rows


def load_run(run_dir: str | Path, name: str | None = None) -> RunRecord:
    """Read one run folder into a :class:`RunRecord`. A bad ``run.json`` raises ValueError
    naming it; unreadable eval files are noted in ``RunRecord.notes`` and left out."""
    path = Path(run_dir)
    info_path = path / RUN_INFO
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{info_path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(info, dict):
        raise ValueError(f"{info_path}: expected a JSON object, got {type(info).__name__}")
    cfg = info.get("config") or {}
    setting = run_setting(info)
    rec = RunRecord(
        path=path, name=name or path.name, status=info.get("status"),
        model=cfg.get("model") or (info.get("model_source") or {}).get("path"),
        dataset=run_dataset(info), method=setting["method"],
        alpha=_number(setting["alpha"]), norm_match=setting["norm_match"],
        seed=cfg.get("seed"), global_step=info.get("global_step"),
        train_loss=_number(info.get("train_loss")),
        final_clean_eval_loss=_number(info.get("final_clean_eval_loss")),
    )
    notes = rec.notes
    rec.metrics = _load_metrics(path / METRICS, notes)
    eval_dir = path / EVAL_DIR

    board = _load_json(eval_dir / JUDGE_DIR / LEADERBOARD_JSON, notes)
    judged: Mapping[str, Any] | None = None
    if isinstance(board, Mapping) and board:
        if len(board) > 1:
            notes.append(f"{eval_dir / JUDGE_DIR / LEADERBOARD_JSON}: {len(board)} entries, the "
                         f"first ({next(iter(board))}) is used")
        first = next(iter(board.values()))
        judged = first if isinstance(first, Mapping) else None
    if judged is None:  # eval summary written by symnoise eval
        summary = _load_json(eval_dir / SUMMARY_JSON, notes)
        if isinstance(summary, Mapping) and isinstance(summary.get("judge"), Mapping):
            judged = summary["judge"]
    if judged is not None:
        rec.win_rate = _number(judged.get("win_rate"))
        rec.win_rate_se = _number(judged.get("standard_error"))
        rec.win_n = judged.get("n")
        rec.judge = judged.get("judge")
        rec.reference = judged.get("reference")
        rec.judge_avg_length = _number(judged.get("avg_length"))

    stats = _load_json(eval_dir / STATS_FILE, notes)
    if isinstance(stats, Mapping):
        if isinstance(stats.get("outputs"), Mapping):
            rec.stats = dict(stats["outputs"])
        td = stats.get("train_data")
        if isinstance(td, Mapping) and "skipped" not in td:
            rec.train_stats = dict(td)

    scores = _load_json(eval_dir / SYNTHETIC_SCORES, notes)
    if isinstance(scores, Mapping) and isinstance(scores.get("overall"), Mapping):
        overall = scores["overall"]
        rec.synthetic = {"accuracy": _number(overall.get("accuracy")),
                         "accuracy_ci95": overall.get("accuracy_ci95"),
                         "n": overall.get("n", scores.get("n")),
                         "format_rate": _number(overall.get("format_rate"))}

    harness = _load_json(eval_dir / HARNESS_JSON, notes)
    if isinstance(harness, Mapping):
        summary_h = harness.get("summary") or {}
        rec.harness = {str(k): v for k, v in summary_h.items() if _number(v) is not None}
        rec.harness_limit = (harness.get("config") or {}).get("limit")
    return rec


# --------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------


@dataclass
class Table:
    """A table both as shown (``rows``, strings) and as data (``data``, numbers or None).

    ``header``/``rows`` make the Markdown; ``csv_header``/``data`` make the CSV (numbers at
    full precision, None written as ``-``).
    """

    name: str
    title: str
    header: list[str]
    rows: list[list[str]]
    csv_header: list[str]
    data: list[list[Any]]
    note: str = ""

    def to_markdown(self) -> str:
        def esc(cell: str) -> str:
            return str(cell).replace("|", "\\|")

        align = ["---"] + ["---:" if _numeric_column([r[i] for r in self.rows]) else "---"
                           for i in range(1, len(self.header))]
        lines = ["| " + " | ".join(esc(h) for h in self.header) + " |",
                 "|" + "|".join(align) + "|"]
        lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def write_csv(self, path: Path) -> None:
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(self.csv_header)
            for row in self.data:
                writer.writerow([MISSING if v is None else v for v in row])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "header": self.header,
                "rows": self.rows, "csv_header": self.csv_header, "data": self.data,
                "note": self.note}


def _numeric_column(cells: Sequence[str]) -> bool:
    """True when every present cell of a column starts like a number (or an interval)."""
    present = [c for c in cells if c != MISSING]
    return all(c[:1].isdigit() or c[:1] == "[" or (c[:1] == "-" and c[1:2].isdigit())
               for c in present)


def _fmt(value: float | None, digits: int, scale: float = 1.0) -> str:
    return MISSING if value is None else f"{value * scale:.{digits}f}"


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _method_rank(method: str | None) -> int:
    return METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)


def _dataset_order(datasets: Iterable[str]) -> list[str]:
    ds = set(datasets)
    known = [d for d in paper_numbers.PAPER_DATASETS if d in ds]
    return known + sorted(ds - set(known))


#: Leading CSV columns of the dataset x method tables. source: ``runs`` (rows of these
#: runs), ``paper`` (published numbers) or ``training data``.
_GRID_KEYS = ("row", "source", "method", "alpha", "norm_match", "alphas")


@dataclass
class _GridRow:
    method: str | None
    norm_key: bool | None
    alpha: float | None  # the row's alpha when it has one for all its cells
    runs: dict[str, list[RunRecord]]  # dataset -> runs

    def label(self) -> str:
        if self.alpha is not None or self.method == "none":
            return setting_label(self.method, self.alpha, self.norm_key)
        return f"{self.method} (α per cell{', norm-matched' if self.norm_key else ''})"

    def alpha_of(self, dataset: str) -> float | None:
        alphas = {r.alpha_key for r in self.runs.get(dataset, [])}
        return next(iter(alphas)) if len(alphas) == 1 else None

    def alphas(self) -> str:
        return ";".join(f"{d}:{self.alpha_of(d):g}" for d in self.runs
                        if self.alpha_of(d) is not None)


def _grid_rows(runs: Sequence[RunRecord]) -> list[_GridRow]:
    """Rows of the dataset x method tables: one per (method, norm matching); split by alpha
    when one dataset holds several alphas of that method (an alpha sweep)."""
    groups: dict[tuple[str | None, bool | None], list[RunRecord]] = {}
    for r in runs:
        groups.setdefault((r.method, r.norm_key), []).append(r)
    rows: list[_GridRow] = []
    for (method, nk), members in groups.items():
        by_ds: dict[str, set[float | None]] = {}
        for r in members:
            by_ds.setdefault(r.dataset, set()).add(r.alpha_key)
        split = any(len(a) > 1 for a in by_ds.values())
        if split:
            alphas_all = {r.alpha_key for r in members}
            for alpha in sorted(alphas_all, key=lambda a: (a is None, a or 0.0)):
                cell: dict[str, list[RunRecord]] = {}
                for r in members:
                    if r.alpha_key == alpha:
                        cell.setdefault(r.dataset, []).append(r)
                rows.append(_GridRow(method, nk, alpha, cell))
        else:
            cell = {}
            for r in members:
                cell.setdefault(r.dataset, []).append(r)
            alphas = {r.alpha_key for r in members}
            rows.append(_GridRow(method, nk, next(iter(alphas)) if len(alphas) == 1 else None,
                                 cell))
    rows.sort(key=lambda g: (_method_rank(g.method), g.method or "",
                             g.alpha if g.alpha is not None else -1.0,
                             g.norm_key is True))
    return rows


def _cell(values: Sequence[float], digits: int, alpha_note: str = "", scale: float = 1.0
          ) -> str:
    if not values:
        return MISSING
    text = _fmt(_mean(values), digits, scale)
    extras = [e for e in (alpha_note, f"n={len(values)}" if len(values) > 1 else "") if e]
    return f"{text} ({', '.join(extras)})" if extras else text


def _grid_table(name: str, title: str, runs: Sequence[RunRecord], datasets: Sequence[str],
                value: Callable[[RunRecord], float | None], digits: int, *,
                average: bool, note: str = "", extra_rows: Sequence[tuple[str, dict[str, float
                                                                                  | None]]] = (),
                ) -> Table:
    rows_g = _grid_rows(runs)
    header = ["method", *datasets] + (["Average"] if average else [])
    csv_header = [*_GRID_KEYS, *datasets] + (["average"] if average else [])
    rows: list[list[str]] = []
    data: list[list[Any]] = []
    for label, cells in extra_rows:
        rows.append([label] + [_fmt(cells.get(d), digits) for d in datasets]
                    + ([MISSING] if average else []))
        data.append([label, label, None, None, None, None] + [cells.get(d) for d in datasets]
                    + ([None] if average else []))
    for g in rows_g:
        shown, nums = [g.label()], []
        for d in datasets:
            vals = [v for v in (value(r) for r in g.runs.get(d, [])) if v is not None]
            note_a = ""
            if g.alpha is None and g.method != "none" and vals and g.alpha_of(d) is not None:
                note_a = f"α={g.alpha_of(d):g}"
            shown.append(_cell(vals, digits, note_a))
            nums.append(_mean(vals))
        avg = None
        if average and nums and all(v is not None for v in nums):
            avg = statistics.fmean(nums)  # type: ignore[arg-type]
        if average:
            shown.append(_fmt(avg, digits))
        rows.append(shown)
        data.append([g.label(), "runs", g.method, g.alpha, g.norm_key, g.alphas() or None,
                     *nums] + ([avg] if average else []))
    return Table(name, title, header, rows, csv_header, data, note)


def _paper_cells(row: paper_numbers.PaperRow, datasets: Sequence[str]) -> list[float | None]:
    return [row.values.get(d) for d in datasets]


def _paper_table(datasets: Sequence[str], *, name: str, title: str, note: str) -> Table:
    header = ["source", *datasets, "Average"]
    csv_header = ["row", "method", *datasets, "average", "where"]
    rows, data = [], []
    full = list(datasets) == list(paper_numbers.PAPER_DATASETS)
    for pr in paper_numbers.WIN_RATE_ROWS:
        cells = _paper_cells(pr, datasets)
        avg = pr.average if full else None
        rows.append([pr.label] + [_fmt(v, pr.digits) for v in cells] + [_fmt(avg, pr.digits)])
        data.append([pr.label, pr.method, *cells, avg, pr.where])
    return Table(name, title, header, rows, csv_header, data, note)


def _table1(runs: Sequence[RunRecord], datasets: Sequence[str], comparable: bool) -> Table:
    table = _grid_table(
        "table1", "Table 1: win rate (%) per dataset and method", runs, datasets,
        lambda r: r.win_rate, 2, average=True,
        note="Average: mean of the row's cells, shown only when the row has every column. "
             "(n=k): mean of k runs.",
    )
    if comparable:
        paper = _paper_table(datasets, name="", title="", note="")
        for shown, raw in zip(paper.rows, paper.data, strict=True):
            table.rows.append(shown)
            table.data.append([raw[0], "paper", raw[1], None, None, None] + raw[2:-1])
        table.note += (" Rows labelled 'paper (...)' are published numbers "
                       "(symnoise.experiments.paper_numbers), not results of these runs.")
    return table


def _ablation(runs: Sequence[RunRecord]) -> Table:
    keys: dict[tuple[Any, ...], list[RunRecord]] = {}
    for r in runs:
        keys.setdefault((r.dataset, r.method, r.alpha_key, r.norm_key), []).append(r)
    ds_order = _dataset_order(r.dataset for r in runs)
    order = sorted(keys, key=lambda k: (ds_order.index(k[0]), _method_rank(k[1]), k[1] or "",
                                        k[2] if k[2] is not None else -1.0, k[3] is True))
    header = ["dataset", "setting", "method", "alpha", "norm-matched", "win rate",
              "avg chars", "runs"]
    rows, data = [], []
    for k in order:
        members = keys[k]
        wr = [r.win_rate for r in members if r.win_rate is not None]
        ch = [r.avg_chars for r in members if r.avg_chars is not None]
        dataset, method, alpha, nk = k
        label = setting_label(method, alpha, nk)
        nm_text = MISSING if nk is None else ("yes" if nk else "no")
        rows.append([dataset, label, method or "?", _fmt(alpha, 3).rstrip("0").rstrip(".")
                     if alpha is not None else MISSING, nm_text, _cell(wr, 2), _cell(ch, 1),
                     str(len(members))])
        data.append([dataset, label, method, alpha, nk, _mean(wr), _mean(ch), len(members)])
    return Table("ablation", "Noise ablation: win rate (%) and average output length "
                 "(characters)", header, rows,
                 ["dataset", "setting", "method", "alpha", "norm_match", "win_rate",
                  "avg_chars", "runs"], data,
                 "norm-matched: Gaussian/Bernoulli/SymNoise noise divided by sqrt(3) (α=a/√3); "
                 "'-' where it does not apply. avg chars: mean over all outputs (stats.json), "
                 "else over the judged outputs.")


def _train_rows(runs: Sequence[RunRecord], datasets: Sequence[str], key: str
                ) -> list[tuple[str, dict[str, float | None]]]:
    cells: dict[str, float | None] = {}
    for d in datasets:
        for r in runs:
            if r.dataset == d and r.train_stats and _number(r.train_stats.get(key)) is not None:
                cells[d] = _number(r.train_stats.get(key))
                break
    return [("training data", cells)] if cells else []


def _length_tables(runs: Sequence[RunRecord], datasets: Sequence[str]) -> list[Table]:
    specs = [
        ("lengths_chars", "Output length (characters)", "avg_chars", 1),
        ("lengths_words", "Whitespace length (words)", "avg_words", 1),
        ("lengths_rep2", "2-gram repetition (%)", "rep_2", 2),
    ]
    tables = []
    for name, title, key, digits in specs:
        def value(r: RunRecord, key: str = key) -> float | None:
            return _number((r.stats or {}).get(key))

        tables.append(_grid_table(
            name, title, runs, datasets, value, digits, average=False,
            extra_rows=_train_rows(runs, datasets, key),
            note="Repetition over the first N words of each output (N from the run's "
                 "dataset: 50/100/150/150; stats.json records it); 'training data': the "
                 "responses of the training file.",
        ))
    return tables


def _sorted_runs(runs: Sequence[RunRecord]) -> list[RunRecord]:
    order = _dataset_order(r.dataset for r in runs)
    return sorted(runs, key=lambda r: (order.index(r.dataset), _method_rank(r.method),
                                       r.alpha_key if r.alpha_key is not None else -1.0,
                                       r.norm_key is True, r.name))


def _openllm(runs: Sequence[RunRecord]) -> Table:
    tasks: list[str] = []
    for r in runs:
        for t in r.harness:
            if t not in tasks:
                tasks.append(t)
    header = ["run", "setting", "dataset", *tasks, "Average", "limit"]
    rows, data = [], []
    for r in _sorted_runs(runs):
        if not r.harness:
            continue
        vals = [_number(r.harness.get(t)) for t in tasks]
        avg = statistics.fmean(vals) if vals and all(v is not None for v in vals) else None  # type: ignore[arg-type]
        limit = MISSING if r.harness_limit is None else str(r.harness_limit)
        rows.append([r.name, r.label, r.dataset] + [_fmt(v, 2, 100) for v in vals]
                    + [_fmt(avg, 2, 100), limit])
        data.append([r.name, r.label, r.dataset, *vals, avg, r.harness_limit])
    return Table("openllm", "OpenLLM tasks (lm-evaluation-harness, %)", header, rows,
                 ["run", "setting", "dataset", *tasks, "average", "limit"], data,
                 "Each task's headline metric (acc_norm for ARC/HellaSwag, acc for MMLU and "
                 "TruthfulQA MC2) in percent; CSV values are fractions. Average: only when "
                 "every task is present. A run with a limit used part of each task: not "
                 "comparable with full-benchmark numbers.")


def _synthetic(runs: Sequence[RunRecord]) -> Table:
    header = ["run", "setting", "dataset", "accuracy %", "95% CI", "n", "formatted %"]
    rows, data = [], []
    for r in _sorted_runs(runs):
        s = r.synthetic
        if not s:
            continue
        ci = s.get("accuracy_ci95") or [None, None]
        lo, hi = (_number(ci[0]), _number(ci[1])) if len(ci) == 2 else (None, None)
        ci_text = MISSING if lo is None or hi is None else f"[{lo * 100:.1f}, {hi * 100:.1f}]"
        rows.append([r.name, r.label, r.dataset, _fmt(s.get("accuracy"), 1, 100), ci_text,
                     str(s.get("n", MISSING)), _fmt(s.get("format_rate"), 1, 100)])
        data.append([r.name, r.label, r.dataset, s.get("accuracy"), lo, hi, s.get("n"),
                     s.get("format_rate")])
    return Table("synthetic", "Synthetic held-out exact-answer score", header, rows,
                 ["run", "setting", "dataset", "accuracy", "ci95_low", "ci95_high", "n",
                  "format_rate"], data,
                 "Exact-answer accuracy on the built-in synthetic held-out split, 95% Wilson "
                 "interval; CSV values are fractions.")


def _runs_table(runs: Sequence[RunRecord]) -> Table:
    header = ["run", "status", "model", "dataset", "setting", "steps",
              "clean held-out loss", "train loss (noisy)"]
    rows, data = [], []
    for r in _sorted_runs(runs):
        rows.append([r.name, r.status or MISSING, r.model or MISSING, r.dataset, r.label,
                     MISSING if r.global_step is None else str(r.global_step),
                     _fmt(r.final_clean_eval_loss, 4), _fmt(r.train_loss, 4)])
        data.append([r.name, r.status, r.model, r.dataset, r.method, r.alpha, r.norm_match,
                     r.seed, r.global_step, r.final_clean_eval_loss, r.train_loss])
    return Table("runs", "Runs: final clean held-out loss (noise off) and training loss "
                 "(with noise)", header, rows,
                 ["run", "status", "model", "dataset", "method", "alpha", "norm_match", "seed",
                  "global_step", "final_clean_eval_loss", "train_loss"], data)


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------

_COLORS = {"none": "C7", "uniform": "C0", "gaussian": "C1", "bernoulli": "C2", "symnoise": "C3"}


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    return Figure(figsize=(width, height), dpi=120)


def _bars(path: Path, table: Table, datasets: Sequence[str], ylabel: str, title: str,
          errors: Mapping[tuple[int, int], tuple[float, float]] | None = None) -> None:
    """Grouped bars: x = datasets, one bar per table row (its numeric cells)."""
    import numpy as np

    ours = [(row, raw) for row, raw in zip(table.rows, table.data, strict=True)
            if raw[1] == "runs"]
    fig = _new_figure(max(6.0, 1.6 * len(datasets) + 2.5), 4.6)
    ax = fig.add_subplot()
    n = max(1, len(ours))
    width = 0.8 / n
    x = np.arange(len(datasets))
    first = table.csv_header.index(datasets[0]) if datasets else 0
    for i, (row, raw) in enumerate(ours):
        vals = [raw[first + j] for j in range(len(datasets))]
        heights = [v if v is not None else 0.0 for v in vals]
        yerr = None
        if errors:
            lo = [errors.get((i, j), (0.0, 0.0))[0] for j in range(len(datasets))]
            hi = [errors.get((i, j), (0.0, 0.0))[1] for j in range(len(datasets))]
            yerr = [lo, hi]
        bars = ax.bar(x - 0.4 + width * (i + 0.5), heights, width, label=row[0],
                      color=_COLORS.get(raw[2], f"C{(i + 4) % 10}"), yerr=yerr, capsize=3)
        for bar, v in zip(bars, vals, strict=True):
            if v is None:
                bar.set_alpha(0.0)  # no result: no bar
    ax.set_xticks(x)
    ax.set_xticklabels(datasets)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, format="png")


def _scatter(path: Path, points: Sequence[tuple[float, float, str, str | None]], ylabel: str,
             title: str) -> None:
    fig = _new_figure(6.4, 4.8)
    ax = fig.add_subplot()
    for xv, yv, label, method in points:
        ax.scatter([xv], [yv], color=_COLORS.get(method or "", "C9"), s=36)
        ax.annotate(label, (xv, yv), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("average output length (characters)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")


def _loss_figure(path: Path, runs: Sequence[RunRecord], one_dataset: bool) -> bool:
    series = []
    for r in _sorted_runs(runs):
        train = [(row["step"], row["train_loss"]) for row in r.metrics
                 if _number(row.get("step")) is not None
                 and _number(row.get("train_loss")) is not None
                 and "train_runtime" not in row]  # not the end-of-training summary row
        clean = [(row["step"], row["clean_eval_loss"]) for row in r.metrics
                 if _number(row.get("step")) is not None
                 and _number(row.get("clean_eval_loss")) is not None]
        if train or clean:
            label = r.label if one_dataset else f"{r.label} · {r.dataset}"
            series.append((r, label, sorted(train), sorted(clean)))
    if not series:
        return False
    fig = _new_figure(11.0, 4.4)
    axes = fig.subplots(1, 2)
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
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    for ax in (axes[1], axes[0]):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
            break
    fig.tight_layout()
    fig.savefig(path, format="png")
    return True


# --------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------


@dataclass
class ReportResult:
    """What :func:`build_report` wrote: the runs read, the tables, files and notes.

    skipped: run folders left out, each ``{"path", "reason"}``. paper_comparable: whether
    the runs match the paper's setting (then the paper rows sit inside Table 1).
    figures: figure name -> caption. notes: everything a reader should know that the
    tables do not show (unreadable files, left-out rows, missing results).
    """

    runs_dir: Path
    output_dir: Path
    runs: list[RunRecord]
    skipped: list[dict[str, str]]
    tables: dict[str, Table]
    files: dict[str, Path]
    figures: dict[str, str]
    paper_comparable: bool
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs_dir": str(self.runs_dir),
            "output_dir": str(self.output_dir),
            "runs": [r.to_dict() for r in self.runs],
            "skipped": self.skipped,
            "tables": {k: t.to_dict() for k, t in self.tables.items()},
            "files": {k: str(v) for k, v in self.files.items()},
            "figures": self.figures,
            "paper_comparable": self.paper_comparable,
            "notes": self.notes,
        }

    def format_table(self) -> str:
        """Text for the terminal: Table 1, the synthetic scores, the runs, the files."""
        out = [f"{len(self.runs)} run(s) under {self.runs_dir}"
               + (f", {len(self.skipped)} skipped" if self.skipped else "")]
        for name in ("table1", "synthetic", "runs"):
            t = self.tables.get(name)
            if t is not None and t.rows:
                out += ["", t.title, t.to_markdown().rstrip()]
        out += ["", f"report: {self.files.get('report_md')}"]
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)


def _comparable(runs: Sequence[RunRecord]) -> tuple[bool, str]:
    judged = [r for r in runs if r.win_rate is not None]
    if not judged:
        return False, "no run has a win rate"
    bad_model = sorted({str(r.model) for r in judged
                        if not paper_numbers.matches_paper_model(r.model)})
    bad_ref = sorted({str(r.reference) for r in judged
                      if not paper_numbers.matches_paper_reference(r.reference)})
    bad_ds = sorted({r.dataset for r in judged
                     if r.dataset not in paper_numbers.PAPER_DATASETS})
    why = []
    if bad_model:
        why.append(f"model {', '.join(bad_model)} (the paper: {paper_numbers.PAPER_MODEL})")
    if bad_ref:
        why.append(f"reference outputs {', '.join(bad_ref)} (the paper: "
                   f"{paper_numbers.PAPER_REFERENCE})")
    if bad_ds:
        why.append(f"dataset {', '.join(bad_ds)} (the paper: "
                   f"{', '.join(paper_numbers.PAPER_DATASETS)})")
    return not why, "; ".join(why)


def build_report(runs_dir: str | Path, output_dir: str | Path | None = None) -> ReportResult:
    """Read every run folder under ``runs_dir`` and write the tables (Markdown + CSV), the
    figures (PNG) and ``report.md`` into ``output_dir`` (default ``RUNS_DIR/report``).

    A run folder whose ``run.json`` cannot be read is skipped and listed (reason included)
    in the result and the report. Raises FileNotFoundError when ``runs_dir`` is missing and
    ValueError when it holds no run folder.
    """
    runs_dir = Path(runs_dir).expanduser()
    out = Path(output_dir).expanduser() if output_dir is not None else runs_dir / DEFAULT_OUTPUT
    folders = find_runs(runs_dir, exclude=[out])
    if not folders:
        raise ValueError(f"no run folder (a folder with {RUN_INFO}) under {runs_dir}")
    runs: list[RunRecord] = []
    skipped: list[dict[str, str]] = []
    for folder in folders:
        rel = folder.relative_to(runs_dir).as_posix()
        name = folder.resolve().name if rel == "." else rel
        try:
            runs.append(load_run(folder, name))
        except (ValueError, OSError) as exc:
            skipped.append({"path": str(folder), "reason": str(exc)})
    if not runs:
        raise ValueError(f"no readable run folder under {runs_dir}: "
                         + "; ".join(s["reason"] for s in skipped))
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = [n for r in runs for n in r.notes]
    datasets = _dataset_order(r.dataset for r in runs)
    comparable, why_not = _comparable(runs)

    tables: dict[str, Table] = {}
    tables["table1"] = _table1(runs, datasets, comparable)
    tables["ablation"] = _ablation(runs)
    for t in _length_tables(runs, datasets):
        tables[t.name] = t
    tables["openllm"] = _openllm(runs)
    tables["synthetic"] = _synthetic(runs)
    tables["runs"] = _runs_table(runs)
    paper = _paper_table(list(paper_numbers.PAPER_DATASETS), name="paper_win_rates",
                         title="Published AlpacaEval win rates (%)",
                         note="Sources: " + paper_numbers.SYMNOISE_CITATION + "; "
                         + paper_numbers.NEFTUNE_CITATION + ". Only the cells the sources "
                         "state; the Average is the source's own.")
    tables["paper_win_rates"] = paper

    files: dict[str, Path] = {}
    for name, table in tables.items():
        path = out / f"{name}.csv"
        table.write_csv(path)
        files[f"{name}_csv"] = path

    # -- figures --------------------------------------------------------------------------
    figures: dict[str, str] = {}
    any_wr = any(r.win_rate is not None for r in runs)
    any_syn = any(r.synthetic_accuracy is not None for r in runs)
    fig_wr = out / "fig_win_rate.png"
    if any_wr:
        t1 = tables["table1"]
        _bars(fig_wr, t1, datasets, "win rate (%)", "Win rate by method and dataset")
        figures[fig_wr.name] = "Win rate (%) by method and dataset (Table 1)."
    elif any_syn:
        syn_grid = _grid_table("syn_grid", "", runs, datasets,
                               lambda r: None if r.synthetic_accuracy is None
                               else 100 * r.synthetic_accuracy, 1, average=False)
        errors = _synthetic_errors(runs, datasets)
        _bars(fig_wr, syn_grid, datasets, "exact-answer accuracy (%)",
              "Synthetic held-out accuracy by method (no win rates)", errors)
        figures[fig_wr.name] = ("No run has a win rate, so this plots the synthetic held-out "
                                "exact-answer accuracy (%) by method and dataset instead, with "
                                "95% Wilson intervals for single runs.")
    else:
        notes.append("no run has a win rate or a synthetic score: no win-rate figure")
    fig_len = out / "fig_win_rate_vs_length.png"
    if any_wr:
        pts = [(r.avg_chars, r.win_rate, _point_label(r, datasets), r.method) for r in runs
               if r.avg_chars is not None and r.win_rate is not None]
        ylabel, title = "win rate (%)", "Win rate against output length"
        caption = "Win rate (%) against average output length (characters), one point per run."
    else:
        pts = [(r.avg_chars, 100 * r.synthetic_accuracy, _point_label(r, datasets), r.method)
               for r in runs if r.avg_chars is not None and r.synthetic_accuracy is not None]
        ylabel, title = "exact-answer accuracy (%)", "Synthetic accuracy against output length"
        caption = ("No run has a win rate, so this plots the synthetic exact-answer accuracy "
                   "(%) against average output length (characters), one point per run.")
    if pts:
        _scatter(fig_len, pts, ylabel, title)  # type: ignore[arg-type]
        figures[fig_len.name] = caption
    else:
        notes.append("no run has both an output length and a score: no length figure")
    fig_loss = out / "fig_loss.png"
    if _loss_figure(fig_loss, runs, len(datasets) == 1):
        figures[fig_loss.name] = ("Training loss with noise (left) and clean held-out loss "
                                  "without noise (right) over optimizer steps, one line per "
                                  "run (metrics.jsonl).")
    else:
        notes.append("no run has a metrics.jsonl with losses: no loss figure")
    for name in figures:
        files[name.removesuffix(".png")] = out / name

    missing_eval = [r.name for r in runs if r.win_rate is None and r.synthetic is None
                    and r.stats is None and not r.harness]
    if missing_eval:
        notes.append(f"{len(missing_eval)} run(s) have no evaluation results (run symnoise "
                     f"eval on them): {', '.join(missing_eval)}")
    for s in skipped:
        notes.append(f"skipped {s['path']}: {s['reason']}")

    result = ReportResult(runs_dir=runs_dir, output_dir=out, runs=runs, skipped=skipped,
                          tables=tables, files=files, figures=figures,
                          paper_comparable=comparable, notes=notes)
    md = _report_markdown(result, why_not)
    report_md = out / "report.md"
    report_md.write_text(md, encoding="utf-8")
    files["report_md"] = report_md
    (out / "report.json").write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n",
                                     encoding="utf-8")
    files["report_json"] = out / "report.json"
    return result


def _point_label(r: RunRecord, datasets: Sequence[str]) -> str:
    return r.label if len(datasets) == 1 else f"{r.label} · {r.dataset}"


def _synthetic_errors(runs: Sequence[RunRecord], datasets: Sequence[str]
                      ) -> dict[tuple[int, int], tuple[float, float]]:
    """Wilson-interval error bars (percent) for grid cells holding exactly one run."""
    errors = {}
    for i, g in enumerate(_grid_rows(runs)):
        for j, d in enumerate(datasets):
            cell = [r for r in g.runs.get(d, []) if r.synthetic_accuracy is not None]
            if len(cell) != 1:
                continue
            ci = (cell[0].synthetic or {}).get("accuracy_ci95") or []
            if len(ci) == 2 and None not in ci:
                acc = cell[0].synthetic_accuracy or 0.0
                errors[(i, j)] = (100 * (acc - ci[0]), 100 * (ci[1] - acc))
    return errors


def _section(table: Table, empty: str) -> list[str]:
    out = [f"## {table.title}", ""]
    if not table.rows:
        return out + [empty, ""]
    out += [table.to_markdown()]
    if table.note:
        out += [table.note, ""]
    out += [f"CSV: [`{table.name}.csv`]({table.name}.csv)", ""]
    return out


def _report_markdown(result: ReportResult, why_not: str) -> str:
    t = result.tables
    runs = result.runs
    lines = ["# Noisy-embedding fine-tuning: report", "",
             f"{len(runs)} run folder(s) under `{result.runs_dir}`"
             + (f"; {len(result.skipped)} skipped (see Notes)." if result.skipped else "."), ""]
    any_wr = any(r.win_rate is not None for r in runs)
    judges = sorted({f"{r.judge} vs {r.reference}" for r in runs if r.win_rate is not None})
    if judges:
        lines += ["Win rates: " + "; ".join(judges) + ".", ""]
    lines += _section(t["table1"], "No run has a win rate yet (symnoise eval RUN --judge ...).")
    if not any_wr:
        lines += ["No run has a win rate: every Table 1 cell is '-'. The synthetic "
                  "exact-answer score below is the judge-free measure.", ""]
    for name in ("fig_win_rate.png",):
        if name in result.figures:
            lines += [f"![{name}]({name})", "", f"*{result.figures[name]}*", ""]
    lines += _section(t["ablation"], "No runs.")
    if "fig_win_rate_vs_length.png" in result.figures:
        name = "fig_win_rate_vs_length.png"
        lines += [f"![{name}]({name})", "", f"*{result.figures[name]}*", ""]
    lines += ["## Response length and repetition", ""]
    for name in ("lengths_chars", "lengths_words", "lengths_rep2"):
        table = t[name]
        lines += [f"### {table.title}", ""]
        if any(any(c != MISSING for c in row[1:]) for row in table.rows):
            lines += [table.to_markdown(), f"CSV: [`{name}.csv`]({name}.csv)", ""]
        else:
            lines += ["No values: no run has this statistic (symnoise eval writes them; "
                      "repetition needs outputs of at least N words).", ""]
    lines += [t["lengths_chars"].note, ""]
    lines += _section(t["openllm"], "No run has harness results (symnoise eval RUN --tasks "
                      "openllm).")
    lines += _section(t["synthetic"], "No run has a synthetic score.")
    lines += _section(t["runs"], "No runs.")
    if "fig_loss.png" in result.figures:
        lines += ["![fig_loss.png](fig_loss.png)", "", f"*{result.figures['fig_loss.png']}*", ""]
    if not result.paper_comparable:
        paper = t["paper_win_rates"]
        lines += ["## Published numbers (for reference only, not comparable)", "",
                  "These are the papers' published AlpacaEval win rates of LLaMA-2-7B "
                  "fine-tuned on the four datasets. The runs here "
                  f"differ ({why_not}), so they are not comparable with them.", "",
                  paper.to_markdown(), paper.note, "",
                  "CSV: [`paper_win_rates.csv`](paper_win_rates.csv)", ""]
    else:
        lines += ["## Published numbers", "", t["paper_win_rates"].note,
                  "They are the 'paper (...)' rows of Table 1.", ""]
    lines += ["Published tables not reproduced here (their text could not be checked): the "
              "SymNoise paper's per-dataset Table 1 beyond its abstract, its noise ablation, "
              "length/diversity and OpenLLM tables.", ""]
    if result.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in result.notes] + [""]
    return "\n".join(lines)
