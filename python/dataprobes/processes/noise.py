"""Token noise that keeps the likelihood exact.

:class:`TokenNoise` replaces each token of a base process, independently with
probability ρ, by a uniform draw over the vocabulary (which may equal the
original token). Observed through this channel, an i.i.d. law p becomes
``(1-ρ)p + ρ/V``, a first-order Markov chain becomes an HMM whose hidden state
is the clean token, and an HMM keeps its dynamics with emission
``(1-ρ)B + ρ/V``: exact likelihoods for probing data quality.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np

from .. import _core
from .._validation import as_indices, check_int, check_probability, check_process, check_seed, start_indices
from ..stats.estimate import Estimate
from ..stats.typicality import TypicalityReport
from .base import Process
from .composite import Duplicated, Mixture
from .hmm import HMM
from .markov import IID, MarkovChain

__all__ = ["TokenNoise", "noisy_equivalent"]


def noisy_equivalent(process: Process, rho: float) -> Process:
    """The process whose law is that of ``process`` seen through the noise
    channel (each token redrawn uniformly with probability ``rho``)."""
    r = check_probability("rho", rho)
    v = process.vocab_size
    if isinstance(process, IID):
        return IID((1 - r) * process.probs + r / v, normalize=True)
    if isinstance(process, MarkovChain):
        if process.order != 1:
            raise ValueError(
                "token noise keeps an exact likelihood for order-1 Markov chains only (order > 1: use an HMM)"
            )
        emission = (1 - r) * np.eye(v) + r / v
        return HMM(process.transition, emission, process.initial, normalize=True)
    if isinstance(process, HMM):
        return HMM(process.transition, (1 - r) * process.emission + r / v, process.initial, normalize=True)
    if isinstance(process, Mixture):
        return Mixture([noisy_equivalent(c, r) for c in process.components], process.weights, normalize=True)
    if isinstance(process, Duplicated):
        return noisy_equivalent(process.process, r)
    raise ValueError(
        f"token noise keeps an exact likelihood for IID, order-1 MarkovChain, HMM, Mixture and Duplicated "
        f"processes, not {type(process).__name__}"
    )


class TokenNoise(Process):
    """``process`` with each token redrawn uniformly with probability ``rho``.

    Sampling draws clean sequences from ``process`` and corrupts them with a
    stream of its own (deterministic in (seed, sequence index));
    ``return_clean=True`` also returns the clean tokens and the mask of
    redrawn positions (ground truth for data-quality probes). Likelihoods
    and the entropy rate are those of :func:`noisy_equivalent`.
    """

    def __init__(self, process: Process, rho: float) -> None:
        check_process("process", process)
        self._rho = check_probability("rho", rho)
        self._process = process
        self._exact = noisy_equivalent(process, self._rho)
        self._law = {"process": process, "rho": self._rho}

    @property
    def vocab_size(self) -> int:
        return self._process.vocab_size

    @property
    def rho(self) -> float:
        return self._rho

    @property
    def process(self) -> Process:
        return self._process

    @property
    def exact(self) -> Process:
        """The equivalent process with the noisy law (IID, HMM or Mixture)."""
        return self._exact

    @overload
    def sample(
        self, num_sequences: int, length: int, seed: int = 0, start: int = 0, *, return_clean: Literal[False] = False
    ) -> np.ndarray: ...
    @overload
    def sample(
        self, num_sequences: int, length: int, seed: int = 0, start: int = 0, *, return_clean: Literal[True]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
    @overload
    def sample(
        self, num_sequences: int, length: int, seed: int = 0, start: int = 0, *, return_clean: bool
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]: ...
    def sample(
        self, num_sequences: int, length: int, seed: int = 0, start: int = 0, *, return_clean: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Noisy ``[N, T]`` tokens (and the clean tokens and the redrawn-position
        mask if ``return_clean``)."""
        return self.sample_at(start_indices(num_sequences, start), length, seed, return_clean=return_clean)

    @overload
    def sample_at(
        self, indices: Any, length: int, seed: int = 0, *, return_clean: Literal[False] = False
    ) -> np.ndarray: ...
    @overload
    def sample_at(
        self, indices: Any, length: int, seed: int = 0, *, return_clean: Literal[True]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
    @overload
    def sample_at(
        self, indices: Any, length: int, seed: int = 0, *, return_clean: bool
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]: ...
    def sample_at(
        self, indices: Any, length: int, seed: int = 0, *, return_clean: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
        idx = as_indices(indices)
        s = check_seed("seed", seed)
        clean = self._process.sample_at(idx, check_int("length", length), s)
        noisy = np.array(clean, order="C", copy=True)
        mask = _core.corrupt_tokens(noisy, self.vocab_size, self._rho, s, idx)
        return (noisy, clean, mask) if return_clean else noisy

    def log_prob(self, x: Any) -> np.ndarray:
        return self._exact.log_prob(x)

    def token_log_probs(self, x: Any) -> np.ndarray:
        return self._exact.token_log_probs(x)

    def predictive(self, x: Any) -> np.ndarray:
        return self._exact.predictive(x)

    def entropy_rate(self, base: float | None = None) -> float | Estimate:
        return self._exact.entropy_rate(base)

    def typicality(self, x: Any, eps: float = 0.05, base: float | None = None) -> TypicalityReport:
        return self._exact.typicality(x, eps, base)

    def __repr__(self) -> str:
        return f"TokenNoise({self._process!r}, rho={self._rho:g})"
