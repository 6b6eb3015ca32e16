"""Streamed scoring of queries against a gradient store, with a running top-k.

:func:`score` reads the store block by block (memory-mapped shards, the next
block prefetched on a thread), moves each block to the device (a GPU when one
is present), computes the ``[Q, block]`` scores and merges them into a running
per-query top-k. Memory is bounded by the block and ``Q × top_k``, never by the
number of queries times the store size: no ``[Q, n]`` matrix exists unless
``return_full=True`` (the only per-row state is O(n) int64 id bookkeeping).

Methods (``g_q`` a query row, ``g_t`` a stored row, dequantised):

* ``"ip"``: ``g_qᵀ g_t``;
* ``"cosine"``: ``g_qᵀ g_t / (‖g_q‖ ‖g_t‖)``; a zero vector scores 0;
* ``"influence"``: ``g_qᵀ (ΦᵀΦ/n + λI)⁻¹ g_t``, the damped Gauss–Newton
  (TRAK-style) preconditioner in the compressed space, where ``Φ`` stacks the
  ``n`` stored rows. ``ΦᵀΦ`` is accumulated in float64 streaming over the store
  (:func:`fit_preconditioner`), factorised with Cholesky, and applied to the
  queries once. The damping is **relative**: ``λ = damping · tr(ΦᵀΦ/n) / dim``
  (the mean eigenvalue times ``damping``), so one value works whatever the scale
  of the gradients; if the store is all zeros, ``λ = damping``.

Determinism. Ties are broken by example id (smaller id first): each score is
packed with the rank of its id into one int64 key, so the top-k is a total
order and the merge order cannot matter. Scores are computed on fixed tiles of
:data:`TILE_ROWS` rows aligned to the store's row positions (``block_rows`` is
rounded up to a multiple of the tile), so results are bit-identical whatever
``block_rows`` (for a given device and thread count).

``top_k`` larger than the store returns all ``n`` rows, sorted.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .._validation import check_bool, check_choice, check_positive_float, check_positive_int
from .capture import GradientCapture
from .store import GradientStore, check_same_config

__all__ = ["METHODS", "TILE_ROWS", "GaussNewtonPreconditioner", "TopK", "fit_preconditioner", "score"]

METHODS = ("cosine", "ip", "influence")

#: Rows per compute tile. Fixed so that scores never depend on ``block_rows``.
TILE_ROWS = 1024

_TINY = 1e-30
_LOW = 1 << 32


@dataclass(frozen=True)
class TopK:
    """Result of :func:`score`.

    ``ids[q, j]`` is the example id of the ``j``-th best stored row for query
    ``q`` and ``scores[q, j]`` its score (descending; equal scores ordered by
    ascending id). ``query_ids`` holds the query ids when the queries came from
    a :class:`GradientStore`. ``full`` is the ``[Q, n]`` score matrix (columns
    in store order, i.e. ``store.ids``) when ``return_full=True``.
    """

    ids: np.ndarray
    scores: np.ndarray
    method: str
    query_ids: np.ndarray | None = None
    full: np.ndarray | None = None


@dataclass(frozen=True)
class GaussNewtonPreconditioner:
    """``H = ΦᵀΦ/n + λI`` of a store, factorised (see :func:`fit_preconditioner`)."""

    gram: np.ndarray  # float64 [dim, dim]: ΦᵀΦ / n
    num_rows: int
    damping: float  # relative damping as given
    lam: float  # absolute λ added to the diagonal
    config: dict[str, Any]
    cholesky: torch.Tensor = field(repr=False)  # float64 lower factor of H (CPU)

    @property
    def dim(self) -> int:
        return int(self.gram.shape[0])

    def apply(self, queries: Any) -> np.ndarray:
        """``H⁻¹ g`` for each row ``g`` of ``queries`` [Q, dim] (float64)."""
        q = torch.as_tensor(np.asarray(queries, dtype=np.float64))
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must have shape [Q, {self.dim}], got {list(q.shape)}")
        return torch.cholesky_solve(q.T.contiguous(), self.cholesky).T.numpy().copy()


# ----------------------------------------------------------------------------
# argument checks


def _as_store(store: Any, verify_reads: bool | None = None) -> GradientStore:
    if isinstance(store, GradientStore):
        return store
    if isinstance(store, (str, os.PathLike)):
        return GradientStore(store, verify_reads=True if verify_reads is None else verify_reads)
    raise TypeError(f"store must be a GradientStore or a path to one, got {type(store).__name__}")


def _query_config(
    store: GradientStore, queries: Any, query_config: Mapping[str, Any] | None, capture: Any, check_config: Any
) -> Mapping[str, Any] | None:
    """The config the queries must match the store's with, or ``None`` when
    nothing is to be compared; refuses a bare array against a store that
    records a capture config unless the caller opts out."""
    if capture is not None:
        if not isinstance(capture, GradientCapture):
            raise TypeError(
                f"capture must be the GradientCapture that produced the queries, got {type(capture).__name__}"
            )
        if query_config is not None:
            raise ValueError("pass either capture= or query_config=, not both")
        query_config = capture.config
    if not check_bool("check_config", check_config):
        if query_config is not None:
            raise ValueError("check_config=False skips the config check: do not also pass query_config= or capture=")
        return None
    if isinstance(queries, GradientStore):
        return query_config if query_config is not None else queries.config
    if query_config is None and store.config:
        raise ValueError(
            "queries is a bare array but the store records how its rows were captured: pass capture=<the "
            "GradientCapture that produced the queries> (or query_config=capture_config(capture)) so the two are "
            "compared, or check_config=False to score without the check"
        )
    return query_config


def _as_queries(queries: Any, store: GradientStore) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(queries, GradientStore):
        if queries.dim != store.dim:
            raise ValueError(f"queries (a GradientStore) has dim {queries.dim} but the store has dim {store.dim}")
        if len(queries) == 0:
            raise ValueError("queries (a GradientStore) is empty")
        ids, rows = queries.read()
        return rows, np.array(ids)
    if isinstance(queries, torch.Tensor):
        if queries.is_complex():
            raise TypeError(f"queries must be real-valued, got {queries.dtype}")
        arr = queries.detach().to("cpu", torch.float32).numpy()
    else:
        try:
            arr = np.asarray(queries)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"queries must be a [Q, dim] float array or tensor, or a GradientStore: {exc}") from exc
        if arr.dtype.kind not in "fiub":
            raise TypeError(
                f"queries must be a real-valued [Q, dim] array or tensor, or a GradientStore; got dtype {arr.dtype}"
            )
        arr = arr.astype(np.float32)
    if arr.ndim != 2:
        raise ValueError(
            f"queries must be 2-D [Q, dim], got shape {list(arr.shape)} (wrap a single query as queries[None])"
        )
    if arr.shape[1] != store.dim:
        raise ValueError(f"queries has dim {arr.shape[1]} but the store has dim {store.dim}")
    if arr.shape[0] == 0:
        raise ValueError("queries is empty (0 rows)")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise ValueError(f"queries contains NaN or infinite values (row {int(np.flatnonzero(bad)[0])})")
    return np.ascontiguousarray(arr), None


def _device(device: Any) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# ----------------------------------------------------------------------------
# streaming


def _round_block(block_rows: int) -> int:
    return max(1, math.ceil(block_rows / TILE_ROWS)) * TILE_ROWS


def _keys(s: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
    """Pack float32 scores ``s`` [b, Q] (modified: -0.0 becomes +0.0) and the
    low key words ``low`` [b] (``2**32 - 1 - id rank``) into int64 keys [Q, b]
    whose descending order is (score descending, id ascending). Keys are
    unique, so the top-k of any union of blocks is one exact set."""
    s.add_(0.0)  # IEEE: -0.0 + 0.0 = +0.0, so equal scores get equal bits
    bits = s.view(torch.int32)
    bits = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # monotone in the float value
    return torch.add(low[None, :], bits.T, alpha=_LOW)


def _decode(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of :func:`_keys`: (float32 scores, id ranks)."""
    rank = (_LOW - 1) - (keys & (_LOW - 1))
    bits = keys >> 32
    bits = (bits ^ ((bits >> 31) & 0x7FFFFFFF)).to(torch.int32)
    return bits.view(torch.float32), rank


def _merge(best: torch.Tensor | None, keys: torch.Tensor, k: int) -> torch.Tensor:
    cand = keys if best is None else torch.cat([best, keys], dim=1)
    if cand.shape[1] <= k:
        return cand
    return torch.topk(cand, k, dim=1, largest=True, sorted=False).values


# ----------------------------------------------------------------------------
# influence preconditioner


def fit_preconditioner(
    store: GradientStore | str | os.PathLike[str],
    damping: float = 1e-3,
    *,
    block_rows: int = 16384,
    device: str | torch.device | None = None,
    verify_reads: bool | None = None,
    max_bytes: int | None = 4 << 30,
) -> GaussNewtonPreconditioner:
    """Accumulate ``ΦᵀΦ`` over the store in float64 and factorise
    ``H = ΦᵀΦ/n + λI`` with ``λ = damping · tr(ΦᵀΦ/n) / dim``.

    Costs one pass over the store and ``O(n · dim²)`` float64 flops; fit once
    and pass it to :func:`score` (``preconditioner=``) to score many query sets.
    ``verify_reads`` as in :func:`score`.

    Memory: the float64 ``dim × dim`` Gram matrix, its damped copy and its
    Cholesky factor, about ``4 · 8 · dim²`` bytes whatever the store size
    (2 GiB at ``dim = 8192``). It is computed before anything is allocated and
    a ``ValueError`` is raised when it exceeds ``max_bytes`` (default 4 GiB;
    ``None`` lifts the bound): compress to a smaller ``dim`` or pass a larger
    bound knowingly.
    """
    st = _as_store(store, verify_reads)
    block = _round_block(check_positive_int("block_rows", block_rows))
    damping = check_positive_float("damping", damping)
    n = len(st)
    if n == 0:
        raise ValueError(f"store is empty: {st.path} has no rows")
    need = 4 * 8 * st.dim * st.dim
    if max_bytes is not None and need > check_positive_int("max_bytes", max_bytes):
        raise ValueError(
            f"the influence preconditioner of a dim={st.dim} store needs about {need / 2**30:.1f} GiB "
            f"(4 float64 {st.dim}x{st.dim} matrices), more than max_bytes={max_bytes}: capture with a smaller "
            "dim (k_in/k_out or k), use method='cosine' or 'ip', or pass a larger max_bytes (None: no bound)"
        )
    dev = _device(device)
    gram = torch.zeros((st.dim, st.dim), dtype=torch.float64, device=dev)
    for _, _stop, data, scales in st.iter_raw_blocks(block, verify=verify_reads):
        raw = torch.from_numpy(data).to(dev)
        sc = torch.from_numpy(scales).to(dev, torch.float64) if scales is not None else None
        for t0 in range(0, raw.shape[0], TILE_ROWS):
            x = raw[t0 : t0 + TILE_ROWS].to(torch.float64)
            if sc is not None:
                x *= sc[t0 : t0 + TILE_ROWS, None]
            gram.addmm_(x.T, x)
    g = (gram / n).cpu()
    tr = float(torch.trace(g))
    lam = float(damping) * tr / st.dim if tr > 0 else float(damping)
    h = g + lam * torch.eye(st.dim, dtype=torch.float64)
    chol, info = torch.linalg.cholesky_ex(h)
    if int(info) != 0:
        raise ValueError(
            f"the damped Gauss-Newton matrix is not positive definite (damping={damping}); increase damping"
        )
    return GaussNewtonPreconditioner(g.numpy(), n, float(damping), lam, dict(st.config), chol)


# ----------------------------------------------------------------------------
# scoring


def score(
    store: GradientStore | str | os.PathLike[str],
    queries: Any,
    method: str = "cosine",
    top_k: int = 100,
    block_rows: int = 16384,
    damping: float = 1e-3,
    device: str | torch.device | None = None,
    query_config: Mapping[str, Any] | None = None,
    return_full: bool = False,
    *,
    preconditioner: GaussNewtonPreconditioner | None = None,
    verify_reads: bool | None = None,
    capture: GradientCapture | None = None,
    check_config: bool = True,
) -> TopK:
    """Top-``top_k`` stored examples for each query, streaming over the store.

    Parameters
    ----------
    store:
        A :class:`GradientStore` (or its path).
    queries:
        ``[Q, dim]`` float array or tensor of compressed query gradients, or a
        second :class:`GradientStore` (its config must equal the store's; its
        ids are returned as ``query_ids``). An array is scored only once its
        capture config has been compared with the store's: pass ``capture=``
        (or ``query_config=``); against a store that records a config, a bare
        array without either is refused (``ValueError``) unless
        ``check_config=False``.
    method:
        ``"cosine"``, ``"ip"`` or ``"influence"`` (see the module docstring).
    top_k:
        Results per query; more than the store holds returns all of it.
    block_rows:
        Rows read and moved to the device per step (rounded up to a multiple
        of :data:`TILE_ROWS`); memory is ``O(block_rows · (dim + Q))``.
        Results do not depend on it.
    damping:
        Relative damping of the influence preconditioner,
        ``λ = damping · tr(ΦᵀΦ/n)/dim``; ignored by the other methods and when
        ``preconditioner`` is given.
    device:
        Torch device for the computation; default CUDA when available, else CPU.
    query_config:
        Capture config of array/tensor queries (e.g.
        ``capture_config(query_capture)``); it must equal the store's config
        (``ValueError`` naming the differing keys otherwise).
    return_full:
        Also return the ``[Q, n]`` score matrix (``TopK.full``) — memory grows
        with the store; meant for small stores and tests.
    preconditioner:
        A :func:`fit_preconditioner` result to reuse (``method="influence"``).
    verify_reads:
        Check every block read against the checksums recorded at write time
        (a corrupt block raises :class:`~dataprobes.attribution.CorruptShardError`
        naming the shard file and rows). ``None`` (default) follows the store's
        ``verify_reads`` (on unless it was opened with ``verify_reads=False``);
        ``False`` skips the checks for this call (trusted media).
    capture:
        The :class:`~dataprobes.attribution.GradientCapture` that produced the
        array queries: its :attr:`~dataprobes.attribution.GradientCapture.config`
        must equal the store's (the easy safe path; same as
        ``query_config=capture_config(capture)``).
    check_config:
        ``False`` scores array queries without comparing any config (you vouch
        that they were captured like the store's rows).
    """
    st = _as_store(store, verify_reads)
    check_choice("method", method, METHODS)
    k_req = check_positive_int("top_k", top_k)
    block = _round_block(check_positive_int("block_rows", block_rows))
    n = len(st)
    if n == 0:
        raise ValueError(f"store is empty: {st.path} has no rows to score against")
    if n >= 1 << 32:  # pragma: no cover - the id rank must fit the low key word
        raise ValueError("stores of 2**32 rows or more are not supported")
    q_np, query_ids = _as_queries(queries, st)
    cfg = _query_config(st, queries, query_config, capture, check_config)
    if cfg is not None:
        name = "queries (a GradientStore) config" if cfg is getattr(queries, "config", None) else "query_config"
        st.check_compatible(cfg, name=name)
    dev = _device(device)
    k = min(k_req, n)

    if method == "influence":
        pre = (
            preconditioner
            if preconditioner is not None
            else fit_preconditioner(st, damping, block_rows=block, device=dev, verify_reads=verify_reads)
        )
        if pre.dim != st.dim:
            raise ValueError(f"preconditioner has dim {pre.dim} but the store has dim {st.dim}")
        check_same_config(
            pre.config,
            st.config,
            name="the preconditioner's config",
            against="the store's capture config",
            hint="the preconditioner was fitted on a store with a different config: fit it on this store",
        )
        q = torch.from_numpy(pre.apply(q_np).astype(np.float32)).to(dev)
    else:
        q = torch.from_numpy(q_np).to(dev)
        if method == "cosine":
            q = q / torch.linalg.vector_norm(q, dim=1, keepdim=True).clamp_min(_TINY)
    q_t = q.T.contiguous()  # [dim, Q]
    num_q = q_t.shape[1]

    low_np = (_LOW - 1) - st.id_rank()  # low key words: larger for smaller ids
    full = np.empty((num_q, n), np.float32) if return_full else None
    out_buf = torch.empty((block, num_q), dtype=torch.float32, device=dev)
    norm_buf = torch.empty(block, dtype=torch.float32, device=dev) if method == "cosine" else None
    best: torch.Tensor | None = None
    for start, stop, data, scales in st.iter_raw_blocks(block, verify=verify_reads):
        b = stop - start
        raw = torch.from_numpy(data).to(dev)
        out = out_buf[:b]
        # Reductions run per fixed tile (same shapes whatever block_rows; the
        # float32 tile stays in cache); elementwise work runs once per block.
        for t0 in range(0, b, TILE_ROWS):
            t1 = min(t0 + TILE_ROWS, b)
            x = raw[t0:t1].to(torch.float32)
            torch.mm(x, q_t, out=out[t0:t1])
            if norm_buf is not None:
                torch.linalg.vector_norm(x, dim=1, out=norm_buf[t0:t1])
        if norm_buf is not None:  # cosine: the int8 scale cancels
            out /= norm_buf[:b].clamp_min(_TINY)[:, None]
        elif scales is not None:
            out *= torch.from_numpy(scales).to(dev)[:, None]
        if full is not None:
            full[:, start:stop] = out.T.cpu().numpy()
        keys = _keys(out, torch.from_numpy(low_np[start:stop]).to(dev))
        best = _merge(best, keys, k)
    assert best is not None
    vals = torch.sort(best, dim=1, descending=True).values
    scores_t, rank = _decode(vals)
    ids = st.sorted_ids[rank.cpu().numpy()]
    scores_out = scores_t.cpu().numpy().copy()
    return TopK(ids=ids, scores=scores_out, method=method, query_ids=query_ids, full=full)
