"""A plain, reproducible training loop for probe experiments."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._durable import write_atomic
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
    epoch_lrs: list[float] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "entropy_rate": self.entropy_rate,
            "eval_steps": self.eval_steps,
            "eval_nll": self.eval_nll,
            "eval_kl": self.eval_kl,
            "tokens_seen": self.tokens_seen,
            "epoch_lrs": self.epoch_lrs,
            "checkpoints": [str(p) for p in self.checkpoints],
        }


def _check_data(data: Any, vocab_size: int) -> torch.Tensor:
    """``data`` as an int64 ``[N, T]`` tensor of token ids in ``[0, vocab_size)``."""
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().numpy()
    if not isinstance(data, np.ndarray):
        raise TypeError(f"data must be a 2-D integer array or tensor of token ids, got {type(data).__name__}")
    if data.ndim != 2 or not np.issubdtype(data.dtype, np.integer):
        raise ValueError(f"data must be a 2-D integer array [N, T], got shape {data.shape} and dtype {data.dtype}")
    if data.shape[0] < 1 or data.shape[1] < 2:
        raise ValueError(f"data needs at least one row of at least 2 tokens, got shape {data.shape}")
    if data.min() < 0 or data.max() >= vocab_size:
        raise ValueError(f"data holds token ids outside [0, {vocab_size}) (the process's vocabulary)")
    return torch.from_numpy(np.ascontiguousarray(data, dtype=np.int64))


def _epoch_batches(tokens: torch.Tensor, batch_size: int, epochs: int, seed: int) -> Iterator[tuple[int, torch.Tensor]]:
    """(epoch, batch) pairs: each epoch a permutation drawn from ``(seed, epoch)``;
    the last batch of an epoch may be short."""
    n = tokens.shape[0]
    for epoch in range(epochs):
        state = np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0]
        gen = torch.Generator().manual_seed(int(state))
        order = torch.randperm(n, generator=gen)
        for lo in range(0, n, batch_size):
            yield epoch, tokens[order[lo : lo + batch_size]]


def _save_checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, **meta: Any) -> None:
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), **meta}, buf)
    write_atomic(path, buf.getvalue())


def train(
    model: nn.Module,
    process: Process,
    *,
    steps: int | None = None,
    batch_size: int = 32,
    seq_len: int = 128,
    lr: float = 1e-2,
    weight_decay: float = 0.01,
    warmup: int = 50,
    seed: int = 0,
    eval_every: int = 100,
    eval_sequences: int = 128,
    progress: bool = True,
    data: Any = None,
    epochs: int | None = None,
    betas: tuple[float, float] = (0.9, 0.95),
    checkpoint_dir: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """Trains ``model`` with next-token cross-entropy, AdamW, linear warm-up
    then cosine decay, and records the held-out NLL and exact excess loss
    against ``process`` every ``eval_every`` steps.

    Two data regimes:

    * **stream** (default): ``steps`` (default 1000) fresh batches of
      ``process`` sequences of length ``seq_len``;
    * **fixed data**: ``data`` is an integer ``[N, T]`` array of training rows
      (a selected subset, say); ``epochs`` (default 1) passes over it in an
      order drawn from ``(seed, epoch)``, ``ceil(N / batch_size)`` steps per
      epoch (``steps`` must then be left unset). ``process`` is still the law
      the model is judged against, so a model trained on a selection is
      scored by its exact KL to the target law.

    ``checkpoint_dir``: after each epoch (fixed data) the model and optimizer
    state (Adam moments included) are written atomically to
    ``epoch-{e}.pt`` there with the epoch's mean learning rate, as LESS's
    warm-up needs (docs/math.md, "LESS"); the paths and rates are listed in
    :attr:`TrainResult.checkpoints` / :attr:`TrainResult.epoch_lrs`.
    """
    from tqdm.auto import tqdm

    batch_size = check_int("batch_size", batch_size, 1)
    lr = check_float("lr", lr, positive=True)
    eval_every = check_int("eval_every", eval_every, 1)
    seed = check_seed("seed", seed)
    check_process("process", process)
    check_model_vocab(model, process.vocab_size)
    if not (
        isinstance(betas, tuple | list)
        and len(betas) == 2
        and all(isinstance(b, int | float) and not isinstance(b, bool) for b in betas)
    ):
        raise TypeError(f"betas must be a pair of numbers, got {betas!r}")
    if not all(0 <= float(b) < 1 for b in betas):
        raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
    warmup = check_int("warmup", warmup, 0)
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    if data is None:
        if epochs is not None:
            raise ValueError("epochs applies to fixed data: pass data= too, or use steps= for a stream")
        if checkpoint_dir is not None:
            raise ValueError("checkpoint_dir saves one checkpoint per epoch of fixed data: pass data= too")
        steps = 1000 if steps is None else check_int("steps", steps, 1)
        seq_len = check_int("seq_len", seq_len, 2)
        stream = ProbeDataset(process, seq_len, batch_size, seed=seed, num_batches=steps, rank=0, world_size=1)
        batches: Any = ((0, b) for b in stream)
    else:
        if steps is not None:
            raise ValueError("with fixed data the number of steps follows from epochs and batch_size: drop steps=")
        tokens = _check_data(data, process.vocab_size)
        epochs = 1 if epochs is None else check_int("epochs", epochs, 1)
        seq_len = int(tokens.shape[1])
        steps = epochs * -(-tokens.shape[0] // batch_size)
        batches = _epoch_batches(tokens, batch_size, epochs, seed)
    ckpt_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    held_out = process.sample(check_int("eval_sequences", eval_sequences, 1), seq_len, seed=(seed + 1) % 2**64)
    opt = torch.optim.AdamW(
        model.parameters(), lr=lr, weight_decay=weight_decay, betas=(float(betas[0]), float(betas[1]))
    )

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

    def end_epoch(epoch: int, step: int, lrs: list[float]) -> None:
        result.epoch_lrs.append(float(np.mean(lrs)))
        if ckpt_dir is not None:
            path = ckpt_dir / f"epoch-{epoch}.pt"
            _save_checkpoint(path, model, opt, epoch=epoch, step=step, lr=result.epoch_lrs[-1], betas=tuple(betas))
            result.checkpoints.append(path)

    model.train()
    bar = tqdm(total=steps, desc="training", disable=not progress)
    epoch_lrs: list[float] = []
    current = 0
    for step, (epoch, batch) in enumerate(batches):
        if data is not None and epoch != current:
            end_epoch(current, step, epoch_lrs)
            current, epoch_lrs = epoch, []
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
        epoch_lrs.append(float(opt.param_groups[0]["lr"]))
        opt.step()
        sched.step()
        result.steps.append(step)
        result.train_loss.append(loss.item())
        result.tokens_seen += x.numel()
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{result.train_loss[-1]:.4f}", floor=f"{result.entropy_rate:.4f}")
    bar.close()
    if data is not None:
        end_epoch(current, steps, epoch_lrs)
    evaluate(steps)
    model.eval()
    return result


def smoothed(values: list[float], window: int = 20) -> np.ndarray:
    """Moving average for plotting noisy training losses."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < window:
        return v
    return np.convolve(v, np.ones(window) / window, mode="valid")
