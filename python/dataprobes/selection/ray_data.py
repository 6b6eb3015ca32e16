"""DSIR at corpus scale on Ray Data: featurisation and weighting as ``map_batches``.

:func:`dsir_select_ray` gives the same selection as
:func:`dataprobes.selection.dsir_select_corpus` (and as ``dsir_select`` in
memory) with the two heavy passes spread over a Ray cluster
(``pip install "dataprobes[ray]"``):

1. The driver cuts the input files into *units* whose rows it can number
   without reading them: a Parquet row group, or a byte range of an
   uncompressed JSON Lines file (a unit owns the lines that start inside its
   range), or a whole ``.jsonl.gz`` file.
2. ``map_batches`` over the units sums each unit's hashed n-gram counts and
   counts its rows (target and raw). The driver adds the counts (an integer
   sum: any order gives the same model), forms the log ratio
   ``log(γ + 1e-8) − log(β + 1e-8)`` and the global row offset of every unit.
3. ``map_batches`` again, with the log ratio as an argument shipped once to the
   workers: each unit computes its rows' log weights, adds the Gumbel noise of
   their *global* indices ``gumbel_noise(offset + r, seed)`` and returns its
   top-``num`` candidates; the driver merges them (ties to the lower index).
   The top ``num`` of the union of per-unit top-``num`` sets is the global top
   ``num``, so the result does not depend on how units are scheduled.
4. The driver streams the selected rows into ``out`` (atomically) with the
   manifest, as the local engine does.

Rows are numbered by the library's own readers, the same code as the local
engine (blank JSON lines skipped), rather than by ``read_json`` /
``read_parquet`` + a zip with a row index: Ray Data does not guarantee row
order by default (and ``Dataset.zip``, which relies on it, is deprecated), and
a selection that depended on scheduling would break the determinism contract
(docs/architecture.md, "DSIR at corpus scale").
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import check_int
from . import corpus as _corpus

__all__ = ["dsir_select_ray", "plan_units"]

_UNIT_BYTES = 64 << 20


def plan_units(kind: str, files: list[Path], unit_bytes: int = _UNIT_BYTES) -> list[dict[str, Any]]:
    """Work units over ``files``: ``{"path", "start", "stop", "mode"}`` with
    ``mode`` ``"rowgroup"`` (``start`` = the row group), ``"bytes"`` (lines
    starting in ``[start, stop)``) or ``"file"`` (a whole compressed file)."""
    units: list[dict[str, Any]] = []
    for path in files:
        if kind == "parquet":
            import pyarrow.parquet as pq

            for g in range(pq.ParquetFile(path).num_row_groups):
                units.append({"path": str(path), "start": g, "stop": g + 1, "mode": "rowgroup"})
        elif path.name.lower().endswith(".gz"):
            units.append({"path": str(path), "start": 0, "stop": 0, "mode": "file"})
        else:
            size = path.stat().st_size
            for lo in range(0, max(size, 1), unit_bytes):
                units.append({"path": str(path), "start": lo, "stop": min(size, lo + unit_bytes), "mode": "bytes"})
    return units


def _unit_lines(path: str, start: int, stop: int) -> Iterator[bytes]:
    """The lines of ``path`` whose first byte lies in ``[start, stop)``."""
    with open(path, "rb") as f:
        if start > 0:
            f.seek(start - 1)
            if f.read(1) != b"\n":
                f.readline()  # the line in progress belongs to the previous unit
        pos = f.tell()
        while pos < stop:
            line = f.readline()
            if not line:
                return
            yield line
            pos += len(line)


def read_unit(unit: dict[str, Any], text_field: str, chunk_rows: int) -> Iterator[list[Any]]:
    """The ``text_field`` values of a unit's rows, ``chunk_rows`` at a time."""
    import json

    path, mode = unit["path"], unit["mode"]
    name = Path(path).name
    if mode == "rowgroup":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        if text_field not in pf.schema_arrow.names:
            raise ValueError(f"{name} has no column {text_field!r} (text_field)")
        for batch in pf.iter_batches(batch_size=chunk_rows, row_groups=[int(unit["start"])], columns=[text_field]):
            yield batch.column(0).to_pylist()
        return
    if mode == "file":
        import gzip

        lines: Any = gzip.open(path, "rb")
    else:
        lines = _unit_lines(path, int(unit["start"]), int(unit["stop"]))
    block: list[Any] = []
    try:
        for line in lines:
            if not line.strip():
                continue
            record = json.loads(line)
            if not isinstance(record, dict) or record.get(text_field) is None:
                raise ValueError(f"{name}: a line has no {text_field!r} (text_field) value")
            block.append(record[text_field])
            if len(block) >= chunk_rows:
                yield block
                block = []
        if block:
            yield block
    finally:
        if mode == "file":
            lines.close()


def _units_of(batch: Any) -> list[dict[str, Any]]:
    cols = {k: batch[k] for k in ("path", "start", "stop", "mode", "unit")}
    return [
        {k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in cols.items()} for i in range(len(cols["unit"]))
    ]


def _fit_batch(batch: Any, *, params: _corpus.Params, chunk_rows: int) -> Any:
    """``map_batches`` body of the fit pass: per unit, its row count and
    summed bucket counts, sparse (the nonzero buckets and their counts)."""
    import pyarrow as pa

    units, rows, buckets, values = [], [], [], []
    c = np.zeros(params.num_buckets, dtype=np.int64)
    for unit in _units_of(batch):
        n = 0
        c[:] = 0
        for items in read_unit(unit, params.text_field, chunk_rows):
            _corpus.ngram_counts(items, params, c)
            n += len(items)
        b, v = _corpus.sparse_counts(c)
        units.append(int(unit["unit"]))
        rows.append(n)
        buckets.append(b)
        values.append(v)
    return pa.table(
        {
            "unit": pa.array(units, pa.int64()),
            "rows": pa.array(rows, pa.int64()),
            "buckets": pa.array([b.tolist() for b in buckets], pa.list_(pa.int64())),
            "values": pa.array([v.tolist() for v in values], pa.list_(pa.int64())),
        }
    )


def _weigh_batch(
    batch: Any,
    *,
    log_ratio: np.ndarray,
    offsets: dict[int, int],
    text_field: str,
    num: int,
    top_k: bool,
    seed: int,
    ngrams: int,
    hash: str,
    min_example_length: int,
    word_classes: str,
    chunk_rows: int,
) -> Any:
    """``map_batches`` body of the weighting pass: per unit, its top-``num``
    candidates (keys, global indices, log weights) and its count of rows with
    a finite weight."""
    import pyarrow as pa

    units, eligible, keys, index, weights = [], [], [], [], []
    empty_f, empty_i = np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int64)
    for unit in _units_of(batch):
        row = offsets[int(unit["unit"])]
        k, i, w, e = empty_f, empty_i, empty_f, 0
        for items in read_unit(unit, text_field, chunk_rows):
            ck, ci, cw, ce = _corpus.chunk_candidates(
                items,
                row,
                log_ratio,
                num=num,
                top_k=top_k,
                seed=seed,
                ngrams=ngrams,
                hash=hash,
                min_example_length=min_example_length,
                word_classes=word_classes,
            )
            k, i, w = _corpus.merge_top(k, i, w, ck, ci, cw, num)
            e += ce
            row += len(items)
        units.append(int(unit["unit"]))
        eligible.append(e)
        keys.append(k.tolist())
        index.append(i.tolist())
        weights.append(w.tolist())
    return pa.table(
        {
            "unit": pa.array(units, pa.int64()),
            "eligible": pa.array(eligible, pa.int64()),
            "key": pa.array(keys, pa.list_(pa.float64())),
            "index": pa.array(index, pa.list_(pa.int64())),
            "log_weight": pa.array(weights, pa.list_(pa.float64())),
        }
    )


def _fit(units: list[dict[str, Any]], kw: dict[str, Any]) -> tuple[np.ndarray, dict[int, int]]:
    """Summed counts and rows per unit (the fit pass on Ray)."""
    import ray.data

    total = np.zeros(kw["params"].num_buckets, dtype=np.int64)
    rows: dict[int, int] = {}
    if not units:
        return total, rows
    ds: Any = ray.data.from_items(units, override_num_blocks=len(units))
    out: Any = ds.map_batches(_fit_batch, batch_size=1, batch_format="numpy", fn_kwargs=kw)
    for table in out.iter_batches(batch_format="pyarrow", batch_size=None):
        for u, n, b, v in zip(
            table.column("unit").to_pylist(),
            table.column("rows").to_pylist(),
            table.column("buckets").to_pylist(),
            table.column("values").to_pylist(),
            strict=True,
        ):
            rows[int(u)] = int(n)
            total[np.asarray(b, dtype=np.int64)] += np.asarray(v, dtype=np.int64)  # distinct buckets
    if len(rows) != len(units):
        raise RuntimeError(f"the fit pass returned {len(rows)} of {len(units)} units")
    return total, rows


def dsir_select_ray(
    raw: str | os.PathLike[str],
    target: str | os.PathLike[str],
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
    unit_bytes: int = _UNIT_BYTES,
    overwrite: bool = False,
    progress: bool = True,
) -> _corpus.CorpusSelection:
    """DSIR selection of ``num`` rows of ``raw`` (paths: ``.jsonl``,
    ``.jsonl.gz``, ``.parquet`` or a directory of shards) on Ray Data; the
    same selection as :func:`dataprobes.selection.dsir_select_corpus`.

    Uses the running Ray cluster (or starts a local one, as Ray Data does).
    ``chunk_rows``: rows featurised at a time inside a unit (memory);
    ``unit_bytes``: bytes of JSON Lines per unit (parallelism). The other
    arguments are those of ``dsir_select_corpus``; see the module docstring.
    """
    try:
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError('engine="ray" needs Ray Data: pip install "dataprobes[ray]"') from None
    params = _corpus.check_params(
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
    unit_bytes = check_int("unit_bytes", unit_bytes, 1)
    for name, flag in (("overwrite", overwrite), ("progress", progress)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    for name, value in (("raw", raw), ("target", target)):
        if not isinstance(value, (str, os.PathLike)):
            raise TypeError(f'{name} must be a path for engine="ray", got {type(value).__name__}')
    out_path = _corpus.check_out(out, bool(overwrite))
    raw_src = _corpus._Source("raw", raw, params.text_field)
    target_src = _corpus._Source("target", target, params.text_field)
    if out_path is not None:
        _corpus._out_kind(out_path, raw_src.kind)

    import ray.data

    ctx = ray.data.DataContext.get_current()
    saved_bars = ctx.enable_progress_bars
    ctx.enable_progress_bars = bool(progress)
    try:
        fit_kw = {"params": params, "chunk_rows": chunk_rows}
        t_units = _numbered(plan_units(target_src.kind, target_src.files, unit_bytes))
        r_units = _numbered(plan_units(raw_src.kind, raw_src.files, unit_bytes))
        t_counts, t_rows = _fit(t_units, fit_kw)
        if sum(t_rows.values()) == 0:
            raise ValueError("target has no rows")
        r_counts, r_rows = _fit(r_units, fit_kw)
        log_ratio = _corpus.log_ratio_from_counts(t_counts, r_counts)
        offsets, row = {}, 0
        for u in r_units:
            offsets[u["unit"]] = row
            row += r_rows[u["unit"]]
        keys = np.zeros(0, dtype=np.float64)
        index = np.zeros(0, dtype=np.int64)
        weights = np.zeros(0, dtype=np.float64)
        eligible = 0
        if r_units:
            weigh_kw = {
                "log_ratio": log_ratio,
                "offsets": offsets,
                "text_field": params.text_field,
                "num": params.num,
                "top_k": params.top_k,
                "seed": params.seed,
                "ngrams": params.ngrams,
                "hash": params.hash,
                "min_example_length": params.min_example_length,
                "word_classes": params.word_classes,
                "chunk_rows": chunk_rows,
            }
            ds: Any = ray.data.from_items(r_units, override_num_blocks=len(r_units))
            cand: Any = ds.map_batches(_weigh_batch, batch_size=1, batch_format="numpy", fn_kwargs=weigh_kw)
            seen = 0
            for table in cand.iter_batches(batch_format="pyarrow", batch_size=None):
                for e, k, i, w in zip(
                    table.column("eligible").to_pylist(),
                    table.column("key").to_pylist(),
                    table.column("index").to_pylist(),
                    table.column("log_weight").to_pylist(),
                    strict=True,
                ):
                    eligible += int(e)
                    seen += 1
                    keys, index, weights = _corpus.merge_top(
                        keys,
                        index,
                        weights,
                        np.asarray(k, dtype=np.float64),
                        np.asarray(i, dtype=np.int64),
                        np.asarray(w, dtype=np.float64),
                        params.num,
                    )
            if seen != len(r_units):
                raise RuntimeError(f"the weighting pass returned {seen} of {len(r_units)} units")
    finally:
        ctx.enable_progress_bars = saved_bars

    order = np.argsort(index)
    indices, log_weights = index[order], weights[order]
    manifest = _corpus.make_manifest(
        params,
        engine="ray",
        raw_fp=raw_src.fingerprint(),
        target_fp=target_src.fingerprint(),
        indices=indices,
        log_weights=log_weights,
        num_rows=row,
        num_eligible=eligible,
        target_rows=sum(t_rows.values()),
    )
    return _corpus.finish(raw_src, params, manifest, indices, log_weights, out_path, bool(progress))


def _numbered(units: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**u, "unit": k} for k, u in enumerate(units)]
