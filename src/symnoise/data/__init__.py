"""The data layer: sources -> records -> examples -> prompts -> tokenised features.

``prepare_dataset`` runs the whole chain and reports every count on the way::

    data = prepare_dataset("alpaca_data.json", tokenizer, max_length=512)
    data.features          # [{"input_ids", "attention_mask", "labels"}, ...]
    data.summary()         # {"format": "alpaca", "template": "alpaca", "read": ..., ...}

The synthetic suite (``symnoise.data.synthetic``) is imported only when asked for.
"""

from __future__ import annotations

from .collate import PaddingCollator
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
from .sources import load_examples, load_records
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
from .tokenize import (
    IGNORE_INDEX,
    PreparedData,
    TokenizeReport,
    prepare_dataset,
    special_prefix,
    tokenize_examples,
)

__all__ = [
    "FORMATS", "TEMPLATES", "IGNORE_INDEX", "Example", "DataError", "DataReport",
    "TokenizeReport", "PreparedData", "Template", "AlpacaTemplate", "VicunaTemplate",
    "ChatTemplate", "PaddingCollator", "canonical_format", "detect_format",
    "record_to_example", "to_examples", "load_records", "get_template", "default_template_for",
    "format_prompt", "special_prefix", "tokenize_examples", "load_examples",
    "prepare_dataset",
]
