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

import sys as _sys

from . import processes as processes
from . import stats as stats
from .processes import (
    HMM,
    IID,
    ROW_SUM_TOL,
    Duplicated,
    FactWorld,
    InContextMarkov,
    MarkovChain,
    Mixture,
    Process,
    TokenNoise,
    incontext_bigram_log_probs,
    incontext_ngram_log_probs,
    incontext_unigram_log_probs,
    noisy_equivalent,
)
from .processes import composite as _composite
from .processes import hmm as _hmm
from .processes import incontext as _incontext
from .processes import noise as _noise
from .stats import (
    EntropyEstimate,
    Estimate,
    NgramCounts,
    TypicalityReport,
    conditional_entropy,
    entropy_profile,
    ngram_counts,
)
from .stats import estimate as _estimate
from .stats import ngram as _ngram
from .stats import typicality as _typicality

# Module paths of releases before the package was split into ``processes/``
# and ``stats/``: ``import dataprobes.estimators`` (and the others) keep
# working and name the same module objects as their new homes.
_MOVED_MODULES = {
    "composite": _composite,
    "estimate": _estimate,
    "estimators": _ngram,
    "hmm": _hmm,
    "incontext": _incontext,
    "noise": _noise,
    "typicality": _typicality,
}
for _old, _module in _MOVED_MODULES.items():
    _sys.modules[f"{__name__}.{_old}"] = _module
    globals()[_old] = _module
del _old, _module

__version__ = "0.1.0"

__all__ = [
    "conditional_entropy",
    "Duplicated",
    "entropy_profile",
    "EntropyEstimate",
    "Estimate",
    "FactWorld",
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
