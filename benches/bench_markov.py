#!/usr/bin/env python
"""Side-by-side benchmark: sampling and scoring an order-1 Markov chain.

For ``dp.MarkovChain.random(V, entropy_rate=f*log(V), seed=0)`` with V in
(128, 4096) and 4096 sequences x 1024 tokens, this measures tokens/s of

* ``p.sample(N, T, seed=1)`` (dataprobes: alias tables, parallel over sequences),
* vectorised numpy inverse-CDF samplers (all sequences advance one step per
  iteration; the cumulative rows are precomputed outside the timed region):

  - ``numpy-guide``: indexed search (Chen & Asau 1974) on the cumulative rows:
    a guide table ``G[s, b]`` = first index with ``cum[s, j] > b/m`` gives the
    answer directly unless ``u`` falls past the next boundary, in which case a
    ``searchsorted`` on the row-offset cumulative array resolves the few
    misses. Bit-identical to ``numpy-searchsorted`` (asserted) and the fastest
    numpy sampler found, so it is the baseline of the ratios.
  - ``numpy-searchsorted``: one ``np.searchsorted`` per step on the flattened
    cumulative rows offset by the row index (``s + cum[s, j]`` is monotone), so
    the key ``s + u`` finds the answer in row ``s``. At V > 1024 every probe
    misses cache and it is timed on the first 128 steps (its cost per step
    does not depend on the step).
  - ``numpy-compare``: ``(u[:, None] >= cum[state]).sum(1)``; it gathers
    ``N x V`` doubles per step, so it is timed on a few steps only (its cost per
    step does not depend on the step).

  All clamp the result to ``V - 1`` (cumulative rows may end slightly below 1).
* hmmlearn's ``CategoricalHMM.sample`` (a Markov chain is an HMM with identity
  emissions), one sequence per call as its API requires, on as many sequences
  as fit in a ~1.5 s budget,
* ``dataprobes._core.rng_only_fill`` (one raw xoshiro256++ draw per token, same
  streams and parallel layout): the limit of any sampler built on that RNG
  (only in an extension built with the cargo feature ``bench``, see
  ``benches/README.md``; otherwise that line is skipped with a message),
* ``p.log_prob(x)`` against the numpy gather
  ``log(pi)[x[:, 0]] + logP[x[:, :-1], x[:, 1:]].sum(1)``.

Correctness is asserted before anything is timed: transition counts of the
dataprobes and numpy samples against P (Pearson chi-square, with a negative
control that a shifted matrix fails), their mean log-loss against the exact
expectation, the numpy variants against each other, hmmlearn's emissions
against its states, and the log_prob baseline against ``p.log_prob`` to 1e-9
relative.

Timing: best of k with ``time.perf_counter``, methods interleaved round by
round so that machine noise hits them alike; ratios are the point, not the
absolute numbers. The rayon thread count is fixed when the extension first
runs, so dataprobes is timed at each ``--threads`` value in a child process
(``RAYON_NUM_THREADS=t``); the largest value is timed in this process, side by
side with the baselines. numpy and hmmlearn run on one core.

Usage::

    python benches/bench_markov.py                # full run (about a minute on 2 cores)
    python benches/bench_markov.py --quick        # smoke test (seconds)
    python benches/bench_markov.py --json out.json --threads 1,2
    # before/after in one run: a _core built from the earlier commit
    python benches/bench_markov.py --vocab 128 --baseline /path/to/base/_core.so
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

# Nothing timed here uses BLAS; keep its thread pool from competing with rayon.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

TARGETS = {
    "sample_vs_numpy": 40.0,  # at V=128 on 2 cores
    "sample_vs_hmmlearn": 1000.0,  # at V=128 on 2 cores
    "log_prob_vs_numpy": 20.0,
}


# --------------------------------------------------------------------------
# numpy baselines
# --------------------------------------------------------------------------


def out_dtype(v: int) -> type:
    return np.uint8 if v <= 1 << 8 else np.uint16 if v <= 1 << 16 else np.uint32


class NumpyInverseCdf:
    """Precomputed tables (outside the timed region) for the numpy samplers."""

    def __init__(self, P: np.ndarray, pi: np.ndarray, guide_mult: int | None = None) -> None:
        v = P.shape[0]
        self.V = v
        self.cum = np.cumsum(P, axis=1)  # [V, V], rows end at ~1
        self.cpi = np.cumsum(pi)
        # Row-offset cumulative array: row r holds r + cum[r, j], and its last
        # entry is exactly r + 1, so the whole array is non-decreasing and the
        # key s + u (u < 1) lands in row s (or, if s + u rounds up to s + 1,
        # just past it: the clamp to V - 1 handles that).
        off = self.cum + np.arange(v, dtype=np.float64)[:, None]
        off[:, -1] = np.arange(v, dtype=np.float64) + 1.0
        self.offflat = off.ravel()
        if guide_mult is None:
            # as many buckets as fit in ~2^25 guide entries, at most 64 per outcome
            guide_mult = int(max(1, min(64, (1 << 25) // (v * v))))
        self.m = m = v * guide_mult
        idt = np.int32 if v * max(v, m) < 2**31 else np.int64
        self.idt = idt
        keys = (np.arange(v, dtype=np.float64)[:, None] + (np.arange(m) / m)[None, :]).ravel()
        # G[s*m + b] = flat index of the first entry of row s with s + cum > s + b/m
        self.guide = np.searchsorted(self.offflat, keys, side="right").astype(idt)

    def _start(self, n: int, t: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        u = rng.random((t, n))  # one uniform per token, drawn in bulk
        out: np.ndarray = np.empty((t, n), out_dtype(self.V))  # time-major: contiguous row writes
        s = np.searchsorted(self.cpi, u[0], side="right")
        np.minimum(s, self.V - 1, out=s)
        out[0] = s
        return u, out, s

    def sample_guide(self, n: int, t: int, seed: int) -> np.ndarray:
        v, m, idt = self.V, self.m, self.idt
        offflat, guide = self.offflat, self.guide
        u, out, s = self._start(n, t, seed)
        if t == 0:
            return np.empty((n, 0), out.dtype)
        sf = s.astype(np.float64)  # current state as float (for the key s + u)
        boff = (s * m).astype(idt)  # guide row offset
        roff = (s * v).astype(idt)  # cum row offset
        fl = np.empty(n)
        key = np.empty(n)
        j = np.empty(n, idt)
        c = np.empty(n)
        miss = np.empty(n, bool)
        exact = m & (m - 1) == 0  # u * m is exact for a power of two: floor < m
        for step in range(1, t):
            ut = u[step]
            np.add(sf, ut, out=key)
            np.multiply(ut, m, out=fl)
            gi = fl.astype(idt)  # bucket floor(u * m)
            if not exact:
                np.minimum(gi, m - 1, out=gi)
            gi += boff
            np.take(guide, gi, out=j)  # candidate: first entry past the bucket start
            np.take(offflat, j, out=c)
            np.less_equal(c, key, out=miss)  # u lies beyond the candidate's boundary
            idx = np.flatnonzero(miss)
            if idx.size:
                j[idx] = np.searchsorted(offflat, key[idx], side="right")
            j -= roff
            np.minimum(j, v - 1, out=j)
            out[step] = j
            np.multiply(j, m, out=boff)
            np.multiply(j, v, out=roff)
            sf[:] = j
        return np.ascontiguousarray(out.T)

    def sample_searchsorted(self, n: int, t: int, seed: int) -> np.ndarray:
        v, offflat = self.V, self.offflat
        u, out, s = self._start(n, t, seed)
        if t == 0:
            return np.empty((n, 0), out.dtype)
        key = np.empty(n)
        roff = np.empty(n, np.intp)
        for step in range(1, t):
            np.add(s, u[step], out=key)
            idx = np.searchsorted(offflat, key, side="right")
            np.multiply(s, v, out=roff)
            np.subtract(idx, roff, out=s)
            np.minimum(s, v - 1, out=s)
            out[step] = s
        return np.ascontiguousarray(out.T)

    def sample_compare(self, n: int, t: int, seed: int) -> np.ndarray:
        v, cum = self.V, self.cum
        u, out, s = self._start(n, t, seed)
        for step in range(1, t):
            s = (u[step][:, None] >= cum[s]).sum(1)
            np.minimum(s, v - 1, out=s)
            out[step] = s
        return np.ascontiguousarray(out.T)


def numpy_log_prob(x: np.ndarray, log_pi: np.ndarray, log_p: np.ndarray) -> np.ndarray:
    return log_pi[x[:, 0]] + log_p[x[:, :-1], x[:, 1:]].sum(1)


# --------------------------------------------------------------------------
# hmmlearn
# --------------------------------------------------------------------------


def make_hmm(P: np.ndarray, pi: np.ndarray) -> Any:
    from hmmlearn.hmm import CategoricalHMM

    v = P.shape[0]
    hmm = CategoricalHMM(n_components=v, n_features=v, init_params="", params="")
    hmm.startprob_ = pi.copy()
    hmm.transmat_ = P.copy()
    hmm.emissionprob_ = np.eye(v)
    return hmm


def hmm_sample(hmm: Any, n: int, t: int, seed: int) -> np.ndarray:
    """n sequences of t tokens, one ``sample`` call each (hmmlearn's API)."""
    rs = np.random.RandomState(seed)
    rows = [hmm.sample(t, random_state=rs)[0][:, 0] for _ in range(n)]
    return np.asarray(rows, dtype=np.int64).reshape(n, t)


# --------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------


def transition_chi2(x: np.ndarray, P: np.ndarray, min_expected: float = 5.0) -> tuple[float, int]:
    """Pearson chi-square of the transition counts of ``x`` given the visited
    states, against ``P``. In each row, cells with expected count below
    ``min_expected`` are merged into the row's largest cell, so every category
    has expected count >= min_expected; rows with fewer than two categories
    are skipped. Returns (chi2, degrees of freedom)."""
    v = P.shape[0]
    a = x[:, :-1].astype(np.int64).ravel()
    b = x[:, 1:].astype(np.int64).ravel()
    counts = np.bincount(a * v + b, minlength=v * v).reshape(v, v).astype(np.float64)
    n_s = counts.sum(1)
    expected = n_s[:, None] * P
    big = expected >= min_expected
    nb = big.sum(1)
    rows = np.flatnonzero(nb >= 2)
    e = np.where(big, expected, 0.0)[rows]
    c = np.where(big, counts, 0.0)[rows]
    top = np.argmax(expected[rows], axis=1)
    e[np.arange(rows.size), top] += np.where(big, 0.0, expected)[rows].sum(1)
    c[np.arange(rows.size), top] += np.where(big, 0.0, counts)[rows].sum(1)
    keep = big[rows]
    chi2 = float((((c - e) ** 2)[keep] / e[keep]).sum())
    dof = int((nb[rows] - 1).sum())
    return chi2, max(dof, 1)


def check_sample(name: str, x: np.ndarray, p: Any, P: np.ndarray, chi2_tol: float = 6.0) -> dict:
    v = P.shape[0]
    n, t = x.shape
    assert x.min() >= 0 and x.max() < v, f"{name}: tokens out of range"
    chi2, dof = transition_chi2(x, P)
    z_chi2 = (chi2 - dof) / math.sqrt(2 * dof)
    assert z_chi2 < chi2_tol, f"{name}: transition counts inconsistent with P (chi2={chi2:.0f}, dof={dof})"
    # Mean log-loss of a sequence against its exact expectation H(pi) + (T-1) H.
    # The surprisal increments are martingale differences, so the variance of
    # a sequence's log-loss is exactly V(pi) + (T-1) * varentropy rate.
    pi = np.asarray(p.stationary_distribution())
    lpi = np.log(pi[pi > 0])
    h_pi = -float(np.sum(pi[pi > 0] * lpi))
    v_pi = float(np.sum(pi[pi > 0] * lpi**2)) - h_pi**2
    expect = h_pi + (t - 1) * p.entropy_rate()
    nll = -np.asarray(p.log_prob(x), dtype=np.float64)
    se = math.sqrt((v_pi + (t - 1) * p.varentropy_rate()) / n)
    z_nll = (float(nll.mean()) - expect) / se
    assert abs(z_nll) < 6.0, f"{name}: mean log-loss {nll.mean():.3f} vs exact {expect:.3f} (z={z_nll:.1f})"
    return {"chi2_over_dof": chi2 / dof, "chi2_z": z_chi2, "dof": dof, "nll_z": z_nll}


def run_checks(p: Any, P: np.ndarray, pi: np.ndarray, nps: NumpyInverseCdf, hmm: Any, quick: bool) -> dict:
    v = P.shape[0]
    n, t = (max(128, v // 4), 128) if quick else (1024, 1024)
    res: dict[str, Any] = {}
    x_dp = p.sample(n, t, seed=1)
    assert x_dp.dtype == out_dtype(v) and x_dp.shape == (n, t)
    res["dataprobes"] = check_sample("dataprobes", x_dp, p, P)
    x_g = nps.sample_guide(n, t, seed=2)
    x_s = nps.sample_searchsorted(n, t, seed=2)
    assert x_g.shape == (n, t) and x_g.dtype == x_dp.dtype
    assert np.array_equal(x_g, x_s), "numpy-guide and numpy-searchsorted disagree"
    res["numpy"] = check_sample("numpy-guide", x_g, p, P)
    tc = min(t, 64)
    x_c = nps.sample_compare(min(n, 256), tc, seed=3)
    x_cs = nps.sample_searchsorted(min(n, 256), tc, seed=3)
    agree = float(np.mean(x_c == x_cs))
    # they differ only where s + u rounds differently from u (~1e-13 of draws)
    assert agree > 0.9999, f"numpy-compare and numpy-searchsorted agree on only {agree:.6f}"
    # negative control: the chi-square check must reject a shifted chain
    wrong = np.roll(P, 1, axis=1)
    chi2_w, dof_w = transition_chi2(x_dp, wrong)
    z_wrong = (chi2_w - dof_w) / math.sqrt(2 * dof_w)
    assert z_wrong > 6.0, f"chi-square check has no power (z={z_wrong:.1f} for a shifted P)"
    res["negative_control_chi2_z"] = z_wrong
    x_h = hmm_sample(hmm, 2, min(t, 512), seed=4)
    xs, zs = hmm.sample(64, random_state=np.random.RandomState(5))
    assert np.array_equal(xs[:, 0], zs), "hmmlearn emissions differ from its states"
    res["hmmlearn_nll_z"] = check_sample("hmmlearn", x_h, p, P, chi2_tol=1e9)["nll_z"]
    lp = p.log_prob(x_dp)
    lp_np = numpy_log_prob(x_dp, np.log(pi), np.log(P))
    rel = float(np.max(np.abs(lp - lp_np) / np.abs(lp)))
    assert rel < 1e-9, f"log_prob baseline differs from p.log_prob by {rel:.2e} relative"
    res["log_prob_max_rel_diff"] = rel
    return res


# --------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------


def one_round(
    fns: dict[str, Callable[[], Any]], best: dict[str, float], times: dict[str, list[float]] | None = None
) -> None:
    """Times each function once, keeping the best wall time per name in ``best``
    (and every wall time in ``times``, for the spread)."""
    for k, f in fns.items():
        t0 = time.perf_counter()
        f()
        dt = time.perf_counter() - t0
        best[k] = min(best.get(k, math.inf), dt)
        if times is not None:
            times.setdefault(k, []).append(dt)


def load_core(path: str) -> None:
    """Makes ``dataprobes._core`` the extension module at ``path`` (a ``_core``
    shared library built from another commit, e.g. the baseline of a
    before/after run). Must run before ``import dataprobes``."""
    import importlib.machinery
    import importlib.util

    name = "dataprobes._core"
    loader = importlib.machinery.ExtensionFileLoader(name, os.path.abspath(path))
    spec = importlib.util.spec_from_file_location(name, os.path.abspath(path), loader=loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    loader.exec_module(mod)


def output_digest(p: Any, n: int, t: int) -> dict[str, str]:
    """sha256 of the sampled tokens and of the log_prob bytes (to compare builds)."""
    import hashlib

    x = p.sample(n, t, seed=1)
    lp = np.asarray(p.log_prob(x), dtype=np.float64)
    return {"sample": hashlib.sha256(x.tobytes()).hexdigest(), "log_prob": hashlib.sha256(lp.tobytes()).hexdigest()}


def has_rng_only() -> bool:
    """Whether the extension has the RNG-only baseline (cargo feature ``bench``)."""
    import dataprobes as dp

    return hasattr(dp._core, "rng_only_fill")


def dataprobes_fns(p: Any, n: int, t: int) -> dict[str, Callable[[], Any]]:
    import dataprobes as dp

    x = p.sample(n, t, seed=1)
    p.log_prob(x)  # warm up (page faults, thread pool)
    fns: dict[str, Callable[[], Any]] = {"dp_sample": lambda: p.sample(n, t, seed=1)}
    if has_rng_only():
        dp._core.rng_only_fill(n, t, 1)
        fns["rng_only"] = lambda: dp._core.rng_only_fill(n, t, 1)
    fns["dp_log_prob"] = lambda: p.log_prob(x)
    return fns


def worker(args: argparse.Namespace) -> None:
    """Child process at its own RAYON_NUM_THREADS (and, with ``core`` in its
    config, another build of the extension): one timing round per "go" line on
    stdin, answered with the best and all times so far as one JSON line. Its
    first line is the digest of its outputs."""
    cfg = json.loads(args.worker)
    if cfg.get("core"):
        load_core(cfg["core"])
    import dataprobes as dp

    if cfg.get("core"):
        dp._core = sys.modules["dataprobes._core"]
        assert dp.processes.markov._core is dp._core
    p = dp.MarkovChain(np.load(cfg["P"]))
    fns = dataprobes_fns(p, cfg["n"], cfg["t"])
    best: dict[str, float] = {}
    times: dict[str, list[float]] = {}
    print(json.dumps(output_digest(p, cfg["n"], cfg["t"])), flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        one_round(fns, best, times)
        print(json.dumps({"best": best, "times": times}), flush=True)


class Worker:
    """A child process timing dataprobes at ``threads`` rayon threads, driven
    round by round so that its rounds interleave with the parent's."""

    def __init__(self, threads: int, P_path: str, cfg: dict, core: str | None = None) -> None:
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
        payload = json.dumps(dict(cfg, P=P_path, core=core))
        self.threads = threads
        self.core = core
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", payload],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.digest = json.loads(self._expect())
        self.best: dict[str, float] = {}
        self.times: dict[str, list[float]] = {}

    def _expect(self, what: str | None = None) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line or (what is not None and line.strip() != what):
            self.proc.kill()
            raise RuntimeError(f"worker with {self.threads} thread(s) failed (see its stderr above)")
        return line

    def round(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        got = json.loads(self._expect())
        self.best, self.times = got["best"], got["times"]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def bench_vocab(v: int, cfg: dict, threads: list[int], main_threads: int, tmpdir: str) -> dict:
    import dataprobes as dp

    n, t, k = cfg["n"], cfg["t"], cfg["repeats"]
    res: dict[str, Any] = {"V": v, "N": n, "T": t}
    t0 = time.perf_counter()
    p = dp.MarkovChain.random(v, entropy_rate=cfg["entropy_frac"] * math.log(v), seed=0)
    res["build_chain_s"] = time.perf_counter() - t0
    res["entropy_rate"] = p.entropy_rate()
    P = np.array(p.transition)
    pi = np.asarray(p.stationary_distribution())
    t0 = time.perf_counter()
    nps = NumpyInverseCdf(P, pi)
    res["numpy_tables_s"] = time.perf_counter() - t0
    res["numpy_guide_buckets_per_row"] = nps.m
    hmm = make_hmm(P, pi)
    log_pi, log_p = np.log(pi), np.log(P)

    print(f"\n== V={v}: checking correctness ...", flush=True)
    res["checks"] = run_checks(p, P, pi, nps, hmm, cfg["quick"])
    print("   ok:", json.dumps(res["checks"], default=float), flush=True)

    # ---- timing: this process (dataprobes at main_threads, side by side with
    # the baselines) and one child per other thread count, interleaved round
    # by round so that noise from the machine hits every method alike.
    print(f"== V={v}: timing (best of {k} interleaved rounds) ...", flush=True)
    P_path = os.path.join(tmpdir, f"P{v}.npy")
    np.save(P_path, P)
    workers = [Worker(c, P_path, cfg) for c in threads if c != main_threads]
    # Before/after: the baseline build at every thread count, in its own
    # processes, its rounds interleaved with the others'. Its outputs must be
    # byte-identical to this build's.
    base_workers = [Worker(c, P_path, cfg, core=cfg["baseline"]) for c in threads] if cfg.get("baseline") else []
    # (the workers rebuild the chain from P: compare against the same rebuild)
    digest = output_digest(dp.MarkovChain(np.load(P_path)), n, t)
    for w in workers + base_workers:
        assert w.digest == digest, f"outputs differ: {w.core or 'this build'} {w.digest} vs {digest}"
    res["output_sha256"] = digest
    x = p.sample(n, t, seed=1)
    # numpy-compare gathers N x V doubles per step: time a few steps only
    tc = min(t, max(8, cfg["compare_steps"] * 128 // v))
    # flat searchsorted misses cache on every probe at large V: time fewer steps
    ts = t if v <= 1024 else min(t, cfg["searchsorted_steps"])
    fns = dict(dataprobes_fns(p, n, t))
    fns.update(
        {
            "numpy_guide": lambda: nps.sample_guide(n, t, seed=1),
            "numpy_searchsorted": lambda: nps.sample_searchsorted(n, ts, seed=1),
            "numpy_compare": lambda: nps.sample_compare(n, tc, seed=1),
            "numpy_log_prob": lambda: numpy_log_prob(x, log_pi, log_p),
        }
    )
    best: dict[str, float] = {}
    times: dict[str, list[float]] = {}
    try:
        for _ in range(k):
            one_round(fns, best, times)
            for w in workers + base_workers:
                w.round()
    finally:
        for w in workers + base_workers:
            w.close()
    tok = {key: n * t / sec for key, sec in best.items()}
    tok["numpy_compare"] = n * tc / best["numpy_compare"]
    tok["numpy_searchsorted"] = n * ts / best["numpy_searchsorted"]
    res["numpy_compare_steps_timed"] = tc
    res["numpy_searchsorted_steps_timed"] = ts

    # hmmlearn: one sequence per call; as many as fit in the budget
    th = cfg["hmm_t"]
    t0 = time.perf_counter()
    hmm_sample(hmm, 1, th, seed=7)
    one = time.perf_counter() - t0
    n_h = int(max(1, min(cfg["hmm_max_seqs"], cfg["hmm_budget_s"] // max(one, 1e-9))))
    best_h: dict[str, float] = {}
    for _ in range(cfg["hmm_repeats"]):
        one_round({"hmm": lambda: hmm_sample(hmm, n_h, th, seed=7)}, best_h)
    tok["hmmlearn"] = n_h * th / best_h["hmm"]
    res["hmmlearn_sequences_timed"] = [n_h, th]
    res["tokens_per_s_main"] = tok

    per_threads: dict[int, dict] = {main_threads: {"sample": tok["dp_sample"], "log_prob": tok["dp_log_prob"]}}
    for w in workers:
        per_threads[w.threads] = {"sample": n * t / w.best["dp_sample"], "log_prob": n * t / w.best["dp_log_prob"]}
    if "rng_only" in tok:
        per_threads[main_threads]["rng_only"] = tok["rng_only"]
        for w in workers:
            per_threads[w.threads]["rng_only"] = n * t / w.best["rng_only"]
    per_threads = dict(sorted(per_threads.items()))
    res["dataprobes_by_threads"] = {str(c): d for c, d in per_threads.items()}
    keys = {"sample": "dp_sample", "rng_only": "rng_only", "log_prob": "dp_log_prob"}

    def rates(ts: dict[str, list[float]]) -> dict[str, list[float]]:
        return {name: sorted(n * t / x for x in ts[key]) for name, key in keys.items() if key in ts}

    after_rates = {main_threads: rates(times)} | {w.threads: rates(w.times) for w in workers}
    res["after_rates_by_threads"] = {str(c): after_rates[c] for c in sorted(after_rates)}
    if base_workers:
        res["before_rates_by_threads"] = {str(w.threads): rates(w.times) for w in base_workers}
        res["numpy_rates"] = {
            "numpy_guide": sorted(n * t / x for x in times["numpy_guide"]),
            "numpy_log_prob": sorted(n * t / x for x in times["numpy_log_prob"]),
        }

    numpy_best_name = max(("numpy_guide", "numpy_searchsorted", "numpy_compare"), key=lambda m: tok[m])
    res["numpy_best"] = numpy_best_name
    ratios: dict[str, dict] = {}
    for c, d in per_threads.items():
        ratios[str(c)] = {
            "sample_vs_numpy_best": d["sample"] / tok[numpy_best_name],
            "sample_vs_numpy_searchsorted": d["sample"] / tok["numpy_searchsorted"],
            "sample_vs_numpy_compare": d["sample"] / tok["numpy_compare"],
            "sample_vs_hmmlearn": d["sample"] / tok["hmmlearn"],
            "log_prob_vs_numpy": d["log_prob"] / tok["numpy_log_prob"],
        }
        if "rng_only" in d:
            ratios[str(c)]["rng_only_vs_sample"] = d["rng_only"] / d["sample"]
    res["ratios"] = ratios
    return res


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------


def fmt_rate(x: float) -> str:
    if x >= 1e9:
        return f"{x / 1e9:.2f} G"
    if x >= 1e6:
        return f"{x / 1e6:.1f} M"
    if x >= 1e3:
        return f"{x / 1e3:.1f} k"
    return f"{x:.0f} "


def spread(xs: list[float]) -> str:
    """best (median; worst) of a list of rates."""
    return f"{fmt_rate(max(xs))} ({fmt_rate(float(np.median(xs)))}; {fmt_rate(min(xs))})"


def before_after_markdown(results: list[dict], threads: list[int]) -> list[str]:
    """The baseline build (``--baseline``) and this one, measured in the same
    run, round by round. Rates: best (median; worst) over the rounds; ratios
    from the best."""
    lines = [
        "### Before / after (same run; tokens/s, best (median; worst) of the rounds; ratios of the bests)",
        "",
        "| V | thr | what | before | after | after ÷ before | numpy (1 thr) | after ÷ numpy | "
        "rng-only ÷ sample, before → after |",
        "|---|---:|---|---|---|---:|---|---:|---|",
    ]
    for r in results:
        if "before_rates_by_threads" not in r:
            continue
        v = r["V"]
        npr = r["numpy_rates"]
        for c in threads:
            b = r["before_rates_by_threads"][str(c)]
            a = r["after_rates_by_threads"][str(c)]
            for what, base_key, base_label in [
                ("sample", "numpy_guide", "guide table"),
                ("log_prob", "numpy_log_prob", "gather"),
            ]:
                nb = max(npr[base_key])
                rng = (
                    f"{max(b['rng_only']) / max(b['sample']):.2f}× → {max(a['rng_only']) / max(a['sample']):.2f}×"
                    if what == "sample"
                    else ""
                )
                lines.append(
                    f"| {v} | {c} | `{what}` | {spread(b[what])} | **{spread(a[what])}** | "
                    f"{max(a[what]) / max(b[what]):.2f}× | {base_label}: {spread(npr[base_key])} | "
                    f"{max(a[what]) / nb:.1f}× | {rng} |"
                )
            lines.append(f"| {v} | {c} | rng-only limit | {spread(b['rng_only'])} | {spread(a['rng_only'])} | | | | |")
    return lines


def markdown(results: list[dict], threads: list[int]) -> str:
    lines = []
    hdr = (
        "| V | method | "
        + " | ".join(f"tokens/s ({c} thr)" for c in threads)
        + " | "
        + " | ".join(f"dataprobes ÷ method ({c} thr)" for c in threads)
        + " |"
    )
    lines += ["### Sampling (tokens/s; ratio = dataprobes ÷ method, rng-only row: rng-only ÷ dataprobes)", "", hdr]
    lines.append("|" + "---|" * (2 + 2 * len(threads)))
    for r in results:
        v, tok, byt = r["V"], r["tokens_per_s_main"], r["dataprobes_by_threads"]
        dps = [byt[str(c)]["sample"] for c in threads]
        lines.append(
            f"| {v} | **dataprobes `sample`** | "
            + " | ".join(f"**{fmt_rate(x)}**" for x in dps)
            + " | "
            + " | ".join("1" for _ in threads)
            + " |"
        )
        if all("rng_only" in byt[str(c)] for c in threads):
            lines.append(
                f"| {v} | rng-only limit (`rng_only_fill`) | "
                + " | ".join(fmt_rate(byt[str(c)]["rng_only"]) for c in threads)
                + " | "
                + " | ".join(
                    f"rng-only is {byt[str(c)]['rng_only'] / byt[str(c)]['sample']:.1f}× faster" for c in threads
                )
                + " |"
            )
        h_n, h_t = r["hmmlearn_sequences_timed"]
        rows = [
            ("numpy_guide", "numpy inverse-CDF, guide table (fastest numpy)"),
            (
                "numpy_searchsorted",
                "numpy inverse-CDF, flat `searchsorted`"
                + (
                    f" ({r['numpy_searchsorted_steps_timed']} steps timed)"
                    if r["numpy_searchsorted_steps_timed"] != r["T"]
                    else ""
                ),
            ),
            ("numpy_compare", f"numpy inverse-CDF, compare-sum ({r['numpy_compare_steps_timed']} steps timed)"),
            ("hmmlearn", f"hmmlearn `CategoricalHMM.sample` ({h_n}×{h_t} tokens timed)"),
        ]
        for key, label in rows:
            rate = tok[key]
            lines.append(
                f"| {v} | {label} | "
                + " | ".join(fmt_rate(rate) for _ in threads)
                + " | "
                + " | ".join(f"{d / rate:,.1f}×" for d in dps)
                + " |"
            )
    lines += ["", "### Scoring: `log_prob` (tokens/s; ratio = dataprobes ÷ numpy gather)", ""]
    lines.append(
        "| V | numpy gather | "
        + " | ".join(f"dataprobes ({c} thr)" for c in threads)
        + " | "
        + " | ".join(f"ratio ({c} thr)" for c in threads)
        + " |"
    )
    lines.append("|" + "---|" * (2 + 2 * len(threads)))
    for r in results:
        base = r["tokens_per_s_main"]["numpy_log_prob"]
        lps = [r["dataprobes_by_threads"][str(c)]["log_prob"] for c in threads]
        lines.append(
            f"| {r['V']} | {fmt_rate(base)} | "
            + " | ".join(fmt_rate(x) for x in lps)
            + " | "
            + " | ".join(f"{x / base:.1f}×" for x in lps)
            + " |"
        )
    if any("before_rates_by_threads" in r for r in results):
        lines += ["", *before_after_markdown(results, threads)]
    # targets
    c_max = str(max(threads))
    lines += ["", f"### Targets ({c_max} threads)", "", "| target | V | measured | met |", "|---|---|---|---|"]
    for r in results:
        rt = r["ratios"][c_max]
        for key, label, tgt in [
            ("sample_vs_numpy_best", "sampling ≥ 40× numpy (fastest numpy sampler)", TARGETS["sample_vs_numpy"]),
            ("sample_vs_numpy_searchsorted", "sampling ≥ 40× numpy (flat searchsorted)", TARGETS["sample_vs_numpy"]),
            ("sample_vs_hmmlearn", "sampling ≥ 1000× hmmlearn", TARGETS["sample_vs_hmmlearn"]),
            ("log_prob_vs_numpy", "log_prob ≥ 20× numpy gather", TARGETS["log_prob_vs_numpy"]),
        ]:
            if key.startswith("sample") and r["V"] != 128:
                label += " (stated for V=128; shown for reference)"
            lines.append(f"| {label} | {r['V']} | {rt[key]:,.1f}× | {'yes' if rt[key] >= tgt else '**no**'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke test in seconds")
    ap.add_argument("--json", metavar="PATH", help="write all measurements to this JSON file")
    ap.add_argument("--threads", default=None, help="comma-separated RAYON_NUM_THREADS values (default: 1,nproc)")
    ap.add_argument("--vocab", default=None, help="comma-separated vocabulary sizes (default: 128,4096)")
    ap.add_argument("--repeats", type=int, default=None, help="best-of-k rounds (default 9; quick: 2)")
    ap.add_argument(
        "--entropy-frac", type=float, default=0.5, help="entropy rate of the chain as a fraction of log V (default 0.5)"
    )
    ap.add_argument(
        "--baseline",
        metavar="SO",
        help="a _core shared library built from an earlier commit: timed at every --threads value in "
        "child processes, interleaved with this build, and shown side by side (its outputs are "
        "asserted to be byte-identical to this build's)",
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return

    ncpu = os.cpu_count() or 1
    threads = sorted({int(s) for s in args.threads.split(",")}) if args.threads else sorted({1, ncpu})
    main_threads = max(threads)
    # The rayon pool is sized when the extension first runs: fix it before import.
    os.environ["RAYON_NUM_THREADS"] = str(main_threads)
    vocabs = [int(s) for s in args.vocab.split(",")] if args.vocab else ([128, 256] if args.quick else [128, 4096])
    cfg = dict(
        quick=args.quick,
        n=256 if args.quick else 4096,
        t=128 if args.quick else 1024,
        repeats=args.repeats or (2 if args.quick else 9),
        entropy_frac=args.entropy_frac,
        compare_steps=8 if args.quick else 64,
        searchsorted_steps=32 if args.quick else 128,
        hmm_t=128 if args.quick else 1024,
        hmm_budget_s=0.2 if args.quick else 1.5,
        hmm_max_seqs=4 if args.quick else 512,
        hmm_repeats=1 if args.quick else 2,
        baseline=os.path.abspath(args.baseline) if args.baseline else None,
    )
    import hmmlearn

    import dataprobes

    warnings.filterwarnings("ignore", module="hmmlearn")
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "cpu_count": ncpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "hmmlearn": hmmlearn.__version__,
        "dataprobes": getattr(dataprobes, "__version__", "?"),
        "threads": threads,
        "loadavg_at_start": load,
        "config": cfg,
    }
    print(json.dumps(meta, indent=1))
    if load[0] > 0.5:
        print(f"warning: load average {load[0]:.2f} at start; timings may be disturbed", file=sys.stderr)
    if not has_rng_only():
        print(
            "note: dataprobes._core.rng_only_fill is not in this build (it needs the cargo feature `bench`: "
            "`maturin develop --release --features bench`); the RNG-only line is skipped",
            file=sys.stderr,
        )
    results = []
    with tempfile.TemporaryDirectory() as tmpdir:
        for v in vocabs:
            results.append(bench_vocab(v, cfg, threads, main_threads, tmpdir))
    table = markdown(results, threads)
    print()
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": results, "markdown": table}, f, indent=1, default=float)


if __name__ == "__main__":
    main()
