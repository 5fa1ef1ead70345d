"""The paired bootstrap and its interval text on inputs whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from symnoise.evaluate.paired import check_same_ids, format_interval, paired_bootstrap


def test_identical_values_give_zero_difference_not_significant() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(2.0, 0.5, size=300)
    d = paired_bootstrap(a, a.copy(), n_boot=500)
    assert d.diff == 0.0 and d.ci_low == 0.0 and d.ci_high == 0.0
    assert not d.significant
    assert d.n == 300 and d.n_strata == 1


def test_independent_noise_interval_covers_zero() -> None:
    # Two draws of the same distribution: no true difference.
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, 400), rng.normal(0, 1, 400)
    d = paired_bootstrap(a, b, n_boot=1000, seed=3)
    assert d.ci_low < 0 < d.ci_high
    assert not d.significant
    # The interval of a mean of 400 N(0, 2) differences: half-width ~ 1.96 * sqrt(2/400).
    assert d.ci_high - d.ci_low == pytest.approx(2 * 1.96 * math.sqrt(2 / 400), rel=0.15)


def test_known_shift_is_recovered_and_significant() -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(1.5, 0.4, 250)
    b = a + 0.1 + rng.normal(0, 0.05, 250)
    d = paired_bootstrap(a, b, n_boot=1000)
    assert d.diff == pytest.approx(0.1, abs=0.01)
    assert d.ci_low < d.diff < d.ci_high
    assert d.ci_low > 0 and d.significant
    assert d.mean_b - d.mean_a == pytest.approx(d.diff)
    # Paired: the interval reflects the sd of the differences (0.05), not of a (0.4).
    assert d.ci_high - d.ci_low < 0.02


def test_win_probability_shift_is_recovered() -> None:
    rng = np.random.default_rng(5)
    a = (rng.random(400) < 0.5).astype(float)
    b = (rng.random(400) < 0.8).astype(float)
    d = paired_bootstrap(a, b, n_boot=2000, seed=1)
    assert d.diff == pytest.approx(b.mean() - a.mean())
    assert d.diff == pytest.approx(0.3, abs=0.06)
    assert d.significant and d.ci_low > 0.15


def test_stratified_by_seed_weighs_seeds_equally_and_resamples_within() -> None:
    # Two seeds with very different baselines; B is A + 0.2 within each seed.
    rng = np.random.default_rng(6)
    a1, a2 = rng.normal(1.0, 0.1, 100), rng.normal(5.0, 0.1, 300)
    b1 = a1 + 0.2 + rng.normal(0, 0.02, 100)
    b2 = a2 + 0.2 + rng.normal(0, 0.02, 300)
    a, b = np.concatenate([a1, a2]), np.concatenate([b1, b2])
    strata = [1] * 100 + [2] * 300
    d = paired_bootstrap(a, b, strata=strata, n_boot=1000)
    assert d.n_strata == 2 and d.n_per_stratum == (100, 300) and d.n == 400
    expected = ((b1 - a1).mean() + (b2 - a2).mean()) / 2
    assert d.diff == pytest.approx(expected)
    assert d.mean_a == pytest.approx((a1.mean() + a2.mean()) / 2)
    assert d.significant and d.ci_low > 0.19 and d.ci_high < 0.21


def test_stratification_changes_the_weighting() -> None:
    # Seed 1 (10 pairs) differs by +1, seed 2 (90 pairs) by 0: pooled mean 0.1, by seed 0.5.
    a = np.zeros(100)
    b = np.concatenate([np.ones(10), np.zeros(90)])
    strata = ["s1"] * 10 + ["s2"] * 90
    assert paired_bootstrap(a, b, n_boot=200).diff == pytest.approx(0.1)
    by_seed = paired_bootstrap(a, b, strata=strata, n_boot=200)
    assert by_seed.diff == pytest.approx(0.5)
    # Within each seed the differences are constant: every resample gives 0.5 exactly.
    assert by_seed.ci_low == pytest.approx(0.5) and by_seed.ci_high == pytest.approx(0.5)


def test_deterministic_under_seed_and_varies_with_it() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(0, 1, 50), rng.normal(0.1, 1, 50)
    one = paired_bootstrap(a, b, n_boot=300, seed=11)
    assert one == paired_bootstrap(a, b, n_boot=300, seed=11)
    assert one.ci_low != paired_bootstrap(a, b, n_boot=300, seed=12).ci_low


def test_callable_statistic_matches_mean() -> None:
    rng = np.random.default_rng(8)
    a, b = rng.normal(0, 1, 60), rng.normal(0.5, 1, 60)
    fn = paired_bootstrap(a, b, n_boot=300, statistic=lambda x, y: float(y.mean() - x.mean()))
    vec = paired_bootstrap(a, b, n_boot=300)
    assert fn.diff == pytest.approx(vec.diff)
    # Different draws, same distribution: the intervals agree closely.
    assert fn.ci_low == pytest.approx(vec.ci_low, abs=0.1)
    assert fn.ci_high == pytest.approx(vec.ci_high, abs=0.1)


def test_large_inputs_are_chunked() -> None:
    a = np.zeros(50_000)
    b = np.full(50_000, 0.25)
    d = paired_bootstrap(a, b, n_boot=200)
    assert d.diff == pytest.approx(0.25) and d.ci_low == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"a": [1.0, 2.0], "b": [1.0]}, "paired values must come in pairs"),
        ({"a": [], "b": []}, "no pairs"),
        ({"a": [1.0, float("nan")], "b": [1.0, 2.0]}, "position 1"),
        ({"a": [1.0], "b": [1.0], "n_boot": 0}, "n_boot"),
        ({"a": [1.0], "b": [1.0], "confidence": 1.5}, "confidence"),
        ({"a": [1.0, 2.0], "b": [1.0, 2.0], "strata": [1]}, "1 labels for 2 pairs"),
    ],
)
def test_bad_input_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        paired_bootstrap(**kwargs)


def test_check_same_ids_names_the_ids_found_on_one_side_only() -> None:
    check_same_ids(["x", "y"], ["y", "x"])  # the same set in another order pairs
    with pytest.raises(ValueError) as exc:
        check_same_ids(["p1", "p2", "p3"], ["p1", "q9"], what="prompts", a_name="none",
                       b_name="SymNoise α5")
    text = str(exc.value)
    assert "2 of none's 3 prompts are not in SymNoise α5" in text
    assert "'p2'" in text and "'q9'" in text
    assert "1 of SymNoise α5's 2 prompts are not in none" in text
    with pytest.raises(ValueError, match="B has no examples"):
        check_same_ids(["x"], [])


def test_format_interval() -> None:
    d = paired_bootstrap([0.0, 0.0, 0.0], [0.021, 0.021, 0.021], n_boot=10)
    assert format_interval(d, scale=100) == "+2.1 [+2.1, +2.1]"
    d = paired_bootstrap([0.0, 1.0], [1.0, 0.0], n_boot=400, seed=2)
    assert format_interval(d) == "0.0 [\u22121.0, +1.0]"


def test_matches_a_plain_loop_over_resamples() -> None:
    # The same draws written out by hand: one stratum, one chunk, numpy's generator.
    rng = np.random.default_rng(9)
    a, b = rng.normal(0, 1, 30), rng.normal(0.3, 1, 30)
    w = rng.integers(1, 20, 30).astype(float)
    draws = np.random.default_rng(5).integers(0, 30, size=(400, 30))
    plain = [(b[i] - a[i]).mean() for i in draws]
    weighted = [(w[i] * (b[i] - a[i])).sum() / w[i].sum() for i in draws]
    for kwargs, stats in (({}, plain), ({"weights": w}, weighted)):
        d = paired_bootstrap(a, b, n_boot=400, seed=5, **kwargs)
        assert d.ci_low == pytest.approx(np.quantile(stats, 0.025))
        assert d.ci_high == pytest.approx(np.quantile(stats, 0.975))
        assert d.se == pytest.approx(np.std(stats, ddof=1))


def test_weights_give_weighted_means() -> None:
    # Example 0 (9 tokens) is 1 worse, example 1 (1 token) equal: per token, +0.9.
    d = paired_bootstrap([2.0, 3.0], [3.0, 3.0], weights=[9, 1], n_boot=200)
    assert d.diff == pytest.approx(0.9)
    assert d.mean_a == pytest.approx(2.1) and d.mean_b == pytest.approx(3.0)
    # Resamples hold only example 0 (+1), only example 1 (0), or both (+0.9).
    assert d.ci_low == pytest.approx(0.0) and d.ci_high == pytest.approx(1.0)
    with pytest.raises(ValueError, match="positive numbers"):
        paired_bootstrap([1.0, 2.0], [1.0, 2.0], weights=[1, 0])
    with pytest.raises(ValueError, match="statistic='mean' only"):
        paired_bootstrap([1.0], [1.0], weights=[1], statistic=lambda x, y: 0.0)


def test_interval_covers_the_true_difference_about_95_percent() -> None:
    # 300 experiments with a known true difference of 0.2 in two seeds of 100 pairs each.
    rng = np.random.default_rng(10)
    hits = 0
    for rep in range(300):
        a = rng.normal(0, 1, 200) + np.repeat([0.0, 3.0], 100)  # seeds with other baselines
        b = a + 0.2 + rng.normal(0, 1, 200)
        d = paired_bootstrap(a, b, strata=[0] * 100 + [1] * 100, n_boot=400, seed=rep)
        hits += d.ci_low <= 0.2 <= d.ci_high
    assert 0.90 <= hits / 300 <= 0.99


def test_bootstrap_mean_of_one_side():
    from symnoise.evaluate.paired import bootstrap_mean

    vals = [float(i % 7) for i in range(200)]
    d = bootstrap_mean(vals)
    assert d.diff == pytest.approx(sum(vals) / len(vals)) and d.n == 200
    assert d.ci_low < d.diff < d.ci_high
    assert bootstrap_mean(vals) == d  # deterministic under the seed
    w = [1.0] * 100 + [3.0] * 100
    dw = bootstrap_mean(vals, weights=w)
    assert dw.diff == pytest.approx(sum(v * x for v, x in zip(vals, w, strict=True)) / sum(w))
    wide = bootstrap_mean(vals[:20])
    assert wide.ci_high - wide.ci_low > d.ci_high - d.ci_low  # fewer examples, wider
    with pytest.raises(ValueError, match="not finite"):
        bootstrap_mean([1.0, float("nan")])
