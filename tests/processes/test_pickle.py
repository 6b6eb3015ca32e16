"""Every process pickles, deep-copies and saves by its exact law: rebuilt
bit-identical (same samples for every seed, same scores)."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

import dataprobes as dp


def _processes() -> dict[str, dp.Process]:
    chain = dp.MarkovChain.random(12, 2, seed=1)
    hmm = dp.HMM.random(4, 12, seed=2)
    return {
        "markov": chain,
        "markov_initial": dp.MarkovChain([[0.3, 0.7], [0.1, 0.9]], initial=[0.5, 0.5]),
        "markov_normalized": dp.MarkovChain([[3.0, 7.0], [1.0, 9.0]], normalize=True),
        "iid": dp.IID.random(12, entropy_rate=1.5, seed=3),
        "hmm": hmm,
        "hmm_initial": dp.HMM(hmm.transition, hmm.emission, [0.1, 0.2, 0.3, 0.4]),
        "incontext": dp.InContextMarkov(12, 1, 0.5),
        "mixture": dp.Mixture([chain, hmm], [0.2, 0.8]),
        "mixture_uniform": dp.Mixture([chain, dp.IID.random(12, seed=4)]),
        "duplicated": dp.Duplicated(chain, 0.3),
        "noise": dp.TokenNoise(hmm, 0.1),
    }


def _assert_same(p: dp.Process, q: dp.Process) -> None:
    assert type(q) is type(p)
    for seed in (0, 7):
        x = p.sample(16, 24, seed=seed, start=5)
        np.testing.assert_array_equal(q.sample(16, 24, seed=seed, start=5), x)
        np.testing.assert_array_equal(q.log_prob(x), p.log_prob(x))
        np.testing.assert_array_equal(q.token_log_probs(x), p.token_log_probs(x))
    np.testing.assert_array_equal(q.typicality(x).z, p.typicality(x).z)
    assert float(q.entropy_rate()) == float(p.entropy_rate())


@pytest.mark.parametrize("name", list(_processes()))
def test_pickle_and_deepcopy_round_trip(name: str) -> None:
    p = _processes()[name]
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        _assert_same(p, pickle.loads(pickle.dumps(p, protocol=protocol)))
    _assert_same(p, copy.deepcopy(p))


@pytest.mark.parametrize("name", list(_processes()))
def test_save_and_load_round_trip(name: str, tmp_path: Path) -> None:
    p = _processes()[name]
    p.save(tmp_path / "law")  # no suffix added: the file is where it was asked
    q = dp.Process.load(tmp_path / "law")
    _assert_same(p, q)
    assert type(q).load(tmp_path / "law").vocab_size == p.vocab_size
    with np.load(tmp_path / "law", allow_pickle=False) as archive:  # no pickled objects inside
        assert "dataprobes_process" in archive.files


def test_the_law_is_kept_as_given_not_as_the_callers_array() -> None:
    t = np.array([[0.3, 0.7], [0.1, 0.9]])
    chain = dp.MarkovChain(t)
    x = chain.sample(50, 20, seed=1)
    t[:] = [[0.9, 0.1], [0.9, 0.1]]  # the caller reuses their array afterwards
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(chain)).sample(50, 20, seed=1), x)


def test_load_checks_the_class_and_the_file(tmp_path: Path) -> None:
    dp.IID([0.5, 0.5]).save(tmp_path / "iid.npz")
    assert isinstance(dp.IID.load(tmp_path / "iid.npz"), dp.IID)
    with pytest.raises(TypeError, match="holds a IID, not a MarkovChain"):
        dp.MarkovChain.load(tmp_path / "iid.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="holds no saved dataprobes process"):
        dp.Process.load(tmp_path / "other.npz")

    class Custom(dp.IID):
        pass

    with pytest.raises(TypeError, match="cannot save a Custom"):
        Custom([0.5, 0.5]).save(tmp_path / "custom.npz")


def test_cli_process_file_loads_the_exact_process(tmp_path: Path) -> None:
    from dataprobes.cli import main

    out = tmp_path / "data.npy"
    argv = ["generate", "markov", "--vocab-size", "9", "--order", "2", "-n", "40", "-T", "30", "--seed", "5"]
    assert main([*argv, "--process-seed", "3", "--out", str(out), "--no-progress"]) == 0
    process = dp.Process.load(str(out) + ".process.npz")
    assert isinstance(process, dp.MarkovChain) and process.order == 2
    np.testing.assert_array_equal(np.load(out), process.sample(40, 30, seed=5))
    # a file written before the exact description existed: its readable table
    with np.load(str(out) + ".process.npz") as archive:
        legacy = {"transition": archive["transition"], "config": archive["config"]}
    np.savez(tmp_path / "legacy.npz", **legacy)
    old = dp.Process.load(tmp_path / "legacy.npz")
    assert isinstance(old, dp.MarkovChain) and old.order == json.loads(str(legacy["config"]))["order"]
    np.testing.assert_allclose(old.transition, process.transition, rtol=1e-15)
