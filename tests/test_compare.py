"""symnoise compare on fake run folders whose answer is known."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from symnoise.cli import app
from symnoise.experiments.compare import (
    compare,
    compare_runs,
    group_by_seed,
    resolve_side,
    side_label,
)
from symnoise.experiments.records import assign_variants, grid_rows, load_run
from symnoise.run import RunFolder

REF = "text_davinci_003"


def make_run(root: Path, rel: str, *, method: str = "none", alpha: float = 5.0,
             norm_match: bool = True, seed: int = 1, lr: float = 5e-5,
             losses: dict[str, float] | None = None, correct: dict[str, bool] | None = None,
             prefs: dict[str, Any] | None = None, outputs: dict[str, str] | None = None,
             reference: str = REF, judge: str = "hf:judge", ref_text: str = "ref: {}",
             config: dict[str, Any] | None = None) -> Path:
    """A run folder as train + `symnoise eval` leave it, with the given per-example values
    (``config``: more fields of its recorded config).

    prefs: prompt -> preference (output_1 the reference, output_2 the model) or a list of
    (preference, model_is_output_1) rows for both orders.
    """
    run = RunFolder(root / rel)
    run.path.mkdir(parents=True)
    gen = run.path.name
    more = dict(config or {})  # run.json as train writes it: the noise nested
    noise = {"method": method, "alpha": alpha, "norm_match": norm_match,
             "symmetric_mode": "concat", "noise_on": "all"}
    noise = {**noise, **{k: more.pop(k) for k in list(more) if k in noise}, "seed": seed}
    run.write_info({
        "status": "completed",
        "config": {"model": "tiny", "data": "/data/alpaca.json", "noise": noise, "seed": seed,
                   "lr": lr, "output_dir": str(run.path), "extra": {}, **more},
        "noise": noise, "format": "alpaca",
    })
    run.eval_dir.mkdir()
    if losses is not None:
        rows = [{"id": k, "loss": v, "n_tokens": 10} for k, v in losses.items()]
        run.eval_file("heldout_losses").write_text("\n".join(json.dumps(r) for r in rows))
    if correct is not None:
        rows = [{"id": k, "family": "add", "correct": v, "formatted": True}
                for k, v in correct.items()]
        run.eval_file("synthetic_items").write_text("\n".join(json.dumps(r) for r in rows))
    if prefs is not None and outputs is None:
        outputs = {p: f"model answer to {p}" for p in prefs}
    if outputs is not None:
        run.write_eval_json("outputs", [{"instruction": p, "output": o, "generator": gen,
                                         "dataset": "x"} for p, o in outputs.items()])
    if prefs is not None:
        rows = []
        for p, value in prefs.items():
            for pref, model_first in (value if isinstance(value, list) else [(value, False)]):
                ref, mod = (ref_text.format(p), reference), (outputs[p], gen)
                (o1, g1), (o2, g2) = (mod, ref) if model_first else (ref, mod)
                rows.append({"instruction": p, "output_1": o1, "output_2": o2,
                             "generator_1": g1, "generator_2": g2, "preference": pref,
                             "annotator": judge})
        run.eval_file("judge").mkdir()
        (run.eval_file("judge") / "annotations.json").write_text(json.dumps(rows))
    return run.path


def ids(n: int, prefix: str = "ex") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def by_metric(rows: list) -> dict[str, Any]:
    return {m.metric: m for m in rows}


def test_identical_runs_cover_zero(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    losses = dict(zip(ids(200), rng.normal(2, 0.3, 200).tolist(), strict=True))
    correct = {k: bool(rng.random() < 0.6) for k in ids(200, "it")}
    prefs = {p: float(rng.choice([1.0, 1.5, 2.0])) for p in ids(100, "prompt ")}
    kw = dict(losses=losses, correct=correct, prefs=prefs)
    a = make_run(tmp_path, "none", **kw)
    b = make_run(tmp_path, "sym", method="symnoise", **kw)
    rows = by_metric(compare_runs([a], [b], n_boot=500, lc_n_boot=10))
    for metric in ("win_rate", "heldout_loss", "exact_answer", "output_length"):
        res = rows[metric].result
        assert res is not None, rows[metric].skipped
        assert res.diff == 0 and res.ci_low <= 0 <= res.ci_high and not res.significant
    assert rows["win_rate"].result.n == 100 and rows["heldout_loss"].result.n == 200
    lc = rows["lc_win_rate"].result  # identical sides: the refitted LC models agree
    assert lc is not None and abs(lc.diff) < 1e-9 and not lc.significant
    assert "SymNoise α5 − none win rate: 0.0 points [0.0, 0.0], not significant " \
           "(n = 100 prompts)" == rows["win_rate"].line()


def test_known_shifts_are_recovered_and_significant(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(2, 0.3, 300)
    prompts = ids(400, "p")
    a = make_run(tmp_path, "neft", method="uniform",
                 losses=dict(zip(ids(300), base.tolist(), strict=True)),
                 prefs={p: 2.0 if rng.random() < 0.5 else 1.0 for p in prompts},
                 outputs={p: "x" * 100 for p in prompts})
    b = make_run(tmp_path, "sym", method="symnoise",
                 losses=dict(zip(ids(300), (base + 0.1).tolist(), strict=True)),
                 prefs={p: 2.0 if rng.random() < 0.8 else 1.0 for p in prompts},
                 outputs={p: "x" * 130 for p in prompts})
    rows = by_metric(compare_runs([a], [b], metrics=["heldout_loss", "win_rate",
                                                      "output_length"]))
    loss = rows["heldout_loss"].result
    assert loss.diff == pytest.approx(0.1) and loss.significant
    assert loss.ci_low == pytest.approx(0.1) and loss.ci_high == pytest.approx(0.1)
    win = rows["win_rate"].result
    assert win.diff == pytest.approx(30, abs=6) and win.significant and win.ci_low > 15
    assert win.mean_a == pytest.approx(50, abs=6) and win.mean_b == pytest.approx(80, abs=6)
    assert rows["output_length"].result.diff == pytest.approx(30)
    line = rows["win_rate"].line()
    assert line.startswith("SymNoise α5 − NEFTune α5 win rate: +") and ", significant (n = 400 prompts)" in line
    assert "(lower is better)" in rows["heldout_loss"].line()


def test_mismatched_prompts_are_refused(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", prefs={p: 1.5 for p in ids(10, "p")})
    b = make_run(tmp_path, "b", method="symnoise",
                 prefs={p: 1.5 for p in ids(8, "p") + ["other 1", "other 2"]})
    with pytest.raises(ValueError) as exc:
        compare_runs([a], [b], metrics=["win_rate"])
    text = str(exc.value)
    assert "not evaluated on the same prompts" in text
    assert "2 of A" in text and "'p8'" in text and "'other 1'" in text


def test_mismatched_heldout_ids_are_refused(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", losses={"x": 1.0, "y": 1.0})
    b = make_run(tmp_path, "b", method="symnoise", losses={"x": 1.0, "z": 1.0})
    with pytest.raises(ValueError, match=r"1 of A \(.*\)'s 2 examples are not in B.*'y'"):
        compare_runs([a], [b], metrics=["heldout_loss"])


def test_different_reference_or_judge_is_refused(tmp_path: Path) -> None:
    prefs = {p: 1.5 for p in ids(5, "p")}
    a = make_run(tmp_path, "a", prefs=prefs)
    b = make_run(tmp_path, "b", method="symnoise", prefs=prefs, reference="gpt4")
    c = make_run(tmp_path, "c", method="symnoise", prefs=prefs, ref_text="other ref {}")
    d = make_run(tmp_path, "d", method="symnoise", prefs=prefs, judge="openai:gpt-4")
    with pytest.raises(ValueError, match="judged against .*text_davinci_003.*gpt4"):
        compare_runs([a], [b], metrics=["win_rate"])
    with pytest.raises(ValueError, match="5 prompts have different reference outputs"):
        compare_runs([a], [c], metrics=["win_rate"])
    with pytest.raises(ValueError, match="one judge"):
        compare_runs([a], [d], metrics=["win_rate"])


def test_side_differing_in_more_than_seed_is_refused(tmp_path: Path) -> None:
    make_run(tmp_path, "runs/sym-s1", method="symnoise", seed=1)
    make_run(tmp_path, "runs/sym-s2", method="symnoise", seed=2, lr=1e-4)
    with pytest.raises(ValueError) as exc:
        resolve_side(str(tmp_path / "runs/sym-*"), name="B")
    text = str(exc.value)
    assert "differ in more than the seed" in text and "lr: 5e-05 vs 0.0001" in text
    make_run(tmp_path, "dup/a", seed=3)
    make_run(tmp_path, "dup/b", seed=3)
    with pytest.raises(ValueError, match="seed 3 appears in more than one run"):
        resolve_side(str(tmp_path / "dup"))


def test_stratified_by_seed(tmp_path: Path) -> None:
    # Seed 1 has losses near 1, seed 2 near 4; B is A + 0.05 in both, plus small noise.
    rng = np.random.default_rng(2)
    for seed, level in ((1, 1.0), (2, 4.0)):
        base = rng.normal(level, 0.5, 150)
        make_run(tmp_path, f"sweep/none-s{seed}", seed=seed,
                 losses=dict(zip(ids(150), base.tolist(), strict=True)))
        make_run(tmp_path, f"sweep/sym-s{seed}", method="symnoise", seed=seed,
                 losses=dict(zip(ids(150), (base + 0.05 + rng.normal(0, 0.01, 150)).tolist(),
                                 strict=True)))
    result = compare(f"{tmp_path}/sweep:method=none", f"{tmp_path}/sweep:method=symnoise",
                     metrics=["heldout_loss"], n_boot=500)
    assert result.a.seeds == [1, 2] and result.b.seeds == [1, 2]
    res = result.metrics[0].result
    assert res.n_strata == 2 and res.n_per_stratum == (150, 150)
    assert res.diff == pytest.approx(0.05, abs=0.003) and res.significant
    # Pairing across seeds would mix the baselines (1 vs 4) and give a huge interval.
    assert res.ci_high - res.ci_low < 0.01
    assert result.metrics[0].n_text() == "n = 150 examples × 2 seeds"
    make_run(tmp_path, "other/sym-s7", method="symnoise", seed=7, losses={"e": 1.0})
    with pytest.raises(ValueError, match=r"seeds \[1, 2\].*seeds \[7\]"):
        compare(f"{tmp_path}/sweep:method=none", f"{tmp_path}/other")
    with pytest.raises(ValueError, match=r"seeds \[1, 2\].*seeds \[7\]"):
        compare(f"{tmp_path}/sweep:method=none", f"{tmp_path}/other", common_seeds=True)
    # Seed 2 of B only: refused unless common seeds are asked for, then paired on seed 2.
    only2 = f"{tmp_path}/sweep:method=symnoise,seed=2"
    with pytest.raises(ValueError, match="--common-seeds"):
        compare(f"{tmp_path}/sweep:method=none", only2)
    row = compare(f"{tmp_path}/sweep:method=none", only2, metrics=["heldout_loss"],
                  common_seeds=True, n_boot=100).metrics[0]
    assert row.result.n == 150 and row.result.n_strata == 1
    assert row.notes == ["paired on the common seeds only; left out: A seed(s) [1]"]


def test_both_orders_and_model_as_output_1(tmp_path: Path) -> None:
    # Two rows per prompt; in the swapped row the model is output_1 (preference 1 = model).
    prompts = ids(20, "p")
    a = make_run(tmp_path, "a", prefs={p: [(1.0, False), (2.0, True)] for p in prompts})
    b = make_run(tmp_path, "b", method="symnoise",
                 prefs={p: [(2.0, False), (1.0, True)] for p in prompts})
    res = compare_runs([a], [b], metrics=["win_rate"], n_boot=100)[0].result
    assert res.mean_a == 0 and res.mean_b == 100 and res.diff == 100
    c = make_run(tmp_path, "c", method="symnoise",
                 prefs={p: [(2.0, False), (1.5, True)] for p in prompts})
    assert compare_runs([a], [c], metrics=["win_rate"], n_boot=100)[0].result.mean_b == 75


def test_prompts_without_verdict_are_left_out_and_counted(tmp_path: Path) -> None:
    prompts = ids(10, "p")
    a = make_run(tmp_path, "a", prefs={p: 1.0 for p in prompts})
    b = make_run(tmp_path, "b", method="symnoise",
                 prefs={p: (None if p in ("p1", "p2") else 2.0) for p in prompts})
    row = compare_runs([a], [b], metrics=["win_rate"], n_boot=100)[0]
    assert row.result.n == 8 and row.result.diff == 100
    assert row.notes == ["seed 1: 2 of 10 prompts have no verdict on one side and are left out"]


def test_bad_rows_are_named(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", prefs={"p": 3.0})
    b = make_run(tmp_path, "b", method="symnoise", prefs={"p": 1.0})
    with pytest.raises(ValueError, match=r"annotations.json: entry 0: 'preference' must be in"):
        compare_runs([a], [b], metrics=["win_rate"])
    c = make_run(tmp_path, "c", losses={"x": 1.0})
    held = RunFolder(c).eval_file("heldout_losses")
    held.write_text('{"id": "x", "loss": 1, "n_tokens": 3}\n{"id": "x", "loss": 2, "n_tokens": 3}\n')
    d = make_run(tmp_path, "d", losses={"x": 1.0})
    with pytest.raises(ValueError, match=r"heldout_losses.jsonl row 2: id 'x' appears twice"):
        compare_runs([c], [d], metrics=["heldout_loss"])
    held.write_text('{"id": "x", "loss": 1}\n')
    with pytest.raises(ValueError, match=r"row 1: 'n_tokens' must be a finite number, got None"):
        compare_runs([c], [d], metrics=["heldout_loss"])


def test_heldout_loss_is_per_token(tmp_path: Path) -> None:
    # x (30 tokens) is 0.1 worse in B, y (10 tokens) 0.5 better: per token -0.05, per example -0.2.
    a = make_run(tmp_path, "a", losses={"x": 1.0, "y": 2.0})
    b = make_run(tmp_path, "b", method="symnoise", losses={"x": 1.1, "y": 1.5})
    for run, counts in ((a, (30, 10)), (b, (30, 10))):
        rows = [{"id": k, "loss": v, "n_tokens": n}
                for (k, v), n in zip(json_losses(run).items(), counts, strict=True)]
        RunFolder(run).eval_file("heldout_losses").write_text(
            "".join(json.dumps(r) + "\n" for r in rows))
    res = compare_runs([a], [b], metrics=["heldout_loss"], n_boot=200)[0].result
    assert res.diff == pytest.approx(-0.05)
    assert res.mean_a == pytest.approx((30 * 1.0 + 10 * 2.0) / 40)
    rows = [{"id": "x", "loss": 1.1, "n_tokens": 31}, {"id": "y", "loss": 1.5, "n_tokens": 10}]
    RunFolder(b).eval_file("heldout_losses").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"1 examples have different token counts.*'x': 30 vs 31"):
        compare_runs([a], [b], metrics=["heldout_loss"])


def json_losses(run: Path) -> dict[str, float]:
    rows = RunFolder(run).eval_file("heldout_losses").read_text().splitlines()
    return {r["id"]: r["loss"] for r in map(json.loads, rows)}


def test_missing_metric_is_skipped_with_reason(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", losses={"x": 1.0, "y": 2.0})
    b = make_run(tmp_path, "b", method="symnoise", losses={"x": 1.5, "y": 2.5},
                 correct={"i": True})
    rows = by_metric(compare_runs([a], [b], n_boot=100))
    assert rows["heldout_loss"].result.diff == pytest.approx(0.5)
    assert rows["exact_answer"].result is None
    assert "per-item exact-answer scores" in rows["exact_answer"].skipped
    assert str(a) in rows["exact_answer"].skipped
    assert rows["win_rate"].skipped and "judge annotations" in rows["win_rate"].skipped


def test_labels_and_grouping(tmp_path: Path) -> None:
    runs = [make_run(tmp_path, f"r{i}", method=m, alpha=al, norm_match=nm, seed=s)
            for i, (m, al, nm, s) in enumerate([("none", 5, True, 1), ("none", 10, False, 2),
                                                ("symnoise", 5, False, 1),
                                                ("uniform", 5, True, 1),
                                                ("uniform", 5, False, 2)])]
    labels = [side_label(RunFolder(r).read_info()) for r in runs]
    assert labels == ["none", "none", "SymNoise α5 (no norm-match)", "NEFTune α5", "NEFTune α5"]
    groups = group_by_seed(runs)
    # none ignores alpha/norm_match; uniform ignores norm_match: three settings.
    assert [[RunFolder(r).path.name for r in g] for g in groups] == [["r0", "r1"], ["r2"],
                                                                      ["r3", "r4"]]


@pytest.mark.parametrize("field, values, same, method", [
    ("logging_steps", (5, 10), True, "symnoise"), ("save_steps", (0, 50), True, "symnoise"),
    ("eval_steps", (None, 3), True, "symnoise"), ("lr", (5e-5, 1e-4), False, "symnoise"),
    ("max_eval_examples", (48, 16), False, "none"),
    ("symmetric_mode", ("concat", "sequential"), False, "symnoise"),
    ("symmetric_mode", ("concat", "sequential"), True, "uniform"),
    ("noise_on", ("all", "response"), False, "uniform"), ("alpha", (5.0, 10.0), True, "none")])
def test_report_and_compare_group_the_same_runs(tmp_path: Path, field: str, values: tuple,
                                                same: bool, method: str) -> None:
    """One rule (symnoise.config.model_setting): runs differing only in bookkeeping and the
    seed (or in a noise field their method does not use) are averaged by the report and
    paired by compare; any other field keeps them apart in both."""
    runs = [make_run(tmp_path, f"sweep/s{seed}", method=method, seed=seed,
                     losses={"x": float(seed)}, config={field: value})
            for seed, value in zip((1, 2), values, strict=True)]
    records = [load_run(r) for r in runs]
    assign_variants(records)
    cells = [row.runs["alpaca"] for row in grid_rows(records)]
    groups = group_by_seed(runs)
    if same:
        assert [[r.seed for r in cell] for cell in cells] == [[1, 2]]  # one table cell, averaged
        assert [[r.seed for r in g] for g in groups] == [[1, 2]]
        assert resolve_side(str(tmp_path / "sweep")).seeds == [1, 2]
    else:
        assert sorted(r.variant for r in records) == sorted(f"{field}={v}" for v in values)
        assert sorted([r.seed for r in cell] for cell in cells) == [[1], [2]]
        assert sorted([r.seed for r in g] for g in groups) == [[1], [2]]
        with pytest.raises(ValueError, match=f"differ in more than the seed.*{field}"):
            resolve_side(str(tmp_path / "sweep"))


def test_filter_values_are_typed_as_training_options(tmp_path: Path) -> None:
    for seed, nm in ((1, True), (2, False)):
        make_run(tmp_path, f"sweep/g-s{seed}", method="gaussian", seed=seed, norm_match=nm)
    side = resolve_side(f"{tmp_path / 'sweep'}:norm_match=no,alpha=5.0,seed=2")
    assert side.seeds == [2] and side.label == "Gaussian α5 (no norm-match)"
    for bad, phrase in (("alpha=five", "noise.alpha: value 'five' is not a valid number"),
                        ("norm_match=maybe", "noise.norm_match: value 'maybe' is not a valid b")):
        with pytest.raises(ValueError, match=f"^B \\(.*sweep:{bad}\\): {phrase}"):
            resolve_side(f"{tmp_path / 'sweep'}:{bad}", name="B")


def test_same_label_sides_name_what_differs(tmp_path: Path) -> None:
    a = make_run(tmp_path, "a", losses={"x": 1.0})
    b = make_run(tmp_path, "b", losses={"x": 1.0}, lr=1e-4)
    row = compare_runs([a], [b], metrics=["heldout_loss"], n_boot=10)[0]
    assert row.a_label == "none [lr=5e-05]" and row.b_label == "none [lr=0.0001]"


def test_cli_json_and_table(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    for seed in (1, 2):
        base = rng.normal(2, 0.2, 50)
        make_run(tmp_path, f"sweep/none-s{seed}", seed=seed,
                 losses=dict(zip(ids(50), base.tolist(), strict=True)))
        make_run(tmp_path, f"sweep/sym-a5-s{seed}", method="symnoise", seed=seed,
                 losses=dict(zip(ids(50), (base - 0.2).tolist(), strict=True)))
        make_run(tmp_path, f"sweep/sym-a10-s{seed}", method="symnoise", alpha=10, seed=seed)
    sweep = tmp_path / "sweep"
    args = ["compare", f"{sweep}:method=none", f"{sweep}:method=symnoise", "--alpha", "5",
            "--metric", "heldout_loss", "--n-boot", "300"]
    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    m = out["metrics"]["heldout_loss"]
    assert m["diff"] == pytest.approx(-0.2) and m["significant"] is True
    assert m["ci_low"] == pytest.approx(-0.2) and m["ci_high"] == pytest.approx(-0.2)
    assert m["n"] == 100 and m["n_seeds"] == 2
    assert out["a"]["label"] == "none" and out["b"]["label"] == "SymNoise α5"
    assert out["b"]["seeds"] == [1, 2]
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0
    assert ("SymNoise α5 − none held-out loss: \u22120.200 nats [\u22120.200, \u22120.200], "
            "significant (n = 50 examples × 2 seeds)") in table.output
    # Without the alpha filter side B mixes alpha 5 and 10: refused, exit code 2.
    bad = CliRunner().invoke(app, args[:3])
    assert bad.exit_code == 2 and "differ in more than the seed" in bad.output
    # Nothing comparable: exit code 1, the reason shown.
    none = CliRunner().invoke(app, [*args[:5], "--metric", "exact_answer"])
    assert none.exit_code == 1 and "skipped" in none.output
    unknown = CliRunner().invoke(app, [*args[:5], "--metric", "bleu"])
    assert unknown.exit_code == 2 and "unknown metric 'bleu'" in unknown.output
