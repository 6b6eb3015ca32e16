"""A Monte-Carlo estimate with its standard error."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np


def _parts(x: Any) -> tuple[float, float] | None:
    """``(value, stderr)`` of an operand: an :class:`Estimate`, or a real
    number (exact: stderr 0); ``None`` for anything else."""
    if isinstance(x, Estimate):
        return x.value, x.stderr
    if isinstance(x, numbers.Real):
        return float(x), 0.0
    return None


@dataclass(frozen=True, eq=False)
class Estimate:
    """``value ± stderr``: a Monte-Carlo estimate and its standard error.

    Used where a quantity has no closed form (e.g. the entropy rate of an
    HMM). It behaves like its value in generic numeric code, so callers of
    ``entropy_rate()`` need not special-case it:

    * ``float(est)`` is the value; ``format(est, ".3f")`` formats the value
      like a float (``str``/``repr`` and ``format(est, "")`` show the stderr);
    * ``+ - * /`` with real numbers and other estimates, unary ``-``, ``abs``
      and ``round``: the value is computed as for floats and the stderr is
      propagated to first order, **treating the operands as independent**
      (a real number is exact): for ``a ± s_a`` and ``b ± s_b``,
      ``s(a ± b) = sqrt(s_a² + s_b²)``, ``s(a b) = sqrt((b s_a)² + (a s_b)²)``,
      ``s(a / b) = sqrt((s_a / b)² + (a s_b / b²)²)``. So ``est - est`` has
      stderr ``sqrt(2) s``, not 0: correlated estimates need their own
      treatment;
    * ``< <= > >=`` compare values (with real numbers and estimates), and
      ``est == x`` for a real number ``x`` compares the value; two estimates
      are equal when both value and stderr are. ``hash`` is that of the
      value.
    """

    value: float
    stderr: float

    # numpy scalars and arrays defer to the reflected operators below
    __array_ufunc__ = None

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

    # ------------------------------------------------------------ float-like

    def __float__(self) -> float:
        return self.value

    def __str__(self) -> str:
        return f"{self.value:.6f} ± {self.stderr:.6f}"

    def __format__(self, spec: str) -> str:
        return format(self.value, spec) if spec else str(self)

    def __round__(self, ndigits: int | None = None) -> Any:
        return round(self.value, ndigits)

    # ------------------------------------------------------------ arithmetic

    def __add__(self, other: Any) -> Estimate:
        o = _parts(other)
        if o is None:
            return NotImplemented
        return Estimate(self.value + o[0], math.hypot(self.stderr, o[1]))

    __radd__ = __add__

    def __sub__(self, other: Any) -> Estimate:
        o = _parts(other)
        if o is None:
            return NotImplemented
        return Estimate(self.value - o[0], math.hypot(self.stderr, o[1]))

    def __rsub__(self, other: Any) -> Estimate:
        o = _parts(other)
        if o is None:
            return NotImplemented
        return Estimate(o[0] - self.value, math.hypot(self.stderr, o[1]))

    def __mul__(self, other: Any) -> Estimate:
        o = _parts(other)
        if o is None:
            return NotImplemented
        return Estimate(self.value * o[0], math.hypot(o[0] * self.stderr, self.value * o[1]))

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> Estimate:
        o = _parts(other)
        if o is None:
            return NotImplemented
        return _divide((self.value, self.stderr), o)

    def __rtruediv__(self, other: Any) -> Estimate:
        o = _parts(other)
        if o is None:
            return NotImplemented
        return _divide(o, (self.value, self.stderr))

    def __neg__(self) -> Estimate:
        return Estimate(-self.value, self.stderr)

    def __pos__(self) -> Estimate:
        return self

    def __abs__(self) -> Estimate:
        return Estimate(abs(self.value), self.stderr)

    # ------------------------------------------------------------ comparison

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Estimate):
            return self.value == other.value and self.stderr == other.stderr
        if isinstance(other, numbers.Real):
            return self.value == float(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.value)

    def __lt__(self, other: Any) -> bool:
        o = _parts(other)
        return NotImplemented if o is None else self.value < o[0]

    def __le__(self, other: Any) -> bool:
        o = _parts(other)
        return NotImplemented if o is None else self.value <= o[0]

    def __gt__(self, other: Any) -> bool:
        o = _parts(other)
        return NotImplemented if o is None else self.value > o[0]

    def __ge__(self, other: Any) -> bool:
        o = _parts(other)
        return NotImplemented if o is None else self.value >= o[0]


def _divide(a: tuple[float, float], b: tuple[float, float]) -> Estimate:
    """``a / b`` with first-order error propagation (``ZeroDivisionError``
    for a zero divisor, as for floats)."""
    if b[0] == 0:
        raise ZeroDivisionError("Estimate division by zero")
    q = a[0] / b[0]
    return Estimate(q, math.hypot(a[1] / b[0], q * b[1] / b[0]))
