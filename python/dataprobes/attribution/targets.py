"""Module selection and the per-module capture targets of
:class:`~dataprobes.attribution.capture.GradientCapture`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["LayoutEntry"]


def _derive_seed(seed: int, name: str, side: str) -> int:
    """A 63-bit seed for ``(seed, module name, side)``, stable across runs."""
    h = hashlib.blake2b(f"{seed}\x00{name}\x00{side}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") >> 1



@dataclass(frozen=True)
class LayoutEntry:
    """One block of the captured vector: ``vector[:, start:stop]`` belongs to
    module ``module`` (kind ``"linear"`` or ``"embedding"``). In flat mode the
    entry describes the *uncompressed* coordinates (``shape`` = weight shape,
    plus a bias column when included) that were sketched."""

    module: str
    kind: str
    start: int
    stop: int
    shape: tuple[int, ...]
    has_bias: bool


@dataclass
class _Target:
    name: str
    module: nn.Module
    kind: str  # "linear" | "embedding"
    rows: int  # weight dim 0 (d_out or V)
    cols: int  # weight dim 1 (d_in or d)
    bias: bool
    start: int = 0
    stop: int = 0
    # factored: effective (possibly preconditioned) float32 matrices
    p_in: torch.Tensor | None = None
    p_out: torch.Tensor | None = None
    x_bias: torch.Tensor | None = None
    # flat: elementwise divisors (weight [rows, cols], bias [rows]) or None
    div_w: torch.Tensor | None = None
    div_b: torch.Tensor | None = None


def _resolve_modules(model: nn.Module, modules: Any) -> list[tuple[str, nn.Module]]:
    named = list(model.named_modules())
    out: list[tuple[str, nn.Module]]
    if modules is None:
        out = [(n, m) for n, m in named if isinstance(m, nn.Linear) and m.weight.requires_grad]
        if not out:
            raise ValueError("the model has no nn.Linear module whose weight requires grad; pass modules=")
        return out
    if callable(modules) and not isinstance(modules, nn.Module):
        out = [(n, m) for n, m in named if modules(n, m)]
    else:
        if isinstance(modules, (str, nn.Module)):
            modules = [modules]
        by_name = dict(named)
        by_id = {id(m): n for n, m in named}
        out = []
        for item in modules:
            if isinstance(item, str):
                if item not in by_name:
                    raise ValueError(f"model has no module named {item!r}")
                out.append((item, by_name[item]))
            elif isinstance(item, nn.Module):
                if id(item) not in by_id:
                    raise ValueError(f"module {type(item).__name__} is not a submodule of the model")
                out.append((by_id[id(item)], item))
            else:
                raise TypeError(f"modules must hold module names or nn.Module objects, got {type(item).__name__}")
    if not out:
        raise ValueError("no module selected")
    seen: set[str] = set()
    uniq: list[tuple[str, nn.Module]] = []
    for n, m in out:
        if n not in seen:
            seen.add(n)
            uniq.append((n, m))
    return uniq

