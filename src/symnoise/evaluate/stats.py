"""Response length and n-gram diversity as the NEFTune/SymNoise papers report them, and the
Wilson interval of every accuracy.

``avg_chars``/``avg_words`` (``len(text)``, ``len(text.split())``) are over all responses.
Repetition and diversity use only the first ``words`` words (:data:`PRESETS`) of each
response with at least that many (the others are excluded and counted):
``rep_n = 100 * (1 - unique_n / total_n)``, n-grams unique within a response and counts
pooled over responses (as the SimCTG code the papers build on, but every n-gram counted);
``diversity = prod_n (1 - rep_n / 100)`` over n = 2, 3, 4; ``log_diversity = -ln(1 - D)``
(Kirchenbauer et al., capped at 20); ``ln_diversity = ln(D)``. No response kept: None."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

from .._io import fmt, markdown_table
from ..outputs import read_rows

#: Number of leading words used for repetition/diversity, per training dataset (papers).
PRESETS: dict[str, int] = {"alpaca": 50, "evol_instruct": 100, "sharegpt": 150,
                           "openplatypus": 150}
#: n-gram orders entering the repetition rates and the diversity product.
NGRAM_ORDERS: tuple[int, ...] = (2, 3, 4)
#: Upper bound of ``log_diversity`` (Kirchenbauer et al. floor ``1 - D`` at ``exp(-20)``).
LOG_DIVERSITY_CAP: float = 20.0
_MIN_WORDS = max(NGRAM_ORDERS)


def words_for(preset_or_int: str | int) -> int:
    """Leading words ``N`` of a preset (:data:`PRESETS`, case and ``-`` folded) or a count
    (at least 4: every kept response has a 4-gram); ValueError naming anything else."""
    value: Any = preset_or_int
    if isinstance(value, str):
        key = value.strip().lower().replace("-", "_").replace(" ", "_")
        if key in PRESETS:
            return PRESETS[key]
        if not key.isdigit():
            known = ", ".join(f"{k} ({v})" for k, v in PRESETS.items())
            raise ValueError(f"unknown dataset preset {preset_or_int!r}; expected one of: "
                             f"{known}, or a number of words")
        value = int(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"words must be a dataset preset or an integer, got {preset_or_int!r}")
    if value < _MIN_WORDS:
        raise ValueError(
            f"words must be >= {_MIN_WORDS} (the largest n-gram order), got {preset_or_int!r}")
    return value


@dataclass(frozen=True)
class TextStats:
    """The module docstring's statistics; ``n_kept``: responses of at least ``words`` words,
    ``n_empty``: of none."""

    n: int
    n_kept: int
    avg_chars: float | None
    avg_words: float | None
    rep_2: float | None
    rep_3: float | None
    rep_4: float | None
    diversity: float | None
    log_diversity: float | None
    words: int
    n_empty: int = 0
    ln_diversity: float | None = None

    @property
    def n_excluded(self) -> int:
        return self.n - self.n_kept

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "n_excluded": self.n_excluded}


def ngram_counts(words: Sequence[str], n: int) -> tuple[int, int]:
    """``(unique, total)`` n-grams of one word sequence; ``total = max(0, len - n + 1)``."""
    if n < 1:
        raise ValueError(f"n-gram order must be >= 1, got {n!r}")
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)), len(grams)


def text_stats(responses: Sequence[str], *, words: int | str = 50) -> TextStats:
    """The statistics of ``responses`` over their first ``words`` words (:func:`words_for`)."""
    n_words = words_for(words)
    if isinstance(responses, (str, bytes)):
        raise ValueError("responses must be a sequence of strings, got a single string")
    texts = list(responses)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"response {i} is not a string: {type(text).__name__} {text!r:.80}")
    n, split = len(texts), [t.split() for t in texts]
    kept = [w[:n_words] for w in split if len(w) >= n_words]
    rep: dict[int, float | None] = {}
    for order in NGRAM_ORDERS:
        counts = [ngram_counts(w, order) for w in kept]
        total = sum(t for _, t in counts)
        rep[order] = 100.0 * (1.0 - sum(u for u, _ in counts) / total) if total else None
    diversity = log_div = ln_div = None
    if all(r is not None for r in rep.values()):
        diversity = math.prod(1.0 - r / 100.0 for r in rep.values())  # type: ignore[operator]
        gap = 1.0 - diversity
        log_div = LOG_DIVERSITY_CAP if gap <= math.exp(-LOG_DIVERSITY_CAP) else -math.log(gap)
        ln_div = math.log(diversity) if diversity > 0 else -math.inf
    return TextStats(
        n=n, n_kept=len(kept), avg_chars=sum(map(len, texts)) / n if n else None,
        avg_words=sum(map(len, split)) / n if n else None, rep_2=rep[2], rep_3=rep[3],
        rep_4=rep[4], diversity=diversity, log_diversity=log_div, words=n_words,
        n_empty=sum(1 for w in split if not w), ln_diversity=ln_div)


def stats_for_file(path: str | Path, *, words: int | str | None = None,
                   dataset: str | None = None) -> TextStats:
    """:func:`text_stats` of the ``output`` of every row of a JSON/JSONL file (model outputs
    or training data); ``N`` from ``words`` or ``dataset`` (both: they must agree), else 50."""
    if words is not None and dataset is not None and words_for(words) != words_for(dataset):
        raise ValueError(f"words={words!r} disagrees with dataset={dataset!r} "
                         f"({words_for(dataset)} words); give one of them")
    n_words = words_for(words if words is not None else dataset if dataset is not None else 50)
    return text_stats([r["output"] for r in read_rows(path, fields=("output",))], words=n_words)


def format_stats_table(rows: Mapping[str, TextStats]) -> str:
    """A Markdown table with one line per named :class:`TextStats` (``n/a``: no value)."""
    header = ["name", "N", "responses", "kept", "excluded", "avg chars", "avg words",
              "rep-2 %", "rep-3 %", "rep-4 %", "diversity", "log-div"]
    return markdown_table(header, [
        [name, s.words, s.n, s.n_kept, s.n_excluded,
         *(fmt(v, ".2f", missing="n/a") for v in (s.avg_chars, s.avg_words, s.rep_2, s.rep_3,
                                                  s.rep_4)),
         fmt(s.diversity, ".4f", missing="n/a"), fmt(s.log_diversity, ".2f", missing="n/a")]
        for name, s in rows.items()], "l" + "r" * 11)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n``: the one of every
    accuracy (synthetic exact answers, judge checks); exactly 0 / 1 at 0 / n successes."""
    if n <= 0:
        raise ValueError(f"Wilson interval needs n >= 1, got n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n={n}], got {successes}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    z2n = z * z / n
    denom = 1 + z2n
    center = (p + z2n / 2) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2n / (4 * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return low, high
