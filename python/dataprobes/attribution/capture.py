"""Per-example gradient capture inside an ordinary PyTorch loop.

:class:`GradientCapture` hooks chosen modules of any ``nn.Module`` and turns
one forward + backward over a batch into one compressed gradient per example,
without materialising per-example weight gradients (factored mode)::

    with GradientCapture(model, mode="factored", k_in=16, k_out=16) as cap:
        losses = per_example_losses(model, batch)        # [B]
        g = cap.backward(losses, mask=attention_mask)    # [B, cap.dim]

Why this works: ``cap.backward`` back-propagates ``sum_b losses[b]`` once.
Example ``b``'s loss depends only on example ``b``'s activations, so the
gradient arriving at a layer's output row ``b`` is exactly ``dL_b/dy_b`` and
the per-example weight gradient of a linear layer is
``G_b = sum_t g_bt x_bt^T``. This breaks for layers that mix examples
(BatchNorm in training mode, in-batch contrastive losses) — do not use it
there.

Modes
-----
``"factored"`` (LoGra, Choe et al. 2024): per module, ``vec(P_out^T G_b P_in)``
with seeded random projections ``P_in`` [d_in, k_in], ``P_out`` [d_out,
k_out] (seeds derived from ``(seed, module name)``), computed by
:func:`~dataprobes.attribution.kernels.factored_project` from the layer's
input and output gradient; ``dim = sum_modules k_out * k_in``.

The projections (``projection=``, see
:func:`~dataprobes.attribution.kernels.projection_matrix` and docs/math.md,
Attribution: projection kinds) are ``"orthogonal"`` (the default: Haar-random
orthonormal rows or columns; with ``k_in >= d_in`` and ``k_out >= d_out`` the
block preserves gradient inner products exactly, and below the layer's
dimensions its error is the smallest of the three, BENCHMARKS.md),
``"gaussian"`` or ``"rademacher"`` (i.i.d. entries, whose Kronecker product
keeps a variance of order ``1/k`` even when ``k`` exceeds the dimension).
Stores written before the default changed record ``"gaussian"``: score them
with a capture made with ``projection="gaussian"``. ``projection`` may also be
a mapping ``{module name: (P_in, P_out)}`` of explicit matrices for every
captured module (``P_in`` [cols (+1 with bias), k_in], ``P_out`` [rows,
k_out]; ``k_in`` / ``k_out`` may differ between modules), e.g. the teacher
feature of a freshly initialised LoRA (``B = 0``): its ``lora_B`` gradient is
``s G_b A^T``, the block with ``P_in = s A^T`` and ``P_out = I``. The config
then records ``"explicit"`` and the sha256 of the matrices.

``"flat"``: per module the per-example gradient is formed (in chunks of
examples) and count-sketched with
:func:`~dataprobes.attribution.kernels.sjlt` into one shared ``k``-vector:
the result equals ``sjlt(concat_modules(vec G_b), k, seed)`` exactly, i.e.
:func:`compress_flat` of the explicit flat gradient in :attr:`layout` order.
Costs ``O(B d_out d_in)`` memory per module; meant for small models / LoRA.

Supported modules: ``nn.Linear`` (and subclasses, e.g. the ``lora_A`` /
``lora_B`` linears inside PEFT LoRA layers) and ``nn.Embedding``. The
default selection is every ``nn.Linear`` whose weight requires grad.
Modules must see the batch in their first input dimension (``[B, ..., d]``);
a module applied to an input without a batch dimension (e.g. a position
embedding looked up once for the whole batch) cannot give per-example
gradients and raises ``ValueError`` at :meth:`GradientCapture.backward`.

Layout conventions
------------------
For a weight ``W`` [r, c] (Linear: [d_out, d_in]; Embedding: [V, d]) the
factored block is ``vec(P_r^T grad_W P_c)`` ([k_out, k_in] row-major), with
``P_r = P_out`` [r, k_out] and ``P_c = P_in`` [c, k_in]; for an Embedding
``P_r^T e_idx = P_r[idx]`` (a row gather). Bias gradients are skipped unless
``include_bias=True``; then the bias is treated as a last input column
(``[W | b]``, input constant 1, ``P_in`` has ``d_in + 1`` rows). A weight
shared by several selected modules (tied embeddings) contributes one block
per module: the block is the gradient through *that* module's use.

Masks
-----
``mask`` [B, T] (1 = position counts, 0 = padding) multiplies each
position's contribution ``g_t x_t^T`` in every module whose input is
``[B, T, d]``; a masked position adds nothing even if padding leaked into
its gradient. Which positions enter the *loss* is the loss function's job.

Preconditioning
---------------
``precondition=AdamPreconditioner(...)`` applies Adam's second-moment
correction ``G ↦ G / (sqrt(v̂) + ε)`` (``v̂`` the bias-corrected
``exp_avg_sq``; TrackStar, Chang et al. 2024):

* flat mode: exactly, elementwise, before the sketch;
* factored mode: the full ``G`` is never formed, so the elementwise division
  is only possible for a rank-1 ``sqrt(v̂)``. We use Adafactor's rank-1
  factorisation (Shazeer & Stern 2018) ``v̂ ≈ R C^T / sum(R)`` (row and
  column sums; the best rank-1 fit in I-divergence, exact when ``v̂`` is
  rank 1), i.e. ``sqrt(v̂_ij) ≈ a_i b_j`` with ``a = sqrt(R)/S^¼``,
  ``b = sqrt(C)/S^¼``, and divide ``G`` by ``(a_i + √ε)(b_j + √ε)``. That is
  ``diag(1/a') G diag(1/b')``, which factorises: it is applied by rescaling
  the rows of ``P_out`` and ``P_in``, at no cost per batch. It equals the
  exact correction when ``v̂`` is rank 1 and ``ε = 0``, and otherwise is an
  approximation (the error is that of the rank-1 fit).

``precondition=AdamPreconditioner(..., less=True)`` gives the LESS feature
(Xia et al. 2024) ``Γ = m' / sqrt(v' + ε)`` with ``m' = β1 m + (1−β1) g``,
``v' = β2 v + (1−β2) g²`` (docs/math.md, "LESS"):

* flat mode: exactly. Γ is not linear in ``g``, so each module's whole
  per-example gradient (all its calls in the forward pass) is accumulated
  first (``B × rows × width`` floats per module), then transformed and
  sketched at the end of :meth:`GradientCapture.backward`. A module that did
  not run (or whose output an example does not depend on) has ``g = 0``,
  and Γ at ``g = 0`` is ``β1 m / sqrt(β2 v + ε)``, not 0: that constant block
  is added for every example, exactly as a zero gradient would give.
  For a weight shared by several captured modules (tied embeddings) the
  block is the gradient through that module's use, not the parameter's total.
* factored mode: refused (``ValueError``). Factored capture never forms
  ``g``, only ``P_outᵀ g P_in``; Γ needs every coordinate of ``g`` (its
  square enters the denominator), and no rescaling of the projections
  reproduces it, not even approximately in a controlled way.

Normalisation and dtype: with ``normalize=True`` each final row is scaled to
unit L2 norm (zero rows stay zero), after preconditioning. Projections run
in float32 whatever the model dtype; the result is cast to ``dtype``.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any, cast

import torch
from torch import nn

from .._validation import check_bool, check_choice, check_int, check_seed
from .exact import compress_flat, flatten_grads, per_example_grads_func
from .kernels import projection_matrix, sjlt
from .precondition import AdamPreconditioner
from .targets import FactoredTarget, FlatTarget, LayoutEntry, ModuleSpec, _derive_seed, select_modules


class _LessFlatTarget(FlatTarget):
    """Flat target for the LESS feature: the module's per-example gradient is
    summed over its calls into ``pending`` [B, rows, width]; :meth:`finish`
    maps it to ``Γ = m'/sqrt(v'+eps)`` and sketches it into ``acc``."""

    def __init__(
        self,
        spec: ModuleSpec,
        pre: AdamPreconditioner,
        m: torch.Tensor,
        v: torch.Tensor,
        k: int,
        seed: int,
        scheme: str,
        backend: str,
    ) -> None:
        super().__init__(spec, None, k, seed, scheme, backend)
        b1, b2 = pre.betas
        self.c1, self.c2 = 1.0 - b1, 1.0 - b2
        # the per-checkpoint parts of m' and v' + eps, formed once
        self.bm = (b1 * m).contiguous()
        self.bv = (b2 * v + pre.eps).contiguous()
        self.pending: torch.Tensor | None = None
        self._zero_sketch: torch.Tensor | None = None

    def _to(self, device: torch.device) -> None:
        if self.bm.device != device:
            self.bm, self.bv = self.bm.to(device), self.bv.to(device)

    def zero_gradient_sketch(self, device: torch.device) -> torch.Tensor:
        """Sketch ``[k]`` of Γ at ``g = 0``, ``β1 m / sqrt(β2 v + ε)`` (the
        block of every example when the module did not run), formed once."""
        self._to(device)
        if self._zero_sketch is None or self._zero_sketch.device != device:
            feat = (self.bm / self.bv.sqrt()).reshape(1, -1)
            self._zero_sketch = sjlt(
                feat, self.k, self.seed, offset=self.spec.start, scheme=self.scheme, backend=self.backend
            )[0]
        return self._zero_sketch

    def _sketch_into(self, acc: torch.Tensor, a: int, gw: torch.Tensor) -> None:
        if self.pending is None:
            s = self.spec
            self.pending = torch.zeros(acc.shape[0], s.rows, s.width, dtype=torch.float32, device=acc.device)
        self.pending[a : a + gw.shape[0]] += gw

    def finish(self, acc: torch.Tensor) -> None:
        """Transform the accumulated gradients and sketch them (then forget
        them). A module that did not run has ``g = 0`` for every example, so
        each row gets the constant Γ ``β1 m / sqrt(β2 v + ε)``, not 0."""
        g, self.pending = self.pending, None
        if g is None:
            acc += self.zero_gradient_sketch(acc.device)
            return
        self._to(g.device)
        step = self._chunks(g.shape[0]).step
        for a in range(0, g.shape[0], step):
            e = min(g.shape[0], a + step)
            ga = g[a:e]
            # Γ = (β1 m + (1−β1) g) / sqrt(β2 v + ε + (1−β2) g²), in place
            feat = torch.add(self.bm, ga, alpha=self.c1)
            feat.div_(torch.addcmul(self.bv, ga, ga, value=self.c2).sqrt_())
            acc[a:e] += sjlt(
                feat.reshape(e - a, -1),
                self.k,
                self.seed,
                offset=self.spec.start,
                scheme=self.scheme,
                backend=self.backend,
            )


__all__ = [
    "AdamPreconditioner",
    "GradientCapture",
    "LayoutEntry",
    "compress_flat",
    "flatten_grads",
    "per_example_grads_func",
]

_MODES = ("factored", "flat")
#: projection kinds of factored mode (kernels.projection_matrix)
PROJECTIONS = ("orthogonal", "gaussian", "rademacher")
#: the default kind: the lowest error against exact gradient inner products
#: at every k measured (BENCHMARKS.md, teacher fidelity), and exact once k
#: reaches a layer's dimensions
DEFAULT_PROJECTION = "orthogonal"


def _explicit_projections(
    projection: Mapping[Any, Any],
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Explicit ``{module name: (P_in, P_out)}``: type checks only (the shapes
    are checked against the selected modules later); float32 CPU copies."""
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name, pair in projection.items():
        if not isinstance(name, str):
            raise TypeError(f"projection keys must be module names (str), got {type(name).__name__}")
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(f"projection[{name!r}] must be a pair (P_in, P_out) of tensors")
        mats = []
        for side, p in zip(("P_in", "P_out"), pair, strict=True):
            if not isinstance(p, torch.Tensor) or not p.is_floating_point():
                got = p.dtype if isinstance(p, torch.Tensor) else type(p).__name__
                raise TypeError(f"projection[{name!r}] {side} must be a floating-point tensor, got {got}")
            if p.dim() != 2 or p.shape[1] == 0:
                raise ValueError(f"projection[{name!r}] {side} must be 2-D [d, k] with k >= 1, got {tuple(p.shape)}")
            q = p.detach().to(device="cpu", dtype=torch.float32).contiguous().clone()
            if not bool(torch.isfinite(q).all()):
                raise ValueError(f"projection[{name!r}] {side} has non-finite entries")
            mats.append(q)
        out[name] = (mats[0], mats[1])
    return out


def _projection_digest(names: list[str], mats: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> str:
    """sha256 of the explicit matrices (float32, little-endian, row-major) in
    selection order, with each module's name and shapes."""
    h = hashlib.sha256()
    for name in names:
        for p in mats[name]:
            h.update(f"{name}\x00{p.shape[0]}x{p.shape[1]}\x00".encode())
            h.update(p.numpy().astype("<f4", copy=False).tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------
# Capture
# ----------------------------------------------------------------------------


class GradientCapture:
    """Context manager yielding one compressed gradient per example.

    Parameters
    ----------
    model: any ``nn.Module``.
    modules: ``None`` (every ``nn.Linear`` whose weight requires grad), a
        list of module names and/or module objects, or a predicate
        ``(name, module) -> bool``. Only ``nn.Linear`` and ``nn.Embedding``
        (and subclasses) are supported; others raise ``TypeError``.
    mode: ``"factored"`` (needs ``k_in``/``k_out``, or ``k`` for both) or
        ``"flat"`` (needs ``k``).
    seed: fixes every projection (0 ≤ seed < 2**64).
    precondition: an :class:`AdamPreconditioner` or ``None``.
    normalize: scale each example's final vector to unit L2 norm.
    dtype: dtype of the returned vectors (computation is float32).
    include_bias: include bias gradients as a last input column.
    projection: factored mode's projections: ``"orthogonal"`` (default),
        ``"gaussian"`` or ``"rademacher"``, or a mapping ``{module name:
        (P_in, P_out)}`` of explicit float matrices for every captured module
        (``P_in`` [cols (+1 with bias), k_in], ``P_out`` [rows, k_out]; then
        ``k``/``k_in``/``k_out`` may be omitted, and where given must match).
    scheme: SJLT bucket scheme, ``"hash"`` or ``"block"`` (flat mode).
    backend: kernel backend, ``"auto"``, ``"triton"`` or ``"torch"``.
    param_grads: if False (default) :meth:`backward` differentiates only with
        respect to the hooked activations (no ``.grad`` is written and the
        weight-gradient matmuls are skipped); if True it calls an ordinary
        ``backward()`` so parameter ``.grad`` accumulate the summed loss's
        gradient as in a training step.
    """

    def __init__(
        self,
        model: nn.Module,
        modules: Any = None,
        mode: str = "factored",
        k: int | None = None,
        *,
        k_in: int | None = None,
        k_out: int | None = None,
        seed: int = 0,
        precondition: AdamPreconditioner | None = None,
        normalize: bool = True,
        dtype: torch.dtype = torch.float32,
        include_bias: bool = False,
        projection: str | Mapping[str, tuple[torch.Tensor, torch.Tensor]] = DEFAULT_PROJECTION,
        scheme: str = "hash",
        backend: str = "auto",
        param_grads: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        check_choice("mode", mode, _MODES)
        if precondition is not None and not isinstance(precondition, AdamPreconditioner):
            raise TypeError(f"precondition must be an AdamPreconditioner or None, got {type(precondition).__name__}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        if precondition is not None and precondition.less and mode != "flat":
            raise ValueError(
                "the LESS feature m'/sqrt(v'+eps) needs each per-example gradient coordinate, which factored "
                "capture never forms: use mode='flat' with AdamPreconditioner(..., less=True)"
            )
        explicit: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
        if isinstance(projection, Mapping):
            if mode != "factored":
                raise ValueError("explicit projection matrices apply to factored mode only")
            explicit = _explicit_projections(projection)
        elif not isinstance(projection, str):
            raise TypeError(
                f"projection must be one of {PROJECTIONS} or a mapping {{module name: (P_in, P_out)}}, "
                f"got {type(projection).__name__}"
            )
        else:
            check_choice("projection", projection, PROJECTIONS)
        check_choice("scheme", scheme, ("hash", "block"))
        check_choice("backend", backend, ("auto", "triton", "torch"))
        self.model = model
        self.mode = mode
        self.seed = check_seed("seed", seed)
        self.precondition = precondition
        self.normalize = check_bool("normalize", normalize)
        self.dtype = dtype
        self.include_bias = check_bool("include_bias", include_bias)
        self.projection = "explicit" if explicit is not None else cast(str, projection)
        self._explicit = explicit
        self.scheme = scheme
        self.backend = backend
        self.param_grads = check_bool("param_grads", param_grads)
        self.k: int | None
        self.k_in: int | None
        self.k_out: int | None
        if mode == "factored" and explicit is not None:
            self.k = None
            self.k_in = self.k_out = None
            for side, want, col in (("k_in", k_in if k_in is not None else k, 0), ("k_out", k_out, 1)):
                if side == "k_out" and want is None:
                    want = k
                have = {p[col].shape[1] for p in explicit.values()}
                if want is not None:
                    want = check_int(side, want, 1)
                    if have != {want}:
                        raise ValueError(f"{side}={want} but the explicit projections have {side} in {sorted(have)}")
                if len(have) == 1:
                    setattr(self, side, next(iter(have)))
        elif mode == "factored":
            if k_in is None and k_out is None and k is None:
                raise ValueError("factored mode needs k_in and k_out (or k for both)")
            self.k_in = check_int("k_in", k_in if k_in is not None else k, 1)
            self.k_out = check_int("k_out", k_out if k_out is not None else k, 1)
            self.k = None
        else:
            if k is None:
                raise ValueError("flat mode needs k (the sketch dimension)")
            if k_in is not None or k_out is not None:
                raise ValueError("k_in/k_out apply to factored mode only; flat mode takes k")
            self.k = check_int("k", k, 1)
            self.k_in = self.k_out = None

        size: Callable[[str, int, int], int]
        if explicit is not None:
            mats = explicit

            def size(name: str, rows: int, width: int) -> int:
                if name not in mats:
                    raise ValueError(f"projection has no (P_in, P_out) for captured module {name!r}")
                p_in, p_out = mats[name]
                if p_in.shape[0] != width or p_out.shape[0] != rows:
                    raise ValueError(
                        f"projection[{name!r}]: P_in must have {width} rows (the input columns, plus one for "
                        f"the bias when included) and P_out {rows} (the outputs), got {tuple(p_in.shape)} "
                        f"and {tuple(p_out.shape)}"
                    )
                return p_out.shape[1] * p_in.shape[1]

        elif self.k_out is not None and self.k_in is not None:
            k_out, k_in = self.k_out, self.k_in
            size = lambda name, rows, width: k_out * k_in  # noqa: E731
        else:
            size = lambda name, rows, width: rows * width  # noqa: E731
        self._specs: list[ModuleSpec] = select_modules(model, modules, include_bias=self.include_bias, block_size=size)
        self._projection_sha256: str | None = None
        if explicit is not None:
            extra = sorted(set(explicit) - {t.name for t in self._specs})
            if extra:
                raise ValueError(f"projection has matrices for modules that are not captured: {extra}")
            self._projection_sha256 = _projection_digest([t.name for t in self._specs], explicit)
        self._targets: list[FactoredTarget | FlatTarget] = []
        offset = self._specs[-1].stop
        self._flat_dim = offset  # flat: uncompressed length
        if mode == "flat" and offset > 2**31:
            raise ValueError(f"flat mode sketches at most 2**31 coordinates, the selection has {offset}")
        #: length of each returned vector
        self.dim: int = offset if self.k is None else self.k
        #: length of the uncompressed per-example gradient of the selection
        self.raw_dim: int = sum(s.rows * s.width for s in self._specs)
        if self.dim > self.raw_dim:
            warnings.warn(
                f"the compressed dimension ({self.dim}) exceeds the selected modules' own gradient size "
                f"({self.raw_dim}): compression only adds work and storage here; choose smaller "
                f"{'k_in/k_out' if mode == 'factored' else 'k'} or more modules",
                UserWarning,
                stacklevel=2,
            )
        self._handles: list[Any] = []
        self._active = False
        self._prepared = False
        self._reset()

    # -- public description ---------------------------------------------------

    def __repr__(self) -> str:
        ks = f"k_in={self.k_in}, k_out={self.k_out}" if self.mode == "factored" else f"k={self.k}"
        return (
            f"GradientCapture(mode={self.mode!r}, {ks}, dim={self.dim}, raw_dim={self.raw_dim}, "
            f"modules={len(self._specs)}, seed={self.seed}"
            + (f", projection={self.projection!r})" if self.mode == "factored" else ")")
        )

    @property
    def config(self) -> dict[str, Any]:
        """The JSON description of how this capture compresses gradients (a new
        dict): what a store written from it records (``capture_to_store``) and
        what queries must match to be scored against that store
        (``score(store, queries, capture=cap)``). ``projection`` is the kind,
        or ``"explicit"`` with ``projection_sha256`` the digest of the matrices."""
        cfg = {
            "capture": "dataprobes.GradientCapture",
            "mode": self.mode,
            "seed": self.seed,
            "k": self.k,
            "k_in": self.k_in,
            "k_out": self.k_out,
            "dim": self.dim,
            "normalize": self.normalize,
            "projection": self.projection,
            "scheme": self.scheme,
            "include_bias": self.include_bias,
            "preconditioned": self.precondition is not None,
            "modules": [[e.module, e.kind, list(e.shape)] for e in self.layout],
        }
        if self._projection_sha256 is not None:
            cfg["projection_sha256"] = self._projection_sha256
        if self.precondition is not None and self.precondition.less:
            cfg["precondition"] = {"kind": "less", "betas": list(self.precondition.betas), "eps": self.precondition.eps}
        return cfg

    @property
    def module_names(self) -> list[str]:
        return [t.name for t in self._specs]

    @property
    def layout(self) -> list[LayoutEntry]:
        """Blocks of the output (factored) or of the sketched flat gradient (flat)."""
        return [t.layout_entry() for t in self._specs]

    def projections(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw (un-preconditioned) ``(P_in, P_out)`` of module ``name`` in
        factored mode: ``P_in`` [cols (+1 with bias), k_in], ``P_out`` [rows, k_out]."""
        if self.mode != "factored":
            raise ValueError("projections exist in factored mode only")
        t = self._spec(name)
        weight, k_in, k_out = t.module.weight, self.k_in, self.k_out
        assert isinstance(weight, torch.Tensor)
        dev = weight.device
        if self._explicit is not None:
            p_in, p_out = self._explicit[name]
            return p_in.to(dev, copy=True), p_out.to(dev, copy=True)
        assert k_in is not None and k_out is not None  # factored mode
        p_in = projection_matrix(
            t.cols + int(t.bias), k_in, _derive_seed(self.seed, name, "in"), device=dev, kind=self.projection
        )
        p_out = projection_matrix(t.rows, k_out, _derive_seed(self.seed, name, "out"), device=dev, kind=self.projection)
        return p_in, p_out

    def flatten(self, grads: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Flat per-example gradients ``[B, D]`` in :attr:`layout` order from a
        mapping ``"<module>.weight"`` / ``"<module>.bias"`` → ``[B, *shape]``
        (e.g. :func:`per_example_grads_func` with ``untie=True``)."""
        parts = []
        for t in self._specs:
            w = grads[f"{t.name}.weight"]
            b = w.shape[0]
            if t.bias:
                parts.append(
                    torch.cat(
                        [w.reshape(b, t.rows, t.cols), grads[f"{t.name}.bias"].reshape(b, t.rows, 1)], dim=2
                    ).reshape(b, -1)
                )
            else:
                parts.append(w.reshape(b, -1))
        return torch.cat(parts, dim=1)

    def _spec(self, name: str) -> ModuleSpec:
        for t in self._specs:
            if t.name == name:
                return t
        raise KeyError(f"module {name!r} is not captured")

    # -- context --------------------------------------------------------------

    def __enter__(self) -> GradientCapture:
        if self._active:
            raise RuntimeError("GradientCapture is already active")
        self._prepare()
        for t in self._targets:
            self._handles.append(t.spec.module.register_forward_hook(self._make_forward_hook(t)))
        self._active = True
        self._reset()
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._active = False
        self._reset()

    def _reset(self) -> None:
        self._outputs: list[torch.Tensor] = []
        self._calls: list[
            tuple[FactoredTarget | FlatTarget, torch.Tensor, torch.Tensor]
        ] = []  # target, saved input, output
        self._dead: set[str] = set()
        self._acc: torch.Tensor | None = None
        self._mask: torch.Tensor | None = None
        self._error: BaseException | None = None
        for t in getattr(self, "_targets", ()):
            if isinstance(t, _LessFlatTarget):
                t.pending = None

    def _prepare(self) -> None:
        """Build projection matrices (factored) or divisors (flat) once."""
        if self._prepared:
            return
        pre = self.precondition
        for t in self._specs:
            w = cast(torch.Tensor, t.module.weight)
            bias = cast(torch.Tensor, getattr(t.module, "bias", None))
            v = None
            if pre is not None and pre.less:
                m, v = pre.less_moments(w, f"{t.name}.weight")
                m, v = m.reshape(t.rows, t.cols), v.reshape(t.rows, t.cols)
                if t.bias:
                    mb, vb = pre.less_moments(bias, f"{t.name}.bias")
                    m, v = torch.cat([m, mb.reshape(t.rows, 1)], 1), torch.cat([v, vb.reshape(t.rows, 1)], 1)
                target = _LessFlatTarget(t, pre, m, v, cast(int, self.k), self.seed, self.scheme, self.backend)
                self._targets.append(target)
                continue
            if pre is not None:
                v = pre.second_moment(w, f"{t.name}.weight").reshape(t.rows, t.cols)
                if t.bias:
                    vb = pre.second_moment(bias, f"{t.name}.bias").reshape(t.rows, 1)
                    v = torch.cat([v, vb], dim=1)
            if self.mode == "factored":
                p_in, p_out = self.projections(t.name)
                if v is not None:
                    a, b = pre.factors(v)  # type: ignore[union-attr]
                    p_in = p_in / b[:, None]
                    p_out = p_out / a[:, None]
                self._targets.append(FactoredTarget(t, p_in, p_out, self.backend))
            else:
                den = None if v is None else v.sqrt() + pre.eps  # type: ignore[union-attr]
                self._targets.append(FlatTarget(t, den, cast(int, self.k), self.seed, self.scheme, self.backend))
        self._prepared = True

    # -- hooks ----------------------------------------------------------------

    def _make_forward_hook(self, t: FactoredTarget | FlatTarget) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            if not self._active or not torch.is_grad_enabled():
                return
            if not isinstance(output, torch.Tensor):
                return
            if not output.requires_grad:
                self._dead.add(t.spec.name)
                return
            x = inputs[0].detach()
            self._calls.append((t, x, output))
            self._outputs.append(output)
            output.register_hook(self._make_grad_hook(t, x))

        return hook

    def _make_grad_hook(self, t: FactoredTarget | FlatTarget, x: torch.Tensor) -> Callable[[torch.Tensor], None]:
        def hook(grad: torch.Tensor) -> None:
            if self._acc is None or self._error is not None:
                return
            try:
                t.accumulate(self._acc, x, grad, self._mask)
            except BaseException as e:  # re-raised by backward() with context
                self._error = e

        return hook

    # -- the call -------------------------------------------------------------

    def backward(self, losses: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Back-propagate ``losses.sum()`` once and return ``[B, dim]``.

        ``losses``: per-example losses ``[B]`` from a forward pass run inside
        this context. ``mask``: optional ``[B, T]`` position weights (see the
        module docstring). Every call consumes the forward passes recorded
        since the previous one, also when it raises.
        """
        if not self._active:
            raise RuntimeError("call backward() inside the 'with GradientCapture(...)' block")
        if not isinstance(losses, torch.Tensor):
            self._reset()
            raise TypeError(f"losses must be a tensor, got {type(losses).__name__}")
        if losses.dim() != 1:
            self._reset()
            raise ValueError(f"losses must be per-example, shape [B], got {tuple(losses.shape)}")
        b = losses.shape[0]
        if b == 0:
            self._reset()
            raise ValueError("empty batch: losses has no examples")
        if not losses.requires_grad:
            self._reset()
            raise ValueError(
                "losses do not require grad: run the forward pass with autograd enabled inside the context"
            )
        if mask is not None:
            if not isinstance(mask, torch.Tensor):
                self._reset()
                raise TypeError(f"mask must be a tensor, got {type(mask).__name__}")
            if mask.dim() != 2 or mask.shape[0] != b:
                self._reset()
                raise ValueError(f"mask must have shape [B, T] with B={b}, got {tuple(mask.shape)}")
        if not self._calls:
            dead = sorted(self._dead)
            self._reset()
            if dead:
                raise RuntimeError(
                    f"outputs of {dead} do not require grad (frozen weights and inputs): "
                    "set requires_grad on the weights you want gradients for"
                )
            raise RuntimeError("no captured module ran in the forward pass since the last backward()")
        device = losses.device
        self._mask = None if mask is None else mask.to(device=device, dtype=torch.float32)
        self._acc = torch.zeros(b, self.dim, dtype=torch.float32, device=device)
        try:
            total = losses.sum()
            if self.param_grads:
                total.backward()
            else:
                torch.autograd.grad(total, self._outputs, allow_unused=True)
            if self._error is not None:
                raise self._error
            for t in self._targets:
                if isinstance(t, _LessFlatTarget):
                    t.finish(self._acc)
            out = self._acc
        finally:
            self._reset()
        if self.normalize:
            n = out.norm(dim=1, keepdim=True)
            out = torch.where(n > 0, out / torch.where(n > 0, n, 1.0), out)
        return out.to(self.dtype)
