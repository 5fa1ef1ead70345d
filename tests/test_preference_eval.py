"""The judge-free measure of preference runs: implicit reward margins against log-probs computed
by hand, `symnoise eval` on a preference run, and `compare`'s paired intervals for them."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from conftest import make_model, make_tokenizer
from typer.testing import CliRunner

from symnoise.cli import app
from symnoise.evaluate.preference import completion_logps, pair_rows, tokenize_pairs
from symnoise.evaluate.stats import wilson_interval
from symnoise.experiments.compare import compare_runs
from symnoise.experiments.evaluation import evaluate_run
from symnoise.experiments.report import build_report
from symnoise.run import RunFolder, read_jsonl

WORDS = "one two three four five six seven eight nine ten red green blue cat dog fish".split()
PAIRS = [{"prompt": f"sort {WORDS[i % 16]} {WORDS[(5 * i) % 16]} :",
          "chosen": " " + " ".join(WORDS[(i + k) % 16] for k in range(1 + i % 4)),
          "rejected": " " + " ".join(WORDS[(3 * i + k) % 16] for k in range(2 + i % 3))}
         for i in range(24)]


def by_hand(model, tok, row, max_length):
    """log π(completion) of each side, one unpadded sequence at a time, in float64."""
    prompt = tok(row["prompt"])["input_ids"]
    out = []
    for side in ("chosen", "rejected"):
        full = tok(row["prompt"] + row[side] + tok.eos_token)["input_ids"]
        assert full[:len(prompt)] == prompt
        full = full[:max_length]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([full])).logits[0].double(), -1)
        out.append(sum(logp[t - 1, full[t]].item() for t in range(len(prompt), len(full))))
    return tuple(out)


def test_margins_and_accuracy_against_a_hand_computation():
    tok = make_tokenizer()
    tok.pad_token = tok.eos_token
    policy, ref = (make_model(len(tok), seed=s, initializer_range=0.2).eval() for s in (0, 1))
    rows = PAIRS[:7]
    features = tokenize_pairs(rows, tok)
    max_length = 7  # cuts some completions: the kept tokens count
    assert any(len(f["prompt_ids"]) + len(f["chosen_ids"]) > max_length for f in features)
    kw = {"pad_token_id": tok.pad_token_id, "max_length": max_length, "batch_size": 3}
    got_p, got_r = completion_logps(policy, features, **kw), completion_logps(ref, features, **kw)
    want_p = [by_hand(policy, tok, r, max_length) for r in rows]
    want_r = [by_hand(ref, tok, r, max_length) for r in rows]
    flat = lambda pairs: [x for pair in pairs for x in pair]  # noqa: E731
    assert flat(got_p) == pytest.approx(flat(want_p), abs=1e-4)
    assert flat(got_r) == pytest.approx(flat(want_r), abs=1e-4)
    out = pair_rows(rows, got_p, got_r, beta=0.5)
    margins = [0.5 * ((pc - rc) - (pr - rr)) for (pc, pr), (rc, rr) in zip(want_p, want_r,
                                                                             strict=True)]
    assert [r["margin"] for r in out] == pytest.approx(margins, abs=1e-4)
    assert [r["correct"] for r in out] == [m > 0 for m in margins]
    assert 0 < sum(m > 0 for m in margins) < len(rows)  # both kinds of pair are there


def test_pairs_are_tokenised_as_trls_dpo_trainer_tokenises_them(tmp_path):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    tok = make_tokenizer()
    tok.pad_token = tok.eos_token
    tok.chat_template = ("{% for m in messages %}<s> {{ m['role'] }} : {{ m['content'] }} </s> "
                         "{% endfor %}{% if add_generation_prompt %}<s> assistant : {% endif %}")
    turn = lambda role, text: [{"role": role, "content": text}]  # noqa: E731
    chat = [{"prompt": turn("user", "sort one two"), "chosen": turn("assistant", "one two"),
             "rejected": turn("assistant", "two one")}]
    for rows in (PAIRS[:3], chat):
        trainer = DPOTrainer(model=make_model(len(tok)), ref_model=make_model(len(tok)),
                             args=DPOConfig(output_dir=str(tmp_path), report_to=[], bf16=False,
                                            use_cpu=True), train_dataset=Dataset.from_list(rows),
                             processing_class=tok)
        keys = ("prompt_ids", "chosen_ids", "rejected_ids")
        theirs = [{k: row[k] for k in keys} for row in trainer.train_dataset]
        assert tokenize_pairs(rows, tok) == theirs and theirs[0]["chosen_ids"][-1] == 2  # EOS


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tok = make_tokenizer()
    root = tmp_path_factory.mktemp("models")
    for name, seed in (("ref", 1), ("policy_a", 0), ("policy_b", 2)):
        make_model(len(tok), seed=seed, initializer_range=0.2).save_pretrained(root / name)
        tok.save_pretrained(root / name)
    (root / "pairs.json").write_text(json.dumps(PAIRS))
    return root


def make_preference_run(models, path, policy, method, **config):
    """A finished DPO run folder as train leaves it (the model and run.json)."""
    import shutil

    shutil.copytree(models / policy, path)
    cfg = {"model": str(models / "ref"), "data": str(models / "pairs.json"), "stage": "dpo",
           "beta": 0.5, "eval_fraction": 0.25, "seed": 0, "max_length": 64,
           "output_dir": str(path), "noise": {"method": method, "alpha": 5.0}, **config}
    RunFolder(path).write_info({"status": "completed", "config": cfg, "template": "alpaca",
                                "noise": {"method": method, "alpha": 5.0}})
    return path


def test_eval_reports_preference_accuracy_and_margin_and_compare_pairs_them(models, tmp_path):
    runs = [make_preference_run(models, tmp_path / "runs" / n, p, m) for n, p, m in
            (("a", "policy_a", "none"), ("b", "policy_b", "symnoise"))]
    summaries = [evaluate_run(r, n_prompts=2, max_new_tokens=2, synthetic=False,
                              progress=False) for r in runs]
    pf = summaries[0]["preference"]
    rows = read_jsonl(RunFolder(runs[0]).eval_file("preference_pairs"))
    assert pf["n"] == len(rows) == 6  # 25% of 24 pairs, the run's held-out split
    wins = sum(r["correct"] for r in rows)
    assert pf["accuracy"] == wins / 6 and pf["accuracy_ci95"] == list(wilson_interval(wins, 6))
    assert pf["reward_margin"] == pytest.approx(sum(r["margin"] for r in rows) / 6)
    lo, hi = pf["reward_margin_ci95"]
    assert lo <= pf["reward_margin"] <= hi and pf["reference"] == str(models / "ref")
    assert summaries[0]["steps"]["heldout"].startswith("unavailable: a preference run")
    train_stats = summaries[0]["stats"]["train_data"]  # the chosen replies of the 24 pairs
    assert (train_stats["format"], train_stats["used"], train_stats["n"]) == ("trl_standard", 24, 24)
    # the reference is the start model: the run that is its own reference has margins 0
    same = make_preference_run(models, tmp_path / "same", "ref", "none")
    zero = evaluate_run(same, n_prompts=2, max_new_tokens=2, synthetic=False, progress=False)
    assert zero["preference"]["reward_margin"] == 0 and zero["preference"]["accuracy"] == 0
    a, b = (read_jsonl(RunFolder(r).eval_file("preference_pairs")) for r in runs)
    assert [m.metric for m in compare_runs([runs[0]], [runs[1]], n_boot=10)] == [
        "win_rate", "lc_win_rate", "exact_answer", "output_length", "preference_accuracy",
        "reward_margin"]  # a preference run's metrics: no held-out loss
    diffs = {}
    for metric, value in (("preference_accuracy", lambda r: 100.0 * r["correct"]),
                          ("reward_margin", lambda r: r["margin"])):
        res = compare_runs([runs[0]], [runs[1]], metrics=[metric])[0].result
        diff = diffs[metric] = sum(map(value, b)) / 6 - sum(map(value, a)) / 6
        assert res.diff == pytest.approx(diff) and res.n == 6 and res.ci_low <= diff <= res.ci_high
    report = build_report(tmp_path / "runs", tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    for rows in (a, b):  # each run's accuracy with its Wilson interval
        wins = sum(r["correct"] for r in rows)
        lo, hi = wilson_interval(wins, 6)
        assert f"| {100 * wins / 6:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] | 95% Wilson |" in md
    assert "held-out preference accuracy (%)" in md and "held-out reward margin" in md
    assert not any("preference" in line for line in report.missing)
    with open(tmp_path / "report" / "measured.csv", encoding="utf-8") as fh:
        shown = {r["metric"]: float(r["diff"]) for r in csv.DictReader(fh)
                 if r["method"] == "symnoise" and r["metric"] in diffs}
    assert shown == pytest.approx(diffs)  # the paired difference from none, as compare gives it


def test_eval_data_long_prompts_and_a_split_that_is_not_trains(models, tmp_path):
    run = make_preference_run(models, tmp_path / "a", "policy_a", "none", max_length=6)
    long = {"prompt": "sort one two three four five six :", "chosen": " one", "rejected": " two"}
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps(p) + "\n" for p in [*PAIRS[:3], long]))
    res = CliRunner().invoke(app, ["eval", str(run), "--eval-data", str(other), "--n-prompts",
                                   "1", "--max-new-tokens", "1", "--no-synthetic",
                                   "--no-progress", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)["preference"]
    assert (out["n"], out["dropped"], out["source"]) == (3, 1, f"eval_data {other}")
    info = RunFolder(run).read_info()
    info["data"] = {"eval_examples": 5}  # train held out 5 pairs; the rule rebuilds 6
    RunFolder(run).write_info(info)
    steps = evaluate_run(run, n_prompts=1, max_new_tokens=1, synthetic=False,
                         progress=False)["steps"]
    assert steps["preference"] == ("unavailable: rebuilt 6 held-out pairs but run.json "
                                   "records 5: not the set training used")
    info["config"]["model"] = str(tmp_path / "gone")  # the reference is not on this machine
    RunFolder(run).write_info(info)
    steps = evaluate_run(run, n_prompts=1, max_new_tokens=1, synthetic=False, eval_data=str(other),
                         progress=False)["steps"]
    assert steps["preference"].startswith("unavailable: the held-out pairs or the reference "
                                          "model are not available here: model path not found")
    info["config"]["stage"] = "sft"
    RunFolder(run).write_info(info)
    with pytest.raises(ValueError, match="--eval-data is for preference runs"):
        evaluate_run(run, synthetic=False, progress=False, eval_data=str(other))


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_eval_of_a_trained_dpo_run_agrees_with_trls_own_evaluation(models, tmp_path, lora):
    """train --stage dpo evaluates its held-out pairs at the end (TRL's eval_rewards/*): eval
    rebuilds the same pairs and gets the same margins, against the start model (LoRA: saved
    merged, so the start model is the model with its adapter disabled, as in training)."""
    from symnoise.config import TrainConfig
    from symnoise.train import train

    run = train(TrainConfig(model=str(models / "ref"), data=str(models / "pairs.json"),
                            stage="dpo", beta=0.5, eval_fraction=0.25, max_steps=3,
                            batch_size=4, lr=1e-2, max_length=64, save_steps=0, seed=0,
                            logging_steps=1, noise={"method": "symnoise"}, lora=lora,
                            output_dir=str(tmp_path / "run")))
    last = [r for r in RunFolder(run).read_metrics() if "eval_rewards/margins" in r][-1]
    out = evaluate_run(run, n_prompts=1, max_new_tokens=1, synthetic=False, progress=False)
    pf = out["preference"]
    assert pf["n"] == RunFolder(run).read_info()["data"]["eval_examples"] == 6
    assert pf["reward_margin"] == pytest.approx(last["eval_rewards/margins"], abs=1e-4)
    assert pf["accuracy"] == pytest.approx(last["eval_rewards/accuracies"], abs=1e-6)
