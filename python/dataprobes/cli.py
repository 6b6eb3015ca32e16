"""The ``dataprobes`` command.

``dataprobes generate markov|iid ...`` samples a probe data set, writes it
atomically (``.npy``, or ``.parquet`` when pyarrow is installed) together with
the process that produced it (``<out>.process.npz``), and prints the process's
exact entropy rate and the typicality summary of what it wrote. An
interrupted run (Ctrl-C, a kill, a crash) resumes where it stopped when run
again with the same arguments; ``--restart`` starts over. An existing output
is not overwritten unless ``--force``.

Every argument and the output location are checked before any work. Exit
status: 0 on success, 2 for a bad argument (the message names it), 1 when the
output cannot be written or a partial output is damaged (the message names
the user's path), 130 after Ctrl-C.
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


class CommandError(Exception):
    """A failure of the command that is not a bad argument (exit status 1):
    an output that cannot be written, a damaged partial output."""


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        v = int(text)
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {v}")
        return v

    parse.__name__ = "integer"  # argparse: "invalid integer value: 'abc'"
    return parse


def check_output(path: Path, flag: str, *, force: bool = False, directory: bool = False) -> None:
    """Refuses, before any work, an output ``path`` (the value of ``flag``)
    that cannot be written: a directory where a file is wanted (or a file
    where a directory is), an existing file without ``force``, a parent that
    cannot be created or written. Creates the missing parent directories (and
    ``path`` itself when ``directory``)."""
    if directory:
        if path.exists() and not path.is_dir():
            raise ValueError(f"{flag} {path} is a file, not a directory")
        folder = path
    else:
        if path.is_dir():
            raise ValueError(f"{flag} {path} is a directory; give a file name")
        if path.exists() and not force:
            raise ValueError(f"{flag} {path} exists; pass --force to overwrite it")
        folder = path.parent
    ancestor = folder
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise CommandError(f"cannot write {flag} {path}: {ancestor} is not a directory")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        import tempfile

        fd, probe = tempfile.mkstemp(prefix=".dataprobes-write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CommandError(f"cannot write {flag} {path}: {exc.strerror or exc}") from None


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
    gen.add_argument("--force", action="store_true", help="overwrite --out if it exists")

    demo = sub.add_parser(
        "demo",
        help="train a TinyGPT on a probe and judge its generations against the truth (needs torch)",
        description="The data-probes experiment end to end: train a small transformer on a Markov probe of known "
        "entropy rate, print its learning curve against the entropy-rate floor and the typicality of its "
        "generations at several temperatures, and write plots.",
    )
    from .demo import add_arguments

    add_arguments(demo)
    _add_select(sub)
    _add_dedup(sub)
    _add_experiment(sub)
    return parser


def _add_experiment(sub: Any) -> None:
    """``dataprobes experiment qa-sft``: the QA-SFT study on fact worlds
    (:func:`dataprobes.experiments.run_qa_sft`; needs torch)."""
    exp = sub.add_parser("experiment", help="reproducible experiments on probes (needs torch)")
    kinds = exp.add_subparsers(dest="experiment", required=True)
    qa = kinds.add_parser(
        "qa-sft",
        help="the '60 data points' QA-SFT study on a fact world",
        description="Pretrain a TinyGPT on a fact world, bucket facts by memory level, fine-tune on N QA "
        "examples per level and print the data-efficiency curves and the train x test level matrix.",
    )
    qa.add_argument("--quick", action="store_true", help="a small world and grid (about a minute)")
    qa.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    qa.add_argument("--out-dir", default=None, help="checkpoint directory: a re-run resumes from it")
    qa.add_argument("--plot", default=None, help="write the figure (PNG) here")
    qa.add_argument("--json", action="store_true", help="print the result as JSON instead of tables")
    qa.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a QASFTConfig field (repeatable; VALUE as JSON, e.g. --set num_facts=3000 "
        "--set template_coverage=3 --set 'ns=[15,60,\"all\"]')",
    )


def _config_overrides(items: list[str], config: type) -> dict[str, Any]:
    """``--set FIELD=VALUE`` pairs as keyword changes of the dataclass ``config``
    (VALUE parsed as JSON, lists become tuples; a bare word stays a string)."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(config)} - {"seeds"}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set takes FIELD=VALUE, got {item!r}")
        if key == "seeds":  # a field, but the command's own option sets it
            raise ValueError("--set: seeds is set by --seeds (comma-separated integers, e.g. --seeds 0,1)")
        if key not in fields:
            raise ValueError(f"--set: unknown field {key!r} of {config.__name__}; one of {sorted(fields)}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def _add_select(sub: Any) -> None:
    """``dataprobes select dsir``: DSIR importance resampling over corpus files
    (:func:`dataprobes.selection.dsir_select_corpus`)."""
    select = sub.add_parser("select", help="select training data from a large corpus", description="Data selection.")
    methods = select.add_subparsers(dest="method", required=True)
    dsir = methods.add_parser(
        "dsir",
        help="importance resampling on hashed n-grams (DSIR)",
        description="Select --num rows of --raw whose hashed n-grams look like --target (DSIR, Xie et al. 2023), "
        "streaming over .jsonl / .jsonl.gz / .parquet files or directories of shards. The rows are written in "
        "their original order to --out with <out>.manifest.json; an interrupted run resumes when run again with "
        "the same arguments (--restart starts over).",
    )
    dsir.add_argument("--target", required=True, help="target corpus: a .jsonl/.jsonl.gz/.parquet file or directory")
    dsir.add_argument("--raw", required=True, help="raw corpus to select from (same kinds as --target)")
    dsir.add_argument("--num", "-n", type=_int_at_least(0), required=True, help="rows to select")
    dsir.add_argument("--out", "-o", type=Path, required=True, help="output: .jsonl, .jsonl.gz or .parquet")
    dsir.add_argument("--top-k", action="store_true", help="keep the highest weights instead of resampling")
    dsir.add_argument("--seed", type=_int_at_least(0), default=0, help="seed of the resampling noise (default 0)")
    dsir.add_argument("--text-field", default="text", help="column holding the text or token ids (default text)")
    dsir.add_argument("--num-buckets", type=_int_at_least(1), default=10000, help="hash buckets (default 10000)")
    dsir.add_argument("--ngrams", type=_int_at_least(1), default=2, help="longest n-gram (default 2)")
    dsir.add_argument("--hash", choices=["fast", "sha256"], default="fast", help="n-gram hash (default fast)")
    dsir.add_argument(
        "--word-classes",
        choices=["nltk-regex", "python-re"],
        default="nltk-regex",
        help="the tokeniser's \\w and \\s: nltk >= 3.10's regex engine (default) or Python's re (nltk < 3.10)",
    )
    dsir.add_argument(
        "--min-example-length", type=_int_at_least(0), default=100, help="rows with fewer words are never selected"
    )
    dsir.add_argument("--chunk-rows", type=_int_at_least(1), default=16384, help="rows per chunk (default 16384)")
    dsir.add_argument(
        "--state-dir", type=Path, default=None, help="where to keep the resumable state (default: beside --out)"
    )
    dsir.add_argument("--engine", choices=["local", "ray"], default="local", help="local (default) or ray (Ray Data)")
    dsir.add_argument("--json", action="store_true", help="print the summary as JSON")
    dsir.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    dsir.add_argument("--restart", action="store_true", help="ignore the state of an interrupted run")
    dsir.add_argument("--force", action="store_true", help="overwrite --out if it exists")


def run_select_dsir(args: argparse.Namespace) -> dict[str, Any]:
    """Runs ``dataprobes select dsir``; returns the summary to print. The
    state of a local run lives in ``--state-dir`` (default
    ``.<out>.dsir-state`` beside ``--out``, removed after success)."""
    import shutil

    from .selection.corpus import dsir_select_corpus, saved_phase

    out: Path = args.out
    default_state = args.state_dir is None
    state_dir = None
    if args.engine == "local":
        state_dir = out.with_name(f".{out.name}.dsir-state") if default_state else args.state_dir
    elif not default_state:
        raise ValueError("--state-dir applies to --engine local only")
    resumable = state_dir is not None and (state_dir / "dsir_state.npz").exists() and not args.restart
    # A run that died after renaming its rows over --out (pass "write") or
    # before removing its state ("done") left --out behind: resuming it
    # (same arguments, else the state is refused before anything is written)
    # rewrites the same rows.
    finishing = resumable and state_dir is not None and saved_phase(state_dir) in ("write", "done")
    check_output(out, "--out", force=args.force or finishing)
    if resumable:
        print(f"dataprobes: resuming the selection into {out.name} from {state_dir}", file=sys.stderr)
    try:
        result = dsir_select_corpus(
            args.raw,
            args.target,
            args.num,
            out,
            text_field=args.text_field,
            top_k=args.top_k,
            seed=args.seed,
            num_buckets=args.num_buckets,
            ngrams=args.ngrams,
            hash=args.hash,
            min_example_length=args.min_example_length,
            word_classes=args.word_classes,
            chunk_rows=args.chunk_rows,
            state_dir=state_dir,
            restart=args.restart,
            overwrite=args.force or finishing,
            progress=not args.no_progress,
            engine=args.engine,
        )
    except OSError as exc:
        raise CommandError(f"cannot write --out {out}: {exc.strerror or exc}") from exc
    if default_state and state_dir is not None:
        shutil.rmtree(state_dir, ignore_errors=True)
    return {
        "summary": result.summary(),
        "out": str(out),
        "manifest": str(result.manifest_path),
        "num_selected": int(result.indices.size),
        "num_rows": result.num_rows,
        "num_eligible": result.num_eligible,
    }


def _add_dedup(sub: Any) -> None:
    """``dataprobes dedup``: MinHash LSH near-duplicate clusters of a corpus
    (:func:`dataprobes.metrics.near_duplicates_corpus`)."""
    dedup = sub.add_parser(
        "dedup",
        help="find near-duplicate rows of a corpus (MinHash LSH)",
        description="Cluster the near-duplicate rows of a .jsonl/.jsonl.gz/.parquet file or directory by MinHash "
        "LSH and write the clusters (one JSON line each: cluster, size, rows; the first row is the one to keep).",
    )
    dedup.add_argument("input", help="corpus: a .jsonl/.jsonl.gz/.parquet file or a directory of them")
    dedup.add_argument("--out", "-o", type=Path, required=True, help="clusters file to write (.jsonl)")
    dedup.add_argument("--threshold", type=float, default=0.8, help="Jaccard threshold in (0, 1] (default 0.8)")
    dedup.add_argument("--num-perm", type=_int_at_least(1), default=128, help="MinHash permutations (default 128)")
    dedup.add_argument("--ngram", type=_int_at_least(1), default=5, help="shingle size (default 5)")
    dedup.add_argument("--bands", type=_int_at_least(1), default=None, help="LSH bands (default: from threshold)")
    dedup.add_argument("--rows", type=_int_at_least(1), default=None, help="rows per band (default: from threshold)")
    dedup.add_argument("--seed", type=_int_at_least(0), default=1, help="MinHash seed (default 1)")
    dedup.add_argument("--shingle", choices=["word", "char", "token"], default=None, help="shingle units")
    dedup.add_argument("--compat", choices=["datasketch", "datasketch-legacy", "datasketch-affine64"], default=None)
    dedup.add_argument("--no-verify", action="store_true", help="keep every LSH candidate pair unverified")
    dedup.add_argument("--text-field", default="text", help="column holding the text or token ids (default text)")
    dedup.add_argument("--chunk-rows", type=_int_at_least(1), default=16384, help="rows per chunk (default 16384)")
    dedup.add_argument("--json", action="store_true", help="print the summary as JSON")
    dedup.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    dedup.add_argument("--force", action="store_true", help="overwrite --out if it exists")


def run_dedup(args: argparse.Namespace) -> dict[str, Any]:
    """Runs ``dataprobes dedup``; returns the summary to print."""
    from .metrics.dedup import near_duplicates_corpus, write_clusters

    out: Path = args.out
    check_output(out, "--out", force=args.force)
    result = near_duplicates_corpus(
        args.input,
        text_field=args.text_field,
        threshold=args.threshold,
        bands=args.bands,
        rows=args.rows,
        num_perm=args.num_perm,
        ngram=args.ngram,
        seed=args.seed,
        shingle=args.shingle,
        compat=args.compat,
        verify=not args.no_verify,
        chunk_rows=args.chunk_rows,
        progress=not args.no_progress,
    )
    try:
        write_clusters(result, out)
    except OSError as exc:
        raise CommandError(f"cannot write --out {out}: {exc.strerror or exc}") from exc
    return {
        "summary": result.summary(),
        "out": str(out),
        "num_rows": int(result.labels.size),
        "num_clusters": len(result.clusters),
        "num_duplicates": result.num_duplicates,
        "bands": result.bands,
        "rows": result.rows,
    }


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
    Only the final rename makes ``out`` appear. The record also holds an
    xxh3-64 checksum of every completed chunk of rows; a resumed run checks
    them and stops if the partial file was changed or damaged (``--restart``
    starts over).
    """
    return out.with_name(f".{out.name}.partial.npy"), out.with_name(f".{out.name}.partial.json")


def _law_digest(process: _ChainProcess) -> str:
    """sha256 of the exact law (identifies the process across runs)."""
    law = process.transition if isinstance(process, MarkovChain) else process.probs  # type: ignore[attr-defined]
    h = hashlib.sha256(type(process).__name__.encode())
    h.update(repr(getattr(process, "order", 0)).encode())
    h.update(np.ascontiguousarray(law, dtype=np.float64).tobytes())
    return h.hexdigest()


def _chunk_digest(rows: np.ndarray) -> str:
    """xxh3-64 (hex) of the bytes of a chunk of rows, as written."""
    import xxhash

    return xxhash.xxh3_64_hexdigest(np.ascontiguousarray(rows).tobytes())


def _rows_done(partial: Path, state: Path, key: dict[str, Any], out: Path) -> tuple[int, list[str]]:
    """Rows a previous run with the same ``key`` completed and the checksums
    of their chunks, or ``(0, [])``. ``CommandError`` when a completed chunk no
    longer matches its checksum (the partial file was changed or damaged)."""
    try:
        record = json.loads(state.read_text())
        arr = np.load(partial, mmap_mode="r")
    except (OSError, ValueError):
        return 0, []
    if not isinstance(record, dict) or {k: record.get(k) for k in key} != key:
        return 0, []
    if list(arr.shape) != key["shape"] or str(arr.dtype) != key["dtype"]:
        return 0, []
    done, digests, per = record.get("rows_done"), record.get("xxh3"), key["chunk_rows"]
    if not (isinstance(done, int) and 0 <= done <= key["shape"][0] and isinstance(digests, list)):
        return 0, []
    if len(digests) != -(-done // per) or not all(isinstance(d, str) for d in digests):
        return 0, []
    for c, digest in enumerate(digests):
        lo, hi = c * per, min(done, (c + 1) * per)
        if _chunk_digest(arr[lo:hi]) != digest:
            raise CommandError(
                f"the partial output of an interrupted run of {out} ({partial.name}) does not match its checksum "
                f"at rows {lo}..{hi - 1}: it was changed or damaged; run again with --restart to start over"
            )
    return done, digests


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
    if not args.eps > 0 or not math.isfinite(args.eps):
        raise ValueError(f"--eps must be > 0 and finite, got {args.eps}")
    if args.base is not None and not (args.base > 0 and args.base != 1 and math.isfinite(args.base)):
        raise ValueError(f"--base must be > 0 and != 1, got {args.base}")
    check_rows(args.num_sequences, args.start, name="--start", count="--num-sequences")
    process = _make_process(args)  # checks --entropy-rate / --concentration / --order
    check_output(out, "--out", force=getattr(args, "force", False))
    try:
        return _generate(args, process, out, fmt, tqdm)
    except OSError as exc:  # a full disk, a vanished directory: name the user's path, not a temporary
        raise CommandError(f"cannot write --out {out}: {exc.strerror or exc}") from exc


def _generate(args: argparse.Namespace, process: _ChainProcess, out: Path, fmt: str, tqdm: Any) -> dict[str, Any]:
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
        "chunk_rows": per_chunk,
    }
    done, digests = (0, []) if args.restart else _rows_done(partial, state, key, out)
    data: np.ndarray
    if done:
        print(f"dataprobes: resuming {out.name}: {done} of {n} sequences already written", file=sys.stderr)
        data = np.lib.format.open_memmap(partial, mode="r+")
    else:
        _write_json_atomic(state, {**key, "rows_done": 0, "xxh3": []})
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
            if hi <= done:  # written before the interruption (checksum verified): only re-score it
                chunk = np.asarray(data[lo:hi])
            else:
                chunk = process.sample(hi - lo, length, seed=args.seed, start=args.start + lo)
                data[lo:hi] = chunk
                if isinstance(data, np.memmap):
                    data.flush()  # the rows reach the file before the record says so
                digests.append(_chunk_digest(chunk))
                _write_json_atomic(state, {**key, "rows_done": hi, "xxh3": digests})
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
        "process": _describe(process, args.base),
        "out": str(out),
        "shape": [n, length],
        "dtype": str(dtype),
        "entropy_rate": process.entropy_rate(args.base),
        "varentropy_rate": process.varentropy_rate(args.base),
        "unit": unit_name(args.base),
        "typicality": report.summary() if n and length else None,
    }


def _describe(process: _ChainProcess, base: float | None) -> str:
    """The process's repr with its entropy rate in the unit of ``base`` (the
    repr says nats), so that every figure printed is in one unit."""
    text = repr(process)
    if unit_name(base) == "nats":
        return text
    return text.replace(
        f"entropy_rate={process.entropy_rate():.6f} nats",
        f"entropy_rate={process.entropy_rate(base):.6f} {unit_name(base)}",
    )


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
    """The statistics, every figure in the unit of ``--base`` (z-scores are unitless)."""
    u = stats["unit"]
    print(f"wrote {stats['out']}: {stats['shape'][0]} x {stats['shape'][1]} tokens ({stats['dtype']})")
    print(f"process: {stats['process']}")
    print(
        f"exact entropy rate: {stats['entropy_rate']:.6f} {u}/token "
        f"(varentropy {stats['varentropy_rate']:.6f} {u}²/token)"
    )
    t = stats["typicality"]
    if t:
        print(
            f"mean NLL/token of the sample: {t['mean_nll_per_token']:.6f} {u} (sd {t['std_nll_per_token']:.4f} {u}); "
            f"z-scores mean {t['mean_z']:+.3f} sd {t['std_z']:.3f}"
        )
        print(
            f"eps-typical (eps = {t['eps']:g} {u}): {t['fraction_typical']:.2%} of sequences "
            f"[below {t['count_below']} / inside {t['count_inside']} / above {t['count_above']}]"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (0 success, 2 a bad
    argument, 1 an output that cannot be written, 130 Ctrl-C)."""
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
        elif args.command == "select":
            summary = run_select_dsir(args)
            print(json.dumps(summary, indent=2) if args.json else summary["summary"])
        elif args.command == "dedup":
            summary = run_dedup(args)
            print(json.dumps(summary, indent=2) if args.json else summary["summary"])
        elif args.command == "experiment":
            from .experiments.qa_sft import QASFTConfig, run_qa_sft

            try:
                seeds = tuple(int(v) for v in args.seeds.split(","))
            except ValueError:
                raise ValueError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
            changes = _config_overrides(args.set, QASFTConfig)
            cfg = QASFTConfig.quick(seeds=seeds, **changes) if args.quick else QASFTConfig(seeds=seeds, **changes)
            res = run_qa_sft(cfg, out_dir=args.out_dir, progress=sys.stderr.isatty())
            print(json.dumps(res.to_dict(), indent=2) if args.json else res.to_table())
            if args.plot:
                res.plot(args.plot)
    except (ValueError, TypeError) as exc:
        print(f"dataprobes: error: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"dataprobes: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.command in ("generate", "select"):
            print(
                "\ndataprobes: interrupted; run the same command again to resume where it stopped "
                "(--restart to start over)",
                file=sys.stderr,
            )
        else:
            print("\ndataprobes: interrupted", file=sys.stderr)
        return 130
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
