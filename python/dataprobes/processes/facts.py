"""Fact worlds: a probe with planted knowledge and known exposure.

A :class:`FactWorld` holds ``F`` facts ``(subject, relation, object)``, each
stated through ``T`` templates (distinct token patterns around subject,
relation and object), inserted into the text of a background process. How
often each fact is stated follows its exposure count (a Zipf law, or given),
so the memorisation strength a model can reach is graded and known. The law
is exact (docs/math.md, "Knowledge probes (fact worlds)"):

* a sequence is a chain of *units*; before each unit a statement starts with
  probability ``q`` (``statement_prob``), otherwise the next background token
  is emitted;
* a statement is fact ``f ~ w`` (``w_f ∝ exposure_f``) under template
  ``t ~ Uniform(T)``, emitted token by token; sequences are cut at ``length``
  (a statement may be cut);
* with a *template coverage* (``template_coverage``: a mask ``m_{f,t}`` with
  ``k_f = Σ_t m_{f,t}`` templates per fact) the pair is drawn jointly,
  ``P(f, t) = w_f m_{f,t} / k_f``: fact ``f`` is only ever stated through its
  own ``k_f`` templates, so a model can know it under some phrasings only
  (planted partial knowledge);
* the background tokens of a sequence, read alone, are a sample of the
  background process: it continues across statements.

Subject, relation, object, template-filler and question tokens are disjoint
from the background's, so every sequence parses into its units and
``log_prob`` / ``token_log_probs`` / ``predictive`` are exact. Question tokens
(:meth:`FactWorld.question`) never occur in the pretraining law: they form the
QA format for fine-tuning and evaluation. Every token has a word
(:attr:`FactWorld.words`), so the same world feeds text pipelines.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._validation import (
    as_indices,
    as_tokens,
    check_choice,
    check_float,
    check_int,
    check_probability,
    check_process,
    check_seed,
    log_base,
    real_array,
    start_indices,
    unit_name,
)
from ..stats.estimate import Estimate
from ..stats.typicality import TypicalityReport
from .base import Process, _owned, _typicality_input

__all__ = ["FactWorld"]

# slot codes of a template pattern (fillers are token ids >= 0)
_SUBJ, _REL, _OBJ, _PAD = -1, -2, -3, -4
# token kinds
_BG, _SUBJECT, _RELATION, _OBJECT, _FILLER, _QA = range(6)
_NAME_KEYS = ("background", "subjects", "relations", "objects")
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
#: largest ``num_facts * num_templates`` a template coverage may span
_MAX_MASK = 1 << 26
_COVERAGE_SEED = 0xC0FE


def _coverage_mask(value: Any, f: int, t: int, seed: int) -> tuple[np.ndarray, Any]:
    """The ``[F, T]`` bool coverage mask of ``template_coverage`` (an int
    ``k``, ``F`` sizes ``k_f`` or a bool mask) and the argument as kept in
    the law. Sizes draw each fact's templates as a uniformly random subset,
    from ``(seed, 0xC0FE)``: ``k`` and ``[k] * F`` give the same mask."""
    name = "template_coverage"
    if f * t > _MAX_MASK:
        raise ValueError(f"{name} needs num_facts * num_templates <= 2**26, got {f} * {t}")
    given: Any
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be None, an int, {f} per-fact ints or a bool [{f}, {t}] mask, got bool")
    if isinstance(value, numbers.Integral):
        k = check_int(name, value, 1, t)
        sizes = np.full(f, k, dtype=np.int64)
        given = k
    else:
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{name} must be an int, per-fact ints or a bool mask: {exc}") from None
        if arr.ndim == 2 and arr.dtype == np.bool_:
            if arr.shape != (f, t):
                raise ValueError(f"{name} as a mask must have shape ({f}, {t}) (facts, templates), got {arr.shape}")
            mask = np.array(arr, dtype=bool)  # a copy
            if not mask.any(axis=1).all():
                empty = int(np.flatnonzero(~mask.any(axis=1))[0])
                raise ValueError(f"{name}: every fact needs at least one template, row {empty} is empty")
            return mask, _owned(mask.copy(), value)
        if arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer):
            if arr.shape != (f,):
                raise ValueError(f"{name} as sizes must hold one int per fact ({f}), got shape {arr.shape}")
            lo, hi = int(arr.min()), int(arr.max())  # before the cast: a uint64 above 2**63 must not wrap
            if lo < 1 or hi > t:
                raise ValueError(f"{name} sizes must lie in [1, {t}] (num_templates), got [{lo}, {hi}]")
            sizes = arr.astype(np.int64)
            given = _owned(sizes.copy(), value)
        else:
            raise TypeError(
                f"{name} must be an int, a 1-D int array of {f} sizes or a 2-D bool [{f}, {t}] mask, "
                f"got a {arr.ndim}-D array of dtype {arr.dtype}"
            )
    rng = np.random.default_rng([seed, _COVERAGE_SEED])
    mask = np.zeros((f, t), dtype=bool)
    step = max(1, (1 << 20) // t)
    cols = np.arange(t)
    for lo in range(0, f, step):  # ranks of uniform keys, in row chunks of ~1M cells
        order = np.argsort(rng.random((min(step, f - lo), t)), axis=1, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.broadcast_to(cols, order.shape), axis=1)
        mask[lo : lo + len(order)] = ranks < sizes[lo : lo + len(order), None]
    return mask, given


def _lookup(keys: np.ndarray, values: np.ndarray, code: np.ndarray) -> np.ndarray:
    """``values`` at ``code`` in the sorted ``keys`` (0 where absent)."""
    if not len(keys):
        return np.zeros(code.shape)
    pos = np.minimum(np.searchsorted(keys, code), len(keys) - 1)
    return np.where(keys[pos] == code, values[pos], 0.0)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _uniforms(seed: int, rows: np.ndarray, position: int, stream: int) -> np.ndarray:
    """Counter-based uniforms in [0, 1): one per sequence index of ``rows``,
    a function of ``(seed, row, position, stream)`` only."""
    key = _mix(np.array([seed ^ 0x6A09E667F3BCC909], dtype=np.uint64))
    h = _mix(rows ^ key)
    h = _mix(h + np.uint64((position * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF))
    h = _mix(h + np.uint64(stream + 1))
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def _token_dtype(vocab_size: int) -> type:
    return np.uint8 if vocab_size <= 256 else np.uint16 if vocab_size <= 65536 else np.uint32


def _words(rng: np.random.Generator, count: int, syllables: tuple[int, int], taken: set[str]) -> list[str]:
    """``count`` new pronounceable lowercase words, none in ``taken`` (updated)."""
    out: list[str] = []
    lo, hi = syllables
    misses = 0
    while len(out) < count:
        k = int(rng.integers(lo, hi + 1))
        w = "".join(_CONSONANTS[int(rng.integers(len(_CONSONANTS)))] + _VOWELS[int(rng.integers(5))] for _ in range(k))
        if w not in taken:
            taken.add(w)
            out.append(w)
            misses = 0
        else:
            misses += 1
            if misses > 64:  # the short words are used up: longer ones
                lo, hi, misses = hi, hi + 1, 0
    return out


def _check_names(names: Any, sizes: dict[str, int]) -> dict[str, list[str]]:
    if names is None:
        return {}
    if not isinstance(names, Mapping):
        raise TypeError(f"names must be a mapping of {_NAME_KEYS} to lists of words, got {type(names).__name__}")
    out: dict[str, list[str]] = {}
    for key, value in names.items():
        if key not in _NAME_KEYS:
            raise ValueError(f"names: unknown key {key!r} (expected some of {_NAME_KEYS})")
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise TypeError(f"names[{key!r}] must be a sequence of strings, got {type(value).__name__}")
        words = list(value)
        if len(words) != sizes[key]:
            raise ValueError(f"names[{key!r}] must hold {sizes[key]} words, got {len(words)}")
        for i, w in enumerate(words):
            if not isinstance(w, str):
                raise TypeError(f"names[{key!r}][{i}] must be a string, got {type(w).__name__}")
            if not w or w.split() != [w]:
                raise ValueError(f"names[{key!r}][{i}] must be one non-empty word without spaces, got {w!r}")
        out[key] = words
    return out


class FactWorld(Process):
    """Background text with fact statements planted at known exposure.

    Args:
        num_facts: ``F >= 1`` facts, distinct (subject, relation) pairs.
        num_relations: ``R >= 1`` relations.
        num_templates: ``T >= 1`` statement templates. Template ``t`` is the
            pattern ``open_t A g… B g… O c?`` with ``(A, B)`` = (subject,
            relation) or (relation, subject), 0-1 fillers between them, 1-2
            before the object and an optional closer: every filler token is
            the template's own, and ``open_t`` identifies the template.
        background: the process whose text the statements are inserted in.
        num_subjects: default ``ceil(F / R)``; ``F <= num_subjects * R``.
        num_objects: size of the object pool (default ``num_subjects``); each
            fact's object is uniform over it.
        exposure: ``"zipf"`` (``count_f = (f + 1) ** -zipf_exponent``: fact 0
            is the most exposed), ``"uniform"``, or ``F`` non-negative counts
            (not all 0; a fact of count 0 is never stated: an unseen control).
        zipf_exponent: the Zipf exponent ``a >= 0``.
        statement_prob: ``q``, the probability that a statement starts at a
            unit boundary.
        template_coverage: ``None`` (every fact under every template,
            ``t ~ Uniform(T)``), an int ``k`` in ``[1, T]`` (each fact is
            stated under ``k`` templates only: a random subset per fact, drawn
            from ``seed``), ``F`` ints ``k_f`` (per-fact subset sizes) or a
            bool ``[F, T]`` mask (rows non-empty). Then ``(f, t)`` is drawn
            with ``P(f, t) = w_f m_{f,t} / k_f`` (:attr:`template_mask`);
            ``F * T <= 2**26``.
        names: optional words for ``"background"``, ``"subjects"``,
            ``"relations"``, ``"objects"`` tokens (one list per key, one
            word each, no spaces); the others are generated.
        seed: draws the fact table, templates and generated names.
    """

    def __init__(
        self,
        num_facts: int,
        num_relations: int,
        num_templates: int,
        background: Process,
        *,
        num_subjects: int | None = None,
        num_objects: int | None = None,
        exposure: Any = "zipf",
        zipf_exponent: float = 1.0,
        statement_prob: float = 0.1,
        names: Mapping[str, Sequence[str]] | None = None,
        seed: int = 0,
        template_coverage: Any = None,
    ) -> None:
        f = check_int("num_facts", num_facts, 1, 1 << 24)
        r = check_int("num_relations", num_relations, 1, 1 << 20)
        t = check_int("num_templates", num_templates, 1, 1 << 16)
        check_process("background", background)
        s_default = -(-f // r)
        s = s_default if num_subjects is None else check_int("num_subjects", num_subjects, 1, 1 << 24)
        if f > s * r:
            raise ValueError(
                f"num_facts ({f}) must be <= num_subjects * num_relations ({s} * {r}): facts are distinct "
                "(subject, relation) pairs"
            )
        o = s if num_objects is None else check_int("num_objects", num_objects, 1, 1 << 24)
        a = check_float("zipf_exponent", zipf_exponent)
        if a < 0:
            raise ValueError(f"zipf_exponent must be >= 0, got {a}")
        q = check_probability("statement_prob", statement_prob)
        sd = check_seed("seed", seed)
        if isinstance(exposure, str):
            kind = check_choice("exposure", exposure, ("zipf", "uniform"))
            counts = (np.arange(f) + 1.0) ** -a if kind == "zipf" else np.ones(f)
            given: Any = kind
        else:
            counts = real_array("exposure", exposure, "a 1-D array of per-fact counts")
            if counts.shape != (f,):
                raise ValueError(f"exposure must have one count per fact ({f}), got shape {counts.shape}")
            if not np.isfinite(counts).all() or (counts < 0).any():
                raise ValueError("exposure counts must be finite and >= 0")
            if not (counts > 0).any():
                raise ValueError("exposure counts must not all be 0")
            given = _owned(counts, exposure)
        vb = background.vocab_size
        chosen = _check_names(names, {"background": vb, "subjects": s, "relations": r, "objects": o})
        self._background = background
        self._q = q
        self._law = {
            "num_facts": f,
            "num_relations": r,
            "num_templates": t,
            "background": background,
            "num_subjects": num_subjects if num_subjects is None else s,
            "num_objects": num_objects if num_objects is None else o,
            "exposure": given,
            "zipf_exponent": a,
            "statement_prob": q,
            "names": None if names is None else {k: list(v) for k, v in chosen.items()},
            "seed": sd,
        }
        # the coverage: kept in the law only when given (default worlds save as before)
        self._mask: np.ndarray | None = None
        if template_coverage is not None:
            mask, cov_given = _coverage_mask(template_coverage, f, t, sd)
            self._law["template_coverage"] = cov_given
            self._mask = mask
        rng = np.random.default_rng(sd)
        pairs = rng.permutation(s * r)[:f] if s * r <= 1 << 26 else self._distinct_pairs(rng, f, s * r)
        table = np.stack([pairs // r, pairs % r, rng.integers(0, o, f)], axis=1).astype(np.int64)
        # templates: (A, B) order, gap sizes; fillers numbered in order
        patterns: list[list[int]] = []
        n_fill = 0
        for _ in range(t):
            first, second = (_SUBJ, _REL) if rng.random() < 0.5 else (_REL, _SUBJ)
            g1, g2, g3 = int(rng.integers(0, 2)), int(rng.integers(1, 3)), int(rng.integers(0, 2))
            slots = [-10, first] + [-10] * g1 + [second] + [-10] * g2 + [_OBJ] + [-10] * g3
            pat = []
            for c in slots:
                if c == -10:
                    pat.append(n_fill)  # local filler id for now
                    n_fill += 1
                else:
                    pat.append(c)
            patterns.append(pat)
        # vocabulary layout
        off_s = vb
        off_r = off_s + s
        off_o = off_r + r
        off_f = off_o + o
        off_q = off_f + n_fill
        v = off_q + 3
        self._sizes = {"subjects": s, "relations": r, "objects": o}
        self._ranges = {
            "background": range(0, vb),
            "subjects": range(off_s, off_r),
            "relations": range(off_r, off_o),
            "objects": range(off_o, off_f),
            "fillers": range(off_f, off_q),
            "qa": range(off_q, v),
        }
        self._v = v
        lmax = max(len(p) for p in patterns)
        pat_arr = np.full((t, lmax), _PAD, dtype=np.int64)
        for i, p in enumerate(patterns):
            pat_arr[i, : len(p)] = [c + off_f if c >= 0 else c for c in p]
        self._patterns = pat_arr
        self._lengths = np.array([len(p) for p in patterns], dtype=np.int64)
        self._table = table
        self._fact_tokens = table + np.array([off_s, off_r, off_o])
        self._counts = counts.astype(np.float64)
        scaled = self._counts / self._counts.max()  # no overflow in the sum of huge counts
        self._w = scaled / scaled.sum()
        for arr in (self._table, self._fact_tokens, self._counts, self._w, self._patterns, self._lengths):
            arr.flags.writeable = False
        if self._mask is not None:
            self._init_coverage(self._mask)
        # scoring tables
        self._kind = np.empty(v, dtype=np.int64)
        self._value = np.empty(v, dtype=np.int64)
        for k, rg in enumerate(self._ranges.values()):
            self._kind[rg.start : rg.stop] = k
            self._value[rg.start : rg.stop] = np.arange(len(rg))
        self._opener = np.full(v, -1, dtype=np.int64)
        self._opener[pat_arr[:, 0]] = np.arange(t)
        codes = table[:, 0] * r + table[:, 1]
        order = np.argsort(codes)
        self._codes = codes[order]
        self._code_fact = order
        self._w_subject = np.bincount(table[:, 0], self._w, minlength=s)
        self._w_relation = np.bincount(table[:, 1], self._w, minlength=r)
        self._cum = np.cumsum(self._w)
        self._last_fact = int(np.flatnonzero(self._w > 0)[-1])
        # words
        wrng = np.random.default_rng([sd, 0x5EED])
        taken = {w.lower() for ws in chosen.values() for w in ws} | {"question:", "answer:", "<end>"}
        words: list[str] = []
        words += chosen.get("background") or _words(wrng, vb, (1, 2), taken)
        words += chosen.get("subjects") or [w.capitalize() for w in _words(wrng, s, (2, 3), taken)]
        words += chosen.get("relations") or _words(wrng, r, (2, 3), taken)
        words += chosen.get("objects") or [w.capitalize() for w in _words(wrng, o, (2, 3), taken)]
        words += _words(wrng, n_fill, (1, 2), taken)
        words += ["Question:", "Answer:", "<end>"]
        if len({w.lower() for w in words}) != v:
            raise ValueError("names: every word must be distinct (case-insensitively) across all tokens")
        self._word_list = words

    def _init_coverage(self, mask: np.ndarray) -> None:
        """Tables of the joint law ``W[f, t] = w_f m_{f,t} / k_f``: covered
        templates per fact (CSR), ``π_t``, and the per-template weights of
        subjects and relations (sorted keys ``id * T + t``)."""
        t = self.num_templates
        self._k = mask.sum(axis=1).astype(np.int64)
        rows, cols = np.nonzero(mask)
        self._cover_t = cols.astype(np.int64)
        self._cover_off = np.concatenate([[0], np.cumsum(self._k)]).astype(np.int64)
        wcell = (self._w / self._k)[rows]
        self._cover_w = wcell
        self._pi = np.bincount(self._cover_t, wcell, minlength=t)
        with np.errstate(divide="ignore"):
            self._log_open_t = np.log(self._q * self._pi)
        self._st_keys, inv = np.unique(self._table[rows, 0] * t + self._cover_t, return_inverse=True)
        self._st_w = np.bincount(inv.ravel(), wcell, minlength=len(self._st_keys))
        self._rt_keys, inv = np.unique(self._table[rows, 1] * t + self._cover_t, return_inverse=True)
        self._rt_w = np.bincount(inv.ravel(), wcell, minlength=len(self._rt_keys))
        mask.flags.writeable = False
        for arr in (self._k, self._cover_t, self._cover_off, self._cover_w, self._pi):
            arr.flags.writeable = False

    def _cell(self, f: np.ndarray, t: np.ndarray) -> np.ndarray:
        """``W[f, t]`` (0 where ``f < 0`` or ``t`` does not cover ``f``)."""
        assert self._mask is not None
        fc = np.maximum(f, 0)
        return np.where((f >= 0) & self._mask[fc, t], self._w[fc] / self._k[fc], 0.0)

    @staticmethod
    def _distinct_pairs(rng: np.random.Generator, f: int, n: int) -> np.ndarray:
        """``f`` distinct integers in ``[0, n)`` (for pair spaces too large to permute)."""
        out = np.unique(rng.integers(0, n, 2 * f + 16))
        while len(out) < f:
            out = np.unique(np.concatenate([out, rng.integers(0, n, f)]))
        return rng.permutation(out)[:f]

    # ------------------------------------------------------------------ data
    @property
    def vocab_size(self) -> int:
        return self._v

    @property
    def background(self) -> Process:
        return self._background

    @property
    def num_facts(self) -> int:
        return int(self._table.shape[0])

    @property
    def num_templates(self) -> int:
        return int(self._patterns.shape[0])

    @property
    def statement_prob(self) -> float:
        return self._q

    @property
    def facts(self) -> np.ndarray:
        """``[F, 3]`` int64 (subject, relation, object) ids within their kinds (read-only)."""
        return self._table

    @property
    def fact_tokens(self) -> np.ndarray:
        """``[F, 3]`` token ids of each fact's subject, relation and object (read-only)."""
        return self._fact_tokens

    @property
    def exposure(self) -> np.ndarray:
        """``[F]`` exposure counts as defined (relative; read-only)."""
        return self._counts

    @property
    def exposure_weights(self) -> np.ndarray:
        """``[F]`` ``w_f = count_f / Σ count``: the law of the fact of a statement (read-only)."""
        return self._w

    @property
    def template_mask(self) -> np.ndarray:
        """``[F, T]`` bool (read-only): ``m_{f,t}``, fact ``f`` is stated
        under template ``t``; all true (a broadcast view, no copy) without a
        ``template_coverage``. ``k_f = template_mask.sum(1)``."""
        if self._mask is None:
            return np.broadcast_to(np.True_, (self.num_facts, self.num_templates))
        return self._mask

    @property
    def template_probs(self) -> np.ndarray:
        """``[T]`` ``π_t = Σ_f w_f m_{f,t} / k_f``: the law of the template
        of a statement (``1/T`` each without a coverage; read-only)."""
        if self._mask is None:
            out = np.full(self.num_templates, 1.0 / self.num_templates)
            out.flags.writeable = False
            return out
        return self._pi

    @property
    def token_ranges(self) -> dict[str, range]:
        """Token ids of each kind: ``background``, ``subjects``, ``relations``,
        ``objects``, ``fillers`` and ``qa`` (question, answer, end)."""
        return dict(self._ranges)

    @property
    def template_lengths(self) -> np.ndarray:
        return self._lengths

    def _fact(self, f: Any, name: str = "f") -> int:
        return check_int(name, f, 0, self.num_facts - 1)

    def _template(self, t: Any) -> int:
        return check_int("t", t, 0, self.num_templates - 1)

    def template(self, t: int) -> tuple[int | str, ...]:
        """Template ``t`` as slots: ``"subject"``, ``"relation"``,
        ``"object"`` or a filler token id."""
        t = self._template(t)
        names = {_SUBJ: "subject", _REL: "relation", _OBJ: "object"}
        return tuple(names.get(int(c), int(c)) for c in self._patterns[t, : self._lengths[t]])

    def statement(self, f: int, t: int) -> np.ndarray:
        """The tokens of fact ``f`` stated through template ``t``."""
        f, t = self._fact(f), self._template(t)
        pat = self._patterns[t, : self._lengths[t]]
        sub = {_SUBJ: 0, _REL: 1, _OBJ: 2}
        out = [int(self._fact_tokens[f, sub[int(c)]]) if c < 0 else int(c) for c in pat]
        return np.array(out, dtype=_token_dtype(self._v))

    def object_slot(self, t: int) -> int:
        """Position of the object in template ``t``: ``statement(f, t)[:object_slot(t)]``
        is the cloze prompt whose greedy completion should be the object."""
        t = self._template(t)
        return int(np.flatnonzero(self._patterns[t] == _OBJ)[0])

    def prompt(self, f: int, t: int) -> np.ndarray:
        """The tokens of ``statement(f, t)`` before the object."""
        return self.statement(f, t)[: self.object_slot(t)]

    def prompts(self, t: int, facts: Any = None) -> np.ndarray:
        """``[n, object_slot(t)]`` cloze prompts of template ``t`` for
        ``facts`` (fact ids, default all): row ``i`` is ``prompt(facts[i], t)``."""
        t = self._template(t)
        idx = self._fact_ids(facts)
        k = self.object_slot(t)
        code = self._patterns[t, :k]
        ft = self._fact_tokens[idx]
        cols = [np.full(len(idx), c) if c >= 0 else ft[:, -c - 1] for c in code.tolist()]
        return np.stack(cols, axis=1).astype(_token_dtype(self._v)).reshape(len(idx), k)

    def _fact_ids(self, facts: Any) -> np.ndarray:
        if facts is None:
            return np.arange(self.num_facts)
        idx = as_indices(facts, "facts").astype(np.int64)
        if idx.size and idx.max() >= self.num_facts:
            raise ValueError(f"facts must be fact ids < {self.num_facts}, got {int(idx.max())}")
        return idx

    def question(self, f: int) -> np.ndarray:
        """QA format (never in the pretraining law): ``[Question:, subject, relation, Answer:]``."""
        f = self._fact(f)
        q0 = self._ranges["qa"].start
        s, r, _ = self._fact_tokens[f]
        return np.array([q0, s, r, q0 + 1], dtype=_token_dtype(self._v))

    def answer(self, f: int) -> np.ndarray:
        """The answer of :meth:`question`: ``[object, <end>]``."""
        f = self._fact(f)
        return np.array([self._fact_tokens[f, 2], self._ranges["qa"].start + 2], dtype=_token_dtype(self._v))

    def qa_tokens(self, facts: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Questions ``[n, 4]`` and answers ``[n, 2]`` of ``facts`` (default all)."""
        idx = self._fact_ids(facts)
        dt = _token_dtype(self._v)
        q0 = self._ranges["qa"].start
        ft = self._fact_tokens[idx]
        qs: np.ndarray = np.stack(
            [np.full(len(idx), q0), ft[:, 0], ft[:, 1], np.full(len(idx), q0 + 1)], axis=1
        ).astype(dt)
        ans: np.ndarray = np.stack([ft[:, 2], np.full(len(idx), q0 + 2)], axis=1).astype(dt)
        return qs, ans

    # ------------------------------------------------------------------ text
    @property
    def words(self) -> list[str]:
        """The word of every token (distinct, case-insensitively)."""
        return list(self._word_list)

    def render_text(self, tokens: Any) -> str | list[str]:
        """Tokens as text (words joined by spaces): a string for one
        sequence, a list of strings for ``[N, T]``."""
        arr, single = as_tokens(tokens)
        if arr.size and (arr.min() < 0 or arr.max() >= self._v):
            raise ValueError(f"tokens must lie in [0, {self._v}), the world's vocabulary")
        w = self._word_list
        out = [" ".join(w[int(i)] for i in row) for row in arr]
        return out[0] if single else out

    def text_facts(self) -> list[tuple[str, str, str]]:
        """Each fact as its (subject, relation, object) words."""
        w = self._word_list
        return [(w[s], w[r], w[o]) for s, r, o in self._fact_tokens.tolist()]

    def text_templates(self) -> list[str]:
        """Each template as a string with ``{subject}``, ``{relation}`` and
        ``{object}`` slots (``str.format`` renders a statement)."""
        slot = {_SUBJ: "{subject}", _REL: "{relation}", _OBJ: "{object}"}
        return [
            " ".join(slot[int(c)] if c < 0 else self._word_list[int(c)] for c in self._patterns[t, :n])
            for t, n in enumerate(self._lengths)
        ]

    def question_text(self, f: int) -> str:
        return str(self.render_text(self.question(f)))

    def answer_text(self, f: int) -> str:
        """The object's word (the answer of :meth:`question_text`)."""
        return self._word_list[int(self._fact_tokens[self._fact(f), 2])]

    # -------------------------------------------------------------- sampling
    def sample(self, num_sequences: int, length: int, seed: int = 0, start: int = 0) -> np.ndarray:
        """``[num_sequences, length]`` tokens: rows ``start ..`` of the sample for ``seed``."""
        return self.sample_at(start_indices(num_sequences, start), length, seed)

    def sample_at(self, indices: Any, length: int, seed: int = 0) -> np.ndarray:
        """Rows of the sequence ``indices``: row ``i`` depends on ``(seed, i)``
        only. Its background tokens are the first ones of row ``i`` of
        ``background.sample_at(..., seed)``; the statement decisions, facts and
        templates come from a counter-based hash of ``(seed, i, position)``."""
        idx = as_indices(indices)
        n_len = check_int("length", length, 0, 1 << 31)
        s = check_seed("seed", seed)
        n = len(idx)
        out: np.ndarray = np.zeros((n, n_len), dtype=_token_dtype(self._v))
        if n == 0 or n_len == 0:
            return out
        bg = np.asarray(self._background.sample_at(idx, n_len, s)).astype(np.int64)
        rows = np.arange(n)
        tpl = np.full(n, -1, dtype=np.int64)
        slot = np.zeros(n, dtype=np.int64)
        fact = np.zeros(n, dtype=np.int64)
        nbg = np.zeros(n, dtype=np.int64)
        ft = self._fact_tokens
        for p in range(n_len):
            free = tpl < 0
            start = free & (_uniforms(s, idx, p, 0) < self._q)
            if start.any():
                fs = np.minimum(
                    np.searchsorted(self._cum, _uniforms(s, idx, p, 1)[start], side="right"), self._last_fact
                )
                if self._mask is None:
                    ts = np.minimum(
                        (_uniforms(s, idx, p, 2)[start] * self.num_templates).astype(np.int64), self.num_templates - 1
                    )
                else:  # uniform over the fact's own templates (all T: the same draw as above)
                    kf = self._k[fs]
                    j = np.minimum((_uniforms(s, idx, p, 2)[start] * kf).astype(np.int64), kf - 1)
                    ts = self._cover_t[self._cover_off[fs] + j]
                fact[start], tpl[start], slot[start] = fs, ts, 0
            plain = free & ~start
            out[plain, p] = bg[rows[plain], nbg[plain]]
            nbg[plain] += 1
            st = np.flatnonzero(tpl >= 0)
            if st.size:
                code = self._patterns[tpl[st], slot[st]]
                tok = np.where(code >= 0, code, ft[fact[st], np.clip(-code - 1, 0, 2)])
                out[st, p] = tok
                slot[st] += 1
                done = st[slot[st] == self._lengths[tpl[st]]]
                tpl[done] = -1
        return out

    # --------------------------------------------------------------- scoring
    def _pair_weight(self, s: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weight ``w_f`` and fact id of each (subject, relation) pair (0 and -1 if not a fact)."""
        code = s * self._sizes["relations"] + r
        pos = np.minimum(np.searchsorted(self._codes, code), len(self._codes) - 1)
        found = self._codes[pos] == code
        f = np.where(found, self._code_fact[pos], -1)
        return np.where(found, self._w[np.maximum(f, 0)], 0.0), f

    def _parse(self, tokens: np.ndarray) -> dict[str, Any]:
        """Runs the unit parser over ``[N, T]`` tokens: the structural
        log-probability of each token, which tokens are background (and their
        index in the background text), the parser state before each token and
        the statements found. A token impossible under the law gets ``-inf``
        and is skipped (the state does not change)."""
        n, length = tokens.shape
        x = tokens.astype(np.int64)
        if x.size and (x.min() < 0 or x.max() >= self._v):
            raise ValueError(f"tokens must lie in [0, {self._v}), the world's vocabulary")
        lp = np.zeros((n, length))
        is_bg = np.zeros((n, length), dtype=bool)
        state = {k: np.zeros((n, length), dtype=np.int64) for k in ("tpl", "slot", "subj", "rel", "nbg")}
        tpl = np.full(n, -1, dtype=np.int64)
        slot = np.zeros(n, dtype=np.int64)
        subj = np.full(n, -1, dtype=np.int64)
        rel = np.full(n, -1, dtype=np.int64)
        nbg = np.zeros(n, dtype=np.int64)
        begin = np.zeros(n, dtype=np.int64)
        events: list[tuple[np.ndarray, ...]] = []
        with np.errstate(divide="ignore"):
            log_bg = math.log1p(-self._q) if self._q < 1 else -math.inf
            log_open = math.log(self._q / self.num_templates) if self._q > 0 else -math.inf
        kind, value = self._kind, self._value
        cov = self._mask is not None
        nt = self.num_templates
        for p in range(length):
            xp = x[:, p]
            for k, arr in (("tpl", tpl), ("slot", slot), ("subj", subj), ("rel", rel), ("nbg", nbg)):
                state[k][:, p] = arr
            col = np.full(n, -np.inf)
            free = tpl < 0
            b = free & (kind[xp] == _BG)
            col[b] = log_bg
            is_bg[b, p] = True
            nbg[b] += 1
            o = free & (self._opener[xp] >= 0) & (self._q > 0)
            if cov:  # an opener of a template no fact uses is impossible
                o &= self._pi[np.maximum(self._opener[xp], 0)] > 0
                col[o] = self._log_open_t[self._opener[xp[o]]]
            else:
                col[o] = log_open
            tpl[o], slot[o], subj[o], rel[o], begin[o] = self._opener[xp[o]], 1, -1, -1, p
            m = np.flatnonzero(~free)
            if m.size:
                code = self._patterns[tpl[m], slot[m]]
                xm = xp[m]
                ok = np.zeros(m.size, dtype=bool)
                lpm = np.zeros(m.size)
                fil = code >= 0
                ok[fil] = xm[fil] == code[fil]
                sl = np.flatnonzero(code == _SUBJ)
                if sl.size:
                    sv = np.where(kind[xm[sl]] == _SUBJECT, value[xm[sl]], 0)
                    rv = rel[m[sl]]
                    known = rv >= 0
                    w_pair, fp = self._pair_weight(sv, np.maximum(rv, 0))
                    with np.errstate(divide="ignore", invalid="ignore"):
                        if cov:  # the fact law of this template: W[:, t]
                            tv = tpl[m[sl]]
                            w_rel = _lookup(self._rt_keys, self._rt_w, np.maximum(rv, 0) * nt + tv)
                            w_sub = _lookup(self._st_keys, self._st_w, sv * nt + tv)
                            w = np.where(known, self._cell(fp, tv) / w_rel, w_sub / self._pi[tv])
                        else:
                            w = np.where(known, w_pair / self._w_relation[np.maximum(rv, 0)], self._w_subject[sv])
                    good = (kind[xm[sl]] == _SUBJECT) & (w > 0)
                    ok[sl] = good
                    lpm[sl[good]] = np.log(w[good])
                    subj[m[sl[good]]] = sv[good]
                rl = np.flatnonzero(code == _REL)
                if rl.size:
                    rv = np.where(kind[xm[rl]] == _RELATION, value[xm[rl]], 0)
                    sv = subj[m[rl]]
                    known = sv >= 0
                    w_pair, fp = self._pair_weight(np.maximum(sv, 0), rv)
                    with np.errstate(divide="ignore", invalid="ignore"):
                        if cov:
                            tv = tpl[m[rl]]
                            w_sub = _lookup(self._st_keys, self._st_w, np.maximum(sv, 0) * nt + tv)
                            w_rel = _lookup(self._rt_keys, self._rt_w, rv * nt + tv)
                            w = np.where(known, self._cell(fp, tv) / w_sub, w_rel / self._pi[tv])
                        else:
                            w = np.where(known, w_pair / self._w_subject[np.maximum(sv, 0)], self._w_relation[rv])
                    good = (kind[xm[rl]] == _RELATION) & (w > 0)
                    ok[rl] = good
                    lpm[rl[good]] = np.log(w[good])
                    rel[m[rl[good]]] = rv[good]
                ol = np.flatnonzero(code == _OBJ)
                if ol.size:
                    _, f = self._pair_weight(subj[m[ol]], rel[m[ol]])
                    ok[ol] = xm[ol] == self._fact_tokens[f, 2]
                col[m[ok]] = lpm[ok]
                adv = m[ok]
                slot[adv] += 1
                done = adv[slot[adv] == self._lengths[tpl[adv]]]
                if done.size:
                    _, f = self._pair_weight(subj[done], rel[done])
                    events.append((done, begin[done], tpl[done], f, np.ones(done.size, dtype=bool)))
                    tpl[done] = -1
            lp[:, p] = col
        cut = np.flatnonzero(tpl >= 0)
        if cut.size:
            both = (subj[cut] >= 0) & (rel[cut] >= 0)
            _, f = self._pair_weight(np.maximum(subj[cut], 0), np.maximum(rel[cut], 0))
            events.append((cut, begin[cut], tpl[cut], np.where(both, f, -1), np.zeros(cut.size, dtype=bool)))
        cols = [np.concatenate([e[i] for e in events]) if events else np.zeros(0, np.int64) for i in range(5)]
        order = np.lexsort((cols[1], cols[0])) if events else np.zeros(0, np.int64)
        found = {k: c[order] for k, c in zip(("row", "start", "template", "fact", "complete"), cols, strict=True)}
        if not events:
            found["complete"] = found["complete"].astype(bool)
        bg_index = np.cumsum(is_bg, axis=1) - 1
        return {"lp": lp, "is_bg": is_bg, "bg_index": bg_index, "statements": found, **state}

    def _background_text(self, tokens: np.ndarray, parsed: dict[str, Any]) -> np.ndarray:
        """``[N, T]`` background tokens of each row moved to the front, padded with token 0."""
        n, length = tokens.shape
        bgseq = np.zeros((n, length), dtype=tokens.dtype)
        r, c = np.nonzero(parsed["is_bg"])
        bgseq[r, parsed["bg_index"][r, c]] = tokens[r, c]
        return bgseq

    def statements(self, x: Any) -> dict[str, np.ndarray]:
        """The statements in ``x`` (``[N, T]`` or one sequence): arrays
        ``row``, ``start`` (position), ``template``, ``fact`` (-1 if the
        sequence ends before subject and relation are read) and ``complete``
        (the whole statement lies inside the sequence), sorted by row and
        start. Impossible tokens are skipped as in :meth:`token_log_probs`."""
        tokens, _ = as_tokens(x)
        found: dict[str, np.ndarray] = self._parse(tokens)["statements"]
        return found

    def fact_counts(self, x: Any) -> np.ndarray:
        """``[F]`` number of complete statements of each fact in ``x``."""
        st = self.statements(x)
        return np.bincount(st["fact"][st["complete"]], minlength=self.num_facts)

    def expected_counts(self, num_sequences: int, length: int) -> np.ndarray:
        """``[F]`` expected number of complete statements of each fact in
        ``num_sequences`` sequences of ``length`` tokens: ``N q Σ_t W[f, t]
        Σ_p P(boundary at p) [p + L_t <= length]`` with ``W[f, t] = w_f / T``
        (``w_f m_{f,t} / k_f`` with a template coverage), the boundary
        probabilities by the renewal recursion ``b_0 = 1``,
        ``b_p = (1-q) b_{p-1} + q Σ_t π_t b_{p-L_t}`` (``π_t = 1/T`` or
        :attr:`template_probs`)."""
        n = check_int("num_sequences", num_sequences)
        m = check_int("length", length, 0, 1 << 24)
        q, nt = self._q, self.num_templates
        b = np.zeros(m + 1)
        if m:
            b[0] = 1.0
        lens = self._lengths
        if self._mask is None:
            for p in range(1, m + 1):
                prev = p - lens
                b[p] = (1 - q) * b[p - 1] + q / nt * b[prev[prev >= 0]].sum()
        else:
            pi = self._pi
            for p in range(1, m + 1):
                prev = p - lens
                ok = prev >= 0
                b[p] = (1 - q) * b[p - 1] + q * (pi[ok] * b[prev[ok]]).sum()
        starts = np.array([b[: max(m - int(length_t) + 1, 0)].sum() for length_t in lens])
        if self._mask is None:
            return n * self._w * q / nt * starts.sum()
        rows = np.repeat(np.arange(self.num_facts), self._k)
        return n * q * np.bincount(rows, self._cover_w * starts[self._cover_t], minlength=self.num_facts)

    def token_log_probs(self, x: Any) -> np.ndarray:
        """``log p(x_t | x_<t)`` in nats: ``log(1-q) + log p_bg(b | background
        so far)`` for a background token at a unit boundary, ``log(q π_t)`` for
        a template opener (``π_t = 1/T`` without a coverage), ``log(w-sum
        ratio)`` for the first of subject / relation and the conditional for
        the second (the weights ``W[:, t]`` of the template with a coverage),
        0 for fillers and the object. A token impossible under the law gets
        ``-inf`` and is skipped."""
        tokens, single = as_tokens(x)
        parsed = self._parse(tokens)
        out = parsed["lp"]
        if parsed["is_bg"].any():
            bgseq = self._background_text(tokens, parsed)
            bg_lp = np.asarray(self._background.token_log_probs(bgseq)).reshape(tokens.shape)
            r, c = np.nonzero(parsed["is_bg"])
            out[r, c] += bg_lp[r, parsed["bg_index"][r, c]]
        return out[0] if single else out

    def log_prob(self, x: Any) -> np.ndarray:
        """Exact ``log p(x)`` (the sum of :meth:`token_log_probs`; ``-inf`` if impossible)."""
        tokens, single = as_tokens(x)
        out = self.token_log_probs(tokens).sum(axis=1)
        return out[0] if single else out

    def predictive(self, x: Any) -> np.ndarray:
        """``[N, T, V]`` exact next-token laws (``[T, V]`` for one sequence):
        at a boundary ``(1-q) p_bg(· | background so far)`` on background
        tokens and ``q π_t`` on each opener; inside a statement the law of its
        next slot given what was read (impossible tokens skipped)."""
        tokens, single = as_tokens(x)
        n, length = tokens.shape
        parsed = self._parse(tokens)
        out = np.zeros((n, length, self._v))
        tpl, slot = parsed["tpl"], parsed["slot"]
        free = tpl < 0
        if free.any():
            bgseq = self._background_text(tokens, parsed)
            bg_pred = np.asarray(self._background.predictive(bgseq)).reshape(n, length, -1)
            r, c = np.nonzero(free)
            vb = self._ranges["background"].stop
            out[r, c, :vb] = (1 - self._q) * bg_pred[r, np.minimum(parsed["nbg"][r, c], length - 1)]
            if self._mask is None:
                out[r[:, None], c[:, None], self._patterns[None, :, 0]] = self._q / self.num_templates
            else:
                out[r[:, None], c[:, None], self._patterns[None, :, 0]] = self._q * self._pi[None, :]
        r, c = np.nonzero(~free)
        code = self._patterns[tpl[r, c], slot[r, c]]
        fil = code >= 0
        out[r[fil], c[fil], code[fil]] = 1.0
        subj, rel = parsed["subj"][r, c], parsed["rel"][r, c]
        s_rg, r_rg = self._ranges["subjects"], self._ranges["relations"]
        table = self._table
        for want, given, lo, n_out, col_out, col_given, marginal in (
            (_SUBJ, rel, s_rg.start, self._sizes["subjects"], 0, 1, self._w_subject),
            (_REL, subj, r_rg.start, self._sizes["relations"], 1, 0, self._w_relation),
        ):
            sel = np.flatnonzero(code == want)
            if not sel.size:
                continue
            g = given[sel]
            if self._mask is not None:
                self._predict_covered(out, r[sel], c[sel], g, tpl[r[sel], c[sel]], lo, n_out, col_out, col_given)
                continue
            for val in np.unique(g):
                at = sel[g == val]
                if val < 0:
                    law = marginal
                else:
                    keep = table[:, col_given] == val
                    law = np.bincount(table[keep, col_out], self._w[keep], minlength=n_out)
                    law = law / law.sum()
                out[r[at], c[at], lo : lo + n_out] = law
        ob = np.flatnonzero(code == _OBJ)
        if ob.size:
            _, f = self._pair_weight(subj[ob], rel[ob])
            out[r[ob], c[ob], self._fact_tokens[f, 2]] = 1.0
        return out[0] if single else out

    def _predict_covered(
        self,
        out: np.ndarray,
        r: np.ndarray,
        c: np.ndarray,
        given: np.ndarray,
        tv: np.ndarray,
        lo: int,
        n_out: int,
        col_out: int,
        col_given: int,
    ) -> None:
        """The subject (or relation) law at rows ``(r, c)`` of a coverage
        world: ``W[:, t]`` restricted to the facts with the ``given`` other
        id (all facts where ``given < 0``), normalised."""
        assert self._mask is not None
        nt = self.num_templates
        table = self._table
        key = (given + 1) * nt + tv
        for kv in np.unique(key):
            at = np.flatnonzero(key == kv)
            val, t = int(kv) // nt - 1, int(kv) % nt
            keep = self._mask[:, t] if val < 0 else (table[:, col_given] == val) & self._mask[:, t]
            law = np.bincount(table[keep, col_out], (self._w / self._k)[keep], minlength=n_out)
            total = law.sum()
            if total > 0:
                out[r[at], c[at], lo : lo + n_out] = law / total

    def entropy_rate(self, base: float | None = None) -> float | Estimate:
        """``[h(q) + q (H(w) + log T) + (1-q) h_bg] / [(1-q) + q L̄]``: the
        entropy per unit over the mean unit length (``h(q)`` the binary
        entropy, ``H(w)`` that of the exposure law, ``h_bg`` the background's
        rate, ``L̄`` the mean template length); with a template coverage
        ``H(w) + log T`` becomes the joint ``H(f, t) = H(w) + Σ_f w_f log k_f``
        and ``L̄ = Σ_t π_t L_t``. An :class:`Estimate` when the background's
        rate is one."""
        q = self._q
        with np.errstate(divide="ignore", invalid="ignore"):
            hw = float(-np.sum(np.where(self._w > 0, self._w * np.log(self._w), 0.0)))
        hq = 0.0 if q in (0.0, 1.0) else -(q * math.log(q) + (1 - q) * math.log1p(-q))
        if self._mask is None:
            mean_len = (1 - q) + q * float(self._lengths.mean())
            fixed = hq + q * (hw + math.log(self.num_templates))
        else:
            mean_len = (1 - q) + q * float(self._pi @ self._lengths)
            fixed = hq + q * (hw + float(self._w @ np.log(self._k)))
        hb = self._background.entropy_rate(None)
        lb = log_base(base)
        if isinstance(hb, Estimate):
            return Estimate((fixed + (1 - q) * hb.value) / mean_len / lb, (1 - q) * hb.stderr / mean_len / lb)
        return (fixed + (1 - q) * float(hb)) / mean_len / lb

    def typicality(self, x: Any, eps: float = 0.05, base: float | None = None) -> TypicalityReport:
        """NLL/token against :meth:`entropy_rate` ± eps; path-centred
        z-scores from the exact predictive laws along each sequence (rows
        scored in chunks of about 32 MB of predictive)."""
        tokens, length, e = _typicality_input(x, eps)
        n = tokens.shape[0]
        logp = np.empty(n)
        centred = np.empty(n)
        var = np.empty(n)
        step = max(1, (1 << 22) // max(1, length * self._v))
        for i in range(0, n, step):
            chunk = tokens[i : i + step]
            pred = self.predictive(chunk)
            lp = self.token_log_probs(chunk)
            with np.errstate(divide="ignore", invalid="ignore"):
                logq = np.where(pred > 0, np.log(pred), 0.0)
            h = -(pred * logq).sum(axis=2)
            v = np.maximum((pred * logq**2).sum(axis=2) - h**2, 0.0)
            logp[i : i + step] = lp.sum(axis=1)
            centred[i : i + step] = (-lp - h).sum(axis=1)
            var[i : i + step] = v.sum(axis=1)
        rate = self.entropy_rate(base)
        return TypicalityReport.from_path_stats(
            -logp / length / log_base(base),
            centred,
            var,
            length,
            entropy_rate=float(rate.value if isinstance(rate, Estimate) else rate),
            eps=e,
            unit=unit_name(base),
        )

    def __repr__(self) -> str:
        return (
            f"FactWorld(num_facts={self.num_facts}, num_relations={self._sizes['relations']}, "
            f"num_templates={self.num_templates}, vocab_size={self._v}, statement_prob={self._q:g})"
        )
