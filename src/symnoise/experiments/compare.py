"""``symnoise compare A B``: B − A of every shared metric with its paired-bootstrap
interval; sides are runs that differ only by seed, paired by seed (the README)."""

from __future__ import annotations

import glob
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .._io import fmt, group_by, text_table
from ..config import TrainConfig, model_setting, validate
from ..evaluate.paired import PairedDiff, check_same_ids, format_interval, paired_bootstrap
from ..evaluate.per_example import (
    JudgedPrompts,
    MissingMetric,
    judged_rows,
    load_per_example,
    values_of,
)
from ..evaluate.winrate import LC_OFFLINE, MIN_LC_ITEMS, length_controlled
from ..noise import NORM_MATCHED, canonical_method
from ..run import RunFolder, find_runs, run_dataset, run_setting

__all__ = ["METRICS", "Comparison", "MetricComparison", "Side", "compare", "compare_runs",
           "group_by_seed", "resolve_side", "setting_key", "side_label"]

METRICS = ("win_rate", "lc_win_rate", "heldout_loss", "exact_answer", "output_length",
           "preference_accuracy", "reward_margin")
_INFO = {  # metric: (name in sentences, unit, digits, what the examples are)
    "win_rate": ("win rate", "points", 1, "prompts"),
    "lc_win_rate": ("length-controlled win rate", "points", 1, "prompts"),
    "heldout_loss": ("held-out loss", "nats", 3, "examples"),
    "exact_answer": ("exact-answer accuracy", "points", 1, "items"),
    "output_length": ("output length", "chars", 0, "prompts"),
    "preference_accuracy": ("preference accuracy", "points", 1, "pairs"),
    "reward_margin": ("reward margin", "β·nats", 3, "pairs"),
}
_PREFERENCE_RUNS_ONLY = {"heldout_loss": False, "preference_accuracy": True, "reward_margin": True}
LC_N_BOOT = 200  # resamples for lc_win_rate (two GLM fits each, per seed)
_FILTERS = ("method", "alpha", "norm_match", "dataset", "seed", "model")
_NAMES = {"none": "none", "uniform": "NEFTune", "gaussian": "Gaussian",
          "bernoulli": "Bernoulli", "symnoise": "SymNoise"}


# -- what a side is ------------------------------------------------------------------------
def setting_key(info: Mapping[str, Any]) -> dict[str, Any]:
    """Everything that makes a run what it is except its seed: the run's
    :func:`~symnoise.config.model_setting`. Runs with equal keys differ only by seed."""
    return model_setting(info.get("config") or {})


def group_by_seed(runs: Iterable[RunFolder | str | Path]) -> list[list[RunFolder]]:
    """Runs grouped by :func:`setting_key` (groups in order of first appearance, each
    sorted by seed): the runs of one group differ only by seed and may be averaged."""
    groups = group_by((r if isinstance(r, RunFolder) else RunFolder(r) for r in runs),
                      lambda rf: json.dumps(setting_key(rf.read_info()), sort_keys=True,
                                            default=str))
    return [sorted(g, key=lambda r: (r.seed is None, r.seed or 0, str(r.path)))
            for g in groups.values()]


def side_label(info: Mapping[str, Any]) -> str:
    """``none``, ``NEFTune α5``, ``SymNoise α5``, ``Gaussian α5 (no norm-match)``."""
    s = setting_key(info).get("noise") or {}
    method = s.get("method")
    if method is None:
        return "?"
    text = _NAMES.get(method, str(method))
    if method == "none":
        return text
    alpha = s.get("alpha")
    text += f" α{alpha:g}" if isinstance(alpha, (int, float)) else ""
    if s.get("norm_match") is False:
        text += " (no norm-match)"
    if s.get("symmetric_mode") not in (None, "concat"):
        text += f" {s['symmetric_mode']}"
    return text


@dataclass
class Side:
    """One side of a comparison: runs that differ only by seed, sorted by seed."""

    spec: str
    runs: list[RunFolder]
    label: str
    key: dict[str, Any]

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.runs]

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "label": self.label, "runs": [str(r.path) for r in self.runs],
                "seeds": self.seeds}


def _split_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``PATH`` or ``PATH:key=value,...`` (filters after the last colon that has a '=')."""
    path, sep, tail = spec.rpartition(":")
    if not (sep and "=" in tail and path):
        return spec, {}
    filters: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in tail.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in _FILTERS:
            raise ValueError(f"{spec}: bad filter {part!r}; expected key=value with key one "
                             f"of {', '.join(_FILTERS)}")
        filters[key] = value.strip()
    return path, filters


def _matches(run: RunFolder, filters: Mapping[str, Any]) -> bool:
    """Whether a run passes every filter (typed by :func:`_typed`); alpha and norm matching
    do not apply to methods without them (``none`` has no alpha, only Gaussian/Bernoulli/
    SymNoise are norm-matched)."""
    info = run.read_info()
    s = run_setting(info)
    checks = {
        "method": lambda want: s["method"] == canonical_method(str(want)),
        "alpha": lambda want: s["method"] == "none" or isinstance(s["alpha"], (int, float))
        and math.isclose(s["alpha"], want),
        "norm_match": lambda want: s["method"] not in NORM_MATCHED or bool(s["norm_match"]) == want,
        "seed": lambda want: run.seed == want,
        "dataset": lambda want: run_dataset(info) == str(want),
        "model": lambda want: str((info.get("config") or {}).get("model")) == str(want),
    }
    return all(checks.get(key, lambda _: True)(want) for key, want in filters.items())


def _typed(filters: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Filter values as the config's types (``alpha=5`` a float, ``norm_match=no`` False);
    ValueError naming ``where``, the key and the value otherwise."""
    noise = {k: filters[k] for k in ("alpha", "norm_match") if k in filters}
    seed = {k: filters[k] for k in ("seed",) if k in filters}
    typed = validate(TrainConfig, {"noise": noise, **seed}, where).model_dump(exclude_unset=True)
    return {**filters, **typed.pop("noise", {}), **typed}


def _runs_of(path: str) -> list[RunFolder]:
    """The run folders of a path: a run folder, a folder of runs, or a glob of either."""
    if any(ch in path for ch in "*?["):
        if not (matches := sorted(glob.glob(path))):
            raise FileNotFoundError(f"{path}: the pattern matches nothing")
    elif RunFolder(path).is_run() or Path(path).is_dir():
        matches = [path]
    else:
        raise FileNotFoundError(f"{path}: no such run folder or folder of runs")
    runs: list[RunFolder] = []
    for m in matches:
        if RunFolder(m).is_run():
            runs.append(RunFolder(m))
        elif Path(m).is_dir():
            runs.extend(find_runs(m))
    return runs


def _describe(runs: Sequence[RunFolder], limit: int = 6) -> str:
    labels = sorted({f"{side_label(r.read_info())} ({r.dataset})" for r in runs})
    more = f", ... ({len(labels) - limit} more)" if len(labels) > limit else ""
    return ", ".join(labels[:limit]) + more


def _differ(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _key_difference(a: Mapping[str, Any], b: Mapping[str, Any], limit: int = 4) -> str:
    diffs = [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in _differ(a, b)]
    more = f", and {len(diffs) - limit} more" if len(diffs) > limit else ""
    return "; ".join(diffs[:limit]) + more


def resolve_side(spec: str | Sequence[str | Path | RunFolder], *, name: str = "A",
                 filters: Mapping[str, Any] | None = None) -> Side:
    """The runs of one side (a run folder, a glob, a folder of runs, or a list of run
    folders) narrowed by ``filters`` and ``PATH:key=value,...`` (which wins). FileNotFoundError:
    nothing found; ValueError: no run matches, runs differ beyond the seed, a seed twice."""
    if isinstance(spec, (str, Path)):
        path, own = _split_spec(str(spec))
        runs, text = _runs_of(path), str(spec)
    else:
        own, runs = {}, [r if isinstance(r, RunFolder) else RunFolder(r) for r in spec]
        text = ", ".join(str(r.path) for r in runs)
    if not runs:
        raise FileNotFoundError(f"{name} ({text}): no run folders found")
    wanted = _typed({**{k: v for k, v in (filters or {}).items() if v is not None}, **own},
                    f"{name} ({text})")
    kept = [r for r in runs if _matches(r, wanted)]
    if not kept:
        shown = ", ".join(f"{k}={v}" for k, v in wanted.items())
        raise ValueError(f"{name} ({text}): none of the {len(runs)} runs matches {shown}; "
                         f"found: {_describe(runs)}")
    groups = group_by_seed(kept)
    if len(groups) > 1:
        first, other = groups[0][0], groups[1][0]
        raise ValueError(
            f"{name} ({text}): the {len(kept)} runs differ in more than the seed ({len(groups)} "
            f"settings: {_describe(kept)}); e.g. {first.path} vs {other.path}: "
            f"{_key_difference(setting_key(first.read_info()), setting_key(other.read_info()))}"
            ". Runs of one side are only ever averaged over seeds: narrow it with filters "
            "(e.g. PATH:method=symnoise,alpha=5).")
    seeds = [r.seed for r in groups[0]]
    twice = sorted({str(s) for s in seeds if seeds.count(s) > 1})
    if twice:
        raise ValueError(f"{name} ({text}): seed {', '.join(twice)} appears in more than one "
                         f"run ({', '.join(str(r.path) for r in groups[0])}); keep one per seed")
    info = groups[0][0].read_info()
    return Side(spec=text, runs=groups[0], label=side_label(info), key=setting_key(info))


# -- the comparison ---------------------------------------------------------------------------
@dataclass
class MetricComparison:
    """B − A of one metric: ``result`` (None when skipped, with ``skipped`` saying why)."""

    metric: str
    a_label: str
    b_label: str
    result: PairedDiff | None = None
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)
    variant: str | None = None  # lc_win_rate: which length control

    @property
    def unit(self) -> str:
        return _INFO[self.metric][1]

    def n_text(self) -> str:
        if self.result is None:
            return ""
        what, per = _INFO[self.metric][3], self.result.n_per_stratum
        if len(per) == 1:
            return f"n = {per[0]} {what}"
        if len(set(per)) == 1:
            return f"n = {per[0]} {what} × {len(per)} seeds"
        return f"n = {self.result.n} {what} over {len(per)} seeds ({', '.join(map(str, per))})"

    def line(self) -> str:
        """``SymNoise α5 − NEFTune α5 win rate: +2.1 points [−3.0, +7.4], not significant
        (n = 100 prompts × 3 seeds)``."""
        name, unit, digits, _ = _INFO[self.metric]
        head = f"{self.b_label} − {self.a_label} {name}"
        head += f" ({self.variant})" if self.variant else ""
        if self.result is None:
            return f"{head}: skipped ({self.skipped})"
        d = self.result
        value, interval = format_interval(d, digits=digits).split(" ", 1)
        verdict = "significant" if d.significant else "not significant"
        lower = " (lower is better)" if self.metric == "heldout_loss" else ""
        return f"{head}: {value} {unit} {interval}, {verdict} ({self.n_text()}){lower}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"metric": self.metric, "a": self.a_label, "b": self.b_label,
                               "unit": self.unit}
        keys = ("diff", "ci_low", "ci_high", "n", "significant", "mean_a", "mean_b", "se",
                "n_per_stratum", "confidence", "n_boot")
        res = asdict(self.result) if self.result is not None else {}
        out.update({k: res.get(k) for k in keys})
        if res:
            out["n_seeds"] = res["n_strata"]
        out.update(line=self.line(), skipped=self.skipped, notes=list(self.notes))
        if self.metric == "lc_win_rate":
            out["lc_variant"] = self.variant
        return out


def _pairs(a: Side, b: Side, common_seeds: bool) -> tuple[list[tuple[RunFolder, RunFolder]],
                                                           str | None]:
    """(A run, B run) pairs by seed, and a note naming seeds left out (``common_seeds``)."""
    if len(a.runs) == 1 and len(b.runs) == 1:
        return [(a.runs[0], b.runs[0])], None
    by_seed = {str(r.seed): r for r in b.runs}
    pairs = [(r, by_seed[str(r.seed)]) for r in a.runs if str(r.seed) in by_seed]
    if len(pairs) == len(a.runs) == len(b.runs):
        return pairs, None
    if not common_seeds or not pairs:
        raise ValueError(f"A ({a.label}) has seeds {a.seeds} and B ({b.label}) has seeds "
                         f"{b.seeds}: runs are paired by seed, so both sides need the same seeds"
                         + ("" if common_seeds else " (or pass common_seeds / --common-seeds)"))
    used = {str(ra.seed) for ra, _ in pairs}
    left = [f"{n} seed(s) {[s for s in side.seeds if str(s) not in used]}"
            for n, side in (("A", a), ("B", b)) if len(side.runs) > len(used)]
    return pairs, "paired on the common seeds only; left out: " + ", ".join(left)


def _check_reference(judged: list[tuple[RunFolder, JudgedPrompts]]) -> None:
    """Every run judged by the same judge against the same reference outputs."""
    run0, first = judged[0]
    for run, j in judged[1:]:
        if j.references != first.references:
            raise ValueError(f"win rate: {run0.path} was judged against {sorted(first.references)}"
                             f" and {run.path} against {sorted(j.references)}: a paired "
                             "comparison needs the same reference")
        if j.judges != first.judges:
            raise ValueError(f"win rate: {run0.path} was judged by {sorted(first.judges)} and "
                             f"{run.path} by {sorted(j.judges)}: a comparison needs one judge")
        differ = [k for k in first.reference if k in j.reference
                  and j.reference[k] != first.reference[k]]
        if differ:
            raise ValueError(f"win rate: {len(differ)} prompts have different reference outputs "
                             f"in {run0.path} and {run.path} (e.g. {differ[0][:60]!r}): a "
                             "paired comparison needs the same reference outputs")


def _weights(da: Any, db: Any, keep: list[str], ra: RunFolder, rb: RunFolder) -> list[float]:
    """Token counts of held-out examples (one weight per pair; both sides must agree)."""
    wa, wb = da[1], db[1]
    if differ := [k for k in keep if wa[k] != wb[k]]:
        k = differ[0]
        raise ValueError(f"held-out loss: {len(differ)} examples have different token counts in "
                         f"A ({ra.path}) and B ({rb.path}), e.g. {k!r}: {wa[k]:g} vs {wb[k]:g}; "
                         "losses over different tokenisations cannot be compared per token")
    return [wa[k] for k in keep]


def _lc_of(rows: Sequence[Sequence[dict[str, Any]]], idx: np.ndarray) -> float:
    """The LC win rate (points) of the judged rows of the prompts at ``idx``."""
    import pandas as pd

    return length_controlled(pd.DataFrame([r for i in idx for r in rows[int(i)]]))[0]


def _compare_metric(metric: str, a: Side, b: Side, pairs: list[tuple[RunFolder, RunFolder]],
                    boot: Mapping[str, Any]) -> MetricComparison:
    """B − A of one metric over the seed pairs. ``lc_win_rate`` pairs each prompt's judged
    rows and refits the length-controlled GLM per side per resample."""
    lc = metric == "lc_win_rate"
    out = MetricComparison(metric, a.label, b.label, variant=LC_OFFLINE if lc else None)
    read = judged_rows if lc else partial(load_per_example, metric=metric)
    has = bool if lc else (lambda v: v is not None)  # judged rows / a value (or verdict)
    try:
        loaded = [(read(ra), read(rb)) for ra, rb in pairs]
    except MissingMetric as exc:
        out.skipped = str(exc)
        return out
    if metric == "win_rate":
        _check_reference([(r, d) for (ra, rb), (da, db) in zip(pairs, loaded, strict=True)
                          for r, d in ((ra, da), (rb, db))])
    xs, ys, ws, strata, sizes = [], [], [], [], []
    what = _INFO[metric][3]
    for (ra, rb), (da, db) in zip(pairs, loaded, strict=True):
        va, vb = values_of(da), values_of(db)
        check_same_ids(va, vb, what=what, a_name=f"A ({ra.path})", b_name=f"B ({rb.path})")
        keep = [k for k in va if has(va[k]) and has(vb[k])]
        if len(keep) < len(va):
            out.notes.append(f"seed {ra.seed}: {len(va) - len(keep)} of {len(va)} {what} have "
                             "no verdict on one side and are left out")
        if lc and (n_rows := min(sum(len(v[k]) for k in keep) for v in (va, vb))) < MIN_LC_ITEMS:
            out.skipped = (f"length control needs >= {MIN_LC_ITEMS} judged items per run, "
                           f"seed {ra.seed} has {n_rows}")
            return out
        if not keep:
            raise ValueError(f"{metric}: no {what} with a verdict on both sides for "
                             f"{ra.path} and {rb.path}")
        xs += [va[k] for k in keep]
        ys += [vb[k] for k in keep]
        ws += _weights(da, db, keep, ra, rb) if metric == "heldout_loss" else []
        strata += [str(ra.seed)] * len(keep)
        sizes.append(len(keep))
    strata = strata if len(pairs) > 1 else None
    if not lc:
        out.result = paired_bootstrap(xs, ys, strata=strata, weights=ws or None, **boot)
        return out
    index = np.arange(len(xs), dtype=float)
    res = paired_bootstrap(index, index, strata=strata, **boot,
                           statistic=lambda ia, ib: _lc_of(ys, ib) - _lc_of(xs, ia))
    groups = np.split(index, np.cumsum(sizes)[:-1])
    out.result = replace(res, mean_a=float(np.mean([_lc_of(xs, g) for g in groups])),
                         mean_b=float(np.mean([_lc_of(ys, g) for g in groups])))
    return out


@dataclass
class Comparison:
    """The outcome of :func:`compare`: both sides and one :class:`MetricComparison` each."""

    a: Side
    b: Side
    metrics: list[MetricComparison]

    @property
    def compared(self) -> list[MetricComparison]:
        return [m for m in self.metrics if m.result is not None]

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a.to_dict(), "b": self.b.to_dict(),
                "metrics": {m.metric: m.to_dict() for m in self.metrics}}

    def format_table(self) -> str:
        """A plain table: one row per metric, then the plain-language lines and notes."""
        level = next((m.result.confidence for m in self.compared), 0.95)
        head = ["metric", "unit", self.a.label, self.b.label, "B − A",
                f"{level:.0%} interval", "n", "significant"]
        rows = []
        for m in self.metrics:
            if m.result is None:
                rows.append([m.metric, m.unit, "-", "-", "-", "-", "-", "skipped"])
                continue
            d, digits = m.result, _INFO[m.metric][2]
            value, interval = format_interval(d, digits=digits).split(" ", 1)
            spec = f".{digits}f"
            rows.append([m.metric, m.unit, fmt(d.mean_a, spec), fmt(d.mean_b, spec), value,
                         interval, m.n_text().removeprefix("n = "),
                         "yes" if d.significant else "no"])
        lines = [text_table(head, rows, rule=False)]
        lines += ["", f"A: {self.a.label} ({len(self.a.runs)} run(s), seeds {self.a.seeds})",
                  f"B: {self.b.label} ({len(self.b.runs)} run(s), seeds {self.b.seeds})", ""]
        lines += [m.line() for m in self.metrics]
        lines += [f"note ({m.metric}): {n}" for m in self.metrics for n in m.notes]
        return "\n".join(lines)


def compare_runs(a: Side | Sequence[str | Path | RunFolder], b: Side | Sequence[str | Path | RunFolder],
                 *, metrics: Sequence[str] | None = None, n_boot: int = 2000,
                 confidence: float = 0.95, seed: int = 0, common_seeds: bool = False,
                 lc_n_boot: int = LC_N_BOOT) -> list[MetricComparison]:
    """B − A for each metric (default: the :data:`METRICS` of the runs' stage) of two sides (a :class:`Side` or run
    folders that differ only by seed); a metric a side lacks comes back ``skipped``.
    ``common_seeds``: pair the seeds both have instead of refusing; ``lc_win_rate`` uses
    min(n_boot, lc_n_boot). ValueError for anything that cannot be paired (the README)."""
    sa = a if isinstance(a, Side) else resolve_side(a, name="A")
    sb = b if isinstance(b, Side) else resolve_side(b, name="B")
    preference = (sa.runs[0].read_info().get("config") or {}).get("stage", "sft") != "sft"
    wanted = list(metrics or [m for m in METRICS
                              if _PREFERENCE_RUNS_ONLY.get(m, preference) == preference])
    if unknown := [m for m in wanted if m not in METRICS]:
        raise ValueError(f"unknown metric {unknown[0]!r}; expected one of: {', '.join(METRICS)}")
    if sa.label == sb.label:
        _disambiguate(sa, sb)
    pairs, note = _pairs(sa, sb, common_seeds)
    boot = {"n_boot": n_boot, "confidence": confidence, "seed": seed}
    lc_boot = {**boot, "n_boot": min(n_boot, lc_n_boot)}
    rows = [_compare_metric(m, sa, sb, pairs, lc_boot if m == "lc_win_rate" else boot)
            for m in wanted]
    for row in rows:
        row.notes[:0] = [note] if note else []
    return rows


def _disambiguate(a: Side, b: Side) -> None:
    """Two sides with the same noise label: name what else differs (or their folders)."""
    if differ := _differ(a.key, b.key):
        a.label += " [" + ", ".join(f"{k}={a.key.get(k)}" for k in differ[:2]) + "]"
        b.label += " [" + ", ".join(f"{k}={b.key.get(k)}" for k in differ[:2]) + "]"
    else:
        a.label, b.label = f"A: {a.label}", f"B: {b.label}"


def compare(a: str | Sequence[str | Path | RunFolder], b: str | Sequence[str | Path | RunFolder],
            *, metrics: Sequence[str] | None = None, method: str | None = None,
            alpha: float | None = None, norm_match: bool | None = None,
            dataset: str | None = None, n_boot: int = 2000, confidence: float = 0.95,
            seed: int = 0, common_seeds: bool = False) -> Comparison:
    """Resolve both sides (``method``/``alpha``/``norm_match``/``dataset`` filter both; a
    spec's own ``PATH:key=value,...`` wins) and compare them metric by metric."""
    filters = {"method": method, "alpha": alpha, "norm_match": norm_match, "dataset": dataset}
    sa = resolve_side(a, name="A", filters=filters)
    sb = resolve_side(b, name="B", filters=filters)
    rows = compare_runs(sa, sb, metrics=metrics, n_boot=n_boot, confidence=confidence,
                        seed=seed, common_seeds=common_seeds)
    return Comparison(sa, sb, rows)
