"""Fast diversity measures: dataprobes (Rust) vs the packages users reach for,
side by side on the same inputs.

English-like texts (Zipf words, punctuation, some accented and Greek words;
``--texts`` of them, 20–150 words each) are scored by

* ``diversity`` (0.3): ``compression_ratio`` (gzip), ``ngram_diversity_score``,
  ``self_repetition_score``, ``homogenization_score(measure='rougel')``;
* ``nltk`` ``sentence_bleu`` (method1 smoothing, Texygen's self-BLEU) and
  ``sacrebleu.sentence_bleu`` (``tokenize='none'``), each text against all others;
* ``vendi-score``'s ``score_X`` on ``--n`` × ``--dim`` Gaussian-mixture features;

and by the matching ``dataprobes.metrics`` function. The pairwise measures
(homogenisation, self-BLEU) cost the references O(n²) Python calls, so they run
on the first ``--rouge`` / ``--pairwise`` texts. Before timing, the outputs are asserted
equal (to the reference's 3 rounded decimals where it rounds, else to 1e-9
relative). Repeats interleave reference and dataprobes; the table gives the
median time with its min–max spread, MB/s of UTF-8 input, and the median of
the per-repeat ratios with their spread. The ``diversity`` modules are loaded
from their files (its ``__init__`` imports spacy and an LLM client, 20 s, which
these functions do not use). numpy/BLAS run on one thread for both sides;
dataprobes uses ``RAYON_NUM_THREADS`` (default: all cores).

    OMP_NUM_THREADS=1 python benches/bench_diversity.py            # ~5 minutes on 2 loaded cores
    OMP_NUM_THREADS=1 python benches/bench_diversity.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dataprobes.metrics import (
    compression_ratio,
    homogenization_rougel,
    ngram_diversity,
    self_bleu,
    self_repetition,
    vendi_score,
)

WORDS = (
    "the of and to in a is that for it as was with be by on not he I this are or his from at which but have an "
    "they you were her she there one all we their been has would when who will more if no out so said what up its "
    "about into than them can only other time new some could these two may first then do any like my now over such "
    "our man me even most made after also did many before must through back years where much your way well down "
    "should because each just those people Mr how too little state good very make world still own see men work long "
    "get here between both life being under never day same another know while last might us great old year off come "
    "since against go came right used take three café naïve über résumé ΟΔΟΣ λόγος"
).split()
PUNCT = [".", ",", ",", ".", "!", "?", ";", ":"]


def make_texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    p = np.arange(1, len(WORDS) + 1) ** -1.1
    p /= p.sum()
    out = []
    for _ in range(n):
        k = int(rng.integers(20, 150))
        w = np.asarray(WORDS)[rng.choice(len(WORDS), size=k, p=p)]
        punct = rng.random(k) < 0.1
        toks = [f"{x}{PUNCT[int(rng.integers(len(PUNCT)))]}" if q else str(x) for x, q in zip(w, punct, strict=True)]
        out.append(" ".join(toks).capitalize() + ".")
    return out


def load_diversity(name: str) -> Any:
    spec = importlib.util.find_spec("diversity")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the diversity package is not installed (pip install diversity)")
    path = Path(list(spec.submodule_search_locations)[0]) / f"{name}.py"
    if name == "homogenization" and "evaluate" not in sys.modules:
        stub = types.ModuleType("evaluate")
        stub.load = None  # type: ignore[attr-defined]  # used by bertscore/bleu only
        sys.modules["evaluate"] = stub
    mspec = importlib.util.spec_from_file_location(f"_ref_{name}", path)
    assert mspec is not None and mspec.loader is not None
    mod = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(mod)
    return mod


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def compare(
    name: str, ref: Callable[[], Any], ours: Callable[[], Any], check: Callable[[Any, Any], None], mb: float, reps: int
) -> dict[str, Any]:
    check(ref(), ours())  # equal outputs first
    tr, to = [], []
    for _ in range(reps):
        tr.append(timed(ref)[0])
        to.append(timed(ours)[0])
    ratios = [a / b for a, b in zip(tr, to, strict=True)]
    row = {
        "name": name,
        "ref_s": statistics.median(tr),
        "ref_spread": (min(tr), max(tr)),
        "ours_s": statistics.median(to),
        "ours_spread": (min(to), max(to)),
        "mb": mb,
        "ratio": statistics.median(ratios),
        "ratio_spread": (min(ratios), max(ratios)),
    }
    print(
        f"| {name} | {row['ref_s'] * 1e3:.1f} ({min(tr) * 1e3:.1f}–{max(tr) * 1e3:.1f}) | "
        f"{row['ours_s'] * 1e3:.2f} ({min(to) * 1e3:.2f}–{max(to) * 1e3:.2f}) | "
        f"{mb / row['ref_s']:.2f} | {mb / row['ours_s']:.1f} | "
        f"**{row['ratio']:.0f}×** ({min(ratios):.0f}–{max(ratios):.0f}) |",
        flush=True,
    )
    return row


def rounded(ref: float, ours: float) -> None:
    assert abs(ref - ours) <= 5e-4 + 1e-12, (ref, ours)


def close(ref: Any, ours: Any) -> None:
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-300)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--pairwise", type=int, default=200, help="texts for the O(n^2) self-BLEU references")
    ap.add_argument("--rouge", type=int, default=100, help="texts for the O(n^2) ROUGE-L reference")
    ap.add_argument("--n", type=int, default=3000, help="Vendi: rows")
    ap.add_argument("--dim", type=int, default=384, help="Vendi: feature dimension")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.texts, args.pairwise, args.rouge, args.n, args.dim, args.repeats = 200, 40, 20, 400, 64, 2

    import sacrebleu
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from vendi_score import vendi

    comp = load_diversity("compression")
    ngd = load_diversity("ngram_diversity")
    rep = load_diversity("self_repetition")
    hom = load_diversity("homogenization")

    texts = make_texts(args.texts, 0)
    pair = texts[: args.pairwise]
    mb = len(" ".join(texts).encode()) / 1e6
    pmb = len(" ".join(pair).encode()) / 1e6
    rpair = texts[: args.rouge]
    rmb = len(" ".join(rpair).encode()) / 1e6
    print(
        f"# {args.texts} texts, {mb:.2f} MB; pairwise on {args.pairwise} texts ({pmb:.3f} MB); "
        f"RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', 'all')}, cores={os.cpu_count()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, load {os.getloadavg()[0]:.1f}"
    )
    print("| measure | reference ms (min–max) | dataprobes ms (min–max) | ref MB/s | ours MB/s | speed-up (min–max) |")
    print("|---|---|---|---|---|---|")
    reps = args.repeats
    rows = [
        compare(
            "compression ratio, gzip (package's double gzip)",
            lambda: comp.compression_ratio(texts, "gzip"),
            lambda: compression_ratio(texts, double_gzip=True),
            lambda r, o: rounded(r, round(o, 3)),
            mb,
            reps,
        ),
        compare(
            "compression ratio: package gzip vs dataprobes zstd",
            lambda: comp.compression_ratio(texts, "gzip"),
            lambda: compression_ratio(texts, "zstd"),
            lambda r, o: None,  # a different codec: not the same number
            mb,
            reps,
        ),
        compare(
            "n-gram diversity (n ≤ 4)",
            lambda: ngd.ngram_diversity_score(texts, 4),
            lambda: ngram_diversity(texts, 4),
            rounded,
            mb,
            reps,
        ),
        compare(
            "self-repetition (n = 4)",
            lambda: rep.self_repetition_score(texts, 4, verbose=False),
            lambda: self_repetition(texts, 4),
            close,
            mb,
            reps,
        ),
    ]
    toks = [t.split() for t in pair]
    m1 = SmoothingFunction().method1
    reps_slow = max(1, min(reps, 3))
    rows += [
        compare(
            f"homogenisation ROUGE-L ({args.rouge} texts)",
            lambda: hom.homogenization_score(rpair, "rougel", verbose=False),
            lambda: homogenization_rougel(rpair),
            rounded,
            rmb,
            reps_slow,
        ),
        compare(
            f"self-BLEU, nltk method1 ({args.pairwise} texts)",
            lambda: float(
                np.mean(
                    [sentence_bleu(toks[:i] + toks[i + 1 :], toks[i], smoothing_function=m1) for i in range(len(toks))]
                )
            ),
            lambda: self_bleu(pair),
            close,
            pmb,
            reps_slow,
        ),
        compare(
            f"self-BLEU, sacrebleu ({args.pairwise} texts)",
            lambda: float(
                np.mean(
                    [
                        sacrebleu.sentence_bleu(pair[i], pair[:i] + pair[i + 1 :], tokenize="none").score / 100
                        for i in range(len(pair))
                    ]
                )
            ),
            lambda: self_bleu(pair, reference="sacrebleu"),
            close,
            pmb,
            reps_slow,
        ),
    ]
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(20, args.dim))
    x = centres[rng.integers(0, 20, size=args.n)] + 0.8 * rng.normal(size=(args.n, args.dim))
    xmb = x.nbytes / 1e6
    rows.append(
        compare(
            f"Vendi score, {args.n} × {args.dim} features",
            lambda: float(vendi.score_X(x)),
            lambda: vendi_score(x),
            close,
            xmb,
            reps_slow,
        )
    )
    # the approximation beyond exact_max_n: error and time against the exact value
    exact = vendi_score(x)
    t, approx = timed(lambda: vendi_score(x, exact_max_n=args.dim - 1))
    print(
        f"# Vendi SLQ (deflate 64, 32 probes × 48 steps) on the same features: {approx:.3f} vs exact {exact:.3f} "
        f"({100 * (approx / exact - 1):+.2f}%), {t * 1e3:.0f} ms"
    )


if __name__ == "__main__":
    main()
