"""Records -> :class:`Example` objects in the four formats of the papers' datasets (README,
"symnoise train": the formats, their metadata keys, bad rows). A bad row raises
:class:`DataError` naming the file and row (0-based), or is skipped and counted with
``skip_bad_rows``; nothing is dropped silently (:func:`unread_keys`)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._io import short
from ..config import PAPER_DATASETS

FORMATS: tuple[str, ...] = PAPER_DATASETS  # the data formats are the paper's datasets
MAX_REASONS = 20  # skipped-row reasons kept in a DataReport
DETECT_ROWS = 100  # rows looked at by detect_format

#: Keys each format reads and ignores by name (they go to ``Example.meta``, nothing is
#: trained on them), beside the keys it parses. The README lists them per format.
METADATA_KEYS: dict[str, tuple[str, ...]] = {
    # tatsu-lab/alpaca's rendered prompt + answer; the built-in synthetic suite's scoring
    "alpaca": ("text", "family", "answer", "phrasing"),
    # Evol-Instruct V2's row number; an AlpacaEval outputs file's source set and model
    "evol_instruct": ("idx", "dataset", "generator"),
    "sharegpt": ("id",),  # the conversation's id
    "openplatypus": ("data_source",),  # the dataset the row was taken from
    # preference pairs (data/preference.py): an id; TRL sets' ratings of each side
    **dict.fromkeys(("trl_standard", "trl_conversational"), ("id", "score_chosen",
                                                            "score_rejected")),
    **dict.fromkeys(("llamafactory_alpaca", "llamafactory_sharegpt", "hh_rlhf"), ("id",)),
}
_FLAT_KEYS = ("instruction", "input", "output")
_CONV_KEYS = ("conversations", "conversation")
_USER = frozenset({"human", "user"})
_ASSISTANT = frozenset({"gpt", "assistant", "chatgpt", "bard", "model"})
_SYSTEM = frozenset({"system"})


@dataclass
class Example:
    """One example; ``source`` is ``"FILE:ROW"``, ``meta`` the record's metadata keys
    (:data:`METADATA_KEYS`) and notes such as a dropped system turn."""

    instruction: str
    input: str = ""
    output: str = ""
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class InvalidRecord:
    """A record that could not be read (a line of invalid JSON): a bad row, ``reason``."""

    reason: str


class DataError(ValueError):
    """A user-fixable problem with the data, naming file, row and field; ``kind``: the kind
    of bad row (``missing field``, ...)."""

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None,
                 field: str | None = None, value: Any = None, kind: str | None = None) -> None:
        self.file, self.row, self.field, self.value = file, row, field, value
        self.reason, self.kind = message, kind
        where = ""
        if file is not None:
            where = f"{file} row {row}: " if row is not None else f"{file}: "
        super().__init__(where + message)


@dataclass
class DataReport:
    """Counts of :func:`to_examples`: ``read == used + skipped + limited`` (``max_examples``);
    the first 20 skip reasons; conversations cut to their first turn or with a system turn."""

    format: str
    source: str = ""
    detected: bool = False
    read: int = 0
    used: int = 0
    skipped: int = 0
    limited: int = 0
    skipped_reasons: list[str] = field(default_factory=list)
    skipped_by_kind: dict[str, int] = field(default_factory=dict)
    multi_turn_cut: int = 0
    system_turns: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def skip(self, bad: DataError, row: int) -> None:
        """Count a skipped bad row: by kind, and its reason among the first 20."""
        self.skipped += 1
        kinds = {**self.skipped_by_kind, bad.kind: self.skipped_by_kind.get(bad.kind, 0) + 1}
        self.skipped_by_kind = dict(sorted(kinds.items()))
        if len(self.skipped_reasons) < MAX_REASONS:
            self.skipped_reasons.append(f"{self.source}:{row}: {bad.reason}")


def canonical_format(fmt: str) -> str:
    """Canonical name of a format (``Evol-Instruct`` -> ``evol_instruct``); ``auto`` kept."""
    name = str(fmt).strip().lower().replace("-", "_")
    if name == "auto" or name in FORMATS:
        return name
    raise DataError(f"unknown data format {fmt!r}; expected one of: auto, {', '.join(FORMATS)}",
                    field="format", value=fmt)


# ---------------------------------------------------------------- detection


def _conversation(record: dict[str, Any]) -> Any:
    return next((record[key] for key in _CONV_KEYS if key in record), None)


def _row_kind(record: Any) -> str | None:
    if not isinstance(record, dict):
        return None
    if isinstance(_conversation(record), list):
        if "idx" in record and "id" not in record:
            return "evol_instruct"
        return "sharegpt"
    if "instruction" not in record or "output" not in record:
        return None
    if "data_source" in record:
        return "openplatypus"
    return "alpaca" if "input" in record else "evol_instruct"


def detect_format(records: Sequence[Any], source_name: str = "<records>") -> str:
    """The majority format of the first 100 object rows (ties: :data:`FORMATS` order): a
    conversation list is sharegpt (evol_instruct with ``idx`` and no ``id``); else
    ``data_source`` is openplatypus, ``input`` alpaca, instruction/output evol_instruct."""
    head = records[:DETECT_ROWS]
    votes = Counter(kind for record in head if (kind := _row_kind(record)) is not None)
    if not votes:
        if not records:
            raise DataError("no records to detect the format from", file=source_name)
        first = next((sorted(map(str, r)) for r in head if isinstance(r, dict)), None)
        what = f"keys {first}" if first is not None else "no JSON objects"
        raise DataError(
            f"cannot detect the data format: the first rows have {what}; expected "
            "instruction/output (alpaca, evol_instruct, openplatypus) or a 'conversations' "
            f"list (sharegpt, evol_instruct); pass the format explicitly ({', '.join(FORMATS)})",
            file=source_name)
    best = max(votes.values())
    return next(f for f in FORMATS if votes.get(f) == best)


# ------------------------------------------------------------------ parsing


_CONV, _PAIR = "bad conversation", "no user->assistant pair"  # kinds of bad row


def _need(ok: object, kind: str, message: str, field: str | None = None, value: Any = None) -> None:
    """Raise a bad row of this kind unless ``ok`` (each check is one table-like line)."""
    if not ok:
        raise DataError(message, field=field, value=value, kind=kind)


def is_empty(value: Any) -> bool:
    """``None``, blank text, ``[]`` or ``{}``: a key holding it carries nothing to lose."""
    if isinstance(value, str):
        return not value.strip()
    return value is None or isinstance(value, (list, tuple, dict)) and not value


def unread_keys(record: dict[str, Any], read: Iterable[str]) -> list[str]:
    """The keys of ``record`` that ``read`` does not name and that hold a value, sorted."""
    known = set(read)
    return sorted(str(k) for k, v in record.items() if k not in known and not is_empty(v))


def _check_read(record: dict[str, Any], fmt: str, parsed: Sequence[str]) -> dict[str, Any]:
    """The row's metadata (:data:`METADATA_KEYS`); a bad row when a key goes unread."""
    meta_keys = METADATA_KEYS[fmt]
    unread = unread_keys(record, (*parsed, *meta_keys))
    ignores = f" and ignores {', '.join(meta_keys)}" if meta_keys else ""
    _need(not unread, "unread field",
          f"field(s) {', '.join(map(repr, unread))} not read by the {fmt} format (it reads "
          f"{', '.join(parsed)}{ignores}); nothing is dropped silently: remove them from the "
          "data or move their text into a field it reads", unread[0] if unread else None)
    return {k: record[k] for k in meta_keys if k in record}


def _text(record: dict[str, Any], key: str, *, required: bool) -> str:
    value = record.get(key)
    if value is None:
        _need(not required, "missing field", f"field {key!r} is missing", key)
        return ""
    got = f"{type(value).__name__} {short(repr(value), 60)}"
    _need(isinstance(value, str), "non-string field",
          f"field {key!r} must be a string, got {got}", key, value)
    _need(not required or value.strip(), "empty field", f"field {key!r} is empty", key, value)
    return value


def _turn(turn: Any, i: int, list_key: str) -> tuple[str, str]:
    where = f"{list_key}[{i}]"
    _need(isinstance(turn, dict), _CONV, f"{where} must be an object, got {type(turn).__name__}",
          where)
    role = turn.get("from", turn.get("role"))
    no_role = f"{where} has no speaker ('from' or 'role'), got {short(repr(role), 60)}"
    _need(isinstance(role, str), _CONV, no_role, where + ".from", role)
    key = "value" if "value" in turn else "content"
    text = turn.get(key)
    got = f"{type(text).__name__} {short(repr(text), 60)}"
    _need(isinstance(text, str), "non-string field",
          f"field '{where}.{key}' must be a string, got {got}", f"{where}.{key}", text)
    return role.strip().lower(), text


def _conversation_pair(record: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """First user->assistant pair of a conversation record, plus notes for ``meta``."""
    key = next((k for k in _CONV_KEYS if k in record), None)
    _need(key is not None, "missing field", "field 'conversations' is missing", "conversations")
    turns = record[key]
    got = type(turns).__name__
    _need(isinstance(turns, list), _CONV, f"field {key!r} must be a list of turns, got {got}",
          key, turns)
    notes: dict[str, Any] = {}
    system: list[str] = []
    skipped_leading = 0
    for i, raw in enumerate(turns):
        role, text = _turn(raw, i, key)
        if role in _SYSTEM:
            system.append(text)
            continue
        if role in _ASSISTANT:  # an assistant turn before any user turn has no prompt
            skipped_leading += 1
            continue
        known = sorted(_USER | _ASSISTANT | _SYSTEM)
        unknown = f"{key}[{i}] has unknown speaker {role!r}; expected one of {known}"
        _need(role in _USER, _CONV, unknown, f"{key}[{i}].from", role)
        _need(i + 1 < len(turns), _PAIR,
              f"{key}[{i}] (user) is not followed by an assistant turn", key)
        next_role, reply = _turn(turns[i + 1], i + 1, key)
        not_assistant = f"{key}[{i}] (user) is followed by {next_role!r}, not an assistant turn"
        _need(next_role in _ASSISTANT, _PAIR, not_assistant, f"{key}[{i + 1}].from", next_role)
        _need(text.strip(), "empty field", f"field '{key}[{i}]' (user) is empty", key)
        _need(reply.strip(), "empty field", f"field '{key}[{i + 1}]' (assistant) is empty", key)
        notes["n_turns"] = len(turns)
        extra: dict[str, Any] = {"cut_turns": len(turns) - i - 2}
        if system:
            extra["system"] = "\n".join(system)
        extra["skipped_leading_turns"] = skipped_leading
        notes.update({k: v for k, v in extra.items() if k == "system" or v})
        return text, reply, notes
    raise DataError(f"field {key!r} has no user turn followed by an assistant turn", field=key,
                    kind=_PAIR)


def _parse(record: dict[str, Any], fmt: str, source: str) -> Example:
    if fmt != "sharegpt" and (fmt != "evol_instruct" or _conversation(record) is None):
        # flat forms: alpaca, openplatypus, evol_instruct's 70k form (input optional)
        instruction, inp, output = (_text(record, k, required=k != "input") for k in _FLAT_KEYS)
        return Example(instruction, inp, output, source, _check_read(record, fmt, _FLAT_KEYS))
    # evol_instruct conversation form, sharegpt
    user, reply, notes = _conversation_pair(record)
    used = next(k for k in _CONV_KEYS if k in record)  # the other spelling is not read
    return Example(user, "", reply, source, {**_check_read(record, fmt, (used,)), **notes})


def parse_rows(records: list[Any], parse: Any, source_name: str, report: DataReport, *,
               skip_bad_rows: bool = False, hint: str = "") -> list[Any]:
    """``parse(record, row)`` of every record. A bad row (``parse`` raised :class:`DataError`,
    or a line of invalid JSON) raises DataError naming ``source_name``, the row and ``hint``,
    or with ``skip_bad_rows`` is counted in ``report`` (skipped, reasons, kinds)."""
    out: list[Any] = []
    for row, record in enumerate(records):
        try:
            if isinstance(record, InvalidRecord):
                raise DataError(record.reason, kind="invalid JSON")
            _need(isinstance(record, dict), "not an object",
                  f"row must be a JSON object, got {type(record).__name__}")
            out.append(parse(record, row))
        except DataError as bad:
            if not skip_bad_rows:
                raise DataError(bad.reason + hint, file=source_name, row=row, field=bad.field,
                                value=bad.value, kind=bad.kind) from None
            report.skip(bad, row)
    report.used = len(out)
    return out


def to_examples(records: Iterable[Any], fmt: str, source_name: str = "<records>", *,
                skip_bad_rows: bool = False) -> tuple[list[Example], DataReport]:
    """``records`` as examples of format ``fmt`` (``"auto"``: :func:`detect_format`); a bad
    row raises :class:`DataError` naming it, or with ``skip_bad_rows`` is counted."""
    records = records if isinstance(records, list) else list(records)
    name = canonical_format(fmt)
    detected = name == "auto"
    if detected:
        name = detect_format(records, source_name)
    report = DataReport(format=name, source=source_name, detected=detected, read=len(records))
    examples = parse_rows(records, lambda rec, row: _parse(rec, name, f"{source_name}:{row}"),
                          source_name, report, skip_bad_rows=skip_bad_rows,
                          hint=f" (format {name}, auto-detected)" if detected else "")
    report.multi_turn_cut = sum("cut_turns" in ex.meta for ex in examples)
    report.system_turns = sum("system" in ex.meta for ex in examples)
    return examples, report
