"""Ragas-style question evolutions, critics and filters, as data.

An :class:`Evolution` is a named prompt template with its typed output
schema and the checks its output must pass; the test-set pipeline
(:mod:`dataprobes.qa.pipeline`) runs them through any generator of
:mod:`dataprobes.qa.generate`. The five evolutions follow Ragas' test-set
generator (Ragas v0.1, ``ragas.testset.evolutions``; docs/math.md,
"Knowledge probes (fact worlds)" > "QA synthesis"):

- ``simple``: a question answerable from one chunk (the *seed* question);
- ``reasoning``: the seed rewritten to need several reasoning steps;
- ``conditional``: the seed rewritten with a condition that must hold;
- ``multi_context``: the seed rewritten to need a second, related chunk;
- ``conversational``: the seed split into an opening question and a
  follow-up that refers back to it.

Critics and filters (Ragas v0.1 thresholds, :class:`Thresholds`):

- chunk critic: the chunk is scored 1-3 on clarity, depth, structure and
  relevance; kept when the mean is >= 1.5 (``ChunkScores``);
- question filter: the question must get verdict 1 (answerable from the
  context, clear on its own) (``QuestionVerdict``);
- evolution filter: verdict 1 means the evolved question is *equivalent* to
  its seed (same constraints, depth and breadth): rejected
  (``EvolutionVerdict``);
- answer filter: the answer must have verdict 1 and be non-blank
  (``GeneratedAnswer``).

Each rejection carries a reason code (:data:`REASON_CODES`). The default mix
is Ragas v0.1's ``simple 0.5 / reasoning 0.25 / multi_context 0.25``
(:data:`DEFAULT_DISTRIBUTION`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints, model_validator

__all__ = [
    "ANSWER_TEMPLATE",
    "CHUNK_CRITIC_TEMPLATE",
    "DEFAULT_DISTRIBUTION",
    "EVOLUTIONS",
    "EVOLUTION_FILTER_TEMPLATE",
    "QUESTION_FILTER_TEMPLATE",
    "REASON_CODES",
    "ChunkScores",
    "Conversation",
    "EvolutionVerdict",
    "Evolution",
    "GeneratedAnswer",
    "GeneratedQuestion",
    "QuestionVerdict",
    "Thresholds",
    "check_distribution",
    "evolution_counts",
]

# ---------------------------------------------------------------------------
# output schemas (what each prompt must return). Text fields are stripped and
# must not be blank: an empty or whitespace-only string is a validation
# failure (counted, re-asked), never a sample.

#: A required text field: surrounding whitespace stripped, at least one character left.
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class ChunkScores(BaseModel):
    """Chunk critic: each criterion scored 1 (poor) to 3 (good)."""

    clarity: int = Field(ge=1, le=3)
    depth: int = Field(ge=1, le=3)
    structure: int = Field(ge=1, le=3)
    relevance: int = Field(ge=1, le=3)

    @property
    def score(self) -> float:
        """The mean of the four scores (Ragas keeps a chunk at >= 1.5)."""
        return (self.clarity + self.depth + self.structure + self.relevance) / 4.0


class GeneratedQuestion(BaseModel):
    """A question (seed or evolved)."""

    question: Text


class Conversation(BaseModel):
    """A conversational question: an opening question and a follow-up that
    refers back to it (the follow-up is the sample's question)."""

    previous_question: Text
    question: Text


class QuestionVerdict(BaseModel):
    """Question filter: verdict 1 = clear, self-contained and answerable."""

    feedback: Text
    verdict: int = Field(ge=0, le=1)


class EvolutionVerdict(BaseModel):
    """Evolution filter: verdict 1 = the two questions are equivalent (the
    evolution added nothing, so the evolved question is rejected)."""

    reason: Text
    verdict: int = Field(ge=0, le=1)


class GeneratedAnswer(BaseModel):
    """An answer from the context; verdict 0 = not answerable from it. The
    answer is stripped; blank is allowed only with verdict 0 (the prompt asks
    for an empty answer then)."""

    answer: Annotated[str, StringConstraints(strip_whitespace=True)]
    verdict: int = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _answer_given(self) -> GeneratedAnswer:
        if self.verdict == 1 and not self.answer:
            raise ValueError("answer must not be blank when verdict is 1")
        return self


# ---------------------------------------------------------------------------
# prompt templates (str.format fields: {context}, {context2}, {question},
# {seed_question}, {history}). The first line names the task; every context
# ends with the line "(end of context)".

CHUNK_CRITIC_TEMPLATE = (
    "Task: chunk critic.\n"
    "Score the context from 1 (poor) to 3 (good) on each of: clarity (is the information clear), "
    "depth (is there detail to ask about), structure (is it organised), relevance (is it on one topic). "
    'Answer with JSON only: {{"clarity": int, "depth": int, "structure": int, "relevance": int}}.\n'
    "context:\n{context}\n(end of context)\n"
)

SEED_TEMPLATE = (
    "Task: seed question.\n"
    "Write one question that can be answered fully from the context below, "
    "naming what it asks about (no pronouns without a referent). "
    'Answer with JSON only: {{"question": str}}.\n'
    "context:\n{context}\n(end of context)\n"
)

REASONING_TEMPLATE = (
    "Task: reasoning rewrite.\n"
    "Rewrite the question so that answering it needs several reasoning steps over the context "
    "(for example identify an entity by another of its facts instead of its name). "
    "The answer must stay in the context. "
    'Answer with JSON only: {{"question": str}}.\n'
    "question: {seed_question}\n"
    "context:\n{context}\n(end of context)\n"
)

CONDITIONAL_TEMPLATE = (
    "Task: conditional rewrite.\n"
    "Rewrite the question adding a condition taken from the context that must hold for the answer "
    "(an 'if' or 'given that' clause). "
    'Answer with JSON only: {{"question": str}}.\n'
    "question: {seed_question}\n"
    "context:\n{context}\n(end of context)\n"
)

MULTI_CONTEXT_TEMPLATE = (
    "Task: multi-context rewrite.\n"
    "Rewrite the question so that answering it needs information from both contexts "
    "(context 1 and context 2). "
    'Answer with JSON only: {{"question": str}}.\n'
    "question: {seed_question}\n"
    "context 1:\n{context}\n(end of context)\n"
    "context 2:\n{context2}\n(end of context)\n"
)

CONVERSATIONAL_TEMPLATE = (
    "Task: conversational rewrite.\n"
    "Split the question into an opening question and a follow-up question that refers back to the "
    "opening one (as a user would in a chat). "
    'Answer with JSON only: {{"previous_question": str, "question": str}}.\n'
    "question: {seed_question}\n"
    "context:\n{context}\n(end of context)\n"
)

QUESTION_FILTER_TEMPLATE = (
    "Task: question filter.\n"
    "Is the question clear, specific and answerable from the context? verdict 1 if yes, 0 if not. "
    'Answer with JSON only: {{"feedback": str, "verdict": 0 or 1}}.\n'
    "question: {question}\n"
    "context:\n{context}\n(end of context)\n"
)

EVOLUTION_FILTER_TEMPLATE = (
    "Task: evolution filter.\n"
    "Are the two questions equivalent (same constraints and requirements, same depth and breadth)? "
    "verdict 1 if equivalent, 0 if not. "
    'Answer with JSON only: {{"reason": str, "verdict": 0 or 1}}.\n'
    "question 1: {seed_question}\n"
    "question 2: {question}\n"
)

ANSWER_TEMPLATE = (
    "Task: answer.\n"
    "Answer the question from the context only. verdict 1 if the context answers it, 0 if not "
    "(then leave the answer empty). "
    'Answer with JSON only: {{"answer": str, "verdict": 0 or 1}}.\n'
    "{history}"
    "question: {question}\n"
    "context:\n{context}\n(end of context)\n"
)


# ---------------------------------------------------------------------------
# evolutions

REASON_CODES: dict[str, str] = {
    "generation_failed": "a stage's generator call returned no valid object (failures counted by kind)",
    "chunk_critic": "a chunk's mean critic score was below the threshold",
    "no_related_chunk": "a multi-context evolution found no second chunk",
    "question_filter": "the question filter's verdict was not 1",
    "evolution_filter": "the evolved question was judged equivalent to its seed",
    "answer_filter": "the answer's verdict was not 1, or the answer was blank",
}


@dataclass(frozen=True)
class Thresholds:
    """Critic and filter thresholds (Ragas v0.1 defaults)."""

    chunk_score: float = 1.5
    question_verdict: int = 1
    answer_verdict: int = 1

    def __post_init__(self) -> None:
        v = self.chunk_score
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 1.0 <= float(v) <= 3.0:
            raise ValueError(f"thresholds.chunk_score must be a number in [1, 3] (critic scores are 1-3), got {v!r}")
        for name in ("question_verdict", "answer_verdict"):
            if getattr(self, name) not in (0, 1) or isinstance(getattr(self, name), bool):
                raise ValueError(f"thresholds.{name} must be 0 or 1, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class Evolution:
    """One evolution: ``template`` (a ``str.format`` string; ``None`` for
    ``simple``, whose question is the seed itself), its output ``schema``,
    how many chunks it reads (``num_contexts``) and the ``checks`` its
    output goes through (names in :data:`REASON_CODES`)."""

    name: str
    template: str | None
    schema: type[BaseModel]
    num_contexts: int = 1
    checks: tuple[str, ...] = field(default=("question_filter", "answer_filter"))

    def prompt(self, *, seed_question: str, context: str, context2: str = "") -> str:
        """The evolution prompt (``ValueError`` for ``simple``, which has none)."""
        if self.template is None:
            raise ValueError(f"evolution {self.name!r} has no rewrite prompt (its question is the seed)")
        return self.template.format(seed_question=seed_question, context=context, context2=context2)


_EVOLVED_CHECKS = ("question_filter", "evolution_filter", "answer_filter")

#: The five evolutions by name.
EVOLUTIONS: dict[str, Evolution] = {
    "simple": Evolution("simple", None, GeneratedQuestion),
    "reasoning": Evolution("reasoning", REASONING_TEMPLATE, GeneratedQuestion, checks=_EVOLVED_CHECKS),
    "conditional": Evolution("conditional", CONDITIONAL_TEMPLATE, GeneratedQuestion, checks=_EVOLVED_CHECKS),
    "multi_context": Evolution(
        "multi_context", MULTI_CONTEXT_TEMPLATE, GeneratedQuestion, num_contexts=2, checks=_EVOLVED_CHECKS
    ),
    "conversational": Evolution("conversational", CONVERSATIONAL_TEMPLATE, Conversation, checks=_EVOLVED_CHECKS),
}

#: Ragas v0.1's default mix.
DEFAULT_DISTRIBUTION: dict[str, float] = {"simple": 0.5, "reasoning": 0.25, "multi_context": 0.25}


def check_distribution(distribution: Any) -> dict[str, float]:
    """A mapping from evolution names to non-negative finite weights, not all
    zero, normalised to sum to 1 (``TypeError``/``ValueError`` naming
    ``distribution``)."""
    if not isinstance(distribution, Mapping):
        raise TypeError(
            f"distribution must be a mapping of evolution name to weight, got {type(distribution).__name__}"
        )
    if not distribution:
        raise ValueError("distribution must name at least one evolution")
    out: dict[str, float] = {}
    for name, w in distribution.items():
        if not isinstance(name, str):
            raise TypeError(f"distribution keys must be evolution names (str), got {type(name).__name__}")
        if name not in EVOLUTIONS:
            raise ValueError(f"distribution: unknown evolution {name!r}; known: {sorted(EVOLUTIONS)}")
        if isinstance(w, bool) or not isinstance(w, numbers.Real):
            raise TypeError(f"distribution[{name!r}] must be a number, got {type(w).__name__}")
        v = float(w)
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"distribution[{name!r}] must be finite and >= 0, got {w!r}")
        out[name] = v
    total = sum(out.values())
    if total <= 0:
        raise ValueError("distribution weights must not all be 0")
    return {k: v / total for k, v in out.items() if v > 0}


def evolution_counts(distribution: Mapping[str, float], test_size: int) -> dict[str, int]:
    """How many of ``test_size`` samples each evolution gets: ``round(p n)``
    by largest remainders (ties by name), so the counts sum to ``test_size``."""
    dist = check_distribution(distribution)
    raw = {k: p * test_size for k, p in dist.items()}
    counts = {k: int(math.floor(v)) for k, v in raw.items()}
    left = test_size - sum(counts.values())
    for k in sorted(raw, key=lambda k: (-(raw[k] - counts[k]), k))[:left]:
        counts[k] += 1
    return counts
