"""Collators: padding shapes/values, packing with restarting position ids."""

from __future__ import annotations

import math

import pytest
import torch

from symnoise.data import IGNORE_INDEX, PackingCollator, PaddingCollator, pack_features


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


def test_left_padding_and_multiple_of():
    batch = PaddingCollator(3, padding_side="left", pad_to_multiple_of=4, label_pad_id=-1)(
        FEATS[1:]
    )
    assert batch["input_ids"].shape == (2, 4 * math.ceil(4 / 4))
    assert batch["input_ids"].tolist() == [[3, 10, 11, 12], [13, 14, 15, 16]]
    assert batch["attention_mask"].tolist() == [[0, 1, 1, 1], [1, 1, 1, 1]]
    assert batch["labels"].tolist() == [[-1, -100, 11, 12], [-100, -100, -100, 16]]
    batch = PaddingCollator(0, pad_to_multiple_of=8)(FEATS)
    assert batch["input_ids"].shape == (3, 8)
    assert batch["attention_mask"].sum().item() == 12


def test_padding_errors():
    with pytest.raises(ValueError, match="pad_token_id is None"):
        PaddingCollator(None)
    with pytest.raises(ValueError, match="padding_side"):
        PaddingCollator(0, padding_side="middle")
    bad = {"input_ids": [1, 2], "attention_mask": [1], "labels": [1, 2]}
    with pytest.raises(ValueError, match="feature 0: attention_mask has length 1"):
        PaddingCollator(0)([bad])


def test_pack_features_position_ids_restart():
    rows = pack_features(FEATS, max_length=9)
    # next-fit in order: [5 + 3] tokens fit in 9, the 4-token feature opens a new row
    assert [len(r["input_ids"]) for r in rows] == [8, 4]
    assert rows[0]["input_ids"] == [5, 6, 7, 8, 9, 10, 11, 12]
    assert rows[0]["position_ids"] == [0, 1, 2, 3, 4, 0, 1, 2]
    assert rows[0]["attention_mask"] == [1] * 8
    assert rows[0]["labels"] == [-100, -100, 7, 8, 9, -100, 11, 12]
    assert rows[1]["position_ids"] == [0, 1, 2, 3]
    assert sum(len(r["input_ids"]) for r in rows) == sum(len(f["input_ids"]) for f in FEATS)
    with pytest.raises(ValueError, match="feature 0 has 5 tokens, more than max_length=4"):
        pack_features(FEATS, max_length=4)


def test_pack_masks_first_label_of_each_example():
    plain = [{"input_ids": [1, 2, 3]}, {"input_ids": [4, 5]}]
    row = pack_features(plain, max_length=10)[0]
    assert row["labels"] == [-100, 2, 3, -100, 5]
    row = pack_features(plain, max_length=10, mask_boundaries=False)[0]
    assert row["labels"] == [1, 2, 3, 4, 5]


def test_packing_collator_batch_and_noise_scale():
    from symnoise.noise import noise_scale

    batch = PackingCollator(0, max_length=9)(FEATS)
    assert set(batch) == {"input_ids", "attention_mask", "labels", "position_ids"}
    assert batch["input_ids"].shape == (2, 8)
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2], [0, 1, 2, 3, 0, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1] * 8, [1, 1, 1, 1, 0, 0, 0, 0]]
    assert batch["labels"][1].tolist() == [-100, -100, -100, 16, -100, -100, -100, -100]
    # noise is scaled per packed example: alpha / sqrt(L_example * d), 0 on padding
    d, alpha = 6, 5.0
    embeds = torch.zeros(2, 8, d)
    scale = noise_scale(
        embeds, batch["attention_mask"], alpha=alpha, position_ids=batch["position_ids"]
    )[..., 0]
    expect = [[alpha / math.sqrt(5 * d)] * 5 + [alpha / math.sqrt(3 * d)] * 3]
    expect.append([alpha / math.sqrt(4 * d)] * 4 + [0.0] * 4)
    assert torch.allclose(scale, torch.tensor(expect))
    one_row = PackingCollator(0)(FEATS)
    assert one_row["input_ids"].shape == (1, 12)
    assert one_row["position_ids"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 3]]
