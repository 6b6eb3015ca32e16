"""Exact diagnostics of a language model against a probe's true law.

Because the probe's law is known, a model can be judged against the truth:

* **Excess loss** (:func:`excess_loss`): at every position, the exact
  ``KL(P_t ‖ q_t) = Σ_v P_t(v) [log P_t(v) − log q_t(v)]`` between the true
  next-token law and the model's, and the model's cross-entropy against the
  true conditional entropy ``H(P_t)`` (their expected gap is the KL).
* **Generation typicality** (:func:`generation_typicality`): sample from the
  model (greedy, temperature, top-k / top-p), score the generations under the
  true process (NLL per token, path-centred z-scores, below / inside / above
  the typical band around the entropy rate), and decompose the expected score
  of each step as ``E_q[−log P] = H(q_t) + KL(q_t ‖ P_t)`` (docs/math.md).
* **Self-typicality** (:func:`self_typicality`): the LM asymptotic
  equipartition property (Mudireddy et al., arXiv 2405.13798) — the
  log-perplexity of a model's own generations against the mean entropy of its
  predictive distributions.

All work is batched on the model's device. The true laws are gathered row by
row (Markov, i.i.d.) or computed by the probe engine per batch (HMM,
in-context Markov, mixtures); no ``[N, T, V]`` tensor over the whole data set
is ever formed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from .. import _core
from .._validation import (
    as_tokens,
    check_bool,
    check_float,
    check_float_sequence,
    check_int,
    check_optional_int,
    check_process,
    check_seed,
    unit_name,
)
from ..processes import IID, MarkovChain, Process
from ..stats.typicality import TypicalityReport
from .sampling import LogitsFn, _check_sampling, _sampling_logprobs, as_logits_fn, check_model_vocab, generate

#: Elements of float64 work tensors per chunk ([batch, time, vocab]).
_CHUNK_ELEMENTS = 1 << 22


class TrueLaw:
    """Exact next-token laws ``P_t = p(x_t = · | x_<t)`` for batches of
    sequences, on a device. Markov chains and i.i.d. processes gather rows of
    their tables; other processes use their ``predictive``."""

    def __init__(self, process: Process, device: torch.device) -> None:
        self.process = process
        self.device = device
        self.vocab_size = process.vocab_size
        self._table: torch.Tensor | None = None
        self._order = 0
        if isinstance(process, (MarkovChain, IID)):
            table = process.transition if isinstance(process, MarkovChain) else process.probs[None]
            self._table = torch.tensor(np.asarray(table), dtype=torch.float64, device=device)
            self._order = process.order if isinstance(process, MarkovChain) else 0

    def expectations(
        self, x: torch.Tensor, logq: torch.Tensor, first: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For positions ``first..T-1`` of ``x`` [B, T] and model log-laws
        ``logq`` [B, T-first, V]: the true conditional entropy H(P_t), the
        cross term Σ_v P_t(v) log q_t(v), and log P_t(x_t), each [B, T-first].
        For i.i.d. processes the one true row is used directly (a matrix-vector
        product); otherwise the true rows of the batch are gathered."""
        target = x[:, first:, None]
        if self._table is not None and self._order == 0:
            row = self._table[0]
            h = _entropy(row).expand(target.shape[:2])
            cross = logq @ row
            log_py = torch.log(row)[target[..., 0]]
            if torch.isnan(cross).any():  # -inf logits where P = 0
                cross = torch.where(row > 0, row * logq, torch.zeros_like(logq)).sum(-1)
            return h, cross, log_py
        if self._table is None:
            return self._from_rows(self.rows(x)[:, first:], logq, target)
        if self._order <= first:
            return self._from_rows(self._tail_rows(x)[:, first - self._order :], logq, target)
        # Markov chain whose initial block extends past `first`: the few
        # positions before the order come from the initial law, the rest are
        # rows of the table.
        k = min(self._order, x.shape[1])
        head = self._from_rows(self.rows(x[:, :k])[:, first:], logq[:, : k - first], target[:, : k - first])
        if k == x.shape[1]:
            return head
        tail = self._from_rows(self._tail_rows(x), logq[:, k - first :], target[:, k - first :])
        return tuple(torch.cat([a, b], dim=1) for a, b in zip(head, tail, strict=True))  # type: ignore[return-value]

    @staticmethod
    def _from_rows(
        p: torch.Tensor, logq: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = -torch.special.xlogy(p, p).sum(-1)
        cross = torch.linalg.vecdot(p, logq)
        if torch.isnan(cross).any():  # -inf logits where P = 0
            cross = torch.where(p > 0, p * logq, torch.zeros_like(p)).sum(-1)
        return h, cross, torch.log(p.gather(-1, target)[..., 0])

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, V]`` float64 true laws for the sequences ``x`` [B, T]."""
        b, t = x.shape
        v = self.vocab_size
        if self._table is None:
            pred = self.process.predictive(x.cpu().numpy())
            return torch.as_tensor(np.asarray(pred).reshape(b, t, v), device=self.device)
        k = self._order
        if k == 0 or t <= k:
            if k == 0:
                return self._table[torch.zeros(b, t, dtype=torch.long, device=self.device)]
            return torch.as_tensor(self.process.predictive(x.cpu().numpy()), device=self.device)
        head = torch.as_tensor(self.process.predictive(x[:, :k].cpu().numpy()), device=self.device)
        return torch.cat([head, self._tail_rows(x)], dim=1)

    def _tail_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Table rows of the states before positions ``order .. T-1`` (a Markov chain)."""
        assert self._table is not None
        tokens = np.ascontiguousarray(x.cpu().numpy())
        state = _core.state_indices(tokens, self.vocab_size, self._order)  # base-V, computed once in Rust
        return self._table[torch.as_tensor(state, device=self.device)]


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -torch.special.xlogy(p, p).sum(-1)


def _varentropy(p: torch.Tensor) -> torch.Tensor:
    logp = torch.where(p > 0, torch.log(p), torch.zeros_like(p))
    h = -(p * logp).sum(-1)
    return ((p * logp * logp).sum(-1) - h * h).clamp_min(0)


def _batches(n: int, per_item: int) -> int:
    return max(1, min(n, _CHUNK_ELEMENTS // max(per_item, 1)))


@dataclass(frozen=True)
class ExcessLoss:
    """Exact excess loss of a model on probe sequences (nats).

    Per-position arrays are averaged over sequences; position t predicts
    token t from tokens ``< t`` (position 0 is scored only when
    ``score_first``).
    """

    kl_per_position: np.ndarray
    model_nll_per_position: np.ndarray
    true_nll_per_position: np.ndarray
    true_entropy_per_position: np.ndarray
    kl_per_sequence: np.ndarray
    entropy_rate: float
    first_position: int

    @property
    def kl(self) -> float:
        """Mean KL(truth ‖ model) per token."""
        return float(self.kl_per_position.mean())

    @property
    def model_nll(self) -> float:
        """Mean cross-entropy of the model on the observed tokens."""
        return float(self.model_nll_per_position.mean())

    @property
    def true_entropy(self) -> float:
        """Mean true conditional entropy H(P_t) over the scored positions."""
        return float(self.true_entropy_per_position.mean())

    @property
    def excess_nll(self) -> float:
        """Cross-entropy minus true conditional entropy (≈ ``kl`` in expectation)."""
        return self.model_nll - self.true_entropy

    def summary(self) -> dict[str, float]:
        return {
            "kl": self.kl,
            "model_nll": self.model_nll,
            "true_entropy": self.true_entropy,
            "excess_nll": self.excess_nll,
            "entropy_rate": self.entropy_rate,
        }


@torch.no_grad()
def excess_loss(
    model: Any,
    process: Process,
    tokens: Any,
    *,
    batch_size: int | None = None,
    score_first: bool = False,
) -> ExcessLoss:
    """Exact per-position excess loss ``KL(P_t ‖ q_t)`` of ``model`` on ``tokens``.

    Args:
        model: TinyGPT, ``transformers`` causal LM, or callable returning
            ``[B, T, V]`` logits; logits at position t predict token t+1.
        process: the probe the tokens come from.
        tokens: ``[N, T]`` token ids (e.g. ``process.sample(...)``).
        batch_size: sequences per forward pass (default: memory-bounded).
        score_first: also score position 0 against a uniform model (off by
            default: a causal LM has no prediction for the first token).
    """
    fn, device = as_logits_fn(model)
    check_process("process", process)
    batch_size = check_optional_int("batch_size", batch_size, 1)
    score_first = check_bool("score_first", score_first)
    x_np, _ = as_tokens(tokens)
    n, t = x_np.shape
    if n == 0:
        raise ValueError("tokens: need at least one sequence, got none")
    if t < 2:
        raise ValueError("tokens: need sequences of length >= 2")
    check_model_vocab(model, process.vocab_size)
    if x_np.size and (x_np.min() < 0 or x_np.max() >= process.vocab_size):
        raise ValueError(f"tokens must lie in [0, {process.vocab_size})")
    truth = TrueLaw(process, device)
    v = process.vocab_size
    bs = batch_size or _batches(n, t * v)
    first = 0 if score_first else 1
    sums = {k: torch.zeros(t - first, dtype=torch.float64, device=device) for k in ("kl", "nll", "tnll", "h")}
    kl_seq = []
    x_all = torch.from_numpy(x_np.astype(np.int64))
    for lo in range(0, n, bs):
        x = x_all[lo : lo + bs].to(device)
        logits = fn(x[:, :-1])
        if logits.shape[-1] != v:
            raise ValueError(f"model outputs {logits.shape[-1]} logits, the process has vocab_size {v}")
        logq = F.log_softmax(logits, dim=-1)
        if score_first:
            logq = torch.cat([torch.full_like(logq[:, :1], -math.log(v)), logq], dim=1)
        target = x[:, first:]
        h, cross, log_py = truth.expectations(x, logq, first)
        kl = -h - cross
        sums["kl"] += kl.sum(0)
        sums["nll"] -= logq.gather(-1, target[..., None])[..., 0].sum(0)
        sums["tnll"] -= log_py.sum(0)
        sums["h"] += h.sum(0)
        kl_seq.append(kl.mean(1).cpu())
    rate = process.entropy_rate()
    return ExcessLoss(
        kl_per_position=(sums["kl"] / n).cpu().numpy(),
        model_nll_per_position=(sums["nll"] / n).cpu().numpy(),
        true_nll_per_position=(sums["tnll"] / n).cpu().numpy(),
        true_entropy_per_position=(sums["h"] / n).cpu().numpy(),
        kl_per_sequence=torch.cat(kl_seq).numpy(),
        entropy_rate=float(rate),
        first_position=first,
    )


@dataclass(frozen=True)
class GenerationReport:
    """Generations at one decoding setting, scored under the true process.

    Per-sequence arrays cover the generated tokens only (after the prompt).
    ``true_nll`` is −(1/L) Σ log P(y_t | y_<t) under the true process; its
    expectation per step decomposes as ``model_entropy + kl_to_truth``
    (H(q_t) + KL(q_t ‖ P_t)). ``self_nll`` and ``model_entropy`` compare the
    model with itself (LM-AEP): equal in expectation.

    ``typicality`` is the generations' :class:`~dataprobes.TypicalityReport`
    under the true process (NLL/token, path-centred z-scores, the band
    ``entropy_rate ± eps``, in nats), built by the same code as the processes'
    own ``typicality``; ``true_nll``, ``z``, ``entropy_rate`` and ``eps`` are
    its fields.
    """

    temperature: float
    tokens: np.ndarray
    typicality: TypicalityReport
    model_entropy: np.ndarray
    kl_to_truth: np.ndarray
    self_nll: np.ndarray

    @property
    def true_nll(self) -> np.ndarray:
        """−(1/L) Σ log P(y_t | y_<t) of each generation under the true process (nats)."""
        return self.typicality.nll_per_token

    @property
    def z(self) -> np.ndarray:
        """Path-centred z-score of each generation under the true process."""
        return self.typicality.z

    @property
    def entropy_rate(self) -> float:
        """The true process's entropy rate, the centre of the band (nats/token)."""
        return self.typicality.entropy_rate

    @property
    def eps(self) -> float:
        """Half-width of the typical band (nats/token)."""
        return self.typicality.eps

    @property
    def label(self) -> str:
        return "greedy" if self.temperature == 0 else f"T={self.temperature:g}"

    @property
    def mean_nll(self) -> float:
        return float(self.true_nll.mean())

    @property
    def fraction_below(self) -> float:
        return float(self.typicality.below.mean())

    @property
    def fraction_above(self) -> float:
        return float(self.typicality.above.mean())

    @property
    def fraction_typical(self) -> float:
        return 1.0 - self.fraction_below - self.fraction_above

    @property
    def regime(self) -> str:
        """Where the mean NLL/token falls: over-conservative (below the band),
        typical, or over-divergent (above)."""
        m = self.mean_nll
        if m < self.entropy_rate - self.eps:
            return "over-conservative"
        if m > self.entropy_rate + self.eps:
            return "over-divergent"
        return "typical"

    def summary(self) -> dict[str, Any]:
        return {
            "decoding": self.label,
            "mean_nll": self.mean_nll,
            "regime": self.regime,
            "fraction_below": self.fraction_below,
            "fraction_typical": self.fraction_typical,
            "fraction_above": self.fraction_above,
            "mean_z": self.typicality.summary()["mean_z"],
            "model_entropy": float(self.model_entropy.mean()),
            "kl_to_truth": float(self.kl_to_truth.mean()),
            "self_nll": float(self.self_nll.mean()),
            "entropy_rate": self.entropy_rate,
            "eps": self.eps,
        }


@dataclass(frozen=True)
class SelfTypicality:
    """LM asymptotic equipartition: log-perplexity of a model's own
    generations against the mean entropy of its predictive distributions."""

    log_perplexity: np.ndarray
    mean_entropy: np.ndarray
    gap: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "gap", self.log_perplexity - self.mean_entropy)

    def summary(self) -> dict[str, float]:
        n = len(self.gap)
        return {
            "log_perplexity": float(self.log_perplexity.mean()),
            "mean_entropy": float(self.mean_entropy.mean()),
            "gap": float(self.gap.mean()),
            "gap_stderr": float(self.gap.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan,
        }


def _score_generations(
    fn: LogitsFn,
    truth: TrueLaw,
    x: torch.Tensor,
    prompt_len: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
) -> dict[str, torch.Tensor]:
    """Per-sequence statistics of the generated part of ``x`` (one batch)."""
    logq = _sampling_logprobs(fn(x[:, :-1]), temperature, top_k, top_p)[:, prompt_len - 1 :]
    q = logq.exp()
    p = truth.rows(x)[:, prompt_len:]
    y = x[:, prompt_len:, None]
    log_py = torch.log(p.gather(-1, y)[..., 0])
    h_p = _entropy(p)
    kl_qp = (torch.special.xlogy(q, q) - torch.where(q > 0, q * torch.log(p), torch.zeros_like(q))).sum(-1)
    return {
        "true_nll": -log_py.mean(1),
        "centred": (-log_py - h_p).sum(1),
        "var": _varentropy(p).sum(1),
        "model_entropy": _entropy(q).mean(1),
        "kl_to_truth": kl_qp.mean(1),
        "self_nll": -logq.gather(-1, y)[..., 0].mean(1),
    }


def _typical_band(process: Process, prompt_len: int, length: int, num: int, seed: int) -> float:
    """Two standard deviations of the true NLL/token of ``length`` tokens
    after a ``prompt_len`` prefix, from samples of the process itself."""
    x = process.sample(max(num, 256), prompt_len + length, seed=seed)
    nll = -np.asarray(process.token_log_probs(x))[:, prompt_len:].mean(1)
    return float(2 * nll.std(ddof=1))


@torch.no_grad()
def generation_typicality(
    model: Any,
    process: Process,
    *,
    num_sequences: int = 256,
    length: int = 128,
    temperatures: Sequence[float] = (0.0, 1.0, 1.3, 1.5),
    top_k: int | None = None,
    top_p: float | None = None,
    prompt_len: int | None = None,
    eps: float | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    progress: bool = False,
) -> list[GenerationReport]:
    """Sample from the model at each temperature and score under the truth.

    Prompts are the first ``prompt_len`` tokens (default: the process order,
    at least 1) of true samples. The typical band is ``entropy_rate ± eps``;
    by default eps is two standard deviations of the NLL/token of true
    sequences of the same length, so ~95% of true samples fall inside.
    ``progress`` shows a progress bar over the generated sequences.
    """
    from tqdm.auto import tqdm

    fn, device = as_logits_fn(model)
    check_process("process", process)
    n = check_int("num_sequences", num_sequences, 1)
    length = check_int("length", length, 1)
    s = check_seed("seed", seed)
    if prompt_len is None:
        prompt_len = max(getattr(process, "order", 1), 1)
    prompt_len = check_int("prompt_len", prompt_len, 1)
    batch_size = check_optional_int("batch_size", batch_size, 1)
    progress = check_bool("progress", progress)
    temps = check_float_sequence("temperatures", temperatures)
    for temp in temps:
        _check_sampling(temp, top_k, top_p)
    check_model_vocab(model, process.vocab_size)
    rate = float(process.entropy_rate())
    band = (
        _typical_band(process, prompt_len, length, n, s + 1) if eps is None else check_float("eps", eps, positive=True)
    )
    prompts = process.sample(n, prompt_len, seed=s)
    truth = TrueLaw(process, device)
    bs = batch_size or _batches(n, (prompt_len + length) * process.vocab_size * 4)
    reports = []
    bar = tqdm(total=len(temps) * n, unit="seq", desc="generating", disable=not progress)
    for temp in temps:
        bar.set_postfix(decoding="greedy" if temp == 0 else f"T={temp:g}")
        parts: dict[str, list[np.ndarray]] = {}
        tokens = []
        for lo in range(0, n, bs):
            x = generate(
                model, prompts[lo : lo + bs], length, temperature=temp, top_k=top_k, top_p=top_p, seed=s, first_row=lo
            )
            for k, val in _score_generations(fn, truth, x, prompt_len, temp, top_k, top_p).items():
                parts.setdefault(k, []).append(val.cpu().numpy())
            tokens.append(x.cpu().numpy())
            bar.update(x.shape[0])
        cat = {k: np.concatenate(v) for k, v in parts.items()}
        typ = TypicalityReport.from_path_stats(
            cat["true_nll"], cat["centred"], cat["var"], length, entropy_rate=rate, eps=band, unit=unit_name(None)
        )
        reports.append(
            GenerationReport(
                temperature=float(temp),
                tokens=np.concatenate(tokens),
                typicality=typ,
                model_entropy=cat["model_entropy"],
                kl_to_truth=cat["kl_to_truth"],
                self_nll=cat["self_nll"],
            )
        )
    bar.close()
    return reports


@torch.no_grad()
def self_typicality(
    model: Any,
    prompt: Any,
    length: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
) -> SelfTypicality:
    """Generate ``length`` tokens after ``prompt`` and compare the model's
    log-perplexity of them, −(1/L) Σ log q_t(y_t), with the mean entropy
    (1/L) Σ H(q_t) of the distributions they were drawn from (LM-AEP:
    equal in expectation; the gap's z-score tests the model against itself)."""
    fn, _ = as_logits_fn(model)
    x = generate(model, prompt, length, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    p_len = x.shape[1] - length
    logq = _sampling_logprobs(fn(x[:, :-1]), temperature, top_k, top_p)[:, p_len - 1 :]
    q = logq.exp()
    lp = -logq.gather(-1, x[:, p_len:, None])[..., 0].mean(1)
    return SelfTypicality(log_perplexity=lp.cpu().numpy(), mean_entropy=_entropy(q).mean(1).cpu().numpy())
