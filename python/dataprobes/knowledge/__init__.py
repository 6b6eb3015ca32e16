"""Knowledge probes: what a model memorised from a fact world.

- :func:`memory_level`: fraction of templates whose greedy completion yields
  each fact's object (Ye et al., arXiv 2409.15825), for TinyGPT on token
  worlds and for Hugging Face causal LMs on text triples;
- :func:`memory_buckets`: memory levels into buckets (five equal-width by
  default);
- :func:`level_exposure_table`: Spearman's rho of level against exposure and
  the bucket mix per exposure quantile.

The worlds themselves are :class:`dataprobes.FactWorld`. Importing this
package does not import PyTorch (only evaluating a model does).
"""

from __future__ import annotations

from .memory import (
    DEFAULT_NUM_BUCKETS,
    LevelExposure,
    level_exposure_table,
    memory_buckets,
    memory_level,
    normalize_answer,
)

__all__ = [
    "DEFAULT_NUM_BUCKETS",
    "LevelExposure",
    "level_exposure_table",
    "memory_buckets",
    "memory_level",
    "normalize_answer",
]
