"""Fact worlds with a template coverage (planted partial knowledge): the
default law is unchanged (recorded outputs, a full mask gives the same
samples and scores), exact likelihoods against brute-force enumeration of
``P(f, t) = w_f m_{f,t} / k_f``, the sampler's pair law, exposure, sharding,
serialisation and bad input."""

from __future__ import annotations

import hashlib
import math
import pickle
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import dataprobes as dp


def cells(world: dp.FactWorld) -> np.ndarray:
    """``W[f, t] = w_f m_{f,t} / k_f`` straight from the definition."""
    m = np.asarray(world.template_mask, dtype=np.float64)
    return world.exposure_weights[:, None] * m / m.sum(1, keepdims=True)


def stmt(world: dp.FactWorld, f: int, t: int) -> list[int]:
    pos = {"subject": 0, "relation": 1, "object": 2}
    return [int(world.fact_tokens[f, pos[c]]) if isinstance(c, str) else c for c in world.template(t)]


def enumerate_law(world: dp.FactWorld, length: int) -> dict[tuple[int, ...], float]:
    """Every sequence of ``length`` tokens with its probability: units are a
    background token (``(1-q) p_bg``, the chain read from its tables) or the
    statement ``(f, t)`` with probability ``q W[f, t]``, cut at ``length``."""
    bg = world.background
    assert isinstance(bg, dp.MarkovChain)
    init, trans = bg.initial, bg.transition
    q = world.statement_prob
    w = cells(world)
    out: dict[tuple[int, ...], float] = defaultdict(float)
    units = [(w[f, t], stmt(world, f, t)) for f, t in zip(*np.nonzero(w > 0), strict=True)]

    def rec(tokens: list[int], last_bg: int | None, p: float) -> None:
        if p == 0.0:
            return
        if len(tokens) >= length:
            out[tuple(tokens[:length])] += p
            return
        for b in range(bg.vocab_size):
            rec(tokens + [b], b, p * (1 - q) * (init[b] if last_bg is None else trans[last_bg, b]))
        for wft, s in units:
            rec(tokens + s, last_bg, p * q * wft)

    rec([], None, 1.0)
    return dict(out)


def tiny(seed: int, mask: object, q: float = 0.5, exposure: object = "zipf", templates: int = 3) -> dp.FactWorld:
    bg = dp.MarkovChain.random(2, seed=seed, concentration=0.8)
    return dp.FactWorld(3, 2, templates, bg, statement_prob=q, exposure=exposure, seed=seed, template_coverage=mask)


masks = st.lists(st.lists(st.booleans(), min_size=3, max_size=3).filter(any), min_size=3, max_size=3).map(
    lambda rows: np.array(rows, dtype=bool)
)


# ------------------------------------------------------------ default law
def fingerprint(world: dp.FactWorld) -> tuple[str, float, float, float, float]:
    x = world.sample(7, 40, seed=5)
    return (
        hashlib.sha256(np.ascontiguousarray(x, dtype=np.int64).tobytes()).hexdigest()[:16],
        float(world.log_prob(x).sum()),
        float((world.predictive(x[:3]) ** 2).sum()),
        float((world.expected_counts(11, 37) * np.arange(1, world.num_facts + 1)).sum()),
        float(world.entropy_rate()),
    )


def test_default_world_gives_the_recorded_outputs() -> None:
    """Outputs recorded before the coverage existed (samples bit-exact)."""
    bg = dp.MarkovChain.random(4, seed=2, concentration=0.8)
    w1 = dp.FactWorld(9, 2, 4, bg, statement_prob=0.3, seed=3)
    ex = [3.0, 0.0, 1.0, 2.0, 0.5, 1.0]
    w2 = dp.FactWorld(6, 3, 5, dp.IID.random(3, seed=1), statement_prob=0.5, exposure=ex, seed=8)
    recorded = [
        ("ce346e2dea374a13", -264.4031163518674, 68.49354523601656, 132.8380532919176, 0.9095482017327083),
        ("1f9a901a7d43da84", -186.88009653046163, 77.33918081855549, 156.461769685993, 0.7010621065143868),
    ]
    for world, want in zip((w1, w2), recorded, strict=True):
        got = fingerprint(world)
        assert got[0] == want[0]
        np.testing.assert_allclose(got[1:], want[1:], rtol=1e-9)
    assert "template_coverage" not in w1._law  # saved and pickled exactly as before


@pytest.mark.parametrize("full", ["int", "sizes", "mask"])
def test_full_coverage_is_the_default_law(full: str) -> None:
    bg = dp.MarkovChain.random(5, seed=1, concentration=0.8)
    f, t = 14, 5
    arg: object = {"int": t, "sizes": np.full(f, t), "mask": np.ones((f, t), dtype=bool)}[full]
    ref = dp.FactWorld(f, 3, t, bg, statement_prob=0.35, exposure=[0.0] + [1.0] * (f - 1), seed=6)
    cov = dp.FactWorld(
        f, 3, t, bg, statement_prob=0.35, exposure=[0.0] + [1.0] * (f - 1), seed=6, template_coverage=arg
    )
    x = ref.sample(40, 50, seed=3)
    np.testing.assert_array_equal(cov.sample(40, 50, seed=3), x)  # the same draws, bit for bit
    np.testing.assert_allclose(cov.token_log_probs(x), ref.token_log_probs(x), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(cov.predictive(x[:5]), ref.predictive(x[:5]), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(cov.expected_counts(7, 60), ref.expected_counts(7, 60), rtol=1e-12)
    assert math.isclose(cov.entropy_rate(), ref.entropy_rate(), rel_tol=1e-12)
    np.testing.assert_allclose(cov.template_probs, ref.template_probs, rtol=1e-12)
    for w in (ref, cov):
        m = w.template_mask
        assert m.shape == (f, t) and m.dtype == bool and m.all() and not m.flags.writeable
        assert not w.template_probs.flags.writeable


# ------------------------------------------------------------ exact law
@given(st.integers(0, 2**16), masks, st.sampled_from([0.3, 1.0]), st.sampled_from(["zipf", "zero"]))
def test_scores_match_enumeration(seed: int, mask: np.ndarray, q: float, exposure: str) -> None:
    ex: object = [2.0, 0.0, 1.0] if exposure == "zero" else exposure
    world = tiny(seed, mask, q, ex)
    np.testing.assert_array_equal(world.template_mask, mask)
    length = 5
    law = enumerate_law(world, length)
    assert math.isclose(sum(law.values()), 1.0, rel_tol=1e-12)
    xs = np.array(list(law), dtype=np.int64)
    probs = np.array(list(law.values()))
    np.testing.assert_allclose(world.log_prob(xs), np.log(probs), rtol=1e-10, atol=1e-12)
    pre: dict[tuple[int, ...], float] = defaultdict(float)
    for x, p in law.items():
        for k in range(len(x) + 1):
            pre[x[:k]] += p
    tlp = world.token_log_probs(xs)
    pred = world.predictive(xs)
    for i, x in enumerate(law):
        for t in range(length):
            np.testing.assert_allclose(tlp[i, t], math.log(pre[x[: t + 1]] / pre[x[:t]]), rtol=1e-10, atol=1e-12)
            want = np.array([pre.get(x[:t] + (v,), 0.0) for v in range(world.vocab_size)]) / pre[x[:t]]
            np.testing.assert_allclose(pred[i, t], want, atol=1e-12)
    w = cells(world)
    np.testing.assert_allclose(world.template_probs, w.sum(0), rtol=1e-12)
    joint = w[w > 0]
    hq = 0.0 if q == 1.0 else -(q * math.log(q) + (1 - q) * math.log1p(-q))
    hb = float(world.background.entropy_rate())
    lbar = float(w.sum(0) @ world.template_lengths)
    want_rate = (hq + q * float(-(joint * np.log(joint)).sum()) + (1 - q) * hb) / ((1 - q) + q * lbar)
    assert math.isclose(float(world.entropy_rate()), want_rate, rel_tol=1e-12)


def test_unused_template_is_impossible() -> None:
    mask = np.array([[True, False, False], [True, True, False], [False, True, False]])
    world = tiny(2, mask)
    assert world.template_probs[2] == 0.0
    opener = world.template(2)[0]
    assert isinstance(opener, int)
    x = np.array([0, opener, 1, 0])
    lp = world.token_log_probs(x)
    assert np.isneginf(lp[1]) and np.isfinite(np.delete(lp, 1)).all()  # skipped, the chain goes on
    pred = world.predictive(x)
    assert (pred[:, opener] == 0).all() and np.allclose(pred.sum(-1), 1.0)


def test_expected_counts_match_enumeration() -> None:
    mask = np.array([[True, False, True], [False, True, False], [True, True, True]])
    world = tiny(4, mask, q=0.5)
    length = 9
    law = enumerate_law(world, length)
    xs = np.array(list(law), dtype=np.int64)
    p = np.array(list(law.values()))
    found = world.statements(xs)
    done = found["complete"]
    per_row = np.zeros((len(xs), world.num_facts))
    np.add.at(per_row, (found["row"][done], found["fact"][done]), 1)
    np.testing.assert_allclose(world.expected_counts(1, length), p @ per_row, rtol=1e-10)
    assert mask[found["fact"][done], found["template"][done]].all()


# ------------------------------------------------------------ sampler law
def test_sampled_pairs_follow_the_joint_law() -> None:
    bg = dp.IID.random(4, seed=0)
    world = dp.FactWorld(
        8, 2, 5, bg, statement_prob=0.3, zipf_exponent=0.7, seed=3, template_coverage=[1, 2, 3, 4, 5, 2, 1, 3]
    )
    k = np.asarray(world.template_mask).sum(1)
    np.testing.assert_array_equal(k, [1, 2, 3, 4, 5, 2, 1, 3])
    length = 80
    x = world.sample(3000, length, seed=9)
    found = world.statements(x)
    # a statement starting early enough is complete; its (f, t) is a fresh draw of W
    early = found["start"] <= length - int(world.template_lengths.max())
    assert found["complete"][early].all()
    obs = np.zeros((world.num_facts, world.num_templates))
    np.add.at(obs, (found["fact"][early], found["template"][early]), 1)
    w = cells(world)
    assert obs[w == 0].sum() == 0  # never under a template outside the fact's coverage
    exp = w[w > 0] / w.sum() * obs.sum()
    assert exp.min() > 5
    assert stats.chisquare(obs[w > 0], exp).pvalue > 1e-3


def test_expected_counts_realised() -> None:
    bg = dp.MarkovChain.random(5, seed=1)
    world = dp.FactWorld(30, 3, 6, bg, zipf_exponent=1.1, statement_prob=0.3, seed=2, template_coverage=2)
    n, length = 1200, 64
    counts = world.fact_counts(world.sample(n, length, seed=5))
    expected = world.expected_counts(n, length)
    assert abs(counts.sum() - expected.sum()) < 4 * math.sqrt(expected.sum())
    assert stats.chisquare(counts, expected * counts.sum() / expected.sum()).pvalue > 1e-3
    nll = -world.log_prob(world.sample(30, 3000, seed=8)).mean() / 3000
    assert abs(nll - world.entropy_rate()) < 0.03
    rep = world.typicality(world.sample(200, 100, seed=3), eps=0.1)
    assert abs(rep.z.mean()) < 0.25 and 0.7 < rep.z.std() < 1.3


# ------------------------------------------------------------ construction
def test_sizes_draw_a_seeded_subset_per_fact() -> None:
    bg = dp.IID([0.5, 0.5])
    a = dp.FactWorld(40, 4, 9, bg, seed=5, template_coverage=3)
    b = dp.FactWorld(40, 4, 9, bg, seed=5, template_coverage=np.full(40, 3))
    c = dp.FactWorld(40, 4, 9, bg, seed=6, template_coverage=3)
    np.testing.assert_array_equal(a.template_mask, b.template_mask)  # k == [k] * F
    assert (np.asarray(a.template_mask).sum(1) == 3).all()
    assert not np.array_equal(a.template_mask, c.template_mask)
    assert len({tuple(r) for r in np.asarray(a.template_mask).tolist()}) > 10  # subsets differ between facts
    assert not a.template_mask.flags.writeable
    given_mask = np.eye(9, dtype=bool)[np.arange(40) % 9]
    d = dp.FactWorld(40, 4, 9, bg, template_coverage=given_mask)
    given_mask[:] = True  # the world keeps its own copy
    assert (np.asarray(d.template_mask).sum(1) == 1).all()


@pytest.mark.parametrize("kind", ["int", "sizes", "mask"])
def test_save_load_and_pickle_round_trip(tmp_path, kind: str) -> None:
    bg = dp.MarkovChain.random(3, seed=2, concentration=0.7)
    arg: object = {"int": 2, "sizes": np.array([1, 3, 2, 1, 2]), "mask": np.eye(3, dtype=bool)[[0, 1, 2, 0, 1]]}[kind]
    w = dp.FactWorld(5, 2, 3, bg, statement_prob=0.35, seed=7, template_coverage=arg)
    path = tmp_path / "world.npz"
    w.save(path)
    x = w.sample(6, 30, seed=11)
    for back in (dp.FactWorld.load(path), pickle.loads(pickle.dumps(w))):
        assert isinstance(back, dp.FactWorld)
        np.testing.assert_array_equal(back.template_mask, w.template_mask)
        np.testing.assert_array_equal(back.sample(6, 30, seed=11), x)
        np.testing.assert_array_equal(back.log_prob(x), w.log_prob(x))


def test_bad_coverage() -> None:
    bg = dp.IID([0.5, 0.5])

    def make(cov: object, f: int = 4, t: int = 3) -> dp.FactWorld:
        return dp.FactWorld(f, 2, t, bg, template_coverage=cov)

    for cov, exc, match in [
        (0, ValueError, "template_coverage must be >= 1"),
        (4, ValueError, "template_coverage must be <= 3"),
        (2.0, TypeError, "template_coverage"),
        (True, TypeError, "template_coverage"),
        ("all", TypeError, "template_coverage"),
        ([1, 2, 3], ValueError, "template_coverage as sizes must hold one int per fact"),
        ([1, 2, 3, 0], ValueError, r"template_coverage sizes must lie in \[1, 3\]"),
        ([1, 2, 3, 4], ValueError, r"template_coverage sizes must lie in \[1, 3\]"),
        # a uint64 above 2**63 is reported as given, not wrapped to a negative int64
        (np.full(4, 2**63 + 5, dtype=np.uint64), ValueError, rf"sizes must lie in \[1, 3\].*got \[{2**63 + 5}, "),
        ([1.0, 2.0, 3.0, 1.0], TypeError, "template_coverage"),
        (np.ones((4, 3), dtype=np.int64), TypeError, "template_coverage"),
        (np.ones((4, 2), dtype=bool), ValueError, r"template_coverage as a mask must have shape \(4, 3\)"),
        (np.eye(4, 3, dtype=bool), ValueError, "template_coverage: every fact needs at least one template, row 3"),
        ([[True, False], [True]], TypeError, "template_coverage"),
    ]:
        with pytest.raises(exc, match=match):
            make(cov)
    with pytest.raises(ValueError, match=r"template_coverage needs num_facts \* num_templates <= 2\*\*26"):
        dp.FactWorld(1 << 14, 1, 1 << 13, bg, template_coverage=1)
