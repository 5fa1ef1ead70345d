"""The ``symnoise tasks`` pipeline: answer the synthetic held-out split, then score it.

:func:`run_synthetic_eval` answers the held-out prompts with a model through
:func:`symnoise.generate.generate_outputs` (resumable; answers kept with ``family`` and
``answer``) and scores them with :mod:`symnoise.evaluate.tasks`; its files (in ``RUN/eval/``
for a run folder) are the ``synthetic_*`` roles of :data:`symnoise.run.EVAL_FILES`.
:func:`score_synthetic_outputs` scores an existing outputs file without a model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..evaluate.tasks import OUTPUTS_FILE, TasksReport, make_report, score_outputs, write_report
from ..run import RunFolder

__all__ = ["default_output_dir", "run_synthetic_eval", "score_synthetic_outputs"]


def default_output_dir(model: str | os.PathLike[str]) -> Path:
    """``RUN/eval`` for a run folder, else ``./symnoise-eval/<model name>``."""
    from ..generate import default_generator_name
    from ..models import resolve_model

    source = resolve_model(model)
    return RunFolder(source.path).eval_dir if source.kind == "run" else (
        Path.cwd() / "symnoise-eval" / default_generator_name(source))


def score_synthetic_outputs(outputs: str | os.PathLike[str], *, model: str = "",
                            seed: int = 0) -> TasksReport:
    """Score a model-outputs file whose entries carry ``family`` and ``answer`` (as
    ``synthetic_outputs.json`` does). A row without them raises DataError naming it.
    Nothing is written (see :func:`symnoise.evaluate.tasks.write_report`)."""
    from ..generate import read_outputs

    return score_outputs(read_outputs(outputs), source=str(outputs), model=model, seed=seed)


def run_synthetic_eval(
    model: Any, *, output_dir: str | os.PathLike[str] | None = None, n: int | None = None,
    seed: int = 0, batch_size: int = 16, max_new_tokens: int = 64, template: str | None = None,
    progress: bool = True, overwrite: bool = False, tokenizer: Any = None,
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
        r["dataset"] = "synthetic_heldout"
    if output_dir is None:
        if not isinstance(model, (str, os.PathLike)):
            raise ValueError("a loaded model needs output_dir=")
        output_dir = default_output_dir(model)
    out_dir = Path(output_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs_file = out_dir / OUTPUTS_FILE
    gen = generate_outputs(model, records, outputs_file, template=template,
                           max_new_tokens=max_new_tokens, batch_size=batch_size,
                           progress=progress, overwrite=overwrite, tokenizer=tokenizer,
                           limit=len(records), **generate_kwargs)
    rows = read_outputs(outputs_file)[: len(records)]  # every prompt answered, in order
    report = make_report(records, [row["output"] for row in rows], model=gen.model,
                         generator=gen.generator, seed=seed, output_dir=str(out_dir),
                         outputs_file=str(outputs_file), generation=gen.to_dict())
    write_report(report, out_dir)
    return report
