"""The test-set pipeline end to end: a scripted generator that answers from
the fact table, fault injection, resume, cache, outputs, ground truth and
bad input."""

from __future__ import annotations

import itertools
import json
import pickle
import re
import warnings
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("pydantic")
pytest.importorskip("json_repair")

from dataprobes.qa.evolve import EVOLUTIONS  # noqa: E402
from dataprobes.qa.faults import FaultyGenerator  # noqa: E402
from dataprobes.qa.generate import GeneratorUnavailableError  # noqa: E402
from dataprobes.qa.pipeline import TestSet, generate_testset  # noqa: E402
from dataprobes.qa.truth import FactCorpus, ScriptedFactGenerator, check_testset  # noqa: E402

ALL = {name: 1.0 for name in EVOLUTIONS}
SUBJECTS = ["Bakoli", "Derumi", "Fesato", "Gimolu", "Kanebi", "Lotura", "Mavesi", "Nodaru"]
RELATIONS = ["capital", "founder", "river"]
OBJECTS = ["Mopari", "Nerasu", "Pilote", "Rudaki", "Sofena", "Tavuri", "Vezomi", "Zalupe", "Botiro", "Dalemu"]
TEMPLATES = ["the {relation} of {subject} is {object}", "{subject} has {object} as {relation}"]


def make_facts(seed=0, subjects=SUBJECTS, relations=RELATIONS, objects=OBJECTS):
    rng = np.random.default_rng(seed)
    return [(s, r, objects[int(rng.integers(len(objects)))]) for s in subjects for r in relations]


@pytest.fixture(scope="module")
def corpus():
    return FactCorpus(make_facts(), TEMPLATES, facts_per_document=4, seed=1)


def run(corpus, gen=None, n=24, **kw):
    kw.setdefault("distribution", ALL)
    kw.setdefault("related", corpus.related)
    kw.setdefault("progress", False)
    return generate_testset(corpus.documents, gen or ScriptedFactGenerator(corpus), n, **kw)


def brute_answers(facts, question):
    """The answer set of the scripted question forms, by brute force over the triples."""
    table = {(s, r): o for s, r, o in facts}
    if m := re.fullmatch(r"What is the (\w+) of (\w+)\?", question):
        return {table[(m[2], m[1])]} if (m[2], m[1]) in table else set()
    if m := re.fullmatch(r"What is the (\w+) of the one whose (\w+) is (\w+)\?", question):
        subj = {s for (s, r), o in table.items() if r == m[2] and o == m[3]}
        return {table[(s, m[1])] for s in subj if (s, m[1]) in table}
    if m := re.fullmatch(r"If (\w+)'s (\w+) is (\w+), what is the (\w+)\?", question):
        return {table[(m[1], m[4])]} if table.get((m[1], m[2])) == m[3] else set()
    raise AssertionError(f"unexpected question form {question!r}")


# ---------------------------------------------------------------------------
# end to end with the scripted generator


def test_end_to_end_answers_match_the_fact_table(corpus):
    ts = run(corpus, n=40)
    assert ts.num_samples > 20
    truth = check_testset(ts, corpus)
    facts = corpus.facts
    for s, t in zip(ts.samples, truth.samples, strict=True):
        if s["evolution"] == "conversational":
            m = re.fullmatch(r"Tell me about (\w+)\.", s["history"][0])
            r = re.fullmatch(r"What is its (\w+)\?", s["question"])
            expected = {o for (x, y, o) in facts if x == m[1] and y == r[1]}
        else:
            expected = brute_answers(facts, s["question"])
        assert t.answerable == (len(expected) >= 1) and t.num_answers == len(expected)
        if t.answerable:
            assert set(t.expected) == expected
            assert t.correct == (s["answer"] in expected)
            assert t.grounded
        if s["evolution"] in ("simple", "conversational", "conditional"):
            # the scripted model reads one chunk that states the fact: always right
            assert t.correct and s["answer"] in expected
    assert {s["evolution"] for s in ts.samples} >= {"simple", "conditional", "multi_context", "conversational"}
    # multi-context questions bridge two documents
    hops = Counter(t.hops for t in truth.samples if t.answerable and t.evolution == "multi_context")
    assert hops and set(hops) <= {1, 2} and hops[2] >= 1
    assert truth.accuracy == sum(t.correct for t in truth.samples) / ts.num_samples


def test_provenance_is_complete_and_counts_add_up(corpus):
    ts = run(corpus, n=30)
    assert ts.num_samples + len(ts.exhausted) == ts.test_size == 30
    assert ts.num_samples + sum(ts.rejections.values()) == ts.tries
    assert ts.tries == sum(s["tries"] for s in ts.samples) + 5 * len(ts.exhausted)
    assert ts.yield_fraction == ts.num_samples / 30
    for s in ts.samples:
        evo = EVOLUTIONS[s["evolution"]]
        assert s["contexts"] == [corpus.documents[c] for c in s["chunk_ids"]]
        assert len(s["chunk_ids"]) == evo.num_contexts
        assert all(x >= 1.5 for x in s["scores"]["chunk"])
        assert s["scores"]["question_filter"] == 1 and s["scores"]["answer"] == 1
        stages = [p["stage"] for p in s["prompts"]]
        want = ["chunk_critic"] * evo.num_contexts + ["seed_question", "question_filter"]
        if evo.template is not None:
            want += [evo.name, "question_filter", "evolution_filter"]
            assert s["scores"]["evolution_filter"] == 0
        assert stages == [*want, "answer"]
        assert s["tries"] == len(s["rejections"]) + 1 and s["generator_attempts"] >= len(stages) - evo.num_contexts
        assert s["model"] == "scripted-facts" and s["seed"] == 0
        assert bool(s["history"]) == (s["evolution"] == "conversational")
    rep = ts.report()
    assert rep["accepted"] == ts.num_samples and sum(rep["by_evolution"].values()) == ts.num_samples


def test_deterministic_for_a_seed(corpus):
    a, b = run(corpus, n=16, seed=3), run(corpus, n=16, seed=3)
    assert a.samples == b.samples and a.report() == b.report()
    c = run(corpus, n=16, seed=4)
    assert [s["question"] for s in c.samples] != [s["question"] for s in a.samples]


def test_evolution_mix_follows_the_distribution(corpus):
    ts = run(corpus, n=20, distribution={"simple": 3, "conditional": 1})
    mix = Counter(s["evolution"] for s in ts.samples) + Counter(
        ["?"] * len(ts.exhausted)
    )  # exhausted samples keep their evolution
    assert sum(mix.values()) == 20
    assert Counter(s["evolution"] for s in ts.samples)["simple"] == 15  # every simple sample is accepted


def test_outputs_dataset_and_jsonl(corpus, tmp_path):
    pytest.importorskip("datasets")
    ts = run(corpus, n=12)
    ds = ts.to_dataset()
    assert ds.num_rows == ts.num_samples
    assert ds["question"] == [s["question"] for s in ts.samples]
    assert ds["contexts"] == [s["contexts"] for s in ts.samples]
    ts.to_jsonl(tmp_path / "out.jsonl")
    back = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert back == ts.samples


# ---------------------------------------------------------------------------
# resume and cache


class Interrupting:
    """Delegates to ``inner`` and raises after ``limit`` calls."""

    model = "scripted-facts"

    def __init__(self, inner, limit):
        self.inner, self.limit, self.calls = inner, limit, 0

    def generate(self, *args, **kwargs):
        self.calls += 1
        if self.calls > self.limit:
            raise KeyboardInterrupt
        return self.inner.generate(*args, **kwargs)


def faulty(corpus, defects=None, seed=0):
    return FaultyGenerator(ScriptedFactGenerator(corpus).object, defects or {}, seed, model="scripted-facts")


def test_resume_after_interruption_gives_the_same_bytes(corpus, tmp_path):
    defects = {"truncation": 0.25, "fence": 0.5}  # failed critic calls are retried later: state to resume
    whole = tmp_path / "whole.jsonl"
    ref = run(corpus, faulty(corpus, defects), n=20, output=whole)
    assert ref.failures
    part = tmp_path / "part.jsonl"
    for limit in (37, 150):  # interrupted twice, at different places
        with pytest.raises(KeyboardInterrupt):
            run(corpus, Interrupting(faulty(corpus, defects), limit), n=20, output=part)
        assert (tmp_path / "part.jsonl.progress.json").exists()
    kept = part.read_text().splitlines()
    assert 0 < len(kept) < ref.num_samples
    resumed = run(corpus, faulty(corpus, defects), n=20, output=part)
    assert part.read_bytes() == whole.read_bytes()
    assert resumed.samples == ref.samples and resumed.report() == ref.report()
    # a finished run is read back without a single generator call
    again = Interrupting(faulty(corpus), 0)
    assert run(corpus, again, n=20, output=part).samples == ref.samples and again.calls == 0


def test_output_with_another_configuration_is_refused(corpus, tmp_path):
    out = tmp_path / "out.jsonl"
    run(corpus, n=4, output=out)
    with pytest.raises(ValueError, match="another configuration"):
        run(corpus, n=4, output=out, seed=9)
    other = tmp_path / "foreign.jsonl"
    other.write_text('{"a": 1}\n')
    with pytest.raises(ValueError, match="no progress file"):
        run(corpus, n=4, output=other)


def test_cache_replays_every_call(corpus, tmp_path):
    ref = run(corpus, faulty(corpus, {"truncation": 0.3}), n=12, cache_dir=tmp_path / "cache")
    files = list((tmp_path / "cache").glob("*.json"))
    assert files and not list((tmp_path / "cache").glob("*.part"))
    stray = tmp_path / "cache" / ("0" * 64 + ".json")
    stray.write_text("not json")  # a foreign file is a miss, not an error
    replay = Interrupting(faulty(corpus), 0)  # any call would raise
    again = run(corpus, replay, n=12, cache_dir=tmp_path / "cache")
    assert again.samples == ref.samples and again.report() == ref.report()


# ---------------------------------------------------------------------------
# failures


class Counting:
    """Delegates and sums the failure kinds of every result."""

    model = "scripted-facts"

    def __init__(self, inner):
        self.inner, self.kinds, self.calls, self.reasked = inner, Counter(), 0, 0

    def generate(self, *args, **kwargs):
        self.calls += 1
        res = self.inner.generate(*args, **kwargs)
        self.kinds.update(str(f.kind) for f in res.failures)
        self.reasked += res.reasked
        return res


def test_recoverable_defects_lose_nothing(corpus):
    clean = run(corpus, faulty(corpus), n=16)
    recoverable = dict.fromkeys(["fence", "preamble", "trailing_comma", "single_quotes", "string_verdict"], 1.0)
    noisy = run(corpus, faulty(corpus, recoverable), n=16)
    assert noisy.samples == clean.samples and noisy.failures == {}
    assert clean.recovered == {} and noisy.recovered["repaired"] > 0  # trailing commas, single quotes


def test_failures_are_counted_by_kind_and_nothing_is_lost(corpus):
    gen = Counting(faulty(corpus, {"truncation": 0.3, "wrong_keys": 0.2, "fence": 0.5}, seed=2))
    ts = run(corpus, gen, n=24)
    assert ts.failures == dict(gen.kinds) and set(ts.failures) == {"unbalanced", "schema_violation"}
    assert ts.recovered["reasked"] == gen.reasked > 0
    assert ts.rejections.get("generation_failed", 0) > 0
    assert ts.num_samples + sum(ts.rejections.values()) == ts.tries
    assert ts.num_samples + len(ts.exhausted) == 24
    for s in ts.samples:  # what was accepted is still right
        assert s["answer"] and s["question"]
    truth = check_testset(ts, corpus)
    assert all(t.correct for t in truth.samples if t.evolution in ("simple", "conditional", "conversational"))


def test_all_generations_failing_gives_zero_samples_and_a_report(corpus, tmp_path):
    with pytest.warns(UserWarning, match="no sample was accepted"):
        ts = run(corpus, faulty(corpus, {"truncation": 1.0}), n=6, max_tries=2, output=tmp_path / "o.jsonl")
    assert ts.num_samples == 0 and ts.exhausted == list(range(6)) and ts.yield_fraction == 0.0
    assert ts.tries == 12 and ts.rejections == {"generation_failed": 12}
    assert ts.failures["unbalanced"] > 0
    assert (tmp_path / "o.jsonl").read_bytes() == b""
    truth = check_testset(ts, corpus)
    assert truth.accuracy is None and truth.hop_counts == {} and truth.samples == []
    pytest.importorskip("datasets")
    assert ts.to_dataset().num_rows == 0


def test_a_dead_back_end_raises_and_keeps_what_was_done(corpus, tmp_path):
    scripted = ScriptedFactGenerator(corpus)
    calls = itertools.count()

    def flaky(prompt, *, temperature, seed):
        if next(calls) >= 60:
            raise ConnectionError("server down")
        return scripted(prompt, temperature=temperature, seed=seed)

    flaky.model = "scripted-facts"
    out = tmp_path / "o.jsonl"
    with pytest.raises(GeneratorUnavailableError):
        run(corpus, flaky, n=12, output=out)
    done = out.read_text().splitlines()
    assert done
    full = run(corpus, scripted, n=12, output=out)
    assert [json.loads(x) for x in done] == full.samples[: len(done)]
    assert full.samples == run(corpus, ScriptedFactGenerator(corpus), n=12).samples


def test_chunks_failing_the_critic_are_never_used():
    facts = make_facts()
    c = FactCorpus(facts, TEMPLATES, facts_per_document=3, seed=0)
    docs = c.documents + ["just some words without any facts at all"] * 5
    ts = generate_testset(docs, ScriptedFactGenerator(c), 20, distribution={"simple": 1}, progress=False)
    assert ts.rejections.get("chunk_critic", 0) > 0
    assert all(s["chunk_ids"][0] < len(c.documents) for s in ts.samples)


# ---------------------------------------------------------------------------
# ground truth


def test_truth_on_hand_built_questions():
    facts = [
        ("Alpha", "capital", "Xeno"),
        ("Alpha", "river", "Yolo"),
        ("Beta", "capital", "Xeno"),
        ("Beta", "river", "Wumo"),
        ("Gamma", "river", "Zulu"),
    ]
    c = FactCorpus(facts, ["{subject} {relation} {object}"], facts_per_document=1, seed=0)
    samples = [
        {"question": "What is the river of Alpha?", "answer": "Yolo"},
        {"question": "What is the river of Alpha?", "answer": "Zulu"},
        {"question": "What is the river of the one whose capital is Xeno?", "answer": "Yolo"},  # two answers
        {"question": "What is the capital of the one whose river is Yolo?", "answer": "It is Xeno."},
        {"question": "Which one has river Zulu?", "answer": "Gamma"},
        {"question": "What is its capital?", "answer": "Xeno", "history": ["Tell me about Beta."]},
        {"question": "What is the capital of Gamma?", "answer": "Xeno"},
        {"question": "What is the river of Alpha?", "answer": "Yolo or Zulu"},  # hedged: wrong
        {"question": "What is the river of Alpha?", "answer": "The river of Alpha is Yolo."},
    ]
    t = check_testset(samples, c).samples
    assert [x.answerable for x in t] == [True, True, True, True, True, True, False, True, True]
    assert [x.correct for x in t] == [True, False, True, True, True, True, False, False, True]
    assert [x.hops for x in t] == [1, 1, 2, 2, 1, 1, 0, 1, 1]  # one fact per document
    assert [x.num_answers for x in t] == [1, 1, 2, 1, 1, 1, 0, 1, 1]
    assert t[2].expected == ("Wumo", "Yolo") and t[2].supporting_facts == (0, 1)  # Alpha's two facts
    assert t[3].expected == ("Xeno",) and t[4].expected == ("Gamma",)
    assert [x.duplicate_of for x in t][:2] == [-1, 0]
    two_per_doc = FactCorpus(facts[:2], ["{subject} {relation} {object}"], facts_per_document=2)
    assert check_testset(samples[3:4], two_per_doc).samples[0].hops == 1


@given(st.integers(0, 10_000), st.integers(1, 4), st.integers(1, 4), st.sampled_from(["shuffled", "subject"]))
def test_min_documents_is_the_exact_set_cover(seed, per_doc, k, order):
    rng = np.random.default_rng(seed)
    facts = make_facts(seed, SUBJECTS[:4], RELATIONS)
    c = FactCorpus(facts, TEMPLATES, facts_per_document=per_doc, order=order, seed=seed)
    assert sorted(f for ids in c.doc_facts for f in ids) == list(range(len(facts)))  # each fact stated once
    if order == "subject":  # a subject's facts are contiguous across documents
        for subj in {s for s, _, _ in facts}:
            docs = sorted({d for d, ids in enumerate(c.doc_facts) for f in ids if c.facts[f][0] == subj})
            assert docs == list(range(docs[0], docs[-1] + 1))
            assert len(docs) <= -(-len(RELATIONS) // per_doc) + 1
    need = set(rng.choice(len(facts), size=min(k, len(facts)), replace=False).tolist())
    best = min(
        bin(mask).count("1")
        for mask in range(1, 1 << len(c.documents))
        if need <= {f for d in range(len(c.documents)) if mask >> d & 1 for f in c.doc_facts[d]}
    )
    assert c.min_documents(sorted(need)) == best
    # every document states exactly its facts
    for d, ids in enumerate(c.doc_facts):
        assert c.facts_in(c.documents[d]) == ids


def test_fact_world_corpus():
    import dataprobes as dp

    if not hasattr(dp, "FactWorld"):
        pytest.skip("dataprobes.FactWorld is not installed")
    world = dp.FactWorld(24, 3, 2, dp.MarkovChain.random(16, seed=0), num_objects=40, seed=0)
    c = FactCorpus.from_world(world, facts_per_document=2)
    assert sorted(c.facts) == sorted(world.text_facts())
    ts = generate_testset(c.documents, ScriptedFactGenerator(c), 12, related=c.related, progress=False)
    truth = check_testset(ts, c)
    assert ts.num_samples > 0 and all(t.correct for t in truth.samples if t.evolution == "simple")


# ---------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"corpus": []}, ValueError, "corpus is empty"),
        ({"corpus": ["  ", "\n"]}, ValueError, "blank"),
        ({"corpus": "one string"}, TypeError, "corpus"),
        ({"corpus": ["ok", 3]}, TypeError, r"corpus\[1\]"),
        ({"test_size": 0}, ValueError, "test_size"),
        ({"test_size": 2.0}, TypeError, "test_size"),
        ({"distribution": {"simple": -1}}, ValueError, "distribution"),
        ({"distribution": {"nope": 1}}, ValueError, "unknown evolution"),
        ({"max_tries": 0}, ValueError, "max_tries"),
        ({"seed": -1}, ValueError, "seed"),
        ({"temperature": float("nan")}, ValueError, "temperature"),
        ({"generator": 42}, TypeError, "generator"),
        ({"thresholds": {"chunk_score": 2}}, TypeError, "thresholds"),
        ({"related": 3}, TypeError, "related"),
        ({"progress": "yes"}, TypeError, "progress"),
        ({"output": 5}, TypeError, "output"),
        ({"output": "/nonexistent-dir-of-dataprobes/x.jsonl"}, ValueError, "output"),
    ],
)
def test_bad_input(corpus, kwargs, exc, match):
    args = {"corpus": corpus.documents, "generator": ScriptedFactGenerator(corpus), "test_size": 3, "progress": False}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        generate_testset(args.pop("corpus"), args.pop("generator"), args.pop("test_size"), **args)


def test_bad_fact_input():
    with pytest.raises(ValueError, match="empty"):
        FactCorpus([], TEMPLATES)
    with pytest.raises(ValueError, match="single words"):
        FactCorpus([("Two words", "r", "o")], TEMPLATES)
    with pytest.raises(ValueError, match="distinct"):
        FactCorpus([("A", "r", "o"), ("A", "r", "p")], TEMPLATES)
    with pytest.raises(ValueError, match="two things"):
        FactCorpus([("A", "r", "B"), ("B", "r", "o")], TEMPLATES)
    with pytest.raises(ValueError, match=r"\{object\}"):
        FactCorpus([("A", "r", "o")], ["{subject} {relation}"])
    with pytest.raises(ValueError, match="order"):
        FactCorpus([("A", "r", "o")], TEMPLATES, order="random")
    with pytest.raises(TypeError, match="world"):
        FactCorpus.from_world(object())
    c = FactCorpus([("A", "r", "o")], TEMPLATES)
    with pytest.raises(TypeError, match="testset"):
        check_testset("nope", c)
    with pytest.raises(TypeError, match="corpus"):
        check_testset([], object())
    with pytest.raises(ValueError, match="duplicate_threshold"):
        check_testset([], c, duplicate_threshold=0.0)


def test_generators_pickle(corpus):
    g = pickle.loads(pickle.dumps(ScriptedFactGenerator(corpus)))
    f = pickle.loads(pickle.dumps(faulty(corpus, {"fence": 0.5})))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert run(corpus, g, n=4).samples == run(corpus, ScriptedFactGenerator(corpus), n=4).samples
        assert run(corpus, f, n=4).samples == run(corpus, faulty(corpus, {"fence": 0.5}), n=4).samples
    assert isinstance(run(corpus, g, n=1, distribution={"simple": 1}), TestSet)


def test_near_duplicate_flags_match_exact_jaccard():
    from dataprobes.qa.truth import _duplicates

    qs = [
        "What is the river of Alpha?",
        "What is the capital of Beta, the large one?",
        "what is the river of alpha ?",
        "Tell me something else entirely about nothing",
        "What is the capital of Beta, the large one?",
    ]
    flags, method = _duplicates(qs, 0.8, 3)
    assert flags == [-1, -1, 0, -1, 1]
    assert method in ("minhash", "jaccard")
    assert _duplicates([], 0.8, 3) == ([], "none")


# ---------------------------------------------------------------------------
# the local Hugging Face back end (constrained decoding, random weights)


def test_end_to_end_with_a_local_constrained_model(corpus):
    """A 1-layer GPT-2 with random weights under llguidance: whatever it says
    is a valid object or a counted failure (only ``truncated``, at the token
    budget); the counts add up and every accepted sample is complete."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("llguidance")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from dataprobes.qa import HFGenerator

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([*corpus.documents, '{"question":"What?","verdict":1,"answer":"A"}'] * 3, trainer)
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=len(hf_tok),
        n_positions=2048,
        n_embd=16,
        n_layer=1,
        n_head=2,
        eos_token_id=hf_tok.eos_token_id,
        bos_token_id=hf_tok.eos_token_id,
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    gen = HFGenerator(model, hf_tok, max_new_tokens=24, name="tiny-random", format_instructions=False, max_reasks=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a random model may get nothing accepted
        ts = generate_testset(
            corpus.documents[:3], gen, 4, distribution=ALL, max_tries=2, temperature=1.0, seed=1, progress=False
        )
    assert set(ts.failures) <= {"truncated"}
    assert ts.num_samples + sum(ts.rejections.values()) == ts.tries
    assert ts.num_samples + len(ts.exhausted) == 4
    assert set(ts.rejections) <= {
        "generation_failed",
        "chunk_critic",
        "question_filter",
        "evolution_filter",
        "answer_filter",
        "no_related_chunk",
    }
    for s in ts.samples:
        assert s["question"] and s["answer"] and s["model"] == "tiny-random"


@settings(max_examples=max(3, settings.default.max_examples // 5))
@given(st.floats(0.0, 0.6), st.integers(0, 2**32), st.integers(1, 3))
def test_counts_add_up_for_any_defect_rate(corpus, rate, seed, max_tries):
    gen = Counting(faulty(corpus, dict.fromkeys(["truncation", "wrong_keys", "fence", "trailing_comma"], rate), seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a high rate may leave nothing accepted
        ts = run(corpus, gen, n=6, seed=seed % 1000, max_tries=max_tries)
    assert ts.num_samples + sum(ts.rejections.values()) == ts.tries <= 6 * max_tries
    assert ts.num_samples + len(ts.exhausted) == 6
    assert ts.failures == dict(gen.kinds)
    assert ts.recovered.get("reasked", 0) == gen.reasked
