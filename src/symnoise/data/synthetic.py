"""The built-in synthetic suite: short tasks whose answers can be checked exactly (scoring:
:mod:`symnoise.evaluate.tasks`), as Alpaca-style records with ``family``, ``answer`` and
``phrasing``. The held-out split uses only its own phrasings, and its inputs fall on the
other side of a fixed hash partition from training's, whatever the seed; each split is
deterministic from the seed (its own ``random.Random`` stream; a shorter split is a prefix
of a longer one). Each family is registered by :func:`_family` around its sampler, which
draws one example's fields and canonical answer. All task text is this project's own."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import random
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

DEFAULT_N_TRAIN = 2000
DEFAULT_N_HELDOUT = 240

# One input in this many (by a fixed hash of the input) belongs to the held-out side.
_HELDOUT_MODULUS = 6
# How many extra draws to spend looking for an input not yet used in the same split.
_UNIQUE_TRIES = 50
_MAX_DRAWS = 5000

SPLITS: tuple[str, ...] = ("train", "heldout")

Fields = dict[str, str]


def _canonical_split(split: str) -> str:
    name = split.strip().lower() if isinstance(split, str) else None
    if name not in SPLITS:
        raise ValueError(f"unknown synthetic split {split!r}; expected one of: {', '.join(SPLITS)}")
    return name


# -- Families and phrasings ------------------------------------------------------------


@dataclass(frozen=True)
class Phrasing:
    """One way of asking for a task: ``str.format`` templates naming every field."""

    id: str
    instruction: str
    input: str = ""

    def render(self, fields: Mapping[str, str]) -> tuple[str, str]:
        return self.instruction.format(**fields), self.input.format(**fields)


@dataclass(frozen=True)
class Family:
    """A task family; ``kind`` says how an answer is read and compared (``tasks._read``)."""

    name: str
    description: str
    kind: str
    fields: tuple[str, ...]
    train_phrasings: tuple[Phrasing, ...]
    heldout_phrasings: tuple[Phrasing, ...]
    sampler: Callable[[random.Random], tuple[Fields, str]]

    def phrasings(self, split: str) -> tuple[Phrasing, ...]:
        train = _canonical_split(split) == "train"
        return self.train_phrasings if train else self.heldout_phrasings


FAMILIES: dict[str, Family] = {}  # in the round-robin order of the splits

_Sampler = Callable[[random.Random], tuple[Fields, str]]
_PhrasingRows = Sequence[str | tuple[str, str]]  # an instruction, or (instruction, input)


def _family(
    name: str, kind: str, fields: str, description: str, train: _PhrasingRows,
    heldout: _PhrasingRows,
) -> Callable[[_Sampler], _Sampler]:
    """Register the family ``name`` around the sampler it decorates (``fields``: names
    separated by spaces); phrasing ids are ``NAME.tI`` (train) and ``NAME.hI`` (held-out)."""

    def phrasings(rows: _PhrasingRows, tag: str) -> tuple[Phrasing, ...]:
        return tuple(Phrasing(f"{name}.{tag}{i}", *((row,) if isinstance(row, str) else row))
                     for i, row in enumerate(rows, 1))

    def register(sampler: _Sampler) -> _Sampler:
        FAMILIES[name] = Family(name, description, kind, tuple(fields.split()),
                                phrasings(train, "t"), phrasings(heldout, "h"), sampler)
        return sampler

    return register


# Vocabularies: lowercase ASCII, no word the answer reader strips ("answer", "result",
# "output", "response") and no parity word ("even", "odd").

_WORDS: tuple[str, ...] = tuple(
    """
    apple river candle garden pencil window forest rabbit silver basket mountain ocean
    ladder button carpet dragon feather guitar harbor island jacket kettle lemon marble
    needle orange pepper quilt rocket saddle tunnel umbrella valley wagon yellow zebra
    anchor bridge cactus desert engine falcon ginger hammer igloo jungle kitten lantern
    meadow nutmeg oyster parrot quartz ribbon spider tomato violet walnut bright quiet
    gentle swift brave calm clever happy tiny huge warm cold green purple sunny windy soft
    loud jump sing dance read write paint build climb swim cook laugh whisper travel wander
    carry follow cloud stone bread cheese coffee pillow mirror letter summer winter autumn
    spring castle pirate planet comet tiger monkey turtle beetle cherry banana potato
    pumpkin muffin cookie noodle pickle
    """.split()
)

# Words with repeated letters, for counting letters.
_LETTER_WORDS: tuple[str, ...] = tuple(
    """
    banana balloon coffee committee bookkeeper address assessment mississippi strawberry
    raspberry pepper letter parallel success necessary possession tomorrow cinnamon
    butterfly happiness hippopotamus giraffe kangaroo broccoli spaghetti cappuccino umbrella
    accommodate embarrass millennium occurrence programmer referee statistics tennessee
    grasshopper dictionary engineer pineapple barrel cabbage chocolate dolphin elephant
    football goose hammock jellybean lollipop marshmallow noodle pepperoni rabbit sheep
    teeth volleyball watermelon zucchini bubble puzzle
    """.split()
)

_NAMES: tuple[str, ...] = tuple(
    """
    Alice Bruno Chloe Daniel Elena Farid Greta Hugo Ines Jonas Keiko Liam Maya Nikolai
    Olivia Pedro Quinn Rosa Samir Tara Umar Vera Wendy Xavier Yara Zane
    """.split()
)

_CITIES: tuple[str, ...] = tuple(
    """
    Paris Lisbon Oslo Nairobi Lima Seoul Toronto Madrid Cairo Dublin Hanoi Quito Vienna
    Perth Accra Kyoto Prague Bogota
    """.split()
)

_COLORS: tuple[str, ...] = tuple(
    "red blue green yellow purple orange black white brown pink".split()
)
_PETS: tuple[str, ...] = tuple("cat dog parrot hamster rabbit turtle goldfish lizard pony".split())
_JOBS: tuple[str, ...] = tuple(
    "teacher baker pilot nurse farmer painter plumber chemist librarian carpenter".split()
)

# Sentences for number extraction: {name} is a name, {n1}.. are numbers.
_SCENES: tuple[str, ...] = (
    "{name} bought {n1} apples and {n2} pears for {n3} coins.",
    "The train carried {n1} passengers and arrived {n2} minutes late.",
    "{name} read {n1} pages on Monday and {n2} pages on Tuesday.",
    "There are {n1} chairs, {n2} tables and {n3} lamps in the hall.",
    "Our team scored {n1} points in the first half and {n2} in the second.",
    "{name} walked {n1} kilometres in {n2} hours.",
    "The box holds {n1} red, {n2} blue and {n3} green marbles.",
    "The recipe needs {n1} eggs, {n2} grams of flour and {n3} grams of sugar.",
    "Room {n1} has {n2} windows and {n3} doors.",
    "{name} planted {n1} trees and {n2} flowers in {n3} days.",
    "The library lent {n1} books and received {n2} new ones.",
    "{name} paid {n1} dollars for {n2} tickets.",
)

# (source unit, target unit, how a source value maps to an integer target value,
#  how to draw a source value)
_CONVERSIONS: tuple[tuple[str, str, Callable[[int], int], Callable[[random.Random], int]], ...] = (
    ("kilometres", "metres", lambda v: v * 1000, lambda r: r.randint(2, 60)),
    ("metres", "centimetres", lambda v: v * 100, lambda r: r.randint(2, 60)),
    ("kilograms", "grams", lambda v: v * 1000, lambda r: r.randint(2, 60)),
    ("litres", "millilitres", lambda v: v * 1000, lambda r: r.randint(2, 60)),
    ("hours", "minutes", lambda v: v * 60, lambda r: r.randint(2, 60)),
    ("minutes", "seconds", lambda v: v * 60, lambda r: r.randint(2, 60)),
    ("days", "hours", lambda v: v * 24, lambda r: r.randint(2, 60)),
    ("weeks", "days", lambda v: v * 7, lambda r: r.randint(2, 60)),
    ("metres", "kilometres", lambda v: v // 1000, lambda r: 1000 * r.randint(2, 40)),
    ("grams", "kilograms", lambda v: v // 1000, lambda r: 1000 * r.randint(2, 40)),
    ("minutes", "hours", lambda v: v // 60, lambda r: 60 * r.randint(2, 40)),
    ("degrees Celsius", "degrees Fahrenheit", lambda v: v * 9 // 5 + 32,
     lambda r: 5 * r.randint(-8, 20)),
)

_JSON_FIELDS: tuple[tuple[str, Callable[[random.Random], str | int]], ...] = (
    ("name", lambda r: r.choice(_NAMES)),
    ("age", lambda r: r.randint(18, 90)),
    ("city", lambda r: r.choice(_CITIES)),
    ("color", lambda r: r.choice(_COLORS)),
    ("pet", lambda r: r.choice(_PETS)),
    ("score", lambda r: r.randint(0, 100)),
    ("year", lambda r: r.randint(1990, 2024)),
    ("job", lambda r: r.choice(_JOBS)),
)

_DATE_START = _dt.date(2000, 1, 1)
_DATE_SPAN_DAYS = (_dt.date(2030, 12, 31) - _DATE_START).days


# -- The families, in round-robin order: each sampler returns (fields, canonical answer).


def _join(items: Sequence[object], sep: str = ", ") -> str:
    return sep.join(str(x) for x in items)


def _numbers(high: int, k_max: int, answer: Callable[[list[int]], str]) -> _Sampler:
    """A sampler of 4..``k_max`` distinct integers in 1..``high`` (field ``nums``)."""

    def sample(r: random.Random) -> tuple[Fields, str]:
        nums = r.sample(range(1, high + 1), r.randint(4, k_max))
        return {"nums": _join(nums)}, answer(nums)

    return sample


_family("sort_ascending", "integer_list", "nums",
        "Sort a list of integers from smallest to largest.",
        [("Sort the following numbers in ascending order.", "{nums}"),
         ("Arrange these numbers from smallest to largest.", "{nums}"),
         "Put the numbers {nums} in increasing order."],
        [("Order the list below from the lowest value to the highest.", "{nums}"),
         "List {nums} again, starting with the smallest number and ending with the largest."],
        )(_numbers(99, 7, lambda nums: _join(sorted(nums))))

_family("sort_descending", "integer_list", "nums",
        "Sort a list of integers from largest to smallest.",
        [("Sort the following numbers in descending order.", "{nums}"),
         ("Arrange these numbers from largest to smallest.", "{nums}"),
         "Put the numbers {nums} in decreasing order."],
        [("Order the list below from the highest value to the lowest.", "{nums}"),
         "List {nums} again, starting with the largest number and ending with the smallest."],
        )(_numbers(99, 7, lambda nums: _join(sorted(nums, reverse=True))))


@_family("reverse_words", "word_sequence", "words",
         "Reverse the order of the words in a short text.",
         [("Reverse the order of the words in the text below.", "{words}"),
          ("Write these words backwards, last word first.", "{words}"),
          "Reverse the word order of: {words}"],
         [("Flip the sequence of words so that the final word comes first.", "{words}"),
          'Read the words "{words}" from right to left and write them down in that order.'])
def _reverse_words(r: random.Random) -> tuple[Fields, str]:
    words = r.sample(_WORDS, r.randint(3, 6))
    return {"words": " ".join(words)}, " ".join(reversed(words))


@_family("arithmetic", "integer", "a op b", "Add, subtract or multiply two integers.",
         ["Calculate {a} {op} {b}.",
          ("Evaluate the arithmetic expression.", "{a} {op} {b}"),
          "What is {a} {op} {b}?"],
         [("Work out the value of this expression and give only the number.", "{a} {op} {b}"),
          "Solve: {a} {op} {b}"])
def _arithmetic(r: random.Random) -> tuple[Fields, str]:
    op = r.choice("+-*")
    if op == "*":
        a, b = r.randint(2, 12), r.randint(2, 20)
        value = a * b
    else:
        a, b = r.randint(1, 99), r.randint(1, 99)
        value = a + b if op == "+" else a - b
    return {"a": str(a), "op": op, "b": str(b)}, str(value)


@_family("unit_conversion", "integer", "value src dst",
         "Convert a quantity between units (integer result).",
         ["Convert {value} {src} to {dst}.",
          ("Convert the quantity below to {dst}.", "{value} {src}"),
          "How many {dst} is {value} {src}?"],
         ["Express {value} {src} in {dst}, giving just the number.",
          ("Rewrite this measurement using {dst} as the unit.", "{value} {src}")])
def _unit_conversion(r: random.Random) -> tuple[Fields, str]:
    src, dst, convert, draw = r.choice(_CONVERSIONS)
    value = draw(r)
    return {"value": str(value), "src": src, "dst": dst}, str(convert(value))


@_family("count_letter", "integer", "letter word", "Count how often a letter occurs in a word.",
         ["How many times does the letter '{letter}' appear in the word '{word}'?",
          ("Count how many times the letter '{letter}' occurs in the word below.", "{word}"),
          "Count the letter '{letter}' in '{word}'."],
         [("Tell me how often the character '{letter}' shows up in the given word.", "{word}"),
          "In the word \"{word}\", what is the number of '{letter}' characters?"])
def _count_letter(r: random.Random) -> tuple[Fields, str]:
    word = r.choice(_LETTER_WORDS)
    if r.random() < 0.85:
        letter = r.choice(sorted(set(word)))
    else:
        letter = r.choice(sorted(set(string.ascii_lowercase) - set(word)))
    return {"letter": letter, "word": word}, str(word.count(letter))


@_family("to_json", "json", "pairs",
         "Format key-value pairs as a JSON object (numbers stay numbers).",
         [("Format the following key-value pairs as a JSON object.", "{pairs}"),
          ("Convert these fields into JSON.", "{pairs}"),
          "Write the data {pairs} as a JSON object."],
         [("Turn the record below into a JSON object with the same keys and values.", "{pairs}"),
          "Encode the pairs {pairs} as JSON."])
def _to_json(r: random.Random) -> tuple[Fields, str]:
    chosen = r.sample(_JSON_FIELDS, r.randint(2, 4))
    obj = {key: draw(r) for key, draw in chosen}
    pairs = "; ".join(f"{k}: {v}" for k, v in obj.items())
    return {"pairs": pairs}, json.dumps(obj)


@_family("date_add", "date", "date n", "Add a number of days to an ISO date; answer as YYYY-MM-DD.",
         ["What date is {n} days after {date}? Answer in YYYY-MM-DD format.",
          ("Add {n} days to the date below and give the result as YYYY-MM-DD.", "{date}"),
          "Add {n} days to {date}."],
         ["Starting from {date}, count forward {n} days. Which date do you reach?",
          ("Give the date that falls {n} days later than the given date.", "{date}")])
def _date_add(r: random.Random) -> tuple[Fields, str]:
    start = _DATE_START + _dt.timedelta(days=r.randrange(_DATE_SPAN_DAYS + 1))
    n = r.randint(2, 90)
    end = start + _dt.timedelta(days=n)
    return {"date": start.isoformat(), "n": str(n)}, end.isoformat()


@_family("uppercase", "uppercase_text", "text", "Rewrite a phrase in capital letters.",
         [("Convert the following text to uppercase.", "{text}"),
          ("Rewrite this phrase in all capital letters.", "{text}"),
          'Write "{text}" in uppercase.'],
         [("Change every letter of the text below into a capital letter.", "{text}"),
          "Shout this phrase by writing it in upper case: {text}"])
def _uppercase(r: random.Random) -> tuple[Fields, str]:
    text = " ".join(r.sample(_WORDS, r.randint(2, 5)))
    return {"text": text}, text.upper()


@_family("lowercase", "lowercase_text", "text", "Rewrite a phrase in small letters.",
         [("Convert the following text to lowercase.", "{text}"),
          ("Rewrite this phrase using only small letters.", "{text}"),
          'Write "{text}" in lowercase.'],
         [("Change every capital letter in the text below into a lowercase letter.", "{text}"),
          "Make this phrase all lower case: {text}"])
def _lowercase(r: random.Random) -> tuple[Fields, str]:
    words = r.sample(_WORDS, r.randint(2, 5))
    styled = [w.upper() if r.random() < 0.4 else w.capitalize() for w in words]
    return {"text": " ".join(styled)}, " ".join(words)


_family("list_max", "integer", "nums", "Find the largest number in a list.",
        [("Find the largest number in the list.", "{nums}"),
         "What is the maximum of {nums}?",
         ("Which number is the biggest?", "{nums}")],
        [("Give the highest value among these numbers.", "{nums}"),
         "Out of {nums}, report the greatest one."],
        )(_numbers(999, 8, lambda nums: str(max(nums))))

_family("list_min", "integer", "nums", "Find the smallest number in a list.",
        [("Find the smallest number in the list.", "{nums}"),
         "What is the minimum of {nums}?",
         ("Which number is the lowest?", "{nums}")],
        [("Give the least value among these numbers.", "{nums}"),
         "Out of {nums}, report the tiniest one."],
        )(_numbers(999, 8, lambda nums: str(min(nums))))


@_family("count_words", "integer", "text", "Count the words in a text.",
         [("Count the words in the following text.", "{text}"),
          ("How many words are in this sentence?", "{text}"),
          'How many words does "{text}" contain?'],
         [("Tell me the number of words in the passage below.", "{text}"),
          "Give the word count of: {text}"])
def _count_words(r: random.Random) -> tuple[Fields, str]:
    n = r.randint(3, 12)
    text = " ".join(r.choice(_WORDS) for _ in range(n))
    return {"text": text}, str(n)


@_family("alphabetize", "word_list", "words", "Sort words alphabetically.",
         [("Sort these words in alphabetical order.", "{words}"),
          ("Arrange the following words alphabetically.", "{words}"),
          "Put {words} in alphabetical order."],
         [("Order the words below as they would appear in a dictionary.", "{words}"),
          "Rearrange {words} from A to Z."])
def _alphabetize(r: random.Random) -> tuple[Fields, str]:
    words = r.sample(_WORDS, r.randint(3, 6))
    while words == sorted(words):  # never hand out a list that is already in order
        r.shuffle(words)
    return {"words": _join(words)}, _join(sorted(words))


@_family("dedupe", "word_list", "items",
         "Remove repeated items from a list, keeping first occurrences in order.",
         [("Remove the duplicates from the list, keeping the first occurrence of each item.",
           "{items}"),
          ("List each item only once, in the order it first appears.", "{items}"),
          "Delete repeated entries from {items} without changing the order."],
         [("Drop every item that already appeared earlier in the list below.", "{items}"),
          "Keep only the first copy of each word in {items}."])
def _dedupe(r: random.Random) -> tuple[Fields, str]:
    pool = r.sample(_WORDS, r.randint(2, 4))
    items = pool + [r.choice(pool) for _ in range(r.randint(1, 8 - len(pool)))]
    r.shuffle(items)
    return {"items": _join(items)}, _join(dict.fromkeys(items))


@_family("parity", "parity", "number", "Say whether an integer is even or odd.",
         ["Is {number} even or odd?",
          ("State whether the number below is even or odd.", "{number}"),
          "Tell me if {number} is an even or an odd number."],
         [("Decide whether the given integer is divisible by two; reply even or odd.",
           "{number}"),
          "Classify {number} as even or odd."])
def _parity(r: random.Random) -> tuple[Fields, str]:
    number = r.randint(0, 9999)
    return {"number": str(number)}, "even" if number % 2 == 0 else "odd"


@_family("extract_numbers", "integer_list", "text",
         "List the numbers that occur in a sentence, in order.",
         [("Extract all the numbers from the text below.", "{text}"),
          ("List the numbers that appear in this sentence, in order.", "{text}"),
          'Which numbers are mentioned in "{text}"?'],
         [("Pull out every number in the passage below, keeping their order.", "{text}"),
          "Find the numerals in the following sentence: {text}"])
def _extract_numbers(r: random.Random) -> tuple[Fields, str]:
    scene = r.choice(_SCENES)
    slots = sorted(set(re.findall(r"\{(n\d)\}", scene)))
    values = {slot: r.randint(1, 500) for slot in slots}
    text = scene.format(name=r.choice(_NAMES), **values)
    return {"text": text}, _join(re.findall(r"\d+", text))


@_family("repeat_word", "word_sequence", "word n",
         "Repeat a word a given number of times, separated by spaces.",
         ["Repeat the word '{word}' {n} times.",
          ("Write the word below {n} times, separated by spaces.", "{word}"),
          "Say '{word}' {n} times."],
         [("Output the given word exactly {n} times in a row.", "{word}"),
          'Write "{word}" {n} times.'])
def _repeat_word(r: random.Random) -> tuple[Fields, str]:
    word = r.choice(_WORDS)
    n = r.randint(2, 6)
    return {"word": word, "n": str(n)}, " ".join([word] * n)


_FAMILY_LIST: tuple[Family, ...] = tuple(FAMILIES.values())
_PHRASINGS: dict[str, tuple[Family, Phrasing]] = {
    p.id: (fam, p) for fam in _FAMILY_LIST for p in fam.train_phrasings + fam.heldout_phrasings
}


# -- Generation ------------------------------------------------------------------------


@dataclass
class SyntheticSuite:
    """The two splits of the synthetic suite (lists of Alpaca-style record dicts)."""

    train: list[dict[str, str]]
    heldout: list[dict[str, str]]


def _key(family: str, fields: Mapping[str, str]) -> tuple[str, ...]:
    return (family, *(f"{k}={fields[k]}" for k in sorted(fields)))


def _is_heldout_key(key: tuple[str, ...]) -> bool:
    digest = hashlib.sha256("\x1f".join(key).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % _HELDOUT_MODULUS == 0


def _draw(fam: Family, rng: random.Random, heldout: bool,
          seen: set[tuple[str, ...]]) -> tuple[Fields, str, tuple[str, ...]]:
    """Draw an example on the right side of the partition, new to ``seen`` when possible."""
    fallback: tuple[Fields, str, tuple[str, ...]] | None = None
    repeats = 0
    for _ in range(_MAX_DRAWS):
        fields, answer = fam.sampler(rng)
        key = _key(fam.name, fields)
        if _is_heldout_key(key) != heldout:
            continue
        if key not in seen:
            return fields, answer, key
        fallback = fallback or (fields, answer, key)
        repeats += 1
        if repeats >= _UNIQUE_TRIES:
            break
    if fallback is None:  # pragma: no cover - every family has a large input space
        raise RuntimeError(f"family {fam.name!r} yields no inputs for this split")
    return fallback


def _generate_split(seed: int, n: int, split: str) -> list[dict[str, str]]:
    split = _canonical_split(split)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"number of {split} examples must be an integer >= 0, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    rng = random.Random(f"symnoise.synthetic:{seed}:{split}")
    heldout = split == "heldout"
    seen: set[tuple[str, ...]] = set()
    records: list[dict[str, str]] = []
    for i in range(n):
        fam = _FAMILY_LIST[i % len(_FAMILY_LIST)]
        fields, answer, key = _draw(fam, rng, heldout, seen)
        seen.add(key)
        phrasings = fam.phrasings(split)
        phrasing = phrasings[(i // len(_FAMILY_LIST)) % len(phrasings)]
        instruction, input_text = phrasing.render(fields)
        records.append({"instruction": instruction, "input": input_text, "output": answer,
                        "family": fam.name, "answer": answer, "phrasing": phrasing.id})
    return records


def generate_suite(
    seed: int = 0, n_train: int = DEFAULT_N_TRAIN, n_heldout: int = DEFAULT_N_HELDOUT
) -> SyntheticSuite:
    """Both splits from ``seed``: families, and phrasings within one, round-robin; an input
    repeats within a split only when 50 further draws found no fresh one (:func:`example_key`)."""
    return SyntheticSuite(train=_generate_split(seed, n_train, "train"),
                          heldout=_generate_split(seed, n_heldout, "heldout"))


def load_synthetic(split: str = "train", seed: int = 0, n: int | None = None) -> list[dict]:
    """One split (``train``: 2000 records by default, ``heldout``: 240), as in :func:`generate_suite`."""
    canonical = _canonical_split(split)
    if n is None:
        n = DEFAULT_N_TRAIN if canonical == "train" else DEFAULT_N_HELDOUT
    return _generate_split(seed, n, canonical)


# -- Reading a record back -------------------------------------------------------------


@cache
def _template_regex(template: str) -> re.Pattern[str]:
    parts: list[str] = []
    named: set[str] = set()
    for literal, field, _spec, _conv in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if field is not None:
            parts.append(f"(?P={field})" if field in named else f"(?P<{field}>.*?)")
            named.add(field)
    return re.compile("".join(parts), re.DOTALL)


def family_of(record: Mapping[str, Any]) -> Family:
    """The :class:`Family` a record names in its ``family`` field (ValueError otherwise)."""
    if not isinstance(record, Mapping):
        raise ValueError(f"a synthetic record must be a dict, got {type(record).__name__}")
    name = record.get("family")
    if name is None:
        raise ValueError(f"record has no 'family' field: {dict(record)!r}")
    if name not in FAMILIES:
        raise ValueError(f"unknown synthetic family {name!r}; expected one of: "
                         f"{', '.join(FAMILIES)}")
    return FAMILIES[name]


def example_fields(record: Mapping[str, Any]) -> dict[str, str]:
    """The field values a record was built from, read back against its phrasing."""
    fam = family_of(record)
    pid = record.get("phrasing")
    if pid not in _PHRASINGS or _PHRASINGS[pid][0] is not fam:
        raise ValueError(f"record of family {fam.name!r} has unknown phrasing {pid!r}")
    phrasing = _PHRASINGS[pid][1]
    fields: dict[str, str] = {}
    for template, text in ((phrasing.instruction, record.get("instruction", "")),
                           (phrasing.input, record.get("input", ""))):
        match = _template_regex(template).fullmatch(text)
        if match is None:
            raise ValueError(f"record text does not fit phrasing {pid!r}: {text!r}")
        for name, value in match.groupdict().items():
            if fields.setdefault(name, value) != value:
                raise ValueError(f"record gives field {name!r} two values under {pid!r}")
    return fields


def example_key(record: Mapping[str, Any]) -> tuple[str, ...]:
    """``(family, "field=value", ...)``: the same task instance, however phrased."""
    return _key(family_of(record).name, example_fields(record))
