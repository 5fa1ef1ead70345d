"""The paper's recipe: presets, the paper grids, and the published tables as data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from symnoise.config import TrainConfig
from symnoise.experiments import paper_numbers as pn
from symnoise.experiments.sweep import load_experiment

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "src" / "symnoise" / "configs"
GRIDS = ROOT / "src" / "symnoise" / "experiments" / "grids"
# ../shared/paper/TABLES.md next to the checkout (or next to a folder holding worktrees)
TABLES_MD = next((p / "shared" / "paper" / "TABLES.md" for p in ROOT.parents
                  if (p / "shared" / "paper" / "TABLES.md").is_file()), ROOT / "absent")
NEFTUNE = {"alpaca": 5.0, "evol_instruct": 5.0, "sharegpt": 10.0, "openplatypus": 15.0}


@pytest.mark.parametrize("name", sorted(NEFTUNE))
def test_preset_symnoise_at_5_and_names_neftune_alpha(name):
    cfg = TrainConfig.from_sources(name)
    assert (cfg.noise.method, cfg.noise.alpha, cfg.noise.norm_match) == ("symnoise", 5.0, True)
    assert (cfg.lr, cfg.epochs, cfg.max_length, cfg.warmup_ratio) == (5e-5, 3, 512, 0.03)
    assert cfg.batch_size * cfg.grad_accum == 128
    assert cfg.template == ("vicuna" if name == "sharegpt" else "alpaca")
    text = (PRESETS / f"{name}.yaml").read_text()
    # the comments say where the settings come from, and NEFTune's own alpha here
    assert "NEFTune" in text and "lr 5e-5, 3 epochs, effective batch 128, 3% warmup" in text
    assert "repetition penalty 1.2" in text and "--no-norm-match" in text
    own = re.search(r"NEFTune's own alpha here is (\d+)", text)
    assert own and float(own.group(1)) == NEFTUNE[name] == pn.NEFTUNE_ALPHA[name]


def test_paper_table1_grid_alpha_per_method():
    exp = load_experiment(GRIDS / "paper_table1.yaml")
    assert len(exp.points) == 16  # 4 datasets x (none, NEFTune, SymNoise /sqrt(3) and not)
    combos = sorted((p.dataset, p.method, p.alpha, p.norm_match) for p in exp.points)
    expected = []
    for d, a in NEFTUNE.items():
        expected += [(d, "none", None, None), (d, "uniform", a, None),
                     (d, "symnoise", 5.0, True), (d, "symnoise", 5.0, False)]
    assert combos == sorted(expected)
    for p in exp.points:
        assert p.train["noise"]["alpha"] == (p.alpha if p.alpha is not None else 5.0)
        assert p.train["noise"]["method"] == p.method
        if p.method == "symnoise":
            assert p.train["noise"]["norm_match"] is p.norm_match
    assert "smollm2" not in {p.model for p in exp.points}
    names = {p.name for p in exp.points}
    assert {"llama2-7b-openplatypus-uniform-a15-s42", "llama2-7b-openplatypus-symnoise-a5-s42",
            "llama2-7b-openplatypus-symnoise-a5-nm0-s42"} <= names


# ---------------------------------------------------------------------------------------
# published tables
# ---------------------------------------------------------------------------------------


def test_paper_values_settings_and_filters():
    v = pn.paper_values("T1", method="symnoise", dataset="alpaca")
    assert [(x.text, x.value, x.judge, x.versions) for x in v] == [
        ("69.04", 69.04, "GPT-4", ("v1", "v2"))]
    gauss = pn.paper_values("T3", method="gaussian", dataset="alpaca", metric="win_rate")
    assert {(x.alpha, x.norm_match, x.versions, x.text) for x in gauss} == {
        (5.0, True, ("v2",), "62.6"), (10.0, True, ("v2",), "61.01"),
        (15.0, True, ("v2",), "61.93"), (5.0, False, ("v1", "v2"), "60.93")}
    # the SymNoise OpenPlatypus cells of T3 and T4 are the same run, at alpha 5
    same = pn.paper_values(method="symnoise", dataset="openplatypus", metric="avg_chars")
    assert {(x.table, x.text, x.alpha) for x in same} == {("T3", "1689", 5.0),
                                                          ("T4", "1689", 5.0)}
    neft = pn.paper_values("T4", method="uniform", metric="avg_chars")
    assert {x.dataset: x.alpha for x in neft} == pn.NEFTUNE_ALPHA
    assert {x.versions for x in pn.paper_values("T4", dataset="sharegpt")} == {("v1",)}
    mmlu = pn.paper_values("T5", model="LLaMA-1-7B", metric="mmlu")
    assert [(x.method, x.value, x.judge) for x in mmlu] == [
        ("none", 38.3, None), ("uniform", 38.4, None), ("symnoise", 39.1, None)]
    assert len(pn.paper_values("T2", model="OPT-6.7B")) == 12
    with pytest.raises(KeyError, match="T9"):
        pn.paper_values("T9")
    with pytest.raises(ValueError, match="dataset_name"):
        pn.paper_values(dataset_name="alpaca")
    assert pn.PAPER_TABLES["T1"].label() == "T1 (judge GPT-4; v1 Table 1, v2 Table 1)"


def _md_tables() -> dict[str, tuple[list[str], list[list[str]]]]:
    """First markdown table of each '## Tn' section of TABLES.md: header, rows."""
    out: dict[str, tuple[list[str], list[list[str]]]] = {}
    for section in re.split(r"^## ", TABLES_MD.read_text(encoding="utf-8"), flags=re.M)[1:]:
        key = section.split()[0]
        lines = [ln for ln in section.splitlines() if ln.startswith("|")]
        if not re.fullmatch(r"T\d", key) or not lines:
            continue
        cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
        out[key] = (cells[0], [r for r in cells[2:]])
    return out


@pytest.mark.skipif(not TABLES_MD.is_file(), reason="../shared/paper/TABLES.md is absent")
def test_every_published_table_matches_tables_md():
    md = _md_tables()
    assert sorted(md) == sorted(pn.PAPER_TABLES) == ["T1", "T2", "T3", "T4", "T5"]
    for key in ("T1", "T2", "T3"):
        header, rows = md[key]
        table = pn.PAPER_TABLES[key]
        assert header[1:] == table.header()[1:], key
        assert rows == table.display_rows(), key
    header, rows = md["T4"]  # | metric | row | datasets... |
    assert header[2:] == pn.PAPER_TABLES["T4"].header()[1:]
    assert [[f"{m}: {r}", *cells] for m, r, *cells in rows] == \
        pn.PAPER_TABLES["T4"].display_rows()
    header, rows = md["T5"]  # | base model (data) | task | base | +NEFTune | +SymNoise |
    methods = {"base": "none", "+NEFTune": "uniform", "+SymNoise": "symnoise"}
    tasks = {"ARC": "arc_challenge", "HellaSwag": "hellaswag", "MMLU": "mmlu"}
    n = 0
    for label, task, *cells in rows:
        model, data = re.fullmatch(r"(.+) \((.+)\)", label).groups()
        dataset = {v: k for k, v in pn.COLUMN_TITLES.items()}[data]
        for title, text in zip(header[2:], cells, strict=True):
            [v] = pn.paper_values("T5", model=model, dataset=dataset, method=methods[title],
                                  metric=tasks[task])
            assert v.text == text
            n += 1
    assert n == len(pn.paper_values("T5")) == 27
