"""Influcoder: a bi-encoder whose embedding cosines reproduce the ranking of
gradient-influence scores (Kachler, Sileo, Denis 2026; docs/math.md,
Attribution: distillation).

One shared encoder embeds anchors (queries) and candidates (pool items);
the score of a pair is the cosine of their mean-pooled embeddings. An
optional fixed instruction prefix on anchors is the only asymmetry. Training
(:meth:`Influcoder.fit`) draws ``k × m`` blocks (:class:`BlockSampler`) and
minimises :func:`influcoder_loss` against the teacher's block. Attribution
then costs one encoder forward per query and ``dim`` fp16 numbers per
indexed example (:meth:`Influcoder.index`, :meth:`Influcoder.score`).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..._durable import fsync_dir, write_atomic, write_json_atomic
from ..._validation import check_bool, check_choice, check_float_in, check_int, check_positive_float, check_seed
from ..quality import spearman_metrics
from ..scoring import TopK, score
from ..store import GradientStore, StoreWriter
from .encoders import TextEncoder, TextItems, TokenEncoder, TokenEncoderConfig, TokenItems, _warn_truncated
from .loss import influcoder_loss
from .sampler import BlockSampler
from .teacher import DenseTeacher, GradientTeacher, as_teacher

__all__ = ["FitHistory", "Influcoder"]

_FORMAT = "dataprobes.Influcoder"
_META = "influcoder.json"
_WEIGHTS = "weights.pt"

#: ``fit`` defaults that depend on the encoder. A pretrained text encoder is
#: fine-tuned with the paper's settings. A token encoder built from a config
#: trains from scratch: it needs a 20× larger step and more of them (16 epochs:
#: per-anchor ρ 0.727 → 0.746 on a Markov mixture), and the Pearson term alone
#: (``alpha=1``) ranks better than the paper's mix on both probe settings
#: (+0.23 to +0.48 aggregated ρ; BENCHMARKS.md, Influcoder).
FIT_DEFAULTS: dict[str, dict[str, float]] = {
    "pretrained": {"lr": 5e-5, "warmup": 0.1, "alpha": 0.5, "epochs": 8},
    "scratch": {"lr": 1e-3, "warmup": 0.1, "alpha": 1.0, "epochs": 16},
}


@dataclass
class FitHistory:
    """What :meth:`Influcoder.fit` measured.

    ``epochs``: one dict per epoch — ``epoch`` (1-based), ``loss`` (mean
    training loss), ``train_seconds`` (the steps alone), ``seconds`` (with the
    evaluation), and with an evaluation split
    ``per_anchor``, ``per_anchor_std``, ``aggregated`` (:func:`spearman_metrics`
    on it). ``initial``: the metrics of the untrained encoder (epoch 0).
    ``best_epoch``: the epoch with the highest ``select`` metric (per-anchor
    Spearman by default);
    ``saved``: which weights the encoder holds after ``fit`` (``"best"`` or
    ``"last"``). ``settings``: every training setting used.
    """

    epochs: list[dict[str, float]] = field(default_factory=list)
    initial: dict[str, float] | None = None
    best_epoch: int | None = None
    saved: str = "last"
    settings: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    seconds: float = 0.0

    @property
    def last(self) -> dict[str, float]:
        return self.epochs[-1]

    @property
    def best(self) -> dict[str, float]:
        return self.epochs[(self.best_epoch or len(self.epochs)) - 1]

    @property
    def blocks_per_second(self) -> float:
        train = sum(e["train_seconds"] for e in self.epochs)
        return self.steps / train if train > 0 else float("nan")

    def plot(self, path: str | os.PathLike[str], title: str = "") -> Path:
        """PNG of the training loss and the evaluation Spearman per epoch."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
        ep = [e["epoch"] for e in self.epochs]
        ax[0].plot(ep, [e["loss"] for e in self.epochs], "o-")
        ax[0].set_xlabel("epoch")
        ax[0].set_ylabel("training loss")
        if "per_anchor" in self.epochs[0]:
            x = ([0] if self.initial else []) + ep
            for key in ("per_anchor", "aggregated"):
                y = ([self.initial[key]] if self.initial else []) + [e[key] for e in self.epochs]
                ax[1].plot(x, y, "o-", label=key.replace("_", "-"))
            if self.best_epoch:
                ax[1].axvline(self.best_epoch, color="grey", ls=":", label=f"saved ({self.saved})")
            ax[1].legend()
        ax[1].set_xlabel("epoch")
        ax[1].set_ylabel("Spearman vs teacher (eval)")
        fig.suptitle(title)
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=120)
        plt.close(fig)
        return out


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Influcoder:
    """A distilled attribution encoder (see the module docstring).

    Build one with :meth:`from_config` (token encoder, from scratch),
    :meth:`from_pretrained` (a Hugging Face or sentence-transformers
    encoder by name or path) or ``Influcoder(hf_model, tokenizer)``.

    ``anchor_prefix``: a fixed instruction prepended to every anchor (token
    ids for a token encoder, a string for a text encoder). ``device``: where
    the encoder runs (default: CUDA when available, else CPU).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any = None,
        *,
        anchor_prefix: Any = None,
        max_length: int | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        if isinstance(model, TokenEncoder):
            if tokenizer is not None:
                raise ValueError("a token encoder takes no tokenizer")
            self.kind = "tokens"
            self.encoder: nn.Module = model
            self.dim = model.config.dim
            if max_length is not None and max_length != model.config.max_len:
                raise ValueError("a token encoder's length is its config's max_len")
            self.max_length = model.config.max_len
            prefix = None
            if anchor_prefix is not None:
                arr = np.asarray(anchor_prefix)
                if arr.dtype.kind not in "iu" and arr.size:
                    raise TypeError(f"anchor_prefix must be token ids (integers), got {arr.dtype} values")
                arr = arr.reshape(-1).astype(np.int64)
                if arr.size:
                    if arr.min() < 0 or arr.max() >= model.config.vocab_size:
                        raise ValueError(f"anchor_prefix ids must lie in [0, {model.config.vocab_size})")
                    if arr.size >= model.config.max_len:
                        raise ValueError(
                            f"anchor_prefix has {arr.size} tokens but the encoder sees {model.config.max_len} "
                            "positions: no room would be left for the anchor"
                        )
                    prefix = torch.from_numpy(arr)
            self.anchor_prefix: Any = prefix
        else:
            text = model if isinstance(model, TextEncoder) else TextEncoder(model, tokenizer, max_length)
            self.kind = "text"
            self.encoder = text
            self.dim = text.dim
            self.max_length = text.max_length
            if anchor_prefix is not None and not isinstance(anchor_prefix, str):
                raise TypeError("a text encoder's anchor_prefix must be a string")
            self.anchor_prefix = anchor_prefix or None
        try:
            self.device = torch.device(device) if device is not None else _default_device()
            self.encoder.to(self.device)
        except (RuntimeError, TypeError, AssertionError) as exc:
            raise ValueError(f"device {device!r} is not usable here: {exc}") from exc
        self.pretrained = self.kind == "text"

    # -- construction -----------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        vocab_size: int,
        d_model: int = 128,
        n_layers: int = 2,
        n_heads: int = 4,
        max_len: int = 256,
        dim: int = 128,
        *,
        dropout: float = 0.0,
        bigram_buckets: int | None = None,
        seed: int = 0,
        anchor_prefix: Any = None,
        device: str | torch.device | None = None,
    ) -> Influcoder:
        """A token encoder (:class:`TokenEncoder`) with weights initialised
        from ``seed``, for probe token arrays ``[N, T]``. ``bigram_buckets``:
        size of the hashed bigram embedding (``None``: every bigram its own
        row up to 2¹⁶ rows; 0: none); see :class:`TokenEncoderConfig`."""
        cfg = TokenEncoderConfig(vocab_size, d_model, n_layers, n_heads, max_len, dim, dropout, bigram_buckets)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(check_seed("seed", seed))
            model = TokenEncoder(cfg)
        return cls(model, anchor_prefix=anchor_prefix, device=device)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike[str],
        *,
        anchor_prefix: str | None = None,
        max_length: int | None = None,
        device: str | torch.device | None = None,
        **kwargs: Any,
    ) -> Influcoder:
        """A Hugging Face encoder (``AutoModel`` + ``AutoTokenizer``) or a
        sentence-transformers model (a directory with ``modules.json``), by
        hub name or local path; ``kwargs`` go to ``from_pretrained``. An
        Influcoder saved with :meth:`save` is opened with :meth:`load`."""
        path = Path(name_or_path)
        if (path / _META).exists():
            return cls.load(path, device=device)
        if (path / "modules.json").exists():
            from sentence_transformers import SentenceTransformer

            st = SentenceTransformer(str(path), device="cpu", **kwargs)
            return cls(st, anchor_prefix=anchor_prefix, max_length=max_length, device=device)
        from transformers import AutoModel, AutoTokenizer

        model = AutoModel.from_pretrained(str(name_or_path), **kwargs)
        tok = AutoTokenizer.from_pretrained(str(name_or_path))
        return cls(model, tok, anchor_prefix=anchor_prefix, max_length=max_length, device=device)

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.encoder.parameters())
        return f"Influcoder(kind={self.kind!r}, dim={self.dim}, max_length={self.max_length}, parameters={n:,})"

    # -- items ------------------------------------------------------------------

    def _items(self, name: str, items: Any) -> TokenItems | TextItems:
        return TokenItems(name, items) if self.kind == "tokens" else TextItems(name, items)

    def _forward(self, items: TokenItems | TextItems, anchors: bool) -> tuple[torch.Tensor, int]:
        """Unnormalised embeddings of ``items`` (with grad if enabled) and the
        number of items truncated."""
        if self.kind == "tokens":
            assert isinstance(items, TokenItems) and isinstance(self.encoder, TokenEncoder)
            ids, mask, truncated = self.encoder.batch(items, self.anchor_prefix if anchors else None, self.device)
            with _autocast(self.device):
                out = self.encoder(ids, mask)
        else:
            assert isinstance(items, TextItems) and isinstance(self.encoder, TextEncoder)
            texts = items.texts
            if anchors and self.anchor_prefix:
                texts = [self.anchor_prefix + t for t in texts]
            feats, truncated = self.encoder.tokenize(texts, self.device)
            with _autocast(self.device):
                out = self.encoder(feats)
        return out.float(), truncated

    def _count_truncated(self, items: TokenItems | TextItems, anchors: bool) -> int:
        """How many of ``items`` exceed the encoder's length (with the anchor
        prefix when ``anchors``)."""
        if isinstance(items, TokenItems):
            p = 0 if not anchors or self.anchor_prefix is None else int(self.anchor_prefix.shape[0])
            return int((items.lengths + p > self.max_length).sum())
        assert isinstance(self.encoder, TextEncoder)
        texts = [self.anchor_prefix + t for t in items.texts] if anchors and self.anchor_prefix else items.texts
        ids = self.encoder.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
        return sum(len(x) > self.max_length for x in ids)

    def _embed(self, items: TokenItems | TextItems, anchors: bool, batch_size: int, progress: bool) -> torch.Tensor:
        n = len(items)
        out = torch.empty(n, self.dim, dtype=torch.float32)
        truncated = 0
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            with torch.inference_mode():
                for s in _progress(range(0, n, batch_size), progress, "embedding", total=-(-n // batch_size)):
                    e, t = self._forward(items.take(np.arange(s, min(s + batch_size, n))), anchors)
                    out[s : s + e.shape[0]] = _normalize(e).cpu()
                    truncated += t
        finally:
            self.encoder.train(was_training)
        _warn_truncated(truncated, n, self.max_length, "anchors" if anchors else "items")
        return out

    def embed(
        self, items: Any, *, anchors: bool = False, batch_size: int = 128, progress: bool = False
    ) -> torch.Tensor:
        """Unit-norm embeddings ``[N, dim]`` (float32, CPU) of token arrays
        ``[N, T]`` (token encoder) or strings (text encoder); ``anchors=True``
        prepends the anchor prefix. Items longer than the encoder's length are
        truncated with a warning that counts them."""
        return self._embed(
            self._items("items", items),
            check_bool("anchors", anchors),
            check_int("batch_size", batch_size, 1),
            check_bool("progress", progress),
        )

    def scores(self, anchors: Any, pool: Any, *, batch_size: int = 128) -> torch.Tensor:
        """Cosine scores ``[A, P]`` of anchors (with the prefix) against pool items."""
        a = self.embed(anchors, anchors=True, batch_size=batch_size)
        p = self.embed(pool, batch_size=batch_size)
        return a @ p.T

    # -- training ---------------------------------------------------------------

    def fit(
        self,
        anchors: Any,
        pool: Any,
        teacher: Any,
        *,
        epochs: int | None = None,
        alpha: float | None = None,
        tau: float = 0.05,
        k: int = 8,
        m: int = 16,
        hard_ratio: float = 0.0,
        seed: int = 0,
        eval: tuple[Any, Any, Any] | None = None,  # noqa: A002 - the name the API fixes
        progress: bool = True,
        lr: float | None = None,
        weight_decay: float = 0.01,
        warmup: float | None = None,
        clip: float = 1.0,
        keep: str = "best",
        select: str = "per_anchor",
        eval_batch_size: int = 128,
    ) -> FitHistory:
        """Distil ``teacher`` (``[A, P]`` scores of ``anchors`` × ``pool``, or
        a :class:`GradientTeacher`) into this encoder.

        Per step: ``k`` anchors (a shuffled pass over them per epoch) and
        ``m`` candidates, ``int(m·hard_ratio)`` of them among the anchors'
        highest-teacher-score candidates; loss :func:`influcoder_loss` with
        ``alpha``, ``tau``; AdamW (``lr``, ``weight_decay``), linear warmup
        over the first ``warmup`` fraction of steps then linear decay to 0,
        gradient norm clipped to ``clip``; bf16 autocast on CUDA.

        ``epochs`` / ``lr`` / ``warmup`` / ``alpha`` default by encoder
        (:data:`FIT_DEFAULTS`): ``8`` / ``5e-5`` / ``0.1`` / ``0.5`` (the
        paper's) for a pretrained text encoder, ``16`` / ``1e-3`` / ``0.1`` /
        ``1.0`` for a token encoder trained from scratch (measured on probes).

        ``eval=(anchors_eval, pool_eval, teacher_eval)``: a disjoint split
        (any item appearing in both splits is refused) evaluated before
        training and after each epoch with :func:`spearman_metrics`;
        ``keep="best"`` (default) restores the weights of the epoch with the
        highest ``select`` metric (``"per_anchor"``, the retrieval ranking, or
        ``"aggregated"``, the selection ranking), ``"last"`` keeps the final
        ones (``history.saved`` says which); the choice is among the trained
        epochs, never the untrained start. Same ``seed``, same weights.
        """
        a_items = self._items("anchors", anchors)
        p_items = self._items("pool", pool)
        tch = as_teacher(teacher, (len(a_items), len(p_items)))
        defaults = FIT_DEFAULTS["pretrained" if self.pretrained else "scratch"]
        epochs = check_int("epochs", int(defaults["epochs"]) if epochs is None else epochs, 1)
        alpha = check_float_in("alpha", defaults["alpha"] if alpha is None else alpha, 0.0, 1.0)
        tau = check_positive_float("tau", tau)
        seed = check_seed("seed", seed)
        progress = check_bool("progress", progress)
        keep = check_choice("keep", keep, ("best", "last"))
        select = check_choice("select", select, ("per_anchor", "aggregated"))
        lr = check_positive_float("lr", defaults["lr"] if lr is None else lr)
        warmup = check_float_in("warmup", defaults["warmup"] if warmup is None else warmup, 0.0, 1.0)
        weight_decay = check_float_in("weight_decay", weight_decay, 0.0)
        clip = check_positive_float("clip", clip)
        eval_batch_size = check_int("eval_batch_size", eval_batch_size, 1)
        ev = None
        if eval is not None:
            if not isinstance(eval, (tuple, list)) or len(eval) != 3:
                raise TypeError("eval must be a tuple (anchors_eval, pool_eval, teacher_eval) or None")
            ea, ep = self._items("eval anchors", eval[0]), self._items("eval pool", eval[1])
            if len(ep) < 2:
                raise ValueError("the eval pool needs at least 2 items for a ranking to be measured")
            ev = (ea, ep, as_teacher(eval[2], (len(ea), len(ep)), "teacher_eval"))
            _refuse_overlap(a_items, p_items, ea, ep)
        for name, its, is_anchor in (("anchors", a_items, True), ("pool items", p_items, False)):
            _warn_truncated(self._count_truncated(its, is_anchor), len(its), self.max_length, f"training {name}")
        k = check_int("k", k, 1)
        m_eff = min(check_int("m", m, 1), len(p_items))
        hard_ratio = check_float_in("hard_ratio", hard_ratio, 0.0, 1.0)
        top = tch.top_candidates(m_eff) if int(m_eff * hard_ratio) > 0 else None
        sampler = BlockSampler(len(a_items), len(p_items), k, m_eff, hard_ratio, seed=seed, top=top)
        steps = epochs * len(sampler)
        hist = FitHistory(
            settings={
                "epochs": epochs,
                "alpha": alpha,
                "tau": tau,
                "k": sampler.k,
                "m": sampler.m,
                "hard_ratio": sampler.hard_ratio,
                "n_hard": sampler.n_hard,
                "seed": seed,
                "lr": lr,
                "weight_decay": weight_decay,
                "warmup": warmup,
                "clip": clip,
                "keep": keep,
                "select": select,
                "anchors": len(a_items),
                "pool": len(p_items),
                "steps": steps,
            }
        )
        t_start = time.perf_counter()
        if ev is not None:
            hist.initial = self._evaluate(*ev, eval_batch_size)
        opt = torch.optim.AdamW(self.encoder.parameters(), lr=lr, weight_decay=weight_decay)
        n_warm = int(round(warmup * steps))

        def schedule(step: int) -> float:
            if step < n_warm:
                return (step + 1) / n_warm
            return max(0.0, (steps - step) / max(1, steps - n_warm))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        bar = _progress(range(steps), progress, "distilling", total=steps)
        bar_it = iter(bar)
        try:
            best_state = self._train(
                a_items,
                p_items,
                tch,
                ev,
                sampler,
                opt,
                sched,
                hist,
                bar,
                bar_it,
                epochs=epochs,
                alpha=alpha,
                tau=tau,
                seed=seed,
                clip=clip,
                select=select,
                eval_batch_size=eval_batch_size,
                progress=progress,
            )
        finally:
            if hasattr(bar, "close"):
                bar.close()
            self.encoder.eval()
        if keep == "best" and best_state is not None:
            self.encoder.load_state_dict(best_state)
            hist.saved = "best"
        else:
            hist.best_epoch = hist.best_epoch or epochs
            hist.saved = "last"
        hist.seconds = time.perf_counter() - t_start
        return hist

    def _train(
        self,
        a_items: TokenItems | TextItems,
        p_items: TokenItems | TextItems,
        tch: DenseTeacher | GradientTeacher,
        ev: tuple[Any, Any, Any] | None,
        sampler: BlockSampler,
        opt: torch.optim.Optimizer,
        sched: Any,
        hist: FitHistory,
        bar: Any,
        bar_it: Any,
        *,
        epochs: int,
        alpha: float,
        tau: float,
        seed: int,
        clip: float,
        select: str,
        eval_batch_size: int,
        progress: bool,
    ) -> dict[str, Any] | None:
        """The epochs of :meth:`fit`; returns the best epoch's weights (or None)."""
        best_score, best_state = -math.inf, None
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(seed)
            for epoch in range(1, epochs + 1):
                self.encoder.train()
                t0 = time.perf_counter()
                losses = []
                for a_idx, c_idx in sampler.epoch(epoch - 1):
                    next(bar_it, None)
                    ea_, _ = self._forward(a_items.take(a_idx), anchors=True)
                    ec_, _ = self._forward(p_items.take(c_idx), anchors=False)
                    s = _normalize(ea_) @ _normalize(ec_).T
                    loss = influcoder_loss(s, tch.block(a_idx, c_idx).to(self.device), alpha, tau)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"the training loss became {loss.item()} at epoch {epoch}")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    nn.utils.clip_grad_norm_(self.encoder.parameters(), clip)
                    opt.step()
                    sched.step()
                    losses.append(float(loss.detach()))
                    hist.steps += 1
                    if progress and hasattr(bar, "set_postfix"):
                        bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.4f}", refresh=False)
                train_s = time.perf_counter() - t0
                row: dict[str, float] = {"epoch": epoch, "loss": float(np.mean(losses)), "train_seconds": train_s}
                if ev is not None:
                    row.update(self._evaluate(ev[0], ev[1], ev[2], eval_batch_size))
                    if row[select] > best_score:
                        best_score, hist.best_epoch = row[select], epoch
                        best_state = copy.deepcopy(self.encoder.state_dict())
                row["seconds"] = time.perf_counter() - t0
                hist.epochs.append(row)
        return best_state

    def _evaluate(
        self, anchors: Any, pool: Any, teacher: DenseTeacher | GradientTeacher, batch_size: int
    ) -> dict[str, float]:
        """Spearman metrics of this encoder's scores vs ``teacher`` (streamed
        over anchor blocks: per-anchor rows, and the anchor sums for the
        aggregated correlation)."""
        a = self._embed(anchors, True, batch_size, False)
        p = self._embed(pool, False, batch_size, False)
        rows, pred_sum, gt_sum = (
            [],
            torch.zeros(p.shape[0], dtype=torch.float64),
            torch.zeros(p.shape[0], dtype=torch.float64),
        )
        for s in range(0, a.shape[0], 1024):
            pred = (a[s : s + 1024] @ p.T).double()
            gt = teacher.rows(s, min(s + 1024, a.shape[0])).double()
            rows.append(spearman_metrics(pred, gt).rows)
            pred_sum += pred.sum(0)
            gt_sum += gt.sum(0)
        r = np.concatenate(rows)
        agg = spearman_metrics(pred_sum[None], gt_sum[None]).per_anchor
        return {"per_anchor": float(r.mean()), "per_anchor_std": float(r.std()), "aggregated": agg}

    # -- index and scoring ----------------------------------------------------------

    def fingerprint(self) -> str:
        """sha256 of everything that shapes an embedding: the kind, config,
        length, anchor prefix and every weight."""
        h = hashlib.sha256()
        h.update(json.dumps(self._describe(), sort_keys=True).encode())
        for name, t in sorted(self.encoder.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    def _describe(self) -> dict[str, Any]:
        prefix = self.anchor_prefix
        if isinstance(prefix, torch.Tensor):
            prefix = prefix.tolist()
        d: dict[str, Any] = {"kind": self.kind, "dim": self.dim, "max_length": self.max_length, "anchor_prefix": prefix}
        if isinstance(self.encoder, TokenEncoder):
            d["config"] = self.encoder.config.to_dict()
        return d

    @property
    def index_config(self) -> dict[str, Any]:
        """What an index built by this encoder records; queries scored against
        an index must come from an encoder with the same config."""
        return {"encoder": _FORMAT, "fingerprint": self.fingerprint(), **self._describe()}

    def index(
        self,
        pool: Any,
        path: str | os.PathLike[str],
        *,
        ids: Any = None,
        batch_size: int = 256,
        shard_rows: int = 65536,
        progress: bool = False,
    ) -> GradientStore:
        """Embed ``pool`` once into an index at ``path``: a float16
        :class:`~dataprobes.attribution.GradientStore` (atomic shards,
        checksummed reads) that records :attr:`index_config`. An interrupted
        run resumes: rows whose ids are already stored are skipped. The
        content behind every id is recorded (a 64-bit hash per item, written
        atomically before any row), so indexing different items under ids the
        index already holds is refused instead of keeping stale rows. ``ids``
        default to ``0..N−1``."""
        items = self._items("pool", pool)
        n = len(items)
        batch_size = check_int("batch_size", batch_size, 1)
        progress = check_bool("progress", progress)
        if ids is None:
            id_arr = np.arange(n, dtype=np.int64)
        else:
            id_arr = np.asarray(ids)
            if id_arr.dtype.kind not in "iu":
                raise TypeError(f"ids must be integers, got {id_arr.dtype}")
            if id_arr.shape != (n,):
                raise ValueError(f"ids must be {n} integers, one per pool item, got shape {id_arr.shape}")
            if id_arr.size and (int(id_arr.min()) < 0 or int(id_arr.max()) >= 2**63):
                raise ValueError("ids must lie in [0, 2**63)")
            id_arr = id_arr.astype(np.int64)
        root = Path(path)
        with StoreWriter(root, self.dim, "float16", config=self.index_config, shard_rows=shard_rows) as w:
            _record_contents(root, id_arr, items.hashes())
            todo = np.nonzero(~w.contains(id_arr))[0]
            for s in _progress(
                range(0, len(todo), batch_size), progress, "indexing", total=-(-len(todo) // batch_size)
            ):
                sel = todo[s : s + batch_size]
                w.append(id_arr[sel], self._embed(items.take(sel), False, batch_size, False).numpy())
        return GradientStore(path)

    def score(
        self, queries: Any, index: GradientStore | str | os.PathLike[str], *, top_k: int = 10, **kwargs: Any
    ) -> TopK:
        """Top-``top_k`` indexed items by cosine for each query (embedded as
        an anchor), streamed over the index with
        :func:`~dataprobes.attribution.score`. An index built by a different
        encoder (other weights, config, prefix or length) is refused."""
        fixed = {"method", "query_config", "capture", "check_config"} & set(kwargs)
        if fixed:
            raise TypeError(f"score() fixes {sorted(fixed)}: an index is scored by cosine against its own encoder")
        q = self.embed(queries, anchors=True)
        return score(index, q, method="cosine", top_k=top_k, query_config=self.index_config, **kwargs)

    # -- persistence --------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write this encoder to the directory ``path`` atomically (a new
        directory renamed into place) with sha256 checksums of every file,
        verified by :meth:`load`."""
        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".tmp-{final.name}-{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        try:
            meta: dict[str, Any] = {"format": _FORMAT, "version": 1, **self._describe()}
            if isinstance(self.encoder, TokenEncoder):
                buf = io.BytesIO()
                torch.save({k: v.detach().cpu() for k, v in self.encoder.state_dict().items()}, buf)
                write_atomic(tmp / _WEIGHTS, buf.getvalue())
            else:
                assert isinstance(self.encoder, TextEncoder)
                meta["sentence_transformer"] = self.encoder.sentence_transformer
                if self.encoder.sentence_transformer:
                    self.encoder.model.save(str(tmp / "model"))
                else:
                    self.encoder.model.save_pretrained(str(tmp / "model"))
                    self.encoder.tokenizer.save_pretrained(str(tmp / "model"))
            meta["files"] = {
                str(f.relative_to(tmp)): _sha256(f.read_bytes()) for f in sorted(tmp.rglob("*")) if f.is_file()
            }
            meta["fingerprint"] = self.fingerprint()
            write_json_atomic(tmp / _META, meta, indent=1)
            _fsync_tree(tmp)
            old = None
            if final.exists():
                if not (final / _META).exists():
                    raise FileExistsError(f"{final} exists and is not a saved Influcoder; refusing to replace it")
                old = final.with_name(f".old-{final.name}-{os.getpid()}")
                os.replace(final, old)
            os.replace(tmp, final)
            fsync_dir(final.parent)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str | torch.device | None = None) -> Influcoder:
        """Open a directory written by :meth:`save`, checking every file
        against its recorded sha256 (``ValueError`` on a mismatch)."""
        root = Path(path)
        meta_path = root / _META
        if not meta_path.exists():
            raise FileNotFoundError(f"{root} holds no saved Influcoder ({_META} is missing)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{meta_path} is not an Influcoder description")
        for rel, digest in meta["files"].items():
            f = root / rel
            if not f.exists():
                raise ValueError(f"{root}: {rel} is missing")
            if _sha256(f.read_bytes()) != digest:
                raise ValueError(f"{root}: {rel} does not match its recorded checksum (corrupt or modified)")
        prefix = meta.get("anchor_prefix")
        if meta["kind"] == "tokens":
            model = TokenEncoder(TokenEncoderConfig(**meta["config"]))
            state = torch.load(root / _WEIGHTS, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
            enc = cls(model, anchor_prefix=prefix, device=device)
        elif meta.get("sentence_transformer"):
            from sentence_transformers import SentenceTransformer

            enc = cls(
                SentenceTransformer(str(root / "model"), device="cpu"),
                anchor_prefix=prefix,
                max_length=meta["max_length"],
                device=device,
            )
        else:
            from transformers import AutoModel, AutoTokenizer

            enc = cls(
                AutoModel.from_pretrained(str(root / "model")),
                AutoTokenizer.from_pretrained(str(root / "model")),
                anchor_prefix=prefix,
                max_length=meta["max_length"],
                device=device,
            )
        enc.encoder.eval()
        if enc.fingerprint() != meta["fingerprint"]:
            raise ValueError(f"{root}: the loaded encoder's fingerprint differs from the one saved")
        return enc


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------


_CONTENTS = "influcoder-items.npz"


def _record_contents(root: Path, ids: np.ndarray, hashes: np.ndarray) -> None:
    """Merge ``ids → content hash`` into the index's record, refusing an id
    already recorded with other content; written atomically."""
    f = root / _CONTENTS
    if f.exists():
        with np.load(f) as z:
            old_ids, old_h = z["ids"], z["hashes"]
    else:
        old_ids, old_h = np.empty(0, np.int64), np.empty(0, np.uint64)
    order = np.argsort(old_ids, kind="stable")
    pos = np.searchsorted(old_ids[order], ids)
    pos_c = np.minimum(pos, max(len(old_ids) - 1, 0))
    known = (pos < len(old_ids)) & (old_ids[order][pos_c] == ids) if len(old_ids) else np.zeros(len(ids), bool)
    if known.any():
        differ = old_h[order][pos_c][known] != hashes[known]
        if differ.any():
            bad = int(ids[known][differ][0])
            raise ValueError(
                f"{int(differ.sum())} ids are already indexed with other content (e.g. id {bad}): index into a new "
                "path, or give these items new ids"
            )
    new_ids = np.concatenate([old_ids, ids[~known]])
    new_h = np.concatenate([old_h, hashes[~known]])
    if len(new_ids) != len(np.unique(new_ids)):
        raise ValueError("ids must be distinct")
    buf = io.BytesIO()
    np.savez(buf, ids=new_ids, hashes=new_h)
    write_atomic(f, buf.getvalue())


def _fsync_tree(root: Path) -> None:
    """Sync every file and directory under ``root`` to disk (what ``save_pretrained``
    wrote included), deepest first."""
    for p in sorted(root.rglob("*"), key=lambda q: len(q.parts), reverse=True):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            fsync_dir(p)
    fsync_dir(root)


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _autocast(device: torch.device) -> Any:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def _normalize(e: torch.Tensor) -> torch.Tensor:
    return e / e.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _progress(it: Any, enabled: bool, desc: str, total: int) -> Any:
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, total=total, leave=False)


def _refuse_overlap(*splits: Any) -> None:
    """Refuse any item (by content) in both the training split (anchors,
    pool) and the evaluation split (anchors, pool)."""
    train = np.concatenate([splits[0].hashes(), splits[1].hashes()])
    names = ("eval anchors", "eval pool")
    for name, items in zip(names, splits[2:], strict=True):
        h = items.hashes()
        both = np.isin(h, train)
        if both.any():
            first = int(np.nonzero(both)[0][0])
            raise ValueError(
                f"{int(both.sum())} of the {name} also appear in the training split (e.g. {name} item {first}): "
                "the training and evaluation splits must be disjoint"
            )
