"""symnoise report: tables from fake run folders hold exactly their numbers, in the right
cells; averages; '-' for missing; CSV round trip; PNG figures; paper rows; CLI."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from symnoise.experiments import paper_numbers
from symnoise.experiments.records import setting_label
from symnoise.experiments.report import build_report
from symnoise.run import find_runs

PNG = b"\x89PNG\r\n\x1a\n"
USABLE = {"accuracy": 0.9, "accuracy_ci": [0.8, 0.95], "position_bias": 0.52, "n_pairs": 40,
          "usable": True}


def make_run(
    root: Path,
    rel: str,
    *,
    method: str,
    alpha: float = 5.0,
    norm_match: bool = True,
    dataset: str = "alpaca",
    model: str = "tiny-llama",
    seed: int = 0,
    status: str = "completed",
    train_loss: float | None = 1.5,
    clean_loss: float | None = 1.7,
    win_rate: float | None = None,
    se: float | None = 1.0,
    judge_avg_length: float | None = None,
    reference: str = "text_davinci_003",
    stats: dict[str, float] | None = None,
    train_stats: dict[str, float] | None = None,
    synthetic: tuple[float, float, float, int] | None = None,
    harness: dict[str, float] | None = None,
    metrics: list[dict[str, Any]] | None = None,
    judge_check: dict[str, Any] | None = USABLE,
    config: dict[str, Any] | None = None,
) -> Path:
    """A run folder as train.py + symnoise eval leave it, with the given numbers."""
    path = root / rel
    path.mkdir(parents=True)
    data = "synthetic" if dataset == "synthetic" else f"/data/{dataset}.json"
    info = {
        "status": status,
        "config": {"model": model, "data": data, "format": "auto", "method": method,
                   "alpha": alpha, "norm_match": norm_match, "seed": seed, "extra": {},
                   **(config or {})},
        "noise": {"method": method, "alpha": alpha, "norm_match": norm_match,
                  "symmetric_mode": "concat", "seed": seed},
        "template": "alpaca",
        "format": "alpaca" if dataset == "synthetic" else dataset,
        "global_step": 40,
        "train_loss": train_loss,
        "final_clean_eval_loss": clean_loss,
    }
    (path / "run.json").write_text(json.dumps(info))
    if metrics is not None:
        (path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    ev = path / "eval"
    if win_rate is not None:
        (ev / "judge").mkdir(parents=True)
        row = {"win_rate": win_rate, "standard_error": se, "n": 805, "n_total": 805,
               "avg_length": judge_avg_length, "judge": "openai:gpt-4", "reference": reference}
        (ev / "judge" / "leaderboard.json").write_text(json.dumps({path.name: row}))
        if judge_check is not None:
            (ev / "judge_check.json").write_text(json.dumps(judge_check))
    if stats is not None or train_stats is not None:
        ev.mkdir(exist_ok=True)
        doc = {"words": 50, "outputs": stats or {},
               "train_data": train_stats if train_stats is not None
               else {"skipped": "built-in synthetic data, not a file"}}
        (ev / "stats.json").write_text(json.dumps(doc))
    if synthetic is not None:
        ev.mkdir(exist_ok=True)
        acc, lo, hi, n = synthetic
        (ev / "synthetic_scores.json").write_text(json.dumps({
            "n": n, "overall": {"n": n, "correct": round(acc * n), "accuracy": acc,
                                "accuracy_ci95": [lo, hi], "format_rate": 0.5},
            "per_family": {}}))
    if harness is not None:
        ev.mkdir(exist_ok=True)
        (ev / "harness.json").write_text(json.dumps({"config": {"limit": None},
                                                     "summary": harness}))
    return path


def md_table(markdown: str) -> dict[str, list[str]]:
    """A Markdown table as {first cell: other cells}."""
    rows = {}
    for line in markdown.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def grid(tmp_path) -> Path:
    """2 datasets x 3 methods; symnoise on sharegpt has no win rate; uniform has 2 seeds on
    alpaca."""
    root = tmp_path / "runs"
    make_run(root, "alpaca/none", method="none", alpha=0.0, win_rate=30.25,
             stats={"avg_chars": 300.5, "avg_words": 55.25, "rep_2": 4.125},
             train_stats={"avg_chars": 270.0, "avg_words": 45.0, "rep_2": 1.5},
             harness={"arc_challenge": 0.5, "hellaswag": 0.75},
             metrics=[{"step": 5, "train_loss": 2.0}, {"step": 10, "clean_eval_loss": 1.9},
                      {"step": 10, "train_loss": 1.8}])
    make_run(root, "alpaca/uniform-s0", method="uniform", seed=0, win_rate=60.0,
             stats={"avg_chars": 1000.0, "avg_words": 180.0, "rep_2": 6.0},
             synthetic=(0.25, 0.2, 0.31, 240),
             metrics=[{"step": 5, "train_loss": 2.1}, {"step": 10, "clean_eval_loss": 1.8}])
    make_run(root, "alpaca/uniform-s1", method="uniform", seed=1, win_rate=65.0,
             stats={"avg_chars": 1100.0, "avg_words": 190.0, "rep_2": 7.0})
    make_run(root, "alpaca/symnoise", method="symnoise", win_rate=70.5, judge_avg_length=1234.0)
    # method none keeps the config's default alpha (5): still the same "none" row
    make_run(root, "sharegpt/none", method="none", alpha=5.0, dataset="sharegpt", win_rate=68.5)
    make_run(root, "sharegpt/uniform", method="uniform", alpha=10.0, dataset="sharegpt",
             win_rate=76.0)
    make_run(root, "sharegpt/symnoise", method="symnoise", alpha=10.0, dataset="sharegpt",
             train_loss=1.25, clean_loss=1.375)
    return root


def test_table1_cells_averages_missing_and_csv(grid, tmp_path):
    res = build_report(grid, tmp_path / "out")
    t1 = res.tables["table1"]
    assert t1.header == ["method", "alpaca", "sharegpt", "Average"]
    rows = md_table(t1.to_markdown())
    assert rows["none"] == ["30.25", "68.50", f"{(30.25 + 68.5) / 2:.2f}"]
    # uniform: alpha 5 on alpaca, 10 on sharegpt -> one row, alpha in each cell; 2 seeds
    uni = rows["uniform (α per cell)"]
    assert uni[0] == f"62.50 ± {statistics.stdev([60.0, 65.0]):.2f} (α=5, n=2)"
    assert uni[1] == "76.00 (α=10)"
    assert uni[2] == f"{(62.5 + 76.0) / 2:.2f}"
    # symnoise has no win rate on sharegpt: '-' and no Average
    sym = rows["symnoise (α per cell, norm-matched)"]
    assert sym == ["70.50 (α=5)", "-", "-"]
    assert list(rows) == ["none", "uniform (α per cell)", "symnoise (α per cell, norm-matched)"]

    data = read_csv(res.files["table1_csv"])
    by = {r["row"]: r for r in data}
    assert float(by["none"]["alpaca"]) == 30.25
    assert float(by["none"]["average"]) == pytest.approx(49.375)
    assert float(by["uniform (α per cell)"]["alpaca"]) == pytest.approx(62.5)
    assert by["uniform (α per cell)"]["alphas"] == "alpaca:5;sharegpt:10"
    assert by["symnoise (α per cell, norm-matched)"]["sharegpt"] == "-"
    assert by["symnoise (α per cell, norm-matched)"]["average"] == "-"
    assert {r["source"] for r in data} == {"runs"}  # a tiny model: no paper rows inside

    md = (tmp_path / "out" / "report.md").read_text()
    assert t1.to_markdown() in md


def test_ablation_lengths_openllm_synthetic_runs(grid, tmp_path):
    res = build_report(grid, tmp_path / "out")
    rows = res.tables["ablation"].rows
    first = {(r[0], r[1]): r for r in rows}
    sd_wr, sd_ch = statistics.stdev([60.0, 65.0]), statistics.stdev([1000.0, 1100.0])
    assert first[("alpaca", "uniform α=5")][5:] == [f"62.50 ± {sd_wr:.2f} (n=2)",
                                                     f"1050.0 ± {sd_ch:.1f} (n=2)", "2"]
    # avg chars falls back to the judge's average length when there is no stats.json
    assert first[("alpaca", "symnoise α=5/√3")][5:] == ["70.50", "1234.0", "1"]
    assert first[("sharegpt", "symnoise α=10/√3")][5:] == ["-", "-", "1"]
    assert first[("alpaca", "none")][4] == "-"  # norm matching does not apply
    ab_csv = read_csv(res.files["ablation_csv"])
    assert float(next(r for r in ab_csv if r["setting"] == "uniform α=5")["avg_chars"]) == 1050.0

    chars = md_table(res.tables["lengths_chars"].to_markdown())
    assert chars["training data"] == ["270.0", "-"]
    assert chars["none"] == ["300.5", "-"]
    assert chars["uniform (α per cell)"] == [f"1050.0 ± {sd_ch:.1f} (α=5, n=2)", "-"]
    rep = md_table(res.tables["lengths_rep2"].to_markdown())
    assert rep["none"][0] == "4.12" or rep["none"][0] == "4.13"  # 4.125 rounds either way
    words = read_csv(res.files["lengths_words_csv"])
    assert float(next(r for r in words if r["row"] == "none")["alpaca"]) == 55.25

    ol = md_table(res.tables["openllm"].to_markdown())
    assert ol["alpaca/none"][2:] == ["50.00", "75.00", "62.50", "-"]
    assert len(ol) == 1  # runs without harness results are not rows

    syn = md_table(res.tables["synthetic"].to_markdown())
    assert syn["alpaca/uniform-s0"][2:5] == ["25.0", "[20.0, 31.0]", "240"]
    runs = md_table(res.tables["runs"].to_markdown())
    assert runs["sharegpt/symnoise"][-2:] == ["1.3750", "1.2500"]
    assert len(runs) == 7


def test_figures_are_pngs_and_paper_rows_separate(grid, tmp_path):
    res = build_report(grid, tmp_path / "out")
    for name in ("fig_win_rate.png", "fig_win_rate_vs_length.png", "fig_loss.png"):
        path = tmp_path / "out" / name
        assert path.read_bytes()[:8] == PNG, name
        assert name in res.figures
        assert f"]({name})" in res.files["report_md"].read_text()
    assert not res.paper_comparable
    md = res.files["report_md"].read_text()
    assert "## Published numbers (for reference only, not comparable)" in md
    paper = md_table(res.tables["paper_win_rates"].to_markdown())
    assert paper["paper (SymNoise, abstract): +SymNoise"] == ["69.04", "-", "-", "-", "-"]
    assert paper["paper (NEFTune, Fig. 1): +NEFT"] == ["64.7", "79.6", "76.3", "70.6", "72.8"]


def test_paper_rows_inside_table1_when_setting_matches(tmp_path):
    root = tmp_path / "runs"
    for method, wr in (("none", 31.0), ("uniform", 62.0), ("symnoise", 66.0)):
        make_run(root, method, method=method, model="meta-llama/Llama-2-7b-hf", win_rate=wr)
    res = build_report(root)
    assert res.output_dir == root / "report"
    assert res.paper_comparable
    rows = md_table(res.tables["table1"].to_markdown())
    assert rows["symnoise α=5/√3"] == ["66.00", "66.00"]
    assert rows["paper (SymNoise, abstract): LLaMA-2-7B"] == ["29.79", "-"]
    assert rows["paper (SymNoise, abstract): +NEFTune"] == ["64.69", "-"]
    assert rows["paper (SymNoise, abstract): +SymNoise"] == ["69.04", "-"]
    assert rows["paper (NEFTune, Fig. 1): LLaMA-2 (7B)"] == ["29.8", "-"]
    data = read_csv(res.files["table1_csv"])
    assert {r["source"] for r in data} == {"runs", "paper"}
    assert "for reference only" not in res.files["report_md"].read_text()
    # every published number in the module is one of its stated cells
    for pr in paper_numbers.WIN_RATE_ROWS:
        assert set(pr.values) <= set(paper_numbers.PAPER_DATASETS)


def test_alpha_sweep_splits_rows_and_norm_match_ablation(tmp_path):
    root = tmp_path / "sweep"
    make_run(root, "a5", method="symnoise", alpha=5.0, win_rate=50.0)
    make_run(root, "a10", method="symnoise", alpha=10.0, win_rate=55.0)
    make_run(root, "g5", method="gaussian", alpha=5.0, norm_match=False, win_rate=40.0)
    make_run(root, "g5n", method="gaussian", alpha=5.0, norm_match=True, win_rate=45.0)
    res = build_report(root)
    rows = md_table(res.tables["table1"].to_markdown())
    assert rows["symnoise α=5/√3"] == ["50.00", "50.00"]
    assert rows["symnoise α=10/√3"] == ["55.00", "55.00"]
    assert rows["gaussian α=5"] == ["40.00", "40.00"]
    assert rows["gaussian α=5/√3"] == ["45.00", "45.00"]
    labels = [r[1] for r in res.tables["ablation"].rows]
    assert labels == ["gaussian α=5", "gaussian α=5/√3", "symnoise α=5/√3", "symnoise α=10/√3"]


def test_no_win_rate_plots_synthetic_and_says_so(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "none", method="none", alpha=0.0, dataset="synthetic",
             synthetic=(0.125, 0.08, 0.19, 240), stats={"avg_chars": 20.0, "avg_words": 4.0})
    make_run(root, "sym", method="symnoise", dataset="synthetic",
             synthetic=(0.375, 0.3, 0.44, 240), stats={"avg_chars": 25.0, "avg_words": 5.0})
    res = build_report(root)
    assert (res.output_dir / "fig_win_rate.png").read_bytes()[:8] == PNG
    caption = res.figures["fig_win_rate.png"]
    assert "No run has a win rate" in caption and "Exact-answer accuracy" in caption
    assert "n = 240 items" in caption and "95% Wilson" in caption
    # one seed and no per-example outputs: the length has no interval, so no scatter
    assert "fig_win_rate_vs_length.png" not in res.figures
    assert any("no length figure" in n for n in res.notes)
    assert "fig_loss.png" not in res.figures  # no metrics.jsonl
    assert any("no loss figure" in n for n in res.notes)
    assert "Table 1: win rate" not in res.files["report_md"].read_text()  # no win rate
    syn = md_table(res.tables["synthetic"].to_markdown())
    assert syn["sym"][2:5] == ["37.5", "[30.0, 44.0]", "240"]


def test_bad_files_are_reported_not_dropped(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "ok", method="uniform", win_rate=61.0,
             metrics=[{"step": 1, "train_loss": 2.0}])
    with (root / "ok" / "metrics.jsonl").open("a") as fh:
        fh.write("{torn\n")
    (root / "broken").mkdir()
    (root / "broken" / "run.json").write_text("{not json")
    bad_eval = make_run(root, "badeval", method="none", alpha=0.0)
    (bad_eval / "eval").mkdir()
    (bad_eval / "eval" / "stats.json").write_text("[")
    res = build_report(root)
    assert [s["path"] for s in res.skipped] == [str(root / "broken")]
    assert "not valid JSON" in res.skipped[0]["reason"]
    notes = "\n".join(res.notes)
    assert "metrics.jsonl: line 2: invalid JSON" in notes
    assert "stats.json: unreadable" in notes
    assert "badeval" in notes  # no evaluation results
    md = res.files["report_md"].read_text()
    assert "skipped" in md and "broken" in md


def test_find_runs_nested_and_errors(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "a/b/c", method="none", alpha=0.0)
    make_run(root, "d", method="uniform")
    (root / "d" / "checkpoints" / "checkpoint-5").mkdir(parents=True)
    (root / "d" / "checkpoints" / "checkpoint-5" / "run.json").write_text("{}")
    assert [p.path.relative_to(root).as_posix() for p in find_runs(root)] == ["a/b/c", "d"]
    with pytest.raises(FileNotFoundError, match="runs folder not found"):
        build_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no run folder"):
        build_report(tmp_path / "empty")


def test_setting_label():
    assert setting_label("none", 0.0, True) == "none"
    assert setting_label("uniform", 5.0, True) == "uniform α=5"
    assert setting_label("bernoulli", 15.0, True) == "bernoulli α=15/√3"
    assert setting_label("bernoulli", 2.5, False) == "bernoulli α=2.5"


def test_cli_report_json(grid, tmp_path):
    from typer.testing import CliRunner

    from symnoise.cli import app

    out = tmp_path / "cli-out"
    result = CliRunner().invoke(app, ["report", str(grid), "--output-dir", str(out), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["output_dir"] == str(out)
    assert len(doc["runs"]) == 7
    t1 = doc["tables"]["table1"]
    none_row = next(r for r in t1["data"] if r[0] == "none")
    assert none_row[-1] == pytest.approx(statistics.fmean([30.25, 68.5]))
    text = CliRunner().invoke(app, ["report", str(grid), "--output-dir", str(out)])
    assert text.exit_code == 0
    assert "Table 1" in text.stdout and "report.md" in text.stdout
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert bad.exit_code == 2
    assert "runs folder not found" in bad.output


def test_only_seeds_are_averaged(tmp_path):
    """Two seeds of one setting share a cell (mean ± sd, n); a run with another lr of the
    same method gets its own row, labelled with what differs, and is not averaged in."""
    root = tmp_path / "runs"
    make_run(root, "u-s0", method="uniform", seed=0, win_rate=50.0, config={"lr": 5e-5})
    make_run(root, "u-s1", method="uniform", seed=1, win_rate=54.0, config={"lr": 5e-5})
    make_run(root, "u-lr", method="uniform", seed=0, win_rate=90.0, config={"lr": 1e-3})
    res = build_report(root)
    rows = md_table(res.tables["table1"].to_markdown())
    sd = statistics.stdev([50.0, 54.0])
    assert rows["uniform α=5 [lr=5e-05]"][0] == f"52.00 ± {sd:.2f} (n=2)"
    assert rows["uniform α=5 [lr=0.001]"][0] == "90.00"
    data = {r["row"]: r for r in read_csv(res.files["table1_csv"])}
    assert float(data["uniform α=5 [lr=5e-05]"]["alpaca sd"]) == pytest.approx(sd)
    assert data["uniform α=5 [lr=5e-05]"]["alpaca n"] == "2"
    ab = {r[1]: r for r in res.tables["ablation"].rows}
    assert ab["uniform α=5 [lr=0.001]"][-1] == "1"


def test_win_rates_from_unchecked_or_unusable_judges_are_marked(tmp_path):
    root = tmp_path / "runs"
    board = {"discrete_win_rate": 61.0, "length_controlled_winrate": 48.5,
             "lc_standard_error": 1.25, "lc_variant": "no-instruction-difficulty (offline)"}
    make_run(root, "checked", method="none", alpha=0.0, win_rate=40.0)
    make_run(root, "unchecked", method="uniform", win_rate=60.0, judge_check=None)
    bad = {**USABLE, "usable": False, "accuracy": 0.55, "position_bias": 0.97}
    make_run(root, "biased", method="symnoise", win_rate=70.0, judge_check=bad)
    lb = root / "unchecked" / "eval" / "judge" / "leaderboard.json"
    doc = json.loads(lb.read_text())
    doc["unchecked"].update(board)
    lb.write_text(json.dumps(doc))
    res = build_report(root)
    rows = md_table(res.tables["table1"].to_markdown())
    assert rows["none"][0] == "40.00"  # a usable judge: shown as it is
    assert rows["uniform α=5"][0] == "60.00†"
    assert rows["symnoise α=5/√3"][0] == "70.00‡"
    assert "†" in res.tables["table1"].note and "‡" in res.tables["table1"].note
    judged = res.tables["judged"]
    assert judged.header[5:] == ["win_rate", "standard_error", "n_total", "discrete_win_rate",
                                 "length_controlled_winrate", "lc_standard_error",
                                 "lc_variant", "judge check"]
    jrows = md_table(judged.to_markdown())
    assert jrows["unchecked"][4:11] == ["60", "1", "805", "61", "48.50", "1.25",
                                        "no-instruction-difficulty (offline)"]
    assert jrows["unchecked"][-1] == "† not checked"
    assert jrows["biased"][-1].startswith("‡ not usable: accuracy 55.0% [80.0, 95.0]")
    assert "position bias 97.0%" in jrows["biased"][-1]
    assert jrows["checked"][-1].startswith("usable: accuracy 90.0%")
    assert "discrete_win_rate" not in md_table(judged.to_markdown())  # header is not a row
    notes = "\n".join(res.notes)
    assert "2 win rate(s) come from a judge that was not checked or not usable" in notes
    assert "unchecked" in notes and "biased" in notes
    md = res.files["report_md"].read_text()
    assert judged.to_markdown() in md


def test_published_tables_and_matching_reference_rows(tmp_path):
    """Every published table (T1-T5) is in the report with its judge and versions; runs
    whose setting matches a published one get that number beside theirs."""
    root = tmp_path / "runs"
    llama = "meta-llama/Llama-2-7b-hf"
    make_run(root, "sym-s0", method="symnoise", seed=0, model=llama, win_rate=66.0,
             stats={"avg_chars": 1000.0, "avg_words": 170.0, "rep_2": 1.5})
    make_run(root, "sym-s1", method="symnoise", seed=1, model=llama, win_rate=70.0,
             stats={"avg_chars": 1100.0, "avg_words": 180.0, "rep_2": 2.5})
    make_run(root, "tiny", method="symnoise", model="tiny-llama", win_rate=50.0,
             config={"lr": 1e-3})
    res = build_report(root)
    for key, pt in paper_numbers.PAPER_TABLES.items():
        t = res.tables[f"paper_{key}"]
        assert pt.judge is None or f"judge {pt.judge}" in t.title
        assert t.rows and res.files[f"paper_{key}_csv"].is_file()
        assert t.title in res.files["report_md"].read_text()
    m = res.tables["paper_matches"]
    got = {(r[0], r[2], r[4]): r for r in m.rows}
    sd = statistics.stdev([66.0, 70.0])
    t1 = got[("symnoise α=5/√3 [model=meta-llama/Llama-2-7b-hf]", "win_rate", "69.04")]
    assert t1[3] == f"68.00 ± {sd:.2f} (n=2)" and t1[6] == "GPT-4" and t1[7] == "v1, v2"
    assert t1[5].startswith("T1 (judge GPT-4")
    t3 = got[("symnoise α=5/√3 [model=meta-llama/Llama-2-7b-hf]", "win_rate", "64.92")]
    assert t3[6] == "ChatGPT"
    t4 = got[("symnoise α=5/√3 [model=meta-llama/Llama-2-7b-hf]", "avg_words", "176.26")]
    assert t4[3].startswith("175.00 ± ")
    assert not any("tiny" in r[0] for r in m.rows)  # another model: no published number


def _annotate(run: Path, prefs: dict[str, float], judge: str = "openai:gpt-4") -> None:
    """AlpacaEval annotations (output_1 the reference, output_2 the model; preference 2:
    the model wins) and the outputs they judged."""
    gen = run.name
    outputs = [{"instruction": p, "output": f"answer {p}", "generator": gen} for p in prefs]
    (run / "eval" / "outputs.json").write_text(json.dumps(outputs))
    rows = [{"instruction": p, "output_1": f"ref {p}", "output_2": f"answer {p}",
             "generator_1": "text_davinci_003", "generator_2": gen, "preference": v,
             "annotator": judge} for p, v in prefs.items()]
    (run / "eval" / "judge" / "annotations.json").write_text(json.dumps(rows))


def test_table1_differences_from_no_noise_with_intervals(tmp_path):
    root = tmp_path / "runs"
    prompts = [f"q{i}" for i in range(40)]
    for seed in (0, 1):
        none = make_run(root, f"none-s{seed}", method="none", seed=seed, win_rate=25.0)
        _annotate(none, {p: 2.0 if i % 4 == 0 else 1.0 for i, p in enumerate(prompts)})
        same = make_run(root, f"uni-s{seed}", method="uniform", seed=seed, win_rate=25.0)
        _annotate(same, {p: 2.0 if i % 4 == 0 else 1.0 for i, p in enumerate(prompts)})
        better = make_run(root, f"sym-s{seed}", method="symnoise", seed=seed, win_rate=75.0)
        _annotate(better, {p: 1.0 if i % 4 == 0 else 2.0 for i, p in enumerate(prompts)})
    res = build_report(root)
    t = res.tables["table1_vs_none"]
    rows = md_table(t.to_markdown())
    assert rows["uniform α=5"] == ["+0.0 [+0.0, +0.0]"]  # identical answers: no difference
    sym = rows["symnoise α=5/√3"][0]
    assert sym.startswith("+50.0 [") and sym.endswith("]*")  # +50 points, significant
    data = {r["row"]: r for r in read_csv(res.files["table1_vs_none_csv"])}
    assert float(data["symnoise α=5/√3"]["diff"]) == pytest.approx(50.0)
    assert float(data["symnoise α=5/√3"]["ci_low"]) > 0
    assert data["symnoise α=5/√3"]["significant"] == "True"
    assert data["symnoise α=5/√3"]["n"] == "80"  # 40 prompts x 2 seeds
    assert data["uniform α=5"]["significant"] == "False"
    assert t.to_markdown() in res.files["report_md"].read_text()
    # the headline: the win rate per seed from the annotations (25 and 75 points), mean ±
    # sd over the two seeds, and the same paired difference
    head = {(r[0], r[1]): r[2:] for r in res.tables["measured"].rows}
    wr = head[("win rate (%)", "symnoise α=5/√3")]
    assert wr[:4] == ["0, 1", "40 × 2", "75.0 ± 0.0", "mean ± sd over 2 seeds"]
    assert wr[4] == sym


# -- the headline: what the runs measured, with intervals ------------------------------------
def _per_example(run: Path, *, correct: list[bool], lengths: list[int],
                 losses: list[tuple[float, int]]) -> None:
    """The per-example files symnoise eval writes: synthetic items, outputs, held-out losses."""
    ev = run / "eval"
    ev.mkdir(exist_ok=True)
    (ev / "synthetic_items.jsonl").write_text("".join(
        json.dumps({"id": f"item{i}", "correct": c}) + "\n" for i, c in enumerate(correct)))
    (ev / "outputs.json").write_text(json.dumps([
        {"instruction": f"q{i}", "output": "x" * n, "generator": run.name}
        for i, n in enumerate(lengths)]))
    (ev / "heldout_losses.jsonl").write_text("".join(
        json.dumps({"id": f"ex{i}", "loss": lo, "n_tokens": t}) + "\n"
        for i, (lo, t) in enumerate(losses)))


def _wilson(k: int, n: int) -> tuple[float, float]:
    from symnoise.evaluate.stats import wilson_interval

    return wilson_interval(k, n)


@pytest.fixture
def measured_runs(tmp_path) -> Path:
    """none and symnoise on the synthetic suite, one seed, every per-example file; symnoise
    answers 30 of 36 items right where none answers 6."""
    root = tmp_path / "runs"
    for name, method, right in (("none", "none", 6), ("sym", "symnoise", 30)):
        correct = [i < right for i in range(36)]
        lo, hi = _wilson(right, 36)
        run = make_run(root, name, method=method, dataset="synthetic", clean_loss=1.0,
                       synthetic=(right / 36, lo, hi, 36),
                       stats={"avg_chars": 10.0 if method == "none" else 20.0, "rep_2": 3.0,
                              "n_kept": 36},
                       metrics=[{"step": 2, "train_loss": 2.0}, {"step": 4, "clean_eval_loss": 1.0}])
        _per_example(run, correct=correct, lengths=[10 if method == "none" else 20 + i % 2
                                                    for i in range(36)],
                     losses=[(1.0 + (0.0 if method == "none" else -0.5) + 0.01 * i, 3)
                             for i in range(36)])
    return root


def test_report_opens_with_what_was_measured(measured_runs):
    res = build_report(measured_runs)
    md = res.files["report_md"].read_text()
    body = md.split("\n## ", 1)[1]
    assert body.startswith("What the runs measured")  # the first section
    rows = {(r[0], r[1]): r[2:] for r in res.tables["measured"].rows}
    metrics = list(dict.fromkeys(r[0] for r in res.tables["measured"].rows))
    assert metrics == ["clean held-out loss (nats/token, lower is better)",
                       "exact-answer accuracy (%)", "output length (characters)",
                       "2-gram repetition (%)"]
    # exact-answer accuracy: the Wilson interval, n items, the paired difference from none
    lo, hi = _wilson(30, 36)
    sym = rows[("exact-answer accuracy (%)", "symnoise α=5/√3")]
    assert sym[:4] == ["0", "36", f"{100 * 30 / 36:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]",
                       "95% Wilson"]
    assert sym[4].startswith("+66.7 [") and sym[4].endswith("]*")  # 24 more of 36, significant
    assert rows[("exact-answer accuracy (%)", "none")][4] == "(baseline)"
    # the loss: token-weighted mean of the per-example losses, bootstrap interval
    loss = rows[("clean held-out loss (nats/token, lower is better)", "symnoise α=5/√3")]
    value = statistics.fmean(0.5 + 0.01 * i for i in range(36))
    assert loss[2].startswith(f"{value:.4f} [") and loss[3] == "95% bootstrap"
    assert loss[4].startswith("-0.5000 [") and loss[4].endswith("]*")
    # repetition: one run, a corpus statistic: no interval and no paired difference
    assert rows[("2-gram repetition (%)", "symnoise α=5/√3")][2:] == ["3.00", "none", "-"]
    data = {(r["metric"], r["method"]): r for r in read_csv(res.files["measured_csv"])}
    ex = data[("exact_answer", "symnoise")]
    assert float(ex["low"]) == pytest.approx(100 * lo) and ex["significant"] == "True"
    # the metric no run has: one line saying how to get it, and no win-rate tables
    assert res.missing == ["No win rates: `symnoise eval RUN --judge openai:MODEL --base-url "
                           "URL` (or `--judge hf:PATH`), or `symnoise demo --judge ...`."]
    assert res.missing[0] in md
    assert "Table 1: win rate" not in md and "win rate" not in res.tables["ablation"].title
    assert "| - | - |" not in md.split("## Noise ablation")[0]  # no columns of dashes
    # the terminal says the same, headline first
    text = res.format_table()
    assert text.index("What the runs measured") < text.index("No win rates")
    assert "Table 1: win rate" not in text
    # one sentence per metric, with its intervals and the differences from none
    assert len(res.summary) == 4
    acc = next(s for s in res.summary if s.startswith("Exact-answer accuracy"))
    assert "n = 36 items per run" in acc and "95% Wilson" in acc
    assert f"symnoise α=5/√3 83.3 [{100 * lo:.1f}, {100 * hi:.1f}]" in acc
    assert "difference from none (paired 95% bootstrap): symnoise α=5/√3 +66.7 [" in acc
    assert acc.endswith("(significant).")


def test_seed_groups_show_mean_and_sd(tmp_path):
    root = tmp_path / "runs"
    for seed, acc in ((0, 0.25), (1, 0.5)):
        make_run(root, f"u-s{seed}", method="uniform", seed=seed, dataset="synthetic",
                 synthetic=(acc, 0.1, 0.9, 40), clean_loss=1.0 + seed)
    res = build_report(root)
    rows = {(r[0], r[1]): r[2:] for r in res.tables["measured"].rows}
    sd = statistics.stdev([25.0, 50.0])
    assert rows[("exact-answer accuracy (%)", "uniform α=5")][:4] == [
        "0, 1", "40 × 2", f"37.5 ± {sd:.1f}", "mean ± sd over 2 seeds"]
    # no per-example losses: the runs' own clean losses, mean ± sd
    loss = rows[("clean held-out loss (nats/token, lower is better)", "uniform α=5")]
    assert loss[2] == f"1.5000 ± {statistics.stdev([1.0, 2.0]):.4f}"
    assert rows[("exact-answer accuracy (%)", "uniform α=5")][4] == "-"  # no none row


def test_figures_carry_intervals_and_captions_name_them(measured_runs):
    res = build_report(measured_runs)
    for name in ("fig_win_rate.png", "fig_win_rate_vs_length.png", "fig_loss.png"):
        assert (res.output_dir / name).read_bytes()[:8] == PNG, name
    bars = res.figures["fig_win_rate.png"]
    assert "n = 36 items per setting" in bars and "95% Wilson" in bars
    scatter = res.figures["fig_win_rate_vs_length.png"]
    assert "vertical bars: n = 36 items per setting; interval: 95% Wilson" in scatter
    assert "horizontal bars: n = 36 outputs per setting; interval: 95% bootstrap" in scatter
    assert "95% bootstrap interval" in res.figures["fig_loss.png"]
    assert "2 of 2 runs" in res.figures["fig_loss.png"]
    md = res.files["report_md"].read_text()
    for caption in res.figures.values():
        assert f"*{caption}*" in md


def test_figure_axes_include_the_intervals(measured_runs, monkeypatch):
    """The scatter's limits hold every error bar (no zoom onto the point values)."""
    from matplotlib.figure import Figure

    from symnoise.experiments import figures

    drawn: dict[str, Figure] = {}
    monkeypatch.setattr(figures, "_save",
                        lambda fig, path: drawn.__setitem__(Path(path).name, fig))
    build_report(measured_runs)
    ax = drawn["fig_win_rate_vs_length.png"].axes[0]
    lo, hi = _wilson(6, 36)
    ymin, ymax = ax.get_ylim()
    assert ymin <= 100 * lo and ymax >= 100 * _wilson(30, 36)[1]
    bars = drawn["fig_win_rate.png"].axes[0]
    assert bars.get_ylim()[1] >= 100 * _wilson(30, 36)[1]


def test_headline_names_only_the_seeds_that_measured(grid, tmp_path):
    """uniform on alpaca has seeds 0 and 1, only seed 0 an exact-answer score: its row says
    seed 0 and the Wilson interval of that run, not a mean over two seeds."""
    res = build_report(grid, tmp_path / "out")
    rows = {(r[0], r[1]): r[2:] for r in res.tables["measured"].rows}
    assert rows[("exact-answer accuracy (%)", "uniform α=5 · alpaca")][:4] == [
        "0", "240", "25.0 [20.0, 31.0]", "95% Wilson"]
    assert rows[("win rate (%)", "uniform α=5 · alpaca")][:2] == ["0, 1", "805 × 2"]
    # a win rate without annotations: ±1.96 of the judge's standard error (1.0 here)
    assert rows[("win rate (%)", "none · alpaca")][2:4] == ["30.2 [28.3, 32.2]",
                                                           "±1.96 SE of the judge"]


def test_one_judged_run_gets_a_bootstrap_interval_over_its_prompts(tmp_path):
    root = tmp_path / "runs"
    prompts = [f"q{i}" for i in range(40)]
    run = make_run(root, "sym", method="symnoise", win_rate=75.0)
    _annotate(run, {p: 1.0 if i % 4 == 0 else 2.0 for i, p in enumerate(prompts)})
    res = build_report(root)
    row = next(r for r in res.tables["measured"].rows if r[0] == "win rate (%)")
    value, interval = row[4].split(" ", 1)
    assert value == "75.0" and row[3] == "40" and row[5] == "95% bootstrap"
    lo, hi = (float(x) for x in interval.strip("[]").split(", "))
    assert 55 < lo < 75 < hi < 90  # 30 wins of 40: about ±13 points
    assert "95% bootstrap" in res.figures["fig_win_rate.png"]
    assert "n = 40 prompts" in res.figures["fig_win_rate.png"]
