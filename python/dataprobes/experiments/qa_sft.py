"""The "60 data points" QA-SFT study on fact worlds.

Ye et al., "60 Data Points are Sufficient to Fine-Tune LLMs for
Question-Answering" (arXiv 2409.15825) bucket facts by the pretrained model's
memory level (multi-template completion), fine-tune on N QA examples of one
level and measure QA accuracy per test level. Here the whole pipeline runs on
a :class:`~dataprobes.FactWorld`, where exposure is planted and the QA format
never occurs in pretraining (docs/math.md, "QA-SFT on fact worlds"):

1. pretrain a :class:`~dataprobes.lm.TinyGPT` on a fresh stream of the world
   (:func:`dataprobes.lm.train`);
2. memory levels (:func:`dataprobes.knowledge.memory_level`) and buckets;
   each bucket's facts are split into an SFT pool and held-out test facts;
3. for each train level ``ℓ`` and each ``N``: fine-tune a copy of the
   pretrained model on ``N`` QA examples ``question(f) → answer(f)`` of level
   ``ℓ`` (cross-entropy on the answer tokens only), then score greedy QA
   accuracy (``argmax == object``) on the held-out facts of every level and
   on never-stated control facts, and the confidence of wrong answers (the
   probability of the top, wrong, answer).

Everything is a function of the config and its seeds; with ``out_dir`` the
world, the pretrained model and every fine-tuning result are written
atomically, so a re-run resumes and returns the same result.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._durable import write_atomic, write_json_atomic
from .._validation import check_bool, check_float, check_float_in, check_int, check_seed
from ..processes.facts import FactWorld

__all__ = ["QASFTConfig", "QASFTResult", "run_qa_sft"]

_EXPOSURES = ("zipf", "uniform", "loguniform")
#: The paper's N grid (``"all"``: the whole SFT pool of the level).
DEFAULT_NS: tuple[int | str, ...] = (15, 30, 60, 120, 240, 960, "all")
_FORMAT = 1


@dataclass(frozen=True)
class QASFTConfig:
    """Everything that defines a QA-SFT run (frozen; validated on creation).

    World: ``num_facts`` facts over ``num_relations`` relations stated by
    ``num_templates`` templates in an order-1 Markov background of
    ``background_vocab`` tokens (Dirichlet 0.5 rows), statement probability
    ``statement_prob``. Exposure ``"zipf"`` (``(f+1)^-zipf_exponent``),
    ``"uniform"`` or ``"loguniform"`` (counts ``exp(U(0, log
    exposure_range))``, so mid exposures are common); a fraction
    ``unseen_fraction`` of the facts gets count 0 (never stated: controls
    whose QA accuracy can only be chance, ``1/num_objects``).
    ``template_coverage``: ``None`` (every fact under all templates) or an
    int ``k`` in ``[1, num_templates]``: each fact is stated under ``k``
    templates only (:class:`~dataprobes.FactWorld`'s ``template_coverage``),
    which plants partial knowledge (levels near ``k / num_templates``).

    Pretraining: TinyGPT (``d_model``, ``n_layers``, ``n_heads``) for
    ``pretrain_steps`` batches of ``batch_size`` × ``seq_len`` at
    ``pretrain_lr``. Levels: :func:`~dataprobes.knowledge.memory_level` over
    all templates, :func:`~dataprobes.knowledge.memory_buckets` with ``edges``
    (default five equal-width buckets); a fraction ``test_fraction`` of each
    bucket is held out for evaluation, the rest is the SFT pool.

    SFT: ``sft_steps`` AdamW steps at ``sft_lr`` (constant, no weight decay)
    on batches of ``min(sft_batch_size, N)`` examples drawn with replacement,
    for each ``N`` in ``ns`` (positive ints or ``"all"``; an ``N`` larger
    than a level's pool is not run). ``confidence``: the top-probability
    threshold of a *confident* wrong answer. ``seeds``: one world and model
    per seed. The defaults are the run of BENCHMARKS.md ("QA-SFT on fact
    worlds (60 data points)").
    """

    num_facts: int = 250
    num_relations: int = 4
    num_templates: int = 12
    num_objects: int | None = None
    background_vocab: int = 16
    statement_prob: float = 0.5
    exposure: str = "loguniform"
    zipf_exponent: float = 1.0
    exposure_range: float = 300.0
    unseen_fraction: float = 0.1
    template_coverage: int | None = None
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    pretrain_steps: int = 600
    batch_size: int = 32
    seq_len: int = 64
    pretrain_lr: float = 3e-3
    edges: tuple[float, ...] | None = None
    test_fraction: float = 0.3
    sft_steps: int = 150
    sft_lr: float = 1e-3
    sft_batch_size: int = 16
    ns: tuple[int | str, ...] = DEFAULT_NS
    confidence: float = 0.5
    seeds: tuple[int, ...] = (0, 1)

    def __post_init__(self) -> None:
        f = check_int("num_facts", self.num_facts, 2)
        check_int("num_relations", self.num_relations, 1)
        check_int("num_templates", self.num_templates, 1)
        if self.num_objects is not None:
            check_int("num_objects", self.num_objects, 2)
        check_int("background_vocab", self.background_vocab, 2)
        check_float_in("statement_prob", self.statement_prob, 0.0, 1.0, low_open=True)
        if not isinstance(self.exposure, str):
            raise TypeError(f"exposure must be one of {_EXPOSURES}, got {type(self.exposure).__name__}")
        if self.exposure not in _EXPOSURES:
            raise ValueError(f"exposure must be one of {_EXPOSURES}, got {self.exposure!r}")
        if check_float("zipf_exponent", self.zipf_exponent) < 0:
            raise ValueError(f"zipf_exponent must be >= 0, got {self.zipf_exponent}")
        if check_float("exposure_range", self.exposure_range) < 1:
            raise ValueError(f"exposure_range must be >= 1 (max/min exposure), got {self.exposure_range}")
        check_float_in("unseen_fraction", self.unseen_fraction, 0.0, 1.0, high_open=True)
        if round(self.unseen_fraction * f) >= f:
            raise ValueError("unseen_fraction leaves no stated fact")
        if self.template_coverage is not None:
            check_int("template_coverage", self.template_coverage, 1, self.num_templates)
            object.__setattr__(self, "template_coverage", int(self.template_coverage))
        d = check_int("d_model", self.d_model, 1)
        check_int("n_layers", self.n_layers, 1)
        h = check_int("n_heads", self.n_heads, 1)
        if d % h:
            raise ValueError(f"d_model ({d}) must be divisible by n_heads ({h})")
        check_int("pretrain_steps", self.pretrain_steps, 1)
        check_int("batch_size", self.batch_size, 1)
        check_int("seq_len", self.seq_len, 8)
        check_float("pretrain_lr", self.pretrain_lr, positive=True)
        if self.edges is not None:
            if isinstance(self.edges, (str, bytes)) or not isinstance(self.edges, (tuple, list)):
                raise TypeError(f"edges must be a tuple of floats or None, got {type(self.edges).__name__}")
            e = np.asarray(self.edges, dtype=np.float64)
            if e.ndim != 1 or e.size < 2 or not np.isfinite(e).all() or (np.diff(e) <= 0).any():
                raise ValueError("edges must be at least 2 finite, strictly increasing values")
            if e[0] > 0 or e[-1] < 1:
                raise ValueError(f"edges must cover [0, 1] (memory levels), got [{e[0]:g}, {e[-1]:g}]")
            object.__setattr__(self, "edges", tuple(float(v) for v in e))
        check_float_in("test_fraction", self.test_fraction, 0.0, 1.0, low_open=True, high_open=True)
        check_int("sft_steps", self.sft_steps, 1)
        check_float("sft_lr", self.sft_lr, positive=True)
        check_int("sft_batch_size", self.sft_batch_size, 1)
        if isinstance(self.ns, (str, bytes)) or not isinstance(self.ns, (tuple, list)):
            raise TypeError(f"ns must be a tuple of positive ints and/or 'all', got {type(self.ns).__name__}")
        if not self.ns:
            raise ValueError("ns must not be empty")
        for i, n in enumerate(self.ns):
            if isinstance(n, str):
                if n != "all":
                    raise ValueError(f"ns: the only string allowed is 'all', got {n!r}")
            else:
                check_int(f"ns[{i}]", n, 1)
        if len(set(self.ns)) != len(self.ns):
            raise ValueError(f"ns must not repeat a value, got {self.ns!r}")
        object.__setattr__(self, "ns", tuple(self.ns))
        check_float_in("confidence", self.confidence, 0.0, 1.0, high_open=True)
        if isinstance(self.seeds, (str, bytes, int)) or not isinstance(self.seeds, (tuple, list)):
            raise TypeError(f"seeds must be a tuple of ints, got {type(self.seeds).__name__}")
        if not self.seeds:
            raise ValueError("seeds must not be empty")
        for i, s in enumerate(self.seeds):
            check_seed(f"seeds[{i}]", s)
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must not repeat, got {self.seeds!r}")
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))

    @classmethod
    def quick(cls, **changes: Any) -> QASFTConfig:
        """A smoke-test config (a 120-fact world, 150 pretraining steps, N in
        15, 60, all; about a minute on a loaded 2-core CPU), with ``changes``."""
        base: dict[str, Any] = {
            "num_facts": 120,
            "num_templates": 6,
            "exposure_range": 300.0,
            "statement_prob": 0.5,
            "pretrain_steps": 150,
            "sft_steps": 100,
            "ns": (15, 60, "all"),
        }
        return cls(**{**base, **changes})

    @property
    def num_buckets(self) -> int:
        from ..knowledge import DEFAULT_NUM_BUCKETS

        return DEFAULT_NUM_BUCKETS if self.edges is None else len(self.edges) - 1

    @property
    def n_labels(self) -> list[str]:
        return [str(n) for n in self.ns]

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready data (``QASFTConfig(**d)`` rebuilds it);
        ``template_coverage`` only when set, so that default configs describe
        themselves (and match saved runs) as before the option existed."""
        d = {k.name: getattr(self, k.name) for k in dataclasses.fields(self)}
        if self.template_coverage is None:
            del d["template_coverage"]
        d["ns"] = list(self.ns)
        d["seeds"] = list(self.seeds)
        d["edges"] = None if self.edges is None else list(self.edges)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QASFTConfig:
        d = dict(d)
        for k in ("ns", "seeds", "edges"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        return cls(**d)

    def exposure_counts(self, seed: int) -> np.ndarray:
        """``[F]`` planted exposure counts of the world of ``seed`` (0 for the controls)."""
        seed = check_seed("seed", seed)
        f = self.num_facts
        rng = np.random.default_rng([seed, 0x51F7])
        if self.exposure == "zipf":
            counts = (np.arange(f) + 1.0) ** -self.zipf_exponent
        elif self.exposure == "uniform":
            counts = np.ones(f)
        else:
            counts = np.exp(rng.uniform(0.0, math.log(self.exposure_range), f))
        unseen = int(round(self.unseen_fraction * f))
        if unseen:
            counts[rng.permutation(f)[:unseen]] = 0.0
        return counts

    def world(self, seed: int) -> FactWorld:
        """The fact world of ``seed``."""
        import dataprobes as dp

        seed = check_seed("seed", seed)
        background = dp.MarkovChain.random(self.background_vocab, seed=seed, concentration=0.5)
        return FactWorld(
            self.num_facts,
            self.num_relations,
            self.num_templates,
            background,
            num_objects=self.num_objects,
            exposure=self.exposure_counts(seed),
            statement_prob=self.statement_prob,
            seed=seed,
            template_coverage=self.template_coverage,
        )


@dataclass
class QASFTResult:
    """Results of :func:`run_qa_sft` (arrays over seeds ``S``, train levels
    ``L``, the ``ns`` grid and test levels ``L``).

    Attributes:
        config: the run's config.
        levels: per seed, the ``[F]`` memory level of every fact.
        bucket_counts: ``[S, L]`` facts per memory bucket (controls included
            in bucket 0).
        test_counts: ``[S, L]`` held-out test facts per bucket (controls
            excluded).
        pool_counts: ``[S, L]`` facts in each bucket's SFT pool.
        n_used: ``[S, L, N]`` SFT examples used (0: not run, the level's pool
            is smaller than ``N`` or empty).
        accuracy: ``[S, L, N, L]`` QA accuracy on the held-out facts of each
            test level after SFT on ``(train level, N)``; NaN where not run
            or the test level has no held-out fact.
        unseen_accuracy: ``[S, L, N]`` accuracy on never-stated facts (NaN
            without controls or where not run).
        confident_wrong: ``[S, L, N, L]`` fraction of the test facts answered
            wrong with top probability ``>= config.confidence`` (NaN as
            ``accuracy``).
        wrong_confidence: ``[S, L, N, L]`` mean top probability of the wrong
            answers (NaN also where no answer is wrong).
        pretrain_loss: per seed, the last pretraining loss.
        chance: ``1 / num_objects``, the accuracy of a guess.
    """

    config: QASFTConfig
    levels: list[np.ndarray]
    bucket_counts: np.ndarray
    test_counts: np.ndarray
    pool_counts: np.ndarray
    n_used: np.ndarray
    accuracy: np.ndarray
    unseen_accuracy: np.ndarray
    confident_wrong: np.ndarray
    wrong_confidence: np.ndarray
    pretrain_loss: list[float]
    chance: float

    # ----------------------------------------------------------- summaries
    def overall(self) -> np.ndarray:
        """``[S, L, N]`` accuracy on all held-out stated facts (test levels
        pooled, weighted by their counts; NaN where not run)."""
        w = self.test_counts[:, None, None, :].astype(np.float64)
        acc = np.where(np.isnan(self.accuracy), 0.0, self.accuracy)
        out = (acc * w).sum(-1) / np.maximum(w.sum(-1), 1)
        return np.where(self.n_used > 0, out, np.nan)

    def curve(self, train_level: int) -> tuple[np.ndarray, np.ndarray]:
        """Data-efficiency curve of ``train_level``: mean and standard
        deviation over seeds of :meth:`overall` per ``N`` (NaN where no seed
        ran that ``N``)."""
        lv = check_int("train_level", train_level, 0, self.config.num_buckets - 1)
        return _nanstats(self.overall()[:, lv, :])

    def knee(self, train_level: int, fraction: float = 0.9) -> str | None:
        """The smallest ``N`` whose mean accuracy reaches ``fraction`` of the
        best over the grid (``None`` if the level never ran)."""
        fraction = check_float_in("fraction", fraction, 0.0, 1.0, low_open=True)
        mean, _ = self.curve(train_level)
        if np.isnan(mean).all():
            return None
        best = np.nanmax(mean)
        for label, m in zip(self.config.n_labels, mean, strict=True):
            if not np.isnan(m) and m >= fraction * best:
                return label
        return None  # pragma: no cover - the best itself qualifies

    def matrix(self, n: int | str = 60, what: str = "accuracy") -> np.ndarray:
        """``[L, L]`` mean over seeds (train level × test level) at ``N = n``
        of ``what``: ``"accuracy"``, ``"confident_wrong"`` or
        ``"wrong_confidence"``."""
        arr = (
            {
                "accuracy": self.accuracy,
                "confident_wrong": self.confident_wrong,
                "wrong_confidence": self.wrong_confidence,
            }.get(what)
            if isinstance(what, str)
            else None
        )
        if arr is None:
            raise ValueError(f"what must be 'accuracy', 'confident_wrong' or 'wrong_confidence', got {what!r}")
        if str(n) not in self.config.n_labels:
            raise ValueError(f"n must be one of the run's ns {self.config.n_labels}, got {n!r}")
        j = self.config.n_labels.index(str(n))
        return _nanstats(arr[:, :, j, :])[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (NaN as ``null``)."""

        def clean(a: np.ndarray) -> Any:
            return [clean(x) for x in a] if a.ndim else (None if np.isnan(a) else float(a))

        return {
            "config": self.config.to_dict(),
            "chance": self.chance,
            "bucket_counts": self.bucket_counts.tolist(),
            "test_counts": self.test_counts.tolist(),
            "pool_counts": self.pool_counts.tolist(),
            "n_used": self.n_used.tolist(),
            "accuracy": clean(self.accuracy),
            "unseen_accuracy": clean(self.unseen_accuracy),
            "confident_wrong": clean(self.confident_wrong),
            "wrong_confidence": clean(self.wrong_confidence),
            "pretrain_loss": self.pretrain_loss,
        }

    def to_table(self, n: int | str | None = None) -> str:
        """Markdown: the data-efficiency curves (overall held-out accuracy,
        mean ± sd over seeds, per train level and ``N``) and the train × test
        level matrix at ``n`` (default 60 if in the grid, else the last)."""
        labels = self.config.n_labels
        if n is None:
            n = "60" if "60" in labels else labels[-1]
        nb = self.config.num_buckets
        lines = [f"Data-efficiency (held-out accuracy, chance {self.chance:.3f}; mean ± sd, seeds that ran)", ""]
        lines.append("| train level | pool | " + " | ".join(f"N={x}" for x in labels) + " | knee |")
        lines.append("|---|---:|" + "---:|" * len(labels) + "---|")
        for lv in range(nb):
            mean, sd = self.curve(lv)
            if np.isnan(mean).all():
                continue
            pool = int(round(self.pool_counts[:, lv].mean()))
            runs = (~np.isnan(self.overall()[:, lv, :])).sum(0)
            cells = [
                "–" if np.isnan(m) else f"{m:.3f} ± {s:.3f}" if k > 1 else f"{m:.3f} (1 seed)"
                for m, s, k in zip(mean, sd, runs, strict=True)
            ]
            lines.append(f"| {lv} | ~{pool} | " + " | ".join(cells) + f" | {self.knee(lv)} |")
        mat = self.matrix(n)
        lines += ["", f"Train level × test level accuracy at N={n}", ""]
        lines.append("| train \\ test | " + " | ".join(str(k) for k in range(nb)) + " | unseen |")
        lines.append("|---|" + "---:|" * (nb + 1))
        j = labels.index(str(n))
        unseen = _nanstats(self.unseen_accuracy[:, :, j])[0]
        for lv in range(nb):
            if np.isnan(mat[lv]).all():
                continue
            cells = ["–" if np.isnan(v) else f"{v:.3f}" for v in mat[lv]]
            u = "–" if np.isnan(unseen[lv]) else f"{unseen[lv]:.3f}"
            lines.append(f"| {lv} | " + " | ".join(cells) + f" | {u} |")
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Left: data-efficiency curves (mean ± sd); right: the train × test
        matrix at N="all" (or the last N; grey: not run). PNG via
        matplotlib's Agg backend."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        labels = self.config.n_labels
        n = "all" if "all" in labels else labels[-1]
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
        x = np.arange(len(labels))
        for lv in range(self.config.num_buckets):
            mean, sd = self.curve(lv)
            if np.isnan(mean).all():
                continue
            ax.errorbar(x, mean, yerr=np.nan_to_num(sd), marker="o", capsize=3, label=f"train level {lv}")
        ax.axhline(self.chance, color="0.6", ls=":", label="chance")
        ax.set_xticks(x, labels)
        ax.set_xlabel("N (QA examples)")
        ax.set_ylabel("held-out QA accuracy")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=8)
        mat = self.matrix(n)
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")
        im = ax2.imshow(np.ma.masked_invalid(mat), vmin=0, vmax=1, cmap=cmap)
        for (i, j), v in np.ndenumerate(mat):
            if not np.isnan(v):
                ax2.text(j, i, f"{v:.2f}", ha="center", va="center", color="w" if v < 0.6 else "k", fontsize=8)
        ax2.set_xlabel("test level")
        ax2.set_ylabel("train level")
        ax2.set_title(f"accuracy at N={n}")
        fig.colorbar(im, ax=ax2)
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=110)
        plt.close(fig)
        return out


def _nanstats(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd over axis 0 ignoring NaN, NaN (no warning) where all are NaN."""
    ok = ~np.isnan(a)
    cnt = ok.sum(0)
    z = np.where(ok, a, 0.0)
    mean = np.where(cnt > 0, z.sum(0) / np.maximum(cnt, 1), np.nan)
    var = np.where(ok, (a - mean) ** 2, 0.0).sum(0) / np.maximum(cnt, 1)
    return mean, np.where(cnt > 0, np.sqrt(var), np.nan)


# ------------------------------------------------------------------ running
def _split(cfg: QASFTConfig, seed: int, buckets: np.ndarray, unseen: np.ndarray) -> tuple[list, list]:
    """Per bucket: (SFT pool, held-out test facts), a seeded split; controls excluded."""
    rng = np.random.default_rng([seed, 0x5F7])
    pools, tests = [], []
    for b in range(cfg.num_buckets):
        members = rng.permutation(np.flatnonzero((buckets == b) & ~unseen))
        k = int(round(cfg.test_fraction * len(members)))
        tests.append(np.sort(members[:k]))
        pools.append(members[k:])
    return pools, tests


def _qa_batch(world: FactWorld, facts: np.ndarray) -> Any:
    import torch

    q, a = world.qa_tokens(facts)
    return torch.as_tensor(np.concatenate([q, a], axis=1).astype(np.int64))


def _sft(model: Any, world: FactWorld, facts: np.ndarray, cfg: QASFTConfig, key: list[int]) -> Any:
    """A fine-tuned copy of ``model``: AdamW on the answer tokens of the QA
    examples of ``facts`` (batches with replacement from ``key``)."""
    import torch
    from torch.nn import functional as F

    tuned = copy.deepcopy(model)
    tuned.train()
    x = _qa_batch(world, facts)
    q_len = 4  # [Question:, s, r, Answer:] then [object, <end>]
    opt = torch.optim.AdamW(tuned.parameters(), lr=cfg.sft_lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0] >> 1))
    bs = min(cfg.sft_batch_size, len(facts))
    for _ in range(cfg.sft_steps):
        xb = x[torch.randint(len(facts), (bs,), generator=gen)]
        logits = tuned(xb[:, :-1])[:, q_len - 1 :]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), xb[:, q_len:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    tuned.eval()
    return tuned


def _qa_eval(model: Any, world: FactWorld, facts: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """(accuracy, confident-wrong rate, mean top probability of wrong answers) on ``facts``."""
    import torch

    if facts.size == 0:
        return math.nan, math.nan, math.nan
    x = _qa_batch(world, facts)
    with torch.no_grad():
        probs = torch.softmax(model(x[:, :4])[:, -1].double(), dim=-1)
    top, pred = probs.max(-1)
    right = (pred == x[:, 4]).numpy()
    top_np = top.numpy()
    wrong = ~right
    conf = float((wrong & (top_np >= threshold)).mean())
    wc = float(top_np[wrong].mean()) if wrong.any() else math.nan
    return float(right.mean()), conf, wc


def _torch_save(path: Path, obj: Any) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_atomic(path, buf.getvalue())


def _pretrained(cfg: QASFTConfig, seed: int, world: FactWorld, root: Path | None, progress: bool) -> tuple[Any, dict]:
    """The pretrained model of ``seed`` with its levels (from ``root`` if saved)."""
    import torch

    from ..knowledge import memory_level
    from ..lm import TinyGPT, train

    torch.manual_seed(seed)
    model = TinyGPT(
        vocab_size=world.vocab_size,
        max_len=cfg.seq_len,
        d_model=cfg.d_model,
        n_layers=cfg.n_layers,
        n_heads=cfg.n_heads,
    )
    path = None if root is None else root / "pretrained.pt"
    if path is not None and path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["model"])
        model.eval()
        return model, {"levels": saved["levels"].numpy(), "loss": float(saved["loss"])}
    res = train(
        model,
        world,
        steps=cfg.pretrain_steps,
        batch_size=cfg.batch_size,
        seq_len=cfg.seq_len,
        lr=cfg.pretrain_lr,
        warmup=min(100, cfg.pretrain_steps // 10),
        seed=seed,
        eval_every=cfg.pretrain_steps,
        eval_sequences=8,
        progress=progress,
    )
    levels = memory_level(model, world, batch_size=256, progress=False)
    info = {"levels": levels, "loss": float(res.train_loss[-1])}
    if path is not None:
        _torch_save(path, {"model": model.state_dict(), "levels": torch.as_tensor(levels), "loss": info["loss"]})
    return model, info


def run_qa_sft(
    config: QASFTConfig, *, out_dir: str | os.PathLike[str] | None = None, progress: bool = True
) -> QASFTResult:
    """Runs the QA-SFT study of ``config`` (see the module docstring).

    ``out_dir``: the config (``config.json``), each seed's world
    (``seed-{s}/world.npz``), pretrained model with its levels
    (``pretrained.pt``) and every fine-tuning result (``sft-l{ℓ}-n{N}.json``)
    are written atomically; a re-run with the same config resumes from them
    and returns the identical result (a different config in the same
    directory is an error; the seeds may differ: seeds already run are
    reused). Deterministic for the config's seeds (torch's
    CPU kernels at a fixed thread count).
    """
    from .._torch import require_torch

    require_torch("dataprobes.experiments.run_qa_sft")
    from tqdm.auto import tqdm

    from ..knowledge import memory_buckets

    if not isinstance(config, QASFTConfig):
        raise TypeError(f"config must be a QASFTConfig, got {type(config).__name__}")
    progress = check_bool("progress", progress)
    root = None
    if out_dir is not None:
        if not isinstance(out_dir, (str, os.PathLike)):
            raise TypeError(f"out_dir must be a path or None, got {type(out_dir).__name__}")
        root = Path(out_dir)
        root.mkdir(parents=True, exist_ok=True)
        cfg_path = root / "config.json"
        # seeds are not part of the identity: each seed has its own folder, so
        # a run with more seeds reuses the seeds already done
        want = {"format": _FORMAT, "config": {**config.to_dict(), "seeds": None}}
        if cfg_path.exists():
            have = json.loads(cfg_path.read_text())
            if have != json.loads(json.dumps(want)):
                raise ValueError(f"out_dir {root} holds a run of another config; use a fresh directory")
        else:
            write_json_atomic(cfg_path, want, indent=1)
    cfg = config
    nb, nn_ = cfg.num_buckets, len(cfg.ns)
    ns_ = len(cfg.seeds)
    shape = (ns_, nb, nn_)
    acc = np.full((*shape, nb), np.nan)
    conf = np.full((*shape, nb), np.nan)
    wconf = np.full((*shape, nb), np.nan)
    unseen_acc = np.full(shape, np.nan)
    n_used = np.zeros(shape, dtype=np.int64)
    bucket_counts = np.zeros((ns_, nb), dtype=np.int64)
    test_counts = np.zeros((ns_, nb), dtype=np.int64)
    pool_counts = np.zeros((ns_, nb), dtype=np.int64)
    all_levels, losses = [], []
    edges = None if cfg.edges is None else np.asarray(cfg.edges)
    world0 = cfg.world(cfg.seeds[0])
    chance = 1.0 / len(world0.token_ranges["objects"])
    total = ns_ * nb * nn_
    with tqdm(total=total, desc="qa-sft", disable=not progress) as bar:
        for si, seed in enumerate(cfg.seeds):
            world = world0 if si == 0 else cfg.world(seed)
            sdir = None if root is None else root / f"seed-{seed}"
            if sdir is not None:
                sdir.mkdir(exist_ok=True)
                if not (sdir / "world.npz").exists():
                    buf = io.BytesIO()
                    from ..processes.serialize import to_arrays

                    np.savez(buf, **to_arrays(world))
                    write_atomic(sdir / "world.npz", buf.getvalue())
            model, info = _pretrained(cfg, seed, world, sdir, progress)
            levels = np.asarray(info["levels"], dtype=np.float64)
            all_levels.append(levels)
            losses.append(info["loss"])
            buckets = memory_buckets(levels, edges)
            unseen = world.exposure == 0
            bucket_counts[si] = np.bincount(buckets, minlength=nb)
            pools, tests = _split(cfg, seed, buckets, unseen)
            test_counts[si] = [len(t) for t in tests]
            pool_counts[si] = [len(p) for p in pools]
            controls = np.flatnonzero(unseen)
            for lv in range(nb):
                order = np.random.default_rng([seed, lv, 0xA11]).permutation(pools[lv])
                for j, n in enumerate(cfg.ns):
                    k = len(order) if n == "all" else int(n)
                    if k == 0 or k > len(order):
                        bar.update(1)
                        continue
                    rpath = None if sdir is None else sdir / f"sft-l{lv}-n{n}.json"
                    if rpath is not None and rpath.exists():
                        rec = json.loads(rpath.read_text())
                    else:
                        tuned = _sft(model, world, order[:k], cfg, [seed, lv, k])
                        per = [_qa_eval(tuned, world, tests[t], cfg.confidence) for t in range(nb)]
                        ua = _qa_eval(tuned, world, controls, cfg.confidence)[0]
                        rec = {
                            "n": k,
                            "accuracy": [_nan_none(p[0]) for p in per],
                            "confident_wrong": [_nan_none(p[1]) for p in per],
                            "wrong_confidence": [_nan_none(p[2]) for p in per],
                            "unseen_accuracy": _nan_none(ua),
                        }
                        if rpath is not None:
                            write_json_atomic(rpath, rec)
                    n_used[si, lv, j] = rec["n"]
                    acc[si, lv, j] = _none_nan(rec["accuracy"])
                    conf[si, lv, j] = _none_nan(rec["confident_wrong"])
                    wconf[si, lv, j] = _none_nan(rec["wrong_confidence"])
                    unseen_acc[si, lv, j] = _none_nan([rec["unseen_accuracy"]])[0]
                    bar.update(1)
    return QASFTResult(
        config=cfg,
        levels=all_levels,
        bucket_counts=bucket_counts,
        test_counts=test_counts,
        pool_counts=pool_counts,
        n_used=n_used,
        accuracy=acc,
        unseen_accuracy=unseen_acc,
        confident_wrong=conf,
        wrong_confidence=wconf,
        pretrain_loss=losses,
        chance=chance,
    )


def _nan_none(v: float) -> float | None:
    return None if math.isnan(v) else v


def _none_nan(vs: list[Any]) -> np.ndarray:
    return np.array([math.nan if v is None else float(v) for v in vs])
