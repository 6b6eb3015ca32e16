"""Argument checks of the attribution API: ``TypeError`` for the wrong kind of
value, ``ValueError`` for a wrong value, the argument named in the message."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from dataprobes.attribution import AdamPreconditioner, GradientCapture, GradientStore, StoreWriter, score  # noqa: E402

CONFIG = {"k": 4}


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"eps": math.nan}, ValueError, "eps must be finite"),
        ({"eps": math.inf}, ValueError, "eps must be finite"),
        ({"eps": -1e-8}, ValueError, "eps must be >= 0"),
        ({"eps": "1e-8"}, TypeError, "eps must be a real number"),
        ({"bias_correction": math.nan}, ValueError, "bias_correction must be finite"),
        ({"bias_correction": "0.5"}, TypeError, "bias_correction must be a real number"),
        ({"bias_correction": {"w": None}}, TypeError, r"bias_correction\['w'\] must be a real number"),
        ({"bias_correction": 1.5}, ValueError, r"bias_correction must lie in \(0, 1\]"),
        ({"copy": "no"}, TypeError, "copy must be a bool"),
    ],
)
def test_adam_preconditioner_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        AdamPreconditioner({"w": torch.ones(2)}, **kwargs)


def test_adam_preconditioner_needs_a_mapping():
    with pytest.raises(TypeError, match="second_moments must be a mapping"):
        AdamPreconditioner([torch.ones(2)])  # type: ignore[arg-type]
    assert AdamPreconditioner({"w": torch.ones(2)}, eps=0).eps == 0.0


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"mode": 3, "k": 2}, TypeError, "mode must be one of"),
        ({"mode": "dense", "k": 2}, ValueError, "mode must be one of"),
        ({"k": 2, "projection": None}, TypeError, "projection must be one of"),
        ({"k": 2, "projection": "sparse"}, ValueError, "projection must be one of"),
        ({"mode": "flat", "k": 2, "scheme": 1}, TypeError, "scheme must be one of"),
        ({"k": 2, "backend": "cuda"}, ValueError, "backend must be one of"),
        ({"k": 2, "normalize": "yes"}, TypeError, "normalize must be a bool"),
        ({"k": 2, "include_bias": 1}, TypeError, "include_bias must be a bool"),
        ({"k": 2, "param_grads": None}, TypeError, "param_grads must be a bool"),
        ({"k": 2.5}, TypeError, "k_in must be an integer"),
    ],
)
def test_capture_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        GradientCapture(nn.Sequential(nn.Linear(3, 2)), **kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        ((2.5,), {}, TypeError, "dim must be a positive integer"),
        ((0,), {}, ValueError, "dim must be a positive integer"),
        ((4, 8), {}, TypeError, "dtype must be one of"),
        ((4, "int4"), {}, ValueError, "dtype must be one of"),
        ((4,), {"shard_rows": "10"}, TypeError, "shard_rows must be a positive integer"),
        ((4,), {"shard_rows": 0}, ValueError, "shard_rows must be a positive integer"),
        ((4,), {"rank": -1}, ValueError, "rank must be >= 0"),
        ((4,), {"rank": 1.0}, TypeError, "rank must be an integer"),
    ],
)
def test_store_writer_arguments(tmp_path: Path, args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        StoreWriter(tmp_path, *args, config=CONFIG, **kwargs)


def test_scoring_arguments(tmp_path: Path):
    with StoreWriter(tmp_path, 4, "int8", CONFIG) as w:
        w.append(np.arange(3), np.eye(3, 4, dtype=np.float32))
    s, q = GradientStore(tmp_path), np.ones((1, 4), np.float32)
    with pytest.raises(TypeError, match="method must be one of"):
        score(s, q, 1, query_config=CONFIG)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="block_rows must be a positive integer"):
        score(s, q, block_rows=1.5, query_config=CONFIG)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="damping must be a positive finite number"):
        score(s, q, "influence", damping="0.1", query_config=CONFIG)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="damping must be a positive finite number"):
        score(s, q, "influence", damping=math.nan, query_config=CONFIG)
    with pytest.raises(TypeError, match="block_rows must be a positive integer"):
        next(s.iter_blocks(2.0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="block_rows must be a positive integer"):
        next(s.iter_raw_blocks(0))
