"""Quality of attribution scores, measured where the truth is known.

* **Fidelity** (:func:`per_query_spearman`): how well compressed-gradient
  scores reproduce the exact-gradient scores, as the Spearman rank
  correlation per query over the training examples (docs/math.md, Attribution: agreement
  with exact-gradient scores).
* **Planted ground truth** (:func:`precision_at_k`): a model trained on a
  :class:`~dataprobes.Mixture` of processes; a query from component c should
  retrieve training examples of component c.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._validation import check_int


def _as_2d(name: str, x: Any) -> torch.Tensor:
    t = torch.as_tensor(x)
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
    """Average ranks along the last dimension (ties share their mean rank)."""
    order = x.argsort(dim=-1, stable=True)
    ranks = torch.empty_like(x, dtype=torch.float64)
    ar = torch.arange(x.shape[-1], dtype=torch.float64).expand_as(x)
    ranks.scatter_(-1, order, ar)
    # average ties: rank of each distinct value = mean of its positions
    out = torch.empty_like(ranks)
    for i in range(x.shape[0]):
        _, inv, counts = torch.unique(x[i], return_inverse=True, return_counts=True)
        sums = torch.zeros(len(counts), dtype=torch.float64).index_add_(0, inv, ranks[i])
        out[i] = (sums / counts)[inv]
    return out


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
