"""Teacher scores for distillation, served block by block.

The teacher of an Influcoder is the matrix ``L[a, p] = cos(φ(anchor_a),
φ(pool_p))`` of per-example gradient features ``φ`` (any
:class:`~dataprobes.attribution.GradientCapture` mode). Training reads it one
``k × m`` block at a time, so :class:`GradientTeacher` never forms the
``A × P`` matrix: it keeps (or reads from a
:class:`~dataprobes.attribution.GradientStore`) the features and computes the
cosines of the rows and columns a block asks for. A precomputed matrix is
wrapped by :class:`DenseTeacher`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..._validation import check_bool, check_int
from ..store import GradientStore, dequantize_int8

__all__ = ["DenseTeacher", "GradientTeacher", "as_teacher"]

_CHUNK = 512  # anchors per streamed step in top_candidates / rows
_VERIFY_ROWS = 16384  # rows per read when a store is verified at construction


def _check_finite(name: str, t: torch.Tensor) -> None:
    bad = ~torch.isfinite(t).all(dim=1)
    if bool(bad.any()):
        rows = torch.nonzero(bad).reshape(-1)[:5].tolist()
        raise ValueError(f"{name} has non-finite (NaN or inf) rows, e.g. rows {rows}: a teacher must be finite")


def _as_float_2d(name: str, x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach().to("cpu")
    else:
        try:
            t = torch.as_tensor(np.asarray(x))
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name} must be a 2-D float array or tensor: {exc}") from exc
    if (
        t.dtype == torch.bool
        or t.is_complex()
        or not (t.is_floating_point() or t.dtype.is_signed or t.dtype == torch.uint8)
    ):
        raise TypeError(f"{name} must be a real-valued 2-D array, got dtype {t.dtype}")
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D, got shape {tuple(t.shape)}")
    return t.to(torch.float32)


class DenseTeacher:
    """A precomputed teacher score matrix ``[A, P]`` (finite; any scale)."""

    def __init__(self, scores: Any) -> None:
        t = _as_float_2d("teacher", scores)
        if t.shape[0] == 0 or t.shape[1] == 0:
            raise ValueError(f"teacher is empty, shape {tuple(t.shape)}")
        _check_finite("teacher", t)
        self.scores = t.contiguous()

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.scores.shape[0]), int(self.scores.shape[1]))

    def block(self, rows: np.ndarray, cols: np.ndarray) -> torch.Tensor:
        """Teacher scores ``[len(rows), len(cols)]``."""
        r = torch.as_tensor(rows, dtype=torch.int64)
        c = torch.as_tensor(cols, dtype=torch.int64)
        return self.scores.index_select(0, r).index_select(1, c)

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Whole rows ``[stop − start, P]``."""
        return self.scores[start:stop]

    def top_candidates(self, h: int) -> np.ndarray:
        """Each anchor's ``h`` highest-scoring pool indices ``[A, h]`` (int64)."""
        h = min(check_int("h", h, 1), self.shape[1])
        return torch.topk(self.scores, h, dim=1).indices.numpy().astype(np.int64)


class _Features:
    """Unit-normalised feature rows from an array or a GradientStore.

    A store that verifies its reads is verified once, whole, here (one
    streamed pass over its checksummed blocks); rows are then read without
    re-checking. Training asks for a few scattered rows per step, and
    verifying each read would hash the whole 1,024-row block around every row
    again, each step (at ``d = 8192`` that is ~8 MiB a row: several times the
    cost of a student step)."""

    def __init__(self, name: str, x: Any, normalize: bool) -> None:
        self.name = name
        self.normalize = normalize
        self.store: GradientStore | None = None
        if isinstance(x, GradientStore):
            self.store = x
            self.n, self.dim = len(x), x.dim
            self._ids = x.ids
            self.data: torch.Tensor | None = None
            if x.verify_reads:
                for s in range(0, self.n, _VERIFY_ROWS):
                    x.read_raw(s, min(s + _VERIFY_ROWS, self.n), verify=True)
        else:
            t = _as_float_2d(name, x)
            _check_finite(name, t)
            self.data = self._norm(t)
            self.n, self.dim = int(t.shape[0]), int(t.shape[1])
        if self.n == 0:
            raise ValueError(f"{name} has no rows")

    def _norm(self, t: torch.Tensor) -> torch.Tensor:
        if not self.normalize:
            return t
        n = t.norm(dim=1, keepdim=True)
        return torch.where(n > 0, t / torch.where(n > 0, n, 1.0), t)

    def take(self, idx: np.ndarray) -> torch.Tensor:
        if self.data is not None:
            return self.data.index_select(0, torch.as_tensor(idx, dtype=torch.int64))
        assert self.store is not None
        t = torch.from_numpy(self.store.lookup(self._ids[np.asarray(idx, dtype=np.int64)], verify=False))
        _check_finite(self.name, t)
        return self._norm(t)

    def span(self, start: int, stop: int) -> torch.Tensor:
        if self.data is not None:
            return self.data[start:stop]
        assert self.store is not None
        data, scales = self.store.read_raw(start, stop, verify=False)
        rows = dequantize_int8(data, scales) if scales is not None else np.asarray(data, dtype=np.float32)
        t = torch.from_numpy(rows)
        _check_finite(self.name, t)
        return self._norm(t)


class GradientTeacher:
    """Teacher scores ``L[a, p] = cos(φ_a, φ_p)`` computed lazily from
    gradient features: ``anchors`` ``[A, d]`` and ``pool`` ``[P, d]`` (arrays,
    tensors, or :class:`~dataprobes.attribution.GradientStore` s, read in store
    order). Memory: the features, never the ``A × P`` matrix. A store that
    verifies its reads (the default) is checked whole, once, when the teacher
    is built (:class:`~dataprobes.attribution.CorruptShardError` then);
    blocks are read from it unchecked afterwards.

    ``normalize=False`` uses raw inner products instead of cosines (for
    features that are already unit-normalised this is the same and skips the
    division).
    """

    def __init__(self, anchors: Any, pool: Any, *, normalize: bool = True, block_rows: int = 16384) -> None:
        self.normalize = check_bool("normalize", normalize)
        self.block_rows = check_int("block_rows", block_rows, 1)
        self.anchors = _Features("anchors", anchors, self.normalize)
        self.pool = _Features("pool", pool, self.normalize)
        if self.anchors.dim != self.pool.dim:
            raise ValueError(f"anchor features have dim {self.anchors.dim}, pool features {self.pool.dim}")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.anchors.n, self.pool.n)

    def __repr__(self) -> str:
        return f"GradientTeacher(anchors={self.anchors.n}, pool={self.pool.n}, dim={self.anchors.dim})"

    def block(self, rows: np.ndarray, cols: np.ndarray) -> torch.Tensor:
        """Teacher scores ``[len(rows), len(cols)]``."""
        return self.anchors.take(rows) @ self.pool.take(cols).T

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Whole rows ``[stop − start, P]``, streamed over the pool."""
        a = self.anchors.span(start, stop)
        return torch.cat(
            [
                a @ self.pool.span(s, min(s + self.block_rows, self.pool.n)).T
                for s in range(0, self.pool.n, self.block_rows)
            ],
            dim=1,
        )

    def top_candidates(self, h: int) -> np.ndarray:
        """Each anchor's ``h`` highest-scoring pool indices ``[A, h]`` (int64;
        which of several equal scores are kept is unspecified, as for
        ``torch.topk``), streamed:
        ``O(A·h + chunk·block_rows)`` memory."""
        h = min(check_int("h", h, 1), self.pool.n)
        out = np.empty((self.anchors.n, h), np.int64)
        for a0 in range(0, self.anchors.n, _CHUNK):
            a = self.anchors.span(a0, min(a0 + _CHUNK, self.anchors.n))
            best_s = torch.full((a.shape[0], 0), float("-inf"))
            best_i = torch.empty((a.shape[0], 0), dtype=torch.int64)
            for p0 in range(0, self.pool.n, self.block_rows):
                s = a @ self.pool.span(p0, min(p0 + self.block_rows, self.pool.n)).T
                # the block's own top h first, then merged with the running top h:
                # no [chunk, block_rows] index matrix and no top-k over it twice
                bs, bi = torch.topk(s, min(h, s.shape[1]), dim=1)
                cs = torch.cat([best_s, bs], dim=1)
                ci = torch.cat([best_i, bi + p0], dim=1)
                top = torch.topk(cs, min(h, cs.shape[1]), dim=1).indices
                best_s, best_i = cs.gather(1, top), ci.gather(1, top)
            out[a0 : a0 + a.shape[0]] = best_i.numpy()
        return out


def as_teacher(teacher: Any, shape: tuple[int, int], name: str = "teacher") -> DenseTeacher | GradientTeacher:
    """A :class:`DenseTeacher` or :class:`GradientTeacher` checked against the
    ``(anchors, pool)`` sizes ``shape``."""
    t = teacher if isinstance(teacher, (DenseTeacher, GradientTeacher)) else None
    if t is None:
        try:
            t = DenseTeacher(teacher)
        except TypeError as exc:
            raise TypeError(
                f"{name} must be an [anchors, pool] score matrix or a GradientTeacher, got {type(teacher).__name__}"
            ) from exc
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from exc
    if t.shape != tuple(shape):
        raise ValueError(
            f"{name} has shape {t.shape} but there are {shape[0]} anchors and {shape[1]} pool items: "
            "teacher[a, p] must score anchor a against pool item p"
        )
    return t
