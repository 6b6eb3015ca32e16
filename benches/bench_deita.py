"""DEITA diversity filter: ``dataprobes.selection.diversity_filter`` vs a
faithful port of the reference loop (``batch_size=1``).

Data: ``--n`` random Gaussian embeddings of dimension ``--dim`` (float32), a
fraction ``--dup`` of them, at random positions, in planted clusters of
``--cluster`` near-duplicates (a random centre plus ``--sigma`` Gaussian
noise: cosine ≈ 0.96 within a cluster, ≈ 0 ± 0.02 otherwise, far from the
threshold), scores uniform at random; keep ``--budget`` at
threshold ``--threshold``. The port (tests/selection/deita_reference.py: the
reference's own arithmetic — float64 rows sorted by score, the kept rows
re-gathered and converted to float32 every step, both sides normalised twice,
``torch.mm``) runs after our first run and its indices are asserted
identical to ours before any ratio is reported.

The port's cost is quadratic in the budget (hours at the defaults on 2
cores), so ``--port-budget k`` runs it to a smaller budget: the greedy is
prefix-closed (budget k keeps the first k of what a larger budget keeps), so
its indices are asserted equal to our first k, ours is also timed to k (before
and after the port: like for like), and the port's full-budget time is
bounded below by its mean step so far times the number of steps (a step's
cost only grows with the kept set). Medians, spreads and ratios are printed
with a markdown row for BENCHMARKS.md.

    python benches/bench_deita.py --port-budget 1000   # N = 10^5, d = 4096, budget 6000
    python benches/bench_deita.py --quick              # N = 10^4, budget 600, full port (minutes)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dataprobes.selection import diversity_filter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "selection"))
from deita_reference import reference_filter  # noqa: E402


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def make_data(n: int, dim: int, dup: float, cluster: int, sigma: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian rows; a fraction ``dup`` of them, at random positions, in clusters
    of ``cluster`` near-duplicates (a random centre plus ``sigma`` noise per
    coordinate: cosine ≈ 1 / (1 + sigma²) between members)."""
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, dim), dtype=np.float32)
    members = rng.permutation(n)[: int(dup * n)]
    centres = rng.standard_normal((max(1, len(members) // cluster), dim), dtype=np.float32)
    which = rng.integers(0, len(centres), len(members))
    for lo in range(0, len(members), 4096):  # in chunks: no second full-size array
        rows = members[lo : lo + 4096]
        emb[rows] = centres[which[lo : lo + 4096]] + sigma * emb[rows]
    return emb, rng.random(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--budget", type=int, default=6000)
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--dup", type=float, default=0.3, help="fraction of rows in near-duplicate clusters")
    ap.add_argument("--cluster", type=int, default=30, help="rows per near-duplicate cluster")
    ap.add_argument("--sigma", type=float, default=0.2, help="noise of a near-duplicate (relative to the row scale)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of diversity_filter")
    ap.add_argument("--port-repeats", type=int, default=1, help="timed runs of the reference port")
    ap.add_argument(
        "--port-budget", type=int, default=None, help="run the port to this budget only (default: --budget)"
    )
    ap.add_argument("--block-size", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="N = 10^4, budget 600")
    ap.add_argument("--json", type=Path, default=None, help="write every measurement here")
    args = ap.parse_args()
    if args.quick:
        args.n, args.budget = 10_000, 600

    emb, scores = make_data(args.n, args.dim, args.dup, args.cluster, args.sigma, args.seed)
    print(f"load average (1, 5, 15 min) at the start: {os.getloadavg()}")
    print(
        f"# N={args.n:,} d={args.dim} budget={args.budget} threshold={args.threshold} dup={args.dup} "
        f"sigma={args.sigma}; CPU: {cpu_model()}, {os.cpu_count()} cores; numpy {np.__version__}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)",
        flush=True,
    )

    def ours() -> np.ndarray:
        return diversity_filter(emb, scores, args.budget, args.threshold, block_size=args.block_size, progress=False)

    # the greedy is prefix-closed: with budget k it keeps the first k of what a
    # larger budget keeps, so the port can be checked (and timed) to a smaller one
    port_budget = args.budget if args.port_budget is None else args.port_budget

    t_ours: list[float] = []
    t_port: list[float] = []

    def time_ours() -> np.ndarray:
        t = time.perf_counter()
        out = ours()
        t_ours.append(time.perf_counter() - t)
        return out

    first = time_ours()
    print(f"diversity_filter run 1: {t_ours[-1]:.2f} s, {len(first)} kept", flush=True)
    t_small: list[float] = []

    def time_small() -> None:
        if port_budget < args.budget:  # like for like: ours to the port's budget, before and after it
            t = time.perf_counter()
            small = diversity_filter(
                emb, scores, port_budget, args.threshold, block_size=args.block_size, progress=False
            )
            t_small.append(time.perf_counter() - t)
            assert np.array_equal(small, first[:port_budget])

    for r in range(args.port_repeats):
        time_small()
        t = time.perf_counter()
        ref = reference_filter(emb, scores, port_budget, args.threshold)
        t_port.append(time.perf_counter() - t)
        assert np.array_equal(ref, first[:port_budget]), "diversity_filter and the reference port disagree"
        print(f"port run {r + 1}: {t_port[-1]:.1f} s, identical indices ({len(ref)} kept)", flush=True)
        time_small()
        for _ in range(max(1, (args.repeats - 1) // args.port_repeats)):
            assert np.array_equal(time_ours(), first)
    while len(t_ours) < args.repeats:
        assert np.array_equal(time_ours(), first)

    order = np.argsort(-scores, kind="stable")
    scanned = int(np.flatnonzero(np.isin(order, first[-1:]))[0]) + 1
    mo, mp = statistics.median(t_ours), statistics.median(t_port)
    # a lower bound for the port at the full budget: its step cost grows with
    # the kept set, so each later step costs at least its mean step so far
    rank = np.empty(args.n, dtype=np.int64)
    rank[order] = np.arange(args.n)
    kept_rank = np.sort(rank[first])
    steps_port = int(kept_rank[min(port_budget, len(first)) - 1])  # the port starts at step 1
    bound_full = mp * (scanned - 1) / max(steps_port, 1)
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")
    print(f"kept {len(first)} of {scanned} candidates scanned ({1 - len(first) / scanned:.1%} rejected)")
    print(f"diversity_filter: median {mo:.2f} s, min {min(t_ours):.2f}, max {max(t_ours):.2f} ({len(t_ours)} runs)")
    print(f"reference port:   median {mp:.1f} s, min {min(t_port):.1f}, max {max(t_port):.1f} ({len(t_port)} runs)")
    if t_small:
        ms = statistics.median(t_small)
        print(
            f"at budget {port_budget}: diversity_filter median {ms:.2f} s, min {min(t_small):.2f}, "
            f"max {max(t_small):.2f} ({len(t_small)} runs); ratio of medians {mp / ms:.0f}x"
        )
        print(
            f"port to budget {args.budget}: at least {bound_full:.0f} s ({scanned - 1} steps at no less than "
            f"its mean step to {port_budget}, {steps_port} steps), >= {bound_full / mo:.0f}x diversity_filter's median"
        )
    else:
        print(f"ratio of medians: {mp / mo:.0f}x")
    print()
    print(
        "| N | d | budget | scanned | rejected | port budget | port (s) | diversity_filter at the port's budget (s) "
        "| speed-up | diversity_filter at budget (s), median [min–max] |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    same = statistics.median(t_small) if t_small else mo
    print(
        f"| {args.n:,} | {args.dim} | {args.budget:,} | {scanned:,} | {1 - len(first) / scanned:.1%} | "
        f"{port_budget:,} | {mp:.0f} | {same:.2f} | **{mp / same:.0f}×** | "
        f"{mo:.2f} [{min(t_ours):.2f}–{max(t_ours):.2f}] |"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "ours": t_ours,
                    "port": t_port,
                    "ours_at_port_budget": t_small,
                }
            )
        )


if __name__ == "__main__":
    main()
