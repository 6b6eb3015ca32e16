"""Exact-gradient oracles: explicit per-example gradients with ``torch.func``
and the SJLT sketch of flat gradients, to check the compressed captures of
:class:`~dataprobes.attribution.capture.GradientCapture` against."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

import torch
from torch import nn

from .kernels import sjlt

__all__ = ["compress_flat", "flatten_grads", "per_example_grads_func"]


def compress_flat(
    per_example_grads: torch.Tensor,
    k: int,
    seed: int = 0,
    *,
    normalize: bool = False,
    scheme: str = "hash",
    backend: str = "auto",
) -> torch.Tensor:
    """SJLT-compress flat per-example gradients ``[B, D]`` to ``[B, k]``
    (float32), optionally unit-normalising the rows."""
    out = sjlt(per_example_grads, k, seed, scheme=scheme, backend=backend)
    if normalize:
        n = out.norm(dim=1, keepdim=True)
        out = torch.where(n > 0, out / torch.where(n > 0, n, 1.0), out)
    return out


def flatten_grads(grads: Mapping[str, torch.Tensor], names: Sequence[str] | None = None) -> torch.Tensor:
    """Concatenate ``{name: [B, *shape]}`` into ``[B, D]`` (in ``names`` order,
    default the mapping's order)."""
    keys = list(grads) if names is None else list(names)
    if not keys:
        raise ValueError("no gradients to flatten")
    b = grads[keys[0]].shape[0]
    return torch.cat([grads[n].reshape(b, -1) for n in keys], dim=1)


def per_example_grads_func(
    model: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    batch: torch.Tensor | Sequence[torch.Tensor],
    *,
    params: Mapping[str, torch.Tensor] | Iterable[str] | None = None,
    untie: bool = False,
) -> dict[str, torch.Tensor]:
    """Exact per-example gradients with ``torch.func`` (``vmap(grad)``): for
    small models and for checking the compressed captures.

    ``loss_fn(model, *batch) -> [B]`` per-example losses (the same function
    used with :class:`GradientCapture`; it is called on one example at a time
    with a batch dimension of 1). ``batch``: a tensor or a sequence of
    tensors whose first dimension is the batch. ``params``: names (or a
    name → tensor mapping) to differentiate; default every parameter that
    requires grad. ``untie=True`` lists tied parameters once per owning
    module (e.g. both ``tok_emb.weight`` and ``head.weight``) so each gets the
    gradient through its own use only. Returns ``{name: [B, *shape]}``.
    """
    from torch.func import functional_call, grad, vmap

    tensors = (batch,) if isinstance(batch, torch.Tensor) else tuple(batch)
    if not tensors or tensors[0].shape[0] == 0:
        raise ValueError("empty batch")
    all_named = dict(model.named_parameters(remove_duplicate=not untie))
    if params is None:
        chosen = {n: p.detach() for n, p in all_named.items() if p.requires_grad}
    elif isinstance(params, Mapping):
        chosen = {n: p.detach() for n, p in params.items()}
    else:
        chosen = {n: all_named[n].detach() for n in params}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def one(ps: dict[str, torch.Tensor], *example: torch.Tensor) -> torch.Tensor:
        ex = tuple(e.unsqueeze(0) for e in example)

        def call(*args: Any, **kwargs: Any) -> Any:
            return functional_call(model, (ps, buffers), args, kwargs, tie_weights=not untie)

        return loss_fn(call, *ex).reshape(())

    with warnings.catch_warnings():
        # functorch falls back to a loop for some ops (e.g. CPU flash attention): slow, not wrong
        warnings.filterwarnings("ignore", message="There is a performance drop", category=UserWarning)
        res = vmap(grad(one), in_dims=(None, *([0] * len(tensors))))(chosen, *tensors)
    return cast(dict[str, torch.Tensor], res)
