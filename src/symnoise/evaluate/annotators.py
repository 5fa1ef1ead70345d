"""AlpacaEval's own annotators (their prompts, parsers, output-order randomisation and
preference processing), run through the alpaca_eval package against any
OpenAI-compatible endpoint.

``annotate(model_outputs, reference_outputs, annotator="weighted_alpaca_eval_gpt4_turbo",
judge="openai:MODEL", base_url=...)`` loads the annotator's configuration from alpaca_eval
(:class:`alpaca_eval.annotators.PairwiseAnnotator`), keeps everything in it except where
requests go: the configuration's model name is replaced by ``MODEL`` and its completion
function by one that sends each ChatML prompt through the official ``openai`` client of an
:class:`~symnoise.evaluate.openai_judge.OpenAIJudge` (so ``base_url``, retries, timeouts and
concurrency are the same as for our own prompt). For annotators parsed from
log-probabilities (``logprob_parser``, e.g. ``weighted_alpaca_eval_gpt4_turbo``), a reply
whose top log-probabilities hold neither label token is asked again restricted to the label
tokens (logit bias), so the verdict does not go missing. Text-parsed annotators
(``alpaca_eval_gpt4``'s ranking, ``chatgpt_fn``'s function call) keep alpaca_eval's parsers:
what they cannot parse is counted as unparseable and printed.

The annotations and leaderboard carry the annotator's name; the length-controlled win rate
is the offline variant (:mod:`symnoise.evaluate.winrate`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._alpaca_eval import load_alpaca_eval
from .judge import (
    OUR_ANNOTATOR,
    OutputsSource,
    _generator_name,
    load_outputs,
    make_judge,
    pair_outputs,
    write_results,
)
from .judge_report import JudgeReport, build_report
from .judge_types import JudgeError
from .openai_judge import OpenAIJudge

__all__ = ["PAPER_ANNOTATORS", "available_annotators", "annotate", "run_judge", "ALPACA_EVAL_CACHE"]

# The paper's GPT-4 judge (Table 1), its ChatGPT judge (Tables 2, 3), AlpacaEval 2's default.
PAPER_ANNOTATORS = ("alpaca_eval_gpt4", "chatgpt_fn", "weighted_alpaca_eval_gpt4_turbo")
ALPACA_EVAL_CACHE = "alpaca_eval_annotator_cache.json"


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
        choices = list(judge_pool(judge, [utils.prompt_to_chatml(p) for p in prompts],
                                  kwargs, labels))
        per = (time.monotonic() - start) / max(1, len(prompts))
        return {"completions": [c["text"] for c in choices], "completions_all": choices,
                "price_per_example": [float("nan")] * len(choices),
                "time_per_example": [per] * len(choices)}

    return complete


def judge_pool(judge: OpenAIJudge, conversations: list[list[dict]], kwargs: dict[str, Any],
               labels: list[str]) -> list[dict[str, Any]]:
    """One chat completion per conversation (``judge.concurrency`` at a time), as dicts."""
    import concurrent.futures

    def one(messages: list[dict]) -> dict[str, Any]:
        return _chat_choice(judge, messages, kwargs, labels)

    with concurrent.futures.ThreadPoolExecutor(max_workers=judge.concurrency) as pool:
        return list(pool.map(one, conversations))


def _chat_choice(judge: OpenAIJudge, messages: list[dict], kwargs: dict[str, Any],
                 labels: list[str]) -> dict[str, Any]:
    openai = judge._openai
    try:
        reply = judge.client.chat.completions.create(model=judge.model, messages=messages,
                                                     **kwargs)
    except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as e:
        raise JudgeError(f"judge endpoint {judge.url} answered HTTP {e.status_code} for model "
                         f"{judge.model!r}: {e}") from e
    except openai.OpenAIError as exc:  # this item fails; alpaca_eval records no annotation
        return {"text": "", "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    choice = reply.choices[0].model_dump()
    message = reply.choices[0].message
    tool_calls = message.tool_calls or []
    choice["text"] = tool_calls[0].function.arguments if tool_calls else (message.content or " ")
    if labels and not _has_label(choice, labels):
        ids = {i for text in labels if len(t := judge.tokenize(text) or []) == 1 for i in t}
        if ids:
            again = judge.client.chat.completions.create(
                model=judge.model, messages=messages,
                **{**kwargs, "max_tokens": 1, "logit_bias": {str(i): 100 for i in ids}})
            choice = again.choices[0].model_dump()
            choice["text"] = again.choices[0].message.content or " "
            choice["restricted"] = True
    return choice


def _has_label(choice: dict[str, Any], labels: list[str]) -> bool:
    content = (choice.get("logprobs") or {}).get("content") or []
    return bool(content) and any(t.get("token") in labels for t in content[0].get("top_logprobs")
                                 or [])


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
    root = logging.getLogger()
    level = root.level
    try:
        return Annotator(annotators_config=name, caching_path=str(cache), seed=seed)
    finally:
        root.setLevel(level)


def annotate(
    model_outputs: OutputsSource,
    reference_outputs: OutputsSource,
    *,
    annotator: str,
    judge: str,
    output_dir: str | os.PathLike[str],
    base_url: str | None = None,
    seed: int = 0,
    max_items: int | None = None,
    max_retries: int = 5,
    concurrency: int = 4,
    name: str | None = None,
) -> JudgeReport:
    """Judge model outputs against references with AlpacaEval's annotator ``annotator``.

    judge: ``openai:MODEL``, the model that answers AlpacaEval's prompts (e.g.
    ``openai:gpt-4`` for the paper's ``alpaca_eval_gpt4``). Writes ``annotations.json``,
    ``leaderboard.json`` and ``leaderboard.md`` in ``output_dir`` (alpaca_eval's own cache
    of annotations goes to ``alpaca_eval_annotator_cache.json`` there).
    """
    if not judge.startswith("openai:"):
        raise JudgeError(f"AlpacaEval's annotators need an OpenAI-compatible judge "
                         f"('openai:MODEL'), got {judge!r}")
    model_rows = load_outputs(model_outputs, what="model outputs")
    reference_rows = load_outputs(reference_outputs, what="reference outputs")
    pairs, n_unmatched = pair_outputs(model_rows, reference_rows)
    pairs = pairs[:max_items] if max_items is not None else pairs
    model_name = name or _generator_name(model_rows, "model")
    reference_name = _generator_name(reference_rows, "reference")
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    judge_obj = make_judge(judge, base_url, max_retries=max_retries, concurrency=concurrency,
                           max_tokens=16)
    assert isinstance(judge_obj, OpenAIJudge)
    to_annotate = [{"instruction": p.instruction, "output_1": p.reference["output"],
                    "output_2": p.model["output"]} for p in pairs]
    try:
        runner = _pairwise_annotator(annotator, judge_obj, out_dir / ALPACA_EVAL_CACHE, seed)
        annotated = runner.annotate_pairs(to_annotate) if to_annotate else []
    finally:
        judge_obj.close()
    found = {(a["instruction"], a["output_1"], a["output_2"]): a for a in annotated}
    annotations = [_annotation(p, found.get((p.instruction, p.reference["output"],
                                             p.model["output"])) or {},
                               annotator=annotator, judge=judge, model_name=model_name,
                               reference_name=reference_name, seed=seed) for p in pairs]
    report = build_report(annotations, name=model_name, reference_name=reference_name,
                          judge=judge, annotator=annotator, n_judgments=len(pairs),
                          n_requested=judge_obj.n_requests, n_unmatched_references=n_unmatched,
                          seed=seed, template=f"alpaca_eval:{annotator}")
    return write_results(report, annotations, out_dir)


def is_switched(instruction: str, seed: int) -> bool:
    """Whether alpaca_eval showed output_2 first for ``instruction``: its own seeded rule
    (``RandomSwitchTwoColumnsProcessor``, switch column ``is_switched_outputs``), which it
    applies and drops without returning it."""
    utils = load_alpaca_eval().utils
    return bool(utils.random_seeded_choice(seed="is_switched_outputs" + instruction + str(seed),
                                           choices=[False, True]))


def _annotation(pair: Any, found: dict[str, Any], *, annotator: str, judge: str,
                model_name: str, reference_name: str, seed: int) -> dict[str, Any]:
    pref = found.get("preference")
    ok = pref is not None and pref == pref  # NaN is alpaca_eval's "no annotation"
    raw = found.get("preference_raw_completion")
    method = "restricted" if isinstance(raw, dict) and raw.get("restricted") else (
        "logprobs" if isinstance(raw, dict) and raw.get("logprobs") else "text")
    return {
        "instruction": pair.instruction, "output_1": pair.reference["output"],
        "output_2": pair.model["output"],
        "generator_1": pair.reference.get("generator") or reference_name,
        "generator_2": pair.model.get("generator") or model_name,
        "dataset": pair.dataset, "preference": float(pref) if ok else None,
        "annotator": annotator, "judge": judge, "raw_completion": raw,
        "status": "ok" if ok else "unparseable",
        "judgments": [{"method": method, "preference": float(pref) if ok else None}],
        "is_switched_outputs": is_switched(pair.instruction, seed),
    }


def run_judge(model_outputs: OutputsSource, reference_outputs: OutputsSource, *,
              annotator: str = OUR_ANNOTATOR, judge: str, output_dir: str | os.PathLike[str],
              **options: Any) -> JudgeReport:
    """Judge with ``annotator``: ours (``symnoise-pairwise``, any judge spec) through
    :func:`symnoise.evaluate.judge.judge_outputs`, else AlpacaEval's through :func:`annotate`
    (options it does not take, such as ``both_orders``, raise)."""
    if annotator == OUR_ANNOTATOR:
        from .judge import judge_outputs

        return judge_outputs(model_outputs, reference_outputs, judge=judge,
                             output_dir=output_dir, **options)
    if options.pop("both_orders", False):
        raise JudgeError("--both-orders applies to symnoise-pairwise; AlpacaEval's annotators "
                         "randomise the order themselves")
    options.pop("progress", None)
    return annotate(model_outputs, reference_outputs, annotator=annotator, judge=judge,
                    output_dir=output_dir, **options)
