"""Tokenisation: response-only labels, BOS/EOS, truncation, chat template, prepare_dataset."""

from __future__ import annotations

import json

import pytest

from symnoise.data import (
    IGNORE_INDEX,
    Example,
    PaddingCollator,
    get_template,
    prepare_dataset,
    tokenize_examples,
)
from symnoise.data.tokenize import special_prefix

CORPUS = [
    "Below is an instruction that describes a task. Write a response.",
    "### Instruction: name a colour. ### Response: blue",
    "A chat between a curious user and an artificial intelligence assistant. USER: ASSISTANT:",
    "the cat sat on the mat, hello world, good morning, bonjour",
]


def make_tokenizer(*, bos: bool = True, eos: bool = True, chat_template: str | None = None):
    """A byte-level BPE tokenizer trained on a few sentences: decode(encode(x)) == x."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
        )
    kwargs = {"bos_token": "<s>", "pad_token": "<pad>"}
    if eos:
        kwargs["eos_token"] = "</s>"
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)
    if chat_template is not None:
        hf.chat_template = chat_template
    return hf


EXAMPLES = [
    Example("Name a colour.", "", "Blue, like the sea.", source="t:0"),
    Example("Translate to French.", "good morning", "bonjour", source="t:1"),
    Example("Say something with unicode.", "", "Grüße — 你好 ✓", source="t:2"),
]


@pytest.mark.parametrize("bos", [True, False])
@pytest.mark.parametrize("template", ["alpaca", "vicuna"])
def test_response_only_labels(bos, template):
    tok = make_tokenizer(bos=bos)
    assert special_prefix(tok) == ([tok.bos_token_id] if bos else [])
    tmpl = get_template(template)
    feats, rep = tokenize_examples(EXAMPLES, tok, tmpl, max_length=512)
    assert (rep.n_in, rep.n_out, rep.truncated, rep.dropped_no_response) == (3, 3, 0, 0)
    for ex, f in zip(EXAMPLES, feats, strict=True):
        ids, labels = f["input_ids"], f["labels"]
        assert len(ids) == len(labels) == len(f["attention_mask"])
        assert f["attention_mask"] == [1] * len(ids)
        n_prompt = next(i for i, x in enumerate(labels) if x != IGNORE_INDEX)
        # prompt: labels all -100, decodes to (BOS +) the prompt
        assert all(x == IGNORE_INDEX for x in labels[:n_prompt])
        expected_prompt = ("<s>" if bos else "") + tmpl.prompt(ex)
        assert tok.decode(ids[:n_prompt]) == expected_prompt
        # response: labels equal ids and decode to response_prefix + output + EOS
        assert labels[n_prompt:] == ids[n_prompt:]
        assert tok.decode(labels[n_prompt:]) == tmpl.response_prefix + ex.output + "</s>"
        assert ids[-1] == tok.eos_token_id
        assert ids.count(tok.bos_token_id) == (1 if bos else 0)
        assert (ids[0] == tok.bos_token_id) == bos
    assert rep.total_tokens == sum(len(f["input_ids"]) for f in feats)
    assert rep.response_tokens == sum(
        sum(1 for x in f["labels"] if x != IGNORE_INDEX) for f in feats
    )
    assert rep.max_len_seen == max(len(f["input_ids"]) for f in feats)


def test_no_eos_is_an_error_unless_add_eos_false():
    tok = make_tokenizer(eos=False)
    with pytest.raises(ValueError, match="no EOS token"):
        tokenize_examples(EXAMPLES, tok, "alpaca")
    feats, _ = tokenize_examples(EXAMPLES[:1], tok, "alpaca", add_eos=False)
    n_prompt = feats[0]["labels"].count(IGNORE_INDEX)
    assert tok.decode(feats[0]["input_ids"][n_prompt:]) == EXAMPLES[0].output


def test_truncation_and_dropping_are_counted():
    tok = make_tokenizer()
    tmpl = get_template("alpaca")
    full, _ = tokenize_examples(EXAMPLES, tok, tmpl, max_length=10_000)
    lengths = [len(f["input_ids"]) for f in full]
    prompt_lens = [f["labels"].count(IGNORE_INDEX) for f in full]
    # a limit that cuts every example's response but keeps at least one response token
    # for those whose prompt is shorter than the limit
    limit = sorted(prompt_lens)[1] + 1
    feats, rep = tokenize_examples(EXAMPLES, tok, tmpl, max_length=limit)
    expected_dropped = sum(p >= limit for p in prompt_lens)
    expected_trunc = sum(n > limit and p < limit for n, p in zip(lengths, prompt_lens, strict=True))
    assert expected_dropped >= 1 and expected_trunc >= 1
    assert rep.dropped_no_response == expected_dropped
    assert rep.truncated == expected_trunc
    assert rep.n_out == 3 - expected_dropped == len(feats)
    assert rep.max_len_seen == max(lengths)
    assert all(len(f["input_ids"]) <= limit for f in feats)
    assert all(any(x != IGNORE_INDEX for x in f["labels"]) for f in feats)
    kept = [EXAMPLES[i].source for i in rep.kept_indices]
    dropped = [e.source for e in EXAMPLES if e.source not in kept]
    assert rep.dropped_sources == dropped
    assert "kept_indices" not in rep.to_dict()
    with pytest.raises(ValueError, match="max_length must be a positive integer"):
        tokenize_examples(EXAMPLES, tok, tmpl, max_length=0)


CHAT = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def test_chat_template_and_no_double_bos():
    tok = make_tokenizer(bos=True, chat_template=CHAT)
    tmpl = get_template("chat", tok)
    assert tmpl.name == "chat"
    assert tmpl.prompt(EXAMPLES[1]) == (
        "<s><|user|>Translate to French.\n\ngood morning\n<|assistant|>"
    )
    feats, rep = tokenize_examples(EXAMPLES, tok, tmpl)
    for ex, f in zip(EXAMPLES, feats, strict=True):
        ids = f["input_ids"]
        assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
        n_prompt = f["labels"].count(IGNORE_INDEX)
        assert tok.decode(ids[:n_prompt]) == tmpl.prompt(ex)
        assert tok.decode(ids[n_prompt:]) == ex.output + "</s>"


def test_chat_template_missing_is_a_clear_error():
    with pytest.raises(ValueError, match="has no chat template"):
        get_template("chat", make_tokenizer())


def _write(path, records):
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def test_prepare_dataset_end_to_end(tmp_path):
    tok = make_tokenizer()
    records = [
        {"instruction": "Name a colour.", "input": "", "output": "Blue."},
        {"instruction": "Broken.", "input": "", "output": ""},
        {"instruction": "Translate to French.", "input": "good morning", "output": "bonjour"},
        {"instruction": "Long " * 200, "input": "", "output": "too late"},
        {"instruction": "Name a fruit.", "input": "", "output": "Pear."},
    ]
    path = _write(tmp_path / "mix.json", records)
    data = prepare_dataset(path, tok, max_length=160, skip_bad_rows=True)
    s = data.summary()
    assert s["format"] == "alpaca" and s["template"] == "alpaca" and s["format_detected"]
    assert (s["read"], s["used"], s["skipped"], s["limited"]) == (5, 4, 1, 0)
    assert (s["features"], s["dropped_no_response"], s["truncated"]) == (3, 1, 0)
    assert s["skipped_reasons"] == [f"{path}:1: field 'output' is empty"]
    assert len(data) == 3
    assert [e.source for e in data.examples] == [f"{path}:0", f"{path}:2", f"{path}:4"]
    # features line up with examples
    for ex, f in zip(data.examples, data.features, strict=True):
        n_prompt = f["labels"].count(IGNORE_INDEX)
        assert tok.decode(f["input_ids"][n_prompt:]) == ex.output + "</s>"
    json.dumps(s)  # serialisable for run.json
    batch = PaddingCollator(tok.pad_token_id)(data.features)
    assert batch["input_ids"].shape == (3, max(len(f["input_ids"]) for f in data.features))


def test_prepare_dataset_sharegpt_defaults_to_vicuna(tmp_path):
    tok = make_tokenizer()
    rec = {
        "id": "x",
        "conversations": [
            {"from": "system", "value": "sys"},
            {"from": "human", "value": "hello"},
            {"from": "gpt", "value": "hi there"},
            {"from": "human", "value": "more"},
            {"from": "gpt", "value": "no"},
        ],
    }
    path = tmp_path / "sg.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    data = prepare_dataset(path, tok)
    s = data.summary()
    assert (s["format"], s["template"], s["multi_turn_cut"], s["system_turns"]) == (
        "sharegpt",
        "vicuna",
        1,
        1,
    )
    f = data.features[0]
    n_prompt = f["labels"].count(IGNORE_INDEX)
    assert tok.decode(f["input_ids"][n_prompt:]) == " hi there</s>"
    assert tok.decode(f["input_ids"][:n_prompt]).endswith("USER: hello ASSISTANT:")
    data = prepare_dataset(path, tok, template="alpaca", max_examples=0)
    assert data.template == "alpaca" and len(data) == 0 and data.data_report.limited == 1


def test_batched_tokenisation_of_many_examples():
    tok = make_tokenizer()
    many = [Example(f"Question number {i}?", "", f"Answer {i}.") for i in range(2500)]
    feats, rep = tokenize_examples(many, tok, "alpaca", max_length=512)
    assert rep.n_out == 2500 and rep.truncated == 0
    n_prompt = feats[1234]["labels"].count(IGNORE_INDEX)
    assert tok.decode(feats[1234]["input_ids"][n_prompt:]) == "Answer 1234.</s>"


# ../shared/data beside the checkout (or beside a folder above it, for git worktrees)
SHARED = next((p / "shared" / "data" for p in __import__("pathlib").Path(__file__).resolve().parents
               if (p / "shared" / "data" / "alpaca_9k.json").exists()),
              __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.mark.skipif(not (SHARED / "alpaca_9k.json").exists(), reason="shared Alpaca data absent")
def test_real_alpaca_sample():
    from symnoise.data import DataError, load_examples

    path = SHARED / "alpaca_9k.json"
    with pytest.raises(DataError, match=r"alpaca_9k\.json row \d+: field 'output' is empty"):
        load_examples(path)
    tok = make_tokenizer()
    data = prepare_dataset(path, tok, skip_bad_rows=True, max_length=512, max_examples=1500)
    s = data.summary()
    assert s["format"] == "alpaca" and s["template"] == "alpaca"
    assert s["read"] == s["used"] + s["skipped"] + s["limited"] and s["skipped"] == 4
    assert s["used"] == 1500
    assert s["features"] + s["dropped_no_response"] == s["used"]
    assert s["truncated"] + s["dropped_no_response"] > 0  # a 400-token BPE makes long rows
    assert len(data.features) == len(data.examples) == s["features"]
