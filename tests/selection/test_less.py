"""LESS (docs/math.md, "Data selection: LESS"): the Adam feature against a
numpy reference from a real ``lm.train`` checkpoint, batched capture against
batch-1 passes, ``less_scores`` against a brute-force numpy implementation
(in memory, from stores, across two gloo ranks), ``select_top`` ties and
counts, the Hugging Face warm-up callback on a PEFT LoRA model, and the
errors for bad inputs."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import dataprobes as dp  # noqa: E402
from dataprobes.attribution import AdamPreconditioner, GradientCapture, StoreWriter, compress_flat  # noqa: E402
from dataprobes.lm import TinyGPT  # noqa: E402
from dataprobes.selection import (  # noqa: E402
    less_features,
    less_scores,
    less_warmup,
    select_top,
    warmup_subset,
)
from dataprobes.selection.less import lm_losses  # noqa: E402

V, T = 11, 13


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one intra-op thread is fastest on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory):
    """A TinyGPT warmed up by ``less_warmup`` (through ``lm.train``): two
    epoch checkpoints with the Adam moments."""
    p = dp.MarkovChain.random(V, entropy_rate=1.0, seed=3)
    rows = p.sample(80, T, seed=4).astype(np.int64)
    torch.manual_seed(0)
    model = TinyGPT(vocab_size=V, max_len=16, d_model=8, n_layers=1, n_heads=2)
    ck = tmp_path_factory.mktemp("warm")
    w = less_warmup(
        model, rows, p, fraction=0.25, epochs=2, seed=5, checkpoint_dir=ck, batch_size=4, warmup=1, progress=False
    )
    return model, rows, w


def _linear_names(model: torch.nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "head"]


def test_warmup_subset_and_checkpoints(warm) -> None:
    model, rows, w = warm
    np.testing.assert_array_equal(w.indices, warmup_subset(80, 0.25, seed=5))
    assert w.indices.shape == (20,) and np.all(np.diff(w.indices) > 0)
    assert [c.name for c in w.checkpoints] == ["epoch-0.pt", "epoch-1.pt"] and len(w.epoch_lrs) == 2
    assert all(c.is_file() for c in w.checkpoints) and all(lr > 0 for lr in w.epoch_lrs)
    ck = torch.load(w.checkpoints[-1], weights_only=True)
    assert ck["betas"] == (0.9, 0.999)  # LESS's Adam constants in the warm-up too
    assert warmup_subset(100, 0.001).shape == (1,)  # at least one row


def test_warmup_lengths_ignore_padding(tmp_path: Path) -> None:
    """``less_warmup(lengths=...)`` trains on the valid tokens only: two
    different paddings give byte-identical checkpoints (weights and Adam
    moments), and without ``lengths`` the padding changes them."""
    p = dp.MarkovChain.random(V, entropy_rate=1.0, seed=3)
    rows = p.sample(40, T, seed=4).astype(np.int64)
    lengths = np.random.default_rng(1).integers(2, T + 1, 40)
    pads = [rows.copy(), rows.copy()]
    for i, n in enumerate(lengths):
        pads[0][i, n:] = 0
        pads[1][i, n:] = (5 * i + 1) % V

    def run(x: np.ndarray, lens: np.ndarray | None, name: str) -> list[dict]:
        torch.manual_seed(0)
        model = TinyGPT(vocab_size=V, max_len=16, d_model=8, n_layers=1, n_heads=2)
        kw = {"batch_size": 4, "warmup": 1, "progress": False}
        w = less_warmup(model, x, p, fraction=0.5, epochs=2, seed=5, checkpoint_dir=tmp_path / name, lengths=lens, **kw)
        return [torch.load(c, weights_only=True) for c in w.checkpoints]

    a, b, c = run(pads[0], lengths, "a"), run(pads[1], lengths, "b"), run(pads[1], None, "c")
    for ca, cb, cc in zip(a, b, c, strict=True):
        for key in ca["model"]:
            assert torch.equal(ca["model"][key], cb["model"][key]), key
        for i, state in ca["optimizer"]["state"].items():
            other = cb["optimizer"]["state"][i]
            assert torch.equal(state["exp_avg"], other["exp_avg"])
            assert torch.equal(state["exp_avg_sq"], other["exp_avg_sq"])
        assert ca["lr"] == cb["lr"]
        assert any(not torch.equal(ca["model"][key], cc["model"][key]) for key in ca["model"])
    with pytest.raises(ValueError, match="lengths"):
        less_warmup(
            TinyGPT(vocab_size=V, max_len=16, d_model=8, n_layers=1, n_heads=2),
            rows,
            p,
            checkpoint_dir=tmp_path / "d",
            lengths=lengths[:5],
            progress=False,
        )


def test_less_feature_matches_numpy_from_checkpoint(warm) -> None:
    """Γ = m'/sqrt(v'+ε) from the saved (m, v) and batch-1 ``p.grad`` (LESS's
    own way), sketched and normalised, equals ``less_features``."""
    model, rows, w = warm
    x = rows[:5]
    k, seed = 64, 9
    got = less_features(model, w.checkpoints, x, kind="train", k=k, seed=seed, batch_size=5, progress=False)
    names = _linear_names(model)
    pnames = [n for n, _ in model.named_parameters()]
    for path, feats in zip(w.checkpoints, got, strict=True):
        ck = torch.load(path, weights_only=True)
        ref = TinyGPT(vocab_size=V, max_len=16, d_model=8, n_layers=1, n_heads=2)
        ref.load_state_dict(ck["model"])
        state = ck["optimizer"]["state"]
        moments = {pnames[i]: (s["exp_avg"].numpy(), s["exp_avg_sq"].numpy()) for i, s in state.items()}
        flat = []
        for row in x:
            ref.zero_grad()
            xb = torch.from_numpy(row[None])
            lm_losses(ref, xb, torch.tensor([T])).sum().backward()
            parts = []
            for name in names:
                g = dict(ref.named_parameters())[f"{name}.weight"].grad.numpy().astype(np.float64)
                m, v = (a.astype(np.float64) for a in moments[f"{name}.weight"])
                mp_ = 0.9 * m + 0.1 * g
                vp = 0.999 * v + 0.001 * g * g
                parts.append((mp_ / np.sqrt(vp + 1e-8)).ravel())
            flat.append(np.concatenate(parts))
        want = compress_flat(torch.tensor(np.array(flat), dtype=torch.float32), k, seed, normalize=True).numpy()
        np.testing.assert_allclose(feats, want, atol=2e-5)
        assert np.abs(feats - want).max() < 2e-5 and np.abs(want).max() > 0.05


def test_less_preconditioner_formula_and_factored_refusal() -> None:
    rng = np.random.default_rng(0)
    lin = torch.nn.Linear(3, 2, bias=False)
    m = torch.tensor(rng.standard_normal((2, 3)), dtype=torch.float32)
    v = torch.tensor(rng.random((2, 3)), dtype=torch.float32)
    pre = AdamPreconditioner({lin.weight: v}, first_moments={lin.weight: m}, less=True)
    g = torch.tensor(rng.standard_normal((4, 2, 3)), dtype=torch.float32)
    mm, vv = pre.less_moments(lin.weight, "weight")
    want = (0.9 * m.numpy() + 0.1 * g.numpy()) / np.sqrt(0.999 * v.numpy() + 0.001 * g.numpy() ** 2 + 1e-8)
    np.testing.assert_allclose(pre.less_feature(g, mm, vv).numpy(), want, rtol=1e-6)
    with pytest.raises(ValueError, match="mode='flat'"):
        GradientCapture(torch.nn.Sequential(lin), mode="factored", k=2, precondition=pre)
    GradientCapture(torch.nn.Sequential(lin), mode="flat", k=4, precondition=pre)  # accepted
    with pytest.raises(ValueError, match="first_moments"):
        AdamPreconditioner({lin.weight: v}, less=True)
    with pytest.raises(ValueError, match="bias correction"):
        AdamPreconditioner({lin.weight: v}, first_moments={lin.weight: m}, less=True, bias_correction=0.5)
    with pytest.raises(ValueError, match="betas"):
        AdamPreconditioner({lin.weight: v}, first_moments={lin.weight: m}, less=True, betas=(0.9, 1.0))


@pytest.mark.parametrize("kind", ["train", "val"])
def test_batched_capture_equals_batch_one(warm, kind: str) -> None:
    """One batched pass over variable-length, right-padded rows gives the
    per-example features of separate batch-1 passes (LESS issue #42)."""
    model, rows, w = warm
    lengths = np.array([T, 4, 9, 2, 7, 13, 5])
    x = rows[: len(lengths)].copy()
    for i, n in enumerate(lengths):
        x[i, n:] = (i * 3) % V  # padding garbage: must not matter
    kw = {"kind": kind, "k": 48, "lengths": lengths, "progress": False, "backend": "torch"}
    batched = less_features(model, w.checkpoints, x, batch_size=7, **kw)
    single = less_features(model, w.checkpoints, x, batch_size=1, **kw)
    for a, b in zip(batched, single, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
        np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)


def test_features_to_store_and_model_restored(warm, tmp_path: Path) -> None:
    model, rows, w = warm
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kw = {"kind": "val", "k": 16, "progress": False, "backend": "torch"}
    mem = less_features(model, w.checkpoints, rows[:6], **kw)
    stores = less_features(model, w.checkpoints, rows[:6], store_dir=tmp_path, **kw)
    for a, s in zip(mem, stores, strict=True):
        ids, got = s.read()
        np.testing.assert_array_equal(ids, np.arange(6))
        np.testing.assert_allclose(got, a, atol=2e-3)  # float16 store
        assert s.config["extra"]["less"] == "val"
    for k_, v in model.state_dict().items():
        assert torch.equal(v, before[k_])


def test_less_scores_refuses_swapped_stores(warm, tmp_path: Path) -> None:
    """Stores from ``less_features`` record their kind (``extra_config["less"]``):
    train and val passed the wrong way round are refused, the right way scored
    like the in-memory features."""
    model, rows, w = warm
    kw = {"k": 16, "progress": False, "backend": "torch"}
    tr = less_features(model, w.checkpoints, rows[:6], kind="train", store_dir=tmp_path / "tr", **kw)
    va = less_features(model, w.checkpoints, rows[6:9], kind="val", store_dir=tmp_path / "va", **kw)
    assert [s.config["extra"]["less"] for s in tr + va] == ["train"] * 2 + ["val"] * 2
    tr_mem = less_features(model, w.checkpoints, rows[:6], kind="train", **kw)
    va_mem = less_features(model, w.checkpoints, rows[6:9], kind="val", **kw)
    got = less_scores(tr, va, w.epoch_lrs)
    np.testing.assert_allclose(got, less_scores(tr_mem, va_mem, w.epoch_lrs), atol=5e-3)  # float16 stores
    with pytest.raises(ValueError, match=r"train\[0\] is a LESS val store.*swapped"):
        less_scores(va, tr, w.epoch_lrs)
    with pytest.raises(ValueError, match=r"val\[1\] is a LESS train store"):
        less_scores(tr, [va[0], tr[1]], w.epoch_lrs)
    with pytest.raises(ValueError, match=r"train\[0\] is a LESS val store"):
        less_scores([str(s.path) for s in va], va, w.epoch_lrs)


# -- less_scores ---------------------------------------------------------------


def _brute(train: list[np.ndarray], val: list[np.ndarray], w: np.ndarray, tasks: list[list[int]]) -> np.ndarray:
    """The definition, with the full N × M cosine matrix per checkpoint."""
    w = np.asarray(w, np.float64) / np.sum(w)
    total = 0.0
    for wi, a, b in zip(w, train, val, strict=True):
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        na, nb = np.linalg.norm(a64, axis=1), np.linalg.norm(b64, axis=1)
        cos = np.zeros((a64.shape[0], b64.shape[0]))
        for i in range(a64.shape[0]):
            for j in range(b64.shape[0]):
                if na[i] > 0 and nb[j] > 0:
                    cos[i, j] = a64[i] @ b64[j] / (na[i] * nb[j])
        total = total + wi * cos
    return np.max(np.stack([np.mean(total[:, t], axis=1) for t in tasks], axis=1), axis=1)


@st.composite
def _problem(draw):
    c = draw(st.integers(1, 3))
    n = draw(st.integers(1, 25))
    m = draw(st.integers(1, 10))
    dim = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    train = [rng.standard_normal((n, dim)).astype(np.float32) for _ in range(c)]
    val = [rng.standard_normal((m, dim)).astype(np.float32) for _ in range(c)]
    if draw(st.booleans()):
        train[0][rng.integers(0, n)] = 0.0  # a zero row has cosine 0
    tasks = [
        sorted(rng.choice(m, size=draw(st.integers(1, m)), replace=False).tolist())
        for _ in range(draw(st.integers(1, 4)))
    ]
    w = rng.uniform(0.01, 2.0, c)
    return train, val, w, tasks, draw(st.integers(1, 8))


@given(_problem())
def test_less_scores_match_brute_force(problem) -> None:
    train, val, w, tasks, block = problem
    got = less_scores(train, val, w, tasks, block_rows=block)
    np.testing.assert_allclose(got, _brute(train, val, w, tasks), rtol=1e-9, atol=1e-9)
    assert got.dtype == np.float64 and got.shape == (train[0].shape[0],)


def test_less_scores_unequal_subtasks_is_not_equal_reshape() -> None:
    """Unequal subtask sizes: each task's own mean (the reference's reshape
    would need equal sizes)."""
    rng = np.random.default_rng(1)
    tr, va = [rng.standard_normal((9, 4))], [rng.standard_normal((5, 4))]
    tasks = [[0], [1, 2, 3, 4]]
    np.testing.assert_allclose(less_scores(tr, va, [1.0], tasks), _brute(tr, va, np.ones(1), tasks), atol=1e-12)
    eq = np.array([[0, 1], [2, 4]])  # equal sizes may come as one array
    np.testing.assert_allclose(less_scores(tr, va, [1.0], eq), _brute(tr, va, np.ones(1), eq.tolist()), atol=1e-12)
    one = less_scores(tr, va, [3.0])  # None: one task of all rows
    np.testing.assert_allclose(one, _brute(tr, va, np.ones(1), [list(range(5))]), atol=1e-12)


def _write(path: Path, x: np.ndarray, dtype: str) -> None:
    with StoreWriter(path, x.shape[1], dtype, {"k": x.shape[1]}, shard_rows=7) as wr:
        for lo in range(0, x.shape[0], 5):
            wr.append(np.arange(lo, min(lo + 5, x.shape[0])), torch.from_numpy(x[lo : lo + 5]))


@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_less_scores_from_stores(tmp_path: Path, dtype: str) -> None:
    rng = np.random.default_rng(2)
    tr = [rng.standard_normal((40, 12)).astype(np.float32) for _ in range(2)]
    va = [rng.standard_normal((6, 12)).astype(np.float32) for _ in range(2)]
    for i in range(2):
        _write(tmp_path / f"t{i}", tr[i], dtype)
        _write(tmp_path / f"v{i}", va[i], dtype)
    tasks = [[0, 1], [2, 3, 4, 5]]
    got = less_scores([tmp_path / "t0", tmp_path / "t1"], [tmp_path / "v0", tmp_path / "v1"], [2e-5, 1e-5], tasks)
    from dataprobes.attribution import GradientStore

    stored_tr = [GradientStore(tmp_path / f"t{i}").read()[1] for i in range(2)]
    stored_va = [GradientStore(tmp_path / f"v{i}").read()[1] for i in range(2)]
    np.testing.assert_allclose(got, _brute(stored_tr, stored_va, np.array([2e-5, 1e-5]), tasks), atol=1e-9)
    np.testing.assert_allclose(got, _brute(tr, va, np.array([2.0, 1.0]), tasks), atol=2e-2)  # quantisation only


def _dist_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    try:
        tr, va, w, tasks = _dist_problem()
        np.save(Path(out) / f"rank{rank}.npy", less_scores(tr, va, w, tasks, block_rows=4))
    finally:
        dist.destroy_process_group()


def _dist_problem():
    rng = np.random.default_rng(3)
    tr = [rng.standard_normal((23, 5)) for _ in range(2)]
    va = [rng.standard_normal((7, 5)) for _ in range(2)]
    return tr, va, [1.0, 0.5], [[0, 1, 2], [3, 4], [5, 6]]


def test_less_scores_two_ranks(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    mp.spawn(_dist_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    tr, va, w, tasks = _dist_problem()
    want = _brute(tr, va, np.array(w), tasks)
    for r in range(2):
        np.testing.assert_allclose(np.load(tmp_path / f"rank{r}.npy"), want, atol=1e-12)


# -- select_top ------------------------------------------------------------------


def test_select_top_ties_and_counts() -> None:
    s = np.array([0.5, 0.9, 0.5, 0.9, 0.1, 0.5])
    np.testing.assert_array_equal(select_top(s, count=6), [1, 3, 0, 2, 5, 4])
    np.testing.assert_array_equal(select_top(s, count=3), [1, 3, 0])
    np.testing.assert_array_equal(select_top(s, fraction=0.5), [1, 3, 0])
    assert select_top(np.arange(100.0)).tolist() == [99, 98, 97, 96, 95]  # default 5 %
    assert select_top(np.arange(10.0), fraction=0.05).tolist() == [9]  # at least one
    assert select_top(np.arange(39.0), fraction=0.1).shape == (3,)  # floor, as LESS's int(p * N)
    assert select_top(np.array([1, 3, 2])).dtype == np.int64


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"scores": [0.1, np.nan]}, ValueError, "NaN"),
        ({"scores": [0.1, np.inf]}, ValueError, "NaN or infinite"),
        ({"scores": []}, ValueError, "non-empty"),
        ({"scores": [[1.0]]}, ValueError, "1-D"),
        ({"scores": ["a"]}, TypeError, "numeric"),
        ({"scores": [1.0], "count": 2}, ValueError, "count"),
        ({"scores": [1.0], "count": 0}, ValueError, "count"),
        ({"scores": [1.0], "count": 1.0}, TypeError, "count"),
        ({"scores": [1.0], "fraction": 0.0}, ValueError, "fraction"),
        ({"scores": [1.0], "fraction": 1.5}, ValueError, "fraction"),
        ({"scores": [1.0], "fraction": 0.5, "count": 1}, ValueError, "not both"),
    ],
)
def test_select_top_bad_inputs(kwargs, exc, match) -> None:
    scores = kwargs.pop("scores")
    with pytest.raises(exc, match=match):
        select_top(scores, **kwargs)


def test_less_scores_bad_inputs() -> None:
    rng = np.random.default_rng(4)
    tr = [rng.standard_normal((5, 3)) for _ in range(2)]
    va = [rng.standard_normal((4, 3)) for _ in range(2)]
    w = [1.0, 1.0]
    nan = [tr[0].copy(), tr[1]]
    nan[0][2, 1] = np.nan
    cases = [
        ((nan, va, w, None), ValueError, r"train\[0\] row 2 has NaN"),
        ((tr, va, w, [[0, 1], []]), ValueError, r"subtasks\[1\] is empty"),
        ((tr, va, w, [[0, 9]]), ValueError, "outside"),
        ((tr, va, w, []), ValueError, "subtasks must not be empty"),
        ((tr, va, w, [0, 1]), TypeError, r"subtasks\[0\]"),
        ((tr, va[:1], w, None), ValueError, "2 checkpoints but val has 1"),
        ((tr, va, [1.0], None), ValueError, "one weight per checkpoint"),
        ((tr, va, [1.0, 0.0], None), ValueError, "> 0"),
        ((tr, va, [1.0, -2.0], None), ValueError, "> 0"),
        ((tr, va, [1.0, np.nan], None), ValueError, "finite"),
        ((tr, va, "ab", None), TypeError, "lr_weights"),
        ((tr, [va[0], va[1][:, :2]], w, None), ValueError, "dim"),
        ((tr, [va[0], va[1][:3]], w, None), ValueError, "different numbers of rows"),
        ((tr[0], va, w, None), TypeError, "one store or array per checkpoint"),
        (([], [], [], None), ValueError, "must not be empty"),
        (([np.zeros((0, 3))], [va[0]], [1.0], None), ValueError, "no rows"),
        (([tr[0].astype(int)], [va[0]], [1.0], None), TypeError, r"train\[0\] must be a float array"),
        (([tr[0]], [va[0] > 0], [1.0], None), TypeError, r"val\[0\] must be a float array"),
        (([tr[0]], [va[0].ravel()[None, None]], [1.0], None), ValueError, "2-D"),
        (([object()], [va[0]], [1.0], None), TypeError, "GradientStore"),
    ]
    for args, exc, match in cases:
        with pytest.raises(exc, match=match):
            less_scores(*args)
    with pytest.raises(ValueError, match="distributed=True"):
        less_scores(tr, va, w, distributed=True)
    with pytest.raises(ValueError, match="block_rows"):
        less_scores(tr, va, w, block_rows=0)


def test_less_features_bad_inputs(warm) -> None:
    model, rows, w = warm
    with pytest.raises(ValueError, match="kind"):
        less_features(model, w.checkpoints, rows[:2], kind="test", progress=False)
    with pytest.raises(TypeError, match="checkpoints"):
        less_features(model, w.checkpoints[0], rows[:2], progress=False)
    with pytest.raises(ValueError, match="checkpoints must not be empty"):
        less_features(model, [], rows[:2], progress=False)
    with pytest.raises(ValueError, match="lengths"):
        less_features(model, w.checkpoints, rows[:2], lengths=[1, 3], k=8, progress=False)
    with pytest.raises(ValueError, match="rows"):
        less_features(model, w.checkpoints, rows[0], k=8, progress=False)
    with pytest.raises(TypeError, match="model"):
        less_features("gpt", w.checkpoints, rows[:2], progress=False)
    with pytest.raises(ValueError, match="fraction"):
        less_warmup(model, rows, dp.IID(np.full(V, 1 / V)), fraction=0.0, checkpoint_dir="x")


# -- Hugging Face warm-up ----------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")
def test_trainer_callback_lora_checkpoints(tmp_path: Path) -> None:
    """A tiny GPT-2 built from a config with a PEFT LoRA adapter, trained two
    epochs by a ``Trainer``: one checkpoint per epoch with the Adam moments of
    the LoRA parameters, the epochs' mean learning rates, and LESS features
    computed from them."""
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    from dataprobes.selection import less_trainer_callback

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=V, n_positions=16, n_embd=8, n_layer=1, n_head=2)
    base = transformers.GPT2LMHeadModel(cfg)
    model = peft.get_peft_model(
        base, peft.LoraConfig(r=2, lora_alpha=4, target_modules=["c_attn"], lora_dropout=0.0, fan_in_fan_out=True)
    )
    rows = np.random.default_rng(0).integers(0, V, (8, T))

    class Rows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(rows)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            x = torch.from_numpy(rows[i])
            return {"input_ids": x, "labels": x}

    cb = less_trainer_callback(tmp_path / "ck")
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        num_train_epochs=2,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        logging_strategy="no",
        disable_tqdm=True,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Rows(), callbacks=[cb])
    trainer.train()
    assert [p.name for p in cb.checkpoints] == ["epoch-0.pt", "epoch-1.pt"]
    # linear decay from 1e-3 over 8 steps, lr read before each step: epochs average steps 0-3 and 4-7
    want = [1e-3 * np.mean([1 - s / 8 for s in range(a, a + 4)]) for a in (0, 4)]
    np.testing.assert_allclose(cb.epoch_lrs, want, rtol=1e-6)
    ck = torch.load(cb.checkpoints[-1], weights_only=True)
    lora = [n for n, p in model.named_parameters() if p.requires_grad]
    assert set(ck["model"]) == set(lora) and sorted(ck["param_names"]) == sorted(lora)
    opt = trainer.optimizer
    live = {id(p): s for p, s in opt.state.items()}
    named = dict(model.named_parameters())
    for i, name in enumerate(ck["param_names"]):
        torch.testing.assert_close(ck["optimizer"]["state"][i]["exp_avg"], live[id(named[name])]["exp_avg"])
    kw = {"kind": "train", "k": 32, "progress": False, "backend": "torch"}
    feats = less_features(model, cb.checkpoints, rows[:4], batch_size=4, **kw)
    single = less_features(model, cb.checkpoints, rows[:4], batch_size=1, **kw)
    for a, b in zip(feats, single, strict=True):
        assert a.shape == (4, 32) and np.isfinite(a).all()
        np.testing.assert_allclose(a, b, atol=1e-6)
