"""Preference pairs: records -> rows of TRL's preference trainers (``{"prompt", "chosen",
"rejected"}``, standard or conversational). The formats, their detection and the template
rule are in the README ("Preference data"); bad rows go through :func:`formats.parse_rows`.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .._io import user_message
from . import formats as fm
from .formats import DataError, DataReport, _need, _text, _turn, parse_rows
from .prompts import _ROLES
from .templates import Template, get_template

PREFERENCE_FORMATS = ("trl_standard", "trl_conversational", "llamafactory_alpaca",
                      "llamafactory_sharegpt", "hh_rlhf")
_TRL = ("prompt", "chosen", "rejected")
_PARSED = {"trl_standard": _TRL, "trl_conversational": _TRL, "hh_rlhf": _TRL[1:],
           "llamafactory_alpaca": ("instruction", "input", "system", "history", *_TRL[1:]),
           "llamafactory_sharegpt": ("conversations", "system", *_TRL[1:])}
_MARK, _CONV = "\n\nAssistant:", "bad conversation"
Messages = list[dict[str, str]]


@dataclass
class PreferenceData:
    """The rows (TRL's standard or conversational form) and what reading them found."""

    rows: list[dict[str, Any]]
    format: str
    skipped: int
    report: DataReport
    template: str | None = None  # chat: conversational rows; None: text prompts as given

    def summary(self) -> dict[str, Any]:
        return {**self.report.to_dict(), "template": self.template}


def _row_format(r: Any) -> str | None:
    if not isinstance(r, dict):
        return None
    if "prompt" in r:
        return "trl_conversational" if isinstance(r["prompt"], list) else "trl_standard"
    return next((f for k, f in (("conversations", "llamafactory_sharegpt"), ("instruction",
                 "llamafactory_alpaca"), ("chosen", "hh_rlhf")) if k in r), None)


def detect_preference_format(records: list[Any], source: str) -> str:
    """The format most of the first 100 rows have; DataError naming the file when none."""
    votes = Counter(f for r in records[:fm.DETECT_ROWS] if (f := _row_format(r)))
    if not votes:
        keys = next((sorted(map(str, r)) for r in records if isinstance(r, dict)), None)
        raise DataError(f"cannot detect a preference format (first row's keys: {keys}); "
                        f"expected one of {', '.join(PREFERENCE_FORMATS)}", file=source)
    return max(PREFERENCE_FORMATS, key=lambda f: (votes[f], -PREFERENCE_FORMATS.index(f)))


def _turns(turns: Any, key: str, last: str) -> Messages:
    """A list of turns (from/value or role/content) as messages ending with a ``last`` turn."""
    _need(isinstance(turns, list) and turns, _CONV,
          f"field {key!r} must be a non-empty list of turns, got {turns!r:.60}", key, turns)
    out = []
    for i, turn in enumerate(turns):
        role, text = _turn(turn, i, key)
        _need(role in _ROLES, _CONV, f"{key}[{i}] has unknown speaker {role!r}", key, role)
        _need(text.strip(), "empty field", f"field '{key}[{i}]' is empty", key)
        unread = fm.unread_keys(turn, ("from", "role", "value", "content"))
        _need(not unread, "unread field", f"{key}[{i}] has unread keys {unread}", key)
        out.append({"role": _ROLES[role], "content": text})
    _need(out[-1]["role"] == last, _CONV,
          f"field {key!r} must end with a {last} turn, not {out[-1]['role']!r}", key)
    return out


def _reply(record: dict[str, Any], key: str, fmt: str) -> str:
    """One side's text: a string, or one assistant turn (a message, or a list of one)."""
    if fmt in ("trl_standard", "llamafactory_alpaca", "hh_rlhf"):
        return _text(record, key, required=True)
    value = record.get(key)
    _need(value is not None, "missing field", f"field {key!r} is missing", key)
    turns = _turns([value] if isinstance(value, dict) else value, key, "assistant")
    _need(len(turns) == 1, _CONV, f"field {key!r} must be one assistant turn, got "
          f"{len(turns)}", key)
    return turns[0]["content"]


def _system(record: dict[str, Any]) -> Messages:
    text = _text(record, "system", required=False)
    return [{"role": "system", "content": text}] if text.strip() else []


def _history(record: dict[str, Any]) -> Messages:
    """LLaMA-Factory's ``history``: ``[[user, assistant], ...]`` before the instruction."""
    pairs = record.get("history") or []
    _need(isinstance(pairs, list) and all(isinstance(p, list) and len(p) == 2 for p in pairs),
          _CONV, f"field 'history' must be a list of [user, assistant] pairs, got {pairs!r:.60}",
          "history", pairs)
    turns = [{"role": r, "content": t} for u, a in pairs for r, t in (("user", u), ("assistant", a))]
    return _turns(turns, "history", "assistant") if turns else []


def _prompt(record: dict[str, Any], fmt: str) -> tuple[str | Messages, str]:
    """The prompt (text, or messages ending with a user turn) and an Alpaca ``input``."""
    if fmt == "trl_standard":
        return _text(record, "prompt", required=True), ""
    if fmt == "trl_conversational":
        return _turns(record.get("prompt"), "prompt", "user"), ""
    if fmt == "llamafactory_alpaca":
        user = {"role": "user", "content": _text(record, "instruction", required=True)}
        return [*_system(record), *_history(record), user], _text(record, "input", required=False)
    _need("conversations" in record, "missing field", "field 'conversations' is missing",
          "conversations")
    turns, system = _turns(record["conversations"], "conversations", "user"), _system(record)
    _need(not (system and turns[0]["role"] == "system"), _CONV, "both a 'system' field and a "
          "system turn: one of them would be lost", "system")
    return [*system, *turns], ""


def _split_transcripts(chosen: str, rejected: str) -> tuple[str, str, str]:
    """HH-RLHF: the shared prefix up to its last ``\\n\\nAssistant:``, and the two replies."""
    cut = os.path.commonprefix([chosen, rejected]).rfind(_MARK)
    _need(cut >= 0, "no shared prefix", "chosen and rejected share no prefix ending in "
          f"{_MARK!r} (an HH-RLHF transcript's prompt)", "chosen")
    n = cut + len(_MARK)
    return chosen[:n], chosen[n:], rejected[n:]


def _render(prompt: str | Messages, inp: str, chosen: str, rejected: str,
            template: Template | str | None) -> dict[str, Any]:
    """The TRL row under ``template`` (module doc)."""
    if template is None and isinstance(prompt, str):
        return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    turns = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    if template in (None, "chat"):
        last = {"role": "user", "content": user_message(turns[-1]["content"], inp)}
        return {"prompt": [*turns[:-1], last], **{k: [{"role": "assistant", "content": v}]
                for k, v in (("chosen", chosen), ("rejected", rejected))}}
    _need(len(turns) == 1, "needs the chat template", f"the prompt has {len(turns)} turns (a "
          f"system turn or earlier turns); the {template.name} template renders one "
          "instruction and would drop the rest: pass --template chat")
    pre = template.response_prefix
    return {"prompt": template.render(turns[0]["content"], inp), "chosen": pre + chosen,
            "rejected": pre + rejected}


def _pair(record: dict[str, Any], fmt: str, template: Template | str | None) -> dict[str, Any]:
    fm._check_read(record, fmt, _PARSED[fmt])
    chosen, rejected = (_reply(record, k, fmt) for k in ("chosen", "rejected"))
    if fmt == "hh_rlhf":
        (prompt, chosen, rejected), inp = _split_transcripts(chosen, rejected), ""
        _need(chosen.strip() and rejected.strip(), "empty field",
              "a reply is empty after the shared prompt", "chosen" if rejected.strip() else "rejected")
    else:
        prompt, inp = _prompt(record, fmt)
    _need(chosen.strip() != rejected.strip(), "chosen equals rejected",
          "chosen and rejected are the same text: the pair prefers nothing", "chosen")
    return _render(prompt, inp, chosen, rejected, template)


def load_preference_rows(records: list[Any], *, source: str, skip_bad_rows: bool = False,
                         template: str | Template | None = None, tokenizer: Any = None,
                         fmt: str = "auto", max_examples: int | None = None) -> PreferenceData:
    """Rows of preference ``records`` (module doc); ``max_examples`` keeps the first N
    good pairs (the rest counted as ``limited``). Bad rows raise DataError naming
    ``source``, the row and the key, or are counted with ``skip_bad_rows``."""
    detected = fmt == "auto"
    if not detected and fmt not in PREFERENCE_FORMATS:
        raise DataError(f"unknown preference format {fmt!r}; expected auto or one of "
                        f"{', '.join(PREFERENCE_FORMATS)}", field="format", value=fmt)
    name = detect_preference_format(records, source) if detected else fmt
    key = template.name if isinstance(template, Template) else template  # "chat": TRL applies it
    tmpl = key if key in (None, "chat") else get_template(template)
    report = DataReport(format=name, source=source, detected=detected, read=len(records))
    rows = parse_rows(records, lambda rec, _: _pair(rec, name, tmpl), source, report,
                      skip_bad_rows=skip_bad_rows,
                      hint=f" (format {name}, auto-detected)" if detected else "")
    if max_examples is not None and len(rows) > max_examples:
        report.limited, rows = len(rows) - max_examples, rows[:max_examples]
        report.used = len(rows)
    chat = any(isinstance(r["prompt"], list) for r in rows)
    if chat and tokenizer is not None and not getattr(tokenizer, "chat_template", None):
        raise DataError("conversational pairs need the tokenizer's chat template and it has "
                        "none: pass --template alpaca or vicuna", file=source)
    return PreferenceData(rows, name, report.skipped, report, key or ("chat" if chat else None))
