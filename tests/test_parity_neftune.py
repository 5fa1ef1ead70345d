"""Parity of method='uniform' with transformers' own NEFTune (neftune_noise_alpha).

On an unpadded batch both draw U(-b, b) with b = alpha / sqrt(L d). On a padded batch
transformers counts padding in L (a smaller b) and noises the padding; symnoise does not.
"""

from __future__ import annotations

import math

import torch
from conftest import make_model

from symnoise import NoiseConfig, noisy_embeddings
from symnoise.integration import get_embedding_module

V, B, L, ALPHA, DRAWS = 64, 8, 16, 5.0, 30


def _neftune(model):
    try:
        from transformers.integrations.neftune import activate_neftune
    except ImportError:  # transformers 4.x: the Trainer's hook lives in trainer_utils
        from transformers.trainer_utils import neftune_post_forward_hook

        emb = get_embedding_module(model)
        emb.neftune_noise_alpha = ALPHA
        return emb.register_forward_hook(neftune_post_forward_hook)
    return activate_neftune(model, ALPHA)


def _draws(model, batch, ours: bool, seed: int = 1, draws: int = DRAWS) -> torch.Tensor:
    """Noise the embedding module added, over DRAWS training forwards: (DRAWS, B, L, d)."""
    emb = get_embedding_module(model)
    clean = emb(batch["input_ids"]).detach()
    out = []
    capture = lambda m, a, o: out.append(o.detach() - clean)  # noqa: E731
    model.train()
    if ours:
        with noisy_embeddings(model, NoiseConfig("uniform", ALPHA, seed=seed)):
            h = emb.register_forward_hook(capture)  # runs after the noise hook
            for _ in range(draws):
                model(**batch, use_cache=False)
    else:
        hf = _neftune(model)
        h = emb.register_forward_hook(capture)
        torch.manual_seed(0)
        for _ in range(draws):
            model(**batch, use_cache=False)
        hf.remove()
    h.remove()
    return torch.stack(out)


def _batch(padded: bool):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, V, (B, L), generator=g)
    mask = torch.ones(B, L, dtype=torch.long)
    if padded:
        mask[1, 4:] = 0  # 4 real tokens out of 16
    return {"input_ids": ids, "attention_mask": mask}


def test_uniform_has_neftune_bound_and_std_on_unpadded_batch():
    model = make_model(V, num_hidden_layers=1)
    batch = _batch(padded=False)
    d = get_embedding_module(model).embedding_dim
    bound = ALPHA / math.sqrt(L * d)
    ours, theirs = _draws(model, batch, ours=True), _draws(model, batch, ours=False)
    assert ours.numel() == theirs.numel() == DRAWS * B * L * d  # 122880 draws each
    for noise in (ours, theirs):
        assert noise.abs().max() <= bound * (1 + 1e-6)
        assert noise.abs().max() >= 0.999 * bound  # the bound is reached, not a smaller one
        std = noise.std().item()
        assert abs(std / (bound / math.sqrt(3)) - 1) < 0.02
        # the 2% tolerance cannot pass by accident: alpha off by 5% fails it
        assert abs(std / (1.05 * bound / math.sqrt(3)) - 1) > 0.02
        assert abs(noise.mean().item()) < 0.02 * bound
    assert abs(ours.std().item() / theirs.std().item() - 1) < 0.02
    assert not torch.allclose(ours, theirs)  # independent streams (seed 1 vs 0) agree in law
    # same stream (symnoise seed 0 on rank 0 is torch.manual_seed(0)): the very same draws
    same = _draws(model, batch, ours=True, seed=0, draws=2)
    torch.testing.assert_close(same, theirs[:2], rtol=1e-5, atol=1e-7)


def test_padded_batch_shows_where_they_differ():
    model = make_model(V, num_hidden_layers=1)
    batch = _batch(padded=True)
    d = get_embedding_module(model).embedding_dim
    ours, theirs = _draws(model, batch, ours=True), _draws(model, batch, ours=False)
    pad = batch["attention_mask"] == 0
    # transformers noises padding; symnoise leaves it exactly alone
    assert theirs[:, pad].abs().max() > 0
    assert ours[:, pad].abs().max() == 0
    # the padded row's real tokens: transformers uses L = 16 (padded), symnoise L = 4 (real)
    real = ~pad[1]
    ours_b, theirs_b = ALPHA / math.sqrt(4 * d), ALPHA / math.sqrt(L * d)
    assert ours[:, 1, real].abs().max() <= ours_b * (1 + 1e-6)
    assert ours[:, 1, real].abs().max() > theirs_b * 1.5  # reaches beyond transformers' bound
    assert theirs[:, 1, real].abs().max() <= theirs_b * (1 + 1e-6)
    ratio = ours[:, 1, real].std().item() / theirs[:, 1, real].std().item()
    assert abs(ratio / math.sqrt(L / 4) - 1) < 0.05  # = sqrt(padded L / real L) = 2
    # unpadded rows agree
    assert abs(ours[:, 0].std().item() / theirs[:, 0].std().item() - 1) < 0.03
