"""Pairwise win rate against reference outputs with an LLM judge (AlpacaEval style).

Inputs are two AlpacaEval model-outputs files (read by :mod:`symnoise.outputs`), paired by
the whole prompt (instruction, and input when there is one). Each pair is shown to a judge
in a seeded random order (or in both orders). Conventions follow AlpacaEval: ``output_1``
is the reference, ``output_2`` the model; ``preference`` runs from 1 (reference better) to
2 (model better), 1.5 a tie; the leaderboard columns are alpaca_eval's
(:mod:`symnoise.evaluate.winrate`).

This module runs our own prompt (annotator ``symnoise-pairwise``) with two judges, chosen
by a spec string (:func:`make_judge`):

* ``openai:MODEL``: any OpenAI-compatible endpoint through the official ``openai`` client,
  verdicts read from log-probabilities (:mod:`symnoise.evaluate.openai_judge`).
* ``hf:PATH``: a local Hugging Face causal LM, log-prob decision
  (:mod:`symnoise.evaluate.hf_judge`).

AlpacaEval's own annotators (their prompts and parsers) run through
:mod:`symnoise.evaluate.annotators`. Every verdict is appended to ``judge_cache.jsonl``
as soon as it is known, keyed by (judge, prompt version, prompt, output shown as (a),
output shown as (b)), so a rerun never asks the judge the same question twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import statistics
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import write_json_atomic as _write_json
from .._io import write_text_atomic
from ..outputs import OutputsError, full_instruction, read_outputs
from .hf_judge import HFJudge
from .judge_prompts import TEMPLATE_VERSION
from .judge_report import (
    NO_DATASET,
    OUR_ANNOTATOR,
    DatasetScore,
    JudgeReport,
    build_report,
    leaderboard_markdown,
    win_rate,
)
from .judge_types import Judge, JudgeError, JudgeItem, JudgeResult
from .openai_judge import OpenAIJudge

__all__ = [
    "JudgeError", "JudgeItem", "JudgeResult", "Judge", "OpenAIJudge", "HFJudge", "make_judge",
    "AnnotationCache", "DatasetScore", "JudgeReport", "load_outputs", "pair_outputs",
    "win_rate", "judge_outputs", "write_results", "CACHE_FILE", "ANNOTATIONS_FILE",
    "LEADERBOARD_JSON", "LEADERBOARD_MD", "NO_DATASET", "OUR_ANNOTATOR",
]

CACHE_FILE = "judge_cache.jsonl"
ANNOTATIONS_FILE = "annotations.json"
LEADERBOARD_JSON = "leaderboard.json"
LEADERBOARD_MD = "leaderboard.md"

OutputsSource = str | os.PathLike[str] | Sequence[dict[str, Any]]


def make_judge(
    spec: str,
    base_url: str | None = None,
    *,
    api_key: str | None = None,
    max_retries: int = 5,
    batch_size: int = 8,
    concurrency: int = 4,
    timeout: float = 120.0,
    max_tokens: int = 8,
    device: str | None = None,
    dtype: str | None = None,
) -> Judge:
    """Build a judge from its spec: ``openai:MODEL`` or ``hf:PATH``.

    ``base_url``, ``api_key``, ``max_retries``, ``concurrency``, ``timeout`` and
    ``max_tokens`` apply to ``openai:`` judges (:class:`OpenAIJudge`); ``batch_size``,
    ``device`` and ``dtype`` to ``hf:`` judges (:class:`HFJudge`).
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise JudgeError(f"unknown judge spec {spec!r}; expected 'openai:MODEL' or 'hf:PATH'")
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "openai":
        return OpenAIJudge(rest.strip(), base_url=base_url, api_key=api_key,
                           max_retries=max_retries, timeout=timeout, concurrency=concurrency,
                           max_tokens=max_tokens)
    if kind == "hf":
        if not rest.strip():
            raise JudgeError("judge spec 'hf:PATH' needs a model folder after 'hf:'")
        return HFJudge(rest.strip(), batch_size=batch_size, device=device, dtype=dtype)
    raise JudgeError(f"unknown judge spec {spec!r}; expected 'openai:MODEL' or 'hf:PATH'")


# --------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------


class AnnotationCache:
    """Append-only JSONL cache of verdicts, one line per judged (a, b) question.

    Lines are flushed as they are written; a truncated last line (a crash mid-write) is
    cut off the file on load. Other invalid lines are ignored with a warning and counted
    in ``n_bad_lines``.
    Errors are not cached (a rerun retries them); unparseable replies are, with their
    status, so they are not paid for twice.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._entries: dict[str, dict[str, Any]] = {}
        self.n_bad_lines = 0
        self._load()

    @staticmethod
    def key(judge: str, instruction: str, output_a: str, output_b: str) -> str:
        blob = json.dumps(
            [judge, TEMPLATE_VERSION, instruction, output_a, output_b], ensure_ascii=False
        )
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    @staticmethod
    def _parse(line: bytes) -> dict[str, Any] | None:
        try:
            entry = json.loads(line.decode("utf-8"))
            if not isinstance(entry["key"], str):
                return None
            JudgeResult(label=entry.get("label"), status=entry["status"])
        except (ValueError, KeyError, TypeError):
            return None
        return entry

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            entry = self._parse(line)
            if entry is None:
                self.n_bad_lines += 1
                warnings.warn(
                    f"{self.path}: line {number} is not a valid cache entry; ignored", stacklevel=3
                )
                continue
            self._entries[entry["key"]] = entry
        if tail.strip():
            entry = self._parse(tail)
            if entry is not None:
                self._entries[entry["key"]] = entry
            else:  # a write cut short by a crash: drop the partial line
                self.n_bad_lines += 1
                with open(self.path, "r+b") as fh:
                    fh.truncate(len(data) - len(tail))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> JudgeResult | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        return JudgeResult(
            label=entry.get("label"),
            status=entry["status"],
            raw=entry.get("raw"),
            scores=entry.get("scores"),
            cached=True,
            p_b=entry.get("p_b"),
            method=entry.get("method"),
        )

    def put(self, key: str, judge: str, result: JudgeResult) -> None:
        if result.status == "error":
            return
        entry = {
            "key": key,
            "judge": judge,
            "template": TEMPLATE_VERSION,
            "status": result.status,
            "label": result.label,
            "raw": result.raw,
            "scores": result.scores,
            "p_b": result.p_b,
            "method": result.method,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        needs_newline = False
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                needs_newline = fh.read(1) != b"\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            if needs_newline:
                fh.write("\n")
            fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
            fh.flush()
        self._entries[key] = entry


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


def load_outputs(source: OutputsSource, *, what: str = "outputs") -> list[dict[str, Any]]:
    """Rows of a model-outputs file, folder or list (:func:`symnoise.outputs.read_outputs`),
    each with ``_row`` (its index) and ``_origin`` (the file) added for error messages."""
    rows = read_outputs(source, what=what)
    origin = str(source) if isinstance(source, (str, os.PathLike)) else f"{what} (in memory)"
    return [{**row, "_row": i, "_origin": origin} for i, row in enumerate(rows)]


@dataclass
class _Pair:
    instruction: str  # the whole prompt: instruction, and input when there is one
    reference: dict[str, Any]
    model: dict[str, Any]

    @property
    def dataset(self) -> str | None:
        return self.reference.get("dataset") or self.model.get("dataset")


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _index_by_prompt(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    index: dict[str, dict[str, Any]] = {}
    for row in rows:
        prompt = full_instruction(row)
        previous = index.get(prompt)
        if previous is not None:
            raise OutputsError(
                f"{row['_origin']}: rows {previous['_row']} and {row['_row']} have the same "
                f"instruction {_short(prompt)!r}; instructions must be unique"
            )
        index[prompt] = row
    return index


def pair_outputs(
    model_outputs: list[dict[str, Any]], reference_outputs: list[dict[str, Any]]
) -> tuple[list[_Pair], int]:
    """Pair model outputs with references by prompt (instruction + input), in model order.

    Returns the pairs and the number of references that no model output matched. Raises
    :class:`~symnoise.outputs.OutputsError` naming the first model output without a
    reference, or duplicate prompts on either side.
    """
    references = _index_by_prompt(reference_outputs)
    _index_by_prompt(model_outputs)
    pairs: list[_Pair] = []
    for row in model_outputs:
        prompt = full_instruction(row)
        ref = references.get(prompt)
        if ref is None:
            raise OutputsError(f"{row['_origin']}: row {row['_row']}: no reference output has "
                               f"the instruction {_short(prompt)!r}")
        pairs.append(_Pair(instruction=prompt, reference=ref, model=row))
    return pairs, len(references) - len(pairs)


def _generator_name(rows: list[dict[str, Any]], default: str) -> str:
    names = list(dict.fromkeys(r["generator"] for r in rows if r.get("generator")))
    return "+".join(names) if names else default


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------


def _chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def ask_judge(judge: Judge, items: Sequence[JudgeItem], cache: AnnotationCache | None, *,
              progress: bool = False, step: int = 8) -> tuple[list[JudgeResult], int, int]:
    """Answer every item, from the cache where it can; ask each distinct question once.

    Returns (results in item order, n answered from the cache, n sent to the judge).
    """
    from tqdm.auto import tqdm

    results: list[JudgeResult | None] = [None] * len(items)
    pending: dict[str, list[int]] = {}
    todo: list[tuple[str, JudgeItem]] = []
    for i, item in enumerate(items):
        key = AnnotationCache.key(judge.spec, item.instruction, item.output_a, item.output_b)
        hit = cache.get(key) if cache is not None else None
        if hit is not None:
            results[i] = hit
        elif key in pending:  # the same question twice in this run: ask once
            pending[key].append(i)
        else:
            pending[key] = [i]
            todo.append((key, item))
    n_cached = sum(r is not None for r in results)
    bar = tqdm(total=len(todo), disable=not progress, desc=f"judging with {judge.spec}",
               unit="judgment", dynamic_ncols=True)
    try:
        for chunk in _chunks(todo, step):
            answers = judge.compare([item for _, item in chunk])
            if len(answers) != len(chunk):
                raise RuntimeError(f"judge {judge.spec} returned {len(answers)} results for "
                                   f"{len(chunk)} items")
            for (key, _), answer in zip(chunk, answers, strict=True):
                if cache is not None:
                    cache.put(key, judge.spec, answer)
                for i in pending[key]:
                    results[i] = answer
            bar.update(len(chunk))
    finally:
        bar.close()
    return [r for r in results if r is not None], n_cached, len(todo)


def _annotation(pair: _Pair, flags: list[bool], answers: list[JudgeResult], *,
                judge: str, model_name: str, reference_name: str) -> dict[str, Any]:
    judgments = [{"model_first": f, "label": r.label, "preference": r.preference(f),
                  "p_b": r.p_b, "method": r.method, "status": r.status,
                  "raw_completion": r.raw, "error": r.error, "scores": r.scores,
                  "cached": r.cached} for f, r in zip(flags, answers, strict=True)]
    statuses = [j["status"] for j in judgments]
    if "error" in statuses:
        status, preference = "error", None
    elif "unparseable" in statuses:
        status, preference = "unparseable", None
    else:
        status, preference = "ok", statistics.fmean(j["preference"] for j in judgments)
    single = len(flags) == 1
    return {
        "instruction": pair.instruction,
        "output_1": pair.reference["output"],
        "output_2": pair.model["output"],
        "generator_1": pair.reference.get("generator") or reference_name,
        "generator_2": pair.model.get("generator") or model_name,
        "dataset": pair.dataset,
        "preference": preference,
        "annotator": OUR_ANNOTATOR,
        "judge": judge,
        "raw_completion": judgments[0]["raw_completion"] if single
        else [j["raw_completion"] for j in judgments],
        "model_first": flags[0] if single else None,
        "order": ("model_first" if flags[0] else "reference_first") if single else "both",
        "status": status,
        "error": "; ".join(j["error"] for j in judgments if j["error"]) or None,
        "judgments": judgments,
        "template": TEMPLATE_VERSION,
    }


def judge_outputs(
    model_outputs: OutputsSource,
    reference_outputs: OutputsSource,
    *,
    judge: str | Judge,
    output_dir: str | os.PathLike[str],
    base_url: str | None = None,
    both_orders: bool = False,
    seed: int = 0,
    max_items: int | None = None,
    max_retries: int = 5,
    batch_size: int = 8,
    progress: bool = True,
    name: str | None = None,
    judge_options: dict[str, Any] | None = None,
) -> JudgeReport:
    """Judge model outputs against reference outputs with our prompt; write the results.

    model_outputs, reference_outputs: AlpacaEval model-outputs files (JSON list or JSONL),
        folders holding ``model_outputs.json``, or lists of dicts; paired by prompt.
    judge: a spec (``openai:MODEL`` or ``hf:PATH``, :func:`make_judge`) or a :class:`Judge`.
    output_dir: receives ``annotations.json``, ``leaderboard.json``, ``leaderboard.md``
        and the cache ``judge_cache.jsonl``; created when missing.
    both_orders: judge each pair as (reference, model) and (model, reference) and average
        the two preferences; an item is unparseable / error when either order is.
        Otherwise each pair is shown in one order drawn from ``random.Random(seed)``.
    max_items: judge only the first ``max_items`` model outputs.
    batch_size: items per call to the judge; results are cached after each call.
    name: the model's name in the leaderboard; defaults to its outputs' ``generator``.
    judge_options: further keyword arguments for :func:`make_judge`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_items is not None and max_items < 0:
        raise ValueError(f"max_items must be >= 0, got {max_items}")
    model_rows = load_outputs(model_outputs, what="model outputs")
    reference_rows = load_outputs(reference_outputs, what="reference outputs")
    pairs, n_unmatched = pair_outputs(model_rows, reference_rows)
    pairs = pairs[:max_items] if max_items is not None else pairs
    model_name = name or _generator_name(model_rows, "model")
    reference_name = _generator_name(reference_rows, "reference")
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    rng = random.Random(seed)
    orders = [[False, True] if both_orders else [rng.random() < 0.5] for _ in pairs]
    items = [JudgeItem(p.instruction, *((p.model["output"], p.reference["output"]) if first
                                        else (p.reference["output"], p.model["output"])))
             for p, flags in zip(pairs, orders, strict=True) for first in flags]
    judge_obj = judge if isinstance(judge, Judge) else make_judge(
        judge, base_url, max_retries=max_retries, batch_size=batch_size, **(judge_options or {}))
    step = max(batch_size, getattr(judge_obj, "concurrency", 1))
    if isinstance(judge_obj, HFJudge):
        step = 4 * judge_obj.batch_size  # room to group similar lengths
    try:
        answers, n_cached, n_requested = ask_judge(
            judge_obj, items, AnnotationCache(out_dir / CACHE_FILE), progress=progress, step=step)
    finally:
        if not isinstance(judge, Judge):
            judge_obj.close()
    annotations, k = [], 0
    for pair, flags in zip(pairs, orders, strict=True):
        annotations.append(_annotation(pair, flags, answers[k : k + len(flags)],
                                       judge=judge_obj.spec, model_name=model_name,
                                       reference_name=reference_name))
        k += len(flags)
    report = build_report(annotations, name=model_name, reference_name=reference_name,
                          judge=judge_obj.spec, annotator=OUR_ANNOTATOR,
                          n_judgments=len(items), n_cached=n_cached, n_requested=n_requested,
                          n_unmatched_references=n_unmatched, both_orders=both_orders,
                          seed=seed, template=TEMPLATE_VERSION)
    return write_results(report, annotations, out_dir)


def write_results(report: JudgeReport, annotations: list[dict[str, Any]],
                  out_dir: str | os.PathLike[str]) -> JudgeReport:
    """Write ``annotations.json``, ``leaderboard.json`` and ``leaderboard.md``; return
    ``report`` with ``output_dir`` and ``files`` filled in."""
    out_dir = Path(out_dir)
    report.output_dir = str(out_dir)
    report.files = {"annotations": str(out_dir / ANNOTATIONS_FILE),
                    "leaderboard_json": str(out_dir / LEADERBOARD_JSON),
                    "leaderboard_md": str(out_dir / LEADERBOARD_MD),
                    "cache": str(out_dir / CACHE_FILE)}
    _write_json(out_dir / ANNOTATIONS_FILE, annotations)
    _write_json(out_dir / LEADERBOARD_JSON, {report.name: report.leaderboard_row()})
    write_text_atomic(out_dir / LEADERBOARD_MD, leaderboard_markdown(report))
    return report
