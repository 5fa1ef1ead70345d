"""Per-example clean losses: the held-out set rebuilt from run.json is the one training used
(its losses reproduce run.json's final clean loss), ids are stable, problems are reported."""

from __future__ import annotations

import json
import re

import pytest
from conftest import make_model, make_tokenizer

from symnoise.config import TrainConfig
from symnoise.evaluate.heldout import (
    HeldoutUnavailable,
    example_losses,
    heldout_rows,
    heldout_set,
    token_mean,
    trainer_mean,
)
from symnoise.experiments.evaluation import evaluate_run
from symnoise.run import RunFolder, read_jsonl
from symnoise.train import train

WORDS = "one two three four five six seven eight nine ten red green blue cat dog fish".split()
# 30 different rows, so that which rows are held out changes the loss
ROWS = [{"instruction": f"say {WORDS[i % 16]} {WORDS[(3 * i) % 16]}",
         "input": WORDS[(i * 7) % 16] if i % 3 else "",
         "output": " ".join(WORDS[(i + k) % 16] for k in range(1 + i % 5))} for i in range(30)]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    tok = make_tokenizer()
    path = tmp_path_factory.mktemp("tiny") / "tiny-model"
    make_model(len(tok), seed=0, initializer_range=0.2).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _train(tiny_dir, out, **kw):
    base = dict(model=str(tiny_dir), output_dir=str(out), max_steps=3, batch_size=4, lr=1e-3,
                logging_steps=1, save_steps=0, max_length=64, seed=0)
    base.update(kw)
    return train(TrainConfig(**base))


def _losses(run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    info = RunFolder(run).read_info()
    tok = AutoTokenizer.from_pretrained(run)
    tok.pad_token = tok.pad_token or tok.eos_token
    held = heldout_set(info, tok)
    model = AutoModelForCausalLM.from_pretrained(run)
    rows = heldout_rows(held.examples, example_losses(model, held.features,
                                                      pad_token_id=tok.pad_token_id))
    return info, held, rows


def test_split_of_the_training_data_reproduces_the_final_clean_loss(tiny_dir, tmp_path):
    data = tmp_path / "data.json"
    data.write_text(json.dumps(ROWS))
    run = _train(tiny_dir, tmp_path / "run", data=str(data), eval_fraction=0.4)  # 12 held out
    info, held, rows = _losses(run)
    assert len(rows) == info["data"]["eval_examples"] == 12
    assert held.eval_batch_size == 8  # two evaluation batches: 8 + 4
    assert trainer_mean(rows, 8) == pytest.approx(info["final_clean_eval_loss"], abs=1e-5)
    assert all(r["n_tokens"] > 0 and r["loss"] > 0 for r in rows)
    assert len({r["id"] for r in rows}) == 12 and all(re.fullmatch(r"[0-9a-f]{16}", r["id"])
                                                      for r in rows)
    # the same rule with another seed holds out other rows: the numbers no longer agree
    other = json.loads(json.dumps(info))
    other["config"]["seed"] = 1
    tok = make_tokenizer()
    moved = heldout_set(other, tok)
    assert [e.instruction for e in moved.examples] != [e.instruction for e in held.examples]


def test_synthetic_heldout_losses_through_eval(tiny_dir, tmp_path):
    cfg = dict(data="synthetic", synthetic_train_size=16, synthetic_heldout_size=6,
               max_length=96)
    run = _train(tiny_dir, tmp_path / "a", **cfg)
    summary = evaluate_run(run, n_prompts=2, max_new_tokens=2, batch_size=2, synthetic=False,
                           progress=False)
    folder = RunFolder(run)
    rows = read_jsonl(folder.eval_file("heldout_losses"))
    info = folder.read_info()
    assert len(rows) == info["data"]["eval_examples"] == 6  # one evaluation batch
    assert token_mean(rows) == pytest.approx(info["final_clean_eval_loss"], abs=1e-5)
    assert set(rows[0]) == {"id", "loss", "n_tokens"}
    held = summary["heldout"]
    assert held["n"] == 6 and held["n_tokens"] == sum(r["n_tokens"] for r in rows)
    assert held["mean_loss"] == pytest.approx(token_mean(rows))
    assert held["run_final_clean_eval_loss"] == info["final_clean_eval_loss"]
    assert held["source"] == "synthetic held-out split"
    assert summary["steps"]["heldout"] == "ran"

    # another run on the same held-out split: same ids in the same order, other losses
    run_b = _train(tiny_dir, tmp_path / "b", noise={"method": "uniform"}, seed=3, **cfg)
    evaluate_run(run_b, n_prompts=2, max_new_tokens=2, batch_size=2, synthetic=False,
                 progress=False)
    rows_b = read_jsonl(RunFolder(run_b).eval_file("heldout_losses"))
    assert [r["id"] for r in rows_b] == [r["id"] for r in rows]
    assert [r["loss"] for r in rows_b] != [r["loss"] for r in rows]

    # rerun: skipped; a changed model file redoes it
    again = evaluate_run(run, n_prompts=2, max_new_tokens=2, batch_size=2, synthetic=False,
                         progress=False)
    assert again["steps"]["heldout"] == "skipped (complete)"
    assert again["heldout"] == held
    make_model(len(make_tokenizer()), seed=5).save_pretrained(run)
    redone = evaluate_run(run, n_prompts=2, max_new_tokens=2, batch_size=2, synthetic=False,
                          progress=False)
    assert redone["steps"]["heldout"] == "ran"
    assert redone["heldout"]["mean_loss"] != pytest.approx(held["mean_loss"], abs=1e-6)


def test_unavailable_held_out_sets_are_reported_not_guessed(tiny_dir, tmp_path):
    tok = make_tokenizer()
    missing = {"config": {"data": str(tmp_path / "gone.json")}, "template": "alpaca"}
    with pytest.raises(HeldoutUnavailable, match="gone.json"):
        heldout_set(missing, tok)
    data = tmp_path / "d.json"
    data.write_text(json.dumps(ROWS))
    none_out = {"config": {"data": str(data), "eval_fraction": 0.0}, "template": "alpaca"}
    with pytest.raises(HeldoutUnavailable, match="held no examples out"):
        heldout_set(none_out, tok)

    # through eval: the step says why, the other steps still run
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_dir, run)
    info = {"status": "completed", "template": "alpaca", "format": "alpaca",
            "config": {"data": str(data), "eval_fraction": 0.2, "max_length": 64},
            "data": {"eval_examples": 5}}  # the rule gives 6 of 30: not the recorded 5
    (run / "run.json").write_text(json.dumps(info))
    summary = evaluate_run(run, n_prompts=2, max_new_tokens=2, synthetic=False, progress=False)
    assert summary["steps"]["heldout"].startswith("unavailable: rebuilt 6 held-out examples")
    assert "run.json records 5" in summary["heldout"]["unavailable"]
    assert summary["steps"]["generate"] == "ran"
    assert not RunFolder(run).eval_file("heldout_losses").exists()


def test_example_losses_equal_the_models_own_loss_at_a_real_vocabulary_size():
    import torch

    model = make_model(vocab_size=49152, seed=1, initializer_range=1.0).eval()
    gen = torch.Generator().manual_seed(0)
    features = []
    for length, prompt in ((40, 25), (33, 10), (48, 47), (20, 5)):
        ids = torch.randint(3, 49152, (length,), generator=gen).tolist()
        features.append({"input_ids": ids, "attention_mask": [1] * length,
                         "labels": [-100] * prompt + ids[prompt:]})
    rows = example_losses(model, features, pad_token_id=0, batch_size=4)
    assert [n for _, n in rows] == [15, 23, 1, 15]  # response tokens after the shift
    from symnoise.data import PaddingCollator

    with torch.inference_mode():
        own = model(**PaddingCollator(0)(features)).loss.item()
    tokens = sum(n for _, n in rows)
    assert sum(loss * n for loss, n in rows) / tokens == pytest.approx(own, rel=1e-6)
    # one at a time: the same per-example losses (padding changes nothing)
    alone = example_losses(model, features, pad_token_id=0, batch_size=1)
    assert [a for a, _ in alone] == pytest.approx([a for a, _ in rows], abs=1e-5)
