"""The sharded gradient store: round trips, resume after SIGKILL, atomicity,
checksums, configuration checks, multi-rank merging."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from dataprobes.attribution import CorruptShardError, GradientStore, StoreWriter  # noqa: E402
from dataprobes.attribution.store import dequantize_int8, quantize_int8  # noqa: E402

CONFIG = {"projection": {"kind": "sjlt", "seed": 3}, "k": 16, "model": "tiny-gpt", "layers": ["h.0.attn", "h.1.mlp"]}


def _data(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    x *= np.exp(np.random.default_rng(seed + 1).uniform(-6, 6, size=(n, 1))).astype(np.float32)  # varied row scales
    return x


def _expected(x: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "int8":
        return dequantize_int8(*quantize_int8(x))
    return x.astype(np.float16).astype(np.float32)


def _write(
    path: Path, x: np.ndarray, ids: np.ndarray, dtype: str = "int8", shard_rows: int = 64, batch: int = 10, **kw
) -> None:
    with StoreWriter(path, x.shape[1], dtype, CONFIG, shard_rows=shard_rows, **kw) as w:
        for i in range(0, len(ids), batch):
            w.append(ids[i : i + batch], x[i : i + batch])


# ----------------------------------------------------------------------------
# round trips


@given(
    n=st.integers(0, 300),
    dim=st.integers(1, 33),
    shard_rows=st.integers(5, 120),
    batch=st.integers(1, 200),
    dtype=st.sampled_from(["int8", "float16"]),
)
def test_round_trip(n: int, dim: int, shard_rows: int, batch: int, dtype: str) -> None:
    x = _data(n, dim, seed=n + dim)
    ids = np.random.default_rng(n).permutation(10 * n + 1)[:n].astype(np.int64) - 5 * n
    with tempfile.TemporaryDirectory() as d:
        _write(Path(d), x, ids, dtype, shard_rows, batch)
        s = GradientStore(d)
        assert len(s) == n and s.dim == dim and s.dtype == dtype and s.config == CONFIG
        assert s.num_shards == -(-n // shard_rows)
        got_ids, rows = s.read()
        np.testing.assert_array_equal(got_ids, ids)
        if dtype == "int8":
            scale = np.abs(x).max(axis=1, initial=0.0) / 127
            bound = scale[:, None] / 2 * (1 + 1e-6) + 1e-6 * np.abs(x).max(axis=1, initial=0.0)[:, None]
            assert (np.abs(rows - x) <= bound).all()
        else:
            np.testing.assert_array_equal(rows, x.astype(np.float16).astype(np.float32))
        np.testing.assert_array_equal(rows, _expected(x, dtype))
        assert s.verify() == s.num_shards
        blocks = list(s.iter_blocks(max(1, shard_rows // 2 + 3)))
        if n:
            np.testing.assert_array_equal(np.concatenate([b[0] for b in blocks]), ids)
            np.testing.assert_array_equal(np.concatenate([b[1] for b in blocks]), rows)
            perm = np.random.default_rng(1).permutation(n)
            np.testing.assert_array_equal(s.lookup(ids[perm]), rows[perm])
        else:
            assert blocks == []


def test_iter_blocks_tensor_and_torch_input(tmp_path: Path) -> None:
    x = _data(500, 24)
    ids = np.arange(500)
    _write(tmp_path / "np", x, ids, shard_rows=128, batch=50)
    with StoreWriter(tmp_path / "t", 24, "int8", CONFIG, shard_rows=128) as w:
        for i in range(0, 500, 50):
            w.append(torch.arange(i, i + 50), torch.from_numpy(x[i : i + 50]).double())
    a, b = GradientStore(tmp_path / "np"), GradientStore(tmp_path / "t")
    np.testing.assert_array_equal(a.read()[1], b.read()[1])  # torch and numpy quantisers agree bit for bit
    blocks = list(b.iter_blocks(200, as_tensor=True))
    assert [blk[1].shape[0] for blk in blocks] == [200, 200, 100]
    assert all(isinstance(blk[1], torch.Tensor) and blk[1].dtype == torch.float32 for blk in blocks)
    np.testing.assert_array_equal(torch.cat([blk[1] for blk in blocks]).numpy(), a.read()[1])


def test_quantize_hook(tmp_path: Path) -> None:
    calls = []

    def quant(g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(type(g))
        scale = torch.full((g.shape[0],), 0.5)
        return torch.clamp(torch.round(g / 0.5), -127, 127).to(torch.int8), scale

    x = torch.tensor([[1.0, -2.0, 0.26], [0.0, 3.0, 100.0]])
    with StoreWriter(tmp_path, 3, config=CONFIG, quantize=quant) as w:
        w.append([5, 6], x)
    assert calls == [torch.Tensor]
    np.testing.assert_array_equal(GradientStore(tmp_path).read()[1], [[1.0, -2.0, 0.5], [0.0, 3.0, 63.5]])

    with StoreWriter(tmp_path / "bad", 3, config=CONFIG, quantize=lambda g: (g, g)) as w:
        with pytest.raises(TypeError, match="quantize returned q"):
            w.append([1, 2], x)


def test_manifest_contents(tmp_path: Path) -> None:
    _write(tmp_path, _data(130, 16), np.arange(130), shard_rows=64)
    header = json.loads((tmp_path / "manifest.json").read_text())
    assert (
        header["format_version"] == 2
        and header["dim"] == 16
        and header["dtype"] == "int8"
        and header["config"] == CONFIG
    )
    part = json.loads((tmp_path / "manifest.rank00000.json").read_text())
    assert [e["rows"] for e in part["shards"]] == [64, 64, 2]
    assert part["shards"][2]["files"]["data"]["name"] == "rank00000-shard000002.int8.npy"
    assert set(part["shards"][0]["files"]) == {"data", "ids", "scales"}
    assert all(len(f["sha256"]) == 64 for e in part["shards"] for f in e["files"].values())
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]


# ----------------------------------------------------------------------------
# resume, duplicates, configuration checks


def test_resume_after_close_and_duplicates(tmp_path: Path) -> None:
    x = _data(300, 16)
    ids = np.arange(300) * 7
    with StoreWriter(tmp_path, 16, "float16", CONFIG, shard_rows=50) as w:
        w.append(ids[:120], x[:120])
        assert w.num_rows == 100 and w.num_pending == 20
        np.testing.assert_array_equal(w.completed_ids(), ids[:100])
    with StoreWriter(tmp_path, 16, "float16", CONFIG, shard_rows=64) as w:
        assert w.num_rows == 120 and w.num_shards == 3
        mask = w.contains(ids[100:200])
        np.testing.assert_array_equal(mask, np.arange(100, 200) < 120)
        with pytest.raises(ValueError, match="already in the store.*contains"):
            w.append(ids[110:130], x[110:130])
        w.append(ids[120:200], x[120:200])
        with pytest.raises(ValueError, match="already in the store"):  # buffered ids count too
            w.append(ids[199:201], x[199:201])
        with pytest.raises(ValueError, match="duplicate example ids"):
            w.append([5000, 5000], x[:2])
        w.append(ids[200:], x[200:])
    s = GradientStore(tmp_path)
    np.testing.assert_array_equal(s.ids, ids)
    np.testing.assert_array_equal(s.read()[1], _expected(x, "float16"))


def test_config_mismatch_names_keys(tmp_path: Path) -> None:
    _write(tmp_path, _data(10, 16), np.arange(10))
    other = {**CONFIG, "projection": {"kind": "sjlt", "seed": 4}, "extra": 1}
    with pytest.raises(ValueError, match=r"config differs.*extra.*projection\.seed"):
        StoreWriter(tmp_path, 16, "int8", other)
    with pytest.raises(ValueError, match="dim=8 does not match"):
        StoreWriter(tmp_path, 8, "int8", CONFIG)
    with pytest.raises(ValueError, match="dtype='float16' does not match"):
        StoreWriter(tmp_path, 16, "float16", CONFIG)
    with pytest.raises(ValueError, match=r"query_config differs.*k \(8 vs 16\)"):
        GradientStore(tmp_path).check_compatible({**CONFIG, "k": 8})
    GradientStore(tmp_path).check_compatible(dict(CONFIG))
    with pytest.raises(TypeError, match="JSON-serialisable"):
        StoreWriter(tmp_path / "x", 16, "int8", {"f": object()})


def test_bad_appends(tmp_path: Path) -> None:
    with StoreWriter(tmp_path, 4, "int8", CONFIG) as w:
        with pytest.raises(ValueError, match=r"grads must have shape \[B, dim=4\]"):
            w.append([1], np.zeros((1, 5)))
        with pytest.raises(ValueError, match="ids has 2 entries but grads has 1 rows"):
            w.append([1, 2], np.zeros((1, 4)))
        with pytest.raises(TypeError, match="ids must have an integer dtype"):
            w.append([1.5], np.zeros((1, 4)))
        with pytest.raises(ValueError, match="NaN or infinite"):
            w.append([1], np.array([[0, np.nan, 0, 0]]))
        with pytest.raises(ValueError, match="NaN or infinite"):
            w.append(torch.tensor([1]), torch.tensor([[0, float("inf"), 0, 0]]))
        w.append([1], np.zeros((1, 4)))  # zero rows are fine (scale 0)
    with StoreWriter(tmp_path / "h", 4, "float16", CONFIG) as w:
        with pytest.raises(ValueError, match="overflows float16"):
            w.append([1], np.full((1, 4), 1e6))
    with pytest.raises(ValueError, match="dtype must be one of"):
        StoreWriter(tmp_path / "y", 4, "int4", CONFIG)
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        StoreWriter(tmp_path / "y", 0, "int8", CONFIG)
    np.testing.assert_array_equal(GradientStore(tmp_path).read()[1], np.zeros((1, 4)))


def test_one_writer_per_rank(tmp_path: Path) -> None:
    w = StoreWriter(tmp_path, 4, "int8", CONFIG)
    with pytest.raises(RuntimeError, match="another StoreWriter holds rank 0"):
        StoreWriter(tmp_path, 4, "int8", CONFIG)
    StoreWriter(tmp_path, 4, "int8", CONFIG, rank=1).close()
    w.close()
    StoreWriter(tmp_path, 4, "int8", CONFIG).close()


def test_empty_store(tmp_path: Path) -> None:
    StoreWriter(tmp_path, 8, "int8", CONFIG).close()
    s = GradientStore(tmp_path)
    assert len(s) == 0 and s.ids.shape == (0,) and s.verify() == 0 and list(s.iter_blocks(4)) == []
    with pytest.raises(FileNotFoundError, match="not a gradient store"):
        GradientStore(tmp_path / "nope")


# ----------------------------------------------------------------------------
# multi-rank (explicit ranks in one process; tests/attribution/test_distributed.py
# runs real torch.distributed ranks)


def test_ranks_merge_in_rank_order(tmp_path: Path) -> None:
    x = _data(200, 16)
    ids = np.arange(200)
    writers = [StoreWriter(tmp_path, 16, "int8", CONFIG, rank=r, shard_rows=16) for r in (2, 0, 1)]
    for w in writers:  # interleaved appends: each rank takes ids i % 3 == rank
        sel = ids % 3 == w.rank
        for i in range(0, int(sel.sum()), 5):
            w.append(ids[sel][i : i + 5], x[sel][i : i + 5])
    for w in writers:
        w.close()
    assert sorted(p for p in os.listdir(tmp_path) if p.startswith("manifest")) == [
        "manifest.json",
        "manifest.rank00000.json",
        "manifest.rank00001.json",
        "manifest.rank00002.json",
    ]
    s = GradientStore(tmp_path)
    assert s.ranks == [0, 1, 2]
    np.testing.assert_array_equal(s.ids, np.concatenate([ids[ids % 3 == r] for r in range(3)]))
    np.testing.assert_array_equal(s.lookup(ids), _expected(x, "int8"))
    assert s.verify() == s.num_shards
    assert s.manifest["num_rows"] == 200 and len(s.manifest["shards"]) == s.num_shards

    with StoreWriter(tmp_path, 16, "int8", CONFIG, rank=3) as w:
        w.append([0], x[:1])  # id 0 already belongs to rank 0
    with pytest.raises(ValueError, match="example id 0 is stored more than once"):
        GradientStore(tmp_path)


# ----------------------------------------------------------------------------
# corruption and atomic visibility


def test_corruption_detected(tmp_path: Path) -> None:
    _write(tmp_path, _data(200, 16), np.arange(200), shard_rows=64)
    s = GradientStore(tmp_path)
    target = tmp_path / "rank00000-shard000001.int8.npy"
    raw = bytearray(target.read_bytes())
    raw[200] ^= 0x01  # a data byte, past the .npy header
    target.write_bytes(bytes(raw))
    with pytest.raises(
        CorruptShardError, match=r"rank00000-shard000001\.int8\.npy \(rank 0, shard 1, data\) is corrupt"
    ):
        s.verify()
    with pytest.raises(CorruptShardError, match="shard000001"):
        GradientStore(tmp_path).verify()
    raw[200] ^= 0x01
    target.write_bytes(bytes(raw))
    assert GradientStore(tmp_path).verify() == 4

    scales = tmp_path / "rank00000-shard000003.scales.npy"
    raw = bytearray(scales.read_bytes())
    raw[-1] ^= 0x40
    scales.write_bytes(bytes(raw))
    with pytest.raises(CorruptShardError, match=r"shard000003\.scales\.npy .*scales\) is corrupt"):
        GradientStore(tmp_path).verify()

    ids_file = tmp_path / "rank00000-shard000000.ids.npy"
    ids_file.write_bytes(ids_file.read_bytes()[:-8])  # truncated
    with pytest.raises(CorruptShardError, match=r"shard000000\.ids\.npy"):
        GradientStore(tmp_path)


@pytest.mark.filterwarnings("error::UserWarning")
def test_shards_listed_after_the_reader_read_the_parts_are_not_unlisted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that read a manifest part before the writer listed (and closed on)
    more shards must not call those shards unlisted (seen on a loaded machine)."""
    from dataprobes.attribution.store import reader as reader_mod

    x = _data(400, 16)
    with StoreWriter(tmp_path, 16, "int8", CONFIG, shard_rows=100) as w:
        w.append(np.arange(400), x)
    real = reader_mod._read_json
    stale = True

    def read_json(path: Path) -> dict:
        nonlocal stale
        obj = real(path)
        if stale and Path(path).name.startswith("manifest.rank"):
            stale = False
            obj = {**obj, "shards": obj["shards"][:1]}  # the part as it was after one shard
        return obj

    monkeypatch.setattr(reader_mod, "_read_json", read_json)
    s = GradientStore(tmp_path)  # would warn that shards 2 and 3 are unlisted
    assert len(s) == 100
    monkeypatch.setattr(reader_mod, "_read_json", real)
    assert len(GradientStore(tmp_path)) == 400


@pytest.mark.filterwarnings("error::UserWarning")  # a live writer's newest shard is not "unlisted"
def test_readers_never_see_partial_shards(tmp_path: Path) -> None:
    x = _data(3000, 64)
    seen: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                if (tmp_path / "manifest.json").exists():
                    s = GradientStore(tmp_path)
                    s.verify()
                    assert len(s) % 100 == 0
                    np.testing.assert_array_equal(s.ids, np.arange(len(s)))
                    seen.append(len(s))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return

    t = threading.Thread(target=reader)
    t.start()
    try:
        with StoreWriter(tmp_path, 64, "int8", CONFIG, shard_rows=100) as w:
            for i in range(0, 3000, 30):
                w.append(np.arange(i, i + 30), x[i : i + 30])
                time.sleep(0.001)
    finally:
        done.set()
        t.join()
    assert not errors, errors[0]
    assert len(set(seen)) > 1  # the reader did observe a growing store


# ----------------------------------------------------------------------------
# resume after SIGKILL (subprocess)

_CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from dataprobes.attribution import store as S

    path, dtype, stage, stop_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    N, DIM, SHARD, BATCH = 1000, 16, 50, 7
    CONFIG = {config!r}
    x = np.random.default_rng(0).standard_normal((N, DIM)).astype(np.float32)
    done = [0]

    def hook(s):
        if s == "manifest-written":
            done[0] += 1
            print("SHARD", done[0], flush=True)
        if s == stage and done[0] == stop_at + (s == "manifest-written"):
            print("STOPPED", flush=True)
            time.sleep(600)

    S._TEST_HOOK = hook
    with S.StoreWriter(path, DIM, dtype, CONFIG, shard_rows=SHARD) as w:
        for i in range(0, N, BATCH):
            ids = np.arange(i, min(i + BATCH, N))
            w.append(ids, x[ids])
            if stage == "never":
                time.sleep(0.002)
    """
).format(config=CONFIG)


def _run_child(path: Path, dtype: str, stage: str, stop_at: int, kill_after_line: str, delay: float = 0.0) -> None:
    script = path.parent / "child.py"
    script.write_text(_CHILD)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path), dtype, stage, str(stop_at)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        while True:
            line = proc.stdout.readline()
            assert line, "child exited before reaching the kill point"
            if line.startswith(kill_after_line):
                break
        time.sleep(delay)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _finish_and_check(path: Path, dtype: str, expect_done: int | None) -> None:
    n, dim = 1000, 16
    x = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
    # readers ignore whatever the dead writer left behind
    s = GradientStore(path)
    assert s.verify() == s.num_shards
    if expect_done is not None:
        assert len(s) == expect_done
    assert len(s) % 50 == 0
    np.testing.assert_array_equal(s.ids, np.arange(len(s)))
    with StoreWriter(path, dim, dtype, CONFIG, shard_rows=50) as w:
        assert not [p for p in os.listdir(path) if p.startswith(".tmp-")], "temporary files left behind"
        listed = {f["name"] for e in s.shards for f in e["files"].values()}
        assert {p for p in os.listdir(path) if p.startswith("rank")} == listed, "orphan shard files left behind"
        np.testing.assert_array_equal(np.sort(w.completed_ids()), np.arange(len(s)))
        ids = np.arange(n)
        todo = ids[~w.contains(ids)]
        for i in range(0, len(todo), 13):
            w.append(todo[i : i + 13], x[todo[i : i + 13]])
    s = GradientStore(path)
    assert len(s) == n and s.verify() == s.num_shards
    np.testing.assert_array_equal(np.sort(s.ids), ids)  # nothing lost, nothing duplicated
    np.testing.assert_array_equal(s.lookup(ids), _expected(x, dtype))


@pytest.mark.parametrize(
    ("stage", "dtype"),
    [
        ("manifest-written", "int8"),  # between shards
        ("shard-temp-written", "int8"),  # mid-shard: temporary files complete, not renamed
        ("shard-renamed-partial", "float16"),  # mid-shard: data renamed, ids not yet
        ("shard-renamed", "int8"),  # shard files final, manifest not yet updated
        ("manifest-temp-written", "float16"),  # new manifest written, not yet renamed
    ],
)
def test_resume_after_sigkill(tmp_path: Path, stage: str, dtype: str) -> None:
    store = tmp_path / "store"
    _run_child(store, dtype, stage, 3, "STOPPED")
    expect = 4 * 50 if stage == "manifest-written" else 3 * 50
    if stage != "manifest-written":
        assert [p for p in os.listdir(store) if p.startswith(".tmp-") or "shard000003" in p], "kill point left no trace"
    _finish_and_check(store, dtype, expect)


def test_resume_after_sigkill_at_arbitrary_time(tmp_path: Path) -> None:
    store = tmp_path / "store"
    rng = np.random.default_rng()
    _run_child(store, "int8", "never", 0, f"SHARD {int(rng.integers(2, 6))}", delay=float(rng.uniform(0, 0.05)))
    _finish_and_check(store, "int8", None)
