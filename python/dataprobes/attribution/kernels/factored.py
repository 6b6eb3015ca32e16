"""LoGra-style factored projection of a linear layer's per-example gradient.

For a linear layer ``y_t = W x_t (+ b)`` applied at positions ``t`` of example
``b`` with output gradients ``g_t = dL_b/dy_t``, the per-example weight
gradient is ``G_b = sum_t g_t x_t^T`` ([d_out, d_in]). Projecting both sides
with ``P_out`` [d_out, k_out] and ``P_in`` [d_in, k_in] (Choe et al., LoGra /
LogIX, 2024) gives::

    P_out^T G_b P_in = sum_t (P_out^T g_t) (P_in^T x_t)^T      [k_out, k_in]

which :func:`factored_project` returns flattened row-major to
``[B, k_out * k_in]`` — i.e. ``vec(P_out^T G_b P_in)`` with index
``o * k_in + i`` — without ever forming ``G_b``. Cost: two thin projections
per token plus a ``k_out × k_in`` outer product; memory: ``O(B k_out k_in)``.

An optional ``mask`` [B, T] weights each position's contribution (1 = the
token counts, 0 = padding: its ``g_t x_t^T`` is dropped even if nonzero).
``x_bias`` [k_in] is the projection of an extra constant-1 input column,
``P_in^T [x_t; 1] = P_in[:d_in]^T x_t + P_in[d_in]``: pass
``x_bias=P[d_in]`` with ``P_in=P[:d_in]`` to include the bias gradient as a
last input column (``[W | b]``).

The Triton kernel fuses both projections and the per-example accumulation:
program ``(b, split, k_out tile, k_in tile)`` walks a range of token tiles,
projects the tile's ``x`` and ``g`` through ``P_in``/``P_out`` with
``tl.dot`` with fp32 accumulation, and accumulates ``gp^T xp`` in registers.
``input_precision`` picks the multiply: ``"tf32"`` (default) runs on tensor
cores with operands rounded to a 10-bit mantissa (relative error about
``2**-11`` per product, far below the projection's own ``1/sqrt(k)``
distortion); ``"tf32x3"`` splits each operand in two tf32 parts for close to
fp32 accuracy at three times the tensor-core work; ``"ieee"`` is exact fp32
on the FMA units (several times slower on GPUs). Under the CPU interpreter all
three compute in fp32. Token ranges
are split across programs when ``B`` alone gives too little parallelism; the
partial sums are added afterwards (deterministic for a given launch).
"""

from __future__ import annotations

import math

import torch

from ._common import FLOAT_DTYPES, HAS_TRITON, check_int, check_seed, check_tensor, next_pow2, resolve_backend

if HAS_TRITON:
    import triton
    import triton.language as tl

__all__ = ["factored_project", "factored_reference", "projection_matrix"]

_KINDS = ("gaussian", "rademacher", "orthogonal")
_PRECISIONS = ("tf32", "tf32x3", "ieee")


def projection_matrix(
    d: int,
    k: int,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    *,
    kind: str = "gaussian",
) -> torch.Tensor:
    """A seeded random projection ``P`` [d, k] with ``E[P P^T] = I_d``.

    Kinds (docs/math.md, Attribution: projection kinds):

    * ``"gaussian"``: entries i.i.d. ``N(0, 1)/sqrt(k)``;
    * ``"rademacher"``: entries i.i.d. ``±1/sqrt(k)``;
    * ``"orthogonal"``: a Haar-random (uniformly distributed) partial
      isometry. For ``k >= d`` the rows are orthonormal, ``P P^T = I_d``
      exactly, so ``<P^T u, P^T v> = <u, v>`` for every pair and the factored
      projection ``vec(P_out^T G P_in)`` preserves the inner products of the
      gradients exactly once ``k_in >= d_in`` and ``k_out >= d_out``. For
      ``k < d`` the columns are orthonormal and scaled by ``sqrt(d/k)``:
      ``P^T P = (d/k) I_k`` and ``P P^T = (d/k) Π`` with ``Π`` the orthogonal
      projector on a uniformly random k-dimensional subspace, so
      ``E[P P^T] = I_d`` as for the other kinds, with a variance smaller by
      about the factor ``1 - k/d`` (sampling without replacement). The
      matrix is ``Q`` (or ``Q^T``) of the QR factorisation of a seeded
      ``[max(d, k), min(d, k)]`` Gaussian matrix, in float64, with each column
      of ``Q`` multiplied by the sign of ``R``'s diagonal entry (the sign fix
      that makes ``Q`` Haar-distributed; Mezzadri 2007).

    Entries are drawn on the CPU from a ``torch.Generator`` seeded with
    ``seed`` and then moved, so the matrix is identical on every device and
    machine for the same torch version.
    """
    d = check_int("d", d, 1)
    k = check_int("k", k, 1)
    seed = check_seed("seed", seed)
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    if kind == "orthogonal":
        a = torch.randn(max(d, k), min(d, k), generator=gen, dtype=torch.float64)
        q, r = _small_qr(a)  # q [max, min] with orthonormal columns
        sign = torch.sign(torch.diagonal(r))
        q = q * torch.where(sign == 0, 1.0, sign)[None, :]
        p = q.T.contiguous() if k >= d else q * math.sqrt(d / k)
        return p.to(device=device, dtype=dtype)
    if kind == "gaussian":
        p = torch.randn(d, k, generator=gen, dtype=torch.float32)
    else:
        p = torch.randint(0, 2, (d, k), generator=gen, dtype=torch.int8).to(torch.float32).mul_(2).sub_(1)
    p.mul_(1.0 / math.sqrt(k))
    return p.to(device=device, dtype=dtype)


def _small_qr(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reduced QR of ``a``, on one thread when it is small: LAPACK's threaded
    QR of a matrix of a few hundred rows spends far longer synchronising than
    computing on shared cores (132 x 129 in float64: 250 ms on two busy
    cores, 0.4 ms on one). Larger matrices keep torch's thread count."""
    threads = torch.get_num_threads()
    if threads == 1 or a.shape[0] * a.shape[1] ** 2 > 2**27:
        return torch.linalg.qr(a)
    torch.set_num_threads(1)
    try:
        return torch.linalg.qr(a)
    finally:
        torch.set_num_threads(threads)


def _check(
    x: torch.Tensor,
    g: torch.Tensor,
    p_in: torch.Tensor,
    p_out: torch.Tensor,
    mask: torch.Tensor | None,
    x_bias: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Validate; return x, g as [B, T, d] and the mask as float32 [B, T]."""
    check_tensor("x", x, (2, 3), FLOAT_DTYPES)
    check_tensor("g", g, (2, 3), FLOAT_DTYPES)
    check_tensor("P_in", p_in, 2, FLOAT_DTYPES)
    check_tensor("P_out", p_out, 2, FLOAT_DTYPES)
    if x.dim() != g.dim() or x.shape[:-1] != g.shape[:-1]:
        raise ValueError(
            f"x {tuple(x.shape)} and g {tuple(g.shape)} must share their leading (batch[, time]) dimensions"
        )
    if p_in.shape[0] != x.shape[-1]:
        raise ValueError(f"P_in has {p_in.shape[0]} rows but x has d_in={x.shape[-1]}")
    if p_out.shape[0] != g.shape[-1]:
        raise ValueError(f"P_out has {p_out.shape[0]} rows but g has d_out={g.shape[-1]}")
    devs = {t.device for t in (x, g, p_in, p_out)}
    if len(devs) > 1:
        raise ValueError(f"x, g, P_in and P_out must be on one device, got {sorted(map(str, devs))}")
    if x.dim() == 2:
        x, g = x[:, None], g[:, None]
    m = None
    if mask is not None:
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
        if tuple(mask.shape) != tuple(x.shape[:2]):
            raise ValueError(f"mask must have shape [B, T] = {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
        m = mask.to(device=x.device, dtype=torch.float32)
    if x_bias is not None:
        check_tensor("x_bias", x_bias, 1, FLOAT_DTYPES)
        if x_bias.shape[0] != p_in.shape[1]:
            raise ValueError(f"x_bias must have k_in={p_in.shape[1]} entries, got {x_bias.shape[0]}")
    return x, g, m


def factored_reference(
    x: torch.Tensor,
    g: torch.Tensor,
    P_in: torch.Tensor,
    P_out: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    x_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pure-torch factored projection: two matmuls and an einsum, in float32."""
    x3, g3, m = _check(x, g, P_in, P_out, mask, x_bias)
    xp = x3.to(torch.float32) @ P_in.to(torch.float32)
    if x_bias is not None:
        xp = xp + x_bias.to(torch.float32)
    gp = g3.to(torch.float32) @ P_out.to(torch.float32)
    if m is not None:
        gp = gp * m[..., None]
    return torch.einsum("bto,bti->boi", gp, xp).reshape(x3.shape[0], -1)


if HAS_TRITON:

    @triton.jit
    def _project_tile(
        src_ptr,
        stride_t,
        t64,
        tm,
        p_ptr,
        stride_p,
        ks,
        km,
        d,
        BLOCK_T: tl.constexpr,
        BLOCK_D: tl.constexpr,
        BLOCK_K: tl.constexpr,
        PREC: tl.constexpr,
    ):
        """``src[t64, :] @ P[:, ks]`` -> [BLOCK_T, BLOCK_K] float32, for the rows
        ``t64`` (masked by ``tm``) of a [T, d] operand with row stride
        ``stride_t`` and a projection ``P`` [d, k] with row stride ``stride_p``
        (columns ``ks`` masked by ``km``), accumulated over ``BLOCK_D`` chunks of ``d``."""
        out = tl.zeros([BLOCK_T, BLOCK_K], dtype=tl.float32)
        for c0 in range(0, d, BLOCK_D):
            cs = c0 + tl.arange(0, BLOCK_D)
            cm = cs < d
            st = tl.load(src_ptr + t64[:, None] * stride_t + cs[None, :], mask=tm[:, None] & cm[None, :], other=0.0)
            pt = tl.load(p_ptr + cs[:, None] * stride_p + ks[None, :], mask=cm[:, None] & km[None, :], other=0.0)
            out += tl.dot(st.to(tl.float32), pt, input_precision=PREC)
        return out

    @triton.jit(do_not_specialize=["T", "t_per_split", "n_split"])
    def _factored_kernel(
        x_ptr,
        g_ptr,
        pin_ptr,
        pout_ptr,
        mask_ptr,
        xb_ptr,
        out_ptr,
        T,
        d_in,
        d_out,
        k_in,
        k_out,
        t_per_split,
        n_split,
        sxb,
        sxt,
        sgb,
        sgt,
        smb,
        smt,
        spin,
        spout,
        sos,
        sob,
        HAS_MASK: tl.constexpr,
        HAS_XBIAS: tl.constexpr,
        BLOCK_T: tl.constexpr,
        BLOCK_DI: tl.constexpr,
        BLOCK_DO: tl.constexpr,
        BLOCK_KI: tl.constexpr,
        BLOCK_KO: tl.constexpr,
        PREC: tl.constexpr,
    ):
        pid0 = tl.program_id(0)
        b = (pid0 // n_split).to(tl.int64)
        s = pid0 % n_split
        ko = tl.program_id(1) * BLOCK_KO + tl.arange(0, BLOCK_KO)
        ki = tl.program_id(2) * BLOCK_KI + tl.arange(0, BLOCK_KI)
        kom = ko < k_out
        kim = ki < k_in
        t_lo = s * t_per_split
        t_hi = tl.minimum(t_lo + t_per_split, T)
        acc = tl.zeros([BLOCK_KO, BLOCK_KI], dtype=tl.float32)
        if HAS_XBIAS:
            xb = tl.load(xb_ptr + ki, mask=kim, other=0.0).to(tl.float32)
        for t0 in range(t_lo, t_hi, BLOCK_T):
            ts = t0 + tl.arange(0, BLOCK_T)
            tm = ts < t_hi
            t64 = ts.to(tl.int64)
            # xp = x_tile @ P_in[:, ki]  -> [BLOCK_T, BLOCK_KI]
            xp = _project_tile(
                x_ptr + b * sxb, sxt, t64, tm, pin_ptr, spin, ki, kim, d_in, BLOCK_T, BLOCK_DI, BLOCK_KI, PREC
            )
            if HAS_XBIAS:
                xp += xb[None, :]
            # gp = g_tile @ P_out[:, ko]  -> [BLOCK_T, BLOCK_KO]
            gp = _project_tile(
                g_ptr + b * sgb, sgt, t64, tm, pout_ptr, spout, ko, kom, d_out, BLOCK_T, BLOCK_DO, BLOCK_KO, PREC
            )
            if HAS_MASK:
                mv = tl.load(mask_ptr + b * smb + t64 * smt, mask=tm, other=0.0)
                gp = gp * mv[:, None]
            # rows of gp beyond the token range are zero, so the bias term adds nothing there
            acc += tl.dot(tl.trans(gp), xp, input_precision=PREC)
        out = out_ptr + s.to(tl.int64) * sos + b * sob + ko[:, None] * k_in + ki[None, :]
        tl.store(out, acc, mask=kom[:, None] & kim[None, :])


def _factored_config(d_in: int, d_out: int, k_in: int, k_out: int, precision: str) -> dict[str, int]:
    """Tile sizes and warps for the factored kernel.

    Chosen by compiling for sm_80/sm_90 (``python -m
    dataprobes.attribution.kernels._aot``): with 8 warps, a two-stage
    (double-buffered) pipeline, 32×32 input tiles and output tiles of up to
    64×64, the tensor-core paths (``tf32``, ``tf32x3``) need 115–165
    registers, no spills and vectorised (cp.async) loads on both; the FMA
    path (``ieee``) needs 16-token tiles to stay clear of the 255-register
    limit. (Three stages spilled on sm_80 for fp16 inputs.)
    """
    return {
        "BLOCK_T": 16 if precision == "ieee" else 32,
        "BLOCK_KI": min(max(16, next_pow2(k_in)), 64),
        "BLOCK_KO": min(max(16, next_pow2(k_out)), 64),
        "BLOCK_DI": min(max(16, next_pow2(d_in)), 32),
        "BLOCK_DO": min(max(16, next_pow2(d_out)), 32),
        "num_warps": 8,
        "num_stages": 2,
    }


def _factored_triton(
    x: torch.Tensor,
    g: torch.Tensor,
    p_in: torch.Tensor,
    p_out: torch.Tensor,
    mask: torch.Tensor | None,
    x_bias: torch.Tensor | None,
    precision: str,
    splits: int | None,
) -> torch.Tensor:
    """Launcher: x, g [B, T, d] with unit last stride; P fp32 row-major."""
    for name, t in (("x", x), ("g", g)):
        if t.dim() != 3 or t.stride(2) != 1:
            raise ValueError(f"{name} must be [B, T, d] and contiguous in its last dimension")
    for name, t in (("P_in", p_in), ("P_out", p_out)):
        if t.dtype != torch.float32 or t.stride(1) != 1:
            raise ValueError(f"{name} must be float32 and contiguous in its last dimension")
    b, t_len, d_in = x.shape
    d_out = g.shape[2]
    k_in, k_out = p_in.shape[1], p_out.shape[1]
    cfg = _factored_config(d_in, d_out, k_in, k_out, precision)
    block_t, block_ki, block_ko = cfg["BLOCK_T"], cfg["BLOCK_KI"], cfg["BLOCK_KO"]
    n_ko = triton.cdiv(k_out, block_ko)
    n_ki = triton.cdiv(k_in, block_ki)
    max_split = triton.cdiv(t_len, block_t)
    if splits is None:
        sms = torch.cuda.get_device_properties(x.device).multi_processor_count if x.is_cuda else 1
        splits = triton.cdiv(2 * sms, b * n_ko * n_ki)
    splits = max(1, min(int(splits), max_split))
    per = triton.cdiv(triton.cdiv(t_len, splits), block_t) * block_t
    splits = triton.cdiv(t_len, per)
    out = torch.empty(splits, b, k_out * k_in, dtype=torch.float32, device=x.device)
    m = mask if mask is not None else out  # dummy pointer when absent
    xb = x_bias.to(torch.float32).contiguous() if x_bias is not None else out
    grid = (b * splits, n_ko, n_ki)
    _factored_kernel[grid](
        x,
        g,
        p_in,
        p_out,
        m,
        xb,
        out,
        t_len,
        d_in,
        d_out,
        k_in,
        k_out,
        per,
        splits,
        x.stride(0),
        x.stride(1),
        g.stride(0),
        g.stride(1),
        m.stride(0) if mask is not None else 0,
        m.stride(1) if mask is not None else 0,
        p_in.stride(0),
        p_out.stride(0),
        out.stride(0),
        out.stride(1),
        HAS_MASK=mask is not None,
        HAS_XBIAS=x_bias is not None,
        PREC=precision,
        **cfg,
    )
    return out[0] if splits == 1 else out.sum(0)


def factored_project(
    x: torch.Tensor,
    g: torch.Tensor,
    P_in: torch.Tensor,
    P_out: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    x_bias: torch.Tensor | None = None,
    backend: str = "auto",
    input_precision: str = "tf32",
    _splits: int | None = None,
) -> torch.Tensor:
    """Per-example ``vec(P_out^T (sum_t m_t g_t x_t^T) P_in)`` as float32 ``[B, k_out * k_in]``.

    ``x`` [B, T, d_in] or [B, d_in] (layer inputs), ``g`` [B, T, d_out] or
    [B, d_out] (gradients of the layer outputs), ``P_in`` [d_in, k_in],
    ``P_out`` [d_out, k_out]; float32/bfloat16/float16, computed in float32.
    ``mask`` [B, T] weights positions (1 = counts, 0 = padding); ``x_bias``
    [k_in] appends a constant-1 input column projected to ``x_bias`` (the
    bias gradient). ``input_precision`` (Triton only): ``"tf32"``
    (default, tensor cores), ``"tf32x3"`` (near fp32) or ``"ieee"`` (exact
    fp32), see the module docstring.
    """
    x3, g3, m = _check(x, g, P_in, P_out, mask, x_bias)
    if input_precision not in _PRECISIONS:
        raise ValueError(f"input_precision must be one of {_PRECISIONS}, got {input_precision!r}")
    b, t_len = x3.shape[:2]
    k_in, k_out = P_in.shape[1], P_out.shape[1]
    if b == 0 or t_len == 0:
        return torch.zeros(b, k_out * k_in, dtype=torch.float32, device=x.device)
    if resolve_backend(backend, x3, g3, P_in, P_out) == "torch":
        return factored_reference(x3, g3, P_in, P_out, m, x_bias=x_bias)
    if x3.stride(2) != 1:
        x3 = x3.contiguous()
    if g3.stride(2) != 1:
        g3 = g3.contiguous()
    p_in = P_in.to(torch.float32).contiguous()
    p_out = P_out.to(torch.float32).contiguous()
    if m is not None:
        m = m.contiguous()
    return _factored_triton(x3, g3, p_in, p_out, m, x_bias, input_precision, _splits)
