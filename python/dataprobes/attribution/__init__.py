"""Training-data attribution: per-example gradients captured in an ordinary
PyTorch loop, compressed by Triton kernels (with torch fallbacks), kept in a
sharded gradient store and scored with streamed top-k.

The package face is the workflow: :class:`GradientCapture` (with an
:class:`AdamPreconditioner`) → :func:`capture_to_store` / :class:`StoreWriter`
→ :class:`GradientStore` → :func:`score` (with :func:`fit_preconditioner` for
influence), and :func:`attribution_callback` for a Hugging Face ``Trainer``.
The building blocks stay in their submodules: the kernels in
:mod:`dataprobes.attribution.kernels`, the exact-gradient oracles in
:mod:`dataprobes.attribution.exact`, the quality metrics in
:mod:`dataprobes.attribution.quality` (the names this package exported before
are still importable from it).

Needs PyTorch (``pip install 'dataprobes[torch]'``); Triton is optional.
"""

from __future__ import annotations

from .._lazy import lazy_names
from .._torch import require_torch

require_torch("dataprobes.attribution")

from .capture import GradientCapture
from .pipeline import attribution_callback, capture_batches, capture_config, capture_to_store
from .precondition import AdamPreconditioner
from .scoring import METHODS, GaussNewtonPreconditioner, TopK, fit_preconditioner, score
from .store import CorruptShardError, GradientStore, StoreWriter

__all__ = [
    "METHODS",
    "AdamPreconditioner",
    "CorruptShardError",
    "GaussNewtonPreconditioner",
    "GradientCapture",
    "GradientStore",
    "StoreWriter",
    "TopK",
    "attribution_callback",
    "capture_batches",
    "capture_config",
    "capture_to_store",
    "fit_preconditioner",
    "score",
]

# Names this package exported before its face was narrowed to the workflow:
# still importable from here (resolved on first use), documented in their submodules.
_MOVED = {
    "LayoutEntry": "targets",
    "TILE_ROWS": "scoring",
    "compress_flat": "exact",
    "flatten_grads": "exact",
    "per_example_grads_func": "exact",
    "config_diff": "store",
    "dequantize_int8": "kernels",
    "factored_project": "kernels",
    "projection_matrix": "kernels",
    "quantize_int8": "kernels",
    "sjlt": "kernels",
    "cosine_scores": "quality",
    "per_query_spearman": "quality",
    "precision_at_k": "quality",
}


__getattr__, __dir__ = lazy_names(__name__, globals(), _MOVED)
