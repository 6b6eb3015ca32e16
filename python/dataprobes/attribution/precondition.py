"""The Adam/AdamW second-moment preconditioner applied by
:class:`~dataprobes.attribution.capture.GradientCapture` (see its module
docstring for the flat and factored forms)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .._validation import check_bool, check_float, check_nonnegative_float

__all__ = ["AdamPreconditioner"]


class AdamPreconditioner:
    """Adam/AdamW diagonal second-moment correction ``g / (sqrt(v̂) + eps)``.

    ``second_moments`` maps parameters (the ``nn.Parameter`` objects, or
    their names in the model as given by ``named_parameters``) to
    ``exp_avg_sq`` tensors of the same shape. ``bias_correction`` is
    ``1 - beta2**step`` (``v̂ = v / bias_correction``), per parameter via a
    mapping or one number for all. Tensors are copied unless ``copy=False``.
    See the module docstring for what the factored mode can and cannot do.
    """

    def __init__(
        self,
        second_moments: Mapping[Any, torch.Tensor],
        *,
        eps: float = 1e-8,
        bias_correction: float | Mapping[Any, float] = 1.0,
        copy: bool = True,
    ) -> None:
        if not isinstance(second_moments, Mapping):
            raise TypeError(
                f"second_moments must be a mapping parameter -> tensor, got {type(second_moments).__name__}"
            )
        self.eps = check_nonnegative_float("eps", eps)
        copy = check_bool("copy", copy)
        if not isinstance(bias_correction, Mapping):
            check_float("bias_correction", bias_correction)
        self._by_id: dict[int, tuple[torch.Tensor, float]] = {}
        self._by_name: dict[str, tuple[torch.Tensor, float]] = {}
        for key, v in second_moments.items():
            if not isinstance(v, torch.Tensor):
                raise TypeError(f"second moment for {key!r} must be a tensor, got {type(v).__name__}")
            bc = check_float(
                f"bias_correction[{key!r}]" if isinstance(bias_correction, Mapping) else "bias_correction",
                bias_correction[key] if isinstance(bias_correction, Mapping) else bias_correction,
            )
            if not 0 < bc <= 1:
                raise ValueError(f"bias_correction must lie in (0, 1], got {bc} for {key!r}")
            entry = (v.detach().clone() if copy else v.detach(), bc)
            if isinstance(key, str):
                self._by_name[key] = entry
            elif isinstance(key, torch.Tensor):
                self._by_id[id(key)] = entry
            else:
                raise TypeError(f"keys must be parameters or parameter names, got {type(key).__name__}")

    @classmethod
    def from_optimizer(cls, optimizer: torch.optim.Optimizer, *, copy: bool = True) -> AdamPreconditioner:
        """Read ``exp_avg_sq``, ``step``, ``betas`` and ``eps`` from an Adam /
        AdamW optimizer's state (parameters without state are skipped)."""
        moments: dict[Any, torch.Tensor] = {}
        corr: dict[Any, float] = {}
        eps = None
        for group in optimizer.param_groups:
            if "betas" not in group:
                raise TypeError("from_optimizer needs an Adam-family optimizer (param groups with 'betas')")
            beta2 = float(group["betas"][1])
            if eps is not None and float(group.get("eps", 1e-8)) != eps:
                raise ValueError("param groups with different eps are not supported")
            eps = float(group.get("eps", 1e-8))
            for p in group["params"]:
                st = optimizer.state.get(p, {})
                if "exp_avg_sq" not in st:
                    continue
                step = float(st.get("step", 0))
                moments[p] = st["exp_avg_sq"]
                corr[p] = 1.0 - beta2**step if step > 0 else 1.0
        if not moments:
            raise ValueError("the optimizer has no 'exp_avg_sq' state yet: take at least one step first")
        return cls(moments, eps=1e-8 if eps is None else eps, bias_correction=corr, copy=copy)

    def _lookup(self, param: torch.Tensor, name: str) -> tuple[torch.Tensor, float] | None:
        hit = self._by_id.get(id(param))
        return hit if hit is not None else self._by_name.get(name)

    def second_moment(self, param: torch.Tensor, name: str) -> torch.Tensor:
        """Bias-corrected ``v̂`` (float32) for ``param`` (called ``name``)."""
        hit = self._lookup(param, name)
        if hit is None:
            raise KeyError(f"no second moment for parameter {name!r}")
        v, bc = hit
        if tuple(v.shape) != tuple(param.shape):
            raise ValueError(f"second moment for {name!r} has shape {tuple(v.shape)}, parameter {tuple(param.shape)}")
        return v.to(device=param.device, dtype=torch.float32) / bc

    def denominator(self, param: torch.Tensor, name: str) -> torch.Tensor:
        """``sqrt(v̂) + eps`` (the exact elementwise divisor, flat mode)."""
        return self.second_moment(param, name).sqrt() + self.eps

    def factors(self, v_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Row and column divisors ``(a + √eps, b + √eps)`` of the rank-1
        (Adafactor) fit ``sqrt(v̂) ≈ a bᵀ`` of a 2-D ``v̂`` (factored mode)."""
        r = v_hat.sum(dim=1)
        c = v_hat.sum(dim=0)
        s = r.sum()
        q = s.clamp_min(torch.finfo(torch.float32).tiny).pow(0.25)
        a = r.clamp_min(0).sqrt() / q
        b = c.clamp_min(0).sqrt() / q
        e = self.eps**0.5
        tiny = torch.finfo(torch.float32).tiny
        return (a + e).clamp_min(tiny), (b + e).clamp_min(tiny)
