"""Private helpers shared by the PyTorch parts of the library (``lm`` and
``attribution``): the one "needs PyTorch" guard and the counter hash
(:mod:`.counter_hash`, imported on demand since it needs torch)."""

from __future__ import annotations

import importlib


def require_torch(package: str) -> None:
    """Import torch, or raise the one ``ImportError`` telling how to install it."""
    try:
        importlib.import_module("torch")
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise ImportError(f"{package} needs PyTorch: pip install 'dataprobes[torch]'") from exc
