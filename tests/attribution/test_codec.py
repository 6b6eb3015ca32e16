"""The one int8 row codec: the store's numpy encoder, the torch reference and
the Triton kernel produce the same bytes (one rounding rule: half to even),
and the store keeps the bytes it wrote before the codec was shared."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dataprobes.attribution import kernels as K  # noqa: E402
from dataprobes.attribution.kernels import dequantize_int8 as dequantize_torch  # noqa: E402
from dataprobes.attribution.kernels import quantize_int8, quantize_int8_reference  # noqa: E402
from dataprobes.attribution.store import GradientStore, StoreWriter, dequantize_int8  # noqa: E402
from dataprobes.attribution.store import quantize_int8 as quantize_store  # noqa: E402

TIES = np.array(
    [
        [127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, 126.5, -126.5, 0.0],  # scale 1: exact halves
        [254.0, 1.0, 3.0, 5.0, -1.0, -3.0, 7.0, 9.0, 11.0, -253.0, 0.0],  # scale 2: halves after the division
    ],
    np.float32,
)
HALF_EVEN = np.array(
    [[127, 0, 2, 2, 0, -2, -2, 4, 126, -126, 0], [127, 0, 2, 2, 0, -2, 4, 4, 6, -126, 0]],
    np.int8,
)


def _backends() -> list[str]:
    out = ["numpy", "torch"]
    if K.HAS_TRITON and (K.INTERPRET or torch.cuda.is_available()):  # CPU: the interpreter (tests/conftest.py)
        out.append("triton")
    return out


def _encode(backend: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if backend == "numpy":
        return quantize_store(x)
    if backend == "torch":
        q, s = quantize_int8_reference(torch.from_numpy(x))
    else:
        q, s = quantize_int8(torch.from_numpy(x).to("cpu" if K.INTERPRET else "cuda"), backend="triton")
    return q.cpu().numpy(), s.cpu().numpy()


@pytest.mark.parametrize("backend", _backends())
def test_ties_round_half_to_even(backend):
    q, s = _encode(backend, TIES)
    np.testing.assert_array_equal(s, np.array([1.0, 2.0], np.float32))
    np.testing.assert_array_equal(q, HALF_EVEN)


@pytest.mark.parametrize("backend", _backends())
def test_every_encoder_writes_the_same_bytes(backend):
    x = np.random.default_rng(3).standard_normal((64, 300)).astype(np.float32)
    x[5] = 0.0
    x[7, :10] = np.float32(127.0) * np.arange(10)  # many exact quotients
    ref_q, ref_s = quantize_store(x)
    q, s = _encode(backend, x)
    assert q.dtype == np.int8 and s.dtype == np.float32
    np.testing.assert_array_equal(q, ref_q)
    np.testing.assert_array_equal(s, ref_s)
    # a torch tensor given to the store encoder takes the same path
    tq, ts = quantize_store(torch.from_numpy(x).double())
    np.testing.assert_array_equal(tq, ref_q)
    np.testing.assert_array_equal(ts, ref_s)


def test_one_decoder():
    q, s = quantize_store(TIES)
    np.testing.assert_array_equal(dequantize_int8(q, s), q.astype(np.float32) * s[:, None])
    np.testing.assert_array_equal(
        dequantize_torch(torch.from_numpy(q), torch.from_numpy(s)).numpy(), dequantize_int8(q, s)
    )
    f = np.ones((2, 3), np.float32)
    out = dequantize_int8(f, np.array([2.0, 3.0], np.float32))
    assert f[0, 0] == 1.0 and out[1, 0] == 3.0  # never scales its input in place


def test_store_bytes_unchanged(tmp_path):
    # The shard bytes of an int8 store are those of the format-version-1 writer
    # (digest recorded before the codec was shared), whichever encoder wrote them.
    x = np.random.default_rng(0).standard_normal((50, 16)).astype(np.float32)
    for name, quantize in (("default", None), ("torch", quantize_int8_reference)):
        path = tmp_path / name
        with StoreWriter(path, 16, "int8", {"k": 16}, shard_rows=50, quantize=quantize) as w:
            w.append(np.arange(50), torch.from_numpy(x) if quantize else x)
        digest = hashlib.sha256((path / "rank00000-shard000000.int8.npy").read_bytes()).hexdigest()
        assert digest == V1_DATA_SHA256, name
        store = GradientStore(path)
        np.testing.assert_array_equal(store.read()[1], dequantize_int8(*quantize_store(x)))


V1_DATA_SHA256 = "2203119be2218ef1730b2a966a1e09123826eb560e3757d2e08b92dc7aa3aa32"
