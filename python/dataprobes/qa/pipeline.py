"""Test-set generation: Ragas-style evolutions over a corpus of chunks, with
critics, filters, retries, a disk cache, provenance and resumable output.

:func:`generate_testset` builds ``test_size`` samples. Sample ``i`` gets its
evolution from a seeded assignment with the counts of
:func:`~dataprobes.qa.evolve.evolution_counts`, then makes up to
``max_tries`` tries; try ``t`` draws its chunk(s) from a generator seeded by
``(seed, i, t)`` and runs the stages

    chunk critic (per chunk) -> seed question -> question filter
    [-> evolution -> question filter -> evolution filter] -> answer -> answer filter

A try ends either accepted or rejected with exactly one reason code
(:data:`~dataprobes.qa.evolve.REASON_CODES`), so
``accepted + sum(rejections) == tries`` always holds; a sample whose tries
are all rejected is *exhausted*. Generator failures (parse, repair,
validation, ... as the back end names them) are counted by kind; nothing is
turned into an empty value and no ratio divides by zero. Every generator
call's seed is derived from ``(seed, i, t, stage)`` (the chunk critic's from
``(seed, chunk, k)``, ``k`` its failed calls so far: a chunk is scored once
per run, a failed critic call retried by the next try that draws it), so the result is the same for any interruption and
resumption. docs/math.md, "Knowledge probes (fact worlds)" > "QA synthesis".
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError
from tqdm import tqdm

from .._durable import write_atomic, write_json_atomic
from .._validation import check_bool, check_float_in, check_int, check_positive_int, check_seed
from .evolve import (
    ANSWER_TEMPLATE,
    CHUNK_CRITIC_TEMPLATE,
    DEFAULT_DISTRIBUTION,
    EVOLUTION_FILTER_TEMPLATE,
    EVOLUTIONS,
    QUESTION_FILTER_TEMPLATE,
    SEED_TEMPLATE,
    ChunkScores,
    Conversation,
    EvolutionVerdict,
    GeneratedAnswer,
    GeneratedQuestion,
    QuestionVerdict,
    Thresholds,
    check_distribution,
    evolution_counts,
)

__all__ = ["GenerationCache", "TestSet", "generate_testset", "word_overlap_related"]

_FORMAT = "dataprobes.qa.testset/1"


# ---------------------------------------------------------------------------
# generators


def _model_name(generator: Any, model: str | None) -> str:
    if model is not None:
        return model
    for attr in ("model", "model_name", "name"):
        v = getattr(generator, attr, None)
        if isinstance(v, str) and v:
            return v
    return getattr(generator, "__qualname__", None) or type(generator).__qualname__


def _as_generator(generator: Any, model: str) -> Any:
    gen = getattr(generator, "generate", None)
    if callable(gen):
        return generator
    if callable(generator):
        from .generate import CallableGenerator

        return CallableGenerator(generator, model=model)
    raise TypeError(
        "generator must have a generate(prompt, schema, *, n, temperature, seed) method or be a callable "
        f"fn(prompt, *, temperature, seed) -> str, got {type(generator).__name__}"
    )


def _kind(failure: Any) -> str:
    k = getattr(failure, "kind", None)
    if isinstance(k, Enum):
        k = k.value
    return str(k) if k is not None else type(failure).__name__


# ---------------------------------------------------------------------------
# cache


class GenerationCache:
    """Generator results on disk, one JSON file per call keyed by the
    SHA-256 of ``(prompt, model, seed, schema, temperature)`` (the schema by
    its full JSON Schema, so two models with one class name never share an
    entry); written atomically, so a crash never leaves a torn entry. Failed
    calls are cached too (with their failure kinds): a re-run replays them
    exactly. An entry that does not read back (not JSON, not an object: a
    hand-edited or foreign file) is a miss, counted in ``corrupted`` (with
    ``corrupted_paths``) and overwritten atomically when the call is made
    again."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        if not isinstance(directory, (str, os.PathLike)):
            raise TypeError(f"cache_dir must be a path, got {type(directory).__name__}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        self.corrupted = 0
        self.corrupted_paths: list[Path] = []

    @staticmethod
    def key(prompt: str, model: str, seed: int, schema: type[BaseModel], temperature: float) -> str:
        """SHA-256 (hex) of the canonical JSON (sorted keys, no whitespace)
        of ``[prompt, model, seed, schema.model_json_schema(), temperature]``:
        the same in every process and on every platform."""
        blob = json.dumps(
            [prompt, model, seed, schema.model_json_schema(), temperature],
            ensure_ascii=False,
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.directory / f"{key}.json"
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            self.misses += 1
            return None
        except (UnicodeDecodeError, json.JSONDecodeError):
            value = None  # not a file this cache wrote (or edited by hand): a miss, rewritten on put
        if not isinstance(value, dict):
            self.misses += 1
            self.corrupted += 1
            self.corrupted_paths.append(path)
            return None
        self.hits += 1
        return value

    def invalid(self, key: str) -> None:
        """Record that the entry ``get`` just returned for ``key`` did not
        validate against its schema (hand-edited): a corrupted miss."""
        self.hits -= 1
        self.misses += 1
        self.corrupted += 1
        self.corrupted_paths.append(self.directory / f"{key}.json")

    def put(self, key: str, value: dict[str, Any]) -> None:
        write_json_atomic(self.directory / f"{key}.json", value, ensure_ascii=False)


# ---------------------------------------------------------------------------
# chunk relatedness


def _words(text: str) -> frozenset[str]:
    return frozenset("".join(c if c.isalnum() else " " for c in text.lower()).split())


def word_overlap_related(chunks: Sequence[str]) -> Callable[[int], list[int]]:
    """The default relatedness for multi-context evolutions: the chunks whose
    word-set Jaccard similarity to chunk ``i`` is largest (and > 0)."""
    sets = [_words(c) for c in chunks]

    def related(i: int) -> list[int]:
        best, out = 0.0, []
        a = sets[i]
        for j, b in enumerate(sets):
            if j == i or not a or not b:
                continue
            s = len(a & b) / len(a | b)
            if s > best:
                best, out = s, [j]
            elif s == best and s > 0:
                out.append(j)
        return out

    return related


# ---------------------------------------------------------------------------
# result


@dataclass
class TestSet:
    """The outcome of :func:`generate_testset`.

    ``samples``: the accepted samples in index order, each a dict with
    ``index``, ``evolution``, ``question``, ``answer``, ``history`` (earlier
    turns, conversational only), ``seed_question``, ``contexts``,
    ``chunk_ids``, ``scores`` (chunk critic means, filter verdicts),
    ``prompts`` (``[{"stage", "prompt"}]``), ``tries``, ``generator_attempts``,
    ``rejections`` (reason codes of the earlier tries), ``model``, ``seed``.
    ``test_size``: samples attempted; ``exhausted``: indices whose
    ``max_tries`` tries were all rejected; ``rejections``: reason code ->
    tries rejected; ``failures``: generator failure kind -> count over every
    generator call of the run (each chunk is critic-scored once per run;
    ``generator_attempts`` of a sample counts its other calls);
    ``recovered``: objects the generator's parse layer saved, ``"repaired"``
    (``json_repair``) and ``"reasked"`` (obtained by a re-ask);
    ``tries``: all tries made. ``accepted + sum(rejections) == tries``.
    """

    __test__ = False  # not a pytest class

    samples: list[dict[str, Any]]
    test_size: int
    exhausted: list[int]
    rejections: dict[str, int]
    failures: dict[str, int]
    tries: int
    config: dict[str, Any] = field(default_factory=dict)
    recovered: dict[str, int] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return len(self.samples)

    @property
    def yield_fraction(self) -> float:
        """Accepted samples / ``test_size`` (``test_size >= 1``)."""
        return len(self.samples) / self.test_size

    def report(self) -> dict[str, Any]:
        """Counts as plain data (for logs and JSON)."""
        return {
            "test_size": self.test_size,
            "accepted": len(self.samples),
            "exhausted": len(self.exhausted),
            "tries": self.tries,
            "rejections": dict(sorted(self.rejections.items())),
            "failures": dict(sorted(self.failures.items())),
            "recovered": dict(sorted(self.recovered.items())),
            "by_evolution": dict(sorted(Counter(s["evolution"] for s in self.samples).items())),
        }

    def to_dataset(self) -> Any:
        """The samples as a Hugging Face ``datasets.Dataset`` (needs ``datasets``)."""
        import datasets

        if not self.samples:
            return datasets.Dataset.from_dict({k: [] for k in _COLUMNS})
        return datasets.Dataset.from_list(self.samples)

    def to_jsonl(self, path: str | os.PathLike[str]) -> None:
        """Write the samples as JSON Lines, atomically."""
        write_atomic(path, _jsonl(self.samples))


_COLUMNS = (
    "index",
    "evolution",
    "question",
    "answer",
    "history",
    "seed_question",
    "contexts",
    "chunk_ids",
    "scores",
    "prompts",
    "tries",
    "generator_attempts",
    "rejections",
    "model",
    "seed",
)


def _jsonl(samples: Sequence[Mapping[str, Any]]) -> bytes:
    return "".join(json.dumps(s, ensure_ascii=False, sort_keys=True) + "\n" for s in samples).encode()


# ---------------------------------------------------------------------------
# the pipeline


def _derive(*parts: Any) -> int:
    """A 63-bit seed from the parts (stable across runs and platforms)."""
    h = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") >> 1


class _Reject(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def _cached_call(hit: dict[str, Any], schema: type[BaseModel]) -> tuple[BaseModel | None, dict[str, int], int]:
    """A cache entry as ``(object or None, failure kinds, attempts)``; a
    ``ValueError`` (or ``ValidationError``) when it is not an entry this
    cache writes: ``objects`` a list, ``failures`` non-negative int counts
    by kind, ``attempts`` an int >= 1."""
    objs = hit.get("objects") or []
    failures = hit.get("failures") or {}
    attempts = hit.get("attempts") or 1
    if not isinstance(objs, list) or not isinstance(failures, dict):
        raise ValueError("objects must be a list and failures an object")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in failures.values()):
        raise ValueError("failure counts must be ints >= 0")
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
        raise ValueError("attempts must be an int >= 1")
    cached = schema.model_validate(objs[0]) if objs else None
    return cached, dict(failures), attempts


class _Runner:
    def __init__(
        self,
        chunks: list[str],
        generator: Any,
        model: str,
        seed: int,
        temperature: float,
        thresholds: Thresholds,
        cache: GenerationCache | None,
        related: Callable[[int], Sequence[int]],
    ) -> None:
        self.chunks = chunks
        self.generator = generator
        self.model = model
        self.seed = seed
        self.temperature = temperature
        self.thresholds = thresholds
        self.cache = cache
        self.related = related
        # chunk -> {"score", "failures", "attempts", "calls"}: each chunk is
        # scored once per run (kept in the progress file on resume)
        self.critic_memo: dict[int, dict[str, Any]] = {}

    def call(self, prompt: str, schema: type[BaseModel], seed: int) -> tuple[BaseModel | None, dict[str, int], int]:
        """One generator call: (object or None, failure kinds, attempts).
        Objects the parse layer had to repair or re-ask for are counted
        under ``"recovered:repaired"`` / ``"recovered:reasked"`` (split off
        into :attr:`TestSet.recovered`: not failures, the object is kept)."""
        key = GenerationCache.key(prompt, self.model, seed, schema, self.temperature)
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is not None:
            try:
                return _cached_call(hit, schema)
            except (ValidationError, TypeError, ValueError):
                assert self.cache is not None
                self.cache.invalid(key)  # edited by hand: generate again, overwrite the entry
        res = self.generator.generate(prompt, schema, n=1, temperature=self.temperature, seed=seed)
        objects = list(getattr(res, "objects", []) or [])
        kinds = Counter(_kind(f) for f in (getattr(res, "failures", []) or []))
        for what in ("repaired", "reasked"):
            if int(getattr(res, what, 0) or 0):
                kinds[f"recovered:{what}"] += int(getattr(res, what))
        attempts = int(getattr(res, "attempts", 1) or 1)
        obj = objects[0] if objects else None
        if obj is not None and not isinstance(obj, schema):
            obj = schema.model_validate(obj.model_dump() if isinstance(obj, BaseModel) else obj)
        if self.cache is not None:
            value: dict[str, Any] = {
                "objects": [obj.model_dump()] if obj is not None else [],
                "failures": dict(kinds),
                "attempts": attempts,
            }
            self.cache.put(key, value)
        return obj, dict(kinds), attempts

    def run_try(self, index: int, t: int, evolution: str, rec: dict[str, Any]) -> dict[str, Any]:
        """One try; returns the sample or raises :class:`_Reject`. Failure
        kinds and attempts accumulate in ``rec``."""
        evo = EVOLUTIONS[evolution]
        rng = np.random.default_rng([self.seed, index, t])
        prompts: list[dict[str, str]] = []

        def stage(name: str, prompt: str, schema: type[BaseModel], seed: int) -> Any:
            prompts.append({"stage": name, "prompt": prompt})
            obj, kinds, attempts = self.call(prompt, schema, seed)
            rec["failures"].update(kinds)
            rec["attempts"] += attempts
            if obj is None:
                raise _Reject("generation_failed")
            return obj

        def critic(c: int) -> float:
            prompt = CHUNK_CRITIC_TEMPLATE.format(context=self.chunks[c])
            prompts.append({"stage": "chunk_critic", "prompt": prompt})
            memo = self.critic_memo.setdefault(c, {"score": None, "failures": {}, "attempts": 0, "calls": 0})
            if memo["score"] is None:
                # scored once when it works; a failed call is retried by the
                # next try that draws the chunk, with a fresh seed
                k = memo["calls"]
                obj, kinds, attempts = self.call(prompt, ChunkScores, _derive(self.seed, "critic", c, k))
                memo["score"] = obj.score if isinstance(obj, ChunkScores) else None
                memo["failures"] = dict(Counter(memo["failures"]) + Counter(kinds))
                memo["attempts"] += attempts
                memo["calls"] = k + 1
            score = memo["score"]
            if score is None:
                raise _Reject("generation_failed")
            if score < self.thresholds.chunk_score:
                raise _Reject("chunk_critic")
            return score

        def sd(name: Any) -> int:
            return _derive(self.seed, index, t, name)

        ids = [int(rng.integers(len(self.chunks)))]
        scores: dict[str, Any] = {"chunk": [], "question_filter": None, "evolution_filter": None, "answer": None}
        scores["chunk"].append(critic(ids[0]))
        if evo.num_contexts == 2:
            cand = sorted({int(j) for j in self.related(ids[0]) if int(j) != ids[0]})
            if not cand:
                raise _Reject("no_related_chunk")
            ids.append(cand[int(rng.integers(len(cand)))])
            scores["chunk"].append(critic(ids[1]))
        contexts = [self.chunks[c] for c in ids]
        joined = "\n\n".join(contexts)
        seed_q = stage("seed_question", SEED_TEMPLATE.format(context=contexts[0]), GeneratedQuestion, sd("seed"))
        seed_question = seed_q.question.strip()

        def question_filter(question: str, context: str) -> None:
            v = stage(
                "question_filter",
                QUESTION_FILTER_TEMPLATE.format(question=question, context=context),
                QuestionVerdict,
                sd(("qfilter", question)),
            )
            scores["question_filter"] = int(v.verdict)
            if v.verdict != self.thresholds.question_verdict:
                raise _Reject("question_filter")

        question_filter(seed_question, contexts[0])
        question, history = seed_question, []
        if evo.template is not None:
            out = stage(
                evolution,
                evo.prompt(seed_question=seed_question, context=contexts[0], context2=contexts[-1]),
                evo.schema,
                sd("evolve"),
            )
            question = out.question.strip()
            if isinstance(out, Conversation):
                history = [out.previous_question.strip()]
            shown = "\n".join([*history, question])
            question_filter(shown, joined)
            v = stage(
                "evolution_filter",
                EVOLUTION_FILTER_TEMPLATE.format(seed_question=seed_question, question=shown),
                EvolutionVerdict,
                sd("efilter"),
            )
            scores["evolution_filter"] = int(v.verdict)
            if v.verdict == 1:
                raise _Reject("evolution_filter")
        hist = "".join(f"previous question: {h}\n" for h in history)
        ans = stage(
            "answer",
            ANSWER_TEMPLATE.format(history=hist, question=question, context=joined),
            GeneratedAnswer,
            sd("answer"),
        )
        scores["answer"] = int(ans.verdict)
        if ans.verdict != self.thresholds.answer_verdict or not ans.answer.strip():
            raise _Reject("answer_filter")
        return {
            "index": index,
            "evolution": evolution,
            "question": question,
            "answer": ans.answer.strip(),
            "history": history,
            "seed_question": seed_question,
            "contexts": contexts,
            "chunk_ids": ids,
            "scores": scores,
            "prompts": prompts,
            "model": self.model,
            "seed": self.seed,
        }


def _check_corpus(corpus: Any) -> list[str]:
    if isinstance(corpus, (str, bytes)) or not isinstance(corpus, Sequence):
        raise TypeError(f"corpus must be a sequence of text chunks (str), got {type(corpus).__name__}")
    chunks = []
    for i, c in enumerate(corpus):
        if not isinstance(c, str):
            raise TypeError(f"corpus[{i}] must be a str, got {type(c).__name__}")
        chunks.append(c)
    if not chunks:
        raise ValueError("corpus is empty: pass at least one non-blank text chunk")
    if not any(c.strip() for c in chunks):
        raise ValueError("corpus holds only blank chunks: pass at least one non-blank text chunk")
    return chunks


def _assignment(distribution: dict[str, float], test_size: int, seed: int) -> list[str]:
    counts = evolution_counts(distribution, test_size)
    names = [name for name in sorted(counts) for _ in range(counts[name])]
    order = np.random.default_rng([seed, 0x45564F]).permutation(test_size)
    return [names[int(k)] for k in order]


def _load_progress(
    output: Path, config: dict[str, Any]
) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
    """(records, samples, critic scores) of a previous run at ``output`` with the same config."""
    state = output.with_name(output.name + ".progress.json")
    if not state.exists():
        if output.exists() and output.stat().st_size > 0:
            raise ValueError(f"output {str(output)!r} exists but has no progress file: refusing to overwrite it")
        return {}, {}, {}
    afresh = f"or pass another output path (or move {str(output)!r} and {str(state)!r} aside) to start afresh"
    try:
        prog = json.loads(state.read_text(encoding="utf-8"))
        if not isinstance(prog, dict):
            raise ValueError(f"a JSON {type(prog).__name__}, not an object")
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(
            f"progress file {str(state)!r} is corrupted ({exc}); it records which samples of {str(output)!r} are "
            f"done, and neither file was changed: restore it, {afresh}"
        ) from None
    if prog.get("format") != _FORMAT or prog.get("config") != config:
        raise ValueError(
            f"output {str(output)!r} holds a run with another configuration (corpus, generator model, seed, "
            "test_size, distribution, max_tries, thresholds or temperature): pass another output path"
        )
    try:
        records = {int(k): dict(v) for k, v in prog["records"].items()}
        critic = {int(k): dict(v) for k, v in prog.get("critic", {}).items()}
        for r in records.values():
            r.update(
                accepted=bool(r["accepted"]),
                rejections=list(r["rejections"]),
                failures=dict(r["failures"]),
                attempts=int(r["attempts"]),
            )
        for c in critic.values():
            c.update(
                score=None if c["score"] is None else float(c["score"]),
                failures=dict(c["failures"]),
                attempts=int(c["attempts"]),
                calls=int(c["calls"]),
            )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(
            f"progress file {str(state)!r} is corrupted (bad entries: {type(exc).__name__}: {exc}); neither file "
            f"was changed: restore it, {afresh}"
        ) from None
    samples: dict[int, dict[str, Any]] = {}
    torn = ""
    if output.exists():
        try:
            text = output.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"output {str(output)!r} is not UTF-8 text ({exc}): restore it, {afresh}") from None
        lines = text.split("\n")
        for no, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                s = json.loads(line)
                index = int(s["index"])
            except (ValueError, KeyError, TypeError) as exc:
                if no == len(lines):  # the last line, without its newline: torn (by an edit; writes are atomic)
                    torn = f"; its last line ({no}) is incomplete ({type(exc).__name__})"
                    continue
                raise ValueError(
                    f"output {str(output)!r}: line {no} is not a sample ({type(exc).__name__}: {exc}); neither file "
                    f"was changed: restore the line, {afresh}"
                ) from None
            samples[index] = s
    missing = sorted(i for i, r in records.items() if r["accepted"] and i not in samples)
    if missing or torn:
        warnings.warn(
            f"output {str(output)!r}: samples {missing} recorded as accepted are missing from it{torn}; "
            "they are generated again (same seeds) and the file is rewritten",
            UserWarning,
            stacklevel=3,
        )
    for i in missing:
        del records[i]
    return records, samples, critic


def generate_testset(
    corpus: Sequence[str],
    generator: Any,
    test_size: int,
    *,
    distribution: Mapping[str, float] | None = None,
    seed: int = 0,
    max_tries: int = 5,
    thresholds: Thresholds | None = None,
    temperature: float = 0.0,
    model: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    output: str | os.PathLike[str] | None = None,
    related: Callable[[int], Sequence[int]] | None = None,
    progress: bool = True,
) -> TestSet:
    """Synthesise a QA test set from ``corpus`` with Ragas-style evolutions
    (Ragas v0.1 test-set generator; docs/math.md, "QA synthesis").

    Args:
        corpus: the text chunks (nodes); chunk them beforehand.
        generator: a :mod:`dataprobes.qa.generate` generator (anything with
            ``generate(prompt, schema, *, n, temperature, seed)`` returning
            ``objects`` and ``failures``) or a callable
            ``fn(prompt, *, temperature, seed) -> str``.
        test_size: samples to attempt (>= 1).
        distribution: evolution name -> weight (default
            :data:`~dataprobes.qa.evolve.DEFAULT_DISTRIBUTION`).
        seed: fixes the evolution assignment, chunk sampling and every
            generator call's seed.
        max_tries: tries per sample before it is exhausted (Ragas: 5).
        thresholds: critic and filter thresholds (Ragas v0.1 defaults).
        model: the model name in cache keys and provenance (default the
            generator's ``model``/``name`` attribute, else its type).
        cache_dir: a directory caching every generator call by (prompt,
            model, seed, schema, temperature); re-runs and resumed runs
            replay it. An entry that does not read back is a miss: made
            again and rewritten, with a ``UserWarning`` giving the count.
        output: a JSON Lines file of the accepted samples (rewritten
            atomically after each sample, with ``<output>.progress.json``):
            re-running with the same arguments keeps the completed samples
            and continues; the final file equals an uninterrupted run's.
            A corrupted progress file, or a line of the output that is not a
            sample, is a ``ValueError`` naming the file (nothing is written:
            restore it, or pass another output to start afresh); a torn
            last line (no newline) or a sample missing from the output is
            generated again, with a ``UserWarning``.
        related: ``related(i)`` -> candidate chunk indices for the second
            context of a multi-context sample (default
            :func:`word_overlap_related`).
        progress: show a progress bar.

    Returns a :class:`TestSet`. A corpus with no chunks raises
    ``ValueError``; if no sample is accepted the result has zero samples and
    its failure report, and a ``UserWarning`` says so.
    """
    chunks = _check_corpus(corpus)
    n = check_positive_int("test_size", test_size)
    dist = check_distribution(DEFAULT_DISTRIBUTION if distribution is None else distribution)
    sd = check_seed("seed", seed)
    tries_max = check_int("max_tries", max_tries, 1, 1000)
    temp = check_float_in("temperature", temperature, 0.0)
    th = Thresholds() if thresholds is None else thresholds
    if not isinstance(th, Thresholds):
        raise TypeError(f"thresholds must be a Thresholds, got {type(th).__name__}")
    if model is not None and not isinstance(model, str):
        raise TypeError(f"model must be a str or None, got {type(model).__name__}")
    if related is not None and not callable(related):
        raise TypeError(f"related must be a callable related(i) -> chunk indices, got {type(related).__name__}")
    show = check_bool("progress", progress)
    name = _model_name(generator, model)
    gen = _as_generator(generator, name)
    if output is not None and not isinstance(output, (str, os.PathLike)):
        raise TypeError(f"output must be a path or None, got {type(output).__name__}")
    if output is not None and not Path(output).parent.is_dir():
        raise ValueError(f"output: the directory of {str(output)!r} does not exist")
    cache = GenerationCache(cache_dir) if cache_dir is not None else None
    config = {
        "corpus_sha256": hashlib.sha256(json.dumps(chunks, ensure_ascii=False).encode()).hexdigest(),
        "model": name,
        "seed": sd,
        "test_size": n,
        "distribution": dist,
        "max_tries": tries_max,
        "thresholds": [th.chunk_score, th.question_verdict, th.answer_verdict],
        "temperature": temp,
    }
    out_path = Path(output) if output is not None else None
    records: dict[int, dict[str, Any]] = {}
    critic: dict[int, dict[str, Any]] = {}
    samples: dict[int, dict[str, Any]] = {}
    if out_path is not None:
        records, samples, critic = _load_progress(out_path, config)
    runner = _Runner(chunks, gen, name, sd, temp, th, cache, related or word_overlap_related(chunks))
    runner.critic_memo.update(critic)
    plan = _assignment(dist, n, sd)
    todo = [i for i in range(n) if i not in records]
    for i in tqdm(todo, desc="test set", disable=not show or not todo):
        rec: dict[str, Any] = {"failures": Counter(), "attempts": 0}
        rejected: list[str] = []
        sample = None
        for t in range(tries_max):
            try:
                sample = runner.run_try(i, t, plan[i], rec)
            except _Reject as r:
                rejected.append(r.code)
                continue
            break
        record = {
            "evolution": plan[i],
            "accepted": sample is not None,
            "rejections": rejected,
            "failures": dict(rec["failures"]),
            "attempts": rec["attempts"],
        }
        if sample is not None:
            sample["tries"] = len(rejected) + 1
            sample["generator_attempts"] = rec["attempts"]
            sample["rejections"] = rejected
            samples[i] = sample
        records[i] = record
        if out_path is not None:
            if sample is not None:
                write_atomic(out_path, _jsonl([samples[k] for k in sorted(samples)]))
            state = {
                "format": _FORMAT,
                "config": config,
                "records": {str(k): records[k] for k in sorted(records)},
                "critic": {str(k): v for k, v in sorted(runner.critic_memo.items())},
            }
            write_json_atomic(out_path.with_name(out_path.name + ".progress.json"), state, ensure_ascii=False)
    if out_path is not None:
        final = _jsonl([samples[k] for k in sorted(samples)])
        if not out_path.exists() or out_path.read_bytes() != final:  # new, or repaired on resume
            write_atomic(out_path, final)
    rej: Counter[str] = Counter()
    fails: Counter[str] = Counter()
    tries = 0
    for scored in runner.critic_memo.values():
        fails.update(scored["failures"])
    for rec_i in records.values():
        rej.update(rec_i["rejections"])
        fails.update(rec_i["failures"])
        tries += len(rec_i["rejections"]) + (1 if rec_i["accepted"] else 0)
    recovered = {k.split(":", 1)[1]: v for k, v in fails.items() if k.startswith("recovered:")}
    result = TestSet(
        samples=[samples[k] for k in sorted(samples)],
        test_size=n,
        exhausted=sorted(k for k, r in records.items() if not r["accepted"]),
        rejections=dict(rej),
        failures={k: v for k, v in fails.items() if not k.startswith("recovered:")},
        tries=tries,
        config=config,
        recovered=recovered,
    )
    if cache is not None and cache.corrupted:
        warnings.warn(
            f"generate_testset: {cache.corrupted} cache entries in {str(cache.directory)!r} did not read back "
            "(not JSON, or not an object of their schema) and were generated again and rewritten",
            UserWarning,
            stacklevel=2,
        )
    if not result.samples:
        warnings.warn(
            f"generate_testset: no sample was accepted out of {n} ({tries} tries); "
            f"rejections {dict(rej)}, generator failures {result.failures}",
            UserWarning,
            stacklevel=2,
        )
    return result
