"""Expected L2 norms of the three noise distributions: the SymNoise paper's norm lemmas.

The paper compares the noise vectors added to one embedding of width ``d``:

* uniform (NEFTune), ``u ~ U(-1, 1)^d``: ``E||u||^2 = d/3``, so ``E||u|| ~ sqrt(d/3)``.
  ``sqrt(d/3)`` is ``sqrt(E||u||^2)``, an upper bound on ``E||u||`` (Jensen) that the mean
  approaches with a relative gap of about ``1/(10 d)``.
* Gaussian, ``z ~ N(0, I_d)``: ``E||z|| = sqrt(2) Gamma((d+1)/2) / Gamma(d/2)`` exactly
  (the mean of a chi distribution), which tends to ``sqrt(d)`` (relative gap ~ ``1/(4 d)``).
* Bernoulli / Rademacher, ``r`` in ``{-1, +1}^d``: ``||r|| = sqrt(d)`` for every draw.

Hence Gaussian/uniform and Bernoulli/uniform norm ratios tend to ``sqrt(3)``, which is why
the later paper version divides Gaussian, Bernoulli and SymNoise noise by ``sqrt(3)``
(``norm_match``). :func:`norm_analysis` measures these means by Monte Carlo with the same
sampler the training noise uses (:func:`symnoise.noise.sample_noise`), in float64, from a
seeded ``torch.Generator``, and sets them beside the closed forms;
:func:`write_norms_report` writes the table (CSV, Markdown) and two figures.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..noise import sample_noise

__all__ = [
    "DISTRIBUTIONS",
    "DEFAULT_DIMS",
    "DEFAULT_SAMPLES",
    "SQRT3",
    "NormAnalysis",
    "closed_form_mean",
    "gaussian_mean_norm",
    "sample_norms",
    "norm_analysis",
    "format_norms_table",
    "write_norms_report",
]

#: The distributions compared, in the order used for columns and plots.
DISTRIBUTIONS: tuple[str, ...] = ("uniform", "gaussian", "bernoulli")
DEFAULT_DIMS: tuple[int, ...] = (16, 64, 256, 1024, 4096, 8192)
DEFAULT_SAMPLES: tuple[int, ...] = (10, 100, 1000)
SQRT3: float = math.sqrt(3.0)
#: Largest number of float64 elements drawn at once (32 MiB), bounding memory for any d.
_CHUNK_ELEMENTS = 1 << 22


def gaussian_mean_norm(d: int) -> float:
    """Exact ``E||z||`` for ``z ~ N(0, I_d)``: ``sqrt(2) Gamma((d+1)/2) / Gamma(d/2)``.

    Computed through ``lgamma`` so it stays finite for any ``d``.
    """
    d = _check_positive_int(d, "dimension")
    return math.sqrt(2.0) * math.exp(math.lgamma((d + 1) / 2.0) - math.lgamma(d / 2.0))


def closed_form_mean(distribution: str, d: int) -> float:
    """The paper's closed form of ``E||noise||`` in dimension ``d``.

    ``uniform``: ``sqrt(d/3)``; ``gaussian``: the exact chi mean
    (:func:`gaussian_mean_norm`); ``bernoulli``: ``sqrt(d)`` (exact, every draw).
    """
    d = _check_positive_int(d, "dimension")
    if distribution == "uniform":
        return math.sqrt(d / 3.0)
    if distribution == "gaussian":
        return gaussian_mean_norm(d)
    if distribution == "bernoulli":
        return math.sqrt(d)
    raise ValueError(
        f"unknown distribution {distribution!r}; expected one of: {', '.join(DISTRIBUTIONS)}"
    )


def _check_positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return value


def _check_list(values: Iterable[Any], what: str) -> list[int]:
    out = [_check_positive_int(v, what) for v in values]
    if not out:
        raise ValueError(f"at least one {what} is needed")
    return sorted(set(out))


def sample_norms(
    distribution: str, d: int, samples: int, generator: torch.Generator
) -> torch.Tensor:
    """L2 norms of ``samples`` independent float64 noise vectors of width ``d``, shape (samples,).

    Vectors come from :func:`symnoise.noise.sample_noise` (the training sampler), drawn in
    chunks of at most ``2**22`` elements; the norm is ``sqrt(sum(x**2))`` with a correctly
    rounded square root, so Bernoulli norms equal ``math.sqrt(d)`` exactly (a sum of ``d``
    ones, then one rounding).
    """
    if distribution not in DISTRIBUTIONS:
        raise ValueError(
            f"unknown distribution {distribution!r}; expected one of: {', '.join(DISTRIBUTIONS)}"
        )
    d = _check_positive_int(d, "dimension")
    samples = _check_positive_int(samples, "sample count")
    rows = max(1, _CHUNK_ELEMENTS // d)
    out = torch.empty(samples, dtype=torch.float64)
    for start in range(0, samples, rows):
        stop = min(samples, start + rows)
        x = sample_noise(
            distribution, (stop - start, d), dtype=torch.float64, device="cpu", generator=generator
        )
        out[start:stop] = x.square().sum(dim=1)
    # numpy's sqrt is the correctly rounded IEEE one; torch's CPU kernel can be 1 ulp off
    # (sqrt(8192)), which would break the exactness of the Bernoulli norms.
    return torch.from_numpy(np.sqrt(out.numpy()))


def _cell_seed(seed: int, d: int, samples: int, dist_index: int) -> int:
    """A seed per (d, samples, distribution) so each cell is reproducible on its own."""
    mixed = (seed * 0x9E3779B97F4A7C15 + d * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    mixed = (mixed ^ (samples * 0x94D049BB133111EB) ^ (dist_index + 1)) & (2**63 - 1)
    return mixed


@dataclass
class NormAnalysis:
    """Result of :func:`norm_analysis`: one row per (d, samples) pair, ``d`` major.

    Row keys: ``d``, ``samples``; per distribution ``<dist>_mean`` and ``<dist>_std``
    (empirical mean and sample standard deviation of the norms), ``<dist>_closed``
    (:func:`closed_form_mean`) and ``<dist>_relerr`` (``mean / closed - 1``);
    ``gaussian_asymptotic`` (``sqrt(d)``); ``ratio_gaussian_uniform`` and
    ``ratio_bernoulli_uniform`` (ratios of empirical means), their closed forms
    ``ratio_gaussian_uniform_closed`` and ``ratio_bernoulli_uniform_closed`` and their
    relative errors against ``sqrt(3)``, ``ratio_gaussian_uniform_relerr`` and
    ``ratio_bernoulli_uniform_relerr``.
    """

    dims: list[int]
    samples: list[int]
    seed: int
    rows: list[dict[str, float | int]] = field(default_factory=list)

    def row(self, d: int, samples: int) -> dict[str, float | int]:
        """The row for dimension ``d`` and sample count ``samples`` (KeyError if absent)."""
        for r in self.rows:
            if r["d"] == d and r["samples"] == samples:
                return r
        raise KeyError(f"no row for d={d}, samples={samples}")

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict (``sqrt3`` included for reference)."""
        return {
            "dims": list(self.dims),
            "samples": list(self.samples),
            "seed": self.seed,
            "sqrt3": SQRT3,
            "rows": [dict(r) for r in self.rows],
        }


def norm_analysis(
    dims: Sequence[int] = DEFAULT_DIMS,
    samples: Sequence[int] = DEFAULT_SAMPLES,
    seed: int = 0,
) -> NormAnalysis:
    """Monte Carlo expected noise norms beside their closed forms, for every (d, samples).

    Each (d, samples, distribution) cell draws fresh vectors from its own generator seeded
    from ``seed``, ``d`` and ``samples``, so a cell's numbers do not depend on which other
    dimensions or sample counts were asked for. ``dims`` and ``samples`` are sorted and
    de-duplicated; rows come ``d``-major. Runs in about a second at the defaults.
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
                norms = sample_norms(dist, d, s, gen)
                mean = norms.mean().item()
                closed = closed_form_mean(dist, d)
                row[f"{dist}_mean"] = mean
                row[f"{dist}_std"] = norms.std(correction=1).item() if s > 1 else 0.0
                row[f"{dist}_closed"] = closed
                row[f"{dist}_relerr"] = mean / closed - 1.0
            row["gaussian_asymptotic"] = math.sqrt(d)
            for dist in ("gaussian", "bernoulli"):
                key = f"ratio_{dist}_uniform"
                row[key] = float(row[f"{dist}_mean"]) / float(row["uniform_mean"])
                row[f"{key}_closed"] = float(row[f"{dist}_closed"]) / float(row["uniform_closed"])
                row[f"{key}_relerr"] = float(row[key]) / SQRT3 - 1.0
            analysis.rows.append(row)
    return analysis


def format_norms_table(analysis: NormAnalysis) -> str:
    """A Markdown table of the analysis: empirical means (closed forms), ratios vs sqrt(3)."""
    header = [
        "d",
        "samples",
        "uniform mean",
        "sqrt(d/3)",
        "gaussian mean",
        "exact chi mean",
        "bernoulli mean",
        "sqrt(d)",
        "gauss/unif",
        "bern/unif",
        "sqrt(3)",
    ]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---:"] * len(header)) + "|",
    ]
    for r in analysis.rows:
        cells = [
            str(r["d"]),
            str(r["samples"]),
            f"{r['uniform_mean']:.4f}",
            f"{r['uniform_closed']:.4f}",
            f"{r['gaussian_mean']:.4f}",
            f"{r['gaussian_closed']:.4f}",
            f"{r['bernoulli_mean']:.4f}",
            f"{r['bernoulli_closed']:.4f}",
            f"{r['ratio_gaussian_uniform']:.5f}",
            f"{r['ratio_bernoulli_uniform']:.5f}",
            f"{SQRT3:.5f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _plot_norms(analysis: NormAnalysis, path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    s_max = max(analysis.samples)
    rows = [r for r in analysis.rows if r["samples"] == s_max]
    dims = [int(r["d"]) for r in rows]
    lo, hi = min(analysis.dims), max(analysis.dims)
    n_grid = 200
    grid = sorted({round(lo * (hi / lo) ** (i / (n_grid - 1))) for i in range(n_grid)} | {lo, hi})
    fig = Figure(figsize=(6.4, 4.8), dpi=120)
    ax = fig.add_subplot()
    styles = {"uniform": ("C0", "o"), "gaussian": ("C1", "s"), "bernoulli": ("C2", "^")}
    labels = {
        "uniform": ("uniform U(-1,1)", "sqrt(d/3)"),
        "gaussian": ("Gaussian N(0,1)", "exact chi mean ~ sqrt(d)"),
        "bernoulli": ("Bernoulli +-1", "sqrt(d)"),
    }
    for dist in DISTRIBUTIONS:
        color, marker = styles[dist]
        name, closed = labels[dist]
        ax.plot(
            grid,
            [closed_form_mean(dist, g) for g in grid],
            color=color,
            lw=1.2,
            ls="--" if dist == "bernoulli" else "-",
            label=f"{name}: {closed}",
        )
        ax.plot(
            dims,
            [r[f"{dist}_mean"] for r in rows],
            ls="none",
            marker=marker,
            color=color,
            mfc="none",
            ms=7,
            label=f"{name}: Monte Carlo ({s_max} samples)",
        )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("embedding dimension d")
    ax.set_ylabel("expected L2 norm of the noise vector")
    ax.set_title("Expected noise norm versus dimension")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, format="png")


def _plot_ratios(analysis: NormAnalysis, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.0, 4.2), dpi=120)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, dist, title in (
        (axes[0], "gaussian", "Gaussian / uniform"),
        (axes[1], "bernoulli", "Bernoulli / uniform"),
    ):
        for i, s in enumerate(analysis.samples):
            rows = [r for r in analysis.rows if r["samples"] == s]
            ax.plot(
                [r["d"] for r in rows],
                [r[f"ratio_{dist}_uniform"] for r in rows],
                marker="o",
                ms=4,
                color=f"C{i}",
                label=f"{s} samples",
            )
        ax.axhline(SQRT3, color="k", ls="--", lw=1.0, label="sqrt(3)")
        if dist == "gaussian":  # the exact ratio sits below sqrt(3) at small d
            ref = [r for r in analysis.rows if r["samples"] == analysis.samples[0]]
            ax.plot(
                [r["d"] for r in ref],
                [r["ratio_gaussian_uniform_closed"] for r in ref],
                color="0.5",
                lw=1.0,
                ls=":",
                label="closed forms' ratio",
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("embedding dimension d")
        ax.set_title(f"{title} norm ratio")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("ratio of mean norms")
    fig.tight_layout()
    fig.savefig(path, format="png")


def write_norms_report(analysis: NormAnalysis, output_dir: str | Path) -> dict[str, Path]:
    """Write the analysis to ``output_dir`` (created if needed) and return the paths.

    Keys and files: ``csv`` (``norms.csv``, every row field at full precision),
    ``markdown`` (``norms.md``, :func:`format_norms_table` with a short header),
    ``figure_norms`` (``norms_expected.png``: expected norm versus d, log-log, Monte Carlo
    points at the largest sample count over closed-form lines) and ``figure_ratios``
    (``norms_ratios.png``: the two ratios versus d, one line per sample count, with
    ``sqrt(3)`` marked).
    """
    if not analysis.rows:
        raise ValueError("the norm analysis has no rows to write")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": out / "norms.csv",
        "markdown": out / "norms.md",
        "figure_norms": out / "norms_expected.png",
        "figure_ratios": out / "norms_ratios.png",
    }
    fields = list(analysis.rows[0])
    with paths["csv"].open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(analysis.rows)  # str(float) is the shortest round-trip repr
    intro = (
        "# Expected L2 norm of the noise vectors\n\n"
        f"Monte Carlo in float64, seed {analysis.seed}. Closed forms: uniform sqrt(d/3), "
        "Gaussian sqrt(2) Gamma((d+1)/2) / Gamma(d/2) (tends to sqrt(d)), Bernoulli sqrt(d) "
        "(exact). Both ratios tend to sqrt(3).\n\n"
    )
    paths["markdown"].write_text(intro + format_norms_table(analysis), encoding="utf-8")
    _plot_norms(analysis, paths["figure_norms"])
    _plot_ratios(analysis, paths["figure_ratios"])
    return paths
