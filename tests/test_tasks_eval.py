"""Synthetic held-out evaluation (symnoise.evaluate.tasks, symnoise.experiments.eval_steps):
generation -> per-family scores with Wilson intervals, per-item rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_model, make_tokenizer

from symnoise.data import DataError, format_prompt
from symnoise.data.synthetic import FAMILIES, load_synthetic
from symnoise.decoding import Generation, TransformersBackend
from symnoise.evaluate.stats import wilson_interval
from symnoise.evaluate.tasks import (
    ITEMS_JSONL,
    OUTPUTS_FILE,
    SCORES_JSON,
    SCORES_MD,
    item_id,
    item_rows,
)
from symnoise.experiments.eval_steps import run_synthetic_eval, score_synthetic_outputs

N = 2 * len(FAMILIES)  # two prompts per family
WRONG = "I am not sure.\nMaybe something else"  # wrong and not in the expected format


@pytest.fixture
def run_dir(tmp_path) -> Path:
    path = tmp_path / "tasks-run"
    tok = make_tokenizer()
    make_model(vocab_size=len(tok)).save_pretrained(path)
    tok.save_pretrained(path)
    (path / "run.json").write_text(json.dumps({"template": "alpaca"}))
    return path


def _canned(records, right):
    """A fake backend answering record i canonically when right(i), else WRONG."""
    by_prompt = {format_prompt("alpaca", r["instruction"], r["input"]): i
                 for i, r in enumerate(records)}
    calls = []

    def fake(self, texts, ids):
        calls.append(len(texts))
        out = []
        for t in texts:
            i = by_prompt[t]
            out.append(Generation(records[i]["answer"] if right(i) else WRONG, 3, True))
        return out

    return fake, calls


def _expected(records, right):
    per = {}
    for i, r in enumerate(records):
        c = per.setdefault(r["family"], [0, 0])
        c[0] += int(right(i))
        c[1] += 1
    return per


def test_scores_match_canned_answers_exactly(run_dir, monkeypatch):
    records = load_synthetic("heldout", n=N)
    right = lambda i: i % 3 != 0  # noqa: E731 - a third of the answers are wrong
    fake, calls = _canned(records, right)
    monkeypatch.setattr(TransformersBackend, "generate", fake)
    rep = run_synthetic_eval(run_dir, n=N, batch_size=8, progress=False)

    n_right = sum(right(i) for i in range(N))
    assert (rep.n, rep.overall["n"], rep.overall["correct"]) == (N, N, n_right)
    assert rep.accuracy == pytest.approx(n_right / N)
    assert rep.overall["accuracy_ci95"] == pytest.approx(list(wilson_interval(n_right, N)))
    assert rep.overall["formatted"] == n_right  # canonical answers are formatted, WRONG not
    expected = _expected(records, right)
    assert list(rep.per_family) == [f for f in FAMILIES if f in expected]
    for fam, (c, n) in expected.items():
        s = rep.per_family[fam]
        assert (s["correct"], s["n"]) == (c, n)
        assert s["accuracy"] == pytest.approx(c / n)
        assert s["accuracy_ci95"] == pytest.approx(list(wilson_interval(c, n)))
    assert sum(calls) == N and max(calls) <= 8

    out_dir = run_dir / "eval"
    assert rep.output_dir == str(out_dir)
    outputs = json.loads((out_dir / OUTPUTS_FILE).read_text())
    assert [o["answer"] for o in outputs] == [r["answer"] for r in records]
    items = [json.loads(x) for x in (out_dir / ITEMS_JSONL).read_text().splitlines()]
    assert [(i["family"], i["correct"], i["formatted"]) for i in items] == [
        (r["family"], right(i), right(i)) for i, r in enumerate(records)]
    assert [i["id"] for i in items] == [item_id(r) for r in records]
    assert "items" not in json.loads((out_dir / SCORES_JSON).read_text())
    saved = json.loads((out_dir / SCORES_JSON).read_text())
    assert saved["overall"]["correct"] == n_right and saved["generator"] == "tasks-run"
    md = (out_dir / SCORES_MD).read_text()
    assert md.count("\n| ") == len(expected) + 2 and "| overall |" in md
    table = rep.format_table()
    assert all(f in table for f in expected) and "overall" in table

    # a rerun resumes everything (no generation) and scores the same
    calls.clear()
    again = run_synthetic_eval(run_dir, n=N, batch_size=8, progress=False)
    assert calls == [] and again.generation["n_resumed"] == N
    assert again.overall == rep.overall


def test_scoring_a_prewritten_outputs_file(tmp_path, run_dir, monkeypatch):
    records = load_synthetic("heldout", n=N, seed=3)
    right = lambda i: i < 10  # noqa: E731
    out_dir = tmp_path / "ev"
    out_dir.mkdir()
    rows = [{"instruction": r["instruction"], "input": r["input"],
             "output": r["answer"] if right(i) else "0",
             "generator": "tasks-run", "dataset": "synthetic_heldout",
             "family": r["family"], "answer": r["answer"]} for i, r in enumerate(records)]
    (out_dir / OUTPUTS_FILE).write_text(json.dumps(rows))

    def boom(self, texts, ids):
        raise AssertionError("nothing should be generated")

    monkeypatch.setattr(TransformersBackend, "generate", boom)
    rep = run_synthetic_eval(run_dir, n=N, seed=3, output_dir=out_dir, progress=False)
    truly = sum(r["answer"] == "0" for r in records[10:])  # "0" may happen to be right
    assert rep.overall["correct"] == 10 + truly
    assert rep.generation["n_generated"] == 0

    direct = score_synthetic_outputs(out_dir / OUTPUTS_FILE)
    assert direct.overall == rep.overall and direct.per_family == rep.per_family
    # outputs for another seed do not answer these prompts: refused, not mis-scored
    with pytest.raises(DataError, match="does not answer prompt 0"):
        run_synthetic_eval(run_dir, n=N, seed=4, output_dir=out_dir, progress=False)


def test_score_file_without_synthetic_fields(tmp_path):
    f = tmp_path / "o.json"
    f.write_text(json.dumps([{"instruction": "a", "output": "b", "family": "parity",
                              "answer": "even"}, {"instruction": "c", "output": "d"}]))
    with pytest.raises(DataError, match=r"o\.json row 1: needs string fields 'family'"):
        score_synthetic_outputs(f)


def test_cli_tasks_json(run_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from symnoise.cli import app

    records = load_synthetic("heldout", n=N)
    fake, _ = _canned(records, lambda i: i % 2 == 0)
    monkeypatch.setattr(TransformersBackend, "generate", fake)
    res = CliRunner().invoke(app, ["tasks", "--model", str(run_dir), "--n-prompts", str(N),
                                   "--output-dir", str(tmp_path / "cli"), "--no-progress",
                                   "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["overall"]["correct"] == N // 2 and info["n"] == N
    res = CliRunner().invoke(app, ["tasks", "--model-outputs", str(tmp_path / "cli" / OUTPUTS_FILE)])
    assert res.exit_code == 0, res.output
    assert "overall" in res.stdout and "50.0%" in res.stdout


def test_item_ids_are_stable_and_unique():
    records = load_synthetic("heldout", n=N)
    rows = item_rows(records + records[:2], [r["answer"] for r in records + records[:2]])
    assert [r["id"] for r in rows[:N]] == [item_id(r) for r in records]
    assert rows[N]["id"] == rows[0]["id"] + "#2" and rows[N + 1]["id"] == rows[1]["id"] + "#2"
    assert all(r["correct"] and r["formatted"] for r in rows)
    # the id is the prompt's: the same prompt from another load, another answer, same id
    again = load_synthetic("heldout", n=3)
    assert [item_id(r) for r in again] == [item_id(r) for r in records[:3]]
    assert item_rows(again[:1], ["wrong"])[0] == {"id": item_id(records[0]),
                                                  "family": records[0]["family"],
                                                  "correct": False, "formatted": False}
