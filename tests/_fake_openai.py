"""A small real HTTP server speaking OpenAI's ``/v1/chat/completions`` (stdlib http.server).

``FakeAPI.reply(messages)`` gives the reply text; ``FakeAPI.top(messages, body)``, when set,
gives the first reply token's top log-probabilities as ``[(token, logprob), ...]`` (sent
when the request asks for ``logprobs``). ``/extras/tokenize`` (llama-cpp-python's) maps the
label spellings to ids 1-4 (:data:`LABEL_IDS`), another single character to its code
point, the empty text to none and anything longer to two ids, each after ``bos`` when
set; a request with a ``logit_bias`` gets the
biased labels' reply from ``FakeAPI.restricted(messages)``. With ``die_after=K`` the server
answers K chat requests, then dies: the next request's connection is dropped unanswered
and the port closed (later requests are refused), as when a judge server is killed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LABEL_IDS = {"a": 1, " a": 2, "b": 3, " b": 4}

Top = list[tuple[str, float]]


@dataclass
class FakeAPI:
    url: str
    reply: Callable[[list[dict[str, str]]], str] = lambda m: "a"
    top: Callable[[list[dict[str, str]], dict[str, Any]], Top] | None = None
    restricted: Callable[[list[dict[str, str]]], Top] | None = None
    tokenize: bool = True
    bos: int | None = None  # tokenize puts it before every text, as llama-cpp-python does
    fail_first: int = 0
    fail_status: int = 500
    retry_after: str | None = None
    die_after: int | None = None
    dead: threading.Event = field(default_factory=threading.Event)
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].endswith("/chat/completions")]


def _choice(content: str, top: Top | None) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": content}}
    if top is not None:
        entries = [{"token": t, "logprob": lp, "bytes": None} for t, lp in top]
        first = max(entries, key=lambda e: e["logprob"])
        choice["logprobs"] = {"content": [{**first, "top_logprobs": entries}]}
    return choice


def serve(state: FakeAPI) -> Iterator[FakeAPI]:
    """Run the server for ``state`` in a thread; yields ``state`` with ``url`` set."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.requests.append(
                    {"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                failing = len(state.chat_requests) <= state.fail_first
                dying = (state.die_after is not None and self.path.endswith("/completions")
                         and len(state.chat_requests) > state.die_after)
            if dying:
                state.dead.set()  # the serving thread closes the port
                self.close_connection = True
                return None
            if self.path == "/extras/tokenize" and state.tokenize:
                text = body["input"]
                ids = ([LABEL_IDS[text]] if text in LABEL_IDS else [ord(text)] if len(text) == 1
                       else [] if not text else [99, 98])
                return self._send(200, {"tokens": ([state.bos] if state.bos else []) + ids})
            if self.path != "/v1/chat/completions":
                return self._send(404, {"error": "not found"})
            if failing:
                headers = ({"Retry-After": state.retry_after, "retry-after-ms": "1"}
                           if state.retry_after else {})
                return self._send(state.fail_status, {"error": "try again"}, headers)
            messages = body["messages"]
            if body.get("logit_bias") and state.restricted is not None:
                top = state.restricted(messages)
                return self._send(200, {"choices": [_choice(max(top, key=lambda t: t[1])[0],
                                                            top)]})
            top = state.top(messages, body) if state.top and body.get("logprobs") else None
            self._send(200, {"choices": [_choice(state.reply(messages), top)]})

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"

    def reaper() -> None:
        state.dead.wait()
        server.shutdown()
        server.server_close()

    reaping = threading.Thread(target=reaper, daemon=True)
    reaping.start()
    try:
        yield state
    finally:
        state.dead.set()
        reaping.join()
