"""Batching: pad features (:func:`~symnoise.data.tokenize_examples`) into tensors. Packed
training uses transformers' ``DataCollatorWithFlattening`` (:func:`symnoise.train.make_collator`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence

from .tokenize import IGNORE_INDEX

_PADS = {"attention_mask": 0, "labels": IGNORE_INDEX, "position_ids": 0}


class PaddingCollator:
    """Right-pad ``input_ids`` (with ``pad_token_id``), ``attention_mask`` (0), ``labels``
    (-100) and ``position_ids`` (0) into LongTensors; other keys are ignored."""

    def __init__(self, pad_token_id: int) -> None:
        if pad_token_id is None:
            raise ValueError("pad_token_id is None: set tokenizer.pad_token (e.g. to the EOS "
                             "token) first")
        self.pad_token_id = int(pad_token_id)

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty list of features")
        keys = ["input_ids", "attention_mask", *(k for k in ("labels", "position_ids")
                                                 if k in features[0])]
        rows: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            if any((k in f) != (k in features[0]) for k in ("labels", "position_ids")):
                raise ValueError(f"feature {i} has different keys from feature 0")
            for key in keys:
                row = f.get(key) or [1] * n if key == "attention_mask" else f[key]
                if len(row) != n:
                    raise ValueError(f"feature {i}: {key} has length {len(row)}, "
                                     f"input_ids has {n}")
                rows[key].append(torch.as_tensor(list(row), dtype=torch.long))
        return {k: pad_sequence(v, batch_first=True, padding_value=_PADS.get(
            k, self.pad_token_id)) for k, v in rows.items()}
