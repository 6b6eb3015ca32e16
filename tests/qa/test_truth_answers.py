"""Ground truth with several valid answers: on random hand-built worlds where
objects are shared (so a constraint picks several subjects), the answer set,
correctness and hop count of every question form against an independent
brute force over the fact list and over every set of documents."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("pydantic")

from dataprobes.qa.truth import FactCorpus, check_testset  # noqa: E402

SUBJECTS = ["Alpha", "Beta", "Gamma", "Delta", "Epsi"]
RELATIONS = ["capital", "river", "founder"]
OBJECTS = ["Xeno", "Yolo", "Wumo", "Zulu"]


def world(seed: int) -> list[tuple[str, str, str]]:
    rng = np.random.default_rng(seed)
    objects = OBJECTS[: int(rng.integers(2, len(OBJECTS) + 1))]  # few objects: shared by several subjects
    facts = [(s, r, objects[int(rng.integers(len(objects)))]) for s in SUBJECTS for r in RELATIONS]
    keep = rng.random(len(facts)) < 0.8
    return [f for f, k in zip(facts, keep, strict=True) if k] or facts[:1]


def brute(facts, anchor, constraints, target):
    """{answer name: [supporting fact-id sets]} straight from the fact list."""
    out: dict[str, list[set[int]]] = {}
    for s in SUBJECTS if anchor is None else [anchor]:
        support = set()
        for r2, o2 in constraints:
            ids = [i for i, f in enumerate(facts) if f == (s, r2, o2)]
            if not ids:
                break
            support |= set(ids)
        else:
            if target is None:
                if support:
                    out.setdefault(s, []).append(support)
                continue
            for i, (x, r, o) in enumerate(facts):
                if x == s and r == target:
                    out.setdefault(o, []).append(support | {i})
    return out


def cover(corpus, need):
    """Fewest documents stating every fact of ``need``, over every subset of documents."""
    docs = range(len(corpus.documents))
    for size in range(1, len(corpus.documents) + 1):
        for combo in itertools.combinations(docs, size):
            if need <= {f for d in combo for f in corpus.doc_facts[d]}:
                return size
    raise AssertionError("a fact is stated nowhere")


def questions(rng, corpus):
    """Question forms over names the world knows (an unknown word is not read as a name)."""
    subjects, relations, objects = corpus.subjects, corpus.relations, corpus.objects
    s, s2 = (subjects[int(i)] for i in rng.integers(0, len(subjects), 2))
    r, r2, r3 = (relations[int(i) % len(relations)] for i in rng.permutation(3))
    o2, o3 = (objects[int(i)] for i in rng.integers(0, len(objects), 2))
    return [
        (f"What is the {r} of {s}?", s, [], r),
        (f"What is the {r} of the one whose {r2} is {o2}?", None, [(r2, o2)], r),
        (f"What is the {r} of the one whose {r2} is {o2} and whose {r3} is {o3}?", None, [(r2, o2), (r3, o3)], r),
        (f"Which one has {r2} {o2}?", None, [(r2, o2)], None),
        (f"If {s2}'s {r2} is {o2}, what is the {r}?", s2, [(r2, o2)], r),
    ]


@settings(deadline=None)
@given(st.integers(0, 100_000), st.integers(1, 3))
def test_several_valid_answers_are_each_correct(seed, per_doc):
    facts = world(seed)
    corpus = FactCorpus(facts, ["{subject} {relation} {object}"], facts_per_document=per_doc, seed=seed)
    rng = np.random.default_rng(seed + 1)
    samples, wanted = [], []
    for question, anchor, constraints, target in questions(rng, corpus):
        valid = brute(facts, anchor, constraints, target)
        kind = corpus.subjects if target is None else corpus.objects
        wrong = [w for w in kind if w not in valid]
        answers = [(a, True) for a in sorted(valid)] + [(w, False) for w in wrong[:1]]
        if len(valid) >= 2:
            a, b = sorted(valid)[:2]
            answers.append((f"{a} or {b}", False))  # a hedge names two: not an answer
        for text, ok in answers:
            samples.append({"question": question, "answer": f"It is {text}.", "contexts": corpus.documents})
            wanted.append((valid, ok, text))
    report = check_testset(samples, corpus)
    for t, (valid, ok, text) in zip(report.samples, wanted, strict=True):
        assert t.answerable == bool(valid)
        assert t.num_answers == len(valid) and set(t.expected) == set(valid)
        assert t.correct == ok
        pool = valid[text] if ok else [sup for sups in valid.values() for sup in sups]
        assert t.hops == (min(cover(corpus, sup) for sup in pool) if valid else 0)
        if valid:
            assert set(t.supporting_facts) in pool and cover(corpus, set(t.supporting_facts)) == t.hops
            assert t.grounded  # the contexts hold every document
    assert report.answerable == sum(bool(v) for v, _, _ in wanted) / len(wanted)


def test_multi_answer_world_by_hand():
    facts = [
        ("Alpha", "capital", "Xeno"),
        ("Beta", "capital", "Xeno"),
        ("Gamma", "capital", "Xeno"),
        ("Alpha", "river", "Yolo"),
        ("Beta", "river", "Wumo"),
        ("Gamma", "founder", "Zulu"),  # Gamma has no river: not a valid chain
    ]
    c = FactCorpus(facts, ["{subject} {relation} {object}"], facts_per_document=1)
    q = "What is the river of the one whose capital is Xeno?"
    t = check_testset(
        [
            {"question": q, "answer": "Wumo"},
            {"question": q, "answer": "Yolo"},
            {"question": q, "answer": "Zulu"},
            {"question": "Which one has capital Xeno?", "answer": "Gamma"},
            {"question": "What is the river?", "answer": "Yolo"},  # names nothing to pin the answer down
        ],
        c,
    ).samples
    assert [x.num_answers for x in t] == [2, 2, 2, 3, 2]
    assert [x.answerable for x in t] == [True, True, True, True, False]
    assert [x.correct for x in t] == [True, True, False, True, False]
    assert t[0].supporting_facts == (1, 4) and t[1].supporting_facts == (0, 3)
    assert t[0].expected == ("Wumo", "Yolo") and t[3].expected == ("Alpha", "Beta", "Gamma")
