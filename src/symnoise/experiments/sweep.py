"""Experiment sweeps: every point of an experiment (:mod:`.experiment_file`) trained and
evaluated, one run folder per point; what a rerun does, the executors and the status file:
README ("symnoise sweep"). The report after it: :mod:`.pipeline`."""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import gc
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import fmt, text_table
from .._io import write_json_atomic as _write_json
from ..config import TrainConfig, setting_differences
from ..run import RunFolder
from .experiment_file import Experiment, ExperimentError, GridPoint, load_experiment

__all__ = ["STATUS_FILE", "Experiment", "ExperimentError", "GridPoint", "PointResult",
           "SweepResult", "load_experiment", "plan_point", "run_point", "run_sweep"]

STATUS_FILE = "sweep_status.json"  # OUTPUT/sweep_status.json: the sweep's own record
WORK_DIR = ".sweep"  # OUTPUT/.sweep: point specs for child processes and accelerate
EXECUTORS = ("local", "ray")
_NOTHING_TO_DO = ("skip", "unavailable", "conflict")
#: the sweep table's headline numbers: where they are in run.json / the evaluation summary
_HEADLINES = {"steps": ("info", "global_step"), "clean_loss": ("info", "final_clean_eval_loss"),
              "train_loss": ("info", "train_loss"), "train_seconds": ("info", "timings_s", "total"),
              "synthetic_score": ("summary", "synthetic", "accuracy"),  # fraction in [0, 1]
              "win_rate": ("summary", "judge", "win_rate"),  # percent
              "length": ("summary", "stats", "outputs", "avg_chars"),  # characters
              "words": ("summary", "stats", "outputs", "avg_words"),
              "rep_2": ("summary", "stats", "outputs", "rep_2")}  # percent


#: the table's metric columns (header, headline, format) and how to get each when no point has it
_SWEEP_COLUMNS = (("steps", "steps", "d"), ("clean loss", "clean_loss", ".4f"),
                  ("synth", "synthetic_score", ".3f"), ("win", "win_rate", ".1f"))
_SWEEP_HINTS = {"steps": "no point has trained yet",
                "clean_loss": "no run has a held-out set",
                "synthetic_score": "add `evaluation: {synthetic: true}` to the experiment",
                "win_rate": "add a judge to the experiment's evaluation (`judge: openai:MODEL`, "
                            "`base_url`)"}


@dataclass
class PointResult:
    """What happened to one grid point. status: ``completed``, ``skipped``, ``failed``,
    ``conflict``, ``unavailable`` or ``planned`` (dry run); action: :func:`plan_point`'s."""

    name: str
    status: str
    action: str
    run_dir: str
    seconds: float = 0.0
    error: str | None = None
    note: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _info(run: RunFolder) -> dict[str, Any] | None:
    """run.json, or None when it is absent or unreadable (the point trains anew)."""
    try:
        return run.read_info(required=False) or None
    except (OSError, ValueError):
        return None


def _eval_json(run: RunFolder, role: str) -> Any:
    """An eval file's JSON; None when it is absent or not JSON."""
    try:
        return run.read_eval_json(role)
    except ValueError:
        return None


def _eval_settings(point: GridPoint) -> Any:
    return json.loads(json.dumps({"evaluation": point.evaluation, "baseline": point.baseline},
                                 sort_keys=True, default=str))


def _evaluated(run: RunFolder) -> bool:
    return run.eval_file("summary").is_file()


def plan_point(point: GridPoint) -> tuple[str, str | None]:
    """What a run of ``point`` would do now, ``(action, note)``: ``skip`` (trained and
    evaluated so), ``evaluate``, ``resume``, ``train``, ``conflict`` or ``unavailable``."""
    if point.unavailable:
        return "unavailable", point.unavailable
    run = RunFolder(point.run_dir)
    info = _info(run)
    if info is not None:
        conflicts = [f"{key}: {have!r} in the run folder, {want!r} in the experiment" for key,
                     have, want in setting_differences(info.get("config") or {}, point.train)]
        if conflicts:
            return "conflict", "; ".join(conflicts) + f" (delete {run.path} or change output_dir)"
        if info.get("status") == "completed":
            if point.evaluation is None:
                return "skip", None
            if _evaluated(run):
                same = _eval_json(run, "settings") == _eval_settings(point)
                return ("skip", None) if same else ("evaluate", "evaluation settings changed")
            return "evaluate", None
    return ("resume" if run.last_checkpoint() is not None else "train"), None


def _metrics(run_dir: str | Path) -> dict[str, Any]:
    """The headline numbers (:data:`_HEADLINES`) a run folder has."""
    run = RunFolder(run_dir)
    sources, out = {"info": _info(run), "summary": _eval_json(run, "summary")}, {}
    for name, (source, *path) in _HEADLINES.items():
        value = sources[source]
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value
    return out


def _say(progress: bool, message: str) -> None:
    if progress:
        print(f"[sweep] {message}", file=sys.stderr, flush=True)


def _call_train(cfg: TrainConfig, progress: bool) -> Path:
    """symnoise.train.train, looked up at call time (tests replace these two)."""
    from .. import train as train_module

    return train_module.train(cfg, progress=progress)


def _call_evaluate(run_dir: Path, kwargs: dict[str, Any], progress: bool) -> Any:
    from . import evaluation

    return evaluation.evaluate_run(run_dir, progress=progress, **kwargs)


def _baseline_reference(point: GridPoint) -> str:
    """The judge's reference for ``reference: baseline``: the baseline run's answers."""
    base = RunFolder(point.run_dir.parent / str(point.baseline))
    outputs = base.eval_file("outputs")
    if not _evaluated(base) or not outputs.is_file():
        raise RuntimeError(
            f"the baseline {point.baseline} has no evaluation yet ({outputs} missing: it "
            "failed or did not run); rerun the sweep once it is evaluated")
    return str(outputs)


def _train_with_accelerate(point: GridPoint, cfg: TrainConfig, args: Sequence[str]) -> None:
    """Train in ``accelerate launch [args] -m symnoise.cli train --config POINT.yaml``."""
    import yaml

    cfg_file = point.run_dir.parent / WORK_DIR / f"{point.name}.yaml"
    cfg_file.parent.mkdir(parents=True, exist_ok=True)
    cfg_file.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False),
                        encoding="utf-8")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *args,
           "-m", "symnoise.cli", "train", "--config", str(cfg_file)]
    # the child's stdout goes to our stderr: stdout stays for the sweep's own result (--json)
    rc = subprocess.call(cmd, stdout=2)
    if rc != 0:
        raise RuntimeError(f"accelerate launch exited with status {rc}: {' '.join(cmd)}")


def _write_error(run_dir: str | Path, text: str) -> None:
    with contextlib.suppress(OSError):
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        RunFolder(run_dir).write_error(text)


def _train_and_evaluate(point: GridPoint, action: str, *, progress: bool,
                        accelerate_launch: bool, accelerate_args: Sequence[str],
                        keep_checkpoints: bool) -> None:
    run = RunFolder(point.run_dir)
    if action in ("train", "resume"):
        _say(progress, f"{point.name}: {'resuming training' if action == 'resume' else 'training'}")
        cfg = point.train_config(resume=action == "resume")
        if accelerate_launch:
            _train_with_accelerate(point, cfg, accelerate_args)
        else:
            _call_train(cfg, progress)
        if (_info(run) or {}).get("status") != "completed":
            raise RuntimeError(f"training returned but {run.info_file} does not say "
                               "status: completed")
        if not keep_checkpoints:
            shutil.rmtree(run.checkpoints_dir, ignore_errors=True)
    if point.evaluation is not None:
        _say(progress, f"{point.name}: evaluating")
        kwargs = dict(point.evaluation)
        if point.baseline:
            kwargs["reference"] = _baseline_reference(point)
        _call_evaluate(run.path, kwargs, progress)
        if not _evaluated(run):
            raise RuntimeError(f"evaluation returned but wrote no {run.eval_file('summary')}")
        run.write_eval_json("settings", _eval_settings(point))


def run_point(point: GridPoint, *, progress: bool = True, accelerate_launch: bool = False,
              accelerate_args: Sequence[str] = (), keep_checkpoints: bool = False) -> PointResult:
    """Do what :func:`plan_point` says; a failure is returned as ``failed`` (and written
    to the run's error file), never raised. Their stdout goes to stderr."""
    t0 = time.perf_counter()
    action, note = plan_point(point)
    run = RunFolder(point.run_dir)
    if action in _NOTHING_TO_DO:
        return PointResult(point.name, {"skip": "skipped"}.get(action, action), action,
                           str(run.path), note=note,
                           metrics=_metrics(run.path) if action == "skip" else {})
    error, status = None, "completed"
    try:
        if not progress:  # also in a point's own process (isolation: process, Ray)
            from ..models import quiet_progress_bars

            quiet_progress_bars()
        with contextlib.redirect_stdout(sys.stderr):
            _train_and_evaluate(point, action, progress=progress,
                                accelerate_launch=accelerate_launch,
                                accelerate_args=accelerate_args,
                                keep_checkpoints=keep_checkpoints)
        run.clear_error()
    except Exception as exc:  # noqa: BLE001 - a failing point must not stop the sweep
        error, status = f"{type(exc).__name__}: {exc}", "failed"
        _write_error(run.path, f"{point.name}: {action} failed\n\n{traceback.format_exc()}")
        _say(progress, f"{point.name}: FAILED ({error.splitlines()[0][:200]})")
    finally:
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
    return PointResult(point.name, status, action, str(run.path),
                       round(time.perf_counter() - t0, 2), error, note, _metrics(run.path))


def _failed(point: GridPoint, error: str, seconds: float = 0.0) -> PointResult:
    """A point whose process or task died before it could say so itself."""
    _write_error(point.run_dir, f"{point.name}: {error}\n")
    return PointResult(point.name, "failed", plan_point(point)[0], str(point.run_dir),
                       round(seconds, 2), error, None, _metrics(point.run_dir))


def run_point_file(spec_file: str, result_file: str) -> None:
    """What the child process of ``isolation: process`` runs."""
    spec = json.loads(Path(spec_file).read_text(encoding="utf-8"))
    result = run_point(GridPoint(**spec["point"]), **spec["options"])
    _write_json(Path(result_file), result.to_dict())


def _run_point_subprocess(point: GridPoint, options: dict[str, Any],
                          work_dir: Path) -> PointResult:
    """run_point in a fresh Python process (``isolation: process``)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    spec, result_file = (work_dir / f"{point.name}.{s}.json" for s in ("point", "result"))
    result_file.unlink(missing_ok=True)
    _write_json(spec, {"point": dataclasses.asdict(point), "options": options})
    t0 = time.perf_counter()
    code = ("import sys; from symnoise.experiments.sweep import run_point_file; "
            "run_point_file(sys.argv[1], sys.argv[2])")
    rc = subprocess.call([sys.executable, "-c", code, str(spec), str(result_file)], stdout=2)
    with contextlib.suppress(OSError, ValueError):
        return PointResult(**json.loads(result_file.read_text(encoding="utf-8")))
    return _failed(point, f"the point's process exited with status {rc} and wrote no result",
                   time.perf_counter() - t0)


@dataclass
class SweepResult:
    """One :class:`PointResult` per selected point; ``report``/``report_error``: filled by
    :func:`~.pipeline.run_experiment`."""

    name: str
    source: str
    output_dir: str
    executor: str
    dry_run: bool
    total: int
    points: list[PointResult]
    report: dict[str, Any] | None = None
    report_error: str | None = None
    seconds: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(p.status for p in self.points))

    @property
    def ok(self) -> bool:
        """True when no selected point failed or conflicts."""
        return not any(p.status in ("failed", "conflict") for p in self.points)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "counts": self.counts, "selected": len(self.points)}

    def format_table(self) -> str:
        """The points, their status and the headline numbers some point has (a line says
        how to get each that none has)."""
        cols = [c for c in _SWEEP_COLUMNS
                if any(fmt(p.metrics.get(c[1]), c[2]) != "-" for p in self.points)]
        rows = [[p.name, p.status, p.action, *(fmt(p.metrics.get(k), f) for _, k, f in cols),
                 f"{p.seconds:.0f}s" if p.seconds else "-",
                 (p.error or p.note or "").split("\n")[0][:70]] for p in self.points]
        counts = ", ".join(f"{v} {k}" for k, v in sorted(self.counts.items()))
        kind = "dry run" if self.dry_run else f"{self.seconds:.0f} s"
        lines = [text_table(["point", "status", "action", *(c[0] for c in cols), "time", "note"],
                            rows), ""]
        if not self.dry_run:
            lines += [f"No {c[0]}: {_SWEEP_HINTS[c[1]]}." for c in _SWEEP_COLUMNS if c not in cols]
        lines.append(f"{self.name}: {len(self.points)} of {self.total} points ({counts}); "
                     f"{kind}; runs in {self.output_dir}")
        if self.report:
            lines.append(f"report: {self.report.get('report_md') or self.report.get('output_dir')}")
            lines += self.report.get("summary") or []  # what was measured, with intervals
        if self.report_error:
            lines.append(f"report not built: {self.report_error}")
        return "\n".join(lines)


def _select(points: list[GridPoint], only: str | Sequence[str] | None) -> list[GridPoint]:
    if not only:
        return list(points)
    pats = [p.strip() for text in ([only] if isinstance(only, str) else only)
            for p in text.split(",") if p.strip()]
    globs = [p if any(c in p for c in "*?[") else f"*{p}*" for p in pats]
    chosen = [p for p in points if any(fnmatch.fnmatchcase(p.name, g) for g in globs)]
    if not chosen:
        names = ", ".join(p.name for p in points[:12]) + (" ..." if len(points) > 12 else "")
        raise ExperimentError(f"--only {','.join(pats)!r} matches none of the {len(points)} "
                              f"points ({names})")
    return chosen


class _StatusFile:
    """OUTPUT/sweep_status.json, updated after every point (earlier entries kept)."""

    def __init__(self, exp: Experiment, executor: str):
        self.path = exp.output_dir / STATUS_FILE
        try:
            old = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        self.data: dict[str, Any] = old if isinstance(old, dict) else {}
        self.data.update({"experiment": exp.name, "source": exp.source,
                          "output_dir": str(exp.output_dir), "executor": executor})
        points = self.data.setdefault("points", {})
        for p in exp.points:  # every point of the grid is listed, run or not
            points.setdefault(p.name, {"status": "pending"}).update(
                model=p.model, dataset=p.dataset, method=p.method, alpha=p.alpha,
                norm_match=p.norm_match, seed=p.seed, label=p.label, run_dir=str(p.run_dir))
        self.update()

    def update(self, name: str | None = None, **fields: Any) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        if name is not None:
            self.data["points"].setdefault(name, {}).update(fields, updated=now)
        counts = Counter(e.get("status", "?") for e in self.data["points"].values())
        self.data.update(counts=dict(counts), updated=now)
        _write_json(self.path, self.data)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError(
            "executor 'ray' needs Ray, which is not installed: pip install 'ray[default]' "
            "(or pip install 'symnoise[ray]'), or use executor: local") from None
    return ray


def _start_ray(ray: Any, exp: Experiment, progress: bool) -> bool:
    """Join or start a cluster unless one is up; True when this call started it."""
    if ray.is_initialized():
        return False
    address = exp.ray.get("address") or os.environ.get("RAY_ADDRESS")
    init_kwargs = dict(exp.ray.get("init") or {})
    runtime_env = dict(exp.ray.get("runtime_env") or {})
    if not address:  # a local cluster: make sure its workers import this very symnoise
        pkg_root = str(Path(__file__).resolve().parent.parent.parent)
        env_vars = dict(runtime_env.get("env_vars") or {})
        env_vars.setdefault("PYTHONPATH", os.pathsep.join(
            [pkg_root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        runtime_env["env_vars"] = env_vars
        init_kwargs.setdefault("include_dashboard", False)
    _say(progress, f"ray: {f'connecting to {address}' if address else 'starting a local cluster'}")
    ray.init(address=address or None, runtime_env=runtime_env or None, **init_kwargs)
    return True


def _run_ray(exp: Experiment, order: list[GridPoint], options: dict[str, Any],
             on_result: Callable[[PointResult], None], progress: bool) -> None:
    ray = _import_ray()
    started = _start_ray(ray, exp, progress)
    num_gpus = exp.ray.get("num_gpus")
    if num_gpus is None:
        num_gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
    num_cpus = exp.ray.get("num_cpus", 1)
    _say(progress, f"ray: {len(order)} tasks, each num_gpus={num_gpus} num_cpus={num_cpus}")
    task = ray.remote(num_gpus=num_gpus, num_cpus=num_cpus, max_calls=1)(run_point)
    refs: dict[Any, GridPoint] = {}
    try:
        for phase in ([p for p in order if not p.baseline], [p for p in order if p.baseline]):
            refs = {task.remote(p, **options): p for p in phase}
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1)
                point = refs.pop(ready[0])
                try:
                    result = ray.get(ready[0])
                except Exception as exc:  # noqa: BLE001 - worker died, OOM, ...
                    result = _failed(point, f"ray task failed: {type(exc).__name__}: {exc}")
                on_result(result)
    except KeyboardInterrupt:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


def run_sweep(experiment: str | os.PathLike[str] | Mapping[str, Any] | Experiment, *,
              executor: str | None = None, dry_run: bool = False,
              only: str | Sequence[str] | None = None, progress: bool = True) -> SweepResult:
    """Run the points (``only``: globs over their names, a plain word a substring; a dry
    run plans and writes nothing). ExperimentError for a bad experiment; the points'
    failures are in the result."""
    t0 = time.perf_counter()
    exp = experiment if isinstance(experiment, Experiment) else load_experiment(experiment)
    executor = executor or exp.executor
    if executor not in EXECUTORS:
        raise ExperimentError(f"unknown executor {executor!r}; expected one of "
                              f"{', '.join(EXECUTORS)}")
    selected = _select(exp.points, only)
    result = SweepResult(exp.name, exp.source, str(exp.output_dir), executor, dry_run,
                         len(exp.points), [])
    if dry_run:
        for p in selected:
            action, note = plan_point(p)
            result.points.append(PointResult(p.name, "planned", action, str(p.run_dir),
                                             note=note, metrics=_metrics(p.run_dir)))
        return result
    if executor == "ray":
        _import_ray()  # fail before anything is written
    exp.output_dir.mkdir(parents=True, exist_ok=True)
    status = _StatusFile(exp, executor)
    results: dict[str, PointResult] = {}

    def record(r: PointResult) -> None:
        results[r.name] = r
        status.update(r.name, **{k: v for k, v in r.to_dict().items() if k != "name"})
        _say(progress, f"{len(results)}/{len(selected)} {r.name}: {r.status}"
             + (f" ({r.seconds:.0f} s)" if r.seconds else ""))

    # points judged against a baseline run after every baseline
    order = [p for p in selected if not p.baseline] + [p for p in selected if p.baseline]
    options = {"progress": progress, "accelerate_launch": exp.accelerate_launch,
               "accelerate_args": list(exp.accelerate_args),
               "keep_checkpoints": exp.keep_checkpoints}
    try:
        if executor == "ray":
            _run_ray(exp, order, options, record, progress)
        for i, p in enumerate(order if executor == "local" else [], 1):
            action, _ = plan_point(p)
            if action in _NOTHING_TO_DO:
                record(run_point(p, **options))
                continue
            _say(progress, f"point {i}/{len(selected)}: {p.name} ({action})")
            status.update(p.name, status="running", action=action)
            record(_run_point_subprocess(p, options, exp.output_dir / WORK_DIR)
                   if exp.isolation == "process" else run_point(p, **options))
    except KeyboardInterrupt:
        for p in selected:
            if p.name not in results and status.data["points"][p.name].get("status") == "running":
                status.update(p.name, status="interrupted")
        raise
    result.points = [results[p.name] for p in selected]
    result.seconds = round(time.perf_counter() - t0, 2)
    return result
