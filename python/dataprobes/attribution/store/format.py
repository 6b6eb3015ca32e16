"""Store format: file names, manifest header checks, config comparison and
the int8 row codec.

The layout and durability protocol are described in
:mod:`dataprobes.attribution.store`.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

FORMAT = "dataprobes.gradient_store"
#: Version written by this code. Version 2 adds per-block ``xxh3_64``
#: checksums (``check_rows`` rows a block) to every shard file entry.
FORMAT_VERSION = 2
#: Versions this code reads (version-1 stores have no block checksums).
READ_VERSIONS = (1, 2)
#: Rows per checksummed block of a shard file (a multiple of the scoring tile).
CHECK_ROWS = 1024
HEADER_NAME = "manifest.json"
DTYPES = ("int8", "float16")
_TMP = ".tmp-"


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
        raise TypeError(
            f"{name} must be a dict (JSON object) describing the projection/capture, got {type(config).__name__}"
        )
    try:
        out = json.loads(json.dumps(dict(config), sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must be JSON-serialisable (str keys; str/int/float/bool/None/list/dict values): {exc}"
        ) from exc
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


def check_same_config(
    config: Mapping[str, Any] | None, reference: dict[str, Any], *, name: str, against: str, hint: str
) -> dict[str, Any]:
    """The one comparison of capture configs: normalise ``config`` (JSON
    round trip; ``TypeError`` if it is not a JSON object) and raise
    ``ValueError`` "``name`` differs from ``against`` in keys: key (ours vs
    theirs), ...; ``hint``" unless it equals ``reference``. Returns the
    normalised config."""
    cfg = _normalize_config(config, name)
    diff = config_diff(cfg, reference)
    if diff:
        raise ValueError(f"{name} differs from {against} in keys: {_describe_diff(cfg, reference, diff)}; {hint}")
    return cfg


def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _to_numpy(x: Any) -> np.ndarray:
    if _is_tensor(x):
        return np.asarray(x.detach().cpu().numpy())
    return np.asarray(x)


# ----------------------------------------------------------------------------
# quantisation


def quantize_int8(x: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric int8 quantisation: ``x[i] ≈ q[i] * scale[i]``.

    The one int8 row encoding of the store: ``scale = max|x[i]| / 127`` (0 for
    an all-zero row), ``q = round(x / scale)`` (the correctly rounded float32
    quotient, rounded half to even), so every entry is within ``scale / 2`` of
    the input (plus float32 rounding). Accepts a numpy array or a torch tensor
    of shape [B, dim]; a tensor is quantised on its own device by
    :func:`dataprobes.attribution.kernels.quantize_int8_reference` (the torch
    twin of this function, which the Triton kernel matches bit for bit).
    Returns numpy arrays ``(q int8 [B, dim], scale float32 [B])``.
    """
    if _is_tensor(x):
        import torch

        from ..kernels.quant import quantize_int8_reference

        q_t, scale_t = quantize_int8_reference(x.detach().to(torch.float32))
        return q_t.cpu().numpy(), scale_t.cpu().numpy()
    a = np.asarray(x, dtype=np.float32)
    scale = (
        (np.abs(a).max(axis=1) / np.float32(127.0)).astype(np.float32)
        if a.shape[1]
        else np.zeros(a.shape[0], np.float32)
    )
    divisor = np.where(scale > 0, scale, np.float32(1.0))
    q = np.rint(a / divisor[:, None])
    np.clip(q, -127, 127, out=q)
    return q.astype(np.int8), scale


def dequantize_int8(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The one int8 row decoding (inverse of :func:`quantize_int8`):
    ``q * scale[:, None]`` in float32 (a new array). Its torch twin is
    :func:`dataprobes.attribution.kernels.dequantize_int8`."""
    out = np.array(q, dtype=np.float32)
    out *= np.asarray(scale, dtype=np.float32)[:, None]
    return out


# ----------------------------------------------------------------------------
# writer


def _header(dim: int, dtype: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "dim": dim, "dtype": dtype, "config": config}


def _check_header(
    found: Mapping[str, Any], dim: int, dtype: str, config: dict[str, Any], where: str, version: int = FORMAT_VERSION
) -> None:
    if found.get("format") != FORMAT:
        raise ValueError(f"{where} is not a dataprobes gradient store manifest (format={found.get('format')!r})")
    if found.get("format_version") != version:
        hint = (
            "; version-1 stores are read-only for this dataprobes: write new captures to a new directory"
            if found.get("format_version") in READ_VERSIONS
            else ""
        )
        raise ValueError(
            f"{where} has format_version {found.get('format_version')!r}; expected version {version} "
            f"(this dataprobes writes version {FORMAT_VERSION} and reads versions {READ_VERSIONS}){hint}"
        )
    if found.get("dim") != dim:
        raise ValueError(f"dim={dim} does not match the existing store ({where}: dim={found.get('dim')})")
    if found.get("dtype") != dtype:
        raise ValueError(f"dtype={dtype!r} does not match the existing store ({where}: dtype={found.get('dtype')!r})")
    check_same_config(
        config,
        found.get("config", {}),
        name="config",
        against=f"the existing store ({where})",
        hint="write to a new directory or pass the same config to resume",
    )


def _read_json(path: Path) -> Any:
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptShardError(
            f"manifest {path} is not valid JSON ({exc}); restore it from a backup, or move the store's shard files "
            "to a new directory and recapture"
        ) from exc


def _xxh3(rows: np.ndarray) -> str:
    """``xxh3_64`` of the bytes of a C-contiguous array, as 16 hex digits."""
    return f"{xxhash.xxh3_64_intdigest(np.ascontiguousarray(rows).data):016x}"


def _block_checksums(arr: np.ndarray, check_rows: int = CHECK_ROWS) -> list[str]:
    """Checksums of consecutive blocks of ``check_rows`` rows of ``arr``."""
    return [_xxh3(arr[i : i + check_rows]) for i in range(0, arr.shape[0], check_rows)]
