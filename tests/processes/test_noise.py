"""Token noise: exact likelihood identities and the sampler's law."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import dataprobes as dp


def brute_force_noisy_markov(y: np.ndarray, chain: dp.MarkovChain, rho: float) -> float:
    """p(y) = Σ_x p(x) Π_t [(1-ρ) 1(y_t = x_t) + ρ/V], by enumeration of clean x."""
    v = chain.vocab_size
    total = 0.0
    for x in itertools.product(range(v), repeat=len(y)):
        px = math.exp(chain.log_prob(np.array(x)))
        total += px * np.prod([(1 - rho) * (a == b) + rho / v for a, b in zip(x, y)])
    return math.log(total)


@given(st.integers(0, 2**32 - 1), st.sampled_from([0.0, 0.1, 0.5, 1.0]), st.integers(1, 5))
def test_markov_noise_matches_enumeration(seed: int, rho: float, length: int) -> None:
    chain = dp.MarkovChain.random(3, seed=seed, concentration=0.7)
    noisy = dp.TokenNoise(chain, rho)
    y = np.random.default_rng(seed).integers(0, 3, length)
    assert noisy.log_prob(y) == pytest.approx(brute_force_noisy_markov(y, chain, rho), rel=1e-9, abs=1e-12)


def test_iid_noise_closed_form_and_limits() -> None:
    p = np.array([0.7, 0.2, 0.1])
    x = np.random.default_rng(0).integers(0, 3, (4, 9))
    rho = 0.3
    want = np.log((1 - rho) * p + rho / 3)[x].sum(1)
    np.testing.assert_allclose(dp.TokenNoise(dp.IID(p), rho).log_prob(x), want, rtol=1e-12)
    chain = dp.MarkovChain.random(4, seed=1)
    y = chain.sample(5, 12, seed=0)
    np.testing.assert_allclose(dp.TokenNoise(chain, 0.0).log_prob(y), chain.log_prob(y), rtol=1e-10)
    np.testing.assert_allclose(dp.TokenNoise(chain, 1.0).log_prob(y), -12 * math.log(4), rtol=1e-12)


def test_sampler_matches_exact_law_on_all_sequences() -> None:
    chain = dp.MarkovChain(np.array([[0.9, 0.1], [0.3, 0.7]]))
    noisy = dp.TokenNoise(chain, 0.25)
    y = noisy.sample(100_000, 4, seed=1).astype(np.int64)
    counts = np.bincount((y * [8, 4, 2, 1]).sum(1), minlength=16)
    all_y = np.array(list(itertools.product([0, 1], repeat=4)))
    probs = np.exp(noisy.log_prob(all_y))
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    assert stats.chisquare(counts, probs * len(y)).pvalue > 1e-4


def test_clean_tokens_and_mask() -> None:
    base = dp.MarkovChain.random(30, seed=2)
    noisy = dp.TokenNoise(base, 0.2)
    y, clean, mask = noisy.sample(300, 100, seed=5, return_clean=True)
    np.testing.assert_array_equal(clean, base.sample(300, 100, seed=5))
    np.testing.assert_array_equal(y[~mask], clean[~mask])
    assert abs(mask.mean() - 0.2) < 0.01
    assert abs((y != clean).mean() - 0.2 * 29 / 30) < 0.01
    np.testing.assert_array_equal(noisy.sample(10, 100, seed=5, start=290), y[290:])


def test_noise_on_hmm_and_mixture() -> None:
    h = dp.HMM.random(3, 5, seed=0)
    nh = dp.TokenNoise(h, 0.4)
    y = nh.sample(3, 7, seed=0)
    e = 0.6 * h.emission + 0.4 / 5
    np.testing.assert_allclose(nh.log_prob(y), dp.HMM(h.transition, e, h.initial).log_prob(y), rtol=1e-12)
    m = dp.Mixture([h, dp.IID.random(5, seed=1)], [0.5, 0.5])
    nm = dp.TokenNoise(m, 0.1)
    z = nm.sample(4, 6, seed=1)
    want = np.logaddexp(
        np.log(0.5) + dp.TokenNoise(h, 0.1).log_prob(z),
        np.log(0.5) + dp.TokenNoise(dp.IID.random(5, seed=1), 0.1).log_prob(z),
    )
    np.testing.assert_allclose(nm.log_prob(z), want, rtol=1e-12)


def test_noise_errors() -> None:
    chain = dp.MarkovChain.random(4, seed=0)
    with pytest.raises(ValueError, match="rho must lie in \\[0, 1\\]"):
        dp.TokenNoise(chain, 1.5)
    with pytest.raises(ValueError, match="rho must lie in \\[0, 1\\]"):
        dp.TokenNoise(chain, -0.1)
    with pytest.raises(ValueError, match="order-1 Markov chains only"):
        dp.TokenNoise(dp.MarkovChain.random(4, order=2, seed=0), 0.1)
    with pytest.raises(ValueError, match="not InContextMarkov"):
        dp.TokenNoise(dp.InContextMarkov(4), 0.1)
    with pytest.raises(TypeError, match="process must be a dataprobes Process"):
        dp.TokenNoise("chain", 0.1)  # type: ignore[arg-type]
