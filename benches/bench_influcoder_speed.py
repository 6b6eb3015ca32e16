"""Influcoder speed and size: the distilled encoder vs the gradient teacher it
replaces, side by side in one run.

1. **Query cost per sample** on the same items (random token sequences):

   * ``student``: ``Influcoder.embed`` (batched, inference mode);
   * ``teacher-factored``: the teacher decoder's per-example gradient feature,
     batched: forward, ``GradientCapture(mode="factored").backward`` (LoGra
     projections of every Linear weight);
   * ``less-flat``: LESS-style, one item at a time: forward, backward, the
     per-example gradient of every Linear weight count-sketched to
     ``k = 8192`` (``mode="flat"``);
   * ``less-lora``: the paper's teacher, LESS on a PEFT LoRA adapter (B = 0 as
     PEFT initialises it, so only the ``lora_B`` gradients are non-zero and
     captured), one item at a time, ``mode="flat"``, ``k = 8192``.

   The teacher has about 60× the student's parameters (the reference pairs a
   68M encoder with a 4B teacher). The contenders run interleaved, one round
   each per repeat; ratios are taken per round and reported as median and
   range.

2. **Bytes per indexed example**: ``Influcoder.index`` (float16 rows) at the
   student's width and at the reference width (1024), vs gradient stores of
   ``k = 8192`` rows (int8 with per-row scales, and float16), for the same
   number of items; every file of each store directory is counted.

3. **Training throughput and peak memory**: ``Influcoder.fit`` (1 epoch) with
   a dense teacher matrix, a ``GradientTeacher`` over arrays and over
   ``GradientStore`` s (d = 256 and d = 8192, int8), each run in a fresh
   subprocess (peak resident memory is its own), interleaved over repeats.

4. **Scale**: ``fit`` over ``--scale-anchors`` × ``--scale-pool`` pairs
   (default 10^4 × 10^5 = 10^9) with a ``GradientTeacher`` over int8 stores of
   random d = 256 features, 1 epoch, with ``hard_ratio = 0`` and ``0.5`` (the
   latter streams every anchor's top candidates, ``top_candidates``, first):
   peak memory against the ``A·P·4`` bytes the teacher matrix would take.

Run from the repository root after ``maturin develop --release`` (torch and
peft installed)::

    python benches/bench_influcoder_speed.py            # the full run (about 8 minutes on 2 cores, one thread)
    python benches/bench_influcoder_speed.py --quick    # smoke test, seconds
    python benches/bench_influcoder_speed.py --parts query,bytes --repeats 7 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

KIB = 1024
MIB = 1024**2
GIB = 1024**3


# ----------------------------------------------------------------------------
# helpers


def _status(key: str) -> int:
    """A ``/proc/self/status`` memory line in bytes (``RssAnon``, ``VmHWM``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _rss_anon() -> int:
    return _status("RssAnon")


class PeakSampler:
    """Peak anonymous resident memory (``RssAnon``, sampled every 2 ms) while active."""

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


def _stats(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs, dtype=np.float64)
    return {"median": float(np.median(a)), "min": float(a.min()), "max": float(a.max()), "n": int(a.size)}


def _fmt_range(s: dict[str, float], fmt: str = "{:.3g}") -> str:
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}–{fmt.format(s['max'])})"


def _dir_bytes(path: Path) -> tuple[int, int]:
    """(total bytes of every file under ``path``, number of files)."""
    total = files = 0
    for root, _, names in os.walk(path):
        for n in names:
            total += os.path.getsize(os.path.join(root, n))
            files += 1
    return total, files


def _human(n: float) -> str:
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _tokens(n: int, t: int, vocab: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, size=(n, t), dtype=np.int64)


# ----------------------------------------------------------------------------
# 1. query cost


def _nll(model, idx):
    import torch

    logits = model(idx[:, :-1])
    if not isinstance(logits, torch.Tensor):  # a PEFT wrapper may return a ModelOutput
        logits = logits[0]
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), idx[:, 1:], reduction="none")
    return nll.sum(1)


def bench_query(args, sizes: dict) -> dict:
    return {p["name"]: _query_point(args, sizes["vocab"], sizes["seq_len"], p) for p in sizes["query"]}


def _query_point(args, v: int, t: int, point: dict) -> dict:
    import peft
    import torch

    from dataprobes.attribution import GradientCapture
    from dataprobes.attribution.distill import Influcoder
    from dataprobes.lm import TinyGPT

    n, n_less = point["items"], point["less_items"]
    enc = Influcoder.from_config(v, max_len=t, device="cpu", seed=0, **point["student"])
    torch.manual_seed(0)
    teacher = TinyGPT(vocab_size=v, max_len=t, **point["teacher"]).eval()
    torch.manual_seed(1)
    lora_base = TinyGPT(vocab_size=v, max_len=t, **point["teacher"]).eval()
    # PEFT's default initialisation: B = 0, so only the lora_B gradients are non-zero (LESS's warm-up
    # adapter is trained; its B is not zero, but a trained or untrained adapter costs the same to differentiate)
    lora_cfg = peft.LoraConfig(r=point["lora_r"], lora_alpha=2 * point["lora_r"], target_modules=["qkv", "proj"])
    lora = peft.get_peft_model(lora_base, lora_cfg).eval()
    lora_b = [name for name, _ in lora.named_modules() if name.endswith(".lora_B.default")]
    p_student, p_teacher = _params(enc.encoder), _params(teacher)
    p_lora = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    items = torch.from_numpy(_tokens(n, t, v, seed=2))
    k_fac = point["k_factored"]

    def student():
        return enc.embed(items, batch_size=n)

    def teacher_factored():
        with GradientCapture(teacher, mode="factored", k=k_fac, seed=0) as cap:
            return cap.backward(_nll(teacher, items))

    def less(model, modules):
        def run():
            out = []
            with GradientCapture(model, modules, mode="flat", k=8192, seed=0) as cap:
                for i in range(n_less):
                    out.append(cap.backward(_nll(model, items[i : i + 1])))
            return torch.cat(out)

        return run

    contenders = {
        "student": student,
        "teacher-factored": teacher_factored,
        "less-flat": less(teacher, None),
        "less-lora": less(lora, lora_b),
    }
    count = {"student": n, "teacher-factored": n, "less-flat": n_less, "less-lora": n_less}

    # correctness before timing: the batched student equals the one-at-a-time
    # student; LESS batch-1 capture equals the batched flat capture (exact
    # per-example gradients); every feature is finite and unit-norm
    e = student()
    e1 = torch.cat([enc.embed(items[i : i + 1]) for i in range(min(n, 4))])
    assert torch.allclose(e[: e1.shape[0]], e1, atol=1e-5), "batched and single-item embeddings differ"
    feats = {name: fn() for name, fn in contenders.items() if name != "student"}
    with GradientCapture(teacher, mode="flat", k=8192, seed=0) as cap:
        batched = cap.backward(_nll(teacher, items[: min(2, n_less)]))
    assert torch.allclose(batched, feats["less-flat"][: batched.shape[0]], atol=1e-4), "LESS batch-1 != batched flat"
    for name, f in feats.items():
        ones = torch.ones(f.shape[0])
        assert torch.isfinite(f).all() and torch.allclose(f.norm(dim=1), ones, atol=1e-4), name
    dims = {"student": enc.dim, **{k: int(f.shape[1]) for k, f in feats.items()}}
    del feats

    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(args.repeats):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) / count[name])
    ratios = {
        k: _stats([a / b for a, b in zip(times[k], times["student"], strict=True)])
        for k in contenders
        if k != "student"
    }
    res = {
        "items": count,
        "seq_len": t,
        "vocab": v,
        "params": {"student": p_student, "teacher": p_teacher, "lora_trainable": p_lora},
        "param_ratio": p_teacher / p_student,
        "dims": dims,
        "per_sample_s": {k: _stats(x) for k, x in times.items()},
        "ratio_vs_student": ratios,
        "raw_s": times,
    }
    print(
        f"\n## Query cost per sample, {point['name']}: sequences of {t} tokens (vocab {v}), "
        f"{args.threads} torch thread(s), {args.repeats} interleaved rounds\n"
        f"student {p_student:,} parameters ({point['student']}); teacher TinyGPT {p_teacher:,} "
        f"({point['teacher']}, {p_teacher / p_student:.1f}× the student); LoRA r={point['lora_r']} on qkv, proj: "
        f"{p_lora:,} trainable\n"
    )
    print("| method | items timed | feature dim | ms / sample, median (min–max) | ÷ student, median (min–max) |")
    print("|---|---:|---:|---:|---:|")
    for k in contenders:
        r = "1" if k == "student" else _fmt_range(ratios[k], "{:.0f}×")
        s = res["per_sample_s"][k]
        ms = {q: s[q] * 1e3 for q in ("median", "min", "max")}
        print(f"| {k} | {count[k]} | {dims[k]:,} | {_fmt_range(ms, '{:.3g}')} | {r} |")
    return res


# ----------------------------------------------------------------------------
# 2. bytes per indexed example


def bench_bytes(args, sizes: dict, tmp: Path) -> dict:
    import torch

    from dataprobes.attribution import GradientStore, StoreWriter
    from dataprobes.attribution.distill import Influcoder

    n, v, t = sizes["index_items"], sizes["vocab"], sizes["seq_len"]
    pool = _tokens(n, t, v, seed=3)
    rows = []
    for name, dim in (("student", sizes["student"]["dim"]), ("reference width", 1024)):
        enc = Influcoder.from_config(v, max_len=t, device="cpu", seed=0, **{**sizes["student"], "dim": dim})
        path = tmp / f"index-{dim}"
        store = enc.index(pool, path, batch_size=256)
        assert len(store) == n and store.dtype == "float16"
        got = store.read(0, 8)[1]
        want = enc.embed(pool[:8])
        assert torch.allclose(torch.from_numpy(got), want, atol=2e-3), "index rows != embeddings"
        rows.append(_size_row(f"Influcoder index ({name})", store, path))
    rng = np.random.default_rng(4)
    for dtype in ("int8", "float16"):
        path = tmp / f"grads-{dtype}"
        with StoreWriter(path, 8192, dtype, config={"bench": "random k=8192 rows"}) as w:
            for s in range(0, n, 1024):
                b = min(1024, n - s)
                w.append(np.arange(s, s + b), rng.standard_normal((b, 8192), dtype=np.float32))
        store = GradientStore(path)
        rows.append(_size_row(f"gradient store k=8192 ({dtype})", store, path))
    ref_enc = next(r for r in rows if "student" in r["store"])["disk_per_row"]
    ref_1024 = next(r for r in rows if "reference" in r["store"])["disk_per_row"]
    print(f"\n## Bytes per indexed example ({n:,} items, every file of the store directory counted)\n")
    print(
        "| store | dim | dtype | payload / row | with id (+ scale) / row | on disk / row (all files) | files "
        "| ÷ index (student) | ÷ index (1024) |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['store']} | {r['dim']:,} | {r['dtype']} | {r['payload_per_row']:,} B | {r['nbytes_per_row']:,} B "
            f"| {r['disk_per_row']:,.1f} B | {r['files']} | {r['disk_per_row'] / ref_enc:.1f}× "
            f"| {r['disk_per_row'] / ref_1024:.1f}× |"
        )
    return {"items": n, "rows": rows}


def _size_row(name: str, store, path: Path) -> dict:
    disk, files = _dir_bytes(path)
    n = len(store)
    return {
        "store": name,
        "dim": store.dim,
        "dtype": store.dtype,
        "rows": n,
        "payload_per_row": store.dim * np.dtype(store.dtype).itemsize,
        "nbytes_per_row": store.nbytes // n,
        "disk_per_row": disk / n,
        "files": files,
    }


# ----------------------------------------------------------------------------
# 3. and 4. training (each configuration in a child process)


def _write_features(path: Path, n: int, dim: int, seed: int) -> None:
    from dataprobes.attribution import StoreWriter

    rng = np.random.default_rng(seed)
    with StoreWriter(path, dim, "int8", config={"bench": f"random features d={dim}"}) as w:
        step = max(1, (1 << 24) // dim)  # ~16 MiB of float32 per append
        for s in range(0, n, step):
            b = min(step, n - s)
            w.append(np.arange(s, s + b), rng.standard_normal((b, dim), dtype=np.float32))


def child(spec: dict) -> dict:
    """One training configuration; returns its measurements."""
    import torch

    torch.set_num_threads(spec["threads"])
    from dataprobes.attribution import GradientStore
    from dataprobes.attribution.distill import DenseTeacher, GradientTeacher, Influcoder

    a_n, p_n, t, v = spec["anchors"], spec["pool"], spec["seq_len"], spec["vocab"]
    anchors, pool = _tokens(a_n, t, v, seed=10), _tokens(p_n, t, v, seed=11)
    enc = Influcoder.from_config(v, max_len=t, device="cpu", seed=0, **spec["student"])
    # warm-up on a throwaway copy: the optimizer's first construction imports
    # torch._dynamo (seconds) and the first backward passes allocate; neither
    # belongs to the per-block cost
    warm = Influcoder.from_config(v, max_len=t, device="cpu", seed=1, **spec["student"])
    wa, wp = anchors[: spec["k"]], pool[: spec["m"]]
    warm.fit(
        wa,
        wp,
        np.zeros((len(wa), len(wp)), np.float32) + np.eye(len(wa), len(wp), dtype=np.float32),
        epochs=2,
        k=spec["k"],
        m=spec["m"],
        progress=False,
    )
    del warm
    kind = spec["teacher"]
    base_anon = _rss_anon()
    base_hwm = _status("VmHWM")
    t0 = time.perf_counter()
    if kind in ("dense", "arrays"):
        rng = np.random.default_rng(12)
        fa = rng.standard_normal((a_n, spec["dim"]), dtype=np.float32)
        fp = rng.standard_normal((p_n, spec["dim"]), dtype=np.float32)
        if kind == "dense":
            fa /= np.linalg.norm(fa, axis=1, keepdims=True)
            fp /= np.linalg.norm(fp, axis=1, keepdims=True)
            teacher = DenseTeacher(fa @ fp.T)
        else:
            teacher = GradientTeacher(fa, fp)
    else:
        verify = kind != "stores-noverify"
        teacher = GradientTeacher(
            GradientStore(spec["anchor_store"], verify_reads=verify),
            GradientStore(spec["pool_store"], verify_reads=verify),
        )
    setup_s = time.perf_counter() - t0
    with PeakSampler() as ps:
        t0 = time.perf_counter()
        hist = enc.fit(
            anchors,
            pool,
            teacher,
            epochs=1,
            k=spec["k"],
            m=spec["m"],
            hard_ratio=spec["hard_ratio"],
            progress=False,
            seed=0,
        )
        wall = time.perf_counter() - t0
    assert np.isfinite(hist.last["loss"])
    return {
        "steps": hist.steps,
        "blocks_per_s": hist.blocks_per_second,
        "train_s": sum(e["train_seconds"] for e in hist.epochs),
        "fit_wall_s": wall,
        "fit_overhead_s": wall - sum(e["train_seconds"] for e in hist.epochs),
        "teacher_setup_s": setup_s,
        "loss": hist.last["loss"],
        # VmHWM (peak resident set of this process image; ru_maxrss would carry the
        # parent's peak across fork + exec)
        "peak_rss": _status("VmHWM"),
        "peak_rss_before_teacher": base_hwm,
        "anon_before_teacher": base_anon,
        "anon_peak_fit": ps.peak,
        "anon_peak_delta": ps.peak - base_anon,
    }


def _spawn(spec: dict) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]), MKL_NUM_THREADS=str(spec["threads"]))
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], env=env, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"child {spec['name']} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _train_specs(args, sizes: dict, tmp: Path) -> list[dict]:
    tr = sizes["train"]
    common = {
        "threads": args.threads,
        "vocab": sizes["vocab"],
        "seq_len": tr["seq_len"],
        "student": sizes["student"],
        "anchors": tr["anchors"],
        "pool": tr["pool"],
        "k": 8,
        "m": 16,
        "hard_ratio": 0.0,
    }
    specs = [
        {**common, "name": "dense matrix (d=256 cosines)", "teacher": "dense", "dim": 256},
        {**common, "name": "GradientTeacher, arrays d=256", "teacher": "arrays", "dim": 256},
    ]
    for dim in (256, 8192):
        a, p = tmp / f"train-anchors-{dim}", tmp / f"train-pool-{dim}"
        _write_features(a, tr["anchors"], dim, seed=20)
        _write_features(p, tr["pool"], dim, seed=21)
        st = {"anchor_store": str(a), "pool_store": str(p), "dim": dim}
        specs.append({**common, **st, "name": f"GradientTeacher, int8 stores d={dim}", "teacher": "stores"})
        if dim == 8192:
            specs.append({**common, **st, "name": f"… d={dim}, verify_reads=False", "teacher": "stores-noverify"})
    return specs


def bench_train(args, sizes: dict, tmp: Path) -> dict:
    specs = _train_specs(args, sizes, tmp)
    runs: dict[str, list[dict]] = {s["name"]: [] for s in specs}
    for _ in range(args.train_repeats):
        for s in specs:
            runs[s["name"]].append(_spawn(s))
    tr = sizes["train"]
    print(
        f"\n## Training throughput ({tr['anchors']:,} anchors × {tr['pool']:,} pool, tokens of length "
        f"{tr['seq_len']}, k=8, m=16, 1 epoch = {runs[specs[0]['name']][0]['steps']} blocks, "
        f"{args.threads} torch thread(s), {args.train_repeats} interleaved runs, each a fresh process)\n"
    )
    print(
        "| teacher | blocks/s, median (min–max) | ÷ dense | teacher setup (s) | peak RSS before teacher "
        "| peak RSS (process) | peak anon. RSS above pre-teacher |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    dense = [r["blocks_per_s"] for r in runs[specs[0]["name"]]]
    out = {}
    for s in specs:
        rs = runs[s["name"]]
        bps = _stats([r["blocks_per_s"] for r in rs])
        rel = _stats([r["blocks_per_s"] / d for r, d in zip(rs, dense, strict=True)])
        rss = max(r["peak_rss"] for r in rs)
        delta = max(r["anon_peak_delta"] for r in rs)
        setup = float(np.median([r["teacher_setup_s"] for r in rs]))
        before = max(r["peak_rss_before_teacher"] for r in rs)
        print(
            f"| {s['name']} | {_fmt_range(bps, '{:.1f}')} | {_fmt_range(rel, '{:.2f}')} | {setup:.2f} "
            f"| {_human(before)} | {_human(rss)} | {_human(delta)} |"
        )
        out[s["name"]] = {"blocks_per_s": bps, "vs_dense": rel, "runs": rs}
    return out


def bench_scale(args, sizes: dict, tmp: Path) -> dict:
    sc = sizes["scale"]
    a_n, p_n, dim = sc["anchors"], sc["pool"], 256
    a, p = tmp / "scale-anchors", tmp / "scale-pool"
    t0 = time.perf_counter()
    _write_features(a, a_n, dim, seed=30)
    _write_features(p, p_n, dim, seed=31)
    write_s = time.perf_counter() - t0
    common = {
        "threads": args.threads,
        "vocab": sizes["vocab"],
        "seq_len": sc["seq_len"],
        "student": sizes["student"],
        "anchors": a_n,
        "pool": p_n,
        "k": 8,
        "m": 16,
        "teacher": "stores",
        "anchor_store": str(a),
        "pool_store": str(p),
        "dim": dim,
    }
    matrix = a_n * p_n * 4
    print(
        f"\n## Scale: {a_n:,} anchors × {p_n:,} pool = {a_n * p_n:.3g} pairs, GradientTeacher over int8 stores "
        f"(d={dim}, written in {write_s:.1f} s), 1 epoch, k=8, m=16; the teacher matrix would take "
        f"{_human(matrix)}\n"
    )
    print(
        "| hard_ratio | blocks | blocks/s | train (s) | teacher setup (s) | fit − train (s) | peak RSS before teacher "
        "| peak RSS (process) | peak anon. RSS above pre-teacher | teacher matrix ÷ that | teacher matrix ÷ peak RSS |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    out = {"anchors": a_n, "pool": p_n, "pairs": a_n * p_n, "matrix_bytes": matrix, "runs": {}}
    for hr in sc["hard_ratios"]:
        r = _spawn({**common, "name": f"scale hard_ratio={hr}", "hard_ratio": hr})
        out["runs"][str(hr)] = r
        print(
            f"| {hr} | {r['steps']:,} | {r['blocks_per_s']:.1f} | {r['train_s']:.1f} | {r['teacher_setup_s']:.1f} "
            f"| {r['fit_overhead_s']:.1f} | {_human(r['peak_rss_before_teacher'])} | {_human(r['peak_rss'])} | {_human(r['anon_peak_delta'])} "
            f"| {matrix / max(r['anon_peak_delta'], 1):.0f}× | {matrix / r['peak_rss']:.1f}× |"
        )
    return out


# ----------------------------------------------------------------------------


def sizes_for(quick: bool, scale_anchors: int, scale_pool: int) -> dict:
    if quick:
        return {
            "vocab": 64,
            "seq_len": 16,
            "student": {"d_model": 16, "n_layers": 1, "n_heads": 2, "dim": 32},
            "query": [
                {
                    "name": "tiny",
                    "items": 4,
                    "less_items": 2,
                    "student": {"d_model": 16, "n_layers": 1, "n_heads": 2, "dim": 32},
                    "teacher": {"d_model": 32, "n_layers": 2, "n_heads": 2},
                    "lora_r": 4,
                    "k_factored": 4,
                }
            ],
            "index_items": 300,
            "train": {"anchors": 32, "pool": 64, "seq_len": 16},
            "scale": {"anchors": 64, "pool": 1000, "seq_len": 16, "hard_ratios": [0.0, 0.5]},
        }
    return {
        "vocab": 512,
        "seq_len": 128,
        # the student of the size and training parts (~150k parameters)
        "student": {"d_model": 64, "n_layers": 2, "n_heads": 4, "dim": 128},
        # teacher : student parameters ~60 : 1 at two sizes (4B : 68M in the reference)
        "query": [
            {
                "name": "small",
                "items": 32,
                "less_items": 8,
                "student": {"d_model": 64, "n_layers": 2, "n_heads": 4, "dim": 128},
                "teacher": {"d_model": 256, "n_layers": 11, "n_heads": 8},
                "lora_r": 16,
                "k_factored": 16,
            },
            {
                "name": "medium",
                "items": 16,
                "less_items": 3,
                "student": {"d_model": 128, "n_layers": 2, "n_heads": 4, "dim": 256},
                "teacher": {"d_model": 512, "n_layers": 10, "n_heads": 8},
                "lora_r": 16,
                "k_factored": 16,
            },
        ],
        "index_items": 8192,
        "train": {"anchors": 1024, "pool": 8192, "seq_len": 64},
        "scale": {"anchors": scale_anchors, "pool": scale_pool, "seq_len": 64, "hard_ratios": [0.0, 0.5]},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke test: tiny sizes, one round")
    ap.add_argument("--parts", default="query,bytes,train,scale", help="comma-separated subset to run")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads in every process (default 1: on a shared machine two threads of small\n"
        "training steps run 5-20x slower than one whenever another job holds a core)",
    )
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds of the query-cost contenders")
    ap.add_argument("--train-repeats", type=int, default=3, help="interleaved runs of each training configuration")
    ap.add_argument("--scale-anchors", type=int, default=10_000)
    ap.add_argument("--scale-pool", type=int, default=100_000)
    ap.add_argument("--json", help="write every measurement here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.quick:
        args.repeats, args.train_repeats = 1, 1
    import torch

    torch.set_num_threads(args.threads)
    sizes = sizes_for(args.quick, args.scale_anchors, args.scale_pool)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - {"query", "bytes", "train", "scale"}
    if unknown:
        ap.error(f"unknown parts {sorted(unknown)}")
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
        f"torch threads {torch.get_num_threads()}, {os.cpu_count()} logical CPUs, load average {os.getloadavg()}"
    )
    results: dict = {"threads": args.threads, "quick": args.quick, "sizes": sizes}
    tmp = Path(tempfile.mkdtemp(prefix="influcoder-bench-"))
    try:
        if "query" in parts:
            results["query"] = bench_query(args, sizes)
        if "bytes" in parts:
            results["bytes"] = bench_bytes(args, sizes, tmp)
        if "train" in parts:
            results["train"] = bench_train(args, sizes, tmp)
        if "scale" in parts:
            results["scale"] = bench_scale(args, sizes, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results["load_average_end"] = os.getloadavg()
    print(f"\nload average at the end: {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
