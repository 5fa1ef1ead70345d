"""Judge-free evaluation on the built-in synthetic suite's held-out split.

:func:`run_synthetic_eval` answers the held-out prompts with a model (through
:func:`symnoise.generate.generate_outputs`, so it resumes and keeps the outputs) and scores
every answer with its family's checker (:func:`symnoise.data.synthetic.check_answer`):
exact-answer accuracy per family and overall with 95% Wilson intervals, and the share of
answers in exactly the expected format. Files written to ``output_dir`` (default
``RUN/eval/`` for a run folder):

* ``synthetic_outputs.json``: the answers, AlpacaEval model-outputs format with ``family``
  and ``answer`` kept (its ``.meta.json`` records the decoding settings);
* ``synthetic_scores.json``: :meth:`TasksReport.to_dict`;
* ``synthetic_scores.md``: the table of :meth:`TasksReport.format_table`.

:func:`score_synthetic_outputs` scores an existing outputs file without a model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "OUTPUTS_FILE",
    "SCORES_JSON",
    "SCORES_MD",
    "TasksReport",
    "default_output_dir",
    "run_synthetic_eval",
    "score_synthetic_outputs",
]

OUTPUTS_FILE = "synthetic_outputs.json"
SCORES_JSON = "synthetic_scores.json"
SCORES_MD = "synthetic_scores.md"
SYNTHETIC_DATASET = "synthetic_heldout"


@dataclass
class TasksReport:
    """Scores of one model on the synthetic held-out split.

    overall / per_family[name]: ``{"n", "correct", "accuracy", "accuracy_ci95": [low,
    high], "formatted", "format_rate"}`` (95% Wilson interval; ``format_rate`` is the share
    of answers in exactly the expected format). generation: the
    :class:`~symnoise.generate.GenerateReport` as a dict (``None`` when only scoring).
    """

    model: str
    generator: str
    n: int
    seed: int
    overall: dict[str, Any]
    per_family: dict[str, dict[str, Any]]
    output_dir: str | None = None
    outputs_file: str | None = None
    generation: dict[str, Any] | None = None
    files: dict[str, str] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return float(self.overall["accuracy"])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format_table(self, markdown: bool = False) -> str:
        """Per-family and overall accuracy (95% CI) and format share, as text or Markdown."""
        header = ["family", "n", "correct", "accuracy", "95% CI", "formatted"]
        rows = []
        for name, s in [*self.per_family.items(), ("overall", self.overall)]:
            low, high = s["accuracy_ci95"]
            rows.append([name, str(s["n"]), str(s["correct"]), f"{100 * s['accuracy']:.1f}%",
                         f"[{100 * low:.1f}, {100 * high:.1f}]",
                         f"{100 * s['format_rate']:.1f}%"])
        title = (f"synthetic held-out: {self.generator} ({self.model}), n={self.n}, "
                 f"seed={self.seed}")
        if markdown:
            lines = [f"### {title}", "", "| " + " | ".join(header) + " |",
                     "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
            return "\n".join(lines) + "\n"
        widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]

        def fmt(r: Sequence[str]) -> str:
            return "  ".join(r[0].ljust(widths[0]) if c == 0 else r[c].rjust(widths[c])
                             for c in range(len(r)))

        sep = "  ".join("-" * w for w in widths)
        body = [fmt(header), sep] + [fmt(r) for r in rows[:-1]] + [sep, fmt(rows[-1])]
        extra = []
        if self.generation:
            g = self.generation
            extra.append(f"generated {g['n_generated']}, resumed {g['n_resumed']}, "
                         f"cut at max_new_tokens {g['n_hit_max_tokens']}")
        if self.outputs_file:
            extra.append(f"outputs: {self.outputs_file}")
        return "\n".join([title, *body, *extra])


def default_output_dir(model: str | os.PathLike[str]) -> Path:
    """``RUN/eval`` for a run folder, else ``./symnoise-eval/<model name>``."""
    from ..generate import default_generator_name
    from ..models import resolve_model

    source = resolve_model(model)
    if source.kind == "run":
        return Path(source.path) / "eval"
    return Path.cwd() / "symnoise-eval" / default_generator_name(source)


def _score(records: Sequence[Mapping[str, Any]], responses: Sequence[str]) -> dict[str, Any]:
    from ..data.synthetic import score_responses

    scores = score_responses(records, responses)
    for s in [scores, *scores["per_family"].values()]:
        s["accuracy_ci95"] = list(s["accuracy_ci95"])
    return scores


def _write_scores(report: TasksReport, out_dir: Path) -> None:
    from ..generate import _atomic_write_text

    report.files = {"scores_json": str(out_dir / SCORES_JSON),
                    "scores_md": str(out_dir / SCORES_MD)}
    if report.outputs_file:
        report.files["outputs"] = report.outputs_file
    _atomic_write_text(out_dir / SCORES_JSON, json.dumps(report.to_dict(), indent=2) + "\n")
    _atomic_write_text(out_dir / SCORES_MD, report.format_table(markdown=True))


def score_synthetic_outputs(outputs: str | os.PathLike[str], *, model: str = "",
                            seed: int = 0) -> TasksReport:
    """Score a model-outputs file whose entries carry ``family`` and ``answer`` (as
    ``synthetic_outputs.json`` does). A row without them raises DataError naming it."""
    from ..data.formats import DataError
    from ..generate import read_outputs

    rows = read_outputs(outputs)
    if not rows:
        raise DataError("no outputs to score", file=str(outputs))
    for i, row in enumerate(rows):
        if not isinstance(row.get("family"), str) or not isinstance(row.get("answer"), str):
            raise DataError("needs string fields 'family' and 'answer' (synthetic outputs)",
                            file=str(outputs), row=i)
    try:
        scores = _score(rows, [r["output"] for r in rows])
    except ValueError as exc:
        raise DataError(str(exc), file=str(outputs)) from None
    generators = sorted({str(r.get("generator", "")) for r in rows})
    return TasksReport(model=model or ", ".join(generators), generator=", ".join(generators),
                       n=len(rows), seed=seed, overall={k: v for k, v in scores.items()
                                                        if k != "per_family"},
                       per_family=scores["per_family"], outputs_file=str(outputs))


def run_synthetic_eval(
    model: Any,
    *,
    output_dir: str | os.PathLike[str] | None = None,
    n: int | None = None,
    seed: int = 0,
    batch_size: int = 16,
    max_new_tokens: int = 64,
    template: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
    tokenizer: Any = None,
    **generate_kwargs: Any,
) -> TasksReport:
    """Answer and score the synthetic held-out split (``n`` prompts, default 240).

    model: a ``--model`` value, or a loaded model with ``tokenizer=`` (then ``output_dir``
    is required). Decoding is the paper's (greedy, repetition penalty 1.2) unless
    ``generate_kwargs`` say otherwise. A rerun resumes from ``synthetic_outputs.json``;
    ``overwrite=True`` starts over. Returns the :class:`TasksReport` (also written to
    ``output_dir``).
    """
    from ..data.synthetic import load_synthetic
    from ..generate import generate_outputs, read_outputs

    records = load_synthetic("heldout", seed=seed, n=n)
    if not records:
        raise ValueError(f"n must be at least 1 to evaluate, got {n!r}")
    for r in records:
        r["dataset"] = SYNTHETIC_DATASET
    if output_dir is None:
        if not isinstance(model, (str, os.PathLike)):
            raise ValueError("a loaded model needs output_dir=")
        output_dir = default_output_dir(model)
    out_dir = Path(output_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs_file = out_dir / OUTPUTS_FILE
    gen = generate_outputs(
        model, records, outputs_file, template=template, max_new_tokens=max_new_tokens,
        batch_size=batch_size, progress=progress, overwrite=overwrite, tokenizer=tokenizer,
        limit=len(records), **generate_kwargs,
    )
    rows = read_outputs(outputs_file)[: len(records)]
    if len(rows) != len(records):  # generate_outputs answers every prompt or raises
        raise RuntimeError(f"{outputs_file} holds {len(rows)} answers for {len(records)} prompts")
    for i, (rec, row) in enumerate(zip(records, rows, strict=True)):
        if row["instruction"] != rec["instruction"] or (row.get("input") or "") != rec["input"]:
            raise RuntimeError(f"{outputs_file} row {i} does not answer held-out prompt {i}")
    scores = _score(records, [row["output"] for row in rows])
    report = TasksReport(
        model=gen.model, generator=gen.generator, n=len(records), seed=seed,
        overall={k: v for k, v in scores.items() if k != "per_family"},
        per_family=scores["per_family"], output_dir=str(out_dir),
        outputs_file=str(outputs_file), generation=gen.to_dict(),
    )
    _write_scores(report, out_dir)
    return report
