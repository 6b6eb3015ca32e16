"""Task2Vec diversity and alignment coefficients on probes whose answer is known.

Issue 13, "Validation on probes"; docs/math.md, "Task2Vec validation". The
probe families and their exact quantities are those of
``tests/metrics/test_task2vec_probes.py`` (imported from there), at larger
sizes and for two probe networks: a randomly initialised TinyGPT (d_model 32,
2 layers, V = 32, context 32) and the same network briefly trained
(``lm.train``, 300 steps) on a generic mixture of eight chains with entropy
rates spread over (0.3–0.95)·log V.

Estimator: every coefficient is computed from fresh batches (rows
``i·batch ..`` of the process's sample for a data seed), all batches of a
study embedded with one label seed (common random numbers: identical batches
get identical embeddings), averaged over data seeds; standard errors are the
delete-one-batch jackknife, combined over seeds. The library's
``diversity_coefficient`` (an independent label seed per batch) is measured
beside it: its Monte-Carlo floor (the one-token data set) against
``fisher_samples``, and the vocabulary and entropy families at the default
settings.

Studies: diversity vs the number of mixture components (components on their
own 4-token supports), vs the vocabulary size (i.i.d. uniform over v tokens),
vs the exact entropy rate (the doubly stochastic cycle family), the bounds
(one repeated token, a dominant token, i.i.d. uniform), alignment vs α for
``(1 − α) P + α R`` and vs the exact KL rate of chains R from P (Spearman),
the distance histogram of M = 3 data sets with its M + C(M, 2) = 6 groups,
and the authors' synthetic study (mixtures of HMM "concepts": number of
concepts × vocabulary size).

    python benches/bench_task2vec_probes.py [--quick] [--out DIR] [--figures DIR]

Writes ``<out>/results.json`` and ``benches/figures/task2vec_*.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "metrics"))
import test_task2vec_probes as fam  # noqa: E402

import dataprobes as dp  # noqa: E402
from dataprobes.lm import train  # noqa: E402
from dataprobes.metrics import diversity_coefficient  # noqa: E402
from dataprobes.metrics.task2vec import pairwise_task2vec_distances  # noqa: E402

FULL: dict[str, Any] = {
    "num_batches": 10,
    "seeds": (0, 1),
    "components": (1, 2, 4, 8, 16),
    "vocabulary": (2, 4, 8, 16, 32),
    "lambdas": (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0),
    "dominant": (0.0, 1e-4, 1e-3, 1e-2),
    "concepts": (1, 2, 4, 8, 16, 32),
    "concept_vocab": (8, 16, 32),
    "alphas": (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0),
    "fisher_samples": (1, 4, 16),
    "default_batches": 8,
}
QUICK: dict[str, Any] = {
    "num_batches": 4,
    "seeds": (0,),
    "components": (1, 4, 16),
    "vocabulary": (2, 8, 32),
    "lambdas": (0.0, 0.3, 1.0),
    "dominant": (0.0, 1e-4),
    "concepts": (1, 4, 16),
    "concept_vocab": (8, 32),
    "alphas": (0.0, 0.5, 1.0),
    "fisher_samples": (1, 4),
    "default_batches": 4,
}
TRAIN_STEPS = 300


def trained_probe() -> Any:
    """The random probe trained briefly on a generic mixture of eight chains."""
    model = fam.make_probe()
    generic = dp.Mixture(
        [
            dp.MarkovChain.random(fam.V, entropy_rate=f * math.log(fam.V), seed=100 + i)
            for i, f in enumerate(np.linspace(0.3, 0.95, 8))
        ]
    )
    res = train(
        model, generic, steps=TRAIN_STEPS, batch_size=32, seq_len=fam.T, lr=1e-2, warmup=20, seed=0, progress=False
    )
    model.eval()
    print(f"trained probe: held-out excess loss {res.eval_kl[0]:.3f} -> {res.eval_kl[-1]:.3f} nats/token", flush=True)
    return model


class Study:
    """The studies for one probe network."""

    def __init__(self, probe: Any, cfg: dict[str, Any]) -> None:
        self.probe, self.cfg = probe, cfg

    def embed(self, process: dp.Process, data_seed: int) -> list[Any]:
        return fam.embed_batches(process, self.probe, self.cfg["num_batches"], fam.BATCH, fam.T, data_seed)

    def diversity(self, process: dp.Process) -> tuple[float, float]:
        return fam.averaged(
            [fam.within_stats(pairwise_task2vec_distances(self.embed(process, s))) for s in self.cfg["seeds"]]
        )

    def alignment(self, p: dp.Process, others: list[dp.Process]) -> list[tuple[float, float]]:
        per_seed = []
        for s in self.cfg["seeds"]:
            ea = self.embed(p, 2 * s)
            per_seed.append([fam.cross_stats(fam.cross_distances(ea, self.embed(r, 2 * s + 1))) for r in others])
        return [fam.averaged([(1.0 - ps[j][0], ps[j][1]) for ps in per_seed]) for j in range(len(others))]

    def run(self) -> dict[str, Any]:
        c = self.cfg
        out: dict[str, Any] = {}
        t0 = time.perf_counter()
        out["components"] = [self.diversity(fam.support_mixture(k)) for k in c["components"]]
        out["vocabulary"] = [self.diversity(fam.uniform_on(v)) for v in c["vocabulary"]]
        out["entropy"] = [self.diversity(fam.cycle_family(lam)) for lam in c["lambdas"]]
        out["dominant"] = [self.diversity(fam.dominant_token(e)) for e in c["dominant"]]
        out["concepts"] = {
            str(v): [self.diversity(fam.concept_mixture(k, v)) for k in c["concepts"]] for v in c["concept_vocab"]
        }
        p, r = fam.alignment_pair()
        out["alignment_alpha"] = self.alignment(p, [fam.mixed(p, r, a) for a in c["alphas"]])
        pk, rs = fam.kl_family()
        extra = [dp.MarkovChain.random(fam.V, concentration=a, seed=40 + i) for i, a in enumerate((0.2, 1.0, 5.0))]
        rs = rs + [fam.row_mixture(pk, q, 0.5) for q in extra]
        kls = [fam.kl_rate(pk, x) for x in rs]
        al = self.alignment(pk, rs)
        out["alignment_kl"] = {
            "kl": kls,
            "alignment": al,
            "spearman": float(scipy.stats.spearmanr(kls, [m for m, _ in al]).statistic),
        }
        sets = fam.histogram_sets()
        embs = [e for i, s in enumerate(sets) for e in self.embed(s, i)]
        groups = fam.group_distances(
            pairwise_task2vec_distances(embs), np.repeat(np.arange(len(sets)), c["num_batches"]), len(sets)
        )
        out["histogram"] = {
            "groups": {f"{a}{b}": v.tolist() for (a, b), v in groups.items()},
            "separated": fam.modes_separated(groups),
        }
        out["seconds"] = time.perf_counter() - t0
        return out


def library_floor(probe: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    """The library's coefficient (independent label seeds per batch): the
    one-token floor against fisher_samples, and two families at the defaults."""
    nb = cfg["default_batches"]

    def coef(process: dp.Process, **kw: Any) -> tuple[float, float]:
        r = diversity_coefficient(process, probe, nb, fam.BATCH, seq_len=fam.T, seed=0, progress=False, **kw)
        return float(r.coefficient), float(r.stderr)

    first = coef(fam.support_mixture(2))
    again = coef(fam.support_mixture(2))
    assert first == again, "diversity_coefficient is not deterministic for a seed"
    return {
        "floor": {str(s): coef(fam.dominant_token(0.0), fisher_samples=s) for s in cfg["fisher_samples"]},
        "vocabulary": [coef(fam.uniform_on(v)) for v in cfg["vocabulary"]],
        "entropy": [coef(fam.cycle_family(lam)) for lam in cfg["lambdas"]],
        "components": [coef(fam.support_mixture(k)) for k in cfg["components"]],
    }


def monotonicity(xs: Any, vals: list[tuple[float, float]]) -> dict[str, Any]:
    """Spearman of the means against the parameter and the steps that do not
    rise by more than one combined standard error."""
    return {
        "spearman": float(scipy.stats.spearmanr(list(xs), [m for m, _ in vals]).statistic),
        "violations": len(fam.rises(vals)),
        "steps": len(vals) - 1,
    }


def fmt(v: tuple[float, float]) -> str:
    return f"{v[0]:.4f} ± {v[1]:.4f}"


def report(res: dict[str, Any], cfg: dict[str, Any]) -> None:
    probes = list(res["probes"])
    ent = [fam.cycle_entropy_rate(lam) for lam in cfg["lambdas"]]
    rows = [
        ("components", "k", cfg["components"], cfg["components"]),
        ("vocabulary", "v", cfg["vocabulary"], cfg["vocabulary"]),
        ("entropy", "H (nats)", [f"{h:.3f}" for h in ent], ent),
    ]
    for key, label, shown, xs in rows:
        print(f"\n### diversity vs {key}\n")
        print(f"| {label} | " + " | ".join(probes) + " |")
        print("|---" * (len(probes) + 1) + "|")
        for i, x in enumerate(shown):
            print(f"| {x} | " + " | ".join(fmt(res["probes"][p][key][i]) for p in probes) + " |")
        print(
            "| monotone (Spearman; steps not rising by > 1 se) | "
            + " | ".join(
                f"{m['spearman']:.2f}; {m['violations']}/{m['steps']}"
                for m in (monotonicity(xs, res["probes"][p][key]) for p in probes)
            )
            + " |"
        )
    print("\n### bounds\n")
    print("| data set | " + " | ".join(probes) + " |")
    print("|---" * (len(probes) + 1) + "|")
    for i, e in enumerate(cfg["dominant"]):
        name = "one token" if e == 0 else f"dominant token, eps {e:g}"
        print(f"| {name} | " + " | ".join(fmt(res["probes"][p]["dominant"][i]) for p in probes) + " |")
    print("| i.i.d. uniform (V = 32) | " + " | ".join(fmt(res["probes"][p]["vocabulary"][-1]) for p in probes) + " |")
    print(
        "| max of the vocabulary and entropy families | "
        + " | ".join(
            f"{max(m for m, _ in res['probes'][p]['vocabulary'] + res['probes'][p]['entropy']):.4f}" for p in probes
        )
        + " |"
    )
    print("\n### HMM concepts (rows: vocabulary; columns: number of concepts)\n")
    for p in probes:
        print(f"{p}:\n\n| v | " + " | ".join(str(k) for k in cfg["concepts"]) + " |")
        print("|---" * (len(cfg["concepts"]) + 1) + "|")
        for v, vals in res["probes"][p]["concepts"].items():
            print(f"| {v} | " + " | ".join(fmt(x) for x in vals) + " |")
        print()
    print("### alignment(P, (1 − α) P + α R)\n")
    print("| α | " + " | ".join(probes) + " |")
    print("|---" * (len(probes) + 1) + "|")
    for i, a in enumerate(cfg["alphas"]):
        print(f"| {a} | " + " | ".join(fmt(res["probes"][p]["alignment_alpha"][i]) for p in probes) + " |")
    print(
        "| monotone (Spearman of −alignment; steps not falling by > 1 se) | "
        + " | ".join(
            f"{m['spearman']:.2f}; {m['violations']}/{m['steps']}"
            for m in (
                monotonicity(cfg["alphas"], [(-m, se) for m, se in res["probes"][p]["alignment_alpha"]]) for p in probes
            )
        )
        + " |"
    )
    print("\n### alignment vs exact KL rate KL(P ‖ R)\n")
    print("| KL rate (nats/token) | " + " | ".join(probes) + " |")
    print("|---" * (len(probes) + 1) + "|")
    kls = res["probes"][probes[0]]["alignment_kl"]["kl"]
    for i in np.argsort(kls):
        print(
            f"| {kls[i]:.3f} | "
            + " | ".join(fmt(res["probes"][p]["alignment_kl"]["alignment"][i]) for p in probes)
            + " |"
        )
    print("| Spearman | " + " | ".join(f"{res['probes'][p]['alignment_kl']['spearman']:.3f}" for p in probes) + " |")
    print("\n### distance histogram of M = 3 data sets (groups: within 00 11 22, cross 01 02 12)\n")
    print("| group | " + " | ".join(probes) + " |")
    print("|---" * (len(probes) + 1) + "|")
    for g in res["probes"][probes[0]]["histogram"]["groups"]:
        cells = []
        for p in probes:
            v = np.array(res["probes"][p]["histogram"]["groups"][g])
            cells.append(f"{v.mean():.4f} [{v.min():.4f}, {v.max():.4f}]")
        print(f"| {g} | " + " | ".join(cells) + " |")
    print(
        "| nearest-own-mean fraction | "
        + " | ".join(f"{res['probes'][p]['histogram']['separated']:.3f}" for p in probes)
        + " |"
    )
    lib = res["library"]
    print("\n### the library's coefficient (independent label seeds), random probe\n")
    print("| one-token floor, fisher_samples | " + " | ".join(lib["floor"]) + " |")
    print("|---" * (len(lib["floor"]) + 1) + "|")
    print("| diversity | " + " | ".join(fmt(v) for v in lib["floor"].values()) + " |")
    for key, xs in (("vocabulary", cfg["vocabulary"]), ("entropy", ent), ("components", cfg["components"])):
        m = monotonicity(xs, lib[key])
        print(
            f"\n{key} at the defaults (fisher_samples 1): "
            + ", ".join(fmt(v) for v in lib[key])
            + f"; Spearman {m['spearman']:.2f}, {m['violations']}/{m['steps']} steps not rising"
        )


def plot(res: dict[str, Any], cfg: dict[str, Any], figures: Path, suffix: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"random probe": ("tab:blue", "-"), "trained probe": ("tab:orange", "--")}
    ent = [fam.cycle_entropy_rate(lam) for lam in cfg["lambdas"]]

    def line(ax: Any, xs: Any, vals: list[tuple[float, float]], name: str, **kw: Any) -> None:
        color, ls = styles[name]
        ax.errorbar(
            xs, [m for m, _ in vals], yerr=[s for _, s in vals], color=color, ls=ls, marker="o", capsize=3, **kw
        )

    fig, axes = plt.subplots(2, 3, figsize=(15, 8.6))
    ax = axes[0, 0]
    for name, r in res["probes"].items():
        line(ax, cfg["components"], r["components"], name, label=name)
    ax.set(xscale="log", xlabel="mixture components k (4-token supports)", ylabel="diversity", title="components")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    for name, r in res["probes"].items():
        line(ax, cfg["vocabulary"], r["vocabulary"], name, label=name)
        ax.axhline(r["dominant"][0][0], color=styles[name][0], ls=":", lw=1)
    ax.set_xscale("log", base=2)
    ax.set(xlabel="vocabulary v (i.i.d. uniform)", ylabel="diversity", title="vocabulary (dotted: one repeated token)")
    ax = axes[0, 2]
    for name, r in res["probes"].items():
        line(ax, ent, r["entropy"], name, label=name)
    ax.set(xlabel="exact entropy rate (nats/token), cycle family", ylabel="diversity", title="entropy rate")
    ax = axes[1, 0]
    r = res["probes"]["random probe"]
    for v, vals in r["concepts"].items():
        ax.errorbar(
            cfg["concepts"], [m for m, _ in vals], yerr=[s for _, s in vals], marker="o", capsize=3, label=f"v={v}"
        )
    ax.set(
        xscale="log",
        xlabel="latent concepts (HMMs in the mixture)",
        ylabel="diversity",
        title="HMM concepts, random probe",
    )
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    if "trained probe" in res["probes"]:
        r = res["probes"]["trained probe"]
        for v, vals in r["concepts"].items():
            ax.errorbar(
                cfg["concepts"],
                [m for m, _ in vals],
                yerr=[s for _, s in vals],
                marker="o",
                capsize=3,
                ls="--",
                label=f"v={v}",
            )
        ax.set(xscale="log", xlabel="latent concepts", ylabel="diversity", title="HMM concepts, trained probe")
        ax.legend(fontsize=8)
    ax = axes[1, 2]
    lib = res["library"]
    fs = [int(s) for s in lib["floor"]]
    ax.errorbar(
        fs, [m for m, _ in lib["floor"].values()], yerr=[s for _, s in lib["floor"].values()], marker="o", capsize=3
    )
    ax.plot(fs, [lib["floor"][str(fs[0])][0] / s for s in fs], "k:", label="floor(1) / S")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="fisher_samples S",
        ylabel="diversity of one repeated token",
        title="library coefficient: Monte-Carlo floor",
    )
    ax.legend(fontsize=8)
    fig.suptitle("Task2Vec diversity on probes (fresh batches, one label seed; mean ± jackknife se over data seeds)")
    fig.tight_layout()
    fig.savefig(figures / f"task2vec_diversity{suffix}.png", dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    ax = axes[0]
    for name, r in res["probes"].items():
        line(ax, cfg["alphas"], r["alignment_alpha"], name, label=name)
    ax.set(xlabel="α in (1 − α) P + α R", ylabel="alignment", title="alignment vs mixing")
    ax.legend(fontsize=8)
    ax = axes[1]
    for name, r in res["probes"].items():
        a = r["alignment_kl"]
        ax.errorbar(
            a["kl"],
            [m for m, _ in a["alignment"]],
            yerr=[s for _, s in a["alignment"]],
            color=styles[name][0],
            ls="none",
            marker="o",
            capsize=3,
            label=f"{name}: Spearman {a['spearman']:.2f}",
        )
    ax.set(
        xscale="log",
        xlabel="exact KL rate KL(P ‖ R) (nats/token)",
        ylabel="alignment(P, R)",
        title="alignment vs KL rate",
    )
    ax.legend(fontsize=8)
    ax = axes[2]
    groups = res["probes"]["random probe"]["histogram"]["groups"]
    names = {
        "00": "within: 0101…",
        "11": "within: uniform",
        "22": "within: 16-mixture",
        "01": "cross 0–1",
        "02": "cross 0–2",
        "12": "cross 1–2",
    }
    allv = np.concatenate([np.array(v) for v in groups.values()])
    bins = np.linspace(allv.min(), allv.max(), 60)
    for g, v in groups.items():
        ax.hist(v, bins=bins, alpha=0.6, label=names[g])
        ax.axvline(float(np.mean(v)), color="k", lw=0.8, ls=":")
    ax.set(
        xlabel="pairwise batch distance",
        ylabel="pairs",
        title="M = 3 data sets: 3 + 3 = 6 modes (random probe)",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figures / f"task2vec_alignment{suffix}.png", dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer batches, one seed, three points a family")
    ap.add_argument("--out", type=Path, default=Path("bench_out/task2vec_probes"))
    ap.add_argument("--figures", type=Path, default=Path("benches/figures"))
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--random-only", action="store_true", help="skip the trained probe")
    ap.add_argument("--from-json", type=Path, default=None, help="report and plot a saved results.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = QUICK if args.quick else FULL
    suffix = "_quick" if args.quick else ""
    if args.from_json is not None:
        saved = json.loads(args.from_json.read_text())
        cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in saved["config"].items()}
        report(saved, cfg)
        args.figures.mkdir(parents=True, exist_ok=True)
        plot(saved, cfg, args.figures, suffix)
        return
    start = time.perf_counter()
    probes = {"random probe": fam.make_probe()}
    if not args.random_only:
        probes["trained probe"] = trained_probe()
    res: dict[str, Any] = {"probes": {}}
    for name, probe in probes.items():
        res["probes"][name] = Study(probe, cfg).run()
        print(f"{name}: {res['probes'][name]['seconds']:.0f} s", flush=True)
    t0 = time.perf_counter()
    res["library"] = library_floor(probes["random probe"], cfg)
    print(f"library coefficient: {time.perf_counter() - t0:.0f} s", flush=True)
    elapsed = time.perf_counter() - start
    report(res, cfg)
    print(
        f"\ntotal {elapsed:.0f} s, {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{args.threads} torch thread(s); batch {fam.BATCH} × {fam.T} tokens, {cfg['num_batches']} batches, "
        f"seeds {list(cfg['seeds'])}"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"results{suffix}.json").write_text(
        json.dumps(
            {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}, **res, "seconds": elapsed},
            indent=1,
        )
    )
    args.figures.mkdir(parents=True, exist_ok=True)
    plot(res, cfg, args.figures, suffix)


if __name__ == "__main__":
    main()
