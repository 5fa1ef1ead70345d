"""Built-in synthetic instruction suite: training data and held-out prompts whose answers can be checked exactly.

The suite holds short instruction-following tasks whose answers can be checked exactly
(sorting, arithmetic, unit conversion, JSON formatting, date arithmetic, ...). It is the
default training data of symnoise, small enough to fine-tune a 135M model on a CPU, and its
held-out split gives an offline score (exact-answer accuracy) with no LLM judge.

* Every family has its own instruction phrasings. The training split uses only the
  ``train`` phrasings and the held-out split only the ``heldout`` phrasings, so held-out
  accuracy measures whether the model follows a task it learned when asked in new words.
* The concrete inputs of the two splits never coincide: every input (the fields a record is
  built from, phrasing aside) falls on one side of a fixed hash partition, whatever the seed.
* Everything is deterministic from the seed and drawn with ``random.Random``; the two
  splits use independent streams, so a split does not depend on the other split's size and
  a shorter split is a prefix of a longer one.

Records are Alpaca-style dicts::

    {"instruction": ..., "input": ... (may be ""), "output": <answer to produce>,
     "family": <family name>, "answer": <canonical answer>, "phrasing": <phrasing id>}

Reading and scoring a model's answers is evaluation, not data: see
:mod:`symnoise.evaluate.tasks` (``check_answer``, ``score_responses``, Wilson intervals).

The task families (vocabularies, samplers, phrasings) live in
:mod:`symnoise.data.synthetic_families`; their names are re-exported here.
"""

from __future__ import annotations

import hashlib
import random
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from symnoise.data.synthetic_families import (
    _FAMILY_LIST,
    _PHRASINGS,
    FAMILIES,
    SPLITS,
    Family,
    Fields,
    Phrasing,
    _canonical_split,
)

__all__ = [
    "FAMILIES",
    "Family",
    "Phrasing",
    "SPLITS",
    "SyntheticSuite",
    "example_fields",
    "example_key",
    "family_of",
    "generate_suite",
    "load_synthetic",
]

DEFAULT_N_TRAIN = 2000
DEFAULT_N_HELDOUT = 240

# One input in this many (by a fixed hash of the input) belongs to the held-out side.
_HELDOUT_MODULUS = 6
# How many extra draws to spend looking for an input not yet used in the same split.
_UNIQUE_TRIES = 50
_MAX_DRAWS = 5000


# --------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------


@dataclass
class SyntheticSuite:
    """The two splits of the synthetic suite (lists of Alpaca-style record dicts)."""

    train: list[dict[str, str]]
    heldout: list[dict[str, str]]


def _key(family: str, fields: Mapping[str, str]) -> tuple[str, ...]:
    return (family, *(f"{k}={fields[k]}" for k in sorted(fields)))


def _is_heldout_key(key: tuple[str, ...]) -> bool:
    digest = hashlib.sha256("\x1f".join(key).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % _HELDOUT_MODULUS == 0


def _draw(
    fam: Family, rng: random.Random, heldout: bool, seen: set[tuple[str, ...]]
) -> tuple[Fields, str, tuple[str, ...]]:
    """Draw an example on the right side of the partition, new to ``seen`` when possible."""
    fallback: tuple[Fields, str, tuple[str, ...]] | None = None
    repeats = 0
    for _ in range(_MAX_DRAWS):
        fields, answer = fam.sampler(rng)
        key = _key(fam.name, fields)
        if _is_heldout_key(key) != heldout:
            continue
        if key not in seen:
            return fields, answer, key
        fallback = fallback or (fields, answer, key)
        repeats += 1
        if repeats >= _UNIQUE_TRIES:
            break
    if fallback is None:  # pragma: no cover - every family has a large input space
        raise RuntimeError(f"family {fam.name!r} yields no inputs for this split")
    return fallback


def _generate_split(seed: int, n: int, split: str) -> list[dict[str, str]]:
    split = _canonical_split(split)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"number of {split} examples must be an integer >= 0, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    rng = random.Random(f"symnoise.synthetic:{seed}:{split}")
    heldout = split == "heldout"
    seen: set[tuple[str, ...]] = set()
    records: list[dict[str, str]] = []
    for i in range(n):
        fam = _FAMILY_LIST[i % len(_FAMILY_LIST)]
        fields, answer, key = _draw(fam, rng, heldout, seen)
        seen.add(key)
        phrasings = fam.phrasings(split)
        phrasing = phrasings[(i // len(_FAMILY_LIST)) % len(phrasings)]
        instruction, input_text = phrasing.render(fields)
        records.append(
            {
                "instruction": instruction,
                "input": input_text,
                "output": answer,
                "family": fam.name,
                "answer": answer,
                "phrasing": phrasing.id,
            }
        )
    return records


def generate_suite(
    seed: int = 0, n_train: int = DEFAULT_N_TRAIN, n_heldout: int = DEFAULT_N_HELDOUT
) -> SyntheticSuite:
    """Generate both splits of the synthetic suite, deterministically from ``seed``.

    Families alternate round-robin in each split (so each has ``n // len(FAMILIES)`` or one
    more examples) and so do the phrasings within a family. Train records use only train
    phrasings, held-out records only held-out phrasings, and no held-out input equals a
    training input (for any pair of seeds). Within a split an input repeats only when 50
    further draws found no fresh one for its family (never at the default sizes); count
    repeats with :func:`example_key`.
    """
    return SyntheticSuite(
        train=_generate_split(seed, n_train, "train"),
        heldout=_generate_split(seed, n_heldout, "heldout"),
    )


def load_synthetic(split: str = "train", seed: int = 0, n: int | None = None) -> list[dict]:
    """Return one split of the suite: ``train`` or ``heldout`` (alias ``test``).

    ``n`` defaults to 2000 for train and 240 for held-out; the records equal those of
    :func:`generate_suite` with the same seed and size. Unknown split: ValueError.
    """
    canonical = _canonical_split(split)
    if n is None:
        n = DEFAULT_N_TRAIN if canonical == "train" else DEFAULT_N_HELDOUT
    return _generate_split(seed, n, canonical)


@cache
def _template_regex(template: str) -> re.Pattern[str]:
    parts: list[str] = []
    named: set[str] = set()
    for literal, field, _spec, _conv in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if field is not None:
            parts.append(f"(?P={field})" if field in named else f"(?P<{field}>.*?)")
            named.add(field)
    return re.compile("".join(parts), re.DOTALL)


def family_of(record: Mapping[str, Any]) -> Family:
    """The :class:`Family` a record names in its ``family`` field; ValueError when the record
    is not a dict, has no family or names an unknown one."""
    if not isinstance(record, Mapping):
        raise ValueError(f"a synthetic record must be a dict, got {type(record).__name__}")
    name = record.get("family")
    if name is None:
        raise ValueError(f"record has no 'family' field: {dict(record)!r}")
    if name not in FAMILIES:
        raise ValueError(
            f"unknown synthetic family {name!r}; expected one of: {', '.join(FAMILIES)}"
        )
    return FAMILIES[name]


def example_fields(record: Mapping[str, Any]) -> dict[str, str]:
    """Recover the field values a record was built from, by reading it against its phrasing.

    Raises ValueError when the record's phrasing is unknown or its text does not fit it.
    """
    fam = family_of(record)
    pid = record.get("phrasing")
    if pid not in _PHRASINGS or _PHRASINGS[pid][0] is not fam:
        raise ValueError(f"record of family {fam.name!r} has unknown phrasing {pid!r}")
    phrasing = _PHRASINGS[pid][1]
    fields: dict[str, str] = {}
    for template, text in (
        (phrasing.instruction, record.get("instruction", "")),
        (phrasing.input, record.get("input", "")),
    ):
        match = _template_regex(template).fullmatch(text)
        if match is None:
            raise ValueError(f"record text does not fit phrasing {pid!r}: {text!r}")
        for name, value in match.groupdict().items():
            if fields.setdefault(name, value) != value:
                raise ValueError(f"record gives field {name!r} two values under {pid!r}")
    return fields


def example_key(record: Mapping[str, Any]) -> tuple[str, ...]:
    """The record's concrete inputs with the phrasing removed: ``(family, "field=value", ...)``.

    Two records share a key exactly when they pose the same task instance, however phrased;
    the held-out split shares no key with the training split.
    """
    return _key(family_of(record).name, example_fields(record))
