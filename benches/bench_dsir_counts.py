"""DSIR summed bucket counts (the fitted models): time and peak memory against
the number of buckets, and the counts-only pass against summing the sparse
feature matrix (review of issue 12).

* ``fit_ngram_model(texts, B)`` on ``--docs`` texts of ~200 words at each
  ``B`` of ``--buckets``, each run in a fresh child process with
  ``RAYON_NUM_THREADS=--threads`` (wall seconds, peak RSS). With
  ``--baseline PATH`` the same children also run with ``PYTHONPATH=PATH`` (an
  older checkout's ``python/``, its extension built): the models are asserted
  bit-identical (sha256 of the bytes) before anything is reported.
* ``ngram_bucket_counts`` (counts only, added into one array) against
  ``hashed_ngram_features(rows).sum(0)`` per 2,048 rows (what the corpus layer
  did), on ``--rows`` rows at 10,000 buckets: asserted equal, then timed.

Repeats are interleaved; median and spread (min-max) are reported.

    python benches/bench_dsir_counts.py --baseline ../main/python
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

CHILD = """
import hashlib, json, resource, sys, time
import numpy as np
from dataprobes.selection.dsir import fit_ngram_model
n, b = int(sys.argv[1]), int(sys.argv[2])
texts = [" ".join(f"w{(i * 7919 + j * 31) % 50000}" for j in range(200)) for i in range(n)]
t0 = time.perf_counter()
p = fit_ngram_model(texts, b)
dt = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"s": dt, "rss_mb": rss, "sha": hashlib.sha256(p.tobytes()).hexdigest()}))
"""


def child(pythonpath: str, n: int, b: int, threads: int) -> dict:
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), PYTHONPATH=pythonpath)
    out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(b)], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout)


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=400)
    ap.add_argument("--buckets", default=f"10000,{2**20},{2**25}")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--baseline", help="PYTHONPATH of the build to compare with")
    args = ap.parse_args()
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python")
    builds = {"this": os.path.abspath(here)}
    if args.baseline:
        builds["baseline"] = os.path.abspath(args.baseline)

    print(f"fit_ngram_model on {args.docs} texts, RAYON_NUM_THREADS={args.threads}")
    print("\n| buckets | build | wall s: median (min-max) | peak RSS MB (max) |")
    print("|---|---|---|---|")
    for b in [int(x) for x in args.buckets.split(",")]:
        runs: dict[str, list[dict]] = {k: [] for k in builds}
        for _ in range(args.repeats):
            for name, path in builds.items():
                runs[name].append(child(path, args.docs, b, args.threads))
        shas = {r["sha"] for rs in runs.values() for r in rs if "sha" in r}
        assert len(shas) <= 1, f"models differ between builds at {b} buckets"
        for name, rs in runs.items():
            ok = [r for r in rs if "s" in r]
            if not ok:
                print(f"| {b} | {name} | failed: {rs[0]['error']} | |")
                continue
            print(f"| {b} | {name} | {spread([r['s'] for r in ok])} | {max(r['rss_mb'] for r in ok):.0f} |")

    from dataprobes.selection.dsir import hashed_ngram_features, ngram_bucket_counts

    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(5000)])
    rows = [" ".join(rng.choice(words, int(rng.integers(20, 220)))) for _ in range(args.rows)]

    def via_features() -> np.ndarray:
        total = np.zeros(10_000, dtype=np.int64)
        for lo in range(0, len(rows), 2048):
            total += np.asarray(hashed_ngram_features(rows[lo : lo + 2048]).sum(axis=0), dtype=np.int64).ravel()
        return total

    def counts_only() -> np.ndarray:
        return ngram_bucket_counts(rows)

    assert np.array_equal(via_features(), counts_only())
    times: dict[str, list[float]] = {"features + sum": [], "ngram_bucket_counts": []}
    for _ in range(args.repeats):
        for name, fn in (("features + sum", via_features), ("ngram_bucket_counts", counts_only)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["features + sum"])
    print(f"\n{args.rows} rows, 10,000 buckets, bigrams (asserted equal)\n")
    print("| method | wall s: median (min-max) | ÷ features + sum |")
    print("|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {spread(ts)} | {statistics.median(ts) / base:.2f} |")
    print(f"\nload average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
