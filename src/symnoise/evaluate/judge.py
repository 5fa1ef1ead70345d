"""Judge model outputs against reference outputs: our pairwise prompt with any judge
(:func:`judge_outputs`), or one of AlpacaEval's own annotators (:func:`annotate`);
:func:`run_judge` picks by annotator.

Two AlpacaEval model-outputs files are paired by the whole prompt. AlpacaEval conventions:
``output_1`` is the reference, ``output_2`` the model, ``preference`` 1 (reference better)
.. 2 (model better).

Ours: each pair is shown to a judge (:func:`make_judge`: ``openai:MODEL`` or ``hf:PATH``,
:mod:`.judge_backends`) in a seeded random order (or both orders). Every verdict is
appended to ``judge_cache.jsonl`` as soon as it is known, so a rerun never asks the same
question twice.

AlpacaEval's annotators run through the alpaca_eval package (prompts, parsers, order
randomisation, preference processing) with its configuration, except where requests go:
its model name becomes the judge's and its completion function sends each ChatML prompt
through an :class:`OpenAIJudge` (same ``base_url``, retries and concurrency as our own
prompt). For annotators parsed from log-probabilities (``logprob_parser``), a reply whose
top log-probabilities hold no label token is asked again restricted to the label tokens;
text-parsed annotators keep alpaca_eval's parsers, and what they cannot parse is counted
as unparseable.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import statistics
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import append_journal, read_journal, write_json_atomic, write_text_atomic
from ..outputs import OutputsError, full_instruction, preference, read_outputs
from .judge_backends import HFJudge, OpenAIJudge
from .judge_prompts import TEMPLATE_VERSION, Judge, JudgeError, JudgeItem, JudgeResult
from .winrate import (
    NO_DATASET,
    OUR_ANNOTATOR,
    DatasetScore,
    JudgeReport,
    build_report,
    leaderboard_markdown,
    load_alpaca_eval,
    short,
    win_rate,
)

__all__ = [
    "JudgeError", "JudgeItem", "JudgeResult", "Judge", "OpenAIJudge", "HFJudge", "make_judge",
    "AnnotationCache", "DatasetScore", "JudgeReport", "load_outputs", "pair_outputs",
    "win_rate", "judge_outputs", "write_results", "CACHE_FILE", "ANNOTATIONS_FILE",
    "LEADERBOARD_JSON", "LEADERBOARD_MD", "NO_DATASET", "OUR_ANNOTATOR", "PAPER_ANNOTATORS",
    "available_annotators", "annotate", "run_judge", "ALPACA_EVAL_CACHE",
]

CACHE_FILE = "judge_cache.jsonl"
ANNOTATIONS_FILE = "annotations.json"
LEADERBOARD_JSON = "leaderboard.json"
LEADERBOARD_MD = "leaderboard.md"
ALPACA_EVAL_CACHE = "alpaca_eval_annotator_cache.json"
# The paper's GPT-4 judge (Table 1), its ChatGPT judge (Tables 2, 3), AlpacaEval 2's default.
PAPER_ANNOTATORS = ("alpaca_eval_gpt4", "chatgpt_fn", "weighted_alpaca_eval_gpt4_turbo")

OutputsSource = str | os.PathLike[str] | Sequence[dict[str, Any]]


def make_judge(spec: str, base_url: str | None = None, *, api_key: str | None = None,
               max_retries: int = 5, batch_size: int = 8, concurrency: int = 4,
               timeout: float = 120.0, max_tokens: int = 8, device: str | None = None,
               dtype: str | None = None) -> Judge:
    """Build a judge from its spec: ``openai:MODEL`` (:class:`OpenAIJudge`: ``base_url``,
    ``api_key``, ``max_retries``, ``concurrency``, ``timeout``, ``max_tokens``) or ``hf:PATH``
    (:class:`HFJudge`: ``batch_size``, ``device``, ``dtype``)."""
    kind, _, rest = spec.partition(":") if ":" in str(spec) else ("", "", "")
    kind, rest = kind.strip().lower(), rest.strip()
    if kind == "openai":
        return OpenAIJudge(rest, base_url=base_url, api_key=api_key, max_retries=max_retries,
                           timeout=timeout, concurrency=concurrency, max_tokens=max_tokens)
    if kind == "hf":
        if not rest:
            raise JudgeError("judge spec 'hf:PATH' needs a model folder after 'hf:'")
        return HFJudge(rest, batch_size=batch_size, device=device, dtype=dtype)
    raise JudgeError(f"unknown judge spec {spec!r}; expected 'openai:MODEL' or 'hf:PATH'")


def open_judge(judge: str | Judge, base_url: str | None = None, **options: Any
               ) -> contextlib.AbstractContextManager[Judge]:
    """``judge`` itself, or the judge its spec names (:func:`make_judge`), closed on exit."""
    if isinstance(judge, Judge):
        return contextlib.nullcontext(judge)
    return contextlib.closing(make_judge(judge, base_url, **options))


class AnnotationCache:
    """Append-only JSONL cache of verdicts, one line per judged (a, b) question.

    A journal (:func:`symnoise._io.append_journal`): lines are fsync'ed as written; a torn
    last line (a crash mid-write) is cut off the file on load, other invalid lines are skipped with a warning and counted in
    ``n_bad_lines``. Errors are not cached (a rerun retries them); unparseable replies are.
    """

    FIELDS = ("status", "label", "raw", "scores", "p_b", "method")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._entries: dict[str, dict[str, Any]] = {}
        self.n_bad_lines = 0
        if self.path.exists():
            self._load()

    @staticmethod
    def key(judge: str, instruction: str, output_a: str, output_b: str) -> str:
        blob = json.dumps([judge, TEMPLATE_VERSION, instruction, output_a, output_b],
                          ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    @staticmethod
    def _valid(entry: Any) -> bool:
        try:
            JudgeResult(label=entry.get("label"), status=entry["status"])
            return isinstance(entry["key"], str)
        except (ValueError, KeyError, TypeError, AttributeError):
            return False

    def _load(self) -> None:
        rows, self.n_bad_lines = read_journal(self.path, invalid=lambda reason: None)
        for number, entry in rows:
            if self._valid(entry):
                self._entries[entry["key"]] = entry
                continue
            self.n_bad_lines += 1
            warnings.warn(f"{self.path}: line {number} is not a valid cache entry; ignored",
                          stacklevel=3)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> JudgeResult | None:
        entry = self._entries.get(key)
        return None if entry is None else JudgeResult(**{f: entry.get(f) for f in self.FIELDS},
                                                      cached=True)

    def put(self, key: str, judge: str, result: JudgeResult) -> None:
        if result.status == "error":
            return
        entry = {"key": key, "judge": judge, "template": TEMPLATE_VERSION,
                 **{f: getattr(result, f) for f in self.FIELDS}}
        append_journal(self.path, [entry])
        self._entries[key] = entry


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

    def row(self, model_name: str, reference_name: str) -> dict[str, Any]:
        """The AlpacaEval columns of this pair's annotation."""
        return {"instruction": self.instruction, "output_1": self.reference["output"],
                "output_2": self.model["output"],
                "generator_1": self.reference.get("generator") or reference_name,
                "generator_2": self.model.get("generator") or model_name,
                "dataset": self.reference.get("dataset") or self.model.get("dataset")}


def _index_by_prompt(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    index: dict[str, dict[str, Any]] = {}
    for row in rows:
        prompt = full_instruction(row)
        if prompt in index:
            raise OutputsError(
                f"{row['_origin']}: rows {index[prompt]['_row']} and {row['_row']} have the "
                f"same instruction {short(prompt)!r}; instructions must be unique")
        index[prompt] = row
    return index


def pair_outputs(model_outputs: list[dict[str, Any]], reference_outputs: list[dict[str, Any]]
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
        if prompt not in references:
            raise OutputsError(f"{row['_origin']}: row {row['_row']}: no reference output has "
                               f"the instruction {short(prompt)!r}")
        pairs.append(_Pair(instruction=prompt, reference=references[prompt], model=row))
    return pairs, len(references) - len(pairs)


@dataclass
class _Inputs:
    pairs: list[_Pair]
    n_unmatched: int
    model_name: str
    reference_name: str
    out_dir: Path


def prepare(model_outputs: OutputsSource, reference_outputs: OutputsSource,
            output_dir: str | os.PathLike[str], max_items: int | None,
            name: str | None) -> _Inputs:
    """Read and pair both outputs, keep the first ``max_items``, name both sides (their
    ``generator``, else ``name``/"model" and "reference"), create ``output_dir``."""
    if max_items is not None and max_items < 0:
        raise ValueError(f"max_items must be >= 0, got {max_items}")
    model_rows = load_outputs(model_outputs, what="model outputs")
    reference_rows = load_outputs(reference_outputs, what="reference outputs")
    pairs, n_unmatched = pair_outputs(model_rows, reference_rows)

    def generator(rows: list[dict[str, Any]], default: str) -> str:
        return "+".join(dict.fromkeys(r["generator"] for r in rows if r.get("generator"))) \
            or default

    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return _Inputs(pairs[:max_items] if max_items is not None else pairs, n_unmatched,
                   name or generator(model_rows, "model"),
                   generator(reference_rows, "reference"), out_dir)


def ask_judge(judge: Judge, items: Sequence[JudgeItem], cache: AnnotationCache | None, *,
              progress: bool = False, step: int = 8, first_step: int | None = None
              ) -> tuple[list[JudgeResult], int, int]:
    """Answer every item, from the cache where it can; ask each distinct question once.

    Questions go ``step`` at a time (the first call ``first_step``, default ``step``). When
    every question of a call fails (a dead or refusing judge), the rest are not asked: they
    are errors saying so, and nothing is cached for them. Returns (results in item order,
    n answered from the cache, n sent to the judge).
    """
    from tqdm.auto import tqdm

    results: list[JudgeResult | None] = [None] * len(items)
    pending: dict[str, list[int]] = {}  # key -> the items that ask it
    for i, item in enumerate(items):
        key = AnnotationCache.key(judge.spec, item.instruction, item.output_a, item.output_b)
        results[i] = cache.get(key) if cache is not None else None
        if results[i] is None:
            pending.setdefault(key, []).append(i)
    n_cached = sum(r is not None for r in results)
    todo, start, n_asked = list(pending), 0, 0
    with tqdm(total=len(todo), disable=not progress, desc=f"judging with {judge.spec}",
              unit="judgment", dynamic_ncols=True) as bar:
        while start < len(todo):
            chunk = todo[start : start + (first_step if start == 0 and first_step else step)]
            answers = judge.compare([items[pending[key][0]] for key in chunk])
            if len(answers) != len(chunk):
                raise RuntimeError(f"judge {judge.spec} returned {len(answers)} results for "
                                   f"{len(chunk)} items")
            for key, answer in zip(chunk, answers, strict=True):
                if cache is not None:
                    cache.put(key, judge.spec, answer)
                for i in pending[key]:
                    results[i] = answer
            bar.update(len(chunk))
            start, n_asked = start + len(chunk), n_asked + len(chunk)
            if all(a.status == "error" for a in answers) and start < len(todo):
                stop = JudgeResult(label=None, status="error", error=(
                    f"not asked: the judge's last {len(chunk)} requests all failed "
                    f"(e.g. {answers[0].error})"))
                for key in todo[start:]:
                    for i in pending[key]:
                        results[i] = stop
                break
    return [r for r in results if r is not None], n_cached, n_asked


def _annotation(pair: _Pair, flags: list[bool], answers: list[JudgeResult], *,
                judge: str, model_name: str, reference_name: str) -> dict[str, Any]:
    judgments = [{"model_first": f, "label": r.label, "preference": r.preference(f),
                  "p_b": r.p_b, "method": r.method, "status": r.status,
                  "raw_completion": r.raw, "error": r.error, "scores": r.scores,
                  "cached": r.cached} for f, r in zip(flags, answers, strict=True)]
    statuses = {j["status"] for j in judgments}
    status = next((s for s in ("error", "unparseable") if s in statuses), "ok")
    single = len(flags) == 1
    return {
        **pair.row(model_name, reference_name),
        "preference": statistics.fmean(j["preference"] for j in judgments)
        if status == "ok" else None,
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


def judge_outputs(model_outputs: OutputsSource, reference_outputs: OutputsSource, *,
                  judge: str | Judge, output_dir: str | os.PathLike[str],
                  base_url: str | None = None, both_orders: bool = False, seed: int = 0,
                  max_items: int | None = None, max_retries: int = 5, batch_size: int = 8,
                  progress: bool = True, name: str | None = None,
                  judge_options: dict[str, Any] | None = None) -> JudgeReport:
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
    inputs = prepare(model_outputs, reference_outputs, output_dir, max_items, name)
    rng = random.Random(seed)
    orders = [[False, True] if both_orders else [rng.random() < 0.5] for _ in inputs.pairs]
    items = [JudgeItem(p.instruction, *((p.model["output"], p.reference["output"]) if first
                                        else (p.reference["output"], p.model["output"])))
             for p, flags in zip(inputs.pairs, orders, strict=True) for first in flags]
    with open_judge(judge, base_url, max_retries=max_retries, batch_size=batch_size,
                    **(judge_options or {})) as judge_obj:
        concurrency = getattr(judge_obj, "concurrency", 1)
        step = max(batch_size, concurrency)
        if isinstance(judge_obj, HFJudge):
            step = 4 * judge_obj.batch_size  # room to group similar lengths
        # the first call is one round of requests: a dead judge is known after one round
        answers, n_cached, n_requested = ask_judge(
            judge_obj, items, AnnotationCache(inputs.out_dir / CACHE_FILE), progress=progress,
            step=step, first_step=min(step, concurrency) if concurrency > 1 else None)
    annotations, k = [], 0
    for pair, flags in zip(inputs.pairs, orders, strict=True):
        annotations.append(_annotation(pair, flags, answers[k : k + len(flags)],
                                       judge=judge_obj.spec, model_name=inputs.model_name,
                                       reference_name=inputs.reference_name))
        k += len(flags)
    return write_results(inputs, annotations, judge=judge_obj.spec, annotator=OUR_ANNOTATOR,
                         n_judgments=len(items), n_cached=n_cached, n_requested=n_requested,
                         both_orders=both_orders, seed=seed, template=TEMPLATE_VERSION)


def write_results(inputs: _Inputs, annotations: list[dict[str, Any]], *, judge: str,
                  annotator: str, **counts: Any) -> JudgeReport:
    """Build the report of ``annotations`` and write ``annotations.json``,
    ``leaderboard.json`` and ``leaderboard.md`` to ``inputs.out_dir``."""
    out_dir = inputs.out_dir
    report = build_report(annotations, name=inputs.model_name,
                          reference_name=inputs.reference_name, judge=judge, annotator=annotator,
                          n_unmatched_references=inputs.n_unmatched, **counts)
    report.output_dir = str(out_dir)
    report.files = {"annotations": str(out_dir / ANNOTATIONS_FILE),
                    "leaderboard_json": str(out_dir / LEADERBOARD_JSON),
                    "leaderboard_md": str(out_dir / LEADERBOARD_MD),
                    "cache": str(out_dir / CACHE_FILE)}
    write_json_atomic(out_dir / ANNOTATIONS_FILE, annotations)
    write_json_atomic(out_dir / LEADERBOARD_JSON, {report.name: report.leaderboard_row()})
    write_text_atomic(out_dir / LEADERBOARD_MD, leaderboard_markdown(report))
    return report


def available_annotators() -> list[str]:
    """Names of the annotator configurations shipped with the installed alpaca_eval."""
    root = Path(load_alpaca_eval().constants.EVALUATORS_CONFIG_DIR)
    return sorted(p.parent.name for p in root.glob("*/configs.yaml"))


def _completions_fn(judge: OpenAIJudge, config: dict[str, Any]) -> Any:
    """An alpaca_eval ``fn_completions`` that sends each ChatML prompt through ``judge``."""
    utils = load_alpaca_eval().utils
    parser = config.get("completion_parser_kwargs") or {}
    labels: list[str] = []
    if config.get("fn_completion_parser") == "logprob_parser":
        tokens = [parser.get("numerator_token"), *parser.get("denominator_tokens", [])]
        labels = [t for t in dict.fromkeys(tokens) if t]

    def complete(prompts: Sequence[str], model_name: str, **kwargs: Any) -> dict[str, list]:
        del model_name  # replaced by the judge's model
        kwargs.pop("requires_chatml", None)
        kwargs.pop("price_per_token", None)
        start = time.monotonic()
        choices = judge.map(lambda p: _chat_choice(judge, utils.prompt_to_chatml(p), kwargs,
                                                   labels), prompts)
        errors = [c["error"] for c in choices if c.get("error")]
        if errors:  # alpaca_eval would cache them as failed parses: stop, record nothing
            raise JudgeError(f"{len(errors)} of {len(choices)} requests of this batch to the "
                             f"judge {judge.url} got no reply; first error: {errors[0].rstrip('.')}. "
                             "Finished batches stay in alpaca_eval's cache: rerun to "
                             "complete the rest")
        per = (time.monotonic() - start) / max(1, len(prompts))
        return {"completions": [c["text"] for c in choices], "completions_all": choices,
                "price_per_example": [float("nan")] * len(choices),
                "time_per_example": [per] * len(choices)}

    return complete


def _chat_choice(judge: OpenAIJudge, messages: list[dict], kwargs: dict[str, Any],
                 labels: list[str]) -> dict[str, Any]:
    """One chat completion as alpaca_eval's dict, asked again restricted to ``labels``
    when its top log-probabilities hold none of them."""
    try:
        reply = judge.chat(messages, **kwargs)
    except judge._openai.OpenAIError as exc:  # this item fails; alpaca_eval records none
        return {"text": "", "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    choice = reply.choices[0].model_dump()
    tool_calls = reply.choices[0].message.tool_calls or []
    choice["text"] = (tool_calls[0].function.arguments if tool_calls
                      else reply.choices[0].message.content or " ")
    content = (choice.get("logprobs") or {}).get("content") or []
    tops = content[0].get("top_logprobs") or [] if content else []
    again = None
    if labels and not any(t.get("token") in labels for t in tops):
        again = judge.chat_restricted(messages, labels, **kwargs)
    if again is None:
        return choice
    return {**again.choices[0].model_dump(), "text": again.choices[0].message.content or " ",
            "restricted": True}


def _pairwise_annotator(name: str, judge: OpenAIJudge, cache: Path, seed: int) -> Any:
    base = load_alpaca_eval().annotators.PairwiseAnnotator

    class Annotator(base):  # type: ignore[misc, valid-type]
        def _initialize_annotators(self, **kwargs: Any) -> dict[str, Any]:
            configs = load_alpaca_eval().utils.load_configs(self.annotators_config)
            out = {}
            for key, config in configs.items():
                config = dict(config)
                config["completions_kwargs"] = {**config.get("completions_kwargs", {}),
                                                "model_name": judge.model}
                config["fn_completions"] = _completions_fn(judge, config)
                out[key] = self.SingleAnnotator(
                    seed=self.seed, base_dir=self.annotators_config.parents[1],
                    annotation_column=self.annotation_key,
                    completion_column=self.completion_key, **config, **kwargs)
            return out

    if name not in available_annotators():
        raise JudgeError(f"unknown AlpacaEval annotator {name!r}; installed: "
                         f"{', '.join(available_annotators())} (or {OUR_ANNOTATOR!r}, ours)")
    level = logging.getLogger().level
    try:
        return Annotator(annotators_config=name, caching_path=str(cache), seed=seed)
    finally:
        logging.getLogger().setLevel(level)


def annotate_rows(annotator: str, judge: str, base_url: str | None, cache: Path, seed: int,
                  rows: list[dict[str, str]], **options: Any
                  ) -> tuple[list[dict[str, Any]], int]:
    """alpaca_eval's annotation of each row (``instruction``, ``output_1``, ``output_2``),
    in order (``{}`` where it gave none), and the number of requests sent. ``judge``:
    ``openai:MODEL``, built with ``options`` (:func:`make_judge`)."""
    if not judge.startswith("openai:"):
        raise JudgeError(f"AlpacaEval's annotators need an OpenAI-compatible judge "
                         f"('openai:MODEL'), got {judge!r}")
    with open_judge(judge, base_url, **options) as judge_obj:
        runner = _pairwise_annotator(annotator, judge_obj, cache, seed)
        annotated = runner.annotate_pairs(rows) if rows else []
    found = {(a["instruction"], a["output_1"], a["output_2"]): a for a in annotated}
    return ([found.get((r["instruction"], r["output_1"], r["output_2"])) or {} for r in rows],
            judge_obj.n_requests)


def annotate(model_outputs: OutputsSource, reference_outputs: OutputsSource, *, annotator: str,
             judge: str, output_dir: str | os.PathLike[str], base_url: str | None = None,
             seed: int = 0, max_items: int | None = None, max_retries: int = 5,
             concurrency: int = 4, name: str | None = None) -> JudgeReport:
    """Judge model outputs against references with AlpacaEval's annotator ``annotator``.

    judge: ``openai:MODEL``, the model that answers AlpacaEval's prompts (e.g.
    ``openai:gpt-4`` for the paper's ``alpaca_eval_gpt4``). Writes ``annotations.json``,
    ``leaderboard.json`` and ``leaderboard.md`` in ``output_dir`` (alpaca_eval's own cache
    of annotations goes to ``alpaca_eval_annotator_cache.json`` there).
    """
    inputs = prepare(model_outputs, reference_outputs, output_dir, max_items, name)
    rows = [{"instruction": p.instruction, "output_1": p.reference["output"],
             "output_2": p.model["output"]} for p in inputs.pairs]
    found, n_requested = annotate_rows(annotator, judge, base_url,
                                       inputs.out_dir / ALPACA_EVAL_CACHE, seed, rows,
                                       max_retries=max_retries, concurrency=concurrency,
                                       max_tokens=16)
    annotations = [_alpaca_annotation(p, f, annotator=annotator, judge=judge,
                                      model_name=inputs.model_name,
                                      reference_name=inputs.reference_name, seed=seed)
                   for p, f in zip(inputs.pairs, found, strict=True)]
    return write_results(inputs, annotations, judge=judge, annotator=annotator,
                         n_judgments=len(rows), n_requested=n_requested, seed=seed,
                         template=f"alpaca_eval:{annotator}")


def is_switched(instruction: str, seed: int) -> bool:
    """Whether alpaca_eval showed output_2 first for ``instruction`` (its seeded
    ``RandomSwitchTwoColumnsProcessor`` rule, which it applies and does not return)."""
    utils = load_alpaca_eval().utils
    return bool(utils.random_seeded_choice(seed="is_switched_outputs" + instruction + str(seed),
                                           choices=[False, True]))


def _alpaca_annotation(pair: _Pair, found: dict[str, Any], *, annotator: str, judge: str,
                       model_name: str, reference_name: str, seed: int) -> dict[str, Any]:
    pref = preference(found.get("preference"), f"alpaca_eval: {pair.instruction[:60]!r}")
    raw = found.get("preference_raw_completion")
    flags = raw if isinstance(raw, dict) else {}
    method = "restricted" if flags.get("restricted") else "logprobs" if flags.get("logprobs") \
        else "text"
    return {
        **pair.row(model_name, reference_name), "preference": pref,
        "annotator": annotator, "judge": judge, "raw_completion": raw,
        "status": "ok" if pref is not None else "unparseable",
        "judgments": [{"method": method, "preference": pref}],
        "is_switched_outputs": is_switched(pair.instruction, seed),
    }


def run_judge(model_outputs: OutputsSource, reference_outputs: OutputsSource, *,
              annotator: str = OUR_ANNOTATOR, judge: str, output_dir: str | os.PathLike[str],
              **options: Any) -> JudgeReport:
    """Judge with ``annotator``: ours (``symnoise-pairwise``, any judge spec) through
    :func:`judge_outputs`, else AlpacaEval's through :func:`annotate`
    (options it does not take, such as ``both_orders``, raise)."""
    if annotator == OUR_ANNOTATOR:
        return judge_outputs(model_outputs, reference_outputs, judge=judge,
                             output_dir=output_dir, **options)
    if options.pop("both_orders", False):
        raise JudgeError("--both-orders applies to symnoise-pairwise; AlpacaEval's annotators "
                         "randomise the order themselves")
    options.pop("progress", None)
    return annotate(model_outputs, reference_outputs, annotator=annotator, judge=judge,
                    output_dir=output_dir, **options)
