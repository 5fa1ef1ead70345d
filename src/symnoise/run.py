"""The run folder: its layout, and the one reader and writer of each file in it.

A run folder is the unit of work. Training writes it, every later step (generate, eval,
judge, report, sweep, compare) reads it and adds to it::

    RUN/
      run.json              resolved config, noise, data counts, versions, timings, status
      metrics.jsonl         one JSON object per logging step (noisy train loss, clean eval loss)
      run.lock              the one writer's lock (pid, host); present while train or eval runs
      checkpoints/          Trainer checkpoints (``checkpoint-N``), for --resume; one is
                            complete only once it holds ``symnoise_checkpoint.json``
                            (written last: the step, the run's token and time totals)
      error.txt             why a sweep point failed (only when it did)
      config.json, *.safetensors, tokenizer files   the model, plain Hugging Face format
      eval/                 everything `symnoise eval` writes (names in :data:`EVAL_FILES`)

No other module spells these names: use :class:`RunFolder`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import socket
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ._io import append_journal, read_journal, read_json_lines, write_json_atomic, write_text_atomic
from .config import PAPER_DATASETS, upgrade_config

__all__ = ["EVAL_FILES", "RunFolder", "RunLockedError", "find_runs", "run_dataset",
           "run_setting"]

INFO = "run.json"
METRICS = "metrics.jsonl"
LOCK = "run.lock"
CHECKPOINTS = "checkpoints"
CHECKPOINT_DONE = "symnoise_checkpoint.json"  # in checkpoint-N, written last: N is complete
ERROR = "error.txt"
EVAL_DIR = "eval"

# Files under RUN/eval/, by role. Components name their outputs by role, never by file name.
EVAL_FILES: dict[str, str] = {
    "outputs": "outputs.json",  # AlpacaEval model-outputs of the eval prompts
    "stats": "stats.json",  # length / repetition / diversity
    "steps": "steps.json",  # what each eval step was computed from (skip-if-done)
    "synthetic_outputs": "synthetic_outputs.json",
    "synthetic_scores": "synthetic_scores.json",
    "synthetic_scores_md": "synthetic_scores.md",
    "synthetic_items": "synthetic_items.jsonl",  # per-item exact-answer correctness
    "heldout_losses": "heldout_losses.jsonl",  # clean loss of every held-out example
    "preference_pairs": "preference_pairs.jsonl",  # implicit reward margin of held-out pairs
    "judge": "judge",  # folder: annotations, leaderboard, cache
    "judge_check": "judge_check.json",
    "harness": "harness.json",
    "harness_md": "harness.md",
    "harness_samples": "harness_samples.jsonl",
    "summary": "summary.json",
    "summary_md": "summary.md",
    "settings": "eval_settings.json",  # the sweep's record of the evaluation settings
}
_SKIP_DIRS = frozenset({CHECKPOINTS, EVAL_DIR, ".git", "__pycache__"})


class RunFolder:
    """A run folder on disk (it need not exist yet)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.info_file, self.metrics_file, self.lock_file, self.checkpoints_dir, \
            self.error_file, self.eval_dir = (self.path / name for name in (
                INFO, METRICS, LOCK, CHECKPOINTS, ERROR, EVAL_DIR))

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    def eval_file(self, role: str) -> Path:
        """``RUN/eval/<file>`` for a role of :data:`EVAL_FILES` (``outputs``, ``stats``...)."""
        if role not in EVAL_FILES:
            raise KeyError(f"unknown eval file role {role!r}; known: {', '.join(EVAL_FILES)}")
        return self.eval_dir / EVAL_FILES[role]

    def is_run(self) -> bool:
        return self.info_file.is_file()

    def has_model(self) -> bool:
        return (self.path / "config.json").is_file()

    # -- run.json --------------------------------------------------------------------
    def read_info(self, *, required: bool = True) -> dict[str, Any]:
        """The parsed ``run.json`` (its ``config`` in today's spelling,
        :func:`~symnoise.config.upgrade_config`); ``{}`` when absent and not ``required``.

        FileNotFoundError when required and absent, ValueError naming the file when it is
        not a JSON object.
        """
        if not self.info_file.is_file():
            if required:
                raise FileNotFoundError(f"{self.path} is not a run folder: no {INFO} in it")
            return {}
        data = _read_json(self.info_file)
        if not isinstance(data, dict):
            raise ValueError(f"{self.info_file}: expected a JSON object, got {type(data).__name__}")
        if isinstance(data.get("config"), Mapping):
            data["config"] = upgrade_config(data["config"])
        return data

    def write_info(self, info: Mapping[str, Any]) -> None:
        write_json_atomic(self.info_file, dict(info))

    def update_info(self, **fields: Any) -> dict[str, Any]:
        info = self.read_info(required=False)
        info.update(fields)
        self.write_info(info)
        return info

    # -- metrics.jsonl ---------------------------------------------------------------
    def read_metrics(self) -> list[dict[str, Any]]:
        """Every row of ``metrics.jsonl`` ([] when absent); ValueError names a bad line."""
        return read_jsonl(self.metrics_file) if self.metrics_file.is_file() else []

    def append_metrics(self, row: Mapping[str, Any]) -> None:
        append_journal(self.metrics_file, [dict(row)])

    def clear_metrics(self) -> None:
        if self.metrics_file.exists():
            self.metrics_file.unlink()

    def keep_metrics_until(self, step: int) -> int:
        """Drop the rows logged after ``step`` (a resumed run logs them again), and a last
        row torn by a kill mid-write; returns how many were dropped."""
        lines, torn = read_journal(self.metrics_file)
        rows = [row for _, row in lines]
        kept = [r for r in rows if not isinstance(r.get("step"), int) or r["step"] <= step]
        if len(kept) < len(rows):
            write_text_atomic(self.metrics_file,
                              "".join(json.dumps(r, default=str) + "\n" for r in kept))
        return len(rows) - len(kept) + torn

    # -- checkpoints -------------------------------------------------------------------
    def checkpoints(self) -> list[Path]:
        """Every ``checkpoint-N`` folder, complete or not, by increasing N."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = [p for p in self.checkpoints_dir.glob("checkpoint-*")
                 if p.is_dir() and p.name.rsplit("-", 1)[-1].isdigit()]
        return sorted(found, key=checkpoint_step)

    def complete_checkpoints(self) -> list[Path]:
        """The checkpoints marked complete (:meth:`mark_checkpoint_complete`), oldest first."""
        return [p for p in self.checkpoints() if (p / CHECKPOINT_DONE).is_file()]

    def partial_checkpoints(self) -> list[Path]:
        """Checkpoints never marked complete: a save that was killed or failed (full disk)."""
        return [p for p in self.checkpoints() if not (p / CHECKPOINT_DONE).is_file()]

    def last_checkpoint(self) -> Path | None:
        """The newest complete checkpoint, or None; partial ones are never taken."""
        complete = self.complete_checkpoints()
        return complete[-1] if complete else None

    def mark_checkpoint_complete(self, checkpoint: Path, record: Mapping[str, Any]) -> None:
        """Sync the checkpoint's files to disk, then write its record (``CHECKPOINT_DONE``)
        last: from then on it counts as complete."""
        for file in sorted(checkpoint.rglob("*")):
            if file.is_file():
                with open(file, "rb") as fh:
                    os.fsync(fh.fileno())
        write_json_atomic(checkpoint / CHECKPOINT_DONE, dict(record))

    def checkpoint_record(self, checkpoint: Path) -> dict[str, Any]:
        """What :meth:`mark_checkpoint_complete` recorded in a complete checkpoint."""
        data = _read_json(checkpoint / CHECKPOINT_DONE)
        if not isinstance(data, dict):
            raise ValueError(f"{checkpoint / CHECKPOINT_DONE}: expected a JSON object")
        return data

    def remove_checkpoints(self, checkpoints: Iterable[Path]) -> list[Path]:
        """Delete the given checkpoint folders; returns them."""
        removed = list(checkpoints)
        for path in removed:
            shutil.rmtree(path)
        return removed

    def prune_checkpoints(self, keep: int | None) -> list[Path]:
        """Keep the newest ``keep`` complete checkpoints (None: all) and delete the older
        ones, partial ones below the newest complete one included; returns the deleted."""
        complete = self.complete_checkpoints()
        if keep is None or not complete:
            return []
        newest = checkpoint_step(complete[-1])
        old = complete[:-max(keep, 1)] + [p for p in self.partial_checkpoints()
                                          if checkpoint_step(p) < newest]
        return self.remove_checkpoints(old)

    # -- the lock and errors -----------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, purpose: str) -> Iterator[str | None]:
        """Hold the run folder's lock (``run.lock``: pid, host, purpose) while the block runs.

        One writer at a time: RunLockedError naming the holder when another process holds
        it. The lock is a ``flock`` on the file, so a process that dies frees it; the file
        it leaves is taken over, and the block gets a note saying so (else None).
        """
        fd, note = _acquire_lock(self, purpose)
        try:
            yield note
        finally:
            with contextlib.suppress(OSError):
                if os.stat(self.lock_file).st_ino == os.fstat(fd).st_ino:
                    os.unlink(self.lock_file)
            os.close(fd)

    def write_error(self, text: str) -> None:
        write_text_atomic(self.error_file, text)

    def clear_error(self) -> None:
        if self.error_file.exists():
            self.error_file.unlink()

    # -- eval files ------------------------------------------------------------------
    def read_eval_json(self, role: str) -> Any:
        """The parsed JSON of an eval file, or None when it does not exist yet."""
        path = self.eval_file(role)
        return _read_json(path) if path.is_file() else None

    def write_eval_json(self, role: str, data: Any) -> Path:
        path = self.eval_file(role)
        write_json_atomic(path, data)
        return path

    # -- what the run is ---------------------------------------------------------------
    @property
    def status(self) -> str | None:
        """``running``, ``completed``... from run.json; None when there is no run.json."""
        info = self.read_info(required=False)
        return info.get("status") if info else None

    @property
    def dataset(self) -> str:
        return run_dataset(self.read_info())

    @property
    def setting(self) -> dict[str, Any]:
        return run_setting(self.read_info())

    @property
    def seed(self) -> int | None:
        return (self.read_info().get("config") or {}).get("seed")


class RunLockedError(FileExistsError):
    """Another process holds the run folder's lock."""


def _acquire_lock(run: RunFolder, purpose: str) -> tuple[int, str | None]:
    """``(fd, note)``: the lock file open and ``flock``-ed by us, our pid and host in it."""
    import fcntl

    path = run.lock_file
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            os.close(fd)
            raise RunLockedError(
                f"{run.path} is in use by {holder or 'another process'} ({path}); wait for it "
                "to finish or stop it, or use another run folder") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:  # else the holder released (deleted) it just before we locked: again
            break
        os.close(fd)
    stale = _lock_holder(fd)
    record = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose,
              "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    note = (f"took over the lock of {run.path} left by {stale}, which no longer runs"
            if stale else None)
    return fd, note


def _lock_holder(fd: int) -> str | None:
    """``pid N on host H (purpose, since T)`` from an open lock file; None when empty."""
    text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    if not text:
        return None
    try:
        rec = json.loads(text)
        return (f"pid {rec['pid']} on host {rec['host']} ({rec.get('purpose', '?')}, "
                f"since {rec.get('since', '?')})")
    except (ValueError, KeyError, TypeError):
        return f"an unreadable lock record ({text[:80]!r})"


def checkpoint_step(checkpoint: Path) -> int:
    """N of ``checkpoint-N``."""
    return int(Path(checkpoint).name.rsplit("-", 1)[-1])


def find_runs(root: str | os.PathLike[str], *, exclude: Iterable[str | os.PathLike[str]] = ()
              ) -> list[RunFolder]:
    """Every run folder under ``root`` (itself included), sorted by path; checkpoint and
    eval folders and the ``exclude`` folders are not searched, symlink loops are cut."""
    top = Path(root)
    if not top.is_dir():
        raise FileNotFoundError(f"runs folder not found: {top}")
    skip = {Path(p).resolve() for p in exclude}
    found, seen, stack = [], set(), [top]
    while stack:
        folder = stack.pop()
        real = folder.resolve()
        if real in skip or real in seen:
            continue
        seen.add(real)
        if (folder / INFO).is_file():
            found.append(folder)
        try:
            children = [p for p in folder.iterdir() if p.is_dir() and p.name not in _SKIP_DIRS]
        except OSError:
            continue
        stack.extend(sorted(children))
    return [RunFolder(p) for p in sorted(found)]


def run_dataset(info: Mapping[str, Any]) -> str:
    """The training dataset's name for tables: ``config.extra.dataset`` when set, else
    ``synthetic`` for the built-in suite, else the data format when it is one of the
    paper's datasets, else the data file's stem."""
    cfg = info.get("config") or {}
    extra = cfg.get("extra") or {}
    if isinstance(extra, Mapping) and isinstance(extra.get("dataset"), str) and extra["dataset"]:
        return str(extra["dataset"])
    data = cfg.get("data")
    if isinstance(data, str) and (data == "synthetic" or data.startswith("synthetic:")):
        return "synthetic"
    for fmt in (info.get("format"), cfg.get("format")):
        if isinstance(fmt, str) and fmt in PAPER_DATASETS:
            return fmt
    if isinstance(data, str) and data:
        return Path(data.rstrip("/")).stem or data
    return "unknown"


def run_setting(info: Mapping[str, Any]) -> dict[str, Any]:
    """``{"method", "alpha", "norm_match", "symmetric_mode"}`` of a run (``config.noise``)."""
    noise = (info.get("config") or {}).get("noise") or {}
    return {k: noise.get(k) for k in ("method", "alpha", "norm_match", "symmetric_mode")}


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a JSON Lines file; ValueError naming file and line for a line that is not a
    JSON object (blank lines are allowed)."""
    rows = read_json_lines(path)
    for lineno, row in rows:
        if not isinstance(row, dict):
            raise ValueError(f"{path}: line {lineno}: expected a JSON object, got "
                             f"{type(row).__name__}")
    return [row for _, row in rows]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
