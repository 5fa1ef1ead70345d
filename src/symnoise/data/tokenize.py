"""Examples -> token ids with response-only labels.

Each example becomes ``[specials] + prompt + response + [EOS]`` where ``specials`` is what
the tokenizer itself puts in front of a text (usually one BOS; nothing for tokenizers
that add none), ``prompt`` is :meth:`Template.prompt` and ``response`` is
``template.response_prefix + output``. Prompt and response are tokenised separately and
their ids concatenated, so the boundary between them is exact. Labels are ``-100`` on
the specials and the prompt (response-only loss) and equal the ids elsewhere.

Tokenising separately means the response is encoded as if it began a text: exact for
byte-level BPE tokenizers (GPT-2, Llama 3, Qwen, SmolLM), while SentencePiece tokenizers
with a prepended space (Llama 2, Mistral) start the response with a word-start piece
("▁Blue"), so a model trained this way may begin its responses with a space.

Sequences longer than ``max_length`` are cut at the end (``truncated``); an example left
with no response token is dropped and counted (``dropped_no_response``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .formats import DataReport, Example
from .sources import load_examples
from .templates import Template, default_template_for, get_template

__all__ = ["IGNORE_INDEX", "PreparedData", "TokenizeReport", "prepare_dataset", "special_prefix",
           "tokenize_examples"]

IGNORE_INDEX = -100
_BATCH = 1000  # texts per tokenizer call
_MAX_NOTED = 20


@dataclass
class TokenizeReport:
    """Counts from :func:`tokenize_examples`.

    n_in: examples given; n_out: features produced (``n_in - dropped_no_response``).
    truncated: kept features cut to ``max_length``; dropped_no_response: examples whose
    prompt filled ``max_length`` so no response token was left (their sources, first 20, in
    ``dropped_sources``). total_tokens / response_tokens: over the kept features
    (response tokens include EOS). max_len_seen: the longest sequence before truncation.
    kept_indices: for each feature, the index of its example (not in ``to_dict``).
    """

    n_in: int = 0
    n_out: int = 0
    truncated: int = 0
    dropped_no_response: int = 0
    total_tokens: int = 0
    response_tokens: int = 0
    max_len_seen: int = 0
    max_length: int = 0
    dropped_sources: list[str] = field(default_factory=list)
    kept_indices: list[int] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("kept_indices")
        return out


def _ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    out: list[list[int]] = []
    for start in range(0, len(texts), _BATCH):
        enc = tokenizer(texts[start : start + _BATCH], add_special_tokens=False)
        out.extend(list(ids) for ids in enc["input_ids"])
    return out


def special_prefix(tokenizer: Any) -> list[int]:
    """Ids the tokenizer puts before a text by itself (e.g. ``[bos_token_id]``, or ``[]``)."""
    probe = "Hello world"
    with_special = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    n = len(plain)
    for start in range(len(with_special) - n + 1):
        if with_special[start : start + n] == plain:
            return with_special[:start]
    bos = getattr(tokenizer, "bos_token_id", None)  # unusual tokenizer: trust its BOS flag
    return [bos] if bos is not None and with_special[:1] == [bos] else []


def tokenize_examples(examples: Sequence[Example], tokenizer: Any, template: str | Template, *,
                      max_length: int = 512, add_eos: bool = True,
                      ) -> tuple[list[dict[str, list[int]]], TokenizeReport]:
    """Tokenise ``examples`` under ``template`` into features with response-only labels.

    Each feature is ``{"input_ids", "attention_mask", "labels"}`` (lists of ints). Raises
    ValueError when ``add_eos`` and the tokenizer has no EOS token, or when ``max_length``
    is not a positive integer.
    """
    if not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
    template = get_template(template, tokenizer)
    eos: list[int] = []
    if add_eos:
        eos_id = getattr(tokenizer, "eos_token_id", None)
        if eos_id is None:
            name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
            raise ValueError(
                f"tokenizer {name!r} has no EOS token (eos_token_id is None); set "
                "tokenizer.eos_token or pass add_eos=False"
            )
        eos = [int(eos_id)]
    prefix = special_prefix(tokenizer)
    prompts = _ids(tokenizer, [template.prompt(ex) for ex in examples])
    responses = _ids(tokenizer, [template.response(ex) for ex in examples])

    report = TokenizeReport(n_in=len(examples), max_length=max_length)
    features: list[dict[str, list[int]]] = []
    for i, (p_ids, r_ids) in enumerate(zip(prompts, responses, strict=True)):
        # a chat template may already spell the BOS out in its text: do not add it twice
        head = [] if prefix and p_ids[: len(prefix)] == prefix else prefix
        n_prompt = len(head) + len(p_ids)
        ids = head + p_ids + r_ids + eos
        report.max_len_seen = max(report.max_len_seen, len(ids))
        truncated = len(ids) > max_length
        if truncated:
            ids = ids[:max_length]
        n_response = len(ids) - n_prompt
        if n_response <= 0:
            report.dropped_no_response += 1
            if len(report.dropped_sources) < _MAX_NOTED:
                report.dropped_sources.append(examples[i].source or f"example {i}")
            continue
        report.truncated += int(truncated)
        report.total_tokens += len(ids)
        report.response_tokens += n_response
        report.kept_indices.append(i)
        features.append({"input_ids": ids, "attention_mask": [1] * len(ids),
                         "labels": [IGNORE_INDEX] * n_prompt + ids[n_prompt:]})
    report.n_out = len(features)
    return features, report


@dataclass
class PreparedData:
    """Everything :func:`prepare_dataset` produced.

    features[i] was made from examples[i] (examples dropped at tokenisation are not in
    ``examples``). format: the data format used (detected when ``fmt="auto"``);
    template: the template's name.
    """

    features: list[dict[str, list[int]]]
    examples: list[Example]
    format: str
    template: str
    source: str
    data_report: DataReport
    tokenize_report: TokenizeReport
    max_length: int

    def __len__(self) -> int:
        return len(self.features)

    def summary(self) -> dict[str, Any]:
        """Counts and choices for the run record (``run.json``)."""
        d, t = self.data_report, self.tokenize_report
        return {"source": self.source, "format": self.format, "format_detected": d.detected,
                "template": self.template, "max_length": self.max_length, "read": d.read,
                "used": d.used, "skipped": d.skipped,
                "skipped_reasons": list(d.skipped_reasons), "limited": d.limited,
                "multi_turn_cut": d.multi_turn_cut, "system_turns": d.system_turns,
                "features": t.n_out, "truncated": t.truncated,
                "dropped_no_response": t.dropped_no_response, "total_tokens": t.total_tokens,
                "response_tokens": t.response_tokens, "max_len_seen": t.max_len_seen}


def prepare_dataset(source: Any, tokenizer: Any, *, fmt: str = "auto",
                    template: str | Template | None = None, max_length: int = 512,
                    skip_bad_rows: bool = False, max_examples: int | None = None,
                    split: str = "train", synthetic_n: int | None = None,
                    synthetic_seed: int = 0, add_eos: bool = True) -> PreparedData:
    """Load, parse, template and tokenise ``source`` for response-only fine-tuning.

    template None: the paper's choice for the format (:func:`default_template_for`).
    Raises DataError (bad file/row/format), FileNotFoundError (missing path) or
    ValueError (unknown template, tokenizer without EOS).
    """
    examples, data_report = load_examples(
        source, fmt=fmt, skip_bad_rows=skip_bad_rows, max_examples=max_examples, split=split,
        synthetic_n=synthetic_n, synthetic_seed=synthetic_seed)
    tmpl = get_template(
        template if template is not None else default_template_for(data_report.format), tokenizer)
    features, tok_report = tokenize_examples(examples, tokenizer, tmpl, max_length=max_length,
                                             add_eos=add_eos)
    return PreparedData(features, [examples[i] for i in tok_report.kept_indices],
                        data_report.format, tmpl.name, data_report.source, data_report,
                        tok_report, max_length)
