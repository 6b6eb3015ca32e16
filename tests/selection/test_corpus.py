"""DSIR at corpus scale: streaming, resumable, Ray Data, CLI (selection/corpus.py, ray_data.py).

The reference is the in-memory DSIR of ``dataprobes.selection.dsir``: its log
weights with the Gumbel noise of each row's index, and the top ``num`` keys
(ties to the lower index), rebuilt here with numpy.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataprobes.cli import main
from dataprobes.selection import corpus as corpus_mod
from dataprobes.selection import dsir_select_corpus
from dataprobes.selection.dsir import dsir_select, dsir_weights, gumbel_noise
from dataprobes.selection.ray_data import _unit_lines, plan_units, read_unit

FEAT = {"num_buckets": 512, "ngrams": 2, "hash": "fast", "min_example_length": 5}
A = "the cat sat on a mat with hat and bat , near dog".split()
B = "stock market price rose fell bank loan rate ; bond".split()


def _texts(rng: np.random.Generator, n: int, p_a: float) -> list[str]:
    out = []
    for _ in range(n):
        words = A if rng.random() < p_a else B
        out.append(" ".join(rng.choice(words, int(rng.integers(0, 30)))))
    return out


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    rng = np.random.default_rng(7)
    raw = _texts(rng, 150, 0.3)
    raw[40] = raw[41] = raw[90] = "the cat sat on a mat with a hat"  # equal weights: ties in top-k
    target = _texts(rng, 30, 0.95)
    return {"raw": raw, "target": target}


def _write_jsonl(path: Path, texts: list[str], field: str = "text", blank_every: int = 0, first_id: int = 0) -> Path:
    with open(path, "w") as f:
        for i, t in enumerate(texts, first_id):
            f.write(json.dumps({"id": i, field: t}) + "\n")
            if blank_every and i % blank_every == 0:
                f.write("\n")
    return path


def _write_parquet(path: Path, texts: list[Any], row_group_size: int = 1 << 20, first_id: int = 0) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = list(range(first_id, first_id + len(texts)))
    pq.write_table(pa.table({"id": ids, "text": texts}), path, row_group_size=row_group_size)
    return path


@pytest.fixture(scope="module")
def files(data: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("corpus")
    raw, target = data["raw"], data["target"]
    shards = d / "shards"
    shards.mkdir()
    for k, lo in enumerate(range(0, len(raw), 40)):
        _write_jsonl(shards / f"part-{k:03d}.jsonl", raw[lo : lo + 40], first_id=lo)
    (shards / "_SUCCESS").write_text("")  # ignored
    pshards = d / "pshards"
    pshards.mkdir()
    for k, lo in enumerate(range(0, len(raw), 60)):
        _write_parquet(pshards / f"part-{k}.parquet", raw[lo : lo + 60], row_group_size=13, first_id=lo)
    gz = d / "raw.jsonl.gz"
    with gzip.open(gz, "wt") as f:
        f.write("".join(json.dumps({"text": t}) + "\n" for t in raw))
    return {
        "raw": _write_jsonl(d / "raw.jsonl", raw, blank_every=17),
        "target": _write_jsonl(d / "target.jsonl", target),
        "shards": shards,
        "pshards": pshards,
        "parquet": _write_parquet(d / "raw.parquet", raw, row_group_size=11),
        "gz": gz,
    }


def reference(raw: list[Any], target: list[Any], num: int, *, top_k: bool, seed: int, **feat: Any) -> np.ndarray:
    """Gumbel top-k (or plain top-k) over the in-memory DSIR weights, ties to the lower index."""
    w = dsir_weights(raw, target, **feat)
    keys = w if top_k else w + gumbel_noise(np.arange(len(raw)), seed)
    order = np.lexsort((np.arange(len(raw)), -keys))
    order = order[np.isfinite(keys[order])][:num]
    return np.sort(order)


@pytest.mark.parametrize("top_k", [False, True])
def test_chunk_sizes_give_the_in_memory_selection(data: dict[str, Any], files: dict[str, Path], top_k: bool) -> None:
    raw, target = data["raw"], data["target"]
    want = reference(raw, target, 25, top_k=top_k, seed=3, **FEAT)
    np.testing.assert_array_equal(np.sort(dsir_select(raw, target, 25, top_k=top_k, seed=3, **FEAT)), want)
    weights = dsir_weights(raw, target, **FEAT)
    for chunk_rows in (1, 7, 10**6):
        res = dsir_select_corpus(
            files["raw"], files["target"], 25, top_k=top_k, seed=3, chunk_rows=chunk_rows, progress=False, **FEAT
        )
        np.testing.assert_array_equal(res.indices, want)
        assert res.indices.dtype == np.int64
        np.testing.assert_allclose(res.log_weights, weights[want], rtol=1e-12, atol=1e-12)
        assert res.num_rows == len(raw)
        assert res.num_eligible == int(np.isfinite(weights).sum())
    if top_k:  # the tied rows 40, 41, 90 carry the highest weight: the lower indices win
        assert {40, 41} <= set(want.tolist())


def test_seed_changes_the_sample_and_top_k_ignores_it(files: dict[str, Path]) -> None:
    kw: dict[str, Any] = {"progress": False, **FEAT}
    a = dsir_select_corpus(files["raw"], files["target"], 20, seed=0, **kw).indices
    b = dsir_select_corpus(files["raw"], files["target"], 20, seed=1, **kw).indices
    assert not np.array_equal(a, b)
    t0 = dsir_select_corpus(files["raw"], files["target"], 20, top_k=True, seed=0, **kw).indices
    t1 = dsir_select_corpus(files["raw"], files["target"], 20, top_k=True, seed=5, **kw).indices
    np.testing.assert_array_equal(t0, t1)


@given(
    lengths=st.lists(st.integers(0, 12), min_size=0, max_size=40),
    num=st.integers(0, 45),
    seed=st.integers(0, 2**64 - 1),
    chunk_rows=st.integers(1, 50),
    top_k=st.booleans(),
    salt=st.integers(0, 1000),
    block=st.integers(1, 12),
)
def test_property_streamed_equals_in_memory(
    lengths: list[int], num: int, seed: int, chunk_rows: int, top_k: bool, salt: int, block: int
) -> None:
    rng = np.random.default_rng(salt)
    raw = [" ".join(rng.choice(A + B, n)) for n in lengths]
    target = [" ".join(rng.choice(A, 8)) for _ in range(3)]
    feat = {"num_buckets": 64, "ngrams": 2, "hash": "fast", "min_example_length": 3}
    with tempfile.TemporaryDirectory() as d:
        rp, tp = _write_jsonl(Path(d) / "r.jsonl", raw), _write_jsonl(Path(d) / "t.jsonl", target)
        saved, corpus_mod._WRITE_BATCH = corpus_mod._WRITE_BATCH, block  # rows per read block
        try:
            res = dsir_select_corpus(rp, tp, num, top_k=top_k, seed=seed, chunk_rows=chunk_rows, progress=False, **feat)
        finally:
            corpus_mod._WRITE_BATCH = saved
    if sum(lengths) == 0:  # no raw n-grams: every row is too short, nothing to select
        assert res.indices.size == 0 and res.num_eligible == 0
        return
    np.testing.assert_array_equal(res.indices, reference(raw, target, num, top_k=top_k, seed=seed, **feat))
    assert res.indices.size == min(num, res.num_eligible)


def test_formats_agree_and_outputs_are_the_selected_rows(
    data: dict[str, Any], files: dict[str, Path], tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    try:
        import datasets
    except ImportError:  # the test extra has it; without it, the file formats are still compared
        datasets = None
    want = reference(data["raw"], data["target"], 30, top_k=False, seed=11, **FEAT)
    kw: dict[str, Any] = {"seed": 11, "progress": False, "chunk_rows": 9, **FEAT}
    inputs: dict[str, Any] = {
        "jsonl": files["raw"],
        "shards": files["shards"],
        "gz": files["gz"],
        "parquet": files["parquet"],
        "pshards": files["pshards"],
    }
    hf_target = None
    if datasets is not None:
        hf = datasets.Dataset.from_dict({"id": list(range(len(data["raw"]))), "text": data["raw"]})
        hf_target = datasets.Dataset.from_dict({"text": data["target"]})
        inputs.update({"dataset": hf, "iterable": hf.to_iterable_dataset(num_shards=3)})
    outs = {}
    for name, raw in inputs.items():
        suffix = ".jsonl" if name in ("jsonl", "shards", "gz") else ".parquet"
        out = tmp_path / f"{name}{suffix}"
        target = hf_target if name == "dataset" else files["target"]
        res = dsir_select_corpus(raw, target, 30, out, **kw)
        np.testing.assert_array_equal(res.indices, want, err_msg=name)
        outs[name] = out
        manifest = json.loads((tmp_path / f"{name}{suffix}.manifest.json").read_text())
        assert manifest["indices"] == want.tolist() and manifest["seed"] == 11 and manifest["hash"] == "fast"
        assert manifest["params"]["num_buckets"] == 512 and manifest["num_rows"] == len(data["raw"])
        assert manifest["hash_info"]["version"] >= 1 and manifest["inputs"]["raw"]["kind"] in (
            "jsonl",
            "parquet",
            "dataset",
        )
    lines = files["raw"].read_text().splitlines()
    lines = [ln for ln in lines if ln.strip()]
    assert outs["jsonl"].read_text() == "".join(lines[i] + "\n" for i in want)  # byte for byte, in order
    texts = [data["raw"][i] for i in want]
    assert [json.loads(ln)["text"] for ln in outs["shards"].read_text().splitlines()] == texts
    assert [json.loads(ln)["text"] for ln in outs["gz"].read_text().splitlines()] == [data["raw"][i] for i in want]
    full = pq.read_table(files["parquet"])
    for name in ("parquet", "pshards", "dataset", "iterable")[: len(inputs) - 3]:
        got = pq.read_table(outs[name])
        assert got.column("text").to_pylist() == [data["raw"][i] for i in want], name
        assert got.column("id").to_pylist() == want.tolist(), name
    assert pq.read_table(outs["parquet"]).equals(full.take(want))
    # Parquet in, JSON Lines out (gzip): the rows as JSON objects
    gz_out = tmp_path / "from_parquet.jsonl.gz"
    dsir_select_corpus(files["parquet"], files["target"], 30, gz_out, **kw)
    with gzip.open(gz_out, "rt") as f:
        assert [json.loads(line) for line in f] == [{"id": int(i), "text": data["raw"][i]} for i in want]
    assert not list(tmp_path.glob(".*.part"))


def test_token_id_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    raw = [rng.integers(0, 50, int(rng.integers(0, 20))).tolist() for _ in range(60)]
    target = [rng.integers(0, 10, 15).tolist() for _ in range(10)]
    feat = {"num_buckets": 128, "ngrams": 2, "hash": "fast", "min_example_length": 4}
    res = dsir_select_corpus(
        _write_parquet(tmp_path / "r.parquet", raw, 7),
        _write_parquet(tmp_path / "t.parquet", target),
        12,
        seed=2,
        chunk_rows=5,
        progress=False,
        **feat,
    )
    np.testing.assert_array_equal(res.indices, reference(raw, target, 12, top_k=False, seed=2, **feat))


def test_edge_cases(data: dict[str, Any], files: dict[str, Path], tmp_path: Path) -> None:
    kw: dict[str, Any] = {"progress": False, **FEAT}
    res = dsir_select_corpus(files["raw"], files["target"], 10**6, **kw)
    assert res.indices.size == res.num_eligible < len(data["raw"])  # short rows are never selected
    assert "long enough" in res.summary()
    res0 = dsir_select_corpus(files["raw"], files["target"], 0, tmp_path / "none.jsonl", **kw)
    assert res0.indices.size == 0 and (tmp_path / "none.jsonl").read_bytes() == b""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert dsir_select_corpus(empty, files["target"], 5, **kw).num_rows == 0
    with pytest.raises(ValueError, match="target has no rows"):
        dsir_select_corpus(files["raw"], empty, 5, **kw)
    clone = pickle.loads(pickle.dumps(res))
    np.testing.assert_array_equal(clone.indices, res.indices)
    empty_parquet = tmp_path / "e.parquet"
    dsir_select_corpus(files["parquet"], files["target"], 0, empty_parquet, **kw)
    import pyarrow.parquet as pq

    assert pq.read_table(empty_parquet).num_rows == 0 and "text" in pq.read_table(empty_parquet).column_names


# ------------------------------------------------------------------ resumption


class Interrupt(Exception):
    pass


@pytest.mark.parametrize(("phase", "at"), [("fit_target", 10), ("fit_raw", 33), ("weigh", 77), ("write", 0)])
def test_interrupted_run_resumes_to_the_identical_result(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, phase: str, at: int
) -> None:
    kw: dict[str, Any] = {"seed": 4, "progress": False, **FEAT}
    whole = dsir_select_corpus(files["raw"], files["target"], 20, tmp_path / "whole.jsonl", **kw)
    state = tmp_path / "state"
    out = tmp_path / "resumed.jsonl"
    calls: list[tuple[str, int]] = []

    def hook(ph: str, rows: int) -> None:
        calls.append((ph, rows))
        if ph == phase and rows >= at:
            raise Interrupt

    if phase == "write":
        real = corpus_mod._write_rows

        def failing(source: Any, indices: np.ndarray, path: Path, progress: bool) -> None:
            real(source, indices, path, progress)  # the output appears ...
            path.unlink()  # ... but "the machine dies" before the manifest and the state's last record
            raise Interrupt

        monkeypatch.setattr(corpus_mod, "_write_rows", failing)
    else:
        monkeypatch.setattr(corpus_mod, "_after_checkpoint", hook)
    with pytest.raises(Interrupt):
        dsir_select_corpus(files["raw"], files["target"], 20, out, chunk_rows=5, state_dir=state, **kw)
    assert not out.exists()
    monkeypatch.undo()
    seen: list[tuple[str, int]] = []
    monkeypatch.setattr(corpus_mod, "_after_checkpoint", lambda ph, rows: seen.append((ph, rows)))
    again = dsir_select_corpus(files["raw"], files["target"], 20, out, chunk_rows=3, state_dir=state, **kw)
    np.testing.assert_array_equal(again.indices, whole.indices)
    assert out.read_bytes() == (tmp_path / "whole.jsonl").read_bytes()
    if phase != "write":  # resumed where it stopped: the finished passes are not read again
        first = seen[0]
        assert first == (phase, -(-at // 5) * 5 + 3)  # the stopped run saved its last chunk of 5
    else:
        assert seen == []


def test_resume_refuses_other_arguments_and_changed_inputs(files: dict[str, Path], tmp_path: Path) -> None:
    kw: dict[str, Any] = {"progress": False, **FEAT}
    state = tmp_path / "state"
    first = dsir_select_corpus(files["raw"], files["target"], 20, state_dir=state, **kw)
    again = dsir_select_corpus(files["raw"], files["target"], 20, state_dir=state, chunk_rows=1, **kw)
    np.testing.assert_array_equal(first.indices, again.indices)  # a finished state is returned as is
    with pytest.raises(ValueError, match=r"different arguments \(num: saved 20, now 21\)"):
        dsir_select_corpus(files["raw"], files["target"], 21, state_dir=state, **kw)
    with pytest.raises(ValueError, match="seed: saved 0, now 1"):
        dsir_select_corpus(files["raw"], files["target"], 20, seed=1, state_dir=state, **kw)
    copy = tmp_path / "raw.jsonl"
    copy.write_bytes(files["raw"].read_bytes())
    with pytest.raises(ValueError, match="raw: saved"):
        dsir_select_corpus(copy, files["target"], 20, state_dir=state, **kw)
    redo = dsir_select_corpus(files["raw"], files["target"], 21, state_dir=state, restart=True, **kw)
    assert redo.indices.size == 21
    (state / "dsir_state.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read"):
        dsir_select_corpus(files["raw"], files["target"], 21, state_dir=state, **kw)


def test_killed_cli_run_resumes_to_identical_bytes(files: dict[str, Path], tmp_path: Path) -> None:
    args = ["select", "dsir", "--target", str(files["target"]), "--raw", str(files["raw"]), "--num", "25"]
    args += ["--num-buckets", "512", "--min-example-length", "5", "--seed", "9", "--no-progress"]
    assert main(args + ["--out", str(tmp_path / "whole.jsonl")]) == 0
    out = tmp_path / "killed.jsonl"
    script = (
        "import os, signal, sys\n"
        "from dataprobes.selection import corpus\n"
        "def hook(phase, rows):\n"
        "    if phase == 'weigh' and rows >= 60:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "corpus._after_checkpoint = hook\n"
        "from dataprobes.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-c", script, *args, "--out", str(out), "--chunk-rows", "20"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not out.exists() and (tmp_path / ".killed.jsonl.dsir-state" / "dsir_state.npz").exists()
    res = subprocess.run(
        [sys.executable, "-m", "dataprobes.cli", *args, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stderr
    assert res.stdout.startswith("selected 25 of 150 rows")
    assert out.read_bytes() == (tmp_path / "whole.jsonl").read_bytes()
    assert not (tmp_path / ".killed.jsonl.dsir-state").exists()  # the default state is removed after success


# ------------------------------------------------------------------ CLI


def test_cli_select_dsir(files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sel.parquet"
    args = ["select", "dsir", "--target", str(files["target"]), "--raw", str(files["pshards"]), "--num", "15"]
    args += ["--num-buckets", "512", "--min-example-length", "5", "--top-k", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("selected 15 of 150 rows") and "top-k" in line and "\n" not in line
    lib = dsir_select_corpus(files["parquet"], files["target"], 15, top_k=True, progress=False, **FEAT)
    import pyarrow.parquet as pq

    assert pq.read_table(out).column("id").to_pylist() == lib.indices.tolist()
    assert main(args) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(args + ["--force", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_selected"] == 15


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--num", "-1"], "must be >= 0"),
        (["--num", "3", "--raw", "nope.jsonl"], "raw: no such file"),
        (["--num", "3", "--text-field", "body"], "no field 'body'"),
        (["--num", "3", "--hash", "md5"], "invalid choice"),
        (["--num", "3", "--engine", "ray", "--state-dir", "s"], "--state-dir applies to --engine local"),
    ],
)
def test_cli_errors(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    args = ["select", "dsir", "--target", str(files["target"]), "--raw", str(files["raw"])]
    args += ["--out", str(tmp_path / "o.jsonl"), "--no-progress", *extra]
    with_exit = None
    try:
        code = main(args)
    except SystemExit as exc:  # argparse
        with_exit = exc.code
        code = int(exc.code or 0)
    assert code == 2, with_exit
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------ argument checks


def test_argument_checks(files: dict[str, Path], tmp_path: Path) -> None:
    r, t = files["raw"], files["target"]
    bad_type: list[tuple[dict[str, Any], str]] = [
        ({"raw": 123}, "raw must be a path"),
        ({"target": [1, 2]}, "target must be a path"),
        ({"num": "3"}, "num must be an integer"),
        ({"text_field": 1}, "text_field must be a str"),
        ({"top_k": "yes"}, "top_k must be a bool"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"progress": 1}, "progress must be a bool"),
        ({"out": 5}, "out must be a path"),
        ({"engine": None}, "engine must be a str"),
        ({"word_classes": 1}, "word_classes must be a str"),
    ]
    for over, msg in bad_type:
        kw = {"raw": r, "target": t, "num": 3, "progress": False, **over}
        with pytest.raises(TypeError, match=msg):
            dsir_select_corpus(**kw)
    (tmp_path / "exists.jsonl").write_text("")
    (tmp_path / "notes.txt").write_text("")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    _write_jsonl(mixed / "a.jsonl", ["x"])
    _write_parquet(mixed / "b.parquet", ["y"])
    bad_value: list[tuple[dict[str, Any], str]] = [
        ({"num": -1}, "num must be >= 0"),
        ({"hash": "md5"}, "hash must be 'fast' or 'sha256'"),
        ({"ngrams": 0}, "ngrams must be >= 1"),
        ({"num_buckets": 0}, "num_buckets must be >= 1"),
        ({"chunk_rows": 0}, "chunk_rows must be >= 1"),
        ({"text_field": ""}, "text_field must not be empty"),
        ({"raw": tmp_path / "missing.jsonl"}, "raw: no such file"),
        ({"raw": tmp_path / "notes.txt"}, "is not .jsonl"),
        ({"raw": tmp_path / "mixed" / "sub"}, "no such file"),
        ({"raw": mixed}, "mixes JSON Lines and Parquet"),
        ({"out": tmp_path / "exists.jsonl"}, "exists; pass overwrite=True"),
        ({"out": tmp_path}, "is a directory"),
        ({"out": tmp_path / "x.csv"}, "out must end in"),
        ({"out": tmp_path / "x.parquet"}, "JSON Lines input is written as JSON Lines"),
        ({"engine": "spark"}, "engine must be 'local' or 'ray'"),
        ({"engine": "ray", "state_dir": tmp_path}, "state_dir applies to engine='local'"),
        ({"text_field": "body"}, "no field 'body'"),
        ({"state_dir": tmp_path / "exists.jsonl"}, "is a file, not a directory"),
        ({"word_classes": "re"}, "word_classes must be 'nltk-regex' or 'python-re'"),
        ({"num_buckets": 2**32 + 1}, "num_buckets must be <= 4294967296"),
        ({"ngrams": 33}, "ngrams must be <= 32"),
    ]
    for over, msg in bad_value:
        kw = {"raw": r, "target": t, "num": 3, "progress": False, **over}
        with pytest.raises(ValueError, match=msg):
            dsir_select_corpus(**kw)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "a b"}\n{"text": \n')
    with pytest.raises(ValueError, match="broken.jsonl line 2 is not JSON"):
        dsir_select_corpus(broken, t, 3, progress=False)
    nulls = tmp_path / "nulls.jsonl"
    nulls.write_text('{"text": null}\n')
    with pytest.raises(ValueError, match="has no 'text'"):
        dsir_select_corpus(nulls, t, 3, progress=False)
    with pytest.raises(ValueError, match="no column 'body'"):
        dsir_select_corpus(files["parquet"], t, 3, text_field="body", progress=False)


def test_check_params_takes_the_limits_of_dsir(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataprobes.selection import dsir

    kw: dict[str, Any] = {"text_field": "text", "top_k": False, "seed": 0, "hash": "fast", "min_example_length": 0}
    kw |= {"word_classes": "nltk-regex", "num_buckets": 10, "ngrams": 2}
    assert corpus_mod.check_params(3, **kw).ngrams == 2
    monkeypatch.setattr(dsir, "MAX_NGRAMS", 1)
    monkeypatch.setattr(dsir, "MAX_BUCKETS", 9)
    with pytest.raises(ValueError, match="ngrams must be <= 1"):
        corpus_mod.check_params(3, **(kw | {"num_buckets": 5}))
    with pytest.raises(ValueError, match="num_buckets must be <= 9"):
        corpus_mod.check_params(3, **(kw | {"ngrams": 1}))


# ------------------------------------------------------------------ review, issue 12


def test_fit_pass_counts_without_a_feature_matrix(
    data: dict[str, Any], files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataprobes.selection import dsir

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the corpus fit pass must use the counts-only pass")

    monkeypatch.setattr(dsir, "hashed_ngram_features", refuse)
    res = dsir_select_corpus(files["raw"], files["target"], 25, seed=3, chunk_rows=9, progress=False, **FEAT)
    np.testing.assert_array_equal(res.indices, reference(data["raw"], data["target"], 25, top_k=False, seed=3, **FEAT))


def test_state_holds_sparse_counts_and_resumes(
    data: dict[str, Any], files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feat = {**FEAT, "num_buckets": 2**20}  # dense counts would be 2 x 8 MiB per save
    whole = dsir_select_corpus(files["raw"], files["target"], 20, progress=False, **feat)
    sizes: list[int] = []

    def hook(phase: str, rows: int) -> None:
        sizes.append((tmp_path / "s" / "dsir_state.npz").stat().st_size)
        if phase == "weigh" and rows >= 50:
            raise Interrupt

    monkeypatch.setattr(corpus_mod, "_after_checkpoint", hook)
    with pytest.raises(Interrupt):
        dsir_select_corpus(
            files["raw"], files["target"], 20, chunk_rows=25, state_dir=tmp_path / "s", progress=False, **feat
        )
    assert max(sizes) < 2**17, sizes
    with np.load(tmp_path / "s" / "dsir_state.npz") as z:
        assert "target_counts" not in z and z["raw_buckets"].size == z["raw_values"].size > 0
    monkeypatch.undo()
    again = dsir_select_corpus(
        files["raw"], files["target"], 20, chunk_rows=7, state_dir=tmp_path / "s", progress=False, **feat
    )
    np.testing.assert_array_equal(again.indices, whole.indices)
    np.testing.assert_array_equal(again.log_weights, whole.log_weights)


def test_word_classes_are_recorded_and_part_of_the_resume_key(files: dict[str, Path], tmp_path: Path) -> None:
    kw: dict[str, Any] = {"progress": False, **FEAT}
    state = tmp_path / "state"
    out = tmp_path / "o.jsonl"
    res = dsir_select_corpus(files["raw"], files["target"], 20, out, word_classes="python-re", state_dir=state, **kw)
    info = res.manifest["hash_info"]
    assert res.manifest["params"]["word_classes"] == info["word_classes"] == "python-re"
    assert json.loads(res.manifest_path.read_text())["hash_info"]["word_classes_unicode_version"]  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="word_classes: saved 'python-re', now 'nltk-regex'"):
        dsir_select_corpus(files["raw"], files["target"], 20, state_dir=state, **kw)


def test_cli_resumes_a_run_that_died_after_writing_out(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["select", "dsir", "--target", str(files["target"]), "--raw", str(files["raw"]), "--num", "25"]
    args += ["--num-buckets", "512", "--min-example-length", "5", "--seed", "9", "--no-progress"]
    assert main(args + ["--out", str(tmp_path / "whole.jsonl")]) == 0
    out = tmp_path / "died.jsonl"

    def die(path: Path, *a: Any, **k: Any) -> None:  # the rows are renamed over --out; then the run dies
        assert out.exists()
        raise KeyboardInterrupt

    monkeypatch.setattr(corpus_mod, "write_json_atomic", die)
    assert main(args + ["--out", str(out)]) == 130
    monkeypatch.undo()
    assert out.exists() and not corpus_mod.manifest_path(out).exists()
    assert corpus_mod.saved_phase(tmp_path / ".died.jsonl.dsir-state") == "write"
    before = out.read_bytes()
    capsys.readouterr()
    # other arguments are refused (by the saved state) before the output is touched
    assert main([("8" if a == "9" else a) for a in args] + ["--out", str(out)]) == 2
    assert "different arguments" in capsys.readouterr().err and out.read_bytes() == before
    assert main(args + ["--out", str(out)]) == 0, capsys.readouterr().err  # "run the same command again"
    assert "resuming" in capsys.readouterr().err
    assert out.read_bytes() == (tmp_path / "whole.jsonl").read_bytes()
    assert corpus_mod.manifest_path(out).exists()
    assert main(args + ["--out", str(out)]) == 2  # finished, state removed: an existing --out is refused again


# ------------------------------------------------------------------ Ray Data


@given(
    lines=st.lists(st.one_of(st.text("ab é", min_size=0, max_size=9), st.just("")), max_size=30),
    unit_bytes=st.integers(1, 40),
)
def test_property_units_cover_every_row_once(lines: list[str], unit_bytes: int) -> None:
    records = [json.dumps({"text": s}) if s else "" for s in lines]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.jsonl"
        path.write_text("\n".join(records))  # no final newline, blank lines between
        got: list[Any] = []
        for unit in plan_units("jsonl", [path], unit_bytes):
            for block in read_unit(unit, "text", 4):
                got.extend(block)
        pieces = [
            ln for u in plan_units("jsonl", [path], unit_bytes) for ln in _unit_lines(u["path"], u["start"], u["stop"])
        ]
        assert b"".join(pieces) == path.read_bytes()
    assert got == [s for s in lines if s]


@pytest.fixture(scope="module")
def ray_cluster() -> Any:
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(sys.path)}},
        )
    yield ray
    ray.shutdown()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own context settings
def test_ray_equals_single_process(
    ray_cluster: Any, data: dict[str, Any], files: dict[str, Path], tmp_path: Path
) -> None:
    from dataprobes.selection import dsir_select_ray

    kw: dict[str, Any] = {"progress": False, **FEAT}
    local = dsir_select_corpus(files["raw"], files["target"], 25, **kw)
    # small units: many map_batches tasks, rows split across byte ranges, blank lines; a gzip file as one unit
    for raw in (files["raw"], files["gz"]):
        res = dsir_select_ray(raw, files["target"], 25, unit_bytes=700, chunk_rows=7, **kw)
        np.testing.assert_array_equal(res.indices, local.indices)
        np.testing.assert_allclose(res.log_weights, local.log_weights, rtol=1e-12, atol=1e-12)
        assert (res.num_rows, res.num_eligible) == (local.num_rows, local.num_eligible)
    # shards, top-k, through dsir_select_corpus(engine="ray"): the same bytes written
    dsir_select_corpus(files["shards"], files["target"], 25, tmp_path / "local.jsonl", top_k=True, **kw)
    out = tmp_path / "ray.jsonl"
    dsir_select_corpus(files["shards"], files["target"], 25, out, top_k=True, engine="ray", **kw)
    assert out.read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    assert json.loads((tmp_path / "ray.jsonl.manifest.json").read_text())["engine"] == "ray"
    cli_out = tmp_path / "cli.jsonl"
    args = ["select", "dsir", "--target", str(files["target"]), "--raw", str(files["shards"]), "--num", "25"]
    args += ["--num-buckets", "512", "--min-example-length", "5", "--top-k", "--engine", "ray", "--no-progress"]
    assert main([*args, "--out", str(cli_out)]) == 0
    assert cli_out.read_bytes() == out.read_bytes()
    pres = dsir_select_ray(files["pshards"], files["target"], 25, **kw)  # row groups of 13 rows as units
    np.testing.assert_array_equal(pres.indices, reference(data["raw"], data["target"], 25, top_k=False, seed=0, **FEAT))
    with pytest.raises(TypeError, match='raw must be a path for engine="ray"'):
        dsir_select_ray([1], files["target"], 3)
