"""Tables of the report: a :class:`Table` (shown cells + numbers), its Markdown, CSV and
plain-text forms, and the formatting of a cell (mean ± sd over seeds, n)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["MISSING", "Table", "cell", "fmt", "group_by", "markdown_table", "mean", "number",
           "sd", "text_table"]

MISSING = "-"


def number(value: Any) -> float | None:
    """A finite number as float, else None (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def group_by(items: Iterable[Any], key: Callable[[Any], Hashable]) -> dict[Any, list[Any]]:
    """Items by ``key(item)``, groups in order of first appearance, items in input order."""
    out: dict[Any, list[Any]] = {}
    for item in items:
        out.setdefault(key(item), []).append(item)
    return out


def fmt(value: float | None, digits: int, scale: float = 1.0) -> str:
    return MISSING if value is None else f"{value * scale:.{digits}f}"


def mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def sd(values: Sequence[float]) -> float | None:
    """The sample standard deviation (n - 1), None for fewer than two values."""
    return statistics.stdev(values) if len(values) > 1 else None


def cell(values: Sequence[float], digits: int, *notes: str, mark: str = "") -> str:
    """Runs that differ only by seed: ``mean ± sd (n=k)``; one run: its value. ``notes``
    (e.g. ``α=5``) go in the parentheses; ``mark`` right after the numbers."""
    if not values:
        return MISSING
    text = fmt(mean(values), digits)
    if len(values) > 1:
        text += f" ± {sd(values):.{digits}f}"
    text += mark
    extras = [e for e in (*notes, f"n={len(values)}" if len(values) > 1 else "") if e]
    return f"{text} ({', '.join(extras)})" if extras else text


def _numeric(cells: Sequence[str]) -> bool:
    """True when every present cell of a column starts like a number (or an interval)."""
    return all(c[:1].isdigit() or c[:1] == "[" or (c[:1] in "-+" and c[1:2].isdigit())
               for c in cells if c != MISSING)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table; numeric columns (after the first) right-aligned."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    align = ["---"] + ["---:" if _numeric([r[i] for r in rows]) else "---"
                       for i in range(1, len(header))]
    return "\n".join([line(header), "|" + "|".join(align) + "|", *map(line, rows)]) + "\n"


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, rule: bool = True
               ) -> str:
    """Columns padded to their widest cell, a dashed rule under the header (``rule``)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(header), *(["  ".join("-" * w for w in widths)] if rule else []),
                      *map(line, rows)])


@dataclass
class Table:
    """A table both as shown (``rows``, strings) and as data (``data``, numbers or None).

    ``header``/``rows`` make the Markdown; ``csv_header``/``data`` make the CSV (numbers at
    full precision, None written as ``-``).
    """

    name: str
    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    csv_header: list[str] = field(default_factory=list)
    data: list[list[Any]] = field(default_factory=list)
    note: str = ""

    def add(self, shown: list[str], data: list[Any] | None = None, /, **csv: Any) -> None:
        """One row: its cells as shown, and its numbers (``data``, or by CSV column)."""
        self.rows.append(shown)
        self.data.append(data if data is not None else [csv.get(c) for c in self.csv_header])

    def to_markdown(self) -> str:
        return markdown_table(self.header, self.rows)

    def frame(self) -> Any:
        """The numbers as a pandas DataFrame (CSV columns)."""
        import pandas as pd

        return pd.DataFrame(self.data, columns=self.csv_header)

    def write_csv(self, path: Path) -> None:
        self.frame().to_csv(path, index=False, na_rep=MISSING)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
