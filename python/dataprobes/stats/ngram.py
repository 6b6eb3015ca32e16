"""N-gram counts and entropy estimators for any integer token array.

These functions take *any* token data — samples of a probe, a tokenised
corpus, a model's generations — and estimate from it, at memory speed in the
Rust core (parallel, GIL released):

* :func:`ngram_counts`: counts of all n-grams within each row;
* :func:`conditional_entropy`: the plug-in estimate of the order-k conditional
  entropy ``H(X_t | X_{t-k} .. X_{t-1})`` with the Miller–Madow correction and
  a standard error;
* :func:`entropy_profile`: those estimates for orders ``0 .. max_order`` from a
  single counting pass (a common diagnostic of how much context matters).

Conventions:

* ``tokens`` is a 2-D ``[num_sequences, length]`` array of any integer dtype
  (read without copying when C-contiguous), or a 1-D array (one sequence).
  n-grams are windows of ``n`` consecutive tokens *within* a row: they never
  cross row boundaries, so a row of length ``L`` holds ``max(L - n + 1, 0)``.
* ``vocab_size`` defaults to ``max(tokens) + 1``; every token must lie in
  ``[0, vocab_size)``. A token outside it (or a negative one) raises a
  ``ValueError`` naming its position ``[row, column]``.
* An n-gram ``(x_0, .., x_{n-1})`` has the *code* ``Σ_j x_j V**(n-1-j)`` (a
  base-V number, first token most significant), so sorted codes are sorted
  n-grams and n-grams sharing a context (their first ``n - 1`` tokens) are
  contiguous, context ``= code // V``.
* Entropies are in nats unless ``base`` is given (``base=2``: bits).
* Results are identical for any thread count (``RAYON_NUM_THREADS``): counts
  are integer sums and floating-point sums run over fixed blocks.

Example::

    import dataprobes as dp
    p = dp.MarkovChain.random(16, entropy_rate=1.5, seed=0)
    x = p.sample(100, 100_000, seed=1)
    est = dp.conditional_entropy(x, order=1)
    est.value, est.stderr, p.entropy_rate()      # ≈ 1.5 nats, ± ~0.0004
    dp.entropy_profile(x, max_order=3)           # [H0, ≈1.5, ≈1.5, ≈1.5]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _core
from .._validation import as_tokens, check_int, log_base, unit_name

__all__ = [
    "DEFAULT_MAX_DENSE_ENTRIES",
    "EntropyEstimate",
    "NgramCounts",
    "conditional_entropy",
    "entropy_profile",
    "ngram_counts",
]

#: Counts come back as a dense ``(V,)*n`` array when ``V**n`` is at most this
#: many entries (2**26 entries, 512 MiB of uint64), otherwise in sparse form.
DEFAULT_MAX_DENSE_ENTRIES: int = int(_core.DEFAULT_MAX_DENSE_ENTRIES)

_CORRECTIONS = ("miller-madow", "none")
_U64 = 2**64


def _tokens(tokens: Any) -> tuple[np.ndarray, tuple[int, ...]]:
    """2-D C-contiguous integer tokens and the caller's original shape."""
    arr, _ = as_tokens(tokens)
    return arr, tuple(np.shape(tokens))


def _vocab(vocab_size: Any) -> int | None:
    return None if vocab_size is None else check_int("vocab_size", vocab_size, 1, _U64 - 1)


def _max_dense(value: Any) -> int:
    return check_int("max_dense_entries", value, 0, _U64 - 1)


def _correction(correction: Any) -> str:
    if not isinstance(correction, str):
        raise TypeError(f"correction must be one of {_CORRECTIONS}, got {type(correction).__name__}")
    c = correction.lower()
    if c not in _CORRECTIONS:
        raise ValueError(f"correction must be one of {_CORRECTIONS}, got {correction!r}")
    return c


def _check_order(name: str, order: Any, arr: np.ndarray, shape: tuple[int, ...]) -> int:
    k = check_int(name, order, 0)
    rows, length = arr.shape
    if rows == 0 or length < k + 1:
        raise ValueError(
            f"{name} = {k} is too large for tokens of shape {shape}: an order-k estimate needs "
            f"sequences of at least k + 1 = {k + 1} tokens"
        )
    return k


@dataclass(frozen=True, eq=False)
class NgramCounts:
    """Counts of the n-grams of a token array (see :func:`ngram_counts`).

    Exactly one of two forms is filled in:

    * **dense** (``is_dense``): ``dense`` is a ``uint64`` array of shape
      ``(vocab_size,) * n``; ``dense[x_0, .., x_{n-1}]`` is the count of that
      n-gram (zeros included). ``codes`` and ``counts`` are ``None``.
    * **sparse**: ``codes`` holds the sorted unique codes (``uint64``, base
      ``vocab_size``, first token most significant) of the n-grams that occur
      and ``counts`` (``uint64``) their counts, all positive. ``dense`` is
      ``None``.

    Accessors work in both forms: :meth:`sparse` (codes and counts of the
    n-grams that occur), :meth:`decode` (codes to token tuples),
    :meth:`to_dict`, :meth:`to_dense`, and ``counts_obj[(x0, .., x_{n-1})]``.

    Attributes:
        n: n-gram length.
        vocab_size: V (given, or max token + 1).
        total: number of n-gram occurrences, ``rows * max(length - n + 1, 0)``.
    """

    n: int
    vocab_size: int
    total: int
    dense: np.ndarray | None
    codes: np.ndarray | None
    counts: np.ndarray | None

    @property
    def is_dense(self) -> bool:
        return self.dense is not None

    @property
    def num_distinct(self) -> int:
        """Number of distinct n-grams that occur."""
        if self.dense is not None:
            return int(np.count_nonzero(self.dense))
        assert self.codes is not None
        return int(self.codes.size)

    def sparse(self) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, counts)``: sorted unique ``uint64`` codes of the n-grams
        that occur and their ``uint64`` counts (computed from the dense table
        when the counts are dense)."""
        if self.dense is not None:
            flat = self.dense.reshape(-1)
            codes = np.flatnonzero(flat).astype(np.uint64)
            return codes, flat[codes.astype(np.intp)]
        assert self.codes is not None and self.counts is not None
        return self.codes, self.counts

    def decode(self, codes: Any) -> np.ndarray:
        """``[m, n]`` tokens of ``m`` n-gram codes (base ``vocab_size``, first
        token most significant), in the smallest unsigned dtype holding them."""
        c = np.array(codes, dtype=np.uint64).reshape(-1)
        dtype = np.result_type(np.min_scalar_type(self.vocab_size - 1), np.uint8)
        out = np.empty((c.size, self.n), dtype=dtype)
        v = np.uint64(self.vocab_size)
        for j in range(self.n - 1, -1, -1):
            out[:, j] = c % v
            c = c // v
        return out

    def to_dict(self) -> dict[tuple[int, ...], int]:
        """``{(x_0, .., x_{n-1}): count}`` for every n-gram that occurs (one
        Python object per distinct n-gram: for inspection, not for big data)."""
        codes, counts = self.sparse()
        return {tuple(int(t) for t in row): int(c) for row, c in zip(self.decode(codes), counts, strict=True)}

    def to_dense(self) -> np.ndarray:
        """The ``(vocab_size,) * n`` ``uint64`` table (built from the sparse
        form if needed; refused when it would exceed 2**31 entries)."""
        if self.dense is not None:
            return self.dense
        entries = self.vocab_size**self.n
        if entries > 2**31 or self.n > int(_core.MAX_DENSE_NDIM):
            raise ValueError(
                f"a dense table of vocab_size**n = {self.vocab_size}**{self.n} entries is too large; "
                "use .sparse() or .to_dict()"
            )
        assert self.codes is not None and self.counts is not None
        out = np.zeros(entries, dtype=np.uint64)
        out[self.codes.astype(np.intp)] = self.counts
        return out.reshape((self.vocab_size,) * self.n)

    def __getitem__(self, ngram: Any) -> int:
        """Count of one n-gram given as a sequence of ``n`` tokens (0 if absent)."""
        toks = [check_int("ngram token", t, 0, self.vocab_size - 1) for t in ngram]
        if len(toks) != self.n:
            raise ValueError(f"ngram must have n = {self.n} tokens, got {len(toks)}")
        if self.dense is not None:
            return int(self.dense[tuple(toks)])
        code = 0
        for t in toks:
            code = code * self.vocab_size + t
        assert self.codes is not None and self.counts is not None
        i = int(np.searchsorted(self.codes, np.uint64(code)))
        return int(self.counts[i]) if i < self.codes.size and int(self.codes[i]) == code else 0

    def __repr__(self) -> str:
        form = "dense" if self.is_dense else "sparse"
        return (
            f"NgramCounts(n={self.n}, vocab_size={self.vocab_size}, total={self.total}, "
            f"distinct={self.num_distinct}, {form})"
        )


def ngram_counts(
    tokens: Any,
    n: int,
    vocab_size: int | None = None,
    *,
    max_dense_entries: int = DEFAULT_MAX_DENSE_ENTRIES,
) -> NgramCounts:
    """Counts of all n-grams occurring within the rows of ``tokens``.

    Args:
        tokens: ``[num_sequences, length]`` integer array (any integer dtype),
            or 1-D (one sequence). n-grams never cross row boundaries; rows
            shorter than ``n`` contribute nothing.
        n: n-gram length, ``n >= 1``.
        vocab_size: V; default ``max(tokens) + 1``. ``V**n`` must fit in 64
            bits (codes are ``uint64``).
        max_dense_entries: return the dense ``(V,)*n`` table when ``V**n`` is at
            most this (default 2**26); otherwise the sparse form. 0 forces the
            sparse form.

    Returns:
        :class:`NgramCounts` (dense or sparse, see there).

    Cost: one parallel pass over the tokens. Dense: per-thread tables summed
    at the end. Sparse: every occurrence is coded as a ``uint64`` (8 bytes per
    token of extra memory), sorted in parallel and run-length reduced.

    Raises:
        TypeError: non-integer tokens, non-integer ``n``.
        ValueError: ``n < 1``, tokens of more than 2 dimensions, a token
            outside ``[0, vocab_size)`` or negative (the message names its
            position), ``vocab_size**n >= 2**64``, an empty array without
            ``vocab_size``.
    """
    arr, _ = as_tokens(tokens)
    k = check_int("n", n, 1)
    v, total, dense, codes, counts = _core.ngram_counts(arr, k, _vocab(vocab_size), _max_dense(max_dense_entries))
    if dense is not None:
        dense = dense.reshape((int(v),) * k)
    return NgramCounts(n=k, vocab_size=int(v), total=int(total), dense=dense, codes=codes, counts=counts)


@dataclass(frozen=True)
class EntropyEstimate:
    """An estimate of the order-k conditional entropy (see
    :func:`conditional_entropy`), in ``unit``.

    Attributes:
        value: the estimate (plug-in plus ``bias_correction``).
        stderr: delta-method standard error for i.i.d. (context, next-token)
            pairs; ignores dependence between positions.
        plugin: the uncorrected plug-in estimate.
        bias_correction: what the correction added (0 for ``"none"``).
        correction: ``"miller-madow"`` or ``"none"``.
        order: k.
        num_samples: N, the number of (k+1)-gram occurrences used.
        num_contexts: number of distinct contexts (k-grams followed by a token).
        num_distinct: number of distinct (k+1)-grams.
        vocab_size: V.
        unit: ``"nats"``, ``"bits"`` or ``"log base b"``.
    """

    value: float
    stderr: float
    plugin: float
    bias_correction: float
    correction: str
    order: int
    num_samples: int
    num_contexts: int
    num_distinct: int
    vocab_size: int
    unit: str

    def __float__(self) -> float:
        return self.value

    def __str__(self) -> str:
        return f"{self.value:.6f} ± {self.stderr:.6f} {self.unit} (order {self.order}, N = {self.num_samples})"


def _estimate(stats: tuple[float, float, float, int, int, int, int], k: int, corr: str, base: Any) -> EntropyEstimate:
    plugin, mm, var, samples, contexts, distinct, v = stats
    scale = log_base(base)
    bias = mm if corr == "miller-madow" else 0.0
    return EntropyEstimate(
        value=(plugin + bias) / scale,
        stderr=math.sqrt(var / samples) / scale if samples > 0 else math.nan,
        plugin=plugin / scale,
        bias_correction=bias / scale,
        correction=corr,
        order=k,
        num_samples=int(samples),
        num_contexts=int(contexts),
        num_distinct=int(distinct),
        vocab_size=int(v),
        unit=unit_name(base),
    )


def conditional_entropy(
    tokens: Any,
    order: int,
    vocab_size: int | None = None,
    correction: str = "miller-madow",
    base: float | None = None,
    *,
    max_dense_entries: int = DEFAULT_MAX_DENSE_ENTRIES,
) -> EntropyEstimate:
    """Estimate the order-k conditional entropy ``H(X_t | X_{t-k} .. X_{t-1})``.

    From the counts ``c(s, x)`` of the (k+1)-grams (context ``s`` = k tokens,
    next token ``x``) within the rows of ``tokens``, with ``n_s = Σ_x c(s, x)``,
    ``N = Σ_s n_s`` and ``m_s`` the number of distinct next tokens seen after
    ``s``, this computes (in nats, divided by ``ln(base)`` if given):

    * plug-in (maximum likelihood):
      ``Ĥ = Σ_s (n_s/N) H(p̂(·|s)) = -(1/N) Σ_{s,x} c(s,x) ln(c(s,x)/n_s)``;
    * Miller–Madow (Miller 1955), the default: add ``(m_s - 1)/(2 n_s)`` to
      each context's entropy, i.e. ``Ĥ_MM = Ĥ + Σ_s (m_s - 1)/(2N)``.

    ``order=0`` is the unigram entropy (one empty context). Every row
    contributes ``length - k`` samples: its first k tokens serve only as
    context.

    **Bias.** The plug-in is biased downward: for each context,
    ``E[H(p̂_s)] ≈ H(p_s) - (m_s - 1)/(2 n_s)`` (Miller 1955; Paninski 2003,
    "Estimation of entropy and mutual information"), so ``Ĥ`` is low by about
    ``Σ_s (m_s - 1)/(2N)`` overall. Miller–Madow removes this first-order term
    (using the *observed* m_s, so it still under-corrects when many symbols
    are unseen). The bias is severe — and neither estimate is trustworthy —
    when the number of contexts × V is comparable to N (most (k+1)-grams seen
    once or never); in :func:`entropy_profile` this shows as an estimate that
    keeps falling with k.

    **Variance.** ``stderr = sqrt(σ̂²/N)`` with ``σ̂²`` the variance of the
    surprisal ``-ln p̂(x|s)`` under the empirical joint law of (s, x),
    ``σ̂² = Σ_s (n_s/N) [Var_s(-ln p̂(·|s)) + (Ĥ_s - Ĥ)²]``: the delta-method
    asymptotic variance of the plug-in for N i.i.d. (context, next-token)
    pairs (its gradient in p(s, x) is ``-ln p(x|s)``). It ignores the
    dependence between overlapping windows of a sequence (for a Markov source
    the true variance differs by the autocorrelation of ``Ĥ_{s_t}``), and it
    says nothing about the bias above.

    **Consistency.** For a stationary ergodic source whose order is at most
    k (i.i.d. for k = 0), the estimate converges to the entropy rate as N
    grows (error ``O(1/sqrt(N))`` plus a bias ``O(contexts·V/N)``). For a
    source of higher order it converges to ``H(X_t | k previous tokens)``,
    which is an upper bound on the entropy rate.

    Args:
        tokens: ``[num_sequences, length]`` integer array (any integer dtype),
            or 1-D (one sequence).
        order: k >= 0; rows must have at least k + 1 tokens.
        vocab_size: V; default ``max(tokens) + 1`` (it does not enter the
            estimate, only the validation of the tokens and the table size).
        correction: ``"miller-madow"`` (default) or ``"none"`` (plug-in).
        base: logarithm base of the result (``None``: nats, 2: bits).
        max_dense_entries: count (k+1)-grams in a dense table up to this many
            entries ``V**(k+1)``, otherwise by sorting (see
            :func:`ngram_counts`); the result does not depend on it beyond
            floating-point rounding.

    Returns:
        :class:`EntropyEstimate` with ``.value``, ``.stderr``, ``.plugin``, N
        (``.num_samples``) and the number of contexts.

    Raises:
        TypeError: non-integer tokens / order, a non-string correction.
        ValueError: ``order < 0`` or too large for the rows (names
            ``order``), bad tokens (names the position), unknown correction,
            ``base`` <= 0 or 1, ``vocab_size**(order+1) >= 2**64``.
    """
    arr, shape = _tokens(tokens)
    k = _check_order("order", order, arr, shape)
    corr = _correction(correction)
    log_base(base)
    stats = _core.conditional_entropy_stats(arr, k, _vocab(vocab_size), _max_dense(max_dense_entries))
    return _estimate(stats, k, corr, base)


def entropy_profile(
    tokens: Any,
    max_order: int,
    vocab_size: int | None = None,
    correction: str = "miller-madow",
    base: float | None = None,
    *,
    max_dense_entries: int = DEFAULT_MAX_DENSE_ENTRIES,
) -> np.ndarray:
    """Conditional-entropy estimates for orders ``0 .. max_order``.

    Returns a float64 array whose entry k equals
    ``conditional_entropy(tokens, k, vocab_size, correction, base).value``
    (to floating-point rounding), computed from a single counting pass:
    the (max_order+1)-gram counts are marginalised over their last token
    order by order (adding the one window per row that only the shorter
    n-gram has).

    For a stationary order-k source the true values fall from the unigram
    entropy and then stay flat at the entropy rate from order k on. The
    estimates instead keep drifting down at high orders, where the number of
    contexts × V approaches the number of tokens (the plug-in's downward
    bias; see :func:`conditional_entropy`): read the flat part, and compare
    ``correction="none"`` with Miller–Madow to see where bias sets in.

    Args:
        tokens: ``[num_sequences, length]`` integer array, or 1-D.
        max_order: highest order K >= 0; rows need at least K + 1 tokens.
        vocab_size, correction, base, max_dense_entries: as in
            :func:`conditional_entropy` (the table choice applies to the
            (K+1)-gram counts).

    Raises:
        As :func:`conditional_entropy`, naming ``max_order``.
    """
    arr, shape = _tokens(tokens)
    k = _check_order("max_order", max_order, arr, shape)
    corr = _correction(correction)
    scale = log_base(base)
    stats = _core.entropy_profile_stats(arr, k, _vocab(vocab_size), _max_dense(max_dense_entries))
    out = np.array([s[0] + (s[1] if corr == "miller-madow" else 0.0) for s in stats], dtype=np.float64)
    return out / scale
