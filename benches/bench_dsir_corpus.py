"""DSIR at corpus scale: streamed, resumable selection vs the in-memory one.

Writes a synthetic JSON Lines corpus (``--rows`` raw rows of 20–200 words from
two vocabularies, ``--target-rows`` target rows from one of them) and times,
each in a fresh child process (so that the peak RSS is its own):

* ``in-memory``: read every text into a list, then
  ``dataprobes.selection.dsir_select`` (what a user with enough RAM writes);
* ``streamed``: ``dsir_select_corpus(raw, target, num, out)`` with
  ``--chunk-rows`` rows per chunk, writing the selected rows and the manifest;
* ``streamed+state``: the same with ``state_dir`` (an atomic state write after
  every chunk: the cost of being resumable);
* ``ray`` (``--ray``): ``engine="ray"`` on a local Ray cluster with
  ``--ray-cpus`` CPUs (Ray's start-up is timed separately, not included).

All selections are asserted equal (and the written rows equal to the selected
lines) before anything is reported. Repeats are interleaved
(method A, B, C, A, B, C, …); the median and the spread (min–max) of the wall
time are reported with MB/s of raw JSON Lines, the ratio to ``in-memory`` and
the peak RSS (``VmHWM``). These machines are shared: compare ratios, and check the load
average printed with the results.

    python benches/bench_dsir_corpus.py                    # 200,000 rows (~150 MB)
    python benches/bench_dsir_corpus.py --quick            # a smoke test
    python benches/bench_dsir_corpus.py --ray --ray-cpus 2
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

CHILD = r"""
import json, resource, sys, time
import numpy as np
args = json.loads(sys.argv[1])
from dataprobes.selection import dsir_select, dsir_select_corpus
feat = dict(num_buckets=args["buckets"], ngrams=2, hash=args["hash"], min_example_length=args["min_len"])
t_ray = 0.0
if args["method"] == "ray":
    import ray
    t = time.perf_counter()
    ray.init(num_cpus=args["ray_cpus"], include_dashboard=False, log_to_driver=False)
    t_ray = time.perf_counter() - t
t = time.perf_counter()
ru0 = resource.getrusage(resource.RUSAGE_SELF)
cpu0 = ru0.ru_utime + ru0.ru_stime
if args["method"] == "in-memory":
    def texts(path):
        with open(path) as f:
            return [json.loads(line)["text"] for line in f if line.strip()]
    idx = np.sort(dsir_select(texts(args["raw"]), texts(args["target"]), args["num"], seed=1, **feat))
else:
    kw = {}
    if args["method"] == "streamed+state":
        kw["state_dir"] = args["state"]
    if args["method"] == "ray":
        kw["engine"] = "ray"
    else:
        kw["chunk_rows"] = args["chunk"]
    res = dsir_select_corpus(args["raw"], args["target"], args["num"], args["out"], seed=1, progress=False,
                             overwrite=True, **kw, **feat)
    idx = res.indices
wall = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_SELF)
cpu = ru.ru_utime + ru.ru_stime - cpu0
rss = 0.0
with open("/proc/self/status") as f:  # VmHWM: this process's own peak (ru_maxrss keeps the parent's across exec)
    for line in f:
        if line.startswith("VmHWM:"):
            rss = int(line.split()[1]) / 1024
print(json.dumps({"wall": wall, "cpu": cpu, "rss_mb": rss, "ray_start": t_ray, "indices": idx.tolist()}))
"""

A = "the a cat dog sat ran on under mat hat with and , . near far house garden small big".split()
B = "stock bond market price rose fell bank loan rate ; yield investor fund share quarter".split()


def make_corpus(d: Path, rows: int, target_rows: int, seed: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    raw, target = d / "raw.jsonl", d / "target.jsonl"
    with open(raw, "w") as f:
        for i in range(rows):
            words = A if rng.random() < 0.3 else B
            mix = rng.choice(A + B, int(rng.integers(0, 20)))
            text = " ".join(list(rng.choice(words, int(rng.integers(20, 200)))) + list(mix))
            f.write(json.dumps({"id": i, "text": text}) + "\n")
    with open(target, "w") as f:
        for _ in range(target_rows):
            f.write(json.dumps({"text": " ".join(rng.choice(A, int(rng.integers(50, 150))))}) + "\n")
    return raw, target


def run_child(method: str, common: dict[str, object]) -> dict[str, object]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps({**common, "method": method})],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--target-rows", type=int, default=5_000)
    ap.add_argument("--num", type=int, default=10_000)
    ap.add_argument("--chunk-rows", type=int, default=16_384)
    ap.add_argument("--buckets", type=int, default=10_000)
    ap.add_argument("--hash", choices=["fast", "sha256"], default="fast")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ray", action="store_true", help="also time engine='ray'")
    ap.add_argument("--ray-cpus", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="20,000 rows, 1 repeat")
    ap.add_argument("--json", type=Path, help="write every measurement here")
    a = ap.parse_args()
    if a.quick:
        a.rows, a.target_rows, a.num, a.repeats = 20_000, 1_000, 1_000, 1
    methods = ["in-memory", "streamed", "streamed+state"] + (["ray"] if a.ray else [])
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        raw, target = make_corpus(d, a.rows, a.target_rows, seed=0)
        mb = raw.stat().st_size / 1e6
        common = {
            "raw": str(raw),
            "target": str(target),
            "num": a.num,
            "chunk": a.chunk_rows,
            "buckets": a.buckets,
            "hash": a.hash,
            "min_len": 20,
            "ray_cpus": a.ray_cpus,
            "out": str(d / "selected.jsonl"),
        }
        runs: dict[str, list[dict[str, object]]] = {m: [] for m in methods}
        for r in range(a.repeats):
            for m in methods:
                state = d / f"state-{m}-{r}"
                res = run_child(m, {**common, "state": str(state)})
                runs[m].append(res)
                if m != "in-memory":  # the rows written are the selected lines, in order
                    wanted = set(res["indices"])  # type: ignore[arg-type]
                    with open(raw) as f:
                        want = "".join(ln for i, ln in enumerate(f) if i in wanted)
                    assert (d / "selected.jsonl").read_text() == want, m
                    del want
        ref = runs["in-memory"][0]["indices"]
        for m in methods:
            for res in runs[m]:
                assert res["indices"] == ref, f"{m} selected other rows"
    print(f"\nDSIR selection of {a.num:,} of {a.rows:,} rows ({mb:.0f} MB JSON Lines), hash={a.hash}, ")
    print(f"{a.buckets} buckets, chunk_rows={a.chunk_rows}; all selections identical (asserted)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n")
    base = statistics.median(float(r["wall"]) for r in runs["in-memory"])  # type: ignore[arg-type]
    cbase = statistics.median(float(r["cpu"]) for r in runs["in-memory"])  # type: ignore[arg-type]
    print("| method | wall s (median) | min–max | MB/s | ÷ in-memory | CPU s (driver) | ÷ in-memory | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for m in methods:
        walls = [float(r["wall"]) for r in runs[m]]  # type: ignore[arg-type]
        med = statistics.median(walls)
        cpu = statistics.median(float(r["cpu"]) for r in runs[m])  # type: ignore[arg-type]
        rss = max(float(r["rss_mb"]) for r in runs[m])  # type: ignore[arg-type]
        print(
            f"| {m} | {med:.2f} | {min(walls):.2f}–{max(walls):.2f} | {mb / med:.1f} | {med / base:.2f} "
            f"| {cpu:.2f} | {cpu / cbase:.2f} | {rss:.0f} |"
        )
    print("\n(CPU s: the child process's own user+system time; Ray workers' time is not in it.)")
    if a.ray:
        starts = [float(r["ray_start"]) for r in runs["ray"]]  # type: ignore[arg-type]
        print(f"\nRay start-up (not included above): median {statistics.median(starts):.1f} s")
    if a.json:
        a.json.write_text(json.dumps({"args": vars(a) | {"json": str(a.json)}, "mb": mb, "runs": runs}))


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")
