"""Sharded on-disk store of compressed per-example gradients.

Layout of a store directory (``r`` = writer rank, ``s`` = shard index)::

    manifest.json                       store header: format version, dim, dtype,
                                        the capture/projection ``config``
    manifest.rank{r:05d}.json           one manifest part per writer rank: the
                                        header fields again, then one entry per
                                        complete shard (file names, rows,
                                        sha256 checksums, rank)
    rank{r:05d}-shard{s:06d}.int8.npy   [rows, dim] int8 (or ``.float16.npy``)
    rank{r:05d}-shard{s:06d}.scales.npy [rows] float32 per-row scales (int8 only)
    rank{r:05d}-shard{s:06d}.ids.npy    [rows] int64 example ids

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

import errno
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

try:  # POSIX advisory locks keep two writers off the same rank
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CorruptShardError",
    "GradientStore",
    "StoreWriter",
    "config_diff",
    "dequantize_int8",
    "quantize_int8",
]

FORMAT = "dataprobes.gradient_store"
FORMAT_VERSION = 1
HEADER_NAME = "manifest.json"
DTYPES = ("int8", "float16")
_TMP = ".tmp-"

#: Test hook: called with a stage name at each step of a shard write
#: ("shard-temp-written", "shard-renamed-partial", "shard-renamed",
#: "manifest-temp-written", "manifest-written"). Lets the crash tests stop a
#: writer at an exact point. ``None`` in normal use.
_TEST_HOOK: Callable[[str], None] | None = None


def _hook(stage: str) -> None:
    if _TEST_HOOK is not None:
        _TEST_HOOK(stage)


class CorruptShardError(ValueError):
    """A shard file does not match its manifest entry (checksum, shape, dtype)."""


# ----------------------------------------------------------------------------
# names and small helpers


def _part_name(rank: int) -> str:
    return f"manifest.rank{rank:05d}.json"


def _shard_stem(rank: int, index: int) -> str:
    return f"rank{rank:05d}-shard{index:06d}"


def _shard_files(rank: int, index: int, dtype: str) -> dict[str, str]:
    stem = _shard_stem(rank, index)
    files = {"data": f"{stem}.{dtype}.npy", "ids": f"{stem}.ids.npy"}
    if dtype == "int8":
        files["scales"] = f"{stem}.scales.npy"
    return files


_PART_RE = re.compile(r"^manifest\.rank(\d{5,})\.json$")


def _normalize_config(config: Mapping[str, Any] | None, name: str = "config") -> dict[str, Any]:
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise TypeError(f"{name} must be a dict (JSON object) describing the projection/capture, got {type(config).__name__}")
    try:
        out = json.loads(json.dumps(dict(config), sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be JSON-serialisable (str keys; str/int/float/bool/None/list/dict values): {exc}") from exc
    assert isinstance(out, dict)
    return out


def config_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the keys whose values differ between two JSON configs."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in a or key not in b:
                out.append(path)
            else:
                out.extend(config_diff(a[key], b[key], path))
        return out
    return [] if a == b and type(a) is type(b) else [prefix or "<config>"]


def _describe_diff(ours: dict[str, Any], theirs: dict[str, Any], keys: list[str]) -> str:
    def get(cfg: Any, path: str) -> Any:
        for part in path.split("."):
            if not isinstance(cfg, dict) or part not in cfg:
                return "<missing>"
            cfg = cfg[part]
        return cfg

    shown = ", ".join(f"{k} ({get(ours, k)!r} vs {get(theirs, k)!r})" for k in keys[:8])
    more = f" and {len(keys) - 8} more" if len(keys) > 8 else ""
    return shown + more


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


class _HashingWriter:
    """File wrapper that hashes everything written through it."""

    def __init__(self, f: Any) -> None:
        self._f = f
        self.sha256 = hashlib.sha256()
        self.nbytes = 0

    def write(self, data: Any) -> int:
        self.sha256.update(data)
        n = len(memoryview(data).cast("B"))
        self.nbytes += n
        self._f.write(data)
        return n


def _save_npy(path: Path, arr: np.ndarray) -> dict[str, Any]:
    """Write ``arr`` as .npy to ``path`` (fsynced); return its checksum entry."""
    with open(path, "wb") as f:
        w = _HashingWriter(f)
        np.save(w, np.ascontiguousarray(arr), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    return {"sha256": w.sha256.hexdigest(), "bytes": w.nbytes}


def _write_json_atomic(directory: Path, name: str, obj: Any, *, stage_hooks: bool = False) -> None:
    tmp = directory / f"{_TMP}{name}"
    data = json.dumps(obj, indent=1, sort_keys=True).encode()
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    if stage_hooks:
        _hook("manifest-temp-written")
    os.replace(tmp, directory / name)
    _fsync_dir(directory)


def _sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _to_numpy(x: Any) -> np.ndarray:
    if _is_tensor(x):
        return np.asarray(x.detach().cpu().numpy())
    return np.asarray(x)


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


# ----------------------------------------------------------------------------
# quantisation


def quantize_int8(x: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric int8 quantisation: ``x[i] ≈ q[i] * scale[i]``.

    ``scale = max|x[i]| / 127`` (0 for an all-zero row), ``q = round(x / scale)``
    (half to even), so every entry is within ``scale / 2`` of the input (plus
    float32 rounding). Accepts a numpy array or a torch tensor of shape
    [B, dim]; a tensor is quantised on its own device. Returns numpy arrays
    ``(q int8 [B, dim], scale float32 [B])``.
    """
    if _is_tensor(x):
        import torch

        t = x.detach().to(torch.float32)
        scale_t = t.abs().amax(dim=1) / 127.0
        safe = torch.where(scale_t > 0, scale_t, torch.ones_like(scale_t))
        q_t = torch.round(t / safe[:, None]).clamp_(-127, 127).to(torch.int8)
        return q_t.cpu().numpy(), scale_t.cpu().numpy().astype(np.float32, copy=False)
    a = np.asarray(x, dtype=np.float32)
    scale = (np.abs(a).max(axis=1) / np.float32(127.0)).astype(np.float32) if a.shape[1] else np.zeros(a.shape[0], np.float32)
    divisor = np.where(scale > 0, scale, np.float32(1.0))
    q = np.rint(a / divisor[:, None])
    np.clip(q, -127, 127, out=q)
    return q.astype(np.int8), scale


def dequantize_int8(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quantize_int8`: ``q * scale[:, None]`` in float32."""
    out = np.asarray(q, dtype=np.float32)
    out *= np.asarray(scale, dtype=np.float32)[:, None]
    return out


# ----------------------------------------------------------------------------
# writer


def _header(dim: int, dtype: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "dim": dim, "dtype": dtype, "config": config}


def _check_header(found: Mapping[str, Any], dim: int, dtype: str, config: dict[str, Any], where: str) -> None:
    if found.get("format") != FORMAT:
        raise ValueError(f"{where} is not a dataprobes gradient store manifest (format={found.get('format')!r})")
    if found.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{where} has format_version {found.get('format_version')!r}; this dataprobes reads and writes version {FORMAT_VERSION}"
        )
    if found.get("dim") != dim:
        raise ValueError(f"dim={dim} does not match the existing store ({where}: dim={found.get('dim')})")
    if found.get("dtype") != dtype:
        raise ValueError(f"dtype={dtype!r} does not match the existing store ({where}: dtype={found.get('dtype')!r})")
    stored = found.get("config", {})
    diff = config_diff(config, stored)
    if diff:
        raise ValueError(
            f"config differs from the existing store ({where}) in keys: {_describe_diff(config, stored, diff)}; "
            "write to a new directory or pass the same config to resume"
        )


def _read_json(path: Path) -> Any:
    with open(path, "rb") as f:
        return json.loads(f.read())


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
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        if isinstance(shard_rows, bool) or not isinstance(shard_rows, (int, np.integer)) or shard_rows < 1:
            raise ValueError(f"shard_rows must be a positive integer, got {shard_rows!r}")
        if rank is None:
            rank = _default_rank()
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 0:
            raise ValueError(f"rank must be a non-negative integer, got {rank!r}")
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
        if fcntl is None:  # pragma: no cover
            return
        fd = os.open(self.path / f".lock.rank{self.rank:05d}", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RuntimeError(
                    f"another StoreWriter holds rank {self.rank} of {self.path}; close it first or use a different rank"
                ) from exc
            raise
        self._lock_fd = fd

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
            with open(tmp, "wb") as f:
                f.write(json.dumps(header, indent=1, sort_keys=True).encode())
                f.flush()
                os.fsync(f.fileno())
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
                    raise CorruptShardError(f"shard file {entry['files']['ids']['name']} has shape {ids.shape}, manifest says {entry['rows']} rows")
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
                rest = name[len(_TMP):]
                stray = rest.startswith(own) or rest == _part_name(self.rank) or rest == f"{HEADER_NAME}.rank{self.rank:05d}"
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
                raise TypeError(f"quantize returned q with dtype {q.dtype} and shape {q.shape}; expected int8 {[grads.shape[0], self.dim]}")
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
            files[role] = {"name": names[role], **info}
        _hook("shard-temp-written")
        for i, role in enumerate(arrays):
            os.replace(self.path / f"{_TMP}{names[role]}", self.path / names[role])
            if i == 0:
                _hook("shard-renamed-partial")
        _fsync_dir(self.path)
        _hook("shard-renamed")
        entry = {"index": index, "rank": self.rank, "rows": int(ids.shape[0]), "files": files}
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

    def __enter__(self) -> "StoreWriter":
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


# ----------------------------------------------------------------------------
# reader


@dataclass(frozen=True)
class _Shard:
    rank: int
    index: int
    rows: int
    files: dict[str, dict[str, Any]]
    data: np.ndarray  # memmap [rows, dim]
    scales: np.ndarray | None  # memmap [rows]


class GradientStore:
    """Read-only view of a gradient store (all ranks merged).

    Rows are ordered by rank, then shard index, then append order; ``ids[i]``
    is the example id of row ``i``. Shards are memory-mapped (``np.load(...,
    mmap_mode="r")``); nothing but the ids is read at open.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        header_path = self.path / HEADER_NAME
        if not header_path.is_file():
            raise FileNotFoundError(f"{self.path} is not a gradient store: {HEADER_NAME} is missing")
        header = _read_json(header_path)
        if header.get("format") != FORMAT:
            raise ValueError(f"{header_path} is not a dataprobes gradient store manifest")
        if header.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{header_path} has format_version {header.get('format_version')!r}; expected {FORMAT_VERSION}")
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
        for rank, name in parts:
            part = _read_json(self.path / name)
            _check_header(part, self.dim, self.dtype, self.config, str(self.path / name))
            if part.get("rank") != rank:
                raise ValueError(f"{name} claims rank {part.get('rank')}")
            self._parts.append(part)
            for entry in part["shards"]:
                shard, shard_ids = self._open_shard(entry, name)
                self._shards.append(shard)
                ids.append(shard_ids)
        self._ids = np.concatenate(ids) if ids else np.empty(0, np.int64)
        self._ids.setflags(write=False)
        self._offsets = np.concatenate([[0], np.cumsum([s.rows for s in self._shards], dtype=np.int64)]).astype(np.int64)
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

    def _open_shard(self, entry: Mapping[str, Any], part_name: str) -> tuple[_Shard, np.ndarray]:
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
                    f"shard file {fname} has shape {arr.shape} and dtype {arr.dtype}; manifest {part_name} expects {shape} {dt}"
                )
            arrays[role] = arr
        shard = _Shard(int(entry["rank"]), int(entry["index"]), rows, dict(files), arrays["data"], arrays.get("scales"))
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
        cfg = _normalize_config(config, name)
        diff = config_diff(cfg, self.config)
        if diff:
            raise ValueError(
                f"{name} differs from the store's capture config in keys: {_describe_diff(cfg, self.config, diff)}; "
                "queries must be captured with the same projection and model/layer spec as the store"
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

    def read_raw(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Stored (not dequantised) rows ``[start, stop)``: (data, scales or None).

        A view into the memory map when the range lies in one shard, else a copy.
        """
        n = len(self)
        if not 0 <= start <= stop <= n:
            raise IndexError(f"row range [{start}, {stop}) outside the store of {n} rows")
        segs = list(self._segments(start, stop))
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

    def lookup(self, ids: Any) -> np.ndarray:
        """Float32 rows of the given example ids (``KeyError`` for unknown ids)."""
        arr = np.asarray(_to_numpy(ids), dtype=np.int64).reshape(-1)
        n = len(self)
        if n == 0:
            if arr.shape[0]:
                raise KeyError(f"example id {int(arr[0])} is not in the store")
            return np.empty((0, self.dim), np.float32)
        sorter = self._sorter if self._sorter is not None else np.arange(n)
        sorted_ids = self._ids[sorter]
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
            block = np.asarray(shard.data[local], dtype=np.float32)
            if shard.scales is not None:
                block *= shard.scales[local][:, None]
            out[sel] = block
        return out

    def iter_blocks(
        self, block_rows: int = 65536, *, device: "str | torch.device | None" = None, as_tensor: bool = False
    ) -> Iterator[tuple[np.ndarray, Any]]:
        """Yield ``(ids, rows)`` for consecutive blocks of ``block_rows`` rows.

        Rows are dequantised to float32 on the fly: numpy arrays by default, torch
        tensors when ``as_tensor=True`` or a ``device`` is given (int8 rows are
        moved to the device before dequantising). Blocks span shard boundaries;
        only the last block may be shorter.
        """
        if isinstance(block_rows, bool) or not isinstance(block_rows, (int, np.integer)) or block_rows < 1:
            raise ValueError(f"block_rows must be a positive integer, got {block_rows!r}")
        tensor = as_tensor or device is not None
        for start in range(0, len(self), int(block_rows)):
            stop = min(start + int(block_rows), len(self))
            ids = self._ids[start:stop]
            if not tensor:
                yield self.read(start, stop)
                continue
            import torch

            data, scales = self.read_raw(start, stop)
            dev = torch.device(device) if device is not None else torch.device("cpu")
            t = torch.from_numpy(np.array(data)).to(dev).to(torch.float32)
            if scales is not None:
                t *= torch.from_numpy(np.array(scales)).to(dev)[:, None]
            yield ids, t

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
