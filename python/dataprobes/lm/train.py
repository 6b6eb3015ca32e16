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


def _check_data(data: Any, vocab_size: int, lengths: Any = None) -> torch.Tensor:
    """``data`` as an int64 ``[N, T]`` tensor of token ids in ``[0, vocab_size)``.

    With ``lengths`` (see :func:`_check_lengths`) only the first
    ``lengths[i]`` tokens of row ``i`` are checked and the padding beyond is
    set to token 0, so its content can never reach the model."""
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().numpy()
    if not isinstance(data, np.ndarray):
        raise TypeError(f"data must be a 2-D integer array or tensor of token ids, got {type(data).__name__}")
    if data.ndim != 2 or not np.issubdtype(data.dtype, np.integer):
        raise ValueError(f"data must be a 2-D integer array [N, T], got shape {data.shape} and dtype {data.dtype}")
    if data.shape[0] < 1 or data.shape[1] < 2:
        raise ValueError(f"data needs at least one row of at least 2 tokens, got shape {data.shape}")
    tokens = np.array(data, dtype=np.int64)  # a copy: padding is overwritten below
    if lengths is not None:
        lens = _check_lengths(lengths, tokens.shape[0], tokens.shape[1]).numpy()
        tokens[np.arange(tokens.shape[1])[None, :] >= lens[:, None]] = 0
    if tokens.min() < 0 or tokens.max() >= vocab_size:
        raise ValueError(f"data holds token ids outside [0, {vocab_size}) (the process's vocabulary)")
    return torch.from_numpy(tokens)


def _check_lengths(lengths: Any, n: int, t: int) -> torch.Tensor:
    """Per-row valid lengths of right-padded ``[n, t]`` rows as int64 ``[n]``,
    each in ``[2, t]`` (at least one next-token target per row)."""
    if isinstance(lengths, torch.Tensor):
        lengths = lengths.detach().cpu().numpy()
    if isinstance(lengths, (str, bytes)) or not isinstance(lengths, (np.ndarray, list, tuple)):
        raise TypeError(f"lengths must be a 1-D integer array (one length per row), got {type(lengths).__name__}")
    lens = np.asarray(lengths)
    if lens.dtype == object or not np.issubdtype(lens.dtype, np.integer):
        raise TypeError(f"lengths must hold integers (one length per row), got dtype {lens.dtype}")
    if lens.shape != (n,):
        raise ValueError(f"lengths must hold one length per row ({n}), got shape {lens.shape}")
    if lens.min() < 2 or lens.max() > t:
        raise ValueError(f"lengths must lie in [2, {t}] (at least one next-token target per row)")
    return torch.from_numpy(lens.astype(np.int64))


def _epoch_orders(n: int, batch_size: int, epochs: int, seed: int) -> Iterator[tuple[int, torch.Tensor]]:
    """(epoch, row indices) pairs: each epoch a permutation of ``n`` rows drawn
    from ``(seed, epoch)``; the last batch of an epoch may be short."""
    for epoch in range(epochs):
        state = np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0]
        gen = torch.Generator().manual_seed(int(state))
        order = torch.randperm(n, generator=gen)
        for lo in range(0, n, batch_size):
            yield epoch, order[lo : lo + batch_size]


def _epoch_batches(tokens: torch.Tensor, batch_size: int, epochs: int, seed: int) -> Iterator[tuple[int, torch.Tensor]]:
    """(epoch, batch) pairs in the order of :func:`_epoch_orders`."""
    for epoch, idx in _epoch_orders(tokens.shape[0], batch_size, epochs, seed):
        yield epoch, tokens[idx]


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
    lengths: Any = None,
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

    ``lengths`` (fixed data only): the valid length of each row of a
    right-padded ``data``. The loss is then the next-token cross-entropy
    averaged over the batch's valid targets only, ``Σ_b Σ_{t < L_b−1}
    nll_bt / Σ_b (L_b − 1)``, the padding is replaced by token 0 before the
    model sees it (its content never matters, it need not even be a token
    id), each batch is cut to its longest row, and ``tokens_seen`` counts
    valid tokens. ``None``: every row is full length (the plain mean over all
    targets).

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
        if lengths is not None:
            raise ValueError("lengths gives the valid lengths of padded fixed data: pass data= too")
        steps = 1000 if steps is None else check_int("steps", steps, 1)
        seq_len = check_int("seq_len", seq_len, 2)
        stream = ProbeDataset(process, seq_len, batch_size, seed=seed, num_batches=steps, rank=0, world_size=1)
        batches: Any = ((0, (b, None)) for b in stream)
    else:
        if steps is not None:
            raise ValueError("with fixed data the number of steps follows from epochs and batch_size: drop steps=")
        tokens = _check_data(data, process.vocab_size, lengths)
        lens = None if lengths is None else _check_lengths(lengths, tokens.shape[0], tokens.shape[1])
        epochs = 1 if epochs is None else check_int("epochs", epochs, 1)
        seq_len = int(tokens.shape[1]) if lens is None else int(lens.max())
        steps = epochs * -(-tokens.shape[0] // batch_size)
        batches = (
            (e, (tokens[i], None) if lens is None else (tokens[i, : int(lens[i].max())], lens[i]))
            for e, i in _epoch_orders(tokens.shape[0], batch_size, epochs, seed)
        )
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
    for step, (epoch, (batch, batch_lens)) in enumerate(batches):
        if data is not None and epoch != current:
            end_epoch(current, step, epoch_lrs)
            current, epoch_lrs = epoch, []
        if step % eval_every == 0:
            evaluate(step)
        x = batch.to(device)
        logits = model(x[:, :-1])
        if hasattr(logits, "logits"):
            logits = logits.logits
        if batch_lens is None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
            seen = x.numel()
        else:
            # mean over valid targets only: target t+1 is real iff t < length - 1
            ln = batch_lens.to(device)
            valid = torch.arange(x.shape[1] - 1, device=device)[None, :] < (ln[:, None] - 1)
            nll = F.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none")
            loss = torch.where(valid, nll, 0.0).sum() / valid.sum()
            seen = int(batch_lens.sum())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        epoch_lrs.append(float(opt.param_groups[0]["lr"]))
        opt.step()
        sched.step()
        result.steps.append(step)
        result.train_loss.append(loss.item())
        result.tokens_seen += seen
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
