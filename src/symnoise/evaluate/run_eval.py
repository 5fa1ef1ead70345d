"""Evaluate one run folder end to end (``symnoise eval RUN_DIR``).

:func:`evaluate_run` chains the evaluation steps on a finished training run and writes
everything into ``RUN/eval/``:

1. **generate**: answers a prompt set with the fine-tuned model (the paper's decoding:
   greedy, repetition penalty 1.2) into ``outputs.json`` (AlpacaEval model-outputs format).
   The prompts are ``--prompts`` (e.g. AlpacaEval's JSON file) or, by default, the built-in
   synthetic held-out split (``synthetic:heldout``).
2. **stats**: response length, whitespace length, n-gram repetition and log-diversity of
   the outputs, and of the training data's responses when the run trained on a local file
   (``stats.json``). The number of leading words used for repetition/diversity is the
   paper's for the run's dataset (50/100/150/150) unless ``words`` says otherwise.
3. **synthetic**: the exact-answer score on the synthetic held-out split, with a 95% Wilson
   interval (``synthetic_scores.json``). When the prompts are that split already, the
   answers of step 1 are scored; otherwise the split is answered separately
   (``synthetic_outputs.json``).
4. **judge** (with ``judge``): the pairwise win rate against reference outputs (``judge/``:
   annotations, leaderboard, cache). The reference is ``reference`` or, when the prompt
   file carries reference ``output`` fields as AlpacaEval's file does, the prompt file.
5. **harness** (with ``harness_tasks``): lm-evaluation-harness tasks (``harness.json``).

``summary.json`` and ``summary.md`` gather the results. Each step records what it was
computed from (settings, and a hash of its input files) in ``steps.json``; a rerun skips a
step whose result files exist and whose record matches, and redoes it otherwise.
Generation and judging also resume mid-way (the generation journal, the judge cache).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .._io import write_json_atomic as _write_json
from .._io import write_text_atomic as _write_text
from ..models import read_run_info as _read_run_info
from .stats import PRESETS, TextStats, stats_for_file, text_stats, words_for

__all__ = [
    "DEFAULT_PROMPTS",
    "EVAL_DIR",
    "HARNESS_JSON",
    "JUDGE_DIR",
    "OUTPUTS_FILE",
    "STATS_FILE",
    "STEPS_FILE",
    "SUMMARY_JSON",
    "SUMMARY_MD",
    "SYNTHETIC_SCORES",
    "evaluate_run",
    "format_eval_summary",
    "read_run_info",
    "run_dataset",
    "run_setting",
]

EVAL_DIR = "eval"
OUTPUTS_FILE = "outputs.json"
STATS_FILE = "stats.json"
STEPS_FILE = "steps.json"
JUDGE_DIR = "judge"
LEADERBOARD_JSON = "leaderboard.json"  # written by symnoise.evaluate.judge
SYNTHETIC_SCORES = "synthetic_scores.json"  # written by symnoise.evaluate.tasks
SYNTHETIC_SCORES_MD = "synthetic_scores.md"
HARNESS_JSON = "harness.json"  # written by symnoise.evaluate.harness
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
DEFAULT_PROMPTS = "synthetic:heldout"
DEFAULT_WORDS = 50
_KNOWN_FORMATS = ("alpaca", "evol_instruct", "sharegpt", "openplatypus")
_HELDOUT = ("synthetic", "synthetic:heldout", "synthetic:test")


# --------------------------------------------------------------------------------------
# Reading a run folder
# --------------------------------------------------------------------------------------


def read_run_info(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``run.json`` of a run folder; FileNotFoundError / ValueError naming it."""
    return _read_run_info(run_dir, required=True)


def run_dataset(info: Mapping[str, Any]) -> str:
    """The training dataset's name for tables: ``config.extra.dataset`` when set, else
    ``synthetic`` for the built-in suite, else the data format (``alpaca``,
    ``evol_instruct``, ``sharegpt``, ``openplatypus``), else the data file's stem."""
    cfg = info.get("config") or {}
    extra = cfg.get("extra") or {}
    if isinstance(extra, Mapping) and isinstance(extra.get("dataset"), str) and extra["dataset"]:
        return str(extra["dataset"])
    data = cfg.get("data")
    if isinstance(data, str) and (data == "synthetic" or data.startswith("synthetic:")):
        return "synthetic"
    for fmt in (info.get("format"), cfg.get("format")):
        if isinstance(fmt, str) and fmt in _KNOWN_FORMATS:
            return fmt
    if isinstance(data, str) and data:
        return Path(data.rstrip("/")).stem or data
    return "unknown"


def run_setting(info: Mapping[str, Any]) -> dict[str, Any]:
    """``{"method", "alpha", "norm_match", "symmetric_mode"}`` of a run (``noise`` block,
    else ``config``); values missing from both are None."""
    noise = info.get("noise") or {}
    cfg = info.get("config") or {}
    out = {}
    for key in ("method", "alpha", "norm_match", "symmetric_mode"):
        out[key] = noise.get(key, cfg.get(key))
    if out["method"] == "neftune":
        out["method"] = "uniform"
    return out


# --------------------------------------------------------------------------------------
# Step bookkeeping
# --------------------------------------------------------------------------------------


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")




def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fingerprint(path: Path) -> dict[str, Any]:
    """What identifies an input: a small file's hash; a large file's or folder's size and
    modification time (hashing gigabytes of training data on every rerun is not worth it)."""
    path = Path(path)
    if path.is_file() and path.stat().st_size <= 64 << 20:
        return {"path": str(path), "sha256": _sha256(path)}
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _normal(data: Any) -> Any:
    return json.loads(json.dumps(data, sort_keys=True, default=str))


class _Steps:
    """``steps.json``: for each finished step, the key (settings + input fingerprints) it was
    computed from."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        if path.is_file():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                loaded = {}  # a torn record only costs recomputation
            self.data = loaded if isinstance(loaded, dict) else {}

    def done(self, name: str, key: Any, *files: Path) -> bool:
        entry = self.data.get(name)
        return (
            isinstance(entry, dict)
            and entry.get("status") == "complete"
            and entry.get("key") == _normal(key)
            and all(Path(f).is_file() for f in files)
        )

    def get(self, name: str) -> dict[str, Any]:
        entry = self.data.get(name)
        return entry if isinstance(entry, dict) else {}

    def mark(self, name: str, key: Any, **extra: Any) -> None:
        self.data[name] = {"status": "complete", "key": _normal(key), "finished": _now(),
                           **_normal(extra)}
        _write_json(self.path, self.data)


# --------------------------------------------------------------------------------------
# Helpers of the steps
# --------------------------------------------------------------------------------------


def _check_positive(name: str, value: Any, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _is_heldout(prompts: Any) -> bool:
    return isinstance(prompts, str) and prompts.strip().lower() in _HELDOUT and not Path(
        prompts
    ).exists()


def _reference_source(reference: str | os.PathLike[str] | None, prompts: Any) -> Path:
    """The reference outputs for the judge: ``reference``, or the prompt file when every
    row of it carries a reference ``output``."""
    if reference is not None:
        path = Path(reference).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"reference outputs not found: {path}")
        return path
    hint = ("pass --reference FILE (AlpacaEval-format outputs of the reference model, e.g. "
            "text-davinci-003's) or, as --prompts, a file whose rows carry the reference "
            "'output' (AlpacaEval's own file does)")
    if not isinstance(prompts, (str, os.PathLike)) or not Path(prompts).is_file():
        raise ValueError(f"judging needs reference outputs and the prompts {prompts!s} have "
                         f"none: {hint}")
    from ..data.sources import load_records

    path = Path(prompts)
    records, _ = load_records(path)
    missing = [i for i, r in enumerate(records)
               if not isinstance(r, Mapping) or not isinstance(r.get("output"), str)]
    if len(missing) == len(records):
        raise ValueError(f"judging needs reference outputs: {path} has no 'output' fields; "
                         f"{hint}")
    if missing:
        raise ValueError(f"{path} row {missing[0]}: no reference 'output' (and {len(missing)} "
                         f"rows in all of {len(records)}); pass --reference FILE")
    return path


def _count_outputs(path: Path) -> int | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return len(data) if isinstance(data, list) else None


def _train_data_stats(info: Mapping[str, Any], n_words: int) -> dict[str, Any]:
    """Stats of the training data's responses when the run trained on a local file/folder;
    otherwise a record saying why there are none."""
    cfg = info.get("config") or {}
    data = cfg.get("data")
    if not isinstance(data, str) or not data:
        return {"source": data, "skipped": "no training data source in run.json"}
    if data == "synthetic" or data.startswith("synthetic:"):
        return {"source": data, "skipped": "built-in synthetic data, not a file"}
    path = Path(data).expanduser()
    if not path.exists():
        return {"source": data, "skipped": f"not a local file here ({path} not found)"}
    from ..data.formats import to_examples
    from ..data.sources import load_records

    records, name = load_records(path)
    fmt = info.get("format") or cfg.get("format") or "auto"
    examples, report = to_examples(records, fmt, name,
                                   skip_bad_rows=bool(cfg.get("skip_bad_rows")))
    stats = text_stats([e.output for e in examples], words=n_words)
    return {"source": data, "format": report.format, "read": report.read,
            "used": report.used, "skipped_rows": report.skipped, **stats.to_dict()}


def _synthetic_summary(scores: Mapping[str, Any]) -> dict[str, Any]:
    overall = scores.get("overall") or {}
    return {
        "n": scores.get("n", overall.get("n")),
        "correct": overall.get("correct"),
        "accuracy": overall.get("accuracy"),
        "accuracy_ci95": overall.get("accuracy_ci95"),
        "format_rate": overall.get("format_rate"),
        "per_family": {k: v.get("accuracy") for k, v in (scores.get("per_family") or {}).items()},
    }


def _judge_summary(leaderboard: Mapping[str, Any]) -> dict[str, Any]:
    if not leaderboard:
        return {}
    name, row = next(iter(leaderboard.items()))
    return {
        "name": name,
        "judge": row.get("judge"),
        "reference": row.get("reference"),
        "win_rate": row.get("win_rate"),
        "standard_error": row.get("standard_error"),
        "n": row.get("n"),
        "n_total": row.get("n_total"),
        "n_unparseable": row.get("n_unparseable"),
        "n_errors": row.get("n_errors"),
        "avg_length": row.get("avg_length"),
        "avg_length_reference": row.get("avg_length_reference"),
        "both_orders": row.get("both_orders"),
    }


def _harness_summary(data: Mapping[str, Any]) -> dict[str, Any]:
    cfg = data.get("config") or {}
    return {"summary": dict(data.get("summary") or {}), "limit": cfg.get("limit"),
            "tasks": cfg.get("tasks"), "num_fewshot": cfg.get("num_fewshot")}


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _printer(enabled: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        if enabled:
            print(message, file=sys.stderr, flush=True)

    return say


# --------------------------------------------------------------------------------------
# The orchestrator
# --------------------------------------------------------------------------------------


def evaluate_run(
    run_dir: str | os.PathLike[str],
    *,
    prompts: str | os.PathLike[str] | None = None,
    n_prompts: int | None = None,
    max_new_tokens: int = 256,
    batch_size: int = 16,
    judge: str | None = None,
    base_url: str | None = None,
    reference: str | os.PathLike[str] | None = None,
    both_orders: bool = False,
    harness_tasks: str | list[str] | None = None,
    include_path: str | os.PathLike[str] | None = None,
    harness_limit: int | float | None = None,
    words: int | str | None = None,
    synthetic: bool = True,
    progress: bool = True,
    synthetic_n: int | None = None,
) -> dict[str, Any]:
    """Run the evaluation steps on a run folder and write ``RUN/eval/`` (module docstring).

    Args:
        run_dir: a finished run folder (``run.json`` with status ``completed`` and the model).
        prompts: the prompt set (a JSON/JSONL file such as AlpacaEval's, ``alpaca_eval``
            from the Hub, or ``synthetic:heldout``, the default).
        n_prompts: answer only the first N prompts (also the size of the synthetic
            held-out evaluation unless ``synthetic_n`` is given).
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
        progress: progress bars and one line per step on stderr.

    Returns the summary (also written to ``summary.json``). Raises FileNotFoundError (no run
    folder, reference missing), ValueError (bad settings, unfinished run, no reference
    outputs to judge against, bad rows, named), and the errors of the underlying steps.
    """
    run_dir = Path(run_dir).expanduser().resolve()
    info = read_run_info(run_dir)
    status = info.get("status")
    if status != "completed":
        raise ValueError(f"{run_dir}: the run's status is {status!r}, not 'completed'; finish "
                         "the training (symnoise train --resume) before evaluating it")
    _check_positive("n_prompts", n_prompts, allow_none=True)
    _check_positive("synthetic_n", synthetic_n, allow_none=True)
    _check_positive("max_new_tokens", max_new_tokens)
    _check_positive("batch_size", batch_size)
    if (base_url or reference is not None or both_orders) and not judge:
        raise ValueError("--base-url, --reference and --both-orders need --judge")
    if (include_path is not None or harness_limit is not None) and not harness_tasks:
        raise ValueError("--include-path and --limit need --tasks")
    dataset = run_dataset(info)
    if words is not None:
        n_words, words_from = words_for(words), f"words={words}"
    elif dataset in PRESETS:
        n_words, words_from = PRESETS[dataset], f"the paper's setting for {dataset}"
    else:
        n_words, words_from = DEFAULT_WORDS, f"default ({dataset} has no preset)"
    prompts_src: Any = DEFAULT_PROMPTS if prompts is None else (
        os.fspath(prompts) if isinstance(prompts, os.PathLike) else prompts)

    from ..generate import generate_outputs, load_prompts

    prompt_list, source_name = load_prompts(prompts_src, limit=n_prompts)
    n = len(prompt_list)
    ref_path = _reference_source(reference, prompts_src) if judge else None
    eval_dir = run_dir / EVAL_DIR
    eval_dir.mkdir(parents=True, exist_ok=True)
    steps = _Steps(eval_dir / STEPS_FILE)
    say = _printer(progress)
    planned = ["generate", "stats"] + (["synthetic"] if synthetic else []) + (
        ["judge"] if judge else []) + (["harness"] if harness_tasks else [])
    state: dict[str, str] = {}

    def head(name: str) -> str:
        return f"[{planned.index(name) + 1}/{len(planned)}] {name}"

    say(f"evaluating {run_dir} ({dataset}, {info.get('noise', {}).get('method', '?')}): "
        f"{', '.join(planned)}")

    # -- 1. generate ----------------------------------------------------------------------
    outputs_file = eval_dir / OUTPUTS_FILE
    template = info.get("template")
    gen_key = {"prompts": source_name, "n": n, "template": template,
               "max_new_tokens": max_new_tokens, "repetition_penalty": 1.2, "greedy": True}
    if steps.done("generate", gen_key, outputs_file) and _count_outputs(outputs_file) == n:
        say(f"{head('generate')}: complete ({n} outputs in {outputs_file}), skipped")
        state["generate"] = "skipped (complete)"
    else:
        # outputs of this step made with other settings or prompts are redone; only the
        # number of prompts may change and keep the answers already there
        prev = steps.get("generate").get("key")
        changed = isinstance(prev, dict) and any(
            prev.get(k) != v for k, v in _normal(gen_key).items() if k != "n")
        say(f"{head('generate')}: {n} prompts from {source_name} -> {outputs_file}"
            + (" (settings changed: starting over)" if changed else ""))
        gen = generate_outputs(str(run_dir), prompts_src, outputs_file,
                               max_new_tokens=max_new_tokens, batch_size=batch_size,
                               limit=n_prompts, progress=progress, overwrite=changed)
        steps.mark("generate", gen_key, report=gen.to_dict())
        state["generate"] = "ran"
        say(f"{head('generate')}: {gen.n_generated} generated, {gen.n_resumed} resumed, "
            f"{gen.n_hit_max_tokens} cut at max_new_tokens")
    generation = steps.get("generate").get("report") or {}

    # -- 2. stats -------------------------------------------------------------------------
    stats_file = eval_dir / STATS_FILE
    data_spec = (info.get("config") or {}).get("data")
    data_path = Path(data_spec).expanduser() if isinstance(data_spec, str) and data_spec else None
    stats_key = {"outputs": _fingerprint(outputs_file), "words": n_words,
                 "train_data": _fingerprint(data_path) if data_path and data_path.exists()
                 else data_spec}
    if steps.done("stats", stats_key, stats_file):
        say(f"{head('stats')}: complete ({stats_file}), skipped")
        state["stats"] = "skipped (complete)"
        stats_doc = _read_json(stats_file)
    else:
        say(f"{head('stats')}: first {n_words} words ({words_from})")
        out_stats: TextStats = stats_for_file(outputs_file, words=n_words)
        train_stats = _train_data_stats(info, n_words)
        stats_doc = {"words": n_words, "words_from": words_from,
                     "outputs": {"file": str(outputs_file), **out_stats.to_dict()},
                     "train_data": train_stats}
        _write_json(stats_file, stats_doc)
        steps.mark("stats", stats_key)
        state["stats"] = "ran"
        if "skipped" in train_stats:
            say(f"{head('stats')}: training data not measured: {train_stats['skipped']}")

    # -- 3. synthetic ---------------------------------------------------------------------
    synthetic_doc: dict[str, Any] | None = None
    scores_file = eval_dir / SYNTHETIC_SCORES
    if synthetic:
        from_outputs = _is_heldout(prompts_src)
        if from_outputs:
            syn_key = {"mode": "score outputs.json", "outputs": _fingerprint(outputs_file)}
        else:
            from ..data.synthetic import DEFAULT_N_HELDOUT

            syn_n = synthetic_n or (min(n_prompts, DEFAULT_N_HELDOUT) if n_prompts else None)
            syn_key = {"mode": "generate", "n": syn_n, "template": template,
                       "max_new_tokens": max_new_tokens}
        if steps.done("synthetic", syn_key, scores_file):
            say(f"{head('synthetic')}: complete ({scores_file}), skipped")
            state["synthetic"] = "skipped (complete)"
        elif from_outputs:
            from .tasks import score_synthetic_outputs

            say(f"{head('synthetic')}: scoring the {n} held-out answers of {outputs_file.name}")
            rep = score_synthetic_outputs(outputs_file, model=str(run_dir))
            _write_json(scores_file, rep.to_dict())
            _write_text(eval_dir / SYNTHETIC_SCORES_MD, rep.format_table(markdown=True))
            steps.mark("synthetic", syn_key)
            state["synthetic"] = "ran"
        else:
            from .tasks import run_synthetic_eval

            prev = steps.get("synthetic").get("key")
            changed = isinstance(prev, dict) and any(
                prev.get(k) != v for k, v in _normal(syn_key).items() if k != "n")
            say(f"{head('synthetic')}: answering the synthetic held-out split"
                + (" (settings changed: starting over)" if changed else ""))
            run_synthetic_eval(str(run_dir), output_dir=eval_dir, n=syn_n,
                               batch_size=batch_size, max_new_tokens=max_new_tokens,
                               progress=progress, overwrite=changed)
            steps.mark("synthetic", syn_key)
            state["synthetic"] = "ran"
        synthetic_doc = _synthetic_summary(_read_json(scores_file))
        acc, ci = synthetic_doc["accuracy"], synthetic_doc["accuracy_ci95"] or [None, None]
        if acc is not None and None not in ci:
            say(f"{head('synthetic')}: accuracy {100 * acc:.1f}% "
                f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}] over {synthetic_doc['n']}")
    else:
        state["synthetic"] = "not requested"

    # -- 4. judge -------------------------------------------------------------------------
    judge_doc: dict[str, Any] | None = None
    judge_dir = eval_dir / JUDGE_DIR
    if judge:
        assert ref_path is not None
        judge_key = {"judge": judge, "base_url": base_url, "both_orders": both_orders,
                     "reference": _fingerprint(ref_path) if ref_path.is_file() else str(ref_path),
                     "outputs": _fingerprint(outputs_file)}
        leaderboard = judge_dir / LEADERBOARD_JSON
        if steps.done("judge", judge_key, leaderboard):
            say(f"{head('judge')}: complete ({leaderboard}), skipped")
            state["judge"] = "skipped (complete)"
        else:
            from .judge import judge_outputs

            say(f"{head('judge')}: {judge} against {ref_path} -> {judge_dir}")
            judge_outputs(outputs_file, ref_path, judge=judge, output_dir=judge_dir,
                          base_url=base_url, both_orders=both_orders, progress=progress)
            steps.mark("judge", judge_key)
            state["judge"] = "ran"
        judge_doc = _judge_summary(_read_json(leaderboard))
        if judge_doc.get("win_rate") is not None:
            say(f"{head('judge')}: win rate {judge_doc['win_rate']:.2f} "
                f"(se {_num(judge_doc.get('standard_error'), '.2f')}) over {judge_doc.get('n')}")
    else:
        state["judge"] = "not requested"

    # -- 5. harness -----------------------------------------------------------------------
    harness_doc: dict[str, Any] | None = None
    if harness_tasks:
        harness_file = eval_dir / HARNESS_JSON
        h_key = {"tasks": harness_tasks, "limit": harness_limit,
                 "include_path": str(Path(include_path).expanduser().resolve())
                 if include_path is not None else None}
        if steps.done("harness", h_key, harness_file):
            say(f"{head('harness')}: complete ({harness_file}), skipped")
            state["harness"] = "skipped (complete)"
        else:
            import torch

            from .harness import run_harness

            say(f"{head('harness')}: {harness_tasks}")
            run_harness(str(run_dir), harness_tasks, output_dir=eval_dir, limit=harness_limit,
                        include_path=include_path, batch_size=batch_size,
                        device="cuda" if torch.cuda.is_available() else "cpu")
            steps.mark("harness", h_key)
            state["harness"] = "ran"
        harness_doc = _harness_summary(_read_json(harness_file))
    else:
        state["harness"] = "not requested"

    # -- summary --------------------------------------------------------------------------
    setting = run_setting(info)
    cfg = info.get("config") or {}
    files = {"outputs": str(outputs_file), "stats": str(stats_file),
             "steps": str(eval_dir / STEPS_FILE), "summary_json": str(eval_dir / SUMMARY_JSON),
             "summary_md": str(eval_dir / SUMMARY_MD)}
    if synthetic:
        files["synthetic_scores"] = str(scores_file)
    if judge:
        files["judge_dir"] = str(judge_dir)
    if harness_tasks:
        files["harness"] = str(eval_dir / HARNESS_JSON)
    summary: dict[str, Any] = {
        "run_dir": str(run_dir),
        "name": run_dir.name,
        "model": cfg.get("model"),
        "dataset": dataset,
        **setting,
        "train_loss": info.get("train_loss"),
        "final_clean_eval_loss": info.get("final_clean_eval_loss"),
        "prompts": {"source": source_name, "n": n},
        "generation": {k: generation.get(k) for k in
                       ("n_written", "n_hit_max_tokens", "mean_output_words", "mean_new_tokens",
                        "decoding", "template") if k in generation},
        "stats": stats_doc,
        "synthetic": synthetic_doc,
        "judge": judge_doc,
        "harness": harness_doc,
        "steps": state,
        "files": files,
        "finished": _now(),
    }
    _write_json(eval_dir / SUMMARY_JSON, summary)
    _write_text(eval_dir / SUMMARY_MD, _summary_markdown(summary))
    say(f"done: {eval_dir / SUMMARY_MD}")
    return summary


# --------------------------------------------------------------------------------------
# Presenting the summary
# --------------------------------------------------------------------------------------


def _num(value: Any, fmt: str, scale: float = 1.0) -> str:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    return format(value * scale, fmt)


def _pct(value: Any) -> str:
    text = _num(value, ".2f")
    return text if text == "-" else f"{text} %"


def _summary_rows(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = [
        ("run", str(summary.get("run_dir"))),
        ("dataset", str(summary.get("dataset"))),
        ("noise", f"{summary.get('method')} alpha={summary.get('alpha')} "
                  f"norm_match={summary.get('norm_match')}"),
        ("train loss (noisy)", _num(summary.get("train_loss"), ".4f")),
        ("clean held-out loss", _num(summary.get("final_clean_eval_loss"), ".4f")),
    ]
    p = summary.get("prompts") or {}
    rows.append(("prompts", f"{p.get('source')} ({p.get('n')})"))
    st = summary.get("stats") or {}
    out = st.get("outputs") or {}
    rows.append(("output length", f"{_num(out.get('avg_chars'), '.1f')} chars, "
                                  f"{_num(out.get('avg_words'), '.1f')} words"))
    rows.append((f"output rep-2 / log-div (N={st.get('words')})",
                 f"{_pct(out.get('rep_2'))} / {_num(out.get('log_diversity'), '.2f')} "
                 f"({out.get('n_kept', '-')} of {out.get('n', '-')} kept)"))
    td = st.get("train_data") or {}
    if "skipped" in td:
        rows.append(("training data stats", f"- ({td['skipped']})"))
    elif td:
        rows.append(("training data length", f"{_num(td.get('avg_chars'), '.1f')} chars, "
                                             f"{_num(td.get('avg_words'), '.1f')} words, rep-2 "
                                             f"{_pct(td.get('rep_2'))}"))
    syn = summary.get("synthetic")
    if syn:
        ci = syn.get("accuracy_ci95") or [None, None]
        rows.append(("synthetic exact-answer", f"{_num(syn.get('accuracy'), '.1f', 100)} % "
                                               f"[{_num(ci[0], '.1f', 100)}, "
                                               f"{_num(ci[1], '.1f', 100)}] (n={syn.get('n')})"))
    jd = summary.get("judge")
    if jd:
        rows.append(("win rate", f"{_num(jd.get('win_rate'), '.2f')} "
                                 f"(se {_num(jd.get('standard_error'), '.2f')}, n={jd.get('n')}, "
                                 f"avg length {_num(jd.get('avg_length'), '.0f')}) vs "
                                 f"{jd.get('reference')} judged by {jd.get('judge')}"))
    hd = summary.get("harness")
    if hd:
        for task, value in (hd.get("summary") or {}).items():
            rows.append((f"harness {task}", _num(value, ".4f")))
        if hd.get("limit") is not None:
            rows.append(("harness limit", f"{hd['limit']} per task (not comparable)"))
    for step, what in (summary.get("steps") or {}).items():
        rows.append((f"step {step}", what))
    return rows


def format_eval_summary(summary: Mapping[str, Any]) -> str:
    """The summary of :func:`evaluate_run` as an aligned two-column text table."""
    rows = _summary_rows(summary)
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _summary_markdown(summary: Mapping[str, Any]) -> str:
    lines = [f"# Evaluation of `{summary.get('name')}`", "", "| | |", "|---|---|"]
    for key, value in _summary_rows(summary):
        lines.append(f"| {key} | {str(value).replace('|', chr(92) + '|')} |")
    files = summary.get("files") or {}
    lines += ["", "Files: " + ", ".join(f"`{Path(v).name}`" for v in files.values()), ""]
    return "\n".join(lines)
