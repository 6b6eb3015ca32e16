"""Sharded on-disk store of compressed per-example gradients.

Layout of a store directory (``r`` = writer rank, ``s`` = shard index)::

    manifest.json                       store header: format version, dim, dtype,
                                        the capture/projection ``config``
    manifest.rank{r:05d}.json           one manifest part per writer rank: the
                                        header fields again, then one entry per
                                        complete shard (file names, rows,
                                        sha256 checksums, rank, and the
                                        xxh3_64 checksum of every block of
                                        ``check_rows`` rows of each file)
    rank{r:05d}-shard{s:06d}.int8.npy   [rows, dim] int8 (or ``.float16.npy``)
    rank{r:05d}-shard{s:06d}.scales.npy [rows] float32 per-row scales (int8 only)
    rank{r:05d}-shard{s:06d}.ids.npy    [rows] int64 example ids

Reads verify what they read. The writer records, next to each file's sha256,
an ``xxh3_64`` checksum of every block of :data:`CHECK_ROWS` rows (format
version 2); :class:`GradientStore` checks the blocks covering every row range
it hands out (and the ids at open) and raises :class:`CorruptShardError`
naming the shard file and rows on a mismatch, so a flipped byte on disk is
never scored silently. ``GradientStore(path, verify_reads=False)`` (or
``score(..., verify_reads=False)``) skips the checks on trusted media. Stores
of format version 1 (no block checksums) are read unchecked; appending to one
is refused.

A row of an int8 store dequantises to ``q * scale`` with ``scale = max|row| / 127``
(so every entry is within ``scale / 2`` of the value that was appended); a
float16 row is the appended row rounded to float16.

Durability. Every file is written under a temporary name (``.tmp-<name>``) in
the same directory, fsynced, and renamed when complete; a shard becomes part of
the store only when the writer's manifest part, itself rewritten atomically
(temporary file + fsync + rename), lists it. Anything not listed in a manifest
part (temporary files, shard files renamed just before a crash) is ignored by
readers and deleted by the next writer of that rank. A capture that is killed
therefore loses only the rows buffered since its last complete shard, and
resumes with :meth:`StoreWriter.completed_ids` telling it what to skip.

Multi-rank. Each rank of a ``torch.distributed`` job writes its own shard files
and its own manifest part, so no two ranks ever write the same file; the header
``manifest.json`` is created once, atomically and exclusively (whichever rank
comes first), and the others check that their configuration matches it.
:class:`GradientStore` merges all parts into one logical store whose rows are
in **rank order, then shard order, then append order** (not sorted by id; use
:meth:`GradientStore.lookup` to fetch rows by id). Example ids must be unique
across the whole store.

The store itself needs only numpy; torch tensors are accepted where noted.
"""

from __future__ import annotations

from collections.abc import Callable

from .format import (
    CHECK_ROWS,
    DTYPES,
    FORMAT,
    FORMAT_VERSION,
    HEADER_NAME,
    READ_VERSIONS,
    CorruptShardError,
    check_same_config,
    config_diff,
    dequantize_int8,
    quantize_int8,
)
from .reader import GradientStore
from .writer import StoreWriter

__all__ = [
    "FORMAT",
    "CHECK_ROWS",
    "DTYPES",
    "FORMAT_VERSION",
    "HEADER_NAME",
    "READ_VERSIONS",
    "CorruptShardError",
    "GradientStore",
    "StoreWriter",
    "check_same_config",
    "config_diff",
    "dequantize_int8",
    "quantize_int8",
]


#: Test hook: called with a stage name at each step of a shard write
#: ("shard-temp-written", "shard-renamed-partial", "shard-renamed",
#: "manifest-temp-written", "manifest-written"). Lets the crash tests stop a
#: writer at an exact point. ``None`` in normal use.
_TEST_HOOK: Callable[[str], None] | None = None
