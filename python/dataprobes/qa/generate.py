"""Generators that return typed, validated objects, never raw strings.

The protocol (docs/math.md, "QA synthesis"): ``generate(prompt, schema, *, n,
temperature, seed)`` asks a language model ``n`` times for an instance of the
pydantic model ``schema`` and returns a :class:`GenerationResult`: the objects
that validated (typed instances, in sample order, ``indices`` saying which
sample each is) and every failure, counted by :class:`FailureKind`, with the
raw text, the error and the attempt. A model's bad output never raises and is
never turned into an empty value (the failure mode of ragas #945, #977, #989,
#1681); only programmer errors raise (``TypeError`` / ``ValueError`` naming
the argument), and a back end that cannot be reached at all raises
:class:`GeneratorUnavailableError` carrying the partial result. "Valid" means
valid for the schema as given: the pipeline's own schemas
(:mod:`dataprobes.qa.evolve`) reject blank text, so an empty question or
answer is a counted ``schema_violation`` (and is re-asked); a user's schema
with a plain ``str`` field accepts ``""`` (declare
``Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]`` to
refuse it).

Back ends:

- :class:`CallableGenerator`: any ``fn(prompt, *, temperature, seed) -> str``.
- :class:`OpenAICompatibleGenerator`: chat completions over HTTP (vLLM,
  llama.cpp's server, Ollama, OpenAI), with ``response_format`` JSON schema or
  JSON mode where the server supports it, bounded retries with back-off.
- :class:`HFGenerator`: a local Hugging Face causal LM decoding under a grammar
  compiled from the schema's JSON Schema by ``llguidance``, so every token
  keeps the text a prefix of a valid object.

Every back end's text goes through the same parse layer
(:func:`dataprobes.qa.parse.parse_object`: fences, first balanced object,
``json_repair``, pydantic validation) and, when that fails, one bounded re-ask
with the error appended to the prompt (``max_reasks``, default 1).

Seeds: attempt ``a`` of sample ``i`` of a call with seed ``s`` is asked with
the derived seed :func:`derive_seed` ``(s, i, a)`` (a SplitMix64 chain, in
``[0, 2**31)`` so every server accepts it), so a result does not depend on how
samples are batched or split across calls.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Protocol, TypeVar, runtime_checkable

from .._validation import check_float_in, check_int, check_positive_int, check_seed

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "Ask",
    "BackendFailure",
    "CallableGenerator",
    "Completion",
    "FailureCounts",
    "FailureKind",
    "GenerationFailure",
    "GenerationResult",
    "Generator",
    "GeneratorUnavailableError",
    "HFGenerator",
    "OpenAICompatibleGenerator",
    "TextGenerator",
    "derive_seed",
]

T = TypeVar("T", bound="BaseModel")

_MASK64 = 0xFFFFFFFFFFFFFFFF


class FailureKind(str, Enum):
    """Why an attempt produced no object.

    Model output (counted, re-asked): ``no_json`` (no ``{`` in the text, or
    empty text), ``unbalanced`` (an object opens and never closes), ``truncated``
    (the back end stopped at its token limit before the object closed),
    ``invalid_json`` (a balanced span that neither ``json.loads`` nor
    ``json_repair`` makes an object of), ``schema_violation`` (unknown keys or
    a pydantic validation error). Back end (counted, not re-asked):
    ``http_error`` (an HTTP error status after retries), ``timeout``,
    ``connection_error`` (no connection after retries), ``bad_response`` (a
    2xx reply without a completion in it), ``backend_error`` (the callable or
    the local decoder raised, or the grammar matcher failed).
    """

    NO_JSON = "no_json"
    UNBALANCED = "unbalanced"
    TRUNCATED = "truncated"
    INVALID_JSON = "invalid_json"
    SCHEMA_VIOLATION = "schema_violation"
    HTTP_ERROR = "http_error"
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    BAD_RESPONSE = "bad_response"
    BACKEND_ERROR = "backend_error"

    def __str__(self) -> str:
        return self.value


_TRANSPORT = frozenset({FailureKind.HTTP_ERROR, FailureKind.TIMEOUT, FailureKind.CONNECTION_ERROR})


@dataclass(frozen=True)
class GenerationFailure:
    """One failed attempt: its ``kind``, the ``raw`` text the back end returned
    (``""`` when it returned none), the ``error`` message, the ``sample`` index
    in its call and the ``attempt`` (0 the first ask, 1.. the re-asks)."""

    kind: FailureKind
    raw: str
    error: str
    sample: int
    attempt: int


@dataclass(frozen=True)
class GenerationResult(Generic[T]):
    """What one ``generate`` call produced.

    ``objects``: validated instances of the schema (never strings, never
    ``None``), in sample order; ``indices[j]`` is the sample ``objects[j]``
    answers. ``failures``: every failed attempt, including those a re-ask then
    recovered. ``requested`` (``n``), ``attempts`` (back end calls made),
    ``repaired`` (objects that needed the quote / comma rewrites or ``json_repair``), ``reasked`` (objects
    obtained by a re-ask), ``model`` and ``seed``.
    """

    objects: list[T]
    indices: list[int]
    failures: list[GenerationFailure]
    requested: int
    attempts: int
    model: str
    seed: int
    repaired: int = 0
    reasked: int = 0

    @property
    def lost(self) -> int:
        """Samples that produced no object (``requested - len(objects)``)."""
        return self.requested - len(self.objects)

    @property
    def complete(self) -> bool:
        """Whether every requested sample produced an object."""
        return self.lost == 0

    @property
    def counts(self) -> FailureCounts:
        """This result's :class:`FailureCounts`."""
        return FailureCounts().add(self)


@dataclass
class FailureCounts:
    """Failures by kind accumulated over ``generate`` calls (``add``, ``+``),
    with the numbers needed to read them: samples requested and produced,
    attempts, repaired and re-asked objects. ``report()`` formats a table."""

    requested: int = 0
    produced: int = 0
    attempts: int = 0
    repaired: int = 0
    reasked: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)

    def add(self, result: GenerationResult[Any] | FailureCounts) -> FailureCounts:
        """Add a result's (or another tally's) counts to this one; returns ``self``."""
        if isinstance(result, FailureCounts):
            other = result
        elif isinstance(result, GenerationResult):
            other = FailureCounts(
                result.requested,
                len(result.objects),
                result.attempts,
                result.repaired,
                result.reasked,
                Counter(str(f.kind) for f in result.failures),
            )
        else:
            raise TypeError(f"result must be a GenerationResult or FailureCounts, got {type(result).__name__}")
        self.requested += other.requested
        self.produced += other.produced
        self.attempts += other.attempts
        self.repaired += other.repaired
        self.reasked += other.reasked
        self.by_kind.update(other.by_kind)
        return self

    def __add__(self, other: FailureCounts) -> FailureCounts:
        if not isinstance(other, FailureCounts):
            return NotImplemented
        return FailureCounts().add(self).add(other)

    @property
    def failures(self) -> int:
        """Failed attempts of every kind."""
        return sum(self.by_kind.values())

    @property
    def lost(self) -> int:
        """Samples that produced no object."""
        return self.requested - self.produced

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dictionary (provenance, logs)."""
        return {
            "requested": self.requested,
            "produced": self.produced,
            "lost": self.lost,
            "attempts": self.attempts,
            "repaired": self.repaired,
            "reasked": self.reasked,
            "failures": dict(sorted(self.by_kind.items())),
        }

    def report(self) -> str:
        """A small Markdown table: samples, attempts, repairs, re-asks, and each
        failure kind with its count and share of attempts."""
        att = max(self.attempts, 1)
        lines = [
            f"samples: {self.produced}/{self.requested} produced, {self.lost} lost; "
            f"attempts: {self.attempts}; repaired: {self.repaired}; recovered by re-ask: {self.reasked}",
            "",
            "| failure kind | count | per attempt |",
            "|---|---:|---:|",
        ]
        for kind, count in sorted(self.by_kind.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"| {kind} | {count} | {count / att:.3f} |")
        if not self.by_kind:
            lines.append("| (none) | 0 | 0.000 |")
        return "\n".join(lines)


class GeneratorUnavailableError(RuntimeError):
    """The back end could not be reached: the first sample of a call got no
    response after the bounded retries (connection refused, time-outs, HTTP
    errors), or the callable raised on it. ``result`` holds what the call had:
    its failures (and no objects), so nothing is lost."""

    def __init__(self, message: str, result: GenerationResult[Any]) -> None:
        super().__init__(message)
        self.result = result

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.result))


@runtime_checkable
class Generator(Protocol):
    """Anything that returns typed objects for a prompt and a pydantic schema.

    ``generate`` asks for ``n`` samples at ``temperature`` with ``seed`` and
    returns a :class:`GenerationResult`; ``model`` names the model (part of a
    cache key together with the prompt and the seed).
    """

    @property
    def model(self) -> str: ...

    def generate(
        self,
        prompt: str,
        schema: type[T],
        *,
        n: int = 1,
        temperature: float = 0.0,
        seed: int = 0,
    ) -> GenerationResult[T]: ...


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def derive_seed(seed: int, sample: int, attempt: int = 0) -> int:
    """Seed of attempt ``attempt`` of sample ``sample`` for a call with ``seed``:
    ``splitmix64(splitmix64(splitmix64(seed) + sample) + attempt) >> 33``, an
    integer in ``[0, 2**31)``."""
    h = _splitmix64(_splitmix64((_splitmix64(seed & _MASK64) + sample) & _MASK64) + attempt & _MASK64)
    return h >> 33


@dataclass(frozen=True)
class Completion:
    """The text a back end returned, and whether it stopped at its token limit."""

    text: str
    truncated: bool = False


class Ask(NamedTuple):
    """Which attempt a back end call is: the call's ``seed``, the ``sample``, the
    ``attempt`` (0 the first ask) and the caller's ``prompt`` (before format
    instructions and re-ask text)."""

    seed: int
    sample: int
    attempt: int
    prompt: str


class BackendFailure(Exception):
    """Raised by a back end's ``_complete`` when a call produced no text
    (transport, server, callable): counted with its ``kind``, never re-asked."""

    def __init__(self, kind: FailureKind, message: str, raw: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.raw = raw


def _check_prompt(prompt: Any) -> str:
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    if not prompt.strip():
        raise ValueError("prompt must not be empty")
    return prompt


class TextGenerator:
    """The shared ask → parse → re-ask loop over a back end that returns text.

    Subclasses implement ``_complete(prompt, schema, temperature, seed, key) ->
    Completion`` (``key`` the :class:`Ask`; raising :class:`BackendFailure`
    when no text came back) and may override ``_check_schema`` (a schema the back end cannot enforce is a
    ``ValueError``).

    Args:
        model: the name recorded in results.
        max_reasks: re-asks per sample after an unparsable or invalid answer
            (default 1; 0 disables).
        format_instructions: append the schema's JSON Schema and "answer with
            one JSON object" to every prompt (:func:`~dataprobes.qa.parse.format_instructions`).
        progress: show a progress bar over the samples of a call.
    """

    def __init__(
        self, model: str, *, max_reasks: int = 1, format_instructions: bool = True, progress: bool = False
    ) -> None:
        if not isinstance(model, str) or not model:
            raise TypeError(f"model must be a non-empty str, got {model!r}")
        self._model = model
        self.max_reasks = check_int("max_reasks", max_reasks, 0, 16)
        if not isinstance(format_instructions, bool):
            raise TypeError(f"format_instructions must be a bool, got {type(format_instructions).__name__}")
        self.format_instructions = format_instructions
        if not isinstance(progress, bool):
            raise TypeError(f"progress must be a bool, got {type(progress).__name__}")
        self.progress = progress

    @property
    def model(self) -> str:
        """The model name recorded in every result."""
        return self._model

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self._model!r})"

    def _complete(self, prompt: str, schema: type[BaseModel], temperature: float, seed: int, key: Ask) -> Completion:
        """One back end call; ``seed`` is the derived seed."""
        raise NotImplementedError

    def _check_schema(self, schema: type[BaseModel]) -> None:
        """Hook: raise ``ValueError`` for a schema this back end cannot enforce."""

    def generate(
        self,
        prompt: str,
        schema: type[T],
        *,
        n: int = 1,
        temperature: float = 0.0,
        seed: int = 0,
    ) -> GenerationResult[T]:
        """Ask for ``n`` instances of ``schema`` (see the module docstring).

        Returns every validated object and every failure; raises
        :class:`GeneratorUnavailableError` only when the first sample gets no
        response at all (the back end is down), ``TypeError`` / ``ValueError``
        for bad arguments. Objects are validated by ``schema`` as given: a
        plain ``str`` field accepts ``""`` (the built-in schemas of
        :mod:`dataprobes.qa.evolve` refuse blank text; see the module docstring).
        """
        from .parse import check_schema, format_instructions, parse_object, reask_prompt

        prompt = _check_prompt(prompt)
        check_schema(schema)
        n = check_positive_int("n", n)
        temperature = check_float_in("temperature", temperature, 0.0, 100.0)
        seed = check_seed("seed", seed)
        self._check_schema(schema)
        base = prompt + format_instructions(schema) if self.format_instructions else prompt

        objects: list[T] = []
        indices: list[int] = []
        failures: list[GenerationFailure] = []
        attempts = repaired = reasked = 0
        responded = False

        def result() -> GenerationResult[T]:
            return GenerationResult(
                list(objects), list(indices), list(failures), n, attempts, self._model, seed, repaired, reasked
            )

        from tqdm import tqdm

        bar = tqdm(total=n, desc=f"generate {schema.__name__}", unit="sample", disable=not self.progress)
        try:
            for i in range(n):
                ask = base
                for attempt in range(self.max_reasks + 1):
                    attempts += 1
                    try:
                        completion = self._complete(
                            ask, schema, temperature, derive_seed(seed, i, attempt), Ask(seed, i, attempt, prompt)
                        )
                    except BackendFailure as exc:
                        failures.append(GenerationFailure(exc.kind, exc.raw, str(exc), i, attempt))
                        if not responded:
                            raise GeneratorUnavailableError(
                                f"{self!r} gave no response to the first sample ({exc.kind}: {exc}); "
                                "nothing was generated",
                                result(),
                            ) from exc
                        break  # a back end failure was already retried; the next sample may still work
                    responded = True
                    parsed = parse_object(completion.text, schema, truncated=completion.truncated)
                    if parsed.value is not None:
                        objects.append(parsed.value)
                        indices.append(i)
                        repaired += parsed.repaired
                        reasked += attempt > 0
                        break
                    assert parsed.kind is not None
                    failures.append(GenerationFailure(parsed.kind, completion.text, parsed.error, i, attempt))
                    ask = reask_prompt(base, completion.text, parsed.error)
                bar.update(1)
        finally:
            bar.close()
        return result()


class CallableGenerator(TextGenerator):
    """Any callable ``fn(prompt, *, temperature, seed) -> str`` as a generator.

    The text goes through the parse layer and the bounded re-ask. An exception
    raised by ``fn`` is counted as ``backend_error`` (on the first sample it
    raises :class:`GeneratorUnavailableError`); ``fn`` returning something other
    than a string is a programmer error (``TypeError``). ``fn`` must pickle for
    the generator to be sent to worker processes.
    """

    def __init__(
        self,
        fn: Callable[..., str],
        *,
        model: str | None = None,
        max_reasks: int = 1,
        format_instructions: bool = True,
        progress: bool = False,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        name = model if model is not None else getattr(fn, "__qualname__", type(fn).__name__)
        super().__init__(name, max_reasks=max_reasks, format_instructions=format_instructions, progress=progress)
        self.fn = fn

    def _complete(self, prompt: str, schema: type[BaseModel], temperature: float, seed: int, key: Ask) -> Completion:
        try:
            text = self.fn(prompt, temperature=temperature, seed=seed)
        except Exception as exc:  # the callable is the model: its failure is counted, not raised
            raise BackendFailure(FailureKind.BACKEND_ERROR, f"{type(exc).__name__}: {exc}") from exc
        if isinstance(text, Completion):
            return text
        if not isinstance(text, str):
            raise TypeError(f"fn must return a str, got {type(text).__name__}")
        return Completion(text)


_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class OpenAICompatibleGenerator(TextGenerator):
    """Chat completions over HTTP: the API vLLM, llama.cpp's server, Ollama
    (``/v1``) and OpenAI serve.

    One request per attempt, ``POST {base_url}/chat/completions`` with the prompt
    as the user message, ``temperature``, ``seed`` (the derived seed) and
    ``max_tokens``. ``response_format``: ``"json_schema"`` (default: the
    schema's JSON Schema, which vLLM, llama.cpp and Ollama enforce by
    constrained decoding), ``"json_object"`` (JSON mode) or ``None`` (plain
    text). Whatever comes back still goes through the parse layer.

    Transport failures (connection errors, time-outs, HTTP 408/409/425/429/5xx)
    are retried up to ``max_retries`` times with exponential back-off
    (``backoff * 2**k`` seconds, a ``Retry-After`` header honoured up to 30 s);
    other 4xx statuses are not retried. A request that still fails is one
    counted failure (``connection_error``, ``timeout``, ``http_error``); on the
    first sample of a call it raises :class:`GeneratorUnavailableError`. A 2xx
    reply without ``choices[0].message.content`` is ``bad_response``;
    ``finish_reason == "length"`` marks the text truncated. A server that
    refuses ``response_format`` (an HTTP 400 on the first sample, so
    :class:`GeneratorUnavailableError` with its message) works with
    ``response_format="json_object"`` or ``None``.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the served model's name.
        api_key: sent as ``Authorization: Bearer …`` when given.
        timeout: seconds per request (connect and read).
        max_retries: retries of one request after a transport failure.
        backoff: first back-off in seconds.
        max_tokens: completion token limit (``None``: the server's default).
        response_format: ``"json_schema"``, ``"json_object"`` or ``None``.
        extra_body: more JSON fields merged into every request.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        max_tokens: int | None = 1024,
        response_format: str | None = "json_schema",
        extra_body: Mapping[str, Any] | None = None,
        max_reasks: int = 1,
        format_instructions: bool = True,
        progress: bool = False,
    ) -> None:
        if not isinstance(base_url, str):
            raise TypeError(f"base_url must be a str, got {type(base_url).__name__}")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if not isinstance(model, str):
            raise TypeError(f"model must be a str, got {type(model).__name__}")
        if not model:
            raise ValueError("model must not be empty")
        super().__init__(model, max_reasks=max_reasks, format_instructions=format_instructions, progress=progress)
        self.base_url = base_url.rstrip("/")
        if api_key is not None and not isinstance(api_key, str):
            raise TypeError(f"api_key must be a str or None, got {type(api_key).__name__}")
        self.api_key = api_key
        self.timeout = check_float_in("timeout", timeout, 0.0, 86400.0, low_open=True)
        self.max_retries = check_int("max_retries", max_retries, 0, 100)
        self.backoff = check_float_in("backoff", backoff, 0.0, 3600.0)
        self.max_tokens = None if max_tokens is None else check_positive_int("max_tokens", max_tokens)
        if response_format not in (None, "json_schema", "json_object"):
            raise ValueError(f"response_format must be 'json_schema', 'json_object' or None, got {response_format!r}")
        self.response_format = response_format
        if extra_body is not None and not isinstance(extra_body, Mapping):
            raise TypeError(f"extra_body must be a mapping or None, got {type(extra_body).__name__}")
        self.extra_body = dict(extra_body or {})
        self._client: Any = None

    def _http(self) -> Any:
        """The generator's ``httpx.Client`` (one connection pool, created on first use)."""
        if self._client is None:
            import httpx

            self._client = httpx.Client(timeout=self.timeout)
        return self._client

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_client"] = None  # sockets do not pickle: a copy opens its own pool
        return state

    def close(self) -> None:
        """Close the connection pool (a later call opens a new one)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _body(self, prompt: str, schema: type[BaseModel], temperature: float, seed: int) -> dict[str, Any]:
        from .parse import closed_json_schema

        body: dict[str, Any] = {
            "model": self._model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": temperature,
            "seed": seed,
            "n": 1,
        }
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.response_format == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": schema.__name__, "schema": closed_json_schema(schema), "strict": True},
            }
        elif self.response_format == "json_object":
            body["response_format"] = {"type": "json_object"}
        body.update(self.extra_body)
        return body

    def _complete(self, prompt: str, schema: type[BaseModel], temperature: float, seed: int, key: Ask) -> Completion:
        import httpx

        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        body = self._body(prompt, schema, temperature, seed)
        url = f"{self.base_url}/chat/completions"
        errors: list[str] = []
        kind = FailureKind.CONNECTION_ERROR
        raw = ""
        for k in range(self.max_retries + 1):
            wait = self.backoff * 2**k
            try:
                response = self._http().post(url, json=body, headers=headers)
            except httpx.TimeoutException as exc:
                kind, message = FailureKind.TIMEOUT, f"timed out after {self.timeout:g} s ({type(exc).__name__})"
            except httpx.HTTPError as exc:
                kind, message = FailureKind.CONNECTION_ERROR, f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    return self._read(response)
                kind, raw = FailureKind.HTTP_ERROR, response.text[:2000]
                message = f"HTTP {response.status_code}: {raw[:300]}"
                if response.status_code not in _RETRY_STATUS:
                    errors.append(message)
                    break
                retry_after = response.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    wait = max(wait, min(float(retry_after), 30.0))
            errors.append(message)
            if k < self.max_retries and wait > 0:
                time.sleep(wait * (1.0 + 0.1 * random.random()))
        tries = len(errors)
        raise BackendFailure(
            kind, f"{url}: {tries} tr{'y' if tries == 1 else 'ies'} failed: " + " | ".join(errors), raw
        )

    @staticmethod
    def _read(response: Any) -> Completion:
        raw = response.text[:2000]
        try:
            payload = response.json()
            choice = payload["choices"][0]
            content = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise BackendFailure(
                FailureKind.BAD_RESPONSE, f"no choices[0].message.content in the reply ({type(exc).__name__})", raw
            ) from None
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise BackendFailure(FailureKind.BAD_RESPONSE, "message content is not a string", raw)
        return Completion(content, truncated=choice.get("finish_reason") == "length")


class HFGenerator(TextGenerator):
    """A local Hugging Face causal LM decoding under a JSON-schema grammar.

    The schema's JSON Schema is compiled by ``llguidance`` (Microsoft's
    low-level guidance library: a Rust Earley parser over the tokenizer's
    token trie, the engine behind vLLM's, SGLang's and llama.cpp's
    ``guidance`` back ends; no dependencies, a CPU wheel, works with any
    fast tokenizer and transformers 5). At every step the logits of tokens
    that would leave the text outside the language are set to ``-inf``, so the
    text is always a prefix of a valid object; compact JSON is enforced
    (no free whitespace, so a random model cannot spin in blanks). Decoding is
    greedy at ``temperature == 0``, else sampling from ``softmax(logits / T)``
    with a ``torch.Generator`` seeded by the derived seed; samples are decoded
    one by one with a KV cache, so results do not depend on batching.

    Decoding stops when the grammar is complete (or the model emits EOS where
    the grammar allows it); reaching ``max_new_tokens`` first is a counted
    ``truncated`` failure (bound strings and lists with ``max_length`` and
    integers with ``ge``/``le`` to rule it out; a float's digits are unbounded
    in JSON, so a float field can always exhaust the budget). The object is still validated
    by pydantic (validators the JSON Schema cannot express). The model's
    context (``max_position_embeddings`` / ``n_positions``) ends an answer
    like the budget; a prompt that fills it is a ``ValueError`` naming
    ``prompt``. A schema that
    ``llguidance`` cannot compile is refused with ``ValueError`` naming
    ``schema``.

    Args:
        model: a ``transformers`` causal LM (``PreTrainedModel``).
        tokenizer: its fast tokenizer (``PreTrainedTokenizerFast``).
        backend: the constrained-decoding library; only ``"llguidance"``.
        max_new_tokens: the token budget of one answer.
        name: the model name in results (default: ``config.name_or_path`` or
            the class name).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        backend: str = "llguidance",
        max_new_tokens: int = 256,
        name: str | None = None,
        max_reasks: int = 1,
        format_instructions: bool = True,
        progress: bool = False,
    ) -> None:
        from .._validation import check_choice

        check_choice("backend", backend, ("llguidance",))
        try:
            import torch
            import transformers
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("HFGenerator needs torch and transformers (pip install 'dataprobes[qa,torch]')") from exc
        if not isinstance(model, torch.nn.Module) or not hasattr(model, "config"):
            raise TypeError(f"model must be a transformers causal LM, got {type(model).__name__}")
        if not isinstance(tokenizer, transformers.PreTrainedTokenizerFast):
            raise TypeError(
                f"tokenizer must be a fast tokenizer (PreTrainedTokenizerFast), got {type(tokenizer).__name__}"
            )
        if tokenizer.eos_token_id is None:
            raise ValueError("tokenizer must define an eos_token")
        if name is None:
            name = getattr(model.config, "name_or_path", "") or type(model).__name__
        super().__init__(name, max_reasks=max_reasks, format_instructions=format_instructions, progress=progress)
        self.backend = backend
        self.max_new_tokens = check_positive_int("max_new_tokens", max_new_tokens)
        self.hf_model = model
        self.tokenizer = tokenizer
        import inspect

        # transformers >= 5.2x names the KV cache argument ``cache``; earlier versions ``past_key_values``
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._ll_tokenizer: Any = None
        self._grammars: dict[Any, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_ll_tokenizer"] = None  # a Rust object: rebuilt on first use
        state["_grammars"] = {}
        return state

    def _lltok(self) -> Any:
        if self._ll_tokenizer is None:
            import llguidance.hf

            self._ll_tokenizer = llguidance.hf.from_tokenizer(self.tokenizer)
        return self._ll_tokenizer

    def grammar(self, schema: type[BaseModel] | Mapping[str, Any]) -> str:
        """The ``llguidance`` grammar (compact JSON) of a pydantic model class
        (its closed JSON Schema) or of a JSON Schema given as a dict, checked
        against the tokenizer; ``ValueError`` naming ``schema`` when it cannot
        be compiled."""
        import llguidance
        import pydantic

        from .parse import closed_json_schema

        key: Any
        if isinstance(schema, Mapping):
            json_schema, name, key = dict(schema), "(JSON Schema)", json.dumps(schema, sort_keys=True)
        elif isinstance(schema, type) and issubclass(schema, pydantic.BaseModel):
            json_schema, name, key = closed_json_schema(schema), schema.__name__, schema
        else:
            raise TypeError(f"schema must be a pydantic model class or a JSON Schema dict, got {schema!r}")
        cached = self._grammars.get(key)
        if cached is not None:
            return cached
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(
                json_schema, defaults={"whitespace_flexible": False}
            )
        except ValueError as exc:
            raise ValueError(f"schema {name} cannot be compiled to a grammar: {exc}") from None
        is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, self._lltok())
        if is_error:
            raise ValueError(f"schema {name} cannot be enforced by llguidance: {'; '.join(messages)}")
        self._grammars[key] = grammar
        return grammar

    def decode(
        self, prompt: str, schema: type[BaseModel] | Mapping[str, Any], *, temperature: float = 0.0, seed: int = 0
    ) -> Completion:
        """One constrained completion of ``prompt`` (no format instructions, no
        parsing, no re-ask): the text and whether the budget cut it. ``schema``
        is a model class or a JSON Schema dict, so a local model can serve
        ``response_format`` requests behind an OpenAI-compatible endpoint."""
        prompt = _check_prompt(prompt)
        temperature = check_float_in("temperature", temperature, 0.0, 100.0)
        seed = check_seed("seed", seed)
        grammar = self.grammar(schema)
        self._check_fits(prompt)
        was_training = self.hf_model.training
        self.hf_model.eval()
        try:
            return self._decode(prompt, grammar, temperature, seed)
        finally:
            self.hf_model.train(was_training)

    def _check_schema(self, schema: type[BaseModel]) -> None:
        self.grammar(schema)

    def _check_fits(self, prompt: str) -> None:
        """``ValueError`` naming ``prompt`` when it leaves no position of the model's context to answer in."""
        limit = self._context_size()
        if limit is not None:
            n_tok = len(self.tokenizer(prompt)["input_ids"])
            if n_tok >= limit:
                raise ValueError(
                    f"prompt has {n_tok} tokens (with any format instructions), the model's context is {limit} "
                    "positions: shorten the prompt"
                )

    def _context_size(self) -> int | None:
        """The model's position limit (``max_position_embeddings`` / ``n_positions``), if it has one."""
        for attr in ("max_position_embeddings", "n_positions"):
            size = getattr(self.hf_model.config, attr, None)
            if isinstance(size, int) and size > 0:
                return size
        return None

    def _complete(self, prompt: str, schema: type[BaseModel], temperature: float, seed: int, key: Ask) -> Completion:
        if key.attempt == 0:  # a bad argument, not a back end failure: nothing has been generated yet
            self._check_fits(prompt)
        was_training = self.hf_model.training
        self.hf_model.eval()  # no dropout: the answer is a function of the seed alone
        try:
            return self._decode(prompt, self.grammar(schema), temperature, seed)
        except BackendFailure:
            raise
        except (RuntimeError, ValueError, IndexError) as exc:  # torch / matcher failures are counted
            raise BackendFailure(FailureKind.BACKEND_ERROR, f"{type(exc).__name__}: {exc}") from exc
        finally:
            self.hf_model.train(was_training)

    def _decode(self, prompt: str, grammar: str, temperature: float, seed: int) -> Completion:
        import llguidance
        import llguidance.numpy as llnp
        import numpy as np
        import torch

        lltok = self._lltok()
        matcher = llguidance.LLMatcher(lltok, grammar)
        vocab = int(lltok.vocab_size)
        bitmask = llnp.allocate_token_bitmask(1, vocab)
        eos = int(self.tokenizer.eos_token_id)
        model = self.hf_model
        device = next(model.parameters()).device
        ids = self.tokenizer(prompt, return_tensors="pt")["input_ids"].to(device)
        limit = self._context_size()
        budget = self.max_new_tokens if limit is None else min(self.max_new_tokens, limit - int(ids.shape[1]))
        if budget <= 0:  # a re-ask prompt that outgrew the context: counted, like any back end failure
            raise BackendFailure(
                FailureKind.BACKEND_ERROR, f"prompt has {int(ids.shape[1])} tokens, the model's context is {limit}"
            )
        gen = torch.Generator(device="cpu").manual_seed(seed)
        out: list[int] = []
        past = None
        step_input = ids
        finished = False
        with torch.inference_mode():
            for _ in range(budget):  # the context's end cuts an answer like the token budget: ``truncated``
                if matcher.is_stopped():
                    finished = True
                    break
                output = model(input_ids=step_input, use_cache=True, **{self._cache_arg: past})
                past = getattr(output, "cache", None) or getattr(output, "past_key_values", None)
                logits = output.logits[0, -1].float().cpu()
                llnp.fill_next_token_bitmask(matcher, bitmask, 0)
                allowed = np.unpackbits(bitmask[0].view(np.uint8), bitorder="little")[:vocab].astype(bool)
                if matcher.is_error():
                    raise BackendFailure(FailureKind.BACKEND_ERROR, f"grammar matcher: {matcher.get_error()}")
                mask = torch.full_like(logits, float("-inf"))
                width = min(vocab, logits.shape[0])
                keep = torch.from_numpy(allowed[:width])
                mask[:width] = torch.where(keep, 0.0, float("-inf"))
                logits = logits + mask
                if not torch.isfinite(logits).any():
                    raise BackendFailure(FailureKind.BACKEND_ERROR, "the grammar allows no token of the model")
                if temperature == 0.0:
                    token = int(torch.argmax(logits))
                else:
                    probs = torch.softmax(logits.double() / temperature, dim=-1)
                    token = int(torch.multinomial(probs, 1, generator=gen))
                if token == eos:
                    finished = matcher.is_accepting()
                    break
                if not matcher.consume_token(token):
                    raise BackendFailure(FailureKind.BACKEND_ERROR, f"grammar matcher: {matcher.get_error()}")
                out.append(token)
                step_input = torch.tensor([[token]], device=device)
            else:
                finished = matcher.is_stopped() or matcher.is_accepting()
        text = str(self.tokenizer.decode(out, skip_special_tokens=False))
        return Completion(text, truncated=not finished)
