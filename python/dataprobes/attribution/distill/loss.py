"""The Influcoder distillation loss (Kachler, Sileo, Denis 2026; docs/math.md,
Attribution: distillation).

On a ``k × m`` block of student scores ``S`` (cosines of embeddings) and
teacher scores ``L`` (cosines of gradient features)::

    loss = α · (1 − Pearson(vec S, vec L)) + (1 − α) · KL(softmax(L/τ) ‖ softmax(S/τ))

The Pearson term is taken over the whole block (it matches the scale-free
shape of the scores); the KL term is row-wise over the candidates with the
teacher as the target distribution, averaged over the rows (it matches each
anchor's ranking, sharpened by the temperature ``τ``).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..._validation import check_float_in, check_positive_float

__all__ = ["influcoder_loss"]

_EPS = 1e-12  # product of the centred norms below which a block has no correlation


def influcoder_loss(
    student: torch.Tensor, teacher: torch.Tensor, alpha: float = 0.5, tau: float = 0.05
) -> torch.Tensor:
    """Scalar loss of a ``[k, m]`` block of ``student`` scores against
    ``teacher`` scores (see the module docstring); differentiable in
    ``student``. A block whose scores are constant has no Pearson
    correlation: that term is 1 − 0 there, with zero gradient (no division
    by a vanishing norm, so no NaN or overflow in training)."""
    if not isinstance(student, torch.Tensor) or not isinstance(teacher, torch.Tensor):
        raise TypeError("student and teacher must be torch tensors")
    if student.dim() != 2 or student.shape != teacher.shape:
        raise ValueError(
            f"student and teacher must be [k, m] blocks of one shape, got {tuple(student.shape)} "
            f"and {tuple(teacher.shape)}"
        )
    if student.numel() == 0:
        raise ValueError("empty block")
    if not student.is_floating_point() or not teacher.is_floating_point():
        raise TypeError(f"student and teacher must be floating tensors, got {student.dtype} and {teacher.dtype}")
    if not bool(torch.isfinite(teacher).all()):
        raise ValueError("teacher holds NaN or inf scores")
    alpha = check_float_in("alpha", alpha, 0.0, 1.0)
    tau = check_positive_float("tau", tau)
    teacher = teacher.to(student.dtype).detach()
    s = student.reshape(-1) - student.mean()
    t = teacher.reshape(-1) - teacher.mean()
    den = s.norm() * t.norm()
    ok = den > _EPS
    pearson = torch.where(ok, (s * t).sum() / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(den))
    log_q = F.log_softmax(student / tau, dim=1)
    log_p = F.log_softmax(teacher / tau, dim=1)
    kl = (log_p.exp() * (log_p - log_q)).sum(1).mean()
    return alpha * (1.0 - pearson) + (1.0 - alpha) * kl
