"""A local Hugging Face causal LM as pairwise judge (``hf:PATH``): no sampling, the verdict
is whichever label has the larger log-probability as the continuation of the prompt."""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..models import default_device
from .judge_prompts import (
    Judge,
    JudgeError,
    JudgeItem,
    JudgeResult,
    build_messages,
    build_plain_prompt,
)

__all__ = ["HFJudge"]


def _resolve_model_dir(path: str | os.PathLike[str]) -> Path:
    """A HF model folder, or a run folder that is one (or holds one in ``model/``)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise JudgeError(f"hf judge: {str(path)!r} is not a folder "
                         "(expected a HF model or run folder)")
    for candidate in (root, root / "model"):
        if (candidate / "config.json").is_file():
            return candidate.resolve()
    raise JudgeError(f"hf judge: no config.json in {str(root)!r} (nor in its model/ "
                     "subfolder); expected a Hugging Face model folder or a run folder")


class HFJudge(Judge):
    """Judge with a local causal LM by comparing the log-probabilities of the labels.

    The prompt (the chat template's rendering of the judge messages, else a plain prompt
    ending in "The better output is") is scored with each label appended (``"a"``/``"b"``
    after whitespace, ``" a"``/``" b"`` otherwise, as it would be generated); a label of
    several tokens scores the sum of their log-probabilities. The larger sum wins; equal
    sums tie. ``batch_size`` items run per forward pass (one row per item when both labels
    are single tokens, else one per label), sorted by length, left-padded.

    path: a model folder (``config.json``), or a run folder that is one or holds one in
        ``model/``. device: ``cuda`` when available, else ``cpu``, unless given.
    dtype: ``None`` (the checkpoint's default loading), ``"auto"``, or a torch dtype name.
    """

    def __init__(self, path: str | os.PathLike[str], *, batch_size: int = 8,
                 device: str | None = None, dtype: str | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_dir = _resolve_model_dir(path)
        self.spec, self.batch_size, self._torch = f"hf:{self.model_dir}", int(batch_size), torch
        kwargs: dict[str, Any] = {}
        if dtype is not None:
            if dtype != "auto" and not isinstance(getattr(torch, dtype, None), torch.dtype):
                raise JudgeError(f"hf judge: unknown dtype {dtype!r} "
                                 "(e.g. 'auto', 'float32', 'bfloat16')")
            kwargs["dtype"] = dtype if dtype == "auto" else getattr(torch, dtype)
        self.tokenizer = self._load("the tokenizer", AutoTokenizer.from_pretrained)
        model = self._load("a causal LM", AutoModelForCausalLM.from_pretrained, **kwargs)
        self.device = torch.device(default_device(device))
        self.model = model.to(self.device).eval()
        pad = self.tokenizer.pad_token_id
        pad = self.tokenizer.eos_token_id if pad is None else pad
        self.pad_id = int(pad) if pad is not None else 0
        self.use_chat_template = bool(getattr(self.tokenizer, "chat_template", None))
        self._keeps_logits = "logits_to_keep" in inspect.signature(self.model.forward).parameters

    def _load(self, what: str, load: Any, **kwargs: Any) -> Any:
        try:
            return load(str(self.model_dir), **kwargs)
        except Exception as exc:
            raise JudgeError(f"hf judge: cannot load {what} from {self.model_dir}: {exc}") from exc

    def prompt(self, item: JudgeItem) -> str:
        """The text scored before the label."""
        if not self.use_chat_template:
            return build_plain_prompt(item.instruction, item.output_a, item.output_b)
        system, user = (m["content"] for m in build_messages(item.instruction, item.output_a,
                                                               item.output_b))
        # Some templates reject a system turn: fold it into the user turn.
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": f"{system}\n\n{user}"}], tokenize=False,
            add_generation_prompt=True)

    def _encode(self, text: str) -> list[int]:
        # A chat-template rendering already holds its special tokens as text.
        ids = list(self.tokenizer(text, add_special_tokens=not self.use_chat_template)["input_ids"])
        eos, eos_text = self.tokenizer.eos_token_id, self.tokenizer.eos_token
        if ids and eos is not None and ids[-1] == eos and not (eos_text and text.endswith(eos_text)):
            ids = ids[:-1]  # a tokenizer that appends EOS to every text
        return ids

    def sequences(self, item: JudgeItem) -> tuple[list[int], dict[str, list[int]]]:
        """Token ids of the prompt and of each label's continuation after it."""
        prompt = self.prompt(item)
        prompt_ids = self._encode(prompt)
        n, space = len(prompt_ids), "" if prompt[-1:].isspace() else " "
        labels: dict[str, list[int]] = {}
        for label in ("a", "b"):
            full = self._encode(prompt + space + label)
            if full[:n] == prompt_ids and len(full) > n:
                labels[label] = full[n:]
            else:  # the label merged into the prompt's last token: score it on its own
                labels[label] = list(self.tokenizer(space + label,
                                                    add_special_tokens=False)["input_ids"])
        return prompt_ids, labels

    def _score_batch(self, items: Sequence[JudgeItem]) -> list[JudgeResult]:
        torch = self._torch
        # One row per item when both labels are single tokens (both are read off the logits
        # after the prompt), else one row per label. reads: per item, label -> (row, start
        # of the label in the row, label token ids).
        rows: list[list[int]] = []
        reads: list[dict[str, tuple[int, int, list[int]]]] = []
        for item in items:
            prompt_ids, labels = self.sequences(item)
            single = all(len(ids) == 1 for ids in labels.values())
            entry = {}
            for lab, ids in labels.items():
                if not single or not entry:
                    rows.append(prompt_ids if single else prompt_ids + ids)
                entry[lab] = (len(rows) - 1, len(prompt_ids), ids)
            reads.append(entry)
        width = max(len(ids) for ids in rows)
        # The label token at row position q is predicted by the logits at q - 1; rows are
        # right-aligned, so all those logits lie within the last `keep` positions.
        keep = max(len(rows[r]) - start + 1 for entry in reads for r, start, _ in entry.values())
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, ids in enumerate(rows):
            input_ids[i, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[i, width - len(ids) :] = 1
        kwargs = {"logits_to_keep": keep} if self._keeps_logits else {}
        with torch.inference_mode():
            out = self.model(input_ids=input_ids.to(self.device),
                             attention_mask=mask.to(self.device),
                             position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(self.device),
                             **kwargs)
            logprobs = torch.log_softmax(out.logits[:, -keep:, :].float(), dim=-1).cpu()
        results: list[JudgeResult] = []
        for entry in reads:
            # row position q of a row of length n -> window index keep - n + q
            scores = {lab: sum(float(logprobs[r, keep - len(rows[r]) + start + t - 1, token])
                               for t, token in enumerate(ids))
                      for lab, (r, start, ids) in entry.items()}
            a, b = scores["a"], scores["b"]
            results.append(JudgeResult(label="a" if a > b else "b" if b > a else "tie",
                                       status="ok", raw=f"logp(a)={a:.6f} logp(b)={b:.6f}",
                                       scores=scores, method="hf-logprobs"))
        return results

    def compare(self, items: Sequence[JudgeItem]) -> list[JudgeResult]:
        # Batches of similar lengths waste less compute on padding.
        order = sorted(range(len(items)), key=lambda i: sum(map(len, (
            items[i].instruction, items[i].output_a, items[i].output_b))))
        results: list[JudgeResult | None] = [None] * len(items)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            for i, res in zip(chunk, self._score_batch([items[i] for i in chunk]), strict=True):
                results[i] = res
        return [r for r in results if r is not None]

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
