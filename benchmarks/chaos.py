"""Chaos benchmark: kill `symnoise train`, `generate` and `judge` at random moments, resume
each, and compare with an uninterrupted run.

    python benchmarks/chaos.py [--n 10] [--seed 0] [--commands train,generate,judge]
        [--work DIR] [--max-tries 3]

Everything is local and small: a tiny random Llama with a word-level tokenizer saved to a
temporary folder (the CLI's --model takes a local folder), the synthetic data, and for
`judge` an OpenAI-compatible stub server started here on 127.0.0.1 (a deterministic
verdict per pair, a few milliseconds per request). Each command runs once uninterrupted
(the reference), then N times: started as a subprocess, killed with SIGKILL (its whole
process group) at a random moment between the end of its imports and 90% of the
reference's duration, then rerun until it exits 0 (at most --max-tries runs; `train`
reruns as the README says, `train --output-dir DIR --resume` alone, then as first
started, in turn; the others resume by themselves).
Each finished run is compared with the reference:

    train     final weights torch.equal; metrics.jsonl (each step once, same values, wall
              times left out); run.json's global_step, train_loss and tokens_seen
    generate  the outputs file's rows (instruction, output, generator), in order
    judge     annotations.json (preference, status, order of every pair); the verdict
              cache holds each question once

and counted as identical, needing a hand fix (no rerun finished), or lost / duplicated /
different (the rerun finished, but something differs: the detail is printed). The exit
status is 0 when every run ended identical.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("train", "generate", "judge")
IMPORTS = {"train": "symnoise.train", "generate": "symnoise.generate",
           "judge": "symnoise.evaluate.judge"}
TRAIN_CONFIG = {"max_steps": 16, "batch_size": 2, "save_steps": 2, "logging_steps": 1,
                "eval_steps": 8, "max_length": 64, "synthetic_train_size": 40,
                "synthetic_heldout_size": 8, "max_eval_examples": 8, "seed": 0,
                "lr_scheduler": "constant", "warmup_ratio": 0.0, "lr": 1e-3}
WALL_TIME_KEYS = ("runtime", "per_second", "total_flos")
N_PAIRS = 300  # judge: pairs of outputs


# ------------------------------------------------------------------ local fixtures
def save_tiny_model(folder: Path) -> None:
    """A random 2-layer Llama and a word-level tokenizer (unknown words -> <unk>)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = ("the a is of to and in for with sort list count words numbers answer question "
             "instruction input output response below task one two three yes no").split()
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for w in words + [str(i) for i in range(10)] + list(".,:;!?()[]{}\"'-+*/=_#"):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(),
        pre_tokenizers.Digits(individual_digits=True)])
    tok.decoder = decoders.WordPiece(prefix="##")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>",
                                        eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
        bos_token_id=1, eos_token_id=2, tie_word_embeddings=False))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def write_pairs(folder: Path) -> tuple[Path, Path]:
    """Model and reference outputs (AlpacaEval format) for the judge."""
    rng = random.Random(0)
    model, ref = [], []
    for i in range(N_PAIRS):
        instruction = f"task {i}: " + " ".join(rng.choice("abcdefgh") for _ in range(6))
        model.append({"instruction": instruction, "output": f"model answer {rng.random()}",
                      "generator": "chaos_model"})
        ref.append({"instruction": instruction, "output": f"reference {rng.random()}",
                    "generator": "chaos_reference"})
    paths = folder / "model_outputs.json", folder / "reference_outputs.json"
    for path, rows in zip(paths, (model, ref), strict=True):
        path.write_text(json.dumps(rows, indent=1))
    return paths


class StubJudge:
    """An OpenAI-compatible /v1/chat/completions on 127.0.0.1: the verdict is a hash of
    the request's messages ("(a)" or "(b)"), after ``delay`` seconds."""

    def __init__(self, delay: float = 0.005) -> None:
        self.requests = 0
        lock, stub = threading.Lock(), self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    stub.requests += 1
                if not self.path.endswith("/chat/completions"):
                    return self._send(404, {"error": "not found"})
                time.sleep(delay)
                try:
                    messages = json.dumps(json.loads(body)["messages"], sort_keys=True)
                except (ValueError, KeyError):  # a request cut short by the kill
                    return self._send(400, {"error": "bad request"})
                label = "(a)" if hashlib.sha256(messages.encode()).digest()[0] % 2 else "(b)"
                self._send(200, {"choices": [{"index": 0, "finish_reason": "stop", "message": {
                    "role": "assistant", "content": label}}]})

            def _send(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client was killed while we answered
                    self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------ running and killing
def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", OPENAI_API_KEY="")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return env


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "symnoise.cli", *args], stdout=out,
                                stderr=subprocess.STDOUT, env=_env(), cwd=log.parent,
                                start_new_session=True)


def run_to_end(args: list[str], log: Path) -> tuple[int, float]:
    """(exit status, seconds) of one run."""
    start = time.monotonic()
    rc = _start(args, log).wait()
    return rc, time.monotonic() - start


def run_and_kill(args: list[str], log: Path, after: float) -> bool:
    """Start, SIGKILL the process group ``after`` seconds in; False when it ended first."""
    proc = _start(args, log)
    try:
        proc.wait(timeout=after)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def import_seconds(module: str) -> float:
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", f"import {module}"], env=_env(), check=True)
    return time.monotonic() - start


# ------------------------------------------------------------------ comparisons
def _metric_rows(run: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
            if line.strip()]
    return [{k: v for k, v in r.items() if not any(w in k for w in WALL_TIME_KEYS)}
            for r in rows]


def compare_train(run: Path, ref: Path) -> list[str]:
    import torch
    from safetensors.torch import load_file

    problems = []
    mine, theirs = load_file(run / "model.safetensors"), load_file(ref / "model.safetensors")
    differ = [k for k in theirs if k not in mine or not torch.equal(mine[k], theirs[k])]
    if differ:
        worst = max((mine[k] - theirs[k]).abs().max().item() for k in differ if k in mine)
        problems.append(f"weights differ in {len(differ)} tensors (max |diff| {worst:.3g})")
    rows, want = _metric_rows(run), _metric_rows(ref)
    steps = [r["step"] for r in rows]
    dup = sorted({s for s in steps if steps.count(s) > sum(r["step"] == s for r in want)})
    lost = sorted({r["step"] for r in want} - set(steps))
    if dup or lost:
        problems.append(f"metrics.jsonl: steps logged too often {dup}, missing {lost}")
    elif sorted(map(json.dumps, rows)) != sorted(map(json.dumps, want)):
        problems.append("metrics.jsonl: values differ")
    info, ref_info = (json.loads((p / "run.json").read_text()) for p in (run, ref))
    for key in ("global_step", "train_loss", "tokens_seen"):
        if info.get(key) != ref_info.get(key):
            problems.append(f"run.json {key} {info.get(key)} != {ref_info.get(key)}")
    return problems


def compare_generate(out: Path, ref: Path) -> list[str]:
    keys = ("instruction", "output", "generator")
    rows = [tuple(r.get(k) for k in keys) for r in json.loads(out.read_text())]
    want = [tuple(r.get(k) for k in keys) for r in json.loads(ref.read_text())]
    if rows == want:
        return []
    lost, extra = len(set(want) - set(rows)), len(rows) - len(set(rows))
    return [f"outputs differ: {len(rows)} rows for {len(want)}, {lost} missing, "
            f"{extra} duplicated"]


def compare_judge(folder: Path, ref: Path) -> list[str]:
    keys = ("instruction", "preference", "status", "order", "raw_completion")
    rows = [tuple(a.get(k) for k in keys)
            for a in json.loads((folder / "annotations.json").read_text())]
    want = [tuple(a.get(k) for k in keys)
            for a in json.loads((ref / "annotations.json").read_text())]
    problems = [] if rows == want else [
        f"annotations differ: {sum(a != b for a, b in zip(rows, want, strict=False))} of "
        f"{len(want)} pairs, {len(rows)} rows"]
    cache = [(a["instruction"], a["output_1"], a["output_2"]) for a in _cache(folder)]
    if len(cache) != len(set(cache)):
        problems.append(f"verdict cache: {len(cache) - len(set(cache))} questions twice")
    return problems


def _cache(folder: Path) -> list[dict]:
    """The entries of the judge's annotation cache (alpaca_eval's) in ``folder``."""
    return [a for path in folder.glob("annotations_cache_*.json")
            for a in json.loads(path.read_text())]


# ------------------------------------------------------------------ one command
@dataclass
class Command:
    """How to run one command into ``dest`` (first run, then reruns) and compare it."""

    name: str
    args: Callable[[Path], list[str]]
    rerun: Callable[[Path], list[str]]
    result: Callable[[Path], Path]
    compare: Callable[[Path, Path], list[str]]
    progress: Callable[[Path], str]  # what a killed run had written


def _lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.is_file() else 0


def _checkpoints(run: Path) -> str:
    steps = sorted(int(p.name.split("-")[1]) for p in (run / "checkpoints").glob("checkpoint-*")
                   if p.name.split("-")[1].isdigit())
    return "checkpoints: " + (", ".join(map(str, steps)) or "none")


@dataclass
class Tally:
    identical: int = 0
    hand_fix: int = 0
    different: int = 0
    lines: list[str] = field(default_factory=list)


def make_commands(work: Path, model: Path, stub: StubJudge | None) -> dict[str, Command]:
    config = work / "train.yaml"
    config.write_text("".join(f"{k}: {v}\n" for k, v in TRAIN_CONFIG.items()))
    train = ["train", "--config", str(config), "--model", str(model), "--data", "synthetic",
             "--method", "symnoise", "--no-progress", "--output-dir"]
    gen = ["generate", "--model", str(model), "--prompts", "synthetic:heldout",
           "--n-prompts", "40", "--max-new-tokens", "24", "--batch-size", "4",
           "--device", "cpu", "--no-progress", "--output-file"]
    commands = {
        "train": Command("train", lambda d: [*train, str(d)],
                         lambda d: ["train", "--output-dir", str(d), "--resume", "--no-progress"], lambda d: d, compare_train,
                         _checkpoints),
        "generate": Command("generate", lambda d: [*gen, str(d / "outputs.json")],
                            lambda d: [*gen, str(d / "outputs.json")],
                            lambda d: d / "outputs.json", compare_generate,
                            lambda d: f"{_lines(d / 'outputs.partial.jsonl')} answers "
                                      "journaled"),
    }
    if stub is not None:
        model_outputs, reference = write_pairs(work)
        judge = ["judge", "--model-outputs", str(model_outputs), "--reference-outputs",
                 str(reference), "--judge", "openai:stub", "--base-url", stub.url,
                 "--no-progress", "--output-dir"]
        commands["judge"] = Command("judge", lambda d: [*judge, str(d)],
                                    lambda d: [*judge, str(d)], lambda d: d, compare_judge,
                                    lambda d: f"{len(_cache(d))} of {N_PAIRS} verdicts "
                                              "cached")
    return commands


def chaos_run(cmd: Command, dest: Path, kill_at: float, reference: Path,
              max_tries: int) -> tuple[str, str]:
    """Kill one run at ``kill_at`` seconds, rerun until it finishes; (outcome, detail)."""
    dest.mkdir(parents=True)
    log = dest.parent / f"{dest.name}.log"
    if not run_and_kill(cmd.args(dest), log, kill_at):
        return "identical" if not cmd.compare(cmd.result(dest), reference) else "different", \
            "finished before the kill"
    at_kill = cmd.progress(dest)
    for attempt in range(1, max_tries + 1):  # the resume command, else the first one again
        rc, _ = run_to_end(cmd.rerun(dest) if attempt % 2 else cmd.args(dest), log)
        if rc == 0:
            try:
                problems = cmd.compare(cmd.result(dest), reference)
            except Exception as exc:  # noqa: BLE001 - a result that cannot be read
                problems = [f"cannot compare: {type(exc).__name__}: {exc}"]
            detail = f"{at_kill}; resumed in {attempt} run(s)"
            return ("different", f"{detail}: " + "; ".join(problems)) if problems \
                else ("identical", detail)
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
    return "hand fix", f"{at_kill}; {max_tries} reruns failed; last: {tail[0][:160]}"


def run_command(cmd: Command, work: Path, n: int, rng: random.Random, max_tries: int) -> Tally:
    root = work / cmd.name
    root.mkdir()
    startup = import_seconds(IMPORTS[cmd.name])
    rc, total = run_to_end(cmd.args(root / "reference"), root / "reference.log")
    if rc != 0:
        raise SystemExit(f"{cmd.name}: the uninterrupted run failed (exit {rc}); see "
                         f"{root / 'reference.log'}")
    reference = cmd.result(root / "reference")
    tally = Tally()
    print(f"{cmd.name}: uninterrupted run {total:.1f} s (imports {startup:.1f} s)", flush=True)
    for i in range(1, n + 1):
        kill_at = rng.uniform(min(startup, 0.5 * total), 0.9 * total)
        outcome, detail = chaos_run(cmd, root / f"run{i}", kill_at, reference, max_tries)
        tally.identical += outcome == "identical"
        tally.hand_fix += outcome == "hand fix"
        tally.different += outcome == "different"
        line = f"  {cmd.name} {i}/{n}: killed at {kill_at:.1f} s -> {outcome} ({detail})"
        tally.lines.append(line)
        print(line, flush=True)
    return tally


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10, help="kills per command")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    p.add_argument("--commands", default=",".join(COMMANDS))
    p.add_argument("--work", type=Path, default=None, help="work folder (default: temporary)")
    p.add_argument("--max-tries", type=int, default=3, help="reruns before a hand fix")
    args = p.parse_args(argv)
    names = [c.strip() for c in args.commands.split(",") if c.strip()]
    if unknown := set(names) - set(COMMANDS):
        p.error(f"unknown commands {sorted(unknown)}; choose from {', '.join(COMMANDS)}")
    work = args.work or Path(tempfile.mkdtemp(prefix="symnoise-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    save_tiny_model(work / "model")
    stub = StubJudge() if "judge" in names else None
    rng = random.Random(args.seed)
    try:
        commands = make_commands(work, work / "model", stub)
        tallies = {name: run_command(commands[name], work, args.n, rng, args.max_tries)
                   for name in names}
    finally:
        if stub is not None:
            stub.close()
    print(f"\nchaos: {args.n} kills per command, seed {args.seed}, work folder {work}")
    print(f"{'command':<10} {'identical':>10} {'hand fix':>9} {'lost/dup/different':>19}")
    for name, t in tallies.items():
        print(f"{name:<10} {t.identical:>7}/{args.n:<2} {t.hand_fix:>9} {t.different:>19}")
    return 0 if all(t.identical == args.n for t in tallies.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
