"""The ``dataprobes.attribution`` face: the workflow in ``__all__``, and every
name it exported before still importable from it (and from its submodule)."""

from __future__ import annotations

import importlib

import pytest

pytest.importorskip("torch")

import dataprobes.attribution as A  # noqa: E402

WORKFLOW = {
    "GradientCapture",
    "AdamPreconditioner",
    "GaussNewtonPreconditioner",
    "fit_preconditioner",
    "GradientStore",
    "StoreWriter",
    "CorruptShardError",
    "score",
    "TopK",
    "METHODS",
    "capture_to_store",
    "capture_batches",
    "capture_config",
    "attribution_callback",
}
# name -> submodule it lives in
MOVED = {
    "LayoutEntry": "targets",
    "TILE_ROWS": "scoring",
    "compress_flat": "exact",
    "flatten_grads": "exact",
    "per_example_grads_func": "exact",
    "config_diff": "store",
    "dequantize_int8": "kernels",
    "factored_project": "kernels",
    "projection_matrix": "kernels",
    "quantize_int8": "kernels",
    "sjlt": "kernels",
    "cosine_scores": "quality",
    "per_query_spearman": "quality",
    "precision_at_k": "quality",
}


def test_all_is_the_workflow():
    assert set(A.__all__) == WORKFLOW
    assert not set(A.__all__) & set(MOVED)


@pytest.mark.parametrize("name", sorted(MOVED))
def test_former_names_still_import(name):
    ns: dict = {}
    exec(f"from dataprobes.attribution import {name}", ns)  # noqa: S102 - the import statement users write
    assert ns[name] is getattr(importlib.import_module(f"dataprobes.attribution.{MOVED[name]}"), name)
    assert name in dir(A)


def test_old_module_paths():
    from dataprobes.attribution.capture import (  # noqa: F401
        AdamPreconditioner,
        GradientCapture,
        LayoutEntry,
        compress_flat,
        flatten_grads,
        per_example_grads_func,
    )
    from dataprobes.attribution.store import (  # noqa: F401
        FORMAT,
        FORMAT_VERSION,
        CorruptShardError,
        GradientStore,
        StoreWriter,
        config_diff,
        dequantize_int8,
        quantize_int8,
    )

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        A.nope  # noqa: B018
