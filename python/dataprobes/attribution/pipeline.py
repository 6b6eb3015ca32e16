"""Capture → store: write compressed per-example gradients of a data set to a
sharded :class:`~dataprobes.attribution.store.GradientStore`, resumably, from a
plain loop, a ``torch.distributed`` job or a Hugging Face ``Trainer``.

    cap = GradientCapture(model, mode="factored", k_in=32, k_out=32, seed=0)
    capture_to_store(cap, loss_fn, batches, "grads/train")     # (ids, batch) pairs
    top = score("grads/train", query_grads, method="influence", top_k=50, capture=cap)

Each rank of a distributed job passes its own batches; its shards carry its
rank and readers see one logical store. An interrupted run resumes: examples
whose ids are already stored are skipped.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch

from .capture import GradientCapture
from .store import GradientStore, StoreWriter

#: ``loss_fn(model, batch)``: per-example losses ``[B]``, or ``(losses, mask)``
LossFn = Callable[[torch.nn.Module, Any], "torch.Tensor | tuple[torch.Tensor, torch.Tensor]"]


def _check_ids(ids: Any) -> np.ndarray:
    """A batch's example ids as int64, validated before any conversion (float
    ids and uint64 ids beyond int64 are refused, not truncated or wrapped)."""
    return StoreWriter._check_ids(ids, "ids", allow_dup=True)


def _losses_and_mask(out: Any) -> tuple[Any, torch.Tensor | None]:
    """``loss_fn`` returns per-example losses ``[B]``, or ``(losses, mask)``
    with a ``[B, T]`` position mask for :meth:`GradientCapture.backward`
    (padding of variable-length rows)."""
    if isinstance(out, tuple):
        if len(out) != 2:
            raise ValueError("loss_fn must return losses [B] or a pair (losses [B], mask [B, T])")
        return out[0], out[1]
    return out, None


def _check_batch(ids: np.ndarray, losses: Any) -> None:
    n = losses.shape[0] if isinstance(losses, torch.Tensor) and losses.dim() == 1 else None
    if n is not None and n != ids.shape[0]:
        raise ValueError(f"a batch has {ids.shape[0]} ids but loss_fn returned {n} per-example losses; they must match")


def capture_config(capture: GradientCapture, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON description of how ``capture`` compresses gradients
    (:attr:`GradientCapture.config`), plus ``extra`` notes under the key
    ``"extra"``: what a store records and what queries must match to be
    scored against it."""
    cfg = capture.config
    if extra:
        cfg["extra"] = dict(extra)
    return cfg


def capture_batches(
    capture: GradientCapture, loss_fn: LossFn, batches: Iterable[tuple[Any, Any]]
) -> Iterable[tuple[np.ndarray, torch.Tensor]]:
    """Yields ``(ids, compressed gradients [B, dim])`` for each ``(ids, batch)``;
    ``loss_fn(model, batch)`` returns per-example losses ``[B]`` (or
    ``(losses, mask)``, the mask passed to :meth:`GradientCapture.backward`)."""
    with capture:
        for ids, batch in batches:
            ids_arr = _check_ids(ids)
            losses, mask = _losses_and_mask(loss_fn(capture.model, batch))
            _check_batch(ids_arr, losses)
            yield ids_arr, capture.backward(losses, mask=mask)


def capture_to_store(
    capture: GradientCapture,
    loss_fn: LossFn,
    batches: Iterable[tuple[Any, Any]],
    path: str | os.PathLike[str],
    *,
    dtype: str = "int8",
    shard_rows: int = 65536,
    rank: int | None = None,
    extra_config: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> GradientStore:
    """Captures every ``(ids, batch)`` and appends it to the store at ``path``.

    ``loss_fn(model, batch)`` returns per-example losses ``[B]``, or
    ``(losses, mask)`` with a ``[B, T]`` position mask (padding).
    Batches whose ids are all stored already are skipped without a forward
    pass (resume after an interruption); partially stored batches write only
    their missing rows. Returns the store, opened for reading.
    """
    from tqdm.auto import tqdm

    config = capture_config(capture, extra_config)
    with StoreWriter(path, capture.dim, dtype, config, rank=rank, shard_rows=shard_rows) as writer:
        with capture:
            for ids, batch in tqdm(batches, desc="capturing", disable=not progress):
                ids = _check_ids(ids)
                done = writer.contains(ids)
                if done.all():
                    continue
                losses, mask = _losses_and_mask(loss_fn(capture.model, batch))
                _check_batch(ids, losses)
                g = capture.backward(losses, mask=mask)
                keep = ~done
                writer.append(ids[keep], g[torch.from_numpy(keep).to(g.device)])
    return GradientStore(path)


def attribution_callback(
    loss_fn: LossFn,
    batches: Callable[[], Iterable[tuple[Any, Any]]],
    store_dir: str | os.PathLike[str],
    capture_kwargs: Mapping[str, Any],
    *,
    every_n_steps: int | None = None,
    at_end: bool = True,
    dtype: str = "int8",
) -> Any:
    """A ``transformers.TrainerCallback`` that captures the gradients of
    ``batches()`` into ``store_dir/step-XXXXXXXX`` every ``every_n_steps``
    optimizer steps and/or at the end of training (LESS-style checkpoints).
    ``capture_kwargs`` are passed to :class:`GradientCapture` with the
    trainer's model."""
    from transformers import TrainerCallback

    class AttributionCallback(TrainerCallback):
        def __init__(self) -> None:
            self.stores: list[GradientStore] = []

        def _run(self, model: torch.nn.Module, step: int) -> None:
            was_training = model.training
            model.eval()
            cap = GradientCapture(model, **dict(capture_kwargs))
            path = os.path.join(os.fspath(store_dir), f"step-{step:08d}")
            self.stores.append(capture_to_store(cap, loss_fn, batches(), path, dtype=dtype))
            model.train(was_training)

        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            if every_n_steps and model is not None and state.global_step % every_n_steps == 0:
                self._run(model, state.global_step)

        def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            done = {s.path.name for s in self.stores}
            if at_end and model is not None and f"step-{state.global_step:08d}" not in done:
                self._run(model, state.global_step)

    return AttributionCallback()
