"""The parse/repair layer (dataprobes.qa.parse) and fault injection
(dataprobes.qa.faults): every defect either recovers the exact object or is a
counted failure of the documented kind."""

from __future__ import annotations

import json
import math
import pickle
from typing import Literal

import pytest

pydantic = pytest.importorskip("pydantic")
pytest.importorskip("json_repair")

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field  # noqa: E402

from dataprobes.qa import (  # noqa: E402
    DEFECTS,
    FailureKind,
    FaultyGenerator,
    derive_seed,
    format_instructions,
    inject_defects,
    json_object_spans,
    parse_object,
    reask_prompt,
    strip_fences,
)
from dataprobes.qa.parse import closed_json_schema  # noqa: E402

# ---------------------------------------------------------------- schemas


class Inner(BaseModel):
    label: Literal["low", "mid", "high"]
    weight: float


class QA(BaseModel):
    question: str
    answer: str
    verdict: int
    ok: bool


class Rich(BaseModel):
    title: str
    count: int
    score: float | None = None
    tags: list[str] = Field(default_factory=list)
    inner: Inner
    items: list[Inner] = Field(default_factory=list)
    flag: bool = False


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")
    a: int


# plain text, and the characters a JSON writer or repairer can get wrong (edges of strings included)
texts = st.text(max_size=30) | st.text(alphabet=" \t\n'\"\\{}[],:", max_size=10)
floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
ints = st.integers(-(2**70), 2**70)


def inner_objs() -> st.SearchStrategy[Inner]:
    return st.builds(Inner, label=st.sampled_from(["low", "mid", "high"]), weight=floats)


qa_objs = st.builds(QA, question=texts, answer=texts, verdict=ints, ok=st.booleans())
rich_objs = st.builds(
    Rich,
    title=texts,
    count=ints,
    score=st.none() | floats,
    tags=st.lists(texts, max_size=3),
    inner=inner_objs(),
    items=st.lists(inner_objs(), max_size=3),
    flag=st.booleans(),
)
objs = qa_objs | rich_objs
RECOVERABLE = tuple(d for d in DEFECTS if d not in ("truncation", "wrong_keys"))


# ---------------------------------------------------------------- the property


@given(obj=objs, defects=st.sets(st.sampled_from(DEFECTS)), seed=st.integers(0, 2**32 - 1))
def test_parse_recovers_or_counts_each_defect(obj: BaseModel, defects: set[str], seed: int) -> None:
    schema = type(obj)
    text = inject_defects(obj, defects, seed=seed)
    parsed = parse_object(text, schema)
    if "truncation" in defects:
        assert parsed.value is None and parsed.kind is FailureKind.UNBALANCED
        flagged = parse_object(text, schema, truncated=True)
        assert flagged.value is None and flagged.kind is FailureKind.TRUNCATED
    elif "wrong_keys" in defects:
        assert parsed.value is None and parsed.kind is FailureKind.SCHEMA_VIOLATION
        assert "unexpected keys" in parsed.error
    else:
        assert parsed.kind is None, (text, parsed.error)
        assert parsed.value == obj
        assert type(parsed.value) is schema
        needs_repair = bool(defects & {"trailing_comma", "single_quotes"})
        assert parsed.repaired == needs_repair


@given(obj=objs)
def test_no_defect_is_plain_json(obj: BaseModel) -> None:
    text = inject_defects(obj, [])
    assert json.loads(text) == obj.model_dump(mode="json")
    parsed = parse_object(text, type(obj))
    assert parsed.value == obj and not parsed.repaired


@given(
    obj=objs,
    before=st.text(alphabet=st.characters(blacklist_characters="{"), max_size=40),
    after=st.text(max_size=40),
)
def test_first_balanced_object_is_exactly_the_json(obj: BaseModel, before: str, after: str) -> None:
    """Reference: the span found after brace-free prose is the dumped object, byte for byte."""
    dumped = json.dumps(obj.model_dump(mode="json"), ensure_ascii=False)
    text = before + dumped + after
    start, end = next(json_object_spans(text))
    assert text[start:end] == dumped
    assert parse_object(text, type(obj)).value == obj


def _brute_force_first_span(text: str) -> tuple[int, int] | None:
    """Reference: the shortest prefix from the first '{' that is a complete JSON value."""
    start = text.find("{")
    if start < 0:
        return None
    for end in range(start + 1, len(text) + 1):
        try:
            json.loads(text[start:end])
        except ValueError:
            continue
        return start, end
    return None


@given(obj=objs, after=st.text(max_size=20))
def test_span_matches_brute_force(obj: BaseModel, after: str) -> None:
    text = "Answer: " + json.dumps(obj.model_dump(mode="json")) + after
    assert next(json_object_spans(text)) == _brute_force_first_span(text)


# ---------------------------------------------------------------- fixed cases


def test_braces_and_quotes_inside_strings_do_not_count() -> None:
    text = 'Note {x}: {"question": "a } b { c", "answer": "it\'s \\"q\\" }", "verdict": 1, "ok": true} bye }'
    spans = list(json_object_spans(text))
    assert spans[0] == (5, 8)  # "{x}" in the prose is a (bad) candidate, skipped
    parsed = parse_object(text, QA)
    assert parsed.value == QA(question="a } b { c", answer='it\'s "q" }', verdict=1, ok=True)


def test_fences() -> None:
    body = '{"question": "q", "answer": "a", "verdict": 2, "ok": false}'
    assert strip_fences(f"```json\n{body}\n```") == body + "\n"
    assert strip_fences(f"text\n```\nnot json\n```\n```JSON\n{body}```") == body
    assert strip_fences(f"```json\n{body}") == body  # an opening fence that never closes
    assert parse_object(f"```json\n{body}\n``` and more", QA).value == QA(question="q", answer="a", verdict=2, ok=False)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("", FailureKind.NO_JSON),
        ("   \n", FailureKind.NO_JSON),
        ("I cannot answer that.", FailureKind.NO_JSON),
        ('{"question": "q", "answer": "a", "verdict": 1, "ok": tr', FailureKind.UNBALANCED),
        ('{"question": "q", "answer": "a", "verdict": NaN, "ok": true}', FailureKind.INVALID_JSON),
        ('{"question": "q", "answer": "a", "verdict": 1e999, "ok": true}', FailureKind.INVALID_JSON),
        ('{"question": "q", "answer": "a", "verdict": "many", "ok": true}', FailureKind.SCHEMA_VIOLATION),
        ('{"question": "q", "answer": "a", "ok": true}', FailureKind.SCHEMA_VIOLATION),
        ("[1, 2, 3]", FailureKind.NO_JSON),
    ],
)
def test_failure_kinds(text: str, kind: FailureKind) -> None:
    parsed = parse_object(text, QA)
    assert parsed.value is None and parsed.kind is kind and parsed.error


@pytest.mark.parametrize("defect", ["trailing_comma", "single_quotes"])
def test_rewrites_keep_string_edges(defect: str) -> None:
    """Regression (found by the benchmark): json_repair strips a string's trailing
    newline; the exact rewrites come first and keep it."""
    obj = QA(question=" q\n", answer='tab\t it\'s "x" \\ \n\n', verdict=1, ok=True)
    parsed = parse_object(inject_defects(obj, [defect]), QA)
    assert parsed.value == obj and parsed.repaired


def test_raw_control_characters_and_unquoted_keys() -> None:
    raw = '{"question": "line one\nline two", "answer": "a", "verdict": 1, "ok": true}'
    assert "\n" in raw
    assert parse_object(raw, QA).value == QA(question="line one\nline two", answer="a", verdict=1, ok=True)
    unquoted = '{question: "q", answer: "a", verdict: 1, ok: true}'  # only json_repair reads this
    parsed = parse_object(unquoted, QA)
    assert parsed.value == QA(question="q", answer="a", verdict=1, ok=True) and parsed.repaired


def test_truncated_flag_names_the_token_limit() -> None:
    parsed = parse_object('{"question": "q", "ans', QA, truncated=True)
    assert parsed.kind is FailureKind.TRUNCATED and "token limit" in parsed.error
    # a complete object followed by cut prose is fine even when the back end hit its limit
    ok = parse_object('{"question": "q", "answer": "a", "verdict": 1, "ok": true} and then', QA, truncated=True)
    assert ok.value is not None


def test_nan_after_repair_is_refused() -> None:
    parsed = parse_object('{"title": "t", "count": 1, "score": NaN, "inner": {"label": "low", "weight": 1,},}', Rich)
    assert parsed.kind is FailureKind.INVALID_JSON and "non-finite" in parsed.error


def test_repair_never_empties_an_object() -> None:
    class AllDefaults(BaseModel):
        x: int = 0

    parsed = parse_object("{@@@ ### !!!}", AllDefaults)
    assert parsed.value is None and parsed.kind is FailureKind.INVALID_JSON
    assert parse_object("{}", AllDefaults).value == AllDefaults()  # a genuinely empty object is fine


def test_unknown_keys_nested_and_in_lists() -> None:
    good = {"title": "t", "count": 1, "inner": {"label": "low", "weight": 1.0}}
    assert parse_object(json.dumps(good), Rich).value is not None
    bad = dict(good, inner={"label": "low", "Weight": 1.0, "weight": 2.0})
    parsed = parse_object(json.dumps(bad), Rich)
    assert parsed.kind is FailureKind.SCHEMA_VIOLATION and "'inner.Weight'" in parsed.error
    bad = dict(good, items=[{"label": "low", "weight": 1.0}, {"label": "mid", "weight": 1.0, "x": 1}])
    assert "'items[1].x'" in parse_object(json.dumps(bad), Rich).error
    # a model that allows extra keys keeps them
    assert parse_object('{"a": 1, "b": 2}', Loose).value == Loose(a=1, b=2)


def test_a_wrong_key_is_never_silently_defaulted() -> None:
    """The ragas failure in miniature: a renamed key with a defaulted field."""

    class Verdict(BaseModel):
        reason: str
        verdict: int = 0

    parsed = parse_object('{"reason": "r", "Verdict": 1}', Verdict)
    assert parsed.value is None and parsed.kind is FailureKind.SCHEMA_VIOLATION


def test_later_candidate_wins_when_an_earlier_one_fails() -> None:
    text = 'Use the {question, answer} format. {"question": "q", "answer": "a", "verdict": 3, "ok": true}'
    assert parse_object(text, QA).value == QA(question="q", answer="a", verdict=3, ok=True)


def test_no_candidate_after_an_unclosed_object() -> None:
    # '{}' inside the cut string must not be taken for an object
    parsed = parse_object('{"title": "a {} b', Rich)
    assert parsed.kind is FailureKind.UNBALANCED


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="text"):
        parse_object(b"{}", QA)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="schema"):
        parse_object("{}", dict)  # type: ignore[type-var]
    with pytest.raises(TypeError, match="schema"):
        format_instructions(QA(question="q", answer="a", verdict=1, ok=True))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="defects"):
        inject_defects(QA(question="q", answer="a", verdict=1, ok=True), ["typo"])
    with pytest.raises(TypeError, match="defects"):
        inject_defects(QA(question="q", answer="a", verdict=1, ok=True), "fence")
    with pytest.raises(TypeError, match="obj"):
        inject_defects([1, 2], [])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN"):
        inject_defects({"x": math.nan}, [])


def test_prompts() -> None:
    fi = format_instructions(QA)
    schema = json.loads(fi.split("JSON Schema:\n", 1)[1])
    assert schema["additionalProperties"] is False and set(schema["required"]) == set(QA.model_fields)
    again = reask_prompt("Make a QA pair.", "{bad", "question: Field required")
    assert again.startswith("Make a QA pair.") and "{bad" in again and "question: Field required" in again


def test_closed_schema_reaches_nested_models_and_respects_extra_allow() -> None:
    closed = closed_json_schema(Rich)
    assert closed["additionalProperties"] is False
    assert closed["$defs"]["Inner"]["additionalProperties"] is False
    assert closed_json_schema(Loose)["additionalProperties"] is True


# ---------------------------------------------------------------- the faulty generator


OBJECTS = [QA(question=f"q{i} {{x}} it's", answer=f"a{i}", verdict=i, ok=i % 2 == 0) for i in range(7)]


def test_defect_rates_follow_the_given_probabilities() -> None:
    """Each defect is drawn independently with its probability: frequencies over
    4,000 attempts lie within 4.5 binomial standard errors (fixed seed)."""
    rates = {"fence": 0.1, "preamble": 0.5, "trailing_comma": 0.3, "truncation": 0.05, "wrong_keys": 0.2}
    gen = FaultyGenerator(OBJECTS, rates, seed=3)
    m = 4000
    seen = dict.fromkeys(rates, 0)
    for i in range(m):
        for d in gen.emission("p", QA, 11, i, i % 2).defects:
            seen[d] += 1
    for d, p in rates.items():
        assert abs(seen[d] / m - p) <= 4.5 * math.sqrt(p * (1 - p) / m), (d, seen[d] / m)


def test_faulty_generator_replays_and_recovers() -> None:
    rates = dict.fromkeys(DEFECTS, 0.25)
    gen = FaultyGenerator(OBJECTS, rates, seed=1, max_reasks=1)
    result = gen.generate("Make a QA pair.", QA, n=300, seed=5)
    # every object is the one the sample was asked to emit (never another, never empty)
    for obj, i in zip(result.objects, result.indices):
        assert obj == gen.emission("Make a QA pair.", QA, 5, i).object
    # every failure is the emission the replay says, of the kind its defects imply
    for f in result.failures:
        em = gen.emission("Make a QA pair.", QA, 5, f.sample, f.attempt)
        assert f.raw == em.text
        if "truncation" in em.defects:
            assert f.kind is FailureKind.UNBALANCED
        else:
            assert "wrong_keys" in em.defects and f.kind is FailureKind.SCHEMA_VIOLATION
    # a sample is lost exactly when both of its attempts carry an unrecoverable defect
    bad = {"truncation", "wrong_keys"}
    for i in range(300):
        lost = all(bad & set(gen.emission("Make a QA pair.", QA, 5, i, a).defects) for a in (0, 1))
        assert (i not in result.indices) == lost
    counts = result.counts
    assert counts.requested == 300 and counts.produced == len(result.objects)
    assert counts.failures == len(result.failures) and counts.reasked == result.reasked > 0
    assert result.attempts == 300 + sum(1 for f in result.failures if f.attempt == 0)


def test_faulty_generator_is_deterministic_and_pickles() -> None:
    gen = FaultyGenerator(OBJECTS, {"fence": 0.5, "truncation": 0.3}, seed=9)
    a = gen.generate("p", QA, n=20, seed=2)
    b = pickle.loads(pickle.dumps(gen)).generate("p", QA, n=20, seed=2)
    assert a == b
    c = gen.generate("p", QA, n=20, seed=3)
    assert [f.raw for f in a.failures] != [f.raw for f in c.failures] or a.indices != c.indices


def _source(prompt: str, schema: type[BaseModel], seed: int) -> dict[str, object]:
    return {"question": prompt, "answer": str(seed), "verdict": seed % 5, "ok": True}


def test_faulty_generator_callable_source_gets_the_callers_prompt() -> None:
    gen = FaultyGenerator(_source, {"wrong_keys": 0.5}, seed=0)
    result = gen.generate("Why?", QA, n=40, seed=1)
    assert result.reasked > 0
    for obj, i in zip(result.objects, result.indices):
        assert obj.question == "Why?" and obj.answer == str(derive_seed(derive_seed(0, 1), i, 0))


def test_faulty_generator_bad_arguments() -> None:
    with pytest.raises(ValueError, match="objects_source"):
        FaultyGenerator([], {})
    with pytest.raises(TypeError, match="objects_source"):
        FaultyGenerator([1, 2], {})
    with pytest.raises(TypeError, match="objects_source"):
        FaultyGenerator("abc", {})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="defects"):
        FaultyGenerator(OBJECTS, {"typo": 0.1})
    with pytest.raises(ValueError, match="fence"):
        FaultyGenerator(OBJECTS, {"fence": 1.5})
    with pytest.raises(TypeError, match="defects"):
        FaultyGenerator(OBJECTS, ["fence"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed"):
        FaultyGenerator(OBJECTS, {}, seed=-1)
