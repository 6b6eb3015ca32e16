"""Hidden Markov models: exact scores against hmmlearn and brute force, sampling
law, determinism, the Monte-Carlo entropy rate, typicality and bad inputs."""

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
from reference import hmm_block_entropies, hmm_prefix_probs, stationary_eig, unique_stationary


def random_hmm(seed: int, s: int, v: int, alpha: float = 1.0, zeros: float = 0.0, given_init: bool = False) -> dp.HMM:
    rng = np.random.default_rng(seed)
    a = random_stochastic(rng, s, s, alpha=alpha, zeros=zeros)
    e = random_stochastic(rng, s, v, alpha=alpha, zeros=zeros)
    init = rng.dirichlet(np.ones(s)) if given_init else None
    return dp.HMM(a, e, init)


# ---------------------------------------------------------------- exact scores


@pytest.mark.parametrize(("s", "v", "given_init"), [(1, 4, False), (3, 5, True), (8, 3, False), (17, 40, True)])
def test_log_prob_matches_hmmlearn(s: int, v: int, given_init: bool) -> None:
    hmmlearn = pytest.importorskip("hmmlearn.hmm")
    h = random_hmm(s, s, v, alpha=0.7, given_init=given_init)
    m = hmmlearn.CategoricalHMM(n_components=s, n_features=v)
    m.startprob_ = h.initial
    m.transmat_ = h.transition
    m.emissionprob_ = h.emission
    rng = np.random.default_rng(s)
    for x in [h.sample(6, 150, seed=s), rng.integers(0, v, (3, 97))]:
        lp = h.log_prob(x)
        for i in range(len(x)):
            want = m.score(x[i].reshape(-1, 1).astype(np.int64))
            assert lp[i] == pytest.approx(want, rel=1e-9)
        total = m.score(x.reshape(-1, 1).astype(np.int64), lengths=[x.shape[1]] * len(x))
        assert lp.sum() == pytest.approx(total, rel=1e-9)


@st.composite
def tiny_hmms(draw: st.DrawFn):
    s = draw(st.integers(1, 3))
    v = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    zeros = draw(st.sampled_from([0.0, 0.4]))
    rng = np.random.default_rng(seed)
    a = random_stochastic(rng, s, s, alpha=draw(st.sampled_from([0.3, 1.0, 5.0])), zeros=zeros)
    e = random_stochastic(rng, s, v, alpha=1.0, zeros=zeros)
    init = rng.dirichlet(np.ones(s)) if draw(st.booleans()) else None
    return a, e, init, seed


@given(tiny_hmms(), st.integers(0, 5), st.integers(1, 3))
def test_forward_matches_sum_over_all_hidden_paths(case, length: int, n: int) -> None:
    a, e, init, seed = case
    s, v = e.shape
    assume(init is not None or unique_stationary(a))
    h = dp.HMM(a, e, init)
    ref_init = init if init is not None else stationary_eig(a)
    np.testing.assert_allclose(h.initial, ref_init, atol=1e-12)
    rng = np.random.default_rng(seed + 1)
    for x in [h.sample(n, length, seed=seed), rng.integers(0, v, (n, length))]:
        lp, tl, pred = h.log_prob(x), h.token_log_probs(x), h.predictive(x)
        assert tl.shape == (n, length) and pred.shape == (n, length, v)
        assert not np.isnan(lp).any() and not np.isnan(tl).any() and not np.isnan(pred).any()
        for i in range(n):
            prefix = hmm_prefix_probs(x[i], a, e, ref_init)  # p(x_<t) for t = 0..T
            if prefix[-1] > 0:
                assert lp[i] == pytest.approx(math.log(prefix[-1]), rel=1e-9, abs=1e-12)
            else:
                assert lp[i] == -np.inf
            for t in range(length):
                if prefix[t] == 0:
                    continue  # conditioning on a null event: any law is a version
                cond = prefix[t + 1] / prefix[t]
                want = math.log(cond) if cond > 0 else -np.inf
                assert tl[i, t] == pytest.approx(want, rel=1e-9, abs=1e-12)
                joint = [hmm_prefix_probs(np.r_[x[i, :t], u], a, e, ref_init)[-1] for u in range(v)]
                np.testing.assert_allclose(pred[i, t], np.array(joint) / prefix[t], rtol=1e-9, atol=1e-12)


def test_token_log_probs_predictive_and_filter_are_consistent() -> None:
    h = random_hmm(5, 6, 9, alpha=0.5)
    x = h.sample(7, 60, seed=2)
    lp, tl = h.log_prob(x), h.token_log_probs(x)
    np.testing.assert_allclose(tl.sum(1), lp, rtol=1e-12)
    pred = h.predictive(x)
    np.testing.assert_allclose(pred.sum(-1), 1.0, rtol=0, atol=1e-12)
    gathered = np.take_along_axis(pred, x[..., None].astype(np.intp), axis=-1)[..., 0]
    np.testing.assert_allclose(np.exp(tl), gathered, rtol=1e-12)
    np.testing.assert_allclose(pred[:, 0], np.broadcast_to(h.initial @ h.emission, (7, 9)), rtol=1e-12)
    filt = h.filtered_states(x)
    assert filt.shape == (7, 60, 6)
    np.testing.assert_allclose(filt.sum(-1), 1.0, rtol=0, atol=1e-12)
    # one step of the recursion by hand: p(x_{t+1} | x_≤t) = α_t A E
    np.testing.assert_allclose(pred[:, 1:], filt[:, :-1] @ h.transition @ h.emission, rtol=1e-10)
    # Bayes at t = 0: α_0 ∝ initial ⊙ E[:, x_0]
    post = h.initial * h.emission[:, x[:, 0]].T
    np.testing.assert_allclose(filt[:, 0], post / post.sum(1, keepdims=True), rtol=1e-12)


def test_markov_chain_as_hmm_with_identity_emissions() -> None:
    rng = np.random.default_rng(4)
    p = random_stochastic(rng, 12, 12, alpha=0.5, zeros=0.3)
    chain = dp.MarkovChain(p)
    h = dp.HMM(p, np.eye(12))
    np.testing.assert_allclose(h.initial, chain.initial, rtol=1e-12)
    for x in [chain.sample(20, 300, seed=1), rng.integers(0, 12, (20, 300))]:
        want = chain.log_prob(x)
        got = h.log_prob(x)
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-12)
        assert (got[~finite] == -np.inf).all()
        np.testing.assert_allclose(
            h.token_log_probs(x)[finite], chain.token_log_probs(x)[finite], rtol=1e-12, atol=1e-14
        )
    x = chain.sample(5, 50, seed=2)
    np.testing.assert_allclose(h.predictive(x)[:, 1:], p[x[:, :-1]], rtol=1e-12, atol=1e-15)


def test_impossible_observation_is_neg_inf_never_nan() -> None:
    """State 0 emits only token 0, state 1 only token 1, and the states alternate."""
    h = dp.HMM([[0.0, 1.0], [1.0, 0.0]], np.eye(2), initial=[1.0, 0.0])
    x = np.array([[0, 1, 0, 1], [0, 0, 1, 0], [1, 0, 1, 0]])
    lp, tl, pred, filt = h.log_prob(x), h.token_log_probs(x), h.predictive(x), h.filtered_states(x)
    np.testing.assert_array_equal(lp, [0.0, -np.inf, -np.inf])
    assert tl[1, 1] == -np.inf and tl[2, 0] == -np.inf
    for arr in (lp, tl, pred, filt):
        assert not np.isnan(arr).any()
    np.testing.assert_allclose(pred.sum(-1), 1.0)
    np.testing.assert_allclose(filt.sum(-1), 1.0)
    rep = h.typicality(x, entropy_rate=0.0)
    assert rep.z[1] == np.inf and rep.nll_per_token[1] == np.inf and rep.above[1]


def test_accepts_any_integer_dtype_1d_and_empty() -> None:
    h = random_hmm(1, 4, 10)
    x = h.sample(5, 30, seed=0)
    want = h.log_prob(x)
    for dt in [np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64]:
        np.testing.assert_array_equal(h.log_prob(x.astype(dt)), want)
    np.testing.assert_array_equal(h.log_prob(x.tolist()), want)
    np.testing.assert_array_equal(h.log_prob(np.asfortranarray(x)), want)
    assert h.log_prob(x[2]) == want[2]
    assert h.token_log_probs(x[2]).shape == (30,)
    assert h.predictive(x[2]).shape == (30, 10)
    assert h.filtered_states(x[2]).shape == (30, 4)
    e = h.sample(3, 0)
    assert e.shape == (3, 0)
    np.testing.assert_array_equal(h.log_prob(e), np.zeros(3))
    assert h.predictive(e).shape == (3, 0, 10)
    assert h.sample(0, 7).shape == (0, 7)


# ---------------------------------------------------------------- sampling law


def chi2_rows(counts: np.ndarray, probs: np.ndarray) -> tuple[float, int]:
    """Pearson chi-square of each row of counts against its law (cells of
    probability 0 must be empty and are left out)."""
    chi2, dof = 0.0, 0
    for c, p in zip(counts, probs):
        pos = p > 0
        assert c[~pos].sum() == 0
        e = c.sum() * p[pos]
        chi2 += float(((c[pos] - e) ** 2 / e).sum())
        dof += int(pos.sum()) - 1
    return chi2, dof


def test_emission_transition_and_initial_frequencies_pass_chi_square() -> None:
    h = random_hmm(11, 4, 6, alpha=2.0)
    x, z = h.sample(400, 500, seed=3, return_states=True)
    s, v = 4, 6
    emit = np.zeros((s, v))
    np.add.at(emit, (z.ravel(), x.ravel()), 1)
    trans = np.zeros((s, s))
    np.add.at(trans, (z[:, :-1].ravel(), z[:, 1:].ravel()), 1)
    for counts, probs in [(emit, h.emission), (trans, h.transition)]:
        chi2, dof = chi2_rows(counts, probs)
        assert stats.chi2.sf(chi2, dof) > 1e-4, (chi2, dof)
    first = np.bincount(h.sample(20000, 1, seed=5, return_states=True)[1][:, 0], minlength=s)
    assert stats.chisquare(first, h.initial * 20000).pvalue > 1e-4
    # the tokens do not depend on whether the states are returned
    np.testing.assert_array_equal(h.sample(400, 500, seed=3), x)


def test_wrong_emission_fails_chi_square() -> None:
    """The check above has power: a slightly different emission matrix fails."""
    h = random_hmm(11, 4, 6, alpha=2.0)
    q = dp.HMM(h.transition, 0.9 * h.emission + 0.1 / 6)
    x, z = q.sample(400, 500, seed=3, return_states=True)
    emit = np.zeros((4, 6))
    np.add.at(emit, (z.ravel(), x.ravel()), 1)
    chi2, dof = chi2_rows(emit, h.emission)
    assert stats.chi2.sf(chi2, dof) < 1e-6


def test_zero_probability_events_never_sampled() -> None:
    h = random_hmm(3, 8, 12, zeros=0.6)
    x, z = h.sample(100, 300, seed=9, return_states=True)
    assert (h.emission[z, x] > 0).all()
    assert (h.transition[z[:, :-1], z[:, 1:]] > 0).all()
    assert np.isfinite(h.log_prob(x)).all()


@pytest.mark.parametrize(
    ("s", "v", "tok_dtype", "state_dtype"),
    [(2, 2, np.uint8, np.uint8), (256, 257, np.uint16, np.uint8), (300, 3, np.uint8, np.uint16)],
)
def test_smallest_dtypes(s: int, v: int, tok_dtype: type, state_dtype: type) -> None:
    a = np.zeros((s, s))
    a[:, -1] = 1.0
    e = np.zeros((s, v))
    e[:, -1] = 1.0
    x, z = dp.HMM(a, e).sample(2, 3, seed=0, return_states=True)
    assert x.dtype == tok_dtype and z.dtype == state_dtype and x.shape == z.shape == (2, 3)
    assert (x == v - 1).all() and (z == s - 1).all()


# ---------------------------------------------------------------- determinism


def test_start_offsets_are_shards_of_one_sample() -> None:
    h = random_hmm(4, 5, 20)
    whole, zs = h.sample(37, 64, seed=7, return_states=True)
    parts = [h.sample(n, 64, seed=7, start=k, return_states=True) for k, n in [(0, 5), (5, 1), (6, 20), (26, 11)]]
    np.testing.assert_array_equal(whole, np.concatenate([p[0] for p in parts]))
    np.testing.assert_array_equal(zs, np.concatenate([p[1] for p in parts]))
    assert not np.array_equal(whole, h.sample(37, 64, seed=8))
    np.testing.assert_array_equal(h.sample(9, 100, seed=1)[:, :40], h.sample(9, 40, seed=1))


_DETERMINISM_SCRIPT = """
import hashlib, numpy as np, dataprobes as dp
rng = np.random.default_rng(0)
h = dp.HMM(rng.dirichlet(np.ones(37), 37), rng.dirichlet(np.ones(300) * 0.3, 37))
x, z = h.sample(37, 129, seed=42, return_states=True)
small = dp.HMM(rng.dirichlet(np.ones(5), 5), rng.dirichlet(np.ones(6), 5))
y = small.sample(23, 40, seed=1)
parts = [x.tobytes(), z.tobytes(), h.log_prob(x).tobytes(), h.token_log_probs(x).tobytes(),
         small.predictive(y).tobytes(), small.filtered_states(y).tobytes(),
         np.float64(h.entropy_rate(num_sequences=9, length=100, seed=3).value).tobytes()]
print(hashlib.sha256(b"".join(parts)).hexdigest())
"""


def test_bit_identical_across_thread_counts() -> None:
    digests = set()
    for threads in ["1", "3"]:
        env = dict(os.environ, RAYON_NUM_THREADS=threads)
        out = subprocess.run(
            [sys.executable, "-c", _DETERMINISM_SCRIPT], env=env, capture_output=True, text=True, check=True
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_scores_do_not_depend_on_batching() -> None:
    """Rows are run through the forward pass in lockstep groups; any row gives
    the same bits alone or in a batch."""
    h = random_hmm(6, 13, 7)
    x = h.sample(11, 80, seed=4)
    lp, tl = h.log_prob(x), h.token_log_probs(x)
    for i in range(11):
        assert h.log_prob(x[i]) == lp[i]
        np.testing.assert_array_equal(h.token_log_probs(x[i : i + 1]), tl[i : i + 1])
    np.testing.assert_array_equal(h.log_prob(x[3:9]), lp[3:9])


def test_sample_at_matches_sample_and_feeds_composites() -> None:
    h = random_hmm(12, 4, 6)
    x, z = h.sample(10, 25, seed=3, start=5, return_states=True)
    idx = np.array([14, 5, 9, 9])
    np.testing.assert_array_equal(h.sample_at(idx, 25, seed=3), x[idx - 5])
    xa, za = h.sample_at(idx, 25, seed=3, return_states=True)
    np.testing.assert_array_equal(xa, x[idx - 5])
    np.testing.assert_array_equal(za, z[idx - 5])
    assert h.sample_at([], 25).shape == (0, 25)
    # an HMM is a component like any other: exact mixture law, labelled rows
    other = dp.HMM(np.full((2, 2), 0.5), np.full((2, 6), 1 / 6))
    m = dp.Mixture([h, other], [0.3, 0.7])
    y, labels = m.sample(50, 40, seed=1, return_labels=True)
    rows = np.flatnonzero(labels == 0)
    np.testing.assert_array_equal(y[rows], h.sample_at(rows, 40, seed=1))
    with np.errstate(divide="ignore"):
        want = np.logaddexp(np.log(0.3) + h.log_prob(y), np.log(0.7) + other.log_prob(y))
    np.testing.assert_allclose(m.log_prob(y), want, rtol=1e-12)
    np.testing.assert_allclose(m.predictive(y).sum(-1), 1.0, atol=1e-12)
    rate = m.entropy_rate()
    assert isinstance(rate, dp.Estimate)
    assert float(rate) == pytest.approx(0.3 * h.entropy_rate().value + 0.7 * math.log(6))


# ---------------------------------------------------------------- entropy rate


def test_entropy_rate_of_identity_emissions_is_the_markov_rate() -> None:
    chain = dp.MarkovChain.random(16, entropy_rate=1.5, seed=1)
    h = dp.HMM(chain.transition, np.eye(16))
    est = h.entropy_rate()
    assert isinstance(est, dp.Estimate)
    assert 0 < est.stderr < 0.01
    assert abs(est.value - chain.entropy_rate()) < 4 * est.stderr
    bits = h.entropy_rate(base=2)
    assert bits.value == pytest.approx(est.value / math.log(2))
    assert bits.stderr == pytest.approx(est.stderr / math.log(2))
    assert float(bits) == bits.value


def test_entropy_rate_stderr_shrinks_with_more_samples() -> None:
    h = random_hmm(2, 5, 8)
    small = h.entropy_rate(num_sequences=64, length=512)
    large = h.entropy_rate(num_sequences=1024, length=512)
    assert 2.5 < small.stderr / large.stderr < 6.5  # sqrt(16) = 4
    longer = h.entropy_rate(num_sequences=64, length=4096)
    assert 2.0 < small.stderr / longer.stderr < 4.5  # sqrt(8) ≈ 2.8
    assert abs(small.value - large.value) < 4 * math.hypot(small.stderr, large.stderr)


def test_entropy_rate_is_the_smb_average_of_its_own_sample() -> None:
    h = random_hmm(7, 4, 6)
    n, t = 10, 300
    x = h.sample(n, t, seed=5)
    est = h.entropy_rate(num_sequences=n, length=t, seed=5)
    per_seq = -h.log_prob(x) / t
    assert est.value == pytest.approx(per_seq.mean(), rel=1e-12)
    assert est.stderr == pytest.approx(per_seq.std(ddof=1) / math.sqrt(n), rel=1e-9)
    burned = h.entropy_rate(num_sequences=n, length=t, seed=5, burn_in=100)
    want = -h.token_log_probs(x)[:, 100:].sum(1) / (t - 100)
    assert burned.value == pytest.approx(want.mean(), rel=1e-12)


def test_entropy_rate_lies_between_the_cover_thomas_bounds() -> None:
    """For a stationary HMM, H(X_n | X_<n, S_1) <= H <= H(X_n | X_<n)
    (Cover & Thomas, Thm 4.5.1); the bounds are computed exactly by
    enumerating every sequence of 12 binary tokens."""
    a = np.array([[0.9, 0.1], [0.3, 0.7]])
    e = np.array([[0.8, 0.2], [0.25, 0.75]])
    h = dp.HMM(a, e)
    blocks, blocks_given = hmm_block_entropies(a, e, h.initial, 12)
    upper = blocks[-1] - blocks[-2]
    lower = blocks_given[-1] - blocks_given[-2]
    assert lower <= upper < lower + 1e-3
    est = h.entropy_rate(num_sequences=256, length=4096, burn_in=64)
    assert lower - 4 * est.stderr < est.value < upper + 4 * est.stderr


# ---------------------------------------------------------------- typicality


def test_z_scores_are_standard_normal_under_the_truth() -> None:
    h = random_hmm(8, 5, 12, alpha=0.5)
    x = h.sample(1500, 256, seed=1)
    rep = h.typicality(x, eps=0.05)
    assert abs(rep.z.mean()) < 4 / math.sqrt(1500)
    assert rep.z.std() == pytest.approx(1.0, abs=0.08)
    assert stats.kstest(rep.z, "norm").pvalue > 1e-4
    np.testing.assert_allclose(rep.nll_per_token, -h.log_prob(x) / 256)
    assert rep.entropy_rate == pytest.approx(h.entropy_rate().value)


def test_typicality_flags_other_processes_and_units() -> None:
    h = random_hmm(8, 5, 12, alpha=0.5)
    other = random_hmm(9, 5, 12, alpha=0.5)
    rep = h.typicality(other.sample(300, 256, seed=1))
    assert rep.z.mean() > 3  # surprisal above what the true process predicts
    x = h.sample(100, 64, seed=2)
    nats = h.typicality(x, eps=0.1, entropy_rate=1.7)
    bits = h.typicality(x, eps=0.1 / math.log(2), base=2, entropy_rate=dp.Estimate(1.7 / math.log(2), 0.0))
    np.testing.assert_allclose(bits.nll_per_token, nats.nll_per_token / math.log(2))
    np.testing.assert_array_equal(bits.inside, nats.inside)
    np.testing.assert_array_equal(bits.z, nats.z)
    assert nats.entropy_rate == 1.7 and bits.unit == "bits"


# ---------------------------------------------------------------- bad inputs

A2 = np.array([[0.5, 0.5], [0.25, 0.75]])
E2 = np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]])


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"transition": np.ones((2, 3)) / 3}, ValueError, r"transition must be square.*got \(2, 3\)"),
        ({"emission": np.ones((3, 3)) / 3}, ValueError, r"emission must have one row per hidden state.*got \(3, 3\)"),
        ({"initial": [0.5, 0.25, 0.25]}, ValueError, "initial must have num_states = 2 entries"),
        ({"transition": [[0.5, 0.5], [0.5, 0.6]]}, ValueError, r"transition row 1 sums to 1\.1.*normalize=True"),
        ({"emission": [[0.5, 0.5, 0.5], [0.1, 0.1, 0.8]]}, ValueError, r"emission row 0 sums to 1\.5"),
        ({"initial": [0.5, 0.6]}, ValueError, r"initial sums to 1\.1"),
        (
            {"emission": [[0.5, np.nan, 0.5], [0.1, 0.1, 0.8]]},
            ValueError,
            "emission row 0: entry 1 is NaN.*finite and non-negative",
        ),
        ({"transition": [[-0.1, 1.1], [0.5, 0.5]]}, ValueError, r"transition row 0: entry 0 is -0\.1"),
        ({"transition": [[np.inf, 1.0], [0.5, 0.5]]}, ValueError, "transition row 0: entry 0 is inf"),
        ({"initial": [np.nan, 1.0]}, ValueError, "initial: entry 0 is NaN"),
        ({"emission": [[0.0, 0.0, 0.0], [0.1, 0.1, 0.8]]}, ValueError, "emission row 0 sums to 0"),
        ({"transition": [0.5, 0.5]}, ValueError, "transition must be 2-D"),
        ({"emission": [0.5, 0.5]}, ValueError, "emission must be 2-D"),
        ({"initial": [[0.5, 0.5]]}, ValueError, "initial must be 1-D"),
        ({"transition": np.zeros((0, 0)), "emission": np.zeros((0, 3))}, ValueError, "at least one hidden state"),
        ({"emission": np.zeros((2, 0))}, ValueError, "vocab_size must be at least 1"),
        ({"transition": [["a", "b"], ["c", "d"]]}, TypeError, "transition must be a numeric array"),
        ({"emission": None}, TypeError, "emission must be a numeric array"),
        ({"initial": ["x", "y"]}, TypeError, "initial must be a numeric array"),
    ],
)
def test_bad_parameters(kwargs: dict, exc: type, match: str) -> None:
    args = {"transition": A2, "emission": E2, "initial": None, **kwargs}
    with pytest.raises(exc, match=match):
        dp.HMM(args["transition"], args["emission"], args["initial"])


def test_normalize_rescales_rows() -> None:
    h = dp.HMM(A2 * 3, E2 * 2, initial=[2.0, 6.0], normalize=True)
    np.testing.assert_allclose(h.transition, A2)
    np.testing.assert_allclose(h.emission, E2)
    np.testing.assert_allclose(h.initial, [0.25, 0.75])
    assert h.num_states == 2 and h.vocab_size == 3
    with pytest.raises(ValueError, match="read-only"):
        h.transition[0, 0] = 1.0


@pytest.mark.parametrize(
    ("tokens", "exc", "match"),
    [
        (np.array([[0, 1, 3]]), ValueError, r"tokens: value 3 at position \[0, 2\] is outside the vocabulary \[0, 3\)"),
        (np.array([[0, 1], [2, -1]]), ValueError, r"value -1 at position \[1, 1\]"),
        (np.array([[0.0, 1.0]]), TypeError, "tokens must be an integer array"),
        (np.zeros((1, 2, 3), dtype=int), ValueError, "tokens must be 1-D"),
    ],
)
def test_bad_tokens(tokens: np.ndarray, exc: type, match: str) -> None:
    h = dp.HMM(A2, E2)
    for fn in (h.log_prob, h.token_log_probs, h.predictive, h.filtered_states, h.typicality):
        with pytest.raises(exc, match=match):
            fn(tokens)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"num_sequences": -1, "length": 3}, ValueError, "num_sequences must be >= 0"),
        ({"num_sequences": 2, "length": -3}, ValueError, "length must be >= 0"),
        ({"num_sequences": 2.5, "length": 3}, TypeError, "num_sequences must be an integer"),
        ({"num_sequences": 2, "length": 3, "seed": -1}, ValueError, "seed must be >= 0"),
        ({"num_sequences": 2, "length": 3, "start": -5}, ValueError, "start must be >= 0"),
        ({"num_sequences": 2, "length": 3, "return_states": "yes"}, TypeError, "return_states must be a bool"),
        ({"num_sequences": 2, "length": 3, "return_states": 1}, TypeError, "return_states must be a bool"),
        ({"num_sequences": 2**40, "length": 2**20}, ValueError, "too large"),
    ],
)
def test_bad_sample_arguments(kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        dp.HMM(A2, E2).sample(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"num_sequences": 1}, ValueError, "num_sequences must be >= 2"),
        ({"length": 0}, ValueError, "length must be >= 1"),
        ({"length": -4}, ValueError, "length must be >= 1"),
        ({"length": 10, "burn_in": 10}, ValueError, "burn_in must be smaller than length"),
        ({"burn_in": -1}, ValueError, "burn_in must be >= 0"),
        ({"seed": -1}, ValueError, "seed must be >= 0"),
        ({"base": 1}, ValueError, "base must not be 1"),
        ({"num_sequences": 2**30, "length": 2**20}, ValueError, "too large"),
    ],
)
def test_bad_entropy_rate_arguments(kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        dp.HMM(A2, E2).entropy_rate(**kwargs)


def test_bad_typicality_arguments() -> None:
    h = dp.HMM(A2, E2)
    with pytest.raises(ValueError, match="eps must be > 0"):
        h.typicality([[0, 1]], eps=0)
    with pytest.raises(ValueError, match="length >= 1"):
        h.typicality(np.zeros((2, 0), dtype=int))
    with pytest.raises(ValueError, match="entropy_rate must be finite"):
        h.typicality([[0, 1]], entropy_rate=float("nan"))


def test_random_hmm_is_deterministic_and_valid() -> None:
    a = dp.HMM.random(5, 9, seed=3)
    b = dp.HMM.random(5, 9, seed=3)
    np.testing.assert_array_equal(a.transition, b.transition)
    np.testing.assert_array_equal(a.emission, b.emission)
    assert a.num_states == 5 and a.vocab_size == 9
    np.testing.assert_allclose(a.emission.sum(1), 1.0)
    with pytest.raises(ValueError, match="emission_concentration must be > 0"):
        dp.HMM.random(5, 9, emission_concentration=0)
