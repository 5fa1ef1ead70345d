"""What every pairwise judge shares: the question, the answer, the judge interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["JudgeError", "JudgeItem", "JudgeResult", "Judge"]


class JudgeError(RuntimeError):
    """A problem the user can fix: bad judge spec, rejected key, unknown model or URL."""


@dataclass(frozen=True)
class JudgeItem:
    """One question to a judge: which of ``output_a`` and ``output_b`` is better.

    ``instruction`` is the whole prompt the outputs answer (instruction and input).
    """

    instruction: str
    output_a: str
    output_b: str


@dataclass
class JudgeResult:
    """A judge's answer to one :class:`JudgeItem`.

    label: ``"a"``, ``"b"``, ``"tie"``, or ``None`` when ``status`` is not ``"ok"``.
    status: ``"ok"``, ``"unparseable"`` (the reply is kept in ``raw``) or ``"error"``
        (request failed after every retry; ``error`` says why).
    p_b: the judge's probability that (b) is better, from the verdict token's
        log-probabilities renormalised over the two labels; ``None`` for a discrete
        verdict (text parsing, local ``hf:`` judge).
    method: how the verdict was read: ``"logprobs"``, ``"restricted"`` (log-probabilities
        of a reply restricted to the labels), ``"text"`` or ``"hf-logprobs"``.
    raw: the judge's raw reply (for ``hf:`` judges, the two log-probabilities as text).
    scores: per-label log-probabilities where known.
    cached: True when the answer came from the cache rather than the judge.
    """

    label: str | None
    status: str
    raw: str | None = None
    error: str | None = None
    scores: dict[str, float] | None = None
    cached: bool = False
    p_b: float | None = None
    method: str | None = None

    def __post_init__(self) -> None:
        if self.status not in ("ok", "unparseable", "error"):
            raise ValueError(f"unknown judge result status {self.status!r}")
        if (self.status == "ok") != (self.label in ("a", "b", "tie")):
            raise ValueError(f"status {self.status!r} does not fit label {self.label!r}")
        if self.p_b is not None and not 0.0 <= self.p_b <= 1.0:
            raise ValueError(f"p_b must lie in [0, 1], got {self.p_b}")

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
