#!/usr/bin/env python
"""sha256 digests of Markov-chain outputs, to check that two builds of the
extension (or two thread counts) give byte-identical results.

Covers ``sample`` (seeds 0, 7, 2^64-1; starts 0, 3, 999; 1, 15, 16, 17 and 40
rows, i.e. around the 16-row SIMD groups; lengths 1, 2, 9, 65), ``sample_at``,
``log_prob`` of the samples (as sampled and as int64/uint32), of random tokens
(zero-probability steps give -inf) and ``token_log_probs``, for order 0 (V up
to 50000), order 1 (V = 2 .. 4096), order 2 (V <= 64) and order 3 (V <= 16),
plus the shapes of ``bench_markov.py``. Prints one JSON object: the digest of
all digests (``total``) and each one.

Usage::

    RAYON_NUM_THREADS=1 python benches/markov_digest.py > new_1.json
    RAYON_NUM_THREADS=2 python benches/markov_digest.py --core /path/to/base/_core.so > base_2.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_markov import load_core  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--core", metavar="SO", help="a _core shared library to use instead of the installed one")
    args = ap.parse_args()
    if args.core:
        load_core(args.core)
    import dataprobes as dp

    if args.core:
        dp._core = sys.modules["dataprobes._core"]

    def chain(v: int, k: int, seed: int) -> object:
        r = np.random.default_rng(seed)
        P = r.random((v**k, v)) ** 3
        P[r.random(P.shape) < 0.2] = 0.0
        P[:, 0] += 1e-3  # no empty row
        P /= P.sum(1, keepdims=True)
        return dp.MarkovChain(P, order=k) if k > 0 else dp.IID(P[0])

    out: dict[str, str] = {}
    total = hashlib.sha256()

    def put(key: str, arr: np.ndarray) -> None:
        a = np.ascontiguousarray(arr)
        h = hashlib.sha256(a.tobytes() + str(a.dtype).encode() + str(a.shape).encode()).hexdigest()
        out[key] = h
        total.update(h.encode())

    cases = [(v, 1) for v in (2, 3, 5, 16, 100, 128, 255, 256, 257, 1000, 4096)]
    cases += [(v, 0) for v in (2, 3, 128, 256, 4096, 50000)]
    cases += [(v, 2) for v in (2, 3, 16, 64)] + [(v, 3) for v in (2, 5, 16)]
    for v, k in cases:
        p = chain(v, k, 1000 * v + k)
        for seed in (0, 7, 2**64 - 1):
            for start in (0, 3, 999):
                for n in (1, 15, 16, 17, 40):
                    for t in (1, 2, 9, 65):
                        key = f"V{v} k{k} seed{seed} start{start} n{n} t{t}"
                        x = p.sample(n, t, seed=seed, start=start)
                        put(key + " sample", x)
                        put(key + " log_prob", p.log_prob(x))
                        if t == 9:
                            put(key + " log_prob i64", p.log_prob(x.astype(np.int64)))
                            put(key + " token_log_probs", p.token_log_probs(x))
        idx = np.array([5, 0, 2**40, 17, 3, 3, 1, 2, 9, 10, 11, 12, 13, 14, 15, 16, 99, 4], dtype=np.uint64)
        put(f"V{v} k{k} sample_at", p.sample_at(idx, 33, seed=5))
        r = np.random.default_rng(v)
        for n, t in ((16, 100), (21, 37), (4, 8), (5, 1)):
            xr = r.integers(0, v, size=(n, t)).astype(x.dtype)
            put(f"V{v} k{k} random {n}x{t} log_prob", p.log_prob(xr))
            put(f"V{v} k{k} random {n}x{t} log_prob u32", p.log_prob(xr.astype(np.uint32)))
    for v, n, t in ((128, 4096, 1024), (4096, 1000, 300)):
        p = dp.MarkovChain.random(v, entropy_rate=0.5 * np.log(v), seed=0)
        x = p.sample(n, t, seed=1)
        put(f"bench V{v} sample", x)
        put(f"bench V{v} log_prob", p.log_prob(x))
    print(json.dumps({"total": total.hexdigest(), "n": len(out), "hashes": out}))


if __name__ == "__main__":
    main()
