"""Batching: pad features into tensors.

Features are dicts of int lists as made by :func:`symnoise.data.tokenize_examples`
(``input_ids``, ``attention_mask``, ``labels``, optionally ``position_ids``). Packed
(padding-free) training uses transformers' ``DataCollatorWithFlattening``
(:func:`symnoise.train.make_collator`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from .tokenize import IGNORE_INDEX

__all__ = ["PaddingCollator"]

Feature = dict[str, Any]


class PaddingCollator:
    """Pad a list of features into a batch of LongTensors.

    Returns ``input_ids`` (padded with ``pad_token_id``), ``attention_mask`` (0 on
    padding), ``labels`` (``label_pad_id`` on padding; present when the features have
    labels) and ``position_ids`` (0 on padding; present when the features have them).
    Other keys of the features are ignored.
    """

    def __init__(self, pad_token_id: int, *, label_pad_id: int = IGNORE_INDEX,
                 padding_side: str = "right", pad_to_multiple_of: int | None = None) -> None:
        if pad_token_id is None:
            raise ValueError("pad_token_id is None: set tokenizer.pad_token (e.g. to the EOS "
                             "token) first")
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of must be >= 1, got {pad_to_multiple_of!r}")
        self.pad_token_id = int(pad_token_id)
        self.label_pad_id = int(label_pad_id)
        self.padding_side = padding_side
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Sequence[Feature]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty list of features")
        width = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            width = math.ceil(width / self.pad_to_multiple_of) * self.pad_to_multiple_of
        has_labels = "labels" in features[0]
        has_pos = "position_ids" in features[0]
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            for key in ("attention_mask", "labels", "position_ids"):
                if key in f and len(f[key]) != n:
                    raise ValueError(f"feature {i}: {key} has length {len(f[key])}, "
                                     f"input_ids has {n}")
            if has_labels != ("labels" in f) or has_pos != ("position_ids" in f):
                raise ValueError(f"feature {i} has different keys from feature 0")

        def pad(rows: list[Any], value: int) -> torch.Tensor:
            out = torch.full((len(rows), width), value, dtype=torch.long)
            for r, row in enumerate(rows):
                start = 0 if self.padding_side == "right" else width - len(row)
                out[r, start : start + len(row)] = torch.as_tensor(list(row), dtype=torch.long)
            return out

        batch = {"input_ids": pad([f["input_ids"] for f in features], self.pad_token_id),
                 "attention_mask": pad([f.get("attention_mask") or [1] * len(f["input_ids"])
                                        for f in features], 0)}
        for key, value in (("labels", self.label_pad_id), ("position_ids", 0)):
            if key in features[0]:
                batch[key] = pad([f[key] for f in features], value)
        return batch
