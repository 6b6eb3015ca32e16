"""Argument checks shared by the public entry points.

Every check raises ``TypeError`` for the wrong kind of value and ``ValueError``
for a value out of its domain, and names the argument in the message.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

_U64 = 2**64


def real_array(name: str, value: Any, what: str = "a 1-D array") -> np.ndarray:
    """``value`` as a float64 array: ``ValueError`` if numpy cannot make an array
    of it (ragged input), ``TypeError`` for bool, complex or non-numeric dtypes.
    The caller checks the shape and the values."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} must be {what}: {exc}") from None
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    return arr.astype(np.float64)  # a copy: callers may change it


def check_int(name: str, value: Any, minimum: int = 0, maximum: int | None = None) -> int:
    """``value`` as a Python int in ``[minimum, maximum]``; without ``maximum``
    at most ``2**64 - 1`` (counts, sizes and indices are 64-bit: a larger int
    would overflow on its way to the core)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    v = int(value)
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    top = _U64 - 1 if maximum is None else maximum
    if v > top:
        raise ValueError(f"{name} must be <= {top}, got {v}")
    return v


def check_seed(name: str, value: Any) -> int:
    """A seed: an integer in [0, 2**64)."""
    return check_int(name, value, 0, _U64 - 1)


def check_float(name: str, value: Any, *, positive: bool = False) -> float:
    """``value`` as a finite float (strictly positive if asked)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if positive and v <= 0:
        raise ValueError(f"{name} must be > 0, got {v}")
    return v


def log_base(base: Any) -> float:
    """ln(base) for unit conversion; ``None`` or ``math.e`` means nats."""
    if base is None:
        return 1.0
    b = check_float("base", base, positive=True)
    if b == 1.0:
        raise ValueError("base must not be 1")
    return math.log(b)


def as_float_array(name: str, value: Any, ndim: int) -> np.ndarray:
    """A C-contiguous float64 array of exactly ``ndim`` dimensions."""
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged nested lists and the like
        raise ValueError(f"{name} must be a {ndim}-D array of probabilities: {exc}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def as_array(name: str, value: Any) -> np.ndarray:
    """``np.asarray(value)``, with a ragged nested list (or anything numpy
    cannot make an array of) refused by a ``ValueError`` naming ``name``."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name} must be a rectangular array: {exc}") from None


def _native(arr: np.ndarray) -> np.ndarray:
    """``arr`` in native byte order (big-endian data from a file or another
    machine is converted, values unchanged)."""
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))


def as_tokens(x: Any) -> tuple[np.ndarray, bool]:
    """Token data as a C-contiguous 2-D integer array, and whether the input
    was a single 1-D sequence (so results can be squeezed back)."""
    arr = _native(as_array("tokens", x))
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        if arr.size == 0 and arr.dtype == np.float64:
            arr = arr.astype(np.int64)  # np.asarray([]) is float64
        else:
            raise TypeError(f"tokens must be an integer array, got dtype {arr.dtype}")
    if arr.ndim == 1:
        return np.ascontiguousarray(arr[None, :]), True
    if arr.ndim != 2:
        raise ValueError(f"tokens must be 1-D (one sequence) or 2-D [num_sequences, length], got shape {arr.shape}")
    return np.ascontiguousarray(arr), False


def as_indices(indices: Any, name: str = "indices") -> np.ndarray:
    """Sequence indices as a C-contiguous 1-D uint64 array."""
    arr = _native(as_array(name, indices))
    if arr.size == 0:
        return np.zeros(0, dtype=np.uint64)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be integers, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.signedinteger) and (arr < 0).any():
        raise ValueError(f"{name} must be >= 0")
    return np.ascontiguousarray(arr, dtype=np.uint64)


def check_rows(num_sequences: Any, start: Any, *, name: str = "start", count: str = "num_sequences") -> tuple[int, int]:
    """``(num_sequences, start)`` checked for every sampler: sequence indices
    are 64-bit, so rows ``start .. start+num_sequences-1`` must all lie below
    ``2**64`` (``start + num_sequences <= 2**64``); past it the indices would
    wrap around and silently repeat rows. ``name``/``count`` name the
    arguments in messages (the command line passes ``--start``)."""
    n = check_int(count, num_sequences)
    k = check_int(name, start, 0, _U64 - 1)
    if k + n > _U64:
        raise ValueError(
            f"{name} + {count} must be <= 2**64 (sequence indices are 64-bit), got {name}={k} and {count}={n}"
        )
    return n, k


def start_indices(num_sequences: Any, start: Any) -> np.ndarray:
    """``start, start+1, ..., start+num_sequences-1`` as uint64 (validated by :func:`check_rows`)."""
    n, k = check_rows(num_sequences, start)
    return np.arange(n, dtype=np.uint64) + np.uint64(k)


def check_probability(name: str, value: Any) -> float:
    """A probability in [0, 1]."""
    v = check_float(name, value)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {v}")
    return v


def unit_name(base: Any) -> str:
    """The name of the unit of logarithms to ``base`` (see :func:`log_base`):
    ``"nats"`` for ``None`` or e, ``"bits"`` for 2, ``"log base b"`` otherwise."""
    if base is None or base == math.e:
        return "nats"
    if base == 2:
        return "bits"
    return f"log base {base:g}"


def check_float_in(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite float in the interval from ``low`` to ``high`` (closed ends
    unless ``low_open`` / ``high_open``; ``None``: unbounded on that side)."""
    v = check_float(name, value)
    below = low is not None and (v <= low if low_open else v < low)
    above = high is not None and (v >= high if high_open else v > high)
    if below or above:
        if high is None:
            bound = f"be {'>' if low_open else '>='} {low:g}"
        elif low is None:
            bound = f"be {'<' if high_open else '<='} {high:g}"
        else:
            bound = f"lie in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must {bound}, got {value}")
    return v


def check_process(name: str, value: Any) -> Any:
    """``value`` if it is a :class:`dataprobes.Process` (``TypeError`` otherwise)."""
    from .processes.base import Process

    if not isinstance(value, Process):
        raise TypeError(f"{name} must be a dataprobes Process, got {type(value).__name__}")
    return value


def check_optional_int(name: str, value: Any, minimum: int = 0, maximum: int | None = None) -> int | None:
    """``None``, or ``value`` checked by :func:`check_int`."""
    return None if value is None else check_int(name, value, minimum, maximum)


def check_float_sequence(name: str, value: Any) -> list[float]:
    """A non-empty sequence of finite floats (a bare number or a string is
    the wrong kind)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a sequence of numbers, got {type(value).__name__}")
    out = [check_float(f"{name}[{i}]", v) for i, v in enumerate(value)]
    if not out:
        raise ValueError(f"{name} must not be empty")
    return out


def rescale_huge_rows(arr: np.ndarray) -> np.ndarray:
    """``arr`` (rows of non-negative weights, last axis) with every row whose
    sum could overflow divided by its maximum first, so that normalising it
    cannot turn it into zeros (``[1e308, 1e308]`` sums to inf). Rows whose
    largest entry is at most ``DBL_MAX / n`` cannot overflow in any summation
    order and are returned bit for bit, so ordinary inputs are untouched;
    non-finite entries are left for the caller's checks to reject."""
    n = arr.shape[-1] if arr.ndim else 1
    if arr.size == 0 or not np.isfinite(arr).all():
        return arr
    peak = arr.max(axis=-1, keepdims=True)
    huge = peak > np.finfo(np.float64).max / max(n, 1)
    if not huge.any():
        return arr
    return np.where(huge, arr / np.where(huge, peak, 1.0), arr)


def check_positive_int(name: str, value: Any) -> int:
    """``value`` as a Python int >= 1 (``TypeError`` for a non-integer, ``ValueError`` below 1)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a bool (``TypeError`` for anything but a Python or numpy bool)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool (True or False), got {type(value).__name__}")
    return bool(value)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """One of the strings ``choices`` (``TypeError`` for a non-string, ``ValueError`` for another string)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {choices}, got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_nonnegative_float(name: str, value: Any) -> float:
    """A finite float >= 0 (NaN and infinities are refused)."""
    return check_float_in(name, value, 0.0)


def check_positive_float(name: str, value: Any) -> float:
    """A finite float > 0 (``TypeError`` for a non-number, ``ValueError`` otherwise)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive finite number, got {type(value).__name__}")
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return v
