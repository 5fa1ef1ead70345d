"""The paired bootstrap (:func:`paired_bootstrap`) and its interval text: B − A over the
same examples, resampled with one draw for both sides; with strata (seeds) the statistic
is the mean over strata of the per-stratum differences, each resampled within itself;
weights (token counts) make each mean a weighted one. The README ("symnoise compare")
says what the interval covers."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._io import fmt, group_by

__all__ = ["PairedDiff", "bootstrap_mean", "check_same_ids", "format_interval",
           "paired_bootstrap"]

Statistic = Callable[[np.ndarray, np.ndarray], float]
_CHUNK = 4_000_000  # index draws held in memory at once (int64: 32 MB)


@dataclass(frozen=True)
class PairedDiff:
    """B − A (``mean_b - mean_a``, averaged over strata) with its percentile interval at
    ``confidence``; ``se``: the sd of the bootstrap differences; ``n``: pairs in all;
    ``significant``: the interval excludes 0."""

    diff: float
    ci_low: float
    ci_high: float
    n: int
    significant: bool
    mean_a: float
    mean_b: float
    se: float
    n_strata: int
    n_per_stratum: tuple[int, ...]
    confidence: float
    n_boot: int
    seed: int


def _as_values(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of numbers, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{name}: {bad.size} value(s) are not finite numbers "
                         f"(first at position {int(bad[0])}: {arr[bad[0]]!r})")
    return arr


def _strata_indices(strata: Sequence[Hashable] | None, n: int) -> list[np.ndarray]:
    """Positions of each stratum, strata in order of first appearance."""
    if strata is None:
        return [np.arange(n)]
    if len(labels := list(strata)) != n:
        raise ValueError(f"strata: {len(labels)} labels for {n} pairs; expected one per pair")
    return [np.asarray(pos) for pos in group_by(range(n), labels.__getitem__).values()]


def _boot_means(d: np.ndarray, w: np.ndarray | None, n_boot: int, rng: np.random.Generator
                ) -> np.ndarray:
    """``n_boot`` (weighted) means of ``d`` resampled with replacement, chunked to bound
    memory; with weights each draw takes its weight along."""
    rows = max(1, _CHUNK // d.size)
    out = np.empty(n_boot)
    for start in range(0, n_boot, rows):
        idx = rng.integers(0, d.size, size=(min(n_boot, start + rows) - start, d.size))
        out[start:start + rows] = np.average(d[idx], axis=1, weights=None if w is None else w[idx])
    return out


def paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    strata: Sequence[Hashable] | None = None,
    weights: Sequence[float] | np.ndarray | None = None,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    statistic: str | Statistic = "mean",
) -> PairedDiff:
    """B − A over the values ``a``, ``b`` of the same examples in the same order (module
    doc: ``strata``, ``weights``). ``statistic``: ``"mean"`` (vectorised), or a function
    ``f(a_sample, b_sample) -> float`` giving the difference of one (re)sample of a
    stratum's pairs (e.g. a refitted model's); ``mean_a`` / ``mean_b`` are the plain (or
    weighted) means either way. ValueError for mismatched, empty or non-finite input."""
    av, bv = _as_values(a, "a"), _as_values(b, "b")
    if av.size != bv.size:
        raise ValueError(f"a has {av.size} values and b has {bv.size}; paired values must "
                         "come in pairs")
    if av.size == 0:
        raise ValueError("no pairs to compare")
    if not (isinstance(n_boot, int) and n_boot >= 1):
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if weights is not None and statistic != "mean":
        raise ValueError("weights go with statistic='mean' only")
    wv = None if weights is None else _as_values(weights, "weights")
    if wv is not None and (wv.size != av.size or (wv <= 0).any()):
        raise ValueError(f"weights: expected {av.size} positive numbers, one per pair")
    groups = _strata_indices(strata, av.size)
    rng = np.random.default_rng(seed)
    point, boots = np.empty(len(groups)), np.empty((len(groups), n_boot))
    means = np.empty((len(groups), 2))
    for k, pos in enumerate(groups):
        sa, sb, sw = av[pos], bv[pos], None if wv is None else wv[pos]
        means[k] = np.average(sa, weights=sw), np.average(sb, weights=sw)
        if statistic == "mean":
            point[k] = np.average(sb - sa, weights=sw)
            boots[k] = _boot_means(sb - sa, sw, n_boot, rng)
        else:
            point[k] = float(statistic(sa, sb))
            idx = rng.integers(0, pos.size, size=(n_boot, pos.size))
            boots[k] = [float(statistic(sa[i], sb[i])) for i in idx]
    dist = boots.mean(axis=0)
    tail = (1.0 - confidence) / 2.0
    low, high = (float(x) for x in np.quantile(dist, [tail, 1.0 - tail]))
    return PairedDiff(
        diff=float(point.mean()), ci_low=low, ci_high=high, n=int(av.size),
        significant=bool(low > 0 or high < 0), mean_a=float(means[:, 0].mean()),
        mean_b=float(means[:, 1].mean()), se=float(dist.std(ddof=1)) if n_boot > 1 else 0.0,
        n_strata=len(groups), n_per_stratum=tuple(int(pos.size) for pos in groups),
        confidence=confidence, n_boot=n_boot, seed=seed,
    )


def bootstrap_mean(values: Sequence[float] | np.ndarray, *,
                   weights: Sequence[float] | np.ndarray | None = None, n_boot: int = 2000,
                   confidence: float = 0.95, seed: int = 0) -> PairedDiff:
    """The (weighted) mean of one side's per-example ``values`` with its percentile-bootstrap
    interval: :func:`paired_bootstrap` of ``values`` against zeros, so ``diff`` is the mean
    and ``ci_low`` / ``ci_high`` its interval."""
    vals = _as_values(values, "values")
    return paired_bootstrap(np.zeros_like(vals), vals, weights=weights, n_boot=n_boot,
                            confidence=confidence, seed=seed)


def check_same_ids(a_ids: Iterable[str], b_ids: Iterable[str], *, what: str = "examples",
                   a_name: str = "A", b_name: str = "B") -> None:
    """Raise ValueError unless both sides have the same ids (none empty), naming the counts
    and a few ids found on one side only."""
    a_list, b_list = list(a_ids), list(b_ids)
    if not a_list or not b_list:
        raise ValueError(f"{a_name if not a_list else b_name} has no {what} to compare")
    parts = []
    for name, mine, other, theirs in ((a_name, a_list, b_name, set(b_list)),
                                      (b_name, b_list, a_name, set(a_list))):
        if only := [k for k in mine if k not in theirs]:
            parts.append(f"{len(only)} of {name}'s {len(mine)} {what} are not in {other} "
                         f"(e.g. {', '.join(repr(i) for i in only[:3])})")
    if parts:
        raise ValueError(f"{a_name} and {b_name} were not evaluated on the same {what}: "
                         + "; ".join(parts) + ". A paired comparison needs the same set.")


def _signed(x: float, digits: int) -> str:
    text = fmt(x, f"+.{digits}f")
    return (fmt(0, f".{digits}f") if float(text) == 0 else text).replace("-", "\u2212")


def format_interval(d: PairedDiff, *, digits: int = 1, scale: float = 1.0) -> str:
    """``+2.1 [−3.0, +7.4]`` (values times ``scale``), Unicode minus signs."""
    return (f"{_signed(d.diff * scale, digits)} "
            f"[{_signed(d.ci_low * scale, digits)}, {_signed(d.ci_high * scale, digits)}]")
