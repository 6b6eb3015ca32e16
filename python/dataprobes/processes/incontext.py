"""In-context Markov chains and the in-context n-gram baselines.

The in-context learning probe of Edelman et al. (2024, "The evolution of
statistical induction heads", arXiv 2402.11004): every sequence has its *own*
order-k chain with rows drawn from a symmetric Dirichlet(α), and its first k
tokens are uniform. A model can only predict well by inferring the chain from
the context. Integrating the chain out gives the exact marginal law

    p(x_t = j | x_<t) = (c_sj + α) / (c_s + V α),

the Bayes-optimal in-context predictor (add-α smoothing of the transition
counts c seen so far in the sequence; α = ½ is Krichevsky–Trofimov). Models
pass through the in-context *unigram* and *bigram* stages before reaching it;
:func:`incontext_ngram_log_probs` gives those baselines.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np

from .. import _core
from .._validation import (
    as_float_array,
    as_indices,
    as_tokens,
    check_float,
    check_int,
    check_seed,
    start_indices,
)
from ..stats.estimate import Estimate
from .base import _CoreScored
from .markov import ROW_SUM_TOL, MarkovChain

__all__ = [
    "InContextMarkov",
    "incontext_ngram_log_probs",
    "incontext_unigram_log_probs",
    "incontext_bigram_log_probs",
]


def _check_chains(chains: Any, n: int | None, v: int, k: int) -> np.ndarray:
    """``chains`` as a float64 ``[n, V**k, V]`` array of row-stochastic
    matrices (any ``n`` when ``None``): ``TypeError`` for a non-numeric array,
    ``ValueError`` naming ``chains`` for a wrong shape, an entry that is
    negative, NaN or infinite, or a row not summing to 1 within
    ``ROW_SUM_TOL`` (such chains would score as NaN)."""
    c = as_float_array("chains", chains, 3)
    want = (c.shape[0] if n is None else n, v**k, v)
    if c.shape != want:
        raise ValueError(f"chains must have shape {want} ([sequences, vocab_size**order, vocab_size]), got {c.shape}")
    bad = ~(np.isfinite(c) & (c >= 0))
    if bad.any():
        i, s, j = (int(a) for a in np.argwhere(bad)[0])
        raise ValueError(f"chains must be finite and non-negative: chains[{i}, {s}, {j}] is {c[i, s, j]}")
    sums = c.sum(axis=2)
    off = np.abs(sums - 1.0) > ROW_SUM_TOL
    if off.any():
        i, s = (int(a) for a in np.argwhere(off)[0])
        raise ValueError(f"chains rows must sum to 1: chains[{i}, {s}] sums to {sums[i, s]}")
    return c


class InContextMarkov(_CoreScored):
    """Each sequence follows its own order-k chain with Dirichlet(α) rows.

    Args:
        vocab_size: V >= 1.
        order: k >= 0 (0: each sequence is i.i.d. from its own Dirichlet law).
        concentration: α > 0 of the symmetric Dirichlet prior on each row.

    Sampling is O(1) per token (Pólya urn). ``log_prob``, ``token_log_probs``
    and ``predictive`` are the exact marginal law: the Bayes predictor
    ``(c_s· + α)/(c_s + Vα)``, uniform over the first k tokens; ``sample(...,
    return_chains=True)`` also returns each sequence's hidden chain (drawn from
    its exact posterior given the sequence, so the tokens are the same either
    way), and :meth:`chain_token_log_probs` scores under those chains (the
    oracle that knows the chain).
    """

    def __init__(self, vocab_size: int, order: int = 1, concentration: float = 1.0) -> None:
        v = check_int("vocab_size", vocab_size, 1, 2**32 - 1)
        k = check_int("order", order, 0)
        a = check_float("concentration", concentration, positive=True)
        self._core = _core.InContextCore(v, k, a)
        self._law = {"vocab_size": v, "order": k, "concentration": a}

    @property
    def vocab_size(self) -> int:
        return int(self._core.vocab_size)

    @property
    def order(self) -> int:
        return int(self._core.order)

    @property
    def concentration(self) -> float:
        return float(self._core.concentration)

    @property
    def num_states(self) -> int:
        """Number of chain states (contexts) ``vocab_size ** order``."""
        return int(self._core.num_states)

    @overload
    def sample(
        self, num_sequences: int, length: int, seed: int = 0, start: int = 0, *, return_chains: Literal[False] = False
    ) -> np.ndarray: ...
    @overload
    def sample(
        self, num_sequences: int, length: int, seed: int = 0, start: int = 0, *, return_chains: Literal[True]
    ) -> tuple[np.ndarray, np.ndarray]: ...
    @overload
    def sample(
        self, num_sequences: int, length: int, seed: int = 0, start: int = 0, *, return_chains: bool
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]: ...
    def sample(
        self, num_sequences: int, length: int, seed: int = 0, start: int = 0, *, return_chains: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """``[N, T]`` tokens (and ``[N, V**k, V]`` chains if ``return_chains``)."""
        return self.sample_at(start_indices(num_sequences, start), length, seed, return_chains=return_chains)

    @overload
    def sample_at(
        self, indices: Any, length: int, seed: int = 0, *, return_chains: Literal[False] = False
    ) -> np.ndarray: ...
    @overload
    def sample_at(
        self, indices: Any, length: int, seed: int = 0, *, return_chains: Literal[True]
    ) -> tuple[np.ndarray, np.ndarray]: ...
    @overload
    def sample_at(
        self, indices: Any, length: int, seed: int = 0, *, return_chains: bool
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]: ...
    def sample_at(
        self, indices: Any, length: int, seed: int = 0, *, return_chains: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        idx = as_indices(indices)
        s = check_seed("seed", seed)
        x = self._core.sample_at(idx, check_int("length", length), s)
        if return_chains:
            return x, self._core.posterior_chains(x, s, idx)
        return x

    def posterior_chains(self, x: Any, seed: int = 0, indices: Any = None) -> np.ndarray:
        """One draw per sequence of its chain from the posterior
        Dirichlet(α + transition counts), ``[N, V**k, V]``."""
        tokens, _ = as_tokens(x)
        idx = np.arange(len(tokens), dtype=np.uint64) if indices is None else as_indices(indices)
        return self._core.posterior_chains(tokens, check_seed("seed", seed), idx)

    def chain_token_log_probs(self, x: Any, chains: Any) -> np.ndarray:
        """``log P_i(x_t | state)`` under each sequence's own chain ``chains[i]``
        (``[N, V**k, V]``); ``-log V`` for the first k (uniform) tokens."""
        tokens, single = as_tokens(x)
        v, k = self.vocab_size, self.order
        n, length = tokens.shape
        c = _check_chains(chains, n, v, k)
        if tokens.size and (tokens.min() < 0 or tokens.max() >= v):
            raise ValueError(f"tokens must lie in [0, {v})")
        out = np.full((n, length), -np.log(v))
        if length > k:
            state = _core.state_indices(tokens, v, k)  # base-V state before positions k .. T-1
            with np.errstate(divide="ignore"):
                out[:, k:] = np.log(c[np.arange(n)[:, None], state, tokens[:, k:].astype(np.int64)])
        return out[0] if single else out

    def chain_entropy_rates(self, chains: Any, base: float | None = None) -> np.ndarray:
        """Exact entropy rate of each chain ``[N, V**k, V]`` (the rate each
        sequence's NLL/token converges to)."""
        k = self.order
        c = _check_chains(chains, None, self.vocab_size, k)
        if k == 0:
            from .markov import IID

            return np.array([IID(row[0], normalize=True).entropy_rate(base) for row in c])
        return np.array([MarkovChain(row, order=k, normalize=True).entropy_rate(base) for row in c])

    def entropy_rate(self, base: float | None = None, *, num_chains: int = 256, seed: int = 0) -> Estimate:
        """Expected entropy rate of a sequence's chain under the prior,
        E_P[H(P)], by Monte Carlo over ``num_chains`` chains (exact rate each)."""
        m = check_int("num_chains", num_chains, 2)
        rng = np.random.default_rng(check_seed("seed", seed))
        v, k = self.vocab_size, self.order
        chains = rng.dirichlet(np.full(v, self.concentration), size=(m, v**k))
        return Estimate.from_samples(self.chain_entropy_rates(chains, base))

    def __repr__(self) -> str:
        return (
            f"InContextMarkov(vocab_size={self.vocab_size}, order={self.order}, concentration={self.concentration:g})"
        )


def incontext_ngram_log_probs(x: Any, vocab_size: int, order: int, beta: float = 1.0) -> np.ndarray:
    """Token log-probs of the add-β n-gram predictor fitted to the context so far.

    ``p(x_t = j | x_<t) = (c_sj + β) / (c_s + Vβ)`` with c the counts of
    (k-token context → next token) earlier in the same sequence; the first k
    positions get ``1/V``. Order 0 is the in-context unigram, order 1 the
    in-context bigram; with ``order = k`` and ``β = α`` it is exactly the Bayes
    predictor of :class:`InContextMarkov`.
    """
    return InContextMarkov(vocab_size, order, check_float("beta", beta, positive=True)).token_log_probs(x)


def incontext_unigram_log_probs(x: Any, vocab_size: int, beta: float = 1.0) -> np.ndarray:
    """In-context unigram baseline: add-β token frequencies of the context so far."""
    return incontext_ngram_log_probs(x, vocab_size, 0, beta)


def incontext_bigram_log_probs(x: Any, vocab_size: int, beta: float = 1.0) -> np.ndarray:
    """In-context bigram baseline: add-β transition frequencies of the context so far."""
    return incontext_ngram_log_probs(x, vocab_size, 1, beta)
