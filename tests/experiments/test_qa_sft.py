"""The QA-SFT study on fact worlds: end to end on tiny configs, resume,
determinism, the QA format's absence from pretraining, a planted-knowledge
law (SFT lifts QA on known facts; never-stated facts stay at chance) and
config validation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

pytest.importorskip("torch")

from dataprobes.experiments import QASFTConfig, QASFTResult, run_qa_sft  # noqa: E402

#: A micro run: enough to exercise every path, not to learn facts.
MICRO = {
    "num_facts": 20,
    "num_relations": 2,
    "num_templates": 2,
    "background_vocab": 3,
    "unseen_fraction": 0.2,
    "d_model": 16,
    "n_heads": 2,
    "pretrain_steps": 6,
    "batch_size": 4,
    "seq_len": 16,
    "sft_steps": 3,
    "sft_batch_size": 4,
    "ns": (2, 4, "all"),
    "test_fraction": 0.5,
    "seeds": (0, 1),
}

#: Planted knowledge: 12 facts stated often enough to be memorised under
#: every template, 12 never stated, 40 objects (chance 1/40).
PLANTED = {
    "num_facts": 24,
    "num_relations": 2,
    "num_objects": 40,
    "num_templates": 6,
    "exposure": "uniform",
    "unseen_fraction": 0.5,
    "statement_prob": 0.9,
    "d_model": 64,
    "n_heads": 2,
    "pretrain_steps": 300,
    "pretrain_lr": 1e-2,
    "batch_size": 16,
    "seq_len": 24,
    "sft_steps": 100,
    "sft_lr": 1e-3,
    "ns": (4, "all"),
    "test_fraction": 0.5,
    "seeds": (0,),
}


@pytest.fixture(scope="module")
def torch_one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def micro(tmp_path_factory, torch_one_thread):
    out = tmp_path_factory.mktemp("micro")
    return run_qa_sft(QASFTConfig(**MICRO), out_dir=out, progress=False), out


def same(a: QASFTResult, b: QASFTResult) -> None:
    for name in ("accuracy", "unseen_accuracy", "confident_wrong", "wrong_confidence", "n_used", "bucket_counts"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for la, lb in zip(a.levels, b.levels, strict=True):
        np.testing.assert_array_equal(la, lb)


def test_micro_end_to_end(micro, tmp_path):
    res, out = micro
    cfg = res.config
    s, nb, nn = len(cfg.seeds), cfg.num_buckets, len(cfg.ns)
    assert res.accuracy.shape == (s, nb, nn, nb) and res.n_used.shape == (s, nb, nn)
    # every fact lands in one bucket; test + pool + controls = bucket sizes
    assert (res.bucket_counts.sum(1) == cfg.num_facts).all()
    unseen = round(cfg.unseen_fraction * cfg.num_facts)
    assert ((res.test_counts + res.pool_counts).sum(1) == cfg.num_facts - unseen).all()
    # n_used: the grid value, the pool for "all", 0 when the pool is too small
    for si in range(s):
        for lv in range(nb):
            pool = res.pool_counts[si, lv]
            want = [n if pool >= n else 0 for n in (2, 4)] + [pool]
            assert res.n_used[si, lv].tolist() == want
    # NaN exactly where not run or the test level is empty
    ran = res.n_used > 0
    has_test = res.test_counts[:, None, None, :] > 0
    assert np.array_equal(~np.isnan(res.accuracy), ran[..., None] & has_test)
    ok = ~np.isnan(res.accuracy)
    assert ((res.accuracy[ok] >= 0) & (res.accuracy[ok] <= 1)).all()
    assert (res.confident_wrong[ok] <= 1 - res.accuracy[ok] + 1e-12).all()
    # files: config, world, pretrained model, one record per run
    assert json.loads((out / "config.json").read_text())["config"] == {**cfg.to_dict(), "seeds": None}
    for seed in cfg.seeds:
        assert (out / f"seed-{seed}" / "pretrained.pt").exists()
        assert len(list((out / f"seed-{seed}").glob("sft-*.json"))) == int(
            (res.n_used[cfg.seeds.index(seed)] > 0).sum()
        )
    # the saved world is the config's world
    import dataprobes as dp

    w = dp.FactWorld.load(out / "seed-0" / "world.npz")
    np.testing.assert_array_equal(w.sample(3, 10, seed=5), cfg.world(0).sample(3, 10, seed=5))
    # reports
    table = res.to_table()
    assert "Data-efficiency" in table and "N=all" in table
    json.dumps(res.to_dict())  # NaN-free JSON
    png = res.plot(tmp_path / "qa.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_resume_is_identical_and_skips_work(micro, monkeypatch):
    res, out = micro
    from dataprobes.experiments import qa_sft

    def boom(*a, **k):
        raise AssertionError("a resumed run must not fine-tune again")

    monkeypatch.setattr(qa_sft, "_sft", boom)
    same(run_qa_sft(res.config, out_dir=out, progress=False), res)


def test_partial_resume_matches(micro, tmp_path):
    """A run cut after the pretrained checkpoint and some records resumes to the same result."""
    res, out = micro
    import shutil

    part = tmp_path / "part"
    shutil.copytree(out, part)
    for i, rec in enumerate(sorted(part.glob("seed-*/sft-*.json"))):
        if i % 2:
            rec.unlink()
    (part / "seed-1" / "pretrained.pt").unlink()
    same(run_qa_sft(res.config, out_dir=part, progress=False), res)


def test_more_seeds_reuse_the_seeds_done(micro, monkeypatch):
    """Adding a seed in the same directory runs only the new seed; the old ones load."""
    res, out = micro
    import shutil

    from dataprobes.experiments import qa_sft

    calls = []
    real = qa_sft._sft
    monkeypatch.setattr(qa_sft, "_sft", lambda m, w, f, c, key: calls.append(key[0]) or real(m, w, f, c, key))
    more = out.parent / "more"
    shutil.copytree(out, more)
    res3 = run_qa_sft(QASFTConfig(**{**MICRO, "seeds": (0, 1, 2)}), out_dir=more, progress=False)
    assert set(calls) == {2}
    np.testing.assert_array_equal(res3.accuracy[:2], res.accuracy)


def test_deterministic_without_out_dir(micro):
    res, _ = micro
    same(run_qa_sft(res.config, progress=False), res)


def test_other_config_in_same_dir_is_an_error(micro):
    res, out = micro
    with pytest.raises(ValueError, match="another config"):
        run_qa_sft(QASFTConfig(**{**MICRO, "sft_steps": 4}), out_dir=out, progress=False)


@given(seed=st.integers(0, 2**32), n=st.integers(1, 64))
def test_qa_format_never_in_pretraining(seed, n):
    cfg = QASFTConfig(**{**MICRO, "seeds": (seed,)})
    world = cfg.world(seed)
    qa = world.token_ranges["qa"]
    x = world.sample(n, cfg.seq_len, seed=seed, start=seed % 1000)
    assert not ((x >= qa.start) & (x < qa.stop)).any()
    q, a = world.qa_tokens()
    assert (q[:, 0] == qa.start).all() and (q[:, 3] == qa.start + 1).all() and (a[:, 1] == qa.start + 2).all()


def test_exposure_counts_law():
    cfg = QASFTConfig(**{**MICRO, "num_facts": 200, "exposure": "loguniform", "exposure_range": 30.0})
    c = cfg.exposure_counts(3)
    stated = c[c > 0]
    assert (c == 0).sum() == 40 and stated.min() >= 1 and stated.max() <= 30
    # log-uniform: log counts uniform on [0, log 30] (KS test, fixed seed)
    assert stats.kstest(np.log(stated) / math.log(30), "uniform").pvalue > 1e-3
    np.testing.assert_array_equal(cfg.exposure_counts(3), c)
    z = QASFTConfig(**{**MICRO, "exposure": "zipf", "unseen_fraction": 0.0}).exposure_counts(0)
    np.testing.assert_allclose(z, (np.arange(20) + 1.0) ** -1.0)


def test_planted_knowledge_sft_lifts_known_facts_only(torch_one_thread):
    """A model pretrained long on a tiny world knows its stated facts (level
    1); SFT on a few of them lifts held-out known facts far above chance,
    while never-stated facts stay at chance by construction: their objects
    are uniform and independent of everything the model saw, so the hits are
    Binomial(n, 1/O) whatever the model (we assert a bound with tail
    probability < 1e-3)."""
    cfg = QASFTConfig(**PLANTED)
    res = run_qa_sft(cfg, progress=False)
    levels = res.levels[0]
    world = cfg.world(0)
    stated = world.exposure > 0
    assert (levels[stated] == 1.0).sum() >= 8  # most stated facts fully known
    top = cfg.num_buckets - 1
    j = cfg.n_labels.index("all")
    acc_known = res.accuracy[0, top, j, top]
    assert res.test_counts[0, top] >= 3 and acc_known >= 0.5 > 10 * res.chance
    n_unseen = int((~stated).sum())
    bound = int(stats.binom.isf(1e-3, n_unseen, res.chance))
    for lv in range(cfg.num_buckets):
        for jj in range(len(cfg.ns)):
            u = res.unseen_accuracy[0, lv, jj]
            if not np.isnan(u):
                assert round(u * n_unseen) <= bound


@pytest.mark.parametrize(
    ("change", "exc", "match"),
    [
        ({"num_facts": 1}, ValueError, "num_facts"),
        ({"num_facts": 2.5}, TypeError, "num_facts"),
        ({"exposure": "normal"}, ValueError, "exposure"),
        ({"exposure": 3}, TypeError, "exposure"),
        ({"exposure_range": 0.5}, ValueError, "exposure_range"),
        ({"unseen_fraction": 1.0}, ValueError, "unseen_fraction"),
        ({"unseen_fraction": float("nan")}, ValueError, "unseen_fraction"),
        ({"d_model": 15}, ValueError, "n_heads"),
        ({"edges": (0.0, 0.5)}, ValueError, "edges"),
        ({"edges": (0.0, 0.5, 0.4, 1.0)}, ValueError, "edges"),
        ({"edges": "0,1"}, TypeError, "edges"),
        ({"test_fraction": 1.0}, ValueError, "test_fraction"),
        ({"ns": ()}, ValueError, "ns"),
        ({"ns": (0,)}, ValueError, "ns"),
        ({"ns": (15, 0)}, ValueError, r"ns\[1\] must be >= 1"),  # regression: the message said ns[i]
        ({"ns": ("most",)}, ValueError, "ns"),
        ({"ns": (5, 5)}, ValueError, "ns"),
        ({"ns": 60}, TypeError, "ns"),
        ({"seeds": 0}, TypeError, "seeds"),
        ({"seeds": ()}, ValueError, "seeds"),
        ({"seeds": (-1,)}, ValueError, "seeds"),
        ({"seeds": (0, -1)}, ValueError, r"seeds\[1\]"),
        ({"sft_lr": 0.0}, ValueError, "sft_lr"),
        ({"confidence": 1.0}, ValueError, "confidence"),
        ({"template_coverage": 0}, ValueError, "template_coverage"),
        ({"template_coverage": 99}, ValueError, "template_coverage"),
        ({"template_coverage": 2.0}, TypeError, "template_coverage"),
    ],
)
def test_bad_config(change, exc, match):
    with pytest.raises(exc, match=match):
        QASFTConfig(**{**MICRO, **change})


def test_bad_run_arguments(micro, tmp_path):
    res, _ = micro
    with pytest.raises(TypeError, match="config"):
        run_qa_sft({"num_facts": 10})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="out_dir"):
        run_qa_sft(res.config, out_dir=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="progress"):
        run_qa_sft(res.config, progress="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must be"):
        res.matrix(7)
    with pytest.raises(ValueError, match="what"):
        res.matrix(2, what="loss")
    with pytest.raises(ValueError, match="train_level"):
        res.curve(9)


def test_config_round_trip_and_lazy_import():
    cfg = QASFTConfig(**{**MICRO, "edges": [0.0, 0.5, 1.0]})
    assert cfg.edges == (0.0, 0.5, 1.0) and cfg.num_buckets == 2
    assert QASFTConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert "template_coverage" not in cfg.to_dict()  # default configs describe themselves as before
    cov = QASFTConfig(**{**MICRO, "template_coverage": 1})
    assert QASFTConfig.from_dict(json.loads(json.dumps(cov.to_dict()))) == cov
    assert cov.to_dict()["template_coverage"] == 1
    mask = np.asarray(cov.world(3).template_mask)
    assert mask.shape == (cov.num_facts, cov.num_templates) and (mask.sum(1) == 1).all()
    assert np.asarray(cfg.world(3).template_mask).all()
    import subprocess
    import sys

    code = "import sys, dataprobes.experiments as e; e.QASFTConfig(); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_qa_sft(monkeypatch, tmp_path, capsys, torch_one_thread):
    from dataprobes import cli

    assert cli.main(["experiment", "qa-sft", "--quick", "--seeds", "a,b"]) == 2
    assert "--seeds" in capsys.readouterr().err
    small = {k: v for k, v in MICRO.items() if k != "seeds"}
    monkeypatch.setattr(QASFTConfig, "quick", classmethod(lambda cls, **kw: cls(**{**small, **kw})))
    args = ["experiment", "qa-sft", "--quick", "--seeds", "3", "--out-dir", str(tmp_path / "o")]
    assert cli.main([*args, "--plot", str(tmp_path / "f.png")]) == 0
    assert "Data-efficiency" in capsys.readouterr().out and (tmp_path / "f.png").exists()
    assert cli.main([*args, "--json"]) == 0  # resumed from the directory
    assert json.loads(capsys.readouterr().out)["config"]["seeds"] == [3]


def test_cli_set_overrides(monkeypatch, capsys):
    """--set FIELD=VALUE reaches the config (JSON values, lists as tuples); bad
    pairs and unknown fields are clear errors (exit 2)."""
    from dataprobes import cli

    seen = {}

    def fake_run(cfg, **kw):
        seen["cfg"] = cfg
        raise ValueError("stop here")

    monkeypatch.setattr("dataprobes.experiments.qa_sft.run_qa_sft", fake_run)
    sets = ["--set", "num_facts=321", "--set", "template_coverage=3", "--set", 'ns=[15, "all"]']
    assert cli.main(["experiment", "qa-sft", *sets]) == 2
    cfg = seen["cfg"]
    assert (cfg.num_facts, cfg.template_coverage, cfg.ns) == (321, 3, (15, "all"))
    assert cfg.pretrain_steps == QASFTConfig().pretrain_steps
    assert cli.main(["experiment", "qa-sft", "--quick", "--set", "num_facts=99"]) == 2
    assert seen["cfg"].num_facts == 99 and seen["cfg"].sft_steps == QASFTConfig.quick().sft_steps
    capsys.readouterr()
    assert cli.main(["experiment", "qa-sft", "--set", "bogus=1"]) == 2
    assert "unknown field 'bogus'" in capsys.readouterr().err
    assert cli.main(["experiment", "qa-sft", "--set", "seeds=[1]"]) == 2  # a field, not unknown: use --seeds
    err = capsys.readouterr().err
    assert "--seeds" in err and "unknown" not in err
    assert cli.main(["experiment", "qa-sft", "--set", "num_facts"]) == 2
    assert "FIELD=VALUE" in capsys.readouterr().err
    assert cli.main(["experiment", "qa-sft", "--set", "num_facts=-4"]) == 2
    assert "num_facts" in capsys.readouterr().err


def test_quick_preset():
    assert QASFTConfig().sft_steps == 150  # the BENCHMARKS.md run
    cfg = QASFTConfig.quick(seeds=(4,))
    assert cfg.seeds == (4,) and cfg.ns == (15, 60, "all") and cfg.num_facts == 120


@given(
    buckets=st.lists(st.integers(0, 4), min_size=1, max_size=60),
    frac=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**63),
    data=st.data(),
)
def test_split_partitions_each_bucket(buckets, frac, seed, data):
    """Per bucket, test and pool are disjoint, cover the bucket's stated facts,
    the test share is round(frac * size), and the split is a function of the seed."""
    from dataprobes.experiments.qa_sft import _split

    b = np.array(buckets)
    unseen = np.array(data.draw(st.lists(st.booleans(), min_size=len(b), max_size=len(b))))
    cfg = QASFTConfig(**{**MICRO, "test_fraction": frac})
    pools, tests = _split(cfg, seed, b, unseen)
    for k in range(cfg.num_buckets):
        members = set(np.flatnonzero((b == k) & ~unseen).tolist())
        p, t = set(pools[k].tolist()), set(tests[k].tolist())
        assert not p & t and p | t == members and len(t) == round(frac * len(members))
    again = _split(cfg, seed, b, unseen)
    assert all(np.array_equal(x, y) for x, y in zip(pools + tests, again[0] + again[1], strict=True))


@given(
    st.lists(st.lists(st.one_of(st.floats(0, 1), st.just(math.nan)), min_size=3, max_size=3), min_size=1, max_size=4)
)
def test_nanstats_matches_numpy(rows):
    from dataprobes.experiments.qa_sft import _nanstats

    a = np.array(rows)
    mean, sd = _nanstats(a)
    for j in range(a.shape[1]):
        col = a[:, j][~np.isnan(a[:, j])]
        if col.size:
            assert mean[j] == pytest.approx(col.mean()) and sd[j] == pytest.approx(col.std(), abs=1e-12)
        else:
            assert np.isnan(mean[j]) and np.isnan(sd[j])
