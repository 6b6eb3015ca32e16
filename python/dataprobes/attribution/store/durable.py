"""Durable-write primitives of the store: fsync, hashing writes, atomic
replacement, and the crash-test hook (``dataprobes.attribution.store._TEST_HOOK``)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .format import _TMP


def _hook(stage: str) -> None:
    hook = getattr(sys.modules.get(__package__ or ""), "_TEST_HOOK", None)
    if hook is not None:
        hook(stage)


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


