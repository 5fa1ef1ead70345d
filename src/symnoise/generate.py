"""Generation: answer a set of prompts with a model, in AlpacaEval's model-outputs format.

``generate_outputs(model, prompts, output)`` renders every prompt with the model's training
template, decodes the paper's way (greedy, repetition penalty 1.2, stop at EOS) in batches
with left padding, and writes a JSON list of ``{"instruction", "output", "generator",
"dataset"}`` (plus ``"input"`` when non-empty and, for synthetic prompts, ``"family"``,
``"answer"`` and ``"phrasing"``) that ``alpaca_eval --model_outputs`` reads as is.

Prompts (``prompts=``)
    * ``alpaca_eval`` / ``tatsu-lab/alpaca_eval``: the AlpacaEval set from the Hub (when
      one is reachable);
    * a local JSON / JSONL / Parquet file or a folder: AlpacaEval's own file (objects with
      ``instruction`` and optionally ``dataset``, ``output``, ``generator``; the reference
      ``output``/``generator`` are ignored), or any list of objects with ``instruction`` and
      optionally ``input`` (a row may also be a bare string: the instruction);
    * ``synthetic:heldout`` (or ``synthetic:train``): the built-in synthetic suite;
    * a list of such dicts (or strings), for callers.

Resuming and crash safety
    Answers are appended to a journal beside the output, ``OUT.partial.jsonl`` (one JSON
    object per answer, with its prompt index), flushed and fsync'ed after every batch, so a
    crash loses at most the batch in flight. At the end the journal is consolidated into
    ``OUT`` (written to a temporary file, then ``os.replace``) in input order, and removed.
    ``OUT.meta.json`` records the model, template, decoding settings and counts.
    A rerun reads ``OUT`` (entry ``i`` answers prompt ``i``) and the journal, and generates
    only the prompts not answered yet; an answer is matched to its prompt on index,
    instruction and input, and one that does not match raises (the file was written for
    other prompts), as do answers of another generator or other decoding settings unless
    ``overwrite=True``. ``limit=N`` answers the first N prompts; ``OUT`` always holds the
    longest run of answered prompts from the first one, answers past a gap stay in the
    journal for a later run.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._io import write_json_atomic as _write_json
from ._io import write_text_atomic as _atomic_write_text
from .data.formats import DataError

logger = logging.getLogger(__name__)

__all__ = [
    "ALPACA_EVAL_HUB_ID",
    "BACKENDS",
    "Decoding",
    "GenerateReport",
    "Generation",
    "Prompt",
    "TransformersBackend",
    "VLLMBackend",
    "default_generator_name",
    "default_output_path",
    "encode_prompts",
    "generate_outputs",
    "journal_path",
    "load_prompts",
    "meta_path",
    "read_outputs",
]

ALPACA_EVAL_HUB_ID = "tatsu-lab/alpaca_eval"
ALPACA_EVAL_ALIASES = ("alpaca_eval", "alpacaeval", ALPACA_EVAL_HUB_ID)
BACKENDS = ("transformers", "vllm")
DEFAULT_TEMPLATE = "alpaca"
KEEP_FIELDS = ("family", "answer", "phrasing")  # kept from synthetic records for scoring
_JOURNAL_ONLY = ("index", "new_tokens", "hit_eos")


# --------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------


@dataclass
class Prompt:
    """One prompt to answer: ``index`` is its position in the prompt set."""

    index: int
    instruction: str
    input: str = ""
    dataset: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def entry(self, output: str, generator: str) -> dict[str, Any]:
        """The AlpacaEval model-outputs record answering this prompt."""
        out: dict[str, Any] = {"instruction": self.instruction}
        if self.input:
            out["input"] = self.input
        out.update(output=output, generator=generator, dataset=self.dataset)
        out.update(self.extra)
        return out

    def matches(self, record: Mapping[str, Any]) -> bool:
        """True when ``record`` (an output entry) answers this prompt's instruction + input."""
        return record.get("instruction") == self.instruction and (
            record.get("input") or ""
        ) == self.input


def _prompt_from_row(row: Any, index: int, name: str, default_dataset: str) -> Prompt:
    if isinstance(row, str):
        row = {"instruction": row}
    if not isinstance(row, Mapping):
        raise DataError(
            f"expected an object with an 'instruction' (or a string), got {type(row).__name__}",
            file=name, row=index,
        )
    instruction = row.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        what = "missing" if instruction is None else f"not a non-empty string ({instruction!r})"
        raise DataError(f"field 'instruction' is {what}", file=name, row=index,
                        field="instruction", value=instruction)
    inp = row.get("input")
    if inp is None:
        inp = ""
    if not isinstance(inp, str):
        raise DataError(f"field 'input' must be a string or null, got {type(inp).__name__}",
                        file=name, row=index, field="input", value=inp)
    dataset = row.get("dataset")
    if dataset is None:
        dataset = default_dataset
    if not isinstance(dataset, str):
        raise DataError(f"field 'dataset' must be a string, got {type(dataset).__name__}",
                        file=name, row=index, field="dataset", value=dataset)
    extra = {k: row[k] for k in KEEP_FIELDS if k in row}
    return Prompt(index, instruction, inp, dataset, extra)


def _load_alpaca_eval_hub() -> list[dict[str, Any]]:
    try:
        import datasets

        ds = datasets.load_dataset(ALPACA_EVAL_HUB_ID, "alpaca_eval", split="eval")
    except Exception as exc:  # noqa: BLE001 - offline, removed script, ...
        raise FileNotFoundError(
            f"could not load the AlpacaEval set from the Hub ({ALPACA_EVAL_HUB_ID}: "
            f"{type(exc).__name__}: {str(exc)[:200]}). Offline? Pass a local copy instead: "
            "AlpacaEval's JSON (a list of objects with 'instruction' and 'dataset'), e.g. "
            "its results/text_davinci_003/model_outputs.json"
        ) from None
    return ds.to_list()


def load_prompts(
    source: str | os.PathLike[str] | Sequence[Any],
    *,
    limit: int | None = None,
    seed: int = 0,
) -> tuple[list[Prompt], str]:
    """Read a prompt set (see the module docstring); return ``(prompts, display name)``.

    Every row is checked, also past ``limit``: a bad row raises DataError naming the file
    and the row (0-based index of the record). ``limit`` keeps the first N prompts.
    ``seed`` is the synthetic suite's seed.
    """
    from .data.sources import SYNTHETIC, load_records

    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer, got {limit!r}")
    text = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    if text is not None and text.strip().lower() in ALPACA_EVAL_ALIASES and not Path(
        text
    ).exists():
        records, name, default_dataset = _load_alpaca_eval_hub(), ALPACA_EVAL_HUB_ID, "alpaca_eval"
    elif text is not None and (text == SYNTHETIC or text.startswith(SYNTHETIC + ":")) and not Path(
        text
    ).exists():
        split = text.partition(":")[2].strip() or "heldout"
        from .data.synthetic import load_synthetic

        records, name = load_synthetic(split, seed=seed), f"{SYNTHETIC}:{split}"
        default_dataset = f"synthetic_{'heldout' if split == 'test' else split}"
    else:
        records, name = load_records(source)
        default_dataset = Path(name).stem if text is not None else "prompts"
    if not records:
        raise DataError("no prompts in it", file=name)
    prompts = [_prompt_from_row(r, i, name, default_dataset) for i, r in enumerate(records)]
    if limit is not None:
        prompts = prompts[:limit]
    return prompts, name


# --------------------------------------------------------------------------------------
# Decoding and backends
# --------------------------------------------------------------------------------------


@dataclass
class Decoding:
    """Decoding settings. The paper's: greedy with repetition penalty 1.2.

    ``temperature``/``top_p`` apply only when ``greedy`` is False; ``seed`` seeds sampling.
    """

    max_new_tokens: int = 512
    repetition_penalty: float = 1.2
    greedy: bool = True
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) \
                or self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {self.max_new_tokens!r}")
        if not self.repetition_penalty > 0:
            raise ValueError(
                f"repetition_penalty must be > 0 (1.0 = none), got {self.repetition_penalty!r}"
            )
        if not self.greedy and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 for sampling, got {self.temperature!r}")

    def settings(self) -> dict[str, Any]:
        """What determines the outputs (compared when resuming)."""
        out: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "repetition_penalty": float(self.repetition_penalty),
            "greedy": self.greedy,
        }
        if not self.greedy:
            out.update(temperature=self.temperature, top_p=self.top_p, seed=self.seed)
        return out

    def generation_kwargs(self, pad_token_id: int, eos_token_ids: list[int]) -> dict[str, Any]:
        """Keyword arguments for ``model.generate`` (transformers)."""
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "repetition_penalty": float(self.repetition_penalty),
            "do_sample": not self.greedy,
            "num_beams": 1,
            "pad_token_id": pad_token_id,
            "eos_token_id": eos_token_ids,
        }
        if self.greedy:  # neutralise sampling defaults a model's generation_config may carry
            kwargs.update(temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=None)
        return kwargs


@dataclass
class Generation:
    """One answer: the text (prompt removed, whitespace stripped), the number of new tokens
    (EOS included when produced) and whether the model stopped by itself (EOS)."""

    text: str
    new_tokens: int
    hit_eos: bool


def encode_prompts(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of prompts exactly as training saw them: the tokenizer's own prefix (BOS)
    then the prompt without special tokens (a BOS already spelled out is not doubled)."""
    from .data.tokenize import special_prefix

    prefix = special_prefix(tokenizer)
    enc = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    out = []
    for ids in enc:
        ids = list(ids)
        out.append(ids if prefix and ids[: len(prefix)] == prefix else prefix + ids)
    return out


def _eos_ids(tokenizer: Any, model: Any = None) -> list[int]:
    ids: list[int] = []
    cfg_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (tokenizer.eos_token_id, cfg_eos):
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if v is not None and int(v) not in ids:
                ids.append(int(v))
    return ids


class TransformersBackend:
    """Batched ``model.generate`` with left padding (the default backend)."""

    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any, decoding: Decoding) -> None:
        from .models import ensure_pad_token

        self.model = model
        self.tokenizer = tokenizer
        self.decoding = decoding
        tokenizer.padding_side = "left"  # prompts end where generation starts
        ensure_pad_token(tokenizer, model)
        self.pad_id = int(tokenizer.pad_token_id)
        self.eos_ids = _eos_ids(tokenizer, model)
        if not self.eos_ids:
            raise ValueError("the tokenizer has no EOS token: generation could not stop")
        self.kwargs = decoding.generation_kwargs(self.pad_id, self.eos_ids)
        model.eval()
        if not decoding.greedy:
            import torch

            torch.manual_seed(decoding.seed)

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def pad_left(self, ids: Sequence[Sequence[int]]) -> tuple[Any, Any]:
        """``(input_ids, attention_mask)`` tensors, padded on the left to the longest."""
        import torch

        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, x in enumerate(ids):
            if x:
                input_ids[row, width - len(x):] = torch.tensor(list(x), dtype=torch.long)
                mask[row, width - len(x):] = 1
        return input_ids, mask

    def generate(self, texts: Sequence[str], ids: Sequence[Sequence[int]]) -> list[Generation]:
        """Answer one batch (``texts`` are the rendered prompts, ``ids`` their tokens)."""
        import torch

        input_ids, mask = self.pad_left(ids)
        device = self.device
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids.to(device), attention_mask=mask.to(device), **self.kwargs
            )
        new = out[:, input_ids.shape[1]:].tolist()
        eos = set(self.eos_ids)
        results = []
        for row in new:
            stop = next((k for k, t in enumerate(row) if t in eos), None)
            body = row if stop is None else row[:stop]
            text = self.tokenizer.decode(body, skip_special_tokens=True).strip()
            results.append(Generation(text, len(row) if stop is None else stop + 1,
                                      stop is not None))
        return results


VLLM_MISSING = (
    "backend='vllm' needs the 'vllm' package, which is not installed. Install it with "
    "pip install 'symnoise[vllm]' (Linux with a CUDA GPU), or use the default "
    "backend='transformers' (--backend transformers)."
)


class VLLMBackend:
    """vLLM offline generation (optional): same prompts, same decoding settings."""

    name = "vllm"

    def __init__(self, model_path: str, tokenizer: Any, decoding: Decoding,
                 dtype: str | None = None) -> None:
        try:
            import vllm
        except ImportError:
            raise ImportError(VLLM_MISSING) from None
        self.tokenizer = tokenizer
        self.decoding = decoding
        kwargs: dict[str, Any] = {"model": model_path, "seed": decoding.seed}
        if dtype and dtype != "auto":
            kwargs["dtype"] = dtype
        self.llm = vllm.LLM(**kwargs)
        self.params = vllm.SamplingParams(
            temperature=0.0 if decoding.greedy else decoding.temperature,
            top_p=1.0 if decoding.greedy else decoding.top_p,
            max_tokens=decoding.max_new_tokens,
            repetition_penalty=float(decoding.repetition_penalty),
        )

    def generate(self, texts: Sequence[str], ids: Sequence[Sequence[int]]) -> list[Generation]:
        outs = self.llm.generate(
            [{"prompt_token_ids": list(x)} for x in ids], self.params, use_tqdm=False
        )
        results = []
        for o in outs:
            c = o.outputs[0]
            results.append(Generation(c.text.strip(), len(c.token_ids), c.finish_reason == "stop"))
        return results


def _check_vllm() -> None:
    try:
        import vllm  # noqa: F401
    except ImportError:
        raise ImportError(VLLM_MISSING) from None


# --------------------------------------------------------------------------------------
# Files: outputs, journal, meta
# --------------------------------------------------------------------------------------


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
        problem = (f"does not answer prompt {i}: instruction/input differ "
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
    if not path.is_file():
        return {}, 0
    lines = path.read_text(encoding="utf-8").splitlines()
    answers: dict[int, dict[str, Any]] = {}
    torn = 0
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if lineno == len(lines):  # cut by a crash while writing: that answer is redone
                torn += 1
                logger.warning("%s: last line is incomplete (interrupted write); ignoring it",
                               path)
                continue
            raise DataError(f"line {lineno}: invalid JSON", file=str(path)) from None
        if not isinstance(row, dict) or not isinstance(row.get("index"), int) or not isinstance(
            row.get("output"), str
        ):
            raise DataError(f"line {lineno}: not a journal record", file=str(path))
        _check_answer_row(row, prompts, row["index"], f"{path} line {lineno}", generator, hint)
        answers[row["index"]] = row
    return answers, torn


# --------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format_table(self) -> str:
        def num(v: float | None, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)

        d = self.decoding
        rows = [
            ("output", self.output),
            ("generator", self.generator),
            ("model", self.model),
            ("prompts", f"{self.source} ({self.n_prompts})"),
            ("template", self.template),
            ("decoding", f"{'greedy' if d.get('greedy') else 'sampling'} "
                         f"repetition_penalty={d.get('repetition_penalty')} "
                         f"max_new_tokens={d.get('max_new_tokens')}"),
            ("backend", f"{self.backend} batch_size={self.batch_size}"),
            ("generated now", str(self.n_generated)),
            ("resumed", str(self.n_resumed)),
            ("cut at max_new_tokens", str(self.n_hit_max_tokens)),
            ("tokens generated", str(self.new_tokens)),
            ("prompts/s", num(self.prompts_per_s, ".2f")),
            ("tokens/s", num(self.tokens_per_s, ".1f")),
            ("mean new tokens", num(self.mean_new_tokens, ".1f")),
            ("mean output words", num(self.mean_output_words, ".1f")),
            ("wall time", f"{self.wall_time_s:.1f} s"),
        ]
        if self.journal_lines_ignored:
            rows.append(("journal lines ignored", str(self.journal_lines_ignored)))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


# --------------------------------------------------------------------------------------
# The main entry point
# --------------------------------------------------------------------------------------


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
        raise ValueError(f"--model {model!s} is not a run folder: pass --output FILE")
    if isinstance(prompts, (str, os.PathLike)):
        text = os.fspath(prompts)
        stem = Path(text).stem if Path(text).exists() else text.split("/")[-1]
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "prompts"
    else:
        stem = "prompts"
    return Path(source.path) / "generations" / f"{stem}.json"


def _device(device: str | None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def generate_outputs(
    model: Any,
    prompts: Any,
    output: str | Path,
    *,
    template: str | None = None,
    max_new_tokens: int = 512,
    batch_size: int = 16,
    repetition_penalty: float = 1.2,
    greedy: bool = True,
    generator_name: str | None = None,
    backend: str = "transformers",
    limit: int | None = None,
    dtype: str = "float32",
    device: str | None = None,
    progress: bool = True,
    tokenizer: Any = None,
    seed: int = 0,
    temperature: float = 0.7,
    top_p: float = 0.9,
    overwrite: bool = False,
) -> GenerateReport:
    """Answer ``prompts`` with ``model`` and write AlpacaEval model outputs to ``output``.

    model: a ``--model`` value (run folder, model folder, ``.gguf``, ``smollm2``, hub id), or
        a loaded ``PreTrainedModel`` together with ``tokenizer=``.
    prompts: a prompt source or a list of records (:func:`load_prompts`).
    template: prompt template; default the run's training template (``run.json``), else
        ``alpaca``. greedy/repetition_penalty/max_new_tokens: decoding (the paper's by
        default); ``temperature``/``top_p``/``seed`` for sampling (``greedy=False``).
    generator_name: the ``generator`` field; default the model folder's name.
    limit: answer only the first N prompts. overwrite: discard earlier outputs in ``output``
        instead of resuming (see the module docstring).

    Raises DataError (bad prompt row, output/journal written for other prompts or by
    another generator), ValueError (bad settings), ImportError (vllm missing),
    FileNotFoundError (model or prompt file).
    """
    t_start = time.perf_counter()
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    decoding = Decoding(max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty,
                        greedy=greedy, temperature=temperature, top_p=top_p, seed=seed)
    if backend == "vllm":
        _check_vllm()

    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer, got {limit!r}")

    # -- prompts and the model's identity (cheap: nothing loaded yet) ---------------------
    all_prompts, source_name = load_prompts(prompts, seed=seed)
    n_selected = len(all_prompts) if limit is None else min(limit, len(all_prompts))
    loaded = not isinstance(model, (str, os.PathLike))
    if loaded:
        if tokenizer is None:
            raise ValueError("a loaded model needs tokenizer= as well")
        if backend == "vllm":
            raise ValueError("backend='vllm' loads the model itself: pass a model path, not a "
                             "loaded model")
        source = None
        model_desc = getattr(getattr(model, "config", None), "name_or_path", "") or type(
            model).__name__
        generator = generator_name or Path(str(model_desc)).name or "model"
        template_name = template or DEFAULT_TEMPLATE
    else:
        from .models import resolve_model

        source = resolve_model(model)
        model_desc = source.describe()
        generator = generator_name or default_generator_name(source)
        template_name = template or source.template or DEFAULT_TEMPLATE
        if backend == "vllm" and source.gguf_file:
            raise ValueError("backend='vllm' takes a Hugging Face model folder, run folder or "
                             "hub id, not a GGUF file; use backend='transformers'")

    # -- earlier answers ------------------------------------------------------------------
    output = Path(output).expanduser()
    journal, meta = journal_path(output), meta_path(output)
    hint = f"pass overwrite=True (--overwrite) or another output than {output}"
    settings = {"template": template_name, **decoding.settings()}
    if overwrite:
        for p in (output, journal, meta):
            if p.exists():
                p.unlink()
    if meta.is_file() and (output.exists() or journal.exists()):
        try:
            old = json.loads(meta.read_text(encoding="utf-8")).get("settings", {})
        except json.JSONDecodeError:
            old = {}
        if old and old != settings:
            raise ValueError(
                f"{output} holds outputs made with other settings ({old}); now {settings}: "
                f"{hint}"
            )
    answered: dict[int, dict[str, Any]] = {}
    if output.exists():
        for i, row in enumerate(read_outputs(output)):
            _check_answer_row(row, all_prompts, i, f"{output} row {i}", generator, hint)
            answered[i] = row
    from_journal, torn = _read_journal(journal, all_prompts, generator, hint)
    for i, row in from_journal.items():
        answered.setdefault(i, row)
    todo = [p for p in all_prompts[:n_selected] if p.index not in answered]
    n_resumed = n_selected - len(todo)

    # -- generate -------------------------------------------------------------------------
    new_tokens = n_cut = 0
    new_counts: list[int] = []
    t_gen = 0.0
    pad_choice = ""
    if todo:
        if loaded:
            from .models import ensure_pad_token

            pad_choice = ensure_pad_token(tokenizer, model)
            tok = tokenizer
        else:
            from .models import load_tokenizer

            tok = load_tokenizer(source, padding_side="left")
        from .data.templates import get_template

        tmpl = get_template(template_name, tok)
        texts = [tmpl.render(p.instruction, p.input) for p in todo]
        ids = encode_prompts(tok, texts)
        if backend == "vllm":
            from .models import ensure_pad_token

            pad_choice = pad_choice or ensure_pad_token(tok)
            engine: Any = VLLMBackend(source.path, tok, decoding, dtype)
        else:
            if not loaded:
                from .models import ensure_pad_token, load_model

                model = load_model(source, dtype=dtype, device=_device(device))
                pad_choice = ensure_pad_token(tok, model)
            elif device:
                model.to(device)
            engine = TransformersBackend(model, tok, decoding)
        meta_info = {"status": "running", "generator": generator, "model": str(model_desc),
                     "source": source_name, "settings": settings, "backend": backend}
        _write_json(meta, meta_info)

        order = sorted(range(len(todo)), key=lambda k: -len(ids[k]))  # longest first
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc=f"generate {generator}", unit="prompt",
                       dynamic_ncols=True)
        t0 = time.perf_counter()
        try:
            with open(journal, "a", encoding="utf-8") as jf:
                for start in range(0, len(order), batch_size):
                    chunk = order[start:start + batch_size]
                    gens = engine.generate([texts[k] for k in chunk], [ids[k] for k in chunk])
                    if len(gens) != len(chunk):
                        raise RuntimeError(f"backend returned {len(gens)} answers for "
                                           f"{len(chunk)} prompts")
                    lines = []
                    for k, g in zip(chunk, gens, strict=True):
                        p = todo[k]
                        row = {"index": p.index, **p.entry(g.text, generator),
                               "new_tokens": g.new_tokens, "hit_eos": g.hit_eos}
                        answered[p.index] = row
                        lines.append(json.dumps(row, ensure_ascii=False))
                        new_tokens += g.new_tokens
                        n_cut += int(not g.hit_eos)
                        new_counts.append(g.new_tokens)
                    jf.write("\n".join(lines) + "\n")
                    jf.flush()
                    os.fsync(jf.fileno())
                    if bar is not None:
                        bar.update(len(chunk))
                        elapsed = max(time.perf_counter() - t0, 1e-9)
                        bar.set_postfix({"tok/s": f"{new_tokens / elapsed:.1f}"}, refresh=False)
        finally:
            t_gen = time.perf_counter() - t0
            if bar is not None:
                bar.close()

    # -- consolidate ----------------------------------------------------------------------
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

    n_gen = len(new_counts)
    words = [len(str(answered[i]["output"]).split()) for i in range(n_selected)]
    report = GenerateReport(
        output=str(output), generator=generator, model=str(model_desc), template=template_name,
        backend=backend, source=source_name, n_prompts=n_selected, n_generated=n_gen,
        n_resumed=n_resumed, n_written=len(entries), n_hit_max_tokens=n_cut,
        new_tokens=new_tokens, wall_time_s=time.perf_counter() - t_start,
        generation_time_s=t_gen,
        prompts_per_s=n_gen / t_gen if n_gen and t_gen > 0 else None,
        tokens_per_s=new_tokens / t_gen if n_gen and t_gen > 0 else None,
        mean_new_tokens=sum(new_counts) / n_gen if n_gen else None,
        mean_output_words=sum(words) / len(words) if words else None,
        batch_size=batch_size, decoding=decoding.settings(), journal_lines_ignored=torn,
        pad_token=pad_choice,
    )
    _write_json(meta, {"status": "complete", "generator": generator, "model": str(model_desc),
                       "source": source_name, "settings": settings, "backend": backend,
                       "report": report.to_dict()})
    return report
