"""The judges that answer the pairwise question: an OpenAI-compatible endpoint
(``openai:MODEL``, :class:`OpenAIJudge`; the verdict from the reply's log-probabilities,
else from the reply restricted to the labels, else from its text: README, judge) or a local
Hugging Face causal LM (``hf:PATH``, :class:`HFJudge`: the label of larger log-probability).
"""

from __future__ import annotations

import concurrent.futures
import inspect
import math
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..models import default_device
from .judge_prompts import (
    Judge,
    JudgeError,
    JudgeResult,
    Messages,
    build_plain_prompt,
    parse_verdict,
)

__all__ = ["OpenAIJudge", "HFJudge", "DEFAULT_BASE_URL", "label_of_token"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
LABELS = ("a", "b")
_LABEL_TOKENS = ("a", " a", "b", " b")  # the spellings a reply may start with
_NO_KEY = "no-key"  # the client needs some key; it is never sent (see _on_request)


def label_of_token(token: str) -> str | None:
    """``"a"``/``"b"`` when a reply token is a label (``" a"``, ``"(b"``, ``"a)"``), else None."""
    core = token.strip().strip("()[]*.:").strip()
    return core if core in LABELS else None


def _from_top(top: Sequence[Any], raw: str | None, method: str) -> JudgeResult:
    """The verdict from one position's top log-probabilities:
    ``p_b`` = P(b) / (P(a) + P(b)) over the label tokens among them."""
    mass = {"a": 0.0, "b": 0.0}
    for entry in top:
        label = label_of_token(entry.token or "")
        if label is not None and entry.logprob is not None:
            mass[label] += math.exp(float(entry.logprob))
    if mass["a"] + mass["b"] <= 0:
        return JudgeResult(label=None, status="unparseable", raw=raw, method=method)
    p_b = mass["b"] / (mass["a"] + mass["b"])
    label = "b" if p_b > 0.5 else "a" if p_b < 0.5 else "tie"
    scores = {lab: math.log(p) if p > 0 else -math.inf for lab, p in (("a", 1 - p_b), ("b", p_b))}
    return JudgeResult(label=label, status="ok", raw=raw, p_b=p_b, method=method, scores=scores)


def _positions(choice: Any) -> list[Any]:
    """The log-probability positions of a chat choice ([] when it has none)."""
    return getattr(choice.logprobs, "content", None) or []


def _is_label(position: Any) -> bool:
    return label_of_token(position.token or "") is not None


def _verdict(choice: Any, again: Any) -> JudgeResult:
    """The verdict of a reply (``choice``), or of ``again``, the reply restricted to the labels
    when no reply token was one (None: it could not be restricted)."""
    text, content = choice.message.content, _positions(choice)
    if not content:  # no log-probabilities from this endpoint: parse the text
        label = parse_verdict(text)
        return JudgeResult(label=label, status="ok" if label else "unparseable", raw=text,
                           method="text")
    position = next(filter(_is_label, content), None)
    if position is not None:
        return _from_top(position.top_logprobs or [position], text, "logprobs")
    if again is None:
        return JudgeResult(label=None, status="unparseable", raw=text, method="logprobs",
                           error="no label among the reply's tokens, and the server offers no "
                                 "tokenize endpoint to restrict the reply")
    content, raw = _positions(again), f"{text!r} -> restricted {again.message.content!r}"
    if content:
        result = _from_top(content[0].top_logprobs or [content[0]], raw, "restricted")
        if result.status == "ok":
            return result
    label = label_of_token(again.message.content or "")
    return JudgeResult(label=label, status="unparseable" if label is None else "ok", raw=raw,
                       method="restricted")


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    text = str(exc)[:300]
    return f"HTTP {status}: {text}" if status else f"{type(exc).__name__}: {text}"


class OpenAIJudge(Judge):
    """Judge through an OpenAI-compatible ``/chat/completions`` endpoint (the official
    client's transport and retries; ``concurrency`` requests in flight). base_url: default
    ``$OPENAI_BASE_URL``, ``$OPENAI_API_BASE``, else OpenAI's; api_key: default
    ``$OPENAI_API_KEY``, none sent without one. HTTP 401/403/404 raise :class:`JudgeError`."""

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 max_retries: int = 5, timeout: float = 120.0, concurrency: int = 4,
                 max_tokens: int = 8, top_logprobs: int = 20) -> None:
        import httpx
        import openai

        if not model:
            raise JudgeError("judge spec 'openai:MODEL' needs a model name after 'openai:'")
        if max_retries < 0 or concurrency < 1:
            raise ValueError(f"need max_retries >= 0 and concurrency >= 1, got "
                             f"{max_retries} and {concurrency}")
        self.model, self.spec = model, f"openai:{model}"
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL")
                         or os.environ.get("OPENAI_API_BASE") or DEFAULT_BASE_URL).rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.max_retries, self.concurrency = int(max_retries), int(concurrency)
        self.max_tokens, self.top_logprobs = max_tokens, top_logprobs
        self.n_requests = 0  # HTTP requests sent, retries included
        self._lock = threading.Lock()  # guards the label ids
        self._count_lock = threading.Lock()  # guards n_requests (taken inside HTTP calls)
        self._label_ids: dict[tuple[str, ...], dict[int, str]] = {}
        self._openai = openai
        self._http = httpx.Client(timeout=timeout, event_hooks={"request": [self._on_request]})
        self.client = openai.OpenAI(base_url=self.base_url, api_key=key or _NO_KEY,
                                    max_retries=max_retries, timeout=timeout,
                                    http_client=self._http)

    def _on_request(self, request: Any) -> None:
        if request.headers.get("Authorization") == f"Bearer {_NO_KEY}":
            del request.headers["Authorization"]  # no key: send none
        with self._count_lock:
            self.n_requests += 1

    def chat(self, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
        """One chat completion; HTTP 401/403/404 raise :class:`JudgeError`."""
        openai = self._openai
        try:
            return self.client.chat.completions.create(model=self.model, messages=messages,
                                                       **kwargs)
        except (openai.AuthenticationError, openai.PermissionDeniedError,
                openai.NotFoundError) as exc:
            raise JudgeError(
                f"judge endpoint {self.url} answered HTTP {exc.status_code} for model "
                f"{self.model!r}: {exc} (check the base URL, the model name and OPENAI_API_KEY)"
            ) from exc

    def chat_labels(self, messages: list[dict[str, Any]], labels: Sequence[str],
                    labelled: Callable[[list[Any]], bool], **kwargs: Any) -> tuple[Any, Any]:
        """The chat completion, and, when ``labelled`` (of its log-probability positions) is
        false, the question asked again with the reply restricted to one token among
        ``labels`` (``logit_bias`` +100); None when it was not asked again or could not be
        (no label is a single token, or the server cannot tokenize)."""
        reply = self.chat(messages, **kwargs)
        if labelled(_positions(reply.choices[0])):
            return reply, None
        with self._lock:  # each set of labels is looked up once
            if tuple(labels) not in self._label_ids:
                self._label_ids[tuple(labels)] = self.single_token_ids(labels)
            ids = self._label_ids[tuple(labels)]
        return reply, self.chat(messages, **{**kwargs, "max_tokens": 1, "logit_bias": {
            str(i): 100 for i in ids}}) if ids else None

    def _judge_one(self, messages: Messages) -> JudgeResult:
        openai = self._openai
        kwargs = {"max_tokens": self.max_tokens, "temperature": 0, "logprobs": True,
                  "top_logprobs": self.top_logprobs}
        try:
            reply, again = self.chat_labels(
                messages, _LABEL_TOKENS,
                lambda content: not content or any(map(_is_label, content)), **kwargs)
            return _verdict(reply.choices[0], again and again.choices[0])
        except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError,
                openai.APITimeoutError) as exc:
            return JudgeResult(label=None, status="error",
                               error=f"failed after {self.max_retries + 1} attempts: {_describe(exc)}")
        except openai.APIStatusError as exc:  # other 4xx: this item alone
            return JudgeResult(label=None, status="error", error=_describe(exc))
        except (openai.APIError, AttributeError, IndexError, TypeError) as exc:
            return JudgeResult(label=None, status="error",
                               error=f"malformed chat completion from {self.url}: {exc}")

    def single_token_ids(self, texts: Sequence[str]) -> dict[int, str]:
        """Token id -> stripped text for each of ``texts`` that is one token. What the
        server puts before every text (llama-cpp-python's endpoint adds the model's BOS: "a"
        is ``[2, 236746]`` with Gemma) is learnt from the empty text and not counted."""
        prefix = self.tokenize("") or []
        found: dict[int, str] = {}
        for text in texts:
            ids = self.tokenize(text)
            if ids is not None and prefix and ids[:len(prefix)] == prefix:
                ids = ids[len(prefix):]
            if ids is not None and len(ids) == 1:
                found[ids[0]] = text.strip()
        return found

    def tokenize(self, text: str) -> list[int] | None:
        """Token ids of ``text`` from the server's tokenize endpoint (tiktoken for OpenAI)."""
        root = self.base_url[:-3] if self.base_url.endswith("/v1") else self.base_url
        attempts = (
            (f"{root}/extras/tokenize", {"input": text, "model": self.model}),  # llama-cpp-python
            (f"{root}/tokenize", {"content": text, "add_special": False}),  # llama.cpp server
            (f"{root}/tokenize", {"model": self.model, "prompt": text,  # vLLM
                                  "add_special_tokens": False}),
        )
        if "api.openai.com" not in root:
            for url, body in attempts:
                try:
                    response = self._http.post(url, json=body)
                    tokens = response.json().get("tokens") if response.status_code == 200 else None
                except Exception:  # noqa: BLE001 - a server without this endpoint
                    tokens = None
                if isinstance(tokens, list) and all(isinstance(t, int) for t in tokens):
                    return tokens
            return None
        try:
            import tiktoken

            return list(tiktoken.encoding_for_model(self.model).encode(text))
        except Exception:  # noqa: BLE001 - unknown model or no tiktoken
            return None

    def map(self, fn: Any, items: Sequence[Any]) -> list[Any]:
        """``fn`` of every item, ``concurrency`` at a time, in order."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(fn, items))

    def compare(self, questions: Sequence[Messages]) -> list[JudgeResult]:
        return self.map(self._judge_one, questions)

    def close(self) -> None:
        self.client.close()


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
    """Judge with a local causal LM: the prompt (its chat template's rendering, else a plain
    prompt ending in "The better output is") is scored with each label appended as it would
    be generated (a label of several tokens: the sum of their log-probabilities); the larger
    wins, equal sums tie. ``batch_size`` items per forward pass, sorted by length, left-padded.
    path: a model folder, or a run folder that is one or holds one in ``model/``; dtype: None
    (the checkpoint's default), ``"auto"`` or a torch dtype name."""

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
        self.pad_id = 0  # any id: padding is masked out
        self.use_chat_template = bool(getattr(self.tokenizer, "chat_template", None))
        self._keeps_logits = "logits_to_keep" in inspect.signature(self.model.forward).parameters

    def _load(self, what: str, load: Any, **kwargs: Any) -> Any:
        try:
            return load(str(self.model_dir), **kwargs)
        except Exception as exc:
            raise JudgeError(f"hf judge: cannot load {what} from {self.model_dir}: {exc}") from exc

    def prompt(self, messages: Messages) -> str:
        """The text scored before the label."""
        if not self.use_chat_template:
            return build_plain_prompt(messages)
        system, user = (m["content"] for m in messages)
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

    def sequences(self, messages: Messages) -> tuple[list[int], dict[str, list[int]]]:
        """Token ids of the prompt and of each label's continuation after it."""
        prompt = self.prompt(messages)
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

    def _score_batch(self, items: Sequence[Messages]) -> list[JudgeResult]:
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

    def compare(self, items: Sequence[Messages]) -> list[JudgeResult]:
        # Batches of similar lengths waste less compute on padding.
        order = sorted(range(len(items)), key=lambda i: sum(len(m["content"]) for m in items[i]))
        chunks = [order[s : s + self.batch_size] for s in range(0, len(order), self.batch_size)]
        found = {i: result for chunk in chunks for i, result in
                 zip(chunk, self._score_batch([items[i] for i in chunk]), strict=True)}
        return [found[i] for i in range(len(items))]

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
