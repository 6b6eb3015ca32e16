"""MinHash LSH near-duplicate detection: dataprobes (Rust) vs ``datasketch``
and ``rensa`` on the same documents and the same shingles.

Generates ``--docs`` English-like documents (Zipf words over a 20,000-word
vocabulary, 50–400 words each) of which ``--dup-frac`` are edited copies of
earlier ones (2% of words replaced), and times the whole near-duplicate pass,
shingling included (word 5-shingles of ``re.findall(r"\\w+|[^\\w\\s]+",
text.lower())``, 128 permutations, threshold 0.8):

* datasketch: per document the shingles in Python, ``MinHash.update_batch``
  and ``MinHashLSH.insert``, then ``query`` for every document (on the first
  ``--ref-docs`` documents: it runs at ~1,500 documents/s);
* rensa: the same shingles in Python, ``RMinHash.digest_matrix_from_token_sets``
  and ``RMinHashLSH.query_duplicate_flags_matrix_one_shot`` (16 bands: rensa
  needs the band count to divide ``num_perm``; and, for
  reference, the same without the Python shingling: rensa's own share);
* dataprobes: ``near_duplicates`` on the texts (shingling in Rust), in child
  processes at each ``RAYON_NUM_THREADS`` of ``--threads``, fast scheme and
  ``compat="datasketch"``.

Before timing, dataprobes' ``compat="datasketch"`` signatures are asserted
equal to datasketch's on the reference documents, and its LSH candidate pairs
(``verify=False``, the same bands and rows) equal to the pairs datasketch's
``MinHashLSH.query`` returns. Repeats are interleaved between the methods; the
median and spread (min–max) are reported as documents/s with ratios, and
documents per CPU-second of the process (``time.process_time``, all threads):
on a loaded shared machine the wall-clock rates follow the other jobs.

    python benches/bench_dedup.py                # 50,000 documents
    python benches/bench_dedup.py --quick        # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dataprobes.metrics.dedup import minhash, near_duplicates, optimal_bands

WORD = re.compile(r"\w+|[^\w\s]+")
NGRAM, NUM_PERM, THRESHOLD, SEED = 5, 128, 0.8, 1


def make_docs(n: int, dup_frac: float, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(20000)])
    p = 1.0 / np.arange(1, vocab.size + 1) ** 1.05
    p /= p.sum()
    docs: list[str] = []
    for _ in range(n):
        if docs and rng.random() < dup_frac:
            words = docs[int(rng.integers(len(docs)))].split()
            for i in rng.choice(len(words), size=max(1, len(words) // 50), replace=False):
                words[i] = f"x{rng.integers(1 << 40)}"
            docs.append(" ".join(words))
        else:
            docs.append(" ".join(vocab[rng.choice(vocab.size, size=int(rng.integers(50, 400)), p=p)]).capitalize())
    return docs


def shingle_strings(doc: str) -> list[str]:
    toks = WORD.findall(doc.lower())
    return [" ".join(toks[i : i + NGRAM]) for i in range(max(len(toks) - NGRAM + 1, 1))] if toks else []


def run_datasketch(docs: list[str]) -> set[tuple[int, int]]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    sketches = []
    for i, d in enumerate(docs):
        m = MinHash(num_perm=NUM_PERM, seed=SEED)
        m.update_batch([s.encode("utf-8") for s in shingle_strings(d)])
        lsh.insert(i, m)
        sketches.append(m)
    pairs = set()
    for i, m in enumerate(sketches):
        for j in lsh.query(m):
            if j != i:
                pairs.add((min(i, j), max(i, j)))
    return pairs


def run_rensa(docs: list[str], shingled: list[list[str]] | None = None) -> int:
    import rensa

    sets = shingled if shingled is not None else [shingle_strings(d) for d in docs]
    m = rensa.RMinHash.digest_matrix_from_token_sets(sets, NUM_PERM, SEED)
    # rensa needs num_bands to divide num_perm: 16 bands of 8 (datasketch's 9 x 13 is not allowed)
    lsh = rensa.RMinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, num_bands=16)
    return int(sum(lsh.query_duplicate_flags_matrix_one_shot(m)))


_CHILD = """
import json, sys, time
from dataprobes.metrics.dedup import near_duplicates, optimal_bands
docs = json.load(open(sys.argv[1]))
optimal_bands(0.8, 128)  # the (b, r) search: once per process, cached (~40 ms)
near_duplicates(docs[:100], 0.8)  # warm: thread pool
out = {}
for compat in (None, "datasketch"):
    t, c = time.perf_counter(), time.process_time()
    res = near_duplicates(docs, 0.8, num_perm=128, ngram=5, seed=1, compat=compat)
    out[str(compat)] = [time.perf_counter() - t, time.process_time() - c, res.num_duplicates]
print(json.dumps(out))
"""


def child(path: Path, threads: int) -> dict[str, list[float]]:
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    res = subprocess.run([sys.executable, "-c", _CHILD, str(path)], env=env, capture_output=True, text=True, check=True)
    return json.loads(res.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=50000)
    ap.add_argument("--ref-docs", type=int, default=2000, help="documents datasketch is timed on")
    ap.add_argument("--dup-frac", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default=f"1,{os.cpu_count()}")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="write every measurement here")
    args = ap.parse_args()
    if args.quick:
        args.docs, args.ref_docs, args.repeats = 3000, 300, 1
    threads = [int(t) for t in args.threads.split(",")]
    docs = make_docs(args.docs, args.dup_frac, 0)
    ref = docs[: args.ref_docs]
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()}")
    print(f"{len(docs)} documents, {sum(len(d) for d in docs) / 1e6:.1f} MB; datasketch on {len(ref)}")

    # correctness first: signatures and LSH candidates equal datasketch's
    from datasketch import MinHash

    sig = minhash(ref, NUM_PERM, NGRAM, SEED, compat="datasketch")
    for i in range(0, len(ref), max(1, len(ref) // 200)):
        m = MinHash(num_perm=NUM_PERM, seed=SEED)
        m.update_batch([s.encode() for s in shingle_strings(ref[i])])
        assert np.array_equal(m.hashvalues, sig[i]), i
    b, r = optimal_bands(THRESHOLD, NUM_PERM)
    ours = near_duplicates(signatures=sig, threshold=THRESHOLD, bands=b, rows=r, verify=False, return_pairs=True)
    assert ours.pairs is not None
    theirs = run_datasketch(ref)
    assert {tuple(p) for p in ours.pairs.tolist()} == theirs, "LSH candidates differ from datasketch's"
    print(f"asserted: compat signatures and {len(theirs)} LSH candidate pairs equal datasketch's (b={b}, r={r})")

    times: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}

    def timed(name: str, n: int, fn: object, *a: object) -> None:
        t, c = time.perf_counter(), time.process_time()
        fn(*a)  # type: ignore[operator]
        times.setdefault(name, []).append(n / (time.perf_counter() - t))
        cpu.setdefault(name, []).append(n / (time.process_time() - c))

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "docs.json"
        path.write_text(json.dumps(docs))
        shingled = [shingle_strings(d) for d in docs]
        for _ in range(args.repeats):
            timed("datasketch", len(ref), run_datasketch, ref)
            timed("rensa (Python shingling + sketch + LSH)", len(docs), run_rensa, docs)
            timed("rensa sketch + LSH only (shingles given)", len(docs), run_rensa, docs, shingled)
            for th in threads:
                out = child(path, th)
                for compat, (sec, csec, _) in out.items():
                    name = f"dataprobes {'fast' if compat == 'None' else 'compat=datasketch'}, {th} thread(s)"
                    times.setdefault(name, []).append(len(docs) / sec)
                    cpu.setdefault(name, []).append(len(docs) / csec)
    base = statistics.median(times["datasketch"])
    rensa_full = statistics.median(times["rensa (Python shingling + sketch + LSH)"])
    cbase = statistics.median(cpu["datasketch"])
    print(
        f"\n{'method':<48} {'docs/s median':>13} {'min-max':>17} {'x datasketch':>12} {'x rensa':>8}"
        f" {'docs/CPU-s':>11} {'x datasketch':>12}"
    )
    for name, v in times.items():
        med, cm = statistics.median(v), statistics.median(cpu[name])
        print(
            f"{name:<48} {med:>13,.0f} {f'{min(v):,.0f}-{max(v):,.0f}':>17} {med / base:>12.1f} "
            f"{med / rensa_full:>8.2f} {cm:>11,.0f} {cm / cbase:>12.1f}"
        )
    print(f"load after: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps({"docs_per_s": times, "docs_per_cpu_s": cpu}, indent=2))


if __name__ == "__main__":
    main()
