"""Evolutions as data: schemas, templates, the distribution and its counts."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("pydantic")

from pydantic import ValidationError  # noqa: E402

from dataprobes.qa.evolve import (  # noqa: E402
    DEFAULT_DISTRIBUTION,
    EVOLUTIONS,
    REASON_CODES,
    ChunkScores,
    Conversation,
    GeneratedAnswer,
    QuestionVerdict,
    Thresholds,
    check_distribution,
    evolution_counts,
)


def test_the_five_evolutions_and_ragas_defaults():
    assert set(EVOLUTIONS) == {"simple", "reasoning", "conditional", "multi_context", "conversational"}
    assert DEFAULT_DISTRIBUTION == {"simple": 0.5, "reasoning": 0.25, "multi_context": 0.25}
    assert EVOLUTIONS["multi_context"].num_contexts == 2
    assert all(e.num_contexts == 1 for k, e in EVOLUTIONS.items() if k != "multi_context")
    assert EVOLUTIONS["conversational"].schema is Conversation
    for e in EVOLUTIONS.values():
        assert set(e.checks) <= set(REASON_CODES)
        assert "answer_filter" in e.checks and "question_filter" in e.checks
        assert ("evolution_filter" in e.checks) == (e.name != "simple")


def test_prompts_fill_fields_and_keep_braces_in_context():
    ctx = 'a {strange} context with "quotes"'
    p = EVOLUTIONS["multi_context"].prompt(seed_question="Q?", context=ctx, context2="second")
    assert p.startswith("Task: multi-context rewrite.")
    assert ctx in p and "second" in p and "question: Q?" in p
    assert p.count("(end of context)") == 2
    with pytest.raises(ValueError, match="simple"):
        EVOLUTIONS["simple"].prompt(seed_question="Q?", context=ctx)


def test_chunk_scores_mean_and_range():
    s = ChunkScores(clarity=3, depth=1, structure=2, relevance=2)
    assert s.score == 2.0
    assert ChunkScores(clarity=1, depth=2, structure=1, relevance=2).score == 1.5  # kept at the threshold
    with pytest.raises(ValidationError):
        ChunkScores(clarity=4, depth=1, structure=1, relevance=1)
    with pytest.raises(ValidationError):
        ChunkScores(clarity=0, depth=1, structure=1, relevance=1)


def test_verdicts_accept_string_digits_and_refuse_other_values():
    assert QuestionVerdict.model_validate({"feedback": "ok", "verdict": "1"}).verdict == 1
    assert GeneratedAnswer.model_validate({"answer": "x", "verdict": 0}).verdict == 0
    for bad in (2, -1, "yes"):
        with pytest.raises(ValidationError):
            QuestionVerdict.model_validate({"feedback": "ok", "verdict": bad})


def test_check_distribution_normalises_and_drops_zero_weights():
    assert check_distribution({"simple": 2, "reasoning": 1, "conditional": 1, "conversational": 0}) == {
        "simple": 0.5,
        "reasoning": 0.25,
        "conditional": 0.25,
    }


@pytest.mark.parametrize(
    ("dist", "exc", "match"),
    [
        ([("simple", 1.0)], TypeError, "mapping"),
        ({}, ValueError, "at least one"),
        ({"complex": 1.0}, ValueError, "unknown evolution"),
        ({1: 1.0}, TypeError, "names"),
        ({"simple": "1"}, TypeError, "number"),
        ({"simple": True}, TypeError, "number"),
        ({"simple": -0.5}, ValueError, ">= 0"),
        ({"simple": math.nan}, ValueError, "finite"),
        ({"simple": math.inf}, ValueError, "finite"),
        ({"simple": 0.0, "reasoning": 0}, ValueError, "all be 0"),
    ],
)
def test_bad_distribution(dist, exc, match):
    with pytest.raises(exc, match=match):
        check_distribution(dist)


@given(
    st.dictionaries(st.sampled_from(sorted(EVOLUTIONS)), st.floats(0.0, 10.0), min_size=1).filter(
        lambda d: sum(d.values()) > 0
    ),
    st.integers(0, 500),
)
def test_evolution_counts_are_largest_remainder_rounding(dist, n):
    counts = evolution_counts(dist, n)
    assert sum(counts.values()) == n
    norm = check_distribution(dist)
    assert set(counts) == set(norm)
    for k, c in counts.items():
        exact = norm[k] * n
        assert math.floor(exact) <= c <= math.floor(exact) + 1  # floor or floor + 1
    # the remainder goes to the largest fractional parts
    bumped = [k for k in counts if counts[k] > math.floor(norm[k] * n)]
    kept = [k for k in counts if counts[k] == math.floor(norm[k] * n)]
    if bumped and kept:
        frac = {k: norm[k] * n - math.floor(norm[k] * n) for k in counts}
        assert min(frac[k] for k in bumped) >= max(frac[k] for k in kept) - 1e-9


def test_default_counts_match_ragas_proportions():
    assert evolution_counts(DEFAULT_DISTRIBUTION, 100) == {"simple": 50, "reasoning": 25, "multi_context": 25}
    assert sum(evolution_counts(DEFAULT_DISTRIBUTION, 7).values()) == 7


def test_thresholds_are_checked():
    assert Thresholds() == Thresholds(1.5, 1, 1)
    for bad in (
        {"chunk_score": 0.5},
        {"chunk_score": math.nan},
        {"chunk_score": "2"},
        {"question_verdict": 2},
        {"answer_verdict": True},
    ):
        with pytest.raises(ValueError, match="thresholds"):
            Thresholds(**bad)
