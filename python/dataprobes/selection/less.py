"""LESS: gradient-targeted data selection (Xia et al., "LESS: Selecting
Influential Data for Targeted Instruction Tuning", ICML 2024).

The recipe (docs/math.md, "Data selection: LESS"):

1. **Warm-up.** Train on a random fraction (5 %) of the pool for a few
   epochs, saving the model and the Adam state after every epoch and the
   epoch's mean learning rate: :func:`less_warmup` for a
   :class:`~dataprobes.lm.TinyGPT` (through :func:`dataprobes.lm.train`),
   :func:`less_trainer_callback` for a Hugging Face ``Trainer`` (LoRA via
   PEFT). Right-padded rows take ``lengths`` (the loss covers valid tokens
   only), as in step 2.
2. **Features.** For every checkpoint ``i``, training examples get the Adam
   feature ``Γ_i(z) = m'/sqrt(v'+ε)`` (``m' = β1 m + (1−β1) g``,
   ``v' = β2 v + (1−β2) g²``, no bias correction, β = (0.9, 0.999),
   ε = 1e-8), validation examples their plain gradient ``g_i(z')``, both
   count-sketched to ``k`` dimensions and L2-normalised
   (:func:`less_features`, batched capture; per-example results equal
   batch-1 passes).
3. **Scores.** ``s(z) = max_j mean_{z' ∈ task j} Σ_i w̄_i cos(Γ_i(z), g_i(z'))``
   with ``w̄`` the per-epoch mean learning rates renormalised to sum 1
   (:func:`less_scores`, streamed over stores in blocks of rows, split
   across ``torch.distributed`` ranks).
4. **Selection.** The top 5 %: :func:`select_top`.

Example::

    warm = less_warmup(model, rows, process, fraction=0.05, epochs=4, seed=0, checkpoint_dir="ckpt")
    tr = less_features(model, warm.checkpoints, rows, kind="train", k=8192)
    va = less_features(model, warm.checkpoints, val_rows, kind="val", k=8192)
    keep = select_top(less_scores(tr, va, warm.epoch_lrs, subtasks), fraction=0.05)
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._durable import write_atomic
from .._validation import (
    check_bool,
    check_choice,
    check_float_in,
    check_int,
    check_positive_int,
    check_seed,
)
from ..attribution.capture import GradientCapture
from ..attribution.pipeline import capture_batches, capture_to_store
from ..attribution.precondition import LESS_BETAS, AdamPreconditioner
from ..attribution.store import GradientStore

__all__ = [
    "LessWarmup",
    "less_features",
    "less_scores",
    "less_trainer_callback",
    "less_warmup",
    "select_top",
    "warmup_subset",
]

#: LESS's warm-up fraction, projection size and selected fraction
DEFAULT_FRACTION = 0.05
DEFAULT_K = 8192

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------
# Warm-up
# ----------------------------------------------------------------------------


def warmup_subset(num_rows: int, fraction: float = DEFAULT_FRACTION, *, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``max(1, floor(fraction · num_rows))`` rows drawn
    uniformly without replacement from ``(seed)``: LESS's random warm-up set."""
    n = check_int("num_rows", num_rows, 1)
    f = check_float_in("fraction", fraction, 0.0, 1.0, low_open=True)
    size = max(1, int(f * n))
    rng = np.random.default_rng(check_seed("seed", seed))
    return np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)


@dataclass(frozen=True)
class LessWarmup:
    """Result of :func:`less_warmup`: the warm-up rows (``indices`` into the
    pool), one checkpoint per epoch (model + Adam state) and the epochs'
    mean learning rates (LESS's checkpoint weights)."""

    indices: np.ndarray
    checkpoints: list[Path] = field(default_factory=list)
    epoch_lrs: list[float] = field(default_factory=list)
    result: Any = None


def less_warmup(
    model: nn.Module,
    rows: Any,
    process: Any,
    *,
    fraction: float = DEFAULT_FRACTION,
    epochs: int = 4,
    seed: int = 0,
    checkpoint_dir: str | os.PathLike[str],
    betas: tuple[float, float] = LESS_BETAS,
    lengths: Any = None,
    **train_kwargs: Any,
) -> LessWarmup:
    """LESS warm-up of a :class:`~dataprobes.lm.TinyGPT` (or any model
    :func:`dataprobes.lm.train` accepts): train on :func:`warmup_subset` of
    ``rows`` ([N, T] token ids) for ``epochs`` epochs with AdamW ``betas``
    (LESS's ``(0.9, 0.999)``), writing ``epoch-{e}.pt`` (model, optimizer
    state with the Adam moments, mean lr) to ``checkpoint_dir`` after each
    epoch. ``lengths``: valid lengths of right-padded ``rows``, as for
    :func:`less_features`; the loss then covers the valid targets only, so
    the Adam moments come from the same tokens the features see (padding
    content never matters). ``train_kwargs`` go to
    :func:`dataprobes.lm.train` (``lr``, ``batch_size``, ``warmup``,
    ``progress``, ...)."""
    from ..lm.train import _check_data, _check_lengths, train

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    for bad in ("data", "steps", "epochs", "checkpoint_dir"):
        if bad in train_kwargs:
            raise TypeError(f"less_warmup sets {bad} itself; do not pass it in train_kwargs")
    if checkpoint_dir is None or not isinstance(checkpoint_dir, (str, os.PathLike)):
        raise TypeError(f"checkpoint_dir must be a path, got {type(checkpoint_dir).__name__}")
    vocab = getattr(process, "vocab_size", None)
    tokens = _check_data(rows, int(vocab) if isinstance(vocab, int) else 2**62, lengths)
    lens = None if lengths is None else _check_lengths(lengths, tokens.shape[0], tokens.shape[1])
    epochs = check_int("epochs", epochs, 1)
    idx = warmup_subset(tokens.shape[0], fraction, seed=seed)
    sel = torch.from_numpy(idx)
    res = train(
        model,
        process,
        data=tokens[sel],
        lengths=None if lens is None else lens[sel],
        epochs=epochs,
        seed=seed,
        betas=betas,
        checkpoint_dir=checkpoint_dir,
        **train_kwargs,
    )
    return LessWarmup(idx, list(res.checkpoints), list(res.epoch_lrs), res)


def _param_names_in_optimizer_order(model: nn.Module, optimizer: Any) -> list[str]:
    names = {id(p): n for n, p in model.named_parameters()}
    out = []
    for g in optimizer.param_groups:
        for p in g["params"]:
            if id(p) not in names:
                raise ValueError("the optimizer holds a parameter that is not in the model")
            out.append(names[id(p)])
    return out


def save_less_checkpoint(
    path: str | os.PathLike[str], model: nn.Module, optimizer: Any, *, lr: float, **meta: Any
) -> Path:
    """Write a LESS checkpoint atomically: the trainable parameters, the
    optimizer state dict, the parameter names in the optimizer's order and
    the epoch's mean learning rate ``lr``."""
    trainable = {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}
    buf = io.BytesIO()
    torch.save(
        {
            "model": trainable,
            "optimizer": optimizer.state_dict(),
            "param_names": _param_names_in_optimizer_order(model, optimizer),
            "lr": float(lr),
            **meta,
        },
        buf,
    )
    write_atomic(path, buf.getvalue())
    return Path(path)


def less_trainer_callback(checkpoint_dir: str | os.PathLike[str]) -> Any:
    """A ``transformers.TrainerCallback`` for LESS's warm-up with a Hugging
    Face ``Trainer`` (e.g. a PEFT LoRA model trained on the warm-up subset):
    records the learning rate of every optimizer step and, at the end of each
    epoch, writes ``epoch-{e}.pt`` to ``checkpoint_dir`` (the trainable
    parameters, the optimizer state with the Adam moments, the parameter names
    in the optimizer's order, the epoch's mean lr), whatever the Trainer's own
    ``save_strategy``. Its ``checkpoints`` and ``epoch_lrs`` lists feed
    :func:`less_features` and :func:`less_scores`. Writes on the main process
    only."""
    from transformers import TrainerCallback

    if not isinstance(checkpoint_dir, (str, os.PathLike)):
        raise TypeError(f"checkpoint_dir must be a path, got {type(checkpoint_dir).__name__}")
    root = Path(checkpoint_dir)

    class LessCallback(TrainerCallback):
        def __init__(self) -> None:
            self.checkpoints: list[Path] = []
            self.epoch_lrs: list[float] = []
            self._lrs: list[float] = []

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._lrs = []

        def on_step_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
            if optimizer is not None:
                self._lrs.append(float(optimizer.param_groups[0]["lr"]))

        def on_epoch_end(
            self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None, **kwargs: Any
        ) -> None:
            if model is None or optimizer is None:
                raise RuntimeError("the Trainer passed no model/optimizer to the LESS callback")
            if not self._lrs:
                raise RuntimeError("an epoch ended without optimizer steps: no learning rate to record")
            lr = float(np.mean(self._lrs))
            e = len(self.checkpoints)
            path = root / f"epoch-{e}.pt"
            if getattr(state, "is_world_process_zero", True):
                root.mkdir(parents=True, exist_ok=True)
                save_less_checkpoint(path, model, optimizer, lr=lr, epoch=e, step=int(state.global_step))
            self.checkpoints.append(path)
            self.epoch_lrs.append(lr)

    return LessCallback()


# ----------------------------------------------------------------------------
# Features
# ----------------------------------------------------------------------------


def _load_checkpoint(model: nn.Module, path: Path, less: bool) -> AdamPreconditioner | None:
    """Load a checkpoint's weights into ``model`` and, for ``less``, its
    Adam moments as a LESS preconditioner keyed by the parameter objects."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"checkpoints must be paths, got {type(path).__name__}")
    ck = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(ck, dict) or "model" not in ck or "optimizer" not in ck:
        raise ValueError(f"{path} is not a checkpoint with 'model' and 'optimizer' (lm.train or the LESS callback)")
    partial = "param_names" in ck
    missing, unexpected = model.load_state_dict(ck["model"], strict=False)
    if unexpected or (missing and not partial):
        raise ValueError(f"{path} does not fit the model: missing {list(missing)[:4]}, unexpected {unexpected[:4]}")
    if not less:
        return None
    params = dict(model.named_parameters())
    names = list(ck["param_names"]) if partial else list(params)
    pre = AdamPreconditioner.less_from_state(ck["optimizer"], names)
    unknown = [n for n in names if n not in params]
    if unknown:
        raise ValueError(f"{path} has optimizer state for parameters the model lacks: {unknown[:4]}")
    # re-key by parameter object: shared (tied) weights are found under any name
    first = {params[n]: pre._m_by_name[n] for n in pre._m_by_name}
    second = {params[n]: pre._by_name[n][0] for n in pre._by_name}
    return AdamPreconditioner(second, eps=pre.eps, first_moments=first, less=True, betas=pre.betas, copy=False)


def _default_modules(model: nn.Module) -> list[str]:
    """Every ``nn.Linear`` whose weight requires grad and is not shared with
    another module (a tied head's block would be only part of its weight's
    gradient, and LESS transforms whole parameter gradients)."""
    uses: dict[int, int] = {}
    for _, m in model.named_modules():
        w = getattr(m, "weight", None)
        if isinstance(w, torch.Tensor):
            uses[id(w)] = uses.get(id(w), 0) + 1
    out = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and m.weight.requires_grad]
    out = [n for n in out if uses[id(dict(model.named_modules())[n].weight)] == 1]
    if not out:
        raise ValueError("the model has no untied nn.Linear whose weight requires grad; pass modules=")
    return out


def lm_losses(model: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Per-example mean next-token cross-entropy of ``x`` [B, T] over the
    first ``lengths[b]`` tokens of each row (positions beyond are padding);
    ``model(x)`` returns logits ``[B, T, V]`` or an object with ``.logits``."""
    logits = model(x[:, :-1])
    if hasattr(logits, "logits"):
        logits = logits.logits
    nll = F.cross_entropy(logits.transpose(1, 2).float(), x[:, 1:], reduction="none")
    mask = _target_mask(lengths, x.shape[1] - 1).to(nll.device)
    return (nll * mask).sum(1) / mask.sum(1)


def _target_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    return (torch.arange(t, device=lengths.device)[None, :] < (lengths[:, None] - 1)).to(torch.float32)


def _check_rows(rows: Any, lengths: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(rows, torch.Tensor):
        rows = rows.detach().cpu().numpy()
    if not isinstance(rows, np.ndarray):
        raise TypeError(f"rows must be a 2-D integer array [N, T] of token ids, got {type(rows).__name__}")
    if rows.ndim != 2 or not np.issubdtype(rows.dtype, np.integer):
        raise ValueError(f"rows must be a 2-D integer array [N, T], got shape {rows.shape} and dtype {rows.dtype}")
    n, t = rows.shape
    if n < 1 or t < 2:
        raise ValueError(f"rows needs at least one row of at least 2 tokens, got shape {rows.shape}")
    if rows.min() < 0:
        raise ValueError("rows holds negative token ids")
    if lengths is None:
        lens = np.full(n, t, np.int64)
    else:
        if isinstance(lengths, torch.Tensor):
            lengths = lengths.detach().cpu().numpy()
        lens = np.asarray(lengths)
        if lens.ndim != 1 or lens.shape[0] != n or not np.issubdtype(lens.dtype, np.integer):
            raise ValueError(f"lengths must be {n} integers (one per row), got shape {lens.shape}, dtype {lens.dtype}")
        if lens.min() < 2 or lens.max() > t:
            raise ValueError(f"lengths must lie in [2, {t}] (at least one next-token target per row)")
    return np.ascontiguousarray(rows, dtype=np.int64), lens.astype(np.int64)


def less_features(
    model: nn.Module,
    checkpoints: Sequence[str | os.PathLike[str]],
    rows: Any,
    *,
    kind: str = "train",
    k: int = DEFAULT_K,
    seed: int = 0,
    lengths: Any = None,
    modules: Any = None,
    batch_size: int = 16,
    loss_fn: LossFn | None = None,
    store_dir: str | os.PathLike[str] | None = None,
    store_dtype: str = "float16",
    backend: str = "auto",
    progress: bool = True,
) -> list[np.ndarray] | list[GradientStore]:
    """LESS features of ``rows`` at every checkpoint: the Adam feature
    ``Γ = m'/sqrt(v'+ε)`` (``kind="train"``) or the plain gradient
    (``kind="val"``), count-sketched to ``k`` (flat SJLT capture, ``seed``)
    and L2-normalised per row.

    ``rows`` [N, T] token ids, right-padded to ``lengths`` (default: full
    rows); per-example gradients come from batched passes of ``batch_size``
    rows (padding masked; equal to batch-1 passes). ``loss_fn(model, x,
    lengths) -> [B]`` defaults to :func:`lm_losses` (mean next-token NLL).
    ``checkpoints``: paths written by :func:`less_warmup` / ``lm.train`` or
    :func:`less_trainer_callback`; each one's weights are loaded into
    ``model`` in turn, and the model's own state is restored at the end.
    ``modules``: as :class:`~dataprobes.attribution.GradientCapture`
    (default: every untied ``nn.Linear`` whose weight requires grad; on a
    PEFT LoRA model the LoRA linears).

    Returns one float32 ``[N, k]`` array per checkpoint, or with
    ``store_dir`` one :class:`~dataprobes.attribution.GradientStore` per
    checkpoint at ``store_dir/checkpoint-{i}`` (ids ``0..N-1``; resumable).
    ``backend``: the sketch kernel, as :class:`GradientCapture`.
    """
    from tqdm.auto import tqdm

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    check_choice("kind", kind, ("train", "val"))
    check_choice("backend", backend, ("auto", "triton", "torch"))
    if isinstance(checkpoints, (str, os.PathLike)) or not isinstance(checkpoints, Sequence):
        raise TypeError("checkpoints must be a sequence of checkpoint paths (one per epoch)")
    if not checkpoints:
        raise ValueError("checkpoints must not be empty")
    k = check_positive_int("k", k)
    seed = check_seed("seed", seed)
    batch_size = check_positive_int("batch_size", batch_size)
    progress = check_bool("progress", progress)
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError("loss_fn must be callable (model, x, lengths) -> [B] losses")
    tokens, lens = _check_rows(rows, lengths)
    n = tokens.shape[0]
    fn: LossFn = loss_fn if loss_fn is not None else lm_losses
    if modules is None:
        modules = _default_modules(model)
    device = next(model.parameters()).device
    saved = {key: v.detach().clone() for key, v in model.state_dict().items()}
    was_training = model.training
    out: list[Any] = []
    bar = tqdm(total=len(checkpoints) * n, desc=f"LESS {kind} features", disable=not progress)
    try:
        model.eval()
        for i, path in enumerate(checkpoints):
            pre = _load_checkpoint(model, Path(path), less=kind == "train")
            cap = GradientCapture(
                model, modules, mode="flat", k=k, seed=seed, precondition=pre, normalize=True, backend=backend
            )

            def loss(m: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
                x, ln = batch
                return fn(m, x, ln), _input_mask(ln, x.shape[1] - 1)

            def batches() -> Any:
                for lo in range(0, n, batch_size):
                    hi = min(n, lo + batch_size)
                    t = int(lens[lo:hi].max())
                    x = torch.from_numpy(tokens[lo:hi, :t]).to(device)
                    yield np.arange(lo, hi), (x, torch.from_numpy(lens[lo:hi]).to(device))
                    bar.update(hi - lo)

            if store_dir is not None:
                path_i = Path(store_dir) / f"checkpoint-{i}"
                extra = {"less": kind, "checkpoint": str(path)}
                out.append(capture_to_store(cap, loss, batches(), path_i, dtype=store_dtype, extra_config=extra))
            else:
                feats = np.empty((n, k), np.float32)
                for ids, g in capture_batches(cap, loss, batches()):
                    feats[ids] = g.detach().cpu().numpy()
                out.append(feats)
    finally:
        bar.close()
        model.load_state_dict(saved)
        model.train(was_training)
    return out


def _input_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    """Input positions that predict a real token (``t < length − 1``)."""
    return _target_mask(lengths, t)


# ----------------------------------------------------------------------------
# Scores
# ----------------------------------------------------------------------------


class _Source:
    """Rows of one checkpoint's features: a store (read in blocks) or an
    in-memory [n, dim] array."""

    def __init__(self, name: str, item: Any) -> None:
        self.name = name
        self.store: GradientStore | None = None
        self.array: np.ndarray | None = None
        if isinstance(item, (str, os.PathLike)):
            item = GradientStore(item)
        if isinstance(item, GradientStore):
            self.store = item
            self.n, self.dim = len(item), item.dim
            self.ids: np.ndarray | None = item.ids
            self.config: dict[str, Any] | None = item.config
        else:
            if isinstance(item, torch.Tensor):
                item = item.detach().cpu().numpy()
            if not isinstance(item, np.ndarray):
                raise TypeError(
                    f"{name} must be a GradientStore, a store path or a 2-D float array, got {type(item).__name__}"
                )
            if not np.issubdtype(item.dtype, np.floating):
                raise TypeError(f"{name} must be a float array [n, dim] of features, got dtype {item.dtype}")
            if item.ndim != 2:
                raise ValueError(f"{name} must be a 2-D float array [n, dim], got shape {item.shape}")
            self.array = item
            self.n, self.dim = item.shape
            self.ids, self.config = None, None

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Rows [lo, hi) as float64, unit-normalised (zero rows stay zero)."""
        if self.store is not None:
            rows = self.store.read(lo, hi)[1].astype(np.float64)
        else:
            assert self.array is not None
            rows = np.asarray(self.array[lo:hi], dtype=np.float64)
        if not np.isfinite(rows).all():
            bad = lo + int(np.flatnonzero(~np.isfinite(rows).all(axis=1))[0])
            raise ValueError(f"{self.name} row {bad} has NaN or infinite entries")
        norm = np.sqrt(np.einsum("ij,ij->i", rows, rows))
        return rows / np.where(norm > 0, norm, 1.0)[:, None]


def _store_kind(s: _Source) -> Any:
    """The ``extra_config["less"]`` a :func:`less_features` store records
    (``"train"`` / ``"val"``), or ``None``."""
    extra = (s.config or {}).get("extra")
    return extra.get("less") if isinstance(extra, dict) else None


def _sources(name: str, value: Any) -> list[_Source]:
    if isinstance(value, (str, os.PathLike, GradientStore)) or (
        isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim == 2
    ):
        raise TypeError(f"{name} must hold one store or array per checkpoint (a list), got one {type(value).__name__}")
    if isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim == 3:
        value = list(value)
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise TypeError(f"{name} must be a sequence of per-checkpoint stores or arrays, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} must not be empty (one entry per checkpoint)")
    out = [_Source(f"{name}[{i}]", v) for i, v in enumerate(value)]
    other = "val" if name == "train" else "train"
    for s in out:
        if _store_kind(s) == other:
            raise ValueError(
                f"{s.name} is a LESS {other} store (less_features(kind={other!r})), not {name} features: "
                "are train and val swapped?"
            )
    for s in out[1:]:
        if s.n != out[0].n:
            raise ValueError(f"{name} checkpoints have different numbers of rows: {out[0].n} and {s.n} ({s.name})")
        if s.ids is not None and out[0].ids is not None and not np.array_equal(s.ids, out[0].ids):
            raise ValueError(f"{s.name} stores other example ids (or another order) than {name}[0]")
    if out[0].n == 0:
        raise ValueError(f"{name} has no rows")
    return out


_CONFIG_KEYS = ("mode", "seed", "k", "dim", "scheme", "projection", "modules", "include_bias")


def _check_pair(t: _Source, v: _Source) -> None:
    if t.dim != v.dim:
        raise ValueError(f"{t.name} has dim {t.dim} but {v.name} has dim {v.dim}; capture both with the same k")
    if t.config and v.config:
        diff = [key for key in _CONFIG_KEYS if t.config.get(key) != v.config.get(key)]
        if diff:
            raise ValueError(f"{t.name} and {v.name} were captured differently (keys {diff}); capture both alike")


def _check_subtasks(subtasks: Any, m: int) -> list[np.ndarray]:
    if subtasks is None:
        return [np.arange(m)]
    if isinstance(subtasks, np.ndarray) and subtasks.ndim == 2:
        subtasks = list(subtasks)  # equal-size tasks as one [tasks, size] array
    if isinstance(subtasks, (str, bytes, np.ndarray)) or not isinstance(subtasks, Sequence):
        raise TypeError("subtasks must be a sequence of index sequences (validation rows of each task), or None")
    if not subtasks:
        raise ValueError("subtasks must not be empty")
    out = []
    for j, s in enumerate(subtasks):
        if isinstance(s, (int, np.integer)) or isinstance(s, (str, bytes)):
            raise TypeError(f"subtasks[{j}] must be a sequence of validation row indices, got {type(s).__name__}")
        a = np.asarray(s)
        if a.size == 0:
            raise ValueError(f"subtasks[{j}] is empty: every task needs at least one validation example")
        if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"subtasks[{j}] must be 1-D integer row indices, got shape {a.shape}, dtype {a.dtype}")
        if a.min() < 0 or a.max() >= m:
            raise ValueError(f"subtasks[{j}] has indices outside [0, {m}) (the validation rows)")
        out.append(a.astype(np.int64))
    return out


def _check_weights(lr_weights: Any, c: int) -> np.ndarray:
    if isinstance(lr_weights, (str, bytes)) or not hasattr(lr_weights, "__len__"):
        kind = type(lr_weights).__name__
        raise TypeError(f"lr_weights must be a sequence of numbers (one per checkpoint), got {kind}")
    w = np.asarray(lr_weights)
    if w.dtype == object or not (np.issubdtype(w.dtype, np.integer) or np.issubdtype(w.dtype, np.floating)):
        raise TypeError(f"lr_weights must be numbers, got dtype {w.dtype}")
    w = w.astype(np.float64)
    if w.ndim != 1 or w.shape[0] != c:
        raise ValueError(f"lr_weights must hold one weight per checkpoint ({c}), got shape {w.shape}")
    if not (np.isfinite(w).all() and (w > 0).all()):
        raise ValueError(f"lr_weights must be finite and > 0, got {w.tolist()}")
    return w / w.sum()


def _rank_range(n: int, distributed: bool | None) -> tuple[int, int, int, int]:
    """(rank, world, lo, hi): this rank's contiguous share of n rows."""
    import torch.distributed as dist

    use = dist.is_available() and dist.is_initialized()
    if distributed is not None:
        distributed = check_bool("distributed", distributed)
        if distributed and not use:
            raise ValueError("distributed=True but no torch.distributed process group is initialised")
        use = use and distributed
    if not use:
        return 0, 1, 0, n
    rank, world = dist.get_rank(), dist.get_world_size()
    per = -(-n // world)
    return rank, world, min(n, rank * per), min(n, (rank + 1) * per)


def less_scores(
    train: Sequence[Any],
    val: Sequence[Any],
    lr_weights: Sequence[float],
    subtasks: Sequence[Sequence[int]] | None = None,
    *,
    block_rows: int = 4096,
    distributed: bool | None = None,
    progress: bool = False,
) -> np.ndarray:
    """LESS scores ``s(z) = max_j mean_{z' ∈ subtasks[j]} Σ_i w̄_i cos(Γ_i(z), g_i(z'))``.

    ``train`` / ``val``: one entry per checkpoint ``i``, each a
    :class:`~dataprobes.attribution.GradientStore`, a store path or an
    in-memory ``[n, dim]`` array (train: Γ features, val: gradients, e.g.
    from :func:`less_features`; its stores record their kind, and a val
    store passed as train or the reverse raises ``ValueError``); rows in
    store order. ``lr_weights``: the
    checkpoints' mean learning rates, renormalised to ``w̄`` (sum 1).
    ``subtasks``: validation row indices of each task (sizes may differ;
    ``None``: one task of all rows). A zero vector has cosine 0.

    Since the cosine is linear in the normalised validation row, the mean
    over a task is a cosine against the task's mean unit vector: validation
    rows are reduced to ``[tasks, dim]`` per checkpoint, then train rows are
    streamed in blocks of ``block_rows`` (memory ``O(block · dim + tasks ·
    dim · checkpoints)``, never ``N × M``). Under ``torch.distributed``
    (``distributed=None``: whenever a process group is initialised) each rank
    scores a contiguous share of the rows and the shares are all-gathered, so
    every rank returns the full float64 ``[N]``.
    """
    from tqdm.auto import tqdm

    tr = _sources("train", train)
    va = _sources("val", val)
    if len(tr) != len(va):
        raise ValueError(f"train has {len(tr)} checkpoints but val has {len(va)}")
    w = _check_weights(lr_weights, len(tr))
    for t, v in zip(tr, va, strict=True):
        _check_pair(t, v)
    block = check_positive_int("block_rows", block_rows)
    progress = check_bool("progress", progress)
    m = va[0].n
    tasks = _check_subtasks(subtasks, m)
    # A[j, r] = 1/|task j| for r in task j: task means are A @ unit rows
    mean_op = np.zeros((len(tasks), m), np.float64)
    for j, idx in enumerate(tasks):
        np.add.at(mean_op[j], idx, 1.0 / idx.shape[0])
    centroids = []
    for v in va:
        c = np.zeros((len(tasks), v.dim), np.float64)
        for lo in range(0, m, block):
            hi = min(m, lo + block)
            c += mean_op[:, lo:hi] @ v.read(lo, hi)
        centroids.append(c)
    n = tr[0].n
    rank, world, lo_r, hi_r = _rank_range(n, distributed)
    mine = np.empty(hi_r - lo_r, np.float64)
    with tqdm(total=hi_r - lo_r, desc="LESS scores", disable=not progress) as bar:
        for lo in range(lo_r, hi_r, block):
            hi = min(hi_r, lo + block)
            acc = np.zeros((hi - lo, len(tasks)), np.float64)
            for wi, t, c in zip(w, tr, centroids, strict=True):
                acc += wi * (t.read(lo, hi) @ c.T)
            mine[lo - lo_r : hi - lo_r] = acc.max(axis=1)
            bar.update(hi - lo)
    if world == 1:
        return mine
    return _all_gather_rows(mine, n, world)


def _all_gather_rows(mine: np.ndarray, n: int, world: int) -> np.ndarray:
    import torch.distributed as dist

    per = -(-n // world)
    dev = torch.device("cpu")
    if dist.get_backend() == "nccl":
        dev = torch.device("cuda", torch.cuda.current_device())
    buf = torch.zeros(per, dtype=torch.float64, device=dev)
    buf[: mine.shape[0]] = torch.from_numpy(mine).to(dev)
    parts = [torch.empty_like(buf) for _ in range(world)]
    dist.all_gather(parts, buf)
    return torch.cat(parts).cpu().numpy()[:n].copy()


# ----------------------------------------------------------------------------
# Selection
# ----------------------------------------------------------------------------


def select_top(scores: Any, *, fraction: float | None = None, count: int | None = None) -> np.ndarray:
    """Indices of the best rows, best first: ``count`` rows, or
    ``max(1, floor(fraction · N))`` (LESS's ``int(percentage · N)``; default
    ``fraction=0.05``). Equal scores keep the lower index first, so the
    selection is deterministic. ``scores`` must be finite (NaN refused)."""
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().cpu().numpy()
    s = np.asarray(scores)
    if s.dtype == object or not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer)):
        raise TypeError(f"scores must be a 1-D numeric array, got dtype {s.dtype}")
    if s.ndim != 1 or s.shape[0] == 0:
        raise ValueError(f"scores must be a non-empty 1-D array, got shape {s.shape}")
    if np.issubdtype(s.dtype, np.floating) and not np.isfinite(s).all():
        raise ValueError(f"scores has {int((~np.isfinite(s)).sum())} NaN or infinite entries")
    n = s.shape[0]
    if fraction is not None and count is not None:
        raise ValueError("pass fraction or count, not both")
    if count is not None:
        c = check_int("count", count, 1, n)
    else:
        f = check_float_in("fraction", DEFAULT_FRACTION if fraction is None else fraction, 0.0, 1.0, low_open=True)
        c = max(1, math.floor(f * n))
    order = np.argsort(-s.astype(np.float64), kind="stable")
    return order[:c].astype(np.int64)
