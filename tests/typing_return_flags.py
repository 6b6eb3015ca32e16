"""Checked by mypy in ``test_typing.py`` (not collected by pytest): every
``return_*`` flag has ``Literal`` overloads, so a type checker knows whether a
sampler returns an array or a tuple. An overload that returned the union would
fail the annotated assignments below."""

from __future__ import annotations

import numpy as np

import dataprobes as dp

A = np.ndarray
chain = dp.MarkovChain.random(4, seed=0)
hmm = dp.HMM.random(2, 4, seed=0)
icl = dp.InContextMarkov(4)
mix = dp.Mixture([chain, dp.IID.random(4, seed=1)])
dup = dp.Duplicated(chain, 0.5)
noise = dp.TokenNoise(hmm, 0.1)

x0: A = hmm.sample(2, 3)
x1: tuple[A, A] = hmm.sample(2, 3, return_states=True)
x2: A = hmm.sample_at([0, 1], 3)
x3: tuple[A, A] = hmm.sample_at([0, 1], 3, return_states=True)
c0: A = icl.sample(2, 3)
c1: tuple[A, A] = icl.sample(2, 3, return_chains=True)
c2: A = icl.sample_at([0], 3, return_chains=False)
c3: tuple[A, A] = icl.sample_at([0], 3, return_chains=True)
m0: A = mix.sample(2, 3)
m1: tuple[A, A] = mix.sample(2, 3, return_labels=True)
m2: tuple[A, A] = mix.sample_at([0], 3, return_labels=True)
d0: A = dup.sample(2, 3)
d1: tuple[A, A] = dup.sample(2, 3, return_sources=True)
d2: tuple[A, A] = dup.sample_at([0], 3, return_sources=True)
n0: A = noise.sample(2, 3)
n1: tuple[A, A, A] = noise.sample(2, 3, return_clean=True)
n2: tuple[A, A, A] = noise.sample_at([0], 3, return_clean=True)
flag: bool = bool(len(x0))
u: A | tuple[A, A] = mix.sample(2, 3, return_labels=flag)

# A return type of ``Any`` would accept anything: these assignments must be
# rejected, and ``warn_unused_ignores`` turns an ignore that is not needed into
# an error.
w0: str = hmm.sample(2, 3)  # type: ignore[assignment]
w1: A = hmm.sample(2, 3, return_states=True)  # type: ignore[assignment]
w2: A = icl.sample(2, 3, return_chains=True)  # type: ignore[assignment]
w3: A = icl.sample_at([0], 3, return_chains=True)  # type: ignore[assignment]
w4: A = mix.sample(2, 3, return_labels=True)  # type: ignore[assignment]
w5: A = mix.sample_at([0], 3, return_labels=True)  # type: ignore[assignment]
w6: A = dup.sample(2, 3, return_sources=True)  # type: ignore[assignment]
w7: A = dup.sample_at([0], 3, return_sources=True)  # type: ignore[assignment]
w8: A = noise.sample(2, 3, return_clean=True)  # type: ignore[assignment]
w9: tuple[A, A] = noise.sample_at([0], 3, return_clean=True)  # type: ignore[assignment]
w10: A = mix.sample(2, 3, return_labels=flag)  # type: ignore[assignment]
