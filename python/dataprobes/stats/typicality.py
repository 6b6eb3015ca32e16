"""Typical-set membership and calibrated z-scores of sequences under a process.

For a process with entropy rate H, the ε-typical set of length-n sequences is
``A_ε = { x : |-(1/n) log p(x) - H| <= ε }`` (Cover & Thomas, ch. 3). A fixed ε
is blunt for short sequences, so each sequence also gets the path-centred
statistic (docs/math.md)

    Z = Σ_t [-log p(x_t | s_t) - H(p(· | s_t))] / sqrt(Σ_t V(p(· | s_t)))

where H and V are the entropy and varentropy of the conditional law each token
was drawn from. The numerator is a sum of martingale differences under the true
process, so Z is ≈ N(0, 1) for long sequences drawn from it: |Z| > 3 flags a
sequence as atypical without choosing ε.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TypicalityReport:
    """Per-sequence typicality of token sequences under a process.

    Attributes:
        nll_per_token: ``-(1/n) log p(x)`` of each sequence, in ``unit``.
        z: the path-centred z-score of each sequence (unitless). A path whose
            conditional laws all have zero varentropy gets 0 when it is on the
            centre (up to rounding) and ±inf otherwise.

    An impossible sequence (``log p(x) = -inf``: a token of probability 0)
    has ``nll_per_token = +inf`` and ``z = +inf``, and counts as ``above`` the
    band. In :meth:`summary` it makes ``mean_nll_per_token`` and
    ``std_nll_per_token`` ``+inf``; ``mean_z`` and ``std_z`` are over the
    finite z-scores only (NaN when none is finite, as for an empty report).
        entropy_rate: the process's entropy rate H, in ``unit``.
        eps: the half-width of the typical band, in ``unit``.
        unit: ``"nats"`` or ``"bits"`` (or ``"log base b"``).
    """

    nll_per_token: np.ndarray
    z: np.ndarray
    entropy_rate: float
    eps: float
    unit: str

    @classmethod
    def from_path_stats(
        cls,
        nll_per_token: np.ndarray,
        centred: np.ndarray,
        var: np.ndarray,
        length: int,
        *,
        entropy_rate: float,
        eps: float,
        unit: str,
    ) -> TypicalityReport:
        """The report of sequences of ``length`` scored tokens from their
        NLL/token, centred surprisal sums ``Σ_t [-log q_t(x_t) - H(q_t)]`` and
        varentropy sums ``Σ_t V(q_t)`` (nats): the z-scores are
        :func:`z_scores` of the two sums. The one constructor of the
        processes' and the language-model evaluations' reports."""
        return cls(
            nll_per_token=np.asarray(nll_per_token),
            z=z_scores(centred, var, length),
            entropy_rate=float(entropy_rate),
            eps=float(eps),
            unit=unit,
        )

    @property
    def below(self) -> np.ndarray:
        """Mask of over-conservative sequences: NLL/token < H - ε."""
        return self.nll_per_token < self.entropy_rate - self.eps

    @property
    def above(self) -> np.ndarray:
        """Mask of over-divergent sequences: NLL/token > H + ε."""
        return self.nll_per_token > self.entropy_rate + self.eps

    @property
    def inside(self) -> np.ndarray:
        """Mask of sequences inside the ε-typical set."""
        return ~(self.below | self.above)

    @property
    def num_sequences(self) -> int:
        return int(self.nll_per_token.shape[0])

    @property
    def fraction_typical(self) -> float:
        """Fraction of sequences inside the ε-typical set."""
        return float(self.inside.mean()) if self.num_sequences else math.nan

    @property
    def count_below(self) -> int:
        return int(self.below.sum())

    @property
    def count_above(self) -> int:
        return int(self.above.sum())

    @property
    def count_inside(self) -> int:
        return int(self.inside.sum())

    def summary(self) -> dict[str, float | int | str]:
        """The headline numbers as a plain dict (JSON-friendly)."""
        nll = self.nll_per_token
        finite_z = self.z[np.isfinite(self.z)]
        return {
            "num_sequences": self.num_sequences,
            "unit": self.unit,
            "entropy_rate": self.entropy_rate,
            "eps": self.eps,
            "mean_nll_per_token": float(nll.mean()) if nll.size else math.nan,
            "std_nll_per_token": _spread(nll),
            "mean_z": float(finite_z.mean()) if finite_z.size else math.nan,
            "std_z": float(finite_z.std()) if finite_z.size else math.nan,
            "fraction_typical": self.fraction_typical,
            "count_below": self.count_below,
            "count_inside": self.count_inside,
            "count_above": self.count_above,
        }

    def __str__(self) -> str:
        s = self.summary()
        return (
            f"TypicalityReport({s['num_sequences']} sequences, H = {s['entropy_rate']:.6f} {self.unit}/token, "
            f"eps = {s['eps']:g}): mean NLL/token {s['mean_nll_per_token']:.6f} (sd {s['std_nll_per_token']:.4f}), "
            f"z mean {s['mean_z']:.3f} sd {s['std_z']:.3f}; typical {s['fraction_typical']:.3%} "
            f"[below {s['count_below']} / inside {s['count_inside']} / above {s['count_above']}]"
        )


def _spread(nll: np.ndarray) -> float:
    """Standard deviation of ``nll``: ``+inf`` when an entry is infinite (an
    impossible sequence; numpy would give NaN and warn), NaN when empty."""
    if not nll.size:
        return math.nan
    if not np.isfinite(nll).all():
        return math.inf
    return float(nll.std())


def z_scores(centred: np.ndarray, var: np.ndarray, length: int) -> np.ndarray:
    """``centred / sqrt(var)`` with the zero-variance convention above.

    Along a zero-varentropy path every surprisal equals its conditional
    entropy (uniform or one-hot laws), so the centred sum is 0 up to rounding;
    values within ``1e-9 * length`` of 0 count as exactly on the centre.
    """
    centred = np.asarray(centred, dtype=np.float64)
    var = np.asarray(var, dtype=np.float64)
    z = np.empty_like(centred)
    ok = var > 0
    z[ok] = centred[ok] / np.sqrt(var[ok])
    degenerate = ~ok
    z[degenerate] = np.copysign(np.inf, centred[degenerate])
    z[degenerate & (np.abs(centred) <= 1e-9 * max(length, 1))] = 0.0
    return z
