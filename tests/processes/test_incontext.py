"""In-context Markov chains: exact marginal law, sampler, hidden chains, baselines."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from scipy.special import gammaln

import dataprobes as dp


def dirichlet_multinomial_log_prob(x: np.ndarray, vocab: int, order: int, alpha: float) -> float:
    """Independent reference: (1/V)^k Π_s [Γ(Vα)/Γ(c_s+Vα) Π_j Γ(c_sj+α)/Γ(α)]."""
    counts: dict[tuple, np.ndarray] = {}
    for t in range(order, len(x)):
        ctx = tuple(int(v) for v in x[t - order : t])
        counts.setdefault(ctx, np.zeros(vocab))[int(x[t])] += 1
    lp = -min(order, len(x)) * math.log(vocab)
    for c in counts.values():
        lp += gammaln(vocab * alpha) - gammaln(c.sum() + vocab * alpha)
        lp += float((gammaln(c + alpha) - gammaln(alpha)).sum())
    return lp


@given(
    st.integers(1, 5),
    st.integers(0, 2),
    st.sampled_from([0.1, 0.5, 1.0, 3.0]),
    st.integers(0, 40),
    st.integers(0, 2**32 - 1),
)
def test_marginal_equals_dirichlet_multinomial(vocab: int, order: int, alpha: float, length: int, seed: int) -> None:
    p = dp.InContextMarkov(vocab, order, alpha)
    rng = np.random.default_rng(seed)
    x = np.concatenate([p.sample(2, length, seed=seed), rng.integers(0, vocab, (2, length))])
    lp = p.log_prob(x)
    tl = p.token_log_probs(x)
    for i in range(len(x)):
        assert lp[i] == pytest.approx(dirichlet_multinomial_log_prob(x[i], vocab, order, alpha), rel=1e-10, abs=1e-10)
    np.testing.assert_allclose(tl.sum(1), lp, rtol=1e-10, atol=1e-10)


def test_sampler_matches_the_exact_law_on_all_sequences() -> None:
    """Empirical frequencies of every length-5 binary sequence vs exp(log_prob)."""
    p = dp.InContextMarkov(2, 1, 0.7)
    x = p.sample(100_000, 5, seed=3).astype(np.int64)
    codes = (x * (1 << np.arange(4, -1, -1))).sum(1)
    counts = np.bincount(codes, minlength=32)
    all_seqs = np.array(list(itertools.product([0, 1], repeat=5)))
    probs = np.exp(p.log_prob(all_seqs))
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    assert stats.chisquare(counts, probs * len(x)).pvalue > 1e-4


def test_chains_do_not_change_tokens_and_are_stochastic() -> None:
    p = dp.InContextMarkov(6, 1, 0.5)
    x = p.sample(20, 100, seed=1)
    y, chains = p.sample(20, 100, seed=1, return_chains=True)
    np.testing.assert_array_equal(x, y)
    assert chains.shape == (20, 6, 6)
    np.testing.assert_allclose(chains.sum(2), 1.0, atol=1e-12)


def test_posterior_chain_draws_have_the_posterior_mean() -> None:
    v, a = 3, 0.5
    p = dp.InContextMarkov(v, 1, a)
    x = np.array([[0, 1, 1, 2, 1, 1, 0, 0, 1]])
    draws = np.concatenate([p.posterior_chains(x, seed=s) for s in range(3000)])
    counts = np.zeros((v, v))
    np.add.at(counts, (x[0, :-1], x[0, 1:]), 1)
    mean = (counts + a) / (counts.sum(1, keepdims=True) + v * a)
    se = draws.std(0) / math.sqrt(len(draws))
    assert (np.abs(draws.mean(0) - mean) < 5 * se + 1e-12).all()


def test_oracle_beats_bayes_beats_unigram() -> None:
    """(path, chain) is an exact joint draw, so knowing the chain helps on
    average (a KL divergence), and the Bayes predictor is never worse on
    average than the in-context unigram baseline."""
    p = dp.InContextMarkov(16, 1, 1.0)
    x, chains = p.sample(400, 256, seed=5, return_chains=True)
    oracle = p.chain_token_log_probs(x, chains).sum(1)
    bayes = p.token_log_probs(x).sum(1)
    unigram = dp.incontext_unigram_log_probs(x, 16).sum(1)
    assert oracle.mean() > bayes.mean() > unigram.mean()
    # per position, averaged over sequences, after a short warm-up
    per_pos = p.token_log_probs(x).mean(0) - dp.incontext_unigram_log_probs(x, 16).mean(0)
    assert (per_pos[64:] > 0).all()


def test_baselines_match_numpy() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, (3, 30))
    beta = 0.5
    uni = dp.incontext_unigram_log_probs(x, 5, beta)
    big = dp.incontext_bigram_log_probs(x, 5, beta)
    for i in range(3):
        for t in range(30):
            c = np.bincount(x[i, :t], minlength=5)
            assert uni[i, t] == pytest.approx(np.log((c[x[i, t]] + beta) / (t + 5 * beta)))
            if t == 0:
                assert big[i, t] == pytest.approx(-np.log(5))
            else:
                prev = x[i, t - 1]
                nxt = [x[i, u + 1] for u in range(t - 1) if x[i, u] == prev]
                cb = np.bincount(np.array(nxt, dtype=int), minlength=5)
                assert big[i, t] == pytest.approx(np.log((cb[x[i, t]] + beta) / (len(nxt) + 5 * beta)))
    p = dp.InContextMarkov(5, 1, beta)
    np.testing.assert_array_equal(big, p.token_log_probs(x))


def test_chain_entropy_rates_and_expected_rate() -> None:
    p = dp.InContextMarkov(10, 1, 1.0)
    _, chains = p.sample(5, 10, seed=0, return_chains=True)
    rates = p.chain_entropy_rates(chains)
    for r, c in zip(rates, chains):
        assert r == pytest.approx(dp.MarkovChain(c, normalize=True).entropy_rate())
    est = p.entropy_rate(num_chains=400)
    assert isinstance(est, dp.Estimate) and est.stderr > 0
    # long sequences: NLL/token under the marginal approaches each chain's rate
    x, chains = p.sample(50, 20000, seed=2, return_chains=True)
    gap = -p.log_prob(x) / 20000 - p.chain_entropy_rates(chains)
    assert 0 < gap.mean() < 0.05


def test_z_scores_calibrated_under_the_marginal() -> None:
    p = dp.InContextMarkov(8, 1, 1.0)
    rep = p.typicality(p.sample(3000, 128, seed=4))
    assert abs(rep.z.mean()) < 0.1
    assert rep.z.std() == pytest.approx(1.0, abs=0.08)


def test_shards_and_sample_at() -> None:
    p = dp.InContextMarkov(30, 2, 0.3)
    whole = p.sample(12, 50, seed=9)
    np.testing.assert_array_equal(whole[5:], p.sample(7, 50, seed=9, start=5))
    np.testing.assert_array_equal(whole[[3, 1]], p.sample_at([3, 1], 50, seed=9))


def test_errors() -> None:
    with pytest.raises(ValueError, match="concentration must be > 0"):
        dp.InContextMarkov(4, 1, 0.0)
    with pytest.raises(ValueError, match="vocab_size must be >= 1"):
        dp.InContextMarkov(0)
    with pytest.raises(ValueError, match="state space too large"):
        dp.InContextMarkov(1000, 3)
    p = dp.InContextMarkov(4, 1)
    with pytest.raises(ValueError, match=r"value 4 at position \[0, 1\]"):
        p.log_prob([[0, 4]])
    with pytest.raises(ValueError, match="chains must have shape"):
        p.chain_token_log_probs([[0, 1]], np.ones((1, 3, 4)) / 4)
    with pytest.raises(ValueError, match="indices must be >= 0"):
        p.sample_at([-1], 3)
