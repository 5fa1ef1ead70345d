"""The ``symnoise`` command line: parse, call, print."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ._io import disk_failure, fmt

app = typer.Typer(
    name="symnoise",
    help="Noisy-embedding instruction fine-tuning (SymNoise, NEFTune, Gaussian, Bernoulli) "
    "and paper-style evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Noisy-embedding instruction fine-tuning and paper-style evaluation."""
    # Offline by default: nothing reaches a hub unless the user turns it on.
    for key, value in (("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"),
                       ("TOKENIZERS_PARALLELISM", "false"), ("TRANSFORMERS_VERBOSITY", "error")):
        os.environ.setdefault(key, value)


# ------------------------------------------------------------------ one vocabulary
# One option name per concept: --n-prompts (how many prompts/items a command answers,
# scores or judges), --limit-per-task (lm-eval's per-task cap), --device (default auto),
# --progress/--no-progress, --model-outputs / --reference-outputs (input files),
# --output-dir (a folder written) and --output-file (one file written). The options that
# recur are defined once here.
Device = Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ... or auto (cuda when available, else cpu).")]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bars and step lines on stderr.")]
Json = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")]
Dtype = Annotated[str, typer.Option(help="float32|bfloat16|float16|auto")]
Seed = Annotated[int, typer.Option(help="Random seed.")]
Template = Annotated[Optional[str], typer.Option(help="alpaca|vicuna|chat (default: the run's training template, else alpaca).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Start over instead of resuming.")]
IgnoreFields = Annotated[Optional[str], typer.Option(help="Prompt-row fields to drop on purpose, comma-separated (K1,K2); any other field no prompt shape reads stops the run.")]
LimitPerTask = Annotated[Optional[float], typer.Option(help="Cap examples per harness task, a count or a fraction < 1 (smoke tests only).")]
IncludePath = Annotated[Optional[Path], typer.Option(help="Folder of local lm-eval task YAMLs (offline).")]
Judge = Annotated[str, typer.Option("--judge", help="openai:MODEL (any OpenAI-compatible endpoint) or hf:PATH (local causal LM, log-prob decision).")]
Annotator = Annotated[str, typer.Option(help="symnoise-pairwise (our prompt) or an AlpacaEval annotator: alpaca_eval_gpt4 (the paper's GPT-4 judge), chatgpt_fn (its ChatGPT judge), weighted_alpaca_eval_gpt4_turbo (AlpacaEval 2), ...")]
BaseUrl = Annotated[Optional[str], typer.Option(help="OpenAI-compatible base URL of the judge (default $OPENAI_BASE_URL or api.openai.com); key from $OPENAI_API_KEY.")]
BothOrders = Annotated[bool, typer.Option("--both-orders", help="Judge each pair in both orders and average (symnoise-pairwise).")]


# ------------------------------------------------------------------ call and print
def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _disk_failure(exc: BaseException) -> str | None:
    """One line for an error the disk caused: the path and the cause; None for anything
    else (a bug keeps its traceback)."""
    found = disk_failure(exc)
    if found is None:
        return None
    code, path = found
    if path is None and not isinstance(exc, OSError):  # a library's own error type
        return f"{os.strerror(code)}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    cause = next((e.strerror for e in (exc, exc.__cause__, exc.__context__)
                  if isinstance(e, OSError) and e.errno == code and e.strerror), None)
    return f"{path + ': ' if path else ''}{cause or os.strerror(code)}"


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``; an error the user can fix (bad value, missing file or
    package, a judge or harness failure, a read-only or full disk) prints ``error: ...``
    and exits with status 2."""
    from .evaluate.harness import HarnessError
    from .evaluate.judge_prompts import JudgeError

    if kwargs.get("progress") is False:  # --no-progress: every library's bars too
        from .models import quiet_progress_bars

        quiet_progress_bars()
    try:
        return fn(*args, **kwargs)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError, HarnessError,
            JudgeError) as exc:
        _fail(str(exc))
    except Exception as exc:
        disk = _disk_failure(exc)
        if disk is None:
            raise
        _fail(disk)


def _emit(result: Any, as_json: bool, table: str | None = None) -> None:
    """Print one JSON object (``--json``) or a readable table; a report object (with
    ``to_dict`` and ``format_table``) prints itself."""
    if table is None and hasattr(result, "format_table"):
        result, table = result.to_dict(), result.format_table()
    typer.echo(json.dumps(result, indent=2, default=str) if as_json else table)


def _device(device: str) -> str:  # auto: cuda when a GPU is visible, else cpu
    from .models import default_device

    return default_device(device)


def _per_task(limit: float | None) -> int | float | None:
    """lm-eval's per-task cap: a whole count (100.0 -> 100), else as given."""
    return int(limit) if limit is not None and limit >= 1 and limit.is_integer() else limit


@app.command()
def train(
    config: Optional[Path] = typer.Option(None, "--config", help="YAML config (flags override it); a preset name such as 'alpaca' works too."),
    model: Optional[str] = typer.Option(None, help="Hub id, local HF folder, .gguf file or 'smollm2' (default)."),
    data: Optional[str] = typer.Option(None, help="JSON/JSONL/Parquet file, hub id, or 'synthetic' (default)."),
    stage: Optional[str] = typer.Option(None, help="sft (default)|dpo|kto: instruction tuning, or TRL's DPO/KTO on preference pairs."),
    beta: Optional[float] = typer.Option(None, help="The preference stages' beta (default 0.1)."),
    format: Optional[str] = typer.Option(None, "--format", help="auto|alpaca|evol_instruct|sharegpt|openplatypus; preference stages: trl_standard|trl_conversational|llamafactory_alpaca|llamafactory_sharegpt|hh_rlhf"),
    template: Optional[str] = typer.Option(None, help="alpaca|vicuna|chat (default: the paper's choice for the format)."),
    method: Optional[str] = typer.Option(None, help="none|uniform (neftune)|gaussian|bernoulli|symnoise"),
    alpha: Optional[float] = typer.Option(None, help="Noise alpha (scale alpha/sqrt(L*d))."),
    norm_match: Optional[bool] = typer.Option(None, "--norm-match/--no-norm-match", help="Divide gaussian/bernoulli/symnoise by sqrt(3)."),
    symmetric_mode: Optional[str] = typer.Option(None, help="concat|sequential (symnoise only)."),
    noise_on: Optional[str] = typer.Option(None, "--noise-on", help="all (default, as in the paper)|prompt|response: which tokens get noise; on a vision-language model text (= all) or vision, joinable with a part: vision+prompt."),
    eval_data: Optional[str] = typer.Option(None, "--eval-data", help="Held-out data for the clean loss (default: the suite's held-out split, or a split of --data)."),
    packing: Optional[bool] = typer.Option(None, "--packing/--no-packing", help="Padding-free rows: examples concatenated, attention kept within each example."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="Weights dtype: float32 (default)|bfloat16|float16."),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--no-bf16", help="bf16 mixed precision."),
    gradient_checkpointing: Optional[bool] = typer.Option(None, "--gradient-checkpointing/--no-gradient-checkpointing", help="Recompute activations in backward to save memory."),
    lora: Optional[bool] = typer.Option(None, "--lora/--full", help="LoRA (PEFT) or full fine-tuning (default)."),
    epochs: Optional[float] = typer.Option(None),
    max_steps: Optional[int] = typer.Option(None, help="Stop after this many optimizer steps (-1: epochs decide)."),
    lr: Optional[float] = typer.Option(None),
    batch_size: Optional[int] = typer.Option(None, help="Per-device batch size (before SymNoise doubling)."),
    grad_accum: Optional[int] = typer.Option(None),
    max_length: Optional[int] = typer.Option(None),
    seed: Optional[int] = typer.Option(None),
    output_dir: Optional[str] = typer.Option(None, help="The run folder."),
    resume: Optional[bool] = typer.Option(None, "--resume", help="Continue the run in --output-dir from its newest complete checkpoint, with the settings it recorded (a differing flag is an error; a finished run is left as is)."),
    skip_bad_rows: Optional[bool] = typer.Option(None, "--skip-bad-rows", help="Skip and count malformed rows instead of stopping."),
    progress: Progress = True,
    as_json: Json = False,
) -> None:
    """Fine-tune with noisy embeddings. With no arguments: SmolLM2-135M on the synthetic suite with SymNoise."""
    flags = {k: v for k, v in locals().items() if k not in ("config", "progress", "as_json")}
    from .config import TrainConfig, load_config_file, merged, nest_flags
    from .run import RunFolder
    from .train import resolve_config
    from .train import train as run_training

    given = nest_flags(flags)
    cfg = _call(TrainConfig.from_sources, config, given)  # unknown or bad options, named
    if cfg.resume:  # what is given, the rest as the run recorded it
        cfg = _call(resolve_config, merged(load_config_file(config) if config else {}, given))
    run_dir = _call(run_training, cfg, progress=progress)
    info = RunFolder(run_dir).read_info()
    _emit(info, as_json, _train_summary(run_dir, info))


def _train_summary(run_dir: Path, info: dict[str, Any]) -> str:
    d = info.get("data", {}).get("train", {})
    noise = info["noise"]
    measured = info.get("noise_measured") or {}
    ratio = measured.get("noise_to_embedding_ratio_mean")
    modal = "".join(f", {k} tokens {measured[f'{k}_noise_ratio_mean']:.4g}" for k in ("text", "vision")
                    if measured.get(f"{k}_noise_ratio_mean") is not None)
    rows = [
        ("run folder", str(run_dir)),
        ("model", info["model_source"]["path"]),
        ("noise", f"{noise['method']} alpha={noise['alpha']} norm_match={noise['norm_match']} "
                  f"mode={noise['symmetric_mode']}"
                  + (f" on={noise['noise_on']}" if "noise_on" in noise else "")),
        ("noise / embedding norm", f"{ratio:.4g} (mean per token, measured{modal})" if ratio is not None else "-"),
        ("data", f"format={info.get('format')} template={info.get('template')} read={d.get('read')} "
                 f"used={d.get('used')} skipped={d.get('skipped')} truncated={d.get('truncated')}"),
        ("steps", str(info.get("global_step"))),
        ("train loss (noisy)", fmt(info.get("train_loss"), ".4f")),
        ("clean held-out loss", fmt(info.get("final_clean_eval_loss"), ".4f")),
        ("tokens/s", f"{info['tokens_per_second']:.0f}" if info.get("tokens_per_second") else "-"),
        ("packing", "yes" if info.get("config", {}).get("packing") else "no"),
        ("time", f"{info['timings_s']['total']:.0f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


@app.command()
def harness(
    model: str = typer.Option(..., help="Run folder, HF model folder, .gguf file or hub id."),
    tasks: str = typer.Option("openllm", help="Comma-separated lm-eval tasks, YAML paths, or the preset 'openllm'."),
    num_fewshot: Optional[int] = typer.Option(None, help="Override every task's shots."),
    limit_per_task: LimitPerTask = None,
    batch_size: str = typer.Option("8", help="Batch size, or 'auto'."),
    device: Device = "auto",
    include_path: IncludePath = None,
    dtype: Dtype = "float32",
    output_dir: Optional[Path] = typer.Option(None, help="Default: RUN/eval for a run folder."),
    seed: Seed = 0,
    progress: Progress = True,
    as_json: Json = False,
) -> None:
    """OpenLLM tasks (ARC, HellaSwag, MMLU, TruthfulQA) through lm-evaluation-harness."""
    from .evaluate.harness import run_harness

    _emit(_call(run_harness, model, tasks, output_dir=output_dir, num_fewshot=num_fewshot,
                limit=_per_task(limit_per_task),
                batch_size=int(batch_size) if batch_size.isdigit() else batch_size,
                device=_device(device), include_path=include_path, dtype=dtype, seed=seed,
                progress=progress), as_json)


@app.command()
def stats(
    files: list[Path] = typer.Argument(..., help="Outputs files (AlpacaEval format) or training data files."),
    words: Optional[str] = typer.Option(None, help="First N words for repetition/diversity, or a preset: alpaca, evol_instruct, sharegpt, openplatypus."),
    as_json: Json = False,
) -> None:
    """Length, whitespace length, 2-gram repetition and log-diversity, as in the paper."""
    from .evaluate.stats import format_stats_table, stats_for_file

    rows = {str(f): _call(stats_for_file, f, words=words) for f in files}
    _emit({k: v.to_dict() for k, v in rows.items()}, as_json, format_stats_table(rows))


@app.command()
def norms(
    output_dir: Path = typer.Option(Path("norms"), help="Where the table, CSV and PNG figures go."),
    dims: str = typer.Option("16,64,256,1024,4096,8192", help="Comma-separated dimensions."),
    samples: str = typer.Option("10,100,1000", help="Comma-separated Monte Carlo sample counts."),
    seed: Seed = 0,
    as_json: Json = False,
) -> None:
    """The paper's noise-norm analysis: E||noise|| of uniform, Gaussian and Bernoulli noise."""
    from .experiments.norms import format_norms_table, norm_analysis, write_norms_report

    def numbers(text: str) -> list[int]:
        return [int(x) for x in text.split(",") if x.strip()]

    analysis = _call(lambda: norm_analysis(dims=numbers(dims), samples=numbers(samples), seed=seed))
    paths = write_norms_report(analysis, output_dir)
    table = format_norms_table(analysis) + "\n\nwritten: " + ", ".join(str(p) for p in paths.values())
    _emit({**analysis.to_dict(), "files": {k: str(v) for k, v in paths.items()}}, as_json, table)


@app.command()
def judge(
    model_outputs: Path = typer.Option(..., help="Model outputs (AlpacaEval format JSON/JSONL)."),
    reference_outputs: Path = typer.Option(..., help="Reference outputs, e.g. the AlpacaEval file with text-davinci-003's outputs."),
    judge_spec: Judge = ...,
    output_dir: Path = typer.Option(..., help="Where annotations.json, leaderboard.json/.md and the cache go."),
    annotator: Annotator = "symnoise-pairwise",
    base_url: BaseUrl = None,
    both_orders: BothOrders = False,
    n_prompts: Optional[int] = typer.Option(None, help="Judge only the first N prompts (default all)."),
    seed: Seed = 0,
    max_retries: int = typer.Option(5, help="Retries of a failed request (openai client)."),
    name: Optional[str] = typer.Option(None, help="Leaderboard row name (default: the outputs' generator)."),
    progress: Progress = True,
    as_json: Json = False,
) -> None:
    """Pairwise judged win rate, length-controlled win rate and AlpacaEval's leaderboard columns."""
    from .evaluate.judge import judge_outputs

    report = _call(judge_outputs, model_outputs, reference_outputs, annotator=annotator,
                   judge=judge_spec, output_dir=output_dir, base_url=base_url, seed=seed,
                   max_items=n_prompts, max_retries=max_retries, name=name, progress=progress,
                   both_orders=both_orders)
    _emit(report, as_json)
    if report.partial:  # some pairs got no verdict: the win rate is not the result
        _fail(report.failure(), code=1)


@app.command("judge-check")
def judge_check(
    judge_spec: Judge = ...,
    reference_outputs: Path = typer.Option(..., help="Reference set whose answers are known good (AlpacaEval format), e.g. alpaca_eval_805.json."),
    annotator: Annotator = "symnoise-pairwise",
    base_url: BaseUrl = None,
    n_prompts: int = typer.Option(60, help="Known pairs, one per prompt (half real-vs-other-answer, half real-vs-first-10-words), each judged in both orders."),
    seed: Seed = 0,
    output_dir: Optional[Path] = typer.Option(None, help="Write judge_check.json and the cache here."),
    both_orders: bool = typer.Option(False, "--both-orders", help="Measure the judge as `judge --both-orders` uses it: accuracy of the order-averaged verdicts (per-verdict accuracy beside it)."),
    progress: Progress = True,
    as_json: Json = False,
) -> None:
    """Measure a judge on pairs whose better side is known: accuracy, position bias, verdict."""
    from .evaluate.judge_check import format_judge_check, run_judge_check

    check = _call(run_judge_check, judge_spec, reference_outputs, base_url=base_url,
                  annotator=annotator, n=n_prompts, seed=seed, output_dir=output_dir,
                  progress=progress, both_orders=both_orders)
    _emit(check, as_json, format_judge_check(check))


@app.command()
def generate(
    model: str = typer.Option("smollm2", help="Run folder, HF model folder, .gguf file, hub id or 'smollm2'."),
    prompts: str = typer.Option(..., help="AlpacaEval JSON (or 'alpaca_eval' from the hub), a JSON/JSONL/Parquet file of prompt rows (Alpaca, chat messages/conversations, strings, {'prompt'}, Self-Instruct instances), or 'synthetic:heldout'."),
    output_file: Optional[Path] = typer.Option(None, help="Output JSON (AlpacaEval model-outputs format); default RUN/generations/<prompts>.json for a run folder."),
    template: Template = None,
    max_new_tokens: int = typer.Option(512, help="Most tokens to generate per prompt (default 512: room for AlpacaEval-style long answers)."),
    batch_size: int = typer.Option(16, help="Prompts per batch (left-padded)."),
    repetition_penalty: float = typer.Option(1.2, help="1.2 as in the paper; 1.0 turns it off."),
    greedy: bool = typer.Option(True, "--greedy/--sample", help="Greedy decoding (the paper) or sampling."),
    temperature: float = typer.Option(0.7, help="Sampling temperature (--sample only)."),
    top_p: float = typer.Option(0.9, help="Nucleus sampling (--sample only)."),
    seed: int = typer.Option(0, help="Sampling seed; also the synthetic suite's seed."),
    generator: Optional[str] = typer.Option(None, "--generator", help="The 'generator' field (default: the model folder's name)."),
    backend: str = typer.Option("transformers", help="transformers|vllm"),
    n_prompts: Optional[int] = typer.Option(None, help="Answer only the first N prompts (default all)."),
    ignore_fields: IgnoreFields = None,
    dtype: Dtype = "float32",
    device: Device = "auto",
    overwrite: Overwrite = False,
    progress: Progress = True,
    as_json: Json = False,
) -> None:
    """Answer a prompt set (resumable) and write AlpacaEval model outputs."""
    from .generate import default_output_path, generate_outputs

    out = output_file or _call(default_output_path, model, prompts)
    _emit(_call(generate_outputs, model, prompts, out, template=template,
                max_new_tokens=max_new_tokens, batch_size=batch_size,
                repetition_penalty=repetition_penalty, greedy=greedy, temperature=temperature,
                top_p=top_p, seed=seed, generator_name=generator, backend=backend,
                limit=n_prompts, dtype=dtype, device=_device(device), overwrite=overwrite,
                progress=progress, ignore_fields=ignore_fields), as_json)


@app.command()
def tasks(
    model: Optional[str] = typer.Option(None, help="Run folder, HF model folder, .gguf file, hub id or 'smollm2' (default)."),
    model_outputs: Optional[Path] = typer.Option(None, help="Score this synthetic outputs file instead of generating."),
    output_dir: Optional[Path] = typer.Option(None, help="Where outputs and scores go (default RUN/eval for a run folder)."),
    n_prompts: Optional[int] = typer.Option(None, help="Held-out prompts (default 240)."),
    seed: int = typer.Option(0, help="Synthetic suite seed."),
    batch_size: int = typer.Option(16),
    max_new_tokens: int = typer.Option(64, help="Most tokens per answer (default 64: the synthetic answers are short)."),
    template: Template = None,
    dtype: Dtype = "float32",
    device: Device = "auto",
    overwrite: Overwrite = False,
    progress: Progress = True,
    as_json: Json = False,
) -> None:
    """Score a model on the synthetic held-out tasks: accuracy per family (95% CI) and format share."""
    from .experiments.eval_steps import run_synthetic_eval, score_synthetic_outputs

    if model_outputs is not None:
        if model is not None:
            _fail("pass either --model or --model-outputs, not both")
        _emit(_call(score_synthetic_outputs, model_outputs, seed=seed), as_json)
        return
    _emit(_call(run_synthetic_eval, model or "smollm2", output_dir=output_dir, n=n_prompts,
                seed=seed, batch_size=batch_size, max_new_tokens=max_new_tokens,
                template=template, progress=progress, overwrite=overwrite, dtype=dtype,
                device=_device(device)), as_json)


@app.command("eval")
def eval_run(
    run_dir: Path = typer.Argument(..., help="A finished run folder (results go to RUN/eval/)."),
    prompts: Optional[str] = typer.Option(None, help="Prompt set: AlpacaEval's JSON file, a JSON/JSONL file, 'alpaca_eval' (Hub) or 'synthetic:heldout' (default)."),
    n_prompts: Optional[int] = typer.Option(None, help="Answer only the first N prompts."),
    ignore_fields: IgnoreFields = None,
    max_new_tokens: int = typer.Option(256, help="Most tokens per answer (default 256; greedy, repetition penalty 1.2)."),
    batch_size: int = typer.Option(16, help="Generation (and harness) batch size."),
    judge: Optional[str] = typer.Option(None, help="Win-rate judge: openai:MODEL or hf:PATH."),
    base_url: BaseUrl = None,
    reference_outputs: Optional[Path] = typer.Option(None, help="Reference outputs to judge against (default: the prompt file's own 'output' fields)."),
    both_orders: BothOrders = False,
    tasks: Optional[str] = typer.Option(None, help="lm-eval tasks (comma-separated) or the preset 'openllm'."),
    include_path: IncludePath = None,
    limit_per_task: LimitPerTask = None,
    words: Optional[str] = typer.Option(None, help="First N words for repetition/diversity, or a preset (default: the run's dataset)."),
    synthetic: bool = typer.Option(True, "--synthetic/--no-synthetic", help="Score the synthetic held-out split."),
    synthetic_n_prompts: Optional[int] = typer.Option(None, help="Synthetic held-out prompts when --prompts is another set (default: --n-prompts up to 240, else 240)."),
    heldout: bool = typer.Option(True, "--heldout/--no-heldout", help="Save the clean loss of every held-out example (heldout_losses.jsonl)."),
    judge_check: bool = typer.Option(True, "--judge-check/--no-judge-check", help="With --judge: check the judge on pairs whose better answer is known."),
    eval_data: Optional[str] = typer.Option(None, "--eval-data", help="Preference runs: a file of pairs to measure instead of the run's held-out pairs."),
    device: Device = "auto",
    progress: Progress = True,
    as_json: Json = False,
) -> None:
    """Evaluate a run: generate, text statistics, synthetic score, per-example held-out loss (preference runs: preference accuracy and reward margin), judge (and its check), harness."""
    from .config import validate
    from .experiments.eval_steps import EvalSettings
    from .experiments.evaluation import evaluate_run, format_eval_summary

    settings = _call(validate, EvalSettings, {
        **{k: v for k, v in locals().items() if k in EvalSettings.model_fields and v is not None},
        "reference": reference_outputs, "harness_tasks": tasks, "device": _device(device),
        "harness_limit": _per_task(limit_per_task), "synthetic_n": synthetic_n_prompts}, "eval")
    summary = _call(evaluate_run, run_dir, settings, progress=progress)
    _emit(summary, as_json, format_eval_summary(summary))


@app.command()
def report(
    runs_dir: Path = typer.Argument(..., help="Folder holding run folders (searched recursively)."),
    output_dir: Optional[Path] = typer.Option(None, help="Where report.md, the CSVs and PNGs go (default RUNS_DIR/report)."),
    as_json: Json = False,
) -> None:
    """Paper-style tables (Markdown + CSV) and figures over many run folders."""
    from .experiments.report import build_report

    _emit(_call(build_report, runs_dir, output_dir), as_json)


@app.command("compare")
def compare_cmd(
    a: str = typer.Argument(..., help="Side A: a run folder, a glob, or a folder of runs; narrow with PATH:method=none,alpha=5,..."),
    b: str = typer.Argument(..., help="Side B, as A."),
    metric: Optional[list[str]] = typer.Option(None, "--metric", help="win_rate, lc_win_rate, heldout_loss, exact_answer, output_length, preference_accuracy, reward_margin (repeatable; default all)."),
    method: Optional[str] = typer.Option(None, help="Filter both sides' runs by noise method."),
    alpha: Optional[float] = typer.Option(None, help="Filter both sides' runs by alpha (no-noise runs have none)."),
    norm_match: Optional[bool] = typer.Option(None, "--norm-match/--no-norm-match", help="Filter by norm matching (Gaussian/Bernoulli/SymNoise)."),
    dataset: Optional[str] = typer.Option(None, help="Filter both sides' runs by training dataset."),
    n_boot: int = typer.Option(2000, help="Bootstrap resamples."),
    confidence: float = typer.Option(0.95, help="Interval coverage."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
    common_seeds: bool = typer.Option(False, "--common-seeds", help="When the sides' seeds differ, pair the seeds both have (else refused)."),
    as_json: Json = False,
) -> None:
    """B − A for every metric both sides have, with a paired-bootstrap interval (stratified by seed)."""
    from .experiments.compare import compare

    result = _call(compare, a, b, metrics=metric, method=method, alpha=alpha,
                   norm_match=norm_match, dataset=dataset, n_boot=n_boot,
                   confidence=confidence, seed=seed, common_seeds=common_seeds)
    _emit(result, as_json)
    if not result.compared:
        raise typer.Exit(1)


@app.command()
def sweep(
    experiment: Path = typer.Argument(..., help="Experiment YAML, or a shipped grid's name: paper_table1, paper_ablation, small_table1, small_ablation, small_alpaca."),
    executor: Optional[str] = typer.Option(None, help="local|ray (default: the file's 'executor', else local)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate, list the points and what each would do; write nothing."),
    only: Optional[str] = typer.Option(None, help="Run only points whose name matches: globs, comma-separated; a plain word matches as a substring."),
    progress: Progress = True,
    as_json: Json = False,
) -> None:
    """Run a grid of trainings and evaluations: one run folder per point, reruns skip what is finished."""
    from .experiments.pipeline import run_experiment

    # the sweep, then the report when the experiment asks for it
    result = _call(run_experiment, experiment, executor=executor, dry_run=dry_run, only=only,
                   progress=progress)
    _emit(result, as_json)
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def demo(
    output_dir: Path = typer.Option(Path("symnoise-demo"), help="Where the three runs and the report go."),
    judge: Optional[str] = typer.Option(None, help="Judge for a win rate against the un-noised run: openai:MODEL (with --base-url) or hf:PATH."),
    base_url: BaseUrl = None,
    steps: Optional[int] = typer.Option(None, help="Optimizer steps per run (default: chosen to fit ~20 minutes on 2 CPU cores)."),
    progress: Progress = True,
    as_json: Json = False,
) -> None:
    """Offline demo: no noise vs NEFTune vs SymNoise on the default model and the synthetic suite, with a report."""
    from .experiments.demo import run_demo

    summary = _call(run_demo, output_dir, judge=judge, base_url=base_url, steps=steps,
                    progress=progress)
    measured = summary.get("measured") or []
    lines = [summary["table"], "", *measured, *([""] if measured else []), summary["scope"], "",
             f"runs and report in {summary['output_dir']}"]
    if summary.get("report"):
        lines.append(f"report: {summary['report']}")
    if summary.get("report_error"):
        lines.append(f"report not built: {summary['report_error']}")
    lines += [f"{row['method']} failed: {row['error'].splitlines()[0]}"
              for row in summary["rows"] if row.get("error")]
    _emit(summary, as_json, "\n".join(lines))
    if any(row["status"] in ("failed", "conflict") for row in summary["rows"]):
        raise typer.Exit(1)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # outside _call: a write of the command itself
        disk = _disk_failure(exc)
        if disk is None:
            raise
        typer.secho(f"error: {disk}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
