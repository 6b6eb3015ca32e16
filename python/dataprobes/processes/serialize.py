"""Saving processes by their exact law: ``.npz`` archives without pickles.

A saved process is the JSON description of its constructor call (under the
key ``dataprobes_process``) plus one array entry per table argument, so the
file opens anywhere with ``np.load`` and loading never runs pickled code.
Components of a :class:`~dataprobes.Mixture`, :class:`~dataprobes.Duplicated`
or :class:`~dataprobes.TokenNoise`, and a :class:`~dataprobes.FactWorld`'s
background, are nested in the description (a FactWorld's ``names`` mapping as
a ``{"dict": ...}`` entry). Loading
calls the constructor on the same arguments, so the process comes back
bit-identical (same samples for every seed, same scores).

The command line's ``<out>.process.npz`` carries the same description next to
its readable tables (``transition`` or ``probs``) and its ``config``; files
written before the description existed load from those tables (the same law
up to the last bit of each renormalised row).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .base import Process

__all__ = ["load", "save", "to_arrays"]

#: The archive key holding the description, and its format version.
KEY = "dataprobes_process"
FORMAT = 1


def _classes() -> dict[str, type[Process]]:
    from .composite import Duplicated, Mixture
    from .facts import FactWorld
    from .hmm import HMM
    from .incontext import InContextMarkov
    from .markov import IID, MarkovChain
    from .noise import TokenNoise

    return {c.__name__: c for c in (MarkovChain, IID, HMM, InContextMarkov, Mixture, Duplicated, TokenNoise, FactWorld)}


def _encode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, Process):
        name = type(value).__name__
        law = value.__dict__.get("_law")
        if law is None or _classes().get(name) is not type(value):
            raise TypeError(f"cannot save a {name}: only the library's own process classes are saved by their law")
        return {"process": name, "args": {k: _encode(v, arrays) for k, v in law.items()}}
    if isinstance(value, np.ndarray):
        key = f"array{len(arrays)}"
        arrays[key] = value
        return {"array": key}
    if isinstance(value, (list, tuple)):
        return {"list": [_encode(v, arrays) for v in value]}
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": {k: _encode(v, arrays) for k, v in value.items()}}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot save an argument of type {type(value).__name__}")


def _decode(value: Any, archive: Any, classes: dict[str, type[Process]]) -> Any:
    if isinstance(value, dict):
        if "process" in value:
            cls = classes.get(value["process"])
            if cls is None:
                raise ValueError(f"unknown process class {value['process']!r} in the saved description")
            return cls(**{k: _decode(v, archive, classes) for k, v in value["args"].items()})
        if "array" in value:
            return archive[value["array"]]
        if "list" in value:
            return [_decode(v, archive, classes) for v in value["list"]]
        if "dict" in value:
            return {k: _decode(v, archive, classes) for k, v in value["dict"].items()}
        raise ValueError(f"malformed saved description: {value!r}")
    return value


def to_arrays(process: Process) -> dict[str, Any]:
    """The archive entries describing ``process`` exactly (for ``np.savez``)."""
    if not isinstance(process, Process):
        raise TypeError(f"process must be a dataprobes Process, got {type(process).__name__}")
    arrays: dict[str, np.ndarray] = {}
    description = {"format": FORMAT, "process": _encode(process, arrays)}
    return {KEY: np.array(json.dumps(description)), **arrays}


def save(process: Process, path: Any) -> None:
    """Writes ``process`` to ``path`` (``.npz`` contents whatever the name)."""
    entries = to_arrays(process)
    with open(Path(path), "wb") as f:
        np.savez(f, **entries)


def load(path: Any) -> Process:
    """The process saved at ``path`` (by :func:`save` or the command line)."""
    with np.load(Path(path), allow_pickle=False) as archive:
        files = set(archive.files)
        if KEY in files:
            description = json.loads(str(archive[KEY]))
            if description.get("format") != FORMAT:
                raise ValueError(f"{path}: saved process format {description.get('format')!r} is not {FORMAT}")
            out = _decode(description["process"], archive, _classes())
            assert isinstance(out, Process)
            return out
        # written by the command line before the description existed
        config = json.loads(str(archive["config"])) if "config" in files else {}
        from .markov import IID, MarkovChain

        if "transition" in files:
            return MarkovChain(archive["transition"], order=int(config.get("order", 1)))
        if "probs" in files:
            return IID(archive["probs"])
    raise ValueError(f"{path} holds no saved dataprobes process")
