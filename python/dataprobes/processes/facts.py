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
                ts = np.minimum(
                    (_uniforms(s, idx, p, 2)[start] * self.num_templates).astype(np.int64), self.num_templates - 1
                )
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
                    w_pair, _ = self._pair_weight(sv, np.maximum(rv, 0))
                    with np.errstate(divide="ignore", invalid="ignore"):
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
                    w_pair, _ = self._pair_weight(np.maximum(sv, 0), rv)
                    with np.errstate(divide="ignore", invalid="ignore"):
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
        ``num_sequences`` sequences of ``length`` tokens: ``N w_f Σ_{p}
        P(boundary at p) q (1/T) Σ_t [p + L_t <= length]``, the boundary
        probabilities by the renewal recursion ``b_0 = 1``,
        ``b_p = (1-q) b_{p-1} + (q/T) Σ_t b_{p-L_t}``."""
        n = check_int("num_sequences", num_sequences)
        m = check_int("length", length, 0, 1 << 24)
        q, nt = self._q, self.num_templates
        b = np.zeros(m + 1)
        if m:
            b[0] = 1.0
        lens = self._lengths
        for p in range(1, m + 1):
            prev = p - lens
            b[p] = (1 - q) * b[p - 1] + q / nt * b[prev[prev >= 0]].sum()
        starts = np.array([b[: max(m - int(length_t) + 1, 0)].sum() for length_t in lens])
        return n * self._w * q / nt * starts.sum()

    def token_log_probs(self, x: Any) -> np.ndarray:
        """``log p(x_t | x_<t)`` in nats: ``log(1-q) + log p_bg(b | background
        so far)`` for a background token at a unit boundary, ``log(q/T)`` for a
        template opener, ``log(w_f-sum ratio)`` for the first of subject /
        relation and the conditional for the second, 0 for fillers and the
        object. A token impossible under the law gets ``-inf`` and is skipped."""
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
        tokens and ``q/T`` on each opener; inside a statement the law of its
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
            out[r[:, None], c[:, None], self._patterns[None, :, 0]] = self._q / self.num_templates
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

    def entropy_rate(self, base: float | None = None) -> float | Estimate:
        """``[h(q) + q (H(w) + log T) + (1-q) h_bg] / [(1-q) + q L̄]``: the
        entropy per unit over the mean unit length (``h(q)`` the binary
        entropy, ``H(w)`` that of the exposure law, ``h_bg`` the background's
        rate, ``L̄`` the mean template length); an :class:`Estimate` when
        the background's rate is one."""
        q = self._q
        with np.errstate(divide="ignore", invalid="ignore"):
            hw = float(-np.sum(np.where(self._w > 0, self._w * np.log(self._w), 0.0)))
        hq = 0.0 if q in (0.0, 1.0) else -(q * math.log(q) + (1 - q) * math.log1p(-q))
        mean_len = (1 - q) + q * float(self._lengths.mean())
        fixed = hq + q * (hw + math.log(self.num_templates))
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
