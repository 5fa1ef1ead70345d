"""The one reader of AlpacaEval model-outputs and annotations files (JSON list or JSON
Lines): every row checked, errors name the file and the row; :func:`preference` is the one
reading of a verdict (ties included)."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ._io import read_records, user_message

# File names looked for when a folder is given instead of a file.
OUTPUTS_NAMES = ("model_outputs.json", "model_outputs.jsonl")
_OPTIONAL_STRINGS = ("input", "generator", "dataset")

Source = str | os.PathLike[str] | Sequence[Mapping[str, Any]]


class OutputsError(ValueError):
    """A bad model-outputs or annotations file; the message names the file and the row."""


def _file_rows(path: Path) -> list[tuple[str, Any]]:
    if path.is_dir():
        for name in OUTPUTS_NAMES:
            if (path / name).is_file():
                return _file_rows(path / name)
        raise FileNotFoundError(f"{path}: a folder without {' or '.join(OUTPUTS_NAMES)}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    data, lines = read_records(path, error=OutputsError)
    if lines is not None:
        return [(f"line {n}", row) for n, row in zip(lines, data, strict=True)]
    if isinstance(data, Mapping):  # a one-line JSONL file, or one object
        data = [data]
    if not isinstance(data, list):
        raise OutputsError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
    return [(f"entry {i}", row) for i, row in enumerate(data)]


def _check_row(row: Any, where: str, fields: Sequence[str]) -> dict[str, Any]:
    if not isinstance(row, Mapping):
        raise OutputsError(f"{where}: expected an object, got {type(row).__name__}")
    for key in fields:
        if key not in row:
            keys = ", ".join(map(str, list(row)[:8])) or "none"
            raise OutputsError(f"{where}: missing the {key!r} field (keys: {keys})")
        if not isinstance(row[key], str):
            raise OutputsError(
                f"{where}: {key!r} must be a string, got {type(row[key]).__name__} {row[key]!r:.80}"
            )
    for key in _OPTIONAL_STRINGS:
        if row.get(key) is not None and not isinstance(row[key], str):
            raise OutputsError(f"{where}: {key!r} must be a string or null, got {row[key]!r:.80}")
    return dict(row)


def read_rows(
    source: Source, *, fields: Sequence[str] = ("instruction", "output"), what: str = "outputs"
) -> list[dict[str, Any]]:
    """Rows of a JSON / JSONL file, a folder holding ``model_outputs.json(l)``, or a list.

    Each row must be an object whose ``fields`` are strings; ``input``, ``generator`` and
    ``dataset`` are strings or absent. Returns copies, in file order.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        origin, rows = str(path), _file_rows(path)
    else:
        origin = f"{what} (in memory)"
        rows = [(f"entry {i}", row) for i, row in enumerate(source)]
    return [_check_row(row, f"{origin}: {where}", fields) for where, row in rows]


def read_outputs(source: Source, *, what: str = "model outputs") -> list[dict[str, Any]]:
    """Rows of a model-outputs file: ``instruction`` and ``output`` strings required."""
    return read_rows(source, fields=("instruction", "output"), what=what)


def read_annotations(source: Source) -> list[dict[str, Any]]:
    """Rows of an annotations file: ``instruction``, ``output_1``, ``output_2`` strings and
    a ``preference`` in [1, 2] or null (``0`` is AlpacaEval's old spelling of a tie)."""
    rows = read_rows(source, fields=("instruction", "output_1", "output_2"), what="annotations")
    origin = str(source) if isinstance(source, (str, os.PathLike)) else "annotations (in memory)"
    for i, row in enumerate(rows):
        preference(row.get("preference"), f"{origin}: entry {i}")
    return rows


DRAW = 1.5  # AlpacaEval's draw; 0 is its older spelling of one


def preference(value: Any, where: str) -> float | None:
    """The one reading of an AlpacaEval verdict: a number in [1, 2] (1: output_1 better, 2:
    output_2, 1.5 a draw, between: graded), ``0`` (AlpacaEval's old draw) as 1.5, None for
    null or NaN (no verdict); anything else an OutputsError naming ``where``."""
    if value is None or isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not (value == 0 or 1 <= value <= 2):
        raise OutputsError(f"{where}: 'preference' must be in [1, 2] (1: output_1 better, 2: "
                           f"output_2 better, 1.5 or 0 a draw) or null, got {value!r}")
    return DRAW if value == 0 else float(value)


def outcome(pref: float) -> str:
    """A :func:`preference` as ``win`` (output_2 better), ``loss`` or ``draw``."""
    return "win" if pref > DRAW else "loss" if pref < DRAW else "draw"


def full_instruction(row: Mapping[str, Any]) -> str:
    """The whole prompt a model answered: ``instruction``, then ``input`` after a blank line."""
    return user_message(str(row["instruction"]), row.get("input") or "")
