"""Streamed top-k scoring against brute force, the influence formula,
independence from block_rows, bounded memory, and bad inputs."""

from __future__ import annotations

import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from dataprobes.attribution import (  # noqa: E402
    TILE_ROWS,
    GradientStore,
    StoreWriter,
    fit_preconditioner,
    score,
)

CONFIG = {"projection": {"kind": "sjlt", "seed": 11}, "k": 0, "model": "tiny-gpt", "layers": ["h.0"]}


def _store(
    path: Path,
    rows: np.ndarray,
    ids: np.ndarray,
    dtype: str = "int8",
    shard_rows: int = 700,
    config: dict | None = None,
) -> GradientStore:
    with StoreWriter(path, rows.shape[1], dtype, config or CONFIG, shard_rows=shard_rows) as w:
        for i in range(0, len(ids), 97):
            w.append(ids[i : i + 97], rows[i : i + 97])
    return GradientStore(path)


def _integer_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Integer rows whose int8 scale is exactly 1 (one entry ±127 per row), some
    all-zero rows and many exact duplicates: every inner product is exact in
    float32, and ties are plentiful."""
    x = rng.integers(-127, 128, size=(n, dim)).astype(np.float32)
    x[np.arange(n), rng.integers(0, dim, n)] = rng.choice([-127.0, 127.0], n)
    x[rng.random(n) < 0.05] = 0.0
    dup = rng.random(n) < 0.3
    x[dup] = x[rng.integers(0, n, int(dup.sum()))]
    return x


def brute_force(
    rows: np.ndarray, queries: np.ndarray, method: str, damping: float = 1e-3
) -> tuple[np.ndarray, np.ndarray]:
    """Full [Q, n] score matrix in float64 and the preconditioned queries."""
    r = rows.astype(np.float64)
    q = queries.astype(np.float64)
    if method == "ip":
        return q @ r.T, q
    if method == "cosine":
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
        rn = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-30)
        return qn @ rn.T, qn
    n, dim = r.shape
    g = r.T @ r / n
    tr = np.trace(g)
    lam = damping * tr / dim if tr > 0 else damping
    qt = np.linalg.solve(g + lam * np.eye(dim), q.T).T  # g_q^T (Φ^TΦ/n + λI)^-1
    return qt @ r.T, qt


def expected_topk(full: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.stack([np.lexsort((ids, -row))[:k] for row in full])
    return ids[order], np.take_along_axis(full, order, 1)


def check_topk(res, full: np.ndarray, ids: np.ndarray, k: int, tol: np.ndarray) -> None:
    """``res`` is a valid top-k of ``full`` within ``tol`` per query, sorted by
    (score desc, id asc), with scores equal to the brute-force ones."""
    col = {int(i): j for j, i in enumerate(ids)}
    assert res.ids.shape == res.scores.shape == (full.shape[0], min(k, full.shape[1]))
    _, exp_scores = expected_topk(full, ids, k)
    for q in range(full.shape[0]):
        got_ids, got = res.ids[q], res.scores[q].astype(np.float64)
        assert len(set(got_ids.tolist())) == len(got_ids)
        brute = full[q, [col[int(i)] for i in got_ids]]
        np.testing.assert_allclose(got, brute, rtol=0, atol=tol[q])
        np.testing.assert_allclose(got, exp_scores[q], rtol=0, atol=2 * tol[q])
        assert (np.diff(got) <= 0).all()
        same = np.diff(got) == 0
        assert (np.diff(got_ids)[same] > 0).all(), "equal scores must be ordered by id"


# ----------------------------------------------------------------------------
# against brute force


@given(
    n=st.integers(1, 2300),
    dim=st.integers(1, 20),
    nq=st.integers(1, 5),
    k_extra=st.integers(0, 40),
    block_rows=st.sampled_from([1, 100, 1000, 1024, 1500, 4096, 100_000]),
    method=st.sampled_from(["ip", "cosine", "influence"]),
    dtype=st.sampled_from(["int8", "float16"]),
    seed=st.integers(0, 2**31),
)
def test_topk_matches_brute_force(
    n: int, dim: int, nq: int, k_extra: int, block_rows: int, method: str, dtype: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    rows = _integer_rows(rng, n, dim)
    ids = rng.permutation(4 * n)[:n].astype(np.int64) - n  # id order unrelated to store order
    queries = rng.integers(-3, 4, size=(nq, dim)).astype(np.float32)
    k = int(rng.integers(1, n + 1)) if k_extra == 0 else min(k_extra, n + 3)
    with tempfile.TemporaryDirectory() as d:
        s = _store(Path(d), rows, ids, dtype, shard_rows=int(rng.integers(50, 900)))
        np.testing.assert_array_equal(s.read()[1], rows)  # integer rows are stored exactly
        res = score(s, queries, method, top_k=k, block_rows=block_rows, return_full=True, query_config=CONFIG)
        other = score(s, queries, method, top_k=k, block_rows=TILE_ROWS * 3, query_config=CONFIG)
    np.testing.assert_array_equal(res.ids, other.ids)  # bit-identical whatever block_rows
    np.testing.assert_array_equal(res.scores, other.scores)
    full, qt = brute_force(rows, queries, method)
    if method == "ip":  # exact integers: ids (tie order included) and scores must match exactly
        exp_ids, exp_scores = expected_topk(full, ids, k)
        np.testing.assert_array_equal(res.ids, exp_ids)
        np.testing.assert_array_equal(res.scores, exp_scores)
        np.testing.assert_array_equal(res.full, full)
        return
    rnorm = np.linalg.norm(rows.astype(np.float64), axis=1).max()
    tol = np.full(nq, 1e-5) if method == "cosine" else 1e-5 * np.linalg.norm(qt, axis=1) * rnorm + 1e-12
    check_topk(res, full, ids, k, tol)
    assert res.full is not None
    np.testing.assert_allclose(res.full, full, rtol=0, atol=float(tol.max()))


@pytest.mark.parametrize("method", ["ip", "cosine", "influence"])
@pytest.mark.parametrize("dtype", ["int8", "float16"])
def test_identical_whatever_block_rows(tmp_path: Path, method: str, dtype: str) -> None:
    rng = np.random.default_rng(5)
    rows = rng.standard_normal((5000, 48)).astype(np.float32)
    rows[::7] = rows[3]  # exact duplicates across tiles and blocks
    ids = rng.permutation(5000).astype(np.int64)
    s = _store(tmp_path, rows, ids, dtype, shard_rows=1234)
    q = rng.standard_normal((6, 48)).astype(np.float32)
    results = [
        score(s, q, method, top_k=800, block_rows=b, query_config=CONFIG) for b in (1, 1000, 1024, 3000, 4096, 10**6)
    ]
    for r in results[1:]:
        np.testing.assert_array_equal(r.ids, results[0].ids)
        np.testing.assert_array_equal(r.scores, results[0].scores)
    full, qt = brute_force(s.read()[1], q, method)
    tol = (
        np.full(6, 1e-5)
        if method == "cosine"
        else 1e-5 * np.linalg.norm(qt, axis=1) * np.linalg.norm(s.read()[1], axis=1).max()
    )
    check_topk(results[0], full, s.ids, 800, tol)


def test_influence_equals_explicit_formula(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    n, dim = 3000, 32
    rows = rng.standard_normal((n, dim)).astype(np.float32) * rng.uniform(0.1, 10, dim).astype(
        np.float32
    )  # anisotropic
    s = _store(tmp_path, rows, np.arange(n), "int8")
    phi = s.read()[1].astype(np.float64)  # the dequantised rows Φ
    gq = rng.standard_normal((4, dim))
    for damping in (1e-3, 0.1, 10.0):
        h = phi.T @ phi / n
        lam = damping * np.trace(h) / dim
        explicit = gq @ np.linalg.inv(h + lam * np.eye(dim)) @ phi.T  # g_q^T (Φ^TΦ/n + λI)^-1 g_t
        res = score(
            s, gq, "influence", top_k=50, damping=damping, return_full=True, block_rows=700, query_config=CONFIG
        )
        assert res.full is not None
        np.testing.assert_allclose(res.full, explicit, rtol=1e-4, atol=1e-5 * np.abs(explicit).max())
        exp_ids, _ = expected_topk(explicit, s.ids, 50)
        np.testing.assert_array_equal(res.ids, exp_ids)
        pre = fit_preconditioner(s, damping)
        assert pre.lam == pytest.approx(lam, rel=1e-6) and pre.num_rows == n
        np.testing.assert_allclose(pre.gram, h, rtol=1e-6, atol=1e-9 * np.abs(h).max())
        again = score(s, gq, "influence", top_k=50, preconditioner=pre, query_config=CONFIG)
        np.testing.assert_array_equal(again.ids, res.ids)
        np.testing.assert_array_equal(again.scores, res.scores)


def test_queries_from_a_second_store(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    s = _store(tmp_path / "train", rng.standard_normal((900, 16)).astype(np.float32), np.arange(900))
    qrows = rng.standard_normal((5, 16)).astype(np.float32)
    qs = _store(tmp_path / "query", qrows, np.array([40, 10, 30, 20, 0]), "float16")
    res = score(s, qs, "cosine", top_k=7)
    np.testing.assert_array_equal(res.query_ids, [40, 10, 30, 20, 0])
    ref = score(s, torch.from_numpy(qs.read()[1]), "cosine", top_k=7, query_config=CONFIG, device="cpu")
    np.testing.assert_array_equal(res.ids, ref.ids)
    np.testing.assert_array_equal(res.scores, ref.scores)
    assert ref.query_ids is None
    other = _store(tmp_path / "other", qrows, np.arange(5), config={**CONFIG, "layers": ["h.1"]})
    with pytest.raises(ValueError, match=r"queries \(a GradientStore\) config differs .* layers"):
        score(s, other)
    np.testing.assert_array_equal(
        score(str(tmp_path / "train"), qrows, top_k=3, query_config=CONFIG).ids,
        score(s, qrows, top_k=3, query_config=CONFIG).ids,
    )


# ----------------------------------------------------------------------------
# memory


def test_memory_is_bounded(tmp_path: Path) -> None:
    """200k stored rows × 64 queries: a [Q, n] float32 matrix would be 51 MB; the
    streamed scorer never allocates more than a few MB at once."""
    n, dim, nq = 200_000, 8, 64
    rng = np.random.default_rng(4)
    with StoreWriter(tmp_path, dim, "int8", CONFIG, shard_rows=65536) as w:
        w.append(np.arange(n), rng.standard_normal((n, dim)).astype(np.float32))
    s = GradientStore(tmp_path)
    q = rng.standard_normal((nq, dim)).astype(np.float32)
    full_bytes = nq * n * 4
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # speed only: many small ops stall on a busy 2-core machine
    try:
        _check_memory(s, q, full_bytes)
    finally:
        torch.set_num_threads(threads)


def _check_memory(s: GradientStore, q: np.ndarray, full_bytes: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    nq = q.shape[0]

    def numpy_peak(**kw):
        tracemalloc.start()
        res = score(s, q, "cosine", top_k=100, block_rows=4096, query_config=CONFIG, **kw)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return res, peak

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        res = score(s, q, "cosine", top_k=100, block_rows=4096, query_config=CONFIG)
    torch_peak = max(e.cpu_memory_usage for e in prof.events())
    assert res.ids.shape == (nq, 100)
    assert torch_peak < full_bytes / 8, f"largest torch allocation {torch_peak} bytes"
    _, np_peak = numpy_peak()
    assert np_peak < full_bytes / 8, f"numpy peak {np_peak} bytes"
    full_res, np_peak_full = numpy_peak(return_full=True)  # the check does see a [Q, n] matrix
    assert np_peak_full >= full_bytes
    np.testing.assert_array_equal(full_res.ids, res.ids)


# ----------------------------------------------------------------------------
# edge cases and bad inputs


def test_topk_larger_than_store_returns_everything(tmp_path: Path) -> None:
    rows = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
    s = _store(tmp_path, rows, np.array([7, 3, 5]), "float16")
    res = score(s, np.array([[1.0, 1.0]]), "ip", top_k=100, query_config=CONFIG)
    np.testing.assert_array_equal(res.ids, [[5, 3, 7]])  # 2, then the tie 1 = 1 broken by id
    np.testing.assert_array_equal(res.scores, [[2.0, 1.0, 1.0]])
    zero = score(s, np.zeros((1, 2)), "cosine", top_k=2, query_config=CONFIG)  # zero query: all scores 0, ids ascending
    np.testing.assert_array_equal(zero.ids, [[3, 5]])
    np.testing.assert_array_equal(zero.scores, [[0.0, 0.0]])


def test_bad_inputs(tmp_path: Path) -> None:
    s = _store(tmp_path / "s", np.ones((10, 4), np.float32), np.arange(10))
    q = np.ones((2, 4), np.float32)
    with pytest.raises(ValueError, match="queries has dim 5 but the store has dim 4"):
        score(s, np.ones((2, 5)))
    with pytest.raises(ValueError, match=r"queries must be 2-D .*queries\[None\]"):
        score(s, np.ones(4))
    with pytest.raises(ValueError, match="queries is empty"):
        score(s, np.ones((0, 4)))
    with pytest.raises(ValueError, match=r"queries contains NaN or infinite values \(row 1\)"):
        score(s, np.array([[1, 2, 3, 4], [0, np.nan, 0, 0]]))
    with pytest.raises(ValueError, match="queries contains NaN"):
        score(s, torch.tensor([[float("inf"), 0, 0, 0]]))
    with pytest.raises(TypeError, match="queries must be a real-valued"):
        score(s, np.array([["a", "b", "c", "d"]]))
    with pytest.raises(TypeError, match="queries must be real-valued"):
        score(s, torch.ones((1, 4), dtype=torch.complex64))
    with pytest.raises(ValueError, match=r"query_config differs .*projection\.seed \(12 vs 11\)"):
        score(s, q, query_config={**CONFIG, "projection": {"kind": "sjlt", "seed": 12}})
    with pytest.raises(ValueError, match="method must be one of"):
        score(s, q, "euclid")
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        score(s, q, top_k=0)
    with pytest.raises(TypeError, match="top_k must be a positive integer"):
        score(s, q, top_k=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="block_rows must be a positive integer"):
        score(s, q, block_rows=0)
    with pytest.raises(ValueError, match="damping must be a positive finite number"):
        score(s, q, "influence", damping=0.0, query_config=CONFIG)
    with pytest.raises(TypeError, match="store must be a GradientStore or a path"):
        score(np.ones((10, 4)), q)  # type: ignore[arg-type]
    StoreWriter(tmp_path / "empty", 4, "int8", CONFIG).close()
    with pytest.raises(ValueError, match="store is empty"):
        score(GradientStore(tmp_path / "empty"), q)
    other = _store(tmp_path / "o", np.ones((3, 4), np.float32), np.arange(3), config={**CONFIG, "k": 1})
    with pytest.raises(ValueError, match="preconditioner was fitted on a store with a different config"):
        score(s, q, "influence", preconditioner=fit_preconditioner(other), query_config=CONFIG)
