"""Prompt templates: everything before the response. ``alpaca`` (Stanford Alpaca's, ending
with ``### Response:`` and no newline, as in NEFTune's code), ``vicuna`` (v1.1, for ShareGPT;
the response follows ``ASSISTANT:`` after one space), ``chat`` (the tokenizer's own). The
training text is ``prompt + response_prefix + output + EOS``."""

from __future__ import annotations

from typing import Any

from .._io import user_message
from .formats import Example

ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:"
)
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

TEMPLATES: tuple[str, ...] = ("alpaca", "vicuna", "chat")


class Template:
    """Subclasses set ``name``, ``response_prefix`` (tokenised with the response, so it is
    learned) and :meth:`render`."""

    name: str = "template"
    response_prefix: str = ""

    def render(self, instruction: str, input: str = "") -> str:
        """Everything before the response for ``instruction`` (and optional ``input``)."""
        raise NotImplementedError

    def prompt(self, example: Example) -> str:
        """Everything before the response for ``example``."""
        return self.render(example.instruction, example.input)

    def response(self, example: Example) -> str:
        """The response text as trained on: ``response_prefix + example.output``."""
        return self.response_prefix + example.output


class AlpacaTemplate(Template):
    """The Stanford Alpaca prompt."""

    name = "alpaca"

    def render(self, instruction: str, input: str = "") -> str:
        if input and input.strip():
            return ALPACA_WITH_INPUT.format(instruction=instruction, input=input)
        return ALPACA_NO_INPUT.format(instruction=instruction)


class VicunaTemplate(Template):
    """The Vicuna v1.1 single-turn prompt: ``SYSTEM USER: ... ASSISTANT:``."""

    name = "vicuna"
    response_prefix = " "

    def __init__(self, system: str = VICUNA_SYSTEM) -> None:
        self.system = system

    def render(self, instruction: str, input: str = "") -> str:
        return f"{self.system} USER: {user_message(instruction, input)} ASSISTANT:"


class ChatTemplate(Template):
    """The tokenizer's own chat template with one user message and the generation prompt."""

    name = "chat"

    def __init__(self, tokenizer: Any, system: str | None = None) -> None:
        if tokenizer is None:
            raise ValueError("the 'chat' template needs a tokenizer (it uses its chat template)")
        if not getattr(tokenizer, "chat_template", None):
            name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
            raise ValueError(
                f"tokenizer {name!r} has no chat template; use --template alpaca or vicuna, "
                "or a tokenizer of an instruction-tuned model"
            )
        self.tokenizer = tokenizer
        self.system = system

    def render(self, instruction: str, input: str = "") -> str:
        return self.render_messages([{"role": "user",
                                      "content": user_message(instruction, input)}])

    def render_messages(self, messages: list[dict[str, str]]) -> str:
        """A whole conversation (``role``/``content`` turns ending with a user turn) and the
        generation prompt; ``system`` goes first unless the conversation has its own."""
        own = bool(messages) and messages[0]["role"] == "system"
        system = [{"role": "system", "content": self.system}] if self.system and not own else []
        text = self.tokenizer.apply_chat_template([*system, *messages], tokenize=False,
                                                  add_generation_prompt=True)
        return text if isinstance(text, str) else text[0]  # some versions return a list


def get_template(name: str | Template, tokenizer: Any = None) -> Template:
    """The template called ``name`` (a Template is returned unchanged); ValueError listing
    the known names."""
    if isinstance(name, Template):
        return name
    if not isinstance(name, str):
        raise ValueError(f"template must be a name, got {name!r}")
    key = name.strip().lower()
    if key in TEMPLATES:
        return ChatTemplate(tokenizer) if key == "chat" else _SIMPLE[key]()
    raise ValueError(f"unknown prompt template {name!r}; expected one of: {', '.join(TEMPLATES)}")


_SIMPLE: dict[str, type[Template]] = {"alpaca": AlpacaTemplate, "vicuna": VicunaTemplate}


def default_template_for(fmt: str) -> str:
    """The paper's template for a data format: ``vicuna`` for ShareGPT, else ``alpaca``."""
    return "vicuna" if fmt == "sharegpt" else "alpaca"


def format_prompt(template: str | Template, instruction: str, input: str = "", *,
                  tokenizer: Any = None) -> str:
    """The prompt for ``instruction``/``input`` under ``template`` (e.g. at generation)."""
    return get_template(template, tokenizer).render(instruction, input)
