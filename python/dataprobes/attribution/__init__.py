"""Training-data attribution: per-example gradients captured in an ordinary
PyTorch loop, compressed by Triton kernels (with torch fallbacks), kept in a
sharded gradient store and scored with streamed top-k.

Needs PyTorch (``pip install 'dataprobes[torch]'``); Triton is optional.
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError("dataprobes.attribution needs PyTorch: pip install 'dataprobes[torch]'") from exc

from .capture import (
    AdamPreconditioner,
    GradientCapture,
    LayoutEntry,
    compress_flat,
    flatten_grads,
    per_example_grads_func,
)
from .kernels import dequantize_int8, factored_project, projection_matrix, quantize_int8, sjlt
from .pipeline import attribution_callback, capture_batches, capture_config, capture_to_store
from .quality import cosine_scores, per_query_spearman, precision_at_k
from .scoring import METHODS, TILE_ROWS, GaussNewtonPreconditioner, TopK, fit_preconditioner, score
from .store import CorruptShardError, GradientStore, StoreWriter, config_diff

__all__ = [
    "METHODS",
    "TILE_ROWS",
    "AdamPreconditioner",
    "CorruptShardError",
    "GaussNewtonPreconditioner",
    "GradientCapture",
    "GradientStore",
    "LayoutEntry",
    "StoreWriter",
    "TopK",
    "attribution_callback",
    "capture_batches",
    "capture_config",
    "capture_to_store",
    "compress_flat",
    "config_diff",
    "cosine_scores",
    "dequantize_int8",
    "factored_project",
    "fit_preconditioner",
    "flatten_grads",
    "per_example_grads_func",
    "per_query_spearman",
    "precision_at_k",
    "projection_matrix",
    "quantize_int8",
    "score",
    "sjlt",
]
