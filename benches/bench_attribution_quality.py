"""Attribution quality on probes: fidelity of compressed gradients vs k, and
retrieval of planted ground truth, side by side with TRAK's projector.

A TinyGPT is trained briefly on a Mixture of Markov chains. Exact
per-example gradients of its Linear weights (torch.func) are the reference.

* Fidelity: per-query Spearman correlation between exact-gradient cosine
  scores and compressed ones, for k = 256 ... 8192, for dataprobes' SJLT
  (flat path), dataprobes' factored capture (LoGra-style, k_in·k_out per
  layer), TRAK's CPU projector (``traker`` BasicProjector, Rademacher) and
  a dense Gaussian projection (torch matmul), with projection time.
* Planted truth: precision@10 of retrieving same-component training
  examples, per scoring method.

Fidelity of the projection kinds (Gaussian, Rademacher, orthogonal) against
exact gradient inner products, with kronfluence as the peer reference, is
measured in ``bench_teacher_fidelity.py``.

    python benches/bench_attribution_quality.py [--quick]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

import dataprobes as dp
from dataprobes.attribution import GradientCapture, compress_flat, flatten_grads, per_example_grads_func
from dataprobes.attribution.quality import cosine_scores, per_query_spearman, precision_at_k
from dataprobes.lm import TinyGPT, train


def loss_fn(model, x):
    logits = model(x[:, :-1])
    return torch.nn.functional.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none").mean(1)


def timed(fn, repeats: int = 3):
    """Best of ``repeats`` wall times after one warm-up call."""
    out = fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    v, comps = 32, 3
    mix = dp.Mixture([dp.MarkovChain.random(v, concentration=0.1, seed=s) for s in range(comps)])
    model = TinyGPT(vocab_size=v, max_len=64, d_model=32, n_layers=2, n_heads=4)
    train(model, mix, steps=60 if args.quick else 300, batch_size=32, seq_len=48, progress=False, eval_every=1000)
    n_query, n_train = (16, 128) if args.quick else (64, 1024)
    x, labels = mix.sample(n_query + n_train, 48, seed=7, return_labels=True)
    xt = torch.from_numpy(x.astype(np.int64))
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    grads = per_example_grads_func(model, loss_fn, xt, params=[f"{n}.weight" for n in names], untie=True)
    flat = flatten_grads(grads, [f"{n}.weight" for n in names]).float()
    d = flat.shape[1]
    q, t = slice(0, n_query), slice(n_query, None)
    exact = cosine_scores(flat[q], flat[t])
    print(
        f"# {comps}-component Markov mixture, V={v}; TinyGPT {model.num_parameters():,} params; "
        f"{len(names)} Linear layers, exact gradient dim {d:,}; {n_query} queries x {n_train} train\n"
    )

    from trak.projectors import BasicProjector, ProjectionType

    ks = [256, 1024] if args.quick else [256, 512, 1024, 2048, 4096, 8192]
    print(
        "| k | SJLT (dataprobes) | factored (dataprobes) | TRAK BasicProjector | dense Gaussian | SJLT time | TRAK time | dense time |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for k in ks:
        sj, t_sj = timed(lambda: compress_flat(flat, k, seed=1))
        proj = BasicProjector(
            grad_dim=d, proj_dim=k, seed=1, proj_type=ProjectionType.rademacher, device="cpu", block_size=min(k, 100)
        )
        tr, t_tr = timed(lambda: proj.project(flat, model_id=0))
        g = torch.Generator().manual_seed(1)
        dense_mat = torch.randn(d, k, generator=g) / math.sqrt(k)
        dn, t_dn = timed(lambda: flat @ dense_mat)
        kk = max(1, round(math.sqrt(k / len(names))))
        with GradientCapture(model, modules=names, mode="factored", k_in=kk, k_out=kk, seed=1) as cap:
            fa = cap.backward(loss_fn(model, xt))
        rows = [per_query_spearman(exact, cosine_scores(z[q], z[t])).mean() for z in (sj, fa, tr, dn)]
        print(
            f"| {k} | {rows[0]:.3f} | {rows[1]:.3f} (k={fa.shape[1]}) | {rows[2]:.3f} | {rows[3]:.3f} | "
            f"{t_sj * 1e3:.1f} ms | {t_tr * 1e3:.1f} ms | {t_dn * 1e3:.1f} ms |"
        )

    print("\n| scoring | precision@10 | chance |")
    print("|---|---:|---:|")
    chance = max((labels[t] == c).mean() for c in range(comps))
    print(f"| exact gradients, cosine | {precision_at_k(exact, labels[q], labels[t], 10).mean():.3f} | {chance:.3f} |")
    # through the store and the streamed scorer, for each scoring method
    import tempfile

    from dataprobes.attribution import StoreWriter, score

    sj = compress_flat(flat, 2048, seed=1)
    train_labels = labels[t]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = {"projection": "sjlt", "k": 2048, "seed": 1}
        with StoreWriter(tmp, 2048, "int8", cfg) as w:
            w.append(np.arange(n_train), sj[t])
        for method in ("cosine", "ip", "influence"):
            top = score(tmp, sj[q], method, top_k=10, query_config=cfg)
            p10 = (train_labels[np.asarray(top.ids)] == labels[q][:, None]).mean()
            print(f"| SJLT k=2048, int8 store, {method} | {p10:.3f} | {chance:.3f} |")


if __name__ == "__main__":
    main()
