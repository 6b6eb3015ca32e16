"""Probe processes with exactly known laws: i.i.d. and order-k Markov chains.

All sampling and scoring runs in the Rust core (``dataprobes._core``) with the
GIL released and in parallel over sequences. Conventions (docs/architecture.md, determinism):

* ``sample(n, T, seed=s, start=k)`` returns rows ``k .. k+n`` of the
  conceptually infinite sample for seed ``s``: row ``i`` depends only on
  ``(s, i)``, so output is bit-identical for any thread count
  (``RAYON_NUM_THREADS``) and any split of a job into ``start`` shards.
* Tokens come back in the smallest unsigned dtype that holds the vocabulary
  (uint8 up to 256 tokens, then uint16, then uint32).
* Log-probabilities are in nats; methods that report rates take ``base``
  (``base=2`` for bits).
* A sequence containing a zero-probability event is not an error: its
  ``log_prob`` is ``-inf``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .. import _core
from .._validation import (
    as_array,
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
from .base import _CoreScored, _owned

__all__ = ["MarkovChain", "IID", "ROW_SUM_TOL"]

#: Rows and initial laws must sum to 1 within this absolute tolerance unless
#: ``normalize=True``; accepted rows are renormalised exactly.
ROW_SUM_TOL: float = _core.ROW_SUM_TOL


class _ChainProcess(_CoreScored):
    """Shared implementation over the Rust Markov core (order 0 = i.i.d.);
    inside the first ``order`` tokens the predictive law is the conditional of
    the initial law."""

    _core: _core.MarkovCore

    @property
    def vocab_size(self) -> int:
        return int(self._core.vocab_size)

    @property
    def num_states(self) -> int:
        """Number of chain states ``vocab_size ** order`` (1 for i.i.d.)."""
        return int(self._core.num_states)

    def sample(self, num_sequences: int, length: int, seed: int = 0, start: int = 0) -> np.ndarray:
        """Sample ``[num_sequences, length]`` tokens.

        Row ``i`` is sequence ``start + i`` of the stream for ``seed``: O(1)
        per token (alias tables), parallel over sequences, bit-identical for any
        thread count and any sharding by ``start``.
        """
        n, k = check_rows(num_sequences, start)
        t = check_int("length", length)
        s = check_seed("seed", seed)
        return self._core.sample(n, t, s, k)

    def sample_at(self, indices: Any, length: int, seed: int = 0) -> np.ndarray:
        return self._core.sample_at(as_indices(indices), check_int("length", length), check_seed("seed", seed))

    def entropy_rate(self, base: float | None = None) -> float:
        """Exact entropy rate ``H = Σ_s π(s) H(P(·|s))`` (nats/token, or in ``base``)."""
        return float(self._core.entropy_rate()) / log_base(base)

    def varentropy_rate(self, base: float | None = None) -> float:
        """Per-token varentropy ``Σ_s π(s) V(P(·|s))``, ``V(p) = Σ p log²p - H(p)²``.

        The surprisal increments are martingale differences, so for a long
        stationary sequence ``Var[-log p(x_1..n)] ≈ n × varentropy_rate``
        (squared units of ``base``).
        """
        return float(self._core.varentropy_rate()) / log_base(base) ** 2


class MarkovChain(_ChainProcess):
    """Stationary order-k Markov chain over ``vocab_size`` tokens.

    Args:
        transition: ``[V**order, V]`` row-stochastic matrix. Row ``s`` is the
            law of the next token after the last ``order`` tokens
            ``x_{t-k} .. x_{t-1}`` read as the base-V number
            ``s = Σ_j x_{t-k+j} V**(k-1-j)`` (most recent token last).
        order: k >= 1 (use :class:`IID` for order 0).
        initial: law of the first ``order`` tokens, as ``V**order`` state
            probabilities (same indexing; an array of shape ``(V,)*order`` is
            flattened in C order). ``None``: the stationary law, so that the
            whole sequence is stationary (for a reducible chain, one with
            several closed classes, a ``UserWarning`` says which stationary
            law is used: see :meth:`stationary_distribution`).
        normalize: rescale rows (and ``initial``) that do not sum to 1.
            Otherwise sums must be within ``ROW_SUM_TOL`` (1e-6) of 1.

    Raises:
        TypeError: non-numeric arrays.
        ValueError: wrong shapes, negative / NaN / infinite probabilities,
            rows not summing to 1, a state space too large to tabulate.
    """

    def __init__(
        self,
        transition: Any,
        order: int = 1,
        initial: Any = None,
        *,
        normalize: bool = False,
    ) -> None:
        k = check_int("order", order, 1)
        normalize = check_bool("normalize", normalize)
        p = as_float_array("transition", transition, 2)
        if p.shape[1] == 0:
            raise ValueError(
                f"transition must have at least one column (vocab_size must be at least 1), got shape {p.shape}"
            )
        init = None
        if initial is not None:
            init_arr = as_array("initial", initial)
            init = as_float_array("initial", init_arr.reshape(-1) if init_arr.ndim > 1 else init_arr, 1)
        if normalize:
            p, init = rescale_huge_rows(p), None if init is None else rescale_huge_rows(init)
        self._core = _core.MarkovCore(p, k, init, bool(normalize))
        self._law = {
            "transition": _owned(p, transition),
            "order": k,
            "initial": None if init is None else _owned(init, initial),
            "normalize": bool(normalize),
        }
        if init is None:  # the stationary law starts every sequence: say when it is not unique
            self._warn_if_reducible(p, stacklevel=3)

    def _warn_if_reducible(self, p: np.ndarray, stacklevel: int) -> None:
        """Warns when the chain has more than one closed class (so infinitely
        many stationary laws), for state spaces small enough to check
        (``_classes.MAX_STATES`` states, ``_classes.MAX_EDGES`` transitions).
        A strictly positive table is irreducible and is not examined."""
        from . import _classes

        if (p > 0).all() or p.shape[0] > _classes.MAX_STATES or np.count_nonzero(p) > _classes.MAX_EDGES:
            return
        classes = self.closed_classes()
        if len(classes) > 1:
            warnings.warn(
                f"MarkovChain: the chain is reducible, with {len(classes)} closed classes of states "
                f"({_classes.describe(classes)}), so its stationary law is not unique. The one used "
                "(the initial law, stationary_distribution(), entropy_rate()) is the long-run law of the chain "
                "started from the uniform law over states; pass initial= to choose how sequences start (the "
                "stationary law is then the long-run law from it)",
                UserWarning,
                stacklevel=stacklevel,
            )

    def closed_classes(self) -> list[np.ndarray]:
        """The closed classes of the state graph (state ``s`` leads to the
        states of the tokens ``x`` with ``P(x | s) > 0``): sets of states the
        chain never leaves, each a sorted array of state indices, ordered by
        their smallest state. One class: the stationary law is unique; more:
        the chain is reducible and every mixture of the classes' stationary
        laws is stationary (:meth:`stationary_distribution` then warns).
        Linear in states plus positive transitions (Tarjan's algorithm)."""
        cached = self.__dict__.get("_closed")
        if cached is None:
            from . import _classes

            cached = _classes.closed_classes(*_classes.successor_graph(self.transition, self.order))
            self.__dict__["_closed"] = cached
        return [c.copy() for c in cached]

    @classmethod
    def random(
        cls,
        vocab_size: int,
        order: int = 1,
        *,
        entropy_rate: float | None = None,
        concentration: float | None = None,
        seed: int = 0,
    ) -> MarkovChain:
        """A random order-k chain with one knob set.

        * ``concentration=α``: every row drawn from a symmetric Dirichlet(α)
          (small α: peaked rows; ``E[H(row)] = ψ(Vα+1) - ψ(α+1)`` nats).
        * ``entropy_rate=h`` (nats/token): rows ``softmax(G/τ)`` with standard
          normal logits G, and τ found by bisection so that the chain's exact
          entropy rate equals h within 1e-9 nats (``0 < h < log V``).

        With neither, ``concentration=1.0`` (uniform over the simplex). The
        chain is a deterministic function of ``(vocab_size, order, knob, seed)``.
        """
        v = check_int("vocab_size", vocab_size, 1, 2**32 - 1)
        k = check_int("order", order, 1)
        s = check_seed("seed", seed)
        if entropy_rate is not None and concentration is not None:
            raise ValueError("pass exactly one of entropy_rate= and concentration=")
        n_states = _core.check_state_space(v, k)  # refuse before allocating
        rng = np.random.default_rng(s)
        if entropy_rate is not None:
            h = check_float("entropy_rate", entropy_rate, positive=True)
            logits = rng.standard_normal((n_states, v))
            _, probs, _ = _core.tune_temperature(logits, k, h, 1e-9)
            return cls(probs, order=k)
        alpha = 1.0 if concentration is None else check_float("concentration", concentration, positive=True)
        probs = rng.dirichlet(np.full(v, alpha), size=n_states)
        return cls(probs, order=k, normalize=True)

    @property
    def order(self) -> int:
        return int(self._core.order)

    @property
    def transition(self) -> np.ndarray:
        """The row-normalised ``[V**order, V]`` transition matrix (read-only)."""
        return self._table("transition")

    @property
    def initial(self) -> np.ndarray:
        """Law of the first ``order`` tokens over the ``V**order`` states (read-only)."""
        return self._table("initial")

    def stationary_distribution(self) -> np.ndarray:
        """Stationary law π over the ``V**order`` states (``πP = π``; read-only).

        Unique when the chain has one closed class (:meth:`closed_classes`).
        A reducible chain (several closed classes) has infinitely many; the
        one returned is then the long-run law of the chain started from
        ``initial`` (power iteration), which :meth:`entropy_rate` also uses.
        With ``initial=None`` that start is the uniform law over states, and a
        ``UserWarning`` names the classes: pass ``initial=`` to choose."""
        if self._law["initial"] is None:
            self._warn_if_reducible(self._law["transition"], stacklevel=3)
        return self._table("stationary")

    def row_entropies(self, base: float | None = None) -> np.ndarray:
        """``H(P(·|s))`` of every state's next-token law."""
        return self._core.row_entropies() / log_base(base)

    def row_varentropies(self, base: float | None = None) -> np.ndarray:
        """``V(P(·|s))`` of every state's next-token law."""
        return self._core.row_varentropies() / log_base(base) ** 2

    def __repr__(self) -> str:
        return (
            f"MarkovChain(vocab_size={self.vocab_size}, order={self.order}, "
            f"entropy_rate={self.entropy_rate():.6f} nats)"
        )


class IID(_ChainProcess):
    """Independent, identically distributed tokens with law ``probs``.

    Args:
        probs: ``[V]`` probabilities (sum within ``ROW_SUM_TOL`` of 1 unless
            ``normalize=True``).
    """

    def __init__(self, probs: Any, *, normalize: bool = False) -> None:
        normalize = check_bool("normalize", normalize)
        p = as_float_array("probs", probs, 1)
        if p.size == 0:
            raise ValueError("probs must not be empty (vocab_size must be at least 1)")
        try:
            self._core = _core.MarkovCore((rescale_huge_rows(p) if normalize else p)[None, :], 0, None, bool(normalize))
        except ValueError as exc:
            raise ValueError(str(exc).replace("transition row 0", "probs")) from None
        self._law = {"probs": _owned(p, probs), "normalize": bool(normalize)}

    @classmethod
    def random(
        cls,
        vocab_size: int,
        *,
        entropy_rate: float | None = None,
        concentration: float | None = None,
        seed: int = 0,
        entropy: float | None = None,
    ) -> IID:
        """Random law: Dirichlet(``concentration``) or ``softmax(G/τ)`` tuned to
        ``entropy_rate`` nats (one knob, as in :meth:`MarkovChain.random`;
        default ``concentration=1``). ``entropy=`` is the deprecated old name
        of ``entropy_rate=``."""
        v = check_int("vocab_size", vocab_size, 1, 2**32 - 1)
        s = check_seed("seed", seed)
        if entropy is not None:
            warnings.warn("IID.random(entropy=) is deprecated; use entropy_rate=", DeprecationWarning, stacklevel=2)
            if entropy_rate is not None:
                raise ValueError("pass entropy_rate= only (entropy= is its deprecated old name)")
            entropy_rate = entropy
        if entropy_rate is not None and concentration is not None:
            raise ValueError("pass exactly one of entropy_rate= and concentration=")
        rng = np.random.default_rng(s)
        if entropy_rate is not None:
            h = check_float("entropy_rate", entropy_rate, positive=True)
            _, probs, _ = _core.tune_temperature(rng.standard_normal((1, v)), 0, h, 1e-9)
            return cls(probs[0])
        alpha = 1.0 if concentration is None else check_float("concentration", concentration, positive=True)
        return cls(rng.dirichlet(np.full(v, alpha)), normalize=True)

    @property
    def probs(self) -> np.ndarray:
        """The normalised law ``[V]`` (read-only)."""
        return self._table("transition")[0]

    def __repr__(self) -> str:
        return f"IID(vocab_size={self.vocab_size}, entropy_rate={self.entropy_rate():.6f} nats)"
