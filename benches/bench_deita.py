"""DEITA diversity filter: ``dataprobes.selection.diversity_filter`` vs a
faithful port of the reference loop (``batch_size=1``).

Data: ``--n`` random Gaussian embeddings of dimension ``--dim`` (float32), the
last ``--dup`` fraction of them planted near-duplicates (a random earlier row
plus ``--sigma`` Gaussian noise: cosine ≈ 0.96–0.98 to their source, far
from the threshold), scores uniform at random; keep ``--budget`` at
threshold ``--threshold``. The port (tests/selection/deita_reference.py: the
reference's own arithmetic — float64 rows sorted by score, the kept rows
re-gathered and converted to float32 every step, both sides normalised twice,
``torch.mm``) runs first and its indices are asserted identical to ours
before any timing counts. The port is slow (about 20 minutes at the
defaults on 2 cores), so it runs ``--port-repeats`` times (default 1) while
ours runs ``--repeats`` times, interleaved around it; medians, spreads and the
ratio of medians are printed with a markdown row for BENCHMARKS.md.

    python benches/bench_deita.py                  # N = 10^5, d = 4096, budget 6000
    python benches/bench_deita.py --quick          # N = 10^4, budget 600 (about a minute)
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
    for r in range(args.port_repeats):
        t = time.perf_counter()
        ref = reference_filter(emb, scores, port_budget, args.threshold)
        t_port.append(time.perf_counter() - t)
        assert np.array_equal(ref, first[:port_budget]), "diversity_filter and the reference port disagree"
        print(f"port run {r + 1}: {t_port[-1]:.1f} s, identical indices ({len(ref)} kept)", flush=True)
        if port_budget < args.budget:  # like for like: ours to the port's budget
            t = time.perf_counter()
            small = diversity_filter(
                emb, scores, port_budget, args.threshold, block_size=args.block_size, progress=False
            )
            t_small.append(time.perf_counter() - t)
            assert np.array_equal(small, ref)
        for _ in range(max(1, (args.repeats - 1) // args.port_repeats)):
            assert np.array_equal(time_ours(), first)
    while len(t_ours) < args.repeats:
        assert np.array_equal(time_ours(), first)

    order = np.argsort(-scores, kind="stable")
    scanned = int(np.flatnonzero(np.isin(order, first[-1:]))[0]) + 1
    mo, mp = statistics.median(t_ours), statistics.median(t_port)
    # the port's work is one gather + product of the kept set per scanned
    # candidate: fit its time per (step x kept row) on the measured run and
    # extrapolate to the full budget (an estimate; printed as such)
    rank = np.empty(args.n, dtype=np.int64)
    rank[order] = np.arange(args.n)
    kept_rank = np.sort(rank[first])
    m_at = np.searchsorted(kept_rank, np.arange(1, scanned), side="left")  # kept before step i
    steps_port = int(kept_rank[min(port_budget, len(first)) - 1])
    work_port, work_full = float(m_at[:steps_port].sum()), float(m_at.sum())
    est_full = mp * work_full / max(work_port, 1.0)
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")
    print(f"kept {len(first)} of {scanned} candidates scanned ({1 - len(first) / scanned:.1%} rejected)")
    print(f"diversity_filter: median {mo:.2f} s, min {min(t_ours):.2f}, max {max(t_ours):.2f} ({len(t_ours)} runs)")
    print(f"reference port:   median {mp:.1f} s, min {min(t_port):.1f}, max {max(t_port):.1f} ({len(t_port)} runs)")
    if t_small:
        ms = statistics.median(t_small)
        print(f"at budget {port_budget}: diversity_filter median {ms:.2f} s; ratio of medians {mp / ms:.0f}x")
        print(
            f"port to budget {args.budget}, extrapolated from its measured time per step x kept row: "
            f"{est_full:.0f} s, {est_full / mo:.0f}x diversity_filter's median"
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
