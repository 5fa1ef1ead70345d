"""Small helpers shared by every layer: atomic writes, so a crash never leaves a
half-written result file behind (readers see the old file or the new one), and the one
spelling of a prompt's user text (:func:`user_message`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a synced temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """``data`` as indented JSON (non-JSON values via ``str``), written atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def user_message(instruction: str, input: str | None = "") -> str:
    """The user's request as one text: the instruction, then Alpaca's ``input`` after a
    blank line when it has any non-space character. Templates, AlpacaEval files, judges and
    per-example joins all build "instruction + input" here."""
    return f"{instruction}\n\n{input}" if input and input.strip() else instruction
