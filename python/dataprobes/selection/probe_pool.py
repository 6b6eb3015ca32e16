"""A selection pool with planted truth: which chain, how noisy, which copy.

:func:`labelled_pool` draws a pool of token rows from a :class:`Mixture` of
first-order Markov chains with known entropy rates, plus two kinds of
distractors, and labels every row:

* **clean** rows: ``Mixture(chains, weights)`` samples (component labels from
  the mixture's own label stream);
* **noisy** rows: ``TokenNoise(Mixture(...), rho)`` for each rate in
  ``noise_rates`` (each token redrawn uniformly with probability ``rho``);
* **near-duplicate clusters**: ``Duplicated(Mixture(...), fraction)`` rows
  (each row after the first copies an earlier fresh row with probability
  ``fraction``), every copy then edited at exactly ``edits`` positions, each
  set to a token different from the one it replaces.

A target of a few clean rows per subtask (chosen components) comes with it;
its exact law is the uniform mixture of the subtask chains
(:attr:`LabelledPool.target_law`), so a model trained on any selection can be
scored by its exact KL to it (docs/math.md, "Data selection on probes").
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._validation import (
    check_float_in,
    check_float_sequence,
    check_int,
    check_probability,
    check_seed,
)
from ..processes import Duplicated, MarkovChain, Mixture, Process, TokenNoise

__all__ = ["LabelledPool", "labelled_pool"]

_TAGS = {"chain": 1, "clean": 2, "noisy": 3, "duplicated": 4, "edits": 5, "order": 6, "target": 7}


def _derive(seed: int, tag: str, *more: int) -> int:
    """A 63-bit seed for one stream of the pool, a function of (seed, tag, more) only."""
    state = np.random.SeedSequence([seed, _TAGS[tag], *more]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


@dataclass(frozen=True)
class LabelledPool:
    """Pool rows and their planted labels (all arrays have one entry per row).

    Attributes:
        tokens: ``[N, T]`` token ids.
        component: index of the chain that generated the row (before noise or
            edits).
        noisy: the row went through ``TokenNoise``.
        copy: the row is an edited copy of another pool row.
        noise_rate: ``rho`` for noisy rows, ``edits / T`` for copies, 0 for
            fresh rows: the expected fraction of tokens not drawn from the chain
            (a redrawn token may equal the original with probability ``1/V``).
        cluster: pool index of the fresh row this row copies (its own index
            for every row that is not a copy).
        components: the chains; ``weights`` their mixture weights.
        target: the subtask components; ``target_tokens`` / ``target_component``
            the target examples (fresh clean rows, ``target_per_subtask`` each).
    """

    tokens: np.ndarray
    component: np.ndarray
    noisy: np.ndarray
    copy: np.ndarray
    noise_rate: np.ndarray
    cluster: np.ndarray
    components: tuple[MarkovChain, ...]
    weights: np.ndarray
    target: tuple[int, ...]
    target_tokens: np.ndarray
    target_component: np.ndarray

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def in_target(self) -> np.ndarray:
        """``[N]`` bool: the row's chain is one of the subtasks."""
        return np.isin(self.component, np.asarray(self.target))

    @property
    def entropy_rates(self) -> np.ndarray:
        """``[C]`` exact entropy rate of each chain (nats/token)."""
        return np.array([float(c.entropy_rate()) for c in self.components])

    @property
    def target_law(self) -> Process:
        """The uniform mixture of the subtask chains (the chain itself for one subtask)."""
        if len(self.target) == 1:
            return self.components[self.target[0]]
        return Mixture([self.components[c] for c in self.target])

    @property
    def pool_law(self) -> Mixture:
        """The clean law of the pool: ``Mixture(components, weights)``."""
        return Mixture(list(self.components), self.weights, normalize=True)

    def oracle_scores(self) -> np.ndarray:
        """``[N]`` DEITA oracle: complexity × quality = the generating chain's
        entropy rate × (1 − ``noise_rate``)."""
        return self.entropy_rates[self.component] * (1.0 - self.noise_rate)


def _check_count(name: str, value: Any) -> int:
    return check_int(name, value, 0, 10**9)


def _edit(rows: np.ndarray, edits: int, vocab_size: int, rng: np.random.Generator) -> None:
    """Sets ``edits`` distinct positions of every row to a different token, in place."""
    if edits == 0 or rows.shape[0] == 0:
        return
    pos = np.argsort(rng.random(rows.shape), axis=1, kind="stable")[:, :edits]
    shift = rng.integers(1, vocab_size, size=pos.shape)
    r = np.arange(rows.shape[0])[:, None]
    rows[r, pos] = (rows[r, pos].astype(np.int64) + shift) % vocab_size


def labelled_pool(
    vocab_size: int = 32,
    length: int = 64,
    *,
    num_components: int = 6,
    entropy_rates: Sequence[float] | None = None,
    weights: Sequence[float] | None = None,
    clean: int = 1200,
    noisy: int = 2400,
    noise_rates: Sequence[float] = (0.3, 0.6),
    duplicated: int = 2400,
    duplicate_fraction: float = 0.5,
    edits: int = 1,
    target: Sequence[int] = (0, 1),
    target_per_subtask: int = 16,
    seed: int = 0,
) -> LabelledPool:
    """Builds a labelled selection pool (module docstring) from ``seed``.

    Args:
        vocab_size, length: tokens ``V >= 2`` and row length ``T >= 2``.
        num_components: number of chains ``C``.
        entropy_rates: ``C`` exact entropy rates in ``(0, log V)`` nats; default
            ``log V · linspace(0.6, 0.8, C)`` (close enough that a clean row of
            any chain outscores a noisy row of any other under the DEITA oracle
            with ``rho >= 0.3``; far enough apart that an edited copy of one
            chain outscores the clean rows of the next).
        weights: mixture weights of the chains (default uniform).
        clean, noisy, duplicated: rows of each kind (noisy rows split evenly
            over ``noise_rates``, earlier rates taking the remainder).
        noise_rates: ``TokenNoise`` rates in ``(0, 1]``.
        duplicate_fraction: ``Duplicated`` fraction in ``[0, 1)``.
        edits: positions changed in each copy, ``0 <= edits <= T``.
        target: distinct subtask components.
        target_per_subtask: target examples per subtask.
        seed: everything is a deterministic function of the arguments.

    Returns:
        A :class:`LabelledPool`, rows in a seeded random order.
    """
    v = check_int("vocab_size", vocab_size, 2, 2**16)
    t = check_int("length", length, 2, 2**20)
    c = check_int("num_components", num_components, 1, 1024)
    n_clean = _check_count("clean", clean)
    n_noisy = _check_count("noisy", noisy)
    n_dup = _check_count("duplicated", duplicated)
    if n_clean + n_noisy + n_dup == 0:
        raise ValueError("clean, noisy and duplicated are all 0: the pool would be empty")
    if entropy_rates is None:
        rates = list(math.log(v) * np.linspace(0.6, 0.8, c))
    else:
        rates = check_float_sequence("entropy_rates", entropy_rates)
        if len(rates) != c:
            raise ValueError(f"entropy_rates must have num_components = {c} entries, got {len(rates)}")
        for i, h in enumerate(rates):
            check_float_in(f"entropy_rates[{i}]", h, 0.0, math.log(v), low_open=True, high_open=True)
    rhos = check_float_sequence("noise_rates", noise_rates)
    for i, r in enumerate(rhos):
        check_float_in(f"noise_rates[{i}]", r, 0.0, 1.0, low_open=True)
    frac = check_probability("duplicate_fraction", duplicate_fraction)
    if frac >= 1.0:
        raise ValueError("duplicate_fraction must be < 1 (at 1 every row but the first would copy it)")
    k = check_int("edits", edits, 0, t)
    if isinstance(target, (str, bytes)) or not hasattr(target, "__iter__"):
        raise TypeError(f"target must be a sequence of component indices, got {type(target).__name__}")
    subtasks = tuple(check_int(f"target[{i}]", s, 0, c - 1) for i, s in enumerate(target))
    if not subtasks or len(set(subtasks)) != len(subtasks):
        raise ValueError(f"target must be a non-empty sequence of distinct components, got {list(subtasks)}")
    per = check_int("target_per_subtask", target_per_subtask, 1, 10**7)
    s = check_seed("seed", seed)
    if weights is not None and isinstance(weights, numbers.Number):
        raise TypeError("weights must be a sequence of numbers, one per component")

    chains = tuple(MarkovChain.random(v, entropy_rate=h, seed=_derive(s, "chain", i)) for i, h in enumerate(rates))
    mix = Mixture(list(chains), weights)

    blocks_tokens: list[np.ndarray] = []
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def add(rows: np.ndarray, comp: Any, is_noisy: bool, is_copy: np.ndarray, rate: np.ndarray, src: Any) -> None:
        n = rows.shape[0]
        blocks_tokens.append(rows)
        blocks.append((np.asarray(comp, np.int64), np.full(n, is_noisy), is_copy, rate, np.asarray(src, np.int64)))

    offset = 0
    rows, labels = mix.sample(n_clean, t, seed=_derive(s, "clean"), return_labels=True)
    add(rows, labels, False, np.zeros(n_clean, bool), np.zeros(n_clean), offset + np.arange(n_clean))
    offset += n_clean

    noisy_seed = _derive(s, "noisy")
    start = 0
    for r, n in zip(rhos, np.array_split(np.arange(n_noisy), len(rhos)), strict=True):
        idx = np.arange(start, start + n.size)
        rows = TokenNoise(mix, r).sample_at(idx, t, seed=noisy_seed)
        add(rows, mix.labels_at(idx, noisy_seed), True, np.zeros(n.size, bool), np.full(n.size, r), offset + n)
        start += n.size
    offset += n_noisy

    dup_seed = _derive(s, "duplicated")
    rows, sources = Duplicated(mix, frac).sample(n_dup, t, seed=dup_seed, return_sources=True)
    is_copy = sources != np.arange(n_dup)
    rows = np.array(rows, copy=True)
    edited = rows[is_copy]
    _edit(edited, k, v, np.random.default_rng(_derive(s, "edits")))
    rows[is_copy] = edited
    add(rows, mix.labels_at(sources, dup_seed), False, is_copy, np.where(is_copy, k / t, 0.0), offset + sources)

    tokens = np.concatenate(blocks_tokens)
    comp, noisy_mask, copy_mask, noise_rate, cluster = (np.concatenate(col) for col in zip(*blocks, strict=True))
    perm = np.random.default_rng(_derive(s, "order")).permutation(tokens.shape[0])
    inv = np.empty_like(perm)
    inv[perm] = np.arange(perm.size)

    targets = [np.asarray(chains[j].sample(per, t, seed=_derive(s, "target", j))) for j in subtasks]
    target_tokens = np.concatenate(targets).astype(tokens.dtype, copy=False)
    out = LabelledPool(
        tokens=np.ascontiguousarray(tokens[perm]),
        component=comp[perm],
        noisy=noisy_mask[perm],
        copy=copy_mask[perm],
        noise_rate=noise_rate[perm],
        cluster=inv[cluster[perm]],
        components=chains,
        weights=np.asarray(mix.weights),
        target=subtasks,
        target_tokens=target_tokens,
        target_component=np.repeat(np.asarray(subtasks, np.int64), per),
    )
    for a in (out.tokens, out.component, out.noisy, out.copy, out.noise_rate, out.cluster, out.target_tokens):
        a.flags.writeable = False
    return out
