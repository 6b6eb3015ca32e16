"""Statistics of token data: typicality reports, Monte-Carlo estimates, and
n-gram counts and entropy estimators over any integer token array."""

from __future__ import annotations

from .estimate import Estimate
from .ngram import EntropyEstimate, NgramCounts, conditional_entropy, entropy_profile, ngram_counts
from .typicality import TypicalityReport, z_scores

__all__ = [
    "conditional_entropy",
    "entropy_profile",
    "EntropyEstimate",
    "Estimate",
    "ngram_counts",
    "NgramCounts",
    "TypicalityReport",
    "z_scores",
]
