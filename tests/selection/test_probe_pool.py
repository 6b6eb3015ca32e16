"""The labelled selection pool: its labels are the truth, its law is the mixture's."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import dataprobes as dp
from dataprobes.selection import LabelledPool, labelled_pool


def small_pool(**kw: object) -> LabelledPool:
    args: dict = dict(vocab_size=8, length=48, num_components=4, clean=600, noisy=400, duplicated=400, seed=3)
    args.update(kw)
    return labelled_pool(**args)


def check_invariants(p: LabelledPool, edits: int) -> None:
    n, t = p.tokens.shape
    v = p.components[0].vocab_size
    assert p.tokens.max() < v
    for a in (p.component, p.noisy, p.copy, p.noise_rate, p.cluster):
        assert a.shape == (n,)
    fresh = ~p.copy
    # every row that is not a copy is its own cluster; a copy points at a fresh, clean row of its chain
    np.testing.assert_array_equal(p.cluster[fresh], np.flatnonzero(fresh))
    src = p.cluster[p.copy]
    assert not p.copy[src].any() and not p.noisy[src].any()
    np.testing.assert_array_equal(p.component[src], p.component[p.copy])
    # and differs from it at exactly `edits` positions
    diff = (p.tokens[p.copy] != p.tokens[src]).sum(axis=1)
    np.testing.assert_array_equal(diff, np.full(diff.shape, edits))
    np.testing.assert_allclose(p.noise_rate[p.copy], edits / t)
    assert not (p.noisy & p.copy).any()
    assert (p.noise_rate[~p.noisy & ~p.copy] == 0).all()


@given(
    st.integers(2, 6),
    st.integers(2, 12),
    st.integers(0, 3),
    st.integers(0, 20),
    st.integers(0, 30),
    st.floats(0.0, 0.9),
    st.integers(0, 2**63),
)
def test_invariants_hold_for_any_configuration(
    v: int, t: int, clean: int, noisy: int, dup: int, frac: float, seed: int
) -> None:
    edits = seed % (t + 1)
    kw = dict(num_components=2, clean=clean, noisy=noisy, duplicated=dup, duplicate_fraction=frac, edits=edits)
    if clean + noisy + dup == 0:
        with pytest.raises(ValueError, match="empty"):
            labelled_pool(v, t, **kw, seed=seed)
        return
    p = labelled_pool(v, t, **kw, seed=seed)
    assert len(p) == clean + noisy + dup and p.noisy.sum() == noisy
    check_invariants(p, edits)
    q = labelled_pool(v, t, **kw, seed=seed)
    np.testing.assert_array_equal(p.tokens, q.tokens)
    np.testing.assert_array_equal(p.cluster, q.cluster)


def test_labels_name_the_generating_chain() -> None:
    """Each row is far more likely under its labelled chain (through the noise
    channel for noisy rows) than under any other, for all but a few rows."""
    p = small_pool(length=96)
    check_invariants(p, 1)
    clean_ll = np.stack([c.log_prob(p.tokens) for c in p.components], axis=1)
    noisy_ll = np.empty_like(clean_ll)
    for rho in np.unique(p.noise_rate[p.noisy]):
        rows = np.flatnonzero(p.noise_rate == rho)
        noisy_ll[rows] = np.stack([dp.TokenNoise(c, float(rho)).log_prob(p.tokens[rows]) for c in p.components], 1)
    best = np.where(p.noisy, noisy_ll.argmax(1), clean_ll.argmax(1))
    assert (best == p.component).mean() > 0.97


def test_clean_transitions_follow_their_chain() -> None:
    """G-test: the transition counts of each chain's fresh clean rows fit its matrix."""
    p = small_pool(vocab_size=5, length=64, clean=2000, noisy=0, duplicated=0)
    for c, chain in enumerate(p.components):
        x = p.tokens[p.component == c].astype(np.int64)
        counts = np.zeros((5, 5))
        np.add.at(counts, (x[:, :-1], x[:, 1:]), 1)
        expected = counts.sum(1, keepdims=True) * chain.transition
        g, pval = stats.power_divergence(counts.ravel(), expected.ravel(), ddof=5, lambda_="log-likelihood")
        assert pval > 1e-3, (c, g, pval)


def test_component_frequencies_match_the_weights() -> None:
    """Chi-square: rows that are not copies are i.i.d. draws of the mixture label."""
    w = np.array([0.1, 0.2, 0.3, 0.4])
    p = small_pool(weights=w, clean=3000, noisy=1000, duplicated=1000)
    labels = p.component[~p.copy]
    _, pval = stats.chisquare(np.bincount(labels, minlength=4), w * labels.size)
    assert pval > 1e-3
    np.testing.assert_allclose(p.weights, w)


def test_noisy_rows_are_redrawn_at_their_rate() -> None:
    """Mean NLL per token of each noise level under its exact law matches that law's entropy rate."""
    p = small_pool(clean=0, noisy=1200, duplicated=0, noise_rates=(0.2, 0.7), length=128)
    for rho in (0.2, 0.7):
        rows = p.noise_rate == rho
        assert rows.sum() == 600
        law = dp.TokenNoise(p.pool_law, rho)
        nll = -law.log_prob(p.tokens[rows]) / p.tokens.shape[1]
        rate = float(law.entropy_rate())
        assert abs(nll.mean() - rate) < 5 * nll.std() / math.sqrt(rows.sum()) + 0.02


def test_entropy_rates_targets_and_laws() -> None:
    rates = [1.0, 1.2, 1.4, 1.6]
    p = small_pool(entropy_rates=rates, target=(2, 0), target_per_subtask=5)
    np.testing.assert_allclose(p.entropy_rates, rates, atol=1e-8)
    assert p.target == (2, 0)
    np.testing.assert_array_equal(p.target_component, [2] * 5 + [0] * 5)
    law = p.target_law
    assert isinstance(law, dp.Mixture) and law.components[0] is p.components[2]
    ll = np.stack([p.components[c].log_prob(p.target_tokens) for c in range(4)], 1)
    assert (ll.argmax(1) == p.target_component).mean() > 0.9
    one = small_pool(target=(1,))
    assert one.target_law is one.components[1]
    np.testing.assert_array_equal(p.in_target, np.isin(p.component, [0, 2]))
    # the targets are fresh draws, not pool rows
    pool_rows = {r.tobytes() for r in p.tokens}
    assert not any(r.tobytes() in pool_rows for r in p.target_tokens)


def test_default_oracle_ranks_clean_over_noisy_and_copies_between_chains() -> None:
    """The documented ordering of the default entropy rates under the DEITA oracle."""
    p = labelled_pool(clean=300, noisy=300, duplicated=300, seed=5)
    s = p.oracle_scores()
    clean = ~p.noisy & ~p.copy
    assert s[clean].min() > s[p.noisy].max()
    h = p.entropy_rates
    for c in range(1, len(h)):
        copies = p.copy & (p.component == c)
        if copies.any():
            assert s[copies].min() > h[c - 1]


def test_determinism_and_pickle() -> None:
    a, b, c = small_pool(seed=11), small_pool(seed=11), small_pool(seed=12)
    for f in ("tokens", "component", "noisy", "copy", "noise_rate", "cluster", "target_tokens"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.tokens, c.tokens)
    r = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(r.tokens, a.tokens)
    np.testing.assert_array_equal(r.components[0].transition, a.components[0].transition)
    assert not a.tokens.flags.writeable


@pytest.mark.parametrize(
    ("kw", "exc", "name"),
    [
        (dict(vocab_size=1.5), TypeError, "vocab_size"),
        (dict(vocab_size=1), ValueError, "vocab_size"),
        (dict(length=1), ValueError, "length"),
        (dict(num_components=0), ValueError, "num_components"),
        (dict(entropy_rates=[1.0]), ValueError, "entropy_rates"),
        (dict(entropy_rates=[1.0, 1.0, 1.0, 9.0]), ValueError, "entropy_rates"),
        (dict(entropy_rates="abc"), TypeError, "entropy_rates"),
        (dict(noise_rates=(0.0,)), ValueError, "noise_rates"),
        (dict(noise_rates=(1.5,)), ValueError, "noise_rates"),
        (dict(duplicate_fraction=1.0), ValueError, "duplicate_fraction"),
        (dict(edits=49), ValueError, "edits"),
        (dict(clean=-1), ValueError, "clean"),
        (dict(noisy="3"), TypeError, "noisy"),
        (dict(target=(0, 0)), ValueError, "target"),
        (dict(target=(9,)), ValueError, "target"),
        (dict(target=3), TypeError, "target"),
        (dict(target=()), ValueError, "target"),
        (dict(target_per_subtask=0), ValueError, "target_per_subtask"),
        (dict(weights=[1.0, 0.0, 0.0, 0.0]), ValueError, "weights"),
        (dict(weights=2.0), TypeError, "weights"),
        (dict(seed=-1), ValueError, "seed"),
    ],
)
def test_bad_arguments(kw: dict, exc: type, name: str) -> None:
    with pytest.raises(exc, match=name):
        small_pool(**kw)
