"""QA parse/repair layer on known JSON defects: recovered fraction per defect,
silent errors, the bounded re-ask, and parse speed.

Objects of three schemas (a QA pair; a critic verdict with a defaulted
``verdict: int = 0`` field, the shape ragas' critics use; a nested record with
lists, floats and an optional field) are drawn at random (words with quotes,
apostrophes, braces, backslashes and non-ASCII letters) and written with
``dataprobes.qa.inject_defects``. Three parsers read each text:

* ``dataprobes``: ``parse_object`` (fences, first balanced object,
  ``json_repair``, unknown-key check, pydantic validation);
* ``json.loads``: the whole text, then pydantic (what a strict parser does);
* ``json_repair``: ``json_repair.loads`` of the whole text, then pydantic
  (repair everything, trust the result).

Each outcome is *recovered* (the validated object equals the one written),
*silent error* (an object validated but differs from the truth: the failure
that ragas turned into wrong statistics) or *counted failure*.

Then ``FaultyGenerator`` runs each defect alone at rate ``p`` and all defects
together through the generator loop, with and without one re-ask, against
the prediction for independent attempts (a sample is lost when all its
``1 + max_reasks`` attempts draw an unrecoverable defect: ``q^(1+r)``).

Speed: ``parse_object`` vs ``json.loads`` + validation on defect-free texts
(outputs asserted equal first) and on the defect mix; interleaved repeats,
median and spread (min-max) of objects/s.

    python benches/bench_qa_parse.py            # 2,000 objects per defect
    python benches/bench_qa_parse.py --quick    # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from collections import Counter
from typing import Any

import json_repair
from pydantic import BaseModel, Field, ValidationError

from dataprobes.qa import DEFECTS, FaultyGenerator, inject_defects, parse_object

WORDS = (
    'the capital of France is Paris who wrote Hamlet it\'s a "quoted" word {braces} [brackets] back\\slash '
    "café naïve λόγος 東京 emoji🙂 colon: comma, semi; tab\tnewline\n apostrophe' O'Brien 42 3.14 -7 true null"
).split(" ")


class QAPair(BaseModel):
    question: str
    answer: str


class Verdict(BaseModel):
    reason: str
    verdict: int = 0


class Part(BaseModel):
    name: str
    weight: float


class Record(BaseModel):
    title: str
    year: int
    score: float | None = None
    tags: list[str] = Field(default_factory=list)
    parts: list[Part] = Field(default_factory=list)
    done: bool = False


def text(rng: random.Random, k: int = 6) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, k)))


def make_object(rng: random.Random) -> BaseModel:
    kind = rng.randrange(3)
    if kind == 0:
        return QAPair(question=text(rng, 10) + "?", answer=text(rng))
    if kind == 1:
        return Verdict(reason=text(rng, 12), verdict=rng.choice([0, 1, 1]))
    return Record(
        title=text(rng),
        year=rng.randint(1500, 2100),
        score=None if rng.random() < 0.3 else round(rng.uniform(-5, 5), rng.randint(0, 6)),
        tags=[text(rng, 2) for _ in range(rng.randint(0, 3))],
        parts=[Part(name=text(rng, 2), weight=rng.uniform(0, 1)) for _ in range(rng.randint(0, 2))],
        done=rng.random() < 0.5,
    )


def naive(method: str, t: str, schema: type[BaseModel]) -> BaseModel | None:
    try:
        obj = json.loads(t) if method == "json.loads" else json_repair.loads(t)
        return schema.model_validate(obj)
    except (ValueError, ValidationError, TypeError):
        return None


def classify(value: BaseModel | None, truth: BaseModel) -> str:
    if value is None:
        return "failed"
    return "recovered" if value == truth else "silent"


def parse_table(objects: list[BaseModel], seed: int) -> tuple[list[str], dict[str, Any]]:
    rows = [
        "| defect | dataprobes recovered | dataprobes silent errors | dataprobes failure kinds "
        "| json.loads recovered | json_repair recovered | json_repair silent errors |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    out: dict[str, Any] = {}
    for defect in ("none", *DEFECTS):
        tally = {m: Counter[str]() for m in ("dataprobes", "json.loads", "json_repair")}
        kinds: Counter[str] = Counter()
        for j, obj in enumerate(objects):
            t = inject_defects(obj, [] if defect == "none" else [defect], seed=seed + j)
            parsed = parse_object(t, type(obj))
            tally["dataprobes"][classify(parsed.value, obj)] += 1
            if parsed.kind is not None:
                kinds[str(parsed.kind)] += 1
            for m in ("json.loads", "json_repair"):
                tally[m][classify(naive(m, t, type(obj)), obj)] += 1
        n = len(objects)
        frac = {m: {k: c / n for k, c in t.items()} for m, t in tally.items()}
        out[defect] = {"fractions": frac, "kinds": dict(kinds)}
        kind_text = ", ".join(f"{k} {c / n:.3f}" for k, c in kinds.most_common()) or "-"
        rows.append(
            f"| {defect} | {frac['dataprobes'].get('recovered', 0):.3f} | {frac['dataprobes'].get('silent', 0):.3f} "
            f"| {kind_text} | {frac['json.loads'].get('recovered', 0):.3f} "
            f"| {frac['json_repair'].get('recovered', 0):.3f} | {frac['json_repair'].get('silent', 0):.3f} |"
        )
    return rows, out


def loop_table(objects: list[BaseModel], n: int, p: float, seed: int) -> tuple[list[str], dict[str, Any]]:
    rows = [
        "| defects (rate each) | reasks | produced | predicted | lost | attempts/sample | silent errors | failures by kind |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    out: dict[str, Any] = {}
    unrecoverable = {"truncation", "wrong_keys"}
    setups = [(d, {d: p}) for d in DEFECTS] + [("all eight", dict.fromkeys(DEFECTS, p / 2))]
    for name, rates in setups:
        q = 1.0
        for d, r in rates.items():
            if d in unrecoverable:
                q *= 1 - r
        q = 1 - q  # probability that an attempt cannot be recovered by parsing
        for reasks in (0, 1):
            gen = FaultyGenerator(objects, rates, seed=seed, max_reasks=reasks)
            res = gen.generate("Write the object.", type(objects[0]), n=n, seed=seed)
            silent = sum(
                obj != gen.emission("Write the object.", type(objects[0]), seed, i).object
                for obj, i in zip(res.objects, res.indices, strict=True)
            )
            produced = len(res.objects) / n
            predicted = 1 - q ** (1 + reasks)
            kinds = ", ".join(f"{k} {c}" for k, c in sorted(res.counts.by_kind.items())) or "-"
            label = f"{name} ({p / 2 if name == 'all eight' else p:g})"
            rows.append(
                f"| {label} | {reasks} | {produced:.3f} | {predicted:.3f} | {res.lost} "
                f"| {res.attempts / n:.3f} | {silent} | {kinds} |"
            )
            out[f"{name}/reasks={reasks}"] = {"produced": produced, "predicted": predicted, "silent": silent}
    return rows, out


def rate(fn: Any, items: list[tuple[str, type[BaseModel]]]) -> float:
    t0 = time.perf_counter()
    for t, schema in items:
        fn(t, schema)
    return len(items) / (time.perf_counter() - t0)


def speed_table(objects: list[BaseModel], seed: int, repeats: int) -> tuple[list[str], dict[str, Any]]:
    clean = [(inject_defects(o, []), type(o)) for o in objects]
    rng = random.Random(seed)
    mixed = [
        (inject_defects(o, [d for d in DEFECTS if rng.random() < 0.15], seed=seed + j), type(o))
        for j, o in enumerate(objects)
    ]
    for (t, schema), obj in zip(clean, objects, strict=True):  # equal outputs before timing
        assert parse_object(t, schema).value == obj == schema.model_validate(json.loads(t))

    def ours(t: str, schema: type[BaseModel]) -> Any:
        return parse_object(t, schema).value

    def strict(t: str, schema: type[BaseModel]) -> Any:
        return naive("json.loads", t, schema)

    def repair(t: str, schema: type[BaseModel]) -> Any:
        return naive("json_repair", t, schema)

    methods = {"parse_object": ours, "json.loads + validate": strict, "json_repair.loads + validate": repair}
    rates: dict[str, dict[str, list[float]]] = {s: {m: [] for m in methods} for s in ("clean", "mixed")}
    for _ in range(repeats):  # interleaved
        for setname, items in (("clean", clean), ("mixed", mixed)):
            for m, fn in methods.items():
                rates[setname][m].append(rate(fn, items))
    rows = [
        "| texts | method | objects/s (median) | spread (min-max) | parse_object ÷ method |",
        "|---|---|---:|---:|---:|",
    ]
    for setname in ("clean", "mixed"):
        ref = statistics.median(rates[setname]["parse_object"])
        for m in methods:
            r = rates[setname][m]
            med = statistics.median(r)
            rows.append(f"| {setname} | {m} | {med:,.0f} | {min(r):,.0f}-{max(r):,.0f} | {ref / med:.2f} |")
    return rows, rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=2000, help="objects per defect")
    ap.add_argument("--samples", type=int, default=2000, help="samples per generator-loop setup")
    ap.add_argument("--rate", type=float, default=0.3, help="defect rate in the generator-loop table")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", help="write every figure to this file")
    args = ap.parse_args()
    if args.quick:
        args.objects, args.samples, args.repeats = 200, 200, 2
    rng = random.Random(args.seed)
    objects = [make_object(rng) for _ in range(args.objects)]
    print(f"# {platform.node()} {platform.machine()} python {platform.python_version()} load {os.getloadavg()}")
    print(f"\n## Parsing one text per object ({args.objects} objects, 3 schemas), each defect alone\n")
    rows, parse_out = parse_table(objects, args.seed)
    print("\n".join(rows))
    print(f"\n## Through the generator loop ({args.samples} samples, Verdict schema), with and without one re-ask\n")
    verdicts = [Verdict(reason=text(rng, 12), verdict=rng.choice([0, 1])) for _ in range(200)]
    rows, loop_out = loop_table(verdicts, args.samples, args.rate, args.seed)
    print("\n".join(rows))
    print(f"\n## Speed ({args.objects} texts, {args.repeats} interleaved repeats)\n")
    rows, speed_out = speed_table(objects, args.seed, args.repeats)
    print("\n".join(rows))
    print(f"\n# load after {os.getloadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"parse": parse_out, "loop": loop_out, "speed": speed_out, "args": vars(args)}, f, indent=1)


if __name__ == "__main__":
    main()
