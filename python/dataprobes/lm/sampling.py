"""Decoding: sampling continuations from a language model.

:func:`generate` continues prompts greedily (temperature 0) or by sampling
from ``softmax(logits / T)`` restricted to the top-k tokens and the top-p
nucleus. Sampling is counter-based (one uniform per row index and step,
:func:`dataprobes._torch.counter_hash.uniform53`), so a sequence's
continuation depends on its index and the seed only. The evaluations in
:mod:`dataprobes.lm.evaluate` score what it generates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._torch.counter_hash import hash32_torch, stream_key, uniform53
from .._validation import as_tokens, check_float_in, check_int, check_seed

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


def as_logits_fn(model: Any) -> tuple[LogitsFn, torch.device]:
    """A function ``[B, T] int64 -> [B, T, V] float64 logits`` and the device
    to run it on, for a TinyGPT, a ``transformers`` causal LM (its
    ``.logits``), or any callable returning logits."""
    if isinstance(model, nn.Module):
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    elif callable(model):
        device = getattr(model, "device", torch.device("cpu"))
    else:
        raise TypeError(f"model must be a torch Module or a callable returning logits, got {type(model).__name__}")

    def fn(idx: torch.Tensor) -> torch.Tensor:
        out = _call_model(model, idx)
        if hasattr(out, "logits"):
            out = out.logits
        elif isinstance(out, (tuple, list)):
            out = out[0]
        if not isinstance(out, torch.Tensor) or out.dim() != 3 or out.shape[:2] != idx.shape:
            raise ValueError(f"model must return logits of shape [batch, time, vocab] for input {tuple(idx.shape)}")
        return check_logits(out).to(torch.float64)  # checked at the model's precision: half the bytes of float64

    return fn, torch.device(device)


def _call_model(model: Any, idx: torch.Tensor, *rest: Any) -> Any:
    """``model(idx, *rest)``, with an ``IndexError`` (an embedding lookup past
    the model's vocabulary) turned into a ``ValueError`` that says so."""
    try:
        return model(idx, *rest)
    except IndexError as exc:
        known = model_vocab_size(model)
        size = f"has {known} tokens" if known is not None else "may be smaller than the ids"
        raise ValueError(
            f"the model failed on token ids up to {int(idx.max()) if idx.numel() else 0} ({exc}); "
            f"its vocabulary {size}: the data's ids must lie below the model's vocabulary size"
        ) from exc


def model_vocab_size(model: Any) -> int | None:
    """The number of token ids ``model`` accepts, when it says: a TinyGPT's or
    a ``transformers`` model's ``config.vocab_size``, its input embedding's
    ``num_embeddings``, or a ``vocab_size`` attribute; ``None`` otherwise."""
    get = getattr(model, "get_input_embeddings", None)
    if callable(get):
        try:
            emb = get()
        except (NotImplementedError, AttributeError):
            emb = None
        if isinstance(emb, nn.Embedding):
            return int(emb.num_embeddings)
    for holder in (getattr(model, "config", None), model):
        v = getattr(holder, "vocab_size", None)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return None


def check_model_vocab(model: Any, vocab_size: int) -> None:
    """``ValueError`` when ``model`` says its vocabulary is smaller than the
    process's ``vocab_size`` (it could not read the probe's tokens), before
    any work."""
    m = model_vocab_size(model)
    if m is not None and m < vocab_size:
        raise ValueError(
            f"the model's vocabulary ({m} tokens) is smaller than the process's vocab_size ({vocab_size}): "
            "it cannot read the probe's tokens; build the model with vocab_size >= the process's"
        )


def check_logits(logits: torch.Tensor) -> torch.Tensor:
    """``logits`` if no entry is NaN or ``+inf`` and no row is all ``-inf``
    (``-inf`` alone masks a token and is allowed); otherwise ``ValueError``
    naming the model output, so that no evaluation turns a broken model into
    NaN scores."""
    # One reduction pass on the happy path: a row's max is NaN if any entry is
    # NaN, +inf if any is +inf, -inf if all are -inf; finite otherwise.
    if not logits.shape[-1] or bool(torch.isfinite(logits.amax(-1)).all()):
        return logits
    if torch.isnan(logits).any():
        problem = f"NaN at {int(torch.isnan(logits).sum())} of {logits.numel()} entries"
    elif torch.isposinf(logits).any():
        problem = f"+inf at {int(torch.isposinf(logits).sum())} of {logits.numel()} entries"
    else:
        problem = "a row that is -inf for every token (no token possible)"
    raise ValueError(
        f"model output: the logits contain {problem}; a model must return finite logits (-inf masks a token)"
    )


def _sampling_logprobs(
    logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None
) -> torch.Tensor:
    """Log of the distribution actually sampled from: greedy (temperature 0)
    is one-hot on the argmax; otherwise softmax(logits / T) restricted to the
    top-k tokens and to the smallest nucleus of mass >= top_p, renormalised."""
    if temperature == 0:
        out = torch.full_like(logits, -math.inf)
        return out.scatter(-1, logits.argmax(-1, keepdim=True), 0.0)
    z = logits / float(temperature)  # a huge int temperature would overflow torch
    if top_k is not None and top_k < z.shape[-1]:
        kth = torch.topk(z, top_k, dim=-1).values[..., -1:]
        z = z.masked_fill(z < kth, -math.inf)
    if top_p is not None and top_p < 1.0:
        sorted_z, order = torch.sort(z, dim=-1, descending=True)
        probs = F.softmax(sorted_z, dim=-1)
        before = probs.cumsum(-1) - probs  # mass strictly before each token
        drop = before >= top_p
        z = z.masked_fill(drop.scatter(-1, order, drop), -math.inf)
    return F.log_softmax(z, dim=-1)


def _check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    check_float_in("temperature", temperature, 0.0)  # 0 = greedy
    if top_k is not None:
        check_int("top_k", top_k, 1)
    if top_p is not None:
        check_float_in("top_p", top_p, 0.0, 1.0, low_open=True)


@torch.no_grad()
def generate(
    model: Any,
    prompt: Any,
    length: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    first_row: int = 0,
) -> torch.Tensor:
    """Continue ``prompt`` [B, P] by ``length`` tokens; returns [B, P + length].

    ``temperature=0`` is greedy decoding. Sampling is counter-based: the
    token of row ``i`` at step ``t`` is the inverse-CDF draw of the uniform
    ``U(seed, first_row + i, t)`` (:func:`dataprobes._torch.counter_hash.uniform53`)
    from the sampled distribution, so a sequence's continuation depends on its
    index and the seed, not on the batch it was generated in or its size
    (given the same logits; batched matmuls on some devices differ in the
    last bits between batch sizes, which can flip a near-tie).
    """
    _check_sampling(temperature, top_k, top_p)
    fn, device = as_logits_fn(model)
    x_np, _ = as_tokens(prompt)
    if x_np.shape[1] < 1:
        raise ValueError("prompt must hold at least one token per sequence")
    n_steps = check_int("length", length)
    if n_steps >= 2**32:
        raise ValueError(f"length must be below 2**32, got {length}")
    first = check_int("first_row", first_row, 0)
    if first + x_np.shape[0] > 2**32:
        raise ValueError(f"first_row + batch size must not exceed 2**32, got {first} + {x_np.shape[0]}")
    s = check_seed("seed", seed)
    x = torch.from_numpy(x_np.astype(np.int64)).to(device)
    rows = torch.arange(first, first + x.shape[0], dtype=torch.int64, device=device)
    keys = (hash32_torch(rows, stream_key(s, 0)), hash32_torch(rows, stream_key(s, 1)))
    # TinyGPT decodes incrementally with its key/value cache; other models
    # re-read the whole prefix each step.
    from .model import TinyGPT

    cache = model.new_cache() if isinstance(model, TinyGPT) else None
    step_in = x
    for t in range(n_steps):
        if cache is not None:
            logits = check_logits(_call_model(model, step_in, cache)[:, -1:].to(torch.float64))[:, -1]
        else:
            logits = fn(x)[:, -1].to(torch.float64)
        logq = _sampling_logprobs(logits, temperature, top_k, top_p)
        if temperature > 0:
            cdf = logq.exp().cumsum(-1)
            target = uniform53(keys, t) * cdf[:, -1]
            # first token whose cumulative mass exceeds the target: never a zero-probability token
            nxt = torch.searchsorted(cdf, target[:, None], right=True).clamp_(max=cdf.shape[-1] - 1)
        else:
            nxt = logq.argmax(-1, keepdim=True)
        x = torch.cat([x, nxt], dim=1)
        step_in = nxt
    return x
