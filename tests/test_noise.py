"""The numbers of noise.py: magnitudes per sequence, padding, symmetry, packing, errors."""

from __future__ import annotations

import math

import pytest
import torch

from symnoise.noise import canonical_method, noise_scale, perturb

B, L, D = 3, 7, 16


def _mask():
    m = torch.ones(B, L, dtype=torch.long)
    m[1, 5:] = 0  # 5 real tokens
    m[2, 2:] = 0  # 2 real tokens
    return m


def _delta(method, alpha=5.0, norm_match=True, mask=None, pos=None, seed=0, x=None):
    x = torch.randn(B, L, D) if x is None else x
    g = torch.Generator().manual_seed(seed)
    out = perturb(x, mask, method=method, alpha=alpha, norm_match=norm_match, position_ids=pos, generator=g)
    return x, out


@pytest.mark.parametrize("norm_match", [True, False])
@pytest.mark.parametrize("method", ["bernoulli", "symnoise"])
def test_bernoulli_entries_have_exact_per_sequence_scale(method, norm_match):
    mask = _mask()
    x, out = _delta(method, alpha=5.0, norm_match=norm_match, mask=mask)
    delta = (out[:B] - x).abs()
    lengths = mask.sum(1)
    c = 1 / math.sqrt(3) if norm_match else 1.0
    for i in range(B):
        expected = 5.0 / math.sqrt(lengths[i].item() * D) * c
        real = delta[i, : lengths[i]]
        torch.testing.assert_close(real, torch.full_like(real, expected), rtol=1e-5, atol=1e-6)
        assert torch.all(delta[i, lengths[i]:] == 0)  # padding: exactly zero


def test_uniform_is_bounded_by_scale_and_never_norm_matched():
    mask = _mask()
    torch.manual_seed(0)
    x = torch.randn(B, L, D)
    a = perturb(x, mask, method="uniform", alpha=5.0, norm_match=True, generator=torch.Generator().manual_seed(1))
    b = perturb(x, mask, method="uniform", alpha=5.0, norm_match=False, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)  # norm_match does not touch uniform noise
    delta = a - x
    for i, n in enumerate(mask.sum(1).tolist()):
        scale = 5.0 / math.sqrt(n * D)
        assert delta[i, :n].abs().max() <= scale + 1e-6
        assert delta[i, :n].abs().max() > 0.5 * scale  # really scaled, not tiny
        assert torch.all(delta[i, n:] == 0)


def test_expected_norms_match_across_methods_with_norm_matching():
    # Per token, E||delta_t|| should be scale * sqrt(d/3) for all three when norm-matched.
    x = torch.zeros(1, 64, 1024)
    norms = {}
    for method in ("uniform", "gaussian", "bernoulli"):
        _, out = _delta(method, alpha=10.0, x=x, seed=3)
        norms[method] = out[0].norm(dim=-1).mean().item()
    target = 10.0 / math.sqrt(64 * 1024) * math.sqrt(1024 / 3)
    for method, value in norms.items():
        assert value == pytest.approx(target, rel=0.02), method


def test_gaussian_without_norm_match_has_sqrt3_larger_norm():
    x = torch.zeros(1, 64, 1024)
    _, u = _delta("uniform", x=x, seed=5)
    _, g = _delta("gaussian", norm_match=False, x=x, seed=5)
    ratio = g.norm(dim=-1).mean() / u.norm(dim=-1).mean()
    assert ratio.item() == pytest.approx(math.sqrt(3), rel=0.02)


def test_symnoise_pairs_sum_to_2x_and_share_delta():
    mask = _mask()
    x, out = _delta("symnoise", mask=mask)
    assert out.shape == (2 * B, L, D)
    torch.testing.assert_close(out[:B] + out[B:], 2 * x)
    torch.testing.assert_close(out[:B] - x, x - out[B:])
    assert not torch.equal(out[:B], x)
    assert _delta("gaussian", mask=mask)[1].shape == (B, L, D)  # one row per row


def test_packed_rows_scale_each_segment_by_its_own_length():
    # one row of 10 tokens holding segments of length 3, 5 and 2
    pos = torch.tensor([[0, 1, 2, 0, 1, 2, 3, 4, 0, 1]])
    x = torch.zeros(1, 10, D)
    out = perturb(x, None, method="bernoulli", alpha=4.0, norm_match=False, position_ids=pos,
                  generator=torch.Generator().manual_seed(0))
    mags = out[0].abs()[:, 0]
    expected = [4.0 / math.sqrt(n * D) for n in (3, 3, 3, 5, 5, 5, 5, 5, 2, 2)]
    torch.testing.assert_close(mags, torch.tensor(expected), rtol=1e-5, atol=1e-6)


def test_packed_rows_with_padding_count_only_real_tokens():
    pos = torch.tensor([[0, 1, 2, 0, 1, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0]])
    scale = noise_scale(torch.zeros(1, 7, 4), mask, alpha=2.0, position_ids=pos)[0, :, 0]
    expected = torch.tensor([2 / math.sqrt(12)] * 3 + [2 / math.sqrt(8)] * 2 + [0.0, 0.0])
    torch.testing.assert_close(scale, expected)


def test_no_mask_means_every_position_counts():
    scale = noise_scale(torch.zeros(2, 4, 9), None, alpha=3.0)
    torch.testing.assert_close(scale, torch.full((2, 4, 1), 3.0 / 6.0))


def test_none_and_zero_alpha_leave_embeddings_unchanged():
    x = torch.randn(B, L, D)
    assert perturb(x, method="none", alpha=5.0) is x
    torch.testing.assert_close(perturb(x, method="gaussian", alpha=0.0), x)
    torch.testing.assert_close(perturb(x, method="symnoise", alpha=0.0), torch.cat([x, x]))


def test_seeded_generator_reproduces_and_different_seeds_differ():
    x = torch.randn(B, L, D)
    _, a = _delta("gaussian", x=x, seed=11)
    _, b = _delta("gaussian", x=x, seed=11)
    _, c = _delta("gaussian", x=x, seed=12)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("method", ["uniform", "gaussian", "bernoulli", "symnoise"])
def test_dtype_follows_embeddings(method, dtype):
    x = torch.randn(B, L, D).to(dtype)
    out = perturb(x, _mask(), method=method, alpha=5.0)
    assert out.dtype == dtype and out.device == x.device
    assert torch.isfinite(out.float()).all()


def test_neftune_alias_and_errors():
    assert canonical_method("neftune") == "uniform"
    assert canonical_method(" NEFTune ") == "uniform"
    x = torch.randn(B, L, D)
    with pytest.raises(ValueError, match="-1"):
        perturb(x, method="uniform", alpha=-1)
    with pytest.raises(ValueError, match="'salt'"):
        perturb(x, method="salt", alpha=1)
    with pytest.raises(ValueError, match=r"\(2, 7\)"):
        perturb(x, torch.ones(2, 7), method="uniform", alpha=1)
    with pytest.raises(ValueError, match="position_ids"):
        perturb(x, None, method="uniform", alpha=1, position_ids=torch.zeros(3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="batch, length, dim"):
        perturb(torch.randn(4, 4), method="uniform", alpha=1)
    with pytest.raises(ValueError, match="nan"):
        perturb(x, method="uniform", alpha=float("nan"))


def test_gradients_flow_through_noise():
    x = torch.randn(B, L, D, requires_grad=True)
    out = perturb(x, _mask(), method="symnoise", alpha=5.0)
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 2.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rademacher_signs_are_balanced(dtype):
    out = perturb(torch.zeros(1, 400, 1000, dtype=dtype), method="bernoulli", alpha=20.0,
                  norm_match=False, generator=torch.Generator().manual_seed(0))
    signs = out.float().sign()
    assert set(signs.unique().tolist()) == {-1.0, 1.0}
    assert abs(signs.mean().item()) < 0.005  # 400k draws: sd of the mean is 0.0016


@pytest.mark.parametrize("method", ["bernoulli", "symnoise"])
def test_noise_mask_restricts_noise_without_changing_the_scale(method):
    mask = _mask()
    keep = torch.zeros(B, L, dtype=torch.bool)
    keep[:, 3:] = True  # e.g. response tokens from position 3 on
    x = torch.randn(B, L, D)
    g = torch.Generator().manual_seed(0)
    out = perturb(x, mask, method=method, alpha=5.0, position_ids=None, generator=g,
                  noise_mask=keep)
    delta = (out[:B] - x).abs()
    lengths = mask.sum(1)
    for i in range(B):
        n = int(lengths[i])
        expected = 5.0 / math.sqrt(n * D) / math.sqrt(3)  # L = all real tokens, not the kept ones
        noised = delta[i, 3:n]
        torch.testing.assert_close(noised, torch.full_like(noised, expected), rtol=1e-5, atol=1e-6)
        assert delta[i, :3].abs().max() == 0  # masked-out tokens: exactly no noise
        assert delta[i, n:].abs().max() == 0 if n < L else True  # padding: none either
    if method == "symnoise":
        torch.testing.assert_close(out[:B] + out[B:], 2 * x)


def test_noise_mask_shape_is_checked():
    with pytest.raises(ValueError, match="noise_mask"):
        perturb(torch.randn(B, L, D), method="uniform", alpha=1.0, noise_mask=torch.ones(B, L + 1))
