"""DEITA, LESS and DSIR validated on a pool whose truth is planted.

The pool (``dataprobes.selection.labelled_pool``) mixes six first-order
Markov chains (V = 32, T = 64) with ``TokenNoise`` rows and edited
``Duplicated`` clusters; every row is labelled with its chain, noise rate and
cluster. A model trained on a selection is judged by its exact KL per token to
the law it should learn (``lm.train``'s ``eval_kl``: the true next-token law
of every held-out prefix is known, docs/math.md "Data selection on probes").
Every method trains the same ``TinyGPT`` (d_model 32, 2 layers) for the same
number of optimizer steps (epochs = steps · batch / rows), from the same
initialisation and on the same held-out set of its seed.

Targeted (the target: 16 clean rows of each of chains 0 and 1, the two
subtasks; its law: their uniform mixture):

* random 5 %, the full pool, the oracle 5 % (clean rows of the subtasks);
* DSIR (``dsir_select`` on the token-id rows: hashed uni+bigrams, importance
  resampling; and its top-k form);
* LESS (``less_warmup`` on a random 5 % for 4 epochs, ``less_features``
  Adam/plain, ``less_scores``, ``select_top``), and its ablations from an
  independent implementation here (``torch.func`` per-example gradients of the
  same Linear layers at the same checkpoints, Gaussian projection): LESS as
  specified, plain-gradient train features, the last checkpoint only, inner
  product instead of cosine. The library's ``less_scores`` is checked equal
  to a brute-force score on these features before anything is trained.
* length bias: very short off-target rows (8 tokens) join the pool; the share
  of them in the top 5 % under inner product and under cosine.

Curation (DEITA; the law: the clean mixture of all chains): the oracle score
= chain entropy rate × (1 − noise rate), embeddings = the row's bigram counts
(an exact statistic of its next-token law), budget = the number of distinct
clean rows. DEITA (``diversity_filter`` on the oracle score), score-only (top
scores), diversity-only (the filter with a constant score: rows visited in
the pool's random order) and random; kept per cluster and chains covered.

    python benches/bench_selection_probes.py [--quick] [--seeds 3] [--out DIR]

Writes ``<out>/results.json`` and ``benches/figures/selection_*.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from dataprobes.lm import TinyGPT, train
from dataprobes.selection import (
    LabelledPool,
    diversity_filter,
    dsir_select,
    labelled_pool,
    less_features,
    less_scores,
    less_warmup,
    select_top,
)

V, T = 32, 64
FULL = {
    "targeted": dict(clean=3600, noisy=1200, duplicated=1200, noise_rates=(0.3, 0.6)),
    "curation": dict(clean=300, noisy=3000, duplicated=2700, noise_rates=(0.3, 0.6)),
    "steps": 190,
    "k": 1024,
    "short": 300,
    "eval_sequences": 256,
}
QUICK = {
    "targeted": dict(clean=720, noisy=240, duplicated=240, noise_rates=(0.3, 0.6)),
    "curation": dict(clean=60, noisy=600, duplicated=540, noise_rates=(0.3, 0.6)),
    "steps": 40,
    "k": 256,
    "short": 60,
    "eval_sequences": 64,
}
LM = dict(vocab_size=V, max_len=T, d_model=32, n_layers=2, n_heads=4)
TRAIN = dict(batch_size=32, lr=1e-2, warmup=10)
FRACTION = 0.05
SHORT_LEN = 4
TARGET = (0, 1)


def model_for(seed: int) -> TinyGPT:
    torch.manual_seed(10_000 + seed)
    return TinyGPT(**LM)  # type: ignore[arg-type]


def train_kl(rows: np.ndarray, law: Any, seed: int, cfg: dict[str, Any]) -> tuple[float, int]:
    """Exact KL per token to ``law`` after ``cfg['steps']`` steps on ``rows`` (equal compute for every method)."""
    epochs = max(1, round(cfg["steps"] * TRAIN["batch_size"] / len(rows)))
    res = train(
        model_for(seed),
        law,
        data=rows,
        epochs=epochs,
        seed=seed,
        eval_every=10**9,
        eval_sequences=cfg["eval_sequences"],
        progress=False,
        **TRAIN,  # type: ignore[arg-type]
    )
    return float(res.eval_kl[-1]), len(res.steps)


# ---------------------------------------------------------------------------
# LESS, independently: torch.func per-example gradients, Adam feature, projection


def linear_params(model: nn.Module) -> list[str]:
    """Parameters of the untied nn.Linear layers (LESS's default modules in ``less_features``)."""
    tied = {id(model.tok_emb.weight)}  # type: ignore[union-attr]
    out = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) and id(m.weight) not in tied:
            out += [f"{name}.weight"] + ([f"{name}.bias"] if m.bias is not None else [])
    return out


def reference_features(
    model: nn.Module, checkpoint: Path, rows: np.ndarray, proj: torch.Tensor, kind: str
) -> np.ndarray:
    """``[N, k]`` projected (unnormalised) LESS features of ``rows`` at ``checkpoint``:
    ``Γ = m'/sqrt(v'+ε)`` for ``kind='adam'``, the plain gradient for ``'plain'``."""
    ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model.load_state_dict(ck["model"])
    model.eval()
    names = linear_params(model)
    order = [n for n, _ in model.named_parameters()]
    state = ck["optimizer"]["state"]
    b1, b2 = ck["optimizer"]["param_groups"][0]["betas"]
    params = {n: p.detach() for n, p in model.named_parameters()}
    trainable = {n: params[n] for n in names}

    def loss(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, {**params, **p}, (x[None, :-1],))
        return F.cross_entropy(logits[0], x[1:])

    per_example = vmap(grad(loss), in_dims=(None, 0))
    out = np.empty((len(rows), proj.shape[1]), np.float32)
    x_all = torch.from_numpy(rows.astype(np.int64))
    for lo in range(0, len(rows), 128):
        with sdpa_kernel(SDPBackend.MATH):  # the math kernel has vmap batching rules
            g = per_example(trainable, x_all[lo : lo + 128])
        parts = []
        for n in names:
            gi = g[n].reshape(g[n].shape[0], -1)
            if kind == "adam":
                st = state[order.index(n)]
                m = b1 * st["exp_avg"].reshape(1, -1) + (1 - b1) * gi
                v = b2 * st["exp_avg_sq"].reshape(1, -1) + (1 - b2) * gi**2
                gi = m / torch.sqrt(v + 1e-8)
            parts.append(gi)
        out[lo : lo + 128] = (torch.cat(parts, 1) @ proj).numpy()
    return out


def unit(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-30)


def brute_scores(
    tr: list[np.ndarray], va: list[np.ndarray], w: np.ndarray, tasks: list[np.ndarray], cos: bool
) -> np.ndarray:
    """``max_j mean_{z' ∈ j} Σ_i w_i sim(Γ_i(z), g_i(z'))``, sim = cosine or inner product, pair by pair."""
    out = np.zeros((tr[0].shape[0], len(tasks)))
    for wi, a, b in zip(w, tr, va, strict=True):
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        if cos:
            a64, b64 = unit(a64), unit(b64)
        for j, idx in enumerate(tasks):
            out[:, j] += wi * (a64 @ b64[idx].T).mean(1)
    return out.max(1)


# ---------------------------------------------------------------------------
# the two experiments


def targeted(seed: int, cfg: dict[str, Any], workdir: Path) -> dict[str, Any]:
    pool = labelled_pool(V, T, target=TARGET, seed=seed, **cfg["targeted"])
    law = pool.target_law
    n = len(pool)
    num = int(FRACTION * n)
    good = pool.in_target
    clean = good & ~pool.noisy & ~pool.copy
    rng = np.random.default_rng(seed)
    tasks = [np.flatnonzero(pool.target_component == c) for c in TARGET]
    sel: dict[str, np.ndarray] = {
        "random 5%": rng.choice(n, num, replace=False),
        "oracle 5%": rng.choice(np.flatnonzero(clean), num, replace=False),
    }
    t0 = time.perf_counter()
    sel["DSIR"] = dsir_select(pool.tokens, pool.target_tokens, num, seed=seed, min_example_length=0, progress=False)
    sel["DSIR top-k"] = dsir_select(
        pool.tokens, pool.target_tokens, num, top_k=True, min_example_length=0, progress=False
    )
    t_dsir = time.perf_counter() - t0

    # LESS: warm-up on a random 5 %, the library's features and scores
    t0 = time.perf_counter()
    warm_model = model_for(seed)
    warm = less_warmup(
        warm_model, pool.tokens, law, fraction=FRACTION, epochs=4, seed=seed,
        checkpoint_dir=workdir / f"less-{seed}", progress=False, eval_every=10**9, eval_sequences=8,
        batch_size=8, lr=1e-2, warmup=5,
    )  # fmt: skip
    ck = warm.checkpoints
    tr = less_features(warm_model, ck, pool.tokens, kind="train", k=cfg["k"], seed=seed, progress=False)
    va = less_features(warm_model, ck, pool.target_tokens, kind="val", k=cfg["k"], seed=seed, progress=False)
    lib_scores = less_scores(tr, va, warm.epoch_lrs, tasks)
    sel["LESS"] = select_top(lib_scores, fraction=FRACTION)
    t_less = time.perf_counter() - t0
    w = np.asarray(warm.epoch_lrs) / np.sum(warm.epoch_lrs)
    assert np.allclose(lib_scores, brute_scores(tr, va, w, tasks, cos=True), atol=1e-6), "less_scores != brute force"

    # independent reference features (short off-target rows appended for the length-bias test)
    short_comp = np.array([c for c in range(len(pool.components)) if c not in TARGET])
    short = np.concatenate(
        [pool.components[c].sample(cfg["short"] // len(short_comp) + 1, SHORT_LEN, seed=seed + 7) for c in short_comp]
    )[: cfg["short"]]
    gen = torch.Generator().manual_seed(seed)
    dim = sum(dict(warm_model.named_parameters())[p].numel() for p in linear_params(warm_model))
    proj = torch.randn(dim, cfg["k"], generator=gen) / np.sqrt(cfg["k"])
    ref: dict[str, list[np.ndarray]] = {"adam": [], "plain": [], "val": [], "short": [], "short_plain": []}
    for c in ck:
        ref["adam"].append(reference_features(warm_model, c, pool.tokens, proj, "adam"))
        ref["plain"].append(reference_features(warm_model, c, pool.tokens, proj, "plain"))
        ref["val"].append(reference_features(warm_model, c, pool.target_tokens, proj, "plain"))
        ref["short"].append(reference_features(warm_model, c, short, proj, "adam"))
        ref["short_plain"].append(reference_features(warm_model, c, short, proj, "plain"))
    assert np.allclose(
        less_scores(ref["adam"], ref["val"], warm.epoch_lrs, tasks),
        brute_scores(ref["adam"], ref["val"], w, tasks, cos=True),
        atol=1e-6,
    )
    ref_scores = {
        "LESS (reference)": brute_scores(ref["adam"], ref["val"], w, tasks, cos=True),
        "LESS plain gradients": brute_scores(ref["plain"], ref["val"], w, tasks, cos=True),
        "LESS last checkpoint": brute_scores(ref["adam"][-1:], ref["val"][-1:], np.ones(1), tasks, cos=True),
        "LESS inner product": brute_scores(ref["adam"], ref["val"], w, tasks, cos=False),
    }
    for name, s in ref_scores.items():
        sel[name] = select_top(s, fraction=FRACTION)
    agree = float(
        np.corrcoef(np.argsort(np.argsort(lib_scores)), np.argsort(np.argsort(ref_scores["LESS (reference)"])))[0, 1]
    )

    # length bias: pool + short rows, top 5 % by cosine and by inner product
    bias = {}
    for feat, (a, b) in {"Adam": ("adam", "short"), "plain": ("plain", "short_plain")}.items():
        for name, cos in (("cosine", True), ("inner product", False)):
            s_pool = brute_scores(ref[a], ref["val"], w, tasks, cos=cos)
            s_short = brute_scores(ref[b], ref["val"], w, tasks, cos=cos)
            top = select_top(np.concatenate([s_pool, s_short]), fraction=FRACTION)
            bias[f"{feat} {name}"] = float((top >= n).mean())
        norm = [np.linalg.norm(ref[k][-1], axis=1).mean() for k in (a, b)]
        bias[f"{feat} norm ratio short/pool"] = float(norm[1] / norm[0])
    bias["share of the pool"] = len(short) / (n + len(short))

    rows: dict[str, Any] = {}
    selections: dict[str, list[int]] = {}
    for name, idx in sel.items():
        kl, steps = train_kl(pool.tokens[idx], law, seed, cfg)
        per_task = [float((pool.component[idx] == c).mean()) for c in TARGET]
        rows[name] = {
            "precision": float(good[idx].mean()),
            "clean precision": float(clean[idx].mean()),
            "smaller subtask share": min(per_task),
            "kl": kl,
            "steps": steps,
        }
        selections[name] = idx.tolist()
    kl, steps = train_kl(np.asarray(pool.tokens), law, seed, cfg)
    rows["full pool"] = {
        "precision": float(good.mean()),
        "clean precision": float(clean.mean()),
        "smaller subtask share": min(float((pool.component == c).mean()) for c in TARGET),
        "kl": kl,
        "steps": steps,
    }
    return {
        "methods": rows,
        "selections": selections,
        "length_bias": bias,
        "less_library_vs_reference_spearman": agree,
        "seconds": {"dsir": t_dsir, "less_library": t_less},
        "pool": {
            "rows": n,
            "selected": num,
            "target_share": float(good.mean()),
            "clean_target_share": float(clean.mean()),
        },
    }


def bigram_counts(tokens: np.ndarray) -> np.ndarray:
    x = tokens.astype(np.int64)
    e = np.zeros((len(x), V * V))
    np.add.at(e, (np.arange(len(x))[:, None], x[:, :-1] * V + x[:, 1:]), 1.0)
    return e


def curation(seed: int, cfg: dict[str, Any]) -> dict[str, Any]:
    pool: LabelledPool = labelled_pool(V, T, seed=seed + 1000, **cfg["curation"])
    law = pool.pool_law
    n = len(pool)
    distinct = ~pool.noisy & ~pool.copy
    budget = int(distinct.sum())
    scores = pool.oracle_scores()
    emb = bigram_counts(np.asarray(pool.tokens))
    rng = np.random.default_rng(seed)
    sel = {
        "DEITA": diversity_filter(emb, scores, budget, 0.9, progress=False),
        "score only": np.argsort(-scores, kind="stable")[:budget],
        "diversity only": diversity_filter(emb, np.zeros(n), budget, 0.9, progress=False),
        "random": rng.choice(n, budget, replace=False),
    }
    rows: dict[str, Any] = {}
    for name, idx in sel.items():
        kept = np.bincount(pool.cluster[idx], minlength=n)
        multi = np.bincount(pool.cluster, minlength=n) > 1
        kl, steps = train_kl(pool.tokens[idx], law, seed, cfg)
        rows[name] = {
            "kept": len(idx),
            "max kept per cluster": int(kept[multi].max()),
            "clusters with >1 kept": int((kept[multi] > 1).sum()),
            "chains covered": int(np.unique(pool.component[idx]).size),
            "noisy share": float(pool.noisy[idx].mean()),
            "copy share": float(pool.copy[idx].mean()),
            "kl": kl,
            "steps": steps,
        }
    return {
        "methods": rows,
        "pool": {"rows": n, "budget": budget, "clusters": int((np.bincount(pool.cluster) > 1).sum())},
    }


# ---------------------------------------------------------------------------
# reporting


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, tuple[float, float]]]:
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for name in runs[0]["methods"]:
        out[name] = {}
        for field in runs[0]["methods"][name]:
            vals = np.array([r["methods"][name][field] for r in runs], dtype=np.float64)
            out[name][field] = (float(vals.mean()), float(vals.std()))
    return out


def table(summary: dict[str, dict[str, tuple[float, float]]], fields: list[str]) -> str:
    lines = ["| method | " + " | ".join(fields) + " |", "|---" * (len(fields) + 1) + "|"]
    for name, vals in summary.items():
        cells = []
        for f in fields:
            m, s = vals[f]
            cells.append(f"{m:.0f}" if f in ("steps", "kept") else f"{m:.3f} ± {s:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(runs: list[dict[str, Any]], fields: list[str], title: str, path: Path) -> None:
    """Bars: mean over seeds ± std; dots: each seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(runs[0]["methods"])
    fig, axes = plt.subplots(1, len(fields), figsize=(4.6 * len(fields), 4.4))
    for ax, f in zip(np.atleast_1d(axes), fields, strict=True):
        vals = np.array([[r["methods"][k][f] for r in runs] for k in names])
        x = np.arange(len(names))
        ax.bar(x, vals.mean(1), yerr=vals.std(1), capsize=3, color="tab:blue", alpha=0.7)
        for j in range(vals.shape[1]):
            ax.plot(x, vals[:, j], "k.", markersize=5)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_title(f)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small pools, one seed, short training (about a minute)")
    ap.add_argument("--seeds", type=int, default=None, help="seeds (default 3, --quick 1)")
    ap.add_argument("--out", type=Path, default=Path("bench_out/selection_probes"))
    ap.add_argument("--figures", type=Path, default=Path("benches/figures"))
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--seed-list", default=None, help="comma-separated seeds (overrides --seeds): split a run")
    ap.add_argument("--merge", type=Path, nargs="*", default=None, help="report the partial.json of split runs")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = QUICK if args.quick else FULL
    seeds = list(range(args.seeds if args.seeds is not None else (1 if args.quick else 3)))
    if args.seed_list:
        seeds = [int(x) for x in args.seed_list.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    tg, cu = [], []
    if args.merge:
        seeds = []
        for path in args.merge:
            part = json.loads(path.read_text())
            tg += part["targeted"]
            cu += part["curation"]
            seeds += part["seeds"]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            for s in seeds:
                t0 = time.perf_counter()
                tg.append(targeted(s, cfg, Path(tmp)))
                cu.append(curation(s, cfg))
                print(f"seed {s}: {time.perf_counter() - t0:.0f} s wall, {time.process_time():.0f} s CPU", flush=True)
                done = {"seeds": seeds[: len(tg)], "targeted": tg, "curation": cu}
                (args.out / "partial.json").write_text(json.dumps(done, indent=1))
    elapsed = time.perf_counter() - start
    st, sc = summarise(tg), summarise(cu)
    bias = {
        k: (float(np.mean([r["length_bias"][k] for r in tg])), float(np.std([r["length_bias"][k] for r in tg])))
        for k in tg[0]["length_bias"]
    }
    print(f"\n## Targeted selection (DSIR, LESS): {len(seeds)} seeds, pool {tg[0]['pool']}\n")
    print(table(st, ["precision", "clean precision", "smaller subtask share", "kl", "steps"]))
    print(
        "\nlength bias (share of short off-target rows in the top 5 %):",
        {k: f"{m:.3f} ± {s:.3f}" for k, (m, s) in bias.items()},
    )
    agree = [r["less_library_vs_reference_spearman"] for r in tg]
    print(f"LESS library vs reference score Spearman: {np.mean(agree):.3f} ± {np.std(agree):.3f}")
    print(f"\n## Curation (DEITA): pool {cu[0]['pool']}\n")
    print(
        table(
            sc,
            [
                "kept",
                "max kept per cluster",
                "clusters with >1 kept",
                "chains covered",
                "noisy share",
                "copy share",
                "kl",
                "steps",
            ],
        )
    )
    print(f"\ntotal {elapsed:.0f} s, {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    suffix = "_quick" if args.quick else ""
    (args.out / f"results{suffix}.json").write_text(
        json.dumps(
            {
                "config": {k: v for k, v in cfg.items()},
                "seeds": seeds,
                "targeted": tg,
                "curation": cu,
                "seconds": elapsed,
            },
            indent=1,
        )
    )
    args.figures.mkdir(parents=True, exist_ok=True)
    plot(
        tg,
        ["precision", "clean precision", "smaller subtask share", "kl"],
        "targeted selection (DSIR, LESS): the selected 5 % and the exact KL to the target law after training",
        args.figures / f"selection_targeted{suffix}.png",
    )
    plot(
        cu,
        ["kl", "noisy share", "copy share", "chains covered"],
        "curation (DEITA): exact KL to the pool law after training, and what was kept",
        args.figures / f"selection_deita{suffix}.png",
    )


if __name__ == "__main__":
    main()
