"""Teacher fidelity: how well captured gradient features rank training examples
like the EXACT per-example gradient inner products, against k, for the flat
(SJLT) capture and the factored capture with Gaussian, Rademacher and
orthogonal projections, side by side with kronfluence's identity strategy.

A TinyGPT is trained briefly on a Mixture of Markov chains. The reference is
the exact per-example gradient of every Linear layer (weights and biases),
from ``torch.func`` (``per_example_grads_func``); kronfluence's pairwise
scores with ``strategy="identity"`` (no preconditioning: plain per-example
gradient dot products) are the peer reference, checked equal to ours before
they are used or timed. For each capture and k, three projection seeds give
the per-query Spearman correlation (over the training examples) of

* ``ip``: captured dot products vs exact gradient dot products;
* ``cos``: captured cosines (the L2-normalised teacher) vs exact cosines;

as mean ± std over the seeds. Times (best of interleaved rounds, taken after
the fidelity runs): capturing all examples per configuration, the exact
gradients with their dot products, and kronfluence's factor fit plus
pairwise scores.
Factored k runs past the largest layer dimension (129), where orthogonal
projections are exact and i.i.d. ones are not (docs/math.md, Attribution:
projection kinds).

    python benches/bench_teacher_fidelity.py [--quick]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time

import numpy as np
import torch

import dataprobes as dp
from dataprobes.attribution import GradientCapture, per_example_grads_func
from dataprobes.attribution.quality import cosine_scores, per_query_spearman
from dataprobes.lm import TinyGPT, train

KINDS = ("gaussian", "rademacher", "orthogonal")


def loss_fn(model, x):
    logits = model(x[:, :-1])
    return torch.nn.functional.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none").mean(1)


def capture_all(model, names, xt, batch, **kw):
    """Captured features ``[N, dim]`` (unnormalised) and the wall time."""
    t0 = time.perf_counter()
    parts = []
    with GradientCapture(model, modules=names, include_bias=True, normalize=False, **kw) as cap:
        for a in range(0, xt.shape[0], batch):
            parts.append(cap.backward(loss_fn(model, xt[a : a + batch])))
    return torch.cat(parts), time.perf_counter() - t0


def kronfluence_scores(model, names, xt, q, t, batch):
    """kronfluence's identity-strategy pairwise scores ``[Q, N]`` and the wall
    time, or ``(None, reason)`` when the package is missing or fails."""
    try:
        from kronfluence.analyzer import Analyzer, prepare_model
        from kronfluence.arguments import FactorArguments, ScoreArguments
        from kronfluence.task import Task
    except Exception as e:  # noqa: BLE001 - report any import failure
        return None, f"kronfluence unavailable ({type(e).__name__}: {e})"

    class LMTask(Task):
        def compute_train_loss(self, batch, model, sample=False):
            return loss_fn(model, batch).sum()

        def compute_measurement(self, batch, model):
            return loss_fn(model, batch).sum()

        def get_influence_tracked_modules(self):
            return list(names)

    class Rows(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = x

        def __len__(self):
            return self.x.shape[0]

        def __getitem__(self, i):
            return self.x[i]

    try:
        m = prepare_model(copy.deepcopy(model), LMTask())
        with tempfile.TemporaryDirectory() as tmp:
            an = Analyzer("fidelity", m, LMTask(), cpu=True, disable_tqdm=True, output_dir=tmp)
            t0 = time.perf_counter()
            fargs = FactorArguments(strategy="identity")
            an.fit_all_factors("identity", Rows(xt[t]), per_device_batch_size=batch, factor_args=fargs)
            sargs = ScoreArguments(score_dtype=torch.float32)
            an.compute_pairwise_scores(
                "pairwise",
                "identity",
                query_dataset=Rows(xt[q]),
                train_dataset=Rows(xt[t]),
                per_device_query_batch_size=batch,
                per_device_train_batch_size=batch,
                score_args=sargs,
            )
            elapsed = time.perf_counter() - t0
            scores = an.load_pairwise_scores("pairwise")["all_modules"].detach().double()
        return scores, elapsed
    except Exception as e:  # noqa: BLE001 - report any failure of the peer
        return None, f"kronfluence failed ({type(e).__name__}: {e})"


def fmt(xs):
    xs = np.asarray(xs)
    return f"{xs.mean():.3f} ± {xs.std():.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a smoke run in seconds")
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    v, comps = 32, 3
    mix = dp.Mixture([dp.MarkovChain.random(v, concentration=0.1, seed=s) for s in range(comps)])
    model = TinyGPT(vocab_size=v, max_len=64, d_model=32, n_layers=2, n_heads=4)
    train(model, mix, steps=40 if args.quick else 300, batch_size=32, seq_len=48, progress=False, eval_every=1000)
    model.eval()
    n_query, n_train = (8, 64) if args.quick else (64, 1024)
    x = mix.sample(n_query + n_train, 48, seed=7)
    xt = torch.from_numpy(x.astype(np.int64))
    q, t = slice(0, n_query), slice(n_query, None)
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    seeds = (1, 2) if args.quick else (1, 2, 3)
    batch = 64

    def exact_grads():
        # exact per-example gradients (weights and biases, tied head untied), in layout order
        t0 = time.perf_counter()
        params = [
            f"{n}.{p}" for n in names for p in ("weight", "bias") if getattr(model.get_submodule(n), p) is not None
        ]
        grads = per_example_grads_func(model, loss_fn, xt, params=params, untie=True)
        with GradientCapture(model, modules=names, mode="flat", k=8, include_bias=True) as probe:
            flat = probe.flatten(grads).detach().double()
        ip = flat[q] @ flat[t].T
        return flat, ip, probe, time.perf_counter() - t0

    flat, exact_ip, probe, _ = exact_grads()
    exact_cos = cosine_scores(flat[q], flat[t])
    dims = [(e.module, e.shape) for e in probe.layout]
    print(
        f"# {comps}-component Markov mixture, V={v}; TinyGPT {model.num_parameters():,} params; "
        f"{len(names)} Linear layers with biases, exact gradient dim {flat.shape[1]:,}; "
        f"{n_query} queries x {n_train} train; seeds {seeds}"
    )
    print("# layer [d_out, d_in (+1 bias)]: " + ", ".join(f"{n} {list(s)}" for n, s in dims))
    del flat

    # fidelity: every configuration and projection seed
    configs = [
        ("flat", "SJLT", k, {"mode": "flat", "k": k}) for k in ([256, 1024] if args.quick else [256, 1024, 4096])
    ]
    for kind in KINDS:
        for k in [4, 16, 132] if args.quick else [4, 8, 16, 24, 32, 64, 132]:
            configs.append(("factored", kind, k, {"mode": "factored", "k": k, "projection": kind}))
    rows = []
    for _, _, _, kw in configs:
        ip, cos = [], []
        for s in seeds:
            z, _ = capture_all(model, names, xt, batch, seed=s, **kw)
            ip.append(per_query_spearman(exact_ip, (z[q] @ z[t].T).double()).mean())
            cos.append(per_query_spearman(exact_cos, cosine_scores(z[q], z[t])).mean())
            dim = z.shape[1]
            del z
        rows.append((dim, ip, cos))

    # timing: rounds that interleave every path (best of the rounds), after the results above
    rounds = 1 if args.quick else 3
    times: dict[str, list[float]] = {"exact": [], "kronfluence": []}
    for _ in range(rounds):
        times["exact"].append(exact_grads()[3])
        for i, (_, _, _, kw) in enumerate(configs):
            times.setdefault(str(i), []).append(capture_all(model, names, xt, batch, seed=1, **kw)[1])

    # the peer reference last: in one process, captures run after kronfluence
    # were several times slower (on 2 shared cores), so it cannot skew them.
    # Its scores are checked against ours before its time is taken.
    kf, kf_info = kronfluence_scores(model, names, xt, q, t, batch)
    if kf is None:
        print(f"# {kf_info}: exact scores from torch.func only")
    else:
        err = float((kf - exact_ip).abs().max() / exact_ip.abs().max())
        assert err < 1e-3, f"kronfluence identity scores differ from torch.func's: max rel err {err:.2e}"
        rho = per_query_spearman(exact_ip, kf).mean()
        print(
            f"# kronfluence identity pairwise scores = exact per-example gradient dot products "
            f"(max |diff| / max |score| = {err:.1e}, Spearman {rho:.4f})"
        )

    if kf is not None:
        for _ in range(rounds):
            times["kronfluence"].append(kronfluence_scores(model, names, xt, q, t, batch)[1])
    n_all = n_query + n_train
    print(
        f"# times: best of {rounds} interleaved rounds, all {n_all} examples, batches of {batch}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"# exact per-example gradients (torch.func vmap(grad)) + dot products: {min(times['exact']):.2f} s")
    if kf is not None:
        print(
            f"# kronfluence identity strategy (fit factors + pairwise scores; best of {rounds} runs after the rest): {min(times['kronfluence']):.2f} s\n"
        )
    else:
        print()
    print("| capture | projection | k | dim | Spearman ip | Spearman cos | capture time |")
    print("|---|---|---|---:|---:|---:|---:|")
    for i, ((mode, kind, k, _), (dim, ip, cos)) in enumerate(zip(configs, rows, strict=True)):
        k_txt = str(k) if mode == "flat" else f"{k} x {k}"
        print(f"| {mode} | {kind} | {k_txt} | {dim:,} | {fmt(ip)} | {fmt(cos)} | {min(times[str(i)]):.2f} s |")


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore", message="the compressed dimension", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="kronfluence")  # its own deprecations
    main()
