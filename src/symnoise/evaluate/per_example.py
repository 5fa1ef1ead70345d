"""Per-example results of a run folder as ``{id: value}`` maps, for paired comparisons (what
each metric's values are: the README, "symnoise compare"). A missing file raises
:class:`MissingMetric` (the metric is skipped, with that reason); a bad row ValueError."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from .._io import finite
from ..outputs import full_instruction, preference, read_annotations, read_outputs
from ..run import RunFolder, read_jsonl
from .judge import ANNOTATIONS_FILE

__all__ = ["JudgedPrompts", "MissingMetric", "heldout_losses", "judged_prompts",
           "judged_rows", "load_per_example", "values_of"]

class MissingMetric(Exception):
    """A run lacks the file a metric is read from (the metric is skipped, with this reason)."""


def _need(run: RunFolder, role: str, what: str) -> Path:
    path = run.eval_file(role)
    if not path.exists():
        raise MissingMetric(f"{run.path} has no {what} ({path} not found; run `symnoise eval`)")
    return path


def _number(value: Any, name: str, where: str) -> float:
    if (number := finite(value)) is None:
        raise ValueError(f"{where}: '{name}' must be a finite number, got {value!r}")
    return number


def _read(run: RunFolder, role: str, what: str, value: Any, *, jsonl: bool = True
          ) -> dict[str, Any]:
    """``{id: value(row, where)}`` over an eval file's rows, keyed by ``id`` (JSON Lines,
    rows counted from 1) or by the prompt (model outputs, entries counted from 0)."""
    path = _need(run, role, what)
    out: dict[str, Any] = {}
    for i, row in enumerate(read_jsonl(path) if jsonl else read_outputs(path), start=int(jsonl)):
        where = f"{path} row {i}" if jsonl else f"{path}: entry {i}"
        key = row.get("id") if jsonl else full_instruction(row)
        if jsonl and (not isinstance(key, str) or not key):
            raise ValueError(f"{where}: 'id' must be a non-empty string, got {key!r}")
        if key in out:
            raise ValueError(f"{where}: id {key!r} appears twice")
        out[key] = value(row, where)
    if not out:
        raise MissingMetric(f"{path} has no rows")
    return out


def _loss_and_tokens(row: Mapping[str, Any], where: str) -> tuple[float, float]:
    loss = _number(row.get("loss"), "loss", where)
    tokens = _number(row.get("n_tokens"), "n_tokens", where)
    if tokens <= 0:
        raise ValueError(f"{where}: 'n_tokens' must be positive, got {row['n_tokens']!r}")
    return loss, tokens


def heldout_losses(run: RunFolder) -> tuple[dict[str, float], dict[str, float]]:
    """(example id -> clean loss, example id -> its token count)."""
    both = _read(run, "heldout_losses", "per-example held-out losses", _loss_and_tokens)
    return {k: v[0] for k, v in both.items()}, {k: v[1] for k, v in both.items()}


def _correct(row: Mapping[str, Any], where: str) -> float:
    if not isinstance(value := row.get("correct"), bool):
        raise ValueError(f"{where}: 'correct' must be true or false, got {value!r}")
    return 100.0 if value else 0.0


def _model_share(row: Mapping[str, Any], model_side: int, where: str) -> float | None:
    """The model's share of one verdict (None: no verdict)."""
    if (pref := preference(row.get("preference"), where)) is None:
        return None
    return pref - 1 if model_side == 2 else 2 - pref


@dataclass
class JudgedPrompts:
    """What :func:`judged_prompts` reads from a run's judge annotations."""

    shares: dict[str, float | None]  # prompt -> model's mean share in points; None: no verdict
    reference: dict[str, str]  # prompt -> reference output
    references: frozenset[str]  # reference generator names
    judges: frozenset[str]  # annotator names


def _model_sides(rows: list[dict[str, Any]], model_gen: str | None, path: Path) -> list[int]:
    """Which output (1 or 2) is the model's in each row: the one whose generator is the
    model's (its eval outputs' generator); else AlpacaEval's convention, output_2, which
    symnoise's judge follows - unless rows swap generators, which then cannot be told."""
    if model_gen is None:
        firsts = {r.get("generator_1") for r in rows}
        if len(firsts) > 1 and firsts & {r.get("generator_2") for r in rows}:
            raise ValueError(f"{path}: rows put the same generators on both sides and the run "
                             "has no eval outputs naming the model's generator: cannot tell "
                             "which output is the model's")
    return [1 if model_gen is not None and row.get("generator_1") == model_gen
            and row.get("generator_2") != model_gen else 2 for row in rows]


def _verdicts(run: RunFolder) -> list[tuple[str, str, int, float | None, dict[str, Any]]]:
    """(where, prompt, the model's side, its share or None, row) of every annotation row."""
    path = _need(run, "judge", "judge annotations") / ANNOTATIONS_FILE
    if not path.is_file():
        raise MissingMetric(f"{run.path} has no judge annotations ({path} not found)")
    outputs = run.eval_file("outputs")  # the model's generator: the one its outputs name
    names = {row.get("generator") for row in read_outputs(outputs)} if outputs.is_file() else set()
    model_gen = names.pop() if len(names) == 1 else None
    if not (rows := read_annotations(path)):
        raise MissingMetric(f"{path} has no rows")
    out = []
    for i, (row, side) in enumerate(zip(rows, _model_sides(rows, model_gen, path), strict=True)):
        where = f"{path}: entry {i}"
        out.append((where, full_instruction(row), side, _model_share(row, side, where), row))
    return out


def judged_prompts(run: RunFolder) -> JudgedPrompts:
    """Prompt -> the model's mean share of its verdicts (module doc), with the references
    and judges."""
    shares: dict[str, list[float]] = {}
    reference: dict[str, str] = {}
    refs, judges = set(), set()
    for where, key, side, share, row in _verdicts(run):
        ref_text = row.get(f"output_{3 - side}")
        if reference.setdefault(key, ref_text) != ref_text:
            raise ValueError(f"{where}: two different reference outputs for prompt {key[:60]!r}")
        refs.add(str(row.get(f"generator_{3 - side}")))
        if row.get("annotator") is not None:
            judges.add(str(row["annotator"]))
        shares.setdefault(key, []).extend([] if share is None else [share])
    return JudgedPrompts({k: (100.0 * sum(v) / len(v) if v else None) for k, v in shares.items()},
                         reference, frozenset(refs), frozenset(judges))


def judged_rows(run: RunFolder) -> dict[str, list[dict[str, Any]]]:
    """Prompt -> its judged rows oriented as the length-controlled GLM wants them:
    ``output_1`` the reference, ``output_2`` the model, ``preference`` in [1, 2] (2: the
    model better; rows without a verdict left out, prompts kept with an empty list)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for _, key, side, share, row in _verdicts(run):
        kept = out.setdefault(key, [])
        if share is not None:
            kept.append({"preference": 1.0 + share, "output_1": row[f"output_{3 - side}"],
                         "output_2": row[f"output_{side}"]})
    return out


def _pairs(value: Any) -> Any:
    """A reader of preference pairs (pair id -> ``value(row, where)``)."""
    return partial(_read, role="preference_pairs", what="per-pair preference results",
                   value=value)


_READERS = {  # metric -> its reader; exact answers are 100 (right) or 0, lengths characters
    "heldout_loss": heldout_losses, "win_rate": judged_prompts,
    "exact_answer": partial(_read, role="synthetic_items", what="per-item exact-answer scores",
                            value=_correct),
    "output_length": partial(_read, role="outputs", what="eval outputs", jsonl=False,
                             value=lambda row, where: float(len(row["output"]))),
    "preference_accuracy": _pairs(_correct),  # 100 when the margin is > 0, else 0
    "reward_margin": _pairs(lambda row, where: _number(row.get("margin"), "margin", where))}


def values_of(data: Any) -> dict[str, Any]:
    """``{id: value}`` of what :func:`load_per_example` returned (the judged shares, the
    held-out losses without their token counts)."""
    if isinstance(data, JudgedPrompts):
        return data.shares
    return data[0] if isinstance(data, tuple) else data


def load_per_example(run: RunFolder, metric: str) -> Any:
    """The reader of ``metric`` (``heldout_loss``, ``exact_answer``, ``output_length``,
    ``win_rate``) applied to ``run``."""
    if metric not in _READERS:
        raise ValueError(f"no per-example reader for metric {metric!r}; known: "
                         + ", ".join(_READERS))
    return _READERS[metric](run)
