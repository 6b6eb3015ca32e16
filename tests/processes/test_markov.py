"""Markov chains and i.i.d. processes: sampling law, exact statistics, determinism."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy import stats

import dataprobes as dp
from conftest import random_stochastic
from reference import (
    expanded_chain,
    markov_token_log_probs,
    row_entropy,
    row_varentropy,
    stationary_eig,
    unique_stationary,
)

# ---------------------------------------------------------------- sampling law


def transition_counts(x: np.ndarray, vocab: int) -> np.ndarray:
    c = np.zeros((vocab, vocab))
    np.add.at(c, (x[:, :-1].ravel(), x[:, 1:].ravel()), 1)
    return c


def test_transition_counts_pass_chi_square() -> None:
    rng = np.random.default_rng(0)
    v = 6
    p = random_stochastic(rng, v, v, alpha=2.0)
    chain = dp.MarkovChain(p)
    x = chain.sample(400, 1000, seed=3)
    counts = transition_counts(x, v)
    chi2 = 0.0
    dof = 0
    for s in range(v):
        expected = counts[s].sum() * p[s]
        chi2 += ((counts[s] - expected) ** 2 / expected).sum()
        dof += v - 1
    assert stats.chi2.sf(chi2, dof) > 1e-4, (chi2, dof)


def test_wrong_matrix_fails_chi_square() -> None:
    """The goodness-of-fit check above has power: a slightly different matrix fails."""
    rng = np.random.default_rng(0)
    v = 6
    p = random_stochastic(rng, v, v, alpha=2.0)
    q = 0.9 * p + 0.1 / v
    x = dp.MarkovChain(q).sample(400, 1000, seed=3)
    counts = transition_counts(x, v)
    chi2 = sum((((counts[s] - counts[s].sum() * p[s]) ** 2) / (counts[s].sum() * p[s])).sum() for s in range(v))
    assert stats.chi2.sf(chi2, v * (v - 1)) < 1e-6


def test_iid_frequencies_pass_chi_square() -> None:
    probs = np.array([0.05, 0.1, 0.15, 0.2, 0.5])
    x = dp.IID(probs).sample(100, 2000, seed=11)
    counts = np.bincount(x.ravel(), minlength=5)
    res = stats.chisquare(counts, probs * x.size)
    assert res.pvalue > 1e-4


def test_first_tokens_follow_stationary_law() -> None:
    rng = np.random.default_rng(1)
    p = random_stochastic(rng, 4, 4, alpha=1.5)
    chain = dp.MarkovChain(p)
    x = chain.sample(20000, 3, seed=5)
    counts = np.bincount(x[:, 0], minlength=4)
    pi = stationary_eig(p)
    assert stats.chisquare(counts, pi * len(x)).pvalue > 1e-4


def test_initial_law_is_used() -> None:
    p = np.full((3, 3), 1 / 3)
    chain = dp.MarkovChain(p, initial=[0.0, 0.0, 1.0])
    x = chain.sample(100, 4, seed=0)
    assert (x[:, 0] == 2).all()


def test_order_k_state_convention() -> None:
    """In a deterministic order-2 chain with x_t = (x_{t-2} + 2 x_{t-1}) mod V,
    row s = x_{t-2} V + x_{t-1} must be used (most recent token last)."""
    v = 5
    p = np.zeros((v * v, v))
    for a in range(v):
        for b in range(v):
            p[a * v + b, (a + 2 * b) % v] = 1.0
    x = dp.MarkovChain(p, order=2, initial=np.full(v * v, 1 / (v * v))).sample(50, 40, seed=2)
    assert np.array_equal(x[:, 2:], (x[:, :-2].astype(int) + 2 * x[:, 1:-1]) % v)


def test_order_3_counts_match() -> None:
    rng = np.random.default_rng(8)
    v, k = 3, 3
    p = random_stochastic(rng, v**k, v, alpha=3.0)
    x = dp.MarkovChain(p, order=k).sample(300, 600, seed=1).astype(np.int64)
    states = x[:, :-3] * 9 + x[:, 1:-2] * 3 + x[:, 2:-1]
    counts = np.zeros((v**k, v))
    np.add.at(counts, (states.ravel(), x[:, 3:].ravel()), 1)
    expected = counts.sum(1, keepdims=True) * p
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert stats.chi2.sf(chi2, v**k * (v - 1)) > 1e-4


@pytest.mark.parametrize(
    ("vocab", "dtype"), [(2, np.uint8), (256, np.uint8), (257, np.uint16), (65536, np.uint16), (65537, np.uint32)]
)
def test_smallest_dtype(vocab: int, dtype: type) -> None:
    probs = np.zeros(vocab)
    probs[-1] = 1.0
    x = dp.IID(probs).sample(2, 3, seed=0)
    assert x.dtype == dtype and x.shape == (2, 3)
    assert (x == vocab - 1).all()


def test_zero_probability_tokens_never_sampled() -> None:
    rng = np.random.default_rng(3)
    p = random_stochastic(rng, 16, 16, zeros=0.7)
    chain = dp.MarkovChain(p)
    x = chain.sample(200, 500, seed=9)
    assert np.isfinite(chain.log_prob(x)).all()
    assert (p[x[:, :-1], x[:, 1:]] > 0).all()


# ---------------------------------------------------------------- determinism


def test_start_offsets_are_shards_of_one_sample() -> None:
    chain = dp.MarkovChain.random(50, seed=4)
    whole = chain.sample(37, 64, seed=7)
    parts = [chain.sample(n, 64, seed=7, start=s) for s, n in [(0, 5), (5, 1), (6, 20), (26, 11)]]
    assert np.array_equal(whole, np.concatenate(parts))
    assert not np.array_equal(whole, chain.sample(37, 64, seed=8))


def test_prefix_of_longer_sequences_differs_only_by_length() -> None:
    """A sequence's stream depends on (seed, index) only: a shorter length is a prefix."""
    chain = dp.MarkovChain.random(20, seed=4)
    assert np.array_equal(chain.sample(9, 100, seed=1)[:, :40], chain.sample(9, 40, seed=1))


_DETERMINISM_SCRIPT = """
import hashlib, dataprobes as dp
chain = dp.MarkovChain.random(300, order=1, seed=1)
x = chain.sample(257, 129, seed=42)
h2 = dp.MarkovChain.random(7, order=2, seed=2).sample(100, 50, seed=3)
lp = chain.log_prob(x)
print(hashlib.sha256(x.tobytes() + h2.tobytes() + lp.tobytes()).hexdigest())
"""


def test_bit_identical_across_thread_counts() -> None:
    digests = set()
    for threads in ["1", "2", "7"]:
        env = dict(os.environ, RAYON_NUM_THREADS=threads)
        out = subprocess.run(
            [sys.executable, "-c", _DETERMINISM_SCRIPT], env=env, capture_output=True, text=True, check=True
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1


@given(
    st.integers(1, 300),
    st.integers(0, 1),
    st.integers(1, 40),
    st.integers(1, 70),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**40),
)
def test_batched_rows_equal_rows_one_at_a_time(
    vocab: int, order: int, n: int, length: int, seed: int, start: int
) -> None:
    # A batch is sampled 16 rows per SIMD group and scored 4 rows at a time
    # where the CPU allows (a ragged tail in scalar code); one row alone always
    # takes the scalar path. Tokens and scores must be byte-identical.
    p = random_stochastic(np.random.default_rng(vocab), vocab**order, vocab, alpha=0.5, zeros=0.2)
    chain = dp.MarkovChain(p, order=order) if order else dp.IID(p[0])
    x = chain.sample(n, length, seed=seed, start=start)
    lp = chain.log_prob(x)
    for i in (0, n // 2, n - 1):
        one = chain.sample_at([start + i], length, seed=seed)
        assert one.tobytes() == x[i : i + 1].tobytes()
        assert chain.log_prob(one)[0].tobytes() == lp[i].tobytes()


# ---------------------------------------------------------------- exact scores


@st.composite
def chains(draw: st.DrawFn, max_vocab: int = 6, max_order: int = 3):
    vocab = draw(st.integers(1, max_vocab))
    order = draw(st.integers(1, max_order))
    seed = draw(st.integers(0, 2**32 - 1))
    zeros = draw(st.sampled_from([0.0, 0.3]))
    given_init = draw(st.booleans())
    rng = np.random.default_rng(seed)
    p = random_stochastic(rng, vocab**order, vocab, alpha=draw(st.sampled_from([0.3, 1.0, 5.0])), zeros=zeros)
    init = rng.dirichlet(np.ones(vocab**order)) if given_init else None
    return p, order, init, seed


@given(chains(), st.integers(0, 12), st.integers(1, 5))
def test_log_probs_match_numpy_reference(case, length: int, n: int) -> None:
    p, order, init, seed = case
    vocab = p.shape[1]
    big = expanded_chain(p, vocab, order)
    assume(init is not None or unique_stationary(big))
    chain = dp.MarkovChain(p, order=order, initial=init)
    ref_init = init if init is not None else stationary_eig(big)
    np.testing.assert_allclose(chain.initial, ref_init, atol=1e-9)
    rng = np.random.default_rng(seed + 1)
    # scored on the chain's own samples and on arbitrary token sequences
    for x in [chain.sample(n, length, seed=seed), rng.integers(0, vocab, (n, length))]:
        tl = chain.token_log_probs(x)
        assert tl.shape == (n, length)
        lp = chain.log_prob(x)
        for i in range(n):
            ref = markov_token_log_probs(x[i], chain.transition, ref_init, vocab, order)
            finite = np.isfinite(ref)
            np.testing.assert_allclose(tl[i][finite], ref[finite], rtol=1e-9, atol=1e-8)
            assert (tl[i][~finite] == -np.inf).all()
            with np.errstate(invalid="ignore"):
                want = ref.sum() if finite.all() else -np.inf
            if np.isfinite(want):
                assert lp[i] == pytest.approx(want, rel=1e-9, abs=1e-8)
            else:
                assert lp[i] == -np.inf


@given(st.integers(1, 8), st.integers(0, 2**32 - 1), st.integers(0, 30))
def test_iid_log_prob_matches_numpy(vocab: int, seed: int, length: int) -> None:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(vocab))
    x = rng.integers(0, vocab, (3, length))
    got = dp.IID(probs).log_prob(x)
    np.testing.assert_allclose(got, np.log(probs)[x].sum(1), rtol=1e-12, atol=1e-12)


def test_accepts_any_integer_dtype_and_1d() -> None:
    chain = dp.MarkovChain.random(10, seed=0)
    x = chain.sample(3, 20, seed=0)
    want = chain.log_prob(x)
    for dt in [np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64]:
        np.testing.assert_array_equal(chain.log_prob(x.astype(dt)), want)
    np.testing.assert_array_equal(chain.log_prob(x.tolist()), want)
    assert chain.log_prob(x[1]) == want[1]
    np.testing.assert_array_equal(chain.log_prob(np.asfortranarray(x)), want)
    np.testing.assert_array_equal(
        chain.token_log_probs(x[:, ::2]), chain.token_log_probs(np.ascontiguousarray(x[:, ::2]))
    )


def test_zero_probability_transition_gives_neg_inf() -> None:
    p = np.array([[0.0, 1.0], [0.5, 0.5]])
    chain = dp.MarkovChain(p)
    assert chain.log_prob([0, 0]) == -np.inf
    assert chain.log_prob([1, 0, 1]) == pytest.approx(np.log(chain.initial[1]) + np.log(0.5))
    tl = chain.token_log_probs([[1, 1, 0, 0]])
    assert tl[0, 3] == -np.inf and np.isfinite(tl[0, :3]).all()


def test_empty_sequences() -> None:
    chain = dp.MarkovChain.random(5, seed=0)
    x = chain.sample(4, 0, seed=0)
    assert x.shape == (4, 0)
    np.testing.assert_array_equal(chain.log_prob(x), np.zeros(4))
    assert chain.sample(0, 10).shape == (0, 10)


# ---------------------------------------------------------------- entropy rate


@given(chains(max_vocab=7, max_order=2))
def test_entropy_rate_matches_eigenvector_formula(case) -> None:
    p, order, _, _ = case
    vocab = p.shape[1]
    big = expanded_chain(p, vocab, order)
    assume(unique_stationary(big))
    chain = dp.MarkovChain(p, order=order)
    pi = stationary_eig(big)
    np.testing.assert_allclose(chain.stationary_distribution(), pi, atol=1e-9)
    h = float(pi @ row_entropy(p))
    assert chain.entropy_rate() == pytest.approx(h, abs=1e-10)
    assert chain.entropy_rate(base=2) == pytest.approx(h / math.log(2), abs=1e-10)
    assert chain.varentropy_rate() == pytest.approx(float(pi @ row_varentropy(p)), abs=1e-9)


def test_slowly_leaking_chain_reaches_its_absorbing_state() -> None:
    """A transient cycle leaking into an absorbing state with probability 5e-5
    a step: the stationary law is the point mass (found by the squaring fallback)."""
    p = np.array([[1.0, 0.0], [0.0, 1.0], [5e-5, 1 - 5e-5], [0.87, 0.13]])
    chain = dp.MarkovChain(p, order=2)
    np.testing.assert_allclose(chain.stationary_distribution(), [1, 0, 0, 0], atol=1e-9)
    assert chain.entropy_rate() == pytest.approx(0.0, abs=1e-9)


def test_iid_entropy_closed_form() -> None:
    probs = np.array([0.5, 0.25, 0.125, 0.125])
    assert dp.IID(probs).entropy_rate(base=2) == pytest.approx(1.75, abs=1e-14)


@pytest.mark.parametrize("order", [1, 2])
def test_aep_mean_nll_within_four_standard_errors(order: int) -> None:
    chain = dp.MarkovChain.random(32, order=order, concentration=0.5, seed=order)
    n, t = 64, 4096
    x = chain.sample(n, t, seed=17)
    nll = -chain.log_prob(x) / t
    h = chain.entropy_rate()
    se = nll.std(ddof=1) / math.sqrt(n)
    assert abs(nll.mean() - h) < 4 * se
    # the martingale variance law predicts the spread of -log p(x)
    predicted_sd = math.sqrt(chain.varentropy_rate() / t)
    assert nll.std(ddof=1) == pytest.approx(predicted_sd, rel=0.3)


def test_typical_fraction_grows_with_length() -> None:
    chain = dp.MarkovChain.random(64, entropy_rate=2.5, seed=3)
    fractions = [
        chain.typicality(chain.sample(400, t, seed=t), eps=0.1).fraction_typical for t in [16, 128, 1024, 8192]
    ]
    assert all(a < b for a, b in zip(fractions, fractions[1:])), fractions
    assert fractions[-1] > 0.99


def test_z_scores_are_standard_normal_under_the_truth() -> None:
    chain = dp.MarkovChain.random(64, entropy_rate=2.0, seed=5)
    rep = chain.typicality(chain.sample(2000, 512, seed=1), eps=0.05)
    assert abs(rep.z.mean()) < 4 / math.sqrt(2000)
    assert rep.z.std() == pytest.approx(1.0, abs=0.08)
    assert stats.kstest(rep.z, "norm").pvalue > 1e-4


def test_typicality_report_counts_and_units() -> None:
    chain = dp.MarkovChain.random(16, entropy_rate=1.5, seed=0)
    x = chain.sample(300, 64, seed=2)
    rep = chain.typicality(x, eps=0.1)
    nll = -chain.log_prob(x) / 64
    assert np.allclose(rep.nll_per_token, nll)
    assert rep.count_below == int((nll < 1.5 - 0.1).sum())
    assert rep.count_above == int((nll > 1.5 + 0.1).sum())
    assert rep.count_below + rep.count_above + rep.count_inside == 300
    bits = chain.typicality(x, eps=0.1 / math.log(2), base=2)
    assert np.allclose(bits.nll_per_token, nll / math.log(2))
    np.testing.assert_array_equal(bits.inside, rep.inside)
    np.testing.assert_array_equal(bits.z, rep.z)
    assert rep.unit == "nats" and bits.unit == "bits"
    assert "typical" in str(rep)
    # a greedy-like (repetitive, high-probability) sequence is over-conservative
    greedy = np.argmax(chain.transition, axis=1)
    seq = [int(np.argmax(chain.initial))]
    for _ in range(63):
        seq.append(int(greedy[seq[-1]]))
    assert chain.typicality(np.array([seq]), eps=0.1).count_below == 1


def test_deterministic_uniform_paths_have_zero_z() -> None:
    rep = dp.IID(np.full(8, 1 / 8)).typicality(np.zeros((3, 10), dtype=np.int64))
    np.testing.assert_array_equal(rep.z, 0.0)


# ---------------------------------------------------------------- random chains


@pytest.mark.parametrize(
    ("vocab", "order", "h"), [(128, 1, 2.0), (128, 1, 0.3), (16, 2, 1.7), (4096, 1, 6.0), (2, 1, 0.69)]
)
def test_random_hits_entropy_rate(vocab: int, order: int, h: float) -> None:
    chain = dp.MarkovChain.random(vocab, order=order, entropy_rate=h, seed=1)
    assert abs(chain.entropy_rate() - h) < 1e-6
    # independent check of the rate from the returned matrix (numpy, small cases)
    if vocab**order <= 256:
        pi = stationary_eig(expanded_chain(chain.transition, vocab, order))
        assert abs(float(pi @ row_entropy(chain.transition)) - h) < 1e-6


def test_random_is_deterministic_in_seed() -> None:
    a = dp.MarkovChain.random(20, concentration=0.3, seed=9)
    b = dp.MarkovChain.random(20, concentration=0.3, seed=9)
    c = dp.MarkovChain.random(20, concentration=0.3, seed=10)
    np.testing.assert_array_equal(a.transition, b.transition)
    assert not np.array_equal(a.transition, c.transition)


def test_concentration_controls_entropy() -> None:
    """Mean row entropy of Dirichlet(α) rows is ψ(Vα+1) - ψ(α+1) (docs/math.md, Markov chains)."""
    from scipy.special import digamma

    v, a = 64, 0.2
    chain = dp.MarkovChain.random(v, concentration=a, seed=0)
    want = digamma(v * a + 1) - digamma(a + 1)
    rows = chain.row_entropies()
    assert rows.mean() == pytest.approx(want, abs=4 * rows.std() / math.sqrt(v))


def test_iid_random_entropy() -> None:
    p = dp.IID.random(50, entropy_rate=2.2, seed=0)
    assert p.entropy_rate() == pytest.approx(2.2, abs=1e-6)
    assert p.probs.shape == (50,)


def test_iid_random_old_entropy_keyword_is_a_deprecated_alias() -> None:
    with pytest.warns(DeprecationWarning, match="entropy_rate="):
        old = dp.IID.random(50, entropy=2.2, seed=0)
    assert np.array_equal(old.probs, dp.IID.random(50, entropy_rate=2.2, seed=0).probs)
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="entropy_rate= only"):
        dp.IID.random(50, entropy=2.2, entropy_rate=2.2)
    with pytest.raises(ValueError, match="exactly one of entropy_rate= and concentration="):
        dp.IID.random(50, entropy_rate=2.2, concentration=1.0)


def test_exposed_tables_are_read_only() -> None:
    chain = dp.MarkovChain.random(6, 2, seed=0)
    iid = dp.IID.random(6, seed=0)
    hmm = dp.HMM.random(3, 6, seed=0)
    mix = dp.Mixture([iid, dp.IID.random(6, seed=1)])
    tables = {
        "MarkovChain.transition": chain.transition,
        "MarkovChain.initial": chain.initial,
        "MarkovChain.stationary_distribution": chain.stationary_distribution(),
        "IID.probs": iid.probs,
        "HMM.transition": hmm.transition,
        "HMM.emission": hmm.emission,
        "HMM.initial": hmm.initial,
        "HMM.stationary_distribution": hmm.stationary_distribution(),
        "Mixture.weights": mix.weights,
    }
    for name, table in tables.items():
        assert not table.flags.writeable, name
        with pytest.raises(ValueError, match="read-only"):
            table[...] = 0
    # nothing was written: the laws still sample and score as before
    assert np.allclose(chain.transition.sum(1), 1) and np.allclose(iid.probs.sum(), 1)
    assert np.allclose(hmm.stationary_distribution() @ hmm.transition, hmm.stationary_distribution())


def test_one_unit_name_for_every_report() -> None:
    from dataprobes._validation import unit_name

    chain = dp.MarkovChain.random(5, seed=0)
    x = chain.sample(10, 20, seed=0)
    for base, name in (
        (None, "nats"),
        (math.e, "nats"),
        (2, "bits"),
        (2.0, "bits"),
        (10, "log base 10"),
        (10.0, "log base 10"),
    ):
        assert unit_name(base) == name
        assert chain.typicality(x, base=base).unit == name
        assert dp.conditional_entropy(x, order=1, base=base).unit == name
        assert dp.Mixture([chain]).typicality(x, base=base).unit == name
