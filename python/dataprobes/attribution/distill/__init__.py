"""Distil gradient-influence rankings into a small encoder (Influcoder;
Kachler, Sileo, Denis 2026), so attribution becomes an embedding lookup.

::

    from dataprobes.attribution.distill import GradientTeacher, Influcoder

    teacher = GradientTeacher(anchor_grads, pool_grads)      # cosines, served blockwise
    enc = Influcoder.from_config(vocab_size=V, max_len=T, dim=128)
    history = enc.fit(anchors, pool, teacher, eval=(anchors_ev, pool_ev, teacher_ev))
    top = enc.score(queries, enc.index(pool, "pool.index"), top_k=10)

See docs/math.md (Attribution: distillation) for the loss and the metrics.
"""

from __future__ import annotations

from .encoders import TextEncoder, TokenEncoder, TokenEncoderConfig
from .influcoder import FIT_DEFAULTS, FitHistory, Influcoder
from .loss import influcoder_loss
from .sampler import BlockSampler
from .teacher import DenseTeacher, GradientTeacher

__all__ = [
    "FIT_DEFAULTS",
    "BlockSampler",
    "DenseTeacher",
    "FitHistory",
    "GradientTeacher",
    "Influcoder",
    "TextEncoder",
    "TokenEncoder",
    "TokenEncoderConfig",
    "influcoder_loss",
]
