"""Tests for the built-in synthetic instruction suite (symnoise.data.synthetic) and its
scoring (symnoise.evaluate.tasks)."""

from __future__ import annotations

import datetime as dt
import json
import re
import string
from collections import Counter
from fractions import Fraction

import pytest

from symnoise.data.synthetic import (
    FAMILIES,
    SyntheticSuite,
    example_fields,
    example_key,
    generate_suite,
    load_synthetic,
)
from symnoise.evaluate.tasks import CheckResult, check_answer, score_responses

RECORD_KEYS = {"instruction", "input", "output", "family", "answer", "phrasing"}


@pytest.fixture(scope="module")
def suite() -> SyntheticSuite:
    return generate_suite(seed=0)


def _rec(family: str, answer: str) -> dict[str, str]:
    return {"family": family, "answer": answer}


# ----------------------------------------------------------------------------- generation


def test_default_sizes_and_schema(suite: SyntheticSuite) -> None:
    assert len(suite.train) == 2000
    assert len(suite.heldout) == 240
    for record in suite.train + suite.heldout:
        assert set(record) == RECORD_KEYS
        assert all(isinstance(v, str) for v in record.values())
        assert record["instruction"].strip()
        assert record["output"] == record["answer"]
        assert "\n" not in record["answer"]


def test_same_seed_same_suite_and_different_seed_differs(suite: SyntheticSuite) -> None:
    again = generate_suite(seed=0)
    assert again.train == suite.train
    assert again.heldout == suite.heldout
    other = generate_suite(seed=1)
    # The seed changes the inputs of most records, not just a few.
    differ_train = sum(a != b for a, b in zip(suite.train, other.train, strict=True))
    differ_held = sum(a != b for a, b in zip(suite.heldout, other.heldout, strict=True))
    assert differ_train > 0.8 * len(suite.train)
    assert differ_held > 0.8 * len(suite.heldout)


def test_sizes_and_prefix_property() -> None:
    small = generate_suite(seed=3, n_train=37, n_heldout=5)
    assert (len(small.train), len(small.heldout)) == (37, 5)
    big = generate_suite(seed=3, n_train=100, n_heldout=20)
    assert big.train[:37] == small.train
    assert big.heldout[:5] == small.heldout
    assert generate_suite(n_train=0, n_heldout=0) == SyntheticSuite(train=[], heldout=[])


def test_load_synthetic_matches_generate_suite(suite: SyntheticSuite) -> None:
    assert load_synthetic() == suite.train
    assert load_synthetic("heldout") == suite.heldout
    assert load_synthetic("train", seed=0, n=50) == suite.train[:50]
    assert load_synthetic("heldout", seed=2, n=30) == generate_suite(seed=2).heldout[:30]


def test_load_synthetic_rejects_bad_arguments() -> None:
    for split in ("validation", "test"):  # one name per split, no aliases
        with pytest.raises(ValueError, match=f"unknown synthetic split '{split}'"):
            load_synthetic(split)
    with pytest.raises(ValueError, match="None"):
        load_synthetic(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="-1"):
        load_synthetic("train", n=-1)
    with pytest.raises(ValueError, match="seed"):
        load_synthetic("train", seed="0")  # type: ignore[arg-type]


def test_at_least_twelve_families_with_descriptions() -> None:
    assert len(FAMILIES) >= 12
    for name, family in FAMILIES.items():
        assert family.name == name
        assert family.description.strip() and "\n" not in family.description


def test_families_are_round_robin_balanced(suite: SyntheticSuite) -> None:
    order = list(FAMILIES)
    for records in (suite.train, suite.heldout):
        assert [r["family"] for r in records] == [
            order[i % len(order)] for i in range(len(records))
        ]
        counts = Counter(r["family"] for r in records)
        assert set(counts) == set(FAMILIES)
        assert max(counts.values()) - min(counts.values()) <= 1


# ----------------------------------------------------------------------------- phrasings


def test_phrasings_name_exactly_the_family_fields() -> None:
    for family in FAMILIES.values():
        for phrasing in family.train_phrasings + family.heldout_phrasings:
            named = {
                field
                for template in (phrasing.instruction, phrasing.input)
                for _, field, _, _ in string.Formatter().parse(template)
                if field is not None
            }
            assert named == set(family.fields), phrasing.id


def test_heldout_phrasings_disjoint_from_train(suite: SyntheticSuite) -> None:
    for family in FAMILIES.values():
        assert len(family.train_phrasings) >= 2
        assert len(family.heldout_phrasings) >= 1
        train_ids = {p.id for p in family.train_phrasings}
        held_ids = {p.id for p in family.heldout_phrasings}
        assert not train_ids & held_ids
        train_texts = {p.instruction for p in family.train_phrasings}
        held_texts = {p.instruction for p in family.heldout_phrasings}
        assert not train_texts & held_texts, family.name
    for split, records in (("train", suite.train), ("heldout", suite.heldout)):
        used: dict[str, set[str]] = {}
        for r in records:
            used.setdefault(r["family"], set()).add(r["phrasing"])
        for name, family in FAMILIES.items():
            allowed = {p.id for p in family.phrasings(split)}
            assert used[name] == allowed, (split, name)  # all of them, and only them


# ----------------------------------------------------------------------------- inputs


def test_example_fields_round_trip(suite: SyntheticSuite) -> None:
    phrasings = {
        p.id: p for f in FAMILIES.values() for p in f.train_phrasings + f.heldout_phrasings
    }
    for record in suite.train[:400] + suite.heldout:
        fields = example_fields(record)
        assert set(fields) == set(FAMILIES[record["family"]].fields)
        rendered = phrasings[record["phrasing"]].render(fields)
        assert rendered == (record["instruction"], record["input"])


def test_example_key_ignores_the_phrasing() -> None:
    family = FAMILIES["count_letter"]
    fields = {"letter": "a", "word": "banana"}
    keys = set()
    for phrasing in family.train_phrasings + family.heldout_phrasings:
        instruction, input_text = phrasing.render(fields)
        record = {
            "family": family.name,
            "phrasing": phrasing.id,
            "instruction": instruction,
            "input": input_text,
        }
        keys.add(example_key(record))
    assert keys == {("count_letter", "letter=a", "word=banana")}
    other = dict(record, instruction=record["instruction"].replace("banana", "coffee"))
    other["input"] = record["input"].replace("banana", "coffee")
    assert example_key(other) == ("count_letter", "letter=a", "word=coffee")


def test_heldout_inputs_disjoint_from_train_inputs(suite: SyntheticSuite) -> None:
    train_keys = {example_key(r) for r in suite.train}
    held_keys = [example_key(r) for r in suite.heldout]
    assert not train_keys & set(held_keys)
    assert len(set(held_keys)) == len(held_keys)  # no repeated held-out item
    assert len(train_keys) == len(suite.train)  # nor training item, at the default size
    # Raw text check too: asking a held-out question in any training phrasing gives a text
    # that the training split does not contain.
    train_text = {(r["instruction"], r["input"]) for r in suite.train}
    for record in suite.heldout:
        fields = example_fields(record)
        for phrasing in FAMILIES[record["family"]].train_phrasings:
            assert phrasing.render(fields) not in train_text


def test_heldout_disjoint_across_seeds_and_large_train() -> None:
    train_keys = {example_key(r) for r in load_synthetic("train", seed=5, n=6000)}
    for seed in (0, 1, 5):
        held = {example_key(r) for r in load_synthetic("heldout", seed=seed)}
        assert not train_keys & held


# ----------------------------------------------------------------------------- answers


def _expected_answer(family: str, f: dict[str, str]) -> str:
    """Independent recomputation of the canonical answer from a record's fields."""
    nums = [int(x) for x in f["nums"].split(", ")] if "nums" in f else []
    if family == "sort_ascending":
        return ", ".join(map(str, sorted(nums)))
    if family == "sort_descending":
        return ", ".join(map(str, sorted(nums)[::-1]))
    if family == "reverse_words":
        return " ".join(f["words"].split()[::-1])
    if family == "arithmetic":
        a, b = int(f["a"]), int(f["b"])
        return str({"+": a + b, "-": a - b, "*": a * b}[f["op"]])
    if family == "unit_conversion":
        value = Fraction(f["value"])
        factors = {
            ("kilometres", "metres"): 1000,
            ("metres", "centimetres"): 100,
            ("kilograms", "grams"): 1000,
            ("litres", "millilitres"): 1000,
            ("hours", "minutes"): 60,
            ("minutes", "seconds"): 60,
            ("days", "hours"): 24,
            ("weeks", "days"): 7,
            ("metres", "kilometres"): Fraction(1, 1000),
            ("grams", "kilograms"): Fraction(1, 1000),
            ("minutes", "hours"): Fraction(1, 60),
        }
        if f["src"] == "degrees Celsius":
            assert f["dst"] == "degrees Fahrenheit"
            out = value * Fraction(9, 5) + 32
        else:
            out = value * factors[(f["src"], f["dst"])]
        assert out.denominator == 1, f
        return str(out.numerator)
    if family == "count_letter":
        return str(f["word"].count(f["letter"]))
    if family == "to_json":
        obj = {}
        for pair in f["pairs"].split("; "):
            key, value = pair.split(": ")
            obj[key] = int(value) if value.isdigit() else value
        return json.dumps(obj)
    if family == "date_add":
        d = dt.date.fromisoformat(f["date"]) + dt.timedelta(days=int(f["n"]))
        return d.isoformat()
    if family == "uppercase":
        return f["text"].upper()
    if family == "lowercase":
        return f["text"].lower()
    if family == "list_max":
        return str(max(nums))
    if family == "list_min":
        return str(min(nums))
    if family == "count_words":
        return str(len(f["text"].split()))
    if family == "alphabetize":
        return ", ".join(sorted(f["words"].split(", ")))
    if family == "dedupe":
        out: list[str] = []
        for item in f["items"].split(", "):
            if item not in out:
                out.append(item)
        return ", ".join(out)
    if family == "parity":
        return ["even", "odd"][int(f["number"]) % 2]
    if family == "extract_numbers":
        return ", ".join(re.findall(r"[0-9]+", f["text"]))
    if family == "repeat_word":
        return " ".join([f["word"]] * int(f["n"]))
    raise AssertionError(f"no reference for family {family}")


def test_canonical_answers_match_independent_computation(suite: SyntheticSuite) -> None:
    for record in suite.train + suite.heldout:
        expected = _expected_answer(record["family"], example_fields(record))
        assert record["answer"] == expected, record


def test_inputs_are_nontrivial(suite: SyntheticSuite) -> None:
    for record in suite.train:
        f = example_fields(record)
        if record["family"] == "alphabetize":
            assert f["words"] != record["answer"]  # never already sorted
        if record["family"] == "dedupe":
            assert len(f["items"].split(", ")) > len(record["answer"].split(", "))
        if record["family"] == "lowercase":
            assert f["text"] != record["answer"]
    assert {r["answer"] for r in suite.train if r["family"] == "parity"} == {"even", "odd"}


def test_canonical_outputs_pass_their_checker(suite: SyntheticSuite) -> None:
    for record in suite.train + suite.heldout:
        for response in (record["output"], record["output"] + "\n"):
            result = check_answer(record, response)
            assert result.correct and result.formatted, (record, result)
        assert check_answer(record, record["output"]).extracted is not None
        wrapped = check_answer(record, f"Answer: {record['output']}.")
        assert wrapped.correct and not wrapped.formatted, record


def test_other_answers_of_the_same_family_fail(suite: SyntheticSuite) -> None:
    by_family: dict[str, list[dict[str, str]]] = {}
    for record in suite.heldout:
        by_family.setdefault(record["family"], []).append(record)
    for family, records in by_family.items():
        for a, b in zip(records, records[1:], strict=False):
            if family == "to_json":
                same = json.loads(a["answer"]) == json.loads(b["answer"])
            else:
                same = a["answer"] == b["answer"]
            result = check_answer(a, b["output"])
            assert result.correct == same, (family, a["answer"], b["output"])
            assert result.formatted  # wrong but in the expected format


WRONG = [
    ("sort_ascending", "3, 5, 7, 12", "3, 7, 5, 12"),
    ("sort_ascending", "3, 5, 7, 12", "12, 7, 5, 3"),
    ("sort_ascending", "3, 5, 7, 12", "3, 5, 7"),
    ("sort_descending", "12, 7, 5, 3", "3, 5, 7, 12"),
    ("reverse_words", "high jumps fox red", "red fox jumps high"),
    ("arithmetic", "68", "67"),
    ("arithmetic", "68", "-68"),
    ("arithmetic", "68", "6.8"),
    ("arithmetic", "68", "68 or 69"),
    ("arithmetic", "-12", "12"),
    ("unit_conversion", "5000", "500"),
    ("unit_conversion", "5000", "5 km"),
    ("count_letter", "3", "2"),
    ("to_json", '{"name": "Alice", "age": 30}', '{"name": "Alice", "age": "30"}'),
    ("to_json", '{"name": "Alice", "age": 30}', '{"name": "alice", "age": 30}'),
    ("to_json", '{"name": "Alice", "age": 30}', '{"name": "Alice"}'),
    ("to_json", '{"name": "Alice", "age": 30}', "name: Alice; age: 30"),
    ("to_json", '{"name": "Alice", "age": 30}', '{"name": "Alice", "age": 30'),
    ("to_json", '{"score": 1}', '{"score": true}'),
    ("date_add", "2023-03-07", "2023-03-08"),
    ("date_add", "2023-03-07", "2023-3-7"),
    ("uppercase", "HELLO WORLD", "Hello World"),
    ("uppercase", "HELLO WORLD", "hello world"),
    ("uppercase", "HELLO WORLD", "HELLO WORLDS"),
    ("lowercase", "quiet river", "Quiet river"),
    ("list_max", "707", "676"),
    ("list_min", "126", "149"),
    ("count_words", "4", "5"),
    ("alphabetize", "carpet, follow, igloo", "carpet, igloo, follow"),
    ("dedupe", "windy, zebra", "windy, zebra, zebra"),
    ("dedupe", "windy, zebra", "zebra, windy"),
    ("parity", "odd", "even"),
    ("parity", "odd", "even or odd"),
    ("extract_numbers", "63, 82, 237", "63, 82"),
    ("extract_numbers", "63, 82, 237", "82, 63, 237"),
    ("repeat_word", "sun sun sun", "sun sun"),
    ("repeat_word", "sun sun sun", "sun sun sun sun"),
]


@pytest.mark.parametrize(("family", "answer", "response"), WRONG)
def test_hand_written_wrong_answers_fail(family: str, answer: str, response: str) -> None:
    assert not check_answer(_rec(family, answer), response).correct


@pytest.mark.parametrize("family", list(FAMILIES))
def test_empty_response_fails(family: str) -> None:
    record = next(r for r in load_synthetic("heldout", n=len(FAMILIES)) if r["family"] == family)
    for response in ("", "   \n", None):
        assert check_answer(record, response) == CheckResult(False, False, None)


LENIENT = [
    # (family, answer, response, formatted, extracted)
    ("arithmetic", "42", "42", True, "42"),
    ("arithmetic", "42", "42\n", True, "42"),
    ("arithmetic", "42", "Answer: 42.", False, "42"),
    ("arithmetic", "42", " 42 \n", False, "42"),
    ("arithmetic", "42", "The answer is 42", False, "42"),
    ("arithmetic", "42", "the answer is: 42.", False, "42"),
    ("arithmetic", "42", "Result = 42", False, "42"),
    ("arithmetic", "42", "42\n\nI added the two numbers.", False, "42"),
    ("arithmetic", "42", "23 + 19 = 42", False, "42"),
    ("arithmetic", "42", "42.0", False, "42.0"),
    ("arithmetic", "-12", "-12", True, "-12"),
    ("unit_conversion", "5000", "5000 metres", False, "5000"),
    ("unit_conversion", "5000", "5,000", False, "5,000"),
    ("sort_ascending", "3, 5, 7", "3,5,7", False, "3,5,7"),
    ("sort_ascending", "3, 5, 7", "[3, 5, 7]", False, "[3, 5, 7]"),
    ("sort_ascending", "3, 5, 7", "Answer: 3, 5 and 7.", False, "3, 5 and 7"),
    ("extract_numbers", "63, 82", "63 82", False, "63 82"),
    ("reverse_words", "high jumps fox", "High jumps fox.", False, "High jumps fox"),
    ("repeat_word", "sun sun sun", "sun, sun, sun", False, "sun, sun, sun"),
    ("alphabetize", "carpet, follow", "Carpet, Follow", False, "Carpet, Follow"),
    ("uppercase", "HELLO WORLD", '  "HELLO   WORLD." ', False, "HELLO   WORLD"),
    ("lowercase", "quiet river", "Output: quiet river", False, "quiet river"),
    ("date_add", "2023-03-07", "Answer: 2023-03-07.", False, "2023-03-07"),
    ("parity", "odd", "Odd", False, "odd"),
    ("parity", "odd", "It is odd.", False, "odd"),
    ("to_json", '{"name": "Alice", "age": 30}', '{"age": 30, "name": "Alice"}', True, None),
    (
        "to_json",
        '{"name": "Alice", "age": 30}',
        '{\n  "name": "Alice",\n  "age": 30\n}',
        True,
        None,
    ),
    (
        "to_json",
        '{"name": "Alice", "age": 30}',
        '```json\n{"name": "Alice", "age": 30}\n```',
        False,
        None,
    ),
    (
        "to_json",
        '{"name": "Alice", "age": 30}',
        'Answer: {"name": "Alice", "age": 30.0}',
        False,
        None,
    ),
]


@pytest.mark.parametrize(("family", "answer", "response", "formatted", "extracted"), LENIENT)
def test_lenient_reading(
    family: str, answer: str, response: str, formatted: bool, extracted: str | None
) -> None:
    result = check_answer(_rec(family, answer), response)
    assert result.correct
    assert result.formatted is formatted
    if extracted is not None:
        assert result.extracted == extracted
    else:
        assert json.loads(result.extracted or "") == json.loads(answer)


def test_formatted_is_independent_of_correctness() -> None:
    assert check_answer(_rec("arithmetic", "42"), "43") == CheckResult(False, True, "43")
    assert check_answer(_rec("date_add", "2023-03-07"), "2024-01-01").formatted
    assert not check_answer(_rec("date_add", "2023-03-07"), "7 March 2023").formatted
    assert not check_answer(_rec("uppercase", "HELLO"), "Hello").formatted
    assert not check_answer(_rec("to_json", '{"a": 1}'), "{'a': 1}").formatted


def test_check_answer_errors() -> None:
    with pytest.raises(ValueError, match="poetry"):
        check_answer(_rec("poetry", "x"), "x")
    with pytest.raises(ValueError, match="answer"):
        check_answer({"family": "parity"}, "odd")
    with pytest.raises(ValueError, match="family"):
        check_answer({"answer": "odd"}, "odd")


# ----------------------------------------------------------------------------- scoring


def test_score_responses_hand_example() -> None:
    records = [
        _rec("parity", "odd"),
        _rec("arithmetic", "68"),
        _rec("arithmetic", "10"),
        _rec("arithmetic", "5"),
        _rec("parity", "even"),
    ]
    responses = ["odd", "68", "Answer: 10.", "6", "Even"]
    # correct: yes yes yes no yes -> 4/5; formatted: yes yes no yes no -> 3/5
    result = score_responses(records, responses)
    assert (result["n"], result["correct"], result["formatted"]) == (5, 4, 3)
    assert result["accuracy"] == pytest.approx(0.8)
    assert result["format_rate"] == pytest.approx(0.6)
    assert result["accuracy_ci95"] == pytest.approx((0.3755, 0.9638), abs=1e-4)
    assert list(result["per_family"]) == ["arithmetic", "parity"]  # registry order
    arith, parity = result["per_family"]["arithmetic"], result["per_family"]["parity"]
    assert (arith["n"], arith["correct"], arith["formatted"]) == (3, 2, 2)
    assert arith["accuracy"] == pytest.approx(2 / 3)
    assert arith["accuracy_ci95"] == pytest.approx((0.2077, 0.9385), abs=1e-4)
    assert (parity["n"], parity["correct"], parity["formatted"]) == (2, 2, 1)
    assert parity["format_rate"] == pytest.approx(0.5)
    assert parity["accuracy_ci95"] == pytest.approx((0.3424, 1.0), abs=1e-4)
    json.dumps(result)  # serialisable as a metrics file


def test_score_responses_on_the_suite(suite: SyntheticSuite) -> None:
    f = len(FAMILIES)
    records = suite.heldout[: len(suite.heldout) // f * f]  # whole rounds of the families
    perfect = score_responses(records, [r["output"] for r in records])
    assert perfect["accuracy"] == 1.0 and perfect["format_rate"] == 1.0
    assert set(perfect["per_family"]) == set(FAMILIES)
    # Shift every answer by one record within its family: all wrong except coincidences.
    outputs = [r["output"] for r in records]
    shifted = score_responses(records, outputs[f:] + outputs[:f])
    assert shifted["accuracy"] < 0.2
    assert shifted["format_rate"] == 1.0


def test_score_responses_errors() -> None:
    with pytest.raises(ValueError, match="2 records but 1 responses"):
        score_responses([_rec("parity", "odd"), _rec("parity", "odd")], ["odd"])
    with pytest.raises(ValueError, match="no records"):
        score_responses([], [])
    with pytest.raises(ValueError, match="record 1.*poetry"):
        score_responses([_rec("parity", "odd"), _rec("poetry", "x")], ["odd", "x"])
