"""Mixtures and duplicated data sets keep the exact law and the ground truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from scipy.special import logsumexp

import dataprobes as dp


def components(v: int = 6) -> list[dp.Process]:
    return [
        dp.MarkovChain.random(v, seed=1, concentration=0.3),
        dp.MarkovChain.random(v, order=2, seed=2),
        dp.IID.random(v, seed=3),
        dp.InContextMarkov(v, 1, 0.5),
    ]


@given(st.integers(0, 2**32 - 1), st.integers(0, 20))
def test_mixture_log_prob_is_logsumexp(seed: int, length: int) -> None:
    comps = components()
    w = np.random.default_rng(seed).dirichlet(np.ones(len(comps)))
    m = dp.Mixture(comps, w)
    x = m.sample(8, length, seed=seed)
    want = logsumexp(np.log(w) + np.stack([c.log_prob(x) for c in comps], 1), axis=1)
    np.testing.assert_allclose(m.log_prob(x), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m.token_log_probs(x).sum(1), want, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(m.posterior(x).sum(1), 1.0)


def test_labels_follow_weights_and_rows_come_from_their_component() -> None:
    comps = components()
    w = np.array([0.1, 0.2, 0.3, 0.4])
    m = dp.Mixture(comps, w)
    x, labels = m.sample(20000, 12, seed=4, return_labels=True)
    assert stats.chisquare(np.bincount(labels, minlength=4), w * 20000).pvalue > 1e-4
    idx = np.arange(20000)
    for c, comp in enumerate(comps):
        rows = labels == c
        np.testing.assert_array_equal(x[rows], comp.sample_at(idx[rows], 12, seed=4))
    # long sequences are attributed to their component
    y, lab = m.sample(200, 300, seed=5, return_labels=True)
    assert (m.posterior(y).argmax(1) == lab).mean() > 0.97


def test_mixture_entropy_rate_and_typicality() -> None:
    a, b = dp.MarkovChain.random(16, entropy_rate=1.0, seed=0), dp.MarkovChain.random(16, entropy_rate=2.0, seed=1)
    m = dp.Mixture([a, b], [0.25, 0.75])
    assert m.entropy_rate() == pytest.approx(0.25 * 1.0 + 0.75 * 2.0)
    rep = m.typicality(m.sample(2000, 512, seed=0))
    assert rep.z.std() == pytest.approx(1.0, abs=0.1)
    # a mixture with an HMM-like Estimate component returns an Estimate
    icl = dp.Mixture([a, dp.InContextMarkov(16)])
    assert isinstance(icl.entropy_rate(), dp.Estimate)


def test_nested_mixture_and_shards() -> None:
    inner = dp.Mixture(components()[:2], [0.5, 0.5])
    outer = dp.Mixture([inner, components()[2]], [0.6, 0.4])
    whole = outer.sample(40, 9, seed=2)
    np.testing.assert_array_equal(whole[10:], outer.sample(30, 9, seed=2, start=10))
    lp = outer.log_prob(whole)
    want = np.logaddexp(np.log(0.6) + inner.log_prob(whole), np.log(0.4) + components()[2].log_prob(whole))
    np.testing.assert_allclose(lp, want)


def test_mixture_errors() -> None:
    a, b = dp.IID([0.5, 0.5]), dp.IID([0.2, 0.8])
    with pytest.raises(ValueError, match="weights must be finite and > 0"):
        dp.Mixture([a, b], [1.0, 0.0])
    with pytest.raises(ValueError, match="weights sum to 1.5"):
        dp.Mixture([a, b], [1.0, 0.5])
    assert dp.Mixture([a, b], [2, 6], normalize=True).weights.tolist() == [0.25, 0.75]
    with pytest.raises(ValueError, match="one entry per process"):
        dp.Mixture([a, b], [1.0])
    with pytest.raises(ValueError, match="processes\\[1\\] has vocab_size 3"):
        dp.Mixture([a, dp.IID([0.2, 0.3, 0.5])])
    with pytest.raises(TypeError, match="processes\\[1\\] must be a dataprobes Process"):
        dp.Mixture([a, "b"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="non-empty"):
        dp.Mixture([])


def test_duplicated() -> None:
    base = dp.MarkovChain.random(50, seed=0)
    d = dp.Duplicated(base, 0.3)
    x, src = d.sample(5000, 20, seed=1, return_sources=True)
    assert (src <= np.arange(5000)).all()
    np.testing.assert_array_equal(x, x[src])  # copies are exact
    fresh = src == np.arange(5000)
    np.testing.assert_array_equal(x[fresh], base.sample(5000, 20, seed=1)[fresh])
    assert abs((~fresh[1:]).mean() - 0.3) < 0.03
    np.testing.assert_array_equal(d.log_prob(x), base.log_prob(x))
    assert d.entropy_rate() == base.entropy_rate()
    np.testing.assert_array_equal(d.sample(10, 20, seed=1, start=4990), x[4990:])
    np.testing.assert_array_equal(dp.Duplicated(base, 0.0).sample(30, 5, seed=3), base.sample(30, 5, seed=3))
    with pytest.raises(ValueError, match="fraction must lie in \\[0, 1\\]"):
        dp.Duplicated(base, 1.5)


def test_duplicates_inflate_exact_repeats() -> None:
    d = dp.Duplicated(dp.IID(np.full(64, 1 / 64)), 0.5)
    x = d.sample(2000, 16, seed=0)
    unique = len({row.tobytes() for row in x})
    assert unique == pytest.approx(2000 * (1 - 0.5), rel=0.1)
    assert math.isclose(d.fraction, 0.5)


@pytest.mark.parametrize(
    "process",
    [
        dp.MarkovChain.random(5, order=2, seed=0),
        dp.IID.random(5, seed=1),
        dp.InContextMarkov(5, 1, 0.5),
        dp.Mixture([dp.MarkovChain.random(5, seed=2), dp.InContextMarkov(5, 0, 2.0)], [0.4, 0.6]),
        dp.Duplicated(dp.MarkovChain.random(5, seed=3), 0.5),
    ],
    ids=["markov2", "iid", "icl", "mixture", "duplicated"],
)
def test_predictive_is_consistent_with_token_log_probs(process: dp.Process) -> None:
    x = process.sample(6, 25, seed=7)
    pred = process.predictive(x)
    assert pred.shape == (6, 25, 5)
    np.testing.assert_allclose(pred.sum(-1), 1.0, atol=1e-12)
    gathered = np.take_along_axis(pred, x[..., None].astype(np.int64), axis=-1)[..., 0]
    np.testing.assert_allclose(np.log(gathered), process.token_log_probs(x), rtol=1e-9, atol=1e-12)
    # the sequence index alone determines a row: sample == sample_at
    np.testing.assert_array_equal(process.sample_at(np.arange(3, 6), 25, seed=7), x[3:])


@given(st.floats(0.0, 1.0), st.integers(0, 2**32 - 1), st.integers(1, 60))
def test_duplicated_rows_copy_fresh_sources(fraction: float, seed: int, n: int) -> None:
    base = dp.IID.random(40, seed=1)
    x, src = dp.Duplicated(base, fraction).sample(n, 6, seed=seed, return_sources=True)
    assert (src <= np.arange(n)).all()
    np.testing.assert_array_equal(x, base.sample_at(src, 6, seed=seed))
    np.testing.assert_array_equal(dp.Duplicated(base, fraction).sources_at(src, seed=seed), src)
