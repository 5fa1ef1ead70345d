"""compare's length-controlled win rate on constructed annotations whose answer is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from symnoise.experiments.compare import compare_runs
from tests.test_compare import make_run

N = 40


def _prompts() -> list[str]:
    return [f"prompt {i}" for i in range(N)]


def _outputs(lengths: list[int]) -> dict[str, str]:
    return {p: "x" * n for p, n in zip(_prompts(), lengths, strict=True)}


def _lc(a: Path, b: Path, n_boot: int = 40):
    return {m.metric: m for m in compare_runs([a], [b], n_boot=n_boot,
                                              metrics=["win_rate", "lc_win_rate"])}


def test_identical_sides_cover_zero(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(50, 150, N).tolist()
    prefs = dict(zip(_prompts(), rng.choice([1.0, 2.0], N).tolist(), strict=True))
    a = make_run(tmp_path, "a", prefs=prefs, outputs=_outputs(lengths), ref_text="y" * 100)
    b = make_run(tmp_path, "b", method="symnoise", prefs=prefs, outputs=_outputs(lengths),
                 ref_text="y" * 100)
    row = _lc(a, b)["lc_win_rate"]
    assert row.result is not None, row.skipped
    assert abs(row.result.diff) < 1e-9 and row.result.ci_low <= 0 <= row.result.ci_high
    assert not row.result.significant
    assert "no-instruction-difficulty" in row.line()
    assert row.to_dict()["lc_variant"] == row.variant


def test_better_at_equal_length_is_significant(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    lengths = rng.integers(50, 150, N).tolist()
    worse = dict(zip(_prompts(), [2.0 if i % 10 == 0 else 1.0 for i in range(N)], strict=True))
    better = dict(zip(_prompts(), [1.0 if i % 10 == 0 else 2.0 for i in range(N)], strict=True))
    a = make_run(tmp_path, "a", prefs=worse, outputs=_outputs(lengths), ref_text="y" * 100)
    b = make_run(tmp_path, "b", method="symnoise", prefs=better, outputs=_outputs(lengths),
                 ref_text="y" * 100)
    res = _lc(a, b)["lc_win_rate"].result
    assert res is not None and res.diff > 20 and res.significant and res.ci_low > 0


def test_winning_by_length_only_shrinks(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    base = rng.integers(80, 120, N).tolist()
    prefs_a = dict(zip(_prompts(), rng.choice([1.0, 2.0], N, p=[0.7, 0.3]).tolist(),
                       strict=True))
    a = make_run(tmp_path, "a", prefs=prefs_a, outputs=_outputs(base), ref_text="y" * 100)
    # B: longer outputs win, shorter lose - the wins come from length alone
    long_ = [int(n * (3 if i % 2 else 1)) for i, n in enumerate(base)]
    prefs_b = dict(zip(_prompts(), [2.0 if i % 2 else 1.0 for i in range(N)], strict=True))
    b = make_run(tmp_path, "b", method="symnoise", prefs=prefs_b, outputs=_outputs(long_),
                 ref_text="y" * 100)
    rows = _lc(a, b)
    raw, lc = rows["win_rate"].result, rows["lc_win_rate"].result
    assert raw is not None and lc is not None
    assert lc.diff < raw.diff - 5


def test_too_few_items_skipped(tmp_path: Path) -> None:
    prefs = {f"p{i}": 2.0 for i in range(5)}
    a = make_run(tmp_path, "a", prefs=prefs)
    b = make_run(tmp_path, "b", method="symnoise", prefs=prefs)
    row = _lc(a, b)["lc_win_rate"]
    assert row.result is None and "needs >= 10" in row.skipped
