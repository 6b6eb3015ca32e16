"""Compile the attribution kernels for an NVIDIA GPU on a machine without one.

Triton compiles a kernel the first time it is launched, for the GPU it finds.
:func:`compile_report` installs a stand-in Triton driver that answers the
device queries for a chosen CUDA architecture (``arch=90``: Hopper,
``80``: Ampere) and records launches instead of running them, then calls the
real launchers (``_sjlt_triton``, ``_factored_triton``, ``_quant_triton``)
with small CPU tensors. Every kernel is therefore compiled from Triton IR down
to PTX and a cubin (by the ``ptxas`` that ships with Triton) with exactly the
block sizes, warps and specialisations the launchers would use on that GPU;
nothing runs. For each compiled kernel the report gives the launch grid and,
read from the cubin with ``cuobjdump --dump-resource-usage``, the registers per
thread, local (spill) memory and shared memory, plus the SASS instruction
count and whether global loads are vectorised.

This is a static check (it catches compile errors the CPU interpreter cannot
see, register spills and occupancy limits), not a timing: the speed targets
need a GPU (``benches/bench_attribution_kernels.py``).

Run it in a process where ``TRITON_INTERPRET`` is unset (Triton decides
between interpreter and compiler when a kernel is decorated)::

    python -m dataprobes.attribution.kernels._aot --arch 90
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch

from ._common import HAS_TRITON, INTERPRET

__all__ = ["KernelBuild", "compile_report", "default_cases"]

#: Device properties the stand-in driver reports, per architecture (the
#: launchers and Triton's resource checks read only these).
_DEVICE = {
    80: {"max_shared_mem": 166912, "multiprocessor_count": 108, "max_num_regs": 65536, "warpSize": 32},
    90: {"max_shared_mem": 232448, "multiprocessor_count": 132, "max_num_regs": 65536, "warpSize": 32},
}


@dataclass
class KernelBuild:
    """One compiled launch: the case that produced it and the cubin's resources."""

    case: str
    kernel: str
    grid: tuple[int, int, int]
    num_warps: int
    shared_bytes: int
    registers: int = -1
    local_bytes: int = -1
    sass_instructions: int = -1
    vector_loads: int = 0
    scalar_loads: int = 0
    mma_instructions: int = 0
    calls: int = 0

    @property
    def spills(self) -> bool:
        return self.local_bytes > 0


def _tool(name: str) -> str:
    import triton

    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)
    if not os.path.exists(path):
        raise RuntimeError(f"Triton's {name} not found at {path}")
    return path


def _cubin_facts(cubin: bytes) -> dict[str, int]:
    """Registers, local bytes, SASS size and load widths of a one-kernel cubin."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        usage = subprocess.run(
            [_tool("cuobjdump"), "--dump-resource-usage", path], capture_output=True, text=True, check=True
        ).stdout
        sass = subprocess.run([_tool("cuobjdump"), "-sass", path], capture_output=True, text=True, check=True).stdout
    reg = re.search(r"REG:(\d+)", usage)
    local = re.search(r"LOCAL:(\d+)", usage)
    stack = re.search(r"STACK:(\d+)", usage)
    instr = [ln for ln in sass.splitlines() if re.match(r"\s+/\*[0-9a-f]{4,}\*/\s", ln)]
    loads = [ln for ln in instr if re.search(r"\bLDG(STS)?\.", ln)]
    vec = [ln for ln in loads if re.search(r"LDG(STS)?\.E(\.BYPASS)?(\.LTC128B)?\.(64|128)", ln)]
    mma = [ln for ln in instr if re.search(r"\b(HMMA|HGMMA|IMMA)\b", ln)]
    calls = [ln for ln in instr if re.search(r"\bCALL\b", ln)]
    return {
        "registers": int(reg.group(1)) if reg else -1,
        "local_bytes": (int(local.group(1)) if local else 0) + (int(stack.group(1)) if stack else 0),
        "sass_instructions": len(instr),
        "vector_loads": len(vec),
        "scalar_loads": len(loads) - len(vec),
        "mma_instructions": len(mma),
        "calls": len(calls),
    }


class _Recorder:
    """A Triton driver stand-in: reports a fixed CUDA target, records launches."""

    def __init__(self, arch: int) -> None:
        from triton.backends.compiler import GPUTarget

        self.target = GPUTarget("cuda", arch, 32)
        self.props = _DEVICE[arch]
        self.cubins: dict[str, bytes] = {}  # metadata hash -> cubin
        self._loading: Any = None
        self.launches: list[tuple[str, tuple[int, int, int], Any]] = []
        self.utils = self

    # -- driver interface used by triton.runtime.jit / triton.compiler --
    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device: int | None = None) -> int:
        return 0

    def get_current_target(self) -> Any:
        return self.target

    def get_active_torch_device(self) -> torch.device:
        return torch.device("cpu")

    def get_device_properties(self, device: int) -> dict[str, int]:
        return dict(self.props)

    def load_binary(self, name: str, kernel: bytes, shared: int, device: int) -> tuple[None, None, int, int, int]:
        self.cubins[self._loading.hash] = kernel
        return None, None, 0, 0, 1024

    def launcher_cls(self, src: Any, metadata: Any) -> Callable[..., None]:
        name = getattr(getattr(src, "fn", None), "__name__", str(src))
        self._loading = metadata  # Triton loads the binary right after making the launcher

        def launch(gx: int, gy: int, gz: int, *args: Any) -> None:
            self.launches.append((name, (gx, gy, gz), metadata))

        return launch


def _kernels() -> list[Any]:
    """The package's Triton kernels (JIT functions)."""
    from triton.runtime.jit import JITFunction

    return [v for m in ("sjlt", "factored", "quant") for v in vars(_mod(m)).values() if isinstance(v, JITFunction)]


@contextmanager
def _stand_in_driver(arch: int) -> Iterator[_Recorder]:
    """Swap in the recorder as Triton's active driver. The kernels' per-device
    caches are emptied on the way in and out, so that neither real nor
    stand-in compilations leak across (a cached stand-in kernel would
    otherwise "launch" as a no-op on a real GPU later in the process)."""
    from triton.runtime import driver

    kernels = _kernels()
    rec = _Recorder(arch)
    for k in kernels:
        k.device_caches.clear()
    driver.set_active(rec)
    try:
        yield rec
    finally:
        for k in kernels:
            k.device_caches.clear()
        try:
            driver.reset_active()
        except RuntimeError:  # no real driver on this machine: leave it unresolved
            driver._active = None


def _mod(name: str) -> Any:
    return importlib.import_module(f"dataprobes.attribution.kernels.{name}")


def _sjlt_case(dt: torch.dtype, b: int, d: int, k: int, scheme: str) -> Any:
    return _mod("sjlt")._sjlt_triton(torch.zeros(b, d, dtype=dt), k, 7, 0, scheme, None)


def _factored_case(
    dt: torch.dtype, t_len: int, d_in: int, d_out: int, k_in: int, k_out: int, masked: bool, prec: str
) -> Any:
    x = torch.zeros(2, t_len, d_in, dtype=dt)
    g = torch.zeros(2, t_len, d_out, dtype=dt)
    m = torch.ones(2, t_len) if masked else None
    xb = torch.zeros(k_in) if masked else None
    return _mod("factored")._factored_triton(
        x, g, torch.zeros(d_in, k_in), torch.zeros(d_out, k_out), m, xb, prec, None
    )


def _quant_case(dt: torch.dtype, k: int, normalize: bool) -> Any:
    return _mod("quant")._quant_triton(torch.zeros(3, k, dtype=dt), normalize)


def default_cases() -> dict[str, Callable[[], Any]]:
    """The launches compiled by default: each kernel at the launch
    configurations its launcher picks for typical and edge shapes (aligned
    and odd sizes), in every input dtype."""
    cases: dict[str, Callable[[], Any]] = {}
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    for dn, dt in dtypes.items():
        for scheme in ("hash", "block"):
            for b, d, k in ((1, 4099, 256), (3, 4099, 4096), (64, 4096, 8192)):
                cases[f"sjlt {scheme} {dn} B={b} d={d} k={k}"] = partial(_sjlt_case, dt, b, d, k, scheme)
        for t_len, d_in, d_out, k_in, k_out, masked, prec in (
            (64, 768, 768, 64, 64, True, "tf32"),
            (64, 768, 3072, 32, 16, False, "tf32x3"),
            (64, 768, 768, 64, 64, True, "ieee"),
            (7, 33, 17, 5, 3, True, "tf32"),
        ):
            name = f"factored {dn} T={t_len} d={d_in}x{d_out} k={k_out}x{k_in} mask={masked} {prec}"
            cases[name] = partial(_factored_case, dt, t_len, d_in, d_out, k_in, k_out, masked, prec)
        for k in (17, 4096, 8192):
            for norm in (False, True):
                cases[f"quant {dn} k={k} normalize={norm}"] = partial(_quant_case, dt, k, norm)
    return cases


def compile_report(arch: int = 90, cases: dict[str, Callable[[], Any]] | None = None) -> list[KernelBuild]:
    """Compile every case's kernels for ``sm_<arch>`` and read their resources.

    Raises ``RuntimeError`` when Triton is missing or the interpreter is on,
    ``ValueError`` for an architecture not in ``{80, 90}``; a kernel that does
    not compile raises Triton's own error, naming the case.
    """
    if arch not in _DEVICE:
        raise ValueError(f"arch must be one of {sorted(_DEVICE)}, got {arch!r}")
    if not HAS_TRITON:
        raise RuntimeError("compile_report needs the 'triton' package")
    if INTERPRET:
        raise RuntimeError("compile_report needs TRITON_INTERPRET unset when triton is first imported")
    cases = default_cases() if cases is None else cases
    out: list[KernelBuild] = []
    with _stand_in_driver(arch) as rec:
        facts: dict[bytes, dict[str, int]] = {}
        for case, launch in cases.items():
            n0 = len(rec.launches)
            try:
                launch()
            except Exception as exc:
                raise RuntimeError(f"case {case!r} failed to compile for sm_{arch}: {exc}") from exc
            for name, grid, md in rec.launches[n0:]:
                cubin = rec.cubins.get(md.hash, b"")
                if cubin and cubin not in facts:
                    facts[cubin] = _cubin_facts(cubin)
                out.append(KernelBuild(case, name, grid, md.num_warps, md.shared, **facts.get(cubin, {})))
    return out


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--arch", type=int, default=90, choices=sorted(_DEVICE))
    ap.add_argument("--json", action="store_true", help="one JSON list of builds instead of a Markdown table")
    args = ap.parse_args(argv)
    rows = compile_report(args.arch)
    if args.json:
        print(json.dumps([asdict(r) for r in rows]))
        return 0
    print(f"| case (sm_{args.arch}) | grid | warps | regs | spill B | smem B | SASS instr | MMA | LDG vec/scalar |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r.case} | {r.grid} | {r.num_warps} | {r.registers} | {r.local_bytes} | {r.shared_bytes} "
            f"| {r.sass_instructions} | {r.mma_instructions} | {r.vector_loads}/{r.scalar_loads} |"
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
