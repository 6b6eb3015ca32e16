"""Influcoder on probes, where the truth is known: a small token encoder
distilled from gradient-influence rankings, validated against baselines, and
the paper's curves (Kachler, Sileo, Denis 2026) reproduced.

Teacher. A TinyGPT is trained briefly on a probe, on its own stream of
sequences; the per-example gradient features of its Linear layers (factored
capture, unit norm) of disjoint splits (train anchors × pool, eval anchors ×
pool; no identical rows within or across splits) give the teacher: cosines of
anchor and pool features. Two settings:

* ``mixture``: a ``Mixture`` of four order-1 ``MarkovChain``s; an item's
  planted label is its component.
* ``incontext``: a ``Mixture`` of four ``InContextMarkov`` processes that
  differ only in their Dirichlet concentration α: every sequence draws its
  own chain (as in ``InContextMarkov``), so no two sequences share a chain
  and "same chain" retrieval has no answer; the planted label is the prior
  regime the chain was drawn from (peaked → near uniform), known for each
  sequence.

Evaluated on the eval split (anchors × pool, never seen by the encoder):
per-anchor and aggregated Spearman against the teacher (``spearman_metrics``)
and precision@10 of same-label retrieval, for the teacher itself, an
untrained encoder, an empirical-bigram cosine, a student that knows only each
item's label (the mean train-split teacher score between the two labels), and
the distilled encoder. Curves (mean ± std over seeds of the encoder; the
teacher and the data are fixed): aggregated ρ vs training anchors (1:2
anchor:pool), vs ``hard_ratio`` and vs ``alpha``.

Teacher features are cached under ``--cache`` keyed by a hash of everything
that shapes them; finished runs are kept in ``<out>/runs.json`` and skipped
when the script is re-run with the same settings (``--fresh`` ignores them).

    python benches/bench_influcoder.py [--quick] [--out DIR] [--seeds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import dataprobes as dp
from dataprobes.attribution import GradientCapture
from dataprobes.attribution.quality import precision_at_k
from dataprobes.lm import TinyGPT, train

TEACHER_VERSION = 2  # bump when the teacher construction below changes

FULL = {
    "splits": {"train_anchors": 1500, "train_pool": 3000, "eval_anchors": 800, "eval_pool": 800},
    "sizes": [25, 50, 100, 250, 500, 1000, 1500],
    "hard": [0.0, 0.25, 0.5, 0.75, 1.0],
    "alpha": [0.0, 0.3, 0.5, 1.0],
    "lm_steps": 100,  # briefly: a less-trained model has gradients with more shared structure
}
QUICK = {
    "splits": {"train_anchors": 48, "train_pool": 96, "eval_anchors": 32, "eval_pool": 32},
    "sizes": [16, 48],
    "hard": [0.0, 1.0],
    "alpha": [0.0, 1.0],
    "lm_steps": 30,
}
SETTINGS = {
    "mixture": {"kind": "mixture", "vocab_size": 16, "components": 4, "concentration": 0.1, "order": 1},
    "incontext": {"kind": "incontext", "vocab_size": 8, "order": 1, "concentrations": [0.05, 0.2, 1.0, 5.0]},
}
SEQ_LEN = 32
LM = {"d_model": 32, "n_layers": 2, "n_heads": 4, "batch_size": 32, "lr": 1e-2, "seed": 0}
CAPTURE = {"mode": "factored", "k_in": 8, "k_out": 8, "seed": 1, "normalize": True, "batch": 256}
DATA_SEED = 12345  # the splits' sampling seed; the LM trains on streams of LM["seed"]


# ----------------------------------------------------------------------------
# Teacher
# ----------------------------------------------------------------------------


def make_process(cfg: dict[str, Any]) -> dp.Mixture:
    if cfg["kind"] == "mixture":
        chains = [
            dp.MarkovChain.random(cfg["vocab_size"], cfg["order"], concentration=cfg["concentration"], seed=s)
            for s in range(cfg["components"])
        ]
        return dp.Mixture(chains)
    comps = [dp.InContextMarkov(cfg["vocab_size"], cfg["order"], a) for a in cfg["concentrations"]]
    return dp.Mixture(comps)


def process_fingerprint(proc: dp.Mixture) -> str:
    """Hash of the process's law itself (the transition tables, not only the
    arguments that made them)."""
    h = hashlib.sha256(np.asarray(proc.weights, dtype=np.float64).tobytes())
    for c in proc.components:
        if isinstance(c, dp.MarkovChain):
            h.update(np.ascontiguousarray(c.transition, dtype=np.float64).tobytes())
        h.update(repr(c).encode())
    return h.hexdigest()


def teacher_key(setting: str, splits: dict[str, int], lm_steps: int) -> dict[str, Any]:
    """Everything that shapes the cached teacher features."""
    cfg = SETTINGS[setting]
    return {
        "version": TEACHER_VERSION,
        "dataprobes": dp.__version__,
        "setting": setting,
        "process": cfg,
        "process_law": process_fingerprint(make_process(cfg)),
        "splits": splits,  # every split's size, in sampling order
        "seq_len": SEQ_LEN,
        "data_seed": DATA_SEED,
        "lm": LM,
        "lm_steps": lm_steps,
        "capture": CAPTURE,
        # what the capture actually does (the projection kind follows the library's default)
        "capture_config": capture_config(cfg),
        "torch": torch.__version__,
        "loss": "mean next-token cross-entropy per sequence",
    }


def make_lm(cfg: dict[str, Any]) -> TinyGPT:
    return TinyGPT(
        vocab_size=cfg["vocab_size"], max_len=SEQ_LEN, **{k: LM[k] for k in ("d_model", "n_layers", "n_heads")}
    )


def capture_config(cfg: dict[str, Any]) -> dict[str, Any]:
    cap_kw = {k: CAPTURE[k] for k in ("mode", "k_in", "k_out", "seed", "normalize")}
    return GradientCapture(make_lm(cfg), **cap_kw).config


def disjoint_splits(
    proc: dp.Mixture, splits: dict[str, int]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
    """Samples the splits from one stream, dropping any row identical to an
    earlier one, so no row occurs twice within or across splits."""
    need = sum(splits.values())
    got: list[np.ndarray] = []
    labs: list[np.ndarray] = []
    seen: set[bytes] = set()
    start, dropped = 0, 0
    while len(got) < need:
        n = need - len(got) + 64
        x, lab = proc.sample(n, SEQ_LEN, seed=DATA_SEED, start=start, return_labels=True)
        start += n
        for row, c in zip(x, lab, strict=True):
            key = row.tobytes()
            if key in seen:
                dropped += 1
                continue
            seen.add(key)
            got.append(row)
            labs.append(c)
            if len(got) == need:
                break
    xs, ls = np.stack(got).astype(np.int64), np.asarray(labs, dtype=np.int64)
    tokens, labels, i = {}, {}, 0
    for name, n in splits.items():
        tokens[name], labels[name] = xs[i : i + n], ls[i : i + n]
        i += n
    return tokens, labels, dropped


def lm_loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    logits = model(x[:, :-1])
    return torch.nn.functional.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none").mean(1)


def build_teacher(setting: str, splits: dict[str, int], lm_steps: int, cache: Path) -> dict[str, Any]:
    """Tokens, labels and unit-norm gradient features of every split (cached)."""
    key = teacher_key(setting, splits, lm_steps)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    path = cache / f"teacher-{setting}-{digest}.npz"
    if path.exists():
        z = np.load(path)
        data = {k: z[k] for k in z.files}
        data["cached"] = True
    else:
        cfg = SETTINGS[setting]
        proc = make_process(cfg)
        t0 = time.perf_counter()
        tokens, labels, dropped = disjoint_splits(proc, splits)
        model = make_lm(cfg)
        torch.manual_seed(LM["seed"])
        res = train(
            model,
            proc,
            steps=lm_steps,
            batch_size=LM["batch_size"],
            seq_len=SEQ_LEN,
            lr=LM["lr"],
            seed=LM["seed"],
            eval_every=lm_steps,
            progress=False,
        )
        model.eval()
        data = {"dropped": np.array(dropped), "lm_kl": np.array(res.eval_kl[-1])}
        cap_kw = {k: CAPTURE[k] for k in ("mode", "k_in", "k_out", "seed", "normalize")}
        with GradientCapture(model, **cap_kw) as cap:
            for name in splits:
                x = torch.from_numpy(tokens[name])
                data[f"feat_{name}"] = torch.cat(
                    [
                        cap.backward(lm_loss(model, x[i : i + CAPTURE["batch"]]))
                        for i in range(0, len(x), CAPTURE["batch"])
                    ]
                ).numpy()
                data[f"tok_{name}"] = tokens[name]
                data[f"lab_{name}"] = labels[name]
        data["seconds"] = np.array(time.perf_counter() - t0)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **data)
        os.replace(tmp, path)
        (cache / f"teacher-{setting}-{digest}.json").write_text(json.dumps(key, indent=1, sort_keys=True))
        data["cached"] = False
    data["digest"] = digest
    # the splits are disjoint (checked, not assumed)
    rows = [r.tobytes() for name in splits for r in data[f"tok_{name}"]]
    assert len(set(rows)) == len(rows), "splits share a row"
    return data


def cosine(a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-300)
    b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return a @ b.T


# ----------------------------------------------------------------------------
# Metrics and baselines
# ----------------------------------------------------------------------------


def _spearman_metrics(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, float]:
    try:
        from dataprobes.attribution.quality import spearman_metrics
    except ImportError:  # before the distillation module: the same definitions
        from dataprobes.attribution.quality import per_query_spearman

        rows = per_query_spearman(gt, pred)
        agg = per_query_spearman(gt.mean(0, keepdim=True), pred.mean(0, keepdim=True))[0]
        return {"per_anchor": rows.mean(), "per_anchor_std": rows.std(), "aggregated": agg}
    return spearman_metrics(pred, gt)


def metrics(pred: Any, teacher: torch.Tensor, la: np.ndarray, lp: np.ndarray) -> dict[str, float]:
    m = _spearman_metrics(torch.as_tensor(pred, dtype=torch.float64), teacher)
    return {
        "per_anchor": float(m["per_anchor"]),
        "per_anchor_std": float(m["per_anchor_std"]),
        "aggregated": float(m["aggregated"]),
        "p10": float(precision_at_k(pred, la, lp, min(10, len(lp))).mean()),
    }


def bigram_counts(x: np.ndarray, v: int) -> np.ndarray:
    idx = x[:, :-1] * v + x[:, 1:]
    out = np.zeros((len(x), v * v))
    np.add.at(out, (np.repeat(np.arange(len(x)), idx.shape[1]), idx.ravel()), 1.0)
    return out


def label_student(data: dict[str, Any], n_labels: int) -> torch.Tensor:
    """score(a, p) = mean train-split teacher score between label(a) and
    label(p): the best a student that knows only the labels can do. The mean
    of cosines of unit vectors over a block is the dot product of the block's
    mean vectors."""
    fa, fp = data["feat_train_anchors"].astype(np.float64), data["feat_train_pool"].astype(np.float64)
    la, lp = data["lab_train_anchors"], data["lab_train_pool"]
    fa /= np.linalg.norm(fa, axis=1, keepdims=True)
    fp /= np.linalg.norm(fp, axis=1, keepdims=True)
    ma = np.stack([fa[la == c].mean(0) if (la == c).any() else np.zeros(fa.shape[1]) for c in range(n_labels)])
    mp = np.stack([fp[lp == c].mean(0) if (lp == c).any() else np.zeros(fp.shape[1]) for c in range(n_labels)])
    table = torch.as_tensor(ma @ mp.T)
    return table[data["lab_eval_anchors"]][:, data["lab_eval_pool"]]


# ----------------------------------------------------------------------------
# Encoder runs
# ----------------------------------------------------------------------------


class Runs:
    """Finished runs, kept in a JSON file so that a re-run skips them."""

    def __init__(self, path: Path, fresh: bool) -> None:
        self.path = path
        self.done: dict[str, Any] = {} if fresh or not path.exists() else json.loads(path.read_text())

    def get(self, key: str) -> Any:
        return self.done.get(key)

    def put(self, key: str, value: Any) -> None:
        self.done[key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.done, indent=1, sort_keys=True))
        os.replace(tmp, self.path)


def run_encoder(
    data: dict[str, Any], args: argparse.Namespace, runs: Runs, *, anchors: int, seed: int, **fit_kw: Any
) -> dict[str, Any]:
    from dataprobes.attribution.distill import FIT_DEFAULTS, GradientTeacher, Influcoder

    n_layers = fit_kw.pop("n_layers", args.n_layers)
    enc_cfg = {"d_model": args.d_model, "n_layers": n_layers, "n_heads": 4, "dim": args.dim}
    scratch = FIT_DEFAULTS["scratch"]
    kw = {
        "epochs": args.epochs or int(scratch["epochs"]),
        "alpha": scratch["alpha"],
        "tau": 0.05,
        "k": 8,
        "m": 16,
        "hard_ratio": 0.0,
    }
    kw["lr"] = args.lr if args.lr is not None else scratch["lr"]
    kw.update(fit_kw)
    v = SETTINGS[args._setting]["vocab_size"]
    enc = Influcoder.from_config(vocab_size=v, max_len=SEQ_LEN, seed=seed, **enc_cfg)
    key = json.dumps(
        {"teacher": data["digest"], "anchors": anchors, "seed": seed, "enc": enc.encoder.config.to_dict(), "fit": kw},
        sort_keys=True,
    )
    hit = runs.get(key)
    if hit is not None:
        return hit
    ta = data["tok_train_anchors"][:anchors]
    tp = data["tok_train_pool"][: 2 * anchors]
    teacher = GradientTeacher(data["feat_train_anchors"][:anchors], data["feat_train_pool"][: 2 * anchors])
    t_eval = data["teacher_eval"]
    t0 = time.perf_counter()
    hist = enc.fit(
        ta,
        tp,
        teacher,
        seed=seed,
        eval=(data["tok_eval_anchors"], data["tok_eval_pool"], t_eval),
        progress=False,
        keep="last",  # the eval split measures; it does not select the epoch
        **kw,
    )
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        scores = enc.scores(data["tok_eval_anchors"], data["tok_eval_pool"])
    final = metrics(scores, t_eval, data["lab_eval_anchors"], data["lab_eval_pool"])
    out = {
        "final": final,
        "initial": {k: float(hist.initial[k]) for k in ("per_anchor", "aggregated")},
        "epochs": [
            {k: float(e[k]) for k in ("epoch", "loss", "per_anchor", "aggregated", "seconds")} for e in hist.epochs
        ],
        "best_epoch": int(hist.best_epoch),  # by eval per-anchor ρ: reported, not used
        "saved": str(hist.saved),
        "seconds": seconds,
    }
    runs.put(key, out)
    print(
        f"  [{args._setting}] anchors={anchors} seed={seed} n_layers={n_layers} {fit_kw}: agg {final['aggregated']:.3f} "
        f"per-anchor {final['per_anchor']:.3f} p@10 {final['p10']:.3f} ({seconds:.0f} s)",
        flush=True,
    )
    return out


def mean_std(xs: list[float]) -> str:
    a = np.asarray(xs)
    return f"{a.mean():.3f} ± {a.std():.3f}" if len(a) > 1 else f"{a.mean():.3f}"


# ----------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one seed, one epoch (smoke test)")
    ap.add_argument("--settings", default="mixture,incontext")
    ap.add_argument("--curves", default="sizes,hard,alpha", help="which curves to run ('' for none)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=None, help="fit's epochs (None: the library's default)")
    ap.add_argument("--lr", type=float, default=None, help="fit's lr (None: the library's default)")
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--n-layers", type=int, default=0, help="0: a bag of unigram and bigram embeddings")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument(
        "--compare-layers", type=int, default=2, help="also distil an encoder of this many transformer layers (0: no)"
    )
    ap.add_argument("--lm-steps", type=int, default=None, help="TinyGPT training steps (the teacher's model)")
    ap.add_argument("--anchors", type=int, default=None, help="training anchors of the headline table (default: all)")
    ap.add_argument("--sizes", default=None, help="comma-separated training-anchor counts of the size curve")
    ap.add_argument("--hard", default=None, help="comma-separated hard_ratio values")
    ap.add_argument("--alpha", default=None, help="comma-separated alpha values")
    ap.add_argument(
        "--ablation-anchors", type=int, default=1500, help="training anchors of the hard_ratio / alpha curves"
    )
    ap.add_argument("--out", type=Path, default=Path("bench_out/influcoder"))
    ap.add_argument("--cache", type=Path, default=None, help="teacher cache (default <out>/cache)")
    ap.add_argument("--fresh", action="store_true", help="ignore finished runs in <out>/runs.json")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    plan = dict(QUICK if args.quick else FULL)
    if args.lm_steps:
        plan["lm_steps"] = args.lm_steps
    for name, conv in (("sizes", int), ("hard", float), ("alpha", float)):
        if getattr(args, name):
            plan[name] = [conv(x) for x in getattr(args, name).split(",")]
    if args.quick:
        args.seeds, args.epochs = 1, 1
        args.ablation_anchors = min(args.ablation_anchors, plan["splits"]["train_anchors"])
    cache = args.cache or args.out / "cache"
    runs = Runs(args.out / ("runs-quick.json" if args.quick else "runs.json"), args.fresh)
    seeds = list(range(args.seeds))
    curves = [c for c in args.curves.split(",") if c]
    report: list[str] = []

    def emit(line: str = "") -> None:
        print(line, flush=True)
        report.append(line)

    emit(
        f"# Influcoder on probes ({time.strftime('%Y-%m-%d', time.gmtime())}; {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {args.threads} threads)"
    )
    emit(
        f"encoder: d_model={args.d_model}, n_layers={args.n_layers}, dim={args.dim}; fit: epochs={args.epochs or 'default'}, "
        f"lr={args.lr or 'default'}, alpha=default (fit's for a token encoder), tau=0.05, k=8, m=16 unless varied; "
        f"seeds {seeds}"
    )
    all_curves: dict[str, dict[str, Any]] = {}
    for setting in [s for s in args.settings.split(",") if s]:
        args._setting = setting
        splits = plan["splits"]
        data = build_teacher(setting, splits, plan["lm_steps"], cache)
        n_labels = len(np.unique(np.concatenate([data[f"lab_{n}"] for n in splits])))
        data["teacher_eval"] = cosine(data["feat_eval_anchors"], data["feat_eval_pool"])
        la, lp = data["lab_eval_anchors"], data["lab_eval_pool"]
        emit(
            f"\n## {setting}: {SETTINGS[setting]}; T={SEQ_LEN}; splits {splits}; teacher "
            f"{'cached' if data['cached'] else 'built'} ({data['digest']}), TinyGPT excess loss {float(data['lm_kl']):.3f} nats/token, "
            f"{int(data['dropped'])} duplicate rows dropped, gradient dim {data['feat_eval_pool'].shape[1]}"
        )
        chance = max((lp == c).mean() for c in range(n_labels))
        rows: dict[str, dict[str, float] | list[dict[str, float]]] = {}
        t_eval = data["teacher_eval"]
        rows["teacher (gradient cosine)"] = metrics(t_eval, t_eval, la, lp)
        rows["empirical-bigram cosine"] = metrics(
            cosine(
                bigram_counts(data["tok_eval_anchors"], SETTINGS[setting]["vocab_size"]),
                bigram_counts(data["tok_eval_pool"], SETTINGS[setting]["vocab_size"]),
            ),
            t_eval,
            la,
            lp,
        )
        rows["label-only student"] = metrics(label_student(data, n_labels), t_eval, la, lp)
        try:
            from dataprobes.attribution.distill import Influcoder
        except ImportError:
            Influcoder = None  # noqa: N806
        if Influcoder is not None:
            v = SETTINGS[setting]["vocab_size"]
            untrained = []
            for s in seeds:
                enc = Influcoder.from_config(
                    vocab_size=v,
                    d_model=args.d_model,
                    n_layers=args.n_layers,
                    n_heads=4,
                    max_len=SEQ_LEN,
                    dim=args.dim,
                    seed=s,
                )
                with torch.no_grad():
                    untrained.append(
                        metrics(enc.scores(data["tok_eval_anchors"], data["tok_eval_pool"]), t_eval, la, lp)
                    )
            rows["untrained encoder"] = untrained
            full = args.anchors or plan["splits"]["train_anchors"]
            rows[f"distilled encoder ({full} anchors)"] = [
                run_encoder(data, args, runs, anchors=full, seed=s)["final"] for s in seeds
            ]
            if args.compare_layers and args.compare_layers != args.n_layers:
                rows[f"distilled, {args.compare_layers}-layer transformer ({full} anchors)"] = [
                    run_encoder(data, args, runs, anchors=full, seed=s, n_layers=args.compare_layers)["final"]
                    for s in seeds
                ]

        emit(f"\nEval split: {len(la)} anchors × {len(lp)} pool. Chance precision@10: {chance:.3f}\n")
        emit("| scores | per-anchor ρ | aggregated ρ | precision@10 |")
        emit("|---|---:|---:|---:|")
        summary: dict[str, dict[str, float]] = {}
        for name, r in rows.items():
            rs = r if isinstance(r, list) else [r]
            summary[name] = {k: float(np.mean([x[k] for x in rs])) for k in ("per_anchor", "aggregated", "p10")}
            emit(
                f"| {name} | {mean_std([x['per_anchor'] for x in rs])} | {mean_std([x['aggregated'] for x in rs])} | "
                f"{mean_std([x['p10'] for x in rs])} |"
            )
        distilled = [n for n in summary if n.startswith("distilled")]
        if distilled:
            d, u = summary[distilled[0]], summary["untrained encoder"]
            best_base = max(
                summary["empirical-bigram cosine"]["per_anchor"], summary["label-only student"]["per_anchor"]
            )
            best_base_agg = max(
                summary["empirical-bigram cosine"]["aggregated"], summary["label-only student"]["aggregated"]
            )
            targets = [
                ("aggregated ρ gain over untrained ≥ 0.3", d["aggregated"] - u["aggregated"], 0.3),
                ("per-anchor ρ ≥ 0.74", d["per_anchor"], 0.74),
                ("precision@10 ≥ 0.9", d["p10"], 0.9),
                ("per-anchor ρ minus best baseline's > 0", d["per_anchor"] - best_base, 0.0),
                ("aggregated ρ minus best baseline's > 0", d["aggregated"] - best_base_agg, 0.0),
            ]
            emit("\n| target | value | met |")
            emit("|---|---:|:---:|")
            for name, val, thr in targets:
                emit(f"| {name} | {val:+.3f} | {'yes' if val >= thr and (thr > 0 or val > 0) else 'no'} |")

        if Influcoder is None or not curves:
            continue
        res: dict[str, Any] = {}
        if "sizes" in curves:
            res["sizes"] = {n: [run_encoder(data, args, runs, anchors=n, seed=s) for s in seeds] for n in plan["sizes"]}
        if "hard" in curves:
            res["hard"] = {
                h: [run_encoder(data, args, runs, anchors=args.ablation_anchors, seed=s, hard_ratio=h) for s in seeds]
                for h in plan["hard"]
            }
        if "alpha" in curves:
            res["alpha"] = {
                a: [run_encoder(data, args, runs, anchors=args.ablation_anchors, seed=s, alpha=a) for s in seeds]
                for a in plan["alpha"]
            }
        all_curves[setting] = res
        titles = {"sizes": "training anchors (pool = 2×)", "hard": "hard_ratio", "alpha": "alpha"}
        for name, pts in res.items():
            emit(
                f"\n{setting}: eval metrics vs {titles[name]}"
                + (f" ({args.ablation_anchors} anchors)" if name != "sizes" else "")
            )
            emit(f"\n| {titles[name]} | aggregated ρ | per-anchor ρ | precision@10 | fit time |")
            emit("|---:|---:|---:|---:|---:|")
            for x, rs in pts.items():
                emit(
                    f"| {x} | {mean_std([r['final']['aggregated'] for r in rs])} | "
                    f"{mean_std([r['final']['per_anchor'] for r in rs])} | {mean_std([r['final']['p10'] for r in rs])} | "
                    f"{np.mean([r['seconds'] for r in rs]):.0f} s |"
                )
    if all_curves:
        plot(all_curves, args.out, args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / ("report-quick.md" if args.quick else "report.md")).write_text("\n".join(report) + "\n")


def plot(all_curves: dict[str, dict[str, Any]], out: Path, quick: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"sizes": "training anchors (pool = 2×)", "hard": "hard_ratio", "alpha": "α (Pearson weight)"}
    out.mkdir(parents=True, exist_ok=True)
    for setting, res in all_curves.items():
        fig, axes = plt.subplots(1, len(res), figsize=(4.2 * len(res), 3.4), squeeze=False)
        for ax, (name, pts) in zip(axes[0], res.items(), strict=True):
            xs = np.array([float(x) for x in pts])
            for metric, style in (("aggregated", "o-"), ("per_anchor", "s--")):
                ys = np.array([[r["final"][metric] for r in rs] for rs in pts.values()])
                ax.errorbar(xs, ys.mean(1), yerr=ys.std(1), fmt=style, capsize=3, label=metric.replace("_", "-") + " ρ")
            if name == "sizes":
                ax.set_xscale("log")
            ax.set_xlabel(labels[name])
            ax.set_ylabel("Spearman ρ vs teacher (eval)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"Influcoder on probes: {setting}" + (" (quick)" if quick else ""))
        fig.tight_layout()
        fig.savefig(out / f"influcoder_{setting}{'_quick' if quick else ''}.png", dpi=110)
        plt.close(fig)


if __name__ == "__main__":
    main()
