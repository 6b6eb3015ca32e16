"""The ``dataprobes generate`` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dataprobes as dp
from dataprobes.cli import main


def test_generate_markov_writes_exact_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "probe.npy"
    args = ["generate", "markov", "--vocab-size", "20", "--entropy-rate", "1.5", "--process-seed", "3"]
    args += ["-n", "50", "-T", "64", "--seed", "9", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "exact entropy rate: 1.500000 nats/token" in text
    assert "eps-typical" in text
    data = np.load(out)
    chain = dp.MarkovChain.random(20, entropy_rate=1.5, seed=3)
    np.testing.assert_array_equal(data, chain.sample(50, 64, seed=9))
    saved = np.load(out.with_name("probe.npy.process.npz"))
    np.testing.assert_array_equal(saved["transition"], chain.transition)
    assert json.loads(str(saved["config"]))["seed"] == 9
    assert not list(out.parent.glob("*.part"))  # no temporary left behind


def test_generate_shards_concatenate(tmp_path: Path) -> None:
    common = ["generate", "iid", "--vocab-size", "300", "-T", "16", "--no-progress"]
    main(common + ["-n", "30", "--out", str(tmp_path / "all.npy")])
    main(common + ["-n", "10", "--out", str(tmp_path / "a.npy")])
    main(common + ["-n", "20", "--start", "10", "--out", str(tmp_path / "b.npy")])
    whole = np.load(tmp_path / "all.npy")
    assert whole.dtype == np.uint16
    np.testing.assert_array_equal(whole, np.concatenate([np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")]))


def test_generate_json_in_bits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.npy"
    assert main(["generate", "iid", "--vocab-size", "8", "--entropy-rate", "2", "--base", "2", "-n", "500", "-T", "200", "--out", str(out), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["unit"] == "bits"
    assert stats["entropy_rate"] == pytest.approx(2.0, abs=1e-6)
    t = stats["typicality"]
    assert t["count_below"] + t["count_inside"] + t["count_above"] == 500
    assert abs(t["mean_nll_per_token"] - 2.0) < 0.02


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["markov", "--entropy-rate", "9", "--vocab-size", "8"], "entropy_rate must lie strictly between"),
        (["iid", "--order", "2"], "--order applies to markov only"),
        (["markov", "--eps", "0"], "--eps must be > 0"),
        (["markov", "--base", "1"], "--base must be > 0 and != 1"),
    ],
)
def test_generate_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    assert main(["generate", *extra, "--out", str(tmp_path / "x.npy")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.npy").exists()


def test_bad_suffix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "markov", "--out", str(tmp_path / "x.txt")]) == 2
    assert ".npy or .parquet" in capsys.readouterr().err


def test_parquet(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "x.parquet"
    assert main(["generate", "markov", "--vocab-size", "5", "-n", "7", "-T", "9", "--out", str(out)]) == 0
    tokens = np.array(pq.read_table(out).column("tokens").to_pylist())
    np.testing.assert_array_equal(tokens, dp.MarkovChain.random(5, seed=0).sample(7, 9, seed=0))


def test_console_script_entry_point(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "dataprobes.cli", "generate", "markov", "-n", "3", "-T", "4", "--out", str(tmp_path / "p.npy")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert "exact entropy rate" in res.stdout
