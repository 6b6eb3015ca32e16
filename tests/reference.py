"""Independent numpy reference implementations used by the tests.

Written from the definitions, without sharing code with the package.
"""

from __future__ import annotations

import numpy as np


def state_index(tokens: np.ndarray, vocab: int) -> int:
    """Base-V number of ``tokens`` with the most recent (last) token least significant."""
    s = 0
    for x in tokens:
        s = s * vocab + int(x)
    return s


def expanded_chain(p: np.ndarray, vocab: int, order: int) -> np.ndarray:
    """The [S, S] transition matrix of the order-k chain on its V^k states."""
    n = vocab**order
    big = np.zeros((n, n))
    for s in range(n):
        for x in range(vocab):
            big[s, (s * vocab + x) % n] += p[s, x]
    return big


def unique_stationary(big: np.ndarray) -> bool:
    """Whether eigenvalue 1 is simple (one closed class: a unique stationary law)."""
    w = np.linalg.eigvals(big.T)
    return int((np.abs(w - 1.0) < 1e-8).sum()) == 1


def stationary_eig(big: np.ndarray) -> np.ndarray:
    """Left eigenvector of eigenvalue 1, normalised to sum 1."""
    w, v = np.linalg.eig(big.T)
    i = np.argmin(np.abs(w - 1.0))
    pi = np.real(v[:, i])
    return pi / pi.sum()


def row_entropy(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(p > 0, p * np.log(p), 0.0)
    return -t.sum(axis=-1)


def row_varentropy(p: np.ndarray) -> np.ndarray:
    h = row_entropy(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(p > 0, p * np.log(p) ** 2, 0.0)
    return t.sum(axis=-1) - h**2


def markov_token_log_probs(x: np.ndarray, p: np.ndarray, init: np.ndarray, vocab: int, order: int) -> np.ndarray:
    """log p(x_t | x_<t) by the definition, one sequence, slow and plain."""
    n = vocab**order
    out = np.zeros(len(x))
    with np.errstate(divide="ignore"):
        for t in range(len(x)):
            if t < order:
                # marginal of the first t+1 tokens of the initial law
                block = vocab ** (order - t - 1)
                joint = init.reshape(-1, block).sum(1)[state_index(x[: t + 1], vocab)]
                prev = 1.0 if t == 0 else init.reshape(-1, block * vocab).sum(1)[state_index(x[:t], vocab)]
                out[t] = np.log(joint) - np.log(prev)
            else:
                s = state_index(x[t - order : t], vocab) % n
                out[t] = np.log(p[s, x[t]])
    return out
