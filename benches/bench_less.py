"""LESS (``dataprobes.selection.less``): batched feature capture vs LESS's
batch-1 loop, and streamed ``less_scores`` vs the dense reference.

1. **Features.** ``less_features`` on a warmed-up TinyGPT (Adam feature Γ,
   flat SJLT capture, variable-length right-padded rows) with ``batch_size=B``
   against ``batch_size=1`` (what the LESS code does: one forward/backward
   per example). The outputs are asserted equal (atol 1e-6) before timing;
   repeats are interleaved; rows/s median and spread, and the ratio.
2. **Scores.** ``less_scores`` (task-mean unit vectors, train rows streamed
   in blocks) against the dense reference computation (the full ``N × M``
   cosine matrix per checkpoint, weighted sum, per-task means, max), asserted
   equal (1e-9) before timing; median time and the peak traced allocation
   (``tracemalloc``, which numpy reports to) of each.

Run from the repository root::

    python benches/bench_less.py            # about two minutes on 2 cores
    python benches/bench_less.py --quick    # seconds
    python benches/bench_less.py --threads 1  # one torch thread (a loaded machine)
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch


def _timed(fn, repeats: int, *others):
    """Interleave ``fn`` with ``others`` over ``repeats`` rounds; seconds per call for each."""
    fns = (fn, *others)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, f in enumerate(fns):
            t0 = time.perf_counter()
            f()
            times[i].append(time.perf_counter() - t0)
    return times


def _fmt(ts: list[float], unit: float = 1.0) -> str:
    med = statistics.median(ts)
    return f"{unit / med:10.1f} ({unit / max(ts):.1f}-{unit / min(ts):.1f})"


def bench_features(args: argparse.Namespace) -> None:
    import dataprobes as dp
    from dataprobes.lm import TinyGPT
    from dataprobes.selection import less_features, less_warmup

    p = dp.MarkovChain.random(32, entropy_rate=1.5, seed=0)
    n = 64 if args.quick else args.rows
    rows = p.sample(max(n, 200), args.seq_len, seed=1).astype(np.int64)[:n]
    lengths = np.random.default_rng(2).integers(args.seq_len // 2, args.seq_len + 1, n)
    torch.manual_seed(0)
    model = TinyGPT(vocab_size=32, max_len=args.seq_len, d_model=args.d_model, n_layers=2, n_heads=2)
    with tempfile.TemporaryDirectory() as tmp:
        pool = p.sample(400, args.seq_len, seed=3).astype(np.int64)
        warm = less_warmup(model, pool, p, fraction=0.1, epochs=1, seed=0, checkpoint_dir=Path(tmp), progress=False)
        kw = {"kind": "train", "k": args.k, "lengths": lengths, "progress": False, "backend": "torch"}
        ck = warm.checkpoints[:1]
        batched = less_features(model, ck, rows, batch_size=args.batch, **kw)[0]
        single = less_features(model, ck, rows, batch_size=1, **kw)[0]
        err = float(np.abs(batched - single).max())
        assert err < 1e-6, err
        tb, t1 = _timed(
            lambda: less_features(model, ck, rows, batch_size=args.batch, **kw),
            1 if args.quick else args.repeats,
            lambda: less_features(model, ck, rows, batch_size=1, **kw),
        )
    raw = sum(m.weight.numel() for nm, m in model.named_modules() if isinstance(m, torch.nn.Linear) and nm != "head")
    print(
        f"\n## features: TinyGPT d={args.d_model} (2 layers, {raw} captured weights), {n} rows of "
        f"{args.seq_len // 2}-{args.seq_len} tokens, k={args.k}, max |batched - batch-1| = {err:.1e}"
    )
    print(f"{'method':<22}{'rows/s median (range)':>28}")
    print(f"{f'batched (B={args.batch})':<22}{_fmt(tb, n):>28}")
    print(f"{'batch-1 (LESS)':<22}{_fmt(t1, n):>28}")
    print(f"ratio batched / batch-1 (medians): {statistics.median(t1) / statistics.median(tb):.2f}x")


def _dense(train, val, w, tasks):
    w = np.asarray(w) / np.sum(w)
    total = 0.0
    for wi, a, b in zip(w, train, val, strict=True):
        a, b = a.astype(np.float64), b.astype(np.float64)
        a /= np.linalg.norm(a, axis=1, keepdims=True)
        b /= np.linalg.norm(b, axis=1, keepdims=True)
        total = total + wi * (a @ b.T)  # [N, M]
    return np.max(np.stack([total[:, t].mean(axis=1) for t in tasks], axis=1), axis=1)


def bench_scores(args: argparse.Namespace) -> None:
    from dataprobes.selection import less_scores

    n = 2000 if args.quick else args.train_rows
    m, dim, c, j = args.val_rows, args.dim, args.checkpoints, args.tasks
    rng = np.random.default_rng(0)
    train = [rng.standard_normal((n, dim), dtype=np.float32) for _ in range(c)]
    val = [rng.standard_normal((m, dim), dtype=np.float32) for _ in range(c)]
    sizes = rng.integers(1, 2 * m // j, j)
    tasks = [rng.choice(m, size=int(s), replace=False) for s in sizes]
    w = rng.uniform(1e-5, 2e-5, c)
    ours = less_scores(train, val, w, tasks)
    ref = _dense(train, val, w, tasks)
    err = float(np.abs(ours - ref).max())
    assert err < 1e-9, err
    peaks = {}
    for name, f in (
        ("streamed", lambda: less_scores(train, val, w, tasks)),
        ("dense", lambda: _dense(train, val, w, tasks)),
    ):
        tracemalloc.start()
        f()
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    ts, td = _timed(
        lambda: less_scores(train, val, w, tasks),
        1 if args.quick else args.repeats,
        lambda: _dense(train, val, w, tasks),
    )
    print(
        f"\n## scores: N={n} train x M={m} val rows, dim={dim}, {c} checkpoints, {j} tasks "
        f"(sizes {sizes.min()}-{sizes.max()}), max |streamed - dense| = {err:.1e}"
    )
    print(f"{'method':<12}{'s median (range)':>24}{'peak MiB':>10}")
    for name, t in (("streamed", ts), ("dense", td)):
        med = statistics.median(t)
        print(f"{name:<12}{med:>10.3f} ({min(t):.3f}-{max(t):.3f}){peaks[name] / 2**20:>10.1f}")
    print(
        f"ratio dense / streamed: time {statistics.median(td) / statistics.median(ts):.2f}x, "
        f"peak memory {peaks['dense'] / peaks['streamed']:.1f}x"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke test in seconds")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rows", type=int, default=256, help="rows whose features are captured")
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--d-model", type=int, default=32)
    ap.add_argument("--k", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--train-rows", type=int, default=50000)
    ap.add_argument("--val-rows", type=int, default=512)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--checkpoints", type=int, default=4)
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--skip", choices=("features", "scores"), default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# bench_less: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}")
    if args.skip != "features":
        bench_features(args)
    if args.skip != "scores":
        bench_scores(args)


if __name__ == "__main__":
    main()
