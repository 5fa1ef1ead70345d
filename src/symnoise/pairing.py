"""Pairing a batch for SymNoise ``concat`` mode: each example twice, as ``[X; X]``.

A padded batch of ``B`` rows becomes ``2B`` rows. A padding-free (packed) batch, one row of
several examples told apart by ``position_ids`` (and, for flash attention, by
``cu_seq_lens_q/k``, ``max_length_q/k`` and possibly ``seq_idx``), becomes one row of twice
the length: the second copy restarts its position ids and its boundaries are offset by the
row's length, so attention never crosses the copies, each example keeps its own length
for the noise scale, and the loss is the mean over both halves. A vision-language batch's
image inputs (``pixel_values``, ``image_grid_thw``, ``image_sizes``...: one entry per image
or patch, not per row) are doubled the same way, so the copies see the same images. The noise hook
(:mod:`symnoise.integration`) then turns the halves into ``X + delta`` and ``X - delta``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["pair_batch", "is_packed"]

_PAIR_KEYS_SKIP = frozenset({"num_items_in_batch", "return_loss", "use_cache"})
_CU_KEYS = ("cu_seq_lens_q", "cu_seq_lens_k")
_MAXLEN_KEYS = ("max_length_q", "max_length_k")


def _per_image(key: str) -> bool:
    return key.startswith(("pixel_", "image_", "video_")) or key.endswith("_grid_thw")


def is_packed(batch: Mapping[str, Any]) -> bool:
    """A padding-free batch: flash-attention boundaries, or one row of several examples
    told apart by ``position_ids`` alone."""
    if any(k in batch for k in _CU_KEYS):
        return True
    pos = batch.get("position_ids")
    if not isinstance(pos, torch.Tensor) or batch.get("attention_mask") is not None:
        return False
    return pos.dim() == 2 and pos.shape[0] == 1 and int((pos == 0).sum()) > 1


def _pair_packed(batch: Mapping[str, Any]) -> dict[str, Any]:
    """Concatenate a padding-free row with itself and extend the sequence boundaries."""
    ref = batch.get("input_ids", batch.get("position_ids"))
    length = ref.shape[1]
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if key in _PAIR_KEYS_SKIP or key in _MAXLEN_KEYS or not isinstance(value, torch.Tensor):
            out[key] = value  # max_length_q/k: the longest example is unchanged
        elif value.dim() == 0:
            out[key] = value
        elif key in _CU_KEYS:
            if int(value[-1]) != length:
                raise ValueError(f"cannot pair packed batch: {key!r} ends at {int(value[-1])}, "
                                 f"but the row has {length} tokens")
            out[key] = torch.cat([value, value[1:] + value[-1]])
        elif key == "seq_idx":
            out[key] = torch.cat([value, value + value.max() + 1], dim=-1)
        elif value.dim() >= 2 and value.shape[0] == 1 and value.shape[1] == length:
            out[key] = torch.cat([value, value], dim=1)
        else:
            raise ValueError(f"cannot pair packed batch: {key!r} has shape {tuple(value.shape)}, "
                             f"expected (1, {length}, ...)")
    return out


def pair_batch(batch: Mapping[str, Any], blocks: int = 1) -> dict[str, Any]:
    """Pair ``batch`` for SymNoise ``concat`` mode.

    A padded batch of ``B`` rows becomes ``2B`` rows (rows ``B..2B-1`` repeat rows
    ``0..B-1``); with ``blocks`` > 1 the rows are that many blocks each repeated in place
    (``[C; R]`` -> ``[C; C; R; R]``: TRL's DPO batch, chosen rows then rejected rows). A
    padding-free batch (one row of packed examples with ``position_ids`` and possibly
    ``cu_seq_lens_q/k``, ``max_length_q/k``, ``seq_idx``) becomes one row of twice the
    length, the second copy's boundaries offset by the row's length. Either way the model
    then sees ``[X+delta; X-delta]`` and the loss is the mean over both halves.
    Non-tensor entries and scalars are passed through.
    """
    if is_packed(batch):
        if blocks != 1:
            raise ValueError(f"cannot pair a padding-free batch in {blocks} blocks")
        return _pair_packed(batch)
    out: dict[str, Any] = {}
    batch_size = None
    for key, value in batch.items():
        if key in _PAIR_KEYS_SKIP or not isinstance(value, torch.Tensor) or value.dim() == 0:
            out[key] = value
            continue
        if _per_image(key):  # one entry per image or patch, not per row
            out[key] = torch.cat([value, value])
            continue
        batch_size = value.shape[0] if batch_size is None else batch_size
        if value.shape[0] != batch_size or batch_size % blocks:
            raise ValueError(f"cannot pair batch: {key!r} has {value.shape[0]} rows, expected "
                             f"{batch_size} in {blocks} equal blocks")
        out[key] = torch.cat([c for chunk in value.chunk(blocks) for c in (chunk, chunk)])
    return out
