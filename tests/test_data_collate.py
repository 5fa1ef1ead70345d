"""Collators: padding shapes/values; noise scaled per example in the packed rows training makes."""

from __future__ import annotations

import math

import pytest
import torch

from symnoise.data import IGNORE_INDEX, PaddingCollator


def feat(ids, n_prompt):
    return {
        "input_ids": list(ids),
        "attention_mask": [1] * len(ids),
        "labels": [IGNORE_INDEX] * n_prompt + list(ids[n_prompt:]),
    }


FEATS = [feat([5, 6, 7, 8, 9], 2), feat([10, 11, 12], 1), feat([13, 14, 15, 16], 3)]


def test_right_padding_values():
    batch = PaddingCollator(0)(FEATS)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert all(t.dtype == torch.long and t.shape == (3, 5) for t in batch.values())
    assert batch["input_ids"].tolist() == [
        [5, 6, 7, 8, 9],
        [10, 11, 12, 0, 0],
        [13, 14, 15, 16, 0],
    ]
    assert batch["attention_mask"].tolist() == [[1] * 5, [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]]
    assert batch["labels"].tolist() == [
        [-100, -100, 7, 8, 9],
        [-100, 11, 12, -100, -100],
        [-100, -100, -100, 16, -100],
    ]


def test_padding_errors():
    with pytest.raises(ValueError, match="pad_token_id is None"):
        PaddingCollator(None)
    with pytest.raises(ValueError, match="feature 1 has different keys"):
        PaddingCollator(0)([FEATS[0], {"input_ids": [1]}])
    bad = {"input_ids": [1, 2], "attention_mask": [1], "labels": [1, 2]}
    with pytest.raises(ValueError, match="feature 0: attention_mask has length 1"):
        PaddingCollator(0)([bad])


def test_packed_row_noise_scale_per_example():
    """--packing trains on transformers' DataCollatorWithFlattening (train.make_collator):
    one row, position_ids restarting at every example, the first label of each masked.
    The noise is scaled per packed example: alpha / sqrt(L_example * d)."""
    from transformers import DataCollatorWithFlattening

    from symnoise.noise import noise_scale

    batch = DataCollatorWithFlattening(return_position_ids=True)(FEATS)
    assert batch["input_ids"].tolist() == [list(range(5, 17))]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 3]]
    assert batch["labels"].tolist() == [[-100, -100, 7, 8, 9, -100, 11, 12, -100, -100, -100, 16]]
    d, alpha = 6, 5.0
    scale = noise_scale(torch.zeros(1, 12, d), batch.get("attention_mask"), alpha=alpha,
                        position_ids=batch["position_ids"])[0, :, 0]
    expect = [alpha / math.sqrt(n * d) for n in (5, 3, 4) for _ in range(n)]
    assert torch.allclose(scale, torch.tensor(expect))
