"""A run's training features and the held-out set of its clean loss (``eval_data``, the
suite's held-out split when training on the suite, else a seeded split of the training
data): training and :mod:`symnoise.evaluate.heldout` both call :func:`load_run_data`; a
preference run's pairs, by the same held-out rule: :func:`load_preference_run_data`."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from ..config import TrainConfig
from .formats import DataError, Example
from .multimodal import prepare_multimodal
from .preference import PreferenceData, load_preference_rows
from .sources import load_records
from .spec import parse_data_spec
from .tokenize import PreparedData, prepare_dataset


@dataclass
class RunData:
    """Training features (of ``prepared``) and the held-out examples and features; of a
    preference run, TRL's rows (its examples and features are the same rows)."""

    prepared: PreparedData | PreferenceData | None  # None: only the held-out set was asked
    train: list[dict[str, Any]]
    eval_examples: list[Example]
    eval: list[dict[str, Any]]
    eval_summary: dict[str, Any]
    eval_source: str  # where the held-out set comes from, in words

    def summary(self) -> dict[str, Any]:
        """The counts of the run record (``run.json``'s ``data``)."""
        return {"train": self.prepared.summary() if self.prepared else None,
                "eval": self.eval_summary, "train_examples_used": len(self.train),
                "eval_examples": len(self.eval)}


def _prepare(text: str, cfg: TrainConfig, tokenizer: Any, *, split: str, template: Any,
             max_examples: int | None) -> PreparedData:
    """Prepare one data spec (the synthetic suite, a path or a hub id)."""
    spec = parse_data_spec(text)
    if hasattr(tokenizer, "image_processor"):  # a vision-language model's processor
        return prepare_multimodal(text, tokenizer, max_length=cfg.max_length, fmt=cfg.format,
                                  skip_bad_rows=cfg.skip_bad_rows, max_examples=max_examples)
    suite: dict[str, Any] = {}
    if spec.is_synthetic:
        split = spec.split or split
        suite = {"split": split, "synthetic_seed": cfg.synthetic_seed,
                 "synthetic_n": cfg.synthetic_train_size if split == "train"
                 else cfg.synthetic_heldout_size}
    return prepare_dataset(text, tokenizer, fmt=cfg.format, template=template,
                           max_length=cfg.max_length, skip_bad_rows=cfg.skip_bad_rows,
                           max_examples=max_examples, **suite)


def load_run_data(cfg: TrainConfig, tokenizer: Any, *, train: bool = True,
                  template: str | None = None) -> RunData:
    """The run's data. ``train=False``: only the held-out set (the training data is still
    read when the held-out set is a split of it), in ``template`` (the run's resolved one)."""
    eval_text = cfg.eval_data or (
        "synthetic:heldout" if parse_data_spec(cfg.data).is_synthetic else None)
    prepared = None
    if train or eval_text is None:
        prepared = _prepare(cfg.data, cfg, tokenizer, split="train",
                            template=template or cfg.template, max_examples=cfg.max_train_examples)
        template = prepared.template
    if eval_text is not None:
        held = _prepare(eval_text, cfg, tokenizer, split="heldout", template=template,
                        max_examples=cfg.max_eval_examples)
        source = ("synthetic held-out split" if parse_data_spec(eval_text).is_synthetic
                  else f"eval_data {eval_text}")
        return RunData(prepared, prepared.features if prepared else [], held.examples,
                       held.features, held.summary(), source)
    n = len(prepared.features)
    keep = _heldout_indices(n, cfg)
    held_set = set(keep)
    return RunData(prepared, [f for i, f in enumerate(prepared.features) if i not in held_set],
                   [prepared.examples[i] for i in keep], [prepared.features[i] for i in keep],
                   {"source": "split of the training data", "examples": len(keep)},
                   f"seeded split of the training data ({len(keep)} of {n}, seed {cfg.seed})")


def _heldout_indices(n: int, cfg: TrainConfig) -> list[int]:
    """Indices of the seeded held-out part of ``n`` training features, sorted."""
    if cfg.eval_fraction <= 0 or n < 2:
        return []
    n_eval = min(cfg.max_eval_examples, max(1, int(round(n * cfg.eval_fraction))))
    order = list(range(n))
    random.Random(cfg.seed).shuffle(order)
    return sorted(order[:n_eval])


def _pairs(text: str, cfg: TrainConfig, tokenizer: Any, max_examples: int | None
           ) -> PreferenceData:
    if parse_data_spec(text).is_synthetic:
        raise DataError("the synthetic suite has no preference pairs: pass a file of pairs",
                        file=text)
    records, name = load_records(text, skip_bad_rows=cfg.skip_bad_rows)
    return load_preference_rows(records, source=name, skip_bad_rows=cfg.skip_bad_rows,
                                template=cfg.template, tokenizer=tokenizer, fmt=cfg.format,
                                max_examples=max_examples)


def load_preference_run_data(cfg: TrainConfig, tokenizer: Any = None, *, train: bool = True,
                             eval_data: str | None = None) -> RunData:
    """A preference run's pairs. The held-out pairs are ``eval_data`` (``eval --eval-data``),
    else ``cfg.eval_data``, else the seeded split of the training pairs by the rule of
    :func:`load_run_data` (``eval_fraction``, ``max_eval_examples``, ``seed``)."""
    held_text = eval_data or cfg.eval_data
    data = _pairs(cfg.data, cfg, tokenizer, cfg.max_train_examples) \
        if train or not held_text else None
    if held_text:
        held = _pairs(held_text, cfg, tokenizer, cfg.max_eval_examples)
        return RunData(data, data.rows if data else [], held.rows, held.rows, held.summary(),
                       f"eval_data {held_text}")
    n, keep = len(data.rows), set(_heldout_indices(len(data.rows), cfg))
    held_rows = [r for i, r in enumerate(data.rows) if i in keep]
    return RunData(data, [r for i, r in enumerate(data.rows) if i not in keep], held_rows,
                   held_rows, {"source": "split of the training data", "examples": len(keep)},
                   f"seeded split of the training pairs ({len(keep)} of {n}, seed {cfg.seed})")
