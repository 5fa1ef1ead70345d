"""Padding-free training (``--packing``): the packed batch, attention kept within each
example, response-only loss, per-example noise scale, and end-to-end runs."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import make_model, make_tokenizer

from symnoise import noisy_embeddings, pair_batch
from symnoise.config import NoiseConfig
from symnoise.train import make_collator, train

PROMPT_LENS = (5, 9, 3)


def _features(lengths=(12, 20, 7), vocab=60, seed=0):
    """Features shaped like tokenize_examples' output: response-only labels."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for n, p in zip(lengths, PROMPT_LENS, strict=True):
        ids = torch.randint(3, vocab, (n,), generator=g).tolist()
        out.append({"input_ids": ids, "attention_mask": [1] * n,
                    "labels": [-100] * p + ids[p:]})
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny model loaded from disk the way ``symnoise train`` loads it."""
    from symnoise.config import TrainConfig
    from symnoise.train import load_model

    tok = make_tokenizer()
    path = tmp_path_factory.mktemp("tiny")
    make_model(len(tok), seed=0).save_pretrained(path)
    tok.save_pretrained(path)
    model, tok, _, _ = load_model(TrainConfig(model=str(path), packing=True))
    return model.eval(), tok


def test_packed_batch_is_one_row_with_restarting_positions_and_our_labels(tiny):
    _, tok = tiny
    feats = _features()
    batch = make_collator(tok, packing=True)(feats)
    total = sum(len(f["input_ids"]) for f in feats)
    assert batch["input_ids"].shape == (1, total) and "attention_mask" not in batch
    pos = batch["position_ids"][0].tolist()
    assert pos == [i for f in feats for i in range(len(f["input_ids"]))]
    labels = batch["labels"][0].tolist()
    expected = [lab for f in feats for lab in [-100] + f["labels"][1:]]
    assert labels == expected  # response-only labels kept; each example's first is -100


def test_packed_logits_equal_separate_forwards(tiny):
    model, tok = tiny
    feats = _features()
    batch = make_collator(tok, packing=True)(feats)
    with torch.no_grad():
        packed = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0]
        alone = [model(input_ids=torch.tensor([f["input_ids"]])).logits[0] for f in feats]
        # the same row with a plain all-ones mask lets attention cross examples
        crossed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                        attention_mask=torch.ones_like(batch["input_ids"])).logits[0]
    assert model.config._attn_implementation in ("sdpa", "eager")
    torch.testing.assert_close(packed, torch.cat(alone), atol=1e-5, rtol=1e-5)
    n0 = len(feats[0]["input_ids"])
    assert (crossed[n0:] - torch.cat(alone)[n0:]).abs().max() > 1e-3  # the check can fail


def test_packed_loss_is_the_response_only_loss_of_the_examples(tiny):
    model, tok = tiny
    feats = _features()
    batch = make_collator(tok, packing=True)(feats)
    with torch.no_grad():
        packed = model(**batch).loss
        total, count = 0.0, 0
        for f in feats:
            n = sum(1 for lab in f["labels"][1:] if lab != -100)
            loss = model(input_ids=torch.tensor([f["input_ids"]]),
                         labels=torch.tensor([f["labels"]])).loss
            total, count = total + float(loss) * n, count + n
    assert float(packed) == pytest.approx(total / count, rel=1e-5)


def _captured_delta(model, batch, cfg: NoiseConfig, *, phase=None):
    """Noise added by the real hook: noised embeddings minus clean ones."""
    emb = model.get_input_embeddings()
    seen = []
    model.train()
    try:
        with noisy_embeddings(model, cfg) as handle:
            hook = emb.register_forward_hook(lambda m, a, out: seen.append(out.detach()))
            ctx = handle.phase(phase) if phase else torch.enable_grad()
            with ctx:
                model(**batch)
            hook.remove()
    finally:
        model.eval()
    clean = emb(batch["input_ids"]).detach()
    return seen[0] - torch.cat([clean] * (seen[0].shape[0] // clean.shape[0]))


@pytest.mark.parametrize("method,mode,norm_match", [
    ("bernoulli", "concat", True), ("bernoulli", "concat", False),
    ("symnoise", "sequential", True), ("symnoise", "concat", True)])
def test_per_segment_noise_magnitude_through_the_hook(tiny, method, mode, norm_match):
    model, tok = tiny
    feats = _features()
    batch = make_collator(tok, packing=True)(feats)
    alpha = 5.0
    cfg = NoiseConfig(method=method, alpha=alpha, norm_match=norm_match, symmetric_mode=mode,
                      seed=0)
    if method == "symnoise" and mode == "concat":
        batch = pair_batch(batch)
    delta = _captured_delta(model, batch, cfg,
                            phase="plus" if mode == "sequential" and method == "symnoise"
                            else None)
    d = model.config.hidden_size
    c = 1 / math.sqrt(3) if norm_match else 1.0
    start = 0
    for f in feats:
        n = len(f["input_ids"])
        seg = delta[:, start:start + n]
        expected = torch.full_like(seg, alpha / math.sqrt(n * d) * c)
        torch.testing.assert_close(seg.abs(), expected, atol=1e-6, rtol=1e-4)
        start += n
    if delta.shape[0] == 2:  # concat: the second half is X - delta
        torch.testing.assert_close(delta[1], -delta[0])


def test_uniform_noise_stays_within_each_segments_bound(tiny):
    model, tok = tiny
    feats = _features(lengths=(40, 10, 25))
    batch = make_collator(tok, packing=True)(feats)
    delta = _captured_delta(model, batch, NoiseConfig(method="uniform", alpha=5.0, seed=0))
    d, start = model.config.hidden_size, 0
    for f in feats:
        n = len(f["input_ids"])
        bound = 5.0 / math.sqrt(n * d)
        top = float(delta[0, start:start + n].abs().max())
        assert 0.9 * bound < top <= bound * (1 + 1e-5)  # scaled by the example's own length
        start += n


ROWS = [
    {"instruction": "sort the numbers", "input": "three one two", "output": "one two three"},
    {"instruction": "count the letters", "input": "", "output": "five"},
    {"instruction": "reverse the words", "input": "red green blue", "output": "blue green red"},
    {"instruction": "give the answer", "input": "two + two", "output": "four"},
] * 6


@pytest.mark.parametrize("method,mode", [("uniform", "concat"), ("symnoise", "sequential"),
                                         ("symnoise", "concat")])
def test_training_with_packing_end_to_end(tmp_path, method, mode):
    tok = make_tokenizer()
    model_dir = tmp_path / "tiny"
    make_model(len(tok), seed=0).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    data = tmp_path / "data.json"
    data.write_text(json.dumps(ROWS))
    out = train(model=str(model_dir), data=str(data), output_dir=str(tmp_path / "run"),
                max_steps=3, batch_size=4, lr=1e-3, logging_steps=1, eval_fraction=0.2,
                save_steps=0, max_length=64, seed=0, packing=True,
                noise={"method": method, "symmetric_mode": mode})
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "completed" and info["global_step"] == 3
    assert info["config"]["packing"] is True and info["pad_tokens"] == 0
    assert info["tokens_seen"] > 0 and math.isfinite(info["train_loss"])
    assert math.isfinite(info["final_clean_eval_loss"])
