"""Task2Vec diversity coefficient: dataprobes vs a faithful port of the
reference implementation, at equal settings.

One diversity coefficient of a Markov-chain probe data set (``--batches``
batches of ``--batch-size`` sequences of ``--seq-len`` tokens, fresh draws)
with a small probe (``--probe tinygpt``: TinyGPT, V = 64, d = 64, 2 layers,
``--d-model``/``--layers`` to change; ``--probe gpt2``: a GPT-2 of the same
size built from a config), the
reference's settings otherwise (head fine-tune 10 epochs of AdamW, lr 5e-5,
minibatches of 8, one Monte-Carlo Fisher pass):

* reference: the port in tests/metrics/task2vec_reference.py (the
  reference's ``Task2Vec``: a "head-only" fine-tune that back-propagates
  through the whole network at every step, then the Fisher), head untied,
  per batch, then the reference's cosine distance (scipy, ``eps = 1e-8``);
* dataprobes ``compat=True``: the same estimator with the trunk computed once
  per batch and the head trained on the cached states;
* dataprobes default: same-position labels, padding masked, per-sequence
  squared gradients (a different, corrected estimator: timed, not compared).

Before timing, every compat embedding is asserted equal to the port's (to
``rtol 1e-4``) and the two coefficients to agree. Repeats are interleaved
(reference, compat, default, reference, ...); the median and the spread
(min-max) are reported, and the ratios of medians. ``--extrapolate`` also
times single batches at the reference's size (512 × 128) in both modes and
reports 200 × that: the time of a 200-batch coefficient (measured on one
batch, extrapolated; say so when quoting it). PyTorch runs on ``--threads``
threads (default 1: a shared machine).

    python benches/bench_task2vec.py                  # 6 batches of 64 x 64, 3 repeats
    python benches/bench_task2vec.py --extrapolate    # plus the 200 x 512 x 128 estimate
    python benches/bench_task2vec.py --quick          # smoke test
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import dataprobes as dp
from dataprobes.lm import TinyGPT
from dataprobes.metrics import diversity_coefficient, pairwise_task2vec_distances, task2vec_embedding
from dataprobes.metrics._task2vec_data import batch_stream
from dataprobes.metrics.task2vec import _seed_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "metrics"))
from task2vec_reference import reference_embedding  # noqa: E402


def make_probe(kind: str, vocab: int, d: int = 64, layers: int = 2, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    if kind == "tinygpt":
        return TinyGPT(vocab_size=vocab, max_len=128, d_model=d, n_layers=layers, n_heads=4)
    import transformers

    cfg = transformers.GPT2Config(
        vocab_size=vocab,
        n_positions=128,
        n_embd=d,
        n_layer=layers,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    return transformers.GPT2LMHeadModel(cfg)


def reference_coefficient(
    process: Any, probe: torch.nn.Module, num_batches: int, batch_size: int, seq_len: int, seed: int
) -> tuple[float, list[np.ndarray]]:
    """The reference's loop: embed every batch with the port, then the mean
    scipy cosine distance of ``h/(h0+h1+1e-8)`` over pairs."""
    from scipy.spatial import distance

    embs = []
    stream = batch_stream(process, num_batches, batch_size, seq_len=seq_len, seed=seed, side=0)
    for i, (ids, _, _) in enumerate(stream):
        embs.append(reference_embedding(probe, ids, epochs=10, seed=_seed_for(seed, 0, i)))
    d = [
        distance.cosine(h0 / (h0 + h1 + 1e-8), h1 / (h0 + h1 + 1e-8))
        for i, h0 in enumerate(embs)
        for h1 in embs[i + 1 :]
    ]
    return float(np.mean(d)), embs


def ours(process: Any, probe: torch.nn.Module, nb: int, bs: int, sl: int, seed: int, compat: bool) -> Any:
    # the reference seeds each batch's run on its own: independent label seeds
    return diversity_coefficient(
        process, probe, nb, bs, seq_len=sl, seed=seed, compat=compat, progress=False, label_seeds="independent"
    )


def fmt(ts: list[float]) -> str:
    return f"{statistics.median(ts):8.2f} s  ({min(ts):.2f}-{max(ts):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--probe", choices=("tinygpt", "gpt2"), default="tinygpt")
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=64)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extrapolate", action="store_true", help="also time 512 x 128 batches, report 200 x")
    ap.add_argument("--quick", action="store_true", help="smoke test: 3 batches of 16 x 16, 1 repeat")
    args = ap.parse_args()
    if args.quick:
        args.batches, args.batch_size, args.seq_len, args.repeats = 3, 16, 16, 1
    torch.set_num_threads(args.threads)
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    probe = make_probe(args.probe, args.vocab, args.d_model, args.layers)
    process = dp.MarkovChain.random(args.vocab, entropy_rate=2.0, seed=1)
    nb, bs, sl, seed = args.batches, args.batch_size, args.seq_len, args.seed
    print(f"probe {args.probe} ({sum(p.numel() for p in probe.parameters())} parameters); {nb} batches x {bs} x {sl}")

    # correctness first: compat embeddings equal the port's
    ref_coef, ref_embs = reference_coefficient(process, probe, nb, bs, sl, seed)
    res = ours(process, probe, nb, bs, sl, seed, True)
    for i, (e, r) in enumerate(zip(res.embeddings, ref_embs, strict=True)):
        np.testing.assert_allclose(e.hessian, r, rtol=1e-4, atol=1e-12, err_msg=f"batch {i}")
    with_eps = pairwise_task2vec_distances(res.embeddings, eps=1e-8)
    coef_eps = float(with_eps[np.triu_indices(nb, 1)].mean())
    assert abs(coef_eps - ref_coef) < 1e-6, (coef_eps, ref_coef)
    print(
        f"compat embeddings equal the reference port's; coefficient with the reference's eps = 1e-8: "
        f"{coef_eps:.6f} (port {ref_coef:.6f}); with eps = 0 (the default): {res.coefficient:.6f}"
    )

    runs = {
        "reference port": lambda: reference_coefficient(process, probe, nb, bs, sl, seed),
        "dataprobes compat": lambda: ours(process, probe, nb, bs, sl, seed, True),
        "dataprobes default": lambda: ours(process, probe, nb, bs, sl, seed, False),
    }
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for k, f in runs.items():  # interleaved
            t, c = time.perf_counter(), time.process_time()
            f()
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    base_w = statistics.median(wall["reference port"])
    base_c = statistics.median(cpu["reference port"])
    print(f"\none coefficient, {nb} batches, median (min-max) of {args.repeats}; wall clock, then CPU time:")
    for k in runs:
        w, c = statistics.median(wall[k]), statistics.median(cpu[k])
        print(f"  {k:20s} wall {fmt(wall[k])} x{base_w / w:5.1f}   cpu {fmt(cpu[k])} x{base_c / c:5.1f}")
    coef_default = ours(process, probe, nb, bs, sl, seed, False).coefficient
    print(f"  (default-mode coefficient {coef_default:.6f})")

    if args.extrapolate:
        x = np.asarray(process.sample(512, 128, seed=seed), dtype=np.int64)
        per: dict[str, list[float]] = {"compat": [], "default": []}
        per_cpu: dict[str, list[float]] = {"compat": [], "default": []}
        for _ in range(args.repeats):
            for mode in per:
                t, c = time.perf_counter(), time.process_time()
                task2vec_embedding(probe, x, compat=mode == "compat", seed=seed)
                per[mode].append(time.perf_counter() - t)
                per_cpu[mode].append(time.process_time() - c)
        print("\none 512 x 128 batch (reference settings), and 200 x that (extrapolated):")
        for mode, ts in per.items():
            m = statistics.median(ts)
            print(
                f"  {mode:8s} wall {fmt(ts)} per batch -> 200 batches ~ {200 * m / 60:.1f} min"
                f"   (cpu {fmt(per_cpu[mode])})"
            )
    print(f"load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
