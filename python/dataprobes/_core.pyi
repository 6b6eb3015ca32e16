"""Type stubs of the private Rust extension ``dataprobes._core``.

Checked against the built module by ``python -m mypy.stubtest dataprobes._core``
(run in the test suite).
"""

from typing import final

import numpy as np
import numpy.typing as npt

__all__ = [
    "check_state_space",
    "conditional_entropy_stats",
    "corrupt_tokens",
    "DEFAULT_MAX_DENSE_ENTRIES",
    "duplicate_sources",
    "entropy_profile_stats",
    "HmmCore",
    "InContextCore",
    "MarkovCore",
    "MAX_DENSE_NDIM",
    "MAX_TABLE_ENTRIES",
    "mixture_labels",
    "ngram_counts",
    "ROW_SUM_TOL",
    "state_indices",
    "tune_temperature",
    # DSIR (selection/dsir.py)
    "DSIR_FAST_HASH_VERSION",
    "DSIR_MAX_BUCKETS",
    "DSIR_MAX_NGRAMS",
    "DSIR_REGEX_MODULE_VERSION",
    "DSIR_REGEX_UNICODE_VERSION",
    "DSIR_UNICODE_VERSION",
    "dsir_id_counts",
    "dsir_id_features",
    "dsir_id_log_weights",
    "dsir_text_counts",
    "dsir_text_features",
    "dsir_text_log_weights",
    "gumbel_noise",
    # fast diversity measures (metrics/diversity.py)
    "DIVERSITY_MAX_N",
    "diversity_ngram_counts",
    "diversity_rougel_row_sums",
    "diversity_self_bleu",
    "diversity_self_repetition",
    # MinHash near-duplicates (metrics/dedup.py)
    "MINHASH_FAST_VERSION",
    "MINHASH_MAX_PERM",
    "minhash_cluster",
    "minhash_ids",
    "minhash_texts",
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
    def num_states(self) -> int: ...
    def transition(self) -> npt.NDArray[np.float64]: ...
    def initial(self) -> npt.NDArray[np.float64]: ...
    def stationary(self) -> npt.NDArray[np.float64]: ...
    def row_entropies(self) -> npt.NDArray[np.float64]: ...
    def row_varentropies(self) -> npt.NDArray[np.float64]: ...
    def entropy_rate(self) -> float: ...
    def varentropy_rate(self) -> float: ...
    def sample(self, num_sequences: int, length: int, seed: int, start: int) -> npt.NDArray[np.unsignedinteger]: ...
    def sample_at(self, indices: npt.NDArray[np.uint64], length: int, seed: int) -> npt.NDArray[np.unsignedinteger]: ...
    def log_prob(self, tokens: npt.NDArray[np.integer]) -> npt.NDArray[np.float64]: ...
    def token_log_probs(self, tokens: npt.NDArray[np.integer]) -> npt.NDArray[np.float64]: ...
    def predictive(self, tokens: npt.NDArray[np.integer]) -> npt.NDArray[np.float64]: ...
    def path_stats(self, tokens: npt.NDArray[np.integer]) -> npt.NDArray[np.float64]: ...

@final
class HmmCore:
    """Hidden Markov model core. See ``dataprobes.HMM``."""

    def __new__(
        cls,
        transition: npt.NDArray[np.float64],
        emission: npt.NDArray[np.float64],
        initial: npt.NDArray[np.float64] | None = None,
        normalize: bool = False,
    ) -> HmmCore: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def num_states(self) -> int: ...
    @property
    def simd(self) -> bool: ...
    def transition(self) -> npt.NDArray[np.float64]: ...
    def emission(self) -> npt.NDArray[np.float64]: ...
    def initial(self) -> npt.NDArray[np.float64]: ...
    def stationary(self) -> npt.NDArray[np.float64]: ...
    def sample(
        self, num_sequences: int, length: int, seed: int, start: int, return_states: bool = False
    ) -> npt.NDArray[np.unsignedinteger] | tuple[npt.NDArray[np.unsignedinteger], npt.NDArray[np.unsignedinteger]]: ...
    def sample_at(
        self, indices: npt.NDArray[np.uint64], length: int, seed: int, return_states: bool = False
    ) -> npt.NDArray[np.unsignedinteger] | tuple[npt.NDArray[np.unsignedinteger], npt.NDArray[np.unsignedinteger]]: ...
    def log_prob(self, tokens: npt.NDArray[np.integer]) -> npt.NDArray[np.float64]: ...
    def token_log_probs(self, tokens: npt.NDArray[np.integer]) -> npt.NDArray[np.float64]: ...
    def predictive(self, tokens: npt.NDArray[np.integer]) -> npt.NDArray[np.float64]: ...
    def filtered_states(self, tokens: npt.NDArray[np.integer]) -> npt.NDArray[np.float64]: ...
    def path_stats(self, tokens: npt.NDArray[np.integer]) -> npt.NDArray[np.float64]: ...
    def sampled_surprisal(
        self, num_sequences: int, length: int, burn_in: int, seed: int, start: int
    ) -> npt.NDArray[np.float64]: ...

def tune_temperature(
    logits: npt.NDArray[np.float64], order: int, target: float, tol: float = 1e-9
) -> tuple[float, npt.NDArray[np.float64], float]: ...
def check_state_space(vocab_size: int, order: int) -> int: ...
def state_indices(tokens: npt.NDArray[np.integer], vocab_size: int, order: int) -> npt.NDArray[np.int64]: ...

@final
class InContextCore:
    """In-context Markov chain core. See ``dataprobes.InContextMarkov``."""

    def __new__(cls, vocab_size: int, order: int, concentration: float) -> InContextCore: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def order(self) -> int: ...
    @property
    def concentration(self) -> float: ...
    @property
    def num_states(self) -> int: ...
    def sample(self, num_sequences: int, length: int, seed: int, start: int) -> npt.NDArray[np.unsignedinteger]: ...
    def sample_at(self, indices: npt.NDArray[np.uint64], length: int, seed: int) -> npt.NDArray[np.unsignedinteger]: ...
    def posterior_chains(
        self, tokens: npt.NDArray[np.integer], seed: int, indices: npt.NDArray[np.uint64]
    ) -> npt.NDArray[np.float64]: ...
    def log_prob(self, tokens: npt.NDArray[np.integer]) -> npt.NDArray[np.float64]: ...
    def token_log_probs(self, tokens: npt.NDArray[np.integer]) -> npt.NDArray[np.float64]: ...
    def predictive(self, tokens: npt.NDArray[np.integer]) -> npt.NDArray[np.float64]: ...
    def path_stats(self, tokens: npt.NDArray[np.integer]) -> npt.NDArray[np.float64]: ...

def mixture_labels(
    weights: npt.NDArray[np.float64], indices: npt.NDArray[np.uint64], seed: int
) -> npt.NDArray[np.uint32]: ...
def duplicate_sources(fraction: float, indices: npt.NDArray[np.uint64], seed: int) -> npt.NDArray[np.uint64]: ...
def corrupt_tokens(
    tokens: npt.NDArray[np.unsignedinteger], vocab_size: int, rho: float, seed: int, indices: npt.NDArray[np.uint64]
) -> npt.NDArray[np.bool_]: ...

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

# DSIR hashed n-grams (rust/py/text.rs; python/dataprobes/selection/dsir.py)
DSIR_FAST_HASH_VERSION: int
DSIR_UNICODE_VERSION: str
DSIR_REGEX_UNICODE_VERSION: str
DSIR_REGEX_MODULE_VERSION: str
DSIR_MAX_BUCKETS: int
DSIR_MAX_NGRAMS: int

_Csr = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint64]]

def dsir_text_features(
    texts: list[str], num_buckets: int, ngrams: int, hash: str, lowercase: bool, word_classes: str
) -> _Csr: ...
def dsir_text_counts(
    texts: list[str], out: npt.NDArray[np.int64], ngrams: int, hash: str, lowercase: bool, word_classes: str
) -> None: ...
def dsir_text_log_weights(
    texts: list[str],
    log_ratio: npt.NDArray[np.float64],
    ngrams: int,
    hash: str,
    lowercase: bool,
    word_classes: str,
    min_length: int,
) -> npt.NDArray[np.float64]: ...
def dsir_id_features(
    tokens: npt.NDArray[np.integer], offsets: npt.NDArray[np.uint64], num_buckets: int, ngrams: int, hash: str
) -> _Csr: ...
def dsir_id_counts(
    tokens: npt.NDArray[np.integer], offsets: npt.NDArray[np.uint64], out: npt.NDArray[np.int64], ngrams: int, hash: str
) -> None: ...
def dsir_id_log_weights(
    tokens: npt.NDArray[np.integer],
    offsets: npt.NDArray[np.uint64],
    log_ratio: npt.NDArray[np.float64],
    ngrams: int,
    hash: str,
    min_length: int,
) -> npt.NDArray[np.float64]: ...
def gumbel_noise(indices: npt.NDArray[np.uint64], seed: int) -> npt.NDArray[np.float64]: ...

# fast diversity measures (metrics/diversity.py): items are a list of str cut
# by ``tokenize`` (offsets None) or token ids [1, total] cut at ``offsets``.
DIVERSITY_MAX_N: int

def diversity_ngram_counts(
    items: list[str] | npt.NDArray[np.integer],
    offsets: npt.NDArray[np.uint64] | None,
    tokenize: str,
    max_n: int,
    joined: bool,
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]: ...
def diversity_self_repetition(
    items: list[str] | npt.NDArray[np.integer], offsets: npt.NDArray[np.uint64] | None, tokenize: str, n: int
) -> npt.NDArray[np.uint64]: ...
def diversity_self_bleu(
    items: list[str] | npt.NDArray[np.integer],
    offsets: npt.NDArray[np.uint64] | None,
    tokenize: str,
    max_n: int,
    smoothing: str,
    smooth_value: float,
) -> npt.NDArray[np.float64]: ...
def diversity_rougel_row_sums(
    items: list[str] | npt.NDArray[np.integer],
    offsets: npt.NDArray[np.uint64] | None,
    tokenize: str,
    lo: int,
    hi: int,
) -> npt.NDArray[np.float64]: ...

# MinHash near-duplicates (metrics/dedup.py)
MINHASH_FAST_VERSION: int
MINHASH_MAX_PERM: int

def minhash_texts(
    texts: list[str],
    ngram: int,
    shingle: str,
    lowercase: bool,
    scheme_name: str,
    seed: int,
    num_perm: int,
    a: npt.NDArray[np.uint64] | None = None,
    b: npt.NDArray[np.uint64] | None = None,
) -> npt.NDArray[np.uint32] | npt.NDArray[np.uint64]: ...
def minhash_ids(
    tokens: npt.NDArray[np.integer],
    offsets: npt.NDArray[np.uint64],
    ngram: int,
    scheme_name: str,
    seed: int,
    num_perm: int,
    a: npt.NDArray[np.uint64] | None = None,
    b: npt.NDArray[np.uint64] | None = None,
) -> npt.NDArray[np.uint32] | npt.NDArray[np.uint64]: ...
def minhash_cluster(
    signatures: npt.NDArray[np.uint32] | npt.NDArray[np.uint64],
    bands: int,
    rows: int,
    threshold: float | None = None,
    pairs: bool = False,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], int, int]: ...
