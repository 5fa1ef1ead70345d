"""The data layer: sources -> records -> examples -> prompts -> tokenised features.

``prepare_dataset`` runs the whole chain and reports every count on the way::

    data = prepare_dataset("alpaca_data.json", tokenizer, max_length=512)
    data.features          # [{"input_ids", "attention_mask", "labels"}, ...]
    data.summary()         # {"format": "alpaca", "template": "alpaca", "read": ..., ...}

The synthetic suite (``symnoise.data.synthetic``) is imported only when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .collate import PackingCollator, PaddingCollator, pack_features
from .formats import (
    FORMATS,
    DataError,
    DataReport,
    Example,
    canonical_format,
    detect_format,
    record_to_example,
    to_examples,
)
from .sources import load_records
from .templates import (
    TEMPLATES,
    AlpacaTemplate,
    ChatTemplate,
    Template,
    VicunaTemplate,
    default_template_for,
    format_prompt,
    get_template,
)
from .tokenize import IGNORE_INDEX, TokenizeReport, special_prefix, tokenize_examples

__all__ = [
    "FORMATS",
    "TEMPLATES",
    "IGNORE_INDEX",
    "Example",
    "DataError",
    "DataReport",
    "TokenizeReport",
    "PreparedData",
    "Template",
    "AlpacaTemplate",
    "VicunaTemplate",
    "ChatTemplate",
    "PaddingCollator",
    "PackingCollator",
    "canonical_format",
    "detect_format",
    "record_to_example",
    "to_examples",
    "load_records",
    "get_template",
    "default_template_for",
    "format_prompt",
    "special_prefix",
    "tokenize_examples",
    "pack_features",
    "load_examples",
    "prepare_dataset",
]


@dataclass
class PreparedData:
    """Everything :func:`prepare_dataset` produced.

    features[i] was made from examples[i] (examples dropped at tokenisation are not in
    ``examples``). format: the data format used (detected when ``fmt="auto"``);
    template: the template's name.
    """

    features: list[dict[str, list[int]]]
    examples: list[Example]
    format: str
    template: str
    source: str
    data_report: DataReport
    tokenize_report: TokenizeReport
    max_length: int
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.features)

    def summary(self) -> dict[str, Any]:
        """Counts and choices for the run record (``run.json``)."""
        d, t = self.data_report, self.tokenize_report
        return {
            "source": self.source,
            "format": self.format,
            "format_detected": d.detected,
            "template": self.template,
            "max_length": self.max_length,
            "read": d.read,
            "used": d.used,
            "skipped": d.skipped,
            "skipped_reasons": list(d.skipped_reasons),
            "limited": d.limited,
            "multi_turn_cut": d.multi_turn_cut,
            "system_turns": d.system_turns,
            "features": t.n_out,
            "truncated": t.truncated,
            "dropped_no_response": t.dropped_no_response,
            "total_tokens": t.total_tokens,
            "response_tokens": t.response_tokens,
            "max_len_seen": t.max_len_seen,
        }


def load_examples(
    source: Any,
    *,
    fmt: str = "auto",
    skip_bad_rows: bool = False,
    max_examples: int | None = None,
    split: str = "train",
    synthetic_n: int | None = None,
    synthetic_seed: int = 0,
) -> tuple[list[Example], DataReport]:
    """Load ``source`` (see :func:`load_records`) and parse it into examples.

    ``max_examples`` keeps the first N valid examples (the rest are counted as
    ``limited``); every row is still checked.
    """
    if max_examples is not None and (not isinstance(max_examples, int) or max_examples < 0):
        raise ValueError(f"max_examples must be a non-negative integer, got {max_examples!r}")
    records, name = load_records(
        source, split=split, synthetic_n=synthetic_n, synthetic_seed=synthetic_seed
    )
    examples, report = to_examples(records, fmt, name, skip_bad_rows=skip_bad_rows)
    if max_examples is not None and len(examples) > max_examples:
        report.limited = len(examples) - max_examples
        examples = examples[:max_examples]
        report.used = len(examples)
    return examples, report


def prepare_dataset(
    source: Any,
    tokenizer: Any,
    *,
    fmt: str = "auto",
    template: str | Template | None = None,
    max_length: int = 512,
    skip_bad_rows: bool = False,
    max_examples: int | None = None,
    split: str = "train",
    synthetic_n: int | None = None,
    synthetic_seed: int = 0,
    add_eos: bool = True,
) -> PreparedData:
    """Load, parse, template and tokenise ``source`` for response-only fine-tuning.

    template None: the paper's choice for the format (:func:`default_template_for`).
    Raises DataError (bad file/row/format), FileNotFoundError (missing path) or
    ValueError (unknown template, tokenizer without EOS).
    """
    examples, data_report = load_examples(
        source,
        fmt=fmt,
        skip_bad_rows=skip_bad_rows,
        max_examples=max_examples,
        split=split,
        synthetic_n=synthetic_n,
        synthetic_seed=synthetic_seed,
    )
    tmpl = get_template(
        template if template is not None else default_template_for(data_report.format),
        tokenizer,
    )
    features, tok_report = tokenize_examples(
        examples, tokenizer, tmpl, max_length=max_length, add_eos=add_eos
    )
    kept = [examples[i] for i in tok_report.kept_indices]
    return PreparedData(
        features=features,
        examples=kept,
        format=data_report.format,
        template=tmpl.name,
        source=data_report.source,
        data_report=data_report,
        tokenize_report=tok_report,
        max_length=max_length,
    )
