"""dataprobes: exact, fast data probes for studying how data shapes language models.

Probe processes have fully known laws, so every sequence has an exact
log-probability and every process an exact entropy rate::

    import dataprobes as dp

    p = dp.MarkovChain.random(128, entropy_rate=2.0, seed=0)
    x = p.sample(4096, 1024, seed=1)           # uint8 [4096, 1024]
    p.log_prob(x)                              # exact, nats
    p.typicality(x, eps=0.05).fraction_typical
    dp.conditional_entropy(x, order=1)         # estimate from the tokens alone
"""

from __future__ import annotations

from .composite import Duplicated, Mixture
from .estimate import Estimate
from .hmm import HMM
from .incontext import (
    InContextMarkov,
    incontext_bigram_log_probs,
    incontext_ngram_log_probs,
    incontext_unigram_log_probs,
)
from .noise import TokenNoise, noisy_equivalent
from .estimators import (
    EntropyEstimate,
    NgramCounts,
    conditional_entropy,
    entropy_profile,
    ngram_counts,
)
from .processes import IID, ROW_SUM_TOL, MarkovChain, Process
from .typicality import TypicalityReport

__version__ = "0.1.0"

__all__ = [
    "conditional_entropy",
    "Duplicated",
    "entropy_profile",
    "EntropyEstimate",
    "Estimate",
    "HMM",
    "IID",
    "incontext_bigram_log_probs",
    "incontext_ngram_log_probs",
    "incontext_unigram_log_probs",
    "InContextMarkov",
    "MarkovChain",
    "Mixture",
    "ngram_counts",
    "NgramCounts",
    "noisy_equivalent",
    "Process",
    "ROW_SUM_TOL",
    "TokenNoise",
    "TypicalityReport",
    "__version__",
]
