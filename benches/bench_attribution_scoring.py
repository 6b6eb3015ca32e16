"""Streamed top-k scoring vs the naive full-matrix implementation, and store
write throughput.

For each stored-row count and store dtype:

1. write a store of random rows (``StoreWriter``, numpy quantiser; timed
   without the data generation);
2. score ``--queries`` random queries with inner products, once per method,
   each in a fresh subprocess so that its peak memory is its own:

   * ``streamed``: ``dataprobes.attribution.score`` (blocks of ``--block-rows``,
     running top-k);
   * ``numpy``: dequantise the whole store into a float32 [n, dim] array,
     ``S = queries @ X.T``, ``argsort`` each row (the usual naive code);
   * ``torch``: the same with ``torch.topk`` instead of ``argsort`` (the
     strongest naive variant);

   * ``streamed-nocheck`` (with ``--checksums``): ``score(...,
     verify_reads=False)``, i.e. without verifying the per-block xxh3_64
     checksums of what is read; its time next to ``streamed`` (which
     verifies, the default) is the cost of verified reads;

3. assert that the three top-k lists agree (same scores to float32 tolerance,
   every returned id's brute-force score equal to the reported one) before any
   time is reported.

Peak memory is the peak anonymous resident memory (``RssAnon``, sampled every
2 ms) above the level just before the call: the file-backed pages of the
memory-mapped store are page cache, shared and reclaimable, and not counted.

Run from the repository root after ``maturin develop --release``::

    python benches/bench_attribution_scoring.py                 # 200k and 1M rows
    python benches/bench_attribution_scoring.py --rows 200000 --influence
    python benches/bench_attribution_scoring.py --rows 200000 --dtypes int8 --checksums --repeats 7
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

THREADS = os.cpu_count() or 1  # torch / BLAS threads in the timed subprocesses (--threads)
CONFIG = {"projection": {"kind": "bench-random", "seed": 0}, "k": None, "model": "none"}


def _rss_anon() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakSampler:
    def __init__(self) -> None:
        self.base = _rss_anon()
        self.peak = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_anon())
            time.sleep(0.002)

    def __enter__(self) -> PeakSampler:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_anon())

    @property
    def delta(self) -> int:
        return self.peak - self.base


# ----------------------------------------------------------------------------
# child: one method, one store


def _run_method(
    method: str, store, q: np.ndarray, top_k: int, block_rows: int, res: dict
) -> tuple[np.ndarray, np.ndarray]:
    import torch

    from dataprobes.attribution import fit_preconditioner, score

    k = min(top_k, len(store))
    if method == "streamed":
        r = score(store, q, "ip", top_k=k, block_rows=block_rows, device="cpu", query_config=store.config)
        return r.ids, r.scores
    if method == "streamed-nocheck":
        r = score(
            store, q, "ip", top_k=k, block_rows=block_rows, device="cpu", query_config=store.config, verify_reads=False
        )
        return r.ids, r.scores
    if method == "streamed-cosine":
        r = score(store, q, "cosine", top_k=k, block_rows=block_rows, device="cpu", query_config=store.config)
        return r.ids, r.scores
    if method == "streamed-influence":
        t0 = time.perf_counter()
        pre = fit_preconditioner(store, 1e-3, block_rows=block_rows, device="cpu", query_config=store.config)
        res["fit_s"] = time.perf_counter() - t0
        r = score(
            store,
            q,
            "influence",
            top_k=k,
            block_rows=block_rows,
            device="cpu",
            query_config=store.config,
            preconditioner=pre,
        )
        return r.ids, r.scores
    if method == "numpy":
        all_ids, x = store.read()  # dequantise everything: [n, dim] float32
        s = q @ x.T
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
        return all_ids[order], np.take_along_axis(s, order, 1)
    if method == "torch":
        all_ids, x = store.read()
        s = torch.from_numpy(q) @ torch.from_numpy(x).T
        vals, idx = torch.topk(s, k, dim=1)
        return all_ids[idx.numpy()], vals.numpy()
    raise ValueError(method)


def child(method: str, store_dir: str, queries_file: str, top_k: int, block_rows: int, out: str) -> None:
    from dataprobes.attribution import GradientStore, StoreWriter

    store = GradientStore(store_dir)
    q = np.load(queries_file)
    # warm-up on a small store of the same shape (thread pools, BLAS, lazy imports)
    with tempfile.TemporaryDirectory() as d:
        with StoreWriter(d, store.dim, store.dtype, store.config) as w:
            w.append(np.arange(4096), np.random.default_rng(0).standard_normal((4096, store.dim), dtype=np.float32))
        _run_method(method, GradientStore(d), q, top_k, block_rows, {})
    res: dict = {}
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    with PeakSampler() as mem:
        t0 = time.perf_counter()
        ids, scores = _run_method(method, store, q, top_k, block_rows, res)
        res["seconds"] = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    res["peak_bytes"] = mem.delta
    # diagnostics: CPU seconds used (all threads) and major page faults (disk reads)
    res["cpu_s"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    res["majflt"] = ru1.ru_majflt - ru0.ru_majflt
    np.save(out + ".ids.npy", ids)
    np.save(out + ".scores.npy", scores)
    with open(out + ".json", "w") as f:
        json.dump(res, f)


def run_child(method: str, store_dir: Path, queries_file: Path, top_k: int, block_rows: int, work: Path) -> dict:
    out = str(work / f"res-{method}")
    env = {**os.environ, **{v: str(THREADS) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
    cmd = [
        sys.executable,
        __file__,
        "--child",
        method,
        "--store",
        str(store_dir),
        "--queries-file",
        str(queries_file),
        "--top-k",
        str(top_k),
        "--block-rows",
        str(block_rows),
        "--out",
        out,
    ]
    subprocess.run(cmd, check=True, env=env)
    with open(out + ".json") as f:
        res = json.load(f)
    res["ids"] = np.load(out + ".ids.npy")
    res["scores"] = np.load(out + ".scores.npy")
    return res


# ----------------------------------------------------------------------------
# parent


def write_store(
    path: Path, n: int, dim: int, dtype: str, batch: int = 8192, shard_rows: int = 65536
) -> tuple[float, int]:
    from dataprobes.attribution import StoreWriter

    rng = np.random.default_rng(1)
    spent = 0.0
    w = StoreWriter(path, dim, dtype, {**CONFIG, "k": dim}, shard_rows=shard_rows)
    for i in range(0, n, batch):
        b = min(batch, n - i)
        x = rng.standard_normal((b, dim), dtype=np.float32)
        x *= rng.uniform(0.5, 2.0, size=(b, 1)).astype(np.float32)
        t0 = time.perf_counter()
        w.append(np.arange(i, i + b), x)
        spent += time.perf_counter() - t0
    t0 = time.perf_counter()
    w.close()
    spent += time.perf_counter() - t0
    return spent, sum(f.stat().st_size for f in path.iterdir() if f.suffix == ".npy")


def check_agree(ref: dict, other: dict, store_dir: Path, q: np.ndarray, name: str) -> float:
    """Assert ``other`` is a valid top-k with the same scores as ``ref``; return
    the fraction of identical ids (near-ties may swap places)."""
    from dataprobes.attribution import GradientStore

    np.testing.assert_allclose(other["scores"], ref["scores"], rtol=1e-5, atol=1e-4, err_msg=name)
    store = GradientStore(store_dir)
    rows = store.lookup(other["ids"].reshape(-1)).reshape(*other["ids"].shape, -1)
    brute = np.einsum("qkd,qd->qk", rows.astype(np.float64), q.astype(np.float64))
    np.testing.assert_allclose(other["scores"], brute, rtol=1e-5, atol=1e-4, err_msg=name)
    return float((other["ids"] == ref["ids"]).mean())


def fmt_bytes(b: float) -> str:
    return f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:.0f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[200_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--queries", type=int, default=64)
    ap.add_argument("--top-k", type=int, default=100)
    ap.add_argument("--block-rows", type=int, default=16384)
    ap.add_argument("--dtypes", nargs="+", default=["int8", "float16"])
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch/BLAS threads for every method")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved rounds of all methods; the best time is kept")
    ap.add_argument(
        "--naive-max-gib", type=float, default=10.0, help="skip the naive methods above this estimated memory"
    )
    ap.add_argument("--cosine", action="store_true", help="also time streamed cosine")
    ap.add_argument("--checksums", action="store_true", help="also time streamed scoring without verified reads")
    ap.add_argument(
        "--influence", action="store_true", help="also time streamed influence (fit + score) at the smallest size"
    )
    ap.add_argument("--dir", default=None, help="scratch directory for the stores (default: a temporary directory)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--store", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--queries-file", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    global THREADS
    THREADS = args.threads
    if args.child:
        child(args.child, args.store, args.queries_file, args.top_k, args.block_rows, args.out)
        return

    import torch

    work = Path(tempfile.mkdtemp(prefix="bench-attr-", dir=args.dir))
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
        f"numpy {np.__version__}, torch {torch.__version__}; {args.threads} threads per method"
    )
    print(
        f"# dim={args.dim} queries={args.queries} top_k={args.top_k} block_rows={args.block_rows} "
        f"repeats={args.repeats}; scratch {work}"
    )
    q = np.random.default_rng(2).standard_normal((args.queries, args.dim)).astype(np.float32)
    qfile = work / "queries.npy"
    np.save(qfile, q)
    write_rows, score_rows, extra_rows, check_rows = [], [], [], []
    try:
        for n in args.rows:
            for dtype in args.dtypes:
                sdir = work / f"store-{dtype}-{n}"
                secs, nbytes = write_store(sdir, n, args.dim, dtype)
                write_rows.append((n, dtype, n / secs, n * args.dim * 4 / secs, nbytes))
                print(
                    f"write  n={n:>8} {dtype:>7}: {n / secs:10.3e} rows/s  {n * args.dim * 4 / secs / 2**20:7.0f} MiB/s in, "
                    f"store {fmt_bytes(nbytes)}",
                    flush=True,
                )
                naive_bytes = n * args.dim * 4 + args.queries * n * 12
                methods = ["streamed"] + (["numpy", "torch"] if naive_bytes / 2**30 <= args.naive_max_gib else [])
                methods += ["streamed-nocheck"] if args.checksums else []
                best: dict[str, dict] = {}
                times: dict[str, list[float]] = {m: [] for m in methods}
                for _ in range(args.repeats):  # interleaved rounds; best time, largest peak
                    for m in methods:
                        r = run_child(m, sdir, qfile, args.top_k, args.block_rows, work)
                        times[m].append(r["seconds"])
                        print(
                            f"  {m:>8}: {r['seconds']:7.2f} s wall, {r['cpu_s']:7.2f} s cpu, {r['majflt']} major faults",
                            flush=True,
                        )
                        if m in best:
                            r["peak_bytes"] = max(r["peak_bytes"], best[m]["peak_bytes"])
                            if r["seconds"] > best[m]["seconds"]:
                                r = {**best[m], "peak_bytes": r["peak_bytes"]}
                        best[m] = r
                streamed = best.pop("streamed")
                if args.checksums:
                    nocheck = best.pop("streamed-nocheck")
                    check_agree(streamed, nocheck, sdir, q, "streamed without verified reads")
                    on, off = np.array(times["streamed"]), np.array(times["streamed-nocheck"])
                    check_rows.append((n, dtype, on, off))
                    print(
                        f"verify n={n:>8} {dtype:>7}: on median {np.median(on):.3f} s [{on.min():.3f}, {on.max():.3f}], "
                        f"off median {np.median(off):.3f} s [{off.min():.3f}, {off.max():.3f}]: "
                        f"cost {100 * (np.median(on) / np.median(off) - 1):+.1f} % (best {100 * (on.min() / off.min() - 1):+.1f} %)",
                        flush=True,
                    )
                naive = best
                # correctness before any time is reported
                same = {
                    m: check_agree(streamed, r, sdir, q, f"{m} vs streamed n={n} {dtype}") for m, r in naive.items()
                }
                check_agree(streamed, streamed, sdir, q, "streamed self-check")
                row = {"n": n, "dtype": dtype, "streamed": streamed, **naive, "same": same}
                score_rows.append(row)
                line = (
                    f"score  n={n:>8} {dtype:>7}: streamed {n / streamed['seconds']:10.3e} rows/s peak {fmt_bytes(streamed['peak_bytes'])} "
                    f"(cpu/wall {streamed['cpu_s'] / streamed['seconds']:.2f}, majflt {streamed['majflt']})"
                )
                for m, r in naive.items():
                    line += (
                        f" | {m} {n / r['seconds']:10.3e} rows/s peak {fmt_bytes(r['peak_bytes'])} "
                        f"(ids equal {same[m]:.4f})"
                    )
                print(line, flush=True)
                if args.cosine:
                    r = run_child("streamed-cosine", sdir, qfile, args.top_k, args.block_rows, work)
                    extra_rows.append((n, dtype, "cosine", n / r["seconds"], None, r["peak_bytes"]))
                    print(f"score  n={n:>8} {dtype:>7}: streamed cosine {n / r['seconds']:10.3e} rows/s", flush=True)
                if args.influence and n == min(args.rows):
                    r = run_child("streamed-influence", sdir, qfile, args.top_k, args.block_rows, work)
                    extra_rows.append(
                        (n, dtype, "influence", n / (r["seconds"] - r["fit_s"]), r["fit_s"], r["peak_bytes"])
                    )
                    print(
                        f"score  n={n:>8} {dtype:>7}: influence fit {r['fit_s']:.1f} s, score "
                        f"{n / (r['seconds'] - r['fit_s']):10.3e} rows/s",
                        flush=True,
                    )
                shutil.rmtree(sdir)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        "\n| stored rows | dtype | streamed (rows/s) | numpy naive (rows/s) | torch naive (rows/s) | speed vs numpy | "
        "speed vs torch | peak mem streamed | peak mem numpy | peak mem torch | memory ratio (numpy/streamed) |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in score_rows:
        s = row["streamed"]
        cells = [f"{row['n']:,}", row["dtype"], f"{row['n'] / s['seconds']:.3e}"]
        for m in ("numpy", "torch"):
            cells.append(f"{row['n'] / row[m]['seconds']:.3e}" if m in row else "skipped")
        for m in ("numpy", "torch"):
            cells.append(f"**{row[m]['seconds'] / s['seconds']:.1f}×**" if m in row else "–")
        cells.append(fmt_bytes(s["peak_bytes"]))
        for m in ("numpy", "torch"):
            cells.append(fmt_bytes(row[m]["peak_bytes"]) if m in row else "–")
        cells.append(f"**{row['numpy']['peak_bytes'] / max(s['peak_bytes'], 1):.0f}×**" if "numpy" in row else "–")
        print("| " + " | ".join(cells) + " |")
    print("\n| stored rows | dtype | write (rows/s) | float32 input (MiB/s) | store size |")
    print("|---:|---|---:|---:|---:|")
    for n, dtype, rps, bps, nbytes in write_rows:
        print(f"| {n:,} | {dtype} | {rps:.3e} | {bps / 2**20:.0f} | {fmt_bytes(nbytes)} |")
    if check_rows:
        print(
            "\n| stored rows | dtype | runs | verified reads: median (min–max) s | unverified: median (min–max) s | "
            "cost (medians) | cost (best times) |"
        )
        print("|---:|---|---:|---:|---:|---:|---:|")
        for n, dtype, on, off in check_rows:
            print(
                f"| {n:,} | {dtype} | {len(on)} | {np.median(on):.3f} ({on.min():.3f}–{on.max():.3f}) | "
                f"{np.median(off):.3f} ({off.min():.3f}–{off.max():.3f}) | {100 * (np.median(on) / np.median(off) - 1):+.1f} % | "
                f"{100 * (on.min() / off.min() - 1):+.1f} % |"
            )
    if extra_rows:
        print("\n| stored rows | dtype | method | streamed (rows/s) | preconditioner fit (s) | peak mem |")
        print("|---:|---|---|---:|---:|---:|")
        for n, dtype, m, rps, fit, peak in extra_rows:
            print(f"| {n:,} | {dtype} | {m} | {rps:.3e} | {'' if fit is None else f'{fit:.1f}'} | {fmt_bytes(peak)} |")


if __name__ == "__main__":
    main()
