"""MinHash near-duplicates (dataprobes.metrics.dedup) against independent
references: ``datasketch.MinHash`` bit for bit on the same shingles, the
collision law ``P[sig_k(A) = sig_k(B)] = J(A, B)`` and the LSH S-curve
``1 − (1 − s^r)^b`` (binomial tolerances, fixed seeds), brute-force candidate
pairs and connected components, planted near-duplicates of known Jaccard
similarity, and the exact duplicate groups of ``Duplicated`` probes."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import dataprobes as dp
from dataprobes.cli import main
from dataprobes.metrics import dedup
from dataprobes.metrics.dedup import (
    NearDuplicates,
    jaccard,
    lsh_candidate_probability,
    minhash,
    near_duplicates,
    near_duplicates_corpus,
    optimal_bands,
    shingles,
)

WORDS = (
    "the of and to in is was that for on with as by at from his her an which or be are this had not but were "
    "river stone house garden market winter summer city road light water field forest music letter window "
    "quick brown lazy old new small great early late long short green silver golden quiet sudden"
).split()


def _docs(rng: np.random.Generator, n: int, length: int = 60) -> list[str]:
    p = 1.0 / np.arange(1, len(WORDS) + 1)
    p /= p.sum()
    return [" ".join(rng.choice(WORDS, size=length, p=p)) for _ in range(n)]


def _edit(rng: np.random.Generator, doc: str, fraction: float) -> str:
    """``doc`` with a fraction of its words replaced by fresh tokens."""
    words = doc.split()
    k = int(round(fraction * len(words)))
    for i in rng.choice(len(words), size=k, replace=False):
        words[i] = f"w{rng.integers(1 << 40)}"
    return " ".join(words)


# --------------------------------------------------------------------------- datasketch, bit for bit

SCHEMES = {"datasketch": "affine32", "datasketch-legacy": "legacy", "datasketch-affine64": "affine64"}
MIXED = [
    "The quick brown fox, jumps over the lazy dog!!",
    "İstanbul ΟΔΟΣ ΟΔΟΣ. café—naïve 日本語 x_y 3.14",
    "",
    "  \t ",
    "short",
    "a b",
    "Ünïcödé ẞ and ǅ letters: ﬁne",
    "x" * 120 + " " + "y" * 70,  # shingles longer than one sha1 block
]


@pytest.mark.parametrize("compat", list(SCHEMES))
@pytest.mark.parametrize("num_perm", [1, 17, 128])
def test_equals_datasketch_bit_for_bit_on_words(compat: str, num_perm: int) -> None:
    datasketch = pytest.importorskip("datasketch")
    rng = np.random.default_rng(num_perm)
    docs = _docs(rng, 200 if num_perm == 128 else 60, length=30) + MIXED
    for ngram, seed in [(5, 1), (2, 7)]:
        sig = minhash(docs, num_perm, ngram, seed, compat=compat)
        assert sig.dtype == (np.uint32 if compat == "datasketch" else np.uint64)
        for i, doc in enumerate(docs):
            m = datasketch.MinHash(num_perm=num_perm, seed=seed, scheme=SCHEMES[compat])
            m.update_batch(shingles(doc, ngram))
            np.testing.assert_array_equal(sig[i], m.hashvalues, err_msg=f"doc {i}: {doc[:40]!r}")


@pytest.mark.parametrize("compat", list(SCHEMES))
def test_equals_datasketch_on_chars_and_token_ids(compat: str) -> None:
    datasketch = pytest.importorskip("datasketch")
    docs = MIXED + _docs(np.random.default_rng(3), 20, 15)
    sig = minhash(docs, 32, 4, 3, shingle="char", compat=compat)
    for i, doc in enumerate(docs):
        m = datasketch.MinHash(num_perm=32, seed=3, scheme=SCHEMES[compat])
        m.update_batch(shingles(doc, 4, shingle="char"))
        np.testing.assert_array_equal(sig[i], m.hashvalues)
    rows = [np.random.default_rng(i).integers(0, 70000, size=i % 13) for i in range(40)]
    sig = minhash(rows, 32, 3, 3, compat=compat)
    for i, row in enumerate(rows):
        m = datasketch.MinHash(num_perm=32, seed=3, scheme=SCHEMES[compat])
        m.update_batch(shingles(row, 3))
        np.testing.assert_array_equal(sig[i], m.hashvalues)
    # a 2-D array equals its rows
    grid = np.random.default_rng(5).integers(0, 300, size=(10, 9)).astype(np.uint16)
    np.testing.assert_array_equal(minhash(grid, 32, 3, 3, compat=compat), minhash(list(grid), 32, 3, 3, compat=compat))


def test_optimal_bands_equal_datasketch() -> None:
    lsh = pytest.importorskip("datasketch.lsh")
    for t, k in [(0.8, 128), (0.5, 128), (0.9, 64), (0.3, 32), (1.0, 16)]:
        assert optimal_bands(t, k) == lsh._optimal_param(t, k, 0.5, 0.5)
    assert optimal_bands(0.7, 64, 0.2, 0.8) == lsh._optimal_param(0.7, 64, 0.2, 0.8)


def test_shingle_definition() -> None:
    assert shingles("The cat, sat", 2) == [b"the cat", b"cat ,", b", sat"]
    assert shingles("The cat", 5) == [b"the cat"]  # shorter than ngram: one shingle
    assert shingles("  ", 5) == []
    assert shingles("AbC", 2, shingle="char", lowercase=False) == [b"Ab", b"bC"]
    assert shingles(np.array([3, 14, 159]), 2) == [b"3 14", b"14 159"]
    assert jaccard("a b c d", "a b c e", 1) == pytest.approx(3 / 5)
    assert jaccard("", "  ", 3) == 1.0


# --------------------------------------------------------------------------- collision law and S-curve


def _planted_pairs(rng: np.random.Generator, sims: list[float], per: int, size: int = 60) -> tuple[list, np.ndarray]:
    """Token-id sets (ngram=1 shingles) in pairs of exact Jaccard ``s``: with
    ``c`` shared and ``u`` own ids each, J = c / (c + 2u)."""
    rows, truth = [], []
    base = 0
    for s in sims:
        for _ in range(per):
            # c + 2u = size, c = s * size
            c = int(round(s * size))
            u = (size - c) // 2
            ids = base + rng.permutation(c + 2 * u)
            base += c + 2 * u
            shared, a_own, b_own = ids[:c], ids[c : c + u], ids[c + u :]
            rows += [np.concatenate([shared, a_own]), np.concatenate([shared, b_own])]
            truth.append(c / (c + 2 * u))
    return rows, np.array(truth)


def _binomial_ok(hits: int, trials: int, p: float, z: float = 5.0) -> bool:
    sd = np.sqrt(trials * p * (1 - p)) if 0 < p < 1 else 0.0
    return abs(hits - trials * p) <= z * sd + 1


@pytest.mark.parametrize("compat", [None, "datasketch"])
def test_collision_law_per_permutation(compat: str | None) -> None:
    rng = np.random.default_rng(11)
    sims = [0.1, 0.3, 0.5, 0.8, 0.95]
    rows, truth = _planted_pairs(rng, sims, per=40)
    for seed in (1, 2):
        sig = minhash(rows, 128, 1, seed, compat=compat)
        eq = sig[0::2] == sig[1::2]  # [pairs, num_perm]
        for s in np.unique(truth):
            block = eq[truth == s]
            assert _binomial_ok(int(block.sum()), block.size, s), (s, block.mean())


def test_lsh_candidate_rate_follows_the_s_curve() -> None:
    rng = np.random.default_rng(12)
    sims = [0.2, 0.4, 0.5, 0.6, 0.7, 0.9]
    rows, truth = _planted_pairs(rng, sims, per=150)
    sig = minhash(rows, 128, 1, 3)
    for b, r in [(16, 8), (32, 4), (20, 5)]:
        res = near_duplicates(signatures=sig, threshold=0.5, bands=b, rows=r, verify=False, return_pairs=True)
        assert res.pairs is not None
        found = {tuple(p) for p in res.pairs.tolist()}
        cand = np.array([(2 * i, 2 * i + 1) in found for i in range(truth.size)])
        for s in np.unique(truth):
            p = lsh_candidate_probability(s, b, r)
            assert _binomial_ok(int(cand[truth == s].sum()), int((truth == s).sum()), p), (b, r, s)


def test_candidate_probability_values() -> None:
    assert lsh_candidate_probability(1.0, 3, 4) == 1.0
    assert lsh_candidate_probability(0.0, 3, 4) == 0.0
    s = np.linspace(0, 1, 11)
    np.testing.assert_allclose(lsh_candidate_probability(s, 9, 13), 1 - (1 - s**13) ** 9, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="similarity"):
        lsh_candidate_probability(float("nan"), 2, 2)


# --------------------------------------------------------------------------- exact LSH semantics


def _brute(sig: np.ndarray, b: int, r: int, t: float | None) -> tuple[set, np.ndarray]:
    n, k = sig.shape
    pairs = set()
    for i in range(n):
        for j in range(i + 1, n):
            if any((sig[i, q * r : (q + 1) * r] == sig[j, q * r : (q + 1) * r]).all() for q in range(b)):
                if t is None or np.mean(sig[i] == sig[j]) >= t:
                    pairs.add((i, j))
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    for i, j in sorted(pairs):
        a, c = find(i), find(j)
        parent[max(a, c)] = min(a, c)
    roots = [find(i) for i in range(n)]
    first: dict[int, int] = {}
    labels = np.array([first.setdefault(x, i) for i, x in enumerate(roots)])
    return pairs, labels


@given(
    st.lists(st.lists(st.sampled_from("abcdef"), min_size=0, max_size=7), min_size=1, max_size=25),
    st.sampled_from([(4, 2), (8, 1), (2, 4), (2, 3)]),
    st.sampled_from([None, 0.3, 0.6, 1.0]),
)
def test_pairs_and_labels_equal_brute_force(words: list[list[str]], br: tuple[int, int], t: float | None) -> None:
    docs = [" ".join(w) for w in words]
    sig = minhash(docs, 8, 2, 5)
    b, r = br
    res = near_duplicates(
        signatures=sig, threshold=1.0 if t is None else t, bands=b, rows=r, verify=t is not None, return_pairs=True
    )
    pairs, labels = _brute(sig, b, r, t)
    assert res.pairs is not None
    assert {tuple(p) for p in res.pairs.tolist()} == pairs
    assert len(pairs) == res.pairs.shape[0]
    np.testing.assert_array_equal(res.labels, labels)
    assert res.clusters == [
        sorted(np.flatnonzero(labels == x).tolist()) for x in np.unique(labels) if (labels == x).sum() > 1
    ]
    # the signature of an item does not depend on its neighbours
    perm = np.random.default_rng(len(docs)).permutation(len(docs))
    np.testing.assert_array_equal(minhash([docs[i] for i in perm], 8, 2, 5), sig[perm])


# --------------------------------------------------------------------------- planted near-duplicates


def test_planted_near_duplicates_precision_and_recall() -> None:
    """100 base documents of 80 words, each with 0–3 edited copies (2 of 80
    words replaced: exact Jaccard of 5-shingles with the base ≥ 0.7, checked);
    unrelated documents share almost no 5-shingle. At threshold 0.5 with 128
    permutations a pair at J ≥ 0.7 is a candidate with probability > 0.999
    (S-curve) and its estimate falls below 0.5 with probability < 1e-5
    (binomial, sd ≤ 0.041), and every copy is linked to its base; a pair at
    J ≤ 0.05 passes with probability ≈ 0 — so pairwise precision and recall
    of the clusters must both be ≥ 0.98."""
    rng = np.random.default_rng(21)
    base = _docs(rng, 100, 80)
    docs, origin, to_base = [], [], []
    for i, d in enumerate(base):
        docs.append(d)
        origin.append(i)
        for _ in range(rng.integers(0, 4)):
            docs.append(_edit(rng, d, 0.025))
            origin.append(i)
            to_base.append(jaccard(d, docs[-1]))
    assert min(to_base) >= 0.7
    order = rng.permutation(len(docs))
    docs = [docs[i] for i in order]
    origin_arr = np.array(origin)[order]
    res = near_duplicates(docs, threshold=0.5, ngram=5)
    same_truth = origin_arr[:, None] == origin_arr[None, :]
    same_found = res.labels[:, None] == res.labels[None, :]
    iu = np.triu_indices(len(docs), 1)
    tp = np.sum(same_truth[iu] & same_found[iu])
    precision = tp / max(1, np.sum(same_found[iu]))
    recall = tp / max(1, np.sum(same_truth[iu]))
    assert precision >= 0.98 and recall >= 0.98, (precision, recall)


def test_kept_pairs_follow_the_exact_similarity() -> None:
    """Pairs with exact Jaccard spread across the threshold: those well above
    are kept, those well below are not (pair level, verify=True)."""
    rng = np.random.default_rng(22)
    base = _docs(rng, 60, 100)
    docs, pairs = [], []
    for d in base:
        f = rng.choice([0.0, 0.02, 0.05, 0.1, 0.2])
        docs += [d, _edit(rng, d, f)]
        pairs.append((len(docs) - 2, len(docs) - 1))
    res = near_duplicates(docs, threshold=0.6, ngram=5, num_perm=256, return_pairs=True)
    assert res.pairs is not None
    kept = {tuple(p) for p in res.pairs.tolist()}
    for a, b in pairs:
        s = jaccard(docs[a], docs[b])
        if s >= 0.75:
            assert (a, b) in kept, s
        elif s <= 0.45:
            assert (a, b) not in kept, s


# --------------------------------------------------------------------------- token data: Duplicated probes


def test_duplicated_probe_groups_are_recovered() -> None:
    chain = dp.MarkovChain.random(64, seed=3)
    probe = dp.Duplicated(chain, 0.4)
    x, sources = probe.sample(400, 48, seed=9, return_sources=True)
    res = near_duplicates(x, threshold=0.9, ngram=3)
    # same source <=> same cluster, exactly
    np.testing.assert_array_equal(res.labels[:, None] == res.labels[None, :], sources[:, None] == sources[None, :])
    assert res.num_duplicates == len(sources) - np.unique(sources).size


# --------------------------------------------------------------------------- determinism, corpora, pickling

_SCRIPT = """
import sys, numpy as np
from dataprobes.metrics import dedup
rng = np.random.default_rng(4)
words = "a b c d e f g h i j".split()
docs = [" ".join(rng.choice(words, 30)) for _ in range(3000)]
sig = dedup.minhash(docs, 64, 3, 2)
res = dedup.near_duplicates(signatures=sig, threshold=0.3, return_pairs=True)
import hashlib
print(hashlib.sha256(sig.tobytes() + res.labels.tobytes() + res.pairs.tobytes()).hexdigest())
"""


def test_same_results_for_any_thread_count() -> None:
    outs = set()
    for threads in ("1", "2", "3"):
        env = dict(os.environ, RAYON_NUM_THREADS=threads)
        res = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, check=True)
        outs.add(res.stdout.strip())
    assert len(outs) == 1


def test_same_results_for_any_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = _docs(np.random.default_rng(5), 300, 20)
    docs += docs[:40]
    whole = minhash(docs, 64, 3, 4)
    monkeypatch.setattr(dedup, "_CHUNK", 7)
    np.testing.assert_array_equal(minhash(docs, 64, 3, 4), whole)
    ids = [np.arange(i % 9) for i in range(50)]
    np.testing.assert_array_equal(minhash(ids, 16, 2), minhash(ids, 16, 2, progress=True))


def test_corpus_formats_and_chunks_equal_in_memory(tmp_path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rng = np.random.default_rng(6)
    docs = _docs(rng, 150, 40)
    docs += [_edit(rng, d, 0.025) for d in docs[:30]]
    want = near_duplicates(docs, threshold=0.6)
    assert len(want.clusters) >= 25
    jl = tmp_path / "c.jsonl"
    jl.write_text("".join(json.dumps({"id": i, "text": d}) + "\n" for i, d in enumerate(docs)))
    pq.write_table(pa.table({"text": docs}), tmp_path / "c.parquet", row_group_size=17)
    for src, cr in [(jl, 1000), (jl, 7), (tmp_path / "c.parquet", 23)]:
        got = near_duplicates_corpus(src, threshold=0.6, chunk_rows=cr, progress=False)
        np.testing.assert_array_equal(got.labels, want.labels)
        assert got.clusters == want.clusters
    datasets = pytest.importorskip("datasets")
    got = near_duplicates_corpus(datasets.Dataset.from_dict({"text": docs}), threshold=0.6, progress=False)
    np.testing.assert_array_equal(got.labels, want.labels)


def test_result_pickles_and_summarises() -> None:
    res = near_duplicates(["a b c d e f", "a b c d e f", "x y z"], threshold=0.9, return_pairs=True)
    back = pickle.loads(pickle.dumps(res))
    assert isinstance(back, NearDuplicates)
    np.testing.assert_array_equal(back.labels, res.labels)
    assert back.clusters == [[0, 1]] and back.pairs is not None and back.pairs.tolist() == [[0, 1]]
    assert back.keep.tolist() == [True, False, True] and back.num_duplicates == 1
    assert "1 near-duplicate clusters" in back.summary()


# --------------------------------------------------------------------------- documented edge cases and bad input


def test_short_and_empty_items() -> None:
    """Items shorter than ngram have one shingle (all their units); empty
    items have none and the all-maximum signature, so they cluster together."""
    sig = minhash(["a b", "a  b", "b a", "", " "], 16, 5)
    np.testing.assert_array_equal(sig[0], sig[1])
    assert (sig[0] != sig[2]).any()
    assert (sig[3] == np.iinfo(np.uint32).max).all() and (sig[4] == sig[3]).all()
    res = near_duplicates(["a b", "a  b", "b a", "", " "], threshold=0.9, ngram=5)
    assert res.clusters == [[0, 1], [3, 4]]
    rows = [np.array([1, 2], dtype=np.int64), np.array([1, 2], dtype=np.int64), np.array([], dtype=np.int64)]
    assert near_duplicates(rows, threshold=1.0, ngram=4).clusters == [[0, 1]]


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="items is empty"):
        minhash([])
    with pytest.raises(ValueError, match="num_perm"):
        minhash(["a"], num_perm=0)
    with pytest.raises(TypeError, match="num_perm"):
        minhash(["a"], num_perm=2.5)
    with pytest.raises(ValueError, match="ngram"):
        minhash(["a"], ngram=0)
    with pytest.raises(TypeError, match="items"):
        minhash("a single string")
    with pytest.raises(TypeError, match=r"items\[1\]"):
        minhash(["a", 3])
    with pytest.raises(ValueError, match="token ids"):
        minhash([np.array([-1, 2])])
    with pytest.raises(ValueError, match="shingle"):
        minhash([np.array([1, 2])], shingle="word")
    with pytest.raises(ValueError, match="shingle"):
        minhash(["a"], shingle="token")
    with pytest.raises(ValueError, match="compat"):
        minhash(["a"], compat="rensa")
    with pytest.raises(ValueError, match="seed"):
        minhash(["a"], seed=2**32, compat="datasketch")
    with pytest.raises(ValueError, match="not valid Unicode"):
        minhash(["ok", "bad \ud800"])
    with pytest.raises(ValueError, match="bands \\* rows"):
        near_duplicates(["a", "b"], bands=20, rows=7)
    for t in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="threshold"):
            near_duplicates(["a", "b"], threshold=t)
    with pytest.raises(TypeError, match="exactly one"):
        near_duplicates()
    with pytest.raises(TypeError, match="exactly one"):
        near_duplicates(["a"], signatures=np.zeros((1, 4), np.uint32))
    with pytest.raises(TypeError, match="uint32 or uint64"):
        near_duplicates(signatures=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="empty"):
        near_duplicates(signatures=np.zeros((0, 4), np.uint32))
    with pytest.raises(ValueError, match="rows"):
        near_duplicates(["a", "b"], bands=200)
    with pytest.raises(TypeError, match="verify"):
        near_duplicates(["a", "b"], verify=1)
    with pytest.raises(ValueError, match="threshold"):
        optimal_bands(0.0)


# --------------------------------------------------------------------------- command line


def test_cli_dedup_writes_clusters(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(8)
    docs = _docs(rng, 60, 40)
    docs += [_edit(rng, d, 0.03) for d in docs[:10]]
    src = tmp_path / "corpus.jsonl"
    src.write_text("".join(json.dumps({"body": d}) + "\n" for d in docs))
    out = tmp_path / "out" / "clusters.jsonl"
    argv = ["dedup", str(src), "--text-field", "body", "--threshold", "0.6", "--out", str(out), "--no-progress"]
    assert main(argv + ["--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    want = near_duplicates(docs, threshold=0.6)
    assert [x["rows"] for x in lines] == want.clusters
    assert summary["num_clusters"] == len(want.clusters) >= 9 and summary["num_duplicates"] == want.num_duplicates
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".part")]
    assert main(argv) == 2  # --out exists
    assert "exists" in capsys.readouterr().err
    assert main(argv + ["--force", "--bands", "200"]) == 2
    assert main(["dedup", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x.jsonl")]) == 2
