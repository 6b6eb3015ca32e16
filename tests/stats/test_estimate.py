"""Estimate behaves like its value and propagates its standard error."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import dataprobes as dp
from dataprobes import Estimate


def close(e: Estimate, value: float, stderr: float) -> None:
    assert isinstance(e, Estimate)
    assert e.value == pytest.approx(value, rel=1e-14, abs=1e-300)
    assert e.stderr == pytest.approx(stderr, rel=1e-14, abs=1e-300)


def test_arithmetic_against_hand_computed_propagation() -> None:
    a, b = Estimate(3.0, 0.4), Estimate(2.0, 0.3)
    close(a + b, 5.0, 0.5)  # sqrt(0.16 + 0.09)
    close(a - b, 1.0, 0.5)
    close(b - a, -1.0, 0.5)
    close(a * b, 6.0, math.sqrt(1.45))  # sqrt((2 * 0.4)**2 + (3 * 0.3)**2)
    close(Estimate(6.0, 0.3) / Estimate(2.0, 0.1), 3.0, 0.15 * math.sqrt(2))  # sqrt(0.15**2 + (6 * 0.1 / 4)**2)
    # a real number is exact
    close(a + 1, 4.0, 0.4)
    close(1 + a, 4.0, 0.4)
    close(10 - a, 7.0, 0.4)
    close(a - 10, -7.0, 0.4)
    close(2 * a, 6.0, 0.8)
    close(a * 2.5, 7.5, 1.0)
    close(a / 2, 1.5, 0.2)
    close(6 / b, 3.0, 6 * 0.3 / 4)  # |d(6/b)/db| s_b = 6 s_b / b**2
    close(-a, -3.0, 0.4)
    close(+a, 3.0, 0.4)
    close(abs(Estimate(-3.0, 0.4)), 3.0, 0.4)
    close(np.float64(2.0) * a, 6.0, 0.8)  # numpy scalars defer to Estimate
    close(a * np.int64(2), 6.0, 0.8)
    close(sum([a, b, Estimate(1.0, 0.0)]), 6.0, 0.5)  # starts from 0 + a
    # independent errors: a - a is not exact
    close(a - a, 0.0, 0.4 * math.sqrt(2))
    with pytest.raises(ZeroDivisionError):
        a / 0
    with pytest.raises(ZeroDivisionError):
        1 / Estimate(0.0, 1.0)
    with pytest.raises(TypeError):
        a + "1"  # type: ignore[operator]


@given(st.floats(0.1, 100), st.floats(0.0, 10), st.floats(0.1, 100), st.floats(0.0, 10), st.sampled_from([1.0, -1.0]))
def test_relative_errors_of_products_and_quotients(a: float, sa: float, b: float, sb: float, sign: float) -> None:
    # first-order rule for products and quotients: relative errors add in quadrature
    x, y = Estimate(sign * a, sa), Estimate(b, sb)
    rel = math.hypot(sa / a, sb / b)
    for r in (x * y, x / y, y / x):
        assert r.stderr == pytest.approx(abs(r.value) * rel, rel=1e-12)
    assert (x + y).stderr == pytest.approx(math.sqrt(sa * sa + sb * sb), rel=1e-12)


def test_propagation_matches_simulation() -> None:
    # independent check: small errors, so first order is accurate
    rng = np.random.default_rng(0)
    a, b = Estimate(3.0, 0.01), Estimate(-2.0, 0.02)
    xa = rng.normal(a.value, a.stderr, 400_000)
    xb = rng.normal(b.value, b.stderr, 400_000)
    for est, sim in [(a * b, xa * xb), (a / b, xa / xb), (a - b, xa - xb), (2 * a + b, 2 * xa + xb)]:
        assert est.stderr == pytest.approx(sim.std(), rel=0.01)
        assert est.value == pytest.approx(sim.mean(), abs=1e-3)  # first order: no second-order bias


def test_float_like_formatting_and_comparison() -> None:
    e = Estimate(1.23456, 0.01)
    assert float(e) == 1.23456
    assert format(e, ".3f") == "1.235" and f"{e:.2f}" == "1.23" and f"{e:8.1f}" == "     1.2"
    assert f"{e}" == str(e) == "1.234560 ± 0.010000"
    assert "stderr=0.01" in repr(e)
    assert round(e, 2) == 1.23 and round(Estimate(2.6, 1.0)) == 3
    assert e < 2 and e <= 1.23456 and e > 1 and e >= 1.23456 and not e > 1.3
    assert 2 > e and Estimate(1.0, 5.0) < Estimate(1.1, 0.0)
    assert e == 1.23456 and 1.23456 == e and e != 1.2
    assert Estimate(1.0, 0.1) == Estimate(1.0, 0.1) and Estimate(1.0, 0.1) != Estimate(1.0, 0.2)
    assert hash(Estimate(1.0, 0.1)) == hash(1.0)
    assert sorted([2.0, Estimate(1.5, 0.1), 1.0]) == [1.0, Estimate(1.5, 0.1), 2.0]
    assert max(Estimate(1.0, 0.1), Estimate(3.0, 0.1)).value == 3.0
    assert math.isclose(e, 1.23456)


def test_generic_code_over_entropy_rates() -> None:
    # the same expression for a float rate and an Estimate rate
    rates = [dp.MarkovChain.random(8, seed=0).entropy_rate(), dp.HMM.random(3, 8).entropy_rate(num_sequences=16)]
    for r in rates:
        bits = r / math.log(2)
        assert float(bits) == pytest.approx(float(r) / math.log(2))
        assert f"{bits:.3f}" == f"{float(r) / math.log(2):.3f}"
        assert 0 < r < math.log(8)
    est = rates[1]
    assert isinstance(est, Estimate)
    close(est / math.log(2), est.value / math.log(2), est.stderr / math.log(2))
    # HMM's base= is exactly division by log(base)
    hmm = dp.HMM.random(3, 8)
    two = hmm.entropy_rate(base=2, num_sequences=16)
    close(hmm.entropy_rate(num_sequences=16) / math.log(2), two.value, two.stderr)
