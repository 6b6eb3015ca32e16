"""Attribution quality metrics, and compressed gradients' fidelity on probes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

torch = pytest.importorskip("torch")

import dataprobes as dp  # noqa: E402
from dataprobes.attribution import GradientCapture, compress_flat, flatten_grads, per_example_grads_func  # noqa: E402
from dataprobes.attribution.quality import cosine_scores, per_query_spearman, precision_at_k  # noqa: E402
from dataprobes.lm import TinyGPT, train  # noqa: E402


@given(st.integers(0, 2**32 - 1), st.integers(2, 30), st.booleans())
def test_spearman_matches_scipy(seed: int, n: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(3, n))
    b = a + rng.normal(size=(3, n))
    if ties:
        a, b = np.round(a), np.round(b)
    got = per_query_spearman(a, b)
    for i in range(3):
        if np.ptp(a[i]) == 0 or np.ptp(b[i]) == 0:
            assert got[i] == 0.0  # constant row: no ranking (scipy: nan with a warning)
            continue
        want = stats.spearmanr(a[i], b[i]).statistic
        assert got[i] == pytest.approx(want, abs=1e-12)


def test_precision_at_k_brute_force() -> None:
    rng = np.random.default_rng(0)
    s = rng.normal(size=(4, 20))
    ql, tl = rng.integers(0, 2, 4), rng.integers(0, 2, 20)
    got = precision_at_k(s, ql, tl, 5)
    for i in range(4):
        top = np.argsort(-s[i])[:5]
        assert got[i] == pytest.approx((tl[top] == ql[i]).mean())
    with pytest.raises(ValueError, match="k must be <= 20"):
        precision_at_k(s, ql, tl, 21)


def _loss(model, x):  # per-example next-token loss
    logits = model(x[:, :-1])
    return torch.nn.functional.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none").mean(1)


def test_compressed_gradients_are_faithful_and_planted_truth_is_retrieved() -> None:
    torch.manual_seed(0)
    v = 16
    mix = dp.Mixture([dp.MarkovChain.random(v, concentration=0.2, seed=s) for s in range(2)])
    model = TinyGPT(vocab_size=v, max_len=40, d_model=16, n_layers=1, n_heads=2)
    train(model, mix, steps=40, batch_size=16, seq_len=24, progress=False, eval_every=40)
    x, labels = mix.sample(96, 24, seed=1, return_labels=True)
    xt = torch.from_numpy(x.astype(np.int64))
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    grads = per_example_grads_func(model, _loss, xt, params=[f"{n}.weight" for n in names], untie=True)
    flat = flatten_grads(grads)
    q, t = flat[:16], flat[16:]
    exact = cosine_scores(q, t)
    rho = {
        k: per_query_spearman(exact, cosine_scores(compress_flat(q, k, seed=3), compress_flat(t, k, seed=3))).mean()
        for k in (32, 2048)
    }
    assert rho[2048] > 0.9 and rho[2048] > rho[32]
    with GradientCapture(model, modules=names, mode="factored", k_in=8, k_out=8, seed=1) as cap:
        g = cap.backward(_loss(model, xt))
    fact = per_query_spearman(exact, cosine_scores(g[:16], g[16:])).mean()
    assert fact > 0.5
    p10 = precision_at_k(exact, labels[:16], labels[16:], 10).mean()
    chance = max((labels[16:] == c).mean() for c in (0, 1))
    assert p10 > chance + 0.2
