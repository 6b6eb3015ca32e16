"""Every bad input raises a clear ValueError/TypeError naming the argument."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

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


# ---------------------------------------------------------------- every family, every entry point


def _bad_values() -> st.SearchStrategy[object]:
    """Values of the wrong kind or out of any domain, and a few right ones
    (an entry point may accept those): a call gets one in one argument."""
    arrays = st.sampled_from(
        [
            np.zeros((2, 2, 2)),
            np.zeros((0,)),
            np.zeros((2, 0), dtype=np.int64),
            np.array([[0.5, 0.5]]),
            np.array([[1 + 1j, 0]]),
            np.array([["a", "b"]]),
            np.array([[None, 1]], dtype=object),
            np.array([[True, False]]),
            np.array([[0, 1, 7]], dtype=np.int64),
            np.array([[0, -1]], dtype=np.int8),
            np.array([[0, 1]], dtype=">u4"),
            np.full((2, 2), np.nan),
            np.full((2, 2), np.inf),
            np.array([2**64 - 1], dtype=np.uint64),
        ]
    )
    scalars = st.sampled_from(
        [None, "abc", "", b"1", 1.5, -1, 0, 2**70, -(2**70), math.nan, math.inf, -math.inf, True, 1 + 2j, {}, ()]
    )
    lists = st.sampled_from([[], [[1, 2], [3]], [1, "a"], [[0.5, 0.5], [0.5, 0.5]], [[0, 1], [1, 0]]])
    return st.one_of(arrays, scalars, lists, st.integers(-(2**65), 2**65), st.floats(allow_nan=True))


def _processes() -> dict[str, dp.Process]:
    chain = dp.MarkovChain(GOOD)
    return {
        "markov": chain,
        "markov2": dp.MarkovChain.random(2, order=2, seed=0),
        "iid": dp.IID([0.5, 0.5]),
        "hmm": dp.HMM(GOOD, GOOD),
        "incontext": dp.InContextMarkov(2, 1),
        "mixture": dp.Mixture([chain, dp.HMM(GOOD, GOOD)]),
        "duplicated": dp.Duplicated(chain, 0.5),
        "noise": dp.TokenNoise(chain, 0.1),
    }


_GOOD_TOKENS = np.array([[0, 1, 1, 0]])

#: (entry point, its good arguments); the test replaces one argument.
_METHODS: dict[str, dict[str, object]] = {
    "sample": {"num_sequences": 2, "length": 3, "seed": 0, "start": 0},
    "sample_at": {"indices": [0, 5], "length": 3, "seed": 0},
    "log_prob": {"x": _GOOD_TOKENS},
    "token_log_probs": {"x": _GOOD_TOKENS},
    "predictive": {"x": _GOOD_TOKENS},
    "typicality": {"x": _GOOD_TOKENS, "eps": 0.05, "base": None},
    "entropy_rate": {"base": None},
}


#: The name a message uses for an argument, where it differs.
_ALIASES = {"x": "tokens", "indices": "indices", "prompt": "tokens", "tokens": "tokens"}


def _call_ok(fn, kwargs: dict[str, object], name: str | None = None) -> None:
    """``fn(**kwargs)`` either returns or raises TypeError/ValueError (a
    crash-free refusal) whose message names the argument ``name`` (when
    given): any other exception, or an anonymous message, fails."""
    try:
        fn(**kwargs)
    except (TypeError, ValueError) as exc:
        if name is not None:
            assert _ALIASES.get(name, name) in str(exc), f"{name}={kwargs[name]!r}: {exc}"


@pytest.mark.parametrize("family", list(_processes()))
@pytest.mark.parametrize("method", list(_METHODS))
@given(data=st.data())
def test_process_entry_points_refuse_bad_input_cleanly(family: str, method: str, data: st.DataObject) -> None:
    process = _processes()[family]
    kwargs = dict(_METHODS[method])
    name = data.draw(st.sampled_from(sorted(kwargs)))
    value = data.draw(_bad_values())
    if name in ("num_sequences", "length") and isinstance(value, int) and 10**3 < value < 2**64:
        value = 10**3  # a valid huge size is a real allocation, not bad input (the core refuses absurd ones)
    kwargs[name] = value
    if method == "entropy_rate" and family in ("hmm", "mixture"):
        kwargs["num_sequences"] = 4  # keep the Monte-Carlo estimate cheap
        if family == "mixture":
            del kwargs["num_sequences"]
    _call_ok(getattr(process, method), kwargs, name)


_CONSTRUCTORS = {
    "MarkovChain": (dp.MarkovChain, {"transition": GOOD, "order": 1, "initial": None, "normalize": False}),
    "IID": (dp.IID, {"probs": [0.5, 0.5], "normalize": False}),
    "HMM": (dp.HMM, {"transition": GOOD, "emission": GOOD, "initial": None, "normalize": False}),
    "InContextMarkov": (dp.InContextMarkov, {"vocab_size": 2, "order": 1, "concentration": 1.0}),
    "Mixture": (dp.Mixture, {"processes": [dp.IID([0.5, 0.5])] * 2, "weights": None, "normalize": False}),
    "Duplicated": (dp.Duplicated, {"process": dp.IID([0.5, 0.5]), "fraction": 0.5}),
    "TokenNoise": (dp.TokenNoise, {"process": dp.IID([0.5, 0.5]), "rho": 0.1}),
    "MarkovChain.random": (dp.MarkovChain.random, {"vocab_size": 4, "order": 1, "seed": 0}),
    "IID.random": (dp.IID.random, {"vocab_size": 4, "seed": 0}),
    "HMM.random": (dp.HMM.random, {"num_states": 2, "vocab_size": 4, "seed": 0}),
    "ngram_counts": (dp.ngram_counts, {"tokens": _GOOD_TOKENS, "n": 2, "vocab_size": None}),
    "conditional_entropy": (
        dp.conditional_entropy,
        {"tokens": _GOOD_TOKENS, "order": 1, "vocab_size": None, "correction": "miller-madow", "base": None},
    ),
    "entropy_profile": (dp.entropy_profile, {"tokens": _GOOD_TOKENS, "max_order": 1, "vocab_size": None}),
    "incontext_ngram_log_probs": (
        dp.incontext_ngram_log_probs,
        {"x": _GOOD_TOKENS, "vocab_size": 2, "order": 1, "beta": 1.0},
    ),
}


@pytest.mark.parametrize("entry", list(_CONSTRUCTORS))
@given(data=st.data())
def test_constructors_and_functions_refuse_bad_input_cleanly(entry: str, data: st.DataObject) -> None:
    fn, good = _CONSTRUCTORS[entry]
    kwargs = dict(good)
    name = data.draw(st.sampled_from(sorted(kwargs)))
    value = data.draw(_bad_values())
    if name in ("vocab_size", "num_states", "order") and isinstance(value, int) and value > 64:
        value = 64  # a valid huge size is a real allocation (refused by the core separately)
    kwargs[name] = value
    _call_ok(fn, kwargs, name)


def test_lm_entry_points_refuse_bad_input_cleanly() -> None:
    torch = pytest.importorskip("torch")
    from dataprobes.lm import ProbeDataset, TinyGPT, excess_loss, generate, generation_typicality, self_typicality

    chain = dp.MarkovChain(GOOD)
    model = TinyGPT(vocab_size=2, max_len=32, d_model=8, n_layers=1, n_heads=1)
    x = chain.sample(2, 6)
    calls = {
        "excess_loss": (excess_loss, {"model": model, "process": chain, "tokens": x, "batch_size": None}),
        "generation_typicality": (
            generation_typicality,
            {"model": model, "process": chain, "num_sequences": 2, "length": 3, "temperatures": [1.0], "eps": None},
        ),
        "generate": (generate, {"model": model, "prompt": x[:, :2], "length": 3, "temperature": 1.0, "seed": 0}),
        "self_typicality": (self_typicality, {"model": model, "prompt": x[:, :2], "length": 3, "temperature": 1.0}),
        "ProbeDataset": (ProbeDataset, {"process": chain, "seq_len": 4, "batch_size": 2, "seed": 0}),
        "TinyGPT": (TinyGPT, {"vocab_size": 2, "max_len": 8, "d_model": 8, "n_layers": 1, "n_heads": 1}),
    }
    bad = [None, "abc", 1.5, -1, 0, 2**70, math.nan, math.inf, True, np.zeros((2, 2, 2)), np.array([[0.5, 0.5]])]
    for fn, good in calls.values():
        for arg in good:
            for value in bad:
                if isinstance(value, int) and value > 64 and arg not in ("seed", "temperature"):
                    continue  # a valid huge size (tokens, layers, widths) is a real allocation
                _call_ok(fn, {**good, arg: value})
    assert torch.is_tensor(generate(model, x[:, :2], 3))
