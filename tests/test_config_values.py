"""Wrongly typed config values: coerced the way the user means them where that is clear
(YAML reads ``1e-4`` as a string), otherwise one error naming the file, the key and the
value, in train configs and in every block of an experiment file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from symnoise.cli import app
from symnoise.config import TrainConfig
from symnoise.experiments.experiment_file import ExperimentError, load_experiment


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(text)
    return path


def test_yaml_strings_are_read_as_the_user_means(tmp_path: Path) -> None:
    assert yaml.safe_load("lr: 1e-4")["lr"] == "1e-4"  # the trap: YAML 1.1 needs a dot
    path = _config(tmp_path, "lr: 1e-4\nsave_steps: '5'\nmax_steps: 4.0\n"
                             "noise: {alpha: '2.5', norm_match: false}\n")
    cfg = TrainConfig.from_sources(path)
    assert cfg.lr == 1e-4 and isinstance(cfg.lr, float)
    assert (cfg.save_steps, cfg.max_steps) == (5, 4) and isinstance(cfg.max_steps, int)
    assert cfg.noise.alpha == 2.5 and cfg.noise.norm_match is False


@pytest.mark.parametrize(("text", "message"), [
    ("save_steps: four\n", "save_steps: value 'four' is not a valid integer"),
    ("max_steps: 4.5\n", "max_steps: value 4.5 is not a whole number"),
    ("lr: fast\n", "lr: value 'fast' is not a valid number"),
    ("bf16: maybe\n", "bf16: value 'maybe' is not a valid boolean (true or false)"),
    ("noise: {alpha: strong}\n", "noise.alpha: value 'strong' is not a valid number"),
    ("noise: {strength: 2}\n", "noise.strength: unknown key"),
    ("alpha: 2\n", "alpha: unknown key (the noise's alpha is set as noise: {alpha: ...})"),
    ("noise: {symmetric_mode: both}\n",
     "noise.symmetric_mode: value 'both' is not one of 'concat' or 'sequential'"),
])
def test_bad_values_name_file_key_and_value(tmp_path: Path, text: str, message: str) -> None:
    path = _config(tmp_path, text)
    with pytest.raises(ValueError) as info:
        TrainConfig.from_sources(path)
    assert str(info.value) == f"{path}: {message}"


def test_every_bad_value_is_listed(tmp_path: Path) -> None:
    path = _config(tmp_path, "save_steps: four\nbatch_size: two\n")
    with pytest.raises(ValueError) as info:
        TrainConfig.from_sources(path)
    assert sorted(str(info.value).splitlines()) == [
        f"{path}: batch_size: value 'two' is not a valid integer",
        f"{path}: save_steps: value 'four' is not a valid integer"]


def test_train_cli_prints_one_line_not_a_traceback(tmp_path: Path) -> None:
    path = _config(tmp_path, "save_steps: four\n")
    res = CliRunner().invoke(app, ["train", "--config", str(path), "--output-dir",
                                   str(tmp_path / "run")])
    assert res.exit_code == 2
    assert f"error: {path}: save_steps: value 'four' is not a valid integer" in res.stderr
    assert "Traceback" not in res.output and not (tmp_path / "run").exists()


def test_types_come_from_train_config() -> None:
    """One model checks every spelling: the API, a file and an experiment's blocks."""
    with pytest.raises(ValueError, match="save_steps"):
        TrainConfig(save_steps="four")
    with pytest.raises(ValueError, match="noise.alpha"):
        TrainConfig(noise={"alpha": "strong"})
    assert TrainConfig(save_steps="5", noise={"alpha": "2"}).noise.alpha == 2.0


def _experiment(tmp_path: Path, **change: object) -> Path:
    spec = {"output_dir": str(tmp_path / "runs"), "models": ["smollm2"], "methods": ["none"],
            "datasets": ["synthetic"], **change}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize(("change", "message"), [
    ({"train": {"max_steps": "four"}}, "train.max_steps: value 'four' is not a valid integer"),
    ({"datasets": [{"data": "synthetic", "train": {"lr": "fast"}}]},
     "datasets[0].train.lr: value 'fast' is not a valid number"),
    ({"methods": [{"method": "none", "train": {"bf16": "perhaps"}}]},
     "methods[0].train.bf16: value 'perhaps' is not a valid boolean (true or false)"),
    ({"recipe": {"save_steps": 2.5}}, "recipe.save_steps: value 2.5 is not a whole number"),
    ({"evaluation": {"n_prompts": "ten"}},
     "evaluation.n_prompts: value 'ten' is not a valid integer"),
    ({"train": {"noise": {"noise_on": "half"}}},
     "train.noise.noise_on: unknown noise_on 'half'; expected all, prompt, response, text, "
     "vision, or text/vision+prompt/response (e.g. text+response)"),
    ({"methods": [{"method": "none", "train": {"noise": {"alfa": 1}}}]},
     "methods[0].train.noise.alfa: unknown key (did you mean 'alpha'?)"),
    ({"datasets": [{"data": "synthetic", "evaluation": {"judge_chek": True}}]},
     "datasets[0].evaluation.judge_chek: unknown key (did you mean 'judge_check'?)"),
    ({"methods": [{"method": "none", "train": {"seed": 3, "noise": {"alpha": 3}}}]},
     "methods[0].train.noise.alpha: set by the grid: use the experiment's models, datasets, "
     "methods (alpha, norm_match), alphas, seeds or output_dir"),
])
def test_experiment_blocks_are_typed(tmp_path: Path, change: dict, message: str) -> None:
    path = _experiment(tmp_path, **change)
    with pytest.raises(ExperimentError) as info:
        load_experiment(path)
    assert f"{path}: {message}" in str(info.value).splitlines()


def test_experiment_values_are_coerced_once(tmp_path: Path) -> None:
    path = _experiment(tmp_path, train={"max_steps": "4", "lr": "1e-4"},
                       evaluation={"n_prompts": "3"})
    [point] = load_experiment(path).points
    assert point.train["max_steps"] == 4 and point.train["lr"] == 1e-4
    assert point.evaluation["n_prompts"] == 3
    assert point.train_config().max_steps == 4
