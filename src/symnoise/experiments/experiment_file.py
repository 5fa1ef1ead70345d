"""Experiment files: the schema (pydantic), the grid it expands to, its points (keys,
layering and point names: README, "Experiment files")."""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
)

from .._io import read_text
from ..config import Settings, TrainConfig, error_lines, load_config_file, merged
from ..data.spec import parse_data_spec
from ..noise import NORM_MATCHED, canonical_method
from .eval_steps import EvalSettings

__all__ = ["BASELINE", "Experiment", "ExperimentError", "ExperimentFile", "GridPoint",
           "load_experiment"]

BASELINE = "baseline"
_PATH_EVAL_KEYS = ("prompts", "reference", "include_path", "eval_data")
_AXES = ("model", "data", "noise.method", "noise.alpha", "noise.norm_match", "seed",
         "output_dir")
_FILE_SUFFIXES = (".json", ".jsonl", ".ndjson", ".parquet", ".gguf", ".yaml", ".yml", ".csv",
                  ".txt", ".arrow")
_SHIPPED_GRIDS = Path(__file__).parent / "grids"
_PRESETS = Path(__file__).parent.parent / "configs"


class ExperimentError(ValueError):
    """An experiment file (or mapping) that cannot be run; the message names the key."""


def _as_list(value: Any) -> Any:
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


def _entry(key: str) -> Any:
    """A bare string entry is short for ``{key: string}``."""
    return BeforeValidator(lambda v: {key: v} if isinstance(v, str) else v)


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {value!r}")
    return value


Alpha = Annotated[float, BeforeValidator(_number), Field(ge=0, allow_inf_nan=False)]
Count = Annotated[float, BeforeValidator(_number), Field(ge=0)]
Listed = BeforeValidator(_as_list)


def _entries(model: type, key: str) -> Any:
    """A non-empty list of ``model`` entries (or one entry); a string is ``{key: string}``."""
    return Annotated[list[Annotated[model, _entry(key)]], Listed, Field(min_length=1)]


def _grid_axes(top: ExperimentFile, where: str) -> None:
    """A ``train`` block may not set a grid axis (a recipe may name data)."""
    blocks = [("train", top.train), *((f"datasets[{i}].train", d.train)
                                      for i, d in enumerate(top.datasets)),
              *((f"methods[{i}].train", m.train) for i, m in enumerate(top.methods))]
    lines = [f"{where}: {key}.{axis}: set by the grid: use the experiment's models, datasets, "
             "methods (alpha, norm_match), alphas, seeds or output_dir" for key, block in blocks
             for axis in _AXES if axis in _given_keys(block)]
    if lines:
        raise ExperimentError("\n".join(lines))


def _set_fields(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(exclude_unset=True)


def _given_keys(cfg: TrainConfig) -> set[str]:
    given = _set_fields(cfg)
    return {*given, *(f"noise.{k}" for k in given.get("noise", {}))}


class ModelEntry(Settings):
    name: str | None = None
    model: Annotated[str, Field(min_length=1)]


def _words(value: str | int | None) -> str | int | None:
    from ..evaluate.stats import words_for

    if value is not None:
        words_for(value)  # ValueError naming the value
    return value


class DatasetEntry(Settings):
    name: Annotated[str, Field(min_length=1)] | None = None
    data: str | None = None
    recipe: str | dict[str, Any] | None = None
    alpha: Alpha | None = None
    template: str | None = None
    format: str | None = None
    words: Annotated[str | int | None, AfterValidator(_words)] = None
    optional: StrictBool = False
    train: TrainConfig = TrainConfig()
    evaluation: Any = None  # false / true / EvalSettings fields (checked by _Paths.evaluation)


class MethodEntry(Settings):
    method: Annotated[str, AfterValidator(canonical_method)]
    alpha: Annotated[list[Alpha], Listed, Field(min_length=1)] | None = None
    norm_match: Annotated[list[StrictBool], Listed, Field(min_length=1)] | None = None
    label: Annotated[str, Field(pattern=r"[A-Za-z0-9]")] | None = None
    train: TrainConfig = TrainConfig()


class RaySection(Settings):
    address: str | None = None
    num_gpus: Count | None = None
    num_cpus: Count | None = None
    runtime_env: dict[str, Any] | None = None
    init: dict[str, Any] | None = None


class ExperimentFile(Settings):
    """The keys of an experiment file (see the module docstring)."""

    name: str | None = None
    description: str = ""
    output_dir: Annotated[str, Field(min_length=1)]
    models: _entries(ModelEntry, "model")
    datasets: _entries(DatasetEntry, "data")
    methods: _entries(MethodEntry, "method")
    alphas: Annotated[list[Alpha], Listed] = []
    norm_match: Annotated[list[StrictBool], Listed] = []
    seeds: Annotated[list[StrictInt], Listed] = []
    recipe: str | dict[str, Any] | None = None
    train: TrainConfig = TrainConfig()
    evaluation: Any = None
    executor: Literal["local", "ray"] = "local"
    isolation: Literal["inprocess", "process"] = "inprocess"
    ray: RaySection = RaySection()
    accelerate_args: list[str | int | float] = []
    accelerate_launch: StrictBool = False
    keep_checkpoints: StrictBool = False
    report: StrictBool = False


def _known_keys() -> list[str]:
    models = (ExperimentFile, ModelEntry, DatasetEntry, MethodEntry, RaySection, TrainConfig,
              EvalSettings)
    return sorted({k for m in models for k in m.model_fields})


def _validate(model: type[BaseModel], value: Any, where: str, prefix: str = "") -> Any:
    """``model.model_validate(value)``; ExperimentError: ``FILE: KEY: problem`` lines."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise ExperimentError(error_lines(exc, where, [prefix] if prefix else [],
                                          _known_keys())) from None


@dataclass
class GridPoint:
    """One training run of the grid (``train``: TrainConfig fields) and its evaluation
    (``evaluate_run``'s keywords; None: none); ``baseline``: the point whose outputs the
    judge compares with; ``unavailable``: why the point cannot run."""

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
        return TrainConfig(**{**self.train, "resume": resume})


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
        return {p.name: p for p in self.points}[name]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._]+", "-", text.strip().lower()).strip("-.") or "x"


def _is_synthetic(data: str) -> bool:
    return parse_data_spec(data).is_synthetic


class _Paths:
    """Relative paths of an experiment: next to its file first, then the working directory."""

    def __init__(self, where: str, base: Path | None):
        self.where, self.base = where, base

    def resolve(self, value: Any, key: str, *, keep_missing: bool = False) -> Any:
        """A local path that exists, resolved; a hub id as it is; ExperimentError for a
        value that looks like a path and exists nowhere (unless ``keep_missing``)."""
        if not isinstance(value, str) or not value or _is_synthetic(value):
            return value
        p = Path(value).expanduser()
        tries = [p] if p.is_absolute() else [*([self.base / p] if self.base else []),
                                              Path.cwd() / p]
        for c in tries:
            if c.exists():
                return str(c.resolve())
        looks_like_path = value.startswith((".", "/", "~")) or p.suffix.lower() in _FILE_SUFFIXES
        if not looks_like_path or keep_missing:
            return value
        raise self.error(key, f"{value!r} not found (looked at {', '.join(map(str, tries))})")

    def error(self, key: str, message: str) -> ExperimentError:
        return ExperimentError(f"{self.where}: {key}: {message}")

    def recipe(self, value: Any, key: str) -> dict[str, Any]:
        """TrainConfig fields of a recipe: a mapping, a preset name or a YAML file."""
        if value is None:
            return {}
        fields = value
        if isinstance(value, str):
            try:
                fields = load_config_file(self.resolve(value, key, keep_missing=True))
            except FileNotFoundError:
                presets = ", ".join(sorted(p.stem for p in _PRESETS.glob("*.yaml")))
                raise self.error(key, f"no recipe {value!r}: not a file and not a preset "
                                 f"({presets})") from None
            except ValueError as exc:
                raise self.error(key, str(exc)) from None
        return _set_fields(_validate(TrainConfig, fields, self.where, key))

    def evaluation(self, value: Any, key: str) -> dict[str, Any] | None:
        """evaluate_run's arguments (``false``: None, no evaluation; ``true`` or absent: {}),
        checked, with their paths resolved (a ``hf:PATH`` judge too)."""
        if value is False:
            return None
        out = {} if value in (None, True) else _set_fields(
            _validate(EvalSettings, value, self.where, key))
        for k in _PATH_EVAL_KEYS:
            if k in out and out[k] != BASELINE:
                out[k] = self.resolve(out[k], f"{key}.{k}")
        judge = out.get("judge")
        if isinstance(judge, str) and judge.startswith("hf:"):  # a local judge model
            out["judge"] = "hf:" + self.resolve(judge[3:], f"{key}.judge")
        return out


@dataclass
class _Dataset:
    index: int
    name: str
    data: str
    train: dict[str, Any]  # recipe < file's train < dataset's train, template, format
    alpha: float | None
    evaluation: dict[str, Any] | None
    unavailable: str | None


def _dataset(i: int, d: DatasetEntry, top: ExperimentFile, paths: _Paths,
             evaluation: dict[str, Any] | None) -> _Dataset:
    key = f"datasets[{i}]"
    recipe_value = d.recipe if d.recipe is not None else top.recipe
    recipe = paths.recipe(recipe_value, f"{key}.recipe" if d.recipe is not None else "recipe")
    recipe_data = recipe.pop("data", None)
    data = recipe_data if d.data is None else d.data
    if data is None:
        raise paths.error(f"{key}.data", "field required (a path, a hub id or 'synthetic'), "
                          "unless the recipe names it")
    unavailable = None
    try:
        data = paths.resolve(data, f"{key}.data")
    except ExperimentError:
        if not d.optional:
            raise
        unavailable = f"optional data {data!r} not found"
    name = d.name or ("synthetic" if _is_synthetic(data) else Path(data).stem)
    if d.name is None and d.data is None and isinstance(recipe_value, str):
        name = Path(recipe_value).stem
    train = merged(recipe, _set_fields(top.train), _set_fields(d.train),
                   {k: getattr(d, k) for k in ("template", "format") if k in d.model_fields_set})
    words = d.words if d.words is not None else _preset_words(recipe_value)
    over: dict[str, Any] | None = {}  # the dataset's own evaluation (None: none at all)
    if d.evaluation is not None:
        try:
            over = paths.evaluation(d.evaluation, f"{key}.evaluation")
        except ExperimentError as exc:
            if not d.optional or "not found" not in str(exc):
                raise
            over = None
            unavailable = unavailable or f"evaluation data {str(exc).split(': ', 2)[-1]}"
    if over is not None and (evaluation is not None or d.evaluation is not None):
        evaluation = {**(evaluation or {}), **({} if words is None else {"words": words}), **over}
    else:
        evaluation = None
    return _Dataset(i, _slug(name), data, train, d.alpha, evaluation, unavailable)


def _preset_words(recipe: Any) -> str | None:
    """The text statistics' first-N-words preset named like the recipe, if there is one."""
    if not isinstance(recipe, str):
        return None
    from ..evaluate.stats import PRESETS

    stem = Path(recipe).stem.replace("-", "_").lower()
    return stem if stem in PRESETS else None


def _model_label(spec: str) -> str:
    p = Path(spec)
    return _slug(p.stem if p.suffix.lower() == ".gguf" else (p.name or spec))


def _values(m: MethodEntry, ds: _Dataset, top: ExperimentFile) -> tuple[list[Any], ...]:
    """The alphas, norm_match values and seeds one method x dataset expands over (None:
    the recipe's or TrainConfig's default)."""
    seeds: list[Any] = list(top.seeds) or [None]
    if m.method == "none":
        return [None], [None], seeds
    alphas = m.alpha or ([ds.alpha] if ds.alpha is not None else list(top.alphas)) or [None]
    nms = (m.norm_match or list(top.norm_match) or [None]) if m.method in NORM_MATCHED else [None]
    return alphas, nms, seeds


def _expand(top: ExperimentFile, models: list[tuple[str, str]], datasets: list[_Dataset],
            output_dir: Path, where: str) -> list[GridPoint]:
    """Every point: models x datasets x methods x alphas x norm_match x seeds, in that order."""
    points: list[GridPoint] = []
    origin: dict[str, str] = {}
    methods = list(enumerate(top.methods))
    for (model, model_label), ds, (i, m) in itertools.product(models, datasets, methods):
        label = _slug(m.label) if m.label else None
        for alpha, nm, seed in itertools.product(*_values(m, ds, top)):
            point = {"alpha": alpha, "norm_match": nm, "method": m.method}
            fields = merged(ds.train, _set_fields(m.train), {
                "model": model, "data": ds.data,  # the report and evaluation name ds by extra
                "noise": {k: v for k, v in point.items() if v is not None},
                "extra": {"dataset": ds.name}}, {} if seed is None else {"seed": seed})
            try:
                cfg = TrainConfig.model_validate(fields)
            except ValidationError as exc:
                raise ExperimentError(error_lines(exc, f"{where}: methods[{i}] x datasets"
                                                  f"[{ds.index}] ({ds.name})")) from None
            eff_alpha = None if m.method == "none" else cfg.noise.alpha
            eff_nm = cfg.noise.norm_match if m.method in NORM_MATCHED else None
            name = "-".join([model_label, ds.name, m.method, *([label] if label else []),
                             *([f"a{eff_alpha:g}"] if eff_alpha is not None else []),
                             *(["nm0"] if eff_nm is False else []), f"s{cfg.seed}"])
            if name in origin:
                raise ExperimentError(f"{where}: methods[{i}]: grid point {name!r} appears "
                                      f"twice (also from {origin[name]}); give one of the "
                                      "entries a 'label'")
            origin[name] = f"methods[{i}]"
            cfg.output_dir, cfg.resume = str(output_dir / name), False
            points.append(GridPoint(
                name=name, model=model, model_label=model_label, dataset=ds.name,
                method=m.method, alpha=eff_alpha, norm_match=eff_nm, seed=cfg.seed, label=label,
                train=cfg.to_dict(), evaluation=None if ds.evaluation is None
                else dict(ds.evaluation), unavailable=ds.unavailable))
    return points


def _link_baselines(points: list[GridPoint], where: str) -> None:
    """Resolve ``reference: baseline`` to the un-noised point of the same model/data/seed."""
    for p in points:
        if not p.evaluation or p.evaluation.get("reference") != BASELINE:
            continue
        if p.method == "none":  # the baseline itself: nothing to judge it against
            p.evaluation = {k: v for k, v in p.evaluation.items()
                            if k not in ("reference", "judge", "base_url", "both_orders")}
            continue
        match = [q for q in points if q.method == "none" and q.model == p.model
                 and q.dataset == p.dataset and q.seed == p.seed]
        if not match:
            raise ExperimentError(
                f"{where}: evaluation.reference: 'baseline' needs a method 'none' point for "
                f"{p.model_label} x {p.dataset} x seed {p.seed} (point {p.name}); add 'none' "
                "to methods")
        p.baseline = match[0].name


def _read(experiment: str | os.PathLike[str]) -> tuple[Any, str, Path]:
    """(parsed YAML, its path as text, the file) of an experiment file or a shipped grid."""
    import yaml

    path = Path(experiment).expanduser()
    if not path.is_file():  # a bare name: a shipped grid (symnoise/experiments/grids/NAME.yaml)
        shipped = _SHIPPED_GRIDS / f"{path.stem}.yaml"
        if not (len(path.parts) == 1 and path.suffix in ("", ".yaml") and shipped.is_file()):
            grids = ", ".join(sorted(p.stem for p in _SHIPPED_GRIDS.glob("*.yaml")))
            raise FileNotFoundError(f"experiment file not found: {experiment} (shipped "
                                    f"grids: {grids})")
        path = shipped
    try:
        return yaml.safe_load(read_text(path)), str(path), path
    except yaml.YAMLError as exc:
        raise ExperimentError(f"{path}: not valid YAML: {exc}") from None


def load_experiment(experiment: str | os.PathLike[str] | Mapping[str, Any], *,
                    base_dir: str | os.PathLike[str] | None = None) -> Experiment:
    """Read, validate and expand an experiment (a YAML file, a shipped grid's name or a
    mapping, whose relative paths are looked up in ``base_dir`` first)."""
    if isinstance(experiment, Mapping):
        raw, where, default_name, file_dir = dict(experiment), "<experiment>", "experiment", None
    else:
        raw, where, path = _read(experiment)
        default_name, file_dir = path.stem, path.resolve().parent
    if not isinstance(raw, dict):
        raise ExperimentError(f"{where}: expected a mapping of experiment keys, got "
                              f"{type(raw).__name__}")
    top = _validate(ExperimentFile, raw, where)
    _grid_axes(top, where)
    paths = _Paths(where, Path(base_dir).resolve() if base_dir else file_dir)
    models = [(paths.resolve(m.model, f"models[{i}].model"), _slug(m.name or _model_label(m.model)))
              for i, m in enumerate(top.models)]
    if len({label for _, label in models}) != len(models):
        raise paths.error("models", "two models share a short name; give each a 'name'")
    evaluation = paths.evaluation(top.evaluation, "evaluation")
    datasets = [_dataset(i, d, top, paths, evaluation) for i, d in enumerate(top.datasets)]
    names = [d.name for d in datasets]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise paths.error("datasets", f"two datasets named {dup!r}; give each a distinct name")
    output_dir = Path(top.output_dir).expanduser().resolve()
    points = _expand(top, models, datasets, output_dir, where)
    _link_baselines(points, where)
    return Experiment(
        name=top.name or default_name, output_dir=output_dir, points=points, source=where,
        ray=top.ray.model_dump(exclude_none=True),
        accelerate_args=[str(a) for a in top.accelerate_args],
        **top.model_dump(include={"executor", "isolation", "accelerate_launch",
                                  "keep_checkpoints", "report", "description"}))
