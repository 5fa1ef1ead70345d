"""The ``symnoise`` command line: parse, call, print."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer

app = typer.Typer(
    name="symnoise",
    help="Noisy-embedding instruction fine-tuning (SymNoise, NEFTune, Gaussian, Bernoulli) "
    "and paper-style evaluation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _emit(result: Any, as_json: bool, table: str | None = None) -> None:
    """Print one JSON object (``--json``) or a readable table."""
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
    elif table is not None:
        typer.echo(table)


def _offline_defaults() -> None:
    # Offline by default: nothing reaches a hub unless the user turns it on.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@app.command()
def train(
    config: Optional[Path] = typer.Option(None, "--config", help="YAML config (flags override it); a preset name such as 'alpaca' works too."),
    model: Optional[str] = typer.Option(None, help="Hub id, local HF folder, .gguf file or 'smollm2' (default)."),
    data: Optional[str] = typer.Option(None, help="JSON/JSONL/Parquet file, hub id, or 'synthetic' (default)."),
    format: Optional[str] = typer.Option(None, "--format", help="auto|alpaca|evol_instruct|sharegpt|openplatypus"),
    template: Optional[str] = typer.Option(None, help="alpaca|vicuna|chat (default: the paper's choice for the format)."),
    method: Optional[str] = typer.Option(None, help="none|uniform (neftune)|gaussian|bernoulli|symnoise"),
    alpha: Optional[float] = typer.Option(None, help="Noise alpha (scale alpha/sqrt(L*d))."),
    norm_match: Optional[bool] = typer.Option(None, "--norm-match/--no-norm-match", help="Divide gaussian/bernoulli/symnoise by sqrt(3)."),
    symmetric_mode: Optional[str] = typer.Option(None, help="concat|sequential (symnoise only)."),
    lora: Optional[bool] = typer.Option(None, "--lora/--full", help="LoRA (PEFT) or full fine-tuning (default)."),
    epochs: Optional[float] = typer.Option(None),
    max_steps: Optional[int] = typer.Option(None, help="Stop after this many optimizer steps (-1: epochs decide)."),
    lr: Optional[float] = typer.Option(None),
    batch_size: Optional[int] = typer.Option(None, help="Per-device batch size (before SymNoise doubling)."),
    grad_accum: Optional[int] = typer.Option(None),
    max_length: Optional[int] = typer.Option(None),
    seed: Optional[int] = typer.Option(None),
    output_dir: Optional[str] = typer.Option(None, help="The run folder."),
    resume: Optional[bool] = typer.Option(None, "--resume", help="Continue from the last checkpoint in --output-dir."),
    skip_bad_rows: Optional[bool] = typer.Option(None, "--skip-bad-rows", help="Skip and count malformed rows instead of stopping."),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as one JSON object."),
) -> None:
    """Fine-tune with noisy embeddings. With no arguments: SmolLM2-135M on the synthetic suite with SymNoise."""
    _offline_defaults()
    from .config import TrainConfig

    flags = dict(
        model=model, data=data, format=format, template=template, method=method, alpha=alpha,
        norm_match=norm_match, symmetric_mode=symmetric_mode, lora=lora, epochs=epochs,
        max_steps=max_steps, lr=lr, batch_size=batch_size, grad_accum=grad_accum,
        max_length=max_length, seed=seed, output_dir=output_dir, resume=resume,
        skip_bad_rows=skip_bad_rows,
    )
    try:
        cfg = TrainConfig.from_sources(config, flags)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    from .train import train as run_training

    try:
        run_dir = run_training(cfg)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        _fail(str(exc))
    info = json.loads((run_dir / "run.json").read_text())
    _emit(info, as_json, _train_summary(run_dir, info))


def _train_summary(run_dir: Path, info: dict[str, Any]) -> str:
    d = info.get("data", {}).get("train", {})
    rows = [
        ("run folder", str(run_dir)),
        ("model", info["model_source"]["path"]),
        ("noise", f"{info['noise']['method']} alpha={info['noise']['alpha']} "
                  f"norm_match={info['noise']['norm_match']} mode={info['noise']['symmetric_mode']}"),
        ("data", f"format={info.get('format')} template={info.get('template')} read={d.get('read')} "
                 f"used={d.get('used')} skipped={d.get('skipped')} truncated={d.get('truncated')}"),
        ("steps", str(info.get("global_step"))),
        ("train loss (noisy)", f"{info.get('train_loss'):.4f}" if info.get("train_loss") is not None else "-"),
        ("clean held-out loss", f"{info['final_clean_eval_loss']:.4f}" if info.get("final_clean_eval_loss") is not None else "-"),
        ("tokens/s", f"{info['tokens_per_second']:.0f}" if info.get("tokens_per_second") else "-"),
        ("time", f"{info['timings_s']['total']:.0f} s"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


@app.command()
def generate(
    model: str = typer.Option("smollm2", help="Run folder, HF model folder, .gguf file, hub id or 'smollm2'."),
    prompts: str = typer.Option(..., help="AlpacaEval JSON (or 'alpaca_eval' from the hub), a JSON/JSONL of instructions, or 'synthetic:heldout'."),
    output: Path | None = typer.Option(None, help="Output JSON (AlpacaEval model-outputs format); default RUN/generations/<prompts>.json for a run folder."),
    template: str | None = typer.Option(None, help="alpaca|vicuna|chat (default: the run's training template, else alpaca)."),
    max_new_tokens: int = typer.Option(512, help="Most tokens to generate per prompt."),
    batch_size: int = typer.Option(16, help="Prompts per batch (left-padded)."),
    repetition_penalty: float = typer.Option(1.2, help="1.2 as in the paper; 1.0 turns it off."),
    greedy: bool = typer.Option(True, "--greedy/--sample", help="Greedy decoding (the paper) or sampling."),
    temperature: float = typer.Option(0.7, help="Sampling temperature (--sample only)."),
    top_p: float = typer.Option(0.9, help="Nucleus sampling (--sample only)."),
    seed: int = typer.Option(0, help="Sampling seed; also the synthetic suite's seed."),
    generator: str | None = typer.Option(None, "--generator", help="The 'generator' field (default: the model folder's name)."),
    backend: str = typer.Option("transformers", help="transformers|vllm"),
    limit: int | None = typer.Option(None, help="Answer only the first N prompts."),
    dtype: str = typer.Option("float32", help="float32|bfloat16|float16|auto"),
    device: str | None = typer.Option(None, help="cpu, cuda, cuda:1, ... (default: cuda when available)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard earlier outputs in --output instead of resuming."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
) -> None:
    """Answer a prompt set (resumable) and write AlpacaEval model outputs."""
    _offline_defaults()
    from .data import DataError
    from .generate import default_output_path, generate_outputs

    try:
        out = output or default_output_path(model, prompts)
        report = generate_outputs(
            model, prompts, out, template=template, max_new_tokens=max_new_tokens,
            batch_size=batch_size, repetition_penalty=repetition_penalty, greedy=greedy,
            temperature=temperature, top_p=top_p, seed=seed, generator_name=generator,
            backend=backend, limit=limit, dtype=dtype, device=device, overwrite=overwrite,
            progress=progress,
        )
    except (DataError, ValueError, FileNotFoundError, ImportError) as exc:
        _fail(str(exc))
    _emit(report.to_dict(), as_json, report.format_table())


@app.command()
def tasks(
    model: str | None = typer.Option(None, help="Run folder, HF model folder, .gguf file, hub id or 'smollm2' (default)."),
    outputs: Path | None = typer.Option(None, help="Score this synthetic outputs file instead of generating."),
    output_dir: Path | None = typer.Option(None, help="Where outputs and scores go (default RUN/eval for a run folder)."),
    n: int | None = typer.Option(None, help="Held-out prompts (default 240)."),
    seed: int = typer.Option(0, help="Synthetic suite seed."),
    batch_size: int = typer.Option(16),
    max_new_tokens: int = typer.Option(64),
    template: str | None = typer.Option(None, help="alpaca|vicuna|chat (default: the run's training template, else alpaca)."),
    dtype: str = typer.Option("float32", help="float32|bfloat16|float16|auto"),
    device: str | None = typer.Option(None, help="cpu, cuda, ... (default: cuda when available)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Regenerate instead of resuming."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    as_json: bool = typer.Option(False, "--json", help="Print the scores as one JSON object."),
) -> None:
    """Score a model on the synthetic held-out tasks: accuracy per family (95% CI) and format share."""
    _offline_defaults()
    from .data import DataError
    from .evaluate.tasks import run_synthetic_eval, score_synthetic_outputs

    try:
        if outputs is not None:
            if model is not None:
                _fail("pass either --model or --outputs, not both")
            report = score_synthetic_outputs(outputs, seed=seed)
        else:
            report = run_synthetic_eval(
                model or "smollm2", output_dir=output_dir, n=n, seed=seed,
                batch_size=batch_size, max_new_tokens=max_new_tokens, template=template,
                progress=progress, overwrite=overwrite, dtype=dtype, device=device,
            )
    except (DataError, ValueError, FileNotFoundError, ImportError) as exc:
        _fail(str(exc))
    _emit(report.to_dict(), as_json, report.format_table())


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
