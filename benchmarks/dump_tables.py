"""Dump every table and report the tests produce, to show a refactoring changes no byte.

    PYTHONPATH=src python benchmarks/dump_tables.py OUT_DIR [test files] [pytest args]

Runs the report/compare/norms/... tests (not those marked slow: they train the real
default model, and their timings differ anyway) with a fixed ``--basetemp`` (so paths in the outputs
are the same on every run) and a plugin that logs, per test, the text every formatting entry
point returned (``format_table``, ``to_markdown``, ``line``, ...). Afterwards it copies the
files the tests wrote (``*.md``, ``*.csv``, ``report.json``, ``norms*``) into ``OUT_DIR/files``.
Compare two dumps with ``diff -r``.
"""

from __future__ import annotations

import functools
import importlib
import json
import shutil
import sys
from pathlib import Path

import pytest

TESTS = ["tests/test_report.py", "tests/test_compare.py", "tests/test_compare_lc.py",
         "tests/test_norms.py", "tests/test_paper_recipe.py", "tests/test_paired.py",
         "tests/test_stats.py", "tests/test_harness.py", "tests/test_tasks_eval.py",
         "tests/test_winrate.py", "tests/test_demo.py", "tests/test_sweep.py"]
#: module: names (``Class.method`` or a function) whose return value is logged.
WATCHED = {
    "symnoise.experiments.report": ["ReportResult.format_table"],
    "symnoise.experiments.compare": ["Comparison.format_table", "Comparison.to_dict",
                                     "MetricComparison.line"],
    "symnoise.experiments.tables": ["Table.to_markdown", "Table.to_dict", "markdown_table",
                                    "text_table"],
    "symnoise.experiments.norms": ["format_norms_table"],
    "symnoise.experiments.measured": ["Measured.sentences"],
    "symnoise.experiments.sweep": ["SweepResult.format_table"],
    "symnoise.experiments.demo": ["format_demo_table"],
    "symnoise.experiments.evaluation": ["_summary_markdown"],
    "symnoise.evaluate.stats": ["format_stats_table"],
    "symnoise.evaluate.harness": ["HarnessResult.format_table", "HarnessResult.to_markdown"],
    "symnoise.evaluate.tasks": ["TasksReport.format_table"],
    "symnoise.evaluate.winrate": ["JudgeReport.format_table", "leaderboard_markdown"],
    "symnoise.evaluate.paired": ["format_interval"],
    "symnoise.generate": ["GenerateReport.format_table"],
}


class Dump:
    def __init__(self, out: Path) -> None:
        self.out, self.test, self.depth = out, "session", 0
        (out / "calls").mkdir(parents=True, exist_ok=True)

    def log(self, name: str, value: object) -> None:
        text = value if isinstance(value, str) else json.dumps(value, indent=1, default=str)
        safe = self.test.replace("/", "_").replace("::", "__")[:200]
        with open(self.out / "calls" / f"{safe}.txt", "a", encoding="utf-8") as f:
            f.write(f"== {name}\n{text}\n")

    def wrap(self, owner: object, attr: str, name: str) -> None:
        fn = getattr(owner, attr, None)
        if fn is None:
            return

        @functools.wraps(fn)
        def logged(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.depth += 1
            try:
                result = fn(*args, **kwargs)
            finally:
                self.depth -= 1
            if self.depth == 0:  # outermost call only: inner ones are part of it
                self.log(name, result)
            return result

        setattr(owner, attr, logged)

    def pytest_configure(self, config: pytest.Config) -> None:
        for module, names in WATCHED.items():
            mod = importlib.import_module(module)
            for name in names:
                owner_name, _, attr = name.rpartition(".")
                owner = getattr(mod, owner_name, None) if owner_name else mod
                if owner is not None:
                    self.wrap(owner, attr, f"{module}.{name}")

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        self.test = item.nodeid


def main(argv: list[str]) -> int:
    out = Path(argv[0]).resolve()
    if out.exists():
        shutil.rmtree(out)
    sys.path.insert(0, str(Path.cwd()))  # as `python -m pytest` does: tests import tests.*
    base = Path("/tmp/symnoise-tables-dump")
    files = [a for a in argv[1:] if a.endswith(".py")] or TESTS  # test files given: those
    rc = pytest.main(["-q", "-p", "no:cacheprovider", f"--basetemp={base}", "-m", "not slow",
                      *files, *(a for a in argv[1:] if not a.endswith(".py"))],
                     plugins=[Dump(out)])
    for path in sorted(base.rglob("*")):
        if path.is_file() and (path.suffix in (".md", ".csv") or path.name == "report.json"
                               or path.name.startswith("norms")) and path.suffix != ".png":
            dest = out / "files" / path.relative_to(base)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
    return int(rc)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
