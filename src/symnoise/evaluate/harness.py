"""OpenLLM-style benchmarks through lm-evaluation-harness (``symnoise harness``).

The paper reports ARC, HellaSwag and MMLU through lm-evaluation-harness, as the Open LLM
Leaderboard (v1) computed them; the preset ``openllm`` reproduces those settings exactly:

================  =====  ================  ================================================
task              shots  headline metric   how
================  =====  ================  ================================================
arc_challenge     25     acc_norm          ARC-Challenge test split
hellaswag         10     acc_norm          validation split
mmlu              5      acc_unweighted    unweighted mean of ``acc`` over the 57 subjects
truthfulqa_mc2    0      acc               the MC2 score only (lm-eval names it ``acc``)
================  =====  ================  ================================================

MMLU: lm-eval's own ``mmlu`` group row averages its subjects weighted by their sizes
(``weight_by_size``); the leaderboard's number is the plain mean over the 57 subjects, so
the ``acc_unweighted`` row is computed here from the subject rows (and the run stops with
an error naming the count when there are not 57). lm-eval's weighted row is kept beside
it. The lm-eval version is recorded in the results (``config.lm_eval_version``).

``num_fewshot`` overrides the shots of every task (lm-eval keeps 0 for tasks whose config
pins 0, such as TruthfulQA) and ``limit`` caps the examples per task (for smoke tests;
such numbers are not comparable with full-benchmark ones).

The model is a Hugging Face model folder, a symnoise run folder (a model folder with a
``run.json``; results then go to ``RUN/eval/harness.json`` and ``RUN/eval/harness.md``), a
``.gguf`` file (loaded by transformers, dequantised) or a hub id when a hub is reachable.

Hub tasks download their data from the Hugging Face Hub on first use (then the datasets
cache serves them). Offline, use local task definitions: a folder of lm-eval YAML task
configs passed as ``include_path`` (e.g. ``dataset_path: json`` with ``data_files``
pointing at local JSONL). When every requested task is local and the model is a local
path, the run sets ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE`` for its duration.

lm-eval is an optional dependency (``pip install symnoise[harness]``); it is imported only
when a run starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import difflib
import functools
import inspect
import json
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._io import write_json_atomic as _write_json

logger = logging.getLogger(__name__)

RESULTS_JSON = "harness.json"
RESULTS_MD = "harness.md"
SAMPLES_JSONL = "harness_samples.jsonl"
DTYPES = ("float32", "bfloat16", "float16", "auto")


class HarnessError(RuntimeError):
    """A harness run failed for a reason the user can fix (data unreachable, no lm-eval)."""


#: Name of the unweighted mean over a group's subtasks (MMLU's leaderboard number).
UNWEIGHTED = "acc_unweighted"
MMLU_SUBJECTS = 57


@dataclass(frozen=True)
class PresetTask:
    """One task of a preset: the lm-eval task name, its shots and its headline metric.

    subtasks: for a group scored as the unweighted mean of its subtasks' ``acc`` (metric
    :data:`UNWEIGHTED`), how many subtasks it must have.
    """

    task: str
    num_fewshot: int
    metric: str
    note: str = ""
    subtasks: int | None = None


PRESETS: dict[str, tuple[PresetTask, ...]] = {
    # Open LLM Leaderboard v1, the settings the paper used.
    "openllm": (
        PresetTask("arc_challenge", 25, "acc_norm", "ARC-Challenge, 25-shot"),
        PresetTask("hellaswag", 10, "acc_norm", "HellaSwag, 10-shot"),
        PresetTask("mmlu", 5, UNWEIGHTED, "MMLU, 5-shot, unweighted mean of 57 subjects",
                   MMLU_SUBJECTS),
        PresetTask("truthfulqa_mc2", 0, "acc", "TruthfulQA MC2, 0-shot (lm-eval's acc)"),
    ),
}


@dataclass(frozen=True)
class TaskPlan:
    """A task as it will be run: name, requested shots (None: the task's own default)."""

    task: str
    num_fewshot: int | None = None
    metric: str | None = None  # headline metric, when known (presets)
    subtasks: int | None = None  # see PresetTask.subtasks


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
        """Metric name, with the lm-eval filter when it is not the default one."""
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
        """The row of ``metric`` for ``task`` (its top-level row when it also is a subtask).

        Raises KeyError naming the rows there are.
        """
        hits = [
            r for r in self.rows if r.task == task and r.metric == metric and r.filter == filter
        ]
        if not hits:
            have = sorted({f"{r.task}/{r.label}" for r in self.rows})
            raise KeyError(f"no metric {metric!r} for task {task!r}; results hold: {have}")
        return min(hits, key=lambda r: r.parent is not None)

    def value(self, task: str, metric: str, filter: str = "none") -> float:
        """The value of ``metric`` for ``task`` (see :meth:`row`)."""
        return self.row(task, metric, filter).value

    def summary(self) -> dict[str, float]:
        """``{task: value}`` of each top-level task's headline metric (or its first metric)."""
        out: dict[str, float] = {}
        for row in self.rows:
            if row.parent is None and row.headline:
                out[row.task] = row.value
        for row in self.rows:
            if row.parent is None and row.task not in out:
                out[row.task] = row.value
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: config, rows, headline values and task versions."""
        return {
            "config": self.config,
            "summary": self.summary(),
            "results": [asdict(r) for r in self.rows],
            "versions": self.versions,
        }

    def format_table(self, *, subtasks: bool = False) -> str:
        """Markdown table of the top-level rows; ``subtasks=True`` adds each group's members.

        The headline metric of a preset task is in bold.
        """
        rows = [r for r in self.rows if subtasks or r.parent is None]
        return _markdown_table(rows)

    def to_markdown(self) -> str:
        """The ``harness.md`` document: a header naming the model and settings, the tables."""
        cfg = self.config
        out = [
            "# lm-evaluation-harness results",
            "",
            f"- model: `{self.model}`",
            f"- lm-eval {cfg.get('lm_eval_version', '?')}, dtype {cfg.get('dtype')}, "
            f"device {cfg.get('device')}, batch size {cfg.get('batch_size')}, "
            f"seed {cfg.get('seed')}",
        ]
        if cfg.get("limit") is not None:
            out.append(
                f"- limit {cfg['limit']} examples per task: not comparable with "
                "full-benchmark numbers"
            )
        out += ["", self.format_table()]
        parents = dict.fromkeys(r.parent for r in self.rows if r.parent is not None)
        for parent in parents:
            members = [r for r in self.rows if r.parent == parent]
            out += [f"## Subtasks of {parent}", "", _markdown_table(members)]
        return "\n".join(out)


def _markdown_table(rows: Sequence[HarnessRow]) -> str:
    lines = [
        "| Task | Shots | Metric | Value | Stderr | N |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for row in rows:
        name = row.task if row.parent is None else f"  - {row.task}"
        value = f"**{row.value:.4f}**" if row.headline else f"{row.value:.4f}"
        stderr = "" if row.stderr is None else f"± {row.stderr:.4f}"
        shots = "" if row.n_shot is None else str(row.n_shot)
        n = "" if row.n_samples is None else str(row.n_samples)
        lines.append(f"| {name} | {shots} | {row.label} | {value} | {stderr} | {n} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- tasks


def preset_names() -> list[str]:
    """Names of the built-in presets."""
    return sorted(PRESETS)


def resolve_tasks(tasks: str | Sequence[str], num_fewshot: int | None = None) -> list[TaskPlan]:
    """Expand presets and comma-separated lists into :class:`TaskPlan` s (order kept).

    A preset sets its tasks' shots; ``num_fewshot`` (when not None) overrides all of them.
    Duplicates are removed (first occurrence wins).
    """
    if num_fewshot is not None and (isinstance(num_fewshot, bool) or num_fewshot < 0):
        raise ValueError(f"num_fewshot must be a non-negative integer, got {num_fewshot!r}")
    items = [tasks] if isinstance(tasks, (str, os.PathLike)) else list(tasks)
    names: list[str] = []
    for item in items:
        names += [part.strip() for part in str(item).split(",") if part.strip()]
    if not names:
        raise ValueError("no tasks given; name lm-eval tasks or a preset "
                         f"({', '.join(preset_names())})")
    plans: list[TaskPlan] = []
    seen: set[str] = set()
    for name in names:
        expanded = (
            [TaskPlan(p.task, p.num_fewshot, p.metric, p.subtasks)
             for p in PRESETS[name.lower()]]
            if name.lower() in PRESETS
            else [TaskPlan(name)]
        )
        for plan in expanded:
            if plan.task in seen:
                continue
            seen.add(plan.task)
            if num_fewshot is not None:
                plan = dataclasses.replace(plan, num_fewshot=num_fewshot)
            plans.append(plan)
    return plans


def _is_yaml_path(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) and Path(name).is_file()


def _local_task_names(include_path: str | None) -> set[str]:
    """Task/group/tag names defined in ``include_path`` alone (no built-in tasks)."""
    if include_path is None:
        return set()
    from lm_eval.tasks import TaskManager

    return set(TaskManager(include_path=include_path, include_defaults=False).all_tasks)


def _task_manager(plans: Sequence[TaskPlan], include_path: str | None) -> tuple[Any, bool]:
    """A TaskManager knowing every planned task, and whether all are in ``include_path``.

    Indexing lm-eval's built-in tasks takes seconds, so a run of local tasks only indexes
    ``include_path``. Unknown names raise ValueError naming them (with close matches).
    """
    from lm_eval.tasks import TaskManager

    local = _local_task_names(include_path)
    wanted = [p.task for p in plans if not _is_yaml_path(p.task)]
    if all(name in local for name in wanted):
        # YAML paths given directly may still read hub datasets: not "all local" then.
        all_local = len(wanted) == len(plans)
        return TaskManager(include_path=include_path, include_defaults=False), all_local
    manager = TaskManager(include_path=include_path)
    known = set(manager.all_tasks)
    unknown = [name for name in wanted if name not in known]
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.75)
            hints.append(f"{name!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        where = f" nor in include_path {include_path}" if include_path else ""
        raise ValueError(
            f"unknown lm-eval task(s): {'; '.join(hints)}: not a built-in task, group or tag"
            f"{where}, not a preset ({', '.join(preset_names())}) and not a YAML file"
        )
    return manager, False


# ---------------------------------------------------------------------------- model


@dataclass(frozen=True)
class _ModelRef:
    kind: str  # "hf_dir", "run", "gguf", "hub"
    path: str  # what HFLM gets as ``pretrained``
    gguf_file: str | None = None
    run_dir: Path | None = None


def _resolve_model(model: str | os.PathLike[str]) -> _ModelRef:
    """Resolve through :func:`symnoise.models.resolve_model` (aliases, GGUF, run folders)."""
    from ..models import resolve_model

    source = resolve_model(model)
    return _ModelRef(source.kind, source.path, source.gguf_file, source.run_dir)


def _make_lm(ref: _ModelRef, *, device: str, dtype: str, batch_size: int | str,
             progress: bool = True) -> Any:
    from lm_eval.models.huggingface import HFLM

    kwargs: dict[str, Any] = {"device": device, "dtype": dtype, "batch_size": batch_size}
    if ref.gguf_file is not None:
        if "gguf_file" not in inspect.signature(HFLM.__init__).parameters:
            raise HarnessError(
                f"this lm-eval ({_lm_eval_version()}) cannot load GGUF models "
                f"({Path(ref.path) / ref.gguf_file}); upgrade lm-eval, or evaluate the "
                "Hugging Face model folder instead"
            )
        kwargs["gguf_file"] = ref.gguf_file
    lm = HFLM(pretrained=ref.path, **kwargs)
    if not progress:  # lm-eval's request loops take disable_tqdm; its evaluator never passes it
        for name in ("loglikelihood", "loglikelihood_rolling", "generate_until"):
            setattr(lm, name, functools.partial(getattr(lm, name), disable_tqdm=True))
    return lm


# ---------------------------------------------------------------------------- results


def _lm_eval_version() -> str:
    """The installed lm-eval's version (its distribution's metadata), or ``"unknown"``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lm_eval")
    except PackageNotFoundError:
        return "unknown"


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return None if math.isnan(x) else x


def _leaf_samples(name: str, out: dict[str, Any], seen: set[str] | None = None) -> int | None:
    """Effective sample count of a task, or the sum over a group's leaf tasks."""
    n_samples = out.get("n-samples") or {}
    if name in n_samples:
        entry = n_samples[name]
        return int(entry["effective"] if isinstance(entry, dict) else entry)
    children = (out.get("group_subtasks") or {}).get(name)
    if not children:
        return None
    seen = (seen or set()) | {name}
    counts = [_leaf_samples(c, out, seen) for c in children if c not in seen]
    return sum(c for c in counts if c is not None) if counts else None


def rows_from_lm_eval(out: dict[str, Any], plan: TaskPlan) -> list[HarnessRow]:
    """Turn one ``simple_evaluate`` output (for ``plan``) into rows, top level first."""
    tables: dict[str, dict[str, Any]] = {}
    for key in ("groups", "results"):
        for name, metrics in (out.get(key) or {}).items():
            tables.setdefault(name, metrics)
    n_shot = out.get("n-shot") or {}
    names = sorted(tables, key=lambda n: (n != plan.task, n))
    has_own_row = plan.task in tables
    rows: list[HarnessRow] = []
    for name in names:
        metrics = tables[name]
        shots = n_shot.get(name)
        n = _leaf_samples(name, out)
        for key, raw in metrics.items():
            if "," not in key or "_stderr," in key:
                continue
            metric, filt = key.split(",", 1)
            value = _number(raw)
            if value is None:
                continue
            top = name == plan.task or not has_own_row
            rows.append(
                HarnessRow(
                    task=name,
                    metric=metric,
                    value=value,
                    stderr=_number(metrics.get(f"{metric}_stderr,{filt}")),
                    n_shot=int(shots) if isinstance(shots, (int, float)) else None,
                    n_samples=n,
                    filter=filt,
                    parent=None if top else plan.task,
                    headline=top and plan.metric == metric and filt == "none",
                )
            )
    if plan.metric == UNWEIGHTED:
        rows.insert(0, _unweighted_row(out, plan, tables))
    return rows


def _leaves(name: str, out: dict[str, Any], seen: frozenset[str] = frozenset()) -> list[str]:
    """The leaf tasks under ``name`` (itself when it is not a group), in lm-eval's order."""
    children = (out.get("group_subtasks") or {}).get(name)
    if not children:
        return [name]
    return [leaf for c in children if c not in seen for leaf in _leaves(c, out, seen | {name})]


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
        value = _number((tables.get(leaf) or {}).get("acc,none"))
        if value is None:
            raise HarnessError(f"lm-eval task {plan.task!r}: subtask {leaf!r} has no 'acc' "
                               "result for the unweighted mean")
        accs.append(value)
        errs.append(_number(tables[leaf].get("acc_stderr,none")))
    n = len(accs)
    stderr = None if None in errs else math.sqrt(sum(e * e for e in errs)) / n  # type: ignore[operator]
    shots = (out.get("n-shot") or {}).get(leaves[0])
    return HarnessRow(task=plan.task, metric=UNWEIGHTED, value=math.fsum(accs) / n,
                      stderr=stderr, n_shot=int(shots) if isinstance(shots, (int, float)) else None,
                      n_samples=_leaf_samples(plan.task, out), headline=True)


_DATA_ERROR_MODULES = ("datasets", "huggingface_hub", "requests", "httpx", "urllib3", "fsspec")


def _is_data_error(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) is a download/dataset/file problem."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 10:
        if isinstance(cur, (ConnectionError, TimeoutError, FileNotFoundError)):
            return True
        if type(cur).__module__.split(".")[0] in _DATA_ERROR_MODULES:
            return True
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return False


def _data_error(task: str, exc: BaseException, offline: bool) -> HarnessError:
    hint = (
        "local tasks read their data_files with datasets' 'json' builder: check the paths "
        "in the task's YAML (relative paths resolve against the current directory)"
        if offline
        else "hub tasks download their data from the Hugging Face Hub on first use; without "
        "network access fill the datasets cache once where a hub is reachable, or write a "
        "local task (YAML with dataset_path: json and data_files) in a folder passed as "
        "include_path"
    )
    return HarnessError(
        f"lm-eval task {task!r}: its dataset could not be loaded "
        f"({type(exc).__name__}: {exc}); {hint}"
    )


@contextlib.contextmanager
def _offline_env(active: bool) -> Iterator[None]:
    """Set HF_HUB_OFFLINE / HF_DATASETS_OFFLINE for the block (restored afterwards)."""
    keys = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    old = {k: os.environ.get(k) for k in keys}
    if active:
        for k in keys:
            os.environ[k] = "1"
    try:
        yield
    finally:
        if active:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v



def write_results(result: HarnessResult, output_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Write ``harness.json``, ``harness.md`` (and samples when logged) into ``output_dir``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out / RESULTS_JSON), "markdown": str(out / RESULTS_MD)}
    if result.samples is not None:
        samples_path = out / SAMPLES_JSONL
        tmp = samples_path.with_name(samples_path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for task, items in result.samples.items():
                for item in items:
                    fh.write(json.dumps({"task": task, **item}, default=str) + "\n")
        tmp.replace(samples_path)
        files["samples"] = str(samples_path)
    result.files = dict(files)
    _write_json(out / RESULTS_JSON, {**result.to_dict(), "files": files})
    (out / RESULTS_MD).write_text(result.to_markdown(), encoding="utf-8")
    return files


# ---------------------------------------------------------------------------- entry point


def _check_limit(limit: int | float | None) -> int | float | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit > 0:
        raise ValueError(
            f"limit must be a positive number of examples (or a fraction < 1), got {limit!r}"
        )
    if isinstance(limit, float) and limit >= 1:
        if not limit.is_integer():
            raise ValueError(f"limit {limit} is neither a whole count nor a fraction < 1")
        return int(limit)
    return limit


def run_harness(
    model: str | os.PathLike[str],
    tasks: list[str] | str,
    *,
    output_dir: str | os.PathLike[str] | None = None,
    num_fewshot: int | None = None,
    limit: int | float | None = None,
    batch_size: int | str = 8,
    device: str = "cpu",
    include_path: str | os.PathLike[str] | None = None,
    dtype: str = "float32",
    seed: int = 0,
    log_samples: bool = False,
    progress: bool = True,
) -> HarnessResult:
    """Evaluate ``model`` on lm-evaluation-harness tasks and collect a results table.

    Args:
        model: Hugging Face model folder, symnoise run folder, ``.gguf`` file or hub id.
        tasks: lm-eval task/group names, YAML paths, presets (``openllm``), as a list or a
            comma-separated string.
        output_dir: where to write ``harness.json`` / ``harness.md``; defaults to
            ``RUN/eval`` for a run folder, and to writing nothing otherwise.
        num_fewshot: shots for every task (overrides presets); None keeps the preset's
            shots, or the task's own default for plain task names.
        limit: examples per task (a fraction when < 1); for smoke tests only.
        batch_size: lm-eval batch size (an int, or ``"auto"``).
        device: torch device, e.g. ``cpu`` or ``cuda:0``.
        include_path: folder of extra lm-eval YAML task configs (local tasks).
        dtype: model dtype: float32, bfloat16, float16 or auto.
        seed: seed of Python, NumPy, torch and the few-shot sampler.
        log_samples: keep per-example outputs (written to ``harness_samples.jsonl``).
        progress: lm-eval's per-request progress bars.

    Raises:
        ValueError: unknown task names, bad arguments.
        FileNotFoundError: the model path does not exist.
        HarnessError: lm-eval missing, or a task's dataset cannot be loaded (named).
    """
    plans = resolve_tasks(tasks, num_fewshot)
    limit = _check_limit(limit)
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    if isinstance(batch_size, bool) or not (
        batch_size == "auto" or (isinstance(batch_size, int) and batch_size > 0)
    ):
        raise ValueError(f"batch_size must be a positive integer or 'auto', got {batch_size!r}")
    include = None
    if include_path is not None:
        include_dir = Path(include_path).expanduser()
        if not include_dir.is_dir():
            raise FileNotFoundError(f"include_path is not a folder: {include_dir}")
        include = str(include_dir.resolve())
    ref = _resolve_model(model)
    try:
        import lm_eval  # noqa: F401
        from lm_eval import simple_evaluate
    except ImportError as exc:
        raise HarnessError(
            "symnoise harness needs lm-evaluation-harness: pip install 'symnoise[harness]' "
            f"(or pip install lm-eval) ({exc})"
        ) from exc

    manager, all_local = _task_manager(plans, include)
    offline = all_local and ref.kind != "hub"
    if output_dir is None and ref.run_dir is not None:
        output_dir = ref.run_dir / "eval"

    config: dict[str, Any] = {
        "model": str(model),
        "model_kind": ref.kind,
        "model_path": ref.path,
        "gguf_file": ref.gguf_file,
        "tasks": [p.task for p in plans],
        "requested": [tasks] if isinstance(tasks, str) else list(tasks),
        "num_fewshot": {p.task: p.num_fewshot for p in plans},
        "num_fewshot_override": num_fewshot,
        "headline_metric": {p.task: p.metric for p in plans if p.metric},
        "limit": limit,
        "batch_size": batch_size,
        "device": device,
        "dtype": dtype,
        "seed": seed,
        "include_path": include,
        "offline": offline,
        "lm_eval_version": _lm_eval_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    rows: list[HarnessRow] = []
    versions: dict[str, Any] = {}
    samples: dict[str, list[dict[str, Any]]] | None = {} if log_samples else None
    with _offline_env(offline):
        lm = _make_lm(ref, device=device, dtype=dtype, batch_size=batch_size, progress=progress)
        for plan in plans:
            logger.info("lm-eval: %s (%s shots)", plan.task, plan.num_fewshot)
            try:
                out = simple_evaluate(
                    model=lm,
                    tasks=[plan.task],
                    num_fewshot=plan.num_fewshot,
                    limit=limit,
                    task_manager=manager,
                    log_samples=log_samples,
                    random_seed=seed,
                    numpy_random_seed=seed,
                    torch_random_seed=seed,
                    fewshot_random_seed=seed,
                )
            except Exception as exc:
                if _is_data_error(exc):
                    raise _data_error(plan.task, exc, offline) from exc
                raise
            if out is None:  # not rank 0 in a distributed run
                continue
            rows += rows_from_lm_eval(out, plan)
            versions.update(out.get("versions") or {})
            if samples is not None:
                samples.update(out.get("samples") or {})
            if "transformers_version" in out:
                config["transformers_version"] = out["transformers_version"]
    result = HarnessResult(
        model=str(model), rows=rows, config=config, versions=versions, samples=samples
    )
    if output_dir is not None:
        write_results(result, output_dir)
    return result
