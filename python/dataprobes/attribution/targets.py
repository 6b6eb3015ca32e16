"""Module selection and the per-module capture targets of
:class:`~dataprobes.attribution.capture.GradientCapture`.

:func:`select_modules` turns the user's ``modules=`` into :class:`ModuleSpec`
entries (weight shape and output block). When a capture starts, each spec
becomes a :class:`FactoredTarget` (projection matrices ``P_in``, ``P_out``) or
a :class:`FlatTarget` (SJLT sketch, optional elementwise Adam divisor), which
turn one module call's saved input and output gradient into the module's
block of the per-example vectors (``acc[:, start:stop]``), per kind
(``nn.Linear`` or ``nn.Embedding``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .kernels import factored_project, sjlt

__all__ = ["FactoredTarget", "FlatTarget", "LayoutEntry", "ModuleSpec", "select_modules"]

_FLAT_CHUNK = 1 << 24  # elements of per-example gradient formed at once (flat mode)


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


@dataclass(frozen=True)
class ModuleSpec:
    """A selected module: weight ``[rows, cols]`` (Linear: ``[d_out, d_in]``;
    Embedding: ``[V, d]``), whether its bias is a last input column, and its
    block ``[start, stop)`` of the output (factored) or of the flat gradient (flat)."""

    name: str
    module: nn.Module
    kind: str  # "linear" | "embedding"
    rows: int
    cols: int
    bias: bool
    start: int
    stop: int

    @property
    def width(self) -> int:
        """Input columns including the bias column."""
        return self.cols + int(self.bias)

    def layout_entry(self) -> LayoutEntry:
        return LayoutEntry(self.name, self.kind, self.start, self.stop, (self.rows, self.width), self.bias)


def select_modules(
    model: nn.Module, modules: Any, *, include_bias: bool, block_size: Callable[[str, int, int], int]
) -> list[ModuleSpec]:
    """The :class:`ModuleSpec` of every selected module, blocks laid out in
    selection order; ``block_size(name, rows, width)`` is a module's block length."""
    specs: list[ModuleSpec] = []
    offset = 0
    for name, m in _resolve_modules(model, modules):
        if isinstance(m, nn.Linear):
            kind, rows, cols = "linear", m.out_features, m.in_features
            bias = include_bias and m.bias is not None
        elif isinstance(m, nn.Embedding):
            kind, rows, cols = "embedding", m.num_embeddings, m.embedding_dim
            bias = False
        else:
            raise TypeError(
                f"GradientCapture supports nn.Linear and nn.Embedding modules (and subclasses); "
                f"module {name!r} is {type(m).__name__}"
            )
        size = block_size(name, rows, cols + int(bias))
        specs.append(ModuleSpec(name, m, kind, rows, cols, bias, offset, offset + size))
        offset += size
    return specs


class _Target:
    """A module being captured: checks and reshapes one call's saved input
    ``x`` and output gradient ``g`` per kind, and adds its contribution to
    ``acc[:, start:stop]``. Subclasses supply the linear and embedding maths."""

    def __init__(self, spec: ModuleSpec) -> None:
        self.spec = spec

    def _to(self, device: torch.device) -> None:
        """Move the target's tensors to ``device`` (the model moved since they were built)."""

    def _mask_for(self, mask: torch.Tensor | None, shape: torch.Size) -> torch.Tensor | None:
        if mask is None or len(shape) == 1:
            return None
        if tuple(shape) != tuple(mask.shape):
            raise ValueError(
                f"mask has shape {tuple(mask.shape)} but module {self.spec.name!r} sees positions of shape "
                f"{tuple(shape)}; a mask applies to modules whose input is [B, T, d]"
            )
        return mask

    def accumulate(self, acc: torch.Tensor, x: torch.Tensor, g: torch.Tensor, mask: torch.Tensor | None) -> None:
        """Add the call's per-example contribution to ``acc`` [B, dim] (float32)."""
        s, b = self.spec, acc.shape[0]
        if x.dim() == 0 or x.shape[0] != b:
            raise ValueError(
                f"module {s.name!r} ran on an input of shape {tuple(x.shape)} whose first dimension is not the batch "
                f"({b}); per-example gradients cannot be recovered for it (e.g. a position embedding looked up "
                "once for the whole batch) — leave it out of modules="
            )
        self._to(g.device)
        if s.kind == "linear":
            m = self._mask_for(mask, x.shape[:-1])
            m2 = None if m is None else m.reshape(b, -1)
            self._linear(acc, x.reshape(b, -1, s.cols), g.reshape(b, -1, s.rows), m2)
        else:
            idx = x.reshape(b, -1)
            m = self._mask_for(mask, x.shape)
            g3 = g.reshape(b, -1, s.cols).to(torch.float32)
            w = (
                torch.ones(idx.shape, dtype=torch.float32, device=g.device)
                if m is None
                else m.reshape(b, -1).to(torch.float32)
            )
            pad = getattr(s.module, "padding_idx", None)
            if pad is not None:
                w = w * (idx != pad)
            self._embedding(acc, idx, g3, w)

    def _linear(self, acc: torch.Tensor, x: torch.Tensor, g: torch.Tensor, m: torch.Tensor | None) -> None:
        raise NotImplementedError

    def _embedding(self, acc: torch.Tensor, idx: torch.Tensor, g: torch.Tensor, w: torch.Tensor) -> None:
        raise NotImplementedError


class FactoredTarget(_Target):
    """Factored (LoGra) target: ``vec(P_outᵀ G_b P_in)`` from the effective
    (possibly preconditioned) float32 projections; with a bias column the last
    row of ``P_in`` is kept apart as ``x_bias`` (the input constant 1)."""

    def __init__(self, spec: ModuleSpec, p_in: torch.Tensor, p_out: torch.Tensor, backend: str) -> None:
        super().__init__(spec)
        self.x_bias = p_in[spec.cols].contiguous() if spec.bias else None
        self.p_in = p_in[: spec.cols].contiguous() if spec.bias else p_in.contiguous()
        self.p_out = p_out.contiguous()
        self.backend = backend

    def _to(self, device: torch.device) -> None:
        if self.p_in.device != device:
            self.p_in, self.p_out = self.p_in.to(device), self.p_out.to(device)
            self.x_bias = None if self.x_bias is None else self.x_bias.to(device)

    def _linear(self, acc: torch.Tensor, x: torch.Tensor, g: torch.Tensor, m: torch.Tensor | None) -> None:
        s = self.spec
        acc[:, s.start : s.stop] += factored_project(
            x, g, self.p_in, self.p_out, m, x_bias=self.x_bias, backend=self.backend
        )

    def _embedding(self, acc: torch.Tensor, idx: torch.Tensor, g: torch.Tensor, w: torch.Tensor) -> None:
        s, b = self.spec, acc.shape[0]
        rows = self.p_out[idx] * w[..., None]  # [B, T, k_out]
        cols = g @ self.p_in  # [B, T, k_in]
        acc[:, s.start : s.stop] += torch.einsum("bto,bti->boi", rows, cols).reshape(b, -1)


class FlatTarget(_Target):
    """Flat target: the per-example gradient ``[rows, width]`` is formed in
    chunks of examples, divided elementwise by ``divisor`` (Adam's
    ``sqrt(v̂) + eps``, or ``None``) and count-sketched into ``acc`` at the
    module's offset of the flat gradient."""

    def __init__(
        self, spec: ModuleSpec, divisor: torch.Tensor | None, k: int, seed: int, scheme: str, backend: str
    ) -> None:
        super().__init__(spec)
        self.divisor = None if divisor is None else divisor.contiguous()
        self.k, self.seed, self.scheme, self.backend = k, seed, scheme, backend

    def _to(self, device: torch.device) -> None:
        if self.divisor is not None and self.divisor.device != device:
            self.divisor = self.divisor.to(device)

    def _chunks(self, b: int) -> range:
        return range(0, b, max(1, _FLAT_CHUNK // max(1, self.spec.rows * self.spec.width)))

    def _sketch_into(self, acc: torch.Tensor, a: int, gw: torch.Tensor) -> None:
        if self.divisor is not None:
            gw = gw / self.divisor
        e = a + gw.shape[0]
        acc[a:e] += sjlt(
            gw.reshape(e - a, -1), self.k, self.seed, offset=self.spec.start, scheme=self.scheme, backend=self.backend
        )

    def _linear(self, acc: torch.Tensor, x: torch.Tensor, g: torch.Tensor, m: torch.Tensor | None) -> None:
        step = self._chunks(x.shape[0]).step
        for a in self._chunks(x.shape[0]):
            e = min(x.shape[0], a + step)
            xs, gs = x[a:e].to(torch.float32), g[a:e].to(torch.float32)
            if m is not None:
                gs = gs * m[a:e, :, None].to(torch.float32)
            gw = torch.einsum("bto,bti->boi", gs, xs)
            if self.spec.bias:
                gw = torch.cat([gw, gs.sum(dim=1)[..., None]], dim=2)
            self._sketch_into(acc, a, gw)

    def _embedding(self, acc: torch.Tensor, idx: torch.Tensor, g: torch.Tensor, w: torch.Tensor) -> None:
        s = self.spec
        step = self._chunks(idx.shape[0]).step
        for a in self._chunks(idx.shape[0]):
            e = min(idx.shape[0], a + step)
            gw = torch.zeros(e - a, s.rows, s.cols, dtype=torch.float32, device=g.device)
            gw.scatter_add_(1, idx[a:e, :, None].expand(-1, -1, s.cols), g[a:e] * w[a:e, :, None])
            self._sketch_into(acc, a, gw)


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
