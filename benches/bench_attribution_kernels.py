"""Attribution kernels and gradient capture: overheads and throughput, side by side.

    python benches/bench_attribution_kernels.py            # CPU part (+ GPU part with CUDA)
    python benches/bench_attribution_kernels.py --quick    # small sizes, a smoke run
    TRITON_INTERPRET=1 python benches/bench_attribution_kernels.py --quick --gpu-part-on-cpu
                                                           # exercise the GPU code path on CPU
                                                           # (interpreter: correctness only, no timings)

CPU part (torch reference path, what runs on a machine without a GPU):

* capture overhead: one forward + backward of a small TinyGPT over a batch,
  plain (``losses.sum().backward()``) against the same step inside
  ``GradientCapture`` (factored, k_in = k_out = 16 on every Linear;
  ``param_grads=False``, which skips the weight-gradient matmuls, and
  ``param_grads=True``, i.e. capture during a training step). Before timing,
  the capture is checked against ``torch.func`` per-example gradients.
* SJLT (both bucket schemes) and a dense Gaussian projection ``x @ P``
  (``P`` [d, k] precomputed, its generation not timed) at equal ``k``:
  input elements per second and effective GB/s (bytes of ``x`` read).
  Before timing, the SJLT is checked against ``x @ S`` with the explicit
  sparse matrix.
* int8 quantisation (reference) in GB/s of float32 input.

GPU part (only with CUDA; prints a note otherwise): the Triton SJLT kernels'
effective bandwidth (bytes of ``x`` read + ``out`` written over time) on a
bf16 gradient, as GB/s and as % of the nominal peak of the GPU (table below)
and of a measured device copy; the factored capture overhead over plain
forward + backward on a larger TinyGPT; SJLT vs a dense bf16 projection at
equal k; the int8 quantisation kernel's bandwidth. Kernel outputs are
checked against the torch references first.

Times: best of several repeats (CPU, ``time.perf_counter``) or
``triton.testing.do_bench`` medians (GPU). Compare ratios across machines.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F

from dataprobes.attribution import GradientCapture, per_example_grads_func
from dataprobes.attribution.kernels import (
    INTERPRET,
    factored_project,
    projection_matrix,
    quantize_int8,
    quantize_int8_reference,
    sjlt,
    sjlt_hashes,
    sjlt_reference,
)
from dataprobes.lm import TinyGPT

# Nominal HBM bandwidth (GB/s) by device-name fragment (vendor data sheets).
PEAK_GBPS = {
    "H200": 4800.0,
    "H100 SXM": 3350.0,
    "H100 80GB HBM3": 3350.0,
    "H100 PCIe": 2000.0,
    "H100 NVL": 3900.0,
    "H100": 3350.0,
    "A100-SXM4-80GB": 2039.0,
    "A100-SXM4-40GB": 1555.0,
    "A100": 1555.0,
    "L40S": 864.0,
    "A10G": 600.0,
}


def best_time(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def interleaved(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Best time of each function over ``rounds`` rounds that run every
    function once, in turn: on a shared machine, load spikes then hit all
    contenders alike instead of whichever happened to be running."""
    for f in fns.values():
        f()
    best = dict.fromkeys(fns, math.inf)
    for _ in range(rounds):
        for name, f in fns.items():
            t0 = time.perf_counter()
            f()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def gpu_time(fn: Callable[[], Any], device: str, repeats: int) -> float:
    """Seconds per call: do_bench on CUDA, best-of on CPU (smoke runs)."""
    if device == "cuda":
        import triton.testing

        return float(triton.testing.do_bench(fn, warmup=25, rep=100)) / 1e3
    return best_time(fn, repeats)


def gpt_losses(model: torch.nn.Module, idx: torch.Tensor) -> torch.Tensor:
    logits = model(idx[:, :-1]).float()
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), idx[:, 1:].reshape(-1), reduction="none")
    return nll.reshape(idx.shape[0], -1).sum(1)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"


# ----------------------------------------------------------------------------
# Capture overhead
# ----------------------------------------------------------------------------


def check_capture(model: torch.nn.Module, idx: torch.Tensor, k: int) -> None:
    """Factored capture == explicit per-example gradients projected (2 examples)."""
    sub = idx[:2]
    with GradientCapture(model, mode="factored", k=k, normalize=False) as cap:
        got = cap.backward(gpt_losses(model, sub))
    exact = per_example_grads_func(model, gpt_losses, sub, untie=True)
    want = []
    for e in cap.layout:
        p_in, p_out = cap.projections(e.module)
        want.append((p_out.T @ exact[f"{e.module}.weight"].float() @ p_in).reshape(2, -1))
    w = torch.cat(want, 1)
    err = float((got - w).abs().max() / w.abs().max())
    assert err < 1e-3, f"capture disagrees with torch.func: relative error {err:.2e}"


def capture_overhead(
    model: torch.nn.Module,
    idx: torch.Tensor,
    k: int,
    time_fn: Callable[[Callable[[], Any]], float] | None,
    rounds: int = 10,
) -> dict[str, float]:
    def plain() -> None:
        model.zero_grad(set_to_none=True)
        gpt_losses(model, idx).sum().backward()

    def captured(param_grads: bool) -> Callable[[], None]:
        cap = GradientCapture(model, mode="factored", k=k, param_grads=param_grads)

        def run() -> None:
            model.zero_grad(set_to_none=True)
            with cap:
                cap.backward(gpt_losses(model, idx))

        return run

    fns = {"plain": plain, "capture": captured(False), "capture_train": captured(True)}
    if time_fn is None:
        return interleaved(fns, rounds)
    return {name: time_fn(f) for name, f in fns.items()}


# ----------------------------------------------------------------------------
# Sketch vs dense
# ----------------------------------------------------------------------------


def check_sjlt(x: torch.Tensor, k: int, scheme: str, backend: str) -> None:
    d = min(x.shape[1], 4096)
    xs = x[:4, :d].float()
    bucket, sign = sjlt_hashes(d, k, 0, scheme=scheme, device=x.device)
    s = torch.zeros(d, k, device=x.device)
    s[torch.arange(d, device=x.device), bucket] = sign
    got = sjlt(xs, k, 0, scheme=scheme, backend=backend)
    want = xs @ s
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max())), "sjlt disagrees with x @ S"


def cpu_part(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    reps = 3 if args.quick else 10
    print(f"## CPU part\n\nMachine: {machine()}\n")

    # -- capture overhead
    if args.quick:
        cfg = dict(vocab_size=64, max_len=32, d_model=32, n_layers=1, n_heads=2)
        b, t = 4, 32
    else:
        cfg = dict(vocab_size=128, max_len=128, d_model=128, n_layers=2, n_heads=4)
        b, t = 16, 128
    model = TinyGPT(**cfg)
    idx = torch.randint(0, cfg["vocab_size"], (b, t + 1))
    check_capture(model, idx, 16)
    tm = capture_overhead(model, idx, 16, None, rounds=3 * reps)
    print(
        f"Capture overhead: TinyGPT {cfg}, batch {b} × {t} tokens, factored k_in = k_out = 16 on every Linear "
        f"({sum(1 for m in model.modules() if isinstance(m, torch.nn.Linear))} modules), torch reference path\n"
    )
    print("| step | time (ms) | ratio vs plain fwd+bwd |")
    print("|---|---:|---:|")
    print(f"| plain forward + backward | {tm['plain'] * 1e3:.1f} | 1.00× |")
    print(f"| capture (param_grads=False) | {tm['capture'] * 1e3:.1f} | {tm['capture'] / tm['plain']:.2f}× |")
    print(
        f"| capture (param_grads=True) | {tm['capture_train'] * 1e3:.1f} | {tm['capture_train'] / tm['plain']:.2f}× |"
    )
    print()

    # -- sketch vs dense
    b = 8 if args.quick else 64
    d = 1 << (12 if args.quick else 16)
    ks = [64] if args.quick else [512, 2048]
    x = torch.randn(b, d)
    gb = x.numel() * x.element_size() / 1e9
    print(f"SJLT vs dense Gaussian projection: x float32 [{b}, {d}] ({gb * 1e3:.0f} MB), torch reference path\n")
    print("| k | method | time (ms) | elements/s | GB/s of x | speed-up vs dense |")
    print("|---:|---|---:|---:|---:|---:|")
    for k in ks:
        p = projection_matrix(d, k, 0)
        for scheme in ("hash", "block"):
            check_sjlt(x, k, scheme, "torch")
        tms = interleaved(
            {
                "dense x @ P": lambda: x @ p,  # noqa: F821 (bound in this loop)
                "sjlt hash": lambda: sjlt_reference(x, k, 0, scheme="hash"),
                "sjlt block": lambda: sjlt_reference(x, k, 0, scheme="block"),
            },
            reps,
        )
        t_dense = tms["dense x @ P"]
        for name, tt in tms.items():
            print(f"| {k} | {name} | {tt * 1e3:.2f} | {x.numel() / tt:.2e} | {gb / tt:.2f} | {t_dense / tt:.2f}× |")
        del p
    print()

    # -- quantisation
    bq, kq = (64, 256) if args.quick else (4096, 2048)
    xq = torch.randn(bq, kq)
    q, s = quantize_int8_reference(xq)
    err = (xq.double() - q.double() * s.double()[:, None]).abs()
    assert bool((err <= s.double()[:, None] / 2 + 2.0**-22 * xq.double().abs().amax(1, keepdim=True)).all())
    tq = best_time(lambda: quantize_int8_reference(xq, normalize=True), reps)
    print(
        f"int8 quantisation (normalize=True), float32 [{bq}, {kq}], torch reference: "
        f"{tq * 1e3:.2f} ms, {xq.numel() * 4 / 1e9 / tq:.2f} GB/s of input\n"
    )


# ----------------------------------------------------------------------------
# GPU part
# ----------------------------------------------------------------------------


def peak_gbps(name: str) -> float | None:
    for frag, v in PEAK_GBPS.items():
        if frag in name:
            return v
    return None


def trak_on_device(x: torch.Tensor, ks: list[int], device: str, tfn: Callable[[Callable[[], Any]], float]) -> None:
    """TRAK's projectors at equal k on the same rows: BasicProjector (torch,
    blockwise Rademacher matrices) and, when its ``fast_jl`` CUDA extension is
    installed, CudaProjector."""
    try:
        from trak.projectors import BasicProjector, ProjectionType
    except ImportError:
        print("TRAK (traker) not installed: `pip install traker` for the side-by-side row\n")
        return
    b, d = x.shape
    xf = x.float()
    print(f"TRAK projectors vs the SJLT kernel on the same float32 rows [{b}, {d}], Rademacher:\n")
    print("| k | TRAK BasicProjector (ms) | TRAK CudaProjector (ms) | SJLT block (ms) | SJLT speed-up vs best TRAK |")
    print("|---:|---:|---:|---:|---:|")
    for k in ks:
        basic = BasicProjector(
            grad_dim=d,
            proj_dim=k,
            seed=0,
            proj_type=ProjectionType.rademacher,
            device=device,
            dtype=torch.float32,
            block_size=128,
        )
        t_basic = tfn(lambda: basic.project(xf, model_id=0))
        t_cuda = math.nan
        if device == "cuda":
            try:
                from trak.projectors import CudaProjector

                cp = CudaProjector(
                    grad_dim=d,
                    proj_dim=k,
                    seed=0,
                    proj_type=ProjectionType.rademacher,
                    device=device,
                    max_batch_size=max(8, b),
                )
                t_cuda = tfn(lambda: cp.project(xf, model_id=0))
            except Exception as exc:  # fast_jl missing or unsupported shape
                print(f"(CudaProjector unavailable: {type(exc).__name__}: {str(exc)[:80]})")
        t_sj = tfn(lambda: sjlt(xf, k, 0, scheme="block", backend="triton"))
        best = min(t_basic, t_cuda) if not math.isnan(t_cuda) else t_basic
        print(f"| {k} | {t_basic * 1e3:.2f} | {t_cuda * 1e3:.2f} | {t_sj * 1e3:.3f} | {best / t_sj:.0f}× |")
    print()


def gpu_part(args: argparse.Namespace, device: str) -> None:
    on_gpu = device == "cuda"
    name = torch.cuda.get_device_name() if on_gpu else "CPU (Triton interpreter smoke run: timings meaningless)"
    print(f"## GPU part\n\nDevice: {name}\n")
    reps = 2
    tfn = lambda f: gpu_time(f, device, reps)  # noqa: E731
    dt = torch.bfloat16

    # -- measured copy bandwidth (read + write)
    n = (1 << 28) if on_gpu else (1 << 12)
    buf = torch.empty(n, dtype=dt, device=device)
    dst = torch.empty_like(buf)
    t_copy = tfn(lambda: dst.copy_(buf))  # noqa: F821 (deleted after timing)
    copy_gbps = 2 * n * 2 / 1e9 / t_copy
    peak = peak_gbps(name) if on_gpu else None
    print(f"Device copy: {copy_gbps:.0f} GB/s (read + write); nominal peak: {peak or 'unknown'} GB/s\n")
    del buf, dst

    # -- SJLT kernel bandwidth
    b, d = (8, 1 << 23) if on_gpu else (2, 1 << 10)
    x = torch.randn(b, d, device=device, dtype=dt)
    ks = [2048, 8192, 65536] if on_gpu else [64]
    print(f"SJLT Triton kernels on bf16 x [{b}, {d}] ({x.numel() * 2 / 1e6:.0f} MB):\n")
    print("| k | kernel | time (µs) | GB/s | % of nominal peak | % of copy | vs dense bf16 x @ P |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for k in ks:
        p = projection_matrix(d, k, 0, dtype=dt, device=device) if d * k <= (1 << 31) else None
        t_dense = tfn(lambda: x @ p) if p is not None else math.nan  # noqa: F821 (bound in this loop)
        for scheme in ("hash", "block"):
            got = sjlt(x[:, : min(d, 1 << 16)], k, 0, scheme=scheme, backend="triton")
            want = sjlt_reference(x[:, : min(d, 1 << 16)], k, 0, scheme=scheme)
            assert torch.allclose(got, want, rtol=1e-3, atol=1e-3 * float(want.abs().max())), scheme
            tt = tfn(lambda: sjlt(x, k, 0, scheme=scheme, backend="triton"))
            bytes_ = x.numel() * 2 + b * k * 4
            gbps = bytes_ / 1e9 / tt
            pk = f"{100 * gbps / peak:.0f}%" if peak else "n/a"
            print(
                f"| {k} | {scheme} | {tt * 1e6:.0f} | {gbps:.0f} | {pk} | {100 * gbps / copy_gbps:.0f}% | {t_dense / tt:.1f}× |"
            )
        del p
    print()
    trak_on_device(x, ks[:2], device, tfn)

    # -- quantisation kernel
    bq, kq = (65536, 8192) if on_gpu else (8, 64)
    xq = torch.randn(bq, kq, device=device)
    q, s = quantize_int8(xq, backend="triton")
    qr, sr = quantize_int8_reference(xq)
    assert int((q.int() - qr.int()).abs().max()) <= 1
    tq = tfn(lambda: quantize_int8(xq, normalize=True, backend="triton"))
    gbq = (2 * xq.numel() * 4 + xq.numel() + bq * 4) / 1e9 / tq
    print(
        f"int8 quantisation kernel, float32 [{bq}, {kq}]: {tq * 1e6:.0f} µs, {gbq:.0f} GB/s (two reads + int8 write)\n"
    )

    # -- factored kernel vs reference
    bt, tt_, din, dout, kk = (8, 1024, 4096, 4096, 32) if on_gpu else (2, 40, 48, 40, 16)
    xx = torch.randn(bt, tt_, din, device=device, dtype=dt)
    gg = torch.randn(bt, tt_, dout, device=device, dtype=dt)
    pin, pout = projection_matrix(din, kk, 1, device=device), projection_matrix(dout, kk, 2, device=device)
    got = factored_project(xx, gg, pin, pout, backend="triton")
    want = factored_project(xx, gg, pin, pout, backend="torch")
    assert torch.allclose(got, want, rtol=1e-3, atol=1e-3 * float(want.abs().max()))
    t_k = tfn(lambda: factored_project(xx, gg, pin, pout, backend="triton", input_precision="ieee"))
    t_k32 = tfn(lambda: factored_project(xx, gg, pin, pout, backend="triton", input_precision="tf32"))
    t_r = tfn(lambda: factored_project(xx, gg, pin, pout, backend="torch"))
    print(
        f"factored_project bf16 x [{bt}, {tt_}, {din}], g [.., {dout}], k_in = k_out = {kk}: "
        f"Triton ieee {t_k * 1e6:.0f} µs, Triton tf32 {t_k32 * 1e6:.0f} µs, torch reference {t_r * 1e6:.0f} µs\n"
    )

    # -- capture overhead on a larger TinyGPT
    if on_gpu:
        cfg = dict(vocab_size=512, max_len=512, d_model=512, n_layers=4, n_heads=8)
        b, t = 16, 512
    else:
        cfg = dict(vocab_size=32, max_len=16, d_model=16, n_layers=1, n_heads=2)
        b, t = 2, 8
    model = TinyGPT(**cfg).to(device=device, dtype=dt)
    idx = torch.randint(0, cfg["vocab_size"], (b, t + 1), device=device)
    tm = capture_overhead(model, idx, 16, tfn)
    print(
        f"Capture overhead, TinyGPT {cfg} in bf16, batch {b} × {t}, factored k = 16 (Triton): "
        f"plain {tm['plain'] * 1e3:.2f} ms; capture {tm['capture'] * 1e3:.2f} ms "
        f"({tm['capture'] / tm['plain']:.2f}×); capture during training step {tm['capture_train'] * 1e3:.2f} ms "
        f"({tm['capture_train'] / tm['plain']:.2f}×; target ≤ 1.3×)\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--skip-cpu", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument(
        "--gpu-part-on-cpu", action="store_true", help="run the GPU code path on CPU tensors (needs TRITON_INTERPRET=1)"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.skip_cpu:
        cpu_part(args)
    if torch.cuda.is_available() and not INTERPRET:
        gpu_part(args, "cuda")
    elif args.gpu_part_on_cpu:
        if not INTERPRET:
            raise SystemExit("--gpu-part-on-cpu needs TRITON_INTERPRET=1 set before the run")
        gpu_part(args, "cpu")
    else:
        print(
            "## GPU part\n\nSkipped: no CUDA device (or TRITON_INTERPRET=1). Run on a GPU machine for kernel bandwidth "
            "and capture overhead with the Triton kernels."
        )


if __name__ == "__main__":
    main()
