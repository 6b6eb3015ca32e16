"""Two torch.distributed ranks (gloo, CPU) write one logical gradient store that
reads back and scores exactly like the single-process store."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from dataprobes.attribution import GradientStore, StoreWriter, score  # noqa: E402

CONFIG = {"projection": {"kind": "sjlt", "seed": 7}, "k": 24, "model": "tiny-gpt", "layers": ["h.0"]}
N, DIM, SHARD, BATCH, WORLD = 4000, 24, 300, 32, 2


def _data() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((N, DIM)).astype(np.float32)


def _capture(path: Path, dtype: str, ids: np.ndarray, x: np.ndarray) -> None:
    """A capture loop: the writer's rank comes from torch.distributed when a
    process group is initialised."""
    with StoreWriter(path, DIM, dtype, CONFIG, shard_rows=SHARD) as w:
        expected_rank = dist.get_rank() if dist.is_initialized() else 0
        assert w.rank == expected_rank
        for i in range(0, len(ids), BATCH):
            w.append(ids[i : i + BATCH], torch.from_numpy(x[ids[i : i + BATCH]]))


def _worker(rank: int, world: int, port: int, root: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    try:
        x = _data()
        ids = np.arange(N)
        mine = ids[ids % world == rank]
        for dtype in ("int8", "float16"):
            _capture(Path(root) / dtype, dtype, mine, x)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_ranks_equal_one_process(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(WORLD, _free_port(), str(tmp_path / "dist")), nprocs=WORLD, join=True)
    x = _data()
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((5, DIM)).astype(np.float32)
    for dtype in ("int8", "float16"):
        _capture(tmp_path / "single" / dtype, dtype, np.arange(N), x)
        single = GradientStore(tmp_path / "single" / dtype)
        merged = GradientStore(tmp_path / "dist" / dtype)
        assert merged.ranks == [0, 1] and single.ranks == [0]
        assert len(merged) == len(single) == N
        assert merged.verify() == merged.num_shards
        # rank order, then shard order: all of rank 0's ids, then rank 1's
        np.testing.assert_array_equal(merged.ids, np.concatenate([np.arange(0, N, 2), np.arange(1, N, 2)]))
        np.testing.assert_array_equal(merged.lookup(single.ids), single.read()[1])  # same ids -> same rows
        for method in ("cosine", "ip", "influence"):
            a = score(single, queries, method, top_k=50, block_rows=1000, query_config=CONFIG)
            b = score(merged, queries, method, top_k=50, block_rows=1000, query_config=CONFIG)
            np.testing.assert_array_equal(a.ids, b.ids)
            np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6 * np.abs(a.scores).max())
