"""Conditional-entropy estimation: dataprobes (Rust) vs the numpy a user would write.

Samples ``--tokens`` tokens of a first-order Markov probe (``--vocab`` tokens,
exact entropy rate ``--entropy-rate`` nats) and, for each order k, times

* ``dp.conditional_entropy(x, k, correction="none")`` (plug-in estimate), and
* the straightforward numpy version: encode the (k+1)-grams of each row as
  int64 codes, ``np.unique(codes, return_counts=True)``, then the plug-in
  entropy from the counts (context = code // V).

Both are checked to agree (to 1e-9 nats) before anything is timed. Runs are
interleaved (``--repeats-ours / --repeats`` dataprobes calls per numpy call);
the minimum and median wall time are reported, with the process CPU time per call (all threads; the numpy version
is single-threaded, dataprobes uses every rayon thread). These machines are
shared and noisy: compare the ratio, and check the load average printed with
the results. Prints a markdown table for BENCHMARKS.md.

    python benches/bench_entropy.py                      # 10^8 tokens, orders 1 2
    python benches/bench_entropy.py --tokens 10000000    # if memory is tight
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

import dataprobes as dp


def numpy_conditional_entropy(x: np.ndarray, order: int, vocab: int) -> float:
    """Plug-in H(X_t | previous `order` tokens) in nats, the plain numpy way."""
    rows, length = x.shape
    k = order
    codes = np.zeros((rows, length - k), dtype=np.int64)
    for j in range(k + 1):
        codes *= vocab
        codes += x[:, j : length - k + j]
    grams, counts = np.unique(codes.ravel(), return_counts=True)
    _, ctx_index = np.unique(grams // vocab, return_inverse=True)
    ctx_counts = np.bincount(ctx_index, weights=counts)
    n = counts.sum()
    return float(-np.sum(counts / n * np.log(counts / ctx_counts[ctx_index])))


def numpy_profile(x: np.ndarray, max_order: int, vocab: int) -> np.ndarray:
    return np.array([numpy_conditional_entropy(x, k, vocab) for k in range(max_order + 1)])


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=100_000_000)
    ap.add_argument("--length", type=int, default=1_000_000, help="tokens per sequence")
    ap.add_argument("--vocab", type=int, default=128)
    ap.add_argument("--entropy-rate", type=float, default=2.0)
    ap.add_argument(
        "--zipf",
        type=float,
        default=None,
        help="instead of the Markov probe: i.i.d. Zipf(s) tokens over --vocab (a tokenised corpus's "
        "unigram shape; with V = 50257 order 1 takes the sparse path)",
    )
    ap.add_argument("--orders", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--profile", type=int, default=2, help="also time entropy_profile up to this order (-1: skip)")
    ap.add_argument("--repeats", type=int, default=7, help="timed numpy runs per case")
    ap.add_argument(
        "--repeats-ours",
        type=int,
        default=21,
        help="timed dataprobes runs per case (interleaved with the numpy runs; they are "
        "short, and a 2-thread call needs both cores free to show its time)",
    )
    args = ap.parse_args()

    v = args.vocab
    rows = max(1, args.tokens // args.length)
    if args.zipf is None:
        process = dp.MarkovChain.random(v, entropy_rate=args.entropy_rate, seed=0)
    else:
        w = 1.0 / np.arange(1, v + 1) ** args.zipf
        process = dp.IID(w / w.sum())
    x = process.sample(rows, args.length, seed=1)
    ntok = x.size
    threads = os.environ.get("RAYON_NUM_THREADS", str(os.cpu_count()))
    print(f"load average (1, 5, 15 min) at the start: {os.getloadavg()}")
    print(
        f"# {ntok:,} tokens ({rows} x {args.length}, {x.dtype}), {process!r}, exact entropy rate "
        f"{process.entropy_rate():.6f} nats; CPU: {cpu_model()}, {os.cpu_count()} cores, "
        f"rayon threads: {threads}; numpy {np.__version__}"
    )

    cases = []
    for k in args.orders:
        cases.append(
            (
                f"conditional_entropy, order {k}",
                lambda k=k: dp.conditional_entropy(x, k, correction="none").value,
                lambda k=k: numpy_conditional_entropy(x, k, v),
            )
        )
    if args.profile >= 0:
        m = args.profile
        cases.append(
            (
                f"entropy_profile, orders 0..{m}",
                lambda m=m: dp.entropy_profile(x, m, correction="none"),
                lambda m=m: numpy_profile(x, m, v),
            )
        )

    rows_out = []
    for name, ours, base in cases:
        a, b = np.asarray(ours()), np.asarray(base())  # also warms up
        err = float(np.max(np.abs(a - b)))
        assert err < 1e-9, (name, a, b)
        t_ours, t_base, c_ours, c_base = [], [], [], []
        per = max(1, args.repeats_ours // args.repeats)
        for _ in range(args.repeats):
            for _ in range(per):
                t, c = time.perf_counter(), time.process_time()
                ours()
                t_ours.append(time.perf_counter() - t)
                c_ours.append(time.process_time() - c)
            t, c = time.perf_counter(), time.process_time()
            base()
            t_base.append(time.perf_counter() - t)
            c_base.append(time.process_time() - c)
        to, tb = min(t_ours), min(t_base)
        tom, tbm = statistics.median(t_ours), statistics.median(t_base)
        co, cb = statistics.median(c_ours), statistics.median(c_base)
        rows_out.append((name, float(np.ravel(a)[-1]), err, to, tom, co, tb, tbm, cb))
        print(
            f"{name}: dataprobes {to * 1e3:.1f} ms (median {tom * 1e3:.1f}, cpu {co * 1e3:.0f}), "
            f"numpy {tb * 1e3:.1f} ms (median {tbm * 1e3:.1f}, cpu {cb * 1e3:.0f}), ratio {tb / to:.1f}x, "
            f"max |diff| {err:.1e}",
            flush=True,
        )

    print()
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")
    print()
    print(
        "| case | estimate (nats) | max \\|diff\\| vs numpy | dataprobes: wall min (median); cpu | tokens/s | "
        "numpy: wall min (median); cpu | tokens/s | speed-up, wall min / median |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, est, err, to, tom, co, tb, tbm, cb in rows_out:
        print(
            f"| {name} | {est:.6f} | {err:.1e} | {to * 1e3:.0f} ms ({tom * 1e3:.0f}); {co * 1e3:.0f} ms | "
            f"{ntok / to / 1e9:.2f} G | {tb * 1e3:.0f} ms ({tbm * 1e3:.0f}); {cb * 1e3:.0f} ms | {ntok / tb / 1e6:.0f} M | "
            f"**{tb / to:.0f}x** / {tbm / tom:.0f}x |"
        )


if __name__ == "__main__":
    main()
