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

Every table of the SymNoise paper (both versions), as transcribed in the project's
``../shared/paper/TABLES.md``, is in :data:`PAPER_TABLES` (``"T1"`` ... ``"T5"``): each
:class:`PaperTable` names its judge (``GPT-4``, ``ChatGPT``, or ``None`` for the length
table and the lm-evaluation-harness scores) and the paper versions that print it
(``v1`` = arXiv:2312.01523 *SymNoise: Advancing Language Model Fine-tuning with Symmetric
Noise*; ``v2`` = its later version, *Understanding and Improving Noisy Embedding Techniques
in Instruction Finetuning*); a row printed by one version only says so. Cells are kept as
printed (``PaperValue.text``). :func:`paper_values` gives them flat, one
:class:`PaperValue` per number, for matching against runs (model, dataset, method, alpha,
norm_match, metric, judge).

Noise settings of the rows. ``alpha`` is set only where the paper prints it: the ablation
rows (T3), and the length table (T4), whose header gives alpha 5 / 5 / 10 / 15 for
Alpaca / Evol-Instruct / ShareGPT / OpenPlatypus: those are NEFTune's, and SymNoise's rows
there are at 5 (the ablation says SymNoise ran at 5 only; its OpenPlatypus cells equal
T4's). ``norm_match`` is True for the "/sqrt(3)" rows, False for the unscaled Gaussian row,
and None where the paper leaves it open: v2 describes SymNoise with the sqrt(3) but prints
v1's numbers, which had none.

Datasets use symnoise's format names (``alpaca``, ``evol_instruct``, ``sharegpt``,
``openplatypus``); methods use symnoise's method names (``none`` = standard fine-tuning,
``uniform`` = NEFTune, ``gaussian``, ``bernoulli``, ``symnoise``; ``training_data`` for
T4's statistics of the training sets); metrics use the names of symnoise's results
(``win_rate``, ``avg_chars``, ``avg_words``, ``rep_2``, and the harness tasks
``arc_challenge``, ``hellaswag``, ``mmlu``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "NEFTUNE_ALPHA",
    "PAPER_DATASETS",
    "PAPER_TABLES",
    "PAPER_VERSIONS",
    "COLUMN_TITLES",
    "METRIC_TITLES",
    "PaperTable",
    "PaperValue",
    "SYMNOISE_ALPHA",
    "TableRow",
    "paper_values",
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


# ---------------------------------------------------------------------------------------
# Every table of the SymNoise paper (v1 and v2), as printed
# ---------------------------------------------------------------------------------------

#: The two versions of the SymNoise paper.
PAPER_VERSIONS: dict[str, str] = {
    "v1": "arXiv:2312.01523, SymNoise: Advancing Language Model Fine-tuning with Symmetric "
          "Noise",
    "v2": "later version: Understanding and Improving Noisy Embedding Techniques in "
          "Instruction Finetuning",
}
#: NEFTune's noise alpha per dataset (the SymNoise length table's header).
NEFTUNE_ALPHA: dict[str, float] = {
    "alpaca": 5.0, "evol_instruct": 5.0, "sharegpt": 10.0, "openplatypus": 15.0,
}
#: SymNoise's alpha on every dataset (the ablation: "SymNoise ran at noise 5 only").
SYMNOISE_ALPHA = 5.0

#: Display titles of the columns (datasets as the paper spells them, harness tasks).
COLUMN_TITLES: dict[str, str] = {
    "alpaca": "Alpaca", "evol_instruct": "Evol-Instruct", "sharegpt": "ShareGPT",
    "openplatypus": "OpenPlatypus", "arc_challenge": "ARC", "hellaswag": "HellaSwag",
    "mmlu": "MMLU",
}
#: Display titles of the metrics of the length table (T4), as the paper names them.
METRIC_TITLES: dict[str, str] = {
    "avg_chars": "characters", "avg_words": "whitespace words", "rep_2": "2-gram repetition %",
}

_L2, _L1, _OPT = "LLaMA-2-7B", "LLaMA-1-7B", "OPT-6.7B"
_BOTH, _V1, _V2 = ("v1", "v2"), ("v1",), ("v2",)
_T2_COLUMNS = ("alpaca", "evol_instruct", "openplatypus", "sharegpt")  # as printed
_TASKS = ("arc_challenge", "hellaswag", "mmlu")


@dataclass(frozen=True)
class PaperValue:
    """One published number with its setting; ``text`` is the cell as printed."""

    table: str
    row: str
    model: str | None
    dataset: str
    method: str
    metric: str
    text: str
    alpha: float | None
    norm_match: bool | None
    judge: str | None
    versions: tuple[str, ...]

    @property
    def value(self) -> float:
        return float(self.text)


@dataclass(frozen=True)
class TableRow:
    """A printed row. cells: one per column of its table, as printed ("" = empty); a T3 cell
    "62.55 (1061.89)" is a win rate and an average length in characters."""

    label: str
    method: str
    cells: tuple[str, ...]
    model: str | None = _L2
    dataset: str | None = None  # T5: the fine-tuning data (its columns are tasks)
    metric: str | None = None  # T4: the row's metric (else the table's)
    alpha: float | tuple[float, ...] | None = None  # one, or one per column
    norm_match: bool | None = None
    versions: tuple[str, ...] | None = None  # None: the table's
    average: str | None = None


@dataclass(frozen=True)
class PaperTable:
    """A published table: its judge, the paper versions printing it, its rows as printed."""

    key: str
    title: str
    judge: str | None
    versions: tuple[str, ...]
    where: str
    columns: tuple[str, ...]
    metric: str | None
    rows: tuple[TableRow, ...]
    note: str = ""
    v1_only_columns: tuple[str, ...] = ()  # columns the later version dropped (T4: ShareGPT)

    def label(self) -> str:
        """E.g. ``"T1 (judge GPT-4; v1 Table 1, v2 Table 1)"``."""
        judge = f"judge {self.judge}" if self.judge else "no judge"
        return f"{self.key} ({judge}; {self.where})"

    def values(self) -> list[PaperValue]:
        """The table's numbers, one :class:`PaperValue` each (empty cells left out)."""
        out: list[PaperValue] = []
        for row in self.rows:
            for i, (col, cell) in enumerate(zip(self.columns, row.cells, strict=True)):
                if not cell:
                    continue
                dataset = row.dataset or col
                metric = col if row.dataset else (row.metric or self.metric or "")
                alpha = row.alpha[i] if isinstance(row.alpha, tuple) else row.alpha
                win, _, length = cell.partition(" (")
                found = [(metric, win)] + ([("avg_chars", length.rstrip(")"))] if length else [])
                versions = _V1 if col in self.v1_only_columns else (
                    row.versions or self.versions)
                for name, text in found:
                    out.append(PaperValue(self.key, row.label, row.model, dataset, row.method,
                                          name, text, alpha, row.norm_match, self.judge,
                                          versions))
        return out

    def header(self) -> list[str]:
        """Column titles for display: ``row``, the columns, ``Average`` when printed."""
        titles = [COLUMN_TITLES.get(c, c) for c in self.columns]
        average = ["Average"] if any(r.average for r in self.rows) else []
        return ["row", *titles, *average]

    def display_rows(self) -> list[list[str]]:
        """The rows as printed: label (with the metric for T4), cells, average."""
        average = any(r.average for r in self.rows)
        out = []
        for r in self.rows:
            label = f"{METRIC_TITLES[r.metric]}: {r.label}" if r.metric else r.label
            out.append([label, *r.cells, *([r.average or ""] if average else [])])
        return out


def _t(label: str, method: str, *cells: str, **kw: Any) -> TableRow:
    return TableRow(label, method, tuple(cells), **kw)


_NEFT_A = tuple(NEFTUNE_ALPHA[d] for d in PAPER_DATASETS)

PAPER_TABLES: dict[str, PaperTable] = {t.key: t for t in (
    PaperTable(
        "T1", "LLaMA-2-7B, AlpacaEval win rate (%) vs text-davinci-003, judged by GPT-4",
        "GPT-4", _BOTH, "v1 Table 1, v2 Table 1", PAPER_DATASETS, "win_rate", (
            _t("LLaMA-2-7B", "none", "29.79", "70.34", "68.74", "62.00", average="57.71"),
            _t("+NEFTune", "uniform", "64.69", "79.60", "76.28", "70.61", average="72.80"),
            _t("+Gaussian, α/√3 (v2 only)", "gaussian", "64.98", "78.88", "75.94", "70.20",
               norm_match=True, versions=_V2, average="72.49"),
            _t("+SymNoise", "symnoise", "69.04", "81.38", "78.67", "72.23", average="75.33"),
        ),
        "Averages as printed (57.71 and 72.49 are the exact means cut, not rounded). The "
        "base and NEFTune rows are the NEFTune paper's.",
    ),
    PaperTable(
        "T2", "three base models, AlpacaEval win rate (%) vs text-davinci-003, judged by "
        "ChatGPT", "ChatGPT", _V1, "v1 Table 2 (v2 keeps the rows, no numbers)",
        _T2_COLUMNS, "win_rate", tuple(
            _t(f"{model}{suffix}", method, *cells, model=model)
            for model, rows in (
                (_OPT, (("41.4", "52.2", "45.7", "53.4"), ("48.7", "55.5", "45.8", "54.3"),
                        ("50.8", "57.6", "46.9", "55.6"))),
                (_L1, (("48.5", "62.3", "51.2", "62.9"), ("61.7", "67.5", "56.9", "63.6"),
                       ("64.0", "69.8", "58.5", "65.4"))),
                (_L2, (("48.3", "62.5", "57.2", "63.5"), ("62.5", "67.6", "61.7", "64.2"),
                       ("64.9", "69.6", "62.1", "66.1"))),
            )
            for (suffix, method), cells in zip(
                (("", "none"), (" +NEFTune", "uniform"), (" +SymNoise", "symnoise")), rows,
                strict=True)
        ),
        "Column order as printed: Alpaca, Evol-Instruct, OpenPlatypus, ShareGPT.",
    ),
    PaperTable(
        "T3", "noise type and strength, LLaMA-2-7B, win rate (%) (average characters), "
        "judged by ChatGPT", "ChatGPT", _BOTH, "v1 Table 3, v2 ablation table",
        ("alpaca", "evol_instruct", "openplatypus"), "win_rate", (
            _t("LLaMA-2-7B", "none", "48.26 (375.22)", "62.55 (864.06)", "57.20 (1100.98)"),
            _t("+NEFTune α=5", "uniform", "62.55 (1061.89)", "67.58 (1403.59)",
               "60.99 (1428.31)", alpha=5.0),
            _t("+NEFTune α=10", "uniform", "61.18 (1009.94)", "65.59 (1696.88)",
               "60.62 (1833.85)", alpha=10.0),
            _t("+NEFTune α=15", "uniform", "61.86 (819.61)", "66.58 (1650.65)",
               "61.74 (1694.26)", alpha=15.0),
            _t("+Gaussian α=5/√3 (v2)", "gaussian", "62.6 (1073)", "68.01 (1431)",
               "60.31 (1437)", alpha=5.0, norm_match=True, versions=_V2),
            _t("+Gaussian α=10/√3 (v2)", "gaussian", "61.01 (1211)", "65.29 (1783)",
               "60.32 (1878)", alpha=10.0, norm_match=True, versions=_V2),
            _t("+Gaussian α=15/√3 (v2)", "gaussian", "61.93 (835)", "65.99 (1767)",
               "61.38 (1806)", alpha=15.0, norm_match=True, versions=_V2),
            _t("+Gaussian α=5", "gaussian", "60.93 (1371.32)", "65.09 (2065.75)",
               "59.13 (2060.92)", alpha=5.0, norm_match=False),
            _t("+Bernoulli α=5", "bernoulli", "61.32 (1272)", "65.10 (1840)", "60.22 (1968)",
               alpha=5.0),
            _t("+SymNoise α=5", "symnoise", "64.92 (1186)", "69.62 (1700)", "62.14 (1689)",
               alpha=5.0),
        ),
        "v1 prints lengths with two decimals, v2 rounds them. SymNoise ran at alpha 5 only.",
    ),
    PaperTable(
        "T4", "response length and repetition, LLaMA-2-7B (alpha 5 / 5 / 10 / 15 in the "
        "header)", None, _BOTH, "v1 Table 4 (v2: no ShareGPT, no training-data row)",
        PAPER_DATASETS, None, (
            _t("training data", "training_data", "270.31", "1356.43", "1276.76", "649.39",
               model=None, metric="avg_chars", versions=_V1),
            _t("LLaMA-2-7B", "none", "375.22", "864.06", "1011.28", "1100.98",
               metric="avg_chars"),
            _t("+NEFTune", "uniform", "1061.89", "1403.59", "1496.86", "1694.26",
               metric="avg_chars", alpha=_NEFT_A),
            _t("+SymNoise", "symnoise", "1186", "1700", "1584.72", "1689", metric="avg_chars",
               alpha=SYMNOISE_ALPHA),
            _t("LLaMA-2-7B", "none", "60.5", "138.99", "161.04", "170.41", metric="avg_words"),
            _t("+NEFTune", "uniform", "169.36", "225.56", "234.99", "264.12",
               metric="avg_words", alpha=_NEFT_A),
            _t("+SymNoise", "symnoise", "176.26", "245.50", "255.86", "270.26",
               metric="avg_words", alpha=SYMNOISE_ALPHA),
            _t("LLaMA-2-7B", "none", "1.49", "3.87", "4.82", "2.73", metric="rep_2"),
            _t("+NEFTune", "uniform", "1.72", "3.79", "4.58", "3.21", metric="rep_2",
               alpha=_NEFT_A),
            _t("+SymNoise", "symnoise", "1.80", "3.80", "4.86", "3.30", metric="rep_2",
               alpha=SYMNOISE_ALPHA),
        ),
        "Metrics: characters (avg_chars), whitespace words (avg_words), 2-gram repetition % "
        "(rep_2) over the first 50 / 100 / 150 / 150 words. The header's alphas are "
        "NEFTune's; SymNoise's rows are at alpha 5 (its OpenPlatypus cells equal T3's).",
        v1_only_columns=("sharegpt",),
    ),
    PaperTable(
        "T5", "OpenLLM tasks through lm-evaluation-harness (%)", None, _V2,
        "v2 OpenLLM table (v1 shows a figure)", _TASKS, None, tuple(
            _t(f"{model} ({name}){suffix}", method, *cells, model=model, dataset=data)
            for model, name, data, per_method in (
                (_L2, "Alpaca", "alpaca",
                 (("56.4", "80.0", "47.9"), ("56.1", "80.1", "47.7"), ("56.0", "80.2", "47.9"))),
                (_L2, "OpenPlatypus", "openplatypus",
                 (("54.2", "80.4", "43.9"), ("55.4", "80.6", "45.3"), ("55.7", "80.8", "45.5"))),
                (_L1, "Evol-Instruct", "evol_instruct",
                 (("53.7", "77.9", "38.3"), ("54.1", "78.0", "38.4"), ("56.0", "78.9", "39.1"))),
            )
            for (suffix, method), cells in zip(
                (("", "none"), (" +NEFTune", "uniform"), (" +SymNoise", "symnoise")),
                per_method, strict=True)
        ),
        "Printed as rows (base model (data), task) x columns (base, +NEFTune, +SymNoise); "
        "here one row per model, data and method. No TruthfulQA and no average.",
    ),
)}


def paper_values(table: str | None = None, **match: Any) -> list[PaperValue]:
    """Published numbers, flat; ``table`` (``"T1"``...) and ``match`` (PaperValue fields,
    e.g. ``method="symnoise", dataset="alpaca", metric="win_rate"``) filter them.

    Raises KeyError naming the tables for an unknown ``table``, ValueError for an unknown
    field.
    """
    if table is not None and table not in PAPER_TABLES:
        raise KeyError(f"no paper table {table!r}; expected one of {', '.join(PAPER_TABLES)}")
    fields = set(PaperValue.__dataclass_fields__)
    unknown = sorted(set(match) - fields)
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; PaperValue has {sorted(fields)}")
    tables = [PAPER_TABLES[table]] if table else list(PAPER_TABLES.values())
    return [v for t in tables for v in t.values()
            if all(getattr(v, k) == want for k, want in match.items())]
