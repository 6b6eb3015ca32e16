"""Type stubs of the private Rust extension ``dataprobes._core``.

Checked against the built module by ``python -m mypy.stubtest dataprobes._core``
(run in the test suite).
"""

from typing import final

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_MAX_DENSE_ENTRIES",
    "MAX_DENSE_NDIM",
    "MAX_TABLE_ENTRIES",
    "MarkovCore",
    "ROW_SUM_TOL",
    "check_state_space",
    "conditional_entropy_stats",
    "entropy_profile_stats",
    "ngram_counts",
    "rng_only_fill",
    "tune_temperature",
]

DEFAULT_MAX_DENSE_ENTRIES: int
MAX_DENSE_NDIM: int
MAX_TABLE_ENTRIES: int
ROW_SUM_TOL: float

@final
class MarkovCore:
    """Order-k Markov chain (order 0: i.i.d.) core. See ``dataprobes.MarkovChain``."""

    def __new__(
        cls,
        transition: npt.NDArray[np.float64],
        order: int,
        initial: npt.NDArray[np.float64] | None = None,
        normalize: bool = False,
    ) -> MarkovCore: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def order(self) -> int: ...
    @property
    def n_states(self) -> int: ...
    def transition(self) -> npt.NDArray[np.float64]: ...
    def initial(self) -> npt.NDArray[np.float64]: ...
    def stationary(self) -> npt.NDArray[np.float64]: ...
    def row_entropies(self) -> npt.NDArray[np.float64]: ...
    def row_varentropies(self) -> npt.NDArray[np.float64]: ...
    def entropy_rate(self) -> float: ...
    def varentropy_rate(self) -> float: ...
    def sample(self, num_sequences: int, length: int, seed: int, start: int) -> npt.NDArray[np.unsignedinteger]: ...
    def log_prob(self, tokens: npt.NDArray[np.integer]) -> npt.NDArray[np.float64]: ...
    def token_log_probs(self, tokens: npt.NDArray[np.integer]) -> npt.NDArray[np.float64]: ...
    def path_stats(
        self, tokens: npt.NDArray[np.integer]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...

def tune_temperature(
    logits: npt.NDArray[np.float64], order: int, target: float, tol: float = 1e-9
) -> tuple[float, npt.NDArray[np.float64], float]: ...
def check_state_space(vocab_size: int, order: int) -> int: ...
def rng_only_fill(num_sequences: int, length: int, seed: int) -> npt.NDArray[np.uint8]: ...

# (plugin, miller_madow, variance, samples, contexts, distinct, vocab_size); nats.
_EntropyStats = tuple[float, float, float, int, int, int, int]

def ngram_counts(
    tokens: npt.NDArray[np.integer], n: int, vocab_size: int | None, max_dense_entries: int
) -> tuple[
    int,
    int,
    npt.NDArray[np.uint64] | None,
    npt.NDArray[np.uint64] | None,
    npt.NDArray[np.uint64] | None,
]: ...
def conditional_entropy_stats(
    tokens: npt.NDArray[np.integer], order: int, vocab_size: int | None, max_dense_entries: int
) -> _EntropyStats: ...
def entropy_profile_stats(
    tokens: npt.NDArray[np.integer], max_order: int, vocab_size: int | None, max_dense_entries: int
) -> list[_EntropyStats]: ...
