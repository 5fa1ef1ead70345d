"""Paper-style tables and figures over many run folders (``symnoise report RUNS_DIR``).

:func:`build_report` finds every run folder under ``RUNS_DIR`` (:func:`symnoise.run.find_runs`),
reads each (:mod:`.records`), builds the tables (:mod:`.report_tables`: Table 1, the judge
columns and judge check, ablation, lengths, OpenLLM, synthetic, runs, published numbers)
and figures (:mod:`.figures`), and writes ``report.md``, one CSV per table and the PNGs to
the output folder (default ``RUNS_DIR/report``). What each table holds, how seeds are
grouped and how unchecked judges are marked: the README ("symnoise report").
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
from . import report_tables as tables
from .figures import write_figures
from .records import RunRecord, assign_variants, dataset_order, load_run, setting_label
from .tables import MISSING, Table

__all__ = ["ReportResult", "RunRecord", "Table", "build_report", "find_runs", "load_run",
           "setting_label"]

DEFAULT_OUTPUT = "report"


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
            "runs_dir": str(self.runs_dir), "output_dir": str(self.output_dir),
            "runs": [r.to_dict() for r in self.runs], "skipped": self.skipped,
            "tables": {k: t.to_dict() for k, t in self.tables.items()},
            "files": {k: str(v) for k, v in self.files.items()}, "figures": self.figures,
            "paper_comparable": self.paper_comparable, "notes": self.notes,
        }

    def format_table(self) -> str:
        """Text for the terminal: Table 1 and the judge columns, the synthetic scores, the
        runs, the files."""
        out = [f"{len(self.runs)} run(s) under {self.runs_dir}"
               + (f", {len(self.skipped)} skipped" if self.skipped else "")]
        for name in ("table1", "table1_vs_none", "judged", "synthetic", "runs"):
            t = self.tables.get(name)
            if t is not None and t.rows:
                out += ["", t.title, t.to_markdown().rstrip()]
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
            notes: list[str]) -> dict[str, Table]:
    out = {"table1": tables.table1(runs, datasets, comparable),
           "table1_vs_none": tables.table1_vs_none(runs, datasets, notes),
           "judged": tables.judged(runs), "ablation": tables.ablation(runs)}
    out.update((t.name, t) for t in tables.length_tables(runs, datasets))
    out.update(openllm=tables.openllm(runs), synthetic=tables.synthetic(runs),
               runs=tables.runs_table(runs))
    out["paper_win_rates"] = tables.paper_table(
        list(PAPER_DATASETS), name="paper_win_rates", title="Published AlpacaEval win rates (%)",
        note="Sources: " + paper_numbers.SYMNOISE_CITATION + "; "
             + paper_numbers.NEFTUNE_CITATION + ". Only the cells the sources state; the "
             "Average is the source's own.")
    out["paper_matches"] = tables.paper_matches(runs)
    out.update((t.name, t) for t in tables.published_tables())
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
    all_tables = _tables(runs, datasets, comparable, notes)
    files: dict[str, Path] = {}
    for name, table in all_tables.items():
        table.write_csv(out / f"{name}.csv")
        files[f"{name}_csv"] = out / f"{name}.csv"
    figures = write_figures(out, runs, all_tables["table1"], datasets, notes)
    files.update((name.removesuffix(".png"), out / name) for name in figures)
    missing_eval = [r.name for r in runs if r.win_rate is None and r.synthetic is None
                    and r.stats is None and not r.harness]
    if missing_eval:
        notes.append(f"{len(missing_eval)} run(s) have no evaluation results (run symnoise "
                     f"eval on them): {', '.join(missing_eval)}")
    unchecked = [r.name for r in runs if r.win_rate is not None and r.judge_mark]
    if unchecked:
        notes.append(f"{len(unchecked)} win rate(s) come from a judge that was not checked "
                     f"or not usable ({tables.JUDGE_NOTE}): {', '.join(unchecked)}")
    notes += [f"skipped {s['path']}: {s['reason']}" for s in skipped]
    result = ReportResult(runs_dir=runs_dir, output_dir=out, runs=runs, skipped=skipped,
                          tables=all_tables, files=files, figures=figures,
                          paper_comparable=comparable, notes=notes)
    files["report_md"] = out / "report.md"
    files["report_md"].write_text(_report_markdown(result, why_not), encoding="utf-8")
    files["report_json"] = out / "report.json"
    files["report_json"].write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n",
                                    encoding="utf-8")
    return result


def _section(table: Table, empty: str, level: str = "##") -> list[str]:
    out = [f"{level} {table.title}", ""]
    if not table.rows:
        return out + [empty, ""]
    out += [table.to_markdown()] + ([table.note, ""] if table.note else [])
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


def _report_markdown(result: ReportResult, why_not: str) -> str:
    t, runs = result.tables, result.runs
    lines = ["# Noisy-embedding fine-tuning: report", "",
             f"{len(runs)} run folder(s) under `{result.runs_dir}`"
             + (f"; {len(result.skipped)} skipped (see Notes)." if result.skipped else "."), ""]
    judges = sorted({f"{r.judge} vs {r.reference}" for r in runs if r.win_rate is not None})
    if judges:
        lines += ["Win rates: " + "; ".join(judges) + ".", ""]
    lines += _section(t["table1"], "No run has a win rate yet (symnoise eval RUN --judge ...).")
    if not judges:
        lines += ["No run has a win rate: every Table 1 cell is '-'. The synthetic "
                  "exact-answer score below is the judge-free measure.", ""]
    lines += _section(t["table1_vs_none"], "No noisy row has a win rate to compare with the "
                      "no-noise row.")
    lines += _section(t["judged"], "No judged runs.")
    lines += _figure(result, "fig_win_rate.png")
    lines += _section(t["ablation"], "No runs.") + _figure(result, "fig_win_rate_vs_length.png")
    lines += ["## Response length and repetition", ""]
    for name in ("lengths_chars", "lengths_words", "lengths_rep2"):
        if any(c != MISSING for row in t[name].rows for c in row[1:]):
            lines += [f"### {t[name].title}", "", t[name].to_markdown(),
                      f"CSV: [`{name}.csv`]({name}.csv)", ""]
        else:
            lines += [f"### {t[name].title}", "", "No values: no run has this statistic "
                      "(symnoise eval writes them; repetition needs outputs of at least N "
                      "words).", ""]
    lines += [t["lengths_chars"].note, ""]
    lines += _section(t["openllm"], "No run has harness results (symnoise eval RUN --tasks "
                      "openllm).")
    lines += _section(t["synthetic"], "No run has a synthetic score.")
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
