"""AlpacaEval leaderboard columns of a set of annotations, by alpaca_eval's own functions.

``leaderboard_metrics(annotations)`` gives ``win_rate, standard_error, n_wins,
n_wins_base, n_draws, n_total, discrete_win_rate`` from
:func:`alpaca_eval.metrics.get_winrate`, ``avg_length`` (mean characters of the model's
outputs, as AlpacaEval's leaderboard), and the length-controlled win rate
``length_controlled_winrate, lc_standard_error``.

Length control is AlpacaEval 2's GLM. alpaca_eval's :func:`get_length_controlled_winrate`
downloads ``df_gamed.csv`` (instruction difficulty and the gamed baselines) from the
Hugging Face Hub, which this toolkit never does; we fit the GLM with alpaca_eval's own
design-matrix and fitting functions (``make_dmatrix_for_model``,
``fit_LogisticRegressionCV``) and its formula without the instruction-difficulty term
(``length_controlled_minimal``, no regularisation to the gamed baselines). Every result
says so in ``lc_variant`` (:data:`LC_OFFLINE`); a test checks the numbers equal
alpaca_eval's function run on the same annotations with that formula.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ._alpaca_eval import load_alpaca_eval

__all__ = ["LC_OFFLINE", "LC_GLM", "LEADERBOARD_COLUMNS", "leaderboard_metrics",
           "length_controlled"]

LC_GLM = "length_controlled_minimal"
LC_OFFLINE = "no-instruction-difficulty (offline)"
LC_HUB_NOTE = ("AlpacaEval 2's full length control adds an instruction-difficulty term read "
               "from tatsu-lab/alpaca_eval's df_gamed.csv on the Hugging Face Hub; not used")
LEADERBOARD_COLUMNS = ("win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws",
                       "n_total", "discrete_win_rate", "avg_length",
                       "length_controlled_winrate", "lc_standard_error")
MIN_LC_ITEMS = 10  # GroupKFold needs 5 groups; fewer than 10 items is no fit worth showing


def _num(value: Any) -> float | int | None:
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def length_controlled(frame: Any) -> tuple[float, float]:
    """(LC win rate, its standard error) in percent, from a frame with ``preference``,
    ``output_1``, ``output_2``: AlpacaEval 2's GLM without instruction difficulty."""
    import numpy as np
    import pandas as pd

    glm = load_alpaca_eval().metrics.glm_winrate

    info = glm.GLM_INFO[LC_GLM]
    df = frame.reset_index(drop=True)
    delta = df["output_1"].str.len() - df["output_2"].str.len()
    data = pd.DataFrame({
        "preference": df["preference"].astype(float).replace({0.0: 1.5}) - 1,
        "std_delta_len": delta / delta.std(),
        "not_gamed_baseline": True,
    })
    test = data[["not_gamed_baseline"]].copy()
    test["std_delta_len"] = 0
    train, x_test = glm.make_dmatrix_for_model(data, test, formula=info["formula"])
    train = train[train["preference"].notna()]
    model = glm.fit_LogisticRegressionCV(train, "preference", is_ytrue_proba=True,
                                         **info["kwargs"])
    predicted = model.predict_proba(x_test)[:, 1]
    return float(np.mean(predicted) * 100), float(pd.Series(predicted).sem() * 100)


def leaderboard_metrics(annotations: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The leaderboard columns (:data:`LEADERBOARD_COLUMNS`) plus ``lc_variant``/``lc_note``.

    annotations: rows with ``output_1`` (reference), ``output_2`` (model) and
    ``preference`` (None for items without a verdict: they are left out of every column
    except ``avg_length``, as alpaca_eval leaves them out).
    """
    import pandas as pd

    get_winrate = load_alpaca_eval().metrics.get_winrate
    frame = pd.DataFrame([{"preference": a.get("preference"), "output_1": a["output_1"],
                           "output_2": a["output_2"]} for a in annotations],
                         columns=["preference", "output_1", "output_2"])
    judged = frame[frame["preference"].notna()]
    out: dict[str, Any] = dict.fromkeys(LEADERBOARD_COLUMNS)
    if len(judged):
        out.update({k: _num(v) for k, v in get_winrate(judged).items()})
    else:
        out.update(n_wins=0, n_wins_base=0, n_draws=0, n_total=0)
    out["avg_length"] = _num(float(frame["output_2"].str.len().mean())) if len(frame) else None
    out["lc_variant"], out["lc_note"] = LC_OFFLINE, LC_HUB_NOTE
    deltas = frame["output_1"].str.len() - frame["output_2"].str.len()
    if len(judged) < MIN_LC_ITEMS or not deltas.std() > 0:
        out["lc_note"] = (f"not computed: needs >= {MIN_LC_ITEMS} judged items with differing "
                          f"lengths (got {len(judged)}); " + LC_HUB_NOTE)
        return out
    lc, _ = length_controlled(frame)
    out["length_controlled_winrate"] = _num(lc)
    # Without instruction difficulty every item gets the same prediction, so alpaca_eval's
    # standard error of the predictions is 0 by construction: not an uncertainty, not shown.
    out["lc_note"] = LC_HUB_NOTE + "; lc_standard_error needs that term (0 by construction)"
    return out
