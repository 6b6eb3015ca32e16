"""QA-SFT on fact worlds: the "60 data points" study (Ye et al., arXiv 2409.15825).

Runs :func:`dataprobes.experiments.run_qa_sft` for several seeds: pretrain a
TinyGPT on a :class:`~dataprobes.FactWorld`, bucket facts by memory level,
fine-tune on N QA examples of one level, score held-out QA accuracy per test
level. Reports, with the spread over seeds:

* the data-efficiency curve per train level and its knee (smallest N reaching
  90 % of the level's best accuracy);
* the train-level × test-level matrix at N = 60: is the best of each test
  column on the diagonal, does high-level SFT win?
* confident wrong answers (top probability >= 0.5) after low- vs high-level
  SFT;
* wall time of pretraining and of the whole SFT grid.

Correctness first: the QA format never occurs in a pretraining sample, and a
second call on the same output directory resumes from the checkpoints and
returns the identical result (asserted) before anything is reported.

    python benches/bench_qa_sft.py            # 2 seeds, ~8-10 min on the loaded 2-core VM
    python benches/bench_qa_sft.py --quick    # smoke test (~1 min)
    python benches/bench_qa_sft.py --template-coverage 6   # each fact under 6 of the 12 templates

With ``--template-coverage K`` (planted partial knowledge) it also reports
Spearman(exposure, level), the mean level of the well-exposed facts against
``K / T`` and the pretrained model's completion accuracy on the templates a
fact was stated under versus those it never was (cross-template
generalisation).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

FIGURES = Path(__file__).resolve().parent / "figures"


def config(args: argparse.Namespace):
    from dataprobes.experiments import QASFTConfig

    return QASFTConfig(
        num_facts=args.facts,
        num_relations=args.relations,
        num_templates=args.templates,
        exposure=args.exposure,
        exposure_range=args.exposure_range,
        unseen_fraction=args.unseen,
        template_coverage=args.template_coverage,
        statement_prob=args.statement_prob,
        d_model=args.d_model,
        pretrain_steps=args.steps,
        batch_size=args.batch,
        seq_len=args.seq_len,
        pretrain_lr=args.lr,
        test_fraction=args.test_fraction,
        sft_steps=args.sft_steps,
        sft_lr=args.sft_lr,
        ns=tuple(int(n) if n != "all" else "all" for n in args.ns.split(",")),
        seeds=tuple(int(s) for s in args.seeds.split(",")),
    )


def coverage_report(cfg, res, out: Path) -> str:
    """Spearman(exposure, level), the level of the well-exposed facts (top
    exposure quartile of the stated facts) against ``k_f / T``, and the
    pretrained model's hit rate on covered vs never-seen templates of those
    facts (the saved pretrained checkpoints, re-scored with ``return_hits``)."""
    from dataprobes.experiments.qa_sft import _pretrained
    from dataprobes.knowledge import level_exposure_table, memory_level

    nt = cfg.num_templates
    lines = [
        "\n| seed | Spearman(exposure, level) | mean k_f/T | level, top-quartile exposure | "
        "hit rate there: covered templates | hit rate there: unseen templates | "
        "mid-level facts (0 < level < 1) | their hit rate: covered | unseen |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for si, s in enumerate(cfg.seeds):
        world = cfg.world(s)
        levels = res.levels[si]
        stated = world.exposure > 0
        le = level_exposure_table(levels[stated], world.exposure[stated])
        rho = "– (levels constant)" if le.constant else f"{le.spearman:.3f}"
        seed_dir = out / f"seed-{s}"
        assert (seed_dir / "pretrained.pt").exists(), "the run saves its pretrained model"
        model, _ = _pretrained(cfg, s, world, seed_dir, progress=False)  # loads the saved checkpoint
        lv, hits = memory_level(model, world, batch_size=256, progress=False, return_hits=True)
        assert np.array_equal(lv, levels), "re-scored levels differ from the run's"
        mask = np.asarray(world.template_mask)
        top = stated & (world.exposure >= np.quantile(world.exposure[stated], 0.75))
        kt = mask.sum(1) / nt
        cov_hits = hits[top][mask[top]].mean()
        unseen = ~mask[top]
        off = f"{hits[top][unseen].mean():.3f}" if unseen.any() else "–"
        mid = stated & (levels > 0) & (levels < 1)
        mid_cov = f"{hits[mid][mask[mid]].mean():.3f}" if mid.any() else "–"
        mid_off = f"{hits[mid][~mask[mid]].mean():.3f}" if (~mask[mid]).any() else "–"
        lines.append(
            f"| {s} | {rho} | {kt[stated].mean():.3f} | {levels[top].mean():.3f} (k/T {kt[top].mean():.3f}) "
            f"| {cov_hits:.3f} | {off} | {int(mid.sum())} | {mid_cov} | {mid_off} |"
        )
    return "\n".join(lines)


def pooled(res, arr: np.ndarray) -> np.ndarray:
    """``[S, L, N]`` of a ``[S, L, N, L]`` rate pooled over test levels (weights: test counts)."""
    w = res.test_counts[:, None, None, :].astype(np.float64)
    ok = ~np.isnan(arr)
    out = (np.where(ok, arr, 0.0) * w).sum(-1) / np.maximum((w * ok).sum(-1), 1)
    return np.where(res.n_used > 0, out, np.nan)


def fmt(mean: float, sd: float) -> str:
    return "–" if np.isnan(mean) else f"{mean:.3f} ± {sd:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--facts", type=int, default=250)
    ap.add_argument("--relations", type=int, default=4)
    ap.add_argument("--templates", type=int, default=12)
    ap.add_argument("--exposure", default="loguniform")
    ap.add_argument("--exposure-range", type=float, default=300.0)
    ap.add_argument("--unseen", type=float, default=0.1)
    ap.add_argument("--statement-prob", type=float, default=0.5)
    ap.add_argument(
        "--template-coverage",
        type=int,
        default=None,
        help="state each fact under K random templates only (default all)",
    )
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--test-fraction", type=float, default=0.3)
    ap.add_argument("--sft-steps", type=int, default=150)
    ap.add_argument("--sft-lr", type=float, default=1e-3)
    ap.add_argument("--ns", default="15,30,60,120,240,960,all")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out-dir", default=None, help="checkpoint directory (default: a temporary one)")
    ap.add_argument("--figure", default=str(FIGURES / "qa_sft.png"))
    args = ap.parse_args()
    if args.quick:
        args.facts, args.steps, args.seeds, args.templates, args.ns = 200, 120, "0,1", 6, "15,60,all"
        args.figure = str(Path(tempfile.gettempdir()) / "qa_sft_quick.png")
    import torch

    from dataprobes.experiments import run_qa_sft

    torch.set_num_threads(args.threads)
    cfg = config(args)
    # correctness first: no QA token in pretraining text
    for s in cfg.seeds:
        world = cfg.world(s)
        qa = world.token_ranges["qa"]
        x = world.sample(256, cfg.seq_len, seed=s)
        assert not ((x >= qa.start) & (x < qa.stop)).any(), "the QA format leaked into pretraining"
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out_dir) if args.out_dir else Path(tmp)
        t0 = time.perf_counter()
        res = run_qa_sft(cfg, out_dir=out, progress=False)
        run_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        again = run_qa_sft(cfg, out_dir=out, progress=False)
        resume_s = time.perf_counter() - t1
        coverage = coverage_report(cfg, res, out)
    for name in ("accuracy", "confident_wrong", "wrong_confidence", "unseen_accuracy", "n_used"):
        assert np.array_equal(getattr(res, name), getattr(again, name), equal_nan=True), name
    print(f"load average after: {os.getloadavg()}")
    labels = cfg.n_labels
    nb = cfg.num_buckets
    print(
        f"\n# QA-SFT on fact worlds ({platform.machine()}, {args.threads} torch thread(s)): F={cfg.num_facts}, "
        f"R={cfg.num_relations}, T={cfg.num_templates}, exposure {cfg.exposure} (range {cfg.exposure_range:g}), "
        f"unseen {cfg.unseen_fraction:g}, q={cfg.statement_prob}, TinyGPT d={cfg.d_model}, "
        f"{cfg.pretrain_steps} steps x {cfg.batch_size} x {cfg.seq_len}; SFT {cfg.sft_steps} steps lr {cfg.sft_lr:g}; "
        f"seeds {list(cfg.seeds)}; chance {res.chance:.4f}"
    )
    print(f"run (pretrain + SFT grid, all seeds): {run_s:.0f} s; resumed re-run: {resume_s:.1f} s (identical: yes)")
    print(f"pretraining losses: {[round(v, 3) for v in res.pretrain_loss]}")
    print(coverage)
    print("\n| seed | " + " | ".join(f"bucket {b}" for b in range(nb)) + " | of which never stated |")
    print("|---|" + "---:|" * (nb + 1))
    for si, s in enumerate(cfg.seeds):
        unseen = int(round(cfg.unseen_fraction * cfg.num_facts))
        print(f"| {s} | " + " | ".join(str(int(c)) for c in res.bucket_counts[si]) + f" | {unseen} (bucket 0) |")
    print("\n" + res.to_table("60" if "60" in labels else labels[-1]))
    # best per test column: on the diagonal?
    j = labels.index("60") if "60" in labels else len(labels) - 1
    mat = res.matrix(labels[j])
    print(f"\n## Reading at N={labels[j]}")
    for k in range(nb):
        col = mat[:, k]
        if np.isnan(col).all():
            continue
        best = int(np.nanargmax(col))
        print(f"test level {k}: best train level {best} ({col[best]:.3f}){' = diagonal' if best == k else ''}")
    over = res.overall()
    print("\n| N | " + " | ".join(f"train {lv}" for lv in range(nb)) + " | high (4) - low (0) |")
    print("|---|" + "---:|" * (nb + 1))
    for jj, lab in enumerate(labels):
        cells, means = [], []
        for lv in range(nb):
            v = over[:, lv, jj]
            m = float(np.nanmean(v)) if not np.isnan(v).all() else np.nan
            sd = float(np.nanstd(v)) if not np.isnan(v).all() else np.nan
            cells.append(fmt(m, sd) if (~np.isnan(v)).sum() > 1 else ("–" if np.isnan(m) else f"{m:.3f} (1 seed)"))
            means.append(m)
        d = means[-1] - means[0]
        print(f"| {lab} | " + " | ".join(cells) + f" | {'–' if np.isnan(d) else f'{d:+.3f}'} |")
    cw = pooled(res, res.confident_wrong)
    wc = pooled(res, res.wrong_confidence)
    print(
        "\nConfident wrong answers (top p >= 0.5, fraction of all held-out stated facts; mean top p of wrong answers):"
    )
    print("\n| N | " + " | ".join(f"after train {lv}" for lv in range(nb)) + " |")
    print("|---|" + "---:|" * nb)
    for jj, lab in enumerate(labels):
        cells = []
        for lv in range(nb):
            v, w = cw[:, lv, jj], wc[:, lv, jj]
            cells.append("–" if np.isnan(v).all() else f"{np.nanmean(v):.3f} (p̄ {np.nanmean(w):.2f})")
        print(f"| {lab} | " + " | ".join(cells) + " |")
    ua = res.unseen_accuracy
    if not np.isnan(ua).all():
        print(
            f"\nnever-stated controls: mean QA accuracy {np.nanmean(ua):.4f} (chance {res.chance:.4f}), max {np.nanmax(ua):.3f}"
        )
    for lv in range(nb):
        if not np.isnan(res.curve(lv)[0]).all():
            print(f"knee (90 % of best) train level {lv}: N={res.knee(lv)}")
    Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
    print(f"\nfigure: {res.plot(args.figure)}")


if __name__ == "__main__":
    main()
