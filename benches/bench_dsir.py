"""DSIR featurisation + weighting: dataprobes (Rust) vs the reference package
``data-selection`` on the same JSONL file.

Writes a synthetic corpus (``--mb`` MB of English-like text: Zipf words,
punctuation, some accented and Greek words; one JSON object per line) and a
target, fits both bag-of-n-gram models once, then times the work DSIR spends
its hours on: featurise every raw example and compute its log importance
weight.

* reference: ``get_ngram_counts`` + ``np.dot(log_diff, features)`` per
  example, exactly ``HashedNgramDSIR.compute_importance_weights`` in one
  process (``--ref-mb`` MB of the file: it runs at ~1 MB/s);
* dataprobes: ``log_importance_weights`` in ``sha256`` mode (the reference's
  buckets) and ``fast`` mode, timed in child processes at each
  ``RAYON_NUM_THREADS`` of ``--threads``; and on token ids (a 2-D uint32 array
  of ``--tokens`` ids, fast hash).

Before timing, the sha256 weights are asserted equal to the reference's on the
reference's share of the file (to 1e-12 relative to Σ_j |h_j log_ratio_j|),
and the length filter to agree. Repeats are interleaved between the modes; the
median and spread (min-max) are reported, as MB/s per core (text bytes in
UTF-8 of the ``text`` fields) and ratios to the reference. On a shared machine
wall-clock rates depend on the other jobs, so each row also gives the rate per
CPU-second of the process (``time.process_time``, all threads); the load
average is printed before and after.

    python benches/bench_dsir.py                 # 64 MB, threads 1 and all
    python benches/bench_dsir.py --quick         # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dataprobes.selection.dsir import fit_ngram_model, log_importance_weights, ngram_log_ratio

WORDS = (
    "the of and to in a is that for it as was with be by on not he I this are or his from at which but have an "
    "they you were her she there one all we their been has would when who will more if no out so said what up its "
    "about into than them can only other time new some could these two may first then do any like my now over such "
    "our man me even most made after also did many before must through back years where much your way well down "
    "should because each just those people Mr how too little state good very make world still own see men work long "
    "get here between both life being under never day same another know while last might us great old year off come "
    "since against go came right used take three café naïve über résumé ΟΔΟΣ λόγος"
).split()
PUNCT = [".", ",", ",", ".", "!", "?", ";", ":", "'s", "--", "(", ")", '"']


def make_docs(mb: float, seed: int, skew: float = 1.1) -> list[str]:
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, len(WORDS) + 1)
    p = ranks ** (-skew)
    p /= p.sum()
    perm = rng.permutation(len(WORDS))
    docs: list[str] = []
    size = 0
    while size < mb * 1e6:
        n = int(rng.integers(20, 600))
        w = np.asarray(WORDS)[perm[rng.choice(len(WORDS), size=n, p=p)]]
        punct = rng.random(n) < 0.12
        toks = [f"{x} {PUNCT[int(rng.integers(len(PUNCT)))]}" if q else str(x) for x, q in zip(w, punct, strict=True)]
        doc = " ".join(toks).capitalize()
        docs.append(doc)
        size += len(doc.encode("utf-8"))
    return docs


def write_jsonl(path: Path, docs: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"text": d}) + "\n")


def read_jsonl(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def nbytes(docs: list[str]) -> int:
    return sum(len(d.encode("utf-8")) for d in docs)


def child(args: argparse.Namespace) -> None:
    """Times dataprobes at this process's RAYON_NUM_THREADS; prints JSON."""
    docs = read_jsonl(Path(args.raw))
    lr = np.load(args.log_ratio)
    ids = np.random.default_rng(0).integers(0, 50_000, size=(args.tokens // 1024, 1024)).astype(np.uint32)
    lr_ids = np.random.default_rng(1).normal(size=lr.size)
    out: dict[str, list[float]] = {m: [] for m in ("fast", "sha256", "ids", "fast_cpu", "sha256_cpu", "ids_cpu")}
    log_importance_weights(docs[:100], lr, hash="fast")  # warm the pool
    for _ in range(args.repeats):
        for mode in ("fast", "sha256", "ids"):
            c0, t0 = time.process_time(), time.perf_counter()
            if mode == "ids":
                log_importance_weights(ids, lr_ids, hash="fast", min_example_length=0, progress=False)
            else:
                log_importance_weights(docs, lr, hash=mode, progress=False)
            out[mode].append(time.perf_counter() - t0)
            out[f"{mode}_cpu"].append(time.process_time() - c0)
    print(json.dumps(out))


def summary(times: list[float], amount: float, cores: int) -> tuple[float, float, float]:
    rates = [amount / t / cores for t in times]
    return statistics.median(rates), min(rates), max(rates)


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=64.0, help="raw corpus size timed for dataprobes (MB)")
    ap.add_argument("--ref-mb", type=float, default=2.0, help="share of the file the reference is timed on (MB)")
    ap.add_argument("--tokens", type=int, default=64 * 2**20, help="token ids for the token-id mode")
    ap.add_argument("--threads", default=f"1,{os.cpu_count()}", help="RAYON_NUM_THREADS values")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--raw", help=argparse.SUPPRESS)
    ap.add_argument("--log-ratio", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    if args.quick:
        args.mb, args.ref_mb, args.tokens, args.repeats = 4.0, 0.3, 2**20, 2
    from data_selection.hashed_ngram_dsir import get_ngram_counts

    load_before = loadavg()

    with tempfile.TemporaryDirectory() as tmp:
        raw_path = Path(tmp) / "raw.jsonl"
        write_jsonl(raw_path, make_docs(args.mb, seed=0))
        target = make_docs(max(args.mb / 16, 0.2), seed=1, skew=1.4)
        docs = read_jsonl(raw_path)
        ref_docs = []
        for d in docs:
            if nbytes(ref_docs) >= args.ref_mb * 1e6:
                break
            ref_docs.append(d)
        gamma = fit_ngram_model(target, hash="sha256")
        beta = fit_ngram_model(docs, hash="sha256")
        lr = ngram_log_ratio(gamma, beta)
        lr_path = Path(tmp) / "log_ratio.npy"
        np.save(lr_path, lr)

        # correctness first: the reference's weights and length filter
        t0 = time.perf_counter()
        ref_w, ref_len = [], []
        for d in ref_docs:
            f = get_ngram_counts(d, n=2, num_buckets=10_000)
            ref_w.append(np.dot(lr, f))
            ref_len.append((f.sum() + 1) // 2)
        ref_time = time.perf_counter() - t0
        ref_w_arr = np.asarray(ref_w)
        ours = log_importance_weights(ref_docs, lr, hash="sha256", min_example_length=0)
        scale = np.asarray([np.abs(lr[get_ngram_counts(d, 2, 10_000) > 0]).sum() for d in ref_docs[:50]])
        assert np.all(np.abs(ours[:50] - ref_w_arr[:50]) <= 1e-12 * scale * 50 + 1e-12)
        np.testing.assert_allclose(ours, ref_w_arr, rtol=1e-11, atol=1e-8)
        filt = log_importance_weights(ref_docs, lr, hash="sha256")
        assert np.array_equal(np.isfinite(filt), np.asarray(ref_len) >= 100)
        ref_rate = nbytes(ref_docs) / 1e6 / ref_time
        print(f"asserted: sha256 weights and length filter equal data-selection's on {len(ref_docs)} examples")

        raw_mb = nbytes(docs) / 1e6
        rows = []
        for threads in [int(t) for t in args.threads.split(",")]:
            env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
            cmd = [sys.executable, __file__, "--child", "--raw", str(raw_path), "--log-ratio", str(lr_path)]
            cmd += ["--tokens", str(args.tokens), "--repeats", str(args.repeats)]
            res = json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)
            for mode in ("fast", "sha256", "ids"):
                amount, unit, fmt = (args.tokens / 1e6, "M tok/s", ".0f") if mode == "ids" else (raw_mb, "MB/s", ".1f")
                med, lo, hi = summary(res[mode], amount, threads)
                cpu, _, _ = summary(res[f"{mode}_cpu"], amount, 1)
                name = "dataprobes token ids (fast)" if mode == "ids" else f"dataprobes {mode}"
                rate = f"{med:{fmt}} {unit} ({lo:{fmt}}-{hi:{fmt}})"
                rows.append((name, threads, rate, f"{cpu:{fmt}} {unit}", None if mode == "ids" else med / ref_rate))
    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"load average (1, 5, 15 min): before {load_before}, after {loadavg()}")
    print(f"raw {raw_mb:.1f} MB ({len(docs)} examples); reference on {nbytes(ref_docs) / 1e6:.2f} MB")
    print("\n| method | threads | per core (wall): median (min-max) | per CPU-second | vs data-selection per core |")
    print("|---|---|---|---|---|")
    print(f"| data-selection 1.0.3 (sha256) | 1 | {ref_rate:.2f} MB/s | | 1x |")
    for name, th, rate, cpu, ratio in rows:
        print(f"| {name} | {th} | {rate} | {cpu} | {'' if ratio is None else f'{ratio:.0f}x'} |")


if __name__ == "__main__":
    main()
