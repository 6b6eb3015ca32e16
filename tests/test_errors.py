"""Every bad input raises a clear ValueError/TypeError naming the argument."""

from __future__ import annotations

import numpy as np
import pytest

import dataprobes as dp

GOOD = np.array([[0.5, 0.5], [0.25, 0.75]])


@pytest.mark.parametrize(
    ("transition", "match"),
    [
        (np.array([[0.5, 0.5], [-0.1, 1.1]]), r"transition row 1: entry 0 is -0\.1"),
        (np.array([[0.5, 0.5], [np.nan, 1.0]]), "finite and non-negative"),
        (np.array([[0.5, 0.5], [np.inf, 1.0]]), "finite and non-negative"),
        (np.array([[0.5, 0.6], [0.5, 0.5]]), r"transition row 0 sums to 1\.1.*normalize=True"),
        (np.array([[0.0, 0.0], [0.5, 0.5]]), "transition row 0 sums to 0"),
        (np.ones((3, 2)) / 2, r"shape \(vocab_size\*\*order, vocab_size\) = \(2, 2\)"),
        (np.ones(4) / 4, "transition must be 2-D"),
        (np.ones((2, 0)), "vocab_size must be at least 1"),
    ],
)
def test_bad_transition(transition: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dp.MarkovChain(transition)


def test_row_tolerance_and_normalize() -> None:
    dp.MarkovChain(GOOD + 1e-7 / 2)  # within ROW_SUM_TOL: accepted, renormalised
    assert dp.ROW_SUM_TOL == 1e-6
    chain = dp.MarkovChain(GOOD * 3, normalize=True)
    np.testing.assert_allclose(chain.transition, GOOD)
    np.testing.assert_allclose(chain.transition.sum(1), 1.0, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="sums to 0"):
        dp.MarkovChain(np.zeros((2, 2)), normalize=True)


@pytest.mark.parametrize("bad", ["abc", [["a", "b"], ["c", "d"]], np.array([[1 + 0j, 0], [0, 1]]), None])
def test_non_numeric_transition(bad: object) -> None:
    with pytest.raises(TypeError, match="transition"):
        dp.MarkovChain(bad)


def test_ragged_transition() -> None:
    with pytest.raises(ValueError, match="transition"):
        dp.MarkovChain([[0.5, 0.5], [1.0]])


def test_bad_order_and_initial() -> None:
    with pytest.raises(ValueError, match="order must be >= 1"):
        dp.MarkovChain(GOOD, order=0)
    with pytest.raises(TypeError, match="order must be an integer"):
        dp.MarkovChain(GOOD, order=1.5)
    with pytest.raises(TypeError, match="order must be an integer"):
        dp.MarkovChain(GOOD, order=True)
    with pytest.raises(ValueError, match="initial must have vocab_size\\*\\*order = 2 entries"):
        dp.MarkovChain(GOOD, initial=[1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="initial sums to 0.5"):
        dp.MarkovChain(GOOD, initial=[0.25, 0.25])
    with pytest.raises(ValueError, match="initial: entry 1 is -1"):
        dp.MarkovChain(GOOD, initial=[2.0, -1.0])


def test_absurd_state_space_is_refused_before_allocating() -> None:
    with pytest.raises(ValueError, match="state space too large"):
        dp.MarkovChain.random(50_000, order=2)
    with pytest.raises(ValueError, match="vocab_size must be <= 4294967295"):
        dp.MarkovChain.random(2**40)
    with pytest.raises(ValueError, match="state space too large"):
        dp.MarkovChain.random(128, order=10)


def test_random_knobs() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        dp.MarkovChain.random(8, entropy_rate=1.0, concentration=1.0)
    with pytest.raises(ValueError, match="entropy_rate must lie strictly between 0 and log"):
        dp.MarkovChain.random(8, entropy_rate=3.0)
    with pytest.raises(ValueError, match="entropy_rate must be > 0"):
        dp.MarkovChain.random(8, entropy_rate=0.0)
    with pytest.raises(ValueError, match="entropy_rate must be finite"):
        dp.MarkovChain.random(8, entropy_rate=float("nan"))
    with pytest.raises(ValueError, match="concentration must be > 0"):
        dp.MarkovChain.random(8, concentration=-1.0)
    with pytest.raises(ValueError, match="vocab_size must be >= 1"):
        dp.MarkovChain.random(0)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        dp.MarkovChain.random(8, seed=-1)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"num_sequences": -1, "length": 3}, ValueError, "num_sequences must be >= 0"),
        ({"num_sequences": 2, "length": -3}, ValueError, "length must be >= 0"),
        ({"num_sequences": 2.0, "length": 3}, TypeError, "num_sequences must be an integer"),
        ({"num_sequences": 2, "length": 3, "seed": -1}, ValueError, "seed must be >= 0"),
        ({"num_sequences": 2, "length": 3, "seed": 2**64}, ValueError, "seed must be <="),
        ({"num_sequences": 2, "length": 3, "start": -5}, ValueError, "start must be >= 0"),
        ({"num_sequences": 2**40, "length": 2**20}, ValueError, "too large"),
    ],
)
def test_bad_sample_arguments(kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        dp.MarkovChain(GOOD).sample(**kwargs)


@pytest.mark.parametrize(
    ("tokens", "exc", "match"),
    [
        (np.array([[0, 1, 2]]), ValueError, r"tokens: value 2 at position \[0, 2\] is outside the vocabulary \[0, 2\)"),
        (np.array([[0, -1]]), ValueError, r"value -1 at position \[0, 1\]"),
        (np.array([[0.0, 1.0]]), TypeError, "tokens must be an integer array"),
        (np.array([[True, False]]), TypeError, "tokens must be an integer array"),
        (np.zeros((1, 2, 3), dtype=int), ValueError, "tokens must be 1-D"),
        (np.array(["a"]), TypeError, "tokens must be an integer array"),
    ],
)
def test_bad_tokens(tokens: np.ndarray, exc: type, match: str) -> None:
    chain = dp.MarkovChain(GOOD)
    for fn in (chain.log_prob, chain.token_log_probs, chain.typicality):
        with pytest.raises(exc, match=match):
            fn(tokens)


def test_bad_typicality_arguments() -> None:
    chain = dp.MarkovChain(GOOD)
    with pytest.raises(ValueError, match="eps must be > 0"):
        chain.typicality([[0, 1]], eps=0)
    with pytest.raises(ValueError, match="base must not be 1"):
        chain.typicality([[0, 1]], base=1)
    with pytest.raises(ValueError, match="length >= 1"):
        chain.typicality(np.zeros((2, 0), dtype=int))


def test_bad_iid() -> None:
    with pytest.raises(ValueError, match="probs: entry 1 is -0.5"):
        dp.IID([1.5, -0.5])
    with pytest.raises(ValueError, match="probs sums to 0.9"):
        dp.IID([0.5, 0.4])
    with pytest.raises(ValueError, match="probs must be 1-D"):
        dp.IID([[0.5, 0.5]])
    np.testing.assert_allclose(dp.IID([1, 3], normalize=True).probs, [0.25, 0.75])


def test_normalize_does_not_overflow_huge_rows() -> None:
    # [1e308, 1e308] sums to inf: dividing by the sum gave [0, 0], accepted,
    # and then sampled an impossible token forever
    big = 1e308
    chain = dp.MarkovChain([[big, big], [1.0, 3.0]], normalize=True)
    np.testing.assert_array_equal(chain.transition, [[0.5, 0.5], [0.25, 0.75]])
    assert set(np.unique(chain.sample(200, 20, seed=0))) == {0, 1}
    chain = dp.MarkovChain([[0.5, 0.5], [0.5, 0.5]], initial=[big, big], normalize=True)
    np.testing.assert_array_equal(chain.initial, [0.5, 0.5])
    np.testing.assert_array_equal(dp.IID([big, big, big, big], normalize=True).probs, np.full(4, 0.25))
    hmm = dp.HMM([[big, big], [1.0, 1.0]], [[big, 0.0, big], [1.0, 1.0, 2.0]], [big, big], normalize=True)
    np.testing.assert_array_equal(hmm.transition, np.full((2, 2), 0.5))
    np.testing.assert_array_equal(hmm.emission, [[0.5, 0.0, 0.5], [0.25, 0.25, 0.5]])
    np.testing.assert_array_equal(hmm.initial, [0.5, 0.5])
    mix = dp.Mixture([dp.IID([0.5, 0.5]), dp.IID([0.9, 0.1])], [big, big], normalize=True)
    np.testing.assert_array_equal(mix.weights, [0.5, 0.5])
    # without normalize the sum is out of tolerance, as before
    with pytest.raises(ValueError, match="sums to inf"):
        dp.MarkovChain([[big, big], [0.5, 0.5]])
    # ordinary rows are normalised bit for bit as before (no rescaling)
    rows = np.random.default_rng(0).dirichlet(np.ones(7), size=7) * 3.0
    np.testing.assert_array_equal(dp.MarkovChain(rows, normalize=True).transition, rows / rows.sum(1, keepdims=True))


# ---------------------------------------------------------------- rows past 2**64


def _every_family() -> list[dp.Process]:
    chain = dp.MarkovChain(GOOD)
    return [
        chain,
        dp.IID([0.5, 0.5]),
        dp.HMM(GOOD, GOOD),
        dp.InContextMarkov(2, 1),
        dp.Mixture([chain, dp.IID([0.5, 0.5])]),
        dp.Duplicated(chain, 0.5),
        dp.TokenNoise(chain, 0.1),
    ]


@pytest.mark.parametrize("process", _every_family(), ids=lambda p: type(p).__name__)
def test_rows_past_2_64_are_refused_not_wrapped(process: dp.Process) -> None:
    # sequence indices are 64-bit: rows past 2**64 - 1 would wrap to row 0
    with pytest.raises(ValueError, match=r"start \+ num_sequences must be <= 2\*\*64.*start=18446744073709551614"):
        process.sample(3, 4, seed=1, start=2**64 - 2)
    with pytest.raises(ValueError, match="start must be <= 18446744073709551615"):
        process.sample(0, 4, seed=1, start=2**64)
    # the last rows that exist are the rows at those indices
    last = process.sample(2, 4, seed=1, start=2**64 - 2)
    np.testing.assert_array_equal(last, process.sample_at(np.array([2**64 - 2, 2**64 - 1], np.uint64), 4, seed=1))
    assert process.sample(0, 4, seed=1, start=2**64 - 1).shape == (0, 4)


# ---------------------------------------------------------------- messages that say what is wrong


@pytest.mark.parametrize("dtype", [">i2", ">i4", ">u4", ">i8", ">u8"])
def test_big_endian_tokens_are_read_by_value(dtype: str) -> None:
    chain = dp.MarkovChain(GOOD)
    x = chain.sample(3, 6, seed=0)
    big = x.astype(dtype)
    assert not big.dtype.isnative
    np.testing.assert_array_equal(chain.log_prob(big), chain.log_prob(x))
    np.testing.assert_array_equal(chain.token_log_probs(big[0]), chain.token_log_probs(x[0]))
    np.testing.assert_array_equal(chain.sample_at(np.arange(3).astype(dtype), 6), x)
    bad = np.array([[0, 5]], dtype=dtype)  # a big-endian value is still checked by value
    with pytest.raises(ValueError, match="value 5 at position"):
        chain.log_prob(bad)


def test_messages_name_the_argument() -> None:
    p = dp.IID([0.5, 0.5])
    with pytest.raises(TypeError, match="weights must be a numeric array"):
        dp.Mixture([p, p], "ab")
    with pytest.raises(ValueError, match=r"weights must be 1-D"):
        dp.Mixture([p, p], [[0.5, 0.5]])
    with pytest.raises(TypeError, match="processes must be a sequence of processes, got IID"):
        dp.Mixture(p)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"transition must have at least one column .*shape \(0, 0\)"):
        dp.MarkovChain(np.zeros((0, 0)))
    with pytest.raises(ValueError, match="probs must not be empty"):
        dp.IID([])


def test_lm_messages_say_what_is_wrong() -> None:
    torch = pytest.importorskip("torch")
    from dataprobes.lm import TinyGPT, excess_loss, generate, generation_typicality, train

    chain = dp.MarkovChain.random(8, seed=0)
    x = chain.sample(3, 6, seed=0)
    small = TinyGPT(vocab_size=4, max_len=16, d_model=8, n_layers=1, n_heads=1)
    msg = r"the model's vocabulary \(4 tokens\) is smaller than the process's vocab_size \(8\)"
    with pytest.raises(ValueError, match=msg):
        excess_loss(small, chain, x)
    with pytest.raises(ValueError, match=msg):
        generation_typicality(small, chain, num_sequences=2, length=3)
    with pytest.raises(ValueError, match=msg):
        train(small, chain, steps=1, progress=False)
    # a model that does not say its vocabulary: its IndexError is explained
    with pytest.raises(ValueError, match="failed on token ids up to 7 .*vocabulary may be smaller than the ids"):
        excess_loss(lambda idx: small(idx), chain, x)
    with pytest.raises(ValueError, match="failed on token ids up to 7 .*vocabulary has 4 tokens"):
        generate(small, x, 2)
    right = TinyGPT(vocab_size=8, max_len=16, d_model=8, n_layers=1, n_heads=1)
    with pytest.raises(ValueError, match="tokens: need at least one sequence"):
        excess_loss(right, chain, x[:0])
    assert excess_loss(right, chain, x).kl_per_position.shape == (5,)
    assert torch.is_tensor(generate(right, x, 2))
