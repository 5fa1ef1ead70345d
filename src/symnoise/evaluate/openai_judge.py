"""Our pairwise prompt judged through any OpenAI-compatible endpoint (``openai:MODEL``).

Transport, retries, timeouts and ``base_url`` are the official ``openai`` client's;
requests run in a thread pool. The verdict is read, in this order of preference:

1. from the top log-probabilities at the first reply token that is a label (``a``/``b``):
   ``p_b`` = P(b) / (P(a) + P(b)), as AlpacaEval 2's weighted annotators compute it;
2. when no reply token is a label, from the reply asked again restricted to the label
   tokens (one token, ``logit_bias`` +100; the ids come from the server's tokenize
   endpoint, or tiktoken for OpenAI);
3. only without log-probabilities, from the reply text (:func:`.judge_prompts.parse_verdict`);
   a reply that cannot be parsed is counted as unparseable, never guessed.
"""

from __future__ import annotations

import concurrent.futures
import math
import os
import threading
from collections.abc import Sequence
from typing import Any

from .judge_prompts import Judge, JudgeError, JudgeItem, JudgeResult, build_messages, parse_verdict

__all__ = ["OpenAIJudge", "DEFAULT_BASE_URL", "label_of_token"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
LABELS = ("a", "b")
_NO_KEY = "no-key"  # the client needs some key; it is never sent (see _on_request)


def label_of_token(token: str) -> str | None:
    """``"a"``/``"b"`` when a reply token is a label (``" a"``, ``"(b"``, ``"a)"``), else None."""
    core = token.strip().strip("()[]*.:").strip()
    return core if core in LABELS else None


class OpenAIJudge(Judge):
    """Judge through an OpenAI-compatible ``/chat/completions`` endpoint.

    model: the ``model`` field of each request. base_url: the API root (``.../v1``); default
    ``$OPENAI_BASE_URL``, ``$OPENAI_API_BASE`` (alpaca_eval's name), else OpenAI's.
    api_key: default ``$OPENAI_API_KEY``; none is sent without one (local servers).
    max_retries, timeout: the openai client's. concurrency: requests in flight at once.
    top_logprobs: alternatives asked for; logprobs: False asks for text only.
    HTTP 401/403/404 raise :class:`JudgeError`; other 4xx are an error for that item.
    """

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 max_retries: int = 5, timeout: float = 120.0, concurrency: int = 4,
                 max_tokens: int = 8, top_logprobs: int = 20, logprobs: bool = True) -> None:
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
        self.max_tokens, self.top_logprobs, self.logprobs = max_tokens, top_logprobs, logprobs
        self.n_requests = 0  # HTTP requests sent, retries included
        self._lock = threading.Lock()  # guards the label ids
        self._count_lock = threading.Lock()  # guards n_requests (taken inside HTTP calls)
        self._label_ids: dict[int, str] | None = None
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

    def _create(self, item: JudgeItem, **extra: Any) -> Any:
        kwargs: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": 0}
        if self.logprobs:
            kwargs.update(logprobs=True, top_logprobs=self.top_logprobs)
        return self.chat(build_messages(item.instruction, item.output_a, item.output_b),
                         **{**kwargs, **extra})

    def _judge_one(self, item: JudgeItem) -> JudgeResult:
        openai = self._openai
        try:
            reply = self._create(item)
            choice = reply.choices[0]
            text = choice.message.content
            content = getattr(choice.logprobs, "content", None) if choice.logprobs else None
            if not content:  # no log-probabilities from this endpoint: parse the text
                label = parse_verdict(text)
                return JudgeResult(label=label, status="ok" if label else "unparseable",
                                   raw=text, method="text")
            for position in content:
                if label_of_token(position.token or "") is not None:
                    return self._from_top(position.top_logprobs or [position], text, "logprobs")
            return self._restricted(item, text)
        except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError,
                openai.APITimeoutError) as exc:
            return JudgeResult(label=None, status="error",
                               error=f"failed after {self.max_retries + 1} attempts: {_describe(exc)}")
        except openai.APIStatusError as exc:  # other 4xx: this item alone
            return JudgeResult(label=None, status="error", error=_describe(exc))
        except (openai.APIError, AttributeError, IndexError, TypeError) as exc:
            return JudgeResult(label=None, status="error",
                               error=f"malformed chat completion from {self.url}: {exc}")

    def _from_top(self, top: Sequence[Any], raw: str | None, method: str) -> JudgeResult:
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
        scores = {lab: math.log(p) if p > 0 else -math.inf
                  for lab, p in (("a", 1 - p_b), ("b", p_b))}
        return JudgeResult(label=label, status="ok", raw=raw, p_b=p_b, method=method,
                           scores=scores)

    def _restricted(self, item: JudgeItem, first_reply: str | None) -> JudgeResult:
        """Ask again with the reply restricted to one label token (logit bias)."""
        ids = self.label_token_ids()
        if not ids:
            return JudgeResult(label=None, status="unparseable", raw=first_reply,
                               method="logprobs",
                               error="no label among the reply's tokens, and the server "
                                     "offers no tokenize endpoint to restrict the reply")
        reply = self._create(item, max_tokens=1, logit_bias={str(i): 100 for i in ids})
        choice = reply.choices[0]
        content = getattr(choice.logprobs, "content", None) or []
        raw = f"{first_reply!r} -> restricted {choice.message.content!r}"
        if content:
            result = self._from_top(content[0].top_logprobs or [content[0]], raw, "restricted")
            if result.status == "ok":
                return result
        label = label_of_token(choice.message.content or "")
        return JudgeResult(label=label, status="unparseable" if label is None else "ok", raw=raw,
                           method="restricted")

    def label_token_ids(self) -> dict[int, str]:
        """Token id -> label for the single-token spellings of the labels (cached)."""
        with self._lock:
            if self._label_ids is None:
                self._label_ids = self.single_token_ids(["a", " a", "b", " b"])
            return self._label_ids

    def single_token_ids(self, texts: Sequence[str]) -> dict[int, str]:
        """Token id -> stripped text for each of ``texts`` that is one token."""
        found: dict[int, str] = {}
        for text in texts:
            ids = self.tokenize(text)
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

    def compare(self, items: Sequence[JudgeItem]) -> list[JudgeResult]:
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._judge_one, items))

    def close(self) -> None:
        self.client.close()


def _describe(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    text = str(exc)[:300]
    return f"HTTP {status}: {text}" if status else f"{type(exc).__name__}: {text}"
