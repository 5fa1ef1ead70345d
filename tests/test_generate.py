"""Generation: batching and order, left padding, templates, decoding, resume, errors."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import WORDS, make_model, make_tokenizer

from symnoise.data import DataError, format_prompt
from symnoise.data.templates import VICUNA_SYSTEM
from symnoise.data.tokenize import encode_prompts
from symnoise.decoding import Decoding, Generation, TransformersBackend
from symnoise.generate import generate_outputs, journal_path, load_prompts, meta_path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ALPACA_EVAL = SHARED / "alpaca_eval_805.json"


def _prompts(n: int = 10, seed: int = 0) -> list[dict]:
    r = random.Random(seed)
    out = []
    for i in range(n):
        row = {"instruction": " ".join(r.choice(WORDS) for _ in range(r.randint(2, 14)))}
        if i % 3 == 0:
            row["input"] = " ".join(r.choice(WORDS) for _ in range(r.randint(1, 5)))
        out.append(row)
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny run folder (random Llama + word-level tokenizer + run.json)."""
    path = tmp_path_factory.mktemp("runs") / "tiny-run"
    tok = make_tokenizer()
    # a wide init makes greedy outputs depend on the prompt (and not tie)
    model = make_model(vocab_size=len(tok), initializer_range=0.3)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    (path / "run.json").write_text(json.dumps({"template": "alpaca"}))
    return path


@pytest.fixture(scope="module")
def loaded(run_dir):
    from symnoise.models import load_model_and_tokenizer

    model, tok, _, _ = load_model_and_tokenizer(run_dir)
    return model, tok


def _outputs(path: Path) -> list[dict]:
    return json.loads(path.read_text())


def test_batched_outputs_equal_one_at_a_time_in_input_order(run_dir, tmp_path):
    prompts = _prompts(10)
    batched = generate_outputs(run_dir, prompts, tmp_path / "b.json", batch_size=4,
                               max_new_tokens=8, progress=False)
    single = generate_outputs(run_dir, prompts, tmp_path / "s.json", batch_size=1,
                              max_new_tokens=8, progress=False)
    b, s = _outputs(tmp_path / "b.json"), _outputs(tmp_path / "s.json")
    assert [e["instruction"] for e in b] == [p["instruction"] for p in prompts]
    assert [e.get("input", "") for e in b] == [p.get("input", "") for p in prompts]
    assert [e["output"] for e in b] == [e["output"] for e in s]
    assert len({e["output"] for e in b}) >= 5  # outputs differ by prompt: order is tested
    assert batched.n_generated == single.n_generated == 10 and batched.n_resumed == 0
    # every answer ran to max_new_tokens here (the random model never emits EOS)
    assert batched.new_tokens == 10 * 8 == single.new_tokens
    assert batched.n_hit_max_tokens == 10
    assert batched.tokens_per_s == pytest.approx(80 / batched.generation_time_s)
    assert batched.mean_new_tokens == 8


def test_left_padding_and_generation_kwargs(loaded, tmp_path):
    model, tok = loaded
    seen = []
    real = model.generate

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    model.generate = spy
    try:
        prompts = _prompts(6, seed=1)
        generate_outputs(model, prompts, tmp_path / "o.json", tokenizer=tok, batch_size=6,
                         max_new_tokens=3, repetition_penalty=1.7, progress=False)
    finally:
        del model.generate
    assert tok.padding_side == "left"
    (kw,) = seen
    mask = kw["attention_mask"]
    ids = kw["input_ids"]
    lengths = [len(x) for x in encode_prompts(tok, [format_prompt("alpaca", p["instruction"],
                                                                  p.get("input", ""))
                                                    for p in prompts])]
    assert sorted(mask.sum(1).tolist()) == sorted(lengths)
    assert min(lengths) < max(lengths)
    assert bool((mask[:, -1] == 1).all())  # every prompt ends at the right edge
    for row in range(mask.shape[0]):
        n_pad = int((mask[row] == 0).sum())
        assert mask[row, :n_pad].sum() == 0 and bool((ids[row, :n_pad] == tok.pad_token_id).all())
    assert kw["repetition_penalty"] == 1.7
    assert kw["do_sample"] is False and kw["max_new_tokens"] == 3
    assert tok.eos_token_id in kw["eos_token_id"]


def test_repetition_penalty_changes_greedy_output(run_dir, tmp_path):
    prompts = _prompts(6, seed=2)
    outs = {}
    for pen in (1.0, 1.2, 3.0):
        generate_outputs(run_dir, prompts, tmp_path / f"{pen}.json", repetition_penalty=pen,
                         max_new_tokens=10, progress=False)
        outs[pen] = [e["output"] for e in _outputs(tmp_path / f"{pen}.json")]
    assert outs[1.0] != outs[1.2] and outs[1.2] != outs[3.0]
    # no penalty: greedy output of this random model repeats words; penalty 3 much less so
    def repeats(texts):
        return sum(len(t.split()) - len(set(t.split())) for t in texts)
    assert repeats(outs[3.0]) < repeats(outs[1.0])


def test_decoding_defaults_are_the_papers():
    d = Decoding()
    kw = d.generation_kwargs(pad_token_id=0, eos_token_ids=[2])
    assert (kw["do_sample"], kw["repetition_penalty"], kw["num_beams"]) == (False, 1.2, 1)
    assert kw["max_new_tokens"] == 512 and kw["eos_token_id"] == [2]
    with pytest.raises(ValueError, match="max_new_tokens"):
        Decoding(max_new_tokens=0)
    with pytest.raises(ValueError, match="repetition_penalty"):
        Decoding(repetition_penalty=0)


class _ScriptedModel(torch.nn.Module):
    """Stands in for a causal LM: generate() appends fixed continuations."""

    def __init__(self, continuations, pad_id):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.continuations = continuations
        self.pad_id = pad_id
        self.config = type("C", (), {"pad_token_id": pad_id})()

    def generate(self, input_ids, attention_mask, **kwargs):
        width = max(len(c) for c in self.continuations)
        rows = [c + [self.pad_id] * (width - len(c)) for c in self.continuations]
        return torch.cat([input_ids, torch.tensor(rows)], dim=1)


def test_stops_at_eos_strips_prompt_and_whitespace():
    tok = make_tokenizer()
    ids = tok.convert_tokens_to_ids
    eos, pad = tok.eos_token_id, ids("the")  # a pad that is not EOS: padding after EOS
    tok.pad_token = "the"
    conts = [[ids("red"), ids("cat"), eos, ids("dog"), ids("dog")],   # stops at EOS
             [ids("blue"), ids("fish"), ids("tree"), ids("bird"), ids("one")],  # no EOS
             [eos]]                                                  # empty answer
    with pytest.raises(ValueError, match="no pad token"):
        TransformersBackend(_ScriptedModel(conts, pad), make_tokenizer(), Decoding())
    backend = TransformersBackend(_ScriptedModel(conts, pad), tok, Decoding(max_new_tokens=5))
    gens = backend.generate(["a", "b", "c"], [[3, 4], [5], [6, 7, 8]])
    assert gens == [Generation("red cat", 3, True), Generation("blue fish tree bird one", 5, False),
                    Generation("", 1, True)]


def test_output_format_fields_and_generator(run_dir, tmp_path):
    src = tmp_path / "eval_set.json"
    rows = [{"instruction": "tell a short answer", "dataset": "helpful_base",
             "output": "reference text", "generator": "text_davinci_003"},
            {"instruction": "sort the list", "input": "three one two"},
            {"instruction": "count words", "input": ""}]
    src.write_text(json.dumps(rows))
    out = tmp_path / "out" / "model_outputs.json"
    rep = generate_outputs(run_dir, str(src), out, max_new_tokens=4, progress=False)
    entries = _outputs(out)
    assert [set(e) for e in entries] == [
        {"instruction", "output", "generator", "dataset", "row"},
        {"instruction", "input", "output", "generator", "dataset", "row"},
        {"instruction", "output", "generator", "dataset", "row"},
    ]
    assert [e["row"] for e in entries] == [0, 1, 2]
    assert all(e["generator"] == "tiny-run" == rep.generator for e in entries)
    assert [e["dataset"] for e in entries] == ["helpful_base", "eval_set", "eval_set"]
    assert entries[0]["output"] != "reference text"
    assert all(isinstance(e["output"], str) and e["output"] == e["output"].strip()
               for e in entries)
    assert not journal_path(out).exists()
    meta = json.loads(meta_path(out).read_text())
    assert meta["status"] == "complete" and meta["settings"]["repetition_penalty"] == 1.2
    # synthetic prompts keep what scoring needs
    generate_outputs(run_dir, "synthetic:heldout", tmp_path / "syn.json", limit=3,
                     max_new_tokens=2, progress=False, generator_name="g")
    syn = _outputs(tmp_path / "syn.json")
    assert len(syn) == 3 and all({"family", "answer", "generator"} <= set(e) for e in syn)
    assert syn[0]["dataset"] == "synthetic_heldout" and syn[0]["generator"] == "g"


def _record_calls(monkeypatch, fail_on_call=None):
    """Patch the backend to log the prompts it answers (and optionally crash)."""
    calls: list[list[str]] = []
    real = TransformersBackend.generate

    def wrapped(self, texts, ids):
        if fail_on_call is not None and len(calls) + 1 == fail_on_call:
            raise RuntimeError("simulated crash")
        calls.append(list(texts))
        return real(self, texts, ids)

    monkeypatch.setattr(TransformersBackend, "generate", wrapped)
    return calls


def test_resume_after_crash_answers_each_prompt_once(run_dir, tmp_path, monkeypatch):
    prompts = _prompts(10, seed=3)
    clean = tmp_path / "clean.json"
    generate_outputs(run_dir, prompts, clean, batch_size=3, max_new_tokens=5, progress=False)

    out = tmp_path / "crash.json"
    first = _record_calls(monkeypatch, fail_on_call=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        generate_outputs(run_dir, prompts, out, batch_size=3, max_new_tokens=5, progress=False)
    assert len(first) == 1 and len(first[0]) == 3
    journal = journal_path(out)
    assert len(journal.read_text().splitlines()) == 3  # the finished batch survived
    # a crash in the middle of writing a line: that line is redone, not trusted
    with journal.open("a") as fh:
        fh.write('{"index": 9, "instruction": "cut')

    monkeypatch.undo()
    second = _record_calls(monkeypatch)
    rep = generate_outputs(run_dir, prompts, out, batch_size=3, max_new_tokens=5,
                           progress=False)
    done_first = set(first[0])
    done_second = [t for batch in second for t in batch]
    assert len(done_second) == 7 == len(set(done_second))
    assert done_first.isdisjoint(done_second)
    assert (rep.n_resumed, rep.n_generated, rep.journal_lines_ignored) == (3, 7, 1)
    assert _outputs(out) == _outputs(clean)
    assert not journal.exists()

    # a third run has nothing to do
    third = generate_outputs(run_dir, prompts, out, batch_size=3, max_new_tokens=5,
                             progress=False)
    assert (third.n_resumed, third.n_generated, third.new_tokens) == (10, 0, 0)
    assert len(second) == 3


def test_limit_then_rest(run_dir, tmp_path, monkeypatch):
    prompts = _prompts(7, seed=4)
    out = tmp_path / "o.json"
    calls = _record_calls(monkeypatch)
    r1 = generate_outputs(run_dir, prompts, out, limit=3, batch_size=2, max_new_tokens=4,
                          progress=False)
    part = _outputs(out)
    assert (r1.n_prompts, r1.n_generated, len(part)) == (3, 3, 3)
    r2 = generate_outputs(run_dir, prompts, out, batch_size=2, max_new_tokens=4, progress=False)
    full = _outputs(out)
    assert (r2.n_prompts, r2.n_resumed, r2.n_generated, len(full)) == (7, 3, 4, 7)
    assert full[:3] == part
    texts = [t for batch in calls for t in batch]
    assert len(texts) == 7 == len(set(texts))


def test_resume_refuses_other_prompts_generator_or_settings(run_dir, tmp_path):
    prompts = _prompts(4, seed=5)
    out = tmp_path / "o.json"
    generate_outputs(run_dir, prompts, out, max_new_tokens=3, progress=False)
    others = _prompts(4, seed=6)
    with pytest.raises(DataError, match=r"o\.json row 0: does not answer prompt 0"):
        generate_outputs(run_dir, others, out, max_new_tokens=3, progress=False)
    with pytest.raises(DataError, match="was generated by 'tiny-run', not 'other'"):
        generate_outputs(run_dir, prompts, out, max_new_tokens=3, generator_name="other",
                         progress=False)
    with pytest.raises(ValueError, match="other settings"):
        generate_outputs(run_dir, prompts, out, max_new_tokens=4, progress=False)
    rep = generate_outputs(run_dir, others, out, max_new_tokens=3, progress=False,
                           overwrite=True)
    assert rep.n_generated == 4 and _outputs(out)[0]["instruction"] == others[0]["instruction"]


def test_template_from_run_json_and_override(run_dir, tmp_path, monkeypatch):
    vic = tmp_path / "vicuna-run"
    vic.mkdir()
    for f in run_dir.iterdir():
        (vic / f.name).write_bytes(f.read_bytes())
    (vic / "run.json").write_text(json.dumps({"template": "vicuna"}))
    seen: list[str] = []

    def fake(self, texts, ids):
        seen.extend(texts)
        return [Generation("ok", 1, True) for _ in texts]

    monkeypatch.setattr(TransformersBackend, "generate", fake)
    prompts = [{"instruction": "sort the list", "input": "two one"}]
    rep = generate_outputs(vic, prompts, tmp_path / "a.json", progress=False)
    assert rep.template == "vicuna"
    assert seen[-1] == f"{VICUNA_SYSTEM} USER: sort the list\n\ntwo one ASSISTANT:"
    rep = generate_outputs(vic, prompts, tmp_path / "b.json", template="alpaca",
                           progress=False)
    assert rep.template == "alpaca"
    assert seen[-1] == format_prompt("alpaca", "sort the list", "two one")
    # a plain model folder (no run.json) defaults to alpaca
    plain = tmp_path / "plain"
    plain.mkdir()
    for f in run_dir.iterdir():
        if f.name != "run.json":
            (plain / f.name).write_bytes(f.read_bytes())
    rep = generate_outputs(plain, prompts, tmp_path / "c.json", progress=False)
    assert rep.template == "alpaca" and rep.generator == "plain"


def test_vllm_missing_is_a_clear_error(run_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(ImportError, match=r"'vllm' package.*pip install 'symnoise\[vllm\]'"):
        generate_outputs(run_dir, _prompts(2), tmp_path / "o.json", backend="vllm",
                         progress=False)
    assert not (tmp_path / "o.json").exists()
    with pytest.raises(ValueError, match="unknown backend 'vlm'"):
        generate_outputs(run_dir, _prompts(2), tmp_path / "o.json", backend="vlm")


class _FakeVLLM:
    """vLLM's offline API as symnoise uses it, faithful in shape: ``LLM(model, dtype=,
    seed=)`` loads the model folder itself; ``SamplingParams`` takes keywords only (an
    unknown one is a TypeError); ``LLM.generate(prompts, sampling_params, use_tqdm=)``
    takes ``{"prompt_token_ids": [...]}`` prompts and returns one ``RequestOutput`` per
    prompt, in order, whose ``outputs[0]`` has ``text`` (special tokens skipped),
    ``token_ids`` (the EOS included) and ``finish_reason`` ("stop" at EOS, else "length").
    Decoding runs the folder's model greedily one prompt at a time, unpadded."""

    def __init__(self) -> None:
        import types

        self.module = types.ModuleType("vllm")
        self.module.LLM, self.module.SamplingParams = self._llm(), self._params()
        self.made: list[Any] = []

    @staticmethod
    def _params() -> type:
        class SamplingParams:
            def __init__(self, *, n: int = 1, temperature: float = 1.0, top_p: float = 1.0,
                         top_k: int = -1, repetition_penalty: float = 1.0, max_tokens: int = 16,
                         seed: int | None = None, skip_special_tokens: bool = True) -> None:
                self.__dict__.update(locals())
                del self.__dict__["self"]
        return SamplingParams

    def _llm(self) -> type:
        from types import SimpleNamespace as NS

        from transformers import AutoModelForCausalLM, AutoTokenizer

        fake = self

        class LLM:
            def __init__(self, model: str, *, dtype: str = "auto", seed: int = 0) -> None:
                self.model = AutoModelForCausalLM.from_pretrained(model).eval()
                self.tok = AutoTokenizer.from_pretrained(model)
                self.init = {"model": model, "dtype": dtype, "seed": seed}
                self.asked: list[list[int]] = []
                fake.made.append(self)

            def generate(self, prompts, sampling_params, *, use_tqdm: bool = True):
                self.params, outs = sampling_params, []
                self.asked += [list(p["prompt_token_ids"]) for p in prompts]
                assert sampling_params.temperature == 0.0  # greedy, as these tests ask
                for prompt in prompts:
                    ids = torch.tensor([prompt["prompt_token_ids"]])
                    new = self.model.generate(
                        ids, attention_mask=torch.ones_like(ids), do_sample=False,
                        max_new_tokens=sampling_params.max_tokens,
                        repetition_penalty=sampling_params.repetition_penalty,
                        eos_token_id=self.tok.eos_token_id,
                        pad_token_id=self.tok.eos_token_id)[0, ids.shape[1]:].tolist()
                    stop = next((k + 1 for k, t in enumerate(new) if t == self.tok.eos_token_id),
                                None)
                    token_ids = new[:stop]
                    text = self.tok.decode(token_ids, skip_special_tokens=True)
                    done = NS(index=0, text=text, token_ids=token_ids,
                              finish_reason="stop" if stop else "length")
                    outs.append(NS(prompt_token_ids=prompt["prompt_token_ids"], outputs=[done]))
                return outs
        return LLM


def test_vllm_backend_through_a_fake_of_its_api(run_dir, tmp_path, monkeypatch):
    """``--backend vllm`` cannot be installed here (Linux + CUDA only): it is run against
    :class:`_FakeVLLM`. Same prompts, same token ids, same decoding -> same answers as the
    transformers backend, and vLLM gets the paper's settings."""
    fake = _FakeVLLM()
    monkeypatch.setitem(sys.modules, "vllm", fake.module)
    prompts = _prompts(6)
    via_vllm = generate_outputs(run_dir, prompts, tmp_path / "v.json", backend="vllm",
                                batch_size=4, max_new_tokens=8, progress=False)
    generate_outputs(run_dir, prompts, tmp_path / "t.json", batch_size=4, max_new_tokens=8,
                     progress=False)
    assert _outputs(tmp_path / "v.json") == _outputs(tmp_path / "t.json")
    assert via_vllm.backend == "vllm" and via_vllm.n_generated == 6
    assert via_vllm.new_tokens == 6 * 8 and via_vllm.n_hit_max_tokens == 6
    [llm] = fake.made
    assert llm.init == {"model": str(run_dir), "dtype": "float32", "seed": 0}
    params = llm.params
    assert (params.temperature, params.top_p, params.max_tokens) == (0.0, 1.0, 8)
    assert params.repetition_penalty == 1.2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(run_dir)
    rendered = [format_prompt("alpaca", p["instruction"], p.get("input", "")) for p in prompts]
    assert sorted(map(tuple, encode_prompts(tok, rendered))) == sorted(
        tuple(x) for x in llm.asked)
    with pytest.raises(ValueError, match="not a GGUF file"):
        gguf = tmp_path / "m.gguf"
        gguf.write_bytes(b"GGUF")
        generate_outputs(str(gguf), prompts, tmp_path / "g.json", backend="vllm")


def test_bad_prompt_rows_name_file_and_row(tmp_path):
    bad = tmp_path / "prompts.json"
    bad.write_text(json.dumps([{"instruction": "a"}, {"instruction": "b"}, {"input": "x"}]))
    with pytest.raises(DataError, match=r"prompts\.json row 2: field 'instruction' is missing"):
        load_prompts(str(bad))
    bad.write_text(json.dumps([{"instruction": "a"}, ["not", "an", "object"]]))
    with pytest.raises(DataError, match=r"prompts\.json row 1: expected an object"):
        load_prompts(str(bad))
    bad.write_text(json.dumps([{"instruction": "a", "input": 3}]))
    with pytest.raises(DataError, match=r"row 0: field 'input' must be a string"):
        load_prompts(str(bad))
    jl = tmp_path / "p.jsonl"
    jl.write_text('{"instruction": "a"}\n{"instruction": "   "}\n')
    with pytest.raises(DataError, match=r"p\.jsonl row 1: field 'instruction' is not a non-empty"):
        load_prompts(str(jl))
    jl.write_text('{"instruction": "a"}\n{"instruction": \n')
    with pytest.raises(DataError, match=r"p\.jsonl.*line 2: invalid JSON"):
        load_prompts(str(jl))
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_prompts(str(tmp_path / "missing.json"))


def test_prompt_sources_and_limit(tmp_path):
    jl = tmp_path / "p.jsonl"
    jl.write_text('{"instruction": "a", "input": "b"}\n"just an instruction"\n')
    got = load_prompts(str(jl))
    assert [(p.index, p.instruction, p.input, p.dataset) for p in got.prompts] == [
        (0, "a", "b", "p"), (1, "just an instruction", "", "p")]
    syn = load_prompts("synthetic:heldout", limit=5)
    from symnoise.data.synthetic import load_synthetic

    ref = load_synthetic("heldout")[:5]
    assert syn.source == "synthetic:heldout" and len(syn.prompts) == 5
    assert [(p.instruction, p.input, p.extra["answer"]) for p in syn.prompts] == [
        (r["instruction"], r["input"], r["answer"]) for r in ref]


@pytest.mark.skipif(not ALPACA_EVAL.is_file(), reason="shared AlpacaEval file not present")
def test_alpaca_eval_file():
    prompts = load_prompts(str(ALPACA_EVAL)).prompts
    raw = json.loads(ALPACA_EVAL.read_text())
    assert len(prompts) == len(raw) == 805
    assert [p.dataset for p in prompts] == [r["dataset"] for r in raw]
    assert all(p.input == "" and p.extra == {} for p in prompts)


def test_cli_generate_json(run_dir, tmp_path):
    from typer.testing import CliRunner

    from symnoise.cli import app

    src = tmp_path / "p.json"
    src.write_text(json.dumps(_prompts(3, seed=7)))
    out = tmp_path / "o.json"
    res = CliRunner().invoke(app, ["generate", "--model", str(run_dir), "--prompts", str(src),
                                   "--output-file", str(out), "--max-new-tokens", "3", "--n-prompts",
                                   "2", "--no-progress", "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert (info["n_prompts"], info["n_generated"], info["new_tokens"]) == (2, 2, 6)
    assert len(_outputs(out)) == 2
    res = CliRunner().invoke(app, ["generate", "--model", str(run_dir), "--prompts", str(src),
                                   "--max-new-tokens", "3", "--no-progress"])
    assert res.exit_code == 0, res.output  # run folder: default output RUN/generations/
    assert "generated now" in res.stdout
    assert len(_outputs(run_dir / "generations" / "p.json")) == 3
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"instruction": "a"}, {"output": "b"}]))
    res = CliRunner().invoke(app, ["generate", "--model", str(run_dir), "--prompts", str(bad),
                                   "--output-file", str(out), "--no-progress"])
    assert res.exit_code == 2 and "bad.json row 1" in res.output


SELF_INSTRUCT = [  # Self-Instruct's task rows: inputs under `instances`, plus metadata
    {"id": f"t{i}", "name": f"task_{i}", "is_classification": i == 1,
     "instruction": " ".join(WORDS[3 * i:3 * i + 4]),
     "instances": [{"input": " ".join(WORDS[5 * j + i:5 * j + i + 3]), "output": "ref"}
                   for j in range(i + 1)]}
    for i in range(4)]  # 1 + 2 + 3 + 4 = 10 instance prompts


def test_cli_unread_fields_stop_then_ignore_fields_runs(run_dir, tmp_path):
    from typer.testing import CliRunner

    from symnoise.cli import app

    src = tmp_path / "tasks.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in SELF_INSTRUCT))
    out = tmp_path / "o.json"
    args = ["generate", "--model", str(run_dir), "--prompts", str(src), "--output-file",
            str(out), "--max-new-tokens", "2", "--no-progress"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and not out.exists()
    msg = " ".join(res.output.split())  # the error may be wrapped
    assert "'is_classification' (4 of 4 rows, first row 0)" in msg  # False is a value
    assert "'name' (4 of 4 rows, first row 0)" in msg
    assert "--ignore-fields 'is_classification,name'" in msg
    res = CliRunner().invoke(app, [*args, "--ignore-fields", "name,is_classification"])
    assert res.exit_code == 0, res.output
    assert "ignored fields" in res.stdout and "is_classification (4 rows), name (4 rows)" in (
        res.stdout)
    assert "instances 4 rows (10 instance prompts)" in res.stdout
    entries = _outputs(out)
    assert [(e["row"], e["instance"], e["id"]) for e in entries] == [
        (i, j, f"t{i}") for i in range(4) for j in range(i + 1)]
    assert all(e["input"] == SELF_INSTRUCT[e["row"]]["instances"][e["instance"]]["input"]
               for e in entries)
    assert all("name" not in e and e["output"] != "ref" for e in entries)


def test_resume_instance_rows_after_crash(run_dir, tmp_path, monkeypatch):
    rows = [{k: v for k, v in r.items() if k in ("instruction", "instances")}
            for r in SELF_INSTRUCT]
    clean = tmp_path / "clean.json"
    generate_outputs(run_dir, rows, clean, batch_size=4, max_new_tokens=3, progress=False)
    out = tmp_path / "crash.json"
    first = _record_calls(monkeypatch, fail_on_call=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        generate_outputs(run_dir, rows, out, batch_size=4, max_new_tokens=3, progress=False)
    journal = [json.loads(line) for line in journal_path(out).read_text().splitlines()]
    assert len(journal) == 4 and all("instance" in r and "row" in r for r in journal)
    monkeypatch.undo()
    second = _record_calls(monkeypatch)
    rep = generate_outputs(run_dir, rows, out, batch_size=4, max_new_tokens=3, progress=False)
    assert (rep.n_resumed, rep.n_generated) == (4, 6)
    assert set(first[0]).isdisjoint(t for batch in second for t in batch)
    assert _outputs(out) == _outputs(clean) and not journal_path(out).exists()
    # the same texts under other rows/instances are other prompts: not answered by these
    task, (one, two) = rows[1]["instruction"], rows[1]["instances"]
    split = [rows[0], {"instruction": task, "instances": [one]},
             {"instruction": task, "instances": [two]}, *rows[2:]]
    with pytest.raises(DataError, match="row 2: does not answer prompt 2: instruction/input/row"):
        generate_outputs(run_dir, split, out, batch_size=4, max_new_tokens=3, progress=False)


def test_chat_rows_need_the_chat_template_for_whole_conversations(run_dir, tmp_path,
                                                                    monkeypatch):
    chat = tmp_path / "chat-run"
    chat.mkdir()
    for f in run_dir.iterdir():
        if f.is_file():
            (chat / f.name).write_bytes(f.read_bytes())
    tok = make_tokenizer()
    tok.chat_template = ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }} "
                         "{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}")
    tok.save_pretrained(chat)
    seen: list[str] = []

    def fake(self, texts, ids):
        seen.extend(texts)
        return [Generation("ok", 1, True) for _ in texts]

    monkeypatch.setattr(TransformersBackend, "generate", fake)
    rows = [{"conversations": [{"from": "system", "value": "be short"},
                               {"from": "human", "value": "two plus two"}]},
            {"messages": [{"role": "user", "content": "name a cat"}]}]
    with pytest.raises(DataError, match=r"1 chat rows .*first: row 0.*the alpaca template"):
        generate_outputs(chat, rows, tmp_path / "a.json", progress=False)
    assert not (tmp_path / "a.json").exists() and seen == []
    rep = generate_outputs(chat, rows, tmp_path / "a.json", template="chat", progress=False)
    assert seen == ["[system] be short [user] two plus two [assistant]",
                    "[user] name a cat [assistant]"]
    assert "chat (sharegpt) 1 row, chat (openai) 1 row; chat rows: the whole conversation" in (
        rep.format_table())
    assert [(e["instruction"], e["row"]) for e in _outputs(tmp_path / "a.json")] == [
        ("two plus two", 0), ("name a cat", 1)]
    rep = generate_outputs(chat, rows[1:], tmp_path / "b.json", progress=False)
    assert seen[-1] == format_prompt("alpaca", "name a cat") and rep.template == "alpaca"
