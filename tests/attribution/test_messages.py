"""Messages that say what is wrong (issue 10 items in attribution): unlisted
shard files, a manifest that is not JSON, ids validated before conversion,
ids/losses length mismatch, compression larger than the raw gradient, and the
influence preconditioner's memory bound."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from dataprobes.attribution import (  # noqa: E402
    CorruptShardError,
    GradientCapture,
    GradientStore,
    StoreWriter,
    capture_batches,
    capture_to_store,
    fit_preconditioner,
    score,
)

CONFIG = {"k": 4}


def _store(path: Path, n: int = 12, shard_rows: int = 4, rank: int = 0) -> None:
    with StoreWriter(path, 4, "int8", CONFIG, shard_rows=shard_rows, rank=rank) as w:
        w.append(np.arange(n) + 100 * rank, np.random.default_rng(rank).standard_normal((n, 4)))


def test_deleted_manifest_part_is_reported(tmp_path: Path):
    _store(tmp_path, rank=0)
    _store(tmp_path, rank=1)
    (tmp_path / "manifest.rank00001.json").unlink()
    with pytest.warns(
        UserWarning, match=r"9 shard files are listed by no manifest part .*rank00001-shard000000.*rank 1.*recapture"
    ):
        store = GradientStore(tmp_path)
    assert len(store) == 12
    # the repair path: a writer of that rank removes the unlisted files, the store opens cleanly
    StoreWriter(tmp_path, 4, "int8", CONFIG, rank=1).close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GradientStore(tmp_path)


def test_crash_leftover_is_not_reported(tmp_path: Path):
    # a writer killed between renaming shard 3 and recording it leaves that one shard: expected, silent
    _store(tmp_path)
    for role in ("int8", "scales", "ids"):
        src = tmp_path / f"rank00000-shard000002.{role}.npy"
        (tmp_path / f"rank00000-shard000003.{role}.npy").write_bytes(src.read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(GradientStore(tmp_path)) == 12


@pytest.mark.parametrize("name", ["manifest.json", "manifest.rank00000.json"])
def test_manifest_not_json(tmp_path: Path, name: str):
    _store(tmp_path)
    (tmp_path / name).write_text('{"format": "dataprobes.gradient_store", ')
    with pytest.raises(CorruptShardError, match=rf"manifest .*{name} is not valid JSON"):
        GradientStore(tmp_path)


def _loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).pow(2).sum(1)


def test_capture_ids_are_validated_before_conversion(tmp_path: Path):
    model = nn.Sequential(nn.Linear(6, 5))
    cap = GradientCapture(model, k_in=2, k_out=2)
    x = torch.randn(4, 6)
    with pytest.raises(TypeError, match="ids must have an integer dtype"):
        capture_to_store(cap, _loss, [(np.array([0, 1.9, 2, 3]), x)], tmp_path / "a")
    with pytest.raises(ValueError, match="ids must fit in int64"):
        capture_to_store(cap, _loss, [(np.array([0, 1, 2, 2**63], np.uint64), x)], tmp_path / "b")
    with pytest.raises(TypeError, match="ids must have an integer dtype"):
        list(capture_batches(cap, _loss, [([0.5, 1.5, 2.5, 3.5], x)]))
    with pytest.raises(ValueError, match="a batch has 3 ids but loss_fn returned 4 per-example losses"):
        capture_to_store(cap, _loss, [(np.arange(3), x)], tmp_path / "c")
    with pytest.raises(ValueError, match="a batch has 5 ids but loss_fn returned 4"):
        list(capture_batches(cap, _loss, [(np.arange(5), x)]))
    store = capture_to_store(cap, _loss, [(np.arange(4, dtype=np.uint64), x)], tmp_path / "d")
    np.testing.assert_array_equal(store.ids, np.arange(4))


def test_compression_larger_than_the_gradient_warns_and_repr_shows_dim():
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.warns(UserWarning, match=r"compressed dimension \(16\) exceeds .* gradient size \(6\)"):
        GradientCapture(model, k_in=4, k_out=4)
    with pytest.warns(UserWarning, match=r"compressed dimension \(7\) exceeds"):
        GradientCapture(model, mode="flat", k=7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cap = GradientCapture(model, k_in=1, k_out=2)
    assert "dim=2" in repr(cap) and "raw_dim=6" in repr(cap) and cap.raw_dim == 6


def test_influence_memory_is_checked_before_allocating(tmp_path: Path):
    _store(tmp_path)
    with pytest.raises(ValueError, match=r"needs about .* GiB .*max_bytes=100"):
        fit_preconditioner(tmp_path, max_bytes=100)
    assert fit_preconditioner(tmp_path, max_bytes=None).dim == 4
    assert fit_preconditioner(tmp_path).dim == 4  # 512 bytes: within the default bound
    res = score(tmp_path, np.ones((1, 4)), "influence", top_k=2, query_config=CONFIG)
    assert res.ids.shape == (1, 2)
