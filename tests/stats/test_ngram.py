"""N-gram counts and entropy estimators: exact against independent references,
consistent on probes whose entropy rate is known, and strict about bad input."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import dataprobes as dp

INT_DTYPES = [np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64]

# ------------------------------------------------------------ references
# Written from the definitions with collections.Counter / plain numpy, sharing
# nothing with the package.


def counter_ngrams(x: np.ndarray, n: int) -> Counter:
    """Counts of the n-grams of each row of a 2-D array (never across rows)."""
    c: Counter = Counter()
    for row in x.tolist():
        for t in range(len(row) - n + 1):
            c[tuple(row[t : t + n])] += 1
    return c


def reference_entropy(x: np.ndarray, k: int) -> tuple[float, float, float, int, int]:
    """(plug-in, Miller–Madow term, surprisal variance, N, contexts) in nats."""
    counts = counter_ngrams(x, k + 1)
    grams = np.array(list(counts.keys()), dtype=np.int64).reshape(len(counts), k + 1)
    c = np.array(list(counts.values()), dtype=np.float64)
    ctx_keys = [tuple(g[:k]) for g in grams.tolist()]
    n_ctx: Counter = Counter()
    m_ctx: Counter = Counter()
    for key, ci in zip(ctx_keys, c):
        n_ctx[key] += ci
        m_ctx[key] += 1
    ns = np.array([n_ctx[key] for key in ctx_keys])
    n_total = c.sum()
    surprisal = -np.log(c / ns)
    h = float(np.sum(c / n_total * surprisal))
    var = float(np.sum(c / n_total * (surprisal - h) ** 2))
    mm = sum(m - 1 for m in m_ctx.values()) / (2 * n_total)
    return h, mm, var, int(n_total), len(n_ctx)


@st.composite
def token_arrays(draw: st.DrawFn, max_vocab: int = 6, max_rows: int = 5, max_len: int = 14) -> tuple[np.ndarray, int]:
    vocab = draw(st.integers(1, max_vocab))
    dtype = draw(st.sampled_from(INT_DTYPES))
    shape = (draw(st.integers(0, max_rows)), draw(st.integers(0, max_len)))
    x = draw(hnp.arrays(dtype, shape, elements=st.integers(0, vocab - 1)))
    return x, vocab


# ------------------------------------------------------------ n-gram counts


@given(token_arrays(), st.integers(1, 4), st.booleans(), st.booleans())
def test_ngram_counts_match_counter(case: tuple[np.ndarray, int], n: int, sparse: bool, give_vocab: bool) -> None:
    x, vocab = case
    if x.size == 0:
        give_vocab = True  # nothing to infer it from
    v = vocab if give_vocab else int(x.max()) + 1
    res = dp.ngram_counts(x, n, vocab if give_vocab else None, max_dense_entries=0 if sparse else 2**26)
    want = counter_ngrams(x, n)
    assert res.vocab_size == v
    assert res.n == n
    assert res.is_dense == (not sparse)
    assert res.total == x.shape[0] * max(x.shape[1] - n + 1, 0) == sum(want.values())
    assert res.to_dict() == dict(want)
    assert res.num_distinct == len(want)
    codes, counts = res.sparse()
    assert codes.dtype == np.uint64 and counts.dtype == np.uint64
    assert np.all(np.diff(codes.astype(np.float64)) > 0)  # sorted, unique
    want_codes = sorted(sum(t * v ** (n - 1 - j) for j, t in enumerate(g)) for g in want)
    assert codes.tolist() == want_codes
    dense = res.to_dense()
    assert dense.shape == (v,) * n and dense.dtype == np.uint64
    assert int(dense.sum()) == res.total
    for g, cnt in want.items():
        assert dense[g] == cnt
        assert res[g] == cnt
    if sparse:
        assert res.dense is None and res.codes is not None and res.counts is not None
    else:
        assert res.dense is not None and res.codes is None


def test_ngrams_never_cross_rows() -> None:
    x = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    for max_dense in (0, 2**26):
        res = dp.ngram_counts(x, 2, max_dense_entries=max_dense)
        assert res.to_dict() == {(0, 1): 1, (2, 3): 1}
        assert res[(1, 2)] == 0
        assert dp.ngram_counts(x, 3, max_dense_entries=max_dense).total == 0
    # The same tokens as one row do have the crossing bigram.
    assert dp.ngram_counts(x.reshape(-1), 2).to_dict() == {(0, 1): 1, (1, 2): 1, (2, 3): 1}


def test_1d_is_one_sequence_and_dtypes_agree() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 7, size=5000)
    ref = dp.ngram_counts(x.astype(np.uint8)[None, :], 3).to_dict()
    for dtype in INT_DTYPES:
        assert dp.ngram_counts(x.astype(dtype), 3).to_dict() == ref
    # Non-contiguous input is accepted (copied).
    y = np.repeat(x[None, :], 2, axis=0)[:, ::2]
    assert dp.ngram_counts(y, 2).to_dict() == dict(counter_ngrams(y, 2))


def test_large_parallel_counts_match_numpy() -> None:
    """Big enough to take the parallel paths (private tables, atomics, sort)."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 50, size=(7, 40_001), dtype=np.int32)
    x[:, ::3] = 0  # a frequent token: narrow per-thread counters wrap
    for n, max_dense in [(1, 2**26), (2, 2**26), (3, 2**26), (4, 2**26), (2, 0), (3, 0), (5, 0)]:
        codes = np.zeros((7, 40_001 - n + 1), dtype=np.int64)
        for j in range(n):
            codes = codes * 50 + x[:, j : 40_001 - n + 1 + j]
        want_codes, want_counts = np.unique(codes, return_counts=True)
        res = dp.ngram_counts(x, n, vocab_size=50, max_dense_entries=max_dense)
        got_codes, got_counts = res.sparse()
        np.testing.assert_array_equal(got_codes, want_codes)
        np.testing.assert_array_equal(got_counts, want_counts)


def test_counts_accessors() -> None:
    x = np.array([[3, 1, 3, 1, 2]])
    res = dp.ngram_counts(x, 2, max_dense_entries=0)
    codes, counts = res.sparse()
    np.testing.assert_array_equal(res.decode(codes), [[1, 2], [1, 3], [3, 1]])
    assert counts.tolist() == [1, 1, 2]
    assert res.decode(codes).dtype == np.uint8
    assert "sparse" in repr(res) and "distinct=3" in repr(res)
    with pytest.raises(ValueError, match="ngram must have n = 2 tokens"):
        res[(1,)]
    with pytest.raises(ValueError, match="ngram token must be <= 3"):
        res[(1, 4)]
    big = dp.ngram_counts(np.array([[0, 1, 2**20]], dtype=np.int64), 2)
    assert not big.is_dense  # (2^20 + 1)^2 entries
    assert big.to_dict() == {(0, 1): 1, (1, 2**20): 1}
    assert big.decode(big.sparse()[0]).dtype == np.uint32
    with pytest.raises(ValueError, match="too large"):
        big.to_dense()


# ------------------------------------------------------------ entropy = reference


@given(token_arrays(max_vocab=5, max_rows=4, max_len=30), st.integers(0, 3), st.sampled_from([0, 30, 2**26]))
def test_conditional_entropy_matches_reference(case: tuple[np.ndarray, int], k: int, max_dense: int) -> None:
    """max_dense 0: sparse counts; 30: sparse at high orders, dense below (the
    profile switches form on the way down); 2**26: dense."""
    x, vocab = case
    if x.shape[0] == 0 or x.shape[1] < k + 1:
        with pytest.raises(ValueError, match=f"order = {k} is too large"):
            dp.conditional_entropy(x, k, vocab_size=vocab)
        return
    h, mm, var, n_total, contexts = reference_entropy(x, k)
    plug = dp.conditional_entropy(x, k, vocab_size=vocab, correction="none", max_dense_entries=max_dense)
    corr = dp.conditional_entropy(x, k, vocab_size=vocab, max_dense_entries=max_dense)
    assert plug.value == pytest.approx(h, abs=1e-12)
    assert plug.plugin == plug.value and plug.bias_correction == 0.0
    assert corr.value == pytest.approx(h + mm, abs=1e-12)
    assert corr.plugin == pytest.approx(h, abs=1e-12)
    assert corr.bias_correction == pytest.approx(mm, abs=1e-15)
    # compare variances: a square root near 0 turns a 1e-17 rounding of the
    # variance into ~3e-9 of stderr, which says nothing about correctness
    assert corr.stderr**2 == pytest.approx(var / n_total, abs=1e-12)
    assert (corr.num_samples, corr.num_contexts) == (n_total, contexts)
    assert corr.num_distinct == len(counter_ngrams(x, k + 1))
    assert corr.order == k and corr.unit == "nats" and corr.correction == "miller-madow"
    bits = dp.conditional_entropy(x, k, vocab_size=vocab, base=2, max_dense_entries=max_dense)
    assert bits.value == pytest.approx(corr.value / math.log(2), abs=1e-12)
    assert bits.stderr == pytest.approx(corr.stderr / math.log(2), abs=1e-12)
    assert bits.unit == "bits"
    profile = dp.entropy_profile(x, k, vocab_size=vocab, max_dense_entries=max_dense)
    assert profile.shape == (k + 1,)
    for j in range(k + 1):
        assert profile[j] == pytest.approx(
            dp.conditional_entropy(x, j, vocab_size=vocab, max_dense_entries=max_dense).value, abs=1e-12
        )


def test_hand_computed_entropy() -> None:
    # Order 1 on [0 1 0 1 1]: context 0 -> {1: 2}, context 1 -> {0: 1, 1: 1}.
    x = np.array([0, 1, 0, 1, 1])
    est = dp.conditional_entropy(x, 1, correction="none")
    assert est.value == pytest.approx(0.5 * math.log(2))  # (2/4)·0 + (2/4)·ln 2
    assert (est.num_samples, est.num_contexts, est.num_distinct) == (4, 2, 3)
    mm = dp.conditional_entropy(x, 1)
    assert mm.value == pytest.approx(0.5 * math.log(2) + (0 + 1) / (2 * 4))
    assert float(mm) == mm.value
    assert "order 1" in str(mm) and "nats" in str(mm)


def test_profile_on_large_arrays_equals_direct_estimates() -> None:
    chain = dp.MarkovChain.random(8, order=2, entropy_rate=1.2, seed=4)
    x = chain.sample(30, 3000, seed=2)
    for max_dense in (0, 8**3, 2**26):  # sparse; sparse for orders 3-4 only; dense
        profile = dp.entropy_profile(x, 4, max_dense_entries=max_dense)
        plug = dp.entropy_profile(x, 4, correction="none", max_dense_entries=max_dense)
        for k in range(5):
            assert profile[k] == pytest.approx(dp.conditional_entropy(x, k).value, rel=1e-12)
            assert plug[k] == pytest.approx(dp.conditional_entropy(x, k, correction="none").value, rel=1e-12)
        assert np.all(profile >= plug)
    # The profile of an order-2 source drops until order 2, then is flat until
    # the plug-in bias sets in (order 4: 8^4 contexts × 8 tokens vs N = 9e4).
    h = chain.entropy_rate()
    assert profile[1] > h + 0.05
    np.testing.assert_allclose(profile[2:4], h, atol=0.01)
    assert plug[4] < h - 0.05


_DETERMINISM_SCRIPT = """
import numpy as np, dataprobes as dp
x = dp.MarkovChain.random(12, entropy_rate=1.5, seed=0).sample(8, 50_000, seed=1)
for md in (0, 2**26):
    e = dp.conditional_entropy(x, 2, max_dense_entries=md)
    print(repr(e.value), repr(e.stderr), list(dp.entropy_profile(x, 3, max_dense_entries=md)))
    print(dp.ngram_counts(x, 3, max_dense_entries=md).sparse()[1].sum())
"""


def test_bit_identical_across_thread_counts() -> None:
    outs = []
    for threads in ("1", "3"):
        env = dict(os.environ, RAYON_NUM_THREADS=threads)
        out = subprocess.run(
            [sys.executable, "-c", _DETERMINISM_SCRIPT], env=env, capture_output=True, text=True, check=True
        )
        outs.append(out.stdout)
    assert outs[0] == outs[1]


# ------------------------------------------------------------ probes with known truth


def test_markov_estimate_converges_to_entropy_rate() -> None:
    chain = dp.MarkovChain.random(16, order=1, entropy_rate=1.5, seed=7)
    h = chain.entropy_rate()
    mean_err = {}
    for size in (10**4, 10**5, 10**6, 10**7):
        errs = []
        for seed in range(3 if size == 10**7 else 6):
            x = chain.sample(10, size // 10, seed=seed)
            est = dp.conditional_entropy(x, 1)
            assert est.num_samples == size - 10
            errs.append(abs(est.value - h))
            assert abs(est.value - h) < 5 * est.stderr + 16 * 15 / size  # noise + residual bias
        mean_err[size] = float(np.mean(errs))
    assert mean_err[10**7] < 0.01  # in fact ~3e-4
    assert mean_err[10**4] > mean_err[10**5] > mean_err[10**6] > mean_err[10**7]


def test_order_two_chain_needs_order_two() -> None:
    chain = dp.MarkovChain.random(5, order=2, entropy_rate=1.0, seed=3)
    x = chain.sample(20, 100_000, seed=5)
    est2 = dp.conditional_entropy(x, 2)
    assert abs(est2.value - chain.entropy_rate()) < 5 * est2.stderr
    # Order 1 sees less context: a strictly larger conditional entropy.
    assert dp.conditional_entropy(x, 1).value > chain.entropy_rate() + 0.05


def test_miller_madow_reduces_small_sample_bias() -> None:
    chain = dp.MarkovChain.random(16, order=1, entropy_rate=2.0, seed=1)
    h = chain.entropy_rate()
    plug, mm = [], []
    for seed in range(40):
        x = chain.sample(2, 1000, seed=seed)  # N ≈ 2000 for 16 × 16 transitions
        plug.append(dp.conditional_entropy(x, 1, correction="none").value - h)
        mm.append(dp.conditional_entropy(x, 1, correction="miller-madow").value - h)
    bias_plug, bias_mm = float(np.mean(plug)), float(np.mean(mm))
    assert bias_plug < -0.02  # plug-in: clearly low, ≈ -Σ_s (m_s - 1)/(2N)
    assert abs(bias_mm) < 0.5 * abs(bias_plug)


def test_iid_order_zero_matches_exact_entropy_with_calibrated_stderr() -> None:
    q = dp.IID.random(20, entropy_rate=2.0, seed=3)
    h = q.entropy_rate()
    big = dp.conditional_entropy(q.sample(10, 200_000, seed=0), 0)
    assert abs(big.value - h) < 5 * big.stderr < 5e-3
    z = []
    for seed in range(60):
        est = dp.conditional_entropy(q.sample(1, 5000, seed=seed), 0)
        z.append((est.value - h) / est.stderr)
    assert abs(np.mean(z)) < 0.6
    assert 0.7 < np.std(z) < 1.4  # the stderr is the actual sampling spread


# ------------------------------------------------------------ bad inputs


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (
            lambda: dp.ngram_counts(np.array([[0, 1], [2, -3]]), 2),
            ValueError,
            r"value -3 at position \[1, 1\] is negative",
        ),
        (
            lambda: dp.ngram_counts(np.array([[0, 1, 7]]), 1, vocab_size=5),
            ValueError,
            r"value 7 at position \[0, 2\] is outside the vocabulary \[0, 5\)",
        ),
        (
            lambda: dp.conditional_entropy(np.array([0, 9]), 0, vocab_size=3),
            ValueError,
            r"value 9 at position \[0, 1\]",
        ),
        (lambda: dp.ngram_counts(np.array([[0.0, 1.0]]), 1), TypeError, "tokens must be an integer array"),
        (lambda: dp.ngram_counts(np.array([[True]]), 1), TypeError, "tokens must be an integer array"),
        (lambda: dp.ngram_counts(np.zeros((1, 2, 3), dtype=int), 1), ValueError, "tokens must be 1-D"),
        (lambda: dp.ngram_counts(np.array([[0, 1]]), 0), ValueError, "n must be >= 1"),
        (lambda: dp.ngram_counts(np.array([[0, 1]]), 1.5), TypeError, "n must be an integer"),
        (lambda: dp.ngram_counts(np.zeros((3, 0), dtype=int), 1), ValueError, "pass vocab_size"),
        (lambda: dp.ngram_counts(np.array([[0, 1]]), 1, vocab_size=0), ValueError, "vocab_size must be >= 1"),
        (
            lambda: dp.ngram_counts(np.array([[0, 1]]), 1, max_dense_entries=-1),
            ValueError,
            "max_dense_entries must be >= 0",
        ),
        (
            lambda: dp.ngram_counts(np.array([[0, 1]]), 3, vocab_size=2**30),
            ValueError,
            r"n: vocab_size\^3 = .* exceeds 2\^64",
        ),
        (lambda: dp.conditional_entropy(np.array([[0, 1]]), 2, vocab_size=2**30), ValueError, "order = 2 is too large"),
        (
            lambda: dp.conditional_entropy(np.zeros((4, 10), dtype=int), 2, vocab_size=2**30),
            ValueError,
            r"order: vocab_size\^3 = .* exceeds 2\^64",
        ),
        (
            lambda: dp.conditional_entropy(np.zeros((4, 3), dtype=int), 3),
            ValueError,
            r"order = 3 is too large for tokens of shape \(4, 3\)",
        ),
        (lambda: dp.conditional_entropy(np.zeros(3, dtype=int), 3), ValueError, r"shape \(3,\)"),
        (lambda: dp.conditional_entropy(np.zeros((0, 5), dtype=int), 0), ValueError, "order = 0 is too large"),
        (lambda: dp.conditional_entropy(np.zeros((2, 5), dtype=int), -1), ValueError, "order must be >= 0"),
        (lambda: dp.conditional_entropy(np.zeros((2, 5), dtype=int), 1.0), TypeError, "order must be an integer"),
        (
            lambda: dp.conditional_entropy(np.zeros((2, 5), dtype=int), 1, correction="jackknife"),
            ValueError,
            "correction must be one of",
        ),
        (
            lambda: dp.conditional_entropy(np.zeros((2, 5), dtype=int), 1, correction=None),
            TypeError,
            "correction must be one of",
        ),
        (lambda: dp.conditional_entropy(np.zeros((2, 5), dtype=int), 1, base=1), ValueError, "base must not be 1"),
        (lambda: dp.conditional_entropy(np.zeros((2, 5), dtype=int), 1, base=-2), ValueError, "base must be > 0"),
        (lambda: dp.entropy_profile(np.zeros((2, 5), dtype=int), 5), ValueError, "max_order = 5 is too large"),
        (lambda: dp.entropy_profile(np.array([[1, -1, 0]]), 1), ValueError, r"value -1 at position \[0, 1\]"),
    ],
)
def test_bad_inputs(call, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        call()


def test_degenerate_inputs() -> None:
    # One symbol: zero entropy, zero spread.
    est = dp.conditional_entropy(np.zeros((3, 50), dtype=np.uint8), 2)
    assert (est.value, est.stderr, est.num_contexts) == (0.0, 0.0, 1)
    # Empty rows with an explicit vocabulary: all-zero counts.
    res = dp.ngram_counts(np.zeros((4, 0), dtype=np.int64), 2, vocab_size=3)
    assert res.total == 0 and res.to_dict() == {} and res.to_dense().shape == (3, 3)
    # vocab_size larger than the tokens need: same estimate, bigger table.
    x = np.array([[0, 1, 1, 0, 1]])
    assert dp.conditional_entropy(x, 1, vocab_size=1000).value == dp.conditional_entropy(x, 1).value
    assert dp.conditional_entropy(x, 1, vocab_size=1000).vocab_size == 1000
