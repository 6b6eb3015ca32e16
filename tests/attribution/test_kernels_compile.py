"""The Triton kernels compile for real NVIDIA GPUs, checked without one.

The interpreter tests (test_kernels.py) run the kernels' logic
on the CPU, but never Triton's GPU compiler: layout conversion, ``tl.dot``
lowering, register allocation. Here every kernel is compiled to a cubin for
Ampere (sm_80) and Hopper (sm_90) at the launch configurations the launchers
pick (``dataprobes.attribution.kernels._aot``, in a subprocess without
``TRITON_INTERPRET``), and the cubins are checked for the properties that
decide speed on a GPU: no register spills, tensor cores in the factored
kernel's tf32 paths, vectorised loads where addresses allow them, and no
64-bit division subroutine in the sketch's inner loop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")
triton = pytest.importorskip("triton")

_BIN = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
pytestmark = pytest.mark.skipif(
    not all(os.path.exists(os.path.join(_BIN, t)) for t in ("ptxas", "cuobjdump")),
    reason="Triton's NVIDIA backend tools (ptxas, cuobjdump) are not installed",
)

_MAX_SHARED = {80: 166912, 90: 232448}


@pytest.fixture(scope="module", params=[80, 90], ids=["sm_80", "sm_90"])
def builds(request):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    cmd = [sys.executable, "-m", "dataprobes.attribution.kernels._aot", "--arch", str(request.param), "--json"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    return request.param, json.loads(run.stdout)


def test_every_kernel_compiles_without_spills(builds):
    arch, rows = builds
    kernels = {r["kernel"] for r in rows}
    assert kernels == {"_sjlt_hash_kernel", "_sjlt_block_kernel", "_factored_kernel", "_quant_kernel"}
    for r in rows:
        assert 0 < r["registers"] <= 255, r
        assert r["local_bytes"] == 0, f"register spill: {r}"
        assert r["shared_bytes"] <= _MAX_SHARED[arch], r
        assert r["sass_instructions"] > 0


def test_factored_tensor_core_paths_use_mma(builds):
    _, rows = builds
    fact = [r for r in rows if r["kernel"] == "_factored_kernel"]
    for r in fact:
        if r["case"].endswith("ieee"):
            assert r["mma_instructions"] == 0, r
        else:
            assert r["mma_instructions"] > 0, f"tf32 dot did not lower to tensor-core MMA: {r}"


def test_aligned_rows_get_vector_loads(builds):
    _, rows = builds
    for r in rows:
        aligned = (
            ("k=4096" in r["case"] or "k=8192" in r["case"]) if r["kernel"] == "_quant_kernel" else "d=768" in r["case"]
        )
        if r["kernel"] in ("_quant_kernel", "_factored_kernel") and aligned:
            assert r["vector_loads"] > 0, f"no 64/128-bit loads: {r}"
        if r["kernel"] == "_sjlt_hash_kernel" and "d=4096" in r["case"]:
            assert r["vector_loads"] > 0, r


def test_sketch_inner_loop_has_no_division_subroutine(builds):
    _, rows = builds
    for r in rows:
        if r["kernel"] == "_sjlt_block_kernel":
            assert r["calls"] == 0, f"a subroutine call (e.g. 64-bit remainder) in the block sketch: {r}"
