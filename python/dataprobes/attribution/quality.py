"""Quality of attribution scores, measured where the truth is known.

* **Fidelity** (:func:`per_query_spearman`): how well compressed-gradient
  scores reproduce the exact-gradient scores, as the Spearman rank
  correlation per query over the training examples (docs/math.md, Attribution: agreement
  with exact-gradient scores).
* **Distillation** (:func:`spearman_metrics`): how well a student's scores
  (an :class:`~dataprobes.attribution.distill.Influcoder`) rank like the
  teacher's, per anchor and after averaging over anchors.
* **Planted ground truth** (:func:`precision_at_k`): a model trained on a
  :class:`~dataprobes.Mixture` of processes; a query from component c should
  retrieve training examples of component c.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._validation import check_int


def _as_2d(name: str, x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
    else:
        try:
            a = np.asarray(x)
        except Exception as exc:  # ragged nested lists and the like
            raise TypeError(f"{name} must be a 2-D real array or tensor: {exc}") from exc
        if a.dtype.kind not in "iuf":
            raise TypeError(f"{name} must be a 2-D real array or tensor, got {a.dtype} values")
        t = torch.from_numpy(np.ascontiguousarray(a))
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must hold real numbers, got {t.dtype}")
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.double()
    return t.double()


def cosine_scores(queries: Any, train: Any) -> torch.Tensor:
    """``[Q, N]`` cosine similarities between query and training vectors."""
    q = _as_2d("queries", queries)
    t = _as_2d("train", train)
    if q.shape[1] != t.shape[1]:
        raise ValueError(f"queries have dim {q.shape[1]}, train has dim {t.shape[1]}")
    qn = q / q.norm(dim=1, keepdim=True).clamp_min(1e-300)
    tn = t / t.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return qn @ tn.T


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Average ranks (0-based) along the last dimension of a 2-D tensor: ties
    share the mean of the positions they occupy (scipy's ``rankdata`` minus 1).
    Vectorised: sort each row, find the runs of equal values, and give every
    element the midpoint of its run."""
    n = x.shape[-1]
    if n == 0:
        return torch.empty_like(x, dtype=torch.float64)
    v, order = x.sort(dim=-1, stable=True)
    pos = torch.arange(n, dtype=torch.float64).expand_as(v)
    new_run = torch.ones_like(v, dtype=torch.bool)
    new_run[:, 1:] = v[:, 1:] != v[:, :-1]
    # first position of each element's run: running max of run starts
    start = torch.where(new_run, pos, torch.zeros_like(pos)).cummax(dim=-1).values
    # last position of each element's run: running min from the right of run ends
    end_run = torch.ones_like(new_run)
    end_run[:, :-1] = new_run[:, 1:]
    big = torch.full_like(pos, float(n))
    end = torch.where(end_run, pos, big).flip(-1).cummin(dim=-1).values.flip(-1)
    ranks = torch.empty_like(pos)
    ranks.scatter_(-1, order, (start + end) / 2)
    return ranks


def per_query_spearman(exact: Any, approx: Any) -> np.ndarray:
    """Spearman rank correlation of each row of ``approx`` [Q, N] with the
    same row of ``exact`` [Q, N] (average ranks for ties). A constant row
    ranks nothing: its correlation is reported as 0 (scipy gives nan)."""
    a = _as_2d("exact", exact)
    b = _as_2d("approx", approx)
    if a.shape != b.shape:
        raise ValueError(f"exact and approx must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    ra, rb = _ranks(a), _ranks(b)
    ra = ra - ra.mean(1, keepdim=True)
    rb = rb - rb.mean(1, keepdim=True)
    den = ra.norm(dim=1) * rb.norm(dim=1)
    return ((ra * rb).sum(1) / den.clamp_min(1e-300)).numpy()


@dataclass(frozen=True)
class SpearmanMetrics:
    """Result of :func:`spearman_metrics`; also readable as a mapping
    (``m["aggregated"]``, ``dict(m)``).

    ``per_anchor``: mean over anchors of the row-wise Spearman correlation;
    ``per_anchor_std``: its standard deviation over anchors (population);
    ``aggregated``: Spearman correlation of the anchor-averaged scores;
    ``rows``: the per-anchor correlations ``[A]``.
    """

    per_anchor: float
    per_anchor_std: float
    aggregated: float
    rows: np.ndarray

    def keys(self) -> tuple[str, ...]:
        return ("per_anchor", "per_anchor_std", "aggregated")

    def __getitem__(self, key: str) -> float:
        if key not in self.keys():
            raise KeyError(key)
        return float(getattr(self, key))

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def to_dict(self) -> dict[str, float]:
        return {k: self[k] for k in self.keys()}


def spearman_metrics(pred: Any, gt: Any) -> SpearmanMetrics:
    """Rank agreement of predicted scores ``pred`` [A, P] with teacher scores
    ``gt`` [A, P] (Influcoder, Kachler et al. 2026; docs/math.md, Attribution:
    distillation).

    * per-anchor: ``mean_a ρ(pred[a], gt[a])`` — the ranking of the pool for
      one query (retrieval); a row that ranks nothing (constant, or holding a
      NaN/inf in either matrix) counts as 0, as the reference does with
      scipy's NaN;
    * aggregated: ``ρ(mean_a pred[a], mean_a gt[a])`` over the finite rows —
      the ranking of the pool for the whole anchor set (selection).

    ρ is Spearman's rank correlation with average ranks for ties (equal to
    ``scipy.stats.spearmanr``).
    """
    a = _as_2d("pred", pred)
    b = _as_2d("gt", gt)
    if a.shape != b.shape:
        raise ValueError(f"pred and gt must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] == 0 or a.shape[1] < 2:
        raise ValueError(f"need at least one anchor and two pool items, got shape {tuple(a.shape)}")
    finite = torch.isfinite(a).all(1) & torch.isfinite(b).all(1)
    rows = np.zeros(a.shape[0])
    if bool(finite.any()):
        rows[finite.numpy()] = per_query_spearman(b[finite], a[finite])
    if bool(finite.any()):
        agg = float(per_query_spearman(b[finite].mean(0, keepdim=True), a[finite].mean(0, keepdim=True))[0])
    else:
        agg = 0.0
    return SpearmanMetrics(float(rows.mean()), float(rows.std()), agg, rows)


def precision_at_k(scores: Any, query_labels: Any, train_labels: Any, k: int) -> np.ndarray:
    """Fraction of each query's ``k`` highest-scoring training examples whose
    label equals the query's (ties broken by index)."""
    s = _as_2d("scores", scores)
    ql = np.asarray(query_labels)
    tl = np.asarray(train_labels)
    if ql.shape != (s.shape[0],) or tl.shape != (s.shape[1],):
        raise ValueError(f"labels must have shapes ({s.shape[0]},) and ({s.shape[1]},), got {ql.shape} and {tl.shape}")
    k = check_int("k", k, 1, s.shape[1])
    top = torch.topk(s, k, dim=1, sorted=False).indices.numpy()
    return (tl[top] == ql[:, None]).mean(1)
