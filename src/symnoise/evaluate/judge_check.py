"""Measure a judge before trusting it: accuracy on pairs whose better side is known (a
real answer against the answer to another instruction, ``other``, or against itself cut to
its first 10 words, ``truncated``), each judged in both orders, measured in the mode the
judge will be used in (per verdict, or order-averaged): README, judge-check.
"""

from __future__ import annotations

import os
import random
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._io import write_json_atomic
from ..outputs import full_instruction, preference
from .judge import ask, cache_file, check_annotator, is_switched, load_outputs, open_judge
from .judge_prompts import Judge
from .stats import wilson_interval
from .winrate import OUR_ANNOTATOR

__all__ = ["THRESHOLDS", "JUDGE_CHECK_FILE", "build_check_pairs", "run_judge_check",
           "summarize_check", "format_judge_check"]

JUDGE_CHECK_FILE = "judge_check.json"
TRUNCATE_WORDS = 10
THRESHOLDS = {"min_accuracy_ci_low": 0.70, "position_bias_range": (0.35, 0.65),
              "max_unparseable_share": 0.05}


def build_check_pairs(rows: Sequence[Mapping[str, Any]], n: int, seed: int = 0
                      ) -> list[dict[str, Any]]:
    """``n`` known pairs (``instruction``, ``good``, ``bad``, ``kind``) from reference rows;
    ValueError when the set cannot give ``n`` pairs."""
    rows = [r for r in rows if r["output"].strip()]
    if len(rows) < 2:
        raise ValueError(f"a judge check needs at least 2 reference answers, got {len(rows)}")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    long_enough = [i for i in order if len(rows[i]["output"].split()) > TRUNCATE_WORDS]
    n_truncated = min(n // 2, len(long_enough))
    n_other = n - n_truncated
    if n_other > len(order):
        raise ValueError(f"asked for {n} pairs, the reference set gives at most "
                         f"{len(order) + len(long_enough)}")
    pairs = []
    for k in range(n_other):
        i, j = order[k], order[(k + 1) % len(order)]
        pairs.append({"instruction": full_instruction(rows[i]), "good": rows[i]["output"],
                      "bad": rows[j]["output"], "kind": "other"})
    for i in long_enough[:n_truncated]:
        cut = " ".join(rows[i]["output"].split()[:TRUNCATE_WORDS])
        pairs.append({"instruction": full_instruction(rows[i]), "good": rows[i]["output"],
                      "bad": cut, "kind": "truncated"})
    random.Random(seed + 1).shuffle(pairs)
    return pairs


def summarize_check(pairs: Sequence[Mapping[str, Any]], p_first: Sequence[float | None],
                    *, judge: str, annotator: str, both_orders: bool = False) -> dict[str, Any]:
    """The check's numbers from ``p_first`` of the judgments (two per pair: good shown
    first, then good shown second); ``both_orders``: the mode the judge will be used in."""
    if len(p_first) != 2 * len(pairs):
        raise ValueError(f"expected {2 * len(pairs)} judgments, got {len(p_first)}")
    # (pair, P(first shown is better), P(good is better)): even judgments show good first
    seen = [(pairs[k // 2], p, p if k % 2 == 0 else 1.0 - p)
            for k, p in enumerate(p_first) if p is not None]
    judged, correct = len(seen), sum(good > 0.5 for _, _, good in seen)
    averaged = [(p_first[2 * i] + 1.0 - p_first[2 * i + 1]) / 2 for i in range(len(pairs))
                if p_first[2 * i] is not None and p_first[2 * i + 1] is not None]
    first_wins = sum(first > 0.5 for _, first, _ in seen)
    longer_wins = sum((good > 0.5) if len(pair["good"]) > len(pair["bad"]) else (good < 0.5)
                      for pair, _, good in seen)
    by_kind = {kind: statistics.fmean(good > 0.5 for pair, _, good in seen if pair["kind"] == kind)
               for kind in sorted({pair["kind"] for pair, _, _ in seen})}
    n_unparseable = len(p_first) - judged
    result: dict[str, Any] = {
        "judge": judge, "annotator": annotator, "n_pairs": len(pairs),
        "n_judgments": len(p_first), "n_unparseable": n_unparseable,
        "unparseable_share": n_unparseable / len(p_first) if p_first else 0.0,
        "mode": "order-averaged" if both_orders else "per verdict",
        "accuracy": None, "accuracy_ci": None, "position_bias": None, "longer_wins": None,
        "accuracy_by_kind": by_kind,
        **_accuracy("per_verdict", correct, judged),
        **_accuracy("order_averaged", sum(p > 0.5 for p in averaged), len(averaged)),
        "thresholds": THRESHOLDS, "usable": False,
    }
    if judged:
        mode = "order_averaged" if both_orders else "per_verdict"
        result.update(accuracy=result[f"accuracy_{mode}"],
                      accuracy_ci=result[f"accuracy_{mode}_ci"],
                      position_bias=first_wins / judged, longer_wins=longer_wins / judged)
        low, high = THRESHOLDS["position_bias_range"]
        result["usable"] = bool(result["accuracy_ci"] is not None
                                and result["accuracy_ci"][0] >= THRESHOLDS["min_accuracy_ci_low"]
                                and (both_orders or low <= result["position_bias"] <= high)
                                and result["unparseable_share"]
                                <= THRESHOLDS["max_unparseable_share"])
    return result


def _accuracy(name: str, correct: int, n: int) -> dict[str, Any]:
    """``accuracy_NAME``, its 95% Wilson interval and its n (None without verdicts)."""
    return {f"accuracy_{name}": correct / n if n else None,
            f"accuracy_{name}_ci": list(wilson_interval(correct, n)) if n else None,
            f"accuracy_{name}_n": n}


def run_judge_check(judge: str | Judge,
                    reference_outputs: str | os.PathLike[str] | Sequence[Mapping[str, Any]], *,
                    base_url: str | None = None, annotator: str = OUR_ANNOTATOR, n: int = 60,
                    seed: int = 0, output_dir: str | os.PathLike[str] | None = None,
                    judge_options: dict[str, Any] | None = None, progress: bool = False,
                    both_orders: bool = False) -> dict[str, Any]:
    """Judge ``n`` known pairs in both orders through the judge's pipeline
    (:func:`~.judge.ask`); return the check's numbers and write them to ``output_dir``
    (``judge_check.json``, beside the cache) when given. both_orders: the judge will be used
    judging both orders and averaging them: measure it so."""
    import tempfile

    if n < 2:
        raise ValueError(f"a judge check needs n >= 2 pairs, got {n}")
    check_annotator(annotator, judge)
    pairs = build_check_pairs(load_outputs(reference_outputs, what="reference outputs"), n, seed)
    rows = [{"instruction": p["instruction"], "output_1": first, "output_2": second}
            for p in pairs for first, second in ((p["good"], p["bad"]), (p["bad"], p["good"]))]
    with open_judge(judge, base_url, **(judge_options or {})) as judge_obj, \
            tempfile.TemporaryDirectory() as tmp:
        cache = Path(output_dir or tmp) / cache_file(annotator, judge_obj.spec, "judge_check_")
        found, _ = ask(annotator, judge_obj, rows, cache, 0, progress=progress)
    p_first: list[float | None] = []  # P(the output shown first is better)
    for i, (row, a) in enumerate(zip(rows, found, strict=True)):
        if (pref := preference(a.get("preference"), f"judge check: question {i}")) is None:
            p_first.append(None)
            continue
        p_output_1 = 2.0 - pref  # preference 1: output_1 better
        switched = annotator != OUR_ANNOTATOR and is_switched(row["instruction"], 0)
        p_first.append(1.0 - p_output_1 if switched else p_output_1)
    result = summarize_check(pairs, p_first, judge=judge_obj.spec, annotator=annotator,
                             both_orders=both_orders)
    if output_dir is not None:
        write_json_atomic(Path(output_dir) / JUDGE_CHECK_FILE, result)
    return result


def format_judge_check(check: Mapping[str, Any]) -> str:
    """One line to print beside a win-rate table."""
    low, high = check["thresholds"]["position_bias_range"]
    rule = (f"needs accuracy CI low >= {100 * check['thresholds']['min_accuracy_ci_low']:.0f}%, "
            f"position bias {100 * low:.0f}-{100 * high:.0f}%, unparseable <= "
            f"{100 * check['thresholds']['max_unparseable_share']:.0f}%")
    head = f"judge check ({check['judge']}, {check['annotator']}): "
    if check.get("accuracy") is None:
        return head + f"no verdicts on {check['n_pairs']} pairs: NOT USABLE ({rule})"
    ci, mode = check["accuracy_ci"], check.get("mode", "per verdict")
    if mode == "order-averaged":
        rule = rule.split(", position bias")[0] + rule[rule.index(", unparseable"):]
        pv, pv_ci = check["accuracy_per_verdict"], check["accuracy_per_verdict_ci"]
        head += f"per verdict {100 * pv:.1f}% [{100 * pv_ci[0]:.1f}, {100 * pv_ci[1]:.1f}]; "
    return (head + f"accuracy ({mode}) {100 * check['accuracy']:.1f}% [{100 * ci[0]:.1f}, "
            f"{100 * ci[1]:.1f}] on {check['n_pairs']} known pairs x 2 orders, position bias "
            f"{100 * check['position_bias']:.0f}% first, longer wins "
            f"{100 * check['longer_wins']:.0f}%, unparseable {check['n_unparseable']}/"
            f"{check['n_judgments']}: {'usable' if check['usable'] else 'NOT USABLE'} ({rule})")
