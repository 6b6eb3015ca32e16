"""No NaN leaks and no numpy warnings from library code (issue 10).

Every case that used to produce NaN (or a numpy ``RuntimeWarning``) is either
an error naming the culprit or a documented value. Warnings are errors in this
module, so a library call that warns fails its test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import dataprobes as dp

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def _mixture_reference(probs: list[np.ndarray], weights: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior after each prefix and the predictive law of a mixture of
    i.i.d. components, in plain probabilities, with the documented rule: a
    token impossible under every component still in play leaves the
    posterior unchanged. Returns ([T+1, C] posteriors, [T, V] predictive)."""
    post = np.array(weights, dtype=np.float64)
    posts, pred = [post], []
    table = np.stack(probs)  # [C, V]
    for tok in x:
        pred.append(post @ table)
        upd = post * table[:, tok]
        if upd.sum() > 0:
            post = upd / upd.sum()
        posts.append(post)
    return np.array(posts), np.array(pred).reshape(len(x), table.shape[1])


def test_mixture_after_a_prefix_impossible_under_every_component() -> None:
    a, b = dp.IID([1.0, 0.0, 0.0]), dp.IID([0.0, 1.0, 0.0])
    m = dp.Mixture([a, b], [0.25, 0.75])
    x = np.array([2, 0, 1, 0])
    # token 2 is impossible under both: skipped; 0 rules b out; 1 is then
    # impossible under a (the only component in play): skipped again
    np.testing.assert_array_equal(m.posterior(x), [1.0, 0.0])
    np.testing.assert_allclose(
        m.predictive(x), [[0.25, 0.75, 0.0], [0.25, 0.75, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], rtol=1e-15
    )
    lp = m.token_log_probs(x)
    np.testing.assert_allclose(lp, [-np.inf, math.log(0.25), -np.inf, 0.0], rtol=1e-15)
    assert m.log_prob(x) == -np.inf
    # only impossible tokens: the posterior is the prior
    np.testing.assert_allclose(m.posterior(np.array([2, 2])), [0.25, 0.75], rtol=1e-15)
    rep = m.typicality(np.array([[2, 0, 1, 0], [0, 0, 0, 0]]))
    assert rep.z[0] == np.inf and rep.above[0] and not np.isnan(rep.z).any()


@given(
    seed=st.integers(0, 2**32 - 1),
    num=st.integers(1, 4),
    vocab=st.integers(2, 5),
    length=st.integers(0, 12),
)
def test_mixture_scores_are_never_nan(seed: int, num: int, vocab: int, length: int) -> None:
    rng = np.random.default_rng(seed)
    probs = []
    for _ in range(num):  # sparse laws: many sequences impossible under some or all components
        p = rng.dirichlet(np.ones(vocab)) * (rng.random(vocab) < 0.5)
        p[rng.integers(vocab)] += 0.1
        probs.append(p / p.sum())
    w = rng.dirichlet(np.ones(num))
    m = dp.Mixture([dp.IID(p) for p in probs], w)
    x = rng.integers(0, vocab, size=(3, length))
    post, pred, lp = m.posterior(x), m.predictive(x), m.token_log_probs(x)
    for i in range(3):
        want_post, want_pred = _mixture_reference(probs, w, x[i])
        np.testing.assert_allclose(post[i], want_post[-1], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(pred[i], want_pred, rtol=1e-9, atol=1e-12)
        with np.errstate(divide="ignore"):
            want_lp = np.log(want_pred[np.arange(length), x[i]])
        np.testing.assert_allclose(lp[i], want_lp, rtol=1e-9, atol=1e-12)
    assert not (np.isnan(post).any() or np.isnan(pred).any() or np.isnan(lp).any())
    np.testing.assert_allclose(pred.sum(-1), 1.0, rtol=1e-12)
    # the conditionals add up to the joint (both -inf for impossible rows)
    np.testing.assert_allclose(lp.sum(1), m.log_prob(x), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("chains", "match"),
    [
        (np.full((1, 2, 2), np.nan), r"chains must be finite and non-negative: chains\[0, 0, 0\] is nan"),
        (np.array([[[0.5, 0.5], [1.5, -0.5]]]), r"chains\[0, 1, 1\] is -0.5"),
        (np.array([[[0.5, 0.5], [np.inf, 0.0]]]), r"chains\[0, 1, 0\] is inf"),
        (np.ones((1, 2, 2)), r"chains rows must sum to 1: chains\[0, 0\] sums to 2"),
        (np.full((2, 2, 2), 0.5), r"chains must have shape \(1, 2, 2\)"),
        (np.full((1, 2), 0.5), "chains must be 3-D"),
    ],
)
def test_chain_token_log_probs_refuses_invalid_chains(chains: np.ndarray, match: str) -> None:
    ic = dp.InContextMarkov(2, 1)
    with pytest.raises(ValueError, match=match):
        ic.chain_token_log_probs(np.array([[0, 1, 1]]), chains)


def test_chain_token_log_probs_wrong_kind_and_valid_chains() -> None:
    ic = dp.InContextMarkov(2, 1)
    with pytest.raises(TypeError, match="chains must be a numeric array"):
        ic.chain_token_log_probs(np.array([[0, 1, 1]]), np.array([[["a", "b"], ["c", "d"]]]))
    chains = np.array([[[0.5, 0.5], [0.0, 1.0]]])
    np.testing.assert_allclose(
        ic.chain_token_log_probs(np.array([[0, 1, 1]]), chains), [[-math.log(2), math.log(0.5), 0.0]]
    )
    with pytest.raises(ValueError, match="chains rows must sum to 1"):
        ic.chain_entropy_rates(np.ones((1, 2, 2)))


@pytest.mark.parametrize(
    "process",
    [
        dp.MarkovChain([[1.0, 0.0], [0.0, 1.0]], initial=[0.5, 0.5]),
        dp.HMM([[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]], [0.5, 0.5]),
        dp.Mixture([dp.IID([1.0, 0.0]), dp.MarkovChain([[1.0, 0.0], [0.0, 1.0]], initial=[0.5, 0.5])]),
    ],
)
def test_typicality_of_an_impossible_path(process: dp.Process) -> None:
    x = np.array([[0, 1, 1, 1], [0, 0, 0, 0]])  # row 0 is impossible under each process
    assert process.log_prob(x)[0] == -np.inf
    rep = process.typicality(x)
    assert rep.nll_per_token[0] == np.inf and rep.z[0] == np.inf
    assert rep.above[0] and not rep.inside[0]
    s = rep.summary()
    assert s["mean_nll_per_token"] == np.inf and s["std_nll_per_token"] == np.inf
    assert "nan" not in str(rep).split("z mean")[0]
    # a report of the possible row alone is finite
    assert math.isfinite(process.typicality(x[1:]).summary()["std_nll_per_token"])


def test_excess_loss_of_a_model_that_outputs_nan() -> None:
    torch = pytest.importorskip("torch")
    from dataprobes.lm import excess_loss, generate, generation_typicality

    chain = dp.MarkovChain.random(4, seed=0)
    x = chain.sample(3, 5, seed=0)

    def nan_model(idx: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(*idx.shape, 4)
        out[0, -1, 2] = math.nan
        return out

    def inf_model(idx: torch.Tensor) -> torch.Tensor:
        return torch.full((*idx.shape, 4), math.inf)

    def masked_model(idx: torch.Tensor) -> torch.Tensor:
        return torch.full((*idx.shape, 4), -math.inf)

    with pytest.raises(ValueError, match="model output: the logits contain NaN at 1 of"):
        excess_loss(nan_model, chain, x)
    with pytest.raises(ValueError, match=r"model output: the logits contain \+inf"):
        excess_loss(inf_model, chain, x)
    with pytest.raises(ValueError, match="model output: .* -inf for every token"):
        excess_loss(masked_model, chain, x)
    with pytest.raises(ValueError, match="model output"):
        generate(nan_model, x[:, :1], 3)
    with pytest.raises(ValueError, match="model output"):
        generation_typicality(nan_model, chain, num_sequences=2, length=3, temperatures=[1.0])

    def partly_masked(idx: torch.Tensor) -> torch.Tensor:  # -inf on some tokens is a valid model
        out = torch.zeros(*idx.shape, 4)
        out[..., 3] = -math.inf
        return out

    ex = excess_loss(partly_masked, chain, x)
    assert not np.isnan(ex.kl_per_position).any()
