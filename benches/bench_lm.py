"""Diagnostics throughput and memory: dataprobes.lm.excess_loss vs a plain
PyTorch implementation that materialises the true next-token laws of the
whole data set as one [N, T, V] tensor.

Each measurement runs in a fresh subprocess so its peak resident memory is its
own. Results are checked for equality before they are timed.

    python benches/bench_lm.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import time

import numpy as np


def _case(name: str, quick: bool):
    import torch

    import dataprobes as dp

    if name == "markov-128":
        v, n, t = 128, (256 if quick else 4096), 128
        process = dp.MarkovChain.random(v, entropy_rate=2.0, seed=0)
    else:  # iid-50k
        v, n, t = 50_000, (4 if quick else 24), 128
        process = dp.IID.random(v, concentration=0.5, seed=0)
    x = process.sample(n, t, seed=1)
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(v, 32, generator=g)
    out = torch.randn(32, v, generator=g) / 4

    def model(idx: torch.Tensor) -> torch.Tensor:  # a cheap low-rank bigram "LM"
        return emb[idx] @ out

    return process, x, model


def _naive(process, x, model) -> float:
    import torch
    from torch.nn import functional as F

    import dataprobes as dp

    xt = torch.from_numpy(x.astype(np.int64))
    logq = F.log_softmax(model(xt[:, :-1]).double(), dim=-1)
    if isinstance(process, dp.MarkovChain):
        table = torch.tensor(process.transition)
        p = table[xt[:, :-1]]  # [N, T-1, V]: the truth of the whole data set
    else:
        p = torch.tensor(process.probs).expand_as(logq).clone()
    kl = (torch.special.xlogy(p, p) - p * logq).sum(-1)
    return float(kl.mean())


def _ours(process, x, model) -> float:
    from dataprobes.lm import excess_loss

    return excess_loss(model, process, x).kl


def _measure(args: tuple[str, str, bool]) -> dict:
    import torch

    torch.set_num_threads(2)
    case, method, quick = args
    process, x, model = _case(case, quick)
    fn = _ours if method == "dataprobes" else _naive
    fn(process, x[:2], model)  # warm-up
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    best = float("inf")
    value = float("nan")
    for _ in range(2 if quick else 3):
        t0 = time.perf_counter()
        value = fn(process, x, model)
        best = min(best, time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "case": case,
        "method": method,
        "kl": value,
        "seconds": best,
        "tokens": int(x.shape[0] * (x.shape[1] - 1)),
        "peak_mb": peak / 1024,
        "extra_mb": (peak - base) / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    rows = []
    for case in ["markov-128", "iid-50k"]:
        res = {}
        for method in ["dataprobes", "naive"]:
            with ctx.Pool(1) as pool:
                res[method] = pool.map(_measure, [(case, method, args.quick)])[0]
        a, b = res["dataprobes"], res["naive"]
        assert abs(a["kl"] - b["kl"]) <= 1e-9 * max(1.0, abs(b["kl"])), (a["kl"], b["kl"])
        rows.append((case, a, b))
    print(f"# excess_loss vs naive full-truth PyTorch ({platform.processor() or platform.machine()}, 2 threads)\n")
    print(
        "| case | tokens | dataprobes tok/s | naive tok/s | speed ratio | dataprobes peak RSS | naive peak RSS | memory ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for case, a, b in rows:
        ta, tb = a["tokens"] / a["seconds"], b["tokens"] / b["seconds"]
        print(
            f"| {case} | {a['tokens']:,} | {ta:,.0f} | {tb:,.0f} | {ta / tb:.2f}x | {a['peak_mb']:,.0f} MB | {b['peak_mb']:,.0f} MB | {b['peak_mb'] / a['peak_mb']:.1f}x |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"case": c, "dataprobes": a, "naive": b} for c, a, b in rows], f, indent=2)


if __name__ == "__main__":
    main()
