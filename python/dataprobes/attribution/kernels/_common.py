"""Shared plumbing for the attribution kernels: Triton availability, backend
choice, argument checks, and the integer hash used by the sketches.

Backends
--------
Every public op takes ``backend="auto" | "triton" | "torch"``.

* ``"torch"``: the pure-torch reference implementation (any device).
* ``"triton"``: the Triton kernel. Needs Triton, and either CUDA tensors or
  Triton's CPU interpreter (``TRITON_INTERPRET=1`` set *before* ``triton`` is
  first imported: Triton reads it when a kernel is decorated).
* ``"auto"``: Triton when it can run (CUDA tensors, or the interpreter is on),
  the torch reference otherwise (e.g. CPU tensors on a machine without a GPU).

Hash
----
Sketch buckets and signs are computed from ``(seed, j)`` inside the kernels,
never stored. The mixing function is MurmurHash3's 32-bit finaliser
(``fmix32``, Appleby 2008), a bijection of ``uint32`` with full avalanche::

    H(j, s) = fmix32((j * 0x9E3779B1 mod 2**32) XOR s)

where ``s`` is a 32-bit stream key derived on the host from the user's seed
with SplitMix64 (Steele, Lea & Flood 2014). The torch reference evaluates the
same function in ``int64`` with the 32×32-bit products split into 16-bit
halves (no signed overflow), so kernel and reference agree bit for bit on the
hashes.
"""

from __future__ import annotations

from typing import Any

import torch

from ..._validation import check_int, check_seed

__all__ = ["HAS_TRITON", "INTERPRET", "check_int", "check_seed", "resolve_backend"]

try:  # Triton is optional: without it every op runs its torch reference.
    import triton
    import triton.language as tl

    HAS_TRITON = True
except Exception:  # pragma: no cover - depends on the install
    triton = None
    tl = None
    HAS_TRITON = False


def _detect_interpreter() -> bool:
    if not HAS_TRITON:
        return False

    @triton.jit
    def _probe(x):  # pragma: no cover - never launched
        pass

    # Triton picks the interpreter when the kernel is decorated; ask it rather
    # than re-reading the environment (which may have changed since).
    return type(_probe).__name__ == "InterpretedFunction"


INTERPRET: bool = _detect_interpreter()


#: Largest sketch input index (global coordinate) the kernels address.
MAX_INDEX = 2**31 - 1


def resolve_backend(backend: str, *tensors: torch.Tensor) -> str:
    """``"triton"`` or ``"torch"`` for ``backend`` and the tensors' devices."""
    if backend not in ("auto", "triton", "torch"):
        raise ValueError(f"backend must be 'auto', 'triton' or 'torch', got {backend!r}")
    if backend == "torch":
        return "torch"
    on_cuda = all(t.is_cuda for t in tensors)
    usable = HAS_TRITON and (INTERPRET or on_cuda)
    if backend == "triton":
        if not HAS_TRITON:
            raise RuntimeError("backend='triton' needs the 'triton' package; use backend='torch' or 'auto'")
        if not usable:
            raise RuntimeError(
                "backend='triton' needs CUDA tensors, or Triton's CPU interpreter "
                "(set TRITON_INTERPRET=1 before triton is imported); use backend='auto' "
                "to fall back to the torch reference"
            )
        return "triton"
    return "triton" if usable else "torch"


def check_tensor(
    name: str, t: Any, ndim: int | tuple[int, ...], dtypes: tuple[torch.dtype, ...] | None = None
) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if t.dim() not in dims:
        want = " or ".join(f"{n}-D" for n in dims)
        raise ValueError(f"{name} must be {want}, got shape {tuple(t.shape)}")
    if dtypes is not None and t.dtype not in dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name} must have dtype in ({names}), got {str(t.dtype).replace('torch.', '')}")
    return t


FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


# ----------------------------------------------------------------------------
# Seeds and the hash (host and torch reference)
# ----------------------------------------------------------------------------


def as_i32(u: int) -> int:
    """A uint32 value as the int32 with the same bits (for kernel arguments)."""
    return u - (1 << 32) if u >= (1 << 31) else u


if HAS_TRITON:

    @triton.jit
    def fmix32_tl(h):
        h ^= h >> 16
        h *= 0x85EBCA6B
        h ^= h >> 13
        h *= 0xC2B2AE35
        h ^= h >> 16
        return h

    @triton.jit
    def hash32_tl(j, key):
        """``H(j, key)``: ``j`` any integer tensor (non-negative, < 2**32),
        ``key`` a uint32 scalar."""
        return fmix32_tl((j.to(tl.uint32) * 0x9E3779B1) ^ key)


def next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())
