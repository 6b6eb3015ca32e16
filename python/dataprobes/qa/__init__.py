"""QA synthesis that never fails silently: typed generators, the parse and
repair layer, and fault injection (docs/math.md, "QA synthesis").

- **Generators** (module :mod:`dataprobes.qa.generate`): the
  :class:`Generator` protocol, ``generate(prompt, schema, *, n, temperature,
  seed) -> GenerationResult`` with validated pydantic objects and every failure
  counted by :class:`FailureKind` (:class:`FailureCounts` accumulates and
  reports them); back ends :class:`HFGenerator` (local Hugging Face model,
  grammar-constrained decoding with ``llguidance``),
  :class:`OpenAICompatibleGenerator` (vLLM, llama.cpp, Ollama over HTTP) and
  :class:`CallableGenerator` (any function returning text).
- **Parsing** (module :mod:`dataprobes.qa.parse`): :func:`parse_object`
  (fences, first balanced object, ``json_repair``, pydantic validation),
  :func:`strip_fences`, :func:`json_object_spans`, :func:`reask_prompt`,
  :func:`format_instructions`.
- **Fault injection** (module :mod:`dataprobes.qa.faults`):
  :class:`FaultyGenerator` emits known JSON defects at known rates;
  :func:`inject_defects` applies them to one object.
- **Test sets** (modules :mod:`dataprobes.qa.evolve`,
  :mod:`dataprobes.qa.pipeline`): Ragas-style evolutions as data
  (:data:`EVOLUTIONS`), critics and filters with explicit
  :class:`Thresholds` and reason codes, :func:`generate_testset` (seeded,
  cached, resumable, provenance per sample) returning a :class:`TestSet`.
- **Ground truth** (module :mod:`dataprobes.qa.truth`): :class:`FactCorpus`
  renders a fact table into documents, :func:`check_testset` checks every
  answer against it (answerable, correct, hop count, near-duplicates).

Names are resolved lazily: importing this package imports neither pydantic nor
PyTorch.
"""

from __future__ import annotations

from .._lazy import lazy_names

_WHERE = {
    # the protocol and the back ends (generate.py)
    "Generator": "generate",
    "GenerationResult": "generate",
    "GenerationFailure": "generate",
    "FailureKind": "generate",
    "FailureCounts": "generate",
    "GeneratorUnavailableError": "generate",
    "Ask": "generate",
    "BackendFailure": "generate",
    "Completion": "generate",
    "TextGenerator": "generate",
    "CallableGenerator": "generate",
    "OpenAICompatibleGenerator": "generate",
    "HFGenerator": "generate",
    "derive_seed": "generate",
    # parse, repair, validate, re-ask (parse.py)
    "Parsed": "parse",
    "parse_object": "parse",
    "strip_fences": "parse",
    "json_object_spans": "parse",
    "reask_prompt": "parse",
    "format_instructions": "parse",
    # fault injection (faults.py)
    "DEFECTS": "faults",
    "Emission": "faults",
    "FaultyGenerator": "faults",
    "inject_defects": "faults",
    # evolutions as data (evolve.py)
    "Evolution": "evolve",
    "EVOLUTIONS": "evolve",
    "DEFAULT_DISTRIBUTION": "evolve",
    "REASON_CODES": "evolve",
    "Thresholds": "evolve",
    "ChunkScores": "evolve",
    "GeneratedQuestion": "evolve",
    "Conversation": "evolve",
    "QuestionVerdict": "evolve",
    "EvolutionVerdict": "evolve",
    "GeneratedAnswer": "evolve",
    "check_distribution": "evolve",
    "evolution_counts": "evolve",
    # the test-set pipeline (pipeline.py)
    "generate_testset": "pipeline",
    "TestSet": "pipeline",
    "GenerationCache": "pipeline",
    "word_overlap_related": "pipeline",
    # ground truth against a fact table (truth.py)
    "FactCorpus": "truth",
    "ScriptedFactGenerator": "truth",
    "check_testset": "truth",
    "TruthReport": "truth",
    "SampleTruth": "truth",
}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_names(__name__, globals(), _WHERE)
