"""The pairwise question to a judge: its types, where its prompt lives (the AlpacaEval
annotator configuration :data:`CONFIG_DIR`), and the parser of a reply's text.
:data:`TEMPLATE_VERSION` names the wording in annotations and cache file names: change it
whenever the wording changes, so that verdicts given to an older wording are not reused.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["JudgeError", "JudgeResult", "Judge", "Messages", "TEMPLATE_VERSION", "CONFIG_DIR",
           "build_plain_prompt", "parse_verdict"]

Messages = list[dict[str, str]]  # one question as chat messages (system, user)


class JudgeError(RuntimeError):
    """A problem the user can fix: bad judge spec, rejected key, unknown model or URL."""


@dataclass
class JudgeResult:
    """A judge's answer to one question: ``label`` ``"a"``, ``"b"`` or ``"tie"`` when
    ``status`` is ``"ok"`` (else ``"unparseable"`` or ``"error"``, why in ``error``); ``p_b``
    P((b) is better) over the two labels, None for a discrete verdict; ``method``
    ``"logprobs"``, ``"restricted"``, ``"text"`` or ``"hf-logprobs"``."""

    label: str | None
    status: str
    raw: str | None = None
    error: str | None = None
    scores: dict[str, float] | None = None
    cached: bool = False
    p_b: float | None = None
    method: str | None = None

    def preference(self, model_first: bool) -> float | None:
        """AlpacaEval preference of the model (1 reference better .. 2 model better)."""
        if self.status != "ok":
            return None
        if self.p_b is not None:
            p_model = 1.0 - self.p_b if model_first else self.p_b
            return 1.0 + p_model
        if self.label == "tie":
            return 1.5
        return 2.0 if (self.label == "a") == model_first else 1.0

    def record(self) -> dict[str, Any]:
        """The result as the JSON object the annotator stores, with ``preference`` of (b)."""
        data = asdict(self)
        del data["cached"]
        return {**data, "preference": self.preference(False)}


class Judge(ABC):
    """A pairwise judge. ``spec`` identifies it in cache file names and reports."""

    spec: str

    @abstractmethod
    def compare(self, questions: Sequence[Messages]) -> list[JudgeResult]:
        """Judge every question; one result per question, in order. Never raises for one."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (connections, model memory)."""


CONFIG_DIR = Path(__file__).with_name("annotators")
TEMPLATE_VERSION = "pairwise-v1"


def build_plain_prompt(messages: Messages) -> str:
    """The question as one plain-text prompt (for a model without a chat template), ending
    right before the verdict."""
    return "\n\n".join([*(m["content"] for m in messages), "The better output is"])


# Replies that are nothing but a verdict, once markdown, quotes and punctuation are gone.
_WHOLE = re.compile(
    r"(?:(?:the\s+)?(?:better\s+)?(?:output|answer|response|option)\s*)?"
    r"(?:\(\s*([ab])\s*\)|\[\s*([ab])\s*\]|([ab]))"
)
_TIE = re.compile(r"(?:it'?s\s+a\s+)?(?:tie|draw|equal|both(?:\s+are)?\s+(?:equal|equally\s+good))")
# A label explicitly marked as one: "(a)", "[b]", "output a", "output (b)".
_MENTION = re.compile(
    r"\(\s*([ab])\s*\)|\[\s*([ab])\s*\]|\b(?:output|response|answer|option)\s*\(?\s*([ab])\b"
)
# Phrases that state the verdict when both labels are mentioned.
_VERDICT_PHRASES = (
    re.compile(
        r"(?:\b(?:output|response|answer|option)\s*\(?\s*([ab])\s*\)?|\(\s*([ab])\s*\))"
        r"\s+(?:is|was|seems|appears)\s+(?:clearly\s+|slightly\s+|much\s+)?"
        r"(?:better|preferred|preferable|superior|the\s+better)"
    ),
    re.compile(
        r"\b(?:verdict|answer|choice|winner|decision|better\s+(?:output|response|one))"
        r"\s*(?:is|:|-)\s*(?:output\s*|response\s*)?\(?\s*\**\s*([ab])\b"
    ),
    re.compile(r"\bi\s+(?:prefer|choose|pick|select)\s+(?:output\s*|response\s*)?\(?\s*([ab])\b"),
)
# A leading bare letter followed by punctuation that ends it ("a.", "b)", "a:").
_LEADING = re.compile(r"([ab])\s*(?:[.):,;!\n]|$)")
_STRIP = " \t\r\n*_`'\"“”‘’.!:;,-#>"


def _label(match: re.Match[str]) -> str:
    return next(g for g in match.groups() if g)


def parse_verdict(reply: str | None) -> str | None:
    """``"a"``, ``"b"`` or ``"tie"`` as named by ``reply`` (the bare letter, ``"Output (a)"``,
    ``"**a**"``, ``"Verdict: a"``, a verdict line then an explanation...); ``None`` when
    unclear (both named without a verdict, neither, the article "A"), never a guess."""
    text = (reply or "").strip().lower()
    if not text:
        return None
    core = text.strip(_STRIP)
    if _TIE.fullmatch(core):
        return "tie"
    first_line = text.split("\n", 1)[0].strip(_STRIP)
    # the whole reply, or its first line ("Output (a)" then an explanation), is a verdict
    whole = _WHOLE.fullmatch(core) or _WHOLE.fullmatch(first_line)
    if whole:
        return _label(whole)
    for pattern in (*_VERDICT_PHRASES, _MENTION):  # the first that names a label decides
        found = {_label(m) for m in pattern.finditer(text)}
        if found:
            return found.pop() if len(found) == 1 else None
    leading = _LEADING.match(text.lstrip(_STRIP))
    return leading.group(1) if leading else None
