"""Templates: exact prompt strings, names, defaults."""

from __future__ import annotations

import pytest

from symnoise.data import Example, default_template_for, format_prompt, get_template


def test_alpaca_without_input_exact():
    t = get_template("alpaca")
    assert t.name == "alpaca" and t.response_prefix == ""
    assert t.prompt(Example("Name a colour.", "", "Blue.")) == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nName a colour.\n\n### Response:\n"
    )


def test_alpaca_with_input_exact():
    t = get_template("alpaca")
    assert t.prompt(Example("Translate.", "good morning", "bonjour")) == (
        "Below is an instruction that describes a task, paired with an input that provides "
        "further context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nTranslate.\n\n### Input:\ngood morning\n\n### Response:\n"
    )
    # whitespace-only input counts as no input
    assert "### Input" not in t.prompt(Example("Translate.", "  \n", "x"))


@pytest.mark.parametrize("name", ["vicuna", "vicuna_v1.1", "vicuna-v1.1", "Vicuna"])
def test_vicuna_exact(name):
    t = get_template(name)
    assert t.name == "vicuna" and t.response_prefix == " "
    system = (
        "A chat between a curious user and an artificial intelligence assistant. The "
        "assistant gives helpful, detailed, and polite answers to the user's questions."
    )
    assert t.prompt(Example("Hi?", "", "Hello.")) == f"{system} USER: Hi? ASSISTANT:"
    assert t.prompt(Example("Sum:", "1 2", "3")) == f"{system} USER: Sum:\n\n1 2 ASSISTANT:"
    assert t.full_text(Example("Hi?", "", "Hello.")) == f"{system} USER: Hi? ASSISTANT: Hello."


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
