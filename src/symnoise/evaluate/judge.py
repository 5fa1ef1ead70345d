"""Judge model outputs against reference outputs with an AlpacaEval annotator, ours
(``symnoise-pairwise``) or AlpacaEval's, through alpaca_eval's ``PairwiseAnnotator`` and its
cache, answered by the judge's completion function (:func:`_completions`); README: judge.
AlpacaEval's conventions: ``output_1`` is the reference, ``output_2`` the model.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import short, write_json_atomic, write_text_atomic
from ..outputs import OutputsError, full_instruction, preference, read_outputs
from .judge_backends import HFJudge, OpenAIJudge
from .judge_prompts import CONFIG_DIR, TEMPLATE_VERSION, Judge, JudgeError, JudgeResult
from .winrate import (
    NO_DATASET,
    OUR_ANNOTATOR,
    JudgeReport,
    build_report,
    leaderboard_markdown,
    load_alpaca_eval,
    win_rate,
)

__all__ = [
    "JudgeError", "JudgeResult", "Judge", "OpenAIJudge", "HFJudge", "make_judge",
    "JudgeReport", "load_outputs", "pair_outputs", "win_rate", "judge_outputs",
    "write_results", "cache_file", "ANNOTATIONS_FILE", "LEADERBOARD_JSON", "LEADERBOARD_MD",
    "NO_DATASET", "OUR_ANNOTATOR", "PAPER_ANNOTATORS", "available_annotators", "ask",
]

ANNOTATIONS_FILE = "annotations.json"
LEADERBOARD_JSON = "leaderboard.json"
LEADERBOARD_MD = "leaderboard.md"
# The paper's GPT-4 judge (Table 1), its ChatGPT judge (Tables 2, 3), AlpacaEval 2's default.
PAPER_ANNOTATORS = ("alpaca_eval_gpt4", "chatgpt_fn", "weighted_alpaca_eval_gpt4_turbo")
_KEYS = ("instruction", "output_1", "output_2")

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

    def shown(self, model_first: bool) -> dict[str, str]:
        """The question's row: ``output_1`` is the output shown first."""
        first, second = (self.model, self.reference) if model_first else (self.reference, self.model)
        return {"instruction": self.instruction, "output_1": first["output"],
                "output_2": second["output"]}


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
    """Pair model outputs with references by prompt, in model order; the pairs and the number
    of references no model output matched. A model output without a reference, or duplicate
    prompts on either side, raise :class:`~symnoise.outputs.OutputsError`."""
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


def _annotation(row: dict[str, Any], flags: list[bool], judge: str,
                answers: list[JudgeResult]) -> dict[str, Any]:
    judgments = [{"model_first": f, "label": r.label, "preference": r.preference(f),
                  "p_b": r.p_b, "method": r.method, "status": r.status,
                  "raw_completion": r.raw, "error": r.error, "scores": r.scores,
                  "cached": r.cached} for f, r in zip(flags, answers, strict=True)]
    statuses = {j["status"] for j in judgments}
    status = next((s for s in ("error", "unparseable") if s in statuses), "ok")
    single = len(flags) == 1
    return {
        **row,
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
                  annotator: str = OUR_ANNOTATOR, base_url: str | None = None,
                  both_orders: bool = False, seed: int = 0, max_items: int | None = None,
                  max_retries: int = 5, batch_size: int = 8, progress: bool = True,
                  name: str | None = None, judge_options: dict[str, Any] | None = None
                  ) -> JudgeReport:
    """Judge model outputs (files, folders or rows, :func:`load_outputs`) against reference
    outputs, paired by prompt, with ``annotator``; write the results to ``output_dir``.

    judge: a spec (:func:`make_judge`, with ``judge_options``) or a :class:`Judge`.
    both_orders (ours only): judge (reference, model) and (model, reference) and average the
    two preferences; else each pair is shown in one order drawn from ``random.Random(seed)``.
    name: the model's name in the leaderboard; defaults to its outputs' ``generator``.
    """
    ours = annotator == OUR_ANNOTATOR
    if both_orders and not ours:
        raise JudgeError("--both-orders applies to symnoise-pairwise; AlpacaEval's annotators "
                         "randomise the order themselves")
    check_annotator(annotator, judge)
    inputs = prepare(model_outputs, reference_outputs, output_dir, max_items, name)
    rng = random.Random(seed)
    orders = [[False, True] if both_orders else [ours and rng.random() < 0.5]
              for _ in inputs.pairs]
    rows = [p.shown(first) for p, flags in zip(inputs.pairs, orders, strict=True)
            for first in flags]
    options = {"max_retries": max_retries, "batch_size": batch_size, **(judge_options or {})}
    with open_judge(judge, base_url, **options) as judge_obj:
        cache = inputs.out_dir / cache_file(annotator, judge_obj.spec)
        found, counts = ask(annotator, judge_obj, rows, cache, seed, progress=progress)
    annotations, k = [], 0
    for pair, flags in zip(inputs.pairs, orders, strict=True):
        got, k = found[k: k + len(flags)], k + len(flags)
        row = pair.row(inputs.model_name, inputs.reference_name)
        annotations.append(_annotation(row, flags, judge_obj.spec, [
            f["result"] or JudgeResult(None, "error", error=f["error"]) for f in got])
            if ours else _alpaca_annotation(row, got[0], annotator, judge_obj.spec, seed))
    return write_results(inputs, annotations, judge=judge_obj.spec, annotator=annotator,
                         cache=cache, n_judgments=len(rows), both_orders=both_orders, seed=seed,
                         template=TEMPLATE_VERSION if ours else f"alpaca_eval:{annotator}",
                         **counts)


def write_results(inputs: _Inputs, annotations: list[dict[str, Any]], *, judge: str,
                  annotator: str, cache: Path, **counts: Any) -> JudgeReport:
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
                    "cache": str(cache)}
    write_json_atomic(out_dir / ANNOTATIONS_FILE, annotations)
    write_json_atomic(out_dir / LEADERBOARD_JSON, {report.name: report.leaderboard_row()})
    write_text_atomic(out_dir / LEADERBOARD_MD, leaderboard_markdown(report))
    return report


def cache_file(annotator: str, judge: str, prefix: str = "") -> str:
    """The file name of alpaca_eval's annotation cache for ``annotator`` answered by
    ``judge``: its entries are keyed by the pair and the annotator alone, so the judge and
    our template's version are in the name."""
    tag = hashlib.sha256(json.dumps([annotator, judge, TEMPLATE_VERSION]).encode()).hexdigest()
    return f"{prefix}annotations_cache_{annotator}_{tag[:12]}.json"


def available_annotators() -> list[str]:
    """Names of the annotator configurations shipped with the installed alpaca_eval."""
    root = Path(load_alpaca_eval().constants.EVALUATORS_CONFIG_DIR)
    return sorted(p.parent.name for p in root.glob("*/configs.yaml"))


class _Failed(Exception):
    """Requests of one alpaca_eval call got no reply: the call stores nothing (alpaca_eval
    would store them as unparseable); :func:`_ask_rows` retries its rows one by one."""

    def __init__(self, errors: list[str], n_asked: int) -> None:
        super().__init__(errors[0])
        self.errors, self.n_asked = errors, n_asked


def _completions(answer: Callable[[list[str], dict[str, Any]], list[dict[str, Any]]],
                 memo: dict[str, dict[str, Any]]) -> Callable[..., dict[str, list]]:
    """An alpaca_eval ``fn_completions``: each prompt's choice (``text``; ``error`` when its
    request failed) from ``answer``, each prompt asked once per run (``memo``)."""

    def complete(prompts: Sequence[str], **kwargs: Any) -> dict[str, list]:
        todo = [p for p in dict.fromkeys(prompts) if p not in memo]
        if todo:
            memo.update(zip(todo, answer(todo, kwargs), strict=True))
        choices = [memo[p] for p in prompts]
        if errors := [c["error"] for c in choices if c.get("error")]:
            raise _Failed(errors, len(todo))
        return {"completions": [c["text"] for c in choices], "completions_all": choices,
                "price_per_example": [math.nan] * len(choices),
                "time_per_example": [math.nan] * len(choices)}

    return complete


def _our_answer(judge: Judge) -> Callable[[list[str], dict[str, Any]], list[dict[str, Any]]]:
    """Our annotator's answers: the judge's verdict on each ChatML prompt, as JSON."""
    chatml = load_alpaca_eval().utils.prompt_to_chatml

    def answer(prompts: list[str], kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        del kwargs  # the judge's own settings apply
        results = judge.compare([chatml(p) for p in prompts])
        return [{"text": json.dumps(r.record()), "result": r,
                 "error": r.error if r.status == "error" else None} for r in results]

    return answer


def _alpaca_answer(judge: OpenAIJudge, parser: Any) -> Callable[..., list[dict[str, Any]]]:
    """An AlpacaEval annotator's answers: each ChatML prompt sent through ``judge``."""
    chatml = load_alpaca_eval().utils.prompt_to_chatml
    labels: list[str] = []
    if parser.func.__name__ == "logprob_parser":
        tokens = [parser.keywords.get("numerator_token"),
                  *parser.keywords.get("denominator_tokens", [])]
        labels = [t for t in dict.fromkeys(tokens) if t]

    def answer(prompts: list[str], kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        kwargs = {k: v for k, v in kwargs.items()
                  if k not in ("model_name", "requires_chatml", "price_per_token")}
        return judge.map(lambda p: _chat_choice(judge, chatml(p), kwargs, labels), prompts)

    return answer


def _quiet() -> contextlib.AbstractContextManager[Any]:
    """alpaca_eval's own progress bars and log lines kept off stderr."""
    return contextlib.redirect_stderr(io.StringIO())


def check_annotator(name: str, judge: str | Judge) -> None:
    """Raise :class:`JudgeError` unless ``name`` is ours or an installed AlpacaEval
    annotator, which then needs an OpenAI-compatible ``judge``."""
    spec = judge if isinstance(judge, str) else judge.spec
    if name == OUR_ANNOTATOR:
        return
    if name not in available_annotators():
        raise JudgeError(f"unknown AlpacaEval annotator {name!r}; installed: "
                         f"{', '.join(available_annotators())} (or {OUR_ANNOTATOR!r}, ours)")
    if not spec.startswith("openai:"):
        raise JudgeError(f"AlpacaEval's annotators need an OpenAI-compatible judge "
                         f"('openai:MODEL'), got {spec!r}")


def _annotator(name: str, judge: Judge, cache: Path, seed: int,
               memo: dict[str, dict[str, Any]]) -> Any:
    """alpaca_eval's ``PairwiseAnnotator`` for ``name``, each single annotator's public
    ``fn_completions`` and ``completions_kwargs`` replaced by the judge's."""
    ours = name == OUR_ANNOTATOR
    config = str(CONFIG_DIR / name / "configs.yaml") if ours else name
    cache.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _quiet():
            runner = _pairwise_annotator()(annotators_config=config, caching_path=str(cache),
                                           seed=seed)
    except ValueError as exc:  # pandas' reading of a damaged cache
        raise JudgeError(f"{cache}: not a readable alpaca_eval annotation cache ({exc}); "
                         "move it away to judge again from scratch") from exc
    if runner.df_annotations is not None:  # pandas 3 refuses alpaca_eval's 1.5 for a tie in
        # the int column it reads from a cache of integer preferences: make it float
        runner.df_annotations = runner.df_annotations.astype({"preference": float})
    for single in runner.annotators.values():
        single.completions_kwargs["model_name"] = getattr(judge, "model", judge.spec)
        single.fn_completions = _completions(
            _our_answer(judge) if ours else _alpaca_answer(judge, single.fn_completion_parser),
            memo)
    return runner


def _pairwise_annotator() -> type:
    """alpaca_eval's ``PairwiseAnnotator`` whose public ``save`` (it rewrites the whole cache
    after every call) replaces the file atomically: a run killed mid-write keeps its cache."""
    base = load_alpaca_eval().annotators.PairwiseAnnotator

    class Annotator(base):  # type: ignore[misc, valid-type]
        def save(self, path: Any = None) -> None:
            path = Path(path or self.caching_path)
            part = path.with_name(path.name + ".part")
            super().save(part)
            os.replace(part, path)

    return Annotator


def _ask_rows(runner: Any, rows: list[dict[str, str]]) -> tuple[list[dict], list[str | None], int]:
    """One alpaca_eval call: each row's annotation (``{}`` where none) and error (None when
    answered), and how many requests it sent when all of them failed (else 0)."""
    try:
        with _quiet():
            annotated = runner(rows)
    except _Failed as failed:
        if len(rows) == 1:
            return [{}], [failed.errors[0]], failed.n_asked
        parts = [_ask_rows(runner, [row]) for row in rows]  # the answered ones are stored
        dead = failed.n_asked if len(failed.errors) == failed.n_asked else 0
        return [p[0][0] for p in parts], [p[1][0] for p in parts], dead
    found = {tuple(a[k] for k in _KEYS): a for a in annotated}
    return [found.get(tuple(r[k] for k in _KEYS)) or {} for r in rows], [None] * len(rows), 0


def ask(annotator: str, judge: Judge, rows: list[dict[str, str]], cache: Path, seed: int, *,
        progress: bool = False) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Annotate ``rows`` (``instruction``, ``output_1``, ``output_2``) with ``annotator``: per
    row alpaca_eval's annotation plus ``error`` (why it has none), ``cached`` and, for ours,
    ``result`` (the :class:`JudgeResult`); and the counts ``n_cached`` and ``n_requested``."""
    import pandas as pd
    from tqdm.auto import tqdm

    memo: dict[str, dict[str, Any]] = {}
    runner = _annotator(annotator, judge, cache, seed, memo)
    stored = runner.df_annotations
    known = set() if stored is None else set(stored[list(_KEYS)].itertuples(index=False, name=None))
    concurrency = getattr(judge, "concurrency", 1)
    step = 4 * judge.batch_size if isinstance(judge, HFJudge) else max(8, concurrency)
    first = min(step, concurrency) if concurrency > 1 else step  # a dead judge: one round
    found: list[dict] = []
    errors: list[str | None] = []
    with tqdm(total=len(rows), disable=not progress, desc=f"judging with {judge.spec}",
              unit="judgment", dynamic_ncols=True) as bar:
        while len(found) < len(rows):
            chunk = rows[len(found): len(found) + (step if found else first)]
            got, errs, dead = _ask_rows(runner, chunk)
            found, errors = found + got, errors + errs
            bar.update(len(chunk))
            if dead and len(found) < len(rows):
                stop = (f"not asked: the judge's last {dead} requests all failed "
                        f"(e.g. {next(e for e in errs if e)})")
                errors += [stop] * (len(rows) - len(found))
                found += [{}] * (len(rows) - len(found))
    if annotator == OUR_ANNOTATOR:
        template = next(iter(runner.annotators.values())).prompt_template
        prompts = load_alpaca_eval().utils.make_prompts(pd.DataFrame(rows, columns=list(_KEYS)),
                                                        template)[0] if rows else []
        found = [{**f, "result": _result(f, memo.get(p))} for f, p in zip(found, prompts, strict=True)]
    out = [{**f, "error": e, "cached": tuple(r[k] for k in _KEYS) in known}
           for f, e, r in zip(found, errors, rows, strict=True)]
    return out, {"n_cached": sum(a["cached"] and not a["error"] for a in out),
                 "n_requested": len(memo)}


def _result(found: dict[str, Any], asked: dict[str, Any] | None) -> JudgeResult | None:
    """Our annotator's verdict on one row: as asked in this run, else as stored."""
    if found and found["output_1"] == found["output_2"]:  # alpaca_eval: a tie, never asked
        return JudgeResult(label="tie", status="ok", method="identical")
    if asked is not None:
        return asked["result"]
    raw = found.get("preference_raw_completion")
    if isinstance(raw, str):
        record = json.loads(raw)
        record.pop("preference", None)
        return JudgeResult(**record, cached=True)
    # alpaca_eval stores an unparseable reply as a missing annotation, without the reply
    return JudgeResult(label=None, status="unparseable", cached=True) if found else None


def is_switched(instruction: str, seed: int) -> bool:
    """Whether alpaca_eval showed output_2 first for ``instruction`` (its seeded
    ``RandomSwitchTwoColumnsProcessor`` rule, which it applies and does not return)."""
    utils = load_alpaca_eval().utils
    return bool(utils.random_seeded_choice(seed="is_switched_outputs" + instruction + str(seed),
                                           choices=[False, True]))


def _alpaca_annotation(row: dict[str, Any], found: dict[str, Any], annotator: str, judge: str,
                       seed: int) -> dict[str, Any]:
    pref = preference(found.get("preference"), f"alpaca_eval: {row['instruction'][:60]!r}")
    raw = found.get("preference_raw_completion")
    flags = raw if isinstance(raw, dict) else {}
    method = "restricted" if flags.get("restricted") else "logprobs" if flags.get("logprobs") \
        else "text"
    return {
        **row, "preference": pref,
        "annotator": annotator, "judge": judge, "raw_completion": raw,
        "status": "error" if found.get("error") else "ok" if pref is not None else "unparseable",
        "judgments": [{"method": method, "preference": pref}],
        "is_switched_outputs": is_switched(row["instruction"], seed),
        **({"error": found["error"]} if found.get("error") else {}),
    }


def _chat_choice(judge: OpenAIJudge, messages: list[dict], kwargs: dict[str, Any],
                 labels: list[str]) -> dict[str, Any]:
    """One chat completion as alpaca_eval's dict, asked again restricted to ``labels`` when
    the top log-probabilities of its first token (all ``logprob_parser`` reads) hold none."""

    def labelled(content: list[Any]) -> bool:
        return not labels or any(t.token in labels for t in
                                 (content[0].top_logprobs or [] if content else []))

    try:
        reply, again = judge.chat_labels(messages, labels, labelled, **kwargs)
    except judge._openai.OpenAIError as exc:  # this item fails; alpaca_eval records none
        return {"text": "", "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    if again is not None:
        return {**again.choices[0].model_dump(), "text": again.choices[0].message.content or " ",
                "restricted": True}
    choice, message = reply.choices[0].model_dump(), reply.choices[0].message
    choice["text"] = (message.tool_calls[0].function.arguments if message.tool_calls
                      else message.content or " ")
    return choice
