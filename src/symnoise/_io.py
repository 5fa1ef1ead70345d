"""The floor every layer stands on: atomic writes, text and JSON / JSON Lines reading, the
crash-safe append journal, the prompt's user text, disk-failure detection, grouping, the
one number formatter and the one table renderer (the README's Architecture names each)."""

from __future__ import annotations

import errno
import json
import logging
import math
import numbers
import os
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def read_text(path: str | os.PathLike[str]) -> str:
    """The text of a UTF-8 file (a leading byte-order mark dropped); ValueError naming the
    file and the first bad byte otherwise."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValueError(
            f"{path}: not UTF-8 text: byte 0x{data[exc.start]:02x} at byte offset {exc.start} "
            f"(line {line}) {exc.reason}; save the file as UTF-8") from None


def read_json_lines(path: str | os.PathLike[str], *, text: str | None = None,
                    error: Callable[[str], Exception] = ValueError,
                    invalid: Callable[[str], Any] | None = None) -> list[tuple[int, Any]]:
    """``(line number, value)`` of every non-blank line of a JSON Lines file (``text``: its
    text when already read). A line that is not JSON raises ``error("FILE: line N: invalid
    JSON (...)")``, or with ``invalid`` stands in as ``invalid("line N: invalid JSON (...)")``
    (a bad row the caller counts and skips)."""
    rows = []
    for lineno, line in enumerate((read_text(path) if text is None else text).split("\n"), 1):
        if not line.strip():
            continue
        try:
            rows.append((lineno, json.loads(line)))
        except json.JSONDecodeError as exc:
            reason = f"line {lineno}: invalid JSON ({exc.msg} at column {exc.colno})"
            if invalid is None:
                raise error(f"{path}: {reason}") from None
            rows.append((lineno, invalid(reason)))
    return rows


def read_records(path: str | os.PathLike[str], *, error: Callable[[str], Exception] = ValueError,
                 invalid: Callable[[str], Any] | None = None) -> tuple[Any, list[int] | None]:
    """A user's JSON or JSON Lines file as ``(value, line numbers)``. JSON Lines (a
    ``.jsonl``/``.ndjson`` file, or a ``.json`` file of several top-level objects) gives the
    list of records and their 1-based line numbers (``error``, ``invalid``: see
    :func:`read_json_lines`); one JSON document gives it as parsed and None. Invalid JSON
    raises ``error`` naming the file, line and column."""
    text = read_text(path)
    if Path(path).suffix.lower() not in (".jsonl", ".ndjson"):
        try:
            return json.loads(text), None
        except json.JSONDecodeError as exc:
            if exc.msg != "Extra data" or not text.lstrip().startswith("{"):
                raise error(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: "
                            f"{exc.msg}") from None
    rows = read_json_lines(path, text=text, error=error, invalid=invalid)
    return [row for _, row in rows], [lineno for lineno, _ in rows]


def append_journal(path: str | os.PathLike[str], rows: Iterable[Any]) -> None:
    """Append ``rows`` to a JSON Lines journal, one line each, flushed and fsync'ed: a crash
    loses at most this call's lines and can only tear the last one. After a crash, read the
    journal (:func:`read_journal`, which mends its end) before appending again."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))
        fh.flush()
        os.fsync(fh.fileno())


def read_journal(path: str | os.PathLike[str], *, error: Callable[[str], Exception] = ValueError,
                 invalid: Callable[[str], Any] | None = None) -> tuple[list[tuple[int, Any]], int]:
    """``(line number, value)`` of the lines of a journal ([] when there is none), and 1 when
    its last line was torn by a crash mid-write (no newline, not JSON): that line is cut off
    the file with a warning, so the next append starts a line of its own; a whole last line
    without its newline gets one. Other lines that are not JSON: see :func:`read_json_lines`."""
    path = Path(path)
    if not path.is_file():
        return [], 0
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1  # the end of the last whole line
    torn = 0
    if data[end:].strip():
        try:
            json.loads(data[end:])
            with open(path, "ab") as fh:
                fh.write(b"\n")
        except ValueError:  # invalid JSON or a character cut in half
            logger.warning("%s: last line is incomplete (interrupted write); ignoring it", path)
            os.truncate(path, end)
            torn = 1
    return read_json_lines(path, error=error, invalid=invalid), torn


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a synced temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:  # a full disk leaves no half-written temporary file behind
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:  # a failed write names no file
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """``data`` as indented JSON (non-JSON values via ``str``), written atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def user_message(instruction: str, input: str | None = "") -> str:
    """The user's request as one text: the instruction, then Alpaca's ``input`` after a
    blank line when it has any non-space character. Templates, AlpacaEval files, judges and
    per-example joins all build "instruction + input" here."""
    return f"{instruction}\n\n{input}" if input and input.strip() else instruction


#: The errors a disk causes (read-only, no permission, full, over quota), and how libraries
#: that raise their own error types (safetensors, torch.save) word them.
DISK_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT})
_DISK_WORDS = {"No space left": errno.ENOSPC, "StorageFull": errno.ENOSPC,
               "Read-only file system": errno.EROFS, "Disk quota exceeded": errno.EDQUOT}


def disk_failure(exc: BaseException) -> tuple[int, str | None] | None:
    """``(errno, path or None)`` when ``exc`` (or an error behind it) is one the disk caused,
    else None: a bug is not a disk failure."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in DISK_ERRNOS:
            return seen.errno, seen.filename
        seen = seen.__cause__ or seen.__context__
    code = next((c for words, c in _DISK_WORDS.items() if words in str(exc)), None)
    return None if code is None else (code, None)


def group_by(items: Iterable[Any], key: Callable[[Any], Hashable]) -> dict[Any, list[Any]]:
    """Items by ``key(item)``, groups in order of first appearance, items in input order."""
    out: dict[Any, list[Any]] = {}
    for item in items:
        out.setdefault(key(item), []).append(item)
    return out


# -- presentation: numbers and tables -------------------------------------------------------
MISSING = "-"  # a cell without a value


def finite(value: Any) -> float | None:
    """A finite number as float, else None (bools are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value) if math.isfinite(value) else None


def fmt(value: Any, spec: str = ".2f", *, scale: float = 1.0, missing: str = MISSING) -> str:
    """The one number formatter: ``value * scale`` in ``spec`` (Python's format mini-language,
    ``".1f"``, ``"+.2f"``, ``"g"``), or ``missing`` when it is no number (None, NaN, a bool,
    text). Infinities print as ``inf``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
        return missing
    return format(value * scale if scale != 1 else value, spec)


def short(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters, the last three ``...``."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_number(cell: str) -> bool:  # a number, an interval, or a signed number
    return cell[:1].isdigit() or cell[:1] == "[" or (cell[:1] in "-+" and cell[1:2].isdigit())


def markdown_table(header: Any, rows: Sequence[Sequence[Any]] | None = None,
                   align: str | None = None) -> str:
    """The one GitHub Markdown table renderer: ``header`` and ``rows`` of cells, or a
    DataFrame of shown cells as ``header``. ``align``: ``l``/``r`` per column; by default the
    first column left and each other right when every present cell reads as a number."""
    if rows is None:
        header, rows = list(header.columns), header.astype(str).values.tolist()
    if align is None:
        align = "l" + "".join("r" if all(_is_number(r[i]) for r in rows if r[i] != MISSING)
                              else "l" for i in range(1, len(header)))

    def line(cells: Sequence[Any]) -> str:  # an empty title is "| |"
        return "|" + "".join(f" {c} |" if c else " |" for c in escaped(cells))

    def escaped(cells: Sequence[Any]) -> list[str]:
        return [str(c).replace("|", "\\|") for c in cells]

    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return "\n".join([line(header), rule, *("| " + " | ".join(escaped(r)) + " |" for r in rows)]
                     ) + "\n"


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, rule: bool = True
               ) -> str:
    """A plain-text table: columns padded to their widest cell, a dashed rule under the
    header (``rule``)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(header), *(["  ".join("-" * w for w in widths)] if rule else []),
                      *map(line, rows)])
