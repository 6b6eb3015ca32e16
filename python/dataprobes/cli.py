"""The ``dataprobes`` command.

``dataprobes generate markov|iid ...`` samples a probe data set, writes it
atomically (``.npy``, or ``.parquet`` when pyarrow is installed) together with
the process that produced it (``<out>.process.npz``), and prints the process's
exact entropy rate and the typicality summary of what it wrote. An
interrupted run (Ctrl-C, a kill, a crash) resumes where it stopped when run
again with the same arguments; ``--restart`` starts over.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from ._validation import check_rows, unit_name
from .processes import IID, MarkovChain, _ChainProcess
from .processes.serialize import to_arrays
from .stats.typicality import TypicalityReport

_CHUNK_TOKENS = 1 << 24  # tokens per generation chunk (16 MiB at uint8)


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        v = int(text)
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {v}")
        return v

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dataprobes", description="Exact, fast data probes.")
    parser.add_argument("--version", action="version", version=f"dataprobes {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser(
        "generate",
        help="sample a probe data set and print its exact statistics",
        description="Sample a probe data set, write it atomically, and print the exact entropy rate "
        "and the typicality of what was written.",
    )
    gen.add_argument("process", choices=["markov", "iid"], help="process family")
    gen.add_argument("--vocab-size", type=_int_at_least(1), default=128, help="number of tokens (default 128)")
    gen.add_argument("--order", type=_int_at_least(1), default=1, help="Markov order k (markov only; default 1)")
    knob = gen.add_mutually_exclusive_group()
    knob.add_argument("--entropy-rate", type=float, help="target entropy rate per token, in the unit of --base")
    knob.add_argument("--concentration", type=float, help="Dirichlet concentration of each row (default 1.0)")
    gen.add_argument("--process-seed", type=_int_at_least(0), default=0, help="seed of the random process (default 0)")
    gen.add_argument("--num-sequences", "-n", type=_int_at_least(0), default=1000, help="sequences (default 1000)")
    gen.add_argument("--length", "-T", type=_int_at_least(0), default=512, help="tokens per sequence (default 512)")
    gen.add_argument("--seed", type=_int_at_least(0), default=0, help="sampling seed (default 0)")
    gen.add_argument("--start", type=_int_at_least(0), default=0, help="index of the first sequence (for shards)")
    gen.add_argument("--out", "-o", type=Path, required=True, help="output file: .npy or .parquet")
    gen.add_argument("--eps", type=float, default=0.05, help="half-width of the typical band (default 0.05)")
    gen.add_argument("--base", type=float, default=None, help="log base of reported rates (2 = bits; default nats)")
    gen.add_argument("--json", action="store_true", help="print the statistics as JSON")
    gen.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    gen.add_argument(
        "--restart", action="store_true", help="ignore the partial output of an interrupted run (default: resume it)"
    )

    demo = sub.add_parser(
        "demo",
        help="train a TinyGPT on a probe and judge its generations against the truth (needs torch)",
        description="The data-probes experiment end to end: train a small transformer on a Markov probe of known "
        "entropy rate, print its learning curve against the entropy-rate floor and the typicality of its "
        "generations at several temperatures, and write plots.",
    )
    from .demo import add_arguments

    add_arguments(demo)
    return parser


def _make_process(args: argparse.Namespace) -> _ChainProcess:
    scale = 1.0 if args.base is None else math.log(args.base)
    h = None if args.entropy_rate is None else args.entropy_rate * scale
    if args.process == "markov":
        return MarkovChain.random(
            args.vocab_size, args.order, entropy_rate=h, concentration=args.concentration, seed=args.process_seed
        )
    if args.order != 1:
        raise ValueError("--order applies to markov only")
    return IID.random(args.vocab_size, entropy_rate=h, concentration=args.concentration, seed=args.process_seed)


def _temp_beside(final: Path) -> Path:
    """A fresh temporary file next to ``final`` (same file system, so that
    ``os.replace`` is atomic), with the permissions a plain ``open`` gives."""
    from ._durable import temp_beside

    return temp_beside(final)


def _partial_paths(out: Path) -> tuple[Path, Path]:
    """The in-progress data file and its progress record, beside ``out``.

    Generation writes rows into ``.<name>.partial.npy`` chunk by chunk and
    records how many rows are complete in ``.<name>.partial.json`` (written
    atomically after the rows are flushed). A run killed at any point leaves
    both behind; the next run with the same process, shape, seed and start
    continues after the last recorded row (the sampler is addressable by
    sequence index, so the result is byte-identical to an uninterrupted run).
    Only the final rename makes ``out`` appear.
    """
    return out.with_name(f".{out.name}.partial.npy"), out.with_name(f".{out.name}.partial.json")


def _law_digest(process: _ChainProcess) -> str:
    """sha256 of the exact law (identifies the process across runs)."""
    law = process.transition if isinstance(process, MarkovChain) else process.probs  # type: ignore[attr-defined]
    h = hashlib.sha256(type(process).__name__.encode())
    h.update(repr(getattr(process, "order", 0)).encode())
    h.update(np.ascontiguousarray(law, dtype=np.float64).tobytes())
    return h.hexdigest()


def _rows_done(partial: Path, state: Path, key: dict[str, Any]) -> int:
    """Rows a previous run with the same ``key`` completed, or 0."""
    try:
        record = json.loads(state.read_text())
        arr = np.load(partial, mmap_mode="r")
    except (OSError, ValueError):
        return 0
    if {k: record.get(k) for k in key} != key or list(arr.shape) != key["shape"] or str(arr.dtype) != key["dtype"]:
        return 0
    done = record.get("rows_done")
    return done if isinstance(done, int) and 0 <= done <= key["shape"][0] else 0


def _new_array_file(path: Path, dtype: np.dtype, shape: tuple[int, int]) -> np.ndarray:
    """A writable ``.npy`` of ``shape`` (memory-mapped unless empty)."""
    if shape[0] * shape[1] == 0:
        np.save(path, np.empty(shape, dtype))
        return np.empty(shape, dtype)
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def _write_json_atomic(path: Path, obj: dict[str, Any]) -> None:
    from ._durable import write_json_atomic

    write_json_atomic(path, obj)


def run_generate(args: argparse.Namespace) -> dict[str, Any]:
    """Runs ``dataprobes generate``; returns the statistics to print.

    (Named apart from :func:`dataprobes.lm.generate`, which decodes from a
    model; ``dataprobes.cli.generate`` is its deprecated old name.)"""
    from tqdm import tqdm

    out: Path = args.out
    fmt = out.suffix.lower()
    if fmt not in (".npy", ".parquet"):
        raise ValueError(f"--out must end in .npy or .parquet, got {out.name!r}")
    if fmt == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ValueError("writing .parquet needs pyarrow: pip install 'dataprobes[parquet]'") from None
    if not args.eps > 0:
        raise ValueError(f"--eps must be > 0, got {args.eps}")
    if args.base is not None and not (args.base > 0 and args.base != 1):
        raise ValueError(f"--base must be > 0 and != 1, got {args.base}")
    check_rows(args.num_sequences, args.start, name="--start", count="--num-sequences")
    out.parent.mkdir(parents=True, exist_ok=True)

    process = _make_process(args)
    n, length = args.num_sequences, args.length
    dtype = process.sample(0, 0).dtype
    per_chunk = max(1, _CHUNK_TOKENS // max(length, 1))
    nll = np.empty(n)
    z = np.empty(n)
    partial, state = _partial_paths(out)
    key = {
        "law_sha256": _law_digest(process),
        "shape": [n, length],
        "dtype": str(dtype),
        "seed": args.seed,
        "start": args.start,
    }
    done = 0 if args.restart else _rows_done(partial, state, key)
    data: np.ndarray
    if done:
        print(f"dataprobes: resuming {out.name}: {done} of {n} sequences already written", file=sys.stderr)
        data = np.lib.format.open_memmap(partial, mode="r+")
    else:
        _write_json_atomic(state, {**key, "rows_done": 0})
        data = _new_array_file(partial, dtype, (n, length))
    with tqdm(
        total=n * length,
        unit="tok",
        unit_scale=True,
        desc="sampling",
        disable=args.no_progress or n * length < _CHUNK_TOKENS,
    ) as bar:
        for lo in range(0, n, per_chunk):
            hi = min(n, lo + per_chunk)
            if hi <= done:  # written before the interruption: only re-score it
                chunk = np.asarray(data[lo:hi])
            else:
                chunk = process.sample(hi - lo, length, seed=args.seed, start=args.start + lo)
                data[lo:hi] = chunk
                if isinstance(data, np.memmap):
                    data.flush()  # the rows reach the file before the record says so
                _write_json_atomic(state, {**key, "rows_done": hi})
            if length:
                rep = process.typicality(chunk, eps=args.eps, base=args.base)
                nll[lo:hi], z[lo:hi] = rep.nll_per_token, rep.z
            bar.update(chunk.size)
    del data
    if fmt == ".npy":
        os.replace(partial, out)
    else:
        tmp = _temp_beside(out)
        try:
            _write_parquet(tmp, np.load(partial, mmap_mode="r"))
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
        partial.unlink()
    state.unlink(missing_ok=True)

    _write_process(out.with_name(out.name + ".process.npz"), process, args)
    report = TypicalityReport(nll, z, process.entropy_rate(args.base), args.eps, unit_name(args.base))
    return {
        "process": repr(process),
        "out": str(out),
        "shape": [n, length],
        "dtype": str(dtype),
        "entropy_rate": process.entropy_rate(args.base),
        "varentropy_rate": process.varentropy_rate(args.base),
        "unit": unit_name(args.base),
        "typicality": report.summary() if n and length else None,
    }


def _write_process(path: Path, process: _ChainProcess, args: argparse.Namespace) -> None:
    """Saves the exact law next to the data (atomically), so the data set can
    be scored again later: ``dp.Process.load(path)`` gives the process back
    bit-identical (``MarkovChain(np.load(path)["transition"], order)`` the
    same law from its readable table)."""
    arrays: dict[str, Any]
    if isinstance(process, MarkovChain):
        arrays = {"transition": process.transition}
    else:
        assert isinstance(process, IID)
        arrays = {"probs": process.probs}
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    tmp = _temp_beside(path)
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays, **to_arrays(process), config=np.array(json.dumps(config)))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_parquet(path: Path, data: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    column = pa.FixedSizeListArray.from_arrays(pa.array(data.reshape(-1)), data.shape[1])
    pq.write_table(pa.table({"tokens": column}), path)


def _print_stats(stats: dict[str, Any]) -> None:
    u = stats["unit"]
    print(f"wrote {stats['out']}: {stats['shape'][0]} x {stats['shape'][1]} tokens ({stats['dtype']})")
    print(f"process: {stats['process']}")
    print(f"exact entropy rate: {stats['entropy_rate']:.6f} {u}/token (varentropy {stats['varentropy_rate']:.6f})")
    t = stats["typicality"]
    if t:
        print(
            f"mean NLL/token of the sample: {t['mean_nll_per_token']:.6f} {u} (sd {t['std_nll_per_token']:.4f}); "
            f"z-scores mean {t['mean_z']:+.3f} sd {t['std_z']:.3f}"
        )
        print(
            f"eps-typical (eps = {t['eps']:g} {u}): {t['fraction_typical']:.2%} of sequences "
            f"[below {t['count_below']} / inside {t['count_inside']} / above {t['count_above']}]"
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "generate":
            stats = run_generate(args)
            if args.json:
                print(json.dumps(stats, indent=2))
            else:
                _print_stats(stats)
        elif args.command == "demo":
            from .demo import run

            run(args)
    except (ValueError, TypeError) as exc:
        print(f"dataprobes: error: {exc}", file=sys.stderr)
        return 2
    return 0


def __getattr__(name: str) -> Any:
    if name == "generate":
        import warnings

        warnings.warn(
            "dataprobes.cli.generate is deprecated; use dataprobes.cli.run_generate", DeprecationWarning, stacklevel=2
        )
        return run_generate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    sys.exit(main())
