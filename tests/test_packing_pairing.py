"""SymNoise on padding-free (packed) batches: pairing, the hook's halves, TRL's packing."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_model

from symnoise import NoiseConfig, noisy_embeddings, pair_batch
from symnoise.integration import get_embedding_module

V = 64
SEGMENTS = (5, 3, 4)  # three examples packed in one row


def _packed(flash_kwargs=True):
    g = torch.Generator().manual_seed(0)
    total = sum(SEGMENTS)
    ids = torch.randint(3, V, (1, total), generator=g)
    pos = torch.cat([torch.arange(n) for n in SEGMENTS]).unsqueeze(0)
    labels = ids.clone()
    labels[pos == 0] = -100
    batch = {"input_ids": ids, "labels": labels, "position_ids": pos}
    if flash_kwargs:
        cu = torch.tensor([0, *torch.tensor(SEGMENTS).cumsum(0).tolist()], dtype=torch.int32)
        batch.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu.clone(), max_length_q=max(SEGMENTS),
                     max_length_k=max(SEGMENTS))
    return batch


def test_pair_batch_duplicates_a_packed_row_along_the_length():
    batch = _packed()
    total = sum(SEGMENTS)
    paired = pair_batch(batch)
    assert paired["input_ids"].shape == (1, 2 * total)
    torch.testing.assert_close(paired["input_ids"], torch.cat([batch["input_ids"]] * 2, dim=1))
    torch.testing.assert_close(paired["position_ids"], torch.cat([batch["position_ids"]] * 2, dim=1))
    expected_cu = [0, 5, 8, 12, 17, 20, 24]
    assert paired["cu_seq_lens_q"].tolist() == expected_cu == paired["cu_seq_lens_k"].tolist()
    assert paired["cu_seq_lens_q"].dtype == torch.int32
    assert paired["max_length_q"] == max(SEGMENTS) == paired["max_length_k"]
    seq = pair_batch({**batch, "seq_idx": torch.tensor([[0] * 5 + [1] * 3 + [2] * 4])})["seq_idx"]
    assert seq.tolist() == [[0] * 5 + [1] * 3 + [2] * 4 + [3] * 5 + [4] * 3 + [5] * 4]
    # without flash kwargs: position_ids alone mark a padding-free row
    assert pair_batch(_packed(flash_kwargs=False))["input_ids"].shape == (1, 2 * total)
    with pytest.raises(ValueError, match="cu_seq_lens_q"):
        pair_batch({**batch, "cu_seq_lens_q": torch.tensor([0, 5, 9], dtype=torch.int32)})


def test_hook_noises_the_two_halves_of_a_packed_row_per_segment():
    model = make_model(V)
    model.train()
    batch = _packed(flash_kwargs=False)
    seen = []
    model.model.layers[0].register_forward_pre_hook(
        lambda m, a, k: seen.append((a[0] if a else k["hidden_states"]).detach()), with_kwargs=True)
    clean = get_embedding_module(model)(batch["input_ids"]).detach()
    alpha = 5.0
    with noisy_embeddings(model, NoiseConfig("symnoise", alpha, seed=0)) as handle:
        out = model(**pair_batch(batch), use_cache=False)
        with pytest.raises(ValueError, match="pair_batch"):
            model(**batch, use_cache=False)  # an unpaired packed row: its halves differ
    total = sum(SEGMENTS)
    plus, minus = seen[0][:, :total] - clean, seen[0][:, total:] - clean
    torch.testing.assert_close(plus + minus, torch.zeros_like(plus), atol=1e-6, rtol=0)
    d = clean.shape[-1]
    start = 0
    for n in SEGMENTS:  # each example: |delta| = alpha / sqrt(L_seg d) / sqrt(3) per entry
        part = plus[0, start:start + n].abs()
        expected = alpha / math.sqrt(n * d) / math.sqrt(3)
        torch.testing.assert_close(part, torch.full_like(part, expected), rtol=1e-5, atol=1e-7)
        start += n
    assert torch.isfinite(out.loss) and handle.calls == 2


def test_packed_pair_loss_is_the_mean_over_both_halves():
    """The paired packed row's loss is the mean of the +delta and -delta halves' losses
    (attention never crosses halves: the second copy restarts its position ids)."""
    model = make_model(V, seed=3)
    model.train()
    batch = _packed(flash_kwargs=False)
    total = sum(SEGMENTS)
    with noisy_embeddings(model, NoiseConfig("symnoise", 5.0, seed=1)):
        paired_loss = model(**pair_batch(batch), use_cache=False).loss
    # the same delta (same seed, same draw shape) as two separate passes over the row
    halves = []
    with noisy_embeddings(model, NoiseConfig("symnoise", 5.0, seed=1, symmetric_mode="sequential")) as hd:
        for sign in ("plus", "minus"):
            with hd.phase(sign):
                halves.append(model(**batch, use_cache=False).loss)
    n_labels = int((batch["labels"][:, 1:] != -100).sum())
    assert n_labels > 0
    torch.testing.assert_close(paired_loss, (halves[0] + halves[1]) / 2, rtol=1e-5, atol=1e-6)
    assert total == batch["input_ids"].shape[1] and not torch.allclose(halves[0], halves[1])


def _sft_dataset():
    from datasets import Dataset

    rows = [{"prompt": f"sort the numbers {w} two", "completion": f" {w} two three"}
            for w in ("one", "four", "five", "six", "seven", "eight", "nine", "ten")]
    return Dataset.from_list(rows * 2)


@pytest.mark.parametrize("method,mode", [("symnoise", "concat"), ("symnoise", "sequential"),
                                         ("uniform", "concat")])
def test_trl_packing_with_noisy_sft_trainer(tmp_path, method, mode):
    trl = pytest.importorskip("trl")
    from conftest import make_tokenizer

    from symnoise import NoisySFTTrainer

    tok = make_tokenizer()
    tok.pad_token = tok.eos_token
    model = make_model(len(tok), seed=7, attn_implementation="sdpa")
    cfg = trl.SFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=3,
                        report_to=[], use_cpu=True, save_strategy="no", max_length=64,
                        packing=True, padding_free=True, logging_steps=1, learning_rate=1e-3)
    trainer = NoisySFTTrainer(model=model, args=cfg, train_dataset=_sft_dataset(),
                              processing_class=tok,
                              noise_config=NoiseConfig(method, 5.0, symmetric_mode=mode, seed=0))
    shapes, decoder_in, embeds = [], [], []
    model.register_forward_pre_hook(
        lambda m, a, k: shapes.append((tuple(k["input_ids"].shape), k.get("position_ids"),
                                       k.get("attention_mask"))), with_kwargs=True)
    emb = get_embedding_module(model)
    emb.register_forward_hook(lambda m, a, o: embeds.append(o.detach().clone()))
    # one decoder input per model forward (some transformers versions run layer 0's
    # pre-hooks twice in one forward)
    model.model.layers[0].register_forward_pre_hook(
        lambda m, a, k: decoder_in.append((a[0] if a else k["hidden_states"]).detach())
        if len(decoder_in) < len(shapes) else None, with_kwargs=True)
    out = trainer.train()
    assert out.global_step == 3 and math.isfinite(out.training_loss)
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    (rows, length), pos, attn = shapes[0]
    assert rows == 1 and attn is None and pos is not None  # TRL's padding-free layout
    starts = (pos[0] == 0).nonzero().flatten().tolist() + [length]
    seg_lengths = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    d = embeds[0].shape[-1]
    if method == "symnoise" and mode == "concat":
        half = length // 2
        delta_plus = decoder_in[0][:, :half] - embeds[0][:, :half]
        delta_minus = decoder_in[0][:, half:] - embeds[0][:, half:]
        torch.testing.assert_close(delta_plus + delta_minus, torch.zeros_like(delta_plus),
                                   atol=1e-6, rtol=0)
        seg_lengths = seg_lengths[: len(seg_lengths) // 2]
        delta = delta_plus
    else:
        delta = decoder_in[0] - embeds[0]
    assert len(seg_lengths) >= 2  # several examples really were packed in the row
    start = 0
    for n in seg_lengths:
        part = delta[0, start:start + n].abs()
        bound = 5.0 / math.sqrt(n * d)
        if method == "uniform":
            assert part.max() <= bound + 1e-6 and part.max() > 0.5 * bound
        else:
            expected = torch.full_like(part, bound / math.sqrt(3))
            torch.testing.assert_close(part, expected, rtol=1e-5, atol=1e-7)
        start += n
    if mode == "sequential" and method == "symnoise":
        torch.testing.assert_close(decoder_in[0] + decoder_in[1], 2 * embeds[1], atol=1e-6, rtol=0)


def test_pairing_transformers_flattening_collator_with_flash_kwargs():
    from transformers import DataCollatorWithFlattening

    collate = DataCollatorWithFlattening(return_flash_attn_kwargs=True, return_seq_idx=True)
    g = torch.Generator().manual_seed(1)
    feats = [{"input_ids": torch.randint(3, V, (n,), generator=g).tolist()} for n in SEGMENTS]
    batch = collate(feats)
    total = sum(SEGMENTS)
    assert batch["input_ids"].shape == (1, total) and "attention_mask" not in batch
    paired = pair_batch(batch)
    cu = batch["cu_seq_lens_q"]
    assert paired["cu_seq_lens_q"].tolist() == cu.tolist() + (cu[1:] + total).tolist()
    assert paired["labels"].shape == (1, 2 * total)
    assert int((paired["position_ids"] == 0).sum()) == 2 * len(SEGMENTS)
    n_seq = int(batch["seq_idx"].max()) + 1
    assert paired["seq_idx"][0, total:].tolist() == (batch["seq_idx"][0] + n_seq).tolist()
    # the model takes the paired packed batch (sdpa on CPU ignores the flash kwargs)
    model = make_model(V)
    model.train()
    with noisy_embeddings(model, NoiseConfig("symnoise", 5.0, seed=0)) as handle:
        kwargs = {k: v for k, v in paired.items() if k in ("input_ids", "labels", "position_ids")}
        assert torch.isfinite(model(**kwargs, use_cache=False).loss)
    assert handle.calls == 1 and len(handle.norm_ratios) == 1
