"""``symnoise harness``: lm-evaluation-harness tasks and the ``openllm`` preset (README), with
MMLU's unweighted mean over its 57 subjects computed here. lm-eval is imported only when a
run starts; local YAML tasks with a local model run with the HF hubs offline."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import difflib
import functools
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from .._io import fmt, markdown_table, write_json_atomic, write_text_atomic
from ..run import EVAL_FILES, RunFolder

logger = logging.getLogger(__name__)

RESULTS_JSON, RESULTS_MD, SAMPLES_JSONL = (
    EVAL_FILES[k] for k in ("harness", "harness_md", "harness_samples"))
DTYPES = ("float32", "bfloat16", "float16", "auto")
UNWEIGHTED = "acc_unweighted"  # plain mean over a group's subtasks (MMLU's leaderboard number)
MMLU_SUBJECTS = 57


class HarnessError(RuntimeError):
    """A harness run failed for a reason the user can fix (data unreachable, no lm-eval)."""


@dataclass(frozen=True)
class TaskPlan:
    """A task as it will be run: name, requested shots (None: the task's own default)."""

    task: str
    num_fewshot: int | None = None
    metric: str | None = None  # headline metric, when known (presets)
    subtasks: int | None = None  # a group scored by UNWEIGHTED must have this many


PRESETS: dict[str, tuple[TaskPlan, ...]] = {
    "openllm": (  # Open LLM Leaderboard v1, the settings the paper used; TruthfulQA's
        TaskPlan("arc_challenge", 25, "acc_norm"), TaskPlan("hellaswag", 10, "acc_norm"),
        TaskPlan("mmlu", 5, UNWEIGHTED, MMLU_SUBJECTS), TaskPlan("truthfulqa_mc2", 0, "acc"),
    ),  # MC2 score is what lm-eval names acc
}


@dataclass
class HarnessRow:
    """One metric of one task (or group) in the results table."""

    task: str
    metric: str
    value: float
    stderr: float | None
    n_shot: int | None
    n_samples: int | None
    filter: str = "none"
    parent: str | None = None  # the requested task/group this subtask belongs to
    headline: bool = False  # the preset's reported metric for this task

    @property
    def label(self) -> str:
        return self.metric if self.filter == "none" else f"{self.metric} ({self.filter})"


@dataclass
class HarnessResult:
    """Outcome of :func:`run_harness`: metric rows, the run's config, the files written."""

    model: str
    rows: list[HarnessRow]
    config: dict[str, Any]
    versions: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    samples: dict[str, list[dict[str, Any]]] | None = None

    def row(self, task: str, metric: str, filter: str = "none") -> HarnessRow:
        """The row of ``metric`` for ``task`` (top-level first); KeyError naming the rows."""
        hits = [r for r in self.rows if (r.task, r.metric, r.filter) == (task, metric, filter)]
        if not hits:
            have = sorted({f"{r.task}/{r.label}" for r in self.rows})
            raise KeyError(f"no metric {metric!r} for task {task!r}; results hold: {have}")
        return min(hits, key=lambda r: r.parent is not None)

    def summary(self) -> dict[str, float]:
        """``{task: value}`` of each top-level task's headline metric (or its first metric)."""
        top = [r for r in self.rows if r.parent is None]
        out = {r.task: r.value for r in top if r.headline}
        for r in top:
            out.setdefault(r.task, r.value)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "summary": self.summary(),
                "results": [asdict(r) for r in self.rows], "versions": self.versions}

    def format_table(self, *, subtasks: bool = False) -> str:
        """Markdown table of the top-level rows (``subtasks``: with each group's members);
        a preset task's headline metric in bold."""
        return _markdown_table([r for r in self.rows if subtasks or r.parent is None])

    def to_markdown(self) -> str:
        """The ``harness.md`` document: a header naming the model and settings, the tables."""
        cfg = self.config
        out = ["# lm-evaluation-harness results", "", f"- model: `{self.model}`",
               f"- lm-eval {cfg.get('lm_eval_version', '?')}, dtype {cfg.get('dtype')}, "
               f"device {cfg.get('device')}, batch size {cfg.get('batch_size')}, "
               f"seed {cfg.get('seed')}"]
        if cfg.get("limit") is not None:
            out.append(f"- limit {cfg['limit']} examples per task: not comparable with "
                       "full-benchmark numbers")
        out += ["", self.format_table()]
        for parent in dict.fromkeys(r.parent for r in self.rows if r.parent is not None):
            members = [r for r in self.rows if r.parent == parent]
            out += [f"## Subtasks of {parent}", "", _markdown_table(members)]
        return "\n".join(out)


def _markdown_table(rows: Sequence[HarnessRow]) -> str:
    def opt(x: Any, prefix: str = "") -> str:
        return "" if x is None else f"{prefix}{fmt(x, '.4f') if prefix else x}"

    return markdown_table(["Task", "Shots", "Metric", "Value", "Stderr", "N"], [
        [r.task if r.parent is None else f"  - {r.task}", opt(r.n_shot), r.label,
         f"**{r.value:.4f}**" if r.headline else fmt(r.value, ".4f"), opt(r.stderr, "± "),
         opt(r.n_samples)] for r in rows], "lrlrrr")


def resolve_tasks(tasks: str | Sequence[str], num_fewshot: int | None = None) -> list[TaskPlan]:
    """Expand presets and comma-separated lists into :class:`TaskPlan` s (order kept, first
    of duplicates wins); ``num_fewshot`` (when not None) overrides every task's shots."""
    if num_fewshot is not None and (isinstance(num_fewshot, bool) or num_fewshot < 0):
        raise ValueError(f"num_fewshot must be a non-negative integer, got {num_fewshot!r}")
    items = [tasks] if isinstance(tasks, (str, os.PathLike)) else list(tasks)
    names = [part.strip() for item in items for part in str(item).split(",") if part.strip()]
    if not names:
        raise ValueError("no tasks given; name lm-eval tasks or a preset "
                         f"({', '.join(sorted(PRESETS))})")
    plans: dict[str, TaskPlan] = {}
    for name in names:
        for plan in PRESETS.get(name.lower(), (TaskPlan(name),)):
            if num_fewshot is not None:
                plan = dataclasses.replace(plan, num_fewshot=num_fewshot)
            plans.setdefault(plan.task, plan)
    return list(plans.values())


def _task_manager(plans: Sequence[TaskPlan], include_path: str | None) -> tuple[Any, bool]:
    """A TaskManager knowing every planned task, and whether all are in ``include_path``
    (then only that folder is indexed: lm-eval's built-ins take seconds). Unknown names
    raise ValueError naming them, with close matches."""
    from lm_eval.tasks import TaskManager

    wanted = [p.task for p in plans
              if not (p.task.endswith((".yaml", ".yml")) and Path(p.task).is_file())]
    if include_path is not None:
        local = TaskManager(include_path=include_path, include_defaults=False)
        if all(name in local.all_tasks for name in wanted):
            # YAML paths given directly may still read hub datasets: not "all local" then
            return local, len(wanted) == len(plans)
    manager = TaskManager(include_path=include_path)
    known = sorted(manager.all_tasks)
    if unknown := [name for name in wanted if name not in manager.all_tasks]:
        close = {n: difflib.get_close_matches(n, known, n=3, cutoff=0.75) for n in unknown}
        hints = [f"{n!r}" + (f" (did you mean {', '.join(c)}?)" if c else "")
                 for n, c in close.items()]
        where = f" nor in include_path {include_path}" if include_path else ""
        raise ValueError(f"unknown lm-eval task(s): {'; '.join(hints)}: not a built-in task, "
                         f"group or tag{where}, not a preset ({', '.join(sorted(PRESETS))}) "
                         "and not a YAML file")
    return manager, False


def _number(x: Any) -> float | None:
    ok = isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isnan(x)
    return float(x) if ok else None


def _leaves(name: str, out: dict[str, Any], seen: frozenset[str] = frozenset()) -> list[str]:
    """The leaf tasks under ``name`` (itself when not a group), in lm-eval's order."""
    children = (out.get("group_subtasks") or {}).get(name)
    if not children:
        return [name]
    return [leaf for c in children if c not in seen for leaf in _leaves(c, out, seen | {name})]


def _n_samples(name: str, out: dict[str, Any]) -> int | None:
    """Effective sample count of a task, or the sum over a group's leaf tasks."""
    counts = out.get("n-samples") or {}
    found = [counts[leaf] for leaf in _leaves(name, out) if leaf in counts]
    return sum(int(c["effective"] if isinstance(c, dict) else c) for c in found) if found else None


def _shots(out: dict[str, Any], name: str) -> int | None:
    return None if (n := _number((out.get("n-shot") or {}).get(name))) is None else int(n)


def rows_from_lm_eval(out: dict[str, Any], plan: TaskPlan) -> list[HarnessRow]:
    """Turn one ``simple_evaluate`` output (for ``plan``) into rows, top level first."""
    tables = {**(out.get("results") or {}), **(out.get("groups") or {})}
    has_own_row = plan.task in tables
    rows: list[HarnessRow] = []
    for name in sorted(tables, key=lambda n: (n != plan.task, n)):
        metrics, top = tables[name], name == plan.task or not has_own_row
        for key, raw in metrics.items():
            if "," not in key or "_stderr," in key or (value := _number(raw)) is None:
                continue
            metric, filt = key.split(",", 1)
            rows.append(HarnessRow(
                task=name, metric=metric, value=value,
                stderr=_number(metrics.get(f"{metric}_stderr,{filt}")),
                n_shot=_shots(out, name), n_samples=_n_samples(name, out), filter=filt,
                parent=None if top else plan.task,
                headline=top and plan.metric == metric and filt == "none"))
    if plan.metric == UNWEIGHTED:
        rows.insert(0, _unweighted_row(out, plan, tables))
    return rows


def _unweighted_row(out: dict[str, Any], plan: TaskPlan,
                    tables: dict[str, dict[str, Any]]) -> HarnessRow:
    """The plain mean of ``acc`` over the leaf subtasks of ``plan.task`` (MMLU's leaderboard
    number); its stderr treats the subtasks as independent: sqrt(sum se_i^2) / n."""
    leaves = _leaves(plan.task, out)
    if plan.subtasks is not None and len(leaves) != plan.subtasks:
        raise HarnessError(f"lm-eval task {plan.task!r} has {len(leaves)} subtasks, expected "
                           f"{plan.subtasks} for its unweighted mean: {leaves[:5]}...")
    accs, errs = [], []
    for leaf in leaves:
        if (value := _number((tables.get(leaf) or {}).get("acc,none"))) is None:
            raise HarnessError(f"lm-eval task {plan.task!r}: subtask {leaf!r} has no 'acc' "
                               "result for the unweighted mean")
        accs.append(value)
        errs.append(_number(tables[leaf].get("acc_stderr,none")))
    n = len(accs)
    stderr = None if None in errs else math.sqrt(sum(e * e for e in errs)) / n  # type: ignore[operator]
    return HarnessRow(task=plan.task, metric=UNWEIGHTED, value=math.fsum(accs) / n,
                      stderr=stderr, n_shot=_shots(out, leaves[0]),
                      n_samples=_n_samples(plan.task, out), headline=True)


def _data_error(task: str, exc: BaseException, offline: bool) -> HarnessError | None:
    """A HarnessError naming ``task`` when ``exc`` (or its cause) is a download, dataset or
    file problem; None otherwise."""
    cur: BaseException | None = exc
    for _ in range(10):
        if cur is None:
            return None
        if isinstance(cur, (ConnectionError, TimeoutError, FileNotFoundError)) or \
                type(cur).__module__.split(".")[0] in (
                    "datasets", "huggingface_hub", "requests", "httpx", "urllib3", "fsspec"):
            break
        cur = cur.__cause__ or cur.__context__
    hint = ("check the data_files paths in the task's YAML (relative to the current folder)"
            if offline else "hub tasks download their data on first use; offline, fill the "
            "datasets cache once or pass local YAML tasks (dataset_path: json) as include_path")
    return HarnessError(f"lm-eval task {task!r}: its dataset could not be loaded "
                        f"({type(exc).__name__}: {exc}); {hint}")


def write_results(result: HarnessResult, output_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Write ``harness.json``, ``harness.md`` (and samples when logged) into ``output_dir``."""
    (out := Path(output_dir)).mkdir(parents=True, exist_ok=True)
    files = {"json": str(out / RESULTS_JSON), "markdown": str(out / RESULTS_MD)}
    if result.samples is not None:
        files["samples"] = str(out / SAMPLES_JSONL)
        write_text_atomic(out / SAMPLES_JSONL, "".join(
            json.dumps({"task": task, **item}, default=str) + "\n"
            for task, items in result.samples.items() for item in items))
    result.files = dict(files)
    write_json_atomic(out / RESULTS_JSON, {**result.to_dict(), "files": files})
    write_text_atomic(out / RESULTS_MD, result.to_markdown())
    return files


def _check_args(limit: Any, dtype: str, batch_size: Any) -> int | float | None:
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    if isinstance(batch_size, bool) or not (
            batch_size == "auto" or (isinstance(batch_size, int) and batch_size > 0)):
        raise ValueError(f"batch_size must be a positive integer or 'auto', got {batch_size!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float))
                              or not limit > 0):
        raise ValueError(f"limit must be a positive number of examples (or a fraction < 1), "
                         f"got {limit!r}")
    if isinstance(limit, float) and limit >= 1 and not limit.is_integer():
        raise ValueError(f"limit {limit} is neither a whole count nor a fraction < 1")
    return int(limit) if limit is not None and limit >= 1 else limit


def _without_progress_bars(lm: Any) -> None:
    """lm-eval's request loops take ``disable_tqdm``; its evaluator never passes it."""
    for name in ("loglikelihood", "loglikelihood_rolling", "generate_until"):
        setattr(lm, name, functools.partial(getattr(lm, name), disable_tqdm=True))


def run_harness(
    model: str | os.PathLike[str], tasks: list[str] | str, *,
    output_dir: str | os.PathLike[str] | None = None, num_fewshot: int | None = None,
    limit: int | float | None = None, batch_size: int | str = 8, device: str = "cpu",
    include_path: str | os.PathLike[str] | None = None, dtype: str = "float32", seed: int = 0,
    log_samples: bool = False, progress: bool = True,
) -> HarnessResult:
    """Evaluate ``model`` on lm-eval tasks (names, YAML paths, presets; list or "a,b"),
    writing into ``output_dir`` (default ``RUN/eval`` for a run folder, else nothing);
    ``limit``: examples per task (a fraction when < 1); ``seed`` seeds everything."""
    from ..models import resolve_model

    plans = resolve_tasks(tasks, num_fewshot)
    limit = _check_args(limit, dtype, batch_size)
    include = None if include_path is None else str(Path(include_path).expanduser().resolve())
    if include is not None and not Path(include).is_dir():
        raise FileNotFoundError(f"include_path is not a folder: {include}")
    ref = resolve_model(model)
    try:
        from lm_eval import __version__ as lm_eval_version
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM
    except ImportError as exc:
        raise HarnessError("symnoise harness needs lm-evaluation-harness: pip install "
                           f"'symnoise[harness]' (or pip install lm-eval) ({exc})") from exc
    manager, all_local = _task_manager(plans, include)
    offline = all_local and ref.kind != "hub"
    if output_dir is None and ref.run_dir is not None:
        output_dir = RunFolder(ref.run_dir).eval_dir
    config: dict[str, Any] = {
        "model": str(model), "model_kind": ref.kind, "model_path": ref.path,
        "gguf_file": ref.gguf_file, "tasks": [p.task for p in plans],
        "requested": [tasks] if isinstance(tasks, str) else list(tasks),
        "num_fewshot": {p.task: p.num_fewshot for p in plans},
        "num_fewshot_override": num_fewshot,
        "headline_metric": {p.task: p.metric for p in plans if p.metric}, "limit": limit,
        "batch_size": batch_size, "device": device, "dtype": dtype, "seed": seed,
        "include_path": include, "offline": offline, "lm_eval_version": lm_eval_version,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    result = HarnessResult(str(model), [], config, samples={} if log_samples else None)
    with mock.patch.dict(os.environ, {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}) \
            if offline else contextlib.nullcontext():
        lm = HFLM(pretrained=ref.path, device=device, dtype=dtype, batch_size=batch_size,
                  **({"gguf_file": ref.gguf_file} if ref.gguf_file else {}))
        if not progress:
            _without_progress_bars(lm)
        for plan in plans:
            logger.info("lm-eval: %s (%s shots)", plan.task, plan.num_fewshot)
            try:
                out = simple_evaluate(
                    model=lm, tasks=[plan.task], num_fewshot=plan.num_fewshot, limit=limit,
                    task_manager=manager, log_samples=log_samples, random_seed=seed,
                    numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed)
            except Exception as exc:
                if error := _data_error(plan.task, exc, offline):
                    raise error from exc
                raise
            if out is None:  # not rank 0 in a distributed run
                continue
            result.rows += rows_from_lm_eval(out, plan)
            result.versions.update(out.get("versions") or {})
            if result.samples is not None:
                result.samples.update(out.get("samples") or {})
            config.update({k: out[k] for k in ("transformers_version",) if k in out})
    if output_dir is not None:
        write_results(result, output_dir)
    return result
