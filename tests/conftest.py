"""Shared test configuration.

Hypothesis profiles are chosen with ``DATAPROBES_HYPOTHESIS_PROFILE``:
``dev`` (default, fast), ``ci`` (more examples), ``thorough`` (for a long
local run). All profiles use ``deadline=None``: the first call of a property
may pay for lazy initialisation (thread pools, compilation).

Triton kernels run on the CPU through Triton's interpreter when the machine
has no NVIDIA GPU: ``TRITON_INTERPRET=1`` is set here, before anything imports
``triton`` (Triton reads it when a kernel is decorated). An explicit
``TRITON_INTERPRET`` in the environment wins.
"""

from __future__ import annotations

import os
import shutil

if "TRITON_INTERPRET" not in os.environ and not (os.path.exists("/dev/nvidiactl") or shutil.which("nvidia-smi")):
    os.environ["TRITON_INTERPRET"] = "1"

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("DATAPROBES_HYPOTHESIS_PROFILE", "dev"))


def random_stochastic(
    rng: np.random.Generator, rows: int, cols: int, alpha: float = 1.0, zeros: float = 0.0
) -> np.ndarray:
    """Random row-stochastic matrix; a fraction ``zeros`` of entries set to 0
    (each row keeps at least one positive entry)."""
    p = rng.dirichlet(np.full(cols, alpha), size=rows)
    if zeros > 0:
        mask = rng.random((rows, cols)) < zeros
        mask[np.arange(rows), rng.integers(0, cols, rows)] = False
        p[mask] = 0.0
        p /= p.sum(axis=1, keepdims=True)
    return p


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
