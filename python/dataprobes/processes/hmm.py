"""Hidden Markov models with categorical emissions.

A hidden state path ``s_0, s_1, ...`` follows the Markov chain with transition
matrix ``A`` (``[S, S]``) started from ``initial`` (the stationary law of ``A``
unless given), and token ``x_t`` is drawn from the emission row
``E[s_t, ·]`` (``[S, V]``). Sampling, the forward algorithm and the
Monte-Carlo entropy rate run in the Rust core (``dataprobes._core.HmmCore``)
with the GIL released and in parallel over sequences.

Exact scores use the scaled forward algorithm (Rabiner 1989, "A tutorial on
hidden Markov models and selected applications in speech recognition",
Proc. IEEE 77(2):257–286, §V.A). With the filter
``α_{t-1}(i) = p(s_{t-1} = i | x_<t)`` kept normalised:

.. code-block:: text

    π_t(j) = Σ_i α_{t-1}(i) A[i, j]          predicted state law (π_0 = initial)
    c_t    = Σ_j π_t(j) E[j, x_t]            = p(x_t | x_<t)
    α_t(j) = π_t(j) E[j, x_t] / c_t          filter p(s_t = j | x_≤t)
    log p(x) = Σ_t log c_t
    p(x_t = v | x_<t) = Σ_j π_t(j) E[j, v]   the predictive law

Nothing underflows however long the sequence. A token whose conditional
probability is 0 gets ``-inf`` (and so does its sequence's ``log_prob``); the
filter then skips that token, as if it were missing, so later positions keep
finite conditionals and every predictive row still sums to 1. No score is ever
NaN.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np

from .. import _core
from .._validation import (
    as_float_array,
    as_indices,
    check_bool,
    check_float,
    check_int,
    check_rows,
    check_seed,
    log_base,
    rescale_huge_rows,
)
from ..stats.estimate import Estimate
from .base import _CoreScored, _owned

__all__ = ["HMM"]


class HMM(_CoreScored):
    """Hidden Markov model with ``S`` hidden states and ``V`` tokens.

    Args:
        transition: ``[S, S]`` row-stochastic matrix, ``A[i, j] = p(s_t = j | s_{t-1} = i)``.
        emission: ``[S, V]`` row-stochastic matrix, ``E[j, v] = p(x_t = v | s_t = j)``.
        initial: ``[S]`` law of the first hidden state. ``None``: the stationary
            law of ``transition`` (exact, by GTH elimination, when the chain has
            a single closed class of at most 2048 states; power iteration
            otherwise), so that the whole process is stationary.
        normalize: rescale rows (and ``initial``) that do not sum to 1.
            Otherwise sums must be within ``ROW_SUM_TOL`` (1e-6) of 1;
            accepted rows are renormalised exactly.

    Raises:
        TypeError: non-numeric arrays.
        ValueError: arrays of the wrong dimensionality or inconsistent shapes
            (``transition`` not square, ``emission`` without one row per
            state, ``initial`` without one entry per state), negative / NaN /
            infinite probabilities, rows not summing to 1, sizes too large to
            tabulate. Messages name the argument and the row.

    Example::

        hmm = dp.HMM(A, E)
        x, z = hmm.sample(1000, 512, seed=0, return_states=True)
        hmm.log_prob(x)                  # exact, nats
        hmm.predictive(x)                # [1000, 512, V]: p(x_t = · | x_<t)
        hmm.entropy_rate(base=2)         # Estimate(value, stderr), bits
    """

    def __init__(self, transition: Any, emission: Any, initial: Any = None, *, normalize: bool = False) -> None:
        normalize = check_bool("normalize", normalize)
        a = as_float_array("transition", transition, 2)
        e = as_float_array("emission", emission, 2)
        init = None if initial is None else as_float_array("initial", initial, 1)
        if normalize:
            a, e = rescale_huge_rows(a), rescale_huge_rows(e)
            init = None if init is None else rescale_huge_rows(init)
        self._core = _core.HmmCore(a, e, init, bool(normalize))
        self._law = {
            "transition": _owned(a, transition),
            "emission": _owned(e, emission),
            "initial": None if init is None else _owned(init, initial),
            "normalize": bool(normalize),
        }
        # Monte-Carlo entropy-rate estimates (nats) by their arguments; they
        # are deterministic, so caching them is exact.
        self._rates: dict[tuple[int, int, int, int], tuple[float, float]] = {}

    @classmethod
    def random(
        cls,
        num_states: int,
        vocab_size: int,
        *,
        transition_concentration: float = 1.0,
        emission_concentration: float = 0.1,
        seed: int = 0,
    ) -> HMM:
        """A random HMM: transition rows ~ Dirichlet(``transition_concentration``),
        emission rows ~ Dirichlet(``emission_concentration``) (small values give
        peaked emissions, so the hidden state is partly visible), stationary
        initial law. Deterministic in its arguments."""
        s = check_int("num_states", num_states, 1)
        v = check_int("vocab_size", vocab_size, 1)
        a = check_float("transition_concentration", transition_concentration, positive=True)
        b = check_float("emission_concentration", emission_concentration, positive=True)
        rng = np.random.default_rng(check_seed("seed", seed))
        return cls(rng.dirichlet(np.full(s, a), size=s), rng.dirichlet(np.full(v, b), size=s), normalize=True)

    # ------------------------------------------------------------ properties

    @property
    def vocab_size(self) -> int:
        """Number of distinct tokens V."""
        return int(self._core.vocab_size)

    @property
    def num_states(self) -> int:
        """Number of hidden states S."""
        return int(self._core.num_states)

    @property
    def transition(self) -> np.ndarray:
        """The row-normalised ``[S, S]`` transition matrix (read-only)."""
        return self._table("transition")

    @property
    def emission(self) -> np.ndarray:
        """The row-normalised ``[S, V]`` emission matrix (read-only)."""
        return self._table("emission")

    @property
    def initial(self) -> np.ndarray:
        """Law of the first hidden state ``[S]`` (read-only)."""
        return self._table("initial")

    def stationary_distribution(self) -> np.ndarray:
        """Stationary law of the hidden chain ``[S]`` (``πA = π``; read-only)."""
        return self._table("stationary")

    # ------------------------------------------------------------ sampling

    @overload
    def sample(
        self, num_sequences: int, length: int, seed: int = 0, start: int = 0, return_states: Literal[False] = False
    ) -> np.ndarray: ...
    @overload
    def sample(
        self, num_sequences: int, length: int, seed: int = 0, start: int = 0, *, return_states: Literal[True]
    ) -> tuple[np.ndarray, np.ndarray]: ...
    @overload
    def sample(
        self, num_sequences: int, length: int, seed: int, start: int, return_states: Literal[True]
    ) -> tuple[np.ndarray, np.ndarray]: ...
    @overload
    def sample(
        self, num_sequences: int, length: int, seed: int = 0, start: int = 0, return_states: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]: ...

    def sample(
        self, num_sequences: int, length: int, seed: int = 0, start: int = 0, return_states: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Sample ``[num_sequences, length]`` tokens.

        Row ``i`` is sequence ``start + i`` of the stream for ``seed``:
        bit-identical for any thread count and any sharding by ``start``. Two
        alias-table draws a token (transition, emission). Tokens come in the
        smallest unsigned dtype holding ``V``.

        With ``return_states=True`` returns ``(tokens, states)``, the hidden
        path in the smallest unsigned dtype holding ``S``; the tokens are
        identical to those returned without it.
        """
        n, k = check_rows(num_sequences, start)
        t = check_int("length", length)
        s = check_seed("seed", seed)
        return self._unpack(self._core.sample(n, t, s, k, check_bool("return_states", return_states)))

    @overload
    def sample_at(
        self, indices: Any, length: int, seed: int = 0, *, return_states: Literal[False] = False
    ) -> np.ndarray: ...
    @overload
    def sample_at(
        self, indices: Any, length: int, seed: int = 0, *, return_states: Literal[True]
    ) -> tuple[np.ndarray, np.ndarray]: ...
    @overload
    def sample_at(
        self, indices: Any, length: int, seed: int = 0, *, return_states: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]: ...

    def sample_at(
        self, indices: Any, length: int, seed: int = 0, *, return_states: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Rows drawn from the streams of arbitrary sequence ``indices``:
        ``sample(n, T, seed, start)`` equals ``sample_at(range(start, start + n), T, seed)``
        (what :class:`~dataprobes.Mixture` and :class:`~dataprobes.Duplicated`
        build on). ``return_states`` as in :meth:`sample`."""
        idx = as_indices(indices)
        t = check_int("length", length)
        s = check_seed("seed", seed)
        return self._unpack(self._core.sample_at(idx, t, s, check_bool("return_states", return_states)))

    @staticmethod
    def _unpack(out: Any) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        if isinstance(out, tuple):
            return out[0], out[1]
        assert isinstance(out, np.ndarray)
        return out

    # ------------------------------------------------------------ exact scores

    def filtered_states(self, x: Any) -> np.ndarray:
        """The filter ``p(s_t = · | x_≤t)`` at every position: ``[N, T, S]``
        float64 (``[T, S]`` for 1-D input)."""
        return self._per_sequence("filtered_states", x)

    # ------------------------------------------------------------ entropy rate

    def entropy_rate(
        self,
        base: float | None = None,
        num_sequences: int = 256,
        length: int = 4096,
        seed: int = 0,
        *,
        burn_in: int = 0,
    ) -> Estimate:
        """Monte-Carlo estimate of the entropy rate, with its standard error.

        An HMM's entropy rate has no closed form (Blackwell 1957), so it is
        estimated by the Shannon–McMillan–Breiman theorem (Cover & Thomas,
        *Elements of Information Theory*, §16.8; for HMMs Leroux 1992):
        ``-(1/T) log p(x_1..T) → H`` almost surely. Each of ``num_sequences``
        independent sequences ``sample(num_sequences, length, seed)`` is
        scored exactly by the forward algorithm (sampled and scored in Rust
        without being stored), and the estimate is the mean of
        ``-(1/(T-b)) Σ_{t≥b} log p(x_t | x_<t)`` with ``b = burn_in``;
        ``stderr`` is the standard deviation across sequences over
        ``sqrt(num_sequences)``.

        ``stderr`` covers the Monte-Carlo noise only. The mean also carries a
        deterministic bias: with ``burn_in=0`` it estimates ``H(X_1..T)/T``,
        which exceeds the rate by O(1/T) (at most ``log S / T``); a burn-in
        of a few mixing times reduces the bias to ``H(X_b+1..T | X_1..b)/(T-b)
        - H``, which decays geometrically for mixing chains.

        Deterministic in its arguments (and cached). Units: nats, or ``base``.
        Cost: ``num_sequences × length`` forward steps of O(S²) each (about
        a second for S = 128 with the defaults on two cores); memory O(S).
        """
        n = check_int("num_sequences", num_sequences, 2)
        t = check_int("length", length, 1)
        s = check_seed("seed", seed)
        b = check_int("burn_in", burn_in, 0)
        if b >= t:
            raise ValueError(f"burn_in must be smaller than length, got burn_in={b} and length={t}")
        scale = log_base(base)
        key = (n, t, s, b)
        cached = self._rates.get(key)
        if cached is None:
            est = Estimate.from_samples(self._core.sampled_surprisal(n, t, b, s, 0))
            cached = (est.value, est.stderr)
            self._rates[key] = cached
        return Estimate(cached[0] / scale, cached[1] / scale)

    def __repr__(self) -> str:
        return f"HMM(num_states={self.num_states}, vocab_size={self.vocab_size})"
