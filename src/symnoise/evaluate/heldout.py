"""The clean loss of every held-out example of a run, for paired comparisons between runs.

:func:`heldout_set` rebuilds the held-out set of training's clean loss from ``run.json``
with the function training used (:func:`symnoise.data.run_data.load_run_data`), and
:func:`example_losses` measures each example: the mean token negative log-likelihood over its
response tokens (EOS included), the model in eval mode, no noise. :func:`token_mean` is the
loss over all held-out tokens; :func:`trainer_mean` groups the examples as the Trainer's
evaluation batches do, which reproduces run.json's ``final_clean_eval_loss`` (one process).
Each example's ``id`` depends only on its text (:func:`example_id`), so two runs evaluated on
the same held-out set pair up example by example.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import TrainConfig

__all__ = ["HeldoutSet", "HeldoutUnavailable", "example_id", "example_losses", "heldout_rows",
           "heldout_set", "token_mean", "trainer_mean"]


class HeldoutUnavailable(ValueError):
    """The run's held-out set cannot be rebuilt here (the message says why)."""


@dataclass
class HeldoutSet:
    """The held-out examples of a run, tokenised as training tokenised them: features[i]
    was made from examples[i]; source: where they come from, in words; eval_batch_size:
    the Trainer's evaluation batch size of the run."""

    examples: list[Any]
    features: list[dict[str, list[int]]]
    source: str
    eval_batch_size: int


def recorded_config(info: Mapping[str, Any]) -> TrainConfig:
    """The TrainConfig of a run's ``run.json`` (settings it does not record: the defaults)."""
    recorded = info.get("config") or {}
    return TrainConfig(**{k: v for k, v in recorded.items() if k in TrainConfig.field_names()})


def heldout_set(info: Mapping[str, Any], tokenizer: Any) -> HeldoutSet:
    """Rebuild the held-out set of a run from its ``run.json`` (``info``); settings it does
    not record take TrainConfig's defaults. Raises HeldoutUnavailable when the run had none
    or its data is not reachable here."""
    from ..data.run_data import load_run_data

    try:
        cfg = recorded_config(info)
        if not (cfg.eval_data or isinstance(cfg.data, str) and cfg.data):
            raise HeldoutUnavailable("run.json names no training data")
        data = load_run_data(cfg, tokenizer, train=False,
                             template=info.get("template") or cfg.template)
    except FileNotFoundError as exc:
        raise HeldoutUnavailable(f"the held-out data is not available here: {exc}") from None
    if not data.eval:
        raise HeldoutUnavailable("the run held no examples out (eval_fraction 0 or < 2 "
                                 "training examples)")
    return HeldoutSet(data.eval_examples, data.eval, data.eval_source, max(cfg.batch_size, 8))


def example_id(example: Any) -> str:
    """First 16 hex digits of the SHA-1 of an example's text (instruction, input, output)."""
    text = "\x1f".join((example.instruction, example.input or "", example.output))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def example_losses(model: Any, features: Sequence[Mapping[str, Sequence[int]]], *,
                   pad_token_id: int, batch_size: int = 8, progress: bool = False
                   ) -> list[tuple[float, int]]:
    """``(mean token NLL over the response tokens, number of those tokens)`` per feature.

    The model is put in eval mode and run without gradients; logits are compared in
    float32 with the labels shifted by one, as the model's own loss does.
    ``batch_size`` examples are run at once, right-padded.
    """
    import sys

    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from ..data import PaddingCollator

    collate = PaddingCollator(pad_token_id)
    model.eval()
    device = next(model.parameters()).device
    out: list[tuple[float, int]] = []
    with torch.inference_mode(), tqdm(total=len(features), desc="held-out loss",
                                      unit="example", file=sys.stderr, dynamic_ncols=True,
                                      disable=not progress) as bar:
        for start in range(0, len(features), batch_size):
            batch = collate([{k: f[k] for k in ("input_ids", "attention_mask", "labels")}
                             for f in features[start:start + batch_size]])
            logits = model(input_ids=batch["input_ids"].to(device),
                           attention_mask=batch["attention_mask"].to(device)).logits
            labels = batch["labels"][:, 1:].to(device)
            # flattened as the model's own loss is (the (B, V, L) layout is less precise)
            nll = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                                  labels.reshape(-1), ignore_index=-100,
                                  reduction="none").view(labels.shape)
            counts = (labels != -100).sum(dim=1)
            for total, n in zip(nll.sum(dim=1).tolist(), counts.tolist(), strict=True):
                out.append((total / n if n else float("nan"), int(n)))
            bar.update(len(batch["input_ids"]))
    return out


def heldout_rows(examples: Sequence[Any], losses: Sequence[tuple[float, int]]
                 ) -> list[dict[str, Any]]:
    """One ``{"id", "loss", "n_tokens"}`` per example (ids made unique by
    :func:`~symnoise.evaluate.tasks.unique_ids`)."""
    from .tasks import unique_ids

    ids = unique_ids(example_id(ex) for ex in examples)
    return [{"id": i, "loss": float(loss), "n_tokens": int(n)}
            for i, (loss, n) in zip(ids, losses, strict=True)]


def token_mean(rows: Sequence[Mapping[str, Any]]) -> float:
    """The mean loss over all held-out tokens (per-example losses weighted by n_tokens)."""
    tokens = sum(r["n_tokens"] for r in rows)
    return sum(r["loss"] * r["n_tokens"] for r in rows) / tokens


def trainer_mean(rows: Sequence[Mapping[str, Any]], batch_size: int) -> float:
    """The loss as the Trainer's evaluation reports it: the token mean of each batch of
    ``batch_size`` consecutive examples, averaged over examples (one process)."""
    total = 0.0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        total += token_mean(chunk) * len(chunk)
    return total / len(rows)
