"""Pairwise win rate against reference outputs with an LLM judge (AlpacaEval style).

Inputs are two lists in AlpacaEval's model-outputs format (``instruction``, ``output``,
``generator``, optional ``dataset``), paired by instruction text. Each pair is shown to a
judge in a seeded random order (or in both orders) and the judge says which output is
better. Conventions follow AlpacaEval: ``output_1`` is the reference, ``output_2`` the
model; ``preference`` is 1 when the reference is better, 2 when the model is better, 1.5
for a tie. The model's win rate is ``mean((preference - 1) * 100)`` over the items with a
verdict, its standard error the sample standard deviation of the same values over
``sqrt(n)``.

Two judges, chosen by a spec string (:func:`make_judge`):

* ``openai:MODEL``: any OpenAI-compatible ``/v1/chat/completions`` endpoint (OpenAI,
  vLLM, a llama.cpp server), greedy, a few tokens; the reply is parsed by
  :func:`~symnoise.evaluate.judge_prompts.parse_verdict`. Network errors, HTTP 429 and 5xx
  are retried with exponential backoff; a reply that cannot be parsed is kept and counted
  as unparseable, never guessed.
* ``hf:PATH``: a local Hugging Face causal LM (a model folder or a run folder). No
  sampling: the verdict is whichever label, ``a`` or ``b``, has the larger log-probability
  as the continuation of the prompt (labels of several tokens are summed); equal
  log-probabilities are a tie.

Every verdict is appended to ``judge_cache.jsonl`` in the output folder as soon as it is
known, keyed by (judge, prompt version, instruction, output shown as (a), output shown as
(b)), so a rerun or a resumed crash never asks the judge the same question twice.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import inspect
import json
import math
import os
import random
import statistics
import threading
import time
import urllib.error
import urllib.request
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._io import write_json_atomic as _write_json
from .judge_prompts import (
    TEMPLATE_VERSION,
    build_messages,
    build_plain_prompt,
    parse_verdict,
)

__all__ = [
    "JudgeError",
    "JudgeItem",
    "JudgeResult",
    "Judge",
    "OpenAIJudge",
    "HFJudge",
    "make_judge",
    "AnnotationCache",
    "DatasetScore",
    "JudgeReport",
    "load_outputs",
    "pair_outputs",
    "win_rate",
    "judge_outputs",
    "CACHE_FILE",
    "ANNOTATIONS_FILE",
    "LEADERBOARD_JSON",
    "LEADERBOARD_MD",
]

CACHE_FILE = "judge_cache.jsonl"
ANNOTATIONS_FILE = "annotations.json"
LEADERBOARD_JSON = "leaderboard.json"
LEADERBOARD_MD = "leaderboard.md"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
NO_DATASET = "(none)"

OutputsSource = str | os.PathLike[str] | Sequence[dict[str, Any]]


class JudgeError(RuntimeError):
    """A problem the user can fix: bad input file or row, bad judge spec, rejected key."""


# --------------------------------------------------------------------------------------
# Items and results
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeItem:
    """One question to a judge: which of ``output_a`` and ``output_b`` is better."""

    instruction: str
    output_a: str
    output_b: str


@dataclass
class JudgeResult:
    """A judge's answer to one :class:`JudgeItem`.

    label: ``"a"``, ``"b"``, ``"tie"``, or ``None`` when ``status`` is not ``"ok"``.
    status: ``"ok"``, ``"unparseable"`` (the reply is kept in ``raw``) or ``"error"``
        (request failed after every retry; ``error`` says why).
    raw: the judge's raw reply (for ``hf:`` judges, the two log-probabilities as text).
    scores: per-label log-probabilities (``hf:`` judges only).
    cached: True when the answer came from the cache rather than the judge.
    """

    label: str | None
    status: str
    raw: str | None = None
    error: str | None = None
    scores: dict[str, float] | None = None
    cached: bool = False

    def __post_init__(self) -> None:
        if self.status not in ("ok", "unparseable", "error"):
            raise ValueError(f"unknown judge result status {self.status!r}")
        if (self.status == "ok") != (self.label in ("a", "b", "tie")):
            raise ValueError(f"status {self.status!r} does not fit label {self.label!r}")


def _result_from_reply(reply: str | None) -> JudgeResult:
    label = parse_verdict(reply)
    if label is None:
        return JudgeResult(label=None, status="unparseable", raw=reply)
    return JudgeResult(label=label, status="ok", raw=reply)


class Judge(ABC):
    """A pairwise judge. ``spec`` identifies it in cache keys and reports."""

    spec: str

    @abstractmethod
    def compare(self, items: Sequence[JudgeItem]) -> list[JudgeResult]:
        """Judge every item; one result per item, in order. Never raises for one item."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (connections, model memory)."""

    def __enter__(self) -> Judge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------
# OpenAI-compatible judge
# --------------------------------------------------------------------------------------


class _RetryableError(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _ItemError(Exception):
    """A failure of this request alone (e.g. HTTP 400): recorded, not retried."""


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class _Transport:
    """POST JSON with httpx when installed, urllib otherwise. Returns (status, text, headers)."""

    def __init__(self, timeout: float, backend: str | None = None) -> None:
        if backend not in (None, "httpx", "urllib"):
            raise ValueError(f"unknown HTTP backend {backend!r}; expected 'httpx' or 'urllib'")
        self.timeout = timeout
        self._httpx: Any = None
        self._client: Any = None
        if backend in (None, "httpx"):
            try:
                import httpx
            except ImportError:
                if backend == "httpx":
                    raise JudgeError("http_backend='httpx' but httpx is not installed") from None
            else:
                self._httpx = httpx
                self._client = httpx.Client(timeout=timeout)

    @property
    def name(self) -> str:
        return "httpx" if self._client is not None else "urllib"

    def post(
        self, url: str, payload: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, str, dict[str, str]]:
        if self._client is not None:
            try:
                response = self._client.post(url, json=payload, headers=headers)
            except self._httpx.HTTPError as exc:
                raise _RetryableError(f"{type(exc).__name__}: {exc}") from exc
            return response.status_code, response.text, dict(response.headers)
        data = json.dumps(payload).encode("utf-8")
        request = urllib.request.Request(
            url, data=data, headers={**headers, "Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return (
                    response.status,
                    response.read().decode("utf-8", "replace"),
                    dict(response.headers),
                )
        except urllib.error.HTTPError as exc:
            body = exc.read().decode("utf-8", "replace") if exc.fp is not None else ""
            return exc.code, body, dict(exc.headers or {})
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise _RetryableError(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


class OpenAIJudge(Judge):
    """Judge through an OpenAI-compatible ``/chat/completions`` endpoint.

    model: the ``model`` field of each request.
    base_url: the API root, e.g. ``https://api.openai.com/v1`` or ``http://127.0.0.1:8000/v1``.
    api_key: sent as a bearer token when given (local servers usually need none).
    max_retries: retries after the first attempt on network errors, HTTP 429 and 5xx; the
        delay before retry ``k`` (1-based) is ``retry_base_delay * 2 ** (k - 1)`` seconds,
        capped at ``max_retry_delay``, or the server's ``Retry-After`` when larger.
    concurrency: requests in flight at once.
    max_tokens: reply length limit; the prompt asks for one letter.
    http_backend: ``"httpx"`` or ``"urllib"``; by default httpx when it is installed.

    HTTP 401, 403 and 404 (bad key, unknown model or URL) raise :class:`JudgeError` at
    once, since every other item would fail the same way. Other 4xx replies are recorded
    as an error for that item.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_retries: int = 5,
        retry_base_delay: float = 1.0,
        max_retry_delay: float = 60.0,
        timeout: float = 120.0,
        concurrency: int = 4,
        max_tokens: int = 16,
        http_backend: str | None = None,
    ) -> None:
        if not model:
            raise JudgeError("judge spec 'openai:MODEL' needs a model name after 'openai:'")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if retry_base_delay < 0:
            raise ValueError(f"retry_base_delay must be >= 0, got {retry_base_delay}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.model = model
        self.spec = f"openai:{model}"
        root = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        self.base_url = root.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.max_retries = int(max_retries)
        self.retry_base_delay = float(retry_base_delay)
        self.max_retry_delay = float(max_retry_delay)
        self.concurrency = int(concurrency)
        self.max_tokens = int(max_tokens)
        self.n_requests = 0  # HTTP requests sent, retries included
        self._sleep = time.sleep
        self._lock = threading.Lock()
        self._transport = _Transport(timeout, http_backend)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _request_once(self, item: JudgeItem) -> str | None:
        payload = {
            "model": self.model,
            "messages": build_messages(item.instruction, item.output_a, item.output_b),
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }
        with self._lock:
            self.n_requests += 1
        status, text, headers = self._transport.post(self.url, payload, self._headers())
        if status == 429 or status >= 500:
            retry_after = _retry_after(headers.get("retry-after") or headers.get("Retry-After"))
            raise _RetryableError(f"HTTP {status}: {text[:200]}", retry_after)
        if status in (401, 403, 404):
            raise JudgeError(
                f"judge endpoint {self.url} answered HTTP {status} for model {self.model!r}: "
                f"{text[:300]} (check the base URL, the model name and OPENAI_API_KEY)"
            )
        if not 200 <= status < 300:
            raise _ItemError(f"HTTP {status}: {text[:300]}")
        try:
            body = json.loads(text)
            message = body["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise _ItemError(f"malformed chat completion from {self.url}: {text[:300]}") from exc
        content = message.get("content") if isinstance(message, dict) else None
        return content if content is None else str(content)

    def retry_delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        delay = self.retry_base_delay * 2 ** (retry - 1)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self.max_retry_delay)

    def _judge_one(self, item: JudgeItem) -> JudgeResult:
        last_error = ""
        retry_after: float | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._sleep(self.retry_delay(attempt, retry_after))
            try:
                reply = self._request_once(item)
            except _RetryableError as exc:
                last_error, retry_after = str(exc), exc.retry_after
                continue
            except _ItemError as exc:
                return JudgeResult(label=None, status="error", error=str(exc))
            return _result_from_reply(reply)
        attempts = self.max_retries + 1
        return JudgeResult(
            label=None, status="error", error=f"failed after {attempts} attempts: {last_error}"
        )

    def compare(self, items: Sequence[JudgeItem]) -> list[JudgeResult]:
        if self.concurrency == 1 or len(items) <= 1:
            return [self._judge_one(item) for item in items]
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = [pool.submit(self._judge_one, item) for item in items]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    def close(self) -> None:
        self._transport.close()


# --------------------------------------------------------------------------------------
# Local Hugging Face judge
# --------------------------------------------------------------------------------------


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
            results.append(JudgeResult(label=verdict, status="ok", raw=raw, scores=scores))
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


def make_judge(
    spec: str,
    base_url: str | None = None,
    *,
    api_key: str | None = None,
    max_retries: int = 5,
    retry_base_delay: float = 1.0,
    batch_size: int = 8,
    concurrency: int = 4,
    timeout: float = 120.0,
    max_tokens: int = 16,
    device: str | None = None,
    dtype: str | None = None,
) -> Judge:
    """Build a judge from its spec: ``openai:MODEL`` or ``hf:PATH``.

    ``base_url``, ``api_key``, ``max_retries``, ``retry_base_delay``, ``concurrency``,
    ``timeout`` and ``max_tokens`` apply to ``openai:`` judges (see :class:`OpenAIJudge`);
    ``batch_size``, ``device`` and ``dtype`` to ``hf:`` judges (see :class:`HFJudge`).
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise JudgeError(f"unknown judge spec {spec!r}; expected 'openai:MODEL' or 'hf:PATH'")
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "openai":
        return OpenAIJudge(
            rest.strip(),
            base_url=base_url,
            api_key=api_key,
            max_retries=max_retries,
            retry_base_delay=retry_base_delay,
            timeout=timeout,
            concurrency=concurrency,
            max_tokens=max_tokens,
        )
    if kind == "hf":
        if not rest.strip():
            raise JudgeError("judge spec 'hf:PATH' needs a model folder after 'hf:'")
        return HFJudge(rest.strip(), batch_size=batch_size, device=device, dtype=dtype)
    raise JudgeError(f"unknown judge spec {spec!r}; expected 'openai:MODEL' or 'hf:PATH'")


# --------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------


class AnnotationCache:
    """Append-only JSONL cache of verdicts, one line per judged (a, b) question.

    Lines are flushed as they are written; a truncated last line (a crash mid-write) is
    cut off the file on load. Other invalid lines are ignored with a warning and counted
    in ``n_bad_lines``.
    Errors are not cached (a rerun retries them); unparseable replies are, with their
    status, so they are not paid for twice.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._entries: dict[str, dict[str, Any]] = {}
        self.n_bad_lines = 0
        self._load()

    @staticmethod
    def key(judge: str, instruction: str, output_a: str, output_b: str) -> str:
        blob = json.dumps(
            [judge, TEMPLATE_VERSION, instruction, output_a, output_b], ensure_ascii=False
        )
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    @staticmethod
    def _parse(line: bytes) -> dict[str, Any] | None:
        try:
            entry = json.loads(line.decode("utf-8"))
            if not isinstance(entry["key"], str):
                return None
            JudgeResult(label=entry.get("label"), status=entry["status"])
        except (ValueError, KeyError, TypeError):
            return None
        return entry

    def _load(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            entry = self._parse(line)
            if entry is None:
                self.n_bad_lines += 1
                warnings.warn(
                    f"{self.path}: line {number} is not a valid cache entry; ignored", stacklevel=3
                )
                continue
            self._entries[entry["key"]] = entry
        if tail.strip():
            entry = self._parse(tail)
            if entry is not None:
                self._entries[entry["key"]] = entry
            else:  # a write cut short by a crash: drop the partial line
                self.n_bad_lines += 1
                with open(self.path, "r+b") as fh:
                    fh.truncate(len(data) - len(tail))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def get(self, key: str) -> JudgeResult | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        return JudgeResult(
            label=entry.get("label"),
            status=entry["status"],
            raw=entry.get("raw"),
            scores=entry.get("scores"),
            cached=True,
        )

    def put(self, key: str, judge: str, result: JudgeResult) -> None:
        if result.status == "error":
            return
        entry = {
            "key": key,
            "judge": judge,
            "template": TEMPLATE_VERSION,
            "status": result.status,
            "label": result.label,
            "raw": result.raw,
            "scores": result.scores,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        needs_newline = False
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                needs_newline = fh.read(1) != b"\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            if needs_newline:
                fh.write("\n")
            fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
            fh.flush()
        self._entries[key] = entry


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


def _read_rows(path: Path) -> list[Any]:
    if path.is_dir():
        for name in ("model_outputs.json", "model_outputs.jsonl"):
            if (path / name).is_file():
                return _read_rows(path / name)
        raise JudgeError(f"{path}: a folder without model_outputs.json or model_outputs.jsonl")
    if not path.is_file():
        raise JudgeError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if path.suffix.lower() != ".jsonl" and stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise JudgeError(
                f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}"
            ) from exc
        if not isinstance(data, list):
            raise JudgeError(f"{path}: expected a JSON list of objects")
        return data
    if path.suffix.lower() == ".json" and stripped.startswith("{") and "\n{" not in stripped:
        raise JudgeError(
            f"{path}: expected a JSON list of objects (or JSON lines), found one object"
        )
    rows: list[Any] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise JudgeError(f"{path}: line {number} is not valid JSON: {exc.msg}") from exc
    return rows


def load_outputs(source: OutputsSource, *, what: str = "outputs") -> list[dict[str, Any]]:
    """Read outputs in AlpacaEval's model-outputs format and validate every row.

    source: a ``.json`` file holding a list of objects, a ``.jsonl`` file with one object
        per line, a folder holding ``model_outputs.json(l)``, or a list of dicts.
    Each row needs ``instruction`` and ``output`` (strings); ``generator`` and ``dataset``
    are optional strings. Returns normalised copies. Raises :class:`JudgeError` naming
    the file and row of the first bad row.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        rows = _read_rows(path)
        origin = str(path)
    else:
        rows = list(source)
        origin = f"{what} (in memory)"
    out: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        where = f"{origin}: row {index}"
        if not isinstance(row, dict):
            raise JudgeError(f"{where}: expected an object, got {type(row).__name__}")
        for key in ("instruction", "output"):
            if key not in row:
                raise JudgeError(f"{where}: missing field {key!r}")
            if not isinstance(row[key], str):
                raise JudgeError(f"{where}: field {key!r} must be a string, got {row[key]!r}")
        for key in ("generator", "dataset"):
            if row.get(key) is not None and not isinstance(row[key], str):
                raise JudgeError(f"{where}: field {key!r} must be a string, got {row[key]!r}")
        clean = dict(row)
        clean["_row"] = index
        clean["_origin"] = origin
        out.append(clean)
    return out


@dataclass
class _Pair:
    instruction: str
    reference: dict[str, Any]
    model: dict[str, Any]

    @property
    def dataset(self) -> str | None:
        return self.reference.get("dataset") or self.model.get("dataset")


def _index_by_instruction(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    index: dict[str, dict[str, Any]] = {}
    for row in rows:
        previous = index.get(row["instruction"])
        if previous is not None:
            raise JudgeError(
                f"{row['_origin']}: rows {previous['_row']} and {row['_row']} have the same "
                f"instruction {_short(row['instruction'])!r}; instructions must be unique"
            )
        index[row["instruction"]] = row
    return index


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def pair_outputs(
    model_outputs: list[dict[str, Any]], reference_outputs: list[dict[str, Any]]
) -> tuple[list[_Pair], int]:
    """Pair model outputs with references by instruction text, in model-output order.

    Returns the pairs and the number of references that no model output matched.
    Raises :class:`JudgeError` naming the first model-output instruction without a
    reference, or duplicate instructions on either side.
    """
    references = _index_by_instruction(reference_outputs)
    _index_by_instruction(model_outputs)
    pairs: list[_Pair] = []
    for row in model_outputs:
        ref = references.get(row["instruction"])
        if ref is None:
            raise JudgeError(
                f"{row['_origin']}: row {row['_row']}: no reference output has the instruction "
                f"{_short(row['instruction'])!r}"
            )
        pairs.append(_Pair(instruction=row["instruction"], reference=ref, model=row))
    return pairs, len(references) - len(pairs)


# --------------------------------------------------------------------------------------
# Statistics and report
# --------------------------------------------------------------------------------------


def win_rate(preferences: Iterable[float]) -> tuple[float, float, int]:
    """Win rate of output_2 (the model), its standard error, and n.

    ``win_rate = mean((p - 1) * 100)`` over the given preferences (1, 1.5 or 2, or the
    average of two orders); ``standard_error = stdev((p - 1) * 100) / sqrt(n)`` with the
    sample standard deviation. NaN where undefined (no items; one item for the error).
    """
    values = [(float(p) - 1.0) * 100.0 for p in preferences]
    n = len(values)
    if n == 0:
        return math.nan, math.nan, 0
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(n) if n > 1 else math.nan
    return mean, se, n


def _num(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 6)


@dataclass
class DatasetScore:
    """Win rate on one ``dataset`` subset."""

    win_rate: float
    standard_error: float
    n: int
    n_total: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "win_rate": _num(self.win_rate),
            "standard_error": _num(self.standard_error),
            "n": self.n,
            "n_total": self.n_total,
        }


@dataclass
class JudgeReport:
    """Result of :func:`judge_outputs`.

    Counts are per item (one instruction) except ``n_judgments`` / ``n_cached`` /
    ``n_requested``, which count questions asked of the judge (two per item with
    ``both_orders``): ``n_cached`` were answered from the cache, ``n_requested`` were sent
    (a question that occurs twice in one run, e.g. identical outputs in both orders, is
    sent once). ``n_ties`` counts items with preference 1.5, which with ``both_orders``
    includes the two orders disagreeing.
    """

    name: str
    reference_name: str
    judge: str
    win_rate: float
    standard_error: float
    n_total: int
    n_parsed: int
    n_unparseable: int
    n_errors: int
    n_wins: int
    n_losses: int
    n_ties: int
    avg_length: float
    avg_length_reference: float
    per_dataset: dict[str, DatasetScore]
    n_judgments: int
    n_cached: int
    n_requested: int
    n_unmatched_references: int
    both_orders: bool
    seed: int
    template: str = TEMPLATE_VERSION
    output_dir: str | None = None
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["per_dataset"] = {k: v.to_dict() for k, v in self.per_dataset.items()}
        for key in ("win_rate", "standard_error", "avg_length", "avg_length_reference"):
            data[key] = _num(data[key])
        return data

    def leaderboard_row(self) -> dict[str, Any]:
        """The row written to ``leaderboard.json`` under the model's name."""
        return {
            "win_rate": _num(self.win_rate),
            "standard_error": _num(self.standard_error),
            "n": self.n_parsed,
            "n_total": self.n_total,
            "n_unparseable": self.n_unparseable,
            "n_errors": self.n_errors,
            "avg_length": _num(self.avg_length),
            "avg_length_reference": _num(self.avg_length_reference),
            "per_dataset": {k: _num(v.win_rate) for k, v in self.per_dataset.items()},
            "judge": self.judge,
            "reference": self.reference_name,
            "both_orders": self.both_orders,
        }

    def format_table(self) -> str:
        """A plain-text summary: overall row, per-dataset rows, counts."""

        def pct(x: float) -> str:
            return "n/a" if not math.isfinite(x) else f"{x:.2f}"

        header = f"{'name':<28} {'win_rate':>9} {'std_err':>8} {'n':>6} {'avg_len':>8}  judge"
        lines = [
            header,
            "-" * len(header),
            f"{_short(self.name, 28):<28} {pct(self.win_rate):>9} {pct(self.standard_error):>8} "
            f"{self.n_parsed:>6} {self.avg_length:>8.0f}  {self.judge}",
        ]
        for name, score in self.per_dataset.items():
            lines.append(
                f"  {_short(name, 26):<26} {pct(score.win_rate):>9} {pct(score.standard_error):>8} "
                f"{score.n:>6}"
            )
        lines.append(
            f"items: {self.n_total} total, {self.n_parsed} judged, {self.n_unparseable} "
            f"unparseable, {self.n_errors} errors; judgments: {self.n_cached} cached, "
            f"{self.n_requested} requested; reference '{self.reference_name}' "
            f"(avg_len {self.avg_length_reference:.0f}, {self.n_unmatched_references} unmatched)"
        )
        return "\n".join(lines)


def _leaderboard_markdown(report: JudgeReport) -> str:
    datasets = list(report.per_dataset)

    def cell(x: float) -> str:
        return "" if not math.isfinite(x) else f"{x:.2f}"

    head = ["name", "win_rate", "standard_error", "n", "avg_length", *datasets, "judge"]
    row = [
        report.name,
        cell(report.win_rate),
        cell(report.standard_error),
        str(report.n_parsed),
        f"{report.avg_length:.0f}",
        *(cell(report.per_dataset[d].win_rate) for d in datasets),
        f"`{report.judge}`",
    ]
    return "\n".join(
        [
            "| " + " | ".join(head) + " |",
            "|" + "|".join(["---"] + ["---:"] * (4 + len(datasets)) + ["---"]) + "|",
            "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |",
            "",
            f"Reference: {report.reference_name}. Items: {report.n_total} total, "
            f"{report.n_parsed} judged, {report.n_unparseable} unparseable, {report.n_errors} "
            f"errors. Orders: {'both' if report.both_orders else f'random (seed {report.seed})'}.",
            "",
        ]
    )



def _generator_name(rows: list[dict[str, Any]], default: str) -> str:
    names = list(dict.fromkeys(r["generator"] for r in rows if r.get("generator")))
    return "+".join(names) if names else default


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------


def _progress(total: int, enabled: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="judgment", dynamic_ncols=True)


def _chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def _preference(label: str, model_first: bool) -> float:
    if label == "tie":
        return 1.5
    model_won = (label == "a") == model_first
    return 2.0 if model_won else 1.0


def judge_outputs(
    model_outputs: OutputsSource,
    reference_outputs: OutputsSource,
    *,
    judge: str | Judge,
    output_dir: str | os.PathLike[str],
    base_url: str | None = None,
    both_orders: bool = False,
    seed: int = 0,
    max_items: int | None = None,
    max_retries: int = 5,
    retry_base_delay: float = 1.0,
    batch_size: int = 8,
    progress: bool = True,
    name: str | None = None,
    judge_options: dict[str, Any] | None = None,
) -> JudgeReport:
    """Judge model outputs against reference outputs and write the results.

    model_outputs, reference_outputs: AlpacaEval model-outputs files (JSON list or JSONL),
        folders holding ``model_outputs.json``, or lists of dicts; paired by instruction.
    judge: a spec (``openai:MODEL`` or ``hf:PATH``, see :func:`make_judge`) or a
        :class:`Judge` instance.
    output_dir: receives ``annotations.json``, ``leaderboard.json``, ``leaderboard.md``
        and the cache ``judge_cache.jsonl``; created when missing.
    both_orders: judge each pair as (reference, model) and (model, reference) and average
        the two preferences; an item is counted as unparseable / error when either order is.
        Otherwise each pair is shown in one order drawn from ``random.Random(seed)``.
    max_items: judge only the first ``max_items`` model outputs.
    max_retries, retry_base_delay: retry policy of ``openai:`` judges.
    batch_size: items per call to the judge (and per forward pass of ``hf:`` judges);
        results are cached after each call.
    name: the model's name in the leaderboard; defaults to its outputs' ``generator``.
    judge_options: further keyword arguments for :func:`make_judge`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_items is not None and max_items < 0:
        raise ValueError(f"max_items must be >= 0, got {max_items}")
    model_rows = load_outputs(model_outputs, what="model outputs")
    reference_rows = load_outputs(reference_outputs, what="reference outputs")
    pairs, n_unmatched = pair_outputs(model_rows, reference_rows)
    if max_items is not None:
        pairs = pairs[:max_items]
    model_name = name or _generator_name(model_rows, "model")
    reference_name = _generator_name(reference_rows, "reference")

    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = AnnotationCache(out_dir / CACHE_FILE)

    owns_judge = isinstance(judge, str)
    judge_obj = (
        make_judge(
            judge,
            base_url,
            max_retries=max_retries,
            retry_base_delay=retry_base_delay,
            batch_size=batch_size,
            **(judge_options or {}),
        )
        if isinstance(judge, str)
        else judge
    )
    try:
        rng = random.Random(seed)
        # Orders per pair: model_first flags, one (random) or two (both orders).
        orders: list[list[bool]] = []
        for _ in pairs:
            orders.append([False, True] if both_orders else [rng.random() < 0.5])
        questions: list[tuple[int, int, JudgeItem, str]] = []  # (pair, order index, item, key)
        for p, (pair, flags) in enumerate(zip(pairs, orders, strict=True)):
            for o, model_first in enumerate(flags):
                model_text, ref_text = pair.model["output"], pair.reference["output"]
                a, b = (model_text, ref_text) if model_first else (ref_text, model_text)
                item = JudgeItem(pair.instruction, a, b)
                key = AnnotationCache.key(judge_obj.spec, item.instruction, a, b)
                questions.append((p, o, item, key))

        results: dict[tuple[int, int], JudgeResult] = {}
        todo: list[tuple[int, int, JudgeItem, str]] = []
        pending: dict[str, list[tuple[int, int]]] = {}
        for p, o, item, key in questions:
            hit = cache.get(key)
            if hit is not None:
                results[(p, o)] = hit
            elif key in pending:  # the same question twice in this run: ask once
                pending[key].append((p, o))
            else:
                pending[key] = [(p, o)]
                todo.append((p, o, item, key))
        n_cached = len(results)

        bar = _progress(len(todo), progress, f"judging with {judge_obj.spec}")
        # Items per call to the judge; the cache is written after each call.
        step = batch_size
        if isinstance(judge_obj, OpenAIJudge):
            step = max(batch_size, judge_obj.concurrency)
        elif isinstance(judge_obj, HFJudge):
            step = 4 * judge_obj.batch_size  # room to group similar lengths
        try:
            for chunk in _chunks(todo, step):
                answers = judge_obj.compare([item for _, _, item, _ in chunk])
                if len(answers) != len(chunk):
                    raise RuntimeError(
                        f"judge {judge_obj.spec} returned {len(answers)} results for {len(chunk)} items"
                    )
                for (_, _, _, key), answer in zip(chunk, answers, strict=True):
                    cache.put(key, judge_obj.spec, answer)
                    for slot in pending[key]:
                        results[slot] = answer
                bar.update(len(chunk))
        finally:
            bar.close()
    finally:
        if owns_judge:
            judge_obj.close()

    annotations: list[dict[str, Any]] = []
    for p, (pair, flags) in enumerate(zip(pairs, orders, strict=True)):
        judgments = []
        prefs: list[float] = []
        statuses: list[str] = []
        for o, model_first in enumerate(flags):
            res = results[(p, o)]
            pref = _preference(res.label, model_first) if res.status == "ok" else None
            if pref is not None:
                prefs.append(pref)
            statuses.append(res.status)
            judgments.append(
                {
                    "model_first": model_first,
                    "label": res.label,
                    "preference": pref,
                    "status": res.status,
                    "raw_completion": res.raw,
                    "error": res.error,
                    "scores": res.scores,
                    "cached": res.cached,
                }
            )
        if "error" in statuses:
            status, preference = "error", None
        elif "unparseable" in statuses:
            status, preference = "unparseable", None
        else:
            status, preference = "ok", statistics.fmean(prefs)
        single = len(flags) == 1
        annotations.append(
            {
                "instruction": pair.instruction,
                "output_1": pair.reference["output"],
                "output_2": pair.model["output"],
                "generator_1": pair.reference.get("generator") or reference_name,
                "generator_2": pair.model.get("generator") or model_name,
                "dataset": pair.dataset,
                "preference": preference,
                "annotator": judge_obj.spec,
                "raw_completion": judgments[0]["raw_completion"]
                if single
                else [j["raw_completion"] for j in judgments],
                "model_first": flags[0] if single else None,
                "order": ("model_first" if flags[0] else "reference_first") if single else "both",
                "status": status,
                "error": "; ".join(j["error"] for j in judgments if j["error"]) or None,
                "judgments": judgments,
                "template": TEMPLATE_VERSION,
            }
        )

    report = _build_report(
        annotations,
        pairs,
        name=model_name,
        reference_name=reference_name,
        judge=judge_obj.spec,
        n_judgments=len(questions),
        n_cached=n_cached,
        n_requested=len(todo),
        n_unmatched=n_unmatched,
        both_orders=both_orders,
        seed=seed,
    )
    report.output_dir = str(out_dir)
    report.files = {
        "annotations": str(out_dir / ANNOTATIONS_FILE),
        "leaderboard_json": str(out_dir / LEADERBOARD_JSON),
        "leaderboard_md": str(out_dir / LEADERBOARD_MD),
        "cache": str(out_dir / CACHE_FILE),
    }
    _write_json(out_dir / ANNOTATIONS_FILE, annotations)
    _write_json(out_dir / LEADERBOARD_JSON, {model_name: report.leaderboard_row()})
    (out_dir / LEADERBOARD_MD).write_text(_leaderboard_markdown(report), encoding="utf-8")
    return report


def _build_report(
    annotations: list[dict[str, Any]],
    pairs: list[_Pair],
    *,
    name: str,
    reference_name: str,
    judge: str,
    n_judgments: int,
    n_cached: int,
    n_requested: int,
    n_unmatched: int,
    both_orders: bool,
    seed: int,
) -> JudgeReport:
    prefs = [a["preference"] for a in annotations if a["status"] == "ok"]
    rate, se, n = win_rate(prefs)
    by_dataset: dict[str, list[dict[str, Any]]] = {}
    for ann in annotations:
        by_dataset.setdefault(ann["dataset"] or NO_DATASET, []).append(ann)
    per_dataset = {}
    for key in sorted(by_dataset):
        group = by_dataset[key]
        d_rate, d_se, d_n = win_rate(a["preference"] for a in group if a["status"] == "ok")
        per_dataset[key] = DatasetScore(d_rate, d_se, d_n, len(group))

    def mean_len(texts: list[str]) -> float:
        return statistics.fmean(len(t) for t in texts) if texts else math.nan

    return JudgeReport(
        name=name,
        reference_name=reference_name,
        judge=judge,
        win_rate=rate,
        standard_error=se,
        n_total=len(annotations),
        n_parsed=n,
        n_unparseable=sum(a["status"] == "unparseable" for a in annotations),
        n_errors=sum(a["status"] == "error" for a in annotations),
        n_wins=sum(p > 1.5 for p in prefs),
        n_losses=sum(p < 1.5 for p in prefs),
        n_ties=sum(p == 1.5 for p in prefs),
        avg_length=mean_len([p.model["output"] for p in pairs]),
        avg_length_reference=mean_len([p.reference["output"] for p in pairs]),
        per_dataset=per_dataset,
        n_judgments=n_judgments,
        n_cached=n_cached,
        n_requested=n_requested,
        n_unmatched_references=n_unmatched,
        both_orders=both_orders,
        seed=seed,
    )
