"""Generators (dataprobes.qa.generate): the ask → parse → re-ask loop, the
callable and HTTP back ends against scripted and local servers, and
grammar-constrained decoding with a randomly initialised model and a locally
built tokenizer (no downloads): 100 % valid objects over random schemas."""

from __future__ import annotations

import json
import pickle
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import pytest

pytest.importorskip("pydantic")
pytest.importorskip("json_repair")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from pydantic import BaseModel, Field, create_model  # noqa: E402

from dataprobes.qa import (  # noqa: E402
    CallableGenerator,
    FailureCounts,
    FailureKind,
    GenerationResult,
    Generator,
    GeneratorUnavailableError,
    OpenAICompatibleGenerator,
    derive_seed,
)


class QA(BaseModel):
    question: str
    answer: str
    verdict: int


GOOD = '{"question": "Who?", "answer": "Ada", "verdict": 1}'
ADA = QA(question="Who?", answer="Ada", verdict=1)


class Scripted:
    """A callable "model" answering from a list, recording its calls (picklable)."""

    def __init__(self, outputs: list[Any]) -> None:
        self.outputs = list(outputs)
        self.calls: list[tuple[str, float, int]] = []

    def __call__(self, prompt: str, *, temperature: float, seed: int) -> Any:
        self.calls.append((prompt, temperature, seed))
        out = self.outputs[(len(self.calls) - 1) % len(self.outputs)]
        if isinstance(out, Exception):
            raise out
        return out


# ---------------------------------------------------------------- the loop (callable back end)


def test_callable_generator_returns_typed_objects_and_counts_failures() -> None:
    fn = Scripted([f"```json\n{GOOD}\n```", "no idea", GOOD, '{"question": "q", "answer": "a", "verdict": 2,', "x"])
    gen = CallableGenerator(fn, model="scripted")
    assert isinstance(gen, Generator)
    res = gen.generate("Ask about Ada.", QA, n=3, temperature=0.7, seed=4)
    assert res.objects == [ADA, ADA] and res.indices == [0, 1]
    assert all(type(o) is QA for o in res.objects)
    assert [(f.kind, f.sample, f.attempt) for f in res.failures] == [
        (FailureKind.NO_JSON, 1, 0),
        (FailureKind.UNBALANCED, 2, 0),
        (FailureKind.NO_JSON, 2, 1),
    ]
    assert res.failures[0].raw == "no idea"
    assert res.requested == 3 and res.attempts == 5 and res.lost == 1 and not res.complete
    assert res.reasked == 1 and res.model == "scripted" and res.seed == 4
    # seeds are derived per (call seed, sample, attempt); the re-ask carries the error
    assert [c[2] for c in fn.calls] == [
        derive_seed(4, 0, 0),
        derive_seed(4, 1, 0),
        derive_seed(4, 1, 1),
        derive_seed(4, 2, 0),
        derive_seed(4, 2, 1),
    ]
    assert all(c[1] == 0.7 for c in fn.calls)
    assert fn.calls[0][0].startswith("Ask about Ada.") and "JSON Schema" in fn.calls[0][0]
    assert "no idea" in fn.calls[2][0] and "no JSON object" in fn.calls[2][0]
    report = res.counts.report()
    assert "2/3 produced, 1 lost" in report and "| no_json | 2 |" in report and "| unbalanced | 1 |" in report


def test_max_reasks_bounds_the_attempts() -> None:
    fn = Scripted(["garbage"])
    res = CallableGenerator(fn, max_reasks=0).generate("p", QA, n=4)
    assert res.objects == [] and res.attempts == 4 and len(res.failures) == 4
    res = CallableGenerator(Scripted(["garbage"]), max_reasks=3).generate("p", QA, n=2)
    assert res.attempts == 8 and [f.attempt for f in res.failures] == [0, 1, 2, 3] * 2


def test_format_instructions_can_be_turned_off() -> None:
    fn = Scripted([GOOD])
    CallableGenerator(fn, format_instructions=False).generate("exact prompt", QA)
    assert fn.calls[0][0] == "exact prompt"


def test_derive_seed_is_splitmix64_chain() -> None:
    """Reference: the project's SplitMix64 in the torch counter hash."""
    counter_hash = pytest.importorskip("dataprobes._torch.counter_hash")
    m = 2**64 - 1
    for seed, i, a in [(0, 0, 0), (1, 2, 3), (2**64 - 1, 10**6, 1), (12345, 0, 7)]:
        sm = counter_hash.splitmix64
        assert derive_seed(seed, i, a) == sm((sm((sm(seed) + i) & m) + a) & m) >> 33
    assert len({derive_seed(0, i, a) for i in range(100) for a in range(3)}) == 300
    assert all(0 <= derive_seed(s, 1, 1) < 2**31 for s in range(50))


def test_callable_errors_are_counted_and_a_dead_callable_raises() -> None:
    # later samples: the exception is a counted backend_error and the call goes on
    fn = Scripted([GOOD, RuntimeError("model crashed"), GOOD])
    res = CallableGenerator(fn).generate("p", QA, n=3)
    assert res.indices == [0, 2] and res.failures[0].kind is FailureKind.BACKEND_ERROR
    assert "model crashed" in res.failures[0].error and res.failures[0].attempt == 0
    # the first sample: nothing ever answered, so the call raises with the failures kept
    with pytest.raises(GeneratorUnavailableError, match="no response") as info:
        CallableGenerator(Scripted([ConnectionError("refused")])).generate("p", QA, n=5)
    partial = info.value.result
    assert partial.objects == [] and [f.kind for f in partial.failures] == [FailureKind.BACKEND_ERROR]
    assert partial.requested == 5 and partial.attempts == 1
    again = pickle.loads(pickle.dumps(info.value))
    assert again.result == partial and str(again) == str(info.value)


def test_generator_bad_arguments() -> None:
    gen = CallableGenerator(Scripted([GOOD]))
    with pytest.raises(TypeError, match="prompt"):
        gen.generate(None, QA)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prompt"):
        gen.generate("  ", QA)
    with pytest.raises(TypeError, match="schema"):
        gen.generate("p", dict)  # type: ignore[type-var]
    with pytest.raises(TypeError, match="schema"):
        gen.generate("p", ADA)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n"):
        gen.generate("p", QA, n=0)
    with pytest.raises(TypeError, match="n"):
        gen.generate("p", QA, n=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="temperature"):
        gen.generate("p", QA, temperature=-0.1)
    with pytest.raises(ValueError, match="temperature"):
        gen.generate("p", QA, temperature=float("nan"))
    with pytest.raises(ValueError, match="seed"):
        gen.generate("p", QA, seed=-1)
    with pytest.raises(TypeError, match="fn"):
        CallableGenerator("not callable")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_reasks"):
        CallableGenerator(Scripted([GOOD]), max_reasks=-1)
    with pytest.raises(TypeError, match="progress"):
        CallableGenerator(Scripted([GOOD]), progress=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fn must return a str"):
        CallableGenerator(Scripted([{"question": "q"}])).generate("p", QA)


def test_results_accumulate_and_pickle() -> None:
    gen = CallableGenerator(Scripted([GOOD, "nope", "{'question': 'q', 'answer': 'a', 'verdict': '3',}"]))
    total = FailureCounts()
    results = [gen.generate("p", QA, n=2, seed=s) for s in range(3)]
    for r in results:
        total.add(r)
    assert total.requested == 6 and total.produced == sum(len(r.objects) for r in results)
    assert total.failures == sum(len(r.failures) for r in results) and total.repaired >= 1
    assert (results[0].counts + results[1].counts + results[2].counts) == total
    assert json.loads(json.dumps(total.as_dict()))["requested"] == 6
    for r in results:
        assert pickle.loads(pickle.dumps(r)) == r
    assert pickle.loads(pickle.dumps(gen)).generate("p", QA, n=2, seed=0) == results[0]
    with pytest.raises(TypeError, match="result"):
        total.add("x")  # type: ignore[arg-type]
    assert isinstance(results[0], GenerationResult)


def test_progress_bar() -> None:
    res = CallableGenerator(Scripted([GOOD]), progress=True).generate("p", QA, n=3)
    assert res.complete


def test_torch_free_import() -> None:
    import subprocess
    import sys

    code = (
        "import sys, dataprobes.qa as qa; qa.CallableGenerator; qa.OpenAICompatibleGenerator; qa.parse_object; "
        "qa.FaultyGenerator; qa.HFGenerator; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- the HTTP back end


class _Server:
    """An OpenAI-compatible chat-completions server on 127.0.0.1 answering from a
    script of ``(status, body, delay_s)``; records every request."""

    def __init__(self) -> None:
        self.script: deque[tuple[int, Any, float]] = deque()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.handler: Any = None  # a function of the request body, instead of the script
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                server.requests.append(json.loads(self.rfile.read(length)))
                server.headers.append(dict(self.headers))
                if server.handler is not None:
                    status, body, delay = 200, server.handler(server.requests[-1]), 0.0
                else:
                    status, body, delay = server.script.popleft() if server.script else (500, "script ran out", 0.0)
                if delay:
                    time.sleep(delay)
                data = (
                    body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
                )
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def reply(self, content: str | None, finish: str = "stop", status: int = 200, delay: float = 0.0) -> None:
        body = {
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}]
        }
        self.script.append((status, body, delay))

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.close()


def _http(server: _Server, **kw: Any) -> OpenAICompatibleGenerator:
    kw.setdefault("backoff", 0.0)
    kw.setdefault("timeout", 5.0)
    return OpenAICompatibleGenerator(server.url, "local-model", **kw)


def test_http_round_trip_and_request_shape(server: _Server) -> None:
    server.reply(GOOD)
    server.reply(f"Here it is:\n```json\n{GOOD}\n```\nBye.")
    gen = _http(server, api_key="sk-test", max_tokens=77, extra_body={"top_p": 0.5})
    res = gen.generate("Who wrote the first program?", QA, n=2, temperature=0.3, seed=9)
    assert res.objects == [ADA, ADA] and res.failures == [] and res.model == "local-model"
    body = server.requests[0]
    assert body["model"] == "local-model" and body["temperature"] == 0.3 and body["max_tokens"] == 77
    assert body["seed"] == derive_seed(9, 0, 0) and server.requests[1]["seed"] == derive_seed(9, 1, 0)
    assert body["top_p"] == 0.5 and body["messages"][0]["role"] == "user"
    rf = body["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["strict"] is True
    assert rf["json_schema"]["schema"]["additionalProperties"] is False
    assert server.headers[0]["Authorization"] == "Bearer sk-test"


@pytest.mark.parametrize(("mode", "expected"), [("json_object", {"type": "json_object"}), (None, None)])
def test_http_response_formats(server: _Server, mode: str | None, expected: Any) -> None:
    server.reply(GOOD)
    _http(server, response_format=mode).generate("p", QA)
    assert server.requests[0].get("response_format") == expected


def test_http_garbage_is_counted_and_reasked(server: _Server) -> None:
    server.reply(GOOD)  # the first sample answers: the server is up
    server.script.append((200, b"<html>not json</html>", 0.0))  # sample 1: a reply without a completion
    server.reply("Sorry, I can't help with that.")  # sample 2: prose, re-asked ...
    server.reply('{"question": "Who?", "answer": "Ada", "verdict": 1, "Extra": 0}')  # ... wrong keys
    server.reply('{"question": "Who?", "answer": "Ada", "verdict": 1', finish="length")  # sample 3: cut
    server.reply(GOOD)
    res = _http(server, max_retries=0).generate("p", QA, n=4)
    assert res.indices == [0, 3]
    assert [(f.kind, f.sample, f.attempt) for f in res.failures] == [
        (FailureKind.BAD_RESPONSE, 1, 0),
        (FailureKind.NO_JSON, 2, 0),
        (FailureKind.SCHEMA_VIOLATION, 2, 1),
        (FailureKind.TRUNCATED, 3, 0),
    ]
    assert res.failures[0].raw == "<html>not json</html>"
    # the re-ask quotes the rejected answer and the error
    assert "Sorry, I can't help" in server.requests[3]["messages"][0]["content"]


def test_http_retries_transient_errors(server: _Server) -> None:
    server.script.append((503, "busy", 0.0))
    server.script.append((429, "slow down", 0.0))
    server.reply(GOOD)
    res = _http(server, max_retries=2).generate("p", QA)
    assert res.objects == [ADA] and res.failures == [] and res.attempts == 1 and len(server.requests) == 3


def test_http_server_down_raises_with_counted_failures() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gen = OpenAICompatibleGenerator(f"http://127.0.0.1:{port}/v1", "m", max_retries=2, backoff=0.0, timeout=2.0)
    with pytest.raises(GeneratorUnavailableError, match="connection_error") as info:
        gen.generate("p", QA, n=10)
    failures = info.value.result.failures
    assert [f.kind for f in failures] == [FailureKind.CONNECTION_ERROR]
    assert "3 tries failed" in failures[0].error and info.value.result.objects == []


def test_http_errors_after_a_response_are_counted(server: _Server) -> None:
    server.reply(GOOD)
    server.script.extend([(500, "boom", 0.0)] * 2)
    server.script.append((400, '{"error": "bad request"}', 0.0))  # not retried
    server.reply(GOOD)
    res = _http(server, max_retries=1).generate("p", QA, n=4)
    assert res.indices == [0, 3]
    assert [f.kind for f in res.failures] == [FailureKind.HTTP_ERROR, FailureKind.HTTP_ERROR]
    assert "2 tries failed" in res.failures[0].error and "1 try failed" in res.failures[1].error
    assert "bad request" in res.failures[1].raw


def test_http_a_refusing_server_raises(server: _Server) -> None:
    server.script.append((400, '{"error": "response_format json_schema is not supported"}', 0.0))
    with pytest.raises(GeneratorUnavailableError, match="not supported"):
        _http(server).generate("p", QA)
    assert len(server.requests) == 1


def test_http_timeout(server: _Server) -> None:
    server.reply(GOOD)
    server.reply(GOOD, delay=1.0)
    server.reply(GOOD)
    res = _http(server, timeout=0.2, max_retries=0).generate("p", QA, n=3)
    assert res.indices == [0, 2] and [f.kind for f in res.failures] == [FailureKind.TIMEOUT]


def test_http_bad_arguments() -> None:
    with pytest.raises(ValueError, match="base_url"):
        OpenAICompatibleGenerator("localhost:8000", "m")
    with pytest.raises(TypeError, match="base_url"):
        OpenAICompatibleGenerator(8000, "m")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="model"):
        OpenAICompatibleGenerator("http://x", "")
    with pytest.raises(ValueError, match="timeout"):
        OpenAICompatibleGenerator("http://x", "m", timeout=0)
    with pytest.raises(ValueError, match="max_retries"):
        OpenAICompatibleGenerator("http://x", "m", max_retries=-1)
    with pytest.raises(ValueError, match="response_format"):
        OpenAICompatibleGenerator("http://x", "m", response_format="yaml")
    with pytest.raises(TypeError, match="api_key"):
        OpenAICompatibleGenerator("http://x", "m", api_key=123)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_tokens"):
        OpenAICompatibleGenerator("http://x", "m", max_tokens=0)
    gen = OpenAICompatibleGenerator("http://x/v1/", "m")
    assert gen.base_url == "http://x/v1" and pickle.loads(pickle.dumps(gen)).base_url == "http://x/v1"


# ---------------------------------------------------------------- constrained decoding


@pytest.fixture(scope="module")
def tiny_lm() -> tuple[Any, Any]:
    """A 1-layer GPT-2 with random weights and a byte-level BPE tokenizer trained
    here on a few strings (no download)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("llguidance")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=360,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = ['{"question":"Who wrote it?","answer":"Ada","verdict":1,"tags":["a","b"]}', "true false null 0.5"]
    tok.train_from_iterator(corpus * 10, trainer)
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=len(hf_tok) + 3,  # a padded embedding: the extra ids must never be sampled
        n_positions=1024,
        n_embd=32,
        n_layer=1,
        n_head=2,
        eos_token_id=hf_tok.eos_token_id,
        bos_token_id=hf_tok.eos_token_id,
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    return model, hf_tok


# every kind has a bounded JSON length; a float has not (its fraction digits are
# unbounded in JSON, and a greedy random model writes 1.000000… until the budget
# ends): floats are tested separately below
_FIELD_KINDS = ("str", "int", "bool", "literal", "list", "optional", "nested")


def _field(kind: str, k: int) -> tuple[Any, Any]:
    if kind == "str":
        return (str, Field(max_length=1 + k % 5))
    if kind == "int":
        return (int, Field(ge=-50 * k, le=7 + 100 * k))
    if kind == "bool":
        return (bool, ...)
    if kind == "literal":
        return (Literal[("yes", "no", "maybe")[: 1 + k % 3]], ...)  # type: ignore[misc]
    if kind == "list":
        return (list[bool], Field(max_length=k % 3))
    if kind == "optional":
        return (int | None, Field(default=None, ge=0, le=9))
    inner = create_model(f"Inner{k}", x=(int, Field(ge=0, le=3)), y=(str, Field(max_length=2)))
    return (inner, ...)


@st.composite
def schemas(draw: st.DrawFn) -> type[BaseModel]:
    kinds = draw(st.lists(st.sampled_from(_FIELD_KINDS), min_size=1, max_size=4))
    fields = {f"f{j}_{kind}": _field(kind, draw(st.integers(0, 5))) for j, kind in enumerate(kinds)}
    return create_model(f"Random{draw(st.integers(0, 10**6))}", **fields)  # type: ignore[call-overload, no-any-return]


@settings(max_examples=max(4, settings.default.max_examples // 4))
@given(schema=schemas(), seed=st.integers(0, 2**32), temperature=st.sampled_from([0.0, 1.0, 2.0]))
def test_constrained_decoding_always_valid(
    tiny_lm: tuple[Any, Any], schema: type[BaseModel], seed: int, temperature: float
) -> None:
    """A random-weight model under the grammar: every sample validates on the first
    attempt (no failure, no repair, no re-ask)."""
    from dataprobes.qa import HFGenerator

    model, tok = tiny_lm
    gen = HFGenerator(model, tok, max_new_tokens=400, format_instructions=False)
    res = gen.generate("Write one object:", schema, n=2, temperature=temperature, seed=seed)
    assert res.failures == [] and res.complete and res.repaired == 0 and res.attempts == 2
    for obj in res.objects:
        assert type(obj) is schema
        assert schema.model_validate_json(obj.model_dump_json()) == obj


def test_constrained_decoding_floats_valid_or_counted(tiny_lm: tuple[Any, Any]) -> None:
    """A float's digits are unbounded: each sample is a valid object or a counted
    truncation, never anything else."""
    from dataprobes.qa import HFGenerator

    class Measured(BaseModel):
        x: float = Field(ge=-1.5, le=2.5)
        name: str = Field(max_length=3)

    model, tok = tiny_lm
    gen = HFGenerator(model, tok, max_new_tokens=40, max_reasks=0)
    for temperature in (0.0, 1.0):
        res = gen.generate("p", Measured, n=4, temperature=temperature, seed=3)
        assert len(res.objects) + len(res.failures) == 4
        assert {f.kind for f in res.failures} <= {FailureKind.TRUNCATED}
        assert all(-1.5 <= o.x <= 2.5 for o in res.objects)


def test_constrained_decoding_behind_the_http_back_end(tiny_lm: tuple[Any, Any]) -> None:
    """The tiny model served as an OpenAI-compatible endpoint that enforces the
    request's ``response_format`` JSON Schema: every object valid, no failure."""
    from dataprobes.qa import HFGenerator

    model, tok = tiny_lm
    local = HFGenerator(model, tok, max_new_tokens=300)
    server = _Server()
    seen: list[tuple[float, int]] = []

    def serve(body: dict[str, Any]) -> dict[str, Any]:
        schema = body["response_format"]["json_schema"]["schema"]
        seen.append((body["temperature"], body["seed"]))
        done = local.decode(body["messages"][0]["content"], schema, temperature=body["temperature"], seed=body["seed"])
        finish = "length" if done.truncated else "stop"
        return {"choices": [{"message": {"role": "assistant", "content": done.text}, "finish_reason": finish}]}

    server.handler = serve
    try:
        gen = _http(server)
        for schema in (_schema_of("str", "int", "literal"), _schema_of("nested", "list", "optional", "bool")):
            res = gen.generate("Write one object:", schema, n=3, temperature=1.0, seed=7)
            assert res.complete and res.failures == [] and res.repaired == 0
            assert all(type(o) is schema for o in res.objects)
        assert seen[0] == (1.0, derive_seed(7, 0, 0))
    finally:
        server.close()


def _schema_of(*kinds: str) -> type[BaseModel]:
    fields = {f"f{j}_{kind}": _field(kind, j + 1) for j, kind in enumerate(kinds)}
    return create_model("Served_" + "_".join(kinds), **fields)  # type: ignore[call-overload, no-any-return]


def test_decode_accepts_a_json_schema_dict(tiny_lm: tuple[Any, Any]) -> None:
    from dataprobes.qa import HFGenerator

    model, tok = tiny_lm
    gen = HFGenerator(model, tok, max_new_tokens=100)
    schema = {"type": "object", "properties": {"k": {"enum": ["a", "b"]}}, "required": ["k"]}
    done = gen.decode("p", schema, temperature=1.0, seed=1)
    assert json.loads(done.text)["k"] in ("a", "b") and not done.truncated
    with pytest.raises(TypeError, match="schema"):
        gen.decode("p", "not a schema")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="schema"):
        gen.decode("p", {"type": "object", "properties": {"x": {"not": {}}}, "required": ["x"]})


def test_constrained_decoding_is_deterministic_and_pickles(tiny_lm: tuple[Any, Any]) -> None:
    from dataprobes.qa import HFGenerator

    class Small(BaseModel):
        name: str = Field(max_length=4)
        count: int = Field(ge=0, le=20)
        ok: bool

    model, tok = tiny_lm
    gen = HFGenerator(model, tok, max_new_tokens=200, name="tiny-gpt2")
    a = gen.generate("p", Small, n=3, temperature=1.0, seed=5)
    assert a.complete and a.model == "tiny-gpt2"
    assert gen.generate("p", Small, n=3, temperature=1.0, seed=5) == a
    assert pickle.loads(pickle.dumps(gen)).generate("p", Small, n=3, temperature=1.0, seed=5) == a
    greedy = gen.generate("p", Small, n=2, temperature=0.0, seed=1)
    assert greedy.objects[0] == greedy.objects[1]


def test_constrained_decoding_budget_is_a_counted_truncation(tiny_lm: tuple[Any, Any]) -> None:
    from dataprobes.qa import HFGenerator

    class Long(BaseModel):
        text: str = Field(min_length=30, max_length=40)

    model, tok = tiny_lm
    res = HFGenerator(model, tok, max_new_tokens=5).generate("p", Long, n=2)
    assert res.objects == [] and {f.kind for f in res.failures} == {FailureKind.TRUNCATED}
    assert len(res.failures) == 4 and all(f.raw.startswith('{"') for f in res.failures)


def test_a_prompt_past_the_model_context_is_a_value_error_and_its_end_a_truncation(tiny_lm: tuple[Any, Any]) -> None:
    """Regression: a prompt longer than ``n_positions`` raised
    GeneratorUnavailableError('IndexError: index out of range in self') as if
    the back end were down; decoding past the context did the same."""
    from dataprobes.qa import HFGenerator

    class Long(BaseModel):
        text: str = Field(min_length=30, max_length=40)

    model, tok = tiny_lm
    limit = model.config.n_positions
    gen = HFGenerator(model, tok, max_new_tokens=50, format_instructions=False, max_reasks=0)
    with pytest.raises(ValueError, match="prompt has .* context is 1024"):
        gen.generate("a " * limit, Long)
    with pytest.raises(ValueError, match="prompt"):
        gen.decode("a " * limit, Long)
    k = max(k for k in range(limit // 4, limit) if len(tok("a " * k)["input_ids"]) <= limit - 3)
    prompt = "a " * k  # 3 to 5 positions left: the context's end cuts the answer
    assert limit - 5 <= len(tok(prompt)["input_ids"]) <= limit - 3
    res = gen.generate(prompt, Long, n=1)
    assert res.objects == [] and [f.kind for f in res.failures] == [FailureKind.TRUNCATED]


def test_constrained_decoding_refuses_an_unenforceable_schema(tiny_lm: tuple[Any, Any]) -> None:
    from dataprobes.qa import HFGenerator

    class Negated(BaseModel):
        x: str = Field(json_schema_extra={"not": {"const": "a"}})

    class Impossible(BaseModel):
        x: int = Field(ge=5, le=3)

    model, tok = tiny_lm
    gen = HFGenerator(model, tok)
    for schema in (Negated, Impossible):
        with pytest.raises(ValueError, match=f"schema {schema.__name__}"):
            gen.generate("p", schema)


def test_hf_generator_bad_arguments(tiny_lm: tuple[Any, Any]) -> None:
    from dataprobes.qa import HFGenerator

    model, tok = tiny_lm
    with pytest.raises(ValueError, match="backend"):
        HFGenerator(model, tok, backend="outlines")
    with pytest.raises(TypeError, match="model"):
        HFGenerator("gpt2", tok)
    with pytest.raises(TypeError, match="tokenizer"):
        HFGenerator(model, tok.backend_tokenizer)
    with pytest.raises(ValueError, match="max_new_tokens"):
        HFGenerator(model, tok, max_new_tokens=0)
