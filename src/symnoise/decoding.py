"""Decoding settings (:class:`Decoding`, the paper's by default: greedy, repetition penalty
1.2) and the backends that answer a batch of rendered prompts: :class:`TransformersBackend`
(batched ``model.generate``, left padding) and the optional :class:`VLLMBackend`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def check_count(name: str, value: Any, low: int = 1, *, optional: bool = False) -> None:
    """ValueError unless ``value`` is an integer >= ``low`` (1 or 0), or None if ``optional``."""
    if not (optional and value is None) and (isinstance(value, bool)
                                             or not isinstance(value, int) or value < low):
        what = "a positive" if low == 1 else "a non-negative"
        raise ValueError(f"{name} must be {what} integer, got {value!r}")


@dataclass
class Decoding:
    """Decoding settings; ``temperature``/``top_p``/``seed`` only when not ``greedy``."""

    max_new_tokens: int = 512
    repetition_penalty: float = 1.2
    greedy: bool = True
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        check_count("max_new_tokens", self.max_new_tokens)
        if not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0 (1.0 = none), got "
                             f"{self.repetition_penalty!r}")
        if not self.greedy and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 for sampling, got {self.temperature!r}")

    def settings(self) -> dict[str, Any]:
        """What determines the outputs (compared when resuming)."""
        out = {"max_new_tokens": self.max_new_tokens,
               "repetition_penalty": float(self.repetition_penalty), "greedy": self.greedy}
        if not self.greedy:
            out.update(temperature=self.temperature, top_p=self.top_p, seed=self.seed)
        return out

    def generation_kwargs(self, pad_token_id: int, eos_token_ids: list[int]) -> dict[str, Any]:
        """Keyword arguments for ``model.generate`` (transformers). Greedy decoding
        neutralises sampling defaults a model's generation_config may carry."""
        return {"max_new_tokens": self.max_new_tokens,
                "repetition_penalty": float(self.repetition_penalty),
                "do_sample": not self.greedy, "num_beams": 1, "pad_token_id": pad_token_id,
                "eos_token_id": eos_token_ids, "top_k": None,
                "temperature": None if self.greedy else self.temperature,
                "top_p": None if self.greedy else self.top_p}


@dataclass
class Generation:
    """One answer: the text (prompt removed, whitespace stripped), the number of new tokens
    (EOS included when produced) and whether the model stopped by itself (EOS)."""

    text: str
    new_tokens: int
    hit_eos: bool


class TransformersBackend:
    """Batched ``model.generate`` with left padding (the default backend). The tokenizer
    needs a pad token (:func:`symnoise.models.ensure_pad_token` gives it one)."""

    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any, decoding: Decoding) -> None:
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token: give it one first "
                             "(symnoise.models.ensure_pad_token(tokenizer, model))")
        self.model, self.tokenizer, self.decoding = model, tokenizer, decoding
        tokenizer.padding_side = "left"  # prompts end where generation starts
        self.pad_id = int(tokenizer.pad_token_id)
        # the tokenizer's EOS and the generation config's (one id or a list), each once
        cfg_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        self.eos_ids = list(dict.fromkeys(
            int(v) for value in (tokenizer.eos_token_id, cfg_eos)
            for v in (value if isinstance(value, (list, tuple)) else [value]) if v is not None))
        if not self.eos_ids:
            raise ValueError("the tokenizer has no EOS token: generation could not stop")
        self.kwargs = decoding.generation_kwargs(self.pad_id, self.eos_ids)
        model.eval()
        if not decoding.greedy:
            import torch

            torch.manual_seed(decoding.seed)

    def generate(self, texts: Sequence[str], ids: Sequence[Sequence[int]]) -> list[Generation]:
        """Answer one batch (``texts`` are the rendered prompts, ``ids`` their tokens)."""
        import torch

        batch = self.tokenizer.pad({"input_ids": [list(x) for x in ids]}, padding=True,
                                   return_tensors="pt")  # on the left (see __init__)
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            out = self.model.generate(input_ids=batch["input_ids"].to(device),
                                      attention_mask=batch["attention_mask"].to(device),
                                      **self.kwargs)
        results = []
        for row in out[:, batch["input_ids"].shape[1]:].tolist():
            stop = next((k for k, t in enumerate(row) if t in self.eos_ids), len(row))
            text = self.tokenizer.decode(row[:stop], skip_special_tokens=True).strip()
            results.append(Generation(text, min(stop + 1, len(row)), stop < len(row)))
        return results


def import_vllm() -> Any:
    """The ``vllm`` module; ImportError saying how to install it when it is missing."""
    try:
        import vllm
    except ImportError:
        raise ImportError("backend='vllm' needs the 'vllm' package, which is not installed. "
                          "Install it with pip install 'symnoise[vllm]' (Linux with a CUDA "
                          "GPU), or use the default backend='transformers' (--backend "
                          "transformers).") from None
    return vllm


class VLLMBackend:
    """vLLM offline generation (optional): same prompts, same decoding settings."""

    name = "vllm"

    def __init__(self, model_path: str, decoding: Decoding, dtype: str | None = None) -> None:
        vllm = import_vllm()
        kwargs: dict[str, Any] = {"model": model_path, "seed": decoding.seed}
        if dtype and dtype != "auto":
            kwargs["dtype"] = dtype
        self.llm = vllm.LLM(**kwargs)
        self.params = vllm.SamplingParams(
            temperature=0.0 if decoding.greedy else decoding.temperature,
            top_p=1.0 if decoding.greedy else decoding.top_p,
            max_tokens=decoding.max_new_tokens,
            repetition_penalty=float(decoding.repetition_penalty))

    def generate(self, texts: Sequence[str], ids: Sequence[Sequence[int]]) -> list[Generation]:
        outs = self.llm.generate([{"prompt_token_ids": list(x)} for x in ids], self.params,
                                 use_tqdm=False)
        return [Generation(o.outputs[0].text.strip(), len(o.outputs[0].token_ids),
                           o.outputs[0].finish_reason == "stop") for o in outs]
