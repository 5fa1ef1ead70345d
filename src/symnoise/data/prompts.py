"""Prompt rows -> :class:`Prompt` objects: the row shapes of README's "symnoise generate"
(``alpaca``/``alpaca_eval``, ``string``, ``prompt``, ``chat``, ``instances``), each read row by
row; a field no shape reads stops the read unless ``ignore_fields`` names it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .formats import _ASSISTANT, _SYSTEM, _USER, DataError, _turn, is_empty, unread_keys
from .templates import ChatTemplate, Template

CHAT_KEYS = ("messages", "conversations", "conversation")
#: shape -> the keys it reads (beside ``dataset``, the kept and the reference fields); a
#: chat row reads ONE of :data:`CHAT_KEYS` (with two of them, the other is unread)
SHAPES: dict[str, tuple[str, ...]] = {
    "alpaca": ("instruction", "input"), "string": ("instruction",), "prompt": ("prompt",),
    "chat": CHAT_KEYS, "instances": ("instruction", "instances"),
}
KEPT_FIELDS = ("id", "family", "answer", "phrasing")  # ids; the synthetic suite's scoring
REFERENCE_FIELDS = ("output", "generator")  # a reference answer and the model that wrote it
_INSTANCE_KEYS = ("input", "output")
_ROLES = {**dict.fromkeys(_USER, "user"), **dict.fromkeys(_ASSISTANT, "assistant"),
          **dict.fromkeys(_SYSTEM, "system")}


@dataclass
class Prompt:
    """One prompt to answer: ``index`` is its position in the prompt set, ``row`` the
    record it came from, ``instance`` its place in that record's ``instances`` (if any);
    ``messages`` the conversation of a chat row (``instruction`` is its last user turn)."""

    index: int
    instruction: str
    input: str = ""
    dataset: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    row: int | None = None
    instance: int | None = None
    messages: list[dict[str, str]] | None = None

    def entry(self, output: str, generator: str) -> dict[str, Any]:
        """The AlpacaEval model-outputs record answering this prompt (extra keys are fine
        for alpaca_eval): ``row``/``instance`` join it back to the prompt file."""
        out: dict[str, Any] = {"instruction": self.instruction}
        if self.input:
            out["input"] = self.input
        out |= {"output": output, "generator": generator, "dataset": self.dataset}
        ids = {"row": self.row, "instance": self.instance}
        return {**out, **{k: v for k, v in ids.items() if v is not None}, **self.extra}

    def matches(self, record: Mapping[str, Any]) -> bool:
        """True when ``record`` (an output entry) answers this prompt: same instruction and
        input, and the same row/instance when it records them (older files do not)."""
        return (record.get("instruction") == self.instruction
                and (record.get("input") or "") == self.input
                and record.get("row", self.row) == self.row
                and record.get("instance") == self.instance)


@dataclass
class PromptSet:
    """The prompts of a source. shapes: rows per shape; ignored: rows per ignored field
    (``ignore_fields``) in which it held a value; n_rows: records read."""

    prompts: list[Prompt]
    source: str
    n_rows: int = 0
    shapes: dict[str, int] = field(default_factory=dict)
    ignored: dict[str, int] = field(default_factory=dict)

    def describe(self, template: str | Template | None = None) -> str:
        """Rows per shape (``alpaca 3 rows, instances 2 rows (5 instance prompts)``) and, for
        chat rows, how ``template`` renders them."""
        parts = [f"{s} {n} row{'s' * (n != 1)}" for s, n in self.shapes.items()]
        n_inst = sum(p.instance is not None for p in self.prompts)
        text = ", ".join(parts) + (f" ({n_inst} instance prompts)" if n_inst else "")
        if any(s.startswith("chat") for s in self.shapes) and template is not None:
            text += ("; chat rows: the whole conversation through the tokenizer's chat "
                     "template" if _is_chat(template) else
                     f"; chat rows: their one user turn as the {_name(template)} instruction")
        return text


def _fail(message: str, field: str | None = None, value: Any = None) -> DataError:
    return DataError(message, field=field, value=value)


def _text(record: Mapping[str, Any], key: str, *, required: bool) -> str:
    value = record.get(key)
    if required and (not isinstance(value, str) or not value.strip()):
        what = "missing" if value is None else f"not a non-empty string ({value!r:.80})"
        raise _fail(f"field {key!r} is {what}", key, value)
    if value is not None and not isinstance(value, str):
        raise _fail(f"field {key!r} must be a string or null, got {type(value).__name__}",
                    key, value)
    return value or ""


def _chat_key(record: Mapping[str, Any]) -> str | None:
    return next((k for k in CHAT_KEYS if not is_empty(record.get(k))), None)


def _shape(record: Mapping[str, Any]) -> str:
    if _chat_key(record) is not None:
        return "chat"
    if not is_empty(record.get("instances")):
        return "instances"
    if "instruction" not in record and "prompt" in record:
        return "prompt"
    if "instruction" not in record:
        keys = ", ".join(map(str, record)) or "none"
        raise _fail("field 'instruction' is missing: a prompt row needs 'instruction' (with "
                    "'input' or 'instances'), 'prompt', or 'messages'/'conversations' (chat); "
                    f"its keys: {keys}", "instruction")
    return "alpaca"


def _chat(record: Mapping[str, Any]) -> tuple[str, list[dict[str, str]], list[str]]:
    """The conversation's form (``openai``: role/content, ``sharegpt``: from/value), its
    role/content turns and its unread turn keys."""
    key = _chat_key(record)
    turns = record[key]
    if not isinstance(turns, list):
        raise _fail(f"field {key!r} must be a list of turns, got {type(turns).__name__}", key)
    messages, unread = [], set()
    for i, turn in enumerate(turns):
        role, text = _turn(turn, i, key)
        if role not in _ROLES:
            raise _fail(f"{key}[{i}] has unknown speaker {role!r}; expected one of "
                        f"{sorted(_ROLES)}", f"{key}[{i}]", role)
        messages.append({"role": _ROLES[role], "content": text})
        unread |= {f"{key}[].{k}" for k in unread_keys(turn, ("from", "role", "value",
                                                             "content"))}
    if messages[-1]["role"] != "user" or not messages[-1]["content"].strip():
        raise _fail(f"{key}[{len(turns) - 1}] must be a non-empty user turn: a prompt row's "
                    "conversation ends with the turn the model answers", key)
    form = "sharegpt" if "from" in turns[0] else "openai"
    return form, messages, sorted(unread)


def _instances(record: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The inputs of the row's instances, and their unread keys."""
    items = record["instances"]
    if not isinstance(items, list):
        raise _fail(f"field 'instances' must be a list of objects, got {type(items).__name__}",
                    "instances")
    inputs, unread = [], set()
    for j, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise _fail(f"instances[{j}] must be an object, got {type(item).__name__}",
                        f"instances[{j}]")
        try:
            inputs.append(_text(item, "input", required=False))
        except DataError as bad:
            raise _fail(f"instances[{j}]: {bad.reason}", f"instances[{j}].input") from None
        unread |= {f"instances[].{k}" for k in unread_keys(item, _INSTANCE_KEYS)}
    return inputs, sorted(unread)


def _row_prompts(record: Any, row: int, dataset: str, start: int
                 ) -> tuple[str, list[Prompt], list[str]]:
    """(shape, prompts, unread keys) of one record; DataError (no file/row) when bad."""
    if isinstance(record, str):
        record, shape = {"instruction": record}, "string"
    elif isinstance(record, Mapping):
        shape = _shape(record)
    else:
        raise _fail("expected an object with an 'instruction' (or a string), got "
                    f"{type(record).__name__}")
    dataset = _text(record, "dataset", required=False) or dataset
    extra = {k: record[k] for k in KEPT_FIELDS if k in record}
    reads = (_chat_key(record),) if shape == "chat" else SHAPES[shape]
    unread = unread_keys(record, (*reads, "dataset", *KEPT_FIELDS, *REFERENCE_FIELDS))
    if shape == "chat":
        form, messages, more = _chat(record)
        prompt = Prompt(start, messages[-1]["content"], "", dataset, extra, row,
                        messages=messages)
        return f"chat ({form})", [prompt], unread + more
    instruction = _text(record, "prompt" if shape == "prompt" else "instruction", required=True)
    if shape != "instances":
        shape = "alpaca_eval" if shape == "alpaca" and "generator" in record else shape
        return shape, [Prompt(start, instruction, _text(record, "input", required=False),
                              dataset, extra, row)], unread
    inputs, more = _instances(record)
    return shape, [Prompt(start + j, instruction, inp, dataset, dict(extra), row, j)
                   for j, inp in enumerate(inputs)], unread + more


def _unread_error(unread: Mapping[str, list[int]], n_rows: int, name: str) -> DataError:
    keys = sorted(unread)
    listed = ", ".join(f"{k!r} ({len(unread[k])} of {n_rows} rows, first row {unread[k][0]})"
                       for k in keys)
    return DataError(
        f"fields that no prompt shape reads, so their text would never reach the model: "
        f"{listed}. Move that text into a field that is read (instruction, input, prompt, "
        f"messages, instances), or drop the fields on purpose with --ignore-fields "
        f"'{','.join(keys)}' (ignore_fields= in Python)", file=name, field=keys[0])


def _ignore_set(ignore_fields: str | Iterable[str] | None) -> set[str]:
    if isinstance(ignore_fields, str):
        ignore_fields = ignore_fields.split(",")
    return {k.strip() for k in ignore_fields or () if k.strip()}


def _drop(record: Mapping[str, Any], ignore: set[str], counts: Counter[str]) -> dict[str, Any]:
    """``record`` without the ignored keys: ``KEY`` at the top, ``LIST[].KEY`` in each
    object of a list (a turn, an instance); ``counts`` gets the keys that held a value."""
    out = {k: v for k, v in record.items() if k not in ignore}
    for name in ignore:
        outer, _, inner = name.partition("[].")
        items = out.get(outer) if inner else None
        if not inner:
            counts[name] += not is_empty(record.get(name))
        elif isinstance(items, list):
            counts[name] += any(isinstance(i, Mapping) and not is_empty(i.get(inner))
                                for i in items)
            out[outer] = [{k: v for k, v in i.items() if k != inner}
                          if isinstance(i, Mapping) else i for i in items]
    return out


def read_prompts(records: Sequence[Any], name: str, default_dataset: str, *,
                 ignore_fields: str | Iterable[str] | None = None) -> PromptSet:
    """Read every record; a bad row raises DataError naming ``name`` and the row, unread
    fields one DataError listing them. ``ignore_fields`` (names or ``"a,b"``): ``KEY`` at
    the top of a row or ``LIST[].KEY`` in the objects of a list (``messages[].name``)."""
    ignore = _ignore_set(ignore_fields)
    prompts: list[Prompt] = []
    shapes: Counter[str] = Counter()
    ignored: Counter[str] = Counter(dict.fromkeys(sorted(ignore), 0))
    unread: dict[str, list[int]] = {}
    for row, record in enumerate(records):
        if isinstance(record, Mapping) and ignore:
            record = _drop(record, ignore, ignored)
        try:
            shape, made, keys = _row_prompts(record, row, default_dataset, len(prompts))
        except DataError as bad:
            raise DataError(bad.reason, file=name, row=row, field=bad.field,
                            value=bad.value) from None
        shapes[shape] += 1
        prompts += made
        for key in keys:
            unread.setdefault(key, []).append(row)
    if unread:
        raise _unread_error(unread, len(records), name)
    return PromptSet(prompts, name, len(records), dict(shapes), dict(ignored))


def _name(template: str | Template) -> str:
    return template.name if isinstance(template, Template) else str(template)


def _is_chat(template: str | Template) -> bool:
    return _name(template).strip().lower() == "chat"


def check_template(prompts: PromptSet, template: str | Template) -> None:
    """DataError unless ``template`` renders every prompt whole: only the chat template
    renders a conversation of more than one user turn (or with a system turn)."""
    if _is_chat(template):
        return
    long = [p for p in prompts.prompts if p.messages is not None and len(p.messages) > 1]
    if long:
        raise DataError(
            f"{len(long)} chat rows hold more than their last user turn (a system turn or "
            f"earlier turns; first: row {long[0].row}); the {_name(template)} template renders one "
            "instruction and would drop the rest: pass --template chat (the tokenizer's chat "
            "template renders the whole conversation)", file=prompts.source)


def render_prompt(template: Template, prompt: Prompt) -> str:
    """The text the model continues: a chat row's whole conversation under the chat
    template, else instruction and input (:func:`check_template` stops longer chat rows)."""
    if prompt.messages is not None and isinstance(template, ChatTemplate):
        return template.render_messages(prompt.messages)
    return template.render(prompt.instruction, prompt.input)
