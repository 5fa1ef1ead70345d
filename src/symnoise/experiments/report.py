"""``symnoise report RUNS_DIR``: every run folder under it read (:mod:`.records`), the
tables (:mod:`.tables`, what each holds: the README) and figures (:mod:`.figures`) written
as ``report.md``, one CSV per table and PNGs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from .._io import MISSING, finite, fmt
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
    seed_groups,
    sorted_runs,
    win_rate_mark,
)
from .tables import Table, diff_text, interval, mean, num, sd, seeds, text

__all__ = ["ReportResult", "build_report"]

DEFAULT_OUTPUT = "report"
JUDGE_NOTE = ("†: the judge of this win rate was not checked (symnoise judge-check); ‡: its "
              "check found it not usable. Such numbers are not to be trusted as they stand.")


# -- the tables ------------------------------------------------------------------------------
def _paper_records(datasets: Sequence[str]) -> list[dict[str, Any]]:
    """The published win-rate rows (:data:`paper_numbers.WIN_RATE_ROWS`) as table records;
    the source's average only when every paper dataset is a column."""
    full = list(datasets) == list(PAPER_DATASETS)
    return [{"row": pr.label, "method": pr.method, "average": pr.average if full else None,
             "where": pr.where, "digits": pr.digits, **{d: pr.values.get(d) for d in datasets}}
            for pr in paper_numbers.WIN_RATE_ROWS]


def paper_table(datasets: Sequence[str], *, name: str, title: str, note: str) -> Table:
    table = Table(name, title, {"source": text("row"), **{d: num(d, 2) for d in datasets},
                                "Average": num("average", 2)},
                  ["row", "method", *datasets, "average", "where"], note=note)
    for record in _paper_records(datasets):
        table.add(**record)
    return table


def table1(runs: Sequence[RunRecord], datasets: Sequence[str], comparable: bool) -> Table:
    table = grid_table(
        "table1", "Table 1: win rate (%) per dataset and method", runs, datasets,
        lambda r: r.win_rate, 2, average=True, marks=True,
        note="Average: mean of the row's cells, shown only when the row has every column. "
             "a ± s (n=k): mean and standard deviation over k seeds. " + JUDGE_NOTE)
    if comparable:
        for record in _paper_records(datasets):
            table.add(**record, source="paper")
        table.note += (" Rows labelled 'paper (...)' are published numbers "
                       "(symnoise.experiments.paper_numbers), not results of these runs.")
    return table


def ablation(runs: Sequence[RunRecord]) -> Table:
    """Per setting: the win rate (only when a run has one) and the average output length."""
    wr_cols = any(r.win_rate is not None for r in runs)
    what = "win rate (%) and average output length" if wr_cols else "average output length"
    table = Table("ablation", f"Noise ablation: {what} (characters)", {
        "dataset": text("dataset"), "setting": text("setting"),
        "method": lambda r: r["method"] or "?", "alpha": lambda r: fmt(r["alpha"], "g"),
        "norm-matched": lambda r: {None: MISSING, True: "yes", False: "no"}[r["norm_match"]],
        **({"win rate": seeds("win_rate", 2, sd="win_rate_sd", mark="mark")} if wr_cols else {}),
        "avg chars": seeds("avg_chars", 1), "runs": text("runs")},
        ["dataset", "setting", "method", "alpha", "norm_match",
         *(["win_rate", "win_rate_sd"] if wr_cols else []), "avg_chars", "runs"],
        note="norm-matched: Gaussian/Bernoulli/SymNoise noise divided by sqrt(3) "
             "(α=a/√3); '-' where it does not apply. avg chars: mean over all outputs "
             "(stats.json), else over the judged outputs." + (" " + JUDGE_NOTE if wr_cols else ""))
    for members in seed_groups(runs):
        r = members[0]
        judged = [m for m in members if m.win_rate is not None]
        wr = [m.win_rate for m in judged]
        ch = [m.avg_chars for m in members if m.avg_chars is not None]
        table.add(dataset=r.dataset, setting=r.label, method=r.method, alpha=r.alpha_key,
                  norm_match=r.norm_key, win_rate=mean(wr), win_rate_sd=sd(wr),
                  **{"win_rate n": len(wr), "avg_chars sd": sd(ch), "avg_chars n": len(ch)},
                  mark=win_rate_mark(judged), avg_chars=mean(ch), runs=len(members))
    return table


_CHECK = ("accuracy", "accuracy_ci", "position_bias", "n_pairs", "usable")


def judged(runs: Sequence[RunRecord]) -> Table:
    """Every judged run with the leaderboard columns its judge wrote and its judge check."""
    board = [c for c in LEADERBOARD_COLUMNS if any(c in r.leaderboard for r in runs)]
    table = Table("judged", "Win rates: AlpacaEval leaderboard columns and the judge check", {
        **{k: text(k) for k in ("run", "setting", "dataset", "judge", "reference")},
        **{c: lambda r, c=c: _board_cell(r.get(c)) for c in board}, "judge check": _check_text},
        ["run", "setting", "dataset", "judge", "reference", *board,
         *(f"check_{k}" for k in _CHECK)], note=JUDGE_NOTE)
    for r in sorted_runs(runs):
        if r.win_rate is not None:
            jc = r.judge_check or {}
            table.add(run=r.name, setting=r.label, dataset=r.dataset, judge=r.judge,
                      reference=r.reference, checked=r.judge_check is not None,
                      **{c: r.leaderboard.get(c) for c in board},
                      **{f"check_{k}": jc.get(k) for k in _CHECK})
    return table


def _board_cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    v = finite(value)
    return fmt(v, "g" if v is not None and v.is_integer() else ".2f")


def _check_text(r: Mapping[str, Any]) -> str:
    if not r["checked"]:
        return "† not checked"
    acc, bias = finite(r["check_accuracy"]), finite(r["check_position_bias"])
    out = MISSING if acc is None else f"accuracy {fmt(acc, '.1f', scale=100)}%"
    if None not in (ci := r["check_accuracy_ci"] or [None]) and len(ci) == 2:
        out += " " + interval(*ci, ".1f", scale=100)
    out += "" if bias is None else f", position bias {fmt(bias, '.1f', scale=100)}%"
    verdict = "usable" if r["check_usable"] is True else "‡ not usable"
    return f"{verdict}: {out} (n={text('check_n_pairs')(r)})"


def _train_rows(runs: Sequence[RunRecord], datasets: Sequence[str], key: str
                ) -> list[tuple[str, dict[str, float | None]]]:
    """The training data's own statistic per dataset (the first run that records it)."""
    found = {d: [v for r in runs if r.dataset == d
                 if (v := finite((r.train_stats or {}).get(key))) is not None]
             for d in datasets}
    cells = {d: vals[0] for d, vals in found.items() if vals}
    return [("training data", cells)] if cells else []


def length_tables(runs: Sequence[RunRecord], datasets: Sequence[str]) -> list[Table]:
    specs = [("lengths_chars", "Output length (characters)", "avg_chars", 1),
             ("lengths_words", "Whitespace length (words)", "avg_words", 1),
             ("lengths_rep2", "2-gram repetition (%)", "rep_2", 2)]
    return [grid_table(name, title, runs, datasets,
                       lambda r, key=key: finite((r.stats or {}).get(key)), digits,
                       average=False, extra_rows=_train_rows(runs, datasets, key),
                       note="Repetition over the first N words of each output (N from the "
                            "run's dataset: 50/100/150/150; stats.json records it); 'training "
                            "data': the responses of the training file.")
            for name, title, key, digits in specs]


def openllm(runs: Sequence[RunRecord]) -> Table:
    tasks = list(dict.fromkeys(t for r in runs for t in r.harness))
    table = Table("openllm", "OpenLLM tasks (lm-evaluation-harness, %)", {
        "run": text("run"), "setting": text("setting"), "dataset": text("dataset"),
        **{t: num(t, 2, 100) for t in tasks}, "Average": num("average", 2, 100),
        "limit": text("limit")}, ["run", "setting", "dataset", *tasks, "average", "limit"],
        note="Each task's headline metric (acc_norm for ARC/HellaSwag, acc for MMLU "
             "and TruthfulQA MC2) in percent; CSV values are fractions. Average: only "
             "when every task is present. A run with a limit used part of each task: "
             "not comparable with full-benchmark numbers.")
    for r in (r for r in sorted_runs(runs) if r.harness):
        vals = {t: finite(r.harness.get(t)) for t in tasks}
        table.add(run=r.name, setting=r.label, dataset=r.dataset, limit=r.harness_limit,
                  average=None if None in vals.values() else mean(list(vals.values())), **vals)
    return table


def synthetic(runs: Sequence[RunRecord]) -> Table:
    table = Table("synthetic", "Synthetic held-out exact-answer score", {
        "run": text("run"), "setting": text("setting"), "dataset": text("dataset"),
        "accuracy %": num("accuracy", 1, 100),
        "95% CI": lambda r: interval(r["ci95_low"], r["ci95_high"], ".1f", scale=100),
        "n": text("n"), "formatted %": num("format_rate", 1, 100)},
        ["run", "setting", "dataset", "accuracy", "ci95_low", "ci95_high", "n", "format_rate"],
        note="Exact-answer accuracy on the built-in synthetic held-out split, 95% "
             "Wilson interval; CSV values are fractions.")
    for r in (r for r in sorted_runs(runs) if r.synthetic):
        s = r.synthetic
        ci = s.get("accuracy_ci95") or [None, None]
        lo, hi = (finite(ci[0]), finite(ci[1])) if len(ci) == 2 else (None, None)
        table.add(run=r.name, setting=r.label, dataset=r.dataset, accuracy=s.get("accuracy"),
                  ci95_low=lo, ci95_high=hi, n=s.get("n"), format_rate=s.get("format_rate"))
    return table


def runs_table(runs: Sequence[RunRecord]) -> Table:
    table = Table("runs", "Runs: final clean held-out loss (noise off) and training loss "
                  "(with noise)", {
                      **{k: text(k) for k in ("run", "status", "model", "dataset", "setting")},
                      "steps": text("global_step"),
                      "clean held-out loss": num("final_clean_eval_loss", 4),
                      "train loss (noisy)": num("train_loss", 4)},
                  ["run", "status", "model", "dataset", "method", "alpha", "norm_match", "seed",
                   "global_step", "final_clean_eval_loss", "train_loss"])
    for r in sorted_runs(runs):
        table.add(run=r.name, status=r.status, model=r.model, dataset=r.dataset, setting=r.label,
                  method=r.method, alpha=r.alpha, norm_match=r.norm_match, seed=r.seed,
                  global_step=r.global_step, final_clean_eval_loss=r.final_clean_eval_loss,
                  train_loss=r.train_loss)
    return table


def published_tables() -> list[Table]:
    """Every published table of the SymNoise paper (T1-T5) as printed, labelled with its
    judge and the paper versions that print it."""
    out = []
    for key, pt in paper_numbers.PAPER_TABLES.items():
        table = Table(f"paper_{key}", f"{pt.label()}: {pt.title}",
                      {h: text(h) for h in pt.header()}, pt.header(), pt.note)
        for row in pt.display_rows():
            table.add(**{h: c or None for h, c in zip(pt.header(), row, strict=True)})
        out.append(table)
    return out


def _ours(r: RunRecord, metric: str) -> float | None:
    if metric in ("win_rate", "avg_chars"):
        return getattr(r, metric)
    if metric in r.harness:
        return 100 * r.harness[metric]  # the paper prints percent
    return finite((r.stats or {}).get(metric))


def paper_matches(runs: Sequence[RunRecord]) -> Table:
    """Published numbers (T1-T5) beside ours, for every run group whose setting matches
    the paper's (model, dataset, method, and alpha and norm matching where printed)."""
    table = Table("paper_matches", "Published numbers for the settings of these runs", {
        "setting": text("setting"), "dataset": text("dataset"), "metric": text("metric"),
        "ours": seeds("ours", 2, sd="ours_sd", n="n"), "paper": text("paper text"),
        "table": text("table"), "judge": text("judge"),
        "versions": lambda r: r["versions"].replace(",", ", ")},
        ["setting", "dataset", "metric", "ours", "ours_sd", "n", "paper", "table", "judge",
         "versions"],
        note="ours: these runs (mean ± sd over seeds); paper: as printed, with its "
             "table, judge and the paper versions (v1, v2) that print it. A win rate "
             "is comparable only when the judge and the reference outputs are the same.")
    for members in seed_groups(runs):
        r = members[0]
        for v in paper_numbers.paper_values(dataset=r.dataset, method=r.method):
            if not (paper_numbers.matches_model(v.model, r.model)
                    and (v.alpha is None or v.alpha == r.alpha_key)
                    and (v.norm_match is None or v.norm_match == r.norm_key)):
                continue
            vals = [x for x in (_ours(m, v.metric) for m in members) if x is not None]
            if vals:
                table.add(setting=r.label, dataset=r.dataset, metric=v.metric, ours=mean(vals),
                          ours_sd=sd(vals), n=len(vals), paper=v.value, judge=v.judge,
                          table=f"{paper_numbers.PAPER_TABLES[v.table].label()}: {v.row}",
                          versions=",".join(v.versions), **{"paper text": v.text})
    return table


def table1_vs_none(runs: Sequence[RunRecord], datasets: Sequence[str], notes: list[str]
                   ) -> Table:
    """Table 1's noisy rows as differences from the no-noise row (same dataset and
    variant): win rate B − A in points with its 95% interval, a paired bootstrap over the
    judged prompts stratified by seed (:func:`symnoise.experiments.compare.compare_runs`).
    ``*``: significant, i.e. the interval excludes 0. A cell that cannot be paired is ``-``
    and ``notes`` says why. The CSV has a row per cell."""
    rows = grid_rows(runs)
    base = {g.variant: g for g in rows if g.method == "none"}
    table = Table("table1_vs_none", "Table 1: difference from the no-noise row (win-rate "
                  "points, 95% interval)", {"method": text("row"), **{d: text(d) for d in
                                                                     datasets}},
                  ["row", "dataset", "diff", "ci_low", "ci_high", "n", "significant"],
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
            shown.append(diff_text(diff, 1) + ("" if diff is None else win_rate_mark(a + b)))
            if diff is not None:
                table.data.append([g.label(), d, diff.diff, diff.ci_low, diff.ci_high, diff.n,
                                   diff.significant])
        table.rows.append(shown)
    return table


# -- the report -----------------------------------------------------------------------------
@dataclass
class ReportResult:
    """What :func:`build_report` wrote. skipped: ``{"path", "reason"}`` per run folder left
    out; paper_comparable: the paper rows sit inside Table 1; figures: name -> caption;
    notes: what the tables do not show (unreadable files, left-out rows)."""

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
            ("model", "model", partial(pn.matches_model, pn.PAPER_MODEL), pn.PAPER_MODEL),
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
    """Write the report of the run folders under ``runs_dir`` into ``output_dir`` (default
    ``RUNS_DIR/report``); a run whose ``run.json`` cannot be read is skipped and listed.
    FileNotFoundError: no ``runs_dir``; ValueError: no run folder in it."""
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
            "with them.", "", *_section(paper, "")[2:]]


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
