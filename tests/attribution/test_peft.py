"""GradientCapture on a PEFT LoRA model: the trainable ``lora_A`` / ``lora_B``
linears are found automatically (the frozen base weights are skipped) and the
compressed per-example gradients equal the exact LoRA gradients (torch.func)
compressed with the same projections."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from torch.nn import functional as F  # noqa: E402

from dataprobes.attribution import GradientCapture, compress_flat, flatten_grads, per_example_grads_func  # noqa: E402
from dataprobes.lm import TinyGPT  # noqa: E402


def _losses(model, idx, mask=None):
    logits = model(idx[:, :-1])
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), idx[:, 1:].reshape(-1), reduction="none")
    nll = nll.reshape(idx.shape[0], -1)
    return (nll if mask is None else nll * mask).sum(1)


def _lora_gpt(seed: int = 0):
    torch.manual_seed(seed)
    base = TinyGPT(vocab_size=13, max_len=16, d_model=16, n_layers=2, n_heads=2)
    # random B as well as A (PEFT's default B = 0 would make every lora_A gradient vanish)
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["qkv", "proj"], init_lora_weights=False)
    return peft.get_peft_model(base, cfg)


def _batch(b=3, t=8, seed=1):
    return torch.randint(0, 13, (b, t), generator=torch.Generator().manual_seed(seed))


def test_lora_linears_are_selected():
    model = _lora_gpt()
    with GradientCapture(model, mode="factored", k=3) as cap:
        names = cap.module_names
    assert len(names) == 8 and all(".lora_A." in n or ".lora_B." in n for n in names)
    trainable = {n.rsplit(".", 1)[0] for n, p in model.named_parameters() if p.requires_grad}
    assert set(names) == trainable


def test_factored_lora_matches_exact_lora_gradients():
    model = _lora_gpt()
    idx = _batch()
    mask = torch.tensor([[1.0] * 7, [1.0] * 4 + [0.0] * 3, [0.0] * 2 + [1.0] * 5])
    with GradientCapture(model, mode="factored", k_in=3, k_out=2, normalize=False) as cap:
        got = cap.backward(_losses(model, idx, mask))
    exact = per_example_grads_func(model, _losses, (idx, mask))
    assert set(exact) == {f"{e.module}.weight" for e in cap.layout}
    want = []
    for e in cap.layout:
        p_in, p_out = cap.projections(e.module)
        w = exact[f"{e.module}.weight"].float()
        want.append((p_out.T @ w @ p_in).reshape(w.shape[0], -1))
    want_t = torch.cat(want, 1)
    torch.testing.assert_close(got, want_t, rtol=1e-5, atol=1e-5 * float(want_t.abs().max()))
    assert all(p.grad is None for p in model.parameters())


def test_flat_lora_matches_sketch_of_exact_gradients():
    model = _lora_gpt(seed=3)
    idx = _batch(seed=4)
    with GradientCapture(model, mode="flat", k=32, seed=9) as cap:
        got = cap.backward(_losses(model, idx))
    exact = per_example_grads_func(model, _losses, idx)
    want = compress_flat(flatten_grads(exact, [f"{m}.weight" for m in cap.module_names]), 32, 9, normalize=True)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_fresh_lora_gradient_is_the_factored_capture_with_its_a_matrices():
    """The teacher of a freshly initialised LoRA (PEFT's default: seeded A,
    B = 0): the model equals the base model, so the per-example gradient of
    ``lora_B`` is ``s G_W A^T`` (``G_W`` the base weight's per-example
    gradient, ``s = lora_alpha / r``), which is the factored capture of the
    base model with the explicit projections ``P_in = s A^T`` [d_in, r] and
    ``P_out = I`` [d_out, d_out]; the block ``vec(P_out^T G_W P_in)`` is
    row-major ``[d_out, r]``, the layout of ``lora_B.weight``."""
    import copy

    torch.manual_seed(0)
    base = TinyGPT(vocab_size=13, max_len=16, d_model=16, n_layers=2, n_heads=2)
    torch.manual_seed(5)  # draws A
    lora = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=4, lora_alpha=8, target_modules=["qkv", "proj"]))
    idx = _batch(b=4, seed=2)
    mask = torch.tensor([[1.0] * 7, [1.0] * 4 + [0.0] * 3, [0.0] * 2 + [1.0] * 5, [1.0] * 7])
    names = [f"blocks.{i}.{m}" for i in range(2) for m in ("qkv", "proj")]
    exact_lora = per_example_grads_func(lora, _losses, (idx, mask))
    exact_base = per_example_grads_func(base, _losses, (idx, mask), params=[f"{n}.weight" for n in names])
    mats = {}
    for n in names:
        layer = lora.base_model.model.get_submodule(n)
        a, s = layer.lora_A["default"].weight.detach(), layer.scaling["default"]
        assert float(layer.lora_B["default"].weight.detach().abs().max()) == 0.0 and s == 2.0
        g_b = exact_lora[f"base_model.model.{n}.lora_B.default.weight"]  # [B, d_out, r]
        assert float(exact_lora[f"base_model.model.{n}.lora_A.default.weight"].abs().max()) == 0.0
        g_w = exact_base[f"{n}.weight"]  # [B, d_out, d_in]
        torch.testing.assert_close(g_b, s * g_w @ a.T, rtol=1e-5, atol=1e-6 * float(g_b.abs().max()))
        mats[n] = (s * a.T, torch.eye(layer.out_features))
    with GradientCapture(base, names, mode="factored", projection=mats, normalize=False) as cap:
        got = cap.backward(_losses(base, idx, mask))
    assert cap.config["projection"] == "explicit" and cap.k_in == 4 and cap.k_out is None
    want = torch.cat([exact_lora[f"base_model.model.{n}.lora_B.default.weight"].reshape(4, -1) for n in names], 1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
