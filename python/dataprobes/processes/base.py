"""The base class every probe process derives from, and the one scoring path
for processes whose exact scores come from a Rust core."""

from __future__ import annotations

import abc
import math
from typing import Any

import numpy as np

from .._validation import as_tokens
from ..stats.estimate import Estimate
from ..stats.typicality import TypicalityReport

__all__ = ["Process"]


def _unit(base: Any) -> str:
    if base is None or base == math.e:
        return "nats"
    if base == 2:
        return "bits"
    return f"log base {base}"


class Process(abc.ABC):
    """A random process over tokens ``0 .. vocab_size - 1`` with a known law."""

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
    ``token_log_probs`` and ``predictive`` over 2-D token arrays; 1-D input is
    one sequence and gets its results squeezed back."""

    _core: Any

    def log_prob(self, x: Any) -> np.ndarray:
        tokens, single = as_tokens(x)
        out = self._core.log_prob(tokens)
        return out[0] if single else out

    def token_log_probs(self, x: Any) -> np.ndarray:
        tokens, single = as_tokens(x)
        out = self._core.token_log_probs(tokens)
        return out[0] if single else out

    def predictive(self, x: Any) -> np.ndarray:
        tokens, single = as_tokens(x)
        out = self._core.predictive(tokens)
        return out[0] if single else out
