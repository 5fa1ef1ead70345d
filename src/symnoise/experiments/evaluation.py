"""``symnoise eval RUN_DIR``: the steps of :mod:`.eval_steps` over one run folder, each
skipped when its recorded key and files say it is done (:func:`_run_step`), then the
summary (README, "symnoise eval")."""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._io import MISSING, fmt, markdown_table, write_text_atomic
from ..config import validate
from ..evaluate.stats import PRESETS, words_for
from ..run import RunFolder, run_dataset, run_setting
from .eval_steps import STEPS, EvalPlan, EvalSettings, Step, StepUnavailable, reference_source

__all__ = ["evaluate_run", "format_eval_summary", "run_dataset"]

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


def evaluate_run(run_dir: str | os.PathLike[str],
                 settings: EvalSettings | Mapping[str, Any] | None = None, *,
                 progress: bool = True, **options: Any) -> dict[str, Any]:
    """Evaluate a finished run folder into ``RUN/eval/``; returns the summary. ``settings``
    (:class:`EvalSettings` or its fields) with ``options`` on top. Bad settings, files or
    an unfinished run raise before any step runs; RunLockedError when the run is busy."""
    run = RunFolder(Path(run_dir).expanduser().resolve())
    info = _check_run(run)
    given = settings.model_dump(exclude_unset=True) if isinstance(settings, EvalSettings) \
        else dict(settings or {})
    s: EvalSettings = validate(EvalSettings, {**given, **options}, "eval")
    if (s.base_url or s.reference is not None or s.both_orders) and not s.judge:
        raise ValueError("--base-url, --reference-outputs and --both-orders need --judge")
    if (s.include_path is not None or s.harness_limit is not None) and not s.harness_tasks:
        raise ValueError("--include-path and --limit-per-task need --tasks")
    if s.eval_data is not None and (info.get("config") or {}).get("stage", "sft") == "sft":
        raise ValueError("--eval-data is for preference runs (a run.json stage other than sft)")
    n_words, words_from = _words(s.words, run_dataset(info))

    from ..generate import load_prompts

    prompt_set = load_prompts(s.prompts, limit=s.n_prompts, ignore_fields=s.ignore_fields)
    plan = EvalPlan(run=run, info=info, settings=s, source_name=prompt_set.source,
                    n=len(prompt_set.prompts), n_words=n_words, words_from=words_from,
                    reference=reference_source(s.reference, s.prompts) if s.judge else None,
                    progress=progress)
    wanted = {"synthetic": s.synthetic, "heldout": s.heldout, "preference": plan.preference,
              "judge": bool(s.judge), "judge_check": bool(s.judge) and s.judge_check,
              "harness": bool(s.harness_tasks)}
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


def _pct(value: Any) -> str:
    text = fmt(value, ".2f")
    return text if text == MISSING else f"{text} %"


def _stats_rows(st: Mapping[str, Any]) -> list[tuple[str, str]]:
    out, td = st.get("outputs") or {}, st.get("train_data") or {}
    rows = [("output length", f"{fmt(out.get('avg_chars'), '.1f')} chars, "
                              f"{fmt(out.get('avg_words'), '.1f')} words"),
            (f"output rep-2 / log-div (N={st.get('words')})",
             f"{_pct(out.get('rep_2'))} / {fmt(out.get('log_diversity'), '.2f')} "
             f"({out.get('n_kept', '-')} of {out.get('n', '-')} kept)")]
    if "skipped" in td:
        rows.append(("training data stats", f"- ({td['skipped']})"))
    elif td:
        rows.append(("training data length", f"{fmt(td.get('avg_chars'), '.1f')} chars, "
                                             f"{fmt(td.get('avg_words'), '.1f')} words, "
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
        rows.append(("synthetic exact-answer", f"{fmt(syn.get('accuracy'), '.1f', scale=100)} % "
                     f"[{fmt(lo, '.1f', scale=100)}, {fmt(hi, '.1f', scale=100)}] (n={syn.get('n')})"))
    if held:
        rows.append(("clean held-out loss, per example",
                     f"{fmt(held.get('mean_loss'), '.4f')} over {held.get('n')} examples "
                     f"({held.get('n_tokens')} tokens)"))
    if jd:
        rows.append(("win rate", f"{fmt(jd.get('win_rate'), '.2f')} (se "
                     f"{fmt(jd.get('standard_error'), '.2f')}, n={jd.get('n')}, avg length "
                     f"{fmt(jd.get('avg_length'), '.0f')}) vs {jd.get('reference')} "
                     f"judged by {jd.get('judge')}"))
    if jc:
        rows.append(("judge check", f"{'usable' if jc.get('usable') else 'NOT usable'}: "
                     f"accuracy {fmt(jc.get('accuracy'), '.3f')}, position bias "
                     f"{fmt(jc.get('position_bias'), '.3f')}, n={jc.get('n_pairs')}"))
    if hd:
        rows += [(f"harness {t}", fmt(v, ".4f")) for t, v in (hd.get("summary") or {}).items()]
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
            ("train loss (noisy)", fmt(summary.get("train_loss"), ".4f")),
            ("clean held-out loss", fmt(summary.get("final_clean_eval_loss"), ".4f")),
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
    files = ", ".join(f"`{Path(v).name}`" for v in (summary.get("files") or {}).values())
    return (f"# Evaluation of `{summary.get('name')}`\n\n"
            + markdown_table(["", ""], _summary_rows(summary), "ll") + f"\nFiles: {files}\n")
