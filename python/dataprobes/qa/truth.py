"""Ground truth for synthesised QA: documents rendered from a fact world,
every generated answer checked against the fact table, and a scripted
generator that answers the pipeline's prompts from the facts it reads.

- :class:`FactCorpus` renders facts ``(subject, relation, object)`` (words,
  e.g. :meth:`dataprobes.FactWorld.text_facts`) through sentence templates
  (``str.format`` strings with ``{subject}``, ``{relation}``, ``{object}``,
  e.g. :meth:`dataprobes.FactWorld.text_templates`) into documents of a few
  facts each, and records which document states which fact.
- :func:`check_testset` reads each question as a conjunctive query over the
  fact table (docs/math.md, "QA synthesis" > "Ground truth"): the subjects it
  names are anchors, each object it names is a constraint ``(relation,
  object)`` with the nearest relation named before it, and the remaining
  relation is the one asked for. The query's answer set is computed from the
  whole table: the question is *answerable* when the set is non-empty (a
  question that names no subject and no constraint only when it has one
  element), the answer *correct* when it names one element of the set and
  no other entity of its kind (a question whose constraint several subjects
  meet has several valid answers, each correct); the *hop count* is the
  minimal number of documents that together state every supporting fact
  of the answer given (of any valid answer when it is wrong): an exact set
  cover; of several bridge entities leading to the same answer, the
  cheapest. Near-duplicate questions are flagged with
  :func:`dataprobes.metrics.near_duplicates` (MinHash) when it is installed,
  else by exact word-shingle Jaccard.
- :class:`ScriptedFactGenerator` is a deterministic callable
  ``fn(prompt, *, temperature, seed) -> str`` that plays every role of the
  pipeline from the facts stated in the prompt's contexts, so the pipeline
  runs end to end without a model.

Entity and relation names must be single distinct words (case-insensitive),
as a fact world's are.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import check_choice, check_float_in, check_int, check_seed
from .pipeline import TestSet

__all__ = ["FactCorpus", "SampleTruth", "ScriptedFactGenerator", "TruthReport", "check_testset"]

_END = "\n(end of context)"
_WORD = re.compile(r"[^\W_]+|<\w+>", re.UNICODE)


def _tokens(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


@dataclass(frozen=True)
class _Query:
    anchors: tuple[int, ...]
    constraints: tuple[tuple[int, int], ...]  # (relation, object)
    targets: tuple[int, ...]


class FactCorpus:
    """Facts rendered into documents.

    Args:
        facts: ``(subject, relation, object)`` word triples, distinct
            ``(subject, relation)`` pairs.
        templates: sentence templates with ``{subject}``, ``{relation}`` and
            ``{object}``.
        facts_per_document: facts stated per document (the last may hold fewer).
        order: ``"shuffled"`` (facts in a seeded random order) or
            ``"subject"`` (subjects in a seeded random order, each subject's
            facts together, like encyclopedia entries: a document then holds
            several facts of one subject, and a subject's facts spill over
            into the next document).
        seed: fixes the fact order and each statement's template.

    Attributes: ``documents`` (texts), ``doc_facts`` (fact ids stated in each
    document), ``facts``, ``subjects``/``relations``/``objects`` (names).
    """

    def __init__(
        self,
        facts: Sequence[tuple[str, str, str]],
        templates: Sequence[str],
        *,
        facts_per_document: int = 3,
        order: str = "shuffled",
        seed: int = 0,
    ) -> None:
        if isinstance(facts, (str, bytes)) or not isinstance(facts, Sequence):
            raise TypeError(
                f"facts must be a sequence of (subject, relation, object) triples, got {type(facts).__name__}"
            )
        triples = []
        for i, f in enumerate(facts):
            if not (isinstance(f, (tuple, list)) and len(f) == 3 and all(isinstance(w, str) for w in f)):
                raise TypeError(f"facts[{i}] must be a (subject, relation, object) triple of str")
            if any(len(_tokens(w)) != 1 or _tokens(w)[0] != w.lower() for w in f):
                raise ValueError(f"facts[{i}]: names must be single words, got {tuple(f)}")
            triples.append((f[0], f[1], f[2]))
        if not triples:
            raise ValueError("facts is empty: pass at least one fact")
        if isinstance(templates, (str, bytes)) or not isinstance(templates, Sequence) or not templates:
            raise TypeError("templates must be a non-empty sequence of str.format templates")
        for i, t in enumerate(templates):
            if not isinstance(t, str):
                raise TypeError(f"templates[{i}] must be a str, got {type(t).__name__}")
            if any(f"{{{k}}}" not in t for k in ("subject", "relation", "object")):
                raise ValueError(f"templates[{i}] must contain {{subject}}, {{relation}} and {{object}}")
        k = check_int("facts_per_document", facts_per_document, 1)
        how = check_choice("order", order, ("shuffled", "subject"))
        sd = check_seed("seed", seed)
        self.facts = triples
        self.subjects = sorted({s for s, _, _ in triples})
        self.relations = sorted({r for _, r, _ in triples})
        self.objects = sorted({o for _, _, o in triples})
        kinds: dict[str, tuple[str, int]] = {}
        for kind, names in (("s", self.subjects), ("r", self.relations), ("o", self.objects)):
            for j, w in enumerate(names):
                if w.lower() in kinds and kinds[w.lower()] != (kind, j):
                    raise ValueError(f"facts: the word {w!r} names two things; names must be distinct")
                kinds[w.lower()] = (kind, j)
        self._kind = kinds
        self._sid = {w: j for j, w in enumerate(self.subjects)}
        self._rid = {w: j for j, w in enumerate(self.relations)}
        self._oid = {w: j for j, w in enumerate(self.objects)}
        self.table = np.array([[self._sid[s], self._rid[r], self._oid[o]] for s, r, o in triples], dtype=np.int64)
        if len({(s, r) for s, r, _ in self.table.tolist()}) != len(triples):
            raise ValueError("facts must be distinct (subject, relation) pairs")
        rng = np.random.default_rng([sd, 0xFAC7])
        perm = rng.permutation(len(triples))
        tpl = rng.integers(0, len(templates), len(triples))
        if how == "subject":
            rank = rng.permutation(len(self.subjects))
            perm = np.array(sorted(range(len(triples)), key=lambda f: (rank[self.table[f, 0]], self.table[f, 1])))
        self.templates = list(templates)
        self.documents: list[str] = []
        self.doc_facts: list[list[int]] = []
        for start in range(0, len(triples), k):
            ids = [int(f) for f in perm[start : start + k]]
            sentences = [
                self.templates[int(tpl[f])].format(subject=triples[f][0], relation=triples[f][1], object=triples[f][2])
                + " ."
                for f in ids
            ]
            self.documents.append(" ".join(sentences))
            self.doc_facts.append(sorted(ids))
        self.fact_docs: list[list[int]] = [[] for _ in triples]
        for d, stated in enumerate(self.doc_facts):
            for f_id in stated:
                self.fact_docs[f_id].append(d)

    @classmethod
    def from_world(
        cls, world: Any, *, facts_per_document: int = 3, order: str = "shuffled", seed: int = 0
    ) -> FactCorpus:
        """The corpus of a fact world (anything with ``text_facts()`` and
        ``text_templates()``, such as :class:`dataprobes.FactWorld`)."""
        if not (callable(getattr(world, "text_facts", None)) and callable(getattr(world, "text_templates", None))):
            raise TypeError(
                "world must have text_facts() and text_templates() (a dataprobes.FactWorld), got "
                f"{type(world).__name__}"
            )
        return cls(
            world.text_facts(), world.text_templates(), facts_per_document=facts_per_document, order=order, seed=seed
        )

    # ------------------------------------------------------------ reading
    def mentions(self, text: str) -> list[tuple[str, int]]:
        """The names in ``text`` in order, as ``(kind, id)`` with kind
        ``"s"``, ``"r"`` or ``"o"``."""
        return [self._kind[w] for w in _tokens(text) if w in self._kind]

    def facts_in(self, text: str) -> list[int]:
        """Facts whose subject, relation and object all occur in one sentence
        of ``text`` (sentences end at ``.``, ``?``, ``!`` or a newline)."""
        found: set[int] = set()
        for sentence in re.split(r"[.?!\n]", text):
            m = set(self.mentions(sentence))
            for f, (s, r, o) in enumerate(self.table.tolist()):
                if ("s", s) in m and ("r", r) in m and ("o", o) in m:
                    found.add(f)
        return sorted(found)

    def related(self, i: int) -> list[int]:
        """Documents sharing a subject with document ``i`` (for the
        pipeline's multi-context ``related=``)."""
        subj = {int(self.table[f, 0]) for f in self.doc_facts[i]}
        return [d for d, ids in enumerate(self.doc_facts) if d != i and any(int(self.table[f, 0]) in subj for f in ids)]

    def parse_question(self, text: str, history: Sequence[str] = ()) -> _Query:
        """The conjunctive query a question asks (see the module docstring);
        a follow-up without a subject or constraint takes its anchors from
        ``history``."""
        m = self.mentions(text)
        anchors = tuple(dict.fromkeys(j for k, j in m if k == "s"))
        constraints: list[tuple[int, int]] = []
        used: set[int] = set()
        for pos, (k, j) in enumerate(m):
            if k != "o":
                continue
            rel = next((m[q][1] for q in range(pos - 1, -1, -1) if m[q][0] == "r" and q not in used), None)
            if rel is None:
                continue
            used.add(next(q for q in range(pos - 1, -1, -1) if m[q] == ("r", rel) and q not in used))
            constraints.append((rel, j))
        targets = tuple(dict.fromkeys(j for q, (k, j) in enumerate(m) if k == "r" and q not in used))
        if not anchors and not constraints:
            for h in history:
                prev = self.parse_question(h)
                anchors, constraints = prev.anchors, list(prev.constraints)
        return _Query(anchors, tuple(constraints), targets)

    def resolve(
        self, query: _Query, facts: Sequence[int] | None = None
    ) -> tuple[list[tuple[str, int]], list[list[list[int]]]]:
        """The query's answers (``(kind, id)``) over ``facts`` (default the
        whole table), each with its alternative supports (lists of fact ids:
        two bridge entities may lead to the same answer)."""
        rows = self.table if facts is None else self.table[list(facts)]
        ids = np.arange(len(self.table)) if facts is None else np.asarray(list(facts), dtype=np.int64)
        by_sr: dict[tuple[int, int], tuple[int, int]] = {}
        for f, (s, r, o) in zip(ids.tolist(), rows.tolist(), strict=True):
            by_sr[(s, r)] = (o, f)
        subjects = sorted({s for s, _, _ in rows.tolist()}) if not query.anchors else list(query.anchors)
        answers: dict[tuple[str, int], list[list[int]]] = {}
        if len(query.targets) > 1:
            return [], []
        for s in subjects:
            support = []
            ok = True
            for r, o in query.constraints:
                hit = by_sr.get((s, r))
                if hit is None or hit[0] != o:
                    ok = False
                    break
                support.append(hit[1])
            if not ok:
                continue
            if query.targets:
                hit = by_sr.get((s, query.targets[0]))
                if hit is None:
                    continue
                answers.setdefault(("o", hit[0]), []).append(sorted({*support, hit[1]}))
            elif query.constraints and not query.anchors:
                answers.setdefault(("s", s), []).append(sorted(set(support)))
        return list(answers), list(answers.values())

    def name(self, kind: str, j: int) -> str:
        return {"s": self.subjects, "r": self.relations, "o": self.objects}[kind][j]

    def min_documents(self, facts: Sequence[int]) -> int:
        """The fewest documents that together state every fact in ``facts``
        (exact set cover by increasing size)."""
        need = set(facts)
        if not need:
            return 0
        cand = sorted({d for f in need for d in self.fact_docs[f]})
        for size in range(1, len(need) + 1):
            for combo in itertools.combinations(cand, size):
                if need <= {f for d in combo for f in self.doc_facts[d]}:
                    return size
        return len(need)  # pragma: no cover - every fact is in a document


# ---------------------------------------------------------------------------
# checking a test set


@dataclass(frozen=True)
class SampleTruth:
    """One sample judged against the fact table. ``expected``: the answer
    set's names (every valid answer, sorted); ``num_answers``: how many
    (``len(expected)``); ``supporting_facts``: the facts behind the answer
    given (when correct, else behind the cheapest valid answer); ``hops``:
    minimal supporting documents (0 when unanswerable); ``grounded``: the
    sample's contexts state one of those supports; ``duplicate_of``: the
    first earlier sample with a near-duplicate question, else -1."""

    index: int
    evolution: str
    answerable: bool
    correct: bool
    expected: tuple[str, ...]
    num_answers: int
    supporting_facts: tuple[int, ...]
    hops: int
    grounded: bool
    duplicate_of: int


@dataclass(frozen=True)
class TruthReport:
    """Per-sample :class:`SampleTruth` and the totals: ``accuracy`` (correct
    / samples), ``answerable`` fraction, ``hop_counts`` (hops -> samples,
    answerable ones), ``duplicates``; ``None`` fractions for zero samples."""

    samples: list[SampleTruth]
    accuracy: float | None
    answerable: float | None
    hop_counts: dict[int, int]
    duplicates: int
    dedup_method: str

    def by_evolution(self) -> dict[str, dict[str, Any]]:
        """Accuracy, answerable fraction and hop counts per evolution."""
        out: dict[str, dict[str, Any]] = {}
        for name in sorted({s.evolution for s in self.samples}):
            group = [s for s in self.samples if s.evolution == name]
            out[name] = {
                "samples": len(group),
                "accuracy": sum(s.correct for s in group) / len(group),
                "answerable": sum(s.answerable for s in group) / len(group),
                "hop_counts": dict(sorted(Counter(s.hops for s in group if s.answerable).items())),
            }
        return out


def _shingles(text: str, n: int) -> set[tuple[str, ...]]:
    w = _tokens(text)
    return {tuple(w[i : i + n]) for i in range(max(len(w) - n + 1, 1))}


def _duplicates(questions: list[str], threshold: float, ngram: int) -> tuple[list[int], str]:
    """Each question's first near-duplicate predecessor (-1 if none)."""
    n = len(questions)
    if n == 0:
        return [], "none"
    try:
        from ..metrics import near_duplicates
    except ImportError:
        near_duplicates = None
    if near_duplicates is not None:
        try:
            res = near_duplicates(questions, threshold=threshold, ngram=ngram, shingle="word", progress=False)
        except (AttributeError, ImportError):
            res = None
        if res is not None:
            labels = np.asarray(res.labels).tolist()
            return [int(lab) if lab != i else -1 for i, lab in enumerate(labels)], "minhash"
    sets = [_shingles(q, ngram) for q in questions]
    first = list(range(n))
    for j in range(n):
        for i in range(j):
            union = sets[i] | sets[j]
            if union and len(sets[i] & sets[j]) / len(union) >= threshold:
                first[j] = first[i]
                break
    return [f if f != i else -1 for i, f in enumerate(first)], "jaccard"


def check_testset(
    testset: TestSet | Sequence[dict[str, Any]],
    corpus: FactCorpus,
    *,
    duplicate_threshold: float = 0.8,
    ngram: int = 3,
) -> TruthReport:
    """Judge every sample of ``testset`` (a :class:`TestSet` or its sample
    dicts) against ``corpus``'s fact table (module docstring)."""
    samples = testset.samples if isinstance(testset, TestSet) else testset
    if isinstance(samples, (str, bytes)) or not isinstance(samples, Sequence):
        raise TypeError(f"testset must be a TestSet or a sequence of sample dicts, got {type(testset).__name__}")
    if not isinstance(corpus, FactCorpus):
        raise TypeError(f"corpus must be a FactCorpus, got {type(corpus).__name__}")
    th = check_float_in("duplicate_threshold", duplicate_threshold, 0.0, 1.0, low_open=True)
    ng = check_int("ngram", ngram, 1)
    out: list[SampleTruth] = []
    questions = []
    for k, s in enumerate(samples):
        if not isinstance(s, dict) or not isinstance(s.get("question"), str) or not isinstance(s.get("answer"), str):
            raise TypeError(f"testset sample {k} must be a dict with str 'question' and 'answer'")
        history = list(s.get("history") or [])
        questions.append(" ".join([*history, s["question"]]))
    dup, method = _duplicates(questions, th, ng)
    for k, s in enumerate(samples):
        history = list(s.get("history") or [])
        query = corpus.parse_question(s["question"], history)
        answers, supports = corpus.resolve(query)
        # a question naming no subject and no constraint pins nothing down: answerable only when unique
        answerable = len(answers) >= 1 if (query.anchors or query.constraints) else len(answers) == 1
        said = set(corpus.mentions(s["answer"]))
        # names one valid answer, and no other entity of its kind ("X or Y" is not an answer)
        named = [m for m in said if answers and m[0] == answers[0][0]]
        correct = answerable and len(named) == 1 and named[0] in answers
        stated = set(corpus.facts_in("\n".join(s.get("contexts") or [])))
        # the supports of the answer given (of every valid answer when it is wrong):
        # the fewest documents, then one the contexts state
        pool = [supports[answers.index(named[0])]] if correct else supports if answerable else []
        ranked = sorted(
            (corpus.min_documents(sup), not set(sup) <= stated, tuple(sup)) for sups in pool for sup in sups
        )
        hops, _, support = ranked[0] if ranked else (0, True, ())
        out.append(
            SampleTruth(
                index=int(s.get("index", k)),
                evolution=str(s.get("evolution", "")),
                answerable=answerable,
                correct=bool(correct),
                expected=tuple(sorted(corpus.name(kd, j) for kd, j in answers)),
                num_answers=len(answers),
                supporting_facts=support,
                hops=hops,
                grounded=any(not outside for _, outside, _ in ranked),
                duplicate_of=dup[k],
            )
        )
    m = len(out)
    return TruthReport(
        samples=out,
        accuracy=sum(t.correct for t in out) / m if m else None,
        answerable=sum(t.answerable for t in out) / m if m else None,
        hop_counts=dict(sorted(Counter(t.hops for t in out if t.answerable).items())),
        duplicates=sum(t.duplicate_of >= 0 for t in out),
        dedup_method=method,
    )


# ---------------------------------------------------------------------------
# a scripted generator


def _between(prompt: str, start: str, end: str | None = None) -> str:
    i = prompt.find(start)
    if i < 0:
        return ""
    i += len(start)
    j = prompt.find(end, i) if end else -1
    return prompt[i:] if j < 0 else prompt[i:j]


def _line(prompt: str, key: str) -> str:
    for line in prompt.splitlines():
        if line.startswith(key):
            return line[len(key) :].strip()
    return ""


class ScriptedFactGenerator:
    """A deterministic stand-in for a model: ``fn(prompt, *, temperature,
    seed) -> str`` answers each of the pipeline's prompts (recognised by
    their ``Task:`` line) from the facts stated in the prompt's contexts,
    replying with valid JSON. Choices (which fact to ask about) follow
    ``seed``; ``temperature`` is ignored. Questions:

    - seed: ``What is the <relation> of <subject>?``
    - reasoning / conditional: the subject identified by another of its facts
      in the context (``... of the one whose <r2> is <o2>?``), or an
      ``If <subject>'s <r2> is <o2>, ...`` clause; the seed unchanged when
      the context has no second fact of that subject (the evolution filter
      then rejects it);
    - multi-context: the subject identified by a fact stated in context 2;
    - conversational: ``Tell me about <subject>.`` then ``What is its <relation>?``.

    The chunk critic scores a context 3 when it states a fact, 1 otherwise.
    """

    model = "scripted-facts"

    def __init__(self, corpus: FactCorpus) -> None:
        if not isinstance(corpus, FactCorpus):
            raise TypeError(f"corpus must be a FactCorpus, got {type(corpus).__name__}")
        self.corpus = corpus
        self.calls = 0

    def object(self, prompt: str, schema: Any, seed: int) -> dict[str, Any]:
        """The reply as a dict: an ``objects_source`` for
        :class:`~dataprobes.qa.faults.FaultyGenerator` (``schema`` unused:
        the prompt's task decides the object)."""
        out: dict[str, Any] = json.loads(self(prompt, seed=seed))
        return out

    def __call__(self, prompt: str, *, temperature: float = 0.0, seed: int = 0) -> str:
        self.calls += 1
        task = _line(prompt, "Task:").rstrip(".")
        c = self.corpus
        rng = np.random.default_rng(seed)
        if task == "chunk critic":
            ok = bool(c.facts_in(_between(prompt, "context:\n", _END)))
            v = 3 if ok else 1
            return json.dumps({"clarity": v, "depth": 2 if ok else 1, "structure": v, "relevance": v})
        if task == "seed question":
            facts = c.facts_in(_between(prompt, "context:\n", _END))
            if not facts:
                return json.dumps({"question": "What is this text about?"})
            s, r, _ = c.table[facts[int(rng.integers(len(facts)))]].tolist()
            return json.dumps({"question": f"What is the {c.relations[r]} of {c.subjects[s]}?"})
        if task in ("reasoning rewrite", "conditional rewrite", "multi-context rewrite", "conversational rewrite"):
            seed_q = _line(prompt, "question:")
            q = c.parse_question(seed_q)
            if task == "multi-context rewrite":
                pool = c.facts_in(_between(prompt, "context 2:\n", _END))
            else:
                pool = c.facts_in(_between(prompt, "context:\n", _END))
            if not q.anchors or len(q.targets) != 1:
                return json.dumps({"question": seed_q})
            s, r = q.anchors[0], q.targets[0]
            if task == "conversational rewrite":
                return json.dumps(
                    {
                        "previous_question": f"Tell me about {c.subjects[s]}.",
                        "question": f"What is its {c.relations[r]}?",
                    }
                )
            other = [f for f in pool if c.table[f, 0] == s and c.table[f, 1] != r]
            if not other:
                return json.dumps({"question": seed_q})
            _, r2, o2 = c.table[other[int(rng.integers(len(other)))]].tolist()
            if task == "conditional rewrite":
                text = f"If {c.subjects[s]}'s {c.relations[r2]} is {c.objects[o2]}, what is the {c.relations[r]}?"
            else:
                text = f"What is the {c.relations[r]} of the one whose {c.relations[r2]} is {c.objects[o2]}?"
            return json.dumps({"question": text})
        if task == "question filter":
            lines = _between(prompt, "question: ", "\ncontext:\n").splitlines() or [""]
            stated = c.facts_in(_between(prompt, "\ncontext:\n", _END))
            answers, _ = c.resolve(c.parse_question(lines[-1], lines[:-1]), stated)
            return json.dumps({"feedback": "checked against the context", "verdict": 1 if answers else 0})
        if task == "evolution filter":
            same = _line(prompt, "question 1:") == _line(prompt, "question 2:")
            return json.dumps({"reason": "same" if same else "different", "verdict": 1 if same else 0})
        if task == "answer":
            history = [
                ln[len("previous question:") :].strip()
                for ln in prompt.splitlines()
                if ln.startswith("previous question:")
            ]
            query = c.parse_question(_line(prompt, "question:"), history)
            answers, _ = c.resolve(query, c.facts_in(_between(prompt, "context:\n", _END)))
            if len(answers) != 1:
                return json.dumps({"answer": "", "verdict": 0})
            return json.dumps({"answer": c.name(*answers[0]), "verdict": 1})
        return json.dumps({"error": f"unknown task {task!r}"})
