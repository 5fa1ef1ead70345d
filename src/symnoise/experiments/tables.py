"""Tables of the report: a :class:`Table` is records (one dict per row) shown through its
columns' formatters (Markdown) and written through its CSV columns (full precision); the
cell of runs that differ only by seed (mean ± sd, n)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import MISSING, finite, fmt, markdown_table

__all__ = ["Table", "cell", "diff_text", "interval", "mean", "num", "sd", "seeds",
           "text"]

Column = Callable[[Mapping[str, Any]], str]  # a record -> its shown cell


def mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def sd(values: Sequence[float]) -> float | None:
    """The sample standard deviation (n - 1), None for fewer than two values."""
    return statistics.stdev(values) if len(values) > 1 else None


def cell(m: float | None, s: float | None, n: int | None, digits: int, *notes: str,
         mark: str = "") -> str:
    """Runs that differ only by seed: ``mean ± sd (n=k)``; one run: its value. ``notes``
    (e.g. ``α=5``) go in the parentheses; ``mark`` right after the numbers."""
    if not n:
        return MISSING
    text = fmt(m, f".{digits}f") + (f" ± {s:.{digits}f}" if n > 1 else "") + mark
    extras = [e for e in (*notes, f"n={n}" if n > 1 else "") if e]
    return f"{text} ({', '.join(extras)})" if extras else text


def text(key: str) -> Column:
    """The record's ``key`` as text (``-`` when None)."""
    return lambda r: MISSING if r.get(key) is None else str(r[key])


def num(key: str, digits: int, scale: float = 1.0) -> Column:
    """The record's ``key`` with ``digits`` (the record's own ``digits`` when it has them)."""
    return lambda r: fmt(r.get(key), f".{r.get('digits', digits)}f", scale=scale)


def seeds(key: str, digits: int, *, sd: str | None = None, n: str | None = None,
          mark: str | None = None, note: str | None = None) -> Column:
    """:func:`cell` of the record's ``key`` (the mean), ``sd`` and ``n`` (default ``key sd``
    and ``key n``; no n: one value); ``mark``/``note``: the record keys of its mark and note."""
    sd, n = sd or f"{key} sd", n or f"{key} n"
    return lambda r: cell(r.get(key), r.get(sd), r.get(n, 1), r.get("digits", digits),
                          r.get(note, "") if note else "", mark=r.get(mark, "") if mark else "")


def interval(low: Any, high: Any, spec: str, *, scale: float = 1.0) -> str:
    """``[low, high]``, or ``-`` when either end is missing."""
    if finite(low) is None or finite(high) is None:
        return MISSING
    return f"[{fmt(low, spec, scale=scale)}, {fmt(high, spec, scale=scale)}]"


def diff_text(d: Any, digits: int, star: bool = True) -> str:
    """A paired difference ``+1.2 [-0.3, +2.7]``, ``*`` when significant (``star``)."""
    if d is None:
        return MISSING
    spec = f"+.{digits}f"
    return f"{fmt(d.diff, spec)} {interval(d.ci_low, d.ci_high, spec)}" + (
        "*" if d.significant and star else "")


@dataclass
class Table:
    """Records shown through ``columns`` (title -> :data:`Column`) as ``rows`` and kept as
    numbers by ``csv_header`` (record keys) as ``data``; both built once, by :meth:`add`."""

    name: str
    title: str
    columns: dict[str, Column]
    csv_header: list[str]
    note: str = ""
    rows: list[list[str]] = field(default_factory=list)
    data: list[list[Any]] = field(default_factory=list)

    @property
    def header(self) -> list[str]:
        return list(self.columns)

    def add(self, **record: Any) -> None:
        self.rows.append([show(record) for show in self.columns.values()])
        self.data.append([record.get(k) for k in self.csv_header])

    def to_markdown(self) -> str:
        return markdown_table(self.header, self.rows)

    def frame(self) -> Any:
        """The numbers as a pandas DataFrame (CSV columns)."""
        import pandas as pd

        return pd.DataFrame(self.data, columns=self.csv_header)

    def write_csv(self, path: Path) -> None:
        self.frame().to_csv(path, index=False, na_rep=MISSING)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "header": self.header,
                "rows": self.rows, "csv_header": self.csv_header, "data": self.data,
                "note": self.note}
