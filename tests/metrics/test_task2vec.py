"""Task2Vec embeddings and coefficients (dataprobes.metrics.task2vec).

Oracles: the exact Fisher of a softmax-regression probe by enumeration over
labels; a faithful port of the reference implementation
(tests/metrics/task2vec_reference.py) for ``compat=True``; a per-sequence loop
of plain autograd for the default estimator; scipy's cosine distance; a
brute-force jackknife.
"""

from __future__ import annotations

import copy
import pickle
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from torch import nn  # noqa: E402

import dataprobes as dp  # noqa: E402
from dataprobes.lm import TinyGPT  # noqa: E402
from dataprobes.metrics import (  # noqa: E402
    AlignmentResult,
    DiversityResult,
    Task2VecEmbedding,
    alignment_coefficient,
    cross_diversity,
    diversity_coefficient,
    pairwise_task2vec_distances,
    task2vec_distance,
    task2vec_embedding,
)
from dataprobes.metrics._task2vec_data import batch_stream  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from task2vec_reference import reference_embedding  # noqa: E402

torch.set_num_threads(1)
V = 12


def tiny_gpt(seed: int = 0, vocab: int = V) -> TinyGPT:
    torch.manual_seed(seed)
    return TinyGPT(vocab_size=vocab, max_len=24, d_model=16, n_layers=2, n_heads=2)


def tiny_gpt2(seed: int = 0, vocab: int = V) -> nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(
        vocab_size=vocab,
        n_positions=24,
        n_embd=16,
        n_layer=2,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    return transformers.GPT2LMHeadModel(cfg)


def tokens(b: int, t: int, seed: int = 0, vocab: int = V) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, (b, t))


# ---------------------------------------------------------------------------
# 1. The Fisher against its closed form (softmax regression)


class SoftmaxRegression(nn.Module):
    """Logits ``W L x_t + c`` of fixed features ``x_t = E[token_t]``: a probe
    whose trunk is one linear map, positions independent."""

    def __init__(self, vocab: int, d: int, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.tok_emb = nn.Embedding(vocab, d)
        self.lin = nn.Linear(d, d, bias=False)
        self.head = nn.Linear(d, vocab)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        return self.lin(self.tok_emb(idx))


def exact_fisher_rows(model: SoftmaxRegression, ids: np.ndarray) -> np.ndarray:
    """``(1/B) Σ_b (1/T²) Σ_t Σ_y p(y|x_t) (∂ log p(y|x_t)/∂θ)²`` by enumeration,
    then per-row means, for the embedding (``tok_emb`` rows, then ``lin`` rows)."""
    E = model.tok_emb.weight.detach().double().numpy()
    L = model.lin.weight.detach().double().numpy()
    W = model.head.weight.detach().double().numpy()
    c = model.head.bias.detach().double().numpy()
    b, t = ids.shape
    fe, fl = np.zeros_like(E), np.zeros_like(L)
    for row in ids:
        for v in row:
            x = E[v]
            z = W @ (L @ x) + c
            p = np.exp(z - z.max())
            p /= p.sum()
            for y in range(len(p)):
                r = -p.copy()
                r[y] += 1.0
                gh = W.T @ r  # ∂ log p_y / ∂h
                fl += p[y] * np.outer(gh, x) ** 2 / (b * t * t)
                ge = np.zeros_like(E)
                ge[v] = L.T @ gh
                fe += p[y] * ge**2 / (b * t * t)
    return np.concatenate([fe.mean(1), fl.mean(1)])


def test_fisher_matches_closed_form_on_softmax_regression() -> None:
    model = SoftmaxRegression(vocab=5, d=3, seed=1)
    ids = np.array([[0, 1, 2], [3, 4, 0], [1, 2, 3], [4, 0, 1]])  # every token, every row of E
    exact = exact_fisher_rows(model, ids)
    runs = np.array(
        [task2vec_embedding(model, ids, finetune_epochs=0, fisher_samples=300, seed=s).hessian for s in range(6)]
    )
    mean = runs.mean(0)
    se = runs.std(0, ddof=1) / np.sqrt(len(runs))
    assert runs.shape[1] == exact.shape[0] == 5 + 3
    assert (se < 0.05 * exact.max()).all()  # the check has power
    assert np.abs(mean - exact).max() < 0.05 * exact.max()
    assert (np.abs(mean - exact) <= 5 * se + 1e-12).all(), (mean, exact, se)


# ---------------------------------------------------------------------------
# 2. compat mode equals the faithful port of the reference


@pytest.mark.parametrize("kind", ["tinygpt", "gpt2"])
def test_compat_equals_reference_port(kind: str) -> None:
    model = tiny_gpt(3) if kind == "tinygpt" else tiny_gpt2(3)
    ids = tokens(19, 10, seed=4)  # 19: the last minibatch of 8 is short
    ref = reference_embedding(model, ids, epochs=3, seed=7, fisher_epochs=2)
    ours = task2vec_embedding(model, ids, compat=True, finetune_epochs=3, fisher_samples=2, seed=7)
    assert ours.compat and ours.method == "compat"
    np.testing.assert_allclose(ours.hessian, ref, rtol=2e-5, atol=1e-12)


def test_compat_equals_reference_port_with_padding() -> None:
    model = tiny_gpt2(5)
    ids = tokens(11, 9, seed=6)
    mask = np.ones_like(ids)
    for i, n in enumerate([9, 5, 7, 2, 9, 3, 8, 6, 4, 9, 5]):
        ids[i, n:] = 0
        mask[i, n:] = 0
    ref = reference_embedding(model, ids, epochs=2, seed=3, ignore_index=0, attention_mask=mask)
    ours = task2vec_embedding(model, ids, compat=True, finetune_epochs=2, seed=3, pad_token_id=0, attention_mask=mask)
    np.testing.assert_allclose(ours.hessian, ref, rtol=2e-5, atol=1e-12)


# ---------------------------------------------------------------------------
# 3. the default estimator: same-position labels, padding masked, per sequence


def brute_force_default(model: nn.Module, ids: np.ndarray, seed: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-sequence loop of plain autograd with the documented label draws
    (sequence ``i`` reads uniforms ``default_rng([seed, i]).random((T, 1))``,
    label = inverse CDF at the same position)."""
    m = copy.deepcopy(model).eval()
    m.head.weight = nn.Parameter(m.head.weight.detach().clone())
    names = [
        n
        for n, mod in m.named_modules()
        if mod is not m.head and isinstance(getattr(mod, "weight", None), nn.Parameter)
    ]
    weights = [dict(m.named_modules())[n].weight for n in names]
    acc = [np.zeros(w.shape) for w in weights]
    b, t = ids.shape
    valid = np.ones((b, t), bool) if mask is None else mask.astype(bool)
    for i in range(b):
        x = torch.as_tensor(ids[i : i + 1], dtype=torch.long)
        logits = m(x)[0]
        logp = torch.log_softmax(logits, -1)
        p = torch.softmax(logits.double(), -1).detach().numpy()
        u = np.random.default_rng([seed, i]).random((t, 1))[:, 0]
        y = [
            min(int(np.searchsorted(np.cumsum(p[k]) / p[k].sum(), u[k], side="right")), p.shape[1] - 1)
            for k in range(t)
        ]
        n = valid[i].sum()
        loss = sum(logp[k, y[k]] for k in range(t) if valid[i, k]) / n
        grads = torch.autograd.grad(loss, weights)
        for a, g in zip(acc, grads, strict=True):
            a += g.double().numpy() ** 2 / b
    return np.concatenate([a.reshape(a.shape[0], -1).mean(1) for a in acc])


def test_default_equals_per_sequence_brute_force() -> None:
    model = tiny_gpt(2)
    ids = tokens(5, 7, seed=9)
    ours = task2vec_embedding(model, ids, finetune_epochs=0, seed=11, fisher_batch_size=2)
    np.testing.assert_allclose(ours.hessian, brute_force_default(model, ids, 11), rtol=1e-4, atol=1e-12)
    assert ours.method == "vmap"


def test_default_with_right_padding_equals_brute_force() -> None:
    model = tiny_gpt(4)
    ids = tokens(4, 8, seed=1)
    mask = np.ones_like(ids)
    for i, n in enumerate([8, 3, 6, 1]):
        mask[i, n:] = 0
    ours = task2vec_embedding(model, ids, finetune_epochs=0, seed=2, attention_mask=mask)
    np.testing.assert_allclose(ours.hessian, brute_force_default(model, ids, 2, mask), rtol=1e-4, atol=1e-12)


def test_per_sequence_squares_differ_from_the_squared_batch_mean() -> None:
    """The default estimator is the mean of per-sequence squares, not the
    square of a mean: the two differ by the cross terms (a law: the mean of
    squares is at least the square of the mean)."""
    model = tiny_gpt(2)
    ids = tokens(6, 6, seed=3)
    per_seq = task2vec_embedding(model, ids, finetune_epochs=0, seed=1).hessian
    one_batch = task2vec_embedding(model, ids, finetune_epochs=0, seed=1, compat=True, fisher_batch_size=6).hessian
    assert not np.allclose(per_seq, one_batch, rtol=0.1)


@pytest.mark.parametrize("kind", ["tinygpt", "gpt2"])
def test_padding_changes_nothing_when_masked(kind: str) -> None:
    model = tiny_gpt(1) if kind == "tinygpt" else tiny_gpt2(1)
    ids = tokens(6, 7, seed=5)
    base = task2vec_embedding(model, ids, finetune_epochs=2, seed=4)
    padded = np.concatenate([ids, np.full((6, 5), 3)], axis=1)
    mask = np.concatenate([np.ones((6, 7), int), np.zeros((6, 5), int)], axis=1)
    with_mask = task2vec_embedding(model, padded, finetune_epochs=2, seed=4, attention_mask=mask)
    np.testing.assert_allclose(with_mask.hessian, base.hessian, rtol=1e-4, atol=1e-12)
    assert with_mask.method == "vmap"
    # the pad id marks the padding when no mask is given
    padded[:, 7:] = V - 1
    ids_no_pad = ids.copy()
    ids_no_pad[ids_no_pad == V - 1] = 0
    padded[:, :7] = ids_no_pad
    ref = task2vec_embedding(model, ids_no_pad, finetune_epochs=2, seed=4)
    with_pad = task2vec_embedding(model, padded, finetune_epochs=2, seed=4, pad_token_id=V - 1)
    np.testing.assert_allclose(with_pad.hessian, ref.hessian, rtol=1e-4, atol=1e-12)
    # unmasked, the padding does change the embedding (it is data then)
    unmasked = task2vec_embedding(model, padded, finetune_epochs=2, seed=4)
    assert not np.allclose(unmasked.hessian, ref.hessian, rtol=1e-3)


def test_gpt2_default_equals_brute_force() -> None:
    model = tiny_gpt2(6)
    ids = tokens(3, 6, seed=8)
    ours = task2vec_embedding(model, ids, finetune_epochs=0, seed=5)

    class AsTiny(nn.Module):  # the brute force reads `head` and calls forward(ids) -> logits
        def __init__(self) -> None:
            super().__init__()
            self.hf = model
            self.head = model.lm_head

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.hf(input_ids=x).logits  # type: ignore[no-any-return]

    np.testing.assert_allclose(ours.hessian, brute_force_default(AsTiny(), ids, 5), rtol=1e-4, atol=1e-12)


# ---------------------------------------------------------------------------
# 4. the probe is untouched; determinism; pickling; distances


def test_probe_unchanged_and_head_still_tied() -> None:
    model = tiny_gpt(0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    task2vec_embedding(model, tokens(8, 6), finetune_epochs=3, lr=1e-2)
    task2vec_embedding(model, tokens(8, 6), finetune_epochs=3, lr=1e-2, compat=True)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.head.weight is model.tok_emb.weight
    assert all(p.requires_grad for p in model.parameters())


def test_head_only_finetune_moves_only_the_head() -> None:
    """With a huge learning rate the fine-tune changes the Fisher of the
    trunk weights only through the head: identical trunk inputs give an
    embedding that differs from the no-fine-tune one, and the loss falls."""
    model = tiny_gpt(0)
    ids = np.tile(tokens(1, 8, seed=1), (8, 1))
    e = task2vec_embedding(model, ids, finetune_epochs=5, lr=1e-2)
    first, last = e.finetune_loss
    assert last < first
    e0 = task2vec_embedding(model, ids, finetune_epochs=0)
    assert not np.allclose(e.hessian, e0.hessian)


def test_determinism_and_chunking() -> None:
    model = tiny_gpt(1)
    ids = tokens(7, 6, seed=2)
    a = task2vec_embedding(model, ids, seed=3, finetune_epochs=1)
    b = task2vec_embedding(model, torch.as_tensor(ids), seed=3, finetune_epochs=1, fisher_batch_size=3)
    c = task2vec_embedding(model, ids, seed=4, finetune_epochs=1)
    torch.set_num_threads(2)
    try:
        two_threads = task2vec_embedding(model, ids, seed=3, finetune_epochs=1)
    finally:
        torch.set_num_threads(1)
    np.testing.assert_allclose(a.hessian, b.hessian, rtol=1e-5, atol=1e-14)
    np.testing.assert_allclose(two_threads.hessian, a.hessian, rtol=1e-5, atol=1e-14)
    assert not np.allclose(a.hessian, c.hessian)
    assert a.hessian.dtype == np.float64 and a.hessian.ndim == 1
    assert sum(a.rows) == a.hessian.shape[0] and len(a.rows) == len(a.names)
    np.testing.assert_array_equal(a.layer("ln_f"), a.hessian[-16:])


def test_embedding_pickles() -> None:
    e = task2vec_embedding(tiny_gpt(0), tokens(3, 5), finetune_epochs=1, device="cpu")
    e2 = pickle.loads(pickle.dumps(e))
    assert isinstance(e2, Task2VecEmbedding)
    np.testing.assert_array_equal(e.hessian, e2.hessian)
    assert e2.names == e.names and e2.rows == e.rows


def reference_cosine(h0: np.ndarray, h1: np.ndarray, eps: float) -> float:
    scipy_distance = pytest.importorskip("scipy.spatial.distance")
    return float(scipy_distance.cosine(h0 / (h0 + h1 + eps), h1 / (h0 + h1 + eps)))


vectors = st.integers(1, 12).flatmap(
    lambda n: st.tuples(
        *[st.lists(st.floats(1e-6, 1e3, allow_nan=False), min_size=n, max_size=n).map(np.array) for _ in range(2)]
    )
)


@given(vectors, st.floats(1e-3, 1e3))
def test_distance_properties(pair: tuple[np.ndarray, np.ndarray], scale: float) -> None:
    a, b = pair
    d = task2vec_distance(a, b)
    assert 0.0 <= d <= 1.0
    assert d == pytest.approx(task2vec_distance(b, a), abs=1e-12)
    assert task2vec_distance(a, a) == pytest.approx(0.0, abs=1e-12)
    assert task2vec_distance(a * scale, b * scale) == pytest.approx(d, abs=1e-9)
    assert task2vec_distance(a, b, eps=1e-8) == pytest.approx(reference_cosine(a, b, 1e-8), abs=1e-9)


def test_distance_zero_entries_and_matrix() -> None:
    a = np.array([0.0, 1.0, 2.0])
    b = np.array([0.0, 2.0, 0.0])
    assert task2vec_distance(a, b) == pytest.approx(reference_cosine(a[1:], b[1:], 0.0))
    es = [np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0]), np.array([1.0, 1.0, 1.0])]
    m = pairwise_task2vec_distances(es)
    assert m.shape == (3, 3) and np.allclose(m, m.T) and np.allclose(np.diag(m), 0)
    assert m[0, 1] == pytest.approx(task2vec_distance(es[0], es[1]))


# ---------------------------------------------------------------------------
# 5. coefficients: fresh batches, statistics, data-set kinds


def test_diversity_of_distinct_rows_is_positive_and_batches_are_fresh() -> None:
    data = tokens(40, 6, seed=1)
    r = diversity_coefficient(data, tiny_gpt(0), num_batches=4, batch_size=8, finetune_epochs=1, progress=False)
    assert isinstance(r, DiversityResult)
    assert r.coefficient > 0 and r.distances.shape == (4, 4)
    assert (r.distances[np.triu_indices(4, 1)] > 0).all()
    batches = [ids for ids, _, _ in batch_stream(data, 6, 8, seq_len=None, seed=0, side=0)]
    rows = [set(map(tuple, b)) for b in batches]
    assert all(len(rows[i] & rows[j]) == 0 for i in range(5) for j in range(i + 1, 5))  # one pass: disjoint
    assert rows[5] != rows[0]  # the second pass is a new permutation


def test_streaming_batches_differ() -> None:
    """The reference re-shuffled a streaming set with the same seed for every
    batch (all batches equal): here one running iterator reads new rows."""
    datasets = pytest.importorskip("datasets")
    rows = tokens(64, 5, seed=2)
    it = datasets.Dataset.from_dict({"input_ids": rows.tolist()}).to_iterable_dataset()
    batches = [ids for ids, _, _ in batch_stream(it, 6, 10, seq_len=None, seed=0, side=0)]
    assert len({b.tobytes() for b in batches}) == 6
    seen = [tuple(r) for b in batches[:6] for r in b]
    assert len(set(seen)) == 60  # 64 distinct rows, 6 batches of 10 in one pass


def test_process_batches_are_fresh_and_reproducible() -> None:
    p = dp.MarkovChain.random(V, entropy_rate=1.5, seed=0)
    a = [ids for ids, _, _ in batch_stream(p, 3, 4, seq_len=6, seed=1, side=0)]
    b = [ids for ids, _, _ in batch_stream(p, 3, 4, seq_len=6, seed=1, side=0)]
    c = [ids for ids, _, _ in batch_stream(p, 3, 4, seq_len=6, seed=1, side=1)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert len({x.tobytes() for x in a}) == 3
    assert not np.array_equal(a[0], c[0])


def jackknife(d: np.ndarray) -> float:
    n = d.shape[0]
    th = []
    for k in range(n):
        keep = [i for i in range(n) if i != k]
        sub = d[np.ix_(keep, keep)]
        th.append(sub[np.triu_indices(n - 1, 1)].mean())
    th_arr = np.array(th)
    return float(np.sqrt((n - 1) / n * ((th_arr - th_arr.mean()) ** 2).sum()))


def test_coefficients_statistics_and_alignment_identity() -> None:
    p = dp.MarkovChain.random(V, entropy_rate=1.0, seed=3)
    q = dp.IID(np.full(V, 1.0 / V))
    model = tiny_gpt(0)
    kw = dict(num_batches=4, batch_size=6, seq_len=8, seed=5, progress=False, finetune_epochs=1)
    div = diversity_coefficient(p, model, **kw)
    assert div.coefficient == pytest.approx(div.distances[np.triu_indices(4, 1)].mean())
    assert div.stderr == pytest.approx(jackknife(div.distances))
    cross = cross_diversity(p, q, model, **kw)
    al = alignment_coefficient(p, q, model, **kw)
    assert isinstance(al, AlignmentResult)
    assert cross.distances.shape == (4, 4) and len(cross.embeddings) == 8
    assert al.coefficient == pytest.approx(1.0 - cross.coefficient)
    np.testing.assert_allclose(al.distances, cross.distances)
    # a's batches in a cross coefficient are those of its diversity coefficient
    np.testing.assert_allclose(cross.embeddings[0].hessian, div.embeddings[0].hessian)
    rows, cols = cross.distances.mean(1), cross.distances.mean(0)
    assert cross.stderr == pytest.approx(np.sqrt(rows.var(ddof=1) / 4 + cols.var(ddof=1) / 4))
    # self-alignment is 1 - (a cross diversity of independent batches), not 1
    self_al = alignment_coefficient(p, p, model, **kw)
    assert self_al.coefficient < 1.0
    assert np.all(np.diag(self_al.distances) > 0)


def test_torch_dataset_and_hf_dataset_inputs() -> None:
    datasets = pytest.importorskip("datasets")
    rows = tokens(24, 6, seed=4)
    model = tiny_gpt(0)
    kw = dict(num_batches=2, batch_size=8, seed=1, progress=False, finetune_epochs=1)
    base = diversity_coefficient(rows, model, **kw)
    tds = torch.utils.data.TensorDataset(torch.as_tensor(rows))

    class Rows(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return len(rows)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"input_ids": torch.as_tensor(rows[i])}

    hf = datasets.Dataset.from_dict({"input_ids": rows.tolist()})
    for ds in (Rows(), hf, torch.as_tensor(rows), tds):
        r = diversity_coefficient(ds, model, **kw)
        np.testing.assert_allclose(r.distances, base.distances, rtol=1e-6, atol=1e-12)


def test_hf_text_with_tokenizer() -> None:
    datasets = pytest.importorskip("datasets")
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    words = ["[PAD]", "[UNK]", "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far", "away"]
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words[2:], rng.integers(2, 8))) for _ in range(30)]
    ds = datasets.Dataset.from_dict({"text": texts})
    r = diversity_coefficient(
        ds,
        tiny_gpt(0, vocab=len(words)),
        num_batches=3,
        batch_size=6,
        seq_len=8,
        tokenizer=hf_tok,
        progress=False,
        finetune_epochs=1,
    )
    assert r.coefficient > 0 and np.isfinite(r.stderr)
    # the padded batch equals the embedding of the same rows with their mask
    ids, mask, pad = next(batch_stream(ds, 1, 6, seq_len=8, seed=0, side=0, tokenizer=hf_tok))
    assert pad == 0 and mask is not None and (ids[mask == 0] == 0).all()
    r_stream = diversity_coefficient(
        ds.to_iterable_dataset(),
        tiny_gpt(0, vocab=len(words)),
        num_batches=2,
        batch_size=6,
        seq_len=8,
        tokenizer=hf_tok,
        progress=False,
        finetune_epochs=1,
    )
    assert r_stream.coefficient > 0


# ---------------------------------------------------------------------------
# 6. bad input


class NoHead(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (dict(batch=np.zeros((0, 5), int)), ValueError, "empty"),
        (dict(batch=np.zeros((3, 1), int)), ValueError, "at least 2"),
        (dict(batch=np.zeros((3, 25), int)), ValueError, "context"),
        (dict(batch=np.full((3, 5), V)), ValueError, "vocabulary"),
        (dict(batch=np.full((3, 5), -1)), ValueError, "vocabulary"),
        (dict(batch=np.zeros((3, 5))), TypeError, "integer"),
        (dict(batch=np.zeros(5, int)), ValueError, "2-D"),
        (dict(batch="abc"), TypeError, "batch"),
        (dict(batch=np.zeros((3, 5), int), probe=NoHead()), ValueError, "output head"),
        (dict(batch=np.zeros((3, 5), int), probe="gpt"), TypeError, "probe"),
        (dict(batch=np.zeros((3, 5), int), finetune_epochs=-1), ValueError, "finetune_epochs"),
        (dict(batch=np.zeros((3, 5), int), fisher_samples=0), ValueError, "fisher_samples"),
        (dict(batch=np.zeros((3, 5), int), lr=float("nan")), ValueError, "lr"),
        (dict(batch=np.zeros((3, 5), int), compat=1), TypeError, "compat"),
        (dict(batch=np.zeros((3, 5), int), seed=-1), ValueError, "seed"),
        (dict(batch=np.zeros((3, 5), int), device=3), TypeError, "device"),
        (dict(batch=np.zeros((3, 5), int), pad_token_id=V), ValueError, "pad_token_id"),
        (dict(batch=np.zeros((3, 5), int), attention_mask=np.ones((3, 4), int)), ValueError, "attention_mask"),
        (dict(batch=np.zeros((3, 5), int), attention_mask=np.full((3, 5), 0.5)), ValueError, "attention_mask"),
        (dict(batch=np.zeros((3, 5), int), attention_mask=np.full((3, 5), "a")), TypeError, "attention_mask"),
        (dict(batch=np.zeros((3, 5), int), attention_mask=np.full((3, 5), 2)), ValueError, "attention_mask"),
        (dict(batch=np.zeros((3, 5), int), attention_mask=[[0, 1, 1, 1, 1]] * 3), ValueError, "right padding"),
        (dict(batch=np.zeros((3, 5), int), attention_mask=[[1] * 5, [0] * 5, [1] * 5]), ValueError, "padding"),
    ],
)
def test_bad_embedding_input(kwargs: dict, exc: type, match: str) -> None:
    probe = kwargs.pop("probe", tiny_gpt(0))
    batch = kwargs.pop("batch")
    with pytest.raises(exc, match=match):
        task2vec_embedding(probe, batch, finetune_epochs=kwargs.pop("finetune_epochs", 1), **kwargs)


def test_gpt2_without_head_and_too_long() -> None:
    transformers = pytest.importorskip("transformers")
    bare = transformers.GPT2Model(tiny_gpt2(0).config)
    with pytest.raises(ValueError, match="output head"):
        task2vec_embedding(bare, tokens(2, 5))
    with pytest.raises(ValueError, match="context"):
        task2vec_embedding(tiny_gpt2(0), tokens(2, 25))


def test_nan_fisher_raises() -> None:
    model = tiny_gpt(0)
    with torch.no_grad():
        model.blocks[0].mlp[0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="not finite"):
        task2vec_embedding(model, tokens(2, 5), finetune_epochs=0)


@pytest.mark.parametrize(
    ("dataset", "kwargs", "exc", "match"),
    [
        (np.zeros((0, 5), int), {}, ValueError, "empty"),
        (np.zeros((4, 5), int), {"batch_size": 8}, ValueError, "batch_size"),
        (np.zeros((20, 5), int), {"num_batches": 1}, ValueError, "num_batches"),
        (np.zeros((20, 5), int), {"seq_len": 9}, ValueError, "seq_len"),
        (np.zeros((20, 5)), {}, TypeError, "integer"),
        ("text", {}, TypeError, "dataset"),
        (dp.IID(np.full(V, 1.0 / V)), {}, ValueError, "seq_len"),
        (iter([np.zeros(5, int)] * 5), {}, ValueError, "fewer than batch_size|ran out"),
        (np.zeros((20, 5), int), {"bogus": 1}, TypeError, "bogus"),
        (np.zeros((20, 5), int), {"progress": "yes"}, TypeError, "progress"),
    ],
)
def test_bad_coefficient_input(dataset: object, kwargs: dict, exc: type, match: str) -> None:
    args = dict(num_batches=2, batch_size=4, progress=False, finetune_epochs=0)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        diversity_coefficient(dataset, tiny_gpt(0), **args)


def test_bad_distance_input() -> None:
    with pytest.raises(ValueError, match="same length"):
        task2vec_distance(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="NaN"):
        task2vec_distance(np.array([1.0, np.nan]), np.ones(2))
    with pytest.raises(ValueError, match="negative"):
        task2vec_distance(np.array([1.0, -1.0]), np.ones(2))
    with pytest.raises(TypeError, match="a must be"):
        task2vec_distance("x", np.ones(2))
    with pytest.raises(ValueError, match="undefined"):
        task2vec_distance(np.array([0.0, 0.0]), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="empty"):
        pairwise_task2vec_distances([])


def test_compat_without_kept_graphs_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compat Fisher reuses the trunk's forward graph within a memory
    budget; with no budget (forward run again) or minibatches that differ
    from the fine-tune's, the embedding is the same."""
    from dataprobes.metrics import task2vec as t2v

    model = tiny_gpt(3)
    ids = tokens(13, 8, seed=2)
    kept = task2vec_embedding(model, ids, compat=True, finetune_epochs=2, fisher_samples=2, seed=1)
    monkeypatch.setattr(t2v, "GRAPH_BUDGET", 0)
    again = task2vec_embedding(model, ids, compat=True, finetune_epochs=2, fisher_samples=2, seed=1)
    np.testing.assert_allclose(again.hessian, kept.hessian, rtol=1e-5, atol=1e-14)
    ref = reference_embedding(model, ids, epochs=2, seed=1, fisher_epochs=2, loader_batch_size=8)
    np.testing.assert_allclose(again.hessian, ref, rtol=2e-5, atol=1e-12)


@pytest.mark.parametrize("compat", [False, True])
def test_closed_form_head_update_equals_autograd_adamw(compat: bool) -> None:
    """A linear head trains by a closed-form gradient and AdamW written out; any
    other head by autograd and torch.optim.AdamW: the same embedding."""

    class OtherLinear(nn.Linear):  # not exactly nn.Linear: takes the autograd path
        pass

    model = tiny_gpt(2)
    other = copy.deepcopy(model)
    other.head = OtherLinear(16, V, bias=False)
    other.head.weight = other.tok_emb.weight
    ids = tokens(10, 7, seed=3)
    ids[ids == 1] = 2
    ids[::3, -2:] = 1  # right padding in some rows
    kw = dict(finetune_epochs=3, lr=3e-3, seed=2, compat=compat, pad_token_id=1)
    a = task2vec_embedding(model, ids, **kw)
    b = task2vec_embedding(other, ids, **kw)
    assert a.finetune_loss[1] < a.finetune_loss[0]
    np.testing.assert_allclose(a.finetune_loss, b.finetune_loss, rtol=1e-5)
    np.testing.assert_allclose(a.hessian, b.hessian, rtol=1e-4, atol=1e-12)


@given(st.integers(1, 30), st.data())
def test_array_batches_are_fresh_within_a_pass(n: int, data: st.DataObject) -> None:
    bs = data.draw(st.integers(1, n))
    nb = data.draw(st.integers(1, 8))
    seed = data.draw(st.integers(0, 2**32))
    rows = np.arange(n)[:, None] * np.ones((1, 3), int)  # row i holds the token i
    got = [ids[:, 0] for ids, _, _ in batch_stream(rows, nb, bs, seq_len=2, seed=seed, side=0)]
    again = [ids[:, 0] for ids, _, _ in batch_stream(rows, nb, bs, seq_len=2, seed=seed, side=0)]
    assert len(got) == nb and all(np.array_equal(a, b) for a, b in zip(got, again, strict=True))
    per_pass = n // bs
    for k, b in enumerate(got):
        assert len(set(b.tolist())) == bs  # no row twice in a batch
        start = k - k % per_pass
        for other in got[start:k]:  # earlier batches of the same pass
            assert not set(b.tolist()) & set(other.tolist())


@given(st.integers(3, 9), st.integers(0, 2**32))
def test_jackknife_standard_error(n: int, seed: int) -> None:
    from dataprobes.metrics.task2vec import _within_stats

    rng = np.random.default_rng(seed)
    d = rng.random((n, n))
    d = np.triu(d, 1) + np.triu(d, 1).T
    mean, se, std = _within_stats(d)
    assert mean == pytest.approx(d[np.triu_indices(n, 1)].mean())
    assert se == pytest.approx(jackknife(d), rel=1e-9, abs=1e-15)
    assert std == pytest.approx(d[np.triu_indices(n, 1)].std(ddof=1))


def test_loop_fallback_equals_vmap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Models torch.func cannot trace take a loop of autograd calls: same Fisher."""
    from dataprobes.metrics import task2vec as t2v

    model = tiny_gpt2(4)
    ids = tokens(5, 6, seed=7)
    kw = dict(finetune_epochs=1, seed=3, fisher_samples=2, fisher_batch_size=2)
    fast = task2vec_embedding(model, ids, **kw)

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("vmap cannot trace this model")

    # left padding needs the mask inside the model: Hugging Face's mask code defeats vmap
    left = np.ones_like(ids)
    left[2, :2] = 0
    assert task2vec_embedding(model, ids, attention_mask=left, **kw).method == "loop"
    monkeypatch.setattr(t2v, "_chunk_vmap", refuse)
    slow = task2vec_embedding(model, ids, **kw)
    assert (fast.method, slow.method) == ("vmap", "loop")
    np.testing.assert_allclose(slow.hessian, fast.hessian, rtol=1e-4, atol=1e-14)


# ---------------------------------------------------------------------------
# acceptance review regressions


@pytest.mark.parametrize("batch", [[], [[]], np.array([]), torch.zeros(0, 5), torch.zeros(3, 0, dtype=torch.long)])
def test_empty_batch_of_any_dtype_is_a_value_error(batch: object) -> None:
    """``np.asarray([])`` is float64: an empty batch is 'empty', not 'not integer'."""
    with pytest.raises(ValueError, match="batch is empty"):
        task2vec_embedding(tiny_gpt(0), batch, finetune_epochs=0)


@pytest.mark.parametrize("eps", [-1.0, float("nan")])
def test_bad_eps_refused_before_any_embedding(eps: float, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataprobes.metrics import task2vec as t2v

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("embedded a batch before checking eps")

    monkeypatch.setattr(t2v, "task2vec_embedding", never)
    rows = tokens(8, 5)
    with pytest.raises(ValueError, match="eps"):
        diversity_coefficient(rows, tiny_gpt(0), 2, 4, eps=eps, progress=False)
    with pytest.raises(ValueError, match="eps"):
        alignment_coefficient(rows, rows, tiny_gpt(0), 2, 4, eps=eps, progress=False)


def test_text_items_name_the_fix() -> None:
    with pytest.raises(TypeError, match="tokenizer="):
        diversity_coefficient(["the cat", "a dog", "the end"], tiny_gpt(0), 2, 1, progress=False)


def test_distance_near_the_float64_maximum() -> None:
    """h0 + h1 overflows: no warning, and the distance of a common rescaling."""
    rng = np.random.default_rng(0)
    a, b = rng.random(6), rng.random(6)
    big = np.finfo(np.float64).max / 1.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = task2vec_distance(a * big, b * big)
    assert got == pytest.approx(task2vec_distance(a, b), rel=1e-12)


@pytest.mark.parametrize("device", ["bogus", "meta"])
def test_bad_device_is_a_value_error(device: str) -> None:
    with pytest.raises(ValueError, match="device"):
        task2vec_embedding(tiny_gpt(0), tokens(2, 5), device=device, finetune_epochs=0)
