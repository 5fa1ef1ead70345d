"""The steps of ``symnoise eval`` (run by :mod:`.evaluation`), and the synthetic step's
pipeline, which is also ``symnoise tasks``. A step's ``key`` is what its result depends on;
the pipeline alone decides whether it runs."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, field_validator

from .._io import write_json_atomic, write_text_atomic
from ..config import Settings
from ..data.spec import parse_data_spec
from ..decoding import check_count
from ..evaluate.stats import stats_for_file, text_stats
from ..evaluate.tasks import OUTPUTS_FILE, TasksReport, make_report, score_outputs, write_report
from ..models import default_device
from ..outputs import read_rows
from ..run import RunFolder, read_jsonl

__all__ = ["STEPS", "EvalPlan", "EvalSettings", "Step", "StepUnavailable", "default_output_dir",
           "reference_source", "run_synthetic_eval", "score_synthetic_outputs"]


Text = Annotated[str, BeforeValidator(lambda v: os.fspath(v) if isinstance(v, os.PathLike) else v)]


class EvalSettings(Settings):
    """What ``symnoise eval`` does: its options (named as the CLI's, but ``reference``:
    --reference-outputs, ``harness_tasks``: --tasks, ``harness_limit``: --limit-per-task,
    ``synthetic_n``: --synthetic-n-prompts), ``evaluate_run``'s keywords and an experiment's
    ``evaluation`` block. device None: cuda when available."""

    prompts: Text = "synthetic:heldout"
    n_prompts: int | None = None
    ignore_fields: str | list[str] | None = None
    max_new_tokens: int = 256
    batch_size: int = 16
    judge: str | None = None
    base_url: str | None = None
    reference: Text | None = None
    both_orders: bool = False
    judge_check: bool = True
    harness_tasks: str | list[str] | None = None
    include_path: Text | None = None
    harness_limit: int | float | None = None
    words: int | str | None = None
    synthetic: bool = True
    synthetic_n: int | None = None
    heldout: bool = True
    device: str | None = None
    eval_data: Text | None = None

    @field_validator("n_prompts", "synthetic_n", "max_new_tokens", "batch_size")
    @classmethod
    def _count(cls, value: int | None, info: Any) -> int | None:
        check_count(info.field_name, value, optional=True)
        return value


@dataclass
class EvalPlan:
    """One evaluation: the run, its record, the settings and what they resolve to."""

    run: RunFolder
    info: dict[str, Any]
    settings: EvalSettings
    source_name: str
    n: int
    n_words: int
    words_from: str
    reference: Path | None = None
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

    @property
    def preference(self) -> bool:
        """A preference run (DPO, ...): its config's ``stage`` is not ``sft``."""
        return self.config.get("stage", "sft") != "sft"

    def say(self, message: str) -> None:
        if self.progress:
            print(message, file=sys.stderr, flush=True)


class StepUnavailable(Exception):
    """A requested step cannot run here (the message says why); the others go on."""


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _pick(doc: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    return {k: doc.get(k) for k in keys}


def _write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def _fingerprint(path: str | os.PathLike[str] | None) -> Any:
    """A small file's hash; a large file's or folder's size and mtime; else the source."""
    if not path:
        return None
    p = Path(path).expanduser()
    if not p.exists():
        return str(path)
    if p.is_file() and p.stat().st_size <= 64 << 20:
        return {"path": str(p), "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class Step:
    """One evaluation step: its result files (``roles``), the ``key`` they depend on, ``run``
    (its dict is kept in the steps record) and ``summary`` (its section: the ``shown`` fields
    of its first file, else all of it). A change of a key field other than ``resumable``
    ones makes ``run`` get ``restart=True``."""

    name = section = ""
    roles: tuple[str, ...] = ()
    resumable: tuple[str, ...] = ()
    shown: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.section = self.section or self.name

    def key(self, plan: EvalPlan) -> dict[str, Any]:
        raise NotImplementedError

    def files(self, plan: EvalPlan) -> list[Path]:
        return [plan.file(role) for role in self.roles]

    def complete(self, plan: EvalPlan) -> bool:
        return True

    def run(self, plan: EvalPlan, restart: bool) -> dict[str, Any] | None:
        raise NotImplementedError

    def summary(self, plan: EvalPlan) -> Any:
        doc = _read_json(self.files(plan)[0])
        return _pick(doc, self.shown) if self.shown else doc


class GenerateStep(Step):
    name, section, roles, resumable = "generate", "generation", ("outputs",), ("n",)

    def key(self, plan: EvalPlan) -> dict[str, Any]:
        return {"prompts": plan.source_name, "n": plan.n, "template": plan.template,
                "max_new_tokens": plan.settings.max_new_tokens, "repetition_penalty": 1.2,
                "greedy": True}

    def complete(self, plan: EvalPlan) -> bool:
        try:
            data = _read_json(plan.file("outputs"))
        except (OSError, json.JSONDecodeError):
            return False
        return isinstance(data, list) and len(data) == plan.n

    def run(self, plan: EvalPlan, restart: bool) -> dict[str, Any]:
        from .. import generate

        plan.say(f"  {plan.n} prompts from {plan.source_name} -> {plan.file('outputs')}")
        s = plan.settings
        gen = generate.generate_outputs(
            str(plan.run.path), s.prompts, plan.file("outputs"), max_new_tokens=s.max_new_tokens,
            batch_size=s.batch_size, limit=s.n_prompts, progress=plan.progress,
            overwrite=restart, device=s.device, ignore_fields=s.ignore_fields)
        plan.say(f"  {gen.n_generated} generated, {gen.n_resumed} resumed, "
                 f"{gen.n_hit_max_tokens} cut at max_new_tokens")
        return {"report": gen.to_dict()}

    def summary(self, plan: EvalPlan) -> dict[str, Any]:
        report = plan.records.get(self.name, {}).get("report") or {}
        return {k: report[k] for k in ("n_written", "n_hit_max_tokens", "mean_output_words",
                                       "mean_new_tokens", "decoding", "template",
                                       "prompt_shapes", "ignored_fields")
                if k in report}


def _train_data_stats(info: Mapping[str, Any], n_words: int) -> dict[str, Any]:
    """Stats of the training data's responses when the run trained on a local file/folder;
    otherwise a record saying why there are none."""
    cfg = info.get("config") or {}
    data = cfg.get("data")
    if not isinstance(data, str) or not data:
        return {"source": data, "skipped": "no training data source in run.json"}
    if parse_data_spec(data).is_synthetic:
        return {"source": data, "skipped": "built-in synthetic data, not a file"}
    path = Path(data).expanduser()
    if not path.exists():
        return {"source": data, "skipped": f"not a local file here ({path} not found)"}
    if cfg.get("stage", "sft") != "sft":  # a preference run: the chosen replies
        from ..data.run_data import load_preference_run_data
        from ..evaluate.heldout import recorded_config

        pairs = load_preference_run_data(recorded_config(info)).prepared
        report = pairs.report
        texts = [c if isinstance(c := r["chosen"], str) else c[0]["content"] for r in pairs.rows]
    else:
        from ..data import load_examples

        examples, report = load_examples(path, fmt=info.get("format") or cfg.get("format")
                                         or "auto", skip_bad_rows=bool(cfg.get("skip_bad_rows")))
        texts = [e.output for e in examples]
    stats = text_stats(texts, words=n_words)
    return {"source": data, "format": report.format, "read": report.read,
            "used": report.used, "skipped_rows": report.skipped, **stats.to_dict()}


class StatsStep(Step):
    name, roles = "stats", ("stats",)

    def key(self, plan: EvalPlan) -> dict[str, Any]:
        data = plan.config.get("data")
        local = isinstance(data, str) and data
        return {"outputs": _fingerprint(plan.file("outputs")), "words": plan.n_words,
                "train_data": _fingerprint(Path(data).expanduser()) if local else data}

    def run(self, plan: EvalPlan, restart: bool) -> None:
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


def _is_heldout_prompts(prompts: str) -> bool:
    spec = parse_data_spec(prompts)
    return spec.is_synthetic and spec.split != "train"


def default_output_dir(model: str | os.PathLike[str]) -> Path:
    """``RUN/eval`` for a run folder, else ``./symnoise-eval/<model name>``."""
    from ..generate import default_generator_name
    from ..models import resolve_model

    source = resolve_model(model)
    return RunFolder(source.path).eval_dir if source.kind == "run" else (
        Path.cwd() / "symnoise-eval" / default_generator_name(source))


def score_synthetic_outputs(outputs: str | os.PathLike[str], *, model: str = "",
                            seed: int = 0) -> TasksReport:
    """Score a model-outputs file whose entries carry ``family`` and ``answer`` (DataError
    naming a row without them); nothing is written."""
    from ..generate import read_outputs

    return score_outputs(read_outputs(outputs), source=str(outputs), model=model, seed=seed)


def run_synthetic_eval(
    model: Any, *, output_dir: str | os.PathLike[str] | None = None, n: int | None = None,
    seed: int = 0, batch_size: int = 16, max_new_tokens: int = 64, template: str | None = None,
    progress: bool = True, overwrite: bool = False, tokenizer: Any = None,
    **generate_kwargs: Any,
) -> TasksReport:
    """``symnoise tasks``: answer the synthetic held-out split (``n`` prompts, default 240),
    resuming unless ``overwrite``, and score it into ``output_dir`` (default ``RUN/eval``;
    required for a loaded ``model`` with ``tokenizer=``)."""
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


class SyntheticStep(Step):
    """Scores generate's answers when the prompts are the held-out split; otherwise
    answers the split itself (``synthetic_n`` prompts)."""

    name, roles, resumable = "synthetic", ("synthetic_scores", "synthetic_items"), ("n",)

    def key(self, plan: EvalPlan) -> dict[str, Any]:
        if _is_heldout_prompts(plan.settings.prompts):
            return {"mode": "score outputs.json", "outputs": _fingerprint(plan.file("outputs"))}
        return {"mode": "generate", "n": self._n(plan), "template": plan.template,
                "max_new_tokens": plan.settings.max_new_tokens}

    @staticmethod
    def _n(plan: EvalPlan) -> int | None:
        from ..data.synthetic import DEFAULT_N_HELDOUT

        if plan.settings.synthetic_n:
            return plan.settings.synthetic_n
        return min(plan.settings.n_prompts, DEFAULT_N_HELDOUT) if plan.settings.n_prompts else None

    def run(self, plan: EvalPlan, restart: bool) -> None:
        if _is_heldout_prompts(plan.settings.prompts):
            plan.say(f"  scoring the {plan.n} held-out answers of {plan.file('outputs').name}")
            report = score_synthetic_outputs(plan.file("outputs"), model=str(plan.run.path))
            write_report(report, plan.run.eval_dir)
        else:
            plan.say("  answering the synthetic held-out split")
            run_synthetic_eval(
                str(plan.run.path), output_dir=plan.run.eval_dir, n=self._n(plan),
                batch_size=plan.settings.batch_size, max_new_tokens=plan.settings.max_new_tokens,
                progress=plan.progress, overwrite=restart, device=plan.settings.device)

    def summary(self, plan: EvalPlan) -> dict[str, Any]:
        scores = _read_json(plan.file("synthetic_scores"))
        overall = scores.get("overall") or {}
        return {"n": scores.get("n", overall.get("n")),
                **_pick(overall, ("correct", "accuracy", "accuracy_ci95", "format_rate")),
                "per_family": {k: v.get("accuracy")
                               for k, v in (scores.get("per_family") or {}).items()}}


def _load_model(plan: EvalPlan, source: Any, tokenizer: Any, dtype: str | None) -> Any:
    from ..models import ensure_pad_token, load_model

    model = load_model(source, dtype=dtype or "float32", device=default_device(plan.settings.device))
    ensure_pad_token(tokenizer, model)
    return model


class HeldoutStep(Step):
    """The clean loss of each held-out example (:mod:`symnoise.evaluate.heldout`)."""

    name, roles = "heldout", ("heldout_losses",)
    _SETTINGS = ("data", "eval_data", "format", "template", "max_length", "eval_fraction",
                 "max_eval_examples", "max_train_examples", "seed", "skip_bad_rows",
                 "synthetic_train_size", "synthetic_heldout_size", "synthetic_seed",
                 "batch_size", "dtype")

    def key(self, plan: EvalPlan) -> dict[str, Any]:
        cfg = plan.config
        model = sorted(plan.run.path.glob("*.safetensors")) + [plan.run.path / "config.json"]
        return {"config": _pick(cfg, self._SETTINGS), "template": plan.template,
                "data": _fingerprint(cfg.get("data")),
                "eval_data": _fingerprint(cfg.get("eval_data")),
                "model": [_fingerprint(p) for p in model if p.is_file()]}

    def run(self, plan: EvalPlan, restart: bool) -> dict[str, Any]:
        from ..evaluate import heldout
        from ..models import load_tokenizer, resolve_model

        if plan.preference:
            raise StepUnavailable("a preference run: its held-out pairs are measured by the "
                                  "preference step")
        source = resolve_model(str(plan.run.path))
        tokenizer = load_tokenizer(source)
        try:
            held = heldout.heldout_set(plan.info, tokenizer)
        except heldout.HeldoutUnavailable as exc:
            raise StepUnavailable(str(exc)) from None
        recorded = (plan.info.get("data") or {}).get("eval_examples")
        if recorded is not None and recorded != len(held.features):
            raise StepUnavailable(f"rebuilt {len(held.features)} held-out examples but "
                                  f"run.json records {recorded}: not the set training used")
        plan.say(f"  {len(held.features)} examples ({held.source})")
        model = _load_model(plan, source, tokenizer, plan.config.get("dtype"))
        losses = heldout.example_losses(model, held.features, pad_token_id=tokenizer.pad_token_id,
                                        batch_size=held.eval_batch_size, progress=plan.progress)
        rows = heldout.heldout_rows(held.examples, losses)
        _write_jsonl(plan.file("heldout_losses"), rows)
        return {"source": held.source, "eval_batch_size": held.eval_batch_size}

    def summary(self, plan: EvalPlan) -> dict[str, Any]:
        from ..evaluate.heldout import token_mean, trainer_mean

        rows = read_jsonl(plan.file("heldout_losses"))
        record = plan.records.get(self.name, {})
        bs = int(record.get("eval_batch_size") or 8)
        return {"source": record.get("source"), "n": len(rows),
                "n_tokens": sum(r["n_tokens"] for r in rows),
                "mean_loss": token_mean(rows) if rows else None,
                "trainer_mean_loss": trainer_mean(rows, bs) if rows else None,
                "eval_batch_size": bs,
                "run_final_clean_eval_loss": plan.info.get("final_clean_eval_loss")}


class PreferenceStep(Step):
    """Held-out preference accuracy and reward margin of a preference run
    (:mod:`symnoise.evaluate.preference`) against the model it started from (run.json's
    ``model``: a LoRA run is saved merged, so that is its model with the adapter disabled)."""

    name, roles = "preference", ("preference_pairs",)

    def key(self, plan: EvalPlan) -> dict[str, Any]:
        return {**HeldoutStep().key(plan), "eval_data_given": _fingerprint(plan.settings.eval_data),
                "stage": plan.config.get("stage"), "beta": plan.config.get("beta", 0.1),
                "reference": _fingerprint(plan.config.get("model"))}

    def run(self, plan: EvalPlan, restart: bool) -> dict[str, Any]:
        from ..data.run_data import load_preference_run_data
        from ..evaluate import preference as pref
        from ..evaluate.heldout import recorded_config
        from ..models import load_tokenizer, resolve_model

        cfg, source = recorded_config(plan.info), resolve_model(str(plan.run.path))
        tokenizer = load_tokenizer(source)
        try:
            data = load_preference_run_data(cfg, tokenizer, train=False,
                                            eval_data=plan.settings.eval_data)
            base = resolve_model(cfg.model)  # the reference
        except FileNotFoundError as exc:
            raise StepUnavailable(f"the held-out pairs or the reference model are not "
                                  f"available here: {exc}") from None
        recorded = (plan.info.get("data") or {}).get("eval_examples")
        if plan.settings.eval_data is None and recorded not in (None, len(data.eval)):
            raise StepUnavailable(f"rebuilt {len(data.eval)} held-out pairs but run.json records "
                                  f"{recorded}: not the set training used")
        features = pref.tokenize_pairs(data.eval, tokenizer)
        keep = [i for i, f in enumerate(features) if len(f["prompt_ids"]) < cfg.max_length]
        pairs, features = [data.eval[i] for i in keep], [features[i] for i in keep]
        if not pairs:  # TRL drops a pair whose prompt fills max_length
            raise StepUnavailable(f"no held-out pair has a prompt under {cfg.max_length} tokens")
        dropped = len(data.eval) - len(pairs)
        plan.say(f"  {len(pairs)} pairs ({data.eval_source}; {dropped} with a prompt of "
                 f"max_length {cfg.max_length} tokens or more left out, as training does)")
        model = _load_model(plan, source, tokenizer, cfg.dtype)
        args = {"pad_token_id": tokenizer.pad_token_id, "max_length": cfg.max_length,
                "batch_size": max(cfg.batch_size, 8)}
        policy = pref.completion_logps(model, features, **args)
        del model
        reference = pref.completion_logps(_load_model(plan, base, tokenizer, cfg.dtype),
                                          features, **args)
        rows = pref.pair_rows(pairs, policy, reference, cfg.beta)
        _write_jsonl(plan.file("preference_pairs"), rows)
        return {"source": data.eval_source, "reference": cfg.model, "dropped": dropped}

    def summary(self, plan: EvalPlan) -> dict[str, Any]:
        from ..evaluate.preference import preference_summary

        record = plan.records.get(self.name, {})
        return {**_pick(record, ("source", "reference", "dropped")),
                "beta": plan.config.get("beta", 0.1),
                **preference_summary(read_jsonl(plan.file("preference_pairs")))}


def reference_source(reference: str | os.PathLike[str] | None, prompts: str) -> Path:
    """The reference outputs for the judge: ``reference``, or the prompt file when every
    row of it carries a reference ``output``."""
    if reference is not None:
        path = Path(reference).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"reference outputs not found: {path}")
        return path
    hint = ("pass --reference-outputs FILE (AlpacaEval-format outputs of the reference model, e.g. "
            "text-davinci-003's) or, as --prompts, a file whose rows carry the reference "
            "'output' (AlpacaEval's own file does)")
    if not Path(prompts).is_file():
        raise ValueError(f"judging needs reference outputs and the prompts {prompts!s} have "
                         f"none: {hint}")
    path = Path(prompts)
    rows = read_rows(path, fields=("instruction",))
    missing = [i for i, r in enumerate(rows) if not isinstance(r.get("output"), str)]
    if len(missing) == len(rows):
        raise ValueError(f"judging needs reference outputs: {path} has no 'output' fields; "
                         f"{hint}")
    if missing:
        raise ValueError(f"{path} row {missing[0]}: no reference 'output' (and {len(missing)} "
                         f"rows in all of {len(rows)}); pass --reference-outputs FILE")
    return path


class JudgeCheckStep(Step):
    """The judge's check (``judge_check.run_judge_check``) on its reference outputs."""

    name, roles = "judge_check", ("judge_check",)
    shown = ("accuracy", "accuracy_ci", "mode", "position_bias", "n_pairs", "usable")

    def key(self, plan: EvalPlan) -> dict[str, Any]:
        return {**plan.settings.model_dump(include={"judge", "base_url", "both_orders"}),
                "reference": _fingerprint(plan.reference)}

    def run(self, plan: EvalPlan, restart: bool) -> None:
        try:
            from ..evaluate import judge_check
        except ImportError:
            raise StepUnavailable("this version has no judge check "
                                  "(symnoise.evaluate.judge_check)") from None
        s = plan.settings
        plan.say(f"  {s.judge} on known pairs from {plan.reference}")
        result = judge_check.run_judge_check(s.judge, plan.reference, base_url=s.base_url,
                                             output_dir=plan.run.eval_dir,
                                             both_orders=s.both_orders)
        write_json_atomic(plan.file("judge_check"), dict(result))


class JudgeStep(JudgeCheckStep):
    name, roles = "judge", ("judge",)
    shown = ("judge", "reference", "win_rate", "standard_error", "n", "n_total",
             "n_unparseable", "n_errors", "avg_length", "avg_length_reference", "both_orders")

    def key(self, plan: EvalPlan) -> dict[str, Any]:
        return {**super().key(plan), "outputs": _fingerprint(plan.file("outputs"))}

    def files(self, plan: EvalPlan) -> list[Path]:
        from ..evaluate.judge import LEADERBOARD_JSON

        return [plan.file("judge") / LEADERBOARD_JSON]

    def run(self, plan: EvalPlan, restart: bool) -> None:
        from ..evaluate import judge

        s = plan.settings
        plan.say(f"  {s.judge} against {plan.reference} -> {plan.file('judge')}")
        report = judge.judge_outputs(plan.file("outputs"), plan.reference, judge=s.judge,
                                     output_dir=plan.file("judge"), base_url=s.base_url,
                                     both_orders=s.both_orders, progress=plan.progress)
        if report.partial:  # not recorded as complete: a rerun asks the missing verdicts
            raise judge.JudgeError(report.failure())

    def summary(self, plan: EvalPlan) -> dict[str, Any]:
        board = _read_json(self.files(plan)[0])
        if not board:
            return {}
        name, row = next(iter(board.items()))
        return {"name": name, **_pick(row, self.shown)}


class HarnessStep(Step):
    name, roles = "harness", ("harness",)

    def key(self, plan: EvalPlan) -> dict[str, Any]:
        include = plan.settings.include_path
        return {"tasks": plan.settings.harness_tasks, "limit": plan.settings.harness_limit,
                "include_path": None if include is None
                else str(Path(include).expanduser().resolve())}

    def run(self, plan: EvalPlan, restart: bool) -> None:
        from ..evaluate import harness

        s = plan.settings
        plan.say(f"  {s.harness_tasks}")
        harness.run_harness(str(plan.run.path), s.harness_tasks, output_dir=plan.run.eval_dir,
                            limit=s.harness_limit, include_path=s.include_path,
                            batch_size=s.batch_size, device=default_device(s.device))

    def summary(self, plan: EvalPlan) -> dict[str, Any]:
        data = _read_json(plan.file("harness"))
        return {"summary": dict(data.get("summary") or {}),
                **_pick(data.get("config") or {}, ("limit", "tasks", "num_fewshot"))}


#: Every step, in the order they run.
STEPS: tuple[Step, ...] = (GenerateStep(), StatsStep(), SyntheticStep(), HeldoutStep(),
                           PreferenceStep(), JudgeStep(), JudgeCheckStep(), HarnessStep())
