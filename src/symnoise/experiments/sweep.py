"""Experiment sweeps: a grid of training runs, each evaluated, one run folder per point.

An experiment file (YAML) names the grid and what to do at every point::

    name: small_alpaca                 # optional, shown in tables
    output_dir: runs/small_alpaca      # relative to the working directory
    models: [smollm2]                  # strings, or {name: SHORT, model: SPEC}
    datasets:
      - name: alpaca
        data: ../shared/data/alpaca_9k.json   # path, hub id or "synthetic"
        recipe: alpaca                 # a shipped preset (symnoise/configs) or a YAML file
        alpha: 5                       # per-dataset overrides: alpha, template, format, words
        template: alpaca
        words: alpaca                  # first-N-words preset of the text statistics
        optional: true                 # missing data: its points are listed, not run
        train: {max_train_examples: 400}   # any TrainConfig field
        evaluation: {n_prompts: 40}        # overrides of the evaluation below
    methods:                           # simple names, or entries for an ablation:
      - none
      - {method: uniform, alpha: [5, 10, 15]}
      - {method: gaussian, alpha: 5, norm_match: [true, false]}
    alphas: [5]                        # used where neither the method nor the dataset says
    norm_match: [true]                 # only gaussian / bernoulli / symnoise expand over it
    seeds: [42]
    recipe: alpaca                     # base TrainConfig for every dataset without its own
    train: {max_steps: 20}             # TrainConfig fields on top of the recipe
    evaluation:                        # evaluate_run's arguments; false: train only
      prompts: ../shared/data/alpaca_eval_805.json
      n_prompts: 40
      synthetic: true
      judge: null                      # reference: "baseline" judges against the
      reference: null                  #   same model/dataset/seed trained without noise
    executor: local                    # or ray
    isolation: inprocess               # local executor: inprocess or process (a fresh
                                       #   Python per point: no memory carried over)
    ray: {address: null, num_gpus: null, num_cpus: 1, runtime_env: null}
    accelerate_launch: false           # train each point with `accelerate launch` (multi-GPU)
    accelerate_args: []                #   e.g. [--num_processes, "8"]
    keep_checkpoints: false            # delete RUN/checkpoints once a point is trained
    report: true                       # build the report (tables, figures) at the end

A TrainConfig is layered: defaults < recipe (the dataset's, else the file's) < ``train`` <
the dataset's ``train`` and its ``alpha``/``template``/``format`` < the method entry's
``train`` < the grid point (model, data, method, alpha, norm_match, seed, output_dir).
Alpha comes from the method entry, else the dataset, else ``alphas``, else the recipe.

Relative paths in the file (data, prompts, models, references, ...) are looked up next to
the experiment file first, then in the working directory; a value that is neither a local
path nor looks like one (``tatsu-lab/alpaca``) is kept as a hub id.

Every point is a run folder ``OUTPUT/NAME``, NAME being
``{model}-{dataset}-{method}[-{label}]-a{alpha}[-nm0]-s{seed}`` (``-nm0``: norm matching
off; ``none`` carries no alpha), e.g. ``smollm2-alpaca-symnoise-a5-s0``. A rerun skips what
is finished (``run.json`` completed and the evaluation summary written with the same
settings), only evaluates what is trained, resumes training from ``RUN/checkpoints`` and
starts the rest; a run folder holding a run with another config is reported as a
``conflict`` and left alone. A failing point writes ``RUN/error.txt`` and does not stop the
others. The state of every point is kept in ``OUTPUT/sweep_status.json``, the report (with
``report: true``) goes to ``OUTPUT/report``.

``reference: baseline`` judges each noisy point against the answers of the point trained
without noise (same model, dataset and seed; ``BASELINE/eval/outputs.json``): baselines run
first, and are not judged themselves.

Executors
    ``local`` runs the points one after another, in this process (``isolation:
    inprocess``) or each in a fresh Python process (``isolation: process``: memory held by
    one run cannot accumulate over a long grid).

    ``ray`` (``pip install 'ray[default]'``) runs each point as a Ray task in its own worker
    process (a fresh worker per point). It joins the cluster at ``ray.address`` or
    ``$RAY_ADDRESS`` (symnoise must be installed on its nodes, or shipped with
    ``ray.runtime_env``), else starts a local one for the sweep (``ray.init``: extra
    arguments of ``ray.init``, e.g. ``{num_cpus: 4}``) and stops it at the end. Each task
    asks for ``ray.num_gpus`` GPUs (default 1 when the cluster has GPUs, else 0) and
    ``ray.num_cpus`` CPUs (default 1). Points judged against a baseline are submitted once
    every baseline is done.

    ``accelerate_launch: true`` trains each point with
    ``accelerate launch [accelerate_args] -m symnoise.cli train --config RUN/sweep_point.yaml``
    in a subprocess (multi-GPU data parallel, FSDP or DeepSpeed as ``accelerate config`` or
    ``accelerate_args`` say); the evaluation then runs in the calling process. With Ray, set
    ``ray.num_gpus`` to the GPUs each launch uses. Keep the effective batch by dividing
    ``grad_accum`` by the number of processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import gc
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import write_json_atomic as _write_json
from ..config import TrainConfig, load_config_file
from ..noise import canonical_method

__all__ = [
    "ExperimentError",
    "GridPoint",
    "Experiment",
    "PointResult",
    "SweepResult",
    "load_experiment",
    "plan_point",
    "run_point",
    "run_sweep",
    "STATUS_FILE",
    "ERROR_FILE",
    "EVAL_SUMMARY",
]

STATUS_FILE = "sweep_status.json"
ERROR_FILE = "error.txt"
EVAL_SUMMARY = "eval/summary.json"
EVAL_OUTPUTS = "eval/outputs.json"  # the answers to the prompt set (AlpacaEval format)
EVAL_SETTINGS = "eval/sweep_evaluation.json"  # the evaluation settings last completed
POINT_FILE = "sweep_point.yaml"  # the resolved TrainConfig of the point (accelerate launch)
BASELINE = "baseline"
REPORT_DIR = "report"  # OUTPUT/report: tables, figures, report.md
EXECUTORS = ("local", "ray")
ISOLATIONS = ("inprocess", "process")

TOP_KEYS = (
    "name", "description", "output_dir", "models", "datasets", "methods", "alphas",
    "norm_match", "seeds", "recipe", "train", "evaluation", "executor", "isolation", "ray",
    "accelerate_launch", "accelerate_args", "keep_checkpoints", "report",
)
DATASET_KEYS = ("name", "data", "recipe", "alpha", "template", "format", "words", "optional",
                "train", "evaluation")
METHOD_KEYS = ("method", "alpha", "norm_match", "label", "train")
MODEL_KEYS = ("name", "model")
RAY_KEYS = ("address", "num_gpus", "num_cpus", "runtime_env", "init")
#: evaluate_run's arguments an experiment may set (progress is the sweep's).
EVAL_KEYS = (
    "prompts", "n_prompts", "max_new_tokens", "batch_size", "judge", "base_url", "reference",
    "both_orders", "harness_tasks", "include_path", "harness_limit", "words", "synthetic",
    "synthetic_n",
)
_PATH_EVAL_KEYS = ("prompts", "reference", "include_path")
_NORM_SENSITIVE = ("gaussian", "bernoulli", "symnoise")
_NOT_COMPARED = ("output_dir", "resume")  # config fields that may differ on a rerun
_FILE_SUFFIXES = (".json", ".jsonl", ".ndjson", ".parquet", ".gguf", ".yaml", ".yml", ".csv",
                  ".txt", ".arrow")


class ExperimentError(ValueError):
    """An experiment file (or mapping) that cannot be run; the message names the key."""


# ----------------------------------------------------------------------------------------
# Grid points and the experiment
# ----------------------------------------------------------------------------------------


@dataclass
class GridPoint:
    """One training run of the grid and the evaluation that follows it.

    train: the resolved TrainConfig fields (``output_dir`` is the run folder).
    evaluation: keyword arguments of ``evaluate_run`` (None: no evaluation).
    baseline: name of the point whose outputs are the judge's reference
        (``reference: baseline``), else None.
    unavailable: why the point cannot run (optional dataset whose data is missing).
    """

    name: str
    model: str
    model_label: str
    dataset: str
    method: str
    alpha: float | None
    norm_match: bool | None
    seed: int
    label: str | None
    train: dict[str, Any]
    evaluation: dict[str, Any] | None
    baseline: str | None = None
    unavailable: str | None = None

    @property
    def run_dir(self) -> Path:
        return Path(self.train["output_dir"])

    def train_config(self, *, resume: bool = False) -> TrainConfig:
        """The point's TrainConfig (``resume`` set as asked)."""
        return TrainConfig(**{**self.train, "resume": resume})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GridPoint:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclass
class Experiment:
    """A validated experiment: its grid points and how to run them."""

    name: str
    output_dir: Path
    points: list[GridPoint]
    source: str = "<mapping>"
    executor: str = "local"
    isolation: str = "inprocess"
    ray: dict[str, Any] = field(default_factory=dict)
    accelerate_launch: bool = False
    accelerate_args: list[str] = field(default_factory=list)
    keep_checkpoints: bool = False
    report: bool = False
    description: str = ""

    def point(self, name: str) -> GridPoint:
        for p in self.points:
            if p.name == name:
                return p
        raise KeyError(name)


def _err(where: str, key: str, message: str) -> ExperimentError:
    return ExperimentError(f"{where}: {key}: {message}")


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _check_mapping(value: Any, where: str, key: str, known: Sequence[str]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _err(where, key, f"expected a mapping, got {type(value).__name__} ({value!r})")
    out: dict[str, Any] = {}
    for k, v in value.items():
        name = str(k).replace("-", "_")
        if name not in known:
            raise _err(where, f"{key}.{k}" if key else str(k),
                       f"unknown key; known keys: {', '.join(known)}")
        out[name] = v
    return out


def _number(value: Any, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _err(where, key, f"expected a number, got {value!r}")
    if value < 0:
        raise _err(where, key, f"alpha must be >= 0, got {value!r}")
    return float(value)


def _bool(value: Any, where: str, key: str) -> bool:
    if not isinstance(value, bool):
        raise _err(where, key, f"expected true or false, got {value!r}")
    return value


def _int(value: Any, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _err(where, key, f"expected an integer, got {value!r}")
    return value


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9._]+", "-", text.strip().lower()).strip("-.")
    return s or "x"


def _fmt_alpha(alpha: float) -> str:
    return f"{alpha:g}"


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "/", "~")) or Path(text).suffix.lower() in _FILE_SUFFIXES


def _resolve_path(value: Any, base: Path | None, where: str, key: str, *,
                  keep_missing: bool = False) -> Any:
    """A local path found next to the experiment file or in the cwd, else ``value``.

    A value that looks like a path but exists in neither place raises ExperimentError
    (or is returned unchanged with ``keep_missing``); other strings are hub ids/aliases.
    """
    if not isinstance(value, str) or not value or value.startswith("synthetic"):
        return value
    p = Path(value).expanduser()
    candidates = [p] if p.is_absolute() else ([base / p] if base else []) + [Path.cwd() / p]
    for c in candidates:
        if c.exists():
            return str(c.resolve())
    if _looks_like_path(value):
        if keep_missing:
            return value
        tried = ", ".join(str(c) for c in candidates)
        raise _err(where, key, f"{value!r} not found (looked at {tried})")
    return value


def _model_label(spec: str) -> str:
    p = Path(spec)
    if p.suffix.lower() == ".gguf":
        return _slug(p.stem)
    return _slug(p.name or spec)


_AXES = ("model", "data", "method", "alpha", "norm_match", "seed", "output_dir")


def _train_section(value: Any, where: str, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    return _check_mapping(value, where, key, sorted(TrainConfig.field_names()))


def _no_axes(train: dict[str, Any], where: str, key: str) -> dict[str, Any]:
    """Grid axes cannot be set in a ``train`` section (they would rename nothing)."""
    for bad in _AXES:
        if bad in train:
            raise _err(where, f"{key}.{bad}", "is set by the grid: use the experiment's models, "
                       "datasets, methods (alpha, norm_match), alphas, seeds or output_dir")
    return train


def _recipe(value: Any, base: Path | None, where: str, key: str) -> dict[str, Any]:
    """TrainConfig fields of a recipe: a mapping, a preset name or a YAML file."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return _train_section(value, where, key)
    if not isinstance(value, str):
        raise _err(where, key, f"expected a preset name, a file or a mapping, got {value!r}")
    path = _resolve_path(value, base, where, key, keep_missing=True)
    try:
        fields = load_config_file(path)
    except FileNotFoundError:
        presets = sorted(p.stem for p in (Path(__file__).parent.parent / "configs").glob("*.yaml"))
        raise _err(where, key, f"no recipe {value!r}: not a file and not a preset "
                   f"({', '.join(presets)})") from None
    except ValueError as exc:
        raise _err(where, key, str(exc)) from None
    return _train_section(fields, where, f"{key} ({value})")


def _eval_keys() -> tuple[str, ...]:
    """EVAL_KEYS, plus any further keyword evaluate_run accepts once it is importable."""
    try:
        import inspect

        from ..evaluate.run_eval import evaluate_run
    except ImportError:
        return EVAL_KEYS
    params = inspect.signature(evaluate_run).parameters
    extra = [n for n, p in params.items()
             if p.kind is p.KEYWORD_ONLY and n not in EVAL_KEYS and n != "progress"]
    return EVAL_KEYS + tuple(extra)


def _evaluation(value: Any, base: Path | None, where: str, key: str) -> dict[str, Any] | None:
    if value is False:
        return None
    if value is None or value is True:
        return {}
    out = _check_mapping(value, where, key, _eval_keys())
    for k in _PATH_EVAL_KEYS:
        if k in out and out[k] != BASELINE:
            out[k] = _resolve_path(out[k], base, where, f"{key}.{k}")
    judge = out.get("judge")
    if isinstance(judge, str) and judge.startswith("hf:"):  # a local judge model
        out["judge"] = "hf:" + _resolve_path(judge[3:], base, where, f"{key}.judge")
    return out


@dataclass
class _Dataset:
    name: str
    data: Any
    recipe: dict[str, Any]
    recipe_name: str | None
    train: dict[str, Any]
    alpha: float | None
    words: Any
    optional: bool
    evaluation: Any  # raw override (mapping / False / None)
    unavailable: str | None
    index: int


def _datasets(raw: Any, base: Path | None, where: str, top_recipe: Any) -> list[_Dataset]:
    entries = _as_list(raw)
    if not entries:
        raise _err(where, "datasets", "required: at least one dataset (e.g. [synthetic])")
    out: list[_Dataset] = []
    for i, entry in enumerate(entries):
        key = f"datasets[{i}]"
        if isinstance(entry, str):
            entry = {"data": entry}
        d = _check_mapping(entry, where, key, DATASET_KEYS)
        recipe_value = d.get("recipe", top_recipe)
        recipe = _recipe(recipe_value, base, where,
                         f"{key}.recipe" if "recipe" in d else "recipe")
        data = d.get("data", recipe.get("data"))
        if data is None:
            raise _err(where, f"{key}.data", "required (a path, a hub id or 'synthetic'), "
                       "unless the recipe names it")
        if not isinstance(data, str):
            raise _err(where, f"{key}.data", f"expected a string, got {data!r}")
        optional = _bool(d.get("optional", False), where, f"{key}.optional")
        unavailable = None
        try:
            data = _resolve_path(data, base, where, f"{key}.data")
        except ExperimentError:
            if not optional:
                raise
            unavailable = f"optional data {data!r} not found"
        name = d.get("name")
        if name is None:
            name = "synthetic" if data.startswith("synthetic") else Path(str(data)).stem
            if isinstance(recipe_value, str) and "data" not in d:
                name = Path(recipe_value).stem
        if not isinstance(name, str) or not name.strip():
            raise _err(where, f"{key}.name", f"expected a non-empty string, got {name!r}")
        train = _no_axes(_train_section(d.get("train"), where, f"{key}.train"), where,
                         f"{key}.train")
        for k in ("template", "format"):
            if k in d:
                train[k] = d[k]
        alpha = _number(d["alpha"], where, f"{key}.alpha") if "alpha" in d else None
        words = d.get("words")
        if words is None and isinstance(recipe_value, str):
            from ..evaluate.stats import PRESETS

            stem = Path(recipe_value).stem.replace("-", "_").lower()
            words = stem if stem in PRESETS else None
        if words is not None:
            try:
                from ..evaluate.stats import words_for

                words_for(words)
            except ValueError as exc:
                raise _err(where, f"{key}.words", str(exc)) from None
        out.append(_Dataset(_slug(name), data, recipe,
                            recipe_value if isinstance(recipe_value, str) else None, train,
                            alpha, words, optional, d.get("evaluation"), unavailable, i))
    names = [d.name for d in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise _err(where, "datasets", f"two datasets named {dup[0]!r}; give each a distinct name")
    return out


@dataclass
class _Method:
    method: str
    alphas: list[float] | None  # None: not set on the entry
    norm_match: list[bool] | None
    label: str | None
    train: dict[str, Any]
    key: str


def _methods(raw: Any, where: str) -> list[_Method]:
    entries = _as_list(raw)
    if not entries:
        raise _err(where, "methods", "required: at least one method (none, uniform, neftune, "
                   "gaussian, bernoulli, symnoise)")
    out: list[_Method] = []
    for i, entry in enumerate(entries):
        key = f"methods[{i}]"
        if isinstance(entry, str):
            entry = {"method": entry}
        m = _check_mapping(entry, where, key, METHOD_KEYS)
        if "method" not in m:
            raise _err(where, f"{key}.method", "required")
        try:
            method = canonical_method(str(m["method"]))
        except ValueError as exc:
            raise _err(where, f"{key}.method", str(exc)) from None
        a: list[float] | None = None
        if "alpha" in m:
            a = [_number(v, where, f"{key}.alpha") for v in _as_list(m["alpha"])]
            if not a:
                raise _err(where, f"{key}.alpha", "empty list")
        nm: list[bool] | None = None
        if "norm_match" in m:
            nm = [_bool(v, where, f"{key}.norm_match") for v in _as_list(m["norm_match"])]
            if not nm:
                raise _err(where, f"{key}.norm_match", "empty list")
        label = m.get("label")
        if label is not None and (not isinstance(label, str) or not _slug(label)):
            raise _err(where, f"{key}.label", f"expected a short string, got {label!r}")
        train = _no_axes(_train_section(m.get("train"), where, f"{key}.train"), where,
                         f"{key}.train")
        out.append(_Method(method, a, nm, _slug(label) if label else None, train, key))
    return out


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def load_experiment(experiment: str | os.PathLike[str] | Mapping[str, Any], *,
                    base_dir: str | os.PathLike[str] | None = None) -> Experiment:
    """Read and validate an experiment (a YAML file or a mapping); expand its grid.

    base_dir: where relative paths of a mapping are looked up first (a file's own folder
    is used for a file). Raises ExperimentError naming the file and the key.
    """
    if isinstance(experiment, Mapping):
        raw = dict(experiment)
        where = "<experiment>"
        base = Path(base_dir).resolve() if base_dir else None
        default_name = "experiment"
    else:
        import yaml

        path = Path(experiment).expanduser()
        if not path.is_file():
            # a bare name: a shipped grid (symnoise/experiments/grids/NAME.yaml)
            shipped = Path(__file__).parent / "grids" / f"{path.stem}.yaml"
            if len(path.parts) == 1 and path.suffix in ("", ".yaml") and shipped.is_file():
                path = shipped
            else:
                grids = sorted(p.stem for p in shipped.parent.glob("*.yaml"))
                raise FileNotFoundError(f"experiment file not found: {experiment} (shipped "
                                        f"grids: {', '.join(grids)})")
        where = str(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ExperimentError(f"{where}: not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ExperimentError(f"{where}: expected a mapping of experiment keys, got "
                                  f"{type(raw).__name__}")
        base = Path(base_dir).resolve() if base_dir else path.resolve().parent
        default_name = path.stem
    top = _check_mapping(raw, where, "", TOP_KEYS)

    name = str(top.get("name") or default_name)
    out_raw = top.get("output_dir")
    if not isinstance(out_raw, (str, os.PathLike)) or not str(out_raw):
        raise _err(where, "output_dir", "required: the folder that holds the run folders")
    output_dir = Path(out_raw).expanduser().resolve()

    models_raw = _as_list(top.get("models"))
    if not models_raw:
        raise _err(where, "models", "required: at least one model (e.g. [smollm2])")
    models: list[tuple[str, str]] = []
    for i, m in enumerate(models_raw):
        key = f"models[{i}]"
        if isinstance(m, str):
            m = {"model": m}
        mm = _check_mapping(m, where, key, MODEL_KEYS)
        spec = mm.get("model")
        if not isinstance(spec, str) or not spec:
            raise _err(where, f"{key}.model", f"expected a model (hub id, path, smollm2), got "
                       f"{spec!r}")
        label = mm.get("name") or _model_label(spec)
        models.append((_resolve_path(spec, base, where, f"{key}.model"), _slug(str(label))))
    labels = [lab for _, lab in models]
    if len(set(labels)) != len(labels):
        raise _err(where, "models", "two models share a short name; give each a 'name'")

    alphas = [_number(v, where, "alphas") for v in _as_list(top.get("alphas"))]
    norm_match = [_bool(v, where, "norm_match") for v in _as_list(top.get("norm_match"))]
    seeds = [_int(v, where, "seeds") for v in _as_list(top.get("seeds"))]
    top_train = _no_axes(_train_section(top.get("train"), where, "train"), where, "train")
    datasets = _datasets(top.get("datasets"), base, where, top.get("recipe"))
    methods = _methods(top.get("methods"), where)
    evaluation = _evaluation(top.get("evaluation"), base, where, "evaluation")

    executor = top.get("executor", "local")
    if executor not in EXECUTORS:
        raise _err(where, "executor", f"unknown executor {executor!r}; expected one of "
                   f"{', '.join(EXECUTORS)}")
    isolation = top.get("isolation", "inprocess")
    if isolation not in ISOLATIONS:
        raise _err(where, "isolation", f"unknown isolation {isolation!r}; expected one of "
                   f"{', '.join(ISOLATIONS)}")
    ray_cfg = _check_mapping(top.get("ray") or {}, where, "ray", RAY_KEYS)
    for k in ("num_gpus", "num_cpus"):
        if ray_cfg.get(k) is not None:
            v = ray_cfg[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise _err(where, f"ray.{k}", f"expected a number >= 0, got {v!r}")
    acc_args = top.get("accelerate_args") or []
    if not isinstance(acc_args, list) or not all(
            isinstance(a, (str, int, float)) for a in acc_args):
        raise _err(where, "accelerate_args", f"expected a list of strings, got {acc_args!r}")

    points: list[GridPoint] = []
    origin: dict[str, str] = {}
    for model, model_label in models:
        for ds in datasets:
            ds_eval = evaluation
            unavailable = ds.unavailable
            if ds.evaluation is not None:
                try:
                    over = _evaluation(ds.evaluation, base, where,
                                       f"datasets[{ds.index}].evaluation")
                except ExperimentError as exc:
                    if not ds.optional:
                        raise
                    missing = str(exc).split(": ", 2)[-1].split(" (looked at")[0]
                    over, unavailable = None, unavailable or f"evaluation data {missing}"
                ds_eval = None if over is None else {**(evaluation or {}), **over}
            if ds_eval is not None and ds.words is not None and "words" not in (
                    ds.evaluation or {}):
                ds_eval = {**ds_eval, "words": ds.words}
            for m in methods:
                combos: list[tuple[float | None, bool | None]] = [(None, None)]
                if m.method != "none":
                    if m.alphas is not None:
                        grid_alphas: list[float | None] = list(m.alphas)
                    elif ds.alpha is not None:
                        grid_alphas = [ds.alpha]
                    else:
                        grid_alphas = list(alphas) or [None]
                    nms = (m.norm_match or list(norm_match) or [None]) if (
                        m.method in _NORM_SENSITIVE) else [None]
                    combos = [(a, nm) for a in grid_alphas for nm in nms]
                for alpha, nm in combos:
                    for seed in seeds or [None]:
                        fields: dict[str, Any] = {**ds.recipe, **top_train, **ds.train, **m.train}
                        fields.pop("data", None)
                        if alpha is not None:
                            fields["alpha"] = alpha
                        if nm is not None:
                            fields["norm_match"] = nm
                        if seed is not None:
                            fields["seed"] = seed
                        fields.update(model=model, data=ds.data, method=m.method)
                        # the report and the evaluation name the dataset by this
                        fields["extra"] = {**(fields.get("extra") or {}), "dataset": ds.name}
                        try:
                            cfg = TrainConfig(**fields)
                        except (TypeError, ValueError) as exc:
                            raise ExperimentError(
                                f"{where}: {m.key} x datasets[{ds.index}] ({ds.name}): {exc}"
                            ) from None
                        eff_alpha = None if m.method == "none" else cfg.alpha
                        eff_nm = cfg.norm_match if m.method in _NORM_SENSITIVE else None
                        pname = _point_name(model_label, ds.name, m.method, m.label, eff_alpha,
                                            eff_nm, cfg.seed)
                        if pname in origin:
                            raise ExperimentError(
                                f"{where}: {m.key}: grid point {pname!r} appears twice (also "
                                f"from {origin[pname]}); give one of the entries a 'label'"
                            )
                        origin[pname] = m.key
                        cfg.output_dir = str(output_dir / pname)
                        cfg.resume = False
                        points.append(GridPoint(
                            name=pname, model=model, model_label=model_label, dataset=ds.name,
                            method=m.method, alpha=eff_alpha, norm_match=eff_nm, seed=cfg.seed,
                            label=m.label, train=cfg.to_dict(),
                            evaluation=None if ds_eval is None else dict(ds_eval),
                            unavailable=unavailable,
                        ))
    _link_baselines(points, where)
    return Experiment(
        name=name, output_dir=output_dir, points=points, source=where, executor=executor,
        isolation=isolation, ray=ray_cfg,
        accelerate_launch=_bool(top.get("accelerate_launch", False), where, "accelerate_launch"),
        accelerate_args=[str(a) for a in acc_args],
        keep_checkpoints=_bool(top.get("keep_checkpoints", False), where, "keep_checkpoints"),
        report=_bool(top.get("report", False), where, "report"),
        description=str(top.get("description") or ""),
    )


def _point_name(model: str, dataset: str, method: str, label: str | None, alpha: float | None,
                norm_match: bool | None, seed: int) -> str:
    parts = [model, dataset, method]
    if label:
        parts.append(label)
    if alpha is not None:
        parts.append(f"a{_fmt_alpha(alpha)}")
    if norm_match is False:
        parts.append("nm0")
    parts.append(f"s{seed}")
    return "-".join(parts)


def _link_baselines(points: list[GridPoint], where: str) -> None:
    """Resolve ``reference: baseline`` to the un-noised point of the same model/data/seed."""
    for p in points:
        if not p.evaluation or p.evaluation.get("reference") != BASELINE:
            continue
        if p.method == "none":
            # the baseline itself: nothing to judge it against
            p.evaluation = {k: v for k, v in p.evaluation.items()
                            if k not in ("reference", "judge", "base_url", "both_orders")}
            continue
        match = [q for q in points if q.method == "none" and q.model == p.model
                 and q.dataset == p.dataset and q.seed == p.seed]
        if not match:
            raise _err(where, "evaluation.reference",
                       f"'baseline' needs a method 'none' point for {p.model_label} x "
                       f"{p.dataset} x seed {p.seed} (point {p.name}); add 'none' to methods")
        p.baseline = match[0].name


# ----------------------------------------------------------------------------------------
# Running one point
# ----------------------------------------------------------------------------------------


@dataclass
class PointResult:
    """What happened to one grid point.

    status: ``completed`` (trained and/or evaluated now), ``skipped`` (already finished),
    ``failed`` (see ``error`` and RUN/error.txt), ``conflict`` (the run folder holds a run
    with another config), ``unavailable`` (its data is missing), ``planned`` (dry run).
    action: what was (or, in a dry run, would be) done: ``train``, ``resume``,
    ``evaluate``, ``skip``, ``none``.
    """

    name: str
    status: str
    action: str
    run_dir: str
    seconds: float = 0.0
    error: str | None = None
    note: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PointResult:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None



def _has_checkpoints(run_dir: Path) -> bool:
    ckpt = run_dir / "checkpoints"
    return ckpt.is_dir() and any(
        p.name.split("-")[-1].isdigit() for p in ckpt.glob("checkpoint-*"))


def _config_conflicts(point: GridPoint, recorded: Mapping[str, Any]) -> list[str]:
    """Fields where a run folder's recorded config differs from the point's."""
    out = []
    for key, want in point.train.items():
        if key in _NOT_COMPARED or key not in recorded:
            continue
        have = recorded[key]
        if not _same_value(have, want):
            out.append(f"{key}: {have!r} in the run folder, {want!r} in the experiment")
    return out


def _eval_settings(point: GridPoint) -> Any:
    return json.loads(json.dumps({"evaluation": point.evaluation, "baseline": point.baseline},
                                 sort_keys=True, default=str))


def plan_point(point: GridPoint) -> tuple[str, str | None]:
    """What a run of ``point`` would do now: ``(action, note)``.

    action: ``skip`` (trained, evaluated with the same settings), ``evaluate`` (trained),
    ``resume`` (checkpoints of an unfinished run), ``train``, ``conflict`` (the folder holds
    a run with another config; note says which fields) or ``unavailable``.
    """
    if point.unavailable:
        return "unavailable", point.unavailable
    run_dir = point.run_dir
    info = _read_json(run_dir / "run.json")
    if isinstance(info, dict):
        conflicts = _config_conflicts(point, info.get("config") or {})
        if conflicts:
            return "conflict", "; ".join(conflicts) + (
                f" (delete {run_dir} or change output_dir)")
        if info.get("status") == "completed":
            if point.evaluation is None:
                return "skip", None
            done = (run_dir / EVAL_SUMMARY).is_file()
            if done and _read_json(run_dir / EVAL_SETTINGS) == _eval_settings(point):
                return "skip", None
            return "evaluate", ("evaluation settings changed" if done else None)
    if _has_checkpoints(run_dir):
        return "resume", None
    return "train", None


def _metrics(run_dir: Path) -> dict[str, Any]:
    """Headline numbers of a run folder for the sweep table (what exists)."""
    out: dict[str, Any] = {}
    info = _read_json(run_dir / "run.json")
    if isinstance(info, dict):
        for src, dst in (("global_step", "steps"), ("final_clean_eval_loss", "clean_loss"),
                         ("train_loss", "train_loss")):
            if info.get(src) is not None:
                out[dst] = info[src]
        total = (info.get("timings_s") or {}).get("total")
        if total is not None:
            out["train_seconds"] = total
    summary = _read_json(run_dir / EVAL_SUMMARY)
    if isinstance(summary, dict):
        out.update(_summary_metrics(summary))
    return out


def _find(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, Mapping) or key not in d:
            return None
        d = d[key]
    return d


def _summary_metrics(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Pick the headline numbers out of RUN/eval/summary.json (evaluate_run's)."""
    out: dict[str, Any] = {}
    picks = {
        "synthetic_score": [("synthetic", "accuracy")],  # fraction in [0, 1]
        "win_rate": [("judge", "win_rate")],  # percent
        "length": [("stats", "outputs", "avg_chars")],  # characters per response
        "words": [("stats", "outputs", "avg_words")],
        "rep_2": [("stats", "outputs", "rep_2")],  # percent
    }
    for name, paths in picks.items():
        for path in paths:
            value = _find(summary, *path)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[name] = value
                break
    return out


def _say(progress: bool, message: str) -> None:
    if progress:
        print(f"[sweep] {message}", file=sys.stderr, flush=True)


def _call_train(cfg: TrainConfig) -> Path:
    """symnoise.train.train (looked up at call time, so tests can replace it)."""
    from .. import train as train_module

    return train_module.train(cfg)


def _call_evaluate(run_dir: Path, kwargs: dict[str, Any], progress: bool) -> Any:
    """symnoise.evaluate.run_eval.evaluate_run (looked up at call time)."""
    from ..evaluate import run_eval

    return run_eval.evaluate_run(run_dir, progress=progress, **kwargs)


def _baseline_reference(point: GridPoint) -> str:
    """The judge's reference for ``reference: baseline``: the baseline run's answers to the
    same prompts (``BASELINE_RUN/eval/outputs.json``)."""
    base_dir = point.run_dir.parent / str(point.baseline)
    outputs = base_dir / EVAL_OUTPUTS
    if not (base_dir / EVAL_SUMMARY).is_file() or not outputs.is_file():
        raise RuntimeError(
            f"the baseline {point.baseline} has no evaluation yet ({outputs} missing: it "
            "failed or did not run); rerun the sweep once it is evaluated"
        )
    return str(outputs)


def _train_with_accelerate(point: GridPoint, cfg: TrainConfig, args: Sequence[str]) -> None:
    """Train in ``accelerate launch [args] -m symnoise.cli train --config POINT.yaml``."""
    import yaml

    run_dir = point.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_file = run_dir / POINT_FILE
    cfg_file.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *args,
           "-m", "symnoise.cli", "train", "--config", str(cfg_file)]
    # the child's stdout goes to our stderr: stdout stays for the sweep's own result (--json)
    rc = subprocess.call(cmd, stdout=2)
    if rc != 0:
        raise RuntimeError(f"accelerate launch exited with status {rc}: {' '.join(cmd)}")


def _write_error(run_dir: Path, text: str) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / ERROR_FILE).write_text(text, encoding="utf-8")
    except OSError:
        pass


def _free_memory() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _train_and_evaluate(point: GridPoint, action: str, *, progress: bool,
                        accelerate_launch: bool, accelerate_args: Sequence[str],
                        keep_checkpoints: bool) -> None:
    run_dir = point.run_dir
    if action in ("train", "resume"):
        _say(progress, f"{point.name}: {'resuming training' if action == 'resume' else 'training'}")
        cfg = point.train_config(resume=action == "resume")
        if accelerate_launch:
            _train_with_accelerate(point, cfg, accelerate_args)
        else:
            _call_train(cfg)
        info = _read_json(run_dir / "run.json")
        if not isinstance(info, dict) or info.get("status") != "completed":
            raise RuntimeError(f"training returned but {run_dir / 'run.json'} does not say "
                               "status: completed")
        if not keep_checkpoints and (run_dir / "checkpoints").is_dir():
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    if point.evaluation is not None:
        _say(progress, f"{point.name}: evaluating")
        kwargs = dict(point.evaluation)
        if point.baseline:
            kwargs["reference"] = _baseline_reference(point)
        _call_evaluate(run_dir, kwargs, progress)
        if not (run_dir / EVAL_SUMMARY).is_file():
            raise RuntimeError(f"evaluation returned but wrote no {run_dir / EVAL_SUMMARY}")
        _write_json(run_dir / EVAL_SETTINGS, _eval_settings(point))


def run_point(point: GridPoint, *, progress: bool = True, accelerate_launch: bool = False,
              accelerate_args: Sequence[str] = (), keep_checkpoints: bool = False) -> PointResult:
    """Train (or resume) and evaluate one point as :func:`plan_point` says; never raises
    for a failure of the point itself (it is returned as ``failed`` and written to
    RUN/error.txt). KeyboardInterrupt propagates. What training and evaluation print goes
    to stderr, so that stdout carries only results (``--json``).
    """
    t0 = time.perf_counter()
    action, note = plan_point(point)
    run_dir = point.run_dir
    if action in ("skip", "unavailable", "conflict"):
        status = {"skip": "skipped"}.get(action, action)
        return PointResult(point.name, status, action, str(run_dir), 0.0, None, note,
                           _metrics(run_dir) if action == "skip" else {})
    error = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            _train_and_evaluate(point, action, progress=progress,
                                accelerate_launch=accelerate_launch,
                                accelerate_args=accelerate_args,
                                keep_checkpoints=keep_checkpoints)
        (run_dir / ERROR_FILE).unlink(missing_ok=True)
        status = "completed"
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - a failing point must not stop the sweep
        error = f"{type(exc).__name__}: {exc}"
        _write_error(run_dir, f"{point.name}: {action} failed\n\n{traceback.format_exc()}")
        status = "failed"
        _say(progress, f"{point.name}: FAILED ({error.splitlines()[0][:200]})")
    finally:
        _free_memory()
    return PointResult(point.name, status, action, str(run_dir),
                       round(time.perf_counter() - t0, 2), error, note, _metrics(run_dir))


def _point_options(exp: Experiment, progress: bool) -> dict[str, Any]:
    return {"progress": progress, "accelerate_launch": exp.accelerate_launch,
            "accelerate_args": list(exp.accelerate_args),
            "keep_checkpoints": exp.keep_checkpoints}


def _run_point_subprocess(point: GridPoint, options: dict[str, Any],
                          work_dir: Path) -> PointResult:
    """run_point in a fresh Python process (``isolation: process``)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    spec = work_dir / f"{point.name}.point.json"
    result_file = work_dir / f"{point.name}.result.json"
    result_file.unlink(missing_ok=True)
    _write_json(spec, {"point": point.to_dict(), "options": options})
    t0 = time.perf_counter()
    rc = subprocess.call([sys.executable, "-m", "symnoise.experiments.sweep",
                          "--point", str(spec), "--result", str(result_file)], stdout=2)
    data = _read_json(result_file)
    if isinstance(data, dict):
        return PointResult.from_dict(data)
    error = f"the point's process exited with status {rc} and wrote no result"
    _write_error(point.run_dir, f"{point.name}: {error}\n")
    return PointResult(point.name, "failed", plan_point(point)[0], str(point.run_dir),
                       round(time.perf_counter() - t0, 2), error, None, _metrics(point.run_dir))


def _ray_point_task(point: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """Body of a Ray task: one point, in a Ray worker process."""
    return run_point(GridPoint.from_dict(point), **options).to_dict()


# ----------------------------------------------------------------------------------------
# The sweep
# ----------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    """The outcome of :func:`run_sweep`: one :class:`PointResult` per selected point."""

    name: str
    source: str
    output_dir: str
    executor: str
    dry_run: bool
    total: int
    points: list[PointResult]
    report: dict[str, Any] | None = None
    report_error: str | None = None
    seconds: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.points:
            out[p.status] = out.get(p.status, 0) + 1
        return out

    @property
    def ok(self) -> bool:
        """True when no selected point failed or conflicts."""
        return not any(p.status in ("failed", "conflict") for p in self.points)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["counts"] = self.counts
        d["selected"] = len(self.points)
        return d

    def format_table(self) -> str:
        """A readable table of the points, their status and headline numbers."""
        def num(v: Any, fmt: str) -> str:
            return format(v, fmt) if isinstance(v, (int, float)) else "-"

        head = ["point", "status", "action", "steps", "clean loss", "synth", "win", "time",
                "note"]
        rows = []
        for p in self.points:
            m = p.metrics
            note = p.error or p.note or ""
            rows.append([
                p.name, p.status, p.action, num(m.get("steps"), "d"),
                num(m.get("clean_loss"), ".4f"), num(m.get("synthetic_score"), ".3f"),
                num(m.get("win_rate"), ".1f"), f"{p.seconds:.0f}s" if p.seconds else "-",
                note.splitlines()[0][:70] if note else "",
            ])
        widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
                  for i, h in enumerate(head)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip(),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                  for r in rows]
        counts = ", ".join(f"{v} {k}" for k, v in sorted(self.counts.items()))
        kind = "dry run" if self.dry_run else f"{self.seconds:.0f} s"
        lines.append("")
        lines.append(f"{self.name}: {len(self.points)} of {self.total} points ({counts}); "
                     f"{kind}; runs in {self.output_dir}")
        if self.report:
            where = self.report.get("report_md") or self.report.get("output_dir") or ""
            lines.append(f"report: {where}")
        if self.report_error:
            lines.append(f"report not built: {self.report_error}")
        return "\n".join(lines)


def _select(points: list[GridPoint], only: str | Sequence[str] | None) -> list[GridPoint]:
    if not only:
        return list(points)
    patterns = [only] if isinstance(only, str) else list(only)
    pats = [p.strip() for text in patterns for p in text.split(",") if p.strip()]
    globs = [p if any(c in p for c in "*?[") else f"*{p}*" for p in pats]
    chosen = [p for p in points if any(fnmatch.fnmatchcase(p.name, g) for g in globs)]
    if not chosen:
        names = ", ".join(p.name for p in points[:12]) + (" ..." if len(points) > 12 else "")
        raise ExperimentError(f"--only {','.join(pats)!r} matches none of the {len(points)} "
                              f"points ({names})")
    return chosen


class _StatusFile:
    """OUTPUT/sweep_status.json, updated after every point (earlier entries kept)."""

    def __init__(self, exp: Experiment, executor: str):
        self.path = exp.output_dir / STATUS_FILE
        old = _read_json(self.path)
        self.data: dict[str, Any] = old if isinstance(old, dict) else {}
        self.data.update({"experiment": exp.name, "source": exp.source,
                          "output_dir": str(exp.output_dir), "executor": executor})
        self.data.setdefault("points", {})
        self.grid = {p.name: p for p in exp.points}
        for p in exp.points:  # every point of the grid is listed, run or not
            self.data["points"].setdefault(p.name, {"status": "pending"})
            self.data["points"][p.name].update(self._describe(p))
        self.write()

    @staticmethod
    def _describe(p: GridPoint) -> dict[str, Any]:
        return {"model": p.model, "dataset": p.dataset, "method": p.method, "alpha": p.alpha,
                "norm_match": p.norm_match, "seed": p.seed, "label": p.label,
                "run_dir": str(p.run_dir)}

    def update(self, name: str, **fields: Any) -> None:
        entry = self.data["points"].setdefault(name, {})
        entry.update(fields)
        entry["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.write()

    def write(self) -> None:
        counts: dict[str, int] = {}
        for entry in self.data["points"].values():
            counts[entry.get("status", "?")] = counts.get(entry.get("status", "?"), 0) + 1
        self.data["counts"] = counts
        self.data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        _write_json(self.path, self.data)


def _report_brief(built: Any) -> dict[str, Any]:
    """The parts of a ReportResult worth keeping in the sweep result."""
    full = built.to_dict() if hasattr(built, "to_dict") else {}
    files = full.get("files") or {}
    out = {"report_md": files.get("report_md"), "output_dir": full.get("output_dir"),
           "files": files, "notes": full.get("notes") or []}
    if hasattr(built, "format_table"):
        out["table"] = built.format_table()
    return out


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError(
            "executor 'ray' needs Ray, which is not installed: pip install 'ray[default]' "
            "(or pip install 'symnoise[ray]'), or use executor: local"
        ) from None
    return ray


def _run_ray(exp: Experiment, order: list[GridPoint], options: dict[str, Any],
             on_result: Callable[[PointResult], None], progress: bool) -> None:
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        address = exp.ray.get("address") or os.environ.get("RAY_ADDRESS")
        init_kwargs = dict(exp.ray.get("init") or {})
        runtime_env = dict(exp.ray.get("runtime_env") or {})
        if not address:
            # a local cluster: make sure its workers import this very symnoise
            pkg_root = str(Path(__file__).resolve().parent.parent.parent)
            env_vars = dict(runtime_env.get("env_vars") or {})
            env_vars.setdefault("PYTHONPATH", os.pathsep.join(
                [pkg_root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
            runtime_env["env_vars"] = env_vars
            init_kwargs.setdefault("include_dashboard", False)
        where = f"connecting to {address}" if address else "starting a local cluster"
        _say(progress, f"ray: {where}")
        ray.init(address=address or None, runtime_env=runtime_env or None, **init_kwargs)
        started = True
    num_gpus = exp.ray.get("num_gpus")
    if num_gpus is None:
        num_gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
    num_cpus = exp.ray.get("num_cpus")
    num_cpus = 1 if num_cpus is None else num_cpus
    _say(progress, f"ray: {len(order)} tasks, each num_gpus={num_gpus} num_cpus={num_cpus}")
    task = ray.remote(num_gpus=num_gpus, num_cpus=num_cpus, max_calls=1)(_ray_point_task)
    phases = [[p for p in order if not p.baseline], [p for p in order if p.baseline]]
    refs: dict[Any, GridPoint] = {}
    try:
        for phase in phases:
            refs = {task.remote(p.to_dict(), options): p for p in phase}
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1)
                point = refs.pop(ready[0])
                try:
                    result = PointResult.from_dict(ray.get(ready[0]))
                except Exception as exc:  # noqa: BLE001 - worker died, OOM, ...
                    error = f"ray task failed: {type(exc).__name__}: {exc}"
                    _write_error(point.run_dir, f"{point.name}: {error}\n")
                    result = PointResult(point.name, "failed", plan_point(point)[0],
                                         str(point.run_dir), 0.0, error, None,
                                         _metrics(point.run_dir))
                on_result(result)
    except KeyboardInterrupt:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


def run_sweep(experiment: str | os.PathLike[str] | Mapping[str, Any] | Experiment, *,
              executor: str | None = None, dry_run: bool = False,
              only: str | Sequence[str] | None = None, progress: bool = True) -> SweepResult:
    """Run every point of an experiment (see the module docstring) and return the outcome.

    executor: ``local`` or ``ray`` (default: the file's ``executor``, else local).
    dry_run: validate and plan only (nothing is written). only: glob pattern(s) over point
    names, comma-separated (a pattern without ``*?[`` matches as a substring).
    Raises ExperimentError for a bad experiment; failures of points are in the result.
    """
    t0 = time.perf_counter()
    exp = experiment if isinstance(experiment, Experiment) else load_experiment(experiment)
    executor = executor or exp.executor
    if executor not in EXECUTORS:
        raise ExperimentError(f"unknown executor {executor!r}; expected one of "
                              f"{', '.join(EXECUTORS)}")
    selected = _select(exp.points, only)
    if dry_run:
        planned = []
        for p in selected:
            action, note = plan_point(p)
            planned.append(PointResult(p.name, "planned", action, str(p.run_dir), 0.0, None,
                                       note, _metrics(p.run_dir)))
        return SweepResult(exp.name, exp.source, str(exp.output_dir), executor, True,
                           len(exp.points), planned)
    if executor == "ray":
        _import_ray()  # fail before anything is written
    exp.output_dir.mkdir(parents=True, exist_ok=True)
    status = _StatusFile(exp, executor)
    results: dict[str, PointResult] = {}
    n = len(selected)

    def record(result: PointResult) -> None:
        results[result.name] = result
        status.update(result.name, **{k: v for k, v in result.to_dict().items() if k != "name"})
        _say(progress, f"{len(results)}/{n} {result.name}: {result.status}"
             + (f" ({result.seconds:.0f} s)" if result.seconds else ""))

    # points judged against a baseline run after every baseline
    order = [p for p in selected if not p.baseline] + [p for p in selected if p.baseline]
    options = _point_options(exp, progress)
    try:
        if executor == "local":
            for i, p in enumerate(order, 1):
                action, _ = plan_point(p)
                if action not in ("skip", "unavailable", "conflict"):
                    _say(progress, f"point {i}/{n}: {p.name} ({action})")
                    status.update(p.name, status="running", action=action)
                if exp.isolation == "process" and action not in ("skip", "unavailable",
                                                                 "conflict"):
                    record(_run_point_subprocess(p, options, exp.output_dir / ".sweep"))
                else:
                    record(run_point(p, **options))
        else:
            _run_ray(exp, order, options, record, progress)
    except KeyboardInterrupt:
        for p in selected:
            if p.name not in results and status.data["points"][p.name].get("status") == "running":
                status.update(p.name, status="interrupted")
        raise
    report, report_error = None, None
    if exp.report:
        _say(progress, "building the report")
        try:
            from . import report as report_module

            built = report_module.build_report(exp.output_dir, exp.output_dir / REPORT_DIR)
            report = _report_brief(built)
        except Exception as exc:  # noqa: BLE001 - the runs are done; say why no report
            report_error = f"{type(exc).__name__}: {exc}"
    return SweepResult(exp.name, exp.source, str(exp.output_dir), executor, False,
                       len(exp.points), [results[p.name] for p in selected], report,
                       report_error, round(time.perf_counter() - t0, 2))


def _main(argv: Sequence[str] | None = None) -> int:
    """``python -m symnoise.experiments.sweep --point SPEC --result OUT``: one point in a
    fresh process (the local executor's ``isolation: process``)."""
    import argparse

    parser = argparse.ArgumentParser(description=_main.__doc__)
    parser.add_argument("--point", required=True)
    parser.add_argument("--result", required=True)
    args = parser.parse_args(argv)
    spec = json.loads(Path(args.point).read_text(encoding="utf-8"))
    result = run_point(GridPoint.from_dict(spec["point"]), **spec["options"])
    _write_json(Path(args.result), result.to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(_main())
