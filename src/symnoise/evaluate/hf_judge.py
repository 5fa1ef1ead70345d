"""A local Hugging Face causal LM as pairwise judge (``hf:PATH``): no sampling, the verdict
is whichever label has the larger log-probability as the continuation of the prompt."""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
        raise JudgeError(
            f"hf judge: {str(path)!r} is not a folder (expected a HF model or run folder)"
        )
    for candidate in (root, root / "model"):
        if (candidate / "config.json").is_file():
            return candidate.resolve()
    raise JudgeError(
        f"hf judge: no config.json in {str(root)!r} (nor in its model/ subfolder); "
        "expected a Hugging Face model folder or a run folder"
    )


class HFJudge(Judge):
    """Judge with a local causal LM by comparing the log-probabilities of the labels.

    For each item the prompt (the chat template's rendering of the judge messages when
    the tokenizer has one, otherwise a plain-text prompt ending in "The better output is")
    is scored with each label appended; the label text is ``"a"``/``"b"`` when the prompt
    ends in whitespace and ``" a"``/``" b"`` otherwise, so the label tokenises the way it
    would be generated. The label's tokens are those the tokenizer produces after the
    prompt's own tokens; a label of several tokens scores the sum of their log-probabilities.
    The larger sum wins; exactly equal sums are a tie. ``batch_size`` items run per
    forward pass (one row per item when both labels are single tokens, else one row per
    label), sorted by length, left-padded, with explicit position ids.

    path: a model folder (``config.json``), or a run folder that is one or holds one in
        ``model/``. device: ``cuda`` when available, else ``cpu``, unless given.
    dtype: ``None`` (the checkpoint's default loading), ``"auto"``, or a torch dtype name.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_size: int = 8,
        device: str | None = None,
        dtype: str | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model_dir = _resolve_model_dir(path)
        self.spec = f"hf:{self.model_dir}"
        self.batch_size = int(batch_size)
        self._torch = torch
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        except Exception as exc:
            raise JudgeError(
                f"hf judge: cannot load the tokenizer from {self.model_dir}: {exc}"
            ) from exc
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        kwargs: dict[str, Any] = {}
        if dtype is not None:
            if dtype != "auto" and not isinstance(getattr(torch, dtype, None), torch.dtype):
                raise JudgeError(
                    f"hf judge: unknown dtype {dtype!r} (e.g. 'auto', 'float32', 'bfloat16')"
                )
            kwargs["dtype"] = dtype if dtype == "auto" else getattr(torch, dtype)
        try:
            self.model = AutoModelForCausalLM.from_pretrained(str(self.model_dir), **kwargs)
        except Exception as exc:
            raise JudgeError(
                f"hf judge: cannot load a causal LM from {self.model_dir}: {exc}"
            ) from exc
        self.model.to(device)
        self.model.eval()
        self.device = torch.device(device)
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        self.pad_id = int(pad) if pad is not None else 0
        self.use_chat_template = bool(getattr(self.tokenizer, "chat_template", None))
        params = inspect.signature(self.model.forward).parameters
        self._keeps_logits = "logits_to_keep" in params

    def prompt(self, item: JudgeItem) -> str:
        """The text scored before the label."""
        if self.use_chat_template:
            messages = build_messages(item.instruction, item.output_a, item.output_b)
            # Some templates reject a system turn: fold it into the user turn.
            merged = [
                {
                    "role": "user",
                    "content": messages[0]["content"] + "\n\n" + messages[1]["content"],
                }
            ]
            return self.tokenizer.apply_chat_template(
                merged, tokenize=False, add_generation_prompt=True
            )
        return build_plain_prompt(item.instruction, item.output_a, item.output_b)

    def _encode(self, text: str) -> list[int]:
        # A chat-template rendering already holds its special tokens as text.
        ids = self.tokenizer(text, add_special_tokens=not self.use_chat_template)["input_ids"]
        eos = self.tokenizer.eos_token_id
        eos_text = self.tokenizer.eos_token
        if (
            ids
            and eos is not None
            and ids[-1] == eos
            and not (eos_text and text.endswith(eos_text))
        ):
            ids = ids[:-1]  # a tokenizer that appends EOS to every text
        return list(ids)

    def sequences(self, item: JudgeItem) -> tuple[list[int], dict[str, list[int]]]:
        """Token ids of the prompt and of each label's continuation after it."""
        prompt = self.prompt(item)
        prompt_ids = self._encode(prompt)
        space = "" if prompt[-1:].isspace() else " "
        labels: dict[str, list[int]] = {}
        for label in ("a", "b"):
            full = self._encode(prompt + space + label)
            if full[: len(prompt_ids)] == prompt_ids and len(full) > len(prompt_ids):
                labels[label] = full[len(prompt_ids) :]
            else:  # the label merged into the prompt's last token: score it on its own
                labels[label] = list(
                    self.tokenizer(space + label, add_special_tokens=False)["input_ids"]
                )
        return prompt_ids, labels

    def _score_batch(self, items: Sequence[JudgeItem]) -> list[JudgeResult]:
        torch = self._torch
        # One row per item when both labels are single tokens (both are read off the logits
        # after the prompt); otherwise one row per label, prompt + label tokens.
        rows: list[list[int]] = []
        # (row, position in the row of the first label token, label token ids) per label
        reads: list[dict[str, tuple[int, int, list[int]]]] = []
        for item in items:
            prompt_ids, labels = self.sequences(item)
            if all(len(ids) == 1 for ids in labels.values()):
                rows.append(prompt_ids)
                reads.append(
                    {lab: (len(rows) - 1, len(prompt_ids), ids) for lab, ids in labels.items()}
                )
            else:
                entry = {}
                for lab, ids in labels.items():
                    rows.append(prompt_ids + ids)
                    entry[lab] = (len(rows) - 1, len(prompt_ids), ids)
                reads.append(entry)
        width = max(len(ids) for ids in rows)
        # Label token at row position q is predicted by the logits at q - 1; rows are
        # right-aligned, so all those logits lie within the last `keep` positions.
        keep = max(len(rows[r]) - start + 1 for entry in reads for r, start, _ in entry.values())
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, ids in enumerate(rows):
            input_ids[i, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[i, width - len(ids) :] = 1
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        kwargs = {"logits_to_keep": keep} if self._keeps_logits else {}
        with torch.inference_mode():
            out = self.model(
                input_ids=input_ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=position_ids.to(self.device),
                **kwargs,
            )
            logprobs = torch.log_softmax(out.logits[:, -keep:, :].float(), dim=-1).cpu()
        results: list[JudgeResult] = []
        for entry in reads:
            scores: dict[str, float] = {}
            for lab, (r, start, ids) in entry.items():
                n = len(rows[r])
                # row position q -> window index keep - n + q; predicted from q - 1
                scores[lab] = sum(
                    float(logprobs[r, keep - n + start + t - 1, token])
                    for t, token in enumerate(ids)
                )
            if scores["a"] > scores["b"]:
                verdict = "a"
            elif scores["b"] > scores["a"]:
                verdict = "b"
            else:
                verdict = "tie"
            raw = f"logp(a)={scores['a']:.6f} logp(b)={scores['b']:.6f}"
            results.append(JudgeResult(label=verdict, status="ok", raw=raw, scores=scores,
                                       method="hf-logprobs"))
        return results

    def compare(self, items: Sequence[JudgeItem]) -> list[JudgeResult]:
        # Batches of similar lengths waste less compute on padding.
        order = sorted(range(len(items)), key=lambda i: self._length_hint(items[i]))
        results: list[JudgeResult | None] = [None] * len(items)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            for i, res in zip(chunk, self._score_batch([items[i] for i in chunk]), strict=True):
                results[i] = res
        return [r for r in results if r is not None]

    @staticmethod
    def _length_hint(item: JudgeItem) -> int:
        return len(item.instruction) + len(item.output_a) + len(item.output_b)

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]


