"""The presentation floor: the one number formatter, the one table renderer, and a report
Table whose shown row and CSV row come from one record."""

from __future__ import annotations

import numpy as np
import pandas as pd

from symnoise._io import finite, fmt, markdown_table, text_table
from symnoise.experiments.tables import Table, diff_text, num, seeds, text


def test_fmt_formats_numbers_and_marks_what_is_none() -> None:
    assert fmt(0.12345, ".1f", scale=100) == "12.3"
    assert fmt(np.float64(2.5), "+.2f") == "+2.50" and fmt(np.int64(7), "d") == "7"
    assert fmt(5.0, "g") == "5" and fmt(float("inf"), ".1f") == "inf"
    assert [fmt(v) for v in (None, float("nan"), True, "3")] == ["-"] * 4
    assert fmt(None, missing="n/a") == "n/a"
    assert finite(3) == 3.0 and finite(float("inf")) is None and finite(False) is None


def test_markdown_table_aligns_numbers_escapes_pipes_and_takes_a_frame() -> None:
    md = markdown_table(["setting", "win rate", "note"],
                        [["a|b", "1.5", "x"], ["c", "-", "[1, 2]"], ["d", "+0.3 [0, 1]", "y"]])
    lines = md.splitlines()
    assert lines[0] == "| setting | win rate | note |"
    assert lines[1] == "|---|---:|---|"  # 'note' has a non-number
    assert lines[2] == "| a\\|b | 1.5 | x |" and md.endswith("|\n")
    assert markdown_table(["", ""], [["k", "v"]], "ll").splitlines()[:2] == ["| | |", "|---|---|"]
    frame = pd.DataFrame({"d": ["16"], "mean": ["2.3"]})
    assert markdown_table(frame, align="rr") == "| d | mean |\n|---:|---:|\n| 16 | 2.3 |\n"
    assert text_table(["a", "bb"], [["xyz", "1"]]) == "a    bb\n---  --\nxyz  1"


def test_table_builds_shown_and_csv_rows_from_one_record(tmp_path) -> None:
    table = Table("t", "T", {"setting": text("setting"), "win rate": seeds("wr", 1, mark="m"),
                             "loss": num("loss", 3)}, ["setting", "wr", "wr sd", "loss"])
    table.add(setting="uniform", wr=50.0, **{"wr sd": 2.0, "wr n": 3}, m="†", loss=None)
    table.add(setting="none", wr=40.0, loss=1.23456)  # one run: no sd, no n
    assert table.rows == [["uniform", "50.0 ± 2.0† (n=3)", "-"], ["none", "40.0", "1.235"]]
    assert table.data == [["uniform", 50.0, 2.0, None], ["none", 40.0, None, 1.23456]]
    table.write_csv(tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text().splitlines() == [
        "setting,wr,wr sd,loss", "uniform,50.0,2.0,-", "none,40.0,-,1.23456"]
    assert table.to_dict()["header"] == ["setting", "win rate", "loss"]


def test_diff_text() -> None:
    class D:
        diff, ci_low, ci_high, significant = 1.25, -0.5, 3.0, False

    assert diff_text(D(), 1) == "+1.2 [-0.5, +3.0]" and diff_text(None, 1) == "-"
    D.significant = True
    assert diff_text(D(), 2) == "+1.25 [-0.50, +3.00]*" and diff_text(D(), 2, star=False)[-1] == "]"
