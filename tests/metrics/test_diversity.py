"""Fast diversity measures (dataprobes.metrics.diversity): brute-force
references, agreement with the peer packages, the Vendi mixture identity,
the behaviour on probes whose entropy rate is known, bad input and
thread-count determinism."""

from __future__ import annotations

import gzip
import importlib.util
import math
import os
import subprocess
import sys
import types
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import dataprobes as dp
from dataprobes.metrics import (
    compression_ratio,
    distinct_n,
    homogenization_rougel,
    ngram_diversity,
    self_bleu,
    self_repetition,
    vendi_score,
)

# ----------------------------------------------------------------- helpers

HAS_ZSTD = importlib.util.find_spec("zstandard") is not None
WORDS = "the of and to in is was for on that with as by at from his her an it be are this".split()


def english_like(rng: np.random.Generator, n: int, vocab: int = 200) -> list[str]:
    words = WORDS + [f"w{i}" for i in range(vocab)]
    p = 1.0 / np.arange(1, len(words) + 1)  # Zipf
    p /= p.sum()
    out = []
    for _ in range(n):
        k = int(rng.integers(3, 40))
        s = " ".join(rng.choice(words, size=k, p=p).tolist())
        out.append(s[0].upper() + s[1:] + str(rng.choice([".", "!", "?", ", yes."])))
    return out


def ngrams(toks: list[Any], n: int) -> list[tuple[Any, ...]]:
    return [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]


def lcs(a: list[Any], b: list[Any]) -> int:
    t = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            t[i + 1][j + 1] = t[i][j] + 1 if x == y else max(t[i][j + 1], t[i + 1][j])
    return t[-1][-1]


def rouge_tokens(s: str) -> list[str]:
    import re

    return [t for t in re.split(r"\s+", re.sub(r"[^a-z0-9]+", " ", s.lower())) if re.match(r"^[a-z0-9]+$", t)]


def bleu_nltk(hyp: list[Any], refs: list[list[Any]], max_n: int, eps: float | None) -> float:
    """nltk's sentence_bleu (uniform weights), method1 (eps) or method0 (None)."""
    nums, dens = [], []
    for n in range(1, max_n + 1):
        c = Counter(ngrams(hyp, n))
        mx: Counter = Counter()
        for r in refs:
            for g, k in Counter(ngrams(r, n)).items():
                mx[g] = max(mx[g], k)
        nums.append(sum(min(k, mx[g]) for g, k in c.items()))
        dens.append(max(1, sum(c.values())))
    if nums[0] == 0:
        return 0.0
    r = min((len(x) for x in refs), key=lambda rl: (abs(rl - len(hyp)), rl))
    bp = 1.0 if len(hyp) > r else math.exp(1 - r / len(hyp))
    ps = [
        (k if k else (eps if eps is not None else 0.0)) / d if k or eps is not None else sys.float_info.min
        for k, d in zip(nums, dens)
    ]
    return bp * math.exp(math.fsum(math.log(p) / max_n for p in ps))


def bleu_sacre(hyp: list[Any], refs: list[list[Any]], max_n: int) -> float:
    """sacrebleu's sentence_bleu, exp smoothing, effective order, / 100."""
    correct, total = [], []
    for n in range(1, max_n + 1):
        c = Counter(ngrams(hyp, n))
        mx: Counter = Counter()
        for r in refs:
            for g, k in Counter(ngrams(r, n)).items():
                mx[g] = max(mx[g], k)
        correct.append(sum(min(k, mx[g]) for g, k in c.items()))
        total.append(max(0, len(hyp) - n + 1))
    r = min((len(x) for x in refs), key=lambda rl: (abs(rl - len(hyp)), rl))
    bp = 1.0 if len(hyp) >= r else (math.exp(1 - r / len(hyp)) if hyp else 0.0)
    if not any(correct):
        return 0.0
    smooth, eff, logs = 1.0, max_n, []
    for n in range(max_n):
        if total[n] == 0:
            break
        eff = n + 1
        p = 100.0 * correct[n] / total[n] if correct[n] else 100.0 / ((smooth := smooth * 2) * total[n])
        logs.append(math.log(p))
    return bp * math.exp(sum(logs) / eff) / 100.0


def load_diversity_module(name: str) -> Any:
    """A module of the ``diversity`` package loaded alone: its __init__
    imports spacy and friends (20 s), which these functions do not use."""
    pytest.importorskip("nltk")
    spec = importlib.util.find_spec("diversity")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the diversity package is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / f"{name}.py"
    stub = None
    if name == "homogenization" and "evaluate" not in sys.modules:
        pytest.importorskip("rouge_score")
        stub = types.ModuleType("evaluate")
        stub.load = None  # type: ignore[attr-defined]  # bertscore/bleu only; rougel never calls it
        sys.modules["evaluate"] = stub
    try:
        mspec = importlib.util.spec_from_file_location(f"_peer_diversity_{name}", path)
        assert mspec is not None and mspec.loader is not None
        mod = importlib.util.module_from_spec(mspec)
        mspec.loader.exec_module(mod)
    finally:
        if stub is not None:
            del sys.modules["evaluate"]
    return mod


text_alphabet = st.sampled_from(list("aab bc  \t\n\x1c\xa0\u2003.,!ÉéİKΣ日_1"))
texts_st = st.lists(st.text(text_alphabet, max_size=30), min_size=1, max_size=8)
rows_st = st.lists(st.lists(st.integers(0, 4), max_size=14), min_size=2, max_size=7)


# ----------------------------------------------------------- brute force


@given(texts_st, st.integers(1, 4), st.sampled_from(["split", "space"]))
def test_distinct_n_matches_brute_force(texts: list[str], n: int, tok: str) -> None:
    split = (lambda s: s.split()) if tok == "split" else (lambda s: s.split(" "))
    per = [[g for t in texts for g in ngrams(split(t), k)] for k in range(1, n + 1)]
    if not per[-1]:
        with pytest.raises(ValueError, match="no .*-grams"):
            distinct_n(texts, n, tokenize=tok)
        return
    assert distinct_n(texts, n, tokenize=tok) == len(set(per[-1])) / len(per[-1])
    joined = [w for t in texts for w in split(t)]
    if len(joined) >= n:
        want = sum(len(set(ngrams(joined, k))) / len(ngrams(joined, k)) for k in range(1, n + 1))
        assert ngram_diversity(texts, n, tokenize=tok) == pytest.approx(want, rel=1e-12)


@given(rows_st, st.integers(1, 3))
def test_token_rows_match_brute_force(rows: list[list[int]], n: int) -> None:
    arrays = [np.array(r, dtype=np.int32) for r in rows]
    grams = [g for r in rows for g in ngrams(r, n)]
    if grams:
        assert distinct_n(arrays, n) == len(set(grams)) / len(grams)
        # ids and the texts that spell them give the same answers
        as_text = [" ".join(f"t{x}" for x in r) for r in rows]
        assert distinct_n(as_text, n) == distinct_n(arrays, n)
        assert self_bleu(as_text, 3) == self_bleu(arrays, 3)
    sets = [set(ngrams(r, n)) for r in rows]
    want = np.mean(
        [math.log1p(sum(sum(g in s for j, s in enumerate(sets) if j != i) for g in si)) for i, si in enumerate(sets)]
    )
    assert self_repetition(arrays, n) == pytest.approx(want, rel=1e-12, abs=1e-15)


@given(rows_st, st.integers(1, 4), st.sampled_from(["nltk", "sacrebleu"]))
def test_self_bleu_matches_brute_force(rows: list[list[int]], max_n: int, ref: str) -> None:
    arrays = [np.array(r, dtype=np.uint8) for r in rows]
    got = self_bleu(arrays, max_n, reference=ref, per_item=True)
    for i, hyp in enumerate(rows):
        others = rows[:i] + rows[i + 1 :]
        want = bleu_nltk(hyp, others, max_n, 0.1) if ref == "nltk" else bleu_sacre(hyp, others, max_n)
        assert got[i] == pytest.approx(want, rel=1e-12, abs=1e-300)
    assert self_bleu(arrays, max_n, reference=ref) == pytest.approx(float(np.mean(got)), rel=1e-15)


@given(st.lists(st.lists(st.integers(0, 3), max_size=150), min_size=2, max_size=6))
def test_rougel_matches_dynamic_programme(rows: list[list[int]]) -> None:
    n = len(rows)
    fs = []
    for i in range(n):
        for j in range(i + 1, n):
            a, b = rows[i], rows[j]
            c = lcs(a, b)
            fs.append(0.0 if not a or not b or c == 0 else 2 * (c / len(a)) * (c / len(b)) / (c / len(a) + c / len(b)))
    got = homogenization_rougel([np.array(r) for r in rows])
    assert got == pytest.approx(math.fsum(fs) / len(fs), rel=1e-12, abs=1e-15)


@given(st.lists(st.text(text_alphabet, max_size=40), min_size=2, max_size=6))
def test_rouge_tokeniser_matches_rouge_score(texts: list[str]) -> None:
    toks = [rouge_tokens(t) for t in texts]
    vocab: dict[str, int] = {}
    ids = [np.array([vocab.setdefault(w, len(vocab)) for w in t], dtype=np.int64) for t in toks]
    assert homogenization_rougel(texts) == homogenization_rougel(ids)


def test_callable_tokenizer_and_progress_blocks() -> None:
    rng = np.random.default_rng(0)
    texts = english_like(rng, 60)
    assert distinct_n(texts, 2, tokenize=str.split) == distinct_n(texts, 2)
    assert self_bleu(texts, tokenize=lambda s: s.split()) == self_bleu(texts)
    assert homogenization_rougel(texts, progress=True) == homogenization_rougel(texts, progress=False)
    orders = distinct_n(texts, 3, all_orders=True)
    assert orders.shape == (3,) and orders[-1] == distinct_n(texts, 3)


# ------------------------------------------------------------ peer packages


def test_agrees_with_diversity_package() -> None:
    rng = np.random.default_rng(1)
    texts = english_like(rng, 150) + ["  double  spaces ", "tab\tand\nnewline", "Ünïcode İ K ß"]
    comp = load_diversity_module("compression")
    assert abs(round(compression_ratio(texts, double_gzip=True), 3) - comp.compression_ratio(texts, "gzip")) <= 0.0011
    ngd = load_diversity_module("ngram_diversity")
    assert abs(ngram_diversity(texts, 4) - ngd.ngram_diversity_score(texts, 4)) <= 5e-4 + 1e-12
    rep = load_diversity_module("self_repetition")
    for n in (2, 4):
        assert self_repetition(texts, n) == pytest.approx(rep.self_repetition_score(texts, n, verbose=False), rel=1e-12)
    hom = load_diversity_module("homogenization")
    sub = texts[:40] + texts[-3:]
    assert abs(homogenization_rougel(sub) - hom.homogenization_score(sub, "rougel", verbose=False)) <= 5e-4 + 1e-12


def test_rougel_agrees_with_rouge_score_unrounded() -> None:
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    rng = np.random.default_rng(2)
    texts = english_like(rng, 25) + ["İstanbul KELVIN", "", "ÀÉÎ õü 123abc"]
    sc = rouge_scorer.RougeScorer(["rougeL"])
    n = len(texts)
    total = math.fsum(sc.score(texts[j], texts[i])["rougeL"].fmeasure for i in range(n) for j in range(n) if i != j)
    assert homogenization_rougel(texts) == pytest.approx(total / (n * (n - 1)), rel=1e-12)


def test_self_bleu_agrees_with_nltk() -> None:
    bleu = pytest.importorskip("nltk.translate.bleu_score")
    rng = np.random.default_rng(3)
    texts = english_like(rng, 40) + ["a", "b c"]
    toks = [t.split() for t in texts]
    for smoothing, fn in (("method1", bleu.SmoothingFunction().method1), ("method0", None)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = [
                bleu.sentence_bleu(toks[:i] + toks[i + 1 :], toks[i], smoothing_function=fn) for i in range(len(toks))
            ]
        got = self_bleu(texts, smoothing=smoothing, per_item=True)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)
    w3 = bleu.sentence_bleu(
        toks[1:], toks[0], weights=(1 / 3,) * 3, smoothing_function=bleu.SmoothingFunction().method1
    )
    assert self_bleu(texts, 3, per_item=True)[0] == pytest.approx(w3, rel=1e-12)


def test_self_bleu_agrees_with_sacrebleu() -> None:
    sacrebleu = pytest.importorskip("sacrebleu")
    rng = np.random.default_rng(4)
    texts = english_like(rng, 40) + ["one", "two words"]
    for smoothing in ("exp", "floor", "add-k", "none"):
        want = [
            sacrebleu.sentence_bleu(
                texts[i], texts[:i] + texts[i + 1 :], smooth_method=smoothing, tokenize="none"
            ).score
            / 100
            for i in range(len(texts))
        ]
        got = self_bleu(texts, reference="sacrebleu", smoothing=smoothing, per_item=True)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # vendi-score's scipy.sparse.csr
def test_vendi_agrees_with_vendi_score() -> None:
    vendi = pytest.importorskip("vendi_score.vendi")
    rng = np.random.default_rng(5)
    for n, d in ((50, 8), (30, 80)):  # the d x d and the n x n paths
        x = rng.normal(size=(n, d)) + 0.7
        assert vendi_score(x) == pytest.approx(vendi.score_X(x), rel=1e-10)
        k = np.exp(-0.1 * ((x[:, None] - x[None]) ** 2).sum(-1))  # an RBF kernel: PSD, unit diagonal
        for q in (1, 0.5, 2, "inf"):
            assert vendi_score(kernel=k, q=q) == pytest.approx(vendi.score_K(k, q=q), rel=1e-9)
        assert vendi_score(x, normalize=False) == pytest.approx(vendi.score_K(x @ x.T), rel=1e-9)


def test_compression_matches_codecs() -> None:
    rng = np.random.default_rng(6)
    texts = english_like(rng, 100)
    data = " ".join(texts).encode()
    assert compression_ratio(texts) == len(data) / len(gzip.compress(data, 9, mtime=0))
    assert compression_ratio(texts, level=1) == len(data) / len(gzip.compress(data, 1, mtime=0))
    zstandard = pytest.importorskip("zstandard")
    assert compression_ratio(texts, "zstd", 7) == len(data) / len(zstandard.ZstdCompressor(level=7).compress(data))
    ids = rng.integers(0, 300, size=(20, 50))
    raw = ids.astype("<u2").tobytes()
    assert compression_ratio(ids) == len(raw) / len(gzip.compress(raw, 9, mtime=0))
    assert compression_ratio(ids.astype(np.int64)) == compression_ratio(list(ids.astype(np.uint16)))


# ------------------------------------------------------- Vendi identities


@given(
    st.lists(st.tuples(st.integers(1, 7), st.integers(1, 4)), min_size=1, max_size=4),
    st.integers(0, 2**32 - 1),
)
def test_vendi_of_disjoint_mixture(components: list[tuple[int, int]], seed: int) -> None:
    rng = np.random.default_rng(seed)
    dims = sum(d for _, d in components)
    blocks, col = [], 0
    for size, d in components:
        b = np.zeros((size, dims))
        b[:, col : col + d] = rng.normal(size=(size, d)) + rng.normal(size=d)
        b[np.abs(b).sum(1) == 0, col] = 1.0
        blocks.append(b)
        col += d
    x = np.concatenate(blocks)
    n = len(x)
    w = np.array([s for s, _ in components]) / n
    vs = [vendi_score(b) for b in blocks]
    want = math.exp(-float(np.sum(w * np.log(w))) + float(np.sum(w * np.log(vs))))
    assert vendi_score(x) == pytest.approx(want, rel=1e-9)
    assert 1.0 - 1e-9 <= vendi_score(x) <= n + 1e-9


def test_vendi_extremes_and_approximation() -> None:
    assert vendi_score(np.ones((10, 3))) == pytest.approx(1.0)
    assert vendi_score(np.eye(12)) == pytest.approx(12.0)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(700, 700)) + 0.3 * rng.normal(size=700)
    exact = vendi_score(x)
    approx = [vendi_score(x, exact_max_n=100, seed=s) for s in range(3)]
    assert approx[0] == vendi_score(x, exact_max_n=100, seed=0)  # seeded
    for a in approx:
        assert abs(a / exact - 1) < 0.05, (a, exact)  # measured ≈1-3% (docs/math.md)
    assert vendi_score(x, q="inf", exact_max_n=100) == pytest.approx(vendi_score(x, q="inf"), rel=1e-6)
    # rank 40 < 64 deflated eigenpairs: the approximation is exact
    low = np.zeros((300, 40))
    for k in range(4):
        low[75 * k : 75 * (k + 1), 10 * k : 10 * (k + 1)] = rng.normal(size=(75, 10)) + 1.0
    for q in (1, 2, "inf"):
        assert vendi_score(low, q=q, exact_max_n=10) == pytest.approx(vendi_score(low, q=q), rel=1e-7)
    tiny = rng.normal(size=(5, 5))
    assert vendi_score(tiny, exact_max_n=1) == pytest.approx(vendi_score(tiny), rel=1e-9)


# --------------------------------------------------------------- probes


def test_distinct_tokens_of_iid_uniform_follow_occupancy() -> None:
    vocab, length, reps = 64, 50, 400
    x = dp.IID(np.full(vocab, 1 / vocab)).sample(reps, length, seed=11)
    d1 = np.array([distinct_n([row], 1) for row in x])
    expected = vocab * (1 - (1 - 1 / vocab) ** length) / length  # E[distinct] / N
    se = d1.std(ddof=1) / math.sqrt(reps)
    assert abs(d1.mean() - expected) < 4 * se
    assert distinct_n(x, 1) == len(np.unique(x)) / x.size


def test_measures_track_the_entropy_rate() -> None:
    rates = [0.4, 0.9, 1.4, 1.9, 2.4]
    d3, cr, cz = [], [], []
    for h in rates:
        p = dp.MarkovChain.random(16, entropy_rate=h, seed=3)
        x = p.sample(1, 20_000, seed=5)
        d3.append(distinct_n(x, 3))
        cr.append(compression_ratio(x))
        cz.append(compression_ratio(x, "zstd") if HAS_ZSTD else cr[-1])
        # Barron's lemma: a prefix-free code (a gzip member, a zstd frame) is
        # shorter than -log2 p(x) - c bits with probability at most 2^-c.
        bound = -float(p.log_prob(x)[0]) / math.log(2) - 30
        assert 8 * x.size / cr[-1] >= bound and 8 * x.size / cz[-1] >= bound
    assert np.all(np.diff(d3) > 0), d3
    assert np.all(np.diff(cr) < 0) and np.all(np.diff(cz) < 0), (cr, cz)


# -------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: distinct_n([], 1), ValueError, "items is empty"),
        (lambda: distinct_n("abc", 1), TypeError, "single str"),
        (lambda: distinct_n(["a b"], 0), ValueError, "n must be >= 1"),
        (lambda: distinct_n(["a b"], 2.0), TypeError, "n must be an integer"),
        (lambda: distinct_n(["a"], 2), ValueError, "no 2-grams"),
        (lambda: distinct_n(["a", 3], 1), TypeError, r"items\[1\]"),
        (lambda: distinct_n([np.array([1, -2])], 1), ValueError, ">= 0"),
        (lambda: distinct_n([np.array([1.5])], 1), TypeError, "integer"),
        (lambda: distinct_n(["a"], 1, tokenize="nltk"), ValueError, "tokenize"),
        (lambda: distinct_n(["a"], 1, tokenize=3), TypeError, "tokenize"),
        (lambda: distinct_n(["a\ud800"], 1), ValueError, "Unicode"),
        (lambda: ngram_diversity(["a b"], 4), ValueError, "num_n"),
        (lambda: self_bleu(["a b"]), ValueError, "at least 2"),
        (lambda: self_bleu(["a", "b"], reference="bleu"), ValueError, "reference"),
        (lambda: self_bleu(["a", "b"], smoothing="exp"), ValueError, "smoothing"),
        (lambda: self_bleu(["a", "b"], smooth_value=float("nan")), ValueError, "smooth_value"),
        (lambda: homogenization_rougel(["a"]), ValueError, "at least 2"),
        (lambda: compression_ratio([""]), ValueError, "no bytes"),
        (lambda: compression_ratio(["a"], "xz"), ValueError, "algorithm"),
        (lambda: compression_ratio(["a"], level=10), ValueError, "level"),
        (lambda: compression_ratio(["a"], "zstd", double_gzip=True), ValueError, "double_gzip"),
        (lambda: vendi_score(), TypeError, "exactly one"),
        (lambda: vendi_score(np.zeros((0, 3))), ValueError, "empty"),
        (lambda: vendi_score(np.array([[1.0, np.nan]])), ValueError, "NaN"),
        (lambda: vendi_score(np.array([[1.0, 0.0], [0.0, 0.0]])), ValueError, "row 1 is all zeros"),
        (lambda: vendi_score(np.ones(3)), ValueError, "2-D"),
        (lambda: vendi_score(kernel=np.ones((2, 3))), ValueError, "square"),
        (lambda: vendi_score(kernel=np.array([[1.0, 0.5], [0.0, 1.0]])), ValueError, "symmetric"),
        (lambda: vendi_score(kernel=np.array([[1.0, 2.0], [2.0, 1.0]])), ValueError, "positive semi-definite"),
        (lambda: vendi_score(np.eye(3), q=0), ValueError, "q must be"),
        (lambda: vendi_score(np.eye(3), q="max"), ValueError, "q must be"),
        (lambda: vendi_score(np.eye(3), seed=-1), ValueError, "seed"),
    ],
)
def test_bad_input(call: Any, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        call()


def test_non_psd_kernel_found_by_the_approximation() -> None:
    rng = np.random.default_rng(8)
    a = rng.normal(size=(300, 300))
    k = (a + a.T) / 2 + 300 * np.eye(300) * 0.01
    with pytest.raises(ValueError, match="positive semi-definite"):
        vendi_score(kernel=k, exact_max_n=50)


_THREADS_SCRIPT = """
import numpy as np
from dataprobes.metrics import distinct_n, self_bleu, self_repetition, homogenization_rougel, ngram_diversity
rng = np.random.default_rng(3)
words = "a b c d e f g h . , ! Σ é 日".split()
texts = [" ".join(rng.choice(words, size=int(rng.integers(1, 120)))) for _ in range(3000)]
ids = rng.integers(0, 50, size=(800, 64))
for items in (texts, ids):
    print(distinct_n(items, 4, all_orders=True).tolist(), ngram_diversity(items), self_repetition(items, 3))
    print(self_bleu(items, per_item=True).tobytes().hex()[-64:], repr(self_bleu(items, reference="sacrebleu")))
    print(repr(homogenization_rougel(items[:400])))
"""


def test_bit_identical_across_thread_counts() -> None:
    outs = []
    for threads in ("1", "3"):
        env = dict(os.environ, RAYON_NUM_THREADS=threads)
        res = subprocess.run(
            [sys.executable, "-c", _THREADS_SCRIPT], env=env, capture_output=True, text=True, check=True
        )
        outs.append(res.stdout)
    assert outs[0] == outs[1]


def test_torch_tensors_are_token_arrays_and_features() -> None:
    """Token ids and features as torch tensors (as the Task2Vec coefficients
    take them) give the numpy results; a tensor that requires grad too."""
    torch = pytest.importorskip("torch")
    x = dp.MarkovChain.random(16, entropy_rate=1.0, seed=0).sample(6, 40, seed=1).astype(np.int64)
    t = torch.from_numpy(x)
    assert distinct_n(t, 2) == distinct_n(x, 2)
    assert ngram_diversity(t) == ngram_diversity(x)
    assert self_repetition(t, 2) == self_repetition(x, 2)
    assert self_bleu(t) == self_bleu(x)
    assert homogenization_rougel(t) == homogenization_rougel(x)
    assert compression_ratio(t) == compression_ratio(x)
    f = np.random.default_rng(0).normal(size=(20, 5))
    ft = torch.tensor(f, requires_grad=True)
    assert vendi_score(ft) == vendi_score(f)
    assert vendi_score(kernel=(ft @ ft.T)) == pytest.approx(vendi_score(kernel=f @ f.T), rel=1e-12)


@pytest.mark.parametrize("scale", [1e-200, 1e-160, 1e160, 1e200])
def test_vendi_cosine_is_scale_free_at_the_float_limits(scale: float) -> None:
    """Rows whose sum of squares under- or overflows are not 'all zeros': the
    cosine similarity does not depend on the rows' lengths."""
    f = np.random.default_rng(3).normal(size=(7, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert vendi_score(f * scale) == pytest.approx(vendi_score(f), rel=1e-12)
        mixed = f.copy()
        mixed[0] *= scale
        assert vendi_score(mixed) == pytest.approx(vendi_score(f), rel=1e-12)
        k = f @ f.T
        got = vendi_score(kernel=k * scale, normalize=True)
        assert got == pytest.approx(vendi_score(kernel=k, normalize=True), rel=1e-9)
    if scale > 1:
        with pytest.raises(ValueError, match="overflows"):
            vendi_score(f * scale, normalize=False)


def test_vendi_of_unnormalised_kernels_at_the_float_limits() -> None:
    """Eigenvalues of K/n far from a unit sum: VS_q = (Σ λ^q)^(1/(1−q)) without
    overflow warnings, 0 where it underflows, a ValueError where it overflows."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert vendi_score(kernel=[[1e100]], q=2) == pytest.approx(1e-200, rel=1e-12)
        assert vendi_score(kernel=[[1e300]], q=2) == 0.0
        assert vendi_score(kernel=[[1e300]], q=1) == 0.0
        assert vendi_score(np.array([[1.2e77]]), q=2, normalize=False) == pytest.approx(1.2e77**-4, rel=1e-9)
        with pytest.raises(ValueError, match="overflows"):
            vendi_score(kernel=[[1e-300]], q=2)


def test_empty_rows_beside_uint64_rows() -> None:
    """An empty row (``[]`` or an empty uint64 slice) next to uint64 rows is not
    'mixing uint64 and signed ids'."""
    rows = [np.array([5, 2**63 + 1, 5], dtype=np.uint64), np.array([], dtype=np.uint64), []]
    same = [np.array([0, 1, 0], dtype=np.int64), np.array([], dtype=np.int64), []]
    assert distinct_n(rows, 1) == distinct_n(same, 1) == pytest.approx(2 / 3)
    assert self_bleu(rows) == self_bleu(same)
