"""Influcoder distillation (dataprobes.attribution.distill): the loss against
a hand-computed reference and gradcheck, the block sampler, the Spearman
metrics against scipy, determinism, the split-overlap refusal, persistence,
the index, a tiny end-to-end distillation, and bad inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

torch = pytest.importorskip("torch")

import dataprobes as dp  # noqa: E402
from dataprobes.attribution import GradientStore, StoreWriter  # noqa: E402
from dataprobes.attribution.distill import (  # noqa: E402
    BlockSampler,
    DenseTeacher,
    GradientTeacher,
    Influcoder,
    influcoder_loss,
)
from dataprobes.attribution.quality import spearman_metrics  # noqa: E402

# ----------------------------------------------------------------------------
# loss
# ----------------------------------------------------------------------------


def _loss_reference(s: np.ndarray, t: np.ndarray, alpha: float, tau: float) -> float:
    """The loss written out in numpy, from the formula."""
    pearson = np.corrcoef(s.ravel(), t.ravel())[0, 1]

    def log_softmax(z):
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    lp, lq = log_softmax(t / tau), log_softmax(s / tau)
    kl = (np.exp(lp) * (lp - lq)).sum(1).mean()
    return alpha * (1 - pearson) + (1 - alpha) * kl


@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 6),
    st.integers(2, 9),
    st.sampled_from([0.0, 0.3, 0.5, 1.0]),
    st.sampled_from([0.05, 0.5, 2.0]),
)
def test_loss_matches_hand_computed(seed, k, m, alpha, tau):
    rng = np.random.default_rng(seed)
    s = rng.uniform(-1, 1, (k, m))
    t = rng.uniform(-1, 1, (k, m))
    got = influcoder_loss(torch.tensor(s), torch.tensor(t), alpha, tau).item()
    assert got == pytest.approx(_loss_reference(s, t, alpha, tau), rel=1e-9, abs=1e-12)


def test_loss_gradcheck_float64():
    g = torch.Generator().manual_seed(0)
    s = torch.rand(4, 7, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.rand(4, 7, generator=g, dtype=torch.float64)
    for alpha in (0.0, 0.5, 1.0):
        assert torch.autograd.gradcheck(lambda x, a=alpha: influcoder_loss(x, t, a, 0.3), (s,))


def test_loss_identities():
    t = torch.rand(3, 5, dtype=torch.float64)
    # perfect student: Pearson 1 and KL 0
    assert influcoder_loss(t.clone(), t, 0.5, 0.05).item() == pytest.approx(0.0, abs=1e-12)
    # anti-correlated student: the Pearson term alone is 2
    assert influcoder_loss(-t, t, 1.0, 0.05).item() == pytest.approx(2.0, abs=1e-12)
    # a constant block: no NaN, Pearson counts as 0
    c = torch.ones(3, 5, dtype=torch.float64)
    assert influcoder_loss(c, t, 1.0, 0.05).item() == pytest.approx(1.0)


def test_loss_bad_inputs():
    with pytest.raises(ValueError, match="same shape|one shape"):
        influcoder_loss(torch.zeros(2, 3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="alpha"):
        influcoder_loss(torch.zeros(2, 3), torch.zeros(2, 3), alpha=1.5)
    with pytest.raises(ValueError, match="tau"):
        influcoder_loss(torch.zeros(2, 3), torch.zeros(2, 3), tau=0.0)
    with pytest.raises(TypeError):
        influcoder_loss(np.zeros((2, 3)), torch.zeros(2, 3))


# ----------------------------------------------------------------------------
# sampler
# ----------------------------------------------------------------------------


@given(
    st.integers(1, 40),
    st.integers(1, 60),
    st.integers(1, 10),
    st.integers(1, 20),
    st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]),
    st.integers(0, 2**32 - 1),
)
def test_sampler_blocks(n_a, n_p, k, m, hard_ratio, seed):
    rng = np.random.default_rng(seed)
    h = min(n_p, 3)
    top = np.stack([rng.permutation(n_p)[:h] for _ in range(n_a)]).astype(np.int64)
    s = BlockSampler(n_a, n_p, k, m, hard_ratio, top=top, seed=seed)
    mm = min(m, n_p)
    assert s.n_hard == int(mm * hard_ratio)
    seen = []
    for a, c in s.epoch(0):
        assert a.dtype == np.int64 and c.dtype == np.int64
        assert 1 <= len(a) <= min(k, n_a)
        assert len(c) == mm and len(np.unique(c)) == mm
        assert c.min() >= 0 and c.max() < n_p
        union = np.unique(top[a])
        n_in_union = np.isin(c, union).sum()
        # at least the hard quota (or the whole union when smaller) comes from the union
        assert n_in_union >= min(s.n_hard, len(union))
        if hard_ratio == 1.0:
            assert np.isin(c[: min(mm, len(union))], union).all()
        seen.append(a)
    assert np.array_equal(np.sort(np.concatenate(seen)), np.arange(n_a))  # each anchor once per epoch
    assert len(seen) == len(s)
    # same (seed, epoch): same blocks
    again = list(s.epoch(0))
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(s.epoch(0), again))


def test_sampler_uniform_part_is_uniform():
    # hard_ratio 0: every pool item equally likely (chi-square, fixed seed)
    s = BlockSampler(8, 20, 8, 5, 0.0, seed=3)
    counts = np.zeros(20)
    for e in range(2000):
        for _, c in s.epoch(e):
            np.add.at(counts, c, 1)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_sampler_bad_inputs():
    with pytest.raises(ValueError, match="hard_ratio"):
        BlockSampler(4, 4, hard_ratio=1.5)
    with pytest.raises(ValueError, match="top"):
        BlockSampler(4, 8, 2, 4, 0.5)
    with pytest.raises(ValueError, match="n_pool"):
        BlockSampler(4, 0)


# ----------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------


@given(st.integers(0, 2**32 - 1), st.integers(1, 6), st.integers(2, 25), st.booleans())
def test_spearman_metrics_match_scipy(seed, a, p, ties):
    rng = np.random.default_rng(seed)
    gt = rng.normal(size=(a, p))
    pred = gt + rng.normal(size=(a, p))
    if ties:
        gt, pred = np.round(gt), np.round(pred)
    got = spearman_metrics(pred, gt)
    rows = []
    for i in range(a):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = stats.spearmanr(pred[i], gt[i]).statistic
        rows.append(0.0 if np.isnan(r) else r)
    assert got.per_anchor == pytest.approx(np.mean(rows), abs=1e-12)
    assert got.per_anchor_std == pytest.approx(np.std(rows), abs=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agg = stats.spearmanr(pred.mean(0), gt.mean(0)).statistic
    assert got.aggregated == pytest.approx(0.0 if np.isnan(agg) else agg, abs=1e-12)
    assert got["aggregated"] == got.aggregated and set(dict(got)) == {"per_anchor", "per_anchor_std", "aggregated"}


def test_spearman_metrics_nan_rows_count_zero():
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(4, 10))
    pred = gt.copy()
    pred[1, 3] = np.nan
    m = spearman_metrics(pred, gt)
    assert m.rows.tolist() == pytest.approx([1.0, 0.0, 1.0, 1.0])
    assert m.per_anchor == pytest.approx(0.75)
    with pytest.raises(ValueError, match="same shape"):
        spearman_metrics(pred, gt[:, :5])


# ----------------------------------------------------------------------------
# teachers
# ----------------------------------------------------------------------------


def _cos(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def test_gradient_teacher_blocks_and_top_candidates(tmp_path):
    rng = np.random.default_rng(0)
    fa, fp = rng.normal(size=(30, 12)).astype(np.float32), rng.normal(size=(50, 12)).astype(np.float32)
    dense = _cos(fa, fp)
    t = GradientTeacher(fa, fp, block_rows=7)
    r, c = np.array([3, 0, 29]), np.array([49, 1, 2, 2])
    np.testing.assert_allclose(t.block(r, c).numpy(), dense[np.ix_(r, c)], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t.rows(5, 9).numpy(), dense[5:9], rtol=1e-5, atol=1e-6)
    top = t.top_candidates(4)
    assert top.dtype == np.int64 and top.shape == (30, 4)
    np.testing.assert_array_equal(np.sort(top, 1), np.sort(np.argsort(-dense, 1, kind="stable")[:, :4], 1))
    np.testing.assert_array_equal(np.sort(DenseTeacher(dense).top_candidates(4), 1), np.sort(top, 1))
    # served from gradient stores (read back with checksums), same blocks
    for name, f in (("a", fa), ("p", fp)):
        with StoreWriter(tmp_path / name, 12, "float16", config={"k": 12}) as w:
            w.append(np.arange(len(f)) * 10, f)
    ts = GradientTeacher(GradientStore(tmp_path / "a"), GradientStore(tmp_path / "p"), block_rows=16)
    np.testing.assert_allclose(ts.block(r, c).numpy(), dense[np.ix_(r, c)], atol=2e-3)
    np.testing.assert_allclose(ts.rows(0, 30).numpy(), dense, atol=2e-3)


def test_teacher_bad_inputs():
    with pytest.raises(ValueError, match="dim"):
        GradientTeacher(np.ones((3, 4)), np.ones((3, 5)))
    with pytest.raises(ValueError, match="non-finite"):
        GradientTeacher(np.full((3, 4), np.nan), np.ones((3, 4)))
    with pytest.raises(ValueError, match="no rows|empty"):
        GradientTeacher(np.ones((3, 4)), np.ones((0, 4)))


# ----------------------------------------------------------------------------
# encoder, fit, persistence
# ----------------------------------------------------------------------------

V, T = 12, 16


def _tiny(seed=0, **kw):
    return Influcoder.from_config(vocab_size=V, d_model=32, n_layers=1, n_heads=2, max_len=T, dim=16, seed=seed, **kw)


@pytest.fixture(scope="module")
def probe_split():
    """Two-chain mixture; teacher = cosine of per-sequence bigram features
    pushed through a fixed random map (a learnable, known truth)."""
    mix = dp.Mixture([dp.MarkovChain.random(V, concentration=0.2, seed=s) for s in range(2)])
    x, lab = mix.sample(400, T, seed=1, return_labels=True)
    _, first = np.unique(x, axis=0, return_index=True)  # short sequences repeat: keep distinct ones
    keep = np.sort(first)[:260]
    x, lab = x[keep].astype(np.int64), lab[keep]
    big = np.zeros((len(x), V * V), np.float32)
    for i, r in enumerate(x):
        np.add.at(big[i], r[:-1] * V + r[1:], 1.0)
    w = np.random.default_rng(0).normal(size=(V * V, 32)).astype(np.float32)
    f = big @ w
    a, p, ea, ep = slice(0, 60), slice(60, 180), slice(180, 220), slice(220, 260)
    return {
        "train": (x[a], x[p], GradientTeacher(f[a], f[p])),
        "eval": (x[ea], x[ep], GradientTeacher(f[ea], f[ep])),
        "labels": lab,
    }


def test_end_to_end_distillation_beats_untrained(probe_split):
    enc = _tiny()
    hist = enc.fit(*probe_split["train"], epochs=4, eval=probe_split["eval"], progress=False, seed=0)
    assert hist.initial is not None and len(hist.epochs) == 4
    assert hist.best["per_anchor"] > hist.initial["per_anchor"] + 0.1
    assert hist.saved == "best"
    # the weights kept are the best epoch's: re-evaluating gives its metrics
    ea, ep, et = probe_split["eval"]
    m = spearman_metrics(enc.scores(ea, ep).double(), et.rows(0, len(ea)).double())
    assert m.per_anchor == pytest.approx(hist.best["per_anchor"], abs=1e-6)
    assert hist.settings["lr"] == pytest.approx(1e-3) and hist.steps == 4 * len(BlockSampler(60, 120, 8, 16))


def test_fit_is_deterministic(probe_split):
    a, p, t = probe_split["train"]
    outs = []
    for _ in range(2):
        enc = _tiny(seed=3)
        enc.fit(a, p, t, epochs=1, seed=5, progress=False, hard_ratio=0.5)
        outs.append((enc.fingerprint(), enc.scores(a[:5], p[:7])))
    assert outs[0][0] == outs[1][0]
    assert torch.equal(outs[0][1], outs[1][1])
    enc = _tiny(seed=3)
    enc.fit(a, p, t, epochs=1, seed=6, progress=False, hard_ratio=0.5)
    assert enc.fingerprint() != outs[0][0]


def test_fit_refuses_overlapping_splits(probe_split):
    a, p, t = probe_split["train"]
    ea, ep, et = probe_split["eval"]
    ep2 = ep.copy()
    ep2[7] = p[3]
    with pytest.raises(ValueError, match="disjoint"):
        _tiny().fit(a, p, t, eval=(ea, ep2, et), epochs=1, progress=False)


def test_fit_bad_inputs(probe_split):
    a, p, t = probe_split["train"]
    enc = _tiny()
    with pytest.raises(ValueError, match="teacher has shape"):
        enc.fit(a, p, np.zeros((len(a), len(p) - 1)), progress=False)
    with pytest.raises(ValueError, match="pool is empty"):
        enc.fit(a, p[:0], np.zeros((len(a), 0)), progress=False)
    bad = np.zeros((len(a), len(p)))
    bad[4] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        enc.fit(a, p, bad, progress=False)
    with pytest.raises(TypeError, match="teacher"):
        enc.fit(a, p, "scores", progress=False)
    with pytest.raises(ValueError, match="hard_ratio"):
        enc.fit(a, p, t, hard_ratio=2.0, progress=False)
    with pytest.raises(TypeError, match="token"):
        enc.fit(["some text"] * len(a), p, t, progress=False)
    with pytest.raises(ValueError, match="vocabulary"):
        enc.embed(np.full((2, 4), V))
    with pytest.raises(TypeError, match="eval"):
        enc.fit(a, p, t, eval=(a, p), progress=False)


def test_truncation_is_counted():
    enc = _tiny(anchor_prefix=[1, 2, 3])
    x = np.zeros((5, T - 1), np.int64)
    with pytest.warns(UserWarning, match="5 of 5 anchors"):
        enc.embed(x, anchors=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enc.embed(x)  # without the prefix it fits


def test_save_load_round_trip(tmp_path, probe_split):
    a, p, t = probe_split["train"]
    enc = _tiny(anchor_prefix=[4])
    with pytest.warns(UserWarning, match="60 of 60 training anchors"):
        enc.fit(a, p, t, epochs=1, progress=False)
    a = a[:, 1:]  # with the prefix, they fit
    enc.save(tmp_path / "enc")
    back = Influcoder.load(tmp_path / "enc")
    assert back.fingerprint() == enc.fingerprint()
    assert torch.equal(back.scores(a[:4], p[:6]), enc.scores(a[:4], p[:6]))
    enc.save(tmp_path / "enc")  # replacing a saved encoder is atomic and allowed
    (tmp_path / "enc" / "weights.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="checksum"):
        Influcoder.load(tmp_path / "enc")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("y")
    with pytest.raises(FileExistsError):
        enc.save(tmp_path / "other")


def test_index_scores_resumes_and_refuses_other_encoders(tmp_path, probe_split):
    a, p, _ = probe_split["train"]
    enc = _tiny()
    store = enc.index(p[:50], tmp_path / "idx", shard_rows=16)
    assert len(store) == 50 and store.dtype == "float16"
    top = enc.score(a[:6], tmp_path / "idx", top_k=5)
    full = enc.scores(a[:6], p[:50]).numpy()
    np.testing.assert_array_equal(top.ids[:, 0], full.argmax(1))
    np.testing.assert_allclose(top.scores, -np.sort(-full, 1)[:, :5], atol=2e-3)
    # resume: indexing again with more items only embeds the new ones
    store = enc.index(p[:70], tmp_path / "idx", shard_rows=16)
    assert len(store) == 70 and sorted(store.ids.tolist()) == list(range(70))
    other = _tiny(seed=1)
    with pytest.raises(ValueError, match="fingerprint"):
        other.score(a[:6], tmp_path / "idx")


def _hf_dir(tmp_path):
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    corpus = [f"the {w} sat on the {v}" for w in ("cat", "dog", "bird", "fish") for v in ("mat", "log", "sofa")]
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.train_from_iterator(corpus, tokenizers.trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]"]))
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")
    cfg = transformers.BertConfig(
        vocab_size=hf_tok.vocab_size,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=8,
    )
    torch.manual_seed(0)
    transformers.BertModel(cfg).save_pretrained(tmp_path / "hf")
    hf_tok.save_pretrained(tmp_path / "hf")
    return tmp_path / "hf", corpus


def test_text_encoder_from_config(tmp_path):
    hf, corpus = _hf_dir(tmp_path)
    enc = Influcoder.from_pretrained(hf, anchor_prefix="the ")
    assert enc.kind == "text" and enc.dim == 16
    e = enc.embed(corpus)
    assert e.shape == (len(corpus), 16)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(len(corpus)))
    with pytest.warns(UserWarning, match="truncated"):
        enc.embed(["the cat sat on the mat " * 3])
    rng = np.random.default_rng(0)
    teacher = rng.uniform(size=(6, 6))
    hist = enc.fit(corpus[:6], corpus[6:], teacher, epochs=1, progress=False)
    assert hist.settings["lr"] == pytest.approx(5e-5)  # the paper's fine-tuning default
    enc.save(tmp_path / "saved")
    back = Influcoder.load(tmp_path / "saved")
    torch.testing.assert_close(back.scores(corpus[:3], corpus[3:]), enc.scores(corpus[:3], corpus[3:]))
    with pytest.raises(TypeError, match="strings"):
        enc.embed(np.zeros((2, 3), np.int64))


def test_sentence_transformers_encoder(tmp_path):
    st_mod = pytest.importorskip("sentence_transformers")
    hf, corpus = _hf_dir(tmp_path)
    model = st_mod.SentenceTransformer(str(hf), device="cpu")  # a plain HF encoder gets mean pooling
    model.save(str(tmp_path / "st"))
    enc = Influcoder.from_pretrained(tmp_path / "st")
    assert enc.kind == "text" and enc.dim == 16
    # the same numbers as sentence-transformers' own encode
    ref = model.encode(corpus, convert_to_tensor=True, normalize_embeddings=True).cpu()
    torch.testing.assert_close(enc.embed(corpus), ref, atol=1e-5, rtol=1e-5)
    enc.fit(corpus[:6], corpus[6:], np.random.default_rng(0).uniform(size=(6, 6)), epochs=1, progress=False)
    enc.save(tmp_path / "saved")
    back = Influcoder.load(tmp_path / "saved")
    torch.testing.assert_close(back.embed(corpus), enc.embed(corpus))


def test_bigram_buckets_exact_and_hashed():
    from dataprobes.attribution.distill import TokenEncoder, TokenEncoderConfig

    exact = TokenEncoder(TokenEncoderConfig(vocab_size=5, d_model=8, n_layers=0, n_heads=2, max_len=6, dim=4))
    assert exact.config.bigram_buckets == 30  # (V + 1)·V: every (previous, current) pair its own row
    ids = torch.tensor([[0, 4, 4, 1], [3, 0, 2, 2]])
    got = exact._bigram_ids(ids)
    start = 5  # the first position's "previous token"
    want = torch.tensor(
        [[start * 5 + 0, 0 * 5 + 4, 4 * 5 + 4, 4 * 5 + 1], [start * 5 + 3, 3 * 5 + 0, 0 * 5 + 2, 2 * 5 + 2]]
    )
    assert torch.equal(got, want)
    hashed = TokenEncoder(
        TokenEncoderConfig(vocab_size=5, d_model=8, n_layers=0, n_heads=2, max_len=6, dim=4, bigram_buckets=7)
    )
    h = hashed._bigram_ids(ids)
    assert h.min() >= 0 and h.max() < 7 and h.dtype == torch.int64
    off = TokenEncoder(
        TokenEncoderConfig(vocab_size=5, d_model=8, n_layers=0, n_heads=2, max_len=6, dim=4, bigram_buckets=0)
    )
    assert off.bigram_emb is None
    big = TokenEncoderConfig(vocab_size=50_000)
    assert big.bigram_buckets == 2**16


def test_fit_defaults_depend_on_the_encoder(probe_split):
    from dataprobes.attribution.distill import FIT_DEFAULTS

    a, p, t = probe_split["train"]
    hist = _tiny().fit(a, p, t, epochs=1, progress=False)
    assert hist.settings["alpha"] == FIT_DEFAULTS["scratch"]["alpha"] == 1.0
    assert hist.settings["lr"] == FIT_DEFAULTS["scratch"]["lr"]
    assert FIT_DEFAULTS["scratch"]["epochs"] == 16 and FIT_DEFAULTS["pretrained"]["epochs"] == 8
    hist = _tiny().fit(a, p, t, epochs=1, progress=False, alpha=0.5, lr=2e-3)
    assert hist.settings["alpha"] == 0.5 and hist.settings["lr"] == 2e-3


def test_fit_with_hard_candidates_draws_them(probe_split):
    a, p, t = probe_split["train"]
    enc = _tiny()
    seen = []
    orig = t.block

    def spy(rows, cols):
        seen.append((np.array(rows), np.array(cols)))
        return orig(rows, cols)

    t.block = spy
    try:
        hist = enc.fit(a, p, t, epochs=1, progress=False, hard_ratio=0.5, k=4, m=8)
    finally:
        del t.block
    assert hist.settings["n_hard"] == 4
    top = t.top_candidates(8)
    for rows, cols in seen:
        assert cols.dtype == np.int64 and rows.dtype == np.int64
        assert np.isin(cols, np.unique(top[rows])).sum() >= 4


def test_gradient_teacher_verifies_a_store_once(tmp_path, monkeypatch):
    """A store teacher checks every block once, at construction (a corrupt
    store is refused then), and its block reads do not hash again; with
    verify_reads=False nothing is checked."""
    from dataprobes.attribution import CorruptShardError
    from dataprobes.attribution.store import reader

    rng = np.random.default_rng(1)
    fa, fp = rng.normal(size=(20, 6)).astype(np.float32), rng.normal(size=(3000, 6)).astype(np.float32)
    for name, f in (("a", fa), ("p", fp)):
        with StoreWriter(tmp_path / name, 6, "int8", config={"k": 6}, shard_rows=2500) as w:
            w.append(np.arange(len(f)), f)
    calls = []
    real = reader._xxh3
    monkeypatch.setattr(reader, "_xxh3", lambda a: calls.append(1) or real(a))
    t = GradientTeacher(GradientStore(tmp_path / "a"), GradientStore(tmp_path / "p"), block_rows=1000)
    assert calls  # verified at construction
    calls.clear()
    r, c = np.array([0, 19]), np.array([0, 1500, 2999])
    np.testing.assert_allclose(t.block(r, c).numpy(), _cos(fa, fp)[np.ix_(r, c)], atol=2e-2)
    t.rows(0, 20)
    t.top_candidates(3)
    assert not calls
    # flip one payload byte of the pool's second shard: refused at construction
    path = tmp_path / "p" / "rank00000-shard000001.int8.npy"
    arr = np.load(path, mmap_mode="r")
    offset = arr.offset + 100 * arr.shape[1]
    del arr
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptShardError, match=r"rank00000-shard000001\.int8\.npy"):
        GradientTeacher(GradientStore(tmp_path / "a"), GradientStore(tmp_path / "p"))
    unchecked = GradientTeacher(GradientStore(tmp_path / "a"), GradientStore(tmp_path / "p", verify_reads=False))
    assert unchecked.block(r, c).shape == (2, 3)


def test_objects_pickle_for_worker_processes(tmp_path, probe_split):
    import pickle

    a, p, t = probe_split["train"]
    enc = _tiny()
    back = pickle.loads(pickle.dumps(enc))
    assert back.fingerprint() == enc.fingerprint()
    assert torch.equal(back.embed(a[:3]), enc.embed(a[:3]))
    with StoreWriter(tmp_path / "f", 4, "float16") as w:
        w.append(np.arange(6), np.random.default_rng(0).normal(size=(6, 4)))
    teacher = GradientTeacher(GradientStore(tmp_path / "f"), np.ones((3, 4)))
    again = pickle.loads(pickle.dumps(teacher))
    assert torch.equal(again.block(np.arange(6), np.arange(3)), teacher.block(np.arange(6), np.arange(3)))
    sampler = pickle.loads(pickle.dumps(BlockSampler(10, 20, 3, 5, seed=4)))
    assert all(
        np.array_equal(x[1], y[1]) for x, y in zip(sampler.epoch(0), BlockSampler(10, 20, 3, 5, seed=4).epoch(0))
    )


def test_review_edge_cases_are_clear_errors(tmp_path, probe_split):
    a, p, t = probe_split["train"]
    # anchor prefixes: ids outside the vocabulary, no room left for the anchor, empty = none
    with pytest.raises(ValueError, match="anchor_prefix ids"):
        _tiny(anchor_prefix=[V])
    with pytest.raises(ValueError, match="no room"):
        _tiny(anchor_prefix=[1] * T)
    assert _tiny(anchor_prefix=[]).anchor_prefix is None
    enc = _tiny()
    # items of the wrong kind or empty
    with pytest.raises(ValueError, match="empty"):
        enc.embed([])
    with pytest.raises(ValueError, match="empty sequence"):
        enc.embed([[1, 2], []])
    with pytest.raises(TypeError):
        enc.embed([[1, 2], 3])
    with pytest.raises(TypeError):
        enc.embed(None)
    with pytest.raises(TypeError):
        enc.embed(np.zeros((2, 3)))
    # metrics
    with pytest.raises(TypeError, match="pred"):
        spearman_metrics([["a", "b"]], [[1.0, 2.0]])
    with pytest.raises(TypeError, match="gt"):
        spearman_metrics(np.ones((2, 3)), np.ones((2, 3), dtype=bool))
    # the loss: integer blocks and non-finite teachers
    with pytest.raises(TypeError, match="floating"):
        influcoder_loss(torch.ones(2, 3, dtype=torch.int64), torch.ones(2, 3))
    with pytest.raises(ValueError, match="NaN"):
        influcoder_loss(torch.ones(2, 3), torch.full((2, 3), float("nan")))
    # fit: bad k before any teacher pass; an eval pool too small to rank
    with pytest.raises(ValueError, match="k"):
        enc.fit(a, p, t, k=0, hard_ratio=0.5, progress=False)
    ea, ep, et = probe_split["eval"]
    with pytest.raises(ValueError, match="eval pool"):
        enc.fit(a, p, t, eval=(ea, ep[:1], np.zeros((len(ea), 1))), progress=False)
    # index ids and score arguments
    with pytest.raises(TypeError, match="ids"):
        enc.index(p[:4], tmp_path / "i", ids=np.arange(4.0))
    with pytest.raises(TypeError, match="cosine"):
        enc.score(a[:2], tmp_path / "i", method="ip")
    with pytest.raises(ValueError, match="device"):
        Influcoder.from_config(vocab_size=V, max_len=T, d_model=8, n_layers=0, n_heads=2, dim=4, device="gpu0")


def test_constant_block_trains_without_nan():
    # one anchor against four copies of one item: the student's block is constant;
    # the Pearson term has no correlation there and must give zero gradient, not 1e37
    s = torch.ones(1, 4, dtype=torch.float64, requires_grad=True)
    teacher = torch.tensor([[0.1, 0.5, 0.2, 0.9]], dtype=torch.float64)
    influcoder_loss(s, teacher, 1.0).backward()
    assert torch.equal(s.grad, torch.zeros_like(s))
    enc = Influcoder.from_config(vocab_size=V, d_model=8, n_layers=0, n_heads=2, max_len=T, dim=4)
    pool = np.tile(np.arange(T) % V, (4, 1))
    enc.fit(pool[:1] + 1 - 1, pool, np.array([[0.1, 0.5, 0.2, 0.9]]), k=1, m=4, epochs=2, progress=False)


def test_index_refuses_other_content_under_known_ids(tmp_path, probe_split):
    _, p, _ = probe_split["train"]
    enc = _tiny()
    enc.index(p[:10], tmp_path / "idx")
    enc.index(p[:10], tmp_path / "idx")  # same content again: a no-op resume
    with pytest.raises(ValueError, match="other content"):
        enc.index(p[10:20], tmp_path / "idx")  # ids 0..9 again, different items
    store = enc.index(p[10:20], tmp_path / "idx", ids=np.arange(10, 20))
    assert len(store) == 20


def test_sentence_transformers_max_length_is_honoured(tmp_path):
    st_mod = pytest.importorskip("sentence_transformers")
    hf, corpus = _hf_dir(tmp_path)
    model = st_mod.SentenceTransformer(str(hf), device="cpu")
    model.save(str(tmp_path / "st"))
    short = Influcoder.from_pretrained(tmp_path / "st", max_length=3)
    long_text = ["the cat sat on the mat"]
    with pytest.warns(UserWarning, match="truncated"):
        e = short.embed(long_text)
    # the same as embedding its first three tokens (this tokenizer adds no special tokens)
    torch.testing.assert_close(e, short.embed(["the cat sat"]), atol=1e-5, rtol=1e-5)
