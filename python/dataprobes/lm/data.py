"""PyTorch datasets of probe sequences.

:class:`ProbeDataset` streams fresh batches forever (or for ``num_batches``).
Batch b holds sequences ``b*B .. (b+1)*B - 1`` of the probe's sample for
``seed``, and batches are dealt round-robin to the ``world_size × num_workers``
shards of a ``torch.distributed`` job with DataLoader workers, so shards never
overlap and their union is exactly the single-process stream.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from .._validation import check_int, check_process, check_seed
from ..processes import Process


def _dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ProbeDataset(IterableDataset):
    """Streams ``[batch_size, seq_len]`` int64 batches of a probe.

    Use with ``DataLoader(ds, batch_size=None, num_workers=...)``.

    Args:
        process: any dataprobes process.
        seq_len: tokens per sequence.
        batch_size: sequences per batch.
        seed: sampling seed.
        num_batches: total batches over all shards (None: endless).
        start_batch: first batch index (to resume a run).
        rank, world_size: override the ``torch.distributed`` values.
    """

    def __init__(
        self,
        process: Process,
        seq_len: int,
        batch_size: int,
        seed: int = 0,
        num_batches: int | None = None,
        start_batch: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        check_process("process", process)
        self.process = process
        self.seq_len = check_int("seq_len", seq_len, 1)
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.seed = check_seed("seed", seed)
        self.num_batches = None if num_batches is None else check_int("num_batches", num_batches)
        self.start_batch = check_int("start_batch", start_batch)
        if (rank is None) != (world_size is None):
            raise ValueError("pass both rank and world_size, or neither")
        if world_size is not None:
            check_int("world_size", world_size, 1)
            check_int("rank", rank, 0, world_size - 1)
        self.rank, self.world_size = rank, world_size

    def shard(self) -> tuple[int, int]:
        """(this shard's index, number of shards) for the current worker and rank."""
        rank, world = (self.rank, self.world_size) if self.world_size is not None else _dist_rank_world()
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        return rank * workers + worker, world * workers  # type: ignore[operator]

    def batch_indices(self) -> Iterator[int]:
        """Global indices of the batches this shard yields, in order."""
        shard, shards = self.shard()
        b = self.start_batch + shard
        while self.num_batches is None or b < self.num_batches:
            yield b
            b += shards

    def batch(self, b: int) -> torch.Tensor:
        """Global batch ``b`` (sequences ``b*B .. (b+1)*B - 1``)."""
        x = self.process.sample(self.batch_size, self.seq_len, seed=self.seed, start=b * self.batch_size)
        return torch.from_numpy(x.astype(np.int64))

    def __iter__(self) -> Iterator[torch.Tensor]:
        for b in self.batch_indices():
            yield self.batch(b)


class ProbeTensorDataset(Dataset):
    """A fixed training set: sequences ``0 .. num_sequences - 1`` of the probe
    for ``seed``, held as one int64 tensor (map-style; item i is row i)."""

    def __init__(self, process: Process, num_sequences: int, seq_len: int, seed: int = 0) -> None:
        check_process("process", process)
        n = check_int("num_sequences", num_sequences, 1)
        t = check_int("seq_len", seq_len, 1)
        self.process = process
        self.tokens = torch.from_numpy(process.sample(n, t, seed=check_seed("seed", seed)).astype(np.int64))

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.tokens[i]
