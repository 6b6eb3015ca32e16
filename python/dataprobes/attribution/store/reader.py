"""Read side of the store: :class:`GradientStore` (all ranks merged)."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..._validation import check_bool, check_positive_int
from .durable import _sha256_file, rank_writer_active
from .format import (
    _PART_RE,
    FORMAT,
    HEADER_NAME,
    READ_VERSIONS,
    CorruptShardError,
    _check_header,
    _header,
    _part_name,
    _read_json,
    _to_numpy,
    _xxh3,
    check_same_config,
    dequantize_int8,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

_SHARD_RE = re.compile(r"^rank(\d{5,})-shard(\d{6,})\.")


@dataclass(frozen=True)
class _Shard:
    rank: int
    index: int
    rows: int
    files: dict[str, dict[str, Any]]
    data: np.ndarray  # memmap [rows, dim]
    scales: np.ndarray | None  # memmap [rows]
    check_rows: int  # rows per checksummed block; 0: no block checksums (format version 1)

    def verify_rows(self, lo: int, hi: int, offset: int) -> None:
        """Check the block checksums of every block overlapping local rows
        ``[lo, hi)`` of the data and scales files (``offset``: the shard's
        first store row, for the message)."""
        r = self.check_rows
        if not r or hi <= lo:
            return
        for c in range(lo // r, (hi - 1) // r + 1):
            self._verify_block(c, offset)

    def verify_blocks(self, blocks: Iterable[int], offset: int) -> None:
        if self.check_rows:
            for c in blocks:
                self._verify_block(int(c), offset)

    def _verify_block(self, c: int, offset: int, arrays: Mapping[str, np.ndarray | None] | None = None) -> None:
        a, b = c * self.check_rows, min((c + 1) * self.check_rows, self.rows)
        for role, arr in (arrays or {"data": self.data, "scales": self.scales}).items():
            if arr is None:
                continue
            found, want = _xxh3(arr[a:b]), self.files[role]["xxh3_64"][c]
            if found != want:
                raise CorruptShardError(
                    f"shard file {self.files[role]['name']} (rank {self.rank}, shard {self.index}, {role}) is corrupt: "
                    f"rows {a}-{b - 1} of the shard (store rows {offset + a}-{offset + b - 1}) fail their xxh3_64 "
                    f"checksum ({found} != manifest {want}); restore the file or recapture those examples"
                )


class GradientStore:
    """Read-only view of a gradient store (all ranks merged).

    Rows are ordered by rank, then shard index, then append order; ``ids[i]``
    is the example id of row ``i``. Shards are memory-mapped (``np.load(...,
    mmap_mode="r")``); nothing but the ids is read at open.

    Reads verify what they read: every block of rows the store hands out
    (:meth:`read_raw`, :meth:`read`, :meth:`lookup`, :meth:`iter_blocks`,
    :meth:`iter_raw_blocks`, hence :func:`~dataprobes.attribution.score`) is
    checked against the ``xxh3_64`` checksums the writer recorded per block of
    :data:`~dataprobes.attribution.store.format.CHECK_ROWS` rows, and the ids
    at open; a mismatch raises :class:`CorruptShardError` naming the shard
    file and the rows. ``verify_reads=False`` skips these checks (trusted
    media; :meth:`verify` still recomputes every sha256 on demand). Stores of
    format version 1 carry no block checksums and are read unchecked.
    """

    def __init__(self, path: str | os.PathLike[str], *, verify_reads: bool = True) -> None:
        self.path = Path(path)
        self.verify_reads = check_bool("verify_reads", verify_reads)
        header_path = self.path / HEADER_NAME
        if not header_path.is_file():
            raise FileNotFoundError(f"{self.path} is not a gradient store: {HEADER_NAME} is missing")
        header = _read_json(header_path)
        if header.get("format") != FORMAT:
            raise ValueError(f"{header_path} is not a dataprobes gradient store manifest")
        if header.get("format_version") not in READ_VERSIONS:
            raise ValueError(
                f"{header_path} has format_version {header.get('format_version')!r}; "
                f"this dataprobes reads versions {READ_VERSIONS}"
            )
        #: on-disk format version of the store (1: no block checksums)
        self.format_version: int = int(header["format_version"])
        self.dim: int = int(header["dim"])
        self.dtype: str = str(header["dtype"])
        self.config: dict[str, Any] = header.get("config", {})
        parts = []
        for name in os.listdir(self.path):
            m = _PART_RE.match(name)
            if m:
                parts.append((int(m.group(1)), name))
        parts.sort()
        self._parts: list[dict[str, Any]] = []
        self._shards: list[_Shard] = []
        ids: list[np.ndarray] = []
        offset = 0
        for rank, name in parts:
            part = _read_json(self.path / name)
            _check_header(part, self.dim, self.dtype, self.config, str(self.path / name), self.format_version)
            if part.get("rank") != rank:
                raise ValueError(f"{name} claims rank {part.get('rank')}")
            self._parts.append(part)
            for entry in part["shards"]:
                shard, shard_ids = self._open_shard(entry, name, offset)
                offset += shard.rows
                self._shards.append(shard)
                ids.append(shard_ids)
        self._warn_unlisted()
        self._ids = np.concatenate(ids) if ids else np.empty(0, np.int64)
        self._ids.setflags(write=False)
        self._offsets = np.concatenate([[0], np.cumsum([s.rows for s in self._shards], dtype=np.int64)]).astype(
            np.int64
        )
        self._sorter: np.ndarray | None = None
        self._id_rank: np.ndarray | None = None
        self._sorted_ids: np.ndarray | None = None
        if self._ids.shape[0] > 1:
            order = np.argsort(self._ids, kind="stable")
            s = self._ids[order]
            dup = np.flatnonzero(s[1:] == s[:-1])
            if dup.shape[0]:
                bad = int(s[dup[0]])
                where = [self._locate(int(p)) for p in np.flatnonzero(self._ids == bad)[:2]]
                raise ValueError(f"example id {bad} is stored more than once (in {where[0]} and {where[1]})")
            self._sorter = order

    def _warn_unlisted(self) -> None:
        """Warn about shard files no manifest part lists, beyond the one shard per
        rank that a writer killed between renaming it and recording it leaves
        (the next index of a rank that has a manifest part; the next writer of
        that rank deletes it), and about none of a rank a live writer holds (its
        newest shard is renamed into place just before its part lists it)."""
        listed = {info["name"] for s in self._shards for info in s.files.values()}
        next_index = {int(p["rank"]): len(p["shards"]) for p in self._parts}
        unlisted: dict[str, list[str]] = {}
        for name in sorted(os.listdir(self.path)):
            m = _SHARD_RE.match(name)
            if m is None or name in listed:
                continue
            rank, index = int(m.group(1)), int(m.group(2))
            if index != next_index.get(rank, -1) and not rank_writer_active(self.path, rank):
                unlisted.setdefault(f"rank {rank}", []).append(name)
        if unlisted:
            # A writer may have listed them (and closed) since the parts were read:
            # judge them by the manifest parts as they are now.
            for key in list(unlisted):
                fresh = self.path / _part_name(int(key.split()[1]))
                try:
                    now = {info["name"] for e in _read_json(fresh)["shards"] for info in e["files"].values()}
                except (OSError, ValueError, KeyError, TypeError):
                    continue
                unlisted[key] = [n for n in unlisted[key] if n not in now]
                if not unlisted[key]:
                    del unlisted[key]
        if unlisted:
            names = [n for v in unlisted.values() for n in v]
            shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
            warnings.warn(
                f"{self.path}: {len(names)} shard files are listed by no manifest part ({shown}; "
                f"{', '.join(unlisted)}): their rows are not part of the store (was a manifest.rank*.json deleted?). "
                "Restore the manifest part from a backup, or recapture: capture_to_store on that rank deletes the "
                "unlisted files and captures the missing ids again",
                UserWarning,
                stacklevel=3,
            )

    def _open_shard(self, entry: Mapping[str, Any], part_name: str, offset: int) -> tuple[_Shard, np.ndarray]:
        rows = int(entry["rows"])
        files = entry["files"]
        expect = {"data": ((rows, self.dim), np.dtype(self.dtype)), "ids": ((rows,), np.dtype(np.int64))}
        if self.dtype == "int8":
            expect["scales"] = ((rows,), np.dtype(np.float32))
        arrays: dict[str, np.ndarray] = {}
        for role, (shape, dt) in expect.items():
            if role not in files:
                raise CorruptShardError(f"{part_name}: shard {entry.get('index')} has no {role} file")
            fname = files[role]["name"]
            try:
                arr = np.load(self.path / fname, mmap_mode="r", allow_pickle=False)
            except FileNotFoundError as exc:
                raise CorruptShardError(f"shard file {fname} listed in {part_name} is missing") from exc
            except (ValueError, OSError, EOFError) as exc:
                raise CorruptShardError(f"shard file {fname} (listed in {part_name}) is unreadable: {exc}") from exc
            if arr.shape != shape or arr.dtype != dt:
                raise CorruptShardError(
                    f"shard file {fname} has shape {arr.shape} and dtype {arr.dtype}; "
                    f"manifest {part_name} expects {shape} {dt}"
                )
            arrays[role] = arr
        check_rows = 0
        if self.format_version >= 2:
            recorded = entry.get("check_rows")
            if isinstance(recorded, bool) or not isinstance(recorded, int) or recorded < 1:
                raise CorruptShardError(f"{part_name}: shard {entry.get('index')} has no valid check_rows")
            check_rows = recorded
            for role in expect:
                sums = files[role].get("xxh3_64")
                if not isinstance(sums, list) or len(sums) != -(-rows // check_rows):
                    raise CorruptShardError(
                        f"{part_name}: shard {entry.get('index')} has no valid xxh3_64 list for {role}"
                    )
        shard = _Shard(
            int(entry["rank"]), int(entry["index"]), rows, dict(files), arrays["data"], arrays.get("scales"), check_rows
        )
        if self.verify_reads and check_rows:
            for c in range(-(-rows // check_rows)):
                shard._verify_block(c, offset, {"ids": arrays["ids"]})
        return shard, np.array(arrays["ids"])

    def _locate(self, pos: int) -> str:
        i = int(np.searchsorted(self._offsets, pos, side="right")) - 1
        return self._shards[i].files["data"]["name"]

    # -- metadata ----------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._ids.shape[0])

    @property
    def ids(self) -> np.ndarray:
        """Example ids of all rows in store order (read-only int64 array)."""
        return self._ids

    @property
    def num_shards(self) -> int:
        return len(self._shards)

    @property
    def ranks(self) -> list[int]:
        return [int(p["rank"]) for p in self._parts]

    @property
    def shards(self) -> list[dict[str, Any]]:
        """Manifest entries of all shards, in store order."""
        return [{"rank": s.rank, "index": s.index, "rows": s.rows, "files": s.files} for s in self._shards]

    @property
    def manifest(self) -> dict[str, Any]:
        """The merged manifest: header fields and every rank's shard entries."""
        out = _header(self.dim, self.dtype, self.config)
        out["num_rows"] = len(self)
        out["shards"] = self.shards
        return out

    @property
    def nbytes(self) -> int:
        per_row = self.dim * np.dtype(self.dtype).itemsize + 8 + (4 if self.dtype == "int8" else 0)
        return per_row * len(self)

    def __repr__(self) -> str:
        return (
            f"GradientStore({str(self.path)!r}, rows={len(self)}, dim={self.dim}, dtype={self.dtype!r}, "
            f"shards={self.num_shards}, ranks={self.ranks})"
        )

    def check_compatible(self, config: Mapping[str, Any] | None, *, name: str = "query_config") -> None:
        """Raise ``ValueError`` naming the differing keys unless ``config`` equals the store's."""
        check_same_config(
            config,
            self.config,
            name=name,
            against="the store's capture config",
            hint="queries must be captured with the same projection and model/layer spec as the store",
        )

    @property
    def sorted_ids(self) -> np.ndarray:
        """All example ids in ascending order (cached, read-only);
        ``sorted_ids[id_rank()[i]] == ids[i]``."""
        if self._sorted_ids is None:
            out = self._ids[self._sorter] if self._sorter is not None else self._ids.copy()
            out.setflags(write=False)
            self._sorted_ids = out
        return self._sorted_ids

    def id_rank(self) -> np.ndarray:
        """Position of each row's id in ascending id order (cached; used for tie-breaking)."""
        if self._id_rank is None:
            n = len(self)
            r = np.empty(n, np.int64)
            r[self._sorter if self._sorter is not None else np.arange(n)] = np.arange(n, dtype=np.int64)
            r.setflags(write=False)
            self._id_rank = r
        return self._id_rank

    # -- reading -----------------------------------------------------------------

    def _segments(self, start: int, stop: int) -> Iterator[tuple[_Shard, int, int, int]]:
        """(shard, lo, hi, out_offset) pieces covering rows [start, stop)."""
        i = int(np.searchsorted(self._offsets, start, side="right")) - 1
        pos = start
        while pos < stop:
            shard = self._shards[i]
            base = int(self._offsets[i])
            lo, hi = pos - base, min(stop, base + shard.rows) - base
            if hi > lo:
                yield shard, lo, hi, pos - start
            pos = base + hi
            i += 1

    def read_raw(self, start: int, stop: int, *, verify: bool | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Stored (not dequantised) rows ``[start, stop)``: (data, scales or None).

        A view into the memory map when the range lies in one shard, else a copy.
        The blocks covering the rows are verified first (see the class
        docstring; ``verify``: ``None`` follows ``verify_reads``).
        """
        n = len(self)
        if not 0 <= start <= stop <= n:
            raise IndexError(f"row range [{start}, {stop}) outside the store of {n} rows")
        segs = list(self._segments(start, stop))
        if self.verify_reads if verify is None else verify:
            for shard, lo, hi, off in segs:
                shard.verify_rows(lo, hi, start + off - lo)
        if len(segs) == 1:
            shard, lo, hi, _ = segs[0]
            return shard.data[lo:hi], (shard.scales[lo:hi] if shard.scales is not None else None)
        data = np.empty((stop - start, self.dim), np.dtype(self.dtype))
        scales = np.empty(stop - start, np.float32) if self.dtype == "int8" else None
        for shard, lo, hi, off in segs:
            data[off : off + hi - lo] = shard.data[lo:hi]
            if scales is not None and shard.scales is not None:
                scales[off : off + hi - lo] = shard.scales[lo:hi]
        return data, scales

    def read(self, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``[start, stop)`` dequantised to float32: ``(ids, rows)``."""
        stop = len(self) if stop is None else stop
        data, scales = self.read_raw(start, stop)
        if scales is not None:
            return self._ids[start:stop], dequantize_int8(data, scales)
        return self._ids[start:stop], np.asarray(data, dtype=np.float32)

    def lookup(self, ids: Any, *, verify: bool | None = None) -> np.ndarray:
        """Float32 rows of the given example ids (``KeyError`` for unknown ids).

        The checksummed blocks holding the rows are verified first
        (``verify``: ``None`` follows ``verify_reads``)."""
        arr = np.asarray(_to_numpy(ids), dtype=np.int64).reshape(-1)
        n = len(self)
        if n == 0:
            if arr.shape[0]:
                raise KeyError(f"example id {int(arr[0])} is not in the store")
            return np.empty((0, self.dim), np.float32)
        sorter = self._sorter if self._sorter is not None else np.arange(n)
        sorted_ids = self.sorted_ids  # cached: not an O(n) gather per call
        p = np.minimum(np.searchsorted(sorted_ids, arr), n - 1)
        missing = sorted_ids[p] != arr
        if missing.any():
            raise KeyError(f"example id {int(arr[missing][0])} is not in the store")
        rows = sorter[p]
        out = np.empty((arr.shape[0], self.dim), np.float32)
        which = np.searchsorted(self._offsets, rows, side="right") - 1
        for si in np.unique(which):
            sel = which == si
            shard = self._shards[int(si)]
            local = rows[sel] - self._offsets[si]
            if (self.verify_reads if verify is None else verify) and shard.check_rows:
                shard.verify_blocks(np.unique(local // shard.check_rows), int(self._offsets[si]))
            data = shard.data[local]
            out[sel] = dequantize_int8(data, shard.scales[local]) if shard.scales is not None else data
        return out

    def iter_raw_blocks(
        self, block_rows: int = 65536, *, prefetch: bool = True, verify: bool | None = None
    ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray | None]]:
        """Yield ``(start, stop, data, scales)`` for consecutive blocks of
        ``block_rows`` stored (not dequantised) rows, copied out of the memory
        maps (``scales`` is ``None`` for a float16 store).

        With ``prefetch=True`` the next block is read on a worker thread while
        the caller works on this one (what :func:`~dataprobes.attribution.score`
        does). Blocks span shard boundaries; only the last may be shorter. Every
        block is verified as it is read (``verify``: ``None`` follows
        ``verify_reads``).
        """
        block = check_positive_int("block_rows", block_rows)
        n = len(self)

        def load(start: int) -> tuple[int, int, np.ndarray, np.ndarray | None]:
            stop = min(start + block, n)
            data, scales = self.read_raw(start, stop, verify=verify)
            return start, stop, np.array(data), (np.array(scales) if scales is not None else None)

        starts = range(0, n, block)
        if not prefetch:
            yield from map(load, starts)
            return
        if not starts:
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            fut = pool.submit(load, starts[0])
            for i in range(len(starts)):
                cur = fut.result()
                if i + 1 < len(starts):
                    fut = pool.submit(load, starts[i + 1])
                yield cur

    def iter_blocks(
        self, block_rows: int = 65536, *, device: str | torch.device | None = None, as_tensor: bool = False
    ) -> Iterator[tuple[np.ndarray, Any]]:
        """Yield ``(ids, rows)`` for consecutive blocks of ``block_rows`` rows.

        Rows are dequantised to float32 on the fly: numpy arrays by default, torch
        tensors when ``as_tensor=True`` or a ``device`` is given (int8 rows are
        moved to the device before dequantising). Blocks span shard boundaries;
        only the last block may be shorter.
        """
        tensor = as_tensor or device is not None
        for start, stop, data, scales in self.iter_raw_blocks(block_rows, prefetch=False):
            ids = self._ids[start:stop]
            if not tensor:
                yield ids, (dequantize_int8(data, scales) if scales is not None else data.astype(np.float32))
                continue
            import torch

            from ..kernels.quant import dequantize_int8 as dequantize_int8_torch

            dev = torch.device(device) if device is not None else torch.device("cpu")
            t = torch.from_numpy(data).to(dev)
            if scales is not None:
                yield ids, dequantize_int8_torch(t, torch.from_numpy(scales).to(dev))
            else:
                yield ids, t.to(torch.float32)

    def verify(self) -> int:
        """Recompute every shard file's sha256; raise :class:`CorruptShardError`
        naming the first corrupt file. Returns the number of shards checked."""
        for shard in self._shards:
            for role, info in shard.files.items():
                digest = _sha256_file(self.path / info["name"])
                if digest != info["sha256"]:
                    raise CorruptShardError(
                        f"shard file {info['name']} (rank {shard.rank}, shard {shard.index}, {role}) is corrupt: "
                        f"sha256 {digest} != manifest {info['sha256']}"
                    )
        return len(self._shards)
