"""Memory levels on a fact world: do they rise with exposure?

Pretrains a :class:`~dataprobes.lm.TinyGPT` (``dataprobes.lm.train``, a fresh
stream of sequences every step) on a :class:`~dataprobes.FactWorld` whose
facts have Zipf exposure, then measures every fact's memory level (the
fraction of templates whose greedy completion yields the object, Ye et al.,
arXiv 2409.15825) and reports, per seed and pooled:

* Spearman's rho between exposure and level;
* the memory-bucket mix (five equal-width buckets, our default) of each
  exposure quantile, the mean level and the expected number of statements a
  fact of that quantile was shown in training
  (``FactWorld.expected_counts`` over the training stream).

Before measuring, the batched levels are asserted equal to a one-prompt-at-a-
time evaluation on a subset of facts; the evaluation speed of
``memory_level`` (prompts per second) is timed at batch sizes 1 and 256 with
interleaved repeats (median and min-max).

    python benches/bench_memory_levels.py            # about 8 minutes, 2 seeds
    python benches/bench_memory_levels.py --quick    # smoke test (~1 minute)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")


def build_world(args: argparse.Namespace, seed: int):
    import dataprobes as dp

    background = dp.MarkovChain.random(args.background, seed=seed, concentration=0.5)
    return dp.FactWorld(
        args.facts,
        args.relations,
        args.templates,
        background,
        exposure="zipf",
        zipf_exponent=args.exponent,
        statement_prob=args.statement_prob,
        seed=seed,
    )


def run_seed(args: argparse.Namespace, seed: int) -> dict:
    import torch

    from dataprobes.knowledge import level_exposure_table, memory_buckets, memory_level
    from dataprobes.lm import TinyGPT, train

    torch.set_num_threads(args.threads)
    world = build_world(args, seed)
    torch.manual_seed(seed)
    model = TinyGPT(
        vocab_size=world.vocab_size, max_len=args.seq_len, d_model=args.d_model, n_layers=args.layers, n_heads=4
    )
    t0 = time.perf_counter()
    res = train(
        model,
        world,
        steps=args.steps,
        batch_size=args.batch,
        seq_len=args.seq_len,
        lr=args.lr,
        warmup=min(100, args.steps // 10),
        seed=seed,
        eval_every=args.steps,
        eval_sequences=16,
        progress=False,
    )
    train_s = time.perf_counter() - t0
    # correctness first: batched levels equal one prompt at a time
    subset = np.arange(0, world.num_facts, max(1, world.num_facts // 40))
    a = memory_level(model, world, facts=subset, batch_size=256, progress=False, return_hits=True)[1]
    b = memory_level(model, world, facts=subset, batch_size=1, progress=False, return_hits=True)[1]
    assert np.array_equal(a, b), "batched memory levels differ from one-prompt evaluation"
    # timing: interleaved repeats
    times: dict[int, list[float]] = {1: [], 256: []}
    n_prompts = len(subset) * world.num_templates
    for _ in range(args.repeats):
        for bs in times:
            t1 = time.perf_counter()
            memory_level(model, world, facts=subset, batch_size=bs, progress=False)
            times[bs].append(n_prompts / (time.perf_counter() - t1))
    t2 = time.perf_counter()
    levels = memory_level(model, world, batch_size=256, progress=False)
    level_s = time.perf_counter() - t2
    seen = world.expected_counts(args.steps * args.batch, args.seq_len)
    rep = level_exposure_table(levels, world.exposure, num_quantiles=args.quantiles)
    order = np.argsort(world.exposure, kind="stable")
    groups = np.array_split(order, args.quantiles)
    return {
        "seed": seed,
        "spearman": rep.spearman,
        "table": rep.table.tolist(),
        "mean_level": rep.mean_level.tolist(),
        "seen": [[float(seen[g].min()), float(seen[g].max())] for g in groups],
        "buckets": np.bincount(memory_buckets(levels), minlength=5).tolist(),
        "final_loss": float(res.train_loss[-1]) if getattr(res, "train_loss", None) else None,
        "train_s": train_s,
        "level_s": level_s,
        "prompts_per_s": {str(k): v for k, v in times.items()},
        "vocab_size": world.vocab_size,
        "levels": levels.tolist(),
        "seen_per_fact": seen.tolist(),
    }


def main() -> None:
    from dataprobes.knowledge import memory_buckets

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--facts", type=int, default=1000)
    ap.add_argument("--relations", type=int, default=4)
    ap.add_argument("--templates", type=int, default=6)
    ap.add_argument("--background", type=int, default=16)
    ap.add_argument("--exponent", type=float, default=1.5)
    ap.add_argument("--statement-prob", type=float, default=0.3)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--quantiles", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.quick:
        args.facts, args.steps, args.seeds, args.templates, args.repeats = 120, 150, "0", 4, 2
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"load average before: {os.getloadavg()}")
    runs = [run_seed(args, s) for s in seeds]
    print(f"load average after: {os.getloadavg()}")
    print(
        f"\n# Memory levels vs Zipf exposure ({platform.machine()}, {args.threads} thread(s)): "
        f"F={args.facts}, R={args.relations}, T={args.templates} templates, exponent {args.exponent}, "
        f"q={args.statement_prob}, TinyGPT d={args.d_model} L={args.layers}, {args.steps} steps x {args.batch} x "
        f"{args.seq_len} tokens\n"
    )
    rhos = [r["spearman"] for r in runs]
    print(f"Spearman(exposure, level) per seed: {', '.join(f'{x:.3f}' for x in rhos)}")
    if len(rhos) > 1:
        print(f"mean {statistics.mean(rhos):.3f}, spread {min(rhos):.3f}-{max(rhos):.3f}")
    print(
        "\n| exposure quantile | statements seen in training | mean level | "
        + " | ".join(f"bucket {b} [{b / 5:.1f},{(b + 1) / 5:.1f}{']' if b == 4 else ')'}" for b in range(5))
        + " |"
    )
    print("|---|---:|---:|" + "---:|" * 5)
    q = args.quantiles
    for g in range(q):
        lo = min(r["seen"][g][0] for r in runs)
        hi = max(r["seen"][g][1] for r in runs)
        mean = statistics.mean(r["mean_level"][g] for r in runs)
        mix = np.mean([r["table"][g] for r in runs], axis=0)
        name = "lowest" if g == 0 else "highest" if g == q - 1 else f"Q{g + 1}"
        print(f"| {name} | {lo:,.0f}-{hi:,.0f} | {mean:.3f} | " + " | ".join(f"{m:.2f}" for m in mix) + " |")
    edges = [0, 3, 10, 30, 100, 300, 1000, 3000, np.inf]
    print(
        "\n| statements seen in training | facts (all seeds) | mean level (per seed) | "
        + " | ".join(f"bucket {b}" for b in range(5))
        + " |"
    )
    print("|---|---:|---:|" + "---:|" * 5)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        per_seed, mixes, count = [], [], 0
        for r in runs:
            seen, lv = np.array(r["seen_per_fact"]), np.array(r["levels"])
            sel = (seen >= lo) & (seen < hi)
            count += int(sel.sum())
            if sel.any():
                per_seed.append(float(lv[sel].mean()))
                mixes.append(np.bincount(memory_buckets(lv[sel]), minlength=5) * 1.0)
        if not count:
            continue
        mix = np.sum(mixes, axis=0) / count
        label = f"{lo:,.0f}-{hi:,.0f}" if np.isfinite(hi) else f">= {lo:,.0f}"
        print(
            f"| {label} | {count} | {' / '.join(f'{m:.3f}' for m in per_seed)} | "
            + " | ".join(f"{m:.2f}" for m in mix)
            + " |"
        )
    for r in runs:
        sp = r["prompts_per_s"]
        cells = ", ".join(
            f"batch {k}: {statistics.median(v):,.0f} prompts/s ({min(v):,.0f}-{max(v):,.0f})" for k, v in sp.items()
        )
        ratio = statistics.median(sp["256"]) / statistics.median(sp["1"])
        print(
            f"\nseed {r['seed']}: train {r['train_s']:.0f} s, all levels {r['level_s']:.1f} s; {cells}; "
            f"ratio {ratio:.1f}x; buckets {r['buckets']}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "runs": runs}, f, indent=2)


if __name__ == "__main__":
    main()
