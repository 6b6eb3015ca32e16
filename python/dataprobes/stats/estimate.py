"""A Monte-Carlo estimate with its standard error."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """``value ± stderr``: a Monte-Carlo estimate and its standard error.

    Used where a quantity has no closed form (e.g. the entropy rate of an
    HMM). ``float(est)`` gives the value.
    """

    value: float
    stderr: float

    @classmethod
    def from_samples(cls, samples: np.ndarray) -> Estimate:
        """Mean of i.i.d. samples and its standard error ``sd / sqrt(n)``."""
        s = np.asarray(samples, dtype=np.float64)
        if s.size == 0:
            raise ValueError("samples must not be empty")
        se = float(s.std(ddof=1) / math.sqrt(s.size)) if s.size > 1 else math.inf
        return cls(float(s.mean()), se)

    def interval(self, z: float = 1.96) -> tuple[float, float]:
        """Normal confidence interval ``value ± z stderr``."""
        return (self.value - z * self.stderr, self.value + z * self.stderr)

    def __float__(self) -> float:
        return self.value

    def __str__(self) -> str:
        return f"{self.value:.6f} ± {self.stderr:.6f}"
