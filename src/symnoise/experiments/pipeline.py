"""An experiment from end to end: the sweep, then the report over its run folders."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

from .experiment_file import Experiment, load_experiment
from .sweep import SweepResult, _say, run_sweep

REPORT_DIR = "report"  # OUTPUT/report: tables, figures, report.md


def run_experiment(experiment: str | os.PathLike[str] | Mapping[str, Any] | Experiment, *,
                   executor: str | None = None, dry_run: bool = False,
                   only: str | Sequence[str] | None = None, progress: bool = True,
                   ) -> SweepResult:
    """:func:`~.sweep.run_sweep`, then, when the experiment says ``report: true`` (and it
    was not a dry run), the report in ``OUTPUT/report``; a report that cannot be built is
    said in ``result.report_error`` (the runs are done)."""
    exp = experiment if isinstance(experiment, Experiment) else load_experiment(experiment)
    result = run_sweep(exp, executor=executor, dry_run=dry_run, only=only, progress=progress)
    if not exp.report or dry_run:
        return result
    _say(progress, "building the report")
    try:  # looked up at call time: tests may stand in for it
        report = importlib.import_module("symnoise.experiments.report")
        built = report.build_report(exp.output_dir, exp.output_dir / REPORT_DIR)
        full = built.to_dict()
        files = full.get("files") or {}
        result.report = {"report_md": files.get("report_md"), "output_dir": full.get("output_dir"),
                         "files": files, "notes": full.get("notes") or [],
                         "summary": full.get("summary") or [],
                         "table": built.format_table()}
    except Exception as exc:  # noqa: BLE001 - the runs are done; say why no report
        result.report_error = f"{type(exc).__name__}: {exc}"
    return result
