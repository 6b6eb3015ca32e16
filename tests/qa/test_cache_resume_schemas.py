"""Regressions of the QA pipeline's durability and typing: cache keys by the
full JSON Schema, corrupted cache entries / progress files / output lines,
and blank strings in the built-in schemas."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import warnings

import pytest

pydantic = pytest.importorskip("pydantic")
pytest.importorskip("json_repair")

from dataprobes.qa.evolve import (  # noqa: E402
    EVOLUTIONS,
    ChunkScores,
    Conversation,
    EvolutionVerdict,
    GeneratedAnswer,
    GeneratedQuestion,
    QuestionVerdict,
)
from dataprobes.qa.faults import FaultyGenerator  # noqa: E402
from dataprobes.qa.generate import CallableGenerator  # noqa: E402
from dataprobes.qa.pipeline import GenerationCache, generate_testset  # noqa: E402
from dataprobes.qa.truth import FactCorpus, ScriptedFactGenerator  # noqa: E402

ALL = {name: 1.0 for name in EVOLUTIONS}
FACTS = [
    (s, r, o)
    for k, s in enumerate(["Bakoli", "Derumi", "Fesato", "Gimolu", "Kanebi"])
    for j, (r, o) in enumerate(zip(["capital", "founder", "river"], ["Mopari", "Nerasu", "Pilote"], strict=True))
    if (k + j) % 4 != 3
]
TEMPLATES = ["the {relation} of {subject} is {object}", "{subject} has {object} as {relation}"]


@pytest.fixture(scope="module")
def corpus():
    return FactCorpus(FACTS, TEMPLATES, facts_per_document=3, seed=1)


def run(corpus, gen=None, n=10, **kw):
    kw.setdefault("distribution", ALL)
    kw.setdefault("related", corpus.related)
    kw.setdefault("progress", False)
    return generate_testset(corpus.documents, gen or ScriptedFactGenerator(corpus), n, **kw)


class Refusing:
    """A generator that must not be called."""

    model = "scripted-facts"

    def generate(self, *args, **kwargs):
        raise AssertionError("the generator was called")


# ---------------------------------------------------------------------------
# 1. cache keys


def _two_models_named_answer():
    first = pydantic.create_model("Answer", text=(str, ...))
    second = pydantic.create_model("Answer", text=(str, ...), verdict=(int, ...))
    return first, second


def test_cache_key_separates_schemas_with_one_class_name():
    a, b = _two_models_named_answer()
    assert a.__name__ == b.__name__
    assert GenerationCache.key("p", "m", 1, a, 0.0) != GenerationCache.key("p", "m", 1, b, 0.0)
    # the key is the SHA-256 of the canonical JSON of (prompt, model, seed, JSON Schema, temperature)
    blob = json.dumps(
        ["p", "m", 1, a.model_json_schema(), 0.0], ensure_ascii=False, sort_keys=True, separators=(",", ":")
    )
    assert GenerationCache.key("p", "m", 1, a, 0.0) == hashlib.sha256(blob.encode()).hexdigest()
    assert GenerationCache.key("p", "m", 2, a, 0.0) != GenerationCache.key("p", "m", 1, a, 0.0)
    assert GenerationCache.key("p", "m", 1, a, 0.5) != GenerationCache.key("p", "m", 1, a, 0.0)


def test_cache_key_is_stable_across_processes():
    code = (
        "from dataprobes.qa.evolve import GeneratedAnswer, Conversation\n"
        "from dataprobes.qa.pipeline import GenerationCache as C\n"
        "print(C.key('prompt \\u00e9', 'm', 7, GeneratedAnswer, 0.0), C.key('q', 'm', 0, Conversation, 1.0))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "123"}  # another str hash seed: the key must not depend on it
    env_out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    here = [
        GenerationCache.key("prompt \u00e9", "m", 7, GeneratedAnswer, 0.0),
        GenerationCache.key("q", "m", 0, Conversation, 1.0),
    ]
    assert env_out.stdout.split() == here


def test_cached_entry_of_a_same_named_schema_is_not_replayed(tmp_path):
    a, b = _two_models_named_answer()
    cache = GenerationCache(tmp_path)
    cache.put(GenerationCache.key("p", "m", 0, a, 0.0), {"objects": [{"text": "x"}], "failures": {}, "attempts": 1})
    assert cache.get(GenerationCache.key("p", "m", 0, b, 0.0)) is None
    assert cache.misses == 1 and cache.corrupted == 0


# ---------------------------------------------------------------------------
# 2. corrupted cache entries, progress files and output lines


def test_corrupted_cache_entries_are_misses_regenerated_and_rewritten(corpus, tmp_path):
    cdir = tmp_path / "cache"
    ref = run(corpus, cache_dir=cdir)
    files = sorted(cdir.glob("*.json"))
    assert len(files) > 4
    files[0].write_text('{"objects": [{"clarity"')  # torn JSON
    files[1].write_bytes(b"\xff\xfe not utf-8")
    files[2].write_text("[1, 2]")  # JSON, not an entry
    entry = json.loads(files[3].read_text())
    entry["objects"] = [{"unexpected": 1}]  # an entry edited by hand: fails its schema
    files[3].write_text(json.dumps(entry))
    with pytest.warns(UserWarning, match="4 cache entries"):
        again = run(corpus, cache_dir=cdir)
    assert again.samples == ref.samples and again.report() == ref.report()
    for f in files[:4]:  # rewritten, atomically, with the regenerated value
        value = json.loads(f.read_text())
        assert isinstance(value, dict) and "objects" in value
    assert not list(cdir.glob("*.part"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert run(corpus, Refusing(), cache_dir=cdir).samples == ref.samples  # all replayed, nothing corrupt


@pytest.mark.parametrize(
    "entry",
    [
        {"objects": {"question": "x"}},  # objects not a list
        {"objects": [], "failures": {"timeout": "x"}, "attempts": 1},  # a count that is not a number
        {"objects": [], "failures": {"timeout": None}, "attempts": 1},
        {"objects": [], "failures": {"timeout": -4}, "attempts": 1},
        {"objects": [], "failures": {"timeout": 1.5}, "attempts": 1},
        {"objects": [], "failures": [["timeout", 2]], "attempts": 1},  # failures not an object
        {"objects": [], "failures": {}, "attempts": "2"},
        {"objects": [], "failures": {}, "attempts": -3},
    ],
)
def test_cache_entries_of_the_wrong_shape_are_corrupted_misses(corpus, tmp_path, entry):
    """A JSON object that is not an entry this cache writes is a counted miss,
    made again, never a crash deep in the run nor a replayed nonsense count."""
    cdir = tmp_path / "cache"
    ref = run(corpus, cache_dir=cdir)
    files = sorted(cdir.glob("*.json"))
    for f in files:
        f.write_text(json.dumps(entry))
    with pytest.warns(UserWarning, match=f"{len(files)} cache entries"):
        again = run(corpus, cache_dir=cdir)
    assert again.samples == ref.samples and again.report() == ref.report()


def test_cache_counts_corrupted_entries(tmp_path):
    cache = GenerationCache(tmp_path)
    key = "a" * 64
    (tmp_path / f"{key}.json").write_text("{not json")
    assert cache.get(key) is None and cache.get("b" * 64) is None
    assert (cache.hits, cache.misses, cache.corrupted) == (0, 2, 1)
    assert cache.corrupted_paths == [tmp_path / f"{key}.json"]
    cache.put(key, {"objects": []})
    assert cache.get(key) == {"objects": []} and cache.hits == 1


@pytest.mark.parametrize("damage", ["not json {", "", "[1, 2]", '{"format": 1, "records": 5'])
def test_corrupted_progress_file_is_a_value_error_and_nothing_is_touched(corpus, tmp_path, damage):
    out = tmp_path / "out.jsonl"
    run(corpus, output=out)
    state = tmp_path / "out.jsonl.progress.json"
    state.write_text(damage)
    before = out.read_bytes()
    with pytest.raises(ValueError, match=r"progress file .*out\.jsonl\.progress\.json.* is corrupted.*start afresh"):
        run(corpus, Refusing(), output=out)
    assert out.read_bytes() == before and state.read_text() == damage


def test_progress_file_with_bad_records_is_a_value_error(corpus, tmp_path):
    out = tmp_path / "out.jsonl"
    run(corpus, output=out)
    state = tmp_path / "out.jsonl.progress.json"
    prog = json.loads(state.read_text())
    for damage in ({"records": {"0": "accepted"}}, {"critic": {"0": {"score": "high"}}}, {"records": []}):
        state.write_text(json.dumps({**prog, **damage}))
        with pytest.raises(ValueError, match="is corrupted"):
            run(corpus, Refusing(), output=out)


def test_corrupted_output_line_is_a_value_error_naming_the_line(corpus, tmp_path):
    out = tmp_path / "out.jsonl"
    ref = run(corpus, output=out)
    assert ref.num_samples >= 3
    lines = out.read_text().splitlines(keepends=True)
    lines[1] = lines[1][:20] + "\n"
    out.write_text("".join(lines))
    before = (out.read_bytes(), (tmp_path / "out.jsonl.progress.json").read_bytes())
    with pytest.raises(ValueError, match=r"out\.jsonl'?: line 2 is not a sample.*start afresh"):
        run(corpus, Refusing(), output=out)
    assert (out.read_bytes(), (tmp_path / "out.jsonl.progress.json").read_bytes()) == before


def test_torn_last_output_line_is_generated_again(corpus, tmp_path):
    whole = tmp_path / "whole.jsonl"
    ref = run(corpus, output=whole)
    out = tmp_path / "out.jsonl"
    run(corpus, output=out)
    data = out.read_bytes()
    out.write_bytes(data[: len(data) - 30])  # the last sample cut mid-line, no newline
    with pytest.warns(UserWarning, match=r"missing from it; its last line \(\d+\) is incomplete"):
        again = run(corpus, output=out)
    assert out.read_bytes() == whole.read_bytes()
    assert again.samples == ref.samples and again.report() == ref.report()
    # a sample deleted from the output is made again as well
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:1] + lines[2:]))
    with pytest.warns(UserWarning, match="missing from it"):
        assert run(corpus, output=out).samples == ref.samples
    assert out.read_bytes() == whole.read_bytes()


# ---------------------------------------------------------------------------
# 3. blank strings in the built-in schemas


@pytest.mark.parametrize(
    ("schema", "good", "field"),
    [
        (GeneratedQuestion, {"question": "What is it?"}, "question"),
        (Conversation, {"previous_question": "Tell me.", "question": "And?"}, "previous_question"),
        (Conversation, {"previous_question": "Tell me.", "question": "And?"}, "question"),
        (QuestionVerdict, {"feedback": "fine", "verdict": 1}, "feedback"),
        (EvolutionVerdict, {"reason": "same", "verdict": 1}, "reason"),
        (GeneratedAnswer, {"answer": "Paris", "verdict": 1}, "answer"),
    ],
)
@pytest.mark.parametrize("blank", ["", " ", "\n\t "])
def test_builtin_schemas_reject_blank_text(schema, good, field, blank):
    schema.model_validate(good)
    with pytest.raises(pydantic.ValidationError):
        schema.model_validate({**good, field: blank})


def test_blank_answer_is_allowed_only_with_verdict_zero():
    assert GeneratedAnswer.model_validate({"answer": "", "verdict": 0}).answer == ""
    assert GeneratedAnswer.model_validate({"answer": " Paris ", "verdict": 1}).answer == "Paris"
    ChunkScores.model_validate({"clarity": 1, "depth": 2, "structure": 3, "relevance": 1})


def test_blank_fields_are_counted_failures_and_re_asked():
    replies = iter(['{"question": "  "}', '{"question": "What is the capital of Bakoli?"}'])
    gen = CallableGenerator(lambda prompt, *, temperature, seed: next(replies), model="m")
    res = gen.generate("Task: seed question.", GeneratedQuestion)
    assert [str(f.kind) for f in res.failures] == ["schema_violation"]
    assert res.reasked == 1 and res.objects[0].question == "What is the capital of Bakoli?"
    blank = CallableGenerator(lambda prompt, *, temperature, seed: '{"answer": "", "verdict": 1}', model="m")
    res = blank.generate("Task: answer.", GeneratedAnswer)
    assert res.objects == [] and [str(f.kind) for f in res.failures] == ["schema_violation"] * 2


def test_user_schema_allowing_blank_stays_allowed():
    free = pydantic.create_model("Free", text=(str, ...))
    gen = CallableGenerator(lambda prompt, *, temperature, seed: '{"text": ""}', model="m")
    res = gen.generate("say nothing", free)
    assert res.failures == [] and res.objects[0].text == ""


def test_pipeline_counts_blank_answers_as_failures_never_samples(corpus):
    scripted = ScriptedFactGenerator(corpus)

    def blank_answers(prompt, *, temperature, seed):
        reply = scripted(prompt, temperature=temperature, seed=seed)
        if prompt.startswith("Task: answer."):
            return json.dumps({"answer": " ", "verdict": 1})
        if prompt.startswith("Task: seed question.") and seed % 2:
            return json.dumps({"question": ""})
        return reply

    gen = CallableGenerator(blank_answers, model="scripted-facts")
    with pytest.warns(UserWarning, match="no sample was accepted"):
        ts = run(corpus, gen, n=6, max_tries=2, distribution={"simple": 1})
    assert ts.num_samples == 0 and ts.failures["schema_violation"] > 0
    assert ts.rejections == {"generation_failed": ts.tries}


def test_faulty_generator_still_recovers_with_the_stricter_schemas(corpus):
    def faulty(defects):
        return FaultyGenerator(ScriptedFactGenerator(corpus).object, defects, 0, model="scripted-facts")

    clean = run(corpus, faulty({}), n=12)
    assert clean.num_samples > 0
    assert run(corpus, faulty({"fence": 1.0, "preamble": 0.5}), n=12).samples == clean.samples
