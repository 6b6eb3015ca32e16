"""Probe processes: token sequences from random processes whose law is known exactly.

``base`` holds the :class:`Process` interface and the one scoring path for
core-backed processes; ``markov`` the i.i.d. and order-k Markov chains;
``hmm``, ``incontext``, ``composite`` (mixtures, duplication) and ``noise``
the other families.
"""

from __future__ import annotations

from .base import Process
from .base import _CoreScored as _CoreScored
from .base import _unit as _unit
from .composite import Duplicated, Mixture
from .facts import FactWorld
from .hmm import HMM
from .incontext import (
    InContextMarkov,
    incontext_bigram_log_probs,
    incontext_ngram_log_probs,
    incontext_unigram_log_probs,
)
from .markov import IID, ROW_SUM_TOL, MarkovChain
from .markov import _ChainProcess as _ChainProcess
from .noise import TokenNoise, noisy_equivalent

__all__ = [
    "Duplicated",
    "FactWorld",
    "HMM",
    "IID",
    "incontext_bigram_log_probs",
    "incontext_ngram_log_probs",
    "incontext_unigram_log_probs",
    "InContextMarkov",
    "MarkovChain",
    "Mixture",
    "noisy_equivalent",
    "Process",
    "ROW_SUM_TOL",
    "TokenNoise",
]
