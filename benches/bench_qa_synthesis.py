"""QA synthesis on a fact world: yield, failures by kind, answer accuracy
against the fact table and hop counts, as JSON defects get more frequent.

Renders a :class:`dataprobes.FactWorld`'s facts into documents
(:class:`dataprobes.qa.truth.FactCorpus`; a synthetic fact table of the same
shape when ``FactWorld`` is not installed), plays the model with the
deterministic :class:`~dataprobes.qa.truth.ScriptedFactGenerator` behind
:class:`~dataprobes.qa.faults.FaultyGenerator` (every defect kind at the same
rate ``p``, one re-ask per call), runs :func:`dataprobes.qa.generate_testset`
(Ragas v0.1 mix, or all five evolutions with ``--all``) and judges every
accepted sample with :func:`~dataprobes.qa.truth.check_testset`.

Before measuring, it asserts that the recoverable defects (fences,
preambles, trailing prose, trailing commas, single quotes, string verdicts)
at rate 1 give exactly the test set of the clean run (nothing lost to
parsing), and that the counts add up (accepted + rejections = tries). Times
are medians over ``--repeats`` interleaved runs with their spread (min-max).

    python benches/bench_qa_synthesis.py            # 300 samples per rate
    python benches/bench_qa_synthesis.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections import Counter
from typing import Any

import numpy as np

import dataprobes as dp
from dataprobes.qa.faults import DEFECTS, FaultyGenerator
from dataprobes.qa.pipeline import generate_testset
from dataprobes.qa.truth import FactCorpus, ScriptedFactGenerator, check_testset

RECOVERABLE = ("fence", "preamble", "trailing_prose", "trailing_comma", "single_quotes", "string_verdict")


def corpus_of(
    num_facts: int, relations: int, objects: int, per_doc: int, order: str, seed: int
) -> tuple[FactCorpus, str]:
    if hasattr(dp, "FactWorld"):
        bg = dp.MarkovChain.random(32, seed=seed)
        world = dp.FactWorld(num_facts, relations, 3, bg, num_objects=objects, seed=seed)
        return FactCorpus.from_world(world, facts_per_document=per_doc, order=order, seed=seed), "FactWorld"
    rng = np.random.default_rng(seed)
    subjects = -(-num_facts // relations)
    facts = [
        (f"Subj{s}", f"rel{r}", f"Obj{int(rng.integers(objects))}") for s in range(subjects) for r in range(relations)
    ]
    templates = ["the {relation} of {subject} is {object}", "{subject} has {object} as {relation}"]
    return FactCorpus(
        facts[:num_facts], templates, facts_per_document=per_doc, order=order, seed=seed
    ), "synthetic table"


def run(corpus: FactCorpus, rate: dict[str, float], n: int, dist: dict[str, float] | None, seed: int) -> Any:
    gen = FaultyGenerator(ScriptedFactGenerator(corpus).object, rate, seed, model="scripted-facts")
    t0 = time.perf_counter()
    ts = generate_testset(
        corpus.documents, gen, n, distribution=dist, seed=seed, related=corpus.related, progress=False
    )
    return ts, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--facts", type=int, default=240)
    ap.add_argument("--relations", type=int, default=4)
    ap.add_argument("--objects", type=int, default=400)
    ap.add_argument("--per-doc", type=int, default=3)
    ap.add_argument("--order", choices=("shuffled", "subject"), default="subject", help="facts in documents")
    ap.add_argument("--rates", default="0,0.05,0.1,0.2,0.4")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--all", action="store_true", help="all five evolutions in equal shares")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if a.quick:
        a.samples, a.facts, a.repeats, a.rates = 40, 60, 1, "0,0.2"
    rates = [float(x) for x in a.rates.split(",")]
    corpus, source = corpus_of(a.facts, a.relations, a.objects, a.per_doc, a.order, a.seed)
    dist = (
        {k: 1.0 for k in ("simple", "reasoning", "conditional", "multi_context", "conversational")} if a.all else None
    )
    print(
        f"# {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()}"
    )
    print(
        f"# corpus: {source}, {len(corpus.facts)} facts, {len(corpus.documents)} documents ({a.order}), {a.samples} samples"
    )

    # correctness first: recoverable defects lose nothing; counts add up
    clean, _ = run(corpus, {}, a.samples // 2, dist, a.seed)
    noisy, _ = run(corpus, dict.fromkeys(RECOVERABLE, 1.0), a.samples // 2, dist, a.seed)
    assert noisy.samples == clean.samples and not noisy.failures, "recoverable defects changed the test set"
    assert clean.num_samples + sum(clean.rejections.values()) == clean.tries

    rows: dict[float, dict[str, Any]] = {}
    times: dict[float, list[float]] = {r: [] for r in rates}
    for _ in range(a.repeats):  # interleaved repeats
        for r in rates:
            ts, dt = run(corpus, dict.fromkeys(DEFECTS, r), a.samples, dist, a.seed)
            times[r].append(dt)
            if r in rows:
                assert ts.samples == rows[r]["ts"].samples  # deterministic for a seed
                continue
            rows[r] = {"ts": ts, "truth": check_testset(ts, corpus)}
    print(
        "\n| defect rate p (each of 8) | yield | tries | rejections | generator failures | recovered | accuracy "
        "| answerable | several answers | hops 1/2/3 | dup. | time s (median, min-max) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    out = []
    for r in rates:
        ts, tr = rows[r]["ts"], rows[r]["truth"]
        hops = tr.hop_counts
        med = statistics.median(times[r])
        rej = ", ".join(f"{k} {v}" for k, v in sorted(ts.rejections.items()))
        fails = ", ".join(f"{k} {v}" for k, v in sorted(ts.failures.items())) or "none"
        saved = ", ".join(f"{k} {v}" for k, v in sorted(ts.recovered.items())) or "none"
        acc = "n/a" if tr.accuracy is None else f"{tr.accuracy:.3f}"
        ans = "n/a" if tr.answerable is None else f"{tr.answerable:.3f}"
        several = sum(t.num_answers > 1 for t in tr.samples)
        print(
            f"| {r:g} | {ts.num_samples}/{ts.test_size} ({ts.yield_fraction:.0%}) | {ts.tries} | {rej} | {fails} | {saved} "
            f"| {acc} | {ans} | {several} | {hops.get(1, 0)}/{hops.get(2, 0)}/{hops.get(3, 0)} | {tr.duplicates} "
            f"| {med:.2f} ({min(times[r]):.2f}-{max(times[r]):.2f}) |"
        )
        out.append(
            {
                "rate": r,
                "report": ts.report(),
                "accuracy": tr.accuracy,
                "answerable": tr.answerable,
                "several_answers": several,
                "hops": hops,
                "duplicates": tr.duplicates,
                "times": times[r],
                "by_evolution": tr.by_evolution(),
            }
        )
    print(f"\n# by evolution at p = {rates[0]:g} (dedup: {rows[rates[0]]['truth'].dedup_method})")
    print("| evolution | samples | accuracy | answerable | several answers | hops |")
    print("|---|---|---|---|---|---|")
    truth0 = rows[rates[0]]["truth"]
    for name, v in truth0.by_evolution().items():
        several = sum(t.num_answers > 1 for t in truth0.samples if t.evolution == name)
        print(
            f"| {name} | {v['samples']} | {v['accuracy']:.3f} | {v['answerable']:.3f} | {several} | {v['hop_counts']} |"
        )
    mix = Counter(s["evolution"] for s in rows[rates[0]]["ts"].samples)
    print(f"# accepted mix at p = {rates[0]:g}: {dict(sorted(mix.items()))}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()
