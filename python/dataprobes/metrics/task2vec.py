r"""Task2Vec embeddings, diversity and alignment coefficients.

Achille et al., "Task2Vec: Task Embedding for Meta-Learning" (ICCV 2019);
Miranda, Lee et al., "Beyond Scale: the Diversity Coefficient as a Data
Quality Metric ..." (arXiv 2306.13840); Chawla et al. (arXiv 2501.08496) for
the alignment coefficient. The math is in docs/math.md ("Dataset metrics",
"Task2Vec diversity and alignment coefficients").

A batch of token sequences is embedded by a *probe* language model:

1. **Head fine-tune.** On a copy of the probe, only the output head is
   trained (a head tied to the input embedding is untied first, so nothing
   else moves): AdamW (lr 5e-5, weight decay 1e-4, eps 1e-8), ``finetune_epochs``
   passes over the batch in minibatches of ``finetune_batch_size``, next-token
   cross-entropy. The trunk is frozen, so its final hidden states are
   computed once per batch and the head trains on them (the reference
   back-propagates through the whole network at every step).
2. **Monte-Carlo Fisher.** For every sequence ``b`` and position ``t`` a label
   ``y ~ p(· | x_{≤t})`` is drawn from the fine-tuned model *at the same
   position* as the logits; padding positions are masked; the Fisher
   diagonal is the average over sequences (and ``fisher_samples`` draws) of
   the **per-sequence** squared gradient of
   ``(1/n_b) Σ_t log p(y_t | x_{≤t})``:
   ``F̂ = (1/BS) Σ_{b,s} (∇_θ (1/n_b) Σ_t log p(y^{(s)}_{b,t} | x_{b,≤t}))²``,
   whose expectation is ``(1/B) Σ_b (1/n_b²) Σ_t E_y[(∇_θ log p(y | x_{b,≤t}))²]``.
3. **Embedding.** For every module weight except the head's (in
   ``named_modules`` order), the mean of ``F̂`` over each output row
   (``weight.reshape(rows, -1).mean(1)``, rows = the weight's first axis as
   stored), concatenated.

``compat=True`` reproduces the reference implementation instead (documented
defects kept): the label drawn at position ``t+1`` is paired with the logits
at ``t`` (``logits[:, :-1]`` against ``labels[:, 1:]``), padding is not masked
(only labels equal to ``pad_token_id`` are ignored, as the reference's
``ignore_index=50256``), and the squared gradient is that of the mean loss of
each minibatch of ``fisher_batch_size`` sequences; ``fisher_samples`` passes
are averaged (the reference's Fisher ``epochs``). Labels then come from
``torch.multinomial`` on a generator seeded with ``seed``: the draws the
reference makes on its global generator after ``torch.manual_seed(seed)``
(its per-sequence calls, and its ``DataLoader``'s one draw per pass).
Squared gradients accumulate in the weights' dtype, as the reference's.

The distance of two embeddings is Task2Vec's: ``h0/(h0+h1)`` and
``h1/(h0+h1)`` elementwise, then the cosine distance. The diversity
coefficient is the mean distance over pairs of batches of one data set;
alignment is ``1 −`` the mean cross distance between two data sets, so a data
set aligned with itself scores ``1 − diversity``, not 1.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._validation import check_bool, check_float, check_int, check_nonnegative_float, check_seed
from ._task2vec_data import batch_stream
from ._task2vec_probe import Probe, prepare_probe

__all__ = [
    "AlignmentResult",
    "DiversityResult",
    "Task2VecEmbedding",
    "alignment_coefficient",
    "cross_diversity",
    "diversity_coefficient",
    "pairwise_task2vec_distances",
    "task2vec_distance",
    "task2vec_embedding",
]

#: the reference's head fine-tune settings (AdamW)
DEFAULT_LR = 5e-5
DEFAULT_WEIGHT_DECAY = 1e-4
ADAM_EPS = 1e-8
#: the reference's DataLoader batch size, for the fine-tune and the Fisher
DEFAULT_MINIBATCH = 8


@dataclass(frozen=True)
class Task2VecEmbedding:
    """A batch's Task2Vec embedding.

    ``hessian``: float64 ``[D]``, the per-output-row means of the Fisher
    diagonal of every weight but the head, concatenated in ``names`` order;
    ``rows[i]`` entries belong to module ``names[i]`` (:meth:`layer`).
    The rest is metadata: whether it was computed in ``compat`` mode, the
    seed, the number of Fisher draws, sequences and (unmasked) tokens, and
    the head fine-tune's loss before and after.
    """

    hessian: np.ndarray
    names: tuple[str, ...]
    rows: tuple[int, ...]
    compat: bool = False
    seed: int = 0
    fisher_samples: int = 1
    num_sequences: int = 0
    num_tokens: int = 0
    finetune_loss: tuple[float, float] = (math.nan, math.nan)
    method: str = ""

    def layer(self, name: str) -> np.ndarray:
        """The entries of module ``name`` (a view of :attr:`hessian`)."""
        if name not in self.names:
            raise KeyError(f"no module {name!r} in this embedding; modules: {list(self.names)[:6]}...")
        i = self.names.index(name)
        start = int(sum(self.rows[:i]))
        return self.hessian[start : start + self.rows[i]]

    def __len__(self) -> int:
        return int(self.hessian.shape[0])


@dataclass(frozen=True)
class DiversityResult:
    """Result of :func:`diversity_coefficient` / :func:`cross_diversity`.

    ``coefficient``: mean distance (over pairs ``i < j`` of batches of one data
    set, or over all cross pairs); ``stderr``: its jackknife standard error
    (delete one batch; for cross distances the two samples' jackknife
    variances added), NaN when there are only two batches of one data set;
    ``std``: the standard deviation of the distances (what the reference
    reports as its "confidence interval"; NaN for a single pair); ``distances``: the
    ``num_batches × num_batches`` matrix (zero diagonal for one data set; rows
    = ``a``'s batches, columns = ``b``'s for cross); ``embeddings``: the batch
    embeddings (``a``'s then ``b``'s for cross).
    """

    coefficient: float
    stderr: float
    distances: np.ndarray
    embeddings: tuple[Task2VecEmbedding, ...] = field(repr=False)
    std: float = math.nan


@dataclass(frozen=True)
class AlignmentResult:
    """Result of :func:`alignment_coefficient`: ``coefficient = 1 − mean cross
    distance``, its jackknife ``stderr`` (that of the cross diversity), the
    cross ``distances`` (rows = ``a``'s batches) and the ``embeddings``
    (``a``'s then ``b``'s)."""

    coefficient: float
    stderr: float
    distances: np.ndarray
    embeddings: tuple[Task2VecEmbedding, ...] = field(repr=False)


# ----------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------


def _int_array(name: str, value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        if value.numel() == 0:
            raise ValueError(f"{name} is empty (shape {tuple(value.shape)})")
        if value.dtype == torch.bool or value.is_floating_point() or value.is_complex():
            raise TypeError(f"{name} must hold integer token ids, got torch dtype {value.dtype}")
        return value.detach().cpu().numpy()
    if not isinstance(value, (np.ndarray, list, tuple)):
        raise TypeError(f"{name} must be an integer array [B, T] (numpy or torch), got {type(value).__name__}")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} must be a rectangular array [B, T]: {exc}") from None
    if arr.size == 0:  # np.asarray([]) is float64: empty, whatever its dtype
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer token ids, got dtype {arr.dtype}")
    return arr


def _check_batch(
    probe: Probe, batch: Any, attention_mask: Any, pad_token_id: Any, compat: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, int | None]:
    """``(ids [B, T] int64, mask for the trunk or None, valid [B, T] bool, pad id)``;
    a probe without attention mask needs right padding unless ``compat`` (which
    masks nothing)."""
    arr = _int_array("batch", batch)
    if arr.ndim != 2:
        raise ValueError(f"batch must be 2-D [num_sequences, length], got shape {arr.shape}")
    b, t = arr.shape
    if b < 1:
        raise ValueError("batch is empty (0 sequences)")
    if t < 2:
        raise ValueError(f"batch sequences must have at least 2 tokens, got length {t}")
    if probe.max_len is not None and t > probe.max_len:
        raise ValueError(f"batch length {t} exceeds the probe's context ({probe.max_len} positions)")
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi >= probe.vocab_size:
        raise ValueError(
            f"batch holds token ids outside [0, {probe.vocab_size}) (the probe's vocabulary): min {lo}, max {hi}"
        )
    pad = None
    if pad_token_id is not None:
        pad = check_int("pad_token_id", pad_token_id, 0, probe.vocab_size - 1)
    ids = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.int64))
    mask_t: torch.Tensor | None = None
    if attention_mask is not None:
        if isinstance(attention_mask, torch.Tensor):
            m = attention_mask.detach().cpu().numpy()
        else:
            try:
                m = np.asarray(attention_mask)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"attention_mask must be a rectangular array: {exc}") from None
        if not (m.dtype == np.bool_ or np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.floating)):
            raise TypeError(f"attention_mask must be a 0/1 array (bool, integer or float), got dtype {m.dtype}")
        if m.shape != arr.shape:
            raise ValueError(f"attention_mask must have the batch's shape {arr.shape}, got {m.shape}")
        if not np.isin(m, (0, 1)).all():
            raise ValueError("attention_mask must hold only 0 and 1")
        valid = torch.from_numpy(m.astype(bool))
        mask_t = torch.from_numpy(m.astype(np.int64))
    elif pad is not None:
        valid = ids != pad
        if probe.kind == "hf":
            mask_t = valid.to(torch.int64)
    else:
        valid = torch.ones(b, t, dtype=torch.bool)
    if probe.kind == "tinygpt" and not compat and bool((valid[:, 1:] & ~valid[:, :-1]).any()):
        raise ValueError(
            "this probe takes no attention mask, so padding must come last in each row (right padding); "
            "a valid token follows a padding position"
        )
    if probe.kind == "tinygpt":
        mask_t = None
    return ids, mask_t, valid, pad


def _check_common(
    finetune_epochs: Any,
    lr: Any,
    finetune_batch_size: Any,
    fisher_samples: Any,
    fisher_batch_size: Any,
    weight_decay: Any,
    compat: Any,
    seed: Any,
    progress: Any,
) -> tuple[int, float, int, int, int, float, bool, int, bool]:
    return (
        check_int("finetune_epochs", finetune_epochs, 0),
        check_float("lr", lr, positive=True) if finetune_epochs else check_nonnegative_float("lr", lr),
        check_int("finetune_batch_size", finetune_batch_size, 1),
        check_int("fisher_samples", fisher_samples, 1),
        check_int("fisher_batch_size", fisher_batch_size, 1),
        check_nonnegative_float("weight_decay", weight_decay),
        check_bool("compat", compat),
        check_seed("seed", seed),
        check_bool("progress", progress),
    )


# ----------------------------------------------------------------------------
# The embedding
# ----------------------------------------------------------------------------


def _bar(total: int, desc: str, progress: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, leave=False)


#: bytes of autograd graphs the compat mode keeps from the trunk's one forward
#: pass for its Fisher backward (minibatches beyond it run the forward again)
GRAPH_BUDGET = 1 << 30


def _hidden_cache(
    probe: Probe, ids: torch.Tensor, mask: torch.Tensor | None, bs: int, graph_budget: int = 0
) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """The frozen trunk's final hidden states, once, in chunks of ``bs`` rows
    (the fine-tune's minibatches, so each equals the reference's forward),
    and, while the tensors they save fit in ``graph_budget`` bytes, the same
    states with their autograd graph to the embedded weights (the trunk is
    frozen, so the Fisher's forward pass is this one: it is not run again)."""
    out: list[torch.Tensor] = []
    graphs: list[torch.Tensor | None] = []
    used = 0
    weights = list(probe.weights)

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal used
        if not isinstance(t, nn.Parameter):
            used += t.numel() * t.element_size()
        return t

    for s in range(0, ids.shape[0], bs):
        x = ids[s : s + bs].to(probe.device)
        m = None if mask is None else mask[s : s + bs].to(probe.device)
        if used < graph_budget:
            for w in weights:
                w.requires_grad_(True)
            try:
                with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                    h = probe.trunk(x, m)
            finally:
                for w in weights:
                    w.requires_grad_(False)
            graphs.append(h)
            out.append(h.detach())
        else:
            with torch.no_grad():
                out.append(probe.trunk(x, m))
            graphs.append(None)
    return torch.cat(out), graphs


def _finetune(
    probe: Probe,
    hidden: torch.Tensor,
    ids: torch.Tensor,
    target_ok: torch.Tensor | None,
    ignore_index: int,
    epochs: int,
    lr: float,
    weight_decay: float,
    bs: int,
    progress: bool,
) -> tuple[float, float]:
    """Train the head on cached hidden states; next-token cross-entropy over
    ``target_ok`` targets (default mode) or all targets but ``ignore_index``
    (compat). Returns the first and the last minibatch loss."""
    if epochs == 0:
        return (math.nan, math.nan)
    head = probe.head
    if type(head) is nn.Linear:
        return _finetune_linear(head, hidden, ids, target_ok, ignore_index, epochs, lr, weight_decay, bs, progress)
    params = list(head.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW([{"params": params, "weight_decay": weight_decay}], lr=lr, eps=ADAM_EPS)
    targets_all = ids[:, 1:].to(probe.device)
    ok_all = None if target_ok is None else target_ok.to(probe.device)
    first = last = math.nan
    n = ids.shape[0]
    with _bar(epochs * math.ceil(n / bs), "task2vec head fine-tune", progress) as bar:
        for _ in range(epochs):
            for s in range(0, n, bs):
                h = hidden[s : s + bs]
                logits = head(h)[:, :-1, :]
                tgt = targets_all[s : s + bs]
                if ok_all is None:
                    if not bool((tgt != ignore_index).any()):
                        bar.update(1)
                        continue
                    loss = nn.CrossEntropyLoss(ignore_index=ignore_index)(logits.transpose(1, 2), tgt)
                else:
                    ok = ok_all[s : s + bs]
                    cnt = int(ok.sum())
                    if cnt == 0:
                        bar.update(1)
                        continue
                    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="none")
                    loss = (nll * ok.reshape(-1)).sum() / cnt
                opt.zero_grad()
                loss.backward()
                opt.step()
                last = float(loss.detach())
                if math.isnan(first):
                    first = last
                bar.update(1)
    for p in params:
        p.requires_grad_(False)
        p.grad = None
    return (first, last)


def _finetune_linear(
    head: nn.Linear,
    hidden: torch.Tensor,
    ids: torch.Tensor,
    target_ok: torch.Tensor | None,
    ignore_index: int,
    epochs: int,
    lr: float,
    weight_decay: float,
    bs: int,
    progress: bool,
) -> tuple[float, float]:
    """:func:`_finetune` for a linear head, without autograd: the gradient of
    the weighted cross-entropy ``Σ w_i (−log softmax(W h_i + c)[y_i])`` is
    ``(softmax − onehot)ᵀ`` times the states, and the update is
    ``torch.optim.AdamW``'s (single-tensor form) written out, so the result
    equals the autograd loop to float rounding at a fraction of its cost."""
    dev = head.weight.device
    n, t = ids.shape
    d = hidden.shape[-1]
    beta1, beta2 = 0.9, 0.999
    params = [head.weight] + ([head.bias] if head.bias is not None else [])
    m1 = [torch.zeros_like(p) for p in params]
    m2 = [torch.zeros_like(p) for p in params]
    chunks = []
    for s in range(0, n, bs):
        h = hidden[s : s + bs, :-1].reshape(-1, d)
        y = ids[s : s + bs, 1:].reshape(-1).to(dev)
        if target_ok is None:
            keep = y != ignore_index
            cnt = int(keep.sum())
            w = keep.to(h.dtype) / max(cnt, 1)
        else:
            ok = target_ok[s : s + bs].reshape(-1).to(dev)
            cnt = int(ok.sum())
            w = ok.to(h.dtype) / max(cnt, 1)
        chunks.append((h, torch.where(w > 0, y, 0), w, torch.arange(h.shape[0], device=dev), cnt > 0))
    first = last = math.nan
    step = 0
    total = epochs * sum(1 for c in chunks if c[4])
    with torch.no_grad(), _bar(epochs * len(chunks), "task2vec head fine-tune", progress) as bar:
        for _ in range(epochs):
            for h, y, w, rows, any_target in chunks:
                bar.update(1)
                if not any_target:
                    continue
                p = torch.softmax(F.linear(h, head.weight, head.bias), dim=-1)
                if step == 0 or step + 1 == total:  # the loss before the first and the last update
                    last = float(-(w * p[rows, y].log()).sum())
                    if math.isnan(first):
                        first = last
                p *= w[:, None]
                p.scatter_add_(1, y[:, None], -w[:, None])
                grads = [p.t() @ h] + ([p.sum(0)] if head.bias is not None else [])
                step += 1
                bc1 = 1 - beta1**step
                bc2_sqrt = (1 - beta2**step) ** 0.5
                for prm, g, a1, a2 in zip(params, grads, m1, m2, strict=True):
                    prm.mul_(1 - lr * weight_decay)
                    a1.lerp_(g, 1 - beta1)
                    a2.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                    prm.addcdiv_(a1, (a2.sqrt() / bc2_sqrt).add_(ADAM_EPS), value=-lr / bc1)
    return (first, last)


def _position_uniforms(seed: int, b: int, t: int, samples: int) -> torch.Tensor:
    """Uniforms ``[S, B, T]`` for the label draws: sequence ``i`` reads its own
    stream ``(seed, i)`` position by position, so its labels depend neither on
    the other rows nor on trailing padding nor on chunking."""
    out = np.empty((samples, b, t), dtype=np.float64)
    for i in range(b):
        out[:, i, :] = np.random.default_rng([seed, i]).random((t, samples)).T
    return torch.from_numpy(out)


def _sample_labels(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draws: ``probs`` [B, T, V], ``u`` [S, B, T] -> labels [S, B, T]."""
    cdf = probs.double().cumsum(-1)
    cdf = cdf / cdf[..., -1:]
    lab = torch.searchsorted(cdf, u.permute(1, 2, 0).contiguous(), right=True)  # [B, T, S]
    return lab.clamp_(max=probs.shape[-1] - 1).permute(2, 0, 1)


def _fisher_default(
    probe: Probe,
    ids: torch.Tensor,
    mask: torch.Tensor | None,
    valid: torch.Tensor,
    hidden: torch.Tensor,
    seed: int,
    samples: int,
    chunk: int,
    progress: bool,
) -> tuple[list[torch.Tensor], str]:
    """Per-sequence Monte-Carlo Fisher diagonal (same-position labels, padding
    masked), exact per-sequence gradients by ``torch.func`` (vmap of a vjp over
    the label draws), falling back to a loop of plain autograd calls for
    models ``vmap`` cannot trace."""
    b, t = ids.shape
    n_valid = valid.sum(1)
    empty = (n_valid == 0).nonzero()
    if empty.numel():
        raise ValueError(f"row {int(empty[0, 0])} of batch has no unmasked tokens (all padding)")
    w = valid.to(hidden.dtype) / n_valid[:, None].to(hidden.dtype)  # [B, T]
    uniforms = _position_uniforms(seed, b, t, samples)  # [S, B, T]
    if mask is not None and not bool((valid[:, 1:] & ~valid[:, :-1]).any()):
        # right padding only: under causal attention no unmasked position reads a padded one,
        # and padded positions carry zero weight, so the mask changes nothing here (and
        # Hugging Face's mask handling is data-dependent, which vmap cannot trace)
        mask = None
    acc = [torch.zeros(p.shape, dtype=torch.float64, device=probe.device) for p in probe.weights]
    names = probe.trunk_param_names()
    method = "vmap"
    with _bar(b, "task2vec Fisher", progress) as bar:
        for s in range(0, b, chunk):
            e = min(b, s + chunk)
            with torch.no_grad():
                probs = torch.softmax(probe.head(hidden[s:e]).double(), -1)
            labels = _sample_labels(probs, uniforms[:, s:e].to(probs.device))  # [S, e - s, T]
            args = (
                ids[s:e].to(probe.device),
                None if mask is None else mask[s:e].to(probe.device),
                labels.transpose(0, 1).contiguous(),
                w[s:e].to(probe.device),
            )
            sq: list[torch.Tensor] | None = None
            if method == "vmap":
                try:
                    with warnings.catch_warnings():
                        # attention without a vmap batching rule runs per example: correct, only slower
                        warnings.filterwarnings("ignore", message="There is a performance drop")
                        sq = _chunk_vmap(probe, names, *args)
                except Exception:  # noqa: BLE001 - models vmap cannot trace take the exact loop below
                    if s:
                        raise
                    method = "loop"
            if sq is None:
                sq = _chunk_loop(probe, *args)
            for a, q in zip(acc, sq, strict=True):
                a += q
            bar.update(e - s)
    return [a / (b * samples) for a in acc], method


def _cotangent(logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``∂/∂logits Σ_t w_t log p(y_t)`` for each draw: ``w_t (onehot(y_t) − p_t)``;
    ``logits`` [T, V], ``y`` [S, T], ``w`` [T] -> [S, T, V]."""
    p = torch.softmax(logits.detach(), -1)
    return (F.one_hot(y, logits.shape[-1]).to(p.dtype) - p[None]) * w[None, :, None]


def _chunk_vmap(
    probe: Probe,
    names: tuple[str, ...],
    ids: torch.Tensor,
    mask: torch.Tensor | None,
    y: torch.Tensor,
    w: torch.Tensor,
) -> list[torch.Tensor]:
    from torch.func import functional_call, vjp, vmap

    params = {n: p.detach() for n, p in zip(names, probe.weights, strict=True)}
    trunk, head = probe.trunk, probe.head

    def one(i1: torch.Tensor, m1: torch.Tensor | None, y1: torch.Tensor, w1: torch.Tensor) -> list[torch.Tensor]:
        def logits_of(p: dict[str, torch.Tensor]) -> torch.Tensor:
            h = functional_call(trunk, p, (i1[None], None if m1 is None else m1[None]))
            out: torch.Tensor = head(h)[0]
            return out

        res = vjp(logits_of, params)
        logits, pull = res[0], res[1]
        (g,) = vmap(pull)(_cotangent(logits, y1, w1))
        return [(g[n].double() ** 2).sum(0) for n in names]

    in_dims = (0, None if mask is None else 0, 0, 0)
    out = vmap(one, in_dims=in_dims)(ids, mask, y, w)
    return [o.sum(0) for o in out]


def _chunk_loop(
    probe: Probe, ids: torch.Tensor, mask: torch.Tensor | None, y: torch.Tensor, w: torch.Tensor
) -> list[torch.Tensor]:
    weights = list(probe.weights)
    for p in weights:
        p.requires_grad_(True)
    try:
        acc = [torch.zeros(p.shape, dtype=torch.float64, device=p.device) for p in weights]
        for i in range(ids.shape[0]):
            m1 = None if mask is None else mask[i : i + 1]
            with torch.enable_grad():
                logits = probe.head(probe.trunk(ids[i : i + 1], m1))[0]
                cot = _cotangent(logits, y[i], w[i])
                for k in range(cot.shape[0]):
                    gs = torch.autograd.grad(
                        logits, weights, grad_outputs=cot[k], retain_graph=k + 1 < cot.shape[0], allow_unused=True
                    )
                    for a, g in zip(acc, gs, strict=True):
                        if g is not None:
                            a += g.double() ** 2
        return acc
    finally:
        for p in weights:
            p.requires_grad_(False)


def _fisher_compat(
    probe: Probe,
    ids: torch.Tensor,
    mask: torch.Tensor | None,
    ignore_index: int,
    seed: int,
    passes: int,
    bs: int,
    progress: bool,
    graphs: list[torch.Tensor | None],
) -> list[torch.Tensor]:
    """The reference's ``montecarlo_fisher_autoregressive``: per minibatch,
    labels ``multinomial(softmax(logits[i]))`` per sequence, loss
    ``CE(logits[:, :-1], labels[:, 1:])`` (mean, labels equal to
    ``ignore_index`` skipped), accumulate the squared gradient, divide by the
    number of minibatches."""
    gen = torch.Generator(device=probe.device)
    gen.manual_seed(seed)
    weights = list(probe.weights)
    acc = [torch.zeros_like(p) for p in weights]  # in the weights' dtype, as the reference's grad2_acc
    counts = [0] * len(weights)
    b = ids.shape[0]
    for p in weights:
        p.requires_grad_(True)
    try:
        with _bar(passes * b, "task2vec Fisher (compat)", progress) as bar:
            for rep in range(passes):
                # the reference's DataLoader draws its base seed from the generator at every pass
                # (a CPU draw: on an accelerator the labels come from its own generator)
                if gen.device.type == "cpu":
                    torch.empty((), dtype=torch.int64).random_(generator=gen)
                for s in range(0, b, bs):
                    x = ids[s : s + bs].to(probe.device)
                    m = None if mask is None else mask[s : s + bs].to(probe.device)
                    kept = graphs[s // bs] if s // bs < len(graphs) else None
                    with torch.enable_grad():
                        logits = probe.head(probe.trunk(x, m) if kept is None else kept)
                        sm = torch.softmax(logits.detach(), dim=-1)
                        # one call for the minibatch: the same draws as the reference's call per
                        # sequence (rows are drawn in order; checked against the port in the tests)
                        target = torch.multinomial(sm.reshape(-1, sm.shape[-1]), 1, generator=gen).view(sm.shape[:2])
                        loss = nn.CrossEntropyLoss(ignore_index=ignore_index)(
                            logits[:, :-1, :].transpose(1, 2), target[:, 1:]
                        )
                        gs = torch.autograd.grad(
                            loss, weights, allow_unused=True, retain_graph=kept is not None and rep + 1 < passes
                        )
                    for k, (a, g) in enumerate(zip(acc, gs, strict=True)):
                        if g is not None:
                            a.addcmul_(g, g)
                            counts[k] += 1
                    bar.update(x.shape[0])
    finally:
        for p in weights:
            p.requires_grad_(False)
    return [(a / c if c else a).double() for a, c in zip(acc, counts, strict=True)]


def task2vec_embedding(
    probe: nn.Module,
    batch: Any,
    *,
    finetune_epochs: int = 10,
    lr: float = DEFAULT_LR,
    finetune_batch_size: int = DEFAULT_MINIBATCH,
    fisher_samples: int = 1,
    fisher_batch_size: int | None = None,
    weight_decay: float = DEFAULT_WEIGHT_DECAY,
    compat: bool = False,
    seed: int = 0,
    pad_token_id: int | None = None,
    attention_mask: Any = None,
    device: Any = None,
    progress: bool = False,
) -> Task2VecEmbedding:
    """Task2Vec embedding of ``batch`` (int token ids ``[B, T]``, numpy or
    torch, ``B ≥ 1``, ``2 ≤ T ≤`` the probe's context) by ``probe``
    (:class:`dataprobes.lm.TinyGPT` or a Hugging Face causal LM; never
    modified: a copy is fine-tuned).

    Head fine-tune on cached trunk states (``finetune_epochs`` epochs of AdamW
    with ``lr``, ``weight_decay``, minibatches of ``finetune_batch_size``),
    then the Monte-Carlo Fisher diagonal with ``fisher_samples`` label draws
    per position, then per-output-row means (module docstring;
    docs/math.md, "Task2Vec"). Padding: ``attention_mask`` (1 = token) or,
    without it, positions holding ``pad_token_id``; masked in default mode.
    ``fisher_batch_size``: the minibatch whose mean gradient is squared in
    ``compat`` mode (default 8, the reference's); in default mode only the
    number of sequences per vectorised chunk (results do not depend on it;
    default: as many as fit in about 512 MiB, at most 64). ``seed`` fixes the label
    draws (sequence ``i`` uses the stream ``(seed, i)``). ``compat=True``:
    the reference's estimator, defects included (module docstring); equal to
    the reference for probes without dropout (the copy always runs in eval
    mode).

    Raises ``ValueError`` for an empty or too short/long batch, ids outside
    the vocabulary, an all-padding row, a probe without an output head, and a
    non-finite Fisher (the fine-tune diverged: lower ``lr``).
    """
    epochs, lr_f, ft_bs, samples, f_bs, wd, compat_b, seed_i, prog = _check_common(
        finetune_epochs,
        lr,
        finetune_batch_size,
        fisher_samples,
        DEFAULT_MINIBATCH if fisher_batch_size is None else fisher_batch_size,
        weight_decay,
        compat,
        seed,
        progress,
    )
    p = prepare_probe(probe, device)
    ids, mask, valid, pad = _check_batch(p, batch, attention_mask, pad_token_id, compat_b)
    if fisher_batch_size is None and not compat_b:
        # vectorised chunks of sequences within about 512 MiB: per-sequence gradients of every
        # embedded weight (float32 per draw, float64 squares), label laws and one-hot cotangents
        size = sum(w.numel() for w in p.weights)
        per_seq = size * (4 * samples + 8) + ids.shape[1] * p.vocab_size * (16 + 4 * samples)
        f_bs = max(1, min(64, 2**29 // max(1, per_seq)))
    ignore = -100 if pad is None else pad
    keep = GRAPH_BUDGET if compat_b and f_bs == ft_bs else 0
    hidden, graphs = _hidden_cache(p, ids, mask, ft_bs, keep)
    if compat_b:
        losses = _finetune(p, hidden, ids, None, ignore, epochs, lr_f, wd, ft_bs, prog)
        sq = _fisher_compat(p, ids, mask, ignore, seed_i, samples, f_bs, prog, graphs)
        method = "compat"
    else:
        target_ok = (valid[:, 1:] & valid[:, :-1]).to(hidden.dtype)
        losses = _finetune(p, hidden, ids, target_ok, ignore, epochs, lr_f, wd, ft_bs, prog)
        sq, method = _fisher_default(p, ids, mask, valid, hidden, seed_i, samples, f_bs, prog)
    parts, rows = [], []
    for name, a in zip(p.names, sq, strict=True):
        r = a.reshape(a.shape[0], -1).mean(1).cpu().numpy().astype(np.float64)
        if not np.isfinite(r).all():
            raise ValueError(
                f"the Fisher diagonal of {name!r} is not finite (NaN/inf): the probe's weights or its head "
                "fine-tune diverged; check the probe and lower lr"
            )
        parts.append(r)
        rows.append(int(r.shape[0]))
    return Task2VecEmbedding(
        hessian=np.concatenate(parts),
        names=p.names,
        rows=tuple(rows),
        compat=compat_b,
        seed=seed_i,
        fisher_samples=samples,
        num_sequences=int(ids.shape[0]),
        num_tokens=int(valid.sum()),
        finetune_loss=losses,
        method=method,
    )


# ----------------------------------------------------------------------------
# Distances
# ----------------------------------------------------------------------------


def _hessian_of(name: str, e: Any) -> np.ndarray:
    h = e.hessian if isinstance(e, Task2VecEmbedding) else e
    if isinstance(h, (str, bytes)) or not hasattr(h, "__len__"):
        raise TypeError(f"{name} must be a Task2VecEmbedding or a 1-D array, got {type(e).__name__}")
    try:
        arr = np.asarray(h)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} must be a 1-D array: {exc}") from None
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    if (arr < 0).any():
        raise ValueError(f"{name} holds negative values (a Fisher diagonal is non-negative)")
    return arr


def _distance(h0: np.ndarray, h1: np.ndarray, eps: float) -> float:
    with np.errstate(over="ignore"):
        s = h0 + h1
    if not np.isfinite(s).all():  # entries near the float64 maximum: halve both (exact for eps = 0)
        h0, h1 = h0 * 0.5, h1 * 0.5
        s = h0 + h1
    s = s + eps
    safe = np.where(s > 0, s, 1.0)
    a = np.where(s > 0, h0 / safe, 0.0)
    b = np.where(s > 0, h1 / safe, 0.0)
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        raise ValueError("an embedding is zero wherever the other is: the cosine distance is undefined")
    cos = float(np.dot(a, b)) / (na * nb)
    return float(min(max(1.0 - cos, 0.0), 2.0))


def task2vec_distance(a: Any, b: Any, *, eps: float = 0.0) -> float:
    """Task2Vec's cosine distance: normalise ``h0/(h0+h1+eps)``,
    ``h1/(h0+h1+eps)`` elementwise (entries where both are 0 become 0), then
    ``1 − cos``. ``a``/``b``: :class:`Task2VecEmbedding` or non-negative 1-D
    arrays of equal length. The reference adds ``eps = 1e-8``; the default 0
    keeps the distance invariant to a common scale of both embeddings.
    Symmetric, 0 for equal embeddings, in [0, 1] for non-negative ones."""
    h0 = _hessian_of("a", a)
    h1 = _hessian_of("b", b)
    if h0.shape != h1.shape:
        raise ValueError(f"a and b must have the same length, got {h0.shape[0]} and {h1.shape[0]}")
    return _distance(h0, h1, check_nonnegative_float("eps", eps))


def _stack(name: str, embeddings: Any) -> list[np.ndarray]:
    if isinstance(embeddings, (str, bytes, Task2VecEmbedding)) or not isinstance(embeddings, Sequence):
        raise TypeError(f"{name} must be a sequence of Task2VecEmbedding, got {type(embeddings).__name__}")
    hs = [_hessian_of(f"{name}[{i}]", e) for i, e in enumerate(embeddings)]
    if not hs:
        raise ValueError(f"{name} is empty")
    if len({h.shape for h in hs}) > 1:
        raise ValueError(f"{name} holds embeddings of different lengths (different probes?)")
    return hs


def pairwise_task2vec_distances(embeddings: Sequence[Any], *, eps: float = 0.0) -> np.ndarray:
    """The symmetric ``[n, n]`` matrix of :func:`task2vec_distance` (zero diagonal)."""
    hs = _stack("embeddings", embeddings)
    e = check_nonnegative_float("eps", eps)
    n = len(hs)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = _distance(hs[i], hs[j], e)
    return out


def _cross(ea: Sequence[Any], eb: Sequence[Any], eps: float = 0.0) -> np.ndarray:
    ha, hb = _stack("a", ea), _stack("b", eb)
    if ha[0].shape != hb[0].shape:
        raise ValueError("the two data sets' embeddings have different lengths (different probes?)")
    return np.array([[_distance(x, y, eps) for y in hb] for x in ha])


# ----------------------------------------------------------------------------
# Coefficients
# ----------------------------------------------------------------------------


def _within_stats(d: np.ndarray) -> tuple[float, float, float]:
    """Mean over ``i < j``, its delete-one-batch jackknife standard error, std."""
    n = d.shape[0]
    iu = np.triu_indices(n, 1)
    vals = d[iu]
    mean = float(vals.mean())
    std = float(vals.std(ddof=1)) if vals.size > 1 else math.nan
    if n < 3:
        return mean, math.nan, std
    total = vals.sum()
    row = d.sum(1)  # each i's distances to the others (zero diagonal)
    pairs_without = (n - 1) * (n - 2) / 2
    theta = (total - row) / pairs_without
    var = (n - 1) / n * float(((theta - theta.mean()) ** 2).sum())
    return mean, math.sqrt(var), std


def _cross_stats(d: np.ndarray) -> tuple[float, float, float]:
    """Mean of all entries; jackknife variance over rows plus over columns."""
    mean = float(d.mean())
    na, nb = d.shape
    var = 0.0
    if na > 1:
        var += float(d.mean(1).var(ddof=1)) / na
    if nb > 1:
        var += float(d.mean(0).var(ddof=1)) / nb
    std = float(d.std(ddof=1)) if d.size > 1 else math.nan
    return mean, math.sqrt(var), std


LABEL_SEEDS = ("common", "independent")


def _check_label_seeds(label_seeds: Any) -> str:
    if not isinstance(label_seeds, str):
        raise TypeError(f"label_seeds must be a str, got {type(label_seeds).__name__}")
    if label_seeds not in LABEL_SEEDS:
        raise ValueError(f"label_seeds must be one of {LABEL_SEEDS}, got {label_seeds!r}")
    return label_seeds


def _seed_for(seed: int, side: int, i: int, label_seeds: str = "independent") -> int:
    """The label-draw seed of batch ``i`` of data set ``side`` (0 = a, 1 = b):
    ``seed`` itself for every batch when ``label_seeds="common"`` (common
    random numbers: identical batches get identical embeddings, and the
    Monte-Carlo label noise largely cancels in the distances; docs/math.md,
    "Task2Vec diversity and alignment coefficients"), else a stream derived
    from ``(seed, side, i)``."""
    if label_seeds == "common":
        return seed
    return int(np.random.SeedSequence([seed, side, i]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _embed_all(
    dataset: Any,
    probe: nn.Module,
    num_batches: int,
    batch_size: int,
    seq_len: int | None,
    seed: int,
    side: int,
    tokenizer: Any,
    buffer_size: int,
    progress: bool,
    kwargs: dict[str, Any],
    what: str,
    label_seeds: str,
) -> list[Task2VecEmbedding]:
    out = []
    pad = kwargs.get("pad_token_id")
    stream = batch_stream(
        dataset,
        num_batches,
        batch_size,
        seq_len=seq_len,
        seed=seed,
        side=side,
        tokenizer=tokenizer,
        buffer_size=buffer_size,
        pad_token_id=pad,
        name=what,
    )
    with _bar(num_batches, f"task2vec {what}", progress) as bar:
        for i, (ids, mask, tok_pad) in enumerate(stream):
            kw = dict(kwargs)
            if pad is None and tok_pad is not None:
                kw["pad_token_id"] = tok_pad
            if mask is not None and kw.get("attention_mask") is None:
                kw["attention_mask"] = mask
            out.append(task2vec_embedding(probe, ids, seed=_seed_for(seed, side, i, label_seeds), **kw))
            bar.update(1)
    return out


_EMBED_KW = {
    "finetune_epochs",
    "lr",
    "finetune_batch_size",
    "fisher_samples",
    "fisher_batch_size",
    "weight_decay",
    "compat",
    "pad_token_id",
    "device",
}


def _check_coeff_args(
    num_batches: Any, batch_size: Any, seq_len: Any, seed: Any, progress: Any, kwargs: dict[str, Any]
) -> tuple[int, int, int | None, int, bool]:
    bad = set(kwargs) - _EMBED_KW
    if bad:
        raise TypeError(f"unexpected keyword arguments {sorted(bad)} (embedding options: {sorted(_EMBED_KW)})")
    return (
        check_int("num_batches", num_batches, 2),
        check_int("batch_size", batch_size, 1),
        None if seq_len is None else check_int("seq_len", seq_len, 2),
        check_seed("seed", seed),
        check_bool("progress", progress),
    )


def diversity_coefficient(
    dataset: Any,
    probe: nn.Module,
    num_batches: int = 200,
    batch_size: int = 512,
    *,
    seq_len: int | None = None,
    seed: int = 0,
    progress: bool = True,
    tokenizer: Any = None,
    buffer_size: int = 10_000,
    eps: float = 0.0,
    label_seeds: str = "common",
    **embedding_kwargs: Any,
) -> DiversityResult:
    """Task2Vec diversity coefficient (Miranda, Lee et al. 2023): the mean
    :func:`task2vec_distance` over pairs ``i < j`` of ``num_batches ≥ 2``
    batch embeddings, each batch a fresh draw of ``batch_size`` sequences.

    ``dataset``: an int token array ``[N, T]`` (numpy/torch; rows drawn
    without replacement from a permutation for ``seed``; when fewer than
    ``batch_size`` rows of a pass remain, a new pass starts with a fresh
    permutation), a dataprobes ``Process`` (batch ``i`` = rows
    ``i·batch_size ...`` of its sample for a seed derived from ``seed``;
    ``seq_len`` required), a torch ``Dataset`` of token sequences (or dicts
    with ``input_ids``), a Hugging Face ``datasets.Dataset`` /
    ``IterableDataset`` with ``input_ids`` (or ``text`` and ``tokenizer=``),
    or any iterable of sequences (a streaming set is shuffled once, with
    ``buffer_size``, and read by one running iterator: every batch new rows).
    ``seq_len`` crops sequences (and is the padded length of tokenized text).
    ``embedding_kwargs`` go to :func:`task2vec_embedding`. ``label_seeds``:
    ``"common"`` (default) draws every batch's Fisher labels with the same
    ``seed`` (common random numbers: two identical batches are at distance
    0, and the Monte-Carlo floor of ``fisher_samples=1`` — about 0.06 on a
    small probe with independent draws — cancels); ``"independent"`` derives
    batch ``i``'s label seed from ``(seed, i)`` as independent runs would. ``eps``: as in
    :func:`task2vec_distance` (the reference uses 1e-8, which is not small
    next to Fisher entries of small probes: pass it to reproduce the
    reference's numbers). ``stderr`` is the delete-one-batch jackknife (NaN
    for 2 batches)."""
    nb, bs, sl, sd, prog = _check_coeff_args(num_batches, batch_size, seq_len, seed, progress, embedding_kwargs)
    check_int("buffer_size", buffer_size, 1)
    eps = check_nonnegative_float("eps", eps)  # before the embeddings, not after
    ls = _check_label_seeds(label_seeds)
    emb = _embed_all(dataset, probe, nb, bs, sl, sd, 0, tokenizer, buffer_size, prog, embedding_kwargs, "dataset", ls)
    d = pairwise_task2vec_distances(emb, eps=eps)
    mean, se, std = _within_stats(d)
    return DiversityResult(mean, se, d, tuple(emb), std)


def cross_diversity(
    a: Any,
    b: Any,
    probe: nn.Module,
    num_batches: int = 200,
    batch_size: int = 512,
    *,
    seq_len: int | None = None,
    seed: int = 0,
    progress: bool = True,
    tokenizer: Any = None,
    buffer_size: int = 10_000,
    eps: float = 0.0,
    label_seeds: str = "common",
    **embedding_kwargs: Any,
) -> DiversityResult:
    """Cross diversity: the mean of the ``num_batches × num_batches`` matrix of
    distances between batches of ``a`` (rows) and of ``b`` (columns), drawn
    independently (``a`` as in :func:`diversity_coefficient` with the same
    ``seed``, ``b`` from a second seed stream). Data sets and options as for
    :func:`diversity_coefficient`; ``stderr``: the two-sample jackknife."""
    nb, bs, sl, sd, prog = _check_coeff_args(num_batches, batch_size, seq_len, seed, progress, embedding_kwargs)
    check_int("buffer_size", buffer_size, 1)
    eps = check_nonnegative_float("eps", eps)  # before the embeddings, not after
    ls = _check_label_seeds(label_seeds)
    ea = _embed_all(a, probe, nb, bs, sl, sd, 0, tokenizer, buffer_size, prog, embedding_kwargs, "a", ls)
    eb = _embed_all(b, probe, nb, bs, sl, sd, 1, tokenizer, buffer_size, prog, embedding_kwargs, "b", ls)
    d = _cross(ea, eb, eps)
    mean, se, std = _cross_stats(d)
    return DiversityResult(mean, se, d, tuple(ea + eb), std)


def alignment_coefficient(
    a: Any,
    b: Any,
    probe: nn.Module,
    num_batches: int = 200,
    batch_size: int = 512,
    *,
    seq_len: int | None = None,
    seed: int = 0,
    progress: bool = True,
    tokenizer: Any = None,
    buffer_size: int = 10_000,
    eps: float = 0.0,
    label_seeds: str = "common",
    **embedding_kwargs: Any,
) -> AlignmentResult:
    """Task2Vec alignment coefficient (Chawla et al. 2025): ``1 −`` the
    :func:`cross_diversity` of ``a`` and ``b``. Batches of the two sides are
    independent draws, so a data set aligned with itself scores
    ``1 − diversity`` (about), not 1: alignment near ``1 − div(a)`` means
    ``b`` looks like ``a`` to the probe."""
    r = cross_diversity(
        a,
        b,
        probe,
        num_batches,
        batch_size,
        seq_len=seq_len,
        seed=seed,
        progress=progress,
        tokenizer=tokenizer,
        buffer_size=buffer_size,
        eps=eps,
        label_seeds=label_seeds,
        **embedding_kwargs,
    )
    return AlignmentResult(1.0 - r.coefficient, r.stderr, r.distances, r.embeddings)
