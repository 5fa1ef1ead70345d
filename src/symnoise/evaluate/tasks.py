"""The synthetic suite's scoring: :func:`check_answer` reads a response leniently and says
whether it is correct and exactly formatted; :func:`item_rows` gives one row per item (its
``id`` from the prompt only, so runs pair up); scores with 95% Wilson intervals per family
and overall make a :class:`TasksReport` (:func:`make_report`, :func:`write_report`)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from .._io import fmt, markdown_table, write_json_atomic, write_text_atomic
from ..data.synthetic import FAMILIES, family_of
from ..run import EVAL_FILES
from .stats import wilson_interval

OUTPUTS_FILE = EVAL_FILES["synthetic_outputs"]
SCORES_JSON = EVAL_FILES["synthetic_scores"]
SCORES_MD = EVAL_FILES["synthetic_scores_md"]
ITEMS_JSONL = EVAL_FILES["synthetic_items"]

_PREFIX_RE = re.compile(
    r"^(?:the\s+)?(?:final\s+)?(?:answer|result|output|response)\b(?:\s+is)?\s*[:=]?\s*",
    re.IGNORECASE,
)
_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_NUMBER_WITH_UNIT_RE = re.compile(rf"({_NUMBER})(?:\s*[A-Za-z\u00b0][A-Za-z\u00b0 ]*)?")
_PLAIN_NUMBER_RE = re.compile(r"[-+]?\d+(?:\.\d+)?")
_QUOTES = ('"', "'", "`")

# Exact format of a well-formatted response (one line, nothing around the answer).
_FORMATS: dict[str, re.Pattern[str]] = {
    "integer": re.compile(r"-?\d+"),
    "integer_list": re.compile(r"-?\d+(?:, -?\d+)*"),
    "word_list": re.compile(r"[a-z]+(?:, [a-z]+)*"),
    "word_sequence": re.compile(r"[a-z]+(?: [a-z]+)*"),
    "uppercase_text": re.compile(r"[A-Z]+(?: [A-Z]+)*"),
    "lowercase_text": re.compile(r"[a-z]+(?: [a-z]+)*"),
    "date": re.compile(r"\d{4}-\d{2}-\d{2}"),
    "parity": re.compile(r"even|odd"),
}


def _strip_quotes(text: str) -> str:
    while len(text) >= 2 and text[0] == text[-1] and text[0] in _QUOTES:
        text = text[1:-1].strip()
    return text


def _candidate(response: str) -> str | None:
    """The answer line of a response: prefix, quotes, trailing period and later lines gone."""
    text = _PREFIX_RE.sub("", response.strip(), count=1).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = _strip_quotes(line)
    if line.endswith(".") and not line.endswith(".."):
        line = _strip_quotes(line[:-1].rstrip())
    return line or None


def _split_items(text: str) -> list[str]:
    text = text.strip()
    if len(text) >= 2 and text[0] == "[" and text[-1] == "]":
        text = text[1:-1]
    text = re.sub(r"\s+and\s+", ", ", text)
    parts = text.split(",") if "," in text else text.split()
    items = [_strip_quotes(p.strip()) for p in parts]
    return [item for item in items if item]


def _typed(value: Any) -> Any:
    """A JSON value with booleans marked, so that comparing two keeps ``True != 1``."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return isinstance(value, bool), value


def _read_json(response: str, answer: str) -> tuple[str | None, bool]:
    text = response.strip()
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        return _candidate(response), False
    snippet = text[start : end + 1]
    try:
        value = json.loads(snippet)
    except json.JSONDecodeError:
        return snippet, False
    return snippet, _typed(value) == _typed(json.loads(answer))


def _read(kind: str, response: str, answer: str) -> tuple[str | None, bool]:
    """Return (extracted answer, correct) for a response under the answer kind."""
    if kind == "json":
        return _read_json(response, answer)
    cand = _candidate(response)
    if cand is None:
        return None, False
    if kind == "integer":  # the number after the last "=" ("23 + 45 = 68"), units allowed
        match = _NUMBER_WITH_UNIT_RE.fullmatch(cand.rsplit("=", 1)[-1].strip())
        if match is None:
            return cand, False
        return match.group(1), Decimal(match.group(1).replace(",", "")) == Decimal(answer)
    if kind == "integer_list":
        items = _split_items(cand)
        if not items or not all(_PLAIN_NUMBER_RE.fullmatch(x) for x in items):
            return cand, False
        expected = [Decimal(x) for x in answer.split(", ")]
        return cand, [Decimal(x) for x in items] == expected
    if kind == "word_list":
        got = [x.lower() for x in _split_items(cand)]
        return cand, got == answer.split(", ")
    if kind == "word_sequence":
        return cand, [w.lower() for w in cand.replace(",", " ").split()] == answer.split()
    if kind in ("uppercase_text", "lowercase_text"):  # case matters here
        return cand, " ".join(cand.split()) == answer
    if kind == "date":
        return cand, cand == answer
    if kind == "parity":
        low = cand.lower()
        if low not in ("even", "odd"):
            hits = set(re.findall(r"\b(even|odd)\b", low))
            if len(hits) != 1:
                return cand, False
            low = hits.pop()
        return low, low == answer
    raise AssertionError(f"unhandled answer kind {kind!r}")  # pragma: no cover


def _is_formatted(kind: str, response: str) -> bool:
    raw = response.rstrip("\r\n")
    if not raw or raw != raw.strip():
        return False
    if kind == "json":
        try:
            return isinstance(json.loads(raw), dict)
        except json.JSONDecodeError:
            return False
    return "\n" not in raw and _FORMATS[kind].fullmatch(raw) is not None


@dataclass(frozen=True)
class CheckResult:
    """``correct``: the answer read equals the canonical one; ``formatted``: the response is
    exactly an answer in the expected format (one line), right or wrong."""

    correct: bool
    formatted: bool
    extracted: str | None


def check_answer(record: Mapping[str, Any], response: str | None) -> CheckResult:
    """Check a response (None: empty) against a record's canonical answer, leniently:
    whitespace, quotes, a trailing period, a leading ``Answer:``/``The answer is``, later
    lines; JSON from the first ``{`` to the last ``}``."""
    fam = family_of(record)
    answer = record.get("answer")
    if not isinstance(answer, str):
        raise ValueError(f"record of family {fam.name!r} has no string 'answer': {answer!r}")
    if response is None:
        response = ""
    if not isinstance(response, str):
        raise ValueError(f"response must be a string, got {type(response).__name__}")
    extracted, correct = _read(fam.kind, response, answer)
    return CheckResult(correct=correct, formatted=_is_formatted(fam.kind, response),
                       extracted=extracted)


def _summary(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    n, correct = len(items), sum(item["correct"] for item in items)
    formatted = sum(item["formatted"] for item in items)
    return {"n": n, "correct": correct, "accuracy": correct / n,
            "accuracy_ci95": list(wilson_interval(correct, n)), "formatted": formatted,
            "format_rate": formatted / n}


def _tally(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """:func:`score_responses`'s result, from :func:`item_rows`."""
    families = {name: [item for item in items if item["family"] == name] for name in FAMILIES}
    return {**_summary(items),
            "per_family": {name: _summary(rows) for name, rows in families.items() if rows}}


def score_responses(records: Sequence[Mapping[str, Any]], responses: Sequence[str | None]
                    ) -> dict[str, Any]:
    """``{"n", "correct", "accuracy", "accuracy_ci95", "formatted", "format_rate",
    "per_family": {family: {same keys}}}`` of :func:`item_rows`."""
    return _tally(item_rows(records, responses))


def text_id(*parts: str) -> str:
    """An id from text only (so runs pair up): 16 hex digits of the SHA-1 of ``parts``."""
    return hashlib.sha1("\x1f".join(map(str, parts)).encode("utf-8")).hexdigest()[:16]


def item_id(record: Mapping[str, Any]) -> str:
    """A synthetic item's :func:`text_id`: of its instruction and input (the prompt)."""
    return text_id(record.get("instruction", ""), record.get("input") or "")


def item_rows(records: Sequence[Mapping[str, Any]],
              responses: Sequence[str | None]) -> list[dict[str, Any]]:
    """One ``{"id", "family", "correct", "formatted"}`` per item, in order (ids made unique
    by :func:`unique_ids`), from :func:`check_answer`. Lengths must match and be non-zero;
    a bad record raises ValueError naming its index."""
    if len(records) != len(responses):
        raise ValueError(f"got {len(records)} records but {len(responses)} responses; "
                         "they must pair up")
    if not records:
        raise ValueError("no records to score")
    rows = []
    for i, (id_, record, response) in enumerate(zip(
            unique_ids(map(item_id, records)), records, responses, strict=True)):
        try:
            result = check_answer(record, response)
        except ValueError as err:
            raise ValueError(f"record {i}: {err}") from None
        rows.append({"id": id_, "family": str(record["family"]),
                     "correct": bool(result.correct), "formatted": bool(result.formatted)})
    return rows


def unique_ids(ids: Iterable[str]) -> list[str]:
    """``ids`` with ``#2``, ``#3``... appended to each repeat, so that they are unique."""
    seen: dict[str, int] = {}
    out = []
    for base in ids:
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return out


@dataclass
class TasksReport:
    """Scores of one model on the held-out split (:func:`score_responses`' keys), the
    generation report as a dict (None when only scoring) and :func:`item_rows`."""

    model: str
    generator: str
    n: int
    seed: int
    overall: dict[str, Any]
    per_family: dict[str, dict[str, Any]]
    output_dir: str | None = None
    outputs_file: str | None = None
    generation: dict[str, Any] | None = None
    files: dict[str, str] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def accuracy(self) -> float:
        return float(self.overall["accuracy"])

    def to_dict(self) -> dict[str, Any]:
        """Everything but the per-item rows (:attr:`items`, written as JSON Lines)."""
        out = asdict(self)
        out.pop("items")
        return out

    def format_table(self, markdown: bool = False) -> str:
        """Per-family and overall accuracy (95% CI) and format share, as text or Markdown."""
        header = ["family", "n", "correct", "accuracy", "95% CI", "formatted"]
        rows = []
        for name, s in [*self.per_family.items(), ("overall", self.overall)]:
            low, high = s["accuracy_ci95"]
            rows.append([name, str(s["n"]), str(s["correct"]), fmt(s["accuracy"], ".1%"),
                         f"[{fmt(low, '.1f', scale=100)}, {fmt(high, '.1f', scale=100)}]",
                         fmt(s["format_rate"], ".1%")])
        title = (f"synthetic held-out: {self.generator} ({self.model}), n={self.n}, "
                 f"seed={self.seed}")
        if markdown:
            return f"### {title}\n\n" + markdown_table(header, rows, "l" + "r" * 5)
        widths = [max(map(len, column)) for column in zip(header, *rows, strict=True)]

        def line(r: Sequence[str]) -> str:  # the family left-aligned, the numbers right
            return "  ".join([r[0].ljust(widths[0]),
                              *(c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True))])

        sep = "  ".join("-" * w for w in widths)
        out = [title, line(header), sep, *map(line, rows[:-1]), sep, line(rows[-1])]
        if g := self.generation:
            out.append(f"generated {g['n_generated']}, resumed {g['n_resumed']}, "
                       f"cut at max_new_tokens {g['n_hit_max_tokens']}")
        if self.outputs_file:
            out.append(f"outputs: {self.outputs_file}")
        return "\n".join(out)


def make_report(records: Sequence[Mapping[str, Any]], responses: Sequence[str], **fields: Any
                ) -> TasksReport:
    """Score ``responses`` against ``records`` into a :class:`TasksReport` (``fields``:
    its other attributes: ``model``, ``generator``, ``seed``...)."""
    items = item_rows(records, responses)
    overall = _tally(items)
    per_family = overall.pop("per_family")
    return TasksReport(n=len(records), overall=overall, per_family=per_family, items=items,
                       **fields)


def score_outputs(rows: Sequence[Mapping[str, Any]], *, source: str, model: str = "",
                  seed: int = 0) -> TasksReport:
    """Score model-outputs rows that carry ``family`` and ``answer`` (as
    ``synthetic_outputs.json``'s do); ``source`` names them in errors. A row without them
    raises DataError naming it. Nothing is written (see :func:`write_report`)."""
    from ..data.formats import DataError

    if not rows:
        raise DataError("no outputs to score", file=source)
    for i, row in enumerate(rows):
        if not isinstance(row.get("family"), str) or not isinstance(row.get("answer"), str):
            raise DataError("needs string fields 'family' and 'answer' (synthetic outputs)",
                            file=source, row=i)
    generators = ", ".join(sorted({str(r.get("generator", "")) for r in rows}))
    try:
        return make_report(rows, [r["output"] for r in rows], model=model or generators,
                           generator=generators, seed=seed, outputs_file=source)
    except ValueError as exc:
        raise DataError(str(exc), file=source) from None


def write_report(report: TasksReport, out_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Write the scores (JSON, Markdown) and the per-item rows (JSON Lines) of ``report``
    into ``out_dir``; returns (and records in ``report.files``) the paths by role."""
    out = Path(out_dir)
    report.files = {"scores_json": str(out / SCORES_JSON), "scores_md": str(out / SCORES_MD),
                    "items": str(out / ITEMS_JSONL)}
    if report.outputs_file:
        report.files["outputs"] = report.outputs_file
    write_json_atomic(out / SCORES_JSON, report.to_dict())
    write_text_atomic(out / SCORES_MD, report.format_table(markdown=True))
    write_text_atomic(out / ITEMS_JSONL, "".join(json.dumps(r) + "\n" for r in report.items))
    return report.files
