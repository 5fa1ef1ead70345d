"""One vocabulary on the command line: one option name per concept (an old spelling is an
ordinary unknown option), one --device default, --progress on every long command.

Every library entry point a command calls is replaced by a recorder, so nothing heavy runs:
the tests check what reaches the callee."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import symnoise.evaluate.harness as harness
import symnoise.evaluate.judge as annotators
import symnoise.evaluate.judge_check as judge_check
import symnoise.experiments.demo as demo
import symnoise.experiments.eval_steps as synthetic_eval
import symnoise.experiments.evaluation as evaluation
import symnoise.experiments.pipeline as pipeline
import symnoise.generate as generate
import symnoise.run as run
import symnoise.train as train
from symnoise import cli
from symnoise.cli import app


class _Result:
    """Stands in for every report object: to_dict(), format_table(), ok, compared,
    partial."""

    ok = True
    compared = True
    partial = False

    def to_dict(self) -> dict[str, Any]:
        return {"fake": True}

    def format_table(self) -> str:
        return "fake table"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, Any]]:
    """Replace each command's library entry point; record the keyword arguments it gets
    (and the fields of the settings object eval passes)."""
    seen: dict[str, dict[str, Any]] = {}

    def recorder(key: str, result: Any):
        def fake(*args: Any, **kwargs: Any) -> Any:
            settings = [dict(a) for a in args if isinstance(a, synthetic_eval.EvalSettings)]
            seen[key] = {"args": args, **(settings[0] if settings else {}), **kwargs}
            return result() if callable(result) else result
        return fake

    demo_summary = {"table": "t", "scope": "s", "output_dir": "d", "rows": []}
    patches = [
        (generate, "generate_outputs", "generate", _Result),
        (synthetic_eval, "run_synthetic_eval", "tasks", _Result),
        (synthetic_eval, "score_synthetic_outputs", "tasks-score", _Result),
        (evaluation, "evaluate_run", "eval", {"fake": True}),
        (annotators, "judge_outputs", "judge", _Result),
        (judge_check, "run_judge_check", "judge-check", {"fake": True}),
        (harness, "run_harness", "harness", _Result),
        (demo, "run_demo", "demo", demo_summary),
        (pipeline, "run_experiment", "sweep", _Result),
        (train, "train", "train", Path("run")),
    ]
    for module, name, key, result in patches:
        monkeypatch.setattr(module, name, recorder(key, result))
    monkeypatch.setattr(evaluation, "format_eval_summary", lambda s: "summary")
    monkeypatch.setattr(judge_check, "format_judge_check", lambda c: "check")
    monkeypatch.setattr(run.RunFolder, "read_info", lambda self: {"fake": True})
    monkeypatch.setattr(cli, "_train_summary", lambda run_dir, info: "trained")
    return seen


#: command -> the arguments it needs besides the one under test.
BASE: dict[str, list[str]] = {
    "generate": ["generate", "--model", "m", "--prompts", "p.json", "--output-file", "o.json"],
    "tasks": ["tasks", "--model", "m"],
    "eval": ["eval", "run"],
    "judge": ["judge", "--model-outputs", "a.json", "--reference-outputs", "b.json",
              "--judge", "openai:x", "--output-dir", "j"],
    "judge-check": ["judge-check", "--judge", "openai:x", "--reference-outputs", "b.json"],
    "harness": ["harness", "--model", "m"],
    "demo": ["demo"],
    "sweep": ["sweep", "grid.yaml"],
    "train": ["train"],
}

#: (command, an old spelling of one of its options, the option's one spelling today)
OLD = [
    ("generate", "--limit", "--n-prompts"), ("generate", "--output", "--output-file"),
    ("tasks", "--n", "--n-prompts"), ("tasks", "--outputs", "--model-outputs"),
    ("eval", "--limit", "--limit-per-task"), ("eval", "--synthetic-n", "--synthetic-n-prompts"),
    ("eval", "--reference", "--reference-outputs"), ("judge", "--max-items", "--n-prompts"),
    ("judge-check", "--n", "--n-prompts"), ("harness", "--limit", "--limit-per-task"),
]


def _invoke(args: list[str]) -> Any:
    return CliRunner().invoke(app, args)


@pytest.mark.parametrize(("command", "old", "new"), OLD)
def test_an_old_spelling_is_an_ordinary_unknown_option(
        calls: dict[str, dict[str, Any]], command: str, old: str, new: str) -> None:
    base = ["tasks"] if new == "--model-outputs" else BASE[command]  # not with --model
    res = _invoke([*base, old, "7"])
    assert res.exit_code == 2 and not calls  # a usage error: nothing ran
    assert f"No such option: {old}" in res.stderr
    assert "deprecated" not in res.output
    assert _invoke([*base, new, "7"]).exit_code == 0 and calls  # the one spelling works


DEVICE_COMMANDS = ["generate", "tasks", "eval", "harness"]


@pytest.mark.parametrize("cuda", [False, True])
def test_device_default_is_auto_and_reaches_every_callee_alike(
        calls: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch, cuda: bool) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    for command in DEVICE_COMMANDS:
        res = _invoke(BASE[command])
        assert res.exit_code == 0, res.output
    got = {command: calls[command]["device"] for command in DEVICE_COMMANDS}
    assert got == dict.fromkeys(DEVICE_COMMANDS, "cuda" if cuda else "cpu")
    for command in DEVICE_COMMANDS:  # an explicit device is passed through as given
        assert _invoke([*BASE[command], "--device", "cuda:1"]).exit_code == 0
        assert calls[command]["device"] == "cuda:1"


def _commands() -> dict[str, Any]:
    return dict(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def _options(command: Any) -> dict[str, Any]:
    return {p.name: p for p in command.params if p.param_type_name == "option" and p.name}


LONG_COMMANDS = ["train", "generate", "tasks", "eval", "judge", "judge-check", "harness",
                 "sweep", "demo"]


@pytest.mark.parametrize("command", LONG_COMMANDS)
def test_every_long_command_has_progress(command: str) -> None:
    option = _options(_commands()[command]).get("progress")
    assert option is not None and option.opts == ["--progress"]
    assert option.secondary_opts == ["--no-progress"] and option.default is True
    res = _invoke([command, "--help"])
    assert res.exit_code == 0 and "--no-progress" in res.stdout


@pytest.mark.parametrize("command", ["generate", "tasks", "eval", "judge", "judge-check",
                                     "harness", "demo", "sweep", "train"])
def test_no_progress_reaches_the_callee(calls: dict[str, dict[str, Any]], command: str) -> None:
    res = _invoke([*BASE[command], "--no-progress"])
    assert res.exit_code == 0, res.output
    assert calls[command]["progress"] is False
    _invoke(BASE[command])
    assert calls[command]["progress"] is True


#: The one spelling of each concept (the parameter's name in every command).
CANONICAL = {
    "n_prompts": "--n-prompts",
    "synthetic_n_prompts": "--synthetic-n-prompts",
    "limit_per_task": "--limit-per-task",
    "device": "--device",
    "progress": "--progress",
    "model_outputs": "--model-outputs",
    "reference_outputs": "--reference-outputs",
    "output_dir": "--output-dir",
    "output_file": "--output-file",
    "max_new_tokens": "--max-new-tokens",
    "as_json": "--json",
}
OLD_SPELLINGS = {"--limit", "--n", "--max-items", "--synthetic-n", "--outputs", "--output",
                 "--reference", "--max-n"}


def test_one_option_name_per_parameter_across_commands() -> None:
    spellings: dict[str, dict[tuple[str, ...], list[str]]] = {}
    for name, command in _commands().items():
        for param, option in _options(command).items():
            spellings.setdefault(param, {}).setdefault(tuple(option.opts), []).append(name)
            assert not OLD_SPELLINGS & set(option.opts), (name, option.opts)
    differing = {p: s for p, s in spellings.items() if len(s) > 1}
    assert not differing, f"one parameter, several spellings: {differing}"
    for param, spelling in CANONICAL.items():
        if param in spellings:
            assert list(spellings[param]) == [(spelling,)], (param, spellings[param])
    assert {"n_prompts", "limit_per_task", "device", "progress", "model_outputs",
            "reference_outputs", "output_dir", "output_file", "max_new_tokens"} <= set(spellings)


def test_every_command_has_json() -> None:
    for name, command in _commands().items():
        assert _options(command)["as_json"].opts == ["--json"], name


def test_device_and_max_new_tokens_defaults_are_documented() -> None:
    for name, command in _commands().items():
        options = _options(command)
        if "device" in options:
            assert options["device"].default == "auto", name
            assert "auto (cuda when available, else cpu)" in (options["device"].help or "")
        if "max_new_tokens" in options:
            default = options["max_new_tokens"].default
            assert f"default {default}" in (options["max_new_tokens"].help or ""), name


def test_harness_without_progress_bars_binds_disable_tqdm() -> None:
    pytest.importorskip("lm_eval")
    import inspect

    from lm_eval.models.huggingface import HFLM

    for name in ("loglikelihood", "loglikelihood_rolling", "generate_until"):
        assert "disable_tqdm" in inspect.signature(getattr(HFLM, name)).parameters, name

    class FakeLM:
        def loglikelihood(self, requests, disable_tqdm=False):
            return ("ll", requests, disable_tqdm)

        def loglikelihood_rolling(self, requests, disable_tqdm=False):
            return ("roll", requests, disable_tqdm)

        def generate_until(self, requests, disable_tqdm=False):
            return ("gen", requests, disable_tqdm)

    lm = FakeLM()
    assert lm.generate_until([1]) == ("gen", [1], False)
    harness._without_progress_bars(lm)
    assert lm.loglikelihood([1]) == ("ll", [1], True)
    assert lm.loglikelihood_rolling([2]) == ("roll", [2], True)
    assert lm.generate_until([3]) == ("gen", [3], True)


@pytest.mark.parametrize("progress", [True, False])
def test_train_progress_bar_callback_only_with_progress(progress: bool, tmp_path: Path) -> None:
    callbacks = train._callbacks(run.RunFolder(tmp_path), train.RunTotals(), progress=progress)
    names = [type(cb).__name__ for cb in callbacks]
    assert names == ["MetricsWriter", "CheckpointMarker", *(["Progress"] if progress else [])]


def test_limit_per_task_keeps_counts_and_fractions(calls: dict[str, dict[str, Any]]) -> None:
    for typed, expected in (("100", 100), ("0.25", 0.25), ("2.5", 2.5)):
        assert _invoke([*BASE["harness"], "--limit-per-task", typed]).exit_code == 0
        got = calls["harness"]["limit"]
        assert got == expected and type(got) is type(expected)
    with pytest.raises(ValueError, match="neither a whole count nor a fraction"):
        harness._check_args(2.5, "float32", 8)


def test_eval_options_fill_the_one_settings_model(calls: dict[str, dict[str, Any]]) -> None:
    """`symnoise eval`'s options are EvalSettings' fields (four under a CLI name)."""
    res = _invoke(["eval", "run", "--prompts", "p.json", "--n-prompts", "3", "--judge",
                   "openai:x", "--reference-outputs", "r.json", "--tasks", "arc",
                   "--limit-per-task", "5", "--synthetic-n-prompts", "7", "--no-heldout",
                   "--words", "alpaca", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    settings = calls["eval"]["args"][1]
    assert isinstance(settings, synthetic_eval.EvalSettings)
    assert settings.model_dump(exclude_defaults=True) == {
        "prompts": "p.json", "n_prompts": 3, "judge": "openai:x", "reference": "r.json",
        "harness_tasks": "arc", "harness_limit": 5, "synthetic_n": 7, "heldout": False,
        "words": "alpaca", "device": "cpu"}
    calls.clear()
    res = _invoke(["eval", "run", "--n-prompts", "0"])
    assert res.exit_code == 2 and not calls
    assert "eval: n_prompts: n_prompts must be a positive integer, got 0" in res.output
