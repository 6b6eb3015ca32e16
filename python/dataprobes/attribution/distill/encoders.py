"""The student encoders of an Influcoder and the items they embed.

* :class:`TokenEncoder`: a transformer encoder over token ids, built from a
  config (no tokenizer, no weights to download) — for probe sequences
  ``[N, T]``;
* :class:`TextEncoder`: any Hugging Face encoder (``AutoModel`` + its
  tokenizer) or a sentence-transformers model, for lists of strings.

Both return one unnormalised vector per item by mean pooling over the
item's positions (padding excluded); :class:`~.influcoder.Influcoder`
normalises them so that scores are cosines.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import xxhash
from torch import nn

from ..._validation import check_int

_GOLDEN = 0x9E3779B97F4A7C15 - 2**64  # 2⁶⁴/φ as a signed int64

__all__ = ["TextEncoder", "TokenEncoder", "TokenEncoderConfig", "TokenItems", "TextItems"]


# ----------------------------------------------------------------------------
# Items
# ----------------------------------------------------------------------------


class TokenItems:
    """Token sequences ``[N, T]`` (or a list of 1-D sequences of any lengths,
    right-padded with a mask)."""

    ids: torch.Tensor
    lengths: torch.Tensor

    def __init__(self, name: str, items: Any) -> None:
        if isinstance(items, TokenItems):
            self.ids, self.lengths = items.ids, items.lengths
            return
        if isinstance(items, (str, bytes)) or (
            isinstance(items, (list, tuple)) and items and isinstance(items[0], str)
        ):
            raise TypeError(f"{name}: this encoder takes token arrays [N, T]; strings need a text encoder")
        if items is None or isinstance(items, dict):
            raise TypeError(f"{name} must be a 2-D integer token array [N, T], got {type(items).__name__}")
        if isinstance(items, (list, tuple)) and len(items) == 0:
            raise ValueError(f"{name} is empty")
        if isinstance(items, (list, tuple)) and len({bool(np.isscalar(x)) for x in items}) > 1:
            raise TypeError(f"{name} must be a 2-D token array or a list of 1-D token sequences")
        if isinstance(items, (list, tuple)) and not np.isscalar(items[0]) and len({len(x) for x in items}) > 1:
            seqs = [self._row(name, x) for x in items]
            lengths = np.array([len(s) for s in seqs], dtype=np.int64)
            ids = torch.zeros(len(seqs), int(lengths.max()), dtype=torch.int64)
            for i, s in enumerate(seqs):
                ids[i, : len(s)] = s
            self.ids, self.lengths = ids, torch.from_numpy(lengths)
        else:
            if isinstance(items, torch.Tensor):
                t = items.detach().cpu()
            else:
                a = np.asarray(items)
                if a.dtype.kind not in "iufcb":
                    raise TypeError(f"{name} must hold integer token ids, got {a.dtype} values")
                t = torch.as_tensor(a)
            if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
                raise TypeError(f"{name} must hold integer token ids, got dtype {t.dtype}")
            if t.dim() != 2:
                raise ValueError(f"{name} must be a 2-D token array [N, T], got shape {tuple(t.shape)}")
            self.ids = t.to(torch.int64)
            self.lengths = torch.full((t.shape[0],), t.shape[1], dtype=torch.int64)
        if self.ids.shape[0] == 0:
            raise ValueError(f"{name} is empty")
        if int(self.lengths.min()) == 0:
            raise ValueError(f"{name} holds an empty sequence")
        if int(self.ids.min()) < 0:
            raise ValueError(f"{name} holds negative token ids")

    @staticmethod
    def _row(name: str, x: Any) -> torch.Tensor:
        a = np.asarray(x)
        if a.ndim == 1 and a.shape[0] == 0:
            raise ValueError(f"{name} holds an empty sequence")
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise TypeError(f"{name}: each sequence must be a 1-D integer array")
        return torch.as_tensor(a).to(torch.int64)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def take(self, idx: Any) -> TokenItems:
        out = TokenItems.__new__(TokenItems)
        i = torch.as_tensor(idx, dtype=torch.int64)
        out.ids, out.lengths = self.ids.index_select(0, i), self.lengths.index_select(0, i)
        return out

    def hashes(self) -> np.ndarray:
        """A 64-bit content hash per item (token values and length)."""
        arr = self.ids.numpy()
        return np.array(
            [xxhash.xxh3_64_intdigest(arr[i, : int(n)].tobytes()) for i, n in enumerate(self.lengths.tolist())],
            dtype=np.uint64,
        )


class TextItems:
    """A list of strings."""

    texts: list[str]

    def __init__(self, name: str, items: Any) -> None:
        if isinstance(items, TextItems):
            self.texts = items.texts
            return
        if isinstance(items, str):
            raise TypeError(f"{name} must be a list of strings, not a single string")
        try:
            texts = list(items)
        except TypeError as exc:
            raise TypeError(f"{name} must be a list of strings, got {type(items).__name__}") from exc
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"{name} must be a list of strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
        if not texts:
            raise ValueError(f"{name} is empty")
        empty = [i for i, t in enumerate(texts) if not t]
        if empty:
            raise ValueError(f"{name} holds an empty string (item {empty[0]})")
        self.texts = texts

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, idx: Any) -> TextItems:
        out = TextItems.__new__(TextItems)
        out.texts = [self.texts[int(i)] for i in np.asarray(idx).reshape(-1)]
        return out

    def hashes(self) -> np.ndarray:
        return np.array([xxhash.xxh3_64_intdigest(t.encode()) for t in self.texts], dtype=np.uint64)


def _warn_truncated(count: int, total: int, limit: int, what: str) -> None:
    if count:
        warnings.warn(
            f"{count} of {total} {what} are longer than the encoder's {limit} positions and were truncated",
            UserWarning,
            stacklevel=4,
        )


def _mean_pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(h.dtype).unsqueeze(-1)
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


# ----------------------------------------------------------------------------
# Token encoder
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenEncoderConfig:
    """Shape of a :class:`TokenEncoder`: ``vocab_size`` token ids,
    ``max_len`` positions (anchor prefix included), a pre-norm transformer
    encoder of ``n_layers`` × (``n_heads``-head attention + GELU MLP of width
    ``4·d_model``), mean pooling, and a linear map to ``dim``.

    ``bigram_buckets``: each position also adds an embedding of its
    (previous, current) token pair, hashed into that many rows (fastText's
    n-gram buckets, Joulin et al. 2017): exact rows while ``(V + 1)·V`` fits.
    ``None`` (default) gives every bigram its own row up to 2¹⁶ rows; 0 turns
    it off. The mean of per-position bigram embeddings is a linear map of the
    item's bigram counts, which is what a Markov probe's gradient features
    mostly are (docs/math.md, Attribution: distillation); with it, even
    ``n_layers=0`` (a bag of unigrams and bigrams) is a strong student."""

    vocab_size: int
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    max_len: int = 256
    dim: int = 128
    dropout: float = 0.0
    bigram_buckets: int | None = None

    def __post_init__(self) -> None:
        check_int("vocab_size", self.vocab_size, 1)
        check_int("d_model", self.d_model, 1)
        check_int("n_layers", self.n_layers, 0)
        check_int("n_heads", self.n_heads, 1)
        check_int("max_len", self.max_len, 1)
        check_int("dim", self.dim, 1)
        if self.bigram_buckets is None:
            object.__setattr__(self, "bigram_buckets", min((self.vocab_size + 1) * self.vocab_size, 2**16))
        check_int("bigram_buckets", self.bigram_buckets, 0)
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise TypeError(f"dropout must be a number, got {type(self.dropout).__name__}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TokenEncoder(nn.Module):
    """Transformer encoder over token ids: ``forward(ids [B, T], mask [B, T])
    -> [B, dim]`` (mean-pooled, unnormalised)."""

    def __init__(self, config: TokenEncoderConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.bigram_emb = nn.Embedding(c.bigram_buckets, c.d_model) if c.bigram_buckets else None
        self.pos_emb = nn.Embedding(c.max_len, c.d_model)
        layer = nn.TransformerEncoderLayer(
            c.d_model, c.n_heads, 4 * c.d_model, c.dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, c.n_layers, enable_nested_tensor=False) if c.n_layers else None
        self.ln = nn.LayerNorm(c.d_model)
        self.out = nn.Linear(c.d_model, c.dim)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.normal_(p, std=0.02)
        nn.init.normal_(self.out.weight, std=1.0 / math.sqrt(c.d_model))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        h = self.tok_emb(ids) + self.pos_emb(torch.arange(t, device=ids.device))[None]
        if self.bigram_emb is not None:
            h = h + self.bigram_emb(self._bigram_ids(ids))
        if self.layers is not None:
            h = self.layers(h, src_key_padding_mask=~mask)
        return self.out(_mean_pool(self.ln(h), mask))

    def _bigram_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Bucket of each position's (previous, current) token pair (the first
        position's previous token is a start symbol): exact when
        ``(V + 1)·V`` fits in the buckets, else a multiplicative hash."""
        v, n = self.config.vocab_size, int(self.config.bigram_buckets or 0)
        prev = torch.cat([torch.full_like(ids[:, :1], v), ids[:, :-1]], dim=1)
        pair = prev * v + ids
        if (v + 1) * v <= n:
            return pair
        # Fibonacci hashing: the high 32 bits of pair · 2⁶⁴/φ (mod 2⁶⁴, wrapping
        # int64 arithmetic) are well mixed for any n; the low bits are not
        return ((pair * _GOLDEN) >> 32 & 0xFFFFFFFF) % n

    def batch(
        self, items: TokenItems, prefix: torch.Tensor | None, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """``(ids, mask, n_truncated)`` for ``items`` with ``prefix`` prepended,
        cut to ``max_len`` positions."""
        ids, lengths = items.ids, items.lengths
        if int(ids.max()) >= self.config.vocab_size:
            raise ValueError(
                f"token id {int(ids.max())} is outside the encoder's vocabulary of {self.config.vocab_size}"
            )
        p = 0 if prefix is None else int(prefix.shape[0])
        if prefix is not None:
            ids = torch.cat([prefix.expand(ids.shape[0], -1), ids], dim=1)
        lengths = lengths + p
        limit = self.config.max_len
        truncated = int((lengths > limit).sum())
        ids = ids[:, :limit]
        lengths = lengths.clamp_max(limit)
        mask = torch.arange(ids.shape[1])[None] < lengths[:, None]
        return ids.to(device), mask.to(device), truncated


# ----------------------------------------------------------------------------
# Text encoder (Hugging Face / sentence-transformers)
# ----------------------------------------------------------------------------


def _is_sentence_transformer(model: Any) -> bool:
    return (
        isinstance(model, nn.Module)
        and hasattr(model, "tokenize")
        and (hasattr(model, "get_embedding_dimension") or hasattr(model, "get_sentence_embedding_dimension"))
    )


class TextEncoder(nn.Module):
    """A Hugging Face encoder with its tokenizer, or a sentence-transformers
    model: ``forward(texts) -> [B, dim]`` (mean pooling over the attention
    mask of the last hidden state; a sentence-transformers model uses its own
    pooling)."""

    model: Any
    tokenizer: Any

    def __init__(self, model: nn.Module, tokenizer: Any = None, max_length: int | None = None) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch nn.Module (a transformers model), got {type(model).__name__}")
        self.model = model
        self.sentence_transformer = _is_sentence_transformer(model)
        if self.sentence_transformer:
            self.tokenizer = tokenizer if tokenizer is not None else model.tokenizer
            limit = max_length or int(getattr(model, "max_seq_length", 0) or 512)
            st: Any = model
            st.max_seq_length = int(limit)  # its own tokenisation truncates there
            get_dim: Any = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            self.dim = int(get_dim())
        else:
            if tokenizer is None or not callable(tokenizer):
                raise TypeError("a Hugging Face encoder needs its tokenizer: Influcoder(model, tokenizer)")
            self.tokenizer = tokenizer
            cfg = getattr(model, "config", None)
            hidden = getattr(cfg, "hidden_size", None) or getattr(cfg, "d_model", None)
            if hidden is None:
                raise TypeError("model has no config.hidden_size: pass a transformers encoder (AutoModel)")
            self.dim = int(hidden)
            positions = getattr(cfg, "max_position_embeddings", None)
            tok_max = getattr(tokenizer, "model_max_length", None)
            limits = [int(x) for x in (max_length, positions, tok_max) if x is not None and 0 < int(x) < 10**9]
            limit = min(limits) if limits else 512
        self.max_length = check_int("max_length", limit, 1)

    def tokenize(self, texts: list[str], device: torch.device) -> tuple[dict[str, torch.Tensor], int]:
        """Model inputs for ``texts`` and the number truncated."""
        full = self.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
        truncated = sum(len(x) > self.max_length for x in full)
        if self.sentence_transformer:
            feats = self.model.tokenize(texts)
        else:
            feats = self.tokenizer(
                texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
        return {k: v.to(device) for k, v in feats.items() if isinstance(v, torch.Tensor)}, truncated

    def forward(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.sentence_transformer:
            return self.model(dict(feats))["sentence_embedding"]
        keep = {k: v for k, v in feats.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        out = self.model(**keep)
        h = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        return _mean_pool(h, feats["attention_mask"].bool())
