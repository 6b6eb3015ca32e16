"""GradientCapture: compressed per-example gradients from one forward +
backward equal the explicit per-example gradients (torch.func vmap(grad))
compressed with the same projections."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from dataprobes.attribution import (  # noqa: E402
    AdamPreconditioner,
    GradientCapture,
    compress_flat,
    flatten_grads,
    per_example_grads_func,
)
from dataprobes.lm import TinyGPT  # noqa: E402


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    scale = max(1e-12, float(b.abs().max()))
    torch.testing.assert_close(a.float(), b.float(), rtol=tol, atol=tol * scale)


class MLP(nn.Module):
    """Token-wise MLP (no mixing across positions); ``shared`` runs twice."""

    def __init__(self, d_in: int = 5, h: int = 7, d_out: int = 3) -> None:
        super().__init__()
        self.inp = nn.Linear(d_in, h)
        self.shared = nn.Linear(h, h)
        self.out = nn.Linear(h, d_out, bias=False)
        self.norm = nn.LayerNorm(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inp(x))
        h = torch.tanh(self.shared(h))
        h = self.norm(torch.tanh(self.shared(h)))
        return self.out(h)


def mlp_losses(model, x, y, w=None):
    err = ((model(x) - y) ** 2).sum(-1)  # [B, T] or [B]
    if w is not None:
        err = err * w
    if err.dim() > 1:
        return err.sum(1)
    return err


def gpt_losses(model, idx):
    logits = model(idx[:, :-1])
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), idx[:, 1:].reshape(-1), reduction="none")
    return nll.reshape(idx.shape[0], -1).sum(1)


def _mlp_batch(b: int, t: int | None, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = (b, t) if t is not None else (b,)
    return torch.randn(*shape, 5, generator=g), torch.randn(*shape, 3, generator=g)


def _tiny_gpt(seed: int = 0, **kw):
    torch.manual_seed(seed)
    cfg = dict(vocab_size=11, max_len=16, d_model=16, n_layers=1, n_heads=2)
    cfg.update(kw)
    return TinyGPT(**cfg)


def _projected(cap: GradientCapture, grads: dict[str, torch.Tensor]) -> torch.Tensor:
    """Explicit per-example gradients projected with the capture's matrices."""
    out = []
    for e in cap.layout:
        p_in, p_out = cap.projections(e.module)
        rows, cols = e.shape
        w = grads[f"{e.module}.weight"].reshape(-1, rows, cols - int(e.has_bias))
        if e.has_bias:
            w = torch.cat([w, grads[f"{e.module}.bias"].reshape(-1, rows, 1)], dim=2)
        out.append((p_out.T @ w.float() @ p_in).reshape(w.shape[0], -1))
    return torch.cat(out, dim=1)


# ----------------------------------------------------------------------------
# Factored mode equals the projected exact gradient
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("b,t", [(1, 4), (3, 5), (5, None)])
@pytest.mark.parametrize("include_bias", [False, True])
def test_factored_mlp_matches_vmap(b, t, include_bias):
    model = MLP()
    x, y = _mlp_batch(b, t)
    with GradientCapture(model, mode="factored", k_in=4, k_out=3, normalize=False, include_bias=include_bias) as cap:
        got = cap.backward(mlp_losses(model, x, y))
    assert got.shape == (b, cap.dim) and cap.dim == 3 * 12
    assert cap.module_names == ["inp", "shared", "out"]
    exact = per_example_grads_func(model, mlp_losses, (x, y))
    _close(got, _projected(cap, exact))
    # nothing was written to .grad by default
    assert all(p.grad is None for p in model.parameters())


def test_factored_tiny_gpt_matches_vmap():
    model = _tiny_gpt()
    idx = torch.randint(0, 11, (3, 7), generator=torch.Generator().manual_seed(1))
    with GradientCapture(model, mode="factored", k_in=5, k_out=4, normalize=False) as cap:
        got = cap.backward(gpt_losses(model, idx))
    assert cap.module_names == ["blocks.0.qkv", "blocks.0.proj", "blocks.0.mlp.0", "blocks.0.mlp.2", "head"]
    # untie: head.weight is tied to tok_emb.weight; the head block is the gradient through the head only
    exact = per_example_grads_func(model, gpt_losses, idx, untie=True)
    _close(got, _projected(cap, exact))


def test_factored_embedding_matches_vmap():
    model = _tiny_gpt()
    idx = torch.randint(0, 11, (2, 6), generator=torch.Generator().manual_seed(2))
    with GradientCapture(model, ["tok_emb", model.blocks[0].proj], mode="factored", k=3, normalize=False) as cap:
        got = cap.backward(gpt_losses(model, idx))
    exact = per_example_grads_func(model, gpt_losses, idx, untie=True)
    assert cap.layout[0].kind == "embedding"
    _close(got, _projected(cap, exact))


def test_embedding_padding_idx_is_excluded():
    emb = nn.Embedding(6, 4, padding_idx=0)
    model = nn.Sequential(emb, nn.Linear(4, 2))
    idx = torch.tensor([[0, 3, 0, 5], [1, 0, 2, 2]])

    def losses(m, i):
        return m(i).pow(2).sum((1, 2))

    with GradientCapture(model, ["0"], mode="factored", k=3, normalize=False) as cap:
        got = cap.backward(losses(model, idx))
    exact = per_example_grads_func(model, losses, idx)
    assert float(exact["0.weight"][:, 0].abs().max()) == 0.0
    _close(got, _projected(cap, exact))


# ----------------------------------------------------------------------------
# Flat mode equals the SJLT of the exact gradient
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["hash", "block"])
def test_flat_mlp_matches_sjlt_of_vmap(scheme):
    model = MLP()
    x, y = _mlp_batch(3, 4)
    with GradientCapture(model, mode="flat", k=17, seed=5, normalize=False, include_bias=True, scheme=scheme) as cap:
        got = cap.backward(mlp_losses(model, x, y))
    assert got.shape == (3, 17) and cap.dim == 17
    exact = per_example_grads_func(model, mlp_losses, (x, y))
    _close(got, compress_flat(cap.flatten(exact), 17, 5, scheme=scheme))


def test_flat_tiny_gpt_with_embedding_matches_sjlt_of_vmap():
    model = _tiny_gpt()
    idx = torch.randint(0, 11, (2, 6), generator=torch.Generator().manual_seed(3))
    mods = ["tok_emb", "blocks.0.qkv", "blocks.0.mlp.2", "head"]
    with GradientCapture(model, mods, mode="flat", k=64, seed=1) as cap:
        got = cap.backward(gpt_losses(model, idx))
    exact = per_example_grads_func(model, gpt_losses, idx, untie=True)
    want = compress_flat(flatten_grads(exact, [f"{m}.weight" for m in mods]), 64, 1, normalize=True)
    _close(got, want)
    torch.testing.assert_close(got.norm(dim=1), torch.ones(2))


# ----------------------------------------------------------------------------
# Masks, batch sizes, errors
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["factored", "flat"])
def test_mask_excludes_padding_positions(mode):
    # Every position carries a nonzero loss (and gradient); with the mask the
    # capture must equal the exact gradient of the loss over unmasked positions.
    model = MLP()
    x, y = _mlp_batch(3, 6, seed=4)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [0, 1, 0, 1, 0, 1]])
    kw = dict(k_in=4, k_out=3) if mode == "factored" else dict(k=23)
    with GradientCapture(model, mode=mode, normalize=False, **kw) as cap:
        got = cap.backward(mlp_losses(model, x, y), mask=mask)
        unmasked = cap.backward(mlp_losses(model, x, y))
    exact = per_example_grads_func(model, mlp_losses, (x, y, mask.float()))
    want = _projected(cap, exact) if mode == "factored" else compress_flat(cap.flatten(exact), 23)
    _close(got, want)
    assert not torch.allclose(got, unmasked)
    # a fully masked example captures nothing
    with GradientCapture(model, mode=mode, normalize=True, **kw) as cap:
        g0 = cap.backward(mlp_losses(model, x, y), mask=torch.zeros(3, 6))
    assert float(g0.abs().max()) == 0.0


def _masked_gpt_losses(m, i, w):
    logits = m(i[:, :-1])
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), i[:, 1:].reshape(-1), reduction="none")
    return (nll.reshape(i.shape[0], -1) * w).sum(1)


def test_mask_with_tiny_gpt():
    model = _tiny_gpt()
    idx = torch.randint(1, 11, (3, 7), generator=torch.Generator().manual_seed(5))
    right = torch.ones(3, 6)
    right[0, 4:] = 0
    right[2, 2:] = 0

    def cap_run(w_loss, mask):
        with GradientCapture(model, mode="factored", k=4, normalize=False) as cap:
            return cap, cap.backward(_masked_gpt_losses(model, idx, w_loss), mask=mask)

    # Right padding with the loss masked: in a causal model nothing flows into
    # the padding positions, so the mask changes nothing and the capture is exact.
    cap, got = cap_run(right, right)
    exact = per_example_grads_func(model, _masked_gpt_losses, (idx, right), untie=True)
    _close(got, _projected(cap, exact))
    _close(cap_run(right, None)[1], got)

    # Left padding: real tokens attend to the pads, so gradient leaks into the
    # pad positions; the mask drops exactly their g_t x_tᵀ terms (linearity).
    left = right.flip(1)
    _, kept = cap_run(left, left)
    _, dropped = cap_run(left, 1 - left)
    _, full = cap_run(left, None)
    _close(kept + dropped, full)
    assert float(dropped.abs().max()) > 1e-3 * float(full.abs().max())


def test_empty_batch_and_bad_losses():
    model = MLP()
    x, y = _mlp_batch(2, 3)
    with GradientCapture(model, mode="factored", k=2) as cap:
        with pytest.raises(ValueError, match="empty batch"):
            cap.backward(mlp_losses(model, x[:0], y[:0]))
        with pytest.raises(ValueError, match=r"shape \[B\]"):
            cap.backward(mlp_losses(model, x, y)[:, None])
        with pytest.raises(ValueError, match="mask must have shape"):
            cap.backward(mlp_losses(model, x, y), mask=torch.ones(3, 3))
        with pytest.raises(RuntimeError, match="no captured module ran"):
            cap.backward(torch.ones(2, requires_grad=True))
    with pytest.raises(RuntimeError, match="inside the 'with"):
        cap.backward(mlp_losses(model, x, y))
    with pytest.raises(ValueError, match="empty batch"):
        per_example_grads_func(model, mlp_losses, (x[:0], y[:0]))


def test_unsupported_module_and_bad_arguments():
    model = MLP()
    with pytest.raises(TypeError, match="module 'norm' is LayerNorm"):
        GradientCapture(model, ["inp", "norm"], k=2)
    with pytest.raises(TypeError, match="Conv1d"):
        GradientCapture(nn.Sequential(nn.Conv1d(2, 2, 3)), ["0"], k=2)
    with pytest.raises(ValueError, match="no module named 'nope'"):
        GradientCapture(model, ["nope"], k=2)
    with pytest.raises(ValueError, match="not a submodule"):
        GradientCapture(model, [nn.Linear(2, 2)], k=2)
    with pytest.raises(ValueError, match="mode"):
        GradientCapture(model, mode="dense", k=2)
    with pytest.raises(ValueError, match="flat mode needs k"):
        GradientCapture(model, mode="flat")
    with pytest.raises(ValueError, match="factored mode needs"):
        GradientCapture(model)
    with pytest.raises(ValueError, match="no nn.Linear"):
        GradientCapture(nn.Sequential(nn.Tanh()), k=2)


def test_module_without_batch_dimension_raises():
    model = _tiny_gpt()
    idx = torch.randint(0, 11, (2, 5))
    with GradientCapture(model, ["pos_emb"], k=2) as cap:
        with pytest.raises(ValueError, match="'pos_emb'.*not the batch"):
            cap.backward(gpt_losses(model, idx))


def test_frozen_module_raises_clearly():
    model = nn.Sequential(nn.Linear(3, 2))
    model[0].weight.requires_grad_(False)
    model[0].bias.requires_grad_(False)
    with GradientCapture(model, ["0"], k=2) as cap:
        out = model(torch.randn(2, 3)).sum(1)
        with pytest.raises(ValueError, match="do not require grad"):
            cap.backward(out)


def test_hooks_removed_after_exit_and_reusable():
    model = MLP()
    x, y = _mlp_batch(2, 3)
    cap = GradientCapture(model, k=3)
    with cap:
        a = cap.backward(mlp_losses(model, x, y))
    assert all(not m._forward_hooks for m in model.modules())
    with cap:
        b = cap.backward(mlp_losses(model, x, y))
    torch.testing.assert_close(a, b)


# ----------------------------------------------------------------------------
# Seeds, dtypes, backends, param grads
# ----------------------------------------------------------------------------


def test_deterministic_in_seed():
    model = _tiny_gpt()
    idx = torch.randint(0, 11, (3, 6), generator=torch.Generator().manual_seed(6))

    def run(seed, mode="factored"):
        kw = dict(k=4) if mode == "factored" else dict(k=31)
        with GradientCapture(model, mode=mode, seed=seed, **kw) as cap:
            return cap.backward(gpt_losses(model, idx))

    for mode in ("factored", "flat"):
        assert torch.equal(run(3, mode), run(3, mode))
        assert not torch.allclose(run(3, mode), run(4, mode))


def test_backends_agree():
    model = _tiny_gpt()
    idx = torch.randint(0, 11, (3, 6), generator=torch.Generator().manual_seed(7))
    outs = []
    for backend in ("torch", "auto"):
        with GradientCapture(model, k=4, backend=backend) as cap:
            outs.append(cap.backward(gpt_losses(model, idx)))
    _close(outs[1], outs[0])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_model(dtype):
    model32 = _tiny_gpt(seed=8)
    model = _tiny_gpt(seed=8).to(dtype)
    model32.load_state_dict({k: v.to(dtype).float() for k, v in model.state_dict().items()})
    idx = torch.randint(0, 11, (3, 6), generator=torch.Generator().manual_seed(8))

    def losses(m, i):  # loss in float32 on top of the low-precision model
        logits = m(i[:, :-1]).float()
        return (
            F.cross_entropy(logits.reshape(-1, 11), i[:, 1:].reshape(-1), reduction="none")
            .reshape(i.shape[0], -1)
            .sum(1)
        )

    with GradientCapture(model, k=6, dtype=dtype) as cap:
        got = cap.backward(losses(model, idx))
    assert got.dtype == dtype
    with GradientCapture(model32, k=6) as cap32:
        want = cap32.backward(losses(model32, idx))
    cos = F.cosine_similarity(got.float(), want, dim=1)
    assert float(cos.min()) > 0.98, cos


def test_param_grads_true_writes_summed_grad():
    model = MLP()
    x, y = _mlp_batch(3, 4)
    with GradientCapture(model, k=3, normalize=False) as cap:
        a = cap.backward(mlp_losses(model, x, y))
    with GradientCapture(model, k=3, normalize=False, param_grads=True) as cap:
        b = cap.backward(mlp_losses(model, x, y))
    _close(b, a)
    exact = per_example_grads_func(model, mlp_losses, (x, y))
    _close(model.inp.weight.grad, exact["inp.weight"].sum(0))


def test_normalize_gives_unit_rows():
    model = MLP()
    x, y = _mlp_batch(4, 3)
    with GradientCapture(model, k=3, normalize=False) as cap:
        raw = cap.backward(mlp_losses(model, x, y))
    with GradientCapture(model, k=3, normalize=True, dtype=torch.float64) as cap:
        unit = cap.backward(mlp_losses(model, x, y))
    assert unit.dtype == torch.float64
    _close(unit.float(), raw / raw.norm(dim=1, keepdim=True))


# ----------------------------------------------------------------------------
# Adam preconditioning
# ----------------------------------------------------------------------------


def _rank1_moments(model: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(9)
    out = {}
    for n in names:
        w = model.get_submodule(n).weight
        r = torch.rand(w.shape[0], generator=g) + 0.1
        c = torch.rand(w.shape[1], generator=g) + 0.1
        out[f"{n}.weight"] = torch.outer(r, c) * 1e-3
    return out


def test_flat_preconditioning_is_exact_elementwise():
    model = MLP()
    x, y = _mlp_batch(3, 4)
    g = torch.Generator().manual_seed(10)
    v = {n: torch.rand(p.shape, generator=g) * 1e-2 for n, p in model.named_parameters()}
    pre = AdamPreconditioner(v, eps=1e-3, bias_correction=0.5)
    with GradientCapture(model, mode="flat", k=19, precondition=pre, normalize=False, include_bias=True) as cap:
        got = cap.backward(mlp_losses(model, x, y))
    exact = per_example_grads_func(model, mlp_losses, (x, y))
    scaled = {n: t / ((v[n] / 0.5).sqrt() + 1e-3) for n, t in exact.items()}
    _close(got, compress_flat(cap.flatten(scaled), 19))


def test_factored_preconditioning_exact_for_rank1_second_moment():
    model = MLP()
    x, y = _mlp_batch(3, 4)
    v = _rank1_moments(model, ["inp", "shared", "out"])
    pre = AdamPreconditioner(v, eps=0.0, bias_correction=0.25)
    with GradientCapture(model, mode="factored", k=3, precondition=pre, normalize=False) as cap:
        got = cap.backward(mlp_losses(model, x, y))
    exact = per_example_grads_func(model, mlp_losses, (x, y))
    scaled = {n: t / (v[n] / 0.25).sqrt() for n, t in exact.items() if n in v}
    _close(got, _projected(cap, scaled), 1e-4)


def test_from_optimizer_reads_adam_state():
    model = MLP()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=1e-6)
    x, y = _mlp_batch(3, 4)
    with pytest.raises(ValueError, match="take at least one step"):
        AdamPreconditioner.from_optimizer(opt)
    for _ in range(2):
        opt.zero_grad()
        mlp_losses(model, x, y).sum().backward()
        opt.step()
    pre = AdamPreconditioner.from_optimizer(opt)
    assert pre.eps == 1e-6
    v = opt.state[model.inp.weight]["exp_avg_sq"]
    torch.testing.assert_close(pre.second_moment(model.inp.weight, "inp.weight"), v / (1 - 0.99**2))
    model.zero_grad(set_to_none=True)
    with GradientCapture(model, mode="flat", k=7, precondition=pre) as cap:
        out = cap.backward(mlp_losses(model, x, y))
    assert torch.isfinite(out).all()
    with pytest.raises(TypeError, match="Adam-family"):
        AdamPreconditioner.from_optimizer(torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(KeyError, match="inp.weight"):
        with GradientCapture(model, mode="flat", k=7, precondition=AdamPreconditioner({})):
            pass


# ----------------------------------------------------------------------------
# Projection kinds and explicit projections
# ----------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:the compressed dimension")
@settings(max_examples=10)
@given(
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(0, 4),
    st.integers(0, 3),
    st.booleans(),
    st.integers(0, 2**64 - 1),
)
def test_orthogonal_factored_capture_is_exact_when_k_reaches_the_dimensions(b, t, extra_in, extra_out, bias, seed):
    # with k_in >= d_in and k_out >= d_out (every layer of the MLP: widths up
    # to 7 + 1, outputs up to 7), P P^T = I on both sides, so the captured
    # features have exactly the inner products of the full per-example gradients
    model = MLP()
    x, y = _mlp_batch(b, t, seed=seed % 1000)
    k_in, k_out = 8 + extra_in, 7 + extra_out
    with GradientCapture(
        model, mode="factored", k_in=k_in, k_out=k_out, seed=seed, normalize=False, include_bias=bias
    ) as cap:
        got = cap.backward(mlp_losses(model, x, y)).double()
    assert cap.config["projection"] == "orthogonal"  # the default
    exact = cap.flatten(per_example_grads_func(model, mlp_losses, (x, y))).double()
    want = exact @ exact.T
    torch.testing.assert_close(got @ got.T, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))


def test_projection_kinds_are_recorded_and_distinct():
    model = MLP()
    x, y = _mlp_batch(3, 4)
    outs = {}
    for kind in ("orthogonal", "gaussian", "rademacher"):
        with GradientCapture(model, mode="factored", k=3, projection=kind, normalize=False) as cap:
            outs[kind] = cap.backward(mlp_losses(model, x, y))
        assert cap.config["projection"] == kind and "projection_sha256" not in cap.config
        _close(outs[kind], _projected(cap, per_example_grads_func(model, mlp_losses, (x, y))))
    assert not torch.equal(outs["orthogonal"], outs["gaussian"])
    assert GradientCapture(model, k=3).projection == "orthogonal"


def _explicit(cap: GradientCapture) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {n: cap.projections(n) for n in cap.module_names}


def test_explicit_projections_reproduce_the_named_kind_and_record_a_digest():
    model = MLP()
    x, y = _mlp_batch(3, 4)
    with GradientCapture(model, mode="factored", k_in=4, k_out=2, include_bias=True, normalize=False) as cap:
        want = cap.backward(mlp_losses(model, x, y))
    mats = _explicit(cap)
    with GradientCapture(model, mode="factored", projection=mats, include_bias=True, normalize=False) as ecap:
        got = ecap.backward(mlp_losses(model, x, y))
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    cfg = ecap.config
    assert cfg["projection"] == "explicit" and (ecap.k_in, ecap.k_out) == (4, 2) and ecap.dim == cap.dim
    assert len(cfg["projection_sha256"]) == 64
    # the digest is of the float32 matrices: another dtype of the same values agrees, another value does not
    same = {n: (a.double(), b.double()) for n, (a, b) in mats.items()}
    assert GradientCapture(model, projection=same, include_bias=True, normalize=False).config == cfg
    other = {n: (a.clone(), b.clone()) for n, (a, b) in mats.items()}
    other["out"][1][0, 0] += 1e-3
    other_cfg = GradientCapture(model, projection=other, include_bias=True, normalize=False).config
    assert other_cfg["projection_sha256"] != cfg["projection_sha256"]
    # later changes to the caller's tensors do not reach the capture
    mats["inp"][0].zero_()
    assert GradientCapture(model, projection=same, include_bias=True, normalize=False).config == cfg
    torch.testing.assert_close(ecap.projections("inp")[0], same["inp"][0].float())


def test_explicit_projections_may_differ_in_size_per_module():
    model = MLP()
    x, y = _mlp_batch(2, 3)
    g = torch.Generator().manual_seed(4)
    mats = {
        "inp": (torch.randn(5, 2, generator=g), torch.randn(7, 3, generator=g)),
        "shared": (torch.randn(7, 4, generator=g), torch.eye(7)),
        "out": (torch.randn(7, 1, generator=g), torch.randn(3, 2, generator=g)),
    }
    with GradientCapture(model, projection=mats, normalize=False) as cap:
        got = cap.backward(mlp_losses(model, x, y))
    assert cap.dim == 6 + 28 + 2 and cap.k_in is None and cap.k_out is None
    assert [e.stop - e.start for e in cap.layout] == [6, 28, 2]
    _close(got, _projected(cap, per_example_grads_func(model, mlp_losses, (x, y))))


@pytest.mark.parametrize(
    ("edit", "kwargs", "exc", "match"),
    [
        (lambda m: m.pop("shared"), {}, ValueError, r"no \(P_in, P_out\) for captured module 'shared'"),
        (lambda m: m.update(norm=m["inp"]), {}, ValueError, r"not captured: \['norm'\]"),
        (lambda m: m.update(inp=(m["inp"][0][:4], m["inp"][1])), {}, ValueError, "P_in must have 5 rows"),
        (lambda m: m.update(inp=(m["inp"][0], m["inp"][1][:3])), {}, ValueError, "P_out 7"),
        (lambda m: m.update(inp=(m["inp"][0].long(), m["inp"][1])), {}, TypeError, "P_in must be a floating"),
        (lambda m: m.update(inp=(m["inp"][0], [[1.0]])), {}, TypeError, "P_out must be a floating"),
        (lambda m: m.update(inp=m["inp"][0]), {}, TypeError, r"must be a pair \(P_in, P_out\)"),
        (lambda m: m.update(inp=(m["inp"][0][0], m["inp"][1])), {}, ValueError, "must be 2-D"),
        (lambda m: m.update(inp=(m["inp"][0] * float("nan"), m["inp"][1])), {}, ValueError, "non-finite"),
        (lambda m: m.update({1: m["inp"]}), {}, TypeError, "keys must be module names"),
        (lambda m: None, {"k_in": 5}, ValueError, r"k_in=5 but the explicit projections have k_in in \[3\]"),
        (lambda m: None, {"k": 2}, ValueError, "k_in=2 but"),
        (lambda m: None, {"mode": "flat", "k": 4}, ValueError, "factored mode only"),
    ],
)
def test_explicit_projection_errors(edit, kwargs, exc, match):
    model = MLP()
    mats = _explicit(GradientCapture(model, k_in=3, k_out=2))
    edit(mats)
    with pytest.raises(exc, match=match):
        GradientCapture(model, projection=mats, **kwargs)


class _SkipNet(nn.Module):
    """``skip`` runs only for examples whose first feature is positive (the
    others get exactly zero gradient there); a batch without such an
    example never calls it."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(4, 5)
        self.skip = nn.Linear(5, 5)
        self.out = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inp(x))
        use = x[:, 0] > 0
        if bool(use.any()):
            h = h + use[:, None].to(h.dtype) * torch.tanh(self.skip(h))
        return self.out(h)


def test_less_feature_of_an_unused_module_is_the_momentum_term():
    """LESS Γ = (β1 m + (1−β1) g)/sqrt(β2 v + (1−β2) g² + ε) with g = 0 for
    a module the example does not use: β1 m/sqrt(β2 v + ε), not 0, whether
    the module ran for other rows of the batch or not at all. Against a float64
    numpy-style reference from batch-1 ``p.grad`` (None = zero gradient)."""
    import numpy as np

    torch.manual_seed(0)
    model = _SkipNet()
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(6, 4, generator=gen)
    x[[0, 2, 3], 0] = -x[[0, 2, 3], 0].abs()  # rows 0, 2, 3 skip the module
    x[[1, 4, 5], 0] = x[[1, 4, 5], 0].abs()
    y = torch.randn(6, 2, generator=gen)
    names = ["inp", "skip", "out"]
    params = dict(model.named_parameters())
    m = {f"{n}.weight": torch.randn(params[f"{n}.weight"].shape, generator=gen) * 1e-2 for n in names}
    v = {k: torch.rand(t.shape, generator=gen) * 1e-4 for k, t in m.items()}
    pre = AdamPreconditioner(v, first_moments=m, less=True)
    k, seed = 23, 4

    want = []
    for i in range(6):
        model.zero_grad(set_to_none=True)
        mlp_losses(model, x[i : i + 1], y[i : i + 1]).sum().backward()
        assert (params["skip.weight"].grad is None) == (i in (0, 2, 3))  # unused: p.grad is None
        parts = []
        for n in names:
            p = params[f"{n}.weight"]
            g = np.zeros(p.shape) if p.grad is None else p.grad.numpy().astype(np.float64)
            mm, vv = m[f"{n}.weight"].double().numpy(), v[f"{n}.weight"].double().numpy()
            parts.append(((0.9 * mm + 0.1 * g) / np.sqrt(0.999 * vv + 0.001 * g * g + 1e-8)).ravel())
        want.append(np.concatenate(parts))
    ref = compress_flat(torch.tensor(np.array(want), dtype=torch.float32), k, seed, normalize=False)
    model.zero_grad(set_to_none=True)
    for batches in ([[i] for i in range(6)], [[0, 2, 3], [1, 4, 5]], [[0, 1, 2, 3, 4, 5]]):
        got = torch.empty(6, k)
        with GradientCapture(model, names, mode="flat", k=k, seed=seed, precondition=pre, normalize=False) as cap:
            for b in batches:
                got[b] = cap.backward(mlp_losses(model, x[b], y[b]))
        _close(got, ref, 1e-5)
    const = 0.9 * m["skip.weight"].double().numpy() / np.sqrt(0.999 * v["skip.weight"].double().numpy() + 1e-8)
    np.testing.assert_allclose(want[0][20:45], const.ravel())  # the skipped block: β1 m/sqrt(β2 v + ε) ≠ 0
    assert np.abs(const).max() > 0.1
