r"""A generator that emits known JSON defects at known rates.

:class:`FaultyGenerator` answers every prompt with a known, valid object
written with defects drawn independently at the rates given, the ones local
models produce when asked for JSON (ragas #945, #977, #989, #1681):

============== ========================================================== ===========================
defect         what the text looks like                                   recoverable by parsing?
============== ========================================================== ===========================
fence          the object inside a Markdown ```` ```json ```` fence       yes (fence stripped)
preamble       "Sure! Here's the JSON …" before the object                yes (first balanced object)
trailing_prose "Let me know if you'd like {more} …" after it               yes
trailing_comma a comma before every closing ``}`` / ``]``                  yes (``json_repair``)
single_quotes  keys and strings in single quotes (inner ``'`` escaped)    yes (``json_repair``)
string_verdict numbers and booleans written as strings (``"1"``)           yes for ``int``/``float``/``bool``
                                                                          fields (pydantic lax mode)
truncation     the text cut at a uniform position inside the object       no: ``unbalanced``, re-asked
wrong_keys     one top-level key capitalised (``answer`` → ``Answer``)    no: ``schema_violation``, re-asked
============== ========================================================== ===========================

Which defects hit attempt ``a`` of sample ``i`` of a call with seed ``s`` is a
function of the generator's seed, ``s``, ``i`` and ``a`` only, and the object
of sample ``i`` does not depend on ``a`` (a re-ask gets the same object with
fresh defects), so :meth:`FaultyGenerator.emission` can replay what any attempt
emitted. ``benches/bench_qa_parse.py`` reports the recovered fraction per
defect.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from .._validation import check_probability
from .generate import Ask, BackendFailure, Completion, FailureKind, TextGenerator, derive_seed
from .parse import check_schema

__all__ = ["DEFECTS", "Emission", "FaultyGenerator", "inject_defects"]

DEFECTS: tuple[str, ...] = (
    "fence",
    "preamble",
    "trailing_prose",
    "trailing_comma",
    "single_quotes",
    "string_verdict",
    "truncation",
    "wrong_keys",
)
"""The defect names, in the order :func:`inject_defects` applies them."""

_PREAMBLES = (
    "Sure! Here's the JSON you asked for:\n\n",
    "Of course. The answer, as a JSON object:\n",
    "Here is the object in the requested {key: value} format:\n",
)
_TRAILERS = (
    "\n\nLet me know if you'd like {more} examples!",
    "\nI hope this helps.",
    "\n\nNote: the object above follows the schema.",
)


def _check_defects(defects: Iterable[str]) -> list[str]:
    if isinstance(defects, str) or not isinstance(defects, Iterable):
        raise TypeError(f"defects must be an iterable of defect names, got {type(defects).__name__}")
    out = []
    for d in defects:
        if not isinstance(d, str):
            raise TypeError(f"defects must hold defect names (str), got {type(d).__name__}")
        if d not in DEFECTS:
            raise ValueError(f"defects: unknown defect {d!r}; known: {', '.join(DEFECTS)}")
        out.append(d)
    return out


def _stringify_scalars(value: Any) -> Any:
    """Numbers and booleans as JSON-text strings (``1`` → ``"1"``, ``True`` → ``"true"``)."""
    if isinstance(value, dict):
        return {k: _stringify_scalars(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify_scalars(v) for v in value]
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return value


def _quote(s: str, single: bool) -> str:
    text = json.dumps(s, ensure_ascii=False)
    if not single:
        return text
    inner = text[1:-1].replace('\\"', '"').replace("'", "\\'")
    return f"'{inner}'"


def _dumps(value: Any, *, single: bool, trailing: bool) -> str:
    """JSON text with optional single quotes and trailing commas."""
    if isinstance(value, dict):
        items = [f"{_quote(str(k), single)}: {_dumps(v, single=single, trailing=trailing)}" for k, v in value.items()]
        tail = "," if trailing and items else ""
        return "{" + ", ".join(items) + tail + "}"
    if isinstance(value, list):
        parts = [_dumps(v, single=single, trailing=trailing) for v in value]
        tail = "," if trailing and parts else ""
        return "[" + ", ".join(parts) + tail + "]"
    if isinstance(value, str):
        return _quote(value, single)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("objects must not hold NaN or infinite numbers")
    return json.dumps(value)


def _wrong_key(key: str, taken: Iterable[str]) -> str:
    new = key[:1].upper() + key[1:]
    if new == key:
        new = key + "_"
    while new in taken:
        new += "_"
    return new


def inject_defects(obj: BaseModel | Mapping[str, Any], defects: Iterable[str], *, seed: int = 0) -> str:
    """The JSON text of ``obj`` with the named ``defects`` (see the module table).

    ``seed`` picks the preamble / trailer wording, the renamed key and the
    truncation point. Without defects the text is ``json.dumps`` of
    ``obj.model_dump(mode="json")``, which validates back into ``obj``.
    """
    chosen = set(_check_defects(defects))
    if isinstance(obj, BaseModel):
        data = obj.model_dump(mode="json", by_alias=True)
    elif isinstance(obj, Mapping):
        data = dict(obj)
    else:
        raise TypeError(f"obj must be a pydantic model instance or a mapping, got {type(obj).__name__}")
    rng = random.Random(seed)
    if "string_verdict" in chosen:
        data = _stringify_scalars(data)
    if "wrong_keys" in chosen and data:
        keys = list(data)
        victim = keys[rng.randrange(len(keys))]
        renamed = _wrong_key(victim, keys)
        data = {(renamed if k == victim else k): v for k, v in data.items()}
    text = _dumps(data, single="single_quotes" in chosen, trailing="trailing_comma" in chosen)
    truncated = "truncation" in chosen
    if truncated:
        text = text[: rng.randrange(1, len(text) - 1)] if len(text) > 2 else text[:1]
    if "fence" in chosen:
        text = "```json\n" + text + ("" if truncated else "\n```")
    if "preamble" in chosen:
        text = _PREAMBLES[rng.randrange(len(_PREAMBLES))] + text
    if "trailing_prose" in chosen and not truncated:
        text = text + _TRAILERS[rng.randrange(len(_TRAILERS))]
    return text


@dataclass(frozen=True)
class Emission:
    """What one attempt emitted: the true ``object``, the ``defects`` applied
    and the ``text``."""

    object: BaseModel
    defects: tuple[str, ...]
    text: str


class FaultyGenerator(TextGenerator):
    """A :class:`~dataprobes.qa.generate.Generator` whose "model" answers with a
    known object and injects JSON defects at known rates.

    Args:
        objects_source: a non-empty sequence of objects (sample ``i`` of a call
            with seed ``s`` answers ``objects[derive_seed(s, i) % len]``) or a
            callable ``fn(prompt, schema, seed) -> object`` (the caller's
            prompt and the sample's seed, the same for its re-asks); an object is an instance
            of the requested schema or a mapping that validates into it.
        defects: ``{defect name: probability}``; each defect is applied to an
            attempt independently with its probability.
        seed: mixed into every draw, so two generators with different seeds
            emit different defects for the same call.
        model: the model name in results.
        max_reasks, progress: as for every generator; prompts get no format
            instructions (the "model" ignores them).
    """

    def __init__(
        self,
        objects_source: Sequence[BaseModel | Mapping[str, Any]] | Callable[..., Any],
        defects: Mapping[str, float],
        seed: int = 0,
        *,
        model: str = "faulty",
        max_reasks: int = 1,
        progress: bool = False,
    ) -> None:
        super().__init__(model, max_reasks=max_reasks, format_instructions=False, progress=progress)
        if callable(objects_source):
            self._objects: Sequence[Any] | None = None
            self._source: Callable[..., Any] | None = objects_source
        elif isinstance(objects_source, Sequence) and not isinstance(objects_source, (str, bytes)):
            if len(objects_source) == 0:
                raise ValueError("objects_source must not be empty")
            for j, o in enumerate(objects_source):
                if not isinstance(o, (BaseModel, Mapping)):
                    raise TypeError(
                        f"objects_source[{j}] must be a pydantic model instance or a mapping, got {type(o).__name__}"
                    )
            self._objects, self._source = list(objects_source), None
        else:
            raise TypeError(
                f"objects_source must be a sequence of objects or a callable, got {type(objects_source).__name__}"
            )
        if not isinstance(defects, Mapping):
            raise TypeError(f"defects must be a mapping of defect name to probability, got {type(defects).__name__}")
        _check_defects(defects)
        self.defects = {d: check_probability(f"defects[{d!r}]", p) for d, p in defects.items()}
        from .._validation import check_seed

        self.seed = check_seed("seed", seed)

    def _object(self, prompt: str, schema: type[BaseModel], sample_seed: int) -> BaseModel:
        if self._objects is not None:
            raw = self._objects[sample_seed % len(self._objects)]
        else:
            assert self._source is not None
            try:
                raw = self._source(prompt, schema, sample_seed)
            except Exception as exc:  # the source plays the model: its failure is counted
                raise BackendFailure(FailureKind.BACKEND_ERROR, f"{type(exc).__name__}: {exc}") from exc
        if isinstance(raw, schema):
            return raw
        if isinstance(raw, Mapping):
            return schema.model_validate(dict(raw))
        raise TypeError(f"objects_source gave a {type(raw).__name__}, not a {schema.__name__} or a mapping")

    def emission(self, prompt: str, schema: type[BaseModel], call_seed: int, sample: int, attempt: int = 0) -> Emission:
        """What attempt ``attempt`` of sample ``sample`` of a call with seed
        ``call_seed`` emits (the object, the defects drawn, the text)."""
        check_schema(schema)
        mix = derive_seed(self.seed, call_seed & 0xFFFFFFFFFFFFFFFF)
        obj = self._object(prompt, schema, derive_seed(mix, sample, 0))
        rng = random.Random(derive_seed(mix, sample, attempt + 1))
        drawn = tuple(d for d in DEFECTS if d in self.defects and rng.random() < self.defects[d])
        text = inject_defects(obj, drawn, seed=rng.getrandbits(32))
        return Emission(obj, drawn, text)

    def _complete(self, prompt: str, schema: type[BaseModel], temperature: float, seed: int, key: Ask) -> Completion:
        return Completion(self.emission(key.prompt, schema, key.seed, key.sample, key.attempt).text)
