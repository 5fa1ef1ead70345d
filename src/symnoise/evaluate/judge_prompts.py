"""The pairwise judge prompt and the parser of the judge's reply.

The prompt shows one instruction and two outputs labelled ``(a)`` and ``(b)`` and asks for
a single letter. :data:`TEMPLATE_VERSION` is part of every cache key: change it whenever the
wording changes, so that cached verdicts given to an older wording are not reused.

:func:`parse_verdict` reads a free-text reply and returns ``"a"``, ``"b"``, ``"tie"`` or
``None`` when the reply does not name one output unambiguously. It never guesses.
"""

from __future__ import annotations

import re

__all__ = [
    "TEMPLATE_VERSION",
    "SYSTEM_PROMPT",
    "USER_TEMPLATE",
    "PLAIN_ANSWER_PREFIX",
    "build_messages",
    "build_plain_prompt",
    "parse_verdict",
]

TEMPLATE_VERSION = "pairwise-v1"

SYSTEM_PROMPT = (
    "You are an impartial judge. You compare two responses written for the same "
    "instruction and decide which one serves the person who wrote the instruction "
    "better: weigh helpfulness, correctness, relevance, clarity and an appropriate level "
    "of detail. The order in which the responses are shown carries no information, and "
    "a longer response is not better for being longer."
)

USER_TEMPLATE = (
    "## Instruction\n{instruction}\n\n"
    "## Output (a)\n{output_a}\n\n"
    "## Output (b)\n{output_b}\n\n"
    "Which output is better, (a) or (b)? Reply with one letter only: a or b."
)

# Ends the prompt given to a model that has no chat template.
PLAIN_ANSWER_PREFIX = "The better output is"


def build_messages(instruction: str, output_a: str, output_b: str) -> list[dict[str, str]]:
    """Chat messages (system + user) asking which of two outputs is better."""
    user = USER_TEMPLATE.format(instruction=instruction, output_a=output_a, output_b=output_b)
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def build_plain_prompt(instruction: str, output_a: str, output_b: str) -> str:
    """The same question as one plain-text prompt, ending right before the verdict.

    Used for a local model without a chat template: the next token should be ``" a"`` or
    ``" b"``.
    """
    user = USER_TEMPLATE.format(instruction=instruction, output_a=output_a, output_b=output_b)
    return f"{SYSTEM_PROMPT}\n\n{user}\n\n{PLAIN_ANSWER_PREFIX}"


# Replies that are nothing but a verdict, once markdown, quotes and punctuation are gone.
_WHOLE = re.compile(
    r"(?:(?:the\s+)?(?:better\s+)?(?:output|answer|response|option)\s*)?"
    r"(?:\(\s*([ab])\s*\)|\[\s*([ab])\s*\]|([ab]))"
)
_TIE = re.compile(r"(?:it'?s\s+a\s+)?(?:tie|draw|equal|both(?:\s+are)?\s+(?:equal|equally\s+good))")
# A label explicitly marked as one: "(a)", "[b]", "output a", "output (b)".
_MENTION = re.compile(
    r"\(\s*([ab])\s*\)|\[\s*([ab])\s*\]|\b(?:output|response|answer|option)\s*\(?\s*([ab])\b"
)
# Phrases that state the verdict when both labels are mentioned.
_VERDICT_PHRASES = (
    re.compile(
        r"(?:\b(?:output|response|answer|option)\s*\(?\s*([ab])\s*\)?|\(\s*([ab])\s*\))"
        r"\s+(?:is|was|seems|appears)\s+(?:clearly\s+|slightly\s+|much\s+)?"
        r"(?:better|preferred|preferable|superior|the\s+better)"
    ),
    re.compile(
        r"\b(?:verdict|answer|choice|winner|decision|better\s+(?:output|response|one))"
        r"\s*(?:is|:|-)\s*(?:output\s*|response\s*)?\(?\s*\**\s*([ab])\b"
    ),
    re.compile(r"\bi\s+(?:prefer|choose|pick|select)\s+(?:output\s*|response\s*)?\(?\s*([ab])\b"),
)
# A leading bare letter followed by punctuation that ends it ("a.", "b)", "a:").
_LEADING = re.compile(r"([ab])\s*(?:[.):,;!\n]|$)")
_STRIP = " \t\r\n*_`'\"“”‘’.!:;,-#>"


def _label(match: re.Match[str]) -> str:
    return next(g for g in match.groups() if g)


def parse_verdict(reply: str | None) -> str | None:
    """Return ``"a"``, ``"b"`` or ``"tie"`` named by ``reply``, or ``None`` if unclear.

    Accepts the bare letter in any case and common wrappings (``"Output (a)"``, ``"(b)"``,
    ``"**a**"``, ``"b."``, ``"Output (b) is better than output (a)."``,
    ``"Verdict: a"``, a first line that is a verdict followed by an explanation). A reply that names both outputs without saying which one is better,
    names neither, or starts with a word such as the article "A" is unparseable: the caller
    records it as such, it is never guessed.
    """
    if reply is None:
        return None
    text = reply.strip().lower()
    if not text:
        return None
    core = text.strip(_STRIP)
    whole = _WHOLE.fullmatch(core)
    if whole:
        return _label(whole)
    if _TIE.fullmatch(core):
        return "tie"
    first_line = text.split("\n", 1)[0].strip(_STRIP)
    first = _WHOLE.fullmatch(first_line)
    if first:  # "Output (a)" then an explanation on the next lines
        return _label(first)
    for phrase in _VERDICT_PHRASES:
        found = {_label(m) for m in phrase.finditer(text)}
        if len(found) == 1:
            return found.pop()
        if len(found) > 1:
            return None
    mentioned = {_label(m) for m in _MENTION.finditer(text)}
    if len(mentioned) == 1:
        return mentioned.pop()
    if mentioned:
        return None
    leading = _LEADING.match(text.lstrip(_STRIP))
    if leading:
        return leading.group(1)
    return None
