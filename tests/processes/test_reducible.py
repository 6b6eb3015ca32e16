"""Reducible chains: closed classes are found, and the arbitrary choice of a
stationary law is announced (issue 10)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import dataprobes as dp


def reference_closed_classes(p: np.ndarray, order: int) -> list[list[int]]:
    """Closed classes from the reachability matrix (transitive closure by
    repeated boolean squaring), independent of the library's Tarjan."""
    states, v = p.shape
    adj = np.zeros((states, states), dtype=bool)
    for s in range(states):
        for x in range(v):
            if p[s, x] > 0:
                adj[s, (s * v + x) % states] = True
    reach = adj | np.eye(states, dtype=bool)
    for _ in range(states.bit_length() + 1):
        reach = reach | ((reach.astype(np.int64) @ reach.astype(np.int64)) > 0)
    classes = []
    for s in range(states):
        # s is in a closed class iff every state it reaches reaches it back
        if all(reach[t, s] for t in np.flatnonzero(reach[s])):
            members = sorted(int(t) for t in np.flatnonzero(reach[s]))
            if members[0] == s:
                classes.append(members)
    return classes


@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(1, 2), st.floats(0.0, 0.9))
def test_closed_classes_match_reachability(seed: int, v: int, order: int, zeros: float) -> None:
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(v), size=v**order) * (rng.random((v**order, v)) >= zeros)
    p[np.arange(v**order), rng.integers(0, v, v**order)] += 0.1
    p /= p.sum(1, keepdims=True)
    chain = dp.MarkovChain(p, order=order, initial=np.full(v**order, 1.0 / v**order))
    got = [c.tolist() for c in chain.closed_classes()]
    assert got == reference_closed_classes(p, order)


def test_reducible_chain_warns_naming_its_classes() -> None:
    p = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.3, 0.3, 0.4]]
    with pytest.warns(UserWarning, match=r"reducible, with 2 closed classes of states \(\{0\}, \{1\}\).*initial="):
        chain = dp.MarkovChain(p)
    # the documented choice: the long-run law from the uniform start (absorption 1/3 + 1/3 * 1/2 each)
    with pytest.warns(UserWarning, match="closed classes"):
        pi = chain.stationary_distribution()
    np.testing.assert_allclose(pi, [0.5, 0.5, 0.0], atol=1e-12)
    # initial= chooses: the stationary law is the long-run law from it, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chosen = dp.MarkovChain(p, initial=[0.0, 0.0, 1.0])
        np.testing.assert_allclose(chosen.stationary_distribution(), [0.5, 0.5, 0.0], atol=1e-12)
        first = dp.MarkovChain(p, initial=[1.0, 0.0, 0.0])
        np.testing.assert_allclose(first.stationary_distribution(), [1.0, 0.0, 0.0], atol=1e-12)
        np.testing.assert_array_equal(first.sample(5, 4), np.zeros((5, 4)))


def test_irreducible_chains_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dp.MarkovChain([[0.0, 1.0], [1.0, 0.0]])  # periodic but one closed class
        dp.MarkovChain([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5]])
        dp.MarkovChain([[0.5, 0.5], [0.0, 1.0]])  # a transient state and one closed class
        chain = dp.MarkovChain.random(16, order=2, seed=0)
        assert len(chain.closed_classes()) == 1
        chain.stationary_distribution()


def test_order_two_classes_name_states() -> None:
    # order 2 over {0, 1}: "always repeat the last token" keeps 00 and 11 forever
    p = np.array([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5], [0.0, 1.0]])
    with pytest.warns(UserWarning, match=r"2 closed classes of states \(\{0\}, \{3\}\)"):
        chain = dp.MarkovChain(p, order=2)
    assert [c.tolist() for c in chain.closed_classes()] == [[0], [3]]
