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
