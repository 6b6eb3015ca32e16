"""HMM forward log-likelihood and sampling: dataprobes vs hmmlearn, side by side.

    python benches/bench_hmm.py                      # the BENCHMARKS.md table
    python benches/bench_hmm.py --states 16 --quick  # a fast smoke run

For each number of hidden states S (vocabulary V = 128), one random HMM
(Dirichlet(1) transition rows, Dirichlet(0.5) emission rows):

* forward log-likelihood of the same N × T tokens (default 256 × 1024):
  dataprobes ``HMM.log_prob`` (all cores, and one core in a subprocess with
  ``RAYON_NUM_THREADS=1``) against hmmlearn ``CategoricalHMM.score`` on the
  concatenated array with ``lengths=`` (its default ``implementation="log"``
  and its ``"scaling"`` variant). Agreement is asserted (relative 1e-9, per
  sequence and in total) before anything is timed.
* sampling: dataprobes ``HMM.sample`` against hmmlearn ``sample``, which draws
  one sequence per call (sequences of T tokens, repeated for about one
  second). The sampler's law is checked first (chi-square of emission and
  transition counts from ``return_states=True``, and equal mean NLL/token of
  both samplers' output under the exact model).

Times are the best of several repeats (hmmlearn: fewer, it is slow); ratios
are what to compare across machines.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import stats

import dataprobes as dp


def make_hmm(s: int, v: int, seed: int) -> dp.HMM:
    rng = np.random.default_rng(seed)
    return dp.HMM(rng.dirichlet(np.ones(s), s), rng.dirichlet(np.full(v, 0.5), s), normalize=True)


def best_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def hmmlearn_model(h: dp.HMM, implementation: str) -> Any:
    from hmmlearn.hmm import CategoricalHMM

    m = CategoricalHMM(n_components=h.num_states, n_features=h.vocab_size, implementation=implementation)
    m.startprob_ = h.initial.copy()
    m.transmat_ = h.transition.copy()
    m.emissionprob_ = h.emission.copy()
    return m


def worker(args: argparse.Namespace) -> None:
    """Single-thread dataprobes forward timing (run with RAYON_NUM_THREADS=1)."""
    out = {}
    for s in args.states:
        h = make_hmm(s, args.vocab, seed=s)
        x = h.sample(args.sequences, args.length, seed=1)
        h.log_prob(x[:4])
        t, _ = best_time(lambda: h.log_prob(x), args.repeats)
        out[s] = t
    print(json.dumps(out))


def check_sampler(h: dp.HMM, hl: Any, length: int) -> None:
    x, z = h.sample(256, length, seed=7, return_states=True)
    s, v = h.num_states, h.vocab_size
    for counts, probs in [
        (np.bincount((z.astype(np.int64) * v + x).ravel(), minlength=s * v).reshape(s, v), h.emission),
        (np.bincount((z[:, :-1].astype(np.int64) * s + z[:, 1:]).ravel(), minlength=s * s).reshape(s, s), h.transition),
    ]:
        keep = counts.sum(1) > 0
        exp = counts[keep].sum(1, keepdims=True) * probs[keep]
        pos = exp > 0
        chi2 = float(((counts[keep][pos] - exp[pos]) ** 2 / exp[pos]).sum())
        dof = int(pos.sum() - keep.sum())
        p = stats.chi2.sf(chi2, dof)
        assert p > 1e-6, f"sampler law check failed: chi2={chi2:.1f} dof={dof} p={p:.2g}"
    rs = np.random.RandomState(0)
    theirs = np.stack([hl.sample(length, random_state=rs)[0][:, 0] for _ in range(64)])
    a, b = -h.log_prob(x) / length, -h.log_prob(theirs) / length
    se = math.hypot(a.std(ddof=1) / math.sqrt(len(a)), b.std(ddof=1) / math.sqrt(len(b)))
    assert abs(a.mean() - b.mean()) < 5 * se, (a.mean(), b.mean(), se)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--states", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--vocab", type=int, default=128)
    ap.add_argument("--sequences", type=int, default=256)
    ap.add_argument("--length", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--sample-seconds", type=float, default=1.0, help="hmmlearn sampling time budget per S")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.sequences, args.length, args.repeats, args.sample_seconds = 32, 256, 2, 0.2
    if args.worker:
        worker(args)
        return

    env = dict(os.environ, RAYON_NUM_THREADS="1")
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--states",
        *map(str, args.states),
        "--vocab",
        str(args.vocab),
        "--sequences",
        str(args.sequences),
        "--length",
        str(args.length),
        "--repeats",
        str(args.repeats),
    ]
    one_core = {
        int(k): v
        for k, v in json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout).items()
    }

    n, t, v = args.sequences, args.length, args.vocab
    tokens = n * t
    fwd_rows, smp_rows = [], []
    for s in args.states:
        h = make_hmm(s, v, seed=s)
        x = h.sample(n, t, seed=1)
        xl = x.reshape(-1, 1).astype(np.int64)
        lengths = [t] * n
        m_log, m_scale = hmmlearn_model(h, "log"), hmmlearn_model(h, "scaling")

        # correctness first: per sequence and in total, both hmmlearn variants
        lp = h.log_prob(x)
        for i in range(4):
            for m in (m_log, m_scale):
                ref = m.score(x[i].reshape(-1, 1).astype(np.int64))
                assert abs(lp[i] - ref) <= 1e-9 * abs(ref), (s, i, lp[i], ref)

        t_dp, lp = best_time(lambda: h.log_prob(x), args.repeats)
        t_log, total_log = best_time(lambda: m_log.score(xl, lengths), 1 if s > 32 else 2)
        t_scale, total_scale = best_time(lambda: m_scale.score(xl, lengths), 1 if s > 32 else 2)
        for total in (total_log, total_scale):
            assert abs(lp.sum() - total) <= 1e-9 * abs(total), (s, lp.sum(), total)
        fwd_rows.append((s, tokens / t_dp, tokens / one_core[s], tokens / t_log, tokens / t_scale))

        # sampling
        check_sampler(h, m_log, t)
        rs = np.random.RandomState(0)
        count, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < args.sample_seconds:
            m_log.sample(t, random_state=rs)
            count += 1
        hl_rate = count * t / (time.perf_counter() - t0)
        big = max(1, int(2.5e8 // t)) if not args.quick else 1024
        h.sample(16, t, seed=0)
        t_smp, _ = best_time(lambda: h.sample(big, t, seed=3), 3)
        smp_rows.append((s, big * t / t_smp, hl_rate, count * t))

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import hmmlearn

    simd = make_hmm(4, 4, 0)._core.simd
    print(
        f"machine: {cpu}, {os.cpu_count()} logical cores; Python {platform.python_version()}, numpy {np.__version__}, "
        f"hmmlearn {hmmlearn.__version__}, dataprobes {dp.__version__} (AVX2 forward path: {simd})"
    )
    print(
        f"data: V = {v}, {n} sequences x {t} tokens = {tokens:,} tokens; log_prob agreement with hmmlearn asserted (rel 1e-9)\n"
    )
    print("Forward log-likelihood (tokens/s; higher is better)\n")
    print(
        "| S | dataprobes log_prob (all cores) | dataprobes (1 core) | hmmlearn score, log | hmmlearn score, scaling | ratio vs log | ratio vs scaling | 1-core ratio vs log |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s, dp_all, dp_one, hl_log, hl_scale in fwd_rows:
        print(
            f"| {s} | {dp_all:.3g} | {dp_one:.3g} | {hl_log:.3g} | {hl_scale:.3g} | {dp_all / hl_log:.0f}x | "
            f"{dp_all / hl_scale:.0f}x | {dp_one / hl_log:.0f}x |"
        )
    print("\nSampling (tokens/s; hmmlearn: one sequence of T tokens per call)\n")
    print("| S | dataprobes sample (all cores) | hmmlearn sample | ratio | hmmlearn tokens timed |")
    print("|---:|---:|---:|---:|---:|")
    for s, dp_rate, hl_rate, hl_tokens in smp_rows:
        print(f"| {s} | {dp_rate:.3g} | {hl_rate:.3g} | {dp_rate / hl_rate:.0f}x | {hl_tokens:,} |")


if __name__ == "__main__":
    main()
