"""Durable, atomic file writes shared by the gradient store, the CLI and the demo.

A file written with :func:`write_atomic` appears under its final name only
when complete: the bytes go to a temporary file in the same directory (same
file system, so the rename is atomic), are flushed and fsynced, the file is
renamed over the final name with ``os.replace``, and the directory is fsynced
so the rename itself survives a power loss. A crash leaves either the old file
or the new one, never a torn one (at worst a stray temporary file). The
protocol, and how the store builds on it, is described in
``docs/architecture.md`` (store format).

Needs only the standard library.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["fsync_dir", "temp_beside", "write_atomic", "write_json_atomic", "write_synced"]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Fsync a directory so that renames and creations in it are durable
    (a no-op where directories cannot be opened)."""
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


def temp_beside(final: str | os.PathLike[str]) -> Path:
    """A fresh empty temporary file next to ``final`` (``.<name>.XXXX.part``),
    with the permissions a plain ``open`` would give."""
    final = Path(final)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp)


def write_synced(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` (truncating it), flush and fsync."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_atomic(
    final: str | os.PathLike[str],
    data: bytes,
    *,
    tmp: str | os.PathLike[str] | None = None,
    before_rename: Callable[[], None] | None = None,
) -> None:
    """Atomically replace ``final`` with ``data`` (see the module docstring).

    ``tmp``: the temporary path to use (default a fresh :func:`temp_beside`);
    it must lie in ``final``'s directory and is removed if the write fails.
    ``before_rename``: called once the temporary file is durable, just before
    the rename (the store's crash tests stop a writer there).
    """
    final = Path(final)
    tmp_path = temp_beside(final) if tmp is None else Path(tmp)
    try:
        write_synced(tmp_path, data)
        if before_rename is not None:
            before_rename()
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    fsync_dir(final.parent)


def write_json_atomic(
    final: str | os.PathLike[str],
    obj: Any,
    *,
    tmp: str | os.PathLike[str] | None = None,
    before_rename: Callable[[], None] | None = None,
    **dumps_kwargs: Any,
) -> None:
    """:func:`write_atomic` of ``json.dumps(obj, **dumps_kwargs)`` (UTF-8)."""
    write_atomic(final, json.dumps(obj, **dumps_kwargs).encode(), tmp=tmp, before_rename=before_rename)
