"""Expected L2 norms of the three noise distributions (the SymNoise paper's norm lemmas): for
width ``d``, uniform ``sqrt(d/3)`` (a Jensen bound, gap ~ 1/(10 d)), Gaussian the exact chi
mean ``sqrt(2) Gamma((d+1)/2) / Gamma(d/2)``, Bernoulli ``sqrt(d)`` for every draw; both
ratios to uniform tend to ``sqrt(3)``. :func:`norm_analysis` measures them by Monte Carlo
with the training sampler (float64, seeded)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._io import fmt, markdown_table
from ..decoding import check_count
from ..noise import sample_noise

DISTRIBUTIONS: tuple[str, ...] = ("uniform", "gaussian", "bernoulli")
DEFAULT_DIMS: tuple[int, ...] = (16, 64, 256, 1024, 4096, 8192)
DEFAULT_SAMPLES: tuple[int, ...] = (10, 100, 1000)
SQRT3: float = math.sqrt(3.0)
#: Largest number of float64 elements drawn at once (32 MiB), bounding memory for any d.
_CHUNK_ELEMENTS = 1 << 22


def gaussian_mean_norm(d: int) -> float:
    """Exact ``E||z||``, ``z ~ N(0, I_d)``, via ``lgamma`` (finite for any ``d``)."""
    check_count("dimension", d)
    return math.sqrt(2.0) * math.exp(math.lgamma((d + 1) / 2.0) - math.lgamma(d / 2.0))


def closed_form_mean(distribution: str, d: int) -> float:
    """``E||noise||`` in closed form: uniform ``sqrt(d/3)``, gaussian the exact chi mean,
    bernoulli ``sqrt(d)`` (exact, every draw)."""
    _check_distribution(distribution)
    check_count("dimension", d)
    return {"uniform": math.sqrt(d / 3.0), "bernoulli": math.sqrt(d)}.get(
        distribution) or gaussian_mean_norm(d)


def _check_distribution(distribution: str) -> None:
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {distribution!r}; expected one of: "
                         f"{', '.join(DISTRIBUTIONS)}")


def _check_list(values: Iterable[Any], what: str) -> list[int]:
    for v in (out := list(values)):
        check_count(what, v)
    if not out:
        raise ValueError(f"at least one {what} is needed")
    return sorted(set(out))


def sample_norms(distribution: str, d: int, samples: int,
                 generator: torch.Generator) -> torch.Tensor:
    """L2 norms (shape (samples,)) of float64 noise vectors of width ``d`` from the training
    sampler, drawn in chunks of <= 2**22 elements; a correctly rounded sqrt keeps
    Bernoulli norms exactly ``math.sqrt(d)``."""
    _check_distribution(distribution)
    check_count("dimension", d)
    check_count("sample count", samples)
    rows = max(1, _CHUNK_ELEMENTS // d)
    out = torch.empty(samples, dtype=torch.float64)
    for start in range(0, samples, rows):
        stop = min(samples, start + rows)
        x = sample_noise(distribution, (stop - start, d), dtype=torch.float64, device="cpu",
                         generator=generator)
        out[start:stop] = x.square().sum(dim=1)
    # numpy's sqrt is the correctly rounded IEEE one; torch's CPU kernel can be 1 ulp off
    # (sqrt(8192)), which would break the exactness of the Bernoulli norms.
    return torch.from_numpy(np.sqrt(out.numpy()))


def _cell_seed(seed: int, d: int, samples: int, dist_index: int) -> int:
    """A seed per (d, samples, distribution) so each cell is reproducible on its own."""
    mixed = (seed * 0x9E3779B97F4A7C15 + d * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    return (mixed ^ (samples * 0x94D049BB133111EB) ^ (dist_index + 1)) & (2**63 - 1)


@dataclass
class NormAnalysis:
    """One row per (d, samples), ``d`` major: ``d``, ``samples``; per distribution
    ``<dist>_mean``/``_std`` (of the norms), ``_closed``, ``_relerr`` (mean/closed - 1);
    ``gaussian_asymptotic`` (sqrt(d)); ``ratio_{gaussian,bernoulli}_uniform`` (of the
    means), with ``_closed`` and ``_relerr`` (against sqrt(3))."""

    dims: list[int]
    samples: list[int]
    seed: int
    rows: list[dict[str, float | int]] = field(default_factory=list)

    def row(self, d: int, samples: int) -> dict[str, float | int]:
        """The row for dimension ``d`` and sample count ``samples`` (KeyError if absent)."""
        if found := [r for r in self.rows if (r["d"], r["samples"]) == (d, samples)]:
            return found[0]
        raise KeyError(f"no row for d={d}, samples={samples}")

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


def norm_analysis(dims: Sequence[int] = DEFAULT_DIMS, samples: Sequence[int] = DEFAULT_SAMPLES,
                  seed: int = 0) -> NormAnalysis:
    """Monte Carlo expected noise norms beside their closed forms, for every (d, samples).

    Each (d, samples, distribution) cell has its own generator seeded from ``seed``, ``d``
    and ``samples`` (independent of the other cells asked for); inputs sorted, de-duplicated.
    """
    dims_l = _check_list(dims, "dimension")
    samples_l = _check_list(samples, "sample count")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    analysis = NormAnalysis(dims=dims_l, samples=samples_l, seed=seed)
    gen = torch.Generator(device="cpu")
    for d in dims_l:
        for s in samples_l:
            row: dict[str, float | int] = {"d": d, "samples": s}
            for k, dist in enumerate(DISTRIBUTIONS):
                gen.manual_seed(_cell_seed(seed, d, s, k))
                x = sample_norms(dist, d, s, gen)
                mean, closed = x.mean().item(), closed_form_mean(dist, d)
                row |= {f"{dist}_mean": mean, f"{dist}_closed": closed,
                        f"{dist}_std": x.std(correction=1).item() if s > 1 else 0.0,
                        f"{dist}_relerr": mean / closed - 1.0}
            row["gaussian_asymptotic"] = math.sqrt(d)
            for key, dist in (("ratio_gaussian_uniform", "gaussian"),
                              ("ratio_bernoulli_uniform", "bernoulli")):
                row[key] = row[f"{dist}_mean"] / row["uniform_mean"]
                row[f"{key}_closed"] = row[f"{dist}_closed"] / row["uniform_closed"]
                row[f"{key}_relerr"] = row[key] / SQRT3 - 1.0
            analysis.rows.append(row)
    return analysis


_TABLE = {  # Markdown column title: (row key, format)
    "d": ("d", "d"), "samples": ("samples", "d"),
    "uniform mean": ("uniform_mean", ".4f"), "sqrt(d/3)": ("uniform_closed", ".4f"),
    "gaussian mean": ("gaussian_mean", ".4f"), "exact chi mean": ("gaussian_closed", ".4f"),
    "bernoulli mean": ("bernoulli_mean", ".4f"), "sqrt(d)": ("bernoulli_closed", ".4f"),
    "gauss/unif": ("ratio_gaussian_uniform", ".5f"),
    "bern/unif": ("ratio_bernoulli_uniform", ".5f"), "sqrt(3)": ("sqrt3", ".5f"),
}


def format_norms_table(analysis: NormAnalysis) -> str:
    """A Markdown table of the analysis: empirical means (closed forms), ratios vs sqrt(3)."""
    df = analysis.frame().assign(sqrt3=SQRT3)
    return markdown_table(pd.DataFrame({title: df[key].map(lambda v, f=spec: fmt(v, f))
                                        for title, (key, spec) in _TABLE.items()}),
                          align="r" * len(_TABLE))


def _plot(analysis: NormAnalysis, norms_png: Path, ratios_png: Path) -> None:
    """Norms vs d (Monte Carlo at the most samples over closed forms); ratios vs d."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    df, s_max = analysis.frame(), max(analysis.samples)
    top = df[df["samples"] == s_max]  # Monte Carlo points at the largest sample count
    lo, hi = min(analysis.dims), max(analysis.dims)
    grid = sorted({round(lo * (hi / lo) ** (i / 199)) for i in range(200)} | {lo, hi})
    ax = (fig := Figure(figsize=(6.4, 4.8), dpi=120)).add_subplot()
    for i, dist in enumerate(DISTRIBUTIONS):
        ax.plot(grid, [closed_form_mean(dist, g) for g in grid], color=f"C{i}",
                label=f"{dist}: closed form")
        ax.plot(top["d"], top[f"{dist}_mean"], ls="none", marker="osv"[i], mfc="none",
                color=f"C{i}", label=f"{dist}: Monte Carlo ({s_max} samples)")
    ax.set(xscale="log", yscale="log", xlabel="embedding dimension d",
           ylabel="expected L2 norm of the noise vector", title="Expected noise norm vs d")
    ax.legend(fontsize=7)
    fig.savefig(norms_png, format="png", bbox_inches="tight")
    fig = Figure(figsize=(10.0, 4.2), dpi=120)
    for ax, dist in zip(fig.subplots(1, 2, sharey=True), ("gaussian", "bernoulli"), strict=True):
        df.pivot(index="d", columns="samples", values=f"ratio_{dist}_uniform").plot(
            ax=ax, marker="o", ms=4, logx=True)
        ax.axhline(SQRT3, color="k", ls="--", lw=1.0, label="sqrt(3)")
        ax.set(xlabel="embedding dimension d", ylabel="ratio of mean norms",
               title=f"{dist} / uniform norm ratio")
        ax.legend(fontsize=8, title="samples")
    fig.savefig(ratios_png, format="png", bbox_inches="tight")


def write_norms_report(analysis: NormAnalysis, output_dir: str | Path) -> dict[str, Path]:
    """Write ``norms.csv`` (full precision), ``norms.md``, ``norms_expected.png`` and
    ``norms_ratios.png`` to ``output_dir``; return their paths by key."""
    if not analysis.rows:
        raise ValueError("the norm analysis has no rows to write")
    (out := Path(output_dir)).mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "norms.csv", "markdown": out / "norms.md",
             "figure_norms": out / "norms_expected.png", "figure_ratios": out / "norms_ratios.png"}
    analysis.frame().to_csv(paths["csv"], index=False, float_format="%.17g")
    intro = ("# Expected L2 norm of the noise vectors\n\n"
             f"Monte Carlo in float64, seed {analysis.seed}. Closed forms: uniform sqrt(d/3), "
             "Gaussian sqrt(2) Gamma((d+1)/2) / Gamma(d/2) (tends to sqrt(d)), Bernoulli "
             "sqrt(d) (exact). Both ratios tend to sqrt(3).\n\n")
    paths["markdown"].write_text(intro + format_norms_table(analysis), encoding="utf-8")
    _plot(analysis, paths["figure_norms"], paths["figure_ratios"])
    return paths
