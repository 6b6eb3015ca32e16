r"""DSIR: data selection with importance resampling on hashed n-grams.

Xie, Santurkar, Ma & Liang, "Data Selection for Language Models via
Importance Resampling" (NeurIPS 2023); reference package ``data-selection``.
The math is in docs/math.md ("Data selection", "DSIR").

Each example becomes a vector ``h`` of hashed n-gram counts: the text is
lower-cased and split as nltk's ``WordPunctTokenizer`` does
(``re.findall(r"\w+|[^\w\s]+", text.lower())``, Python's Unicode classes
exactly), and every n-gram of 1..``ngrams`` consecutive tokens adds one to
bucket ``hash(n-gram) mod num_buckets``. Bag-of-n-grams models ``γ`` (target)
and ``β`` (raw) are the normalised summed counts; the log importance weight of
a raw example is ``Σ_j h_j (log(γ_j + ε) − log(β_j + ε))`` with ``ε = 1e-8``;
``num`` examples are drawn without replacement with probability proportional
to ``exp(weight)`` by Gumbel-top-k, or the ``num`` largest are kept.

Which characters are ``\w`` and ``\s`` depends on the regular-expression
engine: nltk >= 3.10 compiles the tokeniser with the third-party ``regex``
engine (``word_classes="nltk-regex"``, the default: ``\w`` also matches
combining marks, not superscript digits, and ``\s`` leaves out U+001C..U+001F),
nltk < 3.10 with Python's ``re`` (``word_classes="python-re"``); the two agree
on ASCII letters, digits and white space but split ``'cafe\u0301 x²'``
differently. ``hash="sha256"`` with the ``word_classes`` of the installed nltk
reproduces the reference bit for bit (sha256 of the n-gram string "w1 w2",
read as an integer, modulo ``num_buckets``); ``hash="fast"``
(the default) is a stable, documented 64-bit hash (:func:`hash_info`) that is
an order of magnitude faster. Items may also be token ids (a 2-D integer array
or a sequence of 1-D integer arrays): their n-grams of ids are hashed, and
``sha256`` then equals the reference run on the ids written in decimal with
single spaces. ``items`` is a sequence (list, tuple, array) or an iterator,
which is consumed once; a ``set`` or ``dict`` has no order that a selection
could index and is refused.

The featuriser, the fitted counts and the weights run in Rust on all cores
(``RAYON_NUM_THREADS`` sets the thread count); every result is identical for
any thread count and any chunking of the input, and the Gumbel noise of item
``i`` depends only on ``(seed, i)`` (:func:`gumbel_noise`), so a sharded or
streamed selection equals a single one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MappingView, Sequence, Set
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse  # type: ignore[import-untyped]

from .. import _core
from .._validation import as_indices, check_float, check_int, check_seed, real_array

__all__ = [
    "DEFAULT_NUM_BUCKETS",
    "dsir_select",
    "dsir_weights",
    "fit_ngram_model",
    "gumbel_noise",
    "gumbel_top_k",
    "hash_info",
    "hashed_ngram_features",
    "log_importance_weights",
    "ngram_bucket_counts",
    "ngram_log_ratio",
]

DEFAULT_NUM_BUCKETS = 10_000
#: The reference's smoothing inside the logs of the importance weight.
LOG_EPSILON = 1e-8
#: The tokeniser's character classes: the ``regex`` engine's (nltk >= 3.10)
#: or Python's ``re`` (nltk < 3.10).
WORD_CLASSES = ("nltk-regex", "python-re")
DEFAULT_WORD_CLASSES = "nltk-regex"
MAX_NGRAMS = int(_core.DSIR_MAX_NGRAMS)  # 32
MAX_BUCKETS = int(_core.DSIR_MAX_BUCKETS)  # 2**32
_MAX_NGRAMS = MAX_NGRAMS
_MAX_BUCKETS = MAX_BUCKETS
_CHUNK = 1 << 15  # examples per call into the core (the progress bar's step)
_AUTO_PROGRESS = 1 << 17  # show a bar by default from this many examples


def hash_info(hash: str = "fast", word_classes: str = DEFAULT_WORD_CLASSES) -> dict[str, Any]:
    r"""What ``hash`` and ``word_classes`` mean, to record with every saved
    artefact (weights, fitted models): name, version, seed and a description
    of the hash; the tokeniser, its character classes and the Unicode version
    of each table (``unicode_version``: Python's ``str.lower()`` mapping;
    ``word_classes_unicode_version``: the ``\w`` / ``\s`` tables)."""
    h = _check_hash(hash)
    wc = _check_word_classes(word_classes)
    if h == "sha256":
        desc = "sha256 of the UTF-8 n-gram 'w1 w2 ... wk', big-endian integer mod num_buckets (data-selection)"
        version = 1
    else:
        desc = (
            "token t = mix64(FNV-1a-64(UTF-8 bytes)) or mix64(id ^ 0xD1B54A32D192ED03); "
            "k-gram g_1 = t(w_k), g_i = mix64(g_{i-1} * 0x9E3779B97F4A7C15 ^ t(w_{k-i+1})); "
            "bucket = (g * num_buckets) >> 64; mix64 = SplitMix64 finaliser"
        )
        version = int(_core.DSIR_FAST_HASH_VERSION)
    return {
        "hash": h,
        "version": version,
        "seed": 0,
        "description": desc,
        "word_classes": wc,
        "tokenizer": (
            r"regex.findall(r'\w+|[^\w\s]+', text.lower(), flags=UNICODE|MULTILINE|DOTALL) (nltk >= 3.10)"
            if wc == "nltk-regex"
            else r"re.findall(r'\w+|[^\w\s]+', text.lower()) (nltk < 3.10)"
        ),
        "unicode_version": str(_core.DSIR_UNICODE_VERSION),
        "word_classes_unicode_version": (
            str(_core.DSIR_REGEX_UNICODE_VERSION) if wc == "nltk-regex" else str(_core.DSIR_UNICODE_VERSION)
        ),
        "word_classes_source": (f"regex {_core.DSIR_REGEX_MODULE_VERSION}" if wc == "nltk-regex" else "Python re"),
    }


# --------------------------------------------------------------------------
# argument checks


def _check_hash(hash: Any) -> str:
    if not isinstance(hash, str):
        raise TypeError(f"hash must be a str ('fast' or 'sha256'), got {type(hash).__name__}")
    if hash not in ("fast", "sha256"):
        raise ValueError(f"hash must be 'fast' or 'sha256', got {hash!r}")
    return hash


def _check_word_classes(word_classes: Any) -> str:
    if not isinstance(word_classes, str):
        raise TypeError(f"word_classes must be a str ('nltk-regex' or 'python-re'), got {type(word_classes).__name__}")
    if word_classes not in WORD_CLASSES:
        raise ValueError(f"word_classes must be 'nltk-regex' or 'python-re', got {word_classes!r}")
    return word_classes


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def _check_progress(value: Any) -> bool | None:
    return None if value is None else _check_bool("progress", value)


@dataclass
class _Items:
    """Examples as the core takes them: texts, or token ids cut at offsets."""

    texts: list[str] | None
    flat: np.ndarray | None = None  # [1, total] integer ids
    offsets: np.ndarray | None = None  # [n + 1] uint64

    @property
    def kind(self) -> str:
        return "text" if self.texts is not None else "ids"

    def __len__(self) -> int:
        if self.texts is not None:
            return len(self.texts)
        assert self.offsets is not None
        return len(self.offsets) - 1

    def ids(self) -> tuple[np.ndarray, np.ndarray]:
        assert self.flat is not None and self.offsets is not None
        return self.flat, self.offsets

    def chunk(self, lo: int, hi: int) -> _Items:
        if self.texts is not None:
            return _Items(self.texts[lo:hi])
        assert self.offsets is not None and self.flat is not None
        a, b = int(self.offsets[lo]), int(self.offsets[hi])
        return _Items(None, self.flat[:, a:b], self.offsets[lo : hi + 1] - np.uint64(a))


def _ids_array(name: str, arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold str or integer token ids, got dtype {arr.dtype}")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.size and np.issubdtype(arr.dtype, np.signedinteger) and int(arr.min()) < 0:
        raise ValueError(f"{name}: token ids must be >= 0")
    return arr


def _as_items(name: str, items: Any) -> _Items:
    """``items`` as texts or token-id rows (``TypeError``/``ValueError``
    naming ``name`` for anything else)."""
    if isinstance(items, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of str or of token-id arrays, not a single {type(items).__name__}")
    if isinstance(items, np.ndarray):
        if items.dtype.kind in "US":
            if items.ndim != 1:
                raise ValueError(f"{name}: an array of str must be 1-D, got shape {items.shape}")
            if items.dtype.kind == "S":
                raise TypeError(f"{name} must hold str, not bytes")
            return _Items([str(s) for s in items.tolist()])
        if items.dtype != object:
            arr = _ids_array(name, items)
            if arr.ndim != 2:
                raise ValueError(
                    f"{name}: token ids must be a 2-D array [num_examples, length] or a sequence of 1-D arrays, "
                    f"got shape {arr.shape}"
                )
            n, t = arr.shape
            flat = np.ascontiguousarray(arr).reshape(1, n * t)
            return _Items(None, flat, np.arange(n + 1, dtype=np.uint64) * np.uint64(t))
        items = items.tolist()
    if not isinstance(items, (Sequence, Iterator, Set, Mapping, MappingView)) and hasattr(items, "to_pylist"):
        items = items.to_pylist()  # a pyarrow array: ordered
    elif not isinstance(items, (Sequence, Iterator, Set, Mapping, MappingView)) and hasattr(items, "to_numpy"):
        items = items.to_numpy().tolist()  # a pandas Series / Index: ordered, read by position
    if isinstance(items, (Set, Mapping, MappingView)):
        raise TypeError(
            f"{name} must be a sequence of str or of token-id arrays (in a fixed order), not a "
            f"{type(items).__name__}: sort it or pass a list"
        )
    if not isinstance(items, Sequence):
        if not isinstance(items, Iterator):
            raise TypeError(
                f"{name} must be a sequence or an iterator of str or of token-id arrays, got {type(items).__name__}"
            )
        items = list(items)  # an iterator is consumed once
    if len(items) == 0 or isinstance(items[0], str):
        texts = items if isinstance(items, list) else list(items)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"{name}[{i}] must be a str like {name}[0], got {type(t).__name__}")
        return _Items(texts)
    rows = []
    for i, r in enumerate(items):
        if isinstance(r, str):
            raise TypeError(f"{name}[{i}] is a str but {name}[0] is not: do not mix texts and token ids")
        try:
            a = np.asarray(r)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{name}[{i}] must be a 1-D array of token ids: {exc}") from None
        if a.size == 0:
            a = a.astype(np.int64)
        a = _ids_array(f"{name}[{i}]", a)
        if a.ndim != 1:
            raise ValueError(f"{name}[{i}] must be a 1-D array of token ids, got shape {a.shape}")
        rows.append(a)
    lengths = np.fromiter((len(r) for r in rows), dtype=np.uint64, count=len(rows))
    offsets = np.zeros(len(rows) + 1, dtype=np.uint64)
    np.cumsum(lengths, out=offsets[1:])
    full = [r for r in rows if r.size]  # an empty row has no dtype to promote with (np.asarray([]) is float)
    flat = np.concatenate(full) if full else np.zeros(0, dtype=np.int64)
    if flat.dtype == np.float64 or not np.issubdtype(flat.dtype, np.integer):
        # uint64 with signed rows promotes to float64: ids beyond int64 are refused.
        raise TypeError(f"{name}: mixing uint64 and signed token ids is not supported; use one integer dtype")
    return _Items(None, np.ascontiguousarray(flat).reshape(1, -1), offsets)


def _text_call(name: str, texts: list[str], lo: int, fn: Any, *args: Any) -> Any:
    """``fn(texts, *args)``, with a text that is not valid Unicode (a lone
    surrogate) a ``ValueError`` naming ``name[lo + i]``."""
    try:
        return fn(texts, *args)
    except UnicodeEncodeError as exc:
        for i, t in enumerate(texts):
            try:
                t.encode("utf-8")
            except UnicodeEncodeError as e:
                raise ValueError(
                    f"{name}[{lo + i}] is not valid Unicode text: {e.reason} at position {e.start} "
                    f"({t[e.start : e.end]!r})"
                ) from None
        raise exc


def _check_spec(num_buckets: Any, ngrams: Any, hash: Any) -> tuple[int, int, str]:
    return (
        check_int("num_buckets", num_buckets, 1, _MAX_BUCKETS),
        check_int("ngrams", ngrams, 1, _MAX_NGRAMS),
        _check_hash(hash),
    )


def _chunks(n: int, progress: bool | None, desc: str) -> Iterator[tuple[int, int]]:
    from tqdm.auto import tqdm

    show = (n >= _AUTO_PROGRESS) if progress is None else progress
    with tqdm(total=n, desc=desc, unit="ex", disable=not show, leave=False) as bar:
        for lo in range(0, n, _CHUNK):
            hi = min(n, lo + _CHUNK)
            yield lo, hi
            bar.update(hi - lo)


# --------------------------------------------------------------------------
# features, models, weights


def hashed_ngram_features(
    items: Any,
    num_buckets: int = DEFAULT_NUM_BUCKETS,
    ngrams: int = 2,
    hash: str = "fast",
    *,
    lowercase: bool = True,
    word_classes: str = DEFAULT_WORD_CLASSES,
    progress: bool | None = None,
) -> scipy.sparse.csr_array:
    r"""Hashed n-gram counts ``h`` of each example: an int64 CSR array
    ``[N, num_buckets]``; row ``i`` counts every n-gram of 1..``ngrams``
    consecutive tokens of example ``i`` in bucket ``hash(n-gram) mod
    num_buckets`` (DSIR, Xie et al. 2023; docs/math.md, "DSIR").

    ``items``: a sequence (or an iterator, consumed once) of str
    (lower-cased unless ``lowercase=False``, then tokenised as
    ``findall(r"\w+|[^\w\s]+", text)`` with the ``\w`` / ``\s`` of
    ``word_classes``: ``"nltk-regex"`` or ``"python-re"``), or token ids (a
    2-D integer array, or a sequence of 1-D integer arrays; ``lowercase`` and
    ``word_classes`` are then ignored). ``hash``: ``"fast"`` or ``"sha256"``
    (the reference's buckets, :func:`hash_info`)."""
    b, n, h = _check_spec(num_buckets, ngrams, hash)
    low = _check_bool("lowercase", lowercase)
    wc = _check_word_classes(word_classes)
    it = _as_items("items", items)
    indptr = [np.zeros(1, dtype=np.int64)]
    indices, data = [], []
    base = 0
    for lo, hi in _chunks(len(it), _check_progress(progress), "n-gram features"):
        c = it.chunk(lo, hi)
        if c.texts is not None:
            p, ix, d, _ = _text_call("items", c.texts, lo, _core.dsir_text_features, b, n, h, low, wc)
        else:
            p, ix, d, _ = _core.dsir_id_features(*c.ids(), b, n, h)
        indptr.append(p[1:] + base)
        indices.append(ix)
        data.append(d)
        base += len(ix)
    ind = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64)
    dat = np.concatenate(data) if data else np.zeros(0, dtype=np.int64)
    return scipy.sparse.csr_array((dat, ind, np.concatenate(indptr)), shape=(len(it), b))


def _counts(
    name: str,
    it: _Items,
    n: int,
    h: str,
    low: bool,
    wc: str,
    progress: bool | None,
    total: np.ndarray,
) -> np.ndarray:
    """Adds the summed bucket counts of ``it`` to ``total`` (int64, one per
    bucket) in place and returns it; the core adds each chunk's counts into
    ``total`` itself (no per-chunk dense array)."""
    for lo, hi in _chunks(len(it), progress, f"fitting on {name}"):
        c = it.chunk(lo, hi)
        if c.texts is not None:
            _text_call(name, c.texts, lo, _core.dsir_text_counts, total, n, h, low, wc)
        else:
            _core.dsir_id_counts(*c.ids(), total, n, h)
    return total


def ngram_bucket_counts(
    items: Any,
    num_buckets: int = DEFAULT_NUM_BUCKETS,
    ngrams: int = 2,
    hash: str = "fast",
    *,
    lowercase: bool = True,
    word_classes: str = DEFAULT_WORD_CLASSES,
    add_to: np.ndarray | None = None,
    progress: bool | None = None,
) -> np.ndarray:
    """Hashed n-gram counts summed over ``items``: int64 ``[num_buckets]``,
    ``c_j = Σ_i h_ij`` (the column sums of :func:`hashed_ngram_features`,
    without building it; DSIR's fitted model before normalisation,
    docs/math.md, "DSIR"). Same ``items`` and settings as
    :func:`hashed_ngram_features`.

    ``add_to``: an int64 C-contiguous writable array of ``num_buckets``
    entries to add the counts to in place (and return), e.g. running counts
    over the chunks of a corpus. Memory beyond the output follows the
    distinct n-grams seen, not ``threads × num_buckets``; ``MemoryError`` when
    even that does not fit."""
    b, n, h = _check_spec(num_buckets, ngrams, hash)
    low = _check_bool("lowercase", lowercase)
    wc = _check_word_classes(word_classes)
    prog = _check_progress(progress)
    if add_to is None:
        total = np.zeros(b, dtype=np.int64)
    else:
        if not isinstance(add_to, np.ndarray):
            raise TypeError(f"add_to must be a numpy int64 array or None, got {type(add_to).__name__}")
        if add_to.dtype != np.int64:
            raise TypeError(f"add_to must have dtype int64, got {add_to.dtype}")
        if add_to.shape != (b,):
            raise ValueError(f"add_to must have shape ({b},) (num_buckets), got {add_to.shape}")
        if not (add_to.flags.c_contiguous and add_to.flags.writeable):
            raise ValueError("add_to must be C-contiguous and writeable")
        total = add_to
    return _counts("items", _as_items("items", items), n, h, low, wc, prog, total)


def _normalise(name: str, counts: np.ndarray, smoothing: float) -> np.ndarray:
    if smoothing == 0.0:
        s = counts.sum()
        if s == 0:
            raise ValueError(f"{name} has no n-grams (every example is empty): cannot fit a bag-of-n-grams model")
        return counts / s  # exactly the reference's `counts / counts.sum()`
    c = counts + smoothing
    return c / c.sum()


def fit_ngram_model(
    items: Any,
    num_buckets: int = DEFAULT_NUM_BUCKETS,
    ngrams: int = 2,
    hash: str = "fast",
    *,
    smoothing: float = 0.0,
    lowercase: bool = True,
    word_classes: str = DEFAULT_WORD_CLASSES,
    progress: bool | None = None,
) -> np.ndarray:
    """The bag-of-n-grams model of ``items``: float64 ``[num_buckets]``
    bucket probabilities ``(c_j + smoothing) / Σ_k (c_k + smoothing)`` with
    ``c`` the summed :func:`hashed_ngram_features`. ``smoothing=0`` (the
    default) is the reference's fit, ``counts / counts.sum()``, bit for bit;
    the reference smooths later, by ``1e-8`` inside the logs
    (:func:`ngram_log_ratio`). ``ValueError`` if ``items`` has no n-gram
    and ``smoothing`` is 0."""
    b, n, h = _check_spec(num_buckets, ngrams, hash)
    sm = check_float("smoothing", smoothing)
    if sm < 0:
        raise ValueError(f"smoothing must be >= 0, got {sm}")
    low = _check_bool("lowercase", lowercase)
    wc = _check_word_classes(word_classes)
    prog = _check_progress(progress)
    it = _as_items("items", items)
    if len(it) == 0:
        raise ValueError("items must hold at least one example")
    return _normalise("items", _counts("items", it, n, h, low, wc, prog, np.zeros(b, dtype=np.int64)), sm)


def _check_probs(name: str, value: Any) -> np.ndarray:
    p = real_array(name, value, "a 1-D array of probabilities")
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError(f"{name} must be finite and >= 0")
    return p


def ngram_log_ratio(target_probs: Any, raw_probs: Any, *, eps: float = LOG_EPSILON) -> np.ndarray:
    """``log(γ + eps) − log(β + eps)`` per bucket (float64), the reference's
    smoothed log ratio of the target model ``γ`` to the raw model ``β``."""
    g = _check_probs("target_probs", target_probs)
    b = _check_probs("raw_probs", raw_probs)
    if g.shape != b.shape:
        raise ValueError(f"target_probs and raw_probs must have the same length, got {g.size} and {b.size}")
    e = check_float("eps", eps, positive=True)
    return np.log(g + e) - np.log(b + e)


def log_importance_weights(
    items: Any,
    log_ratio: Any,
    ngrams: int = 2,
    hash: str = "fast",
    *,
    min_example_length: int = 100,
    lowercase: bool = True,
    word_classes: str = DEFAULT_WORD_CLASSES,
    progress: bool | None = None,
) -> np.ndarray:
    """``Σ_j h_j · log_ratio[j]`` for each example (float64 ``[N]``),
    accumulated n-gram by n-gram inside the featuriser pass (no feature
    matrix; ``num_buckets = len(log_ratio)``).

    Examples shorter than ``min_example_length`` words get ``-inf`` (never
    selected), as the reference filters them. The length is the reference's
    ``(Σ_j h_j + n(n−1)/2) // n`` for ``n = ngrams``, which is the number of
    tokens (words and punctuation runs, or ids) of every example with at least
    ``n − 1`` tokens; ``min_example_length=0`` keeps all."""
    lr = np.asarray(log_ratio) if not isinstance(log_ratio, np.ndarray) else log_ratio
    if lr.dtype == np.bool_ or not np.issubdtype(lr.dtype, np.number) or np.issubdtype(lr.dtype, np.complexfloating):
        raise TypeError(f"log_ratio must be a real numeric array, got dtype {lr.dtype}")
    if lr.ndim != 1 or lr.size == 0 or lr.size > _MAX_BUCKETS:
        raise ValueError(f"log_ratio must be 1-D with 1 to {_MAX_BUCKETS} entries, got shape {lr.shape}")
    lr = np.ascontiguousarray(lr, dtype=np.float64)
    if not np.isfinite(lr).all():
        raise ValueError("log_ratio must be finite (smooth the models, see ngram_log_ratio)")
    _, n, h = _check_spec(lr.size, ngrams, hash)
    mlen = check_int("min_example_length", min_example_length)
    low = _check_bool("lowercase", lowercase)
    wc = _check_word_classes(word_classes)
    prog = _check_progress(progress)
    return _log_weights("items", _as_items("items", items), lr, n, h, mlen, low, wc, prog)


def _log_weights(
    name: str, it: _Items, lr: np.ndarray, n: int, h: str, mlen: int, low: bool, wc: str, progress: bool | None
) -> np.ndarray:
    out = np.empty(len(it), dtype=np.float64)
    for lo, hi in _chunks(len(it), progress, "importance weights"):
        c = it.chunk(lo, hi)
        if c.texts is not None:
            out[lo:hi] = _text_call(name, c.texts, lo, _core.dsir_text_log_weights, lr, n, h, low, wc, mlen)
        else:
            out[lo:hi] = _core.dsir_id_log_weights(*c.ids(), lr, n, h, mlen)
    return out


def dsir_weights(
    raw: Any,
    target: Any,
    *,
    num_buckets: int = DEFAULT_NUM_BUCKETS,
    ngrams: int = 2,
    hash: str = "fast",
    min_example_length: int = 100,
    lowercase: bool = True,
    word_classes: str = DEFAULT_WORD_CLASSES,
    smoothing: float = 0.0,
    eps: float = LOG_EPSILON,
    progress: bool | None = None,
) -> np.ndarray:
    """DSIR log importance weights of ``raw`` (float64 ``[N]``): fit
    ``γ`` on ``target`` and ``β`` on ``raw`` (:func:`fit_ngram_model`), then
    ``Σ_j h_j (log(γ_j + eps) − log(β_j + eps))`` per raw example, ``-inf``
    below ``min_example_length`` words (:func:`log_importance_weights`).
    ``raw`` and ``target`` are both texts or both token ids. Unlike the
    reference (which fits ``β`` on its first ``100,000 · num_buckets``
    n-grams per worker by default), ``β`` is fitted on all of ``raw``."""
    b, n, h = _check_spec(num_buckets, ngrams, hash)
    sm = check_float("smoothing", smoothing)
    if sm < 0:
        raise ValueError(f"smoothing must be >= 0, got {sm}")
    check_float("eps", eps, positive=True)
    check_int("min_example_length", min_example_length)
    low = _check_bool("lowercase", lowercase)
    wc = _check_word_classes(word_classes)
    prog = _check_progress(progress)
    r = _as_items("raw", raw)
    t = _as_items("target", target)
    if len(t) == 0:
        raise ValueError("target must hold at least one example")
    if len(r) == 0:
        raise ValueError("raw must hold at least one example")
    if r.kind != t.kind:
        raise ValueError(f"raw and target must both be texts or both token ids, got {r.kind} and {t.kind}")
    gamma = _normalise("target", _counts("target", t, n, h, low, wc, prog, np.zeros(b, dtype=np.int64)), sm)
    beta = _normalise("raw", _counts("raw", r, n, h, low, wc, prog, np.zeros(b, dtype=np.int64)), sm)
    lr = ngram_log_ratio(gamma, beta, eps=eps)
    return _log_weights("raw", r, lr, n, h, check_int("min_example_length", min_example_length), low, wc, prog)


# --------------------------------------------------------------------------
# resampling


def gumbel_noise(indices: Any, seed: int) -> np.ndarray:
    """Gumbel(0, 1) noise ``−ln(−ln U)`` of items ``indices`` (float64):
    ``U`` is drawn from a counter-based stream keyed by ``(seed, index)``
    alone, so item ``i`` gets the same noise in any chunk, shard or order."""
    s = check_seed("seed", seed)
    return _core.gumbel_noise(as_indices(indices), s)


def _check_log_weights(log_weights: Any) -> np.ndarray:
    w = real_array("log_weights", log_weights)
    if w.ndim != 1:
        raise ValueError(f"log_weights must be 1-D, got shape {w.shape}")
    if np.isnan(w).any() or (w == np.inf).any():
        raise ValueError("log_weights must not hold NaN or +inf (-inf marks an excluded item)")
    return w


def _top(keys: np.ndarray, num: int) -> np.ndarray:
    """Indices of the ``num`` largest ``keys``, largest first, ties by
    smaller index."""
    if num == 0:
        return np.zeros(0, dtype=np.int64)
    if num < keys.size:
        part = np.argpartition(-keys, num - 1)[:num]
        thr = keys[part].min()
        above = np.flatnonzero(keys > thr)
        at = np.flatnonzero(keys == thr)[: num - above.size]
        cand = np.concatenate([above, at])
    else:
        cand = np.arange(keys.size)
    return cand[np.lexsort((cand, -keys[cand]))].astype(np.int64)


def _check_num(num: Any, w: np.ndarray) -> int:
    k = check_int("num", num)
    finite = int(np.isfinite(w).sum())
    if k > finite:
        raise ValueError(f"num must be <= the number of selectable items ({finite} with a finite log weight), got {k}")
    return k


def gumbel_top_k(log_weights: Any, num: int, seed: int) -> np.ndarray:
    """``num`` indices drawn without replacement with probabilities
    proportional to ``exp(log_weights)`` (int64, in drawing order): the
    ``num`` largest ``log_weights[i] + G_i`` with ``G_i = gumbel_noise(i,
    seed)`` (Gumbel-top-k; Kool et al. 2019), ties broken by smaller index.
    Items with weight ``-inf`` are never drawn; ``num`` must not exceed the
    number of the others. Unlike the reference's unseeded noise, the result
    is a function of ``(log_weights, num, seed)``."""
    w = _check_log_weights(log_weights)
    k = _check_num(num, w)
    s = check_seed("seed", seed)
    keys = w + _core.gumbel_noise(np.arange(w.size, dtype=np.uint64), s)
    return _top(keys, k)


def dsir_select(
    raw: Any,
    target: Any,
    num: int,
    *,
    top_k: bool = False,
    seed: int = 0,
    num_buckets: int = DEFAULT_NUM_BUCKETS,
    ngrams: int = 2,
    hash: str = "fast",
    min_example_length: int = 100,
    lowercase: bool = True,
    word_classes: str = DEFAULT_WORD_CLASSES,
    smoothing: float = 0.0,
    eps: float = LOG_EPSILON,
    progress: bool | None = None,
) -> np.ndarray:
    """Indices (int64) of ``num`` examples of ``raw`` selected by DSIR:
    importance resampling without replacement on :func:`dsir_weights`
    (:func:`gumbel_top_k` with ``seed``), or the ``num`` largest weights if
    ``top_k`` (ties by smaller index). Examples shorter than
    ``min_example_length`` words are never selected."""
    tk = _check_bool("top_k", top_k)
    s = check_seed("seed", seed)
    check_int("num", num)
    w = dsir_weights(
        raw,
        target,
        num_buckets=num_buckets,
        ngrams=ngrams,
        hash=hash,
        min_example_length=min_example_length,
        lowercase=lowercase,
        word_classes=word_classes,
        smoothing=smoothing,
        eps=eps,
        progress=progress,
    )
    if tk:
        return _top(w, _check_num(num, w))
    return gumbel_top_k(w, num, s)
