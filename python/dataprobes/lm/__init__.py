"""Probing language models with data probes (PyTorch).

The pieces of the data-probes experiment (Wang, Woisetschläger, Jacobsen et
al., ICML 2026), reusable in your own loop:

* :class:`ProbeDataset` / :class:`ProbeTensorDataset`: stream or fix probe
  batches, deterministic per (seed, worker, rank) with no overlap;
* :class:`TinyGPT`: a small decoder-only transformer;
* :func:`generate`: counter-based decoding (greedy, temperature, top-k / top-p);
* :func:`excess_loss`: per-position KL(truth ‖ model) against the exact law;
* :func:`generation_typicality` / :func:`self_typicality`: score a model's
  generations under the true process and against itself;
* :func:`train`: a plain training loop with a learning curve.

Every evaluation accepts a :class:`TinyGPT`, any ``transformers`` causal LM, or
any callable mapping ``[B, T]`` token ids to ``[B, T, V]`` logits.
"""

from __future__ import annotations

from .._torch import require_torch

require_torch("dataprobes.lm")

from .data import ProbeDataset, ProbeTensorDataset
from .evaluate import (
    ExcessLoss,
    GenerationReport,
    SelfTypicality,
    excess_loss,
    generation_typicality,
    self_typicality,
)
from .model import TinyGPT, TinyGPTConfig
from .sampling import generate
from .train import TrainResult, train

__all__ = [
    "ExcessLoss",
    "GenerationReport",
    "ProbeDataset",
    "ProbeTensorDataset",
    "SelfTypicality",
    "TinyGPT",
    "TinyGPTConfig",
    "TrainResult",
    "excess_loss",
    "generate",
    "generation_typicality",
    "self_typicality",
    "train",
]
