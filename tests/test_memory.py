"""Requests too large for the memory available raise ``MemoryError`` (or the
output cap's ``ValueError``) instead of aborting the interpreter.

Each case runs in a fresh interpreter whose address space is limited with
``RLIMIT_AS`` (3 GiB), so that the allocation fails deterministically; the
child then checks that it can still sample and score.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

resource = pytest.importorskip("resource")

LIMIT = 3 << 30

PRELUDE = f"""
import os, resource
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"
import numpy as np
import dataprobes as dp
resource.setrlimit(resource.RLIMIT_AS, ({LIMIT}, {LIMIT}))
"""

CHECK_ALIVE = """
p = dp.MarkovChain.random(8, seed=0)
x = p.sample(4, 16, seed=1)
assert x.shape == (4, 16) and np.isfinite(p.log_prob(x)).all()
print("alive")
"""


def run_case(body: str) -> subprocess.CompletedProcess[str]:
    code = PRELUDE + textwrap.dedent(body) + CHECK_ALIVE
    env = dict(os.environ, RAYON_NUM_THREADS="2")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)


CASES = {
    "markov_sample": "dp.MarkovChain.random(50, seed=0).sample(10**6, 10**5)",
    "iid_sample_at": "dp.IID.random(300, seed=0).sample_at(np.arange(10**6), 10**5)",
    "hmm_sample_states": "dp.HMM.random(300, 300, seed=0).sample(10**5, 10**5, return_states=True)",
    "incontext_sample": "dp.InContextMarkov(4, 1).sample(10**6, 10**4)",
    "markov_predictive": "dp.MarkovChain.random(50, seed=0).predictive(np.zeros((10**4, 10**4), dtype=np.uint8))",
    "hmm_filtered": "dp.HMM.random(300, 8, seed=0).filtered_states(np.zeros((10**4, 10**3), dtype=np.uint8))",
    "ngram_dense": "dp.ngram_counts(np.zeros((2, 8), dtype=np.uint8), 5, vocab_size=200, max_dense_entries=2**40)",
    "chains": "dp.InContextMarkov(64, 2).posterior_chains(np.zeros((10**4, 4), dtype=np.uint8))",
    # the table and its copy in the core fit (2 x 1.06 GB); the stationary
    # solver's transposed table (another 1.06 GB) does not
    "markov_stationary": "dp.MarkovChain(np.full((11500, 11500), 1 / 11500))",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_memory_error_not_abort(name: str) -> None:
    body = f"""
    try:
        {CASES[name]}
    except MemoryError as e:
        print("MemoryError:", e)
    else:
        raise SystemExit("no MemoryError")
    """
    res = run_case(body)
    assert res.returncode == 0, f"{name}: exit {res.returncode}\n{res.stdout}\n{res.stderr[-3000:]}"
    assert "MemoryError:" in res.stdout and "alive" in res.stdout, res.stdout


def test_cap_is_a_value_error_naming_the_argument() -> None:
    body = """
    try:
        dp.MarkovChain.random(50, seed=0).sample(2**30, 2**20)
    except ValueError as e:
        assert "num_sequences * length" in str(e) and "too large" in str(e), e
        print("capped")
    """
    res = run_case(body)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "capped" in res.stdout and "alive" in res.stdout
