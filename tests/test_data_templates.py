"""Templates: exact prompt strings, names, defaults."""

from __future__ import annotations

import pytest

from symnoise.data import Example, format_prompt, get_template
from symnoise.data.templates import default_template_for

# The published Stanford Alpaca prompts (tatsu-lab/stanford_alpaca, train.py PROMPT_DICT;
# NEFTune's code uses the same), transcribed: both end with "### Response:", no newline.
STANFORD_PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
STANFORD_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:"
)


def test_alpaca_without_input_exact():
    t = get_template("alpaca")
    assert t.name == "alpaca" and t.response_prefix == ""
    ex = Example("Name a colour.", "", "Blue.")
    assert t.prompt(ex) == STANFORD_PROMPT_NO_INPUT.format(instruction="Name a colour.")
    assert t.prompt(ex).endswith("\n\n### Response:")
    # the response follows the colon directly, as in Stanford Alpaca's source + target
    assert t.prompt(ex) + t.response(ex) == t.prompt(ex) + "Blue."


def test_alpaca_with_input_exact():
    t = get_template("alpaca")
    assert t.prompt(Example("Translate.", "good morning", "bonjour")) == (
        STANFORD_PROMPT_INPUT.format(instruction="Translate.", input="good morning")
    )
    assert t.prompt(Example("Translate.", "good morning", "x")).endswith(
        "### Input:\ngood morning\n\n### Response:"
    )
    # whitespace-only input counts as no input
    assert "### Input" not in t.prompt(Example("Translate.", "  \n", "x"))


def test_alpaca_prompt_response_boundary_survives_merges():
    """No newline after the colon: a tokenizer that merges ":B" over the joined text must
    not move the label boundary. Prompt and response are tokenised apart, so the prompt's
    ids are exactly what generation feeds and the first label is the response's first id."""
    from tokenizers import Tokenizer, models, trainers
    from transformers import PreTrainedTokenizerFast

    from symnoise.data import IGNORE_INDEX, tokenize_examples

    t = get_template("alpaca")
    ex = Example("Name a colour.", "", "Blue.")
    tok = Tokenizer(models.BPE())  # no pre-tokenizer: merges may cross ':' and 'B'
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "</s>"],
                                  show_progress=False)
    tok.train_from_iterator([t.prompt(ex) + t.response(ex)] * 20, trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>")
    joined = hf(t.prompt(ex) + t.response(ex), add_special_tokens=False)["input_ids"]
    prompt = hf(t.prompt(ex), add_special_tokens=False)["input_ids"]
    assert joined[: len(prompt)] != prompt  # the joined text does merge over the boundary
    [feat], rep = tokenize_examples([ex], hf, t, max_length=512)
    n_prompt = feat["labels"].count(IGNORE_INDEX)
    assert feat["input_ids"][:n_prompt] == prompt
    response = hf("Blue.", add_special_tokens=False)["input_ids"]
    assert feat["input_ids"][n_prompt:] == response + [hf.eos_token_id]
    assert feat["labels"][n_prompt:] == feat["input_ids"][n_prompt:] and rep.n_out == 1


@pytest.mark.parametrize("name", ["vicuna", "Vicuna", " vicuna "])
def test_vicuna_exact(name):
    t = get_template(name)
    assert t.name == "vicuna" and t.response_prefix == " "
    system = (
        "A chat between a curious user and an artificial intelligence assistant. The "
        "assistant gives helpful, detailed, and polite answers to the user's questions."
    )
    assert t.prompt(Example("Hi?", "", "Hello.")) == f"{system} USER: Hi? ASSISTANT:"
    assert t.prompt(Example("Sum:", "1 2", "3")) == f"{system} USER: Sum:\n\n1 2 ASSISTANT:"
    assert t.prompt(ex := Example("Hi?", "", "Hello.")) + t.response(ex) == f"{system} USER: Hi? ASSISTANT: Hello."


def test_unknown_template_lists_names():
    with pytest.raises(ValueError, match="unknown prompt template 'llama9'.*alpaca, vicuna, chat"):
        get_template("llama9")


def test_chat_needs_tokenizer():
    with pytest.raises(ValueError, match="needs a tokenizer"):
        get_template("chat")


def test_defaults_and_format_prompt():
    assert default_template_for("sharegpt") == "vicuna"
    for fmt in ("alpaca", "evol_instruct", "openplatypus"):
        assert default_template_for(fmt) == "alpaca"
    assert format_prompt("alpaca", "Do it.") == get_template("alpaca").prompt(Example("Do it."))
    assert format_prompt("vicuna", "A", "B").endswith("USER: A\n\nB ASSISTANT:")
