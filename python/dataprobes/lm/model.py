"""TinyGPT: a small, clean decoder-only transformer for probe experiments.

Pre-norm GPT blocks (Radford et al. 2019) with causal
``scaled_dot_product_attention``, learned positions, and a tied output head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .._validation import check_float_in, check_int


@dataclass(frozen=True)
class TinyGPTConfig:
    vocab_size: int
    max_len: int = 256
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int | None = None  # default 4 * d_model
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_int("vocab_size", self.vocab_size, 1)
        check_int("max_len", self.max_len, 1)
        check_int("d_model", self.d_model, 1)
        check_int("n_layers", self.n_layers, 1)
        check_int("n_heads", self.n_heads, 1)
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.d_ff is not None:
            check_int("d_ff", self.d_ff, 1)
        check_float_in("dropout", self.dropout, 0.0, 1.0, high_open=True)


class _Block(nn.Module):
    def __init__(self, cfg: TinyGPTConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        d_ff = cfg.d_ff or 4 * cfg.d_model
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, d_ff), nn.GELU(), nn.Linear(d_ff, cfg.d_model))
        self.dropout = cfg.dropout

    def forward(self, h: torch.Tensor, cache: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``cache``, when given, holds this layer's keys and values of the
        earlier positions ([K, V], each [B, H, t0, d/H]) and is extended in
        place; then ``h`` holds only the new positions."""
        b, t, d = h.shape
        q, k, v = self.qkv(self.ln1(h)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2) for z in (q, k, v))
        causal = True
        if cache is not None:
            if cache:
                k = torch.cat([cache[0], k], dim=2)
                v = torch.cat([cache[1], v], dim=2)
                causal = t > 1
                if causal:
                    raise ValueError("with a non-empty cache, feed one new position at a time")
            cache[:] = [k, v]
        att = F.scaled_dot_product_attention(
            q, k, v, is_causal=causal, dropout_p=self.dropout if self.training else 0.0
        )
        h = h + F.dropout(self.proj(att.transpose(1, 2).reshape(b, t, d)), self.dropout, self.training)
        return h + F.dropout(self.mlp(self.ln2(h)), self.dropout, self.training)


class TinyGPT(nn.Module):
    """Decoder-only transformer: ``forward(idx [B, T]) -> logits [B, T, V]``."""

    def __init__(self, config: TinyGPTConfig | None = None, **kwargs: object) -> None:
        super().__init__()
        if config is None:
            config = TinyGPTConfig(**kwargs)  # type: ignore[arg-type]
        elif kwargs:
            raise TypeError("pass either a TinyGPTConfig or keyword arguments, not both")
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.max_len, config.d_model)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # weight tying
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, idx: torch.Tensor, cache: list[list[torch.Tensor]] | None = None) -> torch.Tensor:
        """Logits ``[B, T, V]`` for token ids ``idx`` [B, T].

        With ``cache`` (a list with one ``[]`` per layer to start), positions
        continue after the cached ones and the cache is extended: incremental
        decoding in O(T) per token instead of re-reading the prefix.
        """
        return self.head(self.hidden(idx, cache))

    def hidden(self, idx: torch.Tensor, cache: list[list[torch.Tensor]] | None = None) -> torch.Tensor:
        """Final hidden states ``[B, T, d_model]`` (after the final LayerNorm,
        what the tied head reads; Hugging Face's ``hidden_states[-1]``) for
        token ids ``idx`` [B, T]; ``cache`` as in :meth:`forward`."""
        if idx.dim() != 2:
            raise ValueError(f"idx must be [batch, time], got shape {tuple(idx.shape)}")
        t0 = cache[0][0].shape[2] if cache and cache[0] else 0
        t = idx.shape[1]
        if t0 + t > self.config.max_len:
            raise ValueError(f"sequence length {t0 + t} exceeds max_len {self.config.max_len}")
        pos = torch.arange(t0, t0 + t, device=idx.device)
        h = self.tok_emb(idx) + self.pos_emb(pos)[None]
        for i, block in enumerate(self.blocks):
            h = block(h, None if cache is None else cache[i])
        return self.ln_f(h)

    def new_cache(self) -> list[list[torch.Tensor]]:
        """An empty key/value cache for :meth:`forward`."""
        return [[] for _ in self.blocks]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
