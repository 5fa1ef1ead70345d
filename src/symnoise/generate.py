"""Generation: answer a set of prompts with a model, in AlpacaEval's model-outputs format.

``generate_outputs(model, prompts, output)`` renders every prompt with the model's training
template, decodes the paper's way (greedy, repetition penalty 1.2, stop at EOS) in batches
with left padding, and writes a JSON list of ``{"instruction", "output", "generator",
"dataset", "row"}`` (plus ``"input"`` when non-empty, ``"instance"`` for an instance row,
and the row's ``"id"``, ``"family"``, ``"answer"``, ``"phrasing"``) that
``alpaca_eval --model_outputs`` reads as is.

Prompts (:func:`load_prompts`): ``alpaca_eval`` (the AlpacaEval set from the Hub, when one
is reachable); a local JSON / JSONL / Parquet file or folder of prompt rows;
``synthetic:heldout`` / ``synthetic:train`` (the built-in suite); or a list of rows. The
row shapes (AlpacaEval/Alpaca, strings, ``{"prompt"}``, chat ``messages``/``conversations``,
``instances``), the fields each reads and the ``row``/``instance`` join keys of the outputs
are :mod:`symnoise.data.prompts`'s; a field no shape reads stops the run unless
``ignore_fields`` names it.

Resuming and crash safety: answers are appended to ``OUT.partial.jsonl`` (with their prompt
index), flushed and fsync'ed after every batch, so a crash loses at most the batch in flight.
At the end the journal is consolidated into ``OUT`` (atomically, in input order) and removed;
``OUT.meta.json`` records the model, template, decoding settings and counts. A rerun
generates only the prompts not answered yet in ``OUT`` (entry ``i`` answers prompt ``i``) or
the journal; an answer that does not match its prompt (instruction, input, row and
instance), or comes from another generator or other decoding settings, raises unless
``overwrite=True``. ``limit=N`` answers the first N prompts; ``OUT`` holds the longest run
of answered prompts from the first one, answers past a gap stay in the journal for a later
run.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._io import append_journal, fmt, read_journal
from ._io import write_json_atomic as _write_json
from ._io import write_text_atomic as _atomic_write_text
from .data.formats import DataError
from .data.prompts import Prompt, PromptSet, check_template, read_prompts, render_prompt
from .data.spec import parse_data_spec
from .decoding import Decoding, Generation, TransformersBackend, VLLMBackend, encode_prompts
from .decoding import check_count as _check_count
from .decoding import import_vllm as _import_vllm

logger = logging.getLogger(__name__)

__all__ = ["ALPACA_EVAL_HUB_ID", "BACKENDS", "Decoding", "GenerateReport", "Generation",
           "Prompt", "PromptSet", "TransformersBackend", "VLLMBackend", "default_generator_name",
           "default_output_path", "encode_prompts", "generate_outputs", "journal_path",
           "load_prompts", "meta_path", "read_outputs"]

ALPACA_EVAL_HUB_ID = "tatsu-lab/alpaca_eval"
ALPACA_EVAL_NAMES = ("alpaca_eval", ALPACA_EVAL_HUB_ID)  # the set on the Hub
BACKENDS = ("transformers", "vllm")
DEFAULT_TEMPLATE = "alpaca"
_JOURNAL_ONLY = ("index", "new_tokens", "hit_eos")


def _load_alpaca_eval_hub() -> list[dict[str, Any]]:
    try:
        import datasets

        return datasets.load_dataset(ALPACA_EVAL_HUB_ID, "alpaca_eval", split="eval").to_list()
    except Exception as exc:  # noqa: BLE001 - offline, removed script, ...
        raise FileNotFoundError(
            f"could not load the AlpacaEval set from the Hub ({ALPACA_EVAL_HUB_ID}: "
            f"{type(exc).__name__}: {str(exc)[:200]}). Offline? Pass a local copy instead: "
            "AlpacaEval's JSON (a list of objects with 'instruction' and 'dataset'), e.g. "
            "its results/text_davinci_003/model_outputs.json") from None


def load_prompts(source: str | os.PathLike[str] | Sequence[Any], *, limit: int | None = None,
                 seed: int = 0, ignore_fields: str | Sequence[str] | None = None) -> PromptSet:
    """Read a prompt set (see the module docstring and :func:`read_prompts`).

    Every row is checked, also past ``limit``: a bad row raises DataError naming the file
    and the row (0-based index of the record); fields no shape reads raise one DataError
    listing them unless ``ignore_fields`` names them. ``limit`` keeps the first N prompts.
    ``seed`` is the synthetic suite's seed.
    """
    from .data.sources import load_records

    _check_count("limit", limit, 0, optional=True)
    text = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    if text is not None and text.strip().lower() in ALPACA_EVAL_NAMES and not Path(
            text).exists():
        records, name, default_dataset = _load_alpaca_eval_hub(), ALPACA_EVAL_HUB_ID, "alpaca_eval"
    else:
        synthetic = text is not None and parse_data_spec(text).is_synthetic
        records, name = load_records(source, split="heldout" if synthetic else "train",
                                     synthetic_seed=seed)
        default_dataset = (f"synthetic_{'train' if name.endswith('train') else 'heldout'}"
                           if synthetic else Path(name).stem if text is not None else "prompts")
    if not records:
        raise DataError("no prompts in it", file=name)
    prompts = read_prompts(records, name, default_dataset, ignore_fields=ignore_fields)
    if limit is not None:
        prompts.prompts = prompts.prompts[:limit]
    return prompts


def journal_path(output: str | Path) -> Path:
    """The journal written while generating into ``output``."""
    return Path(output).with_suffix(".partial.jsonl")


def meta_path(output: str | Path) -> Path:
    """The settings/counts record written beside ``output``."""
    return Path(output).with_suffix(".meta.json")


def read_outputs(path: str | Path) -> list[dict[str, Any]]:
    """Entries of a model-outputs file (:func:`symnoise.outputs.read_outputs`): objects with
    ``instruction`` and ``output``; DataError naming the file and row otherwise."""
    from .outputs import OutputsError
    from .outputs import read_outputs as _read

    try:
        return _read(path)
    except OutputsError as exc:
        raise DataError(str(exc)) from None


def _check_answer_row(row: Mapping[str, Any], prompts: Sequence[Prompt], i: int, where: str,
                      generator: str, hint: str) -> None:
    """Raise DataError (prefixed with ``where``) unless ``row`` answers prompt ``i``."""
    if i >= len(prompts):
        problem = (f"answers prompt {i}, but the prompt set has only {len(prompts)} prompts "
                   "(it was written for other prompts)")
    elif not prompts[i].matches(row):
        problem = (f"does not answer prompt {i}: instruction/input/row/instance differ "
                   f"({str(row.get('instruction'))[:60]!r} vs {prompts[i].instruction[:60]!r}); "
                   "it was written for other prompts")
    elif row.get("generator") not in (None, generator):
        problem = f"was generated by {row.get('generator')!r}, not {generator!r}"
    else:
        return
    raise DataError(f"{where}: {problem}; {hint}")


def _read_journal(path: Path, prompts: Sequence[Prompt], generator: str,
                  hint: str) -> tuple[dict[int, dict[str, Any]], int]:
    """Answers in the journal by prompt index, and the number of torn lines ignored."""
    rows, torn = read_journal(path, error=DataError)
    answers: dict[int, dict[str, Any]] = {}
    for lineno, row in rows:
        if not (isinstance(row, dict) and isinstance(row.get("index"), int)
                and isinstance(row.get("output"), str)):
            raise DataError(f"line {lineno}: not a journal record", file=str(path))
        _check_answer_row(row, prompts, row["index"], f"{path} line {lineno}", generator, hint)
        answers[row["index"]] = row
    return answers, torn


@dataclass
class GenerateReport:
    """What :func:`generate_outputs` did.

    n_prompts: prompts asked for (after ``limit``); n_generated: answered in this call;
    n_resumed: already answered before it; n_written: entries in the output file;
    n_hit_max_tokens: answers of this call cut by ``max_new_tokens`` (no EOS);
    new_tokens: tokens generated in this call (EOS included); rates are over the
    generation time (model loading excluded), wall_time_s is the whole call.
    mean_new_tokens: over this call's answers; mean_output_words: over all ``n_prompts``
    answers (whitespace-separated words).
    """

    output: str
    generator: str
    model: str
    template: str
    backend: str
    source: str
    n_prompts: int
    n_generated: int
    n_resumed: int
    n_written: int
    n_hit_max_tokens: int
    new_tokens: int
    wall_time_s: float
    generation_time_s: float
    prompts_per_s: float | None
    tokens_per_s: float | None
    mean_new_tokens: float | None
    mean_output_words: float | None
    batch_size: int
    decoding: dict[str, Any]
    journal_lines_ignored: int = 0
    pad_token: str = ""
    prompt_shapes: str = ""
    ignored_fields: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format_table(self) -> str:
        d = self.decoding
        rows = [("output", self.output), ("generator", self.generator), ("model", self.model),
                ("prompts", f"{self.source} ({self.n_prompts})"),
                ("prompt shapes", self.prompt_shapes), ("template", self.template),
                ("decoding", f"{'greedy' if d.get('greedy') else 'sampling'} "
                             f"repetition_penalty={d.get('repetition_penalty')} "
                             f"max_new_tokens={d.get('max_new_tokens')}"),
                ("backend", f"{self.backend} batch_size={self.batch_size}"),
                ("generated now", self.n_generated), ("resumed", self.n_resumed),
                ("cut at max_new_tokens", self.n_hit_max_tokens),
                ("tokens generated", self.new_tokens),
                ("prompts/s", fmt(self.prompts_per_s, ".2f")),
                ("tokens/s", fmt(self.tokens_per_s, ".1f")),
                ("mean new tokens", fmt(self.mean_new_tokens, ".1f")),
                ("mean output words", fmt(self.mean_output_words, ".1f")),
                ("wall time", f"{self.wall_time_s:.1f} s")]
        if self.ignored_fields:
            rows.append(("ignored fields", ", ".join(
                f"{k} ({n} rows)" for k, n in self.ignored_fields.items())))
        if self.journal_lines_ignored:
            rows.append(("journal lines ignored", self.journal_lines_ignored))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def default_generator_name(source: Any) -> str:
    """The run folder's (or model folder's / GGUF file's / hub repo's) name."""
    if source.gguf_file:
        return Path(source.gguf_file).stem
    if source.kind in ("run", "hf_dir"):
        return Path(source.path).name
    return str(source.path).rstrip("/").split("/")[-1]


def default_output_path(model: str | os.PathLike[str], prompts: Any) -> Path:
    """``RUN/generations/<prompt set>.json`` for a run folder; ValueError otherwise."""
    from .models import resolve_model

    source = resolve_model(model)
    if source.kind != "run":
        raise ValueError(f"--model {model!s} is not a run folder: pass --output-file FILE")
    text = os.fspath(prompts) if isinstance(prompts, (str, os.PathLike)) else ""
    stem = Path(text).stem if text and Path(text).exists() else text.split("/")[-1]
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "prompts"
    return Path(source.path) / "generations" / f"{stem}.json"


def _check_call(backend: str, batch_size: int, limit: int | None) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    _check_count("batch_size", batch_size)
    _check_count("limit", limit, 0, optional=True)
    if backend == "vllm":
        _import_vllm()


@dataclass
class _Who:
    """The model's identity, known before anything is loaded."""

    loaded: bool
    source: Any  # the ModelSource, None for a loaded model
    description: str
    generator: str
    template: str


def _identify(model: Any, tokenizer: Any, backend: str, template: str | None,
              generator_name: str | None) -> _Who:
    if not isinstance(model, (str, os.PathLike)):
        if tokenizer is None:
            raise ValueError("a loaded model needs tokenizer= as well")
        if backend == "vllm":
            raise ValueError("backend='vllm' loads the model itself: pass a model path, not a "
                             "loaded model")
        desc = getattr(getattr(model, "config", None), "name_or_path", "") or type(
            model).__name__
        return _Who(True, None, str(desc), generator_name or Path(str(desc)).name or "model",
                    template or DEFAULT_TEMPLATE)
    from .models import resolve_model

    source = resolve_model(model)
    if backend == "vllm" and source.gguf_file:
        raise ValueError("backend='vllm' takes a Hugging Face model folder, run folder or "
                         "hub id, not a GGUF file; use backend='transformers'")
    return _Who(False, source, str(source.describe()),
                generator_name or default_generator_name(source),
                template or source.template or DEFAULT_TEMPLATE)


def _earlier_answers(output: Path, prompts: Sequence[Prompt], generator: str,
                     settings: Mapping[str, Any], overwrite: bool
                     ) -> tuple[dict[int, dict[str, Any]], int]:
    """Answers already in ``output`` and its journal, by prompt index (``overwrite``
    deletes them first), and the number of torn journal lines ignored. Raises when they
    were made with other settings, for other prompts or by another generator."""
    journal, meta = journal_path(output), meta_path(output)
    hint = f"pass overwrite=True (--overwrite) or another output than {output}"
    for p in (output, journal, meta) if overwrite else ():
        p.unlink(missing_ok=True)
    if meta.is_file() and (output.exists() or journal.exists()):
        try:
            old = json.loads(meta.read_text(encoding="utf-8")).get("settings", {})
        except json.JSONDecodeError:
            old = {}
        if old and old != settings:
            raise ValueError(f"{output} holds outputs made with other settings ({old}); now "
                             f"{settings}: {hint}")
    answered = dict(enumerate(read_outputs(output))) if output.exists() else {}
    for i, row in answered.items():
        _check_answer_row(row, prompts, i, f"{output} row {i}", generator, hint)
    from_journal, torn = _read_journal(journal, prompts, generator, hint)
    for i, row in from_journal.items():
        answered.setdefault(i, row)
    return answered, torn


def _engine(who: _Who, model: Any, tok: Any, decoding: Decoding, backend: str, dtype: str,
            device: str | None) -> tuple[Any, str]:
    """Load what is needed to generate: ``(backend engine, pad token choice)``."""
    from .models import default_device, ensure_pad_token, load_model

    if backend == "vllm":  # a path, never a loaded model (_identify)
        return VLLMBackend(who.source.path, decoding, dtype), ensure_pad_token(tok)
    if not who.loaded:
        model = load_model(who.source, dtype=dtype, device=default_device(device))
    elif device:
        model.to(device)
    pad_choice = ensure_pad_token(tok, model)
    return TransformersBackend(model, tok, decoding), pad_choice


def _generate_batches(engine: Any, todo: Sequence[Prompt], texts: Sequence[str],
                      ids: Sequence[Sequence[int]], journal: Path, generator: str,
                      batch_size: int, progress: bool,
                      answered: dict[int, dict[str, Any]]) -> float:
    """Answer ``todo`` longest prompt first, batch by batch, appending every batch to the
    journal (flushed and fsync'ed) and to ``answered``; returns the seconds it took."""
    from tqdm.auto import tqdm

    order = sorted(range(len(todo)), key=lambda k: -len(ids[k]))  # longest first
    t0, n_tokens = time.perf_counter(), 0
    with tqdm(total=len(todo), desc=f"generate {generator}", unit="prompt", file=sys.stderr,
              dynamic_ncols=True, disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            gens = engine.generate([texts[k] for k in chunk], [ids[k] for k in chunk])
            for k, g in zip(chunk, gens, strict=True):
                answered[todo[k].index] = {"index": todo[k].index,
                                           **todo[k].entry(g.text, generator),
                                           "new_tokens": g.new_tokens, "hit_eos": g.hit_eos}
            append_journal(journal, (answered[todo[k].index] for k in chunk))
            bar.update(len(chunk))
            n_tokens += sum(g.new_tokens for g in gens)
            rate = n_tokens / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix({"tok/s": f"{rate:.1f}"}, refresh=False)
    return time.perf_counter() - t0


def _consolidate(output: Path, answered: Mapping[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """Write the longest run of answered prompts from the first one to ``output``; answers
    past a gap stay in the journal (which is removed when none are left)."""
    journal = journal_path(output)
    n_prefix = 0
    while n_prefix in answered:
        n_prefix += 1
    entries = [{k: v for k, v in answered[i].items() if k not in _JOURNAL_ONLY}
               for i in range(n_prefix)]
    _write_json(output, entries)
    leftovers = [answered[i] for i in sorted(answered) if i >= n_prefix]
    if leftovers:
        _atomic_write_text(journal, "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                            for r in leftovers))
    elif journal.exists():
        journal.unlink()
    return entries


def generate_outputs(
    model: Any, prompts: Any, output: str | Path, *,
    template: str | None = None, max_new_tokens: int = 512, batch_size: int = 16,
    repetition_penalty: float = 1.2, greedy: bool = True, generator_name: str | None = None,
    backend: str = "transformers", limit: int | None = None, dtype: str = "float32",
    device: str | None = None, progress: bool = True, tokenizer: Any = None, seed: int = 0,
    temperature: float = 0.7, top_p: float = 0.9, overwrite: bool = False,
    ignore_fields: str | Sequence[str] | None = None,
) -> GenerateReport:
    """Answer ``prompts`` with ``model`` and write AlpacaEval model outputs to ``output``.

    model: a ``--model`` value (run folder, model folder, ``.gguf``, ``smollm2``, hub id), or
        a loaded ``PreTrainedModel`` together with ``tokenizer=``.
    prompts: a prompt source or a list of records (:func:`load_prompts`).
    template: default the run's training template (``run.json``), else ``alpaca``.
    greedy/repetition_penalty/max_new_tokens: decoding (the paper's by default);
        ``temperature``/``top_p``/``seed`` for sampling (``greedy=False``).
    generator_name: the ``generator`` field; default the model folder's name. limit: answer
        only the first N prompts. overwrite: discard earlier outputs in ``output`` instead
        of resuming (module docstring). progress: a progress bar on stderr.
    ignore_fields: prompt-row fields to drop on purpose (listed in the report); any other
        field no prompt shape reads is an error (:mod:`symnoise.data.prompts`).
    A chat row of more than one user turn needs ``template="chat"``; under ``alpaca`` or
    ``vicuna`` a one-turn chat row is rendered as its instruction.

    Raises DataError (bad prompt row, output/journal for other prompts or by another
    generator), ValueError (settings), ImportError (vllm missing), FileNotFoundError.
    """
    t_start = time.perf_counter()
    decoding = Decoding(max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty,
                        greedy=greedy, temperature=temperature, top_p=top_p, seed=seed)
    _check_call(backend, batch_size, limit)
    prompt_set = load_prompts(prompts, seed=seed, ignore_fields=ignore_fields)
    all_prompts, source_name = prompt_set.prompts, prompt_set.source
    n_selected = len(all_prompts) if limit is None else min(limit, len(all_prompts))
    who = _identify(model, tokenizer, backend, template, generator_name)
    check_template(prompt_set, who.template)
    output = Path(output).expanduser()
    settings = {"template": who.template, **decoding.settings()}
    answered, torn = _earlier_answers(output, all_prompts, who.generator, settings, overwrite)
    todo = [p for p in all_prompts[:n_selected] if p.index not in answered]
    meta = {"generator": who.generator, "model": who.description, "source": source_name,
            "settings": settings, "backend": backend}
    t_gen, pad_choice = 0.0, ""
    if todo:
        from .data.templates import get_template
        from .models import load_tokenizer

        tok = tokenizer if who.loaded else load_tokenizer(who.source, padding_side="left")
        tmpl = get_template(who.template, tok)
        texts = [render_prompt(tmpl, p) for p in todo]
        ids = encode_prompts(tok, texts)
        engine, pad_choice = _engine(who, model, tok, decoding, backend, dtype, device)
        _write_json(meta_path(output), {"status": "running", **meta})
        t_gen = _generate_batches(engine, todo, texts, ids, journal_path(output), who.generator,
                                  batch_size, progress, answered)
    entries = _consolidate(output, answered)
    words = [len(str(answered[i]["output"]).split()) for i in range(n_selected)]
    report = _report([answered[p.index] for p in todo], t_gen, output=str(output),
                     generator=who.generator, model=who.description,
                     template=who.template, backend=backend, source=source_name,
                     n_prompts=n_selected, n_resumed=n_selected - len(todo),
                     n_written=len(entries), wall_time_s=time.perf_counter() - t_start,
                     mean_output_words=sum(words) / len(words) if words else None,
                     batch_size=batch_size, decoding=decoding.settings(),
                     journal_lines_ignored=torn, pad_token=pad_choice,
                     prompt_shapes=prompt_set.describe(who.template),
                     ignored_fields=prompt_set.ignored)
    _write_json(meta_path(output), {"status": "complete", **meta, "report": report.to_dict()})
    return report


def _report(new: Sequence[Mapping[str, Any]], t_gen: float, **fields: Any) -> GenerateReport:
    """The report, with this call's counts and rates from its new answers (journal rows)."""
    n_gen, new_tokens = len(new), sum(r["new_tokens"] for r in new)
    rate = n_gen and t_gen > 0
    return GenerateReport(
        n_generated=n_gen, n_hit_max_tokens=sum(not r["hit_eos"] for r in new),
        new_tokens=new_tokens,
        generation_time_s=t_gen, prompts_per_s=n_gen / t_gen if rate else None,
        tokens_per_s=new_tokens / t_gen if rate else None,
        mean_new_tokens=new_tokens / n_gen if n_gen else None, **fields)
