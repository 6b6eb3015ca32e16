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
    assert (
        main(
            [
                "generate",
                "iid",
                "--vocab-size",
                "8",
                "--entropy-rate",
                "2",
                "--base",
                "2",
                "-n",
                "500",
                "-T",
                "200",
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
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
        [
            sys.executable,
            "-m",
            "dataprobes.cli",
            "generate",
            "markov",
            "-n",
            "3",
            "-T",
            "4",
            "--out",
            str(tmp_path / "p.npy"),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert "exact entropy rate" in res.stdout


# ---------------------------------------------------------------- resume


def _gen_args(out: Path, *extra: str) -> list[str]:
    return [
        "generate",
        "markov",
        "--vocab-size",
        "30",
        "--entropy-rate",
        "2.0",
        "--process-seed",
        "1",
        "-n",
        "40",
        "-T",
        "50",
        "--seed",
        "5",
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_interrupted_generation_resumes_to_identical_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    import dataprobes.cli as cli

    ref = tmp_path / f"ref{suffix}"
    assert main(_gen_args(ref)) == 0
    ref_text = capsys.readouterr().out.replace(str(ref), "OUT")
    monkeypatch.setattr(cli, "_CHUNK_TOKENS", 7 * 50)  # 7 rows per chunk: 6 chunks
    calls: list[int] = []
    armed = [True]
    real = dp.MarkovChain.sample

    def flaky(self, n, length, **kw):
        if n and length:
            calls.append(kw["start"])
            if armed[0] and len(calls) == 3:
                raise KeyboardInterrupt  # the third chunk never lands
        return real(self, n, length, **kw)

    monkeypatch.setattr(dp.MarkovChain, "sample", flaky)
    out = tmp_path / f"run{suffix}"
    assert main(_gen_args(out)) == 130  # Ctrl-C: a one-line message, not a traceback
    assert "run the same command again to resume" in capsys.readouterr().err
    assert not out.exists()
    assert json.loads((tmp_path / f".run{suffix}.partial.json").read_text())["rows_done"] == 14
    calls.clear()
    armed[0] = False
    assert main(_gen_args(out)) == 0
    captured = capsys.readouterr()
    assert "resuming" in captured.err and "14 of 40" in captured.err
    assert calls == [14, 21, 28, 35]  # only the missing chunks were sampled
    assert out.read_bytes() == ref.read_bytes() if suffix == ".npy" else True
    read = np.load if suffix == ".npy" else _read_parquet
    np.testing.assert_array_equal(read(out), read(ref))
    assert captured.out.replace(str(out), "OUT") == ref_text  # same statistics, re-scored rows included
    assert not list(tmp_path.glob(".run*"))  # partial file and record removed


def _read_parquet(path: Path) -> np.ndarray:
    import pyarrow.parquet as pq

    col = pq.read_table(path).column("tokens").combine_chunks()
    return np.asarray(col.flatten()).reshape(len(col), -1)


def test_partial_output_of_other_settings_is_not_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:

    out = tmp_path / "x.npy"
    _interrupt_after_first_chunk(monkeypatch, out)
    # another seed: the partial rows belong to a different data set and are regenerated
    assert main(_gen_args(out, "--seed", "6")) == 0
    assert "resuming" not in capsys.readouterr().err
    chain = dp.MarkovChain.random(30, entropy_rate=2.0, seed=1)
    np.testing.assert_array_equal(np.load(out), chain.sample(40, 50, seed=6))
    # --restart ignores a matching partial output
    _interrupt_after_first_chunk(monkeypatch, out, "--force")  # out exists now: --force to replace it
    assert main(_gen_args(out, "--restart", "--force")) == 0
    assert "resuming" not in capsys.readouterr().err
    np.testing.assert_array_equal(np.load(out), chain.sample(40, 50, seed=5))


def _raise_on_second(real):
    seen: list[int] = []

    def sample(self, n, length, **kw):
        if n and length:
            seen.append(kw["start"])
            if len(seen) == 2:
                raise KeyboardInterrupt
        return real(self, n, length, **kw)

    return sample


def _interrupt_after_first_chunk(monkeypatch: pytest.MonkeyPatch, out: Path, *extra: str) -> None:
    """Run ``generate`` with 10-row chunks and Ctrl-C during the second chunk,
    leaving the first chunk as partial output (exit status 130)."""
    import dataprobes.cli as cli

    monkeypatch.setattr(cli, "_CHUNK_TOKENS", 10 * 50)
    monkeypatch.setattr(dp.MarkovChain, "sample", _raise_on_second(dp.MarkovChain.sample))
    assert main(_gen_args(out, *extra)) == 130
    monkeypatch.undo()


def test_generation_resumes_after_sigkill(tmp_path: Path) -> None:
    """Kill the command mid-run (SIGKILL: no cleanup runs), run it again: the
    output equals an uninterrupted run byte for byte."""
    import os
    import signal
    import time

    common = [
        "-m",
        "dataprobes.cli",
        "generate",
        "iid",
        "--vocab-size",
        "200",
        "-n",
        "2048",
        "-T",
        "65536",
        "--seed",
        "3",
        "--no-progress",
    ]  # 2**27 uint8 tokens: 8 chunks of 2**24
    out = tmp_path / "big.npy"
    state = tmp_path / ".big.npy.partial.json"
    proc = subprocess.Popen([sys.executable, *common, "--out", str(out)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads(state.read_text())["rows_done"] > 0:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = json.loads(state.read_text())["rows_done"]
    assert proc.returncode == -signal.SIGKILL and 0 < done < 2048 and not out.exists(), "the kill missed the run"
    run = subprocess.run([sys.executable, *common, "--out", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert f"resuming big.npy: {done} of 2048" in run.stderr
    p = dp.IID.random(200, seed=0)
    np.testing.assert_array_equal(np.load(out, mmap_mode="r")[::97], p.sample(2048, 65536, seed=3)[::97])


def test_cli_generate_function_is_named_apart_from_lm_generate() -> None:
    import dataprobes.cli as cli

    assert cli.run_generate.__name__ == "run_generate"
    with pytest.warns(DeprecationWarning, match="run_generate"):
        assert cli.generate is cli.run_generate
    with pytest.raises(AttributeError):
        cli.no_such_name  # noqa: B018


def test_demo_process_is_called_incontext(tmp_path: Path) -> None:
    from dataprobes.cli import build_parser
    from dataprobes.demo import _make_process

    for name in ("incontext", "icl"):  # icl: the old spelling, still accepted
        args = build_parser().parse_args(["demo", "--process", name, "--vocab-size", "5"])
        assert isinstance(_make_process(args), dp.InContextMarkov)


def test_generate_start_past_2_64_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.npy"
    args = ["generate", "iid", "--vocab-size", "4", "-n", "3", "-T", "4", "--no-progress", "--out", str(out)]
    assert main(args + ["--start", str(2**64 - 2)]) == 2
    err = capsys.readouterr().err
    assert "--start + --num-sequences must be <= 2**64" in err
    assert not list(tmp_path.iterdir())  # nothing written
    assert main(args + ["--start", str(2**64 - 3)]) == 0
    np.testing.assert_array_equal(np.load(out), dp.IID.random(4).sample(3, 4, start=2**64 - 3))


# ---------------------------------------------------------------- output location, checksums, units


def test_output_location_is_checked_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sampled: list[int] = []
    real = dp.IID.sample

    def spy(self, n, length, **kw):
        if n:
            sampled.append(n)
        return real(self, n, length, **kw)

    monkeypatch.setattr(dp.IID, "sample", spy)
    base = ["generate", "iid", "--vocab-size", "4", "-n", "3", "-T", "4", "--no-progress", "--out"]
    (tmp_path / "dir.npy").mkdir()
    (tmp_path / "file").write_text("")
    cases = [
        (tmp_path / "dir.npy", 2, "is a directory; give a file name"),
        (tmp_path / "file" / "x.npy", 1, "file is not a directory"),
    ]
    for out, code, message in cases:
        assert main([*base, str(out)]) == code
        err = capsys.readouterr().err
        assert message in err and str(out) in err and err.count("\n") == 1  # one line, the user's path
    # an unwritable directory (as root nothing is: refuse the write test instead)
    import tempfile

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert main([*base, str(tmp_path / "ro" / "x.npy")]) == 1
    assert f"cannot write --out {tmp_path / 'ro' / 'x.npy'}: Permission denied" in capsys.readouterr().err
    assert sampled == []  # no work was done


def test_oserror_during_the_run_names_the_users_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import dataprobes.cli as cli

    def full(path, *a, **k):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(cli, "_new_array_file", full)
    out = tmp_path / "x.npy"
    assert main(["generate", "iid", "-n", "3", "-T", "4", "--no-progress", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"cannot write --out {out}: No space left on device" in err and ".partial" not in err


def test_existing_output_needs_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.npy"
    args = ["generate", "iid", "--vocab-size", "4", "-n", "3", "-T", "4", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    first = out.read_bytes()
    assert main([*args, "--seed", "1"]) == 2
    assert "exists; pass --force to overwrite it" in capsys.readouterr().err
    assert out.read_bytes() == first
    assert main([*args, "--seed", "1", "--force"]) == 0
    np.testing.assert_array_equal(np.load(out), dp.IID.random(4).sample(3, 4, seed=1))


def test_damaged_partial_output_is_not_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import dataprobes.cli as cli

    out = tmp_path / "x.npy"
    _interrupt_after_first_chunk(monkeypatch, out)
    monkeypatch.setattr(cli, "_CHUNK_TOKENS", 10 * 50)
    partial = tmp_path / ".x.npy.partial.npy"
    record = json.loads((tmp_path / ".x.npy.partial.json").read_text())
    assert record["rows_done"] == 10 and len(record["xxh3"]) == 1
    arr = np.load(partial, mmap_mode="r+")
    arr[3, 7] = (int(arr[3, 7]) + 1) % 30  # one token of a completed row changes
    arr.flush()
    del arr
    assert main(_gen_args(out)) == 1
    err = capsys.readouterr().err
    assert "does not match its checksum at rows 0..9" in err and "--restart" in err and str(out) in err
    assert not out.exists()
    assert main(_gen_args(out, "--restart")) == 0
    chain = dp.MarkovChain.random(30, entropy_rate=2.0, seed=1)
    np.testing.assert_array_equal(np.load(out), chain.sample(40, 50, seed=5))


def test_base_2_prints_every_figure_in_bits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.npy"
    args = ["generate", "iid", "--vocab-size", "8", "--entropy-rate", "2", "--base", "2", "-n", "20", "-T", "16"]
    assert main([*args, "--no-progress", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "nats" not in text
    assert "entropy_rate=2.000000 bits" in text and "bits²/token" in text and "bits)" in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--temperatures", "abc"], "--temperatures"),
        (["--temperatures", "-1"], "--temperatures"),
        (["--temperatures", ","], "--temperatures"),
        (["--device", "tpu"], "--device"),
        (["--layers", "0"], "--layers"),
        (["--heads", "3"], "--d-model"),
    ],
)
def test_demo_arguments_are_checked_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    pytest.importorskip("torch")
    import dataprobes.lm as lm

    def no_training(*a, **k):
        raise AssertionError("trained before checking the arguments")

    monkeypatch.setattr(lm, "train", no_training)
    code = main(["demo", "--quick", "--no-progress", "--out-dir", str(tmp_path / "d"), *extra])
    assert code == 2
    assert message in capsys.readouterr().err


def test_demo_unwritable_out_dir_is_refused_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("torch")
    import dataprobes.lm as lm

    monkeypatch.setattr(lm, "train", None)
    (tmp_path / "file").write_text("")
    assert main(["demo", "--quick", "--out-dir", str(tmp_path / "file")]) == 2
    assert "--out-dir" in capsys.readouterr().err
    assert main(["demo", "--quick", "--out-dir", str(tmp_path / "file" / "d")]) == 1
    assert "cannot write --out-dir" in capsys.readouterr().err
