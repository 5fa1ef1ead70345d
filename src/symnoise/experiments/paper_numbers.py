"""Published numbers of the SymNoise and NEFTune papers, for reference rows in reports.

The numbers are data (``paper_tables.yaml`` beside this module, with their sources), never
derived: a cell the sources do not state is absent. :data:`WIN_RATE_ROWS`: the AlpacaEval
win rates of the abstracts and NEFTune's Figure 1. :data:`PAPER_TABLES` (``"T1"``..``"T5"``):
every table of the SymNoise paper (``v1`` = arXiv:2312.01523, ``v2`` its later version),
cells as printed, each with its judge (``GPT-4``, ``ChatGPT``, ``None``) and versions.
:func:`paper_values` gives one :class:`PaperValue` per number for matching runs. ``alpha``
and ``norm_match`` (True for "/sqrt(3)" rows) only where printed; names are symnoise's
(methods ``none``, ``uniform`` = NEFTune, ...; metrics ``win_rate``, ``avg_chars``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from ..config import PAPER_DATASETS

__all__ = [
    "COLUMN_TITLES", "METRIC_TITLES", "NEFTUNE_ALPHA", "NEFTUNE_CITATION", "PAPER_DATASETS",
    "PAPER_MODEL", "PAPER_REFERENCE", "PAPER_TABLES", "PAPER_VERSIONS", "SYMNOISE_ALPHA",
    "SYMNOISE_CITATION", "WIN_RATE_ROWS", "PaperRow", "PaperTable", "PaperValue", "TableRow",
    "matches_model", "matches_paper_model", "matches_paper_reference", "paper_values",
]

_DATA = yaml.safe_load(resources.files(__package__).joinpath("paper_tables.yaml")
                       .read_text("utf-8"))
SYMNOISE_CITATION: str = _DATA["citations"]["symnoise"]
NEFTUNE_CITATION: str = _DATA["citations"]["neftune"]
#: The papers' base model, AlpacaEval reference and versions.
PAPER_MODEL: str = _DATA["model"]
PAPER_REFERENCE: str = _DATA["reference"]
PAPER_VERSIONS: dict[str, str] = _DATA["versions"]
#: NEFTune's noise alpha per dataset; SymNoise's alpha on every dataset.
NEFTUNE_ALPHA: dict[str, float] = _DATA["neftune_alpha"]
SYMNOISE_ALPHA: float = _DATA["symnoise_alpha"]
#: Display titles of the columns (datasets, harness tasks) and of T4's metrics.
COLUMN_TITLES: dict[str, str] = _DATA["column_titles"]
METRIC_TITLES: dict[str, str] = _DATA["metric_titles"]


@dataclass(frozen=True)
class PaperRow:
    """A method's published AlpacaEval win rates (%) per dataset; the source's average."""

    label: str
    method: str
    values: dict[str, float] = field(default_factory=dict)
    average: float | None = None
    digits: int = 2
    citation: str = ""
    where: str = ""


@dataclass(frozen=True)
class PaperValue:
    """One published number with its setting; ``text`` is the cell as printed."""

    table: str
    row: str
    model: str | None
    dataset: str
    method: str
    metric: str
    text: str
    alpha: float | None
    norm_match: bool | None
    judge: str | None
    versions: tuple[str, ...]

    @property
    def value(self) -> float:
        return float(self.text)


@dataclass(frozen=True)
class TableRow:
    """A printed row, one cell per column ("" = empty; T3's "62.55 (1061.89)" = win rate
    (average characters)); ``dataset``: T5's data; ``metric``: T4's; ``alpha`` per column."""

    label: str
    method: str
    cells: tuple[str, ...]
    model: str | None = PAPER_MODEL
    dataset: str | None = None
    metric: str | None = None
    alpha: float | tuple[float, ...] | None = None
    norm_match: bool | None = None
    versions: tuple[str, ...] | None = None  # None: the table's
    average: str | None = None


@dataclass(frozen=True)
class PaperTable:
    """A published table: its judge, the paper versions printing it, its rows as printed."""

    key: str
    title: str
    judge: str | None
    versions: tuple[str, ...]
    where: str
    columns: tuple[str, ...]
    metric: str | None
    rows: tuple[TableRow, ...]
    note: str = ""
    v1_only_columns: tuple[str, ...] = ()  # columns the later version dropped (T4: ShareGPT)

    def label(self) -> str:
        """E.g. ``"T1 (judge GPT-4; v1 Table 1, v2 Table 1)"``."""
        return f"{self.key} ({f'judge {self.judge}' if self.judge else 'no judge'}; {self.where})"

    def values(self) -> list[PaperValue]:
        """The table's numbers, one :class:`PaperValue` each (empty cells left out)."""
        out: list[PaperValue] = []
        for row in self.rows:
            for i, (col, cell) in enumerate(zip(self.columns, row.cells, strict=True)):
                if not cell:
                    continue
                metric = col if row.dataset else (row.metric or self.metric or "")
                alpha = row.alpha[i] if isinstance(row.alpha, tuple) else row.alpha
                versions = ("v1",) if col in self.v1_only_columns else (
                    row.versions or self.versions)
                win, _, length = cell.partition(" (")
                found = [(metric, win)] + ([("avg_chars", length.rstrip(")"))] if length else [])
                out += [PaperValue(self.key, row.label, row.model, row.dataset or col,
                                   row.method, name, text, alpha, row.norm_match, self.judge,
                                   versions) for name, text in found]
        return out

    def header(self) -> list[str]:
        """Column titles for display: ``row``, the columns, ``Average`` when printed."""
        average = ["Average"] if any(r.average for r in self.rows) else []
        return ["row", *(COLUMN_TITLES.get(c, c) for c in self.columns), *average]

    def display_rows(self) -> list[list[str]]:
        """The rows as printed: label (with the metric for T4), cells, average."""
        average = any(r.average for r in self.rows)
        return [[f"{METRIC_TITLES[r.metric]}: {r.label}" if r.metric else r.label, *r.cells,
                 *([r.average or ""] if average else [])] for r in self.rows]


def _tuples(d: dict[str, Any]) -> dict[str, Any]:  # YAML lists -> the frozen tuples
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def _load() -> tuple[tuple[PaperRow, ...], dict[str, PaperTable]]:
    rows = tuple(PaperRow(**{**r, "citation": _DATA["citations"][r["citation"]]})
                 for r in _DATA["win_rate_rows"])
    tables = {key: PaperTable(key=key, **_tuples({
        **t, "rows": tuple(TableRow(**_tuples(r)) for r in t["rows"])}))
        for key, t in _DATA["tables"].items()}
    return rows, tables


WIN_RATE_ROWS, PAPER_TABLES = _load()


def _squash(text: str) -> str:  # "Llama-2-7b-hf" -> "llama27bhf"
    return "".join(c for c in text.lower() if c.isalnum())

def matches_paper_model(model: str | None) -> bool:
    """True when a model path/id names LLaMA-2-7B (``Llama-2-7b-hf``, ``llama2_7b`` ...),
    and not its chat or 13B/70B variants."""
    return bool(model) and "llama27b" in _squash(model) and "chat" not in _squash(model)


def matches_model(paper_model: str | None, model: str | None) -> bool:
    """Whether a run's model is a published row's model (LLaMA-2-7B as
    :func:`matches_paper_model` says; another model when its name is in the run's)."""
    if paper_model == PAPER_MODEL:
        return matches_paper_model(model)
    return bool(paper_model) and _squash(paper_model) in _squash(model or "")


def matches_paper_reference(reference: str | None) -> bool:
    """True when judged against text-davinci-003 (AlpacaEval v1's reference outputs)."""
    return bool(reference) and _squash(reference) in ("textdavinci003", "davinci003")


def paper_values(table: str | None = None, **match: Any) -> list[PaperValue]:
    """Published numbers, flat, filtered by ``table`` (``"T1"``...) and ``match``
    (PaperValue fields, e.g. ``method="symnoise"``). KeyError for an unknown table,
    ValueError for an unknown field."""
    if table is not None and table not in PAPER_TABLES:
        raise KeyError(f"no paper table {table!r}; expected one of {', '.join(PAPER_TABLES)}")
    fields = set(PaperValue.__dataclass_fields__)
    if unknown := sorted(set(match) - fields):
        raise ValueError(f"unknown field(s) {unknown}; PaperValue has {sorted(fields)}")
    tables = [PAPER_TABLES[table]] if table else list(PAPER_TABLES.values())
    return [v for t in tables for v in t.values()
            if all(getattr(v, k) == want for k, want in match.items())]
