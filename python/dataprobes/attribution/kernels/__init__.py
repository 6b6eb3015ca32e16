"""Compression kernels for per-example gradients: Triton, with a pure-torch
reference beside each (also the CPU fallback).

* :func:`sjlt`: count-sketch / sparse JL transform with in-kernel hashing;
* :func:`factored_project`: LoGra-style per-example projection of a linear
  layer's gradient, never forming it; :func:`projection_matrix`;
* :func:`quantize_int8` / :func:`dequantize_int8`: per-row int8 codes.

Each op takes ``backend="auto" | "triton" | "torch"``; ``"auto"`` runs the
Triton kernel when the tensors are on CUDA or Triton's CPU interpreter is on
(``TRITON_INTERPRET=1`` before ``triton`` is imported), and the torch
reference otherwise.
"""

from __future__ import annotations

from ._common import HAS_TRITON, INTERPRET
from .factored import factored_project, factored_reference, projection_matrix
from .quant import dequantize_int8, quantize_int8, quantize_int8_reference
from .sjlt import sjlt, sjlt_hashes, sjlt_reference

__all__ = [
    "HAS_TRITON",
    "INTERPRET",
    "dequantize_int8",
    "factored_project",
    "factored_reference",
    "projection_matrix",
    "quantize_int8",
    "quantize_int8_reference",
    "sjlt",
    "sjlt_hashes",
    "sjlt_reference",
]
