"""Evaluate one run folder end to end (``symnoise eval RUN_DIR``): a pipeline of steps.

:func:`evaluate_run` runs these steps (:mod:`symnoise.experiments.eval_steps`) on a finished
training run, in this order, writing into ``RUN/eval/`` (file names by role:
:data:`symnoise.run.EVAL_FILES`):

``generate``
    answers the prompts (``prompts``, e.g. AlpacaEval's file, or the synthetic held-out
    split) the paper's way (greedy, repetition penalty 1.2) into ``outputs``.
``stats``
    response length, n-gram repetition and log-diversity of the outputs, and of the training
    data's responses when the run trained on a local file.
``synthetic`` (``synthetic=True``)
    exact-answer score on the synthetic held-out split with a 95% Wilson interval
    (``synthetic_scores``, ``synthetic_items``): the answers of ``generate`` when the prompts
    are that split, else the split answered separately (``synthetic_outputs``).
``heldout`` (``heldout=True``)
    the clean loss of every example of the held-out set training measured (``heldout_losses``).
``preference`` (preference runs: ``stage`` other than ``sft``)
    held-out preference accuracy and reward margin, per pair (``preference_pairs``); a
    preference run's ``heldout`` step is unavailable (its held-out pairs are measured here).
``judge``, ``judge_check`` (with ``judge``)
    the pairwise win rate against reference outputs (folder ``judge``), and how well the
    judge separates known better answers from worse ones (``judge_check``).
``harness`` (with ``harness_tasks``)
    lm-evaluation-harness tasks (``harness``).

One rule, in :func:`_run_step`, decides for every step: a step whose result files exist and
whose recorded key (``steps``) equals its key now is skipped; otherwise it runs. When only
the number of prompts changed, generation resumes and keeps the answers it has; other
changes start over. ``summary`` (JSON and Markdown) gathers the results.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._io import write_text_atomic
from ..evaluate.stats import PRESETS, words_for
from ..run import RunFolder, run_dataset, run_setting
from .eval_steps import STEPS, EvalPlan, Step, StepUnavailable, reference_source

__all__ = ["STEPS", "EvalPlan", "Step", "StepUnavailable", "evaluate_run", "format_eval_summary",
           "run_dataset", "run_setting"]

DEFAULT_PROMPTS = "synthetic:heldout"
DEFAULT_WORDS = 50


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _normal(data: Any) -> Any:
    return json.loads(json.dumps(data, sort_keys=True, default=str))


def _read_steps(run: RunFolder) -> dict[str, Any]:
    """The ``steps`` record: for each finished step, the key it was computed from."""
    try:
        data = run.read_eval_json("steps")
    except ValueError:
        data = None  # a torn record only costs recomputation
    return data if isinstance(data, dict) else {}


def _run_step(step: Step, plan: EvalPlan, steps: dict[str, Any], head: str) -> tuple[str, Any]:
    """The one skip-if-done rule: returns ``(state, summary section)``."""
    key, entry = _normal(step.key(plan)), steps.get(step.name)
    entry = entry if isinstance(entry, dict) else {}
    if (entry.get("status") == "complete" and entry.get("key") == key
            and all(f.is_file() for f in step.files(plan)) and step.complete(plan)):
        plan.say(f"{head}: complete, skipped")
        plan.records[step.name] = entry
        return "skipped (complete)", step.summary(plan)
    previous = entry.get("key")
    restart = isinstance(previous, dict) and any(
        previous.get(k) != v for k, v in key.items() if k not in step.resumable)
    plan.say(f"{head}: running" + (" (settings changed: starting over)" if restart else ""))
    try:
        extra = step.run(plan, restart) or {}
    except StepUnavailable as exc:
        plan.say(f"{head}: not available: {exc}")
        return f"unavailable: {exc}", {"unavailable": str(exc)}
    steps[step.name] = plan.records[step.name] = {"status": "complete", "key": key,
                                                  "finished": _now(), **_normal(extra)}
    plan.run.write_eval_json("steps", steps)
    return "ran", step.summary(plan)


def _check_run(run: RunFolder) -> dict[str, Any]:
    info = run.read_info(required=True)
    status = info.get("status")
    if status != "completed":
        raise ValueError(f"{run.path}: the run's status is {status!r}, not 'completed'; finish "
                         "the training (symnoise train --resume) before evaluating it")
    if not run.has_model():
        raise FileNotFoundError(f"{run.path}: no saved model (config.json) in the run folder")
    return info


def _words(words: int | str | None, dataset: str) -> tuple[int, str]:
    if words is not None:
        return words_for(words), f"words={words}"
    if dataset in PRESETS:
        return PRESETS[dataset], f"the paper's setting for {dataset}"
    return DEFAULT_WORDS, f"default ({dataset} has no preset)"


def evaluate_run(
    run_dir: str | os.PathLike[str], *, prompts: str | os.PathLike[str] | None = None,
    n_prompts: int | None = None, ignore_fields: str | list[str] | None = None,
    max_new_tokens: int = 256, batch_size: int = 16, judge: str | None = None, base_url: str | None = None,
    reference: str | os.PathLike[str] | None = None, both_orders: bool = False,
    harness_tasks: str | list[str] | None = None,
    include_path: str | os.PathLike[str] | None = None,
    harness_limit: int | float | None = None, words: int | str | None = None,
    synthetic: bool = True, progress: bool = True, synthetic_n: int | None = None,
    heldout: bool = True, judge_check: bool = True, device: str | None = None,
    eval_data: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Run the evaluation steps on a run folder and write ``RUN/eval/`` (module docstring).

    Args:
        run_dir: a finished run folder (``run.json`` with status ``completed`` and the model).
        prompts: the prompt set (a JSON/JSONL file such as AlpacaEval's, ``alpaca_eval``
            from the Hub, or ``synthetic:heldout``, the default).
        n_prompts: answer only the first N prompts (also the size of the synthetic
            held-out evaluation unless ``synthetic_n`` is given).
        ignore_fields: prompt-row fields to drop on purpose (any other field no prompt
            shape reads stops the evaluation before it starts).
        max_new_tokens, batch_size: generation settings (greedy, repetition penalty 1.2).
        judge, base_url, reference, both_orders: the win-rate step
            (:func:`symnoise.evaluate.judge.judge_outputs`); skipped without ``judge``.
        harness_tasks, include_path, harness_limit: the lm-evaluation-harness step;
            skipped without ``harness_tasks``.
        words: leading words for repetition/diversity (a number or a dataset preset);
            default the paper's for the run's dataset (50 for unknown ones).
        synthetic: run the synthetic exact-answer step. synthetic_n: its prompt count
            when the prompts are not that split (default ``n_prompts`` up to the split's
            240, else the whole split); when they are, the answers of step 1 are scored.
        heldout: measure the clean loss of every held-out example.
        judge_check: with ``judge``, check the judge on pairs whose better side is known.
        progress: progress bars and one line per step on stderr.
        device: where the model runs (``cpu``, ``cuda:1``, ...); None: cuda when available.
        eval_data: a preference run's file of pairs to measure in place of its held-out split.

    Returns the summary (also written to ``summary``). Raises FileNotFoundError (no run
    folder, model or reference), ValueError (unfinished run, bad settings, prompts without
    reference outputs for the judge) before any step runs, and RunLockedError when another
    process (a training or an evaluation) holds the run folder's lock.
    """
    run = RunFolder(Path(run_dir).expanduser().resolve())
    info = _check_run(run)
    from ..decoding import check_count

    check_count("n_prompts", n_prompts, optional=True)
    check_count("synthetic_n", synthetic_n, optional=True)
    check_count("max_new_tokens", max_new_tokens)
    check_count("batch_size", batch_size)
    if (base_url or reference is not None or both_orders) and not judge:
        raise ValueError("--base-url, --reference-outputs and --both-orders need --judge")
    if (include_path is not None or harness_limit is not None) and not harness_tasks:
        raise ValueError("--include-path and --limit-per-task need --tasks")
    if eval_data is not None and (info.get("config") or {}).get("stage", "sft") == "sft":
        raise ValueError("--eval-data is for preference runs (a run.json stage other than sft)")
    n_words, words_from = _words(words, run_dataset(info))
    source: Any = DEFAULT_PROMPTS if prompts is None else (
        os.fspath(prompts) if isinstance(prompts, os.PathLike) else prompts)

    from ..generate import load_prompts

    prompt_set = load_prompts(source, limit=n_prompts, ignore_fields=ignore_fields)
    plan = EvalPlan(run=run, info=info, prompts=source, n_prompts=n_prompts,
                    ignore_fields=ignore_fields, source_name=prompt_set.source,
                    n=len(prompt_set.prompts), max_new_tokens=max_new_tokens,
                    batch_size=batch_size, n_words=n_words, words_from=words_from,
                    synthetic_n=synthetic_n, judge=judge, base_url=base_url,
                    reference=reference_source(reference, source) if judge else None,
                    both_orders=both_orders, harness_tasks=harness_tasks,
                    include_path=include_path, harness_limit=harness_limit, progress=progress,
                    device=device, eval_data=None if eval_data is None else os.fspath(eval_data))
    wanted = {"synthetic": synthetic, "heldout": heldout, "preference": plan.preference,
              "judge": bool(judge),
              "judge_check": bool(judge) and judge_check, "harness": bool(harness_tasks)}
    with run.lock("symnoise eval") as note:  # one writer per run folder (train or eval)
        if note:
            plan.say(note)
        return _run_pipeline(plan, [s for s in STEPS if wanted.get(s.name, True)])


def _run_pipeline(plan: EvalPlan, todo: list[Step]) -> dict[str, Any]:
    plan.run.eval_dir.mkdir(parents=True, exist_ok=True)
    steps = _read_steps(plan.run)
    plan.say(f"evaluating {plan.run.path} ({run_dataset(plan.info)}, "
             f"{run_setting(plan.info).get('method', '?')}): {', '.join(s.name for s in todo)}")
    steps_here = [s for s in STEPS if plan.preference or s.name != "preference"]
    state = {s.name: "not requested" for s in steps_here}
    sections: dict[str, Any] = {s.section: None for s in steps_here}
    for i, step in enumerate(todo, start=1):
        state[step.name], sections[step.section] = _run_step(
            step, plan, steps, f"[{i}/{len(todo)}] {step.name}")
        for label, value in _result_rows({step.section: sections[step.section]}):
            plan.say(f"  {label}: {value}")
    summary = _summary(plan, sections, state, todo)
    plan.run.write_eval_json("summary", summary)
    write_text_atomic(plan.file("summary_md"), _summary_markdown(summary))
    plan.say(f"done: {plan.file('summary_md')}")
    return summary


def _summary(plan: EvalPlan, sections: Mapping[str, Any], state: Mapping[str, str],
             ran: list[Step]) -> dict[str, Any]:
    info, run = plan.info, plan.run
    roles = ["outputs", "stats", "steps", "summary", "summary_md"]
    roles += [r for s in ran if s.name not in ("generate", "stats") for r in s.roles]
    names = {"summary": "summary_json", "judge": "judge_dir"}
    return {"run_dir": str(run.path), "name": run.path.name, "model": plan.config.get("model"),
            "dataset": run_dataset(info), **run_setting(info),
            "train_loss": info.get("train_loss"),
            "final_clean_eval_loss": info.get("final_clean_eval_loss"),
            "prompts": {"source": plan.source_name, "n": plan.n},
            "generation": sections.get("generation") or {},
            **{k: v for k, v in sections.items() if k != "generation"},
            "steps": dict(state), "files": {names.get(r, r): str(plan.file(r)) for r in roles},
            "finished": _now()}


def fmt_num(value: Any, fmt: str, scale: float = 1.0) -> str:
    """``value * scale`` formatted, or ``-`` when it is not a number."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return format(value if scale == 1 else value * scale, fmt) if ok else "-"


def _pct(value: Any) -> str:
    text = fmt_num(value, ".2f")
    return text if text == "-" else f"{text} %"


def _stats_rows(st: Mapping[str, Any]) -> list[tuple[str, str]]:
    out, td = st.get("outputs") or {}, st.get("train_data") or {}
    rows = [("output length", f"{fmt_num(out.get('avg_chars'), '.1f')} chars, "
                              f"{fmt_num(out.get('avg_words'), '.1f')} words"),
            (f"output rep-2 / log-div (N={st.get('words')})",
             f"{_pct(out.get('rep_2'))} / {fmt_num(out.get('log_diversity'), '.2f')} "
             f"({out.get('n_kept', '-')} of {out.get('n', '-')} kept)")]
    if "skipped" in td:
        rows.append(("training data stats", f"- ({td['skipped']})"))
    elif td:
        rows.append(("training data length", f"{fmt_num(td.get('avg_chars'), '.1f')} chars, "
                                             f"{fmt_num(td.get('avg_words'), '.1f')} words, "
                                             f"rep-2 {_pct(td.get('rep_2'))}"))
    return rows


def _result_rows(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    got = {k: summary.get(k) for k in ("synthetic", "heldout", "judge", "judge_check", "harness",
                                       "preference")}
    syn, held, jd, jc, hd, pf = (v if v and "unavailable" not in v else None
                                 for v in got.values())
    rows: list[tuple[str, str]] = []
    if pf:
        (alo, ahi), (mlo, mhi) = pf["accuracy_ci95"], pf["reward_margin_ci95"]
        rows += [("preference accuracy", f"{100 * pf['accuracy']:.1f} % [{100 * alo:.1f}, "
                  f"{100 * ahi:.1f}] (Wilson, n={pf['n']} pairs, {pf['source']})"),
                 ("reward margin", f"{pf['reward_margin']:.4f} [{mlo:.4f}, {mhi:.4f}] (beta "
                  f"{pf['beta']}, bootstrap; reference {pf['reference']})")]
    if syn:
        lo, hi = syn.get("accuracy_ci95") or [None, None]
        rows.append(("synthetic exact-answer", f"{fmt_num(syn.get('accuracy'), '.1f', 100)} % "
                     f"[{fmt_num(lo, '.1f', 100)}, {fmt_num(hi, '.1f', 100)}] (n={syn.get('n')})"))
    if held:
        rows.append(("clean held-out loss, per example",
                     f"{fmt_num(held.get('mean_loss'), '.4f')} over {held.get('n')} examples "
                     f"({held.get('n_tokens')} tokens)"))
    if jd:
        rows.append(("win rate", f"{fmt_num(jd.get('win_rate'), '.2f')} (se "
                     f"{fmt_num(jd.get('standard_error'), '.2f')}, n={jd.get('n')}, avg length "
                     f"{fmt_num(jd.get('avg_length'), '.0f')}) vs {jd.get('reference')} "
                     f"judged by {jd.get('judge')}"))
    if jc:
        rows.append(("judge check", f"{'usable' if jc.get('usable') else 'NOT usable'}: "
                     f"accuracy {fmt_num(jc.get('accuracy'), '.3f')}, position bias "
                     f"{fmt_num(jc.get('position_bias'), '.3f')}, n={jc.get('n_pairs')}"))
    if hd:
        rows += [(f"harness {t}", fmt_num(v, ".4f")) for t, v in (hd.get("summary") or {}).items()]
        if hd.get("limit") is not None:
            rows.append(("harness limit", f"{hd['limit']} per task (not comparable)"))
    return rows


def _noise_text(summary: Mapping[str, Any]) -> str:
    """``none``, or the method with its alpha and norm matching (a none run has neither)."""
    if summary.get("method") in (None, "none"):
        return str(summary.get("method"))
    return (f"{summary['method']} alpha={summary.get('alpha')} "
            f"norm_match={summary.get('norm_match')}")


def _summary_rows(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    p = summary.get("prompts") or {}
    rows = [("run", str(summary.get("run_dir"))), ("dataset", str(summary.get("dataset"))),
            ("noise", _noise_text(summary)),
            ("train loss (noisy)", fmt_num(summary.get("train_loss"), ".4f")),
            ("clean held-out loss", fmt_num(summary.get("final_clean_eval_loss"), ".4f")),
            ("prompts", f"{p.get('source')} ({p.get('n')})")]
    ignored = (summary.get("generation") or {}).get("ignored_fields")
    if ignored:
        rows.append(("ignored prompt fields",
                     ", ".join(f"{k} ({n} rows)" for k, n in ignored.items())))
    rows += _stats_rows(summary.get("stats") or {}) + _result_rows(summary)
    return rows + [(f"step {step}", what) for step, what in (summary.get("steps") or {}).items()]


def format_eval_summary(summary: Mapping[str, Any]) -> str:
    """The summary of :func:`evaluate_run` as an aligned two-column text table."""
    rows = _summary_rows(summary)
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _summary_markdown(summary: Mapping[str, Any]) -> str:
    lines = [f"# Evaluation of `{summary.get('name')}`", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {str(v).replace('|', chr(92) + '|')} |" for k, v in _summary_rows(summary)]
    files = summary.get("files") or {}
    lines += ["", "Files: " + ", ".join(f"`{Path(v).name}`" for v in files.values()), ""]
    return "\n".join(lines)
