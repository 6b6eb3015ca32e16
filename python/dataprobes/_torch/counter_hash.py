"""Counter-based hashing in PyTorch: random numbers addressed by index.

Used where a value must depend only on *which* element it belongs to (a
sketch coordinate, a sequence and a decoding step), never on how the work was
batched or in which order it ran.

* ``splitmix64`` (Steele, Lea & Flood 2014) derives 32-bit stream keys from a
  64-bit user seed on the host: :func:`stream_key`.
* ``H(j, key) = fmix32((j * 0x9E3779B1 mod 2**32) XOR key)``, MurmurHash3's
  32-bit finaliser (Appleby 2008; a bijection of uint32 with full avalanche),
  evaluated on int64 tensors with the 32×32-bit products split into 16-bit
  halves, so there is no signed overflow and the Triton kernels (which compute
  the same ``H`` in uint32) agree bit for bit: :func:`hash32_torch`.
* :func:`uniform53`: float64 uniforms on [0, 1) from two hashes per
  (stream, counter), 53 random bits each.
"""

from __future__ import annotations

import torch

__all__ = ["GOLDEN32", "fmix32_torch", "hash32_torch", "splitmix64", "stream_key", "uniform53"]

_MASK32 = 0xFFFFFFFF
_MASK64 = 0xFFFFFFFFFFFFFFFF
GOLDEN32 = 0x9E3779B1
_FMIX_C1 = 0x85EBCA6B
_FMIX_C2 = 0xC2B2AE35


def splitmix64(x: int) -> int:
    """SplitMix64 output for state ``x`` (Python ints, exact)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def stream_key(seed: int, stream: int) -> int:
    """32-bit key of hash stream ``stream`` for user seed ``seed`` (0 ≤ seed < 2**64)."""
    return splitmix64((splitmix64(seed) + stream) & _MASK64) & _MASK32


def _mul32(a: torch.Tensor, c: int) -> torch.Tensor:
    """``a * c mod 2**32`` for int64 ``a`` in [0, 2**32) without overflow."""
    lo = a * (c & 0xFFFF)
    hi = ((a * (c >> 16)) & 0xFFFF) << 16
    return (lo + hi) & _MASK32


def fmix32_torch(h: torch.Tensor) -> torch.Tensor:
    """MurmurHash3's ``fmix32`` on int64 tensors holding uint32 values."""
    h = h ^ (h >> 16)
    h = _mul32(h, _FMIX_C1)
    h = h ^ (h >> 13)
    h = _mul32(h, _FMIX_C2)
    return h ^ (h >> 16)


def hash32_torch(j: torch.Tensor, key: int | torch.Tensor) -> torch.Tensor:
    """``H(j, key)`` for int64 ``j`` in [0, 2**32) and a uint32 ``key`` (an int,
    or an int64 tensor broadcasting against ``j``): int64 values in [0, 2**32)."""
    return fmix32_torch(_mul32(j, GOLDEN32) ^ key)


def uniform53(keys: tuple[torch.Tensor, torch.Tensor], counter: int) -> torch.Tensor:
    """float64 uniforms on [0, 1), one per element of the key tensors.

    ``keys``: two int64 tensors of uint32 stream keys (e.g. one pair per
    sequence, from :func:`hash32_torch` of the sequence index); ``counter``:
    the draw's index within each stream (0 ≤ counter < 2**32). The result is
    ``(a >> 5) * 2**-27 + (b >> 6) * 2**-53`` with ``a = H(counter, key_a)``
    and ``b = H(counter, key_b)``, i.e. 53 random bits.
    """
    if not 0 <= counter < 2**32:
        raise ValueError(f"counter must lie in [0, 2**32), got {counter}")
    c = torch.tensor(counter, dtype=torch.int64, device=keys[0].device)
    a = hash32_torch(c, keys[0]) >> 5
    b = hash32_torch(c, keys[1]) >> 6
    return (a * 67108864 + b).to(torch.float64) * (1.0 / 9007199254740992.0)
