"""The data layer: sources -> records -> examples -> prompts -> tokenised features.

``prepare_dataset`` runs the whole chain and reports every count on the way::

    data = prepare_dataset("alpaca_data.json", tokenizer, max_length=512)
    data.features          # [{"input_ids", "attention_mask", "labels"}, ...]
    data.summary()         # {"format": "alpaca", "template": "alpaca", "read": ..., ...}

The synthetic suite (``symnoise.data.synthetic``) is imported only when asked for.
"""

from __future__ import annotations

from .collate import PaddingCollator
from .formats import DataError, Example
from .sources import load_examples, load_records
from .templates import format_prompt, get_template
from .tokenize import IGNORE_INDEX, prepare_dataset, tokenize_examples

# What the README's Python API shows (formats, templates and reports: their modules).
__all__ = ["DataError", "Example", "IGNORE_INDEX", "PaddingCollator", "format_prompt",
           "get_template", "load_examples", "load_records", "prepare_dataset",
           "tokenize_examples"]
