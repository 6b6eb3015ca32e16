"""Attribution kernels: each Triton kernel against its pure-torch reference
on odd shapes, plus the math the references must satisfy.

Without a GPU the Triton kernels run through Triton's CPU interpreter
(``TRITON_INTERPRET=1``, set in conftest.py before triton is imported); with
a GPU the same tests run the compiled kernels on ``cuda``. Shapes stay tiny:
the interpreter is slow.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from dataprobes.attribution import kernels as K  # noqa: E402
from dataprobes.attribution.kernels import (  # noqa: E402
    dequantize_int8,
    factored_project,
    factored_reference,
    projection_matrix,
    quantize_int8,
    quantize_int8_reference,
    sjlt,
    sjlt_hashes,
    sjlt_reference,
)

# Devices on which the Triton backend can run in this process.
TRITON_DEVICES = []
if K.HAS_TRITON and K.INTERPRET:
    TRITON_DEVICES.append("cpu")
elif K.HAS_TRITON and torch.cuda.is_available():
    TRITON_DEVICES.append("cuda")
triton_device = pytest.mark.parametrize(
    "device",
    TRITON_DEVICES or [pytest.param("none", marks=pytest.mark.skip(reason="no GPU and no Triton interpreter"))],
)

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# Kernel vs reference on the *same* low-precision input: both upcast first, so
# they agree to float32 summation order whatever the input dtype.
SAME_INPUT_TOL = {"rtol": 1e-5, "atol": 1e-5}
# Low-precision input vs the float32 result on the unrounded data.
DTYPE_TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 3e-3}


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float, atol: float) -> None:
    scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
    torch.testing.assert_close(a.cpu(), b.cpu(), rtol=rtol, atol=atol * scale)


# ----------------------------------------------------------------------------
# SJLT
# ----------------------------------------------------------------------------


@triton_device
@pytest.mark.parametrize("scheme", ["hash", "block"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape", [(3, 37, 13, 0), (1, 100, 7, 5), (5, 33, 64, 1000), (2, 1, 1, 0), (4, 129, 31, 2**31 - 129)]
)
def test_sjlt_kernel_matches_reference(device, scheme, dtype, shape):
    b, d, k, offset = shape
    g = torch.Generator().manual_seed(b * 1000 + d)
    x32 = torch.randn(b, d, generator=g)
    x = x32.to(dtype).to(device)
    out = sjlt(x, k, 123, offset=offset, scheme=scheme, backend="triton")
    assert out.dtype == torch.float32 and out.shape == (b, k) and out.device == x.device
    _close(out, sjlt_reference(x, k, 123, offset=offset, scheme=scheme), **SAME_INPUT_TOL)
    _close(out, sjlt_reference(x32, k, 123, offset=offset, scheme=scheme), rtol=DTYPE_TOL[dtype], atol=DTYPE_TOL[dtype])


@triton_device
@pytest.mark.parametrize("splits", [1, 2, 3, 50])
def test_sjlt_block_kernel_splits(device, splits):
    x = torch.randn(3, 101, generator=torch.Generator().manual_seed(1)).to(device)
    out = sjlt(x, 9, 7, scheme="block", backend="triton", _splits=splits)
    _close(out, sjlt_reference(x, 9, 7, scheme="block"), **SAME_INPUT_TOL)


@triton_device
def test_sjlt_kernel_non_contiguous_and_empty(device):
    x = torch.randn(17, 6, generator=torch.Generator().manual_seed(2)).to(device).t()  # [6, 17], stride (1, 6)
    _close(sjlt(x, 5, 1, backend="triton"), sjlt_reference(x.contiguous(), 5, 1), **SAME_INPUT_TOL)
    assert sjlt(torch.zeros(0, 4, device=device), 3, backend="triton").shape == (0, 3)
    assert sjlt(torch.zeros(2, 0, device=device), 3, backend="triton").abs().sum() == 0


@triton_device
def test_sjlt_kernel_row_chunks(device, monkeypatch):
    import importlib

    sjlt_mod = importlib.import_module("dataprobes.attribution.kernels.sjlt")  # the module, not the function
    monkeypatch.setattr(sjlt_mod, "_ROWS_PER_LAUNCH", 2)
    x = torch.randn(5, 19, generator=torch.Generator().manual_seed(8)).to(device)
    for scheme in ("hash", "block"):
        _close(sjlt(x, 6, 2, scheme=scheme, backend="triton"), sjlt_reference(x, 6, 2, scheme=scheme), **SAME_INPUT_TOL)


def test_sjlt_hashes_are_stable_and_in_range():
    bucket, sign = sjlt_hashes(1000, 13, 5)
    assert bucket.min() >= 0 and bucket.max() < 13
    assert set(sign.unique().tolist()) == {-1.0, 1.0}
    # golden values: the hash is part of the on-disk format (stores record the seed)
    b0, s0 = sjlt_hashes(6, 1000, 0)
    assert b0.tolist() == GOLDEN_BUCKETS and s0.tolist() == GOLDEN_SIGNS
    # offset = slicing the coordinate numbering
    b1, s1 = sjlt_hashes(400, 13, 5, offset=600)
    assert torch.equal(b1, bucket[600:]) and torch.equal(s1, sign[600:])
    # block scheme: each full block of k coordinates is a permutation of the buckets
    bb, _ = sjlt_hashes(5 * 13, 13, 5, scheme="block")
    for m in range(5):
        assert sorted(bb[13 * m : 13 * (m + 1)].tolist()) == list(range(13))


GOLDEN_BUCKETS = [212, 366, 416, 365, 730, 176]
GOLDEN_SIGNS = [1.0, 1.0, 1.0, -1.0, 1.0, -1.0]


def test_sjlt_is_a_count_sketch_matrix():
    # out = x @ S with S[j, h(j)] = s(j), zero elsewhere
    x = torch.randn(4, 50, generator=torch.Generator().manual_seed(3), dtype=torch.float64).float()
    for scheme in ("hash", "block"):
        bucket, sign = sjlt_hashes(50, 11, 9, scheme=scheme)
        s = torch.zeros(50, 11)
        s[torch.arange(50), bucket] = sign
        _close(sjlt(x, 11, 9, scheme=scheme, backend="torch"), x @ s, 1e-6, 1e-6)


def test_sjlt_offset_pieces_sum_to_whole():
    x = torch.randn(3, 70, generator=torch.Generator().manual_seed(4))
    for scheme in ("hash", "block"):
        whole = sjlt(x, 8, 3, scheme=scheme, backend="torch")
        parts = sjlt(x[:, :25], 8, 3, scheme=scheme, backend="torch") + sjlt(
            x[:, 25:], 8, 3, offset=25, scheme=scheme, backend="torch"
        )
        _close(parts, whole, 1e-6, 1e-6)


def test_sjlt_block_is_isometry_when_d_le_k():
    x = torch.randn(3, 10, generator=torch.Generator().manual_seed(5))
    y = sjlt(x, 16, 1, scheme="block", backend="torch")
    _close(y @ y.T, x @ x.T, 1e-5, 1e-5)


def test_sjlt_argument_errors():
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="k must be >= 1"):
        sjlt(x, 0)
    with pytest.raises(TypeError, match="seed"):
        sjlt(x, 2, 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scheme"):
        sjlt(x, 2, scheme="dense")
    with pytest.raises(ValueError, match="2-D"):
        sjlt(x[0], 2)
    with pytest.raises(TypeError, match="dtype"):
        sjlt(x.double(), 2)
    with pytest.raises(ValueError, match="2\\*\\*31"):
        sjlt(x, 2, offset=2**31 - 2)
    with pytest.raises(ValueError, match="backend"):
        sjlt(x, 2, backend="cuda")
    if not K.INTERPRET:
        with pytest.raises(RuntimeError, match="backend='triton'"):
            sjlt(x, 2, backend="triton")


@settings(max_examples=20)
@given(
    st.integers(1, 24),
    st.integers(1, 12),
    st.sampled_from(["hash", "block"]),
    st.data(),
)
def test_sjlt_preserves_inner_products_in_expectation(d, k, scheme, data):
    """Over seeds, <Sx, Sy> has mean <x, y> and variance at most
    (||x||² ||y||² + <x, y>²) / k (pairwise collision probability 1/k and
    independent signs)."""
    vals = st.floats(-10, 10, allow_nan=False, allow_subnormal=False)
    x = torch.tensor(data.draw(st.lists(vals, min_size=d, max_size=d)), dtype=torch.float64)
    y = torch.tensor(data.draw(st.lists(vals, min_size=d, max_size=d)), dtype=torch.float64)
    xy = torch.stack([x, y]).float()
    n = 300
    z = torch.tensor(
        [float((lambda s: s[0] @ s[1])(sjlt(xy, k, seed, scheme=scheme, backend="torch"))) for seed in range(n)],
        dtype=torch.float64,
    )
    nx2, ny2, ip = float(x @ x), float(y @ y), float(x @ y)
    bound = (nx2 * ny2 + ip * ip) / k
    tiny = 1e-4 * (nx2 * ny2) ** 0.5 + 1e-9
    assert abs(float(z.mean()) - ip) <= 6 * math.sqrt(bound / n) + tiny
    assert float(z.var()) <= 2.0 * bound + tiny


def test_sjlt_collision_and_sign_statistics():
    # the two facts the variance bound rests on, measured over seeds
    d, k, n = 40, 7, 2000
    same = torch.zeros(d, d)
    sgn = torch.zeros(d, d)
    for seed in range(n):
        b, s = sjlt_hashes(d, k, seed)
        same += (b[:, None] == b[None, :]).float()
        sgn += s[:, None] * s[None, :]
    off = ~torch.eye(d, dtype=torch.bool)
    p = same[off] / n
    assert abs(float(p.mean()) - 1 / k) < 0.005
    assert float((p - 1 / k).abs().max()) < 5 * math.sqrt((1 / k) * (1 - 1 / k) / n)
    assert float((sgn[off] / n).abs().max()) < 5 / math.sqrt(n)


# ----------------------------------------------------------------------------
# Factored projection
# ----------------------------------------------------------------------------

FACTORED_SHAPES = [
    # B, T, d_in, d_out, k_in, k_out, mask, bias, splits
    (3, 5, 37, 13, 7, 5, True, True, None),
    (2, 70, 20, 45, 17, 3, False, False, 2),
    (1, 1, 3, 2, 1, 1, True, False, None),
    (4, 3, 70, 9, 65, 2, False, True, None),
]


@triton_device
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", FACTORED_SHAPES)
def test_factored_kernel_matches_reference(device, dtype, shape):
    b, t, d_in, d_out, k_in, k_out, with_mask, with_bias, splits = shape
    gen = torch.Generator().manual_seed(d_in * 100 + d_out)
    x32 = torch.randn(b, t, d_in, generator=gen)
    g32 = torch.randn(b, t, d_out, generator=gen)
    p_in = projection_matrix(d_in, k_in, 1, device=device)
    p_out = projection_matrix(d_out, k_out, 2, device=device, kind="rademacher")
    mask = (torch.rand(b, t, generator=gen) > 0.3).to(device) if with_mask else None
    xb = torch.randn(k_in, generator=gen).to(device) if with_bias else None
    x, g = x32.to(dtype).to(device), g32.to(dtype).to(device)
    out = factored_project(x, g, p_in, p_out, mask, x_bias=xb, backend="triton", input_precision="ieee", _splits=splits)
    assert out.shape == (b, k_out * k_in) and out.dtype == torch.float32
    _close(out, factored_reference(x, g, p_in, p_out, mask, x_bias=xb), 1e-5, 2e-5)
    ref32 = factored_reference(x32.to(device), g32.to(device), p_in, p_out, mask, x_bias=xb)
    _close(out, ref32, DTYPE_TOL[dtype], 2 * DTYPE_TOL[dtype])
    # tensor-core precisions (exact fp32 under the interpreter); on a GPU tf32
    # rounds operands to a 10-bit mantissa, tf32x3 recovers about fp32
    for prec, tol in (("tf32", 5e-3), ("tf32x3", 1e-4)):
        fast = factored_project(
            x, g, p_in, p_out, mask, x_bias=xb, backend="triton", input_precision=prec, _splits=splits
        )
        _close(fast, factored_reference(x, g, p_in, p_out, mask, x_bias=xb), tol, 2 * tol)


@triton_device
def test_factored_kernel_2d_inputs_and_strides(device):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(5, 11, generator=gen).to(device)
    g = torch.randn(9, 5, generator=gen).to(device).t()  # non-contiguous [5, 9]
    p_in, p_out = projection_matrix(11, 4, 3, device=device), projection_matrix(9, 6, 4, device=device)
    out = factored_project(x, g, p_in, p_out, backend="triton", input_precision="ieee")
    _close(out, factored_reference(x, g, p_in, p_out), 1e-5, 1e-5)
    # T = 1: the per-example gradient is the outer product g xᵀ
    exact = torch.einsum("bo,bi->boi", g, x)
    _close(out, (p_out.T @ exact @ p_in).reshape(5, -1), 1e-5, 1e-5)
    assert factored_project(x[:0], g[:0], p_in, p_out, backend="triton").shape == (0, 24)


@settings(max_examples=15)
@given(
    st.integers(1, 3),
    st.integers(1, 5),
    st.integers(1, 9),
    st.integers(1, 7),
    st.integers(1, 5),
    st.integers(1, 5),
    st.booleans(),
    st.integers(0, 2**32),
)
def test_factored_equals_projected_exact_gradient(b, t, d_in, d_out, k_in, k_out, with_mask, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, d_in, generator=gen, dtype=torch.float64)
    g = torch.randn(b, t, d_out, generator=gen, dtype=torch.float64)
    m = (torch.rand(b, t, generator=gen) > 0.4).double() if with_mask else torch.ones(b, t, dtype=torch.float64)
    p_in = projection_matrix(d_in, k_in, seed)
    p_out = projection_matrix(d_out, k_out, seed + 1)
    # the full per-example gradient, explicitly
    full = torch.einsum("bt,bto,bti->boi", m, g, x)  # [B, d_out, d_in]
    want = (p_out.double().T @ full @ p_in.double()).reshape(b, -1).float()
    backends = ["torch"] + (["triton"] if TRITON_DEVICES else [])
    dev = TRITON_DEVICES[0] if TRITON_DEVICES else "cpu"
    for backend in backends:
        got = factored_project(
            x.float().to(dev),
            g.float().to(dev),
            p_in.to(dev),
            p_out.to(dev),
            m.float().to(dev) if with_mask else None,
            backend=backend,
        )
        _close(got, want, 1e-4, 1e-5)


def test_projection_matrix_is_deterministic_and_scaled():
    a = projection_matrix(300, 50, 11)
    assert torch.equal(a, projection_matrix(300, 50, 11))
    assert not torch.equal(a, projection_matrix(300, 50, 12))
    assert abs(float((a * a).sum(1).mean()) - 1.0) < 0.05  # E[P Pᵀ] = I
    r = projection_matrix(30, 4, 0, kind="rademacher")
    torch.testing.assert_close(r.abs(), torch.full_like(r, 0.5))
    assert projection_matrix(3, 2, 0, dtype=torch.bfloat16).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="kind"):
        projection_matrix(3, 2, 0, kind="sparse")
    o = projection_matrix(3, 2, 0, dtype=torch.bfloat16, kind="orthogonal")
    assert o.dtype == torch.bfloat16 and o.shape == (3, 2)


def test_gaussian_projection_is_the_seeded_normal_draw():
    # the stream stores captured with projection="gaussian" were written with: unchanged
    want = torch.randn(13, 5, generator=torch.Generator().manual_seed(21)) / math.sqrt(5)
    torch.testing.assert_close(projection_matrix(13, 5, 21, kind="gaussian"), want, rtol=0, atol=1e-7)
    assert torch.equal(projection_matrix(13, 5, 21), projection_matrix(13, 5, 21, kind="gaussian"))


@settings(max_examples=30)
@given(st.integers(1, 48), st.integers(1, 48), st.integers(0, 2**64 - 1))
def test_orthogonal_projection_is_a_scaled_partial_isometry(d, k, seed):
    p = projection_matrix(d, k, seed, kind="orthogonal")
    assert p.shape == (d, k) and p.dtype == torch.float32
    assert torch.equal(p, projection_matrix(d, k, seed, kind="orthogonal"))  # deterministic per seed
    p64 = p.double()
    if k >= d:  # orthonormal rows: inner products preserved exactly
        torch.testing.assert_close(p64 @ p64.T, torch.eye(d, dtype=torch.float64), rtol=0, atol=1e-6)
    else:  # orthonormal columns scaled by sqrt(d/k)
        eye = torch.eye(k, dtype=torch.float64)
        torch.testing.assert_close(p64.T @ p64, (d / k) * eye, rtol=0, atol=1e-6 * d / k)
    assert projection_matrix(d, k, seed, dtype=torch.float64, kind="orthogonal").dtype == torch.float64


def test_orthogonal_projection_is_unbiased_and_haar():
    # E[P P^T] = I_d below the dimension too (averaged over seeds), and the
    # sign fix makes the law invariant under reflections: E[P] = 0
    d, k, n = 6, 2, 600
    threads = torch.get_num_threads()
    ps = torch.stack([projection_matrix(d, k, s, dtype=torch.float64, kind="orthogonal") for s in range(n)])
    mean_ppt = (ps @ ps.transpose(1, 2)).mean(0)
    assert float((mean_ppt - torch.eye(d, dtype=torch.float64)).abs().max()) < 0.15
    assert float(ps.mean(0).abs().max()) < 4 * math.sqrt(d / k / d / n)
    assert not torch.equal(ps[0], ps[1])
    assert torch.get_num_threads() == threads  # the one-thread QR restores torch's setting


def test_factored_argument_errors():
    x, g = torch.randn(2, 3, 4), torch.randn(2, 3, 5)
    p_in, p_out = torch.randn(4, 2), torch.randn(5, 2)
    with pytest.raises(ValueError, match="leading"):
        factored_project(x, g[:, :2], p_in, p_out)
    with pytest.raises(ValueError, match="P_in has 5 rows"):
        factored_project(x, g, p_out, p_out)
    with pytest.raises(ValueError, match="mask must have shape"):
        factored_project(x, g, p_in, p_out, torch.ones(2, 4))
    with pytest.raises(ValueError, match="x_bias"):
        factored_project(x, g, p_in, p_out, x_bias=torch.ones(3))
    with pytest.raises(ValueError, match="input_precision"):
        factored_project(x, g, p_in, p_out, input_precision="bf16")


# ----------------------------------------------------------------------------
# int8 quantisation
# ----------------------------------------------------------------------------


@triton_device
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("shape", [(3, 37), (1, 1), (2, 5000), (5, 13)])
def test_quant_kernel_matches_reference(device, dtype, normalize, shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(shape[1])).to(dtype)
    if shape[0] > 1:
        x[1] = 0  # a zero row: zero codes and scale
    x = x.to(device)
    q, s = quantize_int8(x, normalize, backend="triton")
    qr, sr = quantize_int8_reference(x, normalize)
    assert q.dtype == torch.int8 and s.dtype == torch.float32 and q.shape == shape and s.shape == (shape[0],)
    # identical float32 arithmetic: codes equal, except (on a GPU) a possible tie
    assert int((q.int() - qr.int()).abs().max()) <= (0 if device == "cpu" else 1)
    _close(s, sr, 1e-6, 0.0)
    if shape[0] > 1:
        assert s[1] == 0 and q[1].abs().sum() == 0


@settings(max_examples=25)
@given(
    st.integers(1, 4),
    st.integers(1, 40),
    st.booleans(),
    st.sampled_from(["torch", "triton"]),
    st.data(),
)
def test_quant_error_bound(b, k, normalize, backend, data):
    if backend == "triton" and not TRITON_DEVICES:
        backend = "torch"
    dev = TRITON_DEVICES[0] if backend == "triton" else "cpu"
    vals = st.one_of(
        st.just(0.0), st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False).filter(lambda v: abs(v) > 1e-20)
    )
    x = torch.tensor(
        data.draw(st.lists(st.lists(vals, min_size=k, max_size=k), min_size=b, max_size=b)), dtype=torch.float32
    )
    q, s = quantize_int8(x.to(dev), normalize, backend=backend)
    q, s = q.cpu(), s.cpu()
    xd = x.double()
    norm = xd.norm(dim=1, keepdim=True)
    y = torch.where(norm > 0, xd / torch.where(norm > 0, norm, 1.0), 0.0) if normalize else xd
    err = (y - q.double() * s.double()[:, None]).abs()
    maxabs = y.abs().amax(dim=1, keepdim=True)
    assert bool((err <= s.double()[:, None] / 2 + 4e-7 * maxabs).all())
    assert bool((q.abs() <= 127).all())
    # the row maximum is coded as ±127
    nz = maxabs[:, 0] > 0
    assert bool((q.abs().amax(dim=1)[nz] == 127).all())
    torch.testing.assert_close(dequantize_int8(q, s), q.float() * s[:, None])


def test_quant_argument_errors():
    with pytest.raises(ValueError, match="2-D"):
        quantize_int8(torch.randn(3))
    with pytest.raises(TypeError, match="dtype"):
        quantize_int8(torch.randn(2, 3).double())
    with pytest.raises(ValueError, match="rows"):
        dequantize_int8(torch.zeros(2, 3, dtype=torch.int8), torch.ones(3))
    q, s = quantize_int8(torch.zeros(0, 5))
    assert q.shape == (0, 5) and s.shape == (0,)
