"""Batches for the Task2Vec coefficients: every batch a fresh draw.

:func:`batch_stream` yields ``num_batches`` batches ``(ids [B, T], mask or
None, pad id or None)`` from any of the data-set kinds the coefficients
accept (docs/math.md, "Task2Vec"):

- an int token array ``[N, T]`` (numpy or torch) or a map-style data set
  (a torch ``Dataset``, a Hugging Face ``datasets.Dataset``): passes over a
  permutation of the rows (pass ``k`` permuted by the stream
  ``(seed, side, k)``); each batch takes the next ``batch_size`` rows of the
  pass, so batches within a pass are disjoint; when fewer than ``batch_size``
  rows remain, they are skipped and a new pass begins;
- a dataprobes ``Process``: batch ``i`` is rows ``i·B .. (i+1)·B`` of the
  sample for a seed derived from ``(seed, side)``;
- a streaming set (Hugging Face ``IterableDataset``, any iterable): shuffled
  once per pass (``shuffle(seed=..., buffer_size=...)`` where it has one, the
  seed derived from ``(seed, side, pass)``) and read by one running iterator,
  so consecutive batches hold consecutive, different rows (the reference
  re-shuffles with the same seed for every batch and so embeds the same
  batch again and again).

``side`` keeps the two data sets of a cross coefficient independent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

Batch = tuple[np.ndarray, "np.ndarray | None", "int | None"]


def _derived(seed: int, *keys: int) -> int:
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _seq(name: str, item: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """One sequence (and its attention mask, if the item carries one) as 1-D int64."""
    mask = None
    if isinstance(item, (str, bytes)):
        raise TypeError(
            f"{name} items are text ({type(item).__name__}): pass token ids, or a Hugging Face data set "
            "with a 'text' column and tokenizer= (and seq_len=)"
        )
    if isinstance(item, dict):
        if "input_ids" not in item:
            raise ValueError(f"{name} items are dicts without an 'input_ids' entry (keys: {sorted(item)[:6]})")
        mask = item.get("attention_mask")
        item = item["input_ids"]
    arr = _as_1d(name, item)
    m = None if mask is None else _as_1d(f"{name} attention_mask", mask)
    if m is not None and m.shape != arr.shape:
        raise ValueError(f"{name}: an attention_mask does not match its input_ids in length")
    return arr, m


def _as_1d(name: str, item: Any) -> np.ndarray:
    try:
        import torch

        if isinstance(item, torch.Tensor):
            item = item.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is needed by the caller anyway
        pass
    try:
        arr = np.asarray(item)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} items must be token sequences: {exc}") from None
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1:
        raise ValueError(f"{name} items must be 1-D token sequences, got shape {arr.shape}")
    if arr.size and (arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} items must hold integer token ids, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _assemble(
    name: str, items: list[Any], seq_len: int | None, pad: int | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Stack sequences into ``[B, L]`` (``L = seq_len`` or the longest), cropping
    longer ones and right-padding shorter ones (with ``pad`` or 0) under a mask."""
    seqs = [_seq(name, it) for it in items]
    length = seq_len if seq_len is not None else max(s.shape[0] for s, _ in seqs)
    if length < 2:
        raise ValueError(f"{name} holds sequences shorter than 2 tokens")
    ids = np.full((len(seqs), length), 0 if pad is None else pad, dtype=np.int64)
    mask = np.zeros((len(seqs), length), dtype=np.int64)
    for i, (s, m) in enumerate(seqs):
        k = min(length, s.shape[0])
        ids[i, :k] = s[:k]
        mask[i, :k] = 1 if m is None else m[:k]
    return ids, (None if mask.all() else mask)


def _is_hf(obj: Any, cls: str) -> bool:
    mod = type(obj).__module__ or ""
    if not mod.startswith("datasets"):
        return False
    import datasets

    return isinstance(obj, getattr(datasets, cls))


def _rows_from_columns(
    name: str, cols: dict[str, Any], tokenizer: Any, seq_len: int | None
) -> tuple[list[Any], int | None]:
    """Items (dicts with ``input_ids``/``attention_mask``) of a Hugging Face
    batch of columns; text is tokenized to ``seq_len`` (padded, truncated)."""
    if "input_ids" in cols:
        ids = list(cols["input_ids"])
        masks = cols.get("attention_mask")
        if masks is None:
            return ids, None
        return [{"input_ids": i, "attention_mask": m} for i, m in zip(ids, masks, strict=True)], None
    if "text" in cols:
        if tokenizer is None:
            raise ValueError(f"{name} has a 'text' column but no 'input_ids': pass tokenizer=")
        if seq_len is None:
            raise ValueError(f"{name} is text: pass seq_len (the padded, truncated length)")
        pad = getattr(tokenizer, "pad_token_id", None)
        if pad is None:
            raise ValueError(
                "the tokenizer has no pad token: set one (e.g. tokenizer.pad_token = tokenizer.eos_token, "
                "as the reference does for GPT-2)"
            )
        enc = tokenizer(list(cols["text"]), padding="max_length", max_length=seq_len, truncation=True)
        items = [
            {"input_ids": i, "attention_mask": m} for i, m in zip(enc["input_ids"], enc["attention_mask"], strict=True)
        ]
        return items, int(pad)
    raise ValueError(f"{name} needs an 'input_ids' column (or 'text' with tokenizer=), has {sorted(cols)[:8]}")


def _permutation_batches(
    n: int, num_batches: int, batch_size: int, seed: int, side: int, name: str
) -> Iterator[np.ndarray]:
    if n == 0:
        raise ValueError(f"{name} is empty")
    if batch_size > n:
        raise ValueError(f"batch_size ({batch_size}) exceeds the number of rows of {name} ({n})")
    k, pos, perm = 0, 0, np.random.default_rng([seed, side, 0]).permutation(n)
    for _ in range(num_batches):
        if pos + batch_size > n:
            k, pos = k + 1, 0
            perm = np.random.default_rng([seed, side, k]).permutation(n)
        yield perm[pos : pos + batch_size]
        pos += batch_size


def batch_stream(
    dataset: Any,
    num_batches: int,
    batch_size: int,
    *,
    seq_len: int | None,
    seed: int,
    side: int,
    tokenizer: Any = None,
    buffer_size: int = 10_000,
    pad_token_id: int | None = None,
    name: str = "dataset",
) -> Iterator[Batch]:
    """``num_batches`` fresh batches of ``dataset`` (module docstring)."""
    from ..processes.base import Process

    if dataset is None or isinstance(dataset, (str, bytes, dict)):
        raise TypeError(
            f"{name} must be a token array, a Process, a torch or Hugging Face data set, got {type(dataset).__name__}"
        )
    if isinstance(dataset, Process):
        if seq_len is None:
            raise ValueError(f"{name} is a Process: pass seq_len (the length of the sampled sequences)")
        s = _derived(seed, side)
        for i in range(num_batches):
            yield (
                np.asarray(dataset.sample(batch_size, seq_len, seed=s, start=i * batch_size), dtype=np.int64),
                None,
                None,
            )
        return
    try:
        import torch

        tensor = isinstance(dataset, torch.Tensor)
    except ImportError:  # pragma: no cover
        tensor = False
    if tensor or isinstance(dataset, np.ndarray):
        arr = dataset.detach().cpu().numpy() if tensor else dataset
        if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{name} must hold integer token ids, got dtype {arr.dtype}")
        if arr.ndim != 2:
            raise ValueError(f"{name} must be 2-D [num_sequences, length], got shape {arr.shape}")
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise ValueError(f"{name} is empty (shape {arr.shape})")
        t = arr.shape[1]
        if seq_len is not None and seq_len > t:
            raise ValueError(f"seq_len ({seq_len}) exceeds the length of {name}'s rows ({t})")
        width = t if seq_len is None else seq_len
        for idx in _permutation_batches(arr.shape[0], num_batches, batch_size, seed, side, name):
            yield np.ascontiguousarray(arr[np.sort(idx), :width], dtype=np.int64), None, None
        return
    if _is_hf(dataset, "Dataset"):
        cols = set(dataset.column_names)
        if not ({"input_ids", "text"} & cols):
            raise ValueError(f"{name} needs an 'input_ids' column (or 'text' with tokenizer=), has {sorted(cols)[:8]}")
        for idx in _permutation_batches(len(dataset), num_batches, batch_size, seed, side, name):
            items, pad = _rows_from_columns(name, dataset[np.sort(idx).tolist()], tokenizer, seq_len)
            ids, mask = _assemble(name, items, seq_len, pad if pad is not None else pad_token_id)
            yield ids, mask, pad
        return
    if hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__") and not _is_hf(dataset, "IterableDataset"):
        n = len(dataset)
        for idx in _permutation_batches(n, num_batches, batch_size, seed, side, name):
            items = [dataset[int(i)] for i in np.sort(idx)]
            if items and isinstance(items[0], dict) and "input_ids" not in items[0] and "text" in items[0]:
                texts = {"text": [it["text"] for it in items]}
                items, pad = _rows_from_columns(name, texts, tokenizer, seq_len)
            else:
                pad = None
            ids, mask = _assemble(name, items, seq_len, pad if pad is not None else pad_token_id)
            yield ids, mask, pad
        return
    if not isinstance(dataset, Iterable):
        raise TypeError(
            f"{name} must be a token array, a Process, a torch or Hugging Face data set, got {type(dataset).__name__}"
        )
    yield from _stream(
        dataset, num_batches, batch_size, seq_len, seed, side, tokenizer, buffer_size, pad_token_id, name
    )


def _stream(
    dataset: Any,
    num_batches: int,
    batch_size: int,
    seq_len: int | None,
    seed: int,
    side: int,
    tokenizer: Any,
    buffer_size: int,
    pad_token_id: int | None,
    name: str,
) -> Iterator[Batch]:
    one_shot = iter(dataset) is dataset  # a generator or iterator: a single pass only

    def new_pass(k: int) -> Iterator[Any]:
        shuffle = getattr(dataset, "shuffle", None)
        if callable(shuffle) and not one_shot:
            return iter(shuffle(seed=_derived(seed, side, k) % 2**32, buffer_size=buffer_size))
        return iter(dataset)

    k = 0
    it = new_pass(k)
    made = this_pass = 0
    while made < num_batches:
        items: list[Any] = []
        for x in it:
            items.append(x)
            if len(items) == batch_size:
                break
        if len(items) < batch_size:
            if one_shot:
                raise ValueError(
                    f"{name} ran out after {made} batches of {batch_size} (an iterator can be read once; "
                    "pass a re-iterable data set or fewer/smaller batches)"
                )
            if this_pass == 0:
                raise ValueError(
                    f"{name} holds fewer than batch_size ({batch_size}) rows" if items else f"{name} is empty"
                )
            k, this_pass = k + 1, 0
            it = new_pass(k)
            continue
        pad = None
        if isinstance(items[0], dict) and "input_ids" not in items[0]:
            cols = {key: [x[key] for x in items] for key in items[0]}
            items, pad = _rows_from_columns(name, cols, tokenizer, seq_len)
        ids, mask = _assemble(name, items, seq_len, pad if pad is not None else pad_token_id)
        yield ids, mask, pad
        made += 1
        this_pass += 1
