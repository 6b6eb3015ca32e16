"""The base class every probe process derives from, and the one scoring path
for processes whose exact scores come from a Rust core."""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from .._validation import as_tokens, check_float, log_base, unit_name
from ..stats.estimate import Estimate
from ..stats.typicality import TypicalityReport

__all__ = ["Process"]

#: The unit name of a log base: kept under its old name for importers.
_unit = unit_name


def _owned(arr: np.ndarray, source: Any) -> np.ndarray:
    """``arr`` (a checked copy of the argument ``source``) as an array no caller
    can change any more: copied when it is ``source`` itself or a view of
    someone's memory, then made read-only."""
    if arr is source or not arr.flags.owndata:
        arr = arr.copy()
    arr.flags.writeable = False
    return arr


def _rebuild(cls: type, law: dict[str, Any]) -> Any:
    """Unpickles a process: its constructor called on its exact law."""
    return cls(**law)


def _typicality_input(x: Any, eps: Any) -> tuple[np.ndarray, int, float]:
    """The checked arguments of every ``typicality``: 2-D tokens, their length
    (at least 1) and the band half-width ``eps`` (> 0)."""
    e = check_float("eps", eps, positive=True)
    tokens, _ = as_tokens(x)
    length = tokens.shape[1]
    if length == 0:
        raise ValueError("tokens: typicality needs sequences of length >= 1")
    return tokens, length, e


class Process(abc.ABC):
    """A random process over tokens ``0 .. vocab_size - 1`` with a known law.

    The library's processes keep the keyword arguments of their constructor
    (``_law``: the law exactly as given, before normalisation), so that they
    pickle, deep-copy and :meth:`save` by that law and are rebuilt
    bit-identical: equal samples for every seed and equal scores (DataLoader
    workers under ``spawn`` or ``forkserver`` receive them this way).
    """

    _law: dict[str, Any]

    def __reduce_ex__(self, protocol: Any) -> Any:
        law = self.__dict__.get("_law")
        if law is None:  # a user's own subclass: the default protocol
            return super().__reduce_ex__(protocol)
        return (_rebuild, (type(self), law))

    def save(self, path: Any) -> None:
        """Writes the exact law to ``path`` (an ``.npz`` archive without
        pickled objects); :meth:`load` rebuilds the process bit-identical."""
        from .serialize import save

        save(self, path)

    @classmethod
    def load(cls, path: Any) -> Any:
        """The process saved at ``path`` by :meth:`save`, or written by the
        command line (``<out>.process.npz``). ``MarkovChain.load`` (and so on)
        also checks that the file holds that class."""
        from .serialize import load

        out = load(path)
        if not isinstance(out, cls):
            raise TypeError(f"{path} holds a {type(out).__name__}, not a {cls.__name__}")
        return out

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """Number of distinct tokens."""

    @abc.abstractmethod
    def sample(self, num_sequences: int, length: int, seed: int = 0, start: int = 0) -> np.ndarray:
        """``[num_sequences, length]`` tokens: rows ``start .. start+num_sequences``
        of the sample for ``seed``."""

    def sample_at(self, indices: Any, length: int, seed: int = 0) -> np.ndarray:
        """Rows drawn from the streams of arbitrary sequence ``indices``:
        ``sample(n, T, seed, start)`` equals ``sample_at(range(start, start+n), T, seed)``.
        Composite probes (mixtures, duplication) build on it."""
        raise TypeError(f"{type(self).__name__} does not support sample_at")

    @abc.abstractmethod
    def log_prob(self, x: Any) -> np.ndarray:
        """Exact ``log p(x)`` in nats of each sequence (``[N]``; a scalar for 1-D input)."""

    @abc.abstractmethod
    def token_log_probs(self, x: Any) -> np.ndarray:
        """``log p(x_t | x_<t)`` in nats at every position (the shape of ``x``)."""

    def predictive(self, x: Any) -> np.ndarray:
        """``[N, T, V]`` exact next-token law ``p(x_t = · | x_<t)`` at every
        position: what a perfect model outputs. ``exp(token_log_probs(x))`` is
        this gathered at the observed tokens."""
        raise TypeError(f"{type(self).__name__} does not provide predictive distributions")

    @abc.abstractmethod
    def entropy_rate(self, base: float | None = None) -> float | Estimate:
        """Entropy rate (nats/token, or in ``base``); an :class:`Estimate`
        where no closed form exists."""

    @abc.abstractmethod
    def typicality(self, x: Any, eps: float = 0.05, base: float | None = None) -> TypicalityReport:
        """Typical-set membership and z-scores of each sequence of ``x``."""


class _CoreScored(Process):
    """Exact scores computed by a Rust core exposing ``log_prob``,
    ``token_log_probs``, ``predictive`` and ``path_stats`` over 2-D token
    arrays; 1-D input is one sequence and gets its results squeezed back.

    Typicality is computed here once for every core-backed process: the core's
    ``path_stats`` gives, as the three columns of an ``[N, 3]`` array, each
    sequence's ``log p(x)``, the centred surprisal
    sum ``Σ_t [-log q_t(x_t) - H(q_t)]`` and the varentropy sum ``Σ_t V(q_t)``
    over the predictive laws ``q_t`` along the path; a process supplies only its
    reference rate (:meth:`entropy_rate`, or its Monte-Carlo value).
    """

    _core: Any

    def _table(self, name: str) -> np.ndarray:
        """The core's table ``name`` (a law: transition, initial, stationary,
        ...), computed once and exposed read-only: callers share it, so no one
        may write into it."""
        cache = self.__dict__.setdefault("_tables", {})
        arr = cache.get(name)
        if arr is None:
            arr = getattr(self._core, name)()
            arr.flags.writeable = False
            cache[name] = arr
        return arr

    def _per_sequence(self, method: str, x: Any) -> np.ndarray:
        tokens, single = as_tokens(x)
        out = getattr(self._core, method)(tokens)
        return out[0] if single else out

    def log_prob(self, x: Any) -> np.ndarray:
        """Exact ``log p(x)`` in nats of each sequence (``[N]``; a scalar for
        1-D input). ``-inf`` for a sequence containing a token of conditional
        probability 0."""
        return self._per_sequence("log_prob", x)

    def token_log_probs(self, x: Any) -> np.ndarray:
        """``log p(x_t | x_<t)`` in nats at every position (the shape of
        ``x``); the rows sum to :meth:`log_prob`."""
        return self._per_sequence("token_log_probs", x)

    def predictive(self, x: Any) -> np.ndarray:
        """The next-token law ``p(x_t = · | x_<t)`` at every position:
        ``[N, T, V]`` float64 (``[T, V]`` for 1-D input).

        This is what a perfect model outputs after reading ``x_<t``, and
        ``predictive(x)[i, t, x[i, t]] == exp(token_log_probs(x)[i, t])``.
        Memory is ``N·T·V·8`` bytes: score long inputs in chunks.
        """
        return self._per_sequence("predictive", x)

    def typicality(
        self,
        x: Any,
        eps: float = 0.05,
        base: float | None = None,
        *,
        entropy_rate: float | Estimate | None = None,
    ) -> TypicalityReport:
        """Typical-set membership and path-centred z-scores of each sequence.

        ``nll_per_token`` is ``-(1/T) log p(x)``, compared with the reference
        rate ``H`` (``entropy_rate`` if given, in the units of ``base``;
        otherwise the process's :meth:`entropy_rate` with its defaults, the
        value of an :class:`~dataprobes.Estimate`) and the band ``H ± eps``
        (``eps`` in the units of ``base``).

        The z-score uses the predictive laws ``q_t = p(x_t = · | x_<t)`` along
        the path: ``Z = Σ_t [-log q_t(x_t) - H(q_t)] / sqrt(Σ_t V(q_t))``
        (:func:`~dataprobes.stats.typicality.z_scores`). The centred surprisals
        are martingale differences under the process, so ``Z`` is ≈ N(0, 1)
        for long sequences drawn from it, whatever the reference rate.
        """
        tokens, length, e = _typicality_input(x, eps)
        stats = self._core.path_stats(tokens)  # [N, 3]: log p(x), centred surprisal sum, varentropy sum
        logp, centred, var = stats[:, 0], stats[:, 1], stats[:, 2]
        if entropy_rate is None:
            h = float(self.entropy_rate(base))
        else:
            rate = entropy_rate.value if isinstance(entropy_rate, Estimate) else entropy_rate
            h = check_float("entropy_rate", rate)
        return TypicalityReport.from_path_stats(
            -logp / length / log_base(base), centred, var, length, entropy_rate=h, eps=e, unit=unit_name(base)
        )
