"""Paper-style tables and figures over many run folders (``symnoise report RUNS_DIR``).

:func:`build_report` finds every run folder under ``RUNS_DIR`` (:func:`symnoise.run.find_runs`),
reads each (:mod:`.records`), builds the tables (Table 1, the judge columns and judge check,
ablation, lengths, OpenLLM, synthetic, runs, published numbers) and figures
(:mod:`.figures`), and writes ``report.md``, one CSV per table and the PNGs to the output
folder (default ``RUNS_DIR/report``). What each table holds: the README ("symnoise report").

Runs that differ only by seed share a cell, shown as mean ± sd (n=k); runs that differ in
anything else (their ``variant``) get rows of their own. A win rate from a judge that was
not checked is marked ``†``, one from a judge the check found not usable ``‡``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import PAPER_DATASETS
from ..run import find_runs
from . import paper_numbers
from .figures import write_figures
from .measured import Measured, measure, measured_table, paired_difference
from .records import (
    LEADERBOARD_COLUMNS,
    RunRecord,
    assign_variants,
    dataset_order,
    grid_rows,
    grid_table,
    load_run,
    setting_label,
    sorted_runs,
    win_rate_mark,
)
from .tables import MISSING, Table, cell, fmt, group_by, mean, number, sd

__all__ = ["JUDGE_NOTE", "ReportResult", "RunRecord", "Table", "ablation", "build_report",
           "find_runs", "grid_rows", "grid_table", "judged", "length_tables", "load_run",
           "openllm", "paper_matches", "paper_table", "published_tables", "runs_table",
           "setting_label", "synthetic", "table1", "table1_vs_none"]

DEFAULT_OUTPUT = "report"
JUDGE_NOTE = ("†: the judge of this win rate was not checked (symnoise judge-check); ‡: its "
              "check found it not usable. Such numbers are not to be trusted as they stand.")


# -- the tables ------------------------------------------------------------------------------
def paper_table(datasets: Sequence[str], *, name: str, title: str, note: str) -> Table:
    table = Table(name, title, ["source", *datasets, "Average"],
                  csv_header=["row", "method", *datasets, "average", "where"], note=note)
    full = list(datasets) == list(PAPER_DATASETS)
    for pr in paper_numbers.WIN_RATE_ROWS:
        cells = [pr.values.get(d) for d in datasets]
        avg = pr.average if full else None
        table.add([pr.label, *(fmt(v, pr.digits) for v in cells), fmt(avg, pr.digits)],
                  [pr.label, pr.method, *cells, avg, pr.where])
    return table


def table1(runs: Sequence[RunRecord], datasets: Sequence[str], comparable: bool) -> Table:
    table = grid_table(
        "table1", "Table 1: win rate (%) per dataset and method", runs, datasets,
        lambda r: r.win_rate, 2, average=True, marks=True,
        note="Average: mean of the row's cells, shown only when the row has every column. "
             "a ± s (n=k): mean and standard deviation over k seeds. " + JUDGE_NOTE)
    if comparable:
        paper = paper_table(datasets, name="", title="", note="")
        for shown, raw in zip(paper.rows, paper.data, strict=True):
            table.add(shown, row=raw[0], source="paper", method=raw[1], average=raw[-2],
                      **dict(zip(datasets, raw[2:-2], strict=True)))
        table.note += (" Rows labelled 'paper (...)' are published numbers "
                       "(symnoise.experiments.paper_numbers), not results of these runs.")
    return table


def _groups(runs: Sequence[RunRecord]) -> list[list[RunRecord]]:
    """Runs that differ only by seed, in table order."""
    return list(group_by(sorted_runs(runs), lambda r: (r.dataset, r.method, r.alpha_key,
                                                        r.norm_key, r.variant)).values())


def ablation(runs: Sequence[RunRecord]) -> Table:
    """Per setting: the win rate (only when a run has one) and the average output length."""
    wr_cols = any(r.win_rate is not None for r in runs)
    what = "win rate (%) and average output length" if wr_cols else "average output length"
    table = Table("ablation", f"Noise ablation: {what} (characters)",
                  ["dataset", "setting", "method", "alpha", "norm-matched",
                   *(["win rate"] if wr_cols else []), "avg chars", "runs"],
                  csv_header=["dataset", "setting", "method", "alpha", "norm_match",
                              *(["win_rate", "win_rate_sd"] if wr_cols else []), "avg_chars",
                              "runs"],
                  note="norm-matched: Gaussian/Bernoulli/SymNoise noise divided by sqrt(3) "
                       "(α=a/√3); '-' where it does not apply. avg chars: mean over all outputs "
                       "(stats.json), else over the judged outputs."
                       + (" " + JUDGE_NOTE if wr_cols else ""))
    for members in _groups(runs):
        r = members[0]
        judged = [m for m in members if m.win_rate is not None]
        wr = [m.win_rate for m in judged]
        ch = [m.avg_chars for m in members if m.avg_chars is not None]
        nm_text = MISSING if r.norm_key is None else ("yes" if r.norm_key else "no")
        alpha = MISSING if r.alpha_key is None else f"{r.alpha_key:g}"
        wr_shown = [cell(wr, 2, mark=win_rate_mark(judged))] if wr_cols else []
        table.add([r.dataset, r.label, r.method or "?", alpha, nm_text, *wr_shown, cell(ch, 1),
                   str(len(members))],
                  [r.dataset, r.label, r.method, r.alpha_key, r.norm_key,
                   *([mean(wr), sd(wr)] if wr_cols else []), mean(ch), len(members)])
    return table


def judged(runs: Sequence[RunRecord]) -> Table:
    """Every judged run with the leaderboard columns its judge wrote and its judge check."""
    board = [c for c in LEADERBOARD_COLUMNS if any(c in r.leaderboard for r in runs)]
    check = ["accuracy", "accuracy_ci", "position_bias", "n_pairs", "usable"]
    table = Table("judged", "Win rates: AlpacaEval leaderboard columns and the judge check",
                  ["run", "setting", "dataset", "judge", "reference", *board, "judge check"],
                  csv_header=["run", "setting", "dataset", "judge", "reference", *board,
                              *(f"check_{k}" for k in check)], note=JUDGE_NOTE)
    for r in sorted_runs(runs):
        if r.win_rate is None:
            continue
        jc = r.judge_check or {}
        table.add([r.name, r.label, r.dataset, r.judge or MISSING, r.reference or MISSING,
                   *(_board_cell(r.leaderboard.get(c)) for c in board), _check_text(r)],
                  [r.name, r.label, r.dataset, r.judge, r.reference,
                   *(r.leaderboard.get(c) for c in board), *(jc.get(k) for k in check)])
    return table


def _board_cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    v = number(value)
    return MISSING if v is None else (f"{v:g}" if float(v).is_integer() else f"{v:.2f}")


def _check_text(r: RunRecord) -> str:
    jc = r.judge_check
    if jc is None:
        return "† not checked"
    ci = jc.get("accuracy_ci") or []
    acc = number(jc.get("accuracy"))
    text = MISSING if acc is None else f"accuracy {100 * acc:.1f}%"
    if len(ci) == 2 and None not in ci:
        text += f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
    if number(jc.get("position_bias")) is not None:
        text += f", position bias {100 * jc['position_bias']:.1f}%"
    verdict = "usable" if jc.get("usable") is True else "‡ not usable"
    return f"{verdict}: {text} (n={jc.get('n_pairs', MISSING)})"


def _train_rows(runs: Sequence[RunRecord], datasets: Sequence[str], key: str
                ) -> list[tuple[str, dict[str, float | None]]]:
    """The training data's own statistic per dataset (the first run that records it)."""
    found = {d: [v for r in runs if r.dataset == d
                 if (v := number((r.train_stats or {}).get(key))) is not None]
             for d in datasets}
    cells = {d: vals[0] for d, vals in found.items() if vals}
    return [("training data", cells)] if cells else []


def length_tables(runs: Sequence[RunRecord], datasets: Sequence[str]) -> list[Table]:
    specs = [("lengths_chars", "Output length (characters)", "avg_chars", 1),
             ("lengths_words", "Whitespace length (words)", "avg_words", 1),
             ("lengths_rep2", "2-gram repetition (%)", "rep_2", 2)]
    return [grid_table(name, title, runs, datasets,
                       lambda r, key=key: number((r.stats or {}).get(key)), digits,
                       average=False, extra_rows=_train_rows(runs, datasets, key),
                       note="Repetition over the first N words of each output (N from the "
                            "run's dataset: 50/100/150/150; stats.json records it); 'training "
                            "data': the responses of the training file.")
            for name, title, key, digits in specs]


def openllm(runs: Sequence[RunRecord]) -> Table:
    tasks = list(dict.fromkeys(t for r in runs for t in r.harness))
    table = Table("openllm", "OpenLLM tasks (lm-evaluation-harness, %)",
                  ["run", "setting", "dataset", *tasks, "Average", "limit"],
                  csv_header=["run", "setting", "dataset", *tasks, "average", "limit"],
                  note="Each task's headline metric (acc_norm for ARC/HellaSwag, acc for MMLU "
                       "and TruthfulQA MC2) in percent; CSV values are fractions. Average: only "
                       "when every task is present. A run with a limit used part of each task: "
                       "not comparable with full-benchmark numbers.")
    for r in (r for r in sorted_runs(runs) if r.harness):
        vals = [number(r.harness.get(t)) for t in tasks]
        avg = mean(vals) if all(v is not None for v in vals) else None  # type: ignore[arg-type]
        limit = MISSING if r.harness_limit is None else str(r.harness_limit)
        table.add([r.name, r.label, r.dataset, *(fmt(v, 2, 100) for v in vals),
                   fmt(avg, 2, 100), limit], [r.name, r.label, r.dataset, *vals, avg,
                                              r.harness_limit])
    return table


def synthetic(runs: Sequence[RunRecord]) -> Table:
    table = Table("synthetic", "Synthetic held-out exact-answer score",
                  ["run", "setting", "dataset", "accuracy %", "95% CI", "n", "formatted %"],
                  csv_header=["run", "setting", "dataset", "accuracy", "ci95_low", "ci95_high",
                              "n", "format_rate"],
                  note="Exact-answer accuracy on the built-in synthetic held-out split, 95% "
                       "Wilson interval; CSV values are fractions.")
    for r in (r for r in sorted_runs(runs) if r.synthetic):
        s = r.synthetic
        ci = s.get("accuracy_ci95") or [None, None]
        lo, hi = (number(ci[0]), number(ci[1])) if len(ci) == 2 else (None, None)
        ci_text = MISSING if lo is None or hi is None else f"[{lo * 100:.1f}, {hi * 100:.1f}]"
        table.add([r.name, r.label, r.dataset, fmt(s.get("accuracy"), 1, 100), ci_text,
                   str(s.get("n", MISSING)), fmt(s.get("format_rate"), 1, 100)],
                  [r.name, r.label, r.dataset, s.get("accuracy"), lo, hi, s.get("n"),
                   s.get("format_rate")])
    return table


def runs_table(runs: Sequence[RunRecord]) -> Table:
    table = Table("runs", "Runs: final clean held-out loss (noise off) and training loss "
                  "(with noise)", ["run", "status", "model", "dataset", "setting", "steps",
                                   "clean held-out loss", "train loss (noisy)"],
                  csv_header=["run", "status", "model", "dataset", "method", "alpha",
                              "norm_match", "seed", "global_step", "final_clean_eval_loss",
                              "train_loss"])
    for r in sorted_runs(runs):
        table.add([r.name, r.status or MISSING, r.model or MISSING, r.dataset, r.label,
                   MISSING if r.global_step is None else str(r.global_step),
                   fmt(r.final_clean_eval_loss, 4), fmt(r.train_loss, 4)],
                  [r.name, r.status, r.model, r.dataset, r.method, r.alpha, r.norm_match,
                   r.seed, r.global_step, r.final_clean_eval_loss, r.train_loss])
    return table


def published_tables() -> list[Table]:
    """Every published table of the SymNoise paper (T1-T5) as printed, labelled with its
    judge and the paper versions that print it."""
    return [Table(f"paper_{key}", f"{pt.label()}: {pt.title}", pt.header(),
                  [[c or MISSING for c in row] for row in pt.display_rows()], pt.header(),
                  [[c or None for c in row] for row in pt.display_rows()], pt.note)
            for key, pt in paper_numbers.PAPER_TABLES.items()]


def _ours(r: RunRecord, metric: str) -> float | None:
    if metric in ("win_rate", "avg_chars"):
        return getattr(r, metric)
    if metric in r.harness:
        return 100 * r.harness[metric]  # the paper prints percent
    return number((r.stats or {}).get(metric))


def paper_matches(runs: Sequence[RunRecord]) -> Table:
    """Published numbers (T1-T5) beside ours, for every run group whose setting matches
    the paper's (model, dataset, method, and alpha and norm matching where printed)."""
    table = Table("paper_matches", "Published numbers for the settings of these runs",
                  ["setting", "dataset", "metric", "ours", "paper", "table", "judge",
                   "versions"],
                  csv_header=["setting", "dataset", "metric", "ours", "ours_sd", "n", "paper",
                              "table", "judge", "versions"],
                  note="ours: these runs (mean ± sd over seeds); paper: as printed, with its "
                       "table, judge and the paper versions (v1, v2) that print it. A win rate "
                       "is comparable only when the judge and the reference outputs are the "
                       "same.")
    for members in _groups(runs):
        r = members[0]
        for v in paper_numbers.paper_values(dataset=r.dataset, method=r.method):
            if not (paper_numbers.matches_model(v.model, r.model)
                    and (v.alpha is None or v.alpha == r.alpha_key)
                    and (v.norm_match is None or v.norm_match == r.norm_key)):
                continue
            vals = [x for x in (_ours(m, v.metric) for m in members) if x is not None]
            if not vals:
                continue
            where = f"{paper_numbers.PAPER_TABLES[v.table].label()}: {v.row}"
            table.add([r.label, r.dataset, v.metric, cell(vals, 2), v.text, where,
                       v.judge or MISSING, ", ".join(v.versions)],
                      [r.label, r.dataset, v.metric, mean(vals), sd(vals), len(vals), v.value,
                       where, v.judge, ",".join(v.versions)])
    return table


def table1_vs_none(runs: Sequence[RunRecord], datasets: Sequence[str], notes: list[str]
                   ) -> Table:
    """Table 1's noisy rows as differences from the no-noise row (same dataset and
    variant): win rate B − A in points with its 95% interval, a paired bootstrap over the
    judged prompts stratified by seed (:func:`symnoise.experiments.compare.compare_runs`).
    ``*``: significant, i.e. the interval excludes 0. A cell that cannot be paired is ``-``
    and ``notes`` says why."""
    rows = grid_rows(runs)
    base = {g.variant: g for g in rows if g.method == "none"}
    table = Table("table1_vs_none", "Table 1: difference from the no-noise row (win-rate "
                  "points, 95% interval)", ["method", *datasets],
                  csv_header=["row", "dataset", "diff", "ci_low", "ci_high", "n", "significant"],
                  note="B − A per dataset, A the no-noise row: paired bootstrap over prompts "
                       "(stratified by seed); * significant: the 95% interval excludes 0. "
                       + JUDGE_NOTE)
    for g in (g for g in rows if g.method != "none" and g.variant in base):
        shown = [g.label()]
        for d in datasets:
            a = [r for r in base[g.variant].runs.get(d, []) if r.win_rate is not None]
            b = [r for r in g.runs.get(d, []) if r.win_rate is not None]
            diff = paired_difference(a, b, "win_rate", f"{g.label()} vs none on {d}", notes) \
                if a and b else None
            if diff is None:
                shown.append(MISSING)
                continue
            star = "*" if diff.significant else ""
            shown.append(f"{diff.diff:+.1f} [{diff.ci_low:+.1f}, {diff.ci_high:+.1f}]{star}"
                         + win_rate_mark(a + b))
            table.data.append([g.label(), d, diff.diff, diff.ci_low, diff.ci_high, diff.n,
                               diff.significant])
        table.rows.append(shown)
    return table


# -- the report -----------------------------------------------------------------------------
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
    summary: list[str] = field(default_factory=list)  # one sentence per metric measured
    missing: list[str] = field(default_factory=list)  # one line per metric no run has

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs_dir": str(self.runs_dir), "output_dir": str(self.output_dir),
            "runs": [r.to_dict() for r in self.runs], "skipped": self.skipped,
            "tables": {k: t.to_dict() for k, t in self.tables.items()},
            "files": {k: str(v) for k, v in self.files.items()}, "figures": self.figures,
            "paper_comparable": self.paper_comparable, "notes": self.notes,
            "summary": self.summary, "missing": self.missing,
        }

    def format_table(self) -> str:
        """Text for the terminal: what the runs measured (a line for each metric none has),
        the win-rate tables when a run has one, the runs, the files."""
        out = [f"{len(self.runs)} run(s) under {self.runs_dir}"
               + (f", {len(self.skipped)} skipped" if self.skipped else "")]
        shown = ("measured", "table1", "table1_vs_none", "judged", "runs") if any(
            r.win_rate is not None for r in self.runs) else ("measured", "runs")
        for name in shown:
            t = self.tables.get(name)
            if t is not None and t.rows:
                out += ["", t.title, t.to_markdown().rstrip()]
        out += ["", *self.missing] if self.missing else []
        out += ["", f"report: {self.files.get('report_md')}"]
        out += [f"note: {n}" for n in self.notes]
        return "\n".join(out)


def _comparable(runs: Sequence[RunRecord]) -> tuple[bool, str]:
    """Whether the judged runs are the papers' setting (model, reference, dataset), and
    what differs when not."""
    judged = [r for r in runs if r.win_rate is not None]
    if not judged:
        return False, "no run has a win rate"
    pn = paper_numbers
    why = []
    for what, attr, ok, paper in (
            ("model", "model", pn.matches_paper_model, pn.PAPER_MODEL),
            ("reference outputs", "reference", pn.matches_paper_reference, pn.PAPER_REFERENCE),
            ("dataset", "dataset", PAPER_DATASETS.__contains__, ", ".join(PAPER_DATASETS))):
        if bad := sorted({str(getattr(r, attr)) for r in judged if not ok(getattr(r, attr))}):
            why.append(f"{what} {', '.join(bad)} (the paper: {paper})")
    return not why, "; ".join(why)


def _read_runs(runs_dir: Path, out: Path) -> tuple[list[RunRecord], list[dict[str, str]]]:
    folders = find_runs(runs_dir, exclude=[out])
    if not folders:
        raise ValueError(f"no run folder under {runs_dir}")
    runs, skipped = [], []
    for run in folders:
        rel = run.path.relative_to(runs_dir).as_posix()
        try:
            runs.append(load_run(run, run.path.resolve().name if rel == "." else rel))
        except (ValueError, OSError) as exc:
            skipped.append({"path": str(run.path), "reason": str(exc)})
    if not runs:
        raise ValueError(f"no readable run folder under {runs_dir}: "
                         + "; ".join(s["reason"] for s in skipped))
    assign_variants(runs)
    return runs, skipped


def _tables(runs: Sequence[RunRecord], datasets: Sequence[str], comparable: bool,
            notes: list[str], ms: Measured) -> dict[str, Table]:
    out = {"measured": measured_table(ms), "table1": table1(runs, datasets, comparable),
           "table1_vs_none": table1_vs_none(runs, datasets, notes),
           "judged": judged(runs), "ablation": ablation(runs)}
    out.update((t.name, t) for t in length_tables(runs, datasets))
    out.update(openllm=openllm(runs), synthetic=synthetic(runs), runs=runs_table(runs))
    out["paper_win_rates"] = paper_table(
        list(PAPER_DATASETS), name="paper_win_rates", title="Published AlpacaEval win rates (%)",
        note="Sources: " + paper_numbers.SYMNOISE_CITATION + "; "
             + paper_numbers.NEFTUNE_CITATION + ". Only the cells the sources state; the "
             "Average is the source's own.")
    out["paper_matches"] = paper_matches(runs)
    out.update((t.name, t) for t in published_tables())
    return out


def build_report(runs_dir: str | Path, output_dir: str | Path | None = None) -> ReportResult:
    """Read every run folder under ``runs_dir`` and write the tables (Markdown + CSV), the
    figures (PNG) and ``report.md`` into ``output_dir`` (default ``RUNS_DIR/report``).

    A run folder whose ``run.json`` cannot be read is skipped and listed (reason included)
    in the result and the report. Raises FileNotFoundError when ``runs_dir`` is missing and
    ValueError when it holds no run folder.
    """
    runs_dir = Path(runs_dir).expanduser()
    out = Path(output_dir).expanduser() if output_dir is not None else runs_dir / DEFAULT_OUTPUT
    runs, skipped = _read_runs(runs_dir, out)
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = [n for r in runs for n in r.notes]
    datasets = dataset_order(r.dataset for r in runs)
    comparable, why_not = _comparable(runs)
    ms = measure(runs, notes)
    all_tables = _tables(runs, datasets, comparable, notes, ms)
    files: dict[str, Path] = {}
    for name, table in all_tables.items():
        table.write_csv(out / f"{name}.csv")
        files[f"{name}_csv"] = out / f"{name}.csv"
    figures = write_figures(out, runs, ms, datasets, notes)
    files.update((name.removesuffix(".png"), out / name) for name in figures)
    missing_eval = [r.name for r in runs if r.win_rate is None and r.synthetic is None
                    and r.stats is None and not r.harness]
    if missing_eval:
        notes.append(f"{len(missing_eval)} run(s) have no evaluation results (run symnoise "
                     f"eval on them): {', '.join(missing_eval)}")
    unchecked = [r.name for r in runs if r.win_rate is not None and r.judge_mark]
    if unchecked:
        notes.append(f"{len(unchecked)} win rate(s) come from a judge that was not checked "
                     f"or not usable ({JUDGE_NOTE}): {', '.join(unchecked)}")
    notes += [f"skipped {s['path']}: {s['reason']}" for s in skipped]
    result = ReportResult(runs_dir=runs_dir, output_dir=out, runs=runs, skipped=skipped,
                          tables=all_tables, files=files, figures=figures,
                          paper_comparable=comparable, notes=notes, summary=ms.sentences(),
                          missing=[m.hint for m in ms.missing if m.hint])
    files["report_md"] = out / "report.md"
    files["report_md"].write_text(_report_markdown(result, why_not), encoding="utf-8")
    files["report_json"] = out / "report.json"
    files["report_json"].write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n",
                                    encoding="utf-8")
    return result


def _section(table: Table, empty: str, level: str = "##") -> list[str]:
    """The table under its title, or, when it has no row, the one line ``empty``."""
    if not table.rows:
        return [empty, ""] if empty else []
    out = [f"{level} {table.title}", "", table.to_markdown()]
    out += [table.note, ""] if table.note else []
    return out + [f"CSV: [`{table.name}.csv`]({table.name}.csv)", ""]


def _figure(result: ReportResult, name: str) -> list[str]:
    if name not in result.figures:
        return []
    return [f"![{name}]({name})", "", f"*{result.figures[name]}*", ""]


def _paper_section(result: ReportResult, why_not: str) -> list[str]:
    paper = result.tables["paper_win_rates"]
    if result.paper_comparable:
        return ["## Published numbers", "", paper.note,
                "They are the 'paper (...)' rows of Table 1.", ""]
    return ["## Published numbers (for reference only, not comparable)", "",
            "These are the papers' published AlpacaEval win rates of LLaMA-2-7B fine-tuned on "
            f"the four datasets. The runs here differ ({why_not}), so they are not comparable "
            "with them.", "", paper.to_markdown(), paper.note, "",
            "CSV: [`paper_win_rates.csv`](paper_win_rates.csv)", ""]


def _win_rate_sections(result: ReportResult) -> list[str]:
    t = result.tables
    judges = sorted({f"{r.judge} vs {r.reference}" for r in result.runs
                     if r.win_rate is not None})
    if not judges:
        return []  # the headline's missing-metric line says how to get them
    lines = ["## Win rates", "", "Judges: " + "; ".join(judges) + ".", ""]
    lines += _section(t["table1"], "", "###")
    lines += _section(t["table1_vs_none"], "No noisy row has a win rate to compare with the "
                      "no-noise row.", "###")
    return lines + _section(t["judged"], "", "###")


def _length_sections(t: dict[str, Table]) -> list[str]:
    lines = []
    for name in ("lengths_chars", "lengths_words", "lengths_rep2"):
        if any(c != MISSING for row in t[name].rows for c in row[1:]):
            lines += [f"### {t[name].title}", "", t[name].to_markdown(),
                      f"CSV: [`{name}.csv`]({name}.csv)", ""]
        else:
            lines += [f"No {t[name].title[0].lower()}{t[name].title[1:]}: no run has it "
                      "(`symnoise eval RUN`; repetition needs outputs of at least N words).", ""]
    return ["## Response length and repetition", "", *lines, t["lengths_chars"].note, ""]


def _report_markdown(result: ReportResult, why_not: str) -> str:
    t, runs = result.tables, result.runs
    lines = ["# Noisy-embedding fine-tuning: report", "",
             f"{len(runs)} run folder(s) under `{result.runs_dir}`"
             + (f"; {len(result.skipped)} skipped (see Notes)." if result.skipped else "."), ""]
    lines += _section(t["measured"], "No run has a result yet: `symnoise eval RUN`.")
    lines += [x for hint in result.missing for x in (hint, "")]
    lines += _figure(result, "fig_win_rate.png") + _figure(result, "fig_win_rate_vs_length.png")
    lines += _win_rate_sections(result)
    lines += _section(t["ablation"], "No runs.") + _length_sections(t)
    lines += _section(t["openllm"], "No OpenLLM scores: `symnoise eval RUN --tasks openllm`.")
    lines += _section(t["synthetic"], "")
    lines += _section(t["runs"], "No runs.") + _figure(result, "fig_loss.png")
    lines += _paper_section(result, why_not)
    lines += _section(t["paper_matches"], "No run matches a published setting (model, "
                      "dataset, method, alpha, norm matching).", "###")
    lines += ["### Published tables of the SymNoise paper (reference, not results of these "
              "runs)", ""]
    for name in sorted(n for n in t if n.startswith("paper_T")):
        lines += _section(t[name], "", "####")
    lines += [""]
    if result.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in result.notes] + [""]
    return "\n".join(lines)
