"""Turning a language model's text into a validated object, or a counted failure.

An unconstrained model asked for JSON answers with code fences, a preamble,
trailing prose, trailing commas, single quotes, numbers written as strings,
renamed keys, or a cut-off object. Ragas turned such an answer into an empty
value and failed later with a ``ZeroDivisionError`` (ragas #945, #977, #989,
#1681). This module never does that: :func:`parse_object` returns either an
instance of the requested pydantic model or a failure of a documented kind
(:class:`~dataprobes.qa.generate.FailureKind`) with the text and the error.

The steps (docs/math.md, "QA synthesis"):

1. :func:`strip_fences`: the content of the first Markdown code fence that
   holds a ``{``; an opening fence that never closes is dropped.
2. :func:`json_object_spans`: balanced ``{ … }`` spans, found by string-aware
   brace matching (braces inside ``"…"`` or ``'…'`` strings, with backslash
   escapes, do not count), so a preamble and trailing prose fall away. No
   ``{`` → ``no_json``; a ``{`` that never closes → ``unbalanced`` (or
   ``truncated`` when the back end says it stopped at its token limit). A cut
   object is never completed (closing it would invent a shorter answer), and
   no ``{`` after an unclosed one is tried: it lies inside the cut object.
3. ``json.loads``; when that fails, the exact string-aware rewrites of single
   quotes and trailing commas (raw control characters allowed in strings);
   when that fails, ``json_repair`` (unquoted keys, comments, missing commas:
   heuristic, and it can change content, e.g. strip a string's trailing
   newline, so it comes last). Non-finite numbers (``NaN``,
   ``Infinity``, ``1e999``, and strings such as ``"NaN"`` that lax validation
   would read as floats) and a repair that empties a non-empty object are
   ``invalid_json``.
4. Keys the schema does not know (a renamed key would otherwise be dropped and
   its field silently take its default) and pydantic validation errors are
   ``schema_violation``. Validation runs in pydantic's default (lax) mode, so
   ``"1"`` for an ``int`` field and ``"true"`` for a ``bool`` are accepted.

The first span that loads as an object and validates wins; when none does, the
failure reported is ``unbalanced`` / ``truncated`` if an object was left open,
else that of the first balanced span.
"""

from __future__ import annotations

import functools
import json
import math
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from .generate import FailureKind

__all__ = [
    "MAX_CANDIDATES",
    "Parsed",
    "check_schema",
    "closed_json_schema",
    "format_instructions",
    "json_object_spans",
    "parse_object",
    "reask_prompt",
    "strip_fences",
]

T = TypeVar("T", bound=BaseModel)

MAX_CANDIDATES = 64
"""At most this many ``{`` positions are tried as the start of an object (each
try scans the rest of the text, so the parse costs at most ``64 × len(text)``)."""

_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_+.-]*[ \t]*\r?\n?(.*?)```", re.S)
_OPEN_FENCE = re.compile(r"\A\s*```[^\n]*\n?")


@dataclass(frozen=True)
class Parsed(Generic[T]):
    """The outcome of :func:`parse_object`: ``value`` (an instance of the
    schema) or ``kind`` and ``error``; ``repaired`` when the rewrites or
    ``json_repair`` were needed; ``span`` the JSON text used (``""`` when none was found)."""

    value: T | None
    kind: FailureKind | None
    error: str
    repaired: bool
    span: str

    @property
    def ok(self) -> bool:
        """Whether a valid object was recovered."""
        return self.value is not None


def strip_fences(text: str) -> str:
    """The content of the first Markdown code fence (```` ```json … ``` ````) that
    holds a ``{``, else ``text`` without an unclosed opening fence line."""
    for match in _FENCE.finditer(text):
        if "{" in match.group(1):
            return match.group(1)
    return _OPEN_FENCE.sub("", text, count=1)


_OUTSIDE = re.compile(r"[{}\"']")
_IN_DOUBLE = re.compile(r'["\\]')
_IN_SINGLE = re.compile(r"['\\]")


def _string_end(text: str, start: int) -> int:
    """Index one past the quote closing the string that opens at ``start``
    (backslash escapes), or -1 when the text ends first."""
    pattern = _IN_DOUBLE if text[start] == '"' else _IN_SINGLE
    pos = start + 1
    while True:
        m = pattern.search(text, pos)
        if m is None:
            return -1
        if m.group() == "\\":
            pos = m.end() + 1
            continue
        return m.end()


def _scan_balanced(text: str, start: int) -> int:
    """Index one past the ``}`` closing the ``{`` at ``start``, or -1 when the
    text ends first. Braces inside ``"…"`` / ``'…'`` strings (backslash escapes)
    do not count."""
    depth = 0
    pos = start
    while True:
        m = _OUTSIDE.search(text, pos)
        if m is None:
            return -1
        c = m.group()
        if c == "{":
            depth += 1
            pos = m.end()
        elif c == "}":
            depth -= 1
            pos = m.end()
            if depth == 0:
                return pos
        else:
            pos = _string_end(text, m.start())
            if pos == -1:
                return -1


def _normalise(span: str) -> str:
    r"""The exact rewrites of two common defects, string-aware: single-quoted
    strings become double-quoted (``\'`` unescaped, ``"`` escaped, other escapes
    kept) and a comma before ``}`` or ``]`` is dropped. Content is never changed."""
    out: list[str] = []
    pos = 0
    n = len(span)
    while pos < n:
        m = _OUTSIDE_OR_COMMA.search(span, pos)
        if m is None:
            out.append(span[pos:])
            break
        out.append(span[pos : m.start()])
        c = m.group()
        if c in "\"'":
            end = _string_end(span, m.start())
            closed = end != -1
            end = end if closed else n
            if c == '"':
                out.append(span[m.start() : end])
            else:
                inner = span[m.start() + 1 : end - 1 if closed else end]
                out.append('"' + _SINGLE_ESCAPES.sub(_requote, inner) + '"')
            pos = end
        elif c == "," and _TRAILING_COMMA.match(span, m.start()):
            pos = m.end()
        else:
            out.append(c)
            pos = m.end()
    return "".join(out)


_OUTSIDE_OR_COMMA = re.compile(r"[{}\"',]")
_TRAILING_COMMA = re.compile(r",[ \t\r\n]*[}\]]")
_SINGLE_ESCAPES = re.compile(r"\\.|\"", re.S)


def _requote(m: re.Match[str]) -> str:
    s = m.group()
    if s == "\\'":
        return "'"
    if s == '"':
        return '\\"'
    return s


def json_object_spans(text: str, max_candidates: int = MAX_CANDIDATES) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each balanced ``{ … }`` span, left to right, skipping
    spans nested in an earlier one; a ``{`` whose object never closes yields
    ``(start, -1)`` and ends the search (the rest of the text is inside it)."""
    pos = text.find("{")
    tried = 0
    while pos != -1 and tried < max_candidates:
        tried += 1
        end = _scan_balanced(text, pos)
        yield pos, end
        if end == -1:
            return
        pos = text.find("{", end)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} is not JSON")


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(_finite(v) for v in value)
    return True


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of the float range (overflows to infinity)")
    return value


_STRICT = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_LENIENT = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float, strict=False)


def _load(span: str) -> tuple[dict[str, Any] | None, bool, str]:
    """``(object, repaired, error)``: strict ``json.loads``, then the exact
    rewrites of :func:`_normalise` (control characters allowed in strings),
    then ``json_repair``."""
    try:
        obj = _STRICT.decode(span)
        if isinstance(obj, dict):
            return obj, False, ""
        strict_error = f"not a JSON object: {type(obj).__name__}"
    except (ValueError, RecursionError) as exc:
        strict_error = str(exc)
        if "out of the float range" in strict_error:
            return None, False, strict_error
    try:  # the exact rewrites first: no heuristics, no change of content
        obj = _LENIENT.decode(_normalise(span))
        if isinstance(obj, dict):
            return obj, True, ""
    except (ValueError, RecursionError):
        pass
    import json_repair

    try:
        obj = json_repair.loads(span)
    except Exception as exc:  # json_repair is heuristic; any failure of it is a parse failure
        return None, True, f"{strict_error}; repair failed: {exc}"
    if not isinstance(obj, dict):
        return None, True, f"{strict_error}; repair gave {type(obj).__name__}, not an object"
    if not obj and span[1:-1].strip():
        return None, True, f"{strict_error}; repair emptied a non-empty object"
    if not _finite(obj):
        return None, True, "non-finite number (NaN, Infinity or out of the float range) in the object"
    return obj, True, ""


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic model classes an annotation can hold directly or as items
    (``Model``, ``Model | None``, ``list[Model]``, ``dict[str, Model]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    origin = typing.get_origin(annotation)
    if origin is None and not isinstance(annotation, types.UnionType):
        return out
    for arg in typing.get_args(annotation):
        out.extend(_models_in(arg))
    return out


@functools.lru_cache(maxsize=1024)
def _key_plan(schema: type[BaseModel]) -> tuple[frozenset[str] | None, tuple[tuple[str, str | None, Any, bool], ...]]:
    """Per schema, once: the keys it declares (names and string aliases; ``None``
    when it allows extra keys) and its fields that hold exactly one nested model
    ``(name, alias, model, is a dict of models)``."""
    if schema.model_config.get("extra") == "allow":
        return None, ()
    keys = set()
    nested = []
    for name, field in schema.model_fields.items():
        keys.add(name)
        alias = field.alias if isinstance(field.alias, str) else None
        if alias:
            keys.add(alias)
        if isinstance(field.validation_alias, str):
            keys.add(field.validation_alias)
        models = _models_in(field.annotation)
        if len(models) == 1:
            nested.append((name, alias, models[0], typing.get_origin(field.annotation) is dict))
    return frozenset(keys), tuple(nested)


def _unknown_keys(schema: type[BaseModel], obj: Any, path: str = "") -> list[str]:
    """Dotted paths of keys in ``obj`` that ``schema`` (and the models nested in
    it) does not declare; empty when the model allows extra keys."""
    if not isinstance(obj, dict):
        return []
    allowed, nested = _key_plan(schema)
    if allowed is None:
        return []
    bad = [f"{path}{k}" for k in obj if k not in allowed]
    for name, alias, model, is_dict in nested:
        value = obj.get(name, obj.get(alias) if alias else None)
        if isinstance(value, dict):
            if is_dict:
                for k, v in value.items():
                    bad.extend(_unknown_keys(model, v, f"{path}{name}.{k}."))
            else:
                bad.extend(_unknown_keys(model, value, f"{path}{name}."))
        elif isinstance(value, list):
            for j, item in enumerate(value):
                bad.extend(_unknown_keys(model, item, f"{path}{name}[{j}]."))
    return bad


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(object)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def parse_object(text: str, schema: type[T], *, truncated: bool = False) -> Parsed[T]:
    """Recover one instance of ``schema`` from a model's ``text``, or say why not.

    ``truncated=True`` means the back end stopped at its token limit: an
    unclosed object is then reported as ``truncated`` rather than
    ``unbalanced``. Never raises for bad text; ``TypeError`` for a ``text``
    that is not a string or a ``schema`` that is not a pydantic model class.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    check_schema(schema)
    body = strip_fences(text)
    brace = body.find("{")
    if brace >= 0:  # fast path: the C decoder finds the end of a well-formed first object itself
        try:
            obj, end = _STRICT.raw_decode(body, brace)
        except (ValueError, RecursionError):
            pass
        else:
            if isinstance(obj, dict):
                fast = _check(obj, schema, body[brace:end], False)
                if fast.value is not None:
                    return fast
    first: Parsed[T] | None = None
    saw_unbalanced = False
    for start, end in json_object_spans(body):
        if end == -1:
            saw_unbalanced = True  # every later '{' lies inside this unclosed object: none is trusted
            break
        span = body[start:end]
        loaded, repaired, error = _load(span)
        if loaded is None:
            first = first or Parsed(None, FailureKind.INVALID_JSON, error, repaired, span)
            continue
        outcome = _check(loaded, schema, span, repaired)
        if outcome.value is not None:
            return outcome
        first = first or outcome
    if saw_unbalanced:
        kind = FailureKind.TRUNCATED if truncated else FailureKind.UNBALANCED
        why = "the back end stopped at its token limit" if truncated else "the text ends"
        return Parsed(None, kind, f"a JSON object opens but never closes ({why})", False, "")
    if first is not None:
        return first
    what = "empty text" if not text.strip() else "no '{' in the text"
    kind = FailureKind.TRUNCATED if truncated and text.strip() else FailureKind.NO_JSON
    return Parsed(None, kind, f"no JSON object: {what}", False, "")


_NONFINITE_TEXT = re.compile(r"(?i)nan|inf")  # cheap pre-check before a model_dump walk


def _check(obj: dict[str, Any], schema: type[T], span: str, repaired: bool) -> Parsed[T]:
    """Unknown keys, pydantic validation and the non-finite guard for one loaded object."""
    unknown = _unknown_keys(schema, obj)
    if unknown:
        expected = ", ".join(sorted(schema.model_fields))
        msg = f"unexpected keys {', '.join(repr(k) for k in unknown)} (expected {expected})"
        return Parsed(None, FailureKind.SCHEMA_VIOLATION, msg, repaired, span)
    try:
        value = schema.model_validate(obj)
    except ValidationError as exc:
        return Parsed(None, FailureKind.SCHEMA_VIOLATION, _validation_message(exc), repaired, span)
    # lax validation reads strings such as "NaN" or "inf" as floats
    if _NONFINITE_TEXT.search(span) and not _finite(value.model_dump()):
        msg = "non-finite number (NaN or Infinity) in the validated object"
        return Parsed(None, FailureKind.INVALID_JSON, msg, repaired, span)
    return Parsed(value, None, "", repaired, span)


def check_schema(schema: Any) -> type[BaseModel]:
    """``schema`` if it is a pydantic model class, else ``TypeError`` naming it."""
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise TypeError(f"schema must be a pydantic BaseModel subclass, got {schema!r}")
    return schema


def _close_objects(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _close_objects(v) for k, v in node.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_close_objects(v) for v in node]
    return node


def closed_json_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """``schema.model_json_schema()`` with ``"additionalProperties": false`` on
    every object that has ``properties`` and does not say otherwise (pydantic
    ignores unknown keys by default and so leaves it out; a grammar built from
    the open schema lets a model invent keys). A model with ``extra="allow"``
    keeps its ``true``."""
    check_schema(schema)
    closed = _close_objects(schema.model_json_schema())
    assert isinstance(closed, dict)
    return closed


def format_instructions(schema: type[BaseModel]) -> str:
    """The instruction appended to a prompt: answer with one JSON object that
    matches the schema's JSON Schema (``model_json_schema()``)."""
    check_schema(schema)
    text = json.dumps(closed_json_schema(schema), separators=(",", ":"), sort_keys=True)
    return f"\n\nAnswer with exactly one JSON object and nothing else. It must match this JSON Schema:\n{text}"


def reask_prompt(prompt: str, previous: str, error: str) -> str:
    """The bounded re-ask: the original prompt, the rejected answer and the
    validation error, then the request to answer again with the object only."""
    return (
        f"{prompt}\n\nYour previous answer was:\n{previous}\n\n"
        f"It was rejected: {error}\n"
        "Answer again with exactly one corrected JSON object and nothing else."
    )
