"""The data layer: sources -> records -> examples -> prompts -> tokenised features
(README, "Python API" 6 and Architecture); the synthetic suite is imported only when asked for."""

from __future__ import annotations

from .collate import PaddingCollator
from .formats import DataError, Example
from .sources import load_examples, load_records
from .templates import format_prompt, get_template
from .tokenize import IGNORE_INDEX, prepare_dataset, tokenize_examples

__all__ = ["DataError", "Example", "IGNORE_INDEX", "PaddingCollator", "format_prompt",
           "get_template", "load_examples", "load_records", "prepare_dataset",
           "tokenize_examples"]
