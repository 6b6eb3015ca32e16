"""Count-sketch / sparse Johnson–Lindenstrauss transform (SJLT) with hashed
buckets and signs.

``sjlt(x, k, seed)`` maps each row of ``x`` [B, d] to ``S x`` [k] where ``S``
has exactly **one** nonzero per input coordinate (column) ``j``::

    out[:, h(j)] += s(j) * x[:, j],      h(j) in [0, k),  s(j) in {-1, +1}.

Buckets and signs are computed from ``(seed, j)`` by an integer hash *inside*
the kernel (nothing is stored; see :mod:`._common` for the hash ``H``)::

    s(j) = +1 if H(j, key_sign) < 2**31 else -1

and, for the two bucket schemes,

* ``scheme="hash"`` (default; the classic count sketch of Charikar, Chen &
  Farach-Colton 2002 used by GraSS): ``h(j) = H(j, key_bucket) mod k``.
  The kernel tiles (column block × row block), hashes in registers and
  scatters with ``tl.atomic_add``: one atomic per input element, so the
  summation order (and the last bits of the result) may vary between runs.
* ``scheme="block"``: split the coordinates into consecutive blocks of ``k``;
  block ``m = j // k`` is rotated by a hashed shift,
  ``h(j) = (j mod k + H(m, key_bucket) mod k) mod k``. Within a block the
  buckets form a permutation, so the kernel can *gather* instead of scatter:
  each program owns a tile of outputs and walks the blocks, reading
  contiguous (coalesced) runs of ``x`` and writing each output once — no
  atomics, deterministic for a given launch configuration, and one read of
  ``x`` plus one write of ``out`` in total (the memory floor). When ``d <= k``
  it is an exact isometry.

Guarantees (both schemes). With signs from a hash family that behaves as
4-wise independent and buckets with pairwise collision probability
``P[h(i) = h(j)] <= 1/k`` for ``i != j`` (exactly ``1/k`` for the hash scheme
over a random seed, ``1/k`` across blocks and ``0`` within a block for the
block scheme)::

    E[<Sx, Sy>]   = <x, y>
    Var[<Sx, Sy>] = sum_{i != j} P[h(i) = h(j)] (x_i^2 y_j^2 + x_i y_i x_j y_j)
                 <= (||x||^2 ||y||^2 + <x, y>^2) / k  <=  2 ||x||^2 ||y||^2 / k.

(The variance needs only pairwise bucket collisions and 4-wise sign
independence, which is why the structured block scheme keeps the bound.)
For a fixed seed the hash is a fixed function; the expectation is over seeds.

Limits: global coordinates ``offset + j`` must lie below ``2**31`` (the hash
input is a 32-bit word and the kernels index in 32-bit arithmetic per row;
row offsets are 64-bit), ``1 <= k < 2**31``; inputs float32/bfloat16/float16,
accumulation and output float32. ``offset`` lets a long vector be sketched in
pieces: ``sjlt(x[:, a:b], k, seed, offset=a)`` summed over the pieces equals
``sjlt(x, k, seed)``.
"""

from __future__ import annotations

import torch

from ..._torch.counter_hash import hash32_torch, stream_key
from ._common import (
    FLOAT_DTYPES,
    HAS_TRITON,
    MAX_INDEX,
    as_i32,
    check_int,
    check_seed,
    check_tensor,
    next_pow2,
    resolve_backend,
)

if HAS_TRITON:
    import triton
    import triton.language as tl

    from ._common import hash32_tl

__all__ = ["sjlt", "sjlt_hashes", "sjlt_reference"]

_SCHEMES = ("hash", "block")
_KEY_SIGN, _KEY_BUCKET = 0, 1


def _keys(seed: int) -> tuple[int, int]:
    return stream_key(seed, _KEY_SIGN), stream_key(seed, _KEY_BUCKET)


def _check_args(k: int, seed: int, offset: int, scheme: str, d: int) -> tuple[int, int, int]:
    k = check_int("k", k, 1, MAX_INDEX)
    seed = check_seed("seed", seed)
    offset = check_int("offset", offset, 0)
    if scheme not in _SCHEMES:
        raise ValueError(f"scheme must be one of {_SCHEMES}, got {scheme!r}")
    if offset + d - 1 > MAX_INDEX:
        raise ValueError(
            f"global coordinates offset + j must stay below 2**31 (offset={offset}, d={d}); "
            "sketch such long vectors with several seeds/pieces"
        )
    return k, seed, offset


# ----------------------------------------------------------------------------
# Reference
# ----------------------------------------------------------------------------


def sjlt_hashes(
    d: int, k: int, seed: int = 0, *, offset: int = 0, scheme: str = "hash", device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Buckets (int64 [d]) and signs (float32 [d], ±1) of coordinates
    ``offset .. offset + d - 1``: the sketch matrix in index form."""
    d = check_int("d", d, 0)
    k, seed, offset = _check_args(k, seed, offset, scheme, d)
    key_sign, key_bucket = _keys(seed)
    j = torch.arange(offset, offset + d, dtype=torch.int64, device=device)
    sign = 1.0 - 2.0 * (hash32_torch(j, key_sign) >> 31).to(torch.float32)
    if scheme == "hash":
        bucket = hash32_torch(j, key_bucket) % k
    else:
        shift = hash32_torch(j // k, key_bucket) % k
        bucket = (j % k + shift) % k
    return bucket, sign


def sjlt_reference(x: torch.Tensor, k: int, seed: int = 0, *, offset: int = 0, scheme: str = "hash") -> torch.Tensor:
    """Pure-torch SJLT (``index_add_`` over hashed buckets): the CPU fallback
    and the oracle the kernel is tested against."""
    check_tensor("x", x, 2, FLOAT_DTYPES)
    b, d = x.shape
    out = torch.zeros(b, k, dtype=torch.float32, device=x.device)
    chunk = max(1, (1 << 22) // max(b, 1))  # bound the float32 temporary
    for a in range(0, d, chunk):
        e = min(d, a + chunk)
        bucket, sign = sjlt_hashes(e - a, k, seed, offset=offset + a, scheme=scheme, device=x.device)
        out.index_add_(1, bucket, x[:, a:e].to(torch.float32) * sign)
    return out


# ----------------------------------------------------------------------------
# Triton kernels
# ----------------------------------------------------------------------------

if HAS_TRITON:

    @triton.jit(do_not_specialize=["k", "offset", "key_sign", "key_bucket"])
    def _sjlt_hash_kernel(
        x_ptr,
        out_ptr,
        B,
        d,
        k,
        offset,
        stride_x,
        stride_o,
        key_sign,
        key_bucket,
        BLOCK_B: tl.constexpr,
        BLOCK_D: tl.constexpr,
    ):
        pid_d = tl.program_id(0)
        pid_b = tl.program_id(1)
        cols = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
        rows = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
        cmask = cols < d
        rmask = rows < B
        j = cols + offset
        ks = key_sign.to(tl.uint32, bitcast=True)
        kb = key_bucket.to(tl.uint32, bitcast=True)
        sign = tl.where((hash32_tl(j, ks) >> 31) == 0, 1.0, -1.0)
        bucket = (hash32_tl(j, kb) % k.to(tl.uint32)).to(tl.int32)
        m2 = rmask[:, None] & cmask[None, :]
        r64 = rows.to(tl.int64)[:, None]
        x = tl.load(x_ptr + r64 * stride_x + cols[None, :], mask=m2, other=0.0).to(tl.float32)
        tl.atomic_add(out_ptr + r64 * stride_o + bucket[None, :], x * sign[None, :], mask=m2, sem="relaxed")

    @triton.jit(do_not_specialize=["d", "k", "offset", "key_sign", "key_bucket", "m_first", "m_end", "m_per_split"])
    def _sjlt_block_kernel(
        x_ptr,
        out_ptr,
        B,
        d,
        k,
        offset,
        stride_x,
        stride_os,
        stride_o,
        key_sign,
        key_bucket,
        m_first,
        m_end,
        m_per_split,
        BLOCK_B: tl.constexpr,
        BLOCK_K: tl.constexpr,
    ):
        pid0 = tl.program_id(0)
        pid_b = tl.program_id(1)
        n_kb = tl.cdiv(k, BLOCK_K)
        pid_k = pid0 % n_kb
        pid_s = pid0 // n_kb
        bk = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
        rows = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
        bmask = bk < k
        rmask = rows < B
        ks = key_sign.to(tl.uint32, bitcast=True)
        kb = key_bucket.to(tl.uint32, bitcast=True)
        ku = k.to(tl.uint32)
        # All coordinates are below 2**32 (offset + d <= 2**31, k < 2**31), so
        # 32-bit unsigned index arithmetic is exact: no 64-bit division per element.
        lo = offset.to(tl.uint32)
        hi = lo + d.to(tl.uint32)
        xrow = x_ptr + rows.to(tl.int64)[:, None] * stride_x
        acc = tl.zeros([BLOCK_B, BLOCK_K], dtype=tl.float32)
        m_lo = m_first + pid_s * m_per_split
        m_hi = tl.minimum(m_lo + m_per_split, m_end)
        for m in range(m_lo, m_hi):
            # Block m is rotated by c: output b reads input m*k + (b - c) mod k.
            # c is computed once per block on a 1-element tensor (the loop
            # index is a plain int under the interpreter).
            m1 = tl.zeros([1], dtype=tl.uint32) + m
            c = (hash32_tl(m1, kb) % ku).to(tl.int32)
            jl = bk - c
            jl = tl.where(jl < 0, jl + k, jl)
            jg = m1 * ku + jl.to(tl.uint32)
            valid = bmask & (jg >= lo) & (jg < hi)
            sign = tl.where((hash32_tl(jg, ks) >> 31) == 0, 1.0, -1.0)
            xv = tl.load(xrow + (jg - lo).to(tl.int32)[None, :], mask=rmask[:, None] & valid[None, :], other=0.0)
            acc += xv.to(tl.float32) * sign[None, :]
        r64 = rows.to(tl.int64)[:, None]
        out = out_ptr + pid_s.to(tl.int64) * stride_os + r64 * stride_o + bk[None, :]
        tl.store(out, acc, mask=rmask[:, None] & bmask[None, :])


# CUDA limits grid axis 1 (row tiles) to 65535; tiles hold 4 rows or more once B >= 4.
_ROWS_PER_LAUNCH = 65535 * 4


def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4  # interpreter: a few splits exercise the partial-sum path


def _sjlt_triton(x: torch.Tensor, k: int, seed: int, offset: int, scheme: str, splits: int | None) -> torch.Tensor:
    """Launcher: checks layout, picks tiles, launches the kernel."""
    if x.dim() != 2 or x.dtype not in FLOAT_DTYPES:
        raise ValueError("x must be a 2-D float32/bfloat16/float16 tensor")
    if x.stride(1) != 1:
        raise ValueError("x must be contiguous in its last dimension")
    b, d = x.shape
    rows_max = _ROWS_PER_LAUNCH
    if b > rows_max:
        return torch.cat(
            [_sjlt_triton(x[a : a + rows_max], k, seed, offset, scheme, splits) for a in range(0, b, rows_max)]
        )
    key_sign, key_bucket = (as_i32(v) for v in _keys(seed))
    if scheme == "hash":
        out = torch.zeros(b, k, dtype=torch.float32, device=x.device)
        block_b = min(next_pow2(b), 8)
        block_d = max(16, 2048 // block_b)
        grid = (triton.cdiv(d, block_d), triton.cdiv(b, block_b))
        _sjlt_hash_kernel[grid](
            x,
            out,
            b,
            d,
            k,
            offset,
            x.stride(0),
            out.stride(0),
            key_sign,
            key_bucket,
            BLOCK_B=block_b,
            BLOCK_D=block_d,
        )
        return out
    block_b = min(next_pow2(b), 4)
    block_k = min(max(16, next_pow2(k)), 1024 // block_b * 2)
    m_first = offset // k
    m_end = (offset + d - 1) // k + 1
    n_m = m_end - m_first
    n_kb = triton.cdiv(k, block_k)
    n_rb = triton.cdiv(b, block_b)
    if splits is None:
        want = 4 * _num_sms(x.device)
        splits = max(1, min(n_m, triton.cdiv(want, n_kb * n_rb)))
    splits = max(1, min(int(splits), n_m))
    per = triton.cdiv(n_m, splits)
    splits = triton.cdiv(n_m, per)
    part = torch.empty(splits, b, k, dtype=torch.float32, device=x.device)
    grid = (n_kb * splits, n_rb)
    _sjlt_block_kernel[grid](
        x,
        part,
        b,
        d,
        k,
        offset,
        x.stride(0),
        part.stride(0),
        part.stride(1),
        key_sign,
        key_bucket,
        m_first,
        m_end,
        per,
        BLOCK_B=block_b,
        BLOCK_K=block_k,
    )
    return part[0] if splits == 1 else part.sum(0)


# ----------------------------------------------------------------------------
# Public
# ----------------------------------------------------------------------------


def sjlt(
    x: torch.Tensor,
    k: int,
    seed: int = 0,
    *,
    offset: int = 0,
    scheme: str = "hash",
    backend: str = "auto",
    _splits: int | None = None,
) -> torch.Tensor:
    """Sparse JL / count-sketch of the rows of ``x`` [B, d] to ``[B, k]`` (float32).

    ``seed`` (0 ≤ seed < 2**64) fixes the hash; ``offset`` shifts the
    coordinate numbering (sketch a long vector piece by piece); ``scheme``
    is ``"hash"`` (classic count sketch, atomics) or ``"block"`` (rotated
    blocks, gather without atomics); ``backend`` is ``"auto"``, ``"triton"``
    or ``"torch"`` (see :mod:`dataprobes.attribution.kernels`). The result is
    linear in ``x`` and satisfies ``E_seed[<Sx, Sy>] = <x, y>``.
    """
    check_tensor("x", x, 2, FLOAT_DTYPES)
    b, d = x.shape
    k, seed, offset = _check_args(k, seed, offset, scheme, d)
    if b == 0 or d == 0:
        return torch.zeros(b, k, dtype=torch.float32, device=x.device)
    if resolve_backend(backend, x) == "torch":
        return sjlt_reference(x, k, seed, offset=offset, scheme=scheme)
    if x.stride(1) != 1:
        x = x.contiguous()
    return _sjlt_triton(x, k, seed, offset, scheme, _splits)
