"""A judge-free measure of a preference run: each held-out pair's implicit reward margin
``beta * [(log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r))]`` (log-probabilities summed
over completion tokens), preference accuracy (margin > 0, Wilson) and the mean margin
(bootstrap). Pairs are tokenised as TRL's DPO trainer does and batched by its collator; the
models run in eval mode, without noise (README, "symnoise eval")."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .paired import bootstrap_mean
from .stats import wilson_interval
from .tasks import text_id, unique_ids


def pair_id(row: Mapping[str, Any]) -> str:
    """The :func:`~.tasks.text_id` of the pair's prompt, chosen and rejected (as JSON)."""
    return text_id(json.dumps([row["prompt"], row["chosen"], row["rejected"]], sort_keys=True,
                              ensure_ascii=False))


def _ids(tokenizer: Any, value: Any, **chat: Any) -> list[int]:
    if isinstance(value, list):
        out = tokenizer.apply_chat_template(value, tokenize=True, return_dict=True, **chat)
        return list(out["input_ids"])
    return list(tokenizer(value)["input_ids"])


def tokenize_pairs(rows: Sequence[Mapping[str, Any]], tokenizer: Any) -> list[dict[str, list[int]]]:
    """``{"prompt_ids", "chosen_ids", "rejected_ids"}`` per row, as TRL's DPO trainer makes them."""
    from trl.data_utils import common_prefix_length

    out = []
    for row in rows:
        chat = isinstance(row["prompt"], list)
        eos = "" if chat else tokenizer.eos_token
        sides = [row[k] if chat or row[k].endswith(eos) else row[k] + eos
                 for k in ("chosen", "rejected")]
        prompt = _ids(tokenizer, row["prompt"], **({"add_generation_prompt": True} if chat else {}))
        full = [_ids(tokenizer, row["prompt"] + side) for side in sides]
        n = min(common_prefix_length(prompt, f) for f in full)
        out.append({"prompt_ids": prompt[:n], "chosen_ids": full[0][n:],
                    "rejected_ids": full[1][n:]})
    return out


def completion_logps(model: Any, features: Sequence[Mapping[str, list[int]]], *,
                     pad_token_id: int, max_length: int | None, batch_size: int = 8
                     ) -> list[tuple[float, float]]:
    """``(log π(chosen), log π(rejected))`` per pair: the summed log-probabilities of the
    completion tokens kept by ``max_length`` (model in eval mode, no gradients). Pairs are
    batched by length and logits are computed only from the first completion token on."""
    import torch
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    collate = DataCollatorForPreference(pad_token_id=pad_token_id, max_length=max_length)
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(features)), key=lambda i: sum(map(len, features[i].values())))
    out: list[tuple[float, float]] = [(0.0, 0.0)] * len(features)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = {k: v.to(device) for k, v in collate([features[i] for i in idx]).items()}
            mask, width = batch["completion_mask"], batch["input_ids"].shape[1]
            keep = width - max(1, int((mask.cumsum(1) == 0).sum(1).min())) + 1
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           logits_to_keep=keep).logits[:, :-1].float()
            tokens = batch["input_ids"][:, width - keep + 1:].unsqueeze(-1)
            logp = logits.gather(-1, tokens).squeeze(-1) - logits.logsumexp(-1)
            sums = (logp * mask[:, width - keep + 1:]).sum(-1).tolist()
            for j, i in enumerate(idx):
                out[i] = (sums[j], sums[j + len(idx)])
    return out


def pair_rows(rows: Sequence[Mapping[str, Any]], policy: Sequence[tuple[float, float]],
              reference: Sequence[tuple[float, float]], beta: float) -> list[dict[str, Any]]:
    """One ``{"id", "margin", "correct", "chosen_reward", "rejected_reward"}`` per pair."""

    out = []
    for i, (pc, pr), (rc, rr) in zip(unique_ids(map(pair_id, rows)), policy, reference,
                                     strict=True):
        chosen, rejected = beta * (pc - rc), beta * (pr - rr)
        out.append({"id": i, "margin": chosen - rejected, "correct": chosen - rejected > 0,
                    "chosen_reward": chosen, "rejected_reward": rejected})
    return out


def preference_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Preference accuracy (Wilson) and mean reward margin (bootstrap), both 95%."""
    n, wins = len(rows), sum(bool(r["correct"]) for r in rows)
    margin = bootstrap_mean([r["margin"] for r in rows])
    return {"n": n, "accuracy": wins / n, "accuracy_ci95": list(wilson_interval(wins, n)),
            "reward_margin": margin.diff, "reward_margin_ci95": [margin.ci_low, margin.ci_high],
            "reward_margin_interval": "95% percentile bootstrap over pairs"}
