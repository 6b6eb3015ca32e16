"""Per-row symmetric int8 quantisation of compressed gradients.

``quantize_int8(x)`` maps each row ``x_b`` [k] to codes ``q_b`` (int8 in
[-127, 127]) and a scale ``s_b`` (float32)::

    y_b = x_b / ||x_b||_2   if normalize else x_b      (zero rows stay zero)
    s_b = max_j |y_bj| / 127
    q_bj = round(x_bj / (max_j |x_bj| / 127))          (half to even)

and ``dequantize_int8(q, s) = q * s[:, None]``. Error bound, per entry::

    |y_bj - q_bj s_b| <= s_b / 2        (= max_j |y_bj| / 254)

up to float32 rounding of the quotient (a relative ``~2**-23`` of
``max|y_b|``). The largest entry of each row is coded exactly as ±127. Codes
do not depend on ``normalize`` (the row norm cancels); only the scale does, so
normalisation is free in the kernel. NaN or infinite inputs give undefined
codes.

This is the gradient store's int8 row encoding, bit for bit
(:func:`dataprobes.attribution.store.quantize_int8` is its numpy twin and
hands torch tensors to :func:`quantize_int8_reference`): the same correctly
rounded float32 quotient and the same rounding rule (``numpy.rint`` /
``torch.round``), so a store written with ``quantize=`` set to this kernel
holds the bytes the default encoder writes.

The Triton kernel runs one program per row: one pass for ``max|x|`` and
``||x||²``, one pass to write the codes (two reads of the row, one write of
``k`` bytes and one scale).
"""

from __future__ import annotations

import torch

from ._common import FLOAT_DTYPES, HAS_TRITON, check_tensor, next_pow2, resolve_backend

if HAS_TRITON:
    import triton
    import triton.language as tl

__all__ = ["dequantize_int8", "quantize_int8", "quantize_int8_reference"]


def quantize_int8_reference(x: torch.Tensor, normalize: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure-torch :func:`quantize_int8` (same float32 operations as the kernel)."""
    check_tensor("x", x, 2, FLOAT_DTYPES)
    xf = x.to(torch.float32)
    maxabs = xf.abs().amax(dim=1) if xf.shape[1] else torch.zeros(xf.shape[0], device=x.device)
    step = maxabs / 127.0
    # correctly rounded x / step, rounded half to even (as the kernel does)
    v = torch.round(xf / torch.where(step > 0, step, 1.0)[:, None]).clamp_(-127, 127)
    q = v.to(torch.int8)
    if normalize:
        norm = torch.linalg.vector_norm(xf, dim=1)
        scale = torch.where(norm > 0, (maxabs / torch.where(norm > 0, norm, 1.0)) / 127.0, 0.0)
    else:
        scale = step
    return q, scale


if HAS_TRITON:

    @triton.jit  # k is specialised on divisibility by 16: vectorised loads and stores
    def _quant_kernel(x_ptr, q_ptr, scale_ptr, k, stride_x, stride_q, NORMALIZE: tl.constexpr, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        xrow = x_ptr + row * stride_x
        qrow = q_ptr + row * stride_q
        vmax = tl.zeros([BLOCK], dtype=tl.float32)
        vsq = tl.zeros([BLOCK], dtype=tl.float32)
        for c0 in range(0, k, BLOCK):
            cs = c0 + tl.arange(0, BLOCK)
            xv = tl.load(xrow + cs, mask=cs < k, other=0.0).to(tl.float32)
            vmax = tl.maximum(vmax, tl.abs(xv))
            vsq += xv * xv
        maxabs = tl.max(vmax, axis=0)
        step = tl.div_rn(maxabs, 127.0)
        div = tl.where(step > 0, step, 1.0)
        for c0 in range(0, k, BLOCK):
            cs = c0 + tl.arange(0, BLOCK)
            cm = cs < k
            v = tl.div_rn(tl.load(xrow + cs, mask=cm, other=0.0).to(tl.float32), div)
            # round half to even with exact operations: v - floor(v) is exact for |v| <= 2**23
            f = tl.floor(v)
            d = v - f
            odd = (f - 2.0 * tl.floor(f * 0.5)) == 1.0
            q = f + tl.where((d > 0.5) | ((d == 0.5) & odd), 1.0, 0.0)
            q = tl.minimum(tl.maximum(q, -127.0), 127.0)
            tl.store(qrow + cs, q.to(tl.int8), mask=cm)
        if NORMALIZE:
            norm = tl.sqrt_rn(tl.sum(vsq, axis=0))
            npos = norm > 0
            scale = tl.where(npos, tl.div_rn(tl.div_rn(maxabs, tl.where(npos, norm, 1.0)), 127.0), 0.0)
        else:
            scale = tl.div_rn(maxabs, 127.0)
        tl.store(scale_ptr + row, scale)


def _quant_triton(x: torch.Tensor, normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Launcher: x [B, k] with unit last stride."""
    if x.dim() != 2 or x.stride(1) != 1 or x.dtype not in FLOAT_DTYPES:
        raise ValueError("x must be a 2-D float tensor contiguous in its last dimension")
    b, k = x.shape
    q = torch.empty(b, k, dtype=torch.int8, device=x.device)
    scale = torch.empty(b, dtype=torch.float32, device=x.device)
    block = min(max(16, next_pow2(k)), 4096)
    _quant_kernel[(b,)](x, q, scale, k, x.stride(0), q.stride(0), NORMALIZE=bool(normalize), BLOCK=block)
    return q, scale


def quantize_int8(
    x: torch.Tensor, normalize: bool = False, *, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row int8 codes ``q`` [B, k] and float32 scales [B] of ``x`` [B, k],
    optionally unit-normalising each row first (fused). See the module
    docstring for the rounding rule and the error bound ``scale / 2``."""
    check_tensor("x", x, 2, FLOAT_DTYPES)
    b, k = x.shape
    if b == 0 or k == 0:
        return torch.zeros(b, k, dtype=torch.int8, device=x.device), torch.zeros(
            b, dtype=torch.float32, device=x.device
        )
    if resolve_backend(backend, x) == "torch":
        return quantize_int8_reference(x, normalize)
    if x.stride(1) != 1:
        x = x.contiguous()
    return _quant_triton(x, normalize)


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``q * scale[:, None]`` as ``dtype`` (one fused elementwise op in torch;
    no kernel needed)."""
    check_tensor("q", q, 2, (torch.int8,))
    check_tensor("scale", scale, 1, (torch.float32,))
    if scale.shape[0] != q.shape[0]:
        raise ValueError(f"scale has {scale.shape[0]} rows, q has {q.shape[0]}")
    return (q.to(torch.float32) * scale[:, None]).to(dtype)
