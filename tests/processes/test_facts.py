"""Fact worlds: exact likelihoods against brute-force enumeration of the
generative law, the sampler's law, exposure, sharding, QA format, text."""

from __future__ import annotations

import math
import pickle
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import dataprobes as dp


def tiny_world(seed: int = 0, q: float = 0.4, exposure: object = "zipf", templates: int = 2) -> dp.FactWorld:
    bg = dp.MarkovChain.random(2, seed=seed, concentration=0.8)
    return dp.FactWorld(3, 2, templates, bg, statement_prob=q, exposure=exposure, seed=seed)


def slots(world: dp.FactWorld, f: int, t: int) -> list[int]:
    """The statement built from the template's slots and the fact table (not ``statement``)."""
    pos = {"subject": 0, "relation": 1, "object": 2}
    return [int(world.fact_tokens[f, pos[c]]) if isinstance(c, str) else c for c in world.template(t)]


def enumerate_law(world: dp.FactWorld, length: int) -> dict[tuple[int, ...], float]:
    """Every sequence of ``length`` tokens with its probability, by expanding
    the unit chain: a background token (prob ``(1-q) p_bg``, the chain read
    from its tables) or a statement ``(f, t)`` (prob ``q w_f / T``), cut at
    ``length``."""
    bg = world.background
    assert isinstance(bg, dp.MarkovChain)
    init, trans = bg.initial, bg.transition
    q, w, nt = world.statement_prob, world.exposure_weights, world.num_templates
    out: dict[tuple[int, ...], float] = defaultdict(float)
    stmts = [(f, t, slots(world, f, t)) for f in range(world.num_facts) for t in range(nt) if w[f] > 0]

    def rec(tokens: list[int], last_bg: int | None, p: float) -> None:
        if p == 0.0:
            return
        if len(tokens) >= length:
            out[tuple(tokens[:length])] += p
            return
        for b in range(bg.vocab_size):
            pb = init[b] if last_bg is None else trans[last_bg, b]
            rec(tokens + [b], b, p * (1 - q) * pb)
        for f, _, s in stmts:
            rec(tokens + s, last_bg, p * q * w[f] / nt)

    rec([], None, 1.0)
    return dict(out)


def prefix_marginals(law: dict[tuple[int, ...], float]) -> dict[tuple[int, ...], float]:
    pre: dict[tuple[int, ...], float] = defaultdict(float)
    for x, p in law.items():
        for k in range(len(x) + 1):
            pre[x[:k]] += p
    return pre


@given(st.integers(0, 2**16), st.sampled_from([0.2, 0.5, 1.0]), st.sampled_from(["zipf", "uniform", "zero"]))
def test_scores_match_enumeration(seed: int, q: float, exposure: str) -> None:
    ex: object = [3.0, 0.0, 1.0] if exposure == "zero" else exposure
    world = tiny_world(seed, q, ex)
    length = 6
    law = enumerate_law(world, length)
    assert math.isclose(sum(law.values()), 1.0, rel_tol=1e-12)
    xs = np.array(list(law), dtype=np.int64)
    probs = np.array(list(law.values()))
    np.testing.assert_allclose(world.log_prob(xs), np.log(probs), rtol=1e-10, atol=1e-12)
    pre = prefix_marginals(law)
    tlp = world.token_log_probs(xs)
    pred = world.predictive(xs)
    for i, x in enumerate(law):
        for t in range(length):
            np.testing.assert_allclose(tlp[i, t], math.log(pre[x[: t + 1]] / pre[x[:t]]), rtol=1e-10, atol=1e-12)
            want = np.zeros(world.vocab_size)
            for v in range(world.vocab_size):
                want[v] = pre.get(x[:t] + (v,), 0.0) / pre[x[:t]]
            np.testing.assert_allclose(pred[i, t], want, atol=1e-12)


def test_impossible_tokens_are_skipped_without_nan() -> None:
    world = tiny_world(1)
    s = world.statement(0, 0).astype(np.int64)
    obj = int(world.fact_tokens[0, 2])
    wrong = world.token_ranges["objects"].start + (obj - world.token_ranges["objects"].start + 1) % 3
    x = np.concatenate([s[: world.object_slot(0)], [wrong, obj], s[world.object_slot(0) + 1 :], [0, 1]])
    lp = world.token_log_probs(x)
    slot = world.object_slot(0)
    assert np.isneginf(lp[slot]) and lp[slot + 1] == 0.0  # the wrong object is skipped, the right one follows
    assert np.isfinite(np.delete(lp, slot)).all()
    assert np.isneginf(world.log_prob(x))
    pred = world.predictive(x)
    assert np.isfinite(pred).all() and np.allclose(pred.sum(-1), 1.0)
    q_tokens = world.question(0)
    assert np.isneginf(world.log_prob(q_tokens))  # the QA format is never in the pretraining law


def test_sampler_matches_law_chi_square() -> None:
    world = tiny_world(3, q=0.5)
    length = 5
    law = enumerate_law(world, length)
    n = 20000
    x = world.sample(n, length, seed=11)
    counts: dict[tuple[int, ...], int] = defaultdict(int)
    for row in x.tolist():
        counts[tuple(row)] += 1
    assert set(counts) <= set(law)
    keys = sorted(law, key=lambda k: -law[k])
    big = [k for k in keys if law[k] * n >= 5]
    obs = [counts.get(k, 0) for k in big] + [n - sum(counts.get(k, 0) for k in big)]
    exp = [law[k] * n for k in big] + [n * (1 - sum(law[k] for k in big))]
    if exp[-1] < 5:
        obs[-2] += obs.pop()
        exp[-2] += exp.pop()
    assert stats.chisquare(obs, exp).pvalue > 1e-3


def test_exposure_law_realised() -> None:
    bg = dp.IID.random(5, seed=1)
    world = dp.FactWorld(40, 4, 3, bg, exposure="zipf", zipf_exponent=1.2, statement_prob=0.3, seed=2)
    n, length = 1500, 64
    counts = world.fact_counts(world.sample(n, length, seed=5))
    expected = world.expected_counts(n, length)
    total = counts.sum()
    assert abs(total - expected.sum()) < 4 * math.sqrt(expected.sum())
    assert stats.chisquare(counts, expected * total / expected.sum()).pvalue > 1e-3
    assert np.all(np.diff(world.exposure) < 0)  # fact 0 is the most exposed
    np.testing.assert_allclose(world.exposure_weights, world.exposure / world.exposure.sum())


def test_expected_counts_match_enumeration() -> None:
    world = tiny_world(4, q=0.5, templates=3)
    length = 9
    law = enumerate_law(world, length)
    xs = np.array(list(law), dtype=np.int64)
    p = np.array(list(law.values()))
    st_ = world.statements(xs)
    per_row = np.zeros((len(xs), world.num_facts))
    np.add.at(per_row, (st_["row"][st_["complete"]], st_["fact"][st_["complete"]]), 1)
    np.testing.assert_allclose(world.expected_counts(1, length), p @ per_row, rtol=1e-10)


@given(st.integers(0, 2**64 - 1), st.integers(0, 50), st.integers(1, 9), st.none() | st.integers(1, 4))
def test_sharding_determinism(seed: int, start: int, n: int, coverage: int | None) -> None:
    world = dp.FactWorld(
        12, 3, 4, dp.MarkovChain.random(4, seed=2), statement_prob=0.3, seed=1, template_coverage=coverage
    )
    whole = world.sample(n + 6, 30, seed=seed, start=start)
    parts = np.concatenate([world.sample(k, 30, seed=seed, start=start + o) for o, k in ((0, 2), (2, n + 4))])
    np.testing.assert_array_equal(whole, parts)
    idx = np.arange(start, start + n + 6)[::-1]
    np.testing.assert_array_equal(world.sample_at(idx, 30, seed=seed), whole[::-1])
    assert np.isfinite(world.log_prob(whole)).all()


def test_background_text_is_the_background_sample() -> None:
    bg = dp.MarkovChain.random(6, seed=3)
    world = dp.FactWorld(10, 2, 3, bg, statement_prob=0.2, seed=0)
    x = world.sample(20, 40, seed=7)
    ref = bg.sample(20, 40, seed=7)
    for row, r in zip(x, ref, strict=True):
        b = row[row < 6]
        np.testing.assert_array_equal(b, r[: len(b)])


def test_statements_and_rendering() -> None:
    world = dp.FactWorld(8, 3, 4, dp.IID.random(4, seed=0), statement_prob=0.25, seed=9)
    v = world.vocab_size
    ranges = world.token_ranges
    assert sum(len(r) for r in ranges.values()) == v
    assert len({w.lower() for w in world.words}) == v
    for f in range(world.num_facts):
        for t in range(world.num_templates):
            s = world.statement(f, t)
            assert s.tolist() == slots(world, f, t)
            assert world.prompt(f, t).tolist() == s[: world.object_slot(t)].tolist()
            sub, rel, obj = world.text_facts()[f]
            assert world.render_text(s) == world.text_templates()[t].format(subject=sub, relation=rel, object=obj)
        np.testing.assert_array_equal(world.prompts(1)[f], world.prompt(f, 1))
        assert world.question_text(f).split()[1:3] == list(world.text_facts()[f][:2])
        assert world.answer_text(f) == world.text_facts()[f][2]
    qs, ans = world.qa_tokens([2, 5])
    np.testing.assert_array_equal(qs[1], world.question(5))
    np.testing.assert_array_equal(ans[0], world.answer(2))
    assert set(world.question(0).tolist()) - set(world.fact_tokens[0].tolist()) <= set(ranges["qa"])
    # statements planted in background text are found where they were put
    x = np.concatenate([[0, 1], world.statement(3, 2), [2], world.statement(6, 0)[:3]])
    found = world.statements(x)
    assert found["start"].tolist() == [2, 3 + len(world.statement(3, 2))]
    assert found["fact"][0] == 3 and found["complete"].tolist() == [True, False]
    assert world.fact_counts(x).tolist() == [0, 0, 0, 1, 0, 0, 0, 0]


def test_named_world() -> None:
    bg = dp.IID([0.5, 0.5])
    names = {"background": ["the", "a"], "relations": ["capital", "spouse"]}
    world = dp.FactWorld(4, 2, 2, bg, names=names, seed=0)
    assert world.words[:2] == ["the", "a"] and world.words[world.token_ranges["relations"].start] == "capital"
    with pytest.raises(ValueError, match="names"):
        dp.FactWorld(4, 2, 2, bg, names={"background": ["x", "x"]})
    with pytest.raises(ValueError, match=r"names\['relations'\] must hold 2"):
        dp.FactWorld(4, 2, 2, bg, names={"relations": ["x"]})
    with pytest.raises(ValueError, match="unknown key"):
        dp.FactWorld(4, 2, 2, bg, names={"verbs": ["x"]})


def test_pickle_and_typicality() -> None:
    world = dp.FactWorld(30, 3, 5, dp.MarkovChain.random(8, seed=1), statement_prob=0.15, seed=4)
    clone = pickle.loads(pickle.dumps(world))
    np.testing.assert_array_equal(clone.sample(5, 50, seed=2), world.sample(5, 50, seed=2))
    np.testing.assert_array_equal(clone.facts, world.facts)
    assert clone.words == world.words
    x = world.sample(300, 120, seed=3)
    rep = world.typicality(x, eps=0.1)
    assert abs(rep.z.mean()) < 0.25 and 0.7 < rep.z.std() < 1.3
    nll = -world.log_prob(world.sample(40, 3000, seed=8)).mean() / 3000
    assert abs(nll - world.entropy_rate()) < 0.03
    pure = dp.FactWorld(30, 3, 5, world.background, statement_prob=0.0, seed=4)
    assert math.isclose(pure.entropy_rate(), world.background.entropy_rate(), rel_tol=1e-12)
    assert math.isclose(world.entropy_rate(base=2), world.entropy_rate() / math.log(2))


def test_bad_inputs() -> None:
    bg = dp.IID([0.5, 0.5])
    with pytest.raises(ValueError, match="num_facts"):
        dp.FactWorld(0, 1, 1, bg)
    with pytest.raises(TypeError, match="num_relations"):
        dp.FactWorld(3, 1.5, 1, bg)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="background"):
        dp.FactWorld(3, 1, 1, "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_subjects"):
        dp.FactWorld(7, 2, 1, bg, num_subjects=3)
    with pytest.raises(ValueError, match="exposure"):
        dp.FactWorld(3, 1, 1, bg, exposure="pareto")
    with pytest.raises(ValueError, match="one count per fact"):
        dp.FactWorld(3, 1, 1, bg, exposure=[1.0, 2.0])
    with pytest.raises(ValueError, match="exposure"):
        dp.FactWorld(3, 1, 1, bg, exposure=[1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match="not all be 0"):
        dp.FactWorld(3, 1, 1, bg, exposure=[0, 0, 0])
    with pytest.raises(TypeError, match="exposure"):
        dp.FactWorld(3, 1, 1, bg, exposure=["a", "b", "c"])
    with pytest.raises(ValueError, match="statement_prob"):
        dp.FactWorld(3, 1, 1, bg, statement_prob=1.5)
    with pytest.raises(ValueError, match="zipf_exponent"):
        dp.FactWorld(3, 1, 1, bg, zipf_exponent=-1.0)
    world = dp.FactWorld(3, 1, 2, bg)
    with pytest.raises(ValueError, match="tokens must lie"):
        world.log_prob([0, world.vocab_size])
    with pytest.raises(TypeError, match="tokens"):
        world.log_prob([0.5, 1.0])
    with pytest.raises(ValueError, match="f must be"):
        world.statement(3, 0)
    with pytest.raises(ValueError, match="t must be"):
        world.prompt(0, -1)
    with pytest.raises(ValueError, match="facts must be fact ids"):
        world.qa_tokens([5])
    with pytest.raises(ValueError, match="length"):
        world.sample(2, -1)
    with pytest.raises(TypeError, match="seed"):
        world.sample(2, 5, seed=1.0)  # type: ignore[arg-type]
    huge = dp.FactWorld(3, 1, 1, bg, exposure=[1e308, 1e308, 0.0])  # no overflow to NaN
    np.testing.assert_array_equal(huge.exposure_weights, [0.5, 0.5, 0.0])
    assert world.sample(0, 5).shape == (0, 5) and world.log_prob(np.zeros((0, 4), np.int64)).shape == (0,)


@pytest.mark.parametrize("kind", ["zipf", "counts", "names"])
def test_save_load_round_trip(tmp_path, kind):
    """``FactWorld.save``/``load`` rebuild the world bit-identical: same fact
    table, words, samples for a seed and exact log-probabilities; the file is
    a plain ``.npz`` (no pickles)."""
    bg = dp.MarkovChain.random(3, seed=2, concentration=0.7)
    kw: dict = {"exposure": "zipf", "zipf_exponent": 1.3}
    if kind == "counts":
        kw = {"exposure": np.array([3.0, 0.0, 1.0, 2.5, 0.5])}
    if kind == "names":
        kw["names"] = {"relations": ["likes", "owns"], "background": ["a", "b", "c"]}
    w = dp.FactWorld(5, 2, 3, bg, statement_prob=0.35, seed=7, **kw)
    path = tmp_path / "world.npz"
    w.save(path)
    with np.load(path, allow_pickle=False) as archive:
        assert "dataprobes_process" in archive.files
    back = dp.FactWorld.load(path)
    assert isinstance(back, dp.FactWorld)
    np.testing.assert_array_equal(back.facts, w.facts)
    np.testing.assert_array_equal(back.exposure, w.exposure)
    assert back.words == w.words and back.text_templates() == w.text_templates()
    x = w.sample(6, 20, seed=11)
    np.testing.assert_array_equal(back.sample(6, 20, seed=11), x)
    np.testing.assert_array_equal(back.log_prob(x), w.log_prob(x))
    with pytest.raises(TypeError, match="not a MarkovChain"):
        dp.MarkovChain.load(path)
