"""``dataprobes demo``: the data-probes experiment end to end.

Wang, Woisetschläger, Jacobsen et al. (ICML 2026): a GPT-style model trained
on samples of a 128-state first-order Markov chain of known entropy rate;
its generations at greedy / T = 1.0 / 1.3 / 1.5 are scored under the true
chain. Greedy decoding lands below the typical band (over-conservative,
repetition loops), T ≈ 1 inside it, high temperatures above it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from .processes import MarkovChain, Process


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--process",
        choices=["markov", "incontext", "hmm", "icl"],
        default="markov",
        help="probe family (default markov; icl is the old name of incontext)",
    )
    p.add_argument("--vocab-size", type=int, default=128, help="tokens (default 128; hmm: 16 hidden states)")
    p.add_argument("--order", type=int, default=1, help="Markov order (default 1)")
    p.add_argument("--entropy-rate", type=float, default=2.0, help="target entropy rate, nats/token (default 2.0)")
    p.add_argument("--process-seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=600, help="training steps (default 600)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--num-generations", type=int, default=256, help="generations per temperature")
    p.add_argument("--gen-length", type=int, default=128, help="generated tokens per sequence (default 128)")
    p.add_argument("--temperatures", default="0,1.0,1.3,1.5", help="comma-separated; 0 = greedy")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", type=Path, default=Path("dataprobes-demo"), help="plots and results go here")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    p.add_argument("--quick", action="store_true", help="a tiny budget (seconds), for smoke tests")
    p.add_argument("--no-progress", action="store_true")


def _make_process(args: argparse.Namespace) -> Process:
    from . import InContextMarkov

    if args.process == "markov":
        return MarkovChain.random(args.vocab_size, args.order, entropy_rate=args.entropy_rate, seed=args.process_seed)
    if args.process in ("incontext", "icl"):
        return InContextMarkov(args.vocab_size, args.order, 1.0)
    from . import HMM

    return HMM.random(16, args.vocab_size, seed=args.process_seed)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from .lm import TinyGPT, generation_typicality, train
    from .lm.plots import plot_generation_nll, plot_learning_curve

    if args.quick:
        args.steps, args.num_generations, args.gen_length, args.eval_every = 30, 32, 32, 10
        args.batch_size, args.seq_len = 16, 32
    temps = [float(t) for t in str(args.temperatures).split(",") if t.strip()]
    if not temps:
        raise ValueError("--temperatures must list at least one temperature")
    device = torch.device(
        "cuda"
        if args.device == "auto" and torch.cuda.is_available()
        else ("cpu" if args.device == "auto" else args.device)
    )
    torch.manual_seed(args.seed)
    process = _make_process(args)
    model = TinyGPT(
        vocab_size=process.vocab_size,
        max_len=max(args.seq_len, args.gen_length + max(args.order, 1)) + 1,
        d_model=args.d_model,
        n_layers=args.layers,
        n_heads=args.heads,
    ).to(device)
    rate = float(process.entropy_rate())
    print(f"probe: {process!r}")
    print(f"model: TinyGPT, {model.num_parameters():,} parameters, on {device}")
    t0 = time.perf_counter()
    result = train(
        model,
        process,
        steps=args.steps,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        lr=args.lr,
        seed=args.seed,
        eval_every=args.eval_every,
        progress=not args.no_progress,
    )
    train_s = time.perf_counter() - t0
    print(f"\nlearning curve (held-out, nats/token; entropy-rate floor {rate:.4f}):")
    print(f"{'step':>7} {'NLL':>9} {'excess (KL)':>12}")
    for step, nll, kl in zip(result.eval_steps, result.eval_nll, result.eval_kl, strict=True):
        print(f"{step:>7} {nll:>9.4f} {kl:>12.4f}")
    t1 = time.perf_counter()
    reports = generation_typicality(
        model, process, num_sequences=args.num_generations, length=args.gen_length, temperatures=temps, seed=args.seed
    )
    gen_s = time.perf_counter() - t1
    eps = reports[0].eps
    print(
        f"\ngenerations of {args.gen_length} tokens scored under the true process "
        f"(typical band {rate:.4f} ± {eps:.4f} nats/token):"
    )
    print(
        f"{'decoding':>9} {'mean NLL':>9} {'H(q)':>7} {'KL(q||P)':>9} {'below':>6} {'typical':>8} {'above':>6}  regime"
    )
    for r in reports:
        s = r.summary()
        print(
            f"{r.label:>9} {s['mean_nll']:>9.4f} {s['model_entropy']:>7.4f} {s['kl_to_truth']:>9.4f} "
            f"{s['fraction_below']:>6.0%} {s['fraction_typical']:>8.0%} {s['fraction_above']:>6.0%}  {s['regime']}"
        )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    curve = plot_learning_curve(result, args.out_dir / "learning_curve.png")
    hist = plot_generation_nll(reports, args.out_dir / "generation_nll.png")
    print(f"\nplots: {curve}, {hist}  (training {train_s:.0f} s, generation {gen_s:.0f} s)")
    results: dict[str, Any] = {
        "process": repr(process),
        "entropy_rate": rate,
        "device": str(device),
        "parameters": model.num_parameters(),
        "train": result.summary(),
        "train_seconds": train_s,
        "generations": [r.summary() for r in reports],
        "plots": [str(curve), str(hist)],
    }
    if args.json is not None:
        _write_json(args.json, results)
    return results


def _write_json(path: Path, obj: Any) -> None:
    from ._durable import write_json_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, obj, indent=2)
