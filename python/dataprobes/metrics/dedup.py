r"""Near-duplicate detection: MinHash signatures and banded LSH.

Broder, "On the resemblance and containment of documents" (1997); Indyk &
Motwani (1998); Leskovec, Rajaraman & Ullman, *Mining of Massive Datasets*,
ch. 3. The math is in docs/math.md ("Dataset metrics", "Near-duplicates
(MinHash LSH)").

An item's **shingles** are its windows of ``ngram`` consecutive units
(:func:`shingles`): words (``shingle="word"``: the tokens of
``re.findall(r"\w+|[^\w\s]+", text.lower())``, nltk's ``WordPunctTokenizer``
with Python's ``re`` classes, joined by single spaces), characters
(``shingle="char"``) or token ids (``shingle="token"``: a 2-D integer array or
a sequence of 1-D integer arrays, ids written in decimal and joined by single
spaces). An item with fewer than ``ngram`` units (but at least one) has one
shingle of all of them; an empty item has none and the all-maximum signature
(datasketch's empty MinHash), so empty items are near-duplicates of each
other.

Signature column ``k`` is ``min_x π_k(h(x))`` over the shingles ``x``; for two
items ``P[sig_k(A) = sig_k(B)] = J(A, B)`` (the Jaccard similarity of their
shingle sets). ``compat=None`` (the default) hashes shingles with a fast
64-bit hash and permutes its high 32 bits by ``a_k h + b_k mod 2^32``
(``a_k`` odd); ``compat="datasketch"`` reproduces ``datasketch.MinHash``
(>= 2.0, its default ``scheme="affine32"``) bit for bit given the same
shingles (as UTF-8 bytes) and seed, ``"datasketch-legacy"`` its
``scheme="legacy"`` (the only scheme before 2.0) and ``"datasketch-affine64"``
its ``scheme="affine64"``. Signatures are computed in Rust on all cores
(``RAYON_NUM_THREADS``) and do not depend on the thread count or chunking.

:func:`near_duplicates` bands the signatures (``bands`` × ``rows`` columns;
chosen from the threshold as datasketch's ``MinHashLSH`` does when not
given), takes the pairs that agree on a whole band as candidates, keeps those
whose estimated Jaccard (fraction of the ``num_perm`` columns that agree) is
at least ``threshold`` (``verify=True``), and returns the connected
components of the kept pairs. A pair with similarity ``s`` is a candidate
with probability ``1 − (1 − s^r)^b`` (:func:`lsh_candidate_probability`).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import _core
from .._validation import check_bool, check_choice, check_float_in, check_int, check_seed

__all__ = [
    "COMPAT",
    "SHINGLES",
    "NearDuplicates",
    "jaccard",
    "lsh_candidate_probability",
    "minhash",
    "minhash_info",
    "near_duplicates",
    "near_duplicates_corpus",
    "optimal_bands",
    "shingles",
    "write_clusters",
]

#: Signature schemes: ``None`` (fast) and datasketch's three.
COMPAT = (None, "datasketch", "datasketch-legacy", "datasketch-affine64")
_SCHEME = {None: "fast", "datasketch": "affine32", "datasketch-legacy": "legacy", "datasketch-affine64": "affine64"}
#: What a shingle is made of.
SHINGLES = ("word", "char", "token")
MAX_PERM = int(_core.MINHASH_MAX_PERM)
_MERSENNE_61 = (1 << 61) - 1
_CHUNK = 1 << 14  # items per call into the core (the progress bar's step)
_AUTO_PROGRESS = 1 << 17  # show a bar by default from this many items
_WORD = re.compile(r"\w+|[^\w\s]+")


# --------------------------------------------------------------------------- checks


def _check_compat(compat: Any) -> str | None:
    if compat is not None and not isinstance(compat, str):
        raise TypeError(f"compat must be None or one of {COMPAT[1:]}, got {type(compat).__name__}")
    if compat not in COMPAT:
        raise ValueError(f"compat must be None or one of {COMPAT[1:]}, got {compat!r}")
    return compat


def _check_seed(seed: Any, compat: str | None) -> int:
    if compat is None:
        return check_seed("seed", seed)
    # numpy's RandomState takes seeds below 2**32
    return check_int("seed", seed, 0, 2**32 - 1)


def _check_progress(progress: Any) -> bool | None:
    return None if progress is None else check_bool("progress", progress)


def _check_shingle(shingle: Any, kind: str) -> str:
    """``shingle`` for items of ``kind`` (``"text"`` / ``"ids"``); ``None``
    means words for texts and token ids for ids."""
    if shingle is None:
        return "word" if kind == "text" else "token"
    s = check_choice("shingle", shingle, SHINGLES)
    if kind == "ids" and s != "token":
        raise ValueError(f"shingle={s!r} applies to texts; items are token ids (use shingle='token')")
    if kind == "text" and s == "token":
        raise ValueError("shingle='token' applies to token ids; items are texts (use 'word' or 'char')")
    return s


def _permutations(compat: str | None, seed: int, num_perm: int) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
    """Datasketch's permutation parameters ``a, b`` for ``seed`` (drawn by
    ``np.random.RandomState(seed)`` exactly as ``MinHash`` draws them), as
    uint64; ``None`` for the fast scheme (made in the core from the seed)."""
    if compat is None:
        return None, None
    gen = np.random.RandomState(seed)
    if compat == "datasketch-legacy":
        ab = np.array(
            [
                (gen.randint(1, _MERSENNE_61, dtype=np.uint64), gen.randint(0, _MERSENNE_61, dtype=np.uint64))
                for _ in range(num_perm)
            ],
            dtype=np.uint64,
        )
        return np.ascontiguousarray(ab[:, 0]), np.ascontiguousarray(ab[:, 1])
    width = 32 if compat == "datasketch" else 64
    dtype = np.uint32 if width == 32 else np.uint64
    a = gen.randint(0, 1 << (width - 1), num_perm, dtype=dtype) * dtype(2) + dtype(1)
    b = gen.randint(0, 1 << width, num_perm, dtype=dtype)
    return a.astype(np.uint64), b.astype(np.uint64)


def _items(items: Any) -> Any:
    from ..selection.dsir import _as_items

    return _as_items("items", items)


def _bar(n: int, progress: bool | None, desc: str) -> Any:
    from tqdm.auto import tqdm

    show = (n >= _AUTO_PROGRESS) if progress is None else progress
    return tqdm(total=n, desc=desc, unit="item", disable=not show, leave=False)


# --------------------------------------------------------------------------- shingles


def _check_ngram(ngram: Any) -> int:
    return check_int("ngram", ngram, 1, 1 << 20)


def shingles(item: Any, ngram: int = 5, *, shingle: str | None = None, lowercase: bool = True) -> list[bytes]:
    r"""The shingles of one item as UTF-8 bytes, in order (repeats kept): what
    :func:`minhash` hashes (``datasketch.MinHash().update_batch(shingles(x))``
    gives its signature in ``compat="datasketch"`` mode).

    ``item``: a str (``shingle="word"``, the default, or ``"char"``) or a 1-D
    integer array of token ids. Words are ``re.findall(r"\w+|[^\w\s]+",
    text.lower())`` (``text`` if not ``lowercase``); a shingle is
    ``" ".join(units[i:i+ngram])``; ``max(w − ngram + 1, 1)`` shingles of
    ``w ≥ 1`` units, none of an empty item."""
    n = _check_ngram(ngram)
    low = check_bool("lowercase", lowercase)
    if isinstance(item, str):
        s = _check_shingle(shingle, "text")
        text = item.lower() if low else item
        units: list[str] = _WORD.findall(text) if s == "word" else list(text)
        sep = " " if s == "word" else ""
    else:
        _check_shingle(shingle, "ids")
        arr = np.asarray(item)
        if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise TypeError("item must be a str or a 1-D integer array of token ids")
        units = [str(int(v)) for v in arr.tolist()]
        sep = " "
    w = len(units)
    if w == 0:
        return []
    return [sep.join(units[i : i + n]).encode("utf-8") for i in range(max(w - n + 1, 1))]


def jaccard(a: Any, b: Any, ngram: int = 5, *, shingle: str | None = None, lowercase: bool = True) -> float:
    """The exact Jaccard similarity ``|A ∩ B| / |A ∪ B|`` of the shingle sets
    of two items (:func:`shingles`); 1.0 for two items without shingles."""
    sa = set(shingles(a, ngram, shingle=shingle, lowercase=lowercase))
    sb = set(shingles(b, ngram, shingle=shingle, lowercase=lowercase))
    union = len(sa | sb)
    return 1.0 if union == 0 else len(sa & sb) / union


# --------------------------------------------------------------------------- signatures


def minhash_info(compat: str | None = None) -> dict[str, Any]:
    """What a signature scheme is, to record with saved signatures: name,
    version, dtype and a description."""
    c = _check_compat(compat)
    desc = {
        None: (
            "h = high 32 bits of the shingle's 64-bit hash (words/ids: DSIR's k-gram hash of "
            "mix64(FNV-1a-64(token)) / mix64(id ^ 0xD1B54A32D192ED03); chars: mix64(FNV-1a-64(bytes))); "
            "sig_k = min (a_k h + b_k) mod 2^32, a_k = mix64(z + 2k + 1) mod 2^32 | 1, "
            "b_k = mix64(z + 2k + 2) mod 2^32, z = mix64(seed ^ 0x6D696E6861736831)"
        ),
        "datasketch": "datasketch.MinHash(scheme='affine32') of the shingles' UTF-8 (sha1_hash32, fmix32)",
        "datasketch-legacy": "datasketch.MinHash(scheme='legacy') of the shingles' UTF-8 (sha1_hash32, mod 2^61-1)",
        "datasketch-affine64": "datasketch.MinHash(scheme='affine64') of the shingles' UTF-8 (sha1_hash64, fmix64)",
    }[c]
    return {
        "compat": c,
        "scheme": _SCHEME[c],
        "version": int(_core.MINHASH_FAST_VERSION) if c is None else 1,
        "dtype": "uint32" if _SCHEME[c] in ("fast", "affine32") else "uint64",
        "description": desc,
    }


def minhash(
    items: Any,
    num_perm: int = 128,
    ngram: int = 5,
    seed: int = 1,
    *,
    shingle: str | None = None,
    lowercase: bool = True,
    compat: str | None = None,
    progress: bool | None = None,
) -> np.ndarray:
    r"""MinHash signatures ``[N, num_perm]`` of ``items`` (Broder 1997;
    docs/math.md, "Near-duplicates (MinHash LSH)"): column ``k`` is
    ``min_x π_k(h(x))`` over the item's ``ngram``-shingles (:func:`shingles`),
    so ``P[sig_k(A) = sig_k(B)] = J(A, B)``.

    ``items``: a sequence (or an iterator, consumed once) of str, or token ids
    (a 2-D integer array or a sequence of 1-D integer arrays). ``shingle``:
    ``"word"`` (default for texts), ``"char"``, or ``"token"`` (ids).
    ``compat``: ``None`` (fast; uint32), ``"datasketch"`` (``MinHash``'s
    default affine32 scheme, bit for bit; uint32), ``"datasketch-legacy"``
    (uint64) or ``"datasketch-affine64"`` (uint64); ``seed`` is the
    ``MinHash`` seed there (below 2**32). Deterministic for a seed at any
    thread count; ``progress`` shows a bar (default: from 131,072 items)."""
    k = check_int("num_perm", num_perm, 1, MAX_PERM)
    n = _check_ngram(ngram)
    c = _check_compat(compat)
    s = _check_seed(seed, c)
    low = check_bool("lowercase", lowercase)
    prog = _check_progress(progress)
    it = _items(items)
    sh = _check_shingle(shingle, it.kind)
    if len(it) == 0:
        raise ValueError("items is empty: there is nothing to sign")
    a, b = _permutations(c, s, k)
    scheme = _SCHEME[c]
    parts = []
    with _bar(len(it), prog, "minhash") as bar:
        for lo in range(0, len(it), _CHUNK):
            hi = min(len(it), lo + _CHUNK)
            ch = it.chunk(lo, hi)
            parts.append(_signatures(ch, lo, n, sh, low, scheme, s, k, a, b))
            bar.update(hi - lo)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _signatures(
    ch: Any, lo: int, n: int, sh: str, low: bool, scheme: str, seed: int, k: int, a: Any, b: Any
) -> np.ndarray:
    if ch.texts is not None:
        from ..selection.dsir import _text_call

        return _text_call("items", ch.texts, lo, _core.minhash_texts, n, sh, low, scheme, seed, k, a, b)
    flat, offsets = ch.ids()
    return _core.minhash_ids(flat, offsets, n, scheme, seed, k, a, b)


# --------------------------------------------------------------------------- LSH


def lsh_candidate_probability(similarity: Any, bands: int, rows: int) -> Any:
    """``1 − (1 − s^r)^b``: the probability that two items of Jaccard
    similarity ``s`` agree on at least one of ``b`` bands of ``r`` MinHash
    values (the LSH S-curve). ``similarity``: a number or an array in [0, 1]."""
    b = check_int("bands", bands, 1)
    r = check_int("rows", rows, 1)
    scalar = np.ndim(similarity) == 0
    s = np.asarray(similarity, dtype=np.float64)
    if s.size and not (np.isfinite(s).all() and (s >= 0).all() and (s <= 1).all()):
        raise ValueError("similarity must lie in [0, 1] (no NaN)")
    x = s**r
    below = x < 1
    p = np.where(below, -np.expm1(b * np.log1p(-np.where(below, x, 0.0))), 1.0)
    return float(p) if scalar else p


def _integral(f: Any, lo: float, hi: float) -> float:
    from scipy.integrate import quad  # type: ignore[import-untyped]

    return float(quad(f, lo, hi)[0])


@functools.lru_cache(maxsize=256)
def _optimal(threshold: float, num_perm: int, fp_weight: float, fn_weight: float) -> tuple[int, int]:
    best, opt = float("inf"), (0, 0)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = _integral(lambda s, b=b, r=r: 1 - (1 - s ** float(r)) ** float(b), 0.0, threshold)
            fn = _integral(lambda s, b=b, r=r: 1 - (1 - (1 - s ** float(r)) ** float(b)), threshold, 1.0)
            err = fp * fp_weight + fn * fn_weight
            if err < best:
                best, opt = err, (b, r)
    return opt


def optimal_bands(
    threshold: float,
    num_perm: int = 128,
    false_positive_weight: float = 0.5,
    false_negative_weight: float = 0.5,
) -> tuple[int, int]:
    """``(bands, rows)`` with ``bands · rows ≤ num_perm`` minimising
    ``w_fp ∫_0^t P(s) ds + w_fn ∫_t^1 (1 − P(s)) ds`` for the S-curve
    ``P(s) = 1 − (1 − s^r)^b`` (the false-positive and false-negative areas):
    datasketch's ``MinHashLSH`` choice (``_optimal_param``), computed the same
    way (``scipy.integrate.quad``)."""
    t = check_float_in("threshold", threshold, 0.0, 1.0, low_open=True)
    k = check_int("num_perm", num_perm, 1, MAX_PERM)
    fp = check_float_in("false_positive_weight", false_positive_weight, 0.0)
    fn = check_float_in("false_negative_weight", false_negative_weight, 0.0)
    if fp + fn == 0:
        raise ValueError("false_positive_weight and false_negative_weight must not both be 0")
    if k > 1024:
        raise ValueError(f"num_perm above 1024 needs explicit bands and rows (the search is quadratic), got {k}")
    return _optimal(t, k, fp, fn)


@dataclass(frozen=True)
class NearDuplicates:
    """The outcome of :func:`near_duplicates`.

    ``labels``: int64 ``[N]``, each item's cluster named by its smallest item
    (an item alone is its own label); ``clusters``: the clusters of at least
    two items, each an ascending list of item indices, ordered by first item;
    ``pairs``: int64 ``[m, 2]`` every kept pair ``(i, j)``, ``i < j``,
    ascending (with ``return_pairs=True``; else ``None``); ``bands``,
    ``rows``, ``threshold``, ``verify``; ``num_candidates``: candidate pairs
    of distinct signatures checked; ``num_kept``: of these, those kept."""

    labels: np.ndarray
    clusters: list[list[int]]
    pairs: np.ndarray | None
    bands: int
    rows: int
    threshold: float
    verify: bool
    num_candidates: int
    num_kept: int

    @property
    def keep(self) -> np.ndarray:
        """Bool ``[N]``: True for the first item of each cluster and every
        item alone (the de-duplicated set)."""
        return self.labels == np.arange(self.labels.size)

    @property
    def num_duplicates(self) -> int:
        """Items that are not the first of their cluster."""
        return int(self.labels.size - np.count_nonzero(self.keep))

    def summary(self) -> str:
        """One line: items, clusters, duplicates and the LSH settings."""
        return (
            f"{self.labels.size} items: {len(self.clusters)} near-duplicate clusters, "
            f"{self.num_duplicates} duplicates to drop (threshold {self.threshold:g}, "
            f"{self.bands} bands x {self.rows} rows)"
        )


def _clusters(labels: np.ndarray) -> list[list[int]]:
    """The groups of at least two items of equal label, ascending, by first item."""
    counts = np.bincount(labels, minlength=labels.size)
    members = np.flatnonzero(counts[labels] > 1)  # ascending
    if members.size == 0:
        return []
    order = members[np.argsort(labels[members], kind="stable")]
    cuts = np.flatnonzero(np.diff(labels[order])) + 1
    return [g.tolist() for g in np.split(order, cuts)]


def _check_signatures(signatures: Any) -> np.ndarray:
    if not isinstance(signatures, np.ndarray):
        raise TypeError(f"signatures must be a numpy array from minhash, got {type(signatures).__name__}")
    if signatures.dtype not in (np.uint32, np.uint64):
        raise TypeError(f"signatures must have dtype uint32 or uint64 (from minhash), got {signatures.dtype}")
    if signatures.ndim != 2:
        raise ValueError(f"signatures must be 2-D [num_items, num_perm], got shape {signatures.shape}")
    if signatures.shape[0] == 0 or signatures.shape[1] == 0:
        raise ValueError(f"signatures is empty (shape {signatures.shape})")
    return np.ascontiguousarray(signatures.astype(signatures.dtype.newbyteorder("="), copy=False))


def _bands_rows(bands: Any, rows: Any, threshold: float, k: int) -> tuple[int, int]:
    if bands is None and rows is None:
        return optimal_bands(threshold, k)
    if bands is None or rows is None:
        b0 = None if bands is None else check_int("bands", bands, 1)
        r0 = None if rows is None else check_int("rows", rows, 1)
        if b0 is not None:
            return b0, _fit("rows", k // b0, b0, k)
        assert r0 is not None
        return _fit("bands", k // r0, r0, k), r0
    b, r = check_int("bands", bands, 1), check_int("rows", rows, 1)
    if b * r > k:
        raise ValueError(f"bands * rows must be <= num_perm = {k}, got {b} * {r} = {b * r}")
    return b, r


def _fit(name: str, value: int, other: int, k: int) -> int:
    if value < 1:
        raise ValueError(f"{name}: no {name} fit num_perm = {k} with {other} given")
    return value


def near_duplicates(
    items: Any = None,
    threshold: float = 0.8,
    bands: int | None = None,
    rows: int | None = None,
    *,
    signatures: np.ndarray | None = None,
    num_perm: int = 128,
    ngram: int = 5,
    seed: int = 1,
    shingle: str | None = None,
    lowercase: bool = True,
    compat: str | None = None,
    verify: bool = True,
    return_pairs: bool = False,
    progress: bool | None = None,
) -> NearDuplicates:
    """Clusters of near-duplicate items by banded MinHash LSH (docs/math.md,
    "Near-duplicates (MinHash LSH)").

    Pass ``items`` (signed here by :func:`minhash` with ``num_perm``,
    ``ngram``, ``seed``, ``shingle``, ``lowercase``, ``compat``) or
    ``signatures`` (a uint32/uint64 ``[N, num_perm]`` array from
    :func:`minhash`). ``bands`` × ``rows`` ≤ ``num_perm`` columns are banded;
    by default both come from :func:`optimal_bands` (one given: the other is
    ``num_perm // given``). A pair agreeing on a whole band is a candidate; with
    ``verify`` it is kept only if the fraction of the ``num_perm`` columns
    that agree is ≥ ``threshold`` (in (0, 1]); clusters are the connected
    components of the kept pairs. Items with identical signatures always
    cluster. Runs in Rust on all cores; memory beyond the signatures is about
    ``8 · bands + 40`` bytes per item plus the kept pairs of one band (and ``pairs``
    with ``return_pairs=True``, which lists every pair of a cluster of
    identical items: quadratic in its size)."""
    t = check_float_in("threshold", threshold, 0.0, 1.0, low_open=True)
    ver = check_bool("verify", verify)
    want = check_bool("return_pairs", return_pairs)
    if (items is None) == (signatures is None):
        raise TypeError("pass exactly one of items and signatures")
    if signatures is not None:
        sig = _check_signatures(signatures)
    else:
        sig = minhash(
            items, num_perm, ngram, seed, shingle=shingle, lowercase=lowercase, compat=compat, progress=progress
        )
    k = sig.shape[1]
    b, r = _bands_rows(bands, rows, t, k)
    labels, pairs, cand, kept = _core.minhash_cluster(sig, b, r, t if ver else None, want)
    return NearDuplicates(
        labels=labels,
        clusters=_clusters(labels),
        pairs=pairs if want else None,
        bands=b,
        rows=r,
        threshold=t,
        verify=ver,
        num_candidates=int(cand),
        num_kept=int(kept),
    )


# --------------------------------------------------------------------------- corpora


def _corpus_chunks(source: Any, text_field: str, chunk_rows: int) -> Iterator[tuple[int, list[Any]]]:
    from ..selection.corpus import _Source

    yield from _Source("source", source, text_field).chunks(0, chunk_rows)


def near_duplicates_corpus(
    source: Any,
    text_field: str = "text",
    threshold: float = 0.8,
    bands: int | None = None,
    rows: int | None = None,
    *,
    num_perm: int = 128,
    ngram: int = 5,
    seed: int = 1,
    shingle: str | None = None,
    lowercase: bool = True,
    compat: str | None = None,
    verify: bool = True,
    chunk_rows: int = 16384,
    progress: bool = True,
) -> NearDuplicates:
    """:func:`near_duplicates` over a corpus read in chunks of ``chunk_rows``
    rows: JSON Lines (``.jsonl``, ``.jsonl.gz``), Parquet, a directory of such
    shards, or a Hugging Face ``datasets.Dataset`` / ``IterableDataset``
    (the readers of :func:`dataprobes.selection.dsir_select_corpus`);
    ``text_field`` holds the text (or a list of token ids) of each row. Only
    the signatures (``4 · num_perm`` bytes a row with the default scheme) are
    held in memory; row indices are global, in file order. The result equals
    :func:`near_duplicates` on all rows at once, for any ``chunk_rows``."""
    if not isinstance(text_field, str):
        raise TypeError(f"text_field must be a str, got {type(text_field).__name__}")
    t = check_float_in("threshold", threshold, 0.0, 1.0, low_open=True)
    k = check_int("num_perm", num_perm, 1, MAX_PERM)
    n = _check_ngram(ngram)
    c = _check_compat(compat)
    s = _check_seed(seed, c)
    cr = check_int("chunk_rows", chunk_rows, 1)
    prog = check_bool("progress", progress)
    _bands_rows(bands, rows, t, k)  # refuse bad settings before reading
    from tqdm.auto import tqdm

    parts = []
    with tqdm(desc="minhash", unit="row", disable=not prog, leave=False) as bar:
        for _, chunk in _corpus_chunks(source, text_field, cr):
            parts.append(minhash(chunk, k, n, s, shingle=shingle, lowercase=lowercase, compat=c, progress=False))
            bar.update(len(chunk))
    if not parts:
        raise ValueError("source has no rows")
    sig = np.concatenate(parts) if len(parts) > 1 else parts[0]
    del parts
    return near_duplicates(signatures=sig, threshold=t, bands=bands, rows=rows, verify=verify)


def write_clusters(result: NearDuplicates, path: Any) -> Path:
    """Writes the clusters of ``result`` atomically to ``path`` as JSON Lines:
    one line per cluster, ``{"cluster": k, "size": m, "rows": [i, ...]}``
    (ascending rows; the first is the one to keep). Returns the path."""
    from .._durable import write_atomic

    if not isinstance(result, NearDuplicates):
        raise TypeError(f"result must be a NearDuplicates, got {type(result).__name__}")
    out = Path(path)
    lines = [
        json.dumps({"cluster": i, "size": len(c), "rows": c}, separators=(",", ":"))
        for i, c in enumerate(result.clusters)
    ]
    write_atomic(out, ("\n".join(lines) + ("\n" if lines else "")).encode())
    return out
