"""The leaderboard columns equal alpaca_eval's own functions on the same annotations."""

from __future__ import annotations

import math
import random

import pandas as pd
import pytest

from symnoise.evaluate.winrate import (
    LC_OFFLINE,
    LEADERBOARD_COLUMNS,
    build_report,
    leaderboard_metrics,
    length_controlled,
    load_alpaca_eval,
    win_rate,
)


def _annotations(n: int = 60, seed: int = 0) -> list[dict]:
    """Preferences that favour the longer output, with some ties and continuous values."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        len_1, len_2 = rng.randint(5, 80), rng.randint(20, 100)  # the model is longer
        p_model = 1 / (1 + math.exp(-(len_2 - len_1) / 20))
        pref = rng.choice([1.0 + p_model, 1.0 if p_model < 0.5 else 2.0, 1.5])
        rows.append({"instruction": f"i{i}", "output_1": "r" * len_1, "output_2": "m" * len_2,
                     "preference": pref, "generator_1": "ref", "generator_2": "model",
                     "annotator": "test"})
    return rows


def test_win_rate_columns_equal_alpaca_eval() -> None:
    get_winrate = load_alpaca_eval().metrics.get_winrate

    annotations = _annotations()
    ours = leaderboard_metrics(annotations + [{**annotations[0], "preference": None}])
    theirs = get_winrate(pd.DataFrame(annotations))
    for key in ("win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "n_total",
                "discrete_win_rate"):
        assert ours[key] == pytest.approx(float(theirs[key])), key
    # And the plain-Python mean used per dataset agrees too.
    rate, se, n = win_rate(a["preference"] for a in annotations)
    assert (rate, se, n) == (pytest.approx(ours["win_rate"]),
                             pytest.approx(ours["standard_error"]), ours["n_total"])
    assert set(LEADERBOARD_COLUMNS) <= set(ours)
    assert ours["avg_length"] == pytest.approx(
        sum(len(a["output_2"]) for a in annotations + annotations[:1]) / 61)


def test_zero_is_a_draw_everywhere_as_in_alpaca_eval() -> None:
    """A preference of 0 (AlpacaEval's older draw) counts as 1.5 in our report's counts
    and win rate, in the leaderboard columns and in the length-controlled fit."""
    get_winrate = load_alpaca_eval().metrics.get_winrate
    annotations = [{**a, "status": "ok", "preference": 0 if i % 5 == 0 else a["preference"]}
                   for i, a in enumerate(_annotations())]
    as_draws = [{**a, "preference": 1.5 if a["preference"] == 0 else a["preference"]}
                for a in annotations]
    report = build_report(annotations, name="m", reference_name="ref", judge="j", annotator="t")
    theirs = get_winrate(pd.DataFrame(annotations))
    assert report.win_rate == pytest.approx(float(theirs["win_rate"]))
    assert (report.n_wins, report.n_losses, report.n_ties) == (
        theirs["n_wins"], theirs["n_wins_base"], theirs["n_draws"])
    assert report.n_ties >= 12 and report.metrics["n_draws"] == theirs["n_draws"]
    assert length_controlled(pd.DataFrame(annotations)) == length_controlled(
        pd.DataFrame(as_draws))


def test_length_controlled_equals_alpaca_eval_minimal_glm(tmp_path, monkeypatch) -> None:
    glm_winrate = load_alpaca_eval().metrics.glm_winrate

    annotations = _annotations(80, seed=1)
    # alpaca_eval reads instruction difficulty from the hub even for the formula without it;
    # give it a local file instead (the values are not used by that formula).
    gamed = tmp_path / "df_gamed.csv"
    pd.DataFrame({"index": range(80), "instruction_difficulty": 0.0, "model": "x"}).to_csv(
        gamed, index=False)
    monkeypatch.setattr(glm_winrate, "hf_hub_download", lambda **kw: str(gamed))
    theirs = glm_winrate.get_length_controlled_winrate(
        pd.DataFrame(annotations), glm_name="length_controlled_minimal", save_weights_dir=None,
        is_warn_extreme_changes=False)
    lc, lc_se = length_controlled(pd.DataFrame(annotations))
    assert lc == pytest.approx(theirs["length_controlled_winrate"], abs=1e-9)
    assert lc_se == pytest.approx(theirs["lc_standard_error"], abs=1e-9)
    ours = leaderboard_metrics(annotations)
    assert ours["length_controlled_winrate"] == pytest.approx(lc, abs=1e-5)
    assert ours["lc_variant"] == LC_OFFLINE and "Hub" in ours["lc_note"]
    # The model wins by being longer: removing the length effect lowers its rate.
    assert ours["length_controlled_winrate"] < ours["win_rate"]


def test_too_few_items_give_no_lc_and_say_why() -> None:
    ours = leaderboard_metrics(_annotations(4))
    assert ours["length_controlled_winrate"] is None and ours["n_total"] == 4
    assert ours["lc_note"].startswith("not computed")
    empty = leaderboard_metrics([{"output_1": "a", "output_2": "bb", "preference": None}])
    assert (empty["win_rate"], empty["n_total"], empty["avg_length"]) == (None, 0, 2.0)
