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
    with np.errstate(divide="ignore", invalid="ignore"):  # -inf - -inf on an impossible prefix
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


def hmm_prefix_probs(x: np.ndarray, transition: np.ndarray, emission: np.ndarray, init: np.ndarray) -> np.ndarray:
    """``p(x_0 .. x_{t-1})`` for t = 0 .. len(x), by summing over every hidden
    path (S^T terms): the definition, with no forward recursion."""
    import itertools

    s = transition.shape[0]
    out = np.ones(len(x) + 1)
    for t in range(1, len(x) + 1):
        total = 0.0
        for path in itertools.product(range(s), repeat=t):
            p = init[path[0]] * emission[path[0], x[0]]
            for k in range(1, t):
                p *= transition[path[k - 1], path[k]] * emission[path[k], x[k]]
            total += p
        out[t] = total
    return out


def hmm_block_entropies(
    transition: np.ndarray, emission: np.ndarray, init: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact block entropies H(X_1..k) and H(X_1..k | S_1) for k = 1 .. n (nats)
    by enumerating all V^n sequences (an unscaled forward pass vectorised over
    sequences; fine for V^n up to ~1e5)."""
    s, v = emission.shape
    seqs = np.array(np.meshgrid(*[np.arange(v)] * n, indexing="ij")).reshape(n, -1).T  # [V^n, n]
    h = np.zeros(n)
    h_given = np.zeros(n)
    # alpha[m, j] = p(x_1..k, s_k = j) and, per starting state i, a[i, m, j] = p(x_1..k, s_k = j | s_1 = i)
    alpha = init[None, :] * emission[:, seqs[:, 0]].T
    cond = np.eye(s)[:, None, :] * emission[:, seqs[:, 0]].T[None, :, :]
    for k in range(n):
        if k > 0:
            alpha = (alpha @ transition) * emission[:, seqs[:, k]].T
            cond = (cond @ transition) * emission[:, seqs[:, k]].T[None]
        # every prefix of length k+1 appears v^(n-k-1) times: weight accordingly
        w = float(v) ** -(n - k - 1)
        p = alpha.sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            h[k] = -w * np.sum(np.where(p > 0, p * np.log(p), 0.0))
            pc = cond.sum(2)  # [S, V^n]
            h_given[k] = -w * np.sum(init[:, None] * np.where(pc > 0, pc * np.log(pc), 0.0))
    return h, h_given
