"""Durable-write primitives of the store: hashing ``.npy`` writes, atomic
manifest replacement (through :mod:`dataprobes._durable`) and the crash-test
hook (``dataprobes.attribution.store._TEST_HOOK``)."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..._durable import fsync_dir as _fsync_dir  # noqa: F401  (used by the writer)
from ..._durable import write_json_atomic
from .format import _TMP


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
