"""The one parser of a data spec: the built-in suite, a local path or a hub id.

``--data``, ``--eval-data``, experiment files and evaluation prompts all name their data
with one string. :func:`parse_data_spec` decides what it means, once:

* exactly ``synthetic``, or ``synthetic:SPLIT`` with a known split (``train``,
  ``heldout``, ``test``): the built-in synthetic suite (``synthetic:bogus`` is an error
  naming the known splits);
* anything that exists on disk, or looks like a path (starts with ``.``, ``/`` or ``~``,
  or ends in a data-file suffix): a local path, so ``synthetic_mine.json`` is a file, never
  the suite;
* anything else: a Hugging Face Hub dataset id.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["SYNTHETIC", "FILE_SUFFIXES", "DataSpec", "parse_data_spec", "synthetic_splits"]

SYNTHETIC = "synthetic"
FILE_SUFFIXES: tuple[str, ...] = (".json", ".jsonl", ".ndjson", ".parquet")


@dataclass(frozen=True)
class DataSpec:
    """What a data string names.

    kind: ``synthetic``, ``path`` or ``hub``. split: the synthetic split asked for
    (``None`` for bare ``synthetic``: the caller's default split); None for other kinds.
    path: the text as given for ``path`` and ``hub`` (``synthetic`` for the suite).
    """

    kind: Literal["synthetic", "path", "hub"]
    path: str
    split: str | None = None

    @property
    def is_synthetic(self) -> bool:
        return self.kind == "synthetic"

    def name(self, default_split: str = "train") -> str:
        """The name a run records: ``synthetic:SPLIT`` for the suite, else the text."""
        if self.is_synthetic:
            return f"{SYNTHETIC}:{self.split or default_split}"
        return self.path


def synthetic_splits() -> tuple[str, ...]:
    """The split names the synthetic suite accepts (imported only when asked for)."""
    from .synthetic import SPLITS

    return tuple(SPLITS)


def _looks_like_path(text: str) -> bool:
    if text.startswith((".", "/", "~")) or (os.sep != "/" and os.sep in text):
        return True
    return Path(text).suffix.lower() in FILE_SUFFIXES


def parse_data_spec(text: str | os.PathLike[str]) -> DataSpec:
    """Parse a data string (see the module docstring). ValueError for an empty string or
    an unknown synthetic split."""
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
        known = synthetic_splits()
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
