"""Training-data attribution: per-example gradients captured in an ordinary
PyTorch loop and compressed by Triton kernels (with torch fallbacks).

Needs PyTorch (``pip install 'dataprobes[torch]'``); Triton is optional.
"""

from __future__ import annotations

try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError("dataprobes.attribution needs PyTorch: pip install 'dataprobes[torch]'") from exc

from .kernels import sjlt

__all__ = ["sjlt"]
