"""Append side of the store: :class:`StoreWriter` (one rank)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..._durable import write_synced
from ..._validation import check_choice, check_int, check_positive_int
from .durable import _fsync_dir, _hook, _save_npy, _write_json_atomic, acquire_rank_lock
from .format import (
    _TMP,
    CHECK_ROWS,
    DTYPES,
    HEADER_NAME,
    CorruptShardError,
    _block_checksums,
    _check_header,
    _header,
    _is_tensor,
    _normalize_config,
    _part_name,
    _read_json,
    _shard_files,
    _to_numpy,
    quantize_int8,
)


def _default_rank() -> int:
    """The ``torch.distributed`` rank when a process group is initialised, else 0."""
    if "torch" not in sys.modules:
        return 0
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return 0
    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    return 0


class StoreWriter:
    """Append compressed per-example gradients to a sharded store (one rank).

    Parameters
    ----------
    path:
        Store directory (created if missing). Opening a writer on an existing
        store with the same ``dim``, ``dtype`` and ``config`` (and rank) resumes
        it after its last complete shard.
    dim:
        Width of a gradient row (the projection dimension ``k``).
    dtype:
        ``"int8"`` (per-row float32 scales; 1 byte/entry) or ``"float16"``.
    config:
        JSON dict describing how the rows were produced (projection kind and
        seed, k, model/layer spec, ...). Stored in the manifest; resuming or
        scoring with a different config is refused with a ``ValueError`` that
        names the differing keys.
    rank:
        Writer rank; ``None`` (default) takes ``torch.distributed.get_rank()``
        when a process group is initialised, else 0. Each rank owns its files.
    shard_rows:
        Rows per shard; a shard is written whenever that many rows are buffered
        (and a shorter last shard by :meth:`close`).
    quantize:
        Optional int8 quantiser ``f(grads) -> (q int8 [B, dim], scale float32 [B])``
        with ``grads[i] ≈ q[i] * scale[i]``, e.g. a GPU kernel; it receives the
        ``grads`` object exactly as passed to :meth:`append` (a CUDA tensor
        stays on its device). Defaults to :func:`quantize_int8`.

    Use as a context manager (or call :meth:`close`) so the last partial shard
    is written.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        dim: int,
        dtype: str = "int8",
        config: Mapping[str, Any] | None = None,
        rank: int | None = None,
        shard_rows: int = 65536,
        *,
        quantize: Callable[[Any], tuple[Any, Any]] | None = None,
    ) -> None:
        dim = check_positive_int("dim", dim)
        check_choice("dtype", dtype, DTYPES)
        shard_rows = check_positive_int("shard_rows", shard_rows)
        rank = check_int("rank", _default_rank() if rank is None else rank, 0)
        if quantize is not None and dtype != "int8":
            raise ValueError("quantize= applies to dtype='int8' stores only")
        if quantize is not None and not callable(quantize):
            raise TypeError("quantize must be callable: f(grads) -> (q int8 [B, dim], scale float32 [B])")
        self.path = Path(path)
        self.dim = int(dim)
        self.dtype = dtype
        self.config = _normalize_config(config)
        self.rank = int(rank)
        self.shard_rows = int(shard_rows)
        self._quantize = quantize
        self._closed = False
        self._lock_fd: int | None = None

        self.path.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        try:
            self._open_header()
            self._load_part()
            self._clean_strays()
        except BaseException:
            self._release_lock()
            raise

        self._buf_ids = np.empty(0, np.int64)
        self._buf_data: np.ndarray | None = None
        self._buf_scales: np.ndarray | None = None
        self._buf_n = 0
        self._pending: set[int] = set()

    # -- opening ---------------------------------------------------------------

    def _acquire_lock(self) -> None:
        self._lock_fd = acquire_rank_lock(self.path, self.rank)

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def _open_header(self) -> None:
        header_path = self.path / HEADER_NAME
        header = _header(self.dim, self.dtype, self.config)
        if not header_path.exists():
            # Exclusive, atomic creation: write a private temporary file, then
            # hard-link it to the final name (fails if another rank won).
            tmp = self.path / f"{_TMP}{HEADER_NAME}.rank{self.rank:05d}"
            write_synced(tmp, json.dumps(header, indent=1, sort_keys=True).encode())
            try:
                os.link(tmp, header_path)
            except FileExistsError:
                pass
            except OSError:  # pragma: no cover - file systems without hard links
                if not header_path.exists():
                    os.replace(tmp, header_path)
            finally:
                if tmp.exists():
                    tmp.unlink()
            _fsync_dir(self.path)
        _check_header(_read_json(header_path), self.dim, self.dtype, self.config, str(header_path))

    def _load_part(self) -> None:
        part_path = self.path / _part_name(self.rank)
        self._shards: list[dict[str, Any]] = []
        done: list[np.ndarray] = []
        if part_path.exists():
            part = _read_json(part_path)
            _check_header(part, self.dim, self.dtype, self.config, str(part_path))
            if part.get("rank") != self.rank:
                raise ValueError(f"{part_path} belongs to rank {part.get('rank')}, not {self.rank}")
            for entry in part["shards"]:
                for role, info in entry["files"].items():
                    f = self.path / info["name"]
                    if not f.exists():
                        raise CorruptShardError(f"shard file {f.name} ({role}) listed in {part_path.name} is missing")
                ids = np.load(self.path / entry["files"]["ids"]["name"], mmap_mode="r")
                if ids.shape != (entry["rows"],):
                    raise CorruptShardError(
                        f"shard file {entry['files']['ids']['name']} has shape {ids.shape}, "
                        f"manifest says {entry['rows']} rows"
                    )
                done.append(np.asarray(ids))
                self._shards.append(entry)
        self._done_ids = np.concatenate(done) if done else np.empty(0, np.int64)
        self._done_sorted = np.sort(self._done_ids)

    def _clean_strays(self) -> None:
        """Delete this rank's temporary files and shard files no manifest lists."""
        own = f"rank{self.rank:05d}-shard"
        listed = {info["name"] for entry in self._shards for info in entry["files"].values()}
        for name in os.listdir(self.path):
            stray = False
            if name.startswith(_TMP):
                rest = name[len(_TMP) :]
                stray = (
                    rest.startswith(own)
                    or rest == _part_name(self.rank)
                    or rest == f"{HEADER_NAME}.rank{self.rank:05d}"
                )
            elif name.startswith(own) and name not in listed:
                stray = True
            if stray:
                try:
                    os.unlink(self.path / name)
                except FileNotFoundError:  # pragma: no cover
                    pass

    # -- public state ----------------------------------------------------------

    @property
    def num_rows(self) -> int:
        """Rows in complete (durable) shards of this rank."""
        return int(self._done_ids.shape[0])

    @property
    def num_pending(self) -> int:
        """Rows appended but not yet written (lost if the process dies now)."""
        return self._buf_n

    @property
    def num_shards(self) -> int:
        return len(self._shards)

    def completed_ids(self) -> np.ndarray:
        """Ids in this rank's complete shards, in write order (a copy)."""
        return self._done_ids.copy()

    def contains(self, ids: Any) -> np.ndarray:
        """Boolean mask: which ``ids`` this writer already holds (written or buffered).

        A resumed capture loop computes gradients only for ``ids[~writer.contains(ids)]``.
        """
        arr = self._check_ids(ids, "ids", allow_dup=True)
        mask = self._in_done(arr)
        if self._pending:
            mask |= np.fromiter((int(i) in self._pending for i in arr), bool, count=arr.shape[0])
        return mask

    def _in_done(self, arr: np.ndarray) -> np.ndarray:
        if self._done_sorted.shape[0] == 0:
            return np.zeros(arr.shape[0], bool)
        pos = np.searchsorted(self._done_sorted, arr)
        pos = np.minimum(pos, self._done_sorted.shape[0] - 1)
        return np.asarray(self._done_sorted[pos] == arr)

    # -- appending -------------------------------------------------------------

    @staticmethod
    def _check_ids(ids: Any, name: str, allow_dup: bool = False) -> np.ndarray:
        arr = _to_numpy(ids)
        if arr.ndim != 1:
            raise ValueError(f"{name} must be a 1-D array of integer example ids, got shape {arr.shape}")
        if arr.dtype.kind not in "iu":
            if arr.shape[0] == 0:
                arr = arr.astype(np.int64)
            else:
                raise TypeError(f"{name} must have an integer dtype, got {arr.dtype}")
        if arr.dtype == np.uint64 and arr.shape[0] and int(arr.max()) > np.iinfo(np.int64).max:
            raise ValueError(f"{name} must fit in int64")
        arr = arr.astype(np.int64, copy=False)
        if not allow_dup and arr.shape[0] > 1:
            s = np.sort(arr)
            dup = s[1:][s[1:] == s[:-1]]
            if dup.shape[0]:
                raise ValueError(f"{name} contains duplicate example ids, e.g. {int(dup[0])}")
        return arr

    def append(self, ids: Any, grads: Any) -> None:
        """Add rows ``grads[i]`` for example ``ids[i]``.

        ``grads``: float array or tensor [B, dim] (any device). Ids must be
        integers, unique, and not already in the store (check with
        :meth:`contains`). Rows are buffered and written a shard at a time.
        """
        if self._closed:
            raise ValueError("this StoreWriter is closed")
        ids_arr = self._check_ids(ids, "ids")
        shape = tuple(grads.shape) if hasattr(grads, "shape") else np.shape(grads)
        if len(shape) != 2 or shape[1] != self.dim:
            raise ValueError(f"grads must have shape [B, dim={self.dim}], got {list(shape)}")
        if shape[0] != ids_arr.shape[0]:
            raise ValueError(f"ids has {ids_arr.shape[0]} entries but grads has {shape[0]} rows")
        if ids_arr.shape[0] == 0:
            return
        seen = self._in_done(ids_arr)
        if self._pending:
            seen |= np.fromiter((int(i) in self._pending for i in ids_arr), bool, count=ids_arr.shape[0])
        if seen.any():
            raise ValueError(
                f"ids already in the store (rank {self.rank}), e.g. {int(ids_arr[seen][0])}; "
                "skip them with `batch[~writer.contains(ids)]`"
            )
        data, scales = self._encode(grads)
        self._buffer(ids_arr, data, scales)

    def _encode(self, grads: Any) -> tuple[np.ndarray, np.ndarray | None]:
        if not _is_tensor(grads):
            g = np.asarray(grads)
            if g.dtype.kind not in "fiub":
                raise TypeError(f"grads must be a real-valued float array or tensor, got dtype {g.dtype}")
            grads = g
        elif grads.is_complex():
            raise TypeError(f"grads must be real-valued, got {grads.dtype}")
        if self.dtype == "float16":
            if _is_tensor(grads):
                import torch

                if not bool(torch.isfinite(grads).all()):
                    raise ValueError("grads contains NaN or infinite values")
                h = grads.detach().to(torch.float16).cpu().numpy()
            else:
                if not np.isfinite(grads).all():
                    raise ValueError("grads contains NaN or infinite values")
                with np.errstate(over="ignore"):
                    h = grads.astype(np.float16)
            if not np.isfinite(h).all():
                raise ValueError("grads overflows float16 (|value| > 65504); rescale it or use dtype='int8'")
            return h, None
        if self._quantize is None:
            if _is_tensor(grads):
                import torch

                if not bool(torch.isfinite(grads).all()):
                    raise ValueError("grads contains NaN or infinite values")
            else:
                grads = np.asarray(grads, dtype=np.float32)
                if not np.isfinite(grads).all():
                    raise ValueError("grads contains NaN or infinite values (or values beyond float32)")
            q, scale = quantize_int8(grads)
        else:
            out = self._quantize(grads)
            if not isinstance(out, tuple) or len(out) != 2:
                raise TypeError("quantize must return a pair (q int8 [B, dim], scale float32 [B])")
            q, scale = _to_numpy(out[0]), _to_numpy(out[1]).reshape(-1)
            if q.dtype != np.int8 or q.shape != (grads.shape[0], self.dim):
                raise TypeError(
                    f"quantize returned q with dtype {q.dtype} and shape {q.shape}; "
                    f"expected int8 {[grads.shape[0], self.dim]}"
                )
            if scale.shape != (grads.shape[0],):
                raise TypeError(f"quantize returned scale with shape {scale.shape}; expected [{grads.shape[0]}]")
            scale = scale.astype(np.float32, copy=False)
        if not np.isfinite(scale).all():
            raise ValueError("grads contains NaN or infinite values (non-finite int8 scale)")
        if (scale < 0).any():
            raise ValueError("quantize returned negative scales")
        return q, scale

    def _buffer(self, ids: np.ndarray, data: np.ndarray, scales: np.ndarray | None) -> None:
        if self._buf_data is None:
            self._buf_ids = np.empty(self.shard_rows, np.int64)
            self._buf_data = np.empty((self.shard_rows, self.dim), np.int8 if self.dtype == "int8" else np.float16)
            self._buf_scales = np.empty(self.shard_rows, np.float32) if self.dtype == "int8" else None
        start, n = 0, ids.shape[0]
        while start < n:
            take = min(n - start, self.shard_rows - self._buf_n)
            lo, hi = self._buf_n, self._buf_n + take
            self._buf_ids[lo:hi] = ids[start : start + take]
            self._buf_data[lo:hi] = data[start : start + take]
            if self._buf_scales is not None and scales is not None:
                self._buf_scales[lo:hi] = scales[start : start + take]
            self._pending.update(int(i) for i in ids[start : start + take])
            self._buf_n = hi
            start += take
            if self._buf_n == self.shard_rows:
                self._flush()

    def _flush(self) -> None:
        n = self._buf_n
        if n == 0:
            return
        assert self._buf_data is not None
        scales = self._buf_scales[:n] if self._buf_scales is not None else None
        self._write_shard(self._buf_ids[:n], self._buf_data[:n], scales)
        self._buf_n = 0
        self._pending.clear()

    def flush(self) -> None:
        """Write the buffered rows now as a (short) shard."""
        if self._closed:
            raise ValueError("this StoreWriter is closed")
        self._flush()

    def _write_shard(self, ids: np.ndarray, data: np.ndarray, scales: np.ndarray | None) -> None:
        index = len(self._shards)
        names = _shard_files(self.rank, index, self.dtype)
        arrays = {"data": data, "ids": ids}
        if scales is not None:
            arrays["scales"] = scales
        files: dict[str, dict[str, Any]] = {}
        for role, arr in arrays.items():
            info = _save_npy(self.path / f"{_TMP}{names[role]}", arr)
            files[role] = {"name": names[role], **info, "xxh3_64": _block_checksums(arr)}
        _hook("shard-temp-written")
        for i, role in enumerate(arrays):
            os.replace(self.path / f"{_TMP}{names[role]}", self.path / names[role])
            if i == 0:
                _hook("shard-renamed-partial")
        _fsync_dir(self.path)
        _hook("shard-renamed")
        entry = {"index": index, "rank": self.rank, "rows": int(ids.shape[0]), "check_rows": CHECK_ROWS, "files": files}
        shards = self._shards + [entry]
        part = _header(self.dim, self.dtype, self.config)
        part.update({"rank": self.rank, "num_rows": int(self.num_rows + ids.shape[0]), "shards": shards})
        _write_json_atomic(self.path, _part_name(self.rank), part, stage_hooks=True)
        _hook("manifest-written")
        self._shards = shards
        self._done_ids = np.concatenate([self._done_ids, ids])
        self._done_sorted = np.sort(self._done_ids)

    # -- closing ---------------------------------------------------------------

    def close(self) -> None:
        """Write the last partial shard and release the rank lock. Idempotent."""
        if self._closed:
            return
        try:
            self._flush()
        finally:
            self._closed = True
            self._buf_data = self._buf_scales = None
            self._release_lock()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # no implicit flush: only release the lock
        try:
            self._release_lock()
        except Exception:  # pragma: no cover
            pass

    def __repr__(self) -> str:
        return (
            f"StoreWriter({str(self.path)!r}, dim={self.dim}, dtype={self.dtype!r}, rank={self.rank}, "
            f"rows={self.num_rows}, pending={self.num_pending}, shards={self.num_shards})"
        )
