"""The Adam/AdamW preconditioners applied by
:class:`~dataprobes.attribution.capture.GradientCapture` (see its module
docstring for the flat and factored forms).

Two features, chosen by the ``less`` flag:

* default (TrackStar, Chang et al. 2024): ``g / (sqrt(v̂) + ε)`` with the
  bias-corrected second moment ``v̂``;
* ``less=True`` (LESS, Xia et al., ICML 2024, exactly as its code
  computes it): with the checkpoint's moments ``m``, ``v`` and the example's
  gradient ``g``, ``m' = β1 m + (1−β1) g``, ``v' = β2 v + (1−β2) g²``,
  ``Γ = m' / sqrt(v' + ε)`` (ε inside the root, no bias correction;
  β = (0.9, 0.999), ε = 1e-8 by default). Γ is not linear in ``g``, so it is
  available in flat mode only (docs/math.md, "LESS").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .._validation import check_bool, check_float, check_nonnegative_float

__all__ = ["LESS_BETAS", "LESS_EPS", "AdamPreconditioner"]


def _key(k: Any) -> Any:
    return k if isinstance(k, str) else id(k)


#: LESS's fixed Adam constants (its ``obtain_gradients_with_adam``)
LESS_BETAS = (0.9, 0.999)
LESS_EPS = 1e-8


def _check_betas(betas: Any) -> tuple[float, float]:
    if not isinstance(betas, Sequence) or isinstance(betas, str) or len(betas) != 2:
        raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    b1, b2 = (check_float(f"betas[{i}]", b) for i, b in enumerate(betas))
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise ValueError(f"betas must lie in [0, 1), got {betas!r}")
    return b1, b2


class AdamPreconditioner:
    """Adam/AdamW diagonal second-moment correction ``g / (sqrt(v̂) + eps)``,
    or with ``less=True`` the LESS Adam feature ``m' / sqrt(v' + eps)``.

    ``second_moments`` maps parameters (the ``nn.Parameter`` objects, or
    their names in the model as given by ``named_parameters``) to
    ``exp_avg_sq`` tensors of the same shape. ``bias_correction`` is
    ``1 - beta2**step`` (``v̂ = v / bias_correction``), per parameter via a
    mapping or one number for all. Tensors are copied unless ``copy=False``.
    See the module docstring for what the factored mode can and cannot do.

    ``less=True`` needs ``first_moments`` (``exp_avg``, same keys and
    shapes) and uses ``betas`` (default LESS's ``(0.9, 0.999)``) and ``eps``
    inside the root, without bias correction (``bias_correction`` must stay
    1); :meth:`less_feature` computes it. Flat capture only.
    """

    def __init__(
        self,
        second_moments: Mapping[Any, torch.Tensor],
        *,
        eps: float = 1e-8,
        bias_correction: float | Mapping[Any, float] = 1.0,
        copy: bool = True,
        first_moments: Mapping[Any, torch.Tensor] | None = None,
        less: bool = False,
        betas: tuple[float, float] = LESS_BETAS,
    ) -> None:
        if not isinstance(second_moments, Mapping):
            raise TypeError(
                f"second_moments must be a mapping parameter -> tensor, got {type(second_moments).__name__}"
            )
        self.eps = check_nonnegative_float("eps", eps)
        copy = check_bool("copy", copy)
        #: True: the LESS feature m'/sqrt(v'+eps) instead of g/(sqrt(v̂)+eps)
        self.less = check_bool("less", less)
        self.betas = _check_betas(betas)
        if first_moments is not None and not isinstance(first_moments, Mapping):
            raise TypeError(f"first_moments must be a mapping parameter -> tensor, got {type(first_moments).__name__}")
        if self.less:
            if first_moments is None:
                raise ValueError("less=True needs first_moments (the optimizer's exp_avg per parameter)")
            if isinstance(bias_correction, Mapping) or bias_correction != 1.0:
                raise ValueError("the LESS feature uses no bias correction: leave bias_correction at 1.0")
            if set(map(_key, first_moments)) != set(map(_key, second_moments)):
                raise ValueError("first_moments and second_moments must have the same parameters")
        elif first_moments is not None:
            raise ValueError("first_moments are used by the LESS feature only: pass less=True")
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
        self._m_by_id: dict[int, torch.Tensor] = {}
        self._m_by_name: dict[str, torch.Tensor] = {}
        for key, m in (first_moments or {}).items():
            if not isinstance(m, torch.Tensor):
                raise TypeError(f"first moment for {key!r} must be a tensor, got {type(m).__name__}")
            v = second_moments[key]
            if tuple(m.shape) != tuple(v.shape):
                raise ValueError(f"first moment for {key!r} has shape {tuple(m.shape)}, second {tuple(v.shape)}")
            mm = m.detach().clone() if copy else m.detach()
            if isinstance(key, str):
                self._m_by_name[key] = mm
            else:
                self._m_by_id[id(key)] = mm

    @classmethod
    def from_optimizer(
        cls,
        optimizer: torch.optim.Optimizer,
        *,
        copy: bool = True,
        less: bool = False,
        betas: tuple[float, float] = LESS_BETAS,
    ) -> AdamPreconditioner:
        """Read ``exp_avg_sq``, ``step``, ``betas`` and ``eps`` from an Adam /
        AdamW optimizer's state (parameters without state are skipped).

        ``less=True``: the LESS feature from ``exp_avg`` and ``exp_avg_sq``
        with ``betas`` (LESS's ``(0.9, 0.999)`` by default, not the
        optimizer's) and LESS's ``eps = 1e-8``."""
        less = check_bool("less", less)
        moments: dict[Any, torch.Tensor] = {}
        firsts: dict[Any, torch.Tensor] = {}
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
                if less:
                    firsts[p] = st["exp_avg"]
                corr[p] = 1.0 - beta2**step if step > 0 else 1.0
        if not moments:
            raise ValueError("the optimizer has no 'exp_avg_sq' state yet: take at least one step first")
        if less:
            return cls(moments, eps=LESS_EPS, first_moments=firsts, less=True, betas=betas, copy=copy)
        return cls(moments, eps=1e-8 if eps is None else eps, bias_correction=corr, copy=copy)

    @classmethod
    def less_from_state(
        cls,
        optimizer_state: Mapping[str, Any],
        param_names: Sequence[str],
        *,
        betas: tuple[float, float] = LESS_BETAS,
        eps: float = LESS_EPS,
    ) -> AdamPreconditioner:
        """The LESS feature from an Adam/AdamW ``optimizer.state_dict()``
        (as a checkpoint saves it): ``param_names[i]`` names the parameter
        with index ``i`` in the state dict's param groups (for an optimizer
        built on ``model.parameters()``, the names of
        ``model.named_parameters()`` in order). Parameters without state
        are skipped. ``betas``/``eps`` are LESS's constants by default, not
        the optimizer's."""
        if not isinstance(optimizer_state, Mapping) or "state" not in optimizer_state:
            raise TypeError("optimizer_state must be an optimizer state_dict (a mapping with 'state')")
        if isinstance(param_names, str) or not isinstance(param_names, Sequence):
            raise TypeError(f"param_names must be a sequence of names, got {type(param_names).__name__}")
        names = list(param_names)
        if not all(isinstance(n, str) for n in names):
            raise TypeError("param_names must hold parameter names (str)")
        indices = [i for g in optimizer_state.get("param_groups", []) for i in g["params"]]
        if len(indices) != len(names):
            raise ValueError(
                f"the optimizer state has {len(indices)} parameters but param_names has {len(names)}; "
                "name every parameter the optimizer was built on, in its order"
            )
        first: dict[Any, torch.Tensor] = {}
        second: dict[Any, torch.Tensor] = {}
        for pos, idx in enumerate(indices):
            st = optimizer_state["state"].get(idx)
            if not st or "exp_avg" not in st or "exp_avg_sq" not in st:
                continue
            first[names[pos]] = st["exp_avg"]
            second[names[pos]] = st["exp_avg_sq"]
        if not second:
            raise ValueError("the optimizer state has no 'exp_avg'/'exp_avg_sq' yet: take at least one step first")
        return cls(second, eps=eps, first_moments=first, less=True, betas=betas, copy=False)

    def _lookup(self, param: torch.Tensor, name: str) -> tuple[torch.Tensor, float] | None:
        hit = self._by_id.get(id(param))
        return hit if hit is not None else self._by_name.get(name)

    def less_moments(self, param: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(m, v)`` (float32, no bias correction) for ``param`` (called
        ``name``) of a LESS preconditioner."""
        if not self.less:
            raise ValueError("less_moments belongs to the LESS feature (less=True)")
        hit = self._lookup(param, name)
        m = self._m_by_id.get(id(param))
        if m is None:
            m = self._m_by_name.get(name)
        if hit is None or m is None:
            raise KeyError(f"no Adam moments for parameter {name!r}")
        v = hit[0]
        if tuple(v.shape) != tuple(param.shape):
            raise ValueError(f"Adam moments for {name!r} have shape {tuple(v.shape)}, parameter {tuple(param.shape)}")
        return m.to(device=param.device, dtype=torch.float32), v.to(device=param.device, dtype=torch.float32)

    def less_feature(self, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``Γ = (β1 m + (1−β1) g) / sqrt(β2 v + (1−β2) g² + ε)`` elementwise
        (``g`` [B, *shape] per-example gradients, ``m``/``v`` [*shape])."""
        b1, b2 = self.betas
        return (b1 * m + (1 - b1) * g) / torch.sqrt(b2 * v + (1 - b2) * g * g + self.eps)

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
