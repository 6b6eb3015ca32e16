"""Probes built from other probes: mixtures and duplicated data sets.

Both keep the exact law. A :class:`Mixture` labels each sequence with the
component that produced it (planted ground truth for attribution and data
selection); :class:`Duplicated` repeats a fraction of sequences, to probe
repetition in training data, and reports which row each copy repeats.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, overload

import numpy as np

from .. import _core
from .._validation import (
    as_float_array,
    as_indices,
    as_tokens,
    check_bool,
    check_probability,
    check_process,
    check_seed,
    log_base,
    rescale_huge_rows,
    start_indices,
    unit_name,
)
from ..stats.estimate import Estimate
from ..stats.typicality import TypicalityReport
from .base import Process, _owned, _typicality_input
from .markov import ROW_SUM_TOL

__all__ = ["Mixture", "Duplicated"]


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def _combine(rates: list[float | Estimate], weights: np.ndarray) -> float | Estimate:
    if all(not isinstance(r, Estimate) for r in rates):
        return float(sum(w * float(r) for w, r in zip(weights, rates, strict=True)))
    value = sum(w * float(r) for w, r in zip(weights, rates, strict=True))
    var = sum((w * r.stderr) ** 2 for w, r in zip(weights, rates, strict=True) if isinstance(r, Estimate))
    return Estimate(float(value), float(np.sqrt(var)))


class Mixture(Process):
    """Each sequence comes from component c with probability ``weights[c]``.

    ``log p(x) = log Σ_c w_c p_c(x)`` exactly. The entropy rate of a mixture of
    ergodic processes is ``Σ_c w_c H_c`` (each long sequence stays with its
    component).

    Args:
        processes: components, all over the same vocabulary.
        weights: positive, summing to 1 within ``ROW_SUM_TOL`` unless
            ``normalize=True``; default uniform.

    A sequence impossible under every component has ``log_prob`` ``-inf``.
    The token that makes it so (impossible under every component still in
    play) gets ``-inf`` in :meth:`token_log_probs` and is then skipped: it
    does not update the posterior over components, as the HMM filter skips a
    token of probability 0. So :meth:`posterior`, :meth:`predictive` and
    :meth:`typicality` stay defined (never NaN) on any sequence.
    """

    def __init__(self, processes: Sequence[Process], weights: Any = None, *, normalize: bool = False) -> None:
        normalize = check_bool("normalize", normalize)
        if isinstance(processes, (Process, str, bytes)) or not hasattr(processes, "__iter__"):
            raise TypeError(f"processes must be a sequence of processes, got {type(processes).__name__}")
        comps = list(processes)
        if not comps:
            raise ValueError("processes must be a non-empty sequence of processes")
        for i, p in enumerate(comps):
            check_process(f"processes[{i}]", p)
        v = comps[0].vocab_size
        for i, p in enumerate(comps):
            if p.vocab_size != v:
                raise ValueError(f"processes[{i}] has vocab_size {p.vocab_size}, processes[0] has {v}")
        if weights is None:
            w = np.full(len(comps), 1.0 / len(comps))
            given = None
        else:
            w = as_float_array("weights", weights, 1)
            given = _owned(w, weights)
            if w.shape != (len(comps),):
                raise ValueError(f"weights must have one entry per process ({len(comps)}), got shape {w.shape}")
            if not np.isfinite(w).all() or (w <= 0).any():
                raise ValueError(f"weights must be finite and > 0 (drop zero-weight components), got {w.tolist()}")
            if not normalize and abs(w.sum() - 1.0) > ROW_SUM_TOL:
                raise ValueError(f"weights sum to {w.sum()}, not 1; pass normalize=True to rescale them")
            w = rescale_huge_rows(w) if normalize else w
            w = w / w.sum()
        self._components = comps
        self._weights = w
        self._weights.flags.writeable = False
        self._law = {"processes": comps, "weights": given, "normalize": bool(normalize)}

    @property
    def vocab_size(self) -> int:
        return self._components[0].vocab_size

    @property
    def components(self) -> list[Process]:
        return list(self._components)

    @property
    def weights(self) -> np.ndarray:
        return self._weights

    @overload
    def sample(
        self, num_sequences: int, length: int, seed: int = 0, start: int = 0, *, return_labels: Literal[False] = False
    ) -> np.ndarray: ...
    @overload
    def sample(
        self, num_sequences: int, length: int, seed: int = 0, start: int = 0, *, return_labels: Literal[True]
    ) -> tuple[np.ndarray, np.ndarray]: ...
    @overload
    def sample(
        self, num_sequences: int, length: int, seed: int = 0, start: int = 0, *, return_labels: bool
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]: ...
    def sample(
        self, num_sequences: int, length: int, seed: int = 0, start: int = 0, *, return_labels: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """``[N, T]`` tokens (and the ``[N]`` component labels if ``return_labels``)."""
        return self.sample_at(start_indices(num_sequences, start), length, seed, return_labels=return_labels)

    @overload
    def sample_at(
        self, indices: Any, length: int, seed: int = 0, *, return_labels: Literal[False] = False
    ) -> np.ndarray: ...
    @overload
    def sample_at(
        self, indices: Any, length: int, seed: int = 0, *, return_labels: Literal[True]
    ) -> tuple[np.ndarray, np.ndarray]: ...
    @overload
    def sample_at(
        self, indices: Any, length: int, seed: int = 0, *, return_labels: bool
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]: ...
    def sample_at(
        self, indices: Any, length: int, seed: int = 0, *, return_labels: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        idx = as_indices(indices)
        s = check_seed("seed", seed)
        labels = self.labels_at(idx, s)
        first = self._components[0].sample_at(idx[:0], length, s)
        out = np.empty((len(idx), first.shape[1]), dtype=first.dtype)
        for c, comp in enumerate(self._components):
            rows = np.flatnonzero(labels == c)
            if rows.size:
                out[rows] = comp.sample_at(idx[rows], length, s)
        return (out, labels) if return_labels else out

    def labels_at(self, indices: Any, seed: int = 0) -> np.ndarray:
        """Component of each sequence index (a stream of its own, independent of the tokens)."""
        return _core.mixture_labels(self._weights, as_indices(indices), check_seed("seed", seed))

    def component_log_probs(self, x: Any) -> np.ndarray:
        """``[N, C]`` log p_c(x) of each sequence under each component."""
        tokens, _ = as_tokens(x)
        return np.stack([np.asarray(c.log_prob(tokens)) for c in self._components], axis=1)

    def log_prob(self, x: Any) -> np.ndarray:
        tokens, single = as_tokens(x)
        with np.errstate(divide="ignore"):
            out = _logsumexp(np.log(self._weights) + self.component_log_probs(tokens), axis=1)
        return out[0] if single else out

    def _joint_prefixes(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``J[c, i, t] = log w_c + Σ_{s<t} log p_c(x_s | x_<s)`` (``[C, N, T+1]``,
        the log joint of component and prefix ``x_<t``) and the per-component
        conditionals ``[C, N, T]``, with the convention of the class docstring:
        a token impossible under every component still in play is skipped (it
        does not update ``J``), so ``max_c J[c, i, t]`` is always finite."""
        n, length = tokens.shape
        with np.errstate(divide="ignore"):
            per = np.stack([np.asarray(c.token_log_probs(tokens)).reshape(n, length) for c in self._components])
            log_w = np.log(self._weights)[:, None, None]
        joint = np.concatenate([np.broadcast_to(log_w, (len(self._components), n, 1)), log_w + np.cumsum(per, 2)], 2)
        # rows whose prefix becomes impossible under every component: redo them
        # token by token, skipping each such token (rare; the rest stay as summed)
        bad = np.flatnonzero(np.isneginf(joint[:, :, -1]).all(axis=0))
        for i in bad:
            j = joint[:, i, 0].copy()
            for t in range(length):
                step = j + per[:, i, t]
                if not np.isneginf(step).all():
                    j = step
                joint[:, i, t + 1] = j
        return joint, per

    def posterior(self, x: Any) -> np.ndarray:
        """``[N, C]`` p(component | x): which component produced each sequence.

        Tokens impossible under every component (still in play) are skipped,
        so a sequence impossible under the mixture gets the posterior given its
        other tokens (the weights if none is possible), never NaN."""
        tokens, single = as_tokens(x)
        joint, _ = self._joint_prefixes(tokens)
        last = joint[:, :, -1].T
        post = np.exp(last - _logsumexp(last, axis=1)[:, None])
        return post[0] if single else post

    def token_log_probs(self, x: Any) -> np.ndarray:
        """``log p(x_t | x_<t)`` of the mixture: the difference of consecutive
        prefix log-likelihoods ``log Σ_c w_c p_c(x_≤t)``. A token impossible
        under every component gets ``-inf`` and is then skipped (as
        :meth:`posterior` says), so later positions keep finite conditionals,
        as an HMM's do."""
        tokens, single = as_tokens(x)
        joint, per = self._joint_prefixes(tokens)
        skipped = np.isneginf(joint[:, :, :-1] + per).all(axis=0)
        out = np.where(skipped, -np.inf, _logsumexp(joint[:, :, 1:], axis=0) - _logsumexp(joint[:, :, :-1], axis=0))
        return out[0] if single else out

    def predictive(self, x: Any) -> np.ndarray:
        """``[N, T, V]`` mixture predictive ``Σ_c p(c | x_<t) p_c(x_t = · | x_<t)``
        (tokens impossible under every component skipped, as in
        :meth:`posterior`: every row sums to 1, never NaN)."""
        tokens, single = as_tokens(x)
        n, length = tokens.shape
        joint, _ = self._joint_prefixes(tokens)
        prior = joint[:, :, :-1]
        resp = np.exp(prior - _logsumexp(prior, axis=0)[None])
        out = np.zeros((n, length, self.vocab_size))
        for c, comp in enumerate(self._components):
            out += resp[c][:, :, None] * np.asarray(comp.predictive(tokens)).reshape(n, length, self.vocab_size)
        return out[0] if single else out

    def entropy_rate(self, base: float | None = None) -> float | Estimate:
        """``Σ_c w_c H_c``."""
        return _combine([c.entropy_rate(base) for c in self._components], self._weights)

    def typicality(self, x: Any, eps: float = 0.05, base: float | None = None) -> TypicalityReport:
        """NLL/token under the mixture against ``Σ_c w_c H_c`` ± eps; z-scores
        are those of each sequence under its most probable component (the
        component it almost surely came from, for long sequences)."""
        tokens, length, e = _typicality_input(x, eps)
        best = np.argmax(self.posterior(tokens), axis=1)
        z = np.empty(len(tokens))
        for c, comp in enumerate(self._components):
            rows = np.flatnonzero(best == c)
            if rows.size:
                z[rows] = comp.typicality(tokens[rows], eps=e, base=base).z
        return TypicalityReport(
            nll_per_token=-self.log_prob(tokens) / length / log_base(base),
            z=z,
            entropy_rate=float(self.entropy_rate(base)),
            eps=e,
            unit=unit_name(base),
        )

    def __repr__(self) -> str:
        return f"Mixture({len(self._components)} components, weights={np.round(self._weights, 4).tolist()})"


class Duplicated(Process):
    """A data set in which a fraction of sequences repeat earlier ones.

    Row i is, with probability ``fraction`` (for i > 0), an exact copy of a
    uniformly chosen earlier row (itself resolved the same way), otherwise a
    fresh draw from ``process``. Every row is therefore marginally a sample of
    ``process``: ``log_prob``, ``token_log_probs`` and the entropy rate are
    those of ``process``. ``sample(..., return_sources=True)`` gives, for each
    row, the index of the fresh row it copies (itself when fresh).
    """

    def __init__(self, process: Process, fraction: float) -> None:
        check_process("process", process)
        self._process = process
        self._fraction = check_probability("fraction", fraction)
        self._law = {"process": process, "fraction": self._fraction}

    @property
    def vocab_size(self) -> int:
        return self._process.vocab_size

    @property
    def process(self) -> Process:
        return self._process

    @property
    def fraction(self) -> float:
        return self._fraction

    @overload
    def sample(
        self, num_sequences: int, length: int, seed: int = 0, start: int = 0, *, return_sources: Literal[False] = False
    ) -> np.ndarray: ...
    @overload
    def sample(
        self, num_sequences: int, length: int, seed: int = 0, start: int = 0, *, return_sources: Literal[True]
    ) -> tuple[np.ndarray, np.ndarray]: ...
    @overload
    def sample(
        self, num_sequences: int, length: int, seed: int = 0, start: int = 0, *, return_sources: bool
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]: ...
    def sample(
        self, num_sequences: int, length: int, seed: int = 0, start: int = 0, *, return_sources: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        return self.sample_at(start_indices(num_sequences, start), length, seed, return_sources=return_sources)

    @overload
    def sample_at(
        self, indices: Any, length: int, seed: int = 0, *, return_sources: Literal[False] = False
    ) -> np.ndarray: ...
    @overload
    def sample_at(
        self, indices: Any, length: int, seed: int = 0, *, return_sources: Literal[True]
    ) -> tuple[np.ndarray, np.ndarray]: ...
    @overload
    def sample_at(
        self, indices: Any, length: int, seed: int = 0, *, return_sources: bool
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]: ...
    def sample_at(
        self, indices: Any, length: int, seed: int = 0, *, return_sources: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        idx = as_indices(indices)
        s = check_seed("seed", seed)
        sources = self.sources_at(idx, s)
        out = self._process.sample_at(sources, length, s)
        return (out, sources) if return_sources else out

    def sources_at(self, indices: Any, seed: int = 0) -> np.ndarray:
        """Index of the fresh row each row copies (itself when fresh)."""
        return _core.duplicate_sources(self._fraction, as_indices(indices), check_seed("seed", seed))

    def log_prob(self, x: Any) -> np.ndarray:
        return self._process.log_prob(x)

    def token_log_probs(self, x: Any) -> np.ndarray:
        return self._process.token_log_probs(x)

    def predictive(self, x: Any) -> np.ndarray:
        return self._process.predictive(x)

    def entropy_rate(self, base: float | None = None) -> float | Estimate:
        return self._process.entropy_rate(base)

    def typicality(self, x: Any, eps: float = 0.05, base: float | None = None) -> TypicalityReport:
        return self._process.typicality(x, eps, base)

    def __repr__(self) -> str:
        return f"Duplicated({self._process!r}, fraction={self._fraction:g})"
