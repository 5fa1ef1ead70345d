"""Published numbers of the SymNoise and NEFTune papers, read from ``paper_tables.yaml``
(the data, with its sources): :data:`WIN_RATE_ROWS` (abstracts, NEFTune's Figure 1),
:data:`PAPER_TABLES` (T1-T5 as printed) and :func:`paper_values` (one number each)."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from ..config import PAPER_DATASETS

__all__ = ["COLUMN_TITLES", "NEFTUNE_ALPHA", "NEFTUNE_CITATION", "PAPER_DATASETS", "PAPER_MODEL",
           "PAPER_REFERENCE", "PAPER_TABLES", "SYMNOISE_CITATION", "WIN_RATE_ROWS", "PaperValue",
           "matches_model", "matches_paper_reference", "paper_values"]

_DATA = yaml.safe_load(resources.files(__package__).joinpath("paper_tables.yaml")
                       .read_text("utf-8"))
SYMNOISE_CITATION: str = _DATA["citations"]["symnoise"]
NEFTUNE_CITATION: str = _DATA["citations"]["neftune"]
PAPER_MODEL: str = _DATA["model"]  # the papers' base model and AlpacaEval reference
PAPER_REFERENCE: str = _DATA["reference"]
NEFTUNE_ALPHA: dict[str, float] = _DATA["neftune_alpha"]  # NEFTune's alpha per dataset
COLUMN_TITLES: dict[str, str] = _DATA["column_titles"]  # datasets, harness tasks


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
        return [[f"{_DATA['metric_titles'][r.metric]}: {r.label}" if r.metric else r.label, *r.cells,
                 *([r.average or ""] if average else [])] for r in self.rows]


def _tuples(d: dict[str, Any]) -> dict[str, Any]:  # YAML lists -> the frozen tuples
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


WIN_RATE_ROWS = tuple(PaperRow(**{**r, "citation": _DATA["citations"][r["citation"]]})
                      for r in _DATA["win_rate_rows"])
PAPER_TABLES = {key: PaperTable(key=key, **_tuples({
    **t, "rows": tuple(TableRow(**_tuples(r)) for r in t["rows"])}))
    for key, t in _DATA["tables"].items()}


def _squash(text: str | None) -> str:  # "Llama-2-7b-hf" -> "llama27bhf"
    return "".join(c for c in (text or "").lower() if c.isalnum())


def matches_model(paper_model: str | None, model: str | None) -> bool:
    """Whether a run's model is a published row's model: LLaMA-2-7B for any path/id naming
    it (``Llama-2-7b-hf``, ``llama2_7b``; not its chat or 13B/70B variants), another model
    when its name is in the run's."""
    if paper_model == PAPER_MODEL:
        return "llama27b" in _squash(model) and "chat" not in _squash(model)
    return bool(paper_model) and _squash(paper_model) in _squash(model)


def matches_paper_reference(reference: str | None) -> bool:
    """True when judged against text-davinci-003 (AlpacaEval v1's reference outputs)."""
    return _squash(reference) in ("textdavinci003", "davinci003")


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
