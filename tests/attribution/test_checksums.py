"""Reads verify what they read: per-block xxh3_64 checksums recorded at write
time, checked on every read; format-version-1 stores keep reading."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dataprobes.attribution import CorruptShardError, GradientStore, StoreWriter, score  # noqa: E402
from dataprobes.attribution.store import CHECK_ROWS, FORMAT_VERSION, dequantize_int8, quantize_int8  # noqa: E402

V1 = Path(__file__).parent / "data" / "store_v1"
CONFIG = {"k": 8, "seed": 9}


def _store(path: Path, n: int = 3000, dim: int = 8, shard_rows: int = 2500, dtype: str = "int8") -> np.ndarray:
    x = np.random.default_rng(1).standard_normal((n, dim)).astype(np.float32)
    with StoreWriter(path, dim, dtype, CONFIG, shard_rows=shard_rows) as w:
        w.append(np.arange(n), x)
    return x


def _flip(path: Path, row: int, col: int = 0, byte: int = 0) -> None:
    """Flip one bit of a stored row (inside the array payload, not the .npy header)."""
    arr = np.load(path, mmap_mode="r")
    width = arr.shape[1] if arr.ndim == 2 else 1
    offset = arr.offset + (row * width + col) * arr.itemsize + byte
    del arr
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))


def test_manifest_records_block_checksums(tmp_path):
    _store(tmp_path / "s")
    part = json.loads((tmp_path / "s" / "manifest.rank00000.json").read_text())
    assert part["format_version"] == FORMAT_VERSION == 2
    first, last = part["shards"]
    assert first["check_rows"] == CHECK_ROWS and first["rows"] == 2500 and last["rows"] == 500
    for entry in part["shards"]:
        for role in ("data", "scales", "ids"):
            sums = entry["files"][role]["xxh3_64"]
            assert len(sums) == -(-entry["rows"] // CHECK_ROWS) and all(len(h) == 16 for h in sums)
            assert "sha256" in entry["files"][role]


@pytest.mark.parametrize("dtype", ["int8", "float16"])
def test_flipped_byte_is_caught_by_score(tmp_path, dtype):
    x = _store(tmp_path / "s", dtype=dtype)
    q = x[:2]
    good = score(tmp_path / "s", q, "ip", top_k=5, device="cpu", query_config=CONFIG)
    _flip(tmp_path / "s" / f"rank00000-shard000001.{dtype}.npy", row=300, col=3)
    with pytest.raises(
        CorruptShardError, match=r"rank00000-shard000001\.\w+\.npy .*rows 0-499 of the shard \(store rows 2500-2999\)"
    ):
        score(tmp_path / "s", q, "ip", top_k=5, device="cpu", query_config=CONFIG)
    store = GradientStore(tmp_path / "s")
    with pytest.raises(CorruptShardError, match="shard000001"):
        store.read(2400, 2600)
    with pytest.raises(CorruptShardError, match="shard000001"):
        store.lookup([2800])
    with pytest.raises(CorruptShardError, match="shard000001"):
        list(store.iter_blocks(1000))
    with pytest.raises(CorruptShardError, match="shard000001"):
        score(store, q, "influence", top_k=5, device="cpu", query_config=CONFIG)
    # rows outside the corrupt block still read
    np.testing.assert_array_equal(store.read(0, 2500)[0], np.arange(2500))
    store.lookup([0, 2499])
    # the opt-out for trusted media: per call, or for the whole store
    res = score(tmp_path / "s", q, "ip", top_k=5, device="cpu", query_config=CONFIG, verify_reads=False)
    assert res.ids.shape == good.ids.shape
    unchecked = GradientStore(tmp_path / "s", verify_reads=False)
    unchecked.read(2400, 2600)
    score(unchecked, q, "ip", top_k=5, device="cpu", query_config=CONFIG)
    with pytest.raises(CorruptShardError, match="sha256"):
        unchecked.verify()


def test_flipped_scale_and_id_are_caught(tmp_path):
    _store(tmp_path / "s")
    shutil.copytree(tmp_path / "s", tmp_path / "t")
    _flip(tmp_path / "s" / "rank00000-shard000000.scales.npy", row=1500)
    with pytest.raises(CorruptShardError, match=r"shard000000\.scales\.npy .*rows 1024-2047 of the shard"):
        GradientStore(tmp_path / "s").read(1500, 1501)
    _flip(tmp_path / "t" / "rank00000-shard000000.ids.npy", row=7, byte=7)  # a new, unique id
    with pytest.raises(CorruptShardError, match=r"shard000000\.ids\.npy .*rows 0-1023"):
        GradientStore(tmp_path / "t")
    GradientStore(tmp_path / "t", verify_reads=False)


def test_verify_reads_must_be_bool(tmp_path):
    _store(tmp_path / "s", n=10)
    with pytest.raises(TypeError, match="verify_reads"):
        GradientStore(tmp_path / "s", verify_reads="yes")  # type: ignore[arg-type]


def test_version_1_store_still_reads(tmp_path):
    # Written by the format-version-1 writer (no block checksums): 40 rows of
    # x = default_rng(9).standard_normal((40, 8)), ids 100..139, shards of 16.
    store = GradientStore(V1)
    assert store.format_version == 1 and len(store) == 40 and store.num_shards == 3
    x = np.random.default_rng(9).standard_normal((40, 8)).astype(np.float32)
    ids, rows = store.read()
    np.testing.assert_array_equal(ids, np.arange(100, 140))
    np.testing.assert_array_equal(rows, dequantize_int8(*quantize_int8(x)))
    np.testing.assert_array_equal(store.lookup([120]), rows[20:21])
    top = score(store, x[:3], "cosine", top_k=1, device="cpu", query_config=store.config)
    np.testing.assert_array_equal(top.ids[:, 0], [100, 101, 102])
    assert store.verify() == 3
    # appending to a version-1 store is refused with a clear message
    shutil.copytree(V1, tmp_path / "v1")
    with pytest.raises(ValueError, match="format_version 1.*version-1 stores are read-only"):
        StoreWriter(tmp_path / "v1", 8, "int8", store.config, shard_rows=16)


def test_lookup_verify_argument(tmp_path):
    x = _store(tmp_path / "s")
    _flip(tmp_path / "s" / "rank00000-shard000001.int8.npy", row=300, col=3)
    store = GradientStore(tmp_path / "s")
    with pytest.raises(CorruptShardError):
        store.lookup([2800])
    got = store.lookup([2800, 5], verify=False)  # unchecked read: the flipped row comes back as stored
    assert got.shape == (2, 8)
    q, s = quantize_int8(x[5:6])
    np.testing.assert_array_equal(got[1:], dequantize_int8(q, s))
    with pytest.raises(CorruptShardError):
        GradientStore(tmp_path / "s", verify_reads=False).lookup([2800], verify=True)
