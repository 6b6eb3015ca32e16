"""A plain, reproducible training loop for probe experiments."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._validation import check_float, check_int, check_process, check_seed
from ..processes import Process
from .data import ProbeDataset
from .evaluate import excess_loss
from .sampling import check_model_vocab


@dataclass
class TrainResult:
    """Learning curve of a :func:`train` run (nats per token).

    ``eval_nll`` is the model's cross-entropy on held-out probe sequences and
    ``eval_kl`` its exact excess loss there; the floor is ``entropy_rate``.
    """

    entropy_rate: float
    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_nll: list[float] = field(default_factory=list)
    eval_kl: list[float] = field(default_factory=list)
    tokens_seen: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "entropy_rate": self.entropy_rate,
            "eval_steps": self.eval_steps,
            "eval_nll": self.eval_nll,
            "eval_kl": self.eval_kl,
            "tokens_seen": self.tokens_seen,
        }


def train(
    model: nn.Module,
    process: Process,
    *,
    steps: int = 1000,
    batch_size: int = 32,
    seq_len: int = 128,
    lr: float = 1e-2,
    weight_decay: float = 0.01,
    warmup: int = 50,
    seed: int = 0,
    eval_every: int = 100,
    eval_sequences: int = 128,
    progress: bool = True,
) -> TrainResult:
    """Trains ``model`` on a fresh stream of probe batches (next-token
    cross-entropy, AdamW, linear warm-up then cosine decay) and records the
    held-out NLL and exact excess loss every ``eval_every`` steps."""
    from tqdm.auto import tqdm

    steps = check_int("steps", steps, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    seq_len = check_int("seq_len", seq_len, 2)
    lr = check_float("lr", lr, positive=True)
    eval_every = check_int("eval_every", eval_every, 1)
    seed = check_seed("seed", seed)
    check_process("process", process)
    check_model_vocab(model, process.vocab_size)
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    data = ProbeDataset(process, seq_len, batch_size, seed=seed, num_batches=steps, rank=0, world_size=1)
    held_out = process.sample(check_int("eval_sequences", eval_sequences, 1), seq_len, seed=seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.95))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    result = TrainResult(entropy_rate=float(process.entropy_rate()))

    def evaluate(step: int) -> None:
        model.eval()
        ex = excess_loss(model, process, held_out)
        model.train()
        result.eval_steps.append(step)
        result.eval_nll.append(ex.model_nll)
        result.eval_kl.append(ex.kl)

    model.train()
    bar = tqdm(total=steps, desc="training", disable=not progress)
    for step, batch in enumerate(data):
        if step % eval_every == 0:
            evaluate(step)
        x = batch.to(device)
        logits = model(x[:, :-1])
        if hasattr(logits, "logits"):
            logits = logits.logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        result.steps.append(step)
        result.train_loss.append(loss.item())
        result.tokens_seen += x.numel()
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{result.train_loss[-1]:.4f}", floor=f"{result.entropy_rate:.4f}")
    bar.close()
    evaluate(steps)
    model.eval()
    return result


def smoothed(values: list[float], window: int = 20) -> np.ndarray:
    """Moving average for plotting noisy training losses."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < window:
        return v
    return np.convolve(v, np.ones(window) / window, mode="valid")
