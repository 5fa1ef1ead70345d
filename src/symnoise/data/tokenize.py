"""Examples -> token ids with response-only labels: ``[specials] + prompt + response +
[EOS]``, ``specials`` being what the tokenizer puts before a text itself (usually a BOS).
Prompt and response are tokenised separately, so their boundary is exact (a SentencePiece
tokenizer with a prepended space starts the response with a word-start piece). Labels are
-100 on specials and prompt; too long: cut at the end; no response token left: dropped."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .formats import DataReport, Example
from .sources import load_examples
from .templates import Template, default_template_for, get_template

IGNORE_INDEX = -100
_MAX_NOTED = 20


@dataclass
class TokenizeReport:
    """Counts from :func:`tokenize_examples` (``n_out = n_in - dropped_no_response``; tokens
    over the kept features, EOS included); ``kept_indices``: each feature's example."""

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


def _ids(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    if not texts:  # a tokenizer fails on an empty batch
        return []
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def encode_prompts(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Prompt ids as training and generation both see them: the tokenizer's own prefix (BOS)
    then the text without special tokens (a BOS a chat template spelled out is not doubled)."""
    prefix = special_prefix(tokenizer)
    return [ids if prefix and ids[: len(prefix)] == prefix else prefix + ids
            for ids in _ids(tokenizer, texts)]


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
    """``{"input_ids", "attention_mask", "labels"}`` features of ``examples`` (module
    docstring); ValueError when ``add_eos`` and the tokenizer has no EOS."""
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
    prompts = encode_prompts(tokenizer, [template.prompt(ex) for ex in examples])
    responses = _ids(tokenizer, [template.response(ex) for ex in examples])

    report = TokenizeReport(n_in=len(examples), max_length=max_length)
    features: list[dict[str, list[int]]] = []
    for i, (p_ids, r_ids) in enumerate(zip(prompts, responses, strict=True)):
        n_prompt = len(p_ids)
        ids = p_ids + r_ids + eos
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
    """What :func:`prepare_dataset` made: features[i] from examples[i]; the format used
    and the template's name."""

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
    """Load, parse, template (None: the paper's for the format) and tokenise ``source``."""
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
