"""Capture → store → score end to end: a plain loop with resume, two gloo
ranks capturing one logical store, and the Hugging Face Trainer callback."""

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

import dataprobes as dp  # noqa: E402
from dataprobes.attribution import (  # noqa: E402
    GradientCapture,
    GradientStore,
    capture_batches,
    capture_config,
    capture_to_store,
    score,
)
from dataprobes.lm import TinyGPT  # noqa: E402

V, T, N, B = 12, 16, 40, 8


def _model() -> TinyGPT:
    torch.manual_seed(0)
    return TinyGPT(vocab_size=V, max_len=T, d_model=16, n_layers=1, n_heads=2)


def _loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    logits = model(x[:, :-1])
    return torch.nn.functional.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none").mean(1)


def _data() -> torch.Tensor:
    mix = dp.Mixture([dp.MarkovChain.random(V, seed=1), dp.MarkovChain.random(V, seed=2)])
    return torch.from_numpy(mix.sample(N, T, seed=3).astype(np.int64))


def _batches(ids: np.ndarray, x: torch.Tensor):
    for i in range(0, len(ids), B):
        yield ids[i : i + B], x[ids[i : i + B]]


def _capture(model: torch.nn.Module) -> GradientCapture:
    return GradientCapture(model, mode="factored", k_in=4, k_out=4, seed=5)


def test_capture_to_store_matches_direct_capture_and_resumes(tmp_path: Path) -> None:
    model, x = _model(), _data()
    ids = np.arange(N)
    direct = np.concatenate([g.numpy() for _, g in capture_batches(_capture(model), _loss, _batches(ids, x))])
    # an interrupted run: only the first half was captured ...
    capture_to_store(_capture(model), _loss, _batches(ids[: N // 2], x), tmp_path / "s", dtype="float16", shard_rows=8)
    # ... resumed over the whole data set: nothing is lost or duplicated
    calls = []

    def counting_loss(m: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
        calls.append(len(batch))
        return _loss(m, batch)

    store = capture_to_store(
        _capture(model), counting_loss, _batches(ids, x), tmp_path / "s", dtype="float16", shard_rows=8
    )
    # fully stored batches are skipped without a forward pass; the batch that
    # straddles the interruption (ids 16..23) runs and writes only 20..23
    assert calls == [8, 8, 8]
    assert len(store) == N and sorted(store.ids.tolist()) == ids.tolist()
    got = store.lookup(ids)
    np.testing.assert_allclose(got, direct, atol=2e-3)  # float16 storage
    top = score(store, direct[:3], "cosine", top_k=1, query_config=capture_config(_capture(model)))
    np.testing.assert_array_equal(top.ids[:, 0], [0, 1, 2])
    with pytest.raises(ValueError, match="seed"):
        score(
            store,
            direct[:3],
            "cosine",
            query_config=capture_config(GradientCapture(model, mode="factored", k_in=4, k_out=4, seed=6)),
        )


def test_queries_are_checked_against_the_store_config(tmp_path: Path) -> None:
    model, x = _model(), _data()
    cap = _capture(model)
    assert cap.config == capture_config(cap) and "extra" not in cap.config
    assert capture_config(cap, {"data": "train"}) == {**cap.config, "extra": {"data": "train"}}
    store = capture_to_store(cap, _loss, _batches(np.arange(N), x), tmp_path / "s")
    assert store.config == cap.config
    with GradientCapture(model, mode="factored", k_in=4, k_out=4, seed=5) as qcap:
        q = qcap.backward(_loss(model, x[:3]))
    # the easy path is the safe one: the capture that made the queries
    top = score(store, q, "cosine", top_k=1, capture=qcap)
    np.testing.assert_array_equal(top.ids[:, 0], [0, 1, 2])
    np.testing.assert_array_equal(score(store, q, "cosine", top_k=1, query_config=capture_config(qcap)).ids, top.ids)
    # forgetting the config is refused, with the way out in the message
    with pytest.raises(ValueError, match=r"bare array.*capture=.*query_config=.*check_config=False"):
        score(store, q, "cosine", top_k=1)
    np.testing.assert_array_equal(score(store, q, "cosine", top_k=1, check_config=False).ids, top.ids)
    # a query capture configured differently cannot be scored silently
    other = GradientCapture(model, mode="factored", k_in=4, k_out=4, seed=6)
    with pytest.raises(
        ValueError, match=r"query_config differs from the store's capture config in keys: seed \(6 vs 5\)"
    ):
        score(store, q, "cosine", capture=other)
    with pytest.raises(ValueError, match="not both"):
        score(store, q, capture=qcap, query_config=capture_config(qcap))
    with pytest.raises(ValueError, match="check_config=False"):
        score(store, q, capture=qcap, check_config=False)
    with pytest.raises(TypeError, match="capture must be the GradientCapture"):
        score(store, q, capture=capture_config(qcap))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="check_config"):
        score(store, q, capture=qcap, check_config="no")  # type: ignore[arg-type]


def test_gaussian_stores_keep_reading_and_scoring(tmp_path: Path) -> None:
    # a store captured when "gaussian" was the default records it; its config
    # then had exactly the keys of today's gaussian capture (no digest)
    model, x = _model(), _data()
    gauss = GradientCapture(model, mode="factored", k_in=4, k_out=4, seed=5, projection="gaussian")
    old = {**gauss.config}
    assert old["projection"] == "gaussian" and "projection_sha256" not in old
    capture_to_store(gauss, _loss, _batches(np.arange(N), x), tmp_path / "old")
    store = GradientStore(tmp_path / "old")  # reopened as a reader would
    assert store.config == old and len(store) == N
    with GradientCapture(model, mode="factored", k_in=4, k_out=4, seed=5, projection="gaussian") as qcap:
        q = qcap.backward(_loss(model, x[:3]))
    np.testing.assert_array_equal(score(store, q, "cosine", top_k=1, capture=qcap).ids[:, 0], [0, 1, 2])
    # queries captured with today's default cannot be mixed in silently
    with pytest.raises(ValueError, match=r"projection \('orthogonal' vs 'gaussian'\)"):
        score(store, q, "cosine", capture=_capture(model))


def _worker(rank: int, world: int, port: int, root: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    try:
        ids = np.arange(N)
        mine = ids[ids % world == rank]
        capture_to_store(_capture(_model()), _loss, _batches(mine, _data()), root, shard_rows=8)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_distributed_capture_equals_single_process(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "dist")), nprocs=2, join=True)
    single = capture_to_store(
        _capture(_model()), _loss, _batches(np.arange(N), _data()), tmp_path / "single", shard_rows=8
    )
    merged = GradientStore(tmp_path / "dist")
    assert merged.ranks == [0, 1]
    np.testing.assert_allclose(merged.lookup(single.ids), single.read()[1], atol=1e-6)
    queries = single.read()[1][:4]
    for method in ("cosine", "ip", "influence"):
        cap = _capture(_model())
        a, b = (
            score(single, queries, method, top_k=10, capture=cap),
            score(merged, queries, method, top_k=10, capture=cap),
        )
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)


def test_trainer_callback(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(vocab_size=V, n_positions=T, n_embd=16, n_layer=1, n_head=2)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg)
    x = _data()

    class DS(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return N

        def __getitem__(self, i: int) -> dict:
            return {"input_ids": x[i], "labels": x[i]}

    def hf_loss(m: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
        logits = m(batch[:, :-1]).logits
        return torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch[:, 1:], reduction="none").mean(1)

    from dataprobes.attribution import attribution_callback

    cb = attribution_callback(
        hf_loss,
        lambda: _batches(np.arange(16), x),
        tmp_path / "ckpt",
        {"mode": "flat", "k": 64, "seed": 0},
        every_n_steps=2,
    )
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=4,
        per_device_train_batch_size=4,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
    )
    transformers.Trainer(model=model, args=args, train_dataset=DS(), callbacks=[cb]).train()
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert names == ["step-00000002", "step-00000004"]
    for name in names:
        st = GradientStore(tmp_path / "ckpt" / name)
        assert len(st) == 16 and st.dim == 64
