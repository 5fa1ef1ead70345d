"""Published numbers of the SymNoise and NEFTune papers, for reference rows in reports.

Only numbers read from the papers themselves (or their authors' official material) are
listed here, each with where it was read. Nothing is derived or estimated: a cell the
sources below do not state is absent (``None``) and shows as ``-``.

Sources
    * SymNoise: A. K. Yadav and A. Singh, "SymNoise: Advancing Language Model Fine-tuning
      with Symmetric Noise", arXiv:2312.01523 (v2, 8 Dec 2023). The abstract states the
      AlpacaEval scores of LLaMA-2-7B fine-tuned on Alpaca: standard fine-tuning 29.79%,
      NEFTune 64.69%, SymNoise 69.04%. (Read from the arXiv HTML page
      https://arxiv.org/html/2312.01523v2 and the arXiv listing's abstract.)
    * NEFTune: N. Jain, P. Chiang, Y. Wen et al., "NEFTune: Noisy Embeddings Improve
      Instruction Finetuning", arXiv:2310.05914 (ICLR 2024). The abstract states 29.79%
      -> 64.69% for LLaMA-2-7B on Alpaca. Figure 1 of the paper (also the image
      ``imgs/AlpacaEval_Figue1.png`` of the authors' repository github.com/neelsjain/NEFTune,
      commit 09d4909) gives the AlpacaEval win rate of LLaMA-2 (7B) fine-tuned on each of
      the four datasets without and with NEFTune, to one decimal, and their average.

Not included, because their text could not be read and checked here: the full
per-dataset Table 1 of the SymNoise paper (its Evol-Instruct, ShareGPT and OpenPlatypus
cells), the noise ablation table (Gaussian/Bernoulli/uniform at alpha and alpha/sqrt(3)),
the length/diversity table and the OpenLLM task scores of either paper.

Datasets use symnoise's format names (``alpaca``, ``evol_instruct``, ``sharegpt``,
``openplatypus``); methods use symnoise's method names (``none`` = standard fine-tuning,
``uniform`` = NEFTune, ``symnoise``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "PAPER_DATASETS",
    "PAPER_MODEL",
    "PAPER_REFERENCE",
    "PaperRow",
    "WIN_RATE_ROWS",
    "SYMNOISE_CITATION",
    "NEFTUNE_CITATION",
    "matches_paper_model",
    "matches_paper_reference",
]

SYMNOISE_CITATION = (
    "Yadav & Singh, SymNoise: Advancing Language Model Fine-tuning with Symmetric Noise, "
    "arXiv:2312.01523 (2023)"
)
NEFTUNE_CITATION = (
    "Jain et al., NEFTune: Noisy Embeddings Improve Instruction Finetuning, "
    "arXiv:2310.05914 (2023; ICLR 2024)"
)

#: The four training datasets of the papers, in their column order.
PAPER_DATASETS: tuple[str, ...] = ("alpaca", "evol_instruct", "sharegpt", "openplatypus")
#: The base model of the papers' main tables.
PAPER_MODEL = "LLaMA-2-7B"
#: AlpacaEval (v1) reference outputs, the generator name in AlpacaEval's files.
PAPER_REFERENCE = "text_davinci_003"


@dataclass(frozen=True)
class PaperRow:
    """One published row: a method's AlpacaEval win rates (percent) per dataset.

    label: how the row is shown, always naming the paper. values: dataset -> win rate,
    only the cells the source states. average: the source's own average (``None`` when it
    gives none; never computed here). where: the place in the source the numbers come from.
    """

    label: str
    method: str
    values: dict[str, float] = field(default_factory=dict)
    average: float | None = None
    digits: int = 2
    citation: str = ""
    where: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "method": self.method,
            "values": dict(self.values),
            "average": self.average,
            "digits": self.digits,
            "citation": self.citation,
            "where": self.where,
        }


_NEFTUNE_FIG1 = (
    "arXiv:2310.05914, Figure 1 (github.com/neelsjain/NEFTune imgs/AlpacaEval_Figue1.png)"
)

WIN_RATE_ROWS: tuple[PaperRow, ...] = (
    # SymNoise abstract (arXiv:2312.01523v2): "standard techniques yield a 29.79% score on
    # AlpacaEval ... SymNoise ... 69.04% ... NEFTune (64.69%)", LLaMA-2-7B on Alpaca.
    PaperRow(
        label="paper (SymNoise, abstract): LLaMA-2-7B",
        method="none",
        values={"alpaca": 29.79},
        citation=SYMNOISE_CITATION,
        where="arXiv:2312.01523v2, abstract",
    ),
    PaperRow(
        label="paper (SymNoise, abstract): +NEFTune",
        method="uniform",
        values={"alpaca": 64.69},
        citation=SYMNOISE_CITATION,
        where="arXiv:2312.01523v2, abstract",
    ),
    PaperRow(
        label="paper (SymNoise, abstract): +SymNoise",
        method="symnoise",
        values={"alpaca": 69.04},
        citation=SYMNOISE_CITATION,
        where="arXiv:2312.01523v2, abstract",
    ),
    # NEFTune Figure 1 (bar labels, one decimal), read from the authors' repository image
    # imgs/AlpacaEval_Figue1.png (github.com/neelsjain/NEFTune, commit 09d4909):
    # LLaMA-2 (7B): Alpaca 29.8, Evol-Instruct 70.3, ShareGPT 68.7, OpenPlatypus 62.0,
    # Average 57.7; +NEFT: 64.7, 79.6, 76.3, 70.6, Average 72.8.
    PaperRow(
        label="paper (NEFTune, Fig. 1): LLaMA-2 (7B)",
        method="none",
        values={"alpaca": 29.8, "evol_instruct": 70.3, "sharegpt": 68.7, "openplatypus": 62.0},
        average=57.7,
        digits=1,
        citation=NEFTUNE_CITATION,
        where=_NEFTUNE_FIG1,
    ),
    PaperRow(
        label="paper (NEFTune, Fig. 1): +NEFT",
        method="uniform",
        values={"alpaca": 64.7, "evol_instruct": 79.6, "sharegpt": 76.3, "openplatypus": 70.6},
        average=72.8,
        digits=1,
        citation=NEFTUNE_CITATION,
        where=_NEFTUNE_FIG1,
    ),
)


def _squash(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


def matches_paper_model(model: str | None) -> bool:
    """True when a model path/id names LLaMA-2-7B (``Llama-2-7b-hf``, ``llama2_7b`` ...),
    and not its chat or 13B/70B variants."""
    if not model:
        return False
    s = _squash(model)
    return "llama27b" in s and "chat" not in s


def matches_paper_reference(reference: str | None) -> bool:
    """True when judged against text-davinci-003 (AlpacaEval v1's reference outputs)."""
    return bool(reference) and _squash(reference) in ("textdavinci003", "davinci003")
