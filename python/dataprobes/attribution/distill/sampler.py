"""Block sampling for Influcoder training.

An epoch visits the anchors in a shuffled order, ``k`` at a time (the last
block may be shorter). Each block gets ``m`` distinct candidates from the
pool: ``int(m · hard_ratio)`` drawn uniformly from the union of the block's
anchors' highest-teacher-score candidates ("hard" ones; all of the union if
it is smaller), and the rest uniformly from the remaining pool. Every index
is an integer (``int64``); the randomness is a function of ``(seed, epoch)``
only, so an epoch can be replayed or resumed.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..._validation import check_float_in, check_int, check_seed

__all__ = ["BlockSampler"]


class BlockSampler:
    """Yields ``(anchor_idx [≤k], candidate_idx [m])`` int64 blocks.

    ``top``: ``[A, h]`` int64 hard-candidate lists (each anchor's
    highest-teacher-score pool indices); needed when ``hard_ratio > 0``.
    ``k`` and ``m`` larger than the anchors / pool are clamped to them.
    """

    def __init__(
        self,
        n_anchors: int,
        n_pool: int,
        k: int = 8,
        m: int = 16,
        hard_ratio: float = 0.0,
        *,
        top: np.ndarray | None = None,
        seed: int = 0,
    ) -> None:
        self.n_anchors = check_int("n_anchors", n_anchors, 1)
        self.n_pool = check_int("n_pool", n_pool, 1)
        self.k = min(check_int("k", k, 1), self.n_anchors)
        self.m = min(check_int("m", m, 1), self.n_pool)
        self.hard_ratio = check_float_in("hard_ratio", hard_ratio, 0.0, 1.0)
        self.seed = check_seed("seed", seed)
        self.n_hard = int(self.m * self.hard_ratio)
        if self.n_hard > 0:
            if top is None:
                raise ValueError("hard_ratio > 0 needs the anchors' top candidates (top=)")
            top = np.asarray(top)
            if top.ndim != 2 or top.shape[0] != self.n_anchors or top.dtype.kind not in "iu":
                raise ValueError(f"top must be an integer array [n_anchors={self.n_anchors}, h], got {top.shape}")
            if top.size and (top.min() < 0 or top.max() >= self.n_pool):
                raise ValueError(f"top holds pool indices outside [0, {self.n_pool})")
        self.top = None if top is None else np.asarray(top, dtype=np.int64)

    def __len__(self) -> int:
        """Blocks per epoch."""
        return -(-self.n_anchors // self.k)

    def epoch(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng([self.seed, check_int("epoch", epoch, 0)])
        order = rng.permutation(self.n_anchors).astype(np.int64)
        for s in range(0, self.n_anchors, self.k):
            anchors = order[s : s + self.k]
            yield anchors, self.candidates(anchors, rng)

    def candidates(self, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``m`` distinct int64 pool indices for one block of anchors."""
        hard = np.empty(0, np.int64)
        if self.n_hard > 0:
            assert self.top is not None
            union = np.unique(self.top[anchors].reshape(-1))
            take = min(self.n_hard, union.shape[0])
            hard = rng.choice(union, size=take, replace=False).astype(np.int64)
        need = self.m - hard.shape[0]
        if need == 0:
            return hard
        if hard.shape[0] == 0:
            return rng.choice(self.n_pool, size=need, replace=False).astype(np.int64)
        # uniform over the pool minus the hard ones: draw with a margin, drop the hard ones
        draw = rng.choice(self.n_pool, size=min(self.n_pool, need + hard.shape[0]), replace=False)
        rest = draw[~np.isin(draw, hard)][:need].astype(np.int64)
        return np.concatenate([hard, rest])
