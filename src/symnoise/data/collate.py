"""Batching: pad features into tensors, or pack several examples into one row.

Features are dicts of int lists as made by :func:`symnoise.data.tokenize_examples`
(``input_ids``, ``attention_mask``, ``labels``, optionally ``position_ids``).

Packed rows carry ``position_ids`` that restart at 0 for every example, so that
``symnoise.noise`` scales noise per packed example (by its own length) and attention
implementations that understand packed sequences (e.g. flash-attention's varlen path)
keep the examples apart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from .tokenize import IGNORE_INDEX

__all__ = ["PaddingCollator", "PackingCollator", "pack_features"]

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


def pack_features(
    features: Sequence[Feature], max_length: int, *, mask_boundaries: bool = True
) -> list[Feature]:
    """Pack features, in order, into rows of at most ``max_length`` tokens (next-fit).

    Each packed row has ``input_ids``, ``attention_mask`` (all ones), ``labels`` and
    ``position_ids`` restarting at 0 at every example. With ``mask_boundaries`` the label
    of each example's first token is ``-100`` so no example learns to predict the next
    one's first token (it is a prompt token, hence already -100, for data made by
    ``tokenize_examples``). A feature longer than ``max_length`` raises ValueError.
    """
    if not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
    rows: list[Feature] = []
    current: Feature | None = None
    for i, f in enumerate(features):
        ids = list(f["input_ids"])
        n = len(ids)
        if n > max_length:
            raise ValueError(f"feature {i} has {n} tokens, more than max_length={max_length}")
        if n == 0:
            raise ValueError(f"feature {i} has no tokens")
        labels = list(f["labels"]) if "labels" in f else list(ids)
        if mask_boundaries:
            labels[0] = IGNORE_INDEX
        if current is None or len(current["input_ids"]) + n > max_length:
            current = {"input_ids": [], "attention_mask": [], "labels": [], "position_ids": []}
            rows.append(current)
        current["input_ids"].extend(ids)
        current["attention_mask"].extend([1] * n)
        current["labels"].extend(labels)
        current["position_ids"].extend(range(n))
    return rows


class PackingCollator:
    """Pack a batch's features into as few rows as fit ``max_length``, then pad.

    With ``max_length=None`` every feature of the batch goes into a single row. Returns
    ``input_ids``, ``attention_mask``, ``labels`` and ``position_ids`` (restarting at 0 at
    every example; 0 on padding). The number of rows varies from batch to batch.
    """

    def __init__(self, pad_token_id: int, *, max_length: int | None = None,
                 label_pad_id: int = IGNORE_INDEX, pad_to_multiple_of: int | None = None) -> None:
        self.max_length = max_length
        self.padder = PaddingCollator(pad_token_id, label_pad_id=label_pad_id,
                                      padding_side="right", pad_to_multiple_of=pad_to_multiple_of)

    def __call__(self, features: Sequence[Feature]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty list of features")
        limit = self.max_length
        if limit is None:  # the whole batch in one row
            limit = sum(len(f["input_ids"]) for f in features)
        return self.padder(pack_features(features, limit))
