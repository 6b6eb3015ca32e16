"""DSIR at corpus scale: streaming, resumable importance resampling over files.

:func:`dsir_select_corpus` runs the DSIR selection of
:func:`dataprobes.selection.dsir_select` (Xie et al., NeurIPS 2023; docs/math.md,
"DSIR") over corpora that do not fit in memory: JSON Lines (``.jsonl``,
``.jsonl.gz``), Parquet, a directory of such shards, or a Hugging Face
``datasets.Dataset`` / ``IterableDataset``. Rows are read in chunks; nothing but
the bucket counts and the running top-``num`` is held in memory.

- Pass 1 sums the hashed n-gram counts of the target and of the raw corpus
  chunk by chunk; the fitted models are ``γ = c_target / Σ c_target`` and
  ``β = c_raw / Σ c_raw`` and the log ratio ``log(γ + 1e-8) − log(β + 1e-8)``.
- Pass 2 computes each raw row's log importance weight
  ``w_i = Σ_j h_ij (log(γ_j+1e-8) − log(β_j+1e-8))`` (``-inf`` for rows shorter
  than ``min_example_length`` words, which are never selected), adds the Gumbel
  noise of its *global* row index ``g_i = gumbel_noise(i, seed)`` (none with
  ``top_k=True``) and keeps the ``num`` largest keys ``w_i + g_i`` (ties to the
  lower index). The Gumbel-top-k trick makes this a sample without replacement
  from ``softmax(w)``; since the noise depends only on ``(seed, i)``, the chunk
  size never changes the selection, which equals ``dsir_select`` on the whole
  corpus.
- Pass 3 writes the selected rows in their original order (JSON Lines rows
  byte for byte; Parquet and ``datasets`` rows as Parquet or JSON Lines) to a
  temporary file renamed over ``out`` when complete, then the manifest
  ``<out>.manifest.json`` (selected indices, parameters, hash and seed, input
  fingerprints).

With ``state_dir``, the running state (the nonzero bucket counts, the
top-``num`` arrays, the pass and the row offset) is written atomically after
every chunk; re-running with
the same arguments resumes where the last run stopped and gives the identical
selection (any ``chunk_rows``), and different arguments are refused. The layout
and the Ray Data engine (:mod:`dataprobes.selection.ray_data`) are described in
docs/architecture.md, "DSIR at corpus scale".
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._durable import fsync_dir, write_atomic, write_json_atomic
from .._validation import check_int, check_seed

__all__ = ["CorpusSelection", "dsir_select_corpus"]

_STATE_VERSION = 2  # 2: counts stored sparse (nonzero buckets and their counts)
_STATE_FILE = "dsir_state.npz"
_PHASES = ("fit_target", "fit_raw", "weigh", "write", "done")
_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson", ".ndjson.gz")
_PARQUET_SUFFIXES = (".parquet",)
_WRITE_BATCH = 8192

# Called as ``_after_checkpoint(phase, rows_done)`` after each state write
# (tests interrupt a run there).
_after_checkpoint: Callable[[str, int], None] | None = None


@dataclass(frozen=True)
class CorpusSelection:
    """The outcome of :func:`dsir_select_corpus` (and of the Ray engine).

    ``indices``: int64, the selected global row indices of ``raw``, ascending;
    ``log_weights``: their log importance weights (float64, finite);
    ``num_rows``: rows in ``raw``; ``num_eligible``: rows with a finite weight
    (at least ``min_example_length`` words; fewer than ``num`` of them means
    fewer rows selected); ``out`` / ``manifest_path``: where the rows and the
    manifest were written (``None`` without ``out``); ``manifest``: the
    manifest's content.
    """

    indices: np.ndarray
    log_weights: np.ndarray
    num_rows: int
    num_eligible: int
    out: Path | None
    manifest_path: Path | None
    manifest: dict[str, Any] = field(repr=False)

    def summary(self) -> str:
        """One line: how many rows were selected of how many, and where to."""
        how = "top-k" if self.manifest["params"]["top_k"] else f"importance resampling (seed {self.manifest['seed']})"
        where = f" -> {self.out}" if self.out is not None else ""
        return (
            f"selected {self.indices.size} of {self.num_rows} rows ({self.num_eligible} long enough) "
            f"by DSIR {how}{where}"
        )


# --------------------------------------------------------------------------- sources


def _is_hf_dataset(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "datasets" and type(obj).__name__ in ("Dataset", "IterableDataset")


def _suffix_kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(_JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    return None


def resolve_files(name: str, value: Any) -> tuple[str, list[Path]]:
    """The kind (``"jsonl"`` / ``"parquet"``) and the sorted data files of a
    path argument: one file, or a directory of shards of one kind (files whose
    names start with ``.`` or ``_`` are skipped)."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path or a datasets.Dataset / IterableDataset, got {type(value).__name__}")
    path = Path(value)
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "_")) and _suffix_kind(p)
        )
        if not files:
            raise ValueError(f"{name}: directory {path} holds no .jsonl, .jsonl.gz or .parquet files")
        kinds = {_suffix_kind(p) for p in files}
        if len(kinds) > 1:
            raise ValueError(f"{name}: directory {path} mixes JSON Lines and Parquet files; keep one kind")
        return str(kinds.pop()), files
    if not path.exists():
        raise ValueError(f"{name}: no such file or directory: {path}")
    kind = _suffix_kind(path)
    if kind is None:
        raise ValueError(f"{name}: {path.name} is not .jsonl, .jsonl.gz, .json, .ndjson or .parquet")
    return kind, [path]


def _open_text(path: Path) -> Any:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


class _Source:
    """A corpus read in row order: items of ``text_field`` chunk by chunk,
    whole rows for writing, and a fingerprint that identifies the input."""

    kind: str

    def __init__(self, name: str, value: Any, text_field: str) -> None:
        self.name, self.text_field = name, text_field
        if _is_hf_dataset(value):
            self.kind, self.dataset = "dataset", value
            self.files: list[Path] = []
            features = getattr(value, "features", None)
            if features is not None and text_field not in features:
                raise ValueError(f"{name} has no column {text_field!r} (text_field); columns: {sorted(features)}")
        else:
            self.kind, self.files = resolve_files(name, value)
            self.dataset = None
            self._check_field()

    def _check_field(self) -> None:
        """Refuses, before any work, files without ``text_field``: every
        Parquet schema, and the first row of the first JSON Lines file."""
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            for path in self.files:
                names = pq.ParquetFile(path).schema_arrow.names
                if self.text_field not in names:
                    raise ValueError(
                        f"{self.name}: {path.name} has no column {self.text_field!r} (text_field); columns: {names}"
                    )
            return
        with _open_text(self.files[0]) as f:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    try:
                        record = json.loads(line)
                    except ValueError as exc:
                        raise ValueError(
                            f"{self.name}: {self.files[0].name} line {lineno} is not JSON: {exc}"
                        ) from None
                    if not isinstance(record, dict) or self.text_field not in record:
                        raise ValueError(
                            f"{self.name}: {self.files[0].name} line {lineno} has no field {self.text_field!r} "
                            "(text_field)"
                        )
                    return

    # -- identity
    def fingerprint(self) -> dict[str, Any]:
        """Names, sizes and modification times of the files (or the
        ``datasets.Dataset`` fingerprint): a changed input is not resumed. An
        ``IterableDataset`` has no fingerprint; resuming trusts it is the same."""
        if self.dataset is not None:
            fp = getattr(self.dataset, "_fingerprint", None)
            return {"kind": "dataset", "type": type(self.dataset).__name__, "fingerprint": fp}
        return {
            "kind": self.kind,
            "files": [{"name": p.name, "size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns} for p in self.files],
        }

    def num_rows(self) -> int | None:
        """Rows, where known without reading the data (Parquet metadata, a
        ``datasets.Dataset``)."""
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            return sum(pq.ParquetFile(p).metadata.num_rows for p in self.files)
        if self.dataset is not None and hasattr(self.dataset, "__len__"):
            return len(self.dataset)
        return None

    # -- items
    def _values(self, values: list[Any], first_row: int) -> list[Any]:
        """``values`` with a null (a row without ``text_field``) refused."""
        if any(v is None for v in values):
            k = next(i for i, v in enumerate(values) if v is None)
            raise ValueError(f"{self.name}: row {first_row + k} has no {self.text_field!r} (text_field) value")
        return values

    def _parse(self, lines: list[bytes], linenos: list[int], path: Path) -> list[Any]:
        """The ``text_field`` values of JSON lines (one ``json.loads`` of the
        whole block; on an error, line by line to name the culprit)."""
        try:
            records = json.loads(b"[" + b",".join(lines) + b"]")
            if len(records) != len(lines):
                raise ValueError("a line holds more than one value")
        except ValueError:
            records = []
            for line, lineno in zip(lines, linenos, strict=True):
                try:
                    records.append(json.loads(line))
                except ValueError as exc:
                    raise ValueError(f"{self.name}: {path.name} line {lineno} is not JSON: {exc}") from None
        field_ = self.text_field
        out = []
        for record, lineno in zip(records, linenos, strict=True):
            value = record.get(field_) if isinstance(record, dict) else None
            if value is None:
                raise ValueError(f"{self.name}: {path.name} line {lineno} has no {field_!r} (text_field) value")
            out.append(value)
        return out

    def blocks(self, start: int) -> Iterator[list[Any]]:
        """Lists of the ``text_field`` values of consecutive rows, from global
        row ``start`` on."""
        field_ = self.text_field
        if self.kind == "jsonl":
            row = 0
            for path in self.files:
                with _open_text(path) as f:
                    lines: list[bytes] = []
                    linenos: list[int] = []
                    for lineno, line in enumerate(f, 1):
                        if line.isspace() or not line:
                            continue
                        if row >= start:
                            lines.append(line)
                            linenos.append(lineno)
                            if len(lines) >= _WRITE_BATCH:
                                yield self._parse(lines, linenos, path)
                                lines, linenos = [], []
                        row += 1
                    if lines:
                        yield self._parse(lines, linenos, path)
        elif self.kind == "parquet":
            import pyarrow.parquet as pq

            row = 0
            for path in self.files:
                pf = pq.ParquetFile(path)
                if field_ not in pf.schema_arrow.names:
                    raise ValueError(f"{self.name}: {path.name} has no column {field_!r} (text_field)")
                groups: list[int] = []
                skip = 0
                for g in range(pf.num_row_groups):
                    n = pf.metadata.row_group(g).num_rows
                    if row + n <= start:
                        row += n
                        continue
                    if not groups:
                        skip = max(0, start - row)
                    groups.append(g)
                    row += n
                if not groups:
                    continue
                for batch in pf.iter_batches(batch_size=_WRITE_BATCH, row_groups=groups, columns=[field_]):
                    values = batch.column(0).to_pylist()
                    if skip:
                        values, skip = values[skip:], max(0, skip - len(values))
                    if values:
                        yield values
        else:
            ds = self.dataset
            if hasattr(ds, "__len__"):
                col = ds.select_columns([field_])
                for lo in range(start, len(ds), _WRITE_BATCH):
                    yield col[lo : lo + _WRITE_BATCH][field_]
            else:
                rows = itertools.islice(iter(ds), start, None)
                while True:
                    chunk = list(itertools.islice(rows, _WRITE_BATCH))
                    if not chunk:
                        return
                    yield [r[field_] for r in chunk]

    def chunks(self, start: int, chunk_rows: int) -> Iterator[tuple[int, list[Any]]]:
        """``(first_row, items)`` of exactly ``chunk_rows`` rows (the last may
        be shorter), from global row ``start`` on."""
        lo = pos = start
        pending: list[Any] = []
        for block in self.blocks(start):
            self._values(block, pos)
            pos += len(block)
            i = 0
            if pending:
                i = chunk_rows - len(pending)
                pending.extend(block[:i])
                if len(pending) < chunk_rows:
                    continue
                yield lo, pending
                lo += chunk_rows
            while len(block) - i >= chunk_rows:
                yield lo, block[i : i + chunk_rows]
                lo += chunk_rows
                i += chunk_rows
            pending = block[i:]
        if pending:
            yield lo, pending

    # -- rows for writing
    def selected_rows(self, indices: np.ndarray) -> Iterator[Any]:
        """The selected rows in order: raw lines (``bytes``) from JSON Lines,
        ``pyarrow`` tables from Parquet and ``datasets``."""
        wanted = np.asarray(indices, dtype=np.int64)
        if self.kind == "jsonl":
            row, k = 0, 0
            for path in self.files:
                with _open_text(path) as f:
                    for line in f:
                        if k >= wanted.size:
                            return
                        if not line.strip():
                            continue
                        if row == wanted[k]:
                            yield line if line.endswith(b"\n") else line + b"\n"
                            k += 1
                        row += 1
        elif self.kind == "parquet":
            import pyarrow.parquet as pq

            row = 0
            for path in self.files:
                for batch in pq.ParquetFile(path).iter_batches(batch_size=_WRITE_BATCH):
                    lo, hi = np.searchsorted(wanted, [row, row + batch.num_rows])
                    if hi > lo:
                        import pyarrow as pa

                        yield pa.Table.from_batches([batch]).take(wanted[lo:hi] - row)
                    row += batch.num_rows
        else:
            import pyarrow as pa

            ds = self.dataset
            if hasattr(ds, "__len__"):
                picked = ds.select(wanted).with_format("arrow")
                for lo in range(0, len(picked), _WRITE_BATCH):
                    yield picked[lo : lo + _WRITE_BATCH]
            else:
                schema = ds.features.arrow_schema if getattr(ds, "features", None) is not None else None
                buf: list[dict[str, Any]] = []
                k = 0
                for row, record in enumerate(ds):
                    if k >= wanted.size:
                        break
                    if row == wanted[k]:
                        buf.append(record)
                        k += 1
                        if len(buf) >= _WRITE_BATCH:
                            yield pa.Table.from_pylist(buf, schema=schema)
                            buf = []
                if buf:
                    yield pa.Table.from_pylist(buf, schema=schema)


# --------------------------------------------------------------------------- output


def _out_kind(out: Path, source_kind: str) -> str:
    kind = _suffix_kind(out)
    if kind is None:
        raise ValueError(f"out must end in .jsonl, .jsonl.gz or .parquet, got {out.name!r}")
    if kind == "parquet" and source_kind == "jsonl":
        raise ValueError("out: JSON Lines input is written as JSON Lines (.jsonl or .jsonl.gz), not Parquet")
    return kind


def manifest_path(out: Path) -> Path:
    """Where the manifest of ``out`` goes: ``<out>.manifest.json``."""
    return out.with_name(out.name + ".manifest.json")


def _write_rows(source: _Source, indices: np.ndarray, out: Path, progress: bool) -> None:
    """Writes the selected rows to a temporary file beside ``out`` (a fixed
    name, so a resumed run overwrites an interrupted one's), fsyncs it and
    renames it over ``out``."""
    from tqdm import tqdm

    kind = _suffix_kind(out)
    tmp = out.with_name(f".{out.name}.dsir.part")
    gz = out.name.lower().endswith(".gz")
    try:
        with tqdm(total=int(indices.size), unit="rows", desc="write", disable=not progress) as bar:
            if kind == "parquet":
                import pyarrow.parquet as pq

                writer = None
                try:
                    for table in source.selected_rows(indices):
                        if writer is None:
                            writer = pq.ParquetWriter(tmp, table.schema)
                        writer.write_table(table)
                        bar.update(table.num_rows)
                    if writer is None:  # nothing selected: an empty file with the input's schema
                        writer = pq.ParquetWriter(tmp, _empty_schema(source))
                finally:
                    if writer is not None:
                        writer.close()
            else:
                with open(tmp, "wb") as raw_f:
                    f: Any = gzip.GzipFile(filename="", mode="wb", fileobj=raw_f, mtime=0) if gz else raw_f
                    for piece in source.selected_rows(indices):
                        if isinstance(piece, bytes):
                            f.write(piece)
                            bar.update(1)
                        else:
                            lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in piece.to_pylist()]
                            f.write("".join(lines).encode())
                            bar.update(len(lines))
                    if gz:
                        f.close()
                    raw_f.flush()
                    os.fsync(raw_f.fileno())
        if kind == "parquet":
            with open(tmp, "rb+") as f2:
                os.fsync(f2.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(out.parent)


def _empty_schema(source: _Source) -> Any:
    import pyarrow as pa

    if source.kind == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(source.files[0]).schema_arrow
    features = getattr(source.dataset, "features", None)
    return features.arrow_schema if features is not None else pa.schema([(source.text_field, pa.string())])


# --------------------------------------------------------------------------- state


def _state_bytes(arrays: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


class _State:
    """The running state of a selection, persisted atomically (one ``.npz``)
    after every chunk when ``state_dir`` is given."""

    def __init__(self, key: dict[str, Any], num_buckets: int) -> None:
        self.key = key
        self.phase = "fit_target"
        self.offset = 0
        self.target_counts = np.zeros(num_buckets, dtype=np.int64)
        self.raw_counts = np.zeros(num_buckets, dtype=np.int64)
        self.target_rows = 0
        self.raw_rows = 0
        self.num_eligible = 0
        self.top_keys = np.zeros(0, dtype=np.float64)
        self.top_index = np.zeros(0, dtype=np.int64)
        self.top_log_weights = np.zeros(0, dtype=np.float64)

    def save(self, path: Path) -> None:
        arrays = {
            "key": np.array(json.dumps(self.key, sort_keys=True)),
            "phase": np.array(self.phase),
            "scalars": np.array(
                [self.offset, self.target_rows, self.raw_rows, self.num_eligible, _STATE_VERSION], dtype=np.int64
            ),
            # sparse: a save costs the n-grams seen, not num_buckets
            **dict(zip(("target_buckets", "target_values"), sparse_counts(self.target_counts), strict=True)),
            **dict(zip(("raw_buckets", "raw_values"), sparse_counts(self.raw_counts), strict=True)),
            "top_keys": self.top_keys,
            "top_index": self.top_index,
            "top_log_weights": self.top_log_weights,
        }
        write_atomic(path, _state_bytes(arrays))

    @classmethod
    def load(cls, path: Path, key: dict[str, Any], num_buckets: int) -> _State:
        try:
            with np.load(path, allow_pickle=False) as z:
                saved_key = json.loads(str(z["key"]))
                phase = str(z["phase"])
                scalars = z["scalars"].tolist()
                arrays = {
                    k: z[k]
                    for k in (
                        "target_buckets",
                        "target_values",
                        "raw_buckets",
                        "raw_values",
                        "top_keys",
                        "top_index",
                        "top_log_weights",
                    )
                }
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(
                f"state_dir: cannot read {path} ({exc}); pass restart=True (--restart) to start over"
            ) from None
        if saved_key != key:
            diff = [
                f"{k}: saved {saved_key.get(k)!r}, now {key.get(k)!r}"
                for k in sorted(set(saved_key) | set(key))
                if saved_key.get(k) != key.get(k)
            ]
            raise ValueError(
                f"state_dir {path.parent} holds a run with different arguments ({'; '.join(diff)}); "
                "use another state_dir, or pass restart=True (--restart) to start over"
            )
        if phase not in _PHASES or len(scalars) != 5 or scalars[4] != _STATE_VERSION:
            raise ValueError(f"state_dir: {path} is not a state this version wrote; pass restart=True to start over")
        state = cls(key, num_buckets)
        state.phase = phase
        state.offset, state.target_rows, state.raw_rows, state.num_eligible = (int(v) for v in scalars[:4])
        try:
            for name in ("target", "raw"):
                b, v = arrays.pop(f"{name}_buckets"), arrays.pop(f"{name}_values")
                setattr(state, f"{name}_counts", dense_counts(b, v, num_buckets))
        except (IndexError, ValueError) as exc:
            raise ValueError(f"state_dir: {path} is damaged ({exc}); pass restart=True to start over") from None
        for k, v in arrays.items():
            setattr(state, k, v)
        return state


def saved_phase(state_dir: Path) -> str | None:
    """The pass a saved state in ``state_dir`` stopped in (``"fit_target"``
    … ``"write"``, ``"done"``), or ``None`` without a readable state. A state
    in ``"write"`` or ``"done"`` may have already renamed the rows over
    ``out``: resuming it rewrites the same bytes."""
    path = Path(state_dir) / _STATE_FILE
    try:
        with np.load(path, allow_pickle=False) as z:
            phase = str(z["phase"])
    except (OSError, ValueError, KeyError):
        return None
    return phase if phase in _PHASES else None


def merge_top(
    keys: np.ndarray,
    index: np.ndarray,
    log_weights: np.ndarray,
    new_keys: np.ndarray,
    new_index: np.ndarray,
    new_log_weights: np.ndarray,
    num: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``num`` largest keys of two candidate sets (ties: lower index
    first), with their indices and log weights, in that order."""
    k = np.concatenate([keys, new_keys])
    i = np.concatenate([index, new_index])
    w = np.concatenate([log_weights, new_log_weights])
    order = np.lexsort((i, -k))[:num]
    return k[order], i[order], w[order]


def chunk_candidates(
    items: list[Any],
    first_row: int,
    log_ratio: np.ndarray,
    *,
    num: int,
    top_k: bool,
    seed: int,
    ngrams: int,
    hash: str,
    min_example_length: int,
    word_classes: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The top-``num`` candidates ``(keys, indices, log_weights)`` of one chunk
    of raw rows starting at global row ``first_row``, and how many of its rows
    have a finite weight: keys are the log weights plus the Gumbel noise of
    each global index (none with ``top_k``); rows with weight ``-inf`` are
    dropped. Shared by the local and the Ray engine."""
    from .dsir import gumbel_noise, log_importance_weights

    lw = np.asarray(
        log_importance_weights(
            items, log_ratio, ngrams, hash, min_example_length=min_example_length, word_classes=word_classes
        ),
        dtype=np.float64,
    )
    index = np.arange(first_row, first_row + len(items), dtype=np.int64)
    keep = np.isfinite(lw)
    lw, index = lw[keep], index[keep]
    keys = lw.copy() if top_k else lw + np.asarray(gumbel_noise(index, seed), dtype=np.float64)
    empty_f, empty_i = np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int64)
    return (*merge_top(empty_f, empty_i, empty_f, keys, index, lw, num), int(index.size))


def ngram_counts(items: list[Any], params: Params, add_to: np.ndarray) -> np.ndarray:
    """Adds the summed hashed n-gram counts of ``items`` to ``add_to`` (int64
    [num_buckets]) in place, by the counts-only pass
    (:func:`dataprobes.selection.ngram_bucket_counts`), and returns it."""
    from .dsir import ngram_bucket_counts

    return ngram_bucket_counts(
        items, params.num_buckets, params.ngrams, params.hash, word_classes=params.word_classes, add_to=add_to
    )


def sparse_counts(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The nonzero buckets of ``counts`` and their counts (int64 each)."""
    nz = np.flatnonzero(counts).astype(np.int64)
    return nz, counts[nz]


def dense_counts(buckets: np.ndarray, values: np.ndarray, num_buckets: int) -> np.ndarray:
    """The inverse of :func:`sparse_counts`."""
    out = np.zeros(num_buckets, dtype=np.int64)
    out[buckets] = values
    return out


def log_ratio_from_counts(target_counts: np.ndarray, raw_counts: np.ndarray) -> np.ndarray:
    """``log(γ + 1e-8) − log(β + 1e-8)`` with ``γ``, ``β`` the normalised
    target and raw bucket counts (DSIR's bag-of-n-grams models)."""
    t_total, r_total = int(target_counts.sum()), int(raw_counts.sum())
    if t_total == 0:
        raise ValueError("target has no n-grams (every row is empty): nothing to fit the target model on")
    if r_total == 0:
        return np.zeros(target_counts.shape[0])  # every raw row is empty, hence -inf: nothing is selected
    gamma = target_counts / t_total
    beta = raw_counts / r_total
    return np.log(gamma + 1e-8) - np.log(beta + 1e-8)


# --------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class Params:
    """The checked arguments a selection depends on (recorded in the state
    and the manifest)."""

    num: int
    top_k: bool
    seed: int
    num_buckets: int
    ngrams: int
    hash: str
    min_example_length: int
    text_field: str
    word_classes: str

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def check_params(
    num: Any,
    *,
    text_field: Any,
    top_k: Any,
    seed: Any,
    num_buckets: Any,
    ngrams: Any,
    hash: Any,
    min_example_length: Any,
    word_classes: Any,
) -> Params:
    """Checks the selection arguments (TypeError / ValueError naming them),
    with the limits of :mod:`dataprobes.selection.dsir`."""
    from . import dsir

    if not isinstance(text_field, str):
        raise TypeError(f"text_field must be a str, got {type(text_field).__name__}")
    if not text_field:
        raise ValueError("text_field must not be empty")
    if not isinstance(top_k, (bool, np.bool_)):
        raise TypeError(f"top_k must be a bool, got {type(top_k).__name__}")
    return Params(
        num=check_int("num", num, 0),
        top_k=bool(top_k),
        seed=check_seed("seed", seed),
        num_buckets=check_int("num_buckets", num_buckets, 1, dsir.MAX_BUCKETS),
        ngrams=check_int("ngrams", ngrams, 1, dsir.MAX_NGRAMS),
        hash=dsir._check_hash(hash),
        min_example_length=check_int("min_example_length", min_example_length, 0),
        text_field=text_field,
        word_classes=dsir._check_word_classes(word_classes),
    )


def check_out(out: Any, overwrite: bool) -> Path | None:
    """``out`` as a Path (or None); an existing file is refused unless
    ``overwrite``."""
    if out is None:
        return None
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out must be a path or None, got {type(out).__name__}")
    path = Path(out)
    if path.is_dir():
        raise ValueError(f"out {path} is a directory; give a file name")
    if path.exists() and not overwrite:
        raise ValueError(f"out {path} exists; pass overwrite=True (--force) to replace it")
    return path


def make_manifest(
    params: Params,
    *,
    engine: str,
    raw_fp: dict[str, Any],
    target_fp: dict[str, Any],
    indices: np.ndarray,
    log_weights: np.ndarray,
    num_rows: int,
    num_eligible: int,
    target_rows: int,
) -> dict[str, Any]:
    """The manifest written beside the selected rows."""
    from .. import __version__
    from .dsir import hash_info

    return {
        "format": "dataprobes.dsir_selection",
        "version": 1,
        "dataprobes": __version__,
        "method": "DSIR top-k" if params.top_k else "DSIR importance resampling (Gumbel top-k)",
        "engine": engine,
        "params": params.as_dict(),
        "hash": params.hash,
        "hash_info": hash_info(params.hash, params.word_classes),
        "seed": params.seed,
        "inputs": {"raw": raw_fp, "target": target_fp},
        "num_rows": num_rows,
        "num_target_rows": target_rows,
        "num_eligible": num_eligible,
        "num_selected": int(indices.size),
        "indices": [int(i) for i in indices],
        "log_weights": [float(w) for w in log_weights],
    }


def finish(
    source: _Source,
    params: Params,
    manifest: dict[str, Any],
    indices: np.ndarray,
    log_weights: np.ndarray,
    out: Path | None,
    progress: bool,
) -> CorpusSelection:
    """Writes the rows and the manifest (when ``out``) and builds the result."""
    mpath = None
    if out is not None:
        _write_rows(source, indices, out, progress)
        mpath = manifest_path(out)
        write_json_atomic(mpath, manifest, indent=1)
    return CorpusSelection(
        indices=indices,
        log_weights=log_weights,
        num_rows=int(manifest["num_rows"]),
        num_eligible=int(manifest["num_eligible"]),
        out=out,
        manifest_path=mpath,
        manifest=manifest,
    )


# --------------------------------------------------------------------------- the pipeline


def dsir_select_corpus(
    raw: Any,
    target: Any,
    num: int,
    out: str | os.PathLike[str] | None = None,
    *,
    text_field: str = "text",
    top_k: bool = False,
    seed: int = 0,
    num_buckets: int = 10000,
    ngrams: int = 2,
    hash: str = "fast",
    min_example_length: int = 100,
    word_classes: str = "nltk-regex",
    chunk_rows: int = 16384,
    state_dir: str | os.PathLike[str] | None = None,
    restart: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    engine: str = "local",
) -> CorpusSelection:
    """Selects ``num`` rows of a large ``raw`` corpus that look like ``target``
    (DSIR, Xie et al. 2023), streaming, resumable; see the module docstring.

    The selection equals ``dsir_select(raw_rows, target_rows, num, top_k=...,
    seed=...)`` on the whole corpus in memory (as a set; ``indices`` are in
    row order), for any ``chunk_rows``. Where ``dsir_select`` refuses a
    ``num`` above the number of selectable rows, a streamed run cannot know
    that number in advance: it selects all of them (``num_eligible``).

    Args:
        raw, target: a ``.jsonl`` / ``.jsonl.gz`` / ``.parquet`` file, a
            directory of such shards (read in name order), or a Hugging Face
            ``datasets.Dataset`` / ``IterableDataset``. Rows are numbered
            0, 1, … in reading order (blank JSON lines are skipped).
        num: rows to select (fewer when fewer rows are long enough).
        out: where to write the selected rows, in their original order
            (``.jsonl``, ``.jsonl.gz`` or, for Parquet and ``datasets``
            input, ``.parquet``), plus ``<out>.manifest.json``; ``None``
            writes nothing.
        text_field: the column (JSON key) holding the text, or rows of
            integer token ids.
        top_k: keep the ``num`` largest weights instead of sampling.
        seed: seed of the Gumbel noise (importance resampling).
        num_buckets, ngrams, hash, min_example_length, word_classes: the
            featuriser's settings (see :func:`dataprobes.selection.dsir_weights`).
        chunk_rows: rows per chunk (memory, and how often state is saved).
        state_dir: directory for the resumable state (``None``: none kept).
        restart: ignore a saved state and start over.
        overwrite: replace an existing ``out``.
        progress: show progress bars.
        engine: ``"local"`` (this process) or ``"ray"`` (Ray Data
            ``map_batches``, :func:`dataprobes.selection.dsir_select_ray`;
            paths only, no ``state_dir``).
    """
    if not isinstance(engine, str):
        raise TypeError(f"engine must be a str, got {type(engine).__name__}")
    if engine == "ray":
        if state_dir is not None:
            raise ValueError("state_dir applies to engine='local' only (Ray retries failed tasks itself)")
        check_int("chunk_rows", chunk_rows, 1)
        from .ray_data import dsir_select_ray

        return dsir_select_ray(
            raw,
            target,
            num,
            out,
            text_field=text_field,
            top_k=top_k,
            seed=seed,
            num_buckets=num_buckets,
            ngrams=ngrams,
            hash=hash,
            min_example_length=min_example_length,
            word_classes=word_classes,
            chunk_rows=chunk_rows,
            overwrite=overwrite,
            progress=progress,
        )
    if engine != "local":
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    params = check_params(
        num,
        text_field=text_field,
        top_k=top_k,
        seed=seed,
        num_buckets=num_buckets,
        ngrams=ngrams,
        hash=hash,
        min_example_length=min_example_length,
        word_classes=word_classes,
    )
    chunk_rows = check_int("chunk_rows", chunk_rows, 1)
    for name, flag in (("restart", restart), ("overwrite", overwrite), ("progress", progress)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    out_path = check_out(out, bool(overwrite))
    raw_src = _Source("raw", raw, params.text_field)
    target_src = _Source("target", target, params.text_field)
    if out_path is not None:
        _out_kind(out_path, raw_src.kind)
    state_path = None
    if state_dir is not None:
        if not isinstance(state_dir, (str, os.PathLike)):
            raise TypeError(f"state_dir must be a path or None, got {type(state_dir).__name__}")
        sd = Path(state_dir)
        if sd.exists() and not sd.is_dir():
            raise ValueError(f"state_dir {sd} is a file, not a directory")
        sd.mkdir(parents=True, exist_ok=True)
        state_path = sd / _STATE_FILE

    raw_fp, target_fp = raw_src.fingerprint(), target_src.fingerprint()
    from .dsir import hash_info

    key = {
        "version": _STATE_VERSION,
        **params.as_dict(),
        "hash_info": hash_info(params.hash, params.word_classes),  # a new hash or table version is not resumed
        "raw": raw_fp,
        "target": target_fp,
    }
    if state_path is not None and state_path.exists() and not restart:
        state = _State.load(state_path, key, params.num_buckets)
    else:
        state = _State(key, params.num_buckets)
    _run(state, state_path, raw_src, target_src, params, chunk_rows, bool(progress))

    indices = np.sort(state.top_index)
    log_weights = state.top_log_weights[np.argsort(state.top_index)]
    manifest = make_manifest(
        params,
        engine="local",
        raw_fp=raw_fp,
        target_fp=target_fp,
        indices=indices,
        log_weights=log_weights,
        num_rows=state.raw_rows,
        num_eligible=state.num_eligible,
        target_rows=state.target_rows,
    )
    result = finish(raw_src, params, manifest, indices, log_weights, out_path, bool(progress))
    if state.phase != "done":
        _advance(state, state_path, "done")
    return result


def _checkpoint(state: _State, path: Path | None) -> None:
    if path is not None:
        state.save(path)
    if _after_checkpoint is not None:
        _after_checkpoint(state.phase, state.offset)


def _advance(state: _State, path: Path | None, phase: str) -> None:
    state.phase, state.offset = phase, 0
    if path is not None:
        state.save(path)


def _run(
    state: _State,
    path: Path | None,
    raw: _Source,
    target: _Source,
    params: Params,
    chunk_rows: int,
    progress: bool,
) -> None:
    """Passes 1 and 2 from wherever ``state`` stopped."""
    from tqdm import tqdm

    def rows_pass(src: _Source, desc: str) -> Iterable[tuple[int, list[Any]]]:
        with tqdm(total=src.num_rows(), initial=state.offset, unit="rows", desc=desc, disable=not progress) as bar:
            for lo, items in src.chunks(state.offset, chunk_rows):
                yield lo, items
                bar.update(len(items))

    if state.phase == "fit_target":
        for lo, items in rows_pass(target, "fit target"):
            ngram_counts(items, params, state.target_counts)
            state.offset = state.target_rows = lo + len(items)
            _checkpoint(state, path)
        if state.target_rows == 0:
            raise ValueError("target has no rows")
        _advance(state, path, "fit_raw")
    if state.phase == "fit_raw":
        for lo, items in rows_pass(raw, "fit raw"):
            ngram_counts(items, params, state.raw_counts)
            state.offset = state.raw_rows = lo + len(items)
            _checkpoint(state, path)
        _advance(state, path, "weigh")
    if state.phase == "weigh":
        log_ratio = log_ratio_from_counts(state.target_counts, state.raw_counts)
        for lo, items in rows_pass(raw, "weigh raw"):
            keys, index, lw, eligible = chunk_candidates(
                items,
                lo,
                log_ratio,
                num=params.num,
                top_k=params.top_k,
                seed=params.seed,
                ngrams=params.ngrams,
                hash=params.hash,
                min_example_length=params.min_example_length,
                word_classes=params.word_classes,
            )
            state.num_eligible += eligible
            state.top_keys, state.top_index, state.top_log_weights = merge_top(
                state.top_keys, state.top_index, state.top_log_weights, keys, index, lw, params.num
            )
            state.offset = lo + len(items)
            _checkpoint(state, path)
        if state.offset != state.raw_rows and state.raw_rows:
            raise ValueError(
                f"raw changed while it was read: {state.raw_rows} rows when fitted, {state.offset} when weighed"
            )
        _advance(state, path, "write")
