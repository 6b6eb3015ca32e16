r"""Fast diversity measures of a data set, on texts and on token arrays.

docs/math.md, "Dataset metrics" > "Fast diversity measures", gives the
definitions, the references and the numerics.

- :func:`distinct_n` — distinct n-grams / all n-grams (Li et al. 2016);
  :func:`ngram_diversity` — Σ_{n=1..N} of it over the joined items (the
  ``diversity`` package's ``ngram_diversity_score``).
- :func:`self_repetition` — mean over items of log(1 + occurrences of the
  item's n-grams in the other items) (Salkar et al. 2022; the ``diversity``
  package's ``self_repetition_score``).
- :func:`compression_ratio` — raw bytes / gzip (or zstd) bytes of the joined
  items.
- :func:`self_bleu` — mean sentence BLEU of each item against all the others
  (Zhu et al. 2018, "Texygen"); nltk's or sacrebleu's definition.
- :func:`homogenization_rougel` — mean pairwise ROUGE-L F (Padmakumar & He
  2024; the ``diversity`` package's ``homogenization_score(measure='rougel')``).
- :func:`vendi_score` — exp of the entropy of the eigenvalues of K/n (Friedman
  & Dieng 2023; the ``vendi-score`` package's ``score_X`` / ``score_K``),
  exact up to ``exact_max_n``, stochastic Lanczos quadrature beyond.

**Items.** A sequence of str, or token ids: a 2-D integer array
``[num_items, length]`` (numpy or torch) or a sequence of 1-D integer arrays. Texts are cut by
``tokenize``: ``"split"`` (Python's ``str.split()``), ``"space"``
(``str.split(' ')``, empty pieces included), ``"rouge"`` (``rouge_score``'s
tokeniser: lower-case, runs of ``[a-z0-9]``), ``"wordpunct"`` (lower-case,
``\w+|[^\w\s]+``), or any callable ``str -> list[str]`` (e.g.
``nltk.word_tokenize``). Token arrays are used as they are (``tokenize`` is
ignored). The n-gram counting, self-BLEU and ROUGE-L run in Rust on all
cores, without the GIL; results do not depend on the thread count.
"""

from __future__ import annotations

import gzip
import math
import numbers
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _core
from .._validation import as_float_array, check_bool, check_choice, check_int, check_seed
from ..selection.dsir import _as_items, _text_call

__all__ = [
    "compression_ratio",
    "distinct_n",
    "homogenization_rougel",
    "ngram_diversity",
    "self_bleu",
    "self_repetition",
    "vendi_score",
]

MAX_N = int(_core.DIVERSITY_MAX_N)  # 64
_SPLITS = ("split", "space", "rouge", "wordpunct")
#: Default largest matrix side of the exact Vendi score (one eigvalsh of at
#: most this size); beyond it, stochastic Lanczos quadrature.
VENDI_EXACT_MAX_N = 4096
_AUTO_PROGRESS = 20_000  # items (ROUGE-L) or matrix side (Vendi) above which a bar shows

Tokenize = str | Callable[[str], Any]


# ---------------------------------------------------------------------------
# items


def _untorch(value: Any) -> Any:
    """A torch tensor as a numpy array (detached, on the CPU); anything else
    as it is. Torch is not imported: a tensor is recognised by its type."""
    if type(value).__module__.startswith("torch") and callable(getattr(value, "detach", None)):
        return value.detach().cpu().numpy()
    return value


def _prepare(name: str, items: Any, tokenize: Any) -> tuple[Any, np.ndarray | None, str, int]:
    """``items`` as the core takes them: ``(texts, None, rule, n)`` or
    ``(ids [1, total], offsets, "split", n)``."""
    if not (isinstance(tokenize, str) or callable(tokenize)):
        raise TypeError(f"tokenize must be one of {_SPLITS} or a callable, got {type(tokenize).__name__}")
    it = _as_items(name, _untorch(items))
    n = len(it)
    if n == 0:
        raise ValueError(f"{name} is empty: pass at least one text or token sequence")
    if it.texts is None:
        flat, offsets = it.ids()
        return flat, offsets, "split", n
    if isinstance(tokenize, str):
        return it.texts, None, check_choice("tokenize", tokenize, _SPLITS), n
    vocab: dict[str, int] = {}
    rows = []
    for i, t in enumerate(it.texts):
        toks = tokenize(t)
        if isinstance(toks, str) or not all(isinstance(w, str) for w in toks):
            raise TypeError(f"tokenize({name}[{i}]) must return a list of str")
        rows.append(np.fromiter((vocab.setdefault(w, len(vocab)) for w in toks), dtype=np.int64))
    offsets = np.zeros(n + 1, dtype=np.uint64)
    np.cumsum([len(r) for r in rows], out=offsets[1:])
    flat = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    return flat.reshape(1, -1), offsets, "split", n


def _call(name: str, prepared: tuple[Any, np.ndarray | None, str, int], fn: Any, *args: Any) -> Any:
    items, offsets, rule, _ = prepared
    if offsets is None:
        return _text_call(name, items, 0, fn, None, rule, *args)
    return fn(items, offsets, rule, *args)


def _check_n(name: str, n: Any) -> int:
    return check_int(name, n, 1, MAX_N)


# ---------------------------------------------------------------------------
# n-gram measures


def distinct_n(items: Any, n: int = 2, *, tokenize: Tokenize = "split", all_orders: bool = False) -> Any:
    r"""Distinct-n: distinct n-grams / all n-grams of the data set (Li et al.
    2016, "A Diversity-Promoting Objective Function for Neural Conversation
    Models"). n-grams are counted inside each item (never across two) and
    pooled over the set.

    Returns a float, or with ``all_orders=True`` a float64 array
    ``[distinct-1, ..., distinct-n]``. ``ValueError`` if no item has ``n``
    tokens (the ratio would be 0/0).
    """
    n = _check_n("n", n)
    all_orders = check_bool("all_orders", all_orders)
    prepared = _prepare("items", items, tokenize)
    distinct, total = _call("items", prepared, _core.diversity_ngram_counts, n, False)
    short = [k + 1 for k in range(n) if total[k] == 0 and (all_orders or k == n - 1)]
    if short:
        raise ValueError(f"items: no {short[0]}-grams (every item is shorter than {short[0]} tokens); lower n")
    ratios = distinct.astype(np.float64) / total.astype(np.float64)
    return ratios if all_orders else float(ratios[-1])


def ngram_diversity(items: Any, num_n: int = 4, *, tokenize: Tokenize = "space") -> float:
    r"""N-gram diversity: Σ_{n=1..num_n} distinct n-grams / all n-grams of the
    items joined into one sequence (n-grams cross item boundaries), as the
    ``diversity`` package's ``ngram_diversity_score`` (which cuts
    ``' '.join(items)`` with ``split(' ')``: ``tokenize="space"``), unrounded.
    Ranges over (0, num_n]."""
    num_n = _check_n("num_n", num_n)
    prepared = _prepare("items", items, tokenize)
    distinct, total = _call("items", prepared, _core.diversity_ngram_counts, num_n, True)
    if total[-1] == 0:
        raise ValueError(f"items: fewer than num_n={num_n} tokens in all; lower num_n")
    return float(np.sum(distinct.astype(np.float64) / total.astype(np.float64)))


def self_repetition(items: Any, n: int = 4, *, tokenize: Tokenize = "split") -> float:
    r"""Self-repetition (Salkar et al. 2022): the mean over items i of
    log(1 + Σ_{g ∈ G_i} (c(g) − 1)), where G_i is the set of distinct n-grams
    of item i and c(g) the number of items containing g — as the
    ``diversity`` package's ``self_repetition_score``. 0 when no n-gram is
    shared; larger is more repetitive."""
    n = _check_n("n", n)
    prepared = _prepare("items", items, tokenize)
    sums = _call("items", prepared, _core.diversity_self_repetition, n)
    return float(np.mean(np.log1p(sums.astype(np.float64))))


# ---------------------------------------------------------------------------
# compression


def _token_bytes(flat: np.ndarray) -> bytes:
    """Token ids as bytes: little-endian, the narrowest unsigned width that
    holds the largest id (so equal tokens give equal bytes whatever the input
    dtype)."""
    top = int(flat.max()) if flat.size else 0
    dtype = "<u1" if top < 2**8 else "<u2" if top < 2**16 else "<u4" if top < 2**32 else "<u8"
    return np.ascontiguousarray(flat.ravel().astype(dtype)).tobytes()


def compression_ratio(
    items: Any, algorithm: str = "gzip", level: int | None = None, *, double_gzip: bool = False
) -> float:
    r"""Compression ratio: raw bytes / compressed bytes of the whole set.

    Texts are joined with single spaces and encoded as UTF-8 (as the
    ``diversity`` package's ``compression_ratio``); token arrays are
    concatenated as little-endian unsigned integers of the narrowest width
    holding the largest id (uint8 for ids < 256, ...). ``algorithm="gzip"``
    (``level`` 0–9, default 9 as the package; a gzip member with mtime 0) or
    ``"zstd"`` (``level`` 1–22, default 3; needs the ``zstandard`` package).
    Higher = more redundant, less diverse.

    ``double_gzip=True`` reproduces the ``diversity`` package's number: its
    file holds gzip(gzip(data)) (it compresses the data, then writes the
    result through a ``GzipFile`` named ``compressed.gz``); the package's
    inner member carries the current time, which can move its size by a
    byte. The package rounds to 3 decimals; this function does not.
    """
    algorithm = check_choice("algorithm", algorithm, ("gzip", "zstd"))
    double_gzip = check_bool("double_gzip", double_gzip)
    if double_gzip and algorithm != "gzip":
        raise ValueError("double_gzip=True is the diversity package's gzip container: use algorithm='gzip'")
    if algorithm == "gzip":
        lvl = 9 if level is None else check_int("level", level, 0, 9)
    else:
        lvl = 3 if level is None else check_int("level", level, 1, 22)
    it = _as_items("items", _untorch(items))
    if len(it) == 0:
        raise ValueError("items is empty: pass at least one text or token sequence")
    if it.texts is not None:
        try:
            data = " ".join(it.texts).encode("utf-8")
        except UnicodeEncodeError as e:
            raise ValueError(f"items is not valid Unicode text: {e.reason}") from None
    else:
        data = _token_bytes(it.ids()[0])
    if not data:
        raise ValueError("items hold no bytes to compress (empty texts or token arrays)")
    if algorithm == "zstd":
        try:
            import zstandard
        except ImportError:  # pragma: no cover - exercised where zstandard is absent
            raise ImportError(
                "compression_ratio(algorithm='zstd') needs the zstandard package: "
                "pip install 'dataprobes[metrics]' (or zstandard)"
            ) from None
        size = len(zstandard.ZstdCompressor(level=lvl).compress(data))
    else:
        inner = gzip.compress(data, compresslevel=lvl, mtime=0)
        if not double_gzip:
            size = len(inner)
        else:
            # GzipFile's member: 10-byte header, FNAME "compressed\0", raw
            # deflate of the inner member at the same level, CRC32 and size.
            c = zlib.compressobj(lvl, zlib.DEFLATED, -zlib.MAX_WBITS, zlib.DEF_MEM_LEVEL, 0)
            size = 10 + len(b"compressed\0") + len(c.compress(inner) + c.flush()) + 8
    return len(data) / size


# ---------------------------------------------------------------------------
# pairwise overlap

_BLEU_SMOOTHING = {"nltk": ("method1", "method0"), "sacrebleu": ("exp", "floor", "add-k", "none")}
_BLEU_VALUE = {"method1": 0.1, "floor": 0.1, "add-k": 1.0}


def self_bleu(
    items: Any,
    max_n: int = 4,
    *,
    reference: str = "nltk",
    smoothing: str | None = None,
    smooth_value: float | None = None,
    tokenize: Tokenize = "split",
    per_item: bool = False,
) -> Any:
    r"""Self-BLEU (Zhu et al. 2018, Texygen): the mean over items of the
    sentence BLEU of the item (hypothesis) against all the other items
    (references), uniform weights 1/max_n over n = 1..max_n. Higher = less
    diverse. In [0, 1] (sacrebleu's 0–100 scale divided by 100).

    ``reference="nltk"`` is ``nltk.translate.bleu_score.sentence_bleu`` with
    ``SmoothingFunction().method1`` (ε = ``smooth_value`` = 0.1; the setting of
    Texygen's self-BLEU) or ``"method0"`` (none); ``"sacrebleu"`` is
    ``sacrebleu.sentence_bleu`` (effective order) with ``"exp"`` (default),
    ``"floor"``, ``"add-k"`` or ``"none"`` smoothing, on tokens already cut
    (sacrebleu's ``tokenize='none'``). Clipped counts against all other
    items come from the largest and second-largest count of every n-gram, so
    the cost is linear in the data, not quadratic. Returns the mean, or the
    per-item scores (float64 ``[n]``) with ``per_item=True``.
    """
    max_n = _check_n("max_n", max_n)
    reference = check_choice("reference", reference, ("nltk", "sacrebleu"))
    choices = _BLEU_SMOOTHING[reference]
    smoothing = choices[0] if smoothing is None else check_choice("smoothing", smoothing, choices)
    if smooth_value is None:
        value = _BLEU_VALUE.get(smoothing, 0.0)
    else:
        if isinstance(smooth_value, (bool, np.bool_)) or not isinstance(smooth_value, numbers.Real):
            raise TypeError(f"smooth_value must be a real number, got {type(smooth_value).__name__}")
        value = float(smooth_value)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"smooth_value must be a positive finite number, got {smooth_value!r}")
    per_item = check_bool("per_item", per_item)
    prepared = _prepare("items", items, tokenize)
    if prepared[3] < 2:
        raise ValueError("items: self-BLEU needs at least 2 items (each is scored against the others)")
    scores = _call("items", prepared, _core.diversity_self_bleu, max_n, f"{reference}-{smoothing}", value)
    return scores if per_item else float(np.mean(scores))


def homogenization_rougel(items: Any, *, tokenize: Tokenize = "rouge", progress: bool | None = None) -> float:
    r"""Homogenisation by ROUGE-L (Padmakumar & He 2024): the mean ROUGE-L F
    over all pairs of distinct items, F = 2PR/(P+R) with P, R = LCS / lengths
    (``rouge_score`` without stemming) — the ``diversity`` package's
    ``homogenization_score(measure='rougel')``, unrounded (where every pair
    scores 0 the package returns 1.0; this returns 0.0). Higher = more
    homogeneous. One bit-parallel LCS per pair on all cores; ``progress``
    shows a bar (default: above 20,000 items)."""
    prepared = _prepare("items", items, tokenize)
    n = prepared[3]
    if n < 2:
        raise ValueError("items: homogenisation needs at least 2 items (it averages over pairs)")
    show = n >= _AUTO_PROGRESS if progress is None else check_bool("progress", progress)
    if not show:
        sums = _call("items", prepared, _core.diversity_rougel_row_sums, 0, n)
    else:
        from tqdm.auto import tqdm

        # blocks of about equal pair counts: rows lo..hi hold Σ (n - 1 - i) pairs
        cuts = sorted({int(round(n - n * math.sqrt(1 - k / 32))) for k in range(33)} | {0, n})
        parts = []
        with tqdm(total=n * (n - 1) // 2, desc="ROUGE-L pairs", unit="pair", leave=False) as bar:
            for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
                parts.append(_call("items", prepared, _core.diversity_rougel_row_sums, lo, hi))
                bar.update(sum(n - 1 - i for i in range(lo, hi)))
        sums = np.concatenate(parts)
    return math.fsum(sums.tolist()) * 2.0 / (n * (n - 1))


# ---------------------------------------------------------------------------
# Vendi score


def _check_q(q: Any) -> float:
    if isinstance(q, str):
        if q != "inf":
            raise ValueError(f"q must be a positive number or 'inf', got {q!r}")
        return math.inf
    if isinstance(q, (bool, np.bool_)) or not isinstance(q, numbers.Real):
        raise TypeError(f"q must be a positive number or 'inf', got {type(q).__name__}")
    v = float(q)
    if math.isnan(v) or v <= 0:
        raise ValueError(f"q must be a positive number or 'inf', got {q!r}")
    return v


def _vendi_from_eigs(w: np.ndarray, q: float) -> float:
    """Exp of the order-q Rényi entropy of the positive eigenvalues ``w``."""
    p = w[w > 0]
    if p.size == 0:
        raise ValueError("the similarity matrix is zero: the Vendi score is undefined")
    with np.errstate(over="ignore", under="ignore"):
        if q == math.inf:
            h = -math.log(float(p.max()))
        elif q == 1.0:
            h = float(-np.sum(p * np.log(p)))  # -inf for eigenvalues near the float64 maximum: VS = 0
        else:
            total = float(np.sum(p**q))
            if not (math.isfinite(total) and total >= np.finfo(np.float64).tiny):
                m = float(p.max())  # Σ p^q out of range (an unnormalised kernel): factor out max p
                total_log = q * math.log(m) + math.log(float(np.sum((p / m) ** q)))
            else:
                total_log = math.log(total)
            h = total_log / (1.0 - q)
        if q == math.inf:
            v = float(1.0 / p.max())
        else:
            v = float(np.exp(h))
    if not math.isfinite(v):
        raise ValueError(
            f"the Vendi score overflows float64 (exp({h:.4g})): the eigenvalues of K/n are far from a unit "
            "sum; use a kernel with a unit diagonal (normalize=True)"
        )
    return v


def _check_psd(w: np.ndarray, what: str) -> None:
    top = float(np.max(np.abs(w))) if w.size else 0.0
    if w.size and float(w.min()) < -1e-8 * max(top, 1e-300):
        raise ValueError(
            f"{what} is not positive semi-definite (eigenvalue {float(w.min()):.3g} of K/n); "
            "the Vendi score needs a PSD similarity"
        )


def _slq(
    matvec: Callable[[np.ndarray], np.ndarray],
    n: int,
    q: float,
    num_probes: int,
    steps: int,
    deflate: int,
    seed: int,
    progress: bool,
    what: str,
) -> float:
    """exp(H_q) of the eigenvalues of the PSD A (given by ``matvec``): its
    ``deflate`` largest eigenpairs exactly (Lanczos, ``eigsh``), the rest of
    tr f(A) by stochastic Lanczos quadrature on the deflated (I−UUᵀ)A(I−UUᵀ)
    (Ubaru, Chen & Saad 2017): Rademacher probes, ``steps`` Lanczos steps
    with full reorthogonalisation, Gauss quadrature on each tridiagonal."""
    from scipy.sparse.linalg import LinearOperator, eigsh  # type: ignore[import-untyped]
    from tqdm.auto import tqdm

    rng = np.random.Generator(np.random.PCG64(seed))

    def f(t: np.ndarray) -> np.ndarray:
        t = np.clip(t, 0.0, None)
        if q == 1.0:
            return -t * np.log(np.where(t > 0, t, 1.0))
        return t**q if q != math.inf else t

    if n <= deflate + 2:  # small: the matrix itself, from n products
        a = np.stack([matvec(e) for e in np.eye(n)], axis=1)
        w = np.linalg.eigvalsh((a + a.T) / 2)
        _check_psd(w, what)
        return _vendi_from_eigs(w, q)
    k = min(deflate, n - 2)
    if k > 0:
        op = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
        lam, u = eigsh(op, k=k, which="LA", v0=rng.standard_normal(n), tol=1e-10)
    else:
        lam, u = np.zeros(0), np.zeros((n, 0))

    def deflated(v: np.ndarray) -> np.ndarray:
        v = v - u @ (u.T @ v)
        w = matvec(v)
        return w - u @ (u.T @ w)

    top = float(lam.max()) if lam.size else 0.0
    exact = float(np.sum(f(lam)))
    m = min(steps, n)
    acc = 0.0
    for _ in tqdm(range(num_probes), desc="Vendi SLQ probes", disable=not progress, leave=False):
        z = rng.integers(0, 2, size=n).astype(np.float64) * 2.0 - 1.0
        z = z - u @ (u.T @ z)
        zz = float(z @ z)
        if zz == 0.0:
            continue
        basis = np.zeros((m, n))
        alpha = np.zeros(m)
        beta = np.zeros(m)
        v = z / math.sqrt(zz)
        size = 0
        for j in range(m):
            basis[j] = v
            w = deflated(v)
            alpha[j] = v @ w
            for _ in range(2):  # full reorthogonalisation, twice
                w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
            size = j + 1
            b = float(np.linalg.norm(w))
            if j + 1 == m or b <= 1e-12 * max(1.0, abs(alpha[j])):
                break
            beta[j] = b
            v = w / b
        off = beta[: size - 1]
        theta, vecs = np.linalg.eigh(np.diag(alpha[:size]) + np.diag(off, 1) + np.diag(off, -1))
        _check_psd(np.concatenate([theta, lam]), what)
        top = max(top, float(theta.max()))
        acc += zz * float(vecs[0] ** 2 @ f(theta))
    if q == math.inf:
        return 1.0 / top
    total = exact + acc / num_probes
    if q == 1.0:
        return float(np.exp(total))
    return float(np.exp(np.log(total) / (1.0 - q)))


def vendi_score(
    features: Any = None,
    *,
    kernel: Any = None,
    q: float | str = 1.0,
    normalize: bool | None = None,
    exact_max_n: int = VENDI_EXACT_MAX_N,
    num_probes: int = 32,
    lanczos_steps: int = 48,
    deflate: int = 64,
    seed: int = 0,
    progress: bool | None = None,
) -> float:
    r"""The Vendi score (Friedman & Dieng 2023): VS_q = exp(H_q(λ)) for the
    eigenvalues λ of K/n (H_1 the Shannon entropy, H_q the Rényi entropy of
    order q, H_∞ = −log max λ); between 1 (all items alike) and n (all
    orthogonal). The effective number of distinct items.

    ``features`` ``[n, d]``: K is the cosine-similarity matrix of the rows
    (``normalize=True``, default; ``vendi_score.vendi.score_X``), or the
    plain Gram X Xᵀ with ``normalize=False``. ``kernel`` ``[n, n]``: any
    symmetric PSD similarity (``score_K``; ``normalize=True`` rescales it to
    a unit diagonal). Exact (``eigvalsh``) when the matrix side is at most
    ``exact_max_n`` — for features, the smaller of the n×n Gram and the
    d×d XᵀX/n, which have the same nonzero eigenvalues; otherwise a seeded
    stochastic Lanczos quadrature (``num_probes`` Rademacher probes,
    ``lanczos_steps`` steps, matrix-vector products only, after taking the
    ``deflate`` largest eigenvalues exactly; docs/math.md gives its measured
    error). ``ValueError`` on empty input, NaN, a zero row
    under cosine, or a kernel that is not symmetric PSD.
    """
    if (features is None) == (kernel is None):
        raise TypeError("pass exactly one of features (rows to compare) and kernel (an n x n similarity)")
    qv = _check_q(q)
    exact_max_n = check_int("exact_max_n", exact_max_n, 1)
    num_probes = check_int("num_probes", num_probes, 1)
    lanczos_steps = check_int("lanczos_steps", lanczos_steps, 2)
    deflate = check_int("deflate", deflate, 0)
    seed = check_seed("seed", seed)
    name = "features" if features is not None else "kernel"
    x = as_float_array(name, _untorch(features if features is not None else kernel), 2)
    if x.size == 0:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    norm = (features is not None) if normalize is None else check_bool("normalize", normalize)
    n = x.shape[0]
    if features is not None:
        if norm:
            with np.errstate(over="ignore", under="ignore"):
                sq = np.einsum("ij,ij->i", x, x)
            lengths = np.sqrt(sq)
            bad = ~(np.isfinite(sq) & (sq >= np.finfo(np.float64).tiny))
            if bad.any():  # zero, subnormal or infinite sums of squares: rows / their max first
                peak = np.abs(x[bad]).max(axis=1)
                zero = np.flatnonzero(bad)[peak == 0]
                if zero.size:
                    raise ValueError(f"features: row {int(zero[0])} is all zeros (its cosine similarity is undefined)")
                x = x.copy()
                x[bad] /= peak[:, None]
                lengths[bad] = np.sqrt(np.einsum("ij,ij->i", x[bad], x[bad]))
            x = x / lengths[:, None]
        d = x.shape[1]
        if min(n, d) <= exact_max_n:
            with np.errstate(over="ignore", invalid="ignore"):
                gram = (x.T @ x) / n if d < n else (x @ x.T) / n
            if not np.isfinite(gram).all():
                raise ValueError("features: the Gram matrix overflows float64; rescale them or use normalize=True")
            w = np.linalg.eigvalsh(gram)
            return _vendi_from_eigs(w, qv)
        show = (n >= _AUTO_PROGRESS) if progress is None else check_bool("progress", progress)
        return _slq(lambda v: x @ (x.T @ v) / n, n, qv, num_probes, lanczos_steps, deflate, seed, show, "features")
    if x.shape[0] != x.shape[1]:
        raise ValueError(f"kernel must be square, got shape {x.shape}")
    scale = max(float(np.max(np.abs(x))), 1e-300)
    if float(np.max(np.abs(x - x.T))) > 1e-8 * scale:
        raise ValueError("kernel must be symmetric (K[i, j] == K[j, i])")
    diag = np.diagonal(x)
    if float(diag.min()) < 0:
        raise ValueError("kernel is not positive semi-definite (a negative diagonal entry)")
    if norm:
        if float(diag.min()) <= 0:
            raise ValueError("kernel: normalize=True needs a positive diagonal")
        s = np.sqrt(diag)
        x = x / s[:, None] / s[None, :]  # not / outer(s, s): that under- or overflows for extreme diagonals
    if n <= exact_max_n:
        w = np.linalg.eigvalsh(x / n)
        _check_psd(w, "kernel")
        return _vendi_from_eigs(w, qv)
    show = (n >= _AUTO_PROGRESS) if progress is None else check_bool("progress", progress)
    return _slq(lambda v: x @ v / n, n, qv, num_probes, lanczos_steps, deflate, seed, show, "kernel")
