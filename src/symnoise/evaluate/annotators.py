"""AlpacaEval's own annotators (prompts, parsers, order randomisation, preference
processing) through the alpaca_eval package, against any OpenAI-compatible endpoint.

The annotator's configuration is alpaca_eval's, except where requests go: its model name
becomes the judge's and its completion function sends each ChatML prompt through an
:class:`~symnoise.evaluate.openai_judge.OpenAIJudge` (same ``base_url``, retries and
concurrency as our own prompt). For annotators parsed from log-probabilities
(``logprob_parser``), a reply whose top log-probabilities hold no label token is asked
again restricted to the label tokens; text-parsed annotators keep alpaca_eval's parsers,
and what they cannot parse is counted as unparseable.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .judge import OutputsSource, _Pair, make_judge, prepare, write_results
from .judge_prompts import JudgeError
from .openai_judge import OpenAIJudge
from .winrate import OUR_ANNOTATOR, JudgeReport, load_alpaca_eval

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
        with concurrent.futures.ThreadPoolExecutor(max_workers=judge.concurrency) as pool:
            choices = list(pool.map(lambda p: _chat_choice(judge, utils.prompt_to_chatml(p),
                                                           kwargs, labels), prompts))
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
    if labels and not any(t.get("token") in labels for t in tops):
        ids = judge.single_token_ids(labels)
        if ids:
            again = judge.chat(messages, **{**kwargs, "max_tokens": 1,
                                            "logit_bias": {str(i): 100 for i in ids}})
            choice = again.choices[0].model_dump()
            choice["text"] = again.choices[0].message.content or " "
            choice["restricted"] = True
    return choice


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


def annotate_rows(annotator: str, judge: OpenAIJudge, cache: Path, seed: int,
                  rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    """alpaca_eval's annotation of each row (``instruction``, ``output_1``, ``output_2``),
    in order; ``{}`` where it gave none. Closes ``judge``."""
    try:
        runner = _pairwise_annotator(annotator, judge, cache, seed)
        annotated = runner.annotate_pairs(rows) if rows else []
    finally:
        judge.close()
    found = {(a["instruction"], a["output_1"], a["output_2"]): a for a in annotated}
    return [found.get((r["instruction"], r["output_1"], r["output_2"])) or {} for r in rows]


def openai_judge(judge: str, base_url: str | None, **options: Any) -> OpenAIJudge:
    """The ``openai:MODEL`` judge that answers AlpacaEval's prompts."""
    if not judge.startswith("openai:"):
        raise JudgeError(f"AlpacaEval's annotators need an OpenAI-compatible judge "
                         f"('openai:MODEL'), got {judge!r}")
    judge_obj = make_judge(judge, base_url, **options)
    assert isinstance(judge_obj, OpenAIJudge)
    return judge_obj


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
    judge_obj = openai_judge(judge, base_url, max_retries=max_retries,
                             concurrency=concurrency, max_tokens=16)
    rows = [{"instruction": p.instruction, "output_1": p.reference["output"],
             "output_2": p.model["output"]} for p in inputs.pairs]
    found = annotate_rows(annotator, judge_obj, inputs.out_dir / ALPACA_EVAL_CACHE, seed, rows)
    annotations = [_annotation(p, f, annotator=annotator, judge=judge,
                               model_name=inputs.model_name,
                               reference_name=inputs.reference_name, seed=seed)
                   for p, f in zip(inputs.pairs, found, strict=True)]
    return write_results(inputs, annotations, judge=judge, annotator=annotator,
                         n_judgments=len(rows), n_requested=judge_obj.n_requests, seed=seed,
                         template=f"alpaca_eval:{annotator}")


def is_switched(instruction: str, seed: int) -> bool:
    """Whether alpaca_eval showed output_2 first for ``instruction`` (its seeded
    ``RandomSwitchTwoColumnsProcessor`` rule, which it applies and does not return)."""
    utils = load_alpaca_eval().utils
    return bool(utils.random_seeded_choice(seed="is_switched_outputs" + instruction + str(seed),
                                           choices=[False, True]))


def _annotation(pair: _Pair, found: dict[str, Any], *, annotator: str, judge: str,
                model_name: str, reference_name: str, seed: int) -> dict[str, Any]:
    pref = found.get("preference")
    pref = float(pref) if pref is not None and pref == pref else None  # NaN: no annotation
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
