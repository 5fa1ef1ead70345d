"""Evaluate one run folder end to end (``symnoise eval RUN_DIR``): a pipeline of steps.

:func:`evaluate_run` runs these steps on a finished training run, in this order, and
writes everything into ``RUN/eval/`` (file names: :data:`symnoise.run.EVAL_FILES`):

``generate``
    answers a prompt set with the fine-tuned model (the paper's decoding: greedy,
    repetition penalty 1.2) into ``outputs`` (AlpacaEval model-outputs format). The prompts
    are ``prompts`` (e.g. AlpacaEval's JSON file) or the synthetic held-out split.
``stats``
    response length, whitespace length, n-gram repetition and log-diversity of the
    outputs, and of the training data's responses when the run trained on a local file.
``synthetic`` (``synthetic=True``)
    exact-answer score on the synthetic held-out split with a 95% Wilson interval
    (``synthetic_scores``), one row per item (``synthetic_items``). When the prompts are
    that split, the answers of ``generate`` are scored; otherwise the split is answered
    separately (``synthetic_outputs``).
``heldout`` (``heldout=True``)
    the clean loss of every example of the held-out set training measured its clean loss
    on (``heldout_losses``, :mod:`symnoise.evaluate.heldout`).
``judge`` (with ``judge``)
    the pairwise win rate against reference outputs (folder ``judge``).
``judge_check`` (with ``judge`` and ``judge_check=True``)
    how well the judge separates known better answers from worse ones (``judge_check``).
``harness`` (with ``harness_tasks``)
    lm-evaluation-harness tasks (``harness``).

Each step is a small object with a ``name``, a ``key`` (the settings and input
fingerprints its result depends on), a ``run`` and a ``summary``. One rule, in
:func:`_run_step`, decides for all of them: a step whose result files exist and whose
recorded key (``steps``) equals its key now is skipped; otherwise it runs. When only the
number of prompts changed, generation resumes and keeps the answers it has; other changes
start over. ``summary`` (JSON and Markdown) gathers the results.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import write_json_atomic, write_text_atomic
from ..evaluate.stats import PRESETS, stats_for_file, text_stats, words_for
from ..run import EVAL_FILES, RunFolder, read_jsonl, run_dataset, run_setting

__all__ = [
    "DEFAULT_PROMPTS",
    "EVAL_DIR",
    "HARNESS_JSON",
    "JUDGE_DIR",
    "OUTPUTS_FILE",
    "STATS_FILE",
    "STEPS",
    "STEPS_FILE",
    "SUMMARY_JSON",
    "SUMMARY_MD",
    "SYNTHETIC_SCORES",
    "EvalPlan",
    "StepUnavailable",
    "evaluate_run",
    "format_eval_summary",
    "read_run_info",
    "run_dataset",
    "run_setting",
]

DEFAULT_PROMPTS = "synthetic:heldout"
DEFAULT_WORDS = 50
_HELDOUT_PROMPTS = ("synthetic", "synthetic:heldout", "synthetic:test")

# The names report.py and sweep.py imported from symnoise.evaluate.run_eval, kept for them
# until they read the run folder through symnoise.run (the values come from EVAL_FILES).
EVAL_DIR = RunFolder("").eval_dir.name
OUTPUTS_FILE = EVAL_FILES["outputs"]
STATS_FILE = EVAL_FILES["stats"]
STEPS_FILE = EVAL_FILES["steps"]
JUDGE_DIR = EVAL_FILES["judge"]
SYNTHETIC_SCORES = EVAL_FILES["synthetic_scores"]
HARNESS_JSON = EVAL_FILES["harness"]
SUMMARY_JSON = EVAL_FILES["summary"]
SUMMARY_MD = EVAL_FILES["summary_md"]


def __getattr__(name: str) -> Any:
    if name == "LEADERBOARD_JSON":  # the judge component names the files in its folder
        from ..evaluate.judge import LEADERBOARD_JSON

        return LEADERBOARD_JSON
    raise AttributeError(name)


def read_run_info(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``run.json`` of a run folder; FileNotFoundError / ValueError naming it."""
    return RunFolder(run_dir).read_info(required=True)


# --------------------------------------------------------------------------------------
# The plan: what every step needs to know
# --------------------------------------------------------------------------------------


@dataclass
class EvalPlan:
    """The run, its record and the resolved settings of one evaluation."""

    run: RunFolder
    info: dict[str, Any]
    prompts: Any
    n_prompts: int | None
    source_name: str
    n: int
    max_new_tokens: int
    batch_size: int
    n_words: int
    words_from: str
    synthetic_n: int | None = None
    judge: str | None = None
    base_url: str | None = None
    reference: Path | None = None
    both_orders: bool = False
    harness_tasks: str | list[str] | None = None
    include_path: str | os.PathLike[str] | None = None
    harness_limit: int | float | None = None
    progress: bool = True
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    def file(self, role: str) -> Path:
        return self.run.eval_file(role)

    @property
    def template(self) -> str | None:
        return self.info.get("template")

    @property
    def config(self) -> dict[str, Any]:
        return self.info.get("config") or {}

    def say(self, message: str) -> None:
        if self.progress:
            print(message, file=sys.stderr, flush=True)


class StepUnavailable(Exception):
    """A requested step cannot run here (the message says why); the others go on."""


# --------------------------------------------------------------------------------------
# Fingerprints and the record of finished steps
# --------------------------------------------------------------------------------------


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fingerprint(path: str | os.PathLike[str] | None) -> Any:
    """What identifies an input: a small file's hash; a large file's or folder's size and
    modification time (hashing gigabytes on every rerun is not worth it); a source that is
    not a local path as given."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.exists():
        return str(path)
    if p.is_file() and p.stat().st_size <= 64 << 20:
        return {"path": str(p), "sha256": _sha256(p)}
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _normal(data: Any) -> Any:
    return json.loads(json.dumps(data, sort_keys=True, default=str))


class _Steps:
    """The ``steps`` file: for each finished step, the key it was computed from."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        if path.is_file():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                loaded = {}  # a torn record only costs recomputation
            self.data = loaded if isinstance(loaded, dict) else {}

    def get(self, name: str) -> dict[str, Any]:
        entry = self.data.get(name)
        return entry if isinstance(entry, dict) else {}

    def done(self, name: str, key: Any, files: list[Path]) -> bool:
        entry = self.get(name)
        return (entry.get("status") == "complete" and entry.get("key") == _normal(key)
                and all(Path(f).exists() for f in files))

    def mark(self, name: str, key: Any, extra: Mapping[str, Any]) -> None:
        self.data[name] = {"status": "complete", "key": _normal(key), "finished": _now(),
                           **_normal(dict(extra))}
        write_json_atomic(self.path, self.data)


# --------------------------------------------------------------------------------------
# The steps
# --------------------------------------------------------------------------------------


class Step:
    """One evaluation step. Subclasses set ``name`` and implement the four methods.

    ``resumable``: key fields that may change without starting over (the step then
    continues from what it has); any other change makes :meth:`run` get ``restart=True``.
    """

    name = ""
    resumable: tuple[str, ...] = ()

    def key(self, plan: EvalPlan) -> dict[str, Any]:
        raise NotImplementedError

    def files(self, plan: EvalPlan) -> list[Path]:
        """The result files; a step is complete only when they all exist."""
        raise NotImplementedError

    def complete(self, plan: EvalPlan) -> bool:
        """A further check of the results on top of the key and the files."""
        return True

    def run(self, plan: EvalPlan, restart: bool) -> dict[str, Any]:
        """Compute and write the results; the returned dict is kept in the steps record."""
        raise NotImplementedError

    def summary(self, plan: EvalPlan) -> Any:
        """The step's section of the summary, read from its result files."""
        raise NotImplementedError


def _restart(previous: Any, key: Mapping[str, Any], resumable: tuple[str, ...]) -> bool:
    return isinstance(previous, dict) and any(
        previous.get(k) != v for k, v in _normal(dict(key)).items() if k not in resumable)


def _run_step(step: Step, plan: EvalPlan, steps: _Steps, head: str) -> tuple[str, Any]:
    """The one skip-if-done rule: returns ``(state, summary section)``."""
    key = step.key(plan)
    if steps.done(step.name, key, step.files(plan)) and step.complete(plan):
        plan.say(f"{head}: complete, skipped")
        plan.records[step.name] = steps.get(step.name)
        return "skipped (complete)", step.summary(plan)
    restart = _restart(steps.get(step.name).get("key"), key, step.resumable)
    plan.say(f"{head}: running" + (" (settings changed: starting over)" if restart else ""))
    try:
        extra = step.run(plan, restart) or {}
    except StepUnavailable as exc:
        plan.say(f"{head}: not available: {exc}")
        return f"unavailable: {exc}", {"unavailable": str(exc)}
    steps.mark(step.name, key, extra)
    plan.records[step.name] = steps.get(step.name)
    return "ran", step.summary(plan)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _count_outputs(path: Path) -> int | None:
    try:
        data = _read_json(path)
    except (OSError, json.JSONDecodeError):
        return None
    return len(data) if isinstance(data, list) else None


class GenerateStep(Step):
    name = "generate"
    resumable = ("n",)

    def key(self, plan: EvalPlan) -> dict[str, Any]:
        return {"prompts": plan.source_name, "n": plan.n, "template": plan.template,
                "max_new_tokens": plan.max_new_tokens, "repetition_penalty": 1.2,
                "greedy": True}

    def files(self, plan: EvalPlan) -> list[Path]:
        return [plan.file("outputs")]

    def complete(self, plan: EvalPlan) -> bool:
        return _count_outputs(plan.file("outputs")) == plan.n

    def run(self, plan: EvalPlan, restart: bool) -> dict[str, Any]:
        from .. import generate

        plan.say(f"  {plan.n} prompts from {plan.source_name} -> {plan.file('outputs')}")
        gen = generate.generate_outputs(
            str(plan.run.path), plan.prompts, plan.file("outputs"),
            max_new_tokens=plan.max_new_tokens, batch_size=plan.batch_size,
            limit=plan.n_prompts, progress=plan.progress, overwrite=restart)
        plan.say(f"  {gen.n_generated} generated, {gen.n_resumed} resumed, "
                 f"{gen.n_hit_max_tokens} cut at max_new_tokens")
        return {"report": gen.to_dict()}

    def summary(self, plan: EvalPlan) -> dict[str, Any]:
        report = plan.records.get(self.name, {}).get("report") or {}
        return {k: report.get(k) for k in ("n_written", "n_hit_max_tokens", "mean_output_words",
                                           "mean_new_tokens", "decoding", "template")
                if k in report}


def _train_data_path(plan: EvalPlan) -> Path | None:
    data = plan.config.get("data")
    return Path(data).expanduser() if isinstance(data, str) and data else None


def _train_data_stats(info: Mapping[str, Any], n_words: int) -> dict[str, Any]:
    """Stats of the training data's responses when the run trained on a local file/folder;
    otherwise a record saying why there are none."""
    cfg = info.get("config") or {}
    data = cfg.get("data")
    if not isinstance(data, str) or not data:
        return {"source": data, "skipped": "no training data source in run.json"}
    if data == "synthetic" or data.startswith("synthetic:"):
        return {"source": data, "skipped": "built-in synthetic data, not a file"}
    path = Path(data).expanduser()
    if not path.exists():
        return {"source": data, "skipped": f"not a local file here ({path} not found)"}
    from ..data.formats import to_examples
    from ..data.sources import load_records

    records, name = load_records(path)
    fmt = info.get("format") or cfg.get("format") or "auto"
    examples, report = to_examples(records, fmt, name,
                                   skip_bad_rows=bool(cfg.get("skip_bad_rows")))
    stats = text_stats([e.output for e in examples], words=n_words)
    return {"source": data, "format": report.format, "read": report.read,
            "used": report.used, "skipped_rows": report.skipped, **stats.to_dict()}


class StatsStep(Step):
    name = "stats"

    def key(self, plan: EvalPlan) -> dict[str, Any]:
        data = _train_data_path(plan)
        return {"outputs": _fingerprint(plan.file("outputs")), "words": plan.n_words,
                "train_data": _fingerprint(data) if data else plan.config.get("data")}

    def files(self, plan: EvalPlan) -> list[Path]:
        return [plan.file("stats")]

    def run(self, plan: EvalPlan, restart: bool) -> dict[str, Any]:
        plan.say(f"  first {plan.n_words} words ({plan.words_from})")
        outputs = plan.file("outputs")
        train = _train_data_stats(plan.info, plan.n_words)
        write_json_atomic(plan.file("stats"), {
            "words": plan.n_words, "words_from": plan.words_from,
            "outputs": {"file": str(outputs),
                        **stats_for_file(outputs, words=plan.n_words).to_dict()},
            "train_data": train})
        if "skipped" in train:
            plan.say(f"  training data not measured: {train['skipped']}")
        return {}

    def summary(self, plan: EvalPlan) -> dict[str, Any]:
        return _read_json(plan.file("stats"))


def _is_heldout_prompts(prompts: Any) -> bool:
    return isinstance(prompts, str) and prompts.strip().lower() in _HELDOUT_PROMPTS and not Path(
        prompts).exists()


class SyntheticStep(Step):
    """Scores generate's answers when the prompts are the held-out split; otherwise
    answers the split itself (``synthetic_n`` prompts)."""

    name = "synthetic"
    resumable = ("n",)

    def key(self, plan: EvalPlan) -> dict[str, Any]:
        if _is_heldout_prompts(plan.prompts):
            return {"mode": "score outputs.json", "outputs": _fingerprint(plan.file("outputs"))}
        return {"mode": "generate", "n": self._n(plan), "template": plan.template,
                "max_new_tokens": plan.max_new_tokens}

    @staticmethod
    def _n(plan: EvalPlan) -> int | None:
        from ..data.synthetic import DEFAULT_N_HELDOUT

        if plan.synthetic_n:
            return plan.synthetic_n
        return min(plan.n_prompts, DEFAULT_N_HELDOUT) if plan.n_prompts else None

    def files(self, plan: EvalPlan) -> list[Path]:
        return [plan.file("synthetic_scores"), plan.file("synthetic_items")]

    def run(self, plan: EvalPlan, restart: bool) -> dict[str, Any]:
        from ..evaluate import tasks

        if _is_heldout_prompts(plan.prompts):
            plan.say(f"  scoring the {plan.n} held-out answers of {plan.file('outputs').name}")
            report = tasks.score_synthetic_outputs(plan.file("outputs"), model=str(plan.run.path))
            tasks.write_report(report, plan.run.eval_dir)
        else:
            plan.say("  answering the synthetic held-out split")
            tasks.run_synthetic_eval(
                str(plan.run.path), output_dir=plan.run.eval_dir, n=self._n(plan),
                batch_size=plan.batch_size, max_new_tokens=plan.max_new_tokens,
                progress=plan.progress, overwrite=restart)
        return {}

    def summary(self, plan: EvalPlan) -> dict[str, Any]:
        scores = _read_json(plan.file("synthetic_scores"))
        overall = scores.get("overall") or {}
        doc = {"n": scores.get("n", overall.get("n")), "correct": overall.get("correct"),
               "accuracy": overall.get("accuracy"),
               "accuracy_ci95": overall.get("accuracy_ci95"),
               "format_rate": overall.get("format_rate"),
               "per_family": {k: v.get("accuracy")
                              for k, v in (scores.get("per_family") or {}).items()}}
        ci = doc["accuracy_ci95"] or [None, None]
        if doc["accuracy"] is not None and None not in ci:
            plan.say(f"  accuracy {100 * doc['accuracy']:.1f}% "
                     f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}] over {doc['n']}")
        return doc


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class HeldoutStep(Step):
    """The clean loss of each held-out example (:mod:`symnoise.evaluate.heldout`)."""

    name = "heldout"
    _SETTINGS = ("data", "eval_data", "format", "template", "max_length", "eval_fraction",
                 "max_eval_examples", "max_train_examples", "seed", "skip_bad_rows",
                 "synthetic_train_size", "synthetic_heldout_size", "synthetic_seed",
                 "batch_size", "dtype")

    def key(self, plan: EvalPlan) -> dict[str, Any]:
        cfg = plan.config
        model = sorted(plan.run.path.glob("*.safetensors")) + [plan.run.path / "config.json"]
        return {"config": {k: cfg.get(k) for k in self._SETTINGS},
                "template": plan.template,
                "data": _fingerprint(cfg.get("data")) if cfg.get("data") else None,
                "eval_data": _fingerprint(cfg.get("eval_data")) if cfg.get("eval_data") else None,
                "model": [_fingerprint(p) for p in model if p.is_file()]}

    def files(self, plan: EvalPlan) -> list[Path]:
        return [plan.file("heldout_losses")]

    def run(self, plan: EvalPlan, restart: bool) -> dict[str, Any]:
        from ..evaluate import heldout
        from ..models import ensure_pad_token, load_model, load_tokenizer, resolve_model

        source = resolve_model(str(plan.run.path))
        tokenizer = load_tokenizer(source)
        try:
            held = heldout.heldout_set(plan.info, tokenizer)
        except heldout.HeldoutUnavailable as exc:
            raise StepUnavailable(str(exc)) from None
        recorded = ((plan.info.get("data") or {}).get("eval_examples"))
        if recorded is not None and recorded != len(held.features):
            raise StepUnavailable(f"rebuilt {len(held.features)} held-out examples but "
                                  f"run.json records {recorded}: not the set training used")
        plan.say(f"  {len(held.features)} examples ({held.source})")
        model = load_model(source, dtype=plan.config.get("dtype") or "float32", device=_device())
        ensure_pad_token(tokenizer, model)
        losses = heldout.example_losses(model, held.features, pad_token_id=tokenizer.pad_token_id,
                                        batch_size=held.eval_batch_size, progress=plan.progress)
        rows = heldout.heldout_rows(held.examples, losses)
        write_text_atomic(plan.file("heldout_losses"),
                          "".join(json.dumps(r) + "\n" for r in rows))
        return {"source": held.source, "eval_batch_size": held.eval_batch_size}

    def summary(self, plan: EvalPlan) -> dict[str, Any]:
        from ..evaluate.heldout import token_mean, trainer_mean

        rows = read_jsonl(plan.file("heldout_losses"))
        record = plan.records.get(self.name, {})
        bs = int(record.get("eval_batch_size") or 8)
        doc = {"source": record.get("source"), "n": len(rows),
               "n_tokens": sum(r["n_tokens"] for r in rows),
               "mean_loss": token_mean(rows) if rows else None,
               "trainer_mean_loss": trainer_mean(rows, bs) if rows else None,
               "eval_batch_size": bs,
               "run_final_clean_eval_loss": plan.info.get("final_clean_eval_loss")}
        if doc["mean_loss"] is not None:
            plan.say(f"  clean held-out loss {doc['mean_loss']:.4f} over {doc['n']} examples "
                     f"({doc['n_tokens']} tokens)")
        return doc


def _reference_source(reference: str | os.PathLike[str] | None, prompts: Any) -> Path:
    """The reference outputs for the judge: ``reference``, or the prompt file when every
    row of it carries a reference ``output``."""
    if reference is not None:
        path = Path(reference).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"reference outputs not found: {path}")
        return path
    hint = ("pass --reference FILE (AlpacaEval-format outputs of the reference model, e.g. "
            "text-davinci-003's) or, as --prompts, a file whose rows carry the reference "
            "'output' (AlpacaEval's own file does)")
    if not isinstance(prompts, (str, os.PathLike)) or not Path(prompts).is_file():
        raise ValueError(f"judging needs reference outputs and the prompts {prompts!s} have "
                         f"none: {hint}")
    from ..data.sources import load_records

    path = Path(prompts)
    records, _ = load_records(path)
    missing = [i for i, r in enumerate(records)
               if not isinstance(r, Mapping) or not isinstance(r.get("output"), str)]
    if len(missing) == len(records):
        raise ValueError(f"judging needs reference outputs: {path} has no 'output' fields; "
                         f"{hint}")
    if missing:
        raise ValueError(f"{path} row {missing[0]}: no reference 'output' (and {len(missing)} "
                         f"rows in all of {len(records)}); pass --reference FILE")
    return path


class JudgeStep(Step):
    name = "judge"

    def key(self, plan: EvalPlan) -> dict[str, Any]:
        return {"judge": plan.judge, "base_url": plan.base_url, "both_orders": plan.both_orders,
                "reference": _fingerprint(plan.reference),
                "outputs": _fingerprint(plan.file("outputs"))}

    def files(self, plan: EvalPlan) -> list[Path]:
        from ..evaluate.judge import LEADERBOARD_JSON

        return [plan.file("judge") / LEADERBOARD_JSON]

    def run(self, plan: EvalPlan, restart: bool) -> dict[str, Any]:
        from ..evaluate import judge

        plan.say(f"  {plan.judge} against {plan.reference} -> {plan.file('judge')}")
        judge.judge_outputs(plan.file("outputs"), plan.reference, judge=plan.judge,
                            output_dir=plan.file("judge"), base_url=plan.base_url,
                            both_orders=plan.both_orders, progress=plan.progress)
        return {}

    def summary(self, plan: EvalPlan) -> dict[str, Any]:
        board = _read_json(self.files(plan)[0])
        if not board:
            return {}
        name, row = next(iter(board.items()))
        keys = ("judge", "reference", "win_rate", "standard_error", "n", "n_total",
                "n_unparseable", "n_errors", "avg_length", "avg_length_reference",
                "both_orders")
        doc = {"name": name, **{k: row.get(k) for k in keys}}
        if doc.get("win_rate") is not None:
            plan.say(f"  win rate {doc['win_rate']:.2f} (se "
                     f"{_num(doc.get('standard_error'), '.2f')}) over {doc.get('n')}")
        return doc


class JudgeCheckStep(Step):
    """The judge check component (``symnoise.evaluate.judge_check.run_judge_check``) on the
    judge's reference outputs; unavailable when this version has no such component."""

    name = "judge_check"

    def key(self, plan: EvalPlan) -> dict[str, Any]:
        return {"judge": plan.judge, "base_url": plan.base_url,
                "reference": _fingerprint(plan.reference)}

    def files(self, plan: EvalPlan) -> list[Path]:
        return [plan.file("judge_check")]

    def run(self, plan: EvalPlan, restart: bool) -> dict[str, Any]:
        try:
            from ..evaluate import judge_check
        except ImportError:
            raise StepUnavailable("this version has no judge check "
                                  "(symnoise.evaluate.judge_check)") from None
        plan.say(f"  {plan.judge} on known pairs from {plan.reference}")
        result = judge_check.run_judge_check(plan.judge, plan.reference, base_url=plan.base_url,
                                             output_dir=plan.run.eval_dir)
        write_json_atomic(plan.file("judge_check"), dict(result))
        return {}

    def summary(self, plan: EvalPlan) -> dict[str, Any]:
        doc = _read_json(plan.file("judge_check"))
        plan.say(f"  judge {'usable' if doc.get('usable') else 'NOT usable'}: accuracy "
                 f"{_num(doc.get('accuracy'), '.3f')}, position bias "
                 f"{_num(doc.get('position_bias'), '.3f')}")
        return {k: doc.get(k) for k in ("accuracy", "accuracy_ci", "position_bias", "n_pairs",
                                        "usable")}


class HarnessStep(Step):
    name = "harness"

    def key(self, plan: EvalPlan) -> dict[str, Any]:
        include = plan.include_path
        return {"tasks": plan.harness_tasks, "limit": plan.harness_limit,
                "include_path": str(Path(include).expanduser().resolve())
                if include is not None else None}

    def files(self, plan: EvalPlan) -> list[Path]:
        return [plan.file("harness")]

    def run(self, plan: EvalPlan, restart: bool) -> dict[str, Any]:
        from ..evaluate import harness

        plan.say(f"  {plan.harness_tasks}")
        harness.run_harness(str(plan.run.path), plan.harness_tasks, output_dir=plan.run.eval_dir,
                            limit=plan.harness_limit, include_path=plan.include_path,
                            batch_size=plan.batch_size, device=_device())
        return {}

    def summary(self, plan: EvalPlan) -> dict[str, Any]:
        data = _read_json(plan.file("harness"))
        cfg = data.get("config") or {}
        return {"summary": dict(data.get("summary") or {}), "limit": cfg.get("limit"),
                "tasks": cfg.get("tasks"), "num_fewshot": cfg.get("num_fewshot")}


#: Every step, in the order they run.
STEPS: tuple[Step, ...] = (GenerateStep(), StatsStep(), SyntheticStep(), HeldoutStep(),
                           JudgeStep(), JudgeCheckStep(), HarnessStep())
# the summary section of each step (generate's is "generation")
_SECTION = {"generate": "generation", "stats": "stats", "synthetic": "synthetic",
            "heldout": "heldout", "judge": "judge", "judge_check": "judge_check",
            "harness": "harness"}


# --------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------


def _check_positive(name: str, value: Any, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_run(run: RunFolder) -> dict[str, Any]:
    info = run.read_info(required=True)
    status = info.get("status")
    if status != "completed":
        raise ValueError(f"{run.path}: the run's status is {status!r}, not 'completed'; finish "
                         "the training (symnoise train --resume) before evaluating it")
    if not run.has_model():
        raise FileNotFoundError(f"{run.path}: no saved model (config.json) in the run folder")
    return info


def _words(words: int | str | None, dataset: str) -> tuple[int, str]:
    if words is not None:
        return words_for(words), f"words={words}"
    if dataset in PRESETS:
        return PRESETS[dataset], f"the paper's setting for {dataset}"
    return DEFAULT_WORDS, f"default ({dataset} has no preset)"


def _planned(plan: EvalPlan, *, synthetic: bool, heldout: bool, judge_check: bool
             ) -> dict[str, bool]:
    """Which steps this evaluation asks for."""
    return {"generate": True, "stats": True, "synthetic": synthetic, "heldout": heldout,
            "judge": bool(plan.judge), "judge_check": bool(plan.judge) and judge_check,
            "harness": bool(plan.harness_tasks)}


def evaluate_run(
    run_dir: str | os.PathLike[str],
    *,
    prompts: str | os.PathLike[str] | None = None,
    n_prompts: int | None = None,
    max_new_tokens: int = 256,
    batch_size: int = 16,
    judge: str | None = None,
    base_url: str | None = None,
    reference: str | os.PathLike[str] | None = None,
    both_orders: bool = False,
    harness_tasks: str | list[str] | None = None,
    include_path: str | os.PathLike[str] | None = None,
    harness_limit: int | float | None = None,
    words: int | str | None = None,
    synthetic: bool = True,
    progress: bool = True,
    synthetic_n: int | None = None,
    heldout: bool = True,
    judge_check: bool = True,
) -> dict[str, Any]:
    """Run the evaluation steps on a run folder and write ``RUN/eval/`` (module docstring).

    Args:
        run_dir: a finished run folder (``run.json`` with status ``completed`` and the model).
        prompts: the prompt set (a JSON/JSONL file such as AlpacaEval's, ``alpaca_eval``
            from the Hub, or ``synthetic:heldout``, the default).
        n_prompts: answer only the first N prompts (also the size of the synthetic
            held-out evaluation unless ``synthetic_n`` is given).
        max_new_tokens, batch_size: generation settings (greedy, repetition penalty 1.2).
        judge, base_url, reference, both_orders: the win-rate step
            (:func:`symnoise.evaluate.judge.judge_outputs`); skipped without ``judge``.
        harness_tasks, include_path, harness_limit: the lm-evaluation-harness step;
            skipped without ``harness_tasks``.
        words: leading words for repetition/diversity (a number or a dataset preset);
            default the paper's for the run's dataset (50 for unknown ones).
        synthetic: run the synthetic exact-answer step. synthetic_n: its prompt count
            when the prompts are not that split (default ``n_prompts`` up to the split's
            240, else the whole split); when they are, the answers of step 1 are scored.
        heldout: measure the clean loss of every held-out example.
        judge_check: with ``judge``, check the judge on pairs whose better side is known.
        progress: progress bars and one line per step on stderr.

    Returns the summary (also written to ``summary``). Raises FileNotFoundError (no run
    folder, model or reference), ValueError (unfinished run, bad settings, prompts without
    reference outputs for the judge) before any step runs.
    """
    run = RunFolder(Path(run_dir).expanduser().resolve())
    info = _check_run(run)
    _check_positive("n_prompts", n_prompts, allow_none=True)
    _check_positive("synthetic_n", synthetic_n, allow_none=True)
    _check_positive("max_new_tokens", max_new_tokens)
    _check_positive("batch_size", batch_size)
    if (base_url or reference is not None or both_orders) and not judge:
        raise ValueError("--base-url, --reference and --both-orders need --judge")
    if (include_path is not None or harness_limit is not None) and not harness_tasks:
        raise ValueError("--include-path and --limit need --tasks")
    n_words, words_from = _words(words, run_dataset(info))
    source: Any = DEFAULT_PROMPTS if prompts is None else (
        os.fspath(prompts) if isinstance(prompts, os.PathLike) else prompts)

    from ..generate import load_prompts

    prompt_list, source_name = load_prompts(source, limit=n_prompts)
    plan = EvalPlan(run=run, info=info, prompts=source, n_prompts=n_prompts,
                    source_name=source_name, n=len(prompt_list), max_new_tokens=max_new_tokens,
                    batch_size=batch_size, n_words=n_words, words_from=words_from,
                    synthetic_n=synthetic_n, judge=judge, base_url=base_url,
                    reference=_reference_source(reference, source) if judge else None,
                    both_orders=both_orders, harness_tasks=harness_tasks,
                    include_path=include_path, harness_limit=harness_limit, progress=progress)
    wanted = _planned(plan, synthetic=synthetic, heldout=heldout, judge_check=judge_check)
    return _run_pipeline(plan, wanted)


def _run_pipeline(plan: EvalPlan, wanted: Mapping[str, bool]) -> dict[str, Any]:
    run = plan.run
    run.eval_dir.mkdir(parents=True, exist_ok=True)
    steps = _Steps(plan.file("steps"))
    todo = [s for s in STEPS if wanted[s.name]]
    plan.say(f"evaluating {run.path} ({run_dataset(plan.info)}, "
             f"{run_setting(plan.info).get('method', '?')}): {', '.join(s.name for s in todo)}")
    state: dict[str, str] = {}
    sections: dict[str, Any] = {_SECTION[s.name]: None for s in STEPS}
    for i, step in enumerate(todo, start=1):
        state[step.name], sections[_SECTION[step.name]] = _run_step(
            step, plan, steps, f"[{i}/{len(todo)}] {step.name}")
    for step in STEPS:
        state.setdefault(step.name, "not requested")
    state = {s.name: state[s.name] for s in STEPS}
    summary = _summary(plan, sections, state, [s.name for s in todo])
    write_json_atomic(plan.file("summary"), summary)
    write_text_atomic(plan.file("summary_md"), _summary_markdown(summary))
    plan.say(f"done: {plan.file('summary_md')}")
    return summary


_FILE_ROLES = {"synthetic": ("synthetic_scores", "synthetic_items"),
               "heldout": ("heldout_losses",), "judge": ("judge",),
               "judge_check": ("judge_check",), "harness": ("harness",)}


def _summary(plan: EvalPlan, sections: Mapping[str, Any], state: Mapping[str, str],
             ran: list[str]) -> dict[str, Any]:
    info, run = plan.info, plan.run
    files = {"outputs": str(plan.file("outputs")), "stats": str(plan.file("stats")),
             "steps": str(plan.file("steps")), "summary_json": str(plan.file("summary")),
             "summary_md": str(plan.file("summary_md"))}
    for name in ran:
        for role in _FILE_ROLES.get(name, ()):
            files[{"judge": "judge_dir"}.get(role, role)] = str(plan.file(role))
    generation = sections.get("generation") or {}
    return {
        "run_dir": str(run.path),
        "name": run.path.name,
        "model": plan.config.get("model"),
        "dataset": run_dataset(info),
        **run_setting(info),
        "train_loss": info.get("train_loss"),
        "final_clean_eval_loss": info.get("final_clean_eval_loss"),
        "prompts": {"source": plan.source_name, "n": plan.n},
        "generation": generation,
        **{k: v for k, v in sections.items() if k != "generation"},
        "steps": dict(state),
        "files": files,
        "finished": _now(),
    }


# --------------------------------------------------------------------------------------
# Presenting the summary
# --------------------------------------------------------------------------------------


def _num(value: Any, fmt: str, scale: float = 1.0) -> str:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    return format(value * scale, fmt)


def _pct(value: Any) -> str:
    text = _num(value, ".2f")
    return text if text == "-" else f"{text} %"


def _stats_rows(st: Mapping[str, Any]) -> list[tuple[str, str]]:
    out = st.get("outputs") or {}
    rows = [("output length", f"{_num(out.get('avg_chars'), '.1f')} chars, "
                              f"{_num(out.get('avg_words'), '.1f')} words"),
            (f"output rep-2 / log-div (N={st.get('words')})",
             f"{_pct(out.get('rep_2'))} / {_num(out.get('log_diversity'), '.2f')} "
             f"({out.get('n_kept', '-')} of {out.get('n', '-')} kept)")]
    td = st.get("train_data") or {}
    if "skipped" in td:
        rows.append(("training data stats", f"- ({td['skipped']})"))
    elif td:
        rows.append(("training data length", f"{_num(td.get('avg_chars'), '.1f')} chars, "
                                             f"{_num(td.get('avg_words'), '.1f')} words, rep-2 "
                                             f"{_pct(td.get('rep_2'))}"))
    return rows


def _result_rows(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    syn = summary.get("synthetic")
    if syn and "unavailable" not in syn:
        ci = syn.get("accuracy_ci95") or [None, None]
        rows.append(("synthetic exact-answer", f"{_num(syn.get('accuracy'), '.1f', 100)} % "
                                               f"[{_num(ci[0], '.1f', 100)}, "
                                               f"{_num(ci[1], '.1f', 100)}] (n={syn.get('n')})"))
    held = summary.get("heldout")
    if held and "unavailable" not in held:
        rows.append(("clean held-out loss, per example",
                     f"{_num(held.get('mean_loss'), '.4f')} over {held.get('n')} examples "
                     f"({held.get('n_tokens')} tokens)"))
    jd = summary.get("judge")
    if jd and "unavailable" not in jd:
        rows.append(("win rate", f"{_num(jd.get('win_rate'), '.2f')} "
                                 f"(se {_num(jd.get('standard_error'), '.2f')}, n={jd.get('n')}, "
                                 f"avg length {_num(jd.get('avg_length'), '.0f')}) vs "
                                 f"{jd.get('reference')} judged by {jd.get('judge')}"))
    jc = summary.get("judge_check")
    if jc and "unavailable" not in jc:
        rows.append(("judge check", f"{'usable' if jc.get('usable') else 'NOT usable'}: "
                                    f"accuracy {_num(jc.get('accuracy'), '.3f')}, position "
                                    f"bias {_num(jc.get('position_bias'), '.3f')}, "
                                    f"n={jc.get('n_pairs')}"))
    hd = summary.get("harness")
    if hd and "unavailable" not in hd:
        for task, value in (hd.get("summary") or {}).items():
            rows.append((f"harness {task}", _num(value, ".4f")))
        if hd.get("limit") is not None:
            rows.append(("harness limit", f"{hd['limit']} per task (not comparable)"))
    return rows


def _summary_rows(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    p = summary.get("prompts") or {}
    rows: list[tuple[str, str]] = [
        ("run", str(summary.get("run_dir"))),
        ("dataset", str(summary.get("dataset"))),
        ("noise", f"{summary.get('method')} alpha={summary.get('alpha')} "
                  f"norm_match={summary.get('norm_match')}"),
        ("train loss (noisy)", _num(summary.get("train_loss"), ".4f")),
        ("clean held-out loss", _num(summary.get("final_clean_eval_loss"), ".4f")),
        ("prompts", f"{p.get('source')} ({p.get('n')})"),
    ]
    rows += _stats_rows(summary.get("stats") or {})
    rows += _result_rows(summary)
    rows += [(f"step {step}", what) for step, what in (summary.get("steps") or {}).items()]
    return rows


def format_eval_summary(summary: Mapping[str, Any]) -> str:
    """The summary of :func:`evaluate_run` as an aligned two-column text table."""
    rows = _summary_rows(summary)
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _summary_markdown(summary: Mapping[str, Any]) -> str:
    lines = [f"# Evaluation of `{summary.get('name')}`", "", "| | |", "|---|---|"]
    for key, value in _summary_rows(summary):
        lines.append(f"| {key} | {str(value).replace('|', chr(92) + '|')} |")
    files = summary.get("files") or {}
    lines += ["", "Files: " + ", ".join(f"`{Path(v).name}`" for v in files.values()), ""]
    return "\n".join(lines)

