"""``dataprobes demo``: the data-probes experiment end to end.

Wang, Woisetschläger, Jacobsen et al. (ICML 2026): a GPT-style model trained
on samples of a 128-state first-order Markov chain of known entropy rate;
its generations at greedy / T = 1.0 / 1.3 / 1.5 are scored under the true
chain. Greedy decoding lands below the typical band (over-conservative,
repetition loops), T ≈ 1 inside it, high temperatures above it.
"""

from __future__ import annotations

import argparse
import math
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
    p.add_argument("--lr", type=float, default=1e-2, help="AdamW learning rate (default 1e-2, train()'s default)")
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--num-generations", type=int, default=256, help="generations per temperature")
    p.add_argument("--gen-length", type=int, default=128, help="generated tokens per sequence (default 128)")
    p.add_argument("--temperatures", default="0,1.0,1.3,1.5", help="comma-separated, each >= 0; 0 = greedy")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", type=Path, default=Path("dataprobes-demo"), help="plots and results.json go here")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    p.add_argument("--force", action="store_true", help="overwrite the results of an earlier run in --out-dir")
    p.add_argument("--quick", action="store_true", help="a tiny budget (seconds), for smoke tests")
    p.add_argument("--no-progress", action="store_true")


#: What the columns and words of the printed tables mean.
LEGEND = """\
legend:
  floor     the learning curve's floor is the process's entropy rate: the expected NLL of a perfect model
  NLL       held-out cross-entropy of the model (nats/token); excess (KL) = KL(truth || model), its gap to the floor
  mean NLL  NLL/token of the generations under the true process
  H(q)      mean entropy of the model's sampling law q at each step (how random its choices are)
  KL(q||P)  mean divergence of q from the true next-token law P; expected NLL = H(q) + KL(q||P)
  band      entropy rate +- eps, where ~95% of the process's own sequences of that length fall
  below / typical / above   fraction of generations under, inside or over the band
  regime    over-conservative (mean NLL below the band: too predictable, e.g. repetition loops),
            typical (inside), over-divergent (above: too random)"""


def _parse_temperatures(value: Any) -> list[float]:
    """``--temperatures``: a comma-separated string (or a sequence) of numbers >= 0."""
    items = str(value).split(",") if isinstance(value, str) else list(value)
    temps = []
    for item in items:
        if isinstance(item, str) and not item.strip():
            continue
        try:
            t = float(item)
        except (TypeError, ValueError):
            raise ValueError(f"--temperatures must be comma-separated numbers >= 0, got {item!r}") from None
        if not (math.isfinite(t) and t >= 0):
            raise ValueError(f"--temperatures must be >= 0 (0 = greedy), got {item!r}")
        temps.append(t)
    if not temps:
        raise ValueError("--temperatures must list at least one temperature")
    return temps


def _resolve_device(spec: str) -> Any:
    """``--device``: a torch device that works on this machine."""
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"--device {spec!r} is not a torch device (auto, cpu, cuda, cuda:1, mps, ...)") from None
    try:
        torch.empty(1, device=dev)
    except (RuntimeError, AssertionError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"--device {spec}: not usable on this machine ({first})") from None
    return dev


def _check_args(args: argparse.Namespace) -> tuple[list[float], Any]:
    """Every argument of the demo, checked before any work (``ValueError``
    naming the flag); returns the temperatures and the device."""
    from .cli import check_output

    at_least = {
        "--vocab-size": (args.vocab_size, 1),
        "--order": (args.order, 0 if args.process in ("incontext", "icl") else 1),
        "--steps": (args.steps, 1),
        "--batch-size": (args.batch_size, 1),
        "--seq-len": (args.seq_len, 2),
        "--d-model": (args.d_model, 1),
        "--layers": (args.layers, 1),
        "--heads": (args.heads, 1),
        "--eval-every": (args.eval_every, 1),
        "--num-generations": (args.num_generations, 1),
        "--gen-length": (args.gen_length, 1),
        "--process-seed": (args.process_seed, 0),
        "--seed": (args.seed, 0),
    }
    for flag, (value, low) in at_least.items():
        if value < low:
            raise ValueError(f"{flag} must be >= {low}, got {value}")
    if args.d_model % args.heads:
        raise ValueError(f"--d-model ({args.d_model}) must be divisible by --heads ({args.heads})")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise ValueError(f"--lr must be > 0, got {args.lr}")
    if args.process == "markov" and not (0 < args.entropy_rate < math.log(args.vocab_size)):
        raise ValueError(
            f"--entropy-rate must lie strictly between 0 and log(--vocab-size) = {math.log(args.vocab_size):.4f} "
            f"nats, got {args.entropy_rate}"
        )
    temps = _parse_temperatures(args.temperatures)
    device = _resolve_device(str(args.device))
    check_output(args.out_dir, "--out-dir", directory=True)
    results = args.out_dir / "results.json"
    if results.exists() and not getattr(args, "force", False):
        raise ValueError(
            f"--out-dir {args.out_dir} holds the results of an earlier run; pass --force to overwrite them"
        )
    if args.json is not None:
        check_output(args.json, "--json", force=True)
    return temps, device


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
    temps, device = _check_args(args)
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
        model,
        process,
        num_sequences=args.num_generations,
        length=args.gen_length,
        temperatures=temps,
        seed=args.seed,
        progress=not args.no_progress,
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
    print(f"\n{LEGEND}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    curve = plot_learning_curve(result, args.out_dir / "learning_curve.png")
    hist = plot_generation_nll(reports, args.out_dir / "generation_nll.png")
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
    _write_json(args.out_dir / "results.json", results)
    if args.json is not None:
        _write_json(args.json, results)
    print(
        f"\nplots: {curve}, {hist}; results: {args.out_dir / 'results.json'}  "
        f"(training {train_s:.0f} s, generation {gen_s:.0f} s)"
    )
    return results


def _write_json(path: Path, obj: Any) -> None:
    from ._durable import write_json_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, obj, indent=2)
