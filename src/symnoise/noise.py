"""Noise on input embeddings: the method itself, as pure tensor math.

Every method draws a noise tensor ``delta`` of the embeddings' shape and scales it per
sequence by ``alpha / sqrt(L_i * d)``, where ``L_i`` is the number of real (non-padding)
tokens of sequence ``i`` and ``d`` the embedding width:

* ``uniform`` (NEFTune, also spelled ``neftune``): ``X + scale * U(-1, 1)``
* ``gaussian``: ``X + scale * c * N(0, 1)``
* ``bernoulli``: ``X + scale * c * R`` with ``R`` in {-1, +1}, p = 1/2
* ``symnoise``: ``[X + scale * c * R ; X - scale * c * R]`` (2B rows, same ``R``)
* ``none``: ``X`` unchanged

``c = 1/sqrt(3)`` when ``norm_match`` is on (the default): it gives Gaussian, Bernoulli
and SymNoise the expected noise norm of uniform noise at the same alpha, since
E||U(-1,1)^d|| = sqrt(d/3) while E||R|| = sqrt(d). Uniform noise is never rescaled.

Padding positions (``attention_mask == 0``) receive exactly zero noise. In packed rows
(several examples in one row, ``position_ids`` restarting at 0), each example is scaled
by its own length rather than by the row's. An optional ``noise_mask`` restricts the noise
to some tokens (e.g. only the prompt or only the response) without changing ``L``: the
scale of a token that is noised is the same as with no mask.

This module imports nothing but torch.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "METHODS",
    "ALIASES",
    "NORM_MATCHED",
    "canonical_method",
    "noise_scale",
    "sample_noise",
    "perturb",
]

METHODS: tuple[str, ...] = ("none", "uniform", "gaussian", "bernoulli", "symnoise")
ALIASES: dict[str, str] = {"neftune": "uniform"}
# Methods divided by sqrt(3) under norm matching; the one place that knows it.
NORM_MATCHED = frozenset({"gaussian", "bernoulli", "symnoise"})
_SQRT3 = math.sqrt(3.0)


def canonical_method(method: str) -> str:
    """Return the canonical name of ``method`` (``neftune`` -> ``uniform``).

    Raises ValueError naming the value when the method is unknown.
    """
    if not isinstance(method, str):
        raise ValueError(f"noise method must be a string, got {method!r}")
    name = method.strip().lower()
    name = ALIASES.get(name, name)
    if name not in METHODS:
        known = ", ".join(METHODS + tuple(ALIASES))
        raise ValueError(f"unknown noise method {method!r}; expected one of: {known}")
    return name


def _check_alpha(alpha: float) -> float:
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"noise alpha must be a number, got {alpha!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"noise alpha must be a finite number >= 0, got {alpha!r}")
    return value


def _check_shapes(
    embeds: torch.Tensor,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    noise_mask: torch.Tensor | None = None,
) -> None:
    if not isinstance(embeds, torch.Tensor) or embeds.dim() != 3:
        shape = tuple(embeds.shape) if isinstance(embeds, torch.Tensor) else type(embeds)
        raise ValueError(f"embeds must be a (batch, length, dim) tensor, got shape {shape}")
    bl = tuple(embeds.shape[:2])
    named = (("attention_mask", attention_mask), ("position_ids", position_ids),
             ("noise_mask", noise_mask))
    for name, t in named:
        if t is None:
            continue
        if t.dim() == 1 and bl[0] == 1:
            t = t.unsqueeze(0)
        if tuple(t.shape) != bl:
            raise ValueError(
                f"{name} has shape {tuple(t.shape)} but embeds have (batch, length) = {bl}"
            )


def _token_lengths(
    mask: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    batch: int,
    length: int,
    device: torch.device,
) -> torch.Tensor:
    """Length ``L`` of the sequence each token belongs to, shape (B, L), float32.

    Without position ids a row is one sequence of ``mask.sum()`` tokens. With position
    ids, every 0 starts a new segment (a packed example) whose length is the number of
    real tokens in it.
    """
    if position_ids is None:
        if mask is None:
            return torch.full((batch, 1), float(length), device=device)
        return mask.sum(dim=1, keepdim=True).to(torch.float32)
    pos = position_ids.reshape(batch, length).to(device)
    starts = pos == 0
    starts[:, 0] = True  # a row always starts a segment
    seg = torch.cumsum(starts.to(torch.int64), dim=1) - 1  # segment index within its row
    key = seg + torch.arange(batch, device=device).unsqueeze(1) * length  # unique per row
    weight = (
        mask.reshape(batch, length).to(torch.float32)
        if mask is not None
        else torch.ones(batch, length, device=device)
    )
    counts = torch.zeros(batch * length, device=device, dtype=torch.float32)
    counts.scatter_add_(0, key.reshape(-1), weight.reshape(-1))
    return counts[key]


def noise_scale(
    embeds: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    alpha: float,
    position_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-token scale ``alpha / sqrt(L_i * d)`` with zeros on padding, shape (B, L, 1).

    Returned in float32; tokens whose sequence has no real token get 0.
    """
    _check_shapes(embeds, attention_mask, position_ids)
    alpha = _check_alpha(alpha)
    batch, length, dim = embeds.shape
    mask = None
    if attention_mask is not None:
        mask = attention_mask.reshape(batch, length).to(embeds.device) != 0
    lengths = _token_lengths(mask, position_ids, batch, length, embeds.device)
    scale = alpha / torch.sqrt(lengths.clamp(min=1.0) * dim)
    scale = scale.expand(batch, length)
    if mask is not None:
        scale = scale * mask.to(torch.float32)
    return scale.unsqueeze(-1)


def sample_noise(
    method: str,
    shape: torch.Size | tuple[int, ...],
    *,
    dtype: torch.dtype,
    device: torch.device | str,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Unscaled noise of ``method``: U(-1, 1), N(0, 1) or Rademacher +-1."""
    method = canonical_method(method)
    out = torch.empty(shape, dtype=dtype, device=device)
    if method == "uniform":
        return out.uniform_(-1.0, 1.0, generator=generator)
    if method == "gaussian":
        return out.normal_(0.0, 1.0, generator=generator)
    if method in ("bernoulli", "symnoise"):
        # Rademacher +-1 as sign(U(0,1) - 1/2): a few times faster than bernoulli_ on CPU.
        # Low-precision dtypes draw in float32 so rounding cannot bias p away from 1/2.
        low = dtype in (torch.float16, torch.bfloat16)
        u = torch.empty(shape, dtype=torch.float32, device=device) if low else out
        u.uniform_(0.0, 1.0, generator=generator).ge_(0.5).mul_(2.0).sub_(1.0)
        return u.to(dtype) if low else u
    raise ValueError(f"method {method!r} draws no noise")


def perturb(
    embeds: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    method: str,
    alpha: float,
    norm_match: bool = True,
    position_ids: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    noise_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return ``embeds`` with noise of ``method`` added (see the module docstring).

    ``symnoise`` returns ``2B`` rows: rows ``0..B-1`` are ``X + delta`` and rows
    ``B..2B-1`` are ``X - delta`` with the same ``delta``; every other method returns
    ``B`` rows. The result has the dtype and device of ``embeds``.

    ``noise_mask`` (B, L): tokens that may receive noise (nonzero) — the others get none;
    the per-sequence length ``L_i`` still counts every real token.
    """
    method = canonical_method(method)
    alpha = _check_alpha(alpha)
    _check_shapes(embeds, attention_mask, position_ids, noise_mask)
    if method == "none" or alpha == 0.0:
        return torch.cat([embeds, embeds], dim=0) if method == "symnoise" else embeds
    scale = noise_scale(embeds, attention_mask, alpha=alpha, position_ids=position_ids)
    if noise_mask is not None:
        keep = noise_mask.reshape(embeds.shape[:2]).to(embeds.device) != 0
        scale = scale * keep.unsqueeze(-1).to(scale.dtype)
    if norm_match and method in NORM_MATCHED:
        scale = scale / _SQRT3
    delta = sample_noise(
        method, embeds.shape, dtype=embeds.dtype, device=embeds.device, generator=generator
    )
    delta = delta * scale.to(embeds.dtype)
    if method == "symnoise":
        return torch.cat([embeds + delta, embeds - delta], dim=0)
    return embeds + delta
