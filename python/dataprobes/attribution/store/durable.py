"""Durable-write primitives of the store: hashing ``.npy`` writes, atomic
manifest replacement (through :mod:`dataprobes._durable`), the per-rank writer
lock and the crash-test hook (``dataprobes.attribution.store._TEST_HOOK``)."""

from __future__ import annotations

import errno
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..._durable import fsync_dir as _fsync_dir  # noqa: F401  (used by the writer)
from ..._durable import write_json_atomic
from .format import _TMP

try:  # POSIX advisory locks keep two writers off the same rank
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_BUSY = (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)


def _lock_path(path: Path, rank: int) -> Path:
    return path / f".lock.rank{rank:05d}"


def acquire_rank_lock(path: Path, rank: int) -> int | None:
    """Hold rank ``rank`` of the store at ``path`` exclusively (an ``flock`` on
    its lock file, released when the returned descriptor is closed); ``None``
    where advisory locks do not exist."""
    if fcntl is None:  # pragma: no cover
        return None
    fd = os.open(_lock_path(path, rank), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in _BUSY:
            raise RuntimeError(
                f"another StoreWriter holds rank {rank} of {path}; close it first or use a different rank"
            ) from exc
        raise
    return fd


def rank_writer_active(path: Path, rank: int) -> bool:
    """Whether a live :class:`StoreWriter` holds rank ``rank`` (its newest shard
    may be on disk before its manifest part lists it)."""
    if fcntl is None:  # pragma: no cover
        return False
    try:
        fd = os.open(_lock_path(path, rank), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in _BUSY
    finally:
        os.close(fd)  # also drops the shared lock if it was taken
    return False


def _hook(stage: str) -> None:
    hook = getattr(sys.modules.get(__package__ or ""), "_TEST_HOOK", None)
    if hook is not None:
        hook(stage)


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
    write_json_atomic(
        directory / name,
        obj,
        tmp=directory / f"{_TMP}{name}",
        before_rename=(lambda: _hook("manifest-temp-written")) if stage_hooks else None,
        indent=1,
        sort_keys=True,
    )


def _sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()
