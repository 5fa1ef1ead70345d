"""The one parser of a data spec (``--data``, ``--eval-data``, experiment files, prompts):
exactly ``synthetic`` or ``synthetic:SPLIT`` is the built-in suite; anything on disk or that
looks like a path (starts with ``.``, ``/``, ``~``, or ends in a data-file suffix) a local
path, so ``synthetic_mine.json`` is a file; anything else a Hugging Face Hub dataset id."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SYNTHETIC = "synthetic"
FILE_SUFFIXES: tuple[str, ...] = (".json", ".jsonl", ".ndjson", ".parquet")


@dataclass(frozen=True)
class DataSpec:
    """What a data string names: ``path`` is the text (``synthetic`` for the suite);
    ``split`` the suite's split asked for (None: the caller's default)."""

    kind: Literal["synthetic", "path", "hub"]
    path: str
    split: str | None = None

    @property
    def is_synthetic(self) -> bool:
        return self.kind == "synthetic"


def _looks_like_path(text: str) -> bool:
    if text.startswith((".", "/", "~")) or (os.sep != "/" and os.sep in text):
        return True
    return Path(text).suffix.lower() in FILE_SUFFIXES


def parse_data_spec(text: str | os.PathLike[str]) -> DataSpec:
    """Parse a data string; ValueError for an empty one or an unknown synthetic split."""
    if isinstance(text, os.PathLike):
        return DataSpec("path", os.fspath(text))
    if not isinstance(text, str):
        raise TypeError(f"a data spec is a string or a path, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("empty data spec: pass 'synthetic', 'synthetic:SPLIT', a path or a hub id")
    if text == SYNTHETIC:
        return DataSpec("synthetic", SYNTHETIC, None)
    if text.startswith(SYNTHETIC + ":"):
        split = text.split(":", 1)[1]
        from .synthetic import SPLITS as known  # the suite is imported only when named

        if split not in known:
            if Path(text).exists():  # a file really called synthetic:<something>
                return DataSpec("path", text)
            raise ValueError(
                f"unknown synthetic split {split!r} in data spec {text!r}; known splits: "
                f"{', '.join(known)}"
            )
        return DataSpec("synthetic", SYNTHETIC, split)
    if Path(text).expanduser().exists() or _looks_like_path(text):
        return DataSpec("path", text)
    return DataSpec("hub", text)
