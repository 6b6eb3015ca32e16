"""A faithful port of DEITA's reference filter loop, the baseline for the
tests and for benches/bench_deita.py.

``IterativeFilter.filter`` (hkust-nlp/deita, src/deita/selection/filter/base.py)
with ``distance_metric="cosine"``, ``normalize_emb=True``, on the CPU: the
embeddings become one float64 array sorted by score (the reference goes
through ``np.array(df[...].values.tolist())``); for each batch of candidates
the kept rows are gathered again (``embeddings[filtered_indices]``), converted
to float32 chunk by chunk (``chunk_size``), both sides normalised twice (once
for ``normalize_emb``, once inside the cosine) and multiplied; a candidate is
rejected if its cosine to any kept row *or to any earlier candidate of its
batch* exceeds the threshold; the loop stops once ``data_size`` are kept and
the result is cut to ``data_size``.

One deliberate difference: the reference sorts with pandas' unstable
``sort_values``, so equal scores come out in an arbitrary order; the port sorts
stably (ties by index), the order ``diversity_filter`` defines. No code is
shared with the package.
"""

from __future__ import annotations

import numpy as np
import torch


def _compute_distance(matrix: torch.Tensor, matrix_2: torch.Tensor) -> torch.Tensor:
    matrix = matrix / matrix.norm(dim=1)[:, None]  # normalize_emb
    matrix_2 = matrix_2 / matrix_2.norm(dim=1)[:, None]
    matrix_norm = matrix / matrix.norm(dim=1)[:, None]  # cosine
    matrix_2_norm = matrix_2 / matrix_2.norm(dim=1)[:, None]
    return torch.mm(matrix_norm, matrix_2_norm.t())


def _distance_chunk_by_chunk(
    existing_emb: np.ndarray | torch.Tensor, cur_emb: torch.Tensor, chunk_size: int
) -> torch.Tensor:
    placeholder = torch.zeros((cur_emb.size(0), existing_emb.shape[0]), dtype=torch.float32)
    for i in range(0, existing_emb.shape[0], chunk_size):
        chunk = existing_emb[i : i + chunk_size]
        chunk = torch.as_tensor(chunk).to(torch.float32).clone()  # torch.tensor(chunk, dtype=float32)
        distance_matrix = _compute_distance(cur_emb, chunk)
        placeholder[:, i : i + distance_matrix.size(1)] = distance_matrix
    return placeholder


def reference_filter(
    embeddings: np.ndarray,
    scores: np.ndarray,
    data_size: int,
    threshold: float = 0.9,
    batch_size: int = 1,
    chunk_size: int = 100_000,
    sorted_float64: np.ndarray | None = None,
) -> np.ndarray:
    """Original indices kept by the reference loop, in selection order.
    ``sorted_float64`` (optional) is ``embeddings`` already sorted by score and
    converted to float64, to leave that one-off conversion out of a timing."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    emb = np.asarray(embeddings, dtype=np.float64)[order] if sorted_float64 is None else sorted_float64
    filtered = [0]
    for i in range(1, emb.shape[0], batch_size):
        cur = torch.tensor(emb[i : i + batch_size], dtype=torch.float32)
        if cur.ndim == 1:
            cur = cur.unsqueeze(0)
        batch_idx = torch.arange(i, i + cur.size(0), dtype=torch.int64)
        existing = emb[filtered]
        d_existed = _distance_chunk_by_chunk(existing, cur, chunk_size)
        d_existed_bool = torch.any(d_existed > threshold, dim=1)
        d_cur = _distance_chunk_by_chunk(cur, cur, chunk_size).tril(-1)
        d_cur_bool = torch.any(d_cur > threshold, dim=1)
        filtered.extend(batch_idx[~(d_existed_bool | d_cur_bool)].tolist())
        if data_size > -1 and len(filtered) >= data_size:
            break
    kept = np.asarray(filtered, dtype=np.int64)
    if data_size > -1:
        kept = kept[:data_size]
    return order[kept]
