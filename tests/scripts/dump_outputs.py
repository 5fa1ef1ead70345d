"""Dump the files the data, generate and evaluate modules write, on fixed inputs, so that a
refactor can be checked byte for byte: ``python tests/scripts/dump_outputs.py OUT_DIR`` then
``diff -r`` two dumps. Tiny random model (tests/conftest.py), no network."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conftest import make_model, make_tokenizer  # noqa: E402

from symnoise.data import prepare_dataset  # noqa: E402
from symnoise.data.synthetic import generate_suite  # noqa: E402
from symnoise.evaluate import harness, stats, tasks  # noqa: E402
from symnoise.experiments import demo, norms  # noqa: E402
from symnoise.generate import generate_outputs  # noqa: E402


def _json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True, default=str) + "\n")


def main(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)  # generate would resume from an earlier dump
    out.mkdir(parents=True)
    for seed in (0, 3):
        suite = generate_suite(seed, n_train=400, n_heldout=120)
        _json(out / f"suite_{seed}.json", {"train": suite.train, "heldout": suite.heldout})
    tok = make_tokenizer()
    for template in ("alpaca", "vicuna"):
        data = prepare_dataset("synthetic", tok, template=template, max_length=48,
                               synthetic_n=60)
        _json(out / f"prepared_{template}.json", {"features": data.features,
                                                  "summary": data.summary()})
    model = make_model(vocab_size=len(tok))
    heldout = generate_suite(0, n_train=0, n_heldout=20).heldout
    report = generate_outputs(model, heldout, out / "gen" / "outputs.json", tokenizer=tok,
                              max_new_tokens=8, batch_size=6, progress=False,
                              generator_name="tiny")
    for key in ("wall_time_s", "generation_time_s", "prompts_per_s", "tokens_per_s"):
        setattr(report, key, 0.0)
    (out / "gen" / "report.txt").write_text(report.format_table())
    meta = json.loads((out / "gen" / "outputs.meta.json").read_text())
    meta["report"] = report.to_dict()
    _json(out / "gen" / "meta.json", meta)
    (out / "gen" / "outputs.meta.json").unlink()
    rows = json.loads((out / "gen" / "outputs.json").read_text())
    answers = [r["answer"] if i % 3 else r["output"] for i, r in enumerate(rows)]
    scored = tasks.make_report(rows, answers, model="m", generator="tiny", seed=0)
    tasks.write_report(scored, out / "tasks")
    (out / "tasks" / "table.txt").write_text(scored.format_table())
    texts = {"a": [r["input"] + " " + r["instruction"] for r in heldout], "b": answers}
    table = {k: stats.text_stats(v, words=4) for k, v in texts.items()}
    _json(out / "stats.json", {k: s.to_dict() for k, s in table.items()})
    (out / "stats.md").write_text(stats.format_stats_table(table))
    _json(out / "wilson.json", [stats.wilson_interval(k, 20) for k in range(21)])
    lm_out = {
        "results": {"sub_a": {"acc,none": 0.5, "acc_stderr,none": 0.1},
                    "sub_b": {"acc,none": 0.25, "acc_stderr,none": "N/A"}},
        "groups": {"grp": {"acc,none": 0.4, "acc_stderr,none": 0.05}},
        "group_subtasks": {"grp": ["sub_a", "sub_b"]}, "n-shot": {"sub_a": 5, "grp": 5},
        "n-samples": {"sub_a": {"effective": 4}, "sub_b": {"effective": 6}}}
    result = harness.HarnessResult("m", harness.rows_from_lm_eval(
        lm_out, harness.TaskPlan("grp", 5, "acc")), {"dtype": "float32", "limit": 3})
    harness.write_results(result, out / "harness")
    analysis = norms.norm_analysis((16, 64), (10, 100), seed=1)
    (out / "norms.md").write_text(norms.format_norms_table(analysis))
    _json(out / "demo.json", demo.demo_experiment("d", steps=6))
    (out / "demo_table.txt").write_text(demo.format_demo_table([
        {"method": "none", "alpha": 0, "status": "done", "clean_loss": 1.23456,
         "synthetic_score": 0.5, "length": 12.0, "rep_2": None},
        {"method": "symnoise", "alpha": 5, "status": "done", "clean_loss": 1.2}]))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
