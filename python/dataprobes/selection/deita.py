"""DEITA: score first, then diversity (Liu et al., "What Makes Good Data for
Alignment?", ICLR 2024).

Every example gets a score (DEITA: Σ over turns of complexity × quality, each an
expected rating ``Σ_{i=1..6} i · softmax(logits of "1".."6")`` from a scorer
model); examples are visited by score, highest first, and kept only if their
embedding's cosine to every example already kept is at most ``threshold``,
until ``budget`` are kept. docs/math.md, "Data selection" > "DEITA diversity
filter", gives the rule, its numerics and how it differs from the reference
code's batched loop.

- :func:`diversity_filter` — the greedy filter, exact, in blocks (numpy/BLAS on
  the CPU, PyTorch on a GPU). Any score can feed it (LESS, a probe's exact
  complexity, ...).
- :func:`expected_score`, :func:`complexity_prompt`, :func:`quality_prompt`,
  :func:`combined_score` — the scorers.
- :func:`last_token_embeddings`, :func:`mean_pool_embeddings` — sentence
  embeddings from a causal LM (``transformers`` or :class:`dataprobes.lm.TinyGPT`).
- :func:`deita_select` — the three composed.

The filter needs only numpy (PyTorch for ``device=`` other than the CPU or for
tensor input on a GPU); the scorers and embedders need PyTorch.
"""

from __future__ import annotations

import numbers
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from .._validation import check_choice, check_float_in, check_int, check_positive_int, real_array

__all__ = [
    "COMPLEXITY_TEMPLATE",
    "QUALITY_TEMPLATE",
    "DeitaSelection",
    "combined_score",
    "complexity_prompt",
    "deita_select",
    "digit_token_ids",
    "diversity_filter",
    "expected_score",
    "last_token_embeddings",
    "mean_pool_embeddings",
    "quality_prompt",
]

#: Pairs whose float32 cosine lies within this distance of the threshold are
#: decided by their float64 cosine (docs/math.md, "DEITA diversity filter").
BORDER_MARGIN = 1e-4

# ---------------------------------------------------------------------------
# argument checks


def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _check_embeddings(embeddings: Any) -> Any:
    """A 2-D real floating array (numpy) or tensor with at least one row and column."""
    if _is_tensor(embeddings):
        t = embeddings.detach()
        if not t.is_floating_point():
            raise TypeError(f"embeddings must be a floating-point tensor, got dtype {t.dtype}")
        if t.dim() != 2 or t.shape[0] == 0 or t.shape[1] == 0:
            raise ValueError(f"embeddings must be 2-D [num_examples, dim] and non-empty, got shape {tuple(t.shape)}")
        return t.contiguous()
    try:
        arr = np.asarray(embeddings)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"embeddings must be a rectangular array: {exc}") from None
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"embeddings must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"embeddings must be 2-D [num_examples, dim] and non-empty, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating) or arr.dtype == np.float16 or not arr.dtype.isnative:
        arr = arr.astype(np.float64)
    return np.ascontiguousarray(arr)


def _check_scores(scores: Any, n: int) -> np.ndarray:
    if _is_tensor(scores):
        scores = scores.detach().cpu().double().numpy()
    arr = real_array("scores", scores)
    if arr.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"scores has {arr.shape[0]} entries but embeddings has {n} rows; they must match")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"scores must be finite, got {arr[i]} at index {i}")
    return arr


def _check_budget(budget: Any) -> int | None:
    return None if budget is None else check_positive_int("budget", budget)


# ---------------------------------------------------------------------------
# normalised rows: the one definition every path (and the tests) shares


def _careful_norm(row: np.ndarray, index: int) -> float:
    """The float64 norm of one row whose plain sum of squares overflowed,
    underflowed or was not finite: rescaled by its largest entry; a
    non-finite or zero row raises ``ValueError`` naming it."""
    row = np.asarray(row, dtype=np.float64)
    if not np.isfinite(row).all():
        raise ValueError(f"embeddings must be finite: row {index} contains NaN or infinity")
    peak = float(np.max(np.abs(row)))
    if peak == 0.0:
        raise ValueError(
            f"embeddings row {index} is a zero vector: its cosine to any row is undefined; "
            "drop it or give it a non-zero embedding"
        )
    return peak * float(np.sqrt(np.sum((row / peak) ** 2)))


def _odd(ssq: np.ndarray) -> np.ndarray:
    return np.flatnonzero(~np.isfinite(ssq) | (ssq < np.finfo(np.float64).tiny))


def _screen_rows(emb: np.ndarray, chunk: int = 1024) -> None:
    """Refuse a zero or non-finite row anywhere in ``emb`` (one cheap pass in
    the array's own precision; suspicious rows are checked exactly)."""
    for lo in range(0, emb.shape[0], chunk):
        x = emb[lo : lo + chunk]
        for j in _odd(np.einsum("ij,ij->i", x, x).astype(np.float64)):
            _careful_norm(x[j], lo + int(j))


def _norms64(rows: np.ndarray, index: np.ndarray) -> np.ndarray:
    """float64 norms of ``rows`` (original indices ``index``): each row's sum
    of squares in float64, the same whichever rows come with it."""
    ssq = np.einsum("ij,ij->i", rows, rows, dtype=np.float64, casting="unsafe")
    out = np.sqrt(ssq)
    for j in _odd(ssq):
        out[j] = _careful_norm(rows[j], int(index[j]))
    return out


def _row_norms_torch(emb: Any, chunk: int = 1024) -> np.ndarray:
    """float64 norms of every row of a tensor, once, in fixed chunks (so on a
    GPU too a row's norm never depends on the block it is later read in)."""
    n = emb.shape[0]
    out = np.empty(n, dtype=np.float64)
    for lo in range(0, n, chunk):
        x = emb[lo : lo + chunk].double()
        ssq = (x * x).sum(1).cpu().numpy()
        out[lo : lo + chunk] = np.sqrt(ssq)
        for j in _odd(ssq):
            out[lo + j] = _careful_norm(x[j].cpu().numpy(), lo + int(j))
    return out


def _normalised(emb: Any, norms: np.ndarray | None, idx: np.ndarray, backend: _Backend) -> Any:
    """Rows ``idx`` of ``emb`` divided by their float64 norms, rounded to
    float32: a row's bits never depend on which other rows come with it."""
    if norms is not None:
        torch = backend.torch if backend.torch is not None else sys.modules["torch"]
        src = emb if _is_tensor(emb) else torch.from_numpy(emb)
        ti = torch.from_numpy(idx).to(src.device)
        rows = src.index_select(0, ti).to(backend.device, dtype=torch.float64)
        nr = torch.from_numpy(norms[idx]).to(backend.device)
        return (rows / nr[:, None]).to(torch.float32)
    rows = emb[idx]
    return (rows.astype(np.float64) / _norms64(rows, idx)[:, None]).astype(np.float32)


def _cos64(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise float64 cosines of float32 unit rows ``a[i]``, ``b[i]``: the
    products are exact in float64 and numpy sums each row the same way
    wherever it comes from, so a pair gets the same value on every path."""
    return np.sum(a.astype(np.float64) * b.astype(np.float64), axis=1)


# ---------------------------------------------------------------------------
# backends: numpy (CPU BLAS) or torch (any device)


class _Backend:
    def __init__(self, device: Any) -> None:
        self.torch: Any = None
        self.device = device
        if device is not None:
            import torch

            self.torch = torch

    def empty(self, rows: int, dim: int) -> Any:
        if self.torch is None:
            return np.empty((rows, dim), dtype=np.float32)
        return self.torch.empty((rows, dim), dtype=self.torch.float32, device=self.device)

    def grow(self, k: Any, used: int, rows: int) -> Any:
        new = self.empty(rows, k.shape[1])
        new[:used] = k[:used]
        return new

    def matmul_t(self, a: Any, b: Any) -> Any:
        return a @ b.T

    def numpy(self, x: Any) -> np.ndarray:
        return x if self.torch is None else x.cpu().numpy()

    def take(self, x: Any, idx: np.ndarray) -> Any:
        if self.torch is None:
            return x[idx]
        return x.index_select(0, self.torch.from_numpy(idx).to(self.device))


def _similar(s: Any, thr: float, backend: _Backend, rows_a: Any, rows_b: Any) -> np.ndarray:
    """Boolean ``cos > thr`` for the float32 cosine matrix ``s = rows_a @ rows_bᵀ``:
    decided by ``s`` where it is farther than :data:`BORDER_MARGIN` from ``thr``,
    by the float64 cosine of the same float32 rows (clipped to [-1, 1], so
    ``thr = 1`` keeps exact duplicates) otherwise."""
    hi = s > thr + BORDER_MARGIN
    border = (s >= thr - BORDER_MARGIN) & ~hi
    out = backend.numpy(hi).copy()
    if bool(border.any()):
        bi = backend.numpy(border.nonzero()[0] if backend.torch is None else border.nonzero()[:, 0])
        bj = backend.numpy(border.nonzero()[1] if backend.torch is None else border.nonzero()[:, 1])
        a = backend.numpy(backend.take(rows_a, np.asarray(bi, dtype=np.int64)))
        b = backend.numpy(backend.take(rows_b, np.asarray(bj, dtype=np.int64)))
        out[bi, bj] = np.clip(_cos64(a, b), -1.0, 1.0) > thr  # rounding can lift |cos| past 1
    return np.asarray(out, dtype=bool)


class _NoTf32:
    """Full float32 matmuls on CUDA while the filter runs (TF32's 10-bit
    mantissa would put errors of ~1e-3 into the cosines)."""

    def __init__(self, backend: _Backend) -> None:
        self.torch = backend.torch
        self.saved: bool | None = None

    def __enter__(self) -> None:
        if self.torch is not None and self.torch.cuda.is_available():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.saved = bool(self.torch.backends.cuda.matmul.allow_tf32)
                self.torch.backends.cuda.matmul.allow_tf32 = False

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.torch.backends.cuda.matmul.allow_tf32 = self.saved


def _resolve_device(device: Any, emb: Any) -> Any:
    """``None`` for the numpy path, else a ``torch.device``."""
    if device is None:
        if _is_tensor(emb) and emb.device.type != "cpu":
            return emb.device
        return None
    if isinstance(device, str) and device == "cpu":
        return None
    import torch

    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be None, a string or a torch.device, got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"device: {exc}") from None
    if dev.type == "cpu":
        return None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for but CUDA is not available")
    return dev


# ---------------------------------------------------------------------------
# the filter


def diversity_filter(
    embeddings: Any,
    scores: Any,
    budget: int | None,
    threshold: float = 0.9,
    *,
    device: Any = None,
    block_size: int = 1024,
    progress: bool = True,
) -> np.ndarray:
    """Greedy score-first diversity filter (DEITA, Liu et al. 2024).

    Visit the examples by ``scores`` descending (ties: lower index first); keep
    the first; keep each next one iff ``max_k cos(e_i, e_k) <= threshold`` over
    the examples ``k`` already kept; stop when ``budget`` are kept (``None``:
    no limit). This is the reference's ``batch_size=1`` rule; its batched loop
    also rejects against rejected in-batch candidates, which this never does.

    Cosines are taken between rows L2-normalised in float64 and rounded to
    float32; a pair is decided by its float32 cosine unless that lies within
    ``BORDER_MARGIN = 1e-4`` of ``threshold``, then by the float64 cosine of
    the same rows (the float64 cosine of the float32-rounded unit rows, which
    can differ from the exact cosine by ~1e-7). Any block size, device or
    thread count gives the same indices: those of the greedy rule on these
    decided cosines.

    Candidates are processed ``block_size`` at a time: one matrix product of
    the block against the kept set, then the block's survivors are resolved in
    order against the block's own accepted rows only.

    Args:
        embeddings: ``[N, d]`` real array or tensor (a tensor on a GPU is
            filtered there). A zero or non-finite row raises ``ValueError``.
        scores: ``[N]`` finite scores (higher is better).
        budget: how many to keep, >= 1, or ``None`` for all that pass.
        threshold: cosine bound in [-1, 1] (DEITA: 0.9).
        device: ``None`` (the embeddings' device; numpy runs on the CPU),
            ``"cpu"``, ``"cuda"`` or a ``torch.device``.
        block_size: candidates per block (speed only, never the result).
        progress: show a tqdm bar of kept examples.

    Returns:
        int64 indices of the kept examples, in selection order (score descending).
    """
    thr = check_float_in("threshold", threshold, -1.0, 1.0)
    cap = _check_budget(budget)
    block = check_positive_int("block_size", block_size)
    emb = _check_embeddings(embeddings)
    n, dim = int(emb.shape[0]), int(emb.shape[1])
    s = _check_scores(scores, n)
    dev = _resolve_device(device, emb)
    backend = _Backend(dev)
    if _is_tensor(emb) and dev is None:  # CPU tensors: the numpy path (zero-copy for float32/64)
        emb = emb.cpu()
        emb = (emb if str(emb.dtype) in ("torch.float32", "torch.float64") else emb.float()).numpy()
    norms: np.ndarray | None = None
    if backend.torch is None:
        _screen_rows(emb)  # norms are computed per block, for the rows scanned
    else:
        norms = _row_norms_torch(emb if _is_tensor(emb) else backend.torch.from_numpy(emb))
    order = np.argsort(-s, kind="stable")
    target = n if cap is None else min(cap, n)

    kept: list[int] = []
    k_rows = backend.empty(min(target, 1024), dim)
    pos = 0
    with _NoTf32(backend), tqdm(total=target, desc="diversity filter", disable=not progress) as bar:
        while pos < n and len(kept) < target:
            m = len(kept)
            # blocks grow with the kept set (the in-block Gram costs b/m of the
            # cross product) and shrink near the budget (less overshoot)
            b = min(block, n - pos, max(256, m // 2), max(64, 2 * (target - m)))
            idx = order[pos : pos + b]
            pos += b
            c = _normalised(emb, norms, idx, backend)
            alive: np.ndarray = np.ones(b, dtype=bool)
            if m:
                ks = k_rows[:m]
                alive = np.asarray(~_similar(backend.matmul_t(c, ks), thr, backend, c, ks).any(axis=1))
            a = np.flatnonzero(alive)
            if a.size == 0:
                continue
            ca = backend.take(c, a) if a.size < b else c
            sim = _similar(backend.matmul_t(ca, ca), thr, backend, ca, ca)
            ok = np.ones(a.size, dtype=bool)
            acc: list[int] = []
            for r in range(a.size):
                if not ok[r]:
                    continue
                acc.append(r)
                if m + len(acc) == target:
                    break
                ok[r + 1 :] &= ~sim[r, r + 1 :]
            if m + len(acc) > k_rows.shape[0]:
                k_rows = backend.grow(k_rows, m, min(target, max(2 * k_rows.shape[0], m + len(acc))))
            k_rows[m : m + len(acc)] = backend.take(ca, np.asarray(acc, dtype=np.int64))
            kept.extend(int(v) for v in idx[a[acc]])
            bar.update(len(acc))
    return np.asarray(kept, dtype=np.int64)


# ---------------------------------------------------------------------------
# scorers

#: The reference's complexity prompt (``{instruction}``; note the two spaces and the trailing space).
COMPLEXITY_TEMPLATE = (
    "You are a helpful assistant. Please identify the complexity score of the following user query. \n"
    "##Query: {instruction}  \n##Complexity: "
)
#: The reference's quality prompt (``{instruction}``, ``{output}``).
QUALITY_TEMPLATE = (
    "You are a helpful assistant. Please identify the quality score of the Response corresponding to the "
    "Question. \n #Question#:\n{instruction}\n#Response#:\n{output} \n##Quality: "
)


def _check_text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    return value


def complexity_prompt(instruction: str) -> str:
    """DEITA's complexity-scorer prompt for one instruction."""
    return COMPLEXITY_TEMPLATE.format(instruction=_check_text("instruction", instruction))


def quality_prompt(instruction: str, response: str) -> str:
    """DEITA's quality-scorer prompt for one (instruction, response) pair."""
    return QUALITY_TEMPLATE.format(
        instruction=_check_text("instruction", instruction), output=_check_text("response", response)
    )


def _check_texts(name: str, value: Any) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a sequence of strings, got {type(value).__name__}")
    out = list(value)
    for i, v in enumerate(out):
        if not isinstance(v, str):
            raise TypeError(f"{name}[{i}] must be a string, got {type(v).__name__}")
    if not out:
        raise ValueError(f"{name} must not be empty")
    return out


def digit_token_ids(tokenizer: Any) -> list[int]:
    """The token ids of ``"1"`` … ``"6"`` in ``tokenizer``'s vocabulary (each
    digit must be one token: looked up in the vocabulary, else encoded alone).
    The reference hard-codes them per model family (Llama 29896…, Mistral
    28740…); looking them up makes any tokenizer work or fail loudly."""
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    unk = getattr(tokenizer, "unk_token_id", None)
    ids = []
    for d in "123456":
        tid = vocab.get(d)
        if tid is None:
            enc = list(tokenizer.encode(d, add_special_tokens=False))
            if len(enc) != 1 or (unk is not None and enc[0] == unk):
                raise ValueError(
                    f"tokenizer has no single token for the digit {d!r} (it encodes as {list(enc)}); "
                    "pass digit_ids= explicitly"
                )
            tid = enc[0]
        ids.append(int(tid))
    if len(set(ids)) != 6:
        raise ValueError(f"tokenizer maps the digits 1..6 to non-distinct ids {ids}")
    return ids


def _model_kind(model: Any) -> str:
    from ..lm.model import TinyGPT

    if isinstance(model, TinyGPT):
        return "tinygpt"
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a transformers causal LM or a dataprobes TinyGPT, got {type(model).__name__}")
    return "hf"


def _context_length(model: Any, kind: str) -> int | None:
    if kind == "tinygpt":
        return int(model.config.max_len)
    cfg = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions"):
        v = getattr(cfg, key, None)
        if isinstance(v, numbers.Integral) and int(v) > 0:
            return int(v)
    return None


def _encode(tokenizer: Any, texts: list[str]) -> list[np.ndarray]:
    enc = tokenizer(texts, add_special_tokens=True)
    ids = enc["input_ids"] if isinstance(enc, dict) or hasattr(enc, "keys") else enc
    return [np.asarray(r, dtype=np.int64) for r in ids]


def _runs(input_ids: Any, attention_mask: Any) -> list[np.ndarray]:
    """Each row's tokens from a padded ``[N, T]`` batch: the mask (default all
    ones) must be one contiguous run of ones per row (left, right or no padding)."""
    ids = input_ids.detach().cpu().numpy() if _is_tensor(input_ids) else np.asarray(input_ids)
    if ids.dtype == np.bool_ or not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"inputs must be strings or an integer array of token ids, got dtype {ids.dtype}")
    if ids.ndim != 2:
        raise ValueError(f"inputs must be [num_examples, length], got shape {ids.shape}")
    if attention_mask is None:
        mask = np.ones(ids.shape, dtype=bool)
    else:
        mask = attention_mask.detach().cpu().numpy() if _is_tensor(attention_mask) else np.asarray(attention_mask)
        if mask.shape != ids.shape:
            raise ValueError(f"attention_mask has shape {mask.shape} but inputs has shape {ids.shape}")
        if not (mask.dtype == np.bool_ or np.issubdtype(mask.dtype, np.integer)) or not np.isin(mask, (0, 1)).all():
            raise ValueError("attention_mask must hold only 0 and 1")
        mask = mask.astype(bool)
    out = []
    for i in range(ids.shape[0]):
        on = np.flatnonzero(mask[i])
        if on.size == 0:
            raise ValueError(f"attention_mask row {i} has no tokens")
        if on[-1] - on[0] + 1 != on.size:
            raise ValueError(f"attention_mask row {i} is not one contiguous run of ones (left or right padding)")
        out.append(ids[i, on[0] : on[-1] + 1].astype(np.int64))
    return out


def _forward_batches(
    model: Any,
    rows: list[np.ndarray],
    batch_size: int,
    need: str,
    progress: bool,
    desc: str,
    reduce: Callable[[Any, Any, Any], Any],
) -> list[Any]:
    """Run ``model`` on ``rows`` (variable-length id arrays) in length-sorted,
    right-padded batches; ``reduce(out, lengths, mask)`` maps the batch's final
    hidden states or logits (``need``) to one result per row, returned in input
    order."""
    import torch

    kind = _model_kind(model)
    dev = next(model.parameters()).device
    order = np.argsort([len(r) for r in rows], kind="stable")
    results: list[Any] = [None] * len(rows)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), tqdm(total=len(rows), desc=desc, disable=not progress) as bar:
            for lo in range(0, len(rows), batch_size):
                sel = order[lo : lo + batch_size]
                lens = torch.tensor([len(rows[i]) for i in sel])
                t = int(lens.max())
                ids = torch.zeros((len(sel), t), dtype=torch.long)
                for r, i in enumerate(sel):
                    ids[r, : len(rows[i])] = torch.from_numpy(rows[i])
                mask = (torch.arange(t)[None, :] < lens[:, None]).long()
                ids, mask = ids.to(dev), mask.to(dev)
                if kind == "tinygpt":
                    out = model.hidden(ids) if need == "hidden" else model(ids)
                else:
                    res = model(input_ids=ids, attention_mask=mask, output_hidden_states=need == "hidden")
                    out = res.hidden_states[-1] if need == "hidden" else res.logits
                vals = reduce(out, lens.to(dev), mask)
                for r, i in enumerate(sel):
                    results[i] = vals[r]
                bar.update(len(sel))
    finally:
        model.train(was_training)
    return results


def expected_score(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    batch_size: int = 8,
    max_length: int | None = None,
    digit_ids: Sequence[int] | None = None,
    errors: str = "raise",
    progress: bool = True,
) -> np.ndarray:
    """DEITA's expected rating of each prompt: ``Σ_{i=1..6} i · p_i`` with
    ``p = softmax`` of the model's next-token logits of the tokens ``"1"`` …
    ``"6"`` after the prompt (the full prompt, special tokens as the
    tokenizer adds them; batched, right-padded, length-sorted).

    The reference reads the first generated step's (processed) scores one
    prompt at a time and returns 3.0 whenever anything fails, which rated
    whole corpora 3 when the hard-coded digit ids did not fit the model
    (deita issue #36). Here the digit ids come from the tokenizer
    (:func:`digit_token_ids`, or ``digit_ids``), and a prompt that cannot be
    scored (no tokens, longer than ``max_length`` — default the model's
    context —, or non-finite digit logits) raises ``ValueError`` naming it
    (``errors="raise"``) or gets NaN with a warning (``errors="nan"``).

    Returns:
        float64 ``[len(prompts)]`` scores in [1, 6].
    """
    texts = _check_texts("prompts", prompts)
    bs = check_positive_int("batch_size", batch_size)
    mode = check_choice("errors", errors, ("raise", "nan"))
    kind = _model_kind(model)
    limit = _context_length(model, kind) if max_length is None else check_positive_int("max_length", max_length)
    if digit_ids is None:
        ids6 = digit_token_ids(tokenizer)
    else:
        if isinstance(digit_ids, (str, bytes)) or not isinstance(digit_ids, Sequence):
            raise TypeError(f"digit_ids must be a sequence of 6 token ids, got {type(digit_ids).__name__}")
        ids6 = [check_int(f"digit_ids[{i}]", v) for i, v in enumerate(digit_ids)]
        if len(ids6) != 6 or len(set(ids6)) != 6:
            raise ValueError(f"digit_ids must be 6 distinct token ids (for '1'..'6'), got {list(digit_ids)}")
    vocab = _vocab_size(model, kind)
    if vocab is not None and max(ids6) >= vocab:
        raise ValueError(f"digit token id {max(ids6)} is outside the model's vocabulary of {vocab}")
    rows = _encode(tokenizer, texts)
    failed: dict[int, str] = {}
    for i, r in enumerate(rows):
        if r.size == 0:
            failed[i] = "the prompt has no tokens"
        elif limit is not None and r.size > limit:
            failed[i] = f"{r.size} tokens exceed max_length {limit}"
    good = [i for i in range(len(rows)) if i not in failed]
    out = np.full(len(rows), np.nan)
    if good:
        import torch

        digits = torch.tensor(ids6)

        def reduce(logits: Any, lens: Any, mask: Any) -> Any:
            last = logits[torch.arange(logits.shape[0], device=logits.device), lens - 1]
            return last[:, digits.to(last.device)].double().cpu().numpy()

        six = np.stack(_forward_batches(model, [rows[i] for i in good], bs, "logits", progress, "scoring", reduce))
        finite = np.isfinite(six).all(axis=1)
        z = np.where(finite[:, None], six, 0.0)
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        vals = p @ np.arange(1.0, 7.0)
        for j, i in enumerate(good):
            if finite[j]:
                out[i] = vals[j]
            else:
                failed[i] = "non-finite digit logits"
    if failed:
        first = sorted(failed)[:10]
        msg = "; ".join(f"prompts[{i}]: {failed[i]}" for i in first)
        more = f" (and {len(failed) - 10} more)" if len(failed) > 10 else ""
        if mode == "raise":
            raise ValueError(f"{len(failed)} prompt(s) cannot be scored: {msg}{more}")
        warnings.warn(f"{len(failed)} prompt(s) cannot be scored and get NaN: {msg}{more}", stacklevel=2)
    return out


def _vocab_size(model: Any, kind: str) -> int | None:
    if kind == "tinygpt":
        return int(model.config.vocab_size)
    v = getattr(getattr(model, "config", None), "vocab_size", None)
    return int(v) if isinstance(v, numbers.Integral) else None


def combined_score(complexity: Sequence[Any], quality: Sequence[Any]) -> np.ndarray:
    """DEITA's score of each example: ``Σ_turns complexity_t · quality_t``.

    ``complexity[i]`` and ``quality[i]`` are the per-turn scores of example
    ``i`` (a number for a single turn, or a sequence); they must have the same
    number of turns and be finite.
    """
    if isinstance(complexity, (str, bytes)) or not isinstance(complexity, Sequence | np.ndarray):
        raise TypeError(f"complexity must be a sequence, got {type(complexity).__name__}")
    if isinstance(quality, (str, bytes)) or not isinstance(quality, Sequence | np.ndarray):
        raise TypeError(f"quality must be a sequence, got {type(quality).__name__}")
    if len(complexity) != len(quality):
        raise ValueError(f"complexity has {len(complexity)} examples but quality has {len(quality)}; they must match")
    out = np.empty(len(complexity))
    for i, (c, q) in enumerate(zip(complexity, quality, strict=True)):
        ca = np.atleast_1d(np.asarray(c, dtype=np.float64))
        qa = np.atleast_1d(np.asarray(q, dtype=np.float64))
        if ca.ndim != 1 or ca.shape != qa.shape:
            raise ValueError(f"example {i}: complexity has {ca.size} turns but quality has {qa.size}")
        if not (np.isfinite(ca).all() and np.isfinite(qa).all()):
            raise ValueError(f"example {i}: complexity and quality must be finite")
        out[i] = float(np.dot(ca, qa))
    return out


# ---------------------------------------------------------------------------
# embeddings


def _rows_from_inputs(inputs: Any, attention_mask: Any, tokenizer: Any, limit: int | None) -> list[np.ndarray]:
    if hasattr(inputs, "__len__") and not isinstance(inputs, (str, bytes)) and len(inputs) == 0:
        raise ValueError("inputs must not be empty")
    if isinstance(inputs, Sequence) and not isinstance(inputs, (str, bytes)) and inputs and isinstance(inputs[0], str):
        if tokenizer is None:
            raise TypeError("tokenizer is required when inputs are strings")
        if attention_mask is not None:
            raise ValueError("attention_mask applies to token-id inputs, not to strings")
        rows = _encode(tokenizer, _check_texts("inputs", inputs))
    else:
        if isinstance(inputs, (str, bytes)):
            raise TypeError("inputs must be a sequence of strings or an integer array of token ids, got a string")
        rows = _runs(inputs, attention_mask)
    for i, r in enumerate(rows):
        if r.size == 0:
            raise ValueError(f"inputs[{i}] has no tokens")
    if limit is not None:  # the reference truncates at max_length (keeps the first tokens)
        rows = [r[:limit] for r in rows]
    return rows


def _embed(
    model: Any,
    inputs: Any,
    attention_mask: Any,
    tokenizer: Any,
    batch_size: int,
    max_length: int | None,
    progress: bool,
    pooling: str,
) -> np.ndarray:
    import torch

    bs = check_positive_int("batch_size", batch_size)
    kind = _model_kind(model)
    limit = _context_length(model, kind) if max_length is None else check_positive_int("max_length", max_length)
    rows = _rows_from_inputs(inputs, attention_mask, tokenizer, limit)

    def reduce(h: Any, lens: Any, mask: Any) -> Any:
        h = h.float()
        if pooling == "last":
            v = h[torch.arange(h.shape[0], device=h.device), lens - 1]
        else:
            m = mask.to(h.dtype)[:, :, None]
            v = (h * m).sum(1) / lens.to(h.dtype)[:, None]
        return v.cpu().numpy()

    return np.stack(_forward_batches(model, rows, bs, "hidden", progress, "embedding", reduce)).astype(np.float32)


def last_token_embeddings(
    model: Any,
    inputs: Any,
    attention_mask: Any = None,
    *,
    tokenizer: Any = None,
    batch_size: int = 16,
    max_length: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Final hidden state (after the final norm) at each example's last token,
    as DEITA embeds with a causal LM.

    ``inputs``: strings (with ``tokenizer``) or an integer ``[N, T]`` array /
    tensor of token ids with ``attention_mask`` (left, right or no padding; each
    row's mask one run of ones). ``model``: a ``transformers`` causal LM or a
    :class:`dataprobes.lm.TinyGPT`. Sequences are truncated to ``max_length``
    (default the model's context), keeping their first tokens. Returns float32
    ``[N, hidden]``; the same for any padding side or batch size up to float
    rounding.
    """
    return _embed(model, inputs, attention_mask, tokenizer, batch_size, max_length, progress, "last")


def mean_pool_embeddings(
    model: Any,
    inputs: Any,
    attention_mask: Any = None,
    *,
    tokenizer: Any = None,
    batch_size: int = 16,
    max_length: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Mean of the final hidden states over each example's tokens (arguments
    as :func:`last_token_embeddings`)."""
    return _embed(model, inputs, attention_mask, tokenizer, batch_size, max_length, progress, "mean")


# ---------------------------------------------------------------------------
# the pipeline


@dataclass(frozen=True)
class DeitaSelection:
    """What :func:`deita_select` chose: ``indices`` (selection order),
    every example's ``scores``, and the per-turn ``complexity`` / ``quality``
    when they were computed here (else ``None``)."""

    indices: np.ndarray
    scores: np.ndarray
    complexity: list[np.ndarray] | None = None
    quality: list[np.ndarray] | None = None


def _check_pair(name: str, value: Any) -> tuple[Any, Any]:
    if not (isinstance(value, tuple) and len(value) == 2):
        raise TypeError(f"{name} must be a (model, tokenizer) pair, got {type(value).__name__}")
    return value


def _check_conversations(conversations: Any) -> list[list[tuple[str, str]]]:
    if isinstance(conversations, (str, bytes)) or not isinstance(conversations, Sequence):
        raise TypeError(f"conversations must be a sequence, got {type(conversations).__name__}")
    out = []
    for i, conv in enumerate(conversations):
        if isinstance(conv, (str, bytes)) or not isinstance(conv, Sequence) or not conv:
            raise TypeError(f"conversations[{i}] must be a non-empty list of (instruction, response) pairs")
        turns = []
        for j, turn in enumerate(conv):
            if not (isinstance(turn, Sequence) and len(turn) == 2 and all(isinstance(t, str) for t in turn)):
                raise TypeError(f"conversations[{i}][{j}] must be an (instruction, response) pair of strings")
            turns.append((turn[0], turn[1]))
        out.append(turns)
    if not out:
        raise ValueError("conversations must not be empty")
    return out


def conversation_text(conversation: Sequence[tuple[str, str]]) -> str:
    """The text embedded for a conversation: each turn's instruction and
    response on two lines, turns separated by a blank line (the reference
    uses a chat template instead)."""
    return "\n\n".join(f"{q}\n{a}" for q, a in conversation)


def deita_select(
    budget: int | None,
    *,
    conversations: Sequence[Sequence[tuple[str, str]]] | None = None,
    scores: Any = None,
    embeddings: Any = None,
    complexity_scorer: tuple[Any, Any] | None = None,
    quality_scorer: tuple[Any, Any] | None = None,
    embedder: tuple[Any, Any] | None = None,
    pooling: str = "last",
    threshold: float = 0.9,
    batch_size: int = 8,
    device: Any = None,
    progress: bool = True,
) -> DeitaSelection:
    """DEITA end to end: score, embed, filter.

    ``scores`` (any per-example score) or both scorers (``(model, tokenizer)``
    pairs rating every turn of ``conversations`` with :func:`expected_score`,
    combined by :func:`combined_score`); ``embeddings`` or ``embedder``
    (``(model, tokenizer)``, pooling ``"last"`` as DEITA or ``"mean"``) applied
    to :func:`conversation_text` of each conversation; then
    :func:`diversity_filter` with ``budget``, ``threshold`` and ``device``.
    """
    check_choice("pooling", pooling, ("last", "mean"))
    convs = None if conversations is None else _check_conversations(conversations)
    comp: list[np.ndarray] | None = None
    qual: list[np.ndarray] | None = None
    if scores is None:
        if convs is None or complexity_scorer is None or quality_scorer is None:
            raise ValueError("give scores=, or conversations= with complexity_scorer= and quality_scorer=")
        cm, ct = _check_pair("complexity_scorer", complexity_scorer)
        qm, qt = _check_pair("quality_scorer", quality_scorer)
        flat = [t for conv in convs for t in conv]
        cflat = expected_score(
            cm, ct, [complexity_prompt(q) for q, _ in flat], batch_size=batch_size, progress=progress
        )
        qflat = expected_score(
            qm, qt, [quality_prompt(q, a) for q, a in flat], batch_size=batch_size, progress=progress
        )
        bounds = np.cumsum([0] + [len(c) for c in convs])
        comp = [cflat[bounds[i] : bounds[i + 1]] for i in range(len(convs))]
        qual = [qflat[bounds[i] : bounds[i + 1]] for i in range(len(convs))]
        scores = combined_score(comp, qual)
    if embeddings is None:
        if convs is None or embedder is None:
            raise ValueError("give embeddings=, or conversations= with embedder=")
        em, et = _check_pair("embedder", embedder)
        fn = last_token_embeddings if pooling == "last" else mean_pool_embeddings
        embeddings = fn(
            em, [conversation_text(c) for c in convs], tokenizer=et, batch_size=batch_size, progress=progress
        )
    idx = diversity_filter(embeddings, scores, budget, threshold, device=device, progress=progress)
    s = _check_scores(scores, len(scores))  # validated by the filter already: only converted here
    return DeitaSelection(indices=idx, scores=s, complexity=comp, quality=qual)
