"""Training-data attribution: per-example gradients captured in an ordinary
PyTorch loop and compressed by Triton kernels (with torch fallbacks).

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
from .quality import cosine_scores, per_query_spearman, precision_at_k

__all__ = [
    "AdamPreconditioner",
    "GradientCapture",
    "LayoutEntry",
    "compress_flat",
    "cosine_scores",
    "dequantize_int8",
    "factored_project",
    "flatten_grads",
    "per_example_grads_func",
    "per_query_spearman",
    "precision_at_k",
    "projection_matrix",
    "quantize_int8",
    "sjlt",
]
