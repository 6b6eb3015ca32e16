"""``_core.state_indices``: the base-V state of an order-k chain before each
position, computed once in Rust (used by ``InContextMarkov`` and the language
model evaluation), against a numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataprobes import _core


def reference(tokens: np.ndarray, vocab: int, order: int) -> np.ndarray:
    """``s_t = Σ_j x_{t-k+j} V^(k-1-j)`` for t = k .. T-1, by Horner's rule in int64."""
    n, length = tokens.shape
    t = tokens.astype(np.int64)
    state = np.zeros((n, max(length - order, 0)), dtype=np.int64)
    if length > order:
        for j in range(order):
            state = state * vocab + t[:, j : length - order + j]
    return state


@st.composite
def token_arrays(draw: st.DrawFn) -> tuple[np.ndarray, int, int]:
    vocab = draw(st.integers(1, 300))
    order = draw(st.integers(0, 4))
    n = draw(st.integers(0, 5))
    length = draw(st.integers(0, 12))
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.int32, np.int64, np.uint64]))
    hi = min(vocab, int(np.iinfo(dtype).max) + 1)
    x = draw(st.lists(st.integers(0, hi - 1), min_size=n * length, max_size=n * length))
    return np.array(x, dtype=dtype).reshape(n, length), vocab, order


@given(token_arrays())
def test_matches_numpy_reference(case: tuple[np.ndarray, int, int]) -> None:
    tokens, vocab, order = case
    got = _core.state_indices(tokens, vocab, order)
    want = reference(tokens, vocab, order)
    assert got.dtype == np.int64
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_large_states_are_exact() -> None:
    rng = np.random.default_rng(0)
    vocab, order = 2**15, 4  # states up to 2^60
    x = rng.integers(0, vocab, size=(3, 50), dtype=np.int64)
    np.testing.assert_array_equal(_core.state_indices(x, vocab, order), reference(x, vocab, order))


@pytest.mark.parametrize(
    ("tokens", "vocab", "order", "exc", "match"),
    [
        (np.array([[0, 1, 3]]), 3, 1, ValueError, r"value 3 at position \[0, 2\]"),
        (np.array([[0, -1, 2]]), 3, 1, ValueError, r"value -1 at position \[0, 1\]"),
        (np.array([[0, 5]]), 3, 4, ValueError, "outside the vocabulary"),
        (np.array([[0, 1]]), 2**20, 4, ValueError, "exceeds 2\\^63 - 1"),
        (np.array([[0, 1]]), 0, 1, ValueError, "vocab_size must be at least 1"),
        (np.array([[0.0, 1.0]]), 3, 1, TypeError, "integers"),
        (np.zeros((2, 4), dtype=np.int64)[:, ::2], 3, 1, TypeError, "C-contiguous"),
    ],
)
def test_bad_inputs(tokens: np.ndarray, vocab: int, order: int, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        _core.state_indices(tokens, vocab, order)


def test_num_states_on_every_process() -> None:
    import dataprobes as dp

    assert dp.MarkovChain.random(5, 2, seed=0).num_states == 25
    assert dp.IID.random(7, seed=0).num_states == 1
    assert dp.InContextMarkov(3, 2).num_states == 9
    assert dp.HMM.random(4, 6, seed=0).num_states == 4
    for p in (dp.MarkovChain.random(5, 2, seed=0), dp.InContextMarkov(3, 2), dp.HMM.random(4, 6, seed=0)):
        assert p._core.num_states == p.num_states
